//! Socket helpers on a shared `&TcpStream`: bounded reads into a buffer and writes with a
//! deadline. Borrowing the stream immutably lets a handler read the request body while the
//! connection flushes earlier responses.
//!
//! Owns nothing but the syscall loops; it must not know HTTP.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

/// Makes sure a read into `buf` has room: `read_size` more once less than a quarter of it
/// is spare. (A read into a full buffer returns 0, which would look like the peer closing;
/// reserving only when low lets one allocation serve many small reads.)
pub(crate) fn make_room(buf: &mut BytesMut, read_size: usize) {
    if buf.capacity() - buf.len() < read_size / 4 {
        buf.reserve(read_size);
    }
}

/// Reads what the socket holds right now into `buf` (reserving `read_size` of spare room
/// first), without waiting: `None` if nothing is there. `Some(Ok(0))` means the peer
/// closed.
///
/// Goes through tokio's `poll_read`, which remembers that a short read drained the socket,
/// so asking an empty socket again costs no syscall (`try_read_buf` would make one and get
/// `EAGAIN`). The no-op waker registered on `Pending` is replaced by whoever waits next.
pub(crate) fn read_now(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    read_size: usize,
) -> Option<io::Result<usize>> {
    make_room(buf, read_size);
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(stream.read_buf(buf)).poll(&mut cx) {
        Poll::Ready(result) => Some(result),
        Poll::Pending => None,
    }
}

/// Reads at least one byte into `buf` (reserving `read_size` of spare room first) from a
/// stream the caller owns, through tokio's `poll_read`: a short read marks the socket
/// drained, so the next call waits for readiness instead of making an `EAGAIN` syscall
/// (a client reading a response right after sending its request would otherwise always
/// make one). `Ok(0)` means the peer closed; `TimedOut` that `deadline` passed.
pub(crate) async fn read_owned(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    read_size: usize,
    deadline: Instant,
) -> io::Result<usize> {
    make_room(buf, read_size);
    match timeout_at(deadline, stream.read_buf(buf)).await {
        Ok(result) => result,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// Reads what is available into `buf` (at least one byte, reserving `read_size` of spare
/// room first). `Ok(0)` means the peer closed; `TimedOut` that `deadline` passed.
pub(crate) async fn read_some(
    stream: &TcpStream,
    buf: &mut BytesMut,
    read_size: usize,
    deadline: Instant,
) -> io::Result<usize> {
    make_room(buf, read_size);
    loop {
        match stream.try_read_buf(buf) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                match timeout_at(deadline, stream.readable()).await {
                    Ok(ready) => ready?,
                    Err(_) => return Err(io::ErrorKind::TimedOut.into()),
                }
            }
            result => return result,
        }
    }
}

/// Writes all of `buf`, waiting at most until `deadline` for the peer to make room.
/// Returns the number of write syscalls it took.
pub(crate) async fn write_all_until(
    stream: &TcpStream,
    buf: &[u8],
    deadline: Instant,
) -> io::Result<u64> {
    write_two_until(stream, buf, &[], deadline).await
}

/// Writes a small control message (e.g. `100 Continue`), allowing the peer ten seconds.
pub(crate) async fn write_all(stream: &TcpStream, buf: &[u8]) -> io::Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    write_all_until(stream, buf, deadline).await.map(drop)
}

/// Writes `head` then `body` with vectored writes (no copy of `body`), waiting at most until
/// `deadline` for the peer to make room. Returns the number of write syscalls it took.
pub(crate) async fn write_two_until(
    stream: &TcpStream,
    mut head: &[u8],
    mut body: &[u8],
    deadline: Instant,
) -> io::Result<u64> {
    let mut writes = 0;
    while !head.is_empty() || !body.is_empty() {
        let slices = [IoSlice::new(head), IoSlice::new(body)];
        match stream.try_write_vectored(&slices) {
            Ok(mut n) => {
                writes += 1;
                let from_head = n.min(head.len());
                head = &head[from_head..];
                n -= from_head;
                body = &body[n..];
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                match timeout_at(deadline, stream.writable()).await {
                    Ok(ready) => ready?,
                    Err(_) => return Err(io::ErrorKind::TimedOut.into()),
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(writes)
}

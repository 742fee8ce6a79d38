//! Socket helpers: bounded reads into a buffer, writes with a deadline, and [`Output`], a
//! connection's pending writes (small pieces copied, one large piece written from its own
//! memory).
//!
//! Owns nothing but the syscall loops and their buffers; it must not know HTTP.

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::transport::Stream;
use tokio::io::AsyncReadExt;
use tokio::time::{Instant, Sleep, timeout_at};

/// What a connection has to write, in order: small pieces copied into one buffer, then at
/// most one large piece written from its own memory (vectored with the buffer: no copy),
/// then a few bytes that follow it (the CRLF that ends a chunk). Nothing is appended while
/// a large piece is pending.
#[derive(Default)]
pub(crate) struct Output {
    /// Small pieces.
    pub buf: Vec<u8>,
    large: Option<Bytes>,
    after_large: &'static [u8],
    /// Write syscalls that carried bytes.
    pub writes: u64,
    /// A write failed: later opportunistic writes are skipped (the next flush reports it).
    failed: bool,
    /// The write timeout, created when a write first has to wait, and its length.
    timer: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("pending", &self.pending())
            .field("writes", &self.writes)
            .finish_non_exhaustive()
    }
}

impl Output {
    /// Whether nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.large.is_none()
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.buf.len() + self.large.as_ref().map_or(0, Bytes::len)
    }

    /// Whether a large piece is waiting.
    pub fn has_large(&self) -> bool {
        self.large.is_some()
    }

    /// Queues a large piece after the buffer, then `after`.
    pub fn push_large(&mut self, data: Bytes, after: &'static [u8]) {
        debug_assert!(self.large.is_none());
        self.large = Some(data);
        self.after_large = after;
    }

    /// Writes what the stream takes now (for TLS, through to the socket). Ready once
    /// everything is written or a write failed; `Pending` while the socket is full
    /// (registered for writability).
    pub fn poll_write(
        &mut self,
        stream: &mut Stream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.is_empty() {
                return match stream.poll_flush_records(cx) {
                    Poll::Ready(Err(error)) => self.fail(error),
                    other => other,
                };
            }
            let large = self.large.as_deref().unwrap_or_default();
            let slices = [IoSlice::new(&self.buf), IoSlice::new(large)];
            match stream.poll_write_slices(cx, &slices) {
                Poll::Ready(Ok(0)) => return self.fail(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.writes += 1;
                    self.consume(n);
                    if let Some(timer) = self.timer.as_mut() {
                        timer.as_mut().reset(Instant::now() + self.timeout);
                    }
                }
                Poll::Ready(Err(error)) => return self.fail(error),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Writes what the socket takes now if no write has failed yet; for writing while
    /// waiting on something else (a failure is reported by the next [`Output::flush`]).
    pub fn poll_write_opportunistic(&mut self, stream: &mut Stream, cx: &mut Context<'_>) {
        if !self.failed {
            let _ = self.poll_write(stream, cx);
        }
    }

    /// [`Output::poll_write`], failing with `TimedOut` when the peer takes nothing for
    /// `timeout`.
    pub fn poll_write_within(
        &mut self,
        stream: &mut Stream,
        timeout: Duration,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        self.timeout = timeout;
        match self.poll_write(stream, cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => {
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if timer.as_mut().poll(cx).is_ready() {
                    self.failed = true;
                    return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                }
                Poll::Pending
            }
        }
    }

    /// Writes everything, failing with `TimedOut` when the peer takes nothing for
    /// `timeout`. Costs no future state when the socket takes it all at once.
    pub async fn flush(&mut self, stream: &mut Stream, timeout: Duration) -> io::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        if self.failed {
            self.clear();
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let result = poll_fn(|cx| self.poll_write_within(stream, timeout, cx)).await;
        if result.is_err() {
            self.clear();
        }
        result
    }

    /// Drops what is pending (the connection is going away).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.large = None;
    }

    fn consume(&mut self, mut n: usize) {
        let from_buf = n.min(self.buf.len());
        self.buf.drain(..from_buf);
        n -= from_buf;
        if let Some(large) = self.large.as_mut() {
            let _ = large.split_to(n.min(large.len()));
            if large.is_empty() {
                self.large = None;
                self.buf.extend_from_slice(self.after_large);
            }
        }
    }

    fn fail(&mut self, error: io::Error) -> Poll<io::Result<()>> {
        self.failed = true;
        Poll::Ready(Err(error))
    }
}

/// Most spare buffers of each kind kept per thread (beyond it, they are freed).
const SPARES_MAX: usize = 64;

thread_local! {
    /// Read buffers of connections that went idle, for connections that wake up: an idle
    /// connection holds no buffer, yet waking one costs no allocation.
    static SPARE_READ: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The same for write buffers.
    static SPARE_WRITE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Gives a connection's read buffer up (it is going idle) for another connection of this
/// thread to use.
pub(crate) fn recycle_read_buf(buf: &mut BytesMut) {
    let mut buf = std::mem::take(buf);
    if buf.capacity() == 0 {
        return;
    }
    buf.clear();
    SPARE_READ.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARES_MAX {
            spare.push(buf);
        }
    });
}

/// Gives a write buffer up (its connection is going idle) for another connection.
pub(crate) fn recycle_write_buf(buf: &mut Vec<u8>) {
    let mut buf = std::mem::take(buf);
    if buf.capacity() == 0 {
        return;
    }
    buf.clear();
    SPARE_WRITE.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARES_MAX {
            spare.push(buf);
        }
    });
}

/// Makes sure `buf` can take `additional` more bytes, starting from a spare buffer of this
/// thread when it has none.
pub(crate) fn reserve_write(buf: &mut Vec<u8>, additional: usize) {
    if buf.capacity() == 0
        && let Some(spare) = SPARE_WRITE.with(|spare| spare.borrow_mut().pop())
    {
        *buf = spare;
    }
    buf.reserve(additional);
}

/// Makes sure a read into `buf` has room: `read_size` more once less than a quarter of it
/// is spare. (A read into a full buffer returns 0, which would look like the peer closing;
/// reserving only when low lets one allocation serve many small reads.) A buffer with no
/// room at all starts from a spare one of this thread.
pub(crate) fn make_room(buf: &mut BytesMut, read_size: usize) {
    if buf.capacity() - buf.len() < read_size / 4 {
        if buf.capacity() == 0
            && let Some(spare) = SPARE_READ.with(|spare| spare.borrow_mut().pop())
        {
            *buf = spare;
            if buf.capacity() >= read_size / 4 {
                return;
            }
        }
        buf.reserve(read_size);
    }
}

/// Reads what the stream holds right now into `buf` (reserving `read_size` of spare room
/// first), without waiting: `None` if nothing is there. `Some(Ok(0))` means the peer
/// closed.
///
/// Goes through tokio's `poll_read`, which remembers that a short read drained the socket,
/// so asking an empty socket again costs no syscall (`try_read_buf` would make one and get
/// `EAGAIN`). The no-op waker registered on `Pending` is replaced by whoever waits next.
pub(crate) fn read_now(
    stream: &mut Stream,
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

/// Reads at least one byte into `buf` (reserving `read_size` of spare room first), through
/// tokio's `poll_read`: a short read marks the socket drained, so the next call waits for
/// readiness instead of making an `EAGAIN` syscall. `Ok(0)` means the peer closed;
/// `TimedOut` that `deadline` passed.
pub(crate) async fn read_some(
    stream: &mut Stream,
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

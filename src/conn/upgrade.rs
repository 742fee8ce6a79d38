//! Protocol switches: after a `101 Switching Protocols` (or a 2xx answer to CONNECT) a
//! connection stops speaking HTTP/1.x and its socket goes to whoever handles the new
//! protocol, with the bytes already read for it.
//!
//! Owns the hand-over — on a server, a slot a handler puts in its response's extensions,
//! resolved once the head is written; on a client, the connection in the response's
//! extensions ([`take`]) — and the byte splice of a tunnel. It must not interpret the
//! tunneled bytes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::Response;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::oneshot;

use crate::error::{Error, ErrorKind, Side};
use crate::transport::Stream;

/// A connection that switched protocols: an IO object that first yields the bytes already
/// read for the new protocol, then reads the stream (TCP, or TLS over it).
#[derive(Debug)]
pub struct Upgraded {
    /// The stream.
    pub stream: Stream,
    /// Bytes already read from it that belong to the new protocol.
    pub read_buf: Bytes,
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read_buf.is_empty() {
            let n = self.read_buf.len().min(buf.remaining());
            buf.put_slice(&self.read_buf[..n]);
            self.read_buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A client's connection after a 101 or a 2xx to CONNECT, waiting in the response's
/// extensions to be taken with [`take`].
#[derive(Debug, Clone)]
pub(crate) struct ClientUpgrade(Arc<Mutex<Option<Upgraded>>>);

impl ClientUpgrade {
    pub(crate) fn new(upgraded: Upgraded) -> Self {
        ClientUpgrade(Arc::new(Mutex::new(Some(upgraded))))
    }
}

/// The connection a client's response switched to (101 Switching Protocols, or a 2xx
/// answer to CONNECT); `None` for any other response, or once taken.
pub fn take<B>(response: &mut Response<B>) -> Option<Upgraded> {
    let slot = response.extensions_mut().remove::<ClientUpgrade>()?;
    slot.0.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Put in a 101 (or CONNECT 2xx) response's extensions: the server hands the connection
/// over through it once the head is written. A switching response without one is a
/// handler bug and is answered with 500.
#[derive(Debug, Clone)]
pub struct UpgradeSlot(Arc<Mutex<Option<oneshot::Sender<Upgraded>>>>);

/// Resolves to the connection once the switching response has been sent.
#[derive(Debug)]
pub struct OnUpgrade(oneshot::Receiver<Upgraded>);

/// A slot for a response and the future that receives the connection.
pub fn upgrade_channel() -> (UpgradeSlot, OnUpgrade) {
    let (tx, rx) = oneshot::channel();
    (UpgradeSlot(Arc::new(Mutex::new(Some(tx)))), OnUpgrade(rx))
}

impl UpgradeSlot {
    pub(crate) fn take(&self) -> Option<oneshot::Sender<Upgraded>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl Future for OnUpgrade {
    type Output = Result<Upgraded, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|result| {
            result.map_err(|_| {
                Error::new(
                    Side::Client,
                    ErrorKind::Closed("before the switching response was sent"),
                )
            })
        })
    }
}

/// Copies bytes both ways between two streams until both directions have ended, first
/// delivering what each side had already sent. Memory stays bounded (a buffer per
/// direction); returns the bytes carried each way (a → b, b → a).
pub async fn splice(
    mut a: impl AsyncRead + AsyncWrite + Unpin,
    a_pending: Bytes,
    mut b: impl AsyncRead + AsyncWrite + Unpin,
    b_pending: Bytes,
) -> std::io::Result<(u64, u64)> {
    b.write_all(&a_pending).await?;
    a.write_all(&b_pending).await?;
    let (to_b, to_a) = tokio::io::copy_bidirectional(&mut a, &mut b).await?;
    Ok((to_b + a_pending.len() as u64, to_a + b_pending.len() as u64))
}

//! Protocol switches: after a `101 Switching Protocols` (or a 2xx answer to CONNECT) a
//! connection stops speaking HTTP/1.x and its socket goes to whoever handles the new
//! protocol, with the bytes already read for it.
//!
//! Owns the hand-over (a slot a handler puts in its response's extensions, resolved once
//! the head is written) and the byte splice of a tunnel. It must not interpret the tunneled
//! bytes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::error::{Error, ErrorKind, Side};

/// A connection that switched protocols.
#[derive(Debug)]
pub struct Upgraded {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes already read from it that belong to the new protocol.
    pub read_buf: Bytes,
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

/// Copies bytes both ways between two sockets until both directions have ended, first
/// delivering what each side had already sent. Memory stays bounded (a buffer per
/// direction); returns the bytes carried each way (a → b, b → a).
pub async fn splice(
    mut a: TcpStream,
    a_pending: Bytes,
    mut b: TcpStream,
    b_pending: Bytes,
) -> std::io::Result<(u64, u64)> {
    b.write_all(&a_pending).await?;
    a.write_all(&b_pending).await?;
    let (to_b, to_a) = tokio::io::copy_bidirectional(&mut a, &mut b).await?;
    Ok((to_b + a_pending.len() as u64, to_a + b_pending.len() as u64))
}

//! The one error type of hopline. Every error says which side of the hop failed, so the
//! status code and the retry decision follow from the type.

use std::fmt;

use http::StatusCode;

use crate::transport::tls::TlsFailure;
use crate::wire::ParseError;

/// A boxed error from a body source or handler.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which side of a hop an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The downstream peer: the client of this hop.
    Client,
    /// The upstream peer: the server this hop forwards to.
    Upstream,
    /// hopline itself (a handler, a body source, a local resource).
    Local,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Local => "local",
        })
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// A socket operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent a malformed or oversized message.
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// A timer ran out; the text names the phase (e.g. "reading the body").
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The peer closed the connection before the message was complete.
    #[error("closed the connection {0}")]
    Closed(&'static str),
    /// A body source (a handler's stream, a file) failed.
    #[error("body source failed: {0}")]
    Body(BoxError),
    /// A TLS handshake failed (the certificate, the protocol).
    #[error("{0}")]
    Tls(#[from] TlsFailure),
    /// HTTP/2 failed: a stream or the connection was reset, or the peer broke the protocol.
    #[error("HTTP/2: {0}")]
    Http2(#[from] h2::Error),
    /// The host name did not resolve to an address.
    #[error("could not resolve host {0}")]
    Resolve(String),
}

/// An error, and the side of the hop it came from.
#[derive(Debug, thiserror::Error)]
#[error("{side}: {kind}")]
pub struct Error {
    /// Who failed.
    pub side: Side,
    /// What failed.
    #[source]
    pub kind: ErrorKind,
}

impl Error {
    /// An error on `side`.
    pub fn new(side: Side, kind: impl Into<ErrorKind>) -> Self {
        Error {
            side,
            kind: kind.into(),
        }
    }

    /// The status a server answers a client-side error with, if any answer makes sense
    /// (there is none for a peer that is gone).
    pub fn client_status(&self) -> Option<StatusCode> {
        match (&self.side, &self.kind) {
            (Side::Client, ErrorKind::Parse(parse)) => Some(parse.status()),
            (Side::Client, ErrorKind::Timeout(_)) => Some(StatusCode::REQUEST_TIMEOUT),
            _ => None,
        }
    }
}

impl From<crate::transport::ConnectError> for Error {
    /// A connection the client could not open: the upstream side failed.
    fn from(error: crate::transport::ConnectError) -> Self {
        use crate::transport::ConnectError;
        let kind = match error {
            ConnectError::Tcp(error) => ErrorKind::Io(error),
            ConnectError::Timeout => ErrorKind::Timeout("connecting"),
            ConnectError::Tls(failure) => ErrorKind::Tls(failure),
        };
        Error::new(Side::Upstream, kind)
    }
}

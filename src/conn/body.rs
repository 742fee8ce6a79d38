//! Bodies at the handler boundary: the request body a handler reads (streamed straight off
//! the connection's buffer) and the response body it returns (empty, whole, or a stream).
//!
//! Owns the body types and their streaming contracts. It must not decide framing on the
//! wire (the connection derives `Content-Length` / chunked from the body) and must not
//! buffer a body whole.

use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::{BoxError, Error, ErrorKind, Side};
use crate::wire::{BodyDecoder, BodyEvent, ParseError};

/// One step of a body stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Body bytes.
    Data(Bytes),
    /// Trailer fields; nothing follows them.
    Trailers(HeaderMap),
}

/// A source of response body frames, polled by the connection as the peer accepts bytes
/// (so a slow reader slows the source down: backpressure).
pub trait BodySource: Send + 'static {
    /// The next frame; `Ready(None)` ends the body. An error aborts the response: the
    /// connection closes without completing the message, so a truncated body is never
    /// presented as complete.
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame, BoxError>>>;
}

/// A streamed response body and its length, if known in advance.
pub struct BodyStream {
    /// The exact length in bytes, if known (`Content-Length`); otherwise the connection
    /// uses chunked coding (or close-delimiting for HTTP/1.0 clients).
    pub length: Option<u64>,
    /// Where the frames come from.
    pub source: Pin<Box<dyn BodySource>>,
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyStream")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl BodyStream {
    /// The next frame of the stream.
    pub async fn frame(&mut self) -> Option<Result<Frame, BoxError>> {
        poll_fn(|cx| self.source.as_mut().poll_frame(cx)).await
    }
}

/// A response body.
#[derive(Debug, Default)]
pub enum Body {
    /// No body (`Content-Length: 0`, or nothing at all where the status has no body).
    #[default]
    Empty,
    /// A body held in memory.
    Full(Bytes),
    /// A body produced while it is sent.
    Stream(BodyStream),
}

impl Body {
    /// A streamed body.
    pub fn stream(length: Option<u64>, source: impl BodySource) -> Self {
        Body::Stream(BodyStream {
            length,
            source: Box::pin(source),
        })
    }

    /// A body fed through a channel by another task; `length` is the exact total if known.
    /// The body ends when [`BodySender::finish`] is called; if the sender is dropped
    /// without it, the response is aborted (never presented as complete).
    pub fn channel(length: Option<u64>) -> (BodySender, Body) {
        let (tx, rx) = mpsc::channel(4);
        let finished = Arc::new(AtomicBool::new(false));
        let sender = BodySender {
            tx,
            finished: finished.clone(),
        };
        (sender, Body::stream(length, ChannelSource { rx, finished }))
    }

    /// The body's exact length, if known.
    pub fn length(&self) -> Option<u64> {
        match self {
            Body::Empty => Some(0),
            Body::Full(bytes) => Some(bytes.len() as u64),
            Body::Stream(stream) => stream.length,
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body::Full(bytes)
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Body::Full(Bytes::from_static(text.as_bytes()))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Body::Full(Bytes::from(text))
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body::Full(Bytes::from(bytes))
    }
}

/// The sending half of [`Body::channel`].
#[derive(Debug)]
pub struct BodySender {
    tx: mpsc::Sender<Result<Frame, BoxError>>,
    finished: Arc<AtomicBool>,
}

/// The receiving side of a body channel went away (the response was abandoned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the response body is no longer being sent")]
pub struct BodyClosed;

impl BodySender {
    /// Sends body bytes, waiting while the connection is behind (backpressure).
    pub async fn send(&mut self, data: Bytes) -> Result<(), BodyClosed> {
        self.tx
            .send(Ok(Frame::Data(data)))
            .await
            .map_err(|_| BodyClosed)
    }

    /// Sends trailers and ends the body.
    pub async fn send_trailers(self, trailers: HeaderMap) -> Result<(), BodyClosed> {
        self.finished.store(true, Ordering::Release);
        self.tx
            .send(Ok(Frame::Trailers(trailers)))
            .await
            .map_err(|_| BodyClosed)
    }

    /// Ends the body normally.
    pub fn finish(self) {
        self.finished.store(true, Ordering::Release);
    }

    /// Aborts the body: the connection closes without completing the response.
    pub async fn abort(self, error: BoxError) {
        let _ = self.tx.send(Err(error)).await;
    }
}

struct ChannelSource {
    rx: mpsc::Receiver<Result<Frame, BoxError>>,
    finished: Arc<AtomicBool>,
}

impl BodySource for ChannelSource {
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(None) if !self.finished.load(Ordering::Acquire) => {
                Poll::Ready(Some(Err("body sender dropped before finishing".into())))
            }
            other => other,
        }
    }
}

/// How a request body ended, when it did not end well; the connection answers accordingly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyFailure {
    /// Malformed framing or over a limit: answer with this error, then close.
    Invalid(ParseError),
    /// No byte arrived within the body timeout: 408, then close.
    Timeout,
    /// The client closed or reset mid-body: nothing to answer, close.
    Gone,
}

/// Where a request body stands; owned by the connection, lent to the handler through
/// [`RequestBody`].
#[derive(Debug)]
pub(crate) struct BodyState {
    /// What is left of the body on the wire.
    pub decoder: BodyDecoder,
    /// Body bytes handed out so far.
    pub received: u64,
    /// Largest body accepted (413 beyond it).
    pub limit: Option<u64>,
    /// `Expect: 100-continue` not yet answered: the first read sends `100 Continue`.
    pub continue_pending: bool,
    /// Longest wait for the next body bytes.
    pub timeout: Duration,
    /// Bytes to ask the kernel for per read.
    pub read_size: usize,
    /// Why the body ended badly, if it did.
    pub failure: Option<BodyFailure>,
}

/// The part of a connection a request body needs: its socket and input buffer.
pub(crate) struct BodyIo<'a> {
    pub stream: &'a TcpStream,
    pub rbuf: &'a mut BytesMut,
    pub state: &'a mut BodyState,
}

/// The body of a request, read straight off the connection as the handler asks for it.
///
/// Nothing is buffered beyond what one socket read brings. A handler that returns without
/// reading the whole body leaves the rest to the connection, which discards a small
/// remainder or closes the connection (a large unread body is not worth reading).
pub struct RequestBody<'a> {
    io: Option<BodyIo<'a>>,
}

impl fmt::Debug for RequestBody<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("remaining", &self.remaining())
            .finish_non_exhaustive()
    }
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl<'a> RequestBody<'a> {
    /// A request without a body.
    pub fn empty() -> Self {
        RequestBody { io: None }
    }

    pub(crate) fn new(io: BodyIo<'a>) -> Self {
        RequestBody { io: Some(io) }
    }

    /// Bytes of the body not yet read, when the length is known (`Content-Length`).
    pub fn remaining(&self) -> Option<u64> {
        match &self.io {
            None => Some(0),
            Some(io) => io.state.decoder.remaining(),
        }
    }

    /// Whether the body has been read to its end.
    pub fn is_end(&self) -> bool {
        self.io.as_ref().is_none_or(|io| io.state.decoder.is_done())
    }

    /// The next frame of the body: data as it arrives, then trailers if the client sent
    /// any. `None` at the end of the body (or after an error was returned).
    pub async fn frame(&mut self) -> Option<Result<Frame, Error>> {
        let io = self.io.as_mut()?;
        if io.state.failure.is_some() {
            return None;
        }
        loop {
            match io.state.decoder.decode(io.rbuf) {
                Ok(Some(BodyEvent::Data(data))) => {
                    io.state.received += data.len() as u64;
                    if let Some(limit) = io.state.limit
                        && io.state.received > limit
                    {
                        return Some(Err(io.fail_invalid(ParseError::BodyTooLarge { limit })));
                    }
                    return Some(Ok(Frame::Data(data)));
                }
                Ok(Some(BodyEvent::Trailers(trailers))) => {
                    return Some(Ok(Frame::Trailers(trailers)));
                }
                Ok(Some(BodyEvent::End)) => return None,
                Ok(None) => {
                    if let Err(error) = io.fill().await {
                        return Some(Err(error));
                    }
                }
                Err(parse) => return Some(Err(io.fail_invalid(parse))),
            }
        }
    }

    /// The next chunk of body bytes, skipping trailers.
    pub async fn data(&mut self) -> Option<Result<Bytes, Error>> {
        loop {
            match self.frame().await? {
                Ok(Frame::Data(data)) => return Some(Ok(data)),
                Ok(Frame::Trailers(_)) => continue,
                Err(error) => return Some(Err(error)),
            }
        }
    }

    /// Reads the whole body into memory, refusing more than `max` bytes (413).
    pub async fn collect(&mut self, max: u64) -> Result<Bytes, Error> {
        if let Some(remaining) = self.remaining()
            && remaining > max
        {
            let error = ParseError::BodyTooLarge { limit: max };
            return Err(match &mut self.io {
                Some(io) => io.fail_invalid(error),
                None => Error::new(Side::Client, error),
            });
        }
        let mut all = BytesMut::new();
        while let Some(data) = self.data().await {
            let data = data?;
            if all.len() as u64 + data.len() as u64 > max {
                let error = ParseError::BodyTooLarge { limit: max };
                return Err(match &mut self.io {
                    Some(io) => io.fail_invalid(error),
                    None => Error::new(Side::Client, error),
                });
            }
            all.extend_from_slice(&data);
        }
        Ok(all.freeze())
    }
}

impl BodyIo<'_> {
    fn fail_invalid(&mut self, error: ParseError) -> Error {
        self.state.failure = Some(BodyFailure::Invalid(error.clone()));
        Error::new(Side::Client, error)
    }

    /// Reads more body bytes into the buffer, sending `100 Continue` first if the client
    /// is waiting for it (RFC 9110 §10.1.1).
    async fn fill(&mut self) -> Result<(), Error> {
        if self.state.continue_pending {
            self.state.continue_pending = false;
            if let Err(error) = super::io::write_all(self.stream, CONTINUE).await {
                self.state.failure = Some(BodyFailure::Gone);
                return Err(Error::new(Side::Client, error));
            }
        }
        let deadline = Instant::now() + self.state.timeout;
        match super::io::read_some(self.stream, self.rbuf, self.state.read_size, deadline).await {
            Ok(0) => {
                self.state.failure = Some(BodyFailure::Gone);
                Err(Error::new(
                    Side::Client,
                    ErrorKind::Closed("before the body was complete"),
                ))
            }
            Ok(_) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                self.state.failure = Some(BodyFailure::Timeout);
                Err(Error::new(
                    Side::Client,
                    ErrorKind::Timeout("reading the request body"),
                ))
            }
            Err(error) => {
                self.state.failure = Some(BodyFailure::Gone);
                Err(Error::new(Side::Client, error))
            }
        }
    }
}

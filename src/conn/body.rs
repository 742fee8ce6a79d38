//! Bodies at the boundary, as `http_body::Body` (http-body 1.x, `Data = Bytes`, trailers as
//! frames): [`Body`], what a handler answers with or a client sends (empty, bytes in memory,
//! or any body, boxed), and [`Incoming`], what a connection hands over (a server's request
//! body, a client's response body), streamed as it arrives.
//!
//! Owns the body types and their streaming contracts. It must not decide framing on the
//! wire (the connection derives `Content-Length` / chunked from a body's size hint) and must
//! not buffer a body whole.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

use super::h1::server::RequestCtx;
use super::pipe;
use crate::error::{BoxError, Error, ErrorKind, Side};

/// A body to send: nothing, bytes in memory (no allocation beyond the bytes), or any
/// `http_body::Body` (boxed once). A handler's response body and a client's request body.
pub struct Body {
    kind: Kind,
}

enum Kind {
    Empty,
    /// Taken when polled.
    Full(Option<Bytes>),
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

impl Body {
    /// No body (`Content-Length: 0`, or nothing at all where the status has no body).
    pub fn empty() -> Self {
        Body { kind: Kind::Empty }
    }

    /// Any body: its frames are sent as they come, its size hint decides the framing
    /// (`Content-Length` when exact, chunked otherwise). An error aborts the message: the
    /// connection closes without completing it, so a truncated body is never presented as
    /// complete.
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Body {
            kind: Kind::Boxed(body.map_err(Into::into).boxed_unsync()),
        }
    }

    /// A body fed by another task through the returned sender; `length` is the exact total
    /// if known. It ends when [`BodySender::finish`] is called; if the sender is dropped
    /// without it, the body fails (the message is aborted, never presented as complete).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::BodyExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (mut sender, body) = hopline::Body::channel(None);
    /// tokio::spawn(async move {
    ///     sender.send(Bytes::from("one ")).await.unwrap(); // waits while the reader is behind
    ///     sender.send(Bytes::from("two")).await.unwrap();
    ///     sender.finish();
    /// });
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "one two");
    /// # }
    /// ```
    pub fn channel(length: Option<u64>) -> (BodySender, Body) {
        let (sender, receiver) = pipe::channel(length, Side::Local);
        let body = Body::new(Incoming::from_pipe(receiver));
        (BodySender { sender }, body)
    }

    /// The bytes of a body held in memory (not yet sent), without consuming it.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match &self.kind {
            Kind::Full(bytes) => bytes.as_ref(),
            _ => None,
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Empty => f.write_str("Body::Empty"),
            Kind::Full(bytes) => write!(
                f,
                "Body::Full({} bytes)",
                bytes.as_ref().map_or(0, Bytes::len)
            ),
            Kind::Boxed(_) => f.write_str("Body::Boxed"),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            Kind::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            Kind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Boxed(body) => body.size_hint(),
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body {
            kind: Kind::Full(Some(bytes)),
        }
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Body::from(Bytes::from_static(text.as_bytes()))
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Body::from(Bytes::from_static(bytes))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Body::from(Bytes::from(text))
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body::from(Bytes::from(bytes))
    }
}

impl From<Incoming> for Body {
    fn from(incoming: Incoming) -> Self {
        if incoming.is_end_stream() {
            return Body::empty();
        }
        Body::new(incoming)
    }
}

/// The sending half of [`Body::channel`].
#[derive(Debug)]
pub struct BodySender {
    sender: pipe::Sender,
}

/// The receiving side of a body channel went away (the message was abandoned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the body is no longer being sent")]
pub struct BodyClosed;

impl BodySender {
    /// Sends body bytes, waiting while the receiver is behind (backpressure).
    pub async fn send(&mut self, data: Bytes) -> Result<(), BodyClosed> {
        self.sender.send(Frame::data(data)).await
    }

    /// Sends trailers and ends the body.
    pub async fn send_trailers(mut self, trailers: HeaderMap) -> Result<(), BodyClosed> {
        self.sender.send(Frame::trailers(trailers)).await?;
        self.sender.finish();
        Ok(())
    }

    /// Ends the body normally.
    pub fn finish(self) {
        self.sender.finish();
    }

    /// Aborts the body: the message is cut short, never presented as complete.
    pub fn abort(self, error: BoxError) {
        self.sender
            .abort(Error::new(Side::Local, ErrorKind::Body(error)));
    }
}

/// A body received from a peer: a server's request body, a client's response body. It
/// streams as it arrives: polling it is what reads it (through the connection that owns
/// it), so a slow consumer slows the peer down (backpressure). Its size hint is exact
/// when the message said its length.
///
/// Errors say which side failed ([`crate::Error::side`]): a request body that stalls or is
/// malformed is the client's, a response body cut short the upstream's.
pub struct Incoming {
    kind: IncomingKind,
    /// What the connection knows about the message this body belongs to.
    about: About,
}

/// What an [`Incoming`] carries about its message (no allocation: it moves with the body).
enum About {
    Nothing,
    /// A server's request: what the server parsed.
    Request(RequestCtx),
    /// A client's response: how it was obtained.
    Response(Exchange),
}

/// How a client's response was obtained ([`Incoming::exchange`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// The connection's number within its client.
    pub connection: u64,
    /// Whether the connection had served an earlier request.
    pub reused: bool,
    /// Whether the request was sent again after a failure without an answer.
    pub retried: bool,
    /// The server's address.
    pub peer: std::net::SocketAddr,
}

enum IncomingKind {
    Empty,
    /// Received whole already (taken when polled).
    Full(Option<Bytes>),
    /// Fed by another task or by the owning connection's loop (a request body on a server
    /// connection, a pipelined response).
    Pipe(pipe::Receiver),
    /// Read from a connection it owns while it is polled (a client's response body).
    Owned(Pin<Box<dyn http_body::Body<Data = Bytes, Error = Error> + Send>>),
}

impl Incoming {
    /// A message without a body.
    pub fn empty() -> Self {
        Incoming::of(IncomingKind::Empty)
    }

    fn of(kind: IncomingKind) -> Self {
        Incoming {
            kind,
            about: About::Nothing,
        }
    }

    pub(crate) fn full(bytes: Bytes) -> Self {
        Incoming::of(IncomingKind::Full(Some(bytes)))
    }

    pub(crate) fn from_pipe(receiver: pipe::Receiver) -> Self {
        Incoming::of(IncomingKind::Pipe(receiver))
    }

    pub(crate) fn with_ctx(mut self, ctx: RequestCtx) -> Self {
        self.about = About::Request(ctx);
        self
    }

    pub(crate) fn with_exchange(mut self, exchange: Exchange) -> Self {
        self.about = About::Response(exchange);
        self
    }

    /// What the server parsed about the request this body belongs to (a server's request
    /// body; `None` on a client's response body). See also [`RequestCtx::of`].
    pub fn ctx(&self) -> Option<&RequestCtx> {
        match &self.about {
            About::Request(ctx) => Some(ctx),
            _ => None,
        }
    }

    /// How the response this body belongs to was obtained: which connection, reused or
    /// not, retried or not (a client's response body; `None` on a server's request body).
    pub fn exchange(&self) -> Option<Exchange> {
        match &self.about {
            About::Response(exchange) => Some(*exchange),
            _ => None,
        }
    }

    /// A body read by polling `body`, which owns whatever it reads from.
    pub(crate) fn owned(
        body: impl http_body::Body<Data = Bytes, Error = Error> + Send + 'static,
    ) -> Self {
        Incoming::of(IncomingKind::Owned(Box::pin(body)))
    }

    /// The next frame; `None` at the end of the body.
    pub async fn frame(&mut self) -> Option<Result<Frame<Bytes>, Error>> {
        BodyExt::frame(self).await
    }

    /// Reads the whole body into memory, refusing more than `max` bytes.
    pub async fn bytes(mut self, max: u64) -> Result<Bytes, Error> {
        let too_large = || {
            Error::new(
                Side::Local,
                ErrorKind::Parse(crate::wire::ParseError::BodyTooLarge { limit: max }),
            )
        };
        if self.size_hint().lower() > max {
            return Err(too_large());
        }
        let mut all = bytes::BytesMut::new();
        while let Some(frame) = self.frame().await {
            if let Ok(data) = frame?.into_data() {
                if all.len() as u64 + data.len() as u64 > max {
                    return Err(too_large());
                }
                all.extend_from_slice(&data);
            }
        }
        Ok(all.freeze())
    }

    /// Reads the body to its end, discarding it; returns its length.
    pub async fn discard(mut self) -> Result<u64, Error> {
        let mut length = 0;
        while let Some(frame) = self.frame().await {
            if let Ok(data) = frame?.into_data() {
                length += data.len() as u64;
            }
        }
        Ok(length)
    }
}

impl Default for Incoming {
    fn default() -> Self {
        Incoming::empty()
    }
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("size_hint", &self.size_hint())
            .finish_non_exhaustive()
    }
}

impl http_body::Body for Incoming {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match &mut self.kind {
            IncomingKind::Empty => Poll::Ready(None),
            IncomingKind::Full(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            IncomingKind::Pipe(receiver) => receiver.poll_frame(cx),
            IncomingKind::Owned(body) => body.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            IncomingKind::Empty => true,
            IncomingKind::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            IncomingKind::Pipe(receiver) => receiver.is_end_stream(),
            IncomingKind::Owned(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            IncomingKind::Empty => SizeHint::with_exact(0),
            IncomingKind::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            IncomingKind::Pipe(receiver) => receiver.size_hint(),
            IncomingKind::Owned(body) => body.size_hint(),
        }
    }
}

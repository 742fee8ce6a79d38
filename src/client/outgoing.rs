//! A request as this hop sends it: its destination (the pool key), the target as written on
//! the wire, `Host`, and its body — whole in memory (so it can be sent again, or
//! pipelined) or a stream sent as it is produced.
//!
//! Owns turning an `http::Request` into that form, once. It must not write to connections.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, header};
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt;

use crate::conn::client::{ClientConn, is_idempotent, origin_form};
use crate::error::{BoxError, Error, ErrorKind, Side};
use crate::pool::Key;
use crate::wire::{Expectation, ParseError};

/// A request body up to this size, if the body yields it at once, is kept whole (and may
/// be sent again).
const WHOLE_LIMIT: usize = 64 * 1024;

/// Everything of a request but its body, as this hop sends it.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// Which origin (and pool) it goes to.
    pub key: Key,
    pub method: Method,
    /// The request target as written on the wire (origin-form; authority-form for
    /// CONNECT).
    pub target: Bytes,
    /// The `Host` to send unless `headers` carry one.
    pub authority: Option<http::uri::Authority>,
    /// The fields (framing and persistence fields are the connection's).
    pub headers: HeaderMap,
    /// May be sent again after failing unanswered (RFC 9110 §9.2.2), and pipelined.
    pub idempotent: bool,
    /// Waits for `100 Continue` before its body (RFC 9110 §10.1.1).
    pub expect_continue: bool,
    /// Asks to switch protocols (an `Upgrade` field), or opens a tunnel (CONNECT): its
    /// connection does not come back.
    pub upgrade: bool,
    /// Which pooled connection it prefers: the warmest for a [`super::LargeResponse`].
    pub prefer: crate::pool::Prefer,
}

impl Outgoing {
    /// The request's head as this hop sends it; the URI must be absolute `http://`.
    pub fn from_parts(parts: http::request::Parts, tls: u64) -> Result<Self, Error> {
        let uri = &parts.uri;
        let key = Key::from_uri(uri)
            .filter(|_| uri.scheme().is_some())
            .ok_or_else(|| {
                local(format!(
                    "`{uri}` is not an absolute http:// or https:// URI"
                ))
            })?;
        if !matches!(key.scheme(), "http" | "https") {
            return Err(local(format!(
                "{uri}: only http:// and https:// are supported"
            )));
        }
        let key = key.with_tls(tls);
        let target = if parts.method == Method::CONNECT {
            let authority = uri.authority().map_or("", |a| a.as_str());
            Bytes::copy_from_slice(authority.as_bytes())
        } else {
            origin_form(uri)
        };
        let prefer = match parts.extensions.get::<super::LargeResponse>() {
            Some(_) => crate::pool::Prefer::Warm,
            None => crate::pool::Prefer::RecentlyUsed,
        };
        Ok(Outgoing {
            prefer,
            key,
            idempotent: is_idempotent(&parts.method, &parts.headers),
            expect_continue: Expectation::of(&parts.headers) == Expectation::Continue,
            upgrade: parts.headers.contains_key(header::UPGRADE) || parts.method == Method::CONNECT,
            authority: uri.authority().cloned(),
            target,
            method: parts.method,
            headers: parts.headers,
        })
    }
}

fn local(message: String) -> Error {
    Error::new(Side::Local, ErrorKind::Body(message.into()))
}

/// A request whose body is in memory.
#[derive(Debug)]
pub(crate) struct Whole {
    pub head: Outgoing,
    pub body: Bytes,
}

/// A request body, once looked at.
pub(crate) enum RequestBody {
    /// It gave all its bytes at once (bytes in memory, an empty body).
    Whole(Bytes),
    /// It streams.
    Stream(Upload),
}

impl RequestBody {
    /// Takes what `body` yields at once, up to [`WHOLE_LIMIT`]: if that is all of it, the
    /// body is whole; otherwise it streams, starting with what was taken. A body that must
    /// wait for `100 Continue` is not touched (reading it may be what invites it, when it
    /// is relayed from a client): it streams.
    pub fn probe<B>(body: B, head: &Outgoing) -> Result<RequestBody, Error>
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if body.is_end_stream() {
            return Ok(RequestBody::Whole(Bytes::new()));
        }
        let length = body.size_hint().exact();
        let mut body: BoxedBody = Box::pin(body.map_err(Into::into));
        if head.expect_continue {
            return Ok(RequestBody::Stream(Upload {
                pending: VecDeque::new(),
                body: Some(body),
                length,
                finished: false,
            }));
        }
        let mut taken: VecDeque<Frame<Bytes>> = VecDeque::new();
        let mut size = 0;
        // A body that is ready now is read now; one that is not is polled again, with a
        // real waker, when it is sent.
        let mut cx = Context::from_waker(Waker::noop());
        while size <= WHOLE_LIMIT {
            match body.as_mut().poll_frame(&mut cx) {
                Poll::Ready(None) => return Ok(RequestBody::Whole(concat(taken))),
                Poll::Ready(Some(Ok(frame))) => {
                    size += frame.data_ref().map_or(0, Bytes::len);
                    taken.push_back(frame);
                }
                Poll::Ready(Some(Err(error))) => return Err(body_error(error)),
                Poll::Pending => break,
            }
        }
        Ok(RequestBody::Stream(Upload {
            pending: taken,
            body: Some(body),
            length,
            finished: false,
        }))
    }
}

type BoxedBody = Pin<Box<dyn HttpBody<Data = Bytes, Error = BoxError> + Send>>;

/// The data frames of a body that ended without trailers, as one piece (no copy for one).
fn concat(mut frames: VecDeque<Frame<Bytes>>) -> Bytes {
    if frames.len() == 1 {
        return frames
            .pop_front()
            .and_then(|f| f.into_data().ok())
            .unwrap_or_default();
    }
    let mut all = BytesMut::new();
    for frame in frames {
        if let Ok(data) = frame.into_data() {
            all.extend_from_slice(&data);
        }
    }
    all.freeze()
}

/// A body error from the caller's body: its own [`Error`] if it is one (a request body
/// relayed from a client keeps its side), else a local one.
pub(crate) fn body_error(error: BoxError) -> Error {
    match error.downcast::<Error>() {
        Ok(error) => *error,
        Err(other) => Error::new(Side::Local, ErrorKind::Body(other)),
    }
}

/// A request body on its way out: frames already taken, then the rest of the body.
pub(crate) struct Upload {
    pending: VecDeque<Frame<Bytes>>,
    body: Option<BoxedBody>,
    /// The exact length of the whole body, if known.
    length: Option<u64>,
    /// Every frame is queued on the connection; only writing remains.
    finished: bool,
}

/// Why an upload stopped.
pub(crate) enum UploadError {
    /// Writing to the server failed (it may have answered and stopped reading).
    Write(Error),
    /// Reading the response failed (timed out, malformed, the connection closed): there is
    /// no answer to wait for.
    Read(Error),
    /// The body being sent failed.
    Body(Error),
}

impl UploadError {
    pub fn into_error(self) -> Error {
        match self {
            UploadError::Write(error) | UploadError::Read(error) | UploadError::Body(error) => {
                error
            }
        }
    }
}

impl From<Bytes> for Upload {
    fn from(bytes: Bytes) -> Self {
        let length = Some(bytes.len() as u64);
        let mut pending = VecDeque::new();
        if !bytes.is_empty() {
            pending.push_back(Frame::data(bytes));
        }
        Upload {
            pending,
            body: None,
            length,
            finished: false,
        }
    }
}

/// The frames already taken, then the rest of the body: how an HTTP/2 connection sends
/// it.
impl HttpBody for Upload {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.pending.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match self.body.as_mut() {
            Some(body) => body.as_mut().poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.body.as_ref().is_none_or(|body| body.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let pending: u64 = self
            .pending
            .iter()
            .filter_map(|frame| frame.data_ref().map(|d| d.len() as u64))
            .sum();
        match (self.length, &self.body) {
            (Some(length), _) => http_body::SizeHint::with_exact(length),
            (None, None) => http_body::SizeHint::with_exact(pending),
            (None, Some(body)) => {
                let mut hint = body.size_hint();
                hint.set_lower(hint.lower() + pending);
                hint
            }
        }
    }
}

impl Upload {
    /// The body's exact length, if known.
    pub fn length(&self) -> Option<u64> {
        self.length
    }

    /// Reads the whole body into memory, refusing more than `max` bytes (status 413).
    pub async fn collect(mut self, max: u64) -> Result<Bytes, Error> {
        let too_large = || Error::new(Side::Local, ParseError::BodyTooLarge { limit: max });
        let mut all = BytesMut::new();
        loop {
            let frame = match self.pending.pop_front() {
                Some(frame) => frame,
                None => match self.body.as_mut() {
                    Some(body) => match body.frame().await {
                        Some(frame) => frame.map_err(body_error)?,
                        None => break,
                    },
                    None => break,
                },
            };
            if let Ok(data) = frame.into_data() {
                if all.len() as u64 + data.len() as u64 > max {
                    return Err(too_large());
                }
                all.extend_from_slice(&data);
            }
        }
        Ok(all.freeze())
    }

    /// Sends what the body yields while the connection takes it. Ready once the body has
    /// ended and all of it is written.
    pub fn poll_send(
        &mut self,
        conn: &mut ClientConn,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UploadError>> {
        loop {
            if self.finished || conn.wants_flush() {
                match conn.poll_flush(cx) {
                    Poll::Ready(Ok(())) if self.finished => return Poll::Ready(Ok(())),
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(UploadError::Write(error))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let frame = match self.pending.pop_front() {
                Some(frame) => frame,
                None => match self.body.as_mut().map(|body| body.as_mut().poll_frame(cx)) {
                    None | Some(Poll::Ready(None)) => {
                        conn.finish_body(None);
                        self.finished = true;
                        continue;
                    }
                    Some(Poll::Ready(Some(Ok(frame)))) => frame,
                    Some(Poll::Ready(Some(Err(error)))) => {
                        conn.abandon_body();
                        return Poll::Ready(Err(UploadError::Body(body_error(error))));
                    }
                    Some(Poll::Pending) => {
                        // Waiting on the body: let the server have what is queued.
                        return match conn.poll_flush(cx) {
                            Poll::Ready(Err(error)) => Poll::Ready(Err(UploadError::Write(error))),
                            _ => Poll::Pending,
                        };
                    }
                },
            };
            match frame.into_data() {
                Ok(data) => {
                    if let Err(error) = conn.push_body(data) {
                        return Poll::Ready(Err(UploadError::Write(error)));
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        conn.finish_body(Some(&trailers));
                        self.finished = true;
                    }
                }
            }
        }
    }
}

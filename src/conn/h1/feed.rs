//! The request body of a server connection, fed to whoever reads it: when the reader asks
//! for a frame, the next one is decoded from the connection's buffer, and the socket is read
//! only when the buffer runs dry. So a body nobody reads is not read (and `100 Continue` is
//! sent only when someone does), and a body that is read while the response streams (a
//! handler that answers with the request body) flows both ways in the connection's one task.
//!
//! Owns the request body's progress: its decoder, size limit, timeout, `100 Continue` and
//! how it failed. It must not decide what the connection answers (the server loop does,
//! from [`BodyFailure`]).

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use http_body::Frame;
use tokio::io::AsyncReadExt;
use tokio::time::{Instant, Sleep};

use crate::conn::body::Incoming;
use crate::conn::io::make_room;
use crate::conn::pipe;
use crate::error::{Error, ErrorKind, Side};
use crate::transport::Stream;
use crate::wire::{BodyDecoder, BodyEvent, BodyFraming, ChunkedLimits, ParseError};

/// The interim response a client waiting with `Expect: 100-continue` gets.
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Where `Expect: 100-continue` stands (RFC 9110 §10.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Continue {
    /// Not asked for (or HTTP/1.0).
    NotExpected,
    /// The client waits for it before sending the body.
    Owed,
    /// Sent.
    Sent,
}

/// How a request body ended, when it did not end well; the connection answers accordingly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BodyFailure {
    /// Malformed framing or over a limit: answer with this error, then close.
    Invalid(ParseError),
    /// No byte arrived within the body timeout: 408, then close.
    Timeout,
    /// The client closed or reset mid-body: nothing to answer, close.
    Gone,
}

/// Limits and sizes a feed works with (from the server's configuration).
#[derive(Debug, Clone, Copy)]
pub(super) struct FeedLimits {
    pub chunked: ChunkedLimits,
    pub max_body: Option<u64>,
    pub timeout: Duration,
    pub read_size: usize,
}

/// One request body on its way from the socket to its reader.
pub(super) struct BodyFeed {
    /// To the reader; taken when the body ends.
    sender: Option<pipe::Sender>,
    pub decoder: BodyDecoder,
    received: u64,
    limits: FeedLimits,
    pub expect: Continue,
    /// The body timeout, created when a read first has to wait.
    timer: Option<Pin<Box<Sleep>>>,
    pub failure: Option<BodyFailure>,
}

impl BodyFeed {
    /// A feed for a body with `framing` (not empty) and the body its reader gets.
    pub fn open(framing: BodyFraming, limits: FeedLimits, expect: Continue) -> (Self, Incoming) {
        let length = match framing {
            BodyFraming::Length(n) => Some(n),
            _ => None,
        };
        let (sender, receiver) = pipe::channel(length, Side::Client);
        let feed = BodyFeed {
            sender: Some(sender),
            decoder: BodyDecoder::new(framing, limits.chunked),
            received: 0,
            limits,
            expect,
            timer: None,
            failure: None,
        };
        (feed, Incoming::from_pipe(receiver))
    }

    /// Whether the whole body has been decoded without fault.
    pub fn is_done(&self) -> bool {
        self.failure.is_none() && self.decoder.is_done()
    }

    /// Whether someone may still read the body (its [`Incoming`] is alive).
    pub fn is_wanted(&self) -> bool {
        self.sender.as_ref().is_some_and(|s| !s.is_closed())
    }

    /// Stops feeding: the reader, if any, sees the body fail. The connection then settles
    /// what is left itself.
    pub fn abandon(&mut self) {
        if let Some(sender) = self.sender.take() {
            sender.abort(Error::new(
                Side::Local,
                ErrorKind::Closed("the response ended before the request body was read"),
            ));
        }
    }

    /// Feeds the reader as far as it asks and the socket allows; `true` if anything
    /// happened (a frame handed over, bytes read, `100 Continue` queued on `out`).
    pub fn poll(
        &mut self,
        stream: &mut Stream,
        rbuf: &mut BytesMut,
        out: &mut Vec<u8>,
        cx: &mut Context<'_>,
    ) -> bool {
        let mut progressed = false;
        loop {
            let Some(sender) = self.sender.as_mut() else {
                return progressed;
            };
            match sender.poll_want(cx) {
                Poll::Ready(Ok(())) => {}
                // Nobody reads it (not yet, or not any more).
                Poll::Ready(Err(_)) | Poll::Pending => return progressed,
            }
            if self.expect == Continue::Owed {
                out.extend_from_slice(CONTINUE);
                self.expect = Continue::Sent;
                progressed = true;
            }
            match self.decoder.decode(rbuf) {
                Ok(Some(BodyEvent::Data(data))) => {
                    self.received += data.len() as u64;
                    if let Some(limit) = self.limits.max_body
                        && self.received > limit
                    {
                        self.fail(BodyFailure::Invalid(ParseError::BodyTooLarge { limit }));
                        return true;
                    }
                    sender.put(Frame::data(data));
                    if self.decoder.is_done() {
                        self.finish();
                    }
                    return true;
                }
                Ok(Some(BodyEvent::Trailers(trailers))) => {
                    sender.put(Frame::trailers(trailers));
                    self.finish();
                    return true;
                }
                Ok(Some(BodyEvent::End)) => {
                    self.finish();
                    return true;
                }
                Ok(None) => match self.poll_read(stream, rbuf, cx) {
                    Poll::Ready(Ok(())) => progressed = true,
                    Poll::Ready(Err(failure)) => {
                        self.fail(failure);
                        return true;
                    }
                    Poll::Pending => return progressed,
                },
                Err(error) => {
                    self.fail(BodyFailure::Invalid(error));
                    return true;
                }
            }
        }
    }

    /// Reads more of the body into `rbuf`, under the body timeout.
    fn poll_read(
        &mut self,
        stream: &mut Stream,
        rbuf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), BodyFailure>> {
        make_room(rbuf, self.limits.read_size);
        match pin!(stream.read_buf(rbuf)).poll(cx) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Err(BodyFailure::Gone)),
            Poll::Ready(Ok(_)) => {
                if let Some(timer) = self.timer.as_mut() {
                    timer.as_mut().reset(Instant::now() + self.limits.timeout);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let timeout = self.limits.timeout;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(BodyFailure::Timeout)),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(sender) = self.sender.take() {
            sender.finish();
        }
        self.timer = None;
    }

    fn fail(&mut self, failure: BodyFailure) {
        let error = match &failure {
            BodyFailure::Invalid(error) => Error::new(Side::Client, error.clone()),
            BodyFailure::Timeout => {
                Error::new(Side::Client, ErrorKind::Timeout("reading the request body"))
            }
            BodyFailure::Gone => Error::new(
                Side::Client,
                ErrorKind::Closed("before the body was complete"),
            ),
        };
        if let Some(sender) = self.sender.take() {
            sender.abort(error);
        }
        self.failure = Some(failure);
        self.timer = None;
    }
}

//! One request on one connection, from its head to the end of its response body:
//! 1. the head, framed from the body's length ([`outgoing_request_framing`]);
//! 2. with `Expect: 100-continue`, a bounded wait for `100 Continue` (a final answer
//!    instead means the body is not sent);
//! 3. the body, streamed while the connection is watched for an answer: one that arrives
//!    first (RFC 9112 §9.5) stops the upload if it is an error, and streams alongside it
//!    if it is a success (a server that answers while it reads); a write that fails
//!    because the server stopped reading still gets its answer read;
//! 4. the response head, then a body that reads the connection as it is polled, finishes
//!    any upload still running, and gives the connection back at its end; a protocol
//!    switch hands the connection itself over instead.
//!
//! Owns that sequence. It must not choose connections or decide retries (that is
//! [`super::Client`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

use super::Lease;
use super::outgoing::{Outgoing, Upload, UploadError};
use crate::conn::Incoming;
use crate::conn::client::{ContinueOutcome, Persistence};
use crate::conn::upgrade::ClientUpgrade;
use crate::error::{Error, ErrorKind, Side};
use crate::wire::{ResponseHead, outgoing_request_framing};

/// Whether this is the first time a request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    First,
    /// Sent again after failing unanswered.
    Retry,
}

/// A failed exchange, and whether any of the response had arrived (retry eligibility).
pub(crate) struct Failure {
    pub error: Error,
    pub response_started: bool,
}

/// Runs one exchange on `lease`; the response comes back once its head has arrived.
pub(crate) async fn run(
    mut lease: Lease,
    head: &Outgoing,
    body: Upload,
    persistence: Persistence,
    attempt: Attempt,
) -> Result<Response<Incoming>, Failure> {
    let exchange = lease.exchange(attempt);
    let fail = |lease: &Lease, error: Error| Failure {
        response_started: lease.conn().response_started(),
        error,
    };
    let conn = lease.conn_mut();
    let framing =
        outgoing_request_framing(&head.method, conn.version(), body.length()).ok_or_else(|| {
            Error::new(
                Side::Local,
                ErrorKind::Body("an HTTP/1.0 hop needs the body's length".into()),
            )
        });
    let written = framing.and_then(|framing| {
        conn.write_head(
            &head.method,
            &head.target,
            head.authority.as_ref().map(|a| a.as_str()),
            &head.headers,
            framing,
            persistence,
        )
    });
    if let Err(error) = written {
        return Err(fail(&lease, error));
    }
    let has_body = lease.conn().is_writing_body();
    if has_body && head.expect_continue && lease.conn().version() == Version::HTTP_11 {
        let conn = lease.conn_mut();
        // Boxed: the rare path must not grow every request's future.
        let outcome = Box::pin(async {
            conn.flush().await?;
            conn.await_continue().await
        })
        .await;
        match outcome {
            Ok(ContinueOutcome::SendBody) => {}
            Ok(ContinueOutcome::Final(answer)) => {
                lease.conn_mut().abandon_body();
                return Ok(respond(lease, &head.method, *answer, None, exchange));
            }
            Err(error) => return Err(fail(&lease, error)),
        }
    }
    let mut upload = Some(body);
    let answer =
        std::future::poll_fn(|cx| poll_send_and_read(lease.conn_mut(), &mut upload, cx)).await;
    match answer {
        Ok(answer) => {
            // An answer before the body was sent: a success reads alongside the rest of
            // the upload; anything else means the server does not want the rest.
            if upload.is_some() && !answer.status.is_success() {
                upload = None;
                lease.conn_mut().abandon_body();
            }
            Ok(respond(lease, &head.method, answer, upload, exchange))
        }
        Err(UploadError::Write(error)) if error.side == Side::Upstream => {
            // RFC 9112 §9.5: a server may answer before it has read the whole body (a
            // 413, say) and stop reading; writing then fails. Its answer is the one to
            // return, if it came.
            lease.conn_mut().abandon_body();
            match Box::pin(lease.conn_mut().read_head()).await {
                Ok(answer) => Ok(respond(lease, &head.method, answer, None, exchange)),
                Err(_) => Err(fail(&lease, error)),
            }
        }
        Err(failure) => {
            lease.conn_mut().abandon_body();
            Err(fail(&lease, failure.into_error()))
        }
    }
}

/// Sends the upload (until it is done, when `upload` becomes `None`) while watching for
/// the response head.
fn poll_send_and_read(
    conn: &mut crate::conn::ClientConn,
    upload: &mut Option<Upload>,
    cx: &mut Context<'_>,
) -> Poll<Result<ResponseHead, UploadError>> {
    if let Some(sending) = upload.as_mut() {
        match sending.poll_send(conn, cx) {
            Poll::Ready(Ok(())) => *upload = None,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => {}
        }
    }
    conn.poll_head(cx).map_err(UploadError::Read)
}

/// The response to hand back: its body reads the connection (finishing the upload, if
/// one still runs); a switch of protocols hands the connection over in the extensions.
fn respond(
    lease: Lease,
    method: &Method,
    answer: ResponseHead,
    upload: Option<Upload>,
    exchange: super::Exchange,
) -> Response<Incoming> {
    let switching = answer.status == StatusCode::SWITCHING_PROTOCOLS
        || (method == Method::CONNECT && answer.status.is_success());
    let mut response = Response::new(Incoming::empty().with_exchange(exchange));
    *response.status_mut() = answer.status;
    *response.version_mut() = answer.version;
    *response.headers_mut() = answer.headers;
    if switching {
        let (stream, read_buf) = lease.into_conn().into_parts();
        response
            .extensions_mut()
            .insert(ClientUpgrade::new(crate::conn::Upgraded {
                stream,
                read_buf,
            }));
    } else {
        let length = match answer.framing {
            crate::wire::BodyFraming::Empty => Some(0),
            crate::wire::BodyFraming::Length(n) => Some(n),
            _ => None,
        };
        if length == Some(0) && upload.is_none() {
            lease.finish();
        } else {
            *response.body_mut() = Incoming::owned(ResponseBody {
                lease: Some(lease),
                upload,
                remaining: length,
                timer: None,
            })
            .with_exchange(exchange);
        }
    }
    response
}

/// A response body read from its connection as it is polled; the connection goes back to
/// the pool when the body ends (or is closed if it cannot be reused). Dropping it early
/// closes the connection (a half-read response cannot be reused).
struct ResponseBody {
    /// `None` once the body has ended.
    lease: Option<Lease>,
    /// The rest of a request body still being sent.
    upload: Option<Upload>,
    /// Bytes still to come, when the length is known.
    remaining: Option<u64>,
    /// The read timeout, created only when a read has to wait.
    timer: Option<Pin<Box<Sleep>>>,
}

impl ResponseBody {
    /// The body ended: an upload still running is cut short (the connection is then not
    /// reused), and the connection goes back.
    fn end(&mut self) {
        let Some(mut lease) = self.lease.take() else {
            return;
        };
        if self.upload.take().is_some() {
            lease.conn_mut().abandon_body();
        }
        self.timer = None;
        lease.finish();
    }

    /// The body failed: the connection is dropped (closed).
    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.lease = None;
        self.upload = None;
        self.timer = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        let Some(lease) = this.lease.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(upload) = this.upload.as_mut() {
            match upload.poll_send(lease.conn_mut(), cx) {
                Poll::Ready(Ok(())) => this.upload = None,
                Poll::Ready(Err(error)) => return this.fail(error.into_error()),
                Poll::Pending => {}
            }
        }
        match lease.conn_mut().poll_frame(cx, &mut this.timer) {
            Poll::Ready(Ok(Some(frame))) => {
                let Some(data) = frame.data_ref() else {
                    this.end();
                    return Poll::Ready(Some(Ok(frame)));
                };
                let last = this.remaining.as_mut().is_some_and(|remaining| {
                    *remaining = remaining.saturating_sub(data.len() as u64);
                    *remaining == 0
                });
                // The last byte of a body of known length: its end is at hand (the decoder
                // needs no more input), so the connection goes back now and the body says
                // it has ended with its last frame (a server can mark that frame final).
                if last
                    && matches!(
                        lease.conn_mut().poll_frame(cx, &mut this.timer),
                        Poll::Ready(Ok(None))
                    )
                {
                    this.end();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Ok(None)) => {
                this.end();
                Poll::Ready(None)
            }
            Poll::Ready(Err(error)) => this.fail(error),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.lease.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (self.lease.is_some(), self.remaining) {
            (false, _) => SizeHint::with_exact(0),
            (true, Some(remaining)) => SizeHint::with_exact(remaining),
            (true, None) => SizeHint::default(),
        }
    }
}

//! The HTTP/2 client connection: one connection that many requests share at once, up to
//! the server's `MAX_CONCURRENT_STREAMS` (a request beyond it waits for a stream to end).
//! `h2`'s connection task runs on its own; [`H2Client`] is a cheap handle to it.
//!
//! Owns one connection's requests: a request turned into HTTP/2 (its `Host` becomes
//! `:authority`, HTTP/1.x-only fields dropped), its body sent with backpressure while the
//! response may already be arriving, the response body handed out as it is read, and
//! whether a failed request was left unprocessed by the server (refused, or above a
//! `GOAWAY`'s last stream: RFC 9113 §8.7, safe to send again). It must not know about
//! pools or choose connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body::Body as HttpBody;
use tokio::time::Instant;

use super::Http2Config;
use super::body::{InFlight, RecvBody, send_body};
use super::fields::{render_request, render_response, strip_connection_specific};
use crate::conn::Incoming;
use crate::conn::body::Exchange;
use crate::conn::status::{ClosedRecord, ConnSide, Hooks, Http2Event, Observer};
use crate::error::{BoxError, Error, ErrorKind, Side};
use crate::transport::Stream;

/// A shared HTTP/2 connection to one server. Clones share it.
#[derive(Clone)]
pub struct H2Client {
    send: h2::client::SendRequest<Bytes>,
    shared: Arc<Shared>,
}

/// What the handles and the connection task share.
struct Shared {
    id: u64,
    peer: SocketAddr,
    created: Instant,
    /// The connection task ended (closed, failed, or went away after a `GOAWAY`).
    closed: AtomicBool,
    requests: AtomicU64,
    /// Requests whose response is not done with yet.
    in_flight: Arc<AtomicUsize>,
    write_timeout: Duration,
    /// Shown the heads sent and received (`get -v`), if anything observes.
    observer: Option<Arc<dyn Observer>>,
}

/// A request that failed on an HTTP/2 connection.
#[derive(Debug)]
pub struct H2Failure {
    /// What failed.
    pub error: Error,
    /// The server did not process the request (a refused stream, or one above the last
    /// stream a `GOAWAY` named): it may be sent again on another connection.
    pub unprocessed: bool,
}

impl std::fmt::Debug for H2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Client")
            .field("id", &self.shared.id)
            .field("peer", &self.shared.peer)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl H2Client {
    /// Speaks HTTP/2 over `stream` (TLS with ALPN `h2`, or plaintext with prior knowledge):
    /// the preface and settings exchanged, the connection task spawned. The task reports
    /// the connection's end to `hooks`.
    pub async fn handshake(
        stream: Stream,
        id: u64,
        peer: SocketAddr,
        settings: &Http2Config,
        write_timeout: Duration,
        hooks: &Hooks,
    ) -> Result<H2Client, Error> {
        let (send, connection) = builder(settings)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|e| Error::new(Side::Upstream, e))?;
        let shared = Arc::new(Shared {
            id,
            peer,
            created: Instant::now(),
            closed: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            in_flight: Arc::new(AtomicUsize::new(0)),
            write_timeout,
            observer: hooks.observer.clone(),
        });
        if let Some(observer) = &hooks.observer {
            observer.opened(ConnSide::Upstream);
        }
        let task = shared.clone();
        let observer = hooks.observer.clone();
        tokio::spawn(async move {
            let ended = connection.await;
            task.closed.store(true, Ordering::Release);
            if let Some(observer) = observer {
                if let Err(error) = &ended
                    && error.is_go_away()
                    && error.is_remote()
                {
                    observer.http2(
                        ConnSide::Upstream,
                        Http2Event::GoAway {
                            sent: false,
                            reason: error.reason().map_or("other", super::reason_label),
                        },
                    );
                }
                observer.closed(&ClosedRecord {
                    side: ConnSide::Upstream,
                    reason: match &ended {
                        Ok(()) => "server_close",
                        Err(error) => error.reason().map_or("error", super::reason_label),
                    },
                    requests: task.requests.load(Ordering::Relaxed),
                    lifetime: task.created.elapsed(),
                    bytes_in: 0,
                    bytes_out: 0,
                    protocol: crate::conn::Protocol::Http2,
                    group: None,
                });
            }
        });
        Ok(H2Client { send, shared })
    }

    /// The connection's number within its client.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.shared.peer
    }

    /// When it was opened.
    pub fn created(&self) -> Instant {
        self.shared.created
    }

    /// Requests sent on it so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Whether the connection is still up (no `GOAWAY` ended it, no error).
    pub fn is_open(&self) -> bool {
        !self.shared.closed.load(Ordering::Acquire)
    }

    /// Takes it out of use: no new request starts on it (after the server left a request
    /// unprocessed, it is going away). Requests in flight finish.
    pub fn retire(&self) {
        self.shared.closed.store(true, Ordering::Release);
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// Whether another request would start at once (the server's stream limit not
    /// reached).
    pub fn has_capacity(&self) -> bool {
        self.is_open() && self.in_flight() < self.send.current_max_send_streams()
    }

    /// Sends `request` (an absolute URI; `Host`, if present, becomes `:authority`) and
    /// returns the response once its head has arrived; its body streams as it is read.
    /// The request body is sent alongside, as the server's window allows.
    pub async fn send<B>(
        &self,
        request: Request<B>,
        retried: bool,
    ) -> Result<Response<Incoming>, H2Failure>
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (head, body) = into_h2(request).map_err(|error| H2Failure {
            error,
            unprocessed: false,
        })?;
        let mut in_flight = InFlight::start(&self.shared.in_flight);
        let mut send = self.send.clone().ready().await.map_err(failure)?;
        let end = body.is_end_stream();
        if let Some(observer) = &self.shared.observer {
            observer.head_sent(ConnSide::Upstream, &render_request(&head));
        }
        let (response, mut stream) = send.send_request(head, end).map_err(failure)?;
        in_flight.opened(self.shared.observer.as_ref());
        let reused = self.shared.requests.fetch_add(1, Ordering::Relaxed) > 0;
        if !end {
            let write_timeout = self.shared.write_timeout;
            tokio::spawn(async move {
                if let Err(error) = send_body(&mut stream, body, None, write_timeout).await {
                    tracing::debug!(?error, "HTTP/2 request body not sent whole");
                }
            });
        }
        let response = response.await.map_err(|error| {
            in_flight.failed(&error);
            failure(error)
        })?;
        if let Some(observer) = &self.shared.observer {
            observer.head_received(ConnSide::Upstream, &render_response(&response));
        }
        let exchange = Exchange {
            connection: self.shared.id,
            reused,
            retried,
            peer: self.shared.peer,
        };
        Ok(into_incoming(response, exchange, in_flight))
    }
}

/// `h2`'s client settings from ours (no server push: nothing here would use it).
fn builder(settings: &Http2Config) -> h2::client::Builder {
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(settings.stream_window)
        .initial_connection_window_size(settings.connection_window)
        .max_frame_size(settings.max_frame_size)
        .max_header_list_size(settings.max_header_list_size)
        .max_send_buffer_size(settings.max_frame_size as usize * 4)
        .enable_push(false);
    builder
}

/// The request as HTTP/2 sends it: `:authority` from `Host` if there is one (a proxy's
/// client keeps the name it was asked for), else the URI's; no HTTP/1.x-only fields;
/// `Content-Length` when the body's length is known (so an HTTP/1.1 hop behind the server
/// need not chunk it).
fn into_h2<B: HttpBody>(request: Request<B>) -> Result<(Request<()>, B), Error> {
    let (mut parts, body) = request.into_parts();
    let invalid = |what: String| Error::new(Side::Local, ErrorKind::Body(what.into()));
    if parts.uri.scheme().is_none() || parts.uri.authority().is_none() {
        return Err(invalid(format!("`{}` is not an absolute URI", parts.uri)));
    }
    if let Some(host) = parts.headers.remove(header::HOST)
        && host.as_bytes()
            != parts
                .uri
                .authority()
                .map_or(&b""[..], |a| a.as_str().as_bytes())
    {
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.authority = Some(
            host.to_str()
                .ok()
                .and_then(|h| h.parse().ok())
                .ok_or_else(|| invalid(format!("Host {host:?} is not an authority")))?,
        );
        parts.uri = Uri::from_parts(uri).map_err(|e| invalid(e.to_string()))?;
    }
    strip_connection_specific(&mut parts.headers);
    if let Some(length) = body.size_hint().exact()
        && (length > 0 || !body.is_end_stream())
        && !parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        parts.headers.insert(header::CONTENT_LENGTH, length.into());
    }
    parts.version = Version::HTTP_2;
    Ok((Request::from_parts(parts, ()), body))
}

/// The response with its body as an [`Incoming`] read from the stream.
fn into_incoming(
    response: Response<h2::RecvStream>,
    exchange: Exchange,
    mut in_flight: InFlight,
) -> Response<Incoming> {
    let (parts, recv) = response.into_parts();
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v: &HeaderValue| v.to_str().ok()?.parse().ok());
    let body = if recv.is_end_stream() {
        in_flight.completed();
        Incoming::empty()
    } else {
        Incoming::owned(RecvBody::new(recv, Side::Upstream, length, None).counting(in_flight))
    };
    Response::from_parts(parts, body.with_exchange(exchange))
}

/// A request's failure, and whether the server left it unprocessed.
fn failure(error: h2::Error) -> H2Failure {
    let unprocessed = (error.is_go_away() && error.is_remote())
        || error.reason() == Some(h2::Reason::REFUSED_STREAM);
    H2Failure {
        error: Error::new(Side::Upstream, error),
        unprocessed,
    }
}

//! The HTTP/2 server connection: streams accepted from `h2` and each served by a clone of
//! the connection's tower `Service` in its own task (so one slow response holds back no
//! other), with the policy HTTP/1.x connections have — idle timeout (no open stream),
//! maximum requests and lifetime (a graceful `GOAWAY`, RFC 9113 §6.8, in two steps), the
//! listener's drain, write and body timeouts — and the defences `h2` leaves to its user.
//!
//! Owns one connection's streams from accept to the last frame of their responses. It
//! must not know about listeners, pools or configuration files.
//!
//! Defences, each with its bound (`h2` does the framing ones):
//! - **Rapid reset** (CVE-2023-44487): streams reset before they are accepted count against
//!   [`Http2Config::max_pending_reset_streams`] (`h2`: `GOAWAY ENHANCE_YOUR_CALM`); a stream
//!   reset after it was accepted stops its service at once; and the streams still being
//!   served may be at most twice `max_concurrent_streams`, else `GOAWAY ENHANCE_YOUR_CALM`.
//! - **CONTINUATION flood, oversized headers**: `h2` bounds the header block by
//!   `max_header_list_size` while it is still arriving.
//! - **SETTINGS and PING floods, window-update overflow**: `h2` answers without queueing
//!   (one pending PONG, SETTINGS acknowledged in order) and treats an overflowing window as
//!   a `FLOW_CONTROL_ERROR`.
//! - **A shut window** (a reader that never reads): each response waits for window at
//!   most the write timeout, then its stream is reset (`CANCEL`).

use crate::conn::lifetime::jittered_lifetime;
use crate::conn::panic::{CatchUnwind, Panicked, catching};
use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::SendStream;
use h2::server::{Connection, SendResponse};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as HttpBody;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tower_service::Service;

use super::Http2Config;
use super::body::{Finished, Polled, RecvBody, SendFailure, finish_now, send_body};
use super::fields::{check_request, strip_connection_specific};
use crate::conn::Incoming;
use crate::conn::h1::server::{
    CloseReason, ConnInfo, ConnSummary, RequestCtx, ServerConfig, error_response,
};
use crate::conn::shutdown::ShutdownListener;
use crate::conn::status::{
    ClosedRecord, ConnSide, ConnState, Hooks, Http2Event, LiveEntry, Observer, Protocol,
    RequestFields, RequestRecord, UpstreamNote,
};
use crate::error::{BoxError, Side};
use crate::transport::Stream;

/// Serves one HTTP/2 connection (after the preface was seen, or `h2` agreed by ALPN) with
/// `service` until it closes, and says how it went (to `hooks` too).
///
/// Every stream reaches the service as a `Request<Incoming>` (version `HTTP/2.0`, the
/// authority in its URI as hyper hands it over, a [`RequestCtx`] with the fields parsed
/// once) and is answered in its own task; the response loses the fields
/// HTTP/2 does not have (`Connection` and what it names, `Keep-Alive`,
/// `Transfer-Encoding`, ...) and gains `Date` and, when the body's length is known,
/// `Content-Length`.
pub async fn serve_h2<S, B>(
    stream: Stream,
    info: ConnInfo,
    service: S,
    config: &ServerConfig,
    shutdown: ShutdownListener,
    hooks: &Hooks,
) -> ConnSummary
where
    S: Service<Request<Incoming>, Response = Response<B>, Future: Send> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let live = hooks.live.as_ref().map(|live| {
        let entry = live.register(
            ConnSide::Downstream,
            info.id,
            info.peer,
            &stream,
            ConnState::Idle,
        );
        entry.status().set_protocol(Protocol::Http2);
        entry
    });
    if let Some(observer) = &hooks.observer {
        observer.opened(ConnSide::Downstream);
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(stream.tcp());
    let born = Instant::now();
    let mut conn = H2Conn {
        live,
        info,
        config,
        policy: Arc::new(StreamPolicy::new(config, hooks)),
        requests: 0,
        born,
    };
    let handshake = builder(&config.http2).handshake::<_, Bytes>(stream);
    let reason = match tokio::time::timeout(config.header_timeout, handshake).await {
        Err(_) => CloseReason::HeaderTimeout,
        Ok(Err(error)) => close_reason(&error),
        Ok(Ok(mut h2)) => {
            let reason = conn.drive(&mut h2, service, shutdown).await;
            // The socket is still open here (`h2` owns it): read the kernel's figures now.
            conn.report_closed(reason, fd);
            return conn.summary(reason);
        }
    };
    conn.report_closed(reason, fd);
    conn.summary(reason)
}

/// `h2`'s server settings from ours.
fn builder(settings: &Http2Config) -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(settings.max_concurrent_streams)
        .initial_window_size(settings.stream_window)
        .initial_connection_window_size(settings.connection_window)
        .max_frame_size(settings.max_frame_size)
        .max_header_list_size(settings.max_header_list_size)
        .max_pending_accept_reset_streams(settings.max_pending_reset_streams)
        .max_send_buffer_size(settings.max_frame_size as usize * 4);
    builder
}

/// What each stream's task needs from its connection (shared, read-only).
struct StreamPolicy {
    write_timeout: Duration,
    observer: Option<Arc<dyn Observer>>,
}

impl StreamPolicy {
    fn new(config: &ServerConfig, hooks: &Hooks) -> Self {
        StreamPolicy {
            write_timeout: config.write_timeout,
            observer: hooks.observer.clone(),
        }
    }
}

/// One HTTP/2 connection's state outside `h2`.
struct H2Conn<'a> {
    live: Option<LiveEntry>,
    info: ConnInfo,
    config: &'a ServerConfig,
    policy: Arc<StreamPolicy>,
    /// Streams accepted so far.
    requests: u64,
    born: Instant,
}

/// The streams of a connection still being served. Their tasks run on their own and
/// wake nobody when they end: they note when, and the connection reads it when its idle
/// timer fires (no work per stream in the connection's task).
#[derive(Debug)]
struct OpenStreams {
    count: AtomicUsize,
    born: Instant,
    /// When the last stream ended, milliseconds after `born`.
    last_end_ms: AtomicU64,
}

impl OpenStreams {
    fn new() -> Self {
        OpenStreams {
            count: AtomicUsize::new(0),
            born: Instant::now(),
            last_end_ms: AtomicU64::new(0),
        }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// When the connection last had something to do, if later than `since`: now while a
    /// stream is open, else when the last one ended.
    fn active_after(&self, since: Instant) -> Option<Instant> {
        if self.count() > 0 {
            return Some(Instant::now());
        }
        let ended = self.born + Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
        (ended > since).then_some(ended)
    }
}

/// One stream counted as open while this lives (however its task ends).
struct StreamGuard(Arc<OpenStreams>);

impl StreamGuard {
    fn open(streams: &Arc<OpenStreams>) -> Self {
        streams.count.fetch_add(1, Ordering::AcqRel);
        StreamGuard(streams.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let ended = self.0.born.elapsed().as_millis() as u64;
        self.0.last_end_ms.fetch_max(ended, Ordering::AcqRel);
        self.0.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why the connection is ending while its last streams finish (after a graceful GOAWAY).
type Ending = Option<CloseReason>;

/// Sets `timer` for `deadline` unless it is set for it already (`armed`).
fn arm(
    timer: Pin<&mut tokio::time::Sleep>,
    armed: &mut Option<Instant>,
    deadline: Option<Instant>,
) {
    if deadline != *armed {
        if let Some(deadline) = deadline {
            timer.reset(deadline);
        }
        *armed = deadline;
    }
}

impl H2Conn<'_> {
    /// Accepts streams and runs them until the connection ends; why it ended.
    async fn drive<T, S, B>(
        &mut self,
        h2: &mut Connection<T, Bytes>,
        service: S,
        mut shutdown: ShutdownListener,
    ) -> CloseReason
    where
        T: AsyncRead + AsyncWrite + Unpin,
        S: Service<Request<Incoming>, Response = Response<B>, Future: Send>
            + Clone
            + Send
            + 'static,
        S::Error: Into<BoxError>,
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let streams = Arc::new(OpenStreams::new());
        let mut ending: Ending = None;
        let mut idle_since = Instant::now();
        let mut keepalive = Keepalive::new(h2, &self.config.http2);
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        // The deadline the timer is set for (reset only when it changes or has fired).
        let mut armed = None;
        let mut batch = Vec::new();
        // Whether a GOAWAY went out: from then on `idle_since` counts the grace given to
        // the peer to finish (and to answer the GOAWAY's PING).
        let mut going = false;
        let mut signals = shutdown.signals();
        loop {
            if ending.is_some() && !going {
                going = true;
                idle_since = Instant::now();
            }
            let idle_timeout = shutdown.idle_timeout(self.config.keepalive_timeout);
            let (deadline, why) = self.next_deadline(idle_since, ending, idle_timeout);
            let deadline = keepalive.sooner(deadline);
            arm(timer.as_mut(), &mut armed, deadline);
            tokio::select! {
                biased;
                seen = poll_fn(|cx| shutdown.poll_signal(cx, signals)), if ending.is_none() => {
                    // The drain, or pressure (the loop applies the shorter idle timeout).
                    signals = seen;
                    ending = shutdown.is_started().then(|| self.go_away(h2, CloseReason::Shutdown)).flatten();
                }
                accepted = h2.accept() => match accepted {
                    Some(Ok(first)) => {
                        // Every stream that has arrived is taken before any is answered:
                        // their answers then leave in one write (each accept flushes).
                        batch.push(first);
                        let ended = take_arrived(h2, &mut batch);
                        ending = self.serve_batch(h2, &mut batch, &streams, &service, ending);
                        if let Some(end) = ended {
                            let why = || end.map_or(CloseReason::ClientClosed, |e| self.failed(&e));
                            return ending.unwrap_or_else(why);
                        }
                    }
                    Some(Err(error)) => return ending.unwrap_or_else(|| self.failed(&error)),
                    None => return ending.unwrap_or(CloseReason::ClientClosed),
                },
                pong = keepalive.pong() => {
                    if let Err(reason) = pong {
                        return ending.unwrap_or(reason);
                    }
                }
                () = &mut timer, if deadline.is_some() => {
                    armed = None;
                    if keepalive.due() {
                        if let Err(reason) = keepalive.ping() {
                            return reason;
                        }
                    } else {
                        let idle = (&mut idle_since, going);
                        ending = self.timed_out(h2, &streams, idle, why).or(ending);
                    }
                }
            }
        }
    }

    /// The connection's timer ran out for `why` (not a keep-alive PING): a connection that
    /// was not idle all along counts again from its last activity; after a `GOAWAY`
    /// (`going`), one with nothing left to finish closes without waiting for its peer;
    /// otherwise it ends for `why`. Returns why it is ending, if it now is.
    fn timed_out<T: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        h2: &mut Connection<T, Bytes>,
        streams: &Arc<OpenStreams>,
        (idle_since, going): (&mut Instant, bool),
        why: Option<CloseReason>,
    ) -> Ending {
        let idle = matches!(why, Some(CloseReason::IdleTimeout | CloseReason::Pressure));
        if (going || idle)
            && let Some(active) = streams.active_after(*idle_since)
        {
            *idle_since = active;
            self.show(streams.count());
            None
        } else if going {
            // Nothing left to finish, and the peer did not close after the GOAWAY (nor
            // answer its PING): close without waiting for it.
            h2.abrupt_shutdown(h2::Reason::NO_ERROR);
            None
        } else {
            why.and_then(|why| self.go_away(h2, why))
        }
    }

    /// Serves the streams taken together (each as far as it can at once, the rest in a
    /// task); why the connection is ending, if it now is: streams still being served past
    /// twice the stream limit are streams reset and reopened faster than served (rapid
    /// reset), and the last request allowed ends it gracefully.
    fn serve_batch<T, S, B>(
        &mut self,
        h2: &mut Connection<T, Bytes>,
        batch: &mut Vec<(Request<h2::RecvStream>, SendResponse<Bytes>)>,
        streams: &Arc<OpenStreams>,
        service: &S,
        mut ending: Ending,
    ) -> Ending
    where
        T: AsyncRead + AsyncWrite + Unpin,
        S: Service<Request<Incoming>, Response = Response<B>, Future: Send>
            + Clone
            + Send
            + 'static,
        S::Error: Into<BoxError>,
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let flood = 2 * self.config.http2.max_concurrent_streams as usize;
        for (request, respond) in batch.drain(..) {
            self.requests += 1;
            if streams.count() >= flood {
                // The rest of the batch is dropped: its streams are reset.
                return self.go_away(h2, CloseReason::Abuse);
            }
            let open = StreamGuard::open(streams);
            if let Some(task) = self.stream_job(request, respond, service.clone(), open) {
                // Boxed: spawning moves a future several times, and a proxied stream's is
                // kilobytes; a box moves as a pointer.
                tokio::spawn(Box::pin(task));
            }
            if ending.is_none() && self.at_max_requests() {
                ending = self.go_away(h2, CloseReason::MaxRequests);
            }
        }
        self.show(streams.count());
        ending
    }

    /// Ends the connection for `why`: a graceful `GOAWAY` in two steps (open streams
    /// finish), or at once with `ENHANCE_YOUR_CALM` for abuse. Reported; returns the
    /// reason the connection is ending for.
    fn go_away<T: AsyncRead + AsyncWrite + Unpin>(
        &self,
        h2: &mut Connection<T, Bytes>,
        why: CloseReason,
    ) -> Ending {
        if why == CloseReason::Abuse {
            h2.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
        } else {
            h2.graceful_shutdown();
        }
        self.event(Http2Event::GoAway {
            sent: true,
            reason: why.label(),
        });
        Some(why)
    }

    /// Why a connection `h2` ended with an error closed; a `GOAWAY` received is reported.
    fn failed(&self, error: &h2::Error) -> CloseReason {
        if error.is_go_away() && error.is_remote() {
            self.event(Http2Event::GoAway {
                sent: false,
                reason: error.reason().map_or("other", super::reason_label),
            });
        }
        close_reason(error)
    }

    fn event(&self, event: Http2Event) {
        if let Some(observer) = &self.policy.observer {
            observer.http2(ConnSide::Downstream, event);
        }
    }

    /// Whether the stream just accepted is the last one (maximum requests; a short-lived
    /// policy serves one stream per connection).
    fn at_max_requests(&self) -> bool {
        let max = if self.config.keep_alive {
            self.config.max_requests
        } else {
            Some(1)
        };
        max.is_some_and(|max| self.requests >= max)
    }

    /// When the connection should start ending, and why: idle (as far as it knows:
    /// [`OpenStreams::active_after`] is asked when the time comes) for the keep-alive
    /// timeout (`idle_timeout`, and whether pressure shortened it), or at its maximum
    /// lifetime. Once it is ending, when to stop waiting for the peer: the linger timeout
    /// after the GOAWAY, or after the last stream ended.
    fn next_deadline(
        &self,
        idle_since: Instant,
        ending: Ending,
        (idle_timeout, pressed): (Duration, bool),
    ) -> (Option<Instant>, Ending) {
        if ending.is_some() {
            // Ending: the peer has the linger time to finish (open streams extend it).
            return (Some(idle_since + self.config.linger_timeout), None);
        }
        let idle_reason = if pressed {
            CloseReason::Pressure
        } else {
            CloseReason::IdleTimeout
        };
        let idle_at = Some(idle_since + idle_timeout);
        let lifetime_at = self.config.max_lifetime.map(|max| {
            let jitter = self.config.max_lifetime_jitter;
            self.born + jittered_lifetime(max, jitter, self.info.id)
        });
        match (idle_at, lifetime_at) {
            (Some(i), Some(l)) if l <= i => (Some(l), Some(CloseReason::MaxLifetime)),
            (Some(i), _) => (Some(i), Some(idle_reason)),
            (None, Some(l)) => (Some(l), Some(CloseReason::MaxLifetime)),
            (None, None) => (None, None),
        }
    }

    /// Serves one stream as far as it can at once; the task that goes on with it, if any.
    /// The stream counts as open until it is served (`open`).
    fn stream_job<S, B>(
        &self,
        request: Request<h2::RecvStream>,
        respond: SendResponse<Bytes>,
        service: S,
        open: StreamGuard,
    ) -> Option<impl Future<Output = ()> + Send + 'static>
    where
        S: Service<Request<Incoming>, Response = Response<B>, Future: Send> + Send + 'static,
        S::Error: Into<BoxError>,
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let target = self.policy.observer.as_ref().map(|_| {
            let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
            Box::from(target)
        });
        let fields =
            (self.policy.observer.as_ref()).map(|_| Box::new(RequestFields::of(request.headers())));
        let job = StreamJob {
            policy: self.policy.clone(),
            respond,
            method: request.method().clone(),
            target,
            fields,
            conn: self.info.id,
            peer: self.info.peer,
            number: self.requests,
            started: Instant::now(),
            _open: open,
        };
        // The request is checked and handed to the service here, in the connection's
        // task, as hyper does; what cannot finish at once goes on in a task.
        job.serve_now(self.admit(request), service)
    }

    /// The request as the service gets it, or the status refusing it.
    fn admit(&self, request: Request<h2::RecvStream>) -> Result<Request<Incoming>, StatusCode> {
        let (mut parts, recv) = request.into_parts();
        let (fields, target_form) = check_request(&parts).map_err(|e| e.status())?;
        let length = fields
            .content_length
            .as_ref()
            .and_then(|l| l.as_ref().ok().copied());
        let max_body = self.config.max_body_bytes;
        if let (Some(length), Some(max)) = (length, max_body)
            && length > max
        {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        let ctx = RequestCtx {
            conn: self.info,
            number: self.requests,
            raw_head: Bytes::new(),
            fields,
            target_form,
        };
        if self.config.request_ctx_in_extensions {
            parts.extensions.insert(ctx.clone());
        }
        let body = if recv.is_end_stream() {
            Incoming::empty()
        } else {
            let body = RecvBody::new(recv, Side::Client, length, max_body)
                .with_timeout(self.config.body_timeout);
            Incoming::owned(body)
        };
        Ok(Request::from_parts(parts, body.with_ctx(ctx)))
    }

    /// Updates the live view: open streams, busy or idle.
    fn show(&self, open: usize) {
        if let Some(live) = &self.live {
            let status = live.status();
            status.set_streams(open as u32);
            status.set_requests(self.requests);
            status.set_state(if open == 0 {
                ConnState::Idle
            } else {
                ConnState::InRequest
            });
        }
    }

    fn report_closed(&self, reason: CloseReason, fd: std::os::fd::RawFd) {
        if let Some(observer) = &self.policy.observer {
            let (label, protocol) = (reason.label(), crate::conn::Protocol::Http2);
            let record = ClosedRecord::downstream(label, self.requests, self.born, fd, protocol);
            observer.closed(&record);
        }
    }

    fn summary(&self, reason: CloseReason) -> ConnSummary {
        ConnSummary {
            requests: self.requests,
            writes: 0,
            reason,
        }
    }
}

/// Streams taken with the one just accepted, at most.
const BATCH: usize = 64;

/// Takes the streams that have arrived already (no waiting) into `batch`, up to
/// [`BATCH`]. `Some` if the connection ended meanwhile (with its error, if any).
fn take_arrived<T: AsyncRead + AsyncWrite + Unpin>(
    h2: &mut Connection<T, Bytes>,
    batch: &mut Vec<(Request<h2::RecvStream>, SendResponse<Bytes>)>,
) -> Option<Option<h2::Error>> {
    // A context that wakes nobody is enough: the connection is polled again with the real
    // one right after the batch, before the task sleeps.
    let mut cx = polling_once();
    while batch.len() < BATCH {
        match h2.poll_accept(&mut cx) {
            Poll::Ready(Some(Ok(stream))) => batch.push(stream),
            Poll::Ready(Some(Err(error))) => return Some(Some(error)),
            Poll::Ready(None) => return Some(None),
            Poll::Pending => break,
        }
    }
    None
}

/// Keep-alive PINGs, when they are on: one every interval; the connection closes if the
/// answer to the last has not come by the next.
struct Keepalive {
    pings: Option<(h2::PingPong, Duration)>,
    next: Option<Instant>,
    awaiting: bool,
}

impl Keepalive {
    fn new<T: AsyncRead + AsyncWrite + Unpin>(
        h2: &mut Connection<T, Bytes>,
        settings: &Http2Config,
    ) -> Self {
        let pings = settings
            .keepalive_interval
            .and_then(|every| Some((h2.ping_pong()?, every)));
        Keepalive {
            next: pings.as_ref().map(|(_, every)| Instant::now() + *every),
            pings,
            awaiting: false,
        }
    }

    /// The earlier of `deadline` and the next ping.
    fn sooner(&self, deadline: Option<Instant>) -> Option<Instant> {
        match (self.next, deadline) {
            (Some(ping), Some(other)) => Some(ping.min(other)),
            (ping, other) => ping.or(other),
        }
    }

    fn due(&self) -> bool {
        self.next.is_some_and(|at| at <= Instant::now())
    }

    /// Sends the next ping; an error if the last one went unanswered.
    fn ping(&mut self) -> Result<(), CloseReason> {
        if self.awaiting {
            return Err(CloseReason::PingTimeout);
        }
        if let Some((pings, every)) = &mut self.pings {
            let _ = pings.send_ping(h2::Ping::opaque());
            self.awaiting = true;
            self.next = Some(Instant::now() + *every);
        }
        Ok(())
    }

    /// Ready when an awaited answer arrives (pending forever otherwise).
    async fn pong(&mut self) -> Result<(), CloseReason> {
        match &mut self.pings {
            Some((pings, _)) if self.awaiting => {
                poll_fn(|cx| pings.poll_pong(cx))
                    .await
                    .map_err(|_| CloseReason::Io)?;
                self.awaiting = false;
                Ok(())
            }
            _ => std::future::pending().await,
        }
    }
}

/// Why a connection `h2` ended with an error closed.
fn close_reason(error: &h2::Error) -> CloseReason {
    if error.is_io() {
        return CloseReason::Io;
    }
    match error.reason() {
        Some(h2::Reason::ENHANCE_YOUR_CALM) => CloseReason::Abuse,
        Some(h2::Reason::NO_ERROR) => CloseReason::ClientClosed,
        _ => CloseReason::Http2Error,
    }
}

/// One stream being served: what its task keeps beside the service's future and the
/// response body (kept small: the task is allocated, and moved, once per stream).
struct StreamJob {
    policy: Arc<StreamPolicy>,
    respond: SendResponse<Bytes>,
    method: Method,
    /// Path and query, for the observer (only when there is one).
    target: Option<Box<str>>,
    /// `User-Agent` and `Referer`, for the observer (only when there is one).
    fields: Option<Box<RequestFields>>,
    conn: u64,
    peer: std::net::SocketAddr,
    number: u64,
    started: Instant,
    _open: StreamGuard,
}

/// The service's answer, boxed once polled (it may not move after that).
type PendingAnswer<B> = Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send>>;

/// Where a stream's task takes over (when it was not served at once).
enum Stage<B> {
    /// The service's answer is pending.
    Answer(PendingAnswer<B>),
    /// Refused before the service, or the service failed: an error status.
    Refuse(StatusCode),
    /// The head is sent; the body goes on (starting with `first` if a frame was taken).
    Body {
        send: SendStream<Bytes>,
        body: Pin<Box<B>>,
        first: Option<Polled>,
        answered: Answered,
    },
}

/// What answering a stream came to, for the observer.
struct Answered {
    status: StatusCode,
    body_bytes: u64,
    /// Boxed: only a proxy with an observer notes it, and it would grow every stage.
    upstream: Option<Box<UpstreamNote>>,
}

/// A context for polling what is often ready at once, in the connection's task: whatever
/// is not ready is polled again in its own task, with a waker that works.
fn polling_once() -> Context<'static> {
    Context::from_waker(std::task::Waker::noop())
}

/// A response whose head is sent.
enum Headed<B> {
    /// Nothing follows (HEAD, 204, 304, an empty body).
    Done(Answered),
    /// The body follows.
    Body(SendStream<Bytes>, B, Answered),
}

impl StreamJob {
    fn event(&self, event: Http2Event) {
        if let Some(observer) = &self.policy.observer {
            observer.http2(ConnSide::Downstream, event);
        }
    }

    /// Serves the stream as far as it can without waiting, in the connection's task: the
    /// service called (it is nearly always ready: each stream has its own clone), its
    /// answer polled once, and a body in memory sent whole if the window has room. What
    /// must wait goes on in a task of its own, returned. (A task per stream costs an
    /// aligned allocation and a scheduling, which most answers — a small body, a static
    /// file's head, an error — do not need.)
    fn serve_now<S, B>(
        mut self,
        admitted: Result<Request<Incoming>, StatusCode>,
        service: S,
    ) -> Option<impl Future<Output = ()> + Send + 'static>
    where
        S: Service<Request<Incoming>, Response = Response<B>, Future: Send> + Send + 'static,
        S::Error: Into<BoxError>,
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.event(Http2Event::StreamOpened);
        // A panic in the service or in the body's first poll: this stream is answered 500
        // (nothing of its response has left), the connection goes on.
        let stage = catching(|| match admitted {
            Ok(request) => self.answer_now(request, service),
            Err(status) => Some(Stage::Refuse(status)),
        });
        let stage = match stage {
            Ok(stage) => stage?,
            Err(panicked) => {
                self.panicked(&panicked);
                Stage::Refuse(StatusCode::INTERNAL_SERVER_ERROR)
            }
        };
        Some(self.run(stage))
    }

    /// Calls the service and polls its answer once; `None` if the stream is served.
    fn answer_now<S, B>(&mut self, request: Request<Incoming>, mut service: S) -> Option<Stage<B>>
    where
        S: Service<Request<Incoming>, Response = Response<B>, Future: Send> + Send + 'static,
        S::Error: Into<BoxError>,
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut answer: Pin<Box<dyn Future<Output = _> + Send>> =
            match service.poll_ready(&mut polling_once()) {
                Poll::Ready(Ok(())) => {
                    let answer = service.call(request);
                    Box::pin(async move { answer.await.map_err(Into::into) })
                }
                Poll::Ready(Err(error)) => {
                    let error: BoxError = error.into();
                    tracing::debug!(%error, "service not ready; answering 500");
                    return Some(Stage::Refuse(StatusCode::INTERNAL_SERVER_ERROR));
                }
                Poll::Pending => Box::pin(async move {
                    poll_fn(|cx| service.poll_ready(cx))
                        .await
                        .map_err(Into::into)?;
                    service.call(request).await.map_err(Into::into)
                }),
            };
        match answer.as_mut().poll(&mut polling_once()) {
            Poll::Ready(Ok(response)) => self.respond_now(response),
            Poll::Ready(Err(error)) => {
                tracing::debug!(%error, "service failed; answering 500");
                Some(Stage::Refuse(StatusCode::INTERNAL_SERVER_ERROR))
            }
            Poll::Pending => Some(Stage::Answer(answer)),
        }
    }

    /// Sends a ready response: whole at once if its body is in memory and the window has
    /// room, else the head now and the body in a task. `None` if the stream is served. The
    /// body's first frame is polled before the head leaves, so that a body that panics at
    /// once is answered 500 instead.
    fn respond_now<B>(&mut self, response: Response<B>) -> Option<Stage<B>>
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (head, body, end, answered) = self.head_of(response);
        let mut body = Box::pin(body);
        let first = match end {
            true => Poll::Pending,
            false => body
                .as_mut()
                .poll_frame(&mut polling_once())
                .map(|frame| frame.map(|f| f.map_err(Into::<BoxError>::into))),
        };
        let Ok(mut send) = self.respond.send_response(head, end) else {
            return self.done(None);
        };
        if end {
            return self.done(Some(answered));
        }
        let first = match first {
            Poll::Pending => None,
            Poll::Ready(frame) => match finish_now(&mut send, frame, body.is_end_stream()) {
                Finished::Sent(body_bytes) => {
                    return self.done(Some(Answered {
                        body_bytes,
                        ..answered
                    }));
                }
                Finished::Failed(failure) => {
                    self.sent(Err(failure));
                    return self.done(Some(answered));
                }
                Finished::NotYet(frame) => Some(frame),
            },
        };
        Some(Stage::Body {
            send,
            body,
            first,
            answered,
        })
    }

    /// The stream's task, from where it took over.
    async fn run<B>(mut self, stage: Stage<B>)
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        // A panic here (a body that panics once its head is out): the stream is reset with
        // INTERNAL_ERROR, logged with its request and counted; the connection and its other
        // streams go on. The job outlives the panic: only `finish`'s future unwinds.
        let answered = match CatchUnwind::new(self.finish(stage)).await {
            Ok(answered) => answered,
            Err(panicked) => {
                self.panicked(&panicked);
                self.respond.send_reset(h2::Reason::INTERNAL_ERROR);
                self.event(Http2Event::Reset { by_peer: false });
                None
            }
        };
        self.done::<()>(answered);
    }

    /// Takes the stream from `stage` to its end.
    async fn finish<B>(&mut self, stage: Stage<B>) -> Option<Answered>
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        match stage {
            Stage::Answer(answer) => self.answer(answer).await,
            // Rare: boxed, so that every stream's task does not keep room for it.
            Stage::Refuse(status) => Box::pin(self.send(error_response(status))).await,
            Stage::Body {
                mut send,
                body,
                first,
                answered,
            } => {
                let sent = send_body(&mut send, body, first, self.policy.write_timeout).await;
                Some(Answered {
                    body_bytes: self.sent(sent),
                    ..answered
                })
            }
        }
    }

    /// Waits for the service's answer (dropping it if the client resets the stream
    /// first) and sends it.
    async fn answer<B>(&mut self, mut answer: PendingAnswer<B>) -> Option<Answered>
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let respond = &mut self.respond;
        let response = poll_fn(|cx| match catching(|| answer.as_mut().poll(cx)) {
            Ok(Poll::Ready(answer)) => Poll::Ready(Some(Ok(answer))),
            Ok(Poll::Pending) => respond.poll_reset(cx).map(|_| None),
            Err(panicked) => Poll::Ready(Some(Err(panicked))),
        })
        .await;
        match response {
            Some(Ok(Ok(response))) => self.send(response).await,
            Some(Ok(Err(error))) => {
                tracing::debug!(%error, "service failed; answering 500");
                Box::pin(self.send(error_response(StatusCode::INTERNAL_SERVER_ERROR))).await
            }
            Some(Err(panicked)) => {
                self.panicked(&panicked);
                Box::pin(self.send(error_response(StatusCode::INTERNAL_SERVER_ERROR))).await
            }
            None => {
                self.event(Http2Event::Reset { by_peer: true });
                None
            }
        }
    }

    /// Sends a response, head then body.
    async fn send<B>(&mut self, response: Response<B>) -> Option<Answered>
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        match self.send_head(response)? {
            Headed::Done(answered) => Some(answered),
            Headed::Body(mut send, body, answered) => {
                let sent = send_body(&mut send, body, None, self.policy.write_timeout).await;
                Some(Answered {
                    body_bytes: self.sent(sent),
                    ..answered
                })
            }
        }
    }

    /// Sends the head: HTTP/2's fields, `end` at once if nothing follows. `None` if the
    /// stream is gone.
    fn send_head<B: HttpBody>(&mut self, response: Response<B>) -> Option<Headed<B>> {
        let (head, body, end, answered) = self.head_of(response);
        let send = self.respond.send_response(head, end).ok()?;
        Some(if end {
            Headed::Done(answered)
        } else {
            Headed::Body(send, body, answered)
        })
    }

    /// A response's HTTP/2 head, its body, whether the stream ends with the head (HEAD,
    /// 204, 304, an empty body), and what to report of it.
    fn head_of<B: HttpBody>(&self, response: Response<B>) -> (Response<()>, B, bool, Answered) {
        let upstream = response
            .extensions()
            .get::<UpstreamNote>()
            .cloned()
            .map(Box::new);
        let (parts, body) = response.into_parts();
        let status = parts.status;
        let bodiless = self.method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let head = response_head(parts, &body, bodiless);
        let end = bodiless || body.is_end_stream();
        let answered = Answered {
            status,
            body_bytes: 0,
            upstream,
        };
        (head, body, end, answered)
    }

    /// A panic in the service or its body: logged with the request, counted. Only this
    /// stream fails (500, or reset once its head has left); the connection's other streams
    /// go on.
    fn panicked(&self, error: &Panicked) {
        tracing::error!(
            conn = self.conn,
            stream_request = self.number,
            method = %self.method,
            target = self.target.as_deref().unwrap_or(""),
            %error,
            "the service panicked; its stream fails"
        );
        if let Some(observer) = &self.policy.observer {
            observer.panicked(ConnSide::Downstream);
        }
    }

    /// The body bytes sent; a failure logged and counted.
    fn sent(&self, sent: Result<u64, SendFailure>) -> u64 {
        match sent {
            Ok(bytes) => return bytes,
            Err(SendFailure::Source(error)) => {
                tracing::debug!(%error, "response body failed; stream reset");
                self.event(Http2Event::Reset { by_peer: false });
            }
            Err(SendFailure::Peer(error)) => {
                tracing::trace!(%error, "client went away mid-response");
                if error.is_reset() {
                    self.event(Http2Event::Reset { by_peer: true });
                }
            }
            Err(SendFailure::Stalled) => {
                tracing::debug!("client's window stayed shut; stream reset");
                self.event(Http2Event::Reset { by_peer: false });
            }
        }
        0
    }

    /// The stream is over: reported (`None` for the stage, to make returns short).
    fn done<T>(&self, answered: Option<Answered>) -> Option<T> {
        self.event(Http2Event::StreamClosed);
        if let (Some(observer), Some(answered)) = (&self.policy.observer, answered) {
            observer.request(&RequestRecord {
                conn: self.conn,
                peer: self.peer,
                number: self.number,
                method: Some(&self.method),
                target: self.target.as_deref().unwrap_or(""),
                version: Version::HTTP_2,
                status: answered.status,
                body_bytes: answered.body_bytes,
                duration: self.started.elapsed(),
                upstream: answered.upstream.map(|note| *note),
                fields: self.fields.as_deref(),
            });
        }
        None
    }
}

/// The head of a response as HTTP/2 sends it: no connection-specific fields, a `Date`,
/// and `Content-Length` when the body's length is known and the handler did not say it.
fn response_head<B: HttpBody>(
    mut parts: http::response::Parts,
    body: &B,
    bodiless: bool,
) -> Response<()> {
    strip_connection_specific(&mut parts.headers);
    // One lookup per field (`entry`).
    parts.headers.entry(header::DATE).or_insert_with(date_value);
    let no_length = matches!(
        parts.status,
        StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
    ) || parts.status.is_informational();
    if !no_length
        && let Some(length) = body.size_hint().exact()
        && !(bodiless && length == 0)
    {
        let value = || content_length_value(length);
        parts
            .headers
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(value);
    }
    parts.version = Version::HTTP_2;
    Response::from_parts(parts, ())
}

thread_local! {
    /// The `Date` value for the current second.
    static DATE: RefCell<(u64, HeaderValue)> =
        const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
}

/// A `Content-Length` value; the last one made on this thread is reused (a server answers
/// many responses of the same size in a row: one asset, one error page): a counted
/// reference instead of a formatted allocation.
fn content_length_value(length: u64) -> HeaderValue {
    thread_local! {
        static LAST: RefCell<Option<(u64, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with(|cell| {
        let mut cell = cell.borrow_mut();
        match &*cell {
            Some((last, value)) if *last == length => value.clone(),
            _ => {
                let value = HeaderValue::from(length);
                *cell = Some((length, value.clone()));
                value
            }
        }
    })
}

/// The current `Date` value, formatted once a second per thread.
fn date_value() -> HeaderValue {
    let now = crate::conn::h1::server::coarse_unix_seconds();
    DATE.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.0 != now {
            let text = crate::wire::date::format_http_date(now);
            cell.1 = HeaderValue::from_bytes(&text).expect("an HTTP date is a valid value");
            cell.0 = now;
        }
        cell.1.clone()
    })
}

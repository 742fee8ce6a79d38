//! The server side of one HTTP/1.x connection: read requests, hand each to a tower
//! `Service<Request<Incoming>>`, write the responses in order, and decide after each
//! response whether the connection lives on.
//!
//! Owns keep-alive, pipelining, the idle / header / body / write timers, max requests,
//! max lifetime, `Expect: 100-continue`, error answers and the lingering close; the request
//! body is fed to its reader by [`super::feed`], in this connection's task, so a service may
//! answer with the request body itself and both stream at once. It must not know about
//! listeners, pools or configuration files.
//!
//! How a connection spends its life:
//! - **Idle** (no byte of a next request has arrived): a small future waits for input,
//!   the idle (keep-alive) timer or shutdown. Buffers are released first, so an idle
//!   connection holds no buffer memory.
//! - **Busy** (boxed, so that its size does not count while idle): parse every request
//!   already buffered, call the handler, append the response to one write buffer. The
//!   buffer is flushed before the connection would wait on the client (so responses to a
//!   pipelined burst leave in one write), while a handler is pending, or when it grows past
//!   [`ServerConfig::flush_threshold`] (so a client that never reads cannot make it grow
//!   without bound).
//! - **Closing**: flush, and if the client may still be sending, half-close and drain its
//!   input for a bounded time before the full close (RFC 9112 §9.6), so that a reset does
//!   not destroy the last response.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body::Body as HttpBody;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::feed::{BodyFailure, BodyFeed, CONTINUE, Continue, FeedLimits};
use crate::conn::body::{Body, Incoming};
use crate::conn::io::{
    Output, read_now, read_some, recycle_read_buf, recycle_write_buf, reserve_write,
};
use crate::conn::lifetime::jittered_lifetime;
use crate::conn::panic::{CatchUnwind, Panicked};
use crate::conn::shutdown::ShutdownListener;
use crate::conn::status::{
    ClosedRecord, ConnSide, ConnState, Hooks, LiveEntry, RequestFields, RequestRecord, UpstreamNote,
};
use crate::conn::upgrade::{UpgradeSlot, Upgraded};
use crate::error::BoxError;
use crate::transport::Stream;
use crate::wire::chunked::{CHUNK_DATA_END, write_chunk_header, write_last_chunk};
use crate::wire::head::{write_content_length, write_decimal, write_fields, write_status_line};
use crate::wire::headers::{fold_content_length, list_members};
use crate::wire::{
    BodyDecoder, BodyEvent, BodyFraming, ChunkedLimits, Expectation, HeadLimits, HeadParser,
    HeadStatus, MessageFields, OutgoingFraming, ParseError, RequestHead, TargetForm,
    keep_alive_intent, outgoing_response_framing,
};

/// The connection policy of a server, each field with its default. Build it from
/// `ServerConfig::default()` and set the fields that differ.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Keep connections open between requests. `false` makes every connection
    /// short-lived: each response carries `Connection: close`. Default `true`.
    pub keep_alive: bool,
    /// How long an idle connection (no byte of a next request yet) stays open, at most: the
    /// ceiling. Default 60 s.
    pub keepalive_timeout: Duration,
    /// The floor of the idle timeout: as open connections approach the listener's limit,
    /// the idle timeout shrinks from the ceiling towards this (see
    /// [`crate::server::ListenerConfig::max_connections`]). Default 1 s.
    pub keepalive_timeout_min: Duration,
    /// A plain-TCP HTTP/1.x connection idle this long leaves its task: its socket is parked
    /// with the listener, which holds a few hundred bytes for it instead of a task, and
    /// serves it again in a new task when a request arrives. `None`: never parked. Only
    /// connections served by a [`crate::server::Server`] are parked. Default 50 ms (a
    /// connection in steady use is never parked).
    pub park_idle_after: Option<Duration>,
    /// How long a client may take to send a whole request head once its first byte has
    /// arrived (and a new connection to send its first byte): slowloris protection.
    /// Answered with 408. Default 10 s.
    pub header_timeout: Duration,
    /// Longest wait for the next bytes of a request body. Answered with 408. Default 30 s.
    pub body_timeout: Duration,
    /// Longest wait for the client to accept response bytes. Default 30 s.
    pub write_timeout: Duration,
    /// Requests served on one connection; the last response carries `Connection: close`.
    /// Default: unlimited.
    pub max_requests: Option<u64>,
    /// Age after which a connection is closed after its current response (or at once if
    /// idle). Default: unlimited.
    pub max_lifetime: Option<Duration>,
    /// Each connection's maximum lifetime is shortened by a share of this, different per
    /// connection, so that connections opened together do not all close together. Default 0.
    pub max_lifetime_jitter: Duration,
    /// Send `Keep-Alive: timeout=N[, max=M]` on persistent responses, so clients retire
    /// connections before the server would. Default `false`.
    pub advertise_keep_alive: bool,
    /// Limits on request heads (414 / 431).
    pub head_limits: HeadLimits,
    /// Limits of the chunked decoder (chunk extensions and trailers; 400).
    pub chunked_limits: ChunkedLimits,
    /// Largest request body accepted (413). Default: unlimited (bodies are streamed).
    pub max_body_bytes: Option<u64>,
    /// A request body the handler left unread is read and discarded if at most this many
    /// bytes remain; otherwise the connection closes. Default 64 KiB.
    pub max_discard_bytes: u64,
    /// Longest time spent draining client input during a lingering close. Default 2 s.
    pub linger_timeout: Duration,
    /// Most bytes drained during a lingering close. Default 256 KiB.
    pub linger_max_bytes: u64,
    /// Pending response bytes that force a flush even if more pipelined requests are
    /// buffered. Default 64 KiB.
    pub flush_threshold: usize,
    /// Bytes requested per socket read. Default 8 KiB.
    pub read_buffer: usize,
    /// Accept pipelined requests. When `false`, a response written while the next request
    /// is already buffered closes the connection instead (the client sends the rest again
    /// on a new connection). Default `true`.
    pub pipelining: bool,
    /// Also put each request's [`RequestCtx`] in its extensions (it is always in its body,
    /// [`RequestCtx::of`]), for services that replace the body type before reading it (an
    /// axum `Router`, a tower layer that maps bodies). Costs an allocation per request.
    /// Default `false`.
    pub request_ctx_in_extensions: bool,
    /// While a bodiless request's handler is pending, watch the client: if it resets the
    /// connection, drop the handler (a proxy abandons its upstream request). A half-close
    /// (end of stream after a whole request) is not an abort: the request is answered,
    /// then the connection closes (RFC 9112 §9.6). Default `true`.
    pub abort_on_client_close: bool,
    /// HTTP/2: whether it is spoken (h2 by ALPN, h2c by the preface) and its settings.
    /// The policy above applies to HTTP/2 connections too: the keep-alive timeout while
    /// no stream is open, maximum requests (streams) and lifetime by a graceful `GOAWAY`.
    pub http2: crate::conn::h2::Http2Config,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            keep_alive: true,
            keepalive_timeout: Duration::from_secs(60),
            keepalive_timeout_min: Duration::from_secs(1),
            park_idle_after: Some(Duration::from_millis(50)),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_requests: None,
            max_lifetime: None,
            max_lifetime_jitter: Duration::ZERO,
            advertise_keep_alive: false,
            head_limits: HeadLimits::default(),
            chunked_limits: ChunkedLimits::default(),
            max_body_bytes: None,
            max_discard_bytes: 64 * 1024,
            linger_timeout: Duration::from_secs(2),
            linger_max_bytes: 256 * 1024,
            flush_threshold: 64 * 1024,
            read_buffer: 8 * 1024,
            pipelining: true,
            request_ctx_in_extensions: false,
            abort_on_client_close: true,
            http2: crate::conn::h2::Http2Config::default(),
        }
    }
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// A number unique within the server (like nginx's `$connection`).
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// The local address the client connected to.
    pub local: SocketAddr,
    /// Whether the connection is TLS (`https`).
    pub secure: bool,
}

/// What the connection knows about a request besides the request itself, parsed once, so
/// no layer parses a header field again. Every request a server hands to its service
/// carries one in its body ([`RequestCtx::of`], [`Incoming::ctx`]: no allocation), and, with
/// [`ServerConfig::request_ctx_in_extensions`], a copy in its extensions too (for services
/// that replace the body type, such as an axum `Router`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RequestCtx {
    /// The connection the request arrived on.
    pub conn: ConnInfo,
    /// 1 for the first request on the connection (nginx's `$connection_requests`).
    pub number: u64,
    /// The request head exactly as received.
    pub raw_head: Bytes,
    /// The fields framing and persistence depend on (`Connection` options, `Upgrade`,
    /// `Expect`, `Content-Length`, `Transfer-Encoding`, `Host`), folded while parsing.
    pub fields: MessageFields,
    /// The form of the request target (origin, absolute, authority, asterisk).
    pub target_form: TargetForm,
}

impl RequestCtx {
    /// The context of a request a hopline server handed over: from its body, or from its
    /// extensions (where [`ServerConfig::request_ctx_in_extensions`] puts a copy).
    pub fn of(request: &Request<Incoming>) -> Option<&RequestCtx> {
        request
            .body()
            .ctx()
            .or_else(|| request.extensions().get::<RequestCtx>())
    }
}

/// Why a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CloseReason {
    /// The client closed the connection (between requests, or mid-request).
    ClientClosed,
    /// The client asked to close: `Connection: close`, or HTTP/1.0 without keep-alive.
    ClientRequested,
    /// Short-lived policy: the server closes after every response.
    ShortLived,
    /// No request arrived within the keep-alive timeout.
    IdleTimeout,
    /// A request head did not arrive in time (408).
    HeaderTimeout,
    /// A request body stalled (408).
    BodyTimeout,
    /// The client did not accept response bytes in time.
    WriteTimeout,
    /// The connection served its maximum number of requests.
    MaxRequests,
    /// The connection reached its maximum lifetime.
    MaxLifetime,
    /// The server is shutting down.
    Shutdown,
    /// A malformed request was answered with an error status.
    BadRequest,
    /// The handler's response said `Connection: close`.
    HandlerRequested,
    /// The service failed (an error instead of a response): answered 500.
    HandlerFailed,
    /// The service or its response body panicked: answered 500 if nothing of the
    /// response was sent yet, else cut short.
    HandlerPanicked,
    /// The response body had no length and the client cannot take chunked (HTTP/1.0): it
    /// ends with the connection.
    CloseDelimited,
    /// The handler left a request body unread that was too large to discard.
    BodyUnread,
    /// The response body failed mid-stream; the connection closed to cut it short.
    ResponseAborted,
    /// The client sent a request before its previous response and the policy refuses
    /// pipelining.
    PipeliningRefused,
    /// The connection switched protocols (101, or a CONNECT tunnel) and was handed over.
    Upgraded,
    /// The TLS handshake failed or did not finish in time (no request was read).
    TlsHandshake,
    /// HTTP/2: the peer broke the protocol (a `GOAWAY` with an error code, either way).
    Http2Error,
    /// HTTP/2: the peer flooded the connection (streams reset faster than served, too
    /// many reset streams): `GOAWAY ENHANCE_YOUR_CALM`.
    Abuse,
    /// HTTP/2: a keep-alive PING went unanswered.
    PingTimeout,
    /// Idle while connections were plentiful: the idle timeout had shrunk under pressure, or
    /// a new connection needed its place (the longest idle goes first).
    Pressure,
    /// A socket error (reset, broken pipe). Keep it last: [`CloseReason::ALL`] is checked
    /// against it at compile time.
    Io,
}

const _: () = assert!(CloseReason::Io as usize + 1 == CloseReason::ALL.len());

impl CloseReason {
    /// Every reason, in the order of [`CloseReason::index`] (for counting by reason).
    pub const ALL: [CloseReason; 25] = [
        CloseReason::ClientClosed,
        CloseReason::ClientRequested,
        CloseReason::ShortLived,
        CloseReason::IdleTimeout,
        CloseReason::HeaderTimeout,
        CloseReason::BodyTimeout,
        CloseReason::WriteTimeout,
        CloseReason::MaxRequests,
        CloseReason::MaxLifetime,
        CloseReason::Shutdown,
        CloseReason::BadRequest,
        CloseReason::HandlerRequested,
        CloseReason::HandlerFailed,
        CloseReason::HandlerPanicked,
        CloseReason::CloseDelimited,
        CloseReason::BodyUnread,
        CloseReason::ResponseAborted,
        CloseReason::PipeliningRefused,
        CloseReason::Upgraded,
        CloseReason::TlsHandshake,
        CloseReason::Http2Error,
        CloseReason::Abuse,
        CloseReason::PingTimeout,
        CloseReason::Pressure,
        CloseReason::Io,
    ];

    /// This reason's position in [`CloseReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the client may still be sending when the server closes, so that a
    /// lingering close is needed to keep the last response from being reset.
    fn wants_linger(self) -> bool {
        matches!(
            self,
            CloseReason::ShortLived
                | CloseReason::HeaderTimeout
                | CloseReason::BodyTimeout
                | CloseReason::MaxRequests
                | CloseReason::MaxLifetime
                | CloseReason::Shutdown
                | CloseReason::BadRequest
                | CloseReason::HandlerRequested
                | CloseReason::HandlerFailed
                | CloseReason::HandlerPanicked
                | CloseReason::CloseDelimited
                | CloseReason::BodyUnread
                | CloseReason::PipeliningRefused
        )
    }
}

/// What happened on a connection, reported when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnSummary {
    /// Requests answered (including error answers to malformed requests).
    pub requests: u64,
    /// Write syscalls that carried response bytes (pipelined responses share them).
    pub writes: u64,
    /// Why it closed.
    pub reason: CloseReason,
}

impl CloseReason {
    /// The reason as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::ClientRequested => "client_requested",
            CloseReason::ShortLived => "short_lived",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::BodyTimeout => "body_timeout",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::MaxRequests => "max_requests",
            CloseReason::MaxLifetime => "max_lifetime",
            CloseReason::Shutdown => "shutdown",
            CloseReason::BadRequest => "bad_request",
            CloseReason::HandlerRequested => "handler_requested",
            CloseReason::HandlerFailed => "handler_failed",
            CloseReason::HandlerPanicked => "handler_panicked",
            CloseReason::CloseDelimited => "close_delimited",
            CloseReason::BodyUnread => "body_unread",
            CloseReason::ResponseAborted => "response_aborted",
            CloseReason::PipeliningRefused => "pipelining_refused",
            CloseReason::Upgraded => "upgraded",
            CloseReason::TlsHandshake => "tls_handshake",
            CloseReason::Http2Error => "http2_error",
            CloseReason::Abuse => "abuse",
            CloseReason::PingTimeout => "ping_timeout",
            CloseReason::Pressure => "pressure",
            CloseReason::Io => "error",
        }
    }
}

/// Response bodies up to this size are copied into the write buffer; larger pieces are
/// written from their own memory.
const COPY_LIMIT: usize = 16 * 1024;

/// Write buffer reserved when a connection wakes from idle (released again when it goes
/// idle): room for a burst of small responses without reallocating.
const WBUF_INITIAL: usize = 2048;

/// How many times one poll goes round (work, then side work that made progress) before it
/// yields to other tasks.
const SPINS: usize = 32;

/// Serves one connection with `service` until it closes, and says how it went (to `hooks`
/// too, if anything listens there).
///
/// Every request reaches the service as `Request<Incoming>` with a [`RequestCtx`] in its
/// extensions; its body streams as the service reads it, while the response is being
/// written if need be (a service may answer with the request body itself). Responses
/// leave in request order; a burst of pipelined requests is answered in one write.
pub async fn serve_connection<S, B>(
    stream: Stream,
    info: ConnInfo,
    mut service: S,
    config: &ServerConfig,
    shutdown: ShutdownListener,
    hooks: &Hooks,
) -> ConnSummary
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let conn = Conn::open(stream, info, config, shutdown, hooks);
    match conn.run(&mut service, Parking::Never, Waking::Idle).await {
        Served::Closed(summary) => summary,
        Served::Parked(_) => unreachable!("a connection that may not park does not"),
    }
}

/// How a connection served by a listener that parks idle sockets ended its task.
pub(crate) enum Served {
    /// It closed, for this reason.
    Closed(ConnSummary),
    /// It went idle and left its socket to be parked: served again in a new task when
    /// input arrives ([`resume_connection`]), or closed ([`ParkedConn::close`]).
    Parked(ParkedConn),
}

/// Whether an idle connection may leave its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parking {
    Never,
    /// After being idle this long.
    After(Duration),
}

impl Parking {
    /// What `config` says.
    fn of(config: &ServerConfig) -> Self {
        config
            .park_idle_after
            .map_or(Parking::Never, Parking::After)
    }
}

/// Where a connection's task starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waking {
    /// Waiting for input.
    Idle,
    /// Input has arrived (a parked connection, resumed).
    Readable,
}

/// [`serve_connection`] for a listener that parks idle connections: a plain-TCP connection
/// idle for [`ServerConfig::park_idle_after`] ends its task with [`Served::Parked`].
pub(crate) async fn serve_parking<S, B>(
    stream: Stream,
    info: ConnInfo,
    mut service: S,
    config: &ServerConfig,
    shutdown: ShutdownListener,
    hooks: &Hooks,
) -> Served
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let conn = Conn::open(stream, info, config, shutdown, hooks);
    conn.run(&mut service, Parking::of(config), Waking::Idle)
        .await
}

/// Serves a parked connection again, its input having arrived; it may park again.
pub(crate) async fn resume_connection<S, B>(
    parked: ParkedConn,
    mut service: S,
    config: &ServerConfig,
    shutdown: ShutdownListener,
    hooks: &Hooks,
) -> Served
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let ParkedConn {
        tcp,
        info,
        requests,
        writes,
        born,
        live,
        ..
    } = parked;
    let stream = match tokio::net::TcpStream::from_std(tcp) {
        Ok(tcp) => Stream::Tcp(tcp),
        Err(error) => {
            tracing::debug!(%error, "a parked connection could not be registered again");
            let summary = ConnSummary {
                requests,
                writes,
                reason: CloseReason::Io,
            };
            return Served::Closed(summary);
        }
    };
    // Registered with the live view and the observer when it was opened.
    let mut conn = Conn::with(stream, info, config, shutdown, hooks, live);
    (conn.requests, conn.out.writes, conn.born) = (requests, writes, born);
    conn.set_state(ConnState::ReadingHead);
    conn.run(&mut service, Parking::of(config), Waking::Readable)
        .await
}

/// An idle HTTP/1.x connection out of its task: the socket (not registered with the
/// runtime) and what serving it again needs, a few hundred bytes.
#[derive(Debug)]
pub(crate) struct ParkedConn {
    tcp: std::net::TcpStream,
    info: ConnInfo,
    requests: u64,
    writes: u64,
    born: Instant,
    idle_since: Instant,
    live: Option<LiveEntry>,
}

impl ParkedConn {
    /// The socket, to watch for input.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.tcp.as_fd()
    }

    /// The connection's number.
    pub(crate) fn id(&self) -> u64 {
        self.info.id
    }

    /// Since when it has been idle.
    pub(crate) fn idle_since(&self) -> Instant {
        self.idle_since
    }

    /// When its maximum lifetime under `config` ends, if it has one.
    pub(crate) fn lifetime_end(&self, config: &ServerConfig) -> Option<Instant> {
        let max = config.max_lifetime?;
        Some(self.born + jittered_lifetime(max, config.max_lifetime_jitter, self.info.id))
    }

    /// Whether input is waiting (then it must be served, not closed: closing would reset a
    /// request the client has sent).
    pub(crate) fn input_waiting(&self) -> bool {
        input_waiting(socket2::SockRef::from(&self.tcp))
    }

    /// Closes it for `reason`, reporting the close to `hooks`.
    pub(crate) fn close(self, reason: CloseReason, hooks: &Hooks) -> ConnSummary {
        report_closed(hooks, reason, self.requests, self.born, &self.tcp);
        ConnSummary {
            requests: self.requests,
            writes: self.writes,
            reason,
        }
    }
}

/// Whether bytes (or the end of input) wait on an idle socket, without consuming them.
fn input_waiting(socket: socket2::SockRef<'_>) -> bool {
    let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    // Non-blocking sockets: nothing waiting is `WouldBlock`.
    !matches!(socket.peek(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// What an idle connection waited for.
#[derive(Clone, Copy)]
enum Idle {
    /// Input arrived (a request, or the end of input).
    Input,
    /// Idle long enough to leave its task.
    Park,
    /// It must close, for this reason.
    Close(CloseReason),
}

/// One connection's state.
struct Conn<'a> {
    /// Its place in the live view. First, so that it is dropped (unregistered) before the
    /// socket closes.
    live: Option<LiveEntry>,
    hooks: &'a Hooks,
    /// The status of the response being written (for the observer).
    sent_status: StatusCode,
    /// Body bytes of the response being written (for the observer).
    sent_body: u64,
    stream: Stream,
    /// Bytes read but not yet parsed.
    rbuf: BytesMut,
    /// Response bytes not yet written.
    out: Output,
    parser: HeadParser,
    info: ConnInfo,
    config: &'a ServerConfig,
    shutdown: ShutdownListener,
    /// Requests answered so far.
    requests: u64,
    /// When the head being received must be complete (set at its first byte).
    head_deadline: Option<Instant>,
    /// Where the connection goes after a switching response (101, CONNECT 2xx).
    upgrade: Option<oneshot::Sender<Upgraded>>,
    /// The current request's body, while it is not completely read.
    feed: Option<BodyFeed>,
    /// What answering the current request needs of it (kept here, not in the loop's
    /// future, so that a panic while answering leaves it readable).
    current: Answering,
    /// How far answering it got.
    answer: AnswerStage,
    /// Its maximum lifetime, jittered.
    lifetime: Option<Duration>,
    born: Instant,
}

/// A request ready for the service.
struct Admitted {
    request: Request<Incoming>,
    /// Watch the client for a reset while the service runs.
    watch: bool,
}

/// How far the current request's answer got: what a panic while answering can still save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerStage {
    /// No request is being answered.
    Done,
    /// The service has it: nothing of its response exists yet.
    Calling,
    /// Its response starts at `mark` in the write buffer (`None`: behind a large piece),
    /// when `writes` writes had been made: if none was made since, none of it has left.
    Responding { mark: Option<usize>, writes: u64 },
}

/// What the observer is told of a request, kept while it is answered.
struct Observed {
    /// The head as received.
    raw: Bytes,
    /// When it was complete.
    at: Instant,
    fields: RequestFields,
}

/// What a request's answer needs from its request once the request itself is gone.
struct Answering {
    method: Method,
    version: Version,
    /// The client's persistence intent (RFC 9112 §9.3).
    keep_alive: bool,
    /// For the observer: the head as received, when it was complete, the fields it logs.
    observed: Option<Observed>,
}

impl<'a> Conn<'a> {
    /// A new connection's state, registered with the live view and the observer.
    fn open(
        stream: Stream,
        info: ConnInfo,
        config: &'a ServerConfig,
        shutdown: ShutdownListener,
        hooks: &'a Hooks,
    ) -> Self {
        let live = hooks.live.as_ref().map(|live| {
            live.register(
                ConnSide::Downstream,
                info.id,
                info.peer,
                &stream,
                ConnState::ReadingHead,
            )
        });
        if let Some(observer) = &hooks.observer {
            observer.opened(ConnSide::Downstream);
        }
        Conn::with(stream, info, config, shutdown, hooks, live)
    }

    /// A connection's state, registered (or not) already.
    fn with(
        stream: Stream,
        info: ConnInfo,
        config: &'a ServerConfig,
        shutdown: ShutdownListener,
        hooks: &'a Hooks,
        live: Option<LiveEntry>,
    ) -> Self {
        Conn {
            live,
            hooks,
            sent_status: StatusCode::OK,
            sent_body: 0,
            stream,
            rbuf: BytesMut::new(),
            out: Output::default(),
            parser: HeadParser::new(),
            info,
            config,
            shutdown,
            requests: 0,
            head_deadline: None,
            upgrade: None,
            feed: None,
            answer: AnswerStage::Done,
            lifetime: (config.max_lifetime)
                .map(|max| jittered_lifetime(max, config.max_lifetime_jitter, info.id)),
            current: Answering {
                method: Method::GET,
                version: Version::HTTP_11,
                keep_alive: true,
                observed: None,
            },
            born: Instant::now(),
        }
    }

    /// Serves requests until the connection closes (or parks).
    async fn run<S, B>(mut self, service: &mut S, parking: Parking, mut waking: Waking) -> Served
    where
        S: Service<Request<Incoming>, Response = Response<B>>,
        S::Error: Into<BoxError>,
        B: HttpBody<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut idle_timer = pin!(tokio::time::sleep_until(
            self.born + self.config.header_timeout
        ));
        let reason = loop {
            if waking == Waking::Idle {
                match self.wait_idle(idle_timer.as_mut(), parking).await {
                    Idle::Input => {}
                    Idle::Park => return self.park(),
                    Idle::Close(reason) => break reason,
                }
            }
            waking = Waking::Idle;
            // A panic while serving ends this connection's request (500 if nothing of its
            // response has left), not the server: caught once per poll of the burst.
            let served = CatchUnwind::new(Box::pin(self.serve_burst(service))).await;
            let served = served.unwrap_or_else(|panicked| Err(self.recover(panicked)));
            if let Err(close) = served {
                if close != CloseReason::Upgraded {
                    Box::pin(self.close(close)).await;
                }
                break close;
            }
        };
        Served::Closed(self.finish(reason))
    }

    /// Takes the idle connection out of its task.
    fn park(self) -> Served {
        let Conn {
            stream: Stream::Tcp(tcp),
            info,
            requests,
            out,
            born,
            live,
            ..
        } = self
        else {
            unreachable!("only plain TCP connections park")
        };
        match tcp.into_std() {
            Ok(tcp) => Served::Parked(ParkedConn {
                tcp,
                info,
                requests,
                writes: out.writes,
                born,
                idle_since: Instant::now(),
                live,
            }),
            Err(error) => {
                tracing::debug!(%error, "an idle connection could not be parked");
                Served::Closed(ConnSummary {
                    requests,
                    writes: out.writes,
                    reason: CloseReason::Io,
                })
            }
        }
    }

    /// Reports the end of the connection and hands an upgraded socket over.
    fn finish(mut self, reason: CloseReason) -> ConnSummary {
        let summary = ConnSummary {
            requests: self.requests,
            writes: self.out.writes,
            reason,
        };
        report_closed(
            self.hooks,
            reason,
            self.requests,
            self.born,
            self.stream.tcp(),
        );
        if let Some(handover) = self.upgrade.take() {
            let Conn { stream, rbuf, .. } = self;
            let _ = handover.send(Upgraded {
                stream,
                read_buf: rbuf.freeze(),
            });
        }
        summary
    }

    /// Waits, holding no buffers (an idle connection costs only its task and socket
    /// registration), until input arrives, the connection should park, or it should close
    /// (peer gone, idle timeout, pressure, lifetime, drain). A connection about to close
    /// for time looks once more for input first: a request that has arrived is answered,
    /// never reset.
    async fn wait_idle(&mut self, mut timer: Pin<&mut Sleep>, parking: Parking) -> Idle {
        debug_assert!(self.rbuf.is_empty() && self.out.is_empty());
        self.set_state(ConnState::Idle);
        recycle_read_buf(&mut self.rbuf);
        recycle_write_buf(&mut self.out.buf);
        self.out = Output::default();
        let idle_since = Instant::now();
        let parking = match (parking, &self.stream) {
            (Parking::After(after), Stream::Tcp(_)) if self.requests > 0 => Some(after),
            _ => None,
        };
        // Set the timer now; later only when a signal (the drain, pressure) moves it.
        let mut signals = self.shutdown.signals();
        let (deadline, mut then) = match parking {
            // The keep-alive hot path: nothing but parking can come first.
            Some(after)
                if signals == 0
                    && self.lifetime.is_none()
                    && after <= self.config.keepalive_timeout =>
            {
                (idle_since + after, Idle::Park)
            }
            _ => self.idle_deadline(idle_since, parking),
        };
        timer.as_mut().reset(deadline);
        let woke = poll_fn(|cx| {
            // Registers for the drain and for pressure.
            let _ = self.shutdown.poll_started(cx);
            match self.stream.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(Idle::Input),
                Poll::Ready(Err(_)) => return Poll::Ready(Idle::Close(CloseReason::Io)),
                Poll::Pending => {}
            }
            if self.shutdown.signals() != signals {
                signals = self.shutdown.signals();
                let deadline;
                (deadline, then) = self.idle_deadline(idle_since, parking);
                timer.as_mut().reset(deadline);
            }
            timer.as_mut().poll(cx).map(|()| then)
        })
        .await;
        match woke {
            Idle::Close(reason)
                if reason != CloseReason::Io
                    && input_waiting(socket2::SockRef::from(self.stream.tcp())) =>
            {
                Idle::Input
            }
            Idle::Park | Idle::Close(_) => woke,
            Idle::Input => {
                self.set_state(ConnState::ReadingHead);
                Idle::Input
            }
        }
    }

    /// What an idle connection does next if no input comes, and when: the earliest of
    /// its idle timeout (the header timeout before a first request; shortened under
    /// pressure), its maximum lifetime, its moment in a drain, and parking.
    fn idle_deadline(&self, idle_since: Instant, parking: Option<Duration>) -> (Instant, Idle) {
        let (mut deadline, mut then) = if self.requests == 0 {
            let at = self.born + self.config.header_timeout;
            (at, Idle::Close(CloseReason::HeaderTimeout))
        } else {
            let (timeout, pressed) = self.shutdown.idle_timeout(self.config.keepalive_timeout);
            let reason = if pressed {
                CloseReason::Pressure
            } else {
                CloseReason::IdleTimeout
            };
            (idle_since + timeout, Idle::Close(reason))
        };
        let mut earlier = |at: Instant, what: Idle| {
            if at < deadline {
                (deadline, then) = (at, what);
            }
        };
        if let Some(lifetime) = self.lifetime {
            earlier(self.born + lifetime, Idle::Close(CloseReason::MaxLifetime));
        }
        match self.shutdown.idle_close_at(self.info.id) {
            Some(at) => earlier(at, Idle::Close(CloseReason::Shutdown)),
            None => {
                if let Some(after) = parking {
                    earlier(idle_since + after, Idle::Park);
                }
            }
        }
        (deadline, then)
    }

    fn set_state(&self, state: ConnState) {
        if let Some(live) = &self.live {
            live.status().set_state(state);
        }
    }

    /// Reports the current request, answered, to the observer, if there is one.
    fn observe(&self, upstream: Option<UpstreamNote>) {
        self.report(Some(&self.current), upstream);
    }

    /// Reports an answer to a request too malformed (or too late) to have a method.
    fn observe_unparsed(&self) {
        self.report(None, None);
    }

    fn report(&self, request: Option<&Answering>, upstream: Option<UpstreamNote>) {
        let Some(observer) = &self.hooks.observer else {
            return;
        };
        let (method, target, version) = match request {
            Some(a) => (
                Some(&a.method),
                a.observed
                    .as_ref()
                    .map_or("", |observed| request_target(&observed.raw)),
                a.version,
            ),
            None => (None, "", Version::HTTP_11),
        };
        let observed = request.and_then(|a| a.observed.as_ref());
        observer.request(&RequestRecord {
            conn: self.info.id,
            peer: self.info.peer,
            number: self.requests,
            method,
            target,
            version,
            status: self.sent_status,
            body_bytes: self.sent_body,
            duration: observed.map_or(Duration::ZERO, |observed| observed.at.elapsed()),
            upstream,
            fields: observed.map(|observed| &observed.fields),
        });
    }

    /// Serves every request that arrives without the connection going idle.
    ///
    /// A future is moved by copying its whole size when it is created, so this loop keeps
    /// every per-request step that need not wait synchronous (parse, refuse, write the head
    /// and a small body into the buffer); it awaits the service and the response body in
    /// place, through small poll functions.
    async fn serve_burst<S, B>(&mut self, service: &mut S) -> Result<(), CloseReason>
    where
        S: Service<Request<Incoming>, Response = Response<B>>,
        S::Error: Into<BoxError>,
        B: HttpBody<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        reserve_write(&mut self.out.buf, WBUF_INITIAL);
        loop {
            let Some(head) = self.next_head()? else {
                // Before waiting on the client, send what we owe it: this is where the
                // responses to a pipelined burst leave together.
                self.flush().await?;
                if self.read_more().await? {
                    continue;
                }
                return Ok(());
            };
            let Admitted { request, watch } = self.start(head)?;
            self.answer = AnswerStage::Calling;
            let outcome = if poll_fn(|cx| service.poll_ready(cx)).await.is_err() {
                None
            } else {
                let call = pin!(service.call(request));
                Some(self.alongside(call, watch).await)
            };
            let response = self.service_answered(outcome)?;
            self.set_state(ConnState::Writing);
            let upstream = (self.current.observed.as_ref())
                .and(response.extensions().get::<UpstreamNote>())
                .cloned();
            let (parts, body) = response.into_parts();
            let mut body = pin!(body);
            let sent = match self.respond_now(parts, body.as_mut()) {
                Ok(None) => Ok(()),
                Ok(Some(plan)) => Box::pin(self.respond_rest(body.as_mut(), plan)).await,
                Err(reason) => Err(reason),
            };
            self.answer = AnswerStage::Done;
            if self.current.observed.is_some() {
                self.observe(upstream);
            }
            sent?;
            if self.out.pending() >= self.config.flush_threshold {
                self.flush().await?;
            }
        }
    }

    /// Counts a new request and turns its head into what the service gets, unless it is
    /// refused outright (then answered here, and the connection closes).
    fn start(&mut self, head: RequestHead) -> Result<Admitted, CloseReason> {
        self.requests += 1;
        if let Some(live) = &self.live {
            live.status().set_requests(self.requests);
            live.status().set_state(ConnState::InRequest);
        }
        self.sent_status = StatusCode::OK;
        self.sent_body = 0;
        // Field by field, in place: the whole struct is large to move.
        let current = &mut self.current;
        current.method.clone_from(&head.method);
        current.version = head.version;
        current.keep_alive = keep_alive_intent(&head.fields);
        // The clock is read only when someone observes requests.
        current.observed = self.hooks.observer.is_some().then(|| Observed {
            raw: head.raw.clone(),
            at: Instant::now(),
            fields: RequestFields::of(&head.headers),
        });
        if let Some(status) = self.refusal(&head) {
            self.write_error(status);
            self.observe(None);
            return Err(CloseReason::BadRequest);
        }
        Ok(self.admit(head))
    }

    /// What the service's outcome means for the connection: its response; a 500 (and
    /// close) when it failed or was not ready; a close when the client reset meanwhile
    /// (`Some(None)`; logged as nginx does, 499).
    fn service_answered<R, E: Into<BoxError>>(
        &mut self,
        outcome: Option<Option<Result<R, E>>>,
    ) -> Result<R, CloseReason> {
        match outcome {
            Some(Some(Ok(response))) => return Ok(response),
            Some(Some(Err(error))) => {
                let error: BoxError = error.into();
                tracing::error!(conn = self.info.id, %error, "the service failed");
            }
            None => tracing::error!(conn = self.info.id, "the service was not ready"),
            Some(None) => {
                tracing::debug!(
                    conn = self.info.id,
                    "client reset the connection while its request was handled"
                );
                self.sent_status = StatusCode::from_u16(499).expect("a valid status code");
                self.observe(None);
                return Err(CloseReason::ClientClosed);
            }
        }
        self.write_error(StatusCode::INTERNAL_SERVER_ERROR);
        self.observe(None);
        Err(CloseReason::HandlerFailed)
    }

    /// Writes what of a response needs no waiting: its head, and a body that is ready at
    /// once and small (the usual case, answered without creating a future). `Ok(None)`
    /// once the response is complete; `Ok(Some(plan))` when the rest needs waiting.
    fn respond_now<B>(
        &mut self,
        parts: http::response::Parts,
        body: Pin<&mut B>,
    ) -> Result<Option<Plan>, CloseReason>
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        // Where this response starts in the write buffer, while none of it can have left
        // (a panic before it does takes it back: see `recover`).
        self.answer = AnswerStage::Responding {
            mark: (!self.out.has_large()).then_some(self.out.buf.len()),
            writes: self.out.writes,
        };
        let mut plan = self.begin_response(parts, body.as_ref().get_ref())?;
        if plan.upgrade.is_some() || !matches!(plan.unread, Unread::Complete) {
            return Ok(Some(plan));
        }
        if plan.framing.sends_body() && !self.push_ready_body(body, &mut plan)? {
            return Ok(Some(plan));
        }
        match plan.close {
            Some(reason) => Err(reason),
            None => Ok(None),
        }
    }

    /// The rest of a response [`Conn::respond_now`] could not finish: the hand-over of a
    /// switch, a body that streams, what is left of the request body.
    async fn respond_rest<B>(&mut self, body: Pin<&mut B>, plan: Plan) -> Result<(), CloseReason>
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        if let Some(handover) = plan.upgrade {
            self.flush().await?;
            self.upgrade = Some(handover);
            return Err(CloseReason::Upgraded);
        }
        if plan.framing.sends_body() && !plan.body_done {
            self.send_body(body, plan.framing, plan.sent).await?;
        }
        let unread = match plan.unread {
            // Whoever held the body had the response's time to read it.
            Unread::StillRead => self.settle_feed(Holding::Ends),
            other => other,
        };
        match unread {
            Unread::Complete | Unread::StillRead => {}
            Unread::Discard(decoder) => {
                if plan.close.is_none() {
                    self.discard_body(decoder).await?;
                }
            }
            Unread::Close => return Err(plan.close.unwrap_or(CloseReason::BodyUnread)),
        }
        match plan.close {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// Appends the body frames that are ready now, while they stay small; `true` if that
    /// was the whole body. A body that is not ready is polled again, with this task's
    /// waker, by [`Conn::send_body`].
    fn push_ready_body<B>(
        &mut self,
        mut body: Pin<&mut B>,
        plan: &mut Plan,
    ) -> Result<bool, CloseReason>
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while !self.out.has_large() && self.out.pending() < self.config.flush_threshold {
            match body.as_mut().poll_frame(&mut cx) {
                Poll::Ready(None) => {
                    self.end_body(plan.framing, plan.sent, None)?;
                    plan.body_done = true;
                    return Ok(true);
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => self.push_data(data, plan.framing, &mut plan.sent)?,
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.end_body(plan.framing, plan.sent, Some(&trailers))?;
                            plan.body_done = true;
                            return Ok(true);
                        }
                    }
                },
                Poll::Ready(Some(Err(error))) => return Err(self.body_failed(error.into())),
                Poll::Pending => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Why the connection closes when the response body failed mid-way (it is cut short).
    fn body_failed(&self, error: BoxError) -> CloseReason {
        tracing::warn!(conn = self.info.id, %error, "response body failed; closing");
        CloseReason::ResponseAborted
    }

    /// After a panic while serving (in the service, its future or its response body —
    /// or in this loop): logged with the request and counted; answered 500 if nothing of
    /// the response could have left (it is taken back out of the write buffer), else cut
    /// short. The connection then closes.
    fn recover(&mut self, panicked: Panicked) -> CloseReason {
        let answering = &self.current;
        let target =
            (answering.observed.as_ref()).map_or("", |observed| request_target(&observed.raw));
        tracing::error!(
            conn = self.info.id,
            request = self.requests,
            method = %answering.method,
            target,
            error = %panicked,
            "the service panicked; its connection closes"
        );
        if let Some(observer) = &self.hooks.observer {
            observer.panicked(ConnSide::Downstream);
        }
        self.feed = None;
        match std::mem::replace(&mut self.answer, AnswerStage::Done) {
            AnswerStage::Done => return CloseReason::HandlerPanicked,
            AnswerStage::Calling => self.write_error(StatusCode::INTERNAL_SERVER_ERROR),
            AnswerStage::Responding {
                mark: Some(mark),
                writes,
            } if writes == self.out.writes
                && !self.out.has_large()
                && self.out.buf.len() >= mark =>
            {
                self.out.buf.truncate(mark);
                self.write_error(StatusCode::INTERNAL_SERVER_ERROR);
            }
            AnswerStage::Responding { .. } => {}
        }
        self.observe(None);
        CloseReason::HandlerPanicked
    }

    /// Polls `work` to completion while doing the connection's side work: feeding the
    /// request body to whoever reads it, writing out earlier (pipelined) responses, and, if
    /// `watch`, noticing a client that resets the connection (then the output is `None`).
    fn alongside<'s, F: Future>(
        &'s mut self,
        mut work: Pin<&'s mut F>,
        mut watch: bool,
    ) -> impl Future<Output = Option<F::Output>> + 's {
        poll_fn(move |cx| {
            for _ in 0..SPINS {
                if let Poll::Ready(output) = work.as_mut().poll(cx) {
                    return Poll::Ready(Some(output));
                }
                if watch {
                    match poll_client_signal(self.stream.tcp(), cx) {
                        Poll::Ready(ClientSignal::Reset) => return Poll::Ready(None),
                        // Bytes of a next request, or a half-close (RFC 9112 §9.6: the
                        // client has sent all it will, and still waits for the answer).
                        Poll::Ready(ClientSignal::Bytes | ClientSignal::HalfClosed) => {
                            watch = false;
                        }
                        Poll::Pending => {}
                    }
                }
                let fed = self.poll_feed(cx);
                self.out.poll_write_opportunistic(&mut self.stream, cx);
                if !fed {
                    return Poll::Pending;
                }
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        })
    }

    /// Feeds the request body, if one is being read; `true` if that made progress.
    fn poll_feed(&mut self, cx: &mut Context<'_>) -> bool {
        match self.feed.as_mut() {
            Some(feed) => feed.poll(&mut self.stream, &mut self.rbuf, &mut self.out.buf, cx),
            None => false,
        }
    }

    /// The next request head if the buffer holds a complete one. A malformed head is
    /// answered here (and closes); an incomplete one starts the header timer.
    fn next_head(&mut self) -> Result<Option<RequestHead>, CloseReason> {
        match self
            .parser
            .parse_request(&mut self.rbuf, &self.config.head_limits, true)
        {
            Ok(HeadStatus::Complete(head)) => {
                self.head_deadline = None;
                Ok(Some(head))
            }
            Ok(HeadStatus::Partial { started }) => {
                if started && self.head_deadline.is_none() {
                    self.head_deadline = Some(Instant::now() + self.config.header_timeout);
                }
                Ok(None)
            }
            Err(error) => {
                tracing::debug!(conn = self.info.id, %error, "malformed request");
                self.requests += 1;
                self.write_error(error.status());
                self.observe_unparsed();
                Err(CloseReason::BadRequest)
            }
        }
    }

    /// Reads more input. With no byte of a head buffered, only what the socket already
    /// has (`false`: nothing, time to go idle); inside a head, waits until the header
    /// deadline (408 when it passes).
    async fn read_more(&mut self) -> Result<bool, CloseReason> {
        let Some(deadline) = self.head_deadline else {
            return match read_now(&mut self.stream, &mut self.rbuf, self.config.read_buffer) {
                None => Ok(false),
                Some(Ok(0)) => Err(CloseReason::ClientClosed),
                Some(Ok(_)) => Ok(true),
                Some(Err(_)) => Err(CloseReason::Io),
            };
        };
        Box::pin(self.read_head_until(deadline))
            .await
            .map(|()| true)
    }

    /// Waits for more bytes of an incomplete head, until `deadline`.
    async fn read_head_until(&mut self, deadline: Instant) -> Result<(), CloseReason> {
        match read_some(
            &mut self.stream,
            &mut self.rbuf,
            self.config.read_buffer,
            deadline,
        )
        .await
        {
            Ok(0) => Err(CloseReason::ClientClosed),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                self.requests += 1;
                self.write_error(StatusCode::REQUEST_TIMEOUT);
                self.observe_unparsed();
                Err(CloseReason::HeaderTimeout)
            }
            Err(_) => Err(CloseReason::Io),
        }
    }

    /// Refusals that need no service (the body stays unread, so they close): a transfer
    /// coding we do not implement (501), an unsupported expectation (417), a declared body
    /// over the limit (413).
    fn refusal(&self, head: &RequestHead) -> Option<StatusCode> {
        if head.fields.has_other_codings() {
            Some(ParseError::TransferCodingNotImplemented.status())
        } else if head.fields.expect == Expectation::Unsupported {
            Some(StatusCode::EXPECTATION_FAILED)
        } else if let (Some(limit), BodyFraming::Length(length)) =
            (self.config.max_body_bytes, head.framing)
            && length > limit
        {
            Some(ParseError::BodyTooLarge { limit }.status())
        } else {
            None
        }
    }

    /// Turns a parsed head into the request the service gets (its body fed from this
    /// connection as it is read), and says whether to watch the client for a reset while
    /// the service runs.
    fn admit(&mut self, head: RequestHead) -> Admitted {
        let RequestHead {
            method,
            uri,
            target_form,
            version,
            headers,
            raw,
            fields,
            framing,
        } = head;
        // Watch for the client going away while a bodiless request is handled (with a
        // body, reading it notices instead); not once the next request has arrived.
        let watch = self.config.abort_on_client_close
            && framing == BodyFraming::Empty
            && self.rbuf.is_empty();
        let mut extensions = http::Extensions::new();
        let ctx = RequestCtx {
            conn: self.info,
            number: self.requests,
            raw_head: raw,
            fields,
            target_form,
        };
        let body = if framing == BodyFraming::Empty {
            Incoming::empty()
        } else {
            // RFC 9110 §10.1.1: 100-continue is for HTTP/1.1 clients.
            let expect =
                if ctx.fields.expect == Expectation::Continue && version == Version::HTTP_11 {
                    Continue::Owed
                } else {
                    Continue::NotExpected
                };
            let (feed, body) = BodyFeed::open(framing, self.feed_limits(), expect);
            self.feed = Some(feed);
            body
        };
        if self.config.request_ctx_in_extensions {
            extensions.insert(ctx.clone());
        }
        let mut request = Request::new(body.with_ctx(ctx));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = version;
        *request.headers_mut() = headers;
        *request.extensions_mut() = extensions;
        Admitted { request, watch }
    }

    fn feed_limits(&self) -> FeedLimits {
        FeedLimits {
            chunked: self.config.chunked_limits,
            max_body: self.config.max_body_bytes,
            timeout: self.config.body_timeout,
            read_size: self.config.read_buffer,
        }
    }

    /// Why the connection must close after this request's response: the client's
    /// persistence intent (RFC 9112 §9.3), then server policy. Decided when the response
    /// is about to be written, so that a shutdown or lifetime that began while the handler
    /// ran still ends the connection with this response.
    fn close_after(&self, client_keeps_alive: bool) -> Option<CloseReason> {
        if !self.config.keep_alive {
            Some(CloseReason::ShortLived)
        } else if !client_keeps_alive {
            Some(CloseReason::ClientRequested)
        } else if self
            .config
            .max_requests
            .is_some_and(|max| self.requests >= max)
        {
            Some(CloseReason::MaxRequests)
        } else if self
            .lifetime
            .is_some_and(|lifetime| self.born.elapsed() >= lifetime)
        {
            Some(CloseReason::MaxLifetime)
        } else if self.shutdown.is_started() {
            Some(CloseReason::Shutdown)
        } else {
            None
        }
    }

    /// What becomes of the request body now that the response is about to be written:
    /// read already; still held by someone who may read it; or nobody reads it and what
    /// is already buffered is consumed, then a small remainder is discarded after the
    /// response and anything else closes the connection.
    /// With `Holding::Ends` (the response has been sent), whoever still holds the body has
    /// had their chance: it is taken from them and settled like an unread one.
    fn settle_feed(&mut self, holding: Holding) -> Unread {
        let Some(feed) = self.feed.as_mut() else {
            return Unread::Complete;
        };
        if feed.is_done() {
            self.feed = None;
            return Unread::Complete;
        }
        if feed.failure.is_some() {
            self.feed = None;
            return Unread::Close;
        }
        if holding == Holding::Lasts && feed.is_wanted() {
            return Unread::StillRead;
        }
        feed.abandon();
        let Some(feed) = self.feed.take() else {
            return Unread::Complete;
        };
        let mut decoder = feed.decoder;
        match settle_unread_body(&mut decoder, &mut self.rbuf) {
            Ok(true) => Unread::Complete,
            // The client still waits for 100 Continue and may never send the body.
            Ok(false) if feed.expect == Continue::Owed => Unread::Close,
            Ok(false)
                if decoder
                    .remaining()
                    .is_some_and(|left| left <= self.config.max_discard_bytes) =>
            {
                Unread::Discard(decoder)
            }
            Ok(false) | Err(_) => Unread::Close,
        }
    }

    /// Decides how the response goes out and writes what needs no waiting (its head) into
    /// the write buffer. Returns the plan for the rest.
    fn begin_response<B: HttpBody>(
        &mut self,
        parts: http::response::Parts,
        body: &B,
    ) -> Result<Plan, CloseReason> {
        if let Some(reason) = self.answer_body_failure() {
            return Err(reason);
        }
        let (method, version) = (&self.current.method, self.current.version);
        // A switch of protocols (RFC 9110 §15.2.2) or a CONNECT tunnel (§9.3.6): the head
        // goes out without framing, then the connection is handed over.
        let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS
            || (method == Method::CONNECT && parts.status.is_success());
        let framing = if switching {
            OutgoingFraming::None
        } else {
            response_framing_of(method, &parts, version, body)
        };
        let handover = self.handover(&parts, switching)?;
        let mut close = self.close_after(self.current.keep_alive);
        let unread = if switching {
            Unread::Complete
        } else {
            self.settle_feed(Holding::Lasts)
        };
        match &unread {
            Unread::Close => {
                close.get_or_insert(CloseReason::BodyUnread);
            }
            Unread::StillRead => {
                // Whoever holds the body may read it while the response streams: a client
                // waiting for 100 Continue gets it first, before the final response.
                if let Some(feed) = self.feed.as_mut()
                    && feed.expect == Continue::Owed
                {
                    feed.expect = Continue::Sent;
                    self.out.buf.extend_from_slice(CONTINUE);
                }
            }
            Unread::Complete | Unread::Discard(_) => {}
        }
        if !self.config.pipelining && !self.rbuf.is_empty() && self.feed.is_none() {
            close.get_or_insert(CloseReason::PipeliningRefused);
        }
        if parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| list_members(v.as_bytes()).any(|o| o.eq_ignore_ascii_case(b"close")))
        {
            close.get_or_insert(CloseReason::HandlerRequested);
        }
        if framing == OutgoingFraming::CloseDelimited {
            close.get_or_insert(CloseReason::CloseDelimited);
        }
        self.write_head(&parts, framing, version, close.is_none());
        Ok(Plan {
            framing,
            sent: 0,
            body_done: false,
            unread,
            close,
            upgrade: handover,
        })
    }

    /// A request body that failed to arrive decides the answer (the framing layer knows
    /// better than the handler what went wrong): its error status, then close.
    fn answer_body_failure(&mut self) -> Option<CloseReason> {
        let failure = self.feed.as_mut().and_then(|feed| feed.failure.take())?;
        self.feed = None;
        Some(match failure {
            BodyFailure::Invalid(error) => {
                self.write_error(error.status());
                CloseReason::BadRequest
            }
            BodyFailure::Timeout => {
                self.write_error(StatusCode::REQUEST_TIMEOUT);
                CloseReason::BodyTimeout
            }
            BodyFailure::Gone => CloseReason::ClientClosed,
        })
    }

    /// Where a switching response hands the connection over (the slot the handler put in
    /// it); a switch without one, or an interim status given as final, is a handler bug:
    /// 500.
    fn handover(
        &mut self,
        parts: &http::response::Parts,
        switching: bool,
    ) -> Result<Option<oneshot::Sender<Upgraded>>, CloseReason> {
        if switching {
            let slot = parts
                .extensions
                .get::<UpgradeSlot>()
                .and_then(UpgradeSlot::take);
            if slot.is_none() {
                tracing::error!(status = %parts.status, "a switching response without an UpgradeSlot");
                return Err(self.fail_response());
            }
            return Ok(slot);
        }
        if parts.status.is_informational() {
            tracing::error!(status = %parts.status, "handler returned an interim status as final");
            return Err(self.fail_response());
        }
        Ok(None)
    }

    /// A response the connection cannot send as the handler made it: 500 instead, then
    /// close.
    fn fail_response(&mut self) -> CloseReason {
        self.write_error(StatusCode::INTERNAL_SERVER_ERROR);
        CloseReason::HandlerFailed
    }

    /// Appends a response head; its `Connection` field states the final decision.
    fn write_head(
        &mut self,
        parts: &http::response::Parts,
        framing: OutgoingFraming,
        client_version: Version,
        keep: bool,
    ) {
        self.sent_status = parts.status;
        let wbuf = &mut self.out.buf;
        write_status_line(wbuf, Version::HTTP_11, parts.status);
        if !write_fields(wbuf, &parts.headers).date {
            write_date(wbuf);
        }
        match framing {
            OutgoingFraming::Length(length) | OutgoingFraming::Declared(length) => {
                write_content_length(wbuf, length)
            }
            OutgoingFraming::Chunked => wbuf.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            OutgoingFraming::None | OutgoingFraming::CloseDelimited => {}
        }
        // The `Connection` field is the connection's to write: its own decision (close,
        // keep-alive for HTTP/1.0, upgrade for a switch, RFC 9110 §7.8) and the options the
        // handler named (fields that are hop-by-hop for this response, §7.6.1).
        let mut options: Vec<&[u8]> = parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| list_members(v.as_bytes()))
            .filter(|o| {
                !(o.eq_ignore_ascii_case(b"close")
                    || o.eq_ignore_ascii_case(b"keep-alive")
                    || o.eq_ignore_ascii_case(b"upgrade"))
            })
            .collect();
        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            options.push(b"upgrade");
        } else if !keep {
            options.push(b"close");
        } else if client_version == Version::HTTP_10 {
            options.push(b"keep-alive");
        }
        if !options.is_empty() {
            wbuf.extend_from_slice(b"connection: ");
            for (i, option) in options.iter().enumerate() {
                if i > 0 {
                    wbuf.extend_from_slice(b", ");
                }
                wbuf.extend_from_slice(option);
            }
            wbuf.extend_from_slice(b"\r\n");
        }
        if keep
            && parts.status != StatusCode::SWITCHING_PROTOCOLS
            && self.config.advertise_keep_alive
        {
            wbuf.extend_from_slice(b"keep-alive: timeout=");
            write_decimal(wbuf, self.config.keepalive_timeout.as_secs());
            if let Some(max) = self.config.max_requests {
                wbuf.extend_from_slice(b", max=");
                write_decimal(wbuf, max.saturating_sub(self.requests));
            }
            wbuf.extend_from_slice(b"\r\n");
        }
        wbuf.extend_from_slice(b"\r\n");
    }

    /// Sends a response body with the chosen framing: small pieces are copied into the
    /// write buffer, large ones written from their own memory; the body is polled only
    /// while the client keeps up (backpressure), and the request body is fed meanwhile.
    /// Returns with the end of the body buffered, not necessarily written (pipelined
    /// responses still share writes).
    fn send_body<'s, B>(
        &'s mut self,
        mut body: Pin<&'s mut B>,
        framing: OutgoingFraming,
        mut sent: u64,
    ) -> impl Future<Output = Result<(), CloseReason>> + 's
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        poll_fn(move |cx| {
            for _ in 0..SPINS {
                // Output first: while the client is behind, the body waits. Past this
                // point no large piece is pending.
                if self.out.has_large() || self.out.pending() >= self.config.flush_threshold {
                    let timeout = self.config.write_timeout;
                    match self.out.poll_write_within(&mut self.stream, timeout, cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(error)) => {
                            return Poll::Ready(Err(write_error_reason(error)));
                        }
                        Poll::Pending => {
                            if self.poll_feed(cx) {
                                continue;
                            }
                            return Poll::Pending;
                        }
                    }
                }
                let step = match body.as_mut().poll_frame(cx) {
                    Poll::Ready(None) => return Poll::Ready(self.end_body(framing, sent, None)),
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => self.push_data(data, framing, &mut sent),
                        Err(frame) => match frame.into_trailers() {
                            Ok(trailers) => {
                                return Poll::Ready(self.end_body(framing, sent, Some(&trailers)));
                            }
                            Err(_) => Ok(()),
                        },
                    },
                    Poll::Ready(Some(Err(error))) => Err(self.body_failed(error.into())),
                    Poll::Pending => {
                        let fed = self.poll_feed(cx);
                        self.out.poll_write_opportunistic(&mut self.stream, cx);
                        if !fed {
                            return Poll::Pending;
                        }
                        Ok(())
                    }
                };
                if let Err(reason) = step {
                    return Poll::Ready(Err(reason));
                }
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        })
    }

    /// Appends one piece of the response body, framed.
    fn push_data(
        &mut self,
        data: Bytes,
        framing: OutgoingFraming,
        sent: &mut u64,
    ) -> Result<(), CloseReason> {
        if data.is_empty() {
            return Ok(());
        }
        *sent += data.len() as u64;
        self.sent_body = *sent;
        if let OutgoingFraming::Length(length) = framing
            && *sent > length
        {
            tracing::error!(length, sent, "response body longer than its length");
            return Err(CloseReason::ResponseAborted);
        }
        let chunked = framing == OutgoingFraming::Chunked;
        if chunked {
            write_chunk_header(&mut self.out.buf, data.len());
        }
        if data.len() <= COPY_LIMIT {
            self.out.buf.extend_from_slice(&data);
            if chunked {
                self.out.buf.extend_from_slice(CHUNK_DATA_END);
            }
        } else {
            self.out
                .push_large(data, if chunked { CHUNK_DATA_END } else { b"" });
        }
        Ok(())
    }

    /// Ends the response body (no large piece is pending): the last chunk (with
    /// trailers), or a check that a body of declared length was complete.
    fn end_body(
        &mut self,
        framing: OutgoingFraming,
        sent: u64,
        trailers: Option<&http::HeaderMap>,
    ) -> Result<(), CloseReason> {
        match framing {
            OutgoingFraming::Length(length) if sent < length => {
                tracing::error!(length, sent, "response body shorter than its length");
                Err(CloseReason::ResponseAborted)
            }
            OutgoingFraming::Chunked => {
                write_last_chunk(&mut self.out.buf, trailers);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Writes out the write buffer: at once if the socket takes it all (the usual case),
    /// else waiting until the write timeout.
    async fn flush(&mut self) -> Result<(), CloseReason> {
        self.out
            .flush(&mut self.stream, self.config.write_timeout)
            .await
            .map_err(write_error_reason)
    }

    /// Reads and drops the rest of a small request body nobody read.
    async fn discard_body(&mut self, mut decoder: BodyDecoder) -> Result<(), CloseReason> {
        loop {
            match decoder.decode(&mut self.rbuf) {
                Ok(Some(BodyEvent::Data(_))) => {}
                Ok(Some(BodyEvent::Trailers(_) | BodyEvent::End)) => return Ok(()),
                Ok(None) => {
                    let deadline = Instant::now() + self.config.body_timeout;
                    match read_some(
                        &mut self.stream,
                        &mut self.rbuf,
                        self.config.read_buffer,
                        deadline,
                    )
                    .await
                    {
                        Ok(0) => return Err(CloseReason::ClientClosed),
                        Ok(_) => {}
                        Err(_) => return Err(CloseReason::BodyUnread),
                    }
                }
                Err(_) => return Err(CloseReason::BodyUnread),
            }
        }
    }

    /// Appends a complete error response (the connection closes after it).
    fn write_error(&mut self, status: StatusCode) {
        self.sent_status = status;
        let text = error_text(status);
        let wbuf = &mut self.out.buf;
        write_status_line(wbuf, Version::HTTP_11, status);
        write_date(wbuf);
        wbuf.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\n");
        self.sent_body = text.len() as u64;
        write_content_length(wbuf, text.len() as u64);
        wbuf.extend_from_slice(b"connection: close\r\n\r\n");
        wbuf.extend_from_slice(text.as_bytes());
    }

    /// Closes the connection: flush, and if the client may still be sending, half-close
    /// and drain its input for a bounded time, so its last response is not reset.
    async fn close(&mut self, reason: CloseReason) {
        // An aborted response still sends what it produced: the client sees the message
        // end early, never a completion (no last chunk, fewer bytes than Content-Length).
        let writable = !matches!(reason, CloseReason::Io | CloseReason::WriteTimeout);
        if writable && self.flush().await.is_err() {
            return;
        }
        let linger = reason.wants_linger()
            || (reason == CloseReason::ClientRequested && !self.rbuf.is_empty());
        if !linger {
            return;
        }
        if self.stream.shutdown_write().is_err() {
            return;
        }
        let deadline = Instant::now() + self.config.linger_timeout;
        let mut drained = 0u64;
        while drained < self.config.linger_max_bytes {
            self.rbuf.clear();
            match read_some(
                &mut self.stream,
                &mut self.rbuf,
                self.config.read_buffer,
                deadline,
            )
            .await
            {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n as u64,
            }
        }
    }
}

/// How a response goes out, decided when its head is written.
struct Plan {
    framing: OutgoingFraming,
    /// Body bytes sent so far.
    sent: u64,
    /// The whole body has been appended.
    body_done: bool,
    /// What becomes of the request body.
    unread: Unread,
    /// Close after this response, and why.
    close: Option<CloseReason>,
    /// Hand the connection over after the head (a switching response).
    upgrade: Option<oneshot::Sender<Upgraded>>,
}

/// Whether someone holding the request body may go on reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holding {
    /// Yes: the response is about to stream (it may be the request body itself).
    Lasts,
    /// No: the response has been sent.
    Ends,
}

/// What is left of a request body when its response is written.
enum Unread {
    /// Nothing: it was read to its end (or there was none).
    Complete,
    /// Someone still holds it and may read it while the response streams.
    StillRead,
    /// Nobody reads it; this small remainder is discarded after the response.
    Discard(BodyDecoder),
    /// Nobody reads it and it is too large (or never coming): close after the response.
    Close,
}

/// The framing of a response from its parts and body ([`outgoing_response_framing`]): the
/// body's exact length if it states one, and for HEAD and 304 the length the handler
/// stated in `Content-Length`.
fn response_framing_of<B: HttpBody>(
    method: &Method,
    parts: &http::response::Parts,
    client: Version,
    body: &B,
) -> OutgoingFraming {
    let body_length = if body.is_end_stream() {
        Some(0)
    } else {
        body.size_hint().exact()
    };
    let stated = if method == Method::HEAD || parts.status == StatusCode::NOT_MODIFIED {
        parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| fold_content_length(None, value.as_bytes()).ok())
    } else {
        None
    };
    outgoing_response_framing(method, parts.status, client, body_length, stated)
}

fn write_error_reason(error: std::io::Error) -> CloseReason {
    if error.kind() == std::io::ErrorKind::TimedOut {
        CloseReason::WriteTimeout
    } else {
        CloseReason::Io
    }
}

/// Consumes the request body events already buffered. `Ok(true)` if the body is complete.
fn settle_unread_body(decoder: &mut BodyDecoder, rbuf: &mut BytesMut) -> Result<bool, ParseError> {
    loop {
        match decoder.decode(rbuf)? {
            Some(BodyEvent::Data(_)) => {}
            Some(BodyEvent::Trailers(_) | BodyEvent::End) => return Ok(true),
            None => return Ok(decoder.is_done()),
        }
    }
}

/// What a client waiting for its answer did.
enum ClientSignal {
    /// It reset the connection (or the socket failed): nobody will read the answer.
    Reset,
    /// It shut its sending side (end of stream). That is not an abort: it has sent its
    /// whole request and may still read the answer.
    HalfClosed,
    /// Bytes arrived (left unread: they are the next request).
    Bytes,
}

/// Watches a client while its request is handled; `Pending` while nothing happens. Peeks,
/// so nothing is consumed.
fn poll_client_signal(stream: &tokio::net::TcpStream, cx: &mut Context<'_>) -> Poll<ClientSignal> {
    loop {
        match stream.poll_read_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(ClientSignal::Reset),
            Poll::Ready(Ok(())) => {}
        }
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        // Through `try_io`, so that an empty socket clears tokio's readiness.
        match stream.try_io(tokio::io::Interest::READABLE, || {
            socket2::SockRef::from(stream).peek(&mut probe)
        }) {
            Ok(0) => return Poll::Ready(ClientSignal::HalfClosed),
            Ok(_) => return Poll::Ready(ClientSignal::Bytes),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return Poll::Ready(ClientSignal::Reset),
        }
    }
}

/// The text of an error response: `400 Bad Request\n`.
fn error_text(status: StatusCode) -> String {
    format!(
        "{} {}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    )
}

/// A plain-text error response: `400 Bad Request\n`.
pub fn error_response(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::from(error_text(status)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

thread_local! {
    /// The `Date` field line for the current second, rebuilt when the second changes.
    static DATE_LINE: RefCell<(u64, [u8; 37])> = const { RefCell::new((u64::MAX, [0; 37])) };
}

/// Seconds since the epoch from the coarse real-time clock: a few nanoseconds (no TSC
/// read), accurate to a few milliseconds, plenty for a `Date` field (Linux; elsewhere the
/// standard clock).
pub(crate) fn coarse_unix_seconds() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given and nothing else.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) } == 0 {
            return now.tv_sec as u64;
        }
    }
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Appends `date: <now>` (RFC 9110 §6.6.1: an origin server with a clock MUST send Date).
fn write_date(out: &mut Vec<u8>) {
    let now = coarse_unix_seconds();
    DATE_LINE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != now {
            cached.1[..6].copy_from_slice(b"date: ");
            cached.1[6..35].copy_from_slice(&crate::wire::date::format_http_date(now));
            cached.1[35..].copy_from_slice(b"\r\n");
            cached.0 = now;
        }
        out.extend_from_slice(&cached.1);
    });
}

/// The request target in a raw request head (the second word of its first line).
fn request_target(raw: &[u8]) -> &str {
    let line = raw
        .split(|b| *b == b'\r' || *b == b'\n')
        .next()
        .unwrap_or(raw);
    let target = line.split(|b| *b == b' ').nth(1).unwrap_or(b"");
    std::str::from_utf8(target).unwrap_or("")
}

/// Tells the observer, if any, that a downstream HTTP/1.x connection on `tcp` closed for
/// `reason`, having served `requests` since it was `born`.
fn report_closed(
    hooks: &Hooks,
    reason: CloseReason,
    requests: u64,
    born: Instant,
    tcp: &impl std::os::fd::AsRawFd,
) {
    if let Some(observer) = &hooks.observer {
        observer.closed(&ClosedRecord::downstream(
            reason.label(),
            requests,
            born,
            tcp.as_raw_fd(),
            crate::conn::Protocol::Http1,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_reason_is_listed_at_its_index() {
        for (i, reason) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
        }
    }
}

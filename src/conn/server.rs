//! The server side of one connection: read requests, call the handler, write responses in
//! order, and decide after each response whether the connection lives on.
//!
//! Owns keep-alive, pipelining, the idle / header / body / write timers, max requests,
//! max lifetime, `Expect: 100-continue`, error answers and the lingering close. It must not
//! know about listeners, pools or configuration files.
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
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::body::{Body, BodyFailure, BodyIo, BodyState, BodyStream, Frame, RequestBody};
use super::io::{read_now, read_some, write_all_until, write_two_until};
use super::shutdown::ShutdownListener;
use super::status::{
    ClosedRecord, ConnSide, ConnState, Hooks, LiveEntry, RequestRecord, UpstreamNote, tcp_info,
};
use super::upgrade::{UpgradeSlot, Upgraded};
use crate::wire::chunked::{CHUNK_DATA_END, write_chunk_header, write_last_chunk};
use crate::wire::head::{
    write_content_length, write_decimal, write_field, write_fields, write_status_line,
};
use crate::wire::headers::list_members;
use crate::wire::{
    BodyDecoder, BodyEvent, BodyFraming, ChunkedLimits, Expectation, HeadLimits, HeadParser,
    HeadStatus, MessageFields, ParseError, RequestHead, keep_alive_intent,
};
use tokio::sync::oneshot;

/// The connection policy of a server, each field with its default.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Keep connections open between requests. `false` makes every connection
    /// short-lived: each response carries `Connection: close`. Default `true`.
    pub keep_alive: bool,
    /// How long an idle connection (no byte of a next request yet) stays open. Default 60 s.
    pub keepalive_timeout: Duration,
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
    /// While a bodiless request's handler is pending, watch the client: if it resets the
    /// connection, drop the handler (a proxy abandons its upstream request). A half-close
    /// (end of stream after a whole request) is not an abort: the request is answered,
    /// then the connection closes (RFC 9112 §9.6). Default `true`.
    pub abort_on_client_close: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            keep_alive: true,
            keepalive_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_requests: None,
            max_lifetime: None,
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
            abort_on_client_close: true,
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
}

/// What a handler knows about the request besides the request itself.
#[derive(Debug, Clone, Copy)]
pub struct RequestCtx<'a> {
    /// The connection the request arrived on.
    pub conn: &'a ConnInfo,
    /// 1 for the first request on the connection (nginx's `$connection_requests`).
    pub number: u64,
    /// The request head exactly as received.
    pub raw_head: &'a Bytes,
}

/// What answers requests. Called once per request, in order; the connection waits for
/// the returned future (flushing earlier responses meanwhile) before reading the next
/// request head.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. The body streams from the connection as it is read.
    fn call(
        &self,
        request: Request<RequestBody<'_>>,
        ctx: RequestCtx<'_>,
    ) -> impl Future<Output = Response<Body>> + Send;
}

impl<H: Handler> Handler for std::sync::Arc<H> {
    fn call(
        &self,
        request: Request<RequestBody<'_>>,
        ctx: RequestCtx<'_>,
    ) -> impl Future<Output = Response<Body>> + Send {
        (**self).call(request, ctx)
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
    /// A socket error (reset, broken pipe). Keep it last: [`CloseReason::ALL`] is checked
    /// against it at compile time.
    Io,
}

const _: () = assert!(CloseReason::Io as usize + 1 == CloseReason::ALL.len());

impl CloseReason {
    /// Every reason, in the order of [`CloseReason::index`] (for counting by reason).
    pub const ALL: [CloseReason; 18] = [
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
        CloseReason::CloseDelimited,
        CloseReason::BodyUnread,
        CloseReason::ResponseAborted,
        CloseReason::PipeliningRefused,
        CloseReason::Upgraded,
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
            CloseReason::CloseDelimited => "close_delimited",
            CloseReason::BodyUnread => "body_unread",
            CloseReason::ResponseAborted => "response_aborted",
            CloseReason::PipeliningRefused => "pipelining_refused",
            CloseReason::Upgraded => "upgraded",
            CloseReason::Io => "error",
        }
    }
}

/// Response bodies up to this size are copied into the write buffer; larger ones are
/// written from their own memory.
const COPY_LIMIT: usize = 16 * 1024;

/// Write buffer reserved when a connection wakes from idle (released again when it goes
/// idle): room for a burst of small responses without reallocating.
const WBUF_INITIAL: usize = 2048;

/// Serves one connection until it closes, and says how it went (to `hooks` too, if
/// anything listens there).
pub async fn serve_connection<H: Handler>(
    stream: TcpStream,
    info: ConnInfo,
    handler: &H,
    config: &ServerConfig,
    shutdown: ShutdownListener,
    hooks: &Hooks,
) -> ConnSummary {
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
    let mut conn = Conn {
        live,
        hooks,
        sent_status: StatusCode::OK,
        sent_body: 0,
        stream,
        rbuf: BytesMut::new(),
        wbuf: Vec::new(),
        parser: HeadParser::new(),
        info,
        config,
        shutdown,
        requests: 0,
        writes: 0,
        head_deadline: None,
        upgrade: None,
        born: Instant::now(),
    };
    let mut idle_timer = pin!(tokio::time::sleep_until(conn.born + config.header_timeout));
    let reason = loop {
        if let Err(reason) = conn.wait_idle(idle_timer.as_mut()).await {
            break reason;
        }
        if let Err(close) = Box::pin(conn.serve_burst(handler)).await {
            if close != CloseReason::Upgraded {
                Box::pin(conn.close(close)).await;
            }
            break close;
        }
    };
    let summary = ConnSummary {
        requests: conn.requests,
        writes: conn.writes,
        reason,
    };
    if let Some(observer) = &hooks.observer {
        let tcp = tcp_info(&conn.stream).unwrap_or_default();
        observer.closed(&ClosedRecord {
            side: ConnSide::Downstream,
            reason: reason.label(),
            requests: conn.requests,
            lifetime: conn.born.elapsed(),
            bytes_in: tcp.bytes_received,
            bytes_out: tcp.bytes_acked,
        });
    }
    if let Some(handover) = conn.upgrade.take() {
        let Conn { stream, rbuf, .. } = conn;
        let _ = handover.send(Upgraded {
            stream,
            read_buf: rbuf.freeze(),
        });
    }
    summary
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
    stream: TcpStream,
    /// Bytes read but not yet parsed.
    rbuf: BytesMut,
    /// Response bytes not yet written.
    wbuf: Vec<u8>,
    parser: HeadParser,
    info: ConnInfo,
    config: &'a ServerConfig,
    shutdown: ShutdownListener,
    /// Requests answered so far.
    requests: u64,
    /// Write syscalls that carried response bytes.
    writes: u64,
    /// When the head being received must be complete (set at its first byte).
    head_deadline: Option<Instant>,
    /// Where the connection goes after a switching response (101, CONNECT 2xx).
    upgrade: Option<oneshot::Sender<Upgraded>>,
    born: Instant,
}

impl Conn<'_> {
    /// Waits, holding no buffers (an idle connection costs only its task and socket
    /// registration), until input arrives; `Err` if the connection should close instead
    /// (peer gone, idle timeout, lifetime, shutdown).
    async fn wait_idle(&mut self, mut timer: Pin<&mut Sleep>) -> Result<(), CloseReason> {
        debug_assert!(self.rbuf.is_empty() && self.wbuf.is_empty());
        self.set_state(ConnState::Idle);
        self.rbuf = BytesMut::new();
        self.wbuf = Vec::new();
        let now = Instant::now();
        // A new connection gets the header timeout for its first byte; later ones the
        // keep-alive timeout. Resetting a timer to a later deadline does not re-register it.
        let (mut deadline, mut reason) = if self.requests == 0 {
            (
                self.born + self.config.header_timeout,
                CloseReason::HeaderTimeout,
            )
        } else {
            (
                now + self.config.keepalive_timeout,
                CloseReason::IdleTimeout,
            )
        };
        if let Some(lifetime) = self.config.max_lifetime
            && self.born + lifetime < deadline
        {
            (deadline, reason) = (self.born + lifetime, CloseReason::MaxLifetime);
        }
        timer.as_mut().reset(deadline);
        let stream = &self.stream;
        let shutdown = &mut self.shutdown;
        poll_fn(|cx| {
            if shutdown.poll_started(cx).is_ready() {
                return Poll::Ready(Err(CloseReason::Shutdown));
            }
            match stream.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Err(CloseReason::Io)),
                Poll::Pending => {}
            }
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(reason)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        self.set_state(ConnState::ReadingHead);
        Ok(())
    }

    fn set_state(&self, state: ConnState) {
        if let Some(live) = &self.live {
            live.status().set_state(state);
        }
    }

    /// Reports an answered request to the observer, if there is one.
    fn observe(
        &self,
        request: Option<(&Method, &Bytes, Version)>,
        started: Option<Instant>,
        upstream: Option<UpstreamNote>,
    ) {
        let Some(observer) = &self.hooks.observer else {
            return;
        };
        let (method, target, version) = match request {
            Some((method, raw, version)) => (Some(method), request_target(raw), version),
            None => (None, "", Version::HTTP_11),
        };
        observer.request(&RequestRecord {
            conn: self.info.id,
            peer: self.info.peer,
            number: self.requests,
            method,
            target,
            version,
            status: self.sent_status,
            body_bytes: self.sent_body,
            duration: started.map_or(Duration::ZERO, |at| at.elapsed()),
            upstream,
        });
    }

    /// Serves every request that arrives without the connection going idle.
    ///
    /// A future is moved by copying its whole size when it is created, so this loop keeps
    /// every per-request step that need not wait synchronous (parse, refuse, write the head
    /// and a small body into the buffer); it awaits only the handler in place, and slow
    /// I/O and streamed bodies behind boxes. That is what makes pipelining cheap.
    async fn serve_burst<H: Handler>(&mut self, handler: &H) -> Result<(), CloseReason> {
        self.wbuf.reserve(WBUF_INITIAL);
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
            self.requests += 1;
            // The clock is read only when someone observes requests.
            let started = self.hooks.observer.is_some().then(Instant::now);
            if let Some(live) = &self.live {
                live.status().set_requests(self.requests);
                live.status().set_state(ConnState::InRequest);
            }
            self.sent_status = StatusCode::OK;
            self.sent_body = 0;
            let expect_continue = match self.admit(&head) {
                Ok(expect_continue) => expect_continue,
                Err(reason) => {
                    self.observe(Some((&head.method, &head.raw, head.version)), started, None);
                    return Err(reason);
                }
            };
            if expect_continue {
                // `100 Continue` must follow every earlier response.
                self.flush().await?;
            }
            let mut body_state = BodyState {
                decoder: BodyDecoder::new(head.framing, self.config.chunked_limits),
                received: 0,
                limit: self.config.max_body_bytes,
                continue_pending: expect_continue,
                timeout: self.config.body_timeout,
                read_size: self.config.read_buffer,
                failure: None,
            };
            let RequestHead {
                method,
                uri,
                version,
                headers,
                raw,
                framing,
                fields,
                target_form: _,
            } = head;
            let request_method = method.clone();
            // Watch for the client going away while a bodiless request is handled (with a
            // body, reading it notices instead); not once the next request has arrived.
            let watch = (self.config.abort_on_client_close
                && framing == BodyFraming::Empty
                && self.rbuf.is_empty())
            .then_some(&self.stream);
            let body = if framing == BodyFraming::Empty {
                RequestBody::empty()
            } else {
                RequestBody::new(BodyIo {
                    stream: &self.stream,
                    rbuf: &mut self.rbuf,
                    state: &mut body_state,
                })
            };
            let mut request = Request::new(body);
            *request.method_mut() = method;
            *request.uri_mut() = uri;
            *request.version_mut() = version;
            *request.headers_mut() = headers;
            let ctx = RequestCtx {
                conn: &self.info,
                number: self.requests,
                raw_head: &raw,
            };
            let response = {
                // Awaited in place (pinned here, never moved again); the block ends its
                // borrows of the connection before the response is written.
                let call = pin!(handler.call(request, ctx));
                let mut flushing =
                    Flushing::new(call, &self.stream, &mut self.wbuf, &mut self.writes);
                flushing.watch = watch;
                flushing.await
            };
            let Some(response) = response else {
                tracing::debug!(
                    conn = self.info.id,
                    "client reset the connection while its request was handled"
                );
                // As nginx logs it: 499, client closed request.
                self.sent_status = StatusCode::from_u16(499).expect("a valid status code");
                self.observe(Some((&request_method, &raw, version)), started, None);
                return Err(CloseReason::ClientClosed);
            };
            self.set_state(ConnState::Writing);
            let upstream = started
                .and(response.extensions().get::<UpstreamNote>())
                .copied();

            // A labelled block, not a helper: awaiting a new future here would copy it per
            // request (see `serve_burst`).
            let sent: Result<(), CloseReason> = 'respond: {
                let rest = match self.begin_response(
                    response,
                    &mut body_state,
                    &fields,
                    version,
                    &request_method,
                ) {
                    Ok(rest) => rest,
                    Err(reason) => break 'respond Err(reason),
                };
                if let Some(handover) = rest.upgrade {
                    if let Err(reason) = self.flush().await {
                        break 'respond Err(reason);
                    }
                    self.upgrade = Some(handover);
                    break 'respond Err(CloseReason::Upgraded);
                }
                let body = match rest.body {
                    Remaining::Nothing => Ok(()),
                    Remaining::Large(bytes) => Box::pin(self.push_data(bytes)).await,
                    Remaining::Stream(stream, framing) => {
                        Box::pin(self.stream_body(stream, framing)).await
                    }
                };
                if let Err(reason) = body {
                    break 'respond Err(reason);
                }
                if rest.discard_body
                    && rest.close.is_none()
                    && let Err(reason) = Box::pin(self.discard_body(&mut body_state)).await
                {
                    break 'respond Err(reason);
                }
                match rest.close {
                    Some(reason) => Err(reason),
                    None => Ok(()),
                }
            };
            if started.is_some() {
                self.observe(Some((&request_method, &raw, version)), started, upstream);
            }
            sent?;
            if self.wbuf.len() >= self.config.flush_threshold {
                self.flush().await?;
            }
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
                self.observe(None, None, None);
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
            &self.stream,
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
                self.observe(None, None, None);
                Err(CloseReason::HeaderTimeout)
            }
            Err(_) => Err(CloseReason::Io),
        }
    }

    /// Refusals that need no handler (their body stays unread, so they close); otherwise
    /// whether the request expects `100 Continue` (RFC 9110 §10.1.1; ignored for HTTP/1.0).
    fn admit(&mut self, head: &RequestHead) -> Result<bool, CloseReason> {
        let refusal = if head.fields.has_other_codings() {
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
        };
        if let Some(status) = refusal {
            self.write_error(status);
            return Err(CloseReason::BadRequest);
        }
        Ok(head.fields.expect == Expectation::Continue
            && head.version == Version::HTTP_11
            && head.framing != BodyFraming::Empty)
    }

    /// Why the connection must close after this request's response: the client's
    /// persistence intent (RFC 9112 §9.3), then server policy. Decided when the response
    /// is about to be written, so that a shutdown or lifetime that began while the handler
    /// ran still ends the connection with this response.
    fn close_after(&self, fields: &MessageFields) -> Option<CloseReason> {
        if !self.config.keep_alive {
            Some(CloseReason::ShortLived)
        } else if !keep_alive_intent(fields) {
            Some(CloseReason::ClientRequested)
        } else if self
            .config
            .max_requests
            .is_some_and(|max| self.requests >= max)
        {
            Some(CloseReason::MaxRequests)
        } else if self
            .config
            .max_lifetime
            .is_some_and(|lifetime| self.born.elapsed() >= lifetime)
        {
            Some(CloseReason::MaxLifetime)
        } else if self.shutdown.is_started() {
            Some(CloseReason::Shutdown)
        } else {
            None
        }
    }

    /// Decides how the response goes out and writes what needs no waiting: the head and a
    /// small body, into the write buffer. Returns what is left to do.
    fn begin_response(
        &mut self,
        response: Response<Body>,
        body_state: &mut BodyState,
        fields: &MessageFields,
        client_version: Version,
        method: &Method,
    ) -> Result<Rest, CloseReason> {
        let (mut parts, mut body) = response.into_parts();
        let is_head = method == Method::HEAD;

        // A body that failed to arrive decides the answer: the framing layer knows better
        // than the handler what went wrong.
        if let Some(failure) = body_state.failure.take() {
            return Err(match failure {
                BodyFailure::Invalid(error) => {
                    self.write_error(error.status());
                    CloseReason::BadRequest
                }
                BodyFailure::Timeout => {
                    self.write_error(StatusCode::REQUEST_TIMEOUT);
                    CloseReason::BodyTimeout
                }
                BodyFailure::Gone => CloseReason::ClientClosed,
            });
        }
        // A switch of protocols (RFC 9110 §15.2.2) or a CONNECT tunnel (§9.3.6): the head
        // goes out without framing, then the connection is handed over.
        let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS
            || (method == Method::CONNECT && parts.status.is_success());
        if switching {
            match parts
                .extensions
                .get::<UpgradeSlot>()
                .and_then(UpgradeSlot::take)
            {
                Some(handover) => {
                    self.write_head(&parts, &Framing::None, client_version, true);
                    return Ok(Rest {
                        body: Remaining::Nothing,
                        discard_body: false,
                        close: None,
                        upgrade: Some(handover),
                    });
                }
                None => {
                    tracing::error!(status = %parts.status, "a switching response without an UpgradeSlot");
                    (parts, body) = error_response(StatusCode::INTERNAL_SERVER_ERROR).into_parts();
                }
            }
        }
        if parts.status.is_informational() {
            tracing::error!(status = %parts.status, "handler returned an interim status as final");
            (parts, body) = error_response(StatusCode::INTERNAL_SERVER_ERROR).into_parts();
        }
        let mut close = self.close_after(fields);
        if !self.config.pipelining && !self.rbuf.is_empty() && body_state.decoder.is_done() {
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

        // What is left of the request body: consume what is already buffered; a small
        // remainder is discarded after the response, anything else closes.
        let discard_body = match settle_unread_body(body_state, &mut self.rbuf) {
            Ok(true) => false,
            Ok(false) if body_state.continue_pending => {
                // The client still waits for 100 Continue and may never send the body.
                close.get_or_insert(CloseReason::BodyUnread);
                false
            }
            Ok(false)
                if body_state
                    .decoder
                    .remaining()
                    .is_some_and(|left| left <= self.config.max_discard_bytes) =>
            {
                true
            }
            Ok(false) | Err(_) => {
                close.get_or_insert(CloseReason::BodyUnread);
                false
            }
        };

        // RFC 9110 §6.4.1, RFC 9112 §6.3: no body after HEAD, 1xx, 204 and 304.
        let status = parts.status;
        let bodiless_status = status == StatusCode::NO_CONTENT;
        let sends_body = !is_head && !bodiless_status && status != StatusCode::NOT_MODIFIED;
        let framing = if bodiless_status {
            Framing::None
        } else {
            match body.length() {
                // A HEAD or 304 answer may repeat the length the handler states.
                Some(0) if !sends_body => match parts.headers.get(header::CONTENT_LENGTH) {
                    Some(length) => Framing::Declared(length.clone()),
                    None => Framing::None,
                },
                Some(length) => Framing::Length(length),
                None if !sends_body => Framing::None,
                None if client_version == Version::HTTP_11 => Framing::Chunked,
                None => {
                    close.get_or_insert(CloseReason::CloseDelimited);
                    Framing::CloseDelimited
                }
            }
        };
        self.write_head(&parts, &framing, client_version, close.is_none());

        let body = match body {
            _ if !sends_body => Remaining::Nothing,
            Body::Empty => Remaining::Nothing,
            Body::Full(bytes) if bytes.len() <= COPY_LIMIT => {
                self.sent_body = bytes.len() as u64;
                self.wbuf.extend_from_slice(&bytes);
                Remaining::Nothing
            }
            Body::Full(bytes) => {
                self.sent_body = bytes.len() as u64;
                Remaining::Large(bytes)
            }
            Body::Stream(stream) => Remaining::Stream(stream, framing),
        };
        Ok(Rest {
            body,
            discard_body,
            close,
            upgrade: None,
        })
    }

    /// Appends a response head; its `Connection` field states the final decision.
    fn write_head(
        &mut self,
        parts: &http::response::Parts,
        framing: &Framing,
        client_version: Version,
        keep: bool,
    ) {
        self.sent_status = parts.status;
        let wbuf = &mut self.wbuf;
        write_status_line(wbuf, Version::HTTP_11, parts.status);
        if !write_fields(wbuf, &parts.headers).date {
            write_date(wbuf);
        }
        match framing {
            Framing::Length(length) => write_content_length(wbuf, *length),
            Framing::Declared(length) => write_field(wbuf, b"content-length", length.as_bytes()),
            Framing::Chunked => wbuf.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            Framing::None | Framing::CloseDelimited => {}
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

    /// Sends a streamed body with the chosen framing, flushing while the source is slow.
    async fn stream_body(
        &mut self,
        mut stream: BodyStream,
        framing: Framing,
    ) -> Result<(), CloseReason> {
        let mut sent: u64 = 0;
        let mut trailers = None;
        loop {
            let next = pin!(stream.frame());
            let frame = Flushing::new(next, &self.stream, &mut self.wbuf, &mut self.writes)
                .await
                .expect("not watching the client");
            match frame {
                None => break,
                Some(Ok(Frame::Data(data))) if data.is_empty() => {}
                Some(Ok(Frame::Data(data))) => {
                    sent += data.len() as u64;
                    self.sent_body = sent;
                    match framing {
                        Framing::Length(length) if sent > length => {
                            tracing::error!(length, sent, "response body longer than its length");
                            return Err(CloseReason::ResponseAborted);
                        }
                        Framing::Chunked => {
                            write_chunk_header(&mut self.wbuf, data.len());
                            self.push_data(data).await?;
                            self.wbuf.extend_from_slice(CHUNK_DATA_END);
                        }
                        _ => self.push_data(data).await?,
                    }
                    if self.wbuf.len() >= self.config.flush_threshold {
                        self.flush().await?;
                    }
                }
                Some(Ok(Frame::Trailers(fields))) => {
                    trailers = Some(fields);
                    break;
                }
                Some(Err(error)) => {
                    tracing::warn!(conn = self.info.id, %error, "response body failed; closing");
                    return Err(CloseReason::ResponseAborted);
                }
            }
        }
        match framing {
            Framing::Length(length) if sent < length => {
                tracing::error!(length, sent, "response body shorter than its length");
                Err(CloseReason::ResponseAborted)
            }
            Framing::Chunked => {
                write_last_chunk(&mut self.wbuf, trailers.as_ref());
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Appends body bytes: small ones are copied into the write buffer, large ones are
    /// written together with it without a copy.
    async fn push_data(&mut self, data: Bytes) -> Result<(), CloseReason> {
        if data.len() <= COPY_LIMIT {
            self.wbuf.extend_from_slice(&data);
            return Ok(());
        }
        let deadline = Instant::now() + self.config.write_timeout;
        let result = write_two_until(&self.stream, &self.wbuf, &data, deadline).await;
        self.wbuf.clear();
        self.writes += result.as_ref().map_or(0, |n| *n);
        result.map(drop).map_err(write_error_reason)
    }

    /// Writes out the write buffer: at once if the socket takes it all (the usual case),
    /// else waiting (boxed) until the write timeout.
    async fn flush(&mut self) -> Result<(), CloseReason> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        match self.stream.try_write(&self.wbuf) {
            Ok(n) => {
                self.writes += 1;
                self.wbuf.drain(..n);
                if self.wbuf.is_empty() {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                self.wbuf.clear();
                return Err(CloseReason::Io);
            }
        }
        Box::pin(self.flush_until_timeout()).await
    }

    async fn flush_until_timeout(&mut self) -> Result<(), CloseReason> {
        let deadline = Instant::now() + self.config.write_timeout;
        let result = write_all_until(&self.stream, &self.wbuf, deadline).await;
        self.wbuf.clear();
        self.writes += result.as_ref().map_or(0, |n| *n);
        result.map(drop).map_err(write_error_reason)
    }

    /// Reads and drops the rest of a small request body the handler did not read.
    async fn discard_body(&mut self, state: &mut BodyState) -> Result<(), CloseReason> {
        let mut body = RequestBody::new(BodyIo {
            stream: &self.stream,
            rbuf: &mut self.rbuf,
            state,
        });
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                return Err(CloseReason::BodyUnread);
            }
        }
        Ok(())
    }

    /// Appends a complete error response (the connection closes after it).
    fn write_error(&mut self, status: StatusCode) {
        self.sent_status = status;
        let (parts, body) = error_response(status).into_parts();
        write_status_line(&mut self.wbuf, Version::HTTP_11, status);
        write_date(&mut self.wbuf);
        write_fields(&mut self.wbuf, &parts.headers);
        if let Body::Full(text) = body {
            self.sent_body = text.len() as u64;
            write_content_length(&mut self.wbuf, text.len() as u64);
            self.wbuf.extend_from_slice(b"connection: close\r\n\r\n");
            self.wbuf.extend_from_slice(&text);
        }
    }

    /// Closes the connection: flush, then (if the client may still be sending) half-close
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
        if socket2::SockRef::from(&self.stream)
            .shutdown(std::net::Shutdown::Write)
            .is_err()
        {
            return;
        }
        let deadline = Instant::now() + self.config.linger_timeout;
        let mut drained = 0u64;
        while drained < self.config.linger_max_bytes {
            self.rbuf.clear();
            match read_some(
                &self.stream,
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

/// What remains of a response after its head is buffered.
struct Rest {
    /// Body bytes still to send.
    body: Remaining,
    /// Discard the rest of a small unread request body afterwards.
    discard_body: bool,
    /// Close after this response, and why.
    close: Option<CloseReason>,
    /// Hand the connection over after the head (a switching response).
    upgrade: Option<oneshot::Sender<Upgraded>>,
}

/// Body bytes still to send after the head.
enum Remaining {
    /// None: no body, or it was small enough to buffer with the head.
    Nothing,
    /// A large in-memory body, written without copying.
    Large(Bytes),
    /// A streamed body and its framing.
    Stream(BodyStream, Framing),
}

/// How a response body is delimited on the wire.
enum Framing {
    /// No body and no length field.
    None,
    /// `Content-Length` as the handler stated it (HEAD and 304 answers).
    Declared(HeaderValue),
    /// `Content-Length` of the body.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body ends when the connection closes.
    CloseDelimited,
}

fn write_error_reason(error: std::io::Error) -> CloseReason {
    if error.kind() == std::io::ErrorKind::TimedOut {
        CloseReason::WriteTimeout
    } else {
        CloseReason::Io
    }
}

/// Consumes the request body events already buffered. `Ok(true)` if the body is complete.
fn settle_unread_body(state: &mut BodyState, rbuf: &mut BytesMut) -> Result<bool, ParseError> {
    loop {
        match state.decoder.decode(rbuf)? {
            Some(BodyEvent::Data(_) | BodyEvent::Trailers(_)) => {}
            Some(BodyEvent::End) => return Ok(true),
            None => return Ok(state.decoder.is_done()),
        }
    }
}

/// Polls a pinned future to completion; whenever it is pending, writes out what the
/// write buffer holds, so earlier (pipelined) responses are not held back by a slow
/// handler or body source. A write error is left for the next flush to report. Holding the
/// future by `Pin<&mut>` (not by value) means it is never copied.
struct Flushing<'a, F> {
    future: Pin<&'a mut F>,
    stream: &'a TcpStream,
    wbuf: &'a mut Vec<u8>,
    writes: &'a mut u64,
    write_failed: bool,
    /// The client to watch for closing (then the output is `None`).
    watch: Option<&'a TcpStream>,
}

impl<'a, F: Future> Flushing<'a, F> {
    fn new(
        future: Pin<&'a mut F>,
        stream: &'a TcpStream,
        wbuf: &'a mut Vec<u8>,
        writes: &'a mut u64,
    ) -> Self {
        Flushing {
            future,
            stream,
            wbuf,
            writes,
            write_failed: false,
            watch: None,
        }
    }
}

impl<F: Future> Future for Flushing<'_, F> {
    /// `None` if the watched client went away first.
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        if let Poll::Ready(output) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        let this = &mut *self;
        if let Some(client) = this.watch {
            match poll_client_signal(client, cx) {
                Poll::Ready(ClientSignal::Reset) => return Poll::Ready(None),
                // Bytes of a next request, or a half-close (RFC 9112 §9.6: the client has
                // sent all it will, and still waits for the answer): stop watching.
                Poll::Ready(ClientSignal::Bytes | ClientSignal::HalfClosed) => this.watch = None,
                Poll::Pending => {}
            }
        }
        if !this.write_failed && poll_write_some(this.stream, this.wbuf, this.writes, cx).is_ready()
        {
            this.write_failed = !this.wbuf.is_empty();
        }
        Poll::Pending
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
fn poll_client_signal(stream: &TcpStream, cx: &mut Context<'_>) -> Poll<ClientSignal> {
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

/// Writes as much of `wbuf` as the socket takes now; ready when empty or on error.
fn poll_write_some(
    stream: &TcpStream,
    wbuf: &mut Vec<u8>,
    writes: &mut u64,
    cx: &mut Context<'_>,
) -> Poll<()> {
    while !wbuf.is_empty() {
        match stream.try_write(wbuf) {
            Ok(n) => {
                *writes += 1;
                wbuf.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                match stream.poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
            Err(_) => return Poll::Ready(()),
        }
    }
    Poll::Ready(())
}

/// A plain-text error response: `400 Bad Request\n`.
pub fn error_response(status: StatusCode) -> Response<Body> {
    let text = format!(
        "{} {}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = Response::new(Body::from(text));
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
/// read), accurate to a few milliseconds, plenty for a `Date` field.
fn coarse_unix_seconds() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given and nothing else.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) } == 0 {
        now.tv_sec as u64
    } else {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
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

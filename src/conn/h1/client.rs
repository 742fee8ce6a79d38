//! The client side of one HTTP/1.x connection: write requests (streaming their bodies),
//! read the responses in order, and say afterwards whether the connection may be reused,
//! and if not, why.
//!
//! Owns the protocol state of one client connection: requests in flight (several when the
//! caller pipelines), the current response body, 1xx interim responses, `100-continue`, and
//! the server's persistence signals (`Connection`, HTTP/1.0, `Keep-Alive: timeout, max`). It
//! must not know about pools, retries or which connection to use: those are the caller's.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use http_body::Frame;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{Instant, Sleep};

use crate::conn::io::{Output, make_room, read_some};
use crate::conn::status::{self, ClosedRecord, ConnSide, ConnState, Hooks, LiveEntry, Observer};
use crate::error::{Error, ErrorKind, Side};
use crate::transport::{Dial, Stream};
use crate::wire::chunked::{CHUNK_DATA_END, write_chunk_header, write_last_chunk};
use crate::wire::head::{write_content_length, write_field, write_fields, write_request_line};
use crate::wire::headers::list_members;
use crate::wire::{
    BodyDecoder, BodyEvent, BodyFraming, ChunkedLimits, HeadLimits, HeadParser, HeadStatus,
    OutgoingFraming, ResponseHead, keep_alive_intent,
};

/// Client-side protocol settings, each with its default. Build it from
/// `ClientConfig::default()` and set the fields that differ.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The HTTP version spoken to servers. Default HTTP/1.1; HTTP/1.0 for hops that need it
    /// (no chunked request bodies, keep-alive only on request).
    pub version: Version,
    /// Longest wait for the first byte of a response once the request is sent. Default 60 s.
    pub response_timeout: Duration,
    /// Longest wait for the next bytes while reading a response. Default 30 s.
    pub read_timeout: Duration,
    /// Longest wait for the server to accept request bytes. Default 30 s.
    pub write_timeout: Duration,
    /// How long to wait for `100 Continue` before sending the body anyway (RFC 9110
    /// §10.1.1). Default 1 s.
    pub expect_continue_timeout: Duration,
    /// Limits on response heads.
    pub head_limits: HeadLimits,
    /// Limits of the chunked decoder.
    pub chunked_limits: ChunkedLimits,
    /// Bytes requested per socket read. Default 16 KiB.
    pub read_buffer: usize,
    /// Where connections report (live view, metrics). Default: nowhere.
    pub hooks: Hooks,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            version: Version::HTTP_11,
            response_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            expect_continue_timeout: Duration::from_secs(1),
            head_limits: HeadLimits::default(),
            chunked_limits: ChunkedLimits::default(),
            read_buffer: 16 * 1024,
            hooks: Hooks::default(),
        }
    }
}

/// Why a connection must not be reused (after the response that ended it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotReusable {
    /// The server said `Connection: close`.
    ServerClose,
    /// An HTTP/1.0 response without `Connection: keep-alive`.
    Http10,
    /// The response body was delimited by the server closing the connection.
    CloseDelimited,
    /// The response body was not read to its end.
    BodyNotRead,
    /// Bytes arrived beyond the response with no request in flight to own them.
    ExtraBytes,
    /// The connection switched protocols (101) or became a CONNECT tunnel.
    Upgraded,
    /// A read, write or parse failed, or a timer ran out.
    Error,
    /// The server's `Keep-Alive: max` (or the pool's limit) is used up.
    RequestsExhausted,
    /// We asked the server to close (`Connection: close` sent).
    ClientClose,
    /// The request body was not sent completely.
    RequestIncomplete,
}

impl NotReusable {
    /// The reason as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            NotReusable::ServerClose => "server_close",
            NotReusable::Http10 => "http10",
            NotReusable::CloseDelimited => "close_delimited",
            NotReusable::BodyNotRead => "body_not_read",
            NotReusable::ExtraBytes => "extra_bytes",
            NotReusable::Upgraded => "upgraded",
            NotReusable::Error => "error",
            NotReusable::RequestsExhausted => "max_requests",
            NotReusable::ClientClose => "short_lived",
            NotReusable::RequestIncomplete => "request_incomplete",
        }
    }
}

/// A connection's reports to its hooks: its place in the live view, and its end to the
/// observer (with the last reason it learned).
struct Monitor {
    live: Option<LiveEntry>,
    observer: Option<Arc<dyn Observer>>,
    fd: RawFd,
    created: Instant,
    requests: u64,
    reason: &'static str,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl Monitor {
    fn set_state(&self, state: ConnState) {
        if let Some(live) = &self.live {
            live.status().set_state(state);
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        // Dropped before the socket it watches (it is declared first), so `fd` is open.
        if let Some(observer) = &self.observer {
            let tcp = status::tcp_info_of(self.fd).unwrap_or_default();
            observer.closed(&ClosedRecord {
                side: ConnSide::Upstream,
                reason: self.reason,
                requests: self.requests,
                lifetime: self.created.elapsed(),
                bytes_in: tcp.bytes_received,
                bytes_out: tcp.bytes_acked,
                protocol: crate::conn::Protocol::Http1,
                group: None,
            });
        }
    }
}

/// What a request asks of its connection (RFC 9112 §9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Keep it open for more requests (HTTP/1.1's default; `keep-alive` asked of 1.0).
    KeepAlive,
    /// Close it after this exchange (`Connection: close`).
    Close,
}

/// A request in flight: enough to read its response.
#[derive(Debug, Clone)]
struct InFlight {
    method: Method,
}

/// Where the connection stands.
#[derive(Debug)]
enum Receiving {
    /// No response body is being read.
    Nothing,
    /// Reading the body of the response to the oldest request in flight.
    Body(BodyDecoder),
}

/// The server's `Keep-Alive` hints (RFC 2068 §19.7.1, still widely sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeepAliveHint {
    /// The server closes the connection after this long idle.
    pub timeout: Option<Duration>,
    /// Requests the server will still accept on this connection.
    pub max: Option<u64>,
}

impl KeepAliveHint {
    /// Parses `timeout=N, max=M` (unknown parameters ignored).
    pub fn parse(value: &[u8]) -> Self {
        let mut hint = KeepAliveHint::default();
        for member in list_members(value) {
            let Ok(member) = std::str::from_utf8(member) else {
                continue;
            };
            let Some((name, number)) = member.split_once('=') else {
                continue;
            };
            let Ok(number) = number.trim().trim_matches('"').parse::<u64>() else {
                continue;
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "timeout" => hint.timeout = Some(Duration::from_secs(number)),
                "max" => hint.max = Some(number),
                _ => {}
            }
        }
        hint
    }
}

/// What came back for a request sent with `Expect: 100-continue`.
#[derive(Debug)]
pub enum ContinueOutcome {
    /// `100 Continue` arrived, or the wait ran out: send the body.
    SendBody,
    /// The server answered with a final response instead: do not send the body.
    Final(Box<ResponseHead>),
}

/// One client connection.
#[derive(Debug)]
pub struct ClientConn {
    /// Reports to the hooks, if any. First: it must drop before the socket closes.
    monitor: Option<Box<Monitor>>,
    stream: Stream,
    rbuf: BytesMut,
    out: Output,
    parser: HeadParser,
    config: ClientConfig,
    id: u64,
    peer: SocketAddr,
    created: Instant,
    /// When the last response completed (or the connection opened).
    last_used: Instant,
    /// Requests written (at least their heads).
    sent: u64,
    /// Responses read to their end.
    completed: u64,
    in_flight: VecDeque<InFlight>,
    body: Receiving,
    /// A request body is being written (its head is sent, its end is not).
    writing_body: Option<OutgoingFraming>,
    /// The response or read timeout, while [`ClientConn::poll_head`] waits.
    head_timer: Option<Pin<Box<Sleep>>>,
    /// Bytes of the current response head have arrived (for retry decisions).
    response_started: bool,
    hint: KeepAliveHint,
    /// Set once the connection must not be reused; never cleared.
    not_reusable: Option<NotReusable>,
}

impl ClientConn {
    /// Connects to `addr` (plain TCP, `TCP_NODELAY`), giving up after `timeout`. For TLS,
    /// open the stream with [`crate::transport::connect`] and wrap it with
    /// [`ClientConn::from_stream`].
    pub async fn connect(
        addr: SocketAddr,
        id: u64,
        config: ClientConfig,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let dial = Dial {
            addr,
            tls: None,
            timeout,
            proxy_header: None,
        };
        let (stream, _) = crate::transport::connect(dial).await?;
        Ok(Self::from_stream(stream, addr, id, config))
    }

    /// Wraps a connected stream (TCP, or TLS with its handshake done).
    pub fn from_stream(stream: Stream, peer: SocketAddr, id: u64, config: ClientConfig) -> Self {
        let now = Instant::now();
        let hooks = &config.hooks;
        let monitor = hooks.is_active().then(|| {
            if let Some(observer) = &hooks.observer {
                observer.opened(ConnSide::Upstream);
            }
            Box::new(Monitor {
                live: hooks.live.as_ref().map(|live| {
                    live.register(ConnSide::Upstream, id, peer, &stream, ConnState::Idle)
                }),
                observer: hooks.observer.clone(),
                fd: stream.tcp().as_raw_fd(),
                created: now,
                requests: 0,
                reason: "discarded",
            })
        });
        ClientConn {
            monitor,
            stream,
            rbuf: BytesMut::new(),
            out: Output::default(),
            parser: HeadParser::new(),
            config,
            id,
            peer,
            created: now,
            last_used: now,
            sent: 0,
            completed: 0,
            in_flight: VecDeque::new(),
            body: Receiving::Nothing,
            writing_body: None,
            head_timer: None,
            response_started: false,
            hint: KeepAliveHint::default(),
            not_reusable: None,
        }
    }

    /// The HTTP version it speaks.
    pub fn version(&self) -> Version {
        self.config.version
    }

    /// The connection's number (unique within its client).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// When the connection was opened.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// When the connection last finished a response (or opened).
    pub fn last_used(&self) -> Instant {
        self.last_used
    }

    /// Requests sent on this connection.
    pub fn requests_sent(&self) -> u64 {
        self.sent
    }

    /// Requests sent whose responses have not been read to their end.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The server's `Keep-Alive` hints, as of the last response.
    pub fn keep_alive_hint(&self) -> KeepAliveHint {
        self.hint
    }

    /// The stream (its TCP socket for socket options and `TCP_INFO`; what TLS negotiated).
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The stream and the bytes already read past the last response, for a connection that
    /// switched protocols (101) or became a CONNECT tunnel.
    pub fn into_parts(mut self) -> (Stream, Bytes) {
        if let Some(mut monitor) = self.monitor.take() {
            monitor.reason = NotReusable::Upgraded.label();
        }
        (self.stream, self.rbuf.freeze())
    }

    /// Records why the connection can no longer be reused (replacing an earlier reason).
    fn mark(&mut self, why: NotReusable) {
        self.not_reusable = Some(why);
        if let Some(monitor) = &mut self.monitor {
            monitor.reason = why.label();
        }
    }

    /// Records why the connection can no longer be reused, unless a reason is known.
    fn mark_first(&mut self, why: NotReusable) {
        if self.not_reusable.is_none() {
            self.mark(why);
        }
    }

    /// Tells the connection why its owner is closing it (a pool retiring an idle one),
    /// for the metrics' close reason.
    pub fn retire(&mut self, why: &'static str) {
        if let Some(monitor) = &mut self.monitor {
            monitor.reason = why;
        }
    }

    fn set_state(&self, state: ConnState) {
        if let Some(monitor) = &self.monitor {
            monitor.set_state(state);
        }
    }

    /// A request head was written.
    fn count_request(&mut self) {
        self.sent += 1;
        if let Some(monitor) = &mut self.monitor {
            monitor.requests = self.sent;
            if let Some(live) = &monitor.live {
                live.status().set_requests(self.sent);
            }
            monitor.set_state(ConnState::Writing);
        }
    }

    /// Whether nothing so far rules out reusing the connection (checked after a response
    /// head: the server did not say close, the body is not close-delimited).
    pub fn persists(&self) -> bool {
        self.not_reusable.is_none()
    }

    /// Whether any byte of the response currently awaited has arrived. A request that fails
    /// before that may be retried on another connection (RFC 9110 §9.2.2).
    pub fn response_started(&self) -> bool {
        self.response_started
    }

    /// Appends a request head to the write buffer (call [`ClientConn::flush`] to send).
    ///
    /// `target` is the request target as it goes on the wire (origin-form `/path?q`, or
    /// absolute-form for a proxy). `Host` is added from `authority` unless `headers` carry
    /// one. Framing and persistence fields come from `framing` and `persistence`, never
    /// from `headers`.
    pub fn write_head(
        &mut self,
        method: &Method,
        target: &[u8],
        authority: Option<&str>,
        headers: &HeaderMap,
        framing: OutgoingFraming,
        persistence: Persistence,
    ) -> Result<(), Error> {
        if self.writing_body.is_some() {
            return Err(Error::new(
                Side::Local,
                ErrorKind::Closed("while a request body is still being written"),
            ));
        }
        if framing == OutgoingFraming::Chunked && self.config.version == Version::HTTP_10 {
            return Err(Error::new(
                Side::Local,
                ErrorKind::Body("an HTTP/1.0 hop cannot take a chunked request body".into()),
            ));
        }
        let start = self.out.buf.len();
        write_request_head(
            &mut self.out.buf,
            self.config.version,
            RequestLine {
                method,
                target,
                authority,
            },
            headers,
            framing,
            persistence,
        );
        if let Some(observer) = &self.config.hooks.observer {
            observer.head_sent(ConnSide::Upstream, &self.out.buf[start..]);
        }
        if persistence == Persistence::Close {
            self.mark_first(NotReusable::ClientClose);
        }
        self.count_request();
        self.in_flight.push_back(InFlight {
            method: method.clone(),
        });
        if framing.sends_body() {
            self.writing_body = Some(framing);
        }
        Ok(())
    }

    /// Appends a request prepared earlier (head and body): a load generator serialises its
    /// request once and sends the same bytes again and again.
    pub fn write_prepared(&mut self, request: &PreparedRequest) {
        self.out.buf.extend_from_slice(&request.bytes);
        if request.persistence == Persistence::Close {
            self.mark_first(NotReusable::ClientClose);
        }
        self.count_request();
        self.in_flight.push_back(InFlight {
            method: request.method.clone(),
        });
    }

    /// Queues request body bytes (after [`ClientConn::write_head`]), framed; large pieces
    /// are written later from their own memory. Call [`ClientConn::poll_flush`] while
    /// [`ClientConn::wants_flush`] says so.
    pub fn push_body(&mut self, data: Bytes) -> Result<(), Error> {
        let Some(framing) = self.writing_body else {
            return Err(Error::new(
                Side::Local,
                ErrorKind::Closed("no request body is being written"),
            ));
        };
        if data.is_empty() {
            return Ok(());
        }
        let chunked = framing == OutgoingFraming::Chunked;
        if chunked {
            write_chunk_header(&mut self.out.buf, data.len());
        }
        if data.len() <= 16 * 1024 {
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

    /// Whether enough is queued that it should be written before more is queued.
    pub fn wants_flush(&self) -> bool {
        self.out.has_large() || self.out.pending() >= 64 * 1024
    }

    /// Writes what is queued, under the write timeout.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let timeout = self.config.write_timeout;
        match self.out.poll_write_within(&mut self.stream, timeout, cx) {
            Poll::Ready(Ok(())) => {
                if self.writing_body.is_none() && !self.in_flight.is_empty() {
                    self.set_state(ConnState::AwaitingResponse);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => {
                self.out.clear();
                Poll::Ready(Err(self.fail(error, "writing the request")))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Queues request body bytes and writes them if enough is queued.
    pub async fn write_body(&mut self, data: Bytes) -> Result<(), Error> {
        self.push_body(data)?;
        if self.wants_flush() {
            self.flush().await?;
        }
        Ok(())
    }

    /// Ends the request body (with trailers, for a chunked body).
    pub fn finish_body(&mut self, trailers: Option<&HeaderMap>) {
        if let Some(OutgoingFraming::Chunked) = self.writing_body.take() {
            write_last_chunk(&mut self.out.buf, trailers);
        }
    }

    /// Abandons a request body midway: the connection cannot carry another request.
    pub fn abandon_body(&mut self) {
        if self.writing_body.take().is_some() {
            self.mark_first(NotReusable::RequestIncomplete);
        }
    }

    /// Whether a request body is being written.
    pub fn is_writing_body(&self) -> bool {
        self.writing_body.is_some()
    }

    /// Writes out everything queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        if self.out.is_empty() {
            return Ok(());
        }
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Sends a whole request (head and body) and flushes.
    pub async fn send_request(
        &mut self,
        method: &Method,
        target: &[u8],
        authority: Option<&str>,
        headers: &HeaderMap,
        body: &Bytes,
        persistence: Persistence,
    ) -> Result<(), Error> {
        let framing = crate::wire::outgoing_request_framing(
            method,
            self.config.version,
            Some(body.len() as u64),
        )
        .unwrap_or(OutgoingFraming::Length(body.len() as u64));
        self.write_head(method, target, authority, headers, framing, persistence)?;
        if !body.is_empty() {
            self.push_body(body.clone())?;
        }
        self.finish_body(None);
        self.flush().await
    }

    /// After sending a head with `Expect: 100-continue` (and flushing it): waits for
    /// `100 Continue`, a final response, or the expect-continue timeout (RFC 9110 §10.1.1:
    /// then the client sends the body anyway).
    pub async fn await_continue(&mut self) -> Result<ContinueOutcome, Error> {
        let method = self.expect_in_flight()?.method.clone();
        let deadline = Instant::now() + self.config.expect_continue_timeout;
        loop {
            match self.parse_head(&method)? {
                Some(head) if head.status == StatusCode::CONTINUE => {
                    return Ok(ContinueOutcome::SendBody);
                }
                Some(head) if head.status.is_informational() => continue,
                Some(head) => {
                    self.begin_body(&method, &head);
                    return Ok(ContinueOutcome::Final(Box::new(head)));
                }
                None => {}
            }
            match self.fill(deadline).await {
                Ok(0) => return Err(self.closed("before answering 100-continue")),
                Ok(_) => self.response_started = true,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Ok(ContinueOutcome::SendBody);
                }
                Err(e) => return Err(self.fail(e, "waiting for 100 Continue")),
            }
        }
    }

    /// Reads what the server has sent into the read buffer. `Ok(0)` means it closed;
    /// `TimedOut` that `deadline` passed.
    async fn fill(&mut self, deadline: Instant) -> std::io::Result<usize> {
        read_some(
            &mut self.stream,
            &mut self.rbuf,
            self.config.read_buffer,
            deadline,
        )
        .await
    }

    /// Reads the head of the response to the oldest request in flight, skipping interim
    /// (1xx) responses other than 101. After it, read the body with
    /// [`ClientConn::read_frame`] (there is none for HEAD, 1xx, 204, 304).
    pub async fn read_head(&mut self) -> Result<ResponseHead, Error> {
        let method = self.expect_in_flight()?.method.clone();
        let mut deadline = Instant::now() + self.config.response_timeout;
        loop {
            if let Some(head) = self.parse_head(&method)? {
                if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS
                {
                    // RFC 9110 §15.2: a client must be able to parse and ignore them.
                    continue;
                }
                self.begin_body(&method, &head);
                return Ok(head);
            }
            match self.fill(deadline).await {
                Ok(0) => return Err(self.closed("before the response head was complete")),
                Ok(_) => {
                    // The server has begun answering: from now on, the read timeout.
                    self.response_started = true;
                    deadline = Instant::now() + self.config.read_timeout;
                }
                Err(e) => return Err(self.fail(e, "waiting for the response")),
            }
        }
    }

    /// Polls for the head of the response to the oldest request in flight (as
    /// [`ClientConn::read_head`] reads it), for an owner that reads it while doing
    /// something else: a request body still being sent, say (the server may answer early,
    /// or stream its answer while it reads). The response timeout runs only once the
    /// request is written.
    pub fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<ResponseHead, Error>> {
        let method = match self.expect_in_flight() {
            Ok(in_flight) => in_flight.method.clone(),
            Err(error) => return Poll::Ready(Err(error)),
        };
        // Whether a read in this poll brought part of the head.
        let mut progressed = false;
        loop {
            match self.parse_head(&method) {
                Ok(Some(head)) => {
                    if let Some(observer) = &self.config.hooks.observer {
                        observer.head_received(ConnSide::Upstream, &head.raw);
                    }
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS
                    {
                        continue;
                    }
                    self.head_timer = None;
                    self.begin_body(&method, &head);
                    return Poll::Ready(Ok(head));
                }
                Ok(None) => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
            make_room(&mut self.rbuf, self.config.read_buffer);
            match pin!(self.stream.read_buf(&mut self.rbuf)).poll(cx) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(self.closed("before the response head was complete")));
                }
                Poll::Ready(Ok(_)) => {
                    self.response_started = true;
                    progressed = true;
                }
                Poll::Ready(Err(error)) => {
                    return Poll::Ready(Err(self.fail(error, "waiting for the response")));
                }
                Poll::Pending => {
                    if self.writing_body.is_some() || !self.out.is_empty() {
                        // Still sending: no response is due yet.
                        return Poll::Pending;
                    }
                    let timeout = if self.response_started {
                        self.config.read_timeout
                    } else {
                        self.config.response_timeout
                    };
                    // The read timeout restarts only now that the head is still partial:
                    // moving a timer sooner wakes tokio's driver (a syscall), and most heads
                    // arrive whole.
                    if let (true, Some(timer)) = (progressed, self.head_timer.as_mut()) {
                        timer.as_mut().reset(Instant::now() + timeout);
                    }
                    let timer = self
                        .head_timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    if timer.as_mut().poll(cx).is_ready() {
                        self.head_timer = None;
                        return Poll::Ready(Err(self.timed_out("waiting for the response")));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// The next frame of the current response body; `None` at its end (after which the
    /// next response's head may be read).
    pub async fn read_frame(&mut self) -> Result<Option<Frame<Bytes>>, Error> {
        loop {
            let Receiving::Body(decoder) = &mut self.body else {
                return Ok(None);
            };
            match decoder.decode(&mut self.rbuf) {
                Ok(Some(BodyEvent::Data(data))) => return Ok(Some(Frame::data(data))),
                Ok(Some(BodyEvent::Trailers(trailers))) => {
                    self.end_response();
                    return Ok(Some(Frame::trailers(trailers)));
                }
                Ok(Some(BodyEvent::End)) => {
                    self.end_response();
                    return Ok(None);
                }
                Ok(None) => {}
                Err(error) => {
                    self.mark(NotReusable::Error);
                    return Err(Error::new(Side::Upstream, error));
                }
            }
            let deadline = Instant::now() + self.config.read_timeout;
            match self.fill(deadline).await {
                Ok(0) => {
                    let Receiving::Body(decoder) = &mut self.body else {
                        return Ok(None);
                    };
                    match decoder.eof() {
                        Ok(_) => {
                            self.end_response();
                            return Ok(None);
                        }
                        Err(_truncated) => {
                            return Err(self.closed("before the response body was complete"));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(self.fail(e, "reading the response body")),
            }
        }
    }

    /// Polls for the next frame of the current response body (as [`ClientConn::read_frame`]
    /// does): for owners that are polled rather than awaited, such as a response body
    /// relayed by a proxy. `timer` holds the read timeout; it is created only when a read
    /// has to wait, and restarted whenever bytes arrive.
    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        timer: &mut Option<Pin<Box<Sleep>>>,
    ) -> Poll<Result<Option<Frame<Bytes>>, Error>> {
        loop {
            let Receiving::Body(decoder) = &mut self.body else {
                return Poll::Ready(Ok(None));
            };
            match decoder.decode(&mut self.rbuf) {
                Ok(Some(BodyEvent::Data(data))) => return Poll::Ready(Ok(Some(Frame::data(data)))),
                Ok(Some(BodyEvent::Trailers(trailers))) => {
                    self.end_response();
                    return Poll::Ready(Ok(Some(Frame::trailers(trailers))));
                }
                Ok(Some(BodyEvent::End)) => {
                    self.end_response();
                    return Poll::Ready(Ok(None));
                }
                Ok(None) => {}
                Err(error) => {
                    self.mark(NotReusable::Error);
                    return Poll::Ready(Err(Error::new(Side::Upstream, error)));
                }
            }
            make_room(&mut self.rbuf, self.config.read_buffer);
            let read = pin!(self.stream.read_buf(&mut self.rbuf)).poll(cx);
            match read {
                Poll::Ready(Ok(0)) => {
                    let Receiving::Body(decoder) = &mut self.body else {
                        return Poll::Ready(Ok(None));
                    };
                    if decoder.eof().is_ok() {
                        self.end_response();
                        return Poll::Ready(Ok(None));
                    }
                    return Poll::Ready(Err(self.closed("before the response body was complete")));
                }
                Poll::Ready(Ok(_)) => {
                    if let Some(timer) = timer.as_mut() {
                        timer
                            .as_mut()
                            .reset(Instant::now() + self.config.read_timeout);
                    }
                }
                Poll::Ready(Err(error)) => {
                    return Poll::Ready(Err(self.fail(error, "reading the response body")));
                }
                Poll::Pending => {
                    let timeout = self.config.read_timeout;
                    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(self.timed_out("reading the response body")));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// The whole current response body, if it has a `Content-Length` and has already been
    /// received in full (the response then ends, as if read to its end with
    /// [`ClientConn::read_frame`]); `None` leaves the body to be read frame by frame.
    pub fn take_whole_body(&mut self) -> Option<Bytes> {
        let Receiving::Body(BodyDecoder::Length { remaining }) = &self.body else {
            return None;
        };
        let length = usize::try_from(*remaining)
            .ok()
            .filter(|&length| length <= self.rbuf.len())?;
        let body = self.rbuf.split_to(length).freeze();
        self.end_response();
        Some(body)
    }

    /// Reads the rest of the current response body, discarding it; returns its length.
    pub async fn discard_body(&mut self) -> Result<u64, Error> {
        let mut length = 0;
        while let Some(frame) = self.read_frame().await? {
            if let Ok(data) = frame.into_data() {
                length += data.len() as u64;
            }
        }
        Ok(length)
    }

    /// Whether the connection may carry another request, and if not, why. The explicit
    /// list of reasons, checked in order:
    /// 1. something failed on it (read, write, parse, timer);
    /// 2. we sent `Connection: close`;
    /// 3. a request body was abandoned midway;
    /// 4. the server said `Connection: close`, or answered HTTP/1.0 without keep-alive;
    /// 5. a response body ran to the close of the connection;
    /// 6. it switched protocols;
    /// 7. a response body was not read to its end;
    /// 8. bytes arrived that no request in flight accounts for;
    /// 9. the server's `Keep-Alive: max` is used up.
    pub fn reusable(&self) -> Result<(), NotReusable> {
        if let Some(reason) = self.not_reusable {
            return Err(reason);
        }
        if matches!(self.body, Receiving::Body(_)) {
            return Err(NotReusable::BodyNotRead);
        }
        if self.in_flight.is_empty() && !self.rbuf.is_empty() {
            return Err(NotReusable::ExtraBytes);
        }
        if self.hint.max == Some(0) {
            return Err(NotReusable::RequestsExhausted);
        }
        Ok(())
    }

    /// When a pool should retire this idle connection so that it never reuses one the server
    /// is about to close: the server's `Keep-Alive: timeout` minus a margin (a quarter of
    /// it, at most a second) for the request to get there.
    pub fn retire_at(&self) -> Option<Instant> {
        let timeout = self.hint.timeout?;
        let margin = (timeout / 4).min(Duration::from_secs(1));
        Some(self.last_used + timeout.saturating_sub(margin))
    }

    /// Checks an idle connection without blocking: `false` if the server has closed it or
    /// sent bytes nobody asked for (for example a 408 before closing). Call only with no
    /// request in flight.
    pub fn is_open(&mut self) -> bool {
        if self.not_reusable.is_some() || !self.rbuf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        let mut probe = tokio::io::ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let read = match Pin::new(&mut self.stream).poll_read(&mut cx, &mut probe) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
        };
        match read {
            Ok(()) => {
                // EOF (0) or unexpected bytes: either way, unusable.
                self.mark(NotReusable::ExtraBytes);
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
            Err(_) => {
                self.mark(NotReusable::Error);
                false
            }
        }
    }

    /// Polls an idle connection for its peer closing (readable while idle means EOF, reset
    /// or unexpected bytes): `Ready` once it is no longer usable.
    pub fn poll_closed(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        loop {
            if !self.is_open() {
                return std::task::Poll::Ready(());
            }
            match self.stream.poll_read_ready(cx) {
                std::task::Poll::Ready(Ok(())) => continue,
                std::task::Poll::Ready(Err(_)) => {
                    self.mark(NotReusable::Error);
                    return std::task::Poll::Ready(());
                }
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }

    fn expect_in_flight(&self) -> Result<&InFlight, Error> {
        if !matches!(self.body, Receiving::Nothing) {
            return Err(Error::new(
                Side::Local,
                ErrorKind::Closed("before the previous response body was read"),
            ));
        }
        self.in_flight.front().ok_or(Error::new(
            Side::Local,
            ErrorKind::Closed("with no request in flight"),
        ))
    }

    /// Parses a response head from what is buffered.
    fn parse_head(&mut self, method: &Method) -> Result<Option<ResponseHead>, Error> {
        match self
            .parser
            .parse_response(&mut self.rbuf, &self.config.head_limits, method)
        {
            Ok(HeadStatus::Complete(head)) => Ok(Some(head)),
            Ok(HeadStatus::Partial { started }) => {
                self.response_started |= started;
                Ok(None)
            }
            Err(error) => {
                self.mark(NotReusable::Error);
                Err(Error::new(Side::Upstream, error))
            }
        }
    }

    /// Takes in a final response head: its persistence signals and body framing.
    fn begin_body(&mut self, method: &Method, head: &ResponseHead) {
        if let Some(value) = head.headers.get("keep-alive") {
            self.hint = KeepAliveHint::parse(value.as_bytes());
        }
        if !keep_alive_intent(&head.fields) {
            self.mark_first(if head.version == Version::HTTP_10 {
                NotReusable::Http10
            } else {
                NotReusable::ServerClose
            });
        }
        if head.status == StatusCode::SWITCHING_PROTOCOLS
            || (method == Method::CONNECT && head.status.is_success())
        {
            self.mark(NotReusable::Upgraded);
        }
        if head.framing == BodyFraming::CloseDelimited {
            self.mark_first(NotReusable::CloseDelimited);
        }
        self.body = Receiving::Body(BodyDecoder::new(head.framing, self.config.chunked_limits));
        self.set_state(ConnState::ReadingBody);
        if head.framing == BodyFraming::Empty {
            self.end_response();
        }
    }

    fn end_response(&mut self) {
        self.body = Receiving::Nothing;
        self.in_flight.pop_front();
        self.set_state(if self.in_flight.is_empty() {
            ConnState::Idle
        } else {
            ConnState::AwaitingResponse
        });
        self.completed += 1;
        self.response_started = false;
        self.last_used = Instant::now();
        if let Some(max) = self.hint.max.as_mut() {
            *max = max.saturating_sub(1);
        }
    }

    /// An I/O error while `doing` something: the connection is done for.
    fn fail(&mut self, error: std::io::Error, doing: &'static str) -> Error {
        if error.kind() == std::io::ErrorKind::TimedOut {
            return self.timed_out(doing);
        }
        self.mark(NotReusable::Error);
        Error::new(Side::Upstream, error)
    }

    /// The server took too long while `doing` something.
    fn timed_out(&mut self, doing: &'static str) -> Error {
        self.mark(NotReusable::Error);
        Error::new(Side::Upstream, ErrorKind::Timeout(doing))
    }

    fn closed(&mut self, when: &'static str) -> Error {
        self.mark(NotReusable::Error);
        Error::new(Side::Upstream, ErrorKind::Closed(when))
    }
}

/// The start of a request as it goes on the wire.
#[derive(Debug, Clone, Copy)]
struct RequestLine<'a> {
    method: &'a Method,
    target: &'a [u8],
    /// The `Host` to send unless the fields carry one.
    authority: Option<&'a str>,
}

/// Appends a request head: request line, `Host` (from the authority unless `headers` carry
/// one), the caller's fields, framing and persistence fields.
fn write_request_head(
    out: &mut Vec<u8>,
    version: Version,
    line: RequestLine<'_>,
    headers: &HeaderMap,
    framing: OutgoingFraming,
    persistence: Persistence,
) {
    write_request_line(out, line.method, line.target, version);
    if !headers.contains_key(header::HOST)
        && let Some(authority) = line.authority
    {
        write_field(out, b"host", authority.as_bytes());
    }
    write_fields(out, headers);
    match framing {
        OutgoingFraming::Length(n) | OutgoingFraming::Declared(n) => write_content_length(out, n),
        OutgoingFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        OutgoingFraming::None | OutgoingFraming::CloseDelimited => {}
    }
    if headers.contains_key(header::UPGRADE) {
        // An `Upgrade` field asks to switch protocols on this connection: it must be named
        // in `Connection` (RFC 9110 §7.8), which is the connection's to write.
        out.extend_from_slice(b"connection: upgrade\r\n");
    } else if persistence == Persistence::Close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A whole request (head and body) serialised once, to be sent many times.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    bytes: Bytes,
    method: Method,
    persistence: Persistence,
}

impl PreparedRequest {
    /// Serialises a request exactly as [`ClientConn::write_head`] and
    /// [`ClientConn::push_body`] would.
    pub fn new(
        version: Version,
        method: &Method,
        target: &[u8],
        authority: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
        persistence: Persistence,
    ) -> Self {
        let framing =
            crate::wire::outgoing_request_framing(method, version, Some(body.len() as u64))
                .unwrap_or(OutgoingFraming::Length(body.len() as u64));
        let mut out = Vec::with_capacity(256 + body.len());
        let line = RequestLine {
            method,
            target,
            authority,
        };
        write_request_head(&mut out, version, line, headers, framing, persistence);
        out.extend_from_slice(body);
        PreparedRequest {
            bytes: Bytes::from(out),
            method: method.clone(),
            persistence,
        }
    }

    /// The bytes on the wire.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// Whether a request may be sent again after it failed without an answer: its method is
/// idempotent (RFC 9110 §9.2.2) or it carries an `Idempotency-Key`.
pub fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || headers.contains_key("idempotency-key")
}

/// The origin-form request target of a URI: path and query, the path `/` if it is empty
/// (RFC 9112 §3.2.1: `http://a?q` is sent as `/?q`); the asterisk-form `*` stays as it is.
pub fn origin_form(uri: &http::Uri) -> Bytes {
    let pq = uri.path_and_query().map_or("", |pq| pq.as_str());
    if pq.starts_with('/') || pq == "*" {
        Bytes::copy_from_slice(pq.as_bytes())
    } else {
        let mut target = Vec::with_capacity(pq.len() + 1);
        target.push(b'/');
        target.extend_from_slice(pq.as_bytes());
        Bytes::from(target)
    }
}

/// The `Host` value for a URI's authority.
pub fn host_value(uri: &http::Uri) -> Option<HeaderValue> {
    uri.authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_hints_parse() {
        assert_eq!(
            KeepAliveHint::parse(b"timeout=5, max=100"),
            KeepAliveHint {
                timeout: Some(Duration::from_secs(5)),
                max: Some(100)
            }
        );
        assert_eq!(
            KeepAliveHint::parse(b"Timeout=1"),
            KeepAliveHint {
                timeout: Some(Duration::from_secs(1)),
                max: None
            }
        );
        assert_eq!(
            KeepAliveHint::parse(b"timeout=x, junk, max"),
            KeepAliveHint::default()
        );
    }

    #[test]
    fn idempotency() {
        let none = HeaderMap::new();
        assert!(is_idempotent(&Method::GET, &none));
        assert!(is_idempotent(&Method::PUT, &none));
        assert!(is_idempotent(&Method::DELETE, &none));
        assert!(!is_idempotent(&Method::POST, &none));
        assert!(!is_idempotent(&Method::PATCH, &none));
        let mut keyed = HeaderMap::new();
        keyed.insert("idempotency-key", HeaderValue::from_static("abc"));
        assert!(is_idempotent(&Method::POST, &keyed));
    }

    #[test]
    fn origin_forms() {
        let uri: http::Uri = "http://example.com".parse().unwrap();
        assert_eq!(origin_form(&uri), "/");
        let uri: http::Uri = "http://example.com/a/b?c=d".parse().unwrap();
        assert_eq!(origin_form(&uri), "/a/b?c=d");
        let uri: http::Uri = "http://example.com?c=d".parse().unwrap();
        assert_eq!(origin_form(&uri), "/?c=d");
        assert_eq!(origin_form(&"*".parse().unwrap()), "*");
        assert_eq!(
            host_value(&"http://example.com/".parse().unwrap()).unwrap(),
            "example.com"
        );
    }
}

//! `client`: the HTTP client: connection types as a setting, pooled connections, safe
//! retries, and response bodies that hand their connection back when they end.
//!
//! Owns the choices around one exchange: which connection (a new one per request, the
//! pool's warmest, or a pipelined one with room), whether a failed request may be sent
//! again (RFC 9110 §9.2.2), and when a connection returns to the pool. It must not parse
//! HTTP (that is `conn`) or decide pool order (that is `pool`).
//!
//! | mode | connections | requests per connection |
//! |---|---|---|
//! | [`Mode::Close`] | a new one per request, `Connection: close` sent | 1 |
//! | [`Mode::KeepAlive`] | pooled, most recently used first | sequential |
//! | [`Mode::Pipeline`] | pooled dispatchers | up to `depth` idempotent requests in flight |

mod pipeline;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use tokio::time::Instant;

use crate::conn::body::{Body, BodySource, Frame};
use crate::conn::client::{ClientConfig, ClientConn, host_value, is_idempotent, origin_form};
use crate::error::{BoxError, Error, ErrorKind, Side};
use crate::pool::{Checkout, Key, Pool, PoolConfig, Poolable, Pooled};

pub use pipeline::PipelineStats;

/// How a client uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new connection per request, closed after the response (`Connection: close`).
    Close,
    /// Persistent connections from the pool, one request at a time each.
    KeepAlive,
    /// Up to `depth` idempotent requests in flight per connection, answered in order.
    Pipeline {
        /// Requests in flight per connection.
        depth: usize,
    },
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "close" => Ok(Mode::Close),
            "keepalive" | "keep-alive" => Ok(Mode::KeepAlive),
            "pipeline" => Ok(Mode::Pipeline { depth: 16 }),
            other => Err(format!(
                "unknown mode `{other}` (close, keepalive, pipeline)"
            )),
        }
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Connection type.
    pub mode: Mode,
    /// Protocol settings of each connection.
    pub conn: ClientConfig,
    /// Pool settings (keep-alive and pipeline modes; the per-host cap applies to both).
    pub pool: PoolConfig,
    /// Longest time to open a connection. Default 10 s.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            mode: Mode::KeepAlive,
            conn: ClientConfig::default(),
            pool: PoolConfig::default(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// How a response was obtained ([`ResponseBody::exchange`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// The connection's number within this client.
    pub connection: u64,
    /// Whether the connection had served an earlier request.
    pub reused: bool,
    /// Whether the request was sent again after a failure without an answer.
    pub retried: bool,
    /// The server's address.
    pub peer: SocketAddr,
}

/// Client counters.
#[derive(Debug, Default)]
pub struct ClientStats {
    connections: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// A copy of [`ClientStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientCounts {
    /// Connections opened.
    pub connections: u64,
    /// Requests sent (each attempt counts).
    pub requests: u64,
    /// Requests sent again after failing without an answer on a reused connection, or
    /// re-queued from a pipelined connection that closed.
    pub retries: u64,
}

struct Inner {
    options: ClientOptions,
    pool: Pool<Key, ClientConn>,
    pipelines: pipeline::Pipelines,
    next_id: AtomicU64,
    stats: ClientStats,
}

/// An HTTP/1.x client. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// A request as it goes to the next hop, with its body in memory (so it can be sent again
/// if that is safe). [`Client::request`] builds one from an absolute URI; a proxy builds
/// its own.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Which origin (and pool) it goes to.
    pub key: Key,
    /// The method.
    pub method: Method,
    /// The request target as written on the wire (origin-form, or absolute-form to a
    /// forward proxy).
    pub target: Bytes,
    /// The `Host` to send unless `headers` carry one.
    pub authority: Option<String>,
    /// The fields (framing and persistence fields are the connection's).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// An [`Outgoing`] request with what the client derives from it.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub request: Outgoing,
    /// Whether it may be sent again (RFC 9110 §9.2.2) and pipelined.
    pub idempotent: bool,
}

impl From<Outgoing> for Prepared {
    fn from(request: Outgoing) -> Self {
        Prepared {
            idempotent: is_idempotent(&request.method, &request.headers),
            request,
        }
    }
}

impl Client {
    /// A client with these options.
    pub fn new(options: ClientOptions) -> Self {
        let pool = Pool::new(options.pool.clone());
        let pipelines = pipeline::Pipelines::new(&options);
        Client {
            inner: Arc::new(Inner {
                options,
                pool,
                pipelines,
                next_id: AtomicU64::new(1),
                stats: ClientStats::default(),
            }),
        }
    }

    /// The options it was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// Counters.
    pub fn stats(&self) -> ClientCounts {
        let stats = &self.inner.stats;
        ClientCounts {
            connections: stats.connections.load(Ordering::Relaxed),
            requests: stats.requests.load(Ordering::Relaxed),
            retries: stats.retries.load(Ordering::Relaxed) + self.inner.pipelines.stats().requeued,
        }
    }

    /// The pool's counters (keep-alive mode).
    pub fn pool(&self) -> &Pool<Key, ClientConn> {
        &self.inner.pool
    }

    /// Sends a request to the absolute URI in it and returns the response, whose body
    /// streams from the connection.
    pub async fn request(&self, request: Request<Bytes>) -> Result<Response<ResponseBody>, Error> {
        self.send(prepare(request)?).await
    }

    /// Sends a request described hop-side, in the client's connection type, retrying only
    /// as RFC 9110 §9.2.2 allows.
    pub async fn send(&self, outgoing: Outgoing) -> Result<Response<ResponseBody>, Error> {
        let prepared = Prepared::from(outgoing);
        match self.inner.options.mode {
            Mode::Close => self.send_on_new(&prepared).await,
            Mode::KeepAlive => self.send_pooled(&prepared).await,
            Mode::Pipeline { depth } => {
                pipeline::send(self, &self.inner.pipelines, prepared, depth).await
            }
        }
    }

    /// `GET uri`.
    pub async fn get(&self, uri: &str) -> Result<Response<ResponseBody>, Error> {
        let request = Request::get(uri)
            .body(Bytes::new())
            .map_err(|e| Error::new(Side::Local, ErrorKind::Body(e.into())))?;
        self.request(request).await
    }

    /// Keep-alive mode: the pool's warmest connection; if the request fails on a reused
    /// connection before any response byte, once more on a new one when that is safe.
    async fn send_pooled(&self, prepared: &Prepared) -> Result<Response<ResponseBody>, Error> {
        let lease = match self.inner.pool.checkout(&prepared.request.key).await {
            Checkout::Reused(conn) => Lease::Pooled(conn),
            Checkout::Fresh(slot) => {
                Lease::Pooled(slot.fill(self.connect(&prepared.request.key).await?))
            }
        };
        let reused = lease.is_reused();
        match self.exchange(lease, prepared, false, false).await {
            Ok(response) => Ok(response),
            Err(failure) if reused && !failure.response_started && prepared.idempotent => {
                // RFC 9110 §9.2.2: the server closed the connection as we reused it (the
                // idle-close race) and sent nothing: the request may be sent again, once,
                // on a new connection.
                tracing::debug!(error = %failure.error, "retrying on a new connection");
                self.inner.stats.retries.fetch_add(1, Ordering::Relaxed);
                let slot = self.inner.pool.checkout_fresh(&prepared.request.key).await;
                let conn = slot.fill(self.connect(&prepared.request.key).await?);
                self.exchange(Lease::Pooled(conn), prepared, false, true)
                    .await
                    .map_err(|failure| failure.error)
            }
            Err(failure) => Err(failure.error),
        }
    }

    /// Close mode: a new connection, `Connection: close`, no pool.
    async fn send_on_new(&self, prepared: &Prepared) -> Result<Response<ResponseBody>, Error> {
        let conn = self.connect(&prepared.request.key).await?;
        self.exchange(Lease::Owned(conn), prepared, true, false)
            .await
            .map_err(|failure| failure.error)
    }

    /// A connection to `key` for an exchange the caller drives itself (for example a
    /// request body streamed from elsewhere): the pool's warmest in keep-alive and pipeline
    /// modes (pipelined connections are for in-memory requests), a new one in close mode
    /// or when `fresh`.
    pub async fn lease(&self, key: &Key, fresh: bool) -> Result<Lease, Error> {
        if self.inner.options.mode == Mode::Close {
            return Ok(Lease::Owned(self.connect(key).await?));
        }
        let pooled = if fresh {
            self.inner
                .pool
                .checkout_fresh(key)
                .await
                .fill(self.connect(key).await?)
        } else {
            match self.inner.pool.checkout(key).await {
                Checkout::Reused(conn) => conn,
                Checkout::Fresh(slot) => slot.fill(self.connect(key).await?),
            }
        };
        Ok(Lease::Pooled(pooled))
    }

    /// Opens a connection to `key`.
    pub(crate) async fn connect(&self, key: &Key) -> Result<ClientConn, Error> {
        let addr = resolve(key).await?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = ClientConn::connect(
            addr,
            id,
            self.inner.options.conn.clone(),
            self.inner.options.connect_timeout,
        )
        .await?;
        self.inner.stats.connections.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    /// One request and its response head on `lease`; the body follows in the response.
    async fn exchange(
        &self,
        mut lease: Lease,
        prepared: &Prepared,
        close: bool,
        retried: bool,
    ) -> Result<Response<ResponseBody>, Failure> {
        self.inner.stats.requests.fetch_add(1, Ordering::Relaxed);
        let exchange = lease.exchange(retried);
        let conn = lease.conn_mut();
        let sent = conn
            .send_request(
                &prepared.request.method,
                &prepared.request.target,
                prepared.request.authority.as_deref(),
                &prepared.request.headers,
                &prepared.request.body,
                close,
            )
            .await;
        let head = match sent {
            Ok(()) => conn.read_head().await,
            Err(error) => Err(error),
        };
        let head = head.map_err(|error| Failure {
            response_started: lease.conn().response_started(),
            error,
        })?;
        let mut response = Response::new(ResponseBody::new(lease, head.framing, exchange));
        *response.status_mut() = head.status;
        *response.version_mut() = head.version;
        *response.headers_mut() = head.headers;
        Ok(response)
    }
}

/// A failed exchange, and whether any of the response had arrived (retry eligibility).
struct Failure {
    error: Error,
    response_started: bool,
}

/// Validates a request and puts it in the form the client sends.
fn prepare(request: Request<Bytes>) -> Result<Outgoing, Error> {
    let (parts, body) = request.into_parts();
    let key = Key::from_uri(&parts.uri).ok_or_else(|| {
        Error::new(
            Side::Local,
            ErrorKind::Body(format!("`{}` is not an absolute http:// URI", parts.uri).into()),
        )
    })?;
    if &*key.scheme != "http" {
        return Err(Error::new(
            Side::Local,
            ErrorKind::Body(format!("{}: only http:// is supported", parts.uri).into()),
        ));
    }
    Ok(Outgoing {
        key,
        target: origin_form(&parts.uri),
        authority: host_value(&parts.uri).and_then(|v| v.to_str().ok().map(str::to_string)),
        method: parts.method,
        headers: parts.headers,
        body,
    })
}

/// Resolves a key's host (IP literals without a lookup).
async fn resolve(key: &Key) -> Result<SocketAddr, Error> {
    let host = key.host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, key.port));
    }
    tokio::net::lookup_host((host, key.port))
        .await
        .map_err(|e| Error::new(Side::Upstream, e))?
        .next()
        .ok_or_else(|| {
            Error::new(
                Side::Upstream,
                ErrorKind::Closed("resolving: the host has no address"),
            )
        })
}

/// A connection lent to one exchange.
pub enum Lease {
    /// From the pool: goes back when the response body ends, if reusable.
    Pooled(Pooled<Key, ClientConn>),
    /// Owned (close mode): closed when the response body ends.
    Owned(ClientConn),
}

impl Lease {
    /// The connection.
    pub fn conn(&self) -> &ClientConn {
        match self {
            Lease::Pooled(conn) => conn,
            Lease::Owned(conn) => conn,
        }
    }

    /// The connection, to drive an exchange.
    pub fn conn_mut(&mut self) -> &mut ClientConn {
        match self {
            Lease::Pooled(conn) => conn,
            Lease::Owned(conn) => conn,
        }
    }

    /// Whether the connection served an earlier request.
    pub fn is_reused(&self) -> bool {
        match self {
            Lease::Pooled(conn) => conn.is_reused(),
            Lease::Owned(_) => false,
        }
    }

    /// Whether `Connection: close` should be sent (close mode: the lease is not pooled).
    pub fn closes(&self) -> bool {
        matches!(self, Lease::Owned(_))
    }

    /// How this lease's exchange is described in a response.
    pub fn exchange(&self, retried: bool) -> Exchange {
        Exchange {
            connection: self.conn().id(),
            reused: self.is_reused(),
            retried,
            peer: self.conn().peer(),
        }
    }

    /// The response body after a head read on this lease: it streams from the
    /// connection and gives the lease back when it ends.
    pub fn into_body(self, framing: crate::wire::BodyFraming, retried: bool) -> ResponseBody {
        let exchange = self.exchange(retried);
        ResponseBody::new(self, framing, exchange)
    }

    /// Takes the connection out for good (a protocol switch or a tunnel).
    pub fn into_conn(self) -> ClientConn {
        match self {
            Lease::Pooled(conn) => conn.detach(),
            Lease::Owned(conn) => conn,
        }
    }

    /// Gives the connection back: to the pool if it may be reused, else closed.
    fn finish(self) {
        if let Lease::Pooled(conn) = self {
            conn.release();
        }
    }
}

impl Poolable for ClientConn {
    fn is_reusable(&self) -> bool {
        self.reusable().is_ok()
    }

    fn is_open(&mut self) -> bool {
        ClientConn::is_open(self)
    }

    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        ClientConn::poll_closed(self, cx)
    }

    fn retire_at(&self) -> Option<Instant> {
        ClientConn::retire_at(self)
    }

    fn created(&self) -> Instant {
        ClientConn::created(self)
    }

    fn requests(&self) -> u64 {
        self.requests_sent()
    }

    fn retire(&mut self, why: &'static str) {
        ClientConn::retire(self, why);
    }
}

/// A response body read from its connection as it is polled; the connection goes back to
/// the pool when the body ends (or is closed if it cannot be reused). Dropping it early
/// closes the connection (a half-read response cannot be reused).
pub struct ResponseBody {
    state: BodyState,
    length: Option<u64>,
    exchange: Option<Exchange>,
    /// The read timeout, created only when a read has to wait.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

enum BodyState {
    /// Reading from the connection (boxed: a connection is large and the body moves with
    /// the response).
    Open(Box<Lease>),
    /// The body ended; the connection has been handed back.
    Done,
    /// A body received through a channel (pipelined responses).
    Channel(Body),
}

impl ResponseBody {
    fn new(lease: Lease, framing: crate::wire::BodyFraming, exchange: Exchange) -> Self {
        let length = match framing {
            crate::wire::BodyFraming::Empty => Some(0),
            crate::wire::BodyFraming::Length(n) => Some(n),
            _ => None,
        };
        let mut body = ResponseBody {
            state: BodyState::Open(Box::new(lease)),
            length,
            exchange: Some(exchange),
            timer: None,
        };
        if length == Some(0) {
            body.finish();
        }
        body
    }

    pub(crate) fn from_channel(body: Body, exchange: Exchange) -> Self {
        ResponseBody {
            length: body.length(),
            state: BodyState::Channel(body),
            exchange: Some(exchange),
            timer: None,
        }
    }

    /// The body's length if known in advance.
    pub fn length(&self) -> Option<u64> {
        self.length
    }

    /// How the response was obtained: which connection, reused or not, retried or not.
    pub fn exchange(&self) -> Option<Exchange> {
        self.exchange
    }

    /// The next frame; `None` at the end of the body.
    pub async fn frame(&mut self) -> Option<Result<Frame, Error>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Reads the whole body, discarding it; returns its length.
    pub async fn discard(&mut self) -> Result<u64, Error> {
        let mut length = 0;
        while let Some(frame) = self.frame().await {
            if let Frame::Data(data) = frame? {
                length += data.len() as u64;
            }
        }
        Ok(length)
    }

    /// Reads the whole body into memory.
    pub async fn collect(&mut self) -> Result<Bytes, Error> {
        let mut all = bytes::BytesMut::new();
        while let Some(frame) = self.frame().await {
            if let Frame::Data(data) = frame? {
                all.extend_from_slice(&data);
            }
        }
        Ok(all.freeze())
    }

    fn finish(&mut self) {
        if let BodyState::Open(lease) = std::mem::replace(&mut self.state, BodyState::Done) {
            lease.finish();
        }
        self.timer = None;
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame, Error>>> {
        match &mut self.state {
            BodyState::Done => Poll::Ready(None),
            BodyState::Channel(body) => {
                let Body::Stream(stream) = body else {
                    let whole = std::mem::take(body);
                    self.state = BodyState::Done;
                    return Poll::Ready(match whole {
                        Body::Full(bytes) if !bytes.is_empty() => Some(Ok(Frame::Data(bytes))),
                        _ => None,
                    });
                };
                stream.source.as_mut().poll_frame(cx).map(|frame| {
                    frame.map(|f| f.map_err(|e| Error::new(Side::Upstream, ErrorKind::Body(e))))
                })
            }
            BodyState::Open(lease) => {
                let frame = std::task::ready!(lease.conn_mut().poll_frame(cx, &mut self.timer));
                Poll::Ready(match frame {
                    Ok(Some(frame)) => {
                        if matches!(frame, Frame::Trailers(_)) {
                            self.finish();
                        }
                        Some(Ok(frame))
                    }
                    Ok(None) => {
                        self.finish();
                        None
                    }
                    Err(error) => {
                        // Not reusable now; dropping the lease closes it.
                        self.state = BodyState::Done;
                        self.timer = None;
                        Some(Err(error))
                    }
                })
            }
        }
    }
}

impl BodySource for ResponseBody {
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame, BoxError>>> {
        self.get_mut()
            .poll_next(cx)
            .map(|frame| frame.map(|f| f.map_err(|e| Box::new(e) as BoxError)))
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

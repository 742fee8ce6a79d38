//! `client`: the HTTP client: connection types as a setting, pooled connections, safe
//! retries, and the whole exchange of one request — head, a bounded wait for `100
//! Continue`, the body streamed (while an early or streamed answer is read), the response
//! head, and the response body, which hands its connection back when it ends.
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
//!
//! | module | owns |
//! |---|---|
//! | `exchange` | one request on one connection, and the response body that reads it |
//! | `outgoing` | a request as this hop sends it: target, `Host`, a body in memory or streamed |
//! | `pipeline` | pipelined connections: one dispatcher task each |
//! | `h2` | HTTP/2 hops: shared connections, unprocessed requests sent again, auto (ALPN) |
//!
//! The protocol is a setting of the hop too ([`HopProtocol`]): HTTP/1.x in the modes
//! above, or HTTP/2, where one connection carries many requests at once (the mode then
//! only says whether connections are kept: close opens one per request).

mod exchange;
mod h2;
mod outgoing;
mod pipeline;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use tokio::time::Instant;

use crate::conn::client::{ClientConfig, ClientConn, Persistence};
use crate::conn::h2::Http2Config;
use crate::conn::status::ConnSide;
use crate::conn::{Body, Incoming};
use crate::error::{BoxError, Error, ErrorKind, Side};
use crate::pool::shared::SharedConfig;
use crate::pool::{Checkout, Key, Pool, PoolConfig, Poolable, Pooled, Prefer};
use crate::transport::proxy_header::ProxyVersion;
use crate::transport::tls::{ClientTls, TlsConnector};
use crate::transport::{ConnectError, Dial, Stream};
use exchange::{Attempt, Failure};
use outgoing::{Outgoing, RequestBody, Upload, Whole};

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

/// Which HTTP a client speaks to its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HopProtocol {
    /// HTTP/1.1 (or 1.0, per [`ClientConfig::version`]).
    #[default]
    Http1,
    /// HTTP/2: `h2` by ALPN over TLS, prior knowledge (h2c) over plain TCP.
    Http2,
    /// HTTP/2 where ALPN agrees (`https://`), HTTP/1.1 otherwise; learned per origin.
    Auto,
}

impl std::str::FromStr for HopProtocol {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "http1" | "http/1.1" => Ok(HopProtocol::Http1),
            "h2" | "h2c" | "http2" => Ok(HopProtocol::Http2),
            "auto" => Ok(HopProtocol::Auto),
            other => Err(format!("unknown protocol `{other}` (http1, h2, h2c, auto)")),
        }
    }
}

/// A request extension saying its response is expected to be large: in keep-alive mode the
/// pool then lends the idle connection whose sender's window is largest and still open
/// ([`crate::pool::Prefer::Warm`]), so the body takes fewer round trips than on a cold or
/// idle-reset connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LargeResponse;

/// Client settings. Build them from `ClientOptions::default()` and set the fields that
/// differ.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Connection type.
    pub mode: Mode,
    /// Protocol settings of each connection.
    pub conn: ClientConfig,
    /// Pool settings (keep-alive and pipeline modes; the per-host cap applies to both).
    pub pool: PoolConfig,
    /// Longest time to open a connection. Default 10 s.
    pub connect_timeout: Duration,
    /// Largest request body of unknown length buffered for an HTTP/1.0 hop, which cannot
    /// take chunked (beyond it: an error with status 413). Default 16 MiB.
    pub max_buffered_body: u64,
    /// How `https://` connections are opened and verified (trust, server name, client
    /// certificate; its session cache lets new connections resume). Default: the
    /// system's trusted authorities, built on the first `https://` request.
    pub tls: Option<TlsConnector>,
    /// HTTP/1.x or HTTP/2 (or ALPN's choice). Default HTTP/1.1.
    pub protocol: HopProtocol,
    /// HTTP/2 connection settings (windows, frame and header sizes).
    pub http2: Http2Config,
    /// How HTTP/2 connections are shared: per-host cap, what to do at the stream limit.
    pub shared: SharedConfig,
    /// Open each connection with a PROXY protocol header (for a server behind this hop that
    /// takes one): it names the client a request carries in its [`ProxySource`] extension,
    /// and a connection then carries that client's requests only. Default `None`.
    pub proxy_protocol: Option<ProxyVersion>,
}

/// In a request's extensions: the client this hop relays (its address, and the address it
/// connected to), for the PROXY protocol header of the connection the request goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxySource {
    /// The client's address.
    pub client: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            mode: Mode::KeepAlive,
            conn: ClientConfig::default(),
            pool: PoolConfig::default(),
            connect_timeout: Duration::from_secs(10),
            max_buffered_body: 16 * 1024 * 1024,
            tls: None,
            protocol: HopProtocol::Http1,
            http2: Http2Config::default(),
            shared: SharedConfig::default(),
            proxy_protocol: None,
        }
    }
}

impl ClientOptions {
    /// Options with this connection type and the rest at their defaults.
    pub fn with_mode(mode: Mode) -> Self {
        ClientOptions {
            mode,
            ..ClientOptions::default()
        }
    }
}

pub use crate::conn::Exchange;

/// Client counters.
#[derive(Debug, Default)]
struct ClientStats {
    connections: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// A copy of the client's counters.
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
    /// The connector for `https://`: the options', or the default built when first needed.
    tls: std::sync::OnceLock<Result<TlsConnector, String>>,
    pool: Pool<Key, Box<ClientConn>>,
    pipelines: pipeline::Pipelines,
    h2: h2::H2Hops,
    next_id: AtomicU64,
    stats: ClientStats,
}

/// An HTTP/1.x client. Cheap to clone; clones share connections.
///
/// ```no_run
/// # async fn run() -> Result<(), hopline::Error> {
/// use http_body_util::BodyExt;
///
/// let client = hopline::client::Client::new(Default::default());
/// let response = client.get("http://127.0.0.1:8080/").await?;
/// let body = response.into_body().collect().await?.to_bytes();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// A client with these options.
    pub fn new(options: ClientOptions) -> Self {
        let pool = Pool::new(options.pool.clone());
        let pipelines = pipeline::Pipelines::new(&options);
        let h2 = h2::H2Hops::new(options.shared.clone());
        Client {
            inner: Arc::new(Inner {
                tls: match &options.tls {
                    Some(connector) => Ok(connector.clone()).into(),
                    None => std::sync::OnceLock::new(),
                },
                options,
                pool,
                pipelines,
                h2,
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
    pub fn pool(&self) -> &Pool<Key, Box<ClientConn>> {
        &self.inner.pool
    }

    /// The fingerprint of the TLS settings connections to `uri` open with (0 for `http`).
    fn tls_fingerprint(&self, uri: &http::Uri) -> Result<u64, Error> {
        Ok(match uri.scheme() {
            Some(scheme) if *scheme == http::uri::Scheme::HTTPS => self.tls()?.fingerprint(),
            _ => 0,
        })
    }

    /// Keeps [`PoolConfig::min_idle_per_host`] idle connections to `uri`'s origin open
    /// from now on (keep-alive mode): opened ahead of the first request, and again as they
    /// retire, so requests find one without a handshake. A task does it, checking once a
    /// second and backing off up to 30 s while connects fail; it ends with the client.
    pub fn keep_ready(&self, uri: &http::Uri) -> Result<(), Error> {
        let want = self.inner.options.pool.min_idle_per_host;
        if want == 0 || self.inner.options.mode != Mode::KeepAlive {
            return Ok(());
        }
        let (parts, ()) = Request::get(uri.clone())
            .body(())
            .expect("a GET")
            .into_parts();
        let tls = self.tls_fingerprint(&parts.uri)?;
        let key = Outgoing::from_parts(parts, tls)?.key;
        let client = Arc::downgrade(&self.inner);
        tokio::spawn(standby(client, key, want));
        Ok(())
    }

    /// Sends `request` to the absolute `http://` URI in it, in the client's connection
    /// type, and returns the response once its head has arrived; the body streams from
    /// the connection as it is read.
    ///
    /// The whole exchange is the client's: the request head, a bounded wait for `100
    /// Continue` when the request expects it, the body streamed with backpressure (an
    /// answer that arrives before the body is sent is read, RFC 9112 §9.5: a final error
    /// stops the upload, a 2xx streams alongside it), the response head (1xx skipped),
    /// and for a protocol switch (101, or a 2xx to CONNECT) the connection itself, as
    /// [`crate::conn::Upgraded`] in the response's extensions. The `Host` is the URI's
    /// authority unless the request carries one. A body the client gets whole at once
    /// (bytes in memory) may be sent again when that is safe (RFC 9110 §9.2.2); a
    /// streamed one never is.
    pub async fn send<B>(&self, request: Request<B>) -> Result<Response<Incoming>, Error>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let tls = self.tls_fingerprint(&parts.uri)?;
        let proxied = (self.inner.options.proxy_protocol.is_some())
            .then(|| parts.extensions.get::<ProxySource>().copied())
            .flatten();
        let mut head = Outgoing::from_parts(parts, tls)?;
        if let Some(source) = proxied {
            head.key = head.key.with_proxy_source((source.client, source.local));
        }
        let mut body = RequestBody::probe(body, &head)?;
        if self.goes_h2(&head) {
            match Box::pin(self.send_h2(&head, body)).await {
                h2::H2Outcome::Done(sent) => return *sent,
                h2::H2Outcome::Http1(unsent, conn) => {
                    match Box::pin(self.send_on_opened(conn, head, unsent)).await {
                        Opened::Sent(sent) => return sent,
                        Opened::Declined(unsent_head, unsent) => {
                            (head, body) = (unsent_head, unsent)
                        }
                    }
                }
            }
        }
        // Over HTTP/1.x, in the client's connection type. One await of the common path (a
        // body in memory): every level of futures is copied as it is entered.
        match body {
            RequestBody::Whole(body) => self.send_whole(Whole { head, body }).await,
            // The rarer paths are boxed: they must not grow every request's future.
            RequestBody::Stream(upload) => Box::pin(self.send_upload(head, upload)).await,
        }
    }

    /// The first request to an origin that answered ALPN with HTTP/1.1 (auto mode), sent on
    /// the connection that found it out: learning costs no second handshake. Kept in the
    /// pool afterwards in keep-alive mode (if the pool has room), else closed after this
    /// exchange. Declined for a body of unknown length to an HTTP/1.0 hop, which must be
    /// collected first.
    async fn send_on_opened(
        &self,
        conn: Box<ClientConn>,
        head: Outgoing,
        body: RequestBody,
    ) -> Opened {
        let upload = match body {
            RequestBody::Whole(bytes) => bytes.into(),
            RequestBody::Stream(upload)
                if upload.length().is_none() && self.hop_version() == Version::HTTP_10 =>
            {
                return Opened::Declined(head, RequestBody::Stream(upload));
            }
            RequestBody::Stream(upload) => upload,
        };
        let lease = match self.inner.options.mode {
            Mode::KeepAlive => match self.inner.pool.reserve(&head.key) {
                Some(slot) => Lease::Pooled(slot.fill(conn)),
                None => Lease::Owned(conn),
            },
            Mode::Close | Mode::Pipeline { .. } => Lease::Owned(conn),
        };
        let sent = self.exchange(lease, &head, upload, Attempt::First).await;
        Opened::Sent(sent.map_err(|failure| failure.error))
    }

    /// A body that streams, over HTTP/1.x.
    async fn send_upload(
        &self,
        head: Outgoing,
        upload: Upload,
    ) -> Result<Response<Incoming>, Error> {
        if upload.length().is_none() && self.hop_version() == Version::HTTP_10 {
            // An HTTP/1.0 hop cannot take chunked: learn the length first.
            let body = upload.collect(self.inner.options.max_buffered_body).await?;
            return self.send_whole(Whole { head, body }).await;
        }
        self.send_stream(head, upload).await
    }

    /// `GET uri`.
    pub async fn get(&self, uri: &str) -> Result<Response<Incoming>, Error> {
        let request = Request::get(uri)
            .body(Body::empty())
            .map_err(|e| Error::new(Side::Local, ErrorKind::Body(e.into())))?;
        self.send(request).await
    }

    fn hop_version(&self) -> Version {
        self.inner.options.conn.version
    }

    /// A request whose body is in memory, in the client's connection type.
    async fn send_whole(&self, whole: Whole) -> Result<Response<Incoming>, Error> {
        match self.inner.options.mode {
            // A new connection per request: boxed, a connect's future is large and rare
            // in the other modes.
            Mode::Close => {
                Box::pin(async {
                    let conn = self.connect(&whole.head.key).await?;
                    self.exchange(
                        Lease::Owned(conn),
                        &whole.head,
                        whole.body.clone().into(),
                        Attempt::First,
                    )
                    .await
                    .map_err(|failure| failure.error)
                })
                .await
            }
            Mode::KeepAlive => self.send_pooled(&whole).await,
            // Shared with the pipeline's queue, which may send it again.
            Mode::Pipeline { depth } => {
                pipeline::send(self, &self.inner.pipelines, Arc::new(whole), depth).await
            }
        }
    }

    /// Keep-alive mode: the pool's warmest connection; if the request fails on a reused
    /// connection before any response byte, once more on a new one when that is safe.
    async fn send_pooled(&self, whole: &Whole) -> Result<Response<Incoming>, Error> {
        let key = &whole.head.key;
        let lease = self.lease(key, Freshness::Any(whole.head.prefer)).await?;
        let reused = lease.is_reused();
        match self
            .exchange(
                lease,
                &whole.head,
                whole.body.clone().into(),
                Attempt::First,
            )
            .await
        {
            Ok(response) => Ok(response),
            Err(failure) if reused && !failure.response_started && whole.head.idempotent => {
                // RFC 9110 §9.2.2: the server closed the connection as we reused it (the
                // idle-close race) and sent nothing: the request may be sent again, once,
                // on a new connection.
                tracing::debug!(error = %failure.error, "retrying on a new connection");
                self.inner.stats.retries.fetch_add(1, Ordering::Relaxed);
                let lease = self.lease(key, Freshness::New).await?;
                self.exchange(
                    lease,
                    &whole.head,
                    whole.body.clone().into(),
                    Attempt::Retry,
                )
                .await
                .map_err(|failure| failure.error)
            }
            Err(failure) => Err(failure.error),
        }
    }

    /// A request whose body streams: one connection held alone (pipelined connections
    /// are for bodies in memory), never sent again. A protocol switch gets a new
    /// connection: it will not come back.
    async fn send_stream(
        &self,
        head: Outgoing,
        upload: Upload,
    ) -> Result<Response<Incoming>, Error> {
        let freshness = if head.upgrade {
            Freshness::New
        } else {
            Freshness::Any(head.prefer)
        };
        let lease = self.lease(&head.key, freshness).await?;
        self.exchange(lease, &head, upload, Attempt::First)
            .await
            .map_err(|failure| failure.error)
    }

    /// A connection to `key` for one exchange: a new one in close mode or when asked,
    /// else the pool's warmest.
    async fn lease(&self, key: &Key, freshness: Freshness) -> Result<Lease, Error> {
        if self.inner.options.mode == Mode::Close {
            return Ok(Lease::Owned(self.connect(key).await?));
        }
        let pooled = match freshness {
            Freshness::New => self
                .inner
                .pool
                .checkout_fresh(key)
                .await
                .fill(self.connect(key).await?),
            Freshness::Any(prefer) => {
                match self.inner.pool.checkout_preferring(key, prefer).await {
                    Checkout::Reused(conn) => conn,
                    Checkout::Fresh(slot) => slot.fill(self.connect(key).await?),
                }
            }
        };
        Ok(Lease::Pooled(pooled))
    }

    /// Opens a connection to `key`. Boxed, the connection and the future of a connect (a
    /// lookup, a timer): a connection moves with each exchange that borrows it, and pooled
    /// requests, which rarely connect, must not carry a connect's future.
    pub(crate) async fn connect(&self, key: &Key) -> Result<Box<ClientConn>, Error> {
        Box::pin(self.open(key)).await.map(Box::new)
    }

    async fn open(&self, key: &Key) -> Result<ClientConn, Error> {
        let (stream, addr, id) = self.dial(key).await?;
        let conn = ClientConn::from_stream(stream, addr, id, self.inner.options.conn.clone());
        self.inner.stats.connections.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    /// Opens the byte stream to `key`: resolved, connected, and for TLS the handshake done
    /// (reported to the observer); with the address and the connection's number.
    async fn dial(&self, key: &Key) -> Result<(Stream, SocketAddr, u64), Error> {
        let addr = resolve(key).await?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let tls = if key.is_tls() {
            Some(self.tls()?)
        } else {
            None
        };
        let host = key.host().trim_start_matches('[').trim_end_matches(']');
        let proxy_header =
            (self.inner.options.proxy_protocol).map(|version| version.header(key.proxy_source()));
        let dial = Dial {
            addr,
            tls: tls.map(|connector| (connector, host)),
            timeout: self.inner.options.connect_timeout,
            proxy_header: proxy_header.as_deref(),
        };
        let observer = &self.inner.options.conn.hooks.observer;
        let (stream, handshake) = match crate::transport::connect(dial).await {
            Ok(opened) => opened,
            Err(ConnectError::Tls(failure)) => {
                if let Some(observer) = observer {
                    observer.tls_failure(ConnSide::Upstream, &failure);
                }
                return Err(Error::new(Side::Upstream, ErrorKind::Tls(failure)));
            }
            Err(error) => return Err(error.into()),
        };
        if let (Some(observer), Some(handshake)) = (observer, handshake) {
            observer.tls_handshake(ConnSide::Upstream, &handshake);
        }
        Ok((stream, addr, id))
    }

    /// The connector for `https://`.
    fn tls(&self) -> Result<&TlsConnector, Error> {
        self.inner
            .tls
            .get_or_init(|| {
                let settings = ClientTls {
                    alpn: alpn_for(self.inner.options.protocol),
                    ..ClientTls::default()
                };
                TlsConnector::new(&settings).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|message| {
                Error::new(
                    Side::Local,
                    ErrorKind::Body(format!("TLS configuration: {message}").into()),
                )
            })
    }

    /// One request on `lease`, counted as it starts; see [`exchange::run`]. Not an `async
    /// fn`: the exchange's own future is returned, not wrapped in one more (each level is
    /// copied as it is entered).
    fn exchange<'a>(
        &self,
        lease: Lease,
        head: &'a Outgoing,
        body: Upload,
        attempt: Attempt,
    ) -> impl Future<Output = Result<Response<Incoming>, Failure>> + Send + 'a {
        self.inner.stats.requests.fetch_add(1, Ordering::Relaxed);
        let persistence = if matches!(lease, Lease::Owned(_)) {
            Persistence::Close
        } else {
            Persistence::KeepAlive
        };
        exchange::run(lease, head, body, persistence, attempt)
    }
}

/// The ALPN protocols a client speaking `protocol` offers, most preferred first.
pub fn alpn_for(protocol: HopProtocol) -> Vec<Vec<u8>> {
    match protocol {
        HopProtocol::Http1 => vec![b"http/1.1".to_vec()],
        HopProtocol::Http2 => vec![b"h2".to_vec()],
        HopProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    }
}

/// What became of a request offered a connection opened for HTTP/2 that ALPN made HTTP/1.1.
enum Opened {
    Sent(Result<Response<Incoming>, Error>),
    Declined(Outgoing, RequestBody),
}

/// Whether an exchange may use a pooled connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    /// An idle one, as preferred, or a new one.
    Any(Prefer),
    /// A new connection (a retry after a stale one; a protocol switch).
    New,
}

/// Keeps `want` idle connections to `key` open while the client lives.
async fn standby(client: std::sync::Weak<Inner>, key: Key, want: usize) {
    const CHECK: Duration = Duration::from_secs(1);
    let mut backoff = CHECK;
    loop {
        let Some(inner) = client.upgrade() else {
            return;
        };
        let client = Client { inner };
        let mut failed = false;
        while client.inner.pool.idle_count(&key) < want {
            let Some(slot) = client.inner.pool.reserve(&key) else {
                break;
            };
            match client.connect(&key).await {
                Ok(conn) => slot.fill(conn).release(),
                Err(error) => {
                    tracing::debug!(%key, %error, "could not open a standby connection");
                    failed = true;
                    break;
                }
            }
        }
        backoff = if failed {
            (backoff * 2).min(Duration::from_secs(30))
        } else {
            CHECK
        };
        drop(client);
        tokio::time::sleep(backoff).await;
    }
}

/// Resolves a key's host (IP literals without a lookup).
async fn resolve(key: &Key) -> Result<SocketAddr, Error> {
    let host = key.host().trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, key.port()));
    }
    let unresolved = |why: String| Error::new(Side::Upstream, ErrorKind::Resolve(why));
    tokio::net::lookup_host((host, key.port()))
        .await
        .map_err(|e| unresolved(format!("{host}: {e}")))?
        .next()
        .ok_or_else(|| unresolved(format!("{host}: no address")))
}

/// A connection lent to one exchange.
pub(crate) enum Lease {
    /// From the pool: goes back when the response body ends, if reusable.
    Pooled(Pooled<Key, Box<ClientConn>>),
    /// Owned (close mode): closed when the response body ends.
    Owned(Box<ClientConn>),
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

    /// How this lease's exchange is described in a response.
    pub fn exchange(&self, attempt: Attempt) -> Exchange {
        Exchange {
            connection: self.conn().id(),
            reused: self.is_reused(),
            retried: attempt == Attempt::Retry,
            peer: self.conn().peer(),
        }
    }

    /// Takes the connection out for good (a protocol switch or a tunnel).
    pub fn into_conn(self) -> ClientConn {
        match self {
            Lease::Pooled(conn) => *conn.detach(),
            Lease::Owned(conn) => *conn,
        }
    }

    /// Gives the connection back: to the pool if it may be reused, else closed.
    pub fn finish(self) {
        if let Lease::Pooled(conn) = self {
            conn.release();
        }
    }
}

impl Poolable for Box<ClientConn> {
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

    fn id(&self) -> u64 {
        ClientConn::id(self)
    }

    fn requests(&self) -> u64 {
        self.requests_sent()
    }

    fn retire(&mut self, why: &'static str) {
        ClientConn::retire(self, why);
    }

    fn tcp_info(&self) -> Option<crate::conn::TcpInfo> {
        crate::conn::status::tcp_info(self.stream().tcp()).ok()
    }
}

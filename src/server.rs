//! The listener: accept loop, connection limit, accept-error backoff and graceful shutdown.
//!
//! Owns sockets until they are handed to [`crate::conn::serve_connection`], and the
//! lifecycle of the tasks serving them. It must not contain protocol logic.
//!
//! - **Connection limit**: a connection is accepted only once a slot is free. Excess
//!   connections wait in the kernel's listen backlog (they are not accepted and dropped).
//! - **Accept errors**: errors about one connection (reset before accept) are skipped;
//!   resource errors (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) back off from 1 ms doubling
//!   to 1 s, so a full file table does not spin the CPU.
//! - **Graceful shutdown**: stop accepting, signal every connection (idle ones close at
//!   once; busy ones finish their request with `Connection: close`), wait for them up to
//!   the drain deadline, then abort the rest.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::conn::h2::{self, server::serve_h2};
use crate::conn::status::{ClosedRecord, ConnSide};
use crate::conn::{
    CloseReason, ConnInfo, ConnSummary, Hooks, Incoming, ServerConfig, Shutdown, ShutdownListener,
    serve_connection,
};
use crate::error::BoxError;
use crate::service::{HttpService, Service};
use crate::transport::proxy_header::ProxyHeader;
use crate::transport::tls::TlsAcceptor;
use crate::transport::{Stream, read_proxy_header, starts_with};

/// Listener settings, each with its default. Build it from `ListenerConfig::default()`
/// and set the fields that differ.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListenerConfig {
    /// Most connections served at once; more wait in the backlog. Default 10,000.
    pub max_connections: usize,
    /// Kernel listen backlog (capped by `net.core.somaxconn`). Default 4096.
    pub backlog: u32,
    /// How long a graceful shutdown waits for busy connections. Default 10 s.
    pub drain_timeout: Duration,
    /// `SO_REUSEPORT`: several listeners (one per worker thread) share the address and the
    /// kernel spreads new connections over them. Default `false`.
    pub reuse_port: bool,
    /// Take the client's address from a PROXY protocol header (v1 or v2) that trusted
    /// peers (an L4 balancer) put first. Default `None`.
    pub proxy_protocol: Option<ProxyProtocol>,
}

/// Whose PROXY protocol header to believe: a connection from one of `trusted` must start
/// with one (it is closed otherwise) and is served as the client's the header names; any
/// other connection is served as its own (a header from it is not HTTP: 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// The balancers' networks.
    pub trusted: Vec<ipnet::IpNet>,
}

impl ProxyProtocol {
    /// Whether a connection from `ip` must start with a header.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            max_connections: 10_000,
            backlog: 4096,
            drain_timeout: Duration::from_secs(10),
            reuse_port: false,
            proxy_protocol: None,
        }
    }
}

/// Counters a running server keeps, readable at any time.
#[derive(Debug, Default)]
pub struct ServerStats {
    accepted: AtomicU64,
    accept_errors: AtomicU64,
    active: AtomicU64,
    requests: AtomicU64,
    writes: AtomicU64,
    closed_by: [AtomicU64; CloseReason::ALL.len()],
}

/// A copy of [`ServerStats`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Connections accepted.
    pub accepted: u64,
    /// `accept` calls that failed for lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM)
    /// and were retried after a back-off.
    pub accept_errors: u64,
    /// Connections being served.
    pub active: u64,
    /// Requests answered on connections that have closed.
    pub requests: u64,
    /// Write syscalls that carried response bytes, on connections that have closed.
    pub writes: u64,
    /// Closed connections, by reason, in [`CloseReason::ALL`] order.
    pub closed_by: Vec<(CloseReason, u64)>,
}

impl StatsSnapshot {
    /// Closed connections with this reason.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.closed_by
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// Closed connections, all reasons.
    pub fn closed_total(&self) -> u64 {
        self.closed_by.iter().map(|(_, n)| n).sum()
    }
}

impl ServerStats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            accepted: self.accepted.load(Ordering::Relaxed),
            accept_errors: self.accept_errors.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            closed_by: CloseReason::ALL
                .iter()
                .zip(&self.closed_by)
                .map(|(reason, n)| (*reason, n.load(Ordering::Relaxed)))
                .collect(),
        }
    }

    fn record_close(&self, summary: ConnSummary) {
        self.requests.fetch_add(summary.requests, Ordering::Relaxed);
        self.writes.fetch_add(summary.writes, Ordering::Relaxed);
        self.closed_by[summary.reason.index()].fetch_add(1, Ordering::Relaxed);
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A bound listener with its service and policy, ready to run. Each connection gets a
/// clone of the service (cheap for `service_fn`, an axum `Router`, or a service holding an
/// `Arc`).
///
/// ```
/// use hopline::client::Client;
/// use hopline::conn::ServerConfig;
/// use hopline::origin::Origin;
/// use hopline::server::{ListenerConfig, Server};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let addr = "127.0.0.1:0".parse().unwrap();
/// let server = Server::bind(addr, Origin::new(), ServerConfig::default(), ListenerConfig::default())
///     .unwrap();
/// let addr = server.local_addr().unwrap();
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let running = tokio::spawn(server.run(async { let _ = stopped.await; }));
///
/// let client = Client::new(Default::default());
/// let response = client.get(&format!("http://{addr}/")).await.unwrap();
/// assert_eq!(response.status(), 200);
/// let body = response.into_body().bytes(1024).await.unwrap();
/// assert_eq!(body, "Hello, world!");
///
/// drop(stop); // a graceful shutdown: the run ends once connections are drained
/// running.await.unwrap();
/// # }
/// ```
pub struct Server<S> {
    listener: TcpListener,
    service: S,
    config: ConfigHandle,
    listener_config: ListenerConfig,
    stats: Arc<ServerStats>,
    shutdown: Shutdown,
    hooks: Hooks,
    tls: Option<TlsAcceptor>,
}

/// The connection policy a running server gives new connections; replace it to reload
/// (connections already open keep the policy they started with).
#[derive(Debug, Clone)]
pub struct ConfigHandle(Arc<RwLock<Arc<ServerConfig>>>);

impl ConfigHandle {
    fn new(config: ServerConfig) -> Self {
        ConfigHandle(Arc::new(RwLock::new(Arc::new(config))))
    }

    /// The policy new connections get now.
    pub fn get(&self) -> Arc<ServerConfig> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Gives new connections this policy from now on.
    pub fn set(&self, config: ServerConfig) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }
}

/// How a server run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Connections still open at the drain deadline, aborted.
    pub aborted: usize,
}

impl<S, B> Server<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Future: Send> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// Binds `addr` (`SO_REUSEADDR`, the configured backlog).
    pub fn bind(
        addr: SocketAddr,
        service: S,
        config: ServerConfig,
        listener_config: ListenerConfig,
    ) -> io::Result<Self> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        if listener_config.reuse_port {
            socket.set_reuseport(true)?;
        }
        socket.bind(addr)?;
        let listener = socket.listen(listener_config.backlog)?;
        Ok(Self::from_listener(
            listener,
            service,
            config,
            listener_config,
        ))
    }

    /// Wraps an already bound listener.
    pub fn from_listener(
        listener: TcpListener,
        service: S,
        config: ServerConfig,
        listener_config: ListenerConfig,
    ) -> Self {
        Server {
            listener,
            service,
            config: ConfigHandle::new(config),
            listener_config,
            stats: Arc::new(ServerStats::default()),
            shutdown: Shutdown::new(),
            hooks: Hooks::default(),
            tls: None,
        }
    }

    /// Speaks TLS (HTTPS) on every connection, with this acceptor (reload its certificates
    /// through a clone of it). The handshake must finish within the header timeout.
    pub fn with_tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// Reports connections and requests to `hooks` (live view, metrics, access log).
    pub fn with_hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// The handle through which the connection policy can be replaced while running.
    pub fn config_handle(&self) -> ConfigHandle {
        self.config.clone()
    }

    /// Takes new connections' policy from `handle` (shared by several listeners, so that
    /// one reload reaches them all).
    pub fn with_config_handle(mut self, handle: ConfigHandle) -> Self {
        self.config = handle;
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The server's counters.
    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// Accepts and serves connections until `signal` completes, then shuts down gracefully.
    pub async fn run(self, signal: impl Future<Output = ()>) -> RunSummary {
        let Server {
            listener,
            service,
            config,
            listener_config,
            stats,
            shutdown,
            hooks,
            tls,
        } = self;
        let slots = Arc::new(Semaphore::new(listener_config.max_connections));
        let mut tasks = JoinSet::new();
        let mut connections = Connections {
            service,
            config,
            hooks: Arc::new(hooks),
            stats,
            tls,
            proxy_protocol: listener_config.proxy_protocol.clone().map(Arc::new),
            next_id: 0,
        };
        let mut backoff = Duration::from_millis(1);
        let mut signal = std::pin::pin!(signal);
        loop {
            // Reap finished connection tasks so the set stays small.
            while tasks.try_join_next().is_some() {}
            let slot = tokio::select! {
                biased;
                () = &mut signal => break,
                slot = slots.clone().acquire_owned() => slot.expect("semaphore never closed"),
            };
            let accepted = tokio::select! {
                biased;
                () = &mut signal => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => {
                    backoff = Duration::from_millis(1);
                    accepted
                }
                Err(error) if is_per_connection(&error) => continue,
                Err(error) => {
                    connections
                        .stats
                        .accept_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, ?backoff, "accept failed; backing off");
                    tokio::select! {
                        biased;
                        () = &mut signal => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            tasks.spawn(connections.serve(stream, peer, shutdown.listener(), slot));
        }

        // Graceful shutdown: no new connections; every open one is told to finish.
        drop(listener);
        tracing::info!(open = tasks.len(), "shutting down: draining connections");
        shutdown.trigger();
        RunSummary {
            aborted: drain(tasks, listener_config.drain_timeout).await,
        }
    }
}

/// What every accepted connection's task gets: the service to clone, the policy of the
/// moment, where to report, TLS.
struct Connections<S> {
    service: S,
    config: ConfigHandle,
    hooks: Arc<Hooks>,
    stats: Arc<ServerStats>,
    tls: Option<TlsAcceptor>,
    proxy_protocol: Option<Arc<ProxyProtocol>>,
    next_id: u64,
}

impl<S: HttpService> Connections<S> {
    /// The task serving one accepted socket: the TLS handshake if any, then HTTP, its
    /// close recorded however it ends; its connection slot is freed at the end. (Spawned
    /// as it is: awaited inside another future, it would be stored twice.)
    fn serve(
        &mut self,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        shutdown: ShutdownListener,
        slot: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        let _ = tcp.set_nodelay(true);
        self.next_id += 1;
        let mut info = ConnInfo {
            id: self.next_id,
            peer,
            local: tcp.local_addr().unwrap_or(peer),
            secure: self.tls.is_some(),
        };
        let proxied = (self.proxy_protocol.as_ref()).is_some_and(|pp| pp.trusts(peer.ip()));
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        self.stats.active.fetch_add(1, Ordering::Relaxed);
        let service = self.service.clone();
        let config = self.config.get();
        let hooks = self.hooks.clone();
        let tls = self.tls.clone();
        let stats = self.stats.clone();
        async move {
            // Counts the connection as closed even if its task is aborted at the drain
            // deadline (then as a shutdown close).
            let mut record = CloseRecord {
                stats,
                summary: None,
            };
            if proxied {
                let deadline = tokio::time::Instant::now() + config.header_timeout;
                match read_proxy_header(&tcp, deadline).await {
                    Ok(ProxyHeader::Proxied {
                        source,
                        destination,
                    }) => (info.peer, info.local) = (source, destination),
                    Ok(ProxyHeader::Local) => {}
                    Err(error) => {
                        tracing::debug!(%peer, %error, "closed: no valid PROXY protocol header");
                        record.summary = Some(ConnSummary {
                            requests: 0,
                            writes: 0,
                            reason: CloseReason::BadRequest,
                        });
                        return;
                    }
                }
            }
            let opened = match tls {
                None if config.http2.enabled => {
                    // h2c with prior knowledge: the client opens with HTTP/2's preface.
                    let deadline = tokio::time::Instant::now() + config.header_timeout;
                    match starts_with(&tcp, h2::PREFACE, deadline).await {
                        Some(h2) => Ok((Stream::Tcp(tcp), h2)),
                        None => Err(silent(&hooks)),
                    }
                }
                None => Ok((Stream::Tcp(tcp), false)),
                // Boxed: a handshake's state is large and over once it is done; inline,
                // every connection's task, idle or not, would keep room for it.
                Some(acceptor) => Box::pin(handshake(acceptor, tcp, &config, &hooks)).await,
            };
            record.summary = Some(match opened {
                Ok((stream, false)) => {
                    serve_connection(stream, info, service, &config, shutdown, &hooks).await
                }
                Ok((stream, true)) => {
                    Box::pin(serve_h2(stream, info, service, &config, shutdown, &hooks)).await
                }
                Err(summary) => summary,
            });
            drop(slot);
        }
    }
}

/// Waits up to `timeout` for the connections' tasks to end, then aborts the rest; how
/// many were aborted.
async fn drain(mut tasks: JoinSet<()>, timeout: Duration) -> usize {
    let drained = tokio::time::timeout(timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_ok() {
        return 0;
    }
    let left = tasks.len();
    tracing::warn!(left, "drain deadline passed; aborting connections");
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    left
}

/// Records a connection's close in the stats when its task ends, however it ends.
struct CloseRecord {
    stats: Arc<ServerStats>,
    summary: Option<ConnSummary>,
}

impl Drop for CloseRecord {
    fn drop(&mut self) {
        let summary = self.summary.unwrap_or(ConnSummary {
            requests: 0,
            writes: 0,
            reason: CloseReason::Shutdown,
        });
        self.stats.record_close(summary);
    }
}

/// A connection that sent nothing within the header timeout: closed, as HTTP/1.x closes
/// a silent new connection, and reported.
fn silent(hooks: &Hooks) -> ConnSummary {
    let reason = CloseReason::HeaderTimeout;
    if let Some(observer) = &hooks.observer {
        observer.opened(ConnSide::Downstream);
        observer.closed(&ClosedRecord {
            side: ConnSide::Downstream,
            reason: reason.label(),
            requests: 0,
            lifetime: Duration::ZERO,
            bytes_in: 0,
            bytes_out: 0,
            protocol: crate::conn::Protocol::Http1,
        });
    }
    ConnSummary {
        requests: 0,
        writes: 0,
        reason,
    }
}

/// TLS over the connection's socket once the handshake is done (within the header
/// timeout), and whether ALPN chose HTTP/2. A failed handshake is reported, and ends the
/// connection.
async fn handshake(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    config: &ServerConfig,
    hooks: &Hooks,
) -> Result<(Stream, bool), ConnSummary> {
    let deadline = tokio::time::Instant::now() + config.header_timeout;
    match acceptor.accept(tcp, deadline).await {
        Ok((stream, handshake)) => {
            if let Some(observer) = &hooks.observer {
                observer.tls_handshake(ConnSide::Downstream, &handshake);
            }
            let h2 = handshake.info.alpn.as_deref().map(str::as_bytes) == Some(h2::ALPN_H2);
            Ok((stream, h2))
        }
        Err(failure) => {
            tracing::debug!(%failure, "TLS handshake failed");
            if let Some(observer) = &hooks.observer {
                observer.tls_failure(ConnSide::Downstream, &failure);
            }
            Err(ConnSummary {
                requests: 0,
                writes: 0,
                reason: CloseReason::TlsHandshake,
            })
        }
    }
}

/// Accept errors that concern only the connection being accepted.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    ) || error.raw_os_error() == Some(libc::EPROTO)
        || error.raw_os_error() == Some(libc::EPERM)
}

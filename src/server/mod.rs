//! The listener: accept loop, connection limit, idle connections as a managed resource,
//! accept-error backoff and graceful shutdown.
//!
//! Owns sockets until they are handed to [`crate::conn::serve_connection`], idle sockets
//! parked between requests (`parking`), and the lifecycle of the tasks serving them. It
//! must not contain protocol logic.
//!
//! - **Connection limit**: a connection is accepted once a slot is free, or when an idle
//!   (parked) connection can give up its slot: the longest idle is closed for it
//!   (`pressure`), unless input waits on it. Otherwise excess connections wait in the
//!   kernel's listen backlog (they are not accepted and dropped).
//! - **Idle timeout under pressure**: as open connections approach the limit, the idle
//!   timeout shrinks from `keepalive_timeout` to `keepalive_timeout_min` ([`pressure`]), for
//!   parked connections and for those idle in their tasks alike.
//! - **Accept errors**: errors about one connection (reset before accept) are skipped;
//!   resource errors (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) close the longest idle
//!   connection if there is one and retry, else back off from 1 ms doubling to 1 s (and
//!   retry as soon as a connection ends), so a full file table does not spin the CPU.
//! - **Graceful shutdown**: stop accepting, signal every connection (busy ones finish
//!   their request with `Connection: close`; idle ones close at their own moment within
//!   [`ListenerConfig::drain_grace`], answering a request that arrives first), wait for
//!   them up to the drain deadline, then abort the rest.

mod parking;
pub mod pressure;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::conn::h1::server::{Served, resume_connection, serve_connection, serve_parking};
use crate::conn::h2::{self, server::serve_h2};
use crate::conn::status::{ClosedRecord, ConnSide};
use crate::conn::{
    CloseReason, ConnInfo, ConnSummary, Hooks, Incoming, ServerConfig, Shutdown, ShutdownListener,
};
use crate::error::BoxError;
use crate::service::{HttpService, Service};
use crate::transport::proxy_header::ProxyHeader;
use crate::transport::tls::TlsAcceptor;
use crate::transport::{Stream, read_proxy_header, starts_with};
use parking::{Entry, Leaving, Lot};

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
    /// In a graceful shutdown, connections idle when it starts close within this window,
    /// each at its own moment (not all in one millisecond); a request that reaches one
    /// first is answered, with `Connection: close`. Default 1 s.
    pub drain_grace: Duration,
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
            drain_grace: Duration::from_secs(1),
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
    parked: AtomicU64,
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
    /// Connections open (busy, idle, or parked).
    pub active: u64,
    /// Idle connections parked outside tasks.
    pub parked: u64,
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
            parked: self.parked.load(Ordering::Relaxed),
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
            shutdown: Shutdown::with_grace(listener_config.drain_grace),
            listener_config,
            stats: Arc::new(ServerStats::default()),
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
        let lot = match Lot::new() {
            Ok(lot) => Some(lot),
            Err(error) => {
                tracing::warn!(%error, "idle connections will not be parked");
                None
            }
        };
        let (parked_tx, parked_rx) = mpsc::unbounded_channel();
        let mut running = Running {
            connections: Connections {
                service,
                config,
                hooks: Arc::new(hooks),
                stats,
                tls,
                proxy_protocol: listener_config.proxy_protocol.clone().map(Arc::new),
                next_id: 0,
                parked: lot.is_some().then_some(parked_tx),
            },
            tasks: JoinSet::new(),
            lot,
            parked: parked_rx,
            leaving: Vec::new(),
            capacity: listener_config.max_connections,
            limit: pressure_limit(listener_config.max_connections),
            slots: Arc::new(Semaphore::new(listener_config.max_connections)),
            spare: None,
            waiting: None,
            pressure: None,
            reported: None,
            shutdown,
        };
        running.accept_until(listener, signal).await;
        tracing::info!(
            open = running.tasks.len() + running.parked_count(),
            "shutting down: draining connections"
        );
        running.shutdown.trigger();
        RunSummary {
            aborted: running.drain(listener_config.drain_timeout).await,
        }
    }
}

/// A running listener's state: its connections' tasks, the parked idle connections, the
/// slots of the connection limit, and the idle timeout pressure allows.
struct Running<S> {
    connections: Connections<S>,
    tasks: JoinSet<()>,
    lot: Option<Lot>,
    /// Connections that left their task to be parked.
    parked: mpsc::UnboundedReceiver<Entry>,
    /// Connections leaving the lot (reused between polls).
    leaving: Vec<Leaving>,
    /// The connection limit (the slots' number).
    capacity: usize,
    /// How many open connections count as full for pressure ([`pressure_limit`]).
    limit: usize,
    slots: Arc<Semaphore>,
    /// A slot taken while the limit was reached and nothing was parked: the next accepted
    /// connection's.
    spare: Option<OwnedSemaphorePermit>,
    /// A connection accepted for which no slot could be freed yet.
    waiting: Option<(TcpStream, SocketAddr)>,
    /// The idle timeout pressure allows now.
    pressure: Option<Duration>,
    /// The idle timeout in force last reported.
    reported: Option<Duration>,
    shutdown: Shutdown,
}

/// What the accept loop woke for.
enum Event {
    Stop,
    Parked(Entry),
    Leaving,
    Accepted(io::Result<(TcpStream, SocketAddr)>),
    Slot(OwnedSemaphorePermit),
    Recheck,
}

/// Descriptors kept out of the pressure limit (listeners, upstream connections being
/// opened, log files): this many, or an eighth of a smaller limit.
const DESCRIPTORS_RESERVED: u64 = 64;

/// How many open connections count as full for pressure: `max_connections`, or fewer if the
/// descriptor limit is lower (less a reserve), so idle connections yield before `accept`
/// runs out of descriptors.
fn pressure_limit(max_connections: usize) -> usize {
    let descriptors = crate::transport::open_file_limit().map_or(u64::MAX, |limit| {
        limit - DESCRIPTORS_RESERVED.min(limit / 8)
    });
    max_connections
        .min(usize::try_from(descriptors).unwrap_or(usize::MAX))
        .max(1)
}

/// While pressure shortens the idle timeout, how often it is looked at again (connections
/// closing in their tasks do not tell the listener).
const PRESSURE_RECHECK: Duration = Duration::from_secs(1);

impl<S: HttpService> Running<S> {
    /// Accepts and serves connections until `signal` completes.
    async fn accept_until(&mut self, listener: TcpListener, signal: impl Future<Output = ()>) {
        let mut backoff = Duration::from_millis(1);
        let mut signal = std::pin::pin!(signal);
        loop {
            // Reap finished connection tasks so the set stays small.
            while self.tasks.try_join_next().is_some() {}
            self.apply_pressure();
            // A connection waiting for a slot gets one as soon as one is parked.
            if self.waiting.is_some()
                && let Some(permit) = self.free_slot()
            {
                let (tcp, peer) = self.waiting.take().expect("a waiting connection");
                self.spawn_new(tcp, peer, permit);
            }
            match self.next_event(&listener, signal.as_mut()).await {
                Event::Stop => return,
                Event::Parked(entry) => self.park(entry),
                Event::Leaving => self.let_leave(),
                Event::Slot(permit) => match self.waiting.take() {
                    Some((tcp, peer)) => self.spawn_new(tcp, peer, permit),
                    None => self.spare = Some(permit),
                },
                Event::Recheck => {}
                Event::Accepted(Ok((tcp, peer))) => {
                    backoff = Duration::from_millis(1);
                    match self.free_slot() {
                        Some(permit) => self.spawn_new(tcp, peer, permit),
                        None => self.waiting = Some((tcp, peer)),
                    }
                }
                Event::Accepted(Err(error)) if is_per_connection(&error) => {}
                Event::Accepted(Err(error)) => {
                    (self.connections.stats.accept_errors).fetch_add(1, Ordering::Relaxed);
                    // Out of descriptors or memory: an idle connection gives way, if any.
                    if let Some(permit) = self.evict() {
                        drop(permit);
                        continue;
                    }
                    tracing::warn!(%error, ?backoff, "accept failed; backing off");
                    // A connection ending frees a descriptor: try again then, not later.
                    let has_tasks = !self.tasks.is_empty();
                    tokio::select! {
                        biased;
                        () = signal.as_mut() => return,
                        Some(_) = self.tasks.join_next(), if has_tasks => {}
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Waits for the next thing the accept loop must act on.
    async fn next_event(
        &mut self,
        listener: &TcpListener,
        signal: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Event {
        let pressure = self.pressure;
        let parked_any = self.parked_count() > 0;
        let room = self.spare.is_some() || self.slots.available_permits() > 0 || parked_any;
        let accept = self.waiting.is_none() && room;
        let acquire = self.spare.is_none() && (self.waiting.is_some() || !room);
        let pressed = self.pressure.is_some();
        let Running {
            lot,
            parked,
            leaving,
            slots,
            ..
        } = self;
        tokio::select! {
            biased;
            () = signal => Event::Stop,
            Some(entry) = parked.recv() => Event::Parked(entry),
            () = lot_leaving(lot, pressure, leaving) => Event::Leaving,
            permit = slots.clone().acquire_owned(), if acquire => {
                Event::Slot(permit.expect("semaphore never closed"))
            }
            accepted = listener.accept(), if accept => Event::Accepted(accepted),
            () = tokio::time::sleep(PRESSURE_RECHECK), if pressed => Event::Recheck,
        }
    }

    /// A slot for a new connection: a free one, or one an idle connection gives up.
    fn free_slot(&mut self) -> Option<OwnedSemaphorePermit> {
        if let Some(permit) = self.spare.take() {
            return Some(permit);
        }
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Some(permit);
        }
        self.evict()
    }

    /// Closes the longest-idle parked connection (`pressure`) and returns its slot; one
    /// with input waiting is served instead, and the next tried.
    fn evict(&mut self) -> Option<OwnedSemaphorePermit> {
        loop {
            let left = self.lot.as_mut()?.evict_oldest()?;
            self.count_parked(-1);
            match left {
                Leaving::Serve(entry) => self.spawn_resumed(entry),
                Leaving::Close(entry, reason) => return Some(self.close_parked(entry, reason)),
            }
        }
    }

    /// Sets the idle timeout pressure allows for the connections open now.
    fn apply_pressure(&mut self) {
        let config = self.connections.config.get();
        let open = self.capacity - self.slots.available_permits();
        let pressure = pressure::idle_timeout(
            config.keepalive_timeout,
            config.keepalive_timeout_min,
            open,
            self.limit,
        );
        if pressure != self.pressure {
            self.pressure = pressure;
            self.shutdown.set_idle_timeout(pressure);
        }
        let in_force = pressure.unwrap_or(config.keepalive_timeout);
        if self.reported != Some(in_force) {
            self.reported = Some(in_force);
            if let Some(observer) = &self.connections.hooks.observer {
                observer.idle_timeout(ConnSide::Downstream, in_force);
            }
        }
    }

    fn parked_count(&self) -> usize {
        self.lot.as_ref().map_or(0, Lot::len)
    }

    /// Parks a connection that left its task.
    fn park(&mut self, entry: Entry) {
        let Some(lot) = self.lot.as_mut() else {
            drop(self.close_parked(entry, CloseReason::Io));
            return;
        };
        match lot.park(entry, &self.shutdown) {
            Ok(()) => self.count_parked(1),
            Err(refused) => {
                let (entry, error) = *refused;
                tracing::debug!(%error, "an idle connection could not be parked");
                drop(self.close_parked(entry, CloseReason::Io));
            }
        }
    }

    /// Serves or closes the connections that left the lot.
    fn let_leave(&mut self) {
        let mut leaving = std::mem::take(&mut self.leaving);
        self.count_parked(-(leaving.len() as i64));
        for left in leaving.drain(..) {
            match left {
                Leaving::Serve(entry) => self.spawn_resumed(entry),
                Leaving::Close(entry, reason) => drop(self.close_parked(entry, reason)),
            }
        }
        self.leaving = leaving;
    }

    /// Counts connections parked (`delta` > 0) or leaving the lot.
    fn count_parked(&self, delta: i64) {
        let parked = &self.connections.stats.parked;
        if delta >= 0 {
            parked.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            parked.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
        if let Some(observer) = &self.connections.hooks.observer {
            observer.parked(ConnSide::Downstream, delta);
        }
    }

    /// Closes a connection taken out of the lot; its slot, to free or reuse.
    fn close_parked(&mut self, entry: Entry, reason: CloseReason) -> OwnedSemaphorePermit {
        let Entry { conn, permit, .. } = entry;
        let summary = conn.close(reason, &self.connections.hooks);
        self.connections.stats.record_close(summary);
        permit
    }

    fn spawn_new(&mut self, tcp: TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit) {
        let listener = self.shutdown.listener();
        let task = self.connections.serve(tcp, peer, listener, permit);
        self.tasks.spawn(task);
    }

    fn spawn_resumed(&mut self, entry: Entry) {
        let listener = self.shutdown.listener();
        let task = self.connections.resume(entry, listener);
        self.tasks.spawn(task);
    }

    /// The graceful shutdown, once signalled: parked connections close at their moments
    /// (or are served, if a request reaches them first); waits up to `timeout` for every
    /// connection to end, then aborts the rest; how many were aborted.
    async fn drain(&mut self, timeout: Duration) -> usize {
        if let Some(lot) = self.lot.as_mut() {
            lot.drain(&self.shutdown);
        }
        let deadline = Instant::now() + timeout;
        loop {
            while self.tasks.try_join_next().is_some() {}
            if self.tasks.is_empty() && self.parked_count() == 0 && self.parked.is_empty() {
                return 0;
            }
            let pressure = self.pressure;
            let Running {
                lot,
                parked,
                leaving,
                tasks,
                ..
            } = self;
            tokio::select! {
                biased;
                Some(entry) = parked.recv() => self.park(entry),
                () = lot_leaving(lot, pressure, leaving) => self.let_leave(),
                Some(_) = tasks.join_next() => {}
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let left = self.tasks.len() + self.parked_count();
        tracing::warn!(left, "drain deadline passed; aborting connections");
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let entries = self.lot.as_mut().map(Lot::empty).unwrap_or_default();
        self.count_parked(-(entries.len() as i64));
        for entry in entries {
            drop(self.close_parked(entry, CloseReason::Shutdown));
        }
        left
    }
}

/// Connections leaving the lot, if there is one (else never).
async fn lot_leaving(
    lot: &mut Option<Lot>,
    pressure: Option<Duration>,
    leaving: &mut Vec<Leaving>,
) {
    match lot {
        Some(lot) => std::future::poll_fn(|cx| lot.poll_leaving(cx, pressure, leaving)).await,
        None => std::future::pending().await,
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
    /// Where idle connections go to be parked (`None`: they are not).
    parked: Option<mpsc::UnboundedSender<Entry>>,
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
        let parked = self.parked.clone();
        async move {
            // Counts the connection as closed even if its task is aborted at the drain
            // deadline (then as a shutdown close).
            let mut record = CloseRecord {
                stats,
                summary: None,
                parked: false,
            };
            if proxied && !take_proxy_header(&tcp, &mut info, config.header_timeout).await {
                record.summary = Some(ConnSummary {
                    requests: 0,
                    writes: 0,
                    reason: CloseReason::BadRequest,
                });
                return;
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
            match opened {
                Ok((stream, false)) => match &parked {
                    Some(parked) => {
                        let served =
                            serve_parking(stream, info, service, &config, shutdown, &hooks).await;
                        record.served(served, (slot, config), parked, &hooks);
                    }
                    None => {
                        let summary =
                            serve_connection(stream, info, service, &config, shutdown, &hooks);
                        record.summary = Some(summary.await);
                    }
                },
                Ok((stream, true)) => {
                    let served = serve_h2(stream, info, service, &config, shutdown, &hooks);
                    record.summary = Some(Box::pin(served).await);
                }
                Err(summary) => record.summary = Some(summary),
            }
        }
    }

    /// The task serving a parked connection again, its input having arrived.
    fn resume(
        &self,
        entry: Entry,
        shutdown: ShutdownListener,
    ) -> impl Future<Output = ()> + Send + 'static {
        let service = self.service.clone();
        let hooks = self.hooks.clone();
        let parked = self.parked.clone();
        let record = CloseRecord {
            stats: self.stats.clone(),
            summary: None,
            parked: false,
        };
        async move {
            let Entry {
                conn,
                permit,
                config,
            } = entry;
            let served = resume_connection(conn, service, &config, shutdown, &hooks).await;
            match &parked {
                Some(parked) => record.served(served, (permit, config), parked, &hooks),
                None => unreachable!("a parked connection comes from a listener that parks"),
            }
        }
    }
}

/// Records a connection's close in the stats when its task ends, however it ends (unless
/// the connection was parked: it is still open).
struct CloseRecord {
    stats: Arc<ServerStats>,
    summary: Option<ConnSummary>,
    /// The connection was parked, not closed.
    parked: bool,
}

impl CloseRecord {
    /// Records how an HTTP/1.x connection's task ended: closed, or parked (handed to the
    /// listener with its slot and policy).
    fn served(
        mut self,
        served: Served,
        (permit, config): (OwnedSemaphorePermit, Arc<ServerConfig>),
        parked: &mpsc::UnboundedSender<Entry>,
        hooks: &Hooks,
    ) {
        match served {
            Served::Closed(summary) => self.summary = Some(summary),
            Served::Parked(conn) => match parked.send(Entry {
                conn,
                permit,
                config,
            }) {
                Ok(()) => self.parked = true,
                // The listener is gone (its drain ended): close.
                Err(mpsc::error::SendError(entry)) => {
                    self.summary = Some(entry.conn.close(CloseReason::Shutdown, hooks));
                }
            },
        }
    }
}

impl Drop for CloseRecord {
    fn drop(&mut self) {
        if self.parked {
            return;
        }
        let summary = self.summary.unwrap_or(ConnSummary {
            requests: 0,
            writes: 0,
            reason: CloseReason::Shutdown,
        });
        self.stats.record_close(summary);
    }
}

/// Reads the PROXY protocol header a trusted balancer puts first (within `timeout`) and
/// takes the client's addresses from it; `false` if there was no valid one (the connection
/// is then closed).
async fn take_proxy_header(tcp: &TcpStream, info: &mut ConnInfo, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    match read_proxy_header(tcp, deadline).await {
        Ok(ProxyHeader::Proxied {
            source,
            destination,
        }) => (info.peer, info.local) = (source, destination),
        Ok(ProxyHeader::Local) => {}
        Err(error) => {
            let peer = info.peer;
            tracing::debug!(%peer, %error, "closed: no valid PROXY protocol header");
            return false;
        }
    }
    true
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
            group: None,
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

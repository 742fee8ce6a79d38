//! `pool`: idle client connections, keyed by (scheme, host, port, and for TLS the
//! verification settings).
//!
//! Owns which connection a request gets: the most recently used idle one first (it is the
//! warmest: its congestion window grew with use and it is least likely to have been closed
//! by the server), a new one if the host is under its cap, or a place in a fair FIFO queue.
//! It retires connections before they go bad (idle timeout, lifetime, request count, the
//! server's `Keep-Alive: timeout`), checks them at checkout, and evicts idle connections
//! whose peer closed without waiting for a checkout. It must not parse HTTP: a connection
//! answers for itself through [`Poolable`].
//!
//! It also learns, per key, the idle age at which an origin keeps closing connections
//! without saying so, and retires connections a margin before it ([`learn`]).
//!
//! HTTP/2 connections are shared rather than leased: [`shared`] has their pool.

pub mod learn;
pub mod shared;
pub mod warmth;

use learn::IdleLearner;
use warmth::Warmth;

use crate::conn::lifetime::jittered_lifetime;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::poll_fn;
use std::hash::Hash;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// What the pool needs to know about a connection.
pub trait Poolable: Send + 'static {
    /// Whether the connection may carry another request (asked when it is released).
    fn is_reusable(&self) -> bool;
    /// A non-blocking check at checkout: `false` if the peer closed the connection or sent
    /// bytes nobody asked for.
    fn is_open(&mut self) -> bool;
    /// Ready once an idle connection's peer has closed it (the pool then evicts it without
    /// waiting for a checkout); registers the task to be woken otherwise.
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// A moment after which the connection must not be used even if idle (for example
    /// shortly before the server's `Keep-Alive: timeout` runs out).
    fn retire_at(&self) -> Option<Instant>;
    /// When the connection was opened (for the maximum lifetime).
    fn created(&self) -> Instant;
    /// A number telling it from the pool's other connections (its share of the lifetime
    /// jitter window).
    fn id(&self) -> u64;
    /// Requests it has carried (for the per-connection maximum).
    fn requests(&self) -> u64;
    /// The pool is closing it, for this reason (a metric label such as `idle_timeout`,
    /// `peer_closed`, `max_requests`); called just before it is dropped.
    fn retire(&mut self, why: &'static str) {
        let _ = why;
    }
    /// The kernel's view of its socket (bytes received, RTO), for reuse by warmth; `None`
    /// where there is none.
    fn tcp_info(&self) -> Option<crate::conn::TcpInfo> {
        None
    }
}

/// Which idle connection a checkout prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prefer {
    /// The most recently used (least likely closed by its server).
    #[default]
    RecentlyUsed,
    /// For a large response: the one whose sender's window is largest and still open
    /// ([`warmth::warmest`]), else the most recently used.
    Warm,
}

/// Pool settings, each with its default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Idle connections kept per host; beyond it the least recently used closes.
    /// Default 32.
    pub max_idle_per_host: usize,
    /// Connections per host, idle or busy or connecting; more checkouts wait in a FIFO
    /// queue (browsers use 6). Default: unlimited.
    pub max_connections_per_host: Option<usize>,
    /// An idle connection older than this closes. Default 90 s.
    pub idle_timeout: Duration,
    /// A connection carries at most this many requests. Default: unlimited.
    pub max_requests_per_connection: Option<u64>,
    /// A connection is not reused past this age. Default: unlimited.
    pub max_lifetime: Option<Duration>,
    /// Each connection's maximum lifetime is shortened by a share of this, different per
    /// connection, so that connections opened together are not all retired together.
    /// Default 0.
    pub max_lifetime_jitter: Duration,
    /// Idle connections kept open per host for the hosts a client is told to keep ready
    /// (preconnected, and replaced as they retire: Envoy's preconnect, Squid's `standby`),
    /// so a request finds one without a handshake. Default 0.
    pub min_idle_per_host: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_idle_per_host: 32,
            max_connections_per_host: None,
            idle_timeout: Duration::from_secs(90),
            max_requests_per_connection: None,
            max_lifetime: None,
            max_lifetime_jitter: Duration::ZERO,
            min_idle_per_host: 0,
        }
    }
}

/// The identity of an origin: connections are shared only within one key. Cheap to make
/// from a URI and to clone (it shares the URI's bytes): it travels with every request. Hosts
/// compare without regard to case; the host is found and hashed once, when the key is made.
#[derive(Debug, Clone)]
pub struct Key {
    scheme: http::uri::Scheme,
    /// Holds the host (and the port, if the URI gave one).
    authority: http::uri::Authority,
    /// Where the host lies in the authority.
    host: std::ops::Range<usize>,
    port: u16,
    /// For `https`: the fingerprint of the TLS verification settings (trust, server name
    /// override, client certificate) connections are opened with; 0 for `http`.
    tls: u64,
    /// The client addresses a PROXY protocol header names on connections to it: a
    /// connection carries one client's requests only (curl's rule).
    proxied: Option<(SocketAddr, SocketAddr)>,
    /// FNV-1a of the lowercased host and the port.
    hash: u64,
}

impl Key {
    /// A key from its parts.
    pub fn new(scheme: &str, host: &str, port: u16) -> Key {
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let scheme = scheme.parse().unwrap_or(http::uri::Scheme::HTTP);
        let authority = authority
            .parse()
            .unwrap_or_else(|_| http::uri::Authority::from_static("invalid"));
        Key::of(scheme, authority, Some(port))
    }

    /// The key of an absolute URI; `None` without a host. No allocation: the key shares
    /// the URI's bytes.
    pub fn from_uri(uri: &http::Uri) -> Option<Key> {
        let authority = uri.authority()?.clone();
        let scheme = uri.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP);
        Some(Key::of(scheme, authority, None))
    }

    fn of(scheme: http::uri::Scheme, authority: http::uri::Authority, port: Option<u16>) -> Key {
        let port = port
            .or(authority.port_u16())
            .unwrap_or(if scheme == http::uri::Scheme::HTTPS {
                443
            } else {
                80
            });
        let text = authority.as_str();
        let host = authority.host();
        let start = host.as_ptr() as usize - text.as_ptr() as usize;
        let mut hash = FnvHasher::default();
        for byte in host.bytes() {
            std::hash::Hasher::write_u8(&mut hash, byte.to_ascii_lowercase());
        }
        std::hash::Hasher::write_u16(&mut hash, port);
        Key {
            host: start..start + host.len(),
            hash: std::hash::Hasher::finish(&hash),
            scheme,
            authority,
            port,
            tls: 0,
            proxied: None,
        }
    }

    /// The key of connections that open with a PROXY protocol header naming these
    /// addresses (the client's, and the one it connected to).
    pub fn with_proxy_source(mut self, addresses: (SocketAddr, SocketAddr)) -> Key {
        let mut hash = FnvHasher::default();
        addresses.hash(&mut hash);
        self.hash ^= std::hash::Hasher::finish(&hash).rotate_left(29);
        self.proxied = Some(addresses);
        self
    }

    /// The addresses a PROXY protocol header names on its connections, if any.
    pub fn proxy_source(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.proxied
    }

    /// The key of connections opened with these TLS verification settings (a connection
    /// verified for one name and trust is never reused for another: Pingora's rule).
    pub fn with_tls(mut self, fingerprint: u64) -> Key {
        if self.scheme == http::uri::Scheme::HTTPS {
            self.tls = fingerprint;
            self.hash ^= fingerprint.rotate_left(17);
        }
        self
    }

    /// Whether connections to it speak TLS.
    pub fn is_tls(&self) -> bool {
        self.scheme == http::uri::Scheme::HTTPS
    }

    /// The scheme (`http` or `https`).
    pub fn scheme(&self) -> &str {
        self.scheme.as_str()
    }

    /// The host, as written (an IPv6 literal with its brackets).
    pub fn host(&self) -> &str {
        &self.authority.as_str()[self.host.clone()]
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.hash == other.hash
            && self.port == other.port
            && self.tls == other.tls
            && self.proxied == other.proxied
            && self.scheme == other.scheme
            && (self.host() == other.host() || self.host().eq_ignore_ascii_case(other.host()))
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// FNV-1a: a fast hash for the pool's small key maps (SipHash's resistance to chosen
/// collisions buys nothing here: the keys are configured upstreams, or hosts this proxy is
/// asked for and already connects to).
#[derive(Default)]
pub struct FnvHasher(u64);

impl std::hash::Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &byte in bytes {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

type FnvMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FnvHasher>>;

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host(), self.port)
    }
}

/// Checkout counters, readable at any time.
#[derive(Debug, Default)]
pub struct PoolStats {
    reused: AtomicU64,
    fresh: AtomicU64,
    waited: AtomicU64,
    evicted_stale: AtomicU64,
    evicted_expired: AtomicU64,
}

/// A copy of [`PoolStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolCounts {
    /// Checkouts served by an idle connection.
    pub reused: u64,
    /// Checkouts that opened a new connection.
    pub fresh: u64,
    /// Checkouts that had to wait for the per-host cap.
    pub waited: u64,
    /// Idle connections found closed by their peer (at checkout or by the reaper).
    pub evicted_stale: u64,
    /// Idle connections retired by a timer (idle timeout, lifetime, server keep-alive).
    pub evicted_expired: u64,
}

impl PoolStats {
    /// The counters now.
    pub fn counts(&self) -> PoolCounts {
        PoolCounts {
            reused: self.reused.load(Ordering::Relaxed),
            fresh: self.fresh.load(Ordering::Relaxed),
            waited: self.waited.load(Ordering::Relaxed),
            evicted_stale: self.evicted_stale.load(Ordering::Relaxed),
            evicted_expired: self.evicted_expired.load(Ordering::Relaxed),
        }
    }
}

/// A pool of connections of type `C` keyed by `K`.
pub struct Pool<K, C> {
    shared: Arc<Shared<K, C>>,
}

impl<K, C> Clone for Pool<K, C> {
    fn clone(&self) -> Self {
        Pool {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<K, C> {
    config: PoolConfig,
    stats: PoolStats,
    state: Mutex<Hosts<K, C>>,
    reaper_started: AtomicBool,
}

struct Hosts<K, C> {
    hosts: FnvMap<K, Host<C>>,
    /// Each key's learned idle timeout: kept when its connections are gone (bounded by
    /// [`MAX_LEARNERS`]).
    learners: FnvMap<K, IdleLearner>,
    /// Wakes the reaper when a connection goes idle (it must start watching it).
    reaper: Option<Waker>,
}

/// One key's connections.
struct Host<C> {
    /// Idle connections, least recently used first, most recently used last.
    idle: Vec<Idle<C>>,
    /// Connections counted against the cap: idle, checked out, or being opened.
    open: usize,
    /// Checkouts waiting for the cap, oldest first.
    waiters: VecDeque<oneshot::Sender<Grant<C>>>,
}

impl<C> Default for Host<C> {
    fn default() -> Self {
        Host {
            idle: Vec::new(),
            open: 0,
            waiters: VecDeque::new(),
        }
    }
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

/// What a waiting checkout is handed.
enum Grant<C> {
    /// A connection another request just released.
    Conn(C),
    /// A place freed under the cap: open a new connection.
    Slot,
}

/// The outcome of a checkout.
pub enum Checkout<K: Clone + Eq + Hash + Send + 'static, C: Poolable> {
    /// An idle connection, most recently used first.
    Reused(Pooled<K, C>),
    /// A counted place for a new connection: open one and [`Slot::fill`] it.
    Fresh(Slot<K, C>),
}

impl<K: Clone + Eq + Hash + Send + 'static, C: Poolable> Pool<K, C> {
    /// An empty pool.
    pub fn new(config: PoolConfig) -> Self {
        Pool {
            shared: Arc::new(Shared {
                config,
                stats: PoolStats::default(),
                state: Mutex::new(Hosts {
                    hosts: FnvMap::default(),
                    learners: FnvMap::default(),
                    reaper: None,
                }),
                reaper_started: AtomicBool::new(false),
            }),
        }
    }

    /// The pool's settings.
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// Checkout counters.
    pub fn stats(&self) -> PoolCounts {
        self.shared.stats.counts()
    }

    /// The shortest idle timeout learned of the pool's servers (they close idle
    /// connections at this age without saying so; the pool retires its own a margin
    /// before), if any.
    pub fn learned_idle_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let state = self.shared.lock();
        state.learners.values().filter_map(|l| l.learned(now)).min()
    }

    /// Idle connections for `key` now.
    pub fn idle_count(&self, key: &K) -> usize {
        self.shared
            .lock()
            .hosts
            .get(key)
            .map_or(0, |host| host.idle.len())
    }

    /// Connections counted for `key` now (idle, busy, opening).
    pub fn open_count(&self, key: &K) -> usize {
        self.shared
            .lock()
            .hosts
            .get(key)
            .map_or(0, |host| host.open)
    }

    /// A connection for `key`: the most recently used idle one that is still good, else a
    /// place to open a new one, else (at the cap) the next one freed, in arrival order.
    pub async fn checkout(&self, key: &K) -> Checkout<K, C> {
        self.checkout_preferring(key, Prefer::RecentlyUsed).await
    }

    /// [`Pool::checkout`], choosing among idle connections as `prefer` says.
    pub async fn checkout_preferring(&self, key: &K, prefer: Prefer) -> Checkout<K, C> {
        let waiting = {
            let mut state = self.shared.lock();
            let learned = learned_of(&state, key);
            let host = host_entry(&mut state, key);
            if prefer == Prefer::Warm {
                warmest_last(host);
            }
            if let Some(conn) = self.shared.take_idle(host, learned) {
                self.shared.stats.reused.fetch_add(1, Ordering::Relaxed);
                return Checkout::Reused(self.pooled(key, conn, true));
            }
            if self
                .shared
                .config
                .max_connections_per_host
                .is_none_or(|cap| host.open < cap)
            {
                host.open += 1;
                self.shared.stats.fresh.fetch_add(1, Ordering::Relaxed);
                return Checkout::Fresh(self.slot(key));
            }
            let (tx, rx) = oneshot::channel();
            host.waiters.push_back(tx);
            self.shared.stats.waited.fetch_add(1, Ordering::Relaxed);
            rx
        };
        // The sender is never dropped unanswered while the pool lives: a grant arrives.
        match waiting.await {
            Ok(Grant::Conn(conn)) => {
                self.shared.stats.reused.fetch_add(1, Ordering::Relaxed);
                Checkout::Reused(self.pooled(key, conn, true))
            }
            Ok(Grant::Slot) | Err(_) => {
                self.shared.stats.fresh.fetch_add(1, Ordering::Relaxed);
                Checkout::Fresh(self.slot(key))
            }
        }
    }

    /// A place for a new connection for `key` if the host is under its cap, without
    /// waiting and without displacing anyone (for connections opened ahead of need).
    pub fn reserve(&self, key: &K) -> Option<Slot<K, C>> {
        let mut state = self.shared.lock();
        let host = host_entry(&mut state, key);
        let cap = self.shared.config.max_connections_per_host;
        if cap.is_some_and(|cap| host.open >= cap) {
            forget_if_empty(&mut state, key);
            return None;
        }
        host.open += 1;
        self.shared.stats.fresh.fetch_add(1, Ordering::Relaxed);
        Some(self.slot(key))
    }

    /// A place for a new connection for `key`, never an idle one (a retry must not meet
    /// another reused connection); waits in the same FIFO queue at the cap.
    pub async fn checkout_fresh(&self, key: &K) -> Slot<K, C> {
        let waiting = {
            let mut state = self.shared.lock();
            let host = host_entry(&mut state, key);
            let under_cap = self
                .shared
                .config
                .max_connections_per_host
                .is_none_or(|cap| host.open < cap);
            // At the cap, an idle connection is closed to make room for the new one.
            if under_cap || !host.idle.is_empty() {
                if !under_cap {
                    host.idle.remove(0).conn.retire("displaced");
                    host.open -= 1;
                }
                host.open += 1;
                self.shared.stats.fresh.fetch_add(1, Ordering::Relaxed);
                return self.slot(key);
            }
            let (tx, rx) = oneshot::channel();
            host.waiters.push_back(tx);
            self.shared.stats.waited.fetch_add(1, Ordering::Relaxed);
            rx
        };
        match waiting.await {
            // A released connection is handed to us: close it, keep its place.
            Ok(Grant::Conn(mut conn)) => conn.retire("displaced"),
            Ok(Grant::Slot) | Err(_) => {}
        }
        self.shared.stats.fresh.fetch_add(1, Ordering::Relaxed);
        self.slot(key)
    }

    fn pooled(&self, key: &K, conn: C, reused: bool) -> Pooled<K, C> {
        Pooled {
            conn: Some(conn),
            key: key.clone(),
            pool: self.shared.clone(),
            reused,
        }
    }

    fn slot(&self, key: &K) -> Slot<K, C> {
        Slot {
            key: Some(key.clone()),
            pool: self.shared.clone(),
        }
    }
}

impl<K: Clone + Eq + Hash + Send + 'static, C: Poolable> Shared<K, C> {
    fn lock(&self) -> MutexGuard<'_, Hosts<K, C>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When an idle connection must be retired, and why: the first of its idle timeout,
    /// the server's keep-alive hint (else the idle timeout learned of the server, `learned`)
    /// and its maximum lifetime.
    fn deadline(
        &self,
        conn: &C,
        idle_since: Instant,
        learned: Option<Duration>,
    ) -> (Instant, &'static str) {
        let mut deadline = (idle_since + self.config.idle_timeout, "idle_timeout");
        if let Some(at) = conn.retire_at() {
            if at < deadline.0 {
                deadline = (at, "keepalive_hint");
            }
        } else if let Some(learned) = learned
            && idle_since + learned < deadline.0
        {
            deadline = (idle_since + learned, "learned_idle_timeout");
        }
        if let Some(max) = self.config.max_lifetime {
            let jitter = self.config.max_lifetime_jitter;
            let retire = conn.created() + jittered_lifetime(max, jitter, conn.id());
            if retire < deadline.0 {
                deadline = (retire, "max_lifetime");
            }
        }
        deadline
    }

    /// Pops the most recently used idle connection that is still good, dropping the
    /// expired and closed ones found on the way.
    fn take_idle(&self, host: &mut Host<C>, learned: Option<Duration>) -> Option<C> {
        let now = Instant::now();
        while let Some(mut idle) = host.idle.pop() {
            let (deadline, why) = self.deadline(&idle.conn, idle.since, learned);
            if deadline <= now {
                self.stats.evicted_expired.fetch_add(1, Ordering::Relaxed);
                idle.conn.retire(why);
            } else if !idle.conn.is_open() {
                self.stats.evicted_stale.fetch_add(1, Ordering::Relaxed);
                idle.conn.retire("peer_closed");
            } else {
                return Some(idle.conn);
            }
            host.open -= 1;
        }
        None
    }

    /// Takes back a released connection: to the oldest waiter, else idle in the most
    /// recently used position; or closes it if it must not be reused.
    fn release(self: &Arc<Self>, key: &K, mut conn: C) {
        let now = Instant::now();
        let mut state = self.lock();
        let learned = learned_of(&state, key);
        let (deadline, expiry) = self.deadline(&conn, now, learned);
        let keep = if !conn.is_reusable() {
            false
        } else if self
            .config
            .max_requests_per_connection
            .is_some_and(|max| conn.requests() >= max)
        {
            conn.retire("max_requests");
            false
        } else if deadline <= now {
            conn.retire(expiry);
            false
        } else {
            true
        };
        let Some(host) = state.hosts.get_mut(key) else {
            return;
        };
        if !keep {
            host.open -= 1;
            grant_slot(host);
            forget_if_empty(&mut state, key);
            return;
        }
        while let Some(waiter) = host.waiters.pop_front() {
            match waiter.send(Grant::Conn(conn)) {
                Ok(()) => return,
                Err(Grant::Conn(back)) => conn = back,
                Err(Grant::Slot) => unreachable!("a connection was sent"),
            }
        }
        host.idle.push(Idle { conn, since: now });
        if host.idle.len() > self.config.max_idle_per_host {
            host.idle.remove(0).conn.retire("pool_full");
            host.open -= 1;
        }
        if let Some(reaper) = &state.reaper {
            reaper.wake_by_ref();
        }
        drop(state);
        self.start_reaper();
    }

    /// A counted connection is gone (closed, detached, or never opened): its place goes
    /// to the oldest waiter.
    fn free_place(&self, key: &K) {
        let mut state = self.lock();
        if let Some(host) = state.hosts.get_mut(key) {
            host.open -= 1;
            grant_slot(host);
            forget_if_empty(&mut state, key);
        }
    }

    /// Starts the task that evicts idle connections in the background, once, if there is
    /// a runtime to run it on.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(reap(Arc::downgrade(self)));
            }
            Err(_) => self.reaper_started.store(false, Ordering::Release),
        }
    }

    /// Evicts idle connections that expired or whose peer closed; registers the reaper on
    /// every remaining one and returns the next deadline.
    fn sweep(&self, cx: &mut Context<'_>) -> Option<Instant> {
        let now = Instant::now();
        let mut state = self.lock();
        state.reaper = Some(cx.waker().clone());
        let mut next: Option<Instant> = None;
        let mut empty = Vec::new();
        let Hosts {
            hosts, learners, ..
        } = &mut *state;
        for (key, host) in hosts.iter_mut() {
            let before = host.idle.len();
            let learned = learners.get(key).and_then(|l| l.retire_after(now));
            let mut closed_at = Vec::new();
            host.idle.retain_mut(|idle| {
                let (deadline, why) = self.deadline(&idle.conn, idle.since, learned);
                if deadline <= now {
                    self.stats.evicted_expired.fetch_add(1, Ordering::Relaxed);
                    idle.conn.retire(why);
                    return false;
                }
                if idle.conn.poll_closed(cx).is_ready() {
                    self.stats.evicted_stale.fetch_add(1, Ordering::Relaxed);
                    // Seen as it happens: the age at which the server closes idle
                    // connections, unless it said when it would.
                    if idle.conn.retire_at().is_none() {
                        closed_at.push(now.saturating_duration_since(idle.since));
                    }
                    idle.conn.retire("peer_closed");
                    return false;
                }
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
                true
            });
            for _ in host.idle.len()..before {
                host.open -= 1;
                grant_slot(host);
            }
            if !closed_at.is_empty() {
                if learners.len() >= MAX_LEARNERS && !learners.contains_key(key) {
                    learners.clear();
                }
                let learner = learners.entry(key.clone()).or_default();
                closed_at
                    .into_iter()
                    .for_each(|age| learner.observe(age, now));
            }
            if host.open == 0 && host.waiters.is_empty() {
                empty.push(key.clone());
            }
        }
        for key in empty {
            state.hosts.remove(&key);
        }
        next
    }
}

impl<K, C> Drop for Shared<K, C> {
    fn drop(&mut self) {
        // Let the reaper see the pool is gone now rather than at its next deadline.
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(reaper) = state.reaper.take() {
            reaper.wake();
        }
    }
}

/// Idle connections looked at for warmth, the most recently used first: a warm window is a
/// recent one, and each look is a `TCP_INFO` call.
const WARMTH_CANDIDATES: usize = 16;

/// Moves the idle connection whose window is warmest (if any is, among the most recently
/// used) to the most recently used position, where a checkout takes from.
fn warmest_last<C: Poolable>(host: &mut Host<C>) {
    let now = Instant::now();
    let first = host.idle.len().saturating_sub(WARMTH_CANDIDATES);
    let candidates: Vec<Option<Warmth>> = (host.idle[first..].iter())
        .map(|idle| {
            let info = idle.conn.tcp_info()?;
            Some(Warmth {
                received: info.bytes_received,
                idle: now.saturating_duration_since(idle.since),
                rto: Duration::from_micros(u64::from(info.rto_us)),
            })
        })
        .collect();
    if let Some(warmest) = warmth::warmest(&candidates) {
        let conn = host.idle.remove(first + warmest);
        host.idle.push(conn);
    }
}

/// Keys whose learned idle timeout is kept at most (a forward proxy sees many hosts);
/// beyond it, what was learned is forgotten and learned again.
const MAX_LEARNERS: usize = 4096;

/// How long a connection to `key` may stay idle, as learned of its server.
fn learned_of<K: Eq + Hash, C>(state: &Hosts<K, C>, key: &K) -> Option<Duration> {
    let learner = state.learners.get(key)?;
    learner.retire_after(Instant::now())
}

/// The entry for `key`, created if missing (without cloning the key when it exists).
fn host_entry<'a, K: Clone + Eq + Hash, C>(state: &'a mut Hosts<K, C>, key: &K) -> &'a mut Host<C> {
    if !state.hosts.contains_key(key) {
        state.hosts.insert(key.clone(), Host::default());
    }
    state.hosts.get_mut(key).expect("just inserted")
}

/// Gives a free place under the cap to the oldest checkout still waiting.
fn grant_slot<C>(host: &mut Host<C>) {
    while let Some(waiter) = host.waiters.pop_front() {
        host.open += 1;
        if waiter.send(Grant::Slot).is_ok() {
            return;
        }
        host.open -= 1;
    }
}

/// Drops a key with nothing left (a forward proxy sees many hosts once).
fn forget_if_empty<K: Eq + Hash, C>(state: &mut Hosts<K, C>, key: &K) {
    if state
        .hosts
        .get(key)
        .is_some_and(|host| host.open == 0 && host.waiters.is_empty())
    {
        state.hosts.remove(key);
    }
}

/// The reaper: sleeps until the next idle deadline or until an idle connection's peer
/// closes, and sweeps. Ends when the pool is gone.
async fn reap<K: Clone + Eq + Hash + Send + 'static, C: Poolable>(pool: Weak<Shared<K, C>>) {
    let mut timer = std::pin::pin!(tokio::time::sleep(Duration::from_secs(3600)));
    poll_fn(|cx| {
        loop {
            let Some(shared) = pool.upgrade() else {
                return Poll::Ready(());
            };
            let next = shared.sweep(cx);
            drop(shared);
            timer
                .as_mut()
                .reset(next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)));
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    })
    .await
}

/// A counted place for a connection being opened. Dropping it (a failed connect) frees
/// the place for the next waiter.
pub struct Slot<K: Clone + Eq + Hash + Send + 'static, C: Poolable> {
    key: Option<K>,
    pool: Arc<Shared<K, C>>,
}

impl<K: Clone + Eq + Hash + Send + 'static, C: Poolable> Slot<K, C> {
    /// The connection is open: it becomes a checked-out pooled connection.
    pub fn fill(mut self, conn: C) -> Pooled<K, C> {
        let key = self.key.take().expect("a slot is filled once");
        Pooled {
            conn: Some(conn),
            key,
            pool: self.pool.clone(),
            reused: false,
        }
    }
}

impl<K: Clone + Eq + Hash + Send + 'static, C: Poolable> Drop for Slot<K, C> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.pool.free_place(&key);
        }
    }
}

/// A checked-out connection. [`Pooled::release`] returns it; dropping it closes it (its
/// place under the cap goes to the next waiter).
pub struct Pooled<K: Clone + Eq + Hash + Send + 'static, C: Poolable> {
    conn: Option<C>,
    key: K,
    pool: Arc<Shared<K, C>>,
    reused: bool,
}

impl<K: Clone + Eq + Hash + Send + 'static, C: Poolable> Pooled<K, C> {
    /// Whether the connection served an earlier request (as opposed to newly opened).
    pub fn is_reused(&self) -> bool {
        self.reused
    }

    /// Returns the connection to the pool (it is kept only if it may be reused).
    pub fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.release(&self.key, conn);
        }
    }

    /// Takes the connection out of the pool for good (its place is freed).
    pub fn detach(mut self) -> C {
        let conn = self.conn.take().expect("present until released");
        self.pool.free_place(&self.key);
        conn
    }
}

impl<K: Clone + Eq + Hash + Send + 'static, C: Poolable> Deref for Pooled<K, C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.conn.as_ref().expect("present until released")
    }
}

impl<K: Clone + Eq + Hash + Send + 'static, C: Poolable> DerefMut for Pooled<K, C> {
    fn deref_mut(&mut self) -> &mut C {
        self.conn.as_mut().expect("present until released")
    }
}

impl<K: Clone + Eq + Hash + Send + 'static, C: Poolable> Drop for Pooled<K, C> {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            self.pool.free_place(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A toy connection: an id, and a flag its "peer" flips to close it.
    struct Toy {
        id: usize,
        peer: Arc<ToyPeer>,
        created: Instant,
        requests: u64,
        retire_at: Option<Instant>,
        reusable: bool,
    }

    #[derive(Default)]
    struct ToyPeer {
        closed: AtomicBool,
        waker: Mutex<Option<Waker>>,
    }

    impl ToyPeer {
        fn close(&self) {
            self.closed.store(true, Ordering::SeqCst);
            if let Some(waker) = self.waker.lock().unwrap().take() {
                waker.wake();
            }
        }
    }

    static NEXT: AtomicUsize = AtomicUsize::new(1);

    fn toy() -> (Toy, Arc<ToyPeer>) {
        let peer = Arc::new(ToyPeer::default());
        let toy = Toy {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            peer: peer.clone(),
            created: Instant::now(),
            requests: 1,
            retire_at: None,
            reusable: true,
        };
        (toy, peer)
    }

    impl Poolable for Toy {
        fn is_reusable(&self) -> bool {
            self.reusable
        }
        fn is_open(&mut self) -> bool {
            !self.peer.closed.load(Ordering::SeqCst)
        }
        fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
            *self.peer.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.peer.closed.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
        fn retire_at(&self) -> Option<Instant> {
            self.retire_at
        }
        fn created(&self) -> Instant {
            self.created
        }
        fn id(&self) -> u64 {
            self.id as u64
        }
        fn requests(&self) -> u64 {
            self.requests
        }
    }

    type ToyPool = Pool<&'static str, Toy>;

    /// Checks out, opening a toy connection if the pool has none; returns it and whether
    /// it was reused.
    async fn get(pool: &ToyPool, key: &'static str) -> Pooled<&'static str, Toy> {
        match pool.checkout(&key).await {
            Checkout::Reused(conn) => conn,
            Checkout::Fresh(slot) => slot.fill(toy().0),
        }
    }

    fn fresh_id(checkout: Checkout<&'static str, Toy>) -> Option<Slot<&'static str, Toy>> {
        match checkout {
            Checkout::Fresh(slot) => Some(slot),
            Checkout::Reused(_) => None,
        }
    }

    #[tokio::test]
    async fn most_recently_used_first() {
        let pool = ToyPool::new(PoolConfig::default());
        let a = get(&pool, "h").await;
        let b = get(&pool, "h").await;
        let (a_id, b_id) = (a.id, b.id);
        a.release();
        b.release();
        let first = get(&pool, "h").await;
        assert!(first.is_reused());
        assert_eq!(first.id, b_id, "the most recently used goes out first");
        let second = get(&pool, "h").await;
        assert_eq!(second.id, a_id);
        assert!(!get(&pool, "h").await.is_reused());
        assert_eq!(pool.stats().reused, 2);
        assert_eq!(pool.stats().fresh, 3);
    }

    #[tokio::test]
    async fn keys_do_not_share() {
        let pool = ToyPool::new(PoolConfig::default());
        get(&pool, "a").await.release();
        assert!(!get(&pool, "b").await.is_reused());
        assert!(get(&pool, "a").await.is_reused());
    }

    #[tokio::test]
    async fn the_cap_makes_checkouts_wait_in_arrival_order() {
        let pool = ToyPool::new(PoolConfig {
            max_connections_per_host: Some(2),
            ..PoolConfig::default()
        });
        let a = get(&pool, "h").await;
        let b = get(&pool, "h").await;
        assert_eq!(pool.open_count(&"h"), 2);
        // Three more checkouts queue up, in order.
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for n in 0..3 {
            let pool = pool.clone();
            let order = order.clone();
            waiting.push(tokio::spawn(async move {
                let conn = get(&pool, "h").await;
                order.lock().unwrap().push(n);
                conn
            }));
            tokio::task::yield_now().await;
        }
        assert!(
            order.lock().unwrap().is_empty(),
            "nobody is served over the cap"
        );
        // A release goes to the oldest waiter; a close frees a place for the next.
        let a_id = a.id;
        a.release();
        let first = waiting.remove(0).await.unwrap();
        assert_eq!(first.id, a_id);
        drop(b);
        let second = waiting.remove(0).await.unwrap();
        assert!(!second.is_reused(), "a freed place opens a new connection");
        first.release();
        let third = waiting.remove(0).await.unwrap();
        assert_eq!(third.id, a_id);
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
        assert_eq!(pool.open_count(&"h"), 2);
        assert_eq!(pool.stats().waited, 3);
    }

    #[tokio::test]
    async fn a_failed_connect_frees_its_place() {
        let pool = ToyPool::new(PoolConfig {
            max_connections_per_host: Some(1),
            ..PoolConfig::default()
        });
        let slot = fresh_id(pool.checkout(&"h").await).expect("fresh");
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { get(&pool, "h").await.id })
        };
        tokio::task::yield_now().await;
        drop(slot); // the connect failed
        waiter.await.unwrap();
        assert_eq!(pool.open_count(&"h"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_expire() {
        let pool = ToyPool::new(PoolConfig {
            idle_timeout: Duration::from_secs(10),
            ..PoolConfig::default()
        });
        get(&pool, "h").await.release();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let kept = get(&pool, "h").await;
        assert!(kept.is_reused());
        kept.release();
        tokio::time::sleep(Duration::from_secs(11)).await;
        // The reaper retired it at its deadline, without a checkout.
        assert_eq!(pool.idle_count(&"h"), 0);
        assert_eq!(pool.open_count(&"h"), 0);
        assert!(!get(&pool, "h").await.is_reused());
        assert_eq!(pool.stats().evicted_expired, 1);
    }

    /// A connection whose "server" closes it `after` it goes idle.
    async fn released_closing_after(pool: &ToyPool, after: Duration) -> Arc<ToyPeer> {
        let conn = get(pool, "h").await;
        let peer = conn.peer.clone();
        conn.release();
        let closer = peer.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            closer.close();
        });
        peer
    }

    #[tokio::test(start_paused = true)]
    async fn a_servers_unadvertised_idle_timeout_is_learned_and_kept_clear_of() {
        let pool = ToyPool::new(PoolConfig::default());
        let origin_timeout = Duration::from_secs(2);
        for seen in 0..3 {
            assert_eq!(pool.learned_idle_timeout(), None, "after {seen}");
            released_closing_after(&pool, origin_timeout).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            // The reaper saw the close as it happened and evicted the connection.
            assert_eq!(pool.idle_count(&"h"), 0);
        }
        assert_eq!(pool.stats().evicted_stale, 3);
        let learned = pool.learned_idle_timeout().expect("learned");
        assert!(learned >= origin_timeout && learned < origin_timeout + Duration::from_millis(50));
        // Now a connection is retired before the server closes it: at 1.9 s of idle it is
        // gone although the server has not closed it yet, and a checkout opens a new one.
        let peer = released_closing_after(&pool, origin_timeout).await;
        tokio::time::sleep(Duration::from_millis(1900)).await;
        assert!(!peer.closed.load(Ordering::SeqCst));
        assert_eq!(pool.idle_count(&"h"), 0);
        assert_eq!(pool.stats().evicted_expired, 1);
        assert!(!get(&pool, "h").await.is_reused());
        // Shorter gaps still reuse.
        let mut conn = get(&pool, "h").await;
        conn.requests += 1;
        conn.release();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(get(&pool, "h").await.is_reused());
    }

    #[tokio::test(start_paused = true)]
    async fn a_servers_keep_alive_hint_retires_early() {
        let pool = ToyPool::new(PoolConfig::default());
        let mut conn = get(&pool, "h").await;
        conn.retire_at = Some(Instant::now() + Duration::from_millis(750));
        conn.release();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let conn = get(&pool, "h").await;
        assert!(conn.is_reused());
        conn.release();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!get(&pool, "h").await.is_reused());
    }

    #[tokio::test(start_paused = true)]
    async fn lifetime_and_request_limits() {
        let pool = ToyPool::new(PoolConfig {
            max_lifetime: Some(Duration::from_secs(30)),
            max_requests_per_connection: Some(3),
            ..PoolConfig::default()
        });
        let mut conn = get(&pool, "h").await;
        conn.requests = 3;
        conn.release();
        assert_eq!(pool.idle_count(&"h"), 0, "used up: not kept");
        get(&pool, "h").await.release();
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert!(!get(&pool, "h").await.is_reused(), "too old to reuse");
    }

    #[tokio::test(start_paused = true)]
    async fn lifetimes_jitter_so_connections_opened_together_retire_apart() {
        let pool = ToyPool::new(PoolConfig {
            max_lifetime: Some(Duration::from_secs(10)),
            max_lifetime_jitter: Duration::from_secs(8),
            idle_timeout: Duration::from_secs(600),
            max_idle_per_host: 100,
            ..PoolConfig::default()
        });
        let opened: Vec<_> = futures_join(&pool, 30).await;
        for conn in opened {
            conn.release();
        }
        assert_eq!(pool.idle_count(&"h"), 30);
        let mut left = Vec::new();
        for second in 1..=11 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            left.push((second, pool.idle_count(&"h")));
        }
        assert_eq!(left.last().unwrap().1, 0, "all retired by 10 s: {left:?}");
        assert_eq!(left[0].1, 30, "none before 2 s: {left:?}");
        let steps = left.windows(2).filter(|w| w[0].1 != w[1].1).count();
        assert!(steps >= 4, "retired over the window, not at once: {left:?}");
    }

    /// `n` connections opened at the same moment (none is released in between), all
    /// checked out.
    async fn futures_join(pool: &ToyPool, n: usize) -> Vec<Pooled<&'static str, Toy>> {
        let mut conns = Vec::new();
        for _ in 0..n {
            conns.push(get(pool, "h").await);
        }
        conns
    }

    #[tokio::test]
    async fn unreusable_connections_are_not_kept() {
        let pool = ToyPool::new(PoolConfig::default());
        let mut conn = get(&pool, "h").await;
        conn.reusable = false;
        conn.release();
        assert_eq!(pool.idle_count(&"h"), 0);
        assert_eq!(pool.open_count(&"h"), 0);
    }

    #[tokio::test]
    async fn stale_connections_are_found_at_checkout() {
        let pool = ToyPool::new(PoolConfig::default());
        let conn = get(&pool, "h").await;
        let peer = conn.peer.clone();
        conn.release();
        peer.closed.store(true, Ordering::SeqCst); // closed without waking anyone
        assert!(!get(&pool, "h").await.is_reused());
        assert_eq!(pool.stats().evicted_stale, 1);
    }

    #[tokio::test]
    async fn the_reaper_evicts_a_closed_idle_connection_without_a_checkout() {
        let pool = ToyPool::new(PoolConfig::default());
        let conn = get(&pool, "h").await;
        let peer = conn.peer.clone();
        conn.release();
        tokio::task::yield_now().await; // the reaper starts watching
        assert_eq!(pool.idle_count(&"h"), 1);
        peer.close();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.idle_count(&"h"), 0);
        assert_eq!(pool.open_count(&"h"), 0);
        assert_eq!(pool.stats().evicted_stale, 1);
    }

    #[tokio::test]
    async fn idle_connections_beyond_the_limit_close_least_recently_used_first() {
        let pool = ToyPool::new(PoolConfig {
            max_idle_per_host: 2,
            ..PoolConfig::default()
        });
        let conns = [
            get(&pool, "h").await,
            get(&pool, "h").await,
            get(&pool, "h").await,
        ];
        let ids: Vec<usize> = conns.iter().map(|c| c.id).collect();
        for conn in conns {
            conn.release();
        }
        assert_eq!(pool.idle_count(&"h"), 2);
        assert_eq!(get(&pool, "h").await.id, ids[2]);
        assert_eq!(get(&pool, "h").await.id, ids[1]);
        assert!(!get(&pool, "h").await.is_reused(), "the oldest was closed");
    }

    #[test]
    fn keys_from_uris() {
        let key = Key::from_uri(&"http://Example.COM/x".parse().unwrap()).unwrap();
        assert_eq!(key, Key::new("http", "example.com", 80));
        assert_eq!(key.host(), "Example.COM", "the host as written");
        let hash = |key: &Key| {
            use std::hash::{BuildHasher, BuildHasherDefault};
            BuildHasherDefault::<FnvHasher>::default().hash_one(key)
        };
        assert_eq!(hash(&key), hash(&Key::new("HTTP", "EXAMPLE.com", 80)));
        assert_ne!(key, Key::new("http", "example.com", 81));
        assert_eq!(Key::new("http", "::1", 80).host(), "[::1]");
        let key = Key::from_uri(&"http://a:8080".parse().unwrap()).unwrap();
        assert_eq!(key.port(), 8080);
        assert!(Key::from_uri(&"/relative".parse().unwrap()).is_none());
    }

    #[test]
    fn tls_keys_include_the_verification_settings() {
        let https = Key::from_uri(&"https://example.com/".parse().unwrap()).unwrap();
        assert_eq!(https.port(), 443);
        assert!(https.is_tls());
        assert_ne!(
            https,
            Key::new("http", "example.com", 443),
            "the scheme counts"
        );
        let (one, two) = (https.clone().with_tls(1), https.clone().with_tls(2));
        assert_ne!(one, two, "verified with other settings: another pool");
        assert_eq!(one, https.clone().with_tls(1));
        let plain = Key::new("http", "example.com", 80);
        assert_eq!(
            plain.clone().with_tls(7),
            plain,
            "plain HTTP has no TLS settings"
        );
    }
}

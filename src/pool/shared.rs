//! Shared connections (HTTP/2): one connection carries many requests at once, so a
//! checkout lends a handle rather than the connection. Keyed like the exclusive pool.
//!
//! Owns which shared connection a request gets: the open one with the fewest requests in
//! flight among those with a free stream; while the first connection to a key is still
//! negotiating, every other request waits for it instead of opening its own (one TCP and
//! TLS handshake, not one per request); when every connection is at the server's stream
//! limit, either a new connection (up to the per-host cap) or a place in the queue of the
//! least loaded one ([`WhenBusy`]). It must not speak HTTP: a connection answers for
//! itself through [`Shareable`].

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// What the shared pool needs to know about a connection; clones are handles to the same
/// connection.
pub trait Shareable: Clone + Send + 'static {
    /// Whether it can still start requests (not closed, not told to go away).
    fn is_open(&self) -> bool;
    /// Requests in flight on it now.
    fn in_flight(&self) -> usize;
    /// Whether a request would start at once (below the server's stream limit).
    fn has_capacity(&self) -> bool;
}

/// What to do when every connection to a host is at the server's stream limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenBusy {
    /// Open another connection, up to the per-host cap; beyond it, queue.
    Open,
    /// Queue on the least loaded connection until one of its streams ends.
    Queue,
}

/// Shared-pool settings, each with its default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedConfig {
    /// Connections per host. Default 4.
    pub max_per_host: usize,
    /// At the stream limit: open another connection or queue. Default [`WhenBusy::Open`].
    pub when_busy: WhenBusy,
    /// A connection with nothing in flight for this long is let go at the next checkout.
    /// Default 90 s.
    pub idle_timeout: Duration,
}

impl Default for SharedConfig {
    fn default() -> Self {
        SharedConfig {
            max_per_host: 4,
            when_busy: WhenBusy::Open,
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// The shared pool's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SharedCounts {
    /// Checkouts that got a connection already open.
    pub shared: u64,
    /// Checkouts that opened a connection.
    pub opened: u64,
    /// Checkouts that waited for another's connection to finish negotiating.
    pub waited: u64,
}

/// Shared connections by key.
pub struct SharedPool<K, C> {
    hosts: Mutex<HashMap<K, Host<C>>>,
    config: SharedConfig,
    shared: AtomicU64,
    opened: AtomicU64,
    waited: AtomicU64,
}

struct Host<C> {
    conns: Vec<Entry<C>>,
    /// A connection is being opened; woken when it is in (or failed).
    connecting: Option<Arc<Notify>>,
}

struct Entry<C> {
    conn: C,
    /// When it last had nothing in flight at a checkout (for the idle timeout).
    seen_idle: Option<Instant>,
}

impl<C> Default for Host<C> {
    fn default() -> Self {
        Host {
            conns: Vec::new(),
            connecting: None,
        }
    }
}

/// What a checkout gets.
pub enum SharedCheckout<'a, K: Hash + Eq + Clone, C: Shareable> {
    /// A handle to an open connection (`reused`: it carried requests before).
    Ready(C),
    /// Nothing usable: open a connection and [`Connecting::fill`] it in. Others asking
    /// for the key meanwhile wait for it.
    Connect(Connecting<'a, K, C>),
}

/// The right to open a key's next connection. Dropped without a fill (the connect
/// failed), it lets the next waiter try.
pub struct Connecting<'a, K: Hash + Eq + Clone, C: Shareable> {
    pool: &'a SharedPool<K, C>,
    key: K,
    filled: bool,
}

impl<K: Hash + Eq + Clone, C: Shareable> SharedPool<K, C> {
    /// An empty pool.
    pub fn new(config: SharedConfig) -> Self {
        SharedPool {
            hosts: Mutex::new(HashMap::new()),
            config,
            shared: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            waited: AtomicU64::new(0),
        }
    }

    /// Counters.
    pub fn counts(&self) -> SharedCounts {
        SharedCounts {
            shared: self.shared.load(Ordering::Relaxed),
            opened: self.opened.load(Ordering::Relaxed),
            waited: self.waited.load(Ordering::Relaxed),
        }
    }

    /// Open connections to `key`.
    pub fn open_count(&self, key: &K) -> usize {
        self.lock().get(key).map_or(0, |host| host.conns.len())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Host<C>>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection for one request to `key`; see [`SharedCheckout`].
    pub async fn checkout(&self, key: &K) -> SharedCheckout<'_, K, C> {
        let mut waited = false;
        loop {
            let notify;
            let negotiated;
            {
                let mut hosts = self.lock();
                let host = hosts.entry(key.clone()).or_default();
                match self.choose(host) {
                    Choice::Use(conn) => {
                        self.shared.fetch_add(1, Ordering::Relaxed);
                        return SharedCheckout::Ready(conn);
                    }
                    Choice::Open => {
                        host.connecting = Some(Arc::new(Notify::new()));
                        self.opened.fetch_add(1, Ordering::Relaxed);
                        return SharedCheckout::Connect(Connecting {
                            pool: self,
                            key: key.clone(),
                            filled: false,
                        });
                    }
                    Choice::Wait(on) => notify = on,
                }
                // Made under the lock: it hears a notification sent from now on.
                negotiated = notify.notified();
            }
            if !waited {
                waited = true;
                self.waited.fetch_add(1, Ordering::Relaxed);
            }
            negotiated.await;
        }
    }

    /// The rule, in order: (1) forget closed connections and ones idle past the timeout;
    /// (2) the least loaded connection with a free stream; (3) while one is negotiating,
    /// wait for it; (4) none open, or all busy and [`WhenBusy::Open`] under the cap: open
    /// one; (5) otherwise queue on the least loaded.
    fn choose(&self, host: &mut Host<C>) -> Choice<C> {
        let now = Instant::now();
        let idle_timeout = self.config.idle_timeout;
        host.conns.retain_mut(|entry| {
            if entry.conn.in_flight() > 0 {
                entry.seen_idle = None;
            }
            let idle_since = *entry.seen_idle.get_or_insert(now);
            entry.conn.is_open() && (entry.conn.in_flight() > 0 || now - idle_since < idle_timeout)
        });
        let least_loaded = |free_only: bool| {
            host.conns
                .iter()
                .filter(|e| !free_only || e.conn.has_capacity())
                .min_by_key(|e| e.conn.in_flight())
                .map(|e| e.conn.clone())
        };
        if let Some(conn) = least_loaded(true) {
            return Choice::Use(conn);
        }
        if let Some(notify) = &host.connecting {
            return Choice::Wait(notify.clone());
        }
        let under_cap = host.conns.len() < self.config.max_per_host;
        if host.conns.is_empty() || (self.config.when_busy == WhenBusy::Open && under_cap) {
            return Choice::Open;
        }
        match least_loaded(false) {
            Some(conn) => Choice::Use(conn),
            None => Choice::Open,
        }
    }
}

enum Choice<C> {
    Use(C),
    Open,
    Wait(Arc<Notify>),
}

impl<K: Hash + Eq + Clone, C: Shareable> Connecting<'_, K, C> {
    /// Adds the new connection to the pool (waiters share it) and returns a handle.
    pub fn fill(mut self, conn: C) -> C {
        self.filled = true;
        let mut hosts = self.pool.lock();
        let host = hosts.entry(self.key.clone()).or_default();
        host.conns.push(Entry {
            conn: conn.clone(),
            seen_idle: None,
        });
        if let Some(notify) = host.connecting.take() {
            notify.notify_waiters();
        }
        conn
    }
}

impl<K: Hash + Eq + Clone, C: Shareable> Drop for Connecting<'_, K, C> {
    fn drop(&mut self) {
        if self.filled {
            return;
        }
        let mut hosts = self.pool.lock();
        if let Some(notify) = hosts.get_mut(&self.key).and_then(|h| h.connecting.take()) {
            notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A connection whose load and limit the test sets.
    #[derive(Clone)]
    struct Fake {
        id: u32,
        load: Arc<AtomicUsize>,
        limit: usize,
    }

    impl Fake {
        fn new(id: u32, limit: usize) -> Self {
            Fake {
                id,
                load: Arc::new(AtomicUsize::new(0)),
                limit,
            }
        }
    }

    impl Shareable for Fake {
        fn is_open(&self) -> bool {
            true
        }
        fn in_flight(&self) -> usize {
            self.load.load(Ordering::Relaxed)
        }
        fn has_capacity(&self) -> bool {
            self.in_flight() < self.limit
        }
    }

    fn pool(when_busy: WhenBusy) -> SharedPool<&'static str, Fake> {
        SharedPool::new(SharedConfig {
            max_per_host: 2,
            when_busy,
            ..SharedConfig::default()
        })
    }

    async fn ready(pool: &SharedPool<&'static str, Fake>) -> Option<u32> {
        match pool.checkout(&"a").await {
            SharedCheckout::Ready(conn) => Some(conn.id),
            SharedCheckout::Connect(_) => None,
        }
    }

    #[tokio::test]
    async fn requests_share_one_connection_up_to_its_stream_limit_then_open_another() {
        let pool = pool(WhenBusy::Open);
        let SharedCheckout::Connect(slot) = pool.checkout(&"a").await else {
            panic!("an empty pool opens a connection");
        };
        let first = slot.fill(Fake::new(1, 2));
        assert_eq!(ready(&pool).await, Some(1));
        first.load.store(2, Ordering::Relaxed);
        // At its limit: a second connection (under the cap of 2)...
        let SharedCheckout::Connect(slot) = pool.checkout(&"a").await else {
            panic!("a busy connection makes room for another");
        };
        let second = slot.fill(Fake::new(2, 2));
        assert_eq!(ready(&pool).await, Some(2));
        // ...and at the cap, a queue on the least loaded one.
        second.load.store(2, Ordering::Relaxed);
        first.load.store(1, Ordering::Relaxed);
        assert_eq!(ready(&pool).await, Some(1));
        first.load.store(2, Ordering::Relaxed);
        second.load.store(2, Ordering::Relaxed);
        assert!(
            ready(&pool).await.is_some(),
            "queued, not a third connection"
        );
        assert_eq!(pool.open_count(&"a"), 2);
    }

    #[tokio::test]
    async fn the_queue_policy_never_opens_a_second_connection() {
        let pool = pool(WhenBusy::Queue);
        let SharedCheckout::Connect(slot) = pool.checkout(&"a").await else {
            panic!("an empty pool opens a connection");
        };
        let first = slot.fill(Fake::new(1, 1));
        first.load.store(1, Ordering::Relaxed);
        assert_eq!(ready(&pool).await, Some(1));
        assert_eq!(pool.open_count(&"a"), 1);
    }

    #[tokio::test]
    async fn while_one_connection_negotiates_the_others_wait_for_it() {
        let pool = Arc::new(pool(WhenBusy::Open));
        let SharedCheckout::Connect(slot) = pool.checkout(&"a").await else {
            panic!("an empty pool opens a connection");
        };
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { ready(&pool).await })
            })
            .collect();
        tokio::task::yield_now().await;
        slot.fill(Fake::new(7, 100));
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), Some(7));
        }
        assert_eq!(pool.counts().opened, 1);
        assert_eq!(pool.counts().waited, 5);
    }

    #[tokio::test]
    async fn a_failed_connect_lets_the_next_waiter_try() {
        let pool = Arc::new(pool(WhenBusy::Open));
        let SharedCheckout::Connect(slot) = pool.checkout(&"a").await else {
            panic!("an empty pool opens a connection");
        };
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { ready(&pool).await })
        };
        tokio::task::yield_now().await;
        drop(slot);
        assert_eq!(waiter.await.unwrap(), None, "the waiter gets to connect");
    }
}

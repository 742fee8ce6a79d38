//! What a listener tells its connections while they run: that a graceful shutdown (a
//! drain) has started, and how long an idle connection may stay idle now that connections
//! are plentiful (the idle timeout under pressure).
//!
//! Owns the drain flag with its start and grace window, the pressure timeout, and the wakers
//! of connections waiting idle. A connection registers its waker once (not per request) and
//! checks an atomic on every request, so the signals cost nothing on the hot path. It must
//! not close sockets itself: each connection decides how to finish (busy ones finish the
//! request with `Connection: close`; idle ones close at their own moment within the grace
//! window, unless a request arrives first, which is then answered with `Connection: close`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use crate::conn::lifetime::share_of;

/// `idle_timeout_ms` when no pressure shortens the idle timeout.
const NO_PRESSURE: u64 = u64::MAX;

#[derive(Debug)]
struct Inner {
    started: AtomicBool,
    /// When the drain started.
    started_at: OnceLock<Instant>,
    /// Idle connections close within this long of the drain's start, each at its own moment.
    grace: Duration,
    /// The idle timeout pressure allows, in milliseconds ([`NO_PRESSURE`]: none).
    idle_timeout_ms: AtomicU64,
    /// Counts the signals that change idle connections' deadlines (the drain, a shorter
    /// pressure timeout): a connection recomputes its deadline only when it moved.
    signals: AtomicU64,
    /// Wakers of connections that have waited idle at least once, by slot.
    waiters: Mutex<Waiters>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            started: AtomicBool::new(false),
            started_at: OnceLock::new(),
            grace: Duration::ZERO,
            idle_timeout_ms: AtomicU64::new(NO_PRESSURE),
            signals: AtomicU64::new(0),
            waiters: Mutex::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

/// The trigger side: starts a graceful shutdown of every connection that listens.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl Shutdown {
    /// A signal that has not fired; when it fires, idle connections close at once.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// A signal that has not fired; when it fires, idle connections close within `grace`,
    /// each at its own moment (a request that was already on its way is answered).
    pub fn with_grace(grace: Duration) -> Self {
        Shutdown {
            inner: Arc::new(Inner {
                grace,
                ..Inner::default()
            }),
        }
    }

    /// Fires the signal: idle connections wake and close within the grace window, busy
    /// ones close after their current response.
    pub fn trigger(&self) {
        let _ = self.inner.started_at.set(Instant::now());
        self.inner.started.store(true, Ordering::Release);
        self.inner.signals.fetch_add(1, Ordering::AcqRel);
        let wakers: Vec<Waker> = {
            let mut waiters = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
            waiters.slots.iter_mut().filter_map(Option::take).collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Sets the idle timeout that pressure allows (`None`: no pressure, each connection's
    /// own keep-alive timeout applies). When it shrinks, idle connections wake to apply it;
    /// when it grows, they apply it when their timer fires.
    pub fn set_idle_timeout(&self, timeout: Option<Duration>) {
        let ms = timeout.map_or(NO_PRESSURE, |t| {
            t.as_millis().min(u64::MAX as u128 - 1) as u64
        });
        let before = self.inner.idle_timeout_ms.swap(ms, Ordering::AcqRel);
        if ms == before {
            return;
        }
        // A connection whose timer fires sees the count moved and takes the new timeout (a
        // longer one: it waits on).
        self.inner.signals.fetch_add(1, Ordering::AcqRel);
        if ms > before {
            return;
        }
        // Cloned, not taken: the connections keep their registrations.
        let wakers: Vec<Waker> = {
            let waiters = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
            waiters.slots.iter().flatten().cloned().collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// The idle timeout pressure allows now (`None`: no pressure).
    pub fn idle_timeout(&self) -> Option<Duration> {
        idle_timeout_of(&self.inner)
    }

    /// When an idle connection keyed `key` closes in the drain (`None`: no drain yet).
    pub fn idle_close_at(&self, key: u64) -> Option<Instant> {
        idle_close_at(&self.inner, key)
    }

    /// Whether the signal has fired.
    pub fn is_started(&self) -> bool {
        self.inner.started.load(Ordering::Acquire)
    }

    /// A listener for one connection.
    pub fn listener(&self) -> ShutdownListener {
        ShutdownListener {
            inner: self.inner.clone(),
            slot: None,
        }
    }
}

/// One connection's view of the shutdown signal.
#[derive(Debug)]
pub struct ShutdownListener {
    inner: Arc<Inner>,
    /// This connection's waker slot, once it has waited idle; with the waker registered
    /// there, to skip re-registering the same one.
    slot: Option<(usize, Waker)>,
}

impl ShutdownListener {
    /// A listener that never fires (for connections served outside a listener).
    pub fn never() -> Self {
        Shutdown::new().listener()
    }

    /// Whether shutdown has started.
    pub fn is_started(&self) -> bool {
        self.inner.started.load(Ordering::Acquire)
    }

    /// How many signals that move idle deadlines (the drain, a shorter pressure timeout)
    /// have been given: when it has not changed, neither has an idle deadline.
    pub fn signals(&self) -> u64 {
        self.inner.signals.load(Ordering::Acquire)
    }

    /// The idle timeout of a connection whose own is `ceiling`, and whether pressure
    /// shortened it.
    pub fn idle_timeout(&self, ceiling: Duration) -> (Duration, bool) {
        match idle_timeout_of(&self.inner) {
            Some(pressed) if pressed < ceiling => (pressed, true),
            _ => (ceiling, false),
        }
    }

    /// When this connection, idle, closes in the drain (`None`: no drain yet): its own
    /// moment within the grace window, chosen by `key` (its number).
    pub fn idle_close_at(&self, key: u64) -> Option<Instant> {
        idle_close_at(&self.inner, key)
    }

    /// Ready, with the count now, once a signal newer than `seen` (a count from
    /// [`ShutdownListener::signals`]) has been given: the drain, or a shorter pressure
    /// timeout. Otherwise registers the task to be woken.
    pub fn poll_signal(&mut self, cx: &mut Context<'_>, seen: u64) -> Poll<u64> {
        let _ = self.poll_started(cx);
        match self.signals() {
            now if now != seen => Poll::Ready(now),
            _ => Poll::Pending,
        }
    }

    /// Ready once shutdown has started; otherwise registers the task to be woken.
    pub fn poll_started(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_started() {
            return Poll::Ready(());
        }
        let same_waker = self
            .slot
            .as_ref()
            .is_some_and(|(_, waker)| waker.will_wake(cx.waker()));
        if !same_waker {
            let mut waiters = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
            let index = match self.slot.take() {
                Some((index, _)) => index,
                None => match waiters.free.pop() {
                    Some(index) => index,
                    None => {
                        waiters.slots.push(None);
                        waiters.slots.len() - 1
                    }
                },
            };
            waiters.slots[index] = Some(cx.waker().clone());
            self.slot = Some((index, cx.waker().clone()));
        }
        // Re-check: the trigger may have run before the waker was stored.
        if self.is_started() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

fn idle_timeout_of(inner: &Inner) -> Option<Duration> {
    match inner.idle_timeout_ms.load(Ordering::Acquire) {
        NO_PRESSURE => None,
        ms => Some(Duration::from_millis(ms)),
    }
}

fn idle_close_at(inner: &Inner, key: u64) -> Option<Instant> {
    let started = *inner.started_at.get()?;
    Some(started + inner.grace.mul_f64(share_of(key)))
}

impl Drop for ShutdownListener {
    fn drop(&mut self) {
        if let Some((index, _)) = self.slot.take() {
            let mut waiters = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
            waiters.slots[index] = None;
            waiters.free.push(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test]
    async fn idle_waiters_wake_on_trigger_and_slots_are_reused() {
        let shutdown = Shutdown::new();
        let mut first = shutdown.listener();
        let waiting = tokio::spawn(async move {
            poll_fn(|cx| first.poll_started(cx)).await;
            first
        });
        tokio::task::yield_now().await;
        let second = shutdown.listener();
        assert!(!second.is_started());
        drop(second);
        shutdown.trigger();
        let first = waiting.await.unwrap();
        assert!(first.is_started());
        let mut late = shutdown.listener();
        assert_eq!(
            poll_fn(|cx| Poll::Ready(late.poll_started(cx))).await,
            Poll::Ready(())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_closes_spread_over_the_grace_window() {
        let grace = Duration::from_secs(2);
        let shutdown = Shutdown::with_grace(grace);
        let listener = shutdown.listener();
        assert_eq!(listener.idle_close_at(1), None);
        let start = Instant::now();
        shutdown.trigger();
        let mut tenths = [0u32; 10];
        for key in 0..1000 {
            let at = listener.idle_close_at(key).unwrap() - start;
            assert!(at < grace);
            tenths[(at.as_secs_f64() / 0.2) as usize] += 1;
        }
        assert!(tenths.iter().all(|&n| (60..140).contains(&n)), "{tenths:?}");
        // Without a grace window, idle connections close at once.
        let at_once = Shutdown::new();
        at_once.trigger();
        assert_eq!(at_once.idle_close_at(5), Some(Instant::now()));
    }

    #[tokio::test]
    async fn pressure_shortens_idle_timeouts_and_wakes_idle_waiters() {
        let shutdown = Shutdown::new();
        let mut listener = shutdown.listener();
        let ceiling = Duration::from_secs(60);
        assert_eq!(listener.idle_timeout(ceiling), (ceiling, false));
        let waker = std::sync::Arc::new(Counter::default());
        let waker_ref = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&waker_ref);
        assert!(listener.poll_started(&mut cx).is_pending());
        shutdown.set_idle_timeout(Some(Duration::from_secs(5)));
        assert_eq!(waker.0.load(Ordering::Relaxed), 1, "woken to apply it");
        assert_eq!(
            listener.idle_timeout(ceiling),
            (Duration::from_secs(5), true)
        );
        // A connection whose own timeout is shorter keeps it.
        let short = Duration::from_secs(2);
        assert_eq!(listener.idle_timeout(short), (short, false));
        // Relaxing does not wake anyone; tightening again does (still registered).
        shutdown.set_idle_timeout(None);
        shutdown.set_idle_timeout(Some(Duration::from_secs(1)));
        assert_eq!(waker.0.load(Ordering::Relaxed), 2);
        assert!(!listener.is_started());
    }

    #[derive(Default)]
    struct Counter(AtomicU64);

    impl std::task::Wake for Counter {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn dropped_listeners_free_their_slot() {
        let shutdown = Shutdown::new();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..3 {
            let mut listener = shutdown.listener();
            assert!(listener.poll_started(&mut cx).is_pending());
        }
        let waiters = shutdown.inner.waiters.lock().unwrap();
        assert_eq!(waiters.slots.len(), 1, "one slot, reused");
        assert_eq!(waiters.free, vec![0]);
    }
}

//! Graceful-shutdown signalling between the listener and its connections.
//!
//! Owns one flag and the wakers of connections waiting idle. A connection registers its
//! waker once (not per request) and checks an atomic on every request, so the signal costs
//! nothing on the hot path. It must not close sockets itself: each connection decides how
//! to finish (idle ones close at once, busy ones finish the request with
//! `Connection: close`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
struct Inner {
    started: AtomicBool,
    /// Wakers of connections that have waited idle at least once, by slot.
    waiters: Mutex<Waiters>,
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
    /// A signal that has not fired.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Fires the signal: idle connections wake and close, busy ones close after their
    /// current response.
    pub fn trigger(&self) {
        self.inner.started.store(true, Ordering::Release);
        let wakers: Vec<Waker> = {
            let mut waiters = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
            waiters.slots.iter_mut().filter_map(Option::take).collect()
        };
        for waker in wakers {
            waker.wake();
        }
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

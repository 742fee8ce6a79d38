//! Reuse chosen by warmth: a connection that has carried data has a grown congestion
//! window at its sender, so a large response on it takes fewer round trips than on a new
//! connection, which starts with the initial window (10 segments) after a handshake. The
//! window lasts only while the connection is in use: idle longer than one retransmission
//! timeout, the sender falls back to the initial window (RFC 5681 §4.1; Linux's
//! `net.ipv4.tcp_slow_start_after_idle`, on by default).
//!
//! Pure choice over what the pool knows of its idle connections (bytes received, from the
//! kernel's `TCP_INFO`; idle time, from the pool's clock; the RTO, from the kernel). It must
//! not touch connections.

use std::sync::OnceLock;
use std::time::Duration;

/// What the pool knows of one idle connection's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warmth {
    /// Bytes the connection has received: its sender's window grew with them.
    pub received: u64,
    /// How long it has been idle.
    pub idle: Duration,
    /// Its retransmission timeout.
    pub rto: Duration,
}

/// Bytes that outgrow the initial window (10 × 1460): a sender that sent more than this
/// has a grown window.
pub const INITIAL_WINDOW: u64 = 10 * 1460;

impl Warmth {
    /// Whether its sender's window outgrew the initial one and is still open: more than an
    /// initial window received, and idle no longer than one RTO (unless the kernel keeps
    /// windows across idle periods).
    pub fn is_warm(&self) -> bool {
        self.received > INITIAL_WINDOW && (self.idle <= self.rto || !slow_start_after_idle())
    }
}

/// Which idle connection a large response should come over, `candidates` in the pool's
/// order (least recently used first); `None` leaves the pool's default (most recently
/// used).
///
/// 1. Only a connection whose window is still open counts (more than an initial window
///    received, idle no longer than its RTO).
/// 2. Of those, the one that received most: its sender's window grew furthest.
/// 3. On a tie, the most recently used (the last).
pub fn warmest(candidates: &[Option<Warmth>]) -> Option<usize> {
    (candidates.iter().enumerate())
        .filter_map(|(i, warmth)| warmth.filter(Warmth::is_warm).map(|w| (w.received, i)))
        .max()
        .map(|(_, i)| i)
}

/// Whether this kernel restarts the window after an idle period
/// (`net.ipv4.tcp_slow_start_after_idle`; assumed on where it cannot be read).
pub fn slow_start_after_idle() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_slow_start_after_idle")
            .map_or(true, |value| value.trim() != "0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warmth(received: u64, idle_ms: u64) -> Option<Warmth> {
        Some(Warmth {
            received,
            idle: Duration::from_millis(idle_ms),
            rto: Duration::from_millis(250),
        })
    }

    #[test]
    fn the_connection_whose_window_grew_furthest_and_is_still_open_wins() {
        // Least recently used first: a big one gone cold, a warm big one, a small one.
        let candidates = [
            warmth(1_000_000, 400),
            warmth(200_000, 100),
            warmth(500, 10),
        ];
        if slow_start_after_idle() {
            assert_eq!(warmest(&candidates), Some(1), "the cold one is passed over");
        }
        assert_eq!(
            warmest(&[warmth(200_000, 100), warmth(900_000, 200)]),
            Some(1)
        );
        // On a tie, the most recently used.
        assert_eq!(warmest(&[warmth(90_000, 10), warmth(90_000, 20)]), Some(1));
    }

    #[test]
    fn no_warm_connection_leaves_the_default() {
        assert_eq!(
            warmest(&[warmth(500, 10), None, warmth(INITIAL_WINDOW, 1)]),
            None
        );
        assert_eq!(warmest(&[]), None);
        if slow_start_after_idle() {
            assert_eq!(warmest(&[warmth(1_000_000, 251)]), None);
        }
    }
}

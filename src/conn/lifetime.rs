//! Maximum lifetimes spread over a window: connections opened together (a deploy, a burst)
//! must not all expire in the same moment and reconnect together. Each connection's lifetime
//! is the maximum less a share of the jitter window that depends on the connection alone,
//! spread evenly over the window by a per-process hash (no random number generator to
//! carry, the same connection always gets the same share). The same shares spread the
//! closes of idle connections over a drain's grace window ([`crate::conn::Shutdown`]).

use std::hash::{BuildHasher, Hash};
use std::sync::OnceLock;
use std::time::Duration;

/// `max` less a share of `jitter` chosen by `key` (the connection's number, or when it was
/// opened): from `max - jitter` to `max`, evenly over many connections.
pub fn jittered_lifetime(max: Duration, jitter: Duration, key: impl Hash) -> Duration {
    if jitter.is_zero() {
        return max;
    }
    max.saturating_sub(jitter.min(max).mul_f64(share_of(key)))
}

/// `key`'s share of a window, in [0, 1): the same for the same key within this process,
/// spread evenly over many keys.
pub fn share_of(key: impl Hash) -> f64 {
    static SEED: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let hash = SEED.get_or_init(Default::default).hash_one(key);
    // The top 53 bits as a fraction in [0, 1).
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_spread_over_the_window() {
        let (max, jitter) = (Duration::from_secs(600), Duration::from_secs(60));
        let lifetimes: Vec<Duration> = (0..10_000u64)
            .map(|id| jittered_lifetime(max, jitter, id))
            .collect();
        assert!(lifetimes.iter().all(|l| *l <= max && *l >= max - jitter));
        // Ten buckets of six seconds, each holding about a tenth of them.
        let mut buckets = [0u32; 10];
        for lifetime in &lifetimes {
            let below = (max - *lifetime).as_secs_f64();
            buckets[((below / 6.0) as usize).min(9)] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (800..1200).contains(&n)),
            "{buckets:?}"
        );
        assert_eq!(
            jittered_lifetime(max, jitter, 7u64),
            jittered_lifetime(max, jitter, 7u64)
        );
        assert_eq!(jittered_lifetime(max, Duration::ZERO, 7u64), max);
        // A window wider than the lifetime shortens it to zero at most.
        assert!(jittered_lifetime(Duration::from_secs(5), jitter, 7u64) <= Duration::from_secs(5));
    }
}

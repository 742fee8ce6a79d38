//! Learned idle timeouts: many origins close idle connections after a fixed time without
//! saying so (no `Keep-Alive: timeout`), often sooner than the pool would give them up; a
//! request sent on such a connection as it closes races the close (the most reported
//! pooling failure in Caddy, Envoy, hyper and Kong). When the origin keeps closing idle
//! connections at a consistent age, the pool learns that age and retires its connections a
//! margin before it.
//!
//! Pure state, fed by the pool with the idle age at which it saw a peer close an idle
//! connection (the reaper sees it promptly); it must not touch connections.

use std::time::Duration;

use tokio::time::Instant;

/// Closes seen in a row at about the same age before the age is believed.
const CONFIRMATIONS: usize = 3;
/// How far apart (as a share of the shortest) those ages may be.
const TOLERANCE: f64 = 0.1;
/// A learned age not seen again for this long is forgotten (the pool retires connections
/// before the origin would, so it sees no closes while the value holds; forgetting lets it
/// notice an origin whose timeout grew).
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// The margin before the learned age: a tenth of it, within these bounds (and at most half
/// of it).
const MARGIN_MIN: Duration = Duration::from_millis(100);
const MARGIN_MAX: Duration = Duration::from_secs(1);

/// What the pool has seen of one origin's idle closes.
#[derive(Debug, Clone, Default)]
pub struct IdleLearner {
    /// The latest idle ages at which the origin closed, newest last.
    seen: Vec<Duration>,
    /// The age believed, and when it was last seen.
    learned: Option<(Duration, Instant)>,
}

impl IdleLearner {
    /// The origin closed an idle connection `age` after it went idle.
    pub fn observe(&mut self, age: Duration, now: Instant) {
        if self.seen.len() == CONFIRMATIONS {
            self.seen.remove(0);
        }
        self.seen.push(age);
        let shortest = self.seen.iter().min().copied().unwrap_or_default();
        let longest = self.seen.iter().max().copied().unwrap_or_default();
        let consistent = longest.as_secs_f64() <= shortest.as_secs_f64() * (1.0 + TOLERANCE);
        if self.seen.len() == CONFIRMATIONS && consistent {
            self.learned = Some((shortest, now));
        } else if let Some((learned, _)) = self.learned
            && age < learned
        {
            // Closed sooner than believed: the origin changed; learn again.
            self.learned = None;
        }
    }

    /// The age the origin closes idle connections at, if learned (and not forgotten).
    pub fn learned(&self, now: Instant) -> Option<Duration> {
        let (age, seen) = self.learned?;
        (now.saturating_duration_since(seen) < FORGET_AFTER).then_some(age)
    }

    /// How long a connection to this origin may stay idle: the learned age less a margin.
    pub fn retire_after(&self, now: Instant) -> Option<Duration> {
        let age = self.learned(now)?;
        let margin = (age / 10).clamp(MARGIN_MIN, MARGIN_MAX).min(age / 2);
        Some(age - margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_consistent_age_is_learned_after_three_closes() {
        let now = Instant::now();
        let mut learner = IdleLearner::default();
        learner.observe(ms(2010), now);
        learner.observe(ms(2003), now);
        assert_eq!(learner.learned(now), None, "two are not enough");
        learner.observe(ms(2050), now);
        assert_eq!(learner.learned(now), Some(ms(2003)));
        assert_eq!(learner.retire_after(now), Some(ms(2003) - ms(2003) / 10));
    }

    #[test]
    fn scattered_ages_are_not_learned() {
        let now = Instant::now();
        let mut learner = IdleLearner::default();
        for age in [2000, 5000, 3000, 9000, 2500] {
            learner.observe(ms(age), now);
        }
        assert_eq!(learner.learned(now), None);
    }

    #[test]
    fn a_sooner_close_unlearns_and_a_new_age_is_learned() {
        let now = Instant::now();
        let mut learner = IdleLearner::default();
        for _ in 0..3 {
            learner.observe(ms(5000), now);
        }
        assert_eq!(learner.learned(now), Some(ms(5000)));
        learner.observe(ms(1000), now);
        assert_eq!(learner.learned(now), None);
        learner.observe(ms(1000), now);
        learner.observe(ms(1010), now);
        assert_eq!(learner.learned(now), Some(ms(1000)));
    }

    #[test]
    fn margins_stay_within_bounds_and_the_value_is_forgotten() {
        let now = Instant::now();
        let learn = |age: Duration| {
            let mut learner = IdleLearner::default();
            (0..3).for_each(|_| learner.observe(age, now));
            learner
        };
        // A tenth, at least 100 ms, at most 1 s, never more than half.
        assert_eq!(learn(ms(60_000)).retire_after(now), Some(ms(59_000)));
        assert_eq!(learn(ms(500)).retire_after(now), Some(ms(400)));
        assert_eq!(learn(ms(150)).retire_after(now), Some(ms(75)));
        let learner = learn(ms(2000));
        assert_eq!(learner.learned(now + FORGET_AFTER), None);
    }
}

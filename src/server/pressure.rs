//! How long an idle connection may stay idle when connections are plentiful: the idle
//! timeout yields under pressure, from its ceiling (`keepalive_timeout`) down to its floor
//! (`keepalive_timeout_min`), as open connections approach the listener's limit, so that
//! new clients are served instead of queueing behind idle ones.
//!
//! A pure function of the counts; the listener applies it.

use std::time::Duration;

/// Below this share of the limit, no pressure: the ceiling applies.
const START: f64 = 0.5;
/// From this share of the limit on, the floor applies.
const FULL: f64 = 0.9;
/// The timeout moves in this many steps between ceiling and floor, so that idle
/// connections are woken to apply a new one only a few times on the way.
const STEPS: f64 = 16.0;

/// The idle timeout pressure allows with `open` connections of at most `limit`, between
/// `ceiling` and `floor`; `None` when no pressure shortens it.
pub fn idle_timeout(
    ceiling: Duration,
    floor: Duration,
    open: usize,
    limit: usize,
) -> Option<Duration> {
    if floor >= ceiling || limit == 0 {
        return None;
    }
    let load = open as f64 / limit as f64;
    if load < START {
        return None;
    }
    let pressed = ((load - START) / (FULL - START)).min(1.0);
    let step = (pressed * STEPS).ceil() / STEPS;
    (step > 0.0).then(|| ceiling - (ceiling - floor).mul_f64(step))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_shrinks_from_ceiling_to_floor_in_steps() {
        let (ceiling, floor) = (Duration::from_secs(60), Duration::from_secs(1));
        let at = |open| idle_timeout(ceiling, floor, open, 1000);
        assert_eq!(at(0), None);
        assert_eq!(at(499), None);
        assert_eq!(at(500), None, "exactly half: still the ceiling");
        let mut last = ceiling;
        let mut distinct = std::collections::BTreeSet::new();
        for open in 501..=1000 {
            let t = at(open).unwrap();
            assert!(t <= last && t >= floor, "{open}: {t:?}");
            distinct.insert(t);
            last = t;
        }
        assert!(distinct.len() <= STEPS as usize + 1, "{distinct:?}");
        assert_eq!(at(900), Some(floor));
        assert_eq!(at(1000), Some(floor));
        // Half-way to full: about half-way to the floor.
        let half = at(700).unwrap();
        assert!(half > Duration::from_secs(25) && half < Duration::from_secs(35));
        // A floor at or above the ceiling: no pressure.
        assert_eq!(idle_timeout(floor, ceiling, 1000, 1000), None);
        assert_eq!(idle_timeout(ceiling, floor, 1, 0), None);
    }
}

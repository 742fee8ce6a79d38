//! The path model: when bytes a TCP sender hands over reach the receiver, given the round
//! trip, the bandwidth, the handshake and slow start. Pure arithmetic on durations since
//! the link started; the relay and the demo's predictions both use it.

use std::collections::VecDeque;
use std::time::Duration;

/// Linux's minimum retransmission timeout (`TCP_RTO_MIN`, 200 ms): with a steady round
/// trip, the RTO settles at about RTT + 200 ms.
pub const RTO_MIN: Duration = Duration::from_millis(200);

/// The emulated path between two hops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathModel {
    /// Round-trip time; each direction takes half.
    pub rtt: Duration,
    /// Bytes per second each way; `None`: unlimited.
    pub bandwidth: Option<u64>,
    /// Maximum segment size in bytes (1460: Ethernet MTU minus IPv4 and TCP headers).
    pub mss: u64,
    /// Initial congestion window in segments (10, RFC 6928, Linux's default).
    pub initial_segments: u64,
    /// After an idle period longer than the RTO, the window falls back to the initial one
    /// (Linux's default `net.ipv4.tcp_slow_start_after_idle = 1`, RFC 5681 §4.1).
    pub slow_start_after_idle: bool,
}

impl PathModel {
    /// A path with this round trip and the defaults: no bandwidth cap, 10 × 1460 bytes
    /// initial window, slow start after idle.
    pub fn with_rtt(rtt: Duration) -> Self {
        PathModel {
            rtt,
            bandwidth: None,
            mss: 1460,
            initial_segments: 10,
            slow_start_after_idle: true,
        }
    }

    /// The initial congestion window in bytes.
    pub fn initial_window(&self) -> u64 {
        self.mss * self.initial_segments
    }

    /// The largest congestion window: the bandwidth-delay product (no more fits on the
    /// path), at least the initial window; unlimited without a bandwidth cap.
    pub fn max_window(&self) -> u64 {
        match self.bandwidth {
            Some(bandwidth) => {
                let bdp = (bandwidth as f64 * self.rtt.as_secs_f64()) as u64;
                bdp.max(self.initial_window())
            }
            None => u64::MAX,
        }
    }

    /// The retransmission timeout once the round trip is known: RTT + [`RTO_MIN`].
    pub fn rto(&self) -> Duration {
        self.rtt + RTO_MIN
    }

    /// Time to put `bytes` on the wire.
    fn serialisation(&self, bytes: u64) -> Duration {
        match self.bandwidth {
            Some(bandwidth) if bandwidth > 0 => {
                Duration::from_secs_f64(bytes as f64 / bandwidth as f64)
            }
            _ => Duration::ZERO,
        }
    }
}

/// A run of bytes and when it reaches the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Arrival time (since the link started).
    pub at: Duration,
    /// How many bytes.
    pub bytes: u64,
}

/// Bytes sent and not yet acknowledged.
#[derive(Debug, Clone, Copy)]
struct Unacked {
    /// When the acknowledgement reaches the sender.
    acked_at: Duration,
    bytes: u64,
}

/// One direction of one emulated TCP connection: the sender's congestion window and the
/// path. Acknowledgements come back half a round trip after delivery, and each
/// acknowledged byte grows the window by one (slow start: it doubles every round trip) up
/// to [`PathModel::max_window`]. There is no loss, so no congestion avoidance.
#[derive(Debug, Clone)]
pub struct Pacer {
    path: PathModel,
    /// Congestion window in bytes.
    cwnd: u64,
    unacked: VecDeque<Unacked>,
    unacked_bytes: u64,
    /// No byte leaves before this: the handshake at first, then the end of the last
    /// departure (bytes leave in order).
    free_at: Duration,
    /// When bytes last left (for the restart after idle).
    last_sent: Option<Duration>,
}

impl Pacer {
    /// A sender that may start sending at `open_at` (after the handshake).
    pub fn new(path: PathModel, open_at: Duration) -> Self {
        Pacer {
            path,
            cwnd: path.initial_window(),
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            free_at: open_at,
            last_sent: None,
        }
    }

    /// The path it sends over.
    pub fn path(&self) -> PathModel {
        self.path
    }

    /// The congestion window now, in bytes.
    pub fn cwnd(&self) -> u64 {
        self.cwnd
    }

    /// Whether the window has grown past the initial one: a warm connection.
    pub fn is_warm(&self) -> bool {
        self.cwnd > self.path.initial_window()
    }

    /// Schedules `bytes` handed to the sender at `now`, appending when they arrive to
    /// `out` (in order, arrival times never decreasing).
    pub fn send(&mut self, now: Duration, mut bytes: u64, out: &mut Vec<Delivery>) {
        let mut t = now.max(self.free_at);
        self.acknowledge(t);
        if self.path.slow_start_after_idle
            && self.unacked.is_empty()
            && self
                .last_sent
                .is_some_and(|last| t.saturating_sub(last) > self.path.rto())
        {
            // RFC 5681 §4.1: the window is no longer validated by the ACK clock.
            self.cwnd = self.cwnd.min(self.path.initial_window());
        }
        while bytes > 0 {
            self.acknowledge(t);
            let room = self.cwnd.saturating_sub(self.unacked_bytes);
            if room == 0 {
                // Wait for the oldest acknowledgement (one exists: the window is full).
                t = self.unacked.front().map_or(t, |u| u.acked_at).max(t);
                continue;
            }
            // On a capped link bytes go a segment at a time: each is acknowledged as soon
            // as it is through, which keeps a window of one BDP flowing.
            let piece = match self.path.bandwidth {
                Some(_) => self.path.mss,
                None => u64::MAX,
            };
            let take = bytes.min(room).min(piece);
            let start = t.max(self.free_at);
            let end = start + self.path.serialisation(take);
            self.free_at = end;
            self.last_sent = Some(start);
            let at = end + self.path.rtt / 2;
            self.unacked.push_back(Unacked {
                acked_at: at + self.path.rtt / 2,
                bytes: take,
            });
            self.unacked_bytes += take;
            out.push(Delivery { at, bytes: take });
            bytes -= take;
        }
    }

    /// Takes in the acknowledgements that have arrived by `t`.
    fn acknowledge(&mut self, t: Duration) {
        while let Some(front) = self.unacked.front().copied() {
            if front.acked_at > t {
                break;
            }
            self.unacked.pop_front();
            self.unacked_bytes -= front.bytes;
            self.cwnd = self
                .cwnd
                .saturating_add(front.bytes)
                .min(self.path.max_window());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn last(deliveries: &[Delivery]) -> Duration {
        deliveries.last().unwrap().at
    }

    /// Time from a cold sender starting at 0 until `bytes` are delivered, plus the half
    /// round trip the request took: round trips as the client sees them.
    fn cold_exchange(path: PathModel, bytes: u64) -> Duration {
        let mut pacer = Pacer::new(path, Duration::ZERO);
        let mut out = Vec::new();
        pacer.send(Duration::ZERO, bytes, &mut out);
        last(&out) + path.rtt / 2
    }

    #[test]
    fn slow_start_doubles_the_window_every_round_trip() {
        let path = PathModel::with_rtt(100 * MS);
        let iw = path.initial_window();
        // k initial windows need the smallest n with 2^n - 1 >= k round trips.
        for (windows, rounds) in [(1, 1), (2, 2), (3, 2), (4, 3), (7, 3), (8, 4), (15, 4)] {
            assert_eq!(
                cold_exchange(path, windows * iw),
                path.rtt * rounds,
                "{windows} windows"
            );
        }
    }

    #[test]
    fn a_warm_sender_needs_fewer_round_trips_until_it_idles_past_the_rto() {
        let path = PathModel::with_rtt(100 * MS);
        let iw = path.initial_window();
        let mut pacer = Pacer::new(path, Duration::ZERO);
        let mut out = Vec::new();
        pacer.send(Duration::ZERO, 15 * iw, &mut out);
        assert!(pacer.is_warm());
        // Everything is acknowledged by then; 8 windows now fit in one round trip.
        let now = last(&out) + 100 * MS;
        out.clear();
        pacer.send(now, 8 * iw, &mut out);
        assert_eq!(last(&out) - now, 50 * MS, "one flight");
        // Idle past the RTO (300 ms): back to the initial window, 4 round trips again.
        let later = last(&out) + 50 * MS + path.rto() + MS;
        out.clear();
        pacer.send(later, 8 * iw, &mut out);
        assert_eq!(last(&out) - later, 350 * MS);
    }

    #[test]
    fn without_slow_start_after_idle_the_window_stays() {
        let mut path = PathModel::with_rtt(100 * MS);
        path.slow_start_after_idle = false;
        let iw = path.initial_window();
        let mut pacer = Pacer::new(path, Duration::ZERO);
        let mut out = Vec::new();
        pacer.send(Duration::ZERO, 15 * iw, &mut out);
        let later = last(&out) + Duration::from_secs(10);
        out.clear();
        pacer.send(later, 8 * iw, &mut out);
        assert_eq!(last(&out) - later, 50 * MS);
    }

    #[test]
    fn the_handshake_delays_the_first_byte() {
        let path = PathModel::with_rtt(100 * MS);
        let mut pacer = Pacer::new(path, 100 * MS);
        let mut out = Vec::new();
        pacer.send(Duration::ZERO, 100, &mut out);
        assert_eq!(
            out,
            [Delivery {
                at: 150 * MS,
                bytes: 100
            }]
        );
    }

    #[test]
    fn bandwidth_serialises_and_caps_the_window_at_the_bdp() {
        let mut path = PathModel::with_rtt(100 * MS);
        path.bandwidth = Some(1_000_000);
        assert_eq!(path.max_window(), 100_000);
        let mut pacer = Pacer::new(path, Duration::ZERO);
        let mut out = Vec::new();
        // 10 MB at 1 MB/s: at least 10 s on the wire, plus slow start and the half RTT.
        pacer.send(Duration::ZERO, 10_000_000, &mut out);
        let total = last(&out).as_secs_f64();
        assert!((10.0..11.0).contains(&total), "{total}");
        assert_eq!(out.iter().map(|d| d.bytes).sum::<u64>(), 10_000_000);
        assert!(out.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(pacer.cwnd() <= 100_000);
    }

    #[test]
    fn a_zero_round_trip_delivers_at_once() {
        let path = PathModel::with_rtt(Duration::ZERO);
        let mut pacer = Pacer::new(path, Duration::ZERO);
        let mut out = Vec::new();
        pacer.send(5 * MS, 10_000_000, &mut out);
        assert!(out.iter().all(|d| d.at == 5 * MS));
    }

    #[test]
    fn writes_queued_behind_a_full_window_keep_their_order() {
        let path = PathModel::with_rtt(100 * MS);
        let iw = path.initial_window();
        let mut pacer = Pacer::new(path, Duration::ZERO);
        let mut out = Vec::new();
        pacer.send(Duration::ZERO, 3 * iw, &mut out);
        pacer.send(MS, 10, &mut out);
        assert!(out.windows(2).all(|w| w[0].at <= w[1].at));
        assert_eq!(out.last().unwrap().bytes, 10);
        // The second flight fills the window grown to 2 IW: the 10 bytes wait one more
        // round trip.
        assert_eq!(last(&out), 250 * MS);
    }
}

//! What the path model predicts for a page load in each connection type: the same
//! [`Pacer`] arithmetic the link applies, run as a small simulation of the loader, with no
//! processing time. The report puts these figures next to the measured ones; the gap is
//! the software (client, server, proxy, relay) and the timer granularity.

use std::time::Duration;

use serde::Serialize;

use super::{ModeKind, TlsUse};
use crate::netem::{Delivery, Pacer, PathModel};

/// Bytes of a request head as our client writes it (request line, `Host`, end of head).
pub const REQUEST_HEAD_BYTES: u64 = 80;

/// Bytes of a response head as the origin writes it (status line, `Content-Type`,
/// `Content-Length`, `Date`, end of head).
pub const RESPONSE_HEAD_BYTES: u64 = 120;

/// The model's figures for one page load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    /// From the first request to the last byte.
    pub load_ms: f64,
    /// Connections the client opens.
    pub connections: u64,
    /// TCP handshakes on every emulated link (client side, and upstream through a proxy).
    pub handshakes: u64,
}

/// A hop a connection is opened over: its path, and the round trips before the first
/// request byte may leave (1 for TCP; 2 with TLS 1.3, full or resumed, without 0-RTT).
#[derive(Debug, Clone, Copy)]
struct Hop {
    path: PathModel,
    handshake_rtts: u32,
}

impl Hop {
    fn of(path: PathModel, tls: bool) -> Hop {
        Hop {
            path,
            handshake_rtts: if tls { 2 } else { 1 },
        }
    }
}

/// One emulated connection: a pacer each way.
#[derive(Debug, Clone)]
struct Conn {
    up: Pacer,
    down: Pacer,
    /// Busy until then (an exchange is in progress).
    busy_until: Duration,
}

impl Conn {
    /// A connection whose SYN leaves at `at`: requests may leave once its handshakes
    /// are done. (The TLS handshake's own bytes, a few KB at most, fit the initial
    /// window and cost no extra round trip.)
    fn open(hop: Hop, at: Duration) -> Conn {
        let ready = at + hop.path.rtt * hop.handshake_rtts;
        Conn {
            up: Pacer::new(hop.path, ready),
            down: Pacer::new(hop.path, ready + hop.path.rtt / 2),
            busy_until: at,
        }
    }

    /// Sends `bytes` upstream at `at`; when the last of them arrives.
    fn request(&mut self, at: Duration, bytes: u64) -> Duration {
        let mut out = Vec::new();
        self.up.send(at, bytes, &mut out);
        out.last().map_or(at, |d| d.at)
    }

    /// Sends `bytes` back at `at`; their arrivals.
    fn respond(&mut self, at: Duration, bytes: u64) -> Vec<Delivery> {
        let mut out = Vec::new();
        self.down.send(at, bytes, &mut out);
        out
    }
}

/// One exchange on `conn` starting at `at`; when the response is complete.
fn exchange(conn: &mut Conn, at: Duration, body: u64) -> Duration {
    let arrived = conn.request(at, REQUEST_HEAD_BYTES);
    let end = conn
        .respond(arrived, RESPONSE_HEAD_BYTES + body)
        .last()
        .map_or(arrived, |d| d.at);
    conn.busy_until = end;
    end
}

/// The upstream side of a proxy: pooled (most recently used first) or a connection per
/// request, over its own path.
struct Upstream {
    hop: Hop,
    pooled: bool,
    idle: Vec<Conn>,
    handshakes: u64,
}

impl Upstream {
    /// The exchange through the proxy: the request crosses the client's connection, then
    /// the upstream one; the response streams back through both. When it is complete.
    fn relay(&mut self, client: &mut Conn, at: Duration, body: u64) -> Duration {
        let at_proxy = client.request(at, REQUEST_HEAD_BYTES);
        // The most recently used idle connection free by then, else a new one.
        let free = self.idle.iter().rposition(|c| c.busy_until <= at_proxy);
        let mut upstream = match free {
            Some(i) if self.pooled => self.idle.remove(i),
            _ => {
                self.handshakes += 1;
                Conn::open(self.hop, at_proxy)
            }
        };
        let at_origin = upstream.request(at_proxy, REQUEST_HEAD_BYTES);
        let mut end = at_origin;
        for piece in upstream.respond(at_origin, RESPONSE_HEAD_BYTES + body) {
            if let Some(last) = client.respond(piece.at, piece.bytes).last() {
                end = last.at;
            }
            upstream.busy_until = piece.at;
        }
        client.busy_until = end;
        if self.pooled {
            self.idle.push(upstream);
        }
        end
    }
}

/// The model's figures for loading a document of `html` bytes and resources of
/// `resources` bytes (document order) in `mode` over `path` (each hop, through a proxy).
pub fn predict(
    mode: ModeKind,
    path: PathModel,
    html: u64,
    resources: &[u64],
    depth: usize,
    slow: Option<(usize, Duration)>,
) -> Prediction {
    let plan = mode.plan();
    if let Some(upstream) = mode.upstream_mode() {
        return through_proxy(
            path,
            html,
            resources,
            plan.workers(),
            upstream == crate::client::Mode::KeepAlive,
        );
    }
    let hop = Hop::of(path, plan.tls != TlsUse::Off);
    let mut first = Conn::open(hop, Duration::ZERO);
    let page_done = exchange(&mut first, Duration::ZERO, html);
    let wait = |i: usize| match slow {
        Some((index, delay)) if index == i => delay,
        _ => Duration::ZERO,
    };
    if plan.h2 {
        return multiplexed(first, page_done, resources, wait);
    }
    if plan.persistent && plan.pipelined {
        return pipelined(first, page_done, resources, depth, wait);
    }
    let (load, connections) = load_resources(
        hop,
        first,
        page_done,
        resources,
        plan.workers(),
        plan.persistent,
        exchange,
    );
    Prediction {
        load_ms: millis(load),
        connections,
        handshakes: connections,
    }
}

/// Pipelined over the document's connection: every request leaves at once (at most
/// `depth` unanswered), the server answers in order: a response that takes `wait(i)`
/// longer holds back every one behind it.
fn pipelined(
    mut conn: Conn,
    page_done: Duration,
    resources: &[u64],
    depth: usize,
    wait: impl Fn(usize) -> Duration,
) -> Prediction {
    let depth = depth.max(1);
    let mut ends: Vec<Duration> = Vec::with_capacity(resources.len());
    let mut server_free = page_done;
    for (i, &body) in resources.iter().enumerate() {
        // A request beyond the depth leaves when the response `depth` before it is done.
        let sent = if i >= depth {
            ends[i - depth]
        } else {
            page_done
        };
        let arrived = conn.request(sent, REQUEST_HEAD_BYTES);
        let answered = arrived.max(server_free) + wait(i);
        server_free = answered;
        let end = conn
            .respond(answered, RESPONSE_HEAD_BYTES + body)
            .last()
            .map_or(answered, |d| d.at);
        ends.push(end);
    }
    Prediction {
        load_ms: millis(ends.iter().copied().max().unwrap_or(page_done)),
        connections: 1,
        handshakes: 1,
    }
}

/// HTTP/2 over the document's connection: every request leaves at once; each response
/// leaves as soon as it is ready (`wait(i)` after its request arrived), sharing the one
/// connection's window in the order they are ready: a slow one holds back no other.
fn multiplexed(
    mut conn: Conn,
    page_done: Duration,
    resources: &[u64],
    wait: impl Fn(usize) -> Duration,
) -> Prediction {
    let mut ready: Vec<(Duration, u64)> = resources
        .iter()
        .enumerate()
        .map(|(i, &body)| (conn.request(page_done, REQUEST_HEAD_BYTES) + wait(i), body))
        .collect();
    ready.sort_by_key(|(at, _)| *at);
    let end = ready
        .into_iter()
        .filter_map(|(at, body)| {
            conn.respond(at, RESPONSE_HEAD_BYTES + body)
                .last()
                .map(|d| d.at)
        })
        .max()
        .unwrap_or(page_done);
    Prediction {
        load_ms: millis(end),
        connections: 1,
        handshakes: 1,
    }
}

/// Through a proxy: the client keeps `workers` persistent connections to it; the proxy's
/// upstream is pooled or short-lived. The proxy has served one page load before (its pool
/// is warm, as a busy proxy's is); that load is not counted.
fn through_proxy(
    path: PathModel,
    html: u64,
    resources: &[u64],
    workers: usize,
    pooled: bool,
) -> Prediction {
    let mut upstream = Upstream {
        hop: Hop::of(path, false),
        pooled,
        idle: Vec::new(),
        handshakes: 0,
    };
    let warm_up_end = load_via(
        &mut upstream,
        path,
        Duration::ZERO,
        html,
        resources,
        workers,
    )
    .0;
    upstream.handshakes = 0;
    let (end, connections) = load_via(&mut upstream, path, warm_up_end, html, resources, workers);
    Prediction {
        load_ms: millis(end - warm_up_end),
        connections,
        handshakes: connections + upstream.handshakes,
    }
}

/// One page load through the proxy starting at `start`: when it ends, and the client
/// connections it opened.
fn load_via(
    upstream: &mut Upstream,
    path: PathModel,
    start: Duration,
    html: u64,
    resources: &[u64],
    workers: usize,
) -> (Duration, u64) {
    let hop = Hop::of(path, false);
    let mut first = Conn::open(hop, start);
    let page_done = upstream.relay(&mut first, start, html);
    load_resources(
        hop,
        first,
        page_done,
        resources,
        workers,
        true,
        |conn, at, body| upstream.relay(conn, at, body),
    )
}

/// One of the parallel connections a page loads its resources over.
struct Lane {
    /// When it can take the next request.
    free_at: Duration,
    /// Its connection, kept between requests when they are persistent.
    conn: Option<Conn>,
}

/// Loads `resources` (document order) over `workers` lanes after the document, which
/// ended at `page_done` on `first`: each request goes to the lane free first. Persistent
/// lanes keep their connection (the first lane has the document's); otherwise every
/// request opens its own. `exchange` carries one request and says when its response
/// ended. Returns when the last one ended and how many connections were opened, the
/// document's included.
fn load_resources(
    hop: Hop,
    first: Conn,
    page_done: Duration,
    resources: &[u64],
    workers: usize,
    persistent: bool,
    mut exchange: impl FnMut(&mut Conn, Duration, u64) -> Duration,
) -> (Duration, u64) {
    let mut lanes: Vec<Lane> = (0..workers.max(1))
        .map(|_| Lane {
            free_at: page_done,
            conn: None,
        })
        .collect();
    if persistent {
        lanes[0].conn = Some(first);
    }
    let mut connections = 1;
    let mut load = page_done;
    for &body in resources {
        let lane = lanes
            .iter_mut()
            .min_by_key(|lane| lane.free_at)
            .expect("at least one lane");
        let at = lane.free_at;
        let conn = match &mut lane.conn {
            Some(conn) => conn,
            slot => {
                connections += 1;
                slot.insert(Conn::open(hop, at))
            }
        };
        let end = exchange(conn, at, body);
        if !persistent {
            lane.conn = None;
        }
        lane.free_at = end;
        load = load.max(end);
    }
    (load, connections)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(50);

    fn predict_small(mode: ModeKind, n: usize) -> Prediction {
        // Everything fits one initial window: each exchange is pure round trips.
        predict(
            mode,
            PathModel::with_rtt(RTT),
            1000,
            &vec![1000; n],
            32,
            None,
        )
    }

    fn rtts(p: Prediction) -> f64 {
        p.load_ms / 50.0
    }

    #[test]
    fn round_trips_per_connection_type() {
        let n = 10;
        // A new connection per request: 2 RTT each, the document included.
        let serial = predict_small(ModeKind::Http10Serial, n);
        assert_eq!((rtts(serial), serial.connections), (22.0, 11));
        // One persistent connection: 2 RTT for the document, then 1 each.
        let persistent = predict_small(ModeKind::PersistentX1, n);
        assert_eq!((rtts(persistent), persistent.connections), (12.0, 1));
        // Pipelined: the document, then every response in one more round trip.
        let pipelined = predict_small(ModeKind::PipelinedX1, n);
        assert_eq!((rtts(pipelined), pipelined.connections), (3.0, 1));
        // Six short-lived connections: 2 + ceil(10 / 6) × 2.
        let six = predict_small(ModeKind::ShortLivedX6, n);
        assert_eq!(rtts(six), 6.0);
        // Six persistent ones: 2, then the first round reuses one connection and opens
        // five (2 RTT), the second round is on open connections (1 RTT).
        let six = predict_small(ModeKind::PersistentX6, n);
        assert_eq!((rtts(six), six.connections), (5.0, 6));
    }

    #[test]
    fn a_proxy_with_a_warm_pool_saves_the_upstream_handshakes() {
        let pooled = predict_small(ModeKind::ProxyPooled, 10);
        let short = predict_small(ModeKind::ProxyShortLived, 10);
        assert!(pooled.load_ms < short.load_ms, "{pooled:?} {short:?}");
        // Short-lived upstream: a handshake per request on the second hop.
        assert_eq!(short.handshakes, short.connections + 11);
        assert!(pooled.handshakes < short.handshakes);
    }

    #[test]
    fn tls_adds_a_round_trip_per_new_connection_and_none_on_an_open_one() {
        let n = 10;
        let plain = predict_small(ModeKind::ShortLivedX6, n);
        let full = predict_small(ModeKind::TlsShortLivedX6, n);
        let resumed = predict_small(ModeKind::TlsResumedX6, n);
        // 3 + ceil(10 / 6) × 3: TCP, TLS, then the exchange.
        assert_eq!(rtts(full), 9.0);
        assert_eq!(
            rtts(full) - rtts(plain),
            3.0,
            "one more per connection in a chain of 3"
        );
        assert_eq!(
            full, resumed,
            "resumption saves computation, not round trips"
        );
        let persistent = predict_small(ModeKind::PersistentX6, n);
        let tls_persistent = predict_small(ModeKind::TlsPersistentX6, n);
        // Once per connection: on the document's, and on the five opened in parallel.
        assert_eq!(rtts(tls_persistent) - rtts(persistent), 2.0);
        let pipelined = predict_small(ModeKind::TlsPipelinedX1, n);
        assert_eq!(rtts(pipelined), 4.0);
    }

    #[test]
    fn http2_multiplexes_like_pipelining_but_a_slow_response_holds_back_only_itself() {
        let n = 10;
        // No slow resource: the document, then every response in one more round trip.
        let h2 = predict_small(ModeKind::H2X1, n);
        assert_eq!((rtts(h2), h2.connections), (3.0, 1));
        assert_eq!(rtts(predict_small(ModeKind::TlsH2X1, n)), 4.0);
        // The first resource 300 ms (6 RTT) slow.
        let slow = Some((0, Duration::from_millis(300)));
        let path = PathModel::with_rtt(RTT);
        let small = vec![1000; n];
        let pipelined = predict(ModeKind::HolPipelinedX1, path, 1000, &small, 32, slow);
        let h2 = predict(ModeKind::HolH2X1, path, 1000, &small, 32, slow);
        // Both end with the slow one: 3 RTT + 300 ms...
        assert_eq!(rtts(h2), 9.0);
        assert_eq!(rtts(pipelined), 9.0);
        // ...but with the slow one last in the page, pipelining still waits for it
        // before the rest, HTTP/2 does not: the others are done 300 ms earlier.
        let last = Some((n - 1, Duration::from_millis(300)));
        let h2_last = predict(ModeKind::HolH2X1, path, 1000, &small, 32, last);
        assert_eq!(rtts(h2_last), 9.0);
        let big = vec![4 * path.initial_window(); n];
        let pipelined = predict(ModeKind::HolPipelinedX1, path, 1000, &big, 32, slow);
        let h2 = predict(ModeKind::HolH2X1, path, 1000, &big, 32, slow);
        // With real bodies behind it, pipelining idles the connection for 300 ms; HTTP/2
        // fills that time with the other responses.
        assert!(
            pipelined.load_ms - h2.load_ms >= 200.0,
            "{pipelined:?} {h2:?}"
        );
    }

    #[test]
    fn large_resources_pay_slow_start_on_cold_connections() {
        let path = PathModel::with_rtt(RTT);
        let big = vec![7 * path.initial_window(); 4];
        let serial = predict(ModeKind::Http10Serial, path, 1000, &big, 32, None);
        let persistent = predict(ModeKind::PersistentX1, path, 1000, &big, 32, None);
        // Cold: handshake + 4 rounds each (the heads tip 7 windows over); warm: fewer.
        assert!(serial.load_ms >= 2.0 * 50.0 + 4.0 * 5.0 * 50.0);
        assert!(
            persistent.load_ms < serial.load_ms * 0.6,
            "{persistent:?} {serial:?}"
        );
    }
}

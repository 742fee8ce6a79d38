//! Prometheus metrics of a running server or proxy, in the text exposition format.
//!
//! Owns the metric names, labels and buckets. Connections feed it through the
//! [`Observer`] hooks (opened, answered, closed); what is cheaper to read than to count —
//! idle connections, bytes of open connections, upstream pool counters — is read when
//! scraped. It must not decide anything about connections.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `hopline_connections_opened_total` | counter | `side` |
//! | `hopline_connections_closed_total` | counter | `side`, `reason` |
//! | `hopline_connections_active` | gauge | `side` |
//! | `hopline_connections_idle` | gauge | `side` |
//! | `hopline_connections_parked` | gauge | `side` (idle connections held outside tasks, by the listener) |
//! | `hopline_idle_timeout_seconds` | gauge | `side` (the idle timeout in force: shorter than `keepalive_timeout` under pressure) |
//! | `hopline_connection_requests` | histogram | `side` (requests a connection carried, at close) |
//! | `hopline_connection_duration_seconds` | histogram | `side` (lifetime, at close) |
//! | `hopline_request_duration_seconds` | histogram | `class`, `upstream` (downstream requests; the group through a proxy) |
//! | `hopline_upstream_header_duration_seconds` | histogram | `upstream` (request handed to the upstream's client → response head) |
//! | `hopline_upstream_server_up` | gauge | `upstream`, `server` |
//! | `hopline_build_info` | gauge | `version`, `profile` |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_start_time_seconds` | | the standard process metrics |
//! | `hopline_responses_total` | counter | `class` (`1xx` … `5xx`) |
//! | `hopline_bytes_total` | counter | `side`, `direction` (`in`, `out`) |
//! | `hopline_upstream_checkouts_total` | counter | `upstream`, `result` (`reused`, `new`, `stale_evicted`, `expired_evicted`, `waited`) |
//! | `hopline_upstream_retries_total` | counter | `upstream` |
//! | `hopline_upstream_connections_total`, `hopline_upstream_requests_total` | counter | `upstream` (their ratio is the requests per connection) |
//! | `hopline_upstream_learned_idle_timeout_seconds` | gauge | `upstream` (present once learned) |
//! | `hopline_upstream_connections_closed_total` | counter | `upstream`, `reason` (a proxy's upstream connections by group) |
//! | `hopline_tls_handshakes_total` | counter | `side`, `kind` (`full`, `resumed`) |
//! | `hopline_tls_handshake_duration_seconds` | histogram | `side` |
//! | `hopline_tls_failures_total` | counter | `side`, `reason` (`bad_certificate`, `unknown_ca`, `protocol`, `timeout`, `plain_http`, `io`) |
//! | `hopline_http2_streams_open` | gauge | `side` (streams being served downstream, awaiting or reading their response upstream) |
//! | `hopline_http2_streams_total` | counter | `side` |
//! | `hopline_http2_streams_per_connection` | histogram | `side` (streams an HTTP/2 connection carried, at close) |
//! | `hopline_http2_goaways_total` | counter | `side`, `direction` (`sent`, `received`), `reason` (a close reason sent; an error code received) |
//! | `hopline_http2_resets_total` | counter | `side`, `by` (`peer`, `local`) |
//! | `hopline_handler_panics_total` | counter | — (a service or its body panicked; the server went on) |
//!
//! `side` is `downstream` (clients of this process) or `upstream` (servers it connects
//! to). Bytes come from the kernel (`TCP_INFO`: received, and sent and acknowledged).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::conn::{
    ClosedRecord, ConnSide, Http2Event, LiveConns, Observer, Protocol, RequestRecord,
};
use crate::transport::tls::{Handshake, TlsFailure};

mod process;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SideLabel {
    side: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    side: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    side: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GoAwayLabels {
    side: &'static str,
    direction: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResetLabels {
    side: &'static str,
    by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    side: &'static str,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckoutLabels {
    upstream: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: String,
}

/// The counters of one upstream group's pool and client, as read at a scrape.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamCounts {
    /// The group's name.
    pub name: String,
    /// Checkouts served by an idle connection.
    pub reused: u64,
    /// Checkouts that opened a new connection.
    pub new: u64,
    /// Idle connections found closed by their peer.
    pub stale_evicted: u64,
    /// Idle connections retired by a timer.
    pub expired_evicted: u64,
    /// Checkouts that waited for the per-host cap.
    pub waited: u64,
    /// Requests sent again (RFC 9110 §9.2.2) or re-queued from a pipelined connection.
    pub retries: u64,
    /// Connections the group's client opened, and the requests it sent (reuse: requests
    /// per connection).
    pub connections: u64,
    /// Requests the group's client sent.
    pub requests: u64,
    /// The idle timeout learned of its servers (they close idle connections at this age
    /// without advertising it), if any.
    pub learned_idle_timeout: Option<std::time::Duration>,
    /// Its servers (`host:port`) and whether each is up (not skipped after refusing
    /// connections).
    pub servers: Vec<(String, bool)>,
}

/// Where upstream counters come from (the proxy, which may be reloaded).
pub type UpstreamSource = Arc<dyn Fn() -> Vec<UpstreamCounts> + Send + Sync>;

fn side_index(side: ConnSide) -> usize {
    match side {
        ConnSide::Downstream => 0,
        ConnSide::Upstream => 1,
    }
}

const SIDES: [ConnSide; 2] = [ConnSide::Downstream, ConnSide::Upstream];

/// The metrics of one process.
pub struct Metrics {
    registry: Registry,
    recorder: Arc<Recorder>,
    upstreams: Arc<RwLock<Option<UpstreamSource>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What connections report into (the [`Observer`]).
pub struct Recorder {
    opened: [Counter; 2],
    closed: Family<CloseLabels, Counter>,
    active: [Gauge; 2],
    conn_requests: [Histogram; 2],
    conn_duration: [Histogram; 2],
    requests: RequestFamilies,
    /// Bytes of closed connections: [side][in, out].
    closed_bytes: [[AtomicU64; 2]; 2],
    /// Requests carried by closed connections, by side.
    closed_requests: [AtomicU64; 2],
    /// TLS handshakes: [side][full, resumed].
    handshakes: [[Counter; 2]; 2],
    handshake_duration: [Histogram; 2],
    tls_failures: Family<CloseLabels, Counter>,
    http2: Http2Families,
    idle: IdleFamilies,
}

/// Idle connections and their closes: parked, the idle timeout in force, upstream closes
/// by group.
struct IdleFamilies {
    parked: [Gauge; 2],
    idle_timeout: [Gauge<f64, AtomicU64>; 2],
    /// Upstream connections closed, by group and reason.
    group_closed: Family<GroupCloseLabels, Counter>,
}

impl IdleFamilies {
    fn register(registry: &mut Registry) -> Self {
        let parked = Family::<SideLabel, Gauge>::default();
        registry.register(
            "connections_parked",
            "Idle connections held outside tasks by the listener",
            parked.clone(),
        );
        let idle_timeout = Family::<SideLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "idle_timeout_seconds",
            "The idle (keep-alive) timeout in force; shorter than configured under pressure",
            idle_timeout.clone(),
        );
        let group_closed = Family::<GroupCloseLabels, Counter>::default();
        registry.register(
            "upstream_connections_closed",
            "Upstream connections closed, by group and reason",
            group_closed.clone(),
        );
        let side = |side: ConnSide| SideLabel {
            side: side.as_str(),
        };
        IdleFamilies {
            parked: SIDES.map(|s| parked.get_or_create_owned(&side(s))),
            idle_timeout: SIDES.map(|s| idle_timeout.get_or_create_owned(&side(s))),
            group_closed,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupCloseLabels {
    upstream: GroupName,
    reason: &'static str,
}

impl Metrics {
    /// Metrics over `live` (the registry the server and client register connections in).
    pub fn new(live: Arc<LiveConns>) -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector {
            started: std::time::SystemTime::now(),
        }));
        let registry = root.sub_registry_with_prefix("hopline");
        registry.register_collector(Box::new(process::BuildInfo));
        let opened = Family::<SideLabel, Counter>::default();
        let closed = Family::<CloseLabels, Counter>::default();
        let active = Family::<SideLabel, Gauge>::default();
        let conn_requests = Family::<SideLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1000.0, 10_000.0])
        });
        let conn_duration = Family::<SideLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(CONNECTION_SECONDS)
        });
        let tls = TlsFamilies::register(registry);
        registry.register("connections_opened", "Connections opened", opened.clone());
        registry.register(
            "connections_closed",
            "Connections closed, by reason",
            closed.clone(),
        );
        registry.register("connections_active", "Open connections", active.clone());
        registry.register(
            "connection_requests",
            "Requests a connection carried, observed when it closed",
            conn_requests.clone(),
        );
        registry.register(
            "connection_duration_seconds",
            "How long a connection was open, observed when it closed",
            conn_duration.clone(),
        );
        let side = |side: ConnSide| SideLabel {
            side: side.as_str(),
        };
        let recorder = Arc::new(Recorder {
            idle: IdleFamilies::register(registry),
            opened: SIDES.map(|s| opened.get_or_create_owned(&side(s))),
            closed,
            active: SIDES.map(|s| active.get_or_create_owned(&side(s))),
            conn_requests: SIDES.map(|s| conn_requests.get_or_create_owned(&side(s))),
            conn_duration: SIDES.map(|s| conn_duration.get_or_create_owned(&side(s))),
            requests: RequestFamilies::register(registry),
            closed_bytes: Default::default(),
            closed_requests: Default::default(),
            handshakes: SIDES.map(|s| {
                ["full", "resumed"].map(|kind| {
                    tls.handshakes.get_or_create_owned(&HandshakeLabels {
                        side: s.as_str(),
                        kind,
                    })
                })
            }),
            handshake_duration: SIDES.map(|s| tls.duration.get_or_create_owned(&side(s))),
            tls_failures: tls.failures,
            http2: Http2Families::register(registry),
        });
        registry.register_collector(Box::new(ScrapeTime {
            live,
            recorder: recorder.clone(),
        }));
        let upstreams = Arc::new(RwLock::new(None));
        registry.register_collector(Box::new(UpstreamCollector {
            source: upstreams.clone(),
        }));
        Metrics {
            registry: root,
            recorder,
            upstreams,
        }
    }

    /// Connections opened on `side` so far.
    pub fn opened(&self, side: ConnSide) -> u64 {
        self.recorder.opened[side_index(side)].get()
    }

    /// The upstream groups' counters now (none outside a proxy).
    pub fn upstream_counts(&self) -> Vec<UpstreamCounts> {
        let source = self
            .upstreams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        source.map(|source| source()).unwrap_or_default()
    }

    /// Requests carried by connections on `side` that have closed (add the open ones'
    /// for every request so far).
    pub fn closed_requests(&self, side: ConnSide) -> u64 {
        self.recorder.closed_requests[side_index(side)].load(Ordering::Relaxed)
    }

    /// The observer to give servers and clients.
    pub fn observer(&self) -> Arc<Recorder> {
        self.recorder.clone()
    }

    /// Reads upstream pool counters from `source` at every scrape (replacing an earlier
    /// source: a reloaded proxy has new pools, whose counters start again from zero).
    pub fn set_upstreams(&self, source: UpstreamSource) {
        *self.upstreams.write().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }
}

/// Status classes, in the order of [`RequestFamilies::local`].
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// An upstream group's name as a label value (shared, not copied per request).
#[derive(Clone, Debug, Hash, PartialEq, Eq, Default)]
struct GroupName(Option<Arc<str>>);

impl prometheus_client::encoding::EncodeLabelValue for GroupName {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.0.as_deref().unwrap_or(""))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    class: &'static str,
    /// The upstream group that answered (a proxy's); empty for the server's own answers.
    upstream: GroupName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    upstream: GroupName,
}

/// The downstream request families: durations by status class and upstream group,
/// responses by class, the upstream's header time by group, panics.
struct RequestFamilies {
    /// Durations of answers without an upstream group, by class: no label lookup for them.
    local: [Histogram; 5],
    duration: Family<RequestLabels, Histogram>,
    responses: [Counter; 5],
    upstream_header: Family<GroupLabel, Histogram>,
    panics: Counter,
}

impl RequestFamilies {
    fn register(registry: &mut Registry) -> Self {
        let duration = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(REQUEST_SECONDS)
        });
        let responses = Family::<ClassLabel, Counter>::default();
        let upstream_header = Family::<GroupLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(REQUEST_SECONDS)
        });
        let panics = Counter::default();
        registry.register(
            "request_duration_seconds",
            "Downstream requests, from the complete head to the response handed to the socket, \
             by status class and (through a proxy) upstream group",
            duration.clone(),
        );
        registry.register(
            "responses",
            "Downstream responses by status class",
            responses.clone(),
        );
        registry.register(
            "upstream_header_duration_seconds",
            "From a request handed to the upstream's client to its response head (connecting \
             included), by upstream group",
            upstream_header.clone(),
        );
        registry.register(
            "handler_panics",
            "Panics in a service or its body (the request failed, the server went on)",
            panics.clone(),
        );
        let local = CLASSES.map(|class| {
            duration.get_or_create_owned(&RequestLabels {
                class,
                upstream: GroupName::default(),
            })
        });
        RequestFamilies {
            local,
            duration,
            responses: CLASSES.map(|class| responses.get_or_create_owned(&ClassLabel { class })),
            upstream_header,
            panics,
        }
    }

    fn record(&self, record: &RequestRecord<'_>) {
        let class = usize::from(record.status.as_u16() / 100).clamp(1, 5) - 1;
        self.responses[class].inc();
        let seconds = record.duration.as_secs_f64();
        match record
            .upstream
            .as_ref()
            .and_then(|u| u.group.clone().map(|g| (u, g)))
        {
            None => self.local[class].observe(seconds),
            Some((upstream, group)) => {
                let upstream_label = GroupName(Some(group));
                let labels = RequestLabels {
                    class: CLASSES[class],
                    upstream: upstream_label.clone(),
                };
                self.duration.get_or_create(&labels).observe(seconds);
                let header = upstream.header_time.as_secs_f64();
                let labels = GroupLabel {
                    upstream: upstream_label,
                };
                self.upstream_header.get_or_create(&labels).observe(header);
            }
        }
    }
}

/// Bounds of request-scale histograms, seconds: 100 µs to 10 s in 1-2.5-5 steps.
const REQUEST_SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Bounds of connection lifetimes, seconds: 1 ms to a day.
const CONNECTION_SECONDS: [f64; 12] = [
    0.001, 0.01, 0.1, 1.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0,
];

/// The TLS metric families.
struct TlsFamilies {
    handshakes: Family<HandshakeLabels, Counter>,
    duration: Family<SideLabel, Histogram>,
    failures: Family<CloseLabels, Counter>,
}

impl TlsFamilies {
    fn register(registry: &mut Registry) -> TlsFamilies {
        let tls = TlsFamilies {
            handshakes: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(REQUEST_SECONDS)),
            failures: Family::default(),
        };
        registry.register(
            "tls_handshakes",
            "TLS handshakes completed, full or resumed",
            tls.handshakes.clone(),
        );
        registry.register(
            "tls_handshake_duration_seconds",
            "TLS handshake time (server: from the first byte; client: after the TCP connect)",
            tls.duration.clone(),
        );
        registry.register(
            "tls_failures",
            "TLS handshakes that failed, by reason",
            tls.failures.clone(),
        );
        tls
    }
}

/// The HTTP/2 metric families.
struct Http2Families {
    open: Family<SideLabel, Gauge>,
    streams: Family<SideLabel, Counter>,
    per_connection: Family<SideLabel, Histogram>,
    goaways: Family<GoAwayLabels, Counter>,
    resets: Family<ResetLabels, Counter>,
}

impl Http2Families {
    fn register(registry: &mut Registry) -> Http2Families {
        let http2 = Http2Families {
            open: Family::default(),
            streams: Family::default(),
            per_connection: Family::new_with_constructor(|| {
                Histogram::new([1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1000.0, 10_000.0])
            }),
            goaways: Family::default(),
            resets: Family::default(),
        };
        registry.register(
            "http2_streams_open",
            "HTTP/2 streams being served",
            http2.open.clone(),
        );
        registry.register(
            "http2_streams",
            "HTTP/2 streams started",
            http2.streams.clone(),
        );
        registry.register(
            "http2_streams_per_connection",
            "Streams an HTTP/2 connection carried, observed when it closed",
            http2.per_connection.clone(),
        );
        registry.register(
            "http2_goaways",
            "HTTP/2 GOAWAY frames sent and received, by reason",
            http2.goaways.clone(),
        );
        registry.register(
            "http2_resets",
            "HTTP/2 streams reset before completing, by who reset them",
            http2.resets.clone(),
        );
        http2
    }

    fn record(&self, side: ConnSide, event: Http2Event) {
        let side = side.as_str();
        match event {
            Http2Event::StreamOpened => {
                self.open.get_or_create(&SideLabel { side }).inc();
                self.streams.get_or_create(&SideLabel { side }).inc();
            }
            Http2Event::StreamClosed => {
                self.open.get_or_create(&SideLabel { side }).dec();
            }
            Http2Event::GoAway { sent, reason } => {
                let direction = if sent { "sent" } else { "received" };
                let labels = GoAwayLabels {
                    side,
                    direction,
                    reason,
                };
                self.goaways.get_or_create(&labels).inc();
            }
            Http2Event::Reset { by_peer } => {
                let by = if by_peer { "peer" } else { "local" };
                self.resets.get_or_create(&ResetLabels { side, by }).inc();
            }
        }
    }
}

impl Observer for Recorder {
    fn opened(&self, side: ConnSide) {
        let i = side_index(side);
        self.opened[i].inc();
        self.active[i].inc();
    }

    fn request(&self, record: &RequestRecord<'_>) {
        self.requests.record(record);
    }

    fn closed(&self, record: &ClosedRecord) {
        let i = side_index(record.side);
        self.active[i].dec();
        self.closed
            .get_or_create(&CloseLabels {
                side: record.side.as_str(),
                reason: record.reason,
            })
            .inc();
        self.conn_requests[i].observe(record.requests as f64);
        self.conn_duration[i].observe(record.lifetime.as_secs_f64());
        self.closed_bytes[i][0].fetch_add(record.bytes_in, Ordering::Relaxed);
        self.closed_bytes[i][1].fetch_add(record.bytes_out, Ordering::Relaxed);
        self.closed_requests[i].fetch_add(record.requests, Ordering::Relaxed);
        if let Some(group) = &record.group {
            let labels = GroupCloseLabels {
                upstream: GroupName(Some(group.clone())),
                reason: record.reason,
            };
            self.idle.group_closed.get_or_create(&labels).inc();
        }
        if record.protocol == Protocol::Http2 {
            let side = SideLabel {
                side: record.side.as_str(),
            };
            let per_connection = self.http2.per_connection.get_or_create(&side);
            per_connection.observe(record.requests as f64);
        }
    }

    fn http2(&self, side: ConnSide, event: Http2Event) {
        self.http2.record(side, event);
    }

    fn panicked(&self, _side: ConnSide) {
        self.requests.panics.inc();
    }

    fn parked(&self, side: ConnSide, delta: i64) {
        self.idle.parked[side_index(side)].inc_by(delta);
    }

    fn idle_timeout(&self, side: ConnSide, timeout: std::time::Duration) {
        self.idle.idle_timeout[side_index(side)].set(timeout.as_secs_f64());
    }

    fn tls_handshake(&self, side: ConnSide, handshake: &Handshake) {
        let i = side_index(side);
        self.handshakes[i][usize::from(handshake.info.resumed)].inc();
        self.handshake_duration[i].observe(handshake.duration.as_secs_f64());
    }

    fn tls_failure(&self, side: ConnSide, failure: &TlsFailure) {
        self.tls_failures
            .get_or_create(&CloseLabels {
                side: side.as_str(),
                reason: failure.label(),
            })
            .inc();
    }
}

/// Metrics read when scraped: idle connections, and bytes (closed connections' totals
/// plus what open ones have carried so far).
#[derive(Debug)]
struct ScrapeTime {
    live: Arc<LiveConns>,
    recorder: Arc<Recorder>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Collector for ScrapeTime {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let views = self.live.snapshot();
        let mut idle = [0i64; 2];
        let mut bytes = [[0u64; 2]; 2];
        for (i, side) in SIDES.into_iter().enumerate() {
            bytes[i][0] = self.recorder.closed_bytes[i][0].load(Ordering::Relaxed);
            bytes[i][1] = self.recorder.closed_bytes[i][1].load(Ordering::Relaxed);
            for view in views.iter().filter(|v| v.side == side) {
                if view.state == crate::conn::ConnState::Idle {
                    idle[i] += 1;
                }
                if let Some(tcp) = &view.tcp {
                    bytes[i][0] += tcp.bytes_received;
                    bytes[i][1] += tcp.bytes_acked;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "connections_idle",
            "Open connections with nothing to do (between requests, or pooled).",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for (i, side) in SIDES.into_iter().enumerate() {
            let label = SideLabel {
                side: side.as_str(),
            };
            ConstGauge::new(idle[i]).encode(family.encode_family(&label)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "bytes",
            "Bytes received (in) and sent and acknowledged (out), from TCP_INFO.",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (i, side) in SIDES.into_iter().enumerate() {
            for (j, direction) in ["in", "out"].into_iter().enumerate() {
                let label = BytesLabels {
                    side: side.as_str(),
                    direction,
                };
                ConstCounter::new(bytes[i][j]).encode(family.encode_family(&label)?)?;
            }
        }
        Ok(())
    }
}

/// A counter per upstream group: its name, help, and where its value comes from.
type GroupCounter = (&'static str, &'static str, fn(&UpstreamCounts) -> u64);

/// Upstream pool and retry counters, read from the proxy when scraped.
struct UpstreamCollector {
    source: Arc<RwLock<Option<UpstreamSource>>>,
}

impl std::fmt::Debug for UpstreamCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCollector").finish_non_exhaustive()
    }
}

impl Collector for UpstreamCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let source = self
            .source
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let upstreams = source.map(|source| source()).unwrap_or_default();
        let mut family = encoder.encode_descriptor(
            "upstream_checkouts",
            "Upstream connection checkouts by result.",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for counts in &upstreams {
            for (result, value) in [
                ("reused", counts.reused),
                ("new", counts.new),
                ("stale_evicted", counts.stale_evicted),
                ("expired_evicted", counts.expired_evicted),
                ("waited", counts.waited),
            ] {
                let label = CheckoutLabels {
                    upstream: counts.name.clone(),
                    result,
                };
                ConstCounter::new(value).encode(family.encode_family(&label)?)?;
            }
        }
        let per_group: [GroupCounter; 3] = [
            (
                "upstream_retries",
                "Upstream requests sent again after failing unanswered (RFC 9110 9.2.2).",
                |c| c.retries,
            ),
            (
                "upstream_connections",
                "Upstream connections opened, by group.",
                |c| c.connections,
            ),
            (
                "upstream_requests",
                "Requests sent upstream, by group (per connection opened: the reuse).",
                |c| c.requests,
            ),
        ];
        for (name, help, value) in per_group {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for counts in &upstreams {
                let label = UpstreamLabel {
                    upstream: counts.name.clone(),
                };
                ConstCounter::new(value(counts)).encode(family.encode_family(&label)?)?;
            }
        }
        encode_gauges(&mut encoder, &upstreams)?;
        Ok(())
    }
}

/// The upstream gauges: learned idle timeouts by group, servers up.
fn encode_gauges(
    encoder: &mut DescriptorEncoder,
    upstreams: &[UpstreamCounts],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "upstream_learned_idle_timeout_seconds",
        "The idle timeout learned of a group's servers (they close idle connections at this \
             age without advertising it; pooled connections retire a margin before).",
        None,
        ConstGauge::new(0.0f64).metric_type(),
    )?;
    for counts in upstreams {
        if let Some(learned) = counts.learned_idle_timeout {
            let label = UpstreamLabel {
                upstream: counts.name.clone(),
            };
            ConstGauge::new(learned.as_secs_f64()).encode(family.encode_family(&label)?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "upstream_server_up",
        "Whether an upstream server takes requests (0 while skipped after refusing connections).",
        None,
        ConstGauge::new(0i64).metric_type(),
    )?;
    for counts in upstreams {
        for (server, up) in &counts.servers {
            let labels = [
                ("upstream", counts.name.as_str()),
                ("server", server.as_str()),
            ];
            ConstGauge::new(i64::from(*up)).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// Several observers as one.
pub struct Fanout(pub Vec<Arc<dyn Observer>>);

impl Observer for Fanout {
    fn opened(&self, side: ConnSide) {
        self.0.iter().for_each(|o| o.opened(side));
    }

    fn request(&self, record: &RequestRecord<'_>) {
        self.0.iter().for_each(|o| o.request(record));
    }

    fn closed(&self, record: &ClosedRecord) {
        self.0.iter().for_each(|o| o.closed(record));
    }

    fn tls_handshake(&self, side: ConnSide, handshake: &Handshake) {
        self.0.iter().for_each(|o| o.tls_handshake(side, handshake));
    }

    fn tls_failure(&self, side: ConnSide, failure: &TlsFailure) {
        self.0.iter().for_each(|o| o.tls_failure(side, failure));
    }

    fn http2(&self, side: ConnSide, event: Http2Event) {
        self.0.iter().for_each(|o| o.http2(side, event));
    }

    fn panicked(&self, side: ConnSide) {
        self.0.iter().for_each(|o| o.panicked(side));
    }

    fn parked(&self, side: ConnSide, delta: i64) {
        self.0.iter().for_each(|o| o.parked(side, delta));
    }

    fn idle_timeout(&self, side: ConnSide, timeout: std::time::Duration) {
        self.0.iter().for_each(|o| o.idle_timeout(side, timeout));
    }

    fn head_sent(&self, side: ConnSide, head: &[u8]) {
        self.0.iter().for_each(|o| o.head_sent(side, head));
    }

    fn head_received(&self, side: ConnSide, head: &[u8]) {
        self.0.iter().for_each(|o| o.head_received(side, head));
    }
}

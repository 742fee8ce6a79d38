//! `hopline demo`: what each connection type costs, measured end to end over an emulated
//! network, next to what the path model predicts.
//!
//! For every round-trip time and connection type, the demo starts fresh emulated links
//! ([`crate::netem`]) in front of the origin (the embedded one, serving the synthetic page
//! of [`crate::page`], or an external address), optionally with a proxy hop, and loads the
//! page with a client of that connection type ([`load`]). It records every request's
//! timing and connection, the connections and handshakes, and the bytes of heads and
//! bodies, and asks the model ([`model`]) what it predicts for the same page. [`report`]
//! turns that into the terminal table, the HTML report and JSON.
//!
//! Owns the scenarios. It must not implement protocol logic: the client, server, proxy and
//! link do the work.
//!
//! | module | owns |
//! |---|---|
//! | [`load`] | loading a page like a browser, with per-request timings |
//! | [`model`] | the model's prediction for each connection type |
//! | [`report`] | the table, the HTML report with charts, JSON |
//! | [`tls`] | the throwaway certificate authority of the TLS modes |

pub mod load;
pub mod model;
pub mod report;
pub mod tls;
pub mod warmth;

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderValue, Version};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::client::{Client, ClientOptions, Mode};
use crate::conn::{ClosedRecord, ConnSide, Hooks, Observer, RequestRecord, ServerConfig};
use crate::error::BoxError;
use crate::netem::{Link, LinkStats, PathModel};
use crate::origin::Origin;
use crate::page::PageSpec;
use crate::pool::PoolConfig;
use crate::proxy::upstream::Upstreams;
use crate::proxy::{Proxy, ProxyConfig};
use crate::server::{ListenerConfig, Server};
use crate::transport::tls::{Handshake, TlsAcceptor, TlsConnector};
use load::{Fetching, PageLoad, RequestTiming, Target};
use model::Prediction;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Connections per host a browser opens (Chrome, Firefox and Safari all use 6).
pub const BROWSER_CONNECTIONS: usize = 6;

/// A connection type the demo loads the page with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeKind {
    /// HTTP/1.0 without keep-alive, one request at a time: a connection per request.
    Http10Serial,
    /// Short-lived connections, six in parallel (browsers before keep-alive).
    ShortLivedX6,
    /// One persistent connection, one request at a time.
    PersistentX1,
    /// Six persistent connections (how browsers load HTTP/1.1 pages).
    PersistentX6,
    /// One pipelined connection: every request written before the responses return.
    PipelinedX1,
    /// Through a proxy hop: six persistent connections to the proxy, which pools its
    /// upstream connections.
    ProxyPooled,
    /// Through a proxy hop whose upstream connections are short-lived.
    ProxyShortLived,
    /// Over TLS: short-lived connections, six in parallel, each a full handshake.
    TlsShortLivedX6,
    /// Over TLS: short-lived connections, six in parallel, resuming the first session.
    TlsResumedX6,
    /// Over TLS: six persistent connections.
    TlsPersistentX6,
    /// Over TLS: one pipelined connection.
    TlsPipelinedX1,
    /// One HTTP/2 connection (h2c), every request multiplexed on it.
    H2X1,
    /// Over TLS: one HTTP/2 connection (ALPN h2).
    TlsH2X1,
    /// Head-of-line: the first resource answered [`HOL_DELAY_MS`] late, one pipelined
    /// connection (every response behind it waits).
    HolPipelinedX1,
    /// Head-of-line: the first resource answered [`HOL_DELAY_MS`] late, one HTTP/2
    /// connection (the other responses go past it).
    HolH2X1,
}

/// How late the head-of-line modes' first resource is answered (a slow backend).
pub const HOL_DELAY_MS: u64 = 300;

/// Whether a connection type speaks TLS, and how its new connections shake hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsUse {
    /// Plain TCP.
    Off,
    /// TLS, every new connection a full handshake (no session kept).
    FullHandshakes,
    /// TLS, new connections resume the session of an earlier one.
    Resumption,
}

impl Serialize for ModeKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// How a connection type loads the page.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Connections are kept open and reused.
    pub persistent: bool,
    /// Requests are pipelined.
    pub pipelined: bool,
    /// Connections (and workers) at most.
    pub connections: usize,
    /// Requests go out as HTTP/1.0.
    pub http10: bool,
    /// TLS, and how new connections shake hands.
    pub tls: TlsUse,
    /// HTTP/2: requests multiplexed on the connection.
    pub h2: bool,
}

impl Plan {
    /// Workers fetching resources in parallel.
    pub fn workers(&self) -> usize {
        self.connections.max(1)
    }
}

impl ModeKind {
    /// Every connection type: plaintext slowest first, then over TLS, then the
    /// head-of-line pair.
    pub const ALL: [ModeKind; 15] = [
        ModeKind::Http10Serial,
        ModeKind::ShortLivedX6,
        ModeKind::PersistentX1,
        ModeKind::PersistentX6,
        ModeKind::PipelinedX1,
        ModeKind::H2X1,
        ModeKind::ProxyPooled,
        ModeKind::ProxyShortLived,
        ModeKind::TlsShortLivedX6,
        ModeKind::TlsResumedX6,
        ModeKind::TlsPersistentX6,
        ModeKind::TlsPipelinedX1,
        ModeKind::TlsH2X1,
        ModeKind::HolPipelinedX1,
        ModeKind::HolH2X1,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ModeKind::Http10Serial => "http1.0-serial",
            ModeKind::ShortLivedX6 => "short-lived-x6",
            ModeKind::PersistentX1 => "persistent-x1",
            ModeKind::PersistentX6 => "persistent-x6",
            ModeKind::PipelinedX1 => "pipelined-x1",
            ModeKind::ProxyPooled => "proxy-pooled",
            ModeKind::ProxyShortLived => "proxy-short-lived",
            ModeKind::TlsShortLivedX6 => "tls-short-lived-x6",
            ModeKind::TlsResumedX6 => "tls-resumed-x6",
            ModeKind::TlsPersistentX6 => "tls-persistent-x6",
            ModeKind::TlsPipelinedX1 => "tls-pipelined-x1",
            ModeKind::H2X1 => "h2-x1",
            ModeKind::TlsH2X1 => "tls-h2-x1",
            ModeKind::HolPipelinedX1 => "hol-pipelined-x1",
            ModeKind::HolH2X1 => "hol-h2-x1",
        }
    }

    /// One line saying what it is.
    pub fn description(self) -> &'static str {
        match self {
            ModeKind::Http10Serial => "HTTP/1.0, a new connection per request, one at a time",
            ModeKind::ShortLivedX6 => "a new connection per request, 6 in parallel",
            ModeKind::PersistentX1 => "one keep-alive connection, one request at a time",
            ModeKind::PersistentX6 => "6 keep-alive connections (a browser)",
            ModeKind::PipelinedX1 => "one connection, requests pipelined",
            ModeKind::ProxyPooled => "6 keep-alive connections to a proxy that pools upstream",
            ModeKind::ProxyShortLived => {
                "6 keep-alive connections to a proxy with short-lived upstream connections"
            }
            ModeKind::TlsShortLivedX6 => {
                "TLS: a new connection per request, 6 in parallel, a full handshake each"
            }
            ModeKind::TlsResumedX6 => {
                "TLS: a new connection per request, 6 in parallel, sessions resumed"
            }
            ModeKind::TlsPersistentX6 => "TLS: 6 keep-alive connections (a browser over HTTPS)",
            ModeKind::TlsPipelinedX1 => "TLS: one connection, requests pipelined",
            ModeKind::H2X1 => "one HTTP/2 connection (h2c), every request multiplexed",
            ModeKind::TlsH2X1 => "TLS: one HTTP/2 connection (ALPN h2), every request multiplexed",
            ModeKind::HolPipelinedX1 => {
                "first resource 300 ms slow: one pipelined connection, every response waits behind it"
            }
            ModeKind::HolH2X1 => {
                "first resource 300 ms slow: one HTTP/2 connection, the others go past it"
            }
        }
    }

    /// Parses a name (see [`ModeKind::name`]).
    pub fn parse(name: &str) -> Result<ModeKind, String> {
        ModeKind::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = ModeKind::ALL.iter().map(|m| m.name()).collect();
                format!("unknown mode `{name}`; one of {}", names.join(", "))
            })
    }

    /// How the client side loads the page.
    pub fn plan(self) -> Plan {
        let plan = |persistent, pipelined, connections, http10| Plan {
            persistent,
            pipelined,
            connections,
            http10,
            tls: TlsUse::Off,
            h2: false,
        };
        let h2 = Plan {
            h2: true,
            ..plan(true, false, 1, false)
        };
        let tls = |plan: Plan, tls| Plan { tls, ..plan };
        let six = BROWSER_CONNECTIONS;
        match self {
            ModeKind::Http10Serial => plan(false, false, 1, true),
            ModeKind::ShortLivedX6 => plan(false, false, six, false),
            ModeKind::PersistentX1 => plan(true, false, 1, false),
            ModeKind::PersistentX6 | ModeKind::ProxyPooled | ModeKind::ProxyShortLived => {
                plan(true, false, six, false)
            }
            ModeKind::PipelinedX1 | ModeKind::HolPipelinedX1 => plan(true, true, 1, false),
            ModeKind::H2X1 | ModeKind::HolH2X1 => h2,
            ModeKind::TlsH2X1 => tls(h2, TlsUse::Resumption),
            ModeKind::TlsShortLivedX6 => {
                tls(plan(false, false, six, false), TlsUse::FullHandshakes)
            }
            ModeKind::TlsResumedX6 => tls(plan(false, false, six, false), TlsUse::Resumption),
            ModeKind::TlsPersistentX6 => tls(plan(true, false, six, false), TlsUse::Resumption),
            ModeKind::TlsPipelinedX1 => tls(plan(true, true, 1, false), TlsUse::Resumption),
        }
    }

    /// The proxy's upstream connection type, for the proxy modes.
    pub fn upstream_mode(self) -> Option<Mode> {
        match self {
            ModeKind::ProxyPooled => Some(Mode::KeepAlive),
            ModeKind::ProxyShortLived => Some(Mode::Close),
            _ => None,
        }
    }

    /// Whether it speaks TLS.
    pub fn is_tls(self) -> bool {
        self.plan().tls != TlsUse::Off
    }

    /// How late its page's first resource is answered (the head-of-line modes).
    pub fn slow_first_resource(self) -> Option<Duration> {
        matches!(self, ModeKind::HolPipelinedX1 | ModeKind::HolH2X1)
            .then(|| Duration::from_millis(HOL_DELAY_MS))
    }

    /// Whether it needs the embedded origin (TLS certificates made here, a slow resource).
    pub fn needs_embedded_origin(self) -> bool {
        self.is_tls() || self.slow_first_resource().is_some()
    }

    /// The client for this connection type (TLS through `connector`, for the TLS modes).
    fn client(self, depth: usize, connector: Option<TlsConnector>, hooks: Hooks) -> Client {
        let plan = self.plan();
        let mut options = ClientOptions {
            mode: match (plan.persistent, plan.pipelined) {
                (false, _) => Mode::Close,
                (true, false) => Mode::KeepAlive,
                (true, true) => Mode::Pipeline { depth },
            },
            pool: PoolConfig {
                max_connections_per_host: Some(plan.connections),
                ..PoolConfig::default()
            },
            ..ClientOptions::default()
        };
        if plan.http10 {
            options.conn.version = Version::HTTP_10;
        }
        if plan.h2 {
            options.protocol = crate::client::HopProtocol::Http2;
        }
        options.tls = connector;
        options.conn.hooks = hooks;
        Client::new(options)
    }

    fn fetching(self) -> Fetching {
        let plan = self.plan();
        if plan.pipelined || plan.h2 {
            Fetching::AllAtOnce
        } else {
            Fetching::Workers(plan.workers())
        }
    }
}

/// What the demo loads.
#[derive(Debug, Clone)]
pub enum PageSource {
    /// The embedded origin serving the synthetic page.
    Embedded(PageSpec),
    /// An external server: its address, the `Host` to send and the page's path and query.
    External {
        /// Where it listens.
        addr: SocketAddr,
        /// Its authority, sent as `Host`.
        host: String,
        /// The page's path and query.
        page: String,
    },
}

/// The demo's settings.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Round-trip times, one pass over the modes each.
    pub rtts: Vec<Duration>,
    /// Bandwidth cap each way in bytes per second (`None`: unlimited).
    pub bandwidth: Option<u64>,
    /// The page.
    pub source: PageSource,
    /// Connection types to compare.
    pub modes: Vec<ModeKind>,
    /// Pipelining depth.
    pub depth: usize,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            rtts: [0, 20, 100].map(Duration::from_millis).to_vec(),
            bandwidth: None,
            source: PageSource::Embedded(PageSpec::default()),
            modes: ModeKind::ALL.to_vec(),
            depth: 32,
        }
    }
}

/// One page load: a connection type at a round-trip time.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// The connection type.
    pub mode: ModeKind,
    /// Round-trip time of each emulated link, in milliseconds.
    pub rtt_ms: f64,
    /// Page load time: first request to last byte.
    pub load_ms: f64,
    /// Connections the client opened.
    pub connections: u64,
    /// TCP handshakes over every emulated link (the proxy's upstream ones included).
    pub handshakes: u64,
    /// TLS handshakes the client made, and how many of them resumed a session.
    pub tls_handshakes: u64,
    /// See `tls_handshakes`.
    pub tls_resumed: u64,
    /// Requests (the document and its resources).
    pub requests: u64,
    /// Bytes of request and response heads on the client's link.
    pub header_bytes: u64,
    /// Bytes of response bodies.
    pub body_bytes: u64,
    /// What the model predicts for the same page.
    pub model: Prediction,
    /// Every request, the document first.
    pub timeline: Vec<RequestTiming>,
    /// Through a proxy: every request the proxy sent upstream, on the same clock
    /// (`connection` is the proxy's upstream connection); empty without a proxy.
    pub upstream: Vec<RequestTiming>,
}

impl Run {
    /// Requests per connection the client opened.
    pub fn requests_per_connection(&self) -> f64 {
        self.requests as f64 / self.connections.max(1) as f64
    }
}

/// Everything a demo measured.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// What was loaded, as a URL-like description.
    pub page: String,
    /// The page's resources (the document excluded) and their body bytes.
    pub resources: usize,
    /// Body bytes of the document and resources.
    pub page_bytes: u64,
    /// Bandwidth cap each way, bytes per second.
    pub bandwidth: Option<u64>,
    /// Pipelining depth.
    pub depth: usize,
    /// The path model's constants.
    pub initial_window_bytes: u64,
    /// One entry per mode and round-trip time, grouped by round-trip time.
    pub runs: Vec<Run>,
    /// The warmth scenario at each round-trip time above zero (embedded origin only).
    pub warmth: Vec<warmth::WarmthRun>,
}

/// Progress callbacks: called before each run with (done, total, description).
pub trait Progress {
    /// A run starts.
    fn start(&mut self, done: usize, total: usize, what: &str);
}

impl<F: FnMut(usize, usize, &str)> Progress for F {
    fn start(&mut self, done: usize, total: usize, what: &str) {
        self(done, total, what)
    }
}

/// Runs the demo: every mode at every round-trip time.
pub async fn run(
    config: &DemoConfig,
    progress: &mut impl Progress,
) -> Result<DemoReport, BoxError> {
    let (origin_addr, _origin, host, page) = match &config.source {
        PageSource::Embedded(spec) => {
            let origin = spawn_server(Origin::new(), ServerConfig::default(), None)?;
            (
                origin.addr,
                Some(origin),
                None,
                format!("/page?{}", spec.query()),
            )
        }
        PageSource::External { addr, host, page } => (
            *addr,
            None,
            Some(HeaderValue::from_str(host)?),
            page.clone(),
        ),
    };
    let tls = tls_origin(config)?;
    let total = config.rtts.len() * config.modes.len();
    let mut runs = Vec::with_capacity(total);
    for &rtt in &config.rtts {
        for &mode in &config.modes {
            progress.start(
                runs.len(),
                total,
                &format!("{} at {} ms", mode.name(), rtt.as_millis()),
            );
            let path = PathModel {
                bandwidth: config.bandwidth,
                ..PathModel::with_rtt(rtt)
            };
            let scenario = Scenario {
                mode,
                path,
                origin: match (&tls, mode.is_tls()) {
                    (Some((_, tls_origin)), true) => tls_origin.addr,
                    _ => origin_addr,
                },
                tls: tls.as_ref().map(|(tls, _)| tls),
                host: host.clone(),
                page: match mode.slow_first_resource() {
                    Some(delay) => format!("{page}&slow={}", delay.as_millis()),
                    None => page.clone(),
                },
                depth: config.depth,
            };
            runs.push(scenario.run().await?);
        }
    }
    let warm_runs = match config.source {
        PageSource::Embedded(_) => warmth_runs(config, origin_addr, progress).await?,
        PageSource::External { .. } => Vec::new(),
    };
    progress.start(runs.len(), total, "done");
    let first = runs.first();
    Ok(DemoReport {
        page: match &config.source {
            PageSource::Embedded(_) => format!("embedded origin {page}"),
            PageSource::External { host, page, .. } => format!("http://{host}{page}"),
        },
        resources: first.map_or(0, |r| r.timeline.len().saturating_sub(1)),
        page_bytes: first.map_or(0, |r| r.body_bytes),
        bandwidth: config.bandwidth,
        depth: config.depth,
        initial_window_bytes: PathModel::with_rtt(Duration::ZERO).initial_window(),
        runs,
        warmth: warm_runs,
    })
}

/// The warmth scenario at every round-trip time above zero, against the embedded origin.
async fn warmth_runs(
    config: &DemoConfig,
    origin: SocketAddr,
    progress: &mut impl Progress,
) -> Result<Vec<warmth::WarmthRun>, BoxError> {
    let total = config.rtts.len() * config.modes.len();
    let mut runs = Vec::new();
    for &rtt in config.rtts.iter().filter(|rtt| !rtt.is_zero()) {
        let what = format!("warm and cold connections at {} ms", rtt.as_millis());
        progress.start(total, total, &what);
        let path = PathModel {
            bandwidth: config.bandwidth,
            ..PathModel::with_rtt(rtt)
        };
        runs.push(warmth::run(origin, path).await?);
    }
    Ok(runs)
}

/// One mode at one round-trip time, on fresh links (every connection starts cold).
struct Scenario<'a> {
    mode: ModeKind,
    path: PathModel,
    origin: SocketAddr,
    /// The certificates, for the TLS modes.
    tls: Option<&'a tls::DemoTls>,
    host: Option<HeaderValue>,
    page: String,
    depth: usize,
}

impl Scenario<'_> {
    /// A client of `mode` with a fresh TLS session cache (for the TLS modes).
    fn client(&self, mode: ModeKind, hooks: Hooks) -> Result<Client, BoxError> {
        let connector = match (mode.plan().tls, self.tls) {
            (TlsUse::Off, _) => None,
            (_, None) => return Err("a TLS mode without certificates".into()),
            (use_tls, Some(tls)) => {
                let protocol = if mode.plan().h2 {
                    crate::client::HopProtocol::Http2
                } else {
                    crate::client::HopProtocol::Http1
                };
                Some(tls.connector(use_tls == TlsUse::Resumption, protocol)?)
            }
        };
        Ok(mode.client(self.depth, connector, hooks))
    }

    async fn run(&self) -> Result<Run, BoxError> {
        let origin_link = Link::start(self.origin, self.path).await?;
        // Through a proxy: client --link--> proxy --link--> origin.
        let upstream_log = Arc::new(UpstreamLog::default());
        let proxy = match self.mode.upstream_mode() {
            Some(upstream) => Some(spawn_proxy(
                origin_link.addr(),
                upstream,
                upstream_log.clone(),
            )?),
            None => None,
        };
        let client_link = match &proxy {
            Some(proxy) => Some(Link::start(proxy.addr, self.path).await?),
            None => None,
        };
        let near = client_link.as_ref().unwrap_or(&origin_link);
        let scheme = if self.mode.is_tls() { "https" } else { "http" };
        let target = Target {
            base: format!("{scheme}://{}", near.addr()),
            page: self.page.clone(),
            host: self.host.clone(),
        };
        if proxy.is_some() {
            // A busy proxy's pool is warm: one page load by another client first.
            let warm_up = self.client(ModeKind::PersistentX6, Hooks::default())?;
            load::load_page(&warm_up, &target, ModeKind::PersistentX6.fetching()).await?;
            upstream_log.clear();
        }
        let links: Vec<&Link> = [Some(&origin_link), client_link.as_ref()]
            .into_iter()
            .flatten()
            .collect();
        let before: Vec<LinkStats> = links.iter().map(|l| l.stats()).collect();
        let near_before = near.stats();

        let counted = Arc::new(HandshakeCount::default());
        let hooks = Hooks {
            live: None,
            observer: Some(counted.clone()),
        };
        let client = self.client(self.mode, hooks)?;
        let load = load::load_page(&client, &target, self.mode.fetching()).await?;

        let handshakes = links
            .iter()
            .zip(&before)
            .map(|(link, before)| link.stats().connections - before.connections)
            .sum();
        let near_after = near.stats();
        let wire = (near_after.bytes_up - near_before.bytes_up)
            + (near_after.bytes_down - near_before.bytes_down);
        let upstream = upstream_log.timings(load.epoch);
        let mut run = self.summarise(load, client.stats().connections, handshakes, wire);
        run.upstream = upstream;
        run.tls_handshakes =
            counted.full.load(Ordering::Relaxed) + counted.resumed.load(Ordering::Relaxed);
        run.tls_resumed = counted.resumed.load(Ordering::Relaxed);
        Ok(run)
    }

    fn summarise(&self, load: PageLoad, connections: u64, handshakes: u64, wire: u64) -> Run {
        let body_bytes = load.body_bytes();
        let html = load.requests.first().map_or(0, |r| r.body_bytes);
        // Resources in document order for the model (the timeline is in completion order).
        let mut resources: Vec<(f64, &str, u64)> = load.requests[1..]
            .iter()
            .map(|r| (r.start_ms, r.path.as_str(), r.body_bytes))
            .collect();
        resources.sort_by(|a, b| a.0.total_cmp(&b.0));
        let sizes: Vec<u64> = resources.iter().map(|(_, _, b)| *b).collect();
        // The slow resource, by its place in the order the requests went out.
        let slow = self.mode.slow_first_resource().and_then(|delay| {
            let index = resources
                .iter()
                .position(|(_, path, _)| path.contains("delay="))?;
            Some((index, delay))
        });
        Run {
            mode: self.mode,
            rtt_ms: self.path.rtt.as_secs_f64() * 1000.0,
            load_ms: load.total.as_secs_f64() * 1000.0,
            connections,
            handshakes,
            tls_handshakes: 0,
            tls_resumed: 0,
            requests: load.requests.len() as u64,
            header_bytes: wire.saturating_sub(body_bytes),
            body_bytes,
            model: model::predict(self.mode, self.path, html, &sizes, self.depth, slow),
            timeline: load.requests,
            upstream: Vec::new(),
        }
    }
}

/// The TLS modes' origin: the embedded one behind a TLS listener, its certificate made
/// now (`None` without a TLS mode). The modes that need the embedded origin are refused for
/// an external page.
fn tls_origin(config: &DemoConfig) -> Result<Option<(tls::DemoTls, Running)>, BoxError> {
    if matches!(config.source, PageSource::External { .. })
        && let Some(mode) = config.modes.iter().find(|m| m.needs_embedded_origin())
    {
        return Err(format!(
            "{} (TLS, head-of-line) loads the embedded origin's page only",
            mode.name()
        )
        .into());
    }
    if !config.modes.iter().any(|m| m.is_tls()) {
        return Ok(None);
    }
    let tls = tls::DemoTls::new()?;
    let origin = spawn_server(Origin::new(), ServerConfig::default(), Some(tls.acceptor()))?;
    Ok(Some((tls, origin)))
}

/// A server running in this process until dropped.
struct Running {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

fn spawn_server<S: crate::service::HttpService>(
    service: S,
    config: ServerConfig,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<Running> {
    spawn_server_hooked(service, config, tls, Hooks::default())
}

fn spawn_server_hooked<S: crate::service::HttpService>(
    service: S,
    config: ServerConfig,
    tls: Option<TlsAcceptor>,
    hooks: Hooks,
) -> std::io::Result<Running> {
    let server = Server::bind(
        "127.0.0.1:0".parse().expect("literal address"),
        service,
        config,
        ListenerConfig::default(),
    )?
    .with_hooks(hooks);
    let addr = server.local_addr()?;
    let server = match tls {
        Some(acceptor) => server.with_tls(acceptor),
        None => server,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Ok(Running { addr, _stop: stop })
}

/// A reverse proxy to `upstream` with that upstream connection type, telling `log` what
/// it sent upstream.
fn spawn_proxy(
    upstream: SocketAddr,
    mode: Mode,
    log: Arc<UpstreamLog>,
) -> Result<Running, BoxError> {
    let mut config = ProxyConfig::reverse(Upstreams::single(upstream));
    config.name = "demo-proxy".into();
    config.upstream.mode = mode;
    config.note_upstream = true;
    let hooks = Hooks {
        live: None,
        observer: Some(log),
    };
    Ok(spawn_server_hooked(
        Proxy::new(config),
        ServerConfig::default(),
        None,
        hooks,
    )?)
}

/// The demo proxy's requests as it answered them: when each ended, how long it took, and
/// the upstream connection that carried it (so the report draws the proxy's hop too).
#[derive(Debug, Default)]
struct UpstreamLog {
    records: std::sync::Mutex<Vec<UpstreamRecord>>,
}

#[derive(Debug)]
struct UpstreamRecord {
    ended: tokio::time::Instant,
    duration: Duration,
    note: crate::conn::UpstreamNote,
    path: String,
    status: u16,
    body_bytes: u64,
}

impl UpstreamLog {
    fn clear(&self) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The upstream requests as timings on the clock that starts at `epoch`, by start.
    fn timings(&self, epoch: tokio::time::Instant) -> Vec<RequestTiming> {
        let millis =
            |at: tokio::time::Instant| at.saturating_duration_since(epoch).as_secs_f64() * 1000.0;
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let mut timings: Vec<RequestTiming> = records
            .iter()
            .map(|r| {
                let start = r.ended.checked_sub(r.duration).unwrap_or(r.ended);
                RequestTiming {
                    path: r.path.clone(),
                    status: r.status,
                    body_bytes: r.body_bytes,
                    connection: r.note.connection,
                    new_connection: !r.note.reused,
                    start_ms: millis(start),
                    head_ms: millis(start + r.note.header_time.min(r.duration)),
                    end_ms: millis(r.ended),
                }
            })
            .collect();
        timings.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        timings
    }
}

impl Observer for UpstreamLog {
    fn opened(&self, _side: ConnSide) {}

    fn request(&self, record: &RequestRecord<'_>) {
        let Some(note) = record.upstream.clone() else {
            return;
        };
        let entry = UpstreamRecord {
            ended: tokio::time::Instant::now(),
            duration: record.duration,
            note,
            path: record.target.to_string(),
            status: record.status.as_u16(),
            body_bytes: record.body_bytes,
        };
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
    }

    fn closed(&self, _record: &ClosedRecord) {}
}

/// Counts the TLS handshakes a client makes.
#[derive(Debug, Default)]
struct HandshakeCount {
    full: AtomicU64,
    resumed: AtomicU64,
}

impl Observer for HandshakeCount {
    fn opened(&self, _side: ConnSide) {}
    fn request(&self, _record: &RequestRecord<'_>) {}
    fn closed(&self, _record: &ClosedRecord) {}

    fn tls_handshake(&self, _side: ConnSide, handshake: &Handshake) {
        let counter = if handshake.info.resumed {
            &self.resumed
        } else {
            &self.full
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

//! `bench`: the load generator behind `hopline bench`, on the same client connection code
//! as everything else.
//!
//! Owns the workload: N connections, each a task sending requests in the chosen connection
//! type (close, keep-alive, pipelined), for a duration or a request count, optionally at a
//! fixed rate. Latency goes into one HDR histogram (1 µs to 1 h, 3 significant digits);
//! workers buffer samples and add them in batches, so ten thousand connections do not need
//! ten thousand histograms. With a rate, every
//! request has a due time and its latency is measured from it, not from when it was
//! actually sent, so a server that stalls cannot hide its stalls by slowing the load down
//! (no coordinated omission). It must not parse HTTP itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderMap, Method, Uri, Version};
use serde::Serialize;
use tokio::time::Instant;

use crate::client::Mode;
use crate::conn::client::{
    ClientConfig, ClientConn, Persistence, PreparedRequest, host_value, origin_form,
};
use crate::conn::h2::Http2Config;
use crate::conn::h2::client::H2Client;
use crate::conn::status::Hooks;
use crate::error::{Error, ErrorKind};
use crate::transport::tls::TlsConnector;
use crate::transport::{ConnectError, Dial};

/// When a run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// After this long.
    Duration(Duration),
    /// After this many requests (responses or errors).
    Requests(u64),
}

/// A benchmark's workload.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Where requests go (an absolute `http://` URI).
    pub url: Uri,
    /// The server's address (resolved by the caller).
    pub addr: SocketAddr,
    /// Concurrent connections.
    pub connections: usize,
    /// When to stop.
    pub limit: Limit,
    /// Connection type.
    pub mode: Mode,
    /// Total requests per second, if the load is to be paced (open loop).
    pub rate: Option<f64>,
    /// Request method, fields and body.
    pub method: Method,
    /// Extra request fields.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// Protocol settings of the connections.
    pub client: ClientConfig,
    /// Longest time to open a connection (TCP and TLS handshakes).
    pub connect_timeout: Duration,
    /// TLS for an `https://` URL: the connector (trust, client certificate, session cache
    /// shared by all connections, so new ones resume).
    pub tls: Option<TlsConnector>,
    /// HTTP/2 with this many requests in flight per connection (h2load's `-m`); `None`
    /// for HTTP/1.x in `mode`. Without a rate only (each stream sends as soon as its
    /// previous response is read).
    pub h2_streams: Option<usize>,
    /// HTTP/2 settings of the connections.
    pub http2: Http2Config,
}

/// The TLS handshakes of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct TlsReport {
    /// Handshakes completed.
    pub handshakes: u64,
    /// Of them, resumed sessions (no certificate sent, no signature made).
    pub resumed: u64,
    /// `resumed / handshakes`.
    pub resumption_ratio: f64,
    /// Handshakes per second of the run.
    pub handshakes_per_second: f64,
    /// Mean handshake time (after the TCP connect), microseconds.
    pub mean_handshake_us: f64,
    /// Handshakes that failed.
    pub failures: u64,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Latency {
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Smallest.
    pub min: u64,
    /// How the latencies spread: [`HISTOGRAM_BARS`] buckets, spaced evenly on a log scale
    /// from the smallest to the largest (latencies have long tails).
    pub histogram: Vec<LatencyBucket>,
}

/// One bar of the latency histogram: responses at most `up_to` µs (and above the bar before).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyBucket {
    /// Upper bound, microseconds.
    pub up_to: u64,
    /// Responses in it.
    pub count: u64,
}

/// Bars in the latency histogram.
pub const HISTOGRAM_BARS: u32 = 10;

impl Latency {
    /// The percentiles of `histogram` (all zero when it is empty).
    fn of(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        Latency {
            mean: histogram.mean(),
            stdev: histogram.stdev(),
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            min: histogram.min(),
            histogram: log_buckets(histogram),
        }
    }
}

/// [`HISTOGRAM_BARS`] buckets from the smallest latency to the largest, log-spaced (bounds
/// that round to the same microsecond are merged). Each bar holds what is new up to its
/// bound, so the bars add up to every response.
fn log_buckets(histogram: &Histogram<u64>) -> Vec<LatencyBucket> {
    let (min, max) = (histogram.min().max(1), histogram.max().max(1));
    let ratio = (max as f64 / min as f64).powf(1.0 / f64::from(HISTOGRAM_BARS));
    let mut buckets = Vec::new();
    let (mut low, mut below) = (0, 0);
    for bar in 1..=HISTOGRAM_BARS {
        let up_to = match bar {
            HISTOGRAM_BARS => max,
            _ => (min as f64 * ratio.powi(bar as i32)).round() as u64,
        };
        if up_to <= low {
            continue;
        }
        let up_to_here = histogram.count_between(0, up_to);
        buckets.push(LatencyBucket {
            up_to,
            count: up_to_here - below,
        });
        (low, below) = (up_to, up_to_here);
    }
    buckets
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The URL.
    pub url: String,
    /// `close`, `keepalive` or `pipeline`.
    pub mode: String,
    /// Requests in flight per connection (pipelining depth, HTTP/2 streams; else 1).
    pub depth: usize,
    /// Concurrent connections.
    pub connections: usize,
    /// Measured time, seconds.
    pub seconds: f64,
    /// Responses received completely.
    pub requests: u64,
    /// Response bytes read (heads and bodies).
    pub bytes: u64,
    /// Requests per second.
    pub requests_per_second: f64,
    /// Response bytes per second.
    pub bytes_per_second: f64,
    /// Latency of complete responses, microseconds.
    pub latency_us: Latency,
    /// Responses by status class (`2xx`, `3xx`, ...).
    pub statuses: BTreeMap<String, u64>,
    /// Responses by status code (`200`, `404`, ...).
    pub status_codes: BTreeMap<u16, u64>,
    /// Failed requests by kind (`connect`, `timeout`, `closed`, `io`, `parse`).
    pub errors: BTreeMap<String, u64>,
    /// Connections opened.
    pub connections_opened: u64,
    /// The pacing asked for, if any, requests per second.
    pub rate: Option<f64>,
    /// TLS handshakes, for an `https://` URL.
    pub tls: Option<TlsReport>,
}

/// Shared between the workers.
struct Shared {
    config: BenchConfig,
    request: PreparedRequest,
    /// Requests left to start (request-count runs).
    remaining: AtomicI64,
    /// Set when the run is over.
    stop: AtomicBool,
    /// Responses so far (for the progress bar).
    completed: AtomicU64,
    start: Instant,
    deadline: Option<Instant>,
    histogram: Mutex<Histogram<u64>>,
}

/// Latency samples a worker buffers before adding them to the shared histogram.
const SAMPLE_BATCH: usize = 1024;

impl Shared {
    fn record(&self, samples: &mut Vec<u64>) {
        let mut histogram = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
        for &micros in samples.iter() {
            histogram.saturating_record(micros.max(1));
        }
        samples.clear();
    }

    /// Claims up to `n` requests to send; 0 when the run is over.
    fn claim(&self, n: usize) -> usize {
        if self.stop.load(Ordering::Relaxed) {
            return 0;
        }
        if let Some(deadline) = self.deadline
            && Instant::now() >= deadline
        {
            self.stop.store(true, Ordering::Relaxed);
            return 0;
        }
        match self.config.limit {
            Limit::Duration(_) => n,
            Limit::Requests(_) => {
                let before = self.remaining.fetch_sub(n as i64, Ordering::Relaxed);
                before.clamp(0, n as i64) as usize
            }
        }
    }
}

/// One worker's tallies.
struct Tally {
    /// Latencies (µs) not yet added to the shared histogram.
    samples: Vec<u64>,
    requests: u64,
    bytes: u64,
    /// Responses by status code (100 to 999).
    codes: Box<[u64; 1000]>,
    errors: BTreeMap<String, u64>,
    connections: u64,
    handshakes: u64,
    resumed: u64,
    handshake_us: u64,
    handshake_failures: u64,
}

impl Tally {
    fn new() -> Self {
        Tally {
            samples: Vec::with_capacity(SAMPLE_BATCH),
            requests: 0,
            bytes: 0,
            codes: Box::new([0; 1000]),
            errors: BTreeMap::new(),
            connections: 0,
            handshakes: 0,
            resumed: 0,
            handshake_us: 0,
            handshake_failures: 0,
        }
    }

    /// A response read whole at `bytes`, for a request sent (or due) at `sent`; not
    /// counted if it finished after the end of the run (the run's time is fixed).
    fn response(&mut self, shared: &Shared, sent: Instant, status: http::StatusCode, bytes: u64) {
        let done = Instant::now();
        if shared.deadline.is_some_and(|deadline| done > deadline) {
            return;
        }
        let micros = done.saturating_duration_since(sent).as_micros() as u64;
        self.samples.push(micros);
        if self.samples.len() >= SAMPLE_BATCH {
            shared.record(&mut self.samples);
        }
        self.requests += 1;
        self.bytes += bytes;
        self.codes[usize::from(status.as_u16())] += 1;
        shared.completed.fetch_add(1, Ordering::Relaxed);
    }

    fn add(&mut self, other: Tally) {
        self.requests += other.requests;
        self.bytes += other.bytes;
        self.connections += other.connections;
        self.handshakes += other.handshakes;
        self.resumed += other.resumed;
        self.handshake_us += other.handshake_us;
        self.handshake_failures += other.handshake_failures;
        for (mine, theirs) in self.codes.iter_mut().zip(other.codes.iter()) {
            *mine += theirs;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    fn tls_report(&self, seconds: f64) -> TlsReport {
        TlsReport {
            handshakes: self.handshakes,
            resumed: self.resumed,
            resumption_ratio: self.resumed as f64 / self.handshakes.max(1) as f64,
            handshakes_per_second: self.handshakes as f64 / seconds,
            mean_handshake_us: self.handshake_us as f64 / self.handshakes.max(1) as f64,
            failures: self.handshake_failures,
        }
    }

    fn error(&mut self, error: &Error) {
        let kind = match &error.kind {
            ErrorKind::Timeout(_) => "timeout",
            ErrorKind::Closed(_) => "closed",
            ErrorKind::Io(_) => "io",
            ErrorKind::Parse(_) => "parse",
            ErrorKind::Body(_) => "body",
            ErrorKind::Tls(failure) if failure.is_certificate() => "tls_certificate",
            ErrorKind::Tls(_) => "tls",
            ErrorKind::Http2(_) => "http2",
            ErrorKind::Resolve(_) => "resolve",
        };
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }
}

/// Runs a benchmark. `on_tick`, if given, is called about five times a second with the
/// responses so far (for a progress bar).
pub async fn run(config: BenchConfig, on_tick: Option<Box<dyn Fn(u64) + Send>>) -> Report {
    let target = origin_form(&config.url);
    let authority = host_value(&config.url).and_then(|v| v.to_str().ok().map(str::to_string));
    let persistence = if config.mode == Mode::Close {
        Persistence::Close
    } else {
        Persistence::KeepAlive
    };
    let request = PreparedRequest::new(
        config.client.version,
        &config.method,
        &target,
        authority.as_deref(),
        &config.headers,
        &config.body,
        persistence,
    );
    let start = Instant::now();
    let deadline = match config.limit {
        Limit::Duration(duration) => Some(start + duration),
        Limit::Requests(_) => None,
    };
    let shared = Arc::new(Shared {
        remaining: AtomicI64::new(match config.limit {
            Limit::Requests(n) => n as i64,
            Limit::Duration(_) => i64::MAX,
        }),
        stop: AtomicBool::new(false),
        completed: AtomicU64::new(0),
        request,
        start,
        deadline,
        histogram: Mutex::new(
            Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
        ),
        config,
    });
    let ticker = on_tick.map(|tick| {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                tick(shared.completed.load(Ordering::Relaxed));
            }
        })
    });
    let workers: Vec<_> = (0..shared.config.connections.max(1))
        .map(|index| match shared.config.h2_streams {
            Some(streams) => tokio::spawn(h2_worker(shared.clone(), index, streams.max(1))),
            None => tokio::spawn(worker(shared.clone(), index)),
        })
        .collect();
    let mut total = Tally::new();
    for worker in workers {
        let Ok(mut tally) = worker.await else {
            continue;
        };
        shared.record(&mut tally.samples);
        total.add(tally);
    }
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    report(&shared, total)
}

/// The report of a finished run.
fn report(shared: &Shared, total: Tally) -> Report {
    let elapsed = match shared.config.limit {
        Limit::Duration(duration) => duration,
        Limit::Requests(_) => shared.start.elapsed(),
    };
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let h = &*shared.histogram.lock().unwrap_or_else(|e| e.into_inner());
    let config = &shared.config;
    let tls = config.tls.as_ref().map(|_| total.tls_report(seconds));
    Report {
        url: config.url.to_string(),
        mode: match (config.h2_streams, config.mode) {
            (Some(_), _) => "h2",
            (None, Mode::Close) => "close",
            (None, Mode::KeepAlive) => "keepalive",
            (None, Mode::Pipeline { .. }) => "pipeline",
        }
        .to_string(),
        depth: match (config.h2_streams, config.mode) {
            (Some(streams), _) => streams,
            (None, Mode::Pipeline { depth }) => depth,
            _ => 1,
        },
        connections: config.connections,
        seconds,
        requests: total.requests,
        bytes: total.bytes,
        requests_per_second: total.requests as f64 / seconds,
        bytes_per_second: total.bytes as f64 / seconds,
        latency_us: Latency::of(h),
        statuses: status_classes(&total.codes),
        status_codes: (100..1000u16)
            .zip(&total.codes[100..])
            .filter(|&(_, &n)| n > 0)
            .map(|(code, &n)| (code, n))
            .collect(),
        errors: total.errors,
        connections_opened: total.connections,
        rate: config.rate,
        tls,
    }
}

/// Responses by class (`2xx`), from counts by code.
fn status_classes(codes: &[u64; 1000]) -> BTreeMap<String, u64> {
    (1..10)
        .map(|class| {
            (
                class,
                codes[class * 100..(class + 1) * 100].iter().sum::<u64>(),
            )
        })
        .filter(|&(_, n)| n > 0)
        .map(|(class, n)| (format!("{class}xx"), n))
        .collect()
}

/// One connection's loop.
async fn worker(shared: Arc<Shared>, index: usize) -> Tally {
    let config = &shared.config;
    let depth = match config.mode {
        Mode::Pipeline { depth } => depth.max(1),
        _ => 1,
    };
    // Pacing: this connection's share of the rate, its first request offset so that the
    // connections interleave.
    let interval = config
        .rate
        .map(|rate| Duration::from_secs_f64(config.connections.max(1) as f64 / rate.max(1e-9)));
    let mut due = shared.start
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(index as f64 / config.connections as f64)
        });
    let mut tally = Tally::new();
    let mut conn: Option<ClientConn> = None;
    let mut sent_at = Vec::with_capacity(depth);
    loop {
        let claimed = shared.claim(depth);
        if claimed == 0 {
            break;
        }
        // When each request of this batch is due (or now, without pacing).
        sent_at.clear();
        for _ in 0..claimed {
            match interval {
                Some(interval) => {
                    sent_at.push(due);
                    due += interval;
                }
                None => sent_at.push(Instant::now()),
            }
        }
        if interval.is_some() {
            tokio::time::sleep_until(sent_at[0]).await;
        }
        if conn.is_none() {
            match connect(config, index, &mut tally).await {
                Some(new) => conn = Some(new),
                None => {
                    *tally.errors.entry("connect".to_string()).or_default() += claimed as u64;
                    // Do not spin on a refusing server.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(active) = conn.as_mut() else {
            continue;
        };
        for _ in 0..claimed {
            active.write_prepared(&shared.request);
        }
        let outcome = exchange(active, &shared, &sent_at, &mut tally).await;
        match outcome {
            Ok(()) if active.reusable().is_ok() => {}
            Ok(()) => conn = None,
            Err(error) => {
                tally.error(&error);
                conn = None;
            }
        }
    }
    tally
}

/// Opens worker `index`'s connection (TCP, and TLS for `https://`), counting it and its
/// handshake; `None` if it failed.
async fn connect(config: &BenchConfig, index: usize, tally: &mut Tally) -> Option<ClientConn> {
    let stream = open(config, tally).await?;
    Some(ClientConn::from_stream(
        stream,
        config.addr,
        index as u64,
        config.client.clone(),
    ))
}

/// One HTTP/2 connection's load: `streams` request loops sharing it (h2load's `-m`), a
/// new connection if it fails while there is work left.
async fn h2_worker(shared: Arc<Shared>, index: usize, streams: usize) -> Tally {
    let mut tally = Tally::new();
    loop {
        let Some(conn) = h2_connect(&shared.config, index, &mut tally).await else {
            let claimed = shared.claim(1);
            if claimed == 0 {
                return tally;
            }
            *tally.errors.entry("connect".to_string()).or_default() += claimed as u64;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let mut loops = tokio::task::JoinSet::new();
        for _ in 0..streams {
            loops.spawn(h2_stream(shared.clone(), conn.clone()));
        }
        let mut failed = false;
        while let Some(Ok((stream_tally, stopped_by_error))) = loops.join_next().await {
            failed |= stopped_by_error;
            tally.add(stream_tally);
        }
        if !failed {
            return tally;
        }
    }
}

/// Opens an HTTP/2 connection for a worker.
async fn h2_connect(config: &BenchConfig, index: usize, tally: &mut Tally) -> Option<H2Client> {
    let stream = open(config, tally).await?;
    let hooks = Hooks::default();
    let id = index as u64;
    let timeout = config.client.write_timeout;
    match H2Client::handshake(stream, id, config.addr, &config.http2, timeout, &hooks).await {
        Ok(conn) => Some(conn),
        Err(error) => {
            tally.error(&error);
            None
        }
    }
}

/// One stream's loop on a shared connection: a request, its whole response, the next.
/// Also says whether it stopped on an error (rather than at the end of the run).
async fn h2_stream(shared: Arc<Shared>, conn: H2Client) -> (Tally, bool) {
    let mut tally = Tally::new();
    let config = &shared.config;
    while shared.claim(1) == 1 {
        let mut request = http::Request::new(crate::conn::Body::from(config.body.clone()));
        *request.method_mut() = config.method.clone();
        *request.uri_mut() = config.url.clone();
        *request.headers_mut() = config.headers.clone();
        let sent = Instant::now();
        let result = match conn.send(request, false).await {
            Ok(response) => {
                let status = response.status();
                response
                    .into_body()
                    .discard()
                    .await
                    .map(|body| (status, body))
            }
            Err(failure) => Err(failure.error),
        };
        match result {
            Ok((status, body)) => tally.response(&shared, sent, status, body),
            Err(error) => {
                tally.error(&error);
                shared.record(&mut tally.samples);
                return (tally, true);
            }
        }
    }
    shared.record(&mut tally.samples);
    (tally, false)
}

/// Opens a connection's byte stream (TCP, and TLS for `https://`), counting it and its
/// handshake; `None` if it failed.
async fn open(config: &BenchConfig, tally: &mut Tally) -> Option<crate::transport::Stream> {
    let host = config.url.host().unwrap_or_default();
    let dial = Dial {
        addr: config.addr,
        tls: config.tls.as_ref().map(|connector| (connector, host)),
        timeout: config.connect_timeout,
        proxy_header: None,
    };
    match crate::transport::connect(dial).await {
        Ok((stream, handshake)) => {
            tally.connections += 1;
            if let Some(handshake) = handshake {
                tally.handshakes += 1;
                tally.resumed += u64::from(handshake.info.resumed);
                tally.handshake_us += handshake.duration.as_micros() as u64;
            }
            Some(stream)
        }
        Err(error) => {
            if matches!(error, ConnectError::Tls(_)) {
                tally.handshake_failures += 1;
            }
            None
        }
    }
}

/// Sends what was written and reads one response per request, recording each.
async fn exchange(
    conn: &mut ClientConn,
    shared: &Shared,
    sent_at: &[Instant],
    tally: &mut Tally,
) -> Result<(), Error> {
    conn.flush().await?;
    for &sent in sent_at {
        let head = conn.read_head().await?;
        let body = conn.discard_body().await?;
        tally.response(shared, sent, head.status, head.raw.len() as u64 + body);
    }
    Ok(())
}

impl Report {
    /// Responses that succeeded: 2xx and 3xx (what wrk does not call "non-2xx or 3xx").
    pub fn succeeded(&self) -> u64 {
        self.status_codes.range(200..400).map(|(_, n)| n).sum()
    }

    /// Requests that failed: no complete response (the `errors`), or a 4xx or 5xx.
    pub fn failed(&self) -> u64 {
        let errors: u64 = self.errors.values().sum();
        let refused: u64 = self.status_codes.range(400..).map(|(_, n)| n).sum();
        errors + refused
    }

    /// The report as text, for a terminal.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let depth = match self.mode.as_str() {
            "pipeline" => format!(", {} deep", self.depth),
            "h2" => format!(", {} streams each", self.depth),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{} over {} {} connection{}{} for {:.2} s{}",
            self.url,
            self.connections,
            self.mode,
            if self.connections == 1 { "" } else { "s" },
            depth,
            self.seconds,
            self.rate
                .map_or(String::new(), |r| format!(" at {r:.0} requests/s")),
        );
        let _ = writeln!(
            out,
            "  {} requests, {:.0} requests/s, {}/s",
            self.requests,
            self.requests_per_second,
            human_bytes(self.bytes_per_second)
        );
        if self.requests > 0 {
            out.push_str(&self.latency_us.render_line());
        }
        out.push_str(&self.latency_us.render_histogram());
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let statuses = match statuses.is_empty() {
            true => "none".to_string(),
            false => statuses.join(", "),
        };
        let _ = writeln!(out, "  responses  {statuses}");
        if self.status_codes.len() > 1 || self.status_codes.keys().any(|&code| code >= 400) {
            let codes: Vec<String> = self
                .status_codes
                .iter()
                .map(|(code, n)| format!("{code} {n}"))
                .collect();
            let _ = writeln!(out, "  status codes  {}", codes.join(", "));
        }
        if !self.errors.is_empty() {
            let errors: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(out, "  errors  {}", errors.join(", "));
        }
        let _ = writeln!(out, "  connections opened  {}", self.connections_opened);
        if let Some(tls) = &self.tls {
            let _ = writeln!(
                out,
                "  TLS handshakes  {} ({:.0}/s), {} resumed ({:.1}%), mean {}{}",
                tls.handshakes,
                tls.handshakes_per_second,
                tls.resumed,
                tls.resumption_ratio * 100.0,
                micros(tls.mean_handshake_us as u64),
                if tls.failures > 0 {
                    format!(", {} failed", tls.failures)
                } else {
                    String::new()
                }
            );
        }
        out
    }
}

impl Latency {
    /// Mean ± standard deviation and the percentiles, on one line.
    fn render_line(&self) -> String {
        format!(
            "  latency  mean {} ± {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
            micros(self.mean as u64),
            micros(self.stdev as u64),
            micros(self.p50),
            micros(self.p90),
            micros(self.p99),
            micros(self.p999),
            micros(self.max)
        )
    }

    /// The histogram as bars of `■` (wrk's and oha's readers know the shape), widest 40.
    fn render_histogram(&self) -> String {
        use std::fmt::Write;
        let widest = self.histogram.iter().map(|b| b.count).max().unwrap_or(0);
        if widest == 0 {
            return String::new();
        }
        let mut out = String::from("  latency histogram (responses up to each bound)\n");
        for bucket in &self.histogram {
            let bar = (bucket.count * 40).div_ceil(widest) as usize;
            let _ = writeln!(
                out,
                "    {:>9}  {:>9}  {}",
                micros(bucket.up_to),
                bucket.count,
                "■".repeat(bar)
            );
        }
        out
    }
}

fn micros(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{us}us")
    }
}

fn human_bytes(bytes: f64) -> String {
    if bytes >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", bytes / 1024.0 / 1024.0)
    } else if bytes >= 1024.0 {
        format!("{:.2} KiB", bytes / 1024.0)
    } else {
        format!("{bytes:.0} B")
    }
}

/// The HTTP version a `--http1.0` flag asks for.
pub fn version(http10: bool) -> Version {
    if http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    }
}

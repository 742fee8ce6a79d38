//! The command line: subcommands and their flags, mapped onto library configuration.
//!
//! Owns argument parsing, merging flags over the configuration file (flags typed on the
//! command line win, then the file, then the defaults), runtime construction, signals
//! (SIGINT / SIGTERM drain, SIGHUP reloads the file), logging and the access log, and the
//! admin endpoint's start. It must not contain protocol logic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use demo::DemoArgs;

pub mod bench;
pub mod demo;
pub mod get;
pub mod h2;
pub mod proxy;
pub mod tls;
pub mod top;

pub use bench::BenchArgs;
pub use get::GetArgs;
pub use proxy::ProxyArgs;

use hopline::access_log::{AccessLog, AccessLogFile, AccessLogHandle};
use hopline::admin::Admin;
pub use hopline::config::Layout;
use hopline::config::{self, AccessLogFormat, DownstreamFile, FileConfig, Loaded};
pub use hopline::config::{parse_duration, size};
use hopline::conn::{Hooks, LiveConns, Observer, ServerConfig};
use hopline::metrics::{Fanout, Metrics};
use hopline::origin::Origin;
use hopline::server::{ListenerConfig, ProxyProtocol, Server};
use hopline::service::HttpService;
use hopline::transport::tls::{ServerTls, TlsAcceptor};

/// hopline — an HTTP/1.x connection engine: short-lived, persistent and pipelined
/// connections, hop by hop.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// What to log on standard error: a level (error, warn, info, debug, trace) or
    /// RUST_LOG-style directives (`warn,hopline::proxy=debug`) [default: RUST_LOG, else the
    /// file's `log`, else info].
    #[arg(long, global = true)]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load a page shaped like the median web page in every connection type (HTTP/1.0
    /// short-lived, 6 short-lived, persistent, 6 persistent, pipelined, through a proxy with
    /// pooled or short-lived upstream, and over TLS: short-lived with full or resumed
    /// handshakes, persistent, pipelined) over an emulated link at several round-trip
    /// times; print a table and write an HTML report with charts and waterfalls.
    Demo(DemoArgs),
    /// Serve HTTP/1.x and HTTP/2: built-in test endpoints (/, /bytes/N, /delay/MS, /echo, /page) and,
    /// with --root, static files.
    Serve(Box<ServeArgs>),
    /// Fetch URLs as curl does (bodies to standard output, -i -v -L -d -o -f -s), through
    /// the pooled client, with the connection that served each shown on standard error.
    Get(GetArgs),
    /// Load-test a URL: requests/s, latency percentiles, errors, connections.
    Bench(BenchArgs),
    /// Forward HTTP/1.x hop by hop: a reverse proxy to upstream groups, or a forward proxy
    /// (--forward), each side with its own connection policy.
    Proxy(Box<ProxyArgs>),
    /// Show the open connections of a running server or proxy, live, from its admin
    /// endpoint: state, requests, and the kernel's RTT and congestion window.
    Top(top::TopArgs),
    /// Check a configuration file without starting anything.
    CheckConfig(CheckConfigArgs),
}

/// `hopline serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve static files (GET/HEAD) from this directory; the built-in endpoints then
    /// move under /_hopline/.
    #[arg(long)]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub downstream: DownstreamArgs,
    #[command(flatten)]
    pub ops: OpsArgs,
}

/// `hopline check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The TOML file to check.
    pub file: PathBuf,
}

/// Operating flags shared by `serve` and `proxy`.
#[derive(Debug, Args)]
pub struct OpsArgs {
    /// Read settings from this TOML file (flags typed on the command line win over it);
    /// SIGHUP reloads it. See docs/config.md.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve /metrics (Prometheus text format) and /connections (JSON, with TCP_INFO) on
    /// this address.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// One line per request: text (key=value), json, or combined (nginx's, then the
    /// connection id, the request's number on it and the upstream's timing).
    #[arg(long, value_enum, default_value_t = AccessLogFormat::Off)]
    pub access_log: AccessLogFormat,
    /// Write the access log to this file (appended; SIGUSR1 opens it again after a
    /// rotation) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub access_log_file: Option<PathBuf>,
}

/// The client-facing connection policy, shared by `serve` and `proxy`.
#[derive(Debug, Args)]
pub struct DownstreamArgs {
    /// Close idle keep-alive connections after this long without a new request
    /// (e.g. 60s, 500ms, 2m; a bare number is seconds). This is the ceiling: under
    /// pressure the idle timeout shrinks towards --keepalive-timeout-min.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,
    /// The floor of the idle timeout: as open connections go from half of
    /// --max-connections to 90% of it, the idle timeout shrinks from --keepalive-timeout to
    /// this, the longest idle closing first (closes counted as `pressure`).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub keepalive_timeout_min: Duration,
    /// Park a plain-TCP HTTP/1.x connection idle this long: its socket leaves its task and
    /// waits in the listener's own epoll set (a few hundred bytes instead of a task), and is
    /// served in a new task when a request arrives.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub park_idle_after: Duration,
    /// Never park idle connections (each keeps its task while idle).
    #[arg(long)]
    pub no_park_idle: bool,
    /// Longest time for a request head once its first byte arrived, and for a new
    /// connection's first byte (slowloris protection; answered with 408).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Longest wait for the next bytes of a request body (408).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// Longest wait for a client to accept response bytes.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub write_timeout: Duration,
    /// Requests per connection; the last response carries `Connection: close`
    /// [default: unlimited].
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// Close a connection after its current response once it is this old
    /// [default: unlimited].
    #[arg(long, value_parser = parse_duration)]
    pub max_lifetime: Option<Duration>,
    /// Shorten each connection's --max-lifetime by a share of this window, different per
    /// connection, so that connections opened together do not close together (e.g. 1m).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub max_lifetime_jitter: Duration,
    /// Most connections served at once; more wait in the listen backlog, they are not
    /// dropped.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Largest request body (413): bytes, or `64k`, `10m`, `1g` (powers of 1024)
    /// [default: unlimited, bodies are streamed].
    #[arg(long, value_parser = size::<u64>)]
    pub max_body: Option<u64>,
    /// Longest request line (414), bytes or with a unit (`8k`).
    #[arg(long, default_value_t = 8 * 1024, value_parser = size::<usize>)]
    pub max_request_line: usize,
    /// Largest request head (request line and header section) (431), bytes or with a unit.
    #[arg(long, default_value_t = 64 * 1024, value_parser = size::<usize>)]
    pub max_head_bytes: usize,
    /// Most header field lines in a request (431; at most 256).
    #[arg(long, default_value_t = 100)]
    pub max_headers: usize,
    /// Longest chunk-size line, extensions included, in a chunked body (400).
    #[arg(long, default_value_t = 4096, value_parser = size::<usize>)]
    pub max_chunk_line: usize,
    /// Largest trailer section of a chunked body (400), bytes or with a unit.
    #[arg(long, default_value_t = 8192, value_parser = size::<usize>)]
    pub max_trailer_bytes: usize,
    /// Short-lived connections: every response closes its connection (HTTP/1.0 style).
    #[arg(long)]
    pub no_keepalive: bool,
    /// Refuse pipelining: a response written while the next request is already waiting
    /// closes the connection (the client sends the rest again).
    #[arg(long)]
    pub no_pipelining: bool,
    /// Advertise `Keep-Alive: timeout=N, max=M` on persistent responses, so clients
    /// retire connections before the server closes them.
    #[arg(long)]
    pub advertise_keepalive: bool,
    /// How long a graceful shutdown (SIGINT / SIGTERM) waits for busy connections.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// In a graceful shutdown, connections idle when it starts close within this window,
    /// each at its own moment; a request that reaches one first is answered (with
    /// `Connection: close`), never reset.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub drain_grace: Duration,
    /// Behind an L4 balancer: connections from --proxy-protocol-from start with a PROXY
    /// protocol header (v1 or v2) naming the client, whose address then feeds
    /// X-Forwarded-For, Forwarded and the access log.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// The balancers whose PROXY headers are believed, comma-separated networks (others are
    /// served as their own clients).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.0/8,::1/128",
        requires = "proxy_protocol"
    )]
    pub proxy_protocol_from: Vec<ipnet::IpNet>,
    /// Runtime worker threads [default: all cores]. 1 runs a single-threaded runtime.
    #[arg(long)]
    pub workers: Option<usize>,
    /// How several workers share the work: `per-core` (a single-threaded runtime and an
    /// `SO_REUSEPORT` listener per worker; the kernel spreads connections) or `shared` (one
    /// multi-threaded runtime with work stealing).
    #[arg(long, value_enum, default_value_t = Layout::PerCore)]
    pub layout: Layout,
    #[command(flatten)]
    pub tls: tls::ServerTlsArgs,
    #[command(flatten)]
    pub http2: h2::Http2Args,
}

/// Which flags were typed on the command line: those win over the file; the rest take the
/// file's value, else their default.
#[derive(Debug, Clone, Default)]
pub struct Given {
    matches: Option<ArgMatches>,
}

impl Given {
    /// From the subcommand's matches.
    pub fn new(matches: &ArgMatches) -> Self {
        Given {
            matches: Some(matches.clone()),
        }
    }

    /// Whether `id` (a field name) was typed.
    pub fn typed(&self, id: &str) -> bool {
        self.matches.as_ref().is_some_and(|m| {
            m.try_get_raw(id).is_ok() && m.value_source(id) == Some(ValueSource::CommandLine)
        })
    }

    /// The flag's value if typed, else the file's if set, else the flag's default.
    pub fn pick<T>(&self, id: &str, flag: T, file: Option<T>) -> T {
        if self.typed(id) {
            flag
        } else {
            file.unwrap_or(flag)
        }
    }
}

impl DownstreamArgs {
    /// The limits on request heads and chunked bodies of these flags over `file`.
    fn limits(
        &self,
        given: &Given,
        file: &DownstreamFile,
    ) -> (hopline::wire::HeadLimits, hopline::wire::ChunkedLimits) {
        let mut head_limits = hopline::wire::HeadLimits::default();
        head_limits.max_request_line = given.pick(
            "max_request_line",
            self.max_request_line,
            file.max_request_line,
        );
        head_limits.max_head_bytes =
            given.pick("max_head_bytes", self.max_head_bytes, file.max_head_bytes);
        head_limits.max_headers = given.pick("max_headers", self.max_headers, file.max_headers);
        let mut chunked_limits = hopline::wire::ChunkedLimits::default();
        chunked_limits.max_line =
            given.pick("max_chunk_line", self.max_chunk_line, file.max_chunk_line);
        chunked_limits.max_trailer_bytes = given.pick(
            "max_trailer_bytes",
            self.max_trailer_bytes,
            file.max_trailer_bytes,
        );
        (head_limits, chunked_limits)
    }

    /// The connection policy of these flags over `file`.
    pub fn server_config(&self, given: &Given, file: &DownstreamFile) -> ServerConfig {
        let dur = |d: &Option<config::Dur>| d.map(|d| d.0);
        {
            let mut server_config = ServerConfig::default();
            server_config.keep_alive = if given.typed("no_keepalive") {
                !self.no_keepalive
            } else {
                file.keepalive.unwrap_or(!self.no_keepalive)
            };
            server_config.keepalive_timeout = given.pick(
                "keepalive_timeout",
                self.keepalive_timeout,
                dur(&file.keepalive_timeout),
            );
            server_config.keepalive_timeout_min = given.pick(
                "keepalive_timeout_min",
                self.keepalive_timeout_min,
                dur(&file.keepalive_timeout_min),
            );
            let park = !given.pick(
                "no_park_idle",
                self.no_park_idle,
                file.park_idle.map(|p| !p),
            );
            let after = given.pick(
                "park_idle_after",
                self.park_idle_after,
                dur(&file.park_idle_after),
            );
            server_config.park_idle_after = park.then_some(after);
            server_config.header_timeout = given.pick(
                "header_timeout",
                self.header_timeout,
                dur(&file.header_timeout),
            );
            server_config.body_timeout =
                given.pick("body_timeout", self.body_timeout, dur(&file.body_timeout));
            server_config.write_timeout = given.pick(
                "write_timeout",
                self.write_timeout,
                dur(&file.write_timeout),
            );
            server_config.max_requests = given.pick(
                "max_requests",
                self.max_requests,
                file.max_requests.map(Some),
            );
            server_config.max_lifetime = given.pick(
                "max_lifetime",
                self.max_lifetime,
                dur(&file.max_lifetime).map(Some),
            );
            server_config.max_lifetime_jitter = given.pick(
                "max_lifetime_jitter",
                self.max_lifetime_jitter,
                dur(&file.max_lifetime_jitter),
            );
            server_config.advertise_keep_alive = given.pick(
                "advertise_keepalive",
                self.advertise_keepalive,
                file.advertise_keepalive,
            );
            server_config.max_body_bytes =
                given.pick("max_body", self.max_body, file.max_body.map(Some));
            (server_config.head_limits, server_config.chunked_limits) = self.limits(given, file);
            server_config.pipelining = if given.typed("no_pipelining") {
                !self.no_pipelining
            } else {
                file.pipelining.unwrap_or(!self.no_pipelining)
            };
            server_config.http2 = self.http2.config(given, file.http2.as_ref());
            server_config
        }
    }

    /// What a reload applies: the policy and TLS settings of these flags over `file`.
    pub fn reloaded(
        &self,
        given: &Given,
        file: &FileConfig,
    ) -> Result<(ServerConfig, Option<ServerTls>), String> {
        let server = self.server_config(given, &file.downstream);
        let tls = self.server_tls(given, file, &server)?;
        Ok((server, tls))
    }

    /// The TLS settings of these flags over `file`, offering `h2` by ALPN only when the
    /// policy speaks HTTP/2.
    fn server_tls(
        &self,
        given: &Given,
        file: &FileConfig,
        server: &ServerConfig,
    ) -> Result<Option<ServerTls>, String> {
        let mut tls = self.tls.server_tls(given, file.downstream.tls.as_ref())?;
        if let Some(tls) = &mut tls
            && !server.http2.enabled
        {
            tls.alpn = vec![b"http/1.1".to_vec()];
        }
        Ok(tls)
    }

    /// The listener settings of these flags over `file`.
    pub fn listener_config(&self, given: &Given, file: &DownstreamFile) -> ListenerConfig {
        {
            let mut listener_config = ListenerConfig::default();
            listener_config.max_connections = given.pick(
                "max_connections",
                self.max_connections,
                file.max_connections,
            );
            listener_config.drain_timeout = given.pick(
                "drain_timeout",
                self.drain_timeout,
                file.drain_timeout.map(|d| d.0),
            );
            listener_config.drain_grace = given.pick(
                "drain_grace",
                self.drain_grace,
                file.drain_grace.map(|d| d.0),
            );
            let on = given.pick("proxy_protocol", self.proxy_protocol, file.proxy_protocol);
            listener_config.proxy_protocol = on.then(|| ProxyProtocol {
                trusted: given.pick(
                    "proxy_protocol_from",
                    self.proxy_protocol_from.clone(),
                    file.proxy_protocol_from.clone(),
                ),
            });
            listener_config
        }
    }
}

/// One line describing a policy, for the start-up log.
fn describe(config: &ServerConfig, listener: &ListenerConfig) -> String {
    let keep_alive = if config.keep_alive {
        format!("keep-alive {:?}", config.keepalive_timeout)
    } else {
        "short-lived".to_string()
    };
    format!(
        "{keep_alive}, pipelining {}, max {} connections",
        if config.pipelining {
            "accepted"
        } else {
            "refused"
        },
        listener.max_connections
    )
}

/// What `serve` and `proxy` share once flags and file are merged.
#[derive(Debug, Clone)]
pub struct Common {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Runtime threads.
    pub workers: Option<usize>,
    /// How they share the work.
    pub layout: Layout,
    /// The admin endpoint's address.
    pub admin: Option<SocketAddr>,
    /// The access log.
    pub access_log: AccessLogFormat,
    /// Where it goes (`None`: standard output).
    pub access_log_file: Option<PathBuf>,
    /// The downstream policy.
    pub server: ServerConfig,
    /// The listener settings.
    pub listener: ListenerConfig,
    /// HTTPS: the certificates and session settings; `None` for plain HTTP.
    pub tls: Option<ServerTls>,
}

impl Common {
    fn resolve(
        listen: SocketAddr,
        downstream: &DownstreamArgs,
        ops: &OpsArgs,
        given: &Given,
        file: &FileConfig,
    ) -> Result<Common, String> {
        let server = downstream.server_config(given, &file.downstream);
        Ok(Common {
            tls: downstream.server_tls(given, file, &server)?,
            listen: given.pick("listen", listen, file.listen),
            workers: given.pick("workers", downstream.workers, file.workers.map(Some)),
            layout: given.pick("layout", downstream.layout, file.layout),
            admin: given.pick("admin", ops.admin, file.admin.map(Some)),
            access_log: given.pick("access_log", ops.access_log, file.access_log),
            access_log_file: given.pick(
                "access_log_file",
                ops.access_log_file.clone(),
                file.access_log_file.clone().map(Some),
            ),
            server,
            listener: downstream.listener_config(given, &file.downstream),
        })
    }
}

/// Where connections report, built from the admin and access-log settings.
struct Ops {
    hooks: Hooks,
    metrics: Option<Arc<Metrics>>,
    live: Option<Arc<LiveConns>>,
    /// Keeps the access log's writer going (and its file, to reopen).
    access: Option<AccessLogHandle>,
}

impl Ops {
    fn new(common: &Common) -> Result<Ops, String> {
        let live = common.admin.map(|_| LiveConns::new());
        let metrics = live.clone().map(|live| Arc::new(Metrics::new(live)));
        let mut observers: Vec<Arc<dyn Observer>> = Vec::new();
        if let Some(metrics) = &metrics {
            observers.push(metrics.observer());
        }
        let mut access = None;
        if common.access_log != AccessLogFormat::Off {
            let path = common.access_log_file.as_deref();
            let (log, handle) = AccessLog::new(common.access_log, path).map_err(|e| {
                let path = path.map_or("standard output".into(), |p| p.display().to_string());
                format!("access log {path}: {e}")
            })?;
            observers.push(Arc::new(log));
            access = Some(handle);
        }
        let observer: Option<Arc<dyn Observer>> = match observers.len() {
            0 => None,
            1 => observers.pop(),
            _ => Some(Arc::new(Fanout(observers))),
        };
        Ok(Ops {
            hooks: Hooks {
                live: live.clone(),
                observer,
            },
            metrics,
            live,
            access,
        })
    }
}

/// On every SIGUSR1: opens the access log file again (logrotate moved it away), as nginx
/// does on USR1.
async fn reopen_on_usr1(file: Arc<AccessLogFile>, mut usr1: tokio::signal::unix::Signal) {
    while usr1.recv().await.is_some() {
        match file.reopen() {
            Ok(()) => tracing::info!(file = %file.path().display(), "SIGUSR1: access log reopened"),
            Err(error) => {
                tracing::error!(file = %file.path().display(), %error, "SIGUSR1: access log not reopened")
            }
        }
    }
}

/// Applies what can change while running from the configuration file (re-read; empty
/// without `--config`) under the typed flags; returns the new downstream policy and TLS
/// settings (certificate files are read again).
type Reload =
    Box<dyn Fn(&FileConfig) -> Result<(ServerConfig, Option<ServerTls>), String> + Send + Sync>;

/// Runs `service` on the merged settings until SIGINT / SIGTERM, with the admin endpoint
/// if asked for, reloading `file_path` on SIGHUP.
fn run<S: HttpService>(
    what: &str,
    common: Common,
    ops: Ops,
    service: S,
    file_path: Option<PathBuf>,
    reload: Reload,
) -> Result<(), Box<dyn std::error::Error>> {
    raise_open_file_limit();
    // The file as it is applied now, to say what a reload changes.
    let applied = file_path.as_deref().map_or_else(String::new, |path| {
        std::fs::read_to_string(path).unwrap_or_default()
    });
    let (workers, per_core, listener) = plan_workers(&common);
    // One acceptor for every listener: a reload reaches them all.
    let acceptor = common
        .tls
        .as_ref()
        .map(TlsAcceptor::new)
        .transpose()
        .map_err(|e| format!("TLS: {e}"))?;
    let runtime = runtime(Some(if per_core { 1 } else { workers }))?;
    runtime.block_on(async move {
        // Per core: several listeners, stopped together when the first one stops.
        let (stop_workers, workers_stop) = tokio::sync::watch::channel(false);
        let plan = (workers, per_core, &listener);
        let Bound {
            server,
            threads,
            all_stats,
        } = bind(&common, &ops.hooks, &service, plan, &acceptor, workers_stop)?;
        let addr = server.local_addr()?;
        // Signals are caught from here on (before READY=1: their default action kills).
        use tokio::signal::unix::{SignalKind, signal};
        if let Some(file) = ops.access.as_ref().and_then(|access| access.file.clone()) {
            tokio::spawn(reopen_on_usr1(file, signal(SignalKind::user_defined1())?));
        }
        let ready = Arc::new(AtomicBool::new(true));
        let stop_admin = start_admin(common.admin, ops.metrics, ops.live, ready.clone())?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        log_listening(
            what,
            &format!("{scheme}://{addr}"),
            &common,
            (workers, per_core),
        );
        tokio::spawn(reload_on_hangup(
            signal(SignalKind::hangup())?,
            file_path,
            applied,
            common,
            Reloadable {
                server: server.config_handle(),
                tls: acceptor.clone(),
            },
            reload,
        ));
        let signals = ShutdownSignals::install()?;
        systemd(&[sd_notify::NotifyState::Ready]);
        let stop_workers = &stop_workers;
        let summary = server
            .run(async move {
                signals.recv().await;
                // Draining: load balancers see it on /ready and systemd is told.
                ready.store(false, Ordering::Relaxed);
                systemd(&[sd_notify::NotifyState::Stopping]);
                let _ = stop_workers.send(true);
            })
            .await;
        drop(stop_admin);
        log_stopped(summary, threads, &all_stats);
        Ok(())
    })
}

/// Says where the server listens and how: its policy, its workers and their layout.
fn log_listening(what: &str, url: &str, common: &Common, (workers, per_core): (usize, bool)) {
    let layout = if per_core {
        "per-core"
    } else {
        "shared runtime"
    };
    let policy = describe(&common.server, &common.listener);
    tracing::info!("hopline {what} listening on {url} ({policy}; {workers} worker(s), {layout})");
}

/// The listeners of a run: the first (run on this thread) and, per core, the others on
/// threads of their own.
struct Bound<S> {
    server: Server<S>,
    threads: Vec<std::thread::JoinHandle<hopline::server::RunSummary>>,
    all_stats: Vec<Arc<hopline::server::ServerStats>>,
}

/// Binds the listeners `(workers, per_core, listener)` plans: per core, more listeners on
/// the same address, one thread and runtime each, all taking the policy from the first
/// one's handle and stopping when `stop` says so.
fn bind<S: HttpService>(
    common: &Common,
    hooks: &Hooks,
    service: &S,
    (workers, per_core, listener): (usize, bool, &ListenerConfig),
    acceptor: &Option<TlsAcceptor>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Bound<S>, Box<dyn std::error::Error>> {
    let secure = |server: Server<S>| match acceptor {
        Some(acceptor) => server.with_tls(acceptor.clone()),
        None => server,
    };
    let first = Server::bind(
        common.listen,
        service.clone(),
        common.server.clone(),
        listener.clone(),
    )
    .map_err(|e| format!("cannot listen on {}: {e}", common.listen))?
    .with_hooks(hooks.clone());
    let server = secure(first);
    let addr = server.local_addr()?;
    let mut threads = Vec::new();
    let mut all_stats = vec![server.stats()];
    for worker in (1..workers).filter(|_| per_core) {
        let other = Server::bind(
            addr,
            service.clone(),
            common.server.clone(),
            listener.clone(),
        )
        .map_err(|e| format!("cannot listen on {addr} (worker {worker}): {e}"))?
        .with_hooks(hooks.clone())
        .with_config_handle(server.config_handle());
        let other = secure(other);
        all_stats.push(other.stats());
        threads.push(spawn_worker(other, worker, stop.clone())?);
    }
    Ok(Bound {
        server,
        threads,
        all_stats,
    })
}

/// Waits for the per-core workers and logs what every listener did.
fn log_stopped(
    summary: hopline::server::RunSummary,
    threads: Vec<std::thread::JoinHandle<hopline::server::RunSummary>>,
    all_stats: &[Arc<hopline::server::ServerStats>],
) {
    let mut aborted = summary.aborted;
    for thread in threads {
        aborted += thread.join().map_or(0, |summary| summary.aborted);
    }
    let totals = all_stats.iter().map(|s| s.snapshot());
    let (connections, requests) = totals.fold((0, 0), |(c, r), t| (c + t.accepted, r + t.requests));
    tracing::info!(connections, requests, aborted, "stopped");
}

/// What a SIGHUP can change in a running server.
struct Reloadable {
    /// The downstream policy of new connections.
    server: hopline::server::ConfigHandle,
    /// The certificates new TLS connections get.
    tls: Option<TlsAcceptor>,
}

/// How many workers, whether each has its own `SO_REUSEPORT` listener (per core), and the
/// listener settings each one gets.
fn plan_workers(common: &Common) -> (usize, bool, ListenerConfig) {
    let workers = common.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
    });
    let per_core = common.layout == Layout::PerCore && workers > 1;
    let mut listener = common.listener.clone();
    if per_core {
        listener.reuse_port = true;
        // The connection limit is the process's: each listener gets its share.
        listener.max_connections = listener.max_connections.div_ceil(workers);
    }
    (workers, per_core, listener)
}

/// Runs `server` on its own thread and single-threaded runtime until `stop` says so.
fn spawn_worker<S: HttpService>(
    server: Server<S>,
    worker: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<hopline::server::RunSummary>> {
    std::thread::Builder::new()
        .name(format!("hopline-worker-{worker}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a worker runtime");
            runtime.block_on(server.run(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            }))
        })
}

/// Starts the admin endpoint when asked for (and metrics exist); dropping the returned
/// sender stops it.
fn start_admin(
    admin: Option<SocketAddr>,
    metrics: Option<Arc<Metrics>>,
    live: Option<Arc<LiveConns>>,
    ready: Arc<AtomicBool>,
) -> Result<tokio::sync::oneshot::Sender<()>, Box<dyn std::error::Error>> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    if let (Some(admin), Some(metrics), Some(live)) = (admin, metrics, live) {
        let admin_server = Server::bind(
            admin,
            Admin::new(metrics, live).with_readiness(ready),
            ServerConfig::default(),
            ListenerConfig::default(),
        )
        .map_err(|e| format!("cannot listen on {admin} (admin): {e}"))?;
        tracing::info!(
            "admin endpoint on http://{}/metrics, /connections, /ready and /healthz",
            admin_server.local_addr()?
        );
        tokio::spawn(admin_server.run(async {
            let _ = stopped.await;
        }));
    }
    Ok(stop)
}

/// On every SIGHUP: re-reads the file (if any) and the certificate files, and applies them
/// (new connections and new upstream checkouts get the new settings; open connections keep
/// theirs). An invalid file or certificate is logged and the running settings stay.
/// Each setting that changed from `applied` (the file as last applied) is logged.
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    path: Option<PathBuf>,
    mut applied: String,
    running: Common,
    target: Reloadable,
    reload: Reload,
) {
    while hangup.recv().await.is_some() {
        if path.is_none() && target.tls.is_none() {
            tracing::warn!("SIGHUP: nothing to reload (started without --config or TLS)");
            continue;
        }
        systemd(&[
            sd_notify::NotifyState::Reloading,
            sd_notify::NotifyState::monotonic_usec_now()
                .unwrap_or(sd_notify::NotifyState::Status("reloading")),
        ]);
        // Whatever happens, the server goes on serving (with the new settings or the old).
        let _ready = ReadyAgain;
        let loaded = match path.as_deref().map(config::load).transpose() {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::error!(%error, "SIGHUP: configuration not reloaded");
                continue;
            }
        };
        if let Some(loaded) = &loaded {
            warn_restart_only(&loaded.config, &running);
        }
        let empty = FileConfig::default();
        let file = loaded.as_ref().map_or(&empty, |l| &l.config);
        let (config, tls) = match reload(file) {
            Ok(reloaded) => reloaded,
            Err(error) => {
                tracing::error!(%error, "SIGHUP: configuration not reloaded");
                continue;
            }
        };
        match (&target.tls, tls) {
            (Some(acceptor), Some(tls)) => match acceptor.reload(&tls) {
                Ok(()) => tracing::info!("SIGHUP: TLS certificates reloaded"),
                Err(error) => {
                    tracing::error!(%error, "SIGHUP: TLS certificates not reloaded; nothing changed");
                    continue;
                }
            },
            (None, None) => {}
            _ => tracing::warn!(
                key = "downstream.tls",
                "SIGHUP: turning TLS on or off needs a restart"
            ),
        }
        target.server.set(config);
        if let Some(loaded) = &loaded {
            let changes = config::file_changes(&applied, &loaded.text);
            for change in &changes {
                tracing::info!(file = %loaded.path.display(), "SIGHUP: {change}");
            }
            tracing::info!(
                file = %loaded.path.display(),
                changed = changes.len(),
                "SIGHUP: configuration reloaded"
            );
            applied.clone_from(&loaded.text);
        }
    }
}

/// Tells systemd (`Type=notify`, `notify-reload`) how the service is: nothing when not run
/// by it (`NOTIFY_SOCKET` unset).
fn systemd(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::debug!(%error, "systemd notification not sent");
    }
}

/// Says `READY=1` again when a reload is over, however it ended.
struct ReadyAgain;

impl Drop for ReadyAgain {
    fn drop(&mut self) {
        systemd(&[sd_notify::NotifyState::Ready]);
    }
}

/// Warns about settings of a reloaded file that only a restart applies.
fn warn_restart_only(file: &FileConfig, running: &Common) {
    let restart_only = [
        ("listen", file.listen.is_some_and(|l| l != running.listen)),
        (
            "workers",
            file.workers.is_some_and(|w| Some(w) != running.workers),
        ),
        (
            "admin",
            file.admin.is_some_and(|a| Some(a) != running.admin),
        ),
        (
            "access_log",
            file.access_log.is_some_and(|a| a != running.access_log),
        ),
        (
            "access_log_file",
            file.access_log_file.as_ref() != running.access_log_file.as_ref()
                && file.access_log_file.is_some(),
        ),
    ];
    for (key, changed) in restart_only {
        if changed {
            tracing::warn!(key, "SIGHUP: this setting changes only on restart");
        }
    }
}

/// Builds the runtime: one thread for `workers == 1`, else a multi-thread runtime.
pub fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
    });
    if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

/// Header fields given as `-H "Name: value"` lines.
pub fn parse_header_lines(lines: &[String]) -> Result<http::HeaderMap, Box<dyn std::error::Error>> {
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("-H `{line}`: expected `Name: value`"))?;
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes())?,
            http::HeaderValue::from_str(value.trim())?,
        );
    }
    Ok(headers)
}

/// Raises the soft open-file limit to the hard limit (as Go does at start-up), so the
/// connection limit rather than the file table decides how many clients are served.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// SIGINT and SIGTERM, caught from the moment this is made: made before the server says it
/// is ready, so that a signal sent right after `READY=1` drains instead of killing.
pub struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Starts catching both signals.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves when one of them arrives (logged).
    pub async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => tracing::info!("SIGINT received: draining"),
            _ = self.terminate.recv() => tracing::info!("SIGTERM received: draining"),
        }
    }
}

/// `hopline serve`.
pub fn serve(
    args: ServeArgs,
    given: Given,
    loaded: Option<Loaded>,
) -> Result<(), Box<dyn std::error::Error>> {
    let file = loaded.as_ref().map(|l| &l.config);
    let empty = FileConfig::default();
    let file = file.unwrap_or(&empty);
    let common = Common::resolve(args.listen, &args.downstream, &args.ops, &given, file)?;
    let root = given.pick("root", args.root.clone(), file.serve.root.clone().map(Some));
    let origin = match &root {
        Some(root) if !root.is_dir() => {
            return Err(format!("root {}: not a directory", root.display()).into());
        }
        Some(root) => Origin::with_root(root),
        None => Origin::new(),
    };
    let ops = Ops::new(&common)?;
    let reload: Reload = Box::new(move |file: &FileConfig| {
        if file
            .serve
            .root
            .as_ref()
            .is_some_and(|r| Some(r) != root.as_ref())
        {
            tracing::warn!(
                key = "serve.root",
                "SIGHUP: this setting changes only on restart"
            );
        }
        args.downstream.reloaded(&given, file)
    });
    run("serve", common, ops, origin, loaded.map(|l| l.path), reload)
}

/// `hopline check-config`.
pub fn check_config(args: CheckConfigArgs) -> Result<(), Box<dyn std::error::Error>> {
    let loaded = config::load(&args.file)?;
    // Resolve it as both commands would, so that every value is checked.
    let proxy = ProxyArgs::parse_defaults();
    let common = Common::resolve(
        loaded.config.listen.unwrap_or(proxy.listen),
        &proxy.downstream,
        &proxy.ops,
        &Given::default(),
        &loaded.config,
    )?;
    if let Some(tls) = &common.tls {
        // Reads the certificate files and checks each key against its certificate.
        TlsAcceptor::new(tls).map_err(|e| format!("TLS: {e}"))?;
    }
    let proxy_summary = if loaded.config.proxy.group.is_empty()
        && loaded.config.proxy.mode != Some(config::ProxyMode::Forward)
    {
        "no proxy groups (serve, or proxy with --upstream)".to_string()
    } else {
        let config = proxy.proxy_config(&Given::default(), &loaded.config, &Hooks::default())?;
        proxy::summary(&config)
    };
    println!(
        "{}: ok — listen {}, {}; {}",
        args.file.display(),
        common.listen,
        describe(&common.server, &common.listener),
        proxy_summary
    );
    Ok(())
}

/// Sets up logging on standard error, filtered by `filter` (a level or `RUST_LOG`-style
/// directives). The access log is not logging: it has its own writer (`access_log`).
fn init_logging(filter: &str, quiet_servers: bool) {
    use std::io::IsTerminal;
    let mut filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if quiet_servers {
        // The demo starts and stops servers all along; their lifecycle is not news.
        filter = filter.add_directive("hopline::server=warn".parse().expect("a directive"));
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
}

/// The log filter: `--log` if typed, else `RUST_LOG`, else the file's `log`, else `info`.
fn log_filter(typed: Option<&str>, file: Option<&FileConfig>) -> Result<String, String> {
    if let Some(typed) = typed {
        return config::LogFilter::parse(typed)
            .map(|f| f.0)
            .map_err(|e| format!("--log {e}"));
    }
    if let Ok(env) = std::env::var("RUST_LOG")
        && !env.trim().is_empty()
    {
        return config::LogFilter::parse(&env)
            .map(|f| f.0)
            .map_err(|e| format!("RUST_LOG {e}"));
    }
    Ok(file
        .and_then(|f| f.log.clone())
        .map_or_else(|| "info".to_string(), |f| f.0))
}

/// The binary's entry point; returns the exit code.
pub fn main() -> i32 {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let sub = matches
        .subcommand()
        .map(|(_, m)| Given::new(m))
        .unwrap_or_default();
    let config_path = match &cli.command {
        Command::Serve(args) => args.ops.config.clone(),
        Command::Proxy(args) => args.ops.config.clone(),
        _ => None,
    };
    let loaded = match config_path.as_deref().map(config::load).transpose() {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("hopline: {error}");
            return 1;
        }
    };
    let file = loaded.as_ref().map(|l| &l.config);
    let filter = match log_filter(cli.log.as_deref(), file) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("hopline: {error}");
            return 1;
        }
    };
    init_logging(&filter, matches!(cli.command, Command::Demo(_)));
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Serve(args) => serve(*args, sub, loaded),
        Command::Get(args) => get::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Proxy(args) => proxy::run(*args, sub, loaded),
        Command::Top(args) => top::run(args),
        Command::CheckConfig(args) => check_config(args),
    };
    match result {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("hopline: {error}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_matches(args: &[&str]) -> (ServeArgs, Given) {
        let mut argv = vec!["hopline", "serve"];
        argv.extend_from_slice(args);
        let matches = Cli::command().get_matches_from(argv);
        let cli = Cli::from_arg_matches(&matches).unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("serve");
        };
        let given = Given::new(matches.subcommand_matches("serve").unwrap());
        (*serve, given)
    }

    #[test]
    fn cli_parses() {
        Cli::command().debug_assert();
        let (args, given) = serve_matches(&["--no-keepalive", "--max-requests", "5"]);
        let config = args
            .downstream
            .server_config(&given, &DownstreamFile::default());
        assert!(!config.keep_alive);
        assert_eq!(config.max_requests, Some(5));
    }

    #[test]
    fn size_and_duration_flags_take_units() {
        let (args, given) = serve_matches(&[
            "--max-body",
            "10m",
            "--max-head-bytes",
            "32k",
            "--keepalive-timeout",
            "1h30m",
            "--http2-stream-window",
            "512KiB",
        ]);
        let config = args
            .downstream
            .server_config(&given, &DownstreamFile::default());
        assert_eq!(config.max_body_bytes, Some(10 << 20));
        assert_eq!(config.head_limits.max_head_bytes, 32 << 10);
        assert_eq!(config.keepalive_timeout, Duration::from_secs(5400));
        assert_eq!(config.http2.stream_window, 512 << 10);
        let refused = |args: &[&str]| {
            let mut argv = vec!["hopline", "serve"];
            argv.extend_from_slice(args);
            Cli::command().try_get_matches_from(argv).unwrap_err()
        };
        let error = refused(&["--max-body", "lots"]).to_string();
        assert!(error.contains("not a size"), "{error}");
        let error = refused(&["--http2-max-frame-size", "1k"]).to_string();
        assert!(error.contains("16384"), "{error}");
    }

    #[test]
    fn tls_settings_come_from_typed_flags_or_the_file() {
        let file = config::parse(
            std::path::Path::new("t.toml"),
            "[downstream.tls]\ncertificates = [{ cert = \"f.pem\", key = \"f.key\" }]\n\
             session_cache = 5\ntickets = false\n",
        )
        .unwrap();
        let tls_file = file.downstream.tls.as_ref();
        let (args, given) = serve_matches(&[]);
        let tls = args
            .downstream
            .tls
            .server_tls(&given, tls_file)
            .unwrap()
            .unwrap();
        assert_eq!(tls.certificates[0].cert, PathBuf::from("f.pem"));
        assert_eq!((tls.session_cache, tls.tickets), (5, false));
        let (args, given) = serve_matches(&["--tls-cert", "a.pem", "--tls-key", "a.key"]);
        let tls = args
            .downstream
            .tls
            .server_tls(&given, tls_file)
            .unwrap()
            .unwrap();
        assert_eq!(
            tls.certificates.len(),
            1,
            "typed certificates replace the file's"
        );
        assert_eq!(tls.certificates[0].key, PathBuf::from("a.key"));
        let (args, given) = serve_matches(&["--tls-cert", "a.pem"]);
        let error = args.downstream.tls.server_tls(&given, None).unwrap_err();
        assert!(error.contains("in pairs"), "{error}");
        let (args, given) = serve_matches(&[]);
        assert!(
            args.downstream
                .tls
                .server_tls(&given, None)
                .unwrap()
                .is_none(),
            "plain HTTP"
        );
    }

    #[test]
    fn typed_flags_win_over_the_file_and_the_file_over_defaults() {
        let file = config::parse(
            std::path::Path::new("t.toml"),
            "[downstream]\nkeepalive_timeout = \"5s\"\nmax_requests = 7\nkeepalive = false\n",
        )
        .unwrap();
        let (args, given) = serve_matches(&["--max-requests", "9"]);
        let config = args.downstream.server_config(&given, &file.downstream);
        assert_eq!(
            config.keepalive_timeout,
            Duration::from_secs(5),
            "from the file"
        );
        assert_eq!(config.max_requests, Some(9), "the typed flag wins");
        assert!(!config.keep_alive, "from the file");
        assert_eq!(
            config.header_timeout,
            Duration::from_secs(10),
            "the default"
        );
        let (args, given) = serve_matches(&["--keepalive-timeout", "60s"]);
        let config = args.downstream.server_config(&given, &file.downstream);
        assert_eq!(
            config.keepalive_timeout,
            Duration::from_secs(60),
            "typed, even when equal to the default"
        );
    }
}

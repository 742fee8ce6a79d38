//! The command line: subcommands and their flags, mapped onto library configuration.
//!
//! Owns argument parsing, runtime construction, signals and logging set-up. It must not
//! contain protocol logic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use demo::DemoArgs;

pub mod bench;
pub mod demo;
pub mod get;
pub mod proxy;

pub use bench::BenchArgs;
pub use get::GetArgs;
pub use proxy::ProxyArgs;

use crate::conn::ServerConfig;
use crate::origin::Origin;
use crate::server::{ListenerConfig, Server};

/// hopline — an HTTP/1.x connection engine: short-lived, persistent and pipelined
/// connections, hop by hop.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, global = true, default_value = "info")]
    pub log: tracing::Level,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load a page shaped like the median web page in every connection type (HTTP/1.0
    /// short-lived, 6 short-lived, persistent, 6 persistent, pipelined, through a proxy with
    /// pooled or short-lived upstream) over an emulated link at several round-trip times;
    /// print a table and write an HTML report with charts and waterfalls.
    Demo(DemoArgs),
    /// Serve HTTP/1.x: built-in test endpoints (/, /bytes/N, /delay/MS, /echo) and,
    /// with --root, static files.
    Serve(ServeArgs),
    /// Fetch URLs through the pooled client (like curl, with connection reuse shown).
    Get(GetArgs),
    /// Load-test a URL: requests/s, latency percentiles, errors, connections.
    Bench(BenchArgs),
    /// Forward HTTP/1.x hop by hop: a reverse proxy to --upstream URLs, or a forward proxy
    /// (--forward), each side with its own connection policy.
    Proxy(ProxyArgs),
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
}

/// The client-facing connection policy, shared by `serve` and `proxy`.
#[derive(Debug, Args)]
pub struct DownstreamArgs {
    /// Close idle keep-alive connections after this long without a new request
    /// (e.g. 60s, 500ms, 2m; a bare number is seconds).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,
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
    /// Most connections served at once; more wait in the listen backlog, they are not
    /// dropped.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Largest request body in bytes (413) [default: unlimited, bodies are streamed].
    #[arg(long)]
    pub max_body: Option<u64>,
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
    /// Runtime worker threads [default: all cores]. 1 runs a single-threaded runtime.
    #[arg(long)]
    pub workers: Option<usize>,
}

impl DownstreamArgs {
    /// The connection policy these flags describe.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            keep_alive: !self.no_keepalive,
            keepalive_timeout: self.keepalive_timeout,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            write_timeout: self.write_timeout,
            max_requests: self.max_requests,
            max_lifetime: self.max_lifetime,
            advertise_keep_alive: self.advertise_keepalive,
            max_body_bytes: self.max_body,
            pipelining: !self.no_pipelining,
            ..ServerConfig::default()
        }
    }

    /// The listener settings these flags describe.
    pub fn listener_config(&self) -> ListenerConfig {
        ListenerConfig {
            max_connections: self.max_connections,
            drain_timeout: self.drain_timeout,
            ..ListenerConfig::default()
        }
    }

    /// One line describing the policy, for the start-up log.
    pub fn describe(&self) -> String {
        let keep_alive = if self.no_keepalive {
            "short-lived".to_string()
        } else {
            format!("keep-alive {:?}", self.keepalive_timeout)
        };
        format!(
            "{keep_alive}, pipelining {}, max {} connections",
            if self.no_pipelining {
                "refused"
            } else {
                "accepted"
            },
            self.max_connections
        )
    }
}

/// Runs a server with `handler` on `listen` until SIGINT / SIGTERM.
pub fn run_server<H: crate::conn::Handler>(
    what: &str,
    listen: SocketAddr,
    downstream: &DownstreamArgs,
    make_handler: impl FnOnce() -> Result<H, Box<dyn std::error::Error>>,
) -> Result<(), Box<dyn std::error::Error>> {
    raise_open_file_limit();
    let runtime = runtime(downstream.workers)?;
    runtime.block_on(async {
        let handler = make_handler()?;
        let server = Server::bind(
            listen,
            handler,
            downstream.server_config(),
            downstream.listener_config(),
        )
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = server.local_addr()?;
        tracing::info!(
            "hopline {what} listening on http://{addr} ({})",
            downstream.describe()
        );
        let stats = server.stats();
        let summary = server.run(shutdown_signal()).await;
        let totals = stats.snapshot();
        tracing::info!(
            connections = totals.accepted,
            requests = totals.requests,
            aborted = summary.aborted,
            "stopped"
        );
        Ok(())
    })
}

/// Parses `1500ms`, `10s`, `2m`, `1h`, or a bare number of seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 500ms, 10s, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit `{other}` (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
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

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok();
    let term = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

/// `hopline serve`.
pub fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    run_server("serve", args.listen, &args.downstream, || {
        match &args.root {
            Some(root) if !root.is_dir() => {
                Err(format!("--root {}: not a directory", root.display()).into())
            }
            Some(root) => Ok(Origin::with_root(root)),
            None => Ok(Origin::new()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::parse_from(["hopline", "serve", "--no-keepalive", "--max-requests", "5"]);
        let Command::Serve(args) = cli.command else {
            panic!("serve");
        };
        let config = args.downstream.server_config();
        assert!(!config.keep_alive);
        assert_eq!(config.max_requests, Some(5));
    }
}

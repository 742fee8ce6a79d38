//! `hopline bench`: the load generator's command line: flags, progress bar, report.

use std::io::IsTerminal;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http::{Method, Uri};
use indicatif::{ProgressBar, ProgressStyle};

use super::get::ModeArg;
use super::tls::ClientTlsArgs;
use super::{parse_duration, runtime};
use hopline::bench::{BenchConfig, Limit, Report, run as run_bench, version};
use hopline::client::{HopProtocol, alpn_for};
use hopline::conn::client::ClientConfig;
use hopline::conn::h2::Http2Config;
use hopline::pool::Key;
use hopline::transport::tls::{ClientTls, TlsConnector};

/// `hopline bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The URL to load (http:// or https://).
    pub url: String,
    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 50)]
    pub connections: usize,
    /// Run for this long [default: 10s, unless -n is given].
    #[arg(short = 'd', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many requests instead.
    #[arg(short = 'n', long, conflicts_with = "duration")]
    pub requests: Option<u64>,
    /// Connection type.
    #[arg(long, value_enum, default_value_t = ModeArg::Keepalive)]
    pub mode: ModeArg,
    /// Requests in flight per connection when pipelining.
    #[arg(long, default_value_t = 16)]
    pub depth: usize,
    /// Pace the load at this many requests per second in total; latency is then measured
    /// from when each request was due, not when it went out (no coordinated omission).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Runtime threads [default: all cores]; 1 runs a single-threaded runtime (like
    /// `wrk -t1`).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Request method.
    #[arg(short = 'X', long, default_value = "GET")]
    pub method: String,
    /// An extra request field, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// A request body.
    #[arg(long)]
    pub body: Option<String>,
    /// Longest wait for a response (or for a connection to open).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Speak HTTP/1.0.
    #[arg(long = "http1.0")]
    pub http10: bool,
    /// Speak HTTP/2 (ALPN `h2` on https://, prior knowledge on http://), each connection
    /// carrying --streams requests at once (h2load's -m).
    #[arg(long, conflicts_with_all = ["http10", "rate", "mode"])]
    pub h2: bool,
    /// HTTP/2 requests in flight per connection.
    #[arg(long, default_value_t = 1, requires = "h2")]
    pub streams: usize,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 1 if any request failed (no complete response, or a 4xx or 5xx);
    /// without it, only a run in which no request succeeded does.
    #[arg(long)]
    pub fail_on_errors: bool,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

/// `hopline bench`.
pub fn run(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let url: Uri = args.url.parse().map_err(|e| format!("{}: {e}", args.url))?;
    let key = Key::from_uri(&url)
        .filter(|_| url.scheme().is_some())
        .ok_or_else(|| format!("{url}: not an absolute http:// or https:// URL"))?;
    let tls = tls_for(&args, &key, &url)?;
    if args
        .rate
        .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
    {
        return Err("--rate must be a positive number of requests per second".into());
    }
    let headers = super::parse_header_lines(&args.headers)?;
    let limit = match (args.requests, args.duration) {
        (Some(n), _) => Limit::Requests(n),
        (None, Some(d)) => Limit::Duration(d),
        (None, None) => Limit::Duration(Duration::from_secs(10)),
    };
    super::raise_open_file_limit();
    let runtime = runtime(args.threads)?;
    let report = runtime.block_on(async {
        let addr = tokio::net::lookup_host((key.host().trim_matches(['[', ']']), key.port()))
            .await?
            .next()
            .ok_or("the host has no address")?;
        let config = BenchConfig {
            url,
            addr,
            connections: args.connections.max(1),
            limit,
            mode: args.mode.mode(args.depth),
            rate: args.rate,
            method: Method::from_bytes(args.method.as_bytes())?,
            headers,
            body: Bytes::from(args.body.clone().unwrap_or_default()),
            client: {
                let mut client_config = ClientConfig::default();
                client_config.version = version(args.http10);
                client_config.response_timeout = args.timeout;
                client_config.read_timeout = args.timeout;
                client_config.write_timeout = args.timeout;
                client_config
            },
            connect_timeout: args.timeout,
            tls,
            h2_streams: args.h2.then_some(args.streams.max(1)),
            http2: Http2Config::default(),
        };
        let bar = progress_bar(limit);
        let tick = bar.clone().map(|bar| {
            let started = std::time::Instant::now();
            Box::new(move |completed: u64| match limit {
                Limit::Duration(_) => {
                    bar.set_position(started.elapsed().as_millis() as u64);
                    bar.set_message(format!("{completed} responses"));
                }
                Limit::Requests(_) => bar.set_position(completed),
            }) as Box<dyn Fn(u64) + Send>
        });
        let report = run_bench(config, tick).await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        Ok::<_, Box<dyn std::error::Error>>(report)
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    verdict(&report, args.fail_on_errors).map_err(Into::into)
}

/// The TLS connector for an `https://` URL (`None` for `http://`), with the TLS flags'
/// trust and ALPN for the protocol asked for.
fn tls_for(
    args: &BenchArgs,
    key: &Key,
    url: &Uri,
) -> Result<Option<TlsConnector>, Box<dyn std::error::Error>> {
    let protocol = if args.h2 {
        HopProtocol::Http2
    } else {
        HopProtocol::Http1
    };
    match key.scheme() {
        "http" => Ok(None),
        "https" => Ok(Some(match args.tls.connector(protocol)? {
            Some(connector) => connector,
            None => {
                let mut settings = ClientTls::default();
                settings.alpn = alpn_for(protocol);
                TlsConnector::new(&settings)?
            }
        })),
        _ => Err(format!("{url}: only http:// and https:// are supported").into()),
    }
}

/// The run's exit status: a failure when no request succeeded, or with `fail_on_errors`
/// when any failed.
fn verdict(report: &Report, fail_on_errors: bool) -> Result<(), String> {
    let (failed, succeeded) = (report.failed(), report.succeeded());
    if succeeded == 0 {
        return Err(format!(
            "no request succeeded ({failed} failed; see the report)"
        ));
    }
    if fail_on_errors && failed > 0 {
        let all = failed + succeeded;
        return Err(format!(
            "{failed} of {all} requests failed (--fail-on-errors)"
        ));
    }
    Ok(())
}

/// A progress bar on standard error when it is a terminal.
fn progress_bar(limit: Limit) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let (length, template) = match limit {
        Limit::Duration(d) => (
            d.as_millis() as u64,
            "{spinner} [{elapsed_precise}] {wide_bar} {msg}",
        ),
        Limit::Requests(n) => (
            n,
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} responses",
        ),
    };
    let bar = ProgressBar::new(length);
    bar.set_style(ProgressStyle::with_template(template).ok()?);
    Some(bar)
}

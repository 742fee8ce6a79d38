//! `hopline get`: fetch URLs through the pooled client, showing which connection served
//! each one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use http::{HeaderMap, Method, Request};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::parse_duration;
use super::tls::ClientTlsArgs;
use hopline::client::{Client, ClientOptions, Exchange, HopProtocol, Mode};
use hopline::conn::{ClosedRecord, ConnSide, Observer, RequestRecord};
use hopline::error::ErrorKind;
use hopline::pool::PoolConfig;
use hopline::transport::tls::{Handshake, TlsFailure};

/// A connection type, as flags spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// A new connection per request (`Connection: close`).
    Close,
    /// Persistent pooled connections.
    Keepalive,
    /// Pipelined connections (`--depth` requests in flight each).
    Pipeline,
}

impl ModeArg {
    /// The client mode, with `depth` for pipelining.
    pub fn mode(self, depth: usize) -> Mode {
        match self {
            ModeArg::Close => Mode::Close,
            ModeArg::Keepalive => Mode::KeepAlive,
            ModeArg::Pipeline => Mode::Pipeline { depth },
        }
    }
}

/// `hopline get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// URLs to fetch (http:// or https://). Exit status as curl's: 7 cannot connect, 22
    /// with --fail, 28 timed out, 35 TLS handshake failed, 60 certificate not trusted or
    /// not valid for the name.
    #[arg(required = true)]
    pub urls: Vec<String>,
    /// Fetch this many URLs at once (pipelining uses --depth per connection instead).
    #[arg(short = 'P', long, default_value_t = 1)]
    pub parallel: usize,
    /// Connection type.
    #[arg(long, value_enum, default_value_t = ModeArg::Keepalive)]
    pub mode: ModeArg,
    /// Requests in flight per connection when pipelining.
    #[arg(long, default_value_t = 16)]
    pub depth: usize,
    /// Most connections per host (browsers use 6).
    #[arg(long, default_value_t = 6)]
    pub max_per_host: usize,
    /// Request method [default: GET, or POST with --data].
    #[arg(short = 'X', long)]
    pub method: Option<String>,
    /// An extra request field, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// A request body.
    #[arg(short = 'd', long)]
    pub data: Option<String>,
    /// Write bodies: to this file for one URL, into this directory for several, or to
    /// standard output with `-` (the table then goes to standard error).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Show request and response heads on standard error.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Speak HTTP/1.0 (keep-alive only when asked for; no chunked uploads).
    #[arg(long = "http1.0")]
    pub http10: bool,
    /// HTTP/2 where the server agrees by ALPN (https://); http:// stays HTTP/1.1.
    #[arg(long, conflicts_with_all = ["http10", "http2_prior_knowledge"])]
    pub http2: bool,
    /// HTTP/2 without asking: prior knowledge (h2c) on http://, ALPN `h2` alone on
    /// https://. Requests to one server share one connection.
    #[arg(long, conflicts_with = "http10")]
    pub http2_prior_knowledge: bool,
    /// Exit with status 22 if any response is 400 or above.
    #[arg(short = 'f', long)]
    pub fail: bool,
    /// Longest wait for a response.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

/// How one fetch went.
struct Outcome {
    url: String,
    result: Result<Fetched, Failed>,
    elapsed: Duration,
}

/// A fetch that failed: what to print, and the exit status it calls for.
struct Failed {
    message: String,
    exit_code: i32,
}

impl From<String> for Failed {
    fn from(message: String) -> Self {
        Failed {
            message,
            exit_code: 1,
        }
    }
}

impl From<&str> for Failed {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

impl From<hopline::Error> for Failed {
    /// curl's exit status for the failure (`man curl`, EXIT CODES).
    fn from(error: hopline::Error) -> Self {
        let exit_code = match &error.kind {
            ErrorKind::Tls(failure) if failure.is_certificate() => 60,
            ErrorKind::Tls(_) => 35,
            ErrorKind::Timeout(_) => 28,
            ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => 7,
            _ => 1,
        };
        Failed {
            message: error.to_string(),
            exit_code,
        }
    }
}

struct Fetched {
    status: u16,
    size: u64,
    exchange: Exchange,
}

/// `hopline get`.
pub fn run(args: GetArgs) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(fetch_all(args))
}

async fn fetch_all(args: GetArgs) -> Result<(), Box<dyn std::error::Error>> {
    let method = match (&args.method, &args.data) {
        (Some(method), _) => Method::from_bytes(method.as_bytes())?,
        (None, Some(_)) => Method::POST,
        (None, None) => Method::GET,
    };
    let headers = super::parse_header_lines(&args.headers)?;
    let body = Bytes::from(args.data.clone().unwrap_or_default());
    let client = Client::new(client_options(&args)?);
    let to_stdout = args.output.as_deref() == Some(Path::new("-"));
    if let Some(dir) = &args.output
        && args.urls.len() > 1
        && !to_stdout
    {
        std::fs::create_dir_all(dir)?;
    }
    let concurrency = match args.mode {
        ModeArg::Pipeline => args.depth.max(1) * args.max_per_host.max(1),
        _ => args.parallel.max(1),
    };
    let args = Arc::new(args);
    let permits = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (index, url) in args.urls.iter().enumerate() {
        let permit = permits.clone().acquire_owned().await?;
        let (client, args) = (client.clone(), args.clone());
        let (method, headers, body, url) =
            (method.clone(), headers.clone(), body.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let outcome = fetch(&client, &args, index, url, method, headers, body).await;
            drop(permit);
            outcome
        }));
    }
    let mut table: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let mut tally = Tally::default();
    for task in tasks {
        tally.row(&mut table, &task.await?)?;
    }
    let counts = client.stats();
    let total = args.urls.len();
    let Tally {
        failed,
        http_errors,
        reused,
        retried,
        exit_code,
    } = tally;
    writeln!(
        table,
        "{total} request{} over {} connection{} ({reused} reused, {retried} retried, {failed} failed) in {:.2} ms",
        if total == 1 { "" } else { "s" },
        counts.connections,
        if counts.connections == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64() * 1000.0,
    )?;
    table.flush()?;
    if failed > 0 {
        eprintln!("hopline: {failed} of {total} requests failed");
        std::process::exit(exit_code);
    }
    if args.fail && http_errors > 0 {
        eprintln!("hopline: {http_errors} responses were 400 or above");
        std::process::exit(22);
    }
    Ok(())
}

/// The client `get`'s flags describe.
fn client_options(args: &GetArgs) -> Result<ClientOptions, String> {
    let mut options = ClientOptions::with_mode(args.mode.mode(args.depth));
    options.pool = {
        let mut pool_config = PoolConfig::default();
        pool_config.max_connections_per_host = Some(args.max_per_host.max(1));
        pool_config
    };
    options.conn.response_timeout = args.timeout;
    options.conn.read_timeout = args.timeout;
    if args.http10 {
        options.conn.version = http::Version::HTTP_10;
    }
    options.protocol = protocol(args);
    options.conn.write_timeout = args.timeout;
    options.tls = args.tls.connector(options.protocol)?;
    if args.verbose {
        options.conn.hooks.observer = Some(Arc::new(ShowHandshakes {
            insecure: args.tls.insecure,
        }));
    }
    Ok(options)
}

/// The protocol `--http2` and `--http2-prior-knowledge` ask for.
fn protocol(args: &GetArgs) -> HopProtocol {
    if args.http2_prior_knowledge {
        HopProtocol::Http2
    } else if args.http2 {
        HopProtocol::Auto
    } else {
        HopProtocol::Http1
    }
}

/// The fetches so far, for the summary line and the exit status.
#[derive(Debug)]
struct Tally {
    failed: u64,
    http_errors: u64,
    reused: u64,
    retried: u64,
    /// The status a failure calls for (the last failure's).
    exit_code: i32,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            failed: 0,
            http_errors: 0,
            reused: 0,
            retried: 0,
            exit_code: 1,
        }
    }
}

impl Tally {
    /// Counts one fetch and writes its row of the table.
    fn row(&mut self, table: &mut dyn Write, outcome: &Outcome) -> std::io::Result<()> {
        let millis = outcome.elapsed.as_secs_f64() * 1000.0;
        match &outcome.result {
            Ok(fetched) => {
                let ex = fetched.exchange;
                self.reused += u64::from(ex.reused);
                self.retried += u64::from(ex.retried);
                self.http_errors += u64::from(fetched.status >= 400);
                writeln!(
                    table,
                    "{} {:>10} {:>9.2} ms  conn {} {}{}  {}",
                    fetched.status,
                    format!("{} B", fetched.size),
                    millis,
                    ex.connection,
                    if ex.reused { "reused" } else { "new" },
                    if ex.retried { " (retried)" } else { "" },
                    outcome.url
                )
            }
            Err(error) => {
                self.failed += 1;
                self.exit_code = error.exit_code;
                writeln!(
                    table,
                    "ERR {:>10} {:>9.2} ms  {}  {}",
                    "-", millis, error.message, outcome.url
                )
            }
        }
    }
}

/// Fetches one URL, writing its body where `-o` says.
async fn fetch(
    client: &Client,
    args: &GetArgs,
    index: usize,
    url: String,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Outcome {
    let started = Instant::now();
    let result = async {
        let mut builder = Request::builder().method(method).uri(&url);
        if let Some(map) = builder.headers_mut() {
            *map = headers;
        }
        let request = builder
            .body(hopline::conn::Body::from(body))
            .map_err(|e| Failed::from(e.to_string()))?;
        if args.verbose {
            let version = match client.options().protocol {
                HopProtocol::Http1 => format!("{:?}", client.options().conn.version),
                HopProtocol::Http2 => "HTTP/2".to_string(),
                HopProtocol::Auto => "(HTTP/2 if ALPN agrees)".to_string(),
            };
            let mut head = format!("> {} {} {version}\n", request.method(), request.uri());
            for (name, value) in request.headers() {
                head.push_str(&format!(
                    "> {}: {}\n",
                    name,
                    value.to_str().unwrap_or("<binary>")
                ));
            }
            eprintln!("{head}>");
        }
        let response = client.send(request).await?;
        let exchange = response
            .body()
            .exchange()
            .ok_or("the client reported no exchange")?;
        let status = response.status().as_u16();
        if args.verbose {
            let mut head = format!(
                "< {:?} {} (connection {}, {})\n",
                response.version(),
                response.status(),
                exchange.connection,
                if exchange.reused { "reused" } else { "new" }
            );
            for (name, value) in response.headers() {
                head.push_str(&format!(
                    "< {}: {}\n",
                    name,
                    value.to_str().unwrap_or("<binary>")
                ));
            }
            eprintln!("{head}<");
        }
        let mut sink = output_for(args, index, &url).map_err(|e| e.to_string())?;
        let mut body = response.into_body();
        let mut size = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                size += data.len() as u64;
                if let Some(sink) = sink.as_mut() {
                    sink.write_all(&data).map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(Fetched {
            status,
            size,
            exchange,
        })
    }
    .await;
    Outcome {
        url,
        result,
        elapsed: started.elapsed(),
    }
}

/// `get -v`: each TLS handshake as it completes, on standard error.
struct ShowHandshakes {
    /// The certificate is not verified (`-k`).
    insecure: bool,
}

impl Observer for ShowHandshakes {
    fn opened(&self, _side: ConnSide) {}
    fn request(&self, _record: &RequestRecord<'_>) {}
    fn closed(&self, _record: &ClosedRecord) {}

    fn tls_handshake(&self, _side: ConnSide, handshake: &Handshake) {
        let info = &handshake.info;
        eprintln!(
            "* TLS {} {}, ALPN {}, {} handshake in {:.2} ms, certificate {} {}",
            info.version,
            info.cipher,
            info.alpn.as_deref().unwrap_or("none"),
            if info.resumed { "resumed" } else { "full" },
            handshake.duration.as_secs_f64() * 1000.0,
            if self.insecure {
                "NOT verified (--insecure), name"
            } else {
                "verified for"
            },
            info.server_name.as_deref().unwrap_or("-"),
        );
    }

    fn tls_failure(&self, _side: ConnSide, failure: &TlsFailure) {
        eprintln!("* TLS handshake failed: {failure}");
    }
}

/// Where a body goes: nowhere without `-o`; standard output for `-o -`; the named file
/// for one URL; a file in the named directory for several.
fn output_for(
    args: &GetArgs,
    index: usize,
    url: &str,
) -> std::io::Result<Option<Box<dyn Write + Send>>> {
    let Some(output) = &args.output else {
        return Ok(None);
    };
    if output.as_os_str() == "-" {
        return Ok(Some(Box::new(std::io::stdout())));
    }
    let path = if args.urls.len() == 1 {
        output.clone()
    } else {
        let name = url
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty() && !s.contains(':'))
            .unwrap_or("index");
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        output.join(format!("{index:04}-{safe}"))
    };
    Ok(Some(Box::new(std::fs::File::create(path)?)))
}

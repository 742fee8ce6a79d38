//! `hopline get`: fetch URLs through the pooled client, showing which connection served
//! each one.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::parse_duration;
use super::tls::ClientTlsArgs;
use hopline::client::{Client, ClientOptions, Exchange, HopProtocol, Mode};
use hopline::conn::{ClosedRecord, ConnSide, Incoming, Observer, RequestRecord};
use hopline::error::ErrorKind;
use hopline::pool::PoolConfig;
use hopline::transport::tls::{Handshake, TlsFailure};
use hopline::words::counted;

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

/// `hopline get`: fetch URLs as curl does (bodies to standard output), showing on standard
/// error which connection served each.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// URLs to fetch (http:// or https://). Exit status as curl's: 6 cannot resolve the
    /// host, 7 cannot connect, 22 with --fail, 28 timed out, 35 TLS handshake failed, 47 too
    /// many redirects, 60 certificate not trusted or not valid for the name.
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
    /// Request method [default: GET, or POST with a body].
    #[arg(short = 'X', long)]
    pub method: Option<String>,
    /// An extra request field, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// A request body as curl's -d: text, or `@FILE` (`@-` standard input) with its line
    /// breaks removed; several are joined with `&`. Sent as a form
    /// (`application/x-www-form-urlencoded`) unless -H names a Content-Type.
    #[arg(short = 'd', long = "data", conflicts_with = "data_binary")]
    pub data: Vec<String>,
    /// A request body sent exactly as given: text, or `@FILE` (`@-` standard input) byte
    /// for byte.
    #[arg(long)]
    pub data_binary: Option<String>,
    /// Write bodies to this file (one URL), into this directory (several URLs, one file
    /// each), or to standard output with `-` [default: standard output].
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Write each response's head before its body, as received.
    #[arg(short = 'i', long)]
    pub include: bool,
    /// Follow redirects (301, 302, 303, 307, 308) as curl -L does: 303 (and 301/302 after a
    /// POST) continue as GET without the body; credentials are not sent to another origin.
    #[arg(short = 'L', long)]
    pub location: bool,
    /// Most redirects followed per URL with -L (exit 47 beyond).
    #[arg(long, default_value_t = 50)]
    pub max_redirs: u32,
    /// No table, no messages (only the bodies); failures still set the exit status.
    #[arg(short = 's', long)]
    pub silent: bool,
    /// With -s, still say what failed.
    #[arg(short = 'S', long)]
    pub show_error: bool,
    /// Show the request and response heads exactly as they were sent and received (and
    /// each TLS handshake), on standard error.
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

/// How one response (or one failure) went: a row of the table.
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
            ErrorKind::Resolve(_) => 6,
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

/// What every request of the run carries: method, fields, body.
#[derive(Clone)]
struct Template {
    method: Method,
    headers: HeaderMap,
    body: Bytes,
}

/// `application/x-www-form-urlencoded`: what curl sends a -d body as.
const FORM: &str = "application/x-www-form-urlencoded";

impl Template {
    /// The request the flags describe.
    fn of(args: &GetArgs) -> Result<Template, Box<dyn std::error::Error>> {
        let mut headers = super::parse_header_lines(&args.headers)?;
        let body = upload(args)?;
        let method = match (&args.method, &body) {
            (Some(method), _) => Method::from_bytes(method.as_bytes())?,
            (None, Some(_)) => Method::POST,
            (None, None) => Method::GET,
        };
        if body.is_some() && !headers.contains_key(header::CONTENT_TYPE) {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(FORM));
        }
        Ok(Template {
            method,
            headers,
            body: body.unwrap_or_default(),
        })
    }

    fn request(&self, url: &str) -> Result<Request<hopline::Body>, Failed> {
        let mut builder = Request::builder().method(self.method.clone()).uri(url);
        if let Some(map) = builder.headers_mut() {
            *map = self.headers.clone();
        }
        builder
            .body(hopline::Body::from(self.body.clone()))
            .map_err(|e| Failed::from(e.to_string()))
    }
}

/// The body -d or --data-binary give, if any: curl's rules (`@FILE` read, `@-` standard
/// input; -d drops line breaks from what it reads and joins several with `&`).
fn upload(args: &GetArgs) -> Result<Option<Bytes>, String> {
    if let Some(data) = &args.data_binary {
        return read_data(data).map(|bytes| Some(bytes.into()));
    }
    if args.data.is_empty() {
        return Ok(None);
    }
    let mut parts = Vec::new();
    for data in &args.data {
        let mut part = read_data(data)?;
        if data.starts_with('@') {
            part.retain(|&b| b != b'\r' && b != b'\n');
        }
        parts.push(part);
    }
    Ok(Some(parts.join(&b'&').into()))
}

fn read_data(data: &str) -> Result<Vec<u8>, String> {
    match data.strip_prefix('@') {
        Some("-") => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .map_err(|e| format!("reading standard input: {e}"))?;
            Ok(bytes)
        }
        Some(path) => std::fs::read(path).map_err(|e| format!("{path}: {e}")),
        None => Ok(data.as_bytes().to_vec()),
    }
}

/// `hopline get`.
pub fn run(args: GetArgs) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(fetch_all(args))
}

async fn fetch_all(args: GetArgs) -> Result<(), Box<dyn std::error::Error>> {
    let template = Template::of(&args)?;
    let client = Client::new(client_options(&args)?);
    if let Some(dir) = &args.output
        && args.urls.len() > 1
        && dir.as_os_str() != "-"
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
        let (client, args, template, url) =
            (client.clone(), args.clone(), template.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            // Several at once to standard output: each body whole, in the URLs' order.
            let buffered = concurrency > 1;
            let fetched = fetch(&client, &args, index, url, template, buffered).await;
            drop(permit);
            fetched
        }));
    }
    let mut tally = Tally::default();
    let mut table = Table::new(&args);
    for task in tasks {
        let (outcomes, buffered) = task.await?;
        std::io::stdout().write_all(&buffered)?;
        for outcome in &outcomes {
            tally.row(&mut table, outcome)?;
        }
    }
    std::io::stdout().flush()?;
    tally.finish(&mut table, &args, client.stats().connections, started)
}

/// Where the table of responses goes: standard error, unless -s.
struct Table {
    out: Option<std::io::Stderr>,
    /// With -s -S: only failures are said.
    errors_only: bool,
}

impl Table {
    fn new(args: &GetArgs) -> Self {
        Table {
            out: (!args.silent || args.show_error).then(std::io::stderr),
            errors_only: args.silent,
        }
    }

    fn line(&mut self, failure: bool, line: std::fmt::Arguments<'_>) -> std::io::Result<()> {
        match &mut self.out {
            Some(out) if failure || !self.errors_only => writeln!(out, "{line}"),
            _ => Ok(()),
        }
    }
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
        options.conn.hooks.observer = Some(Arc::new(ShowTrace {
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
    responses: u64,
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
            responses: 0,
            failed: 0,
            http_errors: 0,
            reused: 0,
            retried: 0,
            exit_code: 1,
        }
    }
}

impl Tally {
    /// Counts one response (or failure) and writes its row of the table.
    fn row(&mut self, table: &mut Table, outcome: &Outcome) -> std::io::Result<()> {
        let millis = outcome.elapsed.as_secs_f64() * 1000.0;
        match &outcome.result {
            Ok(fetched) => {
                let ex = fetched.exchange;
                self.responses += 1;
                self.reused += u64::from(ex.reused);
                self.retried += u64::from(ex.retried);
                self.http_errors += u64::from(fetched.status >= 400);
                table.line(
                    false,
                    format_args!(
                        "{} {:>10} {:>9.2} ms  conn {} {}{}  {}",
                        fetched.status,
                        format!("{} B", fetched.size),
                        millis,
                        ex.connection,
                        if ex.reused { "reused" } else { "new" },
                        if ex.retried { " (retried)" } else { "" },
                        outcome.url
                    ),
                )
            }
            Err(error) => {
                self.failed += 1;
                self.exit_code = error.exit_code;
                table.line(
                    true,
                    format_args!(
                        "ERR {:>10} {:>9.2} ms  {}  {}",
                        "-", millis, error.message, outcome.url
                    ),
                )
            }
        }
    }

    /// The summary line, and the exit status curl would give.
    fn finish(
        self,
        table: &mut Table,
        args: &GetArgs,
        connections: u64,
        started: Instant,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let requests = self.responses + self.failed;
        table.line(
            false,
            format_args!(
                "{} over {} ({} reused, {} retried, {} failed) in {:.2} ms",
                counted(requests, "request"),
                counted(connections, "connection"),
                self.reused,
                self.retried,
                self.failed,
                started.elapsed().as_secs_f64() * 1000.0,
            ),
        )?;
        if self.failed > 0 {
            table.line(
                true,
                format_args!(
                    "hopline: {} of {requests} failed",
                    counted(self.failed, "request")
                ),
            )?;
            std::process::exit(self.exit_code);
        }
        if args.fail && self.http_errors > 0 {
            let were = if self.http_errors == 1 { "was" } else { "were" };
            table.line(
                true,
                format_args!(
                    "hopline: {} {were} 400 or above (--fail)",
                    counted(self.http_errors, "response")
                ),
            )?;
            std::process::exit(22);
        }
        Ok(())
    }
}

/// Fetches one URL — and, with -L, where it redirects — writing each head (-i) and the
/// final body where the flags say. One outcome per response; what went to a buffer rather
/// than straight to standard output (`buffered`) comes back with them.
async fn fetch(
    client: &Client,
    args: &GetArgs,
    index: usize,
    url: String,
    mut template: Template,
    buffered: bool,
) -> (Vec<Outcome>, Vec<u8>) {
    let mut outcomes = Vec::new();
    let mut sink = match output_for(args, index, &url, buffered) {
        Ok(sink) => sink,
        Err(error) => {
            let failed = Failed::from(format!("{}: {error}", url));
            return (vec![outcome(url, Err(failed), Instant::now())], Vec::new());
        }
    };
    let mut url = url;
    for redirects in 0.. {
        let started = Instant::now();
        let response = match send(client, &template, &url).await {
            Ok(response) => response,
            Err(failed) => {
                outcomes.push(outcome(url, Err(failed), started));
                break;
            }
        };
        let next = args
            .location
            .then(|| redirect(&url, &template, &response))
            .flatten();
        if next.is_some() && redirects >= args.max_redirs {
            let failed = Failed {
                message: format!("Maximum ({}) redirects followed", args.max_redirs),
                exit_code: 47,
            };
            outcomes.push(outcome(url, Err(failed), started));
            break;
        }
        let result = receive(response, args.include, next.is_none(), &mut sink).await;
        outcomes.push(outcome(url, result, started));
        match next {
            Some((next_url, next_template)) => (url, template) = (next_url, next_template),
            None => break,
        }
    }
    (outcomes, sink.into_buffer())
}

fn outcome(url: String, result: Result<Fetched, Failed>, started: Instant) -> Outcome {
    Outcome {
        url,
        result,
        elapsed: started.elapsed(),
    }
}

async fn send(
    client: &Client,
    template: &Template,
    url: &str,
) -> Result<Response<Incoming>, Failed> {
    Ok(client.send(template.request(url)?).await?)
}

/// Reads a response, writing its head (`include`) and, if it is the one to `keep` (not a
/// redirect being followed), its body into `sink`.
async fn receive(
    response: Response<Incoming>,
    include: bool,
    keep: bool,
    sink: &mut Sink,
) -> Result<Fetched, Failed> {
    let exchange = response
        .body()
        .exchange()
        .ok_or("the client reported no exchange")?;
    let status = response.status().as_u16();
    if include {
        sink.write(&head_text(&response))?;
    }
    let mut body = response.into_body();
    let mut size = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            size += data.len() as u64;
            if keep {
                sink.write(&data)?;
            }
        }
    }
    Ok(Fetched {
        status,
        size,
        exchange,
    })
}

/// A response head as text, as -i writes it (HTTP/2's as curl shows it: `HTTP/2 200`).
fn head_text<B>(response: &Response<B>) -> Vec<u8> {
    let version = match response.version() {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let status = response.status();
    let mut out = format!(
        "{version} {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Where -L goes from `response` to `url` (curl's rules), if it is a redirect: the next URL
/// and the request to send there. 303 — and 301 or 302 after a POST — continue as GET
/// without the body; 307 and 308 repeat the request. Credentials (`Authorization`,
/// `Cookie`) are not sent to another origin.
fn redirect<B>(
    url: &str,
    template: &Template,
    response: &Response<B>,
) -> Option<(String, Template)> {
    let status = response.status().as_u16();
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = response.headers().get(header::LOCATION)?.to_str().ok()?;
    let base = url::Url::parse(url).ok()?;
    let next = base.join(location.trim()).ok()?;
    if !matches!(next.scheme(), "http" | "https") {
        return None;
    }
    let mut template = template.clone();
    let as_get = status == 303 && template.method != Method::HEAD
        || matches!(status, 301 | 302) && template.method == Method::POST;
    if as_get {
        template.method = Method::GET;
        template.body = Bytes::new();
        template.headers.remove(header::CONTENT_TYPE);
        template.headers.remove(header::CONTENT_LENGTH);
    }
    if next.origin() != base.origin() {
        template.headers.remove(header::AUTHORIZATION);
        template.headers.remove(header::COOKIE);
    }
    Some((next.to_string(), template))
}

/// `get -v`: each TLS handshake as it completes and each head as it was sent (`>`) and
/// received (`<`), on standard error.
struct ShowTrace {
    /// The certificate is not verified (`-k`).
    insecure: bool,
}

/// `head` as lines prefixed with `mark` (its CRLFs or LFs alike), ending with a bare mark.
fn marked(mark: &str, head: &[u8]) -> String {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split('\n').map(|line| line.trim_end_matches('\r')) {
        if !line.is_empty() {
            out.push_str(&format!("{mark} {line}\n"));
        }
    }
    out.push_str(mark);
    out
}

impl Observer for ShowTrace {
    fn opened(&self, _side: ConnSide) {}
    fn request(&self, _record: &RequestRecord<'_>) {}
    fn closed(&self, _record: &ClosedRecord) {}

    fn head_sent(&self, _side: ConnSide, head: &[u8]) {
        eprintln!("{}", marked(">", head));
    }

    fn head_received(&self, _side: ConnSide, head: &[u8]) {
        eprintln!("{}", marked("<", head));
    }

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

/// Where bodies (and -i heads) go.
enum Sink {
    Stdout,
    /// Standard output later, whole (several fetches at once).
    Buffer(Vec<u8>),
    File(std::fs::File),
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Failed> {
        let written = match self {
            Sink::Stdout => std::io::stdout().write_all(bytes),
            Sink::Buffer(buffer) => {
                buffer.extend_from_slice(bytes);
                Ok(())
            }
            Sink::File(file) => file.write_all(bytes),
        };
        written.map_err(|e| Failed::from(format!("writing the body: {e}")))
    }

    fn into_buffer(self) -> Vec<u8> {
        match self {
            Sink::Buffer(buffer) => buffer,
            _ => Vec::new(),
        }
    }
}

/// Where a body goes: standard output (without -o, or with `-o -`), buffered first when
/// several fetches run at once; the named file for one URL; a file in the named directory
/// for several.
fn output_for(args: &GetArgs, index: usize, url: &str, buffered: bool) -> std::io::Result<Sink> {
    let output = match &args.output {
        Some(output) if output.as_os_str() != "-" => output,
        _ if buffered => return Ok(Sink::Buffer(Vec::new())),
        _ => return Ok(Sink::Stdout),
    };
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
    Ok(Sink::File(std::fs::File::create(path)?))
}

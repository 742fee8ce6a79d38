//! The configuration file (TOML) of `hopline serve` and `hopline proxy`: its model, parsing
//! with errors that name the file, line and key, and the checks that need the whole file.
//!
//! Every command-line flag has a key here (docs/config.md lists them with their defaults;
//! `examples/hopline.toml` is a complete example the tests load). This module only reads
//! and checks the file; the command line merges it with flags (flags win) and turns it
//! into server and proxy settings. It must not start anything.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// A duration written as in flags: `500ms`, `10s`, `1h30m` (a bare number is seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_duration(&number_or_text(deserializer)?)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// A value the file may give as a number (`8192`, `30`) or as text with a unit (`"8k"`, `"30s"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}

/// Parses a duration as humantime writes it (`500ms`, `10s`, `2m`, `1h30m`, `1day`); a bare
/// number, `1.5` too, is seconds (the form every earlier release took).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}; try 500ms, 10s, 1h30m)"))
}

/// Sizes as nginx reads them: the units are powers of 1024 whichever way they are written
/// (`64k` = `64K` = `64KB` = `64KiB` = 65,536).
const SIZES: parse_size::Config = parse_size::Config::new().with_binary();

/// Parses a size: `8192`, `64k`, `10m`, `1g`, `1.5MiB` (units are powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    SIZES
        .parse_size(text.trim())
        .map_err(|e| format!("`{text}` is not a size ({e}; try 8192, 64k, 10m, 1g)"))
}

/// [`parse_size`] into a flag's integer type (`value_parser = size::<usize>`).
pub fn size<T: TryFrom<u64>>(text: &str) -> Result<T, String> {
    let bytes = parse_size(text)?;
    T::try_from(bytes).map_err(|_| format!("`{text}` ({bytes} bytes) is too large here"))
}

/// An HTTP/2 frame payload limit: a size from 16k to 16m - 1 (RFC 9113 §6.5.2; the `h2`
/// crate asserts it).
pub fn frame_size(text: &str) -> Result<u32, String> {
    let bytes = size::<u32>(text)?;
    if !(16_384..=16_777_215).contains(&bytes) {
        return Err(format!(
            "`{text}`: a frame size is 16384 (16k) to 16777215 (16m - 1) bytes"
        ));
    }
    Ok(bytes)
}

/// The text of a key the file may give as a number or as text with a unit.
fn number_or_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Number(number) => number.to_string(),
        NumberOrText::Text(text) => text,
    })
}

/// `#[serde(deserialize_with = "opt_size")]`: a size key, as a number or as text with a unit.
fn opt_size<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    size(&number_or_text(deserializer)?)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// `#[serde(deserialize_with = "opt_frame_size")]`: [`frame_size`] in the file.
fn opt_frame_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    frame_size(&number_or_text(deserializer)?)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// An `http://host:port` or `https://host:port` upstream URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl(pub Uri);

impl<'de> Deserialize<'de> for ServerUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let uri: Uri = text
            .parse()
            .map_err(|e| serde::de::Error::custom(format!("`{text}`: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(serde::de::Error::custom(format!(
                "`{text}`: an upstream is an http://host:port or https://host:port URL"
            )));
        }
        Ok(ServerUrl(uri))
    }
}

/// `access_log`: off, or one line per request as text, JSON or nginx's combined format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// No access log.
    Off,
    /// `key=value` text lines.
    Text,
    /// One JSON object per line.
    Json,
    /// nginx's `combined` format, then the connection id, the request's number on it and
    /// the upstream's timing.
    Combined,
}

/// How worker threads are laid out (`--layout`, `layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// One single-threaded runtime and `SO_REUSEPORT` listener per worker; the kernel
    /// spreads new connections over them.
    PerCore,
    /// One multi-threaded runtime, tasks stolen between workers.
    Shared,
}

/// A PROXY protocol version as the file writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyVersionName {
    /// `v1`.
    V1,
    /// `v2`.
    V2,
}

impl From<ProxyVersionName> for crate::transport::proxy_header::ProxyVersion {
    fn from(name: ProxyVersionName) -> Self {
        match name {
            ProxyVersionName::V1 => crate::transport::proxy_header::ProxyVersion::V1,
            ProxyVersionName::V2 => crate::transport::proxy_header::ProxyVersion::V2,
        }
    }
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--workers`.
    pub workers: Option<usize>,
    /// `--layout`: per-core or shared.
    pub layout: Option<Layout>,
    /// `--admin`.
    pub admin: Option<SocketAddr>,
    /// `--access-log`.
    pub access_log: Option<AccessLogFormat>,
    /// `--access-log-file`.
    pub access_log_file: Option<PathBuf>,
    /// `--log`: error, warn, info, debug, trace.
    pub log: Option<LogFilter>,
    /// The client-facing policy.
    #[serde(default)]
    pub downstream: DownstreamFile,
    /// `hopline serve` only.
    #[serde(default)]
    pub serve: ServeFile,
    /// `hopline proxy` only.
    #[serde(default)]
    pub proxy: ProxyFile,
}

/// What the process logs: a level (`info`) or `RUST_LOG`-style directives
/// (`warn,hopline::proxy=debug`), checked when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter(pub String);

impl LogFilter {
    /// `text`, if tracing-subscriber's `EnvFilter` reads it.
    pub fn parse(text: &str) -> Result<LogFilter, String> {
        tracing_subscriber::EnvFilter::try_new(text)
            .map(|_| LogFilter(text.to_string()))
            .map_err(|e| {
                format!("`{text}`: {e} (a level: error, warn, info, debug, trace; or directives such as warn,hopline::proxy=debug)")
            })
    }
}

impl<'de> Deserialize<'de> for LogFilter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        LogFilter::parse(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// `[downstream]`: the connection policy towards clients.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamFile {
    /// `--keepalive-timeout`.
    pub keepalive_timeout: Option<Dur>,
    /// `--keepalive-timeout-min`.
    pub keepalive_timeout_min: Option<Dur>,
    /// `--park-idle-after`.
    pub park_idle_after: Option<Dur>,
    /// `false`: `--no-park-idle`.
    pub park_idle: Option<bool>,
    /// `--header-timeout`.
    pub header_timeout: Option<Dur>,
    /// `--body-timeout`.
    pub body_timeout: Option<Dur>,
    /// `--write-timeout`.
    pub write_timeout: Option<Dur>,
    /// `--max-requests`.
    pub max_requests: Option<u64>,
    /// `--max-lifetime`.
    pub max_lifetime: Option<Dur>,
    /// `--max-lifetime-jitter`.
    pub max_lifetime_jitter: Option<Dur>,
    /// `--max-connections`.
    pub max_connections: Option<usize>,
    /// `--max-body`.
    #[serde(default, deserialize_with = "opt_size")]
    pub max_body: Option<u64>,
    /// `--max-request-line`.
    #[serde(default, deserialize_with = "opt_size")]
    pub max_request_line: Option<usize>,
    /// `--max-head-bytes`.
    #[serde(default, deserialize_with = "opt_size")]
    pub max_head_bytes: Option<usize>,
    /// `--max-headers`.
    pub max_headers: Option<usize>,
    /// `--max-chunk-line`.
    #[serde(default, deserialize_with = "opt_size")]
    pub max_chunk_line: Option<usize>,
    /// `--max-trailer-bytes`.
    #[serde(default, deserialize_with = "opt_size")]
    pub max_trailer_bytes: Option<usize>,
    /// `false`: `--no-keepalive`.
    pub keepalive: Option<bool>,
    /// `false`: `--no-pipelining`.
    pub pipelining: Option<bool>,
    /// `--advertise-keepalive`.
    pub advertise_keepalive: Option<bool>,
    /// `--drain-timeout`.
    pub drain_timeout: Option<Dur>,
    /// `--drain-grace`.
    pub drain_grace: Option<Dur>,
    /// `--proxy-protocol`.
    pub proxy_protocol: Option<bool>,
    /// `--proxy-protocol-from`.
    pub proxy_protocol_from: Option<Vec<ipnet::IpNet>>,
    /// `[downstream.tls]`: speak HTTPS to clients.
    pub tls: Option<DownstreamTlsFile>,
    /// `[downstream.http2]`: HTTP/2 towards clients.
    pub http2: Option<Http2File>,
}

/// `[downstream.http2]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2File {
    /// `false`: `--no-http2`.
    pub enabled: Option<bool>,
    /// `--http2-max-streams`.
    pub max_streams: Option<u32>,
    /// `--http2-stream-window`.
    #[serde(default, deserialize_with = "opt_size")]
    pub stream_window: Option<u32>,
    /// `--http2-connection-window`.
    #[serde(default, deserialize_with = "opt_size")]
    pub connection_window: Option<u32>,
    /// `--http2-max-frame-size`.
    #[serde(default, deserialize_with = "opt_frame_size")]
    pub max_frame_size: Option<u32>,
    /// `--http2-max-header-list`.
    #[serde(default, deserialize_with = "opt_size")]
    pub max_header_list: Option<u32>,
    /// `--http2-keepalive`.
    pub keepalive: Option<Dur>,
}

/// A certificate chain and its key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFile {
    /// `--tls-cert`: the chain, end-entity certificate first.
    pub cert: PathBuf,
    /// `--tls-key`: its private key.
    pub key: PathBuf,
}

/// `[downstream.tls]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamTlsFile {
    /// The chains to present, chosen by SNI (the first by default): `--tls-cert` and
    /// `--tls-key`, in pairs.
    #[serde(default)]
    pub certificates: Vec<CertificateFile>,
    /// `--tls-session-cache`: sessions kept for resumption by ID.
    pub session_cache: Option<usize>,
    /// `false`: `--no-tls-tickets`.
    pub tickets: Option<bool>,
}

/// `tls` of an upstream policy: how `https://` upstreams are verified.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsFile {
    /// `--upstream-cacert`: trust these authorities instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// `--upstream-insecure`: verify nothing (tests only).
    pub insecure: Option<bool>,
    /// `--upstream-sni`: the name to send and verify instead of the upstream's host.
    pub server_name: Option<String>,
    /// `--upstream-cert` / `--upstream-key`: a client certificate (mutual TLS).
    pub client_certificate: Option<CertificateFile>,
}

impl UpstreamTlsFile {
    /// These settings with `defaults` filling what they leave unset.
    pub fn or(&self, defaults: &UpstreamTlsFile) -> UpstreamTlsFile {
        UpstreamTlsFile {
            ca_file: self.ca_file.clone().or_else(|| defaults.ca_file.clone()),
            insecure: self.insecure.or(defaults.insecure),
            server_name: self
                .server_name
                .clone()
                .or_else(|| defaults.server_name.clone()),
            client_certificate: self
                .client_certificate
                .clone()
                .or_else(|| defaults.client_certificate.clone()),
        }
    }
}

/// `[serve]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    /// `--root`.
    pub root: Option<PathBuf>,
}

/// `[proxy] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    /// To the configured upstream groups.
    Reverse,
    /// To the targets requests name (`--forward`).
    Forward,
}

/// `[proxy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFile {
    /// Reverse (default) or forward.
    pub mode: Option<ProxyMode>,
    /// `--name`.
    pub name: Option<String>,
    /// `false`: `--no-forwarded`.
    pub forwarded_headers: Option<bool>,
    /// `--connect-port` (forward).
    pub connect_ports: Option<Vec<u16>>,
    /// `[proxy.upstream]`: the upstream policy of every group unless the group says
    /// otherwise (and of the forward proxy).
    #[serde(default)]
    pub upstream: PolicyFile,
    /// `[[proxy.group]]`: upstream groups, the first that takes a request gets it.
    #[serde(default)]
    pub group: Vec<Spanned<GroupFile>>,
}

/// `mode` of an upstream policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamMode {
    /// A connection per request.
    Close,
    /// Pooled persistent connections.
    Keepalive,
    /// Pipelined connections.
    Pipeline,
}

/// `http_version` of an upstream policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum HttpVersion {
    /// HTTP/1.0 (keep-alive asked for; chunked request bodies buffered).
    #[serde(rename = "1.0")]
    Http10,
    /// HTTP/1.1.
    #[serde(rename = "1.1")]
    Http11,
}

/// `protocol` of an upstream policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolName {
    /// HTTP/1.1 (or 1.0 with `http_version`).
    Http1,
    /// HTTP/2 (ALPN `h2` to `https://` upstreams, prior knowledge to `http://` ones).
    H2,
    /// HTTP/2 with prior knowledge (the same as `h2`, for `http://` upstreams).
    H2c,
    /// HTTP/2 where ALPN agrees, else HTTP/1.1.
    Auto,
}

impl From<ProtocolName> for crate::client::HopProtocol {
    fn from(name: ProtocolName) -> Self {
        use crate::client::HopProtocol;
        match name {
            ProtocolName::Http1 => HopProtocol::Http1,
            ProtocolName::H2 | ProtocolName::H2c => HopProtocol::Http2,
            ProtocolName::Auto => HopProtocol::Auto,
        }
    }
}

/// `balance` of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BalanceName {
    /// In turn.
    RoundRobin,
    /// Fewest requests in flight.
    LeastOutstanding,
}

/// An upstream connection policy (`[proxy.upstream]`, `[proxy.group.policy]`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// `--upstream-mode`.
    pub mode: Option<UpstreamMode>,
    /// `--upstream-depth`.
    pub depth: Option<usize>,
    /// `--upstream-max-idle`.
    pub max_idle: Option<usize>,
    /// `--upstream-min-idle`.
    pub min_idle: Option<usize>,
    /// `--upstream-max-connections`.
    pub max_connections: Option<usize>,
    /// `--upstream-idle-timeout`.
    pub idle_timeout: Option<Dur>,
    /// `--upstream-max-requests`.
    pub max_requests: Option<u64>,
    /// `--upstream-max-lifetime`.
    pub max_lifetime: Option<Dur>,
    /// `--upstream-max-lifetime-jitter`.
    pub max_lifetime_jitter: Option<Dur>,
    /// `--upstream-http1.0`.
    pub http_version: Option<HttpVersion>,
    /// `--upstream-protocol`: `http1`, `h2`, `h2c` or `auto`.
    pub protocol: Option<ProtocolName>,
    /// `--upstream-proxy-protocol`: `v1` or `v2`.
    pub proxy_protocol: Option<ProxyVersionName>,
    /// `--upstream-timeout`.
    pub timeout: Option<Dur>,
    /// `--connect-timeout`.
    pub connect_timeout: Option<Dur>,
    /// `[proxy.upstream.tls]`, `[proxy.group.policy.tls]`: verification of `https://`
    /// upstreams.
    #[serde(default)]
    pub tls: UpstreamTlsFile,
}

impl PolicyFile {
    /// This policy with `defaults` filling what it leaves unset.
    pub fn or(&self, defaults: &PolicyFile) -> PolicyFile {
        PolicyFile {
            mode: self.mode.or(defaults.mode),
            depth: self.depth.or(defaults.depth),
            max_idle: self.max_idle.or(defaults.max_idle),
            min_idle: self.min_idle.or(defaults.min_idle),
            max_connections: self.max_connections.or(defaults.max_connections),
            idle_timeout: self.idle_timeout.or(defaults.idle_timeout),
            max_requests: self.max_requests.or(defaults.max_requests),
            max_lifetime: self.max_lifetime.or(defaults.max_lifetime),
            max_lifetime_jitter: self.max_lifetime_jitter.or(defaults.max_lifetime_jitter),
            http_version: self.http_version.or(defaults.http_version),
            protocol: self.protocol.or(defaults.protocol),
            proxy_protocol: self.proxy_protocol.or(defaults.proxy_protocol),
            timeout: self.timeout.or(defaults.timeout),
            connect_timeout: self.connect_timeout.or(defaults.connect_timeout),
            tls: self.tls.or(&defaults.tls),
        }
    }
}

/// `[[proxy.group]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupFile {
    /// Its name (metrics label).
    pub name: String,
    /// Takes requests for this host only.
    pub host: Option<String>,
    /// Takes requests under this path only.
    pub path_prefix: Option<String>,
    /// Its servers (`--upstream`).
    pub servers: Vec<ServerUrl>,
    /// `--balance`.
    pub balance: Option<BalanceName>,
    /// `--upstream-down-for`.
    pub down_for: Option<Dur>,
    /// Its own upstream policy, over `[proxy.upstream]`.
    #[serde(default)]
    pub policy: PolicyFile,
}

/// A file that could not be used: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: {key}{message}")]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// 1-based line (0 when the file could not be read).
    pub line: usize,
    /// `[table] key: `, or empty when unknown.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// A parsed file with its text (for line numbers of later checks).
#[derive(Debug)]
pub struct Loaded {
    /// Where it came from.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
    /// Its content.
    pub config: FileConfig,
}

impl Loaded {
    /// An error about the byte range `span` of the file.
    pub fn error_at(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> ConfigError {
        error_at(&self.path, &self.text, Some(span), message.into())
    }

    /// Checks what parsing alone cannot: group names unique and servers present, a forward
    /// proxy without groups, connect ports only for a forward proxy.
    pub fn check(&self) -> Result<(), ConfigError> {
        let proxy = &self.config.proxy;
        let forward = proxy.mode == Some(ProxyMode::Forward);
        let mut names = std::collections::HashSet::new();
        for group in &proxy.group {
            if forward {
                return Err(self.error_at(
                    group.span(),
                    "a forward proxy has no upstream groups (remove [[proxy.group]] or set mode = \"reverse\")",
                ));
            }
            if group.get_ref().servers.is_empty() {
                return Err(self.error_at(
                    group.span(),
                    format!("group `{}` has no servers", group.get_ref().name),
                ));
            }
            if !names.insert(group.get_ref().name.clone()) {
                return Err(self.error_at(
                    group.span(),
                    format!("group name `{}` is used twice", group.get_ref().name),
                ));
            }
            if group
                .get_ref()
                .path_prefix
                .as_deref()
                .is_some_and(|p| !p.starts_with('/'))
            {
                return Err(self.error_at(group.span(), "path_prefix must start with `/`"));
            }
        }
        if !forward && proxy.connect_ports.is_some() {
            return Err(error_at(
                &self.path,
                &self.text,
                find_key(&self.text, "connect_ports"),
                "connect_ports only applies to mode = \"forward\"".into(),
            ));
        }
        Ok(())
    }
}

/// Reads and parses a file; the error names the file, line and key.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.display().to_string(),
        line: 0,
        key: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    let config = parse(path, &text)?;
    let loaded = Loaded {
        path: path.to_path_buf(),
        text,
        config,
    };
    loaded.check()?;
    Ok(loaded)
}

/// Parses file text (`path` names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| error_at(path, text, e.span(), e.message().to_string()))
}

fn find_key(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with(key) {
            return Some(offset..offset + line.len());
        }
        offset += line.len();
    }
    None
}

/// An error at `span` of `text`: its line, and the key and table written there.
fn error_at(
    path: &Path,
    text: &str,
    span: Option<std::ops::Range<usize>>,
    message: String,
) -> ConfigError {
    let Some(span) = span else {
        return ConfigError {
            path: path.display().to_string(),
            line: 0,
            key: String::new(),
            message,
        };
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let key = line_text
        .split_once('=')
        .map(|(key, _)| key.trim().trim_matches('"').to_string())
        .filter(|key| !key.is_empty() && !key.starts_with('['));
    // The table the line belongs to: the last header above it.
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(str::to_string);
    let key = match (table, key) {
        (_, None) if line_text.trim().starts_with('[') => format!("{}: ", line_text.trim()),
        (Some(table), Some(key)) => format!("{table} {key}: "),
        (None, Some(key)) => format!("{key}: "),
        (Some(table), None) => format!("{table}: "),
        (None, None) => String::new(),
    };
    ConfigError {
        path: path.display().to_string(),
        line,
        key,
        message,
    }
}

/// What differs between two versions of a file, one `key: old -> new` line per setting
/// (`[downstream] keepalive_timeout: "5s" -> "30s"`; `(unset)` where a key is absent): what
/// a reload logs. Both texts are TOML the loader accepted.
pub fn file_changes(old: &str, new: &str) -> Vec<String> {
    let parse = |text: &str| text.parse::<toml::Table>().unwrap_or_default();
    let mut changes = Vec::new();
    diff_tables("", &parse(old), &parse(new), &mut changes);
    changes
}

fn diff_tables(at: &str, old: &toml::Table, new: &toml::Table, changes: &mut Vec<String>) {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        match (old.get(key), new.get(key)) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
                let inner = match at {
                    "" => key.clone(),
                    _ => format!("{at}.{key}"),
                };
                diff_tables(&inner, a, b, changes);
            }
            (a, b) if a != b => {
                let show = |v: Option<&toml::Value>| v.map_or("(unset)".into(), |v| v.to_string());
                let place = match at {
                    "" => String::new(),
                    _ => format!("[{at}] "),
                };
                changes.push(format!("{place}{key}: {} -> {}", show(a), show(b)));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<FileConfig, ConfigError> {
        parse(Path::new("test.toml"), text)
    }

    #[test]
    fn durations_parse_like_flags() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m 5s"), Ok(Duration::from_secs(5405)));
        assert_eq!(parse_duration("1day"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn a_reload_says_which_settings_changed() {
        let old = "log = \"info\"\n[downstream]\nkeepalive_timeout = \"5s\"\nmax_body = 10\n";
        let new = "log = \"info\"\n[downstream]\nkeepalive_timeout = \"30s\"\n\
                   [downstream.http2]\nmax_streams = 8\n";
        assert_eq!(
            file_changes(old, new),
            [
                "[downstream] http2: (unset) -> { max_streams = 8 }",
                "[downstream] keepalive_timeout: \"5s\" -> \"30s\"",
                "[downstream] max_body: 10 -> (unset)",
            ]
        );
        assert!(file_changes(old, old).is_empty());
    }

    #[test]
    fn sizes_parse_as_nginx_reads_them() {
        for (text, bytes) in [
            ("8192", 8192),
            ("64k", 64 << 10),
            ("64K", 64 << 10),
            ("64KB", 64 << 10),
            ("64KiB", 64 << 10),
            ("10m", 10 << 20),
            (" 1g ", 1 << 30),
            ("1.5m", 3 << 19),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "ten", "10 parsecs", "-1k"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(size::<u32>("4g").unwrap_err().contains("too large"));
        assert_eq!(size::<u32>("3g"), Ok(3 << 30));
        assert_eq!(frame_size("16k"), Ok(16_384));
        assert_eq!(frame_size("16777215"), Ok(16_777_215));
        assert!(frame_size("8k").is_err());
        assert!(frame_size("16m").is_err());
    }

    #[test]
    fn the_file_takes_units_and_the_old_numbers() {
        let config = parse_str(
            "[downstream]\nmax_body = \"100m\"\nmax_head_bytes = 65536\n\
             max_request_line = \"8k\"\nkeepalive_timeout = \"1h30m\"\n\
             header_timeout = 10\n[downstream.http2]\nstream_window = \"1MiB\"\n",
        )
        .unwrap();
        let down = &config.downstream;
        assert_eq!(down.max_body, Some(100 << 20));
        assert_eq!(down.max_head_bytes, Some(65_536));
        assert_eq!(down.max_request_line, Some(8192));
        assert_eq!(down.keepalive_timeout, Some(Dur(Duration::from_secs(5400))));
        assert_eq!(down.header_timeout, Some(Dur(Duration::from_secs(10))));
        assert_eq!(down.http2.as_ref().unwrap().stream_window, Some(1 << 20));

        let error = parse_str("[downstream]\nmax_body = \"lots\"\n").unwrap_err();
        assert_eq!(
            (error.line, error.key.as_str()),
            (2, "[downstream] max_body: ")
        );
        assert!(error.message.contains("not a size"), "{error}");
        let error = parse_str("[downstream.http2]\nmax_frame_size = 100\n").unwrap_err();
        assert!(error.message.contains("16384"), "{error}");
        let error = parse_str("[downstream.http2]\nmax_streams = \"8k\"\n").unwrap_err();
        assert_eq!(error.line, 2, "{error}");
    }

    #[test]
    fn errors_name_the_line_table_and_key() {
        let error =
            parse_str("listen = \"127.0.0.1:1\"\n[downstream]\nkeepalive_timeout = \"5x\"\n")
                .unwrap_err();
        assert_eq!(
            (error.line, error.key.as_str()),
            (3, "[downstream] keepalive_timeout: ")
        );
        assert!(error.message.contains("not a duration"), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("test.toml:3: [downstream] keepalive_timeout: ")
        );

        let error = parse_str("[downstream]\nkeepalive_timout = \"5s\"\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.message.contains("keepalive_timout"), "{error}");

        let error = parse_str("workers = \"two\"\n").unwrap_err();
        assert_eq!((error.line, error.key.as_str()), (1, "workers: "));

        let error = parse_str("[proxy]\n[[proxy.group]]\nname = \"a\"\nservers = [\"ftp://x\"]\n")
            .unwrap_err();
        assert_eq!(error.line, 4);
        assert!(error.message.contains("http://host:port"), "{error}");

        let error = parse_str("[bogus]\n").unwrap_err();
        assert_eq!(error.line, 1);
        assert!(error.message.contains("bogus"), "{error}");

        let error = parse_str("listen = \"not an address\"\n").unwrap_err();
        assert_eq!((error.line, error.key.as_str()), (1, "listen: "));

        let error = parse_str("log = \"hopline=loud\"\n").unwrap_err();
        assert!(error.message.contains("a level: error"), "{error}");
        assert!(parse_str("log = \"warn,hopline::proxy=debug\"\n").is_ok());
    }

    fn checked(text: &str) -> Result<(), ConfigError> {
        let config = parse_str(text)?;
        Loaded {
            path: "test.toml".into(),
            text: text.into(),
            config,
        }
        .check()
    }

    #[test]
    fn whole_file_checks_name_the_group_line() {
        let groups = "[[proxy.group]]\nname = \"a\"\nservers = [\"http://127.0.0.1:1\"]\n\
                      [[proxy.group]]\nname = \"a\"\nservers = [\"http://127.0.0.1:2\"]\n";
        let error = checked(groups).unwrap_err();
        assert_eq!(error.line, 4);
        assert!(error.message.contains("used twice"), "{error}");

        let error = checked("[[proxy.group]]\nname = \"a\"\nservers = []\n").unwrap_err();
        assert!(error.message.contains("no servers"), "{error}");

        let error = checked(
            "[proxy]\nmode = \"forward\"\n[[proxy.group]]\nname = \"a\"\nservers = [\"http://127.0.0.1:1\"]\n",
        )
        .unwrap_err();
        assert_eq!(error.line, 3);

        let error = checked("[proxy]\nconnect_ports = [443]\n").unwrap_err();
        assert_eq!(error.line, 2);

        let error =
            checked("[[proxy.group]]\nname = \"a\"\npath_prefix = \"api\"\nservers = [\"http://127.0.0.1:1\"]\n")
                .unwrap_err();
        assert!(error.message.contains("path_prefix"), "{error}");
        assert!(checked("").is_ok());
    }

    #[test]
    fn a_group_policy_falls_back_to_the_proxy_policy() {
        let config = parse_str(
            "[proxy.upstream]\nmode = \"pipeline\"\ndepth = 4\n\
             [[proxy.group]]\nname = \"a\"\nservers = [\"http://127.0.0.1:1\"]\n\
             [proxy.group.policy]\ndepth = 16\n",
        )
        .unwrap();
        let group = config.proxy.group[0].get_ref();
        let policy = group.policy.or(&config.proxy.upstream);
        assert_eq!(
            (policy.mode, policy.depth),
            (Some(UpstreamMode::Pipeline), Some(16))
        );
    }
}

//! `hopline proxy`: the proxy's command line and `[proxy]` file section merged into proxy
//! settings: target (upstream groups, or forward), downstream and upstream policies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches};
use http::Uri;

use super::get::ModeArg;
use super::tls::{UpstreamTlsArgs, connector};
use super::{
    Common, DownstreamArgs, Given, Ops, OpsArgs, Reload, parse_duration, run as run_server,
};
use hopline::client::{ClientOptions, HopProtocol, Mode};
use hopline::config::{
    self, BalanceName, FileConfig, HttpVersion, Loaded, PolicyFile, ProxyMode, UpstreamMode,
};
use hopline::conn::Hooks;
use hopline::metrics::UpstreamCounts;
use hopline::pool::PoolConfig;
use hopline::proxy::upstream::{Balance, Upstreams};
use hopline::proxy::{Group, Proxy, ProxyConfig, Target};
use hopline::transport::proxy_header::ProxyVersion;

/// `hopline proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// An upstream to forward to (reverse proxy; repeatable), e.g. http://127.0.0.1:8080.
    /// Replaces the configuration file's upstream groups with one group, `default`.
    #[arg(long = "upstream", value_name = "URL")]
    pub upstreams: Vec<Uri>,
    /// How requests are spread over the upstreams of a group.
    #[arg(long, value_enum, default_value_t = Balance::RoundRobin)]
    pub balance: Balance,
    /// Skip an upstream that refused a connection for this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub upstream_down_for: Duration,
    /// A forward proxy instead: absolute-form requests (GET http://host/path) and CONNECT
    /// tunnels.
    #[arg(long, conflicts_with = "upstreams")]
    pub forward: bool,
    /// A port CONNECT may reach (repeatable) [default: 443].
    #[arg(long = "connect-port", value_name = "PORT")]
    pub connect_ports: Vec<u16>,
    /// This proxy's name in `Via` (and for loop detection) [default: hostname:port].
    #[arg(long)]
    pub name: Option<String>,
    /// Do not add `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded`.
    #[arg(long)]
    pub no_forwarded: bool,
    /// Upstream connection type.
    #[arg(long, value_enum, default_value_t = ModeArg::Keepalive)]
    pub upstream_mode: ModeArg,
    /// Requests in flight per upstream connection when pipelining.
    #[arg(long, default_value_t = 8)]
    pub upstream_depth: usize,
    /// Idle upstream connections kept per upstream (they close after
    /// --upstream-idle-timeout). High by default: a burst of concurrent requests (an HTTP/2
    /// client's streams) should find its connections again, not open new ones each time.
    #[arg(long, default_value_t = 1024)]
    pub upstream_max_idle: usize,
    /// Upstream connections per upstream, busy or idle [default: unlimited].
    #[arg(long)]
    pub upstream_max_connections: Option<usize>,
    /// Idle connections kept open to each upstream server, opened ahead of the first
    /// request and replaced as they retire (standby), so requests find one without a
    /// handshake (keep-alive mode).
    #[arg(long, default_value_t = 0)]
    pub upstream_min_idle: usize,
    /// Close an idle upstream connection after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub upstream_idle_timeout: Duration,
    /// Requests per upstream connection [default: unlimited].
    #[arg(long)]
    pub upstream_max_requests: Option<u64>,
    /// Retire an upstream connection past this age [default: unlimited].
    #[arg(long, value_parser = parse_duration)]
    pub upstream_max_lifetime: Option<Duration>,
    /// Shorten each upstream connection's maximum lifetime by a share of this window, so
    /// that connections opened together are not retired together.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub upstream_max_lifetime_jitter: Duration,
    /// Speak HTTP/1.0 upstream (keep-alive asked for; chunked bodies buffered).
    #[arg(long = "upstream-http1.0")]
    pub upstream_http10: bool,
    /// Upstream protocol: `http1`; `h2` (ALPN to https:// upstreams, prior knowledge to
    /// http:// ones; `h2c` says the same for plaintext); `auto` (h2 where ALPN agrees,
    /// else HTTP/1.1). HTTP/2 connections are shared: many requests at once on each.
    #[arg(long, default_value = "http1", value_parser = clap::value_parser!(HopProtocol))]
    pub upstream_protocol: HopProtocol,
    /// Open each upstream connection with a PROXY protocol header naming the client (for
    /// an upstream behind this proxy that takes one, as HAProxy's accept-proxy); an upstream
    /// connection then carries one client's requests only.
    #[arg(long, value_enum)]
    pub upstream_proxy_protocol: Option<ProxyVersion>,
    /// Longest wait for an upstream response (504 after).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,
    /// Longest time to open an upstream connection (504 after).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    #[command(flatten)]
    pub upstream_tls: UpstreamTlsArgs,
    #[command(flatten)]
    pub downstream: DownstreamArgs,
    #[command(flatten)]
    pub ops: OpsArgs,
}

impl ProxyArgs {
    /// The flags' defaults (nothing typed).
    pub fn parse_defaults() -> ProxyArgs {
        let matches = super::Cli::command().get_matches_from(["hopline", "proxy"]);
        match super::Cli::from_arg_matches(&matches).map(|cli| cli.command) {
            Ok(super::Command::Proxy(args)) => *args,
            _ => unreachable!("`hopline proxy` parses"),
        }
    }

    /// The upstream pool settings of these flags over `file`.
    fn pool_config(&self, given: &Given, file: &PolicyFile) -> PoolConfig {
        let dur = |d: Option<config::Dur>| d.map(|d| d.0);
        let mut pool_config = PoolConfig::default();
        pool_config.max_idle_per_host =
            given.pick("upstream_max_idle", self.upstream_max_idle, file.max_idle);
        pool_config.min_idle_per_host =
            given.pick("upstream_min_idle", self.upstream_min_idle, file.min_idle);
        pool_config.max_connections_per_host = given.pick(
            "upstream_max_connections",
            self.upstream_max_connections,
            file.max_connections.map(Some),
        );
        pool_config.idle_timeout = given.pick(
            "upstream_idle_timeout",
            self.upstream_idle_timeout,
            dur(file.idle_timeout),
        );
        pool_config.max_requests_per_connection = given.pick(
            "upstream_max_requests",
            self.upstream_max_requests,
            file.max_requests.map(Some),
        );
        pool_config.max_lifetime = given.pick(
            "upstream_max_lifetime",
            self.upstream_max_lifetime,
            dur(file.max_lifetime).map(Some),
        );
        pool_config.max_lifetime_jitter = given.pick(
            "upstream_max_lifetime_jitter",
            self.upstream_max_lifetime_jitter,
            dur(file.max_lifetime_jitter),
        );
        pool_config
    }

    /// An upstream policy: typed flags, over `file`, over the defaults.
    fn policy(
        &self,
        given: &Given,
        file: &PolicyFile,
        hooks: &Hooks,
    ) -> Result<ClientOptions, String> {
        let dur = |d: Option<config::Dur>| d.map(|d| d.0);
        let depth = given.pick("upstream_depth", self.upstream_depth, file.depth);
        let mode_arg = given.pick(
            "upstream_mode",
            self.upstream_mode,
            file.mode.map(|m| match m {
                UpstreamMode::Close => ModeArg::Close,
                UpstreamMode::Keepalive => ModeArg::Keepalive,
                UpstreamMode::Pipeline => ModeArg::Pipeline,
            }),
        );
        let mut options = {
            let mut client_options = ClientOptions::default();
            client_options.mode = mode_arg.mode(depth);
            client_options.pool = self.pool_config(given, file);
            client_options.connect_timeout = given.pick(
                "connect_timeout",
                self.connect_timeout,
                dur(file.connect_timeout),
            );
            client_options
        };
        options.conn.response_timeout =
            given.pick("upstream_timeout", self.upstream_timeout, dur(file.timeout));
        let http10 = given.pick(
            "upstream_http10",
            self.upstream_http10,
            file.http_version.map(|v| v == HttpVersion::Http10),
        );
        if http10 {
            options.conn.version = http::Version::HTTP_10;
        }
        options.protocol = given.pick(
            "upstream_protocol",
            self.upstream_protocol,
            file.protocol.map(HopProtocol::from),
        );
        options.proxy_protocol = given.pick(
            "upstream_proxy_protocol",
            self.upstream_proxy_protocol,
            file.proxy_protocol.map(ProxyVersion::from).map(Some),
        );
        options.conn.hooks = hooks.clone();
        options.tls = connector(
            &self.upstream_tls.settings(given, &file.tls),
            options.protocol,
        )
        .map_err(|e| format!("upstream TLS: {e}"))?;
        Ok(options)
    }

    /// The proxy settings of these flags over `file`; connections report to `hooks`.
    pub fn proxy_config(
        &self,
        given: &Given,
        file: &FileConfig,
        hooks: &Hooks,
    ) -> Result<ProxyConfig, String> {
        let section = &file.proxy;
        let forward =
            self.forward || (!given.typed("upstreams") && section.mode == Some(ProxyMode::Forward));
        let target = if forward {
            let ports = given.pick(
                "connect_ports",
                self.connect_ports.clone(),
                section.connect_ports.clone(),
            );
            Target::Forward {
                connect_ports: if ports.is_empty() { vec![443] } else { ports },
            }
        } else if !self.upstreams.is_empty() {
            let upstreams = Upstreams::new(&self.upstreams, self.balance, self.upstream_down_for)?;
            Target::Reverse(vec![Group::catch_all("default", upstreams)])
        } else if !section.group.is_empty() {
            let groups = section
                .group
                .iter()
                .map(|group| {
                    let group = group.get_ref();
                    let urls: Vec<Uri> = group.servers.iter().map(|s| s.0.clone()).collect();
                    let balance = given.pick(
                        "balance",
                        self.balance,
                        group.balance.map(|b| match b {
                            BalanceName::RoundRobin => Balance::RoundRobin,
                            BalanceName::LeastOutstanding => Balance::LeastOutstanding,
                        }),
                    );
                    let down_for = given.pick(
                        "upstream_down_for",
                        self.upstream_down_for,
                        group.down_for.map(|d| d.0),
                    );
                    Ok(Group {
                        name: group.name.as_str().into(),
                        host: group.host.clone(),
                        path_prefix: group.path_prefix.clone(),
                        upstreams: Upstreams::new(&urls, balance, down_for)
                            .map_err(|e| format!("group `{}`: {e}", group.name))?,
                        policy: Some(
                            self.policy(given, &group.policy.or(&section.upstream), hooks)
                                .map_err(|e| format!("group `{}`: {e}", group.name))?,
                        ),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Target::Reverse(groups)
        } else {
            return Err(
                "a reverse proxy needs --upstream URL or [[proxy.group]] in --config (or --forward)".into(),
            );
        };
        let listen = given.pick("listen", self.listen, file.listen);
        let mut config = ProxyConfig::new(target);
        config.name = given
            .pick("name", self.name.clone(), section.name.clone().map(Some))
            .unwrap_or_else(|| default_name(listen));
        if !hopline::proxy::headers::is_valid_via_name(&config.name) {
            return Err(format!(
                "proxy name `{}`: it stands in Via, so it must be a token or host:port",
                config.name
            ));
        }
        config.upstream = self.policy(given, &section.upstream, hooks)?;
        config.forwarded_headers = if given.typed("no_forwarded") {
            !self.no_forwarded
        } else {
            section.forwarded_headers.unwrap_or(!self.no_forwarded)
        };
        Ok(config)
    }
}

/// One line describing a proxy's target.
pub fn summary(config: &ProxyConfig) -> String {
    match &config.target {
        Target::Reverse(groups) => {
            let groups: Vec<String> = groups
                .iter()
                .map(|g| {
                    let policy = g.policy.as_ref().unwrap_or(&config.upstream);
                    let mode = match policy.mode {
                        Mode::Close => "close".to_string(),
                        Mode::KeepAlive => "keepalive".to_string(),
                        Mode::Pipeline { depth } => format!("pipeline({depth})"),
                    };
                    let matcher = match (&g.host, &g.path_prefix) {
                        (None, None) => "*".to_string(),
                        (host, prefix) => format!(
                            "{}{}",
                            host.as_deref().unwrap_or("*"),
                            prefix.as_deref().unwrap_or("")
                        ),
                    };
                    format!(
                        "{} [{matcher} -> {} upstream(s), {mode}]",
                        g.name,
                        g.upstreams.len()
                    )
                })
                .collect();
            format!("reverse proxy, groups: {}", groups.join(", "))
        }
        Target::Forward { connect_ports } => {
            format!("forward proxy, CONNECT to ports {connect_ports:?}")
        }
    }
}

/// `hostname:port`: a `Via` received-by that is unique per proxy instance (RFC 9110
/// §7.6.3), so that chained proxies do not take each other for a loop.
fn default_name(listen: SocketAddr) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let host = ok
        .then(|| {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        })
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        })
        .unwrap_or_else(|| "hopline".into());
    format!("{host}:{}", listen.port())
}

/// `hopline proxy`.
pub fn run(
    args: ProxyArgs,
    given: Given,
    loaded: Option<Loaded>,
) -> Result<(), Box<dyn std::error::Error>> {
    let empty = FileConfig::default();
    let file = loaded.as_ref().map_or(&empty, |l| &l.config);
    let common = Common::resolve(args.listen, &args.downstream, &args.ops, &given, file)?;
    let ops = Ops::new(&common)?;
    let mut config = args.proxy_config(&given, file, &ops.hooks)?;
    config.note_upstream = common.access_log != config::AccessLogFormat::Off;
    let note_upstream = config.note_upstream;
    let what = format!("proxy: {}", summary(&config));
    let proxy = Proxy::new(config);
    if let Some(metrics) = &ops.metrics {
        let proxy = proxy.clone();
        metrics.set_upstreams(Arc::new(move || upstream_counts(&proxy)));
    }
    let hooks = ops.hooks.clone();
    let reloaded = proxy.clone();
    let reload: Reload = Box::new(move |file: &FileConfig| {
        let mut config = args.proxy_config(&given, file, &hooks)?;
        config.note_upstream = note_upstream;
        let downstream = args.downstream.reloaded(&given, file)?;
        tracing::info!("SIGHUP: {}", summary(&config));
        reloaded.reload(config);
        Ok(downstream)
    });
    run_server(&what, common, ops, proxy, loaded.map(|l| l.path), reload)
}

/// The pool and retry counters of every upstream group, and whether its servers are up.
fn upstream_counts(proxy: &Proxy) -> Vec<UpstreamCounts> {
    let mut states = proxy.server_states();
    proxy
        .clients()
        .into_iter()
        .map(|(name, client)| {
            let pool = client.pool().stats();
            let sent = client.stats();
            let servers = states
                .iter_mut()
                .find(|(group, _)| *group == name)
                .map(|(_, servers)| std::mem::take(servers))
                .unwrap_or_default();
            UpstreamCounts {
                servers,
                name,
                reused: pool.reused,
                new: pool.fresh,
                stale_evicted: pool.evicted_stale,
                expired_evicted: pool.evicted_expired,
                waited: pool.waited,
                retries: sent.retries,
                connections: sent.connections,
                requests: sent.requests,
                learned_idle_timeout: client.pool().learned_idle_timeout(),
            }
        })
        .collect()
}

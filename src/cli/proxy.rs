//! `hopline proxy`: the proxy's command line: target, downstream and upstream policies.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use http::Uri;

use super::get::ModeArg;
use super::{DownstreamArgs, parse_duration, run_server};
use crate::client::ClientOptions;
use crate::pool::PoolConfig;
use crate::proxy::upstream::{Balance, Upstreams};
use crate::proxy::{Proxy, ProxyConfig, Target};

/// `hopline proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// An upstream to forward to (reverse proxy; repeatable), e.g. http://127.0.0.1:8080.
    #[arg(
        long = "upstream",
        value_name = "URL",
        required_unless_present = "forward"
    )]
    pub upstreams: Vec<Uri>,
    /// How requests are spread over upstreams.
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
    /// Do not add `X-Forwarded-For` and `Forwarded`.
    #[arg(long)]
    pub no_forwarded: bool,
    /// Upstream connection type.
    #[arg(long, value_enum, default_value_t = ModeArg::Keepalive)]
    pub upstream_mode: ModeArg,
    /// Requests in flight per upstream connection when pipelining.
    #[arg(long, default_value_t = 8)]
    pub upstream_depth: usize,
    /// Idle upstream connections kept per upstream.
    #[arg(long, default_value_t = 64)]
    pub upstream_max_idle: usize,
    /// Upstream connections per upstream, busy or idle [default: unlimited].
    #[arg(long)]
    pub upstream_max_connections: Option<usize>,
    /// Close an idle upstream connection after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub upstream_idle_timeout: Duration,
    /// Requests per upstream connection [default: unlimited].
    #[arg(long)]
    pub upstream_max_requests: Option<u64>,
    /// Speak HTTP/1.0 upstream (keep-alive asked for; chunked bodies buffered).
    #[arg(long = "upstream-http1.0")]
    pub upstream_http10: bool,
    /// Longest wait for an upstream response (504 after).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,
    /// Longest time to open an upstream connection (504 after).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    #[command(flatten)]
    pub downstream: DownstreamArgs,
}

impl ProxyArgs {
    /// The proxy settings these flags describe.
    pub fn proxy_config(&self) -> Result<ProxyConfig, String> {
        let target = if self.forward {
            Target::Forward {
                connect_ports: if self.connect_ports.is_empty() {
                    vec![443]
                } else {
                    self.connect_ports.clone()
                },
            }
        } else {
            Target::Reverse(Upstreams::new(
                &self.upstreams,
                self.balance,
                self.upstream_down_for,
            )?)
        };
        let mut upstream = ClientOptions {
            mode: self.upstream_mode.mode(self.upstream_depth),
            pool: PoolConfig {
                max_idle_per_host: self.upstream_max_idle,
                max_connections_per_host: self.upstream_max_connections,
                idle_timeout: self.upstream_idle_timeout,
                max_requests_per_connection: self.upstream_max_requests,
                max_lifetime: None,
            },
            connect_timeout: self.connect_timeout,
            ..ClientOptions::default()
        };
        upstream.conn.response_timeout = self.upstream_timeout;
        if self.upstream_http10 {
            upstream.conn.version = http::Version::HTTP_10;
        }
        let mut config = ProxyConfig::new(target);
        config.name = self
            .name
            .clone()
            .unwrap_or_else(|| default_name(self.listen));
        config.upstream = upstream;
        config.forwarded_headers = !self.no_forwarded;
        Ok(config)
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
pub fn run(args: ProxyArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = args.proxy_config()?;
    let what = match &config.target {
        Target::Reverse(_) => format!(
            "proxy (reverse to {}, upstream {:?})",
            args.upstreams
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            config.upstream.mode
        ),
        Target::Forward { connect_ports } => {
            format!("proxy (forward, CONNECT to ports {connect_ports:?})")
        }
    };
    run_server(&what, args.listen, &args.downstream, move || {
        Ok(Proxy::new(config))
    })
}

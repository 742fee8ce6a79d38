//! `hopline top ADMIN_ADDR`: the open connections of a running server or proxy, refreshed
//! every second (or printed once with `--once`), from its `/connections` endpoint.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::parse_duration;
use hopline::client::{Client, ClientOptions};

/// `hopline top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// The admin address of a running hopline (its --admin).
    pub admin: String,
    /// Time between refreshes.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Print once and exit.
    #[arg(long)]
    pub once: bool,
    /// Show at most this many connections (oldest first).
    #[arg(long, default_value_t = 40)]
    pub limit: usize,
}

#[derive(Debug, Deserialize)]
struct View {
    downstream: Counts,
    upstream: Counts,
    connections: Vec<Conn>,
}

#[derive(Debug, Deserialize)]
struct Counts {
    open: u64,
    idle: u64,
}

#[derive(Debug, Deserialize)]
struct Conn {
    side: String,
    id: u64,
    peer: String,
    state: String,
    age_ms: u64,
    idle_ms: u64,
    requests: u64,
    tcp: Option<Tcp>,
    #[serde(default)]
    tls: Option<Tls>,
    /// `http/1.1` or `h2` (older servers do not say: HTTP/1.1).
    #[serde(default)]
    protocol: Option<String>,
    /// HTTP/2 streams open.
    #[serde(default)]
    streams: u32,
}

impl Conn {
    /// `h1`, or `h2:N` with N streams open.
    fn protocol(&self) -> String {
        match self.protocol.as_deref() {
            Some("h2") => format!("h2:{}", self.streams),
            _ => "h1".to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Tls {
    version: String,
    cipher: String,
    alpn: Option<String>,
    resumed: bool,
}

impl Tls {
    /// `TLSv1.3 TLS13_AES_128_GCM_SHA256 http/1.1 resumed`.
    fn describe(&self) -> String {
        format!(
            "{} {} {} {}",
            self.version,
            self.cipher,
            self.alpn.as_deref().unwrap_or("-"),
            if self.resumed { "resumed" } else { "full" }
        )
    }
}

#[derive(Debug, Deserialize)]
struct Tcp {
    rtt_us: u32,
    rttvar_us: u32,
    snd_cwnd: u32,
    retransmits: u32,
    delivery_rate: u64,
}

fn age(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

fn rate(bytes_per_second: u64) -> String {
    let bits = bytes_per_second as f64 * 8.0;
    if bits >= 1e9 {
        format!("{:.1}G", bits / 1e9)
    } else if bits >= 1e6 {
        format!("{:.1}M", bits / 1e6)
    } else {
        format!("{:.0}k", bits / 1e3)
    }
}

fn render(view: &View, limit: usize) -> String {
    let mut out = format!(
        "downstream: {} open, {} idle   upstream: {} open, {} idle (pooled)\n\n",
        view.downstream.open, view.downstream.idle, view.upstream.open, view.upstream.idle
    );
    out.push_str(&format!(
        "{:<10} {:>6} {:<22} {:<17} {:<6} {:>8} {:>8} {:>6} {:>9} {:>5} {:>7} {:>8}  {}\n",
        "side",
        "id",
        "peer",
        "state",
        "proto",
        "age",
        "idle",
        "reqs",
        "rtt ms",
        "cwnd",
        "retrans",
        "rate b/s",
        "tls"
    ));
    for conn in view.connections.iter().take(limit) {
        let (rtt, cwnd, retrans, delivery) = match &conn.tcp {
            Some(tcp) => (
                format!(
                    "{:.2}±{:.2}",
                    tcp.rtt_us as f64 / 1000.0,
                    tcp.rttvar_us as f64 / 1000.0
                ),
                tcp.snd_cwnd.to_string(),
                tcp.retransmits.to_string(),
                rate(tcp.delivery_rate),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        out.push_str(&format!(
            "{:<10} {:>6} {:<22} {:<17} {:<6} {:>8} {:>8} {:>6} {:>9} {:>5} {:>7} {:>8}  {}\n",
            conn.side,
            conn.id,
            conn.peer,
            conn.state,
            conn.protocol(),
            age(conn.age_ms),
            age(conn.idle_ms),
            conn.requests,
            rtt,
            cwnd,
            retrans,
            delivery,
            conn.tls
                .as_ref()
                .map_or_else(|| "-".to_string(), Tls::describe)
        ));
    }
    if view.connections.len() > limit {
        out.push_str(&format!("… and {} more\n", view.connections.len() - limit));
    }
    out
}

/// Runs `hopline top`.
pub fn run(args: TopArgs) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = super::runtime(Some(1))?;
    let url = if args.admin.starts_with("http://") {
        format!("{}/connections", args.admin.trim_end_matches('/'))
    } else {
        format!("http://{}/connections", args.admin)
    };
    let terminal = std::io::stdout().is_terminal();
    runtime.block_on(async {
        let client = Client::new(ClientOptions::default());
        loop {
            let response = client.get(&url).await.map_err(|e| format!("{url}: {e}"))?;
            if response.status() != 200 {
                return Err(format!("{url}: status {}", response.status()).into());
            }
            let body = response.into_body().bytes(64 * 1024 * 1024).await?;
            let view: View = serde_json::from_slice(&body)?;
            let text = render(&view, args.limit);
            let mut stdout = std::io::stdout().lock();
            if terminal && !args.once {
                // Clear the screen and home the cursor.
                write!(stdout, "\x1b[2J\x1b[H")?;
            }
            write!(stdout, "{text}")?;
            stdout.flush()?;
            if args.once {
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep(args.interval) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_rates_read_well() {
        assert_eq!(age(5), "5ms");
        assert_eq!(age(1500), "1.5s");
        assert_eq!(age(125_000), "2m05s");
        assert_eq!(age(7_500_000), "2h05m");
        assert_eq!(rate(125_000_000), "1.0G");
        assert_eq!(rate(12_500), "100k");
    }

    #[test]
    fn tls_connections_show_what_was_negotiated() {
        let view: View = serde_json::from_str(
            r#"{"downstream": {"open": 2, "idle": 0}, "upstream": {"open": 0, "idle": 0},
                "connections": [
                  {"side": "downstream", "id": 1, "peer": "127.0.0.1:5000", "state": "idle",
                   "age_ms": 10, "idle_ms": 5, "requests": 3, "tcp": null,
                   "tls": {"version": "TLSv1.3", "cipher": "TLS13_AES_128_GCM_SHA256",
                           "alpn": "http/1.1", "resumed": true, "server_name": "localhost"}},
                  {"side": "downstream", "id": 2, "peer": "127.0.0.1:5001", "state": "in_request",
                   "age_ms": 10, "idle_ms": 5, "requests": 3, "tcp": null, "tls": null,
                   "protocol": "h2", "streams": 7}]}"#,
        )
        .unwrap();
        let text = render(&view, 10);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[2].ends_with(" tls"));
        assert!(lines[3].ends_with("TLSv1.3 TLS13_AES_128_GCM_SHA256 http/1.1 resumed"));
        assert!(lines[4].ends_with("  -"), "plain TCP: {}", lines[4]);
        assert!(lines[3].contains(" h1 "), "{}", lines[3]);
        assert!(
            lines[4].contains(" h2:7 "),
            "HTTP/2 with its open streams: {}",
            lines[4]
        );
    }
}

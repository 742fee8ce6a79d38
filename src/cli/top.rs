//! `hopline top ADMIN_ADDR`: the open connections of a running server or proxy, refreshed
//! every second (or printed once with `--once`), from its `/connections` endpoint: totals
//! and requests per second by side, reuse (requests per connection, new connections per
//! second; per upstream group also the share reused, retries, connections found closed and
//! the learned idle timeout), connections sorted by a key (`--sort`, or a key press: a age,
//! i idle, r requests, c cwnd, t rtt; q quits).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Deserialize;

use super::parse_duration;
use hopline::client::{Client, ClientOptions};
use hopline::pool::warmth::{INITIAL_WINDOW, Warmth};

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
    /// Show at most this many connections.
    #[arg(long, default_value_t = 40)]
    pub limit: usize,
    /// Which connections come first (keys a, i, r, c, t change it while running).
    #[arg(long, value_enum, default_value_t = SortKey::Age)]
    pub sort: SortKey,
}

/// The order of the connection list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    /// Oldest first.
    Age,
    /// Idle longest first.
    Idle,
    /// Most requests first.
    Requests,
    /// Largest congestion window first (the warmest).
    Cwnd,
    /// Largest smoothed round-trip time first.
    Rtt,
}

impl SortKey {
    /// The key a key press asks for (`a`, `i`, `r`, `c`, `t`).
    fn of_key(key: u8) -> Option<SortKey> {
        Some(match key {
            b'a' => SortKey::Age,
            b'i' => SortKey::Idle,
            b'r' => SortKey::Requests,
            b'c' => SortKey::Cwnd,
            b't' => SortKey::Rtt,
            _ => return None,
        })
    }

    fn sort(self, connections: &mut [Conn]) {
        let tcp = |c: &Conn, f: fn(&Tcp) -> u32| c.tcp.as_ref().map_or(0, f);
        match self {
            SortKey::Age => connections.sort_by_key(|c| std::cmp::Reverse(c.age_ms)),
            SortKey::Idle => connections.sort_by_key(|c| std::cmp::Reverse(c.idle_ms)),
            SortKey::Requests => connections.sort_by_key(|c| std::cmp::Reverse(c.requests)),
            SortKey::Cwnd => connections.sort_by_key(|c| std::cmp::Reverse(tcp(c, |t| t.snd_cwnd))),
            SortKey::Rtt => connections.sort_by_key(|c| std::cmp::Reverse(tcp(c, |t| t.rtt_us))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            SortKey::Age => "age",
            SortKey::Idle => "idle",
            SortKey::Requests => "requests",
            SortKey::Cwnd => "cwnd",
            SortKey::Rtt => "rtt",
        }
    }
}

#[derive(Debug, Deserialize)]
struct View {
    downstream: Counts,
    upstream: Counts,
    /// Reuse per upstream group (older servers do not say).
    #[serde(default)]
    upstreams: Vec<Group>,
    connections: Vec<Conn>,
}

#[derive(Debug, Deserialize)]
struct Counts {
    open: u64,
    idle: u64,
    /// Requests so far (older servers do not say).
    #[serde(default)]
    requests: u64,
    /// Connections opened so far (older servers do not say).
    #[serde(default)]
    opened: u64,
}

/// One upstream group's reuse.
#[derive(Debug, Deserialize)]
struct Group {
    name: String,
    connections: u64,
    requests: u64,
    reused: u64,
    new: u64,
    retries: u64,
    stale: u64,
    learned_idle_timeout_s: Option<f64>,
}

/// Requests and new connections per second on each side, from two views `seconds` apart.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rates {
    downstream: f64,
    upstream: f64,
    downstream_new: f64,
    upstream_new: f64,
}

impl Rates {
    fn between(before: &View, after: &View, seconds: f64) -> Rates {
        let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
        let (b, a) = (&before, &after);
        Rates {
            downstream: rate(b.downstream.requests, a.downstream.requests),
            upstream: rate(b.upstream.requests, a.upstream.requests),
            downstream_new: rate(b.downstream.opened, a.downstream.opened),
            upstream_new: rate(b.upstream.opened, a.upstream.opened),
        }
    }
}

/// Requests per connection opened: `12.5 req/conn`.
fn per_connection(requests: u64, opened: u64) -> String {
    match opened {
        0 => "- req/conn".to_string(),
        n => format!("{:.1} req/conn", requests as f64 / n as f64),
    }
}

/// The reuse line: each side's requests per connection and new connections per second,
/// then each upstream group's.
fn reuse(view: &View, rates: Option<Rates>) -> String {
    let new =
        |rate: Option<f64>| rate.map_or_else(|| "- new/s".to_string(), |r| format!("{r:.1} new/s"));
    let side = |counts: &Counts, rate| {
        format!(
            "{}, {}",
            per_connection(counts.requests, counts.opened),
            new(rate)
        )
    };
    let mut line = format!(
        "reuse: downstream {}   upstream {}",
        side(&view.downstream, rates.map(|r| r.downstream_new)),
        side(&view.upstream, rates.map(|r| r.upstream_new)),
    );
    for group in &view.upstreams {
        let checkouts = group.reused + group.new;
        let reused = match checkouts {
            0 => "-".to_string(),
            n => format!("{:.0}%", group.reused as f64 * 100.0 / n as f64),
        };
        let learned = group
            .learned_idle_timeout_s
            .map_or_else(String::new, |s| format!(", learned idle {s:.1}s"));
        line.push_str(&format!(
            "\n  {}: {}, {reused} reused, {}, {} found closed{learned}",
            group.name,
            per_connection(group.requests, group.connections),
            hopline::words::counted(group.retries, "retried request"),
            group.stale,
        ));
    }
    line.push('\n');
    line
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
    /// Whether the sender's window on this connection is grown and open (`warm`), fell
    /// back after idling past the RTO (`reset`), or never grew (`cold`); the sender is this
    /// process downstream (bytes it sent) and the server upstream (bytes it sent us).
    fn window(&self) -> &'static str {
        let Some(tcp) = &self.tcp else {
            return "-";
        };
        let carried = match self.side.as_str() {
            "upstream" => tcp.bytes_received,
            _ => tcp.bytes_acked,
        };
        let idle = if self.state == "idle" {
            self.idle_ms
        } else {
            0
        };
        let warmth = Warmth {
            received: carried,
            idle: Duration::from_millis(idle),
            rto: Duration::from_micros(tcp.rto_us),
        };
        if warmth.is_warm() {
            "warm"
        } else if carried > INITIAL_WINDOW {
            "reset"
        } else {
            "cold"
        }
    }

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
    /// For the window column (older servers do not say).
    #[serde(default)]
    bytes_received: u64,
    #[serde(default)]
    bytes_acked: u64,
    #[serde(default)]
    rto_us: u64,
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

/// One side's totals: `3 open, 1 idle, 1200 requests, 510 req/s`.
fn totals(counts: &Counts, rate: Option<f64>) -> String {
    let rate = rate.map_or_else(|| "- req/s".to_string(), |r| format!("{r:.0} req/s"));
    format!(
        "{} open, {} idle, {} requests, {rate}",
        counts.open, counts.idle, counts.requests
    )
}

fn render(view: &View, limit: usize, sort: SortKey, rates: Option<Rates>) -> String {
    let mut out = format!(
        "downstream: {}   upstream (pooled): {}\n",
        totals(&view.downstream, rates.map(|r| r.downstream)),
        totals(&view.upstream, rates.map(|r| r.upstream)),
    );
    out.push_str(&reuse(view, rates));
    out.push_str(&format!(
        "sorted by {} (keys: a age, i idle, r requests, c cwnd, t rtt, q quit); srtt is the \
         kernel's smoothed round-trip estimate ± its variation (TCP_INFO), which on loopback \
         includes delayed-ACK waits\n",
        sort.name()
    ));
    out.push_str(&format!(
        "{:<10} {:>6} {:<22} {:<17} {:<6} {:>8} {:>8} {:>6} {:>9} {:>5} {:<6} {:>7} {:>8}  {}\n",
        "side",
        "id",
        "peer",
        "state",
        "proto",
        "age",
        "idle",
        "reqs",
        "srtt ms",
        "cwnd",
        "window",
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
            "{:<10} {:>6} {:<22} {:<17} {:<6} {:>8} {:>8} {:>6} {:>9} {:>5} {:<6} {:>7} {:>8}  {}\n",
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
            conn.window(),
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
    let interactive = std::io::stdout().is_terminal() && !args.once;
    runtime.block_on(async {
        let client = Client::new(ClientOptions::default());
        let mut sort = args.sort;
        let mut keys = interactive.then(Keys::start).flatten();
        let mut before: Option<(View, Instant)> = None;
        loop {
            let mut view = fetch(&client, &url).await?;
            let now = Instant::now();
            let rates = before.as_ref().map(|(earlier, at)| {
                Rates::between(
                    earlier,
                    &view,
                    now.duration_since(*at).as_secs_f64().max(1e-3),
                )
            });
            sort.sort(&mut view.connections);
            let text = render(&view, args.limit, sort, rates);
            let mut stdout = std::io::stdout().lock();
            if interactive {
                // Clear the screen and home the cursor; in raw mode lines need their CR.
                write!(stdout, "\x1b[2J\x1b[H{}", text.replace('\n', "\r\n"))?;
            } else {
                write!(stdout, "{text}")?;
            }
            stdout.flush()?;
            if args.once {
                return Ok(());
            }
            before = Some((view, now));
            let key = async {
                match keys.as_mut() {
                    Some(keys) => keys.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(args.interval) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
                key = key => match key {
                    Some(b'q') | None => return Ok(()),
                    Some(key) => sort = SortKey::of_key(key).unwrap_or(sort),
                },
            }
        }
    })
}

async fn fetch(client: &Client, url: &str) -> Result<View, Box<dyn std::error::Error>> {
    let response = client.get(url).await.map_err(|e| format!("{url}: {e}"))?;
    if response.status() != 200 {
        return Err(format!("{url}: status {}", response.status()).into());
    }
    let body = response.into_body().bytes(64 * 1024 * 1024).await?;
    Ok(serde_json::from_slice(&body)?)
}

/// Key presses on a terminal: standard input without line buffering or echo while this
/// lives (restored when it drops), read by a thread.
struct Keys {
    saved: libc::termios,
    presses: tokio::sync::mpsc::Receiver<u8>,
}

impl Keys {
    fn start() -> Option<Keys> {
        use std::io::Read;
        if !std::io::stdin().is_terminal() {
            return None;
        }
        // SAFETY: tcgetattr/tcsetattr on standard input with a termios they fill.
        let mut term: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut term) } != 0 {
            return None;
        }
        let saved = term;
        term.c_lflag &= !(libc::ICANON | libc::ECHO);
        term.c_cc[libc::VMIN] = 1;
        term.c_cc[libc::VTIME] = 0;
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &term) } != 0 {
            return None;
        }
        let (send, presses) = tokio::sync::mpsc::channel(16);
        std::thread::spawn(move || {
            let mut byte = [0u8; 1];
            while let Ok(1) = std::io::stdin().read(&mut byte) {
                if send.blocking_send(byte[0]).is_err() {
                    break;
                }
            }
        });
        Some(Keys { saved, presses })
    }

    async fn next(&mut self) -> Option<u8> {
        self.presses.recv().await
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        // SAFETY: puts back the settings read in `start`.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved) };
    }
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

    fn conn(id: u64, age_ms: u64, requests: u64, cwnd: u32) -> Conn {
        Conn {
            side: "downstream".into(),
            id,
            peer: "127.0.0.1:1".into(),
            state: "idle".into(),
            age_ms,
            idle_ms: age_ms / 2,
            requests,
            tcp: Some(Tcp {
                rtt_us: 50,
                rttvar_us: 10,
                snd_cwnd: cwnd,
                retransmits: 0,
                delivery_rate: 0,
                bytes_received: 0,
                bytes_acked: u64::from(cwnd) * 10_000,
                rto_us: 204_000,
            }),
            tls: None,
            protocol: None,
            streams: 0,
        }
    }

    #[test]
    fn the_window_column_says_warm_reset_or_cold() {
        // Idle half its age: 5 ms, 50 ms, 500 ms.
        let warm = conn(1, 10, 1, 30);
        let cold = conn(2, 100, 1, 1);
        let reset = conn(3, 1000, 1, 30);
        assert_eq!(warm.window(), "warm");
        assert_eq!(cold.window(), "cold");
        if hopline::pool::warmth::slow_start_after_idle() {
            assert_eq!(reset.window(), "reset");
        }
        let mut upstream = conn(4, 10, 1, 1);
        upstream.side = "upstream".into();
        upstream.tcp.as_mut().unwrap().bytes_received = 1_000_000;
        assert_eq!(
            upstream.window(),
            "warm",
            "the server's window, from bytes received"
        );
    }

    #[test]
    fn connections_sort_by_the_key_asked_for() {
        let mut list = vec![conn(1, 10, 5, 30), conn(2, 30, 1, 10), conn(3, 20, 9, 20)];
        let ids = |list: &[Conn]| list.iter().map(|c| c.id).collect::<Vec<_>>();
        SortKey::Age.sort(&mut list);
        assert_eq!(ids(&list), [2, 3, 1]);
        SortKey::Requests.sort(&mut list);
        assert_eq!(ids(&list), [3, 1, 2]);
        SortKey::Cwnd.sort(&mut list);
        assert_eq!(ids(&list), [1, 3, 2]);
        assert_eq!(SortKey::of_key(b'i'), Some(SortKey::Idle));
        assert_eq!(SortKey::of_key(b'x'), None);
    }

    #[test]
    fn totals_show_requests_per_second_per_side() {
        let view = |down: u64, up: u64| View {
            downstream: Counts {
                open: 2,
                idle: 1,
                requests: down,
                opened: down / 10,
            },
            upstream: Counts {
                open: 1,
                idle: 1,
                requests: up,
                opened: up / 30,
            },
            upstreams: vec![Group {
                name: "api".into(),
                connections: up / 30,
                requests: up,
                reused: up - up / 30,
                new: up / 30,
                retries: 1,
                stale: 2,
                learned_idle_timeout_s: Some(2.0),
            }],
            connections: Vec::new(),
        };
        let rates = Rates::between(&view(100, 30), &view(300, 90), 2.0);
        assert_eq!(
            rates,
            Rates {
                downstream: 100.0,
                upstream: 30.0,
                downstream_new: 10.0,
                upstream_new: 1.0,
            }
        );
        let text = render(&view(300, 90), 10, SortKey::Age, Some(rates));
        assert!(
            text.starts_with("downstream: 2 open, 1 idle, 300 requests, 100 req/s   upstream (pooled): 1 open, 1 idle, 90 requests, 30 req/s\n\
                reuse: downstream 10.0 req/conn, 10.0 new/s   upstream 30.0 req/conn, 1.0 new/s\n  \
                api: 30.0 req/conn, 97% reused, 1 retried request, 2 found closed, learned idle 2.0s\n"),
            "{text}"
        );
        assert!(
            text.contains("srtt is the kernel's smoothed round-trip estimate"),
            "{text}"
        );
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
        let text = render(&view, 10, SortKey::Age, None);
        let lines: Vec<&str> = text.lines().collect();
        // Totals, reuse, the sort line, then the table.
        assert!(
            lines[1].starts_with("reuse: downstream - req/conn, - new/s"),
            "{text}"
        );
        assert!(lines[3].ends_with(" tls"));
        assert!(lines[4].ends_with("TLSv1.3 TLS13_AES_128_GCM_SHA256 http/1.1 resumed"));
        assert!(lines[5].ends_with("  -"), "plain TCP: {}", lines[5]);
        assert!(lines[4].contains(" h1 "), "{}", lines[4]);
        assert!(
            lines[5].contains(" h2:7 "),
            "HTTP/2 with its open streams: {}",
            lines[5]
        );
    }
}

//! Soak under faults: mixed keep-alive, short-lived and pipelined traffic through a
//! `hopline proxy` (a separate process, as deployed) to origins that fail at random in the
//! ways a real upstream does. Bounded in time; exits non-zero if any rule is broken:
//!
//! - every request ends with exactly one outcome: a complete, correct response, or a clean
//!   error on the client (a truncated body is an error, never a success); none hangs;
//! - the counts add up (sent = answered + failed, per traffic type);
//! - no connection leaks: once the clients are gone and the pool's idle timeout has passed,
//!   the proxy's active-connection gauges (its `/metrics`) are back to zero;
//! - the proxy's resident memory at the end is within 10% of its value after warm-up (the
//!   median of the samples at one, two and three tenths of the run).
//!
//! Usage: `cargo run --release --example soak -- [--duration 60s] [--bin target/release/hopline]`
//! (10 minutes on demand: `--duration 10m`).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hopline::Body;
use hopline::client::{Client, ClientOptions, Mode};
use hopline::pool::PoolConfig;
use http::{Method, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// A small deterministic generator (xorshift64*), so a run can be repeated.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a faulty origin does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    CloseAfterResponse,
    ResetMidBody,
    CloseMidBody,
    StallBeforeHead,
    StallMidBody,
    ServerError,
    CloseWithoutAnswer,
}

fn pick_fault(rng: &mut Rng) -> Fault {
    match rng.below(100) {
        0..70 => Fault::None,
        70..75 => Fault::CloseAfterResponse,
        75..80 => Fault::ResetMidBody,
        80..85 => Fault::CloseMidBody,
        85..88 => Fault::StallBeforeHead,
        88..91 => Fault::StallMidBody,
        91..96 => Fault::ServerError,
        _ => Fault::CloseWithoutAnswer,
    }
}

/// Byte `i` of every body: `a` + i mod 26, as `hopline serve` does.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Reads one request head and its Content-Length body; `None` when the peer closed.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let l = l.to_ascii_lowercase();
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            buf.drain(..end + 4);
            while buf.len() < length {
                let mut chunk = [0u8; 65536];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..length);
            return Some(head);
        }
        let mut chunk = [0u8; 65536];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An origin that answers `GET|POST /n/SIZE` with SIZE pattern bytes, failing at random.
async fn faulty_origin(seed: u64) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut rng = Rng(seed);
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let mut rng = Rng(rng.next() | 1);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(head) = read_request(&mut stream, &mut buf).await {
                    let size: usize = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|path| path.strip_prefix("/n/"))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    let body = pattern(size);
                    let fault = pick_fault(&mut rng);
                    let close = if fault == Fault::CloseAfterResponse {
                        "Connection: close\r\n"
                    } else {
                        ""
                    };
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n{close}\r\n");
                    let half = body.len() / 2;
                    match fault {
                        Fault::None | Fault::CloseAfterResponse => {
                            let mut all = head.into_bytes();
                            all.extend_from_slice(&body);
                            if stream.write_all(&all).await.is_err()
                                || fault == Fault::CloseAfterResponse
                            {
                                return;
                            }
                        }
                        Fault::ServerError => {
                            let answer = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops";
                            if stream.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        Fault::ResetMidBody | Fault::CloseMidBody | Fault::StallMidBody => {
                            let _ = stream.write_all(head.as_bytes()).await;
                            let _ = stream.write_all(&body[..half]).await;
                            if fault == Fault::ResetMidBody {
                                let _ = socket2::SockRef::from(&stream)
                                    .set_linger(Some(Duration::ZERO));
                            }
                            if fault == Fault::StallMidBody {
                                tokio::time::sleep(Duration::from_secs(3)).await;
                            }
                            return;
                        }
                        Fault::StallBeforeHead => {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            return;
                        }
                        Fault::CloseWithoutAnswer => return,
                    }
                }
            });
        }
    });
    addr
}

/// Outcomes of one traffic type.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
    /// A response presented as complete whose body was wrong: must stay 0.
    corrupt: AtomicU64,
    /// A request with no outcome within its deadline: must stay 0.
    hung: AtomicU64,
}

/// One request through the proxy; checks the body of a 200 against the pattern.
async fn one_request(client: &Client, proxy: SocketAddr, rng: &mut Rng, tally: &Tally) {
    let size = [0usize, 13, 1000, 16_384, 100_000, 262_144][rng.below(6) as usize];
    let post = rng.below(4) == 0;
    let body = if post {
        Bytes::from(pattern(rng.below(50_000) as usize))
    } else {
        Bytes::new()
    };
    let outgoing = Request::builder()
        .method(if post { Method::POST } else { Method::GET })
        .uri(format!("http://{proxy}/n/{size}"))
        .body(Body::from(body))
        .expect("a valid request");
    tally.sent.fetch_add(1, Ordering::Relaxed);
    let exchange = async {
        let response = client.send(outgoing).await?;
        let status = response.status();
        let body = response.into_body().bytes(u64::MAX).await?;
        Ok::<_, hopline::Error>((status, body))
    };
    match tokio::time::timeout(Duration::from_secs(15), exchange).await {
        Err(_) => {
            tally.hung.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Err(_)) => {
            tally.failed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Ok((status, body))) => {
            tally.answered.fetch_add(1, Ordering::Relaxed);
            if status == 200 && body != pattern(size) {
                tally.corrupt.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// One sample of the proxy's `/metrics`.
async fn metric(admin: SocketAddr, series: &str) -> Option<f64> {
    let mut stream = TcpStream::connect(admin).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `count` distinct ports free on 127.0.0.1 for the proxy process to bind, chosen below
/// the kernel's ephemeral range (32768 and up) so that no outgoing connection can take one
/// before the child binds it.
fn free_ports(count: usize) -> Vec<u16> {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new();
    let mut held = Vec::new();
    for attempt in 0u32.. {
        if held.len() == count {
            break;
        }
        let port = 10_000 + (random.hash_one(attempt) % 22_000) as u16;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
        }
    }
    held.iter()
        .map(|listener| listener.local_addr().unwrap().port())
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut duration = Duration::from_secs(60);
    let mut bin = String::from("target/release/hopline");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--duration" => {
                duration = hopline::config::parse_duration(&args.next().expect("a duration"))
                    .expect("a duration like 60s or 10m")
            }
            "--bin" => bin = args.next().expect("a path"),
            other => panic!("unknown argument {other}"),
        }
    }
    let origins = [
        faulty_origin(0x9e37_79b9).await,
        faulty_origin(0x7f4a_7c15).await,
    ];
    let [port, admin_port] = free_ports(2)[..] else {
        unreachable!("two ports asked for")
    };
    let proxy_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let proxy = Proxy(
        Command::new(&bin)
            .args([
                "proxy",
                "--listen",
                &proxy_addr.to_string(),
                "--admin",
                &admin.to_string(),
            ])
            .args(["--upstream", &format!("http://{}", origins[0])])
            .args(["--upstream", &format!("http://{}", origins[1])])
            .args(["--upstream-timeout", "1s", "--upstream-idle-timeout", "2s"])
            .args([
                "--keepalive-timeout",
                "2s",
                "--workers",
                "1",
                "--log",
                "error",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (build it: cargo build --release)")),
    );
    let pid = proxy.0.id();
    for _ in 0..100 {
        if TcpStream::connect(proxy_addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let kinds = [
        ("keep-alive", Mode::KeepAlive, 8),
        ("short-lived", Mode::Close, 4),
        ("pipelined", Mode::Pipeline { depth: 4 }, 8),
    ];
    let tallies: Vec<Arc<Tally>> = kinds.iter().map(|_| Arc::new(Tally::default())).collect();
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for (i, (_, mode, workers)) in kinds.iter().enumerate() {
        let client = Client::new({
            let mut client_options = ClientOptions::default();
            client_options.mode = *mode;
            client_options.pool = {
                let mut pool_config = PoolConfig::default();
                pool_config.max_connections_per_host = Some(*workers);
                pool_config
            };
            client_options
        });
        for w in 0..*workers {
            let (client, tally) = (client.clone(), tallies[i].clone());
            let mut rng = Rng(0x1234_5678 + (i * 100 + w) as u64);
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    one_request(&client, proxy_addr, &mut rng, &tally).await;
                }
            }));
        }
    }
    // Resident memory after warm-up (a tenth of the run, at least 5 s), then every tenth,
    // and at the end.
    let tenth = (duration / 10).max(Duration::from_secs(5)).min(duration);
    tokio::time::sleep(tenth).await;
    let mut samples = vec![rss_kib(pid)];
    while Instant::now() + tenth < deadline {
        tokio::time::sleep(tenth).await;
        samples.push(rss_kib(pid));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let end_rss = rss_kib(pid);
    samples.push(end_rss);

    // The clients are gone (their pools with them); the proxy's gauges must drain.
    let mut active = (f64::NAN, f64::NAN);
    for _ in 0..200 {
        active = (
            metric(admin, "hopline_connections_active{side=\"downstream\"}")
                .await
                .unwrap_or(f64::NAN),
            metric(admin, "hopline_connections_active{side=\"upstream\"}")
                .await
                .unwrap_or(f64::NAN),
        );
        if active == (0.0, 0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let responses = metric(admin, "hopline_responses_total{class=\"2xx\"}")
        .await
        .unwrap_or(0.0);

    let mut broken = Vec::new();
    println!(
        "soak: {:?} through hopline proxy to 2 faulty origins (30% of requests meet a fault)",
        duration
    );
    println!(
        "{:<12} {:>8} {:>9} {:>8} {:>8} {:>5}",
        "traffic", "sent", "answered", "failed", "corrupt", "hung"
    );
    for ((name, _, _), tally) in kinds.iter().zip(&tallies) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (sent, answered, failed, corrupt, hung) = (
            get(&tally.sent),
            get(&tally.answered),
            get(&tally.failed),
            get(&tally.corrupt),
            get(&tally.hung),
        );
        println!("{name:<12} {sent:>8} {answered:>9} {failed:>8} {corrupt:>8} {hung:>5}");
        if sent != answered + failed + hung {
            broken.push(format!(
                "{name}: {sent} sent != {answered} answered + {failed} failed + {hung} hung"
            ));
        }
        if corrupt > 0 {
            broken.push(format!(
                "{name}: {corrupt} truncated or wrong bodies presented as complete"
            ));
        }
        if hung > 0 {
            broken.push(format!(
                "{name}: {hung} requests without an outcome after 15 s"
            ));
        }
        if answered == 0 {
            broken.push(format!("{name}: nothing answered"));
        }
    }
    println!("proxy 2xx responses (its metrics): {responses}");
    println!(
        "active connections after the run: downstream {}, upstream {}",
        active.0, active.1
    );
    if active != (0.0, 0.0) {
        broken.push(format!("connections left open: {active:?}"));
    }
    println!("proxy RSS samples (KiB, every tenth of the run from warm-up): {samples:?}");
    // One sample under load swings by a few percent with the bodies in flight at that
    // instant: the value after warm-up is the median of the first three samples.
    let mut early = samples[..samples.len().min(3)].to_vec();
    early.sort_unstable();
    let warm_rss = early[early.len() / 2];
    let growth = end_rss as f64 / warm_rss.max(1) as f64 - 1.0;
    println!(
        "proxy RSS: {warm_rss} KiB after warm-up (median of the first three samples), \
         {end_rss} KiB at the end ({:+.1}%)",
        growth * 100.0
    );
    if growth > 0.10 {
        broken.push(format!(
            "resident memory grew {:.1}% (over 10%)",
            growth * 100.0
        ));
    }
    drop(proxy);
    if broken.is_empty() {
        println!("ok: every request had exactly one outcome, no leaks, memory flat");
    } else {
        for line in &broken {
            println!("BROKEN: {line}");
        }
        std::process::exit(1);
    }
}

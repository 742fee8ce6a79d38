//! The load generator: exact request and connection counts per connection type, and
//! latency measured from when a paced request was due (no coordinated omission).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use hopline::bench::{BenchConfig, Limit, Report, run};
use hopline::client::Mode;
use hopline::conn::ServerConfig;
use hopline::conn::client::ClientConfig;
use hopline::origin::Origin;
use http::{HeaderMap, Method};

fn config(
    server: &TestServer,
    path: &str,
    mode: Mode,
    connections: usize,
    limit: Limit,
) -> BenchConfig {
    BenchConfig {
        url: format!("http://{}{path}", server.addr).parse().unwrap(),
        addr: server.addr,
        connections,
        limit,
        mode,
        rate: None,
        method: Method::GET,
        headers: HeaderMap::new(),
        body: Bytes::new(),
        client: ClientConfig::default(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
        h2_streams: None,
        http2: Default::default(),
    }
}

fn check_clean(report: &Report, requests: u64) {
    assert_eq!(report.requests, requests, "{report:?}");
    assert_eq!(report.statuses.get("2xx"), Some(&requests));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.latency_us.max >= report.latency_us.p50 && report.latency_us.p50 > 0);
}

#[tokio::test]
async fn each_connection_type_sends_exactly_what_was_asked() {
    let server = TestServer::start(Origin::new(), ServerConfig::default()).await;

    let keepalive = run(
        config(&server, "/", Mode::KeepAlive, 4, Limit::Requests(1000)),
        None,
    )
    .await;
    check_clean(&keepalive, 1000);
    assert_eq!(keepalive.connections_opened, 4);
    assert_eq!(keepalive.bytes % 1000, 0, "every response the same size");

    let close = run(
        config(&server, "/", Mode::Close, 4, Limit::Requests(200)),
        None,
    )
    .await;
    check_clean(&close, 200);
    assert_eq!(close.connections_opened, 200);

    let pipelined = run(
        config(
            &server,
            "/bytes/100",
            Mode::Pipeline { depth: 16 },
            2,
            Limit::Requests(1000),
        ),
        None,
    )
    .await;
    check_clean(&pipelined, 1000);
    assert_eq!(pipelined.connections_opened, 2);

    let stats = server.closed(206).await;
    assert_eq!(stats.accepted, 206);
    assert_eq!(stats.requests, 2200);
    // Pipelined responses shared writes: far fewer than one per request.
    assert!(stats.writes < 2200, "{stats:?}");
}

#[tokio::test]
async fn a_duration_run_counts_only_what_finished_in_time() {
    let server = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let report = run(
        config(
            &server,
            "/",
            Mode::KeepAlive,
            2,
            Limit::Duration(Duration::from_millis(300)),
        ),
        None,
    )
    .await;
    assert!(report.requests > 0);
    assert_eq!(report.seconds, 0.3);
    assert!((report.requests_per_second - report.requests as f64 / 0.3).abs() < 1e-6);
}

#[tokio::test(start_paused = true)]
async fn paced_latency_counts_from_when_each_request_was_due() {
    // One connection, a request due every 10 ms, each answered after 100 ms: request i is
    // due at 10·i ms but can only start at 100·i ms, so its latency is 100 + 90·i ms. A
    // load generator that measured from the actual send would report 100 ms for all.
    let server = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let mut paced = config(
        &server,
        "/delay/100",
        Mode::KeepAlive,
        1,
        Limit::Requests(20),
    );
    paced.rate = Some(100.0);
    let report = run(paced, None).await;
    check_clean(&report, 20);
    let ms = |us: u64| us as f64 / 1000.0;
    assert!(
        ms(report.latency_us.max) >= 1800.0,
        "{:?}",
        report.latency_us
    );
    assert!(
        ms(report.latency_us.p50) >= 900.0,
        "{:?}",
        report.latency_us
    );
    // And unpaced, the same server shows its service time.
    let unpaced = run(
        config(
            &server,
            "/delay/100",
            Mode::KeepAlive,
            1,
            Limit::Requests(5),
        ),
        None,
    )
    .await;
    assert!(
        ms(unpaced.latency_us.max) < 150.0,
        "{:?}",
        unpaced.latency_us
    );
}

#[tokio::test]
async fn a_refusing_server_is_counted_not_spun_on() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let server_like = BenchConfig {
        url: format!("http://{addr}/").parse().unwrap(),
        addr,
        connections: 2,
        limit: Limit::Requests(10),
        mode: Mode::KeepAlive,
        rate: None,
        method: Method::GET,
        headers: HeaderMap::new(),
        body: Bytes::new(),
        client: ClientConfig::default(),
        connect_timeout: Duration::from_secs(1),
        tls: None,
        h2_streams: None,
        http2: Default::default(),
    };
    let report = run(server_like, None).await;
    assert_eq!(report.requests, 0);
    assert_eq!(report.errors.get("connect"), Some(&10));
}

#[tokio::test]
async fn http2_streams_share_each_connection_like_h2load_m() {
    let server = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let mut cfg = config(&server, "/", Mode::KeepAlive, 2, Limit::Requests(2_000));
    cfg.h2_streams = Some(8);
    let report = run(cfg, None).await;
    check_clean(&report, 2_000);
    assert_eq!(report.mode, "h2");
    assert_eq!(report.depth, 8);
    assert_eq!(
        report.connections_opened, 2,
        "two connections, eight streams each"
    );
    assert_eq!(server.snapshot().accepted, 2);
}

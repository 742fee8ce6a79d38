//! Operating a server and a proxy: metrics with exact counts after a scripted workload,
//! the live connection view with TCP_INFO, a reload that changes new connections only, and
//! the example configuration file. Timers run on tokio's paused clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RawClient, TestServer};
use hopline::admin::Admin;
use hopline::client::ClientOptions;
use hopline::conn::{Hooks, LiveConns, ServerConfig};
use hopline::metrics::Metrics;
use hopline::origin::Origin;
use hopline::proxy::upstream::Upstreams;
use hopline::proxy::{Proxy, ProxyConfig};
use hopline::server::ListenerConfig;

/// Hooks feeding metrics and the live view, and the admin server reading them.
async fn observed() -> (Hooks, TestServer) {
    let live = LiveConns::new();
    let metrics = Arc::new(Metrics::new(live.clone()));
    let hooks = Hooks {
        live: Some(live.clone()),
        observer: Some(metrics.observer()),
    };
    let admin = TestServer::start(Admin::new(metrics, live), ServerConfig::default()).await;
    (hooks, admin)
}

async fn get(admin: &TestServer, path: &str) -> String {
    let mut client = RawClient::connect(admin.addr).await;
    client.get(path, "").await;
    let response = client.response().await;
    assert_eq!(response.status, 200);
    response.text()
}

/// The value of one sample line of a Prometheus exposition (`name{labels}`); 0 if absent.
fn sample(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().expect("a number"))
}

async fn requests(client: &mut RawClient, n: usize) {
    for _ in 0..n {
        client.get("/", "").await;
        assert_eq!(client.response().await.status, 200);
    }
}

#[tokio::test]
async fn the_admin_endpoint_answers_liveness_and_readiness_probes() {
    let live = LiveConns::new();
    let metrics = Arc::new(Metrics::new(live.clone()));
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let admin = Admin::new(metrics, live).with_readiness(ready.clone());
    let admin = TestServer::start(admin, ServerConfig::default()).await;
    assert_eq!(get(&admin, "/healthz").await, "ok\n");
    assert_eq!(get(&admin, "/ready").await, "ready\n");
    // A drain began: load balancers must stop sending new clients; still alive.
    ready.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut client = RawClient::connect(admin.addr).await;
    client.get("/ready", "").await;
    let response = client.response().await;
    assert_eq!(
        (response.status, response.text()),
        (503, "draining\n".into())
    );
    assert_eq!(get(&admin, "/healthz").await, "ok\n");
}

#[tokio::test(start_paused = true)]
async fn metrics_count_a_scripted_workload_exactly() {
    let (hooks, admin) = observed().await;
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.keepalive_timeout = Duration::from_secs(2);
        server_config
    };
    let server =
        TestServer::start_hooked(Origin::new(), config, ListenerConfig::default(), hooks).await;
    // Three connections, ten requests: one closed by its client, two left idle.
    let mut a = RawClient::connect(server.addr).await;
    requests(&mut a, 4).await;
    drop(a);
    let mut b = RawClient::connect(server.addr).await;
    requests(&mut b, 3).await;
    let mut c = RawClient::connect(server.addr).await;
    requests(&mut c, 3).await;
    // The keep-alive timeout passes: the server closes both idle ones.
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.expect_eof().await;
    c.expect_eof().await;
    server.closed(3).await;

    let metrics = get(&admin, "/metrics").await;
    let expect = [
        ("hopline_connections_opened_total{side=\"downstream\"}", 3.0),
        ("hopline_connections_active{side=\"downstream\"}", 0.0),
        (
            "hopline_connections_closed_total{side=\"downstream\",reason=\"idle_timeout\"}",
            2.0,
        ),
        (
            "hopline_connections_closed_total{side=\"downstream\",reason=\"client_closed\"}",
            1.0,
        ),
        ("hopline_responses_total{class=\"2xx\"}", 10.0),
        ("hopline_responses_total{class=\"4xx\"}", 0.0),
        (
            "hopline_request_duration_seconds_count{class=\"2xx\",upstream=\"\"}",
            10.0,
        ),
        (
            "hopline_connection_requests_count{side=\"downstream\"}",
            3.0,
        ),
        ("hopline_connection_requests_sum{side=\"downstream\"}", 10.0),
        (
            "hopline_connection_requests_bucket{side=\"downstream\",le=\"2\"}",
            0.0,
        ),
        (
            "hopline_connection_requests_bucket{side=\"downstream\",le=\"5\"}",
            3.0,
        ),
        ("hopline_connections_idle{side=\"downstream\"}", 0.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&metrics, series), value, "{series}\n{metrics}");
    }
    // Readable bucket bounds; the build and the process, under the names dashboards expect.
    assert!(
        metrics.contains("le=\"0.0025\"") && !metrics.contains("le=\"0.0015625\""),
        "{metrics}"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        metrics.contains(&format!(
            "hopline_build_info{{version=\"{version}\",profile=\"debug\"}} 1"
        )),
        "{metrics}"
    );
    for series in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(sample(&metrics, series) > 0.0, "{series}\n{metrics}");
    }
    // Bytes in and out come from the kernel: ten requests and ten responses' worth.
    assert!(
        sample(
            &metrics,
            "hopline_bytes_total{side=\"downstream\",direction=\"in\"}"
        ) >= 10.0 * 30.0
    );
    assert!(
        sample(
            &metrics,
            "hopline_bytes_total{side=\"downstream\",direction=\"out\"}"
        ) >= 10.0 * 13.0
    );
    // Every family is declared once, with its type.
    for family in [
        "hopline_connections_opened_total",
        "hopline_connection_duration_seconds",
        "hopline_bytes_total",
    ] {
        assert_eq!(
            metrics.matches(&format!("# TYPE {family} ")).count(),
            1,
            "{family}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_live_view_shows_idle_connections_with_their_tcp_state() {
    let (hooks, admin) = observed().await;
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let mut config = ProxyConfig::reverse(Upstreams::single(origin.addr));
    config.upstream = ClientOptions::default();
    config.upstream.conn.hooks = hooks.clone();
    let proxy = Proxy::new(config);
    let proxy = TestServer::start_hooked(
        proxy,
        ServerConfig::default(),
        ListenerConfig::default(),
        hooks,
    )
    .await;
    let mut client = RawClient::connect(proxy.addr).await;
    requests(&mut client, 2).await;

    let view: serde_json::Value = serde_json::from_str(&get(&admin, "/connections").await).unwrap();
    assert_eq!(view["downstream"]["open"], 1);
    assert_eq!(view["downstream"]["idle"], 1);
    assert_eq!(
        view["upstream"]["idle"], 1,
        "the pooled upstream connection"
    );
    let connections = view["connections"].as_array().unwrap();
    for side in ["downstream", "upstream"] {
        let conn = connections
            .iter()
            .find(|c| c["side"] == side)
            .unwrap_or_else(|| panic!("a {side} connection in {view}"));
        assert_eq!(conn["state"], "idle");
        assert_eq!(conn["requests"], 2);
        assert!(conn["tcp"]["snd_cwnd"].as_u64().unwrap() > 0, "{conn}");
        assert!(
            conn["tcp"]["bytes_received"].as_u64().unwrap() > 0,
            "{conn}"
        );
    }
    // Closed connections leave the view.
    drop(client);
    proxy.closed(1).await;
    let view: serde_json::Value = serde_json::from_str(&get(&admin, "/connections").await).unwrap();
    assert_eq!(view["downstream"]["open"], 0);
}

#[tokio::test(start_paused = true)]
async fn a_reload_changes_new_connections_and_keeps_open_ones() {
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.keepalive_timeout = Duration::from_secs(10);
        server_config
    };
    let server = TestServer::start(Origin::new(), config.clone()).await;
    let mut old = RawClient::connect(server.addr).await;
    requests(&mut old, 1).await;
    let mut reloaded = config;
    reloaded.keepalive_timeout = Duration::from_secs(1);
    server.config.set(reloaded);
    let mut new = RawClient::connect(server.addr).await;
    requests(&mut new, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The new connection has the new, shorter keep-alive timeout...
    new.expect_eof().await;
    // ...the old one still has its own, and serves on.
    requests(&mut old, 1).await;
    let stats = server.closed(1).await;
    assert_eq!(stats.closed(hopline::conn::CloseReason::IdleTimeout), 1);
}

#[test]
fn the_example_configuration_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hopline.toml");
    let loaded = hopline::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let config = &loaded.config;
    assert_eq!(
        config.downstream.keepalive_timeout.unwrap().0,
        Duration::from_secs(30)
    );
    assert_eq!(config.proxy.group.len(), 3);
    assert!(config.admin.is_some());
    // An https:// group with its own TLS name, over the shared upstream TLS settings.
    let secure = config.proxy.group[1].get_ref();
    assert_eq!(secure.servers[0].0.scheme_str(), Some("https"));
    let tls = secure.policy.or(&config.proxy.upstream).tls;
    assert_eq!(tls.server_name.as_deref(), Some("origin.example.test"));
    assert_eq!(tls.insecure, Some(false));
}

#[tokio::test]
async fn http2_connections_are_counted_by_stream_goaway_and_shown_with_their_protocol() {
    let (hooks, admin) = observed().await;
    let mut config = ServerConfig::default();
    config.max_requests = Some(3);
    let server =
        TestServer::start_hooked(Origin::new(), config, ListenerConfig::default(), hooks).await;
    let mut options = ClientOptions::default();
    options.protocol = hopline::client::HopProtocol::Http2;
    let client = hopline::client::Client::new(options);
    for _ in 0..3 {
        let response = client
            .get(&format!("http://{}/", server.addr))
            .await
            .unwrap();
        response.into_body().discard().await.unwrap();
    }
    server.closed(1).await;
    // A second connection, left open: the live view shows it as HTTP/2.
    let response = client
        .get(&format!("http://{}/", server.addr))
        .await
        .unwrap();
    response.into_body().discard().await.unwrap();
    let connections = get(&admin, "/connections").await;
    assert!(connections.contains(r#""protocol": "h2""#), "{connections}");

    let metrics = get(&admin, "/metrics").await;
    let expect = [
        ("hopline_http2_streams_total{side=\"downstream\"}", 4.0),
        ("hopline_http2_streams_open{side=\"downstream\"}", 0.0),
        (
            "hopline_http2_goaways_total{side=\"downstream\",direction=\"sent\",reason=\"max_requests\"}",
            1.0,
        ),
        (
            "hopline_http2_streams_per_connection_count{side=\"downstream\"}",
            1.0,
        ),
        (
            "hopline_http2_streams_per_connection_sum{side=\"downstream\"}",
            3.0,
        ),
        (
            "hopline_connections_closed_total{side=\"downstream\",reason=\"max_requests\"}",
            1.0,
        ),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&metrics, series), value, "{series}\n{metrics}");
    }
}

#[tokio::test]
async fn parked_connections_stay_in_the_live_view_and_are_counted_once() {
    let (hooks, admin) = observed().await;
    let mut config = ServerConfig::default();
    config.park_idle_after = Some(Duration::ZERO);
    let server =
        TestServer::start_hooked(Origin::new(), config, ListenerConfig::default(), hooks).await;
    let mut client = RawClient::connect(server.addr).await;
    requests(&mut client, 1).await;
    server.until("parked", |s| s.parked == 1).await;
    let metrics = get(&admin, "/metrics").await;
    assert_eq!(
        sample(&metrics, "hopline_connections_parked{side=\"downstream\"}"),
        1.0
    );
    // No pressure: the idle timeout in force is the configured one.
    assert_eq!(
        sample(
            &metrics,
            "hopline_idle_timeout_seconds{side=\"downstream\"}"
        ),
        60.0
    );
    // Served again (a new task), then parked again: still one connection, seen as one.
    requests(&mut client, 2).await;
    server.until("parked again", |s| s.parked == 1).await;
    let view: serde_json::Value = serde_json::from_str(&get(&admin, "/connections").await).unwrap();
    let downstream: Vec<_> = (view["connections"].as_array().unwrap().iter())
        .filter(|c| c["side"] == "downstream" && c["requests"] == 3)
        .collect();
    assert_eq!(downstream.len(), 1, "{view}");
    assert_eq!(downstream[0]["state"], "idle");
    let metrics = get(&admin, "/metrics").await;
    for (series, value) in [
        ("hopline_connections_opened_total{side=\"downstream\"}", 1.0),
        ("hopline_connections_parked{side=\"downstream\"}", 1.0),
    ] {
        assert_eq!(sample(&metrics, series), value, "{series}");
    }
    drop(client);
    server.closed(1).await;
    let metrics = get(&admin, "/metrics").await;
    for (series, value) in [
        ("hopline_connections_parked{side=\"downstream\"}", 0.0),
        ("hopline_connections_active{side=\"downstream\"}", 0.0),
        (
            "hopline_connections_closed_total{side=\"downstream\",reason=\"client_closed\"}",
            1.0,
        ),
    ] {
        assert_eq!(sample(&metrics, series), value, "{series}");
    }
}

#[tokio::test(start_paused = true)]
async fn upstream_connections_closes_are_counted_by_group() {
    let (hooks, admin) = observed().await;
    // The origin closes idle connections after 2 s.
    let mut origin_config = ServerConfig::default();
    origin_config.keepalive_timeout = Duration::from_secs(2);
    let origin = TestServer::start(Origin::new(), origin_config).await;
    let mut config = ProxyConfig::reverse(Upstreams::single(origin.addr));
    config.upstream = ClientOptions::default();
    config.upstream.conn.hooks = hooks.clone();
    let proxy = TestServer::start_hooked(
        Proxy::new(config),
        ServerConfig::default(),
        ListenerConfig::default(),
        hooks,
    )
    .await;
    let mut client = RawClient::connect(proxy.addr).await;
    requests(&mut client, 1).await;
    origin.closed(1).await;
    // The pool's reaper sees the origin's close as it happens.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = get(&admin, "/metrics").await;
    let series =
        "hopline_upstream_connections_closed_total{upstream=\"default\",reason=\"peer_closed\"}";
    assert_eq!(sample(&metrics, series), 1.0, "{metrics}");
}

/// A response body that sends a few bytes, then fails: the server resets its stream.
struct Broken(Option<bytes::Bytes>);

impl http_body::Body for Broken {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(Some(match self.0.take() {
            Some(data) => Ok(http_body::Frame::data(data)),
            None => Err(std::io::Error::other("the source broke")),
        }))
    }
}

#[tokio::test]
async fn http2_upstream_streams_are_counted_with_resets_by_side() {
    let (hooks, admin) = observed().await;
    let server = TestServer::start(
        common::answer_with(|request: http::Request<hopline::Incoming>| async move {
            let body = match request.uri().path() {
                "/broken" => hopline::Body::new(Broken(Some(bytes::Bytes::from("par")))),
                "/big" => hopline::Body::from(vec![b'x'; 1 << 20]),
                _ => hopline::Body::from("ok"),
            };
            http::Response::new(body)
        }),
        ServerConfig::default(),
    )
    .await;
    let mut options = ClientOptions::default();
    options.protocol = hopline::client::HopProtocol::Http2;
    options.conn.hooks = hooks;
    let client = hopline::client::Client::new(options);
    let url = |path: &str| format!("http://{}{path}", server.addr);
    for _ in 0..2 {
        let response = client.get(&url("/")).await.unwrap();
        response.into_body().discard().await.unwrap();
    }
    // Dropped unread: this side resets the stream.
    drop(client.get(&url("/big")).await.unwrap());
    // The server resets it.
    match client.get(&url("/broken")).await {
        Ok(response) => assert!(response.into_body().discard().await.is_err()),
        Err(error) => assert!(error.to_string().contains("INTERNAL_ERROR"), "{error}"),
    }
    let metrics = get(&admin, "/metrics").await;
    let expect = [
        ("hopline_http2_streams_total{side=\"upstream\"}", 4.0),
        ("hopline_http2_streams_open{side=\"upstream\"}", 0.0),
        (
            "hopline_http2_resets_total{side=\"upstream\",by=\"local\"}",
            1.0,
        ),
        (
            "hopline_http2_resets_total{side=\"upstream\",by=\"peer\"}",
            1.0,
        ),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&metrics, series), value, "{series}\n{metrics}");
    }
}

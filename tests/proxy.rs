//! The proxy over real sockets: header rules both ways, loop refusal, a chain with a
//! different connection policy per hop, streaming with bounded memory, failures, upgrades,
//! CONNECT, absolute-form, 100-continue and trailers.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{RawClient, TestServer, answer_with, ctx};
use hopline::client::{Client, ClientOptions, Mode};
use hopline::conn::{Body, CloseReason, Incoming, ServerConfig, splice, upgrade_channel};
use hopline::origin::Origin;
use hopline::pool::PoolConfig;
use hopline::proxy::upstream::{Balance, Upstreams};
use hopline::proxy::{Proxy, ProxyConfig, Target};
use http::{HeaderValue, Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn reverse(upstream: SocketAddr, options: ClientOptions) -> ProxyConfig {
    let mut config = ProxyConfig::reverse(Upstreams::single(upstream));
    config.upstream = options;
    config
}

/// A reverse proxy named `name` (hops in a chain need distinct names: `Via` loop detection).
fn named(name: &str, upstream: SocketAddr, options: ClientOptions) -> ProxyConfig {
    let mut config = reverse(upstream, options);
    config.name = name.into();
    config
}

async fn proxy_to(upstream: SocketAddr) -> (TestServer, Client) {
    let proxy = Proxy::new(reverse(upstream, ClientOptions::default()));
    let client = proxy.client().clone();
    (
        TestServer::start(proxy, ServerConfig::default()).await,
        client,
    )
}

/// An origin that answers with hop-by-hop fields of its own and echoes the request head.
async fn hop_by_hop_origin(request: Request<Incoming>) -> Response<Body> {
    let ctx = ctx(&request).clone();
    let mut response = Response::new(Body::from(ctx.raw_head.clone()));
    let headers = response.headers_mut();
    for (name, value) in [
        ("connection", "x-bar"),
        ("x-bar", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-authenticate", "Basic"),
        ("upgrade", "h2c"),
        ("x-kept", "yes"),
    ] {
        headers.append(name, HeaderValue::from_static(value));
    }
    response
}

#[tokio::test]
async fn hop_by_hop_fields_are_stripped_both_ways_and_via_is_added() {
    let origin = TestServer::start(answer_with(hop_by_hop_origin), ServerConfig::default()).await;
    let (proxy, _) = proxy_to(origin.addr).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .send(
            b"GET /x HTTP/1.1\r\nHost: front.example\r\nConnection: X-Secret, keep-alive\r\n\
              X-Secret: s\r\nKeep-Alive: timeout=9\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
              Proxy-Authorization: Basic abc\r\nX-Kept: 1\r\n\r\n",
        )
        .await;
    let response = client.response().await;
    assert_eq!(response.status, 200);
    // Response direction.
    for name in ["x-bar", "keep-alive", "proxy-authenticate", "upgrade"] {
        assert_eq!(response.header(name), None, "{name} reached the client");
    }
    assert_eq!(response.header("x-kept"), Some("yes"));
    assert_eq!(response.header("via"), Some("1.1 hopline"));
    assert!(!response.closes());
    // Request direction: what the origin received.
    let received = response.text().to_ascii_lowercase();
    for name in [
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "\r\nte:",
        "proxy-authorization",
    ] {
        assert!(
            !received.contains(name),
            "{name} reached the origin: {received}"
        );
    }
    assert!(received.contains("host: front.example"), "{received}");
    assert!(received.contains("x-kept: 1"));
    assert!(received.contains("via: 1.1 hopline"));
    assert!(received.contains("x-forwarded-for: 127.0.0.1"));
    assert!(received.contains("forwarded: for=127.0.0.1;proto=http;host=front.example"));
}

#[tokio::test]
async fn a_request_that_already_passed_this_proxy_is_a_loop() {
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let (proxy, upstream) = proxy_to(origin.addr).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client.get("/", "Via: 1.0 other, 1.1 hopline\r\n").await;
    let response = client.response().await;
    assert_eq!(response.status, 508);
    assert_eq!(upstream.stats().requests, 0, "nothing was forwarded");
}

#[tokio::test]
async fn each_hop_keeps_its_own_connection_policy() {
    // client --keep-alive--> A --pooled--> B --short-lived--> origin
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let b = Proxy::new(named("b", origin.addr, {
        let mut client_options = ClientOptions::default();
        client_options.mode = Mode::Close;
        client_options
    }));
    let b_upstream = b.client().clone();
    let b = TestServer::start(b, ServerConfig::default()).await;
    let a = Proxy::new(named("a", b.addr, ClientOptions::default()));
    let a_upstream = a.client().clone();
    let a = TestServer::start(a, ServerConfig::default()).await;

    let client = Client::new(ClientOptions::default());
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let client = client.clone();
        let url = format!("http://{}/bytes/{}", a.addr, 10 + worker);
        tasks.push(tokio::spawn(async move {
            for _ in 0..250 {
                let response = client.get(&url).await.unwrap();
                let body = response.into_body().bytes(u64::MAX).await.unwrap();
                assert_eq!(body.len(), 10 + worker);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = 1000;
    // The client kept its 4 connections to A.
    assert_eq!(client.stats().connections, 4);
    assert_eq!(a.snapshot().accepted, 4);
    // A pooled its upstream: a handful of connections to B for 1000 requests.
    assert!(
        a_upstream.stats().connections <= 4,
        "{:?}",
        a_upstream.stats()
    );
    assert!(b.snapshot().accepted <= 4);
    // B is short-lived upstream: one origin connection per request.
    assert_eq!(b_upstream.stats().connections, total);
    drop(client);
    let origin_stats = origin.closed(total).await;
    assert_eq!(origin_stats.accepted, total);
    assert_eq!(
        origin_stats.requests, total,
        "every request answered once, none lost"
    );
    assert_eq!(origin_stats.closed(CloseReason::ClientRequested), total);
}

#[tokio::test]
async fn a_pipelined_upstream_hop_carries_many_clients_on_few_connections() {
    // 16 keep-alive clients -> proxy --pipelined, depth 8, at most 2 connections--> origin
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let proxy = Proxy::new(reverse(origin.addr, {
        let mut client_options = ClientOptions::default();
        client_options.mode = Mode::Pipeline { depth: 8 };
        client_options.pool = {
            let mut pool_config = PoolConfig::default();
            pool_config.max_connections_per_host = Some(2);
            pool_config
        };
        client_options
    }));
    let upstream = proxy.client().clone();
    let proxy = TestServer::start(proxy, ServerConfig::default()).await;
    let client = Client::new(ClientOptions::default());
    let tasks: Vec<_> = (0..16usize)
        .map(|worker| {
            let client = client.clone();
            let url = format!("http://{}/bytes/{}", proxy.addr, 100 + worker);
            tokio::spawn(async move {
                for _ in 0..50 {
                    let response = client.get(&url).await.unwrap();
                    let body = response.into_body().bytes(u64::MAX).await.unwrap();
                    assert_eq!(body.len(), 100 + worker, "each client gets its own answer");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let total = 16 * 50;
    assert!(upstream.stats().connections <= 2, "{:?}", upstream.stats());
    // The origin counts a connection's requests when it closes: end the proxy.
    drop((client, upstream));
    proxy.stop().await;
    let accepted = origin.snapshot().accepted;
    assert!(accepted <= 2);
    let origin_stats = origin.closed(accepted).await;
    assert_eq!(origin_stats.requests, total, "every request answered once");
    assert!(
        origin_stats.writes < origin_stats.requests,
        "requests arrived pipelined (answered several per write): {origin_stats:?}"
    );
}

#[tokio::test]
async fn an_http10_hop_in_the_middle_of_a_chain_works() {
    // client -> A --HTTP/1.0 (keep-alive asked)--> B -> origin
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let b = TestServer::start(
        Proxy::new(named("b", origin.addr, ClientOptions::default())),
        ServerConfig::default(),
    )
    .await;
    let mut options = ClientOptions::default();
    options.conn.version = http::Version::HTTP_10;
    let a = Proxy::new(named("a", b.addr, options));
    let a_upstream = a.client().clone();
    let a = TestServer::start(a, ServerConfig::default()).await;
    let client = Client::new(ClientOptions::default());
    for n in 0..20usize {
        let response = client
            .get(&format!("http://{}/bytes/{n}", a.addr))
            .await
            .unwrap();
        assert_eq!(response.into_body().bytes(u64::MAX).await.unwrap().len(), n);
    }
    // A chunked upload crosses the HTTP/1.0 hop with a Content-Length.
    let request = Request::post(format!("http://{}/sink", a.addr))
        .header("transfer-encoding", "chunked")
        .body(Body::from(Bytes::from_static(b"twelve bytes")))
        .unwrap();
    let response = client.send(request).await.unwrap();
    let text = response.into_body().bytes(u64::MAX).await.unwrap();
    assert!(text.starts_with(b"received 12 bytes"), "{text:?}");
    // HTTP/1.0 with keep-alive asked for: still one pooled connection.
    assert_eq!(a_upstream.stats().connections, 1);
    assert_eq!(b.snapshot().accepted, 1);
}

#[tokio::test]
async fn a_refused_upstream_is_502_and_a_slow_one_504() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (proxy, _) = proxy_to(closed).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client.get("/", "").await;
    assert_eq!(client.response().await.status, 502);

    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let mut options = ClientOptions::default();
    options.conn.response_timeout = Duration::from_millis(100);
    let proxy = TestServer::start(
        Proxy::new(reverse(origin.addr, options)),
        ServerConfig::default(),
    )
    .await;
    let mut client = RawClient::connect(proxy.addr).await;
    client.get("/delay/2000", "").await;
    assert_eq!(client.response().await.status, 504);
}

/// An origin that promises 100 bytes, sends 50, and closes.
async fn truncating_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = vec![0u8; 4096];
                let _ = stream.read(&mut head).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                    .await;
                let _ = stream.write_all(&[b'x'; 50]).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_upstream_that_closes_mid_response_closes_the_client_connection() {
    let origin = truncating_origin().await;
    let (proxy, _) = proxy_to(origin).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client.get("/", "").await;
    let raw = client.read_to_end().await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    let body = &raw[raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    assert!(
        body.len() < 100,
        "a truncated body was presented as complete"
    );
    let stats = proxy.closed(1).await;
    assert_eq!(stats.closed(CloseReason::ResponseAborted), 1);
}

#[tokio::test]
async fn a_client_that_aborts_abandons_the_upstream_request() {
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let (proxy, upstream) = proxy_to(origin.addr).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client.get("/delay/2000", "").await;
    // Let the request reach the origin, then abort (a reset: a half-close is not an abort).
    while origin.snapshot().accepted == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client.reset_on_drop();
    drop(client);
    // The proxy drops its upstream exchange: the origin sees its client go.
    let origin_stats = origin.closed(1).await;
    assert_eq!(origin_stats.closed(CloseReason::ClientClosed), 1);
    // That upstream connection is not reused: the next request opens a new one.
    let mut again = RawClient::connect(proxy.addr).await;
    again.get("/", "").await;
    assert_eq!(again.response().await.status, 200);
    assert_eq!(upstream.stats().connections, 2);
    assert_eq!(proxy.closed(1).await.closed(CloseReason::ClientClosed), 1);
}

/// A scripted origin: the first request on a connection is answered (keep-alive), the
/// second is read and the connection closed without an answer. Counts requests by method.
async fn closes_on_reuse() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                for n in 0..2 {
                    let mut buf = vec![0u8; 8192];
                    let read = stream.read(&mut buf).await.unwrap_or(0);
                    if read == 0 {
                        return;
                    }
                    let line = String::from_utf8_lossy(&buf[..read])
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    log.lock().unwrap().push(line);
                    if n == 1 {
                        return;
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn the_proxy_retries_gets_but_never_posts() {
    let (origin, seen) = closes_on_reuse().await;
    let (proxy, upstream) = proxy_to(origin).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client.get("/a", "").await;
    assert_eq!(client.response().await.text(), "ok");
    client.get("/b", "").await;
    assert_eq!(
        client.response().await.text(),
        "ok",
        "the GET was retried upstream"
    );
    assert_eq!(upstream.stats().retries, 1);
    client
        .send(b"POST /c HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        .await;
    assert_eq!(client.response().await.status, 502);
    let posts = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("POST"))
        .count();
    assert_eq!(
        posts,
        1,
        "the POST reached the origin once: {:?}",
        seen.lock().unwrap()
    );
}

/// An origin that switches to an echo protocol on `Upgrade: echo`.
async fn echo_upgrade(request: Request<Incoming>) -> Response<Body> {
    if request.headers().get("upgrade").is_none() {
        return Response::new(Body::from("no upgrade"));
    }
    let (slot, on_upgrade) = upgrade_channel();
    tokio::spawn(async move {
        let mut upgraded = on_upgrade.await.unwrap();
        let mut buf = upgraded.read_buf.to_vec();
        loop {
            if !buf.is_empty() {
                upgraded.stream.write_all(&buf).await.unwrap();
            }
            buf = vec![0u8; 1024];
            let n = upgraded.stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.truncate(n);
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response
        .headers_mut()
        .insert("upgrade", HeaderValue::from_static("echo"));
    response.extensions_mut().insert(slot);
    response
}

#[tokio::test]
async fn an_upgrade_becomes_a_tunnel_end_to_end() {
    let origin = TestServer::start(answer_with(echo_upgrade), ServerConfig::default()).await;
    let (proxy, _) = proxy_to(origin.addr).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .send(b"GET /chat HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly bytes|")
        .await;
    let response = client.try_response(true).await.unwrap();
    assert_eq!(response.status, 101);
    assert_eq!(response.header("upgrade"), Some("echo"));
    assert_eq!(response.header("connection"), Some("upgrade"));
    client.send(b"ping").await;
    let mut got = Vec::new();
    while got.len() < b"early bytes|ping".len() {
        let mut buf = [0u8; 64];
        let n = client.stream.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"early bytes|ping");
}

async fn forward_proxy(connect_ports: Vec<u16>) -> TestServer {
    let config = ProxyConfig::new(Target::Forward { connect_ports });
    TestServer::start(Proxy::new(config), ServerConfig::default()).await
}

#[tokio::test]
async fn a_forward_proxy_takes_absolute_form_and_drops_proxy_connection() {
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let proxy = forward_proxy(vec![]).await;
    let mut client = RawClient::connect(proxy.addr).await;
    let target = format!("http://{}/echo", origin.addr);
    client
        .send(
            format!(
                "GET {target} HTTP/1.1\r\nHost: {}\r\nProxy-Connection: keep-alive\r\n\r\n",
                origin.addr
            )
            .as_bytes(),
        )
        .await;
    let response = client.response().await;
    assert_eq!(response.status, 200);
    let echoed = response.text().to_ascii_lowercase();
    assert!(echoed.starts_with("get /echo http/1.1"), "{echoed}");
    assert!(!echoed.contains("proxy-connection"));
    assert!(echoed.contains(&format!("host: {}", origin.addr)));
    // An origin-form request is not for a forward proxy.
    client.get("/echo", "").await;
    assert_eq!(client.response().await.status, 400);
}

#[tokio::test]
async fn connect_opens_a_tunnel_to_allowed_ports_only() {
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let proxy = forward_proxy(vec![origin.addr.port()]).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .send(format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", origin.addr).as_bytes())
        .await;
    let response = client.try_response(true).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), None);
    // HTTP through the tunnel, straight to the origin.
    client.get("/bytes/5", "").await;
    assert_eq!(client.response().await.text(), "abcde");

    let mut denied = RawClient::connect(proxy.addr).await;
    denied
        .send(b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n")
        .await;
    assert_eq!(denied.response().await.status, 403);
}

#[tokio::test]
async fn expect_100_continue_passes_through() {
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let (proxy, _) = proxy_to(origin.addr).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .await;
    assert_eq!(client.response().await.status, 100);
    client.send(b"hello").await;
    let response = client.response().await;
    assert_eq!(response.status, 200);
    assert!(response.text().ends_with("hello"));
}

/// An origin that answers with a chunked body and trailers.
async fn trailer_origin(request: Request<Incoming>) -> Response<Body> {
    let _ = request;
    let (mut sender, body) = Body::channel(None);
    tokio::spawn(async move {
        sender.send(Bytes::from_static(b"data")).await.unwrap();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", HeaderValue::from_static("42"));
        sender.send_trailers(trailers).await.unwrap();
    });
    Response::new(body)
}

#[tokio::test]
async fn trailers_reach_clients_that_accept_them() {
    let origin = TestServer::start(answer_with(trailer_origin), ServerConfig::default()).await;
    let (proxy, _) = proxy_to(origin.addr).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client.get("/", "TE: trailers\r\n").await;
    let response = client.response().await;
    assert_eq!(response.text(), "data");
    assert_eq!(
        response.trailers,
        vec![("x-checksum".to_string(), "42".to_string())]
    );
    client.get("/", "").await;
    let response = client.response().await;
    assert_eq!(response.text(), "data");
    assert!(response.trailers.is_empty());
}

#[tokio::test]
async fn least_outstanding_spreads_over_upstreams_and_skips_a_dead_one() {
    let a = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let b = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let urls = [a.addr, b.addr, dead]
        .iter()
        .map(|addr| format!("http://{addr}").parse().unwrap())
        .collect::<Vec<_>>();
    let config = ProxyConfig::reverse(
        Upstreams::new(&urls, Balance::LeastOutstanding, Duration::from_secs(60)).unwrap(),
    );
    let proxy = TestServer::start(Proxy::new(config), ServerConfig::default()).await;
    let client = Client::new({
        let mut client_options = ClientOptions::default();
        client_options.pool = PoolConfig::default();
        client_options
    });
    let mut failures = 0;
    for _ in 0..30 {
        let response = client
            .get(&format!("http://{}/", proxy.addr))
            .await
            .unwrap();
        failures += u32::from(response.status() == 502);
        response.into_body().discard().await.unwrap();
    }
    assert!(
        failures <= 1,
        "the dead upstream is skipped after its first refusal"
    );
    assert!(a.snapshot().accepted > 0 && b.snapshot().accepted > 0);
}

#[tokio::test]
async fn a_streaming_upstream_tunnel_is_spliced() {
    // `splice` on its own: two socket pairs joined, bytes both ways.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut left = TcpStream::connect(addr).await.unwrap();
    let (left_inner, _) = listener.accept().await.unwrap();
    let mut right = TcpStream::connect(addr).await.unwrap();
    let (right_inner, _) = listener.accept().await.unwrap();
    let task = tokio::spawn(splice(
        left_inner,
        Bytes::from_static(b"L"),
        right_inner,
        Bytes::from_static(b"R"),
    ));
    left.write_all(b"to-right").await.unwrap();
    right.write_all(b"to-left").await.unwrap();
    let mut buf = [0u8; 9];
    right.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"Lto-right");
    let mut buf = [0u8; 8];
    left.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"Rto-left");
    drop(left);
    drop(right);
    let (to_right, to_left) = task.await.unwrap().unwrap();
    assert_eq!((to_right, to_left), (9, 8));
}

#[tokio::test]
async fn groups_route_by_host_and_path_each_with_its_own_policy() {
    use hopline::proxy::Group;
    let a = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let b = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let upstreams = Upstreams::single;
    let short_lived = {
        let mut client_options = ClientOptions::default();
        client_options.mode = Mode::Close;
        client_options
    };
    let config = ProxyConfig::new(hopline::proxy::Target::Reverse(vec![
        Group {
            name: "a".into(),
            host: Some("a.test".into()),
            path_prefix: None,
            upstreams: upstreams(a.addr),
            policy: Some(short_lived),
        },
        Group {
            name: "b".into(),
            host: None,
            path_prefix: Some("/bytes/".into()),
            upstreams: upstreams(b.addr),
            policy: None,
        },
    ]));
    let proxy = TestServer::start(Proxy::new(config), ServerConfig::default()).await;
    let mut client = RawClient::connect(proxy.addr).await;
    for _ in 0..3 {
        // Host a.test (any port, any case) goes to group a, whatever the path.
        client
            .send(b"GET /bytes/4 HTTP/1.1\r\nHost: A.Test:8080\r\n\r\n")
            .await;
        assert_eq!(client.response().await.text(), "abcd");
        // Another host under /bytes/ goes to group b.
        client
            .send(b"GET /bytes/3 HTTP/1.1\r\nHost: other.test\r\n\r\n")
            .await;
        assert_eq!(client.response().await.text(), "abc");
    }
    // Neither: no group takes it.
    client
        .send(b"GET / HTTP/1.1\r\nHost: other.test\r\n\r\n")
        .await;
    assert_eq!(client.response().await.status, 404);
    // Group a is short-lived upstream (a connection per request); group b pooled.
    assert_eq!(a.closed(3).await.accepted, 3);
    assert_eq!(b.snapshot().accepted, 1);
}

#[tokio::test]
async fn a_reloaded_proxy_sends_new_requests_by_the_new_settings() {
    let a = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let b = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let proxy = Proxy::new(reverse(a.addr, ClientOptions::default()));
    let server = TestServer::start(proxy.clone(), ServerConfig::default()).await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", "").await;
    assert_eq!(client.response().await.status, 200);
    proxy.reload(reverse(b.addr, ClientOptions::default()));
    // The same client connection: its next request is a new upstream checkout.
    client.get("/", "").await;
    assert_eq!(client.response().await.status, 200);
    assert_eq!((a.snapshot().accepted, b.snapshot().accepted), (1, 1));
    assert_eq!(
        server.snapshot().accepted,
        1,
        "the client connection was kept"
    );
}

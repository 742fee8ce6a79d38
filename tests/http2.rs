//! HTTP/2 over real sockets: streams multiplexed and answered out of order, the client's
//! shared connections (stream limit, negotiation shared, unprocessed streams retried),
//! the server's policy (idle timeout, maximum requests, graceful drain) and its defences,
//! each with its bound.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::h2::{self as raw, RawH2};
use common::{TestServer, answer_with};
use hopline::Body;
use hopline::client::{Client, ClientOptions, HopProtocol};
use hopline::conn::{CloseReason, Incoming, ServerConfig};
use hopline::pool::shared::{SharedConfig, WhenBusy};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use tokio::net::TcpStream;

/// A client speaking HTTP/2 with prior knowledge.
fn h2_client(shared: SharedConfig) -> Client {
    let mut options = ClientOptions::default();
    options.protocol = HopProtocol::Http2;
    options.shared = shared;
    Client::new(options)
}

/// An origin: `/delay/MS` answers after that long with the path; anything else at once;
/// `/echo` returns the request body as it arrives.
fn origin() -> impl common::TestService {
    answer_with(|request: Request<Incoming>| async move {
        let path = request.uri().path().to_string();
        if path == "/echo" {
            return Response::new(Body::new(request.into_body()));
        }
        if let Some(ms) = path.strip_prefix("/delay/") {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
        }
        let mut response = Response::new(Body::from(path));
        // HTTP/1.x-only fields a handler might set; HTTP/2 must not carry them.
        response
            .headers_mut()
            .insert("connection", "keep-alive, x-hop".parse().unwrap());
        response.headers_mut().insert("x-hop", "1".parse().unwrap());
        response
            .headers_mut()
            .insert("keep-alive", "timeout=5".parse().unwrap());
        response
    })
}

async fn text(response: Response<Incoming>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn streams_on_one_connection_are_answered_as_they_finish_not_in_order() {
    let server = TestServer::start(origin(), ServerConfig::default()).await;
    let client = h2_client(SharedConfig::default());
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for ms in [400, 200, 0] {
        let (client, order) = (client.clone(), order.clone());
        let url = format!("http://{}/delay/{ms}", server.addr);
        tasks.push(tokio::spawn(async move {
            let response = client.get(&url).await.unwrap();
            assert_eq!(response.version(), Version::HTTP_2);
            let exchange = response.body().exchange().unwrap();
            let body = text(response).await;
            order.lock().unwrap().push(body);
            exchange.connection
        }));
        // Sent in this order: the slowest first.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut connections = Vec::new();
    for task in tasks {
        connections.push(task.await.unwrap());
    }
    assert_eq!(
        *order.lock().unwrap(),
        ["/delay/0", "/delay/200", "/delay/400"],
        "no head-of-line blocking"
    );
    connections.dedup();
    assert_eq!(connections.len(), 1, "one connection carried all three");
    assert_eq!(client.stats().connections, 1);
}

#[tokio::test]
async fn connection_specific_fields_never_cross_into_http2_and_the_authority_is_the_uris() {
    let server = TestServer::start(
        answer_with(|request: Request<Incoming>| async move {
            let host = request.uri().authority().unwrap().to_string();
            Response::new(Body::from(format!("{host} {:?}", request.version())))
        }),
        ServerConfig::default(),
    )
    .await;
    let client = h2_client(SharedConfig::default());
    let response = client
        .get(&format!("http://{}/", server.addr))
        .await
        .unwrap();
    assert_eq!(text(response).await, format!("{} HTTP/2.0", server.addr));

    let server = TestServer::start(origin(), ServerConfig::default()).await;
    let response = client
        .get(&format!("http://{}/x", server.addr))
        .await
        .unwrap();
    for name in ["connection", "x-hop", "keep-alive", "transfer-encoding"] {
        assert!(!response.headers().contains_key(name), "{name} was sent");
    }
    assert_eq!(response.headers()["content-length"], "2");
    assert!(response.headers().contains_key("date"));
}

#[tokio::test]
async fn a_request_body_streams_both_ways_through_a_full_duplex_handler() {
    let server = TestServer::start(origin(), ServerConfig::default()).await;
    let client = h2_client(SharedConfig::default());
    let (mut sender, body) = Body::channel(None);
    let request = Request::post(format!("http://{}/echo", server.addr))
        .body(body)
        .unwrap();
    let response = tokio::spawn({
        let client = client.clone();
        async move { client.send(request).await.unwrap() }
    });
    sender.send(Bytes::from("first ")).await.unwrap();
    let mut response = response.await.unwrap();
    // The answer started before the request body ended.
    let first = response.body_mut().frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first ");
    // 4 MiB more: more than both windows, so it flows only as it is read.
    let piece = Bytes::from(vec![b'x'; 64 * 1024]);
    let writer = tokio::spawn(async move {
        for _ in 0..64 {
            sender.send(piece.clone()).await.unwrap();
        }
        sender.finish();
    });
    let rest = response.into_body().collect().await.unwrap().to_bytes();
    writer.await.unwrap();
    assert_eq!(rest.len(), 64 * 64 * 1024);
}

#[tokio::test]
async fn at_the_stream_limit_the_client_opens_another_connection_or_queues_as_configured() {
    let mut config = ServerConfig::default();
    config.http2.max_concurrent_streams = 2;
    let server = TestServer::start(origin(), config).await;
    for (when_busy, connections) in [(WhenBusy::Open, 2), (WhenBusy::Queue, 1)] {
        let mut shared = SharedConfig::default();
        shared.when_busy = when_busy;
        let client = h2_client(shared);
        // The first connection learns the limit before the burst.
        client
            .get(&format!("http://{}/", server.addr))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let client = client.clone();
                let url = format!("http://{}/delay/200", server.addr);
                tokio::spawn(async move { text(client.get(&url).await.unwrap()).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), "/delay/200");
        }
        assert_eq!(client.stats().connections, connections, "{when_busy:?}");
    }
}

#[tokio::test]
async fn requests_made_while_the_first_connection_negotiates_wait_for_it() {
    let server = TestServer::start(origin(), ServerConfig::default()).await;
    let client = h2_client(SharedConfig::default());
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            let url = format!("http://{}/", server.addr);
            tokio::spawn(async move { client.get(&url).await.unwrap().status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(
        client.stats().connections,
        1,
        "one handshake for twenty requests"
    );
    assert_eq!(server.snapshot().accepted, 1);
}

#[tokio::test]
async fn max_requests_ends_a_connection_with_goaway_and_the_client_moves_on() {
    let mut config = ServerConfig::default();
    config.max_requests = Some(3);
    let server = TestServer::start(origin(), config).await;
    let client = h2_client(SharedConfig::default());
    for _ in 0..7 {
        let response = client
            .get(&format!("http://{}/", server.addr))
            .await
            .unwrap();
        assert_eq!(text(response).await, "/");
    }
    assert_eq!(client.stats().connections, 3);
    let closed = server.closed(2).await;
    assert_eq!(closed.closed(CloseReason::MaxRequests), 2);
}

#[tokio::test(start_paused = true)]
async fn an_idle_http2_connection_closes_after_the_keepalive_timeout_with_goaway() {
    let mut config = ServerConfig::default();
    config.keepalive_timeout = Duration::from_secs(5);
    let server = TestServer::start(origin(), config).await;
    let mut h2 = RawH2::client(TcpStream::connect(server.addr).await.unwrap()).await;
    h2.send(&raw::frame(
        raw::HEADERS,
        raw::END_HEADERS | raw::END_STREAM,
        1,
        &raw::get_block("/", &[]),
    ))
    .await;
    h2.until(|f| f.kind == raw::HEADERS && f.stream == 1)
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    // RFC 9113 §6.8 in two steps: "stop opening streams", a PING round trip for those
    // already in flight, then the last stream processed.
    assert_eq!(h2.goaway().await, Some((0x7fff_ffff, 0)));
    assert!(started.elapsed() >= Duration::from_secs(4));
    let ping = h2.until(|f| f.kind == raw::PING).await.unwrap();
    h2.send(&raw::frame(raw::PING, raw::ACK, 0, &ping.payload))
        .await;
    assert_eq!(h2.goaway().await, Some((1, 0)), "graceful, after stream 1");
    assert!(h2.closes().await);
    let closed = server.closed(1).await;
    assert_eq!(closed.closed(CloseReason::IdleTimeout), 1);
}

#[tokio::test]
async fn a_graceful_shutdown_lets_open_streams_finish() {
    let mut server = TestServer::start(origin(), ServerConfig::default()).await;
    let client = h2_client(SharedConfig::default());
    let url = format!("http://{}/delay/300", server.addr);
    let slow = tokio::spawn({
        let client = client.clone();
        async move { text(client.get(&url).await.unwrap()).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.begin_stop();
    assert_eq!(
        slow.await.unwrap(),
        "/delay/300",
        "finished after the GOAWAY"
    );
    let summary = server.finished().await;
    assert_eq!(summary.aborted, 0);
}

#[tokio::test]
async fn streams_above_the_goaway_last_stream_are_sent_again_on_a_new_connection() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A server that takes two streams, processes the first, and goes away after it.
    let server = tokio::spawn(async move {
        let (first, _) = listener.accept().await.unwrap();
        let mut h2 = RawH2::server(first).await;
        let mut streams = Vec::new();
        while streams.len() < 2 {
            let frame = h2.next().await.expect("two requests");
            if frame.kind == raw::HEADERS {
                streams.push(frame.stream);
            }
        }
        let mut goaway = streams[0].to_be_bytes().to_vec();
        goaway.extend_from_slice(&0u32.to_be_bytes());
        h2.send(&raw::frame(raw::GOAWAY, 0, 0, &goaway)).await;
        // `:status: 200` (static table index 8).
        h2.send(&raw::frame(
            raw::HEADERS,
            raw::END_HEADERS | raw::END_STREAM,
            streams[0],
            &[0x88],
        ))
        .await;
        // The retried stream arrives on a second connection.
        let (second, _) = listener.accept().await.unwrap();
        let mut h2 = RawH2::server(second).await;
        let frame = h2.until(|f| f.kind == raw::HEADERS).await.unwrap();
        h2.send(&raw::frame(
            raw::HEADERS,
            raw::END_HEADERS | raw::END_STREAM,
            frame.stream,
            &[0x88],
        ))
        .await;
        h2.closes().await;
    });
    let client = h2_client(SharedConfig::default());
    let url = format!("http://{addr}/");
    let (a, b) = tokio::join!(client.get(&url), client.get(&url));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    let retried = [a, b]
        .iter()
        .filter(|r| r.body().exchange().unwrap().retried)
        .count();
    assert_eq!(retried, 1, "the stream above the last one was sent again");
    assert_eq!(client.stats().connections, 2);
    drop(client);
    server.abort();
}

/// A server counting the requests its service sees.
async fn counting_server(config: ServerConfig) -> (TestServer, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let server = TestServer::start(
        answer_with(move |_request: Request<Incoming>| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Response::new(Body::from("ok"))
            }
        }),
        config,
    )
    .await;
    (server, seen)
}

/// Whether a fresh connection to the server is still answered.
async fn still_serves(server: &TestServer) {
    let client = h2_client(SharedConfig::default());
    let response = client
        .get(&format!("http://{}/", server.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn rapid_reset_ends_the_connection_with_enhance_your_calm_and_bounded_work() {
    let (server, seen) = counting_server(ServerConfig::default()).await;
    let mut h2 = RawH2::client(TcpStream::connect(server.addr).await.unwrap()).await;
    let block = raw::get_block("/", &[]);
    let mut flood = Vec::new();
    for i in 0..5_000u32 {
        let stream = 2 * i + 1;
        flood.extend(raw::frame(
            raw::HEADERS,
            raw::END_HEADERS | raw::END_STREAM,
            stream,
            &block,
        ));
        flood.extend(raw::frame(raw::RST_STREAM, 0, stream, &8u32.to_be_bytes()));
    }
    h2.try_send(&flood).await;
    let goaway = h2.goaway().await.expect("a GOAWAY");
    assert_eq!(goaway.1, raw::ENHANCE_YOUR_CALM);
    assert!(h2.closes().await);
    let served = seen.load(Ordering::Relaxed);
    assert!(served < 600, "work for {served} of 5000 reset streams");
    still_serves(&server).await;
}

#[tokio::test]
async fn a_continuation_flood_is_cut_at_the_header_list_limit() {
    let mut config = ServerConfig::default();
    config.http2.max_header_list_size = 16 * 1024;
    let (server, seen) = counting_server(config).await;
    let mut h2 = RawH2::client(TcpStream::connect(server.addr).await.unwrap()).await;
    h2.send(&raw::frame(raw::HEADERS, 0, 1, &raw::get_block("/", &[])))
        .await;
    let junk = raw::block(&[(b"x-junk", &[b'a'; 1000])]);
    let mut sent = 0;
    // Up to 50 MB of CONTINUATION frames, never END_HEADERS.
    while sent < 50_000
        && h2
            .try_send(&raw::frame(raw::CONTINUATION, 0, 1, &junk))
            .await
    {
        sent += 1;
    }
    assert!(
        sent < 50_000,
        "the server stopped reading long before 50 MB"
    );
    assert!(h2.closes().await);
    assert_eq!(seen.load(Ordering::Relaxed), 0);
    still_serves(&server).await;
}

#[tokio::test]
async fn headers_over_the_limit_are_refused_never_served() {
    let mut config = ServerConfig::default();
    config.http2.max_header_list_size = 16 * 1024;
    let (server, seen) = counting_server(config).await;
    let mut h2 = RawH2::client(TcpStream::connect(server.addr).await.unwrap()).await;
    let big = vec![b'a'; 32 * 1024];
    let block = raw::get_block("/", &[(b"x-big", &big)]);
    h2.send(&raw::frame(
        raw::HEADERS,
        raw::END_HEADERS | raw::END_STREAM,
        1,
        &block,
    ))
    .await;
    let answer = h2
        .until(|f| f.kind == raw::HEADERS || f.kind == raw::RST_STREAM || f.kind == raw::GOAWAY)
        .await
        .expect("an answer");
    if answer.kind == raw::HEADERS {
        assert_ne!(raw::status(&answer), Some(200), "{answer:?}");
    }
    assert_eq!(seen.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn settings_and_ping_floods_are_answered_without_queueing_and_the_connection_serves_on() {
    let (server, _) = counting_server(ServerConfig::default()).await;
    let mut h2 = RawH2::client(TcpStream::connect(server.addr).await.unwrap()).await;
    let mut flood = Vec::new();
    for _ in 0..20_000 {
        flood.extend(raw::frame(raw::SETTINGS, 0, 0, &[]));
        flood.extend(raw::frame(raw::PING, 0, 0, &[7; 8]));
    }
    // Sent without reading a byte of the answers.
    let writer = tokio::spawn(async move {
        h2.try_send(&flood).await;
        h2
    });
    let mut h2 = writer.await.unwrap();
    let block = raw::get_block("/", &[]);
    if h2
        .try_send(&raw::frame(
            raw::HEADERS,
            raw::END_HEADERS | raw::END_STREAM,
            1,
            &block,
        ))
        .await
    {
        // Either served, or told to calm down: never stalled.
        let answer = h2
            .until(|f| (f.kind == raw::HEADERS && f.stream == 1) || f.kind == raw::GOAWAY)
            .await
            .expect("an answer, not a stall");
        if let Some((_, code)) = answer.goaway() {
            assert_eq!(code, raw::ENHANCE_YOUR_CALM);
        }
    }
    still_serves(&server).await;
}

#[tokio::test]
async fn a_window_update_that_overflows_the_window_is_a_flow_control_error() {
    let (server, _) = counting_server(ServerConfig::default()).await;
    let mut h2 = RawH2::client(TcpStream::connect(server.addr).await.unwrap()).await;
    let increment = 0x7fff_ffffu32.to_be_bytes();
    h2.send(&raw::frame(raw::WINDOW_UPDATE, 0, 0, &increment))
        .await;
    h2.send(&raw::frame(raw::WINDOW_UPDATE, 0, 0, &increment))
        .await;
    assert_eq!(
        h2.goaway().await.map(|g| g.1),
        Some(raw::FLOW_CONTROL_ERROR)
    );
    assert!(h2.closes().await);
}

#[tokio::test]
async fn malformed_requests_are_refused_before_the_service_sees_them() {
    let (server, seen) = counting_server(ServerConfig::default()).await;
    type Fields = Vec<(&'static [u8], &'static [u8])>;
    let cases: [(&str, Fields); 5] = [
        ("connection-specific field", vec![(b"connection", b"close")]),
        (
            "transfer-encoding",
            vec![(b"transfer-encoding", b"chunked")],
        ),
        ("CR LF in a value", vec![(b"x-a", b"1\r\nx-b: 2")]),
        ("NUL in a value", vec![(b"x-a", b"1\0")]),
        ("upper-case name", vec![(b"X-Upper", b"1")]),
    ];
    for (what, extra) in cases {
        let mut h2 = RawH2::client(TcpStream::connect(server.addr).await.unwrap()).await;
        let block = raw::get_block("/", &extra);
        h2.send(&raw::frame(
            raw::HEADERS,
            raw::END_HEADERS | raw::END_STREAM,
            1,
            &block,
        ))
        .await;
        let answer = h2
            .until(|f| f.stream == 1 || f.kind == raw::GOAWAY)
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"));
        let refused = answer.reset() == Some(raw::PROTOCOL_ERROR)
            || answer.goaway().is_some()
            || raw::status(&answer) == Some(400);
        assert!(refused, "{what}: {answer:?}");
    }
    // A Host that disagrees with :authority, and a body longer than its Content-Length.
    let mut h2 = RawH2::client(TcpStream::connect(server.addr).await.unwrap()).await;
    let block = raw::get_block("/", &[(b"host", b"elsewhere.test")]);
    h2.send(&raw::frame(
        raw::HEADERS,
        raw::END_HEADERS | raw::END_STREAM,
        1,
        &block,
    ))
    .await;
    let answer = h2.until(|f| f.stream == 1).await.unwrap();
    assert_eq!(raw::status(&answer), Some(400), "{answer:?}");
    let block = raw::post_block(b"3");
    h2.send(&raw::frame(raw::HEADERS, raw::END_HEADERS, 3, &block))
        .await;
    h2.send(&raw::frame(raw::DATA, raw::END_STREAM, 3, b"too long"))
        .await;
    let answer = h2
        .until(|f| f.stream == 3 && f.kind == raw::RST_STREAM)
        .await;
    assert!(
        answer.is_some(),
        "a DATA length that disagrees resets the stream"
    );
    assert!(
        seen.load(Ordering::Relaxed) <= 1,
        "only the POST may have started"
    );
}

#[tokio::test]
async fn a_plaintext_http1_request_is_still_served_beside_h2c() {
    let server = TestServer::start(origin(), ServerConfig::default()).await;
    let mut client = common::RawClient::connect(server.addr).await;
    client.get("/x", "").await;
    let response = client.response().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "/x");

    let mut config = ServerConfig::default();
    config.http2.enabled = false;
    let server = TestServer::start(origin(), config).await;
    let client = h2_client(SharedConfig::default());
    assert!(
        client
            .get(&format!("http://{}/", server.addr))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn over_tls_alpn_chooses_h2_and_auto_learns_an_http1_only_origin() {
    let pki = common::tls::Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let server = TestServer::start_tls(
        origin(),
        ServerConfig::default(),
        pki.acceptor(vec![leaf.clone()]),
        Default::default(),
    )
    .await;
    for protocol in [HopProtocol::Http2, HopProtocol::Auto] {
        let mut settings = pki.client_settings();
        settings.alpn = hopline::client::alpn_for(protocol);
        let mut options = ClientOptions::default();
        options.protocol = protocol;
        options.tls = Some(hopline::transport::tls::TlsConnector::new(&settings).unwrap());
        let client = Client::new(options);
        let url = format!("https://localhost:{}/x", server.addr.port());
        let response = client.get(&url).await.unwrap();
        assert_eq!(response.version(), Version::HTTP_2, "{protocol:?}");
        assert_eq!(text(response).await, "/x");
    }
    // A server that offers only http/1.1: auto falls back (and remembers), h2 refuses.
    let mut tls = hopline::transport::tls::ServerTls::new(vec![leaf]);
    tls.alpn = vec![b"http/1.1".to_vec()];
    let acceptor = hopline::transport::tls::TlsAcceptor::new(&tls).unwrap();
    let mut config = ServerConfig::default();
    config.http2.enabled = false;
    let server = TestServer::start_tls(origin(), config, acceptor, Default::default()).await;
    let url = format!("https://localhost:{}/x", server.addr.port());
    for (protocol, works) in [(HopProtocol::Auto, true), (HopProtocol::Http2, false)] {
        let mut settings = pki.client_settings();
        settings.alpn = hopline::client::alpn_for(protocol);
        let mut options = ClientOptions::default();
        options.protocol = protocol;
        options.tls = Some(hopline::transport::tls::TlsConnector::new(&settings).unwrap());
        let client = Client::new(options);
        let accepted = server.snapshot().accepted;
        let first = client.get(&url).await;
        assert_eq!(first.is_ok(), works, "{protocol:?}");
        if works {
            let first = first.unwrap();
            assert_eq!(first.version(), Version::HTTP_11);
            assert!(!first.body().exchange().unwrap().reused);
            assert_eq!(text(first).await, "/x");
            let second = client.get(&url).await.unwrap();
            assert_eq!(second.version(), Version::HTTP_11);
            assert!(second.body().exchange().unwrap().reused);
            assert_eq!(text(second).await, "/x");
            // The connection that learned HTTP/1.1 served both: no second handshake.
            assert_eq!(server.snapshot().accepted, accepted + 1);
            assert_eq!(client.stats().connections, 1);
        }
    }
}

#[tokio::test]
async fn bodies_in_memory_larger_than_the_window_and_slow_answers_finish_in_their_own_task() {
    let big = bytes::Bytes::from(vec![b'q'; 3 * 1024 * 1024]);
    let server = TestServer::start(
        answer_with(move |request: Request<Incoming>| {
            let big = big.clone();
            async move {
                match request.uri().path() {
                    // Whole in memory, but more than the stream's window (256 KiB): the
                    // head goes at once, the rest as the client reads.
                    "/big" => Response::new(Body::from(big)),
                    // Not ready at once: answered from the stream's task.
                    _ => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Response::new(Body::from("late"))
                    }
                }
            }
        }),
        ServerConfig::default(),
    )
    .await;
    let client = h2_client(SharedConfig::default());
    let (big_url, late_url) = (
        format!("http://{}/big", server.addr),
        format!("http://{}/late", server.addr),
    );
    let (big, late) = tokio::join!(client.get(&big_url), client.get(&late_url));
    let big = big.unwrap();
    assert_eq!(big.headers()["content-length"], "3145728");
    assert_eq!(
        big.into_body().collect().await.unwrap().to_bytes().len(),
        3 * 1024 * 1024
    );
    assert_eq!(text(late.unwrap()).await, "late");
}

/// A server whose `/echo` answers with the request body and `/big` with 1 MiB, with the
/// policy `configure` sets.
async fn timed_server(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let mut config = ServerConfig::default();
    configure(&mut config);
    let big = Bytes::from(vec![b'b'; 1024 * 1024]);
    let service = answer_with(move |request: Request<Incoming>| {
        let big = big.clone();
        async move {
            match request.uri().path() {
                "/big" => Response::new(Body::from(big)),
                _ => Response::new(Body::new(request.into_body())),
            }
        }
    });
    TestServer::start(service, config).await
}

#[tokio::test(start_paused = true)]
async fn keepalive_pings_close_a_connection_whose_peer_does_not_answer() {
    let server = timed_server(|c| c.http2.keepalive_interval = Some(Duration::from_secs(4))).await;
    // A peer that does not answer is closed at the next interval.
    let mut silent = RawH2::client(TcpStream::connect(server.addr).await.unwrap()).await;
    let started = tokio::time::Instant::now();
    assert!(silent.closes().await);
    assert!(started.elapsed() >= Duration::from_secs(8));
    let closed = server.closed(1).await;
    assert_eq!(closed.closed(CloseReason::PingTimeout), 1);
    // A peer that answers its PINGs stays, and is served.
    let mut answering = RawH2::client(TcpStream::connect(server.addr).await.unwrap()).await;
    for _ in 0..3 {
        let ping = answering
            .until(|f| f.kind == raw::PING && f.flags & raw::ACK == 0)
            .await;
        let ping = ping.expect("a PING every interval");
        answering
            .send(&raw::frame(raw::PING, raw::ACK, 0, &ping.payload))
            .await;
    }
    answering
        .send(&raw::frame(
            raw::HEADERS,
            raw::END_HEADERS | raw::END_STREAM,
            1,
            &raw::get_block("/big", &[]),
        ))
        .await;
    assert!(
        answering
            .until(|f| f.kind == raw::HEADERS && f.stream == 1)
            .await
            .is_some()
    );
    assert_eq!(server.snapshot().closed(CloseReason::PingTimeout), 1);
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_ends_an_http2_connection_with_a_graceful_goaway() {
    let server = timed_server(|c| c.max_lifetime = Some(Duration::from_secs(5))).await;
    let mut h2 = RawH2::client(TcpStream::connect(server.addr).await.unwrap()).await;
    let started = tokio::time::Instant::now();
    assert_eq!(h2.goaway().await, Some((0x7fff_ffff, 0)));
    assert!(started.elapsed() >= Duration::from_secs(5));
    // This peer never answers the GOAWAY's PING: the connection is closed after the
    // linger time all the same, not kept open forever.
    assert!(h2.closes().await);
    let closed = server.closed(1).await;
    assert_eq!(closed.closed(CloseReason::MaxLifetime), 1);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_upload_is_cut_at_the_body_timeout() {
    let server = timed_server(|c| c.body_timeout = Duration::from_secs(5)).await;
    let mut h2 = RawH2::client(TcpStream::connect(server.addr).await.unwrap()).await;
    let block = raw::block(&[
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"localhost"),
        (b":path", b"/echo"),
    ]);
    h2.send(&raw::frame(raw::HEADERS, raw::END_HEADERS, 1, &block))
        .await;
    h2.send(&raw::frame(raw::DATA, 0, 1, b"abc")).await;
    let started = tokio::time::Instant::now();
    // The echo's body fails when the upload stalls: the stream is reset, never ended
    // as if the body were whole.
    let reset = h2
        .until(|f| f.stream == 1 && (f.kind == raw::RST_STREAM || f.flags & raw::END_STREAM != 0))
        .await;
    let reset = reset.expect("the stream ends");
    assert_eq!(reset.kind, raw::RST_STREAM, "{reset:?}");
    assert!(started.elapsed() >= Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_window_that_never_opens_resets_the_stream_at_the_write_timeout() {
    let server = timed_server(|c| c.write_timeout = Duration::from_secs(5)).await;
    let mut h2 = RawH2::new(TcpStream::connect(server.addr).await.unwrap());
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: no stream may receive a byte of DATA.
    let mut hello = raw::PREFACE.to_vec();
    hello.extend(raw::frame(raw::SETTINGS, 0, 0, &[0x00, 0x04, 0, 0, 0, 0]));
    hello.extend(raw::frame(
        raw::HEADERS,
        raw::END_HEADERS | raw::END_STREAM,
        1,
        &raw::get_block("/big", &[]),
    ));
    h2.send(&hello).await;
    let started = tokio::time::Instant::now();
    let reset = h2
        .until(|f| f.stream == 1 && f.kind == raw::RST_STREAM)
        .await;
    assert_eq!(reset.and_then(|f| f.reset()), Some(0x8), "CANCEL");
    assert!(started.elapsed() >= Duration::from_secs(5));
    // The connection itself serves on.
    h2.send(&raw::frame(
        raw::HEADERS,
        raw::END_HEADERS | raw::END_STREAM,
        3,
        &raw::get_block("/echo", &[]),
    ))
    .await;
    assert!(
        h2.until(|f| f.kind == raw::HEADERS && f.stream == 3)
            .await
            .is_some()
    );
}

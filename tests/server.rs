//! The server connection engine over real sockets: connection types (short-lived,
//! persistent, pipelined), timers, limits, error answers and graceful shutdown.

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::{RawClient, TestServer};
use hopline::conn::{Body, CloseReason, Incoming, ServerConfig};
use hopline::error::BoxError;
use hopline::origin::Origin;
use hopline::service::{Service, service_fn};
use http::{Request, Response, StatusCode};
use http_body::Frame;

async fn origin() -> TestServer {
    TestServer::start(Origin::new(), ServerConfig::default()).await
}

#[tokio::test]
async fn two_requests_share_one_connection() {
    let server = origin().await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", "").await;
    let first = client.response().await;
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "Hello, world!");
    assert!(first.header("date").is_some());
    assert!(!first.closes());
    client.get("/bytes/5", "").await;
    assert_eq!(client.response().await.text(), "abcde");
    drop(client);
    let stats = server.closed(1).await;
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.closed(CloseReason::ClientClosed), 1);
}

#[tokio::test]
async fn http10_closes_unless_it_asks_for_keep_alive() {
    let server = origin().await;
    let mut plain = RawClient::connect(server.addr).await;
    plain.send(b"GET / HTTP/1.0\r\n\r\n").await;
    let response = plain.response().await;
    assert_eq!(response.status, 200);
    assert!(response.closes());
    plain.expect_eof().await;

    let mut keep = RawClient::connect(server.addr).await;
    keep.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let response = keep.response().await;
    assert_eq!(response.header("connection"), Some("keep-alive"));
    keep.send(b"GET /bytes/3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    assert_eq!(keep.response().await.text(), "abc");
    drop(keep);
    let stats = server.closed(2).await;
    assert_eq!(stats.accepted, 2);
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.closed(CloseReason::ClientRequested), 1);
}

#[tokio::test]
async fn connection_close_closes_after_the_response() {
    let server = origin().await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", "Connection: close\r\n").await;
    let response = client.response().await;
    assert_eq!(response.status, 200);
    assert!(response.closes());
    client.expect_eof().await;
}

#[tokio::test]
async fn short_lived_policy_closes_every_connection() {
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.keep_alive = false;
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    for _ in 0..3 {
        let mut client = RawClient::connect(server.addr).await;
        client.get("/", "").await;
        assert!(client.response().await.closes());
        client.expect_eof().await;
    }
    let stats = server.closed(3).await;
    assert_eq!(stats.accepted, 3);
    assert_eq!(stats.closed(CloseReason::ShortLived), 3);
}

#[tokio::test]
async fn pipelined_requests_come_back_in_order_in_one_write() {
    let server = origin().await;
    let mut client = RawClient::connect(server.addr).await;
    let mut burst = Vec::new();
    for n in 1..=10 {
        burst.extend_from_slice(format!("GET /bytes/{n} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    client.send(&burst).await;
    for n in 1..=10 {
        let response = client.response().await;
        assert_eq!(response.body.len(), n, "response {n} out of order");
    }
    drop(client);
    let stats = server.closed(1).await;
    assert_eq!(stats.requests, 10);
    // One write for the whole burst (two if the burst happened to arrive in two reads).
    assert!(
        stats.writes <= 2,
        "{} writes for 10 pipelined responses",
        stats.writes
    );
}

#[tokio::test]
async fn pipelined_responses_wait_for_a_slow_handler_in_order() {
    let server = origin().await;
    let mut client = RawClient::connect(server.addr).await;
    client
        .send(
            b"GET /delay/50 HTTP/1.1\r\nHost: t\r\n\r\nGET /bytes/2 HTTP/1.1\r\nHost: t\r\n\r\nGET /delay/1 HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .await;
    assert_eq!(client.response().await.text(), "delayed 50 ms\n");
    assert_eq!(client.response().await.text(), "ab");
    assert_eq!(client.response().await.text(), "delayed 1 ms\n");
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_an_idle_connection() {
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.keepalive_timeout = Duration::from_secs(5);
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", "").await;
    client.response().await;
    let idle_since = tokio::time::Instant::now();
    client.expect_eof().await;
    let waited = idle_since.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "closed after {waited:?}"
    );
    let stats = server.closed(1).await;
    assert_eq!(stats.closed(CloseReason::IdleTimeout), 1);
}

#[tokio::test(start_paused = true)]
async fn header_timeout_answers_408_to_a_slow_head() {
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.header_timeout = Duration::from_secs(3);
        server_config.keepalive_timeout = Duration::from_secs(60);
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    let mut client = RawClient::connect(server.addr).await;
    client.send(b"GET / HTTP/1.1\r\nHo").await;
    let started = tokio::time::Instant::now();
    let response = client.response().await;
    assert_eq!(response.status, 408);
    assert!(response.closes());
    client.expect_eof().await;
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the idle timer ran instead"
    );
    drop(client);
    let stats = server.closed(1).await;
    assert_eq!(stats.closed(CloseReason::HeaderTimeout), 1);
}

#[tokio::test(start_paused = true)]
async fn a_silent_new_connection_gets_the_header_timeout() {
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.header_timeout = Duration::from_secs(2);
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    let mut client = RawClient::connect(server.addr).await;
    let started = tokio::time::Instant::now();
    client.expect_eof().await;
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn max_requests_closes_after_the_last_one() {
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.max_requests = Some(3);
        server_config.advertise_keep_alive = true;
        server_config.keepalive_timeout = Duration::from_secs(7);
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    let mut client = RawClient::connect(server.addr).await;
    for n in 1..=3 {
        client.get("/", "").await;
        let response = client.response().await;
        if n < 3 {
            assert!(!response.closes());
            let advertised = format!("timeout=7, max={}", 3 - n);
            assert_eq!(response.header("keep-alive"), Some(advertised.as_str()));
        } else {
            assert!(response.closes());
            assert_eq!(response.header("keep-alive"), None);
        }
    }
    client.expect_eof().await;
    let stats = server.closed(1).await;
    assert_eq!(stats.closed(CloseReason::MaxRequests), 1);
    assert_eq!(stats.requests, 3);
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_ends_busy_and_idle_connections() {
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.max_lifetime = Some(Duration::from_secs(10));
        server_config.keepalive_timeout = Duration::from_secs(60);
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    // Busy when its lifetime ends: that response says close.
    let mut busy = RawClient::connect(server.addr).await;
    busy.get("/", "").await;
    assert!(!busy.response().await.closes());
    busy.get("/delay/11000", "").await;
    assert!(busy.response().await.closes());
    busy.expect_eof().await;
    drop(busy);
    // Idle at its lifetime: closed then, not at the keep-alive timeout.
    let mut idle = RawClient::connect(server.addr).await;
    idle.get("/", "").await;
    idle.response().await;
    let since = tokio::time::Instant::now();
    idle.expect_eof().await;
    assert!(since.elapsed() < Duration::from_secs(11));
    drop(idle);
    let stats = server.closed(2).await;
    assert_eq!(stats.closed(CloseReason::MaxLifetime), 2);
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_finishes_in_flight_and_closes_idle() {
    let mut server = origin().await;
    let mut idle = RawClient::connect(server.addr).await;
    idle.get("/", "").await;
    idle.response().await;
    let mut busy = RawClient::connect(server.addr).await;
    busy.get("/delay/500", "").await;
    // Let the server start the delayed request before shutting down.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.begin_stop();
    idle.expect_eof().await;
    let response = busy.response().await;
    assert_eq!(response.text(), "delayed 500 ms\n");
    assert!(response.closes());
    busy.expect_eof().await;
    let summary = server.finished().await;
    assert_eq!(summary.aborted, 0);
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_aborts_at_the_drain_deadline() {
    let listener = {
        let mut listener_config = hopline::server::ListenerConfig::default();
        listener_config.drain_timeout = Duration::from_secs(1);
        listener_config
    };
    let mut server = TestServer::start_with(Origin::new(), ServerConfig::default(), listener).await;
    let mut busy = RawClient::connect(server.addr).await;
    busy.get("/delay/30000", "").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.begin_stop();
    let stats = server.stats.clone();
    let summary = server.finished().await;
    assert_eq!(summary.aborted, 1);
    assert_eq!(busy.read_to_end().await, b"");
    assert_eq!(stats.snapshot().active, 0);
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let server = origin().await;
    let mut client = RawClient::connect(server.addr).await;
    client
        .send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .await;
    let interim = client.response().await;
    assert_eq!(interim.status, 100);
    client.send(b"hello").await;
    let response = client.response().await;
    assert_eq!(response.status, 200);
    assert!(response.text().ends_with("\r\n\r\nhello"));
    // The connection stays usable.
    client.get("/", "").await;
    assert_eq!(client.response().await.status, 200);
}

#[tokio::test]
async fn unanswered_expectation_closes_when_the_body_is_left_unread() {
    let server = origin().await;
    let mut client = RawClient::connect(server.addr).await;
    client
        .send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let response = client.response().await;
    assert_eq!(response.status, 405);
    assert!(
        response.closes(),
        "no 100 was sent, so the body may never come"
    );
}

#[tokio::test]
async fn other_expectations_get_417() {
    let server = origin().await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", "Expect: 200-ok\r\n").await;
    let response = client.response().await;
    assert_eq!(response.status, 417);
    assert!(response.closes());
}

#[tokio::test]
async fn chunked_request_bodies_are_decoded() {
    let server = origin().await;
    let mut client = RawClient::connect(server.addr).await;
    client
        .send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-T: 1\r\n\r\n")
        .await;
    let response = client.response().await;
    assert!(
        response.text().ends_with("\r\n\r\nhello world"),
        "{}",
        response.text()
    );
}

#[tokio::test]
async fn head_responses_carry_the_length_but_no_body() {
    let server = origin().await;
    let mut client = RawClient::connect(server.addr).await;
    client
        .send(
            b"HEAD /bytes/1000 HTTP/1.1\r\nHost: t\r\n\r\nGET /bytes/2 HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .await;
    let head = client.try_response(true).await.unwrap();
    assert_eq!(head.header("content-length"), Some("1000"));
    // The next response follows directly: no body bytes were sent for HEAD.
    assert_eq!(client.response().await.text(), "ab");
}

#[tokio::test]
async fn malformed_requests_get_an_error_status_then_close() {
    let server = origin().await;
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "b".repeat(70_000)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        (0..101)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\nHost: t\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n".to_vec(), 505),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), 501),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(), 501),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1, 1\r\n\r\n".to_vec(), 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec(), 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(), 400),
        (long_target.into_bytes(), 414),
        (big_header.into_bytes(), 431),
        (many_headers.into_bytes(), 431),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            400,
        ),
    ];
    for (request, status) in cases {
        let mut client = RawClient::connect(server.addr).await;
        client.send(&request).await;
        let response = client.response().await;
        assert_eq!(
            response.status,
            status,
            "for {:?}",
            String::from_utf8_lossy(&request[..request.len().min(60)])
        );
        assert!(response.closes());
        client.expect_eof().await;
    }
}

#[tokio::test]
async fn body_limit_answers_413() {
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.max_body_bytes = Some(10);
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    let mut declared = RawClient::connect(server.addr).await;
    declared
        .send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n")
        .await;
    assert_eq!(declared.response().await.status, 413);
    let mut chunked = RawClient::connect(server.addr).await;
    chunked
        .send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n")
        .await;
    let response = chunked.response().await;
    assert_eq!(response.status, 413);
    assert!(response.closes());
}

#[tokio::test]
async fn small_unread_bodies_are_discarded_and_large_ones_close() {
    let server = origin().await;
    let mut client = RawClient::connect(server.addr).await;
    // `/` does not read bodies: 10 bytes are discarded and the connection lives on.
    client
        .send(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789GET /bytes/1 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert_eq!(client.response().await.text(), "Hello, world!");
    assert_eq!(client.response().await.text(), "a");
    // A megabyte left unread is not worth reading: close.
    client
        .send(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n0123")
        .await;
    let response = client.response().await;
    assert!(response.closes());
    let stats = server.closed(1).await;
    assert_eq!(stats.closed(CloseReason::BodyUnread), 1);
}

/// A service that streams a body of unknown length, or fails midway.
#[allow(non_snake_case)]
fn Streaming(
    fail: bool,
) -> impl Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |_request: Request<Incoming>| async move {
        Ok(Response::new(Body::new(Countdown { left: 3, fail })))
    })
}

struct Countdown {
    left: u32,
    fail: bool,
}

impl http_body::Body for Countdown {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        if self.fail && self.left == 1 {
            return Poll::Ready(Some(Err("source failed".into())));
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(format!(
            "part{} ",
            self.left
        ))))))
    }
}

#[tokio::test]
async fn unknown_length_bodies_are_chunked_for_11_and_close_delimited_for_10() {
    let server = TestServer::start(Streaming(false), ServerConfig::default()).await;
    let mut modern = RawClient::connect(server.addr).await;
    modern.get("/", "").await;
    let response = modern.response().await;
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.text(), "part2 part1 part0 ");
    assert!(!response.closes());

    let mut old = RawClient::connect(server.addr).await;
    old.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let response = old.response().await;
    assert!(response.closes());
    assert_eq!(response.header("transfer-encoding"), None);
    assert_eq!(response.text(), "part2 part1 part0 ");
}

#[tokio::test]
async fn a_failing_body_is_cut_short_not_completed() {
    let server = TestServer::start(Streaming(true), ServerConfig::default()).await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", "").await;
    let raw = client.read_to_end().await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("part2"));
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the last chunk must not be sent: {text:?}"
    );
    let stats = server.closed(1).await;
    assert_eq!(stats.closed(CloseReason::ResponseAborted), 1);
}

#[tokio::test]
async fn a_client_that_never_reads_is_bounded_by_the_write_timeout() {
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.write_timeout = Duration::from_millis(300);
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    let mut client = RawClient::connect(server.addr).await;
    // Ask for far more than the socket buffers hold, and never read.
    client.get("/bytes/100000000", "").await;
    let stats = server.closed(1).await;
    assert_eq!(stats.closed(CloseReason::WriteTimeout), 1);
    drop(client);
}

#[tokio::test]
async fn unknown_methods_get_501_and_wrong_ones_405() {
    let server = origin().await;
    let mut client = RawClient::connect(server.addr).await;
    client.send(b"BREW / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(client.response().await.status, 501);
    client
        .send(b"DELETE /bytes/3 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let response = client.response().await;
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD"));
    assert_eq!(
        StatusCode::from_u16(response.status).unwrap(),
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn excess_connections_wait_for_a_slot_instead_of_being_dropped() {
    let listener = {
        let mut listener_config = hopline::server::ListenerConfig::default();
        listener_config.max_connections = 1;
        listener_config
    };
    let server = TestServer::start_with(Origin::new(), ServerConfig::default(), listener).await;
    let mut first = RawClient::connect(server.addr).await;
    first.get("/", "").await;
    first.response().await;
    // Busy: half a request head (an idle connection would give way, see tests/idle.rs).
    first.send(b"GET / HTTP/1.1\r\n").await;
    // The second connects (kernel backlog) but is not served while the first holds the slot.
    let mut second = RawClient::connect(server.addr).await;
    second.get("/", "").await;
    let early = tokio::time::timeout(Duration::from_millis(200), second.response()).await;
    assert!(early.is_err(), "served beyond the connection limit");
    drop(first);
    let response = tokio::time::timeout(Duration::from_secs(5), second.response())
        .await
        .expect("served once a slot was free");
    assert_eq!(response.status, 200);
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_jitter_spreads_closes_over_the_window() {
    let config = {
        let mut config = ServerConfig::default();
        config.keepalive_timeout = Duration::from_secs(600);
        config.max_lifetime = Some(Duration::from_secs(10));
        config.max_lifetime_jitter = Duration::from_secs(8);
        config
    };
    let server = TestServer::start(Origin::new(), config).await;
    let start = tokio::time::Instant::now();
    let mut closes = Vec::new();
    for _ in 0..40 {
        let mut client = RawClient::connect(server.addr).await;
        client.get("/", "").await;
        assert_eq!(client.response().await.status, 200);
        closes.push(tokio::spawn(async move {
            client.expect_eof().await;
            start.elapsed()
        }));
    }
    let mut seconds = Vec::new();
    for close in closes {
        let after = close.await.unwrap();
        assert!(
            after >= Duration::from_secs(2) && after <= Duration::from_secs(11),
            "a lifetime of 10 s less up to 8: {after:?}"
        );
        seconds.push(after.as_secs());
    }
    seconds.sort_unstable();
    seconds.dedup();
    assert!(
        seconds.len() >= 5,
        "closes spread over the window, not together: {seconds:?}"
    );
    assert_eq!(server.closed(40).await.closed(CloseReason::MaxLifetime), 40);
}

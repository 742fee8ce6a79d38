//! The pooled client over real sockets: connection types, pipelining, the idle-close race,
//! safe retries, HTTP/1.0 servers and the server's `Keep-Alive` hint.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use hopline::Body;
use hopline::client::{Client, ClientOptions, Exchange, Mode};
use hopline::conn::ServerConfig;
use hopline::origin::Origin;
use hopline::pool::PoolConfig;
use http::{Method, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn client(mode: Mode) -> Client {
    Client::new({
        let mut client_options = ClientOptions::default();
        client_options.mode = mode;
        client_options
    })
}

/// A pipelining client held to one connection per host, so that concurrent requests
/// must share it.
fn one_pipelined_connection(depth: usize) -> Client {
    Client::new({
        let mut client_options = ClientOptions::default();
        client_options.mode = Mode::Pipeline { depth };
        client_options.pool = {
            let mut pool_config = PoolConfig::default();
            pool_config.max_connections_per_host = Some(1);
            pool_config
        };
        client_options
    })
}

/// Fetches every URL at once, each from its own task; the answers in the URLs' order.
async fn fetch_concurrently(client: &Client, urls: Vec<String>) -> Vec<(u16, Bytes, Exchange)> {
    let tasks: Vec<_> = urls
        .into_iter()
        .map(|url| {
            let client = client.clone();
            tokio::spawn(async move { fetch(&client, &url).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

async fn fetch(client: &Client, url: &str) -> (u16, Bytes, Exchange) {
    let response = client.get(url).await.expect("request");
    let exchange = response.body().exchange().unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().bytes(u64::MAX).await.expect("body");
    (status, body, exchange)
}

#[tokio::test]
async fn keepalive_uses_one_connection_and_close_one_per_request() {
    let server = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let keep = client(Mode::KeepAlive);
    for n in 0..20 {
        let (status, body, exchange) =
            fetch(&keep, &format!("http://{}/bytes/{n}", server.addr)).await;
        assert_eq!(status, 200);
        assert_eq!(body, pattern(n));
        assert_eq!(exchange.reused, n > 0);
    }
    assert_eq!(keep.stats().connections, 1);

    let short = client(Mode::Close);
    for _ in 0..5 {
        let (_, body, exchange) = fetch(&short, &format!("http://{}/", server.addr)).await;
        assert_eq!(body, "Hello, world!");
        assert!(!exchange.reused);
    }
    assert_eq!(short.stats().connections, 5);
    let stats = server.closed(5).await;
    assert_eq!(stats.accepted, 6);
    assert_eq!(stats.closed(hopline::conn::CloseReason::ClientRequested), 5);
}

#[tokio::test]
async fn pipelined_requests_return_in_order_on_one_connection() {
    let server = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let pipelined = one_pipelined_connection(8);
    let urls = (0..40)
        .map(|n| format!("http://{}/bytes/{}", server.addr, 1000 + n))
        .collect();
    let answers = fetch_concurrently(&pipelined, urls).await;
    for (n, (status, body, exchange)) in answers.into_iter().enumerate() {
        assert_eq!(status, 200);
        assert_eq!(body, pattern(1000 + n), "response {n} carries its own body");
        assert_eq!(exchange.connection, 1);
    }
    assert_eq!(pipelined.stats().connections, 1);
    drop(pipelined);
    let stats = server.closed(1).await;
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.requests, 40);
    // Many requests shared each write: pipelining happened.
    assert!(stats.writes < 40, "{} writes for 40 requests", stats.writes);
}

#[tokio::test]
async fn pipelined_requests_pack_onto_the_oldest_connection_with_room() {
    let server = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let pipelined = client(Mode::Pipeline { depth: 4 });
    // A burst to a new origin opens several connections (each carries one request until
    // its first answer shows the server keeps it).
    let urls = (0..8).map(|_| format!("http://{}/", server.addr)).collect();
    let burst = fetch_concurrently(&pipelined, urls).await;
    let opened = pipelined.stats().connections;
    assert!(opened > 1, "{opened}");
    let oldest = burst.iter().map(|(_, _, e)| e.connection).min().unwrap();
    // From then on requests go to the oldest with room; the others fall idle.
    for _ in 0..10 {
        let (status, _, exchange) = fetch(&pipelined, &format!("http://{}/", server.addr)).await;
        assert_eq!(status, 200);
        assert_eq!(exchange.connection, oldest);
    }
    assert_eq!(pipelined.stats().connections, opened);
}

#[tokio::test]
async fn pipelined_bodies_stream_with_posts_alone() {
    let server = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let pipelined = client(Mode::Pipeline { depth: 4 });
    let mut tasks = Vec::new();
    for n in 0..12usize {
        let pipelined = pipelined.clone();
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let request = if n % 3 == 0 {
                Request::post(format!("http://{addr}/echo"))
                    .body(Body::from(Bytes::from(format!("post {n}"))))
                    .unwrap()
            } else {
                Request::get(format!("http://{addr}/bytes/{n}"))
                    .body(Body::empty())
                    .unwrap()
            };
            let response = pipelined.send(request).await.unwrap();
            let body = response.into_body().bytes(u64::MAX).await.unwrap();
            (n, body)
        }));
    }
    for task in tasks {
        let (n, body) = task.await.unwrap();
        if n % 3 == 0 {
            assert!(body.ends_with(format!("post {n}").as_bytes()));
        } else {
            assert_eq!(body, pattern(n));
        }
    }
}

/// A scripted server: answers the first request on each connection with a keep-alive
/// response, then reads the next request and closes without answering (the idle-close
/// race: the server gives up on the connection just as the client reuses it). Counts the
/// requests it received, by method.
async fn closes_on_reuse() -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gets = Arc::new(AtomicUsize::new(0));
    let posts = Arc::new(AtomicUsize::new(0));
    let (g, p) = (gets.clone(), posts.clone());
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let (g, p) = (g.clone(), p.clone());
            tokio::spawn(async move {
                let mut served = 0;
                loop {
                    let request = read_request(&mut stream).await;
                    let Some(request) = request else { return };
                    if request.starts_with("GET") {
                        g.fetch_add(1, Ordering::SeqCst);
                    } else {
                        p.fetch_add(1, Ordering::SeqCst);
                    }
                    if served == 1 {
                        return; // close with the second request unanswered
                    }
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .unwrap();
                    served += 1;
                }
            });
        }
    });
    (addr, gets, posts)
}

/// Reads one request head (and a Content-Length body); `None` at EOF.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.ok()?;
    Some(head)
}

#[tokio::test]
async fn the_idle_close_race_is_retried_for_get_and_never_for_post() {
    let (addr, gets, posts) = closes_on_reuse().await;
    let client = client(Mode::KeepAlive);
    let url = format!("http://{addr}/");
    let (_, body, first) = fetch(&client, &url).await;
    assert_eq!(body, "ok");
    assert!(!first.reused);
    // Reused; the server closes without answering; sent again on a new connection.
    let (status, body, second) = fetch(&client, &url).await;
    assert_eq!((status, &body[..]), (200, &b"ok"[..]));
    assert!(second.retried && !second.reused);
    assert_eq!(client.stats().retries, 1);
    assert_eq!(gets.load(Ordering::SeqCst), 3);

    // The pool now holds the retry's connection, which the server will close on its next
    // request: a POST that meets that is not sent again.
    let post = Request::post(url.clone())
        .body(Body::from(Bytes::from_static(b"data")))
        .unwrap();
    let error = client.send(post).await.expect_err("not retried");
    assert_eq!(error.side, hopline::Side::Upstream);
    assert_eq!(
        posts.load(Ordering::SeqCst),
        1,
        "the POST reached the server once"
    );
    assert_eq!(client.stats().retries, 1);
}

#[tokio::test]
async fn an_idempotency_key_makes_a_post_retryable() {
    let (addr, _, posts) = closes_on_reuse().await;
    let client = client(Mode::KeepAlive);
    let post = || {
        Request::post(format!("http://{addr}/"))
            .header("idempotency-key", "k1")
            .body(Body::from(Bytes::from_static(b"data")))
            .unwrap()
    };
    client
        .send(post())
        .await
        .unwrap()
        .into_body()
        .discard()
        .await
        .unwrap();
    let response = client.send(post()).await.expect("retried");
    assert!(response.body().exchange().unwrap().retried);
    assert_eq!(posts.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_not_reused() {
    // hopline serve with a short idle timeout closes the pooled connection; the pool sees
    // it (reaper or checkout) and opens a new one: no error, no retry.
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.keepalive_timeout = Duration::from_millis(50);
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    let client = client(Mode::KeepAlive);
    let url = format!("http://{}/", server.addr);
    fetch(&client, &url).await;
    server.closed(1).await;
    let (status, _, exchange) = fetch(&client, &url).await;
    assert_eq!(status, 200);
    assert!(!exchange.reused && !exchange.retried);
    assert_eq!(client.stats().retries, 0);
    assert_eq!(client.pool().stats().evicted_stale, 1);
}

#[tokio::test]
async fn http10_servers_get_one_connection_per_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                if read_request(&mut stream).await.is_some() {
                    // HTTP/1.0, no keep-alive, body delimited by the close.
                    let _ = stream.write_all(b"HTTP/1.0 200 OK\r\n\r\nold server").await;
                }
            });
        }
    });
    let client = client(Mode::KeepAlive);
    for _ in 0..3 {
        let (status, body, exchange) = fetch(&client, &format!("http://{addr}/")).await;
        assert_eq!(status, 200);
        assert_eq!(body, "old server");
        assert!(!exchange.reused);
    }
    assert_eq!(client.stats().connections, 3);
    assert_eq!(client.stats().retries, 0);
}

#[tokio::test(start_paused = true)]
async fn a_keep_alive_timeout_hint_is_honoured() {
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.keepalive_timeout = Duration::from_secs(1);
        server_config.advertise_keep_alive = true;
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    let client = client(Mode::KeepAlive);
    let url = format!("http://{}/", server.addr);
    fetch(&client, &url).await;
    // Well within the hint: reused.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(fetch(&client, &url).await.2.reused);
    // Past the hint minus its margin, before the server's timer: retired, not reused.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (_, _, exchange) = fetch(&client, &url).await;
    assert!(!exchange.reused && !exchange.retried);
    assert_eq!(client.stats().connections, 2);
    assert_eq!(client.pool().stats().evicted_expired, 1);
}

#[tokio::test]
async fn hyper_servers_keep_one_connection_and_pipeline_in_order() {
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(
                    |request: hyper::Request<hyper::body::Incoming>| async move {
                        let path = request.uri().path().to_string();
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(path),
                        )))
                    },
                );
                let _ = http1::Builder::new()
                    .pipeline_flush(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let keep = client(Mode::KeepAlive);
    for n in 0..10 {
        let (_, body, _) = fetch(&keep, &format!("http://{addr}/k{n}")).await;
        assert_eq!(body, format!("/k{n}"));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    let pipelined = one_pipelined_connection(16);
    let urls = (0..32).map(|n| format!("http://{addr}/p{n}")).collect();
    let answers = fetch_concurrently(&pipelined, urls).await;
    for (n, (_, body, _)) in answers.into_iter().enumerate() {
        assert_eq!(body, format!("/p{n}"));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn pipelined_requests_left_unanswered_are_requeued() {
    // Each connection answers three requests, the third with `Connection: close`, and
    // ignores whatever else was pipelined behind them, closing gracefully (half-close,
    // drain) so that no reset destroys the answers it gave.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                for n in 1..=3 {
                    let Some(head) = read_request(&mut stream).await else {
                        return;
                    };
                    let path = head.split(' ').nth(1).unwrap().to_string();
                    let close = if n == 3 { "Connection: close\r\n" } else { "" };
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{close}\r\n{path}",
                        path.len()
                    );
                    stream.write_all(response.as_bytes()).await.unwrap();
                }
                let _ = stream.shutdown().await;
                let mut sink = [0u8; 4096];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    let pipelined = one_pipelined_connection(8);
    let urls = (0..10).map(|n| format!("http://{addr}/r{n}")).collect();
    let answers = fetch_concurrently(&pipelined, urls).await;
    for (n, (_, body, _)) in answers.into_iter().enumerate() {
        assert_eq!(
            body,
            format!("/r{n}"),
            "every request answered, by its own response"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4, "3 + 3 + 3 + 1 answers");
    assert!(
        pipelined.stats().retries > 0,
        "some requests were re-queued"
    );
}

#[tokio::test]
async fn a_pipelined_request_is_written_while_earlier_responses_are_awaited() {
    // After a first exchange confirms the connection persists, the server withholds the
    // answer to /slow until /next has arrived on the same connection: the client must
    // write /next without waiting for /slow's response, or neither is ever answered.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (slow_read, slow_was_read) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let answer = |path: &str| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
                path.len()
            )
        };
        let first = read_request(&mut stream).await.unwrap();
        assert!(first.starts_with("GET /first "));
        stream.write_all(answer("/first").as_bytes()).await.unwrap();
        let slow = read_request(&mut stream).await.unwrap();
        assert!(slow.starts_with("GET /slow "));
        slow_read.send(()).unwrap();
        let next = read_request(&mut stream).await.unwrap();
        assert!(next.starts_with("GET /next "));
        let both = answer("/slow") + &answer("/next");
        stream.write_all(both.as_bytes()).await.unwrap();
        let mut sink = [0u8; 64];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let pipelined = client(Mode::Pipeline { depth: 4 });
    assert_eq!(
        fetch(&pipelined, &format!("http://{addr}/first")).await.1,
        "/first"
    );
    let slow = tokio::spawn({
        let pipelined = pipelined.clone();
        async move { fetch(&pipelined, &format!("http://{addr}/slow")).await }
    });
    slow_was_read.await.unwrap();
    let next = tokio::time::timeout(
        Duration::from_secs(10),
        fetch(&pipelined, &format!("http://{addr}/next")),
    )
    .await
    .expect("/next was written while /slow's answer was awaited");
    let slow = slow.await.unwrap();
    assert_eq!((slow.1, next.1), ("/slow".into(), "/next".into()));
    assert_eq!(slow.2.connection, next.2.connection, "one connection");
}

#[tokio::test]
async fn expect_100_continue_from_the_client_side() {
    use hopline::conn::{ClientConfig, ClientConn, ContinueOutcome, Persistence};
    use hopline::wire::OutgoingFraming;
    let server = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let mut headers = http::HeaderMap::new();
    headers.insert("expect", http::HeaderValue::from_static("100-continue"));
    let mut conn = ClientConn::connect(
        server.addr,
        1,
        ClientConfig::default(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    // /echo reads the body, so the server invites it with 100 Continue.
    conn.write_head(
        &Method::POST,
        b"/echo",
        Some("t"),
        &headers,
        OutgoingFraming::Length(5),
        Persistence::KeepAlive,
    )
    .unwrap();
    conn.flush().await.unwrap();
    assert!(matches!(
        conn.await_continue().await.unwrap(),
        ContinueOutcome::SendBody
    ));
    conn.write_body(Bytes::from_static(b"hello")).await.unwrap();
    conn.finish_body(None);
    conn.flush().await.unwrap();
    let head = conn.read_head().await.unwrap();
    assert_eq!(head.status, 200);
    let mut body = Vec::new();
    while let Some(frame) = conn.read_frame().await.unwrap() {
        body.extend_from_slice(&frame.into_data().unwrap());
    }
    assert!(body.ends_with(b"hello"));
    assert!(conn.reusable().is_ok());

    // `/` does not read bodies: the server answers at once, and the body is never sent.
    conn.write_head(
        &Method::POST,
        b"/",
        Some("t"),
        &headers,
        OutgoingFraming::Length(5),
        Persistence::KeepAlive,
    )
    .unwrap();
    conn.flush().await.unwrap();
    match conn.await_continue().await.unwrap() {
        ContinueOutcome::Final(head) => assert_eq!(head.status, 405),
        ContinueOutcome::SendBody => panic!("the server should answer without inviting the body"),
    }
    conn.abandon_body();
    conn.discard_body().await.unwrap();
    assert_eq!(
        conn.reusable(),
        Err(hopline::conn::NotReusable::ServerClose)
    );
}

#[tokio::test]
async fn head_responses_have_no_body_and_keep_the_connection() {
    let server = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let client = client(Mode::KeepAlive);
    let request = Request::head(format!("http://{}/bytes/1000", server.addr))
        .body(Body::empty())
        .unwrap();
    let response = client.send(request).await.unwrap();
    assert_eq!(response.headers()["content-length"], "1000");
    assert_eq!(response.into_body().bytes(u64::MAX).await.unwrap().len(), 0);
    let (_, body, exchange) = fetch(&client, &format!("http://{}/bytes/3", server.addr)).await;
    assert_eq!(body, "abc");
    assert!(
        exchange.reused,
        "the HEAD response left the connection usable"
    );
}

#[tokio::test(start_paused = true)]
async fn an_origins_unadvertised_idle_timeout_is_learned_and_no_request_races_it() {
    // The origin closes idle connections after 2 s and does not say so.
    let mut origin_config = ServerConfig::default();
    origin_config.keepalive_timeout = Duration::from_secs(2);
    origin_config.park_idle_after = None;
    let server = TestServer::start(Origin::new(), origin_config).await;
    let keep = client(Mode::KeepAlive);
    let url = format!("http://{}/", server.addr);
    // Three closes seen at the same age teach the pool.
    for _ in 0..4 {
        assert_eq!(fetch(&keep, &url).await.0, 200);
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    let learned = keep.pool().learned_idle_timeout().expect("learned");
    assert!(
        learned >= Duration::from_secs(2) && learned < Duration::from_millis(2100),
        "{learned:?}"
    );
    // From now on no request races the origin's close: at gaps longer than its timeout
    // (the pool retires the connection first) ...
    let before = (keep.stats().retries, keep.pool().stats());
    for _ in 0..5 {
        assert_eq!(fetch(&keep, &url).await.0, 200);
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    let after = (keep.stats().retries, keep.pool().stats());
    assert_eq!(after.0, before.0, "no request retried at 2.5 s gaps");
    assert_eq!(
        after.1.evicted_stale, before.1.evicted_stale,
        "no connection found closed by the origin at 2.5 s gaps"
    );
    // ... and at gaps just short of it, past the learned margin, every request goes out on
    // a connection the origin is not closing.
    let before = after;
    for _ in 0..10 {
        assert_eq!(fetch(&keep, &url).await.0, 200);
        tokio::time::sleep(Duration::from_millis(1950)).await;
    }
    let after = (keep.stats().retries, keep.pool().stats());
    assert_eq!(after.0, before.0, "no request retried");
    assert_eq!(
        after.1.evicted_stale, before.1.evicted_stale,
        "no connection found closed by the origin"
    );
    assert!(after.1.evicted_expired >= before.1.evicted_expired + 9);
}

#[tokio::test(start_paused = true)]
async fn standby_connections_are_opened_ahead_and_replaced_as_they_retire() {
    // The origin closes idle connections after 3 s.
    let mut origin_config = ServerConfig::default();
    origin_config.keepalive_timeout = Duration::from_secs(3);
    let server = TestServer::start(Origin::new(), origin_config).await;
    let client = Client::new({
        let mut options = ClientOptions::default();
        options.pool.min_idle_per_host = 2;
        options
    });
    let url = format!("http://{}/", server.addr);
    let key = hopline::pool::Key::from_uri(&url.parse().unwrap()).unwrap();
    client.keep_ready(&url.parse().unwrap()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        client.pool().idle_count(&key),
        2,
        "opened before any request"
    );
    // The first request needs no handshake.
    let (status, _, exchange) = fetch(&client, &url).await;
    assert_eq!(status, 200);
    assert!(exchange.reused);
    // The origin closes them at 3 s; the standby opens others (within its 1 s check).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut waited = Duration::ZERO;
    while client.pool().idle_count(&key) < 2 {
        assert!(waited < Duration::from_secs(2), "not replaced");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    assert!(server.snapshot().accepted >= 4, "{:?}", server.snapshot());
    // It ends with the client.
    drop(client);
    let accepted = server.snapshot().accepted;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(server.snapshot().accepted, accepted);
}

/// An upstream that answers every request with a head sent in `pieces`, `gap` apart, then
/// the body (or nothing more, if `stall`).
async fn trickling_upstream(pieces: usize, gap: Duration, stall: bool) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request).await.unwrap();
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Slow: 1\r\n\r\n";
        for piece in head.chunks(head.len().div_ceil(pieces)) {
            stream.write_all(piece).await.unwrap();
            tokio::time::sleep(gap).await;
            if stall {
                // One piece only; then the connection stays silent.
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        }
        stream.write_all(b"ok").await.unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    addr
}

#[tokio::test(start_paused = true)]
async fn a_head_arriving_in_pieces_restarts_the_read_timeout_and_a_stalled_one_times_out() {
    let options = || {
        let mut options = ClientOptions::default();
        options.conn.response_timeout = Duration::from_secs(3);
        options.conn.read_timeout = Duration::from_secs(3);
        options
    };
    // Five pieces 2 s apart: 10 s in all, never 3 s without a byte.
    let addr = trickling_upstream(5, Duration::from_secs(2), false).await;
    let started = tokio::time::Instant::now();
    let response = Client::new(options())
        .get(&format!("http://{addr}/"))
        .await
        .expect("a head that keeps arriving is waited for");
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_secs(8));
    // One piece, then silence: the read timeout runs from that piece, once (a failed read
    // is not read again as if a write had failed).
    let addr = trickling_upstream(5, Duration::from_secs(1), true).await;
    let started = tokio::time::Instant::now();
    let error = Client::new(options())
        .get(&format!("http://{addr}/"))
        .await
        .expect_err("a stalled head times out");
    assert!(error.to_string().contains("timed out"), "{error}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(5),
        "{waited:?} {error}"
    );
}

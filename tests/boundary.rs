//! The boundary other Rust code meets, over real sockets: an axum `Router` and a tower
//! layer stack served by hopline, hyper's client against a `service_fn` server, a request
//! body streamed back while it arrives (full duplex), a streamed upload through
//! `Client::send`, and `100-continue` and early answers through `Client::send`.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use common::{TestServer, ctx};
use hopline::client::{Client, ClientOptions};
use hopline::conn::{Body, Incoming, ServerConfig};
use hopline::origin::Origin;
use hopline::service::service_fn;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn client() -> Client {
    Client::new(ClientOptions::default())
}

async fn text(response: Response<Incoming>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn an_axum_router_is_served_as_it_is() {
    use axum::routing::{get, post};
    let router = axum::Router::new()
        .route(
            "/hello/{name}",
            get(
                |axum::extract::Path(name): axum::extract::Path<String>| async move {
                    format!("hello, {name}")
                },
            ),
        )
        .route(
            "/upper",
            post(|body: String| async move { body.to_uppercase() }),
        );
    let server = TestServer::start(router, ServerConfig::default()).await;
    let client = client();
    let response = client
        .get(&format!("http://{}/hello/axum", server.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(text(response).await, "hello, axum");
    let request = Request::post(format!("http://{}/upper", server.addr))
        .body(Body::from("shout"))
        .unwrap();
    assert_eq!(text(client.send(request).await.unwrap()).await, "SHOUT");
    let missing = client
        .get(&format!("http://{}/nowhere", server.addr))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn a_tower_layer_wraps_a_hopline_service() {
    use tower::ServiceBuilder;
    let inner = service_fn(|request: Request<Incoming>| async move {
        let seen = request.headers().contains_key("x-seen-by-layer");
        Ok::<_, Infallible>(Response::new(Body::from(format!("layer seen: {seen}"))))
    });
    let layered = ServiceBuilder::new()
        .map_response(|mut response: Response<Body>| {
            response
                .headers_mut()
                .insert("x-layer", HeaderValue::from_static("stamped"));
            response
        })
        .map_request(|mut request: Request<Incoming>| {
            request
                .headers_mut()
                .insert("x-seen-by-layer", HeaderValue::from_static("1"));
            request
        })
        .service(inner);
    let server = TestServer::start(layered, ServerConfig::default()).await;
    let response = client()
        .get(&format!("http://{}/", server.addr))
        .await
        .unwrap();
    assert_eq!(response.headers()["x-layer"], "stamped");
    assert_eq!(text(response).await, "layer seen: true");
}

#[tokio::test]
async fn hypers_client_talks_to_a_service_fn_server() {
    let service = service_fn(|request: Request<Incoming>| async move {
        let number = ctx(&request).number;
        let body = request.into_body().collect().await?.to_bytes();
        let answer = format!("request {number}: {} bytes", body.len());
        Ok::<_, hopline::Error>(Response::new(Body::from(answer)))
    });
    let server = TestServer::start(service, ServerConfig::default()).await;
    let hyper_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Full<Bytes>>();
    for (n, size) in [(1, 0usize), (2, 5000)] {
        let request = Request::post(format!("http://{}/", server.addr))
            .body(http_body_util::Full::new(Bytes::from(vec![b'x'; size])))
            .unwrap();
        let response = hyper_client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, format!("request {n}: {size} bytes"));
    }
}

#[tokio::test]
async fn a_request_body_returned_as_the_response_streams_both_ways() {
    // The service answers with the request body itself, before any of it has arrived: the
    // client gets the response head, then each piece back as it sends it.
    let echo = service_fn(|request: Request<Incoming>| async move {
        Ok::<_, Infallible>(Response::new(Body::from(request.into_body())))
    });
    let server = TestServer::start(echo, ServerConfig::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    for piece in ["ping-1", "ping-2", "ping-3"] {
        stream
            .write_all(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes())
            .await
            .unwrap();
        // Each piece comes back before the next is sent: full duplex.
        while !String::from_utf8_lossy(&seen).contains(piece) {
            let mut buf = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                .await
                .expect("the piece comes back while the request is still open")
                .unwrap();
            assert!(n > 0);
            seen.extend_from_slice(&buf[..n]);
        }
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
}

/// A body that yields `pieces` chunks of `size` bytes, one every millisecond.
fn trickle(pieces: usize, size: usize) -> Body {
    let (mut sender, body) = Body::channel(Some((pieces * size) as u64));
    tokio::spawn(async move {
        for i in 0..pieces {
            let chunk = Bytes::from(vec![b'a' + (i % 26) as u8; size]);
            if sender.send(chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sender.finish();
    });
    body
}

/// What `/sink` answers for the body `trickle` makes.
fn sink_answer(pieces: usize, size: usize) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for i in 0..pieces {
        for _ in 0..size {
            hash = (hash ^ u64::from(b'a' + (i % 26) as u8)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("received {} bytes, fnv1a64 {hash:016x}\n", pieces * size)
}

#[tokio::test]
async fn a_streamed_upload_arrives_intact_directly_and_through_the_proxy() {
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let proxy = TestServer::start(
        hopline::proxy::Proxy::new(hopline::proxy::ProxyConfig::reverse(
            hopline::proxy::upstream::Upstreams::single(origin.addr),
        )),
        ServerConfig::default(),
    )
    .await;
    let client = client();
    for entry in [origin.addr, proxy.addr] {
        let request = Request::post(format!("http://{entry}/sink"))
            .body(trickle(40, 3000))
            .unwrap();
        let response = client.send(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(text(response).await, sink_answer(40, 3000));
    }
}

/// A raw origin that reads a request head, then plays `script` with it.
async fn scripted_origin<F, Fut>(script: F) -> std::net::SocketAddr
where
    F: Fn(TcpStream, String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            tokio::spawn(script(stream, String::from_utf8_lossy(&head).into_owned()));
        }
    });
    addr
}

fn expecting(addr: std::net::SocketAddr, body: Body) -> Request<Body> {
    Request::builder()
        .method(Method::PUT)
        .uri(format!("http://{addr}/upload"))
        .header("expect", "100-continue")
        .body(body)
        .unwrap()
}

#[tokio::test]
async fn expect_continue_sends_the_body_only_when_invited() {
    // Invited: 100 Continue, then the body, then the answer.
    let invited = scripted_origin(|mut stream, _head| async move {
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .unwrap();
        let mut body = [0u8; 5];
        stream.read_exact(&mut body).await.unwrap();
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}",
            String::from_utf8_lossy(&body)
        );
        stream.write_all(answer.as_bytes()).await.unwrap();
    })
    .await;
    let response = client()
        .send(expecting(invited, Body::from("hello")))
        .await
        .unwrap();
    assert_eq!(text(response).await, "hello");

    // Refused at once: the final answer comes back and the body is never sent.
    let refused = scripted_origin(|mut stream, _head| async move {
        stream
            .write_all(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
        assert!(rest.is_empty(), "the body was sent anyway: {rest:?}");
    })
    .await;
    let response = client()
        .send(expecting(refused, Body::from("hello")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::EXPECTATION_FAILED);

    // No answer at all: after the expect-continue timeout the body goes anyway.
    let silent = scripted_origin(|mut stream, _head| async move {
        let mut body = [0u8; 5];
        stream.read_exact(&mut body).await.unwrap();
        stream
            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
    })
    .await;
    let mut options = ClientOptions::default();
    options.conn.expect_continue_timeout = Duration::from_millis(50);
    let response = Client::new(options)
        .send(expecting(silent, Body::from("hello")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn an_early_answer_stops_the_upload_and_is_returned() {
    // RFC 9112 §9.5: the origin answers 413 after the head, stops reading and closes;
    // the client returns that answer rather than a write error.
    let early = scripted_origin(|mut stream, _head| async move {
        stream
            .write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    })
    .await;
    let request = Request::post(format!("http://{early}/"))
        .body(trickle(2000, 16 * 1024))
        .unwrap();
    let response = client().send(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(text(response).await, "big!");
}

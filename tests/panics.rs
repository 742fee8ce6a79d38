//! A panicking handler over real sockets: in its `call`, in its future, in its response
//! body before and after the head left. Each fails its own request (500 while nothing was
//! sent, else the response is cut short), is counted, and the server goes on serving —
//! over HTTP/1.1 (the connection closes) and HTTP/2 (only the stream fails).

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use common::{RawClient, TestServer};
use hopline::Body;
use hopline::client::{Client, ClientOptions, HopProtocol};
use hopline::conn::{CloseReason, Hooks, Incoming, LiveConns, ServerConfig};
use hopline::metrics::Metrics;
use hopline::server::ListenerConfig;
use hopline::service::service_fn;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;

/// A body that sends `before` bytes, then panics: at once if `before` is empty, else on
/// its third poll after them (the first two are `Pending`: the connection polls once
/// while writing the head, then from its task, and what came before leaves meanwhile).
struct PanicBody {
    before: Option<Bytes>,
    pendings: u8,
}

impl http_body::Body for PanicBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.before.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if self.pendings < 2 {
            self.pendings += 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        panic!("the body broke");
    }
}

/// `/call` panics in `call`, `/future` in the future, `/body` in the body before any of it,
/// `/body-later` after 5 bytes of it left; anything else answers "ok".
fn faulty() -> impl common::TestService {
    service_fn(|request: Request<Incoming>| {
        let path = request.uri().path().to_string();
        if path == "/call" {
            panic!("call broke");
        }
        async move {
            let body = match path.as_str() {
                "/future" => panic!("the future broke"),
                "/body" => Body::new(PanicBody {
                    before: None,
                    pendings: 2,
                }),
                "/body-later" => Body::new(PanicBody {
                    before: Some(Bytes::from_static(b"part1")),
                    pendings: 0,
                }),
                _ => Body::from("ok"),
            };
            Ok::<_, Infallible>(Response::new(body))
        }
    })
}

async fn start() -> (TestServer, Arc<Metrics>) {
    let live = LiveConns::new();
    let metrics = Arc::new(Metrics::new(live.clone()));
    let hooks = Hooks {
        live: Some(live),
        observer: Some(metrics.observer()),
    };
    let server = TestServer::start_hooked(
        faulty(),
        ServerConfig::default(),
        ListenerConfig::default(),
        hooks,
    )
    .await;
    (server, metrics)
}

fn panics_counted(metrics: &Metrics) -> u64 {
    let text = metrics.encode();
    let line = text
        .lines()
        .find(|line| line.starts_with("hopline_handler_panics_total "))
        .unwrap_or_else(|| panic!("no panic counter in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn http1_a_panic_before_the_response_is_a_500_and_the_server_goes_on() {
    let (server, metrics) = start().await;
    for path in ["/call", "/future", "/body"] {
        let mut client = RawClient::connect(server.addr).await;
        client.get(path, "").await;
        let response = client.response().await;
        assert_eq!(response.status, 500, "{path}");
        assert!(response.closes(), "{path}: the connection closes");
        client.expect_eof().await;
        // The server still serves, on a new connection.
        let mut client = RawClient::connect(server.addr).await;
        client.get("/ok", "").await;
        let response = client.response().await;
        assert_eq!((response.status, response.text()), (200, "ok".into()));
    }
    let closed = server.closed(6).await;
    assert_eq!(closed.closed(CloseReason::HandlerPanicked), 3);
    assert_eq!(panics_counted(&metrics), 3);
}

#[tokio::test]
async fn http1_a_panic_mid_body_cuts_the_response_short() {
    let (server, metrics) = start().await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/body-later", "").await;
    let received = String::from_utf8(client.read_to_end().await).unwrap();
    assert!(received.starts_with("HTTP/1.1 200 OK\r\n"), "{received}");
    assert!(
        received.contains("transfer-encoding: chunked\r\n") && received.ends_with("part1\r\n"),
        "a chunked body without its last chunk, so the client knows it is incomplete: {received}"
    );
    let mut client = RawClient::connect(server.addr).await;
    client.get("/ok", "").await;
    assert_eq!(client.response().await.status, 200);
    assert_eq!(
        server.closed(1).await.closed(CloseReason::HandlerPanicked),
        1
    );
    assert_eq!(panics_counted(&metrics), 1);
}

#[tokio::test]
async fn http2_a_panic_fails_its_stream_only() {
    let (server, metrics) = start().await;
    let mut options = ClientOptions::default();
    options.protocol = HopProtocol::Http2;
    let client = Client::new(options);
    let get = |path: &str| {
        Request::get(format!("http://{}{path}", server.addr))
            .body(Body::empty())
            .unwrap()
    };
    for path in ["/call", "/future", "/body"] {
        let response = client.send(get(path)).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{path}"
        );
    }
    let response = client
        .send(get("/body-later"))
        .await
        .expect("the head of /body-later");
    assert_eq!(response.status(), StatusCode::OK);
    let error = response.into_body().collect().await.unwrap_err();
    let hopline::error::ErrorKind::Http2(reset) = &error.kind else {
        panic!("a reset stream, not {error}");
    };
    assert_eq!(
        reset.reason(),
        Some(h2::Reason::INTERNAL_ERROR),
        "reset mid-body, as a server error"
    );
    let response = client.send(get("/ok")).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ok");
    assert_eq!(panics_counted(&metrics), 4);
    let snapshot = server.snapshot();
    assert_eq!(
        (snapshot.accepted, snapshot.closed_total()),
        (1, 0),
        "every request went over the one connection, still open"
    );
}

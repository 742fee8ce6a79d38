//! The proxy in every protocol combination, hop by hop: HTTP/1.1 or HTTP/2 towards the
//! client, HTTP/1.1 or HTTP/2 towards the origin, each chosen on its own. The hop-by-hop
//! rules hold both ways in each, and what HTTP/2 cannot carry into HTTP/1.1 is refused,
//! never forwarded.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::h2::{self as raw, RawH2};
use common::{RawClient, TestServer, answer_with};
use hopline::client::{Client, ClientOptions, HopProtocol};
use hopline::conn::{Body, Incoming, ServerConfig};
use hopline::proxy::upstream::Upstreams;
use hopline::proxy::{Proxy, ProxyConfig};
use http::{HeaderValue, Request, Response, Version};
use http_body_util::BodyExt;
use tokio::net::TcpStream;

/// An origin that says what reached it: version, the request's fields, its body; and
/// answers with HTTP/1.x-only fields of its own.
async fn telling_origin(request: Request<Incoming>) -> Response<Body> {
    // The authority the request names: `:authority` over HTTP/2, `Host` over HTTP/1.1.
    let authority = request
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            let host = request.headers().get("host")?;
            Some(host.to_str().ok()?.to_string())
        });
    let mut seen = format!(
        "{:?} {}\nauthority: {}\n",
        request.version(),
        request.uri().path(),
        authority.unwrap_or_default()
    );
    for (name, value) in request.headers() {
        seen.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
    }
    let body = request.into_body().collect().await.unwrap().to_bytes();
    seen.push_str(&format!("body: {}\n", String::from_utf8_lossy(&body)));
    let mut response = Response::new(Body::from(seen));
    for (name, value) in [
        ("connection", "x-bar"),
        ("x-bar", "1"),
        ("keep-alive", "timeout=5"),
        ("x-kept", "yes"),
    ] {
        response
            .headers_mut()
            .append(name, HeaderValue::from_static(value));
    }
    response
}

async fn proxy(origin: SocketAddr, upstream: HopProtocol) -> (TestServer, Client) {
    let mut config = ProxyConfig::reverse(Upstreams::single(origin));
    config.upstream.protocol = upstream;
    let proxy = Proxy::new(config);
    let client = proxy.client();
    (
        TestServer::start(proxy, ServerConfig::default()).await,
        client,
    )
}

/// What came back to the client: status, response fields as `name: value` lines, and
/// the origin's account.
struct Seen {
    fields: String,
    origin: String,
}

async fn through_h1(proxy: SocketAddr) -> Seen {
    let mut client = RawClient::connect(proxy).await;
    client
        .send(
            b"POST /up HTTP/1.1\r\nHost: front.test\r\nConnection: X-Secret, keep-alive\r\n\
              X-Secret: s\r\nKeep-Alive: timeout=9\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n\
              \r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await;
    let response = client.response().await;
    assert_eq!(response.status, 200);
    let fields = response
        .headers
        .iter()
        .map(|(n, v)| format!("{}: {v}\n", n.to_ascii_lowercase()))
        .collect();
    Seen {
        fields,
        origin: response.text(),
    }
}

async fn through_h2(proxy: SocketAddr) -> Seen {
    let mut options = ClientOptions::default();
    options.protocol = HopProtocol::Http2;
    let client = Client::new(options);
    let request = Request::post(format!("http://{proxy}/up"))
        .header("host", "front.test")
        .header("te", "trailers")
        .body(Body::from("hello"))
        .unwrap();
    let response = client.send(request).await.unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    let fields = response
        .headers()
        .iter()
        .map(|(n, v)| format!("{n}: {}\n", v.to_str().unwrap()))
        .collect();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Seen {
        fields,
        origin: String::from_utf8(body.to_vec()).unwrap(),
    }
}

#[tokio::test]
async fn every_protocol_combination_forwards_with_the_hop_by_hop_rules_both_ways() {
    let origin = TestServer::start(answer_with(telling_origin), ServerConfig::default()).await;
    for (downstream, upstream) in [
        (Version::HTTP_11, HopProtocol::Http1),
        (Version::HTTP_11, HopProtocol::Http2),
        (Version::HTTP_2, HopProtocol::Http1),
        (Version::HTTP_2, HopProtocol::Http2),
    ] {
        let case = format!("{downstream:?} -> {upstream:?}");
        let (proxy, upstream_client) = proxy(origin.addr, upstream).await;
        let seen = match downstream {
            Version::HTTP_2 => through_h2(proxy.addr).await,
            _ => through_h1(proxy.addr).await,
        };
        let origin_version = match upstream {
            HopProtocol::Http2 => "HTTP/2.0",
            _ => "HTTP/1.1",
        };
        assert!(
            seen.origin.starts_with(&format!("{origin_version} /up\n")),
            "{case}: {}",
            seen.origin
        );
        assert!(
            seen.origin.contains("body: hello\n"),
            "{case}: {}",
            seen.origin
        );
        assert!(
            seen.origin.contains("authority: front.test\n"),
            "{case}: {}",
            seen.origin
        );
        let via = if downstream == Version::HTTP_2 {
            "via: 2 hopline"
        } else {
            "via: 1.1 hopline"
        };
        assert!(seen.origin.contains(via), "{case}: {}", seen.origin);
        // Request direction: nothing meant for the client's connection reached the origin.
        for name in ["connection:", "x-secret:", "keep-alive:", "te:"] {
            assert!(
                !seen.origin.contains(&format!("\n{name}")),
                "{case}: {name} reached the origin"
            );
        }
        // The body is framed again for the next hop: chunked on HTTP/1.1 when its length
        // is unknown (the HTTP/1.1 client sent it chunked; the HTTP/2 one said its
        // length), DATA frames on HTTP/2, where `Transfer-Encoding` must not appear.
        let chunked = seen.origin.contains("\ntransfer-encoding: chunked");
        assert_eq!(
            chunked,
            upstream == HopProtocol::Http1 && downstream == Version::HTTP_11,
            "{case}"
        );
        // Response direction.
        for name in ["connection:", "x-bar:", "keep-alive:"] {
            let leaked = seen.fields.lines().any(|l| l.starts_with(name))
                && !(name == "connection:"
                    && downstream == Version::HTTP_11
                    && seen.fields.contains("connection: keep-alive"));
            assert!(
                !leaked,
                "{case}: {name} reached the client:\n{}",
                seen.fields
            );
        }
        assert!(seen.fields.contains("x-kept: yes"), "{case}");
        assert_eq!(upstream_client.stats().connections, 1, "{case}");
    }
}

#[tokio::test]
async fn an_http2_upstream_carries_many_client_connections_on_one_connection() {
    let origin = TestServer::start(answer_with(telling_origin), ServerConfig::default()).await;
    let (proxy, upstream_client) = proxy(origin.addr, HopProtocol::Http2).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| tokio::spawn(through_h1(proxy.addr)))
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().origin.starts_with("HTTP/2.0 /up"));
    }
    assert_eq!(
        upstream_client.stats().connections,
        1,
        "16 clients, one upstream connection"
    );
    assert_eq!(origin.snapshot().accepted, 1);
}

#[tokio::test]
async fn what_http1_cannot_carry_is_refused_at_the_http2_edge_never_forwarded() {
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    let origin = TestServer::start(
        answer_with(move |request: Request<Incoming>| {
            let counter = counter.clone();
            async move {
                // Counted only when a whole request arrived.
                if request.into_body().collect().await.is_ok() {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Response::new(Body::from("ok"))
            }
        }),
        ServerConfig::default(),
    )
    .await;
    let (proxy, _) = proxy(origin.addr, HopProtocol::Http1).await;
    // Field values that would split or end an HTTP/1.1 head, a pseudo-header out of
    // place, a connection-specific field.
    let shapes: [&[(&[u8], &[u8])]; 5] = [
        &[(b"x-a", b"1\r\nx-injected: 1")],
        &[(b"x-a", b"1\nx-injected: 1")],
        &[(b"x-a", b"1\0")],
        &[(b"x-a", b"1"), (b":path", b"/again")],
        &[(b"transfer-encoding", b"chunked")],
    ];
    for (i, extra) in shapes.iter().enumerate() {
        let mut h2 = RawH2::client(TcpStream::connect(proxy.addr).await.unwrap()).await;
        let block = raw::get_block("/", extra);
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
            .unwrap();
        assert_ne!(raw::status(&answer), Some(200), "shape {i}: {answer:?}");
    }
    // A body longer than its Content-Length: the stream is reset, and the origin never
    // gets a complete request.
    let mut h2 = RawH2::client(TcpStream::connect(proxy.addr).await.unwrap()).await;
    let block = raw::post_block(b"3");
    h2.send(&raw::frame(raw::HEADERS, raw::END_HEADERS, 1, &block))
        .await;
    h2.send(&raw::frame(raw::DATA, raw::END_STREAM, 1, b"abcdefgh"))
        .await;
    let answer = h2
        .until(|f| f.stream == 1 && f.kind == raw::RST_STREAM)
        .await;
    assert!(answer.is_some());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        reached.load(Ordering::Relaxed),
        0,
        "nothing malformed reached the origin"
    );
}

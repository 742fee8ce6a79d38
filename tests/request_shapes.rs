//! Request shapes found answered wrongly by independent testing (issue 10), each through
//! `serve`'s origin and through the proxy in front of it: values written into `Forwarded`
//! cannot inject elements, the asterisk-form is for OPTIONS only, an empty `Host` without an
//! authority in the target is refused, CONNECT to an origin is 405, encoded NUL and `/` in a
//! file path are 400, and a half-close after a whole request is answered, not taken for an
//! abort.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{RawClient, RawResponse, TestServer, TestService, ctx};
use hopline::client::ClientOptions;
use hopline::conn::{Body, Incoming, ServerConfig};
use hopline::origin::Origin;
use hopline::proxy::upstream::Upstreams;
use hopline::proxy::{Proxy, ProxyConfig};
use hopline::service::service_fn;
use http::{Request, Response};

/// An origin that answers every request with its head exactly as received, and counts them.
#[derive(Clone, Default)]
struct HeadEcho {
    seen: Arc<AtomicUsize>,
}

impl HeadEcho {
    fn seen(&self) -> usize {
        self.seen.load(Ordering::Relaxed)
    }
}

impl HeadEcho {
    fn origin(&self) -> impl TestService {
        let seen = self.seen.clone();
        service_fn(move |request: Request<Incoming>| {
            seen.fetch_add(1, Ordering::Relaxed);
            let head = ctx(&request).raw_head.clone();
            async move { Ok::<_, std::convert::Infallible>(Response::new(Body::from(head))) }
        })
    }
}

async fn proxy_in_front_of(origin: SocketAddr) -> TestServer {
    let mut config = ProxyConfig::reverse(Upstreams::single(origin));
    config.upstream = ClientOptions::default();
    TestServer::start(Proxy::new(config), ServerConfig::default()).await
}

/// Sends `raw` on a new connection and reads one response.
async fn exchange(addr: SocketAddr, raw: &str) -> RawResponse {
    let mut client = RawClient::connect(addr).await;
    client.send(raw.as_bytes()).await;
    client.response().await
}

/// The value of field `name` in a raw request head.
fn field<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

#[tokio::test]
async fn a_host_cannot_inject_forwarded_elements_or_parameters() {
    let origin = TestServer::start(HeadEcho::default().origin(), ServerConfig::default()).await;
    let proxy = proxy_in_front_of(origin.addr).await;
    let cases = [
        (
            "a,for=6.6.6.6",
            r#"for=127.0.0.1;proto=http;host="a,for=6.6.6.6""#,
        ),
        (
            "a;proto=https",
            r#"for=127.0.0.1;proto=http;host="a;proto=https""#,
        ),
        (
            "plain.example",
            "for=127.0.0.1;proto=http;host=plain.example",
        ),
    ];
    for (host, expected) in cases {
        let response = exchange(
            proxy.addr,
            &format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        )
        .await;
        assert_eq!(response.status, 200, "{host}");
        let head = response.text();
        assert_eq!(field(&head, "forwarded"), vec![expected], "{head}");
    }
}

#[tokio::test]
async fn the_asterisk_form_is_for_options_only() {
    let serve = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let recorder = HeadEcho::default();
    let echo = TestServer::start(recorder.origin(), ServerConfig::default()).await;
    let proxy = proxy_in_front_of(echo.addr).await;
    for method in ["GET", "POST", "HEAD", "DELETE"] {
        for entry in [serve.addr, proxy.addr] {
            let mut client = RawClient::connect(entry).await;
            client
                .send(format!("{method} * HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
                .await;
            let response = client.try_response(method == "HEAD").await.unwrap();
            assert_eq!(response.status, 400, "{method} *");
        }
    }
    // The origin answers `OPTIONS *` itself, with what it supports.
    let options = exchange(serve.addr, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(options.status, 200);
    assert!(options.header("allow").unwrap().contains("GET"));
    // The proxy forwards it as `OPTIONS *`, not as a path.
    let forwarded = exchange(proxy.addr, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(forwarded.status, 200);
    assert!(
        forwarded.text().starts_with("OPTIONS * HTTP/1.1\r\n"),
        "{}",
        forwarded.text()
    );
    assert_eq!(recorder.seen(), 1, "only OPTIONS * reached the origin");
    // A forward proxy sends `OPTIONS http://host` (no path) to the origin as `OPTIONS *`
    // (RFC 9112 §3.2.4), and `OPTIONS http://host/` as `OPTIONS /`.
    let forward =
        TestServer::start(Proxy::new(ProxyConfig::forward()), ServerConfig::default()).await;
    for (target, expected) in [
        (format!("http://{}", echo.addr), "OPTIONS * HTTP/1.1\r\n"),
        (format!("http://{}/", echo.addr), "OPTIONS / HTTP/1.1\r\n"),
    ] {
        let answer = exchange(
            forward.addr,
            &format!("OPTIONS {target} HTTP/1.1\r\nHost: {}\r\n\r\n", echo.addr),
        )
        .await;
        assert!(
            answer.text().starts_with(expected),
            "{target}: {}",
            answer.text()
        );
    }
}

#[tokio::test]
async fn an_empty_host_without_an_authority_in_the_target_is_400() {
    let recorder = HeadEcho::default();
    let echo = TestServer::start(recorder.origin(), ServerConfig::default()).await;
    let serve = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let proxy = proxy_in_front_of(echo.addr).await;
    for entry in [serve.addr, proxy.addr] {
        for raw in [
            "GET / HTTP/1.1\r\nHost: \r\n\r\n",
            "GET / HTTP/1.1\r\nHost:\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: \r\n\r\n",
        ] {
            let response = exchange(entry, raw).await;
            assert_eq!(response.status, 400, "{raw:?}");
        }
    }
    assert_eq!(recorder.seen(), 0, "nothing was forwarded");
    // With the authority in the target, an empty Host is what RFC 9112 §3.2 asks for.
    let absolute = exchange(serve.addr, "GET http://a.test/ HTTP/1.1\r\nHost: \r\n\r\n").await;
    assert_eq!(absolute.status, 200);
}

#[tokio::test]
async fn connect_to_an_origin_is_405_with_allow() {
    let serve = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let mut client = RawClient::connect(serve.addr).await;
    client
        .send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .await;
    let response = client.response().await;
    assert_eq!(response.status, 405);
    assert!(response.header("allow").unwrap().contains("GET"));
    // Not a tunnel: the connection carries the next request as HTTP.
    client.get("/", "").await;
    assert_eq!(client.response().await.text(), "Hello, world!");
}

#[tokio::test]
async fn encoded_nul_slash_and_escapes_above_the_root_in_a_file_path_are_400() {
    let root = std::env::temp_dir().join(format!("hopline-shapes-{}", std::process::id()));
    std::fs::create_dir_all(root.join("dir")).unwrap();
    std::fs::write(root.join("path"), "file").unwrap();
    std::fs::write(root.join("dir/x.html"), "x").unwrap();
    let serve = TestServer::start(Origin::with_root(&root), ServerConfig::default()).await;
    for (target, status) in [
        ("/path%00.html", 400),
        ("/path%00", 400),
        ("/dir%2fx.html", 400),
        ("/dir%2Fx.html", 400),
        ("/../etc/passwd", 400),
        ("/dir/%2e%2e/%2e%2e/etc/passwd", 400),
        ("/%zz", 400),
        ("/path", 200),
        ("/dir/x.html", 200),
        ("/dir/../path", 200),
        ("/missing", 404),
    ] {
        let response = exchange(
            serve.addr,
            &format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n"),
        )
        .await;
        assert_eq!(response.status, status, "{target}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn a_half_close_after_a_whole_request_is_answered_then_closed() {
    let serve = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let proxy = proxy_in_front_of(serve.addr).await;
    for entry in [serve.addr, proxy.addr] {
        let mut client = RawClient::connect(entry).await;
        client.get("/delay/200", "").await;
        client.half_close().await;
        let response = client.response().await;
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "delayed 200 ms\n");
        client.expect_eof().await;
        // Pipelined requests before the half-close are all answered, in order.
        let mut client = RawClient::connect(entry).await;
        client
            .send(
                b"GET /delay/50 HTTP/1.1\r\nHost: a\r\n\r\nGET /bytes/3 HTTP/1.1\r\nHost: a\r\n\r\n",
            )
            .await;
        client.half_close().await;
        assert_eq!(client.response().await.text(), "delayed 50 ms\n");
        assert_eq!(client.response().await.text(), "abc");
        client.expect_eof().await;
    }
}

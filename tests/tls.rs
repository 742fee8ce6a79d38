//! TLS on both sides of a hop, over real sockets, with certificates made at test time:
//! keep-alive and pipelining over TLS, SNI, resumption, pool keys per server name,
//! certificate reload, the handshake under the header timeout, plaintext and garbage on the
//! TLS port, the proxy terminating and originating TLS.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::tls::{Handshakes, Pki, raw_client};
use common::{TestServer, answer_with, ctx};
use hopline::Body;
use hopline::client::{Client, ClientOptions, Mode};
use hopline::conn::{CloseReason, ConnSide, Hooks, Incoming, LiveConns, ServerConfig};
use hopline::error::ErrorKind;
use hopline::origin::Origin;
use hopline::proxy::upstream::{Balance, Upstreams};
use hopline::proxy::{Proxy, ProxyConfig};
use hopline::transport::tls::{ServerTls, TlsConnector};
use http::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The built-in origin over TLS with `acceptor`, reporting to `hooks`.
async fn tls_origin(acceptor: hopline::transport::tls::TlsAcceptor, hooks: Hooks) -> TestServer {
    TestServer::start_tls(Origin::new(), ServerConfig::default(), acceptor, hooks).await
}

fn observed(handshakes: &Arc<Handshakes>) -> Hooks {
    Hooks {
        live: None,
        observer: Some(handshakes.clone()),
    }
}

/// A client trusting `pki`, in `mode`, reporting handshakes to `handshakes`.
fn client(pki: &Pki, mode: Mode, handshakes: &Arc<Handshakes>) -> Client {
    let mut options = ClientOptions::with_mode(mode);
    options.tls = Some(pki.connector());
    options.conn.hooks = observed(handshakes);
    Client::new(options)
}

async fn body(response: Response<Incoming>) -> String {
    let bytes = response.into_body().bytes(1 << 20).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn keep_alive_and_pipelining_over_tls() {
    let pki = Pki::new();
    let server_side = Handshakes::new();
    let acceptor = pki.acceptor(vec![pki.leaf(&["localhost"])]);
    let server = tls_origin(acceptor, observed(&server_side)).await;
    let url = format!("https://localhost:{}/bytes/100", server.addr.port());

    let client_side = Handshakes::new();
    let keep_alive = client(&pki, Mode::KeepAlive, &client_side);
    for _ in 0..5 {
        let response = keep_alive.get(&url).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(body(response).await.len(), 100);
    }
    assert_eq!(
        keep_alive.stats().connections,
        1,
        "five requests, one connection"
    );

    let pipelined = client(&pki, Mode::Pipeline { depth: 8 }, &client_side);
    let fetches = (0..16).map(|i| {
        let (client, url) = (pipelined.clone(), url.replace("100", &(10 + i).to_string()));
        tokio::spawn(async move { body(client.get(&url).await.unwrap()).await.len() })
    });
    for (i, fetch) in fetches.enumerate() {
        assert_eq!(fetch.await.unwrap(), 10 + i, "responses in request order");
    }
    assert!(pipelined.stats().connections <= 2);

    // Raw pipelining: three requests in one TLS record, three answers in order.
    let mut raw = raw_client(server.addr, &pki.connector(), "localhost").await;
    raw.send(
        b"GET /bytes/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /bytes/2 HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /bytes/3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    for n in 1..=3 {
        assert_eq!(raw.response().await.body.len(), n);
    }
    raw.expect_eof().await;
    let (server_total, _) = server_side.count(ConnSide::Downstream);
    assert!(
        server_total >= 3,
        "every connection shook hands: {server_total}"
    );
}

#[tokio::test]
async fn sni_picks_the_certificate_for_the_name_asked() {
    let pki = Pki::new();
    let acceptor = pki.acceptor(vec![pki.leaf(&["a.test"]), pki.leaf(&["b.test"])]);
    let server = tls_origin(acceptor, Hooks::default()).await;
    for name in ["a.test", "b.test"] {
        let mut settings = pki.client_settings();
        settings.server_name = Some(name.into());
        let connector = TlsConnector::new(&settings).unwrap();
        // The handshake verifies the certificate for `name`: it succeeds only if the
        // server chose the one for that name.
        let mut raw = raw_client(server.addr, &connector, "127.0.0.1").await;
        raw.get("/", "").await;
        assert_eq!(raw.response().await.status, 200, "{name}");
    }
    // A name no certificate covers gets the first one, which does not verify for it.
    let mut settings = pki.client_settings();
    settings.server_name = Some("c.test".into());
    let connector = TlsConnector::new(&settings).unwrap();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let failure = connector.connect(tcp, "127.0.0.1").await.unwrap_err();
    assert!(failure.is_certificate(), "{failure}");
}

#[tokio::test]
async fn a_second_connection_resumes_the_session() {
    let pki = Pki::new();
    let server_side = Handshakes::new();
    let acceptor = pki.acceptor(vec![pki.leaf(&["localhost"])]);
    let server = tls_origin(acceptor, observed(&server_side)).await;
    let client_side = Handshakes::new();
    let close = client(&pki, Mode::Close, &client_side);
    let url = format!("https://localhost:{}/", server.addr.port());
    for _ in 0..3 {
        assert_eq!(body(close.get(&url).await.unwrap()).await, "Hello, world!");
    }
    assert_eq!(
        client_side.count(ConnSide::Upstream),
        (3, 2),
        "full, then resumed"
    );
    assert_eq!(server_side.count(ConnSide::Downstream), (3, 2));
}

#[tokio::test]
async fn the_pool_never_shares_a_connection_across_server_names() {
    let pki = Pki::new();
    let acceptor = pki.acceptor(vec![pki.leaf(&["localhost", "127.0.0.1"])]);
    let server = tls_origin(acceptor, Hooks::default()).await;
    let port = server.addr.port();
    let handshakes = Handshakes::new();
    let client = client(&pki, Mode::KeepAlive, &handshakes);
    for host in ["localhost", "127.0.0.1", "localhost", "127.0.0.1"] {
        let response = client
            .get(&format!("https://{host}:{port}/"))
            .await
            .unwrap();
        assert_eq!(body(response).await, "Hello, world!");
    }
    // Same address, two names: two connections, each reused once.
    assert_eq!(client.stats().connections, 2);
    let names: Vec<String> = handshakes
        .done
        .lock()
        .unwrap()
        .iter()
        .map(|(_, h)| h.info.server_name.clone().unwrap())
        .collect();
    assert_eq!(names, ["localhost", "127.0.0.1"]);
    // And http:// and https:// to the same host and port are different origins.
    let plain = client
        .get(&format!("http://localhost:{port}/"))
        .await
        .unwrap();
    assert_eq!(
        plain.status(),
        400,
        "plain HTTP on the TLS port is answered 400"
    );
}

#[tokio::test]
async fn a_reload_swaps_the_certificate_for_new_connections_only() {
    let pki = Pki::new();
    let acceptor = pki.acceptor(vec![pki.leaf(&["a.test"])]);
    let server = tls_origin(acceptor.clone(), Hooks::default()).await;
    let named = |name: &str| {
        let mut settings = pki.client_settings();
        settings.server_name = Some(name.into());
        TlsConnector::new(&settings).unwrap()
    };
    let mut old = raw_client(server.addr, &named("a.test"), "127.0.0.1").await;
    old.get("/", "").await;
    assert_eq!(old.response().await.status, 200);

    acceptor
        .reload(&ServerTls::new(vec![pki.leaf(&["b.test"])]))
        .unwrap();
    // A reload that fails (no such file) changes nothing.
    let missing = hopline::transport::tls::CertificateFiles {
        cert: pki.dir.join("missing.pem"),
        key: pki.dir.join("missing.key"),
    };
    assert!(acceptor.reload(&ServerTls::new(vec![missing])).is_err());

    old.get("/", "").await;
    assert_eq!(
        old.response().await.status,
        200,
        "the open connection keeps working"
    );
    let mut new = raw_client(server.addr, &named("b.test"), "127.0.0.1").await;
    new.get("/", "").await;
    assert_eq!(
        new.response().await.status,
        200,
        "new connections get the new one"
    );
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let failure = named("a.test").connect(tcp, "127.0.0.1").await.unwrap_err();
    assert!(failure.is_certificate(), "{failure}");
}

#[tokio::test]
async fn a_stalled_handshake_is_cut_at_the_header_timeout() {
    let pki = Pki::new();
    let handshakes = Handshakes::new();
    let mut config = ServerConfig::default();
    config.header_timeout = Duration::from_millis(300);
    let acceptor = pki.acceptor(vec![pki.leaf(&["localhost"])]);
    let server =
        TestServer::start_tls(Origin::new(), config, acceptor, observed(&handshakes)).await;
    // Silent, and half a ClientHello record header then silence.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let started = std::time::Instant::now();
    for stream in [&mut silent, &mut partial] {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the server closes a stalled handshake");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let stats = server.closed(2).await;
    assert_eq!(stats.closed(CloseReason::TlsHandshake), 2);
    assert_eq!(
        handshakes.failures(ConnSide::Downstream),
        ["timeout", "timeout"]
    );
}

#[tokio::test]
async fn plaintext_and_garbage_on_the_tls_port_are_answered_or_closed() {
    let pki = Pki::new();
    let handshakes = Handshakes::new();
    let acceptor = pki.acceptor(vec![pki.leaf(&["localhost"])]);
    let server = tls_origin(acceptor, observed(&handshakes)).await;
    let mut plain = common::RawClient::connect(server.addr).await;
    plain.get("/", "").await;
    let response = plain.response().await;
    assert_eq!(response.status, 400);
    assert!(
        response
            .text()
            .contains("plain HTTP request on an HTTPS port")
    );
    plain.expect_eof().await;

    let garbage: [&[u8]; 3] = [
        b"\x00\x01\x02\x03garbage\r\n\r\n",
        // A handshake record whose body is not a ClientHello.
        b"\x16\x03\x01\x00\x05\xff\xff\xff\xff\xff",
        // An alert record before any handshake.
        b"\x15\x03\x03\x00\x02\x02\x28",
    ];
    for bytes in garbage {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("closed, not left hanging");
        // A TLS alert at most, then the close (or a reset).
        assert!(read.is_err() || answer.len() < 16, "{answer:?}");
    }
    let stats = server.closed(4).await;
    assert_eq!(stats.closed(CloseReason::TlsHandshake), 4);
    let failures = handshakes.failures(ConnSide::Downstream);
    assert_eq!(failures[0], "plain_http");
    assert!(
        failures[1..].iter().all(|f| *f == "protocol"),
        "{failures:?}"
    );
}

#[tokio::test]
async fn certificate_failures_are_told_apart() {
    let pki = Pki::new();
    let other = Pki::new();
    let cases = [
        ("expired", pki.expired(&["localhost"]), true),
        ("self-signed", pki.self_signed(&["localhost"]), true),
        ("wrong name", pki.leaf(&["elsewhere.test"]), true),
        ("another authority", other.leaf(&["localhost"]), true),
    ];
    for (what, certificate, is_certificate) in cases {
        let acceptor = pki.acceptor(vec![certificate]);
        let server = tls_origin(acceptor, Hooks::default()).await;
        let handshakes = Handshakes::new();
        let client = client(&pki, Mode::KeepAlive, &handshakes);
        let url = format!("https://localhost:{}/", server.addr.port());
        let error = client.get(&url).await.unwrap_err();
        let ErrorKind::Tls(failure) = &error.kind else {
            panic!("{what}: not a TLS failure: {error}");
        };
        assert_eq!(
            failure.is_certificate(),
            is_certificate,
            "{what}: {failure}"
        );
        assert_eq!(handshakes.failures(ConnSide::Upstream).len(), 1, "{what}");
    }
    // Not a certificate problem: a server that does not speak TLS.
    let plain = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let handshakes = Handshakes::new();
    let client = client(&pki, Mode::KeepAlive, &handshakes);
    let url = format!("https://localhost:{}/", plain.addr.port());
    let error = client.get(&url).await.unwrap_err();
    let ErrorKind::Tls(failure) = &error.kind else {
        panic!("not a TLS failure: {error}");
    };
    assert!(!failure.is_certificate(), "{failure}");
}

#[tokio::test]
async fn the_live_view_shows_what_tls_negotiated() {
    let pki = Pki::new();
    let live = LiveConns::new();
    let hooks = Hooks {
        live: Some(live.clone()),
        observer: None,
    };
    let acceptor = pki.acceptor(vec![pki.leaf(&["localhost"])]);
    let server = tls_origin(acceptor, hooks).await;
    let mut raw = raw_client(server.addr, &pki.connector(), "localhost").await;
    raw.get("/", "").await;
    raw.response().await;
    let views = live.snapshot();
    let tls = views[0].tls.as_ref().expect("a TLS connection");
    assert_eq!(tls.version, "TLSv1.3");
    assert!(tls.cipher.starts_with("TLS13_"), "{}", tls.cipher);
    assert_eq!(tls.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(tls.server_name.as_deref(), Some("localhost"));
    assert!(!tls.resumed);
}

/// Echoes what the proxy told the origin about the client's protocol.
async fn forwarded(request: Request<Incoming>) -> Response<Body> {
    let secure = ctx(&request).conn.secure;
    let field = |name: &str| {
        request
            .headers()
            .get(name)
            .map_or("-", |v| v.to_str().unwrap())
            .to_string()
    };
    Response::new(Body::from(format!(
        "{} | {} | origin secure: {secure}",
        field("x-forwarded-proto"),
        field("forwarded")
    )))
}

#[tokio::test]
async fn a_proxy_terminates_tls_and_says_so_upstream() {
    let pki = Pki::new();
    let origin = TestServer::start(answer_with(forwarded), ServerConfig::default()).await;
    let upstreams = Upstreams::new(
        &[format!("http://{}", origin.addr).parse().unwrap()],
        Balance::RoundRobin,
        Duration::from_secs(1),
    )
    .unwrap();
    let proxy = Proxy::new(ProxyConfig::reverse(upstreams));
    let acceptor = pki.acceptor(vec![pki.leaf(&["localhost"])]);
    let edge =
        TestServer::start_tls(proxy, ServerConfig::default(), acceptor, Hooks::default()).await;
    let mut raw = raw_client(edge.addr, &pki.connector(), "localhost").await;
    raw.send(b"GET / HTTP/1.1\r\nHost: site\r\nX-Forwarded-Proto: ftp\r\n\r\n")
        .await;
    let text = raw.response().await.text();
    assert!(
        text.starts_with("https | "),
        "the client's claim is replaced: {text}"
    );
    assert!(text.contains(";proto=https;host=site"), "{text}");
    assert!(text.ends_with("origin secure: false"), "{text}");
}

#[tokio::test]
async fn a_proxy_reuses_tls_upstream_connections() {
    let pki = Pki::new();
    let origin_side = Handshakes::new();
    let acceptor = pki.acceptor(vec![pki.leaf(&["localhost"])]);
    let origin = TestServer::start_tls(
        answer_with(forwarded),
        ServerConfig::default(),
        acceptor,
        observed(&origin_side),
    )
    .await;
    let upstreams = Upstreams::new(
        &[format!("https://localhost:{}", origin.addr.port())
            .parse()
            .unwrap()],
        Balance::RoundRobin,
        Duration::from_secs(1),
    )
    .unwrap();
    let mut config = ProxyConfig::reverse(upstreams);
    config.upstream.tls = Some(pki.connector());
    let proxy = TestServer::start(Proxy::new(config), ServerConfig::default()).await;
    // 8 clients, 25 requests each, over plain HTTP to the proxy.
    let clients = (0..8).map(|_| {
        let addr = proxy.addr;
        tokio::spawn(async move {
            let mut raw = common::RawClient::connect(addr).await;
            for _ in 0..25 {
                raw.get("/", "").await;
                let text = raw.response().await.text();
                assert!(text.starts_with("http | "), "{text}");
                assert!(text.ends_with("origin secure: true"), "{text}");
            }
        })
    });
    for client in clients {
        client.await.unwrap();
    }
    let (handshakes, _) = origin_side.count(ConnSide::Downstream);
    assert!(
        (1..=8).contains(&handshakes),
        "200 requests over at most 8 upstream TLS connections, not one each: {handshakes}"
    );
}

#[tokio::test]
async fn a_forward_proxy_sends_https_targets_over_tls_and_still_tunnels_connect() {
    let pki = Pki::new();
    let acceptor = pki.acceptor(vec![pki.leaf(&["localhost"])]);
    let origin = TestServer::start_tls(
        answer_with(forwarded),
        ServerConfig::default(),
        acceptor,
        Hooks::default(),
    )
    .await;
    let port = origin.addr.port();
    let mut config = ProxyConfig::forward();
    config.upstream.tls = Some(pki.connector());
    if let hopline::proxy::Target::Forward { connect_ports } = &mut config.target {
        *connect_ports = vec![port];
    }
    let proxy = TestServer::start(Proxy::new(config), ServerConfig::default()).await;

    // Absolute-form https://: the proxy opens TLS to the origin, verified for localhost.
    let mut client = common::RawClient::connect(proxy.addr).await;
    client
        .send(
            format!("GET https://localhost:{port}/ HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let response = client.response().await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response.text().ends_with("origin secure: true"),
        "{}",
        response.text()
    );

    // CONNECT stays a tunnel: the client's own TLS runs through it, end to end.
    let mut tunnel = TcpStream::connect(proxy.addr).await.unwrap();
    tunnel
        .write_all(
            format!("CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            tunnel.read(&mut byte).await.unwrap(),
            1,
            "the proxy closed the tunnel"
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let (stream, handshake) = pki.connector().connect(tunnel, "localhost").await.unwrap();
    assert_eq!(handshake.info.server_name.as_deref(), Some("localhost"));
    let mut inner = common::RawClient::from_stream(stream);
    inner.get("/", "").await;
    let text = inner.response().await.text();
    assert!(
        text.starts_with("- | - |"),
        "nothing added inside the tunnel: {text}"
    );
}

/// A TLS server outside hopline (rustls alone) that requires a client certificate signed
/// by `pki`'s authority and answers with how many it was shown.
async fn mutual_tls_server(pki: &Pki) -> std::net::SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(
        CertificateDer::pem_file_iter(pki.ca_file())
            .unwrap()
            .map(Result::unwrap),
    );
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let files = pki.leaf(&["localhost"]);
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let shown = tls.get_ref().1.peer_certificates().map_or(0, <[_]>::len);
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    if tls.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let body = format!("client certificates: {shown}");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_client_certificate_is_presented_when_the_server_asks() {
    let pki = Pki::new();
    let addr = mutual_tls_server(&pki).await;
    let url = format!("https://localhost:{}/", addr.port());
    let handshakes = Handshakes::new();
    let without = client(&pki, Mode::KeepAlive, &handshakes);
    let error = without.get(&url).await.unwrap_err();
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );

    let mut settings = pki.client_settings();
    settings.client_certificate = Some(pki.leaf(&["client.test"]));
    let mut options = ClientOptions::with_mode(Mode::KeepAlive);
    options.tls = Some(TlsConnector::new(&settings).unwrap());
    let with = Client::new(options);
    let response = with.get(&url).await.unwrap();
    assert_eq!(body(response).await, "client certificates: 1");
    // A key that does not match its certificate is refused when the connector is built.
    settings.client_certificate = Some(hopline::transport::tls::CertificateFiles {
        cert: pki.leaf(&["a.test"]).cert,
        key: pki.leaf(&["b.test"]).key,
    });
    assert!(TlsConnector::new(&settings).is_err());
}

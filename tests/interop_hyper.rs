//! Interop with an independent peer: hyper's pooled client against hopline's server.

mod common;

use common::TestServer;
use hopline::conn::ServerConfig;
use hopline::origin::Origin;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type HyperClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<bytes::Bytes>>;

fn client() -> HyperClient {
    Client::builder(TokioExecutor::new()).build_http()
}

#[tokio::test]
async fn hyper_pool_reuses_one_connection() {
    let server = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let client = client();
    for n in 0..50u64 {
        let uri = format!("http://{}/bytes/{n}", server.addr);
        let response = client.get(uri.parse().unwrap()).await.expect("request");
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len() as u64, n);
        assert!(
            body.iter()
                .enumerate()
                .all(|(i, &b)| b == b'a' + (i % 26) as u8)
        );
    }
    assert_eq!(
        server.snapshot().accepted,
        1,
        "hyper's pool should reuse one connection"
    );
}

#[tokio::test]
async fn hyper_posts_bodies_and_reads_echoes() {
    let server = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let client = client();
    for size in [0usize, 1, 1000, 100_000] {
        let payload = vec![b'x'; size];
        let request = http::Request::post(format!("http://{}/echo", server.addr))
            .body(Full::new(bytes::Bytes::from(payload.clone())))
            .unwrap();
        let response = client.request(request).await.expect("request");
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(body.starts_with(b"POST /echo HTTP/1.1\r\n"));
        assert!(body.ends_with(&payload));
    }
    assert_eq!(server.snapshot().accepted, 1);
}

#[tokio::test]
async fn hyper_sees_the_close_after_max_requests_and_reconnects() {
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.max_requests = Some(4);
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    let client = client();
    for _ in 0..10 {
        let uri = format!("http://{}/", server.addr);
        let response = client.get(uri.parse().unwrap()).await.expect("request");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"Hello, world!");
    }
    // 10 requests at 4 per connection: 3 connections, none of them failed.
    assert_eq!(server.snapshot().accepted, 3);
}

/// hyper's HTTP/2 client (prior knowledge) against hopline's server: many requests at
/// once, one connection.
#[tokio::test]
async fn hyper_http2_client_multiplexes_on_one_connection() {
    let server = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let client: HyperClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let tasks: Vec<_> = (0..32u64)
        .map(|n| {
            let client = client.clone();
            let uri = format!("http://{}/bytes/{}", server.addr, n * 1000);
            tokio::spawn(async move {
                let response = client.get(uri.parse().unwrap()).await.expect("request");
                assert_eq!(response.version(), http::Version::HTTP_2);
                response
                    .into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes()
                    .len() as u64
            })
        })
        .collect();
    for (n, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), n as u64 * 1000);
    }
    assert_eq!(server.snapshot().accepted, 1);
}

/// hopline's HTTP/2 client against hyper's HTTP/2 server.
#[tokio::test]
async fn hopline_http2_client_against_hyper_http2_server() {
    use hyper::server::conn::http2;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: hyper::Request<hyper::body::Incoming>| async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(body)))
                    },
                );
                let _ = http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    let mut options = hopline::client::ClientOptions::default();
    options.protocol = hopline::client::HopProtocol::Http2;
    let client = hopline::client::Client::new(options);
    for size in [0usize, 10, 100_000, 1_000_000] {
        let request = http::Request::post(format!("http://{addr}/"))
            .body(hopline::Body::from(vec![b'z'; size]))
            .unwrap();
        let response = client.send(request).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), size);
    }
    assert_eq!(client.stats().connections, 1);
}

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

//! The PROXY protocol over real sockets: a listener behind a balancer takes the client's
//! address from the header (v1 and v2, whole or in pieces) and only from trusted peers;
//! a bad header closes the connection; the proxy sends a header upstream naming each
//! client, never sharing one upstream connection between two clients.

mod common;

use std::net::SocketAddr;

use common::{RawClient, TestServer, answer_with, ctx};
use hopline::Body;
use hopline::client::ClientOptions;
use hopline::conn::{Incoming, ServerConfig};
use hopline::proxy::upstream::Upstreams;
use hopline::proxy::{Proxy, ProxyConfig};
use hopline::server::{ListenerConfig, ProxyProtocol};
use hopline::transport::proxy_header::{ProxyVersion, write_v2};
use http::{Request, Response};
use tokio::net::{TcpSocket, TcpStream};

/// Answers with the client's address as the server sees it, and its X-Forwarded-For.
fn whoami() -> impl common::TestService {
    answer_with(|request: Request<Incoming>| async move {
        let peer = ctx(&request).conn.peer;
        let forwarded = request
            .headers()
            .get("x-forwarded-for")
            .map_or("-".to_string(), |v| v.to_str().unwrap().to_string());
        Response::new(Body::from(format!("{peer} {forwarded}")))
    })
}

fn behind_balancer(trusted: &str) -> ListenerConfig {
    let mut listener = ListenerConfig::default();
    listener.proxy_protocol = Some(ProxyProtocol {
        trusted: vec![trusted.parse().unwrap()],
    });
    listener
}

/// A connection to `server` from `source` (a loopback address of its own).
async fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(server).await.unwrap()
}

#[tokio::test]
async fn the_client_s_address_comes_from_a_trusted_balancer_s_header() {
    let server = TestServer::start_with(
        whoami(),
        ServerConfig::default(),
        behind_balancer("127.0.0.0/8"),
    )
    .await;
    let v1 = b"PROXY TCP4 203.0.113.7 198.51.100.1 4000 80\r\n".to_vec();
    let v2 = write_v2(Some((
        "[2001:db8::7]:5000".parse().unwrap(),
        "[2001:db8::1]:443".parse().unwrap(),
    )));
    for (header, expected) in [(v1, "203.0.113.7:4000 -"), (v2, "[2001:db8::7]:5000 -")] {
        // Whole, then in two pieces with the request after the second.
        for cut in [header.len(), header.len() / 2] {
            let mut client = RawClient::connect(server.addr).await;
            client.send(&header[..cut]).await;
            tokio::task::yield_now().await;
            client.send(&header[cut..]).await;
            client.get("/", "").await;
            let response = client.response().await;
            assert_eq!(
                (response.status, response.text()),
                (200, expected.to_string())
            );
            // Later requests on the connection are the same client's.
            client.get("/", "").await;
            assert_eq!(client.response().await.text(), expected);
        }
    }
    // LOCAL (a balancer's health check): the socket's own address stands.
    let mut client = RawClient::connect(server.addr).await;
    client.send(&write_v2(None)).await;
    client.get("/", "").await;
    assert!(client.response().await.text().starts_with("127.0.0.1:"));
}

#[tokio::test]
async fn a_trusted_peer_without_a_valid_header_is_closed_and_others_are_served_as_themselves() {
    let server = TestServer::start_with(
        whoami(),
        ServerConfig::default(),
        behind_balancer("127.0.0.2/32"),
    )
    .await;
    for bad in [
        &b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n",
    ] {
        let mut client = RawClient::from_stream(connect_from("127.0.0.2", server.addr).await);
        client.send(bad).await;
        client.expect_eof().await;
    }
    // Not a balancer: served as its own client; a PROXY line from it is not HTTP.
    let mut client = RawClient::from_stream(connect_from("127.0.0.3", server.addr).await);
    client.get("/", "").await;
    assert!(client.response().await.text().starts_with("127.0.0.3:"));
    let mut client = RawClient::from_stream(connect_from("127.0.0.3", server.addr).await);
    client
        .send(b"PROXY TCP4 203.0.113.7 198.51.100.1 4000 80\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert_eq!(
        client.response().await.status,
        400,
        "a header from an untrusted peer is refused"
    );
}

#[tokio::test]
async fn the_proxy_names_each_client_upstream_on_a_connection_of_its_own() {
    let origin = TestServer::start_with(
        whoami(),
        ServerConfig::default(),
        behind_balancer("127.0.0.0/8"),
    )
    .await;
    for version in [ProxyVersion::V1, ProxyVersion::V2] {
        let mut options = ClientOptions::default();
        options.proxy_protocol = Some(version);
        let mut config = ProxyConfig::reverse(Upstreams::single(origin.addr));
        config.upstream = options;
        let proxy = TestServer::start(Proxy::new(config), ServerConfig::default()).await;
        let opened = origin.snapshot().accepted;
        for source in ["127.0.0.5", "127.0.0.6", "127.0.0.5"] {
            let mut client = RawClient::from_stream(connect_from(source, proxy.addr).await);
            for _ in 0..2 {
                client.get("/", "").await;
                let text = client.response().await.text();
                let (peer, forwarded) = text.split_once(' ').unwrap();
                assert!(
                    peer.starts_with(&format!("{source}:")),
                    "{version:?}: {text}"
                );
                assert_eq!(forwarded, source, "{version:?}");
            }
        }
        // One upstream connection per client connection (the pool never mixes clients):
        // the third client has the first one's address but another port.
        assert_eq!(origin.snapshot().accepted - opened, 3, "{version:?}");
    }
}

#[tokio::test]
async fn a_proxy_behind_a_balancer_forwards_the_balancer_s_client() {
    let origin = TestServer::start(whoami(), ServerConfig::default()).await;
    let proxy = TestServer::start_with(
        Proxy::new(ProxyConfig::reverse(Upstreams::single(origin.addr))),
        ServerConfig::default(),
        behind_balancer("127.0.0.0/8"),
    )
    .await;
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .send(b"PROXY TCP4 203.0.113.7 198.51.100.1 4000 80\r\n")
        .await;
    client.get("/", "").await;
    let text = client.response().await.text();
    assert!(
        text.ends_with(" 203.0.113.7"),
        "X-Forwarded-For names the balancer's client: {text}"
    );
}

//! The listener out of file descriptors with idle connections parked: the longest idle one
//! gives way to a new connection at once (instead of the accept loop backing off). Its own
//! test binary, because it lowers the process's open-file limit (tests/accept_backoff.rs
//! does too, and tests in one binary run at once).

mod common;

use std::time::Duration;

use common::fds::{leaving_room, set_soft_limit};
use common::{RawClient, TestServer};
use hopline::conn::ServerConfig;
use hopline::origin::Origin;
use tokio::net::TcpSocket;

#[tokio::test]
async fn out_of_descriptors_the_longest_idle_connection_gives_way() {
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.park_idle_after = Some(Duration::ZERO);
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    let mut sockets: Vec<_> = (0..6).map(|_| TcpSocket::new_v4().unwrap()).collect();
    let late = sockets.pop().unwrap();
    let mut clients = Vec::new();
    for socket in sockets {
        let mut client = RawClient::from_stream(socket.connect(server.addr).await.unwrap());
        client.get("/", "").await;
        assert_eq!(client.response().await.status, 200);
        clients.push(client);
    }
    server.until("five parked", |s| s.parked == 5).await;
    // No room for one more descriptor: the sixth connection's accept meets EMFILE.
    let previous = set_soft_limit(leaving_room(0));
    let mut newcomer = RawClient::from_stream(late.connect(server.addr).await.unwrap());
    newcomer.get("/", "").await;
    let response = tokio::time::timeout(Duration::from_secs(5), newcomer.response())
        .await
        .expect("served without waiting for a descriptor");
    set_soft_limit(previous);
    assert_eq!(response.status, 200);
    // The first to go idle made room for the newcomer. The accept after it found no
    // descriptor either (Linux takes one before it looks for a connection), and the second
    // made one spare: two closes counted as pressure; the three others serve on.
    clients[0].expect_eof().await;
    clients[1].expect_eof().await;
    let stats = server.closed(2).await;
    assert_eq!(
        stats.closed(hopline::conn::CloseReason::Pressure),
        2,
        "{stats:?}"
    );
    assert!(
        stats.accept_errors > 0,
        "the test never hit EMFILE: {stats:?}"
    );
    for client in &mut clients[2..] {
        client.get("/", "").await;
        assert_eq!(client.response().await.status, 200);
    }
}

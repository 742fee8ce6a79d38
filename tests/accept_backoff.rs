//! The listener under file-descriptor exhaustion: `accept` fails with EMFILE, the loop backs
//! off instead of spinning, and every waiting connection is still served once descriptors
//! free up. Its own test binary, because it lowers the process's open-file limit.

mod common;

use std::time::Duration;

use common::fds::{leaving_room, set_soft_limit};
use common::{RawClient, TestServer};
use hopline::conn::ServerConfig;
use hopline::origin::Origin;
use tokio::net::TcpSocket;

#[tokio::test(start_paused = true)]
async fn emfile_backs_off_and_every_waiting_connection_is_served() {
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.keep_alive = false;
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    // The clients' descriptors exist before the limit drops; connecting needs no new one,
    // but every accept does. With three spare descriptors the server can hold at most three
    // accepted connections at a time and gets EMFILE for the rest until those close.
    let sockets: Vec<_> = (0..20).map(|_| TcpSocket::new_v4().unwrap()).collect();
    let previous = set_soft_limit(leaving_room(3));
    let mut clients = Vec::new();
    for socket in sockets {
        clients.push(RawClient::from_stream(
            socket.connect(server.addr).await.unwrap(),
        ));
    }
    let mut served = 0;
    for client in &mut clients {
        client.get("/", "").await;
        let response = tokio::time::timeout(Duration::from_secs(20), client.response())
            .await
            .expect("a waiting connection was never served");
        assert_eq!(response.status, 200);
        served += 1;
    }
    set_soft_limit(previous);
    assert_eq!(served, 20);
    let stats = server.closed(20).await;
    assert_eq!(stats.accepted, 20, "no connection lost to EMFILE");
    assert!(
        stats.accept_errors > 0,
        "the test never hit EMFILE: {stats:?}"
    );
    // Backing off (1 ms doubling to 1 s, and again as soon as a connection ends), not
    // spinning: each wait for a descriptor spans one lingering close (2 s), about a dozen
    // tries; a spinning loop makes thousands.
    assert!(stats.accept_errors < 20 * 12, "accept spun: {stats:?}");
}

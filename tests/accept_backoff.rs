//! The listener under file-descriptor exhaustion: `accept` fails with EMFILE, the loop backs
//! off instead of spinning, every waiting connection is still served once descriptors
//! free up, and a connection that ends cuts the backoff short. Its own test binary, because
//! it lowers the process's open-file limit.

mod common;

use std::time::Duration;

use common::fds::{leaving_room, set_soft_limit};
use common::{RawClient, TestServer};
use hopline::conn::ServerConfig;
use hopline::origin::Origin;
use tokio::net::TcpSocket;

// The two cases run one after the other: each lowers the whole process's limit.
#[tokio::test(start_paused = true)]
async fn out_of_descriptors() {
    emfile_backs_off_and_every_waiting_connection_is_served().await;
    a_connection_ending_ends_the_backoff().await;
}

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

/// Backing off waits at most a second between tries, but a connection that ends frees a
/// descriptor at once: the waiting connection is served then, not at the next try.
async fn a_connection_ending_ends_the_backoff() {
    let config = {
        let mut server_config = ServerConfig::default();
        // Idle in its task, not parked: nothing to close in its place, so `accept` backs
        // off.
        server_config.park_idle_after = None;
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    let (first, late) = (TcpSocket::new_v4().unwrap(), TcpSocket::new_v4().unwrap());
    let mut holder = RawClient::from_stream(first.connect(server.addr).await.unwrap());
    holder.get("/", "").await;
    assert_eq!(holder.response().await.status, 200);
    let previous = set_soft_limit(leaving_room(0));
    let mut waiting = RawClient::from_stream(late.connect(server.addr).await.unwrap());
    waiting.get("/", "").await;
    // The backoff doubles from 1 ms and tries every second from 1.023 s on: 10.5 s in, the
    // next try is half a second away.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let closed_at = tokio::time::Instant::now();
    drop(holder);
    let response = waiting.response().await;
    let waited = closed_at.elapsed();
    set_soft_limit(previous);
    assert_eq!(response.status, 200);
    assert!(
        waited < Duration::from_millis(100),
        "served {waited:?} after a descriptor was freed"
    );
    assert!(server.snapshot().accept_errors > 0);
}

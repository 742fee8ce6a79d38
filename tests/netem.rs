//! The link emulator over real sockets, on tokio's paused clock (the relay's delays are
//! timers, so the clock jumps over them and the timings are those of the model): handshake,
//! round trips, slow start on cold and warm connections, and the restart after idle.

mod common;

use std::time::Duration;

use common::TestServer;
use hopline::client::{Client, ClientOptions};
use hopline::conn::ServerConfig;
use hopline::netem::{Link, PathModel};
use hopline::origin::Origin;
use tokio::time::Instant;

const RTT: Duration = Duration::from_millis(50);

/// Slack over the model's figure: processing on loopback takes no time on the paused
/// clock, but the relay's timers round up to the millisecond.
const SLACK: Duration = Duration::from_millis(5);

async fn link() -> (TestServer, Link, Client) {
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let link = Link::start(origin.addr, PathModel::with_rtt(RTT))
        .await
        .unwrap();
    (origin, link, Client::new(ClientOptions::default()))
}

/// Fetches `path` across the link; returns how long it took and whether the connection
/// was reused.
async fn fetch(client: &Client, link: &Link, path: &str) -> (Duration, bool) {
    let start = Instant::now();
    let response = client
        .get(&format!("http://{}{path}", link.addr()))
        .await
        .unwrap();
    let reused = response.body().exchange().unwrap().reused;
    response.into_body().bytes(u64::MAX).await.unwrap();
    (start.elapsed(), reused)
}

fn about(measured: Duration, model: Duration) {
    assert!(
        measured >= model && measured <= model + SLACK,
        "measured {measured:?}, the model says {model:?}"
    );
}

/// A body of `windows` initial windows, less room for the response head.
fn body_of(windows: u64) -> u64 {
    windows * PathModel::with_rtt(RTT).initial_window() - 300
}

#[tokio::test(start_paused = true)]
async fn a_new_connection_costs_a_round_trip_more_than_a_warm_one() {
    let (_origin, link, client) = link().await;
    let (cold, reused) = fetch(&client, &link, "/").await;
    assert!(!reused);
    about(cold, 2 * RTT);
    let (warm, reused) = fetch(&client, &link, "/").await;
    assert!(reused);
    about(warm, RTT);
    assert_eq!(link.stats().connections, 1);
}

#[tokio::test(start_paused = true)]
async fn slow_start_costs_a_cold_connection_log2_round_trips() {
    let (_origin, link, client) = link().await;
    // 7 initial windows: 1 + 2 + 4, three round trips on a cold connection, after the
    // handshake.
    let (cold, _) = fetch(&client, &link, &format!("/bytes/{}", body_of(7))).await;
    about(cold, RTT + 3 * RTT);
    // The window has grown to 8 initial windows: the same body now takes one round trip.
    let (warm, reused) = fetch(&client, &link, &format!("/bytes/{}", body_of(7))).await;
    assert!(reused);
    about(warm, RTT);
}

#[tokio::test(start_paused = true)]
async fn idling_past_the_rto_cools_the_connection() {
    let (_origin, link, client) = link().await;
    fetch(&client, &link, &format!("/bytes/{}", body_of(7))).await;
    let rto = PathModel::with_rtt(RTT).rto();
    tokio::time::sleep(rto + Duration::from_millis(10)).await;
    let (after_idle, reused) = fetch(&client, &link, &format!("/bytes/{}", body_of(7))).await;
    assert!(
        reused,
        "the connection stayed open, only its window fell back"
    );
    about(after_idle, 3 * RTT);
}

#[tokio::test(start_paused = true)]
async fn bandwidth_caps_throughput() {
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let mut path = PathModel::with_rtt(Duration::from_millis(10));
    path.bandwidth = Some(1_000_000);
    let link = Link::start(origin.addr, path).await.unwrap();
    let client = Client::new(ClientOptions::default());
    // 2 MB at 1 MB/s: two seconds and a little (handshake, slow start, headers).
    let (took, _) = fetch(&client, &link, "/bytes/2000000").await;
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(2300),
        "{took:?}"
    );
    let stats = link.stats();
    assert!(
        stats.bytes_down > 2_000_000 && stats.bytes_up > 0,
        "{stats:?}"
    );
}

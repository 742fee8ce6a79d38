//! The link emulator over real sockets, on tokio's paused clock (the relay's delays are
//! timers, so the clock jumps over them and the timings are those of the model): handshake,
//! round trips, slow start on cold and warm connections, and the restart after idle.

mod common;

use std::time::Duration;

use common::TestServer;
use hopline::client::{Client, ClientOptions, LargeResponse};
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

/// Fetches `path` across the link, marked as a large response when `large`; how long it
/// took and which connection carried it.
async fn fetch_marked(client: &Client, link: &Link, path: &str, large: bool) -> (Duration, u64) {
    let start = Instant::now();
    let mut request = http::Request::get(format!("http://{}{path}", link.addr()))
        .body(hopline::Body::empty())
        .unwrap();
    if large {
        request.extensions_mut().insert(LargeResponse);
    }
    let response = client.send(request).await.unwrap();
    let connection = response.body().exchange().unwrap().connection;
    response.into_body().bytes(u64::MAX).await.unwrap();
    (start.elapsed(), connection)
}

/// Two idle connections: `warm` carried 7 initial windows and has been idle 50 ms; `cold`
/// carried a small answer and was used last (the pool's default pick).
async fn warm_and_cold(client: &Client, link: &Link) -> (u64, u64) {
    let large = format!("/bytes/{}", body_of(7));
    let ((_, warm), (_, cold)) = tokio::join!(
        fetch_marked(client, link, &large, false),
        fetch_marked(client, link, "/delay/150", false),
    );
    assert_ne!(warm, cold);
    (warm, cold)
}

#[tokio::test(start_paused = true)]
async fn a_large_response_gets_the_warm_connection_and_its_fewer_round_trips() {
    let (_origin, link, client) = link().await;
    let large = format!("/bytes/{}", body_of(7));
    let (warm, _cold) = warm_and_cold(&client, &link).await;
    // Marked large: the pool lends the warm connection; its window carries the body in one
    // round trip, as the model says.
    let (took, connection) = fetch_marked(&client, &link, &large, true).await;
    assert_eq!(connection, warm, "the warm connection");
    about(took, RTT);
    // Idle past the RTO, its window falls back: three round trips again (1 + 2 + 4 initial
    // windows), though the connection is reused.
    let rto = PathModel::with_rtt(RTT).rto();
    tokio::time::sleep(rto + Duration::from_millis(10)).await;
    let (took, connection) = fetch_marked(&client, &link, &large, true).await;
    assert_eq!(
        connection, warm,
        "no warm connection left: the most recently used"
    );
    about(took, 3 * RTT);
    // A new connection also pays the handshake: four.
    let fresh = Client::new(ClientOptions::default());
    let (took, _) = fetch_marked(&fresh, &link, &large, true).await;
    about(took, RTT + 3 * RTT);
}

#[tokio::test(start_paused = true)]
async fn unmarked_requests_get_the_most_recently_used_connection() {
    let (_origin, link, client) = link().await;
    let large = format!("/bytes/{}", body_of(7));
    let (_warm, cold) = warm_and_cold(&client, &link).await;
    // The small answer's connection, used last, has its initial window: three round trips.
    let (took, connection) = fetch_marked(&client, &link, &large, false).await;
    assert_eq!(connection, cold);
    about(took, 3 * RTT);
}

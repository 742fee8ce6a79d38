//! The warmth scenario: one large resource over an emulated link on a new (cold)
//! connection, again at once on the same connection (warm: its sender's window grew), and
//! again after idling past the RTO (the window fell back: slow start after idle), each
//! against what the path model predicts. It shows what a kept, warm connection saves
//! beyond the handshake, and why the pool picks warm connections for large responses.
//!
//! Owns the scenario and its prediction; the emulator and the client do the work.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::client::{Client, ClientOptions, LargeResponse};
use crate::error::BoxError;
use crate::netem::model::{Delivery, Pacer};
use crate::netem::{Link, PathModel};

/// Initial windows the resource spans: a cold connection needs 1 + 2 + 4 of them, three
/// round trips of slow start.
const WINDOWS: u64 = 7;
/// Room left in those windows for the response head.
const HEAD_ROOM: u64 = 300;

/// One round-trip time's three fetches, measured and predicted, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct WarmthRun {
    /// The round-trip time.
    pub rtt_ms: f64,
    /// The resource's body bytes.
    pub bytes: u64,
    /// On a new connection: handshake, then slow start from the initial window.
    pub cold_ms: f64,
    /// Again at once on the same connection: its window has grown.
    pub warm_ms: f64,
    /// Again after idling past the RTO: reused, but its window fell back.
    pub idle_reset_ms: f64,
    /// What the model predicts for each, in the same order.
    pub model_ms: [f64; 3],
}

impl WarmthRun {
    /// Each fetch's measured time with the model's, in milliseconds: cold, warm, idle-reset.
    pub fn pairs(&self) -> [(f64, f64); 3] {
        let [cold, warm, reset] = self.model_ms;
        [
            (self.cold_ms, cold),
            (self.warm_ms, warm),
            (self.idle_reset_ms, reset),
        ]
    }
}

/// The resource's body size over `path`.
pub fn body_bytes(path: &PathModel) -> u64 {
    WINDOWS * path.initial_window() - HEAD_ROOM
}

/// Runs the scenario over a fresh link to `origin` (an embedded origin serving
/// `/bytes/N`).
pub async fn run(origin: std::net::SocketAddr, path: PathModel) -> Result<WarmthRun, BoxError> {
    let link = Link::start(origin, path).await?;
    let client = Client::new(ClientOptions::default());
    let bytes = body_bytes(&path);
    let url = format!("http://{}/bytes/{bytes}", link.addr());
    let cold = fetch(&client, &url).await?;
    let warm = fetch(&client, &url).await?;
    tokio::time::sleep(path.rto() + Duration::from_millis(10)).await;
    let idle_reset = fetch(&client, &url).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(WarmthRun {
        rtt_ms: ms(path.rtt),
        bytes,
        cold_ms: ms(cold),
        warm_ms: ms(warm),
        idle_reset_ms: ms(idle_reset),
        model_ms: predict(
            path,
            bytes + HEAD_ROOM / 2,
            path.rto() + Duration::from_millis(10),
        )
        .map(ms),
    })
}

async fn fetch(client: &Client, url: &str) -> Result<Duration, BoxError> {
    let start = Instant::now();
    let mut request = http::Request::get(url).body(crate::Body::empty())?;
    request.extensions_mut().insert(LargeResponse);
    let response = client.send(request).await?;
    response.into_body().bytes(u64::MAX).await?;
    Ok(start.elapsed())
}

/// What the path model predicts for a response of `bytes` (head included): on a new
/// connection, at once again on it, and again after `idle`. The client's request takes half
/// a round trip (and, on a new connection, follows the handshake's round trip); the
/// server's sender paces the response.
pub fn predict(path: PathModel, bytes: u64, idle: Duration) -> [Duration; 3] {
    let half = path.rtt / 2;
    let mut server = Pacer::new(path, Duration::ZERO);
    let mut out: Vec<Delivery> = Vec::new();
    let mut exchange = |asked: Duration, out: &mut Vec<Delivery>| {
        out.clear();
        server.send(asked + half, bytes, out);
        out.last().map_or(asked + half, |d| d.at)
    };
    let cold_end = exchange(path.rtt, &mut out);
    let warm_end = exchange(cold_end, &mut out);
    let asked = warm_end + idle;
    let reset_end = exchange(asked, &mut out);
    [cold_end, warm_end - cold_end, reset_end - asked]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_counts_handshake_and_slow_start_rounds() {
        let rtt = Duration::from_millis(100);
        let path = PathModel::with_rtt(rtt);
        let bytes = WINDOWS * path.initial_window() - 100;
        let [cold, warm, reset] = predict(path, bytes, path.rto() + Duration::from_millis(10));
        // Handshake + 1 + 2 + 4 windows; then one round trip; then three again.
        assert_eq!(cold, 4 * rtt);
        assert_eq!(warm, rtt);
        assert_eq!(reset, 3 * rtt);
        // The server has been idle a round trip longer than the client (its last bytes left
        // half a round trip before they arrived, the next request takes half a round trip
        // to reach it): idle for less than the RTO at the server keeps the window.
        let idle = path.rto() - rtt - Duration::from_millis(10);
        let [_, _, kept] = predict(path, bytes, idle);
        assert_eq!(kept, rtt);
    }
}

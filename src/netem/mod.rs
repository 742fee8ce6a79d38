//! `netem`: an emulated network link between two hops, in process, because loopback has
//! no latency and this kernel has no `netem` qdisc.
//!
//! A [`Link`] listens on loopback and relays every connection it accepts to a target,
//! delaying the bytes each way as [`model::Pacer`] says a TCP connection over the path
//! would deliver them:
//!
//! - **round trip**: each direction takes half of it;
//! - **handshake**: the client's first byte leaves one round trip after it connected (the
//!   SYN / SYN-ACK exchange), so a request on a new connection is answered after about
//!   2 RTT, on an open one after about 1 RTT;
//! - **slow start**: each direction starts with a 10 × 1460-byte window that doubles every
//!   round trip up to the bandwidth-delay product; after an idle period longer than the RTO
//!   (RTT + 200 ms) it falls back to the initial window (`tcp_slow_start_after_idle`). A
//!   connection that has carried data is "warm" and a new one "cold";
//! - **bandwidth** (optional): bytes are serialised at the given rate each way.
//!
//! Limits of the model: no loss, hence no retransmissions and no congestion avoidance; no
//! receive-window limit; no Nagle or delayed ACKs; the sender's socket buffer is unbounded
//! (the relay reads ahead up to [`READ_AHEAD`] and then stops reading, which is where
//! backpressure comes from); the real loopback and processing time are added on top. The
//! server's own TCP stack still sees loopback, so server-side `TCP_INFO` does not show the
//! emulated path.
//!
//! Owns the relay and its counters. It must not parse HTTP.

pub mod model;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use model::{Delivery, Pacer, PathModel};

/// Bytes the relay holds per direction before it stops reading from the sender.
pub const READ_AHEAD: usize = 4 * 1024 * 1024;

/// How early the relay aims its timers (see [`pump`]).
const TIMER_BIAS: Duration = Duration::from_micros(500);

/// What a link has carried.
#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// A copy of a link's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Connections accepted (TCP handshakes over the emulated path).
    pub connections: u64,
    /// Bytes from the connecting side to the target.
    pub bytes_up: u64,
    /// Bytes from the target back.
    pub bytes_down: u64,
}

/// An emulated link: connections to [`Link::addr`] reach the target over the path.
/// Dropping it stops accepting and cuts the connections it relays.
#[derive(Debug)]
pub struct Link {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Link {
    /// Starts a link on an ephemeral loopback port in front of `target`.
    pub async fn start(target: SocketAddr, path: PathModel) -> io::Result<Link> {
        let bind: SocketAddr = if target.is_ipv6() {
            "[::1]:0".parse().expect("literal address")
        } else {
            "127.0.0.1:0".parse().expect("literal address")
        };
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept_loop(listener, target, path, counters.clone()));
        Ok(Link {
            addr,
            counters,
            task,
        })
    }

    /// Where to connect to cross the link.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters now.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            connections: self.counters.connections.load(Ordering::Relaxed),
            bytes_up: self.counters.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.counters.bytes_down.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    path: PathModel,
    counters: Arc<Counters>,
) {
    let epoch = Instant::now();
    // The relays die with the accept loop (the link was dropped).
    let mut relays = tokio::task::JoinSet::new();
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(error) => {
                tracing::warn!(%error, "netem: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let accepted = epoch.elapsed();
        let counters = counters.clone();
        relays.spawn(async move {
            let server = match TcpStream::connect(target).await {
                Ok(server) => server,
                Err(error) => {
                    tracing::debug!(%error, %target, "netem: target unreachable");
                    return;
                }
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            // SYN at `accepted`, SYN-ACK back one round trip later: the client's first
            // byte leaves then; the server's ACK arrives half a round trip after that.
            let up = Pacer::new(path, accepted + path.rtt);
            let down = Pacer::new(path, accepted + path.rtt + path.rtt / 2);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let result = tokio::try_join!(
                pump(client_read, server_write, up, epoch, &counters.bytes_up),
                pump(server_read, client_write, down, epoch, &counters.bytes_down),
            );
            if let Err(error) = result {
                tracing::debug!(%error, "netem: relay ended");
            }
        });
        // Reap finished relays so the set does not grow with the connections served.
        while relays.try_join_next().is_some() {}
    }
}

/// Relays one direction: reads what the sender wrote, and writes each piece to the
/// receiver when the model says it arrives; the end of the stream (FIN) travels the path
/// after the last byte.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut pacer: Pacer,
    epoch: Instant,
    counter: &AtomicU64,
) -> io::Result<()> {
    let mut queue: std::collections::VecDeque<(Instant, Bytes)> = Default::default();
    let mut queued = 0usize;
    let mut buf = BytesMut::new();
    let mut deliveries = Vec::new();
    let mut last_arrival = Instant::now();
    let half_rtt = pacer.path().rtt / 2;
    loop {
        // Timers fire on whole milliseconds, after their deadline: aim half a millisecond
        // early so that deliveries land within ±0.5 ms of the model's time.
        let next = queue
            .front()
            .map(|(at, _)| at.checked_sub(TIMER_BIAS).unwrap_or(*at));
        if next.is_some_and(|at| at <= Instant::now()) {
            let (_, data) = queue.pop_front().expect("a queued piece");
            queued -= data.len();
            to.write_all(&data).await?;
            continue;
        }
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let (_, data) = queue.pop_front().expect("a queued piece");
                queued -= data.len();
                to.write_all(&data).await?;
            }
            read = read_some(&mut from, &mut buf), if queued < READ_AHEAD => {
                if read? == 0 {
                    break;
                }
                let mut data = buf.split().freeze();
                counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                queued += data.len();
                pacer.send(epoch.elapsed(), data.len() as u64, &mut deliveries);
                for delivery in deliveries.drain(..) {
                    let piece = data.split_to(delivery.bytes as usize);
                    last_arrival = epoch + delivery.at;
                    queue.push_back((last_arrival, piece));
                }
            }
        }
    }
    // The sender closed: deliver what is in flight, then the FIN.
    while let Some((at, data)) = queue.pop_front() {
        tokio::time::sleep_until(at.checked_sub(TIMER_BIAS).unwrap_or(at)).await;
        to.write_all(&data).await?;
    }
    tokio::time::sleep_until(last_arrival.max(Instant::now() + half_rtt)).await;
    to.shutdown().await
}

async fn read_some(from: &mut OwnedReadHalf, buf: &mut BytesMut) -> io::Result<usize> {
    buf.reserve(64 * 1024);
    from.read_buf(buf).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_dropped_link_stops_accepting() {
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let link = Link::start(
            target.local_addr().unwrap(),
            PathModel::with_rtt(Duration::ZERO),
        )
        .await
        .unwrap();
        let addr = link.addr();
        drop(link);
        tokio::task::yield_now().await;
        assert!(TcpStream::connect(addr).await.is_err());
    }
}

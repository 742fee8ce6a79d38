//! Upstream choice for a reverse proxy: round-robin or least outstanding requests, skipping
//! an upstream that refused connections for a while.
//!
//! Owns the list of upstreams and their health marks. It must not open connections (the
//! client does) or touch messages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::Uri;
use http::uri::Authority;
use tokio::time::Instant;

use crate::pool::Key;

/// How requests are spread over upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Balance {
    /// In turn.
    RoundRobin,
    /// To the upstream with the fewest requests in flight (ties in turn).
    LeastOutstanding,
}

/// One upstream.
#[derive(Debug)]
pub struct Upstream {
    /// Its URL as configured.
    pub url: Uri,
    /// Its pool key.
    pub key: Key,
    /// Its authority (`host:port`): where requests are sent, and their `Host` when the
    /// client sent none.
    pub authority: Authority,
    /// Requests in flight to it.
    outstanding: AtomicUsize,
    /// Until when it is skipped (nanoseconds since the set's epoch; 0: not skipped).
    down_until: AtomicU64,
}

/// The upstreams of a reverse proxy.
#[derive(Debug)]
pub struct Upstreams {
    list: Vec<Arc<Upstream>>,
    balance: Balance,
    next: AtomicUsize,
    /// How long an upstream that refused a connection is skipped.
    down_for: Duration,
    epoch: Instant,
}

/// A request in flight to an upstream; counts as outstanding until dropped.
#[derive(Debug)]
pub struct Pick {
    /// The upstream chosen.
    pub upstream: Arc<Upstream>,
}

impl Drop for Pick {
    fn drop(&mut self) {
        self.upstream.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Upstreams {
    /// Upstreams from URLs (`http://host:port`, `https://host:port`).
    pub fn new(urls: &[Uri], balance: Balance, down_for: Duration) -> Result<Self, String> {
        if urls.is_empty() {
            return Err("a reverse proxy needs at least one --upstream".into());
        }
        let list = urls
            .iter()
            .map(|url| {
                let not_url = || format!("{url}: not an http:// or https:// URL");
                let key = Key::from_uri(url)
                    .filter(|_| url.scheme().is_some())
                    .ok_or_else(not_url)?;
                if !matches!(key.scheme(), "http" | "https") {
                    return Err(format!(
                        "{url}: only http:// and https:// upstreams are supported"
                    ));
                }
                let authority = url.authority().cloned().ok_or_else(not_url)?;
                Ok(Arc::new(Upstream {
                    authority,
                    url: url.clone(),
                    key,
                    outstanding: AtomicUsize::new(0),
                    down_until: AtomicU64::new(0),
                }))
            })
            .collect::<Result<_, String>>()?;
        Ok(Upstreams {
            list,
            balance,
            next: AtomicUsize::new(0),
            down_for,
            epoch: Instant::now(),
        })
    }

    /// One plain-HTTP upstream at `addr`, round-robin (moot with one) and skipped for 5 s
    /// after a refusal (the `--upstream-down-for` default): what a test, the demo or an
    /// embedding program wants when the proxy has a single origin.
    pub fn single(addr: SocketAddr) -> Self {
        let url = format!("http://{addr}")
            .parse()
            .expect("an address is a valid authority");
        Self::new(&[url], Balance::RoundRobin, Duration::from_secs(5))
            .expect("an http:// URL is a valid upstream")
    }

    /// Their URLs as configured.
    pub fn urls(&self) -> impl Iterator<Item = &Uri> {
        self.list.iter().map(|upstream| &upstream.url)
    }

    /// How many upstreams there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none (never: [`Upstreams::new`] refuses an empty list).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Chooses an upstream for one request. Upstreams marked down are skipped while another
    /// is available; if all are down, the one whose mark ends first is tried anyway.
    pub fn pick(&self) -> Pick {
        let now = self.now();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.list.len();
        let in_turn = (0..n).map(|i| &self.list[(start + i) % n]);
        let up = |u: &&Arc<Upstream>| u.down_until.load(Ordering::Acquire) <= now;
        let chosen = match self.balance {
            Balance::RoundRobin => in_turn.clone().find(up),
            Balance::LeastOutstanding => in_turn
                .clone()
                .filter(up)
                .min_by_key(|u| u.outstanding.load(Ordering::Acquire)),
        }
        .or_else(|| {
            self.list
                .iter()
                .min_by_key(|u| u.down_until.load(Ordering::Acquire))
        })
        .expect("at least one upstream")
        .clone();
        chosen.outstanding.fetch_add(1, Ordering::AcqRel);
        Pick { upstream: chosen }
    }

    /// Each upstream's authority and whether it is up (not skipped for having refused a
    /// connection lately), for metrics.
    pub fn states(&self) -> Vec<(String, bool)> {
        let now = self.now();
        self.list
            .iter()
            .map(|u| {
                let up = u.down_until.load(Ordering::Acquire) <= now;
                (u.authority.to_string(), up)
            })
            .collect()
    }

    /// Marks an upstream down after it refused a connection.
    pub fn mark_down(&self, upstream: &Upstream) {
        let until = self.now() + self.down_for.as_nanos() as u64;
        upstream.down_until.store(until.max(1), Ordering::Release);
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Requests in flight to each upstream, in configuration order.
    pub fn outstanding(&self) -> Vec<usize> {
        self.list
            .iter()
            .map(|u| u.outstanding.load(Ordering::Acquire))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(balance: Balance) -> Upstreams {
        let urls: Vec<Uri> = ["http://a:1", "http://b:2", "http://c:3"]
            .iter()
            .map(|u| u.parse().unwrap())
            .collect();
        Upstreams::new(&urls, balance, Duration::from_secs(5)).unwrap()
    }

    fn host(pick: &Pick) -> String {
        pick.upstream.key.host().to_string()
    }

    #[test]
    fn round_robin_takes_turns() {
        let upstreams = set(Balance::RoundRobin);
        let order: Vec<String> = (0..6).map(|_| host(&upstreams.pick())).collect();
        assert_eq!(order, ["a", "b", "c", "a", "b", "c"]);
    }

    #[test]
    fn least_outstanding_avoids_busy_upstreams() {
        let upstreams = set(Balance::LeastOutstanding);
        let mut held: Vec<Pick> = (0..3).map(|_| upstreams.pick()).collect();
        assert_eq!(upstreams.outstanding(), vec![1, 1, 1]);
        drop(held.remove(1));
        assert_eq!(upstreams.outstanding(), vec![1, 0, 1]);
        assert_eq!(host(&upstreams.pick()), "b", "b has nothing in flight");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusing_upstream_is_skipped_for_a_while() {
        let upstreams = set(Balance::RoundRobin);
        let b = upstreams.list[1].clone();
        upstreams.mark_down(&b);
        let order: Vec<String> = (0..4).map(|_| host(&upstreams.pick())).collect();
        assert!(!order.contains(&"b".to_string()), "{order:?}");
        tokio::time::sleep(Duration::from_secs(6)).await;
        let order: Vec<String> = (0..3).map(|_| host(&upstreams.pick())).collect();
        assert!(order.contains(&"b".to_string()));
    }

    #[test]
    fn when_all_are_down_the_one_back_soonest_is_tried_anyway() {
        for balance in [Balance::RoundRobin, Balance::LeastOutstanding] {
            let upstreams = set(balance);
            // Down for another 300 s, 100 s and 200 s: b is back first.
            let now = upstreams.now();
            for (upstream, secs) in upstreams.list.iter().zip([300u64, 100, 200]) {
                let until = now + Duration::from_secs(secs).as_nanos() as u64;
                upstream.down_until.store(until, Ordering::Release);
            }
            for _ in 0..3 {
                let pick = upstreams.pick();
                assert_eq!(host(&pick), "b", "{balance:?}");
            }
        }
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(Upstreams::new(&[], Balance::RoundRobin, Duration::ZERO).is_err());
        let relative: Uri = "/x".parse().unwrap();
        assert!(Upstreams::new(&[relative], Balance::RoundRobin, Duration::ZERO).is_err());
    }
}

//! Loading a page as a browser would: the document first, then the subresources it
//! references, over a [`Client`] whose connection type is the thing being measured.
//! Records when each request started, when its response head and its last byte arrived,
//! and on which connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use serde::Serialize;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::BoxError;
use crate::page::referenced_paths;

/// How the subresources are requested once the document has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetching {
    /// By this many workers, each taking the next resource in document order when its
    /// previous one is complete (a browser's connections per host).
    Workers(usize),
    /// All at once: the client queues what it cannot send yet (pipelining).
    AllAtOnce,
}

/// One request of a page load, in milliseconds since the load began.
#[derive(Debug, Clone, Serialize)]
pub struct RequestTiming {
    /// Path and query.
    pub path: String,
    /// Response status.
    pub status: u16,
    /// Response body bytes.
    pub body_bytes: u64,
    /// The client's number for the connection that carried it.
    pub connection: u64,
    /// Whether that connection was opened for it (a TCP handshake first).
    pub new_connection: bool,
    /// When the request was issued.
    pub start_ms: f64,
    /// When its response head arrived.
    pub head_ms: f64,
    /// When its body was complete.
    pub end_ms: f64,
}

/// A page load.
#[derive(Debug, Clone)]
pub struct PageLoad {
    /// The document first, then the subresources in completion order.
    pub requests: Vec<RequestTiming>,
    /// From the first request to the last byte.
    pub total: Duration,
    /// When the first request went out (every `*_ms` counts from it).
    pub epoch: Instant,
}

impl PageLoad {
    /// Response body bytes of the whole load.
    pub fn body_bytes(&self) -> u64 {
        self.requests.iter().map(|r| r.body_bytes).sum()
    }
}

/// Where and how to load a page.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://address` the requests go to (the near end of the emulated link).
    pub base: String,
    /// The document's path and query.
    pub page: String,
    /// The `Host` to send, when it is not `base`'s authority (an external site).
    pub host: Option<HeaderValue>,
}

/// Loads the page at `target` through `client`; fails on the first request that fails or
/// is not answered 200.
pub async fn load_page(
    client: &Client,
    target: &Target,
    fetching: Fetching,
) -> Result<PageLoad, BoxError> {
    let epoch = Instant::now();
    let (document, html) = fetch(client, target, &target.page, epoch, true).await?;
    let html = String::from_utf8_lossy(&html).into_owned();
    let paths = Arc::new(referenced_paths(&html));
    let mut requests = vec![document];
    match fetching {
        Fetching::AllAtOnce => {
            let tasks: Vec<_> = paths
                .iter()
                .map(|path| {
                    let (client, target, path) = (client.clone(), target.clone(), path.clone());
                    tokio::spawn(async move { fetch(&client, &target, &path, epoch, false).await })
                })
                .collect();
            for task in tasks {
                requests.push(task.await??.0);
            }
        }
        Fetching::Workers(workers) => {
            let next = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..workers.max(1))
                .map(|_| {
                    let (client, target) = (client.clone(), target.clone());
                    let (paths, next) = (paths.clone(), next.clone());
                    tokio::spawn(async move {
                        let mut done = Vec::new();
                        while let Some(path) = paths.get(next.fetch_add(1, Ordering::Relaxed)) {
                            done.push(fetch(&client, &target, path, epoch, false).await?.0);
                        }
                        Ok::<_, BoxError>(done)
                    })
                })
                .collect();
            for task in tasks {
                requests.extend(task.await??);
            }
        }
    }
    requests[1..].sort_by(|a, b| a.end_ms.total_cmp(&b.end_ms));
    Ok(PageLoad {
        requests,
        total: epoch.elapsed(),
        epoch,
    })
}

/// One request; the body is returned only when `keep` (the document).
async fn fetch(
    client: &Client,
    target: &Target,
    path: &str,
    epoch: Instant,
    keep: bool,
) -> Result<(RequestTiming, Bytes), BoxError> {
    let millis = |at: Instant| at.duration_since(epoch).as_secs_f64() * 1000.0;
    let start = Instant::now();
    let mut request =
        Request::get(format!("{}{path}", target.base)).body(crate::conn::Body::empty())?;
    if let Some(host) = &target.host {
        request.headers_mut().insert(header::HOST, host.clone());
    }
    let response = client.send(request).await?;
    let head = Instant::now();
    let status = response.status().as_u16();
    let exchange = response
        .body()
        .exchange()
        .ok_or("the client reported no exchange")?;
    let body = response.into_body();
    let (body_bytes, kept) = if keep {
        let all = body.bytes(u64::MAX).await?;
        (all.len() as u64, all)
    } else {
        (body.discard().await?, Bytes::new())
    };
    if status != 200 {
        return Err(format!("{path}: status {status}").into());
    }
    let timing = RequestTiming {
        path: path.to_string(),
        status,
        body_bytes,
        connection: exchange.connection,
        new_connection: !exchange.reused,
        start_ms: millis(start),
        head_ms: millis(head),
        end_ms: millis(Instant::now()),
    };
    Ok((timing, kept))
}

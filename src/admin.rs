//! The admin endpoint (`--admin ADDR`): `/metrics` in the Prometheus text format,
//! `/connections` (every open connection with its state and `TCP_INFO`, as JSON), and the
//! probes a load balancer or Kubernetes asks: `/healthz` (alive) and `/ready` (200 while
//! serving, 503 once a drain began, so no new client is sent here).
//!
//! A service like any other, served by its own listener. It must not change anything: it
//! only reads.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde::Serialize;

use crate::conn::{Body, ConnSide, ConnView, Incoming, LiveConns};
use crate::metrics::Metrics;
use crate::service::Service;

/// What `/connections` returns.
#[derive(Debug, Serialize)]
pub struct ConnectionsView {
    /// Open downstream connections, and how many are idle.
    pub downstream: SideCounts,
    /// Open upstream connections, and how many are idle (pooled).
    pub upstream: SideCounts,
    /// How well each upstream group's connections are reused (a proxy's).
    pub upstreams: Vec<GroupReuse>,
    /// Every open connection, oldest first.
    pub connections: Vec<ConnView>,
}

/// How well one upstream group's connections are reused.
#[derive(Debug, Serialize)]
pub struct GroupReuse {
    /// The group's name.
    pub name: String,
    /// Connections its client opened.
    pub connections: u64,
    /// Requests its client sent (per connection opened: the reuse).
    pub requests: u64,
    /// Checkouts served by an idle connection.
    pub reused: u64,
    /// Checkouts that opened a new connection.
    pub new: u64,
    /// Requests sent again after a reused connection failed them unanswered.
    pub retries: u64,
    /// Idle connections found closed by their server.
    pub stale: u64,
    /// The idle timeout learned of its servers, in seconds.
    pub learned_idle_timeout_s: Option<f64>,
}

/// Open and idle connections on one side.
#[derive(Debug, Serialize)]
pub struct SideCounts {
    /// Open.
    pub open: u64,
    /// Of which idle.
    pub idle: u64,
    /// Requests so far on this side, over open and closed connections (`hopline top`
    /// shows the rate).
    pub requests: u64,
    /// Connections opened so far on this side (requests per connection opened: the reuse).
    pub opened: u64,
}

/// The admin service.
#[derive(Clone)]
pub struct Admin {
    metrics: Arc<Metrics>,
    live: Arc<LiveConns>,
    ready: Arc<AtomicBool>,
}

impl Admin {
    /// Serves `metrics` and the connections registered in `live` (ready until told not
    /// to be, with [`Admin::with_readiness`]).
    pub fn new(metrics: Arc<Metrics>, live: Arc<LiveConns>) -> Self {
        Admin {
            metrics,
            live,
            ready: Arc::new(AtomicBool::new(true)),
        }
    }

    /// `/ready` answers what `ready` says (the server clears it when it starts draining).
    pub fn with_readiness(mut self, ready: Arc<AtomicBool>) -> Self {
        self.ready = ready;
        self
    }

    fn connections(&self) -> ConnectionsView {
        let connections = self.live.snapshot();
        let counts = |side: ConnSide| {
            let on_side = connections.iter().filter(|c| c.side == side);
            let open_requests: u64 = on_side.clone().map(|c| c.requests).sum();
            SideCounts {
                open: on_side.clone().count() as u64,
                idle: on_side
                    .filter(|c| c.state == crate::conn::ConnState::Idle)
                    .count() as u64,
                requests: self.metrics.closed_requests(side) + open_requests,
                opened: self.metrics.opened(side),
            }
        };
        let upstreams = (self.metrics.upstream_counts().into_iter())
            .map(|counts| GroupReuse {
                name: counts.name,
                connections: counts.connections,
                requests: counts.requests,
                reused: counts.reused,
                new: counts.new,
                retries: counts.retries,
                stale: counts.stale_evicted,
                learned_idle_timeout_s: counts.learned_idle_timeout.map(|d| d.as_secs_f64()),
            })
            .collect();
        ConnectionsView {
            downstream: counts(ConnSide::Downstream),
            upstream: counts(ConnSide::Upstream),
            upstreams,
            connections,
        }
    }
}

fn respond(content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl Service<Request<Incoming>> for Admin {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        ready(Ok(self.answer(&request)))
    }
}

impl Admin {
    fn answer(&self, request: &Request<Incoming>) -> Response<Body> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = crate::conn::error_response(StatusCode::METHOD_NOT_ALLOWED);
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        match request.uri().path() {
            "/metrics" => respond(
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                self.metrics.encode(),
            ),
            "/connections" => respond(
                "application/json",
                serde_json::to_string_pretty(&self.connections()).expect("serialisable") + "\n",
            ),
            "/healthz" => respond("text/plain; charset=utf-8", "ok\n".into()),
            "/ready" if self.ready.load(Ordering::Relaxed) => {
                respond("text/plain; charset=utf-8", "ready\n".into())
            }
            "/ready" => {
                let mut response = respond("text/plain; charset=utf-8", "draining\n".into());
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                response
            }
            "/" => respond(
                "text/plain; charset=utf-8",
                "hopline admin: /metrics (Prometheus text format), /connections (JSON), \
                 /ready, /healthz\n"
                    .into(),
            ),
            _ => crate::conn::error_response(StatusCode::NOT_FOUND),
        }
    }
}

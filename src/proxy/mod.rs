//! `proxy`: the policy of one hop. The proxy ends the client's connection (the server
//! engine does, with the downstream policy) and opens its own to the next hop (the client,
//! with the upstream policy): two independent connection types on either side.
//!
//! Owns what crosses the hop: the target (reverse: an upstream by round-robin or least
//! outstanding requests; forward: the absolute-form target, or a CONNECT tunnel), the
//! header rules of an intermediary (hop-by-hop fields removed both ways, `Via`,
//! `X-Forwarded-For`, `Forwarded`, loop refusal), bodies streamed both ways with
//! backpressure and re-framed per hop, `Expect: 100-continue` passed through, protocol
//! switches tunneled, and failures mapped to status codes (502, 504) with the failing side
//! logged. It must not re-implement framing (that is `conn`) or pooling (that is `pool`).
//!
//! | module | owns |
//! |---|---|
//! | [`headers`] | hop-by-hop removal, `Via`, forwarded fields, loop detection |
//! | [`upstream`] | upstream choice and health marks |

pub mod headers;
pub mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body::{Body as _, Frame};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::client::{Client, ClientOptions, ProxySource};
use crate::conn::{
    Body, Grouped, Incoming, RequestCtx, UpstreamNote, error_response, splice, upgrade,
    upgrade_channel,
};
use crate::error::{Error, ErrorKind, Side};
use crate::pool::Key;
use crate::service::Service;
use crate::wire::TargetForm;
use headers::{
    ForwardedFor, ViaEntries, accepts_trailers, add_forwarded, strip_hop_by_hop, via_names,
};
use upstream::{Pick, Upstreams};

/// A group of upstream servers with its own connection policy, and the requests it takes.
#[derive(Debug)]
pub struct Group {
    /// Its name (the `upstream` label of metrics, and logs).
    pub name: Arc<str>,
    /// Takes requests for this host (`Host` without its port, any case); any host if
    /// `None`.
    pub host: Option<String>,
    /// Takes requests whose path starts with this; any path if `None`.
    pub path_prefix: Option<String>,
    /// Its servers, and how requests spread over them.
    pub upstreams: Upstreams,
    /// Its connection policy; `None`: the proxy's [`ProxyConfig::upstream`].
    pub policy: Option<ClientOptions>,
}

impl Group {
    /// A group that takes every request.
    pub fn catch_all(name: &str, upstreams: Upstreams) -> Self {
        Group {
            name: name.into(),
            host: None,
            path_prefix: None,
            upstreams,
            policy: None,
        }
    }

    /// Whether it takes `request` (its `Host` with the port stripped, and its path).
    fn takes(&self, request: &http::request::Parts) -> bool {
        let host_ok = self.host.as_deref().is_none_or(|want| {
            requested_host(request)
                .map(host_without_port)
                .is_some_and(|h| h.eq_ignore_ascii_case(want))
        });
        host_ok
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|prefix| request.uri.path().starts_with(prefix))
    }
}

/// Where a proxy sends requests.
#[derive(Debug)]
pub enum Target {
    /// A reverse proxy: each request goes to the first group that takes it (404 if none
    /// does), and to one of that group's upstreams.
    Reverse(Vec<Group>),
    /// A forward proxy: requests name their target (absolute-form), and CONNECT opens
    /// tunnels to the allowed ports.
    Forward {
        /// Ports CONNECT may reach. Default 443 only.
        connect_ports: Vec<u16>,
    },
}

/// A proxy's settings. Build them with [`ProxyConfig::reverse`], [`ProxyConfig::forward`]
/// or [`ProxyConfig::new`] and set the fields that differ.
#[derive(Debug)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// The name this proxy uses in `Via`, and recognises there to refuse loops. Default
    /// `hopline`.
    pub name: String,
    /// Reverse or forward.
    pub target: Target,
    /// The upstream hop's connection policy: type (close, keep-alive, pipeline), pool,
    /// timeouts, HTTP version (a chunked body for an HTTP/1.0 upstream is buffered up to
    /// its `max_buffered_body`).
    pub upstream: ClientOptions,
    /// Add `X-Forwarded-For` and `Forwarded`. Default `true`.
    pub forwarded_headers: bool,
    /// Note in each response which upstream connection answered ([`UpstreamNote`], for the
    /// access log). Default `false` (it costs an allocation per response).
    pub note_upstream: bool,
}

impl ProxyConfig {
    /// A proxy to `target` with default settings.
    pub fn new(target: Target) -> Self {
        ProxyConfig {
            name: "hopline".into(),
            target,
            upstream: ClientOptions::default(),
            forwarded_headers: true,
            note_upstream: false,
        }
    }

    /// A reverse proxy to `upstreams` (one catch-all group, `default`) with default
    /// settings.
    pub fn reverse(upstreams: Upstreams) -> Self {
        Self::new(Target::Reverse(vec![Group::catch_all(
            "default", upstreams,
        )]))
    }

    /// A forward proxy with default settings (CONNECT to port 443 only).
    pub fn forward() -> Self {
        Self::new(Target::Forward {
            connect_ports: vec![443],
        })
    }
}

/// The proxy, a tower service: serve it with a [`crate::server::Server`], whose
/// `ServerConfig` is the downstream policy. Cheap to clone (a server clones it per
/// connection); its settings can be replaced while it runs ([`Proxy::reload`]).
#[derive(Clone)]
pub struct Proxy {
    state: Arc<RwLock<Arc<Policy>>>,
}

/// A proxy's settings and what is built from them. A request holds the state it started
/// with until its response ends, so a reload never changes a request midway.
struct Policy {
    config: ProxyConfig,
    via: ViaEntries,
    /// One client per group (reverse), or the one client (forward).
    clients: Vec<Client>,
}

/// Where one request goes.
struct Destination<'a> {
    client: &'a Client,
    /// The next hop's `host:port`.
    authority: Authority,
    key: Key,
    /// The upstream chosen (reverse), counted outstanding until the response ends.
    pick: Option<Pick>,
    /// The group's index (reverse), for marking an upstream down.
    group: Option<usize>,
}

/// What the proxy knows about the request it forwards, from what the server parsed.
struct Hop {
    /// The client's address (`X-Forwarded-For`, `Forwarded`, a PROXY protocol header).
    peer: Option<SocketAddr>,
    /// The address the client connected to (a PROXY protocol header).
    local: Option<SocketAddr>,
    /// It arrived over TLS (`proto=https`, `X-Forwarded-Proto: https`).
    secure: bool,
    /// The version the request came in (`Via`).
    received: Version,
    /// It asks to switch protocols on this hop (RFC 9110 §7.8): forwarded end to end.
    wants_upgrade: bool,
    /// It accepts trailers (`TE: trailers`).
    trailers_ok: bool,
    method: Method,
    /// `OPTIONS *` in effect: the asterisk-form, or an absolute-form target with no path
    /// (RFC 9112 §3.2.4: the last proxy sends `*`).
    asterisk: bool,
}

impl Hop {
    fn of(request: &Request<Incoming>) -> Self {
        let ctx = RequestCtx::of(request);
        Hop {
            peer: ctx.map(|ctx| ctx.conn.peer),
            local: ctx.map(|ctx| ctx.conn.local),
            secure: ctx.is_some_and(|ctx| ctx.conn.secure),
            received: request.version(),
            wants_upgrade: ctx.is_some_and(|ctx| ctx.fields.wants_upgrade()),
            trailers_ok: accepts_trailers(request.headers()),
            method: request.method().clone(),
            asterisk: request.method() == Method::OPTIONS
                && ctx.is_some_and(|ctx| {
                    matches!(
                        ctx.target_form,
                        TargetForm::Asterisk | TargetForm::Absolute { empty_path: true }
                    )
                }),
        }
    }
}

/// A request the proxy cannot forward, and the answer it gets.
struct Refusal {
    status: StatusCode,
    error: Error,
}

impl Refusal {
    fn local(status: StatusCode, why: &'static str) -> Self {
        Refusal {
            status,
            error: Error::new(Side::Local, ErrorKind::Closed(why)),
        }
    }

    fn into_response(self) -> Response<Body> {
        if self.error.side != Side::Upstream {
            tracing::info!(side = %self.error.side, error = %self.error, status = %self.status, "proxy: request refused");
        }
        let mut response = error_response(self.status);
        if self.status == StatusCode::LOOP_DETECTED {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl Proxy {
    /// A proxy with these settings.
    pub fn new(config: ProxyConfig) -> Self {
        Proxy {
            state: Arc::new(RwLock::new(Arc::new(Policy::new(config)))),
        }
    }

    fn state(&self) -> Arc<Policy> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the settings: requests that start from now on use the new ones (new
    /// groups, new pools); requests in progress finish with the old ones, whose idle
    /// connections close once the last of them ends.
    pub fn reload(&self, config: ProxyConfig) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Policy::new(config));
    }

    /// The upstream client of the first group (forward: the client): its counters show
    /// how the upstream hop used connections.
    pub fn client(&self) -> Client {
        self.state().clients[0].clone()
    }

    /// Every group's name and client (forward: one, named `forward`).
    pub fn clients(&self) -> Vec<(String, Client)> {
        let state = self.state();
        match &state.config.target {
            Target::Reverse(groups) => groups
                .iter()
                .map(|g| g.name.to_string())
                .zip(state.clients.iter().cloned())
                .collect(),
            Target::Forward { .. } => vec![("forward".into(), state.clients[0].clone())],
        }
    }

    /// Each upstream group's servers and whether each is up (reverse proxy; none forward).
    pub fn server_states(&self) -> Vec<(String, Vec<(String, bool)>)> {
        match &self.state().config.target {
            Target::Reverse(groups) => groups
                .iter()
                .map(|g| (g.name.to_string(), g.upstreams.states()))
                .collect(),
            Target::Forward { .. } => Vec::new(),
        }
    }

    /// The proxy's name (in `Via`).
    pub fn name(&self) -> String {
        self.state().config.name.clone()
    }
}

impl Service<Request<Incoming>> for Proxy {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let state = self.state();
        Box::pin(async move {
            Ok(match state.forward(request).await {
                Ok(response) => response,
                Err(refusal) => refusal.into_response(),
            })
        })
    }
}

/// A reverse proxy group's client: its connections' closes reported with the group's name,
/// its servers' standby connections kept ready (if its policy asks for some and a runtime
/// runs).
fn group_client(group: &Group, config: &ProxyConfig) -> Client {
    let mut options = (group.policy.clone()).unwrap_or_else(|| config.upstream.clone());
    // Its connections' closes are counted by group.
    options.conn.hooks.observer = (options.conn.hooks.observer.take()).map(|inner| {
        let grouped = Grouped {
            group: group.name.clone(),
            inner,
        };
        Arc::new(grouped) as Arc<dyn crate::conn::Observer>
    });
    let client = Client::new(options);
    if tokio::runtime::Handle::try_current().is_ok() {
        for url in group.upstreams.urls() {
            if let Err(error) = client.keep_ready(url) {
                tracing::warn!(%url, %error, "no standby connections");
            }
        }
    }
    client
}

impl Policy {
    fn new(config: ProxyConfig) -> Self {
        let clients = match &config.target {
            Target::Reverse(groups) => groups.iter().map(|g| group_client(g, &config)).collect(),
            Target::Forward { .. } => vec![Client::new(config.upstream.clone())],
        };
        let via = ViaEntries::new(&config.name);
        Policy {
            config,
            via,
            clients,
        }
    }

    /// Forwards one request, the policy of this hop in order: refuse a loop; open a tunnel
    /// for CONNECT; choose the next hop; rewrite the fields that cross it; send it with
    /// the next hop's client (which owns the exchange); hand a protocol switch over, or
    /// relay the response. `Err` is answered with an error status.
    async fn forward(&self, request: Request<Incoming>) -> Result<Response<Body>, Refusal> {
        if via_names(request.headers(), &self.config.name) {
            return Err(Refusal::local(
                StatusCode::LOOP_DETECTED,
                "the request looped: Via already names this proxy",
            ));
        }
        if request.method() == Method::CONNECT {
            // Boxed: a tunnel's connect must not grow every request's future.
            return Box::pin(self.connect_tunnel(request.uri())).await;
        }
        let hop = Hop::of(&request);
        let (mut parts, body) = request.into_parts();
        let destination = self.destination(&parts)?;
        self.rewrite(&mut parts, &hop, &destination);
        if destination.client.options().proxy_protocol.is_some()
            && let (Some(client), Some(local)) = (hop.peer, hop.local)
        {
            // The upstream learns whose connection this is from a PROXY header.
            parts.extensions.insert(ProxySource { client, local });
        }
        let outbound = Request::from_parts(parts, body);
        let sent = self.config.note_upstream.then(Instant::now);
        let mut response = destination
            .client
            .send(outbound)
            .await
            .map_err(|error| self.upstream_failure(error, &destination))?;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS && hop.wants_upgrade {
            return Ok(self.switch(&mut response));
        }
        let group = destination.group.and_then(|index| self.group_name(index));
        Ok(self.relay(
            response,
            &hop,
            destination.pick,
            sent.map(|sent| (sent, group)),
        ))
    }

    /// The name of the reverse proxy's group `index`.
    fn group_name(&self, index: usize) -> Option<Arc<str>> {
        match &self.config.target {
            Target::Reverse(groups) => groups.get(index).map(|g| g.name.clone()),
            Target::Forward { .. } => None,
        }
    }

    /// The next hop: reverse, the first group that takes the request and one of its
    /// upstreams; forward, the authority of the absolute-form target.
    fn destination(&self, parts: &http::request::Parts) -> Result<Destination<'_>, Refusal> {
        match &self.config.target {
            Target::Reverse(groups) => {
                let index = groups.iter().position(|g| g.takes(parts)).ok_or_else(|| {
                    Refusal::local(
                        StatusCode::NOT_FOUND,
                        "no upstream group takes this request",
                    )
                })?;
                let pick = groups[index].upstreams.pick();
                Ok(Destination {
                    client: &self.clients[index],
                    authority: pick.upstream.authority.clone(),
                    key: pick.upstream.key.clone(),
                    pick: Some(pick),
                    group: Some(index),
                })
            }
            Target::Forward { .. } => {
                let uri = &parts.uri;
                let (Some(key), Some(authority)) = (
                    Key::from_uri(uri).filter(|_| uri.scheme().is_some()),
                    uri.authority(),
                ) else {
                    return Err(Refusal::local(
                        StatusCode::BAD_REQUEST,
                        "a forward proxy needs an absolute-form target (http://host/path)",
                    ));
                };
                if !key.is_tls() && key.scheme() != "http" {
                    return Err(Refusal::local(
                        StatusCode::NOT_IMPLEMENTED,
                        "only http:// and https:// targets are forwarded",
                    ));
                }
                Ok(Destination {
                    client: &self.clients[0],
                    authority: authority.clone(),
                    key,
                    pick: None,
                    group: None,
                })
            }
        }
    }

    /// What crosses the hop: hop-by-hop fields removed (RFC 9110 §7.6.1), `Host` as the
    /// target decides it (RFC 9112 §3.2.2), `Via`, the forwarded fields, and the target
    /// rewritten for the next hop (its form kept: origin-form, or `*`).
    fn rewrite(&self, parts: &mut http::request::Parts, hop: &Hop, destination: &Destination<'_>) {
        // For `Forwarded` (read before the fields change; the `Host` value is shared, not
        // copied).
        let client_host = self
            .config
            .forwarded_headers
            .then(|| requested_host_value(parts))
            .flatten();
        let headers = &mut parts.headers;
        strip_hop_by_hop(headers, hop.wants_upgrade);
        // `Via` and the forwarded fields: one growth of the map at most.
        headers.reserve(3);
        if matches!(self.config.target, Target::Forward { .. }) {
            // With an absolute-form target, the target's authority is the host; the client
            // sends it as Host.
            headers.remove(header::HOST);
        } else if let Some(authority) = parts.uri.authority()
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            // The same rule in a reverse proxy: a received Host that disagrees with an
            // absolute-form target is ignored, so the next hop cannot read the request
            // as addressed elsewhere.
            headers.insert(header::HOST, host);
        }
        self.via.add(headers, hop.received);
        if let (true, Some(client)) = (self.config.forwarded_headers, hop.peer) {
            let forwarded = ForwardedFor {
                client,
                proto: if hop.secure { "https" } else { "http" },
                host: client_host.as_ref().and_then(|h| h.to_str().ok()),
            };
            add_forwarded(headers, forwarded);
        }
        let path = match parts.uri.path_and_query() {
            _ if hop.asterisk => PathAndQuery::from_static("*"),
            Some(pq) if pq.as_str().starts_with('/') => pq.clone(),
            Some(pq) => PathAndQuery::try_from(format!("/{}", pq.as_str()))
                .unwrap_or_else(|_| PathAndQuery::from_static("/")),
            None => PathAndQuery::from_static("/"),
        };
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(if destination.key.is_tls() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        });
        uri.authority = Some(destination.authority.clone());
        uri.path_and_query = Some(path);
        parts.uri = Uri::from_parts(uri).unwrap_or_else(|_| parts.uri.clone());
    }

    /// The upstream's response, for the client: hop-by-hop fields removed, `Via` added,
    /// the body relayed as it arrives.
    /// `noted` is when the request was handed to the upstream's client and the group it
    /// went to, if the upstream is noted for the observer.
    fn relay(
        &self,
        response: Response<Incoming>,
        hop: &Hop,
        pick: Option<Pick>,
        noted: Option<(Instant, Option<Arc<str>>)>,
    ) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        if let (Some((sent, group)), Some(exchange)) = (noted, body.exchange()) {
            let note = UpstreamNote {
                connection: exchange.connection,
                reused: exchange.reused,
                peer: exchange.peer,
                header_time: sent.elapsed(),
                group,
            };
            parts.extensions.insert(note);
        }
        let declared = parts.headers.get(header::CONTENT_LENGTH).cloned();
        strip_hop_by_hop(&mut parts.headers, false);
        // A HEAD or 304 answer has no body but may state the length of the one it stands
        // for; the connection writes it on from the handler's field.
        if let (Some(length), true) = (
            declared,
            hop.method == Method::HEAD || parts.status == StatusCode::NOT_MODIFIED,
        ) {
            parts.headers.insert(header::CONTENT_LENGTH, length);
        }
        parts.headers.reserve(1);
        self.via.add(&mut parts.headers, parts.version);
        let body = if body.is_end_stream() {
            Body::empty()
        } else {
            Body::new(Relay {
                body,
                trailers_ok: hop.trailers_ok,
                _pick: pick,
            })
        };
        Response::from_parts(parts, body)
    }

    /// A 101 from the upstream: answer the client with a switch, then splice the two
    /// connections.
    fn switch(&self, response: &mut Response<Incoming>) -> Response<Body> {
        let Some(upstream) = upgrade::take(response) else {
            return error_response(StatusCode::BAD_GATEWAY);
        };
        let mut headers = std::mem::take(response.headers_mut());
        strip_hop_by_hop(&mut headers, true);
        self.via.add(&mut headers, response.version());
        let (slot, on_upgrade) = upgrade_channel();
        tokio::spawn(async move {
            if let Ok(downstream) = on_upgrade.await
                && let Err(error) = splice(
                    downstream.stream,
                    downstream.read_buf,
                    upstream.stream,
                    upstream.read_buf,
                )
                .await
            {
                tracing::debug!(%error, "upgraded tunnel ended with an error");
            }
        });
        let mut switched = Response::new(Body::empty());
        *switched.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *switched.headers_mut() = headers;
        switched.extensions_mut().insert(slot);
        switched
    }

    /// `CONNECT host:port` (forward mode): a TCP tunnel to an allowed port.
    async fn connect_tunnel(&self, uri: &Uri) -> Result<Response<Body>, Refusal> {
        let Target::Forward { connect_ports } = &self.config.target else {
            return Err(Refusal::local(
                StatusCode::METHOD_NOT_ALLOWED,
                "CONNECT is only accepted by a forward proxy",
            ));
        };
        let authority = uri
            .authority()
            .ok_or_else(|| Refusal::local(StatusCode::BAD_REQUEST, "CONNECT needs host:port"))?;
        let port = authority
            .port_u16()
            .ok_or_else(|| Refusal::local(StatusCode::BAD_REQUEST, "CONNECT needs host:port"))?;
        if !connect_ports.contains(&port) {
            return Err(Refusal::local(
                StatusCode::FORBIDDEN,
                "CONNECT to this port is not allowed",
            ));
        }
        let host = authority.host().trim_matches(['[', ']']).to_string();
        let timeout = self.config.upstream.connect_timeout;
        let connect = async {
            let addr: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .next()
                .ok_or_else(|| std::io::Error::other("the host has no address"))?;
            TcpStream::connect(addr).await
        };
        let upstream = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::warn!(side = "upstream", upstream = %authority, %error, "proxy: CONNECT failed");
                return Err(Refusal {
                    status: StatusCode::BAD_GATEWAY,
                    error: Error::new(Side::Upstream, error),
                });
            }
            Err(_) => {
                return Err(Refusal {
                    status: StatusCode::GATEWAY_TIMEOUT,
                    error: Error::new(Side::Upstream, ErrorKind::Timeout("connecting")),
                });
            }
        };
        let _ = upstream.set_nodelay(true);
        let (slot, on_upgrade) = upgrade_channel();
        tokio::spawn(async move {
            if let Ok(downstream) = on_upgrade.await {
                let _ = splice(
                    downstream.stream,
                    downstream.read_buf,
                    upstream,
                    Bytes::new(),
                )
                .await;
            }
        });
        let mut response = Response::new(Body::empty());
        response.extensions_mut().insert(slot);
        Ok(response)
    }

    /// Maps an upstream failure to its answer, logs it with the failing side, and marks an
    /// upstream that refused connections.
    fn upstream_failure(&self, error: Error, destination: &Destination<'_>) -> Refusal {
        let refused = matches!(&error.kind, ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused);
        if refused
            && let (Target::Reverse(groups), Some(group), Some(pick)) = (
                &self.config.target,
                destination.group,
                destination.pick.as_ref(),
            )
        {
            groups[group].upstreams.mark_down(&pick.upstream);
        }
        let status = match (&error.side, &error.kind) {
            (Side::Upstream, ErrorKind::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            (Side::Client, _) => error.client_status().unwrap_or(StatusCode::BAD_REQUEST),
            (Side::Local, ErrorKind::Parse(parse)) => parse.status(),
            _ => StatusCode::BAD_GATEWAY,
        };
        if error.side == Side::Upstream {
            tracing::warn!(side = %error.side, upstream = %destination.key, %error, %status, "proxy: request failed");
        }
        Refusal { status, error }
    }
}

/// The upstream's response body on its way to the client: trailers dropped if the client
/// did not say it accepts them; the upstream counted outstanding until the body ends.
struct Relay {
    body: Incoming,
    trailers_ok: bool,
    _pick: Option<Pick>,
}

impl http_body::Body for Relay {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        Poll::Ready(match frame {
            Some(Ok(frame)) if frame.is_trailers() && !self.trailers_ok => None,
            other => other,
        })
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The host a request is addressed to (RFC 9112 §3.2.2): an absolute-form target's
/// authority, otherwise its `Host` field.
fn requested_host(parts: &http::request::Parts) -> Option<&str> {
    match parts.uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok()),
    }
}

/// [`requested_host`] as a field value (the received `Host` shared, not copied).
fn requested_host_value(parts: &http::request::Parts) -> Option<HeaderValue> {
    match parts.uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    }
}

/// `host` without a `:port` suffix (and without the brackets of an IPv6 literal).
fn host_without_port(host: &str) -> &str {
    let host = match host.rfind(':') {
        Some(colon)
            if !host[colon..].contains(']')
                && host[colon + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            &host[..colon]
        }
        _ => host,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

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

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use tokio::net::TcpStream;

use crate::client::{Client, ClientOptions, Outgoing, ResponseBody};
use crate::conn::body::{Body, BodySource, Frame, RequestBody};
use crate::conn::client::{ContinueOutcome, RequestFraming, origin_form};
use crate::conn::{Handler, RequestCtx, UpstreamNote, error_response, splice, upgrade_channel};
use crate::error::{BoxError, Error, ErrorKind, Side};
use crate::pool::Key;
use headers::{
    ForwardedFor, ViaEntries, accepts_trailers, add_forwarded, strip_hop_by_hop, via_names,
};
use upstream::{Pick, Upstreams};

/// A group of upstream servers with its own connection policy, and the requests it takes.
#[derive(Debug)]
pub struct Group {
    /// Its name (the `upstream` label of metrics, and logs).
    pub name: String,
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
    fn takes(&self, request: &Request<RequestBody<'_>>) -> bool {
        let host_ok = self.host.as_deref().is_none_or(|want| {
            requested_host(request)
                .map(host_without_port)
                .is_some_and(|h| h.eq_ignore_ascii_case(want))
        });
        host_ok
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|prefix| request.uri().path().starts_with(prefix))
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

/// A proxy's settings.
#[derive(Debug)]
pub struct ProxyConfig {
    /// The name this proxy uses in `Via`, and recognises there to refuse loops. Default
    /// `hopline`.
    pub name: String,
    /// Reverse or forward.
    pub target: Target,
    /// The upstream hop's connection policy: type (close, keep-alive, pipeline), pool,
    /// timeouts, HTTP version.
    pub upstream: ClientOptions,
    /// Add `X-Forwarded-For` and `Forwarded`. Default `true`.
    pub forwarded_headers: bool,
    /// Largest chunked request body buffered for an HTTP/1.0 upstream, which cannot take
    /// chunked (beyond it: 413). Default 16 MiB.
    pub max_buffered_body: u64,
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
            max_buffered_body: 16 * 1024 * 1024,
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

/// The proxy handler: plug it into a [`crate::server::Server`], whose `ServerConfig` is the
/// downstream policy. Its settings can be replaced while it runs ([`Proxy::reload`]).
pub struct Proxy {
    state: RwLock<Arc<State>>,
}

/// A proxy's settings and what is built from them. A request holds the state it started
/// with until its response ends, so a reload never changes a request midway.
struct State {
    config: ProxyConfig,
    via: ViaEntries,
    /// One client per group (reverse), or the one client (forward).
    clients: Vec<Client>,
}

/// Where one request goes.
struct Destination<'a> {
    key: Key,
    target: Bytes,
    authority: Option<String>,
    pick: Option<Pick>,
    client: &'a Client,
    /// The group's index (reverse), for marking an upstream down.
    group: Option<usize>,
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
}

impl Proxy {
    /// A proxy with these settings.
    pub fn new(config: ProxyConfig) -> Self {
        Proxy {
            state: RwLock::new(Arc::new(State::new(config))),
        }
    }

    fn state(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the settings: requests that start from now on use the new ones (new
    /// groups, new pools); requests in progress finish with the old ones, whose idle
    /// connections close once the last of them ends.
    pub fn reload(&self, config: ProxyConfig) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(State::new(config));
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
                .map(|g| g.name.clone())
                .zip(state.clients.iter().cloned())
                .collect(),
            Target::Forward { .. } => vec![("forward".into(), state.clients[0].clone())],
        }
    }

    /// The proxy's name (in `Via`).
    pub fn name(&self) -> String {
        self.state().config.name.clone()
    }
}

impl State {
    fn new(config: ProxyConfig) -> Self {
        let clients = match &config.target {
            Target::Reverse(groups) => groups
                .iter()
                .map(|g| Client::new(g.policy.clone().unwrap_or_else(|| config.upstream.clone())))
                .collect(),
            Target::Forward { .. } => vec![Client::new(config.upstream.clone())],
        };
        let via = ViaEntries::new(&config.name);
        State {
            config,
            via,
            clients,
        }
    }

    /// Forwards one request; `Err` is answered with an error status.
    async fn forward(
        &self,
        mut request: Request<RequestBody<'_>>,
        ctx: RequestCtx<'_>,
    ) -> Result<Response<Body>, Refusal> {
        let received = request.version();
        if via_names(request.headers(), &self.config.name) {
            return Err(Refusal::local(
                StatusCode::LOOP_DETECTED,
                "the request looped: Via already names this proxy",
            ));
        }
        if request.method() == Method::CONNECT {
            return self.connect_tunnel(&request).await;
        }
        let wants_upgrade = received == Version::HTTP_11
            && request.headers().contains_key(header::UPGRADE)
            && request
                .headers()
                .get_all(header::CONNECTION)
                .iter()
                .any(|v| {
                    crate::wire::headers::list_members(v.as_bytes())
                        .any(|o| o.eq_ignore_ascii_case(b"upgrade"))
                });
        let trailers_ok = accepts_trailers(request.headers());
        let is_head = request.method() == Method::HEAD;

        // Where it goes.
        let Destination {
            key,
            target,
            authority,
            pick,
            client,
            group,
        } = self.destination(&request)?;
        // For `Forwarded` (read before the headers move on).
        let client_host = self
            .config
            .forwarded_headers
            .then(|| requested_host(&request).map(str::to_string))
            .flatten();

        // What crosses the hop.
        let mut headers = std::mem::take(request.headers_mut());
        strip_hop_by_hop(&mut headers, wants_upgrade);
        if matches!(self.config.target, Target::Forward { .. }) {
            // RFC 9112 §3.2.2: with an absolute-form target, the target's authority is the
            // host; the proxy sends it as Host.
            headers.remove(header::HOST);
        } else if let Some(authority) = request.uri().authority()
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            // The same rule in a reverse proxy: a received Host that disagrees with an
            // absolute-form target is ignored, so the next hop cannot read the request
            // as addressed elsewhere.
            headers.insert(header::HOST, host);
        }
        self.via.add(&mut headers, received);
        if self.config.forwarded_headers {
            let hop = ForwardedFor {
                client: ctx.conn.peer,
                proto: "http",
                host: client_host.as_deref(),
            };
            add_forwarded(&mut headers, hop);
        }

        // A bodiless request goes through the client's own machinery: its connection type
        // (pooled, pipelined, or a new connection), and safe retries.
        if request.body().is_end() && !wants_upgrade {
            let outgoing = Outgoing {
                key: key.clone(),
                method: request.method().clone(),
                target,
                authority,
                headers,
                body: Bytes::new(),
            };
            let response = client
                .send(outgoing)
                .await
                .map_err(|error| self.upstream_failure(error, &key, group, pick.as_ref()))?;
            return Ok(self.relay(response, trailers_ok, is_head, pick));
        }

        // A body streams through (it cannot be replayed, so no retry), as does a switch.
        let method = request.method().clone();
        let mut lease = client
            .lease(&key, wants_upgrade)
            .await
            .map_err(|error| self.upstream_failure(error, &key, group, pick.as_ref()))?;
        let expects_continue = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let body = request.body_mut();
        let (framing, buffered) = self.request_framing(client, body).await?;
        let close = lease.closes();
        let conn = lease.conn_mut();
        let fail = |error: Error| self.upstream_failure(error, &key, group, pick.as_ref());
        conn.write_head(
            &method,
            &target,
            authority.as_deref(),
            &headers,
            framing,
            close,
        )
        .map_err(fail)?;
        conn.flush().await.map_err(fail)?;
        let mut early = None;
        if expects_continue && buffered.is_none() {
            // RFC 9110 §10.1.1: pass the expectation on; read the client's body (which
            // sends it 100 Continue) only once the upstream wants it.
            match conn.await_continue().await.map_err(fail)? {
                ContinueOutcome::SendBody => {}
                ContinueOutcome::Final(head) => early = Some(*head),
            }
        }
        let head = match early {
            Some(head) => {
                conn.abandon_body();
                head
            }
            None => match self.send_body(conn, body, buffered).await {
                Ok(()) => conn.read_head().await.map_err(fail)?,
                // RFC 9112 §9.5: a server may answer before it has read the whole body
                // (a 413, say) and stop reading; sending then fails. Its answer is the
                // one to relay, if it came.
                Err(refusal) if refusal.error.side == Side::Upstream => {
                    conn.abandon_body();
                    match conn.read_head().await {
                        Ok(head) => head,
                        Err(_) => return Err(refusal),
                    }
                }
                Err(refusal) => return Err(refusal),
            },
        };
        if head.status == StatusCode::SWITCHING_PROTOCOLS && wants_upgrade {
            return Ok(self.switch(head.headers, head.version, lease));
        }
        let mut response = Response::new(lease.into_body(head.framing, false));
        *response.status_mut() = head.status;
        *response.version_mut() = head.version;
        *response.headers_mut() = head.headers;
        Ok(self.relay(response, trailers_ok, is_head, pick))
    }

    /// The next hop's key, request target, `Host`, and (reverse) the upstream chosen.
    fn destination(&self, request: &Request<RequestBody<'_>>) -> Result<Destination<'_>, Refusal> {
        match &self.config.target {
            Target::Reverse(groups) => {
                let index = groups
                    .iter()
                    .position(|g| g.takes(request))
                    .ok_or_else(|| {
                        Refusal::local(
                            StatusCode::NOT_FOUND,
                            "no upstream group takes this request",
                        )
                    })?;
                let pick = groups[index].upstreams.pick();
                let upstream = pick.upstream.clone();
                Ok(Destination {
                    key: upstream.key.clone(),
                    target: origin_form(request.uri()),
                    authority: Some(upstream.authority.clone()),
                    pick: Some(pick),
                    client: &self.clients[index],
                    group: Some(index),
                })
            }
            Target::Forward { .. } => {
                let uri = request.uri();
                let key = Key::from_uri(uri)
                    .filter(|_| uri.scheme().is_some())
                    .ok_or_else(|| {
                        Refusal::local(
                            StatusCode::BAD_REQUEST,
                            "a forward proxy needs an absolute-form target (http://host/path)",
                        )
                    })?;
                if &*key.scheme != "http" {
                    return Err(Refusal::local(
                        StatusCode::NOT_IMPLEMENTED,
                        "only http:// targets are forwarded (use CONNECT for TLS)",
                    ));
                }
                let authority = uri.authority().map(|a| a.to_string());
                Ok(Destination {
                    key,
                    target: origin_form(uri),
                    authority,
                    pick: None,
                    client: &self.clients[0],
                    group: None,
                })
            }
        }
    }

    /// How the request body goes to the next hop: its length if known, chunked otherwise;
    /// an HTTP/1.0 upstream cannot take chunked, so such a body is read first (bounded).
    async fn request_framing(
        &self,
        client: &Client,
        body: &mut RequestBody<'_>,
    ) -> Result<(RequestFraming, Option<Bytes>), Refusal> {
        if body.is_end() {
            return Ok((RequestFraming::Empty, None));
        }
        if let Some(length) = body.remaining() {
            return Ok((RequestFraming::Length(length), None));
        }
        if client.options().conn.version == Version::HTTP_11 {
            return Ok((RequestFraming::Chunked, None));
        }
        let limit = self.config.max_buffered_body;
        let whole = body.collect(limit).await.map_err(|error| Refusal {
            status: error.client_status().unwrap_or(StatusCode::BAD_REQUEST),
            error,
        })?;
        Ok((RequestFraming::Length(whole.len() as u64), Some(whole)))
    }

    /// Streams the client's body to the upstream (or sends what was buffered).
    async fn send_body(
        &self,
        conn: &mut crate::conn::ClientConn,
        body: &mut RequestBody<'_>,
        buffered: Option<Bytes>,
    ) -> Result<(), Refusal> {
        let upstream = |error: Error| Refusal {
            status: StatusCode::BAD_GATEWAY,
            error,
        };
        let mut trailers: Option<HeaderMap> = None;
        if let Some(whole) = buffered {
            conn.write_body(whole).await.map_err(upstream)?;
        } else {
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(Frame::Data(data)) => conn.write_body(data).await.map_err(upstream)?,
                    Ok(Frame::Trailers(fields)) => trailers = Some(fields),
                    Err(error) => {
                        // The client's body failed (the server answers it); the upstream
                        // request is abandoned and its connection not reused.
                        conn.abandon_body();
                        return Err(Refusal {
                            status: error.client_status().unwrap_or(StatusCode::BAD_REQUEST),
                            error,
                        });
                    }
                }
            }
        }
        conn.finish_body(trailers.as_ref());
        conn.flush().await.map_err(upstream)
    }

    /// The upstream's response, for the client: hop-by-hop fields removed, `Via` added,
    /// the body relayed as it arrives.
    fn relay(
        &self,
        response: Response<ResponseBody>,
        trailers_ok: bool,
        is_head: bool,
        pick: Option<Pick>,
    ) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        if self.config.note_upstream
            && let Some(exchange) = body.exchange()
        {
            parts.extensions.insert(UpstreamNote {
                connection: exchange.connection,
                reused: exchange.reused,
                peer: exchange.peer,
            });
        }
        let declared = parts.headers.get(header::CONTENT_LENGTH).cloned();
        strip_hop_by_hop(&mut parts.headers, false);
        // A HEAD or 304 answer has no body but may state the length of the one it stands
        // for; the connection writes it on from the handler's field.
        if let (Some(length), true) = (
            declared,
            is_head || parts.status == StatusCode::NOT_MODIFIED,
        ) {
            parts.headers.insert(header::CONTENT_LENGTH, length);
        }
        self.via.add(&mut parts.headers, parts.version);
        let length = body.length();
        let source = Relay {
            body,
            trailers_ok,
            _pick: pick,
        };
        Response::from_parts(parts, Body::stream(length, source))
    }

    /// A 101 from the upstream: answer the client with a switch, then splice the two
    /// connections.
    fn switch(
        &self,
        mut headers: HeaderMap,
        version: Version,
        lease: crate::client::Lease,
    ) -> Response<Body> {
        strip_hop_by_hop(&mut headers, true);
        self.via.add(&mut headers, version);
        let (upstream, pending) = lease.into_conn().into_parts();
        let (slot, on_upgrade) = upgrade_channel();
        tokio::spawn(async move {
            if let Ok(downstream) = on_upgrade.await
                && let Err(error) =
                    splice(downstream.stream, downstream.read_buf, upstream, pending).await
            {
                tracing::debug!(%error, "upgraded tunnel ended with an error");
            }
        });
        let mut response = Response::new(Body::Empty);
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *response.headers_mut() = headers;
        response.extensions_mut().insert(slot);
        response
    }

    /// `CONNECT host:port` (forward mode): a TCP tunnel to an allowed port.
    async fn connect_tunnel(
        &self,
        request: &Request<RequestBody<'_>>,
    ) -> Result<Response<Body>, Refusal> {
        let Target::Forward { connect_ports } = &self.config.target else {
            return Err(Refusal::local(
                StatusCode::METHOD_NOT_ALLOWED,
                "CONNECT is only accepted by a forward proxy",
            ));
        };
        let authority = request
            .uri()
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
                return Err(self.upstream_failure(
                    Error::new(Side::Upstream, error),
                    &Key::new("tcp", &host, port),
                    None,
                    None,
                ));
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
        let mut response = Response::new(Body::Empty);
        response.extensions_mut().insert(slot);
        Ok(response)
    }

    /// Maps an upstream failure to its answer, logs it with the failing side, and marks an
    /// upstream that refused connections.
    fn upstream_failure(
        &self,
        error: Error,
        key: &Key,
        group: Option<usize>,
        pick: Option<&Pick>,
    ) -> Refusal {
        let refused = matches!(&error.kind, ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused);
        if refused
            && let (Target::Reverse(groups), Some(group), Some(pick)) =
                (&self.config.target, group, pick)
        {
            groups[group].upstreams.mark_down(&pick.upstream);
        }
        let status = match (&error.side, &error.kind) {
            (Side::Upstream, ErrorKind::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            (Side::Client, _) => error.client_status().unwrap_or(StatusCode::BAD_REQUEST),
            _ => StatusCode::BAD_GATEWAY,
        };
        tracing::warn!(side = %error.side, upstream = %key, %error, %status, "proxy: request failed");
        Refusal { status, error }
    }
}

impl Handler for Proxy {
    async fn call(&self, request: Request<RequestBody<'_>>, ctx: RequestCtx<'_>) -> Response<Body> {
        let state = self.state();
        match state.forward(request, ctx).await {
            Ok(response) => response,
            Err(refusal) => {
                if refusal.error.side != Side::Upstream {
                    tracing::info!(side = %refusal.error.side, error = %refusal.error, status = %refusal.status, "proxy: request refused");
                }
                let mut response = error_response(refusal.status);
                if refusal.status == StatusCode::LOOP_DETECTED {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }
        }
    }
}

/// The upstream's response body on its way to the client: trailers dropped if the client
/// did not say it accepts them; the upstream counted outstanding until the body ends.
struct Relay {
    body: ResponseBody,
    trailers_ok: bool,
    _pick: Option<Pick>,
}

impl BodySource for Relay {
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame, BoxError>>> {
        let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        Poll::Ready(match frame {
            Some(Ok(Frame::Trailers(_))) if !self.trailers_ok => None,
            other => other,
        })
    }
}

/// `host` without a `:port` suffix (and without the brackets of an IPv6 literal).
/// The host a request is addressed to (RFC 9112 §3.2.2): an absolute-form target's
/// authority, otherwise its `Host` field.
fn requested_host<B>(request: &Request<B>) -> Option<&str> {
    match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok()),
    }
}

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

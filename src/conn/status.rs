//! What open connections are doing, for operators: a live registry of connections with
//! their state and counters, the kernel's `TCP_INFO` for each (the warmth of a connection:
//! its RTT and congestion window), and the [`Observer`] hooks through which a connection
//! reports its requests and its end (metrics, access log).
//!
//! Everything here is optional: a connection registers and reports only when its server or
//! client was given [`Hooks`]. It must not format metrics or logs itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};

use crate::transport::tls::{Handshake, TlsFailure};
use crate::transport::{Stream, TlsInfo};

/// Which hop a connection belongs to, seen from this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum ConnSide {
    /// Accepted from a client.
    Downstream,
    /// Opened to an upstream server.
    Upstream,
}

/// The HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[repr(u8)]
pub enum Protocol {
    /// HTTP/1.0 or HTTP/1.1.
    #[default]
    #[cfg_attr(feature = "serde", serde(rename = "http/1.1"))]
    Http1 = 0,
    /// HTTP/2, streams multiplexed.
    #[cfg_attr(feature = "serde", serde(rename = "h2"))]
    Http2 = 1,
}

impl Protocol {
    /// The label used in metrics, JSON and `hopline top` (ALPN's names).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http/1.1",
            Protocol::Http2 => "h2",
        }
    }
}

impl ConnSide {
    /// The label used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnSide::Downstream => "downstream",
            ConnSide::Upstream => "upstream",
        }
    }
}

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[repr(u8)]
pub enum ConnState {
    /// Open with nothing to do: between requests, or parked in a pool.
    Idle = 0,
    /// Downstream: a request head is arriving.
    ReadingHead = 1,
    /// Downstream: the handler is answering (and reading the request body).
    InRequest = 2,
    /// Writing: a response (downstream) or a request (upstream).
    Writing = 3,
    /// Upstream: waiting for the response head.
    AwaitingResponse = 4,
    /// Upstream: reading the response body.
    ReadingBody = 5,
}

impl ConnState {
    /// Every state, in discriminant order.
    pub const ALL: [ConnState; 6] = [
        ConnState::Idle,
        ConnState::ReadingHead,
        ConnState::InRequest,
        ConnState::Writing,
        ConnState::AwaitingResponse,
        ConnState::ReadingBody,
    ];

    fn from_u8(value: u8) -> ConnState {
        ConnState::ALL
            .get(usize::from(value))
            .copied()
            .unwrap_or(ConnState::Idle)
    }
}

/// One registered connection: fixed facts and counters its owner updates.
#[derive(Debug)]
pub struct ConnStatus {
    side: ConnSide,
    id: u64,
    peer: SocketAddr,
    fd: RawFd,
    /// What TLS negotiated (registration follows the handshake); `None` for plain TCP.
    tls: Option<TlsInfo>,
    born: Instant,
    state: AtomicU8,
    requests: AtomicU64,
    /// [`Protocol`] as its discriminant.
    protocol: AtomicU8,
    /// HTTP/2 streams open now.
    streams: std::sync::atomic::AtomicU32,
    /// Milliseconds after `born` of the last state change.
    last_change_ms: AtomicU64,
}

impl ConnStatus {
    /// Moves to `state`.
    pub fn set_state(&self, state: ConnState) {
        self.state.store(state as u8, Ordering::Relaxed);
        self.last_change_ms
            .store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// The number of requests carried so far.
    pub fn set_requests(&self, requests: u64) {
        self.requests.store(requests, Ordering::Relaxed);
    }

    /// Says which protocol it speaks (HTTP/1.1 until told otherwise).
    pub fn set_protocol(&self, protocol: Protocol) {
        self.protocol.store(protocol as u8, Ordering::Relaxed);
    }

    /// The number of HTTP/2 streams open now.
    pub fn set_streams(&self, open: u32) {
        self.streams.store(open, Ordering::Relaxed);
    }

    /// When it was registered.
    pub fn born(&self) -> Instant {
        self.born
    }
}

/// The kernel's view of a TCP connection (`TCP_INFO`): how warm it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TcpInfo {
    /// Smoothed round-trip time, microseconds.
    pub rtt_us: u32,
    /// Round-trip time variance, microseconds.
    pub rttvar_us: u32,
    /// Congestion window, segments.
    pub snd_cwnd: u32,
    /// Sending maximum segment size, bytes.
    pub snd_mss: u32,
    /// Slow-start threshold, segments (a huge value while still in initial slow start).
    pub snd_ssthresh: u32,
    /// Segments retransmitted over the connection's life.
    pub retransmits: u32,
    /// Most recent delivery rate estimate, bytes per second.
    pub delivery_rate: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Bytes sent and acknowledged.
    pub bytes_acked: u64,
    /// Retransmission timeout, microseconds: idle longer than this, a sender's window
    /// falls back to the initial one (slow start after idle).
    pub rto_us: u32,
}

/// Reads `TCP_INFO` for a socket.
pub fn tcp_info(socket: &impl AsRawFd) -> std::io::Result<TcpInfo> {
    tcp_info_of(socket.as_raw_fd())
}

/// Reads `TCP_INFO` for a descriptor the caller keeps open (Linux; elsewhere an
/// `Unsupported` error, and the live view shows no kernel figures).
#[cfg(not(target_os = "linux"))]
pub(crate) fn tcp_info_of(_fd: RawFd) -> std::io::Result<TcpInfo> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Reads `TCP_INFO` for a descriptor the caller keeps open.
#[cfg(target_os = "linux")]
pub(crate) fn tcp_info_of(fd: RawFd) -> std::io::Result<TcpInfo> {
    // SAFETY: `tcp_info` is plain old data, zero is a valid value for all of it, and the
    // kernel writes at most `len` bytes into it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for writes of the sizes given; `fd` is a socket
    // the caller keeps open for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(TcpInfo {
        rtt_us: info.tcpi_rtt,
        rttvar_us: info.tcpi_rttvar,
        snd_cwnd: info.tcpi_snd_cwnd,
        snd_mss: info.tcpi_snd_mss,
        snd_ssthresh: info.tcpi_snd_ssthresh,
        retransmits: info.tcpi_total_retrans,
        delivery_rate: info.tcpi_delivery_rate,
        bytes_received: info.tcpi_bytes_received,
        bytes_acked: info.tcpi_bytes_acked,
        rto_us: info.tcpi_rto,
    })
}

/// A connection as the live view shows it.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ConnView {
    /// Downstream or upstream.
    pub side: ConnSide,
    /// The server's (downstream) or the client's (upstream) number for it.
    pub id: u64,
    /// The other end.
    pub peer: SocketAddr,
    /// What it is doing.
    pub state: ConnState,
    /// Since it opened, milliseconds.
    pub age_ms: u64,
    /// Since its last state change (for an idle connection: how long it has been idle).
    pub idle_ms: u64,
    /// Requests carried.
    pub requests: u64,
    /// The kernel's view; `None` if it could not be read.
    pub tcp: Option<TcpInfo>,
    /// What TLS negotiated; `None` for plain TCP.
    pub tls: Option<TlsInfo>,
    /// HTTP/1.x or HTTP/2.
    pub protocol: Protocol,
    /// HTTP/2 streams open (0 for HTTP/1.x).
    pub streams: u32,
}

/// The registry of open connections.
#[derive(Debug, Default)]
pub struct LiveConns {
    entries: Mutex<HashMap<(ConnSide, u64), Arc<ConnStatus>>>,
}

impl LiveConns {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(LiveConns::default())
    }

    /// Registers a connection; it stays listed until the returned entry is dropped, which
    /// its owner must do before closing the socket (declare the entry before the socket in
    /// the owning struct: fields drop in declaration order).
    pub fn register(
        self: &Arc<Self>,
        side: ConnSide,
        id: u64,
        peer: SocketAddr,
        stream: &Stream,
        state: ConnState,
    ) -> LiveEntry {
        let status = Arc::new(ConnStatus {
            side,
            id,
            peer,
            fd: stream.tcp().as_raw_fd(),
            tls: stream.tls_info(),
            born: Instant::now(),
            state: AtomicU8::new(state as u8),
            requests: AtomicU64::new(0),
            protocol: AtomicU8::new(Protocol::Http1 as u8),
            streams: std::sync::atomic::AtomicU32::new(0),
            last_change_ms: AtomicU64::new(0),
        });
        self.lock().insert((side, id), status.clone());
        LiveEntry {
            registry: self.clone(),
            status,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(ConnSide, u64), Arc<ConnStatus>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every open connection, with its `TCP_INFO`, oldest first.
    pub fn snapshot(&self) -> Vec<ConnView> {
        let now = Instant::now();
        let entries = self.lock();
        let mut views: Vec<ConnView> = entries
            .values()
            .map(|status| {
                let age = now.saturating_duration_since(status.born);
                let changed = Duration::from_millis(status.last_change_ms.load(Ordering::Relaxed));
                ConnView {
                    side: status.side,
                    id: status.id,
                    peer: status.peer,
                    state: ConnState::from_u8(status.state.load(Ordering::Relaxed)),
                    age_ms: age.as_millis() as u64,
                    idle_ms: age.saturating_sub(changed).as_millis() as u64,
                    requests: status.requests.load(Ordering::Relaxed),
                    // The lock is held: the owner cannot unregister, so cannot have closed
                    // the socket, while this reads it.
                    tcp: tcp_info_of(status.fd).ok(),
                    tls: status.tls.clone(),
                    protocol: if status.protocol.load(Ordering::Relaxed) == Protocol::Http2 as u8 {
                        Protocol::Http2
                    } else {
                        Protocol::Http1
                    },
                    streams: status.streams.load(Ordering::Relaxed),
                }
            })
            .collect();
        drop(entries);
        views.sort_by(|a, b| b.age_ms.cmp(&a.age_ms).then(a.id.cmp(&b.id)));
        views
    }

    /// Open connections on `side`, and how many of them are idle.
    pub fn counts(&self, side: ConnSide) -> (u64, u64) {
        let entries = self.lock();
        let mut open = 0;
        let mut idle = 0;
        for status in entries.values().filter(|s| s.side == side) {
            open += 1;
            if status.state.load(Ordering::Relaxed) == ConnState::Idle as u8 {
                idle += 1;
            }
        }
        (open, idle)
    }
}

/// A connection's place in the registry; dropping it unregisters the connection.
#[derive(Debug)]
pub struct LiveEntry {
    registry: Arc<LiveConns>,
    status: Arc<ConnStatus>,
}

impl LiveEntry {
    /// The connection's status, to update.
    pub fn status(&self) -> &ConnStatus {
        &self.status
    }
}

impl Drop for LiveEntry {
    fn drop(&mut self) {
        self.registry
            .lock()
            .remove(&(self.status.side, self.status.id));
    }
}

/// Which upstream connection answered a request a proxy forwarded; the proxy puts it in
/// the response's extensions so the access log can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamNote {
    /// The upstream connection's number within the proxy's client.
    pub connection: u64,
    /// Whether that connection had served earlier requests.
    pub reused: bool,
    /// The upstream server.
    pub peer: SocketAddr,
    /// From the request handed to the upstream's client to its response head
    /// (nginx's `$upstream_header_time`): connecting, if it had to, included.
    pub header_time: Duration,
    /// The upstream group that answered (the `upstream` label of metrics), if it has one.
    pub group: Option<std::sync::Arc<str>>,
}

/// What an access log shows of a request's fields: taken from the parsed fields, and only
/// when something observes requests.
#[derive(Debug, Clone, Default)]
pub struct RequestFields {
    /// `User-Agent`.
    pub user_agent: Option<HeaderValue>,
    /// `Referer`.
    pub referer: Option<HeaderValue>,
}

impl RequestFields {
    /// The fields of `headers` an access log shows.
    pub fn of(headers: &HeaderMap) -> Self {
        RequestFields {
            user_agent: headers.get(http::header::USER_AGENT).cloned(),
            referer: headers.get(http::header::REFERER).cloned(),
        }
    }
}

/// One answered downstream request.
#[derive(Debug)]
pub struct RequestRecord<'a> {
    /// The connection's number.
    pub conn: u64,
    /// The client.
    pub peer: SocketAddr,
    /// 1 for the connection's first request.
    pub number: u64,
    /// The method (`None` for a request too malformed to have one).
    pub method: Option<&'a Method>,
    /// The request target as received (empty if malformed).
    pub target: &'a str,
    /// The request's version.
    pub version: Version,
    /// The status sent.
    pub status: StatusCode,
    /// Response body bytes sent.
    pub body_bytes: u64,
    /// From the complete request head to the response handed to the socket.
    pub duration: Duration,
    /// The upstream connection that answered, through a proxy.
    pub upstream: Option<UpstreamNote>,
    /// `User-Agent` and `Referer` (none for a request too malformed to have them).
    pub fields: Option<&'a RequestFields>,
}

/// A connection that ended.
#[derive(Debug, Clone)]
pub struct ClosedRecord {
    /// Downstream or upstream.
    pub side: ConnSide,
    /// Why, as a metric label (`idle_timeout`, `client_closed`, `server_close`, ...).
    pub reason: &'static str,
    /// Requests it carried.
    pub requests: u64,
    /// How long it was open.
    pub lifetime: Duration,
    /// Bytes received and sent-and-acknowledged (from `TCP_INFO` at close; 0 if unknown).
    pub bytes_in: u64,
    /// See `bytes_in`.
    pub bytes_out: u64,
    /// HTTP/1.x or HTTP/2 (`requests` are then streams).
    pub protocol: Protocol,
    /// The upstream group it served (a proxy's client connections, through [`Grouped`]).
    pub group: Option<Arc<str>>,
}

impl ClosedRecord {
    /// A downstream connection's end: its bytes from the kernel (`TCP_INFO` on `fd`, read
    /// now, while the socket is open).
    pub fn downstream(
        reason: &'static str,
        requests: u64,
        born: tokio::time::Instant,
        fd: RawFd,
        protocol: Protocol,
    ) -> Self {
        let tcp = tcp_info_of(fd).unwrap_or_default();
        ClosedRecord {
            side: ConnSide::Downstream,
            reason,
            requests,
            lifetime: born.elapsed(),
            bytes_in: tcp.bytes_received,
            bytes_out: tcp.bytes_acked,
            protocol,
            group: None,
        }
    }
}

/// Receives what connections report: implemented by metrics and the access log.
pub trait Observer: Send + Sync + 'static {
    /// A connection opened.
    fn opened(&self, side: ConnSide);
    /// A downstream request was answered.
    fn request(&self, record: &RequestRecord<'_>);
    /// A connection ended.
    fn closed(&self, record: &ClosedRecord);
    /// A TLS handshake completed (before the connection is reported opened).
    fn tls_handshake(&self, side: ConnSide, handshake: &Handshake) {
        let _ = (side, handshake);
    }
    /// A TLS handshake failed; the connection is closed without being reported opened.
    fn tls_failure(&self, side: ConnSide, failure: &TlsFailure) {
        let _ = (side, failure);
    }
    /// Something happened on an HTTP/2 connection.
    fn http2(&self, side: ConnSide, event: Http2Event) {
        let _ = (side, event);
    }
    /// A client sent a request head: over HTTP/1.x the bytes as written, over HTTP/2 its
    /// fields one per line (pseudo-fields first). For tracing (`get -v`); only clients call it.
    fn head_sent(&self, side: ConnSide, head: &[u8]) {
        let _ = (side, head);
    }
    /// A client received a response head (interim ones too): as received over HTTP/1.x,
    /// rendered as [`Observer::head_sent`] says over HTTP/2.
    fn head_received(&self, side: ConnSide, head: &[u8]) {
        let _ = (side, head);
    }
    /// A service or its response body panicked: its request was answered 500 (if nothing
    /// of the response had left) or cut short, and the server went on.
    fn panicked(&self, side: ConnSide) {
        let _ = side;
    }

    /// Idle connections were parked (`delta` > 0) or left the lot (`delta` < 0).
    fn parked(&self, side: ConnSide, delta: i64) {
        let _ = (side, delta);
    }

    /// The idle timeout in force changed (pressure shortened it, or it is back at its
    /// ceiling).
    fn idle_timeout(&self, side: ConnSide, timeout: Duration) {
        let _ = (side, timeout);
    }
}

/// An observer that names the upstream group of every connection it reports closed, and
/// passes everything on to `inner` (a proxy gives each group's client one).
pub struct Grouped {
    /// The group's name.
    pub group: Arc<str>,
    /// Where reports go.
    pub inner: Arc<dyn Observer>,
}

impl Observer for Grouped {
    fn opened(&self, side: ConnSide) {
        self.inner.opened(side);
    }
    fn request(&self, record: &RequestRecord<'_>) {
        self.inner.request(record);
    }
    fn closed(&self, record: &ClosedRecord) {
        self.inner.closed(&ClosedRecord {
            group: Some(self.group.clone()),
            ..record.clone()
        });
    }
    fn tls_handshake(&self, side: ConnSide, handshake: &Handshake) {
        self.inner.tls_handshake(side, handshake);
    }
    fn tls_failure(&self, side: ConnSide, failure: &TlsFailure) {
        self.inner.tls_failure(side, failure);
    }
    fn http2(&self, side: ConnSide, event: Http2Event) {
        self.inner.http2(side, event);
    }
    fn head_sent(&self, side: ConnSide, head: &[u8]) {
        self.inner.head_sent(side, head);
    }
    fn head_received(&self, side: ConnSide, head: &[u8]) {
        self.inner.head_received(side, head);
    }
    fn panicked(&self, side: ConnSide) {
        self.inner.panicked(side);
    }
    fn parked(&self, side: ConnSide, delta: i64) {
        self.inner.parked(side, delta);
    }
    fn idle_timeout(&self, side: ConnSide, timeout: Duration) {
        self.inner.idle_timeout(side, timeout);
    }
}

/// What an HTTP/2 connection reports besides requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http2Event {
    /// A stream started (a request accepted or sent).
    StreamOpened,
    /// A stream ended.
    StreamClosed,
    /// A `GOAWAY`: sent by this side or received, with its reason (a close reason's
    /// label when sent, the error code's name when received).
    GoAway {
        /// Sent by this side.
        sent: bool,
        /// Why.
        reason: &'static str,
    },
    /// A stream reset before it completed.
    Reset {
        /// By the peer (else by this side: a failed body, a shut window).
        by_peer: bool,
    },
}

/// What a server or client reports to, when anything is listening.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Connections register here for the live view.
    pub live: Option<Arc<LiveConns>>,
    /// Requests and connection ends go here.
    pub observer: Option<Arc<dyn Observer>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("live", &self.live.is_some())
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl Hooks {
    /// Whether anything listens.
    pub fn is_active(&self) -> bool {
        self.live.is_some() || self.observer.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_registered_connection_is_listed_until_its_entry_drops() {
        let registry = LiveConns::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = Stream::Tcp(tokio::net::TcpStream::connect(addr).await.unwrap());
        let entry = registry.register(ConnSide::Upstream, 7, addr, &client, ConnState::Idle);
        entry.status().set_requests(3);
        let views = registry.snapshot();
        assert_eq!(views.len(), 1);
        assert_eq!((views[0].id, views[0].requests), (7, 3));
        let tcp = views[0].tcp.expect("TCP_INFO of a connected socket");
        assert!(tcp.snd_cwnd > 0 && tcp.snd_mss > 0);
        assert_eq!(registry.counts(ConnSide::Upstream), (1, 1));
        entry.status().set_state(ConnState::Writing);
        assert_eq!(registry.counts(ConnSide::Upstream), (1, 0));
        drop(entry);
        assert!(registry.snapshot().is_empty());
    }
}

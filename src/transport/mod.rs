//! `transport`: the byte streams connections run over — plain TCP, or TLS (rustls) over TCP —
//! and what each connection needs of them beyond reading and writing: readiness without a
//! buffer (an idle connection holds none), writes that cost no future, a half-close, and the
//! TCP socket underneath (socket options, `TCP_INFO`).
//!
//! | module | owns |
//! |---|---|
//! | [`tls`] | TLS configuration: certificates chosen by SNI, ALPN, session resumption, reload; the server's handshake bounded in time, the client's with its trust and name; what was negotiated |
//! | [`proxy_header`] | the PROXY protocol header (v1 and v2) an L4 balancer puts first: parse, write |
//!
//! It must not know HTTP.

pub mod proxy_header;
pub mod tls;

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use tls::TlsInfo;

use std::net::SocketAddr;
use std::time::Duration;

use tls::{Handshake, TlsConnector, TlsFailure};

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connect failed (refused, unreachable).
    #[error("connecting: {0}")]
    Tcp(io::Error),
    /// The TCP and TLS handshakes did not finish in time.
    #[error("timed out connecting")]
    Timeout,
    /// The TLS handshake failed.
    #[error(transparent)]
    Tls(TlsFailure),
}

/// Where a client connects: the address, and for TLS the connector and the host the
/// certificate must be valid for.
#[derive(Debug, Clone, Copy)]
pub struct Dial<'a> {
    /// The server's address.
    pub addr: SocketAddr,
    /// TLS with this connector, verifying the certificate for this host (or the
    /// connector's server name override); `None` for plain TCP.
    pub tls: Option<(&'a TlsConnector, &'a str)>,
    /// Longest time for the TCP and TLS handshakes together.
    pub timeout: Duration,
    /// A PROXY protocol header to write first, before TLS (see [`proxy_header`]).
    pub proxy_header: Option<&'a [u8]>,
}

/// Opens a client connection (`TCP_NODELAY` set): TCP, then TLS when asked, both within
/// the timeout. Reports the TLS handshake, if there was one.
pub async fn connect(dial: Dial<'_>) -> Result<(Stream, Option<Handshake>), ConnectError> {
    let opening = async {
        let mut tcp = TcpStream::connect(dial.addr)
            .await
            .map_err(ConnectError::Tcp)?;
        let _ = tcp.set_nodelay(true);
        if let Some(header) = dial.proxy_header {
            use tokio::io::AsyncWriteExt;
            tcp.write_all(header).await.map_err(ConnectError::Tcp)?;
        }
        match dial.tls {
            None => Ok((Stream::Tcp(tcp), None)),
            Some((connector, host)) => {
                let (stream, handshake) = connector
                    .connect(tcp, host)
                    .await
                    .map_err(ConnectError::Tls)?;
                Ok((stream, Some(handshake)))
            }
        }
    };
    tokio::time::timeout(dial.timeout, opening)
        .await
        .unwrap_or(Err(ConnectError::Timeout))
}

/// Whether the first bytes a peer sends on `tcp` are `prefix`, looked at without taking
/// them (`MSG_PEEK`): a server tells a protocol by its opening bytes this way and hands the
/// socket on untouched. `Some(false)` as soon as a byte differs, at end of stream or on an
/// error (whoever reads next sees the same); `None` if nothing decided it by `deadline`. A
/// peer that sends the prefix in pieces is looked at again after a pause doubling from
/// 1 ms, so a stalled one costs a few wakeups, not a spin.
pub async fn starts_with(
    tcp: &TcpStream,
    prefix: &[u8],
    deadline: tokio::time::Instant,
) -> Option<bool> {
    let looking = async {
        let mut seen = [0u8; 64];
        let want = prefix.len().min(seen.len());
        let mut pause = Duration::from_millis(1);
        loop {
            let n = match tcp.peek(&mut seen[..want]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            if seen[..n] != prefix[..n] {
                return false;
            }
            if n == want {
                return true;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    };
    tokio::time::timeout_at(deadline, looking).await.ok()
}

/// Why no PROXY protocol header could be read.
#[derive(Debug, thiserror::Error)]
pub enum ProxyReadError {
    /// The bytes are not a valid header.
    #[error(transparent)]
    Header(#[from] proxy_header::ProxyHeaderError),
    /// The whole header did not arrive before the deadline.
    #[error("no whole PROXY protocol header in time")]
    Timeout,
    /// The peer closed, or the socket failed.
    #[error("the connection ended before its PROXY protocol header")]
    Closed,
}

/// Reads the PROXY protocol header a balancer sends first (before TLS and HTTP), by the
/// deadline. The socket is only peeked at until the whole header is there (it nearly always
/// comes in the first segment; a slow one is looked at again after a pause that doubles, as
/// [`starts_with`] does), then exactly the header is read: the bytes after it are the
/// connection's.
pub async fn read_proxy_header(
    tcp: &TcpStream,
    deadline: tokio::time::Instant,
) -> Result<proxy_header::ProxyHeader, ProxyReadError> {
    let reading = async {
        let mut seen = vec![0u8; proxy_header::V2_MAX];
        let mut pause = Duration::from_millis(1);
        loop {
            let n = match tcp.peek(&mut seen).await {
                Ok(0) | Err(_) => return Err(ProxyReadError::Closed),
                Ok(n) => n,
            };
            if let Some((header, length)) = proxy_header::parse(&seen[..n])? {
                let mut consumed = 0;
                while consumed < length {
                    tcp.readable().await.map_err(|_| ProxyReadError::Closed)?;
                    match tcp.try_read(&mut seen[consumed..length]) {
                        Ok(0) => return Err(ProxyReadError::Closed),
                        Ok(read) => consumed += read,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return Err(ProxyReadError::Closed),
                    }
                }
                return Ok(header);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    };
    tokio::time::timeout_at(deadline, reading)
        .await
        .unwrap_or(Err(ProxyReadError::Timeout))
}

/// A connection's byte stream: TCP, or TLS over TCP (either side of the handshake).
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS, accepted by a server.
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS, opened by a client.
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl From<TcpStream> for Stream {
    fn from(tcp: TcpStream) -> Self {
        Stream::Tcp(tcp)
    }
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tcp(tcp) => tcp,
            Stream::TlsServer(tls) => tls.get_ref().0,
            Stream::TlsClient(tls) => tls.get_ref().0,
        }
    }

    /// Whether the stream is TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Tcp(_))
    }

    /// What the TLS handshake negotiated; `None` for plain TCP.
    pub fn tls_info(&self) -> Option<TlsInfo> {
        match self {
            Stream::Tcp(_) => None,
            Stream::TlsServer(tls) => Some(TlsInfo::of_server(tls.get_ref().1)),
            Stream::TlsClient(tls) => Some(TlsInfo::of_client(tls.get_ref().1)),
        }
    }

    /// Ready once reading would not wait: bytes (or the end) on the socket, or, for TLS,
    /// plaintext already decrypted and not yet read. Holds no buffer meanwhile.
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (tcp, pending) = match self {
            Stream::Tcp(tcp) => return tcp.poll_read_ready(cx),
            Stream::TlsServer(tls) => {
                let (tcp, conn) = tls.get_mut();
                (tcp, has_plaintext(conn.process_new_packets()))
            }
            Stream::TlsClient(tls) => {
                let (tcp, conn) = tls.get_mut();
                (tcp, has_plaintext(conn.process_new_packets()))
            }
        };
        if pending {
            return Poll::Ready(Ok(()));
        }
        tcp.poll_read_ready(cx)
    }

    /// Writes what the stream takes now (TLS: into its record buffer, then as much of that
    /// as the socket takes). `Pending` is registered for writability.
    pub fn poll_write_slices(
        &mut self,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            Stream::Tcp(tcp) => loop {
                // One buffer goes out with `write` (cheaper in the kernel than `writev`).
                let written = match slices {
                    [one] => tcp.try_write(one),
                    [first, second] if second.is_empty() => tcp.try_write(first),
                    _ => tcp.try_write_vectored(slices),
                };
                match written {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        std::task::ready!(tcp.poll_write_ready(cx))?;
                    }
                    result => return Poll::Ready(result),
                }
            },
            Stream::TlsServer(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, slices),
            Stream::TlsClient(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, slices),
        }
    }

    /// Sends what a TLS stream still holds in its record buffer (plain TCP holds nothing).
    pub fn poll_flush_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(_) => Poll::Ready(Ok(())),
            Stream::TlsServer(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Stream::TlsClient(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    /// Ends the sending side: TLS sends `close_notify` first (queued: flush to send it), then
    /// the TCP socket is half-closed.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(_) => {}
            Stream::TlsServer(tls) => tls.get_mut().1.send_close_notify(),
            Stream::TlsClient(tls) => tls.get_mut().1.send_close_notify(),
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Best effort: the alert goes out if the socket takes it now.
        let _ = self.poll_flush_records(&mut cx);
        socket2::SockRef::from(self.tcp()).shutdown(std::net::Shutdown::Write)
    }
}

/// Whether a TLS connection has something for a reader now (plaintext, or the peer's
/// close); an error is something too (the next read reports it).
fn has_plaintext(state: Result<rustls::IoState, rustls::Error>) -> bool {
    match state {
        Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
        Err(_) => true,
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::TlsServer(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Stream::TlsClient(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::TlsServer(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            Stream::TlsClient(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_slices(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_records(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::TlsServer(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            Stream::TlsClient(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The process's limit on open descriptors (`RLIMIT_NOFILE`, soft), if the kernel says.
pub fn open_file_limit() -> Option<u64> {
    // SAFETY: getrlimit fills the zeroed struct it is given.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `limit` is valid for writes.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit.rlim_cur)
}

//! Test helpers: a server on port 0 and a raw HTTP client written independently of
//! hopline's own parser, so the tests do not check the server with the code under test.

#![allow(dead_code)]

pub mod desync;
pub mod fds;
pub mod h2;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hopline::conn::{Hooks, Incoming, ServerConfig};
use hopline::server::{
    ConfigHandle, ListenerConfig, RunSummary, Server, ServerStats, StatsSnapshot,
};
use hopline::transport::tls::TlsAcceptor;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stats: Arc<ServerStats>,
    /// Replaces the policy of new connections (a reload).
    pub config: ConfigHandle,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<RunSummary>,
}

/// A service from an async function that always answers (a test origin).
pub fn answer_with<F, Fut>(answer: F) -> impl TestService
where
    F: Fn(http::Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = http::Response<hopline::Body>> + Send + 'static,
{
    hopline::service::service_fn(move |request| {
        let answer = answer.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(request).await) }
    })
}

/// What the server parsed about a request (every request a hopline server hands over
/// carries it).
pub fn ctx(request: &http::Request<Incoming>) -> &hopline::conn::RequestCtx {
    hopline::conn::RequestCtx::of(request).expect("a RequestCtx with the request")
}

/// What a test server can run: any service a [`Server`] can.
pub use hopline::service::HttpService as TestService;

impl TestServer {
    pub async fn start<S: TestService>(service: S, config: ServerConfig) -> Self {
        Self::start_with(service, config, ListenerConfig::default()).await
    }

    pub async fn start_with<S: TestService>(
        service: S,
        config: ServerConfig,
        listener: ListenerConfig,
    ) -> Self {
        Self::start_hooked(service, config, listener, Hooks::default()).await
    }

    /// A server reporting to `hooks` (live view, metrics, access log).
    pub async fn start_hooked<S: TestService>(
        service: S,
        config: ServerConfig,
        listener: ListenerConfig,
        hooks: Hooks,
    ) -> Self {
        Self::start_full(service, config, listener, hooks, None).await
    }

    /// A server speaking TLS with `acceptor`.
    pub async fn start_tls<S: TestService>(
        service: S,
        config: ServerConfig,
        acceptor: TlsAcceptor,
        hooks: Hooks,
    ) -> Self {
        Self::start_full(
            service,
            config,
            ListenerConfig::default(),
            hooks,
            Some(acceptor),
        )
        .await
    }

    async fn start_full<S: TestService>(
        service: S,
        config: ServerConfig,
        listener: ListenerConfig,
        hooks: Hooks,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), service, config, listener)
            .expect("bind")
            .with_hooks(hooks);
        let server = match tls {
            Some(acceptor) => server.with_tls(acceptor),
            None => server,
        };
        let config = server.config_handle();
        let addr = server.local_addr().unwrap();
        let stats = server.stats();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stats,
            config,
            stop: Some(stop),
            task,
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Waits until `n` connections have closed (the server records a connection when its
    /// task ends, which can be a moment after the client sees EOF).
    pub async fn closed(&self, n: u64) -> StatsSnapshot {
        for _ in 0..10_000 {
            let snapshot = self.snapshot();
            if snapshot.closed_total() >= n {
                return snapshot;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("connections did not close: {:?}", self.snapshot());
    }

    /// Waits until the server's counters satisfy `done` (what it waits for is `what`).
    pub async fn until(&self, what: &str, done: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
        for _ in 0..10_000 {
            let snapshot = self.snapshot();
            if done(&snapshot) {
                return snapshot;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("{what}: never happened: {:?}", self.snapshot());
    }

    /// Starts a graceful shutdown and waits for the run to end.
    pub async fn stop(mut self) -> RunSummary {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap()
    }

    /// Starts a graceful shutdown without waiting.
    pub fn begin_stop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
    }

    pub async fn finished(self) -> RunSummary {
        self.task.await.unwrap()
    }
}

/// Makes closing `stream` send a reset (`SO_LINGER` 0: nothing to wait for, so it does
/// not block).
pub fn reset_on_drop(stream: &TcpStream) {
    socket2::SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// One parsed response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
    }
}

/// A client speaking raw bytes, over TCP or (see [`tls`]) TLS.
pub struct RawClient<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect(addr).await.expect("connect"))
    }

    /// Makes dropping the client send a reset instead of a close (`SO_LINGER` 0).
    pub fn reset_on_drop(&self) {
        reset_on_drop(&self.stream);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    pub fn from_stream(stream: S) -> Self {
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// `GET path HTTP/1.1` with a Host field and any extra field lines.
    pub async fn get(&mut self, path: &str, extra: &str) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n");
        self.send(request.as_bytes()).await;
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk).await.unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..pos]).to_string();
                self.buf.drain(..pos + 2);
                return Some(line);
            }
            if self.fill().await == 0 {
                return None;
            }
        }
    }

    async fn exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await > 0, "connection closed mid-body");
        }
        self.buf.drain(..n).collect()
    }

    async fn fields(&mut self) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        loop {
            let line = self.line().await.expect("closed inside a header section");
            if line.is_empty() {
                return fields;
            }
            let (name, value) = line.split_once(':').expect("field line without colon");
            fields.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
    }

    /// Reads one response; `None` if the connection closed before a status line.
    pub async fn try_response(&mut self, head_request: bool) -> Option<RawResponse> {
        let status_line = self.line().await?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap().to_string();
        let status: u16 = parts
            .next()
            .expect("status code")
            .parse()
            .expect("numeric status");
        let headers = self.fields().await;
        let mut response = RawResponse {
            status,
            version,
            headers,
            body: vec![],
            trailers: vec![],
        };
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            return Some(response);
        }
        if response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size_line = self.line().await.expect("chunk size");
                let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                    .expect("hex chunk size");
                if size == 0 {
                    response.trailers = self.fields().await;
                    break;
                }
                let data = self.exact(size).await;
                response.body.extend_from_slice(&data);
                assert_eq!(self.exact(2).await, b"\r\n");
            }
        } else if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().unwrap();
            response.body = self.exact(length).await;
        } else {
            while self.fill().await > 0 {}
            response.body = std::mem::take(&mut self.buf);
        }
        Some(response)
    }

    pub async fn response(&mut self) -> RawResponse {
        self.try_response(false).await.expect("a response")
    }

    /// Asserts the server closes: EOF with no further bytes.
    pub async fn expect_eof(&mut self) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let n = self.fill().await;
        assert_eq!(
            n,
            0,
            "expected EOF, got {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }

    /// Shuts the sending side (a half-close: the server sees end of stream but may still
    /// answer).
    pub async fn half_close(&mut self) {
        self.stream.shutdown().await.expect("half-close");
    }

    /// Everything until the server closes.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill().await > 0 {}
        std::mem::take(&mut self.buf)
    }
}

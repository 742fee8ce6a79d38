//! Hostile input over real sockets: the `http_desync_guardian` corpus replayed against a
//! server and through a proxy to an origin that records what reaches it; the classic
//! smuggling variants one by one; slow, greedy and faulty peers on both sides of a proxy.
//! Timers run on tokio's paused clock where the scenario waits.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::desync::{body_for, load_cases, with_host};
use common::tls::{Pki, raw_client};
use common::{RawClient, RawResponse, TestServer, TestService, ctx, reset_on_drop};
use hopline::client::ClientOptions;
use hopline::conn::{Body, CloseReason, Hooks, Incoming, ServerConfig};
use hopline::origin::Origin;
use hopline::proxy::upstream::Upstreams;
use hopline::proxy::{Proxy, ProxyConfig};
use hopline::service::service_fn;
use hopline::transport::tls::TlsConnector;
use http::{Request, Response};
use http_desync_guardian::RequestSafetyTier;
use http_desync_guardian::request_analyzer::HttpRequestData;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An origin that records every request head that reaches it, reads the body, answers 200.
#[derive(Clone, Default)]
struct Recorder {
    heads: Arc<Mutex<Vec<Bytes>>>,
}

impl Recorder {
    fn heads(&self) -> Vec<String> {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect()
    }
}

impl Recorder {
    /// The recorder as an origin.
    fn origin(&self) -> impl TestService {
        let heads = self.heads.clone();
        service_fn(move |request: Request<Incoming>| {
            let heads = heads.clone();
            async move {
                heads.lock().unwrap().push(ctx(&request).raw_head.clone());
                let _ = request.into_body().bytes(1 << 20).await;
                Ok::<_, Infallible>(Response::new(Body::from("ok")))
            }
        })
    }
}

/// Where attacks are sent: a recorder served directly, or a proxy in front of one; over
/// TCP, or over TLS (then with the client that trusts its certificate).
struct Target {
    entry: TestServer,
    recorder: Recorder,
    _origin: Option<TestServer>,
    tls: Option<(Pki, TlsConnector)>,
}

/// How an entry is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    Tcp,
    Tls,
}

/// Starts `service` as the entry, over TCP or TLS.
async fn entry<S: TestService>(
    service: S,
    over: Over,
) -> (TestServer, Option<(Pki, TlsConnector)>) {
    match over {
        Over::Tcp => (TestServer::start(service, entry_config()).await, None),
        Over::Tls => {
            let pki = Pki::new();
            let acceptor = pki.acceptor(vec![pki.leaf(&["localhost"])]);
            let server =
                TestServer::start_tls(service, entry_config(), acceptor, Hooks::default()).await;
            let connector = pki.connector();
            (server, Some((pki, connector)))
        }
    }
}

/// Attacks half-close after sending (so that reading to the end ends); a half-close is not
/// an abort, so the servers answer every request that arrived whole.
fn entry_config() -> ServerConfig {
    ServerConfig::default()
}

async fn served(over: Over) -> Target {
    let recorder = Recorder::default();
    let (entry, tls) = entry(recorder.origin(), over).await;
    Target {
        entry,
        recorder,
        _origin: None,
        tls,
    }
}

fn reverse(upstream: SocketAddr, options: ClientOptions) -> ProxyConfig {
    let mut config = ProxyConfig::reverse(Upstreams::single(upstream));
    config.upstream = options;
    config
}

async fn proxied(over: Over) -> Target {
    let recorder = Recorder::default();
    let origin = TestServer::start(recorder.origin(), ServerConfig::default()).await;
    let proxy = Proxy::new(reverse(origin.addr, ClientOptions::default()));
    let (entry, tls) = entry(proxy, over).await;
    Target {
        entry,
        recorder,
        _origin: Some(origin),
        tls,
    }
}

/// Sends `raw`, half-closes (over TLS: `close_notify`, then the TCP half-close), and reads
/// every response until the server closes.
async fn attack(target: &Target, raw: &[u8]) -> Vec<RawResponse> {
    match &target.tls {
        None => exchange(RawClient::connect(target.entry.addr).await, raw).await,
        Some((_, connector)) => {
            exchange(
                raw_client(target.entry.addr, connector, "localhost").await,
                raw,
            )
            .await
        }
    }
}

async fn exchange<S>(mut client: RawClient<S>, raw: &[u8]) -> Vec<RawResponse>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    client.send(raw).await;
    let _ = client.stream.shutdown().await;
    let mut responses = Vec::new();
    // A response to HEAD has no body, whatever its Content-Length says.
    let mut head = raw.starts_with(b"HEAD ");
    while let Some(response) = client.try_response(head).await {
        responses.push(response);
        head = false;
    }
    responses
}

/// At most one framing field in a forwarded head, and a Transfer-Encoding only as plain
/// `chunked`: a message no next hop can frame differently.
fn normalised(head: &str) -> Result<(), String> {
    let lines: Vec<String> = head.lines().skip(1).map(str::to_ascii_lowercase).collect();
    let lengths = lines
        .iter()
        .filter(|l| l.starts_with("content-length:"))
        .count();
    let codings: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("transfer-encoding:"))
        .collect();
    if lengths > 1 || codings.len() > 1 || (lengths == 1 && !codings.is_empty()) {
        return Err(format!("ambiguous framing forwarded: {head:?}"));
    }
    if let Some(coding) = codings.first()
        && coding.trim_end() != "transfer-encoding: chunked"
    {
        return Err(format!("transfer coding forwarded as is: {head:?}"));
    }
    if head.contains("\r\n ") || head.contains("\r\n\t") {
        return Err(format!("folded line forwarded: {head:?}"));
    }
    Ok(())
}

#[tokio::test]
async fn the_desync_corpus_over_sockets_severe_refused_ambiguous_normalised() {
    desync_corpus(Over::Tcp).await;
}

#[tokio::test]
async fn the_desync_corpus_over_tls_severe_refused_ambiguous_normalised() {
    desync_corpus(Over::Tls).await;
}

/// Every Severe case refused by the server and the proxy (the head alone, and completed
/// with a body), every Ambiguous one through the proxy refused or forwarded as one
/// normalised message.
async fn desync_corpus(over: Over) {
    let direct = served(over).await;
    let proxy = proxied(over).await;
    let mut failures = Vec::new();
    let (mut severe, mut ambiguous_forwarded, mut ambiguous_refused) = (0, 0, 0);
    let mut ambiguous_incomplete = 0;
    for case in load_cases() {
        let tier = HttpRequestData::analyze_raw_request(&case.raw).tier;
        let label = format!("{}: {:?}", case.file, case.name);
        let severe_case = tier == RequestSafetyTier::Severe || case.expected_tier == "Severe";
        if !severe_case && tier != RequestSafetyTier::Ambiguous {
            continue;
        }
        // Each case as its head alone, and completed with the body its framing fields
        // suggest (so that a request the proxy accepts goes all the way through).
        let raw = with_host(&case.raw);
        let mut completed = raw.clone();
        completed.extend_from_slice(&body_for(&raw));
        for (which, target, raw) in [
            ("server", &direct, &raw),
            ("proxy", &proxy, &raw),
            ("server", &direct, &completed),
            ("proxy", &proxy, &completed),
        ] {
            let before = target.recorder.heads().len();
            let responses = attack(target, raw).await;
            let reached: Vec<String> = target.recorder.heads()[before..].to_vec();
            let refused = responses.first().is_some_and(|r| r.status >= 400);
            if severe_case {
                if !refused || !reached.is_empty() {
                    failures.push(format!(
                        "{which} {label}: Severe, but answered {:?} and {} request(s) reached the origin",
                        responses.iter().map(|r| r.status).collect::<Vec<_>>(),
                        reached.len()
                    ));
                }
            } else if which == "proxy" {
                match (refused, reached.len()) {
                    (true, 0) => ambiguous_refused += 1,
                    // The head alone, whose framing asks for a body: the client ended inside
                    // it before the proxy forwarded anything (over TLS the end arrives with
                    // the head). Nothing to answer, nothing forwarded.
                    (false, 0) if responses.is_empty() && raw.len() < completed.len() => {
                        ambiguous_incomplete += 1
                    }
                    (_, 1) => match normalised(&reached[0]) {
                        Ok(()) => ambiguous_forwarded += 1,
                        Err(why) => failures.push(format!("{label}: {why}")),
                    },
                    (_, n) => failures.push(format!(
                        "{label}: Ambiguous, {n} requests reached the origin from one"
                    )),
                }
            }
        }
        if severe_case {
            severe += 1;
        }
    }
    eprintln!(
        "desync corpus over {over:?}: {severe} Severe refused by server and proxy (head alone \
         and with a body); Ambiguous through the proxy, {} sends: {ambiguous_refused} refused, \
         {ambiguous_forwarded} forwarded as one normalised message, {ambiguous_incomplete} \
         incomplete (the client ended inside the body) neither answered nor forwarded",
        ambiguous_refused + ambiguous_forwarded + ambiguous_incomplete
    );
    assert!(severe >= 30, "only {severe} Severe cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A request that would carry a second, smuggled one if the two hops framed it
/// differently.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// Sends `head` + `body` + a smuggled request to the server and through the proxy: it must
/// be refused (an error status, then close) and nothing named /smuggled may reach the
/// origin.
async fn refused_everywhere(name: &str, raw: String) {
    let targets = [
        served(Over::Tcp).await,
        proxied(Over::Tcp).await,
        served(Over::Tls).await,
        proxied(Over::Tls).await,
    ];
    for target in targets {
        let responses = attack(&target, raw.as_bytes()).await;
        let reached = target.recorder.heads();
        assert!(
            reached.iter().all(|h| !h.contains("/smuggled")),
            "{name}: a smuggled request reached the origin: {reached:?}"
        );
        let first = responses
            .first()
            .unwrap_or_else(|| panic!("{name}: no answer"));
        assert!(
            first.status >= 400,
            "{name}: answered {}, not refused",
            first.status
        );
        assert_eq!(responses.len(), 1, "{name}: one answer, then close");
        assert!(
            reached.is_empty(),
            "{name}: reached the origin: {reached:?}"
        );
    }
}

#[tokio::test]
async fn cl_te_is_refused() {
    refused_everywhere(
        "CL.TE",
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
        ),
    )
    .await;
}

#[tokio::test]
async fn te_cl_is_refused() {
    refused_everywhere(
        "TE.CL",
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\n{SMUGGLED}\r\n0\r\n\r\n"
        ),
    )
    .await;
}

#[tokio::test]
async fn te_te_with_a_second_coding_is_refused() {
    for (name, codings) in [
        (
            "TE.TE chunked then identity",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
        ),
        (
            "TE.TE chunked then x",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: x",
        ),
        (
            "TE.TE chunked, chunked",
            "Transfer-Encoding: chunked, chunked",
        ),
    ] {
        refused_everywhere(
            name,
            format!("POST / HTTP/1.1\r\nHost: x\r\n{codings}\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        )
        .await;
    }
}

#[tokio::test]
async fn obfuscated_transfer_encoding_is_refused() {
    for (name, field) in [
        ("xchunked", "Transfer-Encoding: xchunked"),
        ("chunked-false", "Transfer-Encoding: chunked-false"),
        ("space before colon", "Transfer-Encoding : chunked"),
        ("leading space (a fold)", " Transfer-Encoding: chunked"),
        ("vertical tab", "Transfer-Encoding:\x0bchunked"),
        ("quoted", "Transfer-Encoding: \"chunked\""),
        ("underscore name", "Transfer_Encoding: chunked"),
    ] {
        // Each is paired with a Content-Length that a lenient hop would use instead.
        refused_everywhere(
            name,
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n{field}\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
        )
        .await;
    }
}

#[tokio::test]
async fn bare_cr_and_lf_are_refused() {
    refused_everywhere(
        "bare LF line endings",
        format!("GET / HTTP/1.1\nHost: x\n\n{SMUGGLED}"),
    )
    .await;
    refused_everywhere(
        "bare LF after a field",
        format!("GET / HTTP/1.1\r\nHost: x\nContent-Length: 0\r\n\r\n{SMUGGLED}"),
    )
    .await;
    refused_everywhere(
        "bare CR inside a field",
        format!("GET / HTTP/1.1\r\nHost: x\r\nX: a\rContent-Length: 5\r\n\r\n{SMUGGLED}"),
    )
    .await;
}

#[tokio::test]
async fn nul_bytes_are_refused() {
    refused_everywhere(
        "NUL in a value",
        format!("GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n{SMUGGLED}"),
    )
    .await;
    refused_everywhere(
        "NUL in a name",
        format!("GET / HTTP/1.1\r\nHost: x\r\nX\0: a\r\n\r\n{SMUGGLED}"),
    )
    .await;
}

#[tokio::test]
async fn whitespace_before_a_colon_is_refused() {
    refused_everywhere(
        "Content-Length with a space before the colon",
        format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello{SMUGGLED}"),
    )
    .await;
}

#[tokio::test]
async fn obs_fold_is_refused() {
    refused_everywhere(
        "a folded value",
        format!("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n{SMUGGLED}"),
    )
    .await;
    refused_everywhere(
        "a folded Content-Length",
        format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n 5\r\n\r\nhello{SMUGGLED}"),
    )
    .await;
}

#[tokio::test]
async fn an_absolute_form_target_decides_the_host_over_a_conflicting_field() {
    // RFC 9112 §3.2.2: the target's authority is the host; a received Host is ignored. A
    // server answers the request; a proxy forwards it with Host replaced, so the next hop
    // cannot read it as addressed elsewhere.
    let raw = "GET http://a.test/path HTTP/1.1\r\nHost: b.test\r\n\r\n";
    let direct = served(Over::Tcp).await;
    let responses = attack(&direct, raw.as_bytes()).await;
    assert_eq!(responses[0].status, 200);
    let proxy = proxied(Over::Tcp).await;
    let responses = attack(&proxy, raw.as_bytes()).await;
    assert_eq!(responses[0].status, 200);
    let heads = proxy.recorder.heads();
    assert_eq!(heads.len(), 1);
    let hosts: Vec<&str> = heads[0]
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("host:"))
        .collect();
    assert_eq!(hosts, ["host: a.test"], "{}", heads[0]);
    // Forwarded names the host the request was addressed to, not the ignored field.
    assert!(
        heads[0].contains("forwarded: for=127.0.0.1;proto=http;host=a.test\r\n"),
        "{}",
        heads[0]
    );
    assert!(
        heads[0].starts_with("GET /path HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
}

#[tokio::test]
async fn content_length_variants_are_refused() {
    for (name, field) in [
        (
            "two different lengths",
            "Content-Length: 5\r\nContent-Length: 6",
        ),
        ("a list of different lengths", "Content-Length: 5, 6"),
        ("a signed length", "Content-Length: +5"),
        ("a hexadecimal length", "Content-Length: 0x5"),
        (
            "an overflowing length",
            "Content-Length: 99999999999999999999999",
        ),
    ] {
        refused_everywhere(
            name,
            format!("POST / HTTP/1.1\r\nHost: x\r\n{field}\r\n\r\nhello{SMUGGLED}"),
        )
        .await;
    }
}

// --- slow, greedy and faulty peers -------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn slowloris_clients_are_cut_off_and_others_are_served_meanwhile() {
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.header_timeout = Duration::from_secs(2);
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    // 200 clients each dripping a byte of a head every second.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut client = RawClient::connect(server.addr).await;
        client.send(b"GET / HT").await;
        slow.push(client);
    }
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        // An honest client is served while they drip.
        let mut honest = RawClient::connect(server.addr).await;
        honest.get("/", "").await;
        assert_eq!(honest.response().await.status, 200);
        for client in &mut slow {
            let _ = client.stream.write_all(b"T").await;
        }
    }
    for mut client in slow {
        let response = client.response().await;
        assert_eq!(response.status, 408);
        client.expect_eof().await;
    }
    let stats = server.closed(203).await;
    assert_eq!(stats.closed(CloseReason::HeaderTimeout), 200);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_request_body_gets_408() {
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.body_timeout = Duration::from_secs(2);
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    let mut client = RawClient::connect(server.addr).await;
    client
        .send(b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
        .await;
    let response = client.response().await;
    assert_eq!(response.status, 408);
    client.expect_eof().await;
    assert_eq!(server.closed(1).await.closed(CloseReason::BodyTimeout), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pipelining_client_that_never_reads_stops_being_read() {
    // 200,000 pipelined requests (8 MB) for 1 KiB responses, never reading any: the server
    // must stop reading once its responses back up, not parse and buffer everything.
    let config = {
        let mut server_config = ServerConfig::default();
        server_config.write_timeout = Duration::from_secs(5);
        server_config
    };
    let server = TestServer::start(Origin::new(), config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = b"GET /bytes/1024 HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200_000);
    let writing = stream.write_all(&request);
    let outcome = tokio::time::timeout(Duration::from_secs(60), writing).await;
    // The writes stall (nobody reads) until the server gives up on the connection, which
    // then fails them; either way they never all go through.
    assert!(
        !matches!(outcome, Ok(Ok(()))),
        "all 8 MB were taken: the server kept reading"
    );
    drop(stream);
    let stats = server.closed(1).await;
    assert_eq!(stats.closed(CloseReason::WriteTimeout), 1, "{stats:?}");
    assert!(
        stats.requests < 20_000,
        "answered {} of 200,000: reading stopped at the socket buffers",
        stats.requests
    );
}

#[tokio::test]
async fn a_client_that_resets_mid_response_harms_no_one_else() {
    let server = TestServer::start(Origin::new(), ServerConfig::default()).await;
    for _ in 0..20 {
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let mut client = RawClient::from_stream(stream);
        client.get("/bytes/50000000", "").await;
        let mut first = [0u8; 4096];
        client.stream.read_exact(&mut first).await.unwrap();
        reset_on_drop(&client.stream);
        drop(client); // RST
    }
    let mut honest = RawClient::connect(server.addr).await;
    honest.get("/bytes/10", "").await;
    assert_eq!(honest.response().await.text(), "abcdefghij");
    let stats = server.closed(20).await;
    assert_eq!(stats.closed_total(), 20);
}

/// An upstream that misbehaves in one way per connection.
async fn faulty_upstream(behaviour: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly part";
                match behaviour {
                    "reset mid-body" => {
                        let _ = stream.write_all(partial).await;
                        reset_on_drop(&stream);
                    }
                    "close mid-body" => {
                        let _ = stream.write_all(partial).await;
                    }
                    "stall mid-body" => {
                        let _ = stream.write_all(partial).await;
                        std::future::pending::<()>().await;
                    }
                    "stall before answering" => std::future::pending::<()>().await,
                    "reset before answering" => {
                        reset_on_drop(&stream);
                    }
                    "answer before the body" => {
                        let _ = stream
                            .write_all(
                                b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!",
                            )
                            .await;
                        let _ = stream.shutdown().await;
                        // Drain a little, then go: the rest of the upload is not read.
                        let mut sink = [0u8; 65536];
                        let _ = stream.read(&mut sink).await;
                    }
                    _ => unreachable!(),
                }
            });
        }
    });
    addr
}

async fn proxy_to_faulty(behaviour: &'static str) -> TestServer {
    let upstream = faulty_upstream(behaviour).await;
    let mut options = ClientOptions::default();
    options.conn.response_timeout = Duration::from_secs(3);
    options.conn.read_timeout = Duration::from_secs(3);
    TestServer::start(
        Proxy::new(reverse(upstream, options)),
        ServerConfig::default(),
    )
    .await
}

/// Reads what comes back for one request: the status, and whether the body was complete.
async fn outcome(client: &mut RawClient) -> (u16, Option<usize>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return (0, None),
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    let complete = client.stream.read_exact(&mut body).await.is_ok();
    (status, complete.then_some(length))
}

#[tokio::test(start_paused = true)]
async fn upstream_faults_mid_body_close_the_client_connection_never_completing_it() {
    for behaviour in ["reset mid-body", "close mid-body", "stall mid-body"] {
        let proxy = proxy_to_faulty(behaviour).await;
        let mut client = RawClient::connect(proxy.addr).await;
        client.get("/", "").await;
        let (status, complete) = outcome(&mut client).await;
        assert_eq!(status, 200, "{behaviour}: the head had arrived");
        assert_eq!(
            complete, None,
            "{behaviour}: a truncated body presented as complete"
        );
        client.expect_eof().await;
    }
}

#[tokio::test(start_paused = true)]
async fn upstream_faults_before_answering_are_502_or_504() {
    for (behaviour, status) in [
        ("reset before answering", 502),
        ("stall before answering", 504),
    ] {
        let proxy = proxy_to_faulty(behaviour).await;
        let mut client = RawClient::connect(proxy.addr).await;
        client.get("/", "").await;
        assert_eq!(client.response().await.status, status, "{behaviour}");
    }
}

#[tokio::test]
async fn an_upstream_that_answers_before_reading_the_body_is_relayed() {
    let proxy = proxy_to_faulty("answer before the body").await;
    let mut client = RawClient::connect(proxy.addr).await;
    // A 4 MB upload the upstream refuses after its head.
    client
        .send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n")
        .await;
    let (mut reader, mut writer) = client.stream.into_split();
    let sending = tokio::spawn(async move {
        let chunk = vec![b'u'; 65536];
        for _ in 0..64 {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
        }
        writer
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("413"),
        "the upstream's early answer reaches the client: {text:?}"
    );
    assert!(text.ends_with("big!"), "{text:?}");
    let _ = sending.await;
}

// --- limits ------------------------------------------------------------------------------

/// Sends one request on a fresh connection and returns the status (the connection closes
/// after an error status).
async fn status_of(server: &TestServer, raw: &[u8]) -> u16 {
    let mut client = RawClient::connect(server.addr).await;
    client.send(raw).await;
    let response = client.response().await;
    if response.status >= 400 {
        assert!(response.closes(), "an error status closes");
        client.expect_eof().await;
    }
    response.status
}

fn chunked_post(body: &str) -> Vec<u8> {
    format!("POST /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
        .into_bytes()
}

#[tokio::test]
async fn every_limit_answers_with_its_status_at_the_default_and_a_configured_value() {
    use hopline::wire::{ChunkedLimits, HeadLimits};
    let defaults = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let small = TestServer::start(Origin::new(), {
        let mut server_config = ServerConfig::default();
        server_config.head_limits = {
            let mut head_limits = HeadLimits::default();
            head_limits.max_request_line = 100;
            head_limits.max_head_bytes = 1000;
            head_limits.max_headers = 5;
            head_limits
        };
        server_config.chunked_limits = {
            let mut chunked_limits = ChunkedLimits::default();
            chunked_limits.max_line = 50;
            chunked_limits.max_trailer_bytes = 100;
            chunked_limits.max_trailer_fields = 3;
            chunked_limits
        };
        server_config.max_body_bytes = Some(10);
        server_config
    })
    .await;
    let target = |n: usize| format!("GET /?{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(n));
    let head_of = |n: usize| format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n", "b".repeat(n));
    let fields = |n: usize| {
        let lines: String = (0..n).map(|i| format!("X-{i}: v\r\n")).collect();
        format!("GET / HTTP/1.1\r\nHost: x\r\n{lines}\r\n")
    };
    let extension = |n: usize| chunked_post(&format!("1;e={}\r\na\r\n0\r\n\r\n", "x".repeat(n)));
    let trailer = |n: usize| chunked_post(&format!("1\r\na\r\n0\r\nT: {}\r\n\r\n", "t".repeat(n)));
    let trailers = |n: usize| {
        let lines: String = (0..n).map(|i| format!("T-{i}: v\r\n")).collect();
        chunked_post(&format!("1\r\na\r\n0\r\n{lines}\r\n"))
    };
    let body = |n: usize| {
        format!(
            "POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n{}",
            "z".repeat(n)
        )
        .into_bytes()
    };
    /// One limit: requests just within and beyond it at the default and at the configured
    /// value, and the status beyond.
    struct Limit {
        what: &'static str,
        within_default: Vec<u8>,
        beyond_default: Vec<u8>,
        within_small: Vec<u8>,
        beyond_small: Vec<u8>,
        status: u16,
    }
    let cases = [
        Limit {
            what: "request line",
            within_default: target(8000).into_bytes(),
            beyond_default: target(8300).into_bytes(),
            within_small: target(50).into_bytes(),
            beyond_small: target(120).into_bytes(),
            status: 414,
        },
        Limit {
            what: "head size",
            within_default: head_of(60_000).into_bytes(),
            beyond_default: head_of(70_000).into_bytes(),
            within_small: head_of(500).into_bytes(),
            beyond_small: head_of(1200).into_bytes(),
            status: 431,
        },
        Limit {
            what: "field count",
            within_default: fields(90).into_bytes(),
            beyond_default: fields(101).into_bytes(),
            within_small: fields(3).into_bytes(),
            beyond_small: fields(6).into_bytes(),
            status: 431,
        },
        Limit {
            what: "chunk extension",
            within_default: extension(4000),
            beyond_default: extension(5000),
            within_small: extension(30),
            beyond_small: extension(60),
            status: 400,
        },
        Limit {
            what: "trailer size",
            within_default: trailer(8000),
            beyond_default: trailer(9000),
            within_small: trailer(50),
            beyond_small: trailer(150),
            status: 400,
        },
        Limit {
            what: "trailer count",
            within_default: trailers(30),
            beyond_default: trailers(40),
            within_small: trailers(3),
            beyond_small: trailers(4),
            status: 400,
        },
    ];
    for case in cases {
        let what = case.what;
        assert_eq!(
            status_of(&defaults, &case.within_default).await,
            200,
            "{what} within the default"
        );
        assert_eq!(
            status_of(&defaults, &case.beyond_default).await,
            case.status,
            "{what} beyond the default"
        );
        assert_eq!(
            status_of(&small, &case.within_small).await,
            200,
            "{what} within the configured limit"
        );
        assert_eq!(
            status_of(&small, &case.beyond_small).await,
            case.status,
            "{what} beyond the configured limit"
        );
    }
    assert_eq!(
        status_of(&small, &body(10)).await,
        200,
        "body within the limit"
    );
    assert_eq!(
        status_of(&small, &body(11)).await,
        413,
        "body beyond the limit"
    );
}

//! Every request shape the other tests replay — the `http_desync_guardian` corpus (each
//! case completed with the body its framing suggests) and the requests of the llhttp corpus
//! — sent to hopline and to nginx, as a server and as a proxy, one fresh connection per
//! send (not half-closed: nginx's proxy takes that for an abort). The verdicts (accepted: the request reached the handler or
//! the origin; refused: an error status or a close) must agree, except for the cases listed
//! in [`DELIBERATE`] with the reason hopline differs. The test fails on a new disagreement
//! and on a listed case that now agrees, so the list (also in docs/hardening.md) cannot rot.
//!
//! It needs nginx: `scripts/interop/nginx_shapes.sh` starts one (a server answering 200 to
//! everything, and a proxy in front of it) and sets `HOPLINE_NGINX_SERVER`,
//! `HOPLINE_NGINX_PROXY` and `HOPLINE_CORPUS`. Without them this test says so and checks
//! nothing.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use base64::Engine;
use common::desync::{body_for, load_cases, with_host};
use common::{RawClient, TestServer, answer_with};
use hopline::conn::{Body, Incoming, ServerConfig};
use hopline::error::ErrorKind;
use hopline::proxy::upstream::Upstreams;
use hopline::proxy::{Proxy, ProxyConfig};
use hopline::wire::ParseError;
use http::{Request, Response, StatusCode};

/// Shapes where hopline's verdict deliberately differs from nginx's, with the reason. A
/// label is `corpus: case (variant)`; the same reason often covers server and proxy.
const DELIBERATE: &[(&str, &str)] = &[
    // Strict framing fields: a value or name another hop may read differently is refused.
    (
        "desync: ambiguous.yaml: Content-Length with arbitrary non-ASCII chars",
        FRAMING,
    ),
    (
        "desync: ambiguous.yaml: Content_Length with underscore.",
        UNDERSCORE,
    ),
    (
        "desync: ambiguous.yaml: Transfer_Encoding with underscore.",
        UNDERSCORE,
    ),
    (
        "desync: ambiguous.yaml: Transfer-Encoding Latin Small Letter Dotless I",
        FRAMING,
    ),
    (
        "desync: ambiguous.yaml: Transfer-Encoding Latin Small Letter Long S",
        FRAMING,
    ),
    (
        "desync: ambiguous.yaml: Transfer-Encoding with a UTF8 delimiter",
        FRAMING,
    ),
    (
        "desync: ambiguous.yaml: Transfer-Encoding with arbitrary non-ASCII chars",
        FRAMING,
    ),
    (
        "desync: edge-cases.yaml: Non-compliant customer header does not shadow",
        FRAMING,
    ),
    (
        "desync: edge-cases.yaml: Bad URI does not shadow essential ambiguous headers",
        URI,
    ),
    // Accepted where nginx refuses, as the RFCs allow.
    (
        "desync: ambiguous.yaml: Duplicate Content-Length",
        SAME_LENGTH,
    ),
    (
        "desync: real-life-test-cases.yaml: Two Identical Fields - CL",
        SAME_LENGTH,
    ),
    (
        "desync: ambiguous.yaml: Transfer-Encoding for HTTP/1.0",
        TE_HTTP10,
    ),
    (
        "desync: real-life-test-cases.yaml: HTTP Version.1.0 and TE",
        TE_HTTP10,
    ),
    // Versions: HTTP/1.0 and 1.1 only.
    (
        "desync: acceptable.yaml: Empty version, which means HTTP/0.9",
        HTTP09,
    ),
    (
        "desync: ambiguous.yaml: Content-Length for empty protocol, which is HTTP/0.9",
        HTTP09,
    ),
    (
        "desync: ambiguous.yaml: Transfer-Encoding for empty protocol, which is HTTP/0.9",
        HTTP09,
    ),
    ("llhttp: request/sample.md: No HTTP version", HTTP09),
    ("desync: acceptable.yaml: Unknown but OK HTTP/1.2", HTTP12),
    (
        "desync: uri-specific-test-cases.yaml: Extra spaces in version",
        REQUEST_LINE,
    ),
    // Field syntax: CRLF only, valid names, no control characters.
    ("desync: bad-header-characters.yaml: Some-Header:", CONTROL),
    (
        "llhttp: request/lenient-header-value-relaxed.md: Control char in header value",
        CONTROL,
    ),
    ("llhttp: request/lenient-headers.md: Header value", CONTROL),
    (
        "llhttp: request/invalid.md: Empty headers separated by LF",
        BARE_LF,
    ),
    (
        "llhttp: request/invalid.md: Headers separated by LF",
        BARE_LF,
    ),
    (
        "llhttp: request/invalid.md: Missing CR between headers",
        BARE_LF,
    ),
    ("llhttp: request/invalid.md: Only LFs present", BARE_LF),
    (
        "llhttp: request/invalid.md: Invalid header token #1",
        FIELD_NAME,
    ),
    // Request targets: ASCII, no quotes, no whitespace.
    ("desync: rfc-compliant.yaml: International in URI", URI),
    ("desync: uri-specific-test-cases.yaml: \\n in URI", URI),
    (
        "llhttp: request/uri.md: Disallow UTF-8 in URI path in strict mode",
        URI,
    ),
    ("llhttp: request/uri.md: Quotes in URI", URI),
    // Chunk grammar.
    (
        "llhttp: request/transfer-encoding.md: No extension after semicolon",
        CHUNK,
    ),
    (
        "llhttp: request/transfer-encoding.md: No semicolon before chunk extensions",
        CHUNK,
    ),
    (
        "llhttp: request/transfer-encoding.md: Space after chunk header",
        CHUNK,
    ),
    (
        "llhttp: request/transfer-encoding.md: Unbalanced chunk extensions quoting",
        CHUNK,
    ),
    // Not the shape: the handler.
    (
        "llhttp: request/content-length.md: Content-Length reset when no body is received",
        UNREAD,
    ),
    (
        "llhttp: request/content-length.md: Spaces in `Content-Length` (surrounding)",
        UNREAD,
    ),
    (
        "llhttp: request/transfer-encoding.md: Chunk extensions",
        UNREAD,
    ),
    (
        "llhttp: request/transfer-encoding.md: Parsing and setting flag",
        UNREAD,
    ),
    ("llhttp: request/method.md: PATCH request", CONDITIONAL),
];

const FRAMING: &str = "a framing field (Content-Length, Transfer-Encoding) with bytes outside \
    its grammar, or a defect that could hide one, is refused (400): nginx ignores or \
    repairs it, and a hop that reads it otherwise frames the request differently (desync)";
const UNDERSCORE: &str = "`Content_Length` / `Transfer_Encoding` are refused (400): nginx \
    drops names with `_`, but some servers read `_` as `-`, so two hops would frame \
    differently";
const SAME_LENGTH: &str = "repeated Content-Length lines with the same value are one length \
    (RFC 9110 §8.6 allows either; the proxy forwards one line); a list in one line and \
    differing values are refused";
const TE_HTTP10: &str = "Transfer-Encoding in HTTP/1.0 is decoded and the connection closed \
    after it (RFC 9112 §6.1: the framing is faulty); nginx refuses it";
const HTTP09: &str = "HTTP/0.9 (no version) is not served: 400 instead of nginx's bare body";
const HTTP12: &str = "HTTP/1.2 does not exist: 505 (RFC 9110 §2.5 would process it as 1.1; \
    hopline serves 1.0 and 1.1 exactly, so no hop guesses at an unknown version's framing)";
const REQUEST_LINE: &str = "a request line is exactly `method SP target SP version` (RFC 9112 \
    §3): extra spaces are 400, not repaired";
const CONTROL: &str = "control characters in a field value are refused (400; RFC 9110 §5.5: \
    a recipient may reject them), never passed to a next hop";
const BARE_LF: &str = "lines end in CRLF only (RFC 9112 §2.2 lets a recipient accept a bare \
    LF; an intermediary that does disagrees with peers that do not)";
const FIELD_NAME: &str = "a field name outside the token grammar is 400; nginx drops the field";
const URI: &str = "a request target is ASCII without `\"` or whitespace (RFC 3986); raw UTF-8 \
    or control bytes are 400, never forwarded for a next hop to read differently";
const CHUNK: &str = "chunk lines follow RFC 9112 §7.1.1 exactly (extensions after `;`, no \
    space before the CRLF, quotes balanced): 400";
const UNREAD: &str = "the input ends inside its body: hopline's test handler reads the body \
    before answering, nginx's `return 200` answers without reading it (as proxies, both wait)";
const CONDITIONAL: &str = "nginx evaluates `If-Match` against its `return` (412); hopline's test \
    handler has no conditional requests: not a difference in the shape";

/// Answers 200 to everything, after reading the body (nginx's `return 200` in hopline); a
/// body over 1 MiB is refused with 413, as nginx's default `client_max_body_size` does.
async fn accept(request: Request<Incoming>) -> Response<Body> {
    let status = match request.into_body().bytes(1 << 20).await {
        Err(e) if matches!(e.kind, ErrorKind::Parse(ParseError::BodyTooLarge { .. })) => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        _ => StatusCode::OK,
    };
    let mut response = Response::new(Body::from("ok"));
    *response.status_mut() = status;
    response
}

/// One request shape.
struct Shape {
    label: String,
    raw: Vec<u8>,
}

/// The shapes: the desync corpus head alone and completed, the llhttp corpus requests
/// (with a `Host` added where missing, as the hardening test does).
fn shapes(corpus: &str) -> Vec<Shape> {
    let mut shapes = Vec::new();
    for case in load_cases() {
        let raw = with_host(&case.raw);
        let mut completed = raw.clone();
        completed.extend_from_slice(&body_for(&raw));
        // Completed with the body its framing suggests: a head alone leaves a server that
        // reads bodies waiting, which says nothing about the shape.
        shapes.push(Shape {
            label: format!("desync: {}: {}", case.file, case.name),
            raw: completed,
        });
    }
    let text = std::fs::read_to_string(corpus).unwrap_or_else(|e| panic!("{corpus}: {e}"));
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        if case["type"] != "request" {
            continue;
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(case["input_b64"].as_str().unwrap())
            .unwrap();
        shapes.push(Shape {
            label: format!(
                "llhttp: {}: {}",
                case["file"].as_str().unwrap(),
                case["name"].as_str().unwrap()
            ),
            raw: with_host(&raw),
        });
    }
    shapes
}

/// What the first answer to `raw`, sent on a new connection to `addr`, says: accepted (a
/// 200 first; also an answer without a status line, as nginx answers an HTTP/0.9 request),
/// refused (another status, or a close without one), or nothing within a second (the
/// server waits for bytes that are not coming: the shape is incomplete to it).
async fn verdict(addr: SocketAddr, raw: &[u8]) -> Verdict {
    let mut client = RawClient::connect(addr).await;
    client.send(raw).await;
    let mut answer = Vec::new();
    let first_line = async {
        let mut chunk = [0u8; 4096];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            match client.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(1), first_line)
        .await
        .is_err()
        && answer.is_empty()
    {
        return Verdict::Waiting;
    }
    if answer.is_empty() {
        return Verdict::Refused(None);
    }
    let status = answer
        .strip_prefix(b"HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| std::str::from_utf8(code).ok()?.parse::<u16>().ok());
    match status {
        Some(200) | None => Verdict::Accepted,
        Some(status) => Verdict::Refused(Some(status)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accepted,
    Refused(Option<u16>),
    Waiting,
}

impl Verdict {
    fn accepted(self) -> bool {
        self == Verdict::Accepted
    }
}

fn env_addr(name: &str) -> Option<SocketAddr> {
    std::env::var(name).ok().map(|v| v.parse().expect(name))
}

#[tokio::test]
async fn every_request_shape_gets_nginx_s_verdict_or_a_documented_reason() {
    let (Some(nginx_server), Some(nginx_proxy), Ok(corpus)) = (
        env_addr("HOPLINE_NGINX_SERVER"),
        env_addr("HOPLINE_NGINX_PROXY"),
        std::env::var("HOPLINE_CORPUS"),
    ) else {
        eprintln!(
            "HOPLINE_NGINX_SERVER / HOPLINE_NGINX_PROXY / HOPLINE_CORPUS not set: nothing \
             compared (scripts/interop/nginx_shapes.sh sets them)"
        );
        return;
    };
    let config = ServerConfig::default();
    let server = TestServer::start(answer_with(accept), config.clone()).await;
    let origin = TestServer::start(answer_with(accept), config.clone()).await;
    let proxy = TestServer::start(
        Proxy::new(ProxyConfig::reverse(Upstreams::single(origin.addr))),
        config,
    )
    .await;
    let mut disagreements: BTreeMap<String, String> = BTreeMap::new();
    let mut compared = 0;
    let mut statuses_differ = 0;
    for shape in shapes(&corpus) {
        for (role, ours, theirs) in [
            ("server", server.addr, nginx_server),
            ("proxy", proxy.addr, nginx_proxy),
        ] {
            compared += 1;
            let (ours, theirs) = (
                verdict(ours, &shape.raw).await,
                verdict(theirs, &shape.raw).await,
            );
            if ours.accepted() != theirs.accepted() {
                disagreements.insert(
                    format!("{} [{role}]", shape.label),
                    format!("hopline {ours:?}, nginx {theirs:?}"),
                );
            } else if ours != theirs {
                statuses_differ += 1;
            }
        }
    }
    eprintln!(
        "{compared} sends compared with nginx: {} verdicts differ (explained by {} documented shapes), {statuses_differ} \
         refused by both with a different status",
        disagreements.len(),
        DELIBERATE.len()
    );
    let mut problems = Vec::new();
    for (label, what) in &disagreements {
        let listed = DELIBERATE
            .iter()
            .any(|(prefix, _)| label.starts_with(prefix));
        if !listed {
            problems.push(format!("not documented: {label}: {what}"));
        }
    }
    for (prefix, _) in DELIBERATE {
        if !disagreements.keys().any(|label| label.starts_with(prefix)) {
            problems.push(format!("documented but now agrees: {prefix}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

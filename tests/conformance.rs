//! The llhttp conformance corpus (../shared/conformance/llhttp.jsonl), replayed through the
//! wire layer: same messages, same accept/reject, same keep-alive decision as llhttp, for
//! every strict case, fed whole and split at every byte.
//!
//! The corpus lives outside the project; `.ci/run` points `HOPLINE_CORPUS` at it. Without
//! the variable this test says so and checks nothing.

use base64::Engine;
use bytes::BytesMut;
use hopline::wire::{
    BodyDecoder, BodyEvent, BodyFraming, ChunkedLimits, HeadLimits, HeadParser, HeadStatus,
    keep_alive_intent,
};
use http::{HeaderMap, Method};
use serde_json::Value;

/// Cases where hopline deliberately answers differently from llhttp, with the reason.
/// The test fails if one of these starts agreeing (so this list cannot rot).
const DIVERGENCES: &[(&str, &str)] = &[
    (
        "Invalid method",
        "RFC 9110 §9.1: a method is any token; llhttp knows a fixed list. hopline parses \
         extension methods and lets the handler answer 501/405.",
    ),
    (
        "HTTP protocol and ANNOUNCE method",
        "same: ANNOUNCE is a valid token; the handler decides (501).",
    ),
    (
        "No HTTP version",
        "HTTP/0.9 requests are obsolete and unframed; hopline rejects them with 400.",
    ),
    (
        "SOURCE request with ICE",
        "ICE/1.0 is not HTTP; hopline is an HTTP/1.x engine and rejects other protocols.",
    ),
    ("OPTIONS request with RTSP", "RTSP is not HTTP (see above)."),
    (
        "ANNOUNCE request with RTSP",
        "RTSP is not HTTP (see above).",
    ),
    ("RTSP response", "RTSP is not HTTP (see above)."),
    ("ICE response", "ICE is not HTTP (see above)."),
    (
        "Quotes in URI",
        "RFC 3986 excludes '\"' and '\\\\' from URIs; the `http` crate's Uri (our API type) \
         rejects them, so hopline answers 400.",
    ),
    (
        "Content-Length reset when no body is received",
        "the request variant: llhttp's fixture skips the declared body from a callback; a \
         server cannot, it reads the 123 body bytes the request announced.",
    ),
    (
        "`host:port` and basic auth",
        "RFC 9110 §4.2.4: userinfo in an http URI is deprecated and a recipient should treat \
         it as an error; a proxy passing it on would send `user@host` as the next Host. \
         hopline answers 400.",
    ),
    (
        "HTTP version 0.9",
        "an HTTP/0.9 status line is not HTTP/1.x; rejected like the request form.",
    ),
    (
        "M-SEARCH request",
        "RFC 9112 §3.2.4: the asterisk-form target is for OPTIONS only (M-SEARCH * is SSDP, \
         HTTP-shaped UDP, not HTTP/1.1); any other method with `*` is answered 400.",
    ),
];

/// Cases whose llhttp fixture tells the parser to skip bodies (as for HEAD responses).
const SKIPS_BODIES: &[&str] = &["Content-Length reset when no body is received"];

#[derive(Debug, Clone, PartialEq)]
struct Message {
    /// Method for requests, status code for responses.
    start: String,
    /// Request target, or reason phrase.
    detail: Vec<u8>,
    version: String,
    /// Lowercased name → values in order, sorted by name.
    headers: Vec<(String, Vec<Vec<u8>>)>,
    body: Vec<u8>,
    complete: bool,
    keep_alive: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    messages: Vec<Message>,
    rejected: Option<String>,
    upgrade: bool,
}

fn group_headers(map: &HeaderMap) -> Vec<(String, Vec<Vec<u8>>)> {
    let mut grouped: Vec<(String, Vec<Vec<u8>>)> = map
        .keys()
        .map(|name| {
            (
                name.as_str().to_string(),
                map.get_all(name)
                    .iter()
                    .map(|v| v.as_bytes().to_vec())
                    .collect(),
            )
        })
        .collect();
    grouped.sort();
    grouped
}

/// Where the driver is between pieces of input.
enum State {
    Head,
    Body {
        decoder: BodyDecoder,
        message: Message,
        stop_after: Option<StopReason>,
    },
    Stopped,
}

#[derive(Clone, Copy)]
enum StopReason {
    Close,
    Upgrade,
}

/// Runs the input through the wire layer the way a connection would: head, body, next
/// message, until the input ends, a message closes or upgrades the connection, or an error.
fn drive(is_request: bool, response_to: &Method, pieces: &[&[u8]]) -> Outcome {
    let limits = HeadLimits::default();
    let mut parser = HeadParser::new();
    let mut outcome = Outcome {
        messages: vec![],
        rejected: None,
        upgrade: false,
    };
    let mut buf = BytesMut::new();
    let mut state = State::Head;
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match &mut state {
                State::Stopped => {
                    // llhttp: data after a message that closed the connection is an error.
                    if outcome.rejected.is_none() && !outcome.upgrade && !buf.is_empty() {
                        outcome.rejected = Some("data after close".into());
                    }
                    break;
                }
                State::Head => {
                    let parsed = if is_request {
                        parser
                            .parse_request(&mut buf, &limits, false)
                            .map(|s| match s {
                                HeadStatus::Complete(h) => {
                                    let target =
                                        h.raw.split(|&b| b == b' ').nth(1).unwrap().to_vec();
                                    let upgrade =
                                        h.fields.wants_upgrade() || h.method == Method::CONNECT;
                                    Some((
                                        h.method.to_string(),
                                        target,
                                        h.version,
                                        h.headers,
                                        h.fields,
                                        h.framing,
                                        upgrade,
                                    ))
                                }
                                HeadStatus::Partial { .. } => None,
                            })
                    } else {
                        parser
                            .parse_response(&mut buf, &limits, response_to)
                            .map(|s| match s {
                                HeadStatus::Complete(h) => {
                                    let upgrade = h.status == http::StatusCode::SWITCHING_PROTOCOLS;
                                    Some((
                                        h.status.as_u16().to_string(),
                                        h.reason.to_vec(),
                                        h.version,
                                        h.headers,
                                        h.fields,
                                        h.framing,
                                        upgrade,
                                    ))
                                }
                                HeadStatus::Partial { .. } => None,
                            })
                    };
                    let (start, detail, version, headers, fields, framing, upgrade) = match parsed {
                        Ok(Some(head)) => head,
                        Ok(None) => break,
                        Err(error) => {
                            outcome.rejected = Some(error.to_string());
                            state = State::Stopped;
                            break;
                        }
                    };
                    let keep_alive =
                        keep_alive_intent(&fields) && framing != BodyFraming::CloseDelimited;
                    let stop_after = if upgrade {
                        Some(StopReason::Upgrade)
                    } else if !keep_alive {
                        Some(StopReason::Close)
                    } else {
                        None
                    };
                    state = State::Body {
                        decoder: BodyDecoder::new(framing, ChunkedLimits::default()),
                        message: Message {
                            start,
                            detail,
                            version: format!("{version:?}")
                                .trim_start_matches("HTTP/")
                                .to_string(),
                            headers: group_headers(&headers),
                            body: vec![],
                            complete: false,
                            keep_alive,
                        },
                        stop_after,
                    };
                }
                State::Body {
                    decoder,
                    message,
                    stop_after,
                } => match decoder.decode(&mut buf) {
                    Ok(None) => break,
                    Ok(Some(BodyEvent::Data(data))) => message.body.extend_from_slice(&data),
                    Ok(Some(event @ (BodyEvent::Trailers(_) | BodyEvent::End))) => {
                        let mut message = message.clone();
                        if let BodyEvent::Trailers(trailers) = event {
                            // llhttp reports trailer fields together with the header fields.
                            let mut all = HeaderMap::new();
                            for (name, values) in message.headers.iter().cloned() {
                                for value in values {
                                    all.append(
                                        http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                                        http::HeaderValue::from_bytes(&value).unwrap(),
                                    );
                                }
                            }
                            for (name, value) in &trailers {
                                all.append(name.clone(), value.clone());
                            }
                            message.headers = group_headers(&all);
                        }
                        message.complete = true;
                        let stop = *stop_after;
                        outcome.messages.push(message);
                        state = match stop {
                            Some(StopReason::Upgrade) => {
                                outcome.upgrade = true;
                                State::Stopped
                            }
                            Some(StopReason::Close) => State::Stopped,
                            None => State::Head,
                        };
                    }
                    Err(error) => {
                        outcome.rejected = Some(error.to_string());
                        state = State::Stopped;
                        break;
                    }
                },
            }
        }
    }
    if let State::Body { mut message, .. } = state {
        // A keep-alive decision belongs to complete messages only.
        message.keep_alive = false;
        outcome.messages.push(message);
    }
    outcome
}

fn expected_messages(case: &Value, is_request: bool) -> Vec<Message> {
    let keep_alive: Vec<bool> = case["oracle"]["httptools"]["should_keep_alive"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_bool().unwrap()).collect())
        .unwrap_or_default();
    let mut complete_index = 0;
    case["expected"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        // llhttp also reports a head it had only begun to parse; we report complete heads.
        .filter(|m| m["headers_complete"].as_bool() == Some(true))
        .map(|m| {
            let mut headers = HeaderMap::new();
            for pair in m["headers"].as_array().unwrap() {
                let name = pair[0].as_str().unwrap();
                // llhttp keeps trailing whitespace in values; it is not part of the field
                // value (RFC 9110 §5.5), and hopline strips it.
                let mut value = latin1(pair[1].as_str().unwrap());
                while value.last().is_some_and(|&b| b == b' ' || b == b'\t') {
                    value.pop();
                }
                headers.append(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    http::HeaderValue::from_bytes(&value).unwrap(),
                );
            }
            let complete = m["complete"].as_bool().unwrap_or(false);
            let keep_alive = if complete {
                complete_index += 1;
                keep_alive.get(complete_index - 1).copied().unwrap_or(false)
            } else {
                false
            };
            Message {
                start: if is_request {
                    m["method"].as_str().unwrap_or_default().to_string()
                } else {
                    m["status_code"].as_u64().unwrap_or_default().to_string()
                },
                detail: if is_request {
                    latin1(m["url"].as_str().unwrap_or_default())
                } else {
                    latin1(m["status"].as_str().unwrap_or_default())
                },
                version: m["version"].as_str().unwrap_or_default().to_string(),
                headers: group_headers(&headers),
                body: base64::engine::general_purpose::STANDARD
                    .decode(m["body_b64"].as_str().unwrap_or_default())
                    .unwrap(),
                complete,
                keep_alive,
            }
        })
        .collect()
}

/// The corpus stores raw bytes decoded as Latin-1.
fn latin1(text: &str) -> Vec<u8> {
    text.chars().map(|c| c as u32 as u8).collect()
}

/// Compares our outcome with llhttp's; `None` when they agree.
fn disagreement(case: &Value, ours: &Outcome) -> Option<String> {
    let is_request = case["type"] == "request";
    let expected_error = !case["expected"]["error"].is_null();
    if expected_error {
        return match &ours.rejected {
            Some(_) => None,
            None => Some(format!(
                "llhttp rejects ({}) but we accept: {ours:?}",
                case["expected"]["error"]
            )),
        };
    }
    if let Some(reason) = &ours.rejected {
        return Some(format!("llhttp accepts but we reject: {reason}"));
    }
    let expected = expected_messages(case, is_request);
    if ours.messages != expected {
        return Some(format!(
            "messages differ:\n ours:     {:?}\n expected: {:?}",
            ours.messages, expected
        ));
    }
    let expected_upgrade = case["expected"]["upgrade"].as_bool().unwrap_or(false);
    if ours.upgrade != expected_upgrade {
        return Some(format!(
            "upgrade: ours {} expected {expected_upgrade}",
            ours.upgrade
        ));
    }
    None
}

#[test]
fn llhttp_corpus_strict_cases() {
    let Ok(path) = std::env::var("HOPLINE_CORPUS") else {
        eprintln!(
            "HOPLINE_CORPUS is unset: skipping the llhttp conformance corpus \
             (.ci/run sets it to ../shared/conformance/llhttp.jsonl)"
        );
        return;
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut divergent_seen = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).unwrap();
        let kind = case["type"].as_str().unwrap();
        if kind != "request" && kind != "response" {
            continue;
        }
        let name = case["name"].as_str().unwrap().to_string();
        let input = base64::engine::general_purpose::STANDARD
            .decode(case["input_b64"].as_str().unwrap())
            .unwrap();
        let is_request = kind == "request";
        // llhttp's fixture skips bodies from its headers-complete callback in this case, as a
        // client does for a response to HEAD.
        let response_to = if SKIPS_BODIES.contains(&name.as_str()) {
            Method::HEAD
        } else {
            Method::GET
        };
        let whole = drive(is_request, &response_to, &[&input]);
        // The same answer however the input is cut.
        for cut in 0..=input.len() {
            let split = drive(is_request, &response_to, &[&input[..cut], &input[cut..]]);
            assert_eq!(
                split.rejected.is_some(),
                whole.rejected.is_some(),
                "{name}: split at {cut} changes accept/reject"
            );
            if whole.rejected.is_none() {
                assert_eq!(split, whole, "{name}: split at {cut} changes the parse");
            }
        }
        checked += 1;
        let verdict = disagreement(&case, &whole);
        let divergent = DIVERGENCES.iter().any(|(n, _)| *n == name);
        match (verdict, divergent) {
            (None, false) => {}
            (Some(_), true) => divergent_seen.push(name),
            (None, true) => failures.push(format!(
                "{kind} {name:?}: listed as a divergence but now agrees"
            )),
            (Some(why), false) => failures.push(format!("{kind} {name:?}: {why}")),
        }
    }
    eprintln!(
        "llhttp corpus: {checked} strict cases, {} agree, {} documented divergences",
        checked - divergent_seen.len() - failures.len(),
        divergent_seen.len()
    );
    assert!(
        checked >= 200,
        "only {checked} strict cases found in {path}"
    );
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

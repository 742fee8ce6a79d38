//! The `http_desync_guardian` request corpus, with its classifier as an external oracle:
//! every request the classifier (or the corpus) rates Severe must be rejected by hopline's
//! parser, and every request it rates Compliant must be accepted (so that a parser which
//! rejects everything fails this test too).
//!
//! The corpus ships inside the crate's source; `cargo metadata` says where that is.

mod common;

use bytes::BytesMut;
use common::desync::load_cases;
use hopline::wire::{HeadLimits, HeadParser, HeadStatus, ParseError};
use http_desync_guardian::RequestSafetyTier;
use http_desync_guardian::request_analyzer::HttpRequestData;

/// Requests the classifier rates Compliant that hopline rejects on purpose, with the reason.
/// The test fails if one of these is accepted (so the list cannot rot).
const EXEMPT: &[(&str, &str)] = &[
    (
        "International in URI",
        "raw UTF-8 in the request-target: RFC 3986 URIs are ASCII and llhttp's strict mode \
         (the other oracle) rejects it too; clients percent-encode.",
    ),
    (
        "Empty URI",
        "RFC 9112 §3.2: the request-target is never empty.",
    ),
    (
        "Transfer-Encoding with a param: chunked;custom_param",
        "`chunked;custom_param;` is not transfer-parameter syntax (name=value, RFC 9110 §10.1.4); \
         and gzip/deflate transfer codings are not implemented (501) in any case.",
    ),
    (
        "TE with custom parameters OK",
        "same field values as the case above.",
    ),
];

/// Our verdict: `Ok(())` if the head parses and its framing is accepted. A well-formed
/// request whose transfer coding we do not implement (501, RFC 9112 §6.1) counts as
/// understood: the answer is about a feature, not about a malformed message.
fn hopline_accepts(raw: &[u8]) -> Result<(), String> {
    let mut buf = BytesMut::from(raw);
    match HeadParser::new().parse_request(&mut buf, &HeadLimits::default(), false) {
        Ok(HeadStatus::Complete(_)) | Err(ParseError::TransferCodingNotImplemented) => Ok(()),
        Ok(HeadStatus::Partial { .. }) => Err("incomplete".into()),
        Err(error) => Err(error.to_string()),
    }
}

/// Whether a hopline server refuses to read this request's body: a parse error, or a
/// transfer coding it does not implement (501), exactly as `conn` decides.
fn hopline_refuses(raw: &[u8]) -> bool {
    let mut buf = BytesMut::from(raw);
    match HeadParser::new().parse_request(&mut buf, &HeadLimits::default(), false) {
        Ok(HeadStatus::Complete(head)) => head.fields.has_other_codings(),
        _ => true,
    }
}

#[test]
fn every_severe_request_is_rejected_and_compliant_ones_accepted() {
    let cases = load_cases();
    let mut severe = 0;
    let mut compliant = 0;
    let mut ambiguous_accepted = Vec::new();
    let mut ambiguous_rejected = 0;
    let mut failures = Vec::new();
    for case in &cases {
        let oracle = HttpRequestData::analyze_raw_request(&case.raw).tier;
        let ours = hopline_accepts(&case.raw);
        let label = format!("{}: {:?}", case.file, case.name);
        if oracle == RequestSafetyTier::Severe || case.expected_tier == "Severe" {
            severe += 1;
            if !hopline_refuses(&case.raw) {
                failures.push(format!("{label}: rated Severe but accepted"));
            }
        } else if oracle == RequestSafetyTier::Compliant && case.expected_tier == "Compliant" {
            compliant += 1;
            let exempt = EXEMPT.iter().any(|(name, _)| *name == case.name);
            match (ours, exempt) {
                (Ok(()), false) | (Err(_), true) => {}
                (Err(why), false) => {
                    failures.push(format!("{label}: rated Compliant but rejected ({why})"))
                }
                (Ok(()), true) => failures.push(format!(
                    "{label}: exempt from the Compliant rule but now accepted; update EXEMPT"
                )),
            }
        } else if oracle == RequestSafetyTier::Ambiguous {
            if hopline_refuses(&case.raw) {
                ambiguous_rejected += 1;
            } else {
                ambiguous_accepted.push(label);
            }
        }
    }
    eprintln!(
        "desync corpus: {} cases; {severe} Severe (all rejected), {compliant} Compliant \
         ({} exempt, the rest accepted), Ambiguous: {ambiguous_rejected} rejected, {} accepted:",
        cases.len(),
        EXEMPT.len(),
        ambiguous_accepted.len()
    );
    for label in &ambiguous_accepted {
        eprintln!("  accepted Ambiguous {label}");
    }
    assert!(cases.len() > 100, "corpus too small: {}", cases.len());
    assert!(severe >= 30, "only {severe} Severe cases");
    assert!(compliant >= 20, "only {compliant} Compliant cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

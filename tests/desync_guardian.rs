//! The `http_desync_guardian` request corpus, with its classifier as an external oracle:
//! every request the classifier (or the corpus) rates Severe must be rejected by hopline's
//! parser, and every request it rates Compliant must be accepted (so that a parser which
//! rejects everything fails this test too).
//!
//! The corpus ships inside the crate's source; `cargo metadata` says where that is.

use bytes::BytesMut;
use hopline::wire::{HeadLimits, HeadParser, HeadStatus, ParseError};
use http_desync_guardian::RequestSafetyTier;
use http_desync_guardian::request_analyzer::HttpRequestData;
use yaml_rust2::{Yaml, YamlLoader};

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

struct Case {
    file: String,
    name: String,
    raw: Vec<u8>,
    expected_tier: String,
}

/// The host target triple (so that `cargo metadata` needs only this platform's crates).
fn host_triple() -> String {
    let output = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("host line in rustc -vV")
        .to_string()
}

fn corpus_dir() -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(host_triple())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let manifest = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "http_desync_guardian")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("http_desync_guardian in cargo metadata");
    std::path::Path::new(manifest)
        .parent()
        .unwrap()
        .join("tests")
}

fn text(yaml: &Yaml) -> String {
    match yaml {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null | Yaml::BadValue => String::new(),
        other => panic!("unexpected YAML value {other:?}"),
    }
}

/// Builds the raw request exactly as the crate's own harness does:
/// `METHOD SP uri SP version CRLF (name ": " value CRLF)* CRLF`.
fn load_cases() -> Vec<Case> {
    let dir = corpus_dir();
    let mut cases = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let docs = YamlLoader::load_from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let Some(list) = docs.first().and_then(|d| d.as_vec()) else {
            continue;
        };
        for case in list {
            let mut raw = format!(
                "{} {} {}\r\n",
                text(&case["method"]),
                text(&case["uri"]),
                text(&case["version"])
            );
            for header in case["headers"].as_vec().into_iter().flatten() {
                raw.push_str(&format!(
                    "{}: {}\r\n",
                    text(&header["name"]),
                    text(&header["value"])
                ));
            }
            raw.push_str("\r\n");
            cases.push(Case {
                file: file.clone(),
                name: text(&case["name"]),
                raw: raw.into_bytes(),
                expected_tier: text(&case["expected"]["tier"]),
            });
        }
    }
    cases
}

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

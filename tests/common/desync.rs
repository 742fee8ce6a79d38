//! The `http_desync_guardian` request corpus: its YAML cases as raw requests, built as the
//! crate's own harness builds them. The corpus ships inside the crate's source; `cargo
//! metadata` says where that is.

use yaml_rust2::{Yaml, YamlLoader};

/// One case of the corpus.
pub struct Case {
    pub file: String,
    pub name: String,
    pub raw: Vec<u8>,
    pub expected_tier: String,
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
pub fn load_cases() -> Vec<Case> {
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

/// The corpus's requests mostly lack `Host`, which HTTP/1.1 requires (400): one is added
/// where there is none, so that a request is judged on what the case is about.
pub fn with_host(raw: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw).to_ascii_lowercase();
    if text.contains("\nhost:") {
        return raw.to_vec();
    }
    let line_end = raw
        .iter()
        .position(|&b| b == b'\n')
        .map_or(raw.len(), |i| i + 1);
    let mut out = raw[..line_end].to_vec();
    out.extend_from_slice(b"Host: x\r\n");
    out.extend_from_slice(&raw[line_end..]);
    out
}

/// A body matching what a head's framing fields seem to say: a last chunk if it mentions
/// chunked, else as many bytes as its first Content-Length.
pub fn body_for(raw: &[u8]) -> Vec<u8> {
    let head = String::from_utf8_lossy(raw).to_ascii_lowercase();
    if head.contains("chunked") {
        return b"0\r\n\r\n".to_vec();
    }
    let length = head
        .split("content-length")
        .nth(1)
        .and_then(|rest| {
            let digits: String = rest
                .trim_start_matches([' ', ':', '\t'])
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<usize>().ok()
        })
        .unwrap_or(0);
    vec![b'x'; length.min(1 << 16)]
}

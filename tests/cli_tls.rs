//! The binary over TLS, as a user runs it: `get`'s verdicts and exit codes on bad
//! certificates (curl's 35 and 60), `get -v` showing the handshake, `bench` counting
//! resumed handshakes, and `serve --tls-cert` reloading its certificate on SIGHUP.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::TestServer;
use common::tls::Pki;
use hopline::conn::{Hooks, ServerConfig};
use hopline::origin::Origin;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStderr, Command};

/// Runs the binary: (exit code, stdout, stderr).
async fn hopline(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hopline"))
        .args(args)
        .output()
        .await
        .expect("run hopline");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn tls_origin(
    pki: &Pki,
    certificate: hopline::transport::tls::CertificateFiles,
) -> TestServer {
    TestServer::start_tls(
        Origin::new(),
        ServerConfig::default(),
        pki.acceptor(vec![certificate]),
        Hooks::default(),
    )
    .await
}

#[tokio::test]
async fn get_fails_bad_certificates_with_curl_s_exit_codes() {
    let pki = Pki::new();
    let ca = pki.ca_file();
    let ca = ca.to_str().unwrap();
    let cases = [
        (
            "expired",
            pki.expired(&["localhost"]),
            "certificate expired",
        ),
        (
            "self-signed",
            pki.self_signed(&["localhost"]),
            "unknown certificate authority",
        ),
        (
            "wrong name",
            pki.leaf(&["elsewhere.test"]),
            "not valid for name",
        ),
    ];
    for (what, certificate, message) in cases {
        let origin = tls_origin(&pki, certificate).await;
        let url = format!("https://localhost:{}/", origin.addr.port());
        let (code, stdout, stderr) = hopline(&["get", "--cacert", ca, &url]).await;
        assert_eq!(code, 60, "{what}: {stdout}{stderr}");
        assert!(stderr.contains(message), "{what}: {stderr}");
        assert!(stderr.contains("1 request of 1 failed"), "{what}: {stderr}");
        // With -k the same server is reached.
        let (code, stdout, _) = hopline(&["get", "-k", &url]).await;
        assert_eq!(code, 0, "{what} with -k: {stdout}");
    }
    // A server that does not speak TLS: a handshake failure, not a certificate one.
    let plain = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let url = format!("https://localhost:{}/", plain.addr.port());
    let (code, stdout, _) = hopline(&["get", "--cacert", ca, &url]).await;
    assert_eq!(code, 35, "{stdout}");
}

#[tokio::test]
async fn get_shows_the_handshake_and_its_resumption() {
    let pki = Pki::new();
    let origin = tls_origin(&pki, pki.leaf(&["localhost"])).await;
    let url = format!("https://localhost:{}/", origin.addr.port());
    let ca = pki.ca_file();
    let args = [
        "get",
        "-v",
        "--mode",
        "close",
        "--cacert",
        ca.to_str().unwrap(),
        &url,
        &url,
    ];
    let (code, stdout, stderr) = hopline(&args).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let handshakes: Vec<&str> = stderr.lines().filter(|l| l.starts_with("* TLS")).collect();
    assert_eq!(handshakes.len(), 2, "{stderr}");
    assert!(handshakes[0].contains("TLSv1.3") && handshakes[0].contains("full handshake"));
    assert!(handshakes[1].contains("resumed handshake"), "{stderr}");
    assert!(
        handshakes[0].contains("certificate verified for localhost"),
        "{stderr}"
    );
    assert!(handshakes[0].contains("ALPN http/1.1"), "{stderr}");
}

#[tokio::test]
async fn bench_counts_handshakes_and_resumptions() {
    let pki = Pki::new();
    let origin = tls_origin(&pki, pki.leaf(&["localhost"])).await;
    let url = format!("https://localhost:{}/", origin.addr.port());
    let ca = pki.ca_file();
    let args = [
        "bench",
        "--mode",
        "close",
        "-c",
        "2",
        "-n",
        "40",
        "--json",
        "--cacert",
        ca.to_str().unwrap(),
        &url,
    ];
    let (code, stdout, stderr) = hopline(&args).await;
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["requests"], 40, "{stdout}");
    let tls = &report["tls"];
    let handshakes = tls["handshakes"].as_u64().unwrap();
    assert!(handshakes >= 40, "one per connection: {stdout}");
    // Each of the two workers' first handshake is full; every later one resumes.
    assert!(
        tls["resumed"].as_u64().unwrap() >= handshakes - 2,
        "{stdout}"
    );
    assert!(tls["handshakes_per_second"].as_f64().unwrap() > 0.0);
}

/// Kills the child on drop (a failed assertion must not leave a server running).
struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// Fetches `url` verifying the certificate for `name`: `get`'s exit code.
async fn fetch_as(ca: &str, name: &str, url: &str) -> i32 {
    hopline(&["get", "--cacert", ca, "--tls-server-name", name, url])
        .await
        .0
}

#[tokio::test]
async fn serve_reloads_its_certificate_on_sighup() {
    let pki = Pki::new();
    let first = pki.leaf(&["a.test"]);
    let second = pki.leaf(&["b.test"]);
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_hopline"))
        .args(["serve", "--workers", "1", "--listen", &listen])
        .args(["--tls-cert", first.cert.to_str().unwrap()])
        .args(["--tls-key", first.key.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut child = Child(child);
    let mut log = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let url = format!("https://127.0.0.1:{port}/");
    let ca = pki.ca_file();
    let ca = ca.to_str().unwrap();
    wait_for(&mut log, &format!("listening on https://{listen}")).await;
    assert_eq!(fetch_as(ca, "a.test", &url).await, 0);
    assert_eq!(fetch_as(ca, "b.test", &url).await, 60, "not yet b.test");

    // The same files, new contents; then SIGHUP.
    std::fs::copy(&second.cert, &first.cert).unwrap();
    std::fs::copy(&second.key, &first.key).unwrap();
    let pid = child.0.id().unwrap() as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    wait_for(&mut log, "SIGHUP: TLS certificates reloaded").await;
    assert_eq!(fetch_as(ca, "b.test", &url).await, 0, "the new certificate");
    assert_eq!(
        fetch_as(ca, "a.test", &url).await,
        60,
        "the old one is gone"
    );

    // A broken file on the next SIGHUP changes nothing.
    std::fs::write(&first.cert, "not a certificate").unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    wait_for(&mut log, "SIGHUP: TLS certificates not reloaded").await;
    assert_eq!(
        fetch_as(ca, "b.test", &url).await,
        0,
        "still serving b.test"
    );
}

/// Reads the server's log until a line contains `needle` (10 s at most).
async fn wait_for(log: &mut Lines<BufReader<ChildStderr>>, needle: &str) {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = log.next_line().await.unwrap() {
            if line.contains(needle) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "the log never said {needle:?}");
}

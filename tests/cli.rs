//! The binary's client subcommands end to end against an in-process origin: what a user
//! types and reads (the library paths under them are tested in their own files).

mod common;

use common::TestServer;
use hopline::conn::ServerConfig;
use hopline::origin::Origin;
use tokio::process::Command;

async fn hopline(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hopline"))
        .args(args)
        .output()
        .await
        .expect("run hopline");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn get_reports_connection_reuse_per_url() {
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let hello = format!("http://{}/", origin.addr);
    let bytes = format!("http://{}/bytes/10", origin.addr);
    let (ok, stdout, stderr) = hopline(&["get", &hello, &bytes]).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("2 requests over 1 connection (1 reused, 0 retried, 0 failed)"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = hopline(&["get", "-v", "--mode", "close", &hello, &hello]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2 requests over 2 connections"), "{stdout}");
    assert!(stderr.contains("< HTTP/1.1 200 OK (connection"), "{stderr}");
}

#[tokio::test]
async fn get_fails_cleanly_when_nothing_listens() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (ok, stdout, stderr) = hopline(&["get", &format!("http://{addr}/")]).await;
    assert!(!ok, "a refused connection is a failure: {stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn bench_runs_a_bounded_load_and_reports_json() {
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let url = format!("http://{}/", origin.addr);
    let (ok, stdout, stderr) = hopline(&["bench", "-c", "4", "-n", "200", "--json", &url]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"requests\": 200,"), "{stdout}");
    assert!(stdout.contains("\"2xx\": 200"), "{stdout}");
}

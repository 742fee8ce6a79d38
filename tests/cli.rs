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

#[tokio::test]
async fn check_config_accepts_the_example_and_names_the_line_of_an_error() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hopline.toml");
    let (ok, stdout, stderr) = hopline(&["check-config", example]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("ok") && stdout.contains("api"), "{stdout}");

    let dir = std::env::temp_dir().join(format!("hopline-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"127.0.0.1:1\"\n\n[downstream]\nheader_timeout = \"ten\"\n",
    )
    .unwrap();
    let (ok, _, stderr) = hopline(&["check-config", bad.to_str().unwrap()]).await;
    assert!(!ok);
    assert!(
        stderr.contains("bad.toml:4: [downstream] header_timeout: "),
        "{stderr}"
    );
    // The servers refuse to start on it too.
    let (ok, _, stderr) = hopline(&["serve", "--config", bad.to_str().unwrap()]).await;
    assert!(!ok && stderr.contains("bad.toml:4"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn top_shows_the_connections_of_a_running_server() {
    use hopline::admin::Admin;
    use hopline::conn::{Hooks, LiveConns};
    use hopline::metrics::Metrics;
    use hopline::server::ListenerConfig;
    let live = LiveConns::new();
    let metrics = std::sync::Arc::new(Metrics::new(live.clone()));
    let hooks = Hooks {
        live: Some(live.clone()),
        observer: Some(metrics.observer()),
    };
    let admin = TestServer::start(Admin::new(metrics, live), ServerConfig::default()).await;
    let server = TestServer::start_hooked(
        Origin::new(),
        ServerConfig::default(),
        ListenerConfig::default(),
        hooks,
    )
    .await;
    let mut idle = common::RawClient::connect(server.addr).await;
    idle.get("/", "").await;
    assert_eq!(idle.response().await.status, 200);
    let (ok, stdout, stderr) = hopline(&["top", &admin.addr.to_string(), "--once"]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("downstream: 1 open, 1 idle"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("downstream") && l.contains("idle")),
        "{stdout}"
    );
}

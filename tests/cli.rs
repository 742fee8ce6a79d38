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
    assert!(stdout.contains("\"200\": 200"), "per status code: {stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let latency = &report["latency_us"];
    assert!(latency["stdev"].as_f64().unwrap() >= 0.0, "{latency}");
    let bars = latency["histogram"].as_array().unwrap();
    let counted: u64 = bars.iter().map(|bar| bar["count"].as_u64().unwrap()).sum();
    assert_eq!(
        counted, 200,
        "the histogram's bars hold every response: {latency}"
    );

    let (ok, stdout, stderr) = hopline(&["bench", "-c", "2", "-n", "50", &url]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("latency histogram"), "{stdout}");
    assert!(
        stdout.contains(" ± "),
        "mean and standard deviation: {stdout}"
    );
}

#[tokio::test]
async fn bench_fails_when_no_request_succeeds_or_on_errors_when_asked() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let (ok, stdout, stderr) = hopline(&["bench", "-c", "2", "-n", "20", &closed]).await;
    assert!(!ok, "every request failed: {stdout}");
    assert!(stderr.contains("no request succeeded"), "{stderr}");
    assert!(stdout.contains("errors  connect 20"), "{stdout}");

    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let missing = format!("http://{}/no/such/file", origin.addr);
    let found = format!("http://{}/", origin.addr);
    let (ok, stdout, _) = hopline(&["bench", "-c", "1", "-n", "5", &missing]).await;
    assert!(!ok, "only 404s: {stdout}");
    assert!(stdout.contains("status codes  404 5"), "{stdout}");
    let (ok, stdout, stderr) =
        hopline(&["bench", "-c", "1", "-n", "5", "--fail-on-errors", &found]).await;
    assert!(ok, "{stdout}{stderr}");
    // Every other answer a 503: the run succeeds, unless errors are failures.
    let turn = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flaky = TestServer::start(
        common::answer_with(move |_| {
            let turn = turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                let mut response = http::Response::new(hopline::Body::from("x"));
                if turn % 2 == 1 {
                    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                }
                response
            }
        }),
        ServerConfig::default(),
    )
    .await;
    let flaky = format!("http://{}/", flaky.addr);
    let (ok, stdout, _) = hopline(&["bench", "-c", "1", "-n", "10", &flaky]).await;
    assert!(ok, "{stdout}");
    assert!(stdout.contains("status codes  200 5, 503 5"), "{stdout}");
    let (ok, _, stderr) =
        hopline(&["bench", "-c", "1", "-n", "10", "--fail-on-errors", &flaky]).await;
    assert!(
        !ok && stderr.contains("5 of 10 requests failed (--fail-on-errors)"),
        "{stderr}"
    );
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

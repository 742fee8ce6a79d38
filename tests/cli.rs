//! The binary's client subcommands end to end against an in-process origin: what a user
//! types and reads (the library paths under them are tested in their own files).

mod common;

use common::{RawClient, TestServer};
use hopline::conn::ServerConfig;
use hopline::origin::Origin;
use http_body_util::BodyExt;
use tokio::process::Command;

/// Runs the binary with `args` to its end.
async fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hopline"))
        .args(args)
        .output()
        .await
        .expect("run hopline")
}

async fn hopline(args: &[&str]) -> (bool, String, String) {
    let output = run(args).await;
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
    assert_eq!(
        stdout, "Hello, world!abcdefghij",
        "bodies on standard output, as curl"
    );
    assert!(
        stderr.contains("2 requests over 1 connection (1 reused, 0 retried, 0 failed)"),
        "the table on standard error: {stderr}"
    );
    let (ok, _, stderr) = hopline(&["get", "-v", "--mode", "close", &hello, &hello]).await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("2 requests over 2 connections"), "{stderr}");
    assert!(stderr.contains("< HTTP/1.1 200 OK\n"), "{stderr}");
    assert!(
        stderr.contains("> GET / HTTP/1.1\n> host: 127.0.0.1:")
            && stderr.contains("> connection: close\n"),
        "the head exactly as sent, Host and Connection included: {stderr}"
    );
}

#[tokio::test]
async fn get_writes_heads_and_bodies_where_curl_would() {
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let url = format!("http://{}/bytes/5", origin.addr);
    let (ok, stdout, stderr) = hopline(&["get", "-i", "-s", &url]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("HTTP/1.1 200 OK\r\n"), "{stdout}");
    assert!(stdout.contains("content-length: 5\r\n"), "{stdout}");
    assert!(stdout.ends_with("\r\n\r\nabcde"), "{stdout}");
    assert_eq!(stderr, "", "-s: no table");

    let dir = std::env::temp_dir().join(format!("hopline-get-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("body");
    let (ok, stdout, stderr) = hopline(&["get", "-o", file.to_str().unwrap(), &url]).await;
    assert!(ok && stdout.is_empty(), "{stdout}{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), b"abcde");

    // -d @file is a form without line breaks; --data-binary @file goes byte for byte.
    std::fs::write(&file, "a=1\r\nb=2\n").unwrap();
    let echo = format!("http://{}/echo", origin.addr);
    let at_file = format!("@{}", file.display());
    let (ok, stdout, stderr) = hopline(&["get", "-d", &at_file, "-d", "c=3", &echo]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("POST /echo HTTP/1.1\r\n"), "{stdout}");
    assert!(
        stdout.contains("content-type: application/x-www-form-urlencoded\r\n")
            && stdout.contains("content-length: 10\r\n")
            && stdout.ends_with("\r\n\r\na=1b=2&c=3"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = hopline(&["get", "-v", "--data-binary", &at_file, &echo]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("content-length: 9\r\n"), "{stdout}");
    assert!(
        stderr.contains("> content-length: 9\n"),
        "-v shows the length sent: {stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `/from` redirects to `/to` (on `elsewhere` if given) with `status`; `/loop` to itself;
/// `/to` says what it got.
fn redirecting(status: u16, elsewhere: Option<String>) -> impl common::TestService {
    common::answer_with(move |request: http::Request<hopline::conn::Incoming>| {
        let elsewhere = elsewhere.clone();
        async move {
            let path = request.uri().path().to_string();
            let location = match (path.as_str(), &elsewhere) {
                ("/from", Some(other)) => Some(format!("{other}/to")),
                ("/from", None) => Some("to".to_string()),
                ("/loop", _) => Some("/loop".to_string()),
                _ => None,
            };
            if let Some(location) = location {
                let mut response = http::Response::new(hopline::Body::from("moved"));
                *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                let location = location.parse().unwrap();
                response.headers_mut().insert("location", location);
                return response;
            }
            let method = request.method().clone();
            let auth = request.headers().contains_key("authorization");
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let seen = format!("{method} {path} auth={auth} body={}", body.len());
            http::Response::new(hopline::Body::from(seen))
        }
    })
}

#[tokio::test]
async fn get_follows_redirects_as_curl_does() {
    for (status, after_post) in [(302, "GET"), (303, "GET"), (307, "POST"), (308, "POST")] {
        let server = TestServer::start(redirecting(status, None), ServerConfig::default()).await;
        let from = format!("http://{}/from", server.addr);
        let (ok, stdout, stderr) = hopline(&["get", "-L", "-d", "x=1", &from]).await;
        assert!(ok, "{stderr}");
        let body = if after_post == "POST" { 3 } else { 0 };
        assert_eq!(
            stdout,
            format!("{after_post} /to auth=false body={body}"),
            "{status}"
        );
        assert!(
            stderr.contains(&format!("{status} ")) && stderr.contains("2 requests"),
            "a row per response: {stderr}"
        );
    }
    // Without -L, the redirect itself.
    let server = TestServer::start(redirecting(301, None), ServerConfig::default()).await;
    let from = format!("http://{}/from", server.addr);
    let (ok, stdout, _) = hopline(&["get", &from]).await;
    assert!(ok);
    assert_eq!(stdout, "moved");
    // A loop ends at --max-redirs with curl's exit status 47.
    let looping = format!("http://{}/loop", server.addr);
    let (code, stderr) = exit_status(&["get", "-L", "--max-redirs", "3", &looping]).await;
    assert_eq!(code, Some(47), "{stderr}");
    assert!(
        stderr.contains("Maximum (3) redirects followed"),
        "{stderr}"
    );
    // Credentials stay with their origin.
    let other = TestServer::start(redirecting(302, None), ServerConfig::default()).await;
    let elsewhere = Some(format!("http://{}", other.addr));
    let server = TestServer::start(redirecting(302, elsewhere), ServerConfig::default()).await;
    let from = format!("http://{}/from", server.addr);
    let auth = "Authorization: Bearer secret";
    let (ok, stdout, stderr) = hopline(&["get", "-L", "-H", auth, &from]).await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "GET /to auth=false body=0");
}

/// Runs hopline; its exit status and standard error.
async fn exit_status(args: &[&str]) -> (Option<i32>, String) {
    let output = run(args).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[tokio::test]
async fn get_exits_as_curl_does() {
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let missing = format!("http://{}/no/such/file", origin.addr);
    let (code, stderr) = exit_status(&["get", "-f", &missing]).await;
    assert_eq!(code, Some(22), "{stderr}");
    assert!(stderr.contains("1 response was 400 or above"), "{stderr}");
    let (code, _) = exit_status(&["get", &missing]).await;
    assert_eq!(code, Some(0), "a 404 without -f is a fetch that worked");
    let unknown = "http://no-such-host.invalid/";
    let (code, stderr) = exit_status(&["get", unknown]).await;
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stderr.contains("could not resolve host"), "{stderr}");
    let (code, stderr) = exit_status(&["get", "-s", unknown]).await;
    assert_eq!(
        (code, stderr.as_str()),
        (Some(6), ""),
        "-s: the status says it"
    );
    let (code, stderr) = exit_status(&["get", "-sS", unknown]).await;
    assert_eq!(code, Some(6));
    assert!(
        stderr.contains("could not resolve host") && !stderr.contains("requests over"),
        "-sS: the failure, not the table: {stderr}"
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (code, stderr) = exit_status(&["get", &format!("http://{addr}/")]).await;
    assert_eq!(code, Some(7), "curl's 'could not connect': {stderr}");
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

#[tokio::test]
async fn serve_tells_systemd_it_is_ready_and_when_it_stops() {
    let dir = std::env::temp_dir().join(format!("hopline-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hopline"))
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "1"])
        .env("NOTIFY_SOCKET", &path)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut message = [0u8; 512];
    let next = async |message: &mut [u8]| {
        let n = tokio::time::timeout(std::time::Duration::from_secs(20), socket.recv(message))
            .await
            .expect("a notification within 20 s")
            .unwrap();
        String::from_utf8_lossy(&message[..n]).into_owned()
    };
    assert_eq!(next(&mut message).await, "READY=1\n");
    let pid = child.id().unwrap() as i32;
    // SAFETY: a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert_eq!(next(&mut message).await, "STOPPING=1\n");
    assert!(child.wait().await.unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts `hopline serve` on a free port with `extra` flags; the child and its address
/// (read from its log line "listening on http://ADDR").
async fn serve_with(extra: &[&str]) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hopline"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--log",
            "info",
        ])
        .args(extra)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_string();
            // Keep draining its log, so that it never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (child, addr);
        }
    }
    panic!("serve did not say where it listens");
}

#[tokio::test]
async fn the_access_log_goes_to_a_file_in_combined_format_and_reopens_on_sigusr1() {
    let dir = std::env::temp_dir().join(format!("hopline-access-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let (mut child, addr) = serve_with(&[
        "--access-log",
        "combined",
        "--access-log-file",
        log.to_str().unwrap(),
    ])
    .await;
    let mut client = RawClient::connect(addr.parse().unwrap()).await;
    client
        .get(
            "/bytes/3",
            "User-Agent: probe/1\r\nReferer: http://r.test/\r\n",
        )
        .await;
    assert_eq!(client.response().await.status, 200);
    let written = async |path: &std::path::Path| {
        for _ in 0..200 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.ends_with('\n') {
                return text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("nothing written to {}", path.display());
    };
    let first = written(&log).await;
    assert!(
        first.starts_with("127.0.0.1 - - [")
            && first
                .contains("] \"GET /bytes/3 HTTP/1.1\" 200 3 \"http://r.test/\" \"probe/1\" conn=")
            && first.contains(" req=1 rt="),
        "{first}"
    );
    // logrotate moves the file, then signals.
    let rotated = dir.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let pid = child.id().unwrap() as i32;
    // SAFETY: a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR1) }, 0);
    for _ in 0..200 {
        if log.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    client.get("/", "").await;
    assert_eq!(client.response().await.status, 200);
    let second = written(&log).await;
    assert!(
        second.contains("\"GET / HTTP/1.1\" 200 13") && second.contains(" req=2 "),
        "{second}"
    );
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap(),
        first,
        "the old file keeps its lines"
    );
    child.kill().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn log_directives_come_from_the_flag_or_rust_log() {
    let (ok, _, stderr) = hopline(&["check-config", "--log", "hopline=loud", "x.toml"]).await;
    assert!(!ok && stderr.contains("--log `hopline=loud`"), "{stderr}");
    let output = Command::new(env!("CARGO_BIN_EXE_hopline"))
        .args(["get", "http://127.0.0.1:1/"])
        .env("RUST_LOG", "nonsense=loud")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("RUST_LOG `nonsense=loud`"), "{stderr}");
}

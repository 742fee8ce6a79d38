//! The demo end to end, on tokio's paused clock (the emulated link's delays are timers, so
//! the clock jumps over them and the timings are those of the path model): load times per
//! connection type, exact connection counts, and a report that stands on its own.

use std::time::Duration;

use hopline::demo::{self, DemoConfig, DemoReport, ModeKind, PageSource, Run, report};
use hopline::page::PageSpec;

const RTT: Duration = Duration::from_millis(50);

async fn run(rtts: &[Duration], modes: &[ModeKind], resources: usize) -> DemoReport {
    let config = DemoConfig {
        rtts: rtts.to_vec(),
        bandwidth: None,
        source: PageSource::Embedded(PageSpec {
            resources,
            // Small resources: every response fits one initial window, so an exchange is
            // pure round trips.
            sizes: vec![1000],
            slow_ms: None,
        }),
        modes: modes.to_vec(),
        depth: 32,
    };
    demo::run(&config, &mut |_: usize, _: usize, _: &str| {})
        .await
        .expect("the demo runs")
}

fn find(report: &DemoReport, mode: ModeKind) -> &Run {
    report.runs.iter().find(|r| r.mode == mode).unwrap()
}

/// Load time in round trips.
fn rtts(run: &Run) -> f64 {
    run.load_ms / RTT.as_secs_f64() / 1000.0
}

#[tokio::test(start_paused = true)]
async fn each_connection_type_costs_what_the_model_says() {
    let n = 10;
    let modes = [
        ModeKind::Http10Serial,
        ModeKind::PersistentX1,
        ModeKind::PipelinedX1,
    ];
    let report = run(&[RTT], &modes, n).await;
    // The document (18 KB) takes a handshake and two windows: 3 RTT on a new connection.
    let serial = find(&report, ModeKind::Http10Serial);
    let persistent = find(&report, ModeKind::PersistentX1);
    let pipelined = find(&report, ModeKind::PipelinedX1);
    // Short-lived, serial: then 2 RTT per resource (handshake + request).
    let expected = 3.0 + 2.0 * n as f64;
    assert!(
        (rtts(serial) - expected).abs() < 0.5,
        "{} RTT",
        rtts(serial)
    );
    // Persistent: 1 RTT per resource.
    let expected = 3.0 + n as f64;
    assert!(
        (rtts(persistent) - expected).abs() < 0.5,
        "{} RTT",
        rtts(persistent)
    );
    // Pipelined: every resource in one more round trip.
    assert!(
        (rtts(pipelined) - 4.0).abs() < 0.5,
        "{} RTT",
        rtts(pipelined)
    );
    // Connections: one per request, one, one.
    assert_eq!(
        [
            serial.connections,
            persistent.connections,
            pipelined.connections
        ],
        [n as u64 + 1, 1, 1]
    );
    assert_eq!(serial.handshakes, n as u64 + 1);
    for run in [serial, persistent, pipelined] {
        assert_eq!(run.requests, n as u64 + 1);
        assert_eq!(run.body_bytes, html_and(n, run));
        let gap = (run.load_ms - run.model.load_ms).abs();
        assert!(
            gap < 10.0,
            "{}: measured {} model {}",
            run.mode.name(),
            run.load_ms,
            run.model.load_ms
        );
        assert_eq!(run.model.connections, run.connections);
    }
}

/// The bytes of the document and `n` resources of 1000 bytes, as measured in `run`.
fn html_and(n: usize, run: &Run) -> u64 {
    run.timeline[0].body_bytes + 1000 * n as u64
}

#[tokio::test(start_paused = true)]
async fn through_a_proxy_a_pooled_upstream_beats_a_short_lived_one() {
    let report = run(
        &[RTT],
        &[ModeKind::ProxyPooled, ModeKind::ProxyShortLived],
        12,
    )
    .await;
    let pooled = find(&report, ModeKind::ProxyPooled);
    let short = find(&report, ModeKind::ProxyShortLived);
    assert!(
        pooled.load_ms < short.load_ms,
        "{} vs {}",
        pooled.load_ms,
        short.load_ms
    );
    // A short-lived upstream: a handshake per request on the second hop, on top of the
    // client's connections to the proxy.
    assert_eq!(short.handshakes, short.connections + 13);
    // The warm pool already holds the upstream connections this load needs.
    assert_eq!(pooled.handshakes, pooled.connections);
    // The report draws the second hop from what the proxy sent: every request, the
    // short-lived upstream on a new connection each time, the pooled one on warm ones.
    assert_eq!(short.upstream.len(), 13);
    assert!(short.upstream.iter().all(|r| r.new_connection));
    assert_eq!(pooled.upstream.len(), 13);
    assert!(pooled.upstream.iter().all(|r| !r.new_connection));
    for request in short.upstream.iter().chain(&pooled.upstream) {
        assert!(
            request.start_ms <= request.head_ms && request.head_ms <= request.end_ms,
            "{request:?}"
        );
        assert!(request.end_ms <= short.load_ms.max(pooled.load_ms) + 1.0);
    }
}

/// Checks that every element opened is closed in order (void and self-closed elements
/// aside): enough to catch a broken report without an HTML parser.
fn assert_well_formed(html: &str) {
    const VOID: [&str; 4] = ["meta", "br", "img", "input"];
    let mut open: Vec<&str> = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        let end = start + rest[start..].find('>').expect("every tag ends");
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name), "closing </{name}> out of order");
            continue;
        }
        let name = tag.split_whitespace().next().expect("a tag name");
        if !VOID.contains(&name) {
            open.push(name);
        }
    }
    assert!(open.is_empty(), "left open: {open:?}");
}

#[tokio::test(start_paused = true)]
async fn the_report_has_every_chart_and_needs_no_network() {
    let rtts = [Duration::ZERO, Duration::from_millis(20)];
    let report = run(&rtts, &ModeKind::ALL, 6).await;
    let html = report::html(&report);
    assert_well_formed(&html);
    assert!(html.contains("data-chart=\"load-vs-rtt\""));
    for mode in ModeKind::ALL {
        assert!(
            html.contains(&format!("<polyline data-mode=\"{}\"", mode.name())),
            "{}",
            mode.name()
        );
        for rtt in ["0", "20"] {
            assert!(
                html.contains(&format!(
                    "data-chart=\"waterfall\" data-mode=\"{}\" data-rtt=\"{rtt}\"",
                    mode.name()
                )),
                "waterfall of {} at {rtt} ms",
                mode.name()
            );
        }
    }
    // Nothing to fetch: no external scripts, styles, images, fonts or frames.
    for needle in [
        "src=", "href=", "<link", "<script", "<img", "<iframe", "@import",
    ] {
        assert!(!html.contains(needle), "the report references `{needle}`");
    }
    // Only the page's own patterns are referenced (`url(#...)`), nothing outside it.
    assert!(html.split("url(").skip(1).all(|rest| rest.starts_with('#')));
    // Both hops of a proxy mode, one time axis; counts in English.
    for mode in [ModeKind::ProxyPooled, ModeKind::ProxyShortLived] {
        let start = html
            .find(&format!(
                "data-chart=\"waterfall\" data-mode=\"{}\" data-rtt=\"20\"",
                mode.name()
            ))
            .unwrap();
        let chart = &html[start..start + html[start..].find("</svg>").unwrap()];
        assert!(chart.contains("data-lane=\"client\""), "{}", mode.name());
        assert!(chart.contains("data-lane=\"upstream\""), "{}", mode.name());
        assert!(chart.contains("proxy → origin"), "{}", mode.name());
    }
    assert!(!html.contains(" 1 connections") && !html.contains(" 1 handshakes"));
    let json: serde_json::Value = serde_json::from_str(&report::json(&report)).unwrap();
    let runs = rtts.len() * ModeKind::ALL.len();
    assert_eq!(json["runs"].as_array().unwrap().len(), runs);
    assert_eq!(
        json["runs"][0]["mode"], "http1.0-serial",
        "modes as the CLI names them"
    );
    let table = report::table(&report);
    let rows = table.lines().filter(|line| {
        let rtt = line.trim_start().split(" ms").next().unwrap_or("");
        rtt.parse::<f64>().is_ok()
    });
    // A row per run, and one per warmth scenario (every round-trip time above zero).
    let warm_rows = rtts.iter().filter(|rtt| !rtt.is_zero()).count();
    assert_eq!(report.warmth.len(), warm_rows);
    assert_eq!(rows.count(), runs + warm_rows);
    // TLS runs draw their TLS handshake after the TCP one; plaintext runs only the TCP one.
    assert!(html.contains("data-handshake=\"TLS\""));
}

#[tokio::test(start_paused = true)]
async fn tls_costs_a_round_trip_per_new_connection_and_resumption_saves_the_certificate() {
    let n = 12;
    let modes = [
        ModeKind::ShortLivedX6,
        ModeKind::TlsShortLivedX6,
        ModeKind::TlsResumedX6,
        ModeKind::PersistentX6,
        ModeKind::TlsPersistentX6,
        ModeKind::TlsPipelinedX1,
    ];
    let report = run(&[RTT], &modes, n).await;
    for mode in modes {
        let run = find(&report, mode);
        assert_eq!(run.requests, n as u64 + 1, "{}", mode.name());
        assert!(
            (run.load_ms - run.model.load_ms).abs() < 10.0,
            "{}: measured {} model {}",
            mode.name(),
            run.load_ms,
            run.model.load_ms
        );
        if mode.is_tls() {
            assert_eq!(run.tls_handshakes, run.connections, "{}", mode.name());
        }
    }
    // Short-lived: a TLS round trip on each of the 3 connections in a chain (1 + 12 / 6).
    let plain = find(&report, ModeKind::ShortLivedX6);
    let full = find(&report, ModeKind::TlsShortLivedX6);
    assert!(
        (rtts(full) - rtts(plain) - 3.0).abs() < 0.2,
        "{} {}",
        rtts(full),
        rtts(plain)
    );
    assert_eq!(full.tls_resumed, 0, "no session kept: every handshake full");
    // With resumption, connections after the document's resume a session, as far as
    // tickets go: TLS 1.3 tickets are single-use and the server hands out two per
    // connection (as OpenSSL does), so of the first burst of six new connections two
    // resume; later ones find tickets from the connections before them.
    let resumed = find(&report, ModeKind::TlsResumedX6);
    assert!(
        resumed.tls_resumed >= resumed.connections / 2 && resumed.tls_resumed < resumed.connections,
        "{} of {} resumed",
        resumed.tls_resumed,
        resumed.connections
    );
    // Persistent: the round trip only on the connections opened; pipelined: once.
    let persistent = find(&report, ModeKind::PersistentX6);
    let tls_persistent = find(&report, ModeKind::TlsPersistentX6);
    assert!((rtts(tls_persistent) - rtts(persistent) - 2.0).abs() < 0.2);
    assert_eq!(find(&report, ModeKind::TlsPipelinedX1).tls_handshakes, 1);
    // The TLS bytes (certificate, handshake, record framing) are not body bytes.
    assert!(full.header_bytes > plain.header_bytes);
    assert!(
        resumed.header_bytes < full.header_bytes,
        "no certificate when resuming"
    );
}

#[tokio::test(start_paused = true)]
async fn http2_multiplexes_like_pipelining_and_goes_past_a_slow_response() {
    let n = 10;
    let modes = [
        ModeKind::PipelinedX1,
        ModeKind::H2X1,
        ModeKind::TlsH2X1,
        ModeKind::HolPipelinedX1,
        ModeKind::HolH2X1,
    ];
    let report = run(&[RTT], &modes, n).await;
    let pipelined = find(&report, ModeKind::PipelinedX1);
    let h2 = find(&report, ModeKind::H2X1);
    // One connection, the document then every resource in one more round trip.
    assert_eq!((h2.connections, h2.handshakes), (1, 1));
    assert!(
        (rtts(h2) - rtts(pipelined)).abs() < 0.5,
        "{} vs {}",
        rtts(h2),
        rtts(pipelined)
    );
    assert!(
        h2.header_bytes < pipelined.header_bytes,
        "HPACK: fewer head bytes"
    );
    let tls = find(&report, ModeKind::TlsH2X1);
    assert!(
        (rtts(tls) - rtts(h2) - 1.0).abs() < 0.5,
        "TLS: one more round trip"
    );
    assert_eq!(tls.tls_handshakes, 1);
    // The first resource 300 ms slow: every pipelined response waits behind it; over
    // HTTP/2 the others are done long before it, and the page ends with it.
    let hol_pipelined = find(&report, ModeKind::HolPipelinedX1);
    let hol_h2 = find(&report, ModeKind::HolH2X1);
    let slow = |run: &Run| {
        run.timeline
            .iter()
            .find(|r| r.path.contains("delay="))
            .map(|r| r.end_ms)
            .unwrap()
    };
    let others_done = |run: &Run| {
        run.timeline[1..]
            .iter()
            .filter(|r| !r.path.contains("delay="))
            .map(|r| r.end_ms)
            .fold(0.0, f64::max)
    };
    assert!(
        others_done(hol_pipelined) >= slow(hol_pipelined),
        "pipelining: stalled behind it"
    );
    assert!(
        others_done(hol_h2) + 250.0 < slow(hol_h2),
        "HTTP/2: the rest went past it"
    );
    for run in [hol_pipelined, hol_h2] {
        assert!(
            (run.load_ms - run.model.load_ms).abs() < 10.0,
            "{:?}: {} vs model {}",
            run.mode,
            run.load_ms,
            run.model.load_ms
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_warmth_scenario_measures_what_the_model_predicts() {
    let report = run(&[Duration::ZERO, RTT], &[ModeKind::PersistentX1], 2).await;
    assert_eq!(report.warmth.len(), 1, "none at 0 ms");
    let warmth = &report.warmth[0];
    let rtt_ms = RTT.as_secs_f64() * 1000.0;
    // Cold: handshake + three rounds of slow start; warm: one round trip; after idling
    // past the RTO: three rounds again.
    assert_eq!(warmth.model_ms, [4.0 * rtt_ms, rtt_ms, 3.0 * rtt_ms]);
    for (measured, model) in [
        (warmth.cold_ms, warmth.model_ms[0]),
        (warmth.warm_ms, warmth.model_ms[1]),
        (warmth.idle_reset_ms, warmth.model_ms[2]),
    ] {
        assert!(
            measured >= model && measured <= model + 5.0,
            "measured {measured} ms, the model says {model} ms"
        );
    }
    let text = report::table(&report);
    assert!(text.contains("idle-reset"), "{text}");
    let html = report::html(&report);
    assert!(html.contains("<h2>Warm, cold and idle-reset connections</h2>"));
}

//! The demo's output: a terminal table, a self-contained HTML report (inline SVG charts,
//! no scripts, nothing fetched from the network) and JSON.

use std::fmt::Write as _;

use super::load::RequestTiming;
use super::{DemoReport, ModeKind, Run};
use crate::words::counted;

/// One color per mode, in [`ModeKind::ALL`] order (Tableau 10, then Tableau 20's darker
/// and lighter companions).
const COLORS: [&str; 15] = [
    "#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd", "#00a383", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#ad494a", "#3182bd",
];

/// The TCP handshake in the waterfalls: black hatching, unlike any mode's solid colour.
const TCP_COLOR: &str = "url(#tcp-handshake)";
/// The TLS handshake in the waterfalls, after the TCP one: black cross-hatching on yellow.
const TLS_COLOR: &str = "url(#tls-handshake)";

/// The handshake patterns, defined once for every chart of the page.
const PATTERNS: &str = "<svg width=\"0\" height=\"0\" style=\"position:absolute\" aria-hidden=\"true\"><defs>\
<pattern id=\"tcp-handshake\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
<rect width=\"6\" height=\"6\" fill=\"#fff\"/><rect width=\"3\" height=\"6\" fill=\"#000\"/></pattern>\
<pattern id=\"tls-handshake\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\">\
<rect width=\"6\" height=\"6\" fill=\"#ffe14d\"/><path d=\"M0 0L6 6M6 0L0 6\" stroke=\"#000\" stroke-width=\"1.2\"/></pattern>\
</defs></svg>\n";

/// A legend swatch showing `fill` (a colour or a pattern).
fn swatch(fill: &str) -> String {
    format!(
        "<svg class=\"swatch\" width=\"14\" height=\"14\" viewBox=\"0 0 14 14\"><rect width=\"14\" \
         height=\"14\" fill=\"{fill}\" stroke=\"#000\" stroke-width=\"0.5\"/></svg>"
    )
}

/// `6 (5 resumed)` for a TLS run, `-` for plaintext.
fn tls_handshakes(run: &Run) -> String {
    if run.mode.is_tls() {
        format!("{} ({} resumed)", run.tls_handshakes, run.tls_resumed)
    } else {
        "-".into()
    }
}

fn color(mode: ModeKind) -> &'static str {
    let i = ModeKind::ALL.iter().position(|m| *m == mode).unwrap_or(0);
    COLORS[i % COLORS.len()]
}

/// Thousands separators: 1234567 → "1,234,567".
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn bandwidth(report: &DemoReport) -> String {
    match report.bandwidth {
        Some(bytes) => format!("{:.1} Mbit/s each way", bytes as f64 * 8.0 / 1e6),
        None => "unlimited bandwidth".into(),
    }
}

/// The table printed at the end of a run.
pub fn table(report: &DemoReport) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "page: {} ({} resources, {} body bytes); initial window {} B; {}",
        report.page,
        report.resources,
        grouped(report.page_bytes),
        grouped(report.initial_window_bytes),
        bandwidth(report)
    )
    .expect("write to a String");
    writeln!(
        out,
        "{:>7}  {:<18} {:>9} {:>9} {:>6} {:>10} {:>8} {:>9} {:>11}  TLS handshakes",
        "RTT", "mode", "load ms", "model ms", "conns", "handshakes", "req/conn", "head B", "body B",
    )
    .expect("write to a String");
    let mut last_rtt = None;
    for run in &report.runs {
        if last_rtt.is_some_and(|rtt| rtt != run.rtt_ms) {
            out.push('\n');
        }
        last_rtt = Some(run.rtt_ms);
        writeln!(
            out,
            "{:>4} ms  {:<18} {:>9.0} {:>9.0} {:>6} {:>10} {:>8.1} {:>9} {:>11}  {}",
            run.rtt_ms,
            run.mode.name(),
            run.load_ms,
            run.model.load_ms,
            run.connections,
            run.handshakes,
            run.requests_per_connection(),
            grouped(run.header_bytes),
            grouped(run.body_bytes),
            tls_handshakes(run),
        )
        .expect("write to a String");
    }
    warmth_table(&mut out, report);
    out
}

/// The warmth scenario's lines: one large resource on a cold, a warm and an idle-reset
/// connection, measured and predicted.
fn warmth_table(out: &mut String, report: &DemoReport) {
    let Some(first) = report.warmth.first() else {
        return;
    };
    writeln!(
        out,
        "\none resource of {} B ({} initial windows): cold = new connection, warm = reused at \
         once, idle-reset = reused after idling past the RTO\n{:>7}  {:>14} {:>14} {:>14}",
        grouped(first.bytes),
        first.bytes.div_ceil(report.initial_window_bytes.max(1)),
        "RTT",
        "cold ms",
        "warm ms",
        "idle-reset ms"
    )
    .expect("write to a String");
    for run in &report.warmth {
        let [cold, warm, reset] = run
            .pairs()
            .map(|(measured, model)| format!("{measured:.0} ({model:.0})"));
        writeln!(
            out,
            "{:>4} ms  {cold:>14} {warm:>14} {reset:>14}",
            run.rtt_ms
        )
        .expect("write to a String");
    }
    out.push_str("(model in parentheses)\n");
}

/// The warmth scenario as an HTML section.
fn warmth_section(out: &mut String, report: &DemoReport) {
    let Some(first) = report.warmth.first() else {
        return;
    };
    writeln!(
        out,
        "<h2>Warm, cold and idle-reset connections</h2>\n<p>One resource of {} bytes \
         (seven initial windows): on a new connection (a handshake, then slow start: 1 + 2 + 4 \
         windows, three round trips), again at once on the same connection (its sender's \
         window grew: one round trip), and again after idling past the retransmission \
         timeout (the connection is reused but its window fell back to the initial one: \
         three round trips). The pool lends a request marked as large the warmest idle \
         connection whose window is still open, and <code>--upstream-min-idle</code> keeps \
         connections ready.</p>\n<table>\n<tr><th>RTT</th><th>cold (model)</th>\
         <th>warm (model)</th><th>idle-reset (model)</th></tr>",
        grouped(first.bytes)
    )
    .expect("write");
    for run in &report.warmth {
        let cells = run
            .pairs()
            .map(|(measured, model)| format!("<td>{measured:.0} ms ({model:.0})</td>"));
        writeln!(out, "<tr><td>{} ms</td>{}</tr>", run.rtt_ms, cells.concat()).expect("write");
    }
    out.push_str("</table>\n");
}

/// The raw numbers.
pub fn json(report: &DemoReport) -> String {
    serde_json::to_string_pretty(report).expect("the report serialises")
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A tick step of 1, 2 or 5 × 10^k giving about `ticks` ticks up to `max`.
fn tick_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

fn ms_label(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

/// The self-contained HTML report.
pub fn html(report: &DemoReport) -> String {
    let mut rtts: Vec<f64> = report.runs.iter().map(|r| r.rtt_ms).collect();
    rtts.dedup();
    let modes: Vec<ModeKind> = ModeKind::ALL
        .into_iter()
        .filter(|m| report.runs.iter().any(|r| r.mode == *m))
        .collect();
    let mut out = String::new();
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>hopline demo: what each connection type costs</title>\n<style>\n\
         body { font: 14px/1.45 system-ui, sans-serif; margin: 2em 3vw; color: #222; }\n\
         p, h1 { max-width: 62em; }\n\
         table { border-collapse: collapse; margin: 1em 0; }\n\
         th, td { padding: 0.2em 0.7em; text-align: right; border-bottom: 1px solid #ddd; }\n\
         th:first-child, td:first-child { text-align: left; }\n\
         svg { display: block; margin: 0.5em 0 1.5em; max-width: 100%; height: auto; }\n\
         svg.wide { width: 100%; }\n\
         svg.chart { width: 100%; max-width: 1100px; }\n\
         svg.swatch { display: inline-block; margin: 0; vertical-align: middle; }\n\
         svg text { font: 11px system-ui, sans-serif; fill: #333; }\n\
         .swatch { display: inline-block; width: 0.9em; height: 0.9em; vertical-align: middle; }\n\
         code { background: #f3f3f3; padding: 0 0.2em; }\n\
         </style>\n</head>\n<body>\n",
    );
    out.push_str(PATTERNS);
    writeln!(
        out,
        "<h1>hopline demo: what each connection type costs</h1>\n<p>The page: {} — \
         {} resources, {} bytes of bodies, loaded over an emulated link at each round-trip \
         time ({}), with every connection type. Load time runs from the first request to \
         the last byte. Measured figures come from real requests over real sockets; the \
         model's figures are what the path model alone predicts for the same page.</p>",
        escape(&report.page),
        report.resources,
        grouped(report.page_bytes),
        escape(&bandwidth(report)),
    )
    .expect("write to a String");
    out.push_str("<h2>Page load time against round-trip time</h2>\n");
    load_chart(&mut out, report, &rtts, &modes);
    out.push_str("<h2>Measured and predicted</h2>\n");
    summary_table(&mut out, report, &rtts, &modes);
    writeln!(
        out,
        "<h2>Waterfalls</h2>\n<p>One lane per connection, one bar per request: {} the TCP \
         handshake of a new connection (one round trip), over TLS then {} the TLS handshake \
         (one more: a new TLS connection costs two round trips before its first request \
         byte, a kept-alive one none), a thin line while the request waits for its response, \
         a solid bar while the response arrives. Requests one after another share a row; \
         requests in flight together on one connection (pipelined, multiplexed) stack in rows \
         of their own. Through a proxy, the client's connections to the proxy come first and \
         the proxy's upstream connections below them (<b>proxy → origin</b>), on the same time \
         axis: a pooled upstream stays warm and handshakes once, a short-lived one handshakes \
         for every request. Hover a bar for its details. Each waterfall has its own time \
         scale; the bars above them compare the load times.</p>",
        swatch(TCP_COLOR),
        swatch(TLS_COLOR)
    )
    .expect("write");
    for (i, &rtt) in rtts.iter().enumerate() {
        let runs: Vec<&Run> = report.runs.iter().filter(|r| r.rtt_ms == rtt).collect();
        let open = if i + 1 == rtts.len() { " open" } else { "" };
        writeln!(out, "<details{open}>\n<summary>RTT {rtt} ms</summary>").expect("write");
        load_bars(&mut out, &runs, rtt);
        for run in runs {
            waterfall(&mut out, run);
        }
        out.push_str("</details>\n");
    }
    warmth_section(&mut out, report);
    out.push_str(MODEL_TEXT);
    out.push_str("</body>\n</html>\n");
    out
}

const MODEL_TEXT: &str = "<h2>The model and its limits</h2>\n<p>The link emulator \
(<code>hopline::netem</code>) relays every connection through loopback and delays bytes as a \
TCP connection over the path would deliver them: half the round trip each way; a new \
connection's first byte leaves one round trip after it connected (the handshake); each \
direction starts with an initial window of 10 segments of 1460 bytes that doubles every \
round trip (slow start) up to the bandwidth-delay product, and falls back to the initial \
window after an idle period longer than the retransmission timeout (RTT + 200 ms), as \
Linux does with <code>tcp_slow_start_after_idle</code>. So a request on a new connection \
costs about two round trips and on an open one about one; a cold connection needs about \
log2(k)+1 round trips for a body of k initial windows, a warm one fewer.</p>\n<p>Not \
modelled: loss, retransmission and congestion avoidance, receive windows, Nagle and \
delayed ACKs and DNS. TLS 1.3 (the <code>tls-</code> modes, real rustls handshakes through \
the same link) adds one round trip per new connection, full or resumed (no 0-RTT): \
resumption saves the certificate and the signature, which is computation, not round \
trips; its few kilobytes fit the initial window. \"head bytes\" of a TLS run are \
everything but bodies: heads, handshakes and record framing. The predictions add no processing \
time; the measured figures include the client, server, proxy and relay, on a shared \
machine, and timers that fire to the millisecond.</p>\n";

/// One mode's line in the load chart: its measured points joined, each with its figures.
fn mode_line(
    out: &mut String,
    mode: ModeKind,
    points: &[&Run],
    (x, y): (&impl Fn(f64) -> f64, &impl Fn(f64) -> f64),
) {
    let line: Vec<String> = points
        .iter()
        .map(|r| format!("{:.1},{:.1}", x(r.rtt_ms), y(r.load_ms)))
        .collect();
    writeln!(
        out,
        "<polyline data-mode=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
        mode.name(),
        color(mode),
        line.join(" ")
    )
    .expect("write");
    for r in points {
        writeln!(
            out,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{}\"><title>{} at {} ms: \
             {:.0} ms (model {:.0} ms)</title></circle>",
            x(r.rtt_ms),
            y(r.load_ms),
            color(mode),
            mode.name(),
            r.rtt_ms,
            r.load_ms,
            r.model.load_ms
        )
        .expect("write");
    }
}

fn load_chart(out: &mut String, report: &DemoReport, rtts: &[f64], modes: &[ModeKind]) {
    let (width, height) = (760.0, 380.0);
    let (left, right, top, bottom) = (64.0, 560.0, 16.0, 330.0);
    let max_rtt = rtts.iter().copied().fold(0.0, f64::max).max(1.0);
    let max_ms = report
        .runs
        .iter()
        .map(|r| r.load_ms.max(r.model.load_ms))
        .fold(1.0, f64::max);
    let step = tick_step(max_ms, 5.0);
    let top_ms = (max_ms / step).ceil() * step;
    let x = |rtt: f64| left + (right - left) * rtt / max_rtt;
    let y = |ms: f64| bottom - (bottom - top) * ms / top_ms;
    writeln!(
        out,
        "<svg class=\"chart\" data-chart=\"load-vs-rtt\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"page load time against \
         round-trip time\">"
    )
    .expect("write");
    let mut tick = 0.0;
    while tick <= top_ms + 1e-9 {
        writeln!(
            out,
            "<line x1=\"{left}\" x2=\"{right}\" y1=\"{0:.1}\" y2=\"{0:.1}\" stroke=\"#eee\"/>\
             <text x=\"{1}\" y=\"{2:.1}\" text-anchor=\"end\">{3}</text>",
            y(tick),
            left - 6.0,
            y(tick) + 4.0,
            ms_label(tick)
        )
        .expect("write");
        tick += step;
    }
    for &rtt in rtts {
        writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{rtt} ms</text>",
            x(rtt),
            bottom + 16.0
        )
        .expect("write");
    }
    writeln!(
        out,
        "<line x1=\"{left}\" x2=\"{right}\" y1=\"{bottom}\" y2=\"{bottom}\" stroke=\"#999\"/>\
         <text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">round-trip time</text>",
        (left + right) / 2.0,
        bottom + 36.0
    )
    .expect("write");
    for (i, &mode) in modes.iter().enumerate() {
        let points: Vec<&Run> = report.runs.iter().filter(|r| r.mode == mode).collect();
        mode_line(out, mode, &points, (&x, &y));
        let ly = top + 10.0 + 20.0 * i as f64;
        writeln!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"10\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            right + 20.0,
            ly - 9.0,
            color(mode),
            right + 40.0,
            ly,
            mode.name()
        )
        .expect("write");
    }
    out.push_str("</svg>\n");
}

fn summary_table(out: &mut String, report: &DemoReport, rtts: &[f64], modes: &[ModeKind]) {
    out.push_str("<table>\n<tr><th>mode</th>");
    for rtt in rtts {
        write!(out, "<th>RTT {rtt} ms<br>measured (model)</th>").expect("write");
    }
    out.push_str(
        "<th>connections</th><th>handshakes</th><th>TLS handshakes</th>\
         <th>requests / connection</th><th>head bytes</th><th>body bytes</th></tr>\n",
    );
    for &mode in modes {
        let runs: Vec<&Run> = report.runs.iter().filter(|r| r.mode == mode).collect();
        write!(
            out,
            "<tr><td><span class=\"swatch\" style=\"background:{}\"></span> {}<br><small>{}</small></td>",
            color(mode),
            mode.name(),
            escape(mode.description())
        )
        .expect("write");
        for rtt in rtts {
            match runs.iter().find(|r| r.rtt_ms == *rtt) {
                Some(r) => write!(
                    out,
                    "<td>{} ({})</td>",
                    ms_label(r.load_ms),
                    ms_label(r.model.load_ms)
                ),
                None => write!(out, "<td>—</td>"),
            }
            .expect("write");
        }
        // Counts from the largest round-trip time (they do not depend on it).
        if let Some(r) = runs.last() {
            write!(
                out,
                "<td>{} ({})</td><td>{} ({})</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td>",
                r.connections,
                r.model.connections,
                r.handshakes,
                r.model.handshakes,
                tls_handshakes(r),
                r.requests_per_connection(),
                grouped(r.header_bytes),
                grouped(r.body_bytes)
            )
            .expect("write");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// Load time per mode at one round-trip time, as horizontal bars on one scale.
fn load_bars(out: &mut String, runs: &[&Run], rtt: f64) {
    let (left, right, row) = (130.0, 680.0, 20.0);
    let height = row * runs.len() as f64 + 8.0;
    let scale = runs
        .iter()
        .map(|r| r.load_ms.max(r.model.load_ms))
        .fold(1.0, f64::max);
    writeln!(
        out,
        "<svg class=\"chart\" data-chart=\"load-bars\" data-rtt=\"{rtt}\" width=\"760\" height=\"{height}\" \
         viewBox=\"0 0 760 {height}\" role=\"img\" aria-label=\"load time per mode at {rtt} ms\">"
    )
    .expect("write");
    for (i, run) in runs.iter().enumerate() {
        let y = row * i as f64 + 4.0;
        let width = ((right - left) * run.load_ms / scale).max(1.0);
        let model_x = left + (right - left) * run.model.load_ms / scale;
        writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{left}\" y=\"{y}\" width=\"{width:.1}\" height=\"14\" fill=\"{}\">\
             <title>{}: {:.0} ms (model {:.0} ms)</title></rect>\
             <line x1=\"{model_x:.1}\" x2=\"{model_x:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#000\" \
             stroke-dasharray=\"2,2\"/>\
             <text x=\"{:.1}\" y=\"{}\">{}</text>",
            left - 6.0,
            y + 11.0,
            run.mode.name(),
            color(run.mode),
            run.mode.name(),
            run.load_ms,
            run.model.load_ms,
            y - 1.0,
            y + 15.0,
            left + width + 6.0,
            y + 11.0,
            ms_label(run.load_ms)
        )
        .expect("write");
    }
    out.push_str("</svg>\n<p><small>Dashed: the model's prediction.</small></p>\n");
}

/// One connection in a waterfall: its requests in rows, each request on the first row free
/// when it starts — requests one after another share a row; pipelined or multiplexed ones,
/// in flight together, stack (so a single lane carrying a whole page stays readable).
struct Lane<'a> {
    connection: u64,
    rows: Vec<Vec<&'a RequestTiming>>,
}

/// The lanes of `requests`, in the order their connections first carried one.
fn lanes(requests: &[RequestTiming]) -> Vec<Lane<'_>> {
    let mut by_start: Vec<&RequestTiming> = requests.iter().collect();
    by_start.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    let mut lanes: Vec<Lane<'_>> = Vec::new();
    for request in by_start {
        let lane = match lanes
            .iter()
            .position(|l| l.connection == request.connection)
        {
            Some(i) => &mut lanes[i],
            None => {
                lanes.push(Lane {
                    connection: request.connection,
                    rows: Vec::new(),
                });
                lanes.last_mut().expect("just pushed")
            }
        };
        let free = lane.rows.iter().position(|row| {
            row.last()
                .is_none_or(|last| last.end_ms <= request.start_ms)
        });
        match free {
            Some(row) => lane.rows[row].push(request),
            None => lane.rows.push(vec![request]),
        }
    }
    lanes
}

/// The waterfall's geometry: the viewBox width, where the time axis runs, a row's height.
const WATERFALL_WIDTH: f64 = 1200.0;
const WATERFALL_LEFT: f64 = 150.0;
const WATERFALL_RIGHT: f64 = 1180.0;
const ROW: f64 = 16.0;

fn waterfall(out: &mut String, run: &Run) {
    let scale_ms = run
        .upstream
        .iter()
        .map(|r| r.end_ms)
        .fold(run.load_ms, f64::max)
        .max(1.0);
    let client = lanes(&run.timeline);
    let upstream = lanes(&run.upstream);
    let rows = |lanes: &[Lane<'_>]| lanes.iter().map(|l| l.rows.len()).sum::<usize>() as f64;
    let top = 22.0;
    let gap = if upstream.is_empty() { 0.0 } else { 26.0 };
    let height = top + ROW * (rows(&client) + rows(&upstream)) + gap + 24.0;
    let x =
        |ms: f64| WATERFALL_LEFT + (WATERFALL_RIGHT - WATERFALL_LEFT) * (ms / scale_ms).min(1.0);
    let upstream_note = match (&run.upstream[..], run.mode.upstream_mode()) {
        ([], _) | (_, None) => String::new(),
        (requests, Some(_)) => {
            let opened = requests.iter().filter(|r| r.new_connection).count() as u64;
            format!(
                "; upstream {} opened for {}",
                counted(opened, "connection"),
                counted(requests.len() as u64, "request")
            )
        }
    };
    writeln!(
        out,
        "<h3 style=\"color:{}\">{} at {} ms: {} (model {}), {}, {}{upstream_note}</h3>",
        color(run.mode),
        run.mode.name(),
        run.rtt_ms,
        ms_label(run.load_ms),
        ms_label(run.model.load_ms),
        counted(run.connections, "connection"),
        counted(run.handshakes, "handshake"),
    )
    .expect("write");
    writeln!(
        out,
        "<svg class=\"wide\" data-chart=\"waterfall\" data-mode=\"{}\" data-rtt=\"{}\" \
         viewBox=\"0 0 {WATERFALL_WIDTH} {height}\" role=\"img\" aria-label=\"waterfall of {} at \
         {} ms\">",
        run.mode.name(),
        run.rtt_ms,
        run.mode.name(),
        run.rtt_ms
    )
    .expect("write");
    time_axis(out, scale_ms, (top, height), &x);
    let mut y = top;
    y = draw_lanes(out, run, &client, ("conn", "client"), y, &x);
    if !upstream.is_empty() {
        writeln!(
            out,
            "<line x1=\"0\" x2=\"{WATERFALL_RIGHT}\" y1=\"{0}\" y2=\"{0}\" stroke=\"#999\"/>\
             <text x=\"4\" y=\"{1}\" font-weight=\"bold\">proxy → origin</text>",
            y + 6.0,
            y + 20.0
        )
        .expect("write");
        draw_lanes(out, run, &upstream, ("up", "upstream"), y + gap, &x);
    }
    out.push_str("</svg>\n");
}

/// Vertical grid lines and their labels, every round step of the scale.
fn time_axis(out: &mut String, scale_ms: f64, (top, height): (f64, f64), x: &impl Fn(f64) -> f64) {
    let step = tick_step(scale_ms, 8.0);
    let mut tick = 0.0;
    while tick <= scale_ms + 1e-9 {
        writeln!(
            out,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1}\" y2=\"{2}\" stroke=\"#eee\"/>\
             <text x=\"{0:.1}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>",
            x(tick),
            top - 4.0,
            height - 20.0,
            height - 6.0,
            ms_label(tick)
        )
        .expect("write");
        tick += step;
    }
}

/// The lanes from `y` down, labelled `label N` (`side`: `client` or `upstream`, in a
/// `data-lane` attribute); returns where they end.
fn draw_lanes(
    out: &mut String,
    run: &Run,
    lanes: &[Lane<'_>],
    (label, side): (&str, &str),
    mut y: f64,
    x: &impl Fn(f64) -> f64,
) -> f64 {
    let mut index = 0;
    for (i, lane) in lanes.iter().enumerate() {
        let lane_height = ROW * lane.rows.len() as f64;
        let shade = if i % 2 == 0 { "#f4f4f4" } else { "#fff" };
        writeln!(
            out,
            "<g data-lane=\"{side}\"><rect x=\"0\" y=\"{y}\" width=\"{WATERFALL_RIGHT}\" \
             height=\"{lane_height}\" fill=\"{shade}\"/><text x=\"4\" y=\"{}\">{label} {}</text>",
            y + 12.0,
            lane.connection
        )
        .expect("write");
        for (r, row) in lane.rows.iter().enumerate() {
            for request in row {
                request_bars(out, run, request, index, y + ROW * r as f64, x);
                index += 1;
            }
        }
        out.push_str("</g>\n");
        y += lane_height;
    }
    y
}

/// One request's bars in a waterfall lane at height `y`: the handshakes of a new connection
/// (TCP, then TLS), the wait for the response, the response arriving.
fn request_bars(
    out: &mut String,
    run: &Run,
    request: &RequestTiming,
    index: usize,
    y: f64,
    x: &impl Fn(f64) -> f64,
) {
    let title = format!(
        "{} — {} bytes, conn {}{}, start {:.1} ms, first byte {:.1} ms, done {:.1} ms",
        escape(&request.path),
        grouped(request.body_bytes),
        request.connection,
        if request.new_connection { " (new)" } else { "" },
        request.start_ms,
        request.head_ms,
        request.end_ms
    );
    let mut waiting_from = request.start_ms;
    if request.new_connection && run.rtt_ms > 0.0 {
        let handshakes: &[(&str, &str)] = if run.mode.is_tls() {
            &[("TCP", TCP_COLOR), ("TLS", TLS_COLOR)]
        } else {
            &[("TCP", TCP_COLOR)]
        };
        for (what, fill) in handshakes {
            let end = (waiting_from + run.rtt_ms).min(request.head_ms);
            writeln!(
                out,
                "<rect class=\"handshake\" data-handshake=\"{what}\" x=\"{:.1}\" y=\"{}\" \
                 width=\"{:.1}\" height=\"12\" fill=\"{fill}\" stroke=\"#000\" \
                 stroke-width=\"0.5\"><title>{what} handshake — {title}</title></rect>",
                x(waiting_from),
                y + 2.0,
                (x(end) - x(waiting_from)).max(1.0)
            )
            .expect("write");
            waiting_from = end;
        }
    }
    writeln!(
        out,
        "<rect x=\"{:.1}\" y=\"{}\" width=\"{:.1}\" height=\"2\" fill=\"#aaa\"><title>waiting — \
         {title}</title></rect>",
        x(waiting_from),
        y + 7.0,
        (x(request.head_ms) - x(waiting_from)).max(0.5)
    )
    .expect("write");
    writeln!(
        out,
        "<rect x=\"{:.1}\" y=\"{}\" width=\"{:.1}\" height=\"12\" fill=\"{}\" \
         fill-opacity=\"{}\"><title>{title}</title></rect>",
        x(request.head_ms),
        y + 2.0,
        (x(request.end_ms) - x(request.head_ms)).max(1.0),
        color(run.mode),
        if index.is_multiple_of(2) {
            "0.95"
        } else {
            "0.6"
        }
    )
    .expect("write");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_and_ticks_are_round() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(tick_step(1000.0, 5.0), 200.0);
        assert_eq!(tick_step(7300.0, 5.0), 2000.0);
        assert_eq!(tick_step(45.0, 6.0), 10.0);
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}

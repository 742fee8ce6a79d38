//! `hopline demo`: every connection type over an emulated link, measured, with the table
//! on the terminal and the report in a file.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{parse_duration, size};
use hopline::demo::{self, DemoConfig, ModeKind, PageSource, report};
use hopline::page::{DEFAULT_RESOURCES, PageSpec};

/// `hopline demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Round-trip times of the emulated link, comma-separated (bare numbers are
    /// milliseconds: 0,20,100 or 0,20ms,0.1s).
    #[arg(long, default_value = "0,20,100", value_parser = parse_rtts)]
    pub rtt: RttList,
    /// Bandwidth cap each way: 50mbit, 1gbit, 500kbit, or bytes per second
    /// [default: unlimited].
    #[arg(long, value_parser = parse_bandwidth)]
    pub bandwidth: Option<u64>,
    /// Subresources on the synthetic page (kinds and sizes from the median web page).
    #[arg(long, default_value_t = DEFAULT_RESOURCES)]
    pub resources: usize,
    /// Explicit resource sizes, comma-separated (`2k,150k,1m`), cycled over the resources
    /// (instead of the median page's mix).
    #[arg(long, value_delimiter = ',', value_parser = size::<u64>)]
    pub sizes: Vec<u64>,
    /// Connection types to compare, comma-separated [default: all; without the TLS and
    /// head-of-line ones for --url]: http1.0-serial, short-lived-x6, persistent-x1,
    /// persistent-x6, pipelined-x1, h2-x1 (one HTTP/2 connection, h2c), proxy-pooled,
    /// proxy-short-lived; over TLS (real rustls handshakes against the embedded origin, a
    /// certificate made at start): tls-short-lived-x6 (a full handshake per connection),
    /// tls-resumed-x6, tls-persistent-x6, tls-pipelined-x1, tls-h2-x1; and head-of-line,
    /// the page's first resource 300 ms slow: hol-pipelined-x1, hol-h2-x1.
    #[arg(long, value_delimiter = ',', value_parser = ModeKind::parse)]
    pub modes: Vec<ModeKind>,
    /// Requests in flight on the pipelined connection.
    #[arg(long, default_value_t = 32)]
    pub depth: usize,
    /// Load this page (http://host:port/path) across the emulated link instead of the
    /// embedded origin's synthetic page.
    #[arg(long)]
    pub url: Option<String>,
    /// Where to write the HTML report.
    #[arg(long, default_value = "hopline-report.html")]
    pub report: PathBuf,
    /// Also write the raw numbers as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// A list of round-trip times.
#[derive(Debug, Clone)]
pub struct RttList(pub Vec<Duration>);

fn parse_rtts(text: &str) -> Result<RttList, String> {
    let rtts = text
        .split(',')
        .map(str::trim)
        .map(|rtt| match rtt.parse::<u64>() {
            Ok(millis) => Ok(Duration::from_millis(millis)),
            Err(_) => parse_duration(rtt),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if rtts.is_empty() || rtts.iter().any(|rtt| *rtt > Duration::from_secs(10)) {
        return Err("round-trip times from 0 to 10 s".into());
    }
    Ok(RttList(rtts))
}

/// `50mbit`, `1gbit`, `500kbit` (bits per second) or a bare number of bytes per second.
fn parse_bandwidth(text: &str) -> Result<u64, String> {
    let text = text.trim().to_ascii_lowercase();
    let (number, bits_per_unit) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)]
        .into_iter()
        .find_map(|(unit, scale)| {
            text.strip_suffix(unit)
                .map(|n| (n.to_string(), scale / 8.0))
        })
        .unwrap_or((text.clone(), 1.0));
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}`: expected e.g. 50mbit, 1gbit or bytes per second"))?;
    let bytes = value * bits_per_unit;
    if !(bytes >= 1000.0 && bytes.is_finite()) {
        return Err("bandwidth: at least 8kbit".into());
    }
    Ok(bytes as u64)
}

/// Runs `hopline demo`.
pub fn run(args: DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    super::raise_open_file_limit();
    let runtime = super::runtime(Some(1))?;
    let source = match &args.url {
        None => PageSource::Embedded(PageSpec {
            resources: args.resources,
            sizes: args.sizes.clone(),
            slow_ms: None,
        }),
        Some(url) => external(url, &runtime)?,
    };
    let config = DemoConfig {
        rtts: args.rtt.0.clone(),
        bandwidth: args.bandwidth,
        source,
        modes: if !args.modes.is_empty() {
            args.modes.clone()
        } else if args.url.is_some() {
            // An external page is plain http://, its resources as fast as they are: the TLS
            // and head-of-line modes need the embedded origin.
            ModeKind::ALL
                .into_iter()
                .filter(|m| !m.needs_embedded_origin())
                .collect()
        } else {
            ModeKind::ALL.to_vec()
        },
        depth: args.depth.max(1),
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new((config.rtts.len() * config.modes.len()) as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        ) {
            bar.set_style(style);
        }
        bar
    });
    let mut progress = |done: usize, _total: usize, what: &str| {
        if let Some(bar) = &bar {
            bar.set_position(done as u64);
            bar.set_message(what.to_string());
        }
    };
    let result = runtime.block_on(demo::run(&config, &mut progress));
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let result = result.map_err(|e| format!("demo: {e}"))?;
    print!("{}", report::table(&result));
    std::fs::write(&args.report, report::html(&result))
        .map_err(|e| format!("{}: {e}", args.report.display()))?;
    println!("\nreport: {}", args.report.display());
    if let Some(path) = &args.json {
        std::fs::write(path, report::json(&result))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("json: {}", path.display());
    }
    Ok(())
}

/// An external page: its address (resolved once), `Host`, and path.
fn external(
    url: &str,
    runtime: &tokio::runtime::Runtime,
) -> Result<PageSource, Box<dyn std::error::Error>> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url}: only http:// pages can be loaded").into());
    }
    let authority = uri.authority().ok_or_else(|| format!("{url}: no host"))?;
    let port = authority.port_u16().unwrap_or(80);
    let addr = runtime
        .block_on(tokio::net::lookup_host((authority.host(), port)))?
        .next()
        .ok_or_else(|| format!("{url}: the host has no address"))?;
    let page = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    Ok(PageSource::External {
        addr,
        host: authority.as_str().to_string(),
        page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_times_and_bandwidths_parse() {
        let rtts = parse_rtts("0,20,100ms,0.2s").unwrap().0;
        assert_eq!(rtts, [0, 20, 100, 200].map(Duration::from_millis));
        assert!(parse_rtts("fast").is_err());
        assert!(parse_rtts("20s").is_err());
        assert_eq!(parse_bandwidth("50mbit"), Ok(6_250_000));
        assert_eq!(parse_bandwidth("1Gbit"), Ok(125_000_000));
        assert_eq!(parse_bandwidth("1000000"), Ok(1_000_000));
        assert!(parse_bandwidth("1kbit").is_err());
        assert!(parse_bandwidth("lots").is_err());
    }
}

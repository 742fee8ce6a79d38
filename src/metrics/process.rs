//! What every Prometheus client library exports about its process, under the standard names
//! (no `hopline_` prefix, so dashboards made for any process work): CPU time, resident and
//! virtual memory, open and allowed descriptors, start time; and `hopline_build_info`.
//!
//! Read at each scrape from the kernel (`getrusage`, `/proc/self/statm`, `/proc/self/fd`,
//! `getrlimit`); nothing is counted on the request path.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The process metrics.
#[derive(Debug)]
pub(super) struct ProcessCollector {
    /// When the process started (when its metrics were made, within milliseconds).
    pub started: SystemTime,
}

/// The process's figures at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct ProcessFigures {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
}

impl ProcessFigures {
    /// Reads them now (zero where the kernel does not say).
    pub fn read() -> Self {
        // SAFETY: getrusage fills the zeroed struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let cpu_seconds = if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
            let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            seconds(usage.ru_utime) + seconds(usage.ru_stime)
        } else {
            0.0
        };
        let max_fds = crate::transport::open_file_limit().unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
        let (virtual_pages, resident_pages) = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|statm| statm_pages(&statm))
            .unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count() as u64);
        ProcessFigures {
            cpu_seconds,
            resident_bytes: resident_pages * page,
            virtual_bytes: virtual_pages * page,
            open_fds,
            max_fds,
        }
    }
}

/// The first two fields of `/proc/self/statm`: total program size and resident set, pages.
fn statm_pages(statm: &str) -> Option<(u64, u64)> {
    let mut fields = statm.split_ascii_whitespace().map(str::parse::<u64>);
    Some((fields.next()?.ok()?, fields.next()?.ok()?))
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let figures = ProcessFigures::read();
        let cpu = ConstCounter::new(figures.cpu_seconds);
        let help = "Total user and system CPU time spent in seconds.";
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            help,
            None,
            cpu.metric_type(),
        )?)?;
        let started = self
            .started
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                figures.resident_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                figures.virtual_bytes as f64,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                figures.open_fds as f64,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                figures.max_fds as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                started,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// `hopline_build_info`: 1, with the version and build profile as labels (the usual way to
/// put a release on a dashboard).
#[derive(Debug)]
pub(super) struct BuildInfo;

impl Collector for BuildInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(1i64);
        let help = "The running hopline: its version and build profile (always 1).";
        let mut family =
            encoder.encode_descriptor("build_info", help, None, gauge.metric_type())?;
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        let labels = [("version", env!("CARGO_PKG_VERSION")), ("profile", profile)];
        gauge.encode(family.encode_family(&labels)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_gives_virtual_and_resident_pages() {
        assert_eq!(
            statm_pages("5012 1200 300 10 0 900 0\n"),
            Some((5012, 1200))
        );
        assert_eq!(statm_pages("garbage"), None);
    }

    #[test]
    fn this_process_has_figures() {
        let figures = ProcessFigures::read();
        assert!(figures.resident_bytes > 0 && figures.virtual_bytes >= figures.resident_bytes);
        assert!(figures.open_fds > 0 && figures.max_fds >= figures.open_fds);
    }
}

//! The process's own gauges: resident memory, open file descriptors and how busy the tokio
//! runtime's workers were since the last sample. Read once per metrics interval.

use std::time::{Duration, Instant};

use metrics::Gauge;

/// Samples the process gauges; keep one and call [`sample`](Self::sample) each interval.
pub struct ProcessMetrics {
    rss: Gauge,
    fds: Gauge,
    busy: Gauge,
    last: Option<(Instant, Duration)>,
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        ProcessMetrics::new()
    }
}

impl ProcessMetrics {
    /// Registers the gauges with the installed recorder.
    pub fn new() -> Self {
        metrics::describe_gauge!(
            "process_resident_memory_bytes",
            metrics::Unit::Bytes,
            "Resident memory of the process."
        );
        metrics::describe_gauge!("process_open_fds", "Open file descriptors of the process.");
        metrics::describe_gauge!(
            "tokio_workers_busy_ratio",
            "Share of the tokio runtime workers' time spent busy over the last metrics interval (0 to 1)."
        );
        ProcessMetrics {
            rss: metrics::gauge!("process_resident_memory_bytes"),
            fds: metrics::gauge!("process_open_fds"),
            busy: metrics::gauge!("tokio_workers_busy_ratio"),
            last: None,
        }
    }

    /// Reads the figures and sets the gauges; a figure the platform does not offer (no
    /// `/proc`, no runtime) is left as it was.
    pub fn sample(&mut self) {
        if let Some(rss) = resident_bytes() {
            self.rss.set(rss as f64);
        }
        if let Some(fds) = open_fds() {
            self.fds.set(fds as f64);
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let metrics = handle.metrics();
            let workers = metrics.num_workers();
            let busy: Duration = (0..workers)
                .map(|w| metrics.worker_total_busy_duration(w))
                .sum();
            let now = Instant::now();
            if let Some((then, busy_then)) = self.last {
                let wall = now.duration_since(then).as_secs_f64() * workers.max(1) as f64;
                if wall > 0.0 {
                    let ratio = busy.saturating_sub(busy_then).as_secs_f64() / wall;
                    self.busy.set(ratio.clamp(0.0, 1.0));
                }
            }
            self.last = Some((now, busy));
        }
    }
}

/// Resident set size from `/proc/self/status` (`VmRSS`, in kB: no page-size assumption).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Entries of `/proc/self/fd`, less the one the listing itself holds open.
fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some((entries.count() as u64).saturating_sub(1))
}

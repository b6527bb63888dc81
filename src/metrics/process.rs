//! Process metrics under the names every Prometheus client library uses
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, …), read
//! from `/proc/self` at scrape time. prometheus-client has no such collector;
//! on other systems the families are absent.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads the process figures on each scrape.
#[derive(Debug, Default)]
pub(super) struct ProcessCollector;

/// One reading of the process figures.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    threads: i64,
    start_time_seconds: f64,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let Some(s) = read() else { return Ok(()) };
        let counter = ConstCounter::new(s.cpu_seconds);
        counter.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            counter.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                Some(s.resident_bytes as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                Some(s.virtual_bytes as f64),
            ),
            (
                "process_threads",
                "Number of OS threads",
                Some(s.threads as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                Some(s.start_time_seconds),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds.map(|n| n as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                s.max_fds.map(|n| n as f64),
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn read() -> Option<Sample> {
    // SAFETY: sysconf only reads a configuration value.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let boot = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // `c_long` is `i64` here but `i32` on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let page = i64::from(page);
    let mut sample = parse_stat(&stat, ticks as f64, page, boot)?;
    sample.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|dir| dir.count() as i64);
    sample.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| max_open_files(&text));
    Some(sample)
}

#[cfg(not(target_os = "linux"))]
fn read() -> Option<Sample> {
    None
}

/// Reads `/proc/self/stat` (proc(5)): the fields after the command name, which
/// is in parentheses and may itself hold spaces or parentheses.
fn parse_stat(stat: &str, ticks_per_second: f64, page_size: i64, boot_time: i64) -> Option<Sample> {
    if ticks_per_second <= 0.0 || page_size <= 0 {
        return None;
    }
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 of proc(5) (state).
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<i64>().ok());
    let (utime, stime) = (field(14)?, field(15)?);
    Some(Sample {
        cpu_seconds: (utime + stime) as f64 / ticks_per_second,
        threads: field(20)?,
        start_time_seconds: boot_time as f64 + field(22)? as f64 / ticks_per_second,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)?.saturating_mul(page_size),
        open_fds: None,
        max_fds: None,
    })
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let stat = "4242 (apit (moodle) sync) S 1 4242 4242 0 -1 4194560 1795 0 0 0 \
                    250 130 0 0 20 0 9 0 12345 1052672000 5120 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 17987 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(stat, 100.0, 4096, 1_700_000_000).unwrap();
        assert_eq!(s.cpu_seconds, 3.8);
        assert_eq!(s.threads, 9);
        assert_eq!(s.start_time_seconds, 1_700_000_123.45);
        assert_eq!(s.virtual_bytes, 1_052_672_000);
        assert_eq!(s.resident_bytes, 5120 * 4096);
        assert_eq!(parse_stat("garbage", 100.0, 4096, 0), None);
    }

    #[test]
    fn the_soft_open_files_limit_is_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             95000                95000                processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            max_open_files("Max open files  unlimited  unlimited  files"),
            None
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_can_be_read() {
        let s = read().expect("/proc/self is readable");
        assert!(s.resident_bytes > 0 && s.threads >= 1 && s.open_fds.unwrap_or(0) > 0);
    }
}

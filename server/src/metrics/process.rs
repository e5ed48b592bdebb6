//! `process_*`: the process metrics of Prometheus' Go client, read from `/proc/self` at scrape time
//! (nothing is reported where there is no `/proc`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/self/stat`'s times (`USER_HZ`, 100 on every Linux ABI; Go's client
/// assumes the same).
const USER_HZ: f64 = 100.0;

#[derive(Debug)]
pub(super) struct ProcessCollector;

#[derive(Debug, Default, PartialEq)]
struct Stat {
    cpu_seconds: f64,
    start_ticks: u64,
    virtual_bytes: u64,
}

/// The fields of `/proc/self/stat` this collector reports. The command name (field 2) is in parentheses
/// and may hold spaces, so fields are counted from its closing parenthesis.
fn parse_stat(stat: &str) -> Option<Stat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `f[0]` is field 3 (state): field n is `f[n - 3]`.
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(Stat { cpu_seconds: (num(14)? + num(15)?) as f64 / USER_HZ, start_ticks: num(22)?, virtual_bytes: num(23)? })
}

/// `VmRSS:  1234 kB` of `/proc/self/status`, in bytes.
fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The soft limit of a `/proc/self/limits` line (`unlimited` as u64::MAX, as Go reports it).
fn parse_limit(limits: &str, name: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    match line[name.len()..].split_whitespace().next()? {
        "unlimited" => Some(u64::MAX as f64),
        v => v.parse::<u64>().ok().map(|v| v as f64),
    }
}

fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

fn int_gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let Some(stat) = std::fs::read_to_string("/proc/self/stat").ok().as_deref().and_then(parse_stat) else {
            return Ok(());
        };
        let e = &mut enc;
        let cpu = ConstCounter::new(stat.cpu_seconds);
        cpu.encode(e.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        if let Some(max) = parse_limit(&limits, "Max open files") {
            gauge(e, "process_max_fds", "Maximum number of open file descriptors.", max)?;
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            int_gauge(e, "process_open_fds", "Number of open file descriptors.", dir.count() as u64)?;
        }
        if let Some(rss) = std::fs::read_to_string("/proc/self/status").ok().as_deref().and_then(parse_rss) {
            int_gauge(e, "process_resident_memory_bytes", "Resident memory size in bytes.", rss)?;
        }
        if let Some(boot) = boot_time() {
            let start = boot as f64 + stat.start_ticks as f64 / USER_HZ;
            gauge(e, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.", start)?;
        }
        int_gauge(e, "process_virtual_memory_bytes", "Virtual memory size in bytes.", stat.virtual_bytes)?;
        if let Some(max) = parse_limit(&limits, "Max address space") {
            gauge(e, "process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", max)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (mod kv) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 130 0 0 20 0 9 0 \
                    12345 987654321 6000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 3 0 0 0 0 0";
        assert_eq!(parse_stat(stat), Some(Stat { cpu_seconds: 3.8, start_ticks: 12345, virtual_bytes: 987654321 }));
        assert_eq!(parse_rss("Name:\tmodkv\nVmRSS:\t   2048 kB\n"), Some(2048 * 1024));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 1048576              files\n\
                      Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(parse_limit(limits, "Max open files"), Some(1024.0));
        assert_eq!(parse_limit(limits, "Max address space"), Some(u64::MAX as f64));
        assert!(parse_stat(&std::fs::read_to_string("/proc/self/stat").unwrap()).is_some());
    }
}

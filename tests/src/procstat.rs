//! What a server process costs, read from Linux's `/proc/<pid>` (for the hostile-input tests, which
//! print these figures and assert generous bounds on them).
//!
//! * [`mem`] → [`Mem`]: resident memory (`VmRSS`, and its anonymous part `RssAnon`).
//! * [`cpu_time`]: user + system CPU time the process has used so far.
//! * [`cpu_share`]: the fraction of one core a process uses over a window.
//! * [`settled_rss`]: the peak `VmRSS` over a window (for "how much did this cost" after an action).

use std::thread;
use std::time::{Duration, Instant};

/// Resident memory of a process, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mem {
    /// `VmRSS`: everything resident (anonymous, file-backed and shared pages).
    pub rss: u64,
    /// `RssAnon`: the resident anonymous pages (heap, stacks), without file pages such as a mapped database.
    pub anon: u64,
}

/// The memory figures of `pid` from `/proc/<pid>/status`; panics if the process is gone.
#[track_caller]
pub fn mem(pid: u32) -> Mem {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e} (has the process exited?)"));
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {path}"));
        let kb: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().expect("a number of kB");
        kb * 1024
    };
    Mem { rss: field("VmRSS:"), anon: field("RssAnon:") }
}

/// User plus system CPU time `pid` has used so far (fields 14 and 15 of `/proc/<pid>/stat`).
#[track_caller]
pub fn cpu_time(pid: u32) -> Duration {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e} (has the process exited?)"));
    // The command name (field 2) is in parentheses and may contain spaces: count fields after the last ')'.
    let rest = &stat[stat.rfind(')').expect("comm field") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is fields[N - 3].
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf only reads a system constant.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / per_sec)
}

/// The fraction of one core `pid` used during the next `window` (1.0 = one core busy all along).
#[track_caller]
pub fn cpu_share(pid: u32, window: Duration) -> f64 {
    let (t0, c0) = (Instant::now(), cpu_time(pid));
    thread::sleep(window);
    let (t1, c1) = (Instant::now(), cpu_time(pid));
    (c1 - c0).as_secs_f64() / (t1 - t0).as_secs_f64()
}

/// The highest `VmRSS` of `pid` seen while sampling it every 100 ms for `window`.
#[track_caller]
pub fn settled_rss(pid: u32, window: Duration) -> u64 {
    let end = Instant::now() + window;
    let mut peak = mem(pid).rss;
    while Instant::now() < end {
        thread::sleep(Duration::from_millis(100));
        peak = peak.max(mem(pid).rss);
    }
    peak
}

/// `bytes` in MiB, for printing.
pub fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let m = mem(me);
        assert!(m.rss > 0 && m.anon > 0 && m.anon <= m.rss, "{m:?}");
        // Burn a little CPU; the counter (in clock ticks) must move.
        let before = cpu_time(me);
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(cpu_time(me) > before);
        assert_eq!(mib(3 * 1024 * 1024), 3.0);
    }
}

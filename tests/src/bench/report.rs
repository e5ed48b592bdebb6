//! report.md from the runner's results: the machine and its fdatasync time, a table of throughput,
//! latency and CPU per workload, a table of each server's costs (medians over the rounds), the charts,
//! the per-round spread, and how to run it again.

use std::fmt::Write;

use serde_json::Value;

const KINDS: [&str; 2] = ["etcd", "modkv"];

/// The median of `v` (0 if empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Values of `field` (a JSON pointer) over the entries of `list` that match kind, members and, if
/// given, workload.
pub fn values(list: &Value, kind: &str, members: u64, workload: Option<&str>, field: &str) -> Vec<f64> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["kind"] == kind && s["members"] == members)
        .filter(|s| workload.is_none_or(|w| s["workload"] == w))
        .filter_map(|s| s.pointer(field).and_then(Value::as_f64))
        .collect()
}

/// Cluster sizes in the results, in order of appearance.
pub fn sizes(r: &Value) -> Vec<u64> {
    let mut v: Vec<u64> = Vec::new();
    for s in r["servers"].as_array().into_iter().flatten() {
        let m = s["members"].as_u64().unwrap_or(1);
        if !v.contains(&m) {
            v.push(m);
        }
    }
    v
}

pub fn workload_names(r: &Value) -> Vec<String> {
    r["workloads"].as_array().into_iter().flatten().filter_map(|w| w["name"].as_str().map(String::from)).collect()
}

fn fsync_line(f: &Value) -> String {
    let p = &f["percentiles_ms"];
    format!(
        "average {} ms, p50 {} ms, p99 {} ms ({} × 4 KiB write + fdatasync)",
        f["average_ms"], p["p50"], p["p99"], f["count"]
    )
}

pub fn markdown(r: &Value, charts: Vec<String>) -> String {
    let m = &r["machine"];
    let mut s = String::new();
    let _ = writeln!(s, "# modkv and etcd 3.4 side by side\n");
    let _ = writeln!(
        s,
        "Written by `make bench-report` (`modkv-bench report`), {}. Figures only: nothing here is",
        m["date"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        s,
        "asserted. Medians over {} rounds; each round starts each server afresh (fresh data dirs, fsync on,",
        r["rounds"]
    );
    let _ =
        writeln!(s, "etcd's default raft timing: heartbeat 100 ms, election 1000 ms), etcd first in odd rounds and");
    let _ = writeln!(
        s,
        "modkv first in even ones, so a machine that slows down slows both alike. The load generator runs on"
    );
    let _ = writeln!(s, "the same machine and talks to the leader over loopback.\n");
    if let Some(note) = r["note"].as_str() {
        let _ = writeln!(s, "**Note:** {note}\n");
    }
    let _ = writeln!(s, "## Machine\n");
    let _ = writeln!(
        s,
        "- CPU: {} ({} cores); kernel {}",
        m["cpu"].as_str().unwrap_or("?"),
        m["cores"],
        m["kernel"].as_str().unwrap_or("?")
    );
    let _ = writeln!(s, "- data dirs' filesystem: `{}`", m["filesystem"].as_str().unwrap_or("?"));
    let _ = writeln!(
        s,
        "- load average (1, 5, 15 min) before: `{}`, after: `{}`; run time {:.0} s",
        m["loadavg"].as_str().unwrap_or("?"),
        r["machine_after"]["loadavg"].as_str().unwrap_or("?"),
        r["run_secs"].as_f64().unwrap_or(0.0)
    );
    let _ = writeln!(s, "- {}; {}", m["etcd"].as_str().unwrap_or("etcd ?"), m["modkv"].as_str().unwrap_or("modkv ?"));
    for (when, key) in [("before", "before"), ("after", "after")] {
        let f = &r["fsync"][key];
        let _ = writeln!(
            s,
            "- **fdatasync** {when} the runs, overwriting a preallocated file (a WAL segment's case): {}",
            fsync_line(&f["preallocated"])
        );
        let _ = writeln!(s, "  appending (the file grows: its size is journaled too): {}", fsync_line(&f["append"]));
    }
    let _ = writeln!(s);

    let _ = writeln!(s, "## Throughput, latency, CPU (medians)\n");
    let _ = writeln!(s, "QPS: requests per second over the whole load (watch-latency: events delivered per second);");
    let _ = writeln!(s, "p50/p99: request latency in ms (watch-latency: from a put's start to each watcher's event);");
    let _ = writeln!(s, "CPU: seconds of CPU all members used during the load.\n");
    let _ = writeln!(s, "| workload | members | etcd QPS | modkv QPS | modkv/etcd | etcd p50 | modkv p50 | etcd p99 | modkv p99 | etcd CPU s | modkv CPU s |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let samples = &r["samples"];
    for n in sizes(r) {
        for w in workload_names(r) {
            let f = |k: &str, p: &str| median(values(samples, k, n, Some(w.as_str()), p));
            let (eq, mq) = (f("etcd", "/main/qps"), f("modkv", "/main/qps"));
            let _ = writeln!(
                s,
                "| {w} | {n} | {eq:.0} | {mq:.0} | ×{:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                mq / eq.max(1e-9),
                f("etcd", "/main/p50"),
                f("modkv", "/main/p50"),
                f("etcd", "/main/p99"),
                f("modkv", "/main/p99"),
                f("etcd", "/cpu_s"),
                f("modkv", "/cpu_s"),
            );
        }
    }
    let errors: f64 =
        sizes(r).iter().flat_map(|&n| KINDS.map(|k| values(samples, k, n, None, "/main/errors"))).flatten().sum();
    let _ = writeln!(s, "\nFailed requests over all runs: {errors:.0}.\n");

    let _ = writeln!(s, "## What each server costs (medians)\n");
    let _ =
        writeln!(s, "Peak RSS: `VmHWM` of the largest member at the end of the loads; disk: bytes allocated under the");
    let _ = writeln!(
        s,
        "largest member's data dir then; start-to-ready: from spawning the members until each answers and a"
    );
    let _ =
        writeln!(s, "leader is known; restart: the same after stopping every member (SIGTERM) with the data written;");
    let _ = writeln!(s, "CPU: seconds all members used from start to the end of the loads.\n");
    let _ = writeln!(s, "| members | server | start-to-ready s | restart s | peak RSS MiB | disk MiB | CPU s |");
    let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|");
    let servers = &r["servers"];
    for n in sizes(r) {
        for k in KINDS {
            let f = |p: &str| median(values(servers, k, n, None, p));
            let _ = writeln!(
                s,
                "| {n} | {k} | {:.2} | {:.2} | {:.0} | {:.1} | {:.1} |",
                f("/ready_s"),
                f("/restart_s"),
                f("/peak_rss") / 1048576.0,
                f("/disk_bytes") / 1048576.0,
                f("/cpu_s")
            );
        }
    }
    let seq = median(values(samples, "modkv", 1, Some("put, 1 client"), "/main/p50"));
    let fs = |when: &str| r["fsync"][when]["preallocated"]["percentiles_ms"]["p50"].as_f64().unwrap_or(0.0);
    let (before, after) = (fs("before"), fs("after"));
    if seq > 0.0 && before > 0.0 && after > 0.0 {
        let _ = writeln!(
            s,
            "\nSingle-client put p50 of modkv (1 member): {seq:.2} ms, ×{:.1} the machine's fdatasync p50 (preallocated) \
             measured before the runs ({before:.3} ms), ×{:.1} the one measured after ({after:.3} ms).",
            seq / before,
            seq / after
        );
    }

    if !charts.is_empty() {
        let _ = writeln!(s, "\n## Charts\n");
        for c in &charts {
            let _ = writeln!(s, "![{c}]({c})\n");
        }
    }

    let _ = writeln!(s, "## QPS of each round\n");
    let _ = writeln!(s, "| workload | members | etcd | modkv |");
    let _ = writeln!(s, "|---|---:|---|---|");
    for n in sizes(r) {
        for w in workload_names(r) {
            let f = |k: &str| {
                values(samples, k, n, Some(w.as_str()), "/main/qps")
                    .iter()
                    .map(|q| format!("{q:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(s, "| {w} | {n} | {} | {} |", f("etcd"), f("modkv"));
        }
    }

    let _ = writeln!(s, "\n## The loads\n");
    let _ = writeln!(s, "Each is `modkv-bench --endpoints <all members> --target-leader <args>`:\n");
    for w in r["workloads"].as_array().into_iter().flatten() {
        let _ = writeln!(s, "- {}: `{}`", w["name"].as_str().unwrap_or(""), w["args"].as_str().unwrap_or(""));
    }
    let _ = writeln!(s, "\nEvery sample, with all percentiles and histograms: `results.json`. Run again with");
    let _ = writeln!(s, "`make bench-report` (`ROUNDS=`, `BENCH_SCALE=` to change the rounds and the request counts).");
    s
}

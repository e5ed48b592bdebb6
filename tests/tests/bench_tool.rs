//! A smoke run of `modkv-bench` (feature `bench`; `make test` runs it): a few hundred requests of each
//! load subcommand against a one-member server, each with `--json`, asserting the counts the tool
//! reports (every request answered, none failed) — against etcd 3.4 and modkv, so the tool's requests
//! are ones etcd accepts. Also the one-line form the scripts use, and `fsync`.

use std::process::Command;

use modkv_tests::*;

const TOTAL: usize = 200;

fn tool(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_modkv-bench")).args(args).output().expect("run modkv-bench");
    assert!(out.status.success(), "modkv-bench {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs a subcommand with `--json`; returns (name, count, errors) of each of its results.
fn run_json(endpoint: &str, args: &[&str]) -> Vec<(String, u64, u64)> {
    let total = TOTAL.to_string();
    let mut all = vec!["--endpoints", endpoint, "--json", "--total", &total, "--clients", "4", "--conns", "2"];
    all.extend(args);
    let out = tool(&all);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e})"));
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            let errors = r["errors"].as_object().expect("errors").values().map(|n| n.as_u64().unwrap()).sum();
            (r["name"].as_str().unwrap().to_string(), r["count"].as_u64().unwrap(), errors)
        })
        .collect()
}

/// How many keys `etcdctl get <args>` finds.
fn count(s: &Server, args: &[&str]) -> i64 {
    let mut a = vec!["get", "--keys-only"];
    a.extend(args);
    s.ctl_json(&a)["count"].as_i64().unwrap_or(0)
}

both_kinds! {
    fn every_subcommand_answers_all_its_requests(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let ep = s.endpoint();
        let n = TOTAL as u64;
        let r = run_json(&ep, &["--val-size", "64", "--key-space-size", "50", "--sequential-keys", "put"]);
        assert_eq!(r, vec![("put".to_string(), n, 0)]);
        // Sequential keys 0..49, zero-padded to 8 digits.
        assert_eq!(count(&s, &["00000000", "00000050"]), 50);
        assert_eq!(run_json(&ep, &["--consistency", "s", "range", "00000000", "00000050"]), vec![("range".into(), n, 0)]);
        assert_eq!(run_json(&ep, &["--key-space-size", "1000", "txn-put", "--txn-ops", "3"]), vec![("txn-put".into(), n, 0)]);
        let mixed = run_json(&ep, &["--key-space-size", "50", "txn-mixed", "--rw-ratio", "3"]);
        assert_eq!(mixed.iter().map(|m| m.1).sum::<u64>(), n, "{mixed:?}");
        assert!(mixed.iter().all(|m| m.2 == 0), "{mixed:?}");
        assert_eq!(run_json(&ep, &["stm", "--keys", "20", "--keys-per-txn", "2"]), vec![("stm".into(), n, 0)]);
        assert_eq!(run_json(&ep, &["lease-keepalive"]), vec![("lease-keepalive".into(), n, 0)]);
        // 2 streams × 5 watchers on 3 keys; every event reaches each stream.
        let w = run_json(&ep, &["--key-prefix", "w/", "watch", "--streams", "2", "--watch-per-stream", "5", "--watched-key-total", "3"]);
        assert_eq!(w, vec![("watch-create".into(), 10, 0), ("put".into(), n, 0), ("watch-events".into(), 2, 0)]);
        // One latency per put and watcher: 200 × 2 × 3.
        let wl = run_json(&ep, &["--key-prefix", "wl/", "--rate", "2000", "watch-latency", "--streams", "2", "--watchers-per-stream", "3"]);
        assert_eq!(wl, vec![("watch-create".into(), 6, 0), ("put".into(), n, 0), ("watch-latency".into(), n * 6, 0)]);

        // The one-line form of tests/bench*.sh.
        let out = tool(&["--endpoint", &ep, "--label", "x", "--mode", "par", "--clients", "10", "--conns", "2", "--total", "100"]);
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(line.starts_with("bench server=x op=put auth=off mode=par prefix=bench/ clients=10 conns=2 calls=100 "), "{line}");
        assert!(line.trim_end().ends_with(" errors=0"), "{line}");
        // 100 keys bench/<client>/<n>; the range form puts bench/range first.
        assert_eq!(count(&s, &["bench/", "--prefix"]), 100);
        let out = tool(&["--endpoint", &ep, "--op", "range", "--mode", "seq", "--total", "50"]);
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(line.starts_with("bench server=server op=range auth=off mode=seq prefix=bench/ clients=1 conns=1 calls=50 "), "{line}");
        assert_eq!(count(&s, &["bench/", "--prefix"]), 101);
    }
}

#[test]
fn fsync_measures_each_write() {
    let dir = tempfile::tempdir().unwrap();
    let out = tool(&[
        "fsync",
        "--json",
        "--preallocated",
        "--dir",
        dir.path().to_str().unwrap(),
        "--count",
        "20",
        "--size",
        "512",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["name"], "fdatasync (preallocated)");
    assert_eq!(v["count"], 20);
    assert!(v["percentiles_ms"]["p50"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the probe file is removed");
}

//! Fault injection under a recorded workload (issue 13), short mode: fixed seeds, for etcd 3.4 and
//! modkv alike (`modkv_tests::chaos`; `make chaos SECS=…` is the long mode with new seeds).
//!
//! * `checkers_*` — without servers: a simulated correct history passes every checker, and each
//!   planted anomaly (a stale read, a lost acknowledged write, a watch gap, a duplicate watch event, a
//!   compare-and-swap that contradicts the log, a key that survives its lease's revoke) is caught by
//!   the checker meant for it.
//! * `faults_three_members` / `faults_five_members` — a seeded fault schedule (kill -9 of the leader or
//!   of a member, all members killed at once, SIGSTOP longer than the election timeout, partitions,
//!   restarts; latency/loss where the kernel has netem) under clients and watchers; the history must
//!   pass every checker, and the same history with a stale read, a lost write or a watch gap planted
//!   into it must not. The run's report (ops checked, faults, availability figures) is printed
//!   (`--nocapture` to see it); `CHAOS_SEED=<n>` replays another seed. Runs are serialized: the
//!   figures of two clusters sharing two cores mean little.
//!
//! * `member_replace_under_load` — the leader, then a follower, removed with `etcdctl member remove`,
//!   wiped and added again on a fresh data dir (`--initial-cluster-state existing`) under the same
//!   workload: every checker passes and the new members' `HashKV` equals the others' at the end.
//! * `full_disk_under_load` — each data dir on a tmpfs of its own; a member's, then the leader's, filled
//!   up under the workload: it stops with a non-zero exit status, and once the space is freed and it
//!   is started again it catches up; every checker passes. Mounts are undone also when a test panics
//!   (`a_full_tmpfs_is_unmounted_when_a_test_panics`).
//!
//! Needs root and iproute2 (network namespaces), like `tests/partition.rs`.

use std::sync::Mutex;

use modkv_tests::both_kinds;
use modkv_tests::chaos::check::{check_all, Anomaly};
use modkv_tests::chaos::faults::{Fault, Step, Target};
use modkv_tests::chaos::{self, sim, sim_lease, Config};

/// One chaos run at a time in this test binary.
static RUNS: Mutex<()> = Mutex::new(());

fn run(kind: modkv_tests::Kind, seed: u64, members: usize, secs: u64) {
    let _one = RUNS.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = Config::new(kind, Config::seed_from_env(seed), members, secs);
    let report = chaos::run(&cfg);
    eprintln!("{}", report.summary());
    // The run must have done something worth checking.
    assert!(report.checked.acked > 100, "too few acknowledged ops:\n{}", report.summary());
    assert!(report.faults.iter().any(|f| !f.skipped), "no fault injected:\n{}", report.summary());
    report.assert_clean();
    // Leases were exercised: granted, kept alive, revoked, their keys deleted at their end, and a put
    // with a lease that is gone refused with etcd's error.
    let (granted, kept, revoked, refused, ended) = report.checked.leases;
    assert!(granted > 5 && kept > 5 && revoked > 2 && refused > 0 && ended > 2, "{:?}", report.checked.leases);
    // The checkers are not blind to this very history: anomalies planted into it are caught.
    let mut h = report.history.clone();
    sim::plant_stale_read(&mut h).expect("a linearizable read after an acknowledged put");
    assert_caught(&anomalies(&h), "kv", "stale read");
    let mut h = report.history.clone();
    sim::plant_lost_write(&mut h).expect("an acknowledged put");
    assert_caught(&anomalies(&h), "final", "lost acknowledged write");
    let mut h = report.history.clone();
    sim::plant_watch_gap(&mut h).expect("a watch stream with 3 events");
    assert_caught(&anomalies(&h), "watch", "a gap");
    let mut h = report.history;
    if sim_lease::plant_lease_survivor(&mut h).is_some() {
        assert_caught(&anomalies(&h), "lease", "survives the revoke");
    }
}

both_kinds! {
    fn faults_three_members(kind) {
        run(kind, 1301, 3, 30);
    }

    fn member_replace_under_load(kind) {
        // The leader replaced early (its log still holds everything: the new member may catch up from
        // the log), then a follower after ten seconds of load (several snapshots later: a snapshot).
        let _one = RUNS.lock().unwrap_or_else(|e| e.into_inner());
        let mut cfg = Config::new(kind, Config::seed_from_env(1303), 3, 40);
        cfg.steps = Some(vec![
            Step { quiet_ms: 3000, fault: Fault::Replace { target: Target::Leader } },
            Step { quiet_ms: 10_000, fault: Fault::Replace { target: Target::Pick(1) } },
        ]);
        let report = chaos::run(&cfg);
        eprintln!("{}", report.summary());
        report.assert_clean();
        let replaced: Vec<&str> = report.faults.iter().map(|f| f.what.as_str()).filter(|w| w.starts_with("replace")).collect();
        assert_eq!(replaced.len(), 2, "{}", report.summary());
        assert!(replaced.iter().all(|w| !w.contains("failed")), "{}", report.summary());
        assert!(report.checked.acked > 1000, "{}", report.summary());
        // Every member, the two new ones included, hashes its key space alike at the end.
        assert_eq!(report.history.hashes.len(), 3);
    }

    fn full_disk_under_load(kind) {
        // Each data dir on a 256 MB tmpfs; a member's, then the leader's, filled up under load: the
        // member stops with a non-zero exit status (etcd: a failed write of the WAL or the backend is
        // fatal), the space is freed, it starts again and catches up; nothing acknowledged is lost.
        let _one = RUNS.lock().unwrap_or_else(|e| e.into_inner());
        let mut cfg = Config::new(kind, Config::seed_from_env(1304), 3, 90);
        cfg.disk_faults = true;
        // 3 kB values: modkv's RocksDB writes its log into space it reserved (≈ 70 MB) and needs new
        // space when its 64 MB write buffer is flushed; big values get it there within seconds.
        cfg.workload.pad = 3000;
        cfg.at_rev_reads = 500;
        cfg.steps = Some(vec![
            Step { quiet_ms: 2000, fault: Fault::FullDisk { target: Target::Pick(2), ms: 30_000 } },
            Step { quiet_ms: 2000, fault: Fault::FullDisk { target: Target::Leader, ms: 30_000 } },
        ]);
        let report = chaos::run(&cfg);
        eprintln!("{}", report.summary());
        report.assert_clean();
        assert_eq!(report.faults.len(), 2, "{}", report.summary());
        for f in &report.faults {
            assert!(f.what.contains("exited") && !f.what.contains("exited exit status: 0"), "{}", report.summary());
        }
        assert!(report.checked.acked > 1000, "{}", report.summary());
    }

    fn faults_five_members(kind) {
        run(kind, 1302, 5, 15);
    }
}

// ---------------------------------------------------------------------------
// The checkers against simulated histories (no servers)
// ---------------------------------------------------------------------------

fn anomalies(h: &modkv_tests::chaos::history::History) -> Vec<Anomaly> {
    check_all(h).1
}

#[track_caller]
fn assert_caught(found: &[Anomaly], checker: &str, needle: &str) {
    assert!(
        found.iter().any(|a| a.checker == checker && a.what.contains(needle)),
        "expected a [{checker}] anomaly containing {needle:?}, got {found:#?}"
    );
}

#[test]
fn checkers_pass_simulated_correct_histories() {
    for seed in 0..20 {
        let h = sim::simulate(seed, 5, 300);
        let (checked, found) = check_all(&h);
        assert!(found.is_empty(), "seed {seed}: {found:#?}");
        assert_eq!(checked.ops, 1500);
        assert!(checked.unknown > 0 && checked.watch_events > 0 && checked.at_rev_reads > 0, "{checked:?}");
    }
}

#[test]
fn checkers_catch_a_stale_read() {
    let mut h = sim::simulate(7, 5, 300);
    let id = sim::plant_stale_read(&mut h).expect("a read after a put");
    let found = anomalies(&h);
    assert_caught(&found, "kv", "stale read");
    assert!(found.iter().any(|a| a.ops.contains(&id)), "{found:#?}");
}

#[test]
fn checkers_catch_a_lost_acknowledged_write() {
    let mut h = sim::simulate(8, 5, 300);
    let id = sim::plant_lost_write(&mut h).expect("an acknowledged put");
    let found = anomalies(&h);
    assert_caught(&found, "kv", "acknowledged put");
    assert_caught(&found, "final", "lost acknowledged write");
    assert!(found.iter().any(|a| a.checker == "final" && a.ops == vec![id]), "{found:#?}");
}

#[test]
fn checkers_catch_a_watch_gap() {
    let mut h = sim::simulate(9, 5, 300);
    sim::plant_watch_gap(&mut h).expect("a watch stream with events");
    assert_caught(&anomalies(&h), "watch", "a gap");
}

#[test]
fn checkers_catch_a_duplicate_watch_event() {
    let mut h = sim::simulate(10, 5, 300);
    sim::plant_watch_duplicate(&mut h).expect("a watch stream with events");
    assert_caught(&anomalies(&h), "watch", "delivered twice");
}

#[test]
fn checkers_catch_a_cas_contradicting_the_log() {
    let mut h = sim::simulate(11, 5, 300);
    sim::plant_cas_violation(&mut h).expect("a failed CAS");
    assert_caught(&anomalies(&h), "kv", "failed, but");
}

#[test]
fn checkers_pass_simulated_lease_histories() {
    for seed in 0..20 {
        let h = sim_lease::simulate(seed, 400);
        let (checked, found) = check_all(&h);
        assert!(found.is_empty(), "seed {seed}: {found:#?}");
        let (granted, kept, revoked, refused, ended) = checked.leases;
        assert!(granted > 0 && kept > 0 && revoked > 0 && refused > 0 && ended > 0, "{checked:?}");
    }
}

#[test]
fn checkers_catch_a_key_surviving_its_lease_revoke() {
    let mut h = sim_lease::simulate(12, 400);
    let id = sim_lease::plant_lease_survivor(&mut h).expect("a revoke that deleted two keys");
    let found = anomalies(&h);
    assert_caught(&found, "lease", "survives the revoke");
    assert!(found.iter().any(|a| a.checker == "lease" && a.ops == vec![id]), "{found:#?}");
}

#[test]
fn a_full_tmpfs_is_unmounted_when_a_test_panics() {
    use modkv_tests::chaos::disk;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m1.data");
    let p = path.clone();
    let failed = std::thread::spawn(move || {
        let _disk = disk::Tmpfs::mount(&p, 8).unwrap();
        assert!(disk::is_mounted(&p));
        let filled = disk::fill(&p).unwrap();
        assert!(filled > 7 << 20 && filled <= 8 << 20, "{filled}");
        panic!("a test fails while the disk is full");
    })
    .join();
    assert!(failed.is_err());
    assert!(!disk::is_mounted(&path), "{} is still mounted", path.display());
}

//! `make chaos SECS=…`: the fault-injection suite's long mode (issue 13). Runs new seeds until the time
//! is up, each seed against etcd 3.4 and modkv side by side (same schedule, same client choices), and
//! prints each seed, what it checked, the faults it injected, the anomalies and the availability
//! figures of both; at the end the totals. Exits 1 if any run found an anomaly. Unlike the short mode,
//! a member may stay down 15–25 s (so that it needs a snapshot to catch up), and each data dir is on a
//! tmpfs of its own, so that a member's disk may fill up.
//!
//! ```text
//! modkv-chaos --secs 600            new seeds for 10 minutes
//! CHAOS_SEED=<n> modkv-chaos        replay one seed (both kinds)
//! CHAOS_RUN_SECS=40                 seconds of faults per run (default 40)
//! CHAOS_MEMBERS=3|5                 cluster size (default: 3 and 5 alternately)
//! CHAOS_KINDS=modkv                 only some kinds (default etcd,modkv)
//! CHAOS_CLIENTS=8                   client threads (default 4)
//! ```
//! Needs root and iproute2; `MODKV_BIN` as for the tests.

use std::time::{Duration, Instant};

use modkv_tests::chaos::{self, rng, Config, Report};
use modkv_tests::Kind;

/// Seconds a run takes besides its faults: starting the cluster, the end reads and checks.
const OVERHEAD: u64 = 15;
/// A run shorter than this is not worth starting.
const MIN_RUN_SECS: u64 = 10;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap_or_else(|e| panic!("{name}={s:?}: {e}")))
}

fn kinds() -> Vec<Kind> {
    let spec = std::env::var("CHAOS_KINDS").unwrap_or_else(|_| "etcd,modkv".into());
    spec.split(',')
        .map(|k| match k.trim() {
            "etcd" => Kind::Etcd,
            "modkv" => Kind::Modkv,
            other => panic!("CHAOS_KINDS: unknown kind {other:?}"),
        })
        .collect()
}

#[derive(Default)]
struct Totals {
    runs: usize,
    ops: usize,
    acked: usize,
    watch_events: usize,
    faults: usize,
    anomalies: usize,
    fault_secs: f64,
    acked_in_faults: f64,
    kill_resume: Vec<f64>,
    kill_never: usize,
    failed_seeds: Vec<u64>,
    /// Per kind of fault: (count, seconds on, acknowledged ops meanwhile).
    by_kind: Vec<(&'static str, usize, f64, u64)>,
}

impl Totals {
    fn add(&mut self, r: &Report) {
        self.runs += 1;
        self.ops += r.checked.ops;
        self.acked += r.checked.acked;
        self.watch_events += r.checked.watch_events;
        self.faults += r.faults.iter().filter(|f| !f.skipped).count();
        self.anomalies += r.anomalies.len();
        self.fault_secs += r.figures.fault_secs;
        self.acked_in_faults += r.figures.ops_per_sec_faults * r.figures.fault_secs;
        for x in &r.figures.leader_kill_resume {
            match x {
                Some(s) => self.kill_resume.push(*s),
                None => self.kill_never += 1,
            }
        }
        if !r.anomalies.is_empty() {
            self.failed_seeds.push(r.config.seed);
        }
        for &(k, n, secs, acked) in &r.figures.by_kind {
            match self.by_kind.iter_mut().find(|e| e.0 == k) {
                Some(e) => (e.1, e.2, e.3) = (e.1 + n, e.2 + secs, e.3 + acked),
                None => self.by_kind.push((k, n, secs, acked)),
            }
        }
    }

    fn line(&self, kind: Kind) -> String {
        let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
        let max = self.kill_resume.iter().copied().fold(0.0, f64::max);
        format!(
            "{kind}: {} runs, {} ops checked ({} acknowledged), {} watch events, {} faults, {} anomalies{}; \
             acked ops/s during faults {:.0}; writes resume after a leader kill: mean {:.2} s, max {:.2} s over {} kills{}",
            self.runs,
            self.ops,
            self.acked,
            self.watch_events,
            self.faults,
            self.anomalies,
            if self.failed_seeds.is_empty() { String::new() } else { format!(" (seeds {:?})", self.failed_seeds) },
            if self.fault_secs > 0.0 { self.acked_in_faults / self.fault_secs } else { 0.0 },
            mean(&self.kill_resume),
            max,
            self.kill_resume.len(),
            if self.kill_never > 0 { format!(", {} never", self.kill_never) } else { String::new() },
        ) + &format!(
            "; acked ops/s by fault: {}",
            self.by_kind
                .iter()
                .map(|(k, n, secs, acked)| format!("{k} ×{n} {:.0}/s", *acked as f64 / secs.max(1e-9)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total_secs = match args.iter().position(|a| a == "--secs") {
        Some(i) => args.get(i + 1).and_then(|s| s.parse().ok()).expect("--secs <seconds>"),
        None => 600,
    };
    let replay = env_u64("CHAOS_SEED");
    let run_secs = env_u64("CHAOS_RUN_SECS").unwrap_or(40);
    let kinds = kinds();
    let start = Instant::now();
    let budget = Duration::from_secs(total_secs);
    let mut totals: Vec<(Kind, Totals)> = kinds.iter().map(|&k| (k, Totals::default())).collect();
    let mut round = 0u64;
    loop {
        // Each kind's run costs its faults' time plus a cluster start and the end checks (about
        // `OVERHEAD`); the last round gets what is left, if that is worth a run.
        let left = budget.saturating_sub(start.elapsed()).as_secs() / kinds.len() as u64;
        let secs = run_secs.min(left.saturating_sub(OVERHEAD));
        if replay.is_some() && round == 1 || replay.is_none() && secs < MIN_RUN_SECS {
            break;
        }
        let secs = if replay.is_some() { run_secs } else { secs };
        let seed = replay.unwrap_or_else(rng::fresh_seed);
        let members = env_u64("CHAOS_MEMBERS").unwrap_or(if round.is_multiple_of(2) { 3 } else { 5 }) as usize;
        println!("=== chaos round {round}: seed {seed}, {members} members, {secs} s of faults per kind");
        for (kind, total) in &mut totals {
            let mut cfg = Config { long_faults: true, disk_faults: true, ..Config::new(*kind, seed, members, secs) };
            cfg.workload.clients = env_u64("CHAOS_CLIENTS").map_or(cfg.workload.clients, |n| n as usize);
            let report = chaos::run(&cfg);
            println!("{}", report.summary());
            total.add(&report);
        }
        round += 1;
    }
    println!("=== chaos totals after {:.0} s ({round} seeds)", start.elapsed().as_secs_f64());
    for (kind, t) in &totals {
        println!("  {}", t.line(*kind));
    }
    if totals.iter().any(|(_, t)| t.anomalies > 0) {
        std::process::exit(1);
    }
}

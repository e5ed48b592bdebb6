//! Fault injection with recorded histories and checkers (issue 13), for etcd 3.4 and modkv alike.
//!
//! * [`faults`] — what goes wrong (kill -9, SIGSTOP, partitions, netem, restarts) and the seeded
//!   [`faults::schedule`]; applied to a cluster of members in network namespaces ([`NsCluster`]).
//! * [`proxy`] — a fault proxy in front of each peer port: latency and loss without netem.
//! * [`replace`], [`disk`] — member replace (remove, wipe, add again) and a full disk (each data dir on a
//!   tmpfs of its own, filled up).
//! * [`workload`] — client threads (puts, CAS txns, multi-key txns, deletes, linearizable and
//!   serializable ranges) and watcher threads, over gRPC, recording a [`history::History`].
//! * [`history`] — operations with invocation/completion instants and results, watch streams, the
//!   final revision log and end state; [`end`] — reading the log and the end state after the faults.
//! * [`check`] — the checkers: linearizability against revisions, watches, final reads.
//! * [`figures`] — availability: acknowledged ops/s during faults, time until writes resume.
//! * [`lease`] — the lease client of the workload (grants, puts with leases, keep-alives, revokes).
//! * [`sim`], [`sim_lease`] — histories of a simulated correct store, for showing the checkers catch
//!   planted anomalies.
//! * [`rng`] — the seeded generator.
//!
//! [`run`] does one seeded run: start the cluster, start the workload, run fault steps until the time
//! is up, heal, stop the workload, read the log and the end state, check, compute figures. The same
//! seed gives the same schedule and the same client choices for either kind (`CHAOS_SEED` replays).
//! Needs root and iproute2 (network namespaces), like `tests/tests/partition.rs`.

pub mod check;
pub mod disk;
pub mod end;
pub mod faults;
pub mod figures;
pub mod history;
pub mod lease;
pub mod proxy;
pub mod replace;
pub mod rng;
pub mod sim;
pub mod sim_lease;
pub mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use check::{Anomaly, Checked};
use faults::{FaultRecord, Injector};
use figures::Figures;
use history::{Clock, History};
use workload::{Workload, WorkloadConfig};

use crate::netns::NsCluster;
use crate::Kind;

/// One run's settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub kind: Kind,
    pub seed: u64,
    pub members: usize,
    /// How long faults are injected under load.
    pub secs: u64,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    /// `--snapshot-count`: small, so that raft logs are compacted and a member that was down long gets
    /// a snapshot.
    pub snapshot_count: u64,
    /// Faults may include members down for 15–25 s (see [`faults::schedule`]).
    pub long_faults: bool,
    pub workload: WorkloadConfig,
    /// At most this many acknowledged writes are read back at their revision after the run.
    pub at_rev_reads: usize,
    /// These steps instead of the seed's schedule (a dedicated test of one fault).
    pub steps: Option<Vec<faults::Step>>,
    /// Each member's data dir on a tmpfs of its own ([`disk`]), so that a disk can fill up.
    pub disk_faults: bool,
    /// A fault proxy in front of each member's peer port ([`proxy`]): latency and loss where the kernel
    /// has no netem.
    pub proxies: bool,
}

impl Config {
    pub fn new(kind: Kind, seed: u64, members: usize, secs: u64) -> Config {
        Config {
            kind,
            seed,
            members,
            secs,
            heartbeat_ms: 50,
            election_ms: 500,
            snapshot_count: 1000,
            long_faults: false,
            workload: WorkloadConfig {
                clients: 4,
                lease_clients: 1,
                watchers: 2,
                keys: 6,
                op_timeout: Duration::from_secs(2),
                pad: 0,
            },
            at_rev_reads: 1500,
            steps: None,
            disk_faults: false,
            proxies: true,
        }
    }

    /// `CHAOS_SEED` if set (a replay), else `seed`.
    pub fn seed_from_env(seed: u64) -> u64 {
        match std::env::var("CHAOS_SEED") {
            Ok(s) if !s.trim().is_empty() => s.trim().parse().unwrap_or_else(|e| panic!("CHAOS_SEED={s:?}: {e}")),
            _ => seed,
        }
    }
}

/// What one run did and found.
pub struct Report {
    pub config: Config,
    pub checked: Checked,
    pub faults: Vec<FaultRecord>,
    pub anomalies: Vec<Anomaly>,
    pub figures: Figures,
    /// Where the history was written out (when anomalies were found).
    pub history_file: Option<PathBuf>,
    pub history: History,
}

impl Report {
    /// One paragraph: seed, counts, faults, figures, anomalies.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let k = &self.checked;
        let applied = self.faults.iter().filter(|f| !f.skipped).count();
        let mut s = format!(
            "chaos {} seed {} ({} members, {} s): {} ops checked ({} acknowledged, {} writes of unknown outcome), \
             {} watch streams with {} events, log of {} events, {} writes read back at their revision; \
             leases: {} granted, {} keep-alives, {} revoked, {} puts refused (lease gone), {} ended in the log; \
             {applied} faults injected ({} skipped); {} anomalies\n  {}: {}\n",
            c.kind,
            c.seed,
            c.members,
            c.secs,
            k.ops,
            k.acked,
            k.unknown,
            k.watch_segments,
            k.watch_events,
            k.log_events,
            k.at_rev_reads,
            k.leases.0,
            k.leases.1,
            k.leases.2,
            k.leases.3,
            k.leases.4,
            self.faults.len() - applied,
            self.anomalies.len(),
            c.kind,
            self.figures
        );
        for f in &self.faults {
            s += &format!(
                "  fault [{:.1}s +{:.1}s, recovered +{:.1}s] {}\n",
                f.start as f64 / 1e6,
                (f.healed - f.start) as f64 / 1e6,
                (f.recovered - f.healed) as f64 / 1e6,
                f.what
            );
        }
        for a in &self.anomalies {
            s += &format!("  ANOMALY {a}\n");
        }
        if let Some(p) = &self.history_file {
            s += &format!(
                "  history: {}\n  replay: CHAOS_SEED={} (make chaos: also CHAOS_MEMBERS={} CHAOS_RUN_SECS={})\n",
                p.display(),
                c.seed,
                c.members,
                c.secs
            );
        }
        s
    }

    /// Panics with the summary if anything was found.
    #[track_caller]
    pub fn assert_clean(&self) {
        assert!(self.anomalies.is_empty(), "{}", self.summary());
    }
}

/// One seeded run (see the module docs).
pub fn run(cfg: &Config) -> Report {
    let extra = [
        "--heartbeat-interval".to_string(),
        cfg.heartbeat_ms.to_string(),
        "--election-timeout".to_string(),
        cfg.election_ms.to_string(),
        "--snapshot-count".to_string(),
        cfg.snapshot_count.to_string(),
    ];
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    // Declared before the cluster: unmounted after its members are gone (also on a panic).
    let mut mounts: Vec<disk::Tmpfs> = Vec::new();
    let mut proxies: Vec<proxy::Proxy> = Vec::new();
    let mut cluster = NsCluster::start_with(cfg.kind, cfg.members, &extra, |m| {
        if cfg.disk_faults {
            mounts.push(disk::Tmpfs::mount(&m.data_dir(), disk::TMPFS_MB).unwrap_or_else(|e| panic!("{e}")));
        }
        if cfg.proxies {
            let ns = m.namespace.clone().expect("a member in a namespace");
            let (front, back) = ((m.peer_ip.clone(), m.peer_port), (m.peer_ip.clone(), proxy::PROXIED_PORT));
            let addr = |(ip, port): (String, u16)| -> std::net::SocketAddr { format!("{ip}:{port}").parse().unwrap() };
            replace::set_flag(&mut m.args, "--listen-peer-urls", &format!("http://{}:{}", back.0, back.1));
            proxies.push(proxy::Proxy::start(&ns, addr(front), addr(back)).unwrap_or_else(|e| panic!("{e}")));
        }
    });
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint()).collect();
    let clock = Clock::start();
    let steps = match &cfg.steps {
        Some(steps) => steps.clone(),
        None => faults::schedule(cfg.seed, cfg.members, cfg.election_ms, cfg.secs, cfg.long_faults, cfg.disk_faults),
    };
    let workload = Workload::start(&endpoints, cfg.seed, &cfg.workload, clock);
    let deadline = Instant::now() + Duration::from_secs(cfg.secs);
    let (records, mut problems) = {
        let mut inj = Injector::new(&mut cluster, clock, &proxies);
        for step in &steps {
            if Instant::now() >= deadline {
                break;
            }
            inj.run(step);
        }
        (inj.records, inj.problems)
    };
    // A little load after the last fault, then the end state.
    std::thread::sleep(Duration::from_secs(1));
    let end = clock.now();
    let (ops, watches) = workload.stop();
    let mut h = History { ops, watches, ..Default::default() };
    h.renumber();
    if let Err(e) = end::read_end_state(&mut h, &endpoints, cfg) {
        problems.push(e);
    }
    let (checked, mut anomalies) = check::check_all(&h);
    anomalies.extend(problems.into_iter().map(|p| Anomaly::new("liveness", p)));
    let figures = figures::compute(&h, &records, end);
    let history_file = (!anomalies.is_empty()).then(|| save(&h, cfg));
    Report { config: cfg.clone(), checked, faults: records, anomalies, figures, history_file, history: h }
}

fn save(h: &History, cfg: &Config) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(std::env::temp_dir, |t| PathBuf::from(t).join("tmp"));
    let dir = dir.join("chaos");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{}-{}.history", cfg.kind, cfg.seed));
    if let Err(e) = std::fs::write(&path, h.dump()) {
        eprintln!("chaos: cannot write {}: {e}", path.display());
    }
    path
}

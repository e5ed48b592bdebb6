//! Faults and their schedule.
//!
//! * [`Fault`] — what can go wrong: kill -9 (+ restart), SIGSTOP/SIGCONT longer than the election
//!   timeout, a member isolated from its peers, a minority cut from the majority, a bridge (5 members:
//!   two halves that only talk through the middle member), added latency and loss (`tc netem`, or
//!   where the kernel has no netem the fault proxies in front of the peer ports, [`super::proxy`]), a graceful restart, every member killed at once
//!   (a power loss: acknowledged writes must survive it), a member replaced (removed, wiped, added
//!   again: [`super::replace`]), a full disk ([`super::disk`]). Targets are "the leader" (found
//!   when the fault starts) or a member picked by the seed.
//! * [`schedule`] — the steps (quiet time, then one fault) a seed gives.
//! * [`Injector`] — applies a step to an [`NsCluster`], heals it, waits until every member runs and
//!   agrees on a leader, and records a [`FaultRecord`] (when it started, healed, recovered).
//!
//! Partitions are blackhole routes to the other side's peer addresses inside each member's namespace:
//! packets are dropped silently, as a broken network drops them, while clients still reach every member.

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::history::{Clock, Micros};
use super::proxy::{Proxy, Shape};
use super::rng::Rng;
use crate::netns::NsCluster;

/// Which member a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The leader when the fault starts.
    Leader,
    /// Member `salt % n`.
    Pick(u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL, down for `down_ms`, then started again on its data dir.
    Kill { target: Target, down_ms: u64 },
    /// SIGSTOP for `ms`, then SIGCONT.
    Pause { target: Target, ms: u64 },
    /// Cut from every peer for `ms`.
    Isolate { target: Target, ms: u64 },
    /// A minority (1 of 3, 2 of 5, chosen by `salt`; it may hold the leader) cut from the majority.
    Minority { salt: u64, ms: u64 },
    /// 5 members: {1,2} and {4,5} cannot talk, 3 talks to both (the halves rotated by `salt`).
    Bridge { salt: u64, ms: u64 },
    /// `delay_ms` of latency and `loss_pct` % loss on every member's peer traffic for `ms`.
    Netem { delay_ms: u64, loss_pct: u64, ms: u64 },
    /// SIGTERM, then started again.
    Restart { target: Target },
    /// Every member SIGKILLed at once (a power loss), down for `down_ms`, then all started again.
    KillAll { down_ms: u64 },
    /// `member remove`, data dir wiped, `member add` again and started on a fresh data dir
    /// ([`super::replace`]).
    Replace { target: Target },
    /// The member's filesystem filled up ([`super::disk`]) until it stops, at most `ms`; then the space
    /// is freed and it is started again.
    FullDisk { target: Target, ms: u64 },
}

/// Quiet time, then a fault.
#[derive(Clone, Debug)]
pub struct Step {
    pub quiet_ms: u64,
    pub fault: Fault,
}

/// The steps of `seed` for `members` members with election timeout `election_ms` (pauses and cuts
/// last 2–6 election timeouts). More steps than `secs` seconds take; the run stops where its time is up.
/// With `long`, a member may also stay down 15–25 s: long enough, under this load and with a small
/// `--snapshot-count`, to fall behind the leader's compacted log and be sent a snapshot.
/// With `disk` (each data dir on a filesystem of its own), a member's disk may fill up.
pub fn schedule(seed: u64, members: usize, election_ms: u64, secs: u64, long: bool, disk: bool) -> Vec<Step> {
    let mut rng = Rng::derive(seed, 1);
    let e = election_ms;
    let mut steps = Vec::new();
    let mut planned = 0;
    while planned < 3 * secs * 1000 {
        let target = if rng.percent(50) { Target::Leader } else { Target::Pick(rng.next_u64()) };
        let hold = rng.between(2 * e, 6 * e);
        let weights = [
            3,
            2,
            3,
            2,
            2,
            if members >= 5 { 1 } else { 0 },
            1,
            1,
            1,
            if long { 1 } else { 0 },
            1,
            if disk { 1 } else { 0 },
        ];
        let fault = match rng.weighted(&weights) {
            0 => Fault::Kill { target: Target::Leader, down_ms: rng.between(e, 4 * e) },
            1 => Fault::Kill { target, down_ms: rng.between(e, 4 * e) },
            2 => Fault::Pause { target, ms: hold },
            3 => Fault::Isolate { target: Target::Leader, ms: hold },
            4 => Fault::Minority { salt: rng.next_u64(), ms: hold },
            5 => Fault::Bridge { salt: rng.next_u64(), ms: hold },
            6 => Fault::Netem { delay_ms: rng.between(20, 100), loss_pct: rng.between(5, 20), ms: hold },
            7 => Fault::Restart { target },
            8 => Fault::KillAll { down_ms: rng.between(e / 2, 2 * e) },
            9 => Fault::Kill { target: Target::Pick(rng.next_u64()), down_ms: rng.between(15_000, 25_000) },
            10 => Fault::Replace { target },
            _ => Fault::FullDisk { target, ms: 10_000 },
        };
        let quiet_ms = rng.between(e, 3 * e);
        planned += quiet_ms + hold + 2 * e;
        steps.push(Step { quiet_ms, fault });
    }
    steps
}

/// One fault as it happened.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    /// E.g. `kill -9 m2 (leader), down 1200 ms`.
    pub what: String,
    pub start: Micros,
    /// When it was undone (member restarted, resumed, link restored).
    pub healed: Micros,
    /// When every member ran again and agreed on a leader.
    pub recovered: Micros,
    /// The leader was killed, paused or cut off.
    pub hit_leader: bool,
    /// It was a kill -9 of the leader.
    pub killed_leader: bool,
    /// Not applied (netem missing).
    pub skipped: bool,
}

/// How long the cluster may take to agree on a leader again after a fault is healed.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(40);

/// Applies faults to a cluster.
pub struct Injector<'a> {
    cluster: &'a mut NsCluster,
    /// The fault proxies in front of the peer ports (empty: none), for latency and loss without netem.
    proxies: &'a [Proxy],
    clock: Clock,
    netem: Result<(), String>,
    pub records: Vec<FaultRecord>,
    /// Liveness problems: a member that did not come back, a cluster without an agreed leader.
    pub problems: Vec<String>,
}

impl<'a> Injector<'a> {
    pub fn new(cluster: &'a mut NsCluster, clock: Clock, proxies: &'a [Proxy]) -> Injector<'a> {
        let netem = netem_available(cluster);
        if let Err(e) = &netem {
            let how = if proxies.is_empty() { "skipped" } else { "made by the fault proxies" };
            eprintln!("chaos: latency/loss faults are {how}: `tc qdisc add ... netem` fails here ({e})");
        }
        Injector { cluster, proxies, clock, netem, records: Vec::new(), problems: Vec::new() }
    }

    fn n(&self) -> usize {
        self.cluster.members.len()
    }

    /// The current leader, waiting up to 5 s for one.
    fn leader(&mut self) -> Option<usize> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(l) = self.cluster.leader() {
                return Some(l);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `(member, is it the leader)`.
    fn resolve(&mut self, t: Target) -> (usize, bool) {
        let leader = self.leader();
        let i = match t {
            Target::Leader => leader.unwrap_or(0),
            Target::Pick(s) => (s % self.n() as u64) as usize,
        };
        (i, leader == Some(i))
    }

    fn name(&self, i: usize) -> String {
        self.cluster.members[i].name.clone()
    }

    /// Runs one step: quiet time, the fault, its healing, the wait for recovery.
    pub fn run(&mut self, step: &Step) {
        thread::sleep(Duration::from_millis(step.quiet_ms));
        // Set when the fault is actually injected (after the leader was looked up).
        let mut start = self.clock.now();
        let (what, hit_leader, killed_leader, skipped) = match step.fault.clone() {
            Fault::Kill { target, down_ms } => {
                let (i, lead) = self.resolve(target);
                start = self.clock.now();
                self.cluster.members[i].kill9();
                thread::sleep(Duration::from_millis(down_ms));
                self.start_again(i);
                (format!("kill -9 {}{}, down {down_ms} ms", self.name(i), lead_tag(lead)), lead, lead, false)
            }
            Fault::Pause { target, ms } => {
                let (i, lead) = self.resolve(target);
                start = self.clock.now();
                self.cluster.members[i].pause();
                thread::sleep(Duration::from_millis(ms));
                self.cluster.members[i].resume();
                (format!("SIGSTOP {}{} for {ms} ms", self.name(i), lead_tag(lead)), lead, false, false)
            }
            Fault::Isolate { target, ms } => {
                let (i, lead) = self.resolve(target);
                let rest: Vec<usize> = (0..self.n()).filter(|&j| j != i).collect();
                start = self.partition(&[i], &rest, ms);
                (format!("isolate {}{} for {ms} ms", self.name(i), lead_tag(lead)), lead, false, false)
            }
            Fault::Minority { salt, ms } => {
                let n = self.n();
                let mut order: Vec<usize> = (0..n).collect();
                let mut rng = Rng::new(salt);
                for k in (1..n).rev() {
                    order.swap(k, rng.below(k as u64 + 1) as usize);
                }
                let (minority, majority) = order.split_at((n - 1) / 2);
                let leader = self.leader();
                let lead = leader.is_some_and(|l| minority.contains(&l));
                start = self.partition(minority, majority, ms);
                let names: Vec<String> = minority.iter().map(|&i| self.name(i)).collect();
                (format!("minority {names:?}{} cut off for {ms} ms", lead_tag(lead)), lead, false, false)
            }
            Fault::Bridge { salt, ms } => {
                let n = self.n();
                let r = (salt % n as u64) as usize;
                let at = |k: usize| (r + k) % n;
                let (left, right) = ([at(0), at(1)], [at(3), at(4 % n)]);
                start = self.partition(&left, &right, ms);
                let what = format!("bridge: {} talks to both halves for {ms} ms", self.name(at(2)));
                (what, false, false, false)
            }
            Fault::Netem { delay_ms, loss_pct, ms } => match self.netem.clone() {
                Ok(()) => {
                    start = self.clock.now();
                    self.netem_all(&format!("delay {delay_ms}ms loss {loss_pct}%"), true);
                    thread::sleep(Duration::from_millis(ms));
                    self.netem_all("", false);
                    (format!("netem delay {delay_ms} ms loss {loss_pct}% for {ms} ms"), false, false, false)
                }
                Err(_) if !self.proxies.is_empty() => {
                    start = self.clock.now();
                    let shape = Shape { delay: Duration::from_millis(delay_ms), loss_pct };
                    self.proxies.iter().for_each(|p| p.set(shape));
                    thread::sleep(Duration::from_millis(ms));
                    self.proxies.iter().for_each(|p| p.set(Shape::default()));
                    let what = format!(
                        "proxies: delay {delay_ms} ms, {loss_pct}% of chunks {} ms late (lost) for {ms} ms",
                        super::proxy::RTO.as_millis()
                    );
                    (what, false, false, false)
                }
                Err(_) => ("netem (skipped: not available)".to_string(), false, false, true),
            },
            Fault::KillAll { down_ms } => {
                start = self.clock.now();
                for m in &mut self.cluster.members {
                    m.kill9();
                }
                thread::sleep(Duration::from_millis(down_ms));
                self.start_all_again();
                (format!("kill -9 all {} members, down {down_ms} ms", self.n()), true, true, false)
            }
            Fault::Replace { target } => {
                let (i, lead) = self.resolve(target);
                let via =
                    (0..self.n()).find(|&j| j != i && self.cluster.members[j].is_live()).unwrap_or((i + 1) % self.n());
                start = self.clock.now();
                let t = Instant::now();
                let what = match super::replace::replace(self.cluster, i, via) {
                    Ok(exit) => {
                        if let Err(e) = self.cluster.members[i].wait_ready(RECOVERY_TIMEOUT) {
                            self.problems.push(format!(
                                "replaced {} not ready {RECOVERY_TIMEOUT:?} after its start: {e}",
                                self.name(i)
                            ));
                        }
                        let from = if super::replace::from_snapshot(&self.cluster.members[i]) {
                            "a snapshot"
                        } else {
                            "the log"
                        };
                        format!(
                            "replace {}{} (member remove: the old process {exit}; member add, fresh data dir, ready after \
                             {:.1} s, caught up from {from})",
                            self.name(i),
                            lead_tag(lead),
                            t.elapsed().as_secs_f64()
                        )
                    }
                    Err(e) => {
                        self.problems.push(format!("replacing {}: {e}", self.name(i)));
                        // Whatever state it is in, the run goes on with it started again if it can be.
                        if !self.cluster.members[i].is_running() {
                            self.start_again(i);
                        }
                        format!("replace {}{} (failed)", self.name(i), lead_tag(lead))
                    }
                };
                (what, lead, false, false)
            }
            Fault::FullDisk { target, ms } => {
                let (i, lead) = self.resolve(target);
                let dir = self.cluster.members[i].data_dir();
                if !super::disk::is_mounted(&dir) {
                    (
                        "full disk (skipped: the data dirs are not on filesystems of their own)".into(),
                        false,
                        false,
                        true,
                    )
                } else {
                    start = self.clock.now();
                    let t = Instant::now();
                    let filled = super::disk::fill(&dir);
                    let exit = self.cluster.members[i].wait_exit(Duration::from_millis(ms));
                    let after = t.elapsed().as_secs_f64();
                    super::disk::free(&dir);
                    let how = match (&filled, exit) {
                        (Err(e), _) => {
                            self.problems.push(format!("cannot fill the disk of {}: {e}", self.name(i)));
                            format!("not filled: {e}")
                        }
                        (Ok(n), Some(status)) => {
                            self.start_again(i);
                            format!(
                                "{} MB filled, exited {status} after {after:.1} s; space freed, started again",
                                n >> 20
                            )
                        }
                        (Ok(n), None) => {
                            format!("{} MB filled, still running after {after:.1} s; space freed", n >> 20)
                        }
                    };
                    let exited = exit.is_some();
                    (format!("full disk {}{}: {how}", self.name(i), lead_tag(lead)), lead, lead && exited, false)
                }
            }
            Fault::Restart { target } => {
                let (i, lead) = self.resolve(target);
                start = self.clock.now();
                let t = Instant::now();
                let exit = match self.cluster.members[i].stop() {
                    Some(status) => format!("exited {status} after {:.1} s", t.elapsed().as_secs_f64()),
                    None => format!("no exit in {:?}, killed", crate::process::STOP_TIMEOUT),
                };
                self.start_again(i);
                (format!("restart {}{} (SIGTERM: {exit})", self.name(i), lead_tag(lead)), lead, false, false)
            }
        };
        let healed = self.clock.now();
        self.wait_recovered(&what);
        let recovered = self.clock.now();
        self.records.push(FaultRecord { what, start, healed, recovered, hit_leader, killed_leader, skipped });
    }

    fn start_again(&mut self, i: usize) {
        let m = &mut self.cluster.members[i];
        if let Err(e) = m.launch() {
            self.problems.push(format!("cannot start {} again: {e}", m.name));
            return;
        }
        if let Err(e) = m.wait_ready(RECOVERY_TIMEOUT) {
            self.problems.push(format!("{} not ready {RECOVERY_TIMEOUT:?} after its restart: {e}", m.name));
        }
    }

    /// Starts every member again (launched together: none is ready before a majority runs).
    fn start_all_again(&mut self) {
        for m in &mut self.cluster.members {
            if let Err(e) = m.launch() {
                self.problems.push(format!("cannot start {} again: {e}", m.name));
            }
        }
        for m in &mut self.cluster.members {
            if let Err(e) = m.wait_ready(RECOVERY_TIMEOUT) {
                self.problems.push(format!("{} not ready {RECOVERY_TIMEOUT:?} after a restart of all: {e}", m.name));
            }
        }
    }

    /// Cuts every member of `a` from every member of `b` for `ms`, then restores the links.
    fn partition(&mut self, a: &[usize], b: &[usize], ms: u64) -> Micros {
        let start = self.clock.now();
        let pairs: Vec<(usize, usize)> = a.iter().flat_map(|&x| b.iter().map(move |&y| (x, y))).collect();
        for &(x, y) in &pairs {
            self.route(x, y, "add");
            self.route(y, x, "add");
        }
        for &i in a.iter().chain(b) {
            self.cluster.members[i].note(&format!("chaos: partition {a:?} | {b:?} (indices)"));
        }
        thread::sleep(Duration::from_millis(ms));
        for &(x, y) in &pairs {
            self.route(x, y, "del");
            self.route(y, x, "del");
        }
        start
    }

    /// `ip -n <namespace of from> route <add|del> blackhole <peer address of to>/32`.
    fn route(&self, from: usize, to: usize, verb: &str) {
        let ns = self.cluster.members[from].namespace.clone().expect("a member in a namespace");
        let dst = format!("{}/32", self.cluster.members[to].peer_ip);
        let out = Command::new("ip").args(["-n", &ns, "route", verb, "blackhole", &dst]).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!("ip -n {ns} route {verb} blackhole {dst}: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => panic!("cannot run ip: {e}"),
        }
    }

    /// `tc qdisc add dev p root netem <spec>` in every member's namespace (or `del` when `!on`).
    fn netem_all(&self, spec: &str, on: bool) {
        for m in &self.cluster.members {
            let ns = m.namespace.clone().expect("a member in a namespace");
            let _ = netem(&ns, spec, on);
        }
    }

    /// Waits until every member runs and all agree on one leader; a timeout is a liveness problem.
    fn wait_recovered(&mut self, after: &str) {
        let deadline = Instant::now() + RECOVERY_TIMEOUT;
        let all: Vec<usize> = (0..self.n()).collect();
        loop {
            let running = self.cluster.members.iter_mut().all(|m| m.is_live());
            if running {
                let ids: Vec<Option<u64>> = self
                    .cluster
                    .statuses(&all)
                    .into_iter()
                    .map(|(_, s)| s.and_then(|s| s["leader"].as_u64()).filter(|&l| l != 0))
                    .collect();
                if ids[0].is_some() && ids.iter().all(|l| *l == ids[0]) {
                    return;
                }
            }
            if Instant::now() >= deadline {
                self.problems.push(format!("no agreed leader {RECOVERY_TIMEOUT:?} after healing `{after}`"));
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

fn lead_tag(lead: bool) -> &'static str {
    if lead {
        " (leader)"
    } else {
        ""
    }
}

fn netem(ns: &str, spec: &str, on: bool) -> Result<(), String> {
    let mut args = vec!["netns", "exec", ns, "tc", "qdisc", if on { "add" } else { "del" }, "dev", "p", "root"];
    if on {
        args.push("netem");
        args.extend(spec.split_whitespace());
    }
    let out = Command::new("ip").args(&args).stdin(Stdio::null()).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Can `tc netem` be used in the members' namespaces? (Tried on the first member's peer link.)
fn netem_available(c: &NsCluster) -> Result<(), String> {
    let ns = c.members[0].namespace.clone().ok_or("no namespace")?;
    netem(&ns, "delay 1ms", true)?;
    netem(&ns, "", false)
}

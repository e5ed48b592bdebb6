//! Availability under faults, from a history and its fault records: acknowledged operations per
//! second while a fault was on (from its start until the cluster agreed on a leader again) and while
//! none was, also by kind of fault, and for each kill -9 of the leader the time until writes resumed (the first acknowledged
//! write invoked after the kill).

use std::fmt;

use super::faults::FaultRecord;
use super::history::{History, Micros};

#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub secs: f64,
    pub fault_secs: f64,
    pub ops_per_sec_faults: f64,
    pub ops_per_sec_quiet: f64,
    pub writes_per_sec_faults: f64,
    /// Seconds from each leader kill to the first acknowledged write invoked after it (`None`: none).
    pub leader_kill_resume: Vec<Option<f64>>,
    /// The same for every fault that hit the leader (kill, pause, isolation, minority with it).
    pub leader_loss_resume: Vec<Option<f64>>,
    /// Seconds from each fault's healing until every member agreed on one leader.
    pub heal_to_leader: Vec<Option<f64>>,
    /// For each kind of fault ([`kind_of`]): how many, seconds on, acknowledged ops completed meanwhile.
    pub by_kind: Vec<(&'static str, usize, f64, u64)>,
}

/// The kind of a fault, from its description.
pub fn kind_of(what: &str) -> &'static str {
    const KINDS: [(&str, &str); 11] = [
        ("kill -9 all", "kill -9 all"),
        ("kill -9", "kill -9"),
        ("SIGSTOP", "pause"),
        ("isolate", "isolate"),
        ("minority", "minority"),
        ("bridge", "bridge"),
        ("netem", "latency/loss"),
        ("proxies", "latency/loss"),
        ("restart", "restart"),
        ("replace", "replace"),
        ("full disk", "full disk"),
    ];
    KINDS.iter().find(|(p, _)| what.starts_with(p)).map_or("other", |(_, k)| k)
}

pub fn compute(h: &History, faults: &[FaultRecord], end: Micros) -> Figures {
    let windows: Vec<(Micros, Micros)> = faults.iter().filter(|f| !f.skipped).map(|f| (f.start, f.recovered)).collect();
    let in_fault = |t: Micros| windows.iter().any(|&(a, b)| a <= t && t <= b);
    let fault_us: Micros = windows.iter().map(|(a, b)| b - a).sum();
    let (mut ok_f, mut ok_q, mut w_f) = (0u64, 0u64, 0u64);
    for op in h.ops.iter().filter(|o| o.ok().is_some()) {
        if in_fault(op.complete) {
            ok_f += 1;
            w_f += u64::from(op.req.is_write());
        } else {
            ok_q += 1;
        }
    }
    let resume = |t: Micros| {
        h.ops
            .iter()
            .filter(|o| o.req.is_write() && o.ok().is_some() && o.invoke >= t)
            .map(|o| o.complete)
            .min()
            .map(|c| (c - t) as f64 / 1e6)
    };
    let mut by_kind: Vec<(&'static str, usize, f64, u64)> = Vec::new();
    for f in faults.iter().filter(|f| !f.skipped) {
        let k = kind_of(&f.what);
        let acked =
            h.ops.iter().filter(|o| o.ok().is_some() && f.start <= o.complete && o.complete <= f.recovered).count();
        match by_kind.iter_mut().find(|e| e.0 == k) {
            Some(e) => {
                e.1 += 1;
                e.2 += (f.recovered - f.start) as f64 / 1e6;
                e.3 += acked as u64;
            }
            None => by_kind.push((k, 1, (f.recovered - f.start) as f64 / 1e6, acked as u64)),
        }
    }
    let per_sec = |n: u64, us: Micros| if us == 0 { 0.0 } else { n as f64 / (us as f64 / 1e6) };
    Figures {
        secs: end as f64 / 1e6,
        fault_secs: fault_us as f64 / 1e6,
        ops_per_sec_faults: per_sec(ok_f, fault_us),
        ops_per_sec_quiet: per_sec(ok_q, end.saturating_sub(fault_us)),
        writes_per_sec_faults: per_sec(w_f, fault_us),
        leader_kill_resume: faults.iter().filter(|f| f.killed_leader).map(|f| resume(f.start)).collect(),
        leader_loss_resume: faults.iter().filter(|f| f.hit_leader).map(|f| resume(f.start)).collect(),
        heal_to_leader: faults
            .iter()
            .filter(|f| !f.skipped)
            .map(|f| Some(f.recovered.saturating_sub(f.healed) as f64 / 1e6))
            .collect(),
        by_kind,
    }
}

/// `mean / max` of the resume times, `never` counted apart.
fn resume_stats(v: &[Option<f64>]) -> String {
    let got: Vec<f64> = v.iter().flatten().copied().collect();
    if v.is_empty() {
        return "-".into();
    }
    let never = v.len() - got.len();
    let mut s = if got.is_empty() {
        String::from("none resumed")
    } else {
        let mean = got.iter().sum::<f64>() / got.len() as f64;
        let max = got.iter().copied().fold(0.0, f64::max);
        format!("mean {mean:.2} s, max {max:.2} s over {}", got.len())
    };
    if never > 0 {
        s += &format!(", {never} never");
    }
    s
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "acked ops/s during faults {:.0} (writes {:.0}), without faults {:.0}; faults on {:.1} of {:.1} s; \
             writes resume after a leader kill: {}; after any leader loss: {}; one leader agreed after \
             healing: {}",
            self.ops_per_sec_faults,
            self.writes_per_sec_faults,
            self.ops_per_sec_quiet,
            self.fault_secs,
            self.secs,
            resume_stats(&self.leader_kill_resume),
            resume_stats(&self.leader_loss_resume),
            resume_stats(&self.heal_to_leader)
        )?;
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, n, secs, acked)| {
                format!("{k} ×{n} {:.0}/s", if *secs > 0.0 { *acked as f64 / secs } else { 0.0 })
            })
            .collect();
        if !kinds.is_empty() {
            write!(f, "; acked ops/s by fault: {}", kinds.join(", "))?;
        }
        Ok(())
    }
}

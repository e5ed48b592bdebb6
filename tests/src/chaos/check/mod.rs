//! The checkers of a recorded [`History`]:
//!
//! * [`model`] — the revision log (a watch of the whole key space from revision 1 after the run):
//!   gap-free, each key's create revision and version consistent; "what did k hold at r".
//! * [`kv`] — linearizability (strict serializability) of the KV operations against that log.
//! * [`lease`] — leases: a lease's keys go at one revision when it is revoked or expires, none
//!   survives it, a lease seen gone is never used again, a kept-alive lease's keys stay, none is left.
//! * [`watch`] — every watch stream ordered, unique, gap-free, atomic per revision, equal to the log
//!   from its start revision (so resuming from any revision yields the same events).
//! * [`final_read`] — every member's end state equals the log's; every acknowledged write read back at
//!   its revision, and the last acknowledged write of each key present or overwritten by a later write.
//!
//! [`check_all`] runs them all. An [`Anomaly`] names its checker, says what is wrong and lists the ops
//! involved. Why checking against revisions is sound, see [`kv`].

pub mod final_read;
pub mod kv;
pub mod lease;
pub mod model;
pub mod watch;

use std::fmt;

use crate::chaos::history::History;
pub use model::RevLog;

/// Key prefix of everything the workload writes and watches.
pub const PREFIX: &str = "/chaos/";
/// At most this many anomalies of one checker are listed (the rest are counted).
pub const MAX_PER_CHECKER: usize = 20;

/// A violated guarantee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    pub checker: &'static str,
    pub what: String,
    /// Ids of the ops involved ([`crate::chaos::history::Op::id`]).
    pub ops: Vec<usize>,
}

impl Anomaly {
    pub fn new(checker: &'static str, what: String) -> Anomaly {
        Anomaly { checker, what, ops: Vec::new() }
    }

    pub fn with_ops(checker: &'static str, what: String, ops: Vec<usize>) -> Anomaly {
        Anomaly { checker, what, ops }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.checker, self.what)
    }
}

/// What the checkers looked at.
#[derive(Clone, Debug, Default)]
pub struct Checked {
    pub ops: usize,
    pub acked: usize,
    pub unknown: usize,
    pub watch_segments: usize,
    pub watch_events: usize,
    pub log_events: usize,
    pub at_rev_reads: usize,
    /// Leases granted, keep-alives answered, revokes acknowledged, puts refused (lease gone), lease
    /// ends (revoke or expiry) seen in the log.
    pub leases: (usize, usize, usize, usize, usize),
}

/// Runs every checker; returns what was checked and the anomalies found (at most [`MAX_PER_CHECKER`]
/// per checker, then one line counting the rest).
pub fn check_all(h: &History) -> (Checked, Vec<Anomaly>) {
    let mut found = Vec::new();
    let log = RevLog::build(&h.log, h.final_rev, &mut found);
    found.extend(kv::check(h, &log));
    found.extend(watch::check(&h.watches, &log, PREFIX));
    found.extend(final_read::check(h, &log, PREFIX));
    found.extend(lease::check(h, &log));
    let checked = Checked {
        ops: h.ops.len(),
        acked: h.ops.iter().filter(|o| o.ok().is_some()).count(),
        unknown: h.ops.iter().filter(|o| o.unknown_write()).count(),
        watch_segments: h.watches.len(),
        watch_events: h.watches.iter().map(|w| w.events().count()).sum(),
        log_events: h.log.len(),
        at_rev_reads: h.at_rev.len(),
        leases: lease::counts(h, &log),
    };
    (checked, cap(found))
}

/// Keeps the first [`MAX_PER_CHECKER`] anomalies of each checker.
fn cap(found: Vec<Anomaly>) -> Vec<Anomaly> {
    let mut out: Vec<Anomaly> = Vec::new();
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for a in found {
        let n = match counts.iter_mut().find(|(c, _)| *c == a.checker) {
            Some((_, n)) => n,
            None => {
                counts.push((a.checker, 0));
                &mut counts.last_mut().unwrap().1
            }
        };
        *n += 1;
        if *n <= MAX_PER_CHECKER {
            out.push(a);
        }
    }
    for (c, n) in counts {
        if n > MAX_PER_CHECKER {
            out.push(Anomaly::new(c, format!("... and {} more", n - MAX_PER_CHECKER)));
        }
    }
    out
}

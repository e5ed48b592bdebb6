//! Lease guarantees, against the revision log and in real time.
//!
//! A lease ends when it is revoked or expires; etcd then deletes every key attached to it in one txn:
//! delete events at one revision (a "lease end" in the log: a delete of a key whose state carried the
//! lease, not made by a client's delete). The checker verifies:
//!
//! * one revision: all of a lease's keys go at one revision, and every key attached to the lease just
//!   before it goes then (none survives its lease's end);
//! * an acknowledged revoke at revision R: no key carries the lease at R, and no put with the lease is
//!   applied after R;
//! * gone is gone: once a client saw a lease gone (its revoke acknowledged, a put with it refused with
//!   `etcdserver: requested lease not found`, a keep-alive answered with TTL 0, or its keys deleted), no
//!   operation invoked later uses it successfully (an acknowledged put with it, a keep-alive with
//!   TTL > 0); a refusal carries exactly etcd's code and message;
//! * kept alive means kept: a lease's keys are not deleted by expiry while a keep-alive (or the grant)
//!   processed before the deletion still promised the lease `TTL` seconds (less [`SLACK`], for the
//!   leader changes etcd 3.4 tolerates), unless a revoke of it was sent;
//! * the end: no lease is left once the workload stopped (revoked or expired in time), and no member's
//!   end state holds a key of a lease that is gone.

use std::collections::{BTreeSet, HashMap};

use super::{Anomaly, RevLog};
use crate::chaos::history::{History, Micros, Op, Outcome, Request, Response};
use crate::chaos::lease::refused_not_found;

const C: &str = "lease";

/// Allowance for an expiry decided by a new leader (etcd 3.4 extends leases by an election timeout
/// on promotion; a stale leader may renew a lease before it learns it was deposed).
pub const SLACK: Micros = 2_000_000;

/// What the log says about how each lease ended.
struct Ends {
    /// Lease → (revision, key) of each delete its end made.
    by_lease: HashMap<i64, Vec<(i64, String)>>,
    /// Lease → keys any put attached to it.
    attached: HashMap<i64, BTreeSet<String>>,
    /// Lease → revisions of puts attached to it.
    puts: HashMap<i64, Vec<i64>>,
}

impl Ends {
    fn build(h: &History, log: &RevLog) -> Ends {
        let client_deletes: BTreeSet<i64> = h
            .ops
            .iter()
            .filter_map(|o| match o.ok() {
                Some(Response::Delete { rev, deleted }) if *deleted > 0 => Some(*rev),
                _ => None,
            })
            .collect();
        let mut ends = Ends { by_lease: HashMap::new(), attached: HashMap::new(), puts: HashMap::new() };
        for e in log.events() {
            if e.delete {
                let lease = log.state(&e.kv.key, e.rev() - 1).map_or(0, |kv| kv.lease);
                if lease != 0 && !client_deletes.contains(&e.rev()) {
                    ends.by_lease.entry(lease).or_default().push((e.rev(), e.kv.key.clone()));
                }
            } else if e.kv.lease != 0 {
                ends.attached.entry(e.kv.lease).or_default().insert(e.kv.key.clone());
                ends.puts.entry(e.kv.lease).or_default().push(e.rev());
            }
        }
        ends
    }

    /// The revision at which `lease`'s keys were deleted (the first, if several).
    fn end_rev(&self, lease: i64) -> Option<i64> {
        self.by_lease.get(&lease).and_then(|v| v.iter().map(|(r, _)| *r).min())
    }
}

/// Is `lease` attached to `key` at revision `rev` (per the log)?
fn holds(log: &RevLog, key: &str, rev: i64, lease: i64) -> bool {
    log.state(key, rev).is_some_and(|kv| kv.lease == lease)
}

/// Lease operations and lease ends the checker looked at: (leases granted, keep-alives answered,
/// revokes acknowledged, puts refused, lease ends in the log).
pub fn counts(h: &History, log: &RevLog) -> (usize, usize, usize, usize, usize) {
    let ends = Ends::build(h, log);
    let n = |f: &dyn Fn(&Op) -> bool| h.ops.iter().filter(|o| f(o)).count();
    (
        n(&|o| matches!(o.ok(), Some(Response::Grant { .. }))),
        n(&|o| matches!(o.ok(), Some(Response::KeepAlive { .. }))),
        n(&|o| matches!(o.ok(), Some(Response::LeaseRevoke { .. }))),
        n(&|o| matches!(o.outcome, Outcome::Refused(_))),
        ends.by_lease.len(),
    )
}

pub fn check(h: &History, log: &RevLog) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let ends = Ends::build(h, log);
    one_revision(&ends, log, &mut out);
    revokes(h, &ends, log, &mut out);
    gone_is_gone(h, &ends, &mut out);
    kept_alive(h, &ends, &mut out);
    at_the_end(h, &mut out);
    out
}

fn bad(op: &Op, what: String) -> Anomaly {
    Anomaly::with_ops(C, format!("{what}\n    {op}"), vec![op.id])
}

/// All keys of a lease go at one revision, none survives, no put with it after.
fn one_revision(ends: &Ends, log: &RevLog, out: &mut Vec<Anomaly>) {
    for (&lease, dels) in &ends.by_lease {
        let revs: BTreeSet<i64> = dels.iter().map(|(r, _)| *r).collect();
        if revs.len() > 1 {
            out.push(Anomaly::new(
                C,
                format!("lease {lease:x}: its keys were deleted at revisions {revs:?}, not at one"),
            ));
        }
        let end = *revs.first().unwrap();
        for key in ends.attached.get(&lease).into_iter().flatten() {
            if holds(log, key, end - 1, lease) && holds(log, key, end, lease) {
                out.push(Anomaly::new(C, format!("{key} survives the end of its lease {lease:x} at revision {end}")));
            }
        }
        for &r in ends.puts.get(&lease).into_iter().flatten().filter(|&&r| r > end) {
            out.push(Anomaly::new(
                C,
                format!("a put with lease {lease:x} applied at revision {r}, after the lease ended at {end}"),
            ));
        }
    }
}

/// An acknowledged revoke at R: nothing carries the lease at R or later.
fn revokes(h: &History, ends: &Ends, log: &RevLog, out: &mut Vec<Anomaly>) {
    for op in &h.ops {
        let (Request::LeaseRevoke { lease }, Some(Response::LeaseRevoke { rev })) = (&op.req, op.ok()) else {
            continue;
        };
        for key in ends.attached.get(lease).into_iter().flatten() {
            if holds(log, key, *rev, *lease) {
                let kv = log.state(key, *rev).unwrap();
                out.push(bad(op, format!("{kv} survives the revoke of its lease acknowledged at revision {rev}")));
            }
        }
        for &r in ends.puts.get(lease).into_iter().flatten().filter(|&&r| r > *rev) {
            out.push(bad(op, format!("a put with lease {lease:x} applied at revision {r}, after its revoke at {rev}")));
        }
    }
}

/// Once seen gone, never used again; refusals in etcd's words.
fn gone_is_gone(h: &History, ends: &Ends, out: &mut Vec<Anomaly>) {
    // The earliest instant each lease was known gone, and by which op (None: its keys' deletion).
    let mut gone: HashMap<i64, (Micros, Option<usize>)> = HashMap::new();
    let mut note = |lease: i64, at: Micros, op: Option<usize>| {
        let e = gone.entry(lease).or_insert((at, op));
        if at < e.0 {
            *e = (at, op);
        }
    };
    for op in &h.ops {
        let Some(lease) = op.req.lease() else { continue };
        match (&op.req, &op.outcome) {
            (_, Outcome::Refused(msg)) => {
                if *msg != refused_not_found() {
                    out.push(bad(op, format!("refused with {msg:?}, not etcd's {:?}", refused_not_found())));
                }
                note(lease, op.complete, Some(op.id));
            }
            (Request::LeaseRevoke { .. }, Outcome::Ok(_))
            | (Request::KeepAlive { .. }, Outcome::Ok(Response::KeepAlive { ttl: 0, .. })) => {
                note(lease, op.complete, Some(op.id))
            }
            _ => {}
        }
    }
    // A lease end at revision R happened before any op answered with a revision >= R completed.
    let mut answered: Vec<(i64, Micros)> = h.ops.iter().filter_map(|o| o.ok().map(|r| (r.rev(), o.complete))).collect();
    answered.sort();
    let mut min_after = vec![Micros::MAX; answered.len() + 1];
    for i in (0..answered.len()).rev() {
        min_after[i] = min_after[i + 1].min(answered[i].1);
    }
    let seen_by = |rev: i64| min_after[answered.partition_point(|(r, _)| *r < rev)];
    for &lease in ends.by_lease.keys() {
        let at = seen_by(ends.end_rev(lease).unwrap());
        if at != Micros::MAX {
            note(lease, at, None);
        }
    }
    for op in &h.ops {
        let used = matches!(
            (&op.req, op.ok()),
            (Request::LeasePut { .. }, Some(_))
                | (Request::KeepAlive { .. }, Some(Response::KeepAlive { ttl: 1.., .. }))
        );
        let Some(lease) = op.req.lease().filter(|_| used) else { continue };
        let Some(&(at, by)) = gone.get(&lease) else { continue };
        if op.invoke > at {
            let why = match by {
                Some(g) => format!("it was gone at {:.3}s:\n    {}", at as f64 / 1e6, h.ops[g]),
                None => format!(
                    "its keys were deleted at revision {}, seen by {:.3}s",
                    ends.end_rev(lease).unwrap(),
                    at as f64 / 1e6
                ),
            };
            let mut a = bad(op, format!("lease {lease:x} used successfully after {why}"));
            a.ops.extend(by);
            out.push(a);
        }
    }
}

/// No deletion by expiry while a keep-alive processed before it still promised the lease its TTL.
fn kept_alive(h: &History, ends: &Ends, out: &mut Vec<Anomaly>) {
    let revoke_sent: BTreeSet<i64> = h
        .ops
        .iter()
        .filter(|o| matches!(o.req, Request::LeaseRevoke { .. }) && !matches!(o.outcome, Outcome::NotSent(_)))
        .filter_map(|o| o.req.lease())
        .collect();
    let mut answered: Vec<(i64, Micros)> = h.ops.iter().filter_map(|o| o.ok().map(|r| (r.rev(), o.complete))).collect();
    answered.sort();
    for (&lease, _) in ends.by_lease.iter().filter(|(l, _)| !revoke_sent.contains(l)) {
        let end = ends.end_rev(lease).unwrap();
        // The deletion happened before this instant.
        let Some(before) = answered.iter().filter(|(r, _)| *r >= end).map(|(_, t)| *t).min() else { continue };
        for op in h.ops.iter().filter(|o| o.req.lease() == Some(lease)) {
            let (rev, ttl) = match op.ok() {
                Some(Response::KeepAlive { rev, ttl }) | Some(Response::Grant { rev, ttl }) if *ttl > 0 => (*rev, *ttl),
                _ => continue,
            };
            let promised = op.invoke + ttl as Micros * 1_000_000;
            if rev < end && before + SLACK < promised {
                out.push(bad(
                    op,
                    format!(
                        "lease {lease:x}'s keys were deleted at revision {end} (before {:.3}s), though this answer \
                         (at revision {rev}) promised it {ttl} s, until {:.3}s, and no revoke was sent",
                        before as f64 / 1e6,
                        promised as f64 / 1e6
                    ),
                ));
            }
        }
    }
}

/// No lease left; no key of a lease that is gone in any member's end state.
fn at_the_end(h: &History, out: &mut Vec<Anomaly>) {
    if !h.leases_left.is_empty() {
        let ids: Vec<String> = h.leases_left.iter().map(|l| format!("{l:x}")).collect();
        out.push(Anomaly::new(
            C,
            format!("leases still alive after the workload stopped and their TTLs passed: {ids:?}"),
        ));
    }
    for f in &h.finals {
        for kv in f.kvs.iter().filter(|kv| kv.lease != 0 && !h.leases_left.contains(&kv.lease)) {
            out.push(Anomaly::new(C, format!("m{}'s end state holds {kv}, whose lease is gone", f.member + 1)));
        }
    }
}

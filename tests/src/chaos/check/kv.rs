//! Linearizability of the KV history, checked against revisions.
//!
//! etcd orders every change of the key space by one global revision and tells each client where its
//! operation sits in that order: the response header's revision is the revision a write created, or the
//! revision of the store a read (a range, a txn whose compare failed, a delete that found nothing) was
//! served from. So instead of searching for a linearization (WGL / Porcupine: exponential in the worst
//! case), the checker *constructs* one from what the server said and verifies it:
//!
//! 1. every operation gets a point: a write at `(rev, 0)`, a read at `(rev, 1)` (after the write of
//!    `rev`, before the one of `rev + 1`); an unknown-outcome write that appears in the log (values are
//!    unique, so it is found by its value) gets its log revision, one that does not appear never happened;
//! 2. values: each write appears in the log exactly at its revision with exactly its puts (a txn's puts
//!    all at one revision, never twice, never partially); a compare-and-swap succeeded iff the key's
//!    mod_revision just before its revision was the one it compared with; every read returned exactly
//!    the key's state in the log at its revision (value, mod, create revision and version); every event
//!    of the log was sent by some client (no invented writes, no write whose request never left);
//! 3. real time: whenever operation X completed before operation Y was invoked, `point(X) <= point(Y)`
//!    (writes and linearizable reads); a serializable read may be stale, but a write invoked after it
//!    completed lies after it (it never returns the future).
//!
//! If 1–3 hold, sorting the operations by point (reads of one point by completion) is a sequential
//! history of a register per key that respects real time: the history is linearizable. Each check is
//! also necessary for a correct etcd: a revision is assigned when a write is applied, between its
//! invocation and its response; a linearizable read waits until its member has applied everything
//! committed when it was invoked and reports the revision it read at. So a correct server never fails
//! a check (no false alarms), and any history that passes is linearizable — for the strict order etcd
//! promises (one order for all keys), stronger than per-key linearizability. The checks are a few sorts
//! and one sweep: `O(n log n)` for `n` operations.

use std::collections::HashMap;

use super::{Anomaly, RevLog};
use crate::chaos::history::{Event, History, Kv, Op, Outcome, Request, Response};

const C: &str = "kv";

/// Where an operation sits in the constructed linearization.
type Point = (i64, u8);
const WRITE: u8 = 0;
const READ: u8 = 1;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// An acknowledged write or a linearizable read: constrains and is constrained.
    Full,
    /// A serializable read: only later-invoked writes must lie after it.
    Serializable,
    /// A write of unknown outcome found in the log: its completion is unknown (infinite).
    Unacknowledged,
}

struct Placed {
    op: usize,
    point: Point,
    role: Role,
    is_write: bool,
}

pub fn check(h: &History, log: &RevLog) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut placed: Vec<Placed> = Vec::new();
    for op in &h.ops {
        if let Outcome::Ok(resp) = &op.outcome {
            if let Some(p) = check_response(op, resp, log, &mut out) {
                placed.push(p);
            }
        }
    }
    placed.extend(attribute_log(h, log, &mut out));
    real_time(h, &placed, &mut out);
    out
}

fn bad(op: &Op, what: String) -> Anomaly {
    Anomaly::with_ops(C, format!("{what}\n    {op}"), vec![op.id])
}

fn put_event<'a>(key: &'a str, value: &'a str, rev: i64) -> impl Fn(&Event) -> bool + 'a {
    lease_put_event(key, value, rev, 0)
}

/// A put event of `key = value` at `rev` attached to `lease` (0: none).
fn lease_put_event<'a>(key: &'a str, value: &'a str, rev: i64, lease: i64) -> impl Fn(&Event) -> bool + 'a {
    move |e: &Event| !e.delete && e.kv.key == key && e.kv.value == value && e.kv.modr == rev && e.kv.lease == lease
}

fn show(events: &[Event]) -> String {
    if events.is_empty() {
        return "nothing".into();
    }
    events.iter().map(Event::to_string).collect::<Vec<_>>().join(", ")
}

fn show_kv(kv: Option<&Kv>) -> String {
    kv.map_or("absent".into(), Kv::to_string)
}

/// Checks an answered op against the log (part 2); returns its point.
fn check_response(op: &Op, resp: &Response, log: &RevLog, out: &mut Vec<Anomaly>) -> Option<Placed> {
    let rev = resp.rev();
    if rev > log.last {
        out.push(bad(op, format!("answered with revision {rev}, beyond the cluster's last revision {}", log.last)));
        return None;
    }
    let at = log.at(rev);
    let placed = |point: Point, role: Role, is_write: bool| Some(Placed { op: op.id, point, role, is_write });
    match (&op.req, resp) {
        (Request::Put { key, value }, Response::Put { .. }) => {
            if !(at.len() == 1 && put_event(key, value, rev)(&at[0])) {
                out.push(bad(op, format!("acknowledged put {key}={value} at {rev}; the log has {}", show(at))));
            }
            placed((rev, WRITE), Role::Full, true)
        }
        (Request::LeasePut { key, value, lease }, Response::Put { .. }) => {
            if !(at.len() == 1 && lease_put_event(key, value, rev, *lease)(&at[0])) {
                out.push(bad(
                    op,
                    format!("acknowledged put {key}={value} with lease {lease:x} at {rev}; the log has {}", show(at)),
                ));
            }
            placed((rev, WRITE), Role::Full, true)
        }
        (Request::LeaseRevoke { lease }, Response::LeaseRevoke { .. }) => {
            // A revoke that deleted keys made the revision it answers with (all its deletes, checked by
            // the lease checker); one of a lease without keys reads at that revision.
            let deleted = !at.is_empty()
                && at.iter().all(|e| e.delete && log.state(&e.kv.key, rev - 1).is_some_and(|kv| kv.lease == *lease));
            placed((rev, if deleted { WRITE } else { READ }), Role::Full, deleted)
        }
        // Grants and keep-alives change no key (the lease checker looks at them).
        (Request::Grant { .. }, Response::Grant { .. }) | (Request::KeepAlive { .. }, Response::KeepAlive { .. }) => {
            None
        }
        (Request::MultiPut { puts }, Response::MultiPut { .. }) => {
            let ok = at.len() == puts.len() && puts.iter().zip(at).all(|((k, v), e)| put_event(k, v, rev)(e));
            if !ok {
                out.push(bad(
                    op,
                    format!("acknowledged txn of {} puts at {rev}; the log has {}", puts.len(), show(at)),
                ));
            }
            placed((rev, WRITE), Role::Full, true)
        }
        (Request::Cas { key, expect, value }, Response::Cas { succeeded: true, .. }) => {
            if !(at.len() == 1 && put_event(key, value, rev)(&at[0])) {
                out.push(bad(op, format!("acknowledged CAS put {key}={value} at {rev}; the log has {}", show(at))));
            }
            let before = log.state(key, rev - 1);
            if before.map_or(0, |kv| kv.modr) != *expect {
                out.push(bad(
                    op,
                    format!("CAS on mod_revision {expect} succeeded, but {key} was {} before", show_kv(before)),
                ));
            }
            placed((rev, WRITE), Role::Full, true)
        }
        (Request::Cas { key, expect, .. }, Response::Cas { succeeded: false, kv, .. }) => {
            let state = log.state(key, rev);
            if state.map_or(0, |kv| kv.modr) == *expect {
                out.push(bad(op, format!("CAS on mod_revision {expect} failed, but {key} was {}", show_kv(state))));
            }
            if kv.as_ref() != state {
                out.push(bad(
                    op,
                    format!(
                        "CAS failure branch read {} at {rev}; the log has {}",
                        show_kv(kv.as_ref()),
                        show_kv(state)
                    ),
                ));
            }
            placed((rev, READ), Role::Full, false)
        }
        (Request::Delete { key }, Response::Delete { deleted, .. }) if *deleted > 0 => {
            let ok = *deleted == 1 && at.len() == 1 && at[0].delete && at[0].kv.key == *key;
            if !ok {
                out.push(bad(
                    op,
                    format!("acknowledged delete of {key} ({deleted}) at {rev}; the log has {}", show(at)),
                ));
            }
            placed((rev, WRITE), Role::Full, true)
        }
        (Request::Delete { key }, Response::Delete { .. }) => {
            if let Some(kv) = log.state(key, rev) {
                out.push(bad(op, format!("delete found no {key} at {rev}, but the log has {kv}")));
            }
            placed((rev, READ), Role::Full, false)
        }
        (Request::Range { key, serializable }, Response::Range { kv, .. }) => {
            let state = log.state(key, rev);
            if kv.as_ref() != state {
                let what = if *serializable { "serializable read" } else { "read" };
                out.push(bad(
                    op,
                    format!("{what} returned {} at {rev}; the log has {}", show_kv(kv.as_ref()), show_kv(state)),
                ));
            }
            let role = if *serializable { Role::Serializable } else { Role::Full };
            placed((rev, READ), role, false)
        }
        _ => {
            out.push(bad(op, "a response of another kind than the request".into()));
            None
        }
    }
}

/// Every event of the log belongs to a write some client sent (part 2, the log's side); returns the
/// points of unknown-outcome writes found in it.
fn attribute_log(h: &History, log: &RevLog, out: &mut Vec<Anomaly>) -> Vec<Placed> {
    let mut owner: HashMap<&str, usize> = HashMap::new();
    let mut unknown_deletes: HashMap<&str, usize> = HashMap::new();
    let mut acked_deletes: HashMap<i64, usize> = HashMap::new();
    for op in &h.ops {
        for (_, v) in op.req.puts() {
            let prev = owner.insert(v, op.id);
            assert!(prev.is_none(), "harness bug: value {v} written by two ops");
        }
        if let Request::Delete { key } = &op.req {
            match &op.outcome {
                Outcome::Unknown(_) => *unknown_deletes.entry(key).or_default() += 1,
                Outcome::Ok(Response::Delete { rev, deleted }) if *deleted > 0 => {
                    acked_deletes.insert(*rev, op.id);
                }
                _ => {}
            }
        }
    }
    let mut seen_at: HashMap<usize, i64> = HashMap::new();
    let mut seen_values: HashMap<&str, i64> = HashMap::new();
    let mut unmatched_deletes: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut placed = Vec::new();
    for e in log.events() {
        let rev = e.rev();
        if e.delete {
            // A key of a lease deleted other than by a client: the lease ended (the lease checker's).
            let of_lease = log.state(&e.kv.key, rev - 1).is_some_and(|kv| kv.lease != 0);
            if !acked_deletes.contains_key(&rev) && !of_lease {
                unmatched_deletes.entry(&e.kv.key).or_default().push(rev);
            }
            continue;
        }
        if let Some(first) = seen_values.insert(&e.kv.value, rev) {
            out.push(Anomaly::new(C, format!("{e}: the value was already written at {first}: a write applied twice")));
            continue;
        }
        let Some(&id) = owner.get(e.kv.value.as_str()) else {
            out.push(Anomaly::new(C, format!("{e}: no client wrote this value")));
            continue;
        };
        let op = &h.ops[id];
        if !op.req.puts().iter().any(|(k, v)| *k == e.kv.key && *v == e.kv.value) {
            out.push(bad(op, format!("{e}: the value was written to another key")));
            continue;
        }
        match &op.outcome {
            Outcome::NotSent(_) => out.push(bad(op, format!("{e}: this write never reached a server"))),
            Outcome::Refused(_) => out.push(bad(op, format!("{e}: this write was refused"))),
            Outcome::Ok(_) => {} // its revision was checked from the op's side
            Outcome::Unknown(_) => {
                if let Some(other) = seen_at.insert(id, rev) {
                    if other != rev {
                        out.push(bad(op, format!("{e}: one txn's puts at revisions {other} and {rev}")));
                    }
                    continue;
                }
                let n = op.req.puts().len();
                if log.at(rev).len() != n {
                    out.push(bad(op, format!("a txn of {n} puts; revision {rev} has {}", show(log.at(rev)))));
                }
                placed.push(Placed { op: id, point: (rev, WRITE), role: Role::Unacknowledged, is_write: true });
            }
        }
    }
    for (key, revs) in unmatched_deletes {
        let sent = unknown_deletes.get(key).copied().unwrap_or(0);
        if revs.len() > sent {
            out.push(Anomaly::new(
                C,
                format!("{key} deleted at revisions {revs:?}: more than the {sent} unacknowledged deletes sent"),
            ));
        }
    }
    placed
}

/// Part 3: for X completed before Y was invoked, `point(X) <= point(Y)`.
fn real_time(h: &History, placed: &[Placed], out: &mut Vec<Anomaly>) {
    // X candidates by completion; Y candidates by invocation.
    let mut xs: Vec<&Placed> = placed.iter().filter(|p| p.role != Role::Unacknowledged).collect();
    xs.sort_by_key(|p| h.ops[p.op].complete);
    let mut ys: Vec<&Placed> = placed.iter().filter(|p| p.role != Role::Serializable).collect();
    ys.sort_by_key(|p| h.ops[p.op].invoke);
    let (mut full, mut ser): (Option<&Placed>, Option<&Placed>) = (None, None);
    let mut j = 0;
    for y in ys {
        let invoke = h.ops[y.op].invoke;
        while j < xs.len() && h.ops[xs[j].op].complete < invoke {
            let x = xs[j];
            let best = if x.role == Role::Serializable { &mut ser } else { &mut full };
            if best.is_none_or(|b| b.point < x.point) {
                *best = Some(x);
            }
            j += 1;
        }
        let mut late = full.filter(|x| x.point > y.point);
        if y.is_write && late.is_none() {
            late = ser.filter(|x| x.point > y.point);
        }
        if let Some(x) = late {
            let (ox, oy) = (&h.ops[x.op], &h.ops[y.op]);
            let what = match (x.is_write, y.is_write, x.role) {
                (_, true, Role::Serializable) => "a serializable read returned a revision a later write created",
                (_, false, _) => "stale read: it is older than an operation completed before it was invoked",
                (_, true, _) => "a write's revision is older than an operation completed before it was invoked",
            };
            out.push(Anomaly::with_ops(
                C,
                format!(
                    "{what}: op {} at revision {} completed before op {} at revision {} was invoked\n    {ox}\n    {oy}",
                    ox.id, x.point.0, oy.id, y.point.0
                ),
                vec![ox.id, oy.id],
            ));
        }
    }
}

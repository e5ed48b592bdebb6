//! Histories of a simulated correct store, and anomalies planted into them: the evidence that each
//! checker catches what it is for (the tests in `tests/tests/chaos.rs` run without servers).
//!
//! [`simulate`] lets sequential clients overlap in time against one in-memory store that applies each
//! operation at a point between its invocation and completion (so the history is linearizable by
//! construction), with some writes of unknown outcome (applied or not), serializable reads, watch
//! streams from several revisions, the log, the end state of three "members", and reads at revisions.
//! The `plant_*` functions then break one guarantee each.

use std::collections::BTreeMap;

use super::check::{final_read, RevLog, PREFIX};
use super::history::{Event, FinalRead, History, Kv, Op, Outcome, Request, Response, WatchBatch, WatchSegment};
use super::rng::Rng;

fn key(i: u64) -> String {
    format!("{PREFIX}k{i}")
}

/// A linearizable history of `clients` × `ops` operations over 4 keys (see the module docs).
pub fn simulate(seed: u64, clients: usize, ops: usize) -> History {
    let mut rng = Rng::new(seed);
    // Requests and times first; the answers once the points are known.
    let mut planned: Vec<(u64, Op)> = Vec::new();
    for c in 0..clients {
        let mut t = rng.below(100);
        for i in 0..ops {
            let ki = rng.below(4);
            let k = key(ki);
            let value = format!("c{c}-{i}");
            let req = match rng.weighted(&[30, 15, 8, 5, 30, 12]) {
                0 => Request::Put { key: k, value },
                1 => Request::Cas { key: k, expect: -1, value },
                2 => Request::Delete { key: k },
                3 => {
                    let other = key((ki + 1 + rng.below(3)) % 4);
                    Request::MultiPut { puts: vec![(k, format!("{value}-a")), (other, format!("{value}-b"))] }
                }
                4 => Request::Range { key: k, serializable: false },
                _ => Request::Range { key: k, serializable: true },
            };
            let invoke = t + rng.between(1, 50);
            let point = invoke + rng.between(1, 400);
            let complete = point + rng.between(1, 400);
            t = complete;
            let op =
                Op { id: 0, client: c, member: c % 3, req, invoke, complete, outcome: Outcome::Unknown(String::new()) };
            planned.push((point, op));
        }
    }
    planned.sort_by_key(|(p, _)| *p);
    let mut store: BTreeMap<String, Kv> = BTreeMap::new();
    let mut rev = 1i64;
    let mut log: Vec<Event> = Vec::new();
    let mut h = History::default();
    for (_, mut op) in planned {
        let unknown = op.req.is_write() && rng.percent(5);
        let apply = !unknown || rng.percent(50);
        if let Request::Cas { key, expect, .. } = &mut op.req {
            let cur = store.get(key.as_str()).map_or(0, |kv| kv.modr);
            *expect = if rng.percent(60) { cur } else { (cur - 1).max(0) + i64::from(cur == 0) };
        }
        let resp = if apply { Some(apply_op(&op.req, &mut store, &mut rev, &mut log)) } else { None };
        op.outcome = match (unknown, resp) {
            (false, Some(r)) => Outcome::Ok(r),
            _ => Outcome::Unknown("simulated timeout".into()),
        };
        h.ops.push(op);
    }
    h.renumber();
    h.log = log;
    finish(h, rev, store.values().cloned().collect(), &mut rng)
}

/// Ends a simulated history whose ops and log are in place: the final revision `rev`, three members'
/// final reads of `kvs` at it, each acknowledged write's key as the log has it at its revision, and
/// four watch segments over the log.
pub(super) fn finish(mut h: History, rev: i64, kvs: Vec<Kv>, rng: &mut Rng) -> History {
    h.final_rev = rev;
    h.finals = (0..3).map(|member| FinalRead { member, rev, kvs: kvs.clone() }).collect();
    let model = RevLog::build(&h.log, rev, &mut Vec::new());
    h.at_rev = h
        .ops
        .iter()
        .filter_map(|o| final_read::acked_effect(o).map(|(k, _, r)| (o.id, model.state(&k, r).cloned())))
        .collect();
    h.watches = (0..4).map(|w| watch_segment(w, &h.log, rev, rng)).collect();
    h
}

fn apply_op(req: &Request, store: &mut BTreeMap<String, Kv>, rev: &mut i64, log: &mut Vec<Event>) -> Response {
    let mut put = |store: &mut BTreeMap<String, Kv>, k: &str, v: &str, at: i64| {
        let (create, version) = store.get(k).map_or((at, 1), |kv| (kv.create, kv.version + 1));
        let kv = Kv { key: k.into(), value: v.into(), create, modr: at, version, lease: 0 };
        log.push(Event { delete: false, kv: kv.clone() });
        store.insert(k.into(), kv);
    };
    match req {
        Request::Put { key, value } => {
            *rev += 1;
            put(store, key, value, *rev);
            Response::Put { rev: *rev }
        }
        Request::MultiPut { puts } => {
            *rev += 1;
            for (k, v) in puts {
                put(store, k, v, *rev);
            }
            Response::MultiPut { rev: *rev }
        }
        Request::Cas { key, expect, value } => {
            if store.get(key.as_str()).map_or(0, |kv| kv.modr) == *expect {
                *rev += 1;
                put(store, key, value, *rev);
                Response::Cas { rev: *rev, succeeded: true, kv: None }
            } else {
                Response::Cas { rev: *rev, succeeded: false, kv: store.get(key.as_str()).cloned() }
            }
        }
        Request::Delete { key } => match store.remove(key.as_str()) {
            Some(_) => {
                *rev += 1;
                let kv = Kv { key: key.clone(), value: String::new(), create: 0, modr: *rev, version: 0, lease: 0 };
                log.push(Event { delete: true, kv });
                Response::Delete { rev: *rev, deleted: 1 }
            }
            None => Response::Delete { rev: *rev, deleted: 0 },
        },
        Request::Range { key, .. } => Response::Range { rev: *rev, kv: store.get(key.as_str()).cloned() },
        other => unreachable!("not simulated here: {other:?}"),
    }
}

/// A watch stream from a random revision that stops at a random later one, whole revisions per batch.
pub(super) fn watch_segment(w: usize, log: &[Event], last: i64, rng: &mut Rng) -> WatchSegment {
    let start_rev = rng.between(1, last as u64 + 1) as i64;
    let stop = rng.between(start_rev as u64, last as u64 + 1) as i64;
    let mut batches: Vec<WatchBatch> = Vec::new();
    let mut by_rev: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
    for e in log.iter().filter(|e| e.rev() >= start_rev && e.rev() <= stop) {
        by_rev.entry(e.rev()).or_default().push(e.clone());
    }
    for (r, evs) in by_rev {
        match batches.last_mut() {
            Some(b) if rng.percent(50) => {
                b.events.extend(evs);
                b.header_rev = r;
            }
            _ => batches.push(WatchBatch { at: 0, header_rev: r, events: evs }),
        }
    }
    WatchSegment { watcher: w, member: w % 3, start_rev, opened: 0, batches, end: "time up".into() }
}

// ---------------------------------------------------------------------------
// Planted anomalies
// ---------------------------------------------------------------------------

/// Makes a linearizable read return an older state than a write completed before it was invoked (the
/// key's state, and header, just before that write): a stale read. Returns the read's op id.
pub fn plant_stale_read(h: &mut History) -> Option<usize> {
    let mut ignore = Vec::new();
    let log = RevLog::build(&h.log, h.final_rev, &mut ignore);
    for y in 0..h.ops.len() {
        let (Request::Range { key, serializable: false }, Some(Response::Range { .. })) =
            (&h.ops[y].req, h.ops[y].ok())
        else {
            continue;
        };
        // The latest acknowledged put of this key completed before the read was invoked.
        let w = h
            .ops
            .iter()
            .filter(|w| w.complete < h.ops[y].invoke)
            .filter_map(|w| match (&w.req, w.ok()) {
                (Request::Put { key: k, .. }, Some(Response::Put { rev })) if k == key => Some(*rev),
                _ => None,
            })
            .max();
        let Some(r) = w else { continue };
        let old = log.state(key, r - 1).cloned();
        h.ops[y].outcome = Outcome::Ok(Response::Range { rev: r - 1, kv: old });
        return Some(y);
    }
    None
}

/// Removes an acknowledged put from everything the servers reported afterwards (the log, the read at its
/// revision, the end state if it was the key's last value), as a server that forgot it would. Returns
/// its op id.
pub fn plant_lost_write(h: &mut History) -> Option<usize> {
    // The last acknowledged put that was read back at its revision.
    let id = h.ops.iter().rposition(|o| {
        matches!((&o.req, o.ok()), (Request::Put { .. }, Some(Response::Put { .. })))
            && h.at_rev.iter().any(|(id, _)| *id == o.id)
    })?;
    let Request::Put { key, value } = h.ops[id].req.clone() else { unreachable!() };
    h.log.retain(|e| e.kv.value != value);
    for (op, got) in &mut h.at_rev {
        if *op == id {
            *got = None;
        }
    }
    for f in &mut h.finals {
        f.kvs.retain(|kv| !(kv.key == key && kv.value == value));
    }
    Some(id)
}

/// Drops the events of one revision (a txn writes several) from the middle of a watch stream. Returns the
/// stream's index.
pub fn plant_watch_gap(h: &mut History) -> Option<usize> {
    let s = h.watches.iter().position(|w| w.events().count() >= 3)?;
    let seg = &mut h.watches[s];
    let b = seg.batches.len() / 2;
    // A gap is a revision missing: all its events (a txn writes several at one revision).
    let rev = seg.batches[b].events[0].rev();
    seg.batches[b].events.retain(|e| e.rev() != rev);
    if seg.batches[b].events.is_empty() {
        seg.batches.remove(b);
    }
    Some(s)
}

/// Delivers one event of a watch stream twice. Returns the stream's index.
pub fn plant_watch_duplicate(h: &mut History) -> Option<usize> {
    let s = h.watches.iter().position(|w| w.events().count() >= 2)?;
    let seg = &mut h.watches[s];
    let e = seg.batches[0].events[0].clone();
    seg.batches[0].events.insert(1, e);
    Some(s)
}

/// Makes a failed compare-and-swap claim it compared with the revision the key actually had.
pub fn plant_cas_violation(h: &mut History) -> Option<usize> {
    let mut ignore = Vec::new();
    let log = RevLog::build(&h.log, h.final_rev, &mut ignore);
    let id = h.ops.iter().position(|o| matches!(o.ok(), Some(Response::Cas { succeeded: false, .. })))?;
    let rev = h.ops[id].ok().unwrap().rev();
    if let Request::Cas { key, expect, .. } = &mut h.ops[id].req {
        *expect = log.state(key, rev).map_or(0, |kv| kv.modr);
    }
    Some(id)
}

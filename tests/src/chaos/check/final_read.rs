//! The end state: after the faults are healed and every member has caught up, each member's
//! (serializable) range over the prefix equals the log's state at the final revision; every
//! acknowledged write read back at its own revision (`Range` with `revision`) returns its value with
//! that mod_revision (a delete: the key absent); and independently of the log, the last acknowledged
//! write of each key is present with its value and revision in every member's end state, or was
//! overwritten or deleted at a later revision by a write some client sent; and every member's `HashKV`
//! at the final revision is the same (same compact revision too).

use std::collections::HashMap;

use super::{Anomaly, RevLog};
use crate::chaos::history::{History, Kv, Op, Outcome, Request, Response};

const C: &str = "final";

pub fn check(h: &History, log: &RevLog, prefix: &str) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let want = log.snapshot(prefix, h.final_rev);
    for f in &h.finals {
        if f.rev != h.final_rev {
            out.push(Anomaly::new(
                C,
                format!("m{} ends at revision {}, the cluster at {}", f.member + 1, f.rev, h.final_rev),
            ));
        } else if f.kvs != want {
            out.push(Anomaly::new(C, format!("m{} ends with {:?}; the log says {:?}", f.member + 1, f.kvs, want)));
        }
    }
    for (id, got) in &h.at_rev {
        let op = &h.ops[*id];
        let Some((key, want, rev)) = acked_effect(op) else { continue };
        let ok = match (&want, got) {
            (None, None) => true,
            (Some(v), Some(kv)) => kv.key == key && &kv.value == v && kv.modr == rev,
            _ => false,
        };
        if !ok {
            out.push(Anomaly::with_ops(
                C,
                format!("lost acknowledged write: read at its revision {rev}, {key} is {got:?}\n    {op}"),
                vec![op.id],
            ));
        }
    }
    last_acked_present(h, &mut out);
    if h.hashes.iter().any(|x| (x.1, x.2) != (h.hashes[0].1, h.hashes[0].2)) {
        let hs: Vec<String> =
            h.hashes.iter().map(|(m, x, c)| format!("m{}: {x:08x} (compacted at {c})", m + 1)).collect();
        out.push(Anomaly::new(
            C,
            format!("HashKV at revision {} differs between members: {}", h.final_rev, hs.join(", ")),
        ));
    }
    out
}

/// `(key, value put or None for a delete, revision)` of an acknowledged write (a txn's first put).
pub fn acked_effect(op: &Op) -> Option<(String, Option<String>, i64)> {
    match (&op.req, op.ok()?) {
        (Request::Put { key, value }, Response::Put { rev })
        | (Request::LeasePut { key, value, .. }, Response::Put { rev })
        | (Request::Cas { key, value, .. }, Response::Cas { rev, succeeded: true, .. }) => {
            Some((key.clone(), Some(value.clone()), *rev))
        }
        (Request::MultiPut { puts }, Response::MultiPut { rev }) => {
            Some((puts[0].0.clone(), Some(puts[0].1.clone()), *rev))
        }
        (Request::Delete { key }, Response::Delete { rev, deleted }) if *deleted > 0 => Some((key.clone(), None, *rev)),
        _ => None,
    }
}

/// For each key, its last acknowledged write (highest revision) against each member's end state.
fn last_acked_present(h: &History, out: &mut Vec<Anomaly>) {
    let mut last: HashMap<String, (i64, Option<String>, usize)> = HashMap::new();
    for op in &h.ops {
        let puts = op.req.puts();
        let effects: Vec<(String, Option<String>, i64)> = match op.ok() {
            Some(Response::MultiPut { rev }) => {
                puts.iter().map(|(k, v)| (k.to_string(), Some(v.to_string()), *rev)).collect()
            }
            _ => acked_effect(op).into_iter().collect(),
        };
        for (key, value, rev) in effects {
            if last.get(&key).is_none_or(|(r, _, _)| *r < rev) {
                last.insert(key, (rev, value, op.id));
            }
        }
    }
    // Values some client sent (acknowledged or not), and keys with a delete of unknown outcome (which may
    // have been applied at any later revision; an acknowledged one has its revision in `last`).
    let mut sent: HashMap<&str, &Op> = HashMap::new();
    let mut delete_sent: HashMap<&str, bool> = HashMap::new();
    for op in &h.ops {
        if matches!(op.outcome, Outcome::NotSent(_) | Outcome::Refused(_)) {
            continue;
        }
        for (_, v) in op.req.puts() {
            sent.insert(v, op);
        }
        if let (Request::Delete { key }, Outcome::Unknown(_)) = (&op.req, &op.outcome) {
            delete_sent.insert(key, true);
        }
    }
    for f in &h.finals {
        let now: HashMap<&str, &Kv> = f.kvs.iter().map(|kv| (kv.key.as_str(), kv)).collect();
        for (key, (rev, value, id)) in &last {
            let op = &h.ops[*id];
            let lost = |what: String| Anomaly::with_ops(C, format!("m{}: {what}\n    {op}", f.member + 1), vec![*id]);
            match (now.get(key.as_str()), value) {
                (Some(kv), Some(v)) if kv.modr == *rev && &kv.value == v => {}
                (Some(kv), _) if kv.modr > *rev && sent.contains_key(kv.value.as_str()) => {}
                (None, _) if delete_sent.contains_key(key.as_str()) => {}
                // Its lease ended (deleted with the lease's other keys: the lease checker's).
                (None, Some(_)) if matches!(op.req, Request::LeasePut { .. }) => {}
                (None, None) => {}
                (Some(kv), _) => {
                    out.push(lost(format!("{key} ends as {kv}, not its last acknowledged write at {rev}")))
                }
                (None, Some(v)) => {
                    out.push(lost(format!("{key} is absent; its last acknowledged write put {v} at {rev}")))
                }
            }
        }
    }
}

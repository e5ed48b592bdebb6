//! A simulated correct history of the lease client (grants, puts with leases, keep-alives, revokes,
//! expiries, puts with leases that are gone, reads of lease keys), and an anomaly planted into it: a key
//! that survives its lease's revoke. Like [`super::sim`], for showing the lease checker catches it
//! without servers.

use std::collections::{BTreeMap, BTreeSet};

use super::check::RevLog;
use super::history::{Event, History, Kv, Op, Outcome, Request, Response};
use super::lease::{lease_key, refused_not_found};
use super::rng::Rng;
use super::sim::finish;

/// The store and the leases of the simulation.
#[derive(Default)]
struct Store {
    kvs: BTreeMap<String, Kv>,
    leases: BTreeSet<i64>,
    rev: i64,
    log: Vec<Event>,
}

impl Store {
    /// Deletes every key of `lease` at one new revision (none: no revision); the lease is gone.
    fn end(&mut self, lease: i64) {
        self.leases.remove(&lease);
        let keys: Vec<String> = self.kvs.values().filter(|kv| kv.lease == lease).map(|kv| kv.key.clone()).collect();
        if keys.is_empty() {
            return;
        }
        self.rev += 1;
        for k in keys {
            self.kvs.remove(&k);
            let kv = Kv { key: k, value: String::new(), create: 0, modr: self.rev, version: 0, lease: 0 };
            self.log.push(Event { delete: true, kv });
        }
    }

    fn apply(&mut self, req: &Request) -> Outcome {
        let gone = || Outcome::Refused(refused_not_found());
        match req {
            Request::Grant { lease, ttl } => {
                self.leases.insert(*lease);
                Outcome::Ok(Response::Grant { rev: self.rev, ttl: *ttl })
            }
            Request::KeepAlive { lease } => {
                let ttl = if self.leases.contains(lease) { TTL } else { 0 };
                Outcome::Ok(Response::KeepAlive { rev: self.rev, ttl })
            }
            Request::LeaseRevoke { lease } if self.leases.contains(lease) => {
                self.end(*lease);
                Outcome::Ok(Response::LeaseRevoke { rev: self.rev })
            }
            Request::LeasePut { key, value, lease } if self.leases.contains(lease) => {
                self.rev += 1;
                let (create, version) = self.kvs.get(key).map_or((self.rev, 1), |kv| (kv.create, kv.version + 1));
                let kv = Kv { key: key.clone(), value: value.clone(), create, modr: self.rev, version, lease: *lease };
                self.log.push(Event { delete: false, kv: kv.clone() });
                self.kvs.insert(key.clone(), kv);
                Outcome::Ok(Response::Put { rev: self.rev })
            }
            Request::LeaseRevoke { .. } | Request::LeasePut { .. } => gone(),
            Request::Range { key, .. } => {
                Outcome::Ok(Response::Range { rev: self.rev, kv: self.kvs.get(key).cloned() })
            }
            other => unreachable!("not a lease client request: {other:?}"),
        }
    }
}

/// The leases' TTL in the simulation (seconds); one operation takes a second.
const TTL: i64 = 2;
const SECOND: u64 = 1_000_000;

/// A sequential (so linearizable) history of `n` lease client operations with expiries among them
/// (of leases not kept alive for `TTL` + [`super::check::lease::SLACK`]).
pub fn simulate(seed: u64, n: usize) -> History {
    let mut rng = Rng::new(seed);
    let mut st = Store::default();
    let mut ops: Vec<Op> = Vec::new();
    // (lease, keys made, when it was last granted or kept alive)
    let mut granted: Vec<(i64, u64, u64)> = Vec::new();
    let mut t = 0;
    let mut next = 0;
    while ops.len() < n {
        let live: Vec<(i64, u64, u64)> = granted.iter().copied().filter(|g| st.leases.contains(&g.0)).collect();
        let dead: Vec<(i64, u64, u64)> = granted.iter().copied().filter(|g| !st.leases.contains(&g.0)).collect();
        let expirable: Vec<i64> =
            live.iter().filter(|g| g.2 + TTL as u64 * SECOND + super::check::lease::SLACK < t).map(|g| g.0).collect();
        let w = |b: bool, x: u32| if b { x } else { 0 };
        let weights = [w(live.len() < 4, 10), w(!live.is_empty(), 40), w(!live.is_empty(), 5), 10, 5, 4];
        let req = match rng.weighted(&weights) {
            0 => {
                next += 1;
                granted.push((next, 0, t + SECOND));
                Request::Grant { lease: next, ttl: TTL }
            }
            1 => {
                let lease = rng.pick(&live).0;
                let i = granted.iter().position(|g| g.0 == lease).unwrap();
                let (lease, keys, _) = &mut granted[i];
                let k = if *keys == 0 || rng.percent(40) { *keys } else { rng.below(*keys) };
                *keys = (*keys).max(k + 1);
                Request::LeasePut { key: lease_key(*lease, k), value: format!("v{}", ops.len()), lease: *lease }
            }
            2 => Request::LeaseRevoke { lease: rng.pick(&live).0 },
            3 if !live.is_empty() => {
                let lease = rng.pick(&live).0;
                granted.iter_mut().find(|g| g.0 == lease).unwrap().2 = t + SECOND;
                Request::KeepAlive { lease }
            }
            4 if !dead.is_empty() => {
                let (lease, keys, _) = *rng.pick(&dead);
                Request::LeasePut { key: lease_key(lease, keys), value: format!("v{}", ops.len()), lease }
            }
            5 if !expirable.is_empty() => {
                // An expiry: the server deletes the keys, no client op.
                st.end(*rng.pick(&expirable));
                continue;
            }
            _ if !granted.is_empty() => {
                let (lease, keys, _) = *rng.pick(&granted);
                Request::Range { key: lease_key(lease, rng.below(keys.max(1))), serializable: false }
            }
            _ => continue,
        };
        t += SECOND;
        let outcome = st.apply(&req);
        ops.push(Op { id: 0, client: 0, member: 0, req, invoke: t, complete: t + SECOND / 2, outcome });
    }
    // The end: every lease revoked.
    for lease in st.leases.clone() {
        t += SECOND;
        let req = Request::LeaseRevoke { lease };
        let outcome = st.apply(&req);
        ops.push(Op { id: 0, client: 0, member: 0, req, invoke: t, complete: t + SECOND / 2, outcome });
    }
    let mut h = History { ops, ..Default::default() };
    h.renumber();
    h.log = st.log;
    finish(h, st.rev.max(1), st.kvs.values().cloned().collect(), &mut rng)
}

/// Keeps one key of a revoked lease alive: its delete at the revoke's revision is taken out of the log
/// and every watch stream, and it stays in every member's end state (a revoke that deleted two keys or
/// more, so the revision still has events). Returns the revoke's op id.
pub fn plant_lease_survivor(h: &mut History) -> Option<usize> {
    let mut ignore = Vec::new();
    let log = RevLog::build(&h.log, h.final_rev, &mut ignore);
    let id = h.ops.iter().position(|o| match o.ok() {
        Some(Response::LeaseRevoke { rev }) => log.at(*rev).len() >= 2 && log.at(*rev).iter().all(|e| e.delete),
        _ => false,
    })?;
    let rev = h.ops[id].ok().unwrap().rev();
    let key = log.at(rev)[0].kv.key.clone();
    let kv = log.state(&key, rev - 1).cloned().expect("the key before its revoke");
    let survives = |e: &Event| !(e.delete && e.kv.key == key && e.rev() == rev);
    h.log.retain(survives);
    for w in &mut h.watches {
        for b in &mut w.batches {
            b.events.retain(survives);
        }
        w.batches.retain(|b| !b.events.is_empty());
    }
    for f in &mut h.finals {
        f.kvs.push(kv.clone());
        f.kvs.sort_by(|a, b| a.key.cmp(&b.key));
    }
    Some(id)
}

//! The lease layer (etcd's lessor): leases with a TTL, the keys attached to them, and their expiry.
//!
//! ```text
//!   grant / revoke ──raft──▶ apply ──▶ Lessor (in memory) + Cf::Lease (id → TTL, on disk)
//!   put with lease ──────────▶ apply ──▶ attach key (a delete or another put detaches it)
//!   keep-alive, time-to-live ─────────▶ Lessor directly (the leader's clock, never the log)
//!   expiry loop (leader) ──▶ propose revoke for each expired lease
//! ```
//!
//! Which keys belong to which lease is not stored separately: it is rebuilt at start from the `lease`
//! field of the live key-values. Remaining TTLs are not stored either: as in etcd, a restarted or newly
//! elected leader gives every lease its full TTL again, plus one election timeout (etcd's
//! `Promote(electionTimeout)`, so that `timetolive` right after a restart shows e.g. `remaining(1000s)` for
//! a 1000 s lease).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mvcc::{KeyRange, KvStore, RangeOptions};
use crate::proto::etcdserverpb::{LeaseTimeToLiveRequest, LeaseTimeToLiveResponse};
use crate::storage::{Backend, Cf, WriteBatch};

/// The largest TTL a lease can be granted (etcd's `MaxLeaseTTL`, in seconds).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

struct Lease {
    /// Granted TTL in seconds.
    ttl: i64,
    expiry: Instant,
    keys: BTreeSet<Vec<u8>>,
}

#[derive(Default)]
struct State {
    leases: HashMap<i64, Lease>,
    /// The lease each attached key belongs to.
    key_lease: HashMap<Vec<u8>, i64>,
    /// Leases whose revocation is proposed but not applied yet.
    revoking: HashSet<i64>,
}

pub struct Lessor {
    state: Mutex<State>,
    /// The shortest TTL granted, so a lease outlives an election (etcd: 1.5 election timeouts).
    min_ttl: i64,
    /// Added to the TTL of leases that are loaded at start or promoted (one election timeout, as etcd).
    extend: Duration,
}

/// What `LeaseTimeToLive` reports.
pub struct TimeToLive {
    pub remaining: i64,
    pub granted: i64,
    pub keys: Vec<Vec<u8>>,
}

/// When a lease of `ttl` seconds counted from `from` expires. A TTL outside what a grant accepts (a
/// damaged or hostile snapshot file may hold any number) is clamped, never overflowing the clock.
fn expiry_after(from: Instant, ttl: i64) -> Instant {
    let secs = ttl.clamp(0, MAX_LEASE_TTL) as u64;
    from.checked_add(Duration::from_secs(secs)).unwrap_or(from + Duration::from_secs(u32::MAX as u64))
}

fn lease_key(id: i64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

impl Lessor {
    /// Loads the leases kept in `backend` and attaches the live keys that name them.
    pub fn open(backend: &dyn Backend, kv: &KvStore, election_timeout: Duration) -> Result<Lessor> {
        let min_ttl = (election_timeout.as_secs_f64() * 1.5).ceil().max(1.0) as i64;
        let mut st = State::default();
        let now = Instant::now();
        let mut bad = None;
        backend.scan(Cf::Lease, &[], None, &mut |k, v| {
            match (<[u8; 8]>::try_from(k), <[u8; 8]>::try_from(v)) {
                (Ok(id), Ok(ttl)) => {
                    let ttl = i64::from_be_bytes(ttl);
                    let expiry = expiry_after(now + election_timeout, ttl);
                    st.leases.insert(i64::from_be_bytes(id), Lease { ttl, expiry, keys: BTreeSet::new() });
                }
                _ => bad = Some(format!("bad lease record {k:?}")),
            }
            true
        })?;
        if let Some(b) = bad {
            return Err(crate::storage::StorageError::Corrupt(b).into());
        }
        if !st.leases.is_empty() {
            let all = kv.range(&KeyRange::new(b"\0", b"\0"), RangeOptions::default())?;
            for kv in all.kvs.into_iter().filter(|kv| kv.lease != 0) {
                if let Some(l) = st.leases.get_mut(&kv.lease) {
                    l.keys.insert(kv.key.clone());
                    st.key_lease.insert(kv.key, kv.lease);
                }
            }
        }
        Ok(Lessor { state: Mutex::new(st), min_ttl, extend: election_timeout })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn exists(&self, id: i64) -> bool {
        self.lock().leases.contains_key(&id)
    }

    /// Applies a grant; returns the TTL granted.
    pub fn grant(&self, id: i64, ttl: i64, batch: &mut WriteBatch) -> Result<i64> {
        if id == 0 {
            return Err(Error::LeaseNotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        let mut st = self.lock();
        if st.leases.contains_key(&id) {
            return Err(Error::LeaseExists);
        }
        let ttl = ttl.max(self.min_ttl);
        let expiry = expiry_after(Instant::now(), ttl);
        st.leases.insert(id, Lease { ttl, expiry, keys: BTreeSet::new() });
        batch.put(Cf::Lease, lease_key(id), ttl.to_be_bytes().to_vec());
        Ok(ttl)
    }

    /// Applies a revoke: forgets the lease and returns the keys to delete with it.
    pub fn revoke(&self, id: i64, batch: &mut WriteBatch) -> Result<Vec<Vec<u8>>> {
        let mut st = self.lock();
        st.revoking.remove(&id);
        let lease = st.leases.remove(&id).ok_or(Error::LeaseNotFound)?;
        for k in &lease.keys {
            st.key_lease.remove(k);
        }
        batch.delete(Cf::Lease, lease_key(id));
        Ok(lease.keys.into_iter().collect())
    }

    /// Attaches `key` to lease `id` (0: to none), detaching it from its previous lease.
    pub fn attach(&self, key: &[u8], id: i64) {
        let mut st = self.lock();
        if let Some(old) = st.key_lease.remove(key) {
            if let Some(l) = st.leases.get_mut(&old) {
                l.keys.remove(key);
            }
        }
        if id != 0 {
            if let Some(l) = st.leases.get_mut(&id) {
                l.keys.insert(key.to_vec());
                st.key_lease.insert(key.to_vec(), id);
            }
        }
    }

    pub fn detach(&self, keys: &[Vec<u8>]) {
        for k in keys {
            self.attach(k, 0);
        }
    }

    /// Keep-alive: the lease lives another full TTL from now. Returns that TTL.
    pub fn renew(&self, id: i64) -> Result<i64> {
        let mut st = self.lock();
        if st.revoking.contains(&id) {
            return Err(Error::LeaseNotFound);
        }
        let l = st.leases.get_mut(&id).ok_or(Error::LeaseNotFound)?;
        l.expiry = expiry_after(Instant::now(), l.ttl);
        Ok(l.ttl)
    }

    pub fn time_to_live(&self, id: i64) -> Option<TimeToLive> {
        let st = self.lock();
        let l = st.leases.get(&id)?;
        let remaining = l.expiry.saturating_duration_since(Instant::now()).as_secs() as i64;
        Some(TimeToLive { remaining, granted: l.ttl, keys: l.keys.iter().cloned().collect() })
    }

    /// etcd's LeaseTimeToLive answer on this lessor's clock, without a header (the caller adds its
    /// member's): TTL -1 for a lease that does not exist, the attached keys only when asked for.
    pub fn time_to_live_response(&self, r: &LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse {
        match self.time_to_live(r.id) {
            None => LeaseTimeToLiveResponse { header: None, id: r.id, ttl: -1, ..Default::default() },
            Some(t) => LeaseTimeToLiveResponse {
                header: None,
                id: r.id,
                ttl: t.remaining,
                granted_ttl: t.granted,
                keys: if r.keys { t.keys } else { vec![] },
            },
        }
    }

    pub fn leases(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.lock().leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Expired leases not yet being revoked; they are marked as being revoked.
    pub fn take_expired(&self) -> Vec<i64> {
        let now = Instant::now();
        let mut st = self.lock();
        let expired: Vec<i64> = st
            .leases
            .iter()
            .filter(|(id, l)| l.expiry <= now && !st.revoking.contains(id))
            .map(|(id, _)| *id)
            .collect();
        st.revoking.extend(expired.iter().copied());
        expired
    }

    /// A revocation that failed to be proposed: try again on the next round.
    pub fn revoke_failed(&self, id: i64) {
        self.lock().revoking.remove(&id);
    }

    /// Gives every lease a full TTL from now, plus one election timeout (a new leader does this, as the old
    /// one's clock is gone; etcd's `Promote(electionTimeout)`).
    /// Reloads the leases from storage (after a snapshot replaced the state).
    pub fn reload(&self, backend: &dyn Backend, kv: &KvStore) -> Result<()> {
        let fresh = Lessor::open(backend, kv, self.extend)?;
        let st = fresh.state.into_inner().unwrap_or_else(|e| e.into_inner());
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = st;
        Ok(())
    }

    pub fn promote(&self) {
        let now = Instant::now();
        for l in self.lock().leases.values_mut() {
            l.expiry = expiry_after(now + self.extend, l.ttl);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::RocksDb;

    #[test]
    fn grant_attach_revoke_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(RocksDb::open(dir.path()).unwrap());
        let kv = KvStore::open(backend.clone()).unwrap();
        let l = Lessor::open(&*backend, &kv, Duration::from_secs(1)).unwrap();
        let mut b = WriteBatch::default();
        assert_eq!(l.grant(7, 1, &mut b).unwrap(), 2, "raised to the minimum TTL");
        assert_eq!(l.grant(7, 10, &mut b), Err(Error::LeaseExists));
        assert_eq!(l.grant(8, MAX_LEASE_TTL + 1, &mut b), Err(Error::LeaseTtlTooLarge));
        assert_eq!(l.grant(9, 60, &mut b).unwrap(), 60);
        let mut w = kv.write(&mut b);
        w.put(b"a", b"1".to_vec(), 9);
        w.put(b"b", b"2".to_vec(), 9);
        w.end();
        kv.commit(b, true).unwrap();
        l.attach(b"a", 9);
        l.attach(b"b", 9);
        l.attach(b"b", 7);
        assert_eq!(l.time_to_live(9).unwrap().keys, vec![b"a".to_vec()]);
        let ask = |id, keys| l.time_to_live_response(&LeaseTimeToLiveRequest { id, keys });
        let r = ask(9, true);
        assert_eq!((r.header, r.id, r.granted_ttl, r.keys), (None, 9, 60, vec![b"a".to_vec()]));
        assert!((59..=60).contains(&r.ttl), "remaining {}", r.ttl);
        assert_eq!(ask(9, false).keys, Vec::<Vec<u8>>::new());
        assert_eq!(ask(5, true), LeaseTimeToLiveResponse { id: 5, ttl: -1, ..Default::default() });
        assert_eq!(l.leases(), vec![7, 9]);

        // A reloaded lessor finds the leases and the keys that name them.
        let l2 = Lessor::open(&*backend, &kv, Duration::from_secs(1)).unwrap();
        let t = l2.time_to_live(9).unwrap();
        assert_eq!((t.granted, t.keys), (60, vec![b"a".to_vec(), b"b".to_vec()]));

        let mut b = WriteBatch::default();
        assert_eq!(l.revoke(9, &mut b).unwrap(), vec![b"a".to_vec()]);
        assert_eq!(l.revoke(9, &mut b), Err(Error::LeaseNotFound));
        assert!(l.renew(9).is_err());
        assert_eq!(l.renew(7).unwrap(), 2);
    }

    #[test]
    fn out_of_range_ttls_in_storage_load_without_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(RocksDb::open(dir.path()).unwrap());
        let kv = KvStore::open(backend.clone()).unwrap();
        let mut b = WriteBatch::default();
        for (id, ttl) in [(1i64, -1i64), (2, i64::MAX), (3, i64::MIN)] {
            b.put(Cf::Lease, lease_key(id), ttl.to_be_bytes().to_vec());
        }
        backend.write(b, true).unwrap();
        let l = Lessor::open(&*backend, &kv, Duration::from_secs(1)).unwrap();
        assert_eq!(l.leases(), vec![1, 2, 3]);
        assert!(l.renew(1).is_ok() && l.renew(2).is_ok());
    }
}

//! [`KvStore`]: the index plus the backend, with read and write transactions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use prost::Message;

use super::key_index::KeyIndex;
use super::key_range::KeyRange;
use super::revision::Revision;
use crate::error::{Error, Result};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::{Event, KeyValue};
use crate::storage::{meta, Backend, Cf, WriteBatch};

#[derive(Debug, Clone, Copy, Default)]
pub struct RangeOptions {
    /// At most this many key-values (0: no limit). `count` still counts them all.
    pub limit: usize,
    /// Read as of this revision (0 or less: the current one).
    pub rev: i64,
    /// Only count; return no key-values.
    pub count_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// The store's revision at the time of the read (not the revision asked for).
    pub rev: i64,
    /// Number of keys in the range, regardless of the limit.
    pub count: usize,
}

struct State {
    /// Every key's history; names as boxed slices (8 bytes a key less than `Vec`s: see `KeyIndex`).
    index: BTreeMap<Box<[u8]>, KeyIndex>,
    current_rev: i64,
    compact_rev: i64,
    /// Encoded values of changes already in the index whose batch is not yet written to the backend.
    pending: HashMap<Revision, Vec<u8>>,
    /// The changes made since the last commit, in revision order, for watchers.
    events: Vec<Event>,
    /// Bytes (key + value) of the revisions stored and not compacted away.
    live_bytes: u64,
}

pub struct KvStore {
    backend: Arc<dyn Backend>,
    state: RwLock<State>,
}

fn read_i64(backend: &dyn Backend, key: &[u8]) -> Result<Option<i64>> {
    Ok(backend.get(Cf::Meta, key)?.and_then(|b| meta::decode_u64(&b)).map(|v| v as i64))
}

impl KvStore {
    /// Opens the key space kept in `backend`, rebuilding the in-memory index from it.
    pub fn open(backend: Arc<dyn Backend>) -> Result<KvStore> {
        let mut index: BTreeMap<Box<[u8]>, KeyIndex> = BTreeMap::new();
        let mut max_rev = 1;
        let mut bad = None;
        let mut live_bytes = 0u64;
        backend.scan(Cf::Kv, &[], None, &mut |k, v| {
            live_bytes += (k.len() + v.len()) as u64;
            let Some((rev, tombstone)) = Revision::from_bytes(k) else {
                bad = Some(format!("bad revision key {k:?}"));
                return false;
            };
            let kv = match KeyValue::decode(v) {
                Ok(kv) => kv,
                Err(e) => {
                    bad = Some(format!("bad value at revision {}: {e}", rev.main));
                    return false;
                }
            };
            let ki = index.entry(kv.key.into_boxed_slice()).or_default();
            if tombstone {
                ki.tombstone(rev);
            } else {
                ki.put(rev);
            }
            max_rev = max_rev.max(rev.main);
            true
        })?;
        if let Some(b) = bad {
            return Err(crate::storage::StorageError::Corrupt(b).into());
        }
        let current_rev = read_i64(&*backend, meta::CURRENT_REV)?.unwrap_or(1).max(max_rev);
        let compact_rev = read_i64(&*backend, meta::COMPACT_REV)?.unwrap_or(-1);
        if compact_rev > 0 {
            let mut keep = HashSet::new();
            index.retain(|_, ki| {
                ki.compact(compact_rev, &mut keep);
                !ki.is_empty()
            });
        }
        let state = State { index, current_rev, compact_rev, pending: HashMap::new(), events: Vec::new(), live_bytes };
        Ok(KvStore { backend, state: RwLock::new(state) })
    }

    /// Rebuilds the in-memory index from storage (after a snapshot replaced the key space).
    pub fn reload(&self) -> Result<()> {
        let fresh = KvStore::open(self.backend.clone())?;
        let state = fresh.state.into_inner().unwrap_or_else(|e| e.into_inner());
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
        Ok(())
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes of the backend in use (etcd's `dbSizeInUse`): its size on disk less the share of what
    /// compactions deleted and no defragment has reclaimed yet, in proportion to the live revisions.
    /// Right after a restart nothing is known to be reclaimable: the whole size is in use.
    pub fn db_size_in_use(&self) -> u64 {
        let on_disk = self.backend.size_on_disk();
        let reclaimable = self.backend.reclaimable();
        if reclaimable == 0 {
            return on_disk;
        }
        let live = self.read_state().live_bytes;
        (on_disk as u128 * live as u128 / (live as u128 + reclaimable as u128)) as u64
    }

    pub fn current_rev(&self) -> i64 {
        self.read_state().current_rev
    }

    pub fn compact_rev(&self) -> i64 {
        self.read_state().compact_rev
    }

    /// Reads keys as of `opts.rev`.
    pub fn range(&self, kr: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        let st = self.read_state();
        let cur = st.current_rev;
        self.range_in(&st, kr, opts, cur)
    }

    fn range_in(&self, st: &State, kr: &KeyRange, opts: RangeOptions, cur: i64) -> Result<RangeResult> {
        let rev = if opts.rev <= 0 { cur } else { opts.rev };
        if rev > cur {
            return Err(Error::FutureRev);
        }
        if rev < st.compact_rev {
            return Err(Error::Compacted);
        }
        let mut revs = Vec::new();
        if let Some(bounds) = kr.bounds() {
            for (_, ki) in st.index.range::<[u8], _>(bounds) {
                if let Some(at) = ki.get(rev) {
                    revs.push(at.modified);
                }
            }
        }
        let count = revs.len();
        if opts.count_only {
            return Ok(RangeResult { kvs: vec![], rev: cur, count });
        }
        if opts.limit > 0 && revs.len() > opts.limit {
            revs.truncate(opts.limit);
        }
        let kvs = self.values(st, &revs)?;
        Ok(RangeResult { kvs, rev: cur, count })
    }

    /// The stored key-values of live (non-tombstone) revisions.
    fn values(&self, st: &State, revs: &[Revision]) -> Result<Vec<KeyValue>> {
        let mut out = vec![None; revs.len()];
        let mut missing = Vec::new();
        for (i, r) in revs.iter().enumerate() {
            match st.pending.get(r) {
                Some(enc) => out[i] = Some(decode(enc)?),
                None => missing.push(i),
            }
        }
        if !missing.is_empty() {
            let keys: Vec<Vec<u8>> = missing.iter().map(|&i| revs[i].to_bytes(false)).collect();
            for (i, v) in missing.into_iter().zip(self.backend.multi_get(Cf::Kv, &keys)?) {
                let v =
                    v.ok_or_else(|| Error::Internal(format!("mvcc: revision {:?} missing from storage", revs[i])))?;
                out[i] = Some(decode(&v)?);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Starts a read of the store as it is now: every range inside it sees this revision, whatever is
    /// applied meanwhile (etcd's read txn).
    pub fn read(&self) -> ReadTxn<'_> {
        ReadTxn { store: self, rev: self.current_rev() }
    }

    /// Starts the write transaction that makes the next revision. Only the apply layer writes.
    pub fn write<'a>(&'a self, batch: &'a mut WriteBatch) -> WriteTxn<'a> {
        let main = self.read_state().current_rev + 1;
        WriteTxn { store: self, batch, main, sub: 0 }
    }

    /// Writes a batch of applied changes to the backend; their values stop being held in memory.
    /// Returns the changes committed since the last call, for watchers.
    pub fn commit(&self, batch: WriteBatch, sync: bool) -> Result<Vec<Event>> {
        self.flush(batch, sync)?;
        Ok(std::mem::take(&mut self.write_state().events))
    }

    fn flush(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        if !batch.is_empty() {
            self.backend.write(batch, sync)?;
        }
        self.write_state().pending.clear();
        Ok(())
    }

    /// The changes in revisions `[from, to]` (tombstones as delete events, keyed by their revision's
    /// key), read from the backend, in revision order. Callers check `from` against the compacted
    /// revision first.
    pub fn history(&self, from: i64, to: i64, mut visit: impl FnMut(Event) -> bool) -> Result<()> {
        let start = Revision::new(from, 0).to_bytes(false);
        let end = Revision::new(to.saturating_add(1), 0).to_bytes(false);
        let mut bad = None;
        self.backend.scan(Cf::Kv, &start, Some(&end), &mut |k, v| {
            let Some((rev, tombstone)) = Revision::from_bytes(k) else { return true };
            match KeyValue::decode(v) {
                Ok(mut kv) => {
                    let kind = if tombstone {
                        kv.mod_revision = rev.main;
                        EventType::Delete
                    } else {
                        EventType::Put
                    };
                    visit(Event { r#type: kind as i32, kv: Some(kv), prev_kv: None })
                }
                Err(e) => {
                    bad = Some(e);
                    false
                }
            }
        })?;
        match bad {
            Some(e) => Err(Error::Internal(format!("mvcc: bad stored value: {e}"))),
            None => Ok(()),
        }
    }

    /// etcd's HashKV: CRC-32C over `"key"` (the name of etcd's key bucket), then every stored (revision
    /// key, encoded value) pair up to revision `rev` (0: the current one), in revision order, except
    /// those at or below the compacted revision that a compaction at `rev` would drop (as etcd, which
    /// asks its key index what it would keep). Returns the hash, the current and the compacted revision. It reads the backend under the index's read lock once no applied
    /// change is waiting to be written (writes wait meanwhile).
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64)> {
        let st = loop {
            let st = self.read_state();
            if st.pending.is_empty() {
                break st;
            }
            drop(st);
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        let (current, compacted) = (st.current_rev, st.compact_rev);
        if rev > 0 && rev <= compacted {
            return Err(Error::Compacted);
        }
        if rev > current {
            return Err(Error::FutureRev);
        }
        let upto = if rev == 0 { current } else { rev };
        let mut keep = HashSet::new();
        for ki in st.index.values() {
            ki.clone().compact(upto, &mut keep);
        }
        let end = Revision::new(upto + 1, 0).to_bytes(false);
        let mut hash = crc32c::crc32c(b"key");
        self.backend.scan(Cf::Kv, &[], Some(&end), &mut |k, v| {
            let dropped = Revision::from_bytes(k)
                .is_some_and(|(r, _)| r.main <= compacted && !keep.is_empty() && !keep.contains(&r));
            if !dropped {
                hash = crc32c::crc32c_append(crc32c::crc32c_append(hash, k), v);
            }
            true
        })?;
        Ok((hash, current, compacted))
    }

    /// Compacts history before `rev`. The caller's batch (earlier applied changes) is committed first.
    pub fn compact(&self, rev: i64, batch: &mut WriteBatch) -> Result<()> {
        {
            let st = self.read_state();
            if rev <= st.compact_rev {
                return Err(Error::Compacted);
            }
            if rev > st.current_rev {
                return Err(Error::FutureRev);
            }
        }
        self.flush(std::mem::take(batch), false)?;
        let mut keep = HashSet::new();
        {
            let mut st = self.write_state();
            st.index.retain(|_, ki| {
                ki.compact(rev, &mut keep);
                !ki.is_empty()
            });
            st.compact_rev = rev;
        }
        let end = Revision::new(rev + 1, 0).to_bytes(false);
        let mut doomed = Vec::new();
        let mut freed = 0u64;
        self.backend.scan(Cf::Kv, &[], Some(&end), &mut |k, v| {
            if let Some((r, _)) = Revision::from_bytes(k) {
                if !keep.contains(&r) {
                    doomed.push(k.to_vec());
                    freed += (k.len() + v.len()) as u64;
                }
            }
            true
        })?;
        for k in doomed {
            batch.delete(Cf::Kv, k);
        }
        batch.reclaims += freed;
        fail::fail_point!("mvcc::compaction_mid", |_| Err(Error::Internal("failpoint mvcc::compaction_mid".into())));
        let mut st = self.write_state();
        st.live_bytes = st.live_bytes.saturating_sub(freed);
        drop(st);
        batch.put(Cf::Meta, meta::COMPACT_REV, meta::encode_u64(rev as u64));
        Ok(())
    }
}

fn decode(b: &[u8]) -> Result<KeyValue> {
    KeyValue::decode(b).map_err(|e| Error::Internal(format!("mvcc: bad stored value: {e}")))
}

/// What reads see: a [`ReadTxn`] at one revision, or a [`WriteTxn`] (which sees its own writes).
pub trait ReadView {
    /// Reads keys as of `opts.rev` (0 or less: [`ReadView::rev`]).
    fn range(&self, kr: &KeyRange, opts: RangeOptions) -> Result<RangeResult>;
    /// The revision reads see.
    fn rev(&self) -> i64;
    /// The oldest revision still readable.
    fn compact_rev(&self) -> i64;
}

/// A read of the store at one revision (from [`KvStore::read`]).
pub struct ReadTxn<'a> {
    store: &'a KvStore,
    rev: i64,
}

impl ReadView for ReadTxn<'_> {
    fn range(&self, kr: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        let st = self.store.read_state();
        self.store.range_in(&st, kr, opts, self.rev)
    }

    fn rev(&self) -> i64 {
        self.rev
    }

    fn compact_rev(&self) -> i64 {
        self.store.compact_rev()
    }
}

impl ReadView for WriteTxn<'_> {
    fn range(&self, kr: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        WriteTxn::range(self, kr, opts)
    }

    fn rev(&self) -> i64 {
        self.read_rev()
    }

    fn compact_rev(&self) -> i64 {
        self.store_compact_rev()
    }
}

/// The changes that make one revision. Reads inside it see its own earlier writes.
pub struct WriteTxn<'a> {
    store: &'a KvStore,
    batch: &'a mut WriteBatch,
    main: i64,
    sub: i64,
}

impl WriteTxn<'_> {
    /// The revision reads inside this transaction see: the one it makes once it changed something.
    pub fn read_rev(&self) -> i64 {
        if self.sub > 0 {
            self.main
        } else {
            self.main - 1
        }
    }

    pub fn store_compact_rev(&self) -> i64 {
        self.store.compact_rev()
    }

    pub fn range(&self, kr: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        let st = self.store.read_state();
        let mut res = self.store.range_in(&st, kr, opts, self.read_rev())?;
        res.rev = self.read_rev();
        Ok(res)
    }

    pub fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) {
        let rev = Revision::new(self.main, self.sub);
        let mut st = self.store.write_state();
        // The key's name is copied only when it is new (most puts change a key that exists).
        if !st.index.contains_key(key) {
            st.index.insert(key.into(), KeyIndex::default());
        }
        let ki = st.index.get_mut(key).expect("inserted above");
        let (create_revision, version) = match ki.get(self.main) {
            Some(at) => (at.created.main, at.version + 1),
            None => (self.main, 1),
        };
        ki.put(rev);
        let kv = KeyValue { key: key.to_vec(), create_revision, mod_revision: self.main, version, value, lease };
        let enc = kv.encode_to_vec();
        let stored = rev.to_bytes(false);
        st.live_bytes += (stored.len() + enc.len()) as u64;
        self.batch.put(Cf::Kv, stored, enc.clone());
        st.pending.insert(rev, enc);
        st.events.push(Event { r#type: EventType::Put as i32, kv: Some(kv), prev_kv: None });
        self.sub += 1;
    }

    /// Deletes the live keys in `kr`; returns them.
    pub fn delete_range(&mut self, kr: &KeyRange) -> Vec<Vec<u8>> {
        let Some(bounds) = kr.bounds() else { return vec![] };
        let at = self.main;
        let mut st = self.store.write_state();
        let keys: Vec<Vec<u8>> =
            st.index.range::<[u8], _>(bounds).filter(|(_, ki)| ki.get(at).is_some()).map(|(k, _)| k.to_vec()).collect();
        for key in &keys {
            let rev = Revision::new(self.main, self.sub);
            if let Some(ki) = st.index.get_mut(key.as_slice()) {
                ki.tombstone(rev);
            }
            let enc = KeyValue { key: key.clone(), ..Default::default() }.encode_to_vec();
            let stored = rev.to_bytes(true);
            st.live_bytes += (stored.len() + enc.len()) as u64;
            self.batch.put(Cf::Kv, stored, enc.clone());
            st.pending.insert(rev, enc);
            let kv = KeyValue { key: key.clone(), mod_revision: self.main, ..Default::default() };
            st.events.push(Event { r#type: EventType::Delete as i32, kv: Some(kv), prev_kv: None });
            self.sub += 1;
        }
        keys
    }

    /// Ends the transaction; returns the store's revision after it.
    pub fn end(self) -> i64 {
        let mut st = self.store.write_state();
        if self.sub > 0 {
            st.current_rev = self.main;
            self.batch.put(Cf::Meta, meta::CURRENT_REV, meta::encode_u64(self.main as u64));
        }
        st.current_rev
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::RocksDb;

    fn open(dir: &std::path::Path) -> KvStore {
        KvStore::open(Arc::new(RocksDb::open(dir).unwrap())).unwrap()
    }

    fn put(s: &KvStore, k: &str, v: &str) -> i64 {
        let mut b = WriteBatch::default();
        let mut t = s.write(&mut b);
        t.put(k.as_bytes(), v.as_bytes().to_vec(), 0);
        let rev = t.end();
        s.commit(b, false).unwrap();
        rev
    }

    fn get(s: &KvStore, k: &str, rev: i64) -> Result<Option<(String, i64, i64, i64)>> {
        let r = s.range(&KeyRange::single(k.as_bytes()), RangeOptions { rev, ..Default::default() })?;
        Ok(r.kvs
            .first()
            .map(|kv| (String::from_utf8(kv.value.clone()).unwrap(), kv.create_revision, kv.mod_revision, kv.version)))
    }

    #[test]
    fn revisions_versions_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        assert_eq!(s.current_rev(), 1);
        assert_eq!(put(&s, "a", "1"), 2);
        assert_eq!(put(&s, "a", "2"), 3);
        assert_eq!(put(&s, "b", "x"), 4);
        assert_eq!(get(&s, "a", 0).unwrap(), Some(("2".into(), 2, 3, 2)));
        assert_eq!(get(&s, "a", 2).unwrap(), Some(("1".into(), 2, 2, 1)));
        assert_eq!(get(&s, "b", 3).unwrap(), None);
        assert_eq!(get(&s, "a", 5), Err(Error::FutureRev));

        let mut b = WriteBatch::default();
        let mut t = s.write(&mut b);
        assert_eq!(t.delete_range(&KeyRange::new(b"a", b"c")), vec![b"a".to_vec(), b"b".to_vec()]);
        t.put(b"a", b"3".to_vec(), 0);
        assert_eq!(t.range(&KeyRange::single(b"a"), RangeOptions::default()).unwrap().kvs[0].version, 1);
        assert_eq!(t.end(), 5);
        s.commit(b, false).unwrap();
        assert_eq!(get(&s, "a", 0).unwrap(), Some(("3".into(), 5, 5, 1)));
        assert_eq!(get(&s, "b", 0).unwrap(), None);

        let mut b = WriteBatch::default();
        let mut t = s.write(&mut b);
        assert!(t.delete_range(&KeyRange::single(b"nope")).is_empty());
        assert_eq!(t.end(), 5, "deleting nothing does not bump the revision");
    }

    #[test]
    fn compaction_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            for i in 0..5 {
                put(&s, "k", &i.to_string()); // revs 2..=6
            }
            put(&s, "other", "o"); // 7
            let mut b = WriteBatch::default();
            s.compact(4, &mut b).unwrap();
            s.commit(b, true).unwrap();
            assert_eq!(get(&s, "k", 3), Err(Error::Compacted));
            assert_eq!(get(&s, "k", 4).unwrap(), Some(("2".into(), 2, 4, 3)));
            let mut b = WriteBatch::default();
            assert_eq!(s.compact(4, &mut b), Err(Error::Compacted));
            assert_eq!(s.compact(8, &mut b), Err(Error::FutureRev));
        }
        let s = open(dir.path());
        assert_eq!(s.current_rev(), 7);
        assert_eq!(s.compact_rev(), 4);
        assert_eq!(get(&s, "k", 0).unwrap(), Some(("4".into(), 2, 6, 5)));
        assert_eq!(get(&s, "k", 4).unwrap(), Some(("2".into(), 2, 4, 3)));
        let all = s.range(&KeyRange::new(b"\0", b"\0"), RangeOptions { limit: 1, ..Default::default() }).unwrap();
        assert_eq!((all.kvs.len(), all.count, all.rev), (1, 2, 7));
    }
}

//! [`RaftLog`]: raft-rs's [`Storage`]: entries and hard state in the write-ahead log ([`super::wal`]), the
//! conf state and the point the log was truncated at in the [`Backend`] beside the state machine.
//!
//! Only the raft task changes it (through `RawNode::mut_store`): entries and hard states are buffered by
//! [`RaftLog::append`] and [`RaftLog::set_hard_state`] and made durable by [`RaftLog::persist`]; the
//! in-memory view is updated at once, which is safe because raft-rs reads the log only from the same task,
//! after the Ready's persist. A data dir of an older modkv, whose log was in the backend, has it moved to
//! the write-ahead log when opened.
//!
//! Order of durable writes where the two stores meet: a compaction records the truncation point in the
//! backend (synced, which also makes every applied entry's state durable) before the log drops entries;
//! a snapshot from the leader is installed in the backend (synced) before the log is reset to it.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError as RaftStorageError};

use super::wal::Wal;
use crate::storage::{Backend, Cf, StorageError, WriteBatch, WriteObserver};

/// Keys of the backend's raft state column family. `hard_state` is only read, from a data dir whose log
/// was still in the backend.
const HARD_STATE: &[u8] = b"hard_state";
const CONF_STATE: &[u8] = b"conf_state";
/// Index and term of the last entry removed from the log by compaction (or a snapshot).
const TRUNCATED: &[u8] = b"truncated";
/// Recent entries kept in memory so the common path (commit, send to followers) never reads the disk.
const CACHE_ENTRIES: usize = 4096;

pub struct RaftLog {
    backend: Arc<dyn Backend>,
    wal: Wal,
    hard_state: HardState,
    conf_state: ConfState,
    truncated_index: u64,
    truncated_term: u64,
    /// Entries `cache[0].index ..= last_index`, a suffix of the log.
    cache: VecDeque<Entry>,
    /// The last snapshot made for a lagging peer, and when: peers that ask soon after share it.
    last_snapshot: std::cell::RefCell<Option<(Snapshot, std::time::Instant)>>,
}

/// A snapshot made for a peer is given to later requests for this long.
const SNAPSHOT_REUSE: std::time::Duration = std::time::Duration::from_secs(10);

fn entry_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("raft {what}: {e}"))
}

fn other(e: StorageError) -> raft::Error {
    raft::Error::Store(RaftStorageError::Other(Box::new(e)))
}

impl RaftLog {
    /// Loads the log: its write-ahead log in `wal_dir` (made on a new data dir, or from the log an older
    /// modkv kept in `backend`), the rest from `backend`. `observer` times the log's fsyncs.
    pub fn open(
        backend: Arc<dyn Backend>,
        wal_dir: &Path,
        observer: Option<Arc<dyn WriteObserver>>,
    ) -> Result<RaftLog, StorageError> {
        let conf_state = match backend.get(Cf::RaftState, CONF_STATE)? {
            Some(b) => ConfState::parse_from_bytes(&b).map_err(|e| corrupt("conf state", e))?,
            None => ConfState::default(),
        };
        let (truncated_index, truncated_term) = match backend.get(Cf::RaftState, TRUNCATED)? {
            Some(b) if b.len() == 16 => (
                u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
                u64::from_be_bytes(b[8..].try_into().expect("8 bytes")),
            ),
            Some(_) => return Err(corrupt("truncated state", "bad length")),
            None => (0, 0),
        };
        let (wal, hard_state) = if Wal::exists(wal_dir) {
            let r = Wal::open(wal_dir, (truncated_index, truncated_term), observer)?;
            (r.wal, r.hard_state.unwrap_or_default())
        } else {
            // A new log, or the log of an older modkv still in the backend: it moves to the new
            // write-ahead log, which is made whole before the backend's copy goes.
            let hs = match backend.get(Cf::RaftState, HARD_STATE)? {
                Some(b) => HardState::parse_from_bytes(&b).map_err(|e| corrupt("hard state", e))?,
                None => HardState::default(),
            };
            let entries = old_entries(&*backend, truncated_index + 1)?;
            if !entries.is_empty() {
                tracing::info!(entries = entries.len(), "moving the raft log to its write-ahead log");
            }
            let wal = Wal::create(wal_dir, truncated_index + 1, &entries, &hs, observer)?;
            (wal, hs)
        };
        // What an older modkv kept in the backend (gone once moved; also after a crash while moving).
        if backend.get(Cf::RaftState, HARD_STATE)?.is_some() || backend.last(Cf::RaftLog)?.is_some() {
            let mut batch = WriteBatch::default();
            batch.delete(Cf::RaftState, HARD_STATE);
            batch.delete_range(Cf::RaftLog, entry_key(0).to_vec(), entry_key(u64::MAX).to_vec());
            backend.write(batch, true)?;
        }
        let mut log = RaftLog {
            backend,
            wal,
            hard_state,
            conf_state,
            truncated_index,
            truncated_term,
            cache: VecDeque::new(),
            last_snapshot: std::cell::RefCell::new(None),
        };
        // Warm the cache with the tail of the log.
        let last = log.last_index();
        let from = last.saturating_sub(CACHE_ENTRIES as u64).max(truncated_index) + 1;
        if from <= last {
            log.cache = log.wal.entries(from, last + 1)?.into();
        }
        Ok(log)
    }

    /// Whether the log has never been initialised (a new member).
    pub fn is_new(&self) -> bool {
        self.conf_state.voters.is_empty() && self.conf_state.learners.is_empty() && self.last_index() == 0
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    pub fn last_index(&self) -> u64 {
        self.wal.last_index().max(self.truncated_index)
    }

    /// Adds entries to the log, replacing any conflicting suffix (durable after [`RaftLog::persist`]).
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else { return Ok(()) };
        let first_index = first.index;
        while self.cache.back().is_some_and(|e| e.index >= first_index) {
            self.cache.pop_back();
        }
        if self.cache.back().is_some_and(|e| e.index + 1 != first_index) {
            self.cache.clear();
        }
        for e in entries {
            self.wal.append(e)?;
            self.cache.push_back(e.clone());
        }
        while self.cache.len() > CACHE_ENTRIES {
            self.cache.pop_front();
        }
        Ok(())
    }

    /// Records a new hard state (durable after [`RaftLog::persist`]).
    pub fn set_hard_state(&mut self, hs: HardState) -> Result<(), StorageError> {
        self.wal.set_hard_state(&hs)?;
        self.hard_state = hs;
        Ok(())
    }

    /// Records a new commit index. Not worth an fsync of its own: it goes with the next durable write (a
    /// commit index can be learnt again from the leader, and is raised to the applied index at start).
    pub fn set_commit(&mut self, commit: u64) -> Result<(), StorageError> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(hs)
    }

    /// Writes what was appended and recorded since the last call, and makes it durable.
    pub fn persist(&mut self) -> Result<(), StorageError> {
        self.wal.flush()
    }

    pub fn set_conf_state(&mut self, cs: ConfState, batch: &mut WriteBatch) {
        batch.put(Cf::RaftState, CONF_STATE, cs.write_to_bytes().expect("conf state encodes"));
        self.conf_state = cs;
    }

    /// Drops entries up to and including `index` (which must be applied): the truncation point is
    /// recorded in the backend with a sync (so the state those entries made is durable too), then the
    /// write-ahead log forgets them and deletes the segments that held only them.
    pub fn compact(&mut self, index: u64) -> Result<(), raft::Error> {
        if index <= self.truncated_index {
            return Ok(());
        }
        let index = index.min(self.last_index());
        let term = self.term(index)?;
        let mut batch = WriteBatch::default();
        put_truncated(&mut batch, index, term);
        self.backend.write(batch, true).map_err(other)?;
        self.truncated_index = index;
        self.truncated_term = term;
        self.wal.compact(index).map_err(other)?;
        while self.cache.front().is_some_and(|e| e.index <= index) {
            self.cache.pop_front();
        }
        Ok(())
    }

    pub fn truncated_index(&self) -> u64 {
        self.truncated_index
    }

    /// Replaces the log by a snapshot received from the leader: `batch`, written by the apply layer with
    /// the snapshot's state, records the truncation point and configuration; once it is durable,
    /// [`RaftLog::finish_snapshot`] resets the write-ahead log. No entries, commit at least its index.
    pub fn apply_snapshot(&mut self, meta: &SnapshotMetadata, batch: &mut WriteBatch) {
        put_truncated(batch, meta.index, meta.term);
        self.truncated_index = meta.index;
        self.truncated_term = meta.term;
        self.cache.clear();
        self.set_conf_state(meta.get_conf_state().clone(), batch);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.hard_state.term = self.hard_state.term.max(meta.term);
    }

    /// The write-ahead log after a snapshot's state is durable: empty after the snapshot, with the hard
    /// state [`RaftLog::apply_snapshot`] made.
    pub fn finish_snapshot(&mut self, meta: &SnapshotMetadata) -> Result<(), StorageError> {
        let hs = self.hard_state.clone();
        self.wal.reset(meta.index, meta.term, &hs)
    }
}

/// Records where the log was cut: index and term, big endian (what [`RaftLog::open`] reads back).
fn put_truncated(batch: &mut WriteBatch, index: u64, term: u64) {
    batch.put(Cf::RaftState, TRUNCATED, [index.to_be_bytes(), term.to_be_bytes()].concat());
}

/// The entries an older modkv kept in the backend, from `from` on.
fn old_entries(backend: &dyn Backend, from: u64) -> Result<Vec<Entry>, StorageError> {
    let mut out = Vec::new();
    let mut bad = None;
    backend.scan(Cf::RaftLog, &entry_key(from), None, &mut |_, v| match Entry::parse_from_bytes(v) {
        Ok(e) => {
            out.push(e);
            true
        }
        Err(e) => {
            bad = Some(corrupt("entry", e));
            false
        }
    })?;
    match bad {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

impl Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.truncated_index {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if high > self.last_index() + 1 {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        let max = max_size.into().unwrap_or(u64::MAX);
        let mut ents = Vec::new();
        let mut size = 0u64;
        for index in low..high {
            let e = match self.cache.front() {
                Some(f) if f.index <= index => self.cache[(index - f.index) as usize].clone(),
                _ => self.wal.entry(index).map_err(other)?,
            };
            size += e.compute_size() as u64;
            if !ents.is_empty() && size > max {
                break;
            }
            ents.push(e);
        }
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated_index {
            return Ok(self.truncated_term);
        }
        if idx < self.truncated_index {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if idx > self.last_index() {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        if let Some(f) = self.cache.front() {
            if f.index <= idx {
                return Ok(self.cache[(idx - f.index) as usize].term);
            }
        }
        self.wal.term(idx).ok_or(raft::Error::Store(RaftStorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(RaftLog::last_index(self))
    }

    /// The state machine for a peer the log cannot catch up: read from one RocksDB snapshot at its
    /// applied index (every entry up to it is applied, none after), with the current configuration.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        if let Some((s, at)) = &*self.last_snapshot.borrow() {
            if s.get_metadata().index >= request_index && at.elapsed() < SNAPSHOT_REUSE {
                return Ok(s.clone());
            }
        }
        let (data, applied) = crate::storage::snapshot::encode(&*self.backend).map_err(other)?;
        if applied < request_index || applied <= self.truncated_index.saturating_sub(1) {
            return Err(raft::Error::Store(RaftStorageError::SnapshotTemporarilyUnavailable));
        }
        let term = self.term(applied)?;
        let mut snap = Snapshot::default();
        snap.data = data.into();
        let m = snap.mut_metadata();
        m.index = applied;
        m.term = term;
        m.set_conf_state(self.conf_state.clone());
        tracing::info!(
            index = applied,
            term,
            to = format_args!("{to:x}"),
            bytes = snap.data.len(),
            "made a snapshot for a peer"
        );
        *self.last_snapshot.borrow_mut() = Some((snap.clone(), std::time::Instant::now()));
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::RocksDb;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, data: format!("e{index}").into_bytes().into(), ..Default::default() }
    }

    fn indexes(ents: &[Entry]) -> Vec<u64> {
        ents.iter().map(|e| e.index).collect()
    }

    #[test]
    fn append_truncate_compact_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        let backend: Arc<dyn Backend> = Arc::new(RocksDb::open(&dir.path().join("db")).unwrap());
        {
            let mut log = RaftLog::open(backend.clone(), &wal, None).unwrap();
            assert!(log.is_new());
            log.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>()).unwrap();
            // A new leader overwrites the tail from index 8.
            log.append(&[entry(8, 2), entry(9, 2)]).unwrap();
            log.set_hard_state(HardState { term: 2, commit: 9, ..Default::default() }).unwrap();
            log.persist().unwrap();
            assert_eq!(log.last_index(), 9);
            assert_eq!(log.term(8).unwrap(), 2);
            // Buffered, never persisted: lost with the process, as it may be.
            log.set_commit(9).unwrap();
        }
        let mut log = RaftLog::open(backend.clone(), &wal, None).unwrap();
        assert_eq!(log.last_index(), 9);
        assert_eq!(log.hard_state().commit, 9);
        assert_eq!(log.term(9).unwrap(), 2);
        let ents = log.entries(2, 5, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(indexes(&ents), vec![2, 3, 4]);
        // A size limit keeps at least one entry.
        assert_eq!(log.entries(2, 9, Some(1), GetEntriesContext::empty(false)).unwrap().len(), 1);
        log.compact(5).unwrap();
        drop(log);
        let log = RaftLog::open(backend, &wal, None).unwrap();
        assert_eq!(log.first_index().unwrap(), 6);
        assert_eq!(log.term(5).unwrap(), 1);
        assert!(log.entries(4, 6, None, GetEntriesContext::empty(false)).is_err());
        assert_eq!(indexes(&log.entries(6, 10, None, GetEntriesContext::empty(false)).unwrap()), vec![6, 7, 8, 9]);
    }

    #[test]
    fn a_log_kept_in_the_backend_moves_to_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(RocksDb::open(&dir.path().join("db")).unwrap());
        // The layout of an older modkv: entries 4..=7 (3 compacted away) and the hard state in the backend.
        let mut b = WriteBatch::default();
        for i in 1..=7 {
            b.put(Cf::RaftLog, entry_key(i).to_vec(), entry(i, 1).write_to_bytes().unwrap());
        }
        b.delete_range(Cf::RaftLog, entry_key(0).to_vec(), entry_key(4).to_vec());
        b.put(Cf::RaftState, TRUNCATED, [3u64.to_be_bytes(), 1u64.to_be_bytes()].concat());
        let hs = HardState { term: 1, vote: 1, commit: 6, ..Default::default() };
        b.put(Cf::RaftState, HARD_STATE, hs.write_to_bytes().unwrap());
        backend.write(b, true).unwrap();
        let wal = dir.path().join("wal");
        for _ in 0..2 {
            let log = RaftLog::open(backend.clone(), &wal, None).unwrap();
            assert_eq!((log.first_index().unwrap(), log.last_index()), (4, 7));
            assert_eq!(log.hard_state(), &hs);
            assert_eq!(indexes(&log.entries(4, 8, None, GetEntriesContext::empty(false)).unwrap()), vec![4, 5, 6, 7]);
            assert!(backend.last(Cf::RaftLog).unwrap().is_none());
            assert!(backend.get(Cf::RaftState, HARD_STATE).unwrap().is_none());
        }
    }

    #[test]
    fn a_snapshot_resets_the_log_even_if_the_reset_was_lost() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        let backend: Arc<dyn Backend> = Arc::new(RocksDb::open(&dir.path().join("db")).unwrap());
        let mut log = RaftLog::open(backend.clone(), &wal, None).unwrap();
        log.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>()).unwrap();
        log.persist().unwrap();
        let mut meta = SnapshotMetadata { index: 20, term: 3, ..Default::default() };
        meta.mut_conf_state().voters = vec![1];
        let mut batch = WriteBatch::default();
        log.apply_snapshot(&meta, &mut batch);
        backend.write(batch, true).unwrap();
        // The member stops before the write-ahead log is reset: the backend's truncation point wins.
        drop(log);
        let mut log = RaftLog::open(backend.clone(), &wal, None).unwrap();
        assert_eq!((log.first_index().unwrap(), log.last_index()), (21, 20));
        assert_eq!(log.term(20).unwrap(), 3);
        log.finish_snapshot(&meta).unwrap();
        log.append(&[entry(21, 3)]).unwrap();
        log.persist().unwrap();
        drop(log);
        let log = RaftLog::open(backend, &wal, None).unwrap();
        assert_eq!((log.first_index().unwrap(), log.last_index()), (21, 21));
        assert_eq!(log.conf_state().voters, vec![1]);
    }
}

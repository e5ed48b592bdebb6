//! [`RaftLog`]: raft-rs's [`Storage`] on the [`Backend`]: entries, hard state, conf state and the point
//! the log was truncated at.
//!
//! Only the raft task changes it (through `RawNode::mut_store`), always by filling a [`WriteBatch`] that
//! the task then writes with `sync = true`; the in-memory view is updated as the batch is filled, which
//! is safe because raft-rs reads the log only from the same task, after the batch is durable.

use std::collections::VecDeque;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError as RaftStorageError};

use crate::storage::{Backend, Cf, StorageError, WriteBatch};

const HARD_STATE: &[u8] = b"hard_state";
const CONF_STATE: &[u8] = b"conf_state";
/// Index and term of the last entry removed from the log by compaction (or a snapshot).
const TRUNCATED: &[u8] = b"truncated";
/// Recent entries kept in memory so the common path (commit, send to followers) never reads the disk.
const CACHE_ENTRIES: usize = 4096;

pub struct RaftLog {
    backend: Arc<dyn Backend>,
    hard_state: HardState,
    conf_state: ConfState,
    truncated_index: u64,
    truncated_term: u64,
    last_index: u64,
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
    /// Loads the log kept in `backend` (empty on a new data dir).
    pub fn open(backend: Arc<dyn Backend>) -> Result<RaftLog, StorageError> {
        let hard_state = match backend.get(Cf::RaftState, HARD_STATE)? {
            Some(b) => HardState::parse_from_bytes(&b).map_err(|e| corrupt("hard state", e))?,
            None => HardState::default(),
        };
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
        let last_index = match backend.last(Cf::RaftLog)? {
            Some((k, _)) => u64::from_be_bytes(k.as_slice().try_into().map_err(|e| corrupt("log key", e))?),
            None => truncated_index,
        }
        .max(truncated_index);
        let mut log = RaftLog {
            backend,
            hard_state,
            conf_state,
            truncated_index,
            truncated_term,
            last_index,
            cache: VecDeque::new(),
            last_snapshot: std::cell::RefCell::new(None),
        };
        // Warm the cache with the tail of the log.
        let from = last_index.saturating_sub(CACHE_ENTRIES as u64).max(truncated_index) + 1;
        if from <= last_index {
            log.cache = log.read_entries(from, last_index + 1)?.into();
        }
        Ok(log)
    }

    /// Whether the log has never been initialised (a new member).
    pub fn is_new(&self) -> bool {
        self.conf_state.voters.is_empty() && self.conf_state.learners.is_empty() && self.last_index == 0
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    fn read_entries(&self, low: u64, high: u64) -> Result<Vec<Entry>, StorageError> {
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut bad = None;
        self.backend.scan(Cf::RaftLog, &entry_key(low), Some(&entry_key(high)), &mut |_, v| {
            match Entry::parse_from_bytes(v) {
                Ok(e) => {
                    out.push(e);
                    true
                }
                Err(e) => {
                    bad = Some(corrupt("entry", e));
                    false
                }
            }
        })?;
        match bad {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Adds entries to the log, replacing any conflicting suffix.
    pub fn append(&mut self, entries: &[Entry], batch: &mut WriteBatch) {
        let Some(first) = entries.first() else { return };
        let first_index = first.index;
        if first_index <= self.last_index {
            batch.delete_range(Cf::RaftLog, entry_key(first_index).to_vec(), entry_key(self.last_index + 1).to_vec());
            while self.cache.back().is_some_and(|e| e.index >= first_index) {
                self.cache.pop_back();
            }
        }
        if self.cache.back().is_some_and(|e| e.index + 1 != first_index) {
            self.cache.clear();
        }
        for e in entries {
            batch.put(Cf::RaftLog, entry_key(e.index).to_vec(), e.write_to_bytes().expect("entry encodes"));
            self.cache.push_back(e.clone());
        }
        while self.cache.len() > CACHE_ENTRIES {
            self.cache.pop_front();
        }
        self.last_index = entries.last().map(|e| e.index).unwrap_or(self.last_index);
    }

    pub fn set_hard_state(&mut self, hs: HardState, batch: &mut WriteBatch) {
        batch.put(Cf::RaftState, HARD_STATE, hs.write_to_bytes().expect("hard state encodes"));
        self.hard_state = hs;
    }

    pub fn set_commit(&mut self, commit: u64, batch: &mut WriteBatch) {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(hs, batch);
    }

    pub fn set_conf_state(&mut self, cs: ConfState, batch: &mut WriteBatch) {
        batch.put(Cf::RaftState, CONF_STATE, cs.write_to_bytes().expect("conf state encodes"));
        self.conf_state = cs;
    }

    /// Drops entries up to and including `index` (which must be applied).
    pub fn compact(&mut self, index: u64, batch: &mut WriteBatch) -> Result<(), raft::Error> {
        if index <= self.truncated_index {
            return Ok(());
        }
        let index = index.min(self.last_index);
        let term = self.term(index)?;
        batch.delete_range(Cf::RaftLog, entry_key(0).to_vec(), entry_key(index + 1).to_vec());
        let mut t = index.to_be_bytes().to_vec();
        t.extend_from_slice(&term.to_be_bytes());
        batch.put(Cf::RaftState, TRUNCATED, t);
        self.truncated_index = index;
        self.truncated_term = term;
        while self.cache.front().is_some_and(|e| e.index <= index) {
            self.cache.pop_front();
        }
        Ok(())
    }

    pub fn truncated_index(&self) -> u64 {
        self.truncated_index
    }

    /// Replaces the log by a snapshot received from the leader (whose state the apply layer already
    /// installed): no entries, truncated at the snapshot, its configuration, commit at least its index.
    pub fn apply_snapshot(&mut self, meta: &SnapshotMetadata, batch: &mut WriteBatch) {
        batch.delete_range(Cf::RaftLog, entry_key(0).to_vec(), entry_key(u64::MAX).to_vec());
        let mut t = meta.index.to_be_bytes().to_vec();
        t.extend_from_slice(&meta.term.to_be_bytes());
        batch.put(Cf::RaftState, TRUNCATED, t);
        self.truncated_index = meta.index;
        self.truncated_term = meta.term;
        self.last_index = meta.index;
        self.cache.clear();
        self.set_conf_state(meta.get_conf_state().clone(), batch);
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        self.set_hard_state(hs, batch);
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
        if high > self.last_index + 1 {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        let mut ents = match self.cache.front() {
            Some(f) if f.index <= low => {
                let start = (low - f.index) as usize;
                self.cache.range(start..start + (high - low) as usize).cloned().collect()
            }
            _ => self.read_entries(low, high).map_err(other)?,
        };
        if let Some(max) = max_size.into() {
            let mut size = 0u64;
            let mut keep = 0;
            for e in &ents {
                size += e.compute_size() as u64;
                if keep > 0 && size > max {
                    break;
                }
                keep += 1;
            }
            ents.truncate(keep);
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
        if idx > self.last_index {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        if let Some(f) = self.cache.front() {
            if f.index <= idx {
                return Ok(self.cache[(idx - f.index) as usize].term);
            }
        }
        match self.backend.get(Cf::RaftLog, &entry_key(idx)).map_err(other)? {
            Some(b) => Ok(Entry::parse_from_bytes(&b).map_err(|e| other(corrupt("entry", e)))?.term),
            None => Err(raft::Error::Store(RaftStorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
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

    #[test]
    fn append_truncate_compact_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(RocksDb::open(dir.path()).unwrap());
        {
            let mut log = RaftLog::open(backend.clone()).unwrap();
            assert!(log.is_new());
            let mut b = WriteBatch::default();
            log.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>(), &mut b);
            // A new leader overwrites the tail from index 8.
            log.append(&[entry(8, 2), entry(9, 2)], &mut b);
            log.set_hard_state(HardState { term: 2, commit: 9, ..Default::default() }, &mut b);
            backend.write(b, true).unwrap();
            assert_eq!(log.last_index, 9);
            assert_eq!(log.term(8).unwrap(), 2);
        }
        let mut log = RaftLog::open(backend.clone()).unwrap();
        assert_eq!(log.last_index(), 9);
        assert_eq!(log.hard_state().commit, 9);
        assert_eq!(log.term(9).unwrap(), 2);
        let ents = log.entries(2, 5, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(ents.iter().map(|e| e.index).collect::<Vec<_>>(), vec![2, 3, 4]);
        let mut b = WriteBatch::default();
        log.compact(5, &mut b).unwrap();
        backend.write(b, true).unwrap();
        let log = RaftLog::open(backend).unwrap();
        assert_eq!(log.first_index().unwrap(), 6);
        assert_eq!(log.term(5).unwrap(), 1);
        assert!(log.entries(4, 6, None, GetEntriesContext::empty(false)).is_err());
        assert_eq!(log.entries(6, 10, None, GetEntriesContext::empty(false)).unwrap().len(), 4);
    }
}

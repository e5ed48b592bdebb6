//! The storage layer: one ordered, durable key-value [`Backend`] holding the MVCC key space and what the
//! raft log keeps beside its write-ahead log (`raft::wal`, files of its own under `<data-dir>/wal`).
//!
//! ```text
//!   raft::log  ──┐                      ┌─ Cf::RaftLog   (empty: where an older modkv kept entries)
//!                ├─ Backend (trait) ────┼─ Cf::RaftState (conf state, truncation point)
//!   mvcc / apply ┘    └ RocksDb          ├─ Cf::Kv        (revision → mvccpb.KeyValue)
//!                                        ├─ Cf::Meta      (applied index, current / compacted revision)
//!                                        ├─ Cf::Lease     (lease id → granted TTL)
//!                                        └─ Cf::Auth      (users, roles, enabled flag, auth revision)
//! ```
//!
//! Everything that must change together goes into one [`WriteBatch`]: the apply layer writes the applied
//! index in the same batch as the key-value changes it covers. The apply layer's writes are not synced:
//! after a crash the state machine may be behind its last applied entry, which the raft log still holds
//! (the log drops entries only after a synced write here has made their state durable).

pub mod data_dir;
mod rocks;
pub mod snapshot;

pub use rocks::RocksDb;

/// The column families of the store. Each is an independent ordered key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cf {
    RaftLog,
    RaftState,
    Kv,
    Meta,
    Lease,
    /// Auth state (etcd's `auth`, `authUsers` and `authRoles` buckets); created when missing, so a data
    /// dir from before it opens.
    Auth,
}

impl Cf {
    pub const ALL: [Cf; 6] = [Cf::RaftLog, Cf::RaftState, Cf::Kv, Cf::Meta, Cf::Lease, Cf::Auth];
    /// The state machine (etcd's backend database), without the raft log (etcd's WAL).
    pub const STATE: [Cf; 4] = [Cf::Kv, Cf::Meta, Cf::Lease, Cf::Auth];

    pub fn name(self) -> &'static str {
        match self {
            Cf::RaftLog => "raft_log",
            Cf::RaftState => "raft_state",
            Cf::Kv => "kv",
            Cf::Meta => "meta",
            Cf::Lease => "lease",
            Cf::Auth => "auth",
        }
    }
}

/// Storage failures. They are not part of etcd's client-facing vocabulary: a client sees them as an
/// internal error while the server logs the cause.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage: {0}")]
    Backend(String),
    #[error("storage: data corrupted: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// One change inside a [`WriteBatch`].
#[derive(Debug, Clone)]
pub enum Op {
    Put(Cf, Vec<u8>, Vec<u8>),
    Delete(Cf, Vec<u8>),
    /// Deletes keys in `[from, to)`.
    DeleteRange(Cf, Vec<u8>, Vec<u8>),
}

/// An atomic group of changes: all of them are visible after [`Backend::write`] returns, or none are.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub ops: Vec<Op>,
    /// Bytes of stored entries this batch deletes (mvcc compaction says): space a defragment would
    /// reclaim, for the in-use estimate (etcd's `dbSizeInUse`).
    pub reclaims: u64,
}

impl WriteBatch {
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(cf, key.into(), value.into()));
    }
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(cf, key.into()));
    }
    pub fn delete_range(&mut self, cf: Cf, from: impl Into<Vec<u8>>, to: impl Into<Vec<u8>>) {
        self.ops.push(Op::DeleteRange(cf, from.into(), to.into()));
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
        self.reclaims += other.reclaims;
    }
}

/// An ordered, durable key-value store with column families.
pub trait Backend: Send + Sync + 'static {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Values for several keys of one column family, in the order asked.
    fn multi_get(&self, cf: Cf, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>>;
    /// Visits keys in `[from, to)` (`to = None`: to the end) in order until `visit` returns `false`.
    fn scan(&self, cf: Cf, from: &[u8], to: Option<&[u8]>, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()>;
    /// The last key-value of a column family.
    fn last(&self, cf: Cf) -> Result<Option<(Vec<u8>, Vec<u8>)>>;
    /// Applies a batch atomically; with `sync` it is on stable storage (fsync) before this returns.
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()>;
    /// Bytes the state machine occupies on disk, live and not yet reclaimed (etcd's `dbSize`; the raft
    /// log is not counted, as etcd does not count its WAL).
    fn size_on_disk(&self) -> u64;
    /// Bytes of stored entries deleted (as batches said, [`WriteBatch::reclaims`]) since the space was
    /// last reclaimed by [`Backend::defragment`] or the backend was opened.
    fn reclaimable(&self) -> u64;
    /// Reclaims the space of deleted and overwritten data (etcd's defragment).
    fn defragment(&self) -> Result<()>;
    /// Makes everything written so far durable.
    fn flush(&self) -> Result<()>;
    /// Calls `f` with the state machine's column families ([`Cf::STATE`]) as of one point in time
    /// (concurrent writes are not seen, however long `f` takes and however often it scans).
    fn with_state_snapshot(&self, f: &mut dyn FnMut(&dyn StateSnapshot) -> Result<()>) -> Result<()>;
    /// Visits every key-value of the state machine's column families as of one point in time, column
    /// family by column family, keys in order.
    fn scan_state(&self, visit: &mut dyn FnMut(Cf, &[u8], &[u8])) -> Result<()> {
        self.with_state_snapshot(&mut |snap| {
            snap.scan(&mut |cf, k, v| {
                visit(cf, k, v);
                true
            })
        })
    }
}

/// The state machine frozen at one point in time (a RocksDB snapshot): it can be scanned several times
/// and always shows the same pairs, read from disk as the scan goes (nothing is held in memory).
pub trait StateSnapshot {
    /// Visits every key-value of [`Cf::STATE`], column family by column family, keys in order, until
    /// `visit` returns `false`.
    fn scan(&self, visit: &mut dyn FnMut(Cf, &[u8], &[u8]) -> bool) -> Result<()>;
}

/// Told how long each [`Backend::write`] took (the metrics' disk latency histograms); `sync` as the
/// write was asked.
pub trait WriteObserver: Send + Sync + 'static {
    fn observe_write(&self, sync: bool, elapsed: std::time::Duration);
}

/// Keys of the [`Cf::Meta`] column family.
pub mod meta {
    /// Index of the last raft entry applied to the key space (etcd's "consistent index").
    pub const APPLIED_INDEX: &[u8] = b"applied_index";
    /// The key space's current revision.
    pub const CURRENT_REV: &[u8] = b"current_rev";
    /// The revision of the last compaction.
    pub const COMPACT_REV: &[u8] = b"compact_rev";
    /// Identity of this member: member id, cluster id (8 bytes each, big endian).
    pub const MEMBER_ID: &[u8] = b"member_id";
    pub const CLUSTER_ID: &[u8] = b"cluster_id";
    /// The JSON-encoded member list.
    pub const MEMBERS: &[u8] = b"members";
    /// The JSON-encoded ids of members removed from the cluster (refused if they speak again).
    pub const REMOVED_MEMBERS: &[u8] = b"removed_members";
    /// The JSON-encoded raised alarms.
    pub const ALARMS: &[u8] = b"alarms";

    pub fn encode_u64(v: u64) -> Vec<u8> {
        v.to_be_bytes().to_vec()
    }

    pub fn decode_u64(b: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(b.try_into().ok()?))
    }
}

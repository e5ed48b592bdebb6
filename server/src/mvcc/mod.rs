//! The multi-version key space, with etcd's data model.
//!
//! ```text
//!   KvStore ── index: BTreeMap<key, KeyIndex>   (in memory: every key's revisions, rebuilt at open)
//!          └── backend Cf::Kv: Revision → mvccpb.KeyValue   (on disk: the value of every revision)
//! ```
//!
//! One cluster-wide revision counts changes: it is 1 on an empty store and every write transaction that
//! changes something takes the next one (several changes inside it are told apart by a sub-revision).
//! Each key carries `create_revision`, `mod_revision` and `version`; a delete writes a tombstone and ends
//! the key's generation. Reads at a past revision walk the index; compaction drops history before a
//! revision, from the index and from disk.
//!
//! Writes come only from the apply layer, through a [`WriteTxn`]; reads may come from anywhere, through a
//! [`ReadTxn`] that sees one revision. Both are a [`ReadView`], what the request evaluator (`apply::kv`)
//! reads from. Which keys a request addresses is a [`KeyRange`].

mod key_index;
mod key_range;
mod revision;
mod store;

pub use key_index::{KeyAt, KeyIndex};
pub use key_range::{IntervalSet, KeyRange};
pub use revision::Revision;
pub use store::{KvStore, RangeOptions, RangeResult, ReadTxn, ReadView, WriteTxn};

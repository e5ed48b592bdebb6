//! Snapshot files: backups of a member's key space, as etcd's `etcdctl snapshot save` takes them and
//! `etcdctl snapshot restore` (3.4; `etcdutl` later) puts them back.
//!
//! ```text
//!   etcdctl snapshot save F ──Maintenance.Snapshot──▶ file(): the state (storage::snapshot encoding,
//!                                                      one RocksDB snapshot) in the layout below
//!   modkv snapshot restore F --data-dir D ──▶ restore(): hash checked, a new data dir holding the keys
//!                                              (every revision), leases and the revision counters
//!   modkv --data-dir D --initial-cluster … ──▶ starts a new cluster on that data (each member of it
//!                                              restores the same file first, as with etcd)
//!   modkv snapshot status F ──▶ status(): hash, revision, total keys, total size
//! ```
//!
//! The file is modkv's own encoding, not etcd's bolt database: etcdctl saves it byte for byte, but it
//! is restored with `modkv snapshot restore`. Its layout keeps etcdctl's check that a download ends in
//! a SHA-256 trailer (etcdctl refuses a file whose size is not 32 more than a multiple of 512, a bolt
//! page size):
//!
//! ```text
//!   "modkv-snapshot\0\0" (16) | state length (u64 BE) | state | zeros to a multiple of 512 | SHA-256 of
//!   everything before it (32)
//! ```
//! What a restore leaves out is what belongs to the old
//! cluster: its member list and ids, its raft position (applied index) and its alarms.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::storage::snapshot::{decode, encode};
use crate::storage::{meta, Backend, Cf, RocksDb, WriteBatch};

/// Length of the SHA-256 trailer.
const HASH_LEN: usize = 32;
const MAGIC: &[u8; 16] = b"modkv-snapshot\0\0";
/// The header: magic and the state's length.
const HEADER_LEN: usize = MAGIC.len() + 8;
/// What the bytes before the trailer are padded to.
const BLOCK: usize = 512;
/// Meta keys a restore keeps: the revision counters. The rest is the old cluster's.
const RESTORED_META: [&[u8]; 2] = [meta::CURRENT_REV, meta::COMPACT_REV];

/// Why a snapshot file could not be read or restored (one line each).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("snapshot {path}: cannot read it: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("snapshot {path}: expected sha256 {expected}, got {actual} (the file is damaged or not a modkv snapshot; --skip-hash-check ignores this)")]
    Hash { path: String, expected: String, actual: String },
    #[error("snapshot {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("data-dir {path}: {reason}")]
    DataDir { path: String, reason: String },
}

/// The snapshot of `backend` as a file's bytes: the encoded state and its SHA-256.
pub fn file(backend: &dyn Backend) -> crate::storage::Result<Vec<u8>> {
    let (state, _) = encode(backend)?;
    let mut file = Vec::with_capacity(HEADER_LEN + state.len() + BLOCK + HASH_LEN);
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&(state.len() as u64).to_be_bytes());
    file.extend_from_slice(&state);
    file.resize(file.len().div_ceil(BLOCK) * BLOCK, 0);
    let hash: [u8; HASH_LEN] = Sha256::digest(&file).into();
    file.extend_from_slice(&hash);
    Ok(file)
}

/// What `modkv snapshot status` prints (etcdctl's `snapshot status -w json` field names).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// The first 4 bytes of the file's SHA-256, as a number.
    pub hash: u32,
    pub revision: i64,
    /// Key-value records, every revision of every key counted (as etcd counts its database's keys).
    #[serde(rename = "totalKey")]
    pub total_key: u64,
    #[serde(rename = "totalSize")]
    pub total_size: u64,
}

/// What a snapshot file holds.
struct Contents {
    pairs: Vec<(Cf, Vec<u8>, Vec<u8>)>,
    size: usize,
    hash: [u8; HASH_LEN],
}

/// The state in a snapshot file, its hash checked unless `skip_hash_check`.
fn read(path: &Path, skip_hash_check: bool) -> Result<Contents, BackupError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| BackupError::Read { path: name.clone(), source })?;
    if bytes.len() < HEADER_LEN + HASH_LEN || !bytes.starts_with(MAGIC) {
        return Err(BackupError::Invalid {
            path: name,
            reason: "not a modkv snapshot (etcd's snapshots are restored with etcdctl snapshot restore)".into(),
        });
    }
    let hash: [u8; HASH_LEN] = Sha256::digest(&bytes[..bytes.len() - HASH_LEN]).into();
    let invalid = |reason: String| BackupError::Invalid { path: name.clone(), reason };
    let trailer = &bytes[bytes.len() - HASH_LEN..];
    if hash != trailer && !skip_hash_check {
        return Err(BackupError::Hash { path: name, expected: hex(trailer), actual: hex(&hash) });
    }
    let len = u64::from_be_bytes(bytes[MAGIC.len()..HEADER_LEN].try_into().expect("8 bytes")) as usize;
    let state = bytes
        .get(HEADER_LEN..HEADER_LEN.saturating_add(len))
        .ok_or_else(|| invalid(format!("cut short: the state is {len} bytes, the file {}", bytes.len())))?;
    let pairs = decode(state).map_err(|e| invalid(e.to_string()))?;
    Ok(Contents { pairs, size: bytes.len(), hash })
}

/// `modkv snapshot status`.
pub fn status(path: &Path) -> Result<Status, BackupError> {
    let Contents { pairs, size, hash } = read(path, false)?;
    let revision = pairs
        .iter()
        .find(|(cf, k, _)| *cf == Cf::Meta && k == meta::CURRENT_REV)
        .and_then(|(_, _, v)| meta::decode_u64(v))
        .unwrap_or(0) as i64;
    Ok(Status {
        hash: u32::from_be_bytes(hash[..4].try_into().expect("4 bytes")),
        revision,
        total_key: pairs.iter().filter(|(cf, _, _)| *cf == Cf::Kv).count() as u64,
        total_size: size as u64,
    })
}

/// `modkv snapshot restore`: a new data dir at `data_dir` (which must not exist or be empty) holding the
/// snapshot's keys, leases and revision counters. Returns the restored store revision.
pub fn restore(path: &Path, data_dir: &Path, skip_hash_check: bool) -> Result<i64, BackupError> {
    let pairs = read(path, skip_hash_check)?.pairs;
    let dir_error = |reason: String| BackupError::DataDir { path: data_dir.display().to_string(), reason };
    if std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(dir_error("exists and is not empty; a snapshot is restored into a new data dir".into()));
    }
    let db_path = crate::embed::prepare_data_dir(data_dir).map_err(|e| dir_error(e.to_string()))?;
    let db = RocksDb::open(&db_path).map_err(|e| dir_error(format!("cannot open storage: {e}")))?;
    let mut batch = WriteBatch::default();
    let mut revision = 0;
    for (cf, k, v) in pairs {
        match cf {
            Cf::Kv | Cf::Lease => batch.put(cf, k, v),
            Cf::Meta if RESTORED_META.contains(&k.as_slice()) => {
                if k == meta::CURRENT_REV {
                    revision = meta::decode_u64(&v).unwrap_or(0) as i64;
                }
                batch.put(cf, k, v)
            }
            _ => {}
        }
    }
    db.write(batch, true).map_err(|e| dir_error(format!("cannot write: {e}")))?;
    Ok(revision)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_status_restore() {
        let (src_dir, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let src = RocksDb::open(src_dir.path()).unwrap();
        let mut w = WriteBatch::default();
        w.put(Cf::Kv, b"k1".to_vec(), b"v1".to_vec());
        w.put(Cf::Kv, b"k2".to_vec(), b"v2".to_vec());
        w.put(Cf::Meta, meta::CURRENT_REV, meta::encode_u64(9));
        w.put(Cf::Meta, meta::APPLIED_INDEX, meta::encode_u64(42));
        w.put(Cf::Meta, meta::MEMBERS, b"[]".to_vec());
        src.write(w, true).unwrap();
        let bytes = file(&src).unwrap();
        assert_eq!(bytes.len() % BLOCK, HASH_LEN, "etcdctl's size check");
        let path = out.path().join("s.db");
        std::fs::write(&path, &bytes).unwrap();
        let st = status(&path).unwrap();
        assert_eq!((st.revision, st.total_key, st.total_size), (9, 2, bytes.len() as u64));

        let dir = out.path().join("restored");
        assert_eq!(restore(&path, &dir, false).unwrap(), 9);
        let e = restore(&path, &dir, false).unwrap_err().to_string();
        assert!(e.ends_with("exists and is not empty; a snapshot is restored into a new data dir"), "{e}");
        let db = RocksDb::open(&dir.join("db")).unwrap();
        assert_eq!(db.get(Cf::Kv, b"k2").unwrap(), Some(b"v2".to_vec()));
        assert_eq!(db.get(Cf::Meta, meta::CURRENT_REV).unwrap(), Some(meta::encode_u64(9)));
        assert_eq!(db.get(Cf::Meta, meta::APPLIED_INDEX).unwrap(), None, "the old cluster's raft position");
        assert_eq!(db.get(Cf::Meta, meta::MEMBERS).unwrap(), None, "the old cluster's members");

        let mut cut = bytes.clone();
        cut.truncate(bytes.len() - 1);
        std::fs::write(&path, &cut).unwrap();
        assert!(matches!(status(&path), Err(BackupError::Hash { .. })));
    }
}

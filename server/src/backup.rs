//! Snapshot files: backups of a member's key space, as etcd's `etcdctl snapshot save` takes them and
//! `etcdctl snapshot restore` (3.4; `etcdutl` later) puts them back.
//!
//! ```text
//!   etcdctl snapshot save F ──Maintenance.Snapshot──▶ stream(): the state (storage::snapshot encoding,
//!                                                      one RocksDB snapshot) in the layout below, in
//!                                                      chunks, hashed as it goes
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

use crate::storage::snapshot::{decode, encode_to, encoded_len};
use crate::storage::{meta, Backend, Cf, RocksDb, StorageError, WriteBatch};

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

/// The size of the file whose state is `state_len` bytes long.
pub fn file_len(state_len: u64) -> u64 {
    (HEADER_LEN as u64 + state_len).div_ceil(BLOCK as u64) * BLOCK as u64 + HASH_LEN as u64
}

/// Cuts what is written into pieces of `chunk` bytes for `send`, with the bytes still to come after each,
/// and hashes everything before the trailer as it goes.
struct Chunker<'a> {
    buf: Vec<u8>,
    chunk: usize,
    hasher: Sha256,
    remaining: u64,
    send: &'a mut dyn FnMut(Vec<u8>, u64) -> bool,
    stopped: bool,
}

impl Chunker<'_> {
    /// Writes bytes covered by the hash; `false` once `send` has stopped.
    fn write(&mut self, bytes: &[u8]) -> bool {
        self.hasher.update(bytes);
        self.push(bytes)
    }

    /// Writes bytes (not hashed).
    fn push(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() && !self.stopped {
            let n = bytes.len().min(self.chunk - self.buf.len());
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.buf.len() == self.chunk {
                self.flush();
            }
        }
        !self.stopped
    }

    fn flush(&mut self) {
        if self.buf.is_empty() || self.stopped {
            return;
        }
        let blob = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk));
        self.remaining = self.remaining.saturating_sub(blob.len() as u64);
        self.stopped = !(self.send)(blob, self.remaining);
    }
}

/// Streams the snapshot file of `backend` (one RocksDB snapshot, read twice: once for the state's length
/// the header carries, once for the bytes) to `send` in pieces of `chunk` bytes, each with the bytes
/// still to come after it. Memory is O(`chunk`); `send` returning `false` stops the stream. Returns
/// whether the whole file was sent.
pub fn stream(
    backend: &dyn Backend,
    chunk: usize,
    send: &mut dyn FnMut(Vec<u8>, u64) -> bool,
) -> crate::storage::Result<bool> {
    let mut complete = false;
    backend.with_state_snapshot(&mut |snap| {
        let state_len = encoded_len(snap)?;
        let total = file_len(state_len);
        tracing::debug!(bytes = total, "streaming a snapshot file");
        let mut out = Chunker {
            buf: Vec::with_capacity(chunk),
            chunk,
            hasher: Sha256::new(),
            remaining: total,
            send,
            stopped: false,
        };
        out.write(MAGIC);
        out.write(&state_len.to_be_bytes());
        let mut written = 0u64;
        let state_complete = encode_to(snap, &mut |piece| {
            written += piece.len() as u64;
            out.write(piece)
        })?;
        if !state_complete || out.stopped {
            return Ok(());
        }
        if written != state_len {
            // The same RocksDB snapshot was scanned twice: it cannot differ.
            return Err(StorageError::Corrupt(format!("snapshot: {written} bytes of state, {state_len} announced")));
        }
        let pad = (total - HASH_LEN as u64 - HEADER_LEN as u64 - state_len) as usize;
        out.write(&[0; BLOCK][..pad]);
        let hash: [u8; HASH_LEN] = std::mem::take(&mut out.hasher).finalize().into();
        out.push(&hash);
        out.flush();
        complete = !out.stopped;
        Ok(())
    })?;
    Ok(complete)
}

/// The snapshot of `backend` as a file's bytes, in memory (tests; the server streams with [`stream`]).
pub fn file(backend: &dyn Backend) -> crate::storage::Result<Vec<u8>> {
    let mut file = Vec::new();
    stream(backend, 64 * 1024, &mut |blob, _| {
        file.extend_from_slice(&blob);
        true
    })?;
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
    let db_path = crate::storage::data_dir::prepare(data_dir).map_err(|e| dir_error(e.to_string()))?;
    let db = RocksDb::open(&db_path).map_err(|e| dir_error(format!("cannot open storage: {e}")))?;
    let mut batch = WriteBatch::default();
    let mut revision = 0;
    for (cf, k, v) in pairs {
        match cf {
            // Users and roles are kept, as etcd's restore keeps its auth buckets.
            Cf::Kv | Cf::Lease | Cf::Auth => batch.put(cf, k, v),
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

        // Streamed in chunks: each full but the last, the bytes to come counted down to 0, the same file.
        let mut streamed = Vec::new();
        let mut chunks = Vec::new();
        assert!(stream(&src, 100, &mut |blob, remaining| {
            streamed.extend_from_slice(&blob);
            chunks.push((blob.len(), remaining));
            true
        })
        .unwrap());
        assert_eq!(streamed, bytes);
        let state_len = u64::from_be_bytes(bytes[MAGIC.len()..HEADER_LEN].try_into().unwrap());
        assert_eq!(bytes.len() as u64, file_len(state_len));
        let n = chunks.len();
        assert_eq!(n, bytes.len().div_ceil(100));
        for (i, &(len, remaining)) in chunks.iter().enumerate() {
            assert_eq!(len, if i + 1 < n { 100 } else { bytes.len() - 100 * (n - 1) });
            assert_eq!(remaining as usize, bytes.len() - 100 * i - len);
        }
        // A receiver that stops after two chunks gets no more.
        let mut calls = 0;
        assert!(!stream(&src, 100, &mut |_, _| {
            calls += 1;
            calls < 2
        })
        .unwrap());
        assert_eq!(calls, 2);

        let mut cut = bytes.clone();
        cut.truncate(bytes.len() - 1);
        std::fs::write(&path, &cut).unwrap();
        assert!(matches!(status(&path), Err(BackupError::Hash { .. })));
    }
}

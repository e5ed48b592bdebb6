//! Snapshot files: backups of a member's key space in etcd's own format, so that `etcdctl snapshot save`
//! against modkv writes a file `etcdctl snapshot status/restore` (3.4; `etcdutl` later) take, and an etcd
//! snapshot restores into modkv.
//!
//! ```text
//!   etcdctl snapshot save F ──Maintenance.Snapshot──▶ stream(): one RocksDB snapshot, scanned twice
//!        (etcd::feed → bbolt::Writer: pass 1 counts pages, pass 2 writes them), in chunks, hashed as it goes
//!   modkv snapshot restore F --data-dir D ──▶ restore(): hash checked, every entry checked (etcd::Restorer),
//!        then written to a new data dir in bounded batches: keys (every revision), leases, users and roles,
//!        the revision counters, and (given --initial-cluster) the new cluster's members and the ids etcd
//!        derives from --initial-cluster-token
//!   modkv --data-dir D --initial-cluster … ──▶ starts a new cluster on that data (each member of it
//!                                              restores the same file first, as with etcd)
//!   modkv snapshot status F [-w simple|json|table] ──▶ status(): etcdctl's hash, revision, keys, size
//!   Maintenance.Hash ──▶ hash(): one RocksDB snapshot, scanned once (etcd::feed → hash::Hasher): etcd's
//!        CRC-32C of the buckets that snapshot's file would hold, without the consistent index
//! ```
//!
//! A file is an etcd 3.4 backend database (a bbolt file, its buckets laid out as `etcd` describes) followed
//! by the SHA-256 of the database (32 bytes; etcdctl tells a file with the trailer by its size, 32 more
//! than a multiple of 512, and checks it on restore unless `--skip-hash-check`). Files in modkv's older
//! format (`legacy`) are still read. What a restore leaves out is what belongs to the old cluster: its
//! member list and ids (the new cluster's are written instead), its raft position (consistent index) and
//! its alarms.

mod etcd;
mod hash;
mod legacy;
mod status;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::storage::{meta, Backend, Cf, RocksDb, StorageError, WriteBatch};
pub use status::{humanize_bytes, Status};

/// Length of the SHA-256 trailer.
const HASH_LEN: usize = 32;
/// Meta keys a restore of a legacy file keeps: the revision counters. The rest is the old cluster's.
const RESTORED_META: [&[u8]; 2] = [meta::CURRENT_REV, meta::COMPACT_REV];
/// Bytes of pairs a restore writes per batch.
const RESTORE_BATCH: usize = 8 << 20;

/// Why a snapshot file could not be read or restored (one line each).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("snapshot {path}: cannot read it: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("snapshot {path}: expected sha256 {expected}, got {actual} (the file is damaged; --skip-hash-check ignores this)")]
    Hash { path: String, expected: String, actual: String },
    #[error("snapshot {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("data-dir {path}: {reason}")]
    DataDir { path: String, reason: String },
}

/// Cuts what is written into pieces of `chunk` bytes for `send`, with the bytes still to come after each,
/// and hashes everything before the trailer as it goes. Once `send` has stopped, writes fail with
/// [`io::ErrorKind::BrokenPipe`].
struct Chunker<'a> {
    buf: Vec<u8>,
    chunk: usize,
    hasher: Sha256,
    remaining: u64,
    send: &'a mut dyn FnMut(Vec<u8>, u64) -> bool,
    stopped: bool,
}

impl Chunker<'_> {
    /// Writes bytes (not hashed).
    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.stopped {
            let n = bytes.len().min(self.chunk - self.buf.len());
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.buf.len() == self.chunk {
                self.send_buffered();
            }
        }
    }

    fn send_buffered(&mut self) {
        if self.buf.is_empty() || self.stopped {
            return;
        }
        let blob = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk));
        self.remaining = self.remaining.saturating_sub(blob.len() as u64);
        self.stopped = !(self.send)(blob, self.remaining);
    }
}

impl Write for Chunker<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.hasher.update(bytes);
        self.push(bytes);
        if self.stopped {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn storage_error(e: io::Error) -> StorageError {
    StorageError::Backend(format!("snapshot: {e}"))
}

/// Streams the snapshot file of `backend` (one RocksDB snapshot, scanned twice: once to lay out the
/// pages, whose root the first page names, once to write them) to `send` in pieces of `chunk` bytes,
/// each with the bytes still to come after it. Memory is O(`chunk` + a page per tree level); `send`
/// returning `false` stops the stream. Returns whether the whole file was sent.
pub fn stream(
    backend: &dyn Backend,
    chunk: usize,
    send: &mut dyn FnMut(Vec<u8>, u64) -> bool,
) -> crate::storage::Result<bool> {
    let mut complete = false;
    backend.with_state_snapshot(&mut |snap| {
        let mut plan = bbolt::Writer::plan();
        etcd::feed(snap, &mut plan)?;
        let (layout, _) = plan.finish().map_err(storage_error)?;
        let total = layout.size() + HASH_LEN as u64;
        tracing::debug!(bytes = total, "streaming a snapshot file");
        let mut out = Chunker {
            buf: Vec::with_capacity(chunk),
            chunk,
            hasher: Sha256::new(),
            remaining: total,
            send: &mut *send,
            stopped: false,
        };
        let stopped = |e: &io::Error| e.kind() == io::ErrorKind::BrokenPipe;
        let mut w = match bbolt::Writer::new(&mut out, layout) {
            Ok(w) => w,
            Err(e) if stopped(&e) => return Ok(()),
            Err(e) => return Err(storage_error(e)),
        };
        if !etcd::feed(snap, &mut w)? {
            return Ok(());
        }
        match w.finish() {
            Ok(_) => {}
            Err(e) if stopped(&e) => return Ok(()),
            // The same RocksDB snapshot was scanned twice: it cannot differ.
            Err(e) => return Err(StorageError::Corrupt(e.to_string())),
        }
        let hash: [u8; HASH_LEN] = std::mem::take(&mut out.hasher).finalize().into();
        out.push(&hash);
        out.send_buffered();
        complete = !out.stopped;
        Ok(())
    })?;
    Ok(complete)
}

/// `Maintenance.Hash`: etcd's hash of its backend (`hash`) over the buckets a snapshot file of `backend`
/// taken now would hold, and the store revision of the state hashed. One RocksDB snapshot, scanned once;
/// memory is a few pairs (the meta and auth ones) and a CRC per bucket.
pub fn hash(backend: &dyn Backend) -> crate::storage::Result<(u32, i64)> {
    let mut result = (0, 1);
    backend.with_state_snapshot(&mut |snap| {
        let seen = Revisions { snap, revision: std::cell::Cell::new(1) };
        let mut hasher = hash::Hasher::default();
        etcd::feed(&seen, &mut hasher)?;
        result = (hasher.finish(), seen.revision.get());
        Ok(())
    })?;
    Ok(result)
}

/// A state snapshot whose scan notes the store revision as it goes: the revision counter, or the last
/// key's revision if later (as the store reckons it at start).
struct Revisions<'a> {
    snap: &'a dyn crate::storage::StateSnapshot,
    revision: std::cell::Cell<i64>,
}

impl crate::storage::StateSnapshot for Revisions<'_> {
    fn scan(&self, visit: &mut dyn FnMut(Cf, &[u8], &[u8]) -> bool) -> crate::storage::Result<()> {
        self.snap.scan(&mut |cf, k, v| {
            let rev = match cf {
                Cf::Meta if k == meta::CURRENT_REV => meta::decode_u64(v).map(|r| r as i64),
                Cf::Kv => crate::mvcc::Revision::from_bytes(k).map(|(r, _)| r.main),
                _ => None,
            };
            if let Some(rev) = rev {
                self.revision.set(self.revision.get().max(rev));
            }
            visit(cf, k, v)
        })
    }
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

/// Whether the file at `path` is in modkv's older format.
fn is_legacy(path: &Path) -> Result<bool, BackupError> {
    let mut f = open(path)?;
    let mut head = [0u8; 16];
    match f.read_exact(&mut head) {
        Ok(()) => Ok(&head == legacy::MAGIC),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(source) => Err(BackupError::Read { path: path.display().to_string(), source }),
    }
}

fn open(path: &Path) -> Result<File, BackupError> {
    File::open(path).map_err(|source| BackupError::Read { path: path.display().to_string(), source })
}

fn invalid(path: &Path, reason: impl ToString) -> BackupError {
    BackupError::Invalid { path: path.display().to_string(), reason: reason.to_string() }
}

/// Opens an etcd snapshot file's database.
fn open_db(path: &Path) -> Result<bbolt::Reader<File>, BackupError> {
    bbolt::Reader::open(open(path)?).map_err(|e| invalid(path, e))
}

/// `modkv snapshot status`: what `etcdctl snapshot status` says of the file (which, like etcdctl, does not
/// check the SHA-256 trailer, only the database).
pub fn status(path: &Path) -> Result<Status, BackupError> {
    if is_legacy(path)? {
        let legacy::Contents { pairs, size, hash } = legacy::read(path, false)?;
        let revision = pairs
            .iter()
            .find(|(cf, k, _)| *cf == Cf::Meta && k == meta::CURRENT_REV)
            .and_then(|(_, _, v)| meta::decode_u64(v))
            .unwrap_or(0) as i64;
        return Ok(Status {
            hash: u32::from_be_bytes(hash[..4].try_into().expect("4 bytes")),
            revision,
            total_key: pairs.iter().filter(|(cf, _, _)| *cf == Cf::Kv).count() as u64,
            total_size: size as u64,
        });
    }
    let db = open_db(path)?;
    let (mut hash, mut revision, mut total_key, mut in_key) = (0u32, 0i64, 0u64, false);
    db.walk(&mut |entry| {
        match entry {
            bbolt::Entry::Bucket(name) => {
                hash = crc32c::crc32c_append(hash, name);
                in_key = name == etcd::KEY;
            }
            bbolt::Entry::Pair { key, value } => {
                hash = crc32c::crc32c_append(hash, key);
                hash = crc32c::crc32c_append(hash, value.unwrap_or_default());
                if in_key && key.len() >= 8 {
                    revision = i64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
                }
                total_key += 1;
            }
        }
        true
    })
    .map_err(|e| invalid(path, e))?;
    Ok(Status { hash, revision, total_key, total_size: db.size() })
}

/// Checks an etcd snapshot file's SHA-256 trailer as etcdctl does: a file whose size is 32 more than a
/// multiple of 512 has one, and it must match unless `skip_hash_check`; a file without one is only
/// restored with `skip_hash_check` (a database copied from a data dir).
fn check_trailer(path: &Path, skip_hash_check: bool) -> Result<(), BackupError> {
    let f = open(path)?;
    let len = f.metadata().map_err(|source| BackupError::Read { path: path.display().to_string(), source })?.len();
    let has_hash = len % 512 == HASH_LEN as u64;
    if skip_hash_check {
        return Ok(());
    }
    if !has_hash {
        return Err(invalid(path, "snapshot missing hash but --skip-hash-check=false"));
    }
    let read_error = |source| BackupError::Read { path: path.display().to_string(), source };
    let mut hasher = Sha256::new();
    let mut body = io::BufReader::new(&f).take(len - HASH_LEN as u64);
    io::copy(&mut body, &mut hasher).map_err(read_error)?;
    let mut trailer = [0u8; HASH_LEN];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut trailer, len - HASH_LEN as u64).map_err(read_error)?;
    let actual: [u8; HASH_LEN] = hasher.finalize().into();
    if actual != trailer {
        return Err(BackupError::Hash {
            path: path.display().to_string(),
            expected: hex(&trailer),
            actual: hex(&actual),
        });
    }
    Ok(())
}

/// Walks an etcd snapshot's database, handing each modkv pair to `put`; returns the restored revision.
fn convert(
    path: &Path,
    db: &bbolt::Reader<File>,
    put: &mut dyn FnMut(Cf, Vec<u8>, Vec<u8>) -> Result<(), BackupError>,
) -> Result<i64, BackupError> {
    let mut restorer = etcd::Restorer::default();
    let mut failed = None;
    db.walk(&mut |entry| {
        let pair = match entry {
            bbolt::Entry::Bucket(name) => {
                restorer.bucket(name);
                return true;
            }
            bbolt::Entry::Pair { value: None, .. } => return true,
            bbolt::Entry::Pair { key, value: Some(value) } => restorer.entry(key, value),
        };
        let result = match pair {
            Ok(Some((cf, k, v))) => put(cf, k, v),
            Ok(None) => Ok(()),
            Err(reason) => Err(invalid(path, reason)),
        };
        result.map_err(|e| failed = Some(e)).is_ok()
    })
    .map_err(|e| invalid(path, e))?;
    if let Some(e) = failed {
        return Err(e);
    }
    let (pairs, revision) = restorer.finish();
    for (cf, k, v) in pairs {
        put(cf, k, v)?;
    }
    Ok(revision)
}

/// `modkv snapshot restore`: a new data dir at `data_dir` (which must not exist or be empty) holding the
/// snapshot's keys, leases, users and roles and revision counters, and `cluster` if given (the new
/// cluster's members and ids, from etcdctl's flags: a member started on the data dir keeps them, as etcd
/// does). Returns the restored store revision. An etcd snapshot is checked whole (trailer and every entry)
/// before the data dir is created.
pub fn restore(
    path: &Path,
    data_dir: &Path,
    skip_hash_check: bool,
    cluster: Option<&crate::membership::Cluster>,
) -> Result<i64, BackupError> {
    let dir_error = |reason: String| BackupError::DataDir { path: data_dir.display().to_string(), reason };
    let legacy = is_legacy(path)?;
    let (legacy_pairs, db) = if legacy {
        (legacy::read(path, skip_hash_check)?.pairs, None)
    } else {
        check_trailer(path, skip_hash_check)?;
        let db = open_db(path)?;
        convert(path, &db, &mut |_, _, _| Ok(()))?;
        (Vec::new(), Some(db))
    };
    if std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(dir_error("exists and is not empty; a snapshot is restored into a new data dir".into()));
    }
    let db_path = crate::storage::data_dir::prepare(data_dir).map_err(|e| dir_error(e.to_string()))?;
    let rocks = RocksDb::open(&db_path).map_err(|e| dir_error(format!("cannot open storage: {e}")))?;
    let write =
        |batch: WriteBatch, sync: bool| rocks.write(batch, sync).map_err(|e| dir_error(format!("cannot write: {e}")));
    let mut batch = WriteBatch::default();
    let revision = match db {
        Some(db) => {
            let mut bytes = 0;
            convert(path, &db, &mut |cf, k, v| {
                bytes += k.len() + v.len();
                batch.put(cf, k, v);
                if bytes >= RESTORE_BATCH {
                    bytes = 0;
                    write(std::mem::take(&mut batch), false)?;
                }
                Ok(())
            })?
        }
        None => {
            let mut revision = 0;
            for (cf, k, v) in legacy_pairs {
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
            revision
        }
    };
    if let Some(cluster) = cluster {
        cluster.save(&mut batch);
    }
    write(batch, true)?;
    Ok(revision)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;

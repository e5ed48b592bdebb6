//! [`Backend`] on RocksDB: one database, one column family per [`Cf`].

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions, WriteOptions, DB};

use super::{Backend, Cf, Op, Result, StateSnapshot, StorageError, WriteBatch, WriteObserver};

pub struct RocksDb {
    db: DB,
    observer: Option<Arc<dyn WriteObserver>>,
    /// See [`Backend::reclaimable`].
    reclaimable: AtomicU64,
    /// The last [`Backend::size_on_disk`] and when it was read: every write's quota check asks, and
    /// reading it takes eight property lookups under RocksDB's mutex (4 % of a member's CPU with 1000
    /// clients putting); read again after a write of ours or `SIZE_FRESH`, which bounds how late a
    /// background flush or compaction is seen.
    size: Mutex<Option<(Instant, u64)>>,
    /// Set by every write (and defragment): the next `size_on_disk` reads RocksDB again.
    size_stale: AtomicBool,
}

/// How long a size read with no write since is served again.
const SIZE_FRESH: Duration = Duration::from_millis(100);

fn err(e: rocksdb::Error) -> StorageError {
    StorageError::Backend(e.into_string())
}

/// What RocksDB may hold in memtables, all column families together (its default is 64 MiB per column
/// family, twice over): etcd's bbolt buffers nothing, and a member's memory should be its key index.
const MEMTABLE_BUDGET: usize = 32 << 20;
/// One column family's memtable: flushed to an L0 file when full.
const MEMTABLE_BYTES: usize = 8 << 20;
/// Data blocks cached, shared by every column family (the OS page cache holds the rest). Index blocks
/// stay with their table readers and there are no bloom filters: nearly every read is a `get` of a
/// revision the key index says exists, which a filter cannot skip.
const BLOCK_CACHE_BYTES: usize = 16 << 20;
/// The write-ahead log kept at most: past it, the column families whose memtables hold the oldest log
/// are flushed so it can go. Without a bound, a column family written rarely (or in small records, as
/// `meta`) keeps every later log file alive, and a restart replays all of them: 1M puts left a restart
/// 2.7 s where one after a flush took 0.9 s.
const WAL_BUDGET: u64 = 2 * MEMTABLE_BUDGET as u64;

impl RocksDb {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<RocksDb> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_bytes_per_sync(1 << 20);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_db_write_buffer_size(MEMTABLE_BUDGET);
        opts.set_max_total_wal_size(WAL_BUDGET);
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&cache);
        let cfs = Cf::ALL.iter().map(|cf| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            o.set_write_buffer_size(MEMTABLE_BYTES);
            o.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(cf.name(), o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(err)?;
        Ok(RocksDb {
            db,
            observer: None,
            reclaimable: AtomicU64::new(0),
            size: Mutex::new(None),
            size_stale: AtomicBool::new(true),
        })
    }

    /// Reports the duration of every write to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn WriteObserver>) -> RocksDb {
        self.observer = Some(observer);
        self
    }

    fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        // Every Cf is created at open, so the handle always exists.
        self.db.cf_handle(cf.name()).expect("column family created at open")
    }

    /// The failpoint `storage::fsync_error`: the batch is written without sync (it may or may not be on
    /// disk) and the write fails as a failed fsync does.
    #[cfg(feature = "failpoints")]
    fn write_then_fail_fsync(&self, batch: WriteBatch) -> Result<()> {
        self.write(batch, false)?;
        Err(StorageError::Backend("IO error: While fsync: input/output error (failpoint storage::fsync_error)".into()))
    }

    /// A RocksDB integer property summed over the state machine's column families.
    fn int_property(&self, name: &str) -> u64 {
        Cf::STATE.iter().filter_map(|cf| self.db.property_int_value_cf(self.cf(*cf), name).ok().flatten()).sum()
    }
}

impl Backend for RocksDb {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(cf), key).map_err(err)
    }

    fn multi_get(&self, cf: Cf, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let h = self.cf(cf);
        self.db
            .batched_multi_get_cf(h, keys.iter(), false)
            .into_iter()
            .map(|r| r.map(|v| v.map(|p| p.to_vec())).map_err(err))
            .collect()
    }

    fn scan(&self, cf: Cf, from: &[u8], to: Option<&[u8]>, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let iter = self.db.iterator_cf(self.cf(cf), IteratorMode::From(from, Direction::Forward));
        for item in iter {
            let (k, v) = item.map_err(err)?;
            if let Some(to) = to {
                if &*k >= to {
                    break;
                }
            }
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn last(&self, cf: Cf) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        match self.db.iterator_cf(self.cf(cf), IteratorMode::End).next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.map_err(err)?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
        }
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        fail::fail_point!("storage::fsync_error", sync, |_| self.write_then_fail_fsync(batch.clone()));
        let reclaims = batch.reclaims;
        let mut wb = rocksdb::WriteBatch::default();
        for op in batch.ops {
            match op {
                Op::Put(cf, k, v) => wb.put_cf(self.cf(cf), k, v),
                Op::Delete(cf, k) => wb.delete_cf(self.cf(cf), k),
                Op::DeleteRange(cf, a, b) => wb.delete_range_cf(self.cf(cf), a, b),
            }
        }
        // A sync write is a plain write followed by a sync of the WAL, not a write with `sync` set: RocksDB
        // holds its write queue for the whole fsync of a sync write, so the apply thread's unsynced batches
        // would wait behind it (a compaction's truncation point, a configuration change). The WAL sync
        // makes everything written before it durable, this batch included.
        let started = Instant::now();
        let result = self.db.write_opt(wb, &WriteOptions::default()).map_err(err);
        let result = if sync { result.and_then(|()| self.db.flush_wal(true).map_err(err)) } else { result };
        if let Some(o) = &self.observer {
            o.observe_write(sync, started.elapsed());
        }
        if result.is_ok() {
            self.reclaimable.fetch_add(reclaims, Ordering::Relaxed);
        }
        self.size_stale.store(true, Ordering::Release);
        result
    }

    fn size_on_disk(&self) -> u64 {
        let mut size = self.size.lock().unwrap_or_else(|e| e.into_inner());
        let stale = self.size_stale.swap(false, Ordering::AcqRel);
        match *size {
            Some((at, bytes)) if !stale && at.elapsed() < SIZE_FRESH => bytes,
            _ => {
                let bytes = self.int_property("rocksdb.total-sst-files-size")
                    + self.int_property("rocksdb.cur-size-all-mem-tables");
                *size = Some((Instant::now(), bytes));
                bytes
            }
        }
    }

    fn reclaimable(&self) -> u64 {
        self.reclaimable.load(Ordering::Relaxed)
    }

    fn defragment(&self) -> Result<()> {
        let before = self.reclaimable.load(Ordering::Relaxed);
        for cf in Cf::ALL {
            self.db.compact_range_cf(self.cf(cf), None::<&[u8]>, None::<&[u8]>);
        }
        // What was deleted before the compaction is gone now; deletions since then are not.
        self.reclaimable.fetch_sub(before, Ordering::Relaxed);
        let flushed = self.db.flush().map_err(err);
        self.size_stale.store(true, Ordering::Release);
        flushed
    }

    fn flush(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(err)
    }

    fn with_state_snapshot(&self, f: &mut dyn FnMut(&dyn StateSnapshot) -> Result<()>) -> Result<()> {
        f(&RocksState { db: self, snap: self.db.snapshot() })
    }
}

/// A RocksDB snapshot of the state machine's column families.
struct RocksState<'a> {
    db: &'a RocksDb,
    snap: rocksdb::Snapshot<'a>,
}

impl StateSnapshot for RocksState<'_> {
    fn scan(&self, visit: &mut dyn FnMut(Cf, &[u8], &[u8]) -> bool) -> Result<()> {
        for cf in Cf::STATE {
            // A full scan: it would only push the hot blocks out of the block cache.
            let mut opts = ReadOptions::default();
            opts.fill_cache(false);
            for item in self.snap.iterator_cf_opt(self.db.cf(cf), opts, IteratorMode::Start) {
                let (k, v) = item.map_err(err)?;
                if !visit(cf, &k, &v) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_scan_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = RocksDb::open(dir.path()).unwrap();
            let mut b = WriteBatch::default();
            for i in 0u8..10 {
                b.put(Cf::Kv, vec![i], vec![i * 2]);
            }
            b.put(Cf::Meta, b"m".to_vec(), b"x".to_vec());
            db.write(b, true).unwrap();
            let mut b = WriteBatch::default();
            b.delete_range(Cf::Kv, vec![2u8], vec![5u8]);
            b.delete(Cf::Kv, vec![9u8]);
            db.write(b, true).unwrap();
        }
        let db = RocksDb::open(dir.path()).unwrap();
        let mut seen = vec![];
        db.scan(Cf::Kv, &[1], Some(&[8]), &mut |k, v| {
            seen.push((k[0], v[0]));
            true
        })
        .unwrap();
        assert_eq!(seen, vec![(1, 2), (5, 10), (6, 12), (7, 14)]);
        assert_eq!(db.get(Cf::Meta, b"m").unwrap(), Some(b"x".to_vec()));
        assert_eq!(db.get(Cf::Kv, &[9]).unwrap(), None);
        let got = db.multi_get(Cf::Kv, &[vec![0], vec![3], vec![8]]).unwrap();
        assert_eq!(got, vec![Some(vec![0]), None, Some(vec![16])]);
    }
}

//! The machine's own fdatasync time: the floor under every fsync'ed write of etcd and modkv alike.
//! Two shapes: appending (the file grows, so each fdatasync also commits the size in the filesystem's
//! journal) and overwriting a preallocated file (data only: what a WAL with preallocated segments,
//! like etcd's 64 MB ones, pays).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use super::stats::Stats;

/// `count` writes of `size` bytes to a new file in `dir`, each followed by fdatasync: appended, or
/// (`preallocated`) over a file written and synced in full first. The file is removed afterwards.
pub fn measure(dir: &Path, count: usize, size: usize, preallocated: bool) -> std::io::Result<Stats> {
    let path = dir.join(format!(".modkv-bench-fsync-{}", std::process::id()));
    let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    let block = vec![0x5a_u8; size];
    let name = if preallocated { "fdatasync (preallocated)" } else { "fdatasync (append)" };
    let mut stats = Stats::new(name);
    let result = (|| {
        if preallocated {
            for _ in 0..count {
                f.write_all(&block)?;
            }
            f.sync_all()?;
        }
        let start = Instant::now();
        for i in 0..count {
            let t = Instant::now();
            if preallocated {
                f.write_all_at(&block, (i * size) as u64)?;
            } else {
                f.write_all(&block)?;
            }
            f.sync_data()?;
            stats.record(Ok(t.elapsed()));
        }
        Ok(start.elapsed())
    })();
    let _ = std::fs::remove_file(&path);
    result.map(|wall| stats.finish(wall))
}

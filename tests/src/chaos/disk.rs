//! A full disk: each member's data dir on a size-limited tmpfs of its own ([`Tmpfs`], unmounted when
//! dropped, also when a test panics), and [`fill`] / [`free`] of it. What etcd 3.4 does when a write
//! finds no space: a failed WAL append or fsync is fatal (`lg.Fatal`, exit status 1), a failed bbolt
//! commit of the backend too (`failed to commit tx`, a panic); it never answers a write it could not
//! persist. The NOSPACE alarm is another thing: the backend quota (`--quota-backend-bytes`), not the
//! filesystem.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Size of each member's filesystem: room for etcd's 64 MB preallocated WAL segment, a second one
/// being prepared, and the backend.
pub const TMPFS_MB: u64 = 256;
/// The file that fills a member's filesystem (in its data dir, removed before the member starts again).
pub const FILLER: &str = "chaos-filler";

/// A tmpfs mounted at a member's data dir; dropping it unmounts it (lazily: a member may still run)
/// and removes the mount point.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a `size_mb` MB tmpfs at `path` (created if missing).
    pub fn mount(path: &Path, size_mb: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let size = format!("size={size_mb}m,mode=0700");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount tmpfs at {}: {}", path.display(), String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Tmpfs { path: path.to_path_buf() })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
        let _ = std::fs::remove_dir(&self.path);
        // The cluster's temporary directory could not remove the mount point: it is left empty.
        if let Some(parent) = self.path.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

/// Is `path` a mount point (listed in `/proc/mounts`)?
pub fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let p = path.display().to_string();
    mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(p.as_str()))
}

/// Writes [`FILLER`] in `dir` until the filesystem has no space left; returns the bytes written.
pub fn fill(dir: &Path) -> Result<u64, String> {
    let path = dir.join(FILLER);
    let mut f =
        OpenOptions::new().create(true).append(true).open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut written = 0u64;
    for chunk in [1 << 20, 64 << 10, 4 << 10] {
        let buf = vec![0u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("filling {}: {e}", path.display())),
            }
        }
    }
    Ok(written)
}

/// Removes the filler from `dir`.
pub fn free(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(FILLER));
}

/// Removes what `dir` holds, not `dir` itself (a mount point).
pub fn wipe(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

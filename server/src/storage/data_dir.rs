//! The data dir: created on first use, marked as modkv's (with its layout version), and refused when it
//! holds something else or cannot be written. The RocksDB database lives in `<data-dir>/db`.

use std::path::{Path, PathBuf};

/// Marks a data dir as modkv's (and its layout version).
const MARKER_FILE: &str = "modkv.version";
const MARKER: &str = "modkv data dir v1\n";

/// Why a data dir cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("data dir {}: {reason}", path.display())]
pub struct DataDirError {
    pub path: PathBuf,
    pub reason: String,
}

/// Opens the data dir (creating it), refusing one that is not modkv's or not writable; returns where the
/// database goes.
pub fn prepare(dir: &Path) -> Result<PathBuf, DataDirError> {
    let fail = |reason: String| DataDirError { path: dir.to_path_buf(), reason };
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create it: {e}")))?;
    let marker = dir.join(MARKER_FILE);
    match std::fs::read_to_string(&marker) {
        Ok(m) if m == MARKER => {}
        Ok(_) => return Err(fail(format!("{MARKER_FILE} does not name a data dir layout this modkv knows"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let entries: Vec<String> = std::fs::read_dir(dir)
                .map_err(|e| fail(format!("cannot read it: {e}")))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if !entries.is_empty() {
                return Err(fail(format!(
                    "not a modkv data dir (it holds {}, and no {MARKER_FILE}); refusing to use it",
                    entries.join(", ")
                )));
            }
            std::fs::write(&marker, MARKER).map_err(|e| fail(format!("not writable: {e}")))?;
        }
        Err(e) => return Err(fail(format!("cannot read {MARKER_FILE}: {e}"))),
    }
    let probe = dir.join(".write-check");
    std::fs::write(&probe, b"").map_err(|e| fail(format!("not writable: {e}")))?;
    let _ = std::fs::remove_file(probe);
    Ok(dir.join("db"))
}

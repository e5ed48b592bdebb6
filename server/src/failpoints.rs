//! Failpoints: named places in the write path where a test makes the member crash, fail or stall (the
//! `fail` crate's `fail_point!`), for `tests/tests/failpoints.rs`.
//!
//! ```text
//!   FAILPOINTS="name=action;…"  ──setup (modkv-failpoints' main)──▶ fail's registry
//!   fail_point!(name) at a site ──▶ its action: panic (in modkv-failpoints: the process aborts there),
//!                                    return (the site's error, where it has one), sleep(ms), pause, …
//! ```
//!
//! The sites exist only in a build with the `failpoints` feature (the `modkv-failpoints` binary); in a
//! normal build every `fail_point!` compiles to nothing and [`setup`] is never called. The actions are
//! the `fail` crate's (`[p%][cnt*]task[(arg)]`, chained with `->`): `5*off->panic` lets a site pass five
//! times, then panics.

/// Every failpoint site, and where it is.
pub const SITES: &[(&str, &str)] = &[
    ("raft::before_persist", "raft task: new entries and hard state about to be written (and fsynced)"),
    (
        "raft::after_persist_before_send",
        "raft task: entries and hard state durable, the votes and append acknowledgements not yet sent",
    ),
    ("raft::before_apply", "raft task: committed (durable) entries about to be handed to apply"),
    ("apply::before_write", "apply thread: committed entries applied in memory, their batch not yet written"),
    ("raft::snapshot_send_mid", "peer transport: a snapshot for a lagging member made, about to be sent"),
    (
        "raft::snapshot_install_mid",
        "apply thread: a snapshot from the leader received and decoded, the state not yet replaced",
    ),
    ("mvcc::compaction_mid", "apply thread: key index compacted in memory, the deletions not yet written"),
    ("storage::fsync_error", "storage: a write with sync reaches RocksDB but its fsync fails (`return`)"),
];

/// Configures the failpoints named in `spec` (the `FAILPOINTS` syntax: `name=actions` separated by `;`).
/// A name that is not in [`SITES`] is refused, so a misspelt site cannot make a test pass silently.
pub fn setup(spec: &str) -> Result<(), String> {
    for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, actions) = item.split_once('=').ok_or_else(|| format!("invalid failpoint {item:?}"))?;
        let name = name.trim();
        if !SITES.iter().any(|(site, _)| *site == name) {
            let known: Vec<&str> = SITES.iter().map(|(s, _)| *s).collect();
            return Err(format!("unknown failpoint {name:?} (known: {})", known.join(", ")));
        }
        fail::cfg(name, actions.trim()).map_err(|e| format!("failpoint {name}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_sites_and_bad_actions_are_refused() {
        let err = setup("raft::before_persits=panic").unwrap_err();
        assert!(err.starts_with("unknown failpoint \"raft::before_persits\" (known: raft::before_persist,"), "{err}");
        assert_eq!(setup("raft::before_persist").unwrap_err(), "invalid failpoint \"raft::before_persist\"");
        assert!(setup("raft::before_persist=explode").unwrap_err().starts_with("failpoint raft::before_persist:"));
        assert_eq!(setup(" ; "), Ok(()));
    }
}

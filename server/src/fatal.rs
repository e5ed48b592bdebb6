//! Core threads (raft, apply) and how their failures end the member.
//!
//! A core thread that stops — with an error or a panic — leaves a member that still accepts connections
//! but can never commit or apply again. etcd's process exits in that case so a supervisor restarts it;
//! modkv does the same: the failure goes to the member's error channel, `embed::run` returns it, and
//! the binary exits non-zero.

use tokio::sync::mpsc;

/// Why a member stops by itself, as reported on its error channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    /// This member was removed from the cluster: it stops, and (as etcd) that is a clean exit.
    #[error("the member has been permanently removed from the cluster")]
    Removed,
    /// A listener, raft or apply failed: the member stops and the process exits non-zero.
    #[error("{0}")]
    Failed(String),
}

/// Where a member's parts report that it must stop.
pub type Reporter = mpsc::UnboundedSender<Stop>;

/// Starts `body` on a named OS thread; if it panics, the panic message is sent to `fatal` (the member's
/// error channel) so the member stops instead of lingering without the thread.
pub fn spawn_core_thread(
    name: &'static str,
    fatal: Reporter,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // Room for deeply nested requests (txns nest up to 129 levels) applied recursively.
    std::thread::Builder::new().name(name.into()).stack_size(8 << 20).spawn(move || {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            let what = panic_message(&*panic);
            tracing::error!(thread = name, "{what}");
            let _ = fatal.send(Stop::Failed(format!("the {name} thread panicked: {what}")));
        }
    })
}

/// The text of a panic payload (`panic!("…")` carries a `&str` or a `String`).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-text payload".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_core_thread_reports_why() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t = spawn_core_thread("test", tx, || panic!("commit index 99 out of range")).unwrap();
        t.join().unwrap();
        let msg = rx.try_recv().unwrap();
        assert_eq!(msg, Stop::Failed("the test thread panicked: commit index 99 out of range".into()));
    }
}

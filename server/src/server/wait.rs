//! [`Wait`]: requests waiting for their raft entry to be applied, by request id.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::apply::ApplyResult;

#[derive(Default)]
pub struct Wait {
    waiting: Mutex<HashMap<u64, oneshot::Sender<ApplyResult>>>,
}

impl Wait {
    pub fn register(&self, id: u64) -> oneshot::Receiver<ApplyResult> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        rx
    }

    /// Hands `result` to the request `id`, if it is still waiting (it may have timed out, or have been
    /// proposed by another member).
    pub fn trigger(&self, id: u64, result: ApplyResult) {
        if let Some(tx) = self.lock().remove(&id) {
            let _ = tx.send(result);
        }
    }

    pub fn cancel(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<ApplyResult>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

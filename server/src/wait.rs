//! [`Wait`]: requests waiting for their raft entry to be applied, by request id (etcd's `pkg/wait`).
//!
//! ```text
//!   server: register(id) ──▶ propose ──▶ raft ──▶ apply: trigger(id, result) ──▶ server's receiver
//!                                          └──▶ dropped proposal: Fail::fail(id, error)
//! ```
//!
//! Below the layers that use it: the server registers, apply triggers with its result, and the raft
//! node fails the requests it drops through [`Fail`], without knowing what apply answers.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Waiting requests; each gets a `Result<T>`.
pub struct Wait<T> {
    waiting: Mutex<HashMap<u64, oneshot::Sender<Result<T>>>>,
}

impl<T> Default for Wait<T> {
    fn default() -> Self {
        Wait { waiting: Mutex::new(HashMap::new()) }
    }
}

impl<T> Wait<T> {
    pub fn register(&self, id: u64) -> oneshot::Receiver<Result<T>> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        rx
    }

    /// Hands `result` to the request `id`, if it is still waiting (it may have timed out, or have been
    /// proposed by another member).
    pub fn trigger(&self, id: u64, result: Result<T>) {
        if let Some(tx) = self.lock().remove(&id) {
            let _ = tx.send(result);
        }
    }

    pub fn cancel(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Result<T>>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Failing a waiting request: what the raft node needs, whatever the result type.
pub trait Fail: Send + Sync {
    fn fail(&self, id: u64, e: Error);
}

impl<T: Send> Fail for Wait<T> {
    fn fail(&self, id: u64, e: Error) {
        self.trigger(id, Err(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_reaches_its_request_once() {
        let w: Wait<u8> = Wait::default();
        let mut rx = w.register(7);
        w.trigger(7, Ok(1));
        w.trigger(7, Ok(2));
        assert_eq!(rx.try_recv().unwrap().unwrap(), 1);
        let mut rx = w.register(8);
        (&w as &dyn Fail).fail(8, Error::NoLeader);
        assert!(matches!(rx.try_recv().unwrap(), Err(Error::NoLeader)));
    }
}

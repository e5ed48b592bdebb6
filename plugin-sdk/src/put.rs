//! Pre-put: the [`Put`] a hook gets and the [`Decision`] it answers.
//!
//! A hook sees a plain Put and every put of a Txn, in both branches: which branch runs is only known
//! when the Txn is applied, and what enters the raft log must already be final, so a put in the branch
//! that does not run was still checked (and a rejection there fails the Txn). `Put::in_txn` tells.

use std::borrow::Cow;

use crate::{Decision, Put};

impl Put {
    /// The user whose request this put is part of; `None` while auth is off, for an anonymous caller,
    /// and for a plugin's own put (its host `put`).
    pub fn caller(&self) -> Option<&str> {
        self.caller.as_deref()
    }

    /// The key as UTF-8 (lossy).
    pub fn key_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.key)
    }

    /// The value as UTF-8, if it is.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }

    /// The value parsed as JSON.
    pub fn value_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.value)
    }
}

impl Decision {
    /// Rejects the put; `etcdctl` shows the message, prefixed with the plugin's name. A rejected put
    /// inside a Txn fails the whole Txn.
    pub fn reject(message: impl Into<String>) -> Self {
        Decision::Reject(message.into())
    }

    /// Stores `value` instead of the value the client sent.
    pub fn rewrite(value: impl Into<Vec<u8>>) -> Self {
        Decision::Rewrite(value.into())
    }

    /// Whether this is [`Decision::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_and_puts() {
        assert!(Decision::Allow.is_allow());
        assert_eq!(Decision::reject("no"), Decision::Reject("no".into()));
        assert_eq!(Decision::rewrite("x"), Decision::Rewrite(b"x".to_vec()));
        let put = Put { key: b"k\xff".to_vec(), value: b"[1]".to_vec(), lease: 0, in_txn: false, caller: None };
        assert_eq!(put.caller(), None);
        assert_eq!(put.key_str(), "k\u{fffd}");
        assert_eq!(put.value_str(), Some("[1]"));
        assert_eq!(put.value_json::<Vec<i32>>().unwrap(), vec![1]);
    }
}

//! Reading and writing keys through the host. Reads are linearizable unless marked serializable;
//! writes go through raft like a client's Put and do not run the calling plugin's own pre-put hook.
//!
//! Every call is checked against the key prefixes the plugin's TOML file grants, and fails with
//! `permission denied: ...` outside them:
//!
//! ```toml
//! [grants]
//! read = ["counters/"]    # "" grants every key
//! write = ["counters/"]
//! ```
//!
//! ```no_run
//! use modkv_plugin_sdk::kv;
//!
//! # fn main() -> Result<(), kv::Error> {
//! let rev = kv::put("counters/a", "1")?;
//! let a = kv::get("counters/a")?.expect("just written");
//! assert_eq!(a.mod_revision, rev);
//! for kv in kv::range("counters/")?.kvs {
//!     println!("{} = {}", kv.key_str(), kv.value_str());
//! }
//! let page = kv::Range::prefix("counters/").limit(10).serializable().get()?;
//! kv::delete_prefix("counters/")?;
//! # let _ = page; Ok(()) }
//! ```
//!
//! These calls act with the member's authority, bounded by the plugin's grants only. A plugin serving a
//! user reads *for* them with [`Range::for_caller`] or [`Range::readable_by_caller`]: the server checks
//! the plugin's grants and then the caller's own read permission (with auth enabled; with auth off it
//! is a plain read):
//!
//! ```no_run
//! use modkv_plugin_sdk::kv;
//!
//! # fn main() -> Result<(), kv::Error> {
//! // What the caller may see under app/ (nothing they may not read; anonymous: an error).
//! let visible = kv::Range::prefix("app/").readable_by_caller().get()?;
//! // One key, refused with `etcdserver: permission denied` unless the caller may read it.
//! let one = kv::Range::key("app/a").for_caller().get()?;
//! # let _ = (visible, one); Ok(()) }
//! ```

use std::borrow::Cow;

use crate::bindings::modkv::plugin::host;
pub use crate::{CallerScope, KeyValue, RangeResult};

/// An error from the host: etcd's message (e.g. `etcdserver: mvcc: required revision has been
/// compacted`), or a denied grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// The result of a host KV call.
pub type Result<T> = std::result::Result<T, Error>;

/// A range read: build it, then [`Range::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    key: Vec<u8>,
    range_end: Vec<u8>,
    limit: i64,
    serializable: bool,
    /// `Some`: read as the caller (`range-for-caller`).
    caller: Option<CallerScope>,
}

impl Range {
    /// Just `key`.
    pub fn key(key: impl AsRef<[u8]>) -> Self {
        Range { key: key.as_ref().to_vec(), range_end: Vec::new(), limit: 0, serializable: false, caller: None }
    }

    /// Every key starting with `prefix` (every key when `prefix` is empty).
    pub fn prefix(prefix: impl AsRef<[u8]>) -> Self {
        let prefix = prefix.as_ref();
        if prefix.is_empty() {
            return Range::between([0u8], [0u8]);
        }
        Range { range_end: prefix_end(prefix), ..Range::key(prefix) }
    }

    /// Keys in `[start, end)`; an `end` of `"\0"` means every key `>= start`.
    pub fn between(start: impl AsRef<[u8]>, end: impl AsRef<[u8]>) -> Self {
        Range { range_end: end.as_ref().to_vec(), ..Range::key(start) }
    }

    /// At most `n` keys (0: no limit); [`RangeResult::more`] says whether there were more.
    pub fn limit(mut self, n: i64) -> Self {
        self.limit = n;
        self
    }

    /// Reads the local member's state without the ReadIndex round: faster, possibly stale.
    pub fn serializable(mut self) -> Self {
        self.serializable = true;
        self
    }

    /// Reads as the caller of the running call (the route's [`Request::caller`](crate::Request::caller),
    /// the hook's [`Put::caller`](crate::Put::caller)), as the caller's own Range would: refused with
    /// `etcdserver: permission denied` unless they may read every key of the range (`etcdserver: user
    /// name is empty` for an anonymous caller while auth is on). The plugin's grants still apply.
    pub fn for_caller(mut self) -> Self {
        self.caller = Some(CallerScope::Whole);
        self
    }

    /// Reads only the parts of the range the caller of the running call may read, skipping the rest:
    /// what a listing for a user shows. One revision for all parts; `count` and `more` are theirs. The
    /// plugin's grants still apply; an anonymous caller while auth is on gets `etcdserver: user name is
    /// empty`.
    pub fn readable_by_caller(mut self) -> Self {
        self.caller = Some(CallerScope::Readable);
        self
    }

    /// Runs the read.
    pub fn get(&self) -> Result<RangeResult> {
        match self.caller {
            None => host::range(&self.key, &self.range_end, self.limit, self.serializable),
            Some(scope) => host::range_for_caller(&self.key, &self.range_end, self.limit, self.serializable, scope),
        }
        .map_err(Error)
    }
}

/// The key-value pair at `key`, if there is one (linearizable).
pub fn get(key: impl AsRef<[u8]>) -> Result<Option<KeyValue>> {
    Ok(Range::key(key).get()?.kvs.into_iter().next())
}

/// Every key-value pair under `prefix`, in key order (linearizable, no limit; use [`Range`] for
/// limits and serializable reads).
pub fn range(prefix: impl AsRef<[u8]>) -> Result<RangeResult> {
    Range::prefix(prefix).get()
}

/// The store's current revision: a linearizable read of the key `"\0"`, so it needs a read grant
/// that covers that key (`read = [""]`, or just `read = ["\u0000"]`). A plugin that reads other
/// keys anyway gets the revision from their [`RangeResult::revision`] instead.
pub fn revision() -> Result<i64> {
    Ok(Range::key([0u8]).get()?.revision)
}

/// Writes `value` at `key` through raft; returns the revision of the write.
pub fn put(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<i64> {
    host::put(key.as_ref(), value.as_ref()).map_err(Error)
}

/// Deletes `key`; returns how many keys were deleted (0 or 1).
pub fn delete(key: impl AsRef<[u8]>) -> Result<i64> {
    host::delete(key.as_ref(), &[]).map_err(Error)
}

/// Deletes every key under `prefix` (refuses the empty prefix); returns how many were deleted.
pub fn delete_prefix(prefix: impl AsRef<[u8]>) -> Result<i64> {
    let prefix = prefix.as_ref();
    if prefix.is_empty() {
        return Err(Error("kv::delete_prefix: refusing to delete every key".into()));
    }
    host::delete(prefix, &prefix_end(prefix)).map_err(Error)
}

/// The range end that covers every key starting with `prefix`, as etcd computes it: the prefix
/// with its last byte below 0xff incremented (and what follows dropped), or `"\0"` (no end) when
/// every byte is 0xff or the prefix is empty.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl KeyValue {
    /// The key as UTF-8 (lossy).
    pub fn key_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.key)
    }

    /// The value as UTF-8 (lossy).
    pub fn value_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.value)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_like_etcd() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
        assert_eq!(Range::prefix(""), Range::between([0], [0]));
        assert_eq!(Range::prefix("x/"), Range::between("x/", "x0"));
    }
}

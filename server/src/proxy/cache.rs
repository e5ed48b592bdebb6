//! The proxy's read cache for serializable ranges (issue 15 item 4), safe where etcd's is not.
//!
//! ```text
//!   Range{serializable, revision 0} ─▶ key (caller's token, whole request) ─▶ hit: the stored answer
//!                                                                          └▶ miss: forwarded, stored
//!   upstream watch over every key (from "now") ─▶ each event drops the entries whose range holds its key
//!   an auth change through the proxy, a watch failure ─▶ everything dropped (no caching until it is back)
//! ```
//!
//! Why it cannot leak or go stale as etcd's does (etcd #22065: its key ignores the token; only writes
//! through the same proxy invalidate it):
//! - the caller's token is part of the key: an answer is only ever given back to the same token (a
//!   token is one user's; an anonymous call matches only anonymous calls);
//! - writes anywhere in the cluster reach the cache through its watch; an answer is stored only if it
//!   is not older than the last event seen and not older than the watch's start, so no event between
//!   the read and the store can be missed;
//! - auth changes made elsewhere are not visible in the key space, so an entry lives at most
//!   [`ENTRY_TTL`]: a revoked permission or a newly enabled auth is honoured within that time (a
//!   serializable read of etcd's may equally come from a member that has not applied the change yet).
//!   With auth enabled the proxy, which has no credentials, cannot watch: the cache then stays off.
//!
//! Bounded: [`MAX_ENTRIES`] entries and [`MAX_BYTES`] of answers; an answer over [`MAX_ENTRY_BYTES`] is
//! not stored; when full, the whole cache is dropped (simple, and a refill costs only reads).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use prost::Message;

use super::upstream::{Token, Upstream};
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse, WatchCreateRequest, WatchRequest};

pub const MAX_ENTRIES: usize = 2048;
pub const MAX_BYTES: usize = 64 << 20;
pub const MAX_ENTRY_BYTES: usize = 1 << 20;
pub const ENTRY_TTL: Duration = Duration::from_secs(5);
/// Pause before the invalidation watch is opened again.
const REWATCH: Duration = Duration::from_millis(500);

struct Entry {
    key: Vec<u8>,
    range_end: Vec<u8>,
    answer: RangeResponse,
    bytes: usize,
    stored: Instant,
}

#[derive(Default)]
struct State {
    entries: HashMap<(Option<Vec<u8>>, Vec<u8>), Entry>,
    bytes: usize,
    /// The revision from which the watch reports every change (None: no watch, nothing cached).
    watching_from: Option<i64>,
    /// The revision of the last event seen.
    seen: i64,
}

impl State {
    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

/// The cache; shared by the KV service and its invalidation task.
#[derive(Default)]
pub struct ReadCache {
    state: Mutex<State>,
    /// Cacheable ranges answered from the cache, and forwarded (`/metrics`).
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

/// Whether `k` is in the range `[key, range_end)` of a Range (etcd's conventions: empty end is the one key,
/// `\0` every key from `key`).
fn holds(key: &[u8], range_end: &[u8], k: &[u8]) -> bool {
    match range_end {
        [] => k == key,
        [0] => k >= key,
        end => k >= key && k < end,
    }
}

type Key = (Option<Vec<u8>>, Vec<u8>);

impl ReadCache {
    /// The cache key of `r` as sent by `token`, if it may be cached: serializable, at the current revision.
    pub fn key(r: &RangeRequest, token: &Token) -> Option<Key> {
        (r.serializable && r.revision == 0).then(|| (token.as_ref().map(|t| t.as_bytes().to_vec()), r.encode_to_vec()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &Key) -> Option<RangeResponse> {
        let found = self.lookup(key);
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn lookup(&self, key: &Key) -> Option<RangeResponse> {
        let mut s = self.lock();
        let fresh = s.entries.get(key).map(|e| e.stored.elapsed() < ENTRY_TTL)?;
        if !fresh {
            let e = s.entries.remove(key).expect("present");
            s.bytes -= e.bytes;
            return None;
        }
        s.entries.get(key).map(|e| e.answer.clone())
    }

    /// Stores `answer` to `r` unless an event it may not reflect could have been missed.
    pub fn put(&self, key: Key, r: &RangeRequest, answer: &RangeResponse) {
        let rev = answer.header.as_ref().map_or(0, |h| h.revision);
        let bytes = answer.encoded_len() + key.1.len();
        let mut s = self.lock();
        let Some(from) = s.watching_from else { return };
        if rev < from || rev < s.seen || bytes > MAX_ENTRY_BYTES {
            return;
        }
        if s.entries.len() >= MAX_ENTRIES || s.bytes + bytes > MAX_BYTES {
            s.clear();
        }
        let entry = Entry {
            key: r.key.clone(),
            range_end: r.range_end.clone(),
            answer: answer.clone(),
            bytes,
            stored: Instant::now(),
        };
        s.bytes += bytes;
        if let Some(old) = s.entries.insert(key, entry) {
            s.bytes -= old.bytes;
        }
    }

    /// Drops everything (an auth change went through the proxy).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Drops the entries holding `k`, changed at `rev`.
    fn changed(&self, k: &[u8], rev: i64) {
        let mut s = self.lock();
        s.seen = s.seen.max(rev);
        let mut freed = 0;
        s.entries.retain(|_, e| {
            let keep = !holds(&e.key, &e.range_end, k);
            if !keep {
                freed += e.bytes;
            }
            keep
        });
        s.bytes -= freed;
    }

    fn set_watching(&self, from: Option<i64>) {
        let mut s = self.lock();
        s.clear();
        s.watching_from = from;
        if let Some(f) = from {
            s.seen = s.seen.max(f);
        }
    }

    /// Watches every key from now on and drops what each change touches; while the watch is down
    /// nothing is cached. Ends when `stop` turns true.
    pub async fn invalidate_loop(self: Arc<Self>, up: Arc<Upstream>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = self.clone().watch_once(&up) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            self.set_watching(None);
            tokio::select! {
                _ = tokio::time::sleep(REWATCH) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    async fn watch_once(self: Arc<Self>, up: &Upstream) {
        let (url, channel) = up.channel();
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        if tx.send(create).await.is_err() {
            return;
        }
        let mut client = WatchClient::new(channel).max_decoding_message_size(up.max_recv);
        let mut answers = match client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
            Ok(a) => a.into_inner(),
            Err(e) => {
                tracing::debug!(member = url, status = ?e, "read cache: cannot watch; not caching");
                return;
            }
        };
        while let Some(Ok(a)) = answers.next().await {
            if a.canceled {
                tracing::debug!(member = url, reason = a.cancel_reason, "read cache: watch refused; not caching");
                return;
            }
            if a.created {
                self.set_watching(Some(a.header.as_ref().map_or(0, |h| h.revision)));
                continue;
            }
            for ev in &a.events {
                if let Some(kv) = &ev.kv {
                    self.changed(&kv.key, kv.mod_revision);
                }
            }
        }
        drop(tx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::ResponseHeader;

    fn answer(rev: i64) -> RangeResponse {
        RangeResponse { header: Some(ResponseHeader { revision: rev, ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn ranges_and_tokens_and_revisions() {
        assert!(holds(b"a", b"", b"a") && !holds(b"a", b"", b"ab"));
        assert!(holds(b"a", b"b", b"ab") && !holds(b"a", b"b", b"b"));
        assert!(holds(b"a", &[0], b"zz") && !holds(b"b", &[0], b"a"));

        let c = ReadCache::default();
        let r = RangeRequest { key: b"k".to_vec(), serializable: true, ..Default::default() };
        let alice: Token = Some("alice.1".parse().unwrap());
        let k = ReadCache::key(&r, &alice).unwrap();
        c.put(k.clone(), &r, &answer(5));
        assert!(c.get(&k).is_none(), "nothing is cached without the watch");
        c.set_watching(Some(5));
        c.put(k.clone(), &r, &answer(4));
        assert!(c.get(&k).is_none(), "older than the watch");
        c.put(k.clone(), &r, &answer(5));
        assert_eq!(c.get(&k), Some(answer(5)));
        assert!(c.get(&ReadCache::key(&r, &None).unwrap()).is_none(), "another caller");
        c.changed(b"other", 6);
        assert!(c.get(&k).is_some());
        c.changed(b"k", 7);
        assert!(c.get(&k).is_none(), "invalidated");
        c.put(k.clone(), &r, &answer(6));
        assert!(c.get(&k).is_none(), "older than the last event seen");
        let linear = RangeRequest { serializable: false, ..r.clone() };
        assert!(ReadCache::key(&linear, &alice).is_none());
        assert!(ReadCache::key(&RangeRequest { revision: 3, ..r }, &alice).is_none());
    }
}

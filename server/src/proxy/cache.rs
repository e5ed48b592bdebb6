//! The proxy's read cache for serializable ranges (issue 15 item 4), safe where etcd's is not, with auth
//! off and on.
//!
//! ```text
//!   Range{serializable, revision 0} ─▶ key (caller's token, whole request) ─▶ hit: the stored answer
//!                                                                          └▶ miss: forwarded; the answer
//!                                                                             stored if a watch guards it
//!   guards  auth off: one upstream watch over every key, no token ("global"); each event drops the
//!                     entries whose range holds its key
//!           auth on (the global watch is refused): one upstream watch per range (key, range end), opened
//!                     with the token of a caller whose read of that range just succeeded (that answer is
//!                     not stored; the next ones are, once it is created), shared by every caller's
//!                     entries of that range; each event in it drops them all
//!   auth change through the proxy ─▶ everything dropped, the global watch tried again at once
//!   auth enabled elsewhere ─▶ found when an anonymous read is refused for want of a user: the global
//!                            watch's entries dropped, the watch tried again (refused: auth on)
//!   auth disabled elsewhere ─▶ the global watch, tried every REWATCH while refused, opens: everything
//!                            dropped, the range watches closed
//! ```
//!
//! One watch per range rather than per token and range: a hundred users reading one key cost one
//! upstream watch, not a hundred.
//!
//! Why it cannot leak or go stale as etcd's does (etcd #22065: its key ignores the token; only writes
//! through the same proxy invalidate it):
//! - the caller's token is part of the key: an answer is only ever given back to the token it was given
//!   to, by a member, moments before (an anonymous call matches only anonymous calls). A range watch
//!   only ever drops entries; that it was opened with another caller's token gives nobody anything (the
//!   callers whose entries it guards were each answered the range by a member themselves);
//! - writes anywhere in the cluster reach the cache through the watches; an answer is stored only if it
//!   is not older than its watch's start nor than the last event the watch brought, so no event between
//!   the read and the store can be missed (revisions are the cluster's: this holds when the read and the
//!   watch went to different members);
//! - permissions are checked by the members, when the answer is made: a revoked role, a deleted user,
//!   an expired token or a newly enabled auth are not visible in the key space, so an entry lives at
//!   most [`ENTRY_TTL`]: such a change is honoured within that time. A serializable read of etcd's is
//!   equally allowed to come from a member that has not applied the change yet (a lagging follower
//!   answers with its own, older, auth state), so the bound is of the same nature, only explicit. A
//!   change made through this proxy drops everything at once.
//!
//! Bounded: [`MAX_ENTRIES`] entries and [`MAX_BYTES`] of answers; an answer over [`MAX_ENTRY_BYTES`] is
//! not stored; when full, the whole cache is dropped (simple, and a refill costs only reads). At most
//! [`MAX_WATCHES`] range watches: one whose entries have all expired is closed to make room (and closes
//! itself after [`WATCH_IDLE`] unused); when every one is in use, further ranges are not cached. A range
//! watch is opened only after its range was read successfully, so a caller without permission costs no
//! watch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use prost::Message;
use tokio::sync::Notify;
use tokio_stream::wrappers::ReceiverStream;

use super::upstream::{with_token, Token, Upstream};
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse, WatchCreateRequest, WatchRequest};

pub const MAX_ENTRIES: usize = 2048;
pub const MAX_BYTES: usize = 64 << 20;
pub const MAX_ENTRY_BYTES: usize = 1 << 20;
pub const ENTRY_TTL: Duration = Duration::from_secs(5);
/// Range watches open at most (auth on).
pub const MAX_WATCHES: usize = 256;
/// A range watch no entry was stored under for this long closes.
pub const WATCH_IDLE: Duration = Duration::from_secs(30);
/// Pause before the global watch is tried again (after a failure, or a refusal: auth on).
const REWATCH: Duration = Duration::from_secs(1);
/// How long a watch may take to be opened.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Which watch drops an entry when its range changes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Guard {
    Global,
    Range(u64),
}

struct Entry {
    key: Vec<u8>,
    range_end: Vec<u8>,
    answer: RangeResponse,
    bytes: usize,
    stored: Instant,
    guard: Guard,
}

/// A range (key, range end).
type Range = (Vec<u8>, Vec<u8>);

/// An upstream watch over one range, opened with the token of a caller allowed to read it.
struct RangeWatch {
    id: u64,
    /// The revision after which it reports every change (None until created).
    from: Option<i64>,
    /// The revision of the last event it brought.
    seen: i64,
    /// When it was opened or last guarded a new entry.
    used: Instant,
    task: Option<tokio::task::AbortHandle>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    bytes: usize,
    /// The revision from which the global watch reports every change (None: it is not open).
    global: Option<i64>,
    /// The revision of the last event the global watch brought.
    seen: i64,
    ranges: HashMap<Range, RangeWatch>,
    next_id: u64,
}

impl State {
    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    fn drop_where(&mut self, mut gone: impl FnMut(&Entry) -> bool) {
        let mut freed = 0;
        self.entries.retain(|_, e| {
            let drop = gone(e);
            if drop {
                freed += e.bytes;
            }
            !drop
        });
        self.bytes -= freed;
    }

    fn close_ranges(&mut self) {
        for (_, w) in self.ranges.drain() {
            if let Some(t) = w.task {
                t.abort();
            }
        }
    }

    /// Closes the range watches whose entries have all expired (to make room).
    fn close_idle(&mut self) {
        let idle: Vec<u64> = self.ranges.values().filter(|w| w.used.elapsed() > ENTRY_TTL).map(|w| w.id).collect();
        self.ranges.retain(|_, w| {
            let keep = !idle.contains(&w.id);
            if let (false, Some(t)) = (keep, &w.task) {
                t.abort();
            }
            keep
        });
        self.drop_where(|e| matches!(e.guard, Guard::Range(id) if idle.contains(&id)));
    }
}

/// The cache; shared by the KV service, the Auth service and the invalidation tasks.
#[derive(Default)]
pub struct ReadCache {
    state: Mutex<State>,
    /// Cacheable ranges answered from the cache, and forwarded (`/metrics`).
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Wakes the global watch's loop to open it again at once (auth may have changed).
    recheck: Notify,
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

/// What [`ReadCache::store`] decided.
#[derive(Debug, PartialEq, Eq)]
enum Stored {
    Yes,
    No,
    /// Not stored; a range watch `id` is to be opened so that the next answer can be.
    OpenWatch(u64),
}

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

    /// `answer` was given to `token` for `r` (cache key `key`) by a member: stored if a watch guards it
    /// (with auth on, the first answer for a range opens the watch over it with this token).
    pub fn put(
        self: &Arc<Self>,
        key: Key,
        r: &RangeRequest,
        answer: &RangeResponse,
        token: &Token,
        up: &Arc<Upstream>,
    ) {
        if let Stored::OpenWatch(id) = self.store(key, r, answer, token.is_some()) {
            let range = (r.key.clone(), r.range_end.clone());
            let task = tokio::spawn(self.clone().range_watch(up.clone(), id, range.clone(), token.clone()));
            if let Some(w) = self.lock().ranges.get_mut(&range).filter(|w| w.id == id) {
                w.task = Some(task.abort_handle());
            }
        }
    }

    fn store(&self, key: Key, r: &RangeRequest, answer: &RangeResponse, has_token: bool) -> Stored {
        let rev = answer.header.as_ref().map_or(0, |h| h.revision);
        let bytes = answer.encoded_len() + key.1.len();
        if bytes > MAX_ENTRY_BYTES {
            return Stored::No;
        }
        let mut s = self.lock();
        let guard = if let Some(from) = s.global {
            if rev < from || rev < s.seen {
                return Stored::No;
            }
            Guard::Global
        } else if has_token {
            let range = (r.key.clone(), r.range_end.clone());
            match s.ranges.get_mut(&range) {
                Some(w) => match w.from {
                    Some(from) if rev >= from && rev >= w.seen => {
                        w.used = Instant::now();
                        Guard::Range(w.id)
                    }
                    _ => return Stored::No,
                },
                None => {
                    if s.ranges.len() >= MAX_WATCHES {
                        s.close_idle();
                    }
                    if s.ranges.len() >= MAX_WATCHES {
                        return Stored::No;
                    }
                    s.next_id += 1;
                    let id = s.next_id;
                    s.ranges.insert(range, RangeWatch { id, from: None, seen: 0, used: Instant::now(), task: None });
                    return Stored::OpenWatch(id);
                }
            }
        } else {
            // Anonymous, and no global watch: auth is on (the member refuses the call) or the cluster is
            // out of reach.
            return Stored::No;
        };
        if s.entries.len() >= MAX_ENTRIES || s.bytes + bytes > MAX_BYTES {
            s.clear();
        }
        let entry = Entry {
            key: r.key.clone(),
            range_end: r.range_end.clone(),
            answer: answer.clone(),
            bytes,
            stored: Instant::now(),
            guard,
        };
        s.bytes += bytes;
        if let Some(old) = s.entries.insert(key, entry) {
            s.bytes -= old.bytes;
        }
        Stored::Yes
    }

    /// Drops everything and tries the global watch again at once (an auth change went through the
    /// proxy: auth may have been enabled or disabled).
    pub fn clear(&self) {
        self.lock().clear();
        self.recheck.notify_one();
    }

    /// A cacheable read was refused: if it was anonymous and refused for want of a user, auth is on; the
    /// anonymous entries go and the global watch (which the members may keep open after auth was
    /// enabled) is tried again.
    pub fn refused(&self, token: &Token, status: &tonic::Status) {
        if token.is_none() && status.message() == crate::error::Error::UserEmpty.to_string() {
            let mut s = self.lock();
            s.drop_where(|e| e.guard == Guard::Global);
            if s.global.is_some() {
                s.global = None;
                self.recheck.notify_one();
            }
        }
    }

    /// The global watch saw `k` changed at `rev`: the entries holding it go.
    fn changed(&self, k: &[u8], rev: i64) {
        let mut s = self.lock();
        s.seen = s.seen.max(rev);
        s.drop_where(|e| e.guard == Guard::Global && holds(&e.key, &e.range_end, k));
    }

    /// The global watch opened from `from` (auth off): everything cached so far goes, and the range
    /// watches, not needed while it is open; or it closed (None): the entries it guarded go.
    fn set_watching(&self, from: Option<i64>) {
        let mut s = self.lock();
        s.global = from;
        match from {
            Some(f) => {
                s.clear();
                s.seen = s.seen.max(f);
                s.close_ranges();
            }
            None => s.drop_where(|e| e.guard == Guard::Global),
        }
    }

    /// The range watch `id` over `range` was created at `from`.
    fn range_created(&self, range: &Range, id: u64, from: i64) {
        if let Some(w) = self.lock().ranges.get_mut(range).filter(|w| w.id == id) {
            w.from = Some(from);
            w.seen = from;
        }
    }

    /// The range watch `id` brought a change at `rev`: every entry it guards goes.
    fn range_changed(&self, range: &Range, id: u64, rev: i64) {
        let mut s = self.lock();
        if let Some(w) = s.ranges.get_mut(range).filter(|w| w.id == id) {
            w.seen = w.seen.max(rev);
        }
        s.drop_where(|e| e.guard == Guard::Range(id));
    }

    /// The range watch `id` ended (refused, failed, idle): it and every entry it guards go.
    fn range_ended(&self, range: &Range, id: u64) {
        let mut s = self.lock();
        if s.ranges.get(range).is_some_and(|w| w.id == id) {
            s.ranges.remove(range);
        }
        s.drop_where(|e| e.guard == Guard::Range(id));
    }

    /// Whether the range watch `id` has guarded nothing new for [`WATCH_IDLE`] (or is gone).
    fn range_idle(&self, range: &Range, id: u64) -> bool {
        self.lock().ranges.get(range).filter(|w| w.id == id).is_none_or(|w| w.used.elapsed() > WATCH_IDLE)
    }

    /// etcd's proxy's cache gauges (`etcd_grpc_proxy_cache_*`, same names and types), and the upstream
    /// watches guarding the cache.
    pub fn metrics_text(&self) -> String {
        let (keys, watches) = {
            let s = self.lock();
            (s.entries.len(), s.ranges.len() + usize::from(s.global.is_some()))
        };
        format!(
            "# HELP etcd_grpc_proxy_cache_keys_total Total number of keys/ranges cached\n\
             # TYPE etcd_grpc_proxy_cache_keys_total gauge\netcd_grpc_proxy_cache_keys_total {keys}\n\
             # HELP etcd_grpc_proxy_cache_hits_total Total number of cache hits\n\
             # TYPE etcd_grpc_proxy_cache_hits_total gauge\netcd_grpc_proxy_cache_hits_total {}\n\
             # HELP etcd_grpc_proxy_cache_misses_total Total number of cache misses\n\
             # TYPE etcd_grpc_proxy_cache_misses_total gauge\netcd_grpc_proxy_cache_misses_total {}\n\
             # HELP modkv_proxy_cache_watches Upstream watches keeping the read cache fresh (1 with auth off).\n\
             # TYPE modkv_proxy_cache_watches gauge\nmodkv_proxy_cache_watches {watches}\n",
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Keeps the global watch open: watches every key from now on and drops what each change touches;
    /// while it is not open (refused with auth on, or no member reachable) it is tried again every
    /// [`REWATCH`], or at once after [`ReadCache::clear`]. Ends when `stop` turns true, closing the range
    /// watches.
    pub async fn invalidate_loop(self: Arc<Self>, up: Arc<Upstream>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let again_now = tokio::select! {
                _ = self.clone().watch_once(&up) => false,
                _ = self.recheck.notified() => true,
                _ = stop.wait_for(|s| *s) => break,
            };
            self.set_watching(None);
            if again_now {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(REWATCH) => {}
                _ = self.recheck.notified() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        self.lock().close_ranges();
    }

    /// Opens a watch of `range` with `token` on the member in use; the events it brings, until it ends.
    async fn open(
        up: &Upstream,
        range: &Range,
        token: &Token,
    ) -> Option<(tokio::sync::mpsc::Sender<WatchRequest>, tonic::Streaming<crate::proto::etcdserverpb::WatchResponse>)>
    {
        let (url, channel) = up.channel();
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: range.0.clone(),
                range_end: range.1.clone(),
                ..Default::default()
            })),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(create).await.ok()?;
        let mut client = WatchClient::new(channel).max_decoding_message_size(up.max_recv);
        match tokio::time::timeout(OPEN_TIMEOUT, client.watch(with_token(ReceiverStream::new(rx), token))).await {
            Ok(Ok(a)) => Some((tx, a.into_inner())),
            Ok(Err(e)) => {
                tracing::debug!(member = url, status = ?e, "read cache: cannot watch");
                None
            }
            Err(_) => None,
        }
    }

    async fn watch_once(self: Arc<Self>, up: &Upstream) {
        let Some((_tx, mut answers)) = Self::open(up, &(vec![0], vec![0]), &None).await else { return };
        while let Some(Ok(a)) = answers.next().await {
            if a.canceled {
                tracing::debug!(reason = a.cancel_reason, "read cache: global watch refused (auth on?)");
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
    }

    /// The range watch `id`: open with `token` until refused, failed or idle for [`WATCH_IDLE`].
    async fn range_watch(self: Arc<Self>, up: Arc<Upstream>, id: u64, range: Range, token: Token) {
        if let Some((_tx, mut answers)) = Self::open(&up, &range, &token).await {
            let mut idle = tokio::time::interval(ENTRY_TTL);
            loop {
                tokio::select! {
                    a = answers.next() => {
                        let Some(Ok(a)) = a else { break };
                        if a.canceled {
                            tracing::debug!(reason = a.cancel_reason, "read cache: range watch refused");
                            break;
                        }
                        if a.created {
                            self.range_created(&range, id, a.header.as_ref().map_or(0, |h| h.revision));
                        }
                        if let Some(rev) = a.events.iter().filter_map(|e| e.kv.as_ref()).map(|kv| kv.mod_revision).max() {
                            self.range_changed(&range, id, rev);
                        }
                    }
                    _ = idle.tick() => if self.range_idle(&range, id) { break },
                }
            }
        }
        self.range_ended(&range, id);
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
        let k = ReadCache::key(&r, &None).unwrap();
        assert_eq!(c.store(k.clone(), &r, &answer(5), false), Stored::No, "nothing is cached without the watch");
        c.set_watching(Some(5));
        assert_eq!(c.store(k.clone(), &r, &answer(4), false), Stored::No, "older than the watch");
        assert_eq!(c.store(k.clone(), &r, &answer(5), false), Stored::Yes);
        assert_eq!(c.get(&k), Some(answer(5)));
        let alice: Token = Some("alice.1".parse().unwrap());
        assert!(c.get(&ReadCache::key(&r, &alice).unwrap()).is_none(), "another caller");
        c.changed(b"other", 6);
        assert!(c.get(&k).is_some());
        c.changed(b"k", 7);
        assert!(c.get(&k).is_none(), "invalidated");
        assert_eq!(c.store(k.clone(), &r, &answer(6), false), Stored::No, "older than the last event seen");
        let linear = RangeRequest { serializable: false, ..r.clone() };
        assert!(ReadCache::key(&linear, &alice).is_none());
        assert!(ReadCache::key(&RangeRequest { revision: 3, ..r }, &alice).is_none());
    }

    /// Auth on: no global watch; a tokened answer opens the range's watch, the next answers are stored
    /// under it once it is created, for their own token only; its events and its end drop them.
    #[test]
    fn range_watches_with_auth_on() {
        let c = ReadCache::default();
        let r =
            RangeRequest { key: b"a/".to_vec(), range_end: b"a0".to_vec(), serializable: true, ..Default::default() };
        let range = (r.key.clone(), r.range_end.clone());
        let (alice, bob): (Token, Token) = (Some("alice.1".parse().unwrap()), Some("bob.2".parse().unwrap()));
        let (ka, kb) = (ReadCache::key(&r, &alice).unwrap(), ReadCache::key(&r, &bob).unwrap());
        assert_eq!(c.store(ReadCache::key(&r, &None).unwrap(), &r, &answer(5), false), Stored::No, "anonymous");
        assert_eq!(c.store(ka.clone(), &r, &answer(5), true), Stored::OpenWatch(1));
        assert_eq!(c.store(ka.clone(), &r, &answer(5), true), Stored::No, "the watch is not created yet");
        c.range_created(&range, 1, 6);
        assert_eq!(c.store(ka.clone(), &r, &answer(5), true), Stored::No, "older than the watch");
        assert_eq!(c.store(ka.clone(), &r, &answer(6), true), Stored::Yes);
        assert_eq!(c.store(kb.clone(), &r, &answer(6), true), Stored::Yes, "bob's answer, same watch");
        assert_eq!(c.get(&ka), Some(answer(6)));
        assert!(c.get(&ReadCache::key(&r, &None).unwrap()).is_none());
        c.set_watching(None);
        assert_eq!(c.get(&kb), Some(answer(6)), "the global watch failing again leaves the range's entries");
        c.range_changed(&range, 1, 8);
        assert!(c.get(&ka).is_none() && c.get(&kb).is_none(), "an event drops every entry of the range");
        assert_eq!(c.store(ka.clone(), &r, &answer(7), true), Stored::No, "older than the last event");
        assert_eq!(c.store(ka.clone(), &r, &answer(8), true), Stored::Yes);
        c.range_ended(&range, 1);
        assert!(c.get(&ka).is_none(), "the watch ended");
        assert_eq!(c.store(ka.clone(), &r, &answer(8), true), Stored::OpenWatch(2));
        // The global watch opening (auth disabled) closes the range watches.
        c.set_watching(Some(9));
        assert!(c.lock().ranges.is_empty());
        assert_eq!(c.store(ka.clone(), &r, &answer(9), true), Stored::Yes);
        // An anonymous read refused for want of a user: auth is on, the global watch is no guard.
        c.refused(&None, &tonic::Status::invalid_argument(crate::error::Error::UserEmpty.to_string()));
        assert!(c.get(&ka).is_none() && c.lock().global.is_none());
    }

    #[test]
    fn range_watches_are_bounded() {
        let c = ReadCache::default();
        let alice: Token = Some("alice.1".parse().unwrap());
        let req =
            |i: usize| RangeRequest { key: format!("k{i}").into_bytes(), serializable: true, ..Default::default() };
        for i in 0..MAX_WATCHES {
            let r = req(i);
            assert!(matches!(c.store(ReadCache::key(&r, &alice).unwrap(), &r, &answer(5), true), Stored::OpenWatch(_)));
        }
        let r = req(MAX_WATCHES);
        assert_eq!(c.store(ReadCache::key(&r, &alice).unwrap(), &r, &answer(5), true), Stored::No, "full");
        // One whose entries have all expired makes room.
        c.lock().ranges.get_mut(&(b"k0".to_vec(), vec![])).unwrap().used -= ENTRY_TTL * 2;
        assert!(matches!(c.store(ReadCache::key(&r, &alice).unwrap(), &r, &answer(5), true), Stored::OpenWatch(_)));
        assert_eq!(c.lock().ranges.len(), MAX_WATCHES);
    }
}

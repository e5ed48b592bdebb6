//! Watch coalescing: watchers of the same range, options and caller that start "now" (no start
//! revision) share one upstream watch, a [`Group`]; its events are fanned out to every subscriber in
//! order. The caller (token) is part of the key, so a watch is never served on another user's
//! permission.
//!
//! ```text
//!   session A ─ create(k, rev 0) ─▶ Hub::join ─▶ Group(k) ─ one upstream watch (watch::session: failover
//!   session B ─ create(k, rev 0) ─┘      │                   and resume included)
//!                                        └─ events ─▶ each subscriber from the revision after the group's
//!                                           header when it joined (as a watch created then would see them)
//! ```
//!
//! A subscriber whose session does not keep up (its channel full) is dropped and its session ends
//! with an error (etcd's proxy cancels such a client's stream too); the others go on. A group whose
//! last subscriber left ends, and with it its upstream watch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::ReceiverStream;

use super::namespace::Namespace;
use super::upstream::{Token, Upstream};
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse};

/// How often a group looks for subscribers whose session has gone.
const PRUNE_EVERY: Duration = Duration::from_secs(2);

/// (token, key, range end, prev_kv, filters): what makes watches shareable.
type GroupKey = (Option<Vec<u8>>, Vec<u8>, Vec<u8>, bool, Vec<i32>);

/// Where a session hears its coalesced watches.
#[derive(Clone)]
pub struct Subscriber {
    pub tx: mpsc::Sender<WatchResponse>,
    /// Notified when this session was dropped for not keeping up.
    pub overflow: Arc<Notify>,
}

struct Sub {
    id: i64,
    /// The first revision this subscriber is due (0 until the group's watch is created).
    start: i64,
    to: Subscriber,
}

#[derive(Default)]
struct State {
    header: Option<ResponseHeader>,
    subs: Vec<Sub>,
    closed: bool,
}

/// One upstream watch shared by its subscribers.
#[derive(Default)]
pub struct Group {
    state: Mutex<State>,
}

/// The groups of a proxy.
pub struct Hub {
    up: Arc<Upstream>,
    groups: Mutex<HashMap<GroupKey, Arc<Group>>>,
    /// Upstream watches (groups) open, and the client watches they serve.
    pub upstream_watches: AtomicI64,
    pub coalesced_watchers: AtomicI64,
}

/// Whether a create may share a group: it starts now, whole responses, no progress notifications.
pub fn shareable(c: &WatchCreateRequest) -> bool {
    c.start_revision == 0 && !c.fragment && !c.progress_notify
}

impl Hub {
    pub fn new(up: Arc<Upstream>) -> Arc<Hub> {
        Arc::new(Hub {
            up,
            groups: Mutex::new(HashMap::new()),
            upstream_watches: AtomicI64::new(0),
            coalesced_watchers: AtomicI64::new(0),
        })
    }

    /// Subscribes watch `id` of a session to the group of `create` (namespaced already), starting one.
    pub fn join(self: &Arc<Self>, token: &Token, create: &WatchCreateRequest, id: i64, to: Subscriber) -> Arc<Group> {
        let key: GroupKey = (
            token.as_ref().map(|t| t.as_bytes().to_vec()),
            create.key.clone(),
            create.range_end.clone(),
            create.prev_kv,
            create.filters.clone(),
        );
        let mut groups = self.groups.lock().expect("groups lock");
        loop {
            let group = match groups.get(&key) {
                Some(g) => g.clone(),
                None => {
                    let g = Arc::new(Group::default());
                    groups.insert(key.clone(), g.clone());
                    tokio::spawn(self.clone().run(key.clone(), g.clone(), token.clone(), create.clone()));
                    g
                }
            };
            let mut st = group.state.lock().expect("group lock");
            if st.closed {
                drop(st);
                groups.remove(&key);
                continue;
            }
            let mut start = 0;
            if let Some(h) = &st.header {
                start = h.revision + 1;
                let created =
                    WatchResponse { header: Some(h.clone()), watch_id: id, created: true, ..Default::default() };
                if to.tx.try_send(created).is_err() {
                    to.overflow.notify_one();
                }
            }
            st.subs.push(Sub { id, start, to });
            self.coalesced_watchers.fetch_add(1, Ordering::Relaxed);
            drop(st);
            return group;
        }
    }

    /// The shared upstream watch of `group` until it has no subscriber left or fails.
    async fn run(self: Arc<Self>, key: GroupKey, group: Arc<Group>, token: Token, create: WatchCreateRequest) {
        self.upstream_watches.fetch_add(1, Ordering::Relaxed);
        let (req_tx, req_rx) = mpsc::channel(1);
        let create = WatchCreateRequest { watch_id: 0, ..create };
        let _ = req_tx.try_send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) });
        let requests = ReceiverStream::new(req_rx).map(Ok);
        let mut answers = super::watch::session(self.up.clone(), Namespace::default(), None, token, Box::pin(requests));
        loop {
            tokio::select! {
                answer = answers.recv() => match answer {
                    Some(Ok(r)) => {
                        if !group.deliver(r, &self) {
                            break;
                        }
                    }
                    Some(Err(_)) | None => {
                        group.cancel_all(&self);
                        break;
                    }
                },
                _ = tokio::time::sleep(PRUNE_EVERY) => {
                    if !group.prune(&self) {
                        break;
                    }
                }
            }
        }
        group.state.lock().expect("group lock").closed = true;
        let mut groups = self.groups.lock().expect("groups lock");
        if groups.get(&key).is_some_and(|g| Arc::ptr_eq(g, &group)) {
            groups.remove(&key);
        }
        drop(req_tx);
        self.upstream_watches.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Group {
    /// Removes watch `id` of the session sending to `tx`; the header of the group for its cancel answer.
    pub fn leave(&self, id: i64, tx: &mpsc::Sender<WatchResponse>, hub: &Hub) -> Option<ResponseHeader> {
        let mut st = self.state.lock().expect("group lock");
        let before = st.subs.len();
        st.subs.retain(|s| !(s.id == id && s.to.tx.same_channel(tx)));
        hub.coalesced_watchers.fetch_sub((before - st.subs.len()) as i64, Ordering::Relaxed);
        st.header.clone()
    }

    /// Drops the subscribers whose session has gone; false when none is left (the group ends).
    fn prune(&self, hub: &Hub) -> bool {
        let mut st = self.state.lock().expect("group lock");
        let before = st.subs.len();
        st.subs.retain(|s| !s.to.tx.is_closed());
        hub.coalesced_watchers.fetch_sub((before - st.subs.len()) as i64, Ordering::Relaxed);
        if st.subs.is_empty() {
            st.closed = true;
        }
        !st.closed
    }

    /// Every subscriber hears that its watch was cancelled (the group's watch was).
    fn cancel_all(&self, hub: &Hub) {
        let mut st = self.state.lock().expect("group lock");
        let header = st.header.clone();
        for s in st.subs.drain(..) {
            let r = WatchResponse { header: header.clone(), watch_id: s.id, canceled: true, ..Default::default() };
            let _ = s.to.tx.try_send(r);
            hub.coalesced_watchers.fetch_sub(1, Ordering::Relaxed);
        }
        st.closed = true;
    }

    /// Fans one upstream answer out; false when the group is done.
    fn deliver(&self, r: WatchResponse, hub: &Hub) -> bool {
        if r.canceled {
            let mut st = self.state.lock().expect("group lock");
            for s in st.subs.drain(..) {
                let out = WatchResponse { watch_id: s.id, created: false, ..r.clone() };
                let _ = s.to.tx.try_send(out);
                hub.coalesced_watchers.fetch_sub(1, Ordering::Relaxed);
            }
            st.closed = true;
            return false;
        }
        let mut st = self.state.lock().expect("group lock");
        let rev = r.header.as_ref().map_or(0, |h| h.revision);
        if r.created {
            st.header = r.header.clone();
        } else if st.header.as_ref().is_none_or(|h| h.revision < rev) {
            st.header = r.header.clone();
        }
        let mut dropped = 0;
        st.subs.retain_mut(|s| {
            let out = if r.created {
                if s.start != 0 {
                    return true;
                }
                s.start = rev + 1;
                WatchResponse { watch_id: s.id, ..r.clone() }
            } else {
                let events: Vec<_> = r
                    .events
                    .iter()
                    .filter(|e| e.kv.as_ref().is_none_or(|kv| kv.mod_revision >= s.start))
                    .cloned()
                    .collect();
                if events.is_empty() {
                    return true;
                }
                WatchResponse { watch_id: s.id, events, ..r.clone() }
            };
            match s.to.tx.try_send(out) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.to.overflow.notify_one();
                    dropped += 1;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    dropped += 1;
                    false
                }
            }
        });
        hub.coalesced_watchers.fetch_sub(dropped, Ordering::Relaxed);
        if st.subs.is_empty() {
            st.closed = true;
            return false;
        }
        true
    }
}

//! `etcdserverpb.Watch` forwarded: each client stream has one upstream stream on the pinned member,
//! the same ids on both. When that member fails (or stops) the stream is reopened on another member
//! and every open watch is created again from the revision after the last one its client has seen,
//! so no event is lost or repeated; the client sees nothing of it.
//!
//! ```text
//!   client ─ create / cancel / progress ─▶ session ─▶ upstream stream (member A)
//!          ◀─ responses (namespace stripped) ─┘          │ fails
//!                                          reopened on member B: create(id, start = next revision)
//!                                                         for each open watch; their `created` dropped
//! ```
//!
//! A watch remembers its create request and the next revision its client is due; events below it
//! (repeats after a resume) are dropped. The proxy chooses the watch ids (the client's own if it gives
//! one) and creates upstream watches with them. A watch that starts now joins a shared upstream watch
//! of the same range and caller instead ([`super::coalesce`]).

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::coalesce::{shareable, Group, Hub, Subscriber};
use super::namespace::Namespace;
use super::upstream::{is_transport_failure, token_of, with_token, Token, Upstream};
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};

/// Responses buffered towards one client stream.
const OUT_BUFFER: usize = 128;
/// Answers of shared watches buffered per session; a session that falls this far behind is dropped.
const SHARED_BUFFER: usize = 1024;
/// The error ending a session that does not read its shared watches' events fast enough.
const ERR_TOO_SLOW: &str = "modkv proxy: the client reads its watch events too slowly";
/// Pause before reopening a failed upstream stream.
const REOPEN_PAUSE: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct WatchProxy {
    pub up: Arc<Upstream>,
    pub ns: Namespace,
    pub hub: Arc<Hub>,
}

pub type WatchRequests = Pin<Box<dyn Stream<Item = Result<WatchRequest, Status>> + Send>>;
type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchProxy {
    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        let token = token_of(&req);
        let rx = session(self.up.clone(), self.ns.clone(), Some(self.hub.clone()), token, Box::pin(req.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Runs one client's watch session over `requests`; the responses come out of the returned channel.
/// With `hub`, watches that start now share upstream watches.
pub fn session(
    up: Arc<Upstream>,
    ns: Namespace,
    hub: Option<Arc<Hub>>,
    token: Token,
    requests: WatchRequests,
) -> mpsc::Receiver<Result<WatchResponse, Status>> {
    let (tx, rx) = mpsc::channel(OUT_BUFFER);
    let (shared_tx, shared) = mpsc::channel(SHARED_BUFFER);
    let sub = Subscriber { tx: shared_tx, overflow: Arc::new(Notify::new()) };
    let s = Session {
        up,
        ns,
        token,
        tx,
        watches: HashMap::new(),
        pending: VecDeque::new(),
        hub,
        sub,
        shared,
        joined: HashMap::new(),
        next_id: 0,
        outbox: Vec::new(),
    };
    tokio::spawn(s.run(requests));
    rx
}

struct Watched {
    /// As sent upstream (namespaced).
    create: WatchCreateRequest,
    /// The revision the client's next event has at least.
    next_rev: i64,
}

/// A create sent upstream, waiting for its `created` answer (answered in order).
enum Pending {
    /// A client's: its answer goes to the client.
    Fresh(WatchCreateRequest),
    /// An open watch created again after a failover: its answer is dropped.
    Resume(i64),
}

struct Session {
    up: Arc<Upstream>,
    ns: Namespace,
    token: Token,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
    watches: HashMap<i64, Watched>,
    pending: VecDeque<Pending>,
    hub: Option<Arc<Hub>>,
    /// Where this session's shared watches' answers come.
    sub: Subscriber,
    shared: mpsc::Receiver<WatchResponse>,
    /// The shared watches by id.
    joined: HashMap<i64, Arc<Group>>,
    next_id: i64,
    /// Answers made by the proxy itself (a shared watch's cancel), sent next.
    outbox: Vec<WatchResponse>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(hub) = &self.hub {
            for (id, g) in self.joined.drain() {
                g.leave(id, &self.sub.tx, hub);
            }
        }
    }
}

/// Whether an upstream stream's failure is its member's (reopened elsewhere) rather than an answer.
fn resumable(s: &Status) -> bool {
    s.code() == tonic::Code::Unavailable || is_transport_failure(s)
}

impl Session {
    async fn run(mut self, mut requests: WatchRequests) {
        let mut client_open = true;
        loop {
            let (url, channel) = self.up.channel();
            // The creates to (re)send first: the open watches from where they are, then unanswered ones.
            let mut first = Vec::new();
            let mut pending = VecDeque::new();
            let mut ids: Vec<i64> = self.watches.keys().copied().collect();
            ids.sort_unstable();
            for id in ids {
                let w = &self.watches[&id];
                let create = WatchCreateRequest { watch_id: id, start_revision: w.next_rev, ..w.create.clone() };
                first.push(create);
                pending.push_back(Pending::Resume(id));
            }
            for p in std::mem::take(&mut self.pending) {
                if let Pending::Fresh(c) = p {
                    first.push(c.clone());
                    pending.push_back(Pending::Fresh(c));
                }
            }
            self.pending = pending;
            let (utx, urx) = mpsc::channel::<WatchRequest>(OUT_BUFFER.max(first.len() + 1));
            for c in first {
                let _ = utx.try_send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(c)) });
            }
            let mut client = WatchClient::new(channel).max_decoding_message_size(self.up.max_recv);
            let opened = tokio::select! {
                opened = client.watch(with_token(ReceiverStream::new(urx), &self.token)) => opened,
                _ = self.tx.closed() => return,
            };
            let mut answers = match opened {
                Ok(s) => s.into_inner(),
                Err(s) if resumable(&s) => {
                    self.up.failed(&url);
                    tokio::time::sleep(REOPEN_PAUSE).await;
                    continue;
                }
                Err(s) => {
                    let _ = self.tx.send(Err(s)).await;
                    return;
                }
            };
            loop {
                tokio::select! {
                    next = requests.next(), if client_open => match next {
                        Some(Ok(r)) => {
                            if let Some(r) = self.request(r) {
                                let _ = utx.send(r).await;
                            }
                            for r in std::mem::take(&mut self.outbox) {
                                if self.tx.send(Ok(r)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        // The client is gone.
                        Some(Err(_)) => return,
                        // The client sends no more; its watches go on while it listens (as etcd's).
                        None => client_open = false,
                    },
                    answer = answers.next() => match answer {
                        Some(Ok(r)) => {
                            if let Some(r) = self.answer(r) {
                                if self.tx.send(Ok(r)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Some(Err(s)) if resumable(&s) => {
                            tracing::info!(member = url, status = %s.message(), "watch stream failed; resuming elsewhere");
                            self.up.failed(&url);
                            break;
                        }
                        Some(Err(s)) => {
                            let _ = self.tx.send(Err(s)).await;
                            return;
                        }
                        None => {
                            self.up.failed(&url);
                            break;
                        }
                    },
                    Some(r) = self.shared.recv() => {
                        let r = self.strip(r);
                        if self.tx.send(Ok(r)).await.is_err() {
                            return;
                        }
                    }
                    _ = self.sub.overflow.notified() => {
                        let _ = self.tx.try_send(Err(Status::unavailable(ERR_TOO_SLOW)));
                        return;
                    }
                    _ = self.tx.closed() => return,
                }
            }
            tokio::time::sleep(REOPEN_PAUSE).await;
        }
    }

    /// A client's request as sent upstream (creates namespaced and remembered).
    fn request(&mut self, mut r: WatchRequest) -> Option<WatchRequest> {
        match &mut r.request_union {
            Some(RequestUnion::CreateRequest(c)) => {
                self.ns.key(&mut c.key);
                self.ns.range_end(&mut c.range_end);
                if c.watch_id == 0 {
                    c.watch_id = self.free_id();
                }
                if let Some(hub) = &self.hub {
                    if shareable(c) && !self.in_use(c.watch_id) {
                        let group = hub.join(&self.token, c, c.watch_id, self.sub.clone());
                        self.joined.insert(c.watch_id, group);
                        return None;
                    }
                }
                self.pending.push_back(Pending::Fresh(c.clone()));
            }
            Some(RequestUnion::CancelRequest(c)) => {
                if let (Some(g), Some(hub)) = (self.joined.remove(&c.watch_id), &self.hub) {
                    let header = g.leave(c.watch_id, &self.sub.tx, hub);
                    self.outbox.push(WatchResponse {
                        header,
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    });
                    return None;
                }
            }
            _ => {}
        }
        r.request_union.is_some().then_some(r)
    }

    fn in_use(&self, id: i64) -> bool {
        self.watches.contains_key(&id)
            || self.joined.contains_key(&id)
            || self.pending.iter().any(|p| matches!(p, Pending::Fresh(c) if c.watch_id == id))
    }

    /// The lowest id not in use from the last one given on (etcd's choice).
    fn free_id(&mut self) -> i64 {
        while self.in_use(self.next_id) {
            self.next_id += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A response with the namespace stripped from its events.
    fn strip(&self, mut r: WatchResponse) -> WatchResponse {
        if !self.ns.is_empty() {
            for e in &mut r.events {
                if let Some(kv) = &mut e.kv {
                    self.ns.strip_kv(kv);
                }
                if let Some(kv) = &mut e.prev_kv {
                    self.ns.strip_kv(kv);
                }
            }
        }
        r
    }

    /// An upstream answer as its client sees it; `None` when the client must not see it.
    fn answer(&mut self, mut r: WatchResponse) -> Option<WatchResponse> {
        let header_rev = r.header.as_ref().map_or(0, |h| h.revision);
        if r.created {
            match self.pending.pop_front() {
                Some(Pending::Resume(id)) => {
                    if !r.canceled {
                        return None;
                    }
                    // The watch cannot go on from where it was (e.g. compacted meanwhile): the client
                    // hears that it is cancelled.
                    self.watches.remove(&id);
                    r.created = false;
                    r.watch_id = id;
                }
                Some(Pending::Fresh(create)) => {
                    if !r.canceled && r.watch_id >= 0 {
                        let next_rev = if create.start_revision > 0 { create.start_revision } else { header_rev + 1 };
                        self.watches.insert(r.watch_id, Watched { create, next_rev });
                    }
                }
                None => {}
            }
            return Some(r);
        }
        if r.canceled {
            self.watches.remove(&r.watch_id);
        } else if let Some(w) = self.watches.get_mut(&r.watch_id) {
            if r.events.is_empty() {
                w.next_rev = w.next_rev.max(header_rev + 1);
            } else {
                let next_rev = w.next_rev;
                r.events.retain(|e| e.kv.as_ref().is_none_or(|kv| kv.mod_revision >= next_rev));
                if r.events.is_empty() {
                    return None;
                }
                if !r.fragment {
                    let last = r.events.last().and_then(|e| e.kv.as_ref()).map_or(0, |kv| kv.mod_revision);
                    w.next_rev = w.next_rev.max(last + 1);
                }
            }
        }
        Some(self.strip(r))
    }
}

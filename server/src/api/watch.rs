//! The Watch service (`etcdserverpb.Watch`): one session per stream, as etcd's `serverWatchStream`.
//! The same session serves the JSON gateway's `/v3/watch`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Access, AuthInfo, AuthStore};
use crate::mvcc::KvStore;
use crate::mvcc::{KeyRange, RangeOptions};
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use crate::proto::mvccpb::Event;
use crate::server::Headers;
use crate::watch::WatchHub;
use crate::watch::{WatchBatch, WatchHandle, WatchSpec};

/// Responses buffered towards one client stream.
const OUT_BUFFER: usize = 128;
/// Event batches buffered per stream before its watchers fall back to catching up from history.
const BATCH_BUFFER: usize = 1024;

const ERR_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
const ERR_EMPTY_RANGE: &str = "mvcc: watcher range is empty";

/// What the Watch service needs (etcd's `watchServer`: the watchable store and a header source).
#[derive(Clone)]
pub struct WatchService {
    pub hub: Arc<WatchHub>,
    pub kv: Arc<KvStore>,
    pub headers: Headers,
    /// How often a watcher that asked for progress notifications hears the current revision when idle
    /// (`--experimental-watch-progress-notify-interval`).
    pub progress_interval: Duration,
    /// Turns true when the member stops: every session ends then (`server stopped`), as etcd's do.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// A watch needs READ on its whole range while auth is enabled.
    pub auth: Arc<AuthStore>,
}

struct Watching {
    handle: WatchHandle,
    prev_kv: bool,
    progress_notify: bool,
    last_sent: Instant,
}

/// Runs a watch session over `requests`; responses come out of the returned channel. The session ends
/// (and its watchers are cancelled) when `requests` fails or the receiver is dropped; a clean end of
/// `requests` leaves the watchers running.
pub fn session<S>(svc: WatchService, requests: S) -> mpsc::Receiver<Result<WatchResponse, Status>>
where
    S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
{
    let (out, rx) = mpsc::channel(OUT_BUFFER);
    // The stream's caller; checked at each watch's creation against the auth state of that moment.
    let caller = crate::auth::stream_caller();
    tokio::spawn(Session { svc, out, watching: HashMap::new(), next_id: 0, caller }.run(requests));
    rx
}

struct Session {
    svc: WatchService,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    watching: HashMap<i64, Watching>,
    next_id: i64,
    caller: Option<AuthInfo>,
}

/// A refusal as etcd writes it in a watch's cancel reason: the whole gRPC status text.
fn status_text(e: &crate::error::Error) -> String {
    let code = match e.code() {
        tonic::Code::Unauthenticated => "Unauthenticated",
        tonic::Code::InvalidArgument => "InvalidArgument",
        _ => return format!("rpc error: code = PermissionDenied desc = {}", crate::error::Error::PermissionDenied),
    };
    format!("rpc error: code = {code} desc = {e}")
}

impl Session {
    async fn run<S>(mut self, mut requests: S)
    where
        S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin,
    {
        let _stream = self.svc.hub.open_stream();
        let (batch_tx, mut batches) = mpsc::channel::<WatchBatch>(BATCH_BUFFER);
        let mut progress = tokio::time::interval(self.svc.progress_interval);
        progress.tick().await;
        // As in etcd, a client that closes its send side (grpcurl, grpc-gateway after the request body) keeps
        // its watchers: the session ends on a stream error or when the client goes, not at the end of requests.
        let mut requests_done = false;
        loop {
            let ok = tokio::select! {
                req = requests.next(), if !requests_done => match req {
                    Some(Ok(r)) => self.request(r, &batch_tx).await,
                    // The stream's error (e.g. a message over the size limit) ends it, as etcd's does.
                    Some(Err(status)) => {
                        let _ = self.out.send(Err(status)).await;
                        false
                    }
                    None => {
                        requests_done = true;
                        true
                    }
                },
                Some(b) = batches.recv() => self.deliver(b).await,
                _ = progress.tick() => self.progress().await,
                _ = self.out.closed() => false,
                _ = super::stopping(self.svc.stop.clone()) => {
                    let _ = self.out.try_send(Err(crate::error::Error::Stopped.into()));
                    false
                }
            };
            if !ok {
                break;
            }
        }
        for (_, w) in self.watching.drain() {
            self.svc.hub.cancel(w.handle);
        }
    }

    fn response(&self, revision: i64, watch_id: i64) -> WatchResponse {
        WatchResponse { header: Some(self.svc.headers.at(revision)), watch_id, ..Default::default() }
    }

    async fn send(&self, r: WatchResponse) -> bool {
        self.out.send(Ok(r)).await.is_ok()
    }

    async fn request(&mut self, r: WatchRequest, batch_tx: &mpsc::Sender<WatchBatch>) -> bool {
        let rev = self.svc.kv.current_rev();
        match r.request_union {
            Some(RequestUnion::CreateRequest(c)) => {
                let resp = self.create(c, batch_tx, rev);
                self.send(resp).await
            }
            Some(RequestUnion::CancelRequest(c)) => match self.watching.remove(&c.watch_id) {
                Some(w) => {
                    self.svc.hub.cancel(w.handle);
                    self.send(WatchResponse { canceled: true, ..self.response(rev, c.watch_id) }).await
                }
                None => true,
            },
            Some(RequestUnion::ProgressRequest(_)) => {
                // Not tied to one watcher: etcd answers with watch id -1.
                self.send(self.response(self.svc.hub.notified_rev(), -1)).await
            }
            None => true,
        }
    }

    fn create(&mut self, c: WatchCreateRequest, batch_tx: &mpsc::Sender<WatchBatch>, rev: i64) -> WatchResponse {
        let fail = |reason: &str| WatchResponse {
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..self.response(rev, -1)
        };
        // READ on the whole range (etcd 3.4.23 checks a from-key watch as its first key only).
        if let Err(e) = self.svc.auth.check(self.caller.as_ref(), Access::Read, &c.key, &c.range_end) {
            return fail(&status_text(&e));
        }
        let range = KeyRange::new(&c.key, &c.range_end);
        if matches!(&range.end, Some(end) if !end.is_empty() && end.as_slice() <= c.key.as_slice()) {
            return fail(ERR_EMPTY_RANGE);
        }
        let id = if c.watch_id != 0 {
            if self.watching.contains_key(&c.watch_id) {
                return fail(ERR_DUPLICATE_ID);
            }
            c.watch_id
        } else {
            while self.watching.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id += 1;
            self.next_id - 1
        };
        let filters: Vec<FilterType> = c.filters.iter().filter_map(|f| FilterType::try_from(*f).ok()).collect();
        let spec = WatchSpec {
            range,
            start_revision: c.start_revision,
            no_put: filters.contains(&FilterType::Noput),
            no_delete: filters.contains(&FilterType::Nodelete),
            watch_id: id,
        };
        let handle = self.svc.hub.watch(spec, batch_tx.clone());
        let w = Watching { handle, prev_kv: c.prev_kv, progress_notify: c.progress_notify, last_sent: Instant::now() };
        self.watching.insert(id, w);
        WatchResponse { created: true, ..self.response(rev, id) }
    }

    async fn deliver(&mut self, b: WatchBatch) -> bool {
        let Some(w) = self.watching.get_mut(&b.watch_id) else { return true };
        w.last_sent = Instant::now();
        if b.compact_revision != 0 {
            self.watching.remove(&b.watch_id);
            let r = WatchResponse {
                compact_revision: b.compact_revision,
                canceled: true,
                ..self.response(b.revision, b.watch_id)
            };
            return self.send(r).await;
        }
        let prev_kv = w.prev_kv;
        let events = if prev_kv { b.events.into_iter().map(|e| self.with_prev(e)).collect() } else { b.events };
        self.send(WatchResponse { events, ..self.response(b.revision, b.watch_id) }).await
    }

    /// Adds the key's value just before the event's revision.
    fn with_prev(&self, mut e: Event) -> Event {
        if let Some(kv) = &e.kv {
            let opts = RangeOptions { rev: kv.mod_revision - 1, ..Default::default() };
            e.prev_kv = self.svc.kv.range(&KeyRange::single(&kv.key), opts).ok().and_then(|r| r.kvs.into_iter().next());
        }
        e
    }

    async fn progress(&mut self) -> bool {
        let rev = self.svc.hub.notified_rev();
        let due: Vec<i64> = self
            .watching
            .iter()
            .filter(|(_, w)| w.progress_notify && w.last_sent.elapsed() >= self.svc.progress_interval / 2)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if !self.send(self.response(rev, id)).await {
                return false;
            }
        }
        true
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let rx = session(self.clone(), req.into_inner());
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

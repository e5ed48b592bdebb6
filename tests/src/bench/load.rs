//! The load driver and the request-response workloads.
//!
//! * [`drive`]: `clients` tasks take request numbers from one counter until `total`, each waiting for
//!   the [`Limiter`] (`--rate`), timing each [`Call`] and ticking the progress bar.
//! * The workloads, one [`Call`] each: [`Put`], [`Range`], [`TxnPut`], [`TxnMixed`], [`Stm`],
//!   [`LeaseKeepalive`], [`Authenticate`].

use std::future::Future;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use modkv::proto::etcdserverpb::auth_client::AuthClient;
use modkv::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use modkv::proto::etcdserverpb::kv_client::KvClient;
use modkv::proto::etcdserverpb::lease_client::LeaseClient;
use modkv::proto::etcdserverpb::request_op::Request as Op;
use modkv::proto::etcdserverpb::{
    AuthenticateRequest, Compare, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};
use rand::Rng;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use super::conn::{Conns, Keys};
use super::stats::Stats;

/// How many requests, by how many clients, how fast.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub total: usize,
    pub clients: usize,
    /// Requests per second over all clients; 0: no limit.
    pub rate: u64,
}

/// One client's request: `call(i)` makes request number `i` and says which of the run's stats it
/// belongs to (e.g. 0 read, 1 write).
pub trait Call: Send + 'static {
    fn call(&mut self, i: usize) -> impl Future<Output = (usize, Result<(), String>)> + Send;
}

/// Spaces requests `1/rate` apart over all clients.
pub struct Limiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Limiter {
    pub fn new(rate: u64) -> Option<Arc<Limiter>> {
        (rate > 0).then(|| {
            Arc::new(Limiter { interval: Duration::from_secs_f64(1.0 / rate as f64), next: Mutex::new(Instant::now()) })
        })
    }

    pub async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().expect("limiter lock");
            let at = (*next).max(Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }
}

/// A progress bar on stderr when it is a terminal, else a hidden one.
pub fn progress(total: usize, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
        .expect("progress template")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// Runs `plan` with one [`Call`] per client (`make(client)`); returns one [`Stats`] per name in `names`.
pub async fn drive<C: Call>(names: &[&str], plan: Plan, mut make: impl FnMut(usize) -> C) -> Vec<Stats> {
    let next = Arc::new(AtomicUsize::new(0));
    let limiter = Limiter::new(plan.rate);
    let bar = progress(plan.total, names.join("/").as_str());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..plan.clients.max(1) {
        let (next, limiter, bar, mut c) = (next.clone(), limiter.clone(), bar.clone(), make(client));
        let mut stats: Vec<Stats> = names.iter().map(|n| Stats::new(n)).collect();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.total {
                    return stats;
                }
                if let Some(l) = &limiter {
                    l.wait().await;
                }
                let t = Instant::now();
                let (which, r) = c.call(i).await;
                stats[which].record(r.map(|()| t.elapsed()));
                bar.inc(1);
            }
        }));
    }
    let mut all: Vec<Stats> = names.iter().map(|n| Stats::new(n)).collect();
    for t in tasks {
        for (a, s) in all.iter_mut().zip(t.await.expect("client task")) {
            a.merge(s);
        }
    }
    bar.finish_and_clear();
    let wall = start.elapsed();
    all.into_iter().map(|s| s.finish(wall)).collect()
}

fn status(e: tonic::Status) -> String {
    format!("{:?}: {}", e.code(), e.message())
}

fn put_op(key: Vec<u8>, value: Vec<u8>) -> RequestOp {
    RequestOp { request: Some(Op::RequestPut(PutRequest { key, value, ..Default::default() })) }
}

/// Puts of one value; the key from [`Keys::pick`], or `<prefix><client>/<i>` in the one-line form.
pub struct Put {
    pub kv: KvClient<Channel>,
    pub conns: Conns,
    pub keys: Keys,
    pub value: Vec<u8>,
    /// The one-line form's distinct keys: this client's number.
    pub legacy_client: Option<usize>,
}

impl Call for Put {
    async fn call(&mut self, i: usize) -> (usize, Result<(), String>) {
        let key = match self.legacy_client {
            Some(c) => format!("{}{c:04}/{i:08}", self.keys.prefix).into_bytes(),
            None => self.keys.pick(i),
        };
        let r = self.kv.put(self.conns.req(PutRequest { key, value: self.value.clone(), ..Default::default() })).await;
        (0, r.map(drop).map_err(status))
    }
}

/// Ranges of one key or `[key, end)`.
pub struct Range {
    pub kv: KvClient<Channel>,
    pub conns: Conns,
    pub key: Vec<u8>,
    pub end: Vec<u8>,
    pub limit: i64,
    pub serializable: bool,
}

impl Call for Range {
    async fn call(&mut self, _: usize) -> (usize, Result<(), String>) {
        let req = RangeRequest {
            key: self.key.clone(),
            range_end: self.end.clone(),
            limit: self.limit,
            serializable: self.serializable,
            ..Default::default()
        };
        (0, self.kv.range(self.conns.req(req)).await.map(drop).map_err(status))
    }
}

/// Txns of `ops` puts on picked keys (distinct within a txn: etcd refuses duplicate keys).
pub struct TxnPut {
    pub kv: KvClient<Channel>,
    pub conns: Conns,
    pub keys: Keys,
    pub value: Vec<u8>,
    pub ops: usize,
}

impl Call for TxnPut {
    async fn call(&mut self, i: usize) -> (usize, Result<(), String>) {
        let mut picked: Vec<Vec<u8>> = Vec::with_capacity(self.ops);
        for j in 0..self.ops {
            let k = self.keys.pick(i * self.ops + j);
            if !picked.contains(&k) {
                picked.push(k);
            }
        }
        let success = picked.into_iter().map(|k| put_op(k, self.value.clone())).collect();
        let r = self.kv.txn(self.conns.req(TxnRequest { success, ..Default::default() })).await;
        (0, r.map(drop).map_err(status))
    }
}

/// Txns that read (stats 0) or write (stats 1), `rw_ratio` reads per write on average.
pub struct TxnMixed {
    pub kv: KvClient<Channel>,
    pub conns: Conns,
    pub keys: Keys,
    pub value: Vec<u8>,
    pub rw_ratio: f64,
    pub end: Option<Vec<u8>>,
    pub limit: i64,
    pub serializable: bool,
}

impl Call for TxnMixed {
    async fn call(&mut self, i: usize) -> (usize, Result<(), String>) {
        let read = rand::thread_rng().gen::<f64>() < self.rw_ratio / (self.rw_ratio + 1.0);
        let key = self.keys.pick(i);
        if read {
            let req = RangeRequest {
                key,
                range_end: self.end.clone().unwrap_or_default(),
                limit: self.limit,
                serializable: self.serializable,
                ..Default::default()
            };
            let op = RequestOp { request: Some(Op::RequestRange(req)) };
            let r = self.kv.txn(self.conns.req(TxnRequest { success: vec![op], ..Default::default() })).await;
            (0, r.map(drop).map_err(status))
        } else {
            let op = put_op(key, self.value.clone());
            let r = self.kv.txn(self.conns.req(TxnRequest { success: vec![op], ..Default::default() })).await;
            (1, r.map(drop).map_err(status))
        }
    }
}

/// Read-modify-write of `per_txn` keys: read them, then a txn that writes them if each one's
/// mod revision is still what was read (repeatable reads), retried until it commits.
pub struct Stm {
    pub kv: KvClient<Channel>,
    pub conns: Conns,
    pub keys: Keys,
    pub value: Vec<u8>,
    pub per_txn: usize,
    /// Txns that had to be retried (conflicts), over all calls of this client.
    pub retries: Arc<AtomicUsize>,
}

impl Stm {
    async fn attempt(&mut self, keys: &[Vec<u8>]) -> Result<bool, tonic::Status> {
        let mut compare = Vec::new();
        for k in keys {
            let r = self.kv.range(self.conns.req(RangeRequest { key: k.clone(), ..Default::default() })).await?;
            let rev = r.into_inner().kvs.first().map_or(0, |kv| kv.mod_revision);
            compare.push(Compare {
                key: k.clone(),
                result: CompareResult::Equal as i32,
                target: CompareTarget::Mod as i32,
                target_union: Some(TargetUnion::ModRevision(rev)),
                ..Default::default()
            });
        }
        let success = keys.iter().map(|k| put_op(k.clone(), self.value.clone())).collect();
        let r = self.kv.txn(self.conns.req(TxnRequest { compare, success, ..Default::default() })).await?;
        Ok(r.into_inner().succeeded)
    }
}

impl Call for Stm {
    async fn call(&mut self, i: usize) -> (usize, Result<(), String>) {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for j in 0..self.per_txn {
            let k = self.keys.pick(i * self.per_txn + j);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        loop {
            match self.attempt(&keys).await {
                Ok(true) => return (0, Ok(())),
                Ok(false) => self.retries.fetch_add(1, Ordering::Relaxed),
                Err(e) => return (0, Err(status(e))),
            };
        }
    }
}

/// Keep-alives of one lease (granted on the first call, TTL 100 s) over this client's stream.
pub struct LeaseKeepalive {
    pub channel: Channel,
    pub conns: Conns,
    stream: Option<(mpsc::UnboundedSender<LeaseKeepAliveRequest>, tonic::Streaming<LeaseKeepAliveResponse>, i64)>,
}

impl LeaseKeepalive {
    pub fn new(channel: Channel, conns: Conns) -> LeaseKeepalive {
        LeaseKeepalive { channel, conns, stream: None }
    }

    async fn open(&mut self) -> Result<(), tonic::Status> {
        let mut lease = LeaseClient::new(self.channel.clone());
        let id = lease.lease_grant(self.conns.req(LeaseGrantRequest { ttl: 100, id: 0 })).await?.into_inner().id;
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(LeaseKeepAliveRequest { id });
        let mut s = lease.lease_keep_alive(self.conns.stream_req(UnboundedReceiverStream::new(rx))).await?.into_inner();
        s.message().await?; // the answer to the first keep-alive, sent to open the stream
        self.stream = Some((tx, s, id));
        Ok(())
    }
}

impl Call for LeaseKeepalive {
    async fn call(&mut self, _: usize) -> (usize, Result<(), String>) {
        if self.stream.is_none() {
            if let Err(e) = self.open().await {
                return (0, Err(status(e)));
            }
        }
        let (tx, s, id) = self.stream.as_mut().expect("opened");
        if tx.send(LeaseKeepAliveRequest { id: *id }).is_err() {
            return (0, Err("keep-alive stream closed".into()));
        }
        let r = match tokio::time::timeout(super::conn::REQUEST_TIMEOUT, s.message()).await {
            Ok(Ok(Some(m))) if m.ttl > 0 => Ok(()),
            Ok(Ok(Some(_))) => Err("lease expired".to_string()),
            Ok(Ok(None)) => Err("keep-alive stream ended".to_string()),
            Ok(Err(e)) => Err(status(e)),
            Err(_) => Err("keep-alive timed out".to_string()),
        };
        if r.is_err() {
            self.stream = None;
        }
        (0, r)
    }
}

/// Authenticate calls of one user.
pub struct Authenticate {
    pub auth: AuthClient<Channel>,
    pub name: String,
    pub password: String,
}

impl Call for Authenticate {
    async fn call(&mut self, _: usize) -> (usize, Result<(), String>) {
        let req = AuthenticateRequest { name: self.name.clone(), password: self.password.clone() };
        (0, self.auth.authenticate(req).await.map(drop).map_err(status))
    }
}

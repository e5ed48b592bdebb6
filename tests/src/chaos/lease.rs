//! Leases in the recorded workload: a lease client grants leases with ids of its own (so a grant of
//! unknown outcome is still known by id), puts keys attached to them, keeps some alive over a
//! `LeaseKeepAlive` stream, revokes some, lets the others expire, reads their keys, and puts with leases
//! it revoked or let expire (etcd refuses those with `etcdserver: requested lease not found`). Every
//! call is an [`Op`] of the history, checked by [`crate::chaos::check::lease`].
//!
//! * kept-alive leases: TTL [`KEPT_TTL`] s, a keep-alive every [`KEEP_EVERY`]; revoked by the client at
//!   random and, those left, when the workload stops;
//! * short leases: TTL 2–3 s, never kept alive: they expire during the run (or at its end).
//!
//! Lease keys are `/chaos/lease/<id>/<n>`: only the lease client writes them.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::tokio_stream::wrappers::UnboundedReceiverStream;

use super::check::PREFIX;
use super::history::{Clock, Op, Outcome, Request, Response};
use super::rng::Rng;
use super::workload::{self, WorkloadConfig};
use crate::grpc::{self, GrpcError, PutRequest, PutResponse, ResponseHeader};

/// TTL (seconds) of the leases the client keeps alive: longer than any fault of the schedule keeps
/// writes from a majority, so a kept-alive lease only expires if its keep-alives stop.
pub const KEPT_TTL: i64 = 10;
/// How often a kept-alive lease is kept alive.
pub const KEEP_EVERY: Duration = Duration::from_millis(1000);
/// A kept-alive lease is not revoked before it is this old.
pub const KEPT_MIN_LIFE: Duration = Duration::from_secs(5);
/// etcd's error for a lease that does not exist (put, revoke; gRPC code NotFound).
pub const ERR_LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
/// How an [`Outcome::Refused`] of a lease that is gone reads: `<code>: <message>`.
pub fn refused_not_found() -> String {
    format!("NotFound: {ERR_LEASE_NOT_FOUND}")
}

/// `etcdserverpb.LeaseGrantRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseGrantRequest {
    #[prost(int64, tag = "1")]
    pub ttl: i64,
    #[prost(int64, tag = "2")]
    pub id: i64,
}

/// `etcdserverpb.LeaseGrantResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseGrantResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    pub id: i64,
    #[prost(int64, tag = "3")]
    pub ttl: i64,
    #[prost(string, tag = "4")]
    pub error: String,
}

/// `etcdserverpb.LeaseRevokeRequest` (and `LeaseKeepAliveRequest`: the same one field)
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseIdRequest {
    #[prost(int64, tag = "1")]
    pub id: i64,
}

/// `etcdserverpb.LeaseRevokeResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseRevokeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

/// `etcdserverpb.LeaseKeepAliveResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseKeepAliveResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    pub id: i64,
    #[prost(int64, tag = "3")]
    pub ttl: i64,
}

/// `etcdserverpb.LeaseLeasesRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseLeasesRequest {}

/// `etcdserverpb.LeaseStatus`
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseStatus {
    #[prost(int64, tag = "1")]
    pub id: i64,
}

/// `etcdserverpb.LeaseLeasesResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseLeasesResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub leases: Vec<LeaseStatus>,
}

/// The ids `LeaseLeases` lists.
pub fn list(conn: &mut grpc::Client) -> Result<Vec<i64>, GrpcError> {
    let r: LeaseLeasesResponse = conn.call("/etcdserverpb.Lease/LeaseLeases", LeaseLeasesRequest {})?;
    Ok(r.leases.iter().map(|l| l.id).collect())
}

/// One `LeaseKeepAlive` stream, used blockingly: a request, then its answer. A call that fails or
/// times out drops the stream (an answer that comes late cannot be taken for the next request's).
pub struct KeepAliveStream {
    rt: tokio::runtime::Runtime,
    channel: tonic::transport::Channel,
    timeout: Duration,
    open: Option<(tokio::sync::mpsc::UnboundedSender<LeaseIdRequest>, tonic::Streaming<LeaseKeepAliveResponse>)>,
}

impl KeepAliveStream {
    pub fn lazy(endpoint: &str, timeout: Duration) -> KeepAliveStream {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let channel = {
            let _guard = rt.enter();
            tonic::transport::Endpoint::from_shared(endpoint.to_string())
                .expect("a valid endpoint")
                .connect_timeout(timeout)
                .connect_lazy()
        };
        KeepAliveStream { rt, channel, timeout, open: None }
    }

    /// Keeps `id` alive once: `(header revision, TTL)`; TTL 0 when the lease is not found.
    pub fn keep_alive(&mut self, id: i64) -> Result<(i64, i64), GrpcError> {
        let (channel, open) = (self.channel.clone(), &mut self.open);
        let call = async move {
            if open.is_none() {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                // Sent before the call: a server may answer the headers only with the first message.
                tx.send(LeaseIdRequest { id }).expect("receiver held");
                let mut grpc = tonic::client::Grpc::new(channel);
                grpc.ready().await.map_err(|e| ("NotReady".to_string(), e.to_string()))?;
                let codec = tonic_prost::ProstCodec::<LeaseIdRequest, LeaseKeepAliveResponse>::default();
                let path = PathAndQuery::from_static("/etcdserverpb.Lease/LeaseKeepAlive");
                let req = tonic::Request::new(UnboundedReceiverStream::new(rx));
                let stream = grpc
                    .streaming(req, path, codec)
                    .await
                    .map_err(|s| (format!("{:?}", s.code()), s.message().to_string()))?
                    .into_inner();
                *open = Some((tx, stream));
            } else {
                let (tx, _) = open.as_ref().unwrap();
                tx.send(LeaseIdRequest { id }).map_err(|_| ("Closed".to_string(), "stream closed".to_string()))?;
            }
            let (_, stream) = open.as_mut().unwrap();
            match stream.message().await {
                Ok(Some(r)) => Ok((r.header.map_or(0, |h| h.revision), r.ttl)),
                Ok(None) => Err(("Closed".to_string(), "keep-alive stream ended".to_string())),
                Err(s) => Err((format!("{:?}", s.code()), s.message().to_string())),
            }
        };
        let t = self.timeout;
        let r = self.rt.block_on(async move {
            tokio::time::timeout(t, call)
                .await
                .unwrap_or_else(|_| Err(("DeadlineExceeded".to_string(), "client timeout".to_string())))
        });
        if r.is_err() {
            self.open = None;
        }
        r
    }
}

/// A lease as the client sees it.
struct Lease {
    id: i64,
    ttl: i64,
    kept: bool,
    granted: Instant,
    last_keep: Instant,
    /// Revoked, refused, or a keep-alive said TTL 0: the client knows it is gone.
    gone: bool,
    keys: u64,
}

impl Lease {
    /// Alive as far as the client knows (a short lease is taken as gone a second after its TTL).
    fn usable(&self) -> bool {
        !self.gone && (self.kept || self.granted.elapsed() < Duration::from_secs(self.ttl as u64) - KEEP_EVERY / 2)
    }

    /// Revoked or refused, or a short lease 2 s past its TTL: a put with it should be refused.
    fn dead(&self) -> bool {
        self.gone || !self.kept && self.granted.elapsed() > Duration::from_secs(self.ttl as u64 + 2)
    }
}

pub fn lease_key(id: i64, n: u64) -> String {
    format!("{PREFIX}lease/{id:x}/{n}")
}

/// The lease client `c` (see the module docs).
pub fn client(
    c: usize,
    eps: &[String],
    mut rng: Rng,
    cfg: &WorkloadConfig,
    clock: Clock,
    stop: &AtomicBool,
    max_rev: &AtomicI64,
) -> Vec<Op> {
    let connect = |m: usize| {
        (
            grpc::Client::lazy(&eps[m], cfg.op_timeout).expect("a valid endpoint"),
            KeepAliveStream::lazy(&eps[m], cfg.op_timeout),
        )
    };
    let mut member = rng.below(eps.len() as u64) as usize;
    let (mut conn, mut ka) = connect(member);
    let mut leases: Vec<Lease> = Vec::new();
    let mut next_id = 0i64;
    let mut seq = 0u64;
    let mut ops = Vec::new();
    let mut stopping = false;
    loop {
        if stop.load(Ordering::Relaxed) && !stopping {
            // The kept-alive leases are revoked at the end (the others expire): once the workload
            // stops, every lease is gone within a few seconds.
            stopping = true;
        }
        seq += 1;
        let value = format!("l{c}-{seq}");
        let usable: Vec<usize> = (0..leases.len()).filter(|&i| leases[i].usable()).collect();
        let due = leases.iter().position(|l| l.kept && !l.gone && l.last_keep.elapsed() >= KEEP_EVERY);
        let req = if stopping {
            match leases.iter().position(|l| l.kept && !l.gone) {
                Some(i) => {
                    leases[i].gone = true;
                    Request::LeaseRevoke { lease: leases[i].id }
                }
                None => break,
            }
        } else if let Some(i) = due {
            leases[i].last_keep = Instant::now();
            Request::KeepAlive { lease: leases[i].id }
        } else {
            let dead: Vec<usize> = (0..leases.len()).filter(|&i| leases[i].dead()).collect();
            let w_grant = if usable.len() < 4 { 10 } else { 0 };
            let w_use = if usable.is_empty() { 0 } else { 40 };
            // A kept-alive lease lives at least 5 s (keep-alives, faults meanwhile) before it may be revoked.
            let revocable: Vec<usize> = usable
                .iter()
                .copied()
                .filter(|&i| !leases[i].kept || leases[i].granted.elapsed() >= KEPT_MIN_LIFE)
                .collect();
            let w_revoke = if revocable.is_empty() { 0 } else { 3 };
            let w_dead = if dead.is_empty() { 0 } else { 4 };
            match rng.weighted(&[w_grant, w_use, w_revoke, w_dead, w_use / 2]) {
                0 => {
                    next_id += 1;
                    let id = ((c as i64 + 1) << 32) | next_id;
                    let kept = rng.percent(50);
                    let ttl = if kept { KEPT_TTL } else { rng.between(2, 3) as i64 };
                    Request::Grant { lease: id, ttl }
                }
                1 => {
                    let l = &mut leases[*rng.pick(&usable)];
                    // A new key of the lease, or one it has.
                    let n = if l.keys == 0 || rng.percent(40) { l.keys } else { rng.below(l.keys) };
                    l.keys = l.keys.max(n + 1);
                    Request::LeasePut { key: lease_key(l.id, n), value, lease: l.id }
                }
                2 => {
                    let l = &mut leases[*rng.pick(&revocable)];
                    l.gone = true;
                    Request::LeaseRevoke { lease: l.id }
                }
                3 => {
                    let l = &leases[*rng.pick(&dead)];
                    Request::LeasePut { key: lease_key(l.id, l.keys), value, lease: l.id }
                }
                _ => {
                    let l = &leases[*rng.pick(&usable)];
                    Request::Range { key: lease_key(l.id, rng.below(l.keys.max(1))), serializable: false }
                }
            }
        };
        let via = member;
        let invoke = clock.now();
        let outcome = execute(&mut conn, &mut ka, &req);
        let complete = clock.now();
        match (&req, &outcome) {
            (Request::Grant { lease, ttl }, Outcome::Ok(_)) => {
                let now = Instant::now();
                leases.push(Lease {
                    id: *lease,
                    ttl: *ttl,
                    kept: *ttl == KEPT_TTL,
                    granted: now,
                    last_keep: now,
                    gone: false,
                    keys: 0,
                });
            }
            (Request::KeepAlive { lease }, Outcome::Ok(Response::KeepAlive { ttl: 0, .. }))
            | (Request::LeasePut { lease, .. }, Outcome::Refused(_)) => {
                if let Some(l) = leases.iter_mut().find(|l| l.id == *lease) {
                    l.gone = true;
                }
            }
            _ => {}
        }
        if let Outcome::Ok(r) = &outcome {
            max_rev.fetch_max(r.rev(), Ordering::Relaxed);
        }
        let failed = matches!(outcome, Outcome::Unknown(_) | Outcome::NotSent(_));
        ops.push(Op { id: 0, client: c, member: via, req, invoke, complete, outcome });
        if failed {
            member =
                if eps.len() == 1 { 0 } else { (member + 1 + rng.below(eps.len() as u64 - 1) as usize) % eps.len() };
            (conn, ka) = connect(member);
            thread::sleep(Duration::from_millis(20));
        } else {
            thread::sleep(Duration::from_millis(20));
        }
    }
    ops
}

/// Sends one lease client request; classifies the result (see [`workload::execute`]).
pub fn execute(conn: &mut grpc::Client, ka: &mut KeepAliveStream, req: &Request) -> Outcome {
    let hdr = |h: &Option<ResponseHeader>| h.as_ref().map_or(0, |h| h.revision);
    let result: Result<Response, GrpcError> = match req {
        Request::Grant { lease, ttl } => conn
            .call::<_, LeaseGrantResponse>(
                "/etcdserverpb.Lease/LeaseGrant",
                LeaseGrantRequest { ttl: *ttl, id: *lease },
            )
            .and_then(|r| {
                if r.id != *lease {
                    return Err(("Malformed".into(), format!("granted lease {:x}, asked for {lease:x}", r.id)));
                }
                Ok(Response::Grant { rev: hdr(&r.header), ttl: r.ttl })
            }),
        Request::LeasePut { key, value, lease } => conn
            .call::<_, PutResponse>("/etcdserverpb.KV/Put", PutRequest { lease: *lease, ..PutRequest::new(key, value) })
            .map(|r| Response::Put { rev: hdr(&r.header) }),
        Request::KeepAlive { lease } => ka.keep_alive(*lease).map(|(rev, ttl)| Response::KeepAlive { rev, ttl }),
        Request::LeaseRevoke { lease } => conn
            .call::<_, LeaseRevokeResponse>("/etcdserverpb.Lease/LeaseRevoke", LeaseIdRequest { id: *lease })
            .map(|r| Response::LeaseRevoke { rev: hdr(&r.header) }),
        Request::Range { .. } => return workload::execute(conn, req),
        other => unreachable!("not a lease client request: {other:?}"),
    };
    match result {
        Ok(r) => Outcome::Ok(r),
        Err((code, msg)) if msg == ERR_LEASE_NOT_FOUND => Outcome::Refused(format!("{code}: {msg}")),
        Err((code, msg)) if msg.contains("Connection refused") => Outcome::NotSent(format!("{code}: {msg}")),
        Err((code, msg)) => Outcome::Unknown(format!("{code}: {msg}")),
    }
}

/// Waits (at most `timeout`) until `LeaseLeases` on `endpoint` lists no lease; returns those left.
pub fn wait_all_gone(endpoint: &str, timeout: Duration) -> Result<Vec<i64>, String> {
    let mut conn = grpc::Client::lazy(endpoint, Duration::from_secs(5)).expect("a valid endpoint");
    let deadline = Instant::now() + timeout;
    loop {
        let left = list(&mut conn);
        match &left {
            Ok(ids) if ids.is_empty() => return Ok(Vec::new()),
            _ if Instant::now() < deadline => thread::sleep(Duration::from_millis(200)),
            Ok(ids) => return Ok(ids.clone()),
            Err(e) => return Err(format!("LeaseLeases via {endpoint}: {e:?}")),
        }
    }
}

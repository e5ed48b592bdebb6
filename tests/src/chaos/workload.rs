//! The recorded workload: client threads doing puts (unique values), compare-and-swap txns on
//! mod_revision, multi-key txns, deletes, linearizable and serializable ranges over a few keys, lease
//! clients ([`super::lease`]: grants, puts with leases, keep-alives, revokes, expiry), and watcher threads reading watch streams from seeded revisions; every operation recorded with its
//! invocation and completion instants and its result ([`Op`], [`WatchSegment`]).
//!
//! Each client has its own gRPC connection ([`grpc::Client::lazy`], every call bounded by the op
//! timeout) to a member its seeded generator picks, and moves to another member after any error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use prost::Message;

use super::check::PREFIX;
use super::history::{Clock, Event, Kv, Op, Outcome, Request, Response, WatchBatch, WatchSegment};
use super::lease;
use super::rng::Rng;
use crate::grpc::{self, DeleteRangeRequest, DeleteRangeResponse, GrpcError, PutRequest, PutResponse, RangeRequest};
use crate::grpc::{KeyValue, RangeResponse};
use crate::txnwire::{op_put, op_range, Compare, ResponseOp, TargetUnion, TxnRequest, TxnResponse};
use crate::watch::{WatchClient, WatchCreateRequest};

/// `PREFIX` with its last byte + 1: the end of the prefix range.
pub fn prefix_end() -> String {
    let mut b = PREFIX.as_bytes().to_vec();
    *b.last_mut().unwrap() += 1;
    String::from_utf8(b).unwrap()
}

pub fn key(i: usize) -> String {
    format!("{PREFIX}k{i}")
}

#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub clients: usize,
    /// Lease clients ([`super::lease::client`]), numbered after the others.
    pub lease_clients: usize,
    pub watchers: usize,
    pub keys: usize,
    pub op_timeout: Duration,
    /// Bytes of padding after each value the clients put (0: none): more data per write, so that a
    /// member fills its write buffers (and needs new disk space) sooner.
    pub pad: usize,
}

/// Running client and watcher threads.
pub struct Workload {
    stop: Arc<AtomicBool>,
    clients: Vec<thread::JoinHandle<Vec<Op>>>,
    watchers: Vec<thread::JoinHandle<Vec<WatchSegment>>>,
}

impl Workload {
    pub fn start(endpoints: &[String], seed: u64, cfg: &WorkloadConfig, clock: Clock) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let max_rev = Arc::new(AtomicI64::new(1));
        let clients = (0..cfg.clients + cfg.lease_clients)
            .map(|c| {
                let (eps, cfg, stop, max_rev) = (endpoints.to_vec(), cfg.clone(), stop.clone(), max_rev.clone());
                let rng = Rng::derive(seed, 100 + c as u64);
                thread::spawn(move || {
                    if c < cfg.clients {
                        client(c, &eps, rng, &cfg, clock, &stop, &max_rev)
                    } else {
                        lease::client(c, &eps, rng, &cfg, clock, &stop, &max_rev)
                    }
                })
            })
            .collect();
        let watchers = (0..cfg.watchers)
            .map(|w| {
                let (eps, stop, max_rev) = (endpoints.to_vec(), stop.clone(), max_rev.clone());
                thread::spawn(move || watcher(w, &eps, Rng::derive(seed, 200 + w as u64), clock, &stop, &max_rev))
            })
            .collect();
        Workload { stop, clients, watchers }
    }

    /// Stops every thread (after its current operation) and returns what they recorded.
    pub fn stop(self) -> (Vec<Op>, Vec<WatchSegment>) {
        self.stop.store(true, Ordering::Relaxed);
        let ops = self.clients.into_iter().flat_map(|h| h.join().expect("client thread")).collect();
        let watches = self.watchers.into_iter().flat_map(|h| h.join().expect("watcher thread")).collect();
        (ops, watches)
    }
}

fn other_member(rng: &mut Rng, n: usize, current: usize) -> usize {
    if n == 1 {
        0
    } else {
        (current + 1 + rng.below(n as u64 - 1) as usize) % n
    }
}

fn client(
    c: usize,
    eps: &[String],
    mut rng: Rng,
    cfg: &WorkloadConfig,
    clock: Clock,
    stop: &AtomicBool,
    max_rev: &AtomicI64,
) -> Vec<Op> {
    let connect = |m: usize| grpc::Client::lazy(&eps[m], cfg.op_timeout).expect("a valid endpoint");
    let mut member = rng.below(eps.len() as u64) as usize;
    let mut conn = connect(member);
    let mut known_mod: HashMap<String, i64> = HashMap::new();
    let mut ops = Vec::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let value = format!("c{c}-{seq}{:.<pad$}", "", pad = cfg.pad);
        let k = key(rng.below(cfg.keys as u64) as usize);
        let req = match rng.weighted(&[30, 15, 8, 5, 30, 12]) {
            0 => Request::Put { key: k, value },
            1 => {
                let expect = known_mod.get(&k).copied().unwrap_or(0);
                Request::Cas { key: k, expect, value }
            }
            2 => Request::Delete { key: k },
            3 => {
                let other = key(rng.below(cfg.keys as u64) as usize);
                let mut puts = vec![(k.clone(), format!("{value}-a"))];
                if other != k {
                    puts.push((other, format!("{value}-b")));
                }
                Request::MultiPut { puts }
            }
            4 => Request::Range { key: k, serializable: false },
            _ => Request::Range { key: k, serializable: true },
        };
        let via = member;
        let invoke = clock.now();
        let outcome = execute(&mut conn, &req);
        let complete = clock.now();
        match &outcome {
            Outcome::Ok(resp) => {
                max_rev.fetch_max(resp.rev(), Ordering::Relaxed);
                learn(&req, resp, &mut known_mod);
            }
            _ => {
                member = other_member(&mut rng, eps.len(), member);
                conn = connect(member);
                thread::sleep(Duration::from_millis(20));
            }
        }
        ops.push(Op { id: 0, client: c, member: via, req, invoke, complete, outcome });
    }
    ops
}

/// What a client learns about a key's mod_revision from an answer (for its next compare-and-swap).
fn learn(req: &Request, resp: &Response, known: &mut HashMap<String, i64>) {
    match (req, resp) {
        (Request::Put { key, .. }, Response::Put { rev })
        | (Request::Cas { key, .. }, Response::Cas { rev, succeeded: true, .. }) => {
            known.insert(key.clone(), *rev);
        }
        (Request::Cas { key, .. }, Response::Cas { kv, .. })
        | (Request::Range { key, .. }, Response::Range { kv, .. }) => {
            known.insert(key.clone(), kv.as_ref().map_or(0, |kv| kv.modr));
        }
        (Request::Delete { key }, Response::Delete { .. }) => {
            known.insert(key.clone(), 0);
        }
        _ => {}
    }
}

fn to_kv(kv: &KeyValue) -> Kv {
    Kv {
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        value: String::from_utf8_lossy(&kv.value).into_owned(),
        create: kv.create_revision,
        modr: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

fn rev_of(h: &Option<grpc::ResponseHeader>) -> i64 {
    h.as_ref().map_or(0, |h| h.revision)
}

/// Sends one request; classifies the result.
pub fn execute(conn: &mut grpc::Client, req: &Request) -> Outcome {
    let result: Result<Response, GrpcError> = match req {
        Request::Put { key, value } => conn
            .call::<_, PutResponse>("/etcdserverpb.KV/Put", PutRequest::new(key, value))
            .map(|r| Response::Put { rev: rev_of(&r.header) }),
        Request::Delete { key } => {
            let d = DeleteRangeRequest { key: key.as_bytes().to_vec(), ..Default::default() };
            conn.call::<_, DeleteRangeResponse>("/etcdserverpb.KV/DeleteRange", d)
                .map(|r| Response::Delete { rev: rev_of(&r.header), deleted: r.deleted })
        }
        Request::Cas { key, expect, value } => {
            let t = TxnRequest {
                compare: vec![Compare {
                    result: 0, // EQUAL
                    target: 2, // MOD
                    key: key.as_bytes().to_vec(),
                    target_union: Some(TargetUnion::ModRevision(*expect)),
                    range_end: Vec::new(),
                }],
                success: vec![op_put(key.as_bytes(), value.as_bytes())],
                failure: vec![op_range(&RangeRequest::range(key, ""))],
            };
            conn.call::<_, TxnResponse>("/etcdserverpb.KV/Txn", t).and_then(|r| {
                let kv = if r.succeeded { None } else { failure_read(&r)? };
                Ok(Response::Cas { rev: rev_of(&r.header), succeeded: r.succeeded, kv })
            })
        }
        Request::MultiPut { puts } => {
            let success = puts.iter().map(|(k, v)| op_put(k.as_bytes(), v.as_bytes())).collect();
            let t = TxnRequest { success, ..Default::default() };
            conn.call::<_, TxnResponse>("/etcdserverpb.KV/Txn", t)
                .map(|r| Response::MultiPut { rev: rev_of(&r.header) })
        }
        Request::Range { key, serializable } => {
            let r = RangeRequest { serializable: *serializable, ..RangeRequest::range(key, "") };
            conn.call::<_, RangeResponse>("/etcdserverpb.KV/Range", r)
                .map(|r| Response::Range { rev: rev_of(&r.header), kv: r.kvs.first().map(to_kv) })
        }
        other => unreachable!("not a KV request: {other:?}"),
    };
    match result {
        Ok(r) => Outcome::Ok(r),
        // Refused at connect: the request never left.
        Err((code, msg)) if msg.contains("Connection refused") => Outcome::NotSent(format!("{code}: {msg}")),
        Err((code, msg)) => Outcome::Unknown(format!("{code}: {msg}")),
    }
}

/// The range result of a failed compare-and-swap's failure branch.
fn failure_read(r: &TxnResponse) -> Result<Option<Kv>, GrpcError> {
    let malformed = |what: &str| ("Malformed".to_string(), what.to_string());
    let first = r.responses.first().ok_or_else(|| malformed("txn failure without a result"))?;
    let op = ResponseOp::decode(first.as_slice()).map_err(|e| malformed(&e.to_string()))?;
    let range = op.response_range.ok_or_else(|| malformed("txn failure result is not a range"))?;
    let range = RangeResponse::decode(range.as_slice()).map_err(|e| malformed(&e.to_string()))?;
    Ok(range.kvs.first().map(to_kv))
}

/// An `mvccpb.Event` as the checkers take it.
pub fn to_event(e: &crate::watch::Event) -> Event {
    let kv = e.kv.as_ref().map(to_kv).unwrap_or(Kv {
        key: String::new(),
        value: String::new(),
        create: 0,
        modr: 0,
        version: 0,
        lease: 0,
    });
    Event { delete: e.r#type == 1, kv }
}

fn watcher(
    w: usize,
    eps: &[String],
    mut rng: Rng,
    clock: Clock,
    stop: &AtomicBool,
    max_rev: &AtomicI64,
) -> Vec<WatchSegment> {
    let mut segments = Vec::new();
    let mut resume: Option<i64> = None;
    let mut member = rng.below(eps.len() as u64) as usize;
    while !stop.load(Ordering::Relaxed) {
        let start_rev = match resume {
            Some(r) if rng.percent(70) => r,
            _ => {
                let hi = max_rev.load(Ordering::Relaxed);
                rng.between((hi - 200).max(1) as u64, hi as u64 + 2) as i64
            }
        };
        let opened = clock.now();
        let mut seg = WatchSegment { watcher: w, member, start_rev, opened, batches: Vec::new(), end: String::new() };
        match WatchClient::try_connect(&eps[member]) {
            Err(e) => seg.end = format!("connect: {e}"),
            Ok(mut wc) => {
                wc.create(WatchCreateRequest::range(PREFIX, &prefix_end()).rev(start_rev));
                let until = Instant::now() + Duration::from_millis(rng.between(1000, 5000));
                seg.end = loop {
                    if stop.load(Ordering::Relaxed) || Instant::now() >= until {
                        break "time up".into();
                    }
                    match wc.try_recv(Duration::from_millis(200)) {
                        Ok(None) => {}
                        Ok(Some(r)) if r.canceled => break format!("canceled: {}", r.cancel_reason),
                        Ok(Some(r)) => {
                            if !r.events.is_empty() {
                                let events = r.events.iter().map(to_event).collect();
                                seg.batches.push(WatchBatch { at: clock.now(), header_rev: r.rev(), events });
                            }
                        }
                        Err(e) => break format!("stream ended: {e:?}"),
                    }
                };
            }
        }
        let broke = seg.end != "time up";
        resume = Some(seg.events().last().map_or(start_rev, |e| e.rev() + 1));
        segments.push(seg);
        if broke {
            member = other_member(&mut rng, eps.len(), member);
            thread::sleep(Duration::from_millis(50));
        } else if rng.percent(30) {
            member = other_member(&mut rng, eps.len(), member);
        }
    }
    segments
}

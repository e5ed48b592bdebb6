//! The end of a run, once the faults are healed and the workload stopped: wait until no lease is left
//! (revoked or expired) and every member is at one revision, then read the revision log (a watch of the whole key space from revision 1), each
//! member's state of the workload's prefix, each member's `HashKV` at the final revision, and
//! acknowledged writes at their revisions (a seeded
//! sample of at most [`Config::at_rev_reads`]).

use std::time::{Duration, Instant};

use super::check::{self, PREFIX};
use super::history::{self, FinalRead, History};
use super::rng::Rng;
use super::{lease, workload, Config};
use crate::grpc::{self, RangeRequest};
use crate::watch::{WatchClient, WatchCreateRequest};

/// How long the end-state reads may take.
const END_TIMEOUT: Duration = Duration::from_secs(40);

/// After the faults: waits until every member is at one revision, then reads the log (a watch of the
/// whole key space from revision 1), every member's state of the prefix, and acknowledged writes at
/// their revisions.
pub fn read_end_state(h: &mut History, endpoints: &[String], cfg: &Config) -> Result<(), String> {
    let client = |ep: &String| grpc::Client::lazy(ep, Duration::from_secs(5)).expect("a valid endpoint");
    let mut clients: Vec<grpc::Client> = endpoints.iter().map(client).collect();
    let range = || RangeRequest { serializable: true, ..RangeRequest::range(PREFIX, &workload::prefix_end()) };
    // Every lease gone first (the lease client revoked its kept-alive leases when it stopped; the
    // others expire within their TTL, a grant of unknown outcome within 10 s): then nothing changes the
    // key space while the end state is read.
    if cfg.workload.lease_clients > 0 {
        let wait = Duration::from_secs(lease::KEPT_TTL as u64 + 15);
        h.leases_left = lease::wait_all_gone(&endpoints[0], wait)?;
    }
    let deadline = Instant::now() + END_TIMEOUT;
    // The cluster's revision (a linearizable read), then every member caught up to it.
    let final_rev = loop {
        let lin = RangeRequest { serializable: false, ..range() };
        let revs: Vec<Option<i64>> =
            clients.iter_mut().map(|c| c.range(lin.clone()).ok().and_then(|r| r.header.map(|h| h.revision))).collect();
        if let Some(Some(r)) = revs.first() {
            if revs.iter().all(|x| *x == Some(*r)) {
                break *r;
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("members not at one revision {END_TIMEOUT:?} after the run: {revs:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    h.final_rev = final_rev;
    for (member, c) in clients.iter_mut().enumerate() {
        let r = c.range(range()).map_err(|e| format!("final read of m{}: {e:?}", member + 1))?;
        let kvs = r.kvs.iter().map(workload_kv).collect();
        h.finals.push(FinalRead { member, rev: r.header.map_or(0, |h| h.revision), kvs });
    }
    // Every member's key space hashed at the final revision: a member that caught up from a snapshot
    // (a replaced one, one down long) holds exactly what the others hold.
    for (member, c) in clients.iter_mut().enumerate() {
        let r: HashKvResponse = c
            .call("/etcdserverpb.Maintenance/HashKV", HashKvRequest { revision: final_rev })
            .map_err(|e| format!("HashKV of m{} at {final_rev}: {e:?}", member + 1))?;
        h.hashes.push((member, r.hash, r.compact_revision));
    }
    let mut rng = Rng::derive(cfg.seed, 3);
    let via = rng.below(endpoints.len() as u64) as usize;
    h.log = read_log(&endpoints[via], final_rev, deadline)?;
    // Acknowledged writes read back at their revision (a seeded sample if there are many).
    let mut acked: Vec<usize> =
        h.ops.iter().filter(|o| check::final_read::acked_effect(o).is_some()).map(|o| o.id).collect();
    while acked.len() > cfg.at_rev_reads {
        let k = rng.below(acked.len() as u64) as usize;
        acked.swap_remove(k);
    }
    acked.sort();
    for id in acked {
        let (key, _, rev) = check::final_read::acked_effect(&h.ops[id]).unwrap();
        let req = RangeRequest { revision: rev, serializable: true, ..RangeRequest::range(&key, "") };
        let r = clients[via].range(req).map_err(|e| format!("read of {key} at {rev} via m{}: {e:?}", via + 1))?;
        h.at_rev.push((id, r.kvs.first().map(workload_kv)));
    }
    Ok(())
}

fn workload_kv(kv: &grpc::KeyValue) -> history::Kv {
    workload::to_event(&crate::watch::Event { r#type: 0, kv: Some(kv.clone()), prev_kv: None }).kv
}

/// Every event of the whole key space from revision 1 up to `final_rev`, by a watch.
fn read_log(endpoint: &str, final_rev: i64, deadline: Instant) -> Result<Vec<history::Event>, String> {
    let mut events = Vec::new();
    if final_rev <= 1 {
        return Ok(events);
    }
    let mut wc = WatchClient::try_connect(endpoint).map_err(|e| format!("log watch: {e}"))?;
    wc.create(WatchCreateRequest::range("\0", "\0").rev(1));
    while events.last().is_none_or(|e: &history::Event| e.rev() < final_rev) {
        if Instant::now() >= deadline {
            return Err(format!(
                "the log watch delivered {} events, up to revision {final_rev} not in time",
                events.len()
            ));
        }
        match wc.try_recv(Duration::from_millis(500)) {
            Ok(Some(r)) if r.canceled => return Err(format!("log watch canceled: {}", r.cancel_reason)),
            Ok(Some(r)) => events.extend(r.events.iter().map(workload::to_event)),
            Ok(None) => {}
            Err(e) => return Err(format!("log watch ended: {e:?}")),
        }
    }
    Ok(events)
}

/// `etcdserverpb.HashKVRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HashKvRequest {
    #[prost(int64, tag = "1")]
    pub revision: i64,
}

/// `etcdserverpb.HashKVResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HashKvResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<grpc::ResponseHeader>,
    #[prost(uint32, tag = "2")]
    pub hash: u32,
    #[prost(int64, tag = "3")]
    pub compact_revision: i64,
}

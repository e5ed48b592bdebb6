//! etcd's election service (`v3electionpb.Election`), run as etcd runs it: the recipe of clientv3's
//! `concurrency.Election` on the server.
//!
//! ```text
//!   campaign(name, lease, value): key = "<name>/<lease hex>"; put it (with the lease) unless it exists
//!       (then proclaim the value); wait until no key under "<name>/" is older ─▶ leader
//!   proclaim(leader, value) / resign(leader): a txn on the leader key, guarded by its create revision
//!       ("election: not leader" when it is not that key any more)
//!   leader(name): the oldest key under "<name>/" ("election: no leader" when none)
//!   observe(name): the leader's key, then each of its changes; when it goes, the next leader
//! ```

use std::sync::Arc;

use tokio::sync::mpsc;

use super::lock::{by_create, range_op, Watching};
use super::EtcdServer;
use crate::error::{Error, Result};
use crate::mvcc::KeyRange;
use crate::proto::etcdserverpb::range_request::SortOrder;
use crate::proto::etcdserverpb::{
    compare, request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::KeyValue;
use crate::watch::{WatchBatch, WatchSpec};

/// A leader key: what campaign returns and proclaim / resign take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderKey {
    pub name: Vec<u8>,
    pub key: Vec<u8>,
    pub rev: i64,
    pub lease: i64,
}

fn created_at(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::CreateRevision(rev)),
        ..Default::default()
    }
}

fn put_op(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

impl EtcdServer {
    /// Campaigns for leadership of `name`: returns once this lease's key is the oldest under it.
    pub async fn campaign(
        self: &Arc<Self>,
        name: &[u8],
        lease: i64,
        value: &[u8],
    ) -> Result<(ResponseHeader, LeaderKey)> {
        let mut prefix = name.to_vec();
        prefix.push(b'/');
        let mut key = prefix.clone();
        key.extend_from_slice(format!("{lease:x}").as_bytes());
        let resp = self
            .txn(TxnRequest {
                compare: vec![created_at(&key, 0)],
                success: vec![put_op(&key, value, lease)],
                failure: vec![range_op(RangeRequest { key: key.clone(), ..Default::default() })],
            })
            .await?;
        let header = resp.header.unwrap_or_default();
        let mut leader = LeaderKey { name: name.to_vec(), key, rev: header.revision, lease };
        if !resp.succeeded {
            let existing = resp.responses.into_iter().find_map(|r| match r.response {
                Some(crate::proto::etcdserverpb::response_op::Response::ResponseRange(r)) => r.kvs.into_iter().next(),
                _ => None,
            });
            if let Some(kv) = existing {
                leader.rev = kv.create_revision;
                if kv.value != value {
                    if let Err(e) = self.proclaim(&leader, value).await {
                        let _ = self.resign(&leader).await;
                        return Err(e);
                    }
                }
            }
        }
        // Waiting: if this call ends before it leads, its key goes (etcd resigns too).
        let mut pending = PendingCampaign {
            server: self.clone(),
            leader: Some(leader.clone()),
            caller: crate::auth::stream_caller(),
        };
        self.wait_deletes(&prefix, leader.rev - 1).await?;
        pending.leader = None;
        Ok((header, leader))
    }

    /// Sets the leader's value, if `leader` still is the leader key.
    pub async fn proclaim(&self, leader: &LeaderKey, value: &[u8]) -> Result<ResponseHeader> {
        let resp = self
            .txn(TxnRequest {
                compare: vec![created_at(&leader.key, leader.rev)],
                success: vec![put_op(&leader.key, value, leader.lease)],
                failure: vec![],
            })
            .await?;
        if !resp.succeeded {
            return Err(Error::ElectionNotLeader);
        }
        Ok(resp.header.unwrap_or_default())
    }

    /// Gives up leadership (or a campaign): deletes the leader key if it still is that key.
    pub async fn resign(&self, leader: &LeaderKey) -> Result<ResponseHeader> {
        let delete = RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: leader.key.clone(),
                ..Default::default()
            })),
        };
        let resp = self
            .txn(TxnRequest {
                compare: vec![created_at(&leader.key, leader.rev)],
                success: vec![delete],
                failure: vec![],
            })
            .await?;
        Ok(resp.header.unwrap_or_default())
    }

    /// The current leader's key-value.
    pub async fn election_leader(&self, name: &[u8]) -> Result<(ResponseHeader, KeyValue)> {
        let mut prefix = name.to_vec();
        prefix.push(b'/');
        let r = self.range(by_create(&prefix, SortOrder::Ascend)).await?;
        let kv = r.kvs.into_iter().next().ok_or(Error::ElectionNoLeader)?;
        Ok((r.header.unwrap_or_default(), kv))
    }

    /// The leader of `name` now and after each change, on the returned channel, until it is dropped.
    pub fn observe(self: &Arc<Self>, name: &[u8]) -> mpsc::Receiver<Result<(ResponseHeader, KeyValue)>> {
        let (tx, rx) = mpsc::channel(16);
        let (server, mut prefix) = (self.clone(), name.to_vec());
        prefix.push(b'/');
        // The observer reads as its caller, however long it runs.
        tokio::spawn(crate::auth::with_caller(crate::auth::stream_caller(), async move {
            if let Err(e) = server.observe_loop(&prefix, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        }));
        rx
    }

    async fn observe_loop(&self, prefix: &[u8], out: &mpsc::Sender<Result<(ResponseHeader, KeyValue)>>) -> Result<()> {
        loop {
            let r = self.range(by_create(prefix, SortOrder::Ascend)).await?;
            let mut header = r.header.unwrap_or_default();
            let kv = match r.kvs.into_iter().next() {
                Some(kv) => kv,
                None => {
                    // No leader: the first key put under the prefix is.
                    let range = KeyRange::prefix(prefix);
                    let mut w = self.watch_from(range, header.revision);
                    let kv = loop {
                        let Some(batch) = next_batch(&mut w.1, out).await? else { return Ok(()) };
                        if let Some(kv) =
                            batch.events.into_iter().find(|e| e.r#type == EventType::Put as i32).and_then(|e| e.kv)
                        {
                            break kv;
                        }
                    };
                    header.revision = kv.mod_revision;
                    kv
                }
            };
            let key = kv.key.clone();
            if out.send(Ok((header, kv))).await.is_err() {
                return Ok(());
            }
            // Its changes, until it is deleted.
            let mut w = self.watch_from(KeyRange::single(&key), header.revision + 1);
            'leader: loop {
                let Some(batch) = next_batch(&mut w.1, out).await? else { return Ok(()) };
                for e in batch.events {
                    if e.r#type == EventType::Delete as i32 {
                        break 'leader;
                    }
                    let Some(kv) = e.kv else { continue };
                    let h = ResponseHeader { revision: batch.revision, ..header };
                    if out.send(Ok((h, kv))).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// A watcher on `range` from revision `from`, and its batches.
    fn watch_from(&self, range: KeyRange, from: i64) -> (Watching<'_>, mpsc::Receiver<WatchBatch>) {
        let (tx, rx) = mpsc::channel(64);
        let spec = WatchSpec { range, start_revision: from, no_put: false, no_delete: false, watch_id: 0 };
        (Watching { hub: &self.watch, handle: self.watch.watch(spec, tx) }, rx)
    }
}

/// The next batch of a watcher, `None` once the observer is gone (so an idle observation does not
/// outlive its client).
async fn next_batch(
    rx: &mut mpsc::Receiver<WatchBatch>,
    out: &mpsc::Sender<Result<(ResponseHeader, KeyValue)>>,
) -> Result<Option<WatchBatch>> {
    tokio::select! {
        b = rx.recv() => b.map(Some).ok_or_else(lost),
        _ = out.closed() => Ok(None),
    }
}

fn lost() -> Error {
    Error::Internal("lost watcher observing the election".into())
}

/// A campaign still waiting: resigned if the call ends before it leads.
struct PendingCampaign {
    server: Arc<EtcdServer>,
    leader: Option<LeaderKey>,
    /// Who campaigned: the resignation is made as them.
    caller: Option<crate::auth::AuthInfo>,
}

impl Drop for PendingCampaign {
    fn drop(&mut self) {
        if let Some(leader) = self.leader.take() {
            let server = self.server.clone();
            tokio::spawn(crate::auth::with_caller(self.caller.take(), async move {
                if let Err(e) = server.resign(&leader).await {
                    tracing::warn!(%e, "could not resign an abandoned campaign");
                }
            }));
        }
    }
}

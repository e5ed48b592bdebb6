//! etcd's lock service (`v3lockpb.Lock`), run as etcd runs it: the recipe of clientv3's
//! `concurrency.Mutex` on the server, through the same requests a client would make.
//!
//! ```text
//!   lock(name, lease): key = "<name>/<lease hex>"
//!     txn: if key does not exist ─▶ put key (with the lease), else get key; and get the oldest key
//!          under "<name>/" (the holder)
//!     the holder is this key ─▶ held
//!     else: until no key under "<name>/" was created before this one, watch the newest such key
//!           for its deletion ─▶ held
//!     (the call ends early, e.g. the client goes away ─▶ the key is deleted, as etcd does)
//!   unlock(key): delete key
//! ```
//!
//! The key lives as long as its lease: a holder that dies releases the lock when its lease expires.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::EtcdServer;
use crate::error::{Error, Result};
use crate::mvcc::KeyRange;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{
    compare, request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader,
    TxnRequest,
};
use crate::proto::mvccpb::event::EventType;
use crate::watch::{WatchHub, WatchSpec};

/// The oldest (`Ascend`) or newest (`Descend`) key under `prefix` by create revision.
pub(super) fn by_create(prefix: &[u8], order: SortOrder) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: KeyRange::prefix_end(prefix),
        limit: 1,
        sort_target: SortTarget::Create as i32,
        sort_order: order as i32,
        ..Default::default()
    }
}

pub(super) fn range_op(r: RangeRequest) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestRange(r)) }
}

impl EtcdServer {
    /// Acquires the lock `name` for `lease`: returns once it is held, with its key.
    pub async fn lock(self: &Arc<Self>, name: &[u8], lease: i64) -> Result<(ResponseHeader, Vec<u8>)> {
        let mut prefix = name.to_vec();
        prefix.push(b'/');
        let mut key = prefix.clone();
        key.extend_from_slice(format!("{lease:x}").as_bytes());
        let owner = || range_op(by_create(&prefix, SortOrder::Ascend));
        let txn = TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Create as i32,
                key: key.clone(),
                target_union: Some(compare::TargetUnion::CreateRevision(0)),
                ..Default::default()
            }],
            success: vec![
                RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: key.clone(),
                        lease,
                        ..Default::default()
                    })),
                },
                owner(),
            ],
            failure: vec![range_op(RangeRequest { key: key.clone(), ..Default::default() }), owner()],
        };
        let resp = self.txn(txn).await?;
        let header = resp.header.unwrap_or_default();
        let ranges: Vec<_> = resp
            .responses
            .into_iter()
            .filter_map(|r| match r.response {
                Some(response_op::Response::ResponseRange(r)) => Some(r),
                _ => None,
            })
            .collect();
        let created = if resp.succeeded {
            header.revision
        } else {
            ranges.first().and_then(|r| r.kvs.first()).map_or(0, |kv| kv.create_revision)
        };
        let holder = ranges.last().and_then(|r| r.kvs.first()).map(|kv| kv.create_revision);
        if holder.is_none_or(|rev| rev == created) {
            return Ok((header, key));
        }
        // Waiting: if this call ends before the lock is held, its key goes (etcd unlocks too).
        let mut pending =
            PendingKey { server: self.clone(), key: Some(key.clone()), caller: crate::auth::stream_caller() };
        let header = self.wait_deletes(&prefix, created - 1).await?;
        pending.key = None;
        Ok((header, key))
    }

    /// Releases a lock: deletes its key.
    pub async fn unlock(&self, key: Vec<u8>) -> Result<ResponseHeader> {
        let resp = self.delete_range(DeleteRangeRequest { key, ..Default::default() }).await?;
        Ok(resp.header.unwrap_or_default())
    }

    /// Returns once no key under `prefix` has a create revision up to `max_create`.
    pub(super) async fn wait_deletes(&self, prefix: &[u8], max_create: i64) -> Result<ResponseHeader> {
        loop {
            let r = self
                .range(RangeRequest { max_create_revision: max_create, ..by_create(prefix, SortOrder::Descend) })
                .await?;
            let header = r.header.unwrap_or_default();
            let Some(newest) = r.kvs.into_iter().next() else { return Ok(header) };
            self.wait_delete(&newest.key, header.revision).await?;
        }
    }

    /// Returns once `key` is deleted at or after revision `from`.
    async fn wait_delete(&self, key: &[u8], from: i64) -> Result<()> {
        let (tx, mut rx) = mpsc::channel(16);
        let spec = WatchSpec {
            range: KeyRange::single(key),
            start_revision: from,
            no_put: true,
            no_delete: false,
            watch_id: 0,
        };
        let watch = Watching { hub: &self.watch, handle: self.watch.watch(spec, tx) };
        while let Some(batch) = rx.recv().await {
            if batch.compact_revision != 0 {
                break;
            }
            if batch.events.iter().any(|e| e.r#type == EventType::Delete as i32) {
                return Ok(());
            }
        }
        drop(watch);
        Err(Error::Internal("lost watcher waiting for delete".into()))
    }
}

/// A watcher, cancelled when dropped.
pub(super) struct Watching<'a> {
    pub(super) hub: &'a WatchHub,
    pub(super) handle: crate::watch::WatchHandle,
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.hub.cancel(self.handle);
    }
}

/// A lock key put by a call still waiting: deleted if the call ends without the lock.
struct PendingKey {
    server: Arc<EtcdServer>,
    key: Option<Vec<u8>>,
    /// Who asked for the lock: the key is deleted as them.
    caller: Option<crate::auth::AuthInfo>,
}

impl Drop for PendingKey {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let server = self.server.clone();
            tokio::spawn(crate::auth::with_caller(self.caller.take(), async move {
                if let Err(e) = server.unlock(key).await {
                    tracing::warn!(%e, "could not delete the key of an abandoned lock request");
                }
            }));
        }
    }
}

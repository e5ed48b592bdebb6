//! The server layer (etcd's `EtcdServer`): checks requests, proposes writes to raft and waits for their
//! result by request id, and serves reads after a ReadIndex round (linearizable) or directly
//! (serializable).
//!
//! ```text
//!   api ──▶ EtcdServer ──validate──▶ propose(id) ──▶ raft ──▶ apply ──▶ Wait::trigger(id) ──▶ api
//!                    └──read_index──▶ wait until applied ≥ index ──▶ mvcc read
//! ```

pub mod idgen;
pub mod membership;
pub mod validate;
pub mod wait;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::watch;

use crate::apply::{self, Applied};
use crate::error::{Error, Result};
use crate::mvcc::KvStore;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::proto::modkvpb::{InternalRaftRequest, RequestHeader};
use crate::raft::RaftHandle;
use crate::storage::{Backend, WriteBatch};
use idgen::IdGen;
use membership::Cluster;
use wait::Wait;

/// The etcd version modkv speaks on the wire (what `etcdctl endpoint status` shows).
pub const ETCD_VERSION: &str = "3.4.23";
/// The etcd cluster version modkv reports.
pub const ETCD_CLUSTER_VERSION: &str = "3.4.0";

pub struct ServerConfig {
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// How long a request waits for raft before `etcdserver: request timed out`.
    pub request_timeout: Duration,
}

pub struct EtcdServer {
    cfg: ServerConfig,
    pub kv: Arc<KvStore>,
    pub backend: Arc<dyn Backend>,
    pub cluster: Arc<Cluster>,
    pub raft: RaftHandle,
    wait: Arc<Wait>,
    applied: watch::Receiver<u64>,
    ids: IdGen,
}

impl EtcdServer {
    pub fn new(
        cfg: ServerConfig,
        kv: Arc<KvStore>,
        backend: Arc<dyn Backend>,
        cluster: Arc<Cluster>,
        raft: RaftHandle,
        wait: Arc<Wait>,
        applied: watch::Receiver<u64>,
    ) -> EtcdServer {
        let ids = IdGen::new(cluster.member_id);
        EtcdServer { cfg, kv, backend, cluster, raft, wait, applied, ids }
    }

    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    pub fn leader(&self) -> u64 {
        self.raft.status.leader.load(Ordering::SeqCst)
    }

    pub fn term(&self) -> u64 {
        self.raft.status.term.load(Ordering::SeqCst)
    }

    pub fn commit_index(&self) -> u64 {
        self.raft.status.commit.load(Ordering::SeqCst)
    }

    /// A response header for this member at `revision`.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster.cluster_id,
            member_id: self.cluster.member_id,
            revision,
            raft_term: self.term(),
        }
    }

    fn fill(&self, h: &mut Option<ResponseHeader>) {
        let rev = h.as_ref().map(|h| h.revision).unwrap_or_else(|| self.kv.current_rev());
        *h = Some(self.header(rev));
    }

    pub async fn range(&self, r: RangeRequest) -> Result<RangeResponse> {
        validate::range(&r)?;
        if !r.serializable {
            self.linearizable_read().await?;
        }
        let mut resp = apply::kv::range(&*self.kv, &r)?;
        self.fill(&mut resp.header);
        Ok(resp)
    }

    pub async fn put(&self, r: PutRequest) -> Result<PutResponse> {
        validate::put(&r)?;
        match self.propose(InternalRaftRequest { put: Some(r), ..Default::default() }).await? {
            Applied::Put(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_range(&self, r: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        validate::delete(&r)?;
        match self.propose(InternalRaftRequest { delete_range: Some(r), ..Default::default() }).await? {
            Applied::DeleteRange(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn txn(&self, r: TxnRequest) -> Result<TxnResponse> {
        validate::txn(&r, self.cfg.max_txn_ops)?;
        if apply::txn::is_read_only(&r) {
            // Reads only: served here like a Range, never through the log.
            if !apply::txn::is_serializable(&r) {
                self.linearizable_read().await?;
            }
            let mut unused = WriteBatch::default();
            let mut w = self.kv.write(&mut unused);
            let mut resp = apply::txn::txn(&mut w, &r)?;
            self.fill(&mut resp.header);
            return Ok(resp);
        }
        match self.propose(InternalRaftRequest { txn: Some(r), ..Default::default() }).await? {
            Applied::Txn(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn compact(&self, r: CompactionRequest) -> Result<CompactionResponse> {
        match self.propose(InternalRaftRequest { compaction: Some(r), ..Default::default() }).await? {
            Applied::Compaction(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Proposes a request to raft and waits until it is applied.
    async fn propose(&self, mut req: InternalRaftRequest) -> Result<Applied> {
        let id = self.ids.next();
        req.header = Some(RequestHeader { id });
        let data = req.encode_to_vec();
        if data.len() > self.cfg.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        let rx = self.wait.register(id);
        if let Err(e) = self.raft.propose(id, data).await {
            self.wait.cancel(id);
            return Err(e);
        }
        match tokio::time::timeout(self.cfg.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => {
                self.wait.cancel(id);
                Err(Error::Timeout)
            }
        }
    }

    /// Waits until this member has applied everything committed when the read arrived (ReadIndex).
    pub async fn linearizable_read(&self) -> Result<()> {
        let deadline = self.cfg.request_timeout;
        let index = tokio::time::timeout(deadline, self.raft.read_index()).await.map_err(|_| Error::Timeout)??;
        let mut applied = self.applied.clone();
        tokio::time::timeout(deadline, applied.wait_for(|a| *a >= index))
            .await
            .map_err(|_| Error::Timeout)?
            .map_err(|_| Error::Stopped)?;
        Ok(())
    }
}

fn unexpected(a: Applied) -> Error {
    Error::Internal(format!("unexpected apply result {a:?}"))
}

//! The server layer (etcd's `EtcdServer`): checks requests, proposes writes to raft and waits for their
//! result by request id, and serves reads after a ReadIndex round (linearizable) or directly
//! (serializable).
//!
//! ```text
//!   api ──▶ EtcdServer ──validate──▶ propose(id) ──▶ raft ──▶ apply ──▶ Wait::trigger(id) ──▶ api
//!                    └──read_index──▶ wait until applied ≥ index ──▶ mvcc read
//! ```
//!
//! Beside this file: `v3` (the narrow handle each client service holds, and response headers),
//! `validate` (etcd's request checks), `hooks` (the pre-put hook trait plugins implement), `reconfig`
//! (membership changes, leader moves), `lease_forward` (keep-alives and time-to-live on the leader's
//! clock), `lock` / `election` (the Lock and Election services' recipes), `compactor` (auto compaction),
//! `idgen` (request and lease ids).

pub mod auth;
pub mod compactor;
pub mod election;
pub mod hooks;
pub mod idgen;
pub mod lease_forward;
pub mod lock;
pub mod reconfig;
pub mod v3;
pub mod validate;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::watch;

use crate::alarm::AlarmStore;
use crate::apply::auth::{check_delete, check_lease_keys, check_put, check_range, check_txn};
use crate::apply::{self, Applied};
use crate::auth::{caller, AuthStore};
use crate::error::{Error, Result};
use crate::lease::{Lessor, MAX_LEASE_TTL};
use crate::membership::Cluster;
use crate::metrics::Metrics;
use crate::mvcc::KvStore;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, CompactionRequest, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::proto::modkvpb::{InternalRaftRequest, RequestHeader};
use crate::raft::RaftHandle;
use crate::storage::Backend;
use crate::wait::Wait;
use crate::watch::WatchHub;
use hooks::PrePut;
use idgen::IdGen;
pub use v3::Headers;

pub struct ServerConfig {
    /// Largest state machine size before writes are refused (`--quota-backend-bytes`).
    pub quota_backend_bytes: u64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// How long a request waits for raft before `etcdserver: request timed out`.
    pub request_timeout: Duration,
    /// bcrypt cost of the password hashes made here (`--bcrypt-cost`).
    pub bcrypt_cost: u32,
}

/// The parts a server is made of, as `embed` assembles them.
pub struct Parts {
    pub kv: Arc<KvStore>,
    pub lessor: Arc<Lessor>,
    pub alarms: Arc<AlarmStore>,
    pub watch: Arc<WatchHub>,
    pub backend: Arc<dyn Backend>,
    pub cluster: Arc<Cluster>,
    pub raft: RaftHandle,
    pub wait: Arc<Wait<Applied>>,
    pub applied: watch::Receiver<u64>,
    pub metrics: Arc<Metrics>,
    pub dialer: Arc<crate::raft::PeerDialer>,
    pub pre_put: Arc<dyn PrePut>,
    pub auth: Arc<AuthStore>,
}

/// Bytes etcd adds to a put's quota cost for the key's bookkeeping, and to a lease grant's.
const PUT_OVERHEAD: u64 = 256;
const LEASE_OVERHEAD: u64 = 64;

/// How often the leader looks for expired leases.
const LEASE_EXPIRY_CHECK: Duration = Duration::from_millis(500);

pub struct EtcdServer {
    cfg: ServerConfig,
    kv: Arc<KvStore>,
    lessor: Arc<Lessor>,
    alarms: Arc<AlarmStore>,
    watch: Arc<WatchHub>,
    backend: Arc<dyn Backend>,
    cluster: Arc<Cluster>,
    raft: RaftHandle,
    wait: Arc<Wait<Applied>>,
    applied: watch::Receiver<u64>,
    metrics: Arc<Metrics>,
    /// Clients of other members' peer service (requests only the leader answers are sent there).
    dialer: Arc<crate::raft::PeerDialer>,
    ids: IdGen,
    headers: Headers,
    /// Pre-put hooks (the WebAssembly plugins'): run in `put` and `txn` before the proposal.
    pre_put: Arc<dyn PrePut>,
    /// Users, roles and permissions: every request is checked against them while auth is enabled.
    auth: Arc<AuthStore>,
}

impl EtcdServer {
    pub fn new(cfg: ServerConfig, p: Parts) -> EtcdServer {
        let ids = IdGen::new(p.cluster.member_id);
        let headers = Headers::new(p.cluster.cluster_id, p.cluster.member_id, p.raft.status.clone(), p.kv.clone());
        EtcdServer {
            headers,
            cfg,
            kv: p.kv,
            lessor: p.lessor,
            alarms: p.alarms,
            watch: p.watch,
            backend: p.backend,
            cluster: p.cluster,
            raft: p.raft,
            wait: p.wait,
            applied: p.applied,
            metrics: p.metrics,
            dialer: p.dialer,
            ids,
            pre_put: p.pre_put,
            auth: p.auth,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == self.cluster.member_id
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

    /// Builds this member's response headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Users, roles and permissions (the plugin host asks which parts of a range a caller may read).
    pub fn auth_store(&self) -> &AuthStore {
        &self.auth
    }

    /// What `Maintenance.Status` reports of this member (the version is the service's).
    pub fn status(&self) -> crate::proto::etcdserverpb::StatusResponse {
        crate::proto::etcdserverpb::StatusResponse {
            header: Some(self.headers.current()),
            db_size: self.backend.size_on_disk() as i64,
            leader: self.leader(),
            raft_index: self.commit_index(),
            raft_term: self.term(),
            raft_applied_index: self.applied_index(),
            db_size_in_use: self.kv.db_size_in_use() as i64,
            is_learner: self.cluster.is_learner(self.cluster.member_id),
            errors: self.status_errors(),
            ..Default::default()
        }
    }

    /// What `Status.errors` lists, as etcd does: no leader, then each raised alarm.
    fn status_errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.leader() == 0 {
            errors.push(Error::NoLeader.to_string());
        }
        for a in self.alarms.get(AlarmType::None) {
            let name = AlarmType::try_from(a.alarm).map(|t| t.as_str_name()).unwrap_or("UNKNOWN");
            errors.push(format!("memberID:{} alarm:{name} ", a.member_id));
        }
        errors
    }

    fn fill(&self, h: &mut Option<ResponseHeader>) {
        let rev = h.as_ref().map(|h| h.revision).unwrap_or_else(|| self.kv.current_rev());
        *h = Some(self.headers.at(rev));
    }

    pub async fn range(&self, r: RangeRequest) -> Result<RangeResponse> {
        validate::range(&r)?;
        check_range(&self.auth, caller().as_ref(), &r)?;
        if !r.serializable {
            self.not_learner()?;
            self.linearizable_read().await?;
        }
        let mut resp = apply::kv::range(&self.kv.read(), &r)?;
        self.fill(&mut resp.header);
        Ok(resp)
    }

    pub async fn put(&self, r: PutRequest) -> Result<PutResponse> {
        self.put_by(r, &[]).await
    }

    /// A put made by the plugins in `plugins` (through their host `put` import, the last one calling):
    /// their own pre-put hooks are skipped, the others run.
    pub async fn put_by(&self, mut r: PutRequest, plugins: &[Arc<str>]) -> Result<PutResponse> {
        validate::put(&r)?;
        check_put(&self.auth, caller().as_ref(), &r, &self.lessor)?;
        self.not_learner()?;
        if self.pre_put.active() {
            self.pre_put.pre_put(&mut r, false, plugins).await?;
        }
        self.check_quota(PUT_OVERHEAD + (r.key.len() + r.value.len()) as u64).await?;
        self.propose_for(InternalRaftRequest { put: Some(r), ..Default::default() }).await
    }

    pub async fn delete_range(&self, r: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        validate::delete(&r)?;
        check_delete(&self.auth, caller().as_ref(), &r)?;
        self.not_learner()?;
        self.propose_for(InternalRaftRequest { delete_range: Some(r), ..Default::default() }).await
    }

    pub async fn txn(&self, mut r: TxnRequest) -> Result<TxnResponse> {
        validate::txn(&r, self.cfg.max_txn_ops)?;
        check_txn(&self.auth, caller().as_ref(), &r, &self.lessor)?;
        if !apply::txn::is_read_only(&r) || !apply::txn::is_serializable(&r) {
            self.not_learner()?;
        }
        if apply::txn::is_read_only(&r) {
            // Reads only: served here like a Range, never through the log.
            if !apply::txn::is_serializable(&r) {
                self.linearizable_read().await?;
            }
            let mut resp = apply::txn::txn(&mut self.kv.read(), &r, &self.lessor)?;
            self.fill(&mut resp.header);
            return Ok(resp);
        }
        hooks::pre_put_txn(&*self.pre_put, &mut r, &[]).await?;
        self.check_quota(txn_cost(&r)).await?;
        self.propose_for(InternalRaftRequest { txn: Some(r), ..Default::default() }).await
    }

    pub async fn compact(&self, r: CompactionRequest) -> Result<CompactionResponse> {
        // Root only, as etcd 3.4.42+ (3.4.23 lets anyone compact).
        self.auth.check_admin(caller().as_ref())?;
        self.not_learner()?;
        self.propose_for(InternalRaftRequest { compaction: Some(r), ..Default::default() }).await
    }

    pub async fn lease_grant(&self, mut r: LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        // Any user, as etcd 3.4.42+ (3.4.23 checks nothing).
        self.auth.check_user(caller().as_ref())?;
        self.not_learner()?;
        if r.ttl > MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        self.check_quota(LEASE_OVERHEAD).await?;
        if r.id == 0 {
            // As etcd: a fresh id from the request id generator, kept positive.
            r.id = (self.ids.next() & (i64::MAX as u64)) as i64;
        }
        self.propose_for(InternalRaftRequest { lease_grant: Some(r), ..Default::default() }).await
    }

    pub async fn lease_revoke(&self, r: LeaseRevokeRequest) -> Result<LeaseRevokeResponse> {
        self.auth.check_user(caller().as_ref())?;
        check_lease_keys(&self.auth, caller().as_ref(), r.id, &self.lessor)?;
        self.revoke_lease(r).await
    }

    /// Revokes a lease without a caller's checks (the leader's revoke of an expired lease).
    async fn revoke_lease(&self, r: LeaseRevokeRequest) -> Result<LeaseRevokeResponse> {
        self.not_learner()?;
        self.propose_for(InternalRaftRequest { lease_revoke: Some(r), ..Default::default() }).await
    }

    /// Refuses a write that would take the state machine past `--quota-backend-bytes`, raising the
    /// NOSPACE alarm as etcd does.
    async fn check_quota(&self, cost: u64) -> Result<()> {
        if self.backend.size_on_disk() + cost < self.cfg.quota_backend_bytes {
            return Ok(());
        }
        if !self.alarms.is_raised(AlarmType::Nospace) {
            let req = AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: self.cluster.member_id,
                alarm: AlarmType::Nospace as i32,
            };
            if let Err(e) = self.alarm(req).await {
                tracing::warn!(%e, "raising the NOSPACE alarm failed");
            }
        }
        Err(Error::NoSpace)
    }

    /// Lists, raises or clears alarms; raising and clearing go through raft.
    pub async fn alarm(&self, r: AlarmRequest) -> Result<AlarmResponse> {
        if AlarmAction::try_from(r.action) == Ok(AlarmAction::Get) {
            let kind = AlarmType::try_from(r.alarm).unwrap_or(AlarmType::None);
            return Ok(AlarmResponse { header: None, alarms: self.alarms.get(kind) });
        }
        // As in etcd 3.4, an alarm response carries no header.
        self.propose(InternalRaftRequest { alarm: Some(r), ..Default::default() }).await?.try_into().map_err(unexpected)
    }

    /// Reclaims the space of deleted data (etcd's defragment), off the async workers.
    pub async fn defragment(&self) -> Result<()> {
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || backend.defragment())
            .await
            .map_err(|e| Error::Internal(format!("defragment: {e}")))??;
        Ok(())
    }

    /// Revokes expired leases while this member leads, until `stop` fires.
    pub async fn run_lease_expiry(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(LEASE_EXPIRY_CHECK);
        let mut was_leader = false;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {}
            }
            let leading = self.is_leader();
            if leading && !was_leader {
                // A new leader cannot know the old one's clock: every lease gets its full TTL again.
                self.lessor.promote();
            }
            was_leader = leading;
            if !leading {
                continue;
            }
            for id in self.lessor.take_expired() {
                let s = self.clone();
                // The member revokes as root (etcd mints a root token for it), so the revoke passes the
                // checks made at apply while auth is enabled.
                tokio::spawn(crate::auth::with_caller(crate::auth::member(), async move {
                    match s.revoke_lease(LeaseRevokeRequest { id }).await {
                        Ok(_) => tracing::debug!(lease = format_args!("{id:x}"), "revoked expired lease"),
                        Err(Error::LeaseNotFound) => {}
                        Err(e) => {
                            tracing::warn!(lease = format_args!("{id:x}"), %e, "revoking expired lease failed");
                            s.lessor.revoke_failed(id);
                        }
                    }
                }));
            }
        }
    }

    /// Proposes a request and returns its response (of the type the request makes), with this member's
    /// header.
    async fn propose_for<T>(&self, req: InternalRaftRequest) -> Result<T>
    where
        T: Headed + TryFrom<Applied, Error = Applied>,
    {
        let mut resp = T::try_from(self.propose(req).await?).map_err(unexpected)?;
        self.fill(resp.header_mut());
        Ok(resp)
    }

    /// Proposes a request to raft and waits until it is applied. Without a leader the proposal waits for
    /// one (as etcd's does) until the request times out.
    async fn propose(&self, mut req: InternalRaftRequest) -> Result<Applied> {
        let id = self.ids.next();
        // The caller and its token's auth revision, for the checks made again at apply.
        let (username, auth_revision) = caller().map(|c| (c.user, c.revision)).unwrap_or_default();
        req.header = Some(RequestHeader { id, username, auth_revision });
        let data = req.encode_to_vec();
        if data.len() > self.cfg.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        let deadline = tokio::time::Instant::now() + self.cfg.request_timeout;
        // Counted in etcd_server_proposals_pending until this request is answered.
        let _pending = self.metrics.proposal_pending();
        let mut data = Some(data);
        loop {
            let rx = self.wait.register(id);
            // The encoded request goes to raft; a retry (after a dropped proposal) encodes it again.
            let payload = data.take().unwrap_or_else(|| req.encode_to_vec());
            if let Err(e) = self.raft.propose(id, payload).await {
                self.wait.cancel(id);
                self.metrics.proposal_failed();
                return Err(e);
            }
            match tokio::time::timeout_at(deadline, rx).await {
                // Raft dropped the proposal (it answers NoLeader only for that): wait for a leader.
                Ok(Ok(Err(Error::NoLeader))) => {
                    if !self.wait_for_leader(deadline).await {
                        self.metrics.proposal_failed();
                        return Err(Error::Timeout);
                    }
                }
                Ok(Ok(result)) => return result,
                Ok(Err(_)) => return Err(Error::Stopped),
                Err(_) => {
                    self.wait.cancel(id);
                    self.metrics.proposal_failed();
                    return Err(Error::Timeout);
                }
            }
        }
    }

    /// Waits until a leader is known; `false` if none is by `deadline`.
    async fn wait_for_leader(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            if self.leader() != 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
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

impl crate::metrics::MemberView for EtcdServer {
    fn member_state(&self) -> crate::metrics::MemberState {
        let w = self.watch.gauges();
        crate::metrics::MemberState {
            member_id: self.cluster.member_id,
            leader: self.leader(),
            leader_changes: self.raft.status.leader_changes.load(Ordering::SeqCst),
            applied_index: self.applied_index(),
            commit_index: self.commit_index(),
            current_rev: self.kv.current_rev(),
            compact_rev: self.kv.compact_rev(),
            db_size: self.backend.size_on_disk(),
            db_size_in_use: self.kv.db_size_in_use(),
            watchers: w.watchers,
            slow_watchers: w.slow_watchers,
            watch_streams: w.streams,
            watch_events: w.events,
        }
    }
}

/// A txn's quota cost: its puts, nested txns included.
fn txn_cost(t: &TxnRequest) -> u64 {
    t.success
        .iter()
        .chain(&t.failure)
        .map(|op| match &op.request {
            Some(Op::RequestPut(p)) => PUT_OVERHEAD + (p.key.len() + p.value.len()) as u64,
            Some(Op::RequestTxn(n)) => txn_cost(n),
            _ => 0,
        })
        .sum()
}

/// Responses that carry a [`ResponseHeader`].
pub trait Headed {
    fn header_mut(&mut self) -> &mut Option<ResponseHeader>;
}

macro_rules! headed {
    ($($t:ty),*) => {
        $(impl Headed for $t {
            fn header_mut(&mut self) -> &mut Option<ResponseHeader> {
                &mut self.header
            }
        })*
    };
}

headed!(PutResponse, DeleteRangeResponse, TxnResponse, CompactionResponse, LeaseGrantResponse, LeaseRevokeResponse);

fn unexpected(a: Applied) -> Error {
    Error::Internal(format!("unexpected apply result {a:?}"))
}

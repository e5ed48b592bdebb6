//! What each client service sees of the server, as etcd's `v3rpc` services see `RaftKV`, `Lessor`,
//! `Alarmer`, … rather than the whole `EtcdServer`: one trait per service, implemented here by
//! [`EtcdServer`], held by the `api` service as `Arc<dyn …>`.
//!
//! ```text
//!   api::kv           ─▶ RaftKv        range / put / delete / txn / compact
//!   api::lease        ─▶ Leases        grant / revoke / renew / time-to-live / list
//!   api::cluster      ─▶ Members       member list and changes
//!   api::maintenance  ─▶ Maintenance   alarms, status, defragment, move leader (+ the store and backend
//!                                      for hashes and snapshots)
//!   api::lock         ─▶ Locks         lock / unlock
//!   api::election     ─▶ Elections     campaign / proclaim / leader / observe / resign
//!   api::auth         ─▶ Auth          users, roles, enable / disable, authenticate; the caller a token
//!                                      names (for every service, `api::caller`)
//!   api::http         ─▶ Health        /health
//!   api::peer         ─▶ PeerRequests  the member list, and what followers forward to the leader
//!                        (raft messages go to `raft::transport::Receiver`)
//! ```
//!
//! Every response's header comes from [`Headers`]: cluster and member id, raft term, revision.
//!
//! With auth enabled the requests are checked here (and writes again at apply) as the caller the api
//! layer resolved from the request's token (`crate::auth::caller`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::election::LeaderKey;
use super::EtcdServer;
use crate::apply::auth::check_lease_read;
use crate::auth::{caller, AuthInfo, AuthStore};
use crate::error::Result;
use crate::mvcc::KvStore;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse, AuthRoleGetRequest,
    AuthRoleGetResponse, AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse, AuthRoleListRequest,
    AuthRoleListResponse, AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthUserAddRequest,
    AuthUserAddResponse, AuthUserChangePasswordRequest, AuthUserChangePasswordResponse, AuthUserDeleteRequest,
    AuthUserDeleteResponse, AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest,
    AuthUserGrantRoleResponse, AuthUserListRequest, AuthUserListResponse, AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse, CompactionRequest, CompactionResponse,
    DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::proto::modkvpb::member_change_request::Request as Change;
use crate::proto::modkvpb::MemberChangeResponse;
use crate::proto::mvccpb::KeyValue;
use crate::raft::RaftStatus;

/// Response headers of this member: its ids, the raft term now, and a revision.
#[derive(Clone)]
pub struct Headers {
    cluster_id: u64,
    member_id: u64,
    raft: Arc<RaftStatus>,
    kv: Arc<KvStore>,
}

impl Headers {
    pub fn new(cluster_id: u64, member_id: u64, raft: Arc<RaftStatus>, kv: Arc<KvStore>) -> Headers {
        Headers { cluster_id, member_id, raft, kv }
    }

    /// The header of a response at `revision`.
    pub fn at(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.raft.term.load(Ordering::SeqCst),
        }
    }

    /// The header of a response at the store's current revision.
    pub fn current(&self) -> ResponseHeader {
        self.at(self.kv.current_rev())
    }
}

/// Every handle the client services take from a member, built once by [`EtcdServer::handles`].
#[derive(Clone)]
pub struct Handles {
    pub kv: Arc<dyn RaftKv>,
    pub leases: Arc<dyn Leases>,
    pub members: Arc<dyn Members>,
    pub maintenance: Arc<dyn Maintenance>,
    pub locks: Arc<dyn Locks>,
    pub elections: Arc<dyn Elections>,
    pub health: Arc<dyn Health>,
    pub peer: Arc<dyn PeerRequests>,
    pub auth: Arc<dyn Auth>,
    /// The auth state (the watch service checks a watch's range against it).
    pub auth_store: Arc<AuthStore>,
    /// The watchable store: watchers and the history they catch up from.
    pub watch_hub: Arc<crate::watch::WatchHub>,
    pub store: Arc<KvStore>,
    /// The backend snapshots are streamed from.
    pub backend: Arc<dyn crate::storage::Backend>,
    pub headers: Headers,
}

impl EtcdServer {
    /// The handles of this member's client services.
    pub fn handles(self: &Arc<Self>) -> Handles {
        Handles {
            kv: self.clone(),
            leases: self.clone(),
            members: self.clone(),
            maintenance: self.clone(),
            locks: self.clone(),
            elections: self.clone(),
            health: self.clone(),
            peer: self.clone(),
            auth: self.clone(),
            auth_store: self.auth.clone(),
            watch_hub: self.watch.clone(),
            store: self.kv.clone(),
            backend: self.backend.clone(),
            headers: self.headers.clone(),
        }
    }
}

/// The KV service's view (etcd's `RaftKV`).
#[async_trait]
pub trait RaftKv: Send + Sync {
    async fn range(&self, r: RangeRequest) -> Result<RangeResponse>;
    async fn put(&self, r: PutRequest) -> Result<PutResponse>;
    async fn delete_range(&self, r: DeleteRangeRequest) -> Result<DeleteRangeResponse>;
    async fn txn(&self, r: TxnRequest) -> Result<TxnResponse>;
    async fn compact(&self, r: CompactionRequest) -> Result<CompactionResponse>;
}

/// The Lease service's view (etcd's `Lessor`).
#[async_trait]
pub trait Leases: Send + Sync {
    async fn grant(&self, r: LeaseGrantRequest) -> Result<LeaseGrantResponse>;
    async fn revoke(&self, r: LeaseRevokeRequest) -> Result<LeaseRevokeResponse>;
    /// A keep-alive: the lease's TTL (renewed on the leader).
    async fn renew(&self, id: i64) -> Result<i64>;
    async fn time_to_live(&self, r: LeaseTimeToLiveRequest) -> Result<LeaseTimeToLiveResponse>;
    fn leases(&self) -> Result<LeaseLeasesResponse>;
    fn headers(&self) -> &Headers;
}

/// The Cluster service's view: the member list and changes to it.
#[async_trait]
pub trait Members: Send + Sync {
    fn members(&self) -> Vec<crate::membership::Member>;
    /// Whether the caller may list the members (any user, as etcd 3.4.42+).
    fn may_list(&self) -> Result<()>;
    async fn change_members(&self, req: Change) -> Result<MemberChangeResponse>;
    fn headers(&self) -> &Headers;
}

/// The Maintenance service's view (etcd's `Alarmer`, `RaftStatusGetter`, `LeaderTransferrer`).
#[async_trait]
pub trait Maintenance: Send + Sync {
    async fn alarm(&self, r: AlarmRequest) -> Result<AlarmResponse>;
    /// What `Status` reports of this member (its `version` left for the service).
    fn status(&self) -> crate::proto::etcdserverpb::StatusResponse;
    async fn defragment(&self) -> Result<()>;
    async fn move_leader(&self, to: u64) -> Result<()>;
    /// The caller must be root (defragment, snapshot, hash, status, move leader, alarm changes); the
    /// error as etcd's maintenance service gives it (`Unknown`, `auth: permission denied`).
    fn check_admin(&self) -> Result<()>;
    /// The caller must be a user (alarm list).
    fn check_user(&self) -> Result<()>;
    fn headers(&self) -> &Headers;
}

/// The Lock service's view.
#[async_trait]
pub trait Locks: Send + Sync {
    async fn lock(self: Arc<Self>, name: Vec<u8>, lease: i64) -> Result<(ResponseHeader, Vec<u8>)>;
    async fn unlock(&self, key: Vec<u8>) -> Result<ResponseHeader>;
}

/// The Election service's view.
#[async_trait]
pub trait Elections: Send + Sync {
    async fn campaign(
        self: Arc<Self>,
        name: Vec<u8>,
        lease: i64,
        value: Vec<u8>,
    ) -> Result<(ResponseHeader, LeaderKey)>;
    async fn proclaim(&self, leader: LeaderKey, value: Vec<u8>) -> Result<ResponseHeader>;
    async fn leader(&self, name: Vec<u8>) -> Result<(ResponseHeader, KeyValue)>;
    fn observe(self: Arc<Self>, name: Vec<u8>) -> mpsc::Receiver<Result<(ResponseHeader, KeyValue)>>;
    async fn resign(&self, leader: LeaderKey) -> Result<ResponseHeader>;
}

/// What other members ask of this one on the peer port, besides raft messages: the member list (for a
/// joining member) and what only the leader serves.
#[async_trait]
pub trait PeerRequests: Send + Sync {
    fn cluster_id(&self) -> u64;
    fn members(&self) -> Vec<crate::membership::Member>;
    fn is_leader(&self) -> bool;
    /// The raft term now (a forwarded request of an older one is refused).
    fn term(&self) -> u64;
    async fn change_members_here(&self, req: Change) -> Result<MemberChangeResponse>;
    fn lease_renew_here(&self, id: i64) -> Result<i64>;
    fn lease_time_to_live_here(&self, r: &LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse;
}

/// The Auth service's view, and the caller a request's token names.
#[async_trait]
pub trait Auth: Send + Sync {
    /// The caller `token` names (`etcdserver: invalid auth token` if none); waits until this member has
    /// applied the entry the token was made at.
    async fn caller_of(&self, token: &str) -> Result<AuthInfo>;
    fn enabled(&self) -> bool;
    async fn auth_enable(&self, r: AuthEnableRequest) -> Result<AuthEnableResponse>;
    async fn auth_disable(&self, r: AuthDisableRequest) -> Result<AuthDisableResponse>;
    async fn authenticate(&self, r: AuthenticateRequest) -> Result<AuthenticateResponse>;
    async fn user_add(&self, r: AuthUserAddRequest) -> Result<AuthUserAddResponse>;
    async fn user_get(&self, r: AuthUserGetRequest) -> Result<AuthUserGetResponse>;
    async fn user_list(&self, r: AuthUserListRequest) -> Result<AuthUserListResponse>;
    async fn user_delete(&self, r: AuthUserDeleteRequest) -> Result<AuthUserDeleteResponse>;
    async fn user_change_password(&self, r: AuthUserChangePasswordRequest) -> Result<AuthUserChangePasswordResponse>;
    async fn user_grant_role(&self, r: AuthUserGrantRoleRequest) -> Result<AuthUserGrantRoleResponse>;
    async fn user_revoke_role(&self, r: AuthUserRevokeRoleRequest) -> Result<AuthUserRevokeRoleResponse>;
    async fn role_add(&self, r: AuthRoleAddRequest) -> Result<AuthRoleAddResponse>;
    async fn role_get(&self, r: AuthRoleGetRequest) -> Result<AuthRoleGetResponse>;
    async fn role_list(&self, r: AuthRoleListRequest) -> Result<AuthRoleListResponse>;
    async fn role_delete(&self, r: AuthRoleDeleteRequest) -> Result<AuthRoleDeleteResponse>;
    async fn role_grant_permission(&self, r: AuthRoleGrantPermissionRequest)
        -> Result<AuthRoleGrantPermissionResponse>;
    async fn role_revoke_permission(
        &self,
        r: AuthRoleRevokePermissionRequest,
    ) -> Result<AuthRoleRevokePermissionResponse>;
}

/// What `/health` asks.
#[async_trait]
pub trait Health: Send + Sync {
    /// A leader is known, no alarm is raised, and a linearizable read completes.
    async fn healthy(&self, read_timeout: std::time::Duration) -> bool;
}

#[async_trait]
impl RaftKv for EtcdServer {
    async fn range(&self, r: RangeRequest) -> Result<RangeResponse> {
        EtcdServer::range(self, r).await
    }
    async fn put(&self, r: PutRequest) -> Result<PutResponse> {
        EtcdServer::put(self, r).await
    }
    async fn delete_range(&self, r: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        EtcdServer::delete_range(self, r).await
    }
    async fn txn(&self, r: TxnRequest) -> Result<TxnResponse> {
        EtcdServer::txn(self, r).await
    }
    async fn compact(&self, r: CompactionRequest) -> Result<CompactionResponse> {
        EtcdServer::compact(self, r).await
    }
}

#[async_trait]
impl Leases for EtcdServer {
    async fn grant(&self, r: LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        self.lease_grant(r).await
    }
    async fn revoke(&self, r: LeaseRevokeRequest) -> Result<LeaseRevokeResponse> {
        self.lease_revoke(r).await
    }
    async fn renew(&self, id: i64) -> Result<i64> {
        // Root, or READ on the lease's keys, as etcd 3.4.42+ (3.4.23 checks nothing).
        check_lease_read(&self.auth, caller().as_ref(), id, &self.lessor)?;
        self.lease_renew(id).await
    }
    async fn time_to_live(&self, r: LeaseTimeToLiveRequest) -> Result<LeaseTimeToLiveResponse> {
        check_lease_read(&self.auth, caller().as_ref(), r.id, &self.lessor)?;
        self.lease_time_to_live(r).await
    }
    fn leases(&self) -> Result<LeaseLeasesResponse> {
        // READ on every key, as etcd 3.4.42+.
        self.auth.check(caller().as_ref(), crate::auth::Access::Read, &[], &[0])?;
        let leases = self.lessor.leases().into_iter().map(|id| LeaseStatus { id }).collect();
        Ok(LeaseLeasesResponse { header: Some(self.headers.current()), leases })
    }
    fn headers(&self) -> &Headers {
        &self.headers
    }
}

#[async_trait]
impl Members for EtcdServer {
    fn members(&self) -> Vec<crate::membership::Member> {
        self.cluster.members()
    }
    fn may_list(&self) -> Result<()> {
        self.auth.check_user(caller().as_ref())
    }
    async fn change_members(&self, req: Change) -> Result<MemberChangeResponse> {
        self.auth.check_admin(caller().as_ref())?;
        EtcdServer::change_members(self, req).await
    }
    fn headers(&self) -> &Headers {
        &self.headers
    }
}

#[async_trait]
impl Maintenance for EtcdServer {
    async fn alarm(&self, r: AlarmRequest) -> Result<AlarmResponse> {
        EtcdServer::alarm(self, r).await
    }
    fn status(&self) -> crate::proto::etcdserverpb::StatusResponse {
        EtcdServer::status(self)
    }
    async fn defragment(&self) -> Result<()> {
        EtcdServer::defragment(self).await
    }
    async fn move_leader(&self, to: u64) -> Result<()> {
        EtcdServer::move_leader(self, to).await
    }
    fn check_admin(&self) -> Result<()> {
        self.auth.check_admin(caller().as_ref()).map_err(crate::error::Error::unmapped_auth)
    }
    fn check_user(&self) -> Result<()> {
        self.auth.check_user(caller().as_ref()).map_err(crate::error::Error::unmapped_auth)
    }
    fn headers(&self) -> &Headers {
        &self.headers
    }
}

#[async_trait]
impl Locks for EtcdServer {
    async fn lock(self: Arc<Self>, name: Vec<u8>, lease: i64) -> Result<(ResponseHeader, Vec<u8>)> {
        EtcdServer::lock(&self, &name, lease).await
    }
    async fn unlock(&self, key: Vec<u8>) -> Result<ResponseHeader> {
        EtcdServer::unlock(self, key).await
    }
}

#[async_trait]
impl Elections for EtcdServer {
    async fn campaign(
        self: Arc<Self>,
        name: Vec<u8>,
        lease: i64,
        value: Vec<u8>,
    ) -> Result<(ResponseHeader, LeaderKey)> {
        EtcdServer::campaign(&self, &name, lease, &value).await
    }
    async fn proclaim(&self, leader: LeaderKey, value: Vec<u8>) -> Result<ResponseHeader> {
        EtcdServer::proclaim(self, &leader, &value).await
    }
    async fn leader(&self, name: Vec<u8>) -> Result<(ResponseHeader, KeyValue)> {
        EtcdServer::election_leader(self, &name).await
    }
    fn observe(self: Arc<Self>, name: Vec<u8>) -> mpsc::Receiver<Result<(ResponseHeader, KeyValue)>> {
        EtcdServer::observe(&self, &name)
    }
    async fn resign(&self, leader: LeaderKey) -> Result<ResponseHeader> {
        EtcdServer::resign(self, &leader).await
    }
}

#[async_trait]
impl PeerRequests for EtcdServer {
    fn cluster_id(&self) -> u64 {
        self.cluster.cluster_id
    }
    fn members(&self) -> Vec<crate::membership::Member> {
        self.cluster.members()
    }
    fn is_leader(&self) -> bool {
        EtcdServer::is_leader(self)
    }
    fn term(&self) -> u64 {
        EtcdServer::term(self)
    }
    async fn change_members_here(&self, req: Change) -> Result<MemberChangeResponse> {
        EtcdServer::change_members_here(self, req).await
    }
    fn lease_renew_here(&self, id: i64) -> Result<i64> {
        self.lessor.renew(id)
    }
    fn lease_time_to_live_here(&self, r: &LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse {
        EtcdServer::lease_time_to_live_here(self, r)
    }
}

#[async_trait]
impl Health for EtcdServer {
    async fn healthy(&self, read_timeout: std::time::Duration) -> bool {
        self.leader() != 0
            && !self.alarms.any()
            && matches!(tokio::time::timeout(read_timeout, self.linearizable_read()).await, Ok(Ok(())))
    }
}

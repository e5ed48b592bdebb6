//! The JSON gateway: etcd 3.4's grpc-gateway API (`POST /v3/kv/range` with a JSON body, …) on the
//! client port, answering byte for byte as etcd does.
//!
//! ```text
//!   POST /v3/<path> ─▶ body ─▶ jsonpb::Schema::canonical   (Go's decoding and its error messages)
//!                           ─▶ pbjson Deserialize          (generated from the protos)
//!                           ─▶ the tonic service method    (the same code the gRPC API runs)
//!                           ─▶ pbjson Serialize + GoFormatter ─▶ 200 JSON
//!                      errors ─▶ {"error","message","code"} with grpc-gateway's HTTP status
//! ```
//!
//! `/v3beta/...` is an alias of `/v3/...` (etcd 3.4 rewrites it). The `Authorization` header carries
//! the caller's token (raw, no "Bearer"), as etcd's gateway passes it on in the metadata. Every response carries
//! etcd's CORS headers; `OPTIONS` answers 200 with no body, other methods than POST 405, unknown
//! paths under `/v3/` grpc-gateway's 404.
//!
//! The services are a [`Backend`]'s: a member's own ([`router`]) or a proxy's forwarding ones
//! ([`router_for`]), the backend saying how a call is made as the token's caller.

mod gojson;
pub mod json;
mod jsonpb;
mod stream;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Code, Request, Status};

use crate::api::auth::AuthService;
use crate::api::cluster::ClusterService;
use crate::api::election::ElectionService;
use crate::api::kv::KvService;
use crate::api::lease::{self, LeaseService};
use crate::api::lock::LockService;
use crate::api::maintenance::MaintenanceService;
use crate::api::Services;
use crate::metrics::Metrics;
use crate::proto::etcdserverpb::auth_server::Auth as AuthRpc;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse, WatchRequest, WatchResponse};
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3lockpb::lock_server::Lock;
use jsonpb::Schema;

/// etcd's default `--max-request-bytes`.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1_572_864;
/// The fewest JSON bytes one request may take however small `--max-request-bytes` is.
const MIN_BODY_CAP: usize = 1024 * 1024;

/// The etcd gateway methods: path (under `/v3/` and `/v3beta/`) → what serves it.
#[derive(Clone, Copy, Debug)]
enum Rpc {
    Range,
    Put,
    DeleteRange,
    Txn,
    Compact,
    MemberAdd,
    MemberRemove,
    MemberUpdate,
    MemberList,
    MemberPromote,
    Alarm,
    Status,
    Defragment,
    Hash,
    Snapshot,
    MoveLeader,
    LeaseGrant,
    LeaseRevoke,
    LeaseKeepAlive,
    LeaseTimeToLive,
    LeaseLeases,
    Watch,
    Lock,
    Unlock,
    Campaign,
    Proclaim,
    Leader,
    Observe,
    Resign,
    /// A method of the Auth service: its gRPC path and request type.
    Auth {
        path: &'static str,
        input: &'static str,
    },
}

impl Rpc {
    /// The gRPC method of a unary call (for its metrics).
    fn grpc_path(self) -> Option<&'static str> {
        Some(match self {
            Rpc::Range => "/etcdserverpb.KV/Range",
            Rpc::Put => "/etcdserverpb.KV/Put",
            Rpc::DeleteRange => "/etcdserverpb.KV/DeleteRange",
            Rpc::Txn => "/etcdserverpb.KV/Txn",
            Rpc::Compact => "/etcdserverpb.KV/Compact",
            Rpc::MemberAdd => "/etcdserverpb.Cluster/MemberAdd",
            Rpc::MemberRemove => "/etcdserverpb.Cluster/MemberRemove",
            Rpc::MemberUpdate => "/etcdserverpb.Cluster/MemberUpdate",
            Rpc::MemberList => "/etcdserverpb.Cluster/MemberList",
            Rpc::MemberPromote => "/etcdserverpb.Cluster/MemberPromote",
            Rpc::Alarm => "/etcdserverpb.Maintenance/Alarm",
            Rpc::Status => "/etcdserverpb.Maintenance/Status",
            Rpc::Defragment => "/etcdserverpb.Maintenance/Defragment",
            Rpc::Hash => "/etcdserverpb.Maintenance/Hash",
            Rpc::MoveLeader => "/etcdserverpb.Maintenance/MoveLeader",
            Rpc::LeaseGrant => "/etcdserverpb.Lease/LeaseGrant",
            Rpc::LeaseRevoke => "/etcdserverpb.Lease/LeaseRevoke",
            Rpc::LeaseTimeToLive => "/etcdserverpb.Lease/LeaseTimeToLive",
            Rpc::LeaseLeases => "/etcdserverpb.Lease/LeaseLeases",
            Rpc::Lock => "/v3lockpb.Lock/Lock",
            Rpc::Unlock => "/v3lockpb.Lock/Unlock",
            Rpc::Campaign => "/v3electionpb.Election/Campaign",
            Rpc::Proclaim => "/v3electionpb.Election/Proclaim",
            Rpc::Leader => "/v3electionpb.Election/Leader",
            Rpc::Resign => "/v3electionpb.Election/Resign",
            Rpc::Auth { path, .. } => path,
            Rpc::Snapshot | Rpc::LeaseKeepAlive | Rpc::Watch | Rpc::Observe => return None,
        })
    }
}

const fn auth(path: &'static str, input: &'static str) -> Rpc {
    Rpc::Auth { path, input }
}

/// etcd 3.4's gateway paths (from the `google.api.http` options of its protos).
const ROUTES: &[(&str, Rpc)] = &[
    ("kv/range", Rpc::Range),
    ("kv/put", Rpc::Put),
    ("kv/deleterange", Rpc::DeleteRange),
    ("kv/txn", Rpc::Txn),
    ("kv/compaction", Rpc::Compact),
    ("watch", Rpc::Watch),
    ("lease/grant", Rpc::LeaseGrant),
    ("lease/revoke", Rpc::LeaseRevoke),
    ("kv/lease/revoke", Rpc::LeaseRevoke),
    ("lease/keepalive", Rpc::LeaseKeepAlive),
    ("lease/timetolive", Rpc::LeaseTimeToLive),
    ("kv/lease/timetolive", Rpc::LeaseTimeToLive),
    ("lease/leases", Rpc::LeaseLeases),
    ("kv/lease/leases", Rpc::LeaseLeases),
    ("cluster/member/add", Rpc::MemberAdd),
    ("cluster/member/remove", Rpc::MemberRemove),
    ("cluster/member/update", Rpc::MemberUpdate),
    ("cluster/member/list", Rpc::MemberList),
    ("cluster/member/promote", Rpc::MemberPromote),
    ("maintenance/alarm", Rpc::Alarm),
    ("maintenance/status", Rpc::Status),
    ("maintenance/defragment", Rpc::Defragment),
    // etcd binds both Hash and HashKV to this path; Hash, registered first, wins.
    ("maintenance/hash", Rpc::Hash),
    ("maintenance/snapshot", Rpc::Snapshot),
    ("maintenance/transfer-leadership", Rpc::MoveLeader),
    ("auth/enable", auth("/etcdserverpb.Auth/AuthEnable", ".etcdserverpb.AuthEnableRequest")),
    ("auth/disable", auth("/etcdserverpb.Auth/AuthDisable", ".etcdserverpb.AuthDisableRequest")),
    ("auth/authenticate", auth("/etcdserverpb.Auth/Authenticate", ".etcdserverpb.AuthenticateRequest")),
    ("auth/user/add", auth("/etcdserverpb.Auth/UserAdd", ".etcdserverpb.AuthUserAddRequest")),
    ("auth/user/get", auth("/etcdserverpb.Auth/UserGet", ".etcdserverpb.AuthUserGetRequest")),
    ("auth/user/list", auth("/etcdserverpb.Auth/UserList", ".etcdserverpb.AuthUserListRequest")),
    ("auth/user/delete", auth("/etcdserverpb.Auth/UserDelete", ".etcdserverpb.AuthUserDeleteRequest")),
    (
        "auth/user/changepw",
        auth("/etcdserverpb.Auth/UserChangePassword", ".etcdserverpb.AuthUserChangePasswordRequest"),
    ),
    ("auth/user/grant", auth("/etcdserverpb.Auth/UserGrantRole", ".etcdserverpb.AuthUserGrantRoleRequest")),
    ("auth/user/revoke", auth("/etcdserverpb.Auth/UserRevokeRole", ".etcdserverpb.AuthUserRevokeRoleRequest")),
    ("auth/role/add", auth("/etcdserverpb.Auth/RoleAdd", ".etcdserverpb.AuthRoleAddRequest")),
    ("auth/role/get", auth("/etcdserverpb.Auth/RoleGet", ".etcdserverpb.AuthRoleGetRequest")),
    ("auth/role/list", auth("/etcdserverpb.Auth/RoleList", ".etcdserverpb.AuthRoleListRequest")),
    ("auth/role/delete", auth("/etcdserverpb.Auth/RoleDelete", ".etcdserverpb.AuthRoleDeleteRequest")),
    ("auth/role/grant", auth("/etcdserverpb.Auth/RoleGrantPermission", ".etcdserverpb.AuthRoleGrantPermissionRequest")),
    (
        "auth/role/revoke",
        auth("/etcdserverpb.Auth/RoleRevokePermission", ".etcdserverpb.AuthRoleRevokePermissionRequest"),
    ),
    ("lock/lock", Rpc::Lock),
    ("lock/unlock", Rpc::Unlock),
    ("election/campaign", Rpc::Campaign),
    ("election/proclaim", Rpc::Proclaim),
    ("election/leader", Rpc::Leader),
    ("election/observe", Rpc::Observe),
    ("election/resign", Rpc::Resign),
];

/// What the gateway calls: a member's services ([`Services`]) or a proxy's forwarding ones. Besides
/// the services, how a call is made as its caller (the `Authorization` header's raw token) and how the
/// bidirectional calls (watch, lease keep-alive) are served from a stream of requests.
pub trait Backend: Clone + Send + Sync + 'static {
    type Kv: Kv;
    type Lease: Lease;
    type Cluster: Cluster;
    type Maintenance: Maintenance;
    type Lock: Lock;
    type Election: Election;
    type Auth: AuthRpc;
    fn kv(&self) -> Self::Kv;
    fn lease(&self) -> Self::Lease;
    fn cluster(&self) -> Self::Cluster;
    fn maintenance(&self) -> Self::Maintenance;
    fn lock(&self) -> Self::Lock;
    fn election(&self) -> Self::Election;
    fn auth(&self) -> Self::Auth;
    /// Runs `call` as the caller `token` names (`None`: anonymous, or an `Authenticate` call).
    fn as_caller(&self, token: Option<HeaderValue>, call: BoxFuture<'static, Response>)
        -> BoxFuture<'static, Response>;
    /// A watch session over `requests` (run as the current caller).
    fn watch(
        &self,
        requests: BoxStream<'static, Result<WatchRequest, Status>>,
    ) -> BoxStream<'static, Result<WatchResponse, Status>>;
    /// The answers to a stream of keep-alives (made as the current caller).
    fn keep_alive(
        &self,
        requests: BoxStream<'static, LeaseKeepAliveRequest>,
    ) -> BoxStream<'static, Result<LeaseKeepAliveResponse, Status>>;
}

impl Backend for Services {
    type Kv = KvService;
    type Lease = LeaseService;
    type Cluster = ClusterService;
    type Maintenance = MaintenanceService;
    type Lock = LockService;
    type Election = ElectionService;
    type Auth = AuthService;
    fn kv(&self) -> KvService {
        self.kv.clone()
    }
    fn lease(&self) -> LeaseService {
        self.lease.clone()
    }
    fn cluster(&self) -> ClusterService {
        self.cluster.clone()
    }
    fn maintenance(&self) -> MaintenanceService {
        self.maintenance.clone()
    }
    fn lock(&self) -> LockService {
        self.lock.clone()
    }
    fn election(&self) -> ElectionService {
        self.election.clone()
    }
    fn auth(&self) -> AuthService {
        self.auth.clone()
    }

    fn as_caller(
        &self,
        token: Option<HeaderValue>,
        call: BoxFuture<'static, Response>,
    ) -> BoxFuture<'static, Response> {
        let auth = self.auth.server.clone();
        Box::pin(async move {
            let caller = match crate::api::auth::caller_of(&*auth, token.as_ref().map(HeaderValue::as_bytes)).await {
                Ok(c) => c,
                Err(e) => return status_error(&Status::from(e)),
            };
            crate::auth::with_caller(caller, call).await
        })
    }

    fn watch(
        &self,
        requests: BoxStream<'static, Result<WatchRequest, Status>>,
    ) -> BoxStream<'static, Result<WatchResponse, Status>> {
        let rx = crate::api::watch::session(self.watch.clone(), requests);
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
    }

    fn keep_alive(
        &self,
        requests: BoxStream<'static, LeaseKeepAliveRequest>,
    ) -> BoxStream<'static, Result<LeaseKeepAliveResponse, Status>> {
        let leases = self.lease.server.clone();
        // Each renewal as the caller (the answers are made after this call returns).
        let caller = crate::auth::stream_caller();
        Box::pin(requests.then(move |r| {
            let renew = lease::keep_alive_once(leases.clone(), r.id).map(|a| a.map_err(Status::from));
            crate::auth::with_caller(caller.clone(), renew)
        }))
    }
}

struct Gateway<B: Backend> {
    kv: B::Kv,
    lease: B::Lease,
    cluster: B::Cluster,
    maintenance: B::Maintenance,
    lock: B::Lock,
    election: B::Election,
    auth: B::Auth,
    backend: B,
    /// Counts the calls as the gRPC layer counts gRPC's (`grpc_server_*`); a proxy's are not counted.
    metrics: Option<Arc<Metrics>>,
    schema: &'static Schema,
    /// The largest request etcd's gRPC server takes (`--max-request-bytes` + 512 KiB).
    max_recv: usize,
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::from_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET).expect("the built-in descriptor set decodes")
    })
}

/// The gateway's decoding of a request body for message `input` (e.g. `.etcdserverpb.TxnRequest`), as a
/// call decodes it before it reaches the service; for the fuzz tests (`server/tests/fuzz.rs`).
#[doc(hidden)]
pub fn decode_body<Req: prost::Message + DeserializeOwned>(input: &str, body: &[u8]) -> Result<Req, Status> {
    let canonical = schema().canonical(input, body).map_err(Status::invalid_argument)?;
    serde_json::from_value(canonical).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// The requests of a bidirectional call's body (watch, lease keep-alive), as [`decode_body`] decodes one;
/// for the fuzz tests.
#[doc(hidden)]
pub fn decode_stream_body<Req: prost::Message + DeserializeOwned>(
    input: &str,
    body: &[u8],
) -> Vec<Result<Req, String>> {
    let mut out = Vec::new();
    let mut split = gojson::Splitter::default();
    let mut rest = body;
    loop {
        let found = match split.feed(rest) {
            Ok(None) => split.finish(rest),
            found => found,
        };
        let (start, end) = match found {
            Ok(Some(span)) => span,
            Ok(None) => return out,
            Err(e) => {
                out.push(Err(e));
                return out;
            }
        };
        let req = schema()
            .canonical_value(input, &rest[start..end])
            .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()));
        let failed = req.is_err();
        out.push(req);
        if failed {
            return out;
        }
        rest = &rest[end..];
        split.reset();
    }
}

/// The gateway in front of `services`; requests whose protobuf encoding exceeds `max_request_bytes` +
/// 512 KiB are refused as etcd's gRPC server refuses them.
pub fn router(services: Services, metrics: Arc<Metrics>, max_request_bytes: usize) -> Router {
    router_for(services, Some(metrics), crate::api::max_grpc_message(max_request_bytes))
}

/// The gateway in front of any [`Backend`] (a proxy's), taking requests of up to `max_recv` bytes.
pub fn router_for<B: Backend>(backend: B, metrics: Option<Arc<Metrics>>, max_recv: usize) -> Router {
    let gw = Arc::new(Gateway {
        kv: backend.kv(),
        lease: backend.lease(),
        cluster: backend.cluster(),
        maintenance: backend.maintenance(),
        lock: backend.lock(),
        election: backend.election(),
        auth: backend.auth(),
        backend,
        metrics,
        schema: schema(),
        max_recv,
    });
    let mut router = Router::new();
    for (path, rpc) in ROUTES {
        for prefix in ["/v3/", "/v3beta/"] {
            let gw = gw.clone();
            let rpc = *rpc;
            router = router.route(
                &format!("{prefix}{path}"),
                any(move |method: Method, headers: HeaderMap, body: Body| async move {
                    with_cors(serve(gw, rpc, method, &headers, body).await)
                }),
            );
        }
    }
    for path in ["/v3/", "/v3/{*rest}", "/v3beta/", "/v3beta/{*rest}"] {
        router = router.route(path, any(|method: Method| async move { with_cors(not_found(method)) }));
    }
    router
}

/// etcd's access controller adds these to every HTTP response.
fn with_cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("access-control-allow-headers", HeaderValue::from_static("accept, content-type, authorization"));
    h.insert("access-control-allow-methods", HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"));
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    r
}

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

fn not_found(method: Method) -> Response {
    if method == Method::OPTIONS {
        return Response::new(Body::empty());
    }
    text(StatusCode::NOT_FOUND, "Not Found\n")
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A unary call's error as grpc-gateway writes it.
fn error(code: Code, message: &str) -> Response {
    json_response(json::http_status(code), json::error_body(code, message))
}

fn status_error(s: &Status) -> Response {
    error(s.code(), s.message())
}

/// A streaming call failing before its first message.
fn stream_error(s: &Status) -> Response {
    json_response(json::http_status(s.code()), json::stream_error_body(s.code(), s.message()))
}

fn ok<T: Serialize>(resp: &T) -> Response {
    match json::to_go_json(resp) {
        Ok(body) => {
            let mut r = json_response(StatusCode::OK, body);
            r.headers_mut().insert("grpc-metadata-content-type", HeaderValue::from_static("application/grpc"));
            r
        }
        Err(e) => error(Code::Internal, &format!("modkv: encoding the response: {e}")),
    }
}

fn too_large(len: usize, max: usize) -> Status {
    Status::resource_exhausted(format!("grpc: received message larger than max ({len} vs. {max})"))
}

impl<B: Backend> Gateway<B> {
    /// The most JSON bytes one request may take (JSON needs up to 4 bytes per protobuf byte).
    fn max_json(&self) -> usize {
        MIN_BODY_CAP.max(self.max_recv.saturating_mul(4))
    }

    /// Decodes a request body into `Req` with etcd's errors (as a `Status` to answer with).
    fn decode<Req>(&self, input: &str, body: &[u8]) -> Result<Req, Status>
    where
        Req: prost::Message + DeserializeOwned,
    {
        let canonical = self.schema.canonical(input, body).map_err(Status::invalid_argument)?;
        let req: Req = serde_json::from_value(canonical).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let len = req.encoded_len();
        if len > self.max_recv {
            return Err(too_large(len, self.max_recv));
        }
        Ok(req)
    }

    /// A unary call: the request decoded from JSON, the service called, counted in the gRPC metrics
    /// as etcd counts its gateway's calls (they reach its gRPC port).
    async fn unary<Req, Resp, F, Fut>(&self, rpc: Rpc, input: &str, body: &[u8], call: F) -> Response
    where
        Req: prost::Message + DeserializeOwned,
        Resp: Serialize,
        F: FnOnce(Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let req = match self.decode::<Req>(input, body) {
            Ok(r) => r,
            Err(s) => return status_error(&s),
        };
        let result = call(req).await;
        if let Some(path) = rpc.grpc_path() {
            let code = result.as_ref().map_or_else(|s| s.code(), |_| Code::Ok);
            if let Some(m) = &self.metrics {
                m.grpc().count_unary(path, code);
            }
        }
        match result {
            Ok(resp) => ok(resp.get_ref()),
            Err(s) => status_error(&s),
        }
    }
}

async fn serve<B: Backend>(gw: Arc<Gateway<B>>, rpc: Rpc, method: Method, headers: &HeaderMap, body: Body) -> Response {
    if method == Method::OPTIONS {
        return Response::new(Body::empty());
    }
    if method != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    }
    // The caller: the raw token in `Authorization` (no "Bearer"), as grpc-gateway passes it on.
    let token = headers.get(header::AUTHORIZATION).cloned();
    let authenticate = matches!(rpc, Rpc::Auth { path: "/etcdserverpb.Auth/Authenticate", .. });
    let backend = gw.backend.clone();
    backend
        .as_caller(token.filter(|_| !authenticate), Box::pin(async move { serve_as_caller(&gw, rpc, body).await }))
        .await
}

async fn serve_as_caller<B: Backend>(gw: &Gateway<B>, rpc: Rpc, body: Body) -> Response {
    let cap = gw.max_json();
    if let Rpc::Watch | Rpc::LeaseKeepAlive = rpc {
        return bidirectional(gw, rpc, body).await;
    }
    let body = match axum::body::to_bytes(body, cap).await {
        Ok(b) => b,
        Err(_) => return status_error(&too_large(cap + 1, gw.max_recv)),
    };
    call(gw, rpc, &body).await
}

async fn call<B: Backend>(gw: &Gateway<B>, rpc: Rpc, body: &Bytes) -> Response {
    const ES: &str = ".etcdserverpb.";
    match rpc {
        Rpc::Range => gw.unary(rpc, &format!("{ES}RangeRequest"), body, |r| gw.kv.range(Request::new(r))).await,
        Rpc::Put => gw.unary(rpc, &format!("{ES}PutRequest"), body, |r| gw.kv.put(Request::new(r))).await,
        Rpc::DeleteRange => {
            gw.unary(rpc, &format!("{ES}DeleteRangeRequest"), body, |r| gw.kv.delete_range(Request::new(r))).await
        }
        Rpc::Txn => gw.unary(rpc, &format!("{ES}TxnRequest"), body, |r| gw.kv.txn(Request::new(r))).await,
        Rpc::Compact => {
            gw.unary(rpc, &format!("{ES}CompactionRequest"), body, |r| gw.kv.compact(Request::new(r))).await
        }
        Rpc::MemberAdd => {
            gw.unary(rpc, &format!("{ES}MemberAddRequest"), body, |r| gw.cluster.member_add(Request::new(r))).await
        }
        Rpc::MemberRemove => {
            gw.unary(rpc, &format!("{ES}MemberRemoveRequest"), body, |r| gw.cluster.member_remove(Request::new(r)))
                .await
        }
        Rpc::MemberUpdate => {
            gw.unary(rpc, &format!("{ES}MemberUpdateRequest"), body, |r| gw.cluster.member_update(Request::new(r)))
                .await
        }
        Rpc::MemberList => {
            gw.unary(rpc, &format!("{ES}MemberListRequest"), body, |r| gw.cluster.member_list(Request::new(r))).await
        }
        Rpc::MemberPromote => {
            gw.unary(rpc, &format!("{ES}MemberPromoteRequest"), body, |r| gw.cluster.member_promote(Request::new(r)))
                .await
        }
        Rpc::Alarm => {
            gw.unary(rpc, &format!("{ES}AlarmRequest"), body, |r| gw.maintenance.alarm(Request::new(r))).await
        }
        Rpc::Status => {
            gw.unary(rpc, &format!("{ES}StatusRequest"), body, |r| gw.maintenance.status(Request::new(r))).await
        }
        Rpc::Defragment => {
            gw.unary(rpc, &format!("{ES}DefragmentRequest"), body, |r| gw.maintenance.defragment(Request::new(r))).await
        }
        Rpc::Hash => gw.unary(rpc, &format!("{ES}HashRequest"), body, |r| gw.maintenance.hash(Request::new(r))).await,
        Rpc::MoveLeader => {
            gw.unary(rpc, &format!("{ES}MoveLeaderRequest"), body, |r| gw.maintenance.move_leader(Request::new(r)))
                .await
        }
        Rpc::LeaseGrant => {
            gw.unary(rpc, &format!("{ES}LeaseGrantRequest"), body, |r| gw.lease.lease_grant(Request::new(r))).await
        }
        Rpc::LeaseRevoke => {
            gw.unary(rpc, &format!("{ES}LeaseRevokeRequest"), body, |r| gw.lease.lease_revoke(Request::new(r))).await
        }
        Rpc::LeaseTimeToLive => {
            gw.unary(rpc, &format!("{ES}LeaseTimeToLiveRequest"), body, |r| {
                gw.lease.lease_time_to_live(Request::new(r))
            })
            .await
        }
        Rpc::LeaseLeases => {
            gw.unary(rpc, &format!("{ES}LeaseLeasesRequest"), body, |r| gw.lease.lease_leases(Request::new(r))).await
        }
        Rpc::Lock => gw.unary(rpc, ".v3lockpb.LockRequest", body, |r| gw.lock.lock(Request::new(r))).await,
        Rpc::Unlock => gw.unary(rpc, ".v3lockpb.UnlockRequest", body, |r| gw.lock.unlock(Request::new(r))).await,
        Rpc::Campaign => {
            gw.unary(rpc, ".v3electionpb.CampaignRequest", body, |r| gw.election.campaign(Request::new(r))).await
        }
        Rpc::Proclaim => {
            gw.unary(rpc, ".v3electionpb.ProclaimRequest", body, |r| gw.election.proclaim(Request::new(r))).await
        }
        Rpc::Leader => {
            gw.unary(rpc, ".v3electionpb.LeaderRequest", body, |r| gw.election.leader(Request::new(r))).await
        }
        Rpc::Resign => {
            gw.unary(rpc, ".v3electionpb.ResignRequest", body, |r| gw.election.resign(Request::new(r))).await
        }
        Rpc::Observe => {
            let req = match gw.decode(".v3electionpb.LeaderRequest", body) {
                Ok(r) => r,
                Err(s) => return status_error(&s),
            };
            match gw.election.observe(Request::new(req)).await {
                Ok(stream) => stream_response(Box::pin(stream.into_inner())).await,
                Err(s) => stream_error(&s),
            }
        }
        // Served from the body as it arrives (`bidirectional`).
        Rpc::LeaseKeepAlive | Rpc::Watch => status_error(&Status::internal("bidirectional call without its body")),
        Rpc::Snapshot => {
            let req = match gw.decode(&format!("{ES}SnapshotRequest"), body) {
                Ok(r) => r,
                Err(s) => return status_error(&s),
            };
            match gw.maintenance.snapshot(Request::new(req)).await {
                Ok(stream) => stream_response(Box::pin(stream.into_inner())).await,
                Err(s) => stream_error(&s),
            }
        }
        Rpc::Auth { path, input } => auth_call(gw, rpc, path, input, body).await,
    }
}

async fn auth_call<B: Backend>(gw: &Gateway<B>, rpc: Rpc, path: &str, input: &str, body: &Bytes) -> Response {
    let a = &gw.auth;
    match path.trim_start_matches("/etcdserverpb.Auth/") {
        "AuthEnable" => gw.unary(rpc, input, body, |r| a.auth_enable(Request::new(r))).await,
        "AuthDisable" => gw.unary(rpc, input, body, |r| a.auth_disable(Request::new(r))).await,
        "Authenticate" => gw.unary(rpc, input, body, |r| a.authenticate(Request::new(r))).await,
        "UserAdd" => gw.unary(rpc, input, body, |r| a.user_add(Request::new(r))).await,
        "UserGet" => gw.unary(rpc, input, body, |r| a.user_get(Request::new(r))).await,
        "UserList" => gw.unary(rpc, input, body, |r| a.user_list(Request::new(r))).await,
        "UserDelete" => gw.unary(rpc, input, body, |r| a.user_delete(Request::new(r))).await,
        "UserChangePassword" => gw.unary(rpc, input, body, |r| a.user_change_password(Request::new(r))).await,
        "UserGrantRole" => gw.unary(rpc, input, body, |r| a.user_grant_role(Request::new(r))).await,
        "UserRevokeRole" => gw.unary(rpc, input, body, |r| a.user_revoke_role(Request::new(r))).await,
        "RoleAdd" => gw.unary(rpc, input, body, |r| a.role_add(Request::new(r))).await,
        "RoleGet" => gw.unary(rpc, input, body, |r| a.role_get(Request::new(r))).await,
        "RoleList" => gw.unary(rpc, input, body, |r| a.role_list(Request::new(r))).await,
        "RoleDelete" => gw.unary(rpc, input, body, |r| a.role_delete(Request::new(r))).await,
        "RoleGrantPermission" => gw.unary(rpc, input, body, |r| a.role_grant_permission(Request::new(r))).await,
        "RoleRevokePermission" => gw.unary(rpc, input, body, |r| a.role_revoke_permission(Request::new(r))).await,
        _ => status_error(&Status::unimplemented(format!("unknown method {path}"))),
    }
}

/// A bidirectional call: its requests are read from the body as they arrive (a client may keep the
/// body open and send more later). A bad first value fails the call with a plain error (`Unknown`,
/// 500); a bad later one ends the requests there.
async fn bidirectional<B: Backend>(gw: &Gateway<B>, rpc: Rpc, body: Body) -> Response {
    const ES: &str = ".etcdserverpb.";
    let input = if let Rpc::Watch = rpc { "WatchRequest" } else { "LeaseKeepAliveRequest" };
    let mut reader = stream::BodyRequests::new(body, gw.schema, format!("{ES}{input}"), gw.max_recv, gw.max_json());
    if let Rpc::Watch = rpc {
        let first = match reader.next::<WatchRequest>().await {
            Some(Err(s)) => return error(s.code(), s.message()),
            first => first.and_then(Result::ok),
        };
        // etcd keeps a watch stream open after the client's requests end, until the client goes.
        let requests =
            futures::stream::iter(first).chain(reader.into_stream()).map(Ok).chain(futures::stream::pending());
        return stream_response(gw.backend.watch(Box::pin(requests))).await;
    }
    let first = match reader.next::<LeaseKeepAliveRequest>().await {
        Some(Err(s)) => return error(s.code(), s.message()),
        first => first.and_then(Result::ok),
    };
    // The call ends once the body has ended and every request is answered.
    let mut failed = false;
    let answers = gw.backend.keep_alive(Box::pin(futures::stream::iter(first).chain(reader.into_stream())));
    let answers = answers.take_while(move |a| {
        let go_on = !failed;
        failed |= a.is_err();
        futures::future::ready(go_on)
    });
    stream_response(Box::pin(answers)).await
}

/// A server stream as grpc-gateway forwards it: a failure before the first message is the response;
/// after that every message is a `{"result":…}` line and a failure ends the body with `{"error":…}`.
async fn stream_response<S, T>(mut stream: S) -> Response
where
    S: futures::Stream<Item = Result<T, Status>> + Send + Unpin + 'static,
    T: Serialize + Send + 'static,
{
    let chunk = |item: Result<T, Status>| -> Bytes {
        match item {
            Ok(m) => Bytes::from(json::result_chunk(&m).unwrap_or_default()),
            Err(s) => Bytes::from(json::stream_error_body(s.code(), s.message())),
        }
    };
    let first = match stream.next().await {
        None => return ok_stream(Body::empty()),
        Some(Err(s)) => return stream_error(&s),
        Some(Ok(m)) => chunk(Ok(m)),
    };
    let mut failed = false;
    let rest = stream.take_while(move |item| {
        let go_on = !failed;
        failed |= item.is_err();
        futures::future::ready(go_on)
    });
    let body = futures::stream::once(futures::future::ready(first))
        .chain(rest.map(chunk))
        .map(Ok::<_, std::convert::Infallible>);
    ok_stream(Body::from_stream(body))
}

fn ok_stream(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert("grpc-metadata-content-type", HeaderValue::from_static("application/grpc"));
    r
}

#[cfg(test)]
mod tests;

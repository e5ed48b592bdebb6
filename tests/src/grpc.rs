//! A minimal, blocking etcd v3 gRPC client for what etcdctl 3.4 cannot
//! express (`count_only`, `min/max_mod_revision`, `min/max_create_revision`
//! have no etcdctl 3.4 flags). Messages are hand-written prost structs that
//! mirror `etcdserverpb`/`mvccpb` field numbers, so this does not depend on
//! the server crate or on protoc.

use std::time::Duration;

use tonic::codegen::http::uri::PathAndQuery;

/// `etcdserverpb.ResponseHeader`
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    #[prost(int64, tag = "3")]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

/// `mvccpb.KeyValue`
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "6")]
    pub lease: i64,
}

/// `etcdserverpb.RangeRequest.SortOrder`
pub mod sort_order {
    pub const NONE: i32 = 0;
    pub const ASCEND: i32 = 1;
    pub const DESCEND: i32 = 2;
}

/// `etcdserverpb.RangeRequest.SortTarget`
pub mod sort_target {
    pub const KEY: i32 = 0;
    pub const VERSION: i32 = 1;
    pub const CREATE: i32 = 2;
    pub const MOD: i32 = 3;
    pub const VALUE: i32 = 4;
}

/// `etcdserverpb.RangeRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub limit: i64,
    #[prost(int64, tag = "4")]
    pub revision: i64,
    #[prost(int32, tag = "5")]
    pub sort_order: i32,
    #[prost(int32, tag = "6")]
    pub sort_target: i32,
    #[prost(bool, tag = "7")]
    pub serializable: bool,
    #[prost(bool, tag = "8")]
    pub keys_only: bool,
    #[prost(bool, tag = "9")]
    pub count_only: bool,
    #[prost(int64, tag = "10")]
    pub min_mod_revision: i64,
    #[prost(int64, tag = "11")]
    pub max_mod_revision: i64,
    #[prost(int64, tag = "12")]
    pub min_create_revision: i64,
    #[prost(int64, tag = "13")]
    pub max_create_revision: i64,
}

impl RangeRequest {
    /// Range over `[key, range_end)` (etcd conventions: empty `range_end` =
    /// single key, `"\0"` = all keys >= key).
    pub fn range(key: &str, range_end: &str) -> RangeRequest {
        RangeRequest { key: key.as_bytes().to_vec(), range_end: range_end.as_bytes().to_vec(), ..Default::default() }
    }

    /// All keys (`key = "\0"`, `range_end = "\0"`).
    pub fn all() -> RangeRequest {
        RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() }
    }
}

/// `etcdserverpb.RangeResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
    #[prost(bool, tag = "3")]
    pub more: bool,
    #[prost(int64, tag = "4")]
    pub count: i64,
}

impl RangeResponse {
    /// Keys as UTF-8 strings.
    pub fn keys(&self) -> Vec<String> {
        self.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect()
    }
}

/// A gRPC error as `(code name, message)`, e.g. `("OutOfRange", "etcdserver: ...")`.
pub type GrpcError = (String, String);

fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
}

/// Calls `/etcdserverpb.KV/Range` on `endpoint` (`http://127.0.0.1:PORT`).
pub fn range(endpoint: &str, req: RangeRequest) -> Result<RangeResponse, GrpcError> {
    unary_once(endpoint, "/etcdserverpb.KV/Range", req)
}

/// One unary call of `path` (`/package.Service/Method`) on `endpoint`, on a connection of its own.
pub fn unary_once<Req, Resp>(endpoint: &str, path: &'static str, req: Req) -> Result<Resp, GrpcError>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| ("InvalidEndpoint".to_string(), e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .map_err(|e| ("Connect".to_string(), e.to_string()))?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.map_err(|e| ("NotReady".to_string(), e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        grpc.unary(tonic::Request::new(req), PathAndQuery::from_static(path), codec)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| (code_name(s.code()), s.message().to_string()))
    })
}

/// `etcdserverpb.PutRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub lease: i64,
    #[prost(bool, tag = "4")]
    pub prev_kv: bool,
    #[prost(bool, tag = "5")]
    pub ignore_value: bool,
    #[prost(bool, tag = "6")]
    pub ignore_lease: bool,
}

impl PutRequest {
    pub fn new(key: &str, value: &str) -> PutRequest {
        PutRequest { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec(), ..Default::default() }
    }
}

/// `etcdserverpb.PutResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, optional, tag = "2")]
    pub prev_kv: Option<KeyValue>,
}

/// `etcdserverpb.DeleteRangeRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteRangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    #[prost(bool, tag = "3")]
    pub prev_kv: bool,
}

/// `etcdserverpb.DeleteRangeResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteRangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    pub deleted: i64,
    #[prost(message, repeated, tag = "3")]
    pub prev_kvs: Vec<KeyValue>,
}

/// `etcdserverpb.HashRequest` (no fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HashRequest {}

/// `etcdserverpb.HashResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HashResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(uint32, tag = "2")]
    pub hash: u32,
}

/// `/etcdserverpb.Maintenance/Hash` on `endpoint` (etcdctl 3.4 has no command for it): the backend's
/// hash and the revision of the response header.
pub fn backend_hash(endpoint: &str) -> Result<(u32, i64), GrpcError> {
    let r: HashResponse = unary_once(endpoint, "/etcdserverpb.Maintenance/Hash", HashRequest {})?;
    Ok((r.hash, r.header.map_or(0, |h| h.revision)))
}

/// A blocking client that keeps one HTTP/2 connection (and its own current-thread runtime) for many
/// calls, e.g. one per thread in a load test.
pub struct Client {
    rt: tokio::runtime::Runtime,
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
    /// Bound of each call, client side (besides the channel's own), for [`Client::lazy`] clients.
    timeout: Option<Duration>,
}

impl Client {
    /// Connects to `endpoint` (`http://127.0.0.1:PORT`); every call is bounded by 10 s.
    pub fn connect(endpoint: &str) -> Result<Client, GrpcError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let channel = rt.block_on(async {
            tonic::transport::Endpoint::from_shared(endpoint.to_string())
                .map_err(|e| ("InvalidEndpoint".to_string(), e.to_string()))?
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(10))
                .connect()
                .await
                .map_err(|e| ("Connect".to_string(), e.to_string()))
        })?;
        Ok(Client { rt, grpc: tonic::client::Grpc::new(channel), timeout: None })
    }

    /// A client whose connection is made on the first call (and remade after it breaks), so that creating
    /// it never fails; each call (connecting included) is bounded by `timeout`. For clients that must keep
    /// going while members die (`crate::chaos`).
    pub fn lazy(endpoint: &str, timeout: Duration) -> Result<Client, GrpcError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let channel = {
            let _guard = rt.enter();
            tonic::transport::Endpoint::from_shared(endpoint.to_string())
                .map_err(|e| ("InvalidEndpoint".to_string(), e.to_string()))?
                .connect_timeout(timeout)
                .timeout(timeout)
                .connect_lazy()
        };
        Ok(Client { rt, grpc: tonic::client::Grpc::new(channel), timeout: Some(timeout) })
    }

    /// One unary call of `path` (`/package.Service/Method`); a call of a [`Client::lazy`] client that takes
    /// longer than its timeout fails with `("DeadlineExceeded", "client timeout")`.
    pub fn call<Req, Resp>(&mut self, path: &'static str, req: Req) -> Result<Resp, GrpcError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let grpc = &mut self.grpc;
        let call = async move {
            grpc.ready().await.map_err(|e| ("NotReady".to_string(), e.to_string()))?;
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            grpc.unary(tonic::Request::new(req), PathAndQuery::from_static(path), codec)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| (code_name(s.code()), s.message().to_string()))
        };
        match self.timeout {
            None => self.rt.block_on(call),
            Some(t) => self.rt.block_on(async move {
                tokio::time::timeout(t, call)
                    .await
                    .unwrap_or_else(|_| Err(("DeadlineExceeded".to_string(), "client timeout".to_string())))
            }),
        }
    }

    /// `/etcdserverpb.KV/Put`
    pub fn put(&mut self, req: PutRequest) -> Result<PutResponse, GrpcError> {
        self.call("/etcdserverpb.KV/Put", req)
    }

    /// `/etcdserverpb.KV/Range`
    pub fn range(&mut self, req: RangeRequest) -> Result<RangeResponse, GrpcError> {
        self.call("/etcdserverpb.KV/Range", req)
    }
}

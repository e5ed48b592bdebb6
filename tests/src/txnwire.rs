//! `etcdserverpb.KV/Txn` on the wire, for transactions nested deeper than a recursive protobuf codec
//! takes (prost stops at 100 levels of messages, and each txn level is two) and larger than etcdctl
//! builds.
//!
//! A txn's ops, and a response's op results, are kept as their encoded bytes ([`TxnRequest`],
//! [`RequestOp`], [`TxnResponse`], [`ResponseOp`] have `bytes` fields where etcd's protos have
//! messages: the same wire format), so building or reading a txn 100,000 levels deep is a loop, not a
//! recursion. [`nested_put`] builds the chain, [`TxnResponse::depth`] walks one back, [`txn`] sends it.
//! [`Compare`] carries raw `i32`s for its enums, so a test can send values outside them.

use std::time::Duration;

use prost::Message;
use tonic::codegen::http::uri::PathAndQuery;

use crate::grpc::{GrpcError, PutRequest, RangeRequest, ResponseHeader};

/// `etcdserverpb.Compare` (`result`: EQUAL 0, GREATER 1, LESS 2, NOT_EQUAL 3; `target`: VERSION 0,
/// CREATE 1, MOD 2, VALUE 3, LEASE 4; left as `i32` so that other values can be sent).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Compare {
    #[prost(int32, tag = "1")]
    pub result: i32,
    #[prost(int32, tag = "2")]
    pub target: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    #[prost(oneof = "TargetUnion", tags = "4, 5, 6, 7, 8")]
    pub target_union: Option<TargetUnion>,
    #[prost(bytes = "vec", tag = "64")]
    pub range_end: Vec<u8>,
}

/// `etcdserverpb.Compare.target_union`
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum TargetUnion {
    #[prost(int64, tag = "4")]
    Version(i64),
    #[prost(int64, tag = "5")]
    CreateRevision(i64),
    #[prost(int64, tag = "6")]
    ModRevision(i64),
    #[prost(bytes = "vec", tag = "7")]
    Value(Vec<u8>),
    #[prost(int64, tag = "8")]
    Lease(i64),
}

/// `etcdserverpb.TxnRequest` with its ops as encoded [`RequestOp`]s.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnRequest {
    #[prost(message, repeated, tag = "1")]
    pub compare: Vec<Compare>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub success: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub failure: Vec<Vec<u8>>,
}

/// `etcdserverpb.RequestOp` with its one request encoded (set exactly one field).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestOp {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub request_range: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub request_put: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub request_delete_range: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub request_txn: Option<Vec<u8>>,
}

/// `etcdserverpb.TxnResponse` with its results as encoded [`ResponseOp`]s.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(bool, tag = "2")]
    pub succeeded: bool,
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub responses: Vec<Vec<u8>>,
}

/// `etcdserverpb.ResponseOp` with its one response encoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseOp {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub response_range: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub response_put: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub response_delete_range: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub response_txn: Option<Vec<u8>>,
}

/// An encoded `RequestOp` putting `key` = `value`.
pub fn op_put(key: &[u8], value: &[u8]) -> Vec<u8> {
    let put = PutRequest { key: key.to_vec(), value: value.to_vec(), ..Default::default() };
    RequestOp { request_put: Some(put.encode_to_vec()), ..Default::default() }.encode_to_vec()
}

/// An encoded `RequestOp` running `r`.
pub fn op_range(r: &RangeRequest) -> Vec<u8> {
    RequestOp { request_range: Some(r.encode_to_vec()), ..Default::default() }.encode_to_vec()
}

/// An encoded `RequestOp` running the nested txn `t`.
pub fn op_txn(t: &TxnRequest) -> Vec<u8> {
    RequestOp { request_txn: Some(t.encode_to_vec()), ..Default::default() }.encode_to_vec()
}

/// A txn of `depth` levels (`depth` ≥ 1): each level's success branch holds only the next level, the
/// innermost one's holds the put `key` = `value`; no compares, so every level succeeds.
///
/// Written front to back once the lengths are known (each level is a `success` field holding a
/// `request_txn` field holding the next level), so that 100,000 levels cost linear time.
pub fn nested_put(depth: usize, key: &[u8], value: &[u8]) -> TxnRequest {
    use prost::encoding::{encode_varint, encoded_len_varint};
    const SUCCESS: u8 = 2 << 3 | 2; // field 2, length-delimited
    const REQUEST_TXN: u8 = 4 << 3 | 2;
    let innermost = TxnRequest { success: vec![op_put(key, value)], ..Default::default() }.encode_to_vec();
    if depth <= 1 {
        return TxnRequest::decode(innermost.as_slice()).expect("our own encoding");
    }
    // txn_len[k]: encoded length of level k (0-based; level depth - 1 is `innermost`); op_len[k]: of
    // the RequestOp holding level k.
    let (mut txn_len, mut op_len) = (vec![0u64; depth], vec![0u64; depth]);
    txn_len[depth - 1] = innermost.len() as u64;
    for k in (1..depth).rev() {
        op_len[k] = 1 + encoded_len_varint(txn_len[k]) as u64 + txn_len[k];
        if k > 1 {
            txn_len[k - 1] = 1 + encoded_len_varint(op_len[k]) as u64 + op_len[k];
        }
    }
    // The outermost level's one op: request_txn(level 1) = success(op of level 2) ... innermost.
    let mut op = Vec::with_capacity(op_len[1] as usize);
    for k in 1..depth {
        op.push(REQUEST_TXN);
        encode_varint(txn_len[k], &mut op);
        if k + 1 < depth {
            op.push(SUCCESS);
            encode_varint(op_len[k + 1], &mut op);
        }
    }
    op.extend(innermost);
    debug_assert_eq!(op.len() as u64, op_len[1]);
    TxnRequest { success: vec![op], ..Default::default() }
}

impl TxnResponse {
    /// How many txn levels the response has along its first result (1 for a txn whose first result
    /// is not a nested txn), and the innermost level's first result.
    #[track_caller]
    pub fn depth(&self) -> (usize, ResponseOp) {
        let mut level = self.clone();
        let mut depth = 1;
        loop {
            let first = level.responses.first().expect("a txn response without results");
            let op = ResponseOp::decode(first.as_slice()).expect("a ResponseOp");
            match &op.response_txn {
                Some(inner) => {
                    level = TxnResponse::decode(inner.as_slice()).expect("a nested TxnResponse");
                    depth += 1;
                }
                None => return (depth, op),
            }
        }
    }
}

/// `/etcdserverpb.KV/Txn` on a connection of its own, waiting at most `timeout` for the answer.
pub fn txn(endpoint: &str, t: TxnRequest, timeout: Duration) -> Result<TxnResponse, GrpcError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| ("InvalidEndpoint".to_string(), e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .connect()
            .await
            .map_err(|e| ("Connect".to_string(), e.to_string()))?;
        // etcd sends what it has; a deep or wide txn's answer may exceed tonic's 4 MiB default.
        let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(usize::MAX);
        grpc.ready().await.map_err(|e| ("NotReady".to_string(), e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<TxnRequest, TxnResponse>::default();
        grpc.unary(tonic::Request::new(t), PathAndQuery::from_static("/etcdserverpb.KV/Txn"), codec)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| (format!("{:?}", s.code()), s.message().to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_chains_encode_and_walk_without_recursion() {
        // The same as wrapping level by level.
        let by_hand = |depth: usize| {
            let mut t = TxnRequest { success: vec![op_put(b"a", b"b")], ..Default::default() };
            for _ in 1..depth {
                t = TxnRequest { success: vec![op_txn(&t)], ..Default::default() };
            }
            t
        };
        for depth in [1, 2, 3, 7, 200] {
            assert_eq!(nested_put(depth, b"a", b"b"), by_hand(depth), "depth {depth}");
        }
        // 100,000 levels stay well under etcd's 1.5 MiB request limit.
        let deep = nested_put(100_000, b"k", b"v").encode_to_vec().len();
        assert!(deep < 1_000_000, "{deep} bytes");
        // A response two levels deep whose innermost result is a put.
        let put_resp = ResponseOp { response_put: Some(vec![]), ..Default::default() };
        let inner = TxnResponse { succeeded: true, responses: vec![put_resp.encode_to_vec()], ..Default::default() };
        let op = ResponseOp { response_txn: Some(inner.encode_to_vec()), ..Default::default() };
        let outer = TxnResponse { succeeded: true, responses: vec![op.encode_to_vec()], ..Default::default() };
        assert_eq!(outer.depth(), (2, put_resp));
    }
}

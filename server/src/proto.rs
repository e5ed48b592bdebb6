//! Generated protobuf / gRPC types: the etcd v3.4 wire API (`mvccpb`,
//! `authpb`, `etcdserverpb`, `v3lockpb`, `v3electionpb`) and modkv's own raft
//! entry payload (`modkvpb`). Sources live in `server/proto/`, compiled by
//! `build.rs`, with their JSON (serde) impls from pbjson-build for the gateway. Module nesting
//! mirrors proto packages so prost's cross-package `super::pkg::Type` paths resolve.

#![allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]

/// The deepest txn nesting accepted (the outer txn is level 1): what etcd's default op budget (128)
/// allows, 128 one-op levels around an empty txn. Deeper txns are answered as etcd answers an exhausted
/// budget (`server::validate`). Protobuf decoding stops at 100 message levels (two per txn level), so
/// txns past 49 levels are decoded with [`deep`], at the API and at apply alike.
pub const MAX_TXN_DEPTH: usize = 129;

/// Key/value and watch event types (`mvccpb`).
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

/// Users, roles and permissions (`authpb`).
pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

/// The etcd v3 gRPC services: KV, Watch, Lease, Cluster, Maintenance, Auth.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

/// etcd's Lock service (`v3lockpb`).
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

/// etcd's Election service (`v3electionpb`).
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

/// modkv's internal raft log entry payload (not part of the etcd API).
pub mod modkvpb {
    tonic::include_proto!("modkvpb");
}

/// Encoded `FileDescriptorSet` of all of the above (for reflection / JSON).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/modkv_descriptor.bin"));

/// The gRPC codec of every service (generated code names it; see `build.rs`): prost's, except that a
/// request nested past protobuf's recursion limit gets etcd's answer. Only a txn nests (a `TxnRequest`
/// in a `RequestOp` in a `TxnRequest`…), and etcd refuses a txn that deep for exhausting its op budget.
pub mod codec {
    use std::any::Any;

    use bytes::{Buf, Bytes};
    use prost::Message;
    use tonic::codec::{BufferSettings, DecodeBuf};
    use tonic::Status;

    use super::etcdserverpb::TxnRequest;

    /// etcd's message for a txn over its op budget (`crate::error::Error::TooManyOps`).
    const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";

    #[derive(Debug, Clone)]
    pub struct Codec<T, U>(tonic_prost::ProstCodec<T, U>);

    impl<T, U> Default for Codec<T, U> {
        fn default() -> Self {
            Codec(tonic_prost::ProstCodec::default())
        }
    }

    impl<T, U> tonic::codec::Codec for Codec<T, U>
    where
        T: Message + Send + 'static,
        U: Message + Default + Send + 'static,
    {
        type Encode = T;
        type Decode = U;
        type Encoder = tonic_prost::ProstEncoder<T>;
        type Decoder = Decoder<U>;

        fn encoder(&mut self) -> Self::Encoder {
            self.0.encoder()
        }

        fn decoder(&mut self) -> Self::Decoder {
            Decoder(self.0.decoder())
        }
    }

    #[derive(Debug, Clone)]
    pub struct Decoder<U>(tonic_prost::ProstDecoder<U>);

    impl<U: Message + Default + 'static> tonic::codec::Decoder for Decoder<U> {
        type Item = U;
        type Error = Status;

        fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
            let bytes = buf.copy_to_bytes(buf.remaining());
            match U::decode(bytes.clone()) {
                Ok(m) => Ok(Some(m)),
                Err(e) if e.to_string().ends_with("recursion limit reached") => deep_txn::<U>(bytes).map(Some),
                Err(e) => Err(Status::internal(e.to_string())),
            }
        }

        fn buffer_settings(&self) -> BufferSettings {
            self.0.buffer_settings()
        }
    }

    /// A request past protobuf's recursion limit: a txn (the only request that nests) decoded level by
    /// level up to the deepest one the server takes; anything else, or deeper, gets etcd's answer for a
    /// txn over its op budget.
    fn deep_txn<U: Any>(bytes: Bytes) -> Result<U, Status> {
        if std::any::TypeId::of::<U>() != std::any::TypeId::of::<TxnRequest>() {
            return Err(Status::invalid_argument(TOO_MANY_OPS));
        }
        let txn = super::deep::decode_txn(bytes, super::MAX_TXN_DEPTH).map_err(|e| match e {
            super::deep::DeepError::TooDeep => Status::invalid_argument(TOO_MANY_OPS),
            super::deep::DeepError::Decode(e) => Status::internal(e.to_string()),
        })?;
        let boxed: Box<dyn Any> = Box::new(txn);
        Ok(*boxed.downcast::<U>().expect("U is TxnRequest"))
    }
}

/// Txns nested deeper than protobuf's recursion limit (100 message levels, two per txn level), decoded
/// one level at a time through the `Shallow*` twins of `modkvpb` with a depth bound of their own.
pub mod deep {
    use bytes::Bytes;
    use prost::Message;

    use super::etcdserverpb::request_op::Request;
    use super::etcdserverpb::{RequestOp, TxnRequest};
    use super::modkvpb::shallow_request_op::Request as Shallow;
    use super::modkvpb::{InternalRaftRequest, ShallowRequestOp, ShallowTxnEntry, ShallowTxnRequest};

    #[derive(Debug)]
    pub enum DeepError {
        /// Nested deeper than the bound.
        TooDeep,
        Decode(prost::DecodeError),
    }

    impl From<prost::DecodeError> for DeepError {
        fn from(e: prost::DecodeError) -> Self {
            DeepError::Decode(e)
        }
    }

    fn is_recursion_limit(e: &prost::DecodeError) -> bool {
        e.to_string().ends_with("recursion limit reached")
    }

    /// A `TxnRequest` of at most `max_depth` levels (the outer txn is level 1).
    pub fn decode_txn(bytes: Bytes, max_depth: usize) -> Result<TxnRequest, DeepError> {
        level(bytes, 1, max_depth)
    }

    fn level(bytes: Bytes, depth: usize, max_depth: usize) -> Result<TxnRequest, DeepError> {
        if depth > max_depth {
            return Err(DeepError::TooDeep);
        }
        let t = ShallowTxnRequest::decode(bytes)?;
        let ops = |ops: Vec<ShallowRequestOp>| -> Result<Vec<RequestOp>, DeepError> {
            ops.into_iter()
                .map(|op| {
                    let request = match op.request {
                        None => None,
                        Some(Shallow::RequestRange(r)) => Some(Request::RequestRange(r)),
                        Some(Shallow::RequestPut(p)) => Some(Request::RequestPut(p)),
                        Some(Shallow::RequestDeleteRange(d)) => Some(Request::RequestDeleteRange(d)),
                        Some(Shallow::RequestTxn(b)) => Some(Request::RequestTxn(level(b, depth + 1, max_depth)?)),
                    };
                    Ok(RequestOp { request })
                })
                .collect()
        };
        Ok(TxnRequest { compare: t.compare, success: ops(t.success)?, failure: ops(t.failure)? })
    }

    /// A raft entry's request; one holding a txn nested past the recursion limit is decoded level by
    /// level, up to `max_depth` txn levels.
    pub fn decode_entry(data: &[u8], max_depth: usize) -> Result<InternalRaftRequest, DeepError> {
        match InternalRaftRequest::decode(data) {
            Err(e) if is_recursion_limit(&e) => {
                let entry = ShallowTxnEntry::decode(data)?;
                Ok(InternalRaftRequest {
                    header: entry.header,
                    id: entry.id,
                    txn: Some(decode_txn(entry.txn, max_depth)?),
                    ..Default::default()
                })
            }
            r => Ok(r?),
        }
    }
}

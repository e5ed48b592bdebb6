//! Generated protobuf / gRPC types: the etcd v3.4 wire API (`mvccpb`,
//! `authpb`, `etcdserverpb`, `v3lockpb`, `v3electionpb`) and modkv's own raft
//! entry payload (`modkvpb`). Sources live in `server/proto/`, compiled by
//! `build.rs`, with their JSON (serde) impls from pbjson-build for the gateway. Module nesting
//! mirrors proto packages so prost's cross-package `super::pkg::Type` paths resolve.

#![allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]

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

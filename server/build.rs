//! Compiles the etcd-compatible protobuf API (and modkv's internal raft
//! payload) with `protox` (pure Rust, no `protoc` needed), then generates
//! prost messages plus tonic clients and servers from the descriptor set, and (pbjson) the JSON
//! mapping of the etcd API messages.

use std::{env, fs, path::PathBuf};

use protox::prost::Message;

/// Proto sources, relative to `proto/` (which is also the import root).
const PROTOS: &[&str] = &[
    "mvccpb/kv.proto",
    "authpb/auth.proto",
    "etcdserverpb/rpc.proto",
    "v3lockpb/v3lock.proto",
    "v3electionpb/v3election.proto",
    "modkvpb/internal.proto",
    "modkvpb/peer.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");

    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();

    let fds = protox::compile(&files, [&root]).map_err(|e| format!("protox: {e:?}"))?;

    // Kept for runtime reflection (e.g. a JSON gateway).
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("modkv_descriptor.bin"), fds.encode_to_vec())?;

    let descriptor_bytes = fds.encode_to_vec();
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .codec_path("crate::proto::codec::Codec")
        // Sliced from the received buffer, not copied, when a deep txn is decoded level by level.
        .bytes(".modkvpb.ShallowRequestOp.request_txn")
        .bytes(".modkvpb.ShallowTxnEntry.txn")
        .compile_fds(fds)?;

    // serde `Serialize`/`Deserialize` for the etcd API messages, in the proto3 JSON mapping as etcd's
    // grpc-gateway writes it (proto field names, 64-bit integers as strings, bytes as base64, zero
    // values omitted, enums by name). Used by the JSON gateway (`api::gateway`).
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".mvccpb", ".authpb", ".etcdserverpb", ".v3lockpb", ".v3electionpb"])?;

    Ok(())
}

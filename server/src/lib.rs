//! modkv: an etcd-compatible, raft-replicated key-value server whose extension points are WebAssembly
//! plugins.
//!
//! The layers, top to bottom, named as etcd names them:
//!
//! ```text
//!   config    flags, MODKV_* environment, TOML file            → Config
//!   embed     start a member: storage, raft, listeners; ready / error channel; ordered close
//!   api       gRPC services (one file each) on the client listeners
//!   server    validate, propose to raft and wait by request id; linearizable reads (ReadIndex)
//!   raft      one task owns raft-rs's RawNode; Ready loop; log on storage
//!   apply     committed entries → mvcc, results to waiting requests
//!   mvcc      revisioned key space (etcd's data model)
//!   lease     leases, their TTLs and attached keys      watch   watchers fed from apply and history
//!   storage   Backend trait, RocksDB behind it
//! ```
//!
//! `proto` holds the etcd wire types generated from this crate's own `.proto` files; `error` the
//! client-facing errors with etcd's messages and their gRPC codes.
//! `metrics` holds the Prometheus metrics under etcd's names, served at `/metrics`.

pub mod alarm;
pub mod api;
pub mod apply;
pub mod config;
pub mod embed;
pub mod error;
pub mod lease;
pub mod metrics;
pub mod mvcc;
pub mod proto;
pub mod raft;
pub mod server;
pub mod storage;
pub mod tls;
pub mod watch;

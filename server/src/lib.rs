//! modkv: an etcd-compatible, raft-replicated key-value server whose extension points are WebAssembly
//! plugins.
//!
//! The layers, top to bottom, named as etcd names them:
//!
//! ```text
//!   config    flags, MODKV_* environment, TOML file → Config
//!   embed     start a member: storage, raft, listeners; ready / error channel; ordered close
//!   api       the client port: one mux for gRPC (one file per service) and HTTP (health, version,
//!             metrics, the JSON gateway); the peer port: raft messages and leader-only requests
//!   server    validate, propose to raft and wait by request id; linearizable reads (ReadIndex);
//!             membership changes (on the leader); quota, lease expiry, auto compaction
//!   raft      one task owns raft-rs's RawNode and follows its Ready steps; the log on storage; the
//!             peer transport (a queue and one h2 stream per peer, TLS for https peers); snapshots for
//!             lagging peers
//!   apply     committed entries → mvcc / lease / alarm / member list, results to the waiting requests;
//!             snapshots from the leader installed
//!   mvcc      the revisioned key space (etcd's data model)
//!   lease     leases, their TTLs and attached keys
//!   auth      users, roles, key-range permissions, tokens (beside mvcc and lease)
//!   watch     watchers fed by apply, caught up from history when behind
//!   storage   the Backend trait, RocksDB behind it
//!   plugin    WebAssembly components from --plugin-dir: routes on the client port, pre-put hook, metrics
//! ```
//!
//! Beside the layers: `proto` (etcd's wire types, generated from this crate's own `.proto` files),
//! `error` (client-facing errors with etcd's messages, mapped to gRPC codes in one table), `fatal` (raft
//! and apply threads: a panic or error there ends the member with a non-zero exit), `alarm`
//! (NOSPACE and friends), `metrics` (Prometheus metrics under etcd's names), `tls` (rustls configs for
//! client and peer URLs), `backup` (snapshot files: `etcdctl snapshot save`, `modkv snapshot restore`).

pub mod alarm;
pub mod api;
pub mod apply;
pub mod auth;
pub mod backup;
pub mod config;
pub mod embed;
pub mod error;
pub mod fatal;
pub mod lease;
pub mod membership;
pub mod metrics;
pub mod mvcc;
pub mod plugin;
pub mod proto;
pub mod raft;
pub mod server;
pub mod storage;
pub mod tls;
pub mod version;
pub mod wait;
pub mod watch;

//! modkv: an etcd-compatible, raft-replicated key-value server whose extension points are WebAssembly
//! plugins.
//!
//! The layers, top to bottom, named as etcd names them; each depends only on the ones below it
//! (`tests/layers.rs` fails on any circle). Where a lower layer needs something of a higher one it
//! defines a trait the higher one implements: `server::hooks::PrePut` (the plugins' pre-put hook),
//! `metrics::MemberView` (what a scrape reads), `wait::Fail` (raft failing the proposals it drops),
//! `plugin::kv::PluginKv` (what the plugins' KV imports act on: a member's server, a proxy's cluster).
//!
//! ```text
//!   embed     start a member: storage, raft, plugins, listeners as named steps; ready / error
//!             channel; ordered close
//!   proxy     beside embed: `modkv grpc-proxy start`, a proxy forwarding every client service to a
//!             cluster's members (namespace, failover, shared watches), served by api's mux and gateway
//!   config    flags, MODKV_* environment, TOML file → Config
//!   api       the client port: one mux for gRPC (one file per service, each holding one narrow handle
//!             of `server::v3`) and HTTP (health, version, metrics, the JSON gateway, plugin routes);
//!             the peer port: raft messages and leader-only requests
//!   plugin    WebAssembly components from --plugin-dir: routes on the client port, pre-put hook, metrics
//!             (on a member, or on a proxy: `proxy::edge`)
//!   backup    snapshot files in etcd's format (bbolt): `etcdctl snapshot save`, `modkv snapshot restore`
//!   server    validate, propose to raft and wait by request id; linearizable reads (ReadIndex);
//!             membership changes (on the leader); quota, lease expiry, auto compaction
//!   apply     committed entries from raft → mvcc / lease / alarm / member list, results to the waiting
//!             requests; snapshots from the leader installed; the request evaluator (range, put,
//!             delete, txn) over a read view or a write txn, shared with the server's reads
//!   raft      one task owns raft-rs's RawNode and follows its Ready steps; the log in a write-ahead
//!             log of its own (preallocated segments, as etcd's); the peer transport, both halves (a queue and one h2 stream per peer, TLS for https peers);
//!             snapshots for lagging peers
//!   metrics   Prometheus metrics under etcd's names
//!   mvcc      the revisioned key space (etcd's data model)
//!   lease     leases, their TTLs and attached keys
//!   auth      users, roles, key-range permissions, tokens (beside mvcc and lease)
//!   watch     watchers fed by apply, caught up from history when behind
//!   membership, wait, tls, alarm, proto, error, version, fatal
//!   storage   the Backend trait, RocksDB behind it, the data dir
//! ```
//!
//! A member in-process, as the tests start one: listeners bound first (port 0 here), `embed::start`
//! walks the startup steps, `ready` waits for a leader, the client services are reached through the
//! server's handles (what the gRPC services hold), and `close` stops everything in order.
//!
//! ```
//! use modkv::config::Config;
//! use modkv::embed::{self, Listeners};
//! use modkv::proto::etcdserverpb::{PutRequest, RangeRequest};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data_dir = tempfile::tempdir()?;
//! let data = data_dir.path().join("member");
//! let cfg = Config::from_args([
//!     "modkv", "--name", "doc", "--data-dir", data.to_str().unwrap(),
//!     "--listen-client-urls", "http://127.0.0.1:0", "--advertise-client-urls", "http://127.0.0.1:2379",
//!     "--listen-peer-urls", "http://127.0.0.1:0", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
//!     "--initial-cluster", "doc=http://127.0.0.1:2380",
//! ].map(String::from))?;
//! tokio::runtime::Runtime::new()?.block_on(async {
//!     let etcd = embed::start(&cfg, Listeners::bind(&cfg)?).await?;
//!     etcd.ready().await;
//!     let kv = etcd.server.handles().kv;
//!     let put = kv.put(PutRequest { key: b"greeting".to_vec(), value: b"hello".to_vec(), ..Default::default() });
//!     assert_eq!(put.await?.header.unwrap().revision, 2);
//!     let got = kv.range(RangeRequest { key: b"greeting".to_vec(), ..Default::default() }).await?;
//!     assert_eq!(got.kvs[0].value, b"hello");
//!     etcd.close().await;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! The small modules: `proto` (etcd's wire types, generated from this crate's own `.proto` files),
//! `error` (client-facing errors with etcd's messages, mapped to gRPC codes in one table), `fatal` (raft
//! and apply threads: a panic or error there ends the member with a non-zero exit), `wait` (requests
//! waiting for their entry to be applied), `membership` (members and the ids etcd derives for them),
//! `version`, `alarm` (NOSPACE and friends), `tls` (rustls configs for client and peer URLs), `failpoints`
//! (the fault-injection sites of a `failpoints` build).

pub mod alarm;
pub mod api;
pub mod apply;
pub mod auth;
pub mod backup;
pub mod config;
pub mod embed;
pub mod error;
pub mod failpoints;
pub mod fatal;
pub mod lease;
pub mod membership;
pub mod metrics;
pub mod mvcc;
pub mod plugin;
pub mod proto;
pub mod proxy;
pub mod raft;
pub mod server;
pub mod storage;
pub mod tls;
pub mod version;
pub mod wait;
pub mod watch;

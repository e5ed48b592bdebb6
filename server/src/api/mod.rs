//! The client API: one file per gRPC service, and how they are served on the client listeners.
//!
//! ```text
//!   client listener ──▶ mux ──application/grpc──▶ metrics ─▶ grpc_limit ─▶ caller (token) ─▶ grpc ─┐
//!     (HTTP/1.1, h2)     │        (by service name: KV / Watch / Lease / Cluster / Maintenance /   │
//!                        │                          Lock / Election / Auth / Health)              ├─▶ EtcdServer
//!                        └──anything else──────▶ http (health, version, gateway, plugin routes) ──┘
//! ```
//!
//! Limits on what a client may send: `authority` (what a connection sends before the HTTP/2 server sees
//! it), `mux` (the HTTP/1.1 and HTTP/2 settings, failing accepts), `grpc_limit` (gRPC messages, etcd's
//! `ResourceExhausted`). `unknown`: grpc-go's answer to a method or service not served.

pub mod auth;
pub mod authority;
pub mod cluster;
pub mod election;
pub mod gateway;
pub mod grpc;
pub mod grpc_limit;
pub mod health;
pub mod http;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod mux;
pub mod peer;
pub mod unknown;
pub mod watch;

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::server::v3::Handles;

/// Room for gRPC framing above `--max-request-bytes`, as etcd allows, so an oversized request reaches
/// the server's own check and gets etcd's error.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// The largest gRPC request message the client port takes (etcd's grpc `MaxRecvMsgSize`); bigger ones
/// get `ResourceExhausted` ([`grpc_limit`]). Saturating: `--max-request-bytes` may be as large as it likes.
pub fn max_grpc_message(max_request_bytes: usize) -> usize {
    max_request_bytes.saturating_add(GRPC_OVERHEAD_BYTES)
}

/// An error of the lock and election services: etcd's make their requests through a client of their
/// own, whose errors reach the caller as `Unknown` with etcd's message.
fn client_error(e: crate::error::Error) -> tonic::Status {
    tonic::Status::unknown(e.to_string())
}

/// The gRPC services of the client API.
/// The client services of one member, each holding the one handle it needs; built once and shared by
/// the gRPC routes and the JSON gateway.
#[derive(Clone)]
pub struct Services {
    pub kv: kv::KvService,
    pub lease: lease::LeaseService,
    pub cluster: cluster::ClusterService,
    pub maintenance: maintenance::MaintenanceService,
    pub watch: watch::WatchService,
    pub lock: lock::LockService,
    pub election: election::ElectionService,
    pub auth: auth::AuthService,
}

/// What the client port is configured with.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// `--max-request-bytes`: the largest request (gRPC messages may be 512 KiB larger).
    pub max_request_bytes: usize,
    /// `--experimental-watch-progress-notify-interval`.
    pub watch_progress_notify_interval: std::time::Duration,
}

/// Resolves once the member is stopping (`stop` turns true); never if nobody can stop it any more.
/// Long-lived streams (watches, keep-alives) end on it, so stopping does not wait for their clients.
pub(crate) async fn stopping(mut stop: tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        std::future::pending::<()>().await
    }
}

impl Services {
    /// The services over `h`; their long-lived streams end when `stop` turns true.
    pub fn new(h: &Handles, cfg: &ClientConfig, stop: tokio::sync::watch::Receiver<bool>) -> Services {
        Services {
            kv: kv::KvService { server: h.kv.clone() },
            lease: lease::LeaseService { server: h.leases.clone(), stop: stop.clone() },
            cluster: cluster::ClusterService { server: h.members.clone() },
            maintenance: maintenance::MaintenanceService {
                server: h.maintenance.clone(),
                kv: h.store.clone(),
                backend: h.backend.clone(),
            },
            watch: watch::WatchService {
                hub: h.watch_hub.clone(),
                kv: h.store.clone(),
                headers: h.headers.clone(),
                progress_interval: cfg.watch_progress_notify_interval,
                stop,
                auth: h.auth_store.clone(),
            },
            auth: auth::AuthService { server: h.auth.clone() },
            lock: lock::LockService { server: h.locks.clone() },
            election: election::ElectionService { server: h.elections.clone() },
        }
    }
}

/// Everything a client port serves: the gRPC services, their messages limited as etcd's and counted by
/// the metrics' gRPC layer, and the HTTP endpoints, `/metrics` among them.
pub fn client_mux(
    handles: &Handles,
    plugins: Arc<crate::plugin::Plugins>,
    metrics: Arc<Metrics>,
    cfg: &ClientConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> mux::Mux<impl mux::GrpcService> {
    let services = Services::new(handles, cfg, stop);
    let max = max_grpc_message(cfg.max_request_bytes);
    let grpc = tower::ServiceBuilder::new()
        .layer(metrics.grpc_layer())
        .layer(grpc_limit::layer(max))
        .layer(auth::CallerLayer { auth: handles.auth.clone() })
        .service(grpc::Dispatch::new(&services, max));
    let http = http::router(handles.health.clone(), handles.auth.clone(), plugins)
        .merge(http::metrics_router(metrics.clone()))
        .merge(gateway::router(services, metrics, cfg.max_request_bytes));
    mux::Mux::new(grpc, http)
}

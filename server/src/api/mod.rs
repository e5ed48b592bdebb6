//! The client API: one file per gRPC service, and how they are served on the client listeners.
//!
//! ```text
//!   client listener ──▶ mux ──application/grpc──▶ KvService / ClusterService / MaintenanceService ─┐
//!     (HTTP/1.1, h2)     └──anything else──────▶ http (health, version)                            ├─▶ EtcdServer
//!                                                                                                   ┘
//! ```

pub mod authority;
pub mod cluster;
pub mod http;
pub mod kv;
pub mod maintenance;
pub mod mux;

use std::sync::Arc;

use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::server::EtcdServer;

/// Room for gRPC framing above `--max-request-bytes`, as etcd allows, so an oversized request reaches
/// the server's own check and gets etcd's error.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// The gRPC services of the client API.
pub fn grpc_routes(server: Arc<EtcdServer>, max_request_bytes: usize) -> tonic::service::Routes {
    let max = max_request_bytes + GRPC_OVERHEAD_BYTES;
    tonic::service::Routes::new(KvServer::new(kv::KvService { server: server.clone() }).max_decoding_message_size(max))
        .add_service(
            ClusterServer::new(cluster::ClusterService { server: server.clone() }).max_decoding_message_size(max),
        )
        .add_service(MaintenanceServer::new(maintenance::MaintenanceService { server }).max_decoding_message_size(max))
}

/// Everything a client port serves.
pub fn client_mux(server: Arc<EtcdServer>, max_request_bytes: usize) -> mux::Mux {
    mux::Mux::new(grpc_routes(server.clone(), max_request_bytes), http::router(server))
}

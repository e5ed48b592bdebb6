//! The client port's gRPC services, each request handed to its service by the service name in its path.
//!
//! `tonic::service::Routes` does the same through an axum router (path matching with URL parameters, a
//! boxed clone of the route per request, a response mapping: ≈ 1.9 µs of a put's ≈ 30 when measured);
//! the client port is the hot path of every put and range, so it dispatches with one `match` and keeps
//! each tonic server's own boxed future. The layers in front: `mux` → metrics → `grpc_limit` →
//! `auth::CallerLayer` → [`Dispatch`].
//! A path that names no service here never gets this far (`unknown` answers it in the mux); should one,
//! it gets grpc-go's `unknown service` answer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response};
use tower::Service;

use super::{auth, cluster, election, health, kv, lease, lock, maintenance, watch, Services};
use crate::proto::etcdserverpb::auth_server::AuthServer;
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;

/// What every tonic server's `call` returns.
type TonicFuture = Pin<Box<dyn Future<Output = Result<Response<tonic::body::Body>, Infallible>> + Send>>;

/// The client API's gRPC services (see the module docs). A clone is one reference count: the mux
/// clones the gRPC stack for each request.
#[derive(Clone)]
pub struct Dispatch(Arc<Servers>);

struct Servers {
    kv: KvServer<kv::KvService>,
    watch: WatchServer<watch::WatchService>,
    lease: LeaseServer<lease::LeaseService>,
    cluster: ClusterServer<cluster::ClusterService>,
    maintenance: MaintenanceServer<maintenance::MaintenanceService>,
    auth: AuthServer<auth::AuthService>,
    lock: LockServer<lock::LockService>,
    election: ElectionServer<election::ElectionService>,
    health: tonic_health::pb::health_server::HealthServer<health::HealthService>,
}

impl Dispatch {
    /// The services of `s`, their request messages limited to `max_message` bytes.
    pub fn new(s: &Services, max_message: usize) -> Dispatch {
        Dispatch(Arc::new(Servers {
            kv: KvServer::new(s.kv.clone()).max_decoding_message_size(max_message),
            watch: WatchServer::new(s.watch.clone()).max_decoding_message_size(max_message),
            lease: LeaseServer::new(s.lease.clone()).max_decoding_message_size(max_message),
            cluster: ClusterServer::new(s.cluster.clone()).max_decoding_message_size(max_message),
            maintenance: MaintenanceServer::new(s.maintenance.clone()).max_decoding_message_size(max_message),
            auth: AuthServer::new(s.auth.clone()).max_decoding_message_size(max_message),
            lock: LockServer::new(s.lock.clone()).max_decoding_message_size(max_message),
            election: ElectionServer::new(s.election.clone()).max_decoding_message_size(max_message),
            health: health::HealthService::server(),
        }))
    }
}

impl Service<Request<Body>> for Dispatch {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = IntoAxum;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // tonic's generated servers are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> IntoAxum {
        let path = req.uri().path();
        let service = path.strip_prefix('/').and_then(|p| p.split_once('/')).map_or("", |(service, _)| service);
        // A tonic server is called through `&mut`: the one the request goes to is cloned (a reference
        // count; the call itself only reads it).
        let s = &self.0;
        IntoAxum(match service {
            "etcdserverpb.KV" => s.kv.clone().call(req),
            "etcdserverpb.Watch" => s.watch.clone().call(req),
            "etcdserverpb.Lease" => s.lease.clone().call(req),
            "etcdserverpb.Cluster" => s.cluster.clone().call(req),
            "etcdserverpb.Maintenance" => s.maintenance.clone().call(req),
            "etcdserverpb.Auth" => s.auth.clone().call(req),
            "v3lockpb.Lock" => s.lock.clone().call(req),
            "v3electionpb.Election" => s.election.clone().call(req),
            "grpc.health.v1.Health" => s.health.clone().call(req),
            other => {
                let status = tonic::Status::unimplemented(format!("unknown service {other}"));
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        })
    }
}

/// A tonic server's response with the body type the mux answers with.
pub struct IntoAxum(TonicFuture);

impl Future for IntoAxum {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx).map_ok(|resp| resp.map(Body::new))
    }
}

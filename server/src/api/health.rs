//! `grpc.health.v1.Health` on the client port, as etcd serves it (grpc-go's health server with the
//! overall status set once): load balancers, service meshes and gRPC clients' health checking ask it.
//!
//! ```text
//!   Check("")     ─▶ SERVING
//!   Check(other)  ─▶ NotFound "unknown service"
//!   Watch("")     ─▶ SERVING, then the stream stays open (the status never changes while serving)
//!   Watch(other)  ─▶ SERVICE_UNKNOWN, then the stream stays open
//! ```
//!
//! The messages and service are tonic-health's generated ones; the answers are etcd's.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The health service of a member: every member that serves clients is SERVING.
#[derive(Clone, Default)]
pub struct HealthService;

impl HealthService {
    pub fn server() -> HealthServer<HealthService> {
        HealthServer::new(HealthService)
    }
}

fn status_of(service: &str) -> ServingStatus {
    if service.is_empty() {
        ServingStatus::Serving
    } else {
        ServingStatus::ServiceUnknown
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(&self, req: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        match status_of(&req.get_ref().service) {
            ServingStatus::ServiceUnknown => Err(Status::not_found("unknown service")),
            s => Ok(Response::new(HealthCheckResponse { status: s as i32 })),
        }
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let first = HealthCheckResponse { status: status_of(&req.get_ref().service) as i32 };
        // One answer, then nothing until the client goes: the status does not change while serving.
        let stream = futures::stream::iter([Ok(first)]).chain(futures::stream::pending());
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn etcds_answers() {
        let svc = HealthService;
        let ask = |s: &str| Request::new(HealthCheckRequest { service: s.into() });
        assert_eq!(svc.check(ask("")).await.unwrap().into_inner().status, ServingStatus::Serving as i32);
        let e = svc.check(ask("etcdserverpb.KV")).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (tonic::Code::NotFound, "unknown service"));
        let mut w = svc.watch(ask("")).await.unwrap().into_inner();
        assert_eq!(w.next().await.unwrap().unwrap().status, ServingStatus::Serving as i32);
        let mut w = svc.watch(ask("x")).await.unwrap().into_inner();
        assert_eq!(w.next().await.unwrap().unwrap().status, ServingStatus::ServiceUnknown as i32);
    }
}

//! The JSON gateway on the proxy's port: `api::gateway` over the forwarding services. The
//! `Authorization` header's token is passed on as each upstream call's `token` (the gateway's calls
//! carry no gRPC metadata: it travels in [`GATEWAY_TOKEN`] for the call's duration).

use axum::http::HeaderValue;
use axum::response::Response;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::AsciiMetadataValue;
use tonic::Status;

use super::upstream::{token_of, GATEWAY_TOKEN};
use super::{auth, cluster, election, kv, lease, lock, maintenance, Services};
use crate::api::gateway::Backend;
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse, WatchRequest, WatchResponse};

/// The token of the current gateway call.
fn current_token() -> super::upstream::Token {
    token_of(&tonic::Request::new(()))
}

impl Backend for Services {
    type Kv = kv::KvProxy;
    type Lease = lease::LeaseProxy;
    type Cluster = cluster::ClusterProxy;
    type Maintenance = maintenance::MaintenanceProxy;
    type Lock = lock::LockProxy;
    type Election = election::ElectionProxy;
    type Auth = auth::AuthProxy;
    fn kv(&self) -> Self::Kv {
        self.kv.clone()
    }
    fn lease(&self) -> Self::Lease {
        self.lease.clone()
    }
    fn cluster(&self) -> Self::Cluster {
        self.cluster.clone()
    }
    fn maintenance(&self) -> Self::Maintenance {
        self.maintenance.clone()
    }
    fn lock(&self) -> Self::Lock {
        self.lock.clone()
    }
    fn election(&self) -> Self::Election {
        self.election.clone()
    }
    fn auth(&self) -> Self::Auth {
        self.auth.clone()
    }

    fn as_caller(
        &self,
        token: Option<HeaderValue>,
        call: BoxFuture<'static, Response>,
    ) -> BoxFuture<'static, Response> {
        let token = token.and_then(|t| AsciiMetadataValue::try_from(t.as_bytes()).ok());
        Box::pin(GATEWAY_TOKEN.scope(token, call))
    }

    fn watch(
        &self,
        requests: BoxStream<'static, Result<WatchRequest, Status>>,
    ) -> BoxStream<'static, Result<WatchResponse, Status>> {
        let w = &self.watch;
        let rx = super::watch::session(w.up.clone(), w.ns.clone(), Some(w.hub.clone()), current_token(), requests);
        Box::pin(ReceiverStream::new(rx))
    }

    fn keep_alive(
        &self,
        requests: BoxStream<'static, LeaseKeepAliveRequest>,
    ) -> BoxStream<'static, Result<LeaseKeepAliveResponse, Status>> {
        let (tx, rx) = tokio::sync::mpsc::channel(lease::OUT_BUFFER);
        tokio::spawn(self.lease.keep_alive(current_token(), requests, tx));
        ReceiverStream::new(rx).boxed()
    }
}

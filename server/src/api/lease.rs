//! The Lease service (`etcdserverpb.Lease`).

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use crate::server::EtcdServer;

pub struct LeaseService {
    pub server: Arc<EtcdServer>,
}

/// One keep-alive answer: the lease's TTL, or TTL 0 for a lease that does not exist (as etcd answers).
pub async fn keep_alive_once(server: &EtcdServer, id: i64) -> Result<LeaseKeepAliveResponse, Error> {
    let ttl = match server.lease_renew(id).await {
        Ok(ttl) => ttl,
        Err(Error::LeaseNotFound) => 0,
        Err(e) => return Err(e),
    };
    Ok(LeaseKeepAliveResponse { header: Some(server.header(server.kv.current_rev())), id, ttl })
}

/// A lease's remaining time on this member's clock (the leader's is the one that counts: see
/// `EtcdServer::lease_time_to_live`), with this member's header.
pub fn time_to_live(server: &EtcdServer, r: &LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse {
    let header = Some(server.header(server.kv.current_rev()));
    LeaseTimeToLiveResponse { header, ..server.lessor.time_to_live_response(r) }
}

pub fn leases(server: &EtcdServer) -> LeaseLeasesResponse {
    let leases = server.lessor.leases().into_iter().map(|id| LeaseStatus { id }).collect();
    LeaseLeasesResponse { header: Some(server.header(server.kv.current_rev())), leases }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        Ok(Response::new(self.server.lease_grant(req.into_inner()).await?))
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        Ok(Response::new(self.server.lease_revoke(req.into_inner()).await?))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut requests = req.into_inner();
        let server = self.server.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(Ok(r)) = requests.next().await {
                let resp = keep_alive_once(&server, r.id).await.map_err(Status::from);
                let failed = resp.is_err();
                if tx.send(resp).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        Ok(Response::new(self.server.lease_time_to_live(req.into_inner()).await?))
    }

    async fn lease_leases(&self, _: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        Ok(Response::new(leases(&self.server)))
    }
}

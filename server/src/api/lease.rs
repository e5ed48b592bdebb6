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
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::server::v3::Leases;

#[derive(Clone)]
pub struct LeaseService {
    pub server: Arc<dyn Leases>,
    /// Turns true when the member stops: keep-alive streams end then.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

/// One keep-alive answer: the lease's TTL, or TTL 0 for a lease that does not exist (as etcd answers).
pub async fn keep_alive_once(leases: Arc<dyn Leases>, id: i64) -> Result<LeaseKeepAliveResponse, Error> {
    let ttl = match leases.renew(id).await {
        Ok(ttl) => ttl,
        Err(Error::LeaseNotFound) => 0,
        Err(e) => return Err(e),
    };
    Ok(LeaseKeepAliveResponse { header: Some(leases.headers().current()), id, ttl })
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        Ok(Response::new(self.server.grant(req.into_inner()).await?))
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        Ok(Response::new(self.server.revoke(req.into_inner()).await?))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut requests = req.into_inner();
        let (server, stop) = (self.server.clone(), self.stop.clone());
        let (tx, rx) = mpsc::channel(16);
        // Each renewal is made as the caller of the stream.
        tokio::spawn(crate::auth::with_caller(crate::auth::stream_caller(), async move {
            loop {
                let next = tokio::select! {
                    next = requests.next() => next,
                    // The member stops: the stream ends (`server stopped`), as etcd's do.
                    _ = super::stopping(stop.clone()) => {
                        let _ = tx.try_send(Err(crate::error::Error::Stopped.into()));
                        return;
                    }
                };
                let Some(Ok(r)) = next else { return };
                let resp = keep_alive_once(server.clone(), r.id).await.map_err(Status::from);
                let failed = resp.is_err();
                if tx.send(resp).await.is_err() || failed {
                    return;
                }
            }
        }));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        Ok(Response::new(self.server.time_to_live(req.into_inner()).await?))
    }

    async fn lease_leases(&self, _: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        Ok(Response::new(self.server.leases()?))
    }
}

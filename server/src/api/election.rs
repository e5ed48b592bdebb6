//! The Election service (`v3electionpb.Election`): campaign, proclaim, leader, observe and resign (see
//! `server::election` for the recipe). Errors come as etcd's election server gives them: `Unknown`,
//! with etcd's message.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::client_error;
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};
use crate::server::election;
use crate::server::v3::Elections;

#[derive(Clone)]
pub struct ElectionService {
    pub server: Arc<dyn Elections>,
}

fn leader_key(k: Option<LeaderKey>) -> Result<election::LeaderKey, Status> {
    let k = k.ok_or_else(|| client_error(crate::error::Error::MissingLeaderKey))?;
    Ok(election::LeaderKey { name: k.name, key: k.key, rev: k.rev, lease: k.lease })
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, req: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let CampaignRequest { name, lease, value } = req.into_inner();
        let (header, l) = self.server.clone().campaign(name, lease, value).await.map_err(client_error)?;
        let leader = LeaderKey { name: l.name, key: l.key, rev: l.rev, lease: l.lease };
        Ok(Response::new(CampaignResponse { header: Some(header), leader: Some(leader) }))
    }

    async fn proclaim(&self, req: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let ProclaimRequest { leader, value } = req.into_inner();
        let header = self.server.proclaim(leader_key(leader)?, value).await.map_err(client_error)?;
        Ok(Response::new(ProclaimResponse { header: Some(header) }))
    }

    async fn leader(&self, req: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        let (header, kv) = self.server.leader(req.into_inner().name).await.map_err(client_error)?;
        Ok(Response::new(LeaderResponse { header: Some(header), kv: Some(kv) }))
    }

    type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

    async fn observe(&self, req: Request<LeaderRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        let rx = self.server.clone().observe(req.into_inner().name);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|r| r.map(|(header, kv)| LeaderResponse { header: Some(header), kv: Some(kv) }).map_err(client_error));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn resign(&self, req: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let header = self.server.resign(leader_key(req.into_inner().leader)?).await.map_err(client_error)?;
        Ok(Response::new(ResignResponse { header: Some(header) }))
    }
}

//! `v3electionpb.Election` forwarded; under a namespace election names, leader keys and the leaders'
//! kvs are prefixed on the way in and stripped on the way out. `Observe` is passed on as a stream.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::namespace::Namespace;
use super::upstream::{token_of, with_token, Retry, Upstream};
use crate::proto::v3electionpb::election_client::ElectionClient;
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3electionpb::*;

#[derive(Clone)]
pub struct ElectionProxy {
    pub up: Arc<Upstream>,
    pub ns: Namespace,
}

impl ElectionProxy {
    fn leader_in(&self, l: &mut Option<LeaderKey>) {
        if let Some(l) = l {
            self.ns.key(&mut l.name);
            self.ns.key(&mut l.key);
        }
    }

    fn leader_out(&self, l: &mut Option<LeaderKey>) {
        if let Some(l) = l {
            self.ns.strip(&mut l.name);
            self.ns.strip(&mut l.key);
        }
    }
}

#[tonic::async_trait]
impl Election for ElectionProxy {
    async fn campaign(&self, req: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let token = token_of(&req);
        let mut r = req.into_inner();
        self.ns.key(&mut r.name);
        let mut resp = forward!(self.up, Retry::IfNotSent, ElectionClient, campaign, r, token)?;
        self.leader_out(&mut resp.leader);
        Ok(Response::new(resp))
    }

    async fn proclaim(&self, req: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let token = token_of(&req);
        let mut r = req.into_inner();
        self.leader_in(&mut r.leader);
        Ok(Response::new(forward!(self.up, Retry::IfNotSent, ElectionClient, proclaim, r, token)?))
    }

    async fn leader(&self, req: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        let token = token_of(&req);
        let mut r = req.into_inner();
        self.ns.key(&mut r.name);
        let mut resp = forward!(self.up, Retry::Always, ElectionClient, leader, r, token)?;
        if let Some(kv) = &mut resp.kv {
            self.ns.strip_kv(kv);
        }
        Ok(Response::new(resp))
    }

    type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

    async fn observe(&self, req: Request<LeaderRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        let token = token_of(&req);
        let mut r = req.into_inner();
        self.ns.key(&mut r.name);
        let up = &self.up;
        let stream = up
            .unary(Retry::Always, |ch| {
                let mut c = ElectionClient::new(ch).max_decoding_message_size(up.max_recv);
                let r = with_token(r.clone(), &token);
                async move { c.observe(r).await }
            })
            .await?
            .into_inner();
        let ns = self.ns.clone();
        Ok(Response::new(Box::pin(stream.map(move |item| {
            item.map(|mut resp| {
                if let Some(kv) = &mut resp.kv {
                    ns.strip_kv(kv);
                }
                resp
            })
        }))))
    }

    async fn resign(&self, req: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let token = token_of(&req);
        let mut r = req.into_inner();
        self.leader_in(&mut r.leader);
        Ok(Response::new(forward!(self.up, Retry::IfNotSent, ElectionClient, resign, r, token)?))
    }
}

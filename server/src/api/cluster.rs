//! The Cluster service (`etcdserverpb.Cluster`): the member list, and membership changes, which run on
//! the leader (a follower forwards them) as raft configuration changes.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use crate::proto::modkvpb::member_change_request::Request as Change;
use crate::server::v3::Members;

#[derive(Clone)]
pub struct ClusterService {
    pub server: Arc<dyn Members>,
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let s = &self.server;
        let r = s.change_members(Change::Add(req.into_inner())).await?;
        Ok(Response::new(MemberAddResponse { header: Some(s.headers().at(0)), member: r.member, members: r.members }))
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        let s = &self.server;
        let r = s.change_members(Change::Remove(req.into_inner())).await?;
        Ok(Response::new(MemberRemoveResponse { header: Some(s.headers().at(0)), members: r.members }))
    }

    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        let s = &self.server;
        let r = s.change_members(Change::Update(req.into_inner())).await?;
        Ok(Response::new(MemberUpdateResponse { header: Some(s.headers().at(0)), members: r.members }))
    }

    async fn member_list(&self, _: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        // etcd's member list header carries no revision.
        let s = &self.server;
        s.may_list()?;
        let members = s.members().into_iter().map(Into::into).collect();
        Ok(Response::new(MemberListResponse { header: Some(s.headers().at(0)), members }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let s = &self.server;
        let r = s.change_members(Change::Promote(req.into_inner())).await?;
        Ok(Response::new(MemberPromoteResponse { header: Some(s.headers().at(0)), members: r.members }))
    }
}

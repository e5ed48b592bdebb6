//! `etcdserverpb.Cluster` forwarded. The member list is the cluster's own (etcd's proxy answers with a
//! made-up member of id 0 for itself: a known fault not copied).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::upstream::{token_of, Retry, Upstream};
use crate::proto::etcdserverpb::cluster_client::ClusterClient;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::*;

#[derive(Clone)]
pub struct ClusterProxy {
    pub up: Arc<Upstream>,
}

macro_rules! rpcs {
    ($($method:ident($req:ty) -> $resp:ty, $retry:expr;)*) => {
        #[tonic::async_trait]
        impl Cluster for ClusterProxy {
            $(async fn $method(&self, req: Request<$req>) -> Result<Response<$resp>, Status> {
                let token = token_of(&req);
                let r = req.into_inner();
                Ok(Response::new(forward!(self.up, $retry, ClusterClient, $method, r, token)?))
            })*
        }
    };
}

rpcs! {
    member_add(MemberAddRequest) -> MemberAddResponse, Retry::IfNotSent;
    member_remove(MemberRemoveRequest) -> MemberRemoveResponse, Retry::IfNotSent;
    member_update(MemberUpdateRequest) -> MemberUpdateResponse, Retry::IfNotSent;
    member_list(MemberListRequest) -> MemberListResponse, Retry::Always;
    member_promote(MemberPromoteRequest) -> MemberPromoteResponse, Retry::IfNotSent;
}

//! `etcdserverpb.Maintenance` forwarded to the pinned member (status, hash, defragment and snapshot
//! are about that member, as through etcd's proxy); the snapshot stream is passed on as it comes.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::upstream::{token_of, with_token, Retry, Upstream};
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::*;

#[derive(Clone)]
pub struct MaintenanceProxy {
    pub up: Arc<Upstream>,
}

macro_rules! rpcs {
    ($($method:ident($req:ty) -> $resp:ty, $retry:expr;)*) => {
        #[tonic::async_trait]
        impl Maintenance for MaintenanceProxy {
            $(async fn $method(&self, req: Request<$req>) -> Result<Response<$resp>, Status> {
                let token = token_of(&req);
                let r = req.into_inner();
                Ok(Response::new(forward!(self.up, $retry, MaintenanceClient, $method, r, token)?))
            })*

            type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

            async fn snapshot(&self, req: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
                let token = token_of(&req);
                let r = req.into_inner();
                let up = &self.up;
                let stream = up
                    .unary(Retry::Always, |ch| {
                        let mut c = MaintenanceClient::new(ch).max_decoding_message_size(up.max_recv);
                        let r = with_token(r.clone(), &token);
                        async move { c.snapshot(r).await }
                    })
                    .await?
                    .into_inner();
                Ok(Response::new(Box::pin(stream)))
            }
        }
    };
}

rpcs! {
    alarm(AlarmRequest) -> AlarmResponse, Retry::IfNotSent;
    status(StatusRequest) -> StatusResponse, Retry::Always;
    defragment(DefragmentRequest) -> DefragmentResponse, Retry::IfNotSent;
    hash(HashRequest) -> HashResponse, Retry::Always;
    hash_kv(HashKvRequest) -> HashKvResponse, Retry::Always;
    move_leader(MoveLeaderRequest) -> MoveLeaderResponse, Retry::IfNotSent;
}

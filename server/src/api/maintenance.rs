//! The Maintenance service (`etcdserverpb.Maintenance`): Status and Alarm now; the rest answers
//! `Unimplemented` until its issue lands.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};

use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest,
    HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use crate::server::{EtcdServer, ETCD_VERSION};

pub struct MaintenanceService {
    pub server: Arc<EtcdServer>,
}

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("modkv: {what} is not supported yet"))
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        if req.get_ref().action != 0 {
            return Err(not_yet("raising or clearing alarms"));
        }
        // No alarm is ever raised by this server yet, so the list is empty.
        let s = &self.server;
        Ok(Response::new(AlarmResponse { header: Some(s.header(s.kv.current_rev())), alarms: vec![] }))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let s = &self.server;
        Ok(Response::new(StatusResponse {
            header: Some(s.header(s.kv.current_rev())),
            version: ETCD_VERSION.to_string(),
            db_size: s.backend.size_on_disk() as i64,
            leader: s.leader(),
            raft_index: s.commit_index(),
            raft_term: s.term(),
            raft_applied_index: s.applied_index(),
            errors: vec![],
            db_size_in_use: s.backend.size_in_use() as i64,
            is_learner: false,
        }))
    }

    async fn defragment(&self, _: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        Err(not_yet("defragment"))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Err(not_yet("hash"))
    }

    async fn hash_kv(&self, _: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        Err(not_yet("hashkv"))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

    async fn snapshot(&self, _: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(not_yet("snapshot"))
    }

    async fn move_leader(&self, _: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        Err(not_yet("move-leader"))
    }
}

//! The Maintenance service (`etcdserverpb.Maintenance`): Status, Alarm, Defragment, MoveLeader and
//! Snapshot (the state streamed as a `backup` file, in 32 KiB chunks) and HashKV (the same hash as etcd's
//! over the same history); Hash (of etcd's whole bolt file) answers `Unimplemented`.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};

use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::AlarmType;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest,
    HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use crate::server::{EtcdServer, ETCD_VERSION};

/// What `Status.errors` lists, as etcd does: no leader, then each raised alarm.
fn status_errors(s: &EtcdServer) -> Vec<String> {
    let mut errors = Vec::new();
    if s.leader() == 0 {
        errors.push(crate::error::Error::NoLeader.to_string());
    }
    for a in s.alarms.get(AlarmType::None) {
        errors.push(format!("memberID:{} alarm:{} ", a.member_id, alarm_name(a.alarm)));
    }
    errors
}

fn alarm_name(a: i32) -> &'static str {
    AlarmType::try_from(a).map(|t| t.as_str_name()).unwrap_or("UNKNOWN")
}

pub struct MaintenanceService {
    pub server: Arc<EtcdServer>,
}

/// Bytes per Snapshot response message (etcd's chunk size).
const SNAPSHOT_CHUNK: usize = 32 * 1024;

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("modkv: {what} is not supported yet"))
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        Ok(Response::new(self.server.alarm(req.into_inner()).await?))
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
            errors: status_errors(s),
            db_size_in_use: s.backend.size_in_use() as i64,
            is_learner: s.cluster.is_learner(s.cluster.member_id),
        }))
    }

    async fn defragment(&self, _: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        let s = &self.server;
        s.defragment().await?;
        Ok(Response::new(DefragmentResponse { header: Some(s.header(s.kv.current_rev())) }))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Err(not_yet("hash"))
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        let s = &self.server;
        let kv = s.kv.clone();
        let rev = req.get_ref().revision;
        let (hash, current, compacted) = tokio::task::spawn_blocking(move || kv.hash_kv(rev))
            .await
            .map_err(|e| Status::internal(format!("hashkv: {e}")))??;
        Ok(Response::new(HashKvResponse { header: Some(s.header(current)), hash, compact_revision: compacted }))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

    async fn snapshot(&self, _: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let s = &self.server;
        let backend = s.backend.clone();
        // One RocksDB snapshot read off the async workers; the file is held in memory while it streams.
        let file = tokio::task::spawn_blocking(move || crate::backup::file(&*backend))
            .await
            .map_err(|e| Status::internal(format!("snapshot: {e}")))?
            .map_err(crate::error::Error::from)?;
        tracing::info!(bytes = file.len(), "sending a snapshot to a client");
        let header = s.header(s.kv.current_rev());
        let total = file.len();
        let chunks: Vec<Result<SnapshotResponse, Status>> = file
            .chunks(SNAPSHOT_CHUNK)
            .enumerate()
            .map(|(i, blob)| {
                Ok(SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: (total - (i * SNAPSHOT_CHUNK + blob.len())) as u64,
                    blob: blob.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn move_leader(&self, req: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        let s = &self.server;
        s.move_leader(req.get_ref().target_id).await?;
        Ok(Response::new(MoveLeaderResponse { header: Some(s.header(s.kv.current_rev())) }))
    }
}

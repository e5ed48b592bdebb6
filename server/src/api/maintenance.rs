//! The Maintenance service (`etcdserverpb.Maintenance`): Status, Alarm, Defragment, MoveLeader and
//! Snapshot (the state streamed as a `backup` file from one RocksDB snapshot, in 32 KiB chunks as the
//! client takes them: memory per stream is a few chunks), HashKV (the same hash as etcd's over the same
//! history) and Hash (etcd's CRC-32C of its backend, over the buckets a snapshot file of this state holds:
//! `backup::hash`).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::mvcc::KvStore;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest,
    HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use crate::server;
use crate::storage::Backend;
use crate::version::ETCD_VERSION;

#[derive(Clone)]
pub struct MaintenanceService {
    pub server: Arc<dyn server::v3::Maintenance>,
    /// The store HashKV reads.
    pub kv: Arc<KvStore>,
    /// The backend snapshots are read from.
    pub backend: Arc<dyn Backend>,
}

/// Bytes per Snapshot response message (etcd's chunk size).
const SNAPSHOT_CHUNK: usize = 32 * 1024;
/// Snapshot messages queued for a client beyond what its connection buffers.
const SNAPSHOT_QUEUE: usize = 4;
/// How long a Snapshot stream waits for its client to take the next message.
const SNAPSHOT_STALL: Duration = Duration::from_secs(60);

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        // As etcd 3.4.42+: listing needs a user, raising or clearing root (3.4.23 checks nothing).
        if req.get_ref().action == crate::proto::etcdserverpb::alarm_request::AlarmAction::Get as i32 {
            self.server.check_user()?;
        } else {
            self.server.check_admin()?;
        }
        Ok(Response::new(self.server.alarm(req.into_inner()).await?))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        self.server.check_admin()?;
        Ok(Response::new(StatusResponse { version: ETCD_VERSION.to_string(), ..self.server.status() }))
    }

    async fn defragment(&self, _: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        self.server.check_admin()?;
        self.server.defragment().await?;
        // etcd 3.4 answers an empty message, no header (clients' tests assert on it).
        Ok(Response::new(DefragmentResponse { header: None }))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.server.check_admin()?;
        let backend = self.backend.clone();
        // A full scan, as etcd's: off the async threads.
        let (hash, revision) = tokio::task::spawn_blocking(move || crate::backup::hash(&*backend))
            .await
            .map_err(|e| Status::internal(format!("hash: {e}")))?
            .map_err(|e| Status::from(crate::error::Error::from(e)))?;
        Ok(Response::new(HashResponse { header: Some(self.server.headers().at(revision)), hash }))
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        self.server.check_admin()?;
        let kv = self.kv.clone();
        let rev = req.get_ref().revision;
        let (hash, current, compacted) = tokio::task::spawn_blocking(move || kv.hash_kv(rev))
            .await
            .map_err(|e| Status::internal(format!("hashkv: {e}")))??;
        Ok(Response::new(HashKvResponse {
            header: Some(self.server.headers().at(current)),
            hash,
            compact_revision: compacted,
        }))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

    async fn snapshot(&self, _: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        self.server.check_admin()?;
        let header = self.server.headers().current();
        let (tx, rx) = tokio::sync::mpsc::channel(SNAPSHOT_QUEUE);
        let complete = Arc::new(AtomicBool::new(false));
        let (backend, done, runtime) = (self.backend.clone(), complete.clone(), tokio::runtime::Handle::current());
        // One RocksDB snapshot read on a blocking thread, chunk by chunk as the client takes them: the
        // producer waits while the queue is full (a stalled client stops it), and gives up after
        // SNAPSHOT_STALL without progress.
        tokio::task::spawn_blocking(move || {
            let mut send = |blob: Vec<u8>, remaining_bytes: u64| {
                let msg = Ok(SnapshotResponse { header: Some(header), remaining_bytes, blob });
                match runtime.block_on(tokio::time::timeout(SNAPSHOT_STALL, tx.send(msg))) {
                    Ok(sent) => sent.is_ok(),
                    Err(_) => {
                        tracing::warn!(
                            "a client took no snapshot data for {SNAPSHOT_STALL:?}; abandoning its snapshot"
                        );
                        false
                    }
                }
            };
            match crate::backup::stream(&*backend, SNAPSHOT_CHUNK, &mut send) {
                Ok(true) => {
                    done.store(true, Ordering::Release);
                    tracing::info!("sent a snapshot to a client");
                }
                Ok(false) => tracing::info!("a snapshot stream ended before it was complete"),
                Err(e) => {
                    tracing::warn!(error = %e, "snapshot");
                    // (A stalled client, whose queue is full, is told by the stream's end instead.)
                    if tx.try_send(Err(Status::from(crate::error::Error::from(e)))).is_ok() {
                        done.store(true, Ordering::Release);
                    }
                }
            }
        });
        // A stream the producer abandoned ends in an error, not as a complete (short) file.
        let abandoned = futures::stream::once(async move {
            (!complete.load(Ordering::Acquire)).then(|| {
                Err(Status::unavailable(format!(
                    "modkv: the snapshot was abandoned (no data taken for {SNAPSHOT_STALL:?}, or storage failed)"
                )))
            })
        })
        .filter_map(std::future::ready);
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).chain(abandoned))))
    }

    async fn move_leader(&self, req: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        self.server.check_admin()?;
        self.server.move_leader(req.get_ref().target_id).await?;
        // An empty message, no header, as etcd 3.4's.
        Ok(Response::new(MoveLeaderResponse { header: None }))
    }
}

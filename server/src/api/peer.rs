//! The peer service (`modkvpb.Peer`) on `--listen-peer-urls`: raft messages from the other members,
//! the member list for a joining member, and the requests only the leader can serve (membership
//! changes, lease keep-alives) forwarded by followers.
//!
//! Every request names the cluster it is for; a member refuses requests for another cluster (a member
//! started with the wrong `--initial-cluster-token`, or a stale member of an old cluster), and raft
//! messages addressed to another member, with an error the sender logs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::proto::modkvpb::peer_server::{Peer, PeerServer};
use crate::proto::modkvpb::{
    LeaseRenewRequest, LeaseRenewResponse, MemberChangeRequest, MemberChangeResponse, MembersRequest, MembersResponse,
    MessageBatch, SendResponse,
};
use crate::raft::MAX_PEER_MESSAGE;
use crate::server::EtcdServer;

/// A refusal is logged again at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct PeerService {
    server: Arc<EtcdServer>,
    last_refusal: Arc<Mutex<Option<Instant>>>,
}

/// Batches a stream may have stepped but not yet acknowledged.
const STREAM_ACKS: usize = 64;

impl PeerService {
    /// Checks a batch of raft messages and steps them into raft, in order.
    async fn accept(&self, b: MessageBatch) -> Result<(), Status> {
        self.check_cluster(b.cluster_id, b.from)?;
        if self.server.cluster.is_removed(b.from) {
            // As etcd answers a removed member: it learns it is out (it may have missed the commit of
            // its own removal) and stops.
            return Err(Status::failed_precondition(crate::raft::REMOVED));
        }
        let me = self.server.cluster.member_id;
        if b.to != me {
            let msg =
                format!("member ID mismatch: member {:x} sent messages for member {:x} to member {me:x}", b.from, b.to);
            self.log_refusal(&msg);
            return Err(Status::failed_precondition(msg));
        }
        for data in b.messages {
            let m = raft::eraftpb::Message::parse_from_bytes(&data)
                .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))?;
            self.server.raft.step(m).await?;
        }
        Ok(())
    }

    fn check_cluster(&self, cluster_id: u64, from: u64) -> Result<(), Status> {
        let ours = self.server.cluster.cluster_id;
        if cluster_id == ours {
            return Ok(());
        }
        let msg = format!(
            "cluster ID mismatch: member {from:x} sent a request for cluster {cluster_id:x}, this member belongs to cluster {ours:x}"
        );
        self.log_refusal(&msg);
        Err(Status::failed_precondition(msg))
    }

    fn log_refusal(&self, msg: &str) {
        let mut last = self.last_refusal.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            tracing::error!("refused a peer request: {msg}");
            *last = Some(Instant::now());
        }
    }

    fn leader_only(&self) -> Result<(), Status> {
        if self.server.is_leader() {
            Ok(())
        } else {
            Err(Error::NotLeader.into())
        }
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn send(&self, req: Request<MessageBatch>) -> Result<Response<SendResponse>, Status> {
        self.accept(req.into_inner()).await?;
        Ok(Response::new(SendResponse {}))
    }

    type StreamStream = tokio_stream::wrappers::ReceiverStream<Result<SendResponse, Status>>;

    async fn stream(
        &self,
        req: Request<tonic::Streaming<MessageBatch>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let mut batches = req.into_inner();
        let (acks, rx) = tokio::sync::mpsc::channel(STREAM_ACKS);
        let svc = self.clone();
        tokio::spawn(async move {
            // Ends when the sender closes the stream or goes away; a refused batch ends it with the
            // refusal (the sender reports it as for Send).
            while let Ok(Some(b)) = batches.message().await {
                let ack = svc.accept(b).await.map(|()| SendResponse {});
                let refused = ack.is_err();
                if acks.send(ack).await.is_err() || refused {
                    break;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn members(&self, _: Request<MembersRequest>) -> Result<Response<MembersResponse>, Status> {
        let c = &self.server.cluster;
        let members_json = serde_json::to_vec(&c.members()).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(MembersResponse { cluster_id: c.cluster_id, members_json }))
    }

    async fn change_members(
        &self,
        req: Request<MemberChangeRequest>,
    ) -> Result<Response<MemberChangeResponse>, Status> {
        let r = req.into_inner();
        self.check_cluster(r.cluster_id, 0)?;
        self.leader_only()?;
        let change = r.request.ok_or_else(|| Status::invalid_argument("no membership change in the request"))?;
        Ok(Response::new(self.server.change_members_here(change).await?))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<crate::proto::modkvpb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<crate::proto::etcdserverpb::LeaseTimeToLiveResponse>, Status> {
        let r = req.into_inner();
        self.check_cluster(r.cluster_id, 0)?;
        self.leader_only()?;
        let r = r.request.ok_or_else(|| Status::invalid_argument("no lease in the request"))?;
        Ok(Response::new(crate::api::lease::time_to_live(&self.server, &r)))
    }

    async fn lease_renew(&self, req: Request<LeaseRenewRequest>) -> Result<Response<LeaseRenewResponse>, Status> {
        let r = req.into_inner();
        self.check_cluster(r.cluster_id, 0)?;
        self.leader_only()?;
        Ok(Response::new(LeaseRenewResponse { ttl: self.server.lessor.renew(r.id)? }))
    }
}

/// What a peer port serves: the peer service over h2 (anything else gets 404).
pub fn peer_mux(server: Arc<EtcdServer>) -> super::mux::Mux {
    let svc = PeerServer::new(PeerService { server, last_refusal: Arc::new(Mutex::new(None)) })
        .max_decoding_message_size(MAX_PEER_MESSAGE)
        .max_encoding_message_size(MAX_PEER_MESSAGE);
    let grpc = tonic::service::Routes::new(svc).into_axum_router();
    let other = axum::Router::new().fallback(|| async {
        (
            http::StatusCode::NOT_FOUND,
            [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "404 page not found\n",
        )
    });
    super::mux::Mux::new(grpc, other)
}

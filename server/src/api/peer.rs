//! The peer service (`modkvpb.Peer`) on `--listen-peer-urls`: raft messages from the other members,
//! the member list for a joining member, and the requests only the leader can serve (membership
//! changes, lease keep-alives) forwarded by followers.
//!
//! ```text
//!   serve: accept ─▶ PeerConn (read / write timeouts, abortive close) ─▶ TLS for https ─▶ h2 (pings)
//!   Send / Stream batch ─▶ cluster, sender and receiver checked ─▶ each message: raft::check::refuse
//!                          ─▶ proposals and ReadIndex requests of an older term dropped ─▶ raft step
//!   ChangeMembers / LeaseRenew / LeaseTimeToLive ─▶ cluster checked, leader only, not of an older term
//! ```
//!
//! Every request names the cluster it is for; a member refuses requests for another cluster (a member
//! started with the wrong `--initial-cluster-token`, or a stale member of an old cluster), raft
//! messages from a member it does not know or addressed to another member, and messages raft-rs would
//! panic on, with an error the sender logs.
//!
//! A request forwarded by a follower may arrive late: held up in the network while the cluster moved
//! on, long after the follower's client gave up. Connections give up within seconds and drop what they
//! buffered ([`crate::raft::conn`]), and what still comes from an older term than the receiver's is not
//! acted on: a proposal is dropped, a membership change or keep-alive refused (`leader changed`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use protobuf::Message as _;
use raft::eraftpb::MessageType;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::proto::modkvpb::peer_server::{Peer, PeerServer};
use crate::proto::modkvpb::{
    LeaseRenewRequest, LeaseRenewResponse, MemberChangeRequest, MemberChangeResponse, MembersRequest, MembersResponse,
    MessageBatch, SendResponse,
};
use crate::raft::conn::{self, PeerConn};
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
        let cluster = &self.server.cluster;
        if cluster.is_removed(b.from) {
            // As etcd answers a removed member: it learns it is out (it may have missed the commit of
            // its own removal) and stops.
            return Err(Status::failed_precondition(crate::raft::REMOVED));
        }
        let me = cluster.member_id;
        if b.to != me {
            let msg =
                format!("member ID mismatch: member {:x} sent messages for member {:x} to member {me:x}", b.from, b.to);
            self.log_refusal(&msg);
            return Err(Status::failed_precondition(msg));
        }
        if b.from == me || cluster.member(b.from).is_none() {
            let msg = format!("raft messages from member {:x}, which is not a member of this cluster", b.from);
            self.log_refusal(&msg);
            return Err(Status::failed_precondition(msg));
        }
        let mut msgs = Vec::with_capacity(b.messages.len());
        for data in b.messages {
            let m = raft::eraftpb::Message::parse_from_bytes(&data)
                .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))?;
            if let Some(why) = crate::raft::check::refuse(&m, b.from, me) {
                let msg = format!("refused a raft message from member {:x}: {why}", b.from);
                self.log_refusal(&msg);
                return Err(Status::invalid_argument(msg));
            }
            msgs.push(m);
        }
        // Term 0: a sender that does not say.
        let stale = b.term != 0 && b.term < self.server.term();
        for m in msgs {
            if stale && matches!(m.get_msg_type(), MessageType::MsgPropose | MessageType::MsgReadIndex) {
                tracing::info!(
                    from = format_args!("{:x}", b.from),
                    kind = ?m.get_msg_type(),
                    sent_in_term = b.term,
                    term = self.server.term(),
                    "dropped a forwarded request of an older term"
                );
                continue;
            }
            self.server.raft.step(m).await?;
        }
        Ok(())
    }

    /// Refuses a request forwarded by a member in an older term than this one's (0: not said).
    fn check_term(&self, term: u64) -> Result<(), Status> {
        if term != 0 && term < self.server.term() {
            return Err(Error::LeaderChanged.into());
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
        self.check_term(r.term)?;
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
        self.check_term(r.term)?;
        Ok(Response::new(LeaseRenewResponse { ttl: self.server.lessor.renew(r.id)? }))
    }
}

/// What a peer port serves: the peer service over h2 (anything else gets 404).
fn peer_mux(server: Arc<EtcdServer>) -> super::mux::Mux {
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

/// Serves the peer service on `listener` until `stop` changes, then stops accepting and lets open
/// requests finish (the caller bounds how long).
///
/// As `api::mux::serve` (the same accept loop), but each connection is a [`PeerConn`] (it gives up after a silence or a stalled
/// write and then closes abortively) and h2 pings it every [`conn::PING_INTERVAL`], so a connection cut
/// by the network is dropped with what it buffered instead of delivering it when the network heals.
pub async fn serve(
    listener: tokio::net::TcpListener,
    server: Arc<EtcdServer>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: watch::Receiver<bool>,
    errors: mpsc::UnboundedSender<String>,
) {
    let mux = peer_mux(server);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(conn::READ_IDLE);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(conn::PING_INTERVAL)
        .keep_alive_timeout(conn::PING_TIMEOUT);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut accept_stop = stop.clone();
    crate::api::mux::accept_loop(&listener, &mut accept_stop, &errors, "peer", |tcp, peer| {
        let (builder, svc, watcher, tls) = (builder.clone(), mux.clone(), graceful.watcher(), tls.clone());
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let tcp = PeerConn::new(tcp);
            let io: Box<dyn crate::raft::dial::PeerIo> = match tls {
                None => Box::new(tcp),
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                    let stream = tokio::select! {
                        _ = stop.wait_for(|stopped| *stopped) => return,
                        stream = handshake => stream,
                    };
                    match stream {
                        Ok(Ok(s)) => Box::new(s),
                        Ok(Err(e)) => {
                            return tracing::warn!(%peer, %e, "rejected peer connection: TLS handshake failed")
                        }
                        Err(_) => return tracing::warn!(%peer, "rejected peer connection: TLS handshake timed out"),
                    }
                }
            };
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(svc));
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, %e, "peer connection ended with an error");
            }
        });
    })
    .await;
    drop(listener);
    graceful.shutdown().await;
}

//! The peer service (`modkvpb.Peer`) on `--listen-peer-urls`: raft messages from the other members,
//! the member list for a joining member, and the requests only the leader can serve (membership
//! changes, lease keep-alives) forwarded by followers.
//!
//! ```text
//!   serve: accept ─▶ PeerConn (read / write timeouts, abortive close) ─▶ TLS for https ─▶ h2 (pings)
//!   Send / Stream batch ─▶ raft::transport::Receiver: cluster, sender and receiver checked, each
//!                          message checked (raft::check), older-term proposals dropped ─▶ raft step
//!   Members ─▶ the member list (a joining member asks)
//!   ChangeMembers / LeaseRenew / LeaseTimeToLive ─▶ cluster checked, leader only, not of an older term
//!                          ─▶ server::v3::PeerRequests
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

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::proto::modkvpb::peer_server::{Peer, PeerServer};
use crate::proto::modkvpb::{
    LeaseRenewRequest, LeaseRenewResponse, MemberChangeRequest, MemberChangeResponse, MembersRequest, MembersResponse,
    MessageBatch, SendResponse,
};
use crate::raft::conn::{self, PeerConn};
use crate::raft::transport::{Receiver, Refusal};
use crate::raft::MAX_PEER_MESSAGE;
use crate::server::v3::PeerRequests;

/// The peer service: raft messages go to the transport's receiver, the rest to the server.
#[derive(Clone)]
pub struct PeerService {
    raft: Receiver,
    server: Arc<dyn PeerRequests>,
    /// Turns true when the member stops: open streams end then, so they do not hold up the drain.
    stop: watch::Receiver<bool>,
}

/// Batches a stream may have stepped but not yet acknowledged.
const STREAM_ACKS: usize = 64;

fn refused(r: Refusal) -> Status {
    match r {
        Refusal::Precondition(msg) => Status::failed_precondition(msg),
        Refusal::Invalid(msg) => Status::invalid_argument(msg),
        Refusal::Stopped => Error::Stopped.into(),
    }
}

impl PeerService {
    async fn accept(&self, b: MessageBatch) -> Result<(), Status> {
        self.raft.accept(b).await.map_err(refused)
    }

    /// Refuses a request forwarded by a member in an older term than this one's (0: not said).
    fn check_term(&self, term: u64) -> Result<(), Status> {
        if term != 0 && term < self.server.term() {
            return Err(Error::LeaderChanged.into());
        }
        Ok(())
    }

    fn check_cluster(&self, cluster_id: u64) -> Result<(), Status> {
        self.raft.check_cluster(cluster_id, 0).map_err(refused)
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
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            tokio::pin!(stopped);
            // Ends when the sender closes the stream or goes away; a refused batch ends it with the
            // refusal (the sender reports it as for Send); the member stopping ends it with
            // `server stopped` (the sender redials, as after any broken stream).
            loop {
                let next = tokio::select! {
                    () = &mut stopped => {
                        let _ = acks.send(Err(Error::Stopped.into())).await;
                        break;
                    }
                    next = batches.message() => next,
                };
                let Ok(Some(b)) = next else { break };
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
        let members_json = serde_json::to_vec(&self.server.members()).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(MembersResponse { cluster_id: self.server.cluster_id(), members_json }))
    }

    async fn change_members(
        &self,
        req: Request<MemberChangeRequest>,
    ) -> Result<Response<MemberChangeResponse>, Status> {
        let r = req.into_inner();
        self.check_cluster(r.cluster_id)?;
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
        self.check_cluster(r.cluster_id)?;
        self.leader_only()?;
        let r = r.request.ok_or_else(|| Status::invalid_argument("no lease in the request"))?;
        Ok(Response::new(self.server.lease_time_to_live_here(&r)))
    }

    async fn lease_renew(&self, req: Request<LeaseRenewRequest>) -> Result<Response<LeaseRenewResponse>, Status> {
        let r = req.into_inner();
        self.check_cluster(r.cluster_id)?;
        self.leader_only()?;
        self.check_term(r.term)?;
        Ok(Response::new(LeaseRenewResponse { ttl: self.server.lease_renew_here(r.id)? }))
    }
}

/// What a peer port serves: the peer service over h2 (anything else gets 404).
fn peer_mux(raft: Receiver, server: Arc<dyn PeerRequests>, stop: watch::Receiver<bool>) -> super::mux::Mux {
    let svc = PeerServer::new(PeerService { raft, server, stop })
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
    raft: Receiver,
    server: Arc<dyn PeerRequests>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: watch::Receiver<bool>,
    errors: crate::fatal::Reporter,
) {
    let mux = peer_mux(raft, server, stop.clone());
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
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, %e, "peer connection ended with an error");
            }
        });
    })
    .await;
    drop(listener);
    graceful.shutdown().await;
}

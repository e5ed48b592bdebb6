//! `etcdserverpb.Lease` forwarded: grant, revoke, time-to-live (the attached keys seen through the
//! namespace) and leases as unary calls; each client's keep-alive stream has an upstream stream of its
//! own, reopened on another member when its member fails (keep-alives can be repeated safely).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::namespace::Namespace;
use super::upstream::{is_transport_failure, token_of, with_token, Retry, Token, Upstream};
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::*;

/// Answers buffered towards one client stream.
const OUT_BUFFER: usize = 16;
/// Pause before reopening a failed upstream stream.
const REOPEN_PAUSE: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct LeaseProxy {
    pub up: Arc<Upstream>,
    pub ns: Namespace,
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseProxy {
    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        let token = token_of(&req);
        let r = req.into_inner();
        Ok(Response::new(forward!(self.up, Retry::IfNotSent, LeaseClient, lease_grant, r, token)?))
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        let token = token_of(&req);
        let r = req.into_inner();
        Ok(Response::new(forward!(self.up, Retry::IfNotSent, LeaseClient, lease_revoke, r, token)?))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let token = token_of(&req);
        let requests = req.into_inner().filter_map(|r| futures::future::ready(r.ok()));
        let (tx, rx) = mpsc::channel(OUT_BUFFER);
        tokio::spawn(keep_alive(self.up.clone(), token, Box::pin(requests), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let token = token_of(&req);
        let r = req.into_inner();
        let mut resp = forward!(self.up, Retry::Always, LeaseClient, lease_time_to_live, r, token)?;
        self.ns.lease_keys(&mut resp.keys);
        Ok(Response::new(resp))
    }

    async fn lease_leases(&self, req: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        let token = token_of(&req);
        let r = req.into_inner();
        Ok(Response::new(forward!(self.up, Retry::Always, LeaseClient, lease_leases, r, token)?))
    }
}

/// One client's keep-alives: its requests go up the current upstream stream, the answers come back; a
/// failed member's stream is reopened on the next one. Ends when the client goes, or when it has ended
/// its requests and every one is answered.
pub async fn keep_alive(
    up: Arc<Upstream>,
    token: Token,
    mut requests: Pin<Box<dyn Stream<Item = LeaseKeepAliveRequest> + Send>>,
    tx: mpsc::Sender<Result<LeaseKeepAliveResponse, Status>>,
) {
    let mut client_done = false;
    loop {
        let (url, channel) = up.channel();
        let (utx, urx) = mpsc::channel::<LeaseKeepAliveRequest>(OUT_BUFFER);
        let mut client = LeaseClient::new(channel).max_decoding_message_size(up.max_recv);
        let mut utx = (!client_done).then_some(utx);
        let opened = tokio::select! {
            opened = client.lease_keep_alive(with_token(ReceiverStream::new(urx), &token)) => opened,
            _ = tx.closed() => return,
        };
        let mut answers = match opened {
            Ok(s) => s.into_inner(),
            Err(s) if is_transport_failure(&s) => {
                up.failed(&url);
                tokio::time::sleep(REOPEN_PAUSE).await;
                continue;
            }
            Err(s) => {
                let _ = tx.send(Err(s)).await;
                return;
            }
        };
        loop {
            tokio::select! {
                next = requests.next(), if utx.is_some() => match next {
                    Some(r) => {
                        if let Some(u) = &utx {
                            let _ = u.send(r).await;
                        }
                    }
                    None => {
                        client_done = true;
                        utx = None;
                    }
                },
                answer = answers.next() => match answer {
                    Some(Ok(a)) => {
                        if tx.send(Ok(a)).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(s)) if is_transport_failure(&s) => {
                        up.failed(&url);
                        break;
                    }
                    Some(Err(s)) => {
                        let _ = tx.send(Err(s)).await;
                        return;
                    }
                    None if client_done => return,
                    None => {
                        up.failed(&url);
                        break;
                    }
                },
                _ = tx.closed() => return,
            }
        }
        tokio::time::sleep(REOPEN_PAUSE).await;
    }
}

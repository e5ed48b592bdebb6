//! `etcdserverpb.Lease` forwarded: grant, revoke, time-to-live (the attached keys seen through the
//! namespace) and leases as unary calls; the keep-alive streams of each caller share one upstream stream
//! (see [`super::keepalive`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::keepalive::KeepAlives;
use super::namespace::Namespace;
use super::upstream::{token_of, Retry, Token, Upstream};
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::*;

/// Answers buffered towards one client stream.
pub const OUT_BUFFER: usize = 16;

#[derive(Clone)]
pub struct LeaseProxy {
    pub up: Arc<Upstream>,
    pub ns: Namespace,
    pub keep_alives: Arc<KeepAlives>,
}

impl LeaseProxy {
    pub fn new(up: Arc<Upstream>, ns: Namespace) -> LeaseProxy {
        LeaseProxy { keep_alives: KeepAlives::new(up.clone()), up, ns }
    }

    /// One client's keep-alive stream over its caller's shared upstream stream: `requests` in, the
    /// answers (or the error that ends it) out to `tx`.
    pub fn keep_alive(
        &self,
        token: Token,
        requests: Pin<Box<dyn Stream<Item = LeaseKeepAliveRequest> + Send>>,
        tx: mpsc::Sender<Result<LeaseKeepAliveResponse, Status>>,
    ) -> impl Future<Output = ()> + Send + 'static {
        super::keepalive::client_stream(self.keep_alives.clone(), token, requests, tx)
    }
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
        tokio::spawn(self.keep_alive(token, Box::pin(requests), tx));
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

//! `v3lockpb.Lock` forwarded; under a namespace the lock's name and key are prefixed on the way in and
//! stripped on the way out (etcd's proxy passes them as they are, outside its namespace).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::namespace::Namespace;
use super::upstream::{token_of, Retry, Upstream};
use crate::proto::v3lockpb::lock_client::LockClient;
use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

#[derive(Clone)]
pub struct LockProxy {
    pub up: Arc<Upstream>,
    pub ns: Namespace,
}

#[tonic::async_trait]
impl Lock for LockProxy {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let token = token_of(&req);
        let mut r = req.into_inner();
        self.ns.key(&mut r.name);
        let mut resp = forward!(self.up, Retry::IfNotSent, LockClient, lock, r, token)?;
        self.ns.strip(&mut resp.key);
        Ok(Response::new(resp))
    }

    async fn unlock(&self, req: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let token = token_of(&req);
        let mut r = req.into_inner();
        self.ns.key(&mut r.key);
        Ok(Response::new(forward!(self.up, Retry::IfNotSent, LockClient, unlock, r, token)?))
    }
}

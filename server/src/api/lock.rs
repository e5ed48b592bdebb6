//! The Lock service (`v3lockpb.Lock`): `Lock` blocks until the named lock is held for the given lease
//! and returns its key; `Unlock` deletes that key (see `server::lock` for the recipe).
//!
//! etcd's lock service makes its requests through a client of its own, whose errors reach the caller
//! as `Unknown` with etcd's message (e.g. `etcdserver: requested lease not found`): so do these.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::client_error;

use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use crate::server::v3::Locks;

#[derive(Clone)]
pub struct LockService {
    pub server: Arc<dyn Locks>,
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let LockRequest { name, lease } = req.into_inner();
        let (header, key) = self.server.clone().lock(name, lease).await.map_err(client_error)?;
        Ok(Response::new(LockResponse { header: Some(header), key }))
    }

    async fn unlock(&self, req: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let header = self.server.unlock(req.into_inner().key).await.map_err(client_error)?;
        Ok(Response::new(UnlockResponse { header: Some(header) }))
    }
}

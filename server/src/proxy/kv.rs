//! `etcdserverpb.KV` forwarded: range, put, delete, txn and compact go to the pinned member with the
//! caller's token, under the namespace; the member's errors come back unchanged. Puts (a txn's too) go
//! through the proxy's pre-put hooks first, on the client's keys (`edge`).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::namespace::Namespace;
use super::upstream::{token_of, Retry, Token, Upstream};
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};

#[derive(Clone)]
pub struct KvProxy {
    pub up: Arc<Upstream>,
    pub ns: Namespace,
    /// Serializable ranges (see [`super::cache`]).
    pub cache: Arc<super::cache::ReadCache>,
    /// The proxy's plugins (`--plugin-dir`): their pre-put hooks run before a put is forwarded.
    pub plugins: Arc<crate::plugin::Plugins>,
}

impl KvProxy {
    /// A put for the caller whose token is `token`, made by the plugins in `chain` (their host `put`;
    /// empty for a client's): the hooks of the other plugins check or rewrite it on the client's key,
    /// then it is forwarded under the namespace. An empty key is left for the member to refuse, a write
    /// to a readonly proxy for [`Upstream::unary`].
    pub async fn put_by(&self, mut r: PutRequest, token: Token, chain: &[Arc<str>]) -> Result<PutResponse, Status> {
        if !r.key.is_empty() && !self.up.readonly() {
            self.plugins.pre_put_for(&mut r, false, chain, &super::edge::caller(&token)).await?;
        }
        self.ns.put(&mut r);
        let mut resp = forward!(self.up, Retry::IfNotSent, KvClient, put, r, token)?;
        self.ns.put_response(&mut resp);
        Ok(resp)
    }
}

/// Whether a txn only reads (it may then be repeated on another member).
fn read_only(t: &TxnRequest) -> bool {
    use crate::proto::etcdserverpb::request_op::Request as Op;
    t.success.iter().chain(t.failure.iter()).all(|op| match &op.request {
        Some(Op::RequestRange(_)) | None => true,
        Some(Op::RequestTxn(t)) => read_only(t),
        _ => false,
    })
}

#[tonic::async_trait]
impl Kv for KvProxy {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let token = token_of(&req);
        let mut r = req.into_inner();
        self.ns.range(&mut r);
        let key = super::cache::ReadCache::key(&r, &token);
        let cached = key.as_ref().and_then(|k| self.cache.get(k));
        let mut resp = match cached {
            Some(resp) => resp,
            None => {
                let resp = forward!(self.up, Retry::Always, KvClient, range, r, token);
                match (key, &resp) {
                    (Some(k), Ok(answer)) => self.cache.put(k, &r, answer, &token, &self.up),
                    (Some(_), Err(e)) => self.cache.refused(&token, e),
                    (None, _) => {}
                }
                resp?
            }
        };
        self.ns.range_response(&mut resp);
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let token = token_of(&req);
        Ok(Response::new(self.put_by(req.into_inner(), token, &[]).await?))
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        let token = token_of(&req);
        let mut r = req.into_inner();
        self.ns.delete(&mut r);
        let mut resp = forward!(self.up, Retry::IfNotSent, KvClient, delete_range, r, token)?;
        self.ns.delete_response(&mut resp);
        Ok(Response::new(resp))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let token = token_of(&req);
        let mut r = req.into_inner();
        let retry = if read_only(&r) { Retry::Always } else { Retry::IfNotSent };
        if retry == Retry::IfNotSent && !self.up.readonly() {
            super::edge::pre_put_txn(&self.plugins, &mut r, &super::edge::caller(&token)).await?;
        }
        self.ns.txn(&mut r);
        let mut resp = forward!(self.up, retry, KvClient, txn, r, token)?;
        self.ns.txn_response(&mut resp);
        Ok(Response::new(resp))
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let token = token_of(&req);
        let r = req.into_inner();
        let resp = forward!(self.up, Retry::IfNotSent, KvClient, compact, r, token)?;
        Ok(Response::new(resp))
    }
}

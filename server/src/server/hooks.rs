//! The pre-put hook as the server sees it: something that may check or rewrite a put before it is
//! proposed. The server defines the trait; the plugin layer implements it (`plugin::Plugins`), so the
//! server never depends on plugins.
//!
//! ```text
//!   put / txn ──▶ validate ──▶ PrePut::pre_put (each put; a txn's both branches, nested too) ──▶ propose
//! ```

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::error::Result;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{PutRequest, TxnRequest};

/// Checks or rewrites puts before they are proposed.
pub trait PrePut: Send + Sync {
    /// Whether any hook may run at all (a txn is not walked when none can).
    fn active(&self) -> bool;

    /// Runs the hooks for `r`, skipping those named in `chain` (the plugins whose own `put` this is). A
    /// rewrite replaces `r.value`; a refusal is the request's error.
    fn pre_put<'a>(&'a self, r: &'a mut PutRequest, in_txn: bool, chain: &'a [Arc<str>]) -> BoxFuture<'a, Result<()>>;
}

/// No hooks: every put goes through as it is.
pub struct NoHooks;

impl PrePut for NoHooks {
    fn active(&self) -> bool {
        false
    }

    fn pre_put<'a>(&'a self, _: &'a mut PutRequest, _: bool, _: &'a [Arc<str>]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Runs the hooks for every put of `t`, in order: both branches (which one runs is only known at apply,
/// and the log must only ever hold final values), nested txns included.
pub async fn pre_put_txn(hooks: &dyn PrePut, t: &mut TxnRequest, chain: &[Arc<str>]) -> Result<()> {
    if !hooks.active() {
        return Ok(());
    }
    for op in t.success.iter_mut().chain(t.failure.iter_mut()) {
        match &mut op.request {
            Some(Op::RequestPut(p)) => hooks.pre_put(p, true, chain).await?,
            Some(Op::RequestTxn(n)) => Box::pin(pre_put_txn(hooks, n, chain)).await?,
            _ => {}
        }
    }
    Ok(())
}

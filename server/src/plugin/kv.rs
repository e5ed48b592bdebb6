//! What the host's KV imports act on: [`PluginKv`], implemented here by the member's own server and by a
//! proxy's forwarding to its cluster (`proxy::edge`), so the plugin layer reads and writes through either
//! without depending on the proxy.
//!
//! ```text
//!   host import        member (EtcdServer, below)                  proxy (proxy::edge)
//!   range/put/delete   as the member (auth::member());             the caller's token passed on (the
//!                      a put runs the hooks not in its chain       proxy holds no credentials); under
//!                                                                  --namespace; the proxy's hooks not in
//!                                                                  the chain run before forwarding
//!   range-for-caller   as the caller: whole / readable parts       the caller's token passed on: the
//!                      (`caller`)                                  cluster checks it
//! ```
//!
//! Errors are the text a plugin is handed: etcd's message (`etcdserver: …`), as the member or the cluster
//! gave it.

use std::sync::{Arc, Weak};

use futures::future::BoxFuture;

use super::caller::{as_plugin, range_readable, Caller};
use super::host::wit::CallerScope;
use crate::auth::with_caller;
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
};
use crate::server::EtcdServer;

/// The key space a plugin's host KV calls reach; `caller` is who the running plugin call serves.
pub trait PluginKv: Send + Sync {
    /// The plugin's own read (its grants are checked before).
    fn kv_range(&self, r: RangeRequest, caller: Caller) -> BoxFuture<'_, Result<RangeResponse, String>>;

    /// A read for the caller: all of it or an error (`whole`), or only the parts they may read.
    fn kv_range_for_caller(
        &self,
        r: RangeRequest,
        scope: CallerScope,
        caller: Caller,
    ) -> BoxFuture<'_, Result<RangeResponse, String>>;

    /// The plugin's own put; the pre-put hooks of the plugins in `chain` (this one last) are skipped.
    fn kv_put(&self, r: PutRequest, chain: Vec<Arc<str>>, caller: Caller)
        -> BoxFuture<'_, Result<PutResponse, String>>;

    /// The plugin's own delete.
    fn kv_delete(&self, r: DeleteRangeRequest, caller: Caller) -> BoxFuture<'_, Result<DeleteRangeResponse, String>>;
}

/// No key space at all (`modkv plugin check`, which only loads a plugin): every call fails.
pub fn detached() -> Weak<dyn PluginKv> {
    Weak::<EtcdServer>::new()
}

/// On a member: the plugin's own calls run with the member's authority, bounded by its grants; reads
/// for the caller run as the caller, so the server's own permission check applies.
impl PluginKv for EtcdServer {
    fn kv_range(&self, r: RangeRequest, _: Caller) -> BoxFuture<'_, Result<RangeResponse, String>> {
        Box::pin(async move { as_plugin(self.range(r)).await.map_err(|e| e.to_string()) })
    }

    fn kv_range_for_caller(
        &self,
        r: RangeRequest,
        scope: CallerScope,
        caller: Caller,
    ) -> BoxFuture<'_, Result<RangeResponse, String>> {
        Box::pin(async move {
            let resp = match scope {
                CallerScope::Whole => with_caller(caller.user, self.range(r)).await,
                CallerScope::Readable => with_caller(caller.user, range_readable(self, r)).await,
            };
            resp.map_err(|e| e.to_string())
        })
    }

    fn kv_put(&self, r: PutRequest, chain: Vec<Arc<str>>, _: Caller) -> BoxFuture<'_, Result<PutResponse, String>> {
        Box::pin(async move { as_plugin(self.put_by(r, &chain)).await.map_err(|e| e.to_string()) })
    }

    fn kv_delete(&self, r: DeleteRangeRequest, _: Caller) -> BoxFuture<'_, Result<DeleteRangeResponse, String>> {
        Box::pin(async move { as_plugin(self.delete_range(r)).await.map_err(|e| e.to_string()) })
    }
}

//! Plugins at the edge: `--plugin-dir` on a proxy works as on a member, so a team can put policy in
//! front of a cluster it does not own (its routes, its pre-put hook before forwarding, its metrics).
//!
//! ```text
//!   HTTP  a path no built-in endpoint serves ─▶ serve_route: the plugin whose route covers it; its
//!         Authorization token checked with the cluster (invalid: 401 as the gateway answers), then
//!         kept as the caller's token, never handed to the plugin
//!   KV    put, and each put of a txn (both branches, nested) ─▶ pre-put hooks on the client's keys
//!         (before --namespace) ─▶ forwarded; a refusal is the member's own error (code and message)
//!   host  range / put / delete / range-for-caller ─▶ EdgeKv ─▶ the proxy's KV service with the
//!         caller's token: namespace, read cache, `--proxy readonly` as for a client; a plugin's put
//!         skips the hooks of its chain, as on a member
//!   /metrics  the proxy's `modkv_plugin_*` families (calls, errors, traps, latency, the plugins' own)
//! ```
//!
//! The proxy resolves no tokens (it has no auth store, and etcd 3.4 has no call that names a token's
//! user): a plugin on a proxy is told no caller name, and every KV call it makes, its own included,
//! carries the token of the request it serves, so the cluster's permissions bound it as well as its
//! grants (anonymous, and refused while auth is on, when the request had none).

use std::path::Path;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use tonic::metadata::AsciiMetadataValue;
use tonic::{Request, Status};

use super::kv::KvProxy;
use super::upstream::{with_token, Retry, Token, Upstream};
use crate::metrics::Metrics;
use crate::plugin::caller::Caller;
use crate::plugin::host::wit::CallerScope;
use crate::plugin::kv::PluginKv;
use crate::plugin::{PluginHost, Plugins};
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest,
};

/// The plugin layer of a running proxy.
pub struct Edge {
    pub plugins: Arc<Plugins>,
    /// The plugins' metrics (`None` without `--plugin-dir`).
    pub metrics: Option<Arc<Metrics>>,
    host: Option<PluginHost>,
    /// What the host KV imports act on; the plugin layer holds it weakly.
    _kv: Option<Arc<EdgeKv>>,
}

impl Edge {
    /// No plugins: hooks never run, no path is a plugin's.
    pub fn none(plugins: Arc<Plugins>) -> Edge {
        Edge { plugins, metrics: None, host: None, _kv: None }
    }

    /// Loads `dir` into `plugins` (whose hooks `kv` already runs) before the proxy serves anyone, then
    /// watches it (hot reload, SIGHUP) as a member does; compiled components are kept under
    /// `data_dir/plugin-cache`.
    pub async fn start(plugins: Arc<Plugins>, kv: KvProxy, dir: &Path, data_dir: &Path) -> Result<Edge, String> {
        let metrics = Metrics::new(0);
        let kv = Arc::new(EdgeKv { kv });
        let host = crate::plugin::start(&plugins, &kv, metrics.clone(), dir, Some(data_dir.join("plugin-cache")))
            .await
            .map_err(|e| format!("--plugin-dir {}: {e}", dir.display()))?;
        Ok(Edge { plugins, metrics: Some(metrics), host: Some(host), _kv: Some(kv) })
    }

    /// Stops watching the plugin dir and the engine's ticker.
    pub async fn stop(self) {
        if let Some(host) = self.host {
            host.stop().await;
        }
    }
}

/// The caller of a request the proxy serves, as a plugin call knows it.
pub fn caller(token: &Token) -> Caller {
    Caller { user: None, token: token.as_ref().and_then(|t| t.to_str().ok()).map(str::to_owned) }
}

fn token(caller: &Caller) -> Token {
    caller.token.as_deref().and_then(|t| AsciiMetadataValue::try_from(t).ok())
}

/// Runs the hooks on every put of `t` for `caller`, as a member does before proposing it.
pub async fn pre_put_txn(plugins: &Plugins, t: &mut TxnRequest, caller: &Caller) -> Result<(), Status> {
    let hooks = ForCaller { plugins, caller };
    crate::server::hooks::pre_put_txn(&hooks, t, &[]).await.map_err(Status::from)
}

/// The plugins' pre-put hook for one caller (the server layer's walk of a txn takes a `PrePut`).
struct ForCaller<'c> {
    plugins: &'c Plugins,
    caller: &'c Caller,
}

impl crate::server::hooks::PrePut for ForCaller<'_> {
    fn active(&self) -> bool {
        crate::server::hooks::PrePut::active(self.plugins)
    }

    fn pre_put<'a>(
        &'a self,
        r: &'a mut PutRequest,
        in_txn: bool,
        chain: &'a [Arc<str>],
    ) -> BoxFuture<'a, crate::error::Result<()>> {
        Box::pin(self.plugins.pre_put_for(r, in_txn, chain, self.caller))
    }
}

/// The host KV imports on a proxy: the proxy's own KV service, called with the caller's token.
struct EdgeKv {
    kv: KvProxy,
}

fn message(s: Status) -> String {
    s.message().to_owned()
}

impl PluginKv for EdgeKv {
    fn kv_range(&self, r: RangeRequest, caller: Caller) -> BoxFuture<'_, Result<RangeResponse, String>> {
        Box::pin(async move {
            let resp = self.kv.range(with_token(r, &token(&caller))).await.map_err(message)?;
            Ok(resp.into_inner())
        })
    }

    /// Both scopes read the whole range with the caller's token: the proxy cannot split a range by
    /// permissions it does not know, so a caller who may not read all of it gets the cluster's refusal.
    fn kv_range_for_caller(
        &self,
        r: RangeRequest,
        _: CallerScope,
        caller: Caller,
    ) -> BoxFuture<'_, Result<RangeResponse, String>> {
        self.kv_range(r, caller)
    }

    fn kv_put(
        &self,
        r: PutRequest,
        chain: Vec<Arc<str>>,
        caller: Caller,
    ) -> BoxFuture<'_, Result<PutResponse, String>> {
        Box::pin(async move { self.kv.put_by(r, token(&caller), &chain).await.map_err(message) })
    }

    fn kv_delete(&self, r: DeleteRangeRequest, caller: Caller) -> BoxFuture<'_, Result<DeleteRangeResponse, String>> {
        Box::pin(async move {
            let resp = self.kv.delete_range(with_token(r, &token(&caller))).await.map_err(message)?;
            Ok(resp.into_inner())
        })
    }
}

/// A path none of the proxy's own endpoints serves: the plugin route covering it, else Go's 404. The
/// `Authorization` header is taken off the request (a plugin learns who is calling, never the
/// credential); a token the cluster calls invalid is answered as the gateway answers it (401,
/// `etcdserver: invalid auth token`) and the plugin is not called, as on a member.
pub async fn serve_route(plugins: Arc<Plugins>, up: Arc<Upstream>, mut req: axum::extract::Request) -> Response {
    if !plugins.serves(req.uri().path()) {
        return not_found();
    }
    let token: Token =
        req.headers_mut().remove(header::AUTHORIZATION).and_then(|v| AsciiMetadataValue::try_from(v.as_bytes()).ok());
    if let Some(refused) = token_refused(&up, &token).await {
        let body = crate::api::gateway::json::error_body(refused.code(), refused.message());
        let status = crate::api::gateway::json::http_status(refused.code());
        return (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    match plugins.serve_http(req, caller(&token)).await {
        Some(resp) => resp,
        None => not_found(),
    }
}

/// The cluster's refusal of `token` itself (an invalid or expired one), asked with a count-only read:
/// a member checks a request's token before its permissions, and not at all while auth is off.
async fn token_refused(up: &Upstream, token: &Token) -> Option<Status> {
    token.as_ref()?;
    let r = RangeRequest { key: b"\0".to_vec(), count_only: true, serializable: true, ..Default::default() };
    let read = up.unary(Retry::Always, |ch| {
        let req: Request<RangeRequest> = with_token(r.clone(), token);
        async move { KvClient::new(ch).range(req).await }
    });
    match read.await {
        Err(s) if s.code() == tonic::Code::Unauthenticated => Some(s),
        _ => None,
    }
}

/// What Go's HTTP server answers for a path nobody serves.
pub fn not_found() -> Response {
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "404 page not found\n")
        .into_response()
}

//! The hook points: HTTP routes on the client port and the pre-put hook.
//!
//! Pre-put runs on the member that received the request, before the proposal: for a plain Put, and for
//! every put of a write Txn (both branches, nested txns included: which branch runs is only known at
//! apply, and the log must only ever hold final values). Hooks run in file-name order; a rewrite is
//! what the next hook sees; the first rejection fails the request. A put whose `ignore_value` is set
//! keeps the stored value and is not hooked. A hook is told the request's caller (none for a plugin's
//! own put); a route the caller its `Authorization` header names, resolved by the api layer. A proxy
//! (`proxy::edge`) runs the same hooks before forwarding, with the caller it has: the token, no user.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderName, HeaderValue, StatusCode};

use super::caller::Caller;
use super::config::FailureMode;
use super::host::{wit, CallError};
use super::Plugins;
use crate::error::Error;
use crate::metrics::plugin::CallOutcome;
use crate::proto::etcdserverpb::PutRequest;

/// Largest request body handed to a plugin route.
const MAX_HTTP_BODY: usize = 4 << 20;
/// Longest rejection message passed on to the client.
const MAX_REJECTION: usize = 1024;

impl crate::server::hooks::PrePut for Plugins {
    fn active(&self) -> bool {
        self.registry.load().any_hooks
    }

    fn pre_put<'a>(
        &'a self,
        r: &'a mut PutRequest,
        in_txn: bool,
        chain: &'a [Arc<str>],
    ) -> futures::future::BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.run_pre_put(r, in_txn, chain))
    }
}

impl Plugins {
    /// Runs the pre-put hooks for `r` (in file-name order), skipping the plugins in `chain` (those whose
    /// host `put` this is), for the request's caller on a member. A rewrite replaces `r.value`.
    pub async fn run_pre_put(&self, r: &mut PutRequest, in_txn: bool, chain: &[Arc<str>]) -> Result<(), Error> {
        // A plugin's own put (through its host `put`) runs as the member, and is no user's.
        let user = if chain.is_empty() { crate::auth::caller().filter(|c| !c.user.is_empty()) } else { None };
        self.pre_put_for(r, in_txn, chain, &Caller::resolved(user)).await
    }

    /// [`Plugins::run_pre_put`] for `caller` (what a proxy knows of the caller: the token).
    pub async fn pre_put_for(
        &self,
        r: &mut PutRequest,
        in_txn: bool,
        chain: &[Arc<str>],
        caller: &Caller,
    ) -> Result<(), Error> {
        if r.ignore_value || !self.registry.load().any_hooks {
            return Ok(());
        }
        let Some(host) = self.host.get() else { return Ok(()) };
        let registry = self.registry.load_full();
        for p in registry.plugins.iter().filter(|p| p.hooks(&r.key)) {
            if chain.iter().any(|c| **c == *p.info.name) {
                continue;
            }
            let req = wit::PutRequest {
                key: r.key.clone(),
                value: r.value.clone(),
                lease: r.lease,
                in_txn,
                caller: caller.name(),
            };
            let started = Instant::now();
            let result = p.instances.pre_put(&host.runtime, &p.pre, &p.info, chain, caller, &req).await;
            let outcome = result.as_ref().map_or_else(CallError::outcome, |_| CallOutcome::Ok);
            host.metrics.plugins().observe_call(p.name(), "pre_put", started.elapsed(), outcome);
            match result {
                Ok(wit::PutDecision::Allow) => {}
                Ok(wit::PutDecision::Rewrite(v)) => r.value = v,
                Ok(wit::PutDecision::Reject(message)) => {
                    let message = super::host::truncate(&message, MAX_REJECTION);
                    return Err(Error::PluginRejected { plugin: p.name().to_string(), message });
                }
                Err(e) => match p.info.config.failure_mode {
                    FailureMode::FailOpen => {
                        tracing::warn!(plugin = %p.name(), error = %e, "pre-put hook failed; put allowed (fail-open)");
                    }
                    FailureMode::FailClosed => {
                        tracing::warn!(plugin = %p.name(), error = %e, "pre-put hook failed; put refused (fail-closed)");
                        return Err(Error::PluginFailed { plugin: p.name().to_string(), reason: e.to_string() });
                    }
                },
            }
        }
        Ok(())
    }

    /// Whether a plugin serves `path` now.
    pub fn serves(&self, path: &str) -> bool {
        self.registry.load().route(path).is_some()
    }

    /// Serves `req`, sent by `caller`, if its path is under a plugin's route; `None` otherwise (the
    /// caller answers 404). A plugin that fails answers 500 with a body naming it.
    pub async fn serve_http(&self, req: axum::extract::Request, caller: Caller) -> Option<Response> {
        let registry = self.registry.load_full();
        let p = registry.route(req.uri().path())?.clone();
        let host = self.host.get()?;
        let (parts, body) = req.into_parts();
        let body = match axum::body::to_bytes(body, MAX_HTTP_BODY).await {
            Ok(b) => b,
            Err(_) => return Some(text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n".into())),
        };
        let wreq = wit::HttpRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or("").to_string(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
            body: body.to_vec(),
            caller: caller.name(),
        };
        let started = Instant::now();
        let result = p
            .instances
            .handle_http(&host.runtime, &p.pre, &p.info, &caller, &wreq)
            .await
            .and_then(|r| response(r, p.info.config.response_bytes).map_err(CallError::Failed));
        let outcome = result.as_ref().map_or_else(CallError::outcome, |_| CallOutcome::Ok);
        host.metrics.plugins().observe_call(p.name(), "http", started.elapsed(), outcome);
        Some(match result {
            Ok(resp) => resp,
            Err(e) => {
                tracing::warn!(plugin = %p.name(), path = %wreq.path, error = %e, "plugin route failed");
                text(StatusCode::INTERNAL_SERVER_ERROR, format!("plugin {} failed: {e}\n", p.name()))
            }
        })
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// A plugin's response as an HTTP response; an error says what about it is invalid.
fn response(r: wit::HttpResponse, max_body: u64) -> Result<Response, String> {
    let status = StatusCode::from_u16(r.status).map_err(|_| format!("invalid HTTP status {}", r.status))?;
    if r.body.len() as u64 > max_body {
        return Err(format!("response body of {} bytes exceeds the limit of {max_body} bytes", r.body.len()));
    }
    let mut resp = Response::new(Body::from(r.body));
    *resp.status_mut() = status;
    for (k, v) in r.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("invalid header name {k:?}"))?;
        let value = HeaderValue::from_str(&v).map_err(|_| format!("invalid value for header {k}"))?;
        resp.headers_mut().append(name, value);
    }
    Ok(resp)
}

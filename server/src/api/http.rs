//! Plain HTTP endpoints of the client port: `/health`, `/version` and `/metrics`, as etcd serves them;
//! and the `--listen-metrics-urls` listeners, which serve `/metrics` and `/health` only. Any other path
//! goes to the plugin whose route covers it, as the caller its `Authorization` header names.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use tokio::sync::watch;

use crate::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
use crate::plugin::Plugins;
use crate::server::v3::{Auth, Health};
use crate::version::{ETCD_CLUSTER_VERSION, ETCD_VERSION};

/// How long `/health` waits for its quorum read, as etcd does.
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

pub fn router(server: Arc<dyn Health>, auth: Arc<dyn Auth>, plugins: Arc<Plugins>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .with_state(server)
        .method_not_allowed_fallback(|| async { (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n") })
        .fallback(move |req: axum::extract::Request| plugin_or_not_found(plugins.clone(), auth.clone(), req))
}

/// A path no built-in endpoint serves: a plugin's route if one covers it, else 404. While auth is on, the
/// plugin is told the caller the `Authorization` header's token names (raw, as the JSON gateway takes
/// it; none without one), and the header is not passed on: a plugin learns who is calling, it is never
/// handed the user's credential. An invalid or expired token is answered as the gateway answers it (401,
/// `etcdserver: invalid auth token`) and the plugin is not called. While auth is off nothing is looked
/// at and the request goes to the plugin as it came.
async fn plugin_or_not_found(plugins: Arc<Plugins>, auth: Arc<dyn Auth>, mut req: axum::extract::Request) -> Response {
    if !plugins.serves(req.uri().path()) {
        return not_found().await;
    }
    let mut caller = None;
    if auth.enabled() {
        let token = req.headers_mut().remove(header::AUTHORIZATION);
        caller = match super::auth::caller_of(&*auth, token.as_ref().map(|t| t.as_bytes())).await {
            Ok(c) => c,
            Err(e) => {
                let s = tonic::Status::from(e);
                let body = super::gateway::json::error_body(s.code(), s.message());
                let status = super::gateway::json::http_status(s.code());
                return (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
            }
        };
    }
    match plugins.serve_http(req, crate::plugin::caller::Caller::resolved(caller)).await {
        Some(resp) => resp,
        None => not_found().await,
    }
}

/// `/metrics` (any method, as etcd's handler takes): the Prometheus text format, or OpenMetrics when the
/// scraper's `Accept` names it.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        any(move |headers: HeaderMap| {
            let metrics = metrics.clone();
            async move {
                let openmetrics = headers
                    .get_all(header::ACCEPT)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .any(|v| v.contains("application/openmetrics-text"));
                let content_type = if openmetrics { OPENMETRICS_CONTENT_TYPE } else { TEXT_CONTENT_TYPE };
                let body = tokio::task::spawn_blocking(move || metrics.encode(openmetrics)).await.unwrap_or_default();
                ([(header::CONTENT_TYPE, content_type)], body).into_response()
            }
        }),
    )
}

/// Serves `/metrics` and `/health` (plain HTTP/1.1) on a `--listen-metrics-urls` listener until `stop`
/// changes.
pub async fn serve_metrics(
    listener: std::net::TcpListener,
    server: Arc<dyn Health>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    errors: crate::fatal::Reporter,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            let _ = errors.send(crate::fatal::Stop::Failed(format!("metrics listener: {e}")));
            return;
        }
    };
    let app = Router::new().route("/health", get(health)).with_state(server).merge(metrics_router(metrics));
    let stopped = async move {
        let _ = stop.changed().await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
        let _ = errors.send(crate::fatal::Stop::Failed(format!("metrics listener: {e}")));
    }
}

/// What Go's HTTP server answers for a path nobody serves.
async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
        "404 page not found\n",
    )
        .into_response()
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Healthy when a leader is known, no alarm is raised and a linearizable read completes within a second.
async fn health(axum::extract::State(server): axum::extract::State<Arc<dyn Health>>) -> Response {
    if server.healthy(HEALTH_READ_TIMEOUT).await {
        json(StatusCode::OK, r#"{"health":"true"}"#.into())
    } else {
        json(StatusCode::SERVICE_UNAVAILABLE, r#"{"health":"false"}"#.into())
    }
}

async fn version() -> Response {
    json(StatusCode::OK, format!(r#"{{"etcdserver":"{ETCD_VERSION}","etcdcluster":"{ETCD_CLUSTER_VERSION}"}}"#))
}

//! Plain HTTP endpoints of the client port: `/health` and `/version`, as etcd serves them.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::server::{EtcdServer, ETCD_CLUSTER_VERSION, ETCD_VERSION};

/// How long `/health` waits for its quorum read, as etcd does.
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

pub fn router(server: Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .with_state(server)
        .method_not_allowed_fallback(|| async { (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n") })
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Healthy when a leader is known and a linearizable read completes within a second.
async fn health(axum::extract::State(server): axum::extract::State<Arc<EtcdServer>>) -> Response {
    let healthy = server.leader() != 0
        && matches!(tokio::time::timeout(HEALTH_READ_TIMEOUT, server.linearizable_read()).await, Ok(Ok(())));
    if healthy {
        json(StatusCode::OK, r#"{"health":"true"}"#.into())
    } else {
        json(StatusCode::SERVICE_UNAVAILABLE, r#"{"health":"false"}"#.into())
    }
}

async fn version() -> Response {
    json(StatusCode::OK, format!(r#"{{"etcdserver":"{ETCD_VERSION}","etcdcluster":"{ETCD_CLUSTER_VERSION}"}}"#))
}

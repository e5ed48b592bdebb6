//! The proxy's plain HTTP endpoints, on its port and on `--metrics-addr`: `/health` (the cluster answers
//! a quorum read within [`HEALTH_TIMEOUT`]), `/version`, and `/metrics` (the pinned member's metrics, as
//! etcd's proxy passes them on, after the proxy's own, its plugins' included).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Request;

use super::cache::ReadCache;
use super::coalesce::Hub;
use super::upstream::{Retry, Upstream};
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::RangeRequest;
use crate::version::{ETCD_CLUSTER_VERSION, ETCD_VERSION};

/// How long `/health` waits for the cluster's answer (members tried in turn within it).
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long fetching a member's metrics may take.
const METRICS_TIMEOUT: Duration = Duration::from_secs(3);
/// The most bytes of a member's metrics passed on.
const MAX_METRICS_BYTES: u64 = 32 << 20;

/// `/health` and `/metrics` (what `--metrics-addr` serves), and `/version` on the main port.
/// `plugins`: the metrics of the proxy's plugins (`--plugin-dir`).
pub fn router(
    up: Arc<Upstream>,
    hub: Arc<Hub>,
    cache: Arc<ReadCache>,
    plugins: Option<Arc<crate::metrics::Metrics>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    with_version: bool,
) -> Router {
    // The members' TLS for gRPC offers only h2 by ALPN; their metrics are fetched over HTTP/1.1.
    let tls = tls.map(|c| {
        let mut c = (*c).clone();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(c))
    });
    let health_up = up.clone();
    let mut r = Router::new()
        .route("/health", get(move || health(health_up.clone())))
        .route("/metrics", any(move || metrics(up.clone(), hub.clone(), cache.clone(), plugins.clone(), tls.clone())));
    if with_version {
        r = r.route("/version", get(version));
    }
    r
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Healthy when a member answers a linearizable read (which needs a quorum) in time; a refusal of the
/// read (auth on, and the proxy has no credentials) is an answer too: etcd's proxy reports a cluster
/// with auth on unhealthy, a fault not copied.
pub async fn healthy(up: &Upstream) -> bool {
    let read = up.unary(Retry::Always, |ch| async move {
        let req = RangeRequest { key: b"health".to_vec(), count_only: true, ..Default::default() };
        KvClient::new(ch).range(Request::new(req)).await
    });
    match tokio::time::timeout(HEALTH_TIMEOUT, read).await {
        Ok(Ok(_)) => true,
        Ok(Err(s)) => {
            matches!(s.code(), tonic::Code::PermissionDenied | tonic::Code::Unauthenticated)
                || s.message() == "etcdserver: user name is empty"
        }
        Err(_) => false,
    }
}

async fn health(up: Arc<Upstream>) -> Response {
    if healthy(&up).await {
        json(StatusCode::OK, r#"{"health":"true"}"#.into())
    } else {
        json(StatusCode::SERVICE_UNAVAILABLE, "{\"health\":\"false\"}\n".into())
    }
}

async fn version() -> Response {
    json(StatusCode::OK, format!(r#"{{"etcdserver":"{ETCD_VERSION}","etcdcluster":"{ETCD_CLUSTER_VERSION}"}}"#))
}

/// The proxy's own gauges and its plugins' metrics, then the first member's metrics that answers
/// (https members with the proxy's `--cacert`/`--cert`/`--key`, over HTTP/1.1; without the families the proxy serves itself: its cache's, and the
/// plugins' when the proxy has plugins).
async fn metrics(
    up: Arc<Upstream>,
    hub: Arc<Hub>,
    cache: Arc<ReadCache>,
    plugins: Option<Arc<crate::metrics::Metrics>>,
    tls: Option<tokio_rustls::TlsConnector>,
) -> Response {
    let urls = up.urls();
    let mut body = format!(
        "# HELP modkv_proxy_members Members of the cluster the proxy forwards to.\n\
         # TYPE modkv_proxy_members gauge\nmodkv_proxy_members {}\n\
         # HELP modkv_proxy_shared_watches Upstream watches shared by the proxy's watchers that start now.\n\
         # TYPE modkv_proxy_shared_watches gauge\nmodkv_proxy_shared_watches {}\n\
         # HELP modkv_proxy_coalesced_watchers Client watches served by a shared upstream watch.\n\
         # TYPE modkv_proxy_coalesced_watchers gauge\nmodkv_proxy_coalesced_watchers {}\n",
        urls.len(),
        hub.upstream_watches.load(Ordering::Relaxed),
        hub.coalesced_watchers.load(Ordering::Relaxed),
    );
    body.push_str(&cache.metrics_text());
    if let Some(p) = &plugins {
        body.push_str(&p.encode_plugins());
    }
    for url in urls.iter() {
        if let Ok(Ok(m)) = tokio::time::timeout(METRICS_TIMEOUT, fetch_metrics(url, tls.as_ref())).await {
            // etcd's members carry its proxy's cache gauges too (one binary): the proxy's own are served.
            let own: &[&str] = match plugins {
                Some(_) => &["etcd_grpc_proxy_", "modkv_plugin_"],
                None => &["etcd_grpc_proxy_"],
            };
            body.push_str(&crate::metrics::families_without(&m, own));
            break;
        }
    }
    ([(header::CONTENT_TYPE, crate::metrics::TEXT_CONTENT_TYPE)], body).into_response()
}

/// `GET <url>/metrics` over HTTP/1.0 (over TLS with `tls` for an https URL): the body.
async fn fetch_metrics(url: &str, tls: Option<&tokio_rustls::TlsConnector>) -> std::io::Result<String> {
    let invalid = || std::io::Error::from(std::io::ErrorKind::InvalidInput);
    let (host, tls) = match (url.strip_prefix("https://"), tls) {
        (Some(host), Some(tls)) => (host, Some(tls)),
        (Some(_), None) => return Err(invalid()),
        (None, _) => (url.strip_prefix("http://").ok_or_else(invalid)?, None),
    };
    let host = host.trim_end_matches('/');
    let tcp = tokio::net::TcpStream::connect(host).await?;
    match tls {
        None => get_metrics(tcp, host).await,
        Some(tls) => {
            let name = host.rsplit_once(':').map_or(host, |(h, _)| h).trim_matches(['[', ']']).to_owned();
            let name = rustls::pki_types::ServerName::try_from(name).map_err(|_| invalid())?;
            get_metrics(tls.connect(name, tcp).await?, host).await
        }
    }
}

async fn get_metrics(
    mut conn: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    host: &str,
) -> std::io::Result<String> {
    conn.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {host}\r\nAccept: text/plain\r\n\r\n").as_bytes()).await?;
    let mut raw = Vec::new();
    conn.take(MAX_METRICS_BYTES).read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or(std::io::ErrorKind::InvalidData)?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    Ok(body.to_owned())
}

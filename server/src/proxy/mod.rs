//! Proxy mode (etcd's `proxy/grpcproxy`): `modkv grpc-proxy start` serves etcd's v3 API to clients and
//! forwards every call to a cluster's members, instead of being a member itself.
//!
//! ```text
//!   client ──▶ mux (api::mux: gRPC + HTTP on --listen-addr, TLS with --cert-file)
//!                ├─ gRPC: kv · watch · lease · cluster · maintenance · lock · election · auth
//!                │          (one file each: the caller's token passed on, the namespace applied,
//!                │           the member's errors passed back unchanged)
//!                └─ HTTP: the JSON gateway (over the same forwarding services), /health, /version,
//!                         /metrics (also on --metrics-addr), the plugins' routes
//!   edge       --plugin-dir as on a member: routes, the pre-put hook before forwarding, plugin metrics
//!   cache      serializable ranges cached per caller's token, invalidated by upstream watches (one over
//!              every key; with auth on, one per cached range opened with a reader's token)
//!   coalesce   watches that start now share one upstream watch per range, options and caller
//!   keepalive  the keep-alive streams of a caller share one upstream stream, a lease in flight once
//!   upstream   the members: a pinned one, failed ones skipped, refreshed from the member list
//!   namespace  --namespace: keys prefixed in, stripped out
//!   peers      `modkv --proxy on|readonly`: the members' client URLs asked of --initial-cluster's peers
//!   tls        --cert/--key/--cacert towards the members, --cert-file/--key-file/--trusted-ca-file
//!              towards the clients
//! ```
//!
//! [`start`] binds and serves, and returns a [`Proxy`] whose error channel ([`Proxy::err`]) and
//! [`Proxy::close`] mirror a member's (`embed::Etcd`): the binary's `main` starts one or the other.

/// Forwards one unary call: `$client` over each candidate member's channel in turn (see
/// [`upstream::Upstream::unary`]), the request carrying the caller's token; the answer's message.
macro_rules! forward {
    ($up:expr, $retry:expr, $client:ident, $method:ident, $req:expr, $token:expr) => {{
        let up = &$up;
        let (req, token) = (&$req, &$token);
        up.unary($retry, |ch| {
            let mut c = $client::new(ch).max_encoding_message_size(up.max_send).max_decoding_message_size(up.max_recv);
            let r = $crate::proxy::upstream::with_token(req.clone(), token);
            async move { c.$method(r).await.map(tonic::Response::into_inner) }
        })
        .await
    }};
}

pub mod auth;
pub mod cache;
pub mod cluster;
pub mod coalesce;
pub mod edge;
pub mod election;
mod gateway;
pub mod http;
pub mod keepalive;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod namespace;
pub mod peers;
pub mod tls;
pub mod upstream;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch as signal};
use tokio::task::JoinHandle;

use crate::config::ProxyConfig;
use crate::fatal::Stop;
use crate::proto::etcdserverpb::auth_server::AuthServer;
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use namespace::Namespace;
use upstream::Upstream;

/// How long open requests may go on once the proxy stops.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// The smallest request message the proxy's clients may send, whatever `--max-send-bytes` says (etcd's
/// gRPC server default).
const MIN_RECV_MESSAGE: usize = 4 << 20;

/// The forwarding services, one per etcd v3 service.
#[derive(Clone)]
pub struct Services {
    pub kv: kv::KvProxy,
    pub watch: watch::WatchProxy,
    pub lease: lease::LeaseProxy,
    pub cluster: cluster::ClusterProxy,
    pub maintenance: maintenance::MaintenanceProxy,
    pub lock: lock::LockProxy,
    pub election: election::ElectionProxy,
    pub auth: auth::AuthProxy,
}

impl Services {
    pub fn new(
        up: &Arc<Upstream>,
        ns: &Namespace,
        hub: &Arc<coalesce::Hub>,
        cache: &Arc<cache::ReadCache>,
        plugins: &Arc<crate::plugin::Plugins>,
    ) -> Services {
        let (up, ns, hub) = (up.clone(), ns.clone(), hub.clone());
        Services {
            kv: kv::KvProxy { up: up.clone(), ns: ns.clone(), cache: cache.clone(), plugins: plugins.clone() },
            watch: watch::WatchProxy { up: up.clone(), ns: ns.clone(), hub },
            lease: lease::LeaseProxy::new(up.clone(), ns.clone()),
            cluster: cluster::ClusterProxy { up: up.clone() },
            maintenance: maintenance::MaintenanceProxy { up: up.clone() },
            lock: lock::LockProxy { up: up.clone(), ns: ns.clone() },
            election: election::ElectionProxy { up: up.clone(), ns },
            auth: auth::AuthProxy { up, cache: cache.clone() },
        }
    }

    /// The gRPC routes, requests up to `max` bytes.
    pub fn grpc_routes(&self, max: usize) -> tonic::service::Routes {
        tonic::service::Routes::new(KvServer::new(self.kv.clone()).max_decoding_message_size(max))
            .add_service(WatchServer::new(self.watch.clone()).max_decoding_message_size(max))
            .add_service(LeaseServer::new(self.lease.clone()).max_decoding_message_size(max))
            .add_service(ClusterServer::new(self.cluster.clone()).max_decoding_message_size(max))
            .add_service(MaintenanceServer::new(self.maintenance.clone()).max_decoding_message_size(max))
            .add_service(LockServer::new(self.lock.clone()).max_decoding_message_size(max))
            .add_service(ElectionServer::new(self.election.clone()).max_decoding_message_size(max))
            .add_service(AuthServer::new(self.auth.clone()).max_decoding_message_size(max))
            .add_service(crate::api::health::HealthService::server())
    }
}

/// A running proxy.
pub struct Proxy {
    /// Where it serves clients (the port chosen when `--listen-addr` asks for port 0).
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub upstream: Arc<Upstream>,
    /// The plugins (`--plugin-dir`).
    pub edge: edge::Edge,
    stop: signal::Sender<bool>,
    serving: Vec<JoinHandle<()>>,
    errors: mpsc::UnboundedReceiver<Stop>,
}

/// Binds `--listen-addr` (and `--metrics-addr`), and serves.
pub async fn start(cfg: &ProxyConfig) -> Result<Proxy, String> {
    let tls = tls::upstream_config(cfg)?;
    let up = Upstream::new(&cfg.endpoints, tls.clone(), cfg.max_send_bytes, cfg.max_recv_bytes)?;
    if cfg.readonly {
        up.set_readonly();
    }
    let ns = Namespace::new(&cfg.namespace);
    let acceptor = tls::client_acceptor(cfg)?;
    let listener =
        tokio::net::TcpListener::bind(cfg.listen_addr).await.map_err(|e| format!("listen {}: {e}", cfg.listen_addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop, stopped) = signal::channel(false);
    let (report, errors) = mpsc::unbounded_channel();

    let hub = coalesce::Hub::new(up.clone());
    let cache = Arc::new(cache::ReadCache::default());
    let plugins = Arc::new(crate::plugin::Plugins::default());
    let services = Services::new(&up, &ns, &hub, &cache, &plugins);
    // Plugins are loaded before any client is served, so no put is forwarded before the hooks that check it.
    let edge = match &cfg.plugin_dir {
        Some(dir) => edge::Edge::start(plugins.clone(), services.kv.clone(), dir, &cfg.data_dir).await?,
        None => edge::Edge::none(plugins.clone()),
    };
    let max = MIN_RECV_MESSAGE.max(cfg.max_send_bytes);
    let grpc = services.grpc_routes(max).into_axum_router();
    let route_up = up.clone();
    let http_routes = http::router(up.clone(), hub.clone(), cache.clone(), edge.metrics.clone(), tls.clone(), true)
        .merge(crate::api::gateway::router_for(services.clone(), None, max))
        .fallback(move |req: axum::extract::Request| edge::serve_route(plugins.clone(), route_up.clone(), req));
    let mux = crate::api::mux::Mux::new(grpc, http_routes);
    let mut serving =
        vec![tokio::spawn(crate::api::mux::serve(listener, mux, acceptor, stopped.clone(), report.clone()))];

    let mut metrics_addr = None;
    if let Some(a) = cfg.metrics_addr {
        let l = tokio::net::TcpListener::bind(a).await.map_err(|e| format!("listen {a}: {e}"))?;
        metrics_addr = Some(l.local_addr().map_err(|e| e.to_string())?);
        let app = http::router(up.clone(), hub.clone(), cache.clone(), edge.metrics.clone(), tls.clone(), false);
        let mut stop = stopped.clone();
        let report = report.clone();
        serving.push(tokio::spawn(async move {
            let stopping = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(l, app).with_graceful_shutdown(stopping).await {
                let _ = report.send(Stop::Failed(format!("metrics listener: {e}")));
            }
        }));
    }
    tokio::spawn(cache.invalidate_loop(up.clone(), stopped.clone()));
    tokio::spawn(up.clone().refresh_loop(stopped));
    tracing::info!(%addr, endpoints = ?cfg.endpoints, namespace = %String::from_utf8_lossy(&cfg.namespace), "gRPC proxy serving");
    Ok(Proxy { addr, metrics_addr, upstream: up, edge, stop, serving, errors })
}

impl Proxy {
    /// The next reason to stop (a listener failed).
    pub async fn err(&mut self) -> Option<Stop> {
        self.errors.recv().await
    }

    /// Stops accepting, lets open requests finish for a while, then cuts them.
    pub async fn close(mut self) {
        let _ = self.stop.send(true);
        let drain = futures::future::join_all(self.serving.iter_mut());
        if tokio::time::timeout(DRAIN_DEADLINE, drain).await.is_err() {
            self.serving.iter().for_each(JoinHandle::abort);
        }
        self.edge.stop().await;
        tracing::info!("proxy stopped");
    }
}

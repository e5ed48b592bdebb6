//! Starting and stopping a member, as etcd's `embed.StartEtcd` does.
//!
//! ```text
//!   Listeners::bind(cfg)                      bind every peer, client and metrics URL first, so a port in
//!        │                                    use fails before anything is touched on disk
//!   start(cfg, listeners)
//!        ├─ 1. open the data dir and storage  (RocksDB; mvcc index rebuilt; applied index read)
//!        ├─ 2. load or bootstrap membership   (member / cluster ids from peer URLs + token)
//!        ├─ 3. create the server, start raft and apply
//!        ├─ 4. serve peers                    (raft messages over h2, forwarded leader-only requests)
//!        ├─ 5. serve clients                  (gRPC on every --listen-client-urls)
//!        └─ 6. serve metrics                  (--listen-metrics-urls)
//!   Etcd::ready()   resolves once a linearizable read succeeds: a leader is known and caught up
//!   Etcd::err()     the single error channel every listener, raft and apply report to
//!   Etcd::close()   stops in the order written in `close`
//! ```
//!
//! The library takes already-bound listeners and a shutdown future, so tests can bind port 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use url::Url;

use crate::alarm::AlarmStore;
use crate::apply::{self, Applier};
use crate::config::{ClusterState, Config};
use crate::lease::Lessor;
use crate::membership::{self, Cluster};
use crate::mvcc::KvStore;
use crate::raft::log::RaftLog;
use crate::raft::{NodeConfig, PeerDialer, RaftNode, Transport};
use crate::server::{EtcdServer, Parts, ServerConfig};
use crate::storage::{Backend, RocksDb, WriteBatch};
use crate::wait::Wait;
use crate::watch::WatchHub;

/// How long in-flight client requests get to finish when the member stops.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long stopping may take after raft, apply or a listener failed.
const FAILED_CLOSE_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("--{flag} {url}: {reason}")]
    BadUrl { flag: &'static str, url: String, reason: String },
    #[error("listen tcp {addr} (--{flag}): {source}")]
    Listen { flag: &'static str, addr: String, source: std::io::Error },
    #[error("data dir {}: {reason}", path.display())]
    DataDir { path: PathBuf, reason: String },
    #[error("{0}")]
    Cluster(String),
    #[error("{0}")]
    Server(String),
}

impl From<crate::storage::data_dir::DataDirError> for EmbedError {
    fn from(e: crate::storage::data_dir::DataDirError) -> EmbedError {
        EmbedError::DataDir { path: e.path, reason: e.reason }
    }
}

impl From<crate::tls::TlsError> for EmbedError {
    fn from(e: crate::tls::TlsError) -> EmbedError {
        EmbedError::Server(e.to_string())
    }
}

impl From<crate::error::Error> for EmbedError {
    fn from(e: crate::error::Error) -> EmbedError {
        EmbedError::Server(e.to_string())
    }
}

/// The sockets a member serves on, bound before it starts.
pub struct Listeners {
    pub client: Vec<std::net::TcpListener>,
    pub peer: Vec<std::net::TcpListener>,
    pub metrics: Vec<std::net::TcpListener>,
}

impl Listeners {
    /// Binds every `--listen-*-urls` URL of `cfg`.
    pub fn bind(cfg: &Config) -> Result<Listeners, EmbedError> {
        Ok(Listeners {
            peer: bind_all("listen-peer-urls", &cfg.listen_peer_urls)?,
            client: bind_all("listen-client-urls", &cfg.listen_client_urls)?,
            metrics: bind_all("listen-metrics-urls", &cfg.listen_metrics_urls)?,
        })
    }
}

fn bind_all(flag: &'static str, urls: &[Url]) -> Result<Vec<std::net::TcpListener>, EmbedError> {
    urls.iter()
        .map(|u| {
            let bad = |reason: &str| EmbedError::BadUrl { flag, url: u.to_string(), reason: reason.into() };
            let host = u.host_str().ok_or_else(|| bad("no host"))?;
            let port = u.port_or_known_default().ok_or_else(|| bad("no port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let addr = format!("{host}:{port}");
            let l = std::net::TcpListener::bind((host, port)).map_err(|source| EmbedError::Listen {
                flag,
                addr,
                source,
            })?;
            l.set_nonblocking(true).map_err(|source| EmbedError::Listen {
                flag,
                addr: format!("{host}:{port}"),
                source,
            })?;
            Ok(l)
        })
        .collect()
}

/// A running member.
pub struct Etcd {
    pub server: Arc<EtcdServer>,
    pub client_addrs: Vec<SocketAddr>,
    errors: mpsc::UnboundedReceiver<String>,
    stop_serving: watch::Sender<bool>,
    serving: Vec<JoinHandle<()>>,
    stop_background: watch::Sender<bool>,
    background: Vec<JoinHandle<()>>,
    raft_stop: Option<oneshot::Sender<()>>,
    raft_thread: Option<std::thread::JoinHandle<()>>,
    apply_thread: Option<std::thread::JoinHandle<()>>,
    plugins: Option<crate::plugin::PluginHost>,
}

/// `--initial-cluster` grouped by member name, URLs as etcd prints them.
fn initial_members(cfg: &Config) -> Vec<(String, Vec<String>)> {
    let mut initial: Vec<(String, Vec<String>)> = Vec::new();
    for (name, url) in &cfg.initial_cluster {
        let u = membership::url_string(url);
        match initial.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(u),
            None => initial.push((name.clone(), vec![u])),
        }
    }
    initial
}

/// Asks the other members of `--initial-cluster` for the running cluster and finds this member in it
/// (added before with `etcdctl member add`, by its peer URLs).
async fn join_cluster(cfg: &Config, dialer: &PeerDialer) -> Result<Cluster, EmbedError> {
    let mut mine: Vec<String> = cfg.initial_advertise_peer_urls.iter().map(membership::url_string).collect();
    mine.sort();
    let peers: Vec<String> = initial_members(cfg)
        .into_iter()
        .filter(|(name, _)| *name != cfg.name)
        .flat_map(|(_, urls)| urls)
        .filter(|u| !mine.contains(u))
        .collect();
    if peers.is_empty() {
        return Err(EmbedError::Cluster(
            "--initial-cluster-state existing: --initial-cluster names no other member to join through".into(),
        ));
    }
    let mut last_error = String::new();
    for _ in 0..10 {
        for url in &peers {
            let mut client = match dialer.client(url) {
                Ok(c) => c,
                Err(e) => {
                    last_error = e;
                    continue;
                }
            };
            let mut req = tonic::Request::new(crate::proto::modkvpb::MembersRequest {});
            req.set_timeout(Duration::from_secs(2));
            let resp = match client.members(req).await {
                Ok(r) => r.into_inner(),
                Err(e) => {
                    last_error = format!("{url}: {}", e.message());
                    continue;
                }
            };
            let members: Vec<membership::Member> = serde_json::from_slice(&resp.members_json)
                .map_err(|e| EmbedError::Cluster(format!("{url} sent an unreadable member list: {e}")))?;
            let me = members.iter().find(|m| {
                let mut urls = m.peer_urls.clone();
                urls.sort();
                urls == mine
            });
            let Some(me) = me else {
                return Err(EmbedError::Cluster(format!(
                    "--initial-cluster-state existing: the cluster {:x} (asked at {url}) has no member with peer URLs {}; add this member first with `etcdctl member add {} --peer-urls={}`",
                    resp.cluster_id,
                    mine.join(","),
                    cfg.name,
                    mine.join(",")
                )));
            };
            tracing::info!(cluster_id = format_args!("{:x}", resp.cluster_id), via = %url, "joining a running cluster");
            return Ok(Cluster::joined(me.id, resp.cluster_id, members));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(EmbedError::Cluster(format!(
        "--initial-cluster-state existing: cannot reach any member of the cluster to join ({last_error})"
    )))
}

/// Loads the cluster from the data dir, or bootstraps it from `--initial-cluster` on a new member (or
/// joins the running one).
async fn load_cluster(cfg: &Config, backend: &dyn Backend, dialer: &PeerDialer) -> Result<Arc<Cluster>, EmbedError> {
    let cluster = match Cluster::load(backend)? {
        Some(c) => {
            tracing::info!("restarting member from its data dir; --initial-cluster* flags are ignored");
            c
        }
        None => {
            let c = if cfg.initial_cluster_state == ClusterState::Existing {
                join_cluster(cfg, dialer).await?
            } else {
                Cluster::bootstrap(&cfg.name, &initial_members(cfg), &cfg.initial_cluster_token).ok_or_else(|| {
                    EmbedError::Cluster(format!(
                        "couldn't find local name {:?} in the initial cluster configuration",
                        cfg.name
                    ))
                })?
            };
            let mut batch = WriteBatch::default();
            c.save(&mut batch);
            backend.write(batch, true).map_err(crate::error::Error::from)?;
            c
        }
    };
    let me = cluster.member_id;
    cluster.set_attributes(me, &cfg.name, cfg.advertise_client_urls.iter().map(membership::url_string).collect());
    Ok(Arc::new(cluster))
}

/// Starts a member on already-bound listeners.
pub async fn start(cfg: &Config, listeners: Listeners) -> Result<Etcd, EmbedError> {
    tracing::info!(name = %cfg.name, data_dir = %cfg.data_dir.display(), version = crate::version::MODKV_VERSION, "starting modkv");

    // 1. Storage (its writes timed for the metrics).
    let metrics = crate::metrics::Metrics::new(cfg.quota_backend_bytes);
    let db_path = crate::storage::data_dir::prepare(&cfg.data_dir)?;
    // TLS for https:// listeners: read the certificates now (a bad file stops the start before storage
    // is opened); --auto-tls writes into the data dir, so after it exists.
    let tls = crate::tls::TlsConfigs::build(cfg)?;
    let backend: Arc<dyn Backend> = Arc::new(
        RocksDb::open(&db_path)
            .map_err(|e| EmbedError::DataDir {
                path: cfg.data_dir.clone(),
                reason: format!("cannot open storage: {e}"),
            })?
            .with_observer(metrics.clone()),
    );
    let kv = Arc::new(KvStore::open(backend.clone())?);
    let lessor = Arc::new(Lessor::open(&*backend, &kv, cfg.election_timeout)?);
    let alarms = Arc::new(AlarmStore::open(&*backend)?);
    let watch_hub = WatchHub::new(kv.clone());
    let applied_index = apply::stored_applied_index(&*backend)?;
    tracing::info!(revision = kv.current_rev(), applied_index, "opened storage");

    // 2. Membership.
    let dialer = PeerDialer::new(tls.peer.as_ref());
    let cluster = load_cluster(cfg, &*backend, &dialer).await?;
    tracing::info!(
        member_id = format_args!("{:x}", cluster.member_id),
        cluster_id = format_args!("{:x}", cluster.cluster_id),
        "member identity"
    );

    // 3. Raft, apply and the server.
    let (fatal_tx, errors) = mpsc::unbounded_channel();
    let wait = Arc::new(Wait::default());
    let (applied_tx, applied_rx) = watch::channel(applied_index);
    let (apply_tx, apply_rx) = mpsc::unbounded_channel();
    let log = RaftLog::open(backend.clone()).map_err(crate::error::Error::from)?;
    let heartbeat = cfg.heartbeat_interval.max(Duration::from_millis(1));
    let node_cfg = NodeConfig {
        id: cluster.member_id,
        voters: cluster.voter_ids(),
        learners: cluster.members().iter().filter(|m| m.is_learner).map(|m| m.id).collect(),
        tick: heartbeat,
        election_ticks: ((cfg.election_timeout.as_millis() / heartbeat.as_millis()) as usize).max(2),
        snapshot_count: cfg.snapshot_count,
    };
    let (mut node, raft) =
        RaftNode::new(node_cfg, log, backend.clone(), wait.clone(), applied_index, applied_rx.clone(), apply_tx)?;
    node.set_transport(Transport::new(
        cluster.clone(),
        raft.clone(),
        tokio::runtime::Handle::current(),
        dialer.clone(),
    ));
    let applier = Applier {
        kv: kv.clone(),
        lessor: lessor.clone(),
        alarms: alarms.clone(),
        watch: watch_hub.clone(),
        wait: wait.clone(),
        backend: backend.clone(),
        cluster: cluster.clone(),
        applied_index,
        applied_tx,
        fatal: fatal_tx.clone(),
    };
    let apply_thread =
        applier.spawn(apply_rx).map_err(|e| EmbedError::Server(format!("cannot start apply thread: {e}")))?;
    let (raft_stop, raft_stop_rx) = oneshot::channel();
    let raft_thread = node
        .spawn(raft_stop_rx, fatal_tx.clone())
        .map_err(|e| EmbedError::Server(format!("cannot start raft thread: {e}")))?;
    tracing::info!("started raft node");
    let server_cfg = ServerConfig {
        quota_backend_bytes: cfg.quota_backend_bytes,
        max_request_bytes: cfg.max_request_bytes,
        max_txn_ops: cfg.max_txn_ops,
        request_timeout: Duration::from_secs(5) + 2 * cfg.election_timeout,
    };
    let plugins = Arc::new(crate::plugin::Plugins::default());
    let parts = Parts {
        kv,
        lessor,
        alarms,
        watch: watch_hub.clone(),
        backend,
        cluster,
        raft,
        wait,
        applied: applied_rx,
        metrics: metrics.clone(),
        dialer,
        pre_put: plugins.clone(),
    };
    let server = Arc::new(EtcdServer::new(server_cfg, parts));
    metrics.set_member(&server);
    // Plugins: every component in --plugin-dir is loaded before clients are served (a plugin that fails
    // to load is logged and skipped), then the directory is watched for changes (and SIGHUP).
    let plugin_host = match &cfg.plugin_dir {
        Some(dir) => Some(
            crate::plugin::start(&plugins, &server, metrics.clone(), dir, Some(cfg.data_dir.join("plugin-cache")))
                .await
                .map_err(|e| EmbedError::Server(format!("--plugin-dir {}: {e}", dir.display())))?,
        ),
        None => None,
    };

    let (stop_serving, stop_rx) = watch::channel(false);
    let mut serving = Vec::new();
    // Background work of the server: lease expiry (while leading), catching up slow watchers, auto compaction.
    let (stop_background, background_rx) = watch::channel(false);
    let background_rx_publish = background_rx.clone();
    let mut background = vec![
        tokio::spawn(server.clone().run_lease_expiry(background_rx.clone())),
        tokio::spawn(watch_hub.run_sync(background_rx.clone())),
        tokio::spawn(crate::server::compactor::run(server.clone(), cfg.auto_compaction, background_rx)),
    ];

    // 4. Peers: raft messages, the member list for joining members, and what followers forward to the
    //    leader, over h2 on every --listen-peer-urls listener.
    for (i, l) in listeners.peer.into_iter().enumerate() {
        let acceptor =
            cfg.listen_peer_urls.get(i).and_then(|url| crate::tls::acceptor_for(url, tls.peer_acceptor().as_ref()));
        let addr = l.local_addr().map_err(|e| EmbedError::Server(e.to_string()))?;
        let l = tokio::net::TcpListener::from_std(l).map_err(|e| EmbedError::Server(format!("peer listener: {e}")))?;
        let serve = crate::api::peer::serve(l, server.clone(), acceptor, stop_rx.clone(), fatal_tx.clone());
        serving.push(tokio::spawn(serve));
        tracing::info!(%addr, "serving peer traffic");
    }
    // Publish this member's name and client URLs through raft once there is a leader (as etcd does at
    // every start), so every member lists them.
    {
        let (server, name) = (server.clone(), cfg.name.clone());
        let urls: Vec<String> = cfg.advertise_client_urls.iter().map(membership::url_string).collect();
        let mut stop = background_rx_publish;
        background.push(tokio::spawn(async move {
            loop {
                match server.publish(&name, urls.clone()).await {
                    Ok(()) => return tracing::info!("published member attributes"),
                    Err(e) => tracing::debug!(%e, "publishing member attributes; retrying"),
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }));
    }

    // 5. Clients.
    let mut client_addrs = Vec::new();
    for (i, l) in listeners.client.into_iter().enumerate() {
        let acceptor =
            cfg.listen_client_urls.get(i).and_then(|url| crate::tls::acceptor_for(url, tls.client_acceptor().as_ref()));
        let addr = l.local_addr().map_err(|e| EmbedError::Server(e.to_string()))?;
        client_addrs.push(addr);
        let l =
            tokio::net::TcpListener::from_std(l).map_err(|e| EmbedError::Server(format!("client listener: {e}")))?;
        let mux = crate::api::client_mux(server.clone(), plugins.clone(), metrics.clone(), cfg.max_request_bytes);
        let https = acceptor.is_some();
        serving.push(tokio::spawn(crate::api::mux::serve(l, mux, acceptor, stop_rx.clone(), fatal_tx.clone())));
        tracing::info!(%addr, https, "serving client traffic (gRPC and HTTP)");
    }

    // 6. Metrics: `/metrics` and `/health` on each --listen-metrics-urls listener.
    for l in listeners.metrics {
        let addr = l.local_addr().ok();
        let serve =
            crate::api::http::serve_metrics(l, server.clone(), metrics.clone(), stop_rx.clone(), fatal_tx.clone());
        serving.push(tokio::spawn(serve));
        tracing::info!(?addr, "serving metrics");
    }

    Ok(Etcd {
        server,
        client_addrs,
        errors,
        stop_serving,
        serving,
        stop_background,
        background,
        raft_stop: Some(raft_stop),
        raft_thread: Some(raft_thread),
        apply_thread: Some(apply_thread),
        plugins: plugin_host,
    })
}

impl Etcd {
    /// Resolves once the member can serve linearizable requests.
    pub async fn ready(&self) {
        wait_ready(&self.server).await
    }

    /// The next fatal error from a listener, raft or apply.
    pub async fn err(&mut self) -> Option<String> {
        self.errors.recv().await
    }

    /// Stops the member, in this order:
    /// 1. stop accepting client connections and let in-flight requests finish (up to `DRAIN_DEADLINE`);
    /// 2. stop background work (lease expiry, watcher catch-up);
    /// 3. stop the raft node (nothing new is committed);
    /// 4. let apply finish the entries already committed, then stop it;
    /// 5. flush storage.
    pub async fn close(mut self) {
        tracing::info!("stopping: draining client connections");
        let _ = self.stop_serving.send(true);
        let drain = futures::future::join_all(self.serving.iter_mut());
        if tokio::time::timeout(DRAIN_DEADLINE, drain).await.is_err() {
            tracing::warn!("client connections still open after {DRAIN_DEADLINE:?}; closing them");
            for t in &self.serving {
                t.abort();
            }
        }
        if let Some(plugins) = self.plugins.take() {
            tracing::info!("stopping: plugin reloads");
            plugins.stop().await;
        }
        tracing::info!("stopping: background work");
        let _ = self.stop_background.send(true);
        for t in self.background.drain(..) {
            let _ = t.await;
        }
        tracing::info!("stopping: raft node");
        if let Some(stop) = self.raft_stop.take() {
            let _ = stop.send(());
        }
        join_thread(self.raft_thread.take()).await;
        tracing::info!("stopping: apply");
        join_thread(self.apply_thread.take()).await;
        tracing::info!("stopping: flushing storage");
        if let Err(e) = self.server.backend.flush() {
            tracing::error!(%e, "flushing storage failed");
        }
        tracing::info!("stopped");
    }
}

async fn wait_ready(server: &EtcdServer) {
    while server.linearizable_read().await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn join_thread(t: Option<std::thread::JoinHandle<()>>) {
    if let Some(t) = t {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
}

/// Starts a member, reports readiness, and runs until `shutdown` resolves or a component fails.
pub async fn run(
    cfg: &Config,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), EmbedError> {
    let mut etcd = start(cfg, listeners).await?;
    let server = etcd.server.clone();
    let ready = async move { wait_ready(&server).await };
    tokio::pin!(shutdown);
    tokio::pin!(ready);
    let mut is_ready = false;
    let result = loop {
        tokio::select! {
            _ = &mut ready, if !is_ready => {
                is_ready = true;
                tracing::info!(addrs = ?etcd.client_addrs, "ready to serve client requests");
            }
            _ = &mut shutdown => break Ok(()),
            e = etcd.err() => match e {
                Some(e) if e == crate::raft::REMOVED => {
                    tracing::warn!("{e}; stopping");
                    break Ok(());
                }
                e => break Err(EmbedError::Server(e.unwrap_or_else(|| "stopped".into()))),
            },
        }
    };
    if let Err(e) = &result {
        // A failed core thread may leave a step of `close` with nobody to answer it: bound the wait, the
        // caller exits non-zero either way.
        tracing::error!("{e}; stopping the member");
        if tokio::time::timeout(FAILED_CLOSE_DEADLINE, etcd.close()).await.is_err() {
            tracing::error!("the member did not stop within {FAILED_CLOSE_DEADLINE:?} after the failure; exiting");
        }
    } else {
        etcd.close().await;
    }
    result
}

//! Starting and stopping a member, as etcd's `embed.StartEtcd` does.
//!
//! ```text
//!   Listeners::bind(cfg)                      bind every peer, client and metrics URL first, so a port in
//!        │                                    use fails before anything is touched on disk
//!   start(cfg, listeners)
//!        ├─ 1. open_storage       data dir, TLS files, RocksDB; mvcc index rebuilt; applied index read
//!        ├─ 2. load_cluster       member / cluster ids from the data dir, --initial-cluster, or a join
//!        ├─ 3. start_raft         raft node with its peer transport (own thread), apply (own thread)
//!        ├─ 4. the server         EtcdServer over storage, raft and the plugins' pre-put hook
//!        ├─ 5. load_plugins       --plugin-dir loaded before any client is served, then watched
//!        ├─ 6. start_background   lease expiry, watcher catch-up, auto compaction, publish attributes
//!        ├─ 7. serve_peers        raft messages over h2, forwarded leader-only requests
//!        ├─ 8. serve_clients      gRPC and HTTP on every --listen-client-urls
//!        └─ 9. serve_metrics      /metrics and /health on --listen-metrics-urls
//!   Etcd::ready()   resolves once a linearizable read succeeds: a leader is known and caught up
//!   Etcd::err()     the single error channel every listener, raft and apply report to ([`Stop`])
//!   Etcd::close()   stops in the order written in `close`
//! ```
//!
//! The library takes already-bound listeners and a shutdown future, so tests can bind port 0.

mod cluster;
mod listeners;

pub use listeners::Listeners;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::alarm::AlarmStore;
use crate::apply::{self, Applier};
use crate::config::Config;
use crate::fatal::{Reporter, Stop};
use crate::lease::Lessor;
use crate::membership::{self, Cluster};
use crate::metrics::Metrics;
use crate::mvcc::KvStore;
use crate::raft::log::RaftLog;
use crate::raft::{NodeConfig, PeerDialer, RaftNode, Transport};
use crate::server::{EtcdServer, Parts, ServerConfig};
use crate::storage::{Backend, RocksDb};
use crate::wait::Wait;
use crate::watch::WatchHub;

/// How long in-flight client requests get to finish when the member stops.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long stopping may take after raft, apply or a listener failed.
const FAILED_CLOSE_DEADLINE: Duration = Duration::from_secs(10);
/// How long in-flight client requests get after raft or apply failed: what waits on them never comes,
/// so the member exits now (as etcd's does) instead of after `DRAIN_DEADLINE`.
const FAILED_DRAIN_DEADLINE: Duration = Duration::from_millis(200);

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

/// A running member.
pub struct Etcd {
    pub server: Arc<EtcdServer>,
    pub client_addrs: Vec<SocketAddr>,
    backend: Arc<dyn Backend>,
    errors: mpsc::UnboundedReceiver<Stop>,
    stop_serving: watch::Sender<bool>,
    serving: Vec<JoinHandle<()>>,
    /// The peer port stops after the client ports: requests in flight still need raft to commit.
    stop_peers: watch::Sender<bool>,
    peer_serving: Vec<JoinHandle<()>>,
    stop_background: watch::Sender<bool>,
    background: Vec<JoinHandle<()>>,
    core: Option<Core>,
    plugins: Option<crate::plugin::PluginHost>,
}

/// Starts a member on already-bound listeners, in etcd's order: storage, membership, raft, then what
/// serves — plugins first, so no put reaches a client port before the hooks that check it.
pub async fn start(cfg: &Config, listeners: Listeners) -> Result<Etcd, EmbedError> {
    tracing::info!(name = %cfg.name, data_dir = %cfg.data_dir.display(), version = crate::version::MODKV_VERSION, "starting modkv");
    let metrics = crate::metrics::Metrics::new(cfg.quota_backend_bytes);
    let db_path = crate::storage::data_dir::prepare(&cfg.data_dir)?;
    // TLS for https:// listeners: read the certificates now (a bad file stops the start before storage
    // is opened); --auto-tls writes into the data dir, so after it exists.
    let tls = crate::tls::TlsConfigs::build(cfg)?;
    let state = open_storage(cfg, &db_path, &metrics)?;
    let dialer = PeerDialer::new(tls.peer.as_ref());
    let cluster = cluster::load_cluster(cfg, &*state.backend, &dialer).await?;
    let (fatal, errors) = mpsc::unbounded_channel();
    let (core, raft) = start_raft(cfg, &state, &cluster, &dialer, &fatal)?;
    let plugins = Arc::new(crate::plugin::Plugins::default());
    let parts = Parts {
        kv: state.kv.clone(),
        lessor: state.lessor.clone(),
        alarms: state.alarms.clone(),
        watch: state.watch.clone(),
        backend: state.backend.clone(),
        cluster,
        raft: raft.handle,
        wait: raft.wait,
        applied: raft.applied,
        metrics: metrics.clone(),
        dialer,
        pre_put: plugins.clone(),
        auth: state.auth.clone(),
    };
    let server = Arc::new(EtcdServer::new(server_config(cfg), parts));
    metrics.set_member(&server);
    let plugin_host = load_plugins(cfg, &plugins, &server, &metrics).await?;
    let (stop_background, background_rx) = watch::channel(false);
    let background = start_background(cfg, &server, &state.watch, background_rx);

    let (stop_peers, peer_stop_rx) = watch::channel(false);
    let peer_serving = serve_peers(cfg, listeners.peer, &tls, &core, &server, &peer_stop_rx, &fatal)?;
    let (stop_serving, stop_rx) = watch::channel(false);
    let handles = server.handles();
    let (client_addrs, mut serving) =
        serve_clients(cfg, listeners.client, &tls, &handles, &plugins, &metrics, &stop_rx, &fatal)?;
    serving.extend(serve_metrics(listeners.metrics, &handles, &metrics, &stop_rx, &fatal));

    Ok(Etcd {
        server,
        client_addrs,
        backend: state.backend,
        errors,
        stop_serving,
        serving,
        stop_peers,
        peer_serving,
        stop_background,
        background,
        core: Some(core),
        plugins: plugin_host,
    })
}

/// The state machine as storage holds it.
struct State {
    backend: Arc<dyn Backend>,
    kv: Arc<KvStore>,
    lessor: Arc<Lessor>,
    alarms: Arc<AlarmStore>,
    auth: Arc<crate::auth::AuthStore>,
    watch: Arc<WatchHub>,
    applied_index: u64,
    /// Times the raft log's fsyncs (the metrics).
    observer: Arc<dyn crate::storage::WriteObserver>,
}

/// Step 1: opens RocksDB in the data dir (its writes timed for the metrics), rebuilds the mvcc index,
/// loads leases and alarms, and reads the applied index.
fn open_storage(cfg: &Config, db_path: &Path, metrics: &Arc<Metrics>) -> Result<State, EmbedError> {
    let backend: Arc<dyn Backend> = Arc::new(
        RocksDb::open(db_path)
            .map_err(|e| EmbedError::DataDir {
                path: cfg.data_dir.clone(),
                reason: format!("cannot open storage: {e}"),
            })?
            .with_observer(metrics.clone()),
    );
    let kv = Arc::new(KvStore::open(backend.clone())?);
    let lessor = Arc::new(Lessor::open(&*backend, &kv, cfg.election_timeout)?);
    let alarms = Arc::new(AlarmStore::open(&*backend)?);
    let tokens = crate::auth::token::provider(&cfg.auth.token, cfg.auth.token_ttl)
        .map_err(|e| EmbedError::Server(format!("--auth-token: {e}")))?;
    let auth = Arc::new(crate::auth::AuthStore::open(&*backend, tokens)?);
    let watch = WatchHub::new(kv.clone());
    let applied_index = apply::stored_applied_index(&*backend)?;
    tracing::info!(revision = kv.current_rev(), applied_index, "opened storage");
    Ok(State { backend, kv, lessor, alarms, auth, watch, applied_index, observer: metrics.clone() })
}

/// The raft node and apply threads, and the receiving half of the peer transport.
struct Core {
    receiver: crate::raft::Receiver,
    raft_stop: oneshot::Sender<()>,
    raft_thread: std::thread::JoinHandle<()>,
    apply_thread: std::thread::JoinHandle<()>,
}

/// What the server takes from the running raft node and apply thread.
struct RaftParts {
    handle: crate::raft::RaftHandle,
    wait: Arc<Wait<crate::apply::Applied>>,
    applied: watch::Receiver<u64>,
}

/// Step 3: starts the raft node (with its peer transport) and the apply thread.
fn start_raft(
    cfg: &Config,
    state: &State,
    cluster: &Arc<Cluster>,
    dialer: &Arc<PeerDialer>,
    fatal: &Reporter,
) -> Result<(Core, RaftParts), EmbedError> {
    tracing::info!(
        member_id = format_args!("{:x}", cluster.member_id),
        cluster_id = format_args!("{:x}", cluster.cluster_id),
        "member identity"
    );
    let wait = Arc::new(Wait::default());
    let (applied_tx, applied_rx) = watch::channel(state.applied_index);
    let (apply_tx, apply_rx) = mpsc::unbounded_channel();
    let log = RaftLog::open(state.backend.clone(), &cfg.data_dir.join("wal"), Some(state.observer.clone()))
        .map_err(crate::error::Error::from)?;
    let heartbeat = cfg.heartbeat_interval.max(Duration::from_millis(1));
    let election_ticks = ((cfg.election_timeout.as_millis() / heartbeat.as_millis()) as usize).max(2);
    let node_cfg = NodeConfig {
        id: cluster.member_id,
        voters: cluster.voter_ids(),
        learners: cluster.members().iter().filter(|m| m.is_learner).map(|m| m.id).collect(),
        tick: heartbeat,
        election_ticks,
        snapshot_count: cfg.snapshot_count,
    };
    let (raft, inbox) = crate::raft::channel();
    let transport = Transport::new(cluster.clone(), raft.clone(), tokio::runtime::Handle::current(), dialer.clone());
    let node = RaftNode::new(
        node_cfg,
        log,
        state.backend.clone(),
        wait.clone(),
        state.applied_index,
        applied_rx.clone(),
        apply_tx,
        inbox,
        transport,
    )?;
    let applier = Applier {
        kv: state.kv.clone(),
        lessor: state.lessor.clone(),
        alarms: state.alarms.clone(),
        watch: state.watch.clone(),
        wait: wait.clone(),
        backend: state.backend.clone(),
        cluster: cluster.clone(),
        auth: state.auth.clone(),
        applied_index: state.applied_index,
        applied_tx,
        fatal: fatal.clone(),
    };
    let apply_thread =
        applier.spawn(apply_rx).map_err(|e| EmbedError::Server(format!("cannot start apply thread: {e}")))?;
    let (raft_stop, raft_stop_rx) = oneshot::channel();
    let raft_thread = node
        .spawn(raft_stop_rx, fatal.clone())
        .map_err(|e| EmbedError::Server(format!("cannot start raft thread: {e}")))?;
    tracing::info!("started raft node");
    if cfg.initial_election_tick_advance {
        let peers = cluster
            .members()
            .into_iter()
            .filter(|m| m.id != cluster.member_id && !m.is_learner)
            .flat_map(|m| m.peer_urls)
            .collect();
        tokio::spawn(crate::raft::advance::advance_when_peers_answer(
            raft.clone(),
            dialer.clone(),
            peers,
            election_ticks,
        ));
    }
    let core = Core {
        receiver: crate::raft::Receiver::new(raft.clone(), cluster.clone()),
        raft_stop,
        raft_thread,
        apply_thread,
    };
    Ok((core, RaftParts { handle: raft, wait, applied: applied_rx }))
}

fn server_config(cfg: &Config) -> ServerConfig {
    ServerConfig {
        quota_backend_bytes: cfg.quota_backend_bytes,
        max_request_bytes: cfg.max_request_bytes,
        max_txn_ops: cfg.max_txn_ops,
        request_timeout: Duration::from_secs(5) + 2 * cfg.election_timeout,
        bcrypt_cost: cfg.auth.bcrypt_cost,
    }
}

/// Step 5: every component in --plugin-dir is loaded before clients are served (a plugin that fails to
/// load is logged and skipped), then the directory is watched for changes (and SIGHUP).
async fn load_plugins(
    cfg: &Config,
    plugins: &Arc<crate::plugin::Plugins>,
    server: &Arc<EtcdServer>,
    metrics: &Arc<Metrics>,
) -> Result<Option<crate::plugin::PluginHost>, EmbedError> {
    let Some(dir) = &cfg.plugin_dir else { return Ok(None) };
    let cache = Some(cfg.data_dir.join("plugin-cache"));
    crate::plugin::start(plugins, server, metrics.clone(), dir, cache)
        .await
        .map(Some)
        .map_err(|e| EmbedError::Server(format!("--plugin-dir {}: {e}", dir.display())))
}

/// Step 6: the server's background work until `stop` fires: lease expiry (while leading), catching up
/// slow watchers, auto compaction, and publishing this member's name and client URLs through raft once
/// there is a leader (as etcd does at every start), so every member lists them.
fn start_background(
    cfg: &Config,
    server: &Arc<EtcdServer>,
    watch_hub: &Arc<WatchHub>,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let (publisher, name) = (server.clone(), cfg.name.clone());
    let urls: Vec<String> = cfg.advertise_client_urls.iter().map(membership::url_string).collect();
    let mut publish_stop = stop.clone();
    let publish = async move {
        loop {
            match publisher.publish(&name, urls.clone()).await {
                Ok(()) => return tracing::info!("published member attributes"),
                Err(e) => tracing::debug!(%e, "publishing member attributes; retrying"),
            }
            tokio::select! {
                _ = publish_stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    };
    vec![
        tokio::spawn(server.clone().run_lease_expiry(stop.clone())),
        tokio::spawn(watch_hub.clone().run_sync(stop.clone())),
        tokio::spawn(crate::server::compactor::run(server.clone(), cfg.auto_compaction, stop)),
        tokio::spawn(publish),
    ]
}

/// Step 7: the peer port on every --listen-peer-urls listener: raft messages, the member list for
/// joining members, and what followers forward to the leader, over h2.
fn serve_peers(
    cfg: &Config,
    listeners: Vec<std::net::TcpListener>,
    tls: &crate::tls::TlsConfigs,
    core: &Core,
    server: &Arc<EtcdServer>,
    stop: &watch::Receiver<bool>,
    fatal: &Reporter,
) -> Result<Vec<JoinHandle<()>>, EmbedError> {
    let mut serving = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let acceptor =
            cfg.listen_peer_urls.get(i).and_then(|url| crate::tls::acceptor_for(url, tls.peer_acceptor().as_ref()));
        let addr = l.local_addr().map_err(|e| EmbedError::Server(e.to_string()))?;
        let l = tokio::net::TcpListener::from_std(l).map_err(|e| EmbedError::Server(format!("peer listener: {e}")))?;
        let requests: Arc<dyn crate::server::v3::PeerRequests> = server.clone();
        let serve = crate::api::peer::serve(l, core.receiver.clone(), requests, acceptor, stop.clone(), fatal.clone());
        serving.push(tokio::spawn(serve));
        tracing::info!(%addr, "serving peer traffic");
    }
    Ok(serving)
}

/// Step 8: the client port on every --listen-client-urls listener: gRPC and HTTP (gateway, health,
/// version, metrics, plugin routes) on one mux.
#[allow(clippy::too_many_arguments)]
fn serve_clients(
    cfg: &Config,
    listeners: Vec<std::net::TcpListener>,
    tls: &crate::tls::TlsConfigs,
    handles: &crate::server::v3::Handles,
    plugins: &Arc<crate::plugin::Plugins>,
    metrics: &Arc<Metrics>,
    stop: &watch::Receiver<bool>,
    fatal: &Reporter,
) -> Result<(Vec<SocketAddr>, Vec<JoinHandle<()>>), EmbedError> {
    let (mut addrs, mut serving) = (Vec::new(), Vec::new());
    for (i, l) in listeners.into_iter().enumerate() {
        let acceptor =
            cfg.listen_client_urls.get(i).and_then(|url| crate::tls::acceptor_for(url, tls.client_acceptor().as_ref()));
        let addr = l.local_addr().map_err(|e| EmbedError::Server(e.to_string()))?;
        addrs.push(addr);
        let l =
            tokio::net::TcpListener::from_std(l).map_err(|e| EmbedError::Server(format!("client listener: {e}")))?;
        let client_cfg = crate::api::ClientConfig {
            max_request_bytes: cfg.max_request_bytes,
            watch_progress_notify_interval: cfg.watch_progress_notify_interval,
        };
        let mut mux = crate::api::client_mux(handles, plugins.clone(), metrics.clone(), &client_cfg, stop.clone());
        // The client certificate's CN names the caller only where it is asked for and verified (etcd's
        // `ClientCertAuthEnabled`; `--auto-tls` without files asks for none).
        let flags = &cfg.client_tls;
        if flags.client_cert_auth && !(flags.auto_tls && flags.is_empty()) {
            mux = mux.with_cn_auth(handles.auth.clone());
        }
        let https = acceptor.is_some();
        serving.push(tokio::spawn(crate::api::mux::serve(l, mux, acceptor, stop.clone(), fatal.clone())));
        tracing::info!(%addr, https, "serving client traffic (gRPC and HTTP)");
    }
    Ok((addrs, serving))
}

/// Step 9: `/metrics` and `/health` on each --listen-metrics-urls listener.
fn serve_metrics(
    listeners: Vec<std::net::TcpListener>,
    handles: &crate::server::v3::Handles,
    metrics: &Arc<Metrics>,
    stop: &watch::Receiver<bool>,
    fatal: &Reporter,
) -> Vec<JoinHandle<()>> {
    listeners
        .into_iter()
        .map(|l| {
            let addr = l.local_addr().ok();
            let serve = crate::api::http::serve_metrics(
                l,
                handles.health.clone(),
                metrics.clone(),
                stop.clone(),
                fatal.clone(),
            );
            tracing::info!(?addr, "serving metrics");
            tokio::spawn(serve)
        })
        .collect()
}

impl Etcd {
    /// Resolves once the member can serve linearizable requests.
    pub async fn ready(&self) {
        wait_ready(&self.server).await
    }

    /// The next reason to stop from a listener, raft or apply.
    pub async fn err(&mut self) -> Option<Stop> {
        self.errors.recv().await
    }

    /// Stops the member, in this order:
    /// 1. stop accepting client and metrics connections and let in-flight requests finish (up to
    ///    `DRAIN_DEADLINE`, then they are cut), then the same for peer connections: until then raft
    ///    still talks to its peers, so that what the clients wait for can commit (etcd also closes its
    ///    client servers before it stops raft);
    /// 2. stop the plugins' reloads and the engine's epoch ticker (no request is left to call them);
    /// 3. stop background work (lease expiry, watcher catch-up, auto compaction, publishing);
    /// 4. stop the raft node (nothing new is committed);
    /// 5. let apply finish the entries already committed, then stop it;
    /// 6. flush storage.
    pub async fn close(self) {
        self.close_draining(DRAIN_DEADLINE).await
    }

    /// [`Etcd::close`], giving in-flight requests `drain` to finish.
    async fn close_draining(mut self, drain_deadline: Duration) {
        tracing::info!("stopping: draining connections");
        let deadline = tokio::time::Instant::now() + drain_deadline;
        for (stop, serving) in [(&self.stop_serving, &mut self.serving), (&self.stop_peers, &mut self.peer_serving)] {
            let _ = stop.send(true);
            let drain = futures::future::join_all(serving.iter_mut());
            if tokio::time::timeout_at(deadline, drain).await.is_err() {
                tracing::warn!("connections still open after {drain_deadline:?}; closing them");
                for t in serving.iter() {
                    t.abort();
                }
            }
        }
        if let Some(plugins) = self.plugins.take() {
            tracing::info!("stopping: plugins");
            plugins.stop().await;
        }
        tracing::info!("stopping: background work");
        let _ = self.stop_background.send(true);
        for t in self.background.drain(..) {
            let _ = t.await;
        }
        if let Some(core) = self.core.take() {
            tracing::info!("stopping: raft node");
            let _ = core.raft_stop.send(());
            join_thread(core.raft_thread).await;
            tracing::info!("stopping: apply");
            join_thread(core.apply_thread).await;
        }
        tracing::info!("stopping: flushing storage");
        if let Err(e) = self.backend.flush() {
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

async fn join_thread(t: std::thread::JoinHandle<()>) {
    let _ = tokio::task::spawn_blocking(move || t.join()).await;
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
                Some(Stop::Removed) => {
                    tracing::warn!("{}; stopping", Stop::Removed);
                    break Ok(());
                }
                Some(Stop::Failed(e)) => break Err(EmbedError::Server(e)),
                None => break Err(EmbedError::Server("stopped".into())),
            },
        }
    };
    if let Err(e) = &result {
        // A failed core thread may leave a step of `close` with nobody to answer it: bound the wait, the
        // caller exits non-zero either way.
        tracing::error!("{e}; stopping the member");
        if tokio::time::timeout(FAILED_CLOSE_DEADLINE, etcd.close_draining(FAILED_DRAIN_DEADLINE)).await.is_err() {
            tracing::error!("the member did not stop within {FAILED_CLOSE_DEADLINE:?} after the failure; exiting");
        }
    } else {
        etcd.close().await;
    }
    result
}

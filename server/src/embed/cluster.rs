//! Step 2 of a start: who this member is and which cluster it belongs to — from its data dir on a
//! restart, from `--initial-cluster` on a new cluster (ids derived as etcd derives them), or asked of a
//! running member when joining (`--initial-cluster-state existing`).

use std::sync::Arc;
use std::time::Duration;

use super::EmbedError;
use crate::config::{ClusterState, Config};
use crate::membership::{self, Cluster};
use crate::raft::PeerDialer;
use crate::storage::{Backend, WriteBatch};

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

/// Step 2: loads the cluster from the data dir, or bootstraps it from `--initial-cluster` on a new member (or
/// joins the running one).
pub(super) async fn load_cluster(
    cfg: &Config,
    backend: &dyn Backend,
    dialer: &PeerDialer,
) -> Result<Arc<Cluster>, EmbedError> {
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

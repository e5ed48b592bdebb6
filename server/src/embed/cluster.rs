//! Step 2 of a start: who this member is and which cluster it belongs to — from its data dir on a
//! restart, from `--initial-cluster` on a new cluster (ids derived as etcd derives them), or asked of a
//! running member when joining (`--initial-cluster-state existing`).

use std::sync::Arc;
use std::time::Duration;

use super::EmbedError;
use crate::config::{ClusterState, Config};
use crate::membership::{self, Cluster};
use crate::raft::{AskError, PeerDialer};
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
    let answer = match dialer.ask_members(&peers, 10, Duration::from_millis(500), |_| Ok(())).await {
        Ok(a) => a,
        Err(AskError::Unreadable(e)) => return Err(EmbedError::Cluster(e)),
        Err(AskError::Unanswered(last_error)) => {
            return Err(EmbedError::Cluster(format!(
                "--initial-cluster-state existing: cannot reach any member of the cluster to join ({last_error})"
            )))
        }
    };
    let (url, cluster_id) = (&answer.url, answer.cluster_id);
    let me = answer.members.iter().find(|m| {
        let mut urls = m.peer_urls.clone();
        urls.sort();
        urls == mine
    });
    let Some(me) = me else {
        return Err(EmbedError::Cluster(format!(
            "--initial-cluster-state existing: the cluster {cluster_id:x} (asked at {url}) has no member with peer URLs {}; add this member first with `etcdctl member add {} --peer-urls={}`",
            mine.join(","),
            cfg.name,
            mine.join(",")
        )));
    };
    tracing::info!(cluster_id = format_args!("{cluster_id:x}"), via = %url, "joining a running cluster");
    let id = me.id;
    Ok(Cluster::joined(id, cluster_id, answer.members))
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

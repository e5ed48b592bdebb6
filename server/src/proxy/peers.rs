//! `modkv --proxy on|readonly` (etcd's v2-proxy switch): the cluster is named by the peer URLs of
//! `--initial-cluster`, as for etcd's v2 proxy; the proxy asks those peers for the member list (the peer
//! service's `Members` call, which a joining member uses too) and forwards to the members' client URLs.
//!
//! ```text
//!   --initial-cluster peer URLs ─▶ Members (each peer in turn, rounds 1 s apart) ─▶ client URLs ─▶ proxy::start
//! ```
//!
//! Peers are dialled in plain HTTP/2 (no peer TLS for the proxy yet); after the start the proxy's
//! upstream refreshes the list from the cluster's own member list, as `grpc-proxy start` does.

use std::time::Duration;

use crate::config::Config;
use crate::membership::Member;
use crate::raft::{AskError, PeerDialer};

/// How long to keep asking before giving up (etcd's v2 proxy retries every second while it knows no
/// endpoint; a proxy started with its cluster must not fail because the members start a little later).
const ROUNDS: usize = 30;

/// The client URLs of the cluster's members, asked of the peers `--initial-cluster` names.
pub async fn client_urls(cfg: &Config) -> Result<Vec<String>, String> {
    let mut peers: Vec<String> = cfg.initial_cluster.iter().map(|(_, u)| crate::membership::url_string(u)).collect();
    peers.dedup();
    if peers.is_empty() {
        return Err("--proxy: --initial-cluster names no member".into());
    }
    let has_client_urls = |members: &[Member]| match members.iter().any(|m| !m.client_urls.is_empty()) {
        true => Ok(()),
        false => Err("no member has published its client URLs yet".to_string()),
    };
    match PeerDialer::new(None).ask_members(&peers, ROUNDS, Duration::from_secs(1), has_client_urls).await {
        Ok(answer) => {
            let urls: Vec<String> = answer.members.into_iter().flat_map(|m| m.client_urls).collect();
            tracing::info!(via = %answer.url, endpoints = ?urls, "proxy: found the cluster's client URLs");
            Ok(urls)
        }
        Err(AskError::Unreadable(e)) => Err(e),
        Err(AskError::Unanswered(last_error)) => {
            Err(format!("--proxy: cannot reach any peer of --initial-cluster ({last_error})"))
        }
    }
}

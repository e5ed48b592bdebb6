//! `--initial-election-tick-advance` (etcd's, on by default): a member that starts in a cluster of
//! several waits for a peer to answer, then fast-forwards its election clock to two ticks short of the
//! election timeout, so a restarted cluster elects a leader within a few heartbeats instead of a whole
//! randomized timeout (one to two election timeouts).
//!
//! ```text
//!   start ──▶ ask the other members' peer ports (peer service `Members`) every 50 ms, for 5 s at most
//!               └─ one answers ──▶ RaftHandle::advance_ticks(election ticks − 2)
//!                                    └─ node task: ticks that many times, if no leader is known yet
//! ```
//!
//! Two ticks are left so that a leader's heartbeat, if there is one, still arrives in time: the
//! advance only shortens the wait of a member that has no leader to follow. Pre-vote keeps a member
//! that advanced too early from disturbing a leader it has not heard from yet.

use std::sync::Arc;
use std::time::Duration;

use super::{PeerDialer, RaftHandle};

/// How often the peers are asked, and for how long at most (etcd's peer connection read timeout).
const ASK_EVERY: Duration = Duration::from_millis(50);
const ASK_FOR: Duration = Duration::from_secs(5);

/// Waits until one of `peers` (the other members' peer URLs) answers, then advances the node's
/// election ticks to two short of `election_ticks`. Gives up silently after [`ASK_FOR`]: no peer is up
/// yet, and the ordinary election timeout applies.
pub async fn advance_when_peers_answer(
    raft: RaftHandle,
    dialer: Arc<PeerDialer>,
    peers: Vec<String>,
    election_ticks: usize,
) {
    if peers.is_empty() || election_ticks <= 2 {
        return;
    }
    let rounds = (ASK_FOR.as_millis() / ASK_EVERY.as_millis()) as usize;
    match dialer.ask_members(&peers, rounds, ASK_EVERY, |_| Ok(())).await {
        Ok(answer) => {
            tracing::info!(peer = %answer.url, ticks = election_ticks - 2, "a peer answered: advancing election ticks");
            let _ = raft.advance_ticks(election_ticks - 2).await;
        }
        Err(e) => tracing::debug!(?e, "no peer answered: election ticks not advanced"),
    }
}

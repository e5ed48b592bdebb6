//! The receiving half of the peer transport: batches of raft messages from the other members, checked
//! and stepped into this member's raft node in order.
//!
//! ```text
//!   batch ─▶ for this cluster? from a member not removed? addressed to this member, from another one?
//!         ─▶ each message decoded and checked (`raft::check::refuse`)
//!         ─▶ proposals and ReadIndex requests of a term this member has left: dropped
//!         ─▶ RaftHandle::step, in order
//! ```
//!
//! Every refusal is an error the sender logs; a removed member is told so in the words of
//! [`REMOVED`](crate::raft::REMOVED), which makes it stop.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::MessageType;

use crate::membership::Cluster;
use crate::proto::modkvpb::MessageBatch;
use crate::raft::RaftHandle;

/// A refusal is logged again at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The sender, or where it sent, is not right for this member (wrong cluster, unknown or removed
    /// member, wrong addressee).
    Precondition(String),
    /// A message that does not decode or that raft must not step.
    Invalid(String),
    /// The node task is gone.
    Stopped,
}

/// Steps the raft messages other members send into this member's node.
#[derive(Clone)]
pub struct Receiver {
    raft: RaftHandle,
    cluster: Arc<Cluster>,
    last_refusal: Arc<Mutex<Option<Instant>>>,
}

impl Receiver {
    pub fn new(raft: RaftHandle, cluster: Arc<Cluster>) -> Receiver {
        Receiver { raft, cluster, last_refusal: Arc::new(Mutex::new(None)) }
    }

    /// Checks a batch and steps its messages into raft, in order.
    pub async fn accept(&self, b: MessageBatch) -> Result<(), Refusal> {
        self.check_cluster(b.cluster_id, b.from)?;
        let cluster = &self.cluster;
        if cluster.is_removed(b.from) {
            // As etcd answers a removed member: it learns it is out (it may have missed the commit of
            // its own removal) and stops.
            return Err(Refusal::Precondition(crate::raft::REMOVED.into()));
        }
        let me = cluster.member_id;
        if b.to != me {
            let msg =
                format!("member ID mismatch: member {:x} sent messages for member {:x} to member {me:x}", b.from, b.to);
            return Err(self.refuse(Refusal::Precondition(msg)));
        }
        if b.from == me || cluster.member(b.from).is_none() {
            let msg = format!("raft messages from member {:x}, which is not a member of this cluster", b.from);
            return Err(self.refuse(Refusal::Precondition(msg)));
        }
        let mut msgs = Vec::with_capacity(b.messages.len());
        for data in b.messages {
            let m = raft::eraftpb::Message::parse_from_bytes(&data)
                .map_err(|e| Refusal::Invalid(format!("undecodable raft message: {e}")))?;
            if let Some(why) = crate::raft::check::refuse(&m, b.from, me) {
                let msg = format!("refused a raft message from member {:x}: {why}", b.from);
                return Err(self.refuse(Refusal::Invalid(msg)));
            }
            msgs.push(m);
        }
        // Term 0: a sender that does not say.
        let term = self.raft.status.term.load(Ordering::SeqCst);
        let stale = b.term != 0 && b.term < term;
        for m in msgs {
            if stale && matches!(m.get_msg_type(), MessageType::MsgPropose | MessageType::MsgReadIndex) {
                tracing::info!(
                    from = format_args!("{:x}", b.from),
                    kind = ?m.get_msg_type(),
                    sent_in_term = b.term,
                    term,
                    "dropped a forwarded request of an older term"
                );
                continue;
            }
            self.raft.step(m).await.map_err(|_| Refusal::Stopped)?;
        }
        Ok(())
    }

    /// Refuses a request that names another cluster than this member's.
    pub fn check_cluster(&self, cluster_id: u64, from: u64) -> Result<(), Refusal> {
        let ours = self.cluster.cluster_id;
        if cluster_id == ours {
            return Ok(());
        }
        let msg = format!(
            "cluster ID mismatch: member {from:x} sent a request for cluster {cluster_id:x}, this member belongs to cluster {ours:x}"
        );
        Err(self.refuse(Refusal::Precondition(msg)))
    }

    /// Logs a refusal (at most every [`LOG_EVERY`]) and returns it.
    fn refuse(&self, r: Refusal) -> Refusal {
        let mut last = self.last_refusal.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            let (Refusal::Precondition(msg) | Refusal::Invalid(msg)) = &r else { return r };
            tracing::error!("refused a peer request: {msg}");
            *last = Some(Instant::now());
        }
        r
    }
}

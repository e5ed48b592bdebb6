//! The peer transport: raft messages from this member to the others, over HTTP/2 (gRPC `modkvpb.Peer`).
//!
//! ```text
//!   node task ──send(msgs)──▶ per-peer bounded queue ──▶ peer task: batch everything queued,
//!                              (full: drop + unreachable)   one `Send` RPC at a time on a long-lived h2
//!                                                           connection; failure: report unreachable
//!                                                           (and a failed snapshot), back off, drop the
//!                                                           backlog (raft sends again)
//! ```
//!
//! Sending never blocks the node task: a slow or dead peer fills only its own queue. Raft tolerates lost
//! messages, so whatever cannot be delivered is dropped and raft is told (`report_unreachable`,
//! `report_snapshot`), which makes it probe the peer again instead of streaming into the void.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::dial::PeerDialer;
use super::RaftHandle;
use crate::proto::modkvpb::peer_client::PeerClient;
use crate::proto::modkvpb::MessageBatch;
use crate::server::membership::Cluster;

/// Messages waiting for one peer before new ones are dropped.
const QUEUE: usize = 4096;
/// Messages sent in one RPC at most.
const MAX_BATCH: usize = 512;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long one `Send` may take (a snapshot takes longest).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// The same failure is logged again at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Largest message a member accepts from a peer (snapshots carry the whole state).
pub const MAX_PEER_MESSAGE: usize = 1 << 30;

pub struct Transport {
    cluster: Arc<Cluster>,
    raft: RaftHandle,
    runtime: tokio::runtime::Handle,
    peers: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
    dialer: Arc<PeerDialer>,
    /// When each peer last accepted a batch (for etcd's "started members" checks).
    pub last_ok: Arc<Mutex<HashMap<u64, Instant>>>,
}

impl Transport {
    /// A transport whose peer tasks run on `runtime` and report to `raft`.
    pub fn new(
        cluster: Arc<Cluster>,
        raft: RaftHandle,
        runtime: tokio::runtime::Handle,
        dialer: Arc<PeerDialer>,
    ) -> Arc<Transport> {
        Arc::new(Transport {
            cluster,
            raft,
            runtime,
            peers: Mutex::new(HashMap::new()),
            dialer,
            last_ok: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Queues messages for their peers; never blocks.
    pub fn send(&self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        for m in msgs {
            let to = m.to;
            let tx = peers.entry(to).or_insert_with(|| self.start_peer(to));
            match tx.try_send(m) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(m)) => {
                    tracing::debug!(to = format_args!("{to:x}"), "peer queue full; message dropped");
                    self.dropped(&m);
                }
                Err(mpsc::error::TrySendError::Closed(m)) => {
                    peers.remove(&to);
                    self.dropped(&m);
                }
            }
        }
    }

    /// Stops sending to a member that left the cluster.
    pub fn remove_peer(&self, id: u64) {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// Whether `id` accepted a batch within `within`.
    pub fn active_within(&self, id: u64, within: Duration) -> bool {
        self.last_ok.lock().unwrap_or_else(|e| e.into_inner()).get(&id).is_some_and(|t| t.elapsed() <= within)
    }

    fn dropped(&self, m: &Message) {
        self.raft.report_unreachable(m.to);
        if m.get_msg_type() == MessageType::MsgSnapshot {
            self.raft.report_snapshot(m.to, false);
        }
    }

    fn start_peer(&self, to: u64) -> mpsc::Sender<Message> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let peer = PeerTask {
            to,
            cluster: self.cluster.clone(),
            raft: self.raft.clone(),
            last_ok: self.last_ok.clone(),
            dialer: self.dialer.clone(),
            client: None,
            last_error: None,
        };
        self.runtime.spawn(peer.run(rx));
        tx
    }
}

struct PeerTask {
    to: u64,
    cluster: Arc<Cluster>,
    raft: RaftHandle,
    last_ok: Arc<Mutex<HashMap<u64, Instant>>>,
    dialer: Arc<PeerDialer>,
    /// The client for the peer's URL (shared with the dialer's other users) and that URL.
    client: Option<(String, PeerClient<Channel>)>,
    /// The last failure logged, and when.
    last_error: Option<(String, Instant)>,
}

impl PeerTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut backoff = BACKOFF_MIN;
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let snapshot = batch.iter().any(|m| m.get_msg_type() == MessageType::MsgSnapshot);
            match self.deliver(&batch).await {
                Ok(()) => {
                    backoff = BACKOFF_MIN;
                    self.last_ok.lock().unwrap_or_else(|e| e.into_inner()).insert(self.to, Instant::now());
                    if snapshot {
                        self.raft.report_snapshot(self.to, true);
                    }
                    if self.last_error.take().is_some() {
                        tracing::info!(peer = format_args!("{:x}", self.to), "peer reachable again");
                    }
                }
                Err(e) => {
                    self.log_failure(e);
                    self.raft.report_unreachable(self.to);
                    if snapshot {
                        self.raft.report_snapshot(self.to, false);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    // What queued up meanwhile is stale; raft sends again what still matters.
                    while let Ok(m) = rx.try_recv() {
                        if m.get_msg_type() == MessageType::MsgSnapshot {
                            self.raft.report_snapshot(self.to, false);
                        }
                    }
                }
            }
        }
    }

    fn log_failure(&mut self, e: String) {
        let repeat = self.last_error.as_ref().is_some_and(|(last, at)| *last == e && at.elapsed() < LOG_EVERY);
        if !repeat {
            tracing::warn!(peer = format_args!("{:x}", self.to), error = %e, "cannot send raft messages to peer");
            self.last_error = Some((e, Instant::now()));
        }
    }

    async fn deliver(&mut self, batch: &[Message]) -> Result<(), String> {
        let url = self.cluster.peer_url(self.to).ok_or_else(|| "no peer URL known for this member".to_string())?;
        if self.client.as_ref().is_none_or(|(u, _)| *u != url) {
            self.client = Some((url.clone(), self.dialer.client(&url)?));
        }
        let (_, client) = self.client.as_mut().expect("set above");
        let req = MessageBatch {
            cluster_id: self.cluster.cluster_id,
            from: self.cluster.member_id,
            to: self.to,
            messages: batch.iter().map(|m| m.write_to_bytes().expect("raft message encodes")).collect(),
        };
        let mut req = tonic::Request::new(req);
        req.set_timeout(SEND_TIMEOUT);
        // Connection failures need nothing here: the channel connects again on the next request.
        match client.send(req).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::FailedPrecondition && s.message() == super::REMOVED => {
                // The peer knows this member was removed from the cluster.
                self.raft.report_removed();
                Err(format!("{url}: {}", s.message()))
            }
            Err(s) => Err(format!("{url}: {}", s.message())),
        }
    }
}

//! The node task: the only owner of `RawNode`, following raft-rs's Ready steps in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};
use tokio::sync::{mpsc, oneshot, watch};

use super::log::RaftLog;
use super::transport::Transport;
use crate::error::{Error, Result};
use crate::fatal::Stop;
use crate::storage::{Backend, WriteBatch};
use crate::wait::Fail;

/// Entries kept in the log behind the applied index when it is compacted, so a briefly slow peer can
/// still catch up from the log (etcd's `SnapshotCatchUpEntries`).
const CATCH_UP_ENTRIES: u64 = 5000;
/// A ReadIndex batch unanswered for this long is sent again.
const READ_RETRY: Duration = Duration::from_secs(1);
/// Commands taken from the channel in one loop turn: they share one Ready, one fsync.
const MAX_BATCH: usize = 4096;

pub struct NodeConfig {
    pub id: u64,
    /// Voters and learners a new log starts with (a new cluster's initial members, or a joining member's
    /// view of the running cluster); ignored when the log already holds a configuration.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub tick: Duration,
    pub election_ticks: usize,
    pub snapshot_count: u64,
}

/// What the rest of the server can see of raft, updated by the node task.
#[derive(Default)]
pub struct RaftStatus {
    pub leader: AtomicU64,
    pub term: AtomicU64,
    pub commit: AtomicU64,
    /// Times a new leader became known (`etcd_server_leader_changes_seen_total`).
    pub leader_changes: AtomicU64,
}

/// What a member answers the raft messages of a member removed from the cluster (the words etcd uses);
/// the removed member's transport recognizes them, and its node task stops it with `Stop::Removed`.
pub const REMOVED: &str = "the member has been permanently removed from the cluster";

/// What the node task hands to the apply layer, in log order.
pub enum ToApply {
    /// Committed entries (configuration changes included: the node task has already applied them to
    /// raft; the apply layer records the member list and answers the request).
    Entries(Vec<Entry>),
    /// A snapshot from the leader: the apply layer replaces the state machine with it, writing the given
    /// log changes (the log reset to the snapshot) in the same batch, then says so.
    Snapshot(Snapshot, WriteBatch, std::sync::mpsc::SyncSender<Result<()>>),
}

/// What the leader knows of one member's log (for etcd's promote and remove checks).
#[derive(Debug, Clone, Copy)]
pub struct PeerProgress {
    pub matched: u64,
    pub recent_active: bool,
}

/// The leader's view of the cluster, or `None` on a follower.
pub type Progress = Option<(u64, HashMap<u64, PeerProgress>)>;

enum Command {
    Propose {
        id: u64,
        data: Vec<u8>,
    },
    ProposeConfChange {
        id: u64,
        cc: ConfChangeV2,
        context: Vec<u8>,
    },
    ReadIndex(oneshot::Sender<u64>),
    Step(Message),
    Unreachable(u64),
    SnapshotDone(u64, bool),
    TransferLeader(u64),
    /// Tick this many times at once if no leader is known ([`super::advance`]).
    AdvanceTicks(usize),
    Progress(oneshot::Sender<Progress>),
    /// A peer refused this member's messages: it was removed from the cluster.
    Removed,
}

#[derive(Clone)]
pub struct RaftHandle {
    tx: mpsc::Sender<Command>,
    pub status: Arc<RaftStatus>,
}

impl RaftHandle {
    /// Hands an entry to raft. Its result comes through [`Wait`] under `id`.
    pub async fn propose(&self, id: u64, data: Vec<u8>) -> Result<()> {
        self.tx.send(Command::Propose { id, data }).await.map_err(|_| Error::Stopped)
    }

    /// Hands a configuration change to raft; its result comes through [`Wait`] under `id`.
    pub async fn propose_conf_change(&self, id: u64, cc: ConfChangeV2, context: Vec<u8>) -> Result<()> {
        self.tx.send(Command::ProposeConfChange { id, cc, context }).await.map_err(|_| Error::Stopped)
    }

    /// The commit index a linearizable read must wait for (raft's ReadIndex).
    pub async fn read_index(&self) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::ReadIndex(tx)).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::LeaderChanged)
    }

    /// A message from a peer.
    pub async fn step(&self, m: Message) -> Result<()> {
        self.tx.send(Command::Step(m)).await.map_err(|_| Error::Stopped)
    }

    /// The transport could not deliver to `id` (never blocks: a full queue loses the report).
    pub fn report_unreachable(&self, id: u64) {
        let _ = self.tx.try_send(Command::Unreachable(id));
    }

    /// A snapshot sent to `id` was delivered (or not).
    pub fn report_snapshot(&self, id: u64, delivered: bool) {
        let _ = self.tx.try_send(Command::SnapshotDone(id, delivered));
    }

    /// A peer says this member was removed from the cluster (never blocks).
    pub fn report_removed(&self) {
        let _ = self.tx.try_send(Command::Removed);
    }

    /// Asks the leader to hand leadership to `to`.
    pub async fn transfer_leader(&self, to: u64) -> Result<()> {
        self.tx.send(Command::TransferLeader(to)).await.map_err(|_| Error::Stopped)
    }

    /// Fast-forwards the election clock by `ticks` while no leader is known ([`super::advance`]).
    pub async fn advance_ticks(&self, ticks: usize) -> Result<()> {
        self.tx.send(Command::AdvanceTicks(ticks)).await.map_err(|_| Error::Stopped)
    }

    /// The leader's progress of every member (`None` unless this member leads).
    pub async fn progress(&self) -> Result<Progress> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Progress(tx)).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }
}

/// The node task's end of the command channel whose other end is the [`RaftHandle`].
pub struct Inbox {
    rx: mpsc::Receiver<Command>,
    status: Arc<RaftStatus>,
}

/// A raft handle and the inbox of the node that will serve it: made first, so the peer transport (which
/// reports to the handle) exists before the node it belongs to.
pub fn channel() -> (RaftHandle, Inbox) {
    let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
    let status = Arc::new(RaftStatus::default());
    (RaftHandle { tx, status: status.clone() }, Inbox { rx, status })
}

pub struct RaftNode {
    node: RawNode<RaftLog>,
    backend: Arc<dyn Backend>,
    /// The requests waiting for their proposals: those raft drops are failed here.
    wait: Arc<dyn Fail>,
    rx: mpsc::Receiver<Command>,
    apply_tx: mpsc::UnboundedSender<ToApply>,
    transport: Arc<Transport>,
    id: u64,
    /// Set when this member has been removed from the cluster.
    removed: bool,
    applied: watch::Receiver<u64>,
    status: Arc<RaftStatus>,
    tick: Duration,
    snapshot_count: u64,
    /// ReadIndex requests waiting to be sent as one batch.
    reads: Vec<oneshot::Sender<u64>>,
    /// Sent ReadIndex batches by context.
    read_batches: HashMap<u64, (Instant, Vec<oneshot::Sender<u64>>)>,
    next_read: u64,
}

impl RaftNode {
    /// Creates the node; a new log is bootstrapped with `cfg.voters`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: NodeConfig,
        mut log: RaftLog,
        backend: Arc<dyn Backend>,
        wait: Arc<dyn Fail>,
        applied_index: u64,
        applied: watch::Receiver<u64>,
        apply_tx: mpsc::UnboundedSender<ToApply>,
        inbox: Inbox,
        transport: Arc<Transport>,
    ) -> Result<RaftNode> {
        // A joining member starts from the cluster's current configuration, not an empty one: the log it
        // replays holds only the changes made after the cluster was bootstrapped (the initial members are
        // not in it), and replaying them on top of the current configuration ends where the leader is.
        if log.is_new() && !cfg.voters.is_empty() {
            let mut batch = WriteBatch::default();
            let cs = ConfState { voters: cfg.voters.clone(), learners: cfg.learners.clone(), ..Default::default() };
            log.set_conf_state(cs, &mut batch);
            backend.write(batch, true)?;
        }
        // Entries go to apply as soon as raft reports them committed, which can be before the hard state
        // recording that commit index is durable: after a crash the applied index may be ahead of the
        // stored commit. Applied entries were committed, so the commit index is raised to match.
        if applied_index > log.hard_state().commit && applied_index <= log.last_index() {
            tracing::info!(
                applied_index,
                commit = log.hard_state().commit,
                "raising the stored commit index to the applied index"
            );
            log.set_commit(applied_index)?;
            log.persist()?;
        }
        let rc = raft::Config {
            id: cfg.id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: 1,
            applied: applied_index,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        rc.validate().map_err(|e| Error::Internal(format!("raft config: {e}")))?;
        let sole_voter = log.conf_state().voters == [cfg.id] && log.conf_state().learners.is_empty();
        let mut node =
            RawNode::new(&rc, log, &super::logger::logger()).map_err(|e| Error::Internal(format!("raft: {e}")))?;
        if sole_voter {
            // Alone in the cluster: no need to wait out an election timeout.
            node.campaign().map_err(|e| Error::Internal(format!("raft: {e}")))?;
        }
        let Inbox { rx, status } = inbox;
        Ok(RaftNode {
            node,
            backend,
            wait,
            rx,
            apply_tx,
            transport,
            id: cfg.id,
            removed: false,
            applied,
            status,
            tick: cfg.tick,
            snapshot_count: cfg.snapshot_count.max(1),
            reads: Vec::new(),
            read_batches: HashMap::new(),
            next_read: 0,
        })
    }

    /// Runs the node on its own thread until `stop` fires or every handle is dropped.
    pub fn spawn(
        mut self,
        stop: oneshot::Receiver<()>,
        fatal: crate::fatal::Reporter,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        crate::fatal::spawn_core_thread("raft", fatal.clone(), move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = fatal.send(Stop::Failed(format!("raft runtime: {e}")));
                    return;
                }
            };
            match rt.block_on(self.run(stop)) {
                Err(e) => {
                    let _ = fatal.send(Stop::Failed(format!("raft node stopped: {e}")));
                }
                Ok(()) if self.removed => {
                    let _ = fatal.send(Stop::Removed);
                }
                Ok(()) => {}
            }
        })
    }

    async fn run(&mut self, mut stop: oneshot::Receiver<()>) -> Result<()> {
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = ticker.tick() => {
                    self.node.tick();
                    self.retry_lost_reads();
                }
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { return Ok(()) };
                    self.handle(cmd);
                    for _ in 0..MAX_BATCH {
                        match self.rx.try_recv() {
                            Ok(cmd) => self.handle(cmd),
                            Err(_) => break,
                        }
                    }
                }
            }
            self.send_reads();
            if self.node.has_ready() {
                self.on_ready()?;
            }
            if self.removed {
                return Ok(());
            }
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Propose { id, data } => {
                if let Err(e) = self.node.propose(vec![], data) {
                    tracing::debug!(%e, "proposal dropped");
                    self.wait.fail(id, Error::NoLeader);
                }
            }
            Command::ProposeConfChange { id, cc, context } => {
                if self.node.raft.has_pending_conf() {
                    // raft-rs would turn the change into an empty entry; refuse it instead.
                    self.wait.fail(id, Error::Unhealthy);
                } else if let Err(e) = self.node.propose_conf_change(context, cc) {
                    tracing::info!(%e, "configuration change refused by raft");
                    self.wait.fail(id, conf_change_error(e));
                }
            }
            Command::ReadIndex(tx) => self.reads.push(tx),
            Command::Step(m) => {
                // Messages raft-rs would panic on (the peer API has refused the stateless cases).
                if let Some(why) = super::check::refuse_in_state(&self.node.raft, &m) {
                    tracing::warn!(from = format_args!("{:x}", m.from), "refused a raft message: {why}");
                } else if let Err(e) = self.node.step(m) {
                    tracing::debug!(%e, "peer message not stepped");
                }
            }
            Command::Unreachable(id) => self.node.report_unreachable(id),
            Command::SnapshotDone(id, ok) => {
                let status = if ok { SnapshotStatus::Finish } else { SnapshotStatus::Failure };
                self.node.report_snapshot(id, status);
            }
            Command::TransferLeader(to) => self.node.transfer_leader(to),
            Command::AdvanceTicks(n) => {
                // A member that already follows a leader keeps its clock: the leader's heartbeats reset it.
                if self.node.raft.leader_id == raft::INVALID_ID {
                    for _ in 0..n {
                        self.node.tick();
                    }
                }
            }
            Command::Removed => {
                tracing::warn!("a peer says this member was removed from the cluster");
                self.removed = true;
            }
            Command::Progress(tx) => {
                let raft = &self.node.raft;
                let progress = (raft.state == StateRole::Leader).then(|| {
                    let prs = raft.prs().iter().map(|(id, p)| {
                        (*id, PeerProgress { matched: p.matched, recent_active: p.recent_active || *id == self.id })
                    });
                    (raft.raft_log.last_index(), prs.collect())
                });
                let _ = tx.send(progress);
            }
        }
    }

    /// Sends all waiting reads as one ReadIndex request: one round serves them all.
    ///
    /// raft-rs drops a ReadIndex silently while the leader has not committed an entry of its own term,
    /// or while no leader is known: the reads wait here until it can answer.
    fn send_reads(&mut self) {
        if self.reads.is_empty() {
            return;
        }
        let raft = &self.node.raft;
        let can_answer = match raft.state {
            StateRole::Leader => raft.commit_to_current_term(),
            _ => raft.leader_id != raft::INVALID_ID,
        };
        if !can_answer {
            return;
        }
        self.next_read += 1;
        let ctx = self.next_read;
        self.node.read_index(ctx.to_be_bytes().to_vec());
        self.read_batches.insert(ctx, (Instant::now(), std::mem::take(&mut self.reads)));
    }

    /// Sends again the reads of batches raft never answered (dropped on a leader change or a lost message).
    fn retry_lost_reads(&mut self) {
        let lost: Vec<u64> =
            self.read_batches.iter().filter(|(_, (at, _))| at.elapsed() > READ_RETRY).map(|(ctx, _)| *ctx).collect();
        for ctx in lost {
            if let Some((_, waiters)) = self.read_batches.remove(&ctx) {
                self.reads.extend(waiters.into_iter().filter(|tx| !tx.is_closed()));
            }
        }
    }

    /// One turn of raft-rs's Ready loop, in the order raft-rs prescribes.
    fn on_ready(&mut self) -> Result<()> {
        let mut rd = self.node.ready();
        if let Some(ss) = rd.ss() {
            let old = self.status.leader.swap(ss.leader_id, Ordering::SeqCst);
            if old != ss.leader_id {
                if ss.leader_id != 0 {
                    // As etcd counts `etcd_server_leader_changes_seen_total`: losing the leader is not a
                    // change, the next leader is.
                    self.status.leader_changes.fetch_add(1, Ordering::SeqCst);
                }
                tracing::info!(leader = format_args!("{:x}", ss.leader_id), role = ?ss.raft_state, "leader changed");
                // Reads sent to the old leader will never be answered: ask the new one.
                for (_, (_, waiters)) in self.read_batches.drain() {
                    self.reads.extend(waiters);
                }
            }
        }
        // 1. Messages that need nothing persisted first (a leader's appends go out while it writes).
        self.send(rd.take_messages());
        // 2. A snapshot from the leader: the state machine and the log reset to it, in one batch written
        //    by apply (which has finished the entries before it); this task waits until it is durable.
        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot().clone())?;
        }
        // 3. Committed entries: durable on a quorum, ready to apply.
        self.commit(rd.take_committed_entries())?;
        // 4. New entries and hard state to the write-ahead log, one write and one fdatasync when raft says
        //    it must be durable (new entries, a new term or vote). A change of the commit index alone
        //    stays buffered until then: it can be learnt again from the leader (and is raised to the
        //    applied index at start), so a follower does not pay a second fsync per write when the leader
        //    tells it the entry committed.
        let store = self.node.mut_store();
        store.append(rd.entries())?;
        if let Some(hs) = rd.hs() {
            store.set_hard_state(hs.clone())?;
        }
        if rd.must_sync() {
            fail::fail_point!("raft::before_persist");
            store.persist()?;
            fail::fail_point!("raft::after_persist_before_send");
        }
        // 5. Persist before send: votes and append acknowledgements promise what is on disk, so they
        //    leave only after the write above is durable.
        self.send(rd.take_persisted_messages());
        for rs in rd.take_read_states() {
            let ctx = rs.request_ctx.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(0);
            for tx in self.read_batches.remove(&ctx).map(|(_, b)| b).unwrap_or_default() {
                let _ = tx.send(rs.index);
            }
        }
        // 6. Advance, then whatever the advance released.
        let mut light = self.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().set_commit(commit)?;
        }
        self.send(light.take_messages());
        self.commit(light.take_committed_entries())?;
        self.node.advance_apply();
        self.status.term.store(self.node.raft.term, Ordering::SeqCst);
        self.status.commit.store(self.node.raft.raft_log.committed, Ordering::SeqCst);
        self.maybe_compact_log()
    }

    fn install_snapshot(&mut self, snap: Snapshot) -> Result<()> {
        let meta = snap.get_metadata().clone();
        tracing::info!(
            index = meta.index,
            term = meta.term,
            bytes = snap.data.len(),
            "installing snapshot from the leader"
        );
        // The state and the log's truncation point change in one atomic batch (a crash leaves either both
        // old or both new); the write-ahead log is reset after that is durable.
        let mut log_batch = WriteBatch::default();
        self.node.mut_store().apply_snapshot(&meta, &mut log_batch);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.apply_tx.send(ToApply::Snapshot(snap, log_batch, tx)).map_err(|_| Error::Stopped)?;
        rx.recv().map_err(|_| Error::Stopped)??;
        self.node.mut_store().finish_snapshot(&meta)?;
        tracing::info!(index = meta.index, "applied incoming snapshot");
        Ok(())
    }

    /// Hands committed entries to apply; configuration changes take effect in raft here, in log order.
    fn commit(&mut self, entries: Vec<Entry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        for e in &entries {
            let applied = match e.get_entry_type() {
                EntryType::EntryNormal => continue,
                EntryType::EntryConfChange => ConfChange::parse_from_bytes(&e.data)
                    .map_err(|err| err.to_string())
                    .and_then(|cc| self.node.apply_conf_change(&cc).map_err(|err| err.to_string())),
                EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&e.data)
                    .map_err(|err| err.to_string())
                    .and_then(|cc| self.node.apply_conf_change(&cc).map_err(|err| err.to_string())),
            };
            match applied {
                Ok(cs) => self.conf_changed(cs)?,
                Err(err) => tracing::warn!(index = e.index, %err, "configuration change not applied"),
            }
        }
        fail::fail_point!("raft::before_apply");
        self.apply_tx.send(ToApply::Entries(entries)).map_err(|_| Error::Stopped)
    }

    fn conf_changed(&mut self, cs: ConfState) -> Result<()> {
        tracing::info!(voters = ?hex(&cs.voters), learners = ?hex(&cs.learners), "cluster configuration changed");
        let old = self.node.store().conf_state();
        for id in old.voters.iter().chain(&old.learners) {
            if !in_config(&cs, *id) {
                self.transport.remove_peer(*id);
            }
        }
        let (me_before, me_after) = (in_config(old, self.id), in_config(&cs, self.id));
        let mut batch = WriteBatch::default();
        self.node.mut_store().set_conf_state(cs, &mut batch);
        self.backend.write(batch, true)?;
        if me_before && !me_after {
            tracing::warn!("this member was removed from the cluster");
            self.removed = true;
        }
        Ok(())
    }

    /// Messages to other members, through the peer transport (a single member has none).
    fn send(&mut self, msgs: Vec<Message>) {
        self.transport.send(msgs);
    }

    /// Drops log entries that are applied and older than `snapshot_count` entries.
    fn maybe_compact_log(&mut self) -> Result<()> {
        let applied = *self.applied.borrow();
        let truncated = self.node.store().truncated_index();
        if applied.saturating_sub(truncated) <= self.snapshot_count + CATCH_UP_ENTRIES {
            return Ok(());
        }
        let to = applied - CATCH_UP_ENTRIES;
        self.node.mut_store().compact(to).map_err(|e| Error::Internal(format!("raft log compaction: {e}")))?;
        tracing::info!(index = to, "compacted raft log");
        Ok(())
    }
}

/// Whether `id` is a voter or a learner of `cs`.
fn in_config(cs: &ConfState, id: u64) -> bool {
    cs.voters.contains(&id) || cs.learners.contains(&id)
}

fn hex(ids: &[u64]) -> Vec<String> {
    ids.iter().map(|id| format!("{id:x}")).collect()
}

/// What a client sees when raft refuses a configuration change (one is still pending, or no leader).
fn conf_change_error(e: raft::Error) -> Error {
    match e {
        raft::Error::ProposalDropped => Error::NoLeader,
        other => Error::Internal(format!("configuration change refused: {other}")),
    }
}

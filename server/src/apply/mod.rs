//! The apply layer: turns committed raft entries into changes of the key space, in log order, and hands
//! each result to the request waiting for it.
//!
//! ```text
//!   raft task ──committed entries──▶ Applier (own thread) ──▶ kv (mvcc) ──▶ one WriteBatch
//!                                         │                               + applied index
//!                                         └──▶ Wait::trigger(request id, result)
//! ```
//!
//! Applying is deterministic: every member applies the same entries to the same state and gets the same
//! revisions. The applied index is written in the same batch as the changes it covers, so after a crash
//! the entries after it are applied again exactly once.
//!
//! `auth` applies auth changes and checks a write's permissions again at apply, in log order with the
//! auth changes (etcd's `applierV3` with auth).
//!
//! `kv` and `txn` are the request evaluator (etcd's `apply.go` / `txn.go`): Range, Put, DeleteRange and
//! Txn over a read view or a write transaction. The apply loop runs every write through them, and the
//! server its reads (a Range, a txn that only reads) over the store at one revision; they use only
//! `mvcc`, `lease`, `proto` and `error`.

pub mod auth;
pub mod kv;
pub mod txn;

use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType};
use tokio::sync::{mpsc, watch};

use crate::alarm::AlarmStore;
use crate::auth::AuthStore;
use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::membership::{ChangeContext, Cluster, Member};
use crate::mvcc::{KeyRange, KvStore};
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::{
    AlarmResponse, AlarmType, CompactionResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse,
    PutResponse, TxnResponse,
};
use crate::proto::modkvpb::InternalRaftRequest;
use crate::raft::ToApply;
use crate::storage::{meta, snapshot, Backend, Cf, WriteBatch};
use crate::wait::Wait;
use crate::watch::WatchHub;

macro_rules! applied {
    ($($variant:ident($t:ty)),* $(,)?) => {
        /// What applying one request produced.
        #[derive(Debug, Clone)]
        pub enum Applied {
            $($variant($t)),*
        }

        $(impl TryFrom<Applied> for $t {
            type Error = Applied;

            fn try_from(a: Applied) -> std::result::Result<$t, Applied> {
                match a {
                    Applied::$variant(r) => Ok(r),
                    #[allow(unreachable_patterns)]
                    other => Err(other),
                }
            }
        })*
    };
}

applied! {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    Alarm(AlarmResponse),
    Members(Vec<Member>),
    // An auth change applied; `Some(token)` for an `Authenticate`.
    Auth(Option<String>),
}

pub type ApplyResult = Result<Applied>;

/// The apply loop's state; `embed` builds it and hands it to [`Applier::spawn`].
pub struct Applier {
    pub kv: Arc<KvStore>,
    pub lessor: Arc<Lessor>,
    pub alarms: Arc<AlarmStore>,
    pub watch: Arc<WatchHub>,
    pub wait: Arc<Wait<Applied>>,
    pub backend: Arc<dyn Backend>,
    pub cluster: Arc<Cluster>,
    pub auth: Arc<AuthStore>,
    /// The last applied index (from storage at start).
    pub applied_index: u64,
    pub applied_tx: watch::Sender<u64>,
    /// Where a failure that stops applying is reported.
    pub fatal: crate::fatal::Reporter,
}

/// The applied index stored in `backend` (0 on a new member).
pub fn stored_applied_index(backend: &dyn Backend) -> Result<u64> {
    Ok(backend.get(Cf::Meta, meta::APPLIED_INDEX)?.and_then(|b| meta::decode_u64(&b)).unwrap_or(0))
}

impl Applier {
    /// Applies batches of committed entries until the sender is dropped.
    pub fn spawn(mut self, mut rx: mpsc::UnboundedReceiver<ToApply>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let fatal = self.fatal.clone();
        crate::fatal::spawn_core_thread("apply", fatal, move || {
            let mut next = None;
            loop {
                let Some(msg) = next.take().or_else(|| rx.blocking_recv()) else { return };
                let result = match msg {
                    ToApply::Entries(mut entries) => {
                        // Everything committed meanwhile goes into the same batch (up to a snapshot).
                        while let Ok(more) = rx.try_recv() {
                            match more {
                                ToApply::Entries(more) => entries.extend(more),
                                snap => {
                                    next = Some(snap);
                                    break;
                                }
                            }
                        }
                        self.apply(entries)
                    }
                    ToApply::Snapshot(snap, log_batch, done) => {
                        let r = self.restore(&snap, log_batch);
                        let _ = done.send(r.clone());
                        r
                    }
                };
                if let Err(e) = result {
                    let _ = self.fatal.send(crate::fatal::Stop::Failed(format!("apply failed: {e}")));
                    return;
                }
            }
        })
    }

    /// Replaces the state machine by a snapshot from the leader, durably, and reloads everything kept
    /// in memory from it.
    fn restore(&mut self, snap: &raft::eraftpb::Snapshot, log_batch: WriteBatch) -> Result<()> {
        let index = snap.get_metadata().index;
        if index <= self.applied_index {
            tracing::info!(index, applied = self.applied_index, "snapshot older than the state; only the log is reset");
            self.backend.write(log_batch, true)?;
            return Ok(());
        }
        let mut batch = snapshot::restore_batch(&*self.backend, &snap.data)?;
        fail::fail_point!("raft::snapshot_install_mid", |_| Err(Error::Internal(
            "failpoint raft::snapshot_install_mid".into()
        )));
        batch.extend(log_batch);
        batch.put(Cf::Meta, meta::APPLIED_INDEX, meta::encode_u64(index));
        self.backend.write(batch, true)?;
        self.kv.reload()?;
        self.lessor.reload(&*self.backend, &self.kv)?;
        self.alarms.reload(&*self.backend)?;
        self.cluster.reload(&*self.backend)?;
        self.auth.reload(&*self.backend)?;
        self.applied_index = index;
        self.watch.restore(self.kv.current_rev());
        self.applied_tx.send_replace(index);
        tracing::info!(index, revision = self.kv.current_rev(), "state machine restored from snapshot");
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<()> {
        let mut batch = WriteBatch::default();
        let mut results = Vec::new();
        for e in entries {
            if e.index <= self.applied_index {
                continue;
            }
            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                match crate::proto::deep::decode_entry(&e.data, crate::proto::MAX_TXN_DEPTH) {
                    Ok(req) => {
                        let id = req.header.as_ref().map(|h| h.id).unwrap_or(req.id);
                        let r = self.apply_request(&req, e.index, &mut batch);
                        if let Err(Error::Internal(msg)) = &r {
                            return Err(Error::Internal(msg.clone()));
                        }
                        results.push((id, r));
                    }
                    // A committed entry is never skipped: skipping it would leave this member's state
                    // apart from what was acknowledged and from the other members'. Stop instead (the
                    // validation before a proposal keeps what cannot be decoded out of the log).
                    Err(err) => {
                        return Err(Error::Internal(format!("raft entry {} cannot be decoded: {err:?}", e.index)));
                    }
                }
            } else if e.get_entry_type() != EntryType::EntryNormal {
                if let Some((id, members)) = self.apply_conf_change(&e, &mut batch) {
                    results.push((id, Ok(Applied::Members(members))));
                }
            }
            self.applied_index = e.index;
            batch.put(Cf::Meta, meta::APPLIED_INDEX, meta::encode_u64(e.index));
        }
        fail::fail_point!("apply::before_write", |_| Err(Error::Internal("failpoint apply::before_write".into())));
        let events = self.kv.commit(batch, false)?;
        self.watch.notify(&events, self.kv.current_rev());
        self.applied_tx.send_replace(self.applied_index);
        for (id, r) in results {
            self.wait.trigger(id, r);
        }
        Ok(())
    }

    /// Records a configuration change (raft has it already) in the member list; returns the request to
    /// answer, if this member proposed it.
    fn apply_conf_change(&self, e: &Entry, batch: &mut WriteBatch) -> Option<(u64, Vec<Member>)> {
        let changes: Vec<(ConfChangeType, u64)> = if e.get_entry_type() == EntryType::EntryConfChange {
            let cc = ConfChange::parse_from_bytes(&e.data).ok()?;
            vec![(cc.get_change_type(), cc.node_id)]
        } else {
            let cc = ConfChangeV2::parse_from_bytes(&e.data).ok()?;
            cc.changes.iter().map(|c| (c.get_change_type(), c.node_id)).collect()
        };
        let ctx: Option<ChangeContext> = serde_json::from_slice(&e.context).ok();
        for (kind, id) in changes {
            match kind {
                ConfChangeType::AddNode if self.cluster.member(id).is_some() => self.cluster.promote(id),
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => match &ctx {
                    Some(c) if c.member.id == id => {
                        let mut m = c.member.clone();
                        m.is_learner = kind == ConfChangeType::AddLearnerNode;
                        self.cluster.add(m);
                    }
                    _ => tracing::error!(index = e.index, "configuration change without its member; not recorded"),
                },
                ConfChangeType::RemoveNode => self.cluster.remove(id),
            }
        }
        self.cluster.save(batch);
        ctx.map(|c| (c.request_id, self.cluster.members()))
    }

    fn apply_request(&self, req: &InternalRaftRequest, index: u64, batch: &mut WriteBatch) -> ApplyResult {
        if let Some(r) = auth::apply(&self.auth, req, index, batch) {
            return r.map(Applied::Auth);
        }
        auth::check_write(&self.auth, req, &self.lessor)?;
        // Out of space: nothing that grows the database is applied until the alarm is cleared.
        let grows =
            req.put.is_some() || req.lease_grant.is_some() || req.txn.as_ref().is_some_and(|t| !txn::is_read_only(t));
        if grows && self.alarms.is_raised(AlarmType::Nospace) {
            return Err(Error::NoSpace);
        }
        if let Some(p) = &req.put {
            let mut w = self.kv.write(batch);
            let r = kv::put(&mut w, p, &self.lessor);
            w.end();
            return r.map(Applied::Put);
        }
        if let Some(d) = &req.delete_range {
            let mut w = self.kv.write(batch);
            let r = kv::delete_range(&mut w, d, &self.lessor);
            w.end();
            return r.map(Applied::DeleteRange);
        }
        if let Some(t) = &req.txn {
            // Checks run before the first change, so a failing txn changes nothing.
            let mut w = self.kv.write(batch);
            let r = txn::txn(&mut w, t, &self.lessor);
            w.end();
            return r.map(Applied::Txn);
        }
        if let Some(c) = &req.compaction {
            self.kv.compact(c.revision, batch)?;
            return Ok(Applied::Compaction(CompactionResponse { header: kv::header(self.kv.current_rev()) }));
        }
        if let Some(g) = &req.lease_grant {
            let ttl = self.lessor.grant(g.id, g.ttl, batch)?;
            let header = kv::header(self.kv.current_rev());
            return Ok(Applied::LeaseGrant(LeaseGrantResponse { header, id: g.id, ttl, error: String::new() }));
        }
        if let Some(r) = &req.lease_revoke {
            // The lease and its keys go in one revision.
            let keys = self.lessor.revoke(r.id, batch)?;
            let mut w = self.kv.write(batch);
            for k in &keys {
                w.delete_range(&KeyRange::single(k));
            }
            let rev = w.end();
            return Ok(Applied::LeaseRevoke(LeaseRevokeResponse { header: kv::header(rev) }));
        }
        if let Some(a) = &req.alarm {
            let kind = AlarmType::try_from(a.alarm).unwrap_or(AlarmType::None);
            let changed = match AlarmAction::try_from(a.action) {
                Ok(AlarmAction::Activate) => self.alarms.activate(a.member_id, kind, batch),
                Ok(AlarmAction::Deactivate) => self.alarms.deactivate(a.member_id, kind, batch),
                _ => None,
            };
            if let Some(m) = &changed {
                tracing::warn!(member = format_args!("{:x}", m.member_id), alarm = ?kind, action = a.action, "alarm changed");
            }
            return Ok(Applied::Alarm(AlarmResponse { header: None, alarms: changed.into_iter().collect() }));
        }
        if let Some(a) = &req.member_attributes {
            self.cluster.set_attributes(a.id, &a.name, a.client_urls.clone());
            self.cluster.save(batch);
            return Ok(Applied::Members(self.cluster.members()));
        }
        if let Some(u) = &req.member_update {
            if self.cluster.member(u.id).is_none() {
                return Err(Error::MemberNotFound);
            }
            self.cluster.set_peer_urls(u.id, u.peer_ur_ls.clone());
            self.cluster.save(batch);
            return Ok(Applied::Members(self.cluster.members()));
        }
        Err(Error::Internal("unknown request in raft entry".into()))
    }
}

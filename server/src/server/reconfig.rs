//! Membership changes (etcd's `MemberAdd` / `MemberRemove` / `MemberUpdate` / `MemberPromote`), run on
//! the leader (a follower forwards them), publishing a member's attributes, and leader moves.
//!
//! ```text
//!   api (any member) ──▶ change_members ──not leader──▶ peer RPC ChangeMembers on the leader
//!                                 │ leader
//!                                 ├─ etcd's checks (URLs in use, learner limit, started members, learner in sync)
//!                                 └─ propose a raft configuration change (context: request id + member)
//!                                      ──▶ node task applies it to raft ──▶ apply records the member list
//!                                      ──▶ Wait::trigger(request id, member list)
//! ```
//!
//! Checks need the leader's view of its peers (raft progress), which is why a follower forwards.

use std::time::Duration;

use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};

use super::EtcdServer;
use crate::apply::Applied;
use crate::error::{Error, Result};
use crate::membership::{self, ChangeContext, Member};
use crate::proto::etcdserverpb as pb;
use crate::proto::modkvpb::member_change_request::Request as Change;
use crate::proto::modkvpb::peer_client::PeerClient;
use crate::proto::modkvpb::{InternalRaftRequest, MemberAttributes, MemberChangeRequest, MemberChangeResponse};
use crate::raft::PeerProgress;
use tonic::transport::Channel;

/// A learner may be promoted once its log has this share of the leader's (etcd's `readyPercent`).
const LEARNER_READY: f64 = 0.9;
/// Learners a cluster may have at once (etcd's `maxLearners`).
const MAX_LEARNERS: usize = 1;

/// Peer URLs as etcd keeps them, or etcd's error for a bad one.
fn parse_urls(urls: &[String]) -> Result<Vec<String>> {
    if urls.is_empty() {
        return Err(Error::MemberBadUrls);
    }
    urls.iter()
        .map(|u| {
            let p = url::Url::parse(u).map_err(|_| Error::MemberBadUrls)?;
            if !matches!(p.scheme(), "http" | "https") || p.host_str().is_none() || p.port_or_known_default().is_none()
            {
                return Err(Error::MemberBadUrls);
            }
            Ok(membership::url_string(&p))
        })
        .collect()
}

fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

impl EtcdServer {
    /// Runs a membership change on the leader (here, or forwarded to it).
    pub async fn change_members(&self, req: Change) -> Result<MemberChangeResponse> {
        if self.is_leader() {
            return self.change_members_here(req).await;
        }
        let mut client = self.leader_client()?;
        let change = MemberChangeRequest { cluster_id: self.cluster.cluster_id, request: Some(req), term: self.term() };
        let mut r = tonic::Request::new(change);
        r.set_timeout(self.cfg.request_timeout);
        Ok(client.change_members(r).await?.into_inner())
    }

    /// A membership change on the leader.
    pub async fn change_members_here(&self, req: Change) -> Result<MemberChangeResponse> {
        let (member, members) = match req {
            Change::Add(r) => self.member_add(r).await?,
            Change::Remove(r) => self.member_remove(r.id).await?,
            Change::Promote(r) => self.member_promote(r.id).await?,
            Change::Update(r) => self.member_update(r).await?,
        };
        Ok(MemberChangeResponse { member: Some(member.into()), members: members.into_iter().map(Into::into).collect() })
    }

    /// A peer-service client for the leader (for what only the leader can answer).
    pub(super) fn leader_client(&self) -> Result<PeerClient<Channel>> {
        let leader = self.leader();
        if leader == 0 {
            return Err(Error::NoLeader);
        }
        let url = self.cluster.peer_url(leader).ok_or(Error::NoLeader)?;
        self.dialer.client(&url).map_err(Error::Internal)
    }

    /// The leader's last index and the progress of every member; `NotLeader` elsewhere.
    async fn leader_progress(&self) -> Result<(u64, std::collections::HashMap<u64, PeerProgress>)> {
        self.raft.progress().await?.ok_or(Error::NotLeader)
    }

    async fn member_add(&self, r: pb::MemberAddRequest) -> Result<(Member, Vec<Member>)> {
        let urls = parse_urls(&r.peer_ur_ls)?;
        let members = self.cluster.members();
        if members.iter().any(|m| m.peer_urls.iter().any(|u| urls.contains(u))) {
            return Err(Error::PeerUrlExists);
        }
        if r.is_learner {
            if members.iter().filter(|m| m.is_learner).count() >= MAX_LEARNERS {
                return Err(Error::TooManyLearners);
            }
        } else {
            // --strict-reconfig-check: the voters that are up must still make a quorum once the new,
            // not yet started, member counts.
            let (_, prs) = self.leader_progress().await?;
            let voters: Vec<u64> = members.iter().filter(|m| !m.is_learner).map(|m| m.id).collect();
            let started = voters.iter().filter(|id| prs.get(id).is_some_and(|p| p.recent_active)).count();
            if started < quorum(voters.len() + 1) {
                return Err(Error::NotEnoughStartedMembers);
            }
        }
        let id = membership::new_member_id(&urls, self.cluster.cluster_id);
        let member = Member { id, name: String::new(), peer_urls: urls, client_urls: vec![], is_learner: r.is_learner };
        let kind = if r.is_learner { ConfChangeType::AddLearnerNode } else { ConfChangeType::AddNode };
        let members = self.propose_conf_change(kind, member.clone()).await?;
        tracing::info!(member = format_args!("{id:x}"), learner = r.is_learner, "added member");
        Ok((member, members))
    }

    async fn member_remove(&self, id: u64) -> Result<(Member, Vec<Member>)> {
        let member = self.cluster.member(id).ok_or(Error::MemberNotFound)?;
        if !member.is_learner {
            // --strict-reconfig-check: the voters left that are up must make a quorum.
            let (_, prs) = self.leader_progress().await?;
            let left: Vec<u64> = self.cluster.voter_ids().into_iter().filter(|v| *v != id).collect();
            let started = left.iter().filter(|v| prs.get(v).is_some_and(|p| p.recent_active)).count();
            if started < quorum(left.len()) {
                return Err(Error::NotEnoughStartedMembers);
            }
        }
        let members = self.propose_conf_change(ConfChangeType::RemoveNode, member.clone()).await?;
        tracing::info!(member = format_args!("{id:x}"), "removed member");
        Ok((member, members))
    }

    async fn member_promote(&self, id: u64) -> Result<(Member, Vec<Member>)> {
        let member = self.cluster.member(id).ok_or(Error::MemberNotFound)?;
        if !member.is_learner {
            return Err(Error::MemberNotLearner);
        }
        let (last, prs) = self.leader_progress().await?;
        let matched = prs.get(&id).map_or(0, |p| p.matched);
        if (matched as f64) < (last as f64) * LEARNER_READY {
            return Err(Error::LearnerNotReady);
        }
        let members = self.propose_conf_change(ConfChangeType::AddNode, member.clone()).await?;
        tracing::info!(member = format_args!("{id:x}"), "promoted learner");
        Ok((Member { is_learner: false, ..member }, members))
    }

    async fn member_update(&self, mut r: pb::MemberUpdateRequest) -> Result<(Member, Vec<Member>)> {
        let member = self.cluster.member(r.id).ok_or(Error::MemberNotFound)?;
        r.peer_ur_ls = parse_urls(&r.peer_ur_ls)?;
        let others = self.cluster.members().into_iter().filter(|m| m.id != r.id);
        if others.into_iter().any(|m| m.peer_urls.iter().any(|u| r.peer_ur_ls.contains(u))) {
            return Err(Error::PeerUrlExists);
        }
        let urls = r.peer_ur_ls.clone();
        let members =
            self.propose_members(InternalRaftRequest { member_update: Some(r), ..Default::default() }).await?;
        Ok((Member { peer_urls: urls, ..member }, members))
    }

    /// Publishes this member's name and client URLs through raft (etcd does so at every start).
    pub async fn publish(&self, name: &str, client_urls: Vec<String>) -> Result<()> {
        let a = MemberAttributes { id: self.cluster.member_id, name: name.to_string(), client_urls };
        self.propose_members(InternalRaftRequest { member_attributes: Some(a), ..Default::default() }).await?;
        Ok(())
    }

    async fn propose_members(&self, req: InternalRaftRequest) -> Result<Vec<Member>> {
        match self.propose(req).await? {
            Applied::Members(ms) => Ok(ms),
            other => Err(Error::Internal(format!("unexpected apply result {other:?}"))),
        }
    }

    async fn propose_conf_change(&self, kind: ConfChangeType, member: Member) -> Result<Vec<Member>> {
        let id = self.ids.next();
        let mut single = ConfChangeSingle::default();
        single.set_change_type(kind);
        single.node_id = member.id;
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(single);
        let context = serde_json::to_vec(&ChangeContext { request_id: id, member }).expect("member encodes");
        let rx = self.wait.register(id);
        if let Err(e) = self.raft.propose_conf_change(id, cc, context).await {
            self.wait.cancel(id);
            return Err(e);
        }
        match tokio::time::timeout(self.cfg.request_timeout, rx).await {
            Ok(Ok(Ok(Applied::Members(ms)))) => Ok(ms),
            Ok(Ok(Ok(other))) => Err(Error::Internal(format!("unexpected apply result {other:?}"))),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => {
                self.wait.cancel(id);
                Err(Error::Timeout)
            }
        }
    }

    /// Hands leadership to `to` (etcd's MoveLeader): only the leader can, and only to a voter.
    pub async fn move_leader(&self, to: u64) -> Result<()> {
        if !self.is_leader() {
            return Err(Error::NotLeader);
        }
        if !self.cluster.member(to).is_some_and(|m| !m.is_learner) {
            return Err(Error::BadLeaderTransferee);
        }
        if to == self.cluster.member_id {
            return Ok(());
        }
        self.raft.transfer_leader(to).await?;
        let deadline = tokio::time::Instant::now() + self.cfg.request_timeout;
        while tokio::time::Instant::now() < deadline {
            if self.leader() == to {
                tracing::info!(to = format_args!("{to:x}"), "leadership transferred");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(Error::LeaderTransferTimeout)
    }

    /// Refuses what a learner cannot serve (everything but serializable reads and status).
    pub(super) fn not_learner(&self) -> Result<()> {
        if self.cluster.is_learner(self.cluster.member_id) {
            return Err(Error::NotSupportedForLearner);
        }
        Ok(())
    }
}

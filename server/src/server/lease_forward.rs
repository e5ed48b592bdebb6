//! What only the leader answers about leases, because its clock is the one that counts: a keep-alive
//! renews the lease there, and its remaining time is read there. A follower forwards both over the peer
//! port (`modkvpb.Peer`), stamped with its term so a late one is refused.
//!
//! ```text
//!   api::lease ─▶ lease_renew / lease_time_to_live ─leader─▶ Lessor
//!                                                  └follower─▶ peer RPC on the leader ─▶ lease_*_here
//! ```

use super::EtcdServer;
use crate::error::Result;
use crate::proto::etcdserverpb as pb;

impl EtcdServer {
    /// A lease keep-alive: the leader's clock counts, so a follower forwards it.
    pub async fn lease_renew(&self, id: i64) -> Result<i64> {
        if self.is_leader() {
            return self.lessor.renew(id);
        }
        let mut client = self.leader_client()?;
        let req =
            crate::proto::modkvpb::LeaseRenewRequest { cluster_id: self.cluster.cluster_id, id, term: self.term() };
        let mut r = tonic::Request::new(req);
        r.set_timeout(self.cfg.request_timeout);
        Ok(client.lease_renew(r).await?.into_inner().ttl)
    }

    /// A lease's remaining time: the leader's clock counts (keep-alives renew it there), so a follower
    /// asks the leader, as etcd does.
    pub async fn lease_time_to_live(&self, r: pb::LeaseTimeToLiveRequest) -> Result<pb::LeaseTimeToLiveResponse> {
        if self.is_leader() || self.leader() == 0 {
            return Ok(self.lease_time_to_live_here(&r));
        }
        let mut client = self.leader_client()?;
        let req =
            crate::proto::modkvpb::LeaseTimeToLiveRequest { cluster_id: self.cluster.cluster_id, request: Some(r) };
        let mut req = tonic::Request::new(req);
        req.set_timeout(self.cfg.request_timeout);
        let mut resp = client.lease_time_to_live(req).await?.into_inner();
        // The answer is this member's: its header.
        resp.header = Some(self.headers.current());
        Ok(resp)
    }

    /// A lease's remaining time on this member's clock, with this member's header.
    pub fn lease_time_to_live_here(&self, r: &pb::LeaseTimeToLiveRequest) -> pb::LeaseTimeToLiveResponse {
        pb::LeaseTimeToLiveResponse { header: Some(self.headers.current()), ..self.lessor.time_to_live_response(r) }
    }
}

//! Response shapes on the wire, etcd 3.4 against modkv: for each Maintenance, Cluster, Lease and
//! compaction call, which fields a response carries (proto3 leaves zero values out, so this is also which
//! are non-zero), inside its header too and inside listed members. Clients assert on these: etcd 3.4
//! answers `Defragment` and `MoveLeader` with an empty message, no header.
//!
//! Responses are decoded by [`Shape`], which keeps field numbers and skips values, so the check does not
//! depend on ids, revisions or terms, which differ between the two servers.

use std::collections::BTreeSet;

use modkv_tests::grpc::Client;
use modkv_tests::*;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType};

/// The field numbers of a message, with the fields of its header (field 1) and of the messages in
/// fields `A` and `B` (every element of a repeated field, merged).
#[derive(Debug, Default, Clone, PartialEq)]
struct Shape<const A: u32 = 0, const B: u32 = 0> {
    fields: BTreeSet<u32>,
    nested: std::collections::BTreeMap<u32, BTreeSet<u32>>,
}

impl<const A: u32, const B: u32> prost::Message for Shape<A, B> {
    fn encode_raw(&self, _: &mut impl BufMut) {}
    fn merge_field(
        &mut self,
        tag: u32,
        wt: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        self.fields.insert(tag);
        if wt == WireType::LengthDelimited && (tag == 1 || tag == A || tag == B) {
            // A nested message's own fields (its length-delimited fields are not looked into: the
            // header's and a member's fields are all scalars or strings).
            let mut inner = Shape::<0, 0>::default();
            prost::encoding::message::merge(wt, &mut inner, buf, ctx)?;
            self.nested.entry(tag).or_default().extend(inner.fields);
            return Ok(());
        }
        prost::encoding::skip_field(wt, tag, buf, ctx)
    }
    fn encoded_len(&self) -> usize {
        0
    }
    fn clear(&mut self) {
        *self = Shape::default();
    }
}

/// A request of one or two scalar or repeated-string fields, enough for the calls below.
#[derive(Clone, PartialEq, prost::Message)]
struct Req {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(string, repeated, tag = "2")]
    urls: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MemberAddReq {
    #[prost(string, repeated, tag = "1")]
    peer_urls: Vec<String>,
    #[prost(bool, tag = "2")]
    is_learner: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Empty {}

/// `MemberListResponse.members`: ids and learner flags.
#[derive(Clone, PartialEq, prost::Message)]
struct MemberListResp {
    #[prost(message, repeated, tag = "2")]
    members: Vec<Member>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Member {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(bool, tag = "5")]
    is_learner: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LeaseGrantResp {
    #[prost(int64, tag = "2")]
    id: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StatusHeader {
    #[prost(message, optional, tag = "1")]
    header: Option<modkv_tests::grpc::ResponseHeader>,
}

fn shapes(s: &Server) -> Vec<(&'static str, String)> {
    let mut c = Client::connect(&s.endpoint()).unwrap();
    let mut out = Vec::new();
    macro_rules! call {
        ($name:literal, $shape:ty, $req:expr) => {{
            let r: Result<$shape, _> = c.call($name, $req);
            out.push(($name, format!("{r:?}")));
        }};
    }
    let me = {
        let h: StatusHeader = c.call("/etcdserverpb.Maintenance/Status", Empty {}).unwrap();
        h.header.unwrap().member_id
    };
    call!("/etcdserverpb.Maintenance/Status", Shape, Empty {});
    call!("/etcdserverpb.Maintenance/Alarm", Shape<2>, Empty {});
    call!("/etcdserverpb.Maintenance/Defragment", Shape, Empty {});
    call!("/etcdserverpb.Maintenance/Hash", Shape, Empty {});
    call!("/etcdserverpb.Maintenance/HashKV", Shape, Empty {});
    call!("/etcdserverpb.Maintenance/MoveLeader", Shape, Req { id: me, urls: vec![] });
    call!("/etcdserverpb.Cluster/MemberList", Shape<2>, Empty {});
    call!(
        "/etcdserverpb.Cluster/MemberAdd",
        Shape<2, 3>,
        MemberAddReq { peer_urls: vec!["http://127.0.0.1:2".into()], is_learner: true }
    );
    let list: MemberListResp = c.call("/etcdserverpb.Cluster/MemberList", Empty {}).unwrap();
    let learner = list.members.iter().find(|m| m.is_learner).expect("the learner just added").id;
    call!("/etcdserverpb.Cluster/MemberUpdate", Shape<2>, Req { id: learner, urls: vec!["http://127.0.0.1:3".into()] });
    call!("/etcdserverpb.Cluster/MemberRemove", Shape<2>, Req { id: learner, urls: vec![] });
    call!("/etcdserverpb.Cluster/MemberPromote", Shape<2>, Req { id: me, urls: vec![] });
    let lease: LeaseGrantResp = c.call("/etcdserverpb.Lease/LeaseGrant", Req { id: 60, urls: vec![] }).unwrap();
    call!("/etcdserverpb.Lease/LeaseGrant", Shape, Req { id: 60, urls: vec![] });
    call!("/etcdserverpb.Lease/LeaseTimeToLive", Shape, Req { id: lease.id as u64, urls: vec![] });
    call!("/etcdserverpb.Lease/LeaseLeases", Shape<2>, Empty {});
    call!("/etcdserverpb.Lease/LeaseRevoke", Shape, Req { id: lease.id as u64, urls: vec![] });
    call!("/etcdserverpb.KV/Compact", Shape, Req { id: 1, urls: vec![] });
    out
}

#[test]
fn maintenance_cluster_and_lease_responses_carry_etcds_fields() {
    let servers = start_all(vec![(Kind::Etcd, ServerOpts::new()), (Kind::Modkv, ServerOpts::new())]);
    let (etcd, modkv) = (shapes(&servers[0]), shapes(&servers[1]));
    // What is checked, seen from etcd (so a change of etcd's side is visible in the log).
    for (name, shape) in &etcd {
        eprintln!("{name}: {shape}");
    }
    assert!(etcd.contains(&("/etcdserverpb.Maintenance/Defragment", "Ok(Shape { fields: {}, nested: {} })".into())));
    assert!(etcd.contains(&("/etcdserverpb.Maintenance/MoveLeader", "Ok(Shape { fields: {}, nested: {} })".into())));
    // etcd 3.4 forgets that a learner is one when its peer URLs are updated (MemberUpdate builds the
    // member's raft attributes from the URLs alone), so the learner's `isLearner` (field 5) is gone from
    // the members it lists; modkv keeps it (as etcd 3.5 does).
    let update = "/etcdserverpb.Cluster/MemberUpdate";
    let etcd_update = etcd.iter().find(|(n, _)| *n == update).unwrap();
    assert_eq!(etcd_update.1, "Ok(Shape { fields: {1, 2}, nested: {1: {1, 2, 4}, 2: {1, 2, 3, 4}} })");
    let modkv_update = modkv.iter().find(|(n, _)| *n == update).unwrap();
    assert_eq!(modkv_update.1, "Ok(Shape { fields: {1, 2}, nested: {1: {1, 2, 4}, 2: {1, 2, 3, 4, 5}} })");
    let differ: Vec<String> = etcd
        .iter()
        .zip(&modkv)
        .filter(|((name, e), (_, m))| e != m && *name != update)
        .map(|((name, e), (_, m))| format!("{name}: etcd {e}, modkv {m}"))
        .collect();
    assert!(differ.is_empty(), "shapes differ:\n{}", differ.join("\n"));
}

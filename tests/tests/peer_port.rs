//! Forged raft messages on modkv's peer port (issue 10, finding 7): a member refuses, with an error,
//! messages from a member it does not know, messages whose sender or receiver differ from the batch's,
//! and messages raft-rs would panic on; a heartbeat committing past the log does not take it down.
//!
//! modkv only: etcd's peer port speaks rafthttp, not `modkvpb.Peer`, so there is no etcd twin. The
//! messages are hand-written prost structs mirroring `modkvpb.MessageBatch` and raft-rs's
//! `eraftpb.Message` field numbers.

use std::time::Duration;

use modkv_tests::cluster::Cluster;
use modkv_tests::grpc::{unary_once, GrpcError};
use modkv_tests::Kind;
use prost::Message as _;

/// `modkvpb.MessageBatch`
#[derive(Clone, PartialEq, prost::Message)]
struct MessageBatch {
    #[prost(uint64, tag = "1")]
    cluster_id: u64,
    #[prost(uint64, tag = "2")]
    from: u64,
    #[prost(uint64, tag = "3")]
    to: u64,
    #[prost(bytes = "vec", repeated, tag = "4")]
    messages: Vec<Vec<u8>>,
    #[prost(uint64, tag = "5")]
    term: u64,
}

/// `modkvpb.SendResponse`
#[derive(Clone, PartialEq, prost::Message)]
struct SendResponse {}

/// `eraftpb.Message` (the fields used here)
#[derive(Clone, PartialEq, prost::Message)]
struct RaftMessage {
    #[prost(int32, tag = "1")]
    msg_type: i32,
    #[prost(uint64, tag = "2")]
    to: u64,
    #[prost(uint64, tag = "3")]
    from: u64,
    #[prost(uint64, tag = "4")]
    term: u64,
    #[prost(uint64, tag = "8")]
    commit: u64,
}

const MSG_HUP: i32 = 0;
const MSG_PROPOSE: i32 = 2;
const MSG_HEARTBEAT: i32 = 8;

fn send(c: &Cluster, to: usize, from: u64, msgs: &[RaftMessage]) -> Result<SendResponse, GrpcError> {
    let status = c[to].status().expect("endpoint status");
    let batch = MessageBatch {
        cluster_id: status["header"]["cluster_id"].as_u64().unwrap(),
        from,
        to: c[to].id,
        messages: msgs.iter().map(|m| m.encode_to_vec()).collect(),
        term: status["header"]["raft_term"].as_u64().unwrap(),
    };
    unary_once(&c[to].peer_url(), "/modkvpb.Peer/Send", batch)
}

#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn forged_peer_messages_are_refused() {
    let mut c = Cluster::start(Kind::Modkv, 3, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    let f = (0..3).find(|&i| i != leader).unwrap();
    let (lid, fid) = (c[leader].id, c[f].id);
    let term = c[f].status().unwrap()["header"]["raft_term"].as_u64().unwrap();
    let heartbeat = |commit| RaftMessage { msg_type: MSG_HEARTBEAT, to: fid, from: lid, term, commit };

    // Not a member.
    let e = send(&c, f, 0x1234, &[RaftMessage { from: 0x1234, ..heartbeat(0) }]).unwrap_err();
    assert_eq!(
        e,
        (
            "FailedPrecondition".to_string(),
            "raft messages from member 1234, which is not a member of this cluster".into()
        )
    );
    // A message claiming another sender than its batch.
    let other = c[(0..3).find(|&i| i != leader && i != f).unwrap()].id;
    let e = send(&c, f, other, &[heartbeat(0)]).unwrap_err();
    assert_eq!(
        e,
        (
            "InvalidArgument".to_string(),
            format!("refused a raft message from member {other:x}: a MsgHeartbeat from member {lid:x} in a batch from member {other:x}")
        )
    );
    // Types raft-rs keeps to a member, and a proposal without entries (raft-rs panics on it).
    let e = send(&c, f, lid, &[RaftMessage { msg_type: MSG_HUP, term: 0, ..heartbeat(0) }]).unwrap_err();
    assert_eq!(
        e.1,
        format!("refused a raft message from member {lid:x}: MsgHup is local to a member, never sent to one")
    );
    let e = send(&c, f, lid, &[RaftMessage { msg_type: MSG_PROPOSE, term: 0, ..heartbeat(0) }]).unwrap_err();
    assert_eq!(
        e,
        (
            "InvalidArgument".to_string(),
            format!("refused a raft message from member {lid:x}: a MsgPropose without entries")
        )
    );

    // A heartbeat committing far past the log: raft-rs would panic; the member drops it and goes on.
    send(&c, f, lid, &[heartbeat(1 << 40)]).expect("the batch is taken; the node refuses the message");
    let put = c[f].etcdctl(&["put", "after", "forgery"]);
    assert!(put.success(), "{put:?}");
    assert_eq!(c[f].local_value("after").as_deref(), Some("forgery"));
    let log = c[f].log();
    assert!(
        log.contains("refused a raft message: a heartbeat committing index 1099511627776 past the log's last index"),
        "{}",
        c[f].log_tail(20)
    );
}

//! Checks on raft messages from peers before raft-rs steps them. raft-rs trusts its peers: some
//! impossible messages make it panic (`fatal!`), which would end the member. Those are refused here.
//!
//! ```text
//!   peer API, per message (stateless)   addressed from the batch's sender to this member; a type that
//!                                       travels between members; proposals and ReadIndex requests with
//!                                       entries; appends whose entries follow their index; snapshots
//!                                       with a term, an index and a configuration raft can restore
//!   node task, against raft's state     a heartbeat committing past the log's end; an append
//!                                       acknowledgement past the leader's log
//! ```
//!
//! What raft-rs 0.7 does with each (`raft.rs`, `raft_log.rs`):
//! - `MsgHeartbeat`: `handle_heartbeat` calls `commit_to(m.commit)`, fatal past `last_index`;
//! - `MsgPropose` without entries: "stepped empty MsgProp" on the leader; `MsgReadIndex` without
//!   entries indexes `entries[0]`;
//! - `MsgAppend` whose entries do not start at `index + 1` and follow each other: `maybe_append` slices
//!   out of range or finds a "conflict with committed entry";
//! - `MsgSnapshot` with term 0: `match_term` answers true for any index past the log (its term is 0
//!   there) and the follower commits to it; a configuration `restore` cannot rebuild exactly is fatal;
//! - `MsgAppendResponse` past the leader's last index: the leader's progress runs past its log.
//!
//! A forged message can still mislead raft in other ways (a vote, an acknowledgement); peer TLS with
//! client certificates is what keeps strangers out, as in etcd.

use std::collections::HashSet;

use raft::eraftpb::{ConfState, Message, MessageType};
use raft::Raft;

/// Why a message from member `from` (the batch's sender) to this member `me` is refused, if it is.
pub fn refuse(m: &Message, from: u64, me: u64) -> Option<String> {
    use MessageType::*;
    let t = m.get_msg_type();
    if m.from != from {
        return Some(format!("a {t:?} from member {:x} in a batch from member {from:x}", m.from));
    }
    if m.to != me {
        return Some(format!("a {t:?} for member {:x}", m.to));
    }
    match t {
        MsgHup | MsgBeat | MsgUnreachable | MsgSnapStatus | MsgCheckQuorum => {
            Some(format!("{t:?} is local to a member, never sent to one"))
        }
        MsgPropose | MsgReadIndex | MsgReadIndexResp if m.entries.is_empty() => {
            Some(format!("a {t:?} without entries"))
        }
        MsgAppend => {
            let follows = m.entries.iter().enumerate().all(|(i, e)| Some(e.index) == m.index.checked_add(i as u64 + 1));
            (!follows).then(|| format!("a MsgAppend at index {} whose entries do not follow it", m.index))
        }
        MsgSnapshot => {
            let meta = m.get_snapshot().get_metadata();
            if meta.index == 0 || meta.term == 0 {
                return Some(format!("a snapshot at index {} and term {}", meta.index, meta.term));
            }
            restorable(meta.get_conf_state()).err().map(|e| format!("a snapshot whose configuration {e}"))
        }
        _ => None,
    }
}

/// Whether raft-rs can restore `cs` as it is (each id once per list, a voter not also a learner, a
/// joint configuration's lists consistent).
fn restorable(cs: &ConfState) -> Result<(), String> {
    let set = |ids: &[u64], what: &str| -> Result<HashSet<u64>, String> {
        let s: HashSet<u64> = ids.iter().copied().collect();
        if s.len() != ids.len() {
            return Err(format!("lists a member twice in {what}"));
        }
        Ok(s)
    };
    let voters = set(&cs.voters, "voters")?;
    let learners = set(&cs.learners, "learners")?;
    let outgoing = set(&cs.voters_outgoing, "outgoing voters")?;
    let learners_next = set(&cs.learners_next, "next learners")?;
    if voters.is_empty() {
        return Err("has no voters".into());
    }
    if !voters.is_disjoint(&learners) || !outgoing.is_disjoint(&learners) {
        return Err("has a member that is both voter and learner".into());
    }
    if !learners_next.is_subset(&outgoing) || !learners_next.is_disjoint(&voters) {
        return Err("has next learners that are not outgoing voters".into());
    }
    if cs.auto_leave && outgoing.is_empty() {
        return Err("leaves a joint configuration it is not in".into());
    }
    Ok(())
}

/// Why the node refuses `m` given raft's state, if it does.
pub fn refuse_in_state<T: raft::Storage>(raft: &Raft<T>, m: &Message) -> Option<String> {
    let last = raft.raft_log.last_index();
    match m.get_msg_type() {
        MessageType::MsgHeartbeat if m.commit > last => {
            Some(format!("a heartbeat committing index {} past the log's last index {last}", m.commit))
        }
        MessageType::MsgAppendResponse if !m.reject && m.index > last => {
            Some(format!("an acknowledgement of index {} past the log's last index {last}", m.index))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;

    fn msg(t: MessageType) -> Message {
        let mut m = Message::default();
        m.set_msg_type(t);
        m.from = 2;
        m.to = 1;
        m
    }

    fn entry(index: u64) -> Entry {
        Entry { index, term: 1, ..Default::default() }
    }

    #[test]
    fn senders_receivers_and_local_types_are_checked() {
        let m = msg(MessageType::MsgHeartbeat);
        assert_eq!(refuse(&m, 2, 1), None);
        assert_eq!(refuse(&m, 3, 1).unwrap(), "a MsgHeartbeat from member 2 in a batch from member 3");
        assert_eq!(refuse(&m, 2, 4).unwrap(), "a MsgHeartbeat for member 1");
        assert_eq!(refuse(&msg(MessageType::MsgHup), 2, 1).unwrap(), "MsgHup is local to a member, never sent to one");
    }

    #[test]
    fn proposals_need_entries_and_appends_consecutive_ones() {
        assert_eq!(refuse(&msg(MessageType::MsgPropose), 2, 1).unwrap(), "a MsgPropose without entries");
        let mut m = msg(MessageType::MsgAppend);
        m.index = 5;
        m.entries = vec![entry(6), entry(7)].into();
        assert_eq!(refuse(&m, 2, 1), None);
        m.entries = vec![entry(6), entry(8)].into();
        assert_eq!(refuse(&m, 2, 1).unwrap(), "a MsgAppend at index 5 whose entries do not follow it");
        m.entries = vec![entry(3)].into();
        assert!(refuse(&m, 2, 1).is_some());
    }

    #[test]
    fn what_raft_would_panic_on_is_refused_in_state() {
        let storage = raft::storage::MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut raft = Raft::new(&raft::Config { id: 1, ..Default::default() }, storage, &logger).unwrap();
        // A new log: its last index is 0.
        let mut m = msg(MessageType::MsgHeartbeat);
        assert_eq!(refuse_in_state(&raft, &m), None);
        m.commit = 1 << 40;
        assert_eq!(
            refuse_in_state(&raft, &m).unwrap(),
            "a heartbeat committing index 1099511627776 past the log's last index 0"
        );
        // What raft-rs does with it.
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| raft.step(m)));
        assert!(stepped.is_err(), "raft-rs no longer panics on a heartbeat committing past the log");
        let mut m = msg(MessageType::MsgAppendResponse);
        m.index = 7;
        assert_eq!(refuse_in_state(&raft, &m).unwrap(), "an acknowledgement of index 7 past the log's last index 0");
        m.reject = true;
        assert_eq!(refuse_in_state(&raft, &m), None);
    }

    #[test]
    fn snapshots_need_a_term_and_a_restorable_configuration() {
        let mut m = msg(MessageType::MsgSnapshot);
        m.mut_snapshot().mut_metadata().index = u64::MAX;
        assert_eq!(refuse(&m, 2, 1).unwrap(), format!("a snapshot at index {} and term 0", u64::MAX));
        m.mut_snapshot().mut_metadata().term = 3;
        m.mut_snapshot().mut_metadata().mut_conf_state().voters = vec![1, 2, 2];
        assert_eq!(refuse(&m, 2, 1).unwrap(), "a snapshot whose configuration lists a member twice in voters");
        m.mut_snapshot().mut_metadata().mut_conf_state().voters = vec![1, 2];
        m.mut_snapshot().mut_metadata().mut_conf_state().learners = vec![2];
        assert_eq!(
            refuse(&m, 2, 1).unwrap(),
            "a snapshot whose configuration has a member that is both voter and learner"
        );
        m.mut_snapshot().mut_metadata().mut_conf_state().learners = vec![3];
        assert_eq!(refuse(&m, 2, 1), None);
    }
}

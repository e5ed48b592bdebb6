//! The checks etcd makes on a request before it is proposed or served (etcd's `v3rpc/key.go`): a
//! request that fails them never reaches raft.
//!
//! Txns are checked as etcd checks them: the op budget (`--max-txn-ops`) shrinks by each level's op
//! count on the way down, so nesting and the total number of ops are bounded; the duplicate-key rule
//! runs once over the whole tree with hash sets and a merged interval set (never a linear scan per op).
//! On top of etcd's rules nesting is capped at [`MAX_TXN_DEPTH`] (etcd's default budget caps it there
//! too; only a larger `--max-txn-ops` lets etcd nest deeper).

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::mvcc::{IntervalSet, KeyRange};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

pub use crate::proto::MAX_TXN_DEPTH;

/// etcd 3.4 checks only the key; unknown sort options are ignored when the range is served.
pub fn range(r: &RangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

pub fn put(p: &PutRequest) -> Result<()> {
    if p.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

pub fn delete(d: &DeleteRangeRequest) -> Result<()> {
    if d.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// Request validation etcd does before a txn is proposed: op counts, empty keys, then duplicate keys.
pub fn txn(t: &TxnRequest, max_ops: usize) -> Result<()> {
    txn_within(t, max_ops, 1)?;
    check_intervals(&t.success)?;
    check_intervals(&t.failure)?;
    Ok(())
}

/// etcd's `checkTxnRequest`: `budget` is what is left of `--max-txn-ops` at this level.
fn txn_within(t: &TxnRequest, budget: usize, depth: usize) -> Result<()> {
    let ops = t.compare.len().max(t.success.len()).max(t.failure.len());
    if ops > budget || depth > MAX_TXN_DEPTH {
        return Err(Error::TooManyOps);
    }
    if t.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) => range(r)?,
            Some(Request::RequestPut(p)) => put(p)?,
            Some(Request::RequestDeleteRange(d)) => delete(d)?,
            Some(Request::RequestTxn(n)) => txn_within(n, budget - ops, depth + 1)?,
            None => return Err(Error::KeyNotFound),
        }
    }
    Ok(())
}

/// etcd's `checkIntervals`: within one branch no key may be put twice, nor put and deleted; a nested
/// txn's two branches may put the same key since only one of them runs. Returns the branch's puts and
/// deletes for the level above.
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<&[u8]>, IntervalSet)> {
    let mut dels = IntervalSet::default();
    for op in ops {
        if let Some(Request::RequestDeleteRange(d)) = &op.request {
            dels.insert(&KeyRange::new(&d.key, &d.range_end));
        }
    }
    let mut puts: HashSet<&[u8]> = HashSet::new();
    for op in ops {
        let Some(Request::RequestTxn(n)) = &op.request else { continue };
        let (puts_then, dels_then) = check_intervals(&n.success)?;
        let (puts_else, dels_else) = check_intervals(&n.failure)?;
        for k in &puts_then {
            if puts.contains(k) || dels.contains(k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k);
        }
        for k in puts_else {
            if (puts.contains(k) && !puts_then.contains(k)) || dels.contains(k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else { continue };
        if !puts.insert(&p.key) || dels.contains(&p.key) {
            return Err(Error::DuplicateKey);
        }
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::modkvpb::InternalRaftRequest;
    use prost::Message as _;

    fn put_op(k: &str) -> RequestOp {
        RequestOp { request: Some(Request::RequestPut(PutRequest { key: k.into(), ..Default::default() })) }
    }

    fn del_op(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    fn txn_op(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp { request: Some(Request::RequestTxn(TxnRequest { success, failure, ..Default::default() })) }
    }

    /// A txn `depth` levels deep, one op per level, a put at the bottom.
    fn nested(depth: usize) -> TxnRequest {
        let mut op = put_op("k");
        for _ in 1..depth {
            op = txn_op(vec![op], vec![]);
        }
        TxnRequest { success: vec![op], ..Default::default() }
    }

    #[test]
    fn budget_shrinks_on_the_way_down_as_etcds() {
        // 3 ops at the top leave 125 of 128 for each nested txn.
        let inner = TxnRequest { success: (0..125).map(|i| put_op(&format!("a{i}"))).collect(), ..Default::default() };
        let mut top = TxnRequest {
            success: vec![RequestOp { request: Some(Request::RequestTxn(inner.clone())) }, put_op("x"), put_op("y")],
            ..Default::default()
        };
        assert_eq!(txn(&top, 128), Ok(()));
        top.success.push(put_op("z"));
        assert_eq!(txn(&top, 128), Err(Error::TooManyOps));
        // One op per level: the budget runs out after 128 levels.
        assert_eq!(txn(&nested(128), 128), Ok(()));
        assert_eq!(txn(&nested(129), 128), Err(Error::TooManyOps));
        // 128 one-op levels around an empty txn: the 129th level needs no budget.
        let mut op = RequestOp { request: Some(Request::RequestTxn(TxnRequest::default())) };
        for _ in 1..128 {
            op = txn_op(vec![op], vec![]);
        }
        let around_empty = TxnRequest { success: vec![op.clone()], ..Default::default() };
        assert_eq!(txn(&around_empty, 128), Ok(()));
        let deeper = TxnRequest { success: vec![txn_op(vec![op], vec![])], ..Default::default() };
        assert_eq!(txn(&deeper, 128), Err(Error::TooManyOps));
        // A larger budget does not lift the depth cap.
        assert_eq!(txn(&nested(MAX_TXN_DEPTH + 1), 100_000), Err(Error::TooManyOps));
        assert_eq!(txn(&nested(10), 9), Err(Error::TooManyOps));
        assert_eq!(txn(&nested(9), 9), Ok(()));
    }

    #[test]
    fn the_deepest_accepted_txn_decodes_from_a_raft_entry() {
        let mut t = nested(MAX_TXN_DEPTH);
        // The deepest message: a compare and a range at the bottom level.
        let mut level = &mut t;
        while let Some(Request::RequestTxn(n)) = &mut level.success[0].request {
            level = n;
        }
        level.compare.push(crate::proto::etcdserverpb::Compare { key: b"c".to_vec(), ..Default::default() });
        level.failure.push(RequestOp {
            request: Some(Request::RequestRange(RangeRequest { key: b"r".to_vec(), ..Default::default() })),
        });
        assert_eq!(txn(&t, 1000), Ok(()));
        let entry = InternalRaftRequest { txn: Some(t.clone()), ..Default::default() }.encode_to_vec();
        // Too deep for protobuf's own recursion limit, not for the level-by-level decoder apply uses.
        assert!(InternalRaftRequest::decode(&entry[..]).is_err());
        let decoded = crate::proto::deep::decode_entry(&entry, MAX_TXN_DEPTH).unwrap();
        assert_eq!(decoded.txn, Some(t));
        let deeper = InternalRaftRequest { txn: Some(nested(MAX_TXN_DEPTH + 1)), ..Default::default() };
        assert!(matches!(
            crate::proto::deep::decode_entry(&deeper.encode_to_vec(), MAX_TXN_DEPTH),
            Err(crate::proto::deep::DeepError::TooDeep)
        ));
        // A shallow entry decodes as it always did.
        let put = InternalRaftRequest { txn: Some(nested(3)), ..Default::default() };
        assert_eq!(crate::proto::deep::decode_entry(&put.encode_to_vec(), MAX_TXN_DEPTH).unwrap(), put);
    }

    #[test]
    fn duplicate_keys_as_etcd_sees_them() {
        let t = |success| TxnRequest { success, ..Default::default() };
        assert_eq!(txn(&t(vec![put_op("a"), put_op("a")]), 128), Err(Error::DuplicateKey));
        assert_eq!(txn(&t(vec![put_op("b"), del_op("a", "c")]), 128), Err(Error::DuplicateKey));
        assert_eq!(txn(&t(vec![put_op("c"), del_op("a", "c")]), 128), Ok(()));
        assert_eq!(txn(&t(vec![put_op("zz"), del_op("a", "\0")]), 128), Err(Error::DuplicateKey));
        // Both branches of a nested txn may put one key; a put beside it may not.
        let both = txn_op(vec![put_op("k")], vec![put_op("k")]);
        assert_eq!(txn(&t(vec![both.clone()]), 128), Ok(()));
        assert_eq!(txn(&t(vec![both.clone(), put_op("k")]), 128), Err(Error::DuplicateKey));
        // A nested delete covers later nested puts and this level's puts.
        let nested_del = txn_op(vec![del_op("m", "p")], vec![]);
        assert_eq!(txn(&t(vec![nested_del.clone(), put_op("n")]), 128), Err(Error::DuplicateKey));
        assert_eq!(txn(&t(vec![nested_del, txn_op(vec![], vec![put_op("o")])]), 128), Err(Error::DuplicateKey));
        // Deletes may overlap each other.
        assert_eq!(txn(&t(vec![del_op("a", "m"), del_op("c", "z"), put_op("z")]), 128), Ok(()));
    }

    #[test]
    fn many_puts_in_nested_txns_are_checked_in_linear_time() {
        // 16 × 16 × 16 × 16 = 65,536 distinct puts, four levels deep (etcd's budget allows it).
        fn level(prefix: String, depth: usize) -> Vec<RequestOp> {
            (0..16)
                .map(|i| {
                    let p = format!("{prefix}{i:x}");
                    if depth == 1 {
                        put_op(&p)
                    } else {
                        txn_op(level(p, depth - 1), vec![])
                    }
                })
                .collect()
        }
        let t = TxnRequest { success: level(String::new(), 4), ..Default::default() };
        let started = std::time::Instant::now();
        assert_eq!(txn(&t, 128), Ok(()));
        eprintln!("65536 nested puts validated in {:?}", started.elapsed());
    }
}

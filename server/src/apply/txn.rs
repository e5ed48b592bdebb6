//! Txn (etcd's `txn.go`): compares, the branch they choose, the checks that make a txn fail whole, and
//! nested txns, in one code path for every txn: one that writes runs in the apply layer over a
//! [`WriteTxn`](crate::mvcc::WriteTxn), one that only reads runs in the server over a
//! [`ReadTxn`](crate::mvcc::ReadTxn), the store at one revision (never through the log).
//!
//! ```text
//!   txn(view) ──▶ path: each (nested) txn's compares ─▶ success / failure, before any change
//!             ──▶ check: what would fail the whole txn (a put's missing key or lease, a bad revision)
//!             ──▶ run: the chosen ops in order (kv::range / TxnView's put and delete), nested txns inline
//! ```
//!
//! This evaluator and `kv` are the request semantics, kept beside the apply loop that is their main
//! user; they depend only on `mvcc`, `lease`, `proto` and `error`, never on `server` or `raft` (only the
//! apply loop in `apply/mod.rs` reaches those), so they can move to a module of their own unchanged.

use super::kv::{self, header, TxnView};
use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::mvcc::{KeyRange, RangeOptions, ReadView};
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::{Compare, ResponseOp, TxnRequest, TxnResponse};
use crate::proto::mvccpb::KeyValue;

/// Whether every key `c` addresses satisfies it. Comparing the value of a missing key always fails;
/// other targets compare a missing key as zero.
pub fn compare(view: &impl ReadView, c: &Compare) -> bool {
    let Ok(rr) = view.range(&KeyRange::new(&c.key, &c.range_end), RangeOptions::default()) else {
        return false;
    };
    let target = CompareTarget::try_from(c.target).ok();
    if rr.kvs.is_empty() {
        if target == Some(CompareTarget::Value) {
            return false;
        }
        return compare_kv(c, target, &KeyValue::default());
    }
    rr.kvs.iter().all(|kv| compare_kv(c, target, kv))
}

/// etcd's `compareKV`: a target whose value is missing or in another field of the union compares
/// against the zero value; a target outside the enum compares equal; a result outside it holds.
fn compare_kv(c: &Compare, target: Option<CompareTarget>, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let u = c.target_union.as_ref();
    let ord = match target {
        Some(CompareTarget::Value) => {
            let v = match u {
                Some(TargetUnion::Value(v)) => v.as_slice(),
                _ => &[],
            };
            kv.value.as_slice().cmp(v)
        }
        Some(CompareTarget::Create) => kv.create_revision.cmp(&match u {
            Some(TargetUnion::CreateRevision(v)) => *v,
            _ => 0,
        }),
        Some(CompareTarget::Mod) => kv.mod_revision.cmp(&match u {
            Some(TargetUnion::ModRevision(v)) => *v,
            _ => 0,
        }),
        Some(CompareTarget::Version) => kv.version.cmp(&match u {
            Some(TargetUnion::Version(v)) => *v,
            _ => 0,
        }),
        Some(CompareTarget::Lease) => kv.lease.cmp(&match u {
            Some(TargetUnion::Lease(v)) => *v,
            _ => 0,
        }),
        None => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Err(_) => true,
    }
}

/// Whether the txn (with its nested txns) only reads.
pub fn is_read_only(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(|op| match &op.request {
        Some(Request::RequestRange(_)) | None => true,
        Some(Request::RequestTxn(n)) => is_read_only(n),
        _ => false,
    })
}

/// Whether every read in the txn asks for a serializable read.
pub fn is_serializable(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(|op| match &op.request {
        Some(Request::RequestRange(r)) => r.serializable,
        Some(Request::RequestTxn(n)) => is_serializable(n),
        _ => true,
    })
}

/// The branch each (nested) txn takes, evaluated against the state before the txn.
fn path(view: &impl ReadView, t: &TxnRequest, out: &mut Vec<bool>) {
    let ok = t.compare.iter().all(|c| compare(view, c));
    out.push(ok);
    for op in if ok { &t.success } else { &t.failure } {
        if let Some(Request::RequestTxn(n)) = &op.request {
            path(view, n, out);
        }
    }
}

/// Fails the whole txn before anything changes: puts that need a missing key or lease, reads at a
/// future or compacted revision.
fn check(view: &impl ReadView, t: &TxnRequest, path: &mut std::slice::Iter<'_, bool>, lessor: &Lessor) -> Result<()> {
    let ok = *path.next().unwrap_or(&false);
    for op in if ok { &t.success } else { &t.failure } {
        match &op.request {
            Some(Request::RequestPut(p)) => kv::check_put(view, p, lessor)?,
            Some(Request::RequestRange(r)) if r.revision != 0 => {
                if r.revision > view.rev() {
                    return Err(Error::FutureRev);
                }
                if r.revision < view.compact_rev() {
                    return Err(Error::Compacted);
                }
            }
            Some(Request::RequestTxn(n)) => check(view, n, path, lessor)?,
            _ => {}
        }
    }
    Ok(())
}

/// Runs a txn over `view`; the response header carries the revision after it. Nothing changes when it
/// fails.
pub fn txn(view: &mut impl TxnView, t: &TxnRequest, lessor: &Lessor) -> Result<TxnResponse> {
    let mut p = Vec::new();
    path(view, t, &mut p);
    check(view, t, &mut p.iter(), lessor)?;
    let mut resp = run(view, t, &mut p.iter(), lessor)?;
    resp.header = header(view.rev());
    Ok(resp)
}

fn run(
    view: &mut impl TxnView,
    t: &TxnRequest,
    path: &mut std::slice::Iter<'_, bool>,
    lessor: &Lessor,
) -> Result<TxnResponse> {
    let succeeded = *path.next().unwrap_or(&false);
    let mut responses = Vec::new();
    for op in if succeeded { &t.success } else { &t.failure } {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => Some(Response::ResponseRange(kv::range(view, r)?)),
            Some(Request::RequestPut(r)) => Some(Response::ResponsePut(view.put_request(r, lessor)?)),
            Some(Request::RequestDeleteRange(r)) => {
                Some(Response::ResponseDeleteRange(view.delete_range_request(r, lessor)?))
            }
            Some(Request::RequestTxn(n)) => {
                let mut nested = run(view, n, path, lessor)?;
                nested.header = Some(Default::default());
                Some(Response::ResponseTxn(nested))
            }
            None => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse { header: None, succeeded, responses })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::mvcc::KvStore;
    use crate::proto::etcdserverpb::{PutRequest, RangeRequest, RangeResponse, RequestOp};
    use crate::storage::{Backend, RocksDb, WriteBatch};

    struct Fixture {
        _dir: tempfile::TempDir,
        kv: KvStore,
        lessor: Lessor,
    }

    /// A store holding a=1 (revision 2) and b=2 (revision 3).
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(RocksDb::open(dir.path()).unwrap());
        let kv = KvStore::open(backend.clone()).unwrap();
        let lessor = Lessor::open(&*backend, &kv, Duration::from_secs(1)).unwrap();
        let f = Fixture { _dir: dir, kv, lessor };
        f.write(&TxnRequest { success: vec![put("a", "1")], ..Default::default() }).unwrap();
        f.write(&TxnRequest { success: vec![put("b", "2")], ..Default::default() }).unwrap();
        f
    }

    impl Fixture {
        /// Applies a txn as the apply loop does: in one write transaction, committed.
        fn write(&self, t: &TxnRequest) -> Result<TxnResponse> {
            let mut batch = WriteBatch::default();
            let mut w = self.kv.write(&mut batch);
            let r = txn(&mut w, t, &self.lessor);
            w.end();
            self.kv.commit(batch, false).unwrap();
            r
        }
    }

    fn put(k: &str, v: &str) -> RequestOp {
        let p = PutRequest { key: k.into(), value: v.into(), ..Default::default() };
        RequestOp { request: Some(Request::RequestPut(p)) }
    }

    fn get(r: RangeRequest) -> RequestOp {
        RequestOp { request: Some(Request::RequestRange(r)) }
    }

    fn get_key(k: &str) -> RequestOp {
        get(RangeRequest { key: k.into(), ..Default::default() })
    }

    fn nested(t: TxnRequest) -> RequestOp {
        RequestOp { request: Some(Request::RequestTxn(t)) }
    }

    fn cmp(key: &str, result: CompareResult, target: TargetUnion) -> Compare {
        let t = match target {
            TargetUnion::Version(_) => CompareTarget::Version,
            TargetUnion::CreateRevision(_) => CompareTarget::Create,
            TargetUnion::ModRevision(_) => CompareTarget::Mod,
            TargetUnion::Value(_) => CompareTarget::Value,
            TargetUnion::Lease(_) => CompareTarget::Lease,
        };
        Compare {
            key: key.into(),
            result: result as i32,
            target: t as i32,
            target_union: Some(target),
            ..Default::default()
        }
    }

    fn range_of(op: &ResponseOp) -> &RangeResponse {
        match &op.response {
            Some(Response::ResponseRange(r)) => r,
            other => panic!("not a range response: {other:?}"),
        }
    }

    fn values(r: &RangeResponse) -> Vec<(&[u8], &[u8], i64)> {
        r.kvs.iter().map(|kv| (kv.key.as_slice(), kv.value.as_slice(), kv.mod_revision)).collect()
    }

    #[test]
    fn nested_read_only_txn_over_a_read_answers_as_over_a_write() {
        let f = fixture();
        let t = TxnRequest {
            compare: vec![cmp("a", CompareResult::Equal, TargetUnion::Value(b"1".to_vec()))],
            success: vec![
                get_key("a"),
                nested(TxnRequest {
                    compare: vec![cmp("b", CompareResult::Greater, TargetUnion::Version(5))],
                    success: vec![get_key("a")],
                    failure: vec![get(RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() })],
                }),
            ],
            failure: vec![],
        };
        assert!(is_read_only(&t));
        let resp = txn(&mut f.kv.read(), &t, &f.lessor).unwrap();
        assert_eq!(resp.header.as_ref().map(|h| h.revision), Some(3));
        assert!(resp.succeeded);
        assert_eq!(resp.responses.len(), 2);
        assert_eq!(values(range_of(&resp.responses[0])), vec![(&b"a"[..], &b"1"[..], 2)]);
        let Some(Response::ResponseTxn(inner)) = &resp.responses[1].response else { panic!("not a txn response") };
        assert!(!inner.succeeded, "b has version 1, not > 5");
        assert_eq!(inner.header, Some(Default::default()));
        let all = range_of(&inner.responses[0]);
        assert_eq!(values(all), vec![(&b"a"[..], &b"1"[..], 2), (&b"b"[..], &b"2"[..], 3)]);
        assert_eq!(all.header.as_ref().map(|h| h.revision), Some(3));

        // The same evaluation in a write transaction (the apply path) gives the same answer, changing nothing.
        let mut unused = WriteBatch::default();
        assert_eq!(txn(&mut f.kv.write(&mut unused), &t, &f.lessor).unwrap(), resp);
        assert!(unused.is_empty());
    }

    #[test]
    fn compares_on_a_missing_key() {
        let f = fixture();
        let holds = |c: Compare| {
            let t = TxnRequest { compare: vec![c], success: vec![get_key("a")], failure: vec![] };
            let r = txn(&mut f.kv.read(), &t, &f.lessor).unwrap();
            assert_eq!(r.responses.len(), usize::from(r.succeeded));
            r.succeeded
        };
        use CompareResult::*;
        // A missing key's value compares false whatever is asked; its other fields compare as zero.
        assert!(!holds(cmp("nope", Equal, TargetUnion::Value(vec![]))));
        assert!(!holds(cmp("nope", NotEqual, TargetUnion::Value(b"x".to_vec()))));
        assert!(holds(cmp("nope", Equal, TargetUnion::CreateRevision(0))));
        assert!(holds(cmp("nope", Less, TargetUnion::Version(1))));
        assert!(!holds(cmp("nope", NotEqual, TargetUnion::ModRevision(0))));
        assert!(holds(cmp("nope", Equal, TargetUnion::Lease(0))));
        // Over a range, every key present must hold; a range with no key is a missing key.
        let over = |mut c: Compare, end: &str| {
            c.range_end = end.into();
            c
        };
        assert!(holds(over(cmp("a", Greater, TargetUnion::CreateRevision(1)), "c")));
        assert!(!holds(over(cmp("a", Equal, TargetUnion::ModRevision(2)), "c")));
        assert!(holds(over(cmp("x", Equal, TargetUnion::Version(0)), "z")));
        assert!(!holds(over(cmp("x", Equal, TargetUnion::Value(vec![])), "z")));
    }

    #[test]
    fn a_read_only_txn_reads_at_one_revision() {
        let f = fixture();
        let mut view = f.kv.read();
        // Applied after the read began: the read does not see it.
        f.write(&TxnRequest { success: vec![put("a", "new")], ..Default::default() }).unwrap();
        assert_eq!(f.kv.current_rev(), 4);
        let t = TxnRequest {
            compare: vec![cmp("a", CompareResult::Equal, TargetUnion::ModRevision(2))],
            success: vec![get_key("a"), nested(TxnRequest { success: vec![get_key("a")], ..Default::default() })],
            failure: vec![],
        };
        let resp = txn(&mut view, &t, &f.lessor).unwrap();
        assert!(resp.succeeded);
        assert_eq!(resp.header.as_ref().map(|h| h.revision), Some(3));
        assert_eq!(values(range_of(&resp.responses[0])), vec![(&b"a"[..], &b"1"[..], 2)]);
        let Some(Response::ResponseTxn(inner)) = &resp.responses[1].response else { panic!("not a txn response") };
        assert_eq!(values(range_of(&inner.responses[0])), vec![(&b"a"[..], &b"1"[..], 2)]);
        // Revision 4 is in the future of this read, so the whole txn fails.
        let at4 = TxnRequest {
            success: vec![get(RangeRequest { key: "a".into(), revision: 4, ..Default::default() })],
            ..Default::default()
        };
        assert_eq!(txn(&mut view, &at4, &f.lessor), Err(Error::FutureRev));
        // A new read sees the put.
        let resp = txn(&mut f.kv.read(), &t, &f.lessor).unwrap();
        assert!(!resp.succeeded);
        assert_eq!(resp.header.as_ref().map(|h| h.revision), Some(4));
        let resp = txn(&mut f.kv.read(), &at4, &f.lessor).unwrap();
        assert_eq!(values(range_of(&resp.responses[0])), vec![(&b"a"[..], &b"new"[..], 4)]);
    }

    #[test]
    fn a_read_refuses_a_txn_that_writes() {
        let f = fixture();
        let t = TxnRequest { success: vec![get_key("a"), put("a", "2")], ..Default::default() };
        assert!(!is_read_only(&t));
        assert!(matches!(txn(&mut f.kv.read(), &t, &f.lessor), Err(Error::Internal(_))));
        assert_eq!(f.kv.current_rev(), 3);
        assert_eq!(
            values(&kv::range(&f.kv.read(), &RangeRequest { key: "a".into(), ..Default::default() }).unwrap()),
            vec![(&b"a"[..], &b"1"[..], 2)]
        );
    }
}

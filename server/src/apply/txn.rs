//! Txn: compares, the branch they choose, the checks that make a txn fail whole, and nested txns.

use super::kv::{self, header, ReadView};
use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::mvcc::{KeyRange, RangeOptions, WriteTxn};
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

/// Runs a txn inside `txn`; the response header carries the revision after it.
pub fn txn(w: &mut WriteTxn<'_>, t: &TxnRequest, lessor: &Lessor) -> Result<TxnResponse> {
    let mut p = Vec::new();
    path(w, t, &mut p);
    check(w, t, &mut p.iter(), lessor)?;
    let mut resp = run(w, t, &mut p.iter(), lessor)?;
    resp.header = header(w.read_rev());
    Ok(resp)
}

fn run(
    w: &mut WriteTxn<'_>,
    t: &TxnRequest,
    path: &mut std::slice::Iter<'_, bool>,
    lessor: &Lessor,
) -> Result<TxnResponse> {
    let succeeded = *path.next().unwrap_or(&false);
    let mut responses = Vec::new();
    for op in if succeeded { &t.success } else { &t.failure } {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => Some(Response::ResponseRange(kv::range(w, r)?)),
            Some(Request::RequestPut(r)) => Some(Response::ResponsePut(kv::put(w, r, lessor)?)),
            Some(Request::RequestDeleteRange(r)) => {
                Some(Response::ResponseDeleteRange(kv::delete_range(w, r, lessor)?))
            }
            Some(Request::RequestTxn(n)) => {
                let mut nested = run(w, n, path, lessor)?;
                nested.header = Some(Default::default());
                Some(Response::ResponseTxn(nested))
            }
            None => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse { header: None, succeeded, responses })
}

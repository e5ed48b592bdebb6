//! Range, Put and DeleteRange with etcd's semantics (etcd's `apply.go`): a range over any [`ReadView`],
//! writes in a [`WriteTxn`]; [`TxnView`] is what a txn's ops run on (see `txn`).

use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::mvcc::{KeyRange, RangeOptions, ReadTxn, ReadView, WriteTxn};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader,
};
use crate::proto::mvccpb::KeyValue;

/// Where a txn's ops run (etcd's `TxnWrite`): a [`WriteTxn`] for a txn that writes, a [`ReadTxn`] for one
/// that only reads. A read refuses writes (as etcd's `NewReadOnlyTxnWrite`): the server evaluates only
/// read-only txns over one, so the refusal is an internal error, never an answer.
pub trait TxnView: ReadView {
    fn put_request(&mut self, p: &PutRequest, lessor: &Lessor) -> Result<PutResponse>;
    fn delete_range_request(&mut self, d: &DeleteRangeRequest, lessor: &Lessor) -> Result<DeleteRangeResponse>;
}

impl TxnView for WriteTxn<'_> {
    fn put_request(&mut self, p: &PutRequest, lessor: &Lessor) -> Result<PutResponse> {
        put(self, p, lessor)
    }

    fn delete_range_request(&mut self, d: &DeleteRangeRequest, lessor: &Lessor) -> Result<DeleteRangeResponse> {
        delete_range(self, d, lessor)
    }
}

impl TxnView for ReadTxn<'_> {
    fn put_request(&mut self, _: &PutRequest, _: &Lessor) -> Result<PutResponse> {
        Err(Error::Internal("a put in a txn evaluated as read-only".into()))
    }

    fn delete_range_request(&mut self, _: &DeleteRangeRequest, _: &Lessor) -> Result<DeleteRangeResponse> {
        Err(Error::Internal("a delete in a txn evaluated as read-only".into()))
    }
}

pub fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

/// etcd's Range: filters by mod/create revision, sorts, applies the limit and reports `more`.
pub fn range(view: &impl ReadView, r: &RangeRequest) -> Result<RangeResponse> {
    let filtered =
        r.min_mod_revision != 0 || r.max_mod_revision != 0 || r.min_create_revision != 0 || r.max_create_revision != 0;
    // etcd 3.4 accepts unknown sort values: an unknown order sorts nothing, an unknown target sorts by key.
    let order = SortOrder::try_from(r.sort_order).ok();
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let mut limit = if r.sort_order != 0 || filtered { 0 } else { r.limit.max(0) as usize };
    if limit > 0 {
        // One more than asked, to learn whether there are more.
        limit += 1;
    }
    let opts = RangeOptions { limit, rev: r.revision, count_only: r.count_only };
    let mut rr = view.range(&KeyRange::new(&r.key, &r.range_end), opts)?;
    rr.kvs.retain(|kv| {
        (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
            && (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
            && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
            && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
    });
    let order =
        if target != SortTarget::Key && order == Some(SortOrder::None) { Some(SortOrder::Ascend) } else { order };
    if matches!(order, Some(SortOrder::Ascend | SortOrder::Descend)) {
        let key = |kv: &KeyValue| -> (i64, Vec<u8>) {
            match target {
                SortTarget::Key => (0, kv.key.clone()),
                SortTarget::Version => (kv.version, vec![]),
                SortTarget::Create => (kv.create_revision, vec![]),
                SortTarget::Mod => (kv.mod_revision, vec![]),
                SortTarget::Value => (0, kv.value.clone()),
            }
        };
        rr.kvs.sort_by_key(key);
        if order == Some(SortOrder::Descend) {
            rr.kvs.reverse();
        }
    }
    let mut more = false;
    if r.limit > 0 && rr.kvs.len() > r.limit as usize {
        rr.kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        for kv in &mut rr.kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse { header: header(rr.rev), kvs: rr.kvs, more, count: rr.count as i64 })
}

fn get_one(view: &impl ReadView, key: &[u8]) -> Result<Option<KeyValue>> {
    Ok(view.range(&KeyRange::single(key), RangeOptions::default())?.kvs.into_iter().next())
}

/// Checks what a put needs from the current state (the previous key for `ignore_value` /
/// `ignore_lease`, and the lease) without changing anything.
pub fn check_put(view: &impl ReadView, p: &PutRequest, lessor: &Lessor) -> Result<()> {
    if (p.ignore_value || p.ignore_lease) && get_one(view, &p.key)?.is_none() {
        return Err(Error::KeyNotFound);
    }
    check_lease(p.lease, lessor)
}

fn check_lease(lease: i64, lessor: &Lessor) -> Result<()> {
    if lease != 0 && !lessor.exists(lease) {
        return Err(Error::LeaseNotFound);
    }
    Ok(())
}

pub fn put(txn: &mut WriteTxn<'_>, p: &PutRequest, lessor: &Lessor) -> Result<PutResponse> {
    let prev = if p.ignore_value || p.ignore_lease || p.prev_kv { get_one(txn, &p.key)? } else { None };
    if (p.ignore_value || p.ignore_lease) && prev.is_none() {
        return Err(Error::KeyNotFound);
    }
    let value = match (&prev, p.ignore_value) {
        (Some(prev), true) => prev.value.clone(),
        _ => p.value.clone(),
    };
    let lease = match (&prev, p.ignore_lease) {
        (Some(prev), true) => prev.lease,
        _ => p.lease,
    };
    check_lease(lease, lessor)?;
    txn.put(&p.key, value, lease);
    lessor.attach(&p.key, lease);
    Ok(PutResponse { header: header(txn.read_rev()), prev_kv: if p.prev_kv { prev } else { None } })
}

pub fn delete_range(txn: &mut WriteTxn<'_>, d: &DeleteRangeRequest, lessor: &Lessor) -> Result<DeleteRangeResponse> {
    let kr = KeyRange::new(&d.key, &d.range_end);
    let prev_kvs = if d.prev_kv { txn.range(&kr, RangeOptions::default())?.kvs } else { vec![] };
    let deleted = txn.delete_range(&kr);
    lessor.detach(&deleted);
    Ok(DeleteRangeResponse { header: header(txn.read_rev()), deleted: deleted.len() as i64, prev_kvs })
}

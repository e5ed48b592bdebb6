//! `--namespace`: the proxy's clients see the part of the key space under a prefix as the whole of it
//! (etcd's `clientv3/namespace`). Keys and range ends are prefixed on the way in; keys are stripped on
//! the way out (kvs, prev_kv, watch events, lease keys, lock and election keys).
//!
//! ```text
//!   key k             ─▶ p + k
//!   range end e       ─▶ p + e;   "\0" (every key from k on) ─▶ the end of the prefix, KeyRange::prefix_end(p)
//!   answers           ─▶ p stripped; a key outside p (a lease's) is left out
//! ```

use crate::mvcc::KeyRange;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::response_op::Response as OpResponse;
use crate::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseOp, TxnRequest, TxnResponse,
};
use crate::proto::mvccpb::KeyValue;

/// The prefix; empty when the proxy serves the whole key space.
#[derive(Clone, Debug, Default)]
pub struct Namespace {
    prefix: std::sync::Arc<[u8]>,
}

impl Namespace {
    pub fn new(prefix: &[u8]) -> Namespace {
        Namespace { prefix: prefix.into() }
    }

    pub fn is_empty(&self) -> bool {
        self.prefix.is_empty()
    }

    pub fn key(&self, key: &mut Vec<u8>) {
        if !self.is_empty() {
            let mut k = self.prefix.to_vec();
            k.extend_from_slice(key);
            *key = k;
        }
    }

    pub fn range_end(&self, end: &mut Vec<u8>) {
        if self.is_empty() || end.is_empty() {
            return;
        }
        if end.as_slice() == [0] {
            *end = KeyRange::prefix_end(&self.prefix);
        } else {
            self.key(end);
        }
    }

    /// Strips the prefix from `key`; false when the key is not under it.
    pub fn strip(&self, key: &mut Vec<u8>) -> bool {
        if self.is_empty() {
            return true;
        }
        if key.starts_with(&self.prefix) {
            key.drain(..self.prefix.len());
            true
        } else {
            false
        }
    }

    pub fn strip_kv(&self, kv: &mut KeyValue) {
        self.strip(&mut kv.key);
    }

    pub fn strip_kvs(&self, kvs: &mut [KeyValue]) {
        if !self.is_empty() {
            kvs.iter_mut().for_each(|kv| self.strip_kv(kv));
        }
    }

    pub fn range(&self, r: &mut RangeRequest) {
        self.key(&mut r.key);
        self.range_end(&mut r.range_end);
    }

    pub fn put(&self, r: &mut PutRequest) {
        self.key(&mut r.key);
    }

    pub fn delete(&self, r: &mut DeleteRangeRequest) {
        self.key(&mut r.key);
        self.range_end(&mut r.range_end);
    }

    fn compare(&self, c: &mut Compare) {
        self.key(&mut c.key);
        self.range_end(&mut c.range_end);
    }

    fn op(&self, op: &mut RequestOp) {
        match &mut op.request {
            Some(Op::RequestRange(r)) => self.range(r),
            Some(Op::RequestPut(r)) => self.put(r),
            Some(Op::RequestDeleteRange(r)) => self.delete(r),
            Some(Op::RequestTxn(t)) => self.txn(t),
            None => {}
        }
    }

    pub fn txn(&self, t: &mut TxnRequest) {
        if self.is_empty() {
            return;
        }
        t.compare.iter_mut().for_each(|c| self.compare(c));
        t.success.iter_mut().chain(t.failure.iter_mut()).for_each(|op| self.op(op));
    }

    pub fn range_response(&self, r: &mut RangeResponse) {
        self.strip_kvs(&mut r.kvs);
    }

    pub fn put_response(&self, r: &mut PutResponse) {
        if let Some(kv) = &mut r.prev_kv {
            self.strip_kv(kv);
        }
    }

    pub fn delete_response(&self, r: &mut DeleteRangeResponse) {
        self.strip_kvs(&mut r.prev_kvs);
    }

    fn op_response(&self, op: &mut ResponseOp) {
        match &mut op.response {
            Some(OpResponse::ResponseRange(r)) => self.range_response(r),
            Some(OpResponse::ResponsePut(r)) => self.put_response(r),
            Some(OpResponse::ResponseDeleteRange(r)) => self.delete_response(r),
            Some(OpResponse::ResponseTxn(t)) => self.txn_response(t),
            None => {}
        }
    }

    pub fn txn_response(&self, t: &mut TxnResponse) {
        if !self.is_empty() {
            t.responses.iter_mut().for_each(|op| self.op_response(op));
        }
    }

    /// A lease's attached keys as the namespace sees them: those under the prefix, stripped.
    pub fn lease_keys(&self, keys: &mut Vec<Vec<u8>>) {
        if !self.is_empty() {
            keys.retain_mut(|k| self.strip(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_ends() {
        let ns = Namespace::new(b"p/");
        let mut r = RangeRequest { key: b"a".to_vec(), range_end: vec![0], ..Default::default() };
        ns.range(&mut r);
        assert_eq!((r.key.as_slice(), r.range_end.as_slice()), (&b"p/a"[..], &b"p0"[..]));
        let mut r = RangeRequest { key: b"a".to_vec(), range_end: b"c".to_vec(), ..Default::default() };
        ns.range(&mut r);
        assert_eq!(r.range_end, b"p/c");
        let mut keys = vec![b"p/x".to_vec(), b"q/y".to_vec()];
        ns.lease_keys(&mut keys);
        assert_eq!(keys, [b"x".to_vec()]);
        let none = Namespace::default();
        let mut k = b"k".to_vec();
        none.key(&mut k);
        assert_eq!(k, b"k");
    }
}

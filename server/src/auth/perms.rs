//! A user's key permissions as two interval sets (read, write), built once per user and auth revision
//! (etcd's range permission cache): a check is one ordered-map search, O(log n) in the user's grants.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::proto::authpb::permission::Type;
use crate::proto::authpb::Permission;

/// Disjoint, merged half-open key spans `[start, end)`; `end = None` is unbounded.
#[derive(Debug, Default, Clone)]
pub struct Spans {
    spans: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

/// `max` of two span ends where `None` is +∞.
fn max_end(a: Option<Vec<u8>>, b: Option<Vec<u8>>) -> Option<Vec<u8>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

/// A key/range_end pair as a span: empty range_end is the single key, `"\0"` every key from `key`;
/// `None` for an empty range (`range_end <= key`).
pub fn span_of(key: &[u8], range_end: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    match range_end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            Some((key.to_vec(), Some(next)))
        }
        [0] => Some((key.to_vec(), None)),
        e if e <= key => None,
        e => Some((key.to_vec(), Some(e.to_vec()))),
    }
}

impl Spans {
    pub fn insert(&mut self, mut start: Vec<u8>, mut end: Option<Vec<u8>>) {
        // A span starting at or before `start` that reaches it is absorbed, and so is every span
        // starting inside [start, end].
        if let Some((s, e)) = self.spans.range(..=start.clone()).next_back() {
            if e.as_ref().is_none_or(|e| *e >= start) {
                let (s, e) = (s.clone(), e.clone());
                self.spans.remove(&s);
                start = s;
                end = max_end(end, e);
            }
        }
        loop {
            let next = self.spans.range((Bound::Included(start.clone()), Bound::Unbounded)).next();
            let Some((s, e)) = next else { break };
            if end.as_ref().is_some_and(|end| s > end) {
                break;
            }
            let (s, e) = (s.clone(), e.clone());
            self.spans.remove(&s);
            end = max_end(end, e);
        }
        self.spans.insert(start, end);
    }

    /// Whether every key of `[start, end)` is in one span (spans are merged, so a covered range lies in
    /// one).
    pub fn covers(&self, start: &[u8], end: Option<&[u8]>) -> bool {
        let Some((_, e)) = self.spans.range::<[u8], _>((Bound::Unbounded, Bound::Included(start))).next_back() else {
            return false;
        };
        match (e, end) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(e), Some(end)) => e.as_slice() >= end && e.as_slice() > start,
        }
    }
}

/// What a user may do: everything (the root role), or read and write within its roles' grants.
#[derive(Debug, Default, Clone)]
pub struct UserPerms {
    pub root: bool,
    pub read: Spans,
    pub write: Spans,
}

impl UserPerms {
    pub fn add(&mut self, p: &Permission) {
        let Some((start, end)) = span_of(&p.key, &p.range_end) else { return };
        let kind = Type::try_from(p.perm_type).unwrap_or(Type::Read);
        if matches!(kind, Type::Read | Type::Readwrite) {
            self.read.insert(start.clone(), end.clone());
        }
        if matches!(kind, Type::Write | Type::Readwrite) {
            self.write.insert(start, end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: Type, key: &str, end: &[u8]) -> Permission {
        Permission { perm_type: t as i32, key: key.into(), range_end: end.to_vec() }
    }

    #[test]
    fn covers_points_ranges_and_unions() {
        let mut u = UserPerms::default();
        u.add(&perm(Type::Read, "foo", b""));
        u.add(&perm(Type::Readwrite, "a", b"c"));
        u.add(&perm(Type::Read, "c", b"e"));
        u.add(&perm(Type::Write, "zz", b"\0"));
        let covers = |s: &Spans, k: &str, e: &[u8]| {
            let (start, end) = span_of(k.as_bytes(), e).unwrap();
            s.covers(&start, end.as_deref())
        };
        assert!(covers(&u.read, "foo", b""));
        assert!(!covers(&u.read, "fo", b""));
        assert!(!covers(&u.read, "foo", b"fop"), "[foo, fop) holds more than foo");
        assert!(covers(&u.read, "a", b"e"), "[a,c) and [c,e) together");
        assert!(!covers(&u.write, "a", b"e"));
        assert!(covers(&u.write, "b", b""));
        assert!(!covers(&u.read, "a", b"\0"));
        assert!(covers(&u.write, "zzz", b"\0"));
        assert!(covers(&u.write, "zz", b""));
        assert!(!covers(&u.write, "z", b""));
    }
}

//! [`KeyRange`]: which keys a request addresses (etcd's `key` / `range_end` pair), and prefix ranges;
//! [`IntervalSet`]: the keys of several ranges, merged (txn duplicate checks, auth permissions).

use std::collections::BTreeMap;
use std::ops::Bound;

/// Which keys a request addresses, from etcd's `key` / `range_end` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub key: Vec<u8>,
    /// `None`: the single key. `Some(empty)`: every key `>= key` (range_end `"\0"`). Otherwise `[key, end)`.
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        let end = match range_end {
            [] => None,
            [0] => Some(Vec::new()),
            e => Some(e.to_vec()),
        };
        KeyRange { key: key.to_vec(), end }
    }

    pub fn single(key: &[u8]) -> KeyRange {
        KeyRange { key: key.to_vec(), end: None }
    }

    /// Every key that starts with `prefix` (clientv3's `WithPrefix`).
    pub fn prefix(prefix: &[u8]) -> KeyRange {
        KeyRange::new(prefix, &KeyRange::prefix_end(prefix))
    }

    /// The `range_end` that makes `prefix` a prefix range (etcd's `GetPrefixRangeEnd`): the first key
    /// after every key that starts with `prefix`, or `"\0"` (every key from `prefix` on) when there is
    /// none, for an empty or all-0xff prefix. A prefix end proper never is `"\0"`: it ends in a byte > 0.
    pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
        let mut end = prefix.to_vec();
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                return end;
            }
        }
        vec![0]
    }

    /// The range as etcd's `range_end`: empty for a single key, `"\0"` for every key from `key` on.
    pub fn range_end(&self) -> Vec<u8> {
        match &self.end {
            None => Vec::new(),
            Some(e) if e.is_empty() => vec![0],
            Some(e) => e.clone(),
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match &self.end {
            None => k == self.key.as_slice(),
            Some(e) if e.is_empty() => k >= self.key.as_slice(),
            Some(e) => k >= self.key.as_slice() && k < e.as_slice(),
        }
    }

    /// Whether two ranges share a key.
    pub fn overlaps(&self, other: &KeyRange) -> bool {
        let end_of = |r: &KeyRange| -> Option<Vec<u8>> {
            match &r.end {
                None => {
                    let mut e = r.key.clone();
                    e.push(0);
                    Some(e)
                }
                Some(e) if e.is_empty() => None,
                Some(e) => Some(e.clone()),
            }
        };
        let (a_end, b_end) = (end_of(self), end_of(other));
        let a_before_b_end = b_end.as_ref().is_none_or(|e| &self.key < e);
        let b_before_a_end = a_end.as_ref().is_none_or(|e| &other.key < e);
        a_before_b_end && b_before_a_end
    }

    /// The range as bounds over ordered keys; `None` when it is empty (`end <= key`).
    pub(super) fn bounds(&self) -> Option<KeyBounds<'_>> {
        let start = Bound::Included(self.key.as_slice());
        match &self.end {
            None => Some((start, Bound::Included(self.key.as_slice()))),
            Some(e) if e.is_empty() => Some((start, Bound::Unbounded)),
            Some(e) if e.as_slice() <= self.key.as_slice() => None,
            Some(e) => Some((start, Bound::Excluded(e.as_slice()))),
        }
    }
}

/// Bounds of a [`KeyRange`] over the index's ordered keys.
pub(super) type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// The keys a set of key ranges covers, kept as disjoint half-open intervals `[start, end)` (end `None`:
/// unbounded) so a point lookup is one ordered-map search.
#[derive(Debug, Default, Clone)]
pub struct IntervalSet {
    spans: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl IntervalSet {
    pub fn insert(&mut self, r: &KeyRange) {
        match &r.end {
            None => {
                let mut next = r.key.clone();
                next.push(0);
                self.insert_span(r.key.clone(), Some(next))
            }
            Some(e) if e.is_empty() => self.insert_span(r.key.clone(), None),
            Some(e) if e.as_slice() <= r.key.as_slice() => {}
            Some(e) => self.insert_span(r.key.clone(), Some(e.clone())),
        }
    }

    fn insert_span(&mut self, mut start: Vec<u8>, mut end: Option<Vec<u8>>) {
        // The span starting at or before `start` that reaches it is absorbed, and so is every span starting
        // inside [start, end].
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

    pub fn extend(&mut self, other: IntervalSet) {
        for (start, end) in other.spans {
            self.insert_span(start, end);
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        self.spans
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(k)))
            .next_back()
            .is_some_and(|(_, end)| end.as_ref().is_none_or(|e| k < e.as_slice()))
    }

    /// The parts of `r` in the set, in key order: `r` itself if it is a single key in the set, else one
    /// range `[max(start, r.key), min(end, r.end))` per span that overlaps it. O(log n + parts).
    pub fn clip(&self, r: &KeyRange) -> Vec<KeyRange> {
        // `None`: unbounded.
        let end: Option<&[u8]> = match &r.end {
            None => return if self.contains(&r.key) { vec![r.clone()] } else { Vec::new() },
            Some(e) if e.is_empty() => None,
            Some(e) if e.as_slice() <= r.key.as_slice() => return Vec::new(),
            Some(e) => Some(e.as_slice()),
        };
        let first = self.spans.range::<[u8], _>((Bound::Unbounded, Bound::Included(r.key.as_slice()))).next_back();
        let later = self.spans.range::<[u8], _>((Bound::Excluded(r.key.as_slice()), Bound::Unbounded));
        let mut parts = Vec::new();
        for (start, stop) in first.into_iter().chain(later) {
            if end.is_some_and(|end| start.as_slice() >= end) {
                break;
            }
            let start = start.as_slice().max(r.key.as_slice());
            let stop = match (stop.as_deref(), end) {
                (None, None) => None,
                (Some(s), None) | (None, Some(s)) => Some(s),
                (Some(a), Some(b)) => Some(a.min(b)),
            };
            if stop.is_some_and(|stop| stop <= start) {
                continue;
            }
            parts.push(KeyRange { key: start.to_vec(), end: Some(stop.map(<[u8]>::to_vec).unwrap_or_default()) });
        }
        parts
    }

    /// Whether every key of `r` is in the set (an empty range is checked as its first key). The spans
    /// are merged, so a covered range lies inside one of them.
    pub fn covers(&self, r: &KeyRange) -> bool {
        let Some((_, end)) =
            self.spans.range::<[u8], _>((Bound::Unbounded, Bound::Included(r.key.as_slice()))).next_back()
        else {
            return false;
        };
        let Some(end) = end else { return true };
        match &r.end {
            Some(e) if e.is_empty() => false,
            Some(e) if e.as_slice() > r.key.as_slice() => end.as_slice() >= e.as_slice(),
            _ => r.key.as_slice() < end.as_slice(),
        }
    }
}

fn max_end(a: Option<Vec<u8>>, b: Option<Vec<u8>>) -> Option<Vec<u8>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_set_merges_and_finds() {
        let mut s = IntervalSet::default();
        s.insert(&KeyRange::new(b"d", b"f"));
        s.insert(&KeyRange::new(b"a", b"b"));
        s.insert(&KeyRange::new(b"k", b""));
        s.insert(&KeyRange::new(b"e", b"h"));
        s.insert(&KeyRange::new(b"x", b"\0"));
        for (k, inside) in [("a", true), ("b", false), ("c", false), ("d", true), ("g", true), ("h", false)] {
            assert_eq!(s.contains(k.as_bytes()), inside, "{k}");
        }
        assert!(s.contains(b"k") && !s.contains(b"ka") && s.contains(b"x") && s.contains(b"zzz"));
        s.insert(&KeyRange::new(b"a", b"z"));
        assert!(s.contains(b"ka") && s.contains(b"zzz") && !s.contains(b"0"));
        assert_eq!(s.spans.len(), 1);
    }

    #[test]
    fn clip_keeps_the_parts_in_the_set() {
        let mut s = IntervalSet::default();
        s.insert(&KeyRange::prefix(b"app/"));
        s.insert(&KeyRange::single(b"foo"));
        s.insert(&KeyRange::new(b"x", b"\0"));
        let parts = |k: &[u8], e: &[u8]| -> Vec<(Vec<u8>, Vec<u8>)> {
            s.clip(&KeyRange::new(k, e)).into_iter().map(|r| (r.key.clone(), r.range_end())).collect()
        };
        let p = |k: &str, e: &[u8]| (k.as_bytes().to_vec(), e.to_vec());
        // Every key: the spans themselves, the open-ended one with range_end "\0".
        assert_eq!(parts(b"\0", b"\0"), vec![p("app/", b"app0"), p("foo", b"foo\0"), p("x", b"\0")]);
        // Cut at both ends, and a range inside one span.
        assert_eq!(parts(b"app/m", b"g"), vec![p("app/m", b"app0"), p("foo", b"foo\0")]);
        assert_eq!(parts(b"app/a", b"app/b"), vec![p("app/a", b"app/b")]);
        assert_eq!(parts(b"y", b"z"), vec![p("y", b"z")]);
        // Nothing of it in the set; single keys; an empty range.
        assert_eq!(parts(b"b", b"f"), vec![]);
        assert_eq!(parts(b"foo", b""), vec![p("foo", b"")]);
        assert_eq!(parts(b"fo", b""), vec![]);
        assert_eq!(parts(b"b", b"a"), vec![]);
        // What clip returns is covered; what it leaves out is not in the set.
        for part in s.clip(&KeyRange::new(b"a", b"\0")) {
            assert!(s.covers(&part), "{part:?}");
        }
    }

    #[test]
    fn key_ranges() {
        let r = KeyRange::new(b"a", b"c");
        assert!(r.contains(b"b") && !r.contains(b"c"));
        assert!(KeyRange::new(b"b", b"\0").contains(b"zzz"));
        assert!(r.overlaps(&KeyRange::single(b"b")));
        assert!(!r.overlaps(&KeyRange::single(b"c")));
        assert!(KeyRange::new(b"x", b"\0").overlaps(&KeyRange::new(b"a", b"y")));
        assert!(!KeyRange::single(b"a").overlaps(&KeyRange::single(b"ab")));
    }

    #[test]
    fn prefix_ranges() {
        assert_eq!(KeyRange::prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(KeyRange::prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(KeyRange::prefix_end(b"a\xff\xff"), b"b".to_vec());
        assert_eq!(KeyRange::prefix_end(b"\xff"), vec![0]);
        assert_eq!(KeyRange::prefix_end(b""), vec![0]);

        let p = KeyRange::prefix(b"a/");
        assert_eq!(p, KeyRange { key: b"a/".to_vec(), end: Some(b"a0".to_vec()) });
        assert!(p.contains(b"a/") && p.contains(b"a/\xff\xff") && !p.contains(b"a0") && !p.contains(b"a"));
        // No key follows every key under 0xff: the range runs to the end of the key space.
        let ff = KeyRange::prefix(b"\xff");
        assert!(ff.contains(b"\xff") && ff.contains(b"\xff\xff\x01") && !ff.contains(b"\xfe"));
        assert_eq!(KeyRange::prefix(b""), KeyRange::new(b"", b"\0"));
    }
}

//! [`KeyRange`]: which keys a request addresses (etcd's `key` / `range_end` pair), and prefix ranges.

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

#[cfg(test)]
mod tests {
    use super::*;

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

//! A user's key permissions as two interval sets (read, write), built once per user and auth revision
//! (etcd's range permission cache): a check is one ordered-map search, O(log n) in the user's grants.

use crate::mvcc::{IntervalSet, KeyRange};
use crate::proto::authpb::permission::Type;
use crate::proto::authpb::Permission;

/// What a user may do: everything (the root role), or read and write within its roles' grants.
#[derive(Debug, Default, Clone)]
pub struct UserPerms {
    pub root: bool,
    pub read: IntervalSet,
    pub write: IntervalSet,
}

impl UserPerms {
    /// Adds a grant: an empty range_end is the key alone, `"\0"` every key from it (etcd's semantics,
    /// those of [`KeyRange`]).
    pub fn add(&mut self, p: &Permission) {
        let range = KeyRange::new(&p.key, &p.range_end);
        let kind = Type::try_from(p.perm_type).unwrap_or(Type::Read);
        if matches!(kind, Type::Read | Type::Readwrite) {
            self.read.insert(&range);
        }
        if matches!(kind, Type::Write | Type::Readwrite) {
            self.write.insert(&range);
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
        let covers = |s: &IntervalSet, k: &str, e: &[u8]| s.covers(&KeyRange::new(k.as_bytes(), e));
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
        assert!(covers(&u.read, "b", b"a"), "an empty range is checked as its first key");
    }
}

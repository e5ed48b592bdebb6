//! Revisions and their on-disk encoding.

/// A point in the key space's history: `main` is the cluster-wide revision a change belongs to, `sub`
/// orders the changes made within that revision (a txn with several writes shares one `main`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

/// Length of an encoded revision: 8 bytes main, `_`, 8 bytes sub (big endian, so byte order is
/// revision order).
pub const REV_BYTES: usize = 17;
/// Suffix of a key in the kv column family whose revision deleted the key.
const TOMBSTONE: u8 = b't';

impl Revision {
    pub fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    pub fn to_bytes(self, tombstone: bool) -> Vec<u8> {
        let mut b = Vec::with_capacity(REV_BYTES + 1);
        b.extend_from_slice(&(self.main as u64).to_be_bytes());
        b.push(b'_');
        b.extend_from_slice(&(self.sub as u64).to_be_bytes());
        if tombstone {
            b.push(TOMBSTONE);
        }
        b
    }

    /// Decodes a kv column family key: the revision and whether it is a tombstone.
    pub fn from_bytes(b: &[u8]) -> Option<(Revision, bool)> {
        if b.len() < REV_BYTES || b[8] != b'_' {
            return None;
        }
        let main = u64::from_be_bytes(b[0..8].try_into().ok()?) as i64;
        let sub = u64::from_be_bytes(b[9..17].try_into().ok()?) as i64;
        let tombstone = match &b[REV_BYTES..] {
            [] => false,
            [TOMBSTONE] => true,
            _ => return None,
        };
        Some((Revision { main, sub }, tombstone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_orders_like_revisions() {
        let a = Revision::new(2, 7).to_bytes(false);
        let b = Revision::new(3, 0).to_bytes(true);
        let c = Revision::new(256, 1).to_bytes(false);
        assert!(a < b && b < c);
        assert_eq!(Revision::from_bytes(&b), Some((Revision::new(3, 0), true)));
        assert_eq!(Revision::from_bytes(&c), Some((Revision::new(256, 1), false)));
        assert_eq!(Revision::from_bytes(b"short"), None);
    }
}

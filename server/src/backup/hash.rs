//! `Maintenance.Hash`: etcd 3.4's hash of its backend, over the buckets a snapshot file of the same state
//! holds (`etcd::feed`), so that it is the same on every member after the same log.
//!
//! ```text
//!   etcd: CRC-32C over, for each bucket in bbolt's order (names ascending): the name, then each key and
//!         value in key order, leaving out meta/consistent_index (its DefaultIgnores: the raft position)
//!   here: etcd::feed ──▶ Hasher: one CRC-32C and length per bucket, in the scan's order
//!         finish() ──▶ the names sorted, each name appended and its bucket's CRC combined in after it
//! ```
//!
//! The scan gives buckets in column-family order, not by name; CRC-32C combines (the CRC of `a ‖ b` from
//! those of `a` and `b` and the length of `b`), so each bucket is hashed alone as it streams and the
//! results are joined in bbolt's order: the value is the one etcd's single pass gives over the same
//! buckets. It differs from `etcdctl snapshot status`'s hash of a file of the same state only by the
//! consistent index, which the status hash includes.

use std::io;

use super::etcd::{self, Sink};

/// A bucket's name, the CRC-32C of its keys and values and their length.
struct Bucket {
    name: Vec<u8>,
    crc: u32,
    len: usize,
}

/// Hashes the buckets [`etcd::feed`] gives, as etcd's backend `Hash(DefaultIgnores)` does.
#[derive(Default)]
pub struct Hasher {
    buckets: Vec<Bucket>,
}

impl Sink for Hasher {
    fn bucket(&mut self, name: &[u8]) -> io::Result<()> {
        self.buckets.push(Bucket { name: name.to_vec(), crc: 0, len: 0 });
        Ok(())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let Some(b) = self.buckets.last_mut() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a key outside any bucket"));
        };
        if b.name == etcd::META && key == etcd::CONSISTENT_INDEX {
            return Ok(());
        }
        b.crc = crc32c::crc32c_append(crc32c::crc32c_append(b.crc, key), value);
        b.len += key.len() + value.len();
        Ok(())
    }
}

impl Hasher {
    /// The hash of every bucket given, in bbolt's order.
    pub fn finish(mut self) -> u32 {
        self.buckets.sort_by(|a, b| a.name.cmp(&b.name));
        self.buckets.iter().fold(0, |crc, b| crc32c::crc32c_combine(crc32c::crc32c_append(crc, &b.name), b.crc, b.len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bucket's name and pairs.
    type Named<'a> = (&'a [u8], &'a [(&'a [u8], &'a [u8])]);

    /// The hash in one pass, as etcd computes it: buckets by name, consistent index left out.
    fn one_pass(buckets: &[Named<'_>]) -> u32 {
        let mut sorted = buckets.to_vec();
        sorted.sort_by_key(|(name, _)| *name);
        let mut crc = 0;
        for (name, pairs) in sorted {
            crc = crc32c::crc32c_append(crc, name);
            for (k, v) in pairs {
                if !(name == etcd::META && *k == etcd::CONSISTENT_INDEX) {
                    crc = crc32c::crc32c_append(crc32c::crc32c_append(crc, k), v);
                }
            }
        }
        crc
    }

    #[test]
    fn buckets_in_any_order_hash_as_one_pass_in_name_order() {
        let key: &[(&[u8], &[u8])] = &[(b"\0\0\0\0\0\0\0\x02_\0\0\0\0\0\0\0\0", b"kv"), (b"\0\0\0\0\0\0\0\x03", b"x")];
        let meta: &[(&[u8], &[u8])] = &[(b"consistent_index", b"\0\0\0\0\0\0\0\x09"), (b"finishedCompactRev", b"r")];
        let lease: &[(&[u8], &[u8])] = &[];
        let buckets: [Named<'_>; 4] =
            [(b"key", key), (b"lease", lease), (b"meta", meta), (b"authUsers", &[(b"u", b"pw")])];
        let mut h = Hasher::default();
        for (name, pairs) in &buckets {
            h.bucket(name).unwrap();
            for (k, v) in *pairs {
                h.put(k, v).unwrap();
            }
        }
        let hash = h.finish();
        assert_eq!(hash, one_pass(&buckets));
        // The consistent index is left out; any other pair counts.
        let other_index: &[(&[u8], &[u8])] =
            &[(b"consistent_index", b"\0\0\0\0\0\0\0\x0a"), (b"finishedCompactRev", b"r")];
        assert_eq!(hash, one_pass(&[buckets[0], buckets[1], (b"meta", other_index), buckets[3]]));
        assert_ne!(hash, one_pass(&[buckets[0], buckets[1], buckets[3]]));
        assert_eq!(Hasher::default().finish(), 0);
    }
}

//! The state machine as one byte string: what a raft snapshot carries to a member that is too far behind
//! (or new), and how the receiver replaces its own state with it.
//!
//! ```text
//!   leader:   Backend::scan_state (one RocksDB snapshot) ─▶ encode ─▶ raft Snapshot.data ─▶ peer
//!   follower: decode ─▶ WriteBatch { clear Kv, Lease, Meta, Auth; put every pair; keep own identity } ─▶ write
//! ```
//!
//! Encoding: a sequence of records `cf (1 byte) | key length (u32 BE) | key | value length (u32 BE) | value`.

use super::{meta, Backend, Cf, Result, StorageError, WriteBatch};

/// Meta keys that belong to the member, not the cluster: never sent, never overwritten.
const LOCAL_META: &[&[u8]] = &[meta::MEMBER_ID];

fn cf_code(cf: Cf) -> u8 {
    match cf {
        Cf::Kv => 1,
        Cf::Meta => 2,
        Cf::Lease => 3,
        Cf::Auth => 4,
        Cf::RaftLog | Cf::RaftState => 0,
    }
}

fn cf_of(code: u8) -> Option<Cf> {
    match code {
        1 => Some(Cf::Kv),
        2 => Some(Cf::Meta),
        3 => Some(Cf::Lease),
        4 => Some(Cf::Auth),
        _ => None,
    }
}

/// Whether a pair of the state machine is part of its encoding (the member's own identity is not).
fn sent(cf: Cf, k: &[u8]) -> bool {
    !(cf == Cf::Meta && LOCAL_META.contains(&k))
}

/// Writes one record of the encoding (nothing for a pair that is not sent); `false` if `out` stopped.
fn write_record(out: &mut dyn FnMut(&[u8]) -> bool, cf: Cf, k: &[u8], v: &[u8]) -> bool {
    if !sent(cf, k) {
        return true;
    }
    let mut head = [0u8; 5];
    head[0] = cf_code(cf);
    head[1..].copy_from_slice(&(k.len() as u32).to_be_bytes());
    out(&head) && out(k) && out(&(v.len() as u32).to_be_bytes()) && out(v)
}

/// The state machine of `backend` as of now, and the applied index it is the state of (in memory: a raft
/// snapshot carries its state as one byte string).
pub fn encode(backend: &dyn Backend) -> Result<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    let mut applied = 0;
    backend.scan_state(&mut |cf, k, v| {
        if cf == Cf::Meta && k == meta::APPLIED_INDEX {
            applied = meta::decode_u64(v).unwrap_or(0);
        }
        write_record(
            &mut |piece| {
                out.extend_from_slice(piece);
                true
            },
            cf,
            k,
            v,
        );
    })?;
    Ok((out, applied))
}

/// The pairs of an encoded state.
pub fn decode(data: &[u8]) -> Result<Vec<(Cf, Vec<u8>, Vec<u8>)>> {
    let bad = |what: &str| StorageError::Corrupt(format!("snapshot: {what}"));
    let mut pairs = Vec::new();
    let mut rest = data;
    let take = |rest: &mut &[u8], n: usize| -> Result<Vec<u8>> {
        if rest.len() < n {
            return Err(bad("truncated record"));
        }
        let (a, b) = rest.split_at(n);
        *rest = b;
        Ok(a.to_vec())
    };
    while !rest.is_empty() {
        let cf = cf_of(take(&mut rest, 1)?[0]).ok_or_else(|| bad("unknown column family"))?;
        let klen = u32::from_be_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes")) as usize;
        let k = take(&mut rest, klen)?;
        let vlen = u32::from_be_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes")) as usize;
        let v = take(&mut rest, vlen)?;
        pairs.push((cf, k, v));
    }
    Ok(pairs)
}

/// A batch that replaces the state machine of `backend` by `data` (keeping the member's own identity).
pub fn restore_batch(backend: &dyn Backend, data: &[u8]) -> Result<WriteBatch> {
    let pairs = decode(data)?;
    let mut batch = WriteBatch::default();
    let keep: Vec<(Vec<u8>, Option<Vec<u8>>)> =
        LOCAL_META.iter().map(|k| Ok((k.to_vec(), backend.get(Cf::Meta, k)?))).collect::<Result<_>>()?;
    for cf in Cf::STATE {
        // Keys are arbitrary bytes: [0x00, 0xff × 64) spans every key the state machine writes.
        batch.delete_range(cf, Vec::new(), vec![0xff; 64]);
    }
    for (cf, k, v) in pairs {
        batch.put(cf, k, v);
    }
    for (k, v) in keep {
        if let Some(v) = v {
            batch.put(Cf::Meta, k, v);
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::RocksDb;

    #[test]
    fn encode_restore_roundtrip_keeps_identity() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let src = RocksDb::open(a.path()).unwrap();
        let dst = RocksDb::open(b.path()).unwrap();
        let mut w = WriteBatch::default();
        w.put(Cf::Kv, b"k1".to_vec(), b"v1".to_vec());
        w.put(Cf::Kv, vec![0xff, 0xfe], b"v2".to_vec());
        w.put(Cf::Lease, 7i64.to_be_bytes().to_vec(), 10i64.to_be_bytes().to_vec());
        w.put(Cf::Meta, meta::MEMBER_ID, meta::encode_u64(1));
        w.put(Cf::Meta, meta::APPLIED_INDEX, meta::encode_u64(42));
        w.put(Cf::RaftLog, b"x".to_vec(), b"not state".to_vec());
        src.write(w, true).unwrap();
        let mut w = WriteBatch::default();
        w.put(Cf::Kv, b"stale".to_vec(), b"gone".to_vec());
        w.put(Cf::Meta, meta::MEMBER_ID, meta::encode_u64(2));
        dst.write(w, true).unwrap();

        let (data, applied) = encode(&src).unwrap();
        assert_eq!(applied, 42);
        assert_eq!(decode(&data).unwrap().len(), 4, "kv ×2, lease, applied index; no member id, no raft log");
        dst.write(restore_batch(&dst, &data).unwrap(), true).unwrap();
        assert_eq!(dst.get(Cf::Kv, b"stale").unwrap(), None);
        assert_eq!(dst.get(Cf::Kv, &[0xff, 0xfe]).unwrap(), Some(b"v2".to_vec()));
        assert_eq!(dst.get(Cf::Meta, meta::APPLIED_INDEX).unwrap(), Some(meta::encode_u64(42)));
        assert_eq!(dst.get(Cf::Meta, meta::MEMBER_ID).unwrap(), Some(meta::encode_u64(2)));
        assert!(decode(&data[..data.len() - 1]).is_err());
    }
}

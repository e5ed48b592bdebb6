//! modkv's own snapshot format, from before snapshots were written in etcd's: still read by `modkv snapshot
//! restore` and `status`, never written.
//!
//! ```text
//!   "modkv-snapshot\0\0" (16) | state length (u64 BE) | state (storage::snapshot encoding) | zeros to a
//!   multiple of 512 | SHA-256 of everything before it (32)
//! ```

use std::path::Path;

use sha2::{Digest, Sha256};

use super::{hex, BackupError, HASH_LEN};
use crate::storage::snapshot::decode;
use crate::storage::Cf;

pub const MAGIC: &[u8; 16] = b"modkv-snapshot\0\0";
/// The header: magic and the state's length.
const HEADER_LEN: usize = MAGIC.len() + 8;

/// What a snapshot file holds.
pub struct Contents {
    pub pairs: Vec<(Cf, Vec<u8>, Vec<u8>)>,
    pub size: usize,
    pub hash: [u8; HASH_LEN],
}

/// The state in a snapshot file of this format, its hash checked unless `skip_hash_check`.
pub fn read(path: &Path, skip_hash_check: bool) -> Result<Contents, BackupError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| BackupError::Read { path: name.clone(), source })?;
    if bytes.len() < HEADER_LEN + HASH_LEN || !bytes.starts_with(MAGIC) {
        return Err(BackupError::Invalid { path: name, reason: "not a modkv snapshot".into() });
    }
    let hash: [u8; HASH_LEN] = Sha256::digest(&bytes[..bytes.len() - HASH_LEN]).into();
    let invalid = |reason: String| BackupError::Invalid { path: name.clone(), reason };
    let trailer = &bytes[bytes.len() - HASH_LEN..];
    if hash != trailer && !skip_hash_check {
        return Err(BackupError::Hash { path: name, expected: hex(trailer), actual: hex(&hash) });
    }
    let len = u64::from_be_bytes(bytes[MAGIC.len()..HEADER_LEN].try_into().expect("8 bytes")) as usize;
    let state = bytes
        .get(HEADER_LEN..HEADER_LEN.saturating_add(len))
        .ok_or_else(|| invalid(format!("cut short: the state is {len} bytes, the file {}", bytes.len())))?;
    let pairs = decode(state).map_err(|e| invalid(e.to_string()))?;
    Ok(Contents { pairs, size: bytes.len(), hash })
}

/// A file of this format with `pairs` as its state (tests: what older modkv versions wrote).
#[cfg(test)]
pub fn file(pairs: &[(Cf, Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut state = Vec::new();
    for (cf, k, v) in pairs {
        state.push(match cf {
            Cf::Kv => 1,
            Cf::Meta => 2,
            Cf::Lease => 3,
            _ => 4,
        });
        state.extend_from_slice(&(k.len() as u32).to_be_bytes());
        state.extend_from_slice(k);
        state.extend_from_slice(&(v.len() as u32).to_be_bytes());
        state.extend_from_slice(v);
    }
    let mut file = MAGIC.to_vec();
    file.extend_from_slice(&(state.len() as u64).to_be_bytes());
    file.extend_from_slice(&state);
    file.resize(file.len().div_ceil(512) * 512, 0);
    let hash = Sha256::digest(&file);
    file.extend_from_slice(&hash);
    file
}

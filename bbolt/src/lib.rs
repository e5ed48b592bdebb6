//! bbolt database files, as etcd's backend keeps them and as its `Maintenance.Snapshot` sends them: a
//! [`Reader`] that walks a file's buckets and keys in order, checking every page it reads, and a [`Writer`]
//! that builds a fresh, compact database from sorted streams, page after page, into any [`std::io::Write`].
//!
//! ```text
//!   page 0, 1   meta (two copies; the valid one with the higher txid wins): magic, version 2, page size,
//!               root bucket {root page, sequence}, freelist page, high-water page id, txid, FNV-64a
//!   page 2      freelist (ids of free pages; u64::MAX in meta: not synced, as etcd 3.4 runs bbolt)
//!   page ≥ 3    branch (0x01) and leaf (0x02) pages of B+trees, each page `1 + overflow` × page size
//!
//!   every page: id u64 | flags u16 | count u16 | overflow u32 | elements | keys and values
//!   leaf element   (16): flags u32 (1: nested bucket) | pos u32 | key size u32 | value size u32
//!   branch element (16): pos u32 | key size u32 | child page id u64
//!   (pos counts from the element itself; every integer little-endian)
//!
//!   root bucket (meta) ──leaf entries with flag 1──▶ buckets: value = {root page u64, sequence u64}
//!                                                     root page 0: an inline bucket, its leaf page follows
//! ```
//!
//! Only what etcd uses is supported: one level of buckets under the root (a nested bucket's key is
//! reported, its contents are not walked). Damaged input gets an [`Error`], never a panic: every page
//! id is checked against the file, every element against its page, every page is read at most once (a
//! cycle or a shared page is refused), trees are at most [`MAX_DEPTH`] deep, and keys must ascend.

mod page;
mod read;
mod write;

pub use read::{Entry, ReadAt, Reader};
pub use write::{Layout, Writer};

/// The page size the writer uses (etcd's on Linux).
pub const PAGE_SIZE: usize = 4096;
/// The deepest tree the reader follows.
pub const MAX_DEPTH: usize = 32;

/// Why a file is not a readable bbolt database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the database: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid database: {0}")]
    Invalid(String),
}

impl Error {
    /// What is wrong, without the leading "invalid database".
    pub fn reason(&self) -> String {
        match self {
            Error::Invalid(reason) => reason.clone(),
            Error::Io(e) => e.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn invalid<T>(what: impl Into<String>) -> Result<T> {
    Err(Error::Invalid(what.into()))
}

/// FNV-1a, 64 bits: bbolt's meta page checksum.
pub(crate) fn fnv64a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[cfg(test)]
mod tests;

//! Page layout: the header, the meta page and the elements of branch and leaf pages.

use crate::{fnv64a, invalid, Result};

pub const HEADER: usize = 16;
pub const ELEMENT: usize = 16;
pub const BRANCH: u16 = 0x01;
pub const LEAF: u16 = 0x02;
pub const META: u16 = 0x04;
pub const FREELIST: u16 = 0x10;
/// Leaf element flag: the value is a nested bucket.
pub const BUCKET_LEAF: u32 = 0x01;
/// A bucket's header in its parent's leaf: root page id, sequence.
pub const BUCKET_HEADER: usize = 16;
pub const MAGIC: u32 = 0xED0C_DAED;
pub const VERSION: u32 = 2;
/// Meta's freelist page id when the freelist is not synced to disk.
pub const NO_FREELIST: u64 = u64::MAX;
/// Bytes of the meta struct (after the page header), the last 8 being the checksum.
pub const META_LEN: usize = 64;

pub fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A page header.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

impl Header {
    /// The header at the start of `b` (at least [`HEADER`] bytes).
    pub fn parse(b: &[u8]) -> Result<Header> {
        if b.len() < HEADER {
            return invalid(format!("a page of {} bytes has no room for its header", b.len()));
        }
        Ok(Header { id: u64_at(b, 0), flags: u16_at(b, 8), count: u16_at(b, 10), overflow: u32_at(b, 12) })
    }

    pub fn write(&self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&self.id.to_le_bytes());
        b[8..10].copy_from_slice(&self.flags.to_le_bytes());
        b[10..12].copy_from_slice(&self.count.to_le_bytes());
        b[12..16].copy_from_slice(&self.overflow.to_le_bytes());
    }
}

/// The meta page's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub page_size: u32,
    pub flags: u32,
    pub root: u64,
    pub sequence: u64,
    pub freelist: u64,
    /// The high-water mark: pages `[0, pgid)` make up the database.
    pub pgid: u64,
    pub txid: u64,
}

impl Meta {
    /// Parses and checks the meta struct of a meta page (`b` is the whole page).
    pub fn parse(b: &[u8]) -> Result<Meta> {
        let h = Header::parse(b)?;
        if b.len() < HEADER + META_LEN {
            return invalid("meta page cut short");
        }
        if h.flags != META {
            return invalid(format!("page {} is not a meta page (flags {:#x})", h.id, h.flags));
        }
        let m = &b[HEADER..HEADER + META_LEN];
        if u32_at(m, 0) != MAGIC {
            return invalid(format!("meta page {}: not a bbolt file (magic {:#x})", h.id, u32_at(m, 0)));
        }
        if u32_at(m, 4) != VERSION {
            return invalid(format!("meta page {}: version {} (2 expected)", h.id, u32_at(m, 4)));
        }
        let (stored, computed) = (u64_at(m, 56), fnv64a(&m[..56]));
        if stored != computed {
            return invalid(format!("meta page {}: checksum {stored:#x}, computed {computed:#x}", h.id));
        }
        Ok(Meta {
            page_size: u32_at(m, 8),
            flags: u32_at(m, 12),
            root: u64_at(m, 16),
            sequence: u64_at(m, 24),
            freelist: u64_at(m, 32),
            pgid: u64_at(m, 40),
            txid: u64_at(m, 48),
        })
    }

    /// The meta page `id` holding this meta, `page_size` bytes.
    pub fn page(&self, id: u64) -> Vec<u8> {
        let mut b = vec![0u8; self.page_size as usize];
        Header { id, flags: META, count: 0, overflow: 0 }.write(&mut b);
        let m = &mut b[HEADER..HEADER + META_LEN];
        m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        m[4..8].copy_from_slice(&VERSION.to_le_bytes());
        m[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        m[12..16].copy_from_slice(&self.flags.to_le_bytes());
        m[16..24].copy_from_slice(&self.root.to_le_bytes());
        m[24..32].copy_from_slice(&self.sequence.to_le_bytes());
        m[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        m[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        m[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let sum = fnv64a(&m[..56]);
        m[56..64].copy_from_slice(&sum.to_le_bytes());
        b
    }
}

/// The span `[at, at + len)` of `page`, or why it does not fit.
fn span(page: &[u8], at: usize, len: usize, what: &str) -> Result<std::ops::Range<usize>> {
    match at.checked_add(len) {
        Some(end) if end <= page.len() => Ok(at..end),
        _ => invalid(format!("{what} at {at}+{len} lies outside its page of {} bytes", page.len())),
    }
}

/// Element `i` of a leaf page: flags, key, value.
pub fn leaf_element(page: &[u8], i: usize) -> Result<(u32, &[u8], &[u8])> {
    let e = span(page, HEADER + i * ELEMENT, ELEMENT, "leaf element")?.start;
    let (flags, pos, ksize, vsize) =
        (u32_at(page, e), u32_at(page, e + 4) as usize, u32_at(page, e + 8) as usize, u32_at(page, e + 12) as usize);
    let key = span(page, e + pos, ksize, "key")?;
    let value = span(page, key.end, vsize, "value")?;
    Ok((flags, &page[key], &page[value]))
}

/// Element `i` of a branch page: key, child page id.
pub fn branch_element(page: &[u8], i: usize) -> Result<(&[u8], u64)> {
    let e = span(page, HEADER + i * ELEMENT, ELEMENT, "branch element")?.start;
    let (pos, ksize, child) = (u32_at(page, e) as usize, u32_at(page, e + 4) as usize, u64_at(page, e + 8));
    let key = span(page, e + pos, ksize, "key")?;
    Ok((&page[key], child))
}

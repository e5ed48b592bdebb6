//! Reading a bbolt file: the meta pages, then the root bucket's tree and each bucket's tree, depth first,
//! one page in memory per level (plus a bit per page of the file to refuse a page read twice).

use std::io;

use crate::page::{self, Header, Meta};
use crate::{invalid, Result, MAX_DEPTH};

/// The largest page (with its overflow) the reader loads: bounds the memory a damaged header can claim.
const MAX_PAGE_BYTES: u64 = 256 << 20;

/// Where a reader's bytes come from: a file, or bytes in memory.
pub trait ReadAt {
    fn size(&self) -> io::Result<u64>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for std::fs::File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src =
            start.checked_add(buf.len()).and_then(|end| self.get(start..end)).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
}

/// What [`Reader::walk`] visits: each top-level bucket, then its keys in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    Bucket(&'a [u8]),
    /// A key of the last bucket; `value` is `None` for a nested bucket (not walked).
    Pair {
        key: &'a [u8],
        value: Option<&'a [u8]>,
    },
}

/// An open bbolt file.
pub struct Reader<R> {
    src: R,
    meta: Meta,
}

/// Where a bucket's tree starts.
enum Root<'a> {
    Page(u64),
    /// An inline bucket's leaf page, inside its parent's value.
    Inline(&'a [u8]),
}

/// What a tree walk calls for each leaf element: flags, key, value; `false` stops the walk.
type LeafVisit<'a> = dyn FnMut(u32, &[u8], &[u8]) -> Result<bool> + 'a;

/// One bit per page: which pages have been read.
struct Seen(Vec<u64>);

impl Seen {
    /// Marks `[from, from + n)`; the first page already marked, if any.
    fn mark(&mut self, from: u64, n: u64) -> Option<u64> {
        for p in from..from + n {
            let (w, bit) = ((p / 64) as usize, 1u64 << (p % 64));
            if self.0[w] & bit != 0 {
                return Some(p);
            }
            self.0[w] |= bit;
        }
        None
    }
}

impl<R: ReadAt> Reader<R> {
    /// Opens a database: the valid meta page with the higher transaction id, checked against the file.
    pub fn open(src: R) -> Result<Reader<R>> {
        let len = src.size()?;
        let meta_at = |offset: u64| -> Result<Meta> {
            let mut b = [0u8; page::HEADER + page::META_LEN];
            if offset + b.len() as u64 > len {
                return invalid(format!("the file is cut short ({len} bytes): no meta page at {offset}"));
            }
            src.read_exact_at(&mut b, offset)?;
            Meta::parse(&b)
        };
        let m0 = meta_at(0);
        let page_size = m0.as_ref().map_or(crate::PAGE_SIZE as u64, |m| m.page_size as u64);
        let m1 = meta_at(page_size);
        let meta = match (m0, m1) {
            (Ok(a), Ok(b)) => {
                if a.txid >= b.txid {
                    a
                } else {
                    b
                }
            }
            (Ok(m), Err(_)) | (Err(_), Ok(m)) => m,
            (Err(a), Err(b)) => return invalid(format!("both meta pages are damaged: {}; {}", a.reason(), b.reason())),
        };
        let ps = meta.page_size as u64;
        if !(512..=65536).contains(&ps) || !ps.is_power_of_two() {
            return invalid(format!("page size {ps}"));
        }
        match meta.pgid.checked_mul(ps) {
            Some(size) if size <= len => {}
            _ => {
                return invalid(format!(
                    "the file is cut short: {len} bytes, its meta page counts {} pages of {ps} bytes",
                    meta.pgid
                ))
            }
        }
        if meta.root < 2 || meta.root >= meta.pgid {
            return invalid(format!("root page {} outside the database's {} pages", meta.root, meta.pgid));
        }
        if meta.freelist != page::NO_FREELIST && (meta.freelist < 2 || meta.freelist >= meta.pgid) {
            return invalid(format!("freelist page {} outside the database's {} pages", meta.freelist, meta.pgid));
        }
        Ok(Reader { src, meta })
    }

    pub fn page_size(&self) -> u32 {
        self.meta.page_size
    }

    /// The transaction id of the meta page in use.
    pub fn txid(&self) -> u64 {
        self.meta.txid
    }

    /// The database's size: its pages up to the high-water mark (etcd's "total size").
    pub fn size(&self) -> u64 {
        self.meta.pgid * self.meta.page_size as u64
    }

    /// Visits every top-level bucket in name order and, after each, its keys in order, until `visit`
    /// returns `false`. Returns whether everything was visited.
    pub fn walk(&self, visit: &mut dyn FnMut(Entry<'_>) -> bool) -> Result<bool> {
        let mut seen = Seen(vec![0; self.meta.pgid.div_ceil(64) as usize]);
        seen.mark(0, 2);
        if self.meta.freelist != page::NO_FREELIST {
            let h = self.header(self.meta.freelist)?;
            if h.flags != page::FREELIST {
                return invalid(format!("page {}: flags {:#x}, the freelist expected", self.meta.freelist, h.flags));
            }
            self.check_extent(self.meta.freelist, &h)?;
            seen.mark(self.meta.freelist, 1 + h.overflow as u64);
        }
        let mut buckets = Vec::new();
        self.walk_tree(Root::Page(self.meta.root), &mut seen, &mut |flags, name, value| {
            if flags & page::BUCKET_LEAF == 0 {
                return invalid(format!("the root holds {:?}, which is not a bucket", String::from_utf8_lossy(name)));
            }
            buckets.push((name.to_vec(), value.to_vec()));
            Ok(true)
        })?;
        for (name, header) in &buckets {
            if !visit(Entry::Bucket(name)) {
                return Ok(false);
            }
            let complete = self.walk_tree(bucket_root(name, header)?, &mut seen, &mut |flags, key, value| {
                let value = (flags & page::BUCKET_LEAF == 0).then_some(value);
                Ok(visit(Entry::Pair { key, value }))
            })?;
            if !complete {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Walks a tree depth first, calling `f(flags, key, value)` for each leaf element; keys must ascend.
    fn walk_tree(&self, root: Root<'_>, seen: &mut Seen, f: &mut LeafVisit<'_>) -> Result<bool> {
        // Each frame: a page, whether it is a leaf, the next child to visit.
        let mut stack: Vec<(Vec<u8>, bool, usize)> = Vec::new();
        match root {
            Root::Page(id) => stack.push(self.tree_page(id, seen)?),
            Root::Inline(p) => {
                let h = Header::parse(p)?;
                if h.flags != page::LEAF {
                    return invalid(format!("an inline bucket's page has flags {:#x}, a leaf expected", h.flags));
                }
                stack.push((p.to_vec(), true, 0));
            }
        }
        let mut last: Option<Vec<u8>> = None;
        while let Some((page, leaf, next)) = stack.last_mut() {
            let count = page::u16_at(page, 10) as usize;
            if *leaf {
                for i in 0..count {
                    let (flags, key, value) = page::leaf_element(page, i)?;
                    if let Some(prev) = &last {
                        if key <= prev.as_slice() {
                            return invalid("keys out of order (a damaged page)");
                        }
                    }
                    last = Some(key.to_vec());
                    if !f(flags, key, value)? {
                        return Ok(false);
                    }
                }
                stack.pop();
            } else if count == 0 {
                return invalid(format!("branch page {} has no children", page::u64_at(page, 0)));
            } else if *next < count {
                let (_, child) = page::branch_element(page, *next)?;
                *next += 1;
                if stack.len() >= MAX_DEPTH {
                    return invalid(format!("a tree deeper than {MAX_DEPTH} levels"));
                }
                let child = self.tree_page(child, seen)?;
                stack.push(child);
            } else {
                stack.pop();
            }
        }
        Ok(true)
    }

    /// The header of page `id`, which must lie inside the database.
    fn header(&self, id: u64) -> Result<Header> {
        if id < 2 || id >= self.meta.pgid {
            return invalid(format!("page {id} outside the database's {} pages", self.meta.pgid));
        }
        let mut b = [0u8; page::HEADER];
        self.src.read_exact_at(&mut b, id * self.meta.page_size as u64)?;
        let h = Header::parse(&b)?;
        if h.id != id {
            return invalid(format!("page {id} says it is page {}", h.id));
        }
        Ok(h)
    }

    /// Checks that page `id` with its overflow lies inside the database and is not too large to load.
    fn check_extent(&self, id: u64, h: &Header) -> Result<u64> {
        let pages = 1 + h.overflow as u64;
        if id + pages > self.meta.pgid {
            return invalid(format!("page {id} with {} overflow pages runs past the database's end", h.overflow));
        }
        let bytes = pages * self.meta.page_size as u64;
        if bytes > MAX_PAGE_BYTES {
            return invalid(format!("page {id} spans {bytes} bytes"));
        }
        Ok(pages)
    }

    /// Loads branch or leaf page `id` (read for the first time) as a new stack frame.
    fn tree_page(&self, id: u64, seen: &mut Seen) -> Result<(Vec<u8>, bool, usize)> {
        let h = self.header(id)?;
        let leaf = match h.flags {
            page::LEAF => true,
            page::BRANCH => false,
            f => return invalid(format!("page {id}: flags {f:#x}, a branch or leaf page expected")),
        };
        let pages = self.check_extent(id, &h)?;
        if let Some(p) = seen.mark(id, pages) {
            return invalid(format!("page {p} is reached twice (a cycle or a damaged tree)"));
        }
        let mut buf = vec![0u8; (pages * self.meta.page_size as u64) as usize];
        self.src.read_exact_at(&mut buf, id * self.meta.page_size as u64)?;
        Ok((buf, leaf, 0))
    }
}

/// Where the bucket whose header (its value in the root) is `header` keeps its keys.
fn bucket_root<'a>(name: &[u8], header: &'a [u8]) -> Result<Root<'a>> {
    if header.len() < page::BUCKET_HEADER {
        return invalid(format!("bucket {:?}: a header of {} bytes", String::from_utf8_lossy(name), header.len()));
    }
    match page::u64_at(header, 0) {
        0 => Ok(Root::Inline(&header[page::BUCKET_HEADER..])),
        id => Ok(Root::Page(id)),
    }
}

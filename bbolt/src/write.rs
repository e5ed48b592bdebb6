//! Writing a fresh, compact bbolt file, pages in id order, to an [`io::Write`].
//!
//! ```text
//!   pass 1  Writer::plan()          ─ bucket/put … ─▶ finish() = Layout { root page, page count }
//!   pass 2  Writer::new(out, layout) ─ the same bucket/put … ─▶ finish() (checks the layout is the same)
//!           out: meta 0, meta 1 (both point at layout.root), empty freelist, then each B+tree bottom-up:
//!           a leaf is written when full, its first key and page id go up to the branch level above
//! ```
//!
//! The meta pages come first in the file but name the root page, which is written last: the caller feeds
//! the same sorted stream twice, first to count pages ([`Writer::plan`]), then to write them. Memory is one
//! page in progress per tree level, plus a name and page id per bucket.

use std::io::{self, Write};

use crate::page::{self, Header, Meta};
use crate::PAGE_SIZE;

/// bbolt's limits on a key and a value.
const MAX_KEY: usize = 32768;
const MAX_VALUE: usize = (1 << 31) - 2;
/// The transaction id of meta page 0 (meta page 1 has one less, as bbolt's own `Tx.WriteTo` writes them).
const TXID: u64 = 2;
/// The freelist's page (empty: every page of a fresh file is in use).
const FREELIST_PAGE: u64 = 2;

const ZEROS: [u8; PAGE_SIZE] = [0; PAGE_SIZE];

/// Where the finished database's root is and how many pages it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    pub root: u64,
    pub pages: u64,
}

impl Layout {
    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.pages * PAGE_SIZE as u64
    }
}

/// One element of a node in progress: a leaf's key and value (and flags), or a branch's key and child.
struct Elem {
    flags: u32,
    key: Vec<u8>,
    value: Vec<u8>,
    child: u64,
}

#[derive(Default)]
struct Level {
    elems: Vec<Elem>,
    /// Page bytes the elements take: header, element headers, keys and values.
    bytes: usize,
}

/// A B+tree built bottom-up from keys in order: `levels[0]` is the leaf in progress.
#[derive(Default)]
struct Tree {
    levels: Vec<Level>,
}

/// Page ids and output.
struct Pages<W> {
    out: W,
    next: u64,
}

impl<W: Write> Pages<W> {
    /// Writes a leaf holding one pair as the next pages; returns its page id.
    fn leaf_of_one(&mut self, key: &[u8], value: &[u8]) -> io::Result<u64> {
        let elem = Elem { flags: 0, key: key.to_vec(), value: Vec::new(), child: 0 };
        self.write_node(false, &[elem], Some(value))
    }

    fn node(&mut self, branch: bool, elems: &[Elem]) -> io::Result<u64> {
        self.write_node(branch, elems, None)
    }

    /// Writes a node as the next page(s): the header and element table, then the keys and values as
    /// they are, then zeros to the page's end. Returns its page id. `value`, if given, is the value of
    /// the only element (a large value is written from the caller's bytes, never copied).
    fn write_node(&mut self, branch: bool, elems: &[Elem], value: Option<&[u8]>) -> io::Result<u64> {
        let value_of = |e: &'_ Elem| -> usize { value.map_or(e.value.len(), <[u8]>::len) };
        let data: usize = elems.iter().map(|e| e.key.len() + if branch { 0 } else { value_of(e) }).sum();
        let table = page::HEADER + elems.len() * page::ELEMENT;
        let pages = (table + data).div_ceil(PAGE_SIZE).max(1);
        let id = self.next;
        let mut head = vec![0u8; table];
        let flags = if branch { page::BRANCH } else { page::LEAF };
        let count = u16::try_from(elems.len()).map_err(|_| io::Error::other("too many elements for a page"))?;
        Header { id, flags, count, overflow: (pages - 1) as u32 }.write(&mut head);
        let mut at = table;
        for (i, e) in elems.iter().enumerate() {
            let el = page::HEADER + i * page::ELEMENT;
            let pos = ((at - el) as u32).to_le_bytes();
            let ksize = (e.key.len() as u32).to_le_bytes();
            let f = &mut head[el..el + page::ELEMENT];
            if branch {
                f[0..4].copy_from_slice(&pos);
                f[4..8].copy_from_slice(&ksize);
                f[8..16].copy_from_slice(&e.child.to_le_bytes());
                at += e.key.len();
            } else {
                f[0..4].copy_from_slice(&e.flags.to_le_bytes());
                f[4..8].copy_from_slice(&pos);
                f[8..12].copy_from_slice(&ksize);
                f[12..16].copy_from_slice(&(value_of(e) as u32).to_le_bytes());
                at += e.key.len() + value_of(e);
            }
        }
        self.out.write_all(&head)?;
        for e in elems {
            self.out.write_all(&e.key)?;
            if !branch {
                self.out.write_all(value.unwrap_or(&e.value))?;
            }
        }
        let mut pad = pages * PAGE_SIZE - at;
        while pad > 0 {
            let n = pad.min(ZEROS.len());
            self.out.write_all(&ZEROS[..n])?;
            pad -= n;
        }
        self.next += pages as u64;
        Ok(id)
    }
}

impl Tree {
    /// Adds an element to `level`, writing that level's node first if the element would not fit its page.
    fn add<W: Write>(&mut self, out: &mut Pages<W>, level: usize, elem: Elem) -> io::Result<()> {
        while self.levels.len() <= level {
            self.levels.push(Level::default());
        }
        let size = page::ELEMENT + elem.key.len() + if level == 0 { elem.value.len() } else { 0 };
        let l = &self.levels[level];
        if !l.elems.is_empty() && l.bytes + size > PAGE_SIZE {
            self.flush(out, level)?;
        }
        let l = &mut self.levels[level];
        if l.elems.is_empty() {
            l.bytes = page::HEADER;
        }
        l.bytes += size;
        l.elems.push(elem);
        Ok(())
    }

    /// Writes `level`'s node and hands its first key and page id to the level above.
    fn flush<W: Write>(&mut self, out: &mut Pages<W>, level: usize) -> io::Result<()> {
        let l = std::mem::take(&mut self.levels[level]);
        let id = out.node(level > 0, &l.elems)?;
        let key = l.elems.into_iter().next().map(|e| e.key).unwrap_or_default();
        self.add(out, level + 1, Elem { flags: 0, key, value: Vec::new(), child: id })
    }

    /// Writes the leaf in progress, if it holds anything.
    fn flush_leaf<W: Write>(&mut self, out: &mut Pages<W>) -> io::Result<()> {
        if self.levels.first().is_some_and(|l| !l.elems.is_empty()) {
            self.flush(out, 0)?;
        }
        Ok(())
    }

    /// Writes what is left, bottom-up; returns the root's page id.
    fn finish<W: Write>(mut self, out: &mut Pages<W>) -> io::Result<u64> {
        if self.levels.is_empty() {
            return out.node(false, &[]);
        }
        let mut level = 0;
        loop {
            let top = level + 1 == self.levels.len();
            if top && level > 0 && self.levels[level].elems.len() == 1 {
                return Ok(self.levels[level].elems[0].child);
            }
            if top {
                return out.node(level > 0, &self.levels[level].elems);
            }
            // (The leaf is empty when the last pair was large enough for a leaf of its own.)
            if !self.levels[level].elems.is_empty() {
                self.flush(out, level)?;
            }
            level += 1;
        }
    }
}

/// Builds a bbolt file from buckets given one after another, each with its keys in ascending order.
pub struct Writer<W: Write> {
    pages: Pages<W>,
    expected: Option<Layout>,
    /// Finished buckets: name, root page.
    buckets: Vec<(Vec<u8>, u64)>,
    /// The bucket being written, its tree and its last key.
    current: Option<(Vec<u8>, Tree, Option<Vec<u8>>)>,
}

fn invalid_input(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

impl Writer<io::Sink> {
    /// The first pass: counts pages, writes nothing; [`Writer::finish`] says the layout.
    pub fn plan() -> Writer<io::Sink> {
        Writer::start(io::sink(), None).expect("a sink takes every write")
    }
}

impl<W: Write> Writer<W> {
    /// The second pass: writes the meta pages for `layout` (what the first pass's `finish` returned) and
    /// the freelist at once, then the pages as they fill.
    pub fn new(out: W, layout: Layout) -> io::Result<Writer<W>> {
        Writer::start(out, Some(layout))
    }

    fn start(mut out: W, expected: Option<Layout>) -> io::Result<Writer<W>> {
        let layout = expected.unwrap_or_default();
        let meta = Meta {
            page_size: PAGE_SIZE as u32,
            flags: 0,
            root: layout.root,
            sequence: 0,
            freelist: FREELIST_PAGE,
            pgid: layout.pages,
            txid: TXID,
        };
        out.write_all(&meta.page(0))?;
        out.write_all(&Meta { txid: TXID - 1, ..meta }.page(1))?;
        let mut freelist = vec![0u8; PAGE_SIZE];
        Header { id: FREELIST_PAGE, flags: page::FREELIST, count: 0, overflow: 0 }.write(&mut freelist);
        out.write_all(&freelist)?;
        Ok(Writer { pages: Pages { out, next: FREELIST_PAGE + 1 }, expected, buckets: Vec::new(), current: None })
    }

    /// Starts the next bucket (ending the one before). Buckets may come in any order, each once.
    pub fn bucket(&mut self, name: &[u8]) -> io::Result<()> {
        self.end_bucket()?;
        if name.is_empty() || name.len() > MAX_KEY {
            return Err(invalid_input(format!("a bucket name of {} bytes", name.len())));
        }
        self.current = Some((name.to_vec(), Tree::default(), None));
        Ok(())
    }

    /// Adds a key to the current bucket; keys must ascend.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let Some((name, tree, last)) = &mut self.current else {
            return Err(invalid_input("a key outside any bucket".into()));
        };
        if key.is_empty() || key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(invalid_input(format!("a key of {} bytes, a value of {}", key.len(), value.len())));
        }
        if last.as_deref().is_some_and(|l| key <= l) {
            let name = String::from_utf8_lossy(name);
            return Err(invalid_input(format!("bucket {name}: keys must ascend")));
        }
        *last = Some(key.to_vec());
        if page::HEADER + page::ELEMENT + key.len() + value.len() > PAGE_SIZE {
            // A pair larger than a page gets a leaf of its own, written at once from the caller's bytes
            // (a leaf in progress never holds a copy of a large value).
            tree.flush_leaf(&mut self.pages)?;
            let id = self.pages.leaf_of_one(key, value)?;
            return tree.add(&mut self.pages, 1, Elem { flags: 0, key: key.to_vec(), value: Vec::new(), child: id });
        }
        tree.add(&mut self.pages, 0, Elem { flags: 0, key: key.to_vec(), value: value.to_vec(), child: 0 })
    }

    fn end_bucket(&mut self) -> io::Result<()> {
        if let Some((name, tree, _)) = self.current.take() {
            let root = tree.finish(&mut self.pages)?;
            self.buckets.push((name, root));
        }
        Ok(())
    }

    /// Writes the root bucket last; returns the layout (in the second pass, checked against the first)
    /// and the output.
    pub fn finish(mut self) -> io::Result<(Layout, W)> {
        self.end_bucket()?;
        self.buckets.sort();
        if let Some(w) = self.buckets.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(invalid_input(format!("bucket {} given twice", String::from_utf8_lossy(&w[0].0))));
        }
        let mut root = Tree::default();
        for (name, id) in std::mem::take(&mut self.buckets) {
            let mut header = id.to_le_bytes().to_vec();
            header.extend_from_slice(&0u64.to_le_bytes());
            root.add(&mut self.pages, 0, Elem { flags: page::BUCKET_LEAF, key: name, value: header, child: 0 })?;
        }
        let root = root.finish(&mut self.pages)?;
        let layout = Layout { root, pages: self.pages.next };
        if let Some(expected) = self.expected {
            if expected != layout {
                return Err(io::Error::other(format!(
                    "the database changed between the two passes ({expected:?} planned, {layout:?} written)"
                )));
            }
        }
        self.pages.out.flush()?;
        Ok((layout, self.pages.out))
    }
}

//! Round trips through the writer and the reader, a file the real etcd 3.4 wrote, and damaged files.

use crate::{Entry, Error, Layout, Reader, Writer, PAGE_SIZE};

type Buckets = Vec<(Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>)>;

/// Writes `buckets` in two passes, as a server streams a snapshot.
fn write(buckets: &Buckets) -> (Layout, Vec<u8>) {
    fn feed<W: std::io::Write>(w: &mut Writer<W>, buckets: &Buckets) {
        for (name, pairs) in buckets {
            w.bucket(name).unwrap();
            for (k, v) in pairs {
                w.put(k, v).unwrap();
            }
        }
    }
    let mut plan = Writer::plan();
    feed(&mut plan, buckets);
    let (layout, _) = plan.finish().unwrap();
    let mut w = Writer::new(Vec::new(), layout).unwrap();
    feed(&mut w, buckets);
    let (written, bytes) = w.finish().unwrap();
    assert_eq!(written, layout);
    assert_eq!(bytes.len() as u64, layout.size());
    (layout, bytes)
}

/// Everything a reader sees, buckets sorted by name.
fn read(bytes: &[u8]) -> crate::Result<Buckets> {
    let r = Reader::open(bytes)?;
    let mut out: Buckets = Vec::new();
    r.walk(&mut |e| {
        match e {
            Entry::Bucket(name) => out.push((name.to_vec(), Vec::new())),
            Entry::Pair { key, value } => {
                out.last_mut().unwrap().1.push((key.to_vec(), value.unwrap_or(b"<bucket>").to_vec()))
            }
        }
        true
    })?;
    Ok(out)
}

fn sample() -> Buckets {
    let key = (1..=3000u64)
        .map(|i| {
            let mut k = i.to_be_bytes().to_vec();
            k.push(b'_');
            k.extend_from_slice(&0u64.to_be_bytes());
            // Every 500th value spans several pages (overflow pages).
            let v = if i % 500 == 0 { vec![b'x'; 3 * PAGE_SIZE + 17] } else { format!("value {i}").into_bytes() };
            (k, v)
        })
        .collect();
    vec![
        (b"meta".to_vec(), vec![(b"consistent_index".to_vec(), 9u64.to_be_bytes().to_vec())]),
        (b"key".to_vec(), key),
        (b"alarm".to_vec(), vec![]),
        (b"lease".to_vec(), vec![(7u64.to_be_bytes().to_vec(), vec![8, 7, 16, 10])]),
    ]
}

#[test]
fn written_files_read_back() {
    let buckets = sample();
    let (layout, bytes) = write(&buckets);
    let mut sorted = buckets.clone();
    sorted.sort();
    assert_eq!(read(&bytes).unwrap(), sorted);
    // The key bucket needs branch pages: its tree is deeper than one leaf.
    assert!(layout.pages > 3000 * 20 / PAGE_SIZE as u64);
    // Large values only, or first and last: each in a leaf of its own.
    let big = |n: u8| vec![n; 2 * PAGE_SIZE];
    for pairs in [
        vec![(b"a".to_vec(), big(1))],
        vec![
            (b"a".to_vec(), big(1)),
            (b"b".to_vec(), big(2)),
            (b"c".to_vec(), b"small".to_vec()),
            (b"d".to_vec(), big(3)),
        ],
    ] {
        let buckets = vec![(b"b".to_vec(), pairs)];
        assert_eq!(read(&write(&buckets).1).unwrap(), buckets);
    }
    // An empty database: no buckets.
    let (_, empty) = write(&Vec::new());
    assert_eq!(read(&empty).unwrap(), Vec::new());
    // Keys must ascend, buckets come once.
    let mut w = Writer::plan();
    w.bucket(b"a").unwrap();
    w.put(b"2", b"").unwrap();
    assert!(w.put(b"1", b"").unwrap_err().to_string().contains("keys must ascend"));
    w.bucket(b"a").unwrap();
    assert!(w.finish().unwrap_err().to_string().contains("bucket a given twice"));
}

/// A snapshot `etcdctl snapshot save` took of etcd 3.4.23 (puts, a delete, a lease, a 6000-byte value, a
/// compaction at 3, then 300 puts): `etcdctl snapshot status` says revision 307, 313 keys, 65536 bytes.
#[test]
fn reads_what_etcd_wrote() {
    let bytes = include_bytes!("../tests/fixtures/etcd-3.4.23.db");
    let r = Reader::open(&bytes[..]).unwrap();
    assert_eq!((r.size(), r.page_size()), (65536, 4096));
    let (mut names, mut keys, mut last_rev, mut values) = (Vec::new(), 0, 0u64, Vec::new());
    let mut in_key = false;
    r.walk(&mut |e| {
        match e {
            Entry::Bucket(n) => {
                in_key = n == b"key";
                names.push(String::from_utf8(n.to_vec()).unwrap());
            }
            Entry::Pair { key, value } => {
                keys += 1;
                if in_key {
                    last_rev = u64::from_be_bytes(key[..8].try_into().unwrap());
                    values.push(value.unwrap().len());
                }
            }
        }
        true
    })
    .unwrap();
    assert_eq!(
        names,
        ["alarm", "auth", "authRoles", "authUsers", "cluster", "key", "lease", "members", "members_removed", "meta"]
    );
    assert_eq!((keys, last_rev), (313, 307));
    assert!(values.iter().any(|&l| l > 6000), "the 6000-byte value");
}

/// A tiny deterministic generator (xorshift) for the mutations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn expect_invalid(bytes: &[u8], what: &str) {
    match read(bytes) {
        Err(Error::Invalid(m)) => assert!(m.contains(what), "{m:?} does not say {what:?}"),
        other => panic!("expected an error saying {what:?}, got {other:?}"),
    }
}

#[test]
fn damaged_files_are_refused() {
    let (layout, bytes) = write(&sample());
    // Truncated.
    expect_invalid(&bytes[..bytes.len() - PAGE_SIZE], "cut short");
    expect_invalid(&bytes[..100], "cut short");
    expect_invalid(&[0u8; 3 * PAGE_SIZE], "both meta pages are damaged");
    // A bad checksum in one meta page: the other is used; in both: refused.
    let mut b = bytes.clone();
    b[16 + 20] ^= 1;
    assert!(read(&b).is_ok());
    b[PAGE_SIZE + 16 + 20] ^= 1;
    expect_invalid(&b, "checksum");
    // The root page made a meta page: wrong page type.
    let root = layout.root as usize * PAGE_SIZE;
    let mut b = bytes.clone();
    b[root + 8] = 0x04;
    expect_invalid(&b, "a branch or leaf page expected");
    // A branch pointing back at itself: a cycle; at a page beyond the end: out of range.
    let branch = (3..layout.pages as usize).find(|&p| bytes[p * PAGE_SIZE + 8] == 1).expect("a branch page");
    let child_at = branch * PAGE_SIZE + 16 + 8;
    let mut b = bytes.clone();
    b[child_at..child_at + 8].copy_from_slice(&(branch as u64).to_le_bytes());
    expect_invalid(&b, "reached twice");
    b[child_at..child_at + 8].copy_from_slice(&(layout.pages + 5).to_le_bytes());
    expect_invalid(&b, "outside the database");
}

#[test]
fn random_mutations_never_panic() {
    let (_, bytes) = write(&sample());
    let etcd = include_bytes!("../tests/fixtures/etcd-3.4.23.db").to_vec();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let (mut ok, mut refused) = (0, 0);
    for round in 0..3000 {
        let mut b = if round % 2 == 0 { bytes.clone() } else { etcd.clone() };
        for _ in 0..1 + rng.below(8) {
            // Mostly the first pages (metas, freelist, roots and branches), where damage matters most.
            let at = if rng.below(2) == 0 { rng.below(6 * PAGE_SIZE) } else { rng.below(b.len()) };
            b[at] = rng.next() as u8;
        }
        if rng.below(10) == 0 {
            b.truncate(rng.below(b.len()));
        }
        match read(&b) {
            Ok(_) => ok += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 100 && ok > 100, "{ok} read, {refused} refused");
}

//! Snapshot files: modkv's state through etcd's format and back, a file etcd 3.4.23 wrote, files of the
//! older format, damaged files.

use super::*;
use crate::mvcc::Revision;
use crate::proto::mvccpb::KeyValue;
use prost::Message;

/// The snapshot `etcdctl snapshot save` took of etcd 3.4.23 (see bbolt/src/tests.rs).
const ETCD_FILE: &[u8] = include_bytes!("../../../bbolt/tests/fixtures/etcd-3.4.23.db");

fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64, lease: i64) -> Vec<u8> {
    KeyValue { key: key.into(), value: value.into(), create_revision: create, mod_revision: modified, version, lease }
        .encode_to_vec()
}

/// A store with three revisions of keys (one deleted), a lease, a user, compaction at 2.
fn source(dir: &Path) -> RocksDb {
    let db = RocksDb::open(dir).unwrap();
    let mut w = WriteBatch::default();
    w.put(Cf::Kv, Revision::new(2, 0).to_bytes(false), kv("a", "1", 2, 2, 1, 0));
    w.put(Cf::Kv, Revision::new(3, 0).to_bytes(false), kv("b", "2", 3, 3, 1, 7));
    w.put(
        Cf::Kv,
        Revision::new(4, 0).to_bytes(true),
        KeyValue { key: b"a".to_vec(), ..Default::default() }.encode_to_vec(),
    );
    w.put(Cf::Lease, 7i64.to_be_bytes().to_vec(), 60i64.to_be_bytes().to_vec());
    w.put(Cf::Auth, b"enabled".to_vec(), vec![1]);
    w.put(Cf::Auth, b"revision".to_vec(), meta::encode_u64(3));
    w.put(Cf::Auth, b"user/alice".to_vec(), b"user proto".to_vec());
    w.put(Cf::Meta, meta::CURRENT_REV, meta::encode_u64(4));
    w.put(Cf::Meta, meta::COMPACT_REV, meta::encode_u64(2));
    w.put(Cf::Meta, meta::APPLIED_INDEX, meta::encode_u64(42));
    w.put(Cf::Meta, meta::MEMBER_ID, meta::encode_u64(1));
    let members = r#"[{"id":10276657743932975437,"name":"default","peer_urls":["http://localhost:2380"],"client_urls":["http://localhost:2379"]}]"#;
    w.put(Cf::Meta, meta::MEMBERS, members.as_bytes().to_vec());
    db.write(w, true).unwrap();
    db
}

/// Every bucket and pair of an etcd database.
fn buckets(bytes: &[u8]) -> Vec<(String, etcd::Pairs)> {
    let r = bbolt::Reader::open(bytes).unwrap();
    let mut out: Vec<(String, etcd::Pairs)> = Vec::new();
    r.walk(&mut |e| {
        match e {
            bbolt::Entry::Bucket(n) => out.push((String::from_utf8(n.to_vec()).unwrap(), vec![])),
            bbolt::Entry::Pair { key, value } => {
                out.last_mut().unwrap().1.push((key.to_vec(), value.unwrap().to_vec()))
            }
        }
        true
    })
    .unwrap();
    out
}

#[test]
fn snapshot_in_etcds_layout() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = file(&source(dir.path())).unwrap();
    assert_eq!(bytes.len() % 512, HASH_LEN, "etcdctl's trailer check");
    let db = &bytes[..bytes.len() - HASH_LEN];
    assert_eq!(&bytes[db.len()..], Sha256::digest(db).as_slice());
    let got = buckets(db);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["alarm", "auth", "authRoles", "authUsers", "cluster", "key", "lease", "members", "members_removed", "meta"]
    );
    let bucket = |name: &str| got.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(bucket("auth"), [(b"authEnabled".to_vec(), vec![1]), (b"authRevision".to_vec(), meta::encode_u64(3))]);
    assert_eq!(bucket("authUsers"), [(b"alice".to_vec(), b"user proto".to_vec())]);
    assert_eq!(bucket("cluster"), [(b"clusterVersion".to_vec(), b"3.4.0".to_vec())]);
    assert_eq!(bucket("key").len(), 3);
    assert_eq!(bucket("key")[2].0, Revision::new(4, 0).to_bytes(true));
    // leasepb.Lease { ID: 7, TTL: 60 }
    assert_eq!(bucket("lease"), [(7i64.to_be_bytes().to_vec(), vec![0x08, 7, 0x10, 60])]);
    assert_eq!(
        bucket("members"),
        [(
            b"8e9e05c52164694d".to_vec(),
            br#"{"id":10276657743932975437,"peerURLs":["http://localhost:2380"],"name":"default","clientURLs":["http://localhost:2379"]}"#.to_vec()
        )]
    );
    let rev2 = Revision::new(2, 0).to_bytes(false);
    assert_eq!(
        bucket("meta"),
        [
            (b"consistent_index".to_vec(), meta::encode_u64(42)),
            (b"finishedCompactRev".to_vec(), rev2.clone()),
            (b"scheduledCompactRev".to_vec(), rev2)
        ]
    );

    // status, then restore into a new data dir: the same keys, lease, user and revision counters.
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("s.db");
    std::fs::write(&path, &bytes).unwrap();
    let st = status(&path).unwrap();
    assert_eq!((st.revision, st.total_key, st.total_size), (4, 12, (bytes.len() - HASH_LEN) as u64));
    let restored = out.path().join("restored");
    assert_eq!(restore(&path, &restored, false, None).unwrap(), 4);
    let e = restore(&path, &restored, false, None).unwrap_err().to_string();
    assert!(e.ends_with("exists and is not empty; a snapshot is restored into a new data dir"), "{e}");
    let db = RocksDb::open(&restored.join("db")).unwrap();
    assert_eq!(db.get(Cf::Kv, &Revision::new(3, 0).to_bytes(false)).unwrap(), Some(kv("b", "2", 3, 3, 1, 7)));
    assert_eq!(db.get(Cf::Lease, &7i64.to_be_bytes()).unwrap(), Some(60i64.to_be_bytes().to_vec()));
    assert_eq!(db.get(Cf::Auth, b"user/alice").unwrap(), Some(b"user proto".to_vec()));
    assert_eq!(db.get(Cf::Auth, b"revision").unwrap(), Some(meta::encode_u64(3)));
    assert_eq!(db.get(Cf::Auth, b"enabled").unwrap(), Some(vec![1]));
    assert_eq!(db.get(Cf::Meta, meta::CURRENT_REV).unwrap(), Some(meta::encode_u64(4)));
    assert_eq!(db.get(Cf::Meta, meta::COMPACT_REV).unwrap(), Some(meta::encode_u64(2)));
    assert_eq!(db.get(Cf::Meta, meta::APPLIED_INDEX).unwrap(), None, "the old cluster's raft position");
    assert_eq!(db.get(Cf::Meta, meta::MEMBERS).unwrap(), None, "the old cluster's members");
}

#[test]
fn streamed_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let bytes = file(&src).unwrap();
    // Each chunk full but the last, the bytes to come counted down to 0, the same file.
    let mut streamed = Vec::new();
    let mut chunks = Vec::new();
    assert!(stream(&src, 1000, &mut |blob, remaining| {
        streamed.extend_from_slice(&blob);
        chunks.push((blob.len(), remaining));
        true
    })
    .unwrap());
    assert_eq!(streamed, bytes);
    let n = chunks.len();
    assert_eq!(n, bytes.len().div_ceil(1000));
    for (i, &(len, remaining)) in chunks.iter().enumerate() {
        assert_eq!(len, if i + 1 < n { 1000 } else { bytes.len() - 1000 * (n - 1) });
        assert_eq!(remaining as usize, bytes.len() - 1000 * i - len);
    }
    // A receiver that stops after two chunks gets no more.
    let mut calls = 0;
    assert!(!stream(&src, 1000, &mut |_, _| {
        calls += 1;
        calls < 2
    })
    .unwrap());
    assert_eq!(calls, 2);
}

#[test]
fn restores_and_reports_what_etcd_wrote() {
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("etcd.db");
    std::fs::write(&path, ETCD_FILE).unwrap();
    // What `etcdctl snapshot status -w json` printed for it.
    let st = status(&path).unwrap();
    assert_eq!(st, Status { hash: 1180057767, revision: 307, total_key: 313, total_size: 65536 });
    let dir = out.path().join("d");
    assert_eq!(restore(&path, &dir, false, None).unwrap(), 307);
    let db = RocksDb::open(&dir.join("db")).unwrap();
    assert_eq!(db.get(Cf::Meta, meta::COMPACT_REV).unwrap(), Some(meta::encode_u64(3)));
    let mut leases = vec![];
    db.scan(Cf::Lease, &[], None, &mut |k, v| {
        leases.push((k.to_vec(), i64::from_be_bytes(v.try_into().unwrap())));
        true
    })
    .unwrap();
    assert_eq!(leases, [(0x694da22de13be309i64.to_be_bytes().to_vec(), 100)]);
    let mut revisions = 0;
    db.scan(Cf::Kv, &[], None, &mut |_, _| {
        revisions += 1;
        true
    })
    .unwrap();
    assert_eq!(revisions, 306, "313 entries less 7 of auth, cluster, lease, members and meta");
    assert_eq!(db.get(Cf::Auth, b"revision").unwrap(), Some(meta::encode_u64(1)));
}

#[test]
fn damaged_files_are_refused() {
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("etcd.db");
    let mut bytes = ETCD_FILE.to_vec();
    bytes[14 * 4096 + 8] = 0x10; // the root page (14) made a freelist page
    std::fs::write(&path, &bytes).unwrap();
    let e = restore(&path, &out.path().join("d"), false, None).unwrap_err();
    assert!(matches!(e, BackupError::Hash { .. }), "{e}");
    // Past the hash check, the database itself is checked before anything is written.
    let e = restore(&path, &out.path().join("d"), true, None).unwrap_err().to_string();
    assert!(e.starts_with(&format!("snapshot {}: invalid database: ", path.display())), "{e}");
    assert!(!out.path().join("d").exists());
    // Cut short: no trailer, and the database is incomplete.
    std::fs::write(&path, &ETCD_FILE[..40000]).unwrap();
    let e = restore(&path, &out.path().join("d"), false, None).unwrap_err().to_string();
    assert!(e.ends_with("snapshot missing hash but --skip-hash-check=false"), "{e}");
    let e = status(&path).unwrap_err().to_string();
    assert!(e.contains("invalid database: the file is cut short"), "{e}");
    std::fs::write(&path, b"not a snapshot").unwrap();
    assert!(status(&path).unwrap_err().to_string().contains("invalid database"));
}

#[test]
fn older_modkv_files_still_restore() {
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("old.db");
    let pairs = vec![
        (Cf::Kv, Revision::new(2, 0).to_bytes(false), kv("k", "v", 2, 2, 1, 0)),
        (Cf::Meta, meta::CURRENT_REV.to_vec(), meta::encode_u64(9)),
        (Cf::Meta, meta::APPLIED_INDEX.to_vec(), meta::encode_u64(42)),
    ];
    std::fs::write(&path, legacy::file(&pairs)).unwrap();
    let st = status(&path).unwrap();
    assert_eq!((st.revision, st.total_key), (9, 1));
    let dir = out.path().join("d");
    assert_eq!(restore(&path, &dir, false, None).unwrap(), 9);
    let db = RocksDb::open(&dir.join("db")).unwrap();
    assert_eq!(db.get(Cf::Kv, &Revision::new(2, 0).to_bytes(false)).unwrap(), Some(kv("k", "v", 2, 2, 1, 0)));
    assert_eq!(db.get(Cf::Meta, meta::APPLIED_INDEX).unwrap(), None);
}

/// etcd's Hash over a database: every bucket by name, its keys and values, without meta's consistent index.
fn etcd_hash(db: &[u8]) -> u32 {
    let mut crc = 0;
    for (name, pairs) in buckets(db) {
        crc = crc32c::crc32c_append(crc, name.as_bytes());
        for (k, v) in pairs.iter().filter(|(k, _)| !(name == "meta" && k == b"consistent_index")) {
            crc = crc32c::crc32c_append(crc32c::crc32c_append(crc, k), v);
        }
    }
    crc
}

#[test]
fn hash_is_etcds_over_the_snapshots_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let db = source(dir.path());
    let (hash, revision) = super::hash(&db).unwrap();
    assert_eq!(revision, 4);
    let bytes = file(&db).unwrap();
    let path = dir.path().join("f.db");
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(hash, etcd_hash(&bytes[..bytes.len() - HASH_LEN]));
    // The status hash includes the consistent index, the Hash does not.
    assert_ne!(status(&path).unwrap().hash, hash);
    let mut w = WriteBatch::default();
    w.put(Cf::Meta, meta::APPLIED_INDEX, meta::encode_u64(43));
    db.write(w, true).unwrap();
    assert_eq!(super::hash(&db).unwrap(), (hash, 4), "the raft position is not hashed");
    let mut w = WriteBatch::default();
    w.put(Cf::Kv, Revision::new(5, 0).to_bytes(false), kv("c", "3", 5, 5, 1, 0));
    db.write(w, true).unwrap();
    let (after, revision) = super::hash(&db).unwrap();
    assert_eq!(revision, 5, "the last key's revision, ahead of the counter");
    assert_ne!(after, hash);
    let bytes = file(&db).unwrap();
    assert_eq!(after, etcd_hash(&bytes[..bytes.len() - HASH_LEN]));
}

#[test]
fn a_new_stores_file_holds_what_a_new_etcd_writes() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = file(&RocksDb::open(dir.path()).unwrap()).unwrap();
    let got = buckets(&bytes[..bytes.len() - HASH_LEN]);
    // etcd's auth store writes its revision, 1, at its first start; nothing else is in a bucket.
    let filled: Vec<&(String, etcd::Pairs)> = got.iter().filter(|(_, pairs)| !pairs.is_empty()).collect();
    let names: Vec<&str> = filled.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["auth", "cluster"]);
    assert_eq!(filled[0].1, [(b"authRevision".to_vec(), meta::encode_u64(1))]);
}

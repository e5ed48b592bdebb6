//! Space quota and alarms, defragment, automatic compaction, snapshots and the backend's hash
//! (`Maintenance.Hash`): the same session against etcd and modkv, asserting what etcdctl shows.

use std::time::{Duration, Instant};

use modkv_tests::*;

fn rev(s: &Server) -> i64 {
    s.revision()
}

/// A plain HTTP/1.1 GET on the client port: status code and body (trimmed).
fn http_get(s: &Server, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.client_port)).expect("connect");
    write!(c, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    let code = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default().trim().to_string();
    (code, body)
}

/// Restores `file` into the (new) data dir of `s`, as each kind does it (`etcdctl snapshot restore`,
/// `modkv snapshot restore`), with the member's name and peer URL.
fn restore(s: &Server, file: &str) -> CtlOutput {
    let data_dir = s.data_dir().display().to_string();
    let peer = format!("http://127.0.0.1:{}", s.peer_port);
    let cluster = format!("{}={peer}", s.opts.name);
    let args = ["snapshot", "restore", file, "--data-dir", &data_dir, "--name", &s.opts.name];
    let mut args = args.to_vec();
    args.extend(["--initial-cluster", &cluster, "--initial-advertise-peer-urls", &peer]);
    match s.kind {
        Kind::Etcd => s.etcdctl(&args),
        Kind::Modkv => {
            let mut cmd = std::process::Command::new(Kind::Modkv.binary());
            cmd.args(&args);
            run_command(cmd, None, Duration::from_secs(30))
        }
    }
}

/// Anonymous resident memory of process `pid` (its heap; not the files it maps), in bytes.
fn rss_anon(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's /proc status");
    let kb = status.lines().find_map(|l| l.strip_prefix("RssAnon:")).expect("RssAnon in /proc/<pid>/status");
    kb.trim().trim_end_matches("kB").trim().parse::<u64>().expect("RssAnon in kB") * 1024
}

const MIB: u64 = 1 << 20;
/// The data the stalled snapshot streams are of, and the size of one value of it.
const SNAPSHOT_DATA: usize = 100 << 20;
const SNAPSHOT_VALUE: usize = 512 << 10;
const STALLED_SNAPSHOTS: usize = 3;

/// `etcdctl snapshot save FILE` running in the background.
fn spawn_snapshot_save(s: &Server, file: &str) -> std::process::Child {
    use std::process::{Command, Stdio};
    Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .args(["--endpoints", &s.endpoint(), "snapshot", "save", file])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start etcdctl")
}

fn signal(child: &std::process::Child, sig: i32) {
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0, "kill({}, {sig})", child.id());
}

both_kinds! {
    /// Three `etcdctl snapshot save` of 100 MiB of data, stopped (SIGSTOP) in the middle of their
    /// downloads, cost the server little memory: the snapshot is streamed as a client takes it, not
    /// built for it in memory (modkv held the whole file per stream before: +430 MB for these three).
    /// One killed, its stream ends; the others resumed, each saves the whole file, and it restores. The
    /// figures are printed.
    fn stalled_snapshot_streams_hold_little_memory(kind) {
        let mut s = Server::start(kind, ServerOpts::new());
        let mut c = grpc::Client::connect(&s.endpoint()).expect("gRPC connect");
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let n = SNAPSHOT_DATA / SNAPSHOT_VALUE;
        for i in 0..n {
            // Incompressible values, so the data is as big on disk as in the snapshot.
            let value: String = (0..SNAPSHOT_VALUE)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    (b'a' + ((seed >> 33) % 26) as u8) as char
                })
                .collect();
            c.put(grpc::PutRequest::new(&format!("big/{i:04}"), &value)).expect("put");
        }
        let pid = s.pid().expect("server pid");
        let before = rss_anon(pid);

        let dir = tempfile::tempdir().unwrap();
        let files: Vec<String> =
            (0..STALLED_SNAPSHOTS).map(|i| dir.path().join(format!("s{i}.db")).display().to_string()).collect();
        let mut saves: Vec<_> = files.iter().map(|f| spawn_snapshot_save(&s, f)).collect();
        // Each is stopped once it has written a few MiB (etcdctl downloads into FILE.part).
        for (save, file) in saves.iter().zip(&files) {
            let part = format!("{file}.part");
            cluster::poll(Duration::from_secs(60), "a snapshot download under way", || {
                (std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) >= 4 * MIB).then_some(())
            });
            signal(save, libc::SIGSTOP);
        }
        // The server sends until the stopped clients' windows and socket buffers are full.
        std::thread::sleep(Duration::from_secs(3));
        let during = rss_anon(pid);
        eprintln!(
            "{}: server anonymous RSS {} MiB with {} MiB of data, {} MiB with {STALLED_SNAPSHOTS} stalled snapshot \
             streams (+{} MiB)",
            kind.label(),
            before / MIB,
            SNAPSHOT_DATA as u64 / MIB,
            during / MIB,
            during.saturating_sub(before) / MIB
        );

        // One client goes away for good: its stream ends there (modkv says so in its log).
        let mut gone = saves.pop().unwrap();
        gone.kill().unwrap();
        gone.wait().unwrap();
        if kind == Kind::Modkv {
            cluster::poll(Duration::from_secs(10), "the abandoned stream's end in the log", || {
                s.log().contains("a snapshot stream ended before it was complete").then_some(())
            });
        }
        for save in &saves {
            signal(save, libc::SIGCONT);
        }
        let mut sizes = Vec::new();
        for (save, file) in saves.iter_mut().zip(&files) {
            let status = wait_timeout(save, Duration::from_secs(60)).expect("etcdctl snapshot save finishes");
            let mut out = String::new();
            std::io::Read::read_to_string(save.stdout.as_mut().unwrap(), &mut out).unwrap();
            assert!(status.success(), "etcdctl snapshot save: {status:?} {out}");
            assert_eq!(out, format!("Snapshot saved at {file}\n"));
            sizes.push(std::fs::metadata(file).unwrap().len());
        }
        assert!(sizes[0] > SNAPSHOT_DATA as u64, "{sizes:?}");
        assert!(sizes.iter().all(|&l| l == sizes[0]), "{sizes:?}");
        assert!(
            during.saturating_sub(before) < 64 * MIB,
            "{STALLED_SNAPSHOTS} stalled snapshot streams took {} MiB",
            during.saturating_sub(before) / MIB
        );

        // What was saved while stalled restores to the same data.
        s.kill9();
        std::fs::remove_dir_all(s.data_dir()).unwrap();
        assert!(restore(&s, &files[1]).success());
        s.restart();
        let j = s.ctl_json(&["get", "big/", "--prefix", "--keys-only"]);
        assert_eq!(j["count"], n as i64, "{j}");
        assert_eq!(header_rev(&j), n as i64 + 1, "{j}");
    }

    /// A backup: `etcdctl snapshot save` from a running member, restored into a new data dir, and the
    /// member started on it has the same keys with their revisions and versions, the deleted key still
    /// gone, the lease and its key; the next write continues the revision. A damaged file is refused.
    fn snapshot_save_and_restore(kind) {
        let mut s = Server::start(kind, ServerOpts::new());
        s.ctl_ok(&["put", "a", "1"]);
        s.ctl_ok(&["put", "b", "2"]);
        s.ctl_ok(&["put", "a", "3"]);
        s.ctl_ok(&["del", "b"]);
        let lease = format!("{:016x}", s.ctl_json(&["lease", "grant", "600"])["ID"].as_i64().unwrap());
        s.ctl_ok(&["put", "leased", "x", "--lease", &lease]);
        assert_eq!(rev(&s), 6);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup.db").display().to_string();
        assert_eq!(s.etcdctl(&["snapshot", "save", &file]).ok(), format!("Snapshot saved at {file}\n"));

        s.kill9();
        std::fs::remove_dir_all(s.data_dir()).unwrap();
        let damaged = dir.path().join("damaged.db").display().to_string();
        let mut bytes = std::fs::read(&file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&damaged, bytes).unwrap();
        let out = restore(&s, &damaged);
        assert!(!out.success(), "a damaged snapshot was restored: {out:#?}");
        assert!(out.stderr.contains("expected sha256"), "{out:#?}");
        if kind == Kind::Modkv {
            // (etcd leaves an empty member/wal dir behind; modkv creates nothing.)
            assert!(!s.data_dir().exists(), "{out:#?}");
        }
        let _ = std::fs::remove_dir_all(s.data_dir());
        let out = restore(&s, &file);
        assert!(out.success(), "{out:#?}");
        s.restart();

        let j = s.ctl_json(&["get", "", "--prefix"]);
        assert_eq!(kvs(&j), vec![kv("a", "3", 2, 4, 2), kv("leased", "x", 6, 6, 1)], "{j}");
        assert_eq!(header_rev(&j), 6, "{j}");
        assert_eq!(s.ctl_json(&["get", "b", "--rev", "3"])["kvs"][0]["value"], "Mg==", "history is restored too");
        let ttl = s.ctl_ok(&["lease", "timetolive", &lease, "--keys"]);
        assert!(ttl.starts_with(&format!("lease {lease} granted with TTL(600s), remaining(")), "{ttl}");
        assert!(ttl.ends_with("attached keys([leased])\n"), "{ttl}");
        assert_eq!(s.ctl_json(&["put", "c", "4"])["header"]["revision"], 7);
    }

    fn quota_alarm_and_recovery(kind) {
        let s = Server::start(kind, ServerOpts::new().args(["--quota-backend-bytes", "1048576"]));
        let value = vec![b'x'; 64 * 1024];
        // Fill the space: some puts succeed, then one is refused with etcd's error.
        let mut refused = None;
        for i in 0..64 {
            let out = s.etcdctl_stdin(&["put", &format!("k{i:02}")], &value);
            if !out.success() {
                refused = Some((i, out));
                break;
            }
        }
        let (n, out) = refused.expect("a 1 MiB quota is exceeded within 64 puts of 64 KiB");
        out.assert_server_error("ResourceExhausted", "etcdserver: mvcc: database space exceeded");
        assert!(n >= 1, "the first put fits");

        // The NOSPACE alarm is raised: listed, in endpoint status, and /health says false.
        let status = s.ctl_json(&["endpoint", "status"]);
        let id = status[0]["Status"]["header"]["member_id"].as_u64().unwrap();
        assert_eq!(s.ctl_ok(&["alarm", "list"]), format!("memberID:{id} alarm:NOSPACE \n"));
        assert_eq!(status[0]["Status"]["errors"], serde_json::json!([format!("memberID:{id} alarm:NOSPACE ")]));
        let (code, body) = http_get(&s, "/health");
        assert_eq!((code, body.as_str()), (503, r#"{"health":"false"}"#));
        // Writes stay refused, reads and deletes work.
        s.etcdctl(&["put", "small", "1"]).assert_server_error("ResourceExhausted", "etcdserver: mvcc: database space exceeded");
        assert_eq!(s.ctl_ok(&["get", "k00", "--keys-only"]), "k00\n\n");
        // etcd checks the quota again when it applies a put and then reports the error for a put it has
        // already written, so the refused put may be there too: n or n + 1 keys.
        let deleted: usize = s.ctl_ok(&["del", "k", "--prefix"]).trim().parse().unwrap();
        assert!(deleted == n || deleted == n + 1, "deleted {deleted} keys after {n} accepted puts");
        if kind == Kind::Modkv {
            assert_eq!(deleted, n, "modkv refuses the put before it is proposed");
        }

        // Compact, defragment, disarm: writes work again.
        let r = rev(&s);
        assert_eq!(s.ctl_ok(&["compaction", &r.to_string(), "--physical"]), format!("compacted revision {r}\n"));
        assert_eq!(s.ctl_ok(&["defrag"]), format!("Finished defragmenting etcd member[{}]\n", s.endpoint()));
        assert_eq!(s.ctl_ok(&["alarm", "disarm"]), format!("memberID:{id} alarm:NOSPACE \n"));
        assert_eq!(s.ctl_ok(&["alarm", "list"]), "");
        assert_eq!(s.ctl_ok(&["put", "small", "1"]), "OK\n");
        assert_eq!(s.ctl_ok(&["get", "small", "--print-value-only"]), "1\n");
        assert_eq!(http_get(&s, "/health"), (200, r#"{"health":"true"}"#.to_string()));
    }

    fn periodic_auto_compaction(kind) {
        let s = Server::start(
            kind,
            ServerOpts::new().args(["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1s"]),
        );
        for i in 0..5 {
            assert_eq!(s.ctl_ok(&["put", "foo", &i.to_string()]), "OK\n");
        }
        assert_eq!(s.ctl_ok(&["get", "foo", "--rev", "2", "--print-value-only"]), "0\n");
        // Within a few retention periods revision 2 is compacted away; the latest value stays.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = s.etcdctl(&["get", "foo", "--rev", "2"]);
            if !out.success() {
                out.assert_server_error("OutOfRange", "etcdserver: mvcc: required revision has been compacted");
                break;
            }
            assert!(Instant::now() < deadline, "revision 2 was never compacted");
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(s.ctl_ok(&["get", "foo", "--print-value-only"]), "4\n");
    }
}

/// `etcdctl endpoint hashkv` on etcd and modkv after the same history (puts, overwrites, deletes, a txn,
/// a physical compaction) gives the same hash at every revision asked: modkv stores each revision under
/// etcd's key and value encoding, and hashes them as etcd does. Compacted and future revisions are
/// refused with etcd's errors.
#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn hashkv_matches_etcd_over_the_same_history() {
    let servers = [Server::start(Kind::Etcd, ServerOpts::new()), Server::start(Kind::Modkv, ServerOpts::new())];
    let hashkv = |s: &Server, rev: i64| {
        let j = s.ctl_json(&["endpoint", "hashkv", "--rev", &rev.to_string()]);
        let h = &j[0]["HashKV"];
        (
            h["hash"].as_u64().unwrap(),
            h["compact_revision"].as_i64().unwrap(),
            h["header"]["revision"].as_i64().unwrap(),
        )
    };
    let history = |s: &Server| {
        for i in 0..20 {
            s.ctl_ok(&["put", &format!("k{}", i % 7), &format!("v{i}")]);
        }
        s.ctl_ok(&["del", "k1"]);
        s.ctl_ok(&["del", "k2", "k5"]);
        let txn = "\nput t1 a\nput t2 b\ndel k6\n\n\n";
        assert!(s.etcdctl_stdin(&["txn"], txn.as_bytes()).success());
        s.ctl_ok(&["compact", "12", "--physical"]);
        s.ctl_ok(&["put", "after", "compaction"]);
    };
    let mut hashes = Vec::new();
    for s in &servers {
        history(s);
        assert_eq!(s.revision(), 25, "{}", s.kind);
        hashes.push([0, 13, 20, 25].map(|rev| hashkv(s, rev)));
        let compacted = s.etcdctl(&["endpoint", "hashkv", "--rev", "12"]);
        assert!(compacted.stderr.contains("mvcc: required revision has been compacted"), "{compacted:#?}");
        let future = s.etcdctl(&["endpoint", "hashkv", "--rev", "26"]);
        assert!(future.stderr.contains("mvcc: required revision is a future revision"), "{future:#?}");
    }
    assert_eq!(hashes[1], hashes[0], "modkv's (hash, compact_revision, revision) at revisions 0, 13, 20, 25 vs etcd's");
    assert_eq!(hashes[0][0].1, 12);
}

/// The CRC-32C etcd computes over the database of a snapshot file, as its backend's `Hash`: every bucket in
/// bbolt's order, its name, then each key and value; `(without, with)` meta's `consistent_index` (the
/// `Maintenance.Hash` RPC leaves it out, `etcdctl snapshot status` does not).
fn file_hashes(path: &str) -> (u32, u32) {
    let db = bbolt::Reader::open(std::fs::File::open(path).unwrap()).unwrap();
    let (mut without, mut with, mut meta) = (0u32, 0u32, false);
    db.walk(&mut |entry| {
        match entry {
            bbolt::Entry::Bucket(name) => {
                without = crc32c::crc32c_append(without, name);
                with = crc32c::crc32c_append(with, name);
                meta = name == b"meta";
            }
            bbolt::Entry::Pair { key, value } => {
                let value = value.unwrap_or_default();
                with = crc32c::crc32c_append(crc32c::crc32c_append(with, key), value);
                if !(meta && key == b"consistent_index") {
                    without = crc32c::crc32c_append(crc32c::crc32c_append(without, key), value);
                }
            }
        }
        true
    })
    .unwrap();
    (without, with)
}

both_kinds! {
    /// `Maintenance.Hash` is etcd's CRC-32C of its backend without the consistent index: equal to that
    /// hash over the buckets of a snapshot file taken at the same revision, not to `etcdctl snapshot
    /// status`'s hash (which counts the consistent index); the same again without writes, another after a
    /// put; the gateway's `/v3/maintenance/hash` gives it too (the hash a JSON number, the header's
    /// numbers strings, as etcd's grpc-gateway); `etcdctl endpoint hashkv` still answers.
    fn hash_is_the_crc_of_the_backend(kind) {
        let s = Server::start(kind, ServerOpts::new());
        s.ctl_ok(&["put", "a", "1"]);
        s.ctl_ok(&["put", "b", "2"]);
        s.ctl_ok(&["put", "a", "3"]);
        s.ctl_ok(&["del", "b"]);
        let lease = format!("{:016x}", s.ctl_json(&["lease", "grant", "600"])["ID"].as_i64().unwrap());
        s.ctl_ok(&["put", "leased", "x", "--lease", &lease]);
        s.ctl_ok(&["compact", "3", "--physical"]);
        s.ctl_ok(&["user", "add", "alice:pw"]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup.db").display().to_string();
        // (etcd commits its backend for a snapshot, and again before it hashes.)
        assert_eq!(s.etcdctl(&["snapshot", "save", &file]).ok(), format!("Snapshot saved at {file}\n"));
        let (hash, revision) = grpc::backend_hash(&s.endpoint()).unwrap();
        assert_eq!(revision, 6);
        let (without_index, with_index) = file_hashes(&file);
        assert_eq!(hash, without_index, "the hash of the snapshot's buckets without the consistent index");
        let status = parse_json(&s.ctl_ok(&["snapshot", "status", &file, "-w", "json"]));
        assert_eq!(status["hash"], with_index, "etcdctl's status hash counts the consistent index");
        assert_ne!(with_index, without_index);

        assert_eq!(grpc::backend_hash(&s.endpoint()).unwrap(), (hash, 6), "no writes, the same hash");
        s.ctl_ok(&["put", "c", "4"]);
        let (after, revision) = grpc::backend_hash(&s.endpoint()).unwrap();
        assert_eq!(revision, 7);
        assert_ne!(after, hash);

        let r = modkv_tests::http::post(&s.endpoint(), "/v3/maintenance/hash", "{}");
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!(j["hash"], after, "{j}");
        assert_eq!(j["header"]["revision"], "7", "{j}");
        let header: Vec<&String> = j["header"].as_object().unwrap().keys().collect();
        assert_eq!(header, ["cluster_id", "member_id", "raft_term", "revision"], "{j}");
        assert!(j["header"]["cluster_id"].is_string(), "{j}");
        let hashkv = s.ctl_json(&["endpoint", "hashkv"]);
        assert_eq!(hashkv[0]["HashKV"]["header"]["revision"], 7, "{hashkv}");
        assert_eq!(hashkv[0]["HashKV"]["compact_revision"], 3, "{hashkv}");
    }

    /// Every member of a three-member cluster gives the same `Maintenance.Hash` once it has applied the
    /// same log (keys, a lease, a compaction, a deletion; every member published its name and client
    /// URLs): the buckets hashed are the replicated state, not a member's own. A user with a password is
    /// where etcd 3.4's members part: each bcrypts the password as it applies `UserAdd`, with a salt of
    /// its own, so their `authUsers` buckets differ; modkv's member that takes the request hashes it once
    /// for all, and they still agree.
    fn hash_agrees_across_members(kind) {
        let c = modkv_tests::cluster::Cluster::start(kind, 3, &[]);
        let m1 = &c[0];
        for i in 0..20 {
            m1.ctl_ok(&["put", &format!("k{}", i % 6), &format!("v{i}")]);
        }
        let lease = format!("{:016x}", m1.ctl_json(&["lease", "grant", "600"])["ID"].as_i64().unwrap());
        m1.ctl_ok(&["put", "leased", "x", "--lease", &lease]);
        m1.ctl_ok(&["compact", "10", "--physical"]);
        m1.ctl_ok(&["del", "k1"]);
        assert_eq!(m1.ctl_json(&["put", "last", "1"])["header"]["revision"], 24);
        // Every member at a revision has applied everything before it; a compaction ends in the background
        // (etcd writes finishedCompactRev when it is done), so this waits for agreement (bounded), which a
        // member-specific bucket would never reach.
        let hashes = |rev: i64| {
            let h: Vec<_> = (0..3).map(|i| grpc::backend_hash(&c[i].endpoint()).ok()).collect();
            h.iter().all(|h| h.is_some_and(|(_, r)| r == rev)).then(|| h.into_iter().map(|h| h.unwrap().0).collect())
        };
        let agree = |rev: i64, what: &str| -> u32 {
            modkv_tests::cluster::poll(Duration::from_secs(10), what, || {
                hashes(rev).filter(|h: &Vec<u32>| h[1] == h[0] && h[2] == h[0]).map(|h| h[0])
            })
        };
        let agreed = agree(24, "the same hash on every member at revision 24");
        m1.ctl_ok(&["put", "after", "1"]);
        assert_ne!(agree(25, "the same hash on every member at revision 25"), agreed);

        m1.ctl_ok(&["user", "add", "alice:pw"]);
        m1.ctl_ok(&["put", "after", "2"]);
        match kind {
            Kind::Modkv => {
                agree(26, "the same hash on every member after a user was added");
            }
            Kind::Etcd => {
                let h = modkv_tests::cluster::poll(Duration::from_secs(10), "every member at 26", || hashes(26));
                assert!(h[1] != h[0] && h[2] != h[0], "etcd 3.4's members salt a password each: {h:x?}");
            }
        }
    }
}

/// The same history on etcd and on modkv, each a member named alike on the same ports with the same token
/// (so with the same member and cluster ids): `Maintenance.Hash` gives the same number on both, since
/// modkv's buckets hold what etcd's do (keys with every revision, the lease, the compaction, the member
/// with its published URLs, the cluster version; the consistent index, where they differ, is not hashed).
/// The lease has a given id (etcd's are random), and no user is added (bcrypt salts differ).
#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn hash_equals_etcds_over_the_same_history() {
    let mut s = Server::start(Kind::Etcd, ServerOpts::new());
    let mut hashes = Vec::new();
    for kind in [Kind::Etcd, Kind::Modkv] {
        if kind == Kind::Modkv {
            s.kill9();
            std::fs::remove_dir_all(s.data_dir()).unwrap();
            s.kind = kind;
            s.restart();
        }
        for i in 0..10 {
            s.ctl_ok(&["put", &format!("k{}", i % 4), &format!("v{i}")]);
        }
        let grant = modkv_tests::http::post(&s.endpoint(), "/v3/lease/grant", r#"{"TTL":"600","ID":"1000"}"#);
        assert_eq!(grant.json()["ID"], "1000", "{}", grant.text());
        s.ctl_ok(&["put", "leased", "x", "--lease", "3e8"]);
        s.ctl_ok(&["del", "k1"]);
        s.ctl_ok(&["compact", "5", "--physical"]);
        let h = grpc::backend_hash(&s.endpoint()).unwrap();
        eprintln!("{kind}: Hash {:x} at revision {}", h.0, h.1);
        hashes.push(h);
    }
    assert_eq!(hashes[0].1, 13);
    assert_eq!(hashes[1], hashes[0], "modkv's (hash, revision) vs etcd's");
}

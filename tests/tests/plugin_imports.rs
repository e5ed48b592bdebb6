//! The host KV imports a plugin calls into the server (`range`, `put`, `delete`) fed arbitrary arguments
//! (modkv only: etcd has no plugins). The `good` test plugin's `kv` page passes the bytes of its request
//! body to one import unchanged and answers with the import's result (see `tests/plugins/good/src/lib.rs`);
//! the plugin may read `fz/` and `ro/` and write `fz/`.
//!
//! * [`arbitrary_arguments_get_etcds_answers`]: a hand list of edge cases with their exact answers, then
//!   a seeded generator of argument sets (`FUZZ_SEED=<n>` replays a run, `FUZZ_CALLS=<n>` sets its
//!   length). Every call must be answered in time by the import (never a trap or a stall); an error
//!   must be one of etcd's texts or the grant refusal, and each is checked against why it must happen;
//!   a result must match a model of the store (kept from the member's own contents and the plugin's
//!   acknowledged writes). Meanwhile two threads make concurrent calls that change nothing (refused
//!   ones, reads of `ro/`), checked the same way. Afterwards the store equals the model, the member is
//!   healthy, and its RSS grew within a generous bound.
//! * [`calls_without_a_leader_time_out`]: in a 3-member cluster that lost its quorum, writes and
//!   linearizable reads get etcd's timeout (or, with the default time limit, the plugin call ends at
//!   its limit), serializable reads are served, and the member serves again once the quorum is back.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use modkv_tests::cluster::{poll, Cluster};
use modkv_tests::http::request;
use modkv_tests::procstat;
use modkv_tests::test_plugins::install;
use modkv_tests::*;

/// The member's `--max-request-bytes`: small, so that oversized writes are cheap to make.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Sizes within this much of [`MAX_REQUEST_BYTES`] may go either way (the raft entry's own encoding).
const SIZE_SLACK: usize = 64;
/// Generated calls per run unless `FUZZ_CALLS` says otherwise.
const DEFAULT_CALLS: usize = 8000;
/// The longest a call may take: the plugin's time limit (1 s) plus ample slack. Longer is a stall.
const CALL_LIMIT: Duration = Duration::from_secs(5);
/// Threads making concurrent hostile calls that change nothing while the main loop runs.
const BACKGROUND_THREADS: u64 = 2;
/// RSS growth over the whole run allowed before it counts as a leak.
const RSS_GROWTH_LIMIT: u64 = 256 << 20;

const GRANTS: &str = "[grants]\nread = [\"fz/\", \"ro/\"]\nwrite = [\"fz/\"]\n";
const READ: &[&[u8]] = &[b"fz/", b"ro/"];
const WRITE: &[&[u8]] = &[b"fz/"];

#[derive(Clone, Debug)]
enum Op {
    Range { key: Vec<u8>, end: Vec<u8>, limit: i64, serializable: bool },
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8>, end: Vec<u8> },
}

impl Op {
    /// The `kv` page's body for this call.
    fn encode(&self) -> Vec<u8> {
        let (op, key, end, value, limit, serializable): (u8, &[u8], &[u8], &[u8], i64, bool) = match self {
            Op::Range { key, end, limit, serializable } => (b'r', key, end, b"", *limit, *serializable),
            Op::Put { key, value } => (b'p', key, b"", value, 0, false),
            Op::Delete { key, end } => (b'd', key, end, b"", 0, false),
        };
        let mut body = vec![op];
        for field in [key, end, value] {
            body.extend_from_slice(&(field.len() as u32).to_le_bytes());
            body.extend_from_slice(field);
        }
        body.extend_from_slice(&limit.to_le_bytes());
        body.push(serializable as u8);
        body
    }

    /// A short description for failure messages (keys and values cut).
    fn show(&self) -> String {
        let cut = |b: &[u8]| {
            let s = format!("{:?}", String::from_utf8_lossy(&b[..b.len().min(40)]));
            if b.len() > 40 {
                format!("{s}..({} bytes)", b.len())
            } else {
                s
            }
        };
        match self {
            Op::Range { key, end, limit, serializable } => {
                format!("range({}, {}, limit {limit}, serializable {serializable})", cut(key), cut(end))
            }
            Op::Put { key, value } => format!("put({}, {})", cut(key), cut(value)),
            Op::Delete { key, end } => format!("delete({}, {})", cut(key), cut(end)),
        }
    }
}

/// What the import answered: `Ok` with the result object, or its error text.
fn call(ep: &str, op: &Op) -> Result<Value, String> {
    let started = Instant::now();
    let r = request(ep, "POST", "/good/kv", &op.encode());
    let took = started.elapsed();
    assert!(took < CALL_LIMIT, "{}: answered after {took:?}", op.show());
    assert_eq!(r.status, 200, "{}: {}", op.show(), r.text());
    let v = r.json();
    match (v.get("ok"), v.get("err")) {
        (Some(ok), None) => Ok(ok.clone()),
        (None, Some(Value::String(e))) => Err(e.clone()),
        _ => panic!("{}: neither ok nor err: {v}", op.show()),
    }
}

// ---------------------------------------------------------------------------------------------------
// The model: the whole store, as etcd's semantics say it must be after each acknowledged call.
// ---------------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
struct Kv {
    value: Vec<u8>,
    create: i64,
    modified: i64,
    version: i64,
}

#[derive(Clone, Debug, PartialEq)]
struct Model {
    keys: BTreeMap<Vec<u8>, Kv>,
    rev: i64,
}

/// The smallest key after every key that starts with `prefix` (`None`: no such key, all 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(b) = end.pop() {
        if b < 0xff {
            end.push(b + 1);
            return Some(end);
        }
    }
    None
}

/// Whether etcd's range `[key, end)` (end empty: the key alone; `"\0"`: every key from `key` on) lies
/// under one of `prefixes` (its start too when it is empty).
fn within(prefixes: &[&[u8]], key: &[u8], end: &[u8]) -> bool {
    prefixes.iter().any(|p| {
        key.starts_with(p)
            && match end {
                b"" => true,
                b"\0" => false,
                _ => prefix_end(p).is_none_or(|pe| end <= pe.as_slice()),
            }
    })
}

impl Model {
    /// The member's whole store, read with etcdctl.
    fn read(s: &Server) -> Model {
        let v = s.ctl_json(&["get", "", "--from-key"]);
        let keys = v["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| {
                        let bytes = |f: &str| b64decode(kv[f].as_str().unwrap_or("")).unwrap();
                        let num = |f: &str| kv[f].as_i64().unwrap_or(0);
                        let value = Kv {
                            value: bytes("value"),
                            create: num("create_revision"),
                            modified: num("mod_revision"),
                            version: num("version"),
                        };
                        (bytes("key"), value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Model { keys, rev: header_rev(&v) }
    }

    fn matching(&self, key: &[u8], end: &[u8]) -> Vec<(&Vec<u8>, &Kv)> {
        match end {
            b"" => self.keys.get_key_value(key).into_iter().collect(),
            b"\0" => self.keys.range(key.to_vec()..).collect(),
            _ if end <= key => vec![],
            _ => self.keys.range(key.to_vec()..end.to_vec()).collect(),
        }
    }

    /// What etcd answers this range: the result object of the `kv` page.
    fn range(&self, key: &[u8], end: &[u8], limit: i64) -> Value {
        let all = self.matching(key, end);
        let shown = if limit > 0 { all.len().min(limit as usize) } else { all.len() };
        let kvs: Vec<Value> = all[..shown]
            .iter()
            .map(|(k, kv)| {
                json!({"key": b64encode(k), "value": b64encode(&kv.value), "create_revision": kv.create,
                       "mod_revision": kv.modified, "version": kv.version, "lease": 0})
            })
            .collect();
        json!({"revision": self.rev, "count": all.len(), "more": shown < all.len(), "kvs": kvs})
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> i64 {
        self.rev += 1;
        let rev = self.rev;
        let kv = self.keys.entry(key.to_vec()).or_insert(Kv { value: vec![], create: rev, modified: rev, version: 0 });
        kv.value = value.to_vec();
        kv.modified = rev;
        kv.version += 1;
        rev
    }

    fn delete(&mut self, key: &[u8], end: &[u8]) -> i64 {
        let gone: Vec<Vec<u8>> = self.matching(key, end).into_iter().map(|(k, _)| k.clone()).collect();
        if !gone.is_empty() {
            self.rev += 1;
        }
        for k in &gone {
            self.keys.remove(k);
        }
        gone.len() as i64
    }
}

/// What the call must answer, given the model: `Ok(result)`, `Err(text)`, or `None` where either is
/// right (a write whose size is within [`SIZE_SLACK`] of the limit). Writes the model on success.
fn expect(m: &mut Model, op: &Op) -> Option<Result<Value, String>> {
    const EMPTY: &str = "etcdserver: key is not provided";
    const TOO_LARGE: &str = "etcdserver: request is too large";
    let (key, end, size, prefixes) = match op {
        Op::Range { key, end, .. } => (key, end, 0, READ),
        Op::Put { key, value } => (key, &vec![], key.len() + value.len(), WRITE),
        Op::Delete { key, end } => (key, end, key.len() + end.len(), WRITE),
    };
    if key.is_empty() {
        return Some(Err(EMPTY.into()));
    }
    if !within(prefixes, key, end) {
        return Some(Err("permission denied".into()));
    }
    if size + SIZE_SLACK > MAX_REQUEST_BYTES {
        if size > MAX_REQUEST_BYTES {
            return Some(Err(TOO_LARGE.into()));
        }
        return None;
    }
    Some(Ok(match op {
        Op::Range { key, end, limit, .. } => m.range(key, end, *limit),
        Op::Put { key, value } => json!({"revision": m.put(key, value)}),
        Op::Delete { key, end } => json!({"deleted": m.delete(key, end)}),
    }))
}

/// Checks one answer against the expected one. A grant refusal must name the call's verb, come with the
/// fix in good.toml, and stay short however long the key.
#[track_caller]
fn check(m: &mut Model, op: &Op, got: &Result<Value, String>, want: Option<Result<Value, String>>) {
    let Some(want) = want else {
        // Near the size limit either answer is right; a write that went through is in the model.
        match (op, got) {
            (_, Err(e)) => assert_eq!(e, "etcdserver: request is too large", "{}", op.show()),
            (Op::Put { key, value }, Ok(r)) => assert_eq!(r, &json!({"revision": m.put(key, value)}), "{}", op.show()),
            (Op::Delete { key, end }, Ok(r)) => assert_eq!(r, &json!({"deleted": m.delete(key, end)}), "{}", op.show()),
            (Op::Range { .. }, Ok(_)) => unreachable!("reads have no size limit"),
        }
        return;
    };
    match (&want, got) {
        (Err(w), Err(e)) if w == "permission denied" => {
            let (verb, line) = match op {
                Op::Range { .. } => ("read", "read = [\"fz/\", \"ro/\", "),
                Op::Put { .. } => ("write", "write = [\"fz/\", "),
                Op::Delete { .. } => ("delete", "write = [\"fz/\", "),
            };
            assert!(e.starts_with(&format!("permission denied: plugin good may not {verb} ")), "{}: {e}", op.show());
            assert!(e.contains(&format!("; grant it in good.toml: [grants] {line}")), "{}: {e}", op.show());
            assert!(e.len() < 4096, "{}: a refusal of {} bytes", op.show(), e.len());
        }
        _ => assert_eq!(got, &want, "{}", op.show()),
    }
}

// ---------------------------------------------------------------------------------------------------
// The generator: a seeded PRNG, edge-case pools, and mutations.
// ---------------------------------------------------------------------------------------------------

/// SplitMix64: small, seedable, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Keys at the edges: empty, NUL, the granted prefixes and their neighbours, 0xff runs, invalid UTF-8.
const EDGE_KEYS: &[&[u8]] = &[
    b"",
    b"\0",
    b"fz",
    b"fz/",
    b"fz0",
    b"fz.",
    b"fz/\0",
    b"fz/\xff",
    b"fz/\xff\xff",
    b"fz/a",
    b"fz/b",
    b"fz/a/b",
    b"fz/\xc3\x28",
    b"fz/\xed\xa0\x80",
    b"fy\xff",
    b"FZ/a",
    b"ro/",
    b"ro/1",
    b"ro0",
    b"other/x",
    b"\xff",
    b"\xff\xff",
];

/// Range ends at the edges: open, single key, to the end, the prefixes' ends and just past them.
const EDGE_ENDS: &[&[u8]] = &[b"", b"\0", b"fz0", b"fz0\0", b"fz/", b"fz/\xff\xff\xff", b"ro0", b"\xff", b"\0\0"];

const EDGE_LIMITS: &[i64] = &[0, 1, 2, 3, -1, i64::MIN, i64::MAX, i64::MAX - 1, 1 << 40];

/// Flips, inserts or removes one byte.
fn mutate(rng: &mut Rng, b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    match rng.below(3) {
        0 if !v.is_empty() => {
            let i = rng.below(v.len());
            v[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = rng.below(v.len() + 1);
            v.insert(i, *rng.pick(&[0u8, b'/', b'a', 0x7f, 0x80, 0xfe, 0xff]));
        }
        _ if !v.is_empty() => {
            v.remove(rng.below(v.len()));
        }
        _ => {}
    }
    v
}

fn gen_key(rng: &mut Rng, m: &Model) -> Vec<u8> {
    let existing: Vec<&Vec<u8>> = m.keys.keys().filter(|k| k.starts_with(b"fz/") || k.starts_with(b"ro/")).collect();
    match rng.below(100) {
        0..=24 if !existing.is_empty() => rng.pick(&existing).to_vec(),
        0..=54 => rng.pick(EDGE_KEYS).to_vec(),
        55..=84 => {
            let mut k = b"fz/".to_vec();
            let n = rng.below(5);
            for _ in 0..n {
                k.push(*rng.pick(b"ab/\0\xff\xc3z"));
            }
            k
        }
        85..=98 => {
            let base = rng.pick(EDGE_KEYS).to_vec();
            mutate(rng, &base)
        }
        // Huge keys, inside and outside the grants: past the request limit, up to megabytes.
        _ => {
            let mut k = rng.pick(&[&b"fz/"[..], b"zz", b"\xff"]).to_vec();
            let n = *rng.pick(&[MAX_REQUEST_BYTES / 2, MAX_REQUEST_BYTES + 100, 1 << 20, 3 << 20]);
            let fill = *rng.pick(&[b'k', 0xff, 0]);
            k.resize(k.len() + n, fill);
            k
        }
    }
}

fn gen_end(rng: &mut Rng, key: &[u8], m: &Model) -> Vec<u8> {
    match rng.below(100) {
        0..=34 => vec![],
        35..=49 => rng.pick(EDGE_ENDS).to_vec(),
        50..=64 => prefix_end(key).unwrap_or_else(|| b"\0".to_vec()),
        65..=79 => gen_key(rng, m),
        80..=84 => key.to_vec(),
        85..=89 => [key, b"\0"].concat(),
        _ => mutate(rng, key),
    }
}

fn gen_value(rng: &mut Rng) -> Vec<u8> {
    match rng.below(200) {
        0..=19 => vec![],
        20..=189 => {
            let n = rng.below(64);
            rng.bytes(n)
        }
        190..=193 => vec![b'v'; MAX_REQUEST_BYTES / 4],
        194..=197 => vec![0; MAX_REQUEST_BYTES + 1],
        198 => vec![0xff; 1 << 20],
        _ => vec![b'x'; 3 << 20],
    }
}

/// One call whose body fits the plugin route's body limit (4 MiB).
fn gen_op(rng: &mut Rng, m: &Model) -> Op {
    loop {
        let op = gen_any_op(rng, m);
        if op.encode().len() < 4_000_000 {
            return op;
        }
    }
}

fn gen_any_op(rng: &mut Rng, m: &Model) -> Op {
    let key = gen_key(rng, m);
    match rng.below(10) {
        0..=3 => Op::Range {
            end: gen_end(rng, &key, m),
            key,
            limit: if rng.chance(70) { *rng.pick(EDGE_LIMITS) } else { rng.next() as i64 },
            serializable: rng.chance(50),
        },
        4..=7 => Op::Put { key, value: gen_value(rng) },
        // Deletes mostly of single keys, so the store keeps keys to read and overwrite.
        _ => Op::Delete { end: if rng.chance(70) { vec![] } else { gen_end(rng, &key, m) }, key },
    }
}

/// Sets the flag when dropped: background threads stop even when the main loop fails.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Concurrent hostile calls while the main loop runs, restricted to those that change nothing: the ones
/// refused (checked as in the main loop) and reads of `ro/`, which no call may write (checked against
/// `read_only` but for the revision). Returns how many calls it made.
fn meanwhile(ep: &str, mut rng: Rng, read_only: &Model, stop: &AtomicBool) -> usize {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let op = gen_op(&mut rng, read_only);
        let mut scratch = read_only.clone();
        let want = match (expect(&mut scratch, &op), &op) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(r)), Op::Range { key, end, .. }) if within(&[b"ro/"], key, end) => Ok(r),
            _ => continue,
        };
        let mut got = call(ep, &op);
        if let (Ok(got), Ok(want)) = (&mut got, &want) {
            assert!(got["revision"].as_i64() >= want["revision"].as_i64(), "{}: {got}", op.show());
            got["revision"] = want["revision"].clone();
        }
        check(&mut scratch, &op, &got, Some(want));
        n += 1;
    }
    n
}

fn plugin_dir(extra_toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "good", "good");
    std::fs::write(dir.path().join("good.toml"), format!("{GRANTS}{extra_toml}")).unwrap();
    dir
}

fn plugin_args(dir: &Path) -> Vec<String> {
    vec!["--plugin-dir".into(), dir.display().to_string(), "--max-request-bytes".into(), MAX_REQUEST_BYTES.to_string()]
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.trim().parse().unwrap_or_else(|e| panic!("{name}={v:?}: {e}")))
}

/// The exact answers to the edge cases a hostile plugin tries first.
fn hand_cases(ep: &str, m: &mut Model) {
    let range =
        |key: &[u8], end: &[u8], limit: i64| Op::Range { key: key.into(), end: end.into(), limit, serializable: false };
    let put = |key: &[u8], value: &[u8]| Op::Put { key: key.into(), value: value.into() };
    let delete = |key: &[u8], end: &[u8]| Op::Delete { key: key.into(), end: end.into() };
    let err = |e: &str| Err::<Value, String>(e.to_string());
    let empty = "etcdserver: key is not provided";
    let too_large = "etcdserver: request is too large";
    let refused = |what: &str, line: &str| {
        format!("permission denied: plugin good may not {what}; grant it in good.toml: [grants] {line}")
    };
    let cases: Vec<(Op, Result<Value, String>)> = vec![
        (range(b"", b"", 0), err(empty)),
        (range(b"", b"\0", 0), err(empty)),
        (put(b"", b"v"), err(empty)),
        (delete(b"", b"\0"), err(empty)),
        (range(b"\0", b"\0", 0), err(&refused("read every key", r#"read = ["fz/", "ro/", ""]"#))),
        (range(b"fz/", b"\0", 0), err(&refused(r#"read keys from "fz/" on"#, r#"read = ["fz/", "ro/", ""]"#))),
        (range(b"fz/", b"fz1", 0), err(&refused(r#"read keys ["fz/", "fz1")"#, r#"read = ["fz/", "ro/", "fz"]"#))),
        (range(b"fz", b"", 0), err(&refused(r#"read key "fz""#, r#"read = ["fz/", "ro/", "fz"]"#))),
        (put(b"fz", b"v"), err(&refused(r#"write key "fz""#, r#"write = ["fz/", "fz"]"#))),
        (put(b"ro/1", b"v"), err(&refused(r#"write key "ro/1""#, r#"write = ["fz/", "ro/"]"#))),
        (delete(b"fz/", b"fz0\0"), err(&refused(r#"delete keys ["fz/", "fz0\0")"#, r#"write = ["fz/", "fz"]"#))),
        (delete(b"ro/", b"ro0"), err(&refused(r#"delete keys under "ro/""#, r#"write = ["fz/", "ro/"]"#))),
        // A key of megabytes outside the grants: the refusal shows 256 bytes of it.
        (
            put(&[&b"zz/"[..], &[0xff; 3 << 20]].concat(), b"v"),
            err(&refused(&format!("write key \"zz/{}…\"", "\u{fffd}".repeat(253)), r#"write = ["fz/", "zz/"]"#)),
        ),
        (put(b"fz/big", &vec![b'v'; MAX_REQUEST_BYTES + 1]), err(too_large)),
        (
            put(&vec![b'f'; 3 << 20], b""),
            err(&refused(
                &format!("write key \"{}…\"", "f".repeat(256)),
                &format!("write = [\"fz/\", \"{}…\"]", "f".repeat(256)),
            )),
        ),
        (delete(&[&b"fz/"[..], &[b'k'; MAX_REQUEST_BYTES]].concat(), b""), err(too_large)),
    ];
    for (op, want) in cases {
        let got = call(ep, &op);
        assert_eq!(got, want, "{}", op.show());
    }
    // Granted edge cases against the model: the prefix itself, 0xff runs, invalid UTF-8, limits at the
    // ends of i64, ranges whose end is before their key, a key of megabytes read.
    let granted = vec![
        put(b"fz/", b"the prefix itself"),
        put(b"fz/\xff\xff", b"\xff"),
        put(b"fz/\xc3\x28", b"\xc3\x28 invalid UTF-8"),
        put(b"fz/\0", b""),
        put(b"fz/a", b"1"),
        put(b"fz/a", b"2"),
        range(b"fz/", b"fz0", 0),
        range(b"fz/", b"fz0", i64::MAX),
        range(b"fz/", b"fz0", i64::MIN),
        range(b"fz/", b"fz0", -1),
        range(b"fz/", b"fz0", 2),
        range(b"fz/z", b"fz/a", 0),
        range(b"ro/", b"ro0", 1),
        range(&[&b"fz/"[..], &[b'k'; 3 << 20]].concat(), b"", 0),
        delete(b"fz/z", b"fz/a"),
        delete(b"fz/a", b""),
        delete(b"fz/a", b""),
        range(b"fz/", b"fz0", 0),
    ];
    for op in granted {
        let want = expect(m, &op);
        let got = call(ep, &op);
        check(m, &op, &got, want);
    }
}

#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn arbitrary_arguments_get_etcds_answers() {
    let seed = env_number("FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let calls = env_number("FUZZ_CALLS").map_or(DEFAULT_CALLS, |n| n as usize);
    eprintln!("plugin_imports: FUZZ_SEED={seed} FUZZ_CALLS={calls} (set both to replay this run)");

    let dir = plugin_dir("[config]\nstateless = \"true\"\n");
    let s = Server::start(Kind::Modkv, ServerOpts::new().args(plugin_args(dir.path())));
    let ep = s.endpoint();
    for (k, v) in [("ro/1", "one"), ("ro/2", "two"), ("other/x", "x"), ("fz/seed", "s")] {
        s.ctl_ok(&["put", k, v]);
    }
    let mut m = Model::read(&s);
    hand_cases(&ep, &mut m);

    let pid = s.pid().expect("the member runs");
    let rss_before = procstat::mem(pid).rss;
    let mut rng = Rng(seed);
    // Answers by kind: ok, key not provided, grant refused, request too large.
    let mut kinds = [0usize; 4];
    let started = Instant::now();
    let stop = AtomicBool::new(false);
    let mut read_only = m.clone();
    read_only.keys.retain(|k, _| k.starts_with(b"ro/"));
    let (ep, read_only) = (&ep, &read_only);
    let background = thread::scope(|scope| {
        let hostile: Vec<_> = (1..=BACKGROUND_THREADS)
            .map(|t| {
                let stop = &stop;
                scope.spawn(move || meanwhile(ep, Rng(seed ^ t), read_only, stop))
            })
            .collect();
        let _stop = StopOnDrop(&stop);
        for i in 0..calls {
            let op = gen_op(&mut rng, &m);
            let want = expect(&mut m, &op);
            let got = call(&ep, &op);
            check(&mut m, &op, &got, want);
            kinds[match &got {
                Ok(_) => 0,
                Err(e) if e.starts_with("etcdserver: key is not provided") => 1,
                Err(e) if e.starts_with("permission denied: ") => 2,
                Err(_) => 3,
            }] += 1;
            if i % 1000 == 999 {
                assert_eq!(Model::read(&s), m, "the store after call {i} (FUZZ_SEED={seed})");
            }
        }
        drop(_stop);
        hostile.into_iter().map(|t| t.join().unwrap()).sum::<usize>()
    });
    let took = started.elapsed();
    let rss_after = procstat::mem(pid).rss;
    eprintln!(
        "plugin_imports: {calls} calls in {took:?} ({:.0}/s): {} ok, {} key not provided, {} refused by the grants, \
         {} too large; {} keys at revision {}; {background} calls meanwhile from {BACKGROUND_THREADS} threads; \
         RSS {:.1} MiB -> {:.1} MiB",
        calls as f64 / took.as_secs_f64(),
        kinds[0],
        kinds[1],
        kinds[2],
        kinds[3],
        m.keys.len(),
        m.rev,
        procstat::mib(rss_before as i64),
        procstat::mib(rss_after as i64),
    );

    // The store is what the acknowledged calls made it, and the member is well.
    assert_eq!(Model::read(&s), m, "the store after the run (FUZZ_SEED={seed})");
    assert!(
        rss_after < rss_before + RSS_GROWTH_LIMIT,
        "RSS grew from {rss_before} to {rss_after} bytes (FUZZ_SEED={seed})"
    );
    let health = s.etcdctl(&["endpoint", "health"]);
    assert!(health.success() && health.stderr.contains("is healthy"), "{health:#?}");
    assert_eq!(s.ctl_ok(&["put", "after", "fuzz"]), "OK\n");
    assert_eq!(s.ctl_ok(&["get", "after", "--print-value-only"]), "fuzz\n");
    assert_eq!(
        call(&ep, &Op::Put { key: b"fz/after".to_vec(), value: b"ok".to_vec() }),
        Ok(json!({"revision": m.rev + 2}))
    );
}

#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn calls_without_a_leader_time_out() {
    // `good` may wait past the member's request timeout (5 s + 2 election timeouts); `short` has the
    // default time limit of 1 s, which ends its call first.
    let dir = plugin_dir("[limits]\ntime-ms = 15000\n");
    install(dir.path(), "good", "short");
    std::fs::write(
        dir.path().join("short.toml"),
        format!("routes = [\"/good/short\"]\nhooked-prefixes = []\n{GRANTS}[config]\nname = \"short\"\n"),
    )
    .unwrap();
    let args = plugin_args(dir.path());
    let mut c = Cluster::start(Kind::Modkv, 3, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let ep = c[0].endpoint();
    assert_eq!(call(&ep, &Op::Put { key: b"fz/k".to_vec(), value: b"before".to_vec() }).map(|_| ()), Ok(()));
    c[1].kill9();
    c[2].kill9();

    let range = |serializable| Op::Range { key: b"fz/k".to_vec(), end: vec![], limit: 0, serializable };
    let writes = [
        Op::Put { key: b"fz/k".to_vec(), value: b"lost".to_vec() },
        Op::Delete { key: b"fz/".to_vec(), end: b"fz0".to_vec() },
        range(false),
    ];
    let timed_out = thread::scope(|scope| {
        let waiting: Vec<_> = writes
            .iter()
            .map(|op| {
                let ep = ep.clone();
                scope.spawn(move || {
                    let started = Instant::now();
                    let r = request(&ep, "POST", "/good/kv", &op.encode());
                    (op.show(), started.elapsed(), r.status, r.json())
                })
            })
            .collect();
        // Meanwhile: serializable reads are served, and a call past its time limit ends there.
        let started = Instant::now();
        let r = call(&ep, &range(true)).unwrap();
        assert_eq!(r["kvs"][0]["value"], b64encode(b"before"), "{r}");
        let r = request(&ep, "POST", "/good/short/kv", &writes[0].encode());
        assert_eq!((r.status, r.text().as_str()), (500, "plugin short failed: exceeded its time limit of 1000 ms\n"));
        assert!(started.elapsed() < CALL_LIMIT, "{:?}", started.elapsed());
        waiting.into_iter().map(|t| t.join().unwrap()).collect::<Vec<_>>()
    });
    for (op, took, status, body) in timed_out {
        eprintln!("plugin_imports: without a leader, {op} answered after {took:?}: {body}");
        assert_eq!((status, body), (200, json!({"err": "etcdserver: request timed out"})), "{op} after {took:?}");
        assert!(took < Duration::from_secs(12), "{op}: answered after {took:?}");
    }

    // With its quorum back, the member serves the plugin again; the timed-out put was never acknowledged
    // and may or may not have been applied, the delete likewise: the key holds one of their outcomes.
    c[1].restart();
    c[2].restart();
    c.wait_leader(Duration::from_secs(20));
    let rev = poll(Duration::from_secs(20), "a put through the plugin", || {
        call(&ep, &Op::Put { key: b"fz/after".to_vec(), value: b"ok".to_vec() }).ok()
    });
    let r = call(&ep, &Op::Range { key: b"fz/after".to_vec(), end: vec![], limit: 0, serializable: false }).unwrap();
    assert_eq!((r["count"].clone(), r["kvs"][0]["mod_revision"].clone()), (json!(1), rev["revision"].clone()), "{r}");
    let health = c[0].etcdctl(&["endpoint", "health"]);
    assert!(health.success(), "{health:#?}");
}

//! Hostile requests (issue 10): each probe runs against etcd and modkv and asserts that the member
//! lives, that the keys written before it are intact, that memory per hostile stream stays bounded,
//! and that the answer is etcd's. Figures are printed as `hostile: <probe> <kind>: ...` lines (run with
//! `--nocapture` to see them).
//!
//! * `deep_txn_gateway`, `deep_txn_grpc`: txns nested 1 to 100,000 levels. etcd hands a nested txn the
//!   op budget its parent left (`--max-txn-ops` 128 minus the parent's op count), so a chain of
//!   one-op levels is accepted up to 128 levels (and really applied) and refused beyond.
//! * `huge_nested_txn`: 65,536 puts in nested txns, refused; `/version` answers meanwhile.
//! * `stalled_snapshots`: three Snapshot streams of a ~100 MB store whose client never reads.
//! * `stalled_watch`: watchers of a busy key whose client never reads; the server's CPU once idle.
//! * `gateway_json_bombs`: deep JSON, huge numbers, invalid UTF-8, base64 garbage in gateway bodies.
//! * `lease_extremes`: negative and huge lease TTLs and ids.
//! * `odd_values`: extreme range limits and revisions, compaction points outside the history, compare
//!   enums outside their range and compare values in the wrong field.
//! * `watch_from_extreme_revisions`: watches starting at -5, `i64::MIN`, `i64::MAX`.
//! * `unknown_sort_target_modkv` (modkv only: etcd 3.4 itself panics there).
//!
//! Connection-level probes (header bombs, continuation floods, garbage, idle connections, fd
//! exhaustion) are in `conn_limits.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use modkv_tests::grpc::{self, PutRequest, RangeRequest};
use modkv_tests::h2stall::StalledCall;
use modkv_tests::http::{post, request};
use modkv_tests::procstat::{self, mib};
use modkv_tests::txnwire::{self, nested_put, op_put, op_txn, Compare, TargetUnion, TxnRequest};
use modkv_tests::watch::{self, watch_request::RequestUnion, WatchClient, WatchCreateRequest, WatchRequest};
use modkv_tests::*;
use prost::Message;

/// Patience for one hostile request's answer.
const ANSWER: Duration = Duration::from_secs(30);
const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";

// ---------------------------------------------------------------------------
// Shared checks
// ---------------------------------------------------------------------------

/// Writes `before/1..=3` (revisions 2..=4), the keys every probe must leave intact.
fn seed(s: &Server) {
    for i in 1..=3 {
        assert_eq!(s.ctl_ok(&["put", &format!("before/{i}"), &format!("value-{i}")]), "OK\n");
    }
}

/// The member is still running and serving: the seeded keys are exactly as written, and a new write
/// is acknowledged and read back.
#[track_caller]
fn assert_lives(s: &mut Server, probe: &str) {
    assert!(s.is_running(), "{} exited during {probe}", s.kind);
    let before = kvs(&s.ctl_json(&["get", "before/", "--prefix"]));
    let want: Vec<_> = (1..=3).map(|i| kv(&format!("before/{i}"), &format!("value-{i}"), i + 1, i + 1, 1)).collect();
    assert_eq!(before, want, "{probe}: the keys written before it");
    assert_eq!(s.ctl_ok(&["put", "after", probe]), "OK\n", "{probe}: a write afterwards");
    assert_eq!(s.ctl_ok(&["get", "after", "--print-value-only"]), format!("{probe}\n"));
}

fn pid(s: &Server) -> u32 {
    s.pid().expect("server running")
}

/// The gateway's error body for a gRPC status.
fn gw_error(code: i64, msg: &str) -> Value {
    json!({"error": msg, "message": msg, "code": code})
}

fn rss_growth(s: &Server, base: procstat::Mem) -> String {
    let now = procstat::mem(pid(s));
    format!(
        "rss {:+.1} MB (anon {:+.1} MB)",
        mib(now.rss as i64 - base.rss as i64),
        mib(now.anon as i64 - base.anon as i64)
    )
}

// ---------------------------------------------------------------------------
// Deep nested txns
// ---------------------------------------------------------------------------

/// A gateway txn body `depth` levels deep whose innermost level puts `key` = `value`.
fn nested_txn_json(depth: usize, key: &str, value: &str) -> String {
    let inner = format!(
        r#"{{"success":[{{"request_put":{{"key":"{}","value":"{}"}}}}]}}"#,
        b64encode(key.as_bytes()),
        b64encode(value.as_bytes())
    );
    format!("{}{inner}{}", r#"{"success":[{"request_txn":"#.repeat(depth - 1), "}]}".repeat(depth - 1))
}

/// Checks the gateway's answer to [`nested_txn_json`] exactly: the header at `rev`, then the results
/// nested as deep as the request, the innermost being the put at `rev`. (Compared as text: the nesting
/// is deeper than serde_json parses.)
#[track_caller]
fn assert_nested_answer(text: &str, depth: usize, rev: i64) {
    let (head, rest) = text.split_once(r#","succeeded":"#).unwrap_or_else(|| panic!("not a txn answer: {text:.300}"));
    assert_eq!(parse_json(&format!("{head}}}"))["header"]["revision"], json!(rev.to_string()), "{head}");
    let want = format!(
        r#"true,"responses":[{}{{"response_put":{{"header":{{"revision":"{rev}"}}}}}}{}]}}"#,
        r#"{"response_txn":{"header":{},"succeeded":true,"responses":["#.repeat(depth - 1),
        "]}}".repeat(depth - 1)
    );
    assert!(rest == want, "depth {depth}: answer differs from etcd's: {rest:.400}");
}

/// `key`'s value and mod revision, read over gRPC.
#[track_caller]
fn value_at(s: &Server, key: &str) -> (String, i64) {
    let r = grpc::range(&s.endpoint(), RangeRequest::range(key, "")).expect("range");
    assert_eq!(r.kvs.len(), 1, "{key}: {r:?}");
    (String::from_utf8_lossy(&r.kvs[0].value).into_owned(), r.kvs[0].mod_revision)
}

both_kinds! {
    fn deep_txn_gateway(kind) {
        let mut s = Server::start(kind, ServerOpts::new());
        seed(&s);
        let base = procstat::mem(pid(&s));
        let ep = s.endpoint();
        let mut rev = 4;
        for depth in [1, 2, 50, 128] {
            let value = format!("v{depth}");
            let r = post(&ep, "/v3/kv/txn", &nested_txn_json(depth, "deep", &value));
            assert_eq!(r.status, 200, "depth {depth}: {:.300}", r.text());
            rev += 1;
            assert_nested_answer(&r.text(), depth, rev);
            assert_eq!(value_at(&s, "deep"), (value, rev), "depth {depth}: the innermost put is applied");
        }
        // 128 one-op levels around an empty txn: the 129th level has no budget left but needs none.
        let empty = |n: usize| format!("{}{{}}{}", r#"{"success":[{"request_txn":"#.repeat(n), "}]}".repeat(n));
        let r = post(&ep, "/v3/kv/txn", &empty(128));
        assert_eq!(r.status, 200, "{:.300}", r.text());
        assert_eq!(s.revision(), rev, "a txn without writes");
        let refused = (400, gw_error(3, TOO_MANY_OPS));
        let r = post(&ep, "/v3/kv/txn", &empty(129));
        assert_eq!((r.status, r.json()), refused, "129 one-op levels around an empty txn");
        for depth in [129, 900, 1200] {
            let body = nested_txn_json(depth, "deep", "never");
            let t = Instant::now();
            let r = post(&ep, "/v3/kv/txn", &body);
            eprintln!(
                "hostile: deep-txn-gateway {kind}: depth {depth} ({} KB): {} in {:?}",
                body.len() / 1000,
                r.status,
                t.elapsed()
            );
            assert_eq!((r.status, r.json()), refused, "depth {depth}");
        }
        // Deeper than Go's JSON decoder nests (10,000): its syntax error.
        let r = post(&ep, "/v3/kv/txn", &nested_txn_json(5000, "deep", "never"));
        assert_eq!((r.status, r.json()), (400, gw_error(3, "invalid character '[' exceeded max depth")));
        assert_eq!(value_at(&s, "deep"), ("v128".to_string(), 8));
        eprintln!("hostile: deep-txn-gateway {kind}: {}", rss_growth(&s, base));
        assert_lives(&mut s, "deep-txn-gateway");
    }

    fn deep_txn_grpc(kind) {
        let mut s = Server::start(kind, ServerOpts::new());
        seed(&s);
        let base = procstat::mem(pid(&s));
        let ep = s.endpoint();
        let mut rev = 4;
        for depth in [1, 50, 128] {
            let value = format!("v{depth}");
            let r = txnwire::txn(&ep, nested_put(depth, b"deep", value.as_bytes()), ANSWER)
                .unwrap_or_else(|e| panic!("depth {depth}: {e:?}"));
            rev += 1;
            assert!(r.succeeded, "depth {depth}");
            assert_eq!(r.header.as_ref().map(|h| h.revision), Some(rev));
            let (levels, innermost) = r.depth();
            assert_eq!(levels, depth, "the results are nested as deep as the request");
            let put = grpc::PutResponse::decode(innermost.response_put.expect("a put result").as_slice()).unwrap();
            assert_eq!(put.header.map(|h| h.revision), Some(rev));
            assert_eq!(value_at(&s, "deep"), (value, rev), "depth {depth}: the innermost put is applied");
        }
        for depth in [129, 1200, 100_000] {
            let t = Instant::now();
            let r = txnwire::txn(&ep, nested_put(depth, b"deep", b"never"), ANSWER);
            let shown = r.as_ref().map(|r| r.succeeded).map_err(|e| (&e.0, e.1.chars().take(80).collect::<String>()));
            eprintln!("hostile: deep-txn-grpc {kind}: depth {depth}: {shown:?} in {:?}", t.elapsed());
            assert_eq!(r, Err(("InvalidArgument".to_string(), TOO_MANY_OPS.to_string())), "depth {depth}");
        }
        assert_eq!(value_at(&s, "deep"), ("v128".to_string(), 7));
        eprintln!("hostile: deep-txn-grpc {kind}: {}", rss_growth(&s, base));
        assert_lives(&mut s, "deep-txn-grpc");
    }
}

// ---------------------------------------------------------------------------
// 65,536 puts in one txn
// ---------------------------------------------------------------------------

/// Polls `GET /version` every 20 ms until stopped; returns each call's latency.
struct VersionPoller {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Vec<Duration>>,
}

impl VersionPoller {
    fn start(endpoint: String) -> VersionPoller {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut took = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = request(&endpoint, "GET", "/version", b"");
                took.push(t.elapsed());
                assert_eq!((r.status, r.json()), (200, json!({"etcdserver": "3.4.23", "etcdcluster": "3.4.0"})));
                thread::sleep(Duration::from_millis(20));
            }
            took
        });
        VersionPoller { stop, handle }
    }

    /// `(calls, slowest)`.
    fn finish(self) -> (usize, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let took = self.handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        (took.len(), took.iter().copied().max().unwrap_or_default())
    }
}

/// 65,536 distinct puts: 4 txns of 128 txns of 128 puts each (every level within `--max-txn-ops` on
/// its own), or all in one level.
fn puts_65536(nested: bool) -> TxnRequest {
    let key = |n: usize| format!("h{n:05}").into_bytes();
    if !nested {
        return TxnRequest { success: (0..65_536).map(|n| op_put(&key(n), b"v")).collect(), ..Default::default() };
    }
    let mut top = Vec::new();
    for i in 0..4 {
        let mut mid = Vec::new();
        for j in 0..128 {
            let puts = (0..128).map(|k| op_put(&key((i * 128 + j) * 128 + k), b"v")).collect();
            mid.push(op_txn(&TxnRequest { success: puts, ..Default::default() }));
        }
        top.push(op_txn(&TxnRequest { success: mid, ..Default::default() }));
    }
    TxnRequest { success: top, ..Default::default() }
}

both_kinds! {
    fn huge_nested_txn(kind) {
        let mut s = Server::start(kind, ServerOpts::new());
        seed(&s);
        let base = procstat::mem(pid(&s));
        let ep = s.endpoint();
        for (what, nested) in [("nested", true), ("flat", false)] {
            let txn = puts_65536(nested);
            let bytes = txn.encoded_len();
            let poller = VersionPoller::start(ep.clone());
            thread::sleep(Duration::from_millis(100));
            let t = Instant::now();
            let r = txnwire::txn(&ep, txn, ANSWER);
            let took = t.elapsed();
            thread::sleep(Duration::from_millis(100));
            let (calls, slowest) = poller.finish();
            eprintln!(
                "hostile: txn-65536-puts {kind}: {what} ({} KB): {:?} in {took:?}; /version slowest {slowest:?} of \
                 {calls} calls meanwhile; {}",
                bytes / 1000,
                r.as_ref().map(|r| r.succeeded),
                rss_growth(&s, base)
            );
            let refused = Err(("InvalidArgument".to_string(), TOO_MANY_OPS.to_string()));
            assert_eq!(r.map(|r| r.succeeded), refused, "{what}");
            assert!(slowest < Duration::from_secs(3), "/version took {slowest:?} while a {what} txn was refused");
        }
        let count = grpc::range(&ep, RangeRequest { count_only: true, ..RangeRequest::range("h", "i") }).unwrap().count;
        assert_eq!((count, s.revision()), (0, 4), "nothing of the refused txns is written");
        assert_lives(&mut s, "txn-65536-puts");
    }
}

// ---------------------------------------------------------------------------
// Stalled streams
// ---------------------------------------------------------------------------

/// `n` incompressible bytes (xorshift), different for each `seed`.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// How many 1 MiB values the snapshot probe stores.
const SNAPSHOT_VALUES: usize = 96;
/// Generous bound on what one stalled stream may cost the server (etcd: well under 1 MB; a stream
/// should hold O(one chunk) plus HTTP/2 buffers, not the snapshot).
const PER_STREAM_BOUND: u64 = 24 << 20;

both_kinds! {
    fn stalled_snapshots(kind) {
        let mut s = Server::start(kind, ServerOpts::new());
        seed(&s);
        let ep = s.endpoint();
        let t = Instant::now();
        let mut c = grpc::Client::connect(&ep).expect("connect");
        for i in 0..SNAPSHOT_VALUES {
            let key = format!("big/{i:03}").into_bytes();
            let put = PutRequest { key, value: noise(i as u64, 1 << 20), ..Default::default() };
            c.put(put).unwrap_or_else(|e| panic!("put big/{i:03}: {e:?}"));
        }
        drop(c);
        let loaded = t.elapsed();
        let pid = pid(&s);
        let base = procstat::settled_rss(pid, Duration::from_secs(1));
        let anon = procstat::mem(pid).anon;
        let stalled: Vec<StalledCall> = (0..3)
            .map(|_| StalledCall::start(s.client_port, "/etcdserverpb.Maintenance/Snapshot", &[Vec::new()], true))
            .collect();
        let peak = procstat::settled_rss(pid, Duration::from_secs(4));
        let grown = peak.saturating_sub(base);
        eprintln!(
            "hostile: stalled-snapshot {kind}: {SNAPSHOT_VALUES} MiB stored in {loaded:?}; rss {:.1} -> {:.1} MB \
             (anon {:+.1} MB) with 3 stalled Snapshot streams: {:.1} MB per stream",
            mib(base as i64),
            mib(peak as i64),
            mib(procstat::mem(pid).anon as i64 - anon as i64),
            mib(grown as i64) / 3.0
        );
        assert!(grown / 3 < PER_STREAM_BOUND, "a stalled snapshot stream costs {:.1} MB", mib(grown as i64) / 3.0);

        // With the stalled streams still open, a client that reads gets the whole snapshot.
        let file = s.tmp_dir().join("snap.db");
        let t = Instant::now();
        let out = s.etcdctl(&["snapshot", "save", file.to_str().unwrap()]);
        assert!(out.ok().contains("Snapshot saved at"), "{out:?}");
        let size = std::fs::metadata(&file).unwrap().len();
        let (saved, took) = (mib(size as i64), t.elapsed());
        eprintln!("hostile: stalled-snapshot {kind}: a reading client saved {saved:.1} MB in {took:?}");
        assert!(size > (SNAPSHOT_VALUES as u64) << 20, "snapshot of {size} bytes");
        let r = grpc::range(&ep, RangeRequest::range("big/042", "")).unwrap();
        assert_eq!(r.kvs[0].value, noise(42, 1 << 20), "big/042 intact");
        drop(stalled);
        assert_lives(&mut s, "stalled-snapshot");
    }
}

/// Puts on the busy key while its watchers stall.
const BUSY_PUTS: usize = 3000;
/// Generous bound on the CPU a server may spend, idle, on watchers that do not read.
const IDLE_CPU_BOUND: f64 = 0.30;

both_kinds! {
    fn stalled_watch(kind) {
        let mut s = Server::start(kind, ServerOpts::new());
        seed(&s);
        let ep = s.endpoint();
        let pid = pid(&s);
        let idle_before = procstat::cpu_share(pid, Duration::from_secs(1));
        let create = WatchRequest { request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest::key("busy"))) };
        let stalled: Vec<StalledCall> = (0..3)
            .map(|_| StalledCall::start(s.client_port, "/etcdserverpb.Watch/Watch", &[create.encode_to_vec()], false))
            .collect();
        thread::sleep(Duration::from_millis(300));
        let base = procstat::mem(pid);
        let value = "x".repeat(1024);
        let pairs: Vec<(String, String)> = (0..BUSY_PUTS).map(|_| ("busy".to_string(), value.clone())).collect();
        let t = Instant::now();
        let revs = watch::put_many(&ep, &pairs, 4);
        let wrote = t.elapsed();
        assert_eq!(revs.iter().max(), Some(&(4 + BUSY_PUTS as i64)));
        thread::sleep(Duration::from_millis(500));
        let idle = procstat::cpu_share(pid, Duration::from_secs(3));
        eprintln!(
            "hostile: stalled-watch {kind}: {BUSY_PUTS} puts of 1 KiB in {wrote:?} to 3 stalled watchers; idle cpu \
             {:.1}% of a core (before the watchers: {:.1}%); {}",
            idle * 100.0,
            idle_before * 100.0,
            rss_growth(&s, base)
        );
        assert!(idle < IDLE_CPU_BOUND, "idle with stalled watchers, the server uses {:.0}% of a core", idle * 100.0);

        // A watcher that reads is not held up by the stalled ones.
        let mut w = WatchClient::connect(&ep);
        w.create(WatchCreateRequest::key("busy"));
        let rev = 4 + BUSY_PUTS as i64;
        assert_eq!(w.next_summary(), format!("id=0 rev={rev} created"));
        assert_eq!(watch::put(&ep, "busy", "last"), rev + 1);
        assert_eq!(w.next_summary(), format!("id=0 rev={} PUT busy=last@{}", rev + 1, rev + 1));
        drop(stalled);
        thread::sleep(Duration::from_millis(300));
        let after = procstat::cpu_share(pid, Duration::from_secs(1));
        eprintln!("hostile: stalled-watch {kind}: cpu {:.1}% once the stalled clients are gone", after * 100.0);
        assert_lives(&mut s, "stalled-watch");
    }
}

// ---------------------------------------------------------------------------
// Gateway JSON bombs
// ---------------------------------------------------------------------------

/// What etcd's gateway answers to a body.
enum Want {
    /// An error status and body (`code`, message).
    Error(u16, i64, String),
    /// 200 with exactly these keys in `kvs`.
    Keys(&'static [&'static str]),
}

fn err(status: u16, code: i64, msg: &str) -> Want {
    Want::Error(status, code, msg.to_string())
}

fn bombs() -> Vec<(&'static str, &'static str, Vec<u8>, Want)> {
    let cat = |parts: &[&[u8]]| parts.concat();
    let deep = |open: &str, n: usize| open.repeat(n).into_bytes();
    let nines = "9".repeat(100_000);
    let range = "/v3/kv/range";
    vec![
        ("100k [", range, deep("[", 100_000), err(400, 3, "invalid character '[' exceeded max depth")),
        ("10k [", range, deep("[", 10_000), err(400, 3, "unexpected EOF")),
        (
            "10k [] closed",
            range,
            cat(&[&deep("[", 10_000), &deep("]", 10_000)]),
            err(400, 3, "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"),
        ),
        ("100k {\"a\":", range, deep(r#"{"a":"#, 100_000), err(400, 3, "invalid character '{' exceeded max depth")),
        (
            "key: 20k [",
            range,
            cat(&[br#"{"key":"#, &deep("[", 20_000)]),
            err(400, 3, "invalid character '[' exceeded max depth"),
        ),
        (
            "key: [[[]]]",
            range,
            br#"{"key":[[[]]]}"#.to_vec(),
            err(400, 3, "json: cannot unmarshal array into Go value of type uint8"),
        ),
        (
            "unknown field 9k [] deep",
            range,
            cat(&[br#"{"foo":"#, &deep("[", 9000), &deep("]", 9000), br#","key":"YQ=="}"#]),
            Want::Keys(&["a"]),
        ),
        (
            "unknown field 5k {} deep",
            range,
            cat(&[br#"{"foo":"#, &deep(r#"{"a":"#, 5000), b"1", &deep("}", 5000), br#","key":"YQ=="}"#]),
            Want::Keys(&["a"]),
        ),
        (
            "limit 1e999",
            range,
            br#"{"key":"YQ==","limit":1e999}"#.to_vec(),
            err(400, 3, "json: cannot unmarshal number 1e999 into Go value of type int64"),
        ),
        (
            "limit 20 digits",
            range,
            br#"{"key":"YQ==","limit":99999999999999999999}"#.to_vec(),
            err(400, 3, "json: cannot unmarshal number 99999999999999999999 into Go value of type int64"),
        ),
        (
            "limit \"20 digits\"",
            range,
            br#"{"key":"YQ==","limit":"99999999999999999999"}"#.to_vec(),
            err(400, 3, "json: cannot unmarshal number 99999999999999999999 into Go value of type int64"),
        ),
        (
            "limit 100k digits",
            range,
            format!(r#"{{"key":"YQ==","limit":{nines}}}"#).into_bytes(),
            err(400, 3, &format!("json: cannot unmarshal number {nines} into Go value of type int64")),
        ),
        (
            "unknown field 100k digits",
            range,
            format!(r#"{{"key":"YQ==","zzz":{nines}}}"#).into_bytes(),
            Want::Keys(&["a"]),
        ),
        (
            "key invalid UTF-8",
            range,
            b"{\"key\":\"\xff\xfe\"}".to_vec(),
            err(400, 3, "illegal base64 data at input byte 0"),
        ),
        ("field name invalid UTF-8", range, b"{\"\xff\":\"YQ==\",\"key\":\"YQ==\"}".to_vec(), Want::Keys(&["a"])),
        (
            "body invalid UTF-8",
            range,
            b"\xff\xfe".to_vec(),
            err(400, 3, "invalid character '\u{ff}' looking for beginning of value"),
        ),
        (
            "key NUL in string",
            range,
            b"{\"key\":\"YQ==\x00\"}".to_vec(),
            err(400, 3, r"invalid character '\x00' in string literal"),
        ),
        (
            "key lone surrogate",
            range,
            br#"{"key":"\ud800"}"#.to_vec(),
            err(400, 3, "illegal base64 data at input byte 0"),
        ),
        ("key base64 !!!!", range, br#"{"key":"!!!!"}"#.to_vec(), err(400, 3, "illegal base64 data at input byte 0")),
        (
            "key base64 garbage at 1000",
            range,
            format!(r#"{{"key":"{}!"}}"#, "A".repeat(1000)).into_bytes(),
            err(400, 3, "illegal base64 data at input byte 1000"),
        ),
        ("key base64 unpadded", range, br#"{"key":"YQ"}"#.to_vec(), err(400, 3, "illegal base64 data at input byte 0")),
        (
            "key base64 url alphabet",
            range,
            br#"{"key":"-_-_"}"#.to_vec(),
            err(400, 3, "illegal base64 data at input byte 0"),
        ),
        ("key given twice", range, br#"{"key":"YQ==","key":"Yg=="}"#.to_vec(), Want::Keys(&["b"])),
        ("trailing garbage", range, br#"{"key":"YQ=="} garbage"#.to_vec(), Want::Keys(&["a"])),
        ("two values", range, br#"{"key":"YQ=="}{"key":"Yg=="}"#.to_vec(), Want::Keys(&["a"])),
        ("key of 900 KB", range, format!(r#"{{"key":"{}"}}"#, "QUFB".repeat(300_000)).into_bytes(), Want::Keys(&[])),
        ("txn 100k [", "/v3/kv/txn", deep("[", 100_000), err(400, 3, "invalid character '[' exceeded max depth")),
        (
            "put value base64 garbage",
            "/v3/kv/put",
            br#"{"key":"YQ==","value":"!"}"#.to_vec(),
            err(400, 3, "illegal base64 data at input byte 0"),
        ),
        (
            "lease grant 100k {",
            "/v3/lease/grant",
            deep(r#"{"TTL":"#, 100_000),
            err(400, 3, "invalid character '{' exceeded max depth"),
        ),
    ]
}

both_kinds! {
    fn gateway_json_bombs(kind) {
        let mut s = Server::start(kind, ServerOpts::new());
        seed(&s);
        s.ctl_ok(&["put", "a", "1"]);
        s.ctl_ok(&["put", "b", "2"]);
        let base = procstat::mem(pid(&s));
        let mut slowest = (Duration::ZERO, "");
        for (name, path, body, want) in bombs() {
            let t = Instant::now();
            let r = request(&s.endpoint(), "POST", path, &body);
            slowest = slowest.max((t.elapsed(), name));
            match want {
                Want::Error(status, code, msg) => {
                    assert_eq!((r.status, r.json()), (status, gw_error(code, &msg)), "{name}");
                }
                Want::Keys(keys) => {
                    assert_eq!(r.status, 200, "{name}: {:.300}", r.text());
                    let got: Vec<String> = kvs(&r.json()).into_iter().map(|kv| kv.0).collect();
                    assert_eq!(got, keys, "{name}");
                }
            }
        }
        let rss = rss_growth(&s, base);
        eprintln!("hostile: json-bombs {kind}: slowest answer {:?} ({}); {rss}", slowest.0, slowest.1);
        assert_lives(&mut s, "json-bombs");
    }
}

// ---------------------------------------------------------------------------
// Lease extremes
// ---------------------------------------------------------------------------

/// etcd's largest lease TTL (`MaxLeaseTTL`, 9,000,000,000 s).
const MAX_TTL: i64 = 9_000_000_000;

both_kinds! {
    fn lease_extremes(kind) {
        let mut s = Server::start(kind, ServerOpts::new());
        seed(&s);
        let ep = s.endpoint();
        // A negative TTL is raised to the minimum (1.5 election timeouts, rounded up: 2 s here).
        let out = s.ctl_ok(&["lease", "grant", "--", "-1"]);
        let short = out.split(' ').nth(1).unwrap_or_default().to_string();
        assert_eq!(out, format!("lease {short} granted with TTL(2s)\n"));
        assert_eq!(s.ctl_ok(&["put", "short-lived", "x", "--lease", &short]), "OK\n");
        let granted = |body: &str| {
            let r = post(&ep, "/v3/lease/grant", body);
            assert_eq!(r.status, 200, "{body}: {}", r.text());
            let v = r.json();
            (v["ID"].clone(), v["TTL"].clone())
        };
        assert_eq!(granted(r#"{"TTL":"-5","ID":"77"}"#), (json!("77"), json!("2")));
        assert_eq!(granted(&format!(r#"{{"TTL":"{MAX_TTL}","ID":"79"}}"#)), (json!("79"), json!(MAX_TTL.to_string())));
        let too_large = (400, gw_error(11, "etcdserver: too large lease TTL"));
        for ttl in [MAX_TTL + 1, i64::MAX] {
            let r = post(&ep, "/v3/lease/grant", &format!(r#"{{"TTL":"{ttl}","ID":"80"}}"#));
            assert_eq!((r.status, r.json()), too_large, "TTL {ttl}");
        }
        let out = s.etcdctl(&["lease", "grant", &i64::MAX.to_string()]);
        let want = vec!["Error: failed to grant lease (etcdserver: too large lease TTL)".to_string()];
        assert_eq!((out.status, out.error_lines()), (1, want), "{out:?}");
        // Negative and extreme ids are ids like any other.
        for id in [-1, i64::MIN, i64::MAX] {
            assert_eq!(granted(&format!(r#"{{"TTL":"600","ID":"{id}"}}"#)), (json!(id.to_string()), json!("600")));
        }
        let put = format!(r#"{{"key":"{}","value":"{}","lease":"-1"}}"#, b64encode(b"leased"), b64encode(b"v"));
        let r = post(&ep, "/v3/kv/put", &put);
        assert_eq!(r.status, 200, "{}", r.text());
        let leases = |s: &Server| {
            let list = post(&s.endpoint(), "/v3/lease/leases", "{}").json();
            let mut ids: Vec<String> =
                list["leases"].as_array().unwrap().iter().map(|l| l["ID"].as_str().unwrap().to_string()).collect();
            ids.sort();
            ids
        };
        let mut want: Vec<String> =
            ["-1", "-9223372036854775808", "77", "79", "9223372036854775807"].iter().map(|s| s.to_string()).collect();
        want.push(watch::lease_num(&short).to_string());
        want.sort();
        assert_eq!(leases(&s), want);
        // The 2 s lease ends and takes its key along.
        let deadline = Instant::now() + Duration::from_secs(15);
        while !s.ctl_ok(&["get", "short-lived"]).is_empty() {
            assert!(Instant::now() < deadline, "the key of a 2 s lease is still there after 15 s");
            thread::sleep(Duration::from_millis(200));
        }
        want.retain(|id| *id != watch::lease_num(&short).to_string());
        want.retain(|id| id != "77"); // also a 2 s lease
        let deadline = Instant::now() + Duration::from_secs(10);
        while leases(&s) != want {
            assert!(Instant::now() < deadline, "expired leases still listed: {:?}", leases(&s));
            thread::sleep(Duration::from_millis(200));
        }
        // They survive a restart, and the negative one still holds its key until revoked.
        s.restart();
        assert_eq!(leases(&s), want);
        let ttl = post(&ep, "/v3/lease/timetolive", r#"{"ID":"-1","keys":true}"#).json();
        assert_eq!(
            (ttl["ID"].clone(), ttl["grantedTTL"].clone(), ttl["keys"].clone()),
            (json!("-1"), json!("600"), json!([b64encode(b"leased")]))
        );
        let r = post(&ep, "/v3/lease/revoke", r#"{"ID":"-1"}"#);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(s.ctl_ok(&["get", "leased"]), "");
        assert_lives(&mut s, "lease-extremes");
    }
}

// ---------------------------------------------------------------------------
// Odd values
// ---------------------------------------------------------------------------

const FUTURE: &str = "etcdserver: mvcc: required revision is a future revision";
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

/// A txn whose compare is `c` on `before/1`: on success puts `cmp` = `then`, else `cmp` = `else`.
fn compare_txn(c: Compare) -> TxnRequest {
    TxnRequest { compare: vec![c], success: vec![op_put(b"cmp", b"then")], failure: vec![op_put(b"cmp", b"else")] }
}

both_kinds! {
    fn odd_values(kind) {
        let mut s = Server::start(kind, ServerOpts::new());
        seed(&s);
        let ep = s.endpoint();
        let all = |limit: i64, revision: i64| {
            grpc::range(&ep, RangeRequest { limit, revision, ..RangeRequest::range("before/", "before0") })
                .map(|r| (r.keys(), r.more, r.count))
        };
        let three = Ok((vec!["before/1".to_string(), "before/2".to_string(), "before/3".to_string()], false, 3));
        for limit in [i64::MAX, -5, i64::MIN] {
            assert_eq!(all(limit, 0), three, "limit {limit}");
        }
        for revision in [-1, i64::MIN] {
            assert_eq!(all(0, revision), three, "revision {revision}");
        }
        assert_eq!(all(0, i64::MAX), Err(("OutOfRange".to_string(), FUTURE.to_string())));

        // Compaction points outside the history.
        let compact = |rev: i64| {
            let r = post(&ep, "/v3/kv/compaction", &format!(r#"{{"revision":"{rev}"}}"#));
            (r.status, if r.status == 200 { json!("ok") } else { r.json() })
        };
        assert_eq!(compact(i64::MAX), (400, gw_error(11, FUTURE)));
        assert_eq!(compact(-5), (400, gw_error(11, COMPACTED)));
        assert_eq!(compact(i64::MIN), (400, gw_error(11, COMPACTED)));

        // Compare enums outside their range, and a target whose value is in another field.
        let c = |result: i32, target: i32, target_union: Option<TargetUnion>| Compare {
            result,
            target,
            key: b"before/1".to_vec(),
            target_union,
            range_end: vec![],
        };
        let cases = [
            ("target 99", c(0, 99, None)),
            ("target -1", c(0, -1, Some(TargetUnion::Version(1)))),
            ("result 99", c(99, 0, Some(TargetUnion::Version(5)))),
            ("result -3", c(-3, 0, Some(TargetUnion::Version(5)))),
            ("VALUE compared to a mod_revision", c(0, 3, Some(TargetUnion::ModRevision(2)))),
            ("MOD compared to a value", c(0, 2, Some(TargetUnion::Value(b"value-1".to_vec())))),
        ];
        let mut got = Vec::new();
        for (name, cmp) in cases {
            let r = txnwire::txn(&ep, compare_txn(cmp), ANSWER).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            got.push((name, r.succeeded));
        }
        eprintln!("hostile: odd-values {kind}: compares outside the enums: {got:?}");
        assert_eq!(
            got,
            vec![
                ("target 99", true),
                ("target -1", true),
                ("result 99", true),
                ("result -3", true),
                ("VALUE compared to a mod_revision", false),
                ("MOD compared to a value", false),
            ]
        );
        // Each txn put `cmp` once.
        assert_eq!(value_at(&s, "cmp").1, 10);
        assert_lives(&mut s, "odd-values");
    }
}

both_kinds! {
    fn watch_from_extreme_revisions(kind) {
        let mut s = Server::start(kind, ServerOpts::new());
        seed(&s);
        let ep = s.endpoint();
        // Watches starting before the first revision or far beyond the current one.
        let mut w = WatchClient::connect(&ep);
        let mut seen = Vec::new();
        for rev in [-5, i64::MAX, i64::MIN] {
            w.create(WatchCreateRequest::key("before/1").rev(rev));
            while let Ok(Some(m)) = w.try_recv(Duration::from_millis(300)) {
                seen.push(m.summary());
            }
        }
        eprintln!("hostile: watch-extreme-revisions {kind}: watches from -5, i64::MAX, i64::MIN: {seen:?}");
        // etcd cancels a watch from before the first revision as compacted (at -1: nothing is yet).
        let want = [
            "id=0 rev=4 created",
            "id=0 rev=0 canceled compact=-1",
            "id=1 rev=4 created",
            "id=2 rev=4 created",
            "id=2 rev=0 canceled compact=-1",
        ];
        assert_eq!(seen, want);
        assert_lives(&mut s, "watch-extreme-revisions");
        w.assert_quiet(Duration::from_millis(100));
    }
}

/// A sort target outside the enum, on a range that finds keys: etcd 3.4.23 itself dies here (its
/// `applierV3backend.Range` sorts with a nil sorter: a nil-pointer panic takes the member down), so
/// there is no etcd answer to match; etcd 3.5 refuses such a request with `etcdserver: invalid sort
/// option`. modkv must answer, one way or the other, and live.
#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn unknown_sort_target_modkv() {
    let mut s = Server::start(Kind::Modkv, ServerOpts::new());
    seed(&s);
    for (order, target) in [(0, 77), (1, -4), (2, -4), (99, 99)] {
        let req = RangeRequest { sort_order: order, sort_target: target, ..RangeRequest::range("before/", "before0") };
        let r = grpc::range(&s.endpoint(), req).map(|r| r.keys());
        eprintln!("hostile: unknown-sort-target modkv: order {order} target {target}: {r:?}");
        let refused = Err(("InvalidArgument".to_string(), "etcdserver: invalid sort option".to_string()));
        assert!(r.as_ref().is_ok_and(|keys| keys.len() == 3) || r == refused, "order {order} target {target}: {r:?}");
    }
    assert_lives(&mut s, "unknown-sort-target");
}

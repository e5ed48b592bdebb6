//! Fuzz targets for the places where bytes from outside enter modkv:
//!
//! ```text
//!   gateway_json     HTTP body ─▶ api::gateway::decode_body / decode_stream_body (Go's JSON decoding)
//!   grpc_validators  gRPC body ─▶ prost decode ─▶ server::validate::{range,put,delete,txn}
//!   mvcc_encodings   Revision to/from bytes, mvccpb.KeyValue, storage::snapshot::decode; KeyIndex vs a model
//!   raft_entries     raft log entry ─▶ InternalRaftRequest / eraftpb Entry, ConfChange(V2), HardState …
//!   peer_messages    peer port ─▶ MessageBatch ─▶ eraftpb::Message
//!   backup_reader    snapshot file ─▶ backup::status / backup::restore (random, and valid files mutated)
//!   plugin_host      pre-put and handle-http exports of the example plugins with arbitrary requests, and
//!                    the config import answering arbitrary values (needs MODKV_PLUGIN_DIR; else skipped)
//! ```
//!
//! Each target takes raw bytes; the JSON, txn and plugin targets also build structured inputs from them,
//! so that random bytes get past the first parser. [`fuzz`] runs a target on every input of its corpus
//! (`tests/fuzz/<target>/`), then on random inputs, new ones and corpus inputs mutated, for `FUZZ_MS`
//! milliseconds (1000 by default; `make test` and `make fuzz` set it) from seed `FUZZ_SEED` (else the
//! clock's, printed). A panic or a violated property fails the target: the input is saved under the
//! target dir and named in the failure, and becomes a regression test at the end of this file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prost::Message as _;
use protobuf::Message as _;
use sha2::{Digest, Sha256};

use modkv::api::gateway::{decode_body, decode_stream_body};
use modkv::mvcc::{KeyIndex, Revision};
use modkv::proto::etcdserverpb as pb;
use modkv::proto::modkvpb::{InternalRaftRequest, MessageBatch};
use modkv::server::validate;

/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;

/// Reads choices from the fuzzer's bytes (zeros once they run out, so every input ends).
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn below(&mut self, n: usize) -> usize {
        self.byte() as usize % n
    }

    fn pick<'b, T>(&mut self, items: &'b [T]) -> &'b T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1).min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------------
// gateway_json

/// The request messages the gateway decodes, by full name.
const GATEWAY_INPUTS: &[&str] = &[
    ".etcdserverpb.RangeRequest",
    ".etcdserverpb.PutRequest",
    ".etcdserverpb.DeleteRangeRequest",
    ".etcdserverpb.TxnRequest",
    ".etcdserverpb.CompactionRequest",
    ".etcdserverpb.LeaseGrantRequest",
    ".etcdserverpb.LeaseTimeToLiveRequest",
    ".etcdserverpb.MemberAddRequest",
    ".etcdserverpb.AlarmRequest",
    ".etcdserverpb.WatchRequest",
    ".etcdserverpb.LeaseKeepAliveRequest",
    ".v3lockpb.LockRequest",
    ".v3electionpb.CampaignRequest",
];

/// Field names of those messages (proto and JSON spellings) and a few that are not.
const FIELDS: &[&str] = &[
    "key",
    "range_end",
    "rangeEnd",
    "value",
    "lease",
    "prev_kv",
    "prevKv",
    "ignore_value",
    "ignore_lease",
    "limit",
    "revision",
    "sort_order",
    "sort_target",
    "serializable",
    "keys_only",
    "count_only",
    "min_mod_revision",
    "max_create_revision",
    "compare",
    "success",
    "failure",
    "result",
    "target",
    "create_revision",
    "mod_revision",
    "version",
    "request_range",
    "request_put",
    "request_delete_range",
    "request_txn",
    "requestTxn",
    "physical",
    "TTL",
    "ID",
    "keys",
    "create_request",
    "cancel_request",
    "progress_request",
    "start_revision",
    "watch_id",
    "filters",
    "fragment",
    "name",
    "peerURLs",
    "isLearner",
    "alarm",
    "action",
    "memberID",
    "nope",
    "",
];

const SCALARS: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1",
    "1.5",
    "-0",
    "1e400",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "\"123\"",
    "\"-5\"",
    "\"\"",
    "\"YQ==\"",
    "\"AA\"",
    "\"a\"",
    "\"EQUAL\"",
    "\"GREATER\"",
    "\"MOD\"",
    "\"VALUE\"",
    "\"LEASE\"",
    "\"NOSPACE\"",
    "\"GET\"",
    "\"ACTIVATE\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\\"\"",
    "\"é\"",
    "\"\\/\"",
];

/// A JSON-ish text built from choices: mostly valid JSON over the gateway's field names, sometimes not.
fn json_value(c: &mut Choices, out: &mut Vec<u8>) {
    match c.below(12) {
        0..=3 => out.extend_from_slice(c.pick(SCALARS).as_bytes()),
        4..=6 => {
            out.push(b'{');
            for i in 0..c.below(5) {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(format!("{:?}:", c.pick(FIELDS)).as_bytes());
                json_value(c, out);
            }
            out.push(b'}');
        }
        7..=9 => {
            out.push(b'[');
            for i in 0..c.below(4) {
                if i > 0 {
                    out.push(b',');
                }
                json_value(c, out);
            }
            out.push(b']');
        }
        10 => {
            let s: String = c.bytes(12).iter().map(|&b| (b % 96 + 32) as char).collect();
            out.extend_from_slice(format!("{s:?}").as_bytes());
        }
        _ => out.extend_from_slice(&c.bytes(4)),
    }
}

/// Decodes `body` as the gateway decodes a request of `input`; a decoded request encodes to JSON again.
fn gateway_decode(input: &str, body: &[u8]) {
    fn one<Req: prost::Message + serde::de::DeserializeOwned + serde::Serialize>(input: &str, body: &[u8]) {
        if let Ok(req) = decode_body::<Req>(input, body) {
            modkv::api::gateway::json::to_go_json(&req).expect("a decoded request encodes as JSON");
        }
    }
    match input {
        ".etcdserverpb.RangeRequest" => one::<pb::RangeRequest>(input, body),
        ".etcdserverpb.PutRequest" => one::<pb::PutRequest>(input, body),
        ".etcdserverpb.DeleteRangeRequest" => one::<pb::DeleteRangeRequest>(input, body),
        ".etcdserverpb.TxnRequest" => one::<pb::TxnRequest>(input, body),
        ".etcdserverpb.CompactionRequest" => one::<pb::CompactionRequest>(input, body),
        ".etcdserverpb.LeaseGrantRequest" => one::<pb::LeaseGrantRequest>(input, body),
        ".etcdserverpb.LeaseTimeToLiveRequest" => one::<pb::LeaseTimeToLiveRequest>(input, body),
        ".etcdserverpb.MemberAddRequest" => one::<pb::MemberAddRequest>(input, body),
        ".etcdserverpb.AlarmRequest" => one::<pb::AlarmRequest>(input, body),
        ".etcdserverpb.WatchRequest" => {
            let _ = decode_stream_body::<pb::WatchRequest>(input, body);
        }
        ".etcdserverpb.LeaseKeepAliveRequest" => {
            let _ = decode_stream_body::<pb::LeaseKeepAliveRequest>(input, body);
        }
        ".v3lockpb.LockRequest" => one::<modkv::proto::v3lockpb::LockRequest>(input, body),
        ".v3electionpb.CampaignRequest" => one::<modkv::proto::v3electionpb::CampaignRequest>(input, body),
        other => unreachable!("{other}"),
    }
}

fn gateway_json_input(data: &[u8]) {
    let mut c = Choices(data);
    let input = *c.pick(GATEWAY_INPUTS);
    if c.byte() & 1 == 0 {
        gateway_decode(input, c.0);
    } else {
        let mut body = Vec::new();
        while !c.is_empty() && body.len() < 64 * 1024 {
            json_value(&mut c, &mut body);
        }
        gateway_decode(input, &body);
    }
}

#[test]
fn gateway_json() {
    fuzz("gateway_json", gateway_json_input);
}

// ---------------------------------------------------------------------------------------------------
// grpc_validators

/// Keys from a small alphabet, so that ranges overlap and keys repeat.
fn key(c: &mut Choices) -> Vec<u8> {
    match c.below(6) {
        0 => Vec::new(),
        1 => vec![0],
        _ => vec![b'a' + c.below(4) as u8; 1 + c.below(2)],
    }
}

fn range_end(c: &mut Choices) -> Vec<u8> {
    match c.below(4) {
        0 | 1 => Vec::new(),
        2 => vec![0],
        _ => key(c),
    }
}

fn request_op(c: &mut Choices, depth: usize) -> pb::RequestOp {
    use pb::request_op::Request;
    let request = match c.below(if depth < 64 { 5 } else { 4 }) {
        0 => None,
        1 => {
            Some(Request::RequestRange(pb::RangeRequest { key: key(c), range_end: range_end(c), ..Default::default() }))
        }
        2 => Some(Request::RequestPut(pb::PutRequest {
            key: key(c),
            value: c.bytes(2),
            lease: c.below(2) as i64,
            ignore_value: c.below(4) == 0,
            ignore_lease: c.below(4) == 0,
            ..Default::default()
        })),
        3 => Some(Request::RequestDeleteRange(pb::DeleteRangeRequest {
            key: key(c),
            range_end: range_end(c),
            ..Default::default()
        })),
        _ => Some(Request::RequestTxn(txn(c, depth + 1))),
    };
    pb::RequestOp { request }
}

fn txn(c: &mut Choices, depth: usize) -> pb::TxnRequest {
    let compare = (0..c.below(3)).map(|_| pb::Compare { key: key(c), ..Default::default() }).collect();
    let success = (0..c.below(5)).map(|_| request_op(c, depth)).collect();
    let failure = (0..c.below(3)).map(|_| request_op(c, depth)).collect();
    pb::TxnRequest { compare, success, failure }
}

fn grpc_validators_input(data: &[u8]) {
    let mut c = Choices(data);
    match c.below(5) {
        0 => {
            if let Ok(r) = pb::RangeRequest::decode(c.0) {
                let _ = validate::range(&r);
            }
        }
        1 => {
            if let Ok(p) = pb::PutRequest::decode(c.0) {
                let _ = validate::put(&p);
            }
        }
        2 => {
            if let Ok(d) = pb::DeleteRangeRequest::decode(c.0) {
                let _ = validate::delete(&d);
            }
        }
        3 => {
            if let Ok(t) = pb::TxnRequest::decode(c.0) {
                let _ = validate::txn(&t, MAX_TXN_OPS);
            }
        }
        _ => {
            let t = txn(&mut c, 0);
            let verdict = validate::txn(&t, MAX_TXN_OPS).map_err(|e| e.to_string());
            // What the gRPC server decodes is what was sent, and is judged the same.
            let again = pb::TxnRequest::decode(t.encode_to_vec().as_slice()).expect("an encoded txn decodes");
            assert_eq!(validate::txn(&again, MAX_TXN_OPS).map_err(|e| e.to_string()), verdict);
        }
    }
}

#[test]
fn grpc_validators() {
    fuzz("grpc_validators", grpc_validators_input);
}

// ---------------------------------------------------------------------------------------------------
// mvcc_encodings

/// A key's history as the model keeps it: (revision, put?) in order.
fn model_get(events: &[(Revision, bool)], at: i64) -> Option<(Revision, Revision, i64)> {
    let n = events.iter().rposition(|(r, _)| r.main <= at)?;
    if !events[n].1 {
        return None;
    }
    let start = events[..n].iter().rposition(|(_, put)| !put).map_or(0, |d| d + 1);
    Some((events[n].0, events[start].0, (n - start + 1) as i64))
}

fn mvcc_encodings_input(data: &[u8]) {
    // Decoding arbitrary bytes never panics; whatever decodes encodes back to the same bytes.
    if let Some((rev, tomb)) = Revision::from_bytes(data) {
        assert_eq!(rev.to_bytes(tomb), data);
    }
    let _ = modkv::proto::mvccpb::KeyValue::decode(data);
    let _ = modkv::proto::mvccpb::Event::decode(data);
    if let Ok(pairs) = modkv::storage::snapshot::decode(data) {
        assert!(pairs.iter().map(|(_, k, v)| 9 + k.len() + v.len()).sum::<usize>() == data.len());
    }
    let mut c = Choices(data);
    // Round trip, and byte order is revision order (for the revisions etcd uses: not negative).
    let word = |c: &mut Choices| i64::from_be_bytes(std::array::from_fn(|_| c.byte()));
    let (a, b) = (Revision::new(word(&mut c), word(&mut c)), Revision::new(word(&mut c), word(&mut c)));
    for (r, tomb) in [(a, false), (b, true)] {
        assert_eq!(Revision::from_bytes(&r.to_bytes(tomb)), Some((r, tomb)));
    }
    if [a.main, a.sub, b.main, b.sub].iter().all(|&x| x >= 0) {
        assert_eq!(a.cmp(&b), a.to_bytes(false).cmp(&b.to_bytes(false)));
    }
    // A key's index against a model: puts and deletes at rising revisions, reads at any revision, and
    // after a compaction the same answers at and above it.
    let mut index = KeyIndex::default();
    let mut events = Vec::new();
    let mut main = 1;
    let mut compacted = 0;
    while !c.is_empty() {
        match c.below(8) {
            0..=3 => {
                main += 1 + c.below(3) as i64;
                let rev = Revision::new(main, c.below(3) as i64);
                index.put(rev);
                events.push((rev, true));
            }
            4 if index.is_live() => {
                main += 1;
                index.tombstone(Revision::new(main, 0));
                events.push((Revision::new(main, 0), false));
            }
            5 => {
                let at = compacted + c.below((main - compacted + 1) as usize) as i64;
                index.compact(at, &mut Default::default());
                compacted = at;
            }
            _ => {
                let at = compacted + c.below((main - compacted + 2) as usize) as i64;
                let got = index.get(at).map(|k| (k.modified, k.created, k.version));
                assert_eq!(got, model_get(&events, at), "get({at}) after {events:?}, compacted at {compacted}");
            }
        }
    }
}

#[test]
fn mvcc_encodings() {
    fuzz("mvcc_encodings", mvcc_encodings_input);
}

// ---------------------------------------------------------------------------------------------------
// raft_entries, peer_messages

fn raft_entries_input(data: &[u8]) {
    use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, HardState, Snapshot};
    if let Ok(req) = InternalRaftRequest::decode(data) {
        let again = InternalRaftRequest::decode(req.encode_to_vec().as_slice()).expect("re-encoded entry decodes");
        assert_eq!(again, req);
    }
    if let Ok(e) = Entry::parse_from_bytes(data) {
        let again = Entry::parse_from_bytes(&e.write_to_bytes().expect("entry encodes")).expect("decodes");
        assert_eq!(again, e);
        let _ = InternalRaftRequest::decode(&e.data[..]);
        let _ = ConfChange::parse_from_bytes(&e.data);
        let _ = ConfChangeV2::parse_from_bytes(&e.data);
    }
    let _ = ConfChange::parse_from_bytes(data);
    let _ = ConfChangeV2::parse_from_bytes(data);
    let _ = HardState::parse_from_bytes(data);
    let _ = ConfState::parse_from_bytes(data);
    let _ = Snapshot::parse_from_bytes(data);
}

#[test]
fn raft_entries() {
    fuzz("raft_entries", raft_entries_input);
}

fn peer_messages_input(data: &[u8]) {
    use raft::eraftpb::Message;
    let parse = |bytes: &[u8]| {
        if let Ok(m) = Message::parse_from_bytes(bytes) {
            let again = Message::parse_from_bytes(&m.write_to_bytes().expect("message encodes")).expect("decodes");
            assert_eq!(again, m);
        }
    };
    parse(data);
    if let Ok(batch) = MessageBatch::decode(data) {
        for m in &batch.messages {
            parse(m);
        }
    }
}

#[test]
fn peer_messages() {
    fuzz("peer_messages", peer_messages_input);
}

// ---------------------------------------------------------------------------------------------------
// backup_reader

/// A valid snapshot file (etcd's format) of a small store (keys, a tombstone, a lease, the revision counters).
fn valid_backup() -> &'static [u8] {
    static FILE: OnceLock<Vec<u8>> = OnceLock::new();
    FILE.get_or_init(|| {
        use modkv::storage::{meta, Backend, Cf, RocksDb, WriteBatch};
        let dir = tempfile::tempdir().unwrap();
        let db = RocksDb::open(dir.path()).unwrap();
        let mut w = WriteBatch::default();
        for (i, k) in [&b"a"[..], b"b", b"\xff\x00"].iter().enumerate() {
            let kv = modkv::proto::mvccpb::KeyValue { key: k.to_vec(), value: vec![b'v'; i * 7], ..Default::default() };
            w.put(Cf::Kv, Revision::new(i as i64 + 2, 0).to_bytes(false), kv.encode_to_vec());
        }
        w.put(Cf::Kv, Revision::new(5, 0).to_bytes(true), Vec::new());
        w.put(Cf::Lease, 7i64.to_be_bytes().to_vec(), 60i64.to_be_bytes().to_vec());
        w.put(Cf::Meta, meta::CURRENT_REV, meta::encode_u64(5));
        w.put(Cf::Meta, meta::COMPACT_REV, meta::encode_u64(1));
        w.put(Cf::Meta, meta::APPLIED_INDEX, meta::encode_u64(9));
        db.write(w, true).unwrap();
        modkv::backup::file(&db).unwrap()
    })
}

/// `bytes` with its SHA-256 trailer made right again (so that the reader gets past the hash check).
fn rehash(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() >= 32 {
        let n = bytes.len() - 32;
        let hash: [u8; 32] = Sha256::digest(&bytes[..n]).into();
        bytes[n..].copy_from_slice(&hash);
    }
    bytes
}

fn backup_reader_input(data: &[u8]) {
    let mut c = Choices(data);
    let file = match c.below(4) {
        0 => c.0.to_vec(),
        1 => {
            // A valid file with some bytes changed (meta pages, page headers, elements, keys) and rehashed.
            let mut f = valid_backup().to_vec();
            while !c.is_empty() {
                let at = (c.byte() as usize) << 8 | c.byte() as usize;
                let len = f.len();
                f[at % len] ^= c.byte();
            }
            rehash(f)
        }
        2 => {
            // Cut short or grown at some point, rehashed.
            let mut f = valid_backup().to_vec();
            let at = ((c.byte() as usize) << 8 | c.byte() as usize) % f.len();
            f.truncate(at);
            f.extend_from_slice(c.0);
            rehash(f)
        }
        _ => valid_backup().to_vec(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snapshot.db");
    std::fs::write(&path, &file).unwrap();
    match modkv::backup::status(&path) {
        Ok(st) => {
            // The database's pages; the file adds the SHA-256 trailer (a file in modkv's older format
            // counts whole).
            assert!(st.total_size <= file.len() as u64, "{st:?} of a file of {} bytes", file.len());
            // Some of the files that read back are restored (each restore writes a RocksDB: slow). A
            // restore checks more than status does (every entry decodes), so it may still refuse the file.
            if data.first().is_some_and(|b| b & 0x30 != 0) {
                return;
            }
            match modkv::backup::restore(&path, &dir.path().join("data"), true, None) {
                // The store's revision: the last key's, or a later compaction's.
                Ok(restored) => assert!(restored >= st.revision, "restored {restored}, status {st:?}"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.starts_with(&format!("snapshot {}: ", path.display())), "{e}");
                    assert!(!e.contains('\n'), "{e}");
                }
            }
        }
        Err(e) => {
            let e = e.to_string();
            assert!(e.starts_with(&format!("snapshot {}: ", path.display())), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}

#[test]
fn backup_reader() {
    fuzz("backup_reader", backup_reader_input);
}

// ---------------------------------------------------------------------------------------------------
// plugin_host

struct Plugin {
    name: &'static str,
    pre: modkv::plugin::versions::Pre,
    config: modkv::plugin::config::PluginConfig,
    instances: modkv::plugin::instances::Instances,
}

struct Plugins {
    rt: tokio::runtime::Runtime,
    runtime: std::sync::Arc<modkv::plugin::host::Runtime>,
    loaded: Vec<Plugin>,
}

/// The example plugins of `$MODKV_PLUGIN_DIR` (`make plugins`), compiled once; `None` without them.
fn plugins() -> Option<&'static Plugins> {
    static PLUGINS: OnceLock<Option<Plugins>> = OnceLock::new();
    PLUGINS
        .get_or_init(|| {
            let dir = std::env::var_os("MODKV_PLUGIN_DIR")?;
            let dir = Path::new(&dir);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-plugin-cache");
            let runtime = rt.block_on(async { modkv::plugin::host::Runtime::new(Some(cache)) }).expect("runtime");
            let mut loaded = Vec::new();
            for name in ["json-guard", "hello", "kv-browser", "audit"] {
                let Ok(wasm) = std::fs::read(dir.join(format!("{name}.wasm"))) else { continue };
                let toml = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap_or_default();
                let config = modkv::plugin::config::PluginConfig::parse(&toml).expect("the example's toml");
                let (component, _) = runtime.compile(&wasm).expect("compile");
                let pre = rt.block_on(async { runtime.prepare(&component) }).expect("link");
                let instances = modkv::plugin::instances::Instances::new(64);
                loaded.push(Plugin { name, pre, config, instances });
            }
            if loaded.is_empty() {
                return None;
            }
            Some(Plugins { rt, runtime, loaded })
        })
        .as_ref()
}

fn text(c: &mut Choices, max: usize) -> String {
    String::from_utf8_lossy(&c.bytes(max)).into_owned()
}

/// Calls into plugins that failed, and that answered.
static PLUGIN_CALLS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

fn plugin_host_input(data: &[u8]) {
    use modkv::plugin::caller::Caller;
    use modkv::plugin::host::{wit, CallError, PluginInfo};
    let Some(p) = plugins() else { return };
    let mut c = Choices(data);
    let plugin = c.pick(&p.loaded);
    let mut config = plugin.config.clone();
    // What the `config` import answers: the plugin's own settings, or arbitrary values for them.
    if c.below(2) == 0 {
        for v in config.values.values_mut() {
            *v = text(&mut c, 16);
        }
        config.values.insert(text(&mut c, 8), text(&mut c, 16));
    }
    let toml = format!("{}.toml", plugin.name);
    let info = std::sync::Arc::new(PluginInfo::new(
        plugin.name.into(),
        config,
        toml,
        Vec::new(),
        std::sync::Weak::<modkv::server::EtcdServer>::new(),
    ));
    p.rt.block_on(async {
        if c.below(2) == 0 {
            let prefix: &[u8] = if c.below(2) == 0 { b"json/" } else { b"" };
            let mut key = prefix.to_vec();
            key.extend(c.bytes(8));
            let caller = (c.below(2) == 0).then(|| text(&mut c, 8));
            let (value, lease, in_txn) = (c.bytes(256), c.byte() as i64 - 128, c.below(2) == 0);
            let req = wit::PutRequest { key, value, lease, in_txn, caller };
            let r = plugin.instances.pre_put(&p.runtime, &plugin.pre, &info, &[], &Caller::default(), &req).await;
            PLUGIN_CALLS[r.is_ok() as usize].fetch_add(1, Ordering::Relaxed);
            assert!(!matches!(r, Err(CallError::Trap(_))), "{}: {:?}", plugin.name, r.err());
        } else {
            let routes = ["/hello", "/kv", "/kv/", "/audit", "/"];
            let req = wit::HttpRequest {
                method: c.pick(&["GET", "POST", "PUT", "DELETE", "OPTIONS", "X"]).to_string(),
                path: format!("{}{}", c.pick(&routes), text(&mut c, 12)),
                query: text(&mut c, 16),
                headers: (0..c.below(3)).map(|_| (text(&mut c, 8), text(&mut c, 8))).collect(),
                body: c.bytes(256),
                caller: (c.below(2) == 0).then(|| text(&mut c, 8)),
            };
            let r = plugin.instances.handle_http(&p.runtime, &plugin.pre, &info, &Caller::default(), &req).await;
            PLUGIN_CALLS[r.is_ok() as usize].fetch_add(1, Ordering::Relaxed);
            assert!(!matches!(r, Err(CallError::Trap(_))), "{}: {:?}", plugin.name, r.err());
        }
    });
}

#[test]
fn plugin_host() {
    if plugins().is_none() {
        eprintln!("plugin_host: MODKV_PLUGIN_DIR has no example plugins (make plugins); skipped");
        return;
    }
    fuzz("plugin_host", plugin_host_input);
    let (failed, answered) = (PLUGIN_CALLS[0].load(Ordering::Relaxed), PLUGIN_CALLS[1].load(Ordering::Relaxed));
    eprintln!(
        "fuzz plugin_host: {answered} calls answered, {failed} failed (time limit, or no server behind the imports)"
    );
    assert!(answered > 0, "no call into a plugin answered");
}

// ---------------------------------------------------------------------------------------------------
// The driver

/// xorshift64*: the random inputs' source (reproducible from its seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The longest input tried.
const MAX_INPUT: usize = 64 * 1024;

/// `base` with a few random edits: bits flipped, bytes set to boundary values, bytes inserted, removed
/// or repeated, or its tail replaced by another corpus input's.
fn mutate(rng: &mut Rng, base: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        let i = rng.below(len + 1);
        match rng.below(7) {
            0 if len > 0 => v[i.min(len - 1)] ^= 1 << rng.below(8),
            1 if len > 0 => v[i.min(len - 1)] = [0, 0xff, 0x7f, 0x80, b'{', b'"', b'[', b'0'][rng.below(8)],
            2 => {
                let n = 1 + rng.below(8);
                v.splice(i..i, rng.bytes(n));
            }
            3 if len > 0 => {
                let end = (i + 1 + rng.below(16)).min(len);
                v.drain(i.min(len - 1)..end);
            }
            4 if len > 0 => {
                let start = rng.below(len);
                let piece = v[start..(start + 1 + rng.below(32)).min(len)].to_vec();
                v.splice(i..i, piece);
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                v.truncate(i);
                v.extend_from_slice(&other[rng.below(other.len() + 1)..]);
            }
            _ => {
                let n = 1 + rng.below(4);
                v.extend(rng.bytes(n));
            }
        }
    }
    v.truncate(MAX_INPUT);
    v
}

/// Runs `target` on `input`; a panic fails the test naming the input, which is saved for replaying.
fn run(name: &str, target: fn(&[u8]), input: &[u8], what: &str) {
    let Err(panic) = std::panic::catch_unwind(|| target(input)) else { return };
    let msg = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes").join(name);
    let _ = std::fs::create_dir_all(&dir);
    let hash: [u8; 32] = Sha256::digest(input).into();
    let path = dir.join(hash[..8].iter().map(|b| format!("{b:02x}")).collect::<String>());
    let _ = std::fs::write(&path, input);
    let shown = if input.len() <= 512 { format!(": {input:?}") } else { String::new() };
    panic!(
        "fuzz {name}: {what} failed: {} (input saved at {}, {} bytes{shown})",
        msg.unwrap_or_default(),
        path.display(),
        input.len()
    );
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// The corpus of `name`: `tests/fuzz/<name>/*`, in name order.
fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).expect("corpus file"))).collect()
}

/// Runs `target` on its corpus, then on random inputs for `FUZZ_MS` milliseconds.
fn fuzz(name: &str, target: fn(&[u8])) {
    let corpus = corpus(name);
    assert!(!corpus.is_empty(), "fuzz {name}: no corpus in tests/fuzz/{name}/");
    for (path, input) in &corpus {
        run(name, target, input, &format!("corpus file {}", path.display()));
    }
    let inputs: Vec<Vec<u8>> = corpus.into_iter().map(|(_, input)| input).collect();
    let time = Duration::from_millis(env_number("FUZZ_MS").unwrap_or(1000));
    let seed = env_number("FUZZ_SEED")
        .unwrap_or_else(|| std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap_or_default().as_nanos() as u64)
        | 1;
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut runs = 0u64;
    while started.elapsed() < time {
        let input = if rng.below(4) != 0 {
            let base = rng.below(inputs.len());
            mutate(&mut rng, &inputs[base], &inputs)
        } else {
            let bits = rng.below(13);
            let n = rng.below(1 << bits);
            rng.bytes(n)
        };
        run(name, target, &input, &format!("random input (FUZZ_SEED={seed}, run {runs})"));
        runs += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {name}: {} corpus inputs, then {runs} random inputs in {secs:.1} s ({:.0}/s), FUZZ_SEED={seed}",
        inputs.len(),
        runs as f64 / secs.max(1e-9)
    );
}

// ---------------------------------------------------------------------------------------------------
// Regression tests: inputs the targets found, kept whatever the engine.

/// A txn nested `depth` deep through its success branch, as gateway JSON.
fn nested_txn_json(depth: usize) -> String {
    let mut body = r#"{"success":[{"request_txn":"#.repeat(depth);
    body.push_str(r#"{"success":[{"request_put":{"key":"YQ=="}}]}"#);
    body.push_str(&"}]}".repeat(depth));
    body
}

/// The same txn as a request.
fn nested_txn(depth: usize) -> pb::TxnRequest {
    use pb::request_op::Request;
    let put = pb::PutRequest { key: b"a".to_vec(), ..Default::default() };
    let mut t = pb::TxnRequest {
        success: vec![pb::RequestOp { request: Some(Request::RequestPut(put)) }],
        ..Default::default()
    };
    for _ in 0..depth {
        t = pb::TxnRequest {
            success: vec![pb::RequestOp { request: Some(Request::RequestTxn(t)) }],
            ..Default::default()
        };
    }
    t
}

/// Issue 10: a txn nested 1,200 deep in a gateway body overflowed the stack of the JSON decoder; it gets
/// etcd's answer for a txn over its op budget, decoding stops at the depth the server accepts.
#[test]
fn regression_gateway_txn_nested_1200_deep() {
    let r = decode_body::<pb::TxnRequest>(".etcdserverpb.TxnRequest", nested_txn_json(1200).as_bytes());
    let e = r.expect_err("a txn nested 1,200 deep is refused");
    assert_eq!(
        (e.code(), e.message()),
        (tonic::Code::InvalidArgument, "etcdserver: too many operations in txn request")
    );
}

/// Issue 10: validating a txn nested 10,000 deep (what the gateway could hand the server) overflowed the
/// stack; the op budget passed down stops it at the 129th level.
#[test]
fn regression_validate_txn_nested_10000_deep() {
    let t = nested_txn(10_000);
    assert_eq!(validate::txn(&t, MAX_TXN_OPS), Err(modkv::error::Error::TooManyOps));
    // (Dropping the request recurses as deep: let it go on a thread with room to spare.)
    std::thread::Builder::new().stack_size(64 << 20).spawn(move || drop(t)).unwrap().join().unwrap();
}

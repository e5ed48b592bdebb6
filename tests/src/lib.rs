//! Test harness for modkv's integration tests.
//!
//! Every test talks to a server process through the real `etcdctl` 3.4 client,
//! so the same test body can run against the reference etcd 3.4
//! (`/usr/bin/etcd`) and against modkv. See [`both_kinds!`] for how a test is
//! instantiated for both (the `modkv` feature of `tests/Cargo.toml`, on by
//! default, runs the modkv variants).
//!
//! Overview:
//! * [`Kind`] — which server binary to run; [`free_port`] — ports for it.
//! * [`process`] — THE server process type, [`process::Member`]: spawn with a log file, kill9, stop,
//!   restart, pause/resume, etcdctl against it, its log printed when a test panics.
//! * [`server`] — [`Server::start`] / [`ServerOpts`]: a one-member cluster on free ports with a
//!   temporary data dir (a `Server` dereferences to its [`process::Member`]); [`run_to_exit`] — run a
//!   server binary that is expected to exit (startup errors).
//! * [`cluster`] — multi-member clusters on loopback; [`netns`] — clusters whose members run in their
//!   own network namespaces (partition tests); [`load`] — client load while members fail.
//! * [`ctl`] — [`etcdctl_at`] / [`run_command`] → [`CtlOutput`].
//! * [`Normalizer`] / [`normalize`] — make `-w json` output of independent
//!   servers comparable; [`kvs`], [`header_rev`], base64 — read it.
//! * [`grpc`] — raw `KV/Range` for request fields etcdctl 3.4 has no flags for.
//! * [`chaos`] — fault injection under a recorded workload, checked for linearizability and watch
//!   guarantees (issue 13; `tests/tests/chaos.rs`, `make chaos`).
//! * [`test_plugins`] — the guest crates of `tests/plugins/`, built and installed into a plugin dir.
//! * [`browser`] — headless Chromium driven over the DevTools protocol (fill a form, click, read).

pub mod browser;
pub mod chaos;
pub mod cluster;
pub mod ctl;
pub mod grpc;
pub mod h2frame;
pub mod h2stall;
pub mod http;
pub mod load;
pub mod netns;
pub mod process;
pub mod procstat;
pub mod proxy;
pub mod server;
pub mod test_plugins;
pub mod tls;
pub mod txnwire;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

pub use ctl::{etcdctl_at, etcdctl_of, run_command, wait_timeout, CtlOutput, ETCDCTL_TIMEOUT};
pub use process::StartError;
pub use serde_json::{json, Value};
pub use server::{run_to_exit, standard_args, start_all, ExitOutput, Server, ServerOpts, READY_TIMEOUT};

// ---------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------

/// Which server implementation to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The server under test (`MODKV_BIN`, else
    /// `$CARGO_TARGET_DIR/release/modkv`, else `<workspace>/target/release/modkv`).
    Modkv,
    /// The reference etcd 3.4 (`ETCD_BIN`, else `/usr/bin/etcd`).
    Etcd,
}

impl Kind {
    pub fn binary(self) -> PathBuf {
        match self {
            Kind::Modkv => modkv_bin(),
            Kind::Etcd => etcd_bin(),
        }
    }

    /// A command running this binary (with `RUST_BACKTRACE=1`, so a panic shows where); arguments follow.
    pub fn command(self) -> Command {
        let mut cmd = Command::new(self.binary());
        cmd.env("RUST_BACKTRACE", "1");
        cmd
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Modkv => "modkv",
            Kind::Etcd => "etcd",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The cargo workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    // Cargo sets CARGO_MANIFEST_DIR when it runs a test too; prefer that to the compile-time value, which
    // a target dir shared between clones at different paths can carry over from another clone.
    let dir =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    dir.parent().expect("tests crate has a parent directory").to_path_buf()
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Path of the modkv binary under test.
pub fn modkv_bin() -> PathBuf {
    if let Some(p) = env_path("MODKV_BIN") {
        // Tests run with the crate dir as cwd; relative paths are meant
        // relative to the workspace root (where `make` runs).
        return if p.is_absolute() { p } else { workspace_root().join(p) };
    }
    let target = match env_path("CARGO_TARGET_DIR") {
        Some(t) if t.is_absolute() => t,
        Some(t) => workspace_root().join(t),
        None => workspace_root().join("target"),
    };
    target.join("release").join("modkv")
}

/// Path of the modkv binary with failpoints compiled in (`MODKV_FAILPOINTS_BIN`, else `modkv-failpoints`
/// beside [`modkv_bin`]), for `tests/tests/failpoints.rs`.
pub fn modkv_failpoints_bin() -> PathBuf {
    if let Some(p) = env_path("MODKV_FAILPOINTS_BIN") {
        return if p.is_absolute() { p } else { workspace_root().join(p) };
    }
    modkv_bin().with_file_name("modkv-failpoints")
}

/// Path of the reference etcd binary.
pub fn etcd_bin() -> PathBuf {
    env_path("ETCD_BIN").unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"))
}

/// Path of the etcdctl 3.4 client.
pub fn etcdctl_bin() -> PathBuf {
    env_path("ETCDCTL_BIN").unwrap_or_else(|| PathBuf::from("/usr/bin/etcdctl"))
}

/// etcdctl 3.5 (`ETCDCTL35_BIN`, set by `make test` to what `tests/fetch-etcd35.sh` unpacked), for the
/// sessions run with the newer client; `None` when unset (a plain `cargo test`).
pub fn etcdctl35_bin() -> Option<PathBuf> {
    let p = env_path("ETCDCTL35_BIN")?;
    assert!(p.is_file(), "ETCDCTL35_BIN={} does not exist (make test fetches it: tests/fetch-etcd35.sh)", p.display());
    Some(p)
}

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/// Ports are handed out from 20000..32000, below Linux's ephemeral range
/// (32768..60999), so that the many short-lived etcdctl connections cannot
/// grab a port between our check and the server's bind. Each process starts
/// at a pid-dependent offset and never hands out the same port twice; a port
/// is only returned if it can currently be bound on 127.0.0.1.
const PORT_LO: u32 = 20000;
const PORT_HI: u32 = 32000;

static PORT_COUNTER: AtomicU32 = AtomicU32::new(0);

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static SET: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    SET.get_or_init(|| Mutex::new(HashSet::new()))
}

/// True if nothing is listening on 127.0.0.1:`port` right now.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Returns a TCP port on 127.0.0.1 that is free and has not been returned
/// before in this process.
pub fn free_port() -> u16 {
    let span = PORT_HI - PORT_LO;
    let base = (std::process::id().wrapping_mul(7919)) % span;
    for _ in 0..span {
        let n = PORT_COUNTER.fetch_add(1, Ordering::Relaxed);
        let port = (PORT_LO + (base + n * 7) % span) as u16;
        if !port_is_free(port) {
            continue;
        }
        if handed_out().lock().unwrap().insert(port) {
            return port;
        }
    }
    // Fall back to an OS-assigned port.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------

/// Parses JSON or panics with the text.
#[track_caller]
pub fn parse_json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s:?}"))
}

/// Decodes standard base64 (as etcdctl prints keys and values in `-w json`).
/// Standard base64 with padding.
pub fn b64encode(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() { T[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

pub fn b64decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = if i >= 4 - pad { 0 } else { val(c)? };
            n = (n << 6) | v;
        }
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
    }
    Some(out)
}

/// Base64-decodes a JSON string field into UTF-8 (panics if it is not).
#[track_caller]
pub fn b64str(v: &Value) -> String {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    String::from_utf8(b64decode(s).unwrap_or_else(|| panic!("not base64: {s}"))).expect("utf-8")
}

/// `kvs` of a range response as `(key, value, create_revision, mod_revision, version)`.
#[track_caller]
pub fn kvs(resp: &Value) -> Vec<(String, String, i64, i64, i64)> {
    kv_list(&resp["kvs"])
}

/// Like [`kvs`] for any JSON array of KeyValue (e.g. `prev_kvs`).
#[track_caller]
pub fn kv_list(list: &Value) -> Vec<(String, String, i64, i64, i64)> {
    let Some(items) = list.as_array() else {
        assert!(list.is_null(), "not a kv list: {list}");
        return Vec::new();
    };
    items
        .iter()
        .map(|kv| {
            (
                b64str(&kv["key"]),
                kv.get("value").map(b64str).unwrap_or_default(),
                kv["create_revision"].as_i64().unwrap_or(0),
                kv["mod_revision"].as_i64().unwrap_or(0),
                kv["version"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

/// Builds an expected [`kvs`] entry: `(key, value, create_revision, mod_revision, version)`.
pub fn kv(key: &str, value: &str, create: i64, modr: i64, version: i64) -> (String, String, i64, i64, i64) {
    (key.to_string(), value.to_string(), create, modr, version)
}

/// `header.revision` of a JSON response.
#[track_caller]
pub fn header_rev(v: &Value) -> i64 {
    v["header"]["revision"].as_i64().unwrap_or_else(|| panic!("no header.revision in {v}"))
}

/// Sorted key names of a JSON object (for exact "shape" assertions).
#[track_caller]
pub fn keys_of(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect();
    k.sort();
    k
}

/// Fields holding cluster/member ids; replaced by `<id:N>` where N numbers the
/// distinct ids in order of first appearance, so equality between e.g.
/// `leader` and `member_id` survives normalisation.
pub const ID_FIELDS: &[&str] = &["cluster_id", "member_id", "ID", "leader", "clusterID", "memberID"];
/// Fields replaced by `<field>` because they legitimately differ between
/// independent servers or runs.
pub const VOLATILE_FIELDS: &[&str] =
    &["raft_term", "raftTerm", "raftIndex", "raftAppliedIndex", "dbSize", "dbSizeInUse", "took", "ts"];

/// Normalises `-w json` output of etcdctl so that independent servers (or
/// etcd and modkv) produce identical values for identical histories.
///
/// * [`ID_FIELDS`] → `"<id:N>"` (consistent across one `Normalizer`);
/// * [`VOLATILE_FIELDS`] → `"<name>"`;
/// * `key`/`value` (base64) → decoded text if UTF-8, else left alone;
/// * strings equal to a registered replacement (e.g. the server's URLs) →
///   the placeholder.
#[derive(Default, Debug, Clone)]
pub struct Normalizer {
    ids: HashMap<String, usize>,
    replacements: Vec<(String, String)>,
}

impl Normalizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces occurrences of `from` inside every string by `to`.
    pub fn replace(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.replacements.push((from.into(), to.into()));
        self
    }

    /// A normaliser that also hides `server`'s URLs and ports.
    pub fn for_server(server: &Server) -> Self {
        Normalizer::new().replace(server.endpoint(), "<client-url>").replace(server.peer_url(), "<peer-url>")
    }

    pub fn normalize(&mut self, v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut out = serde_json::Map::new();
                for (k, val) in m {
                    let nv = if ID_FIELDS.contains(&k.as_str()) && !val.is_array() && !val.is_object() {
                        let n = self.ids.len() + 1;
                        let n = *self.ids.entry(val.to_string()).or_insert(n);
                        Value::String(format!("<id:{n}>"))
                    } else if VOLATILE_FIELDS.contains(&k.as_str()) {
                        Value::String(format!("<{k}>"))
                    } else if (k == "key" || k == "value") && val.is_string() {
                        let s = val.as_str().unwrap();
                        match b64decode(s).and_then(|b| String::from_utf8(b).ok()) {
                            Some(text) => Value::String(text),
                            None => val.clone(),
                        }
                    } else {
                        self.normalize(val)
                    };
                    out.insert(k.clone(), nv);
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| self.normalize(x)).collect()),
            Value::String(s) => Value::String(self.replace_str(s)),
            other => other.clone(),
        }
    }

    /// Applies the string replacements to free text (stdout/stderr).
    pub fn replace_str(&self, s: &str) -> String {
        let mut s = s.to_string();
        for (from, to) in &self.replacements {
            s = s.replace(from.as_str(), to.as_str());
        }
        s
    }
}

/// One-shot [`Normalizer::normalize`] without URL replacements.
pub fn normalize(v: &Value) -> Value {
    Normalizer::new().normalize(v)
}

// ---------------------------------------------------------------------------
// Test instantiation
// ---------------------------------------------------------------------------

/// Defines each test once and instantiates it for both servers:
///
/// ```text
/// both_kinds! {
///     fn put_get(kind) { let s = Server::start(kind, ServerOpts::new()); ... }
/// }
/// ```
///
/// expands to a module `put_get` with `#[test] fn etcd()` and
/// `#[test] fn modkv()`, i.e. test names `put_get::etcd` / `put_get::modkv`.
///
/// The modkv variants run when the crate feature `modkv` is enabled, as it is
/// by default (`tests/Cargo.toml`); with `--no-default-features` only the
/// etcd variants run and the modkv ones are `#[ignore]`d.
#[macro_export]
macro_rules! both_kinds {
    ($( $(#[doc = $doc:expr])* fn $name:ident($kind:ident) $body:block )*) => {
        $(
            $(#[doc = $doc])*
            #[allow(unused_imports)]
            mod $name {
                use super::*;
                fn body($kind: $crate::Kind) $body

                #[test]
                fn etcd() {
                    body($crate::Kind::Etcd)
                }

                #[test]
                #[cfg_attr(
                    not(feature = "modkv"),
                    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
                )]
                fn modkv() {
                    body($crate::Kind::Modkv)
                }
            }
        )*
    };
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn base64_roundtrip() {
        assert_eq!(b64decode("YQ==").unwrap(), b"a");
        assert_eq!(b64decode("MTI=").unwrap(), b"12");
        assert_eq!(b64decode("di1rMw==").unwrap(), b"v-k3");
        assert_eq!(b64decode("").unwrap(), b"");
        assert!(b64decode("abc").is_none());
    }

    #[test]
    fn ports_are_unique() {
        let ports: HashSet<u16> = (0..200).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 200);
    }

    #[test]
    fn normalizer_keeps_id_equalities() {
        let mut n = Normalizer::new();
        let v =
            json!({"header": {"cluster_id": 1u64, "member_id": 2u64, "raft_term": 3}, "leader": 2u64, "key": "YQ=="});
        assert_eq!(
            n.normalize(&v),
            json!({"header": {"cluster_id": "<id:1>", "member_id": "<id:2>", "raft_term": "<raft_term>"}, "leader": "<id:2>", "key": "a"})
        );
    }

    #[test]
    fn client_log_lines_are_split_from_errors() {
        let out = CtlOutput {
            status: 1,
            stdout: String::new(),
            stderr: concat!(
                r#"{"level":"warn","ts":"2026-01-01T00:00:00.000Z","caller":"clientv3/retry_interceptor.go:62","msg":"retrying of unary invoker failed","target":"endpoint://client-x/127.0.0.1:1","attempt":0,"error":"rpc error: code = InvalidArgument desc = etcdserver: key not found"}"#,
                "\nError: etcdserver: key not found\n"
            )
            .to_string(),
        };
        out.assert_server_error("InvalidArgument", "etcdserver: key not found");
    }
}

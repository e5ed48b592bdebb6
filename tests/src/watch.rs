//! Helpers for the Watch and Lease tests.
//!
//! * [`CtlProc`] — a long-running etcdctl (`watch`, `watch -i`, `lease
//!   keep-alive`) as a child process whose stdout/stderr are read
//!   incrementally; it is killed when dropped.
//! * [`WatchClient`] — a raw bidirectional `etcdserverpb.Watch/Watch` stream
//!   for what etcdctl 3.4 cannot express (watch ids, cancel, filters, the
//!   created/canceled responses themselves). Like [`crate::grpc`], the
//!   messages are hand-written prost structs with etcd's field numbers.
//! * [`put`] / [`put_many`] — raw `KV/Put`, to generate load quickly.
//! * [`watch_json`] / [`hdr`] — normalise etcdctl's `-w json` watch output.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::tokio_stream::wrappers::UnboundedReceiverStream;

use crate::grpc::{KeyValue, ResponseHeader};
use crate::{etcdctl_bin, wait_timeout, CtlOutput, Normalizer, Server};

/// Default patience for anything a watcher is expected to print.
pub const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// etcdctl as a long-running child process
// ---------------------------------------------------------------------------

/// A running etcdctl whose output is collected in the background.
pub struct CtlProc {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    readers: Vec<thread::JoinHandle<()>>,
    args: Vec<String>,
}

fn collect<R: Read + Send + 'static>(mut r: R, into: Arc<Mutex<Vec<u8>>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    })
}

impl CtlProc {
    /// Starts `etcdctl --endpoints <s> <args>` with a piped stdin.
    pub fn spawn(s: &Server, args: &[&str]) -> CtlProc {
        CtlProc::spawn_at(&s.endpoint(), args)
    }

    /// Starts `etcdctl --endpoints <endpoint> <args>` with a piped stdin (a proxy, a cluster's members).
    pub fn spawn_at(endpoint: &str, args: &[&str]) -> CtlProc {
        let mut cmd = Command::new(etcdctl_bin());
        cmd.env("ETCDCTL_API", "3")
            .env_remove("ETCDCTL_ENDPOINTS")
            .arg("--endpoints")
            .arg(endpoint)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), out.clone()),
            collect(child.stderr.take().unwrap(), err.clone()),
        ];
        CtlProc {
            stdin: child.stdin.take(),
            child: Some(child),
            out,
            err,
            readers,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    /// Writes `line` and a newline to stdin (interactive `watch -i`).
    #[track_caller]
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(format!("{line}\n").as_bytes()).expect("write to etcdctl stdin");
        stdin.flush().unwrap();
    }

    /// Closes stdin (EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Polls until `pred(stdout)` holds; returns stdout. Panics after `timeout`.
    #[track_caller]
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.stdout();
            if pred(&out) {
                return out;
            }
            if Instant::now() >= deadline {
                panic!(
                    "etcdctl {:?}: timed out after {timeout:?} waiting for {what}\n--- stdout ---\n{out}\n--- stderr ---\n{}",
                    self.args,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until stdout holds at least `n` complete lines; returns stdout.
    #[track_caller]
    pub fn wait_lines(&self, n: usize) -> String {
        self.wait_for(&format!("{n} lines"), WAIT, |o| o.matches('\n').count() >= n)
    }

    /// Waits until stdout ends with `suffix`; returns stdout.
    #[track_caller]
    pub fn wait_ends_with(&self, suffix: &str) -> String {
        self.wait_for(&format!("output ending in {suffix:?}"), WAIT, |o| o.ends_with(suffix))
    }

    /// stdout parsed as one JSON value per complete line (`-w json`).
    #[track_caller]
    pub fn json(&self) -> Vec<Value> {
        json_lines(&self.stdout())
    }

    /// Waits until at least `n` JSON responses were printed; returns them all.
    #[track_caller]
    pub fn wait_json(&self, n: usize) -> Vec<Value> {
        json_lines(&self.wait_for(&format!("{n} JSON responses"), WAIT, |o| json_lines(o).len() >= n))
    }

    /// Waits until the JSON responses printed so far carry at least `n` events in total.
    #[track_caller]
    pub fn wait_events(&self, n: usize) -> Vec<Value> {
        let out = self.wait_for(&format!("{n} events"), WAIT, |o| {
            json_lines(o).iter().map(|r| r["Events"].as_array().map_or(0, Vec::len)).sum::<usize>() >= n
        });
        json_lines(&out)
    }

    /// Asserts stdout stays exactly `expected` for `quiet` (nothing more arrives).
    #[track_caller]
    pub fn assert_quiet(&self, expected: &str, quiet: Duration) {
        thread::sleep(quiet);
        assert_eq!(self.stdout(), expected, "unexpected extra output; stderr: {}", self.stderr());
    }

    /// Waits for the process to exit by itself within `timeout`.
    #[track_caller]
    pub fn wait_exit(mut self, timeout: Duration) -> CtlOutput {
        self.stdin = None;
        let mut child = self.child.take().unwrap();
        let Some(status) = wait_timeout(&mut child, timeout) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("etcdctl {:?} did not exit within {timeout:?}:\n{}\n{}", self.args, self.stdout(), self.stderr());
        };
        self.finish(status.code().unwrap_or(-1))
    }

    /// Kills the process (SIGKILL) and returns what it printed (status -1).
    pub fn kill(mut self) -> CtlOutput {
        self.stdin = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.finish(-1)
    }

    fn finish(&mut self, status: i32) -> CtlOutput {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        CtlOutput { status, stdout: self.stdout(), stderr: self.stderr() }
    }
}

impl Drop for CtlProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Parses every complete line of `out` as JSON, skipping the
/// `progress notify: <rev>` lines etcdctl prints as text even with `-w json`.
#[track_caller]
pub fn json_lines(out: &str) -> Vec<Value> {
    let complete = match out.rfind('\n') {
        Some(i) => &out[..i],
        None => return Vec::new(),
    };
    complete
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("progress notify: "))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

/// The normalised header etcd puts in a watch response at `revision`
/// (see [`watch_json`]).
pub fn hdr(revision: i64) -> Value {
    json!({"cluster_id": "<id:1>", "member_id": "<id:2>", "revision": revision, "raft_term": "<raft_term>"})
}

/// Normalises one etcdctl `-w json` watch response: ids and raft term
/// replaced, keys and values base64-decoded, and every `lease` field
/// replaced by `<lease>` (lease ids are random).
pub fn watch_json(v: &Value) -> Value {
    fn hide_leases(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == "lease" {
                        *x = json!("<lease>");
                    } else {
                        hide_leases(x);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(hide_leases),
            _ => {}
        }
    }
    let mut n = Normalizer::new().normalize(v);
    hide_leases(&mut n);
    n
}

/// A watch response as etcdctl prints it in JSON (normalised), with default
/// flags: `{"Header":…, "Events":…, "CompactRevision":0, "Canceled":false, "Created":false}`.
pub fn events_resp(revision: i64, events: Value) -> Value {
    json!({"Header": hdr(revision), "Events": events, "CompactRevision": 0, "Canceled": false, "Created": false})
}

/// `Header.revision` of an etcdctl JSON watch response.
#[track_caller]
pub fn watch_rev(v: &Value) -> i64 {
    v["Header"]["revision"].as_i64().unwrap_or_else(|| panic!("no Header.revision in {v}"))
}

/// `(type, key, mod_revision)` of every event in etcdctl JSON watch responses, in order.
#[track_caller]
pub fn event_revs(resps: &[Value]) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for r in resps {
        for e in r["Events"].as_array().unwrap_or_else(|| panic!("no Events: {r}")) {
            let t = if e["type"].as_i64() == Some(1) { "DELETE" } else { "PUT" };
            out.push((t.to_string(), crate::b64str(&e["kv"]["key"]), e["kv"]["mod_revision"].as_i64().unwrap()));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Raw gRPC: etcdserverpb.Watch and KV/Put
// ---------------------------------------------------------------------------

/// `mvccpb.Event` (type: 0 = PUT, 1 = DELETE)
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub kv: Option<KeyValue>,
    #[prost(message, optional, tag = "3")]
    pub prev_kv: Option<KeyValue>,
}

/// `etcdserverpb.WatchCreateRequest.FilterType`
pub mod filter {
    pub const NOPUT: i32 = 0;
    pub const NODELETE: i32 = 1;
}

/// `etcdserverpb.WatchCreateRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchCreateRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub start_revision: i64,
    #[prost(bool, tag = "4")]
    pub progress_notify: bool,
    #[prost(int32, repeated, tag = "5")]
    pub filters: Vec<i32>,
    #[prost(bool, tag = "6")]
    pub prev_kv: bool,
    #[prost(int64, tag = "7")]
    pub watch_id: i64,
    #[prost(bool, tag = "8")]
    pub fragment: bool,
}

impl WatchCreateRequest {
    /// Watches `[key, range_end)` (empty `range_end`: the single key).
    pub fn range(key: &str, range_end: &str) -> WatchCreateRequest {
        WatchCreateRequest { key: key.into(), range_end: range_end.into(), ..Default::default() }
    }
    pub fn key(key: &str) -> WatchCreateRequest {
        Self::range(key, "")
    }
    pub fn rev(mut self, start_revision: i64) -> Self {
        self.start_revision = start_revision;
        self
    }
    pub fn id(mut self, watch_id: i64) -> Self {
        self.watch_id = watch_id;
        self
    }
    pub fn filter(mut self, f: i32) -> Self {
        self.filters.push(f);
        self
    }
    pub fn prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
}

/// `etcdserverpb.WatchCancelRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchCancelRequest {
    #[prost(int64, tag = "1")]
    pub watch_id: i64,
}

/// `etcdserverpb.WatchProgressRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchProgressRequest {}

/// `etcdserverpb.WatchRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchRequest {
    #[prost(oneof = "watch_request::RequestUnion", tags = "1, 2, 3")]
    pub request_union: Option<watch_request::RequestUnion>,
}

pub mod watch_request {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum RequestUnion {
        #[prost(message, tag = "1")]
        CreateRequest(super::WatchCreateRequest),
        #[prost(message, tag = "2")]
        CancelRequest(super::WatchCancelRequest),
        #[prost(message, tag = "3")]
        ProgressRequest(super::WatchProgressRequest),
    }
}

/// `etcdserverpb.WatchResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    pub watch_id: i64,
    #[prost(bool, tag = "3")]
    pub created: bool,
    #[prost(bool, tag = "4")]
    pub canceled: bool,
    #[prost(int64, tag = "5")]
    pub compact_revision: i64,
    #[prost(string, tag = "6")]
    pub cancel_reason: String,
    #[prost(bool, tag = "7")]
    pub fragment: bool,
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<Event>,
}

impl WatchResponse {
    /// Header revision (0 if there is no header).
    pub fn rev(&self) -> i64 {
        self.header.as_ref().map_or(0, |h| h.revision)
    }

    /// A one-line summary that is easy to assert exactly:
    /// `id=<watch_id> rev=<header revision>` followed by the set flags and
    /// the events as `PUT key=value@mod` / `DEL key@mod`, with
    /// `(prev value@mod)` when a prev_kv is present.
    pub fn summary(&self) -> String {
        let mut s = format!("id={} rev={}", self.watch_id, self.rev());
        if self.created {
            s += " created";
        }
        if self.canceled {
            s += " canceled";
        }
        if self.compact_revision != 0 {
            s += &format!(" compact={}", self.compact_revision);
        }
        if !self.cancel_reason.is_empty() {
            s += &format!(" reason={:?}", self.cancel_reason);
        }
        if self.fragment {
            s += " fragment";
        }
        for e in &self.events {
            let kv = e.kv.clone().unwrap_or_default();
            let key = String::from_utf8_lossy(&kv.key);
            if e.r#type == 1 {
                s += &format!(" DEL {key}@{}", kv.mod_revision);
            } else {
                s += &format!(" PUT {key}={}@{}", String::from_utf8_lossy(&kv.value), kv.mod_revision);
            }
            if let Some(p) = &e.prev_kv {
                s += &format!("(prev {}@{})", String::from_utf8_lossy(&p.value), p.mod_revision);
            }
        }
        s
    }
}

type Call = tokio::task::JoinHandle<Result<tonic::Streaming<WatchResponse>, tonic::Status>>;

/// One raw Watch stream (one etcd `serverWatchStream`), used blockingly.
pub struct WatchClient {
    rt: tokio::runtime::Runtime,
    tx: Option<tokio::sync::mpsc::UnboundedSender<WatchRequest>>,
    call: Option<Call>,
    stream: Option<tonic::Streaming<WatchResponse>>,
}

impl WatchClient {
    /// Opens a Watch stream to `endpoint` (`http://127.0.0.1:PORT`).
    #[track_caller]
    pub fn connect(endpoint: &str) -> WatchClient {
        WatchClient::try_connect(endpoint).unwrap_or_else(|e| panic!("connect {endpoint}: {e}"))
    }

    /// Like [`WatchClient::connect`], returning the connection error instead of panicking (for watchers
    /// that must keep going while members die, `crate::chaos`).
    pub fn try_connect(endpoint: &str) -> Result<WatchClient, String> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let endpoint = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5));
        let connect = endpoint.connect();
        // The HTTP/2 handshake with a stopped (SIGSTOPped) process hangs past the TCP connect: bound both.
        let channel = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(5), connect).await })
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        // A server may send the response headers only with its first message,
        // so the call itself runs in the background until then.
        let call = rt.spawn(async move {
            // A catch-up response from history can be large (etcd does not limit what it sends).
            let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(usize::MAX);
            grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            let codec = tonic_prost::ProstCodec::<WatchRequest, WatchResponse>::default();
            grpc.streaming(
                tonic::Request::new(UnboundedReceiverStream::new(rx)),
                PathAndQuery::from_static("/etcdserverpb.Watch/Watch"),
                codec,
            )
            .await
            .map(tonic::Response::into_inner)
        });
        Ok(WatchClient { rt, tx: Some(tx), call: Some(call), stream: None })
    }

    /// Sends a raw request.
    pub fn send(&self, r: watch_request::RequestUnion) {
        self.tx.as_ref().expect("stream open").send(WatchRequest { request_union: Some(r) }).expect("stream open");
    }

    pub fn create(&self, c: WatchCreateRequest) {
        self.send(watch_request::RequestUnion::CreateRequest(c));
    }

    pub fn cancel(&self, watch_id: i64) {
        self.send(watch_request::RequestUnion::CancelRequest(WatchCancelRequest { watch_id }));
    }

    pub fn progress(&self) {
        self.send(watch_request::RequestUnion::ProgressRequest(WatchProgressRequest {}));
    }

    /// Half-closes the request side.
    pub fn close_send(&mut self) {
        self.tx = None;
    }

    /// The next response; `Ok(None)` on timeout, `Err(None)` when the server
    /// ended the stream, `Err(Some((code, message)))` on a gRPC error.
    pub fn try_recv(&mut self, timeout: Duration) -> Result<Option<WatchResponse>, Option<(String, String)>> {
        let (call, stream) = (&mut self.call, &mut self.stream);
        let r = self.rt.block_on(async {
            tokio::time::timeout(timeout, async {
                if stream.is_none() {
                    let c = call.as_mut().expect("call started");
                    let s = c.await.expect("watch call task")?;
                    *stream = Some(s);
                    *call = None;
                }
                stream.as_mut().unwrap().message().await
            })
            .await
        });
        match r {
            Err(_elapsed) => Ok(None),
            Ok(Ok(Some(m))) => Ok(Some(m)),
            Ok(Ok(None)) => Err(None),
            Ok(Err(s)) => Err(Some((format!("{:?}", s.code()), s.message().to_string()))),
        }
    }

    /// The next response (panics if none arrives within [`WAIT`]).
    #[track_caller]
    pub fn recv(&mut self) -> WatchResponse {
        match self.try_recv(WAIT) {
            Ok(Some(m)) => m,
            Ok(None) => panic!("no watch response within {WAIT:?}"),
            Err(e) => panic!("watch stream ended: {e:?}"),
        }
    }

    /// [`WatchResponse::summary`] of the next response.
    #[track_caller]
    pub fn next_summary(&mut self) -> String {
        self.recv().summary()
    }

    /// Asserts that nothing arrives for `quiet`.
    #[track_caller]
    pub fn assert_quiet(&mut self, quiet: Duration) {
        match self.try_recv(quiet) {
            Ok(None) => {}
            other => panic!("expected no watch response, got {other:?}"),
        }
    }
}

/// `etcdserverpb.PutRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub lease: i64,
}

/// `etcdserverpb.PutResponse` (without prev_kv)
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

/// Puts `pairs` over `workers` concurrent gRPC connections; returns the
/// revision of each put, in the order of `pairs`.
#[track_caller]
pub fn put_many(endpoint: &str, pairs: &[(String, String)], workers: usize) -> Vec<i64> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pairs: Arc<Vec<(String, String)>> = Arc::new(pairs.to_vec());
    let endpoint = endpoint.to_string();
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for w in 0..workers {
            let (pairs, endpoint) = (pairs.clone(), endpoint.clone());
            tasks.push(tokio::spawn(async move {
                let channel = tonic::transport::Endpoint::from_shared(endpoint)
                    .unwrap()
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(Duration::from_secs(10))
                    .connect()
                    .await
                    .expect("connect");
                let mut grpc = tonic::client::Grpc::new(channel);
                let mut revs = Vec::new();
                for i in (w..pairs.len()).step_by(workers) {
                    grpc.ready().await.expect("ready");
                    let (k, v) = &pairs[i];
                    let req = PutRequest { key: k.clone().into(), value: v.clone().into(), lease: 0 };
                    let codec = tonic_prost::ProstCodec::<PutRequest, PutResponse>::default();
                    let resp = grpc
                        .unary(tonic::Request::new(req), PathAndQuery::from_static("/etcdserverpb.KV/Put"), codec)
                        .await
                        .unwrap_or_else(|s| panic!("put {k}: {s:?}"))
                        .into_inner();
                    revs.push((i, resp.header.map_or(0, |h| h.revision)));
                }
                revs
            }));
        }
        let mut all = vec![0; pairs.len()];
        for t in tasks {
            for (i, rev) in t.await.expect("put worker") {
                all[i] = rev;
            }
        }
        all
    })
}

/// One raw `KV/Put`; returns the new revision.
#[track_caller]
pub fn put(endpoint: &str, key: &str, value: &str) -> i64 {
    put_many(endpoint, &[(key.to_string(), value.to_string())], 1)[0]
}

// ---------------------------------------------------------------------------
// Leases through etcdctl
// ---------------------------------------------------------------------------

/// `etcdctl lease grant <ttl>`: asserts the exact output shape
/// `lease <16 hex digits> granted with TTL(<granted>s)` and returns the id.
#[track_caller]
pub fn grant(s: &Server, ttl: i64, granted: i64) -> String {
    let out = s.ctl_ok(&["lease", "grant", &ttl.to_string()]);
    let id = out.strip_prefix("lease ").and_then(|r| r.split(' ').next()).unwrap_or_else(|| panic!("{out:?}"));
    assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "lease id {id:?} in {out:?}");
    assert_eq!(out, format!("lease {id} granted with TTL({granted}s)\n"));
    id.to_string()
}

/// A lease id as etcdctl prints it (`%016x`) → the number in JSON output.
pub fn lease_num(hex: &str) -> i64 {
    i64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("lease id {hex:?}: {e}"))
}

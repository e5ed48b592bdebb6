//! Multi-member clusters of etcd 3.4 or modkv, for `tests/tests/cluster.rs`.
//!
//! * [`Cluster::start`] — `n` members `m1..mn` on 127.0.0.1 (fresh client and peer port each), all data
//!   dirs and logs in one temporary directory, started with etcd's static-bootstrap flags and a
//!   per-cluster `--initial-cluster-token`; returns once every member answers `etcdctl endpoint health`.
//! * [`Member`] — one process: [`Member::kill9`], [`Member::restart`], [`Member::pause`] (SIGSTOP) /
//!   [`Member::resume`] (SIGCONT), [`Member::etcdctl`] against that member only, [`Member::status`].
//! * [`Cluster::add_member`] — `etcdctl member add` (optionally `--learner`), then starts the new
//!   process with `--initial-cluster-state existing` and the `ETCD_INITIAL_CLUSTER` etcdctl printed.
//! * [`Cluster::leader`] / [`Cluster::wait_leader`] — who leads, from `endpoint status -w json`.
//! * [`Writer`] — a background thread doing sequential `etcdctl put`s, recording which were
//!   acknowledged; [`put_many_grpc`] — many concurrent puts over the raw gRPC client.
//!
//! Each member's stdout and stderr go to `<tmp>/<name>.log`; when a test panics, dropping the
//! [`Cluster`] prints the last [`LOG_TAIL`] lines of every member's log. Dropping it SIGKILLs all
//! members. Everything waits with a bound.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::ops::{Index, IndexMut};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::grpc::{self, GrpcError, PutRequest, ResponseHeader};
use crate::{etcdctl_at, free_port, wait_timeout, CtlOutput, Kind, Value};

/// How long [`Cluster::start`] waits for all members to be healthy.
pub const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a single (re)started or added member may take to become ready.
pub const MEMBER_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Default raft timing for tests (etcd's defaults are 100 / 1000 ms), unless overridden by `extra_args`.
pub const DEFAULT_HEARTBEAT_MS: &str = "50";
pub const DEFAULT_ELECTION_MS: &str = "500";
/// Lines of each member's log printed when a test panics.
pub const LOG_TAIL: usize = 200;

/// etcd's answer while a reconfiguration would not be safe yet: the member handling it has not been
/// connected to every voting peer for 5 s (etcd's `HealthInterval`, strict reconfig check).
pub const ERR_UNHEALTHY_CLUSTER: &str = "etcdserver: unhealthy cluster";

static TOKEN_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Polls `f` until it returns `Some`, at most `timeout`; panics naming `what` otherwise.
#[track_caller]
pub fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Member ids as etcdctl takes them on the command line (`member remove`, `move-leader`): hex.
pub fn hex_id(id: u64) -> String {
    format!("{id:x}")
}

// ---------------------------------------------------------------------------
// Members
// ---------------------------------------------------------------------------

/// One member process of a [`Cluster`].
pub struct Member {
    pub kind: Kind,
    /// `--name` (`m1`, `m2`, ... or the name given to [`Cluster::add_member`]).
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// Raft member id (from `endpoint status` once ready, or from `member add`).
    pub id: u64,
    /// True while the member is a learner. [`Cluster::add_member`] sets it; a test that promotes the
    /// member clears it. Decides how readiness is checked (see [`Member::wait_ready`]).
    pub learner: bool,
    /// stdout of the `etcdctl member add` that created this member (`None` for initial members).
    pub add_output: Option<String>,
    data_dir: PathBuf,
    log_path: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    paused: bool,
    starts: u32,
}

impl Member {
    /// `http://127.0.0.1:<client_port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:<peer_port>` (`https://` when the members have peer TLS).
    pub fn peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", peer_scheme(&self.args), self.peer_port)
    }

    /// Full argument list of the process.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    pub fn data_dir(&self) -> &PathBuf {
        &self.data_dir
    }

    pub fn log_path(&self) -> &PathBuf {
        &self.log_path
    }

    /// Member id in hex, as etcdctl prints and takes it.
    pub fn id_hex(&self) -> String {
        hex_id(self.id)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        self.starts += 1;
        let mut log = OpenOptions::new().create(true).append(true).open(&self.log_path)?;
        writeln!(log, "=== harness: start #{} of {} member {}: {:?}", self.starts, self.kind, self.name, self.args)?;
        let mut cmd = Command::new(self.kind.binary());
        cmd.args(&self.args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).env("RUST_BACKTRACE", "1");
        self.child = Some(cmd.spawn()?);
        self.paused = false;
        Ok(())
    }

    fn note(&self, msg: &str) {
        if let Ok(mut log) = OpenOptions::new().append(true).open(&self.log_path) {
            let _ = writeln!(log, "=== harness: {msg}");
        }
    }

    /// SIGKILLs the process and reaps it (no-op if not running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            self.note("SIGKILL");
        }
        self.paused = false;
    }

    /// Restarts with the same arguments and data dir (SIGKILLing the process first if it runs) and waits
    /// until it is ready. `--initial-cluster-state` stays what it was; etcd ignores it for an existing
    /// data dir.
    #[track_caller]
    pub fn restart(&mut self) {
        self.kill9();
        if let Err(e) = self.spawn() {
            panic!("cannot respawn {} member {}: {e}", self.kind, self.name);
        }
        if let Err(e) = self.wait_ready(MEMBER_READY_TIMEOUT) {
            panic!("{} member {} not ready after restart: {e}", self.kind, self.name);
        }
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = self.child.as_ref().unwrap_or_else(|| panic!("member {} is not running", self.name)).id();
        // SAFETY: kill(2) on the pid of our own, not yet reaped, child.
        let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed: {}", std::io::Error::last_os_error());
    }

    /// SIGSTOPs the process (it keeps its sockets; peers see it hang).
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = true;
        self.note("SIGSTOP");
    }

    /// SIGCONTs a paused process.
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
        self.note("SIGCONT");
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// True if the process has not exited (paused counts as running).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Running and not paused.
    pub fn is_live(&mut self) -> bool {
        !self.paused && self.is_running()
    }

    /// Waits up to `timeout` for the process to exit by itself; `None` if it is still running (or was
    /// not running at all).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = wait_timeout(self.child.as_mut()?, timeout)?;
        self.child = None;
        self.note(&format!("exited by itself: {status}"));
        Some(status)
    }

    /// OS process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `etcdctl --endpoints <this member> <args>`.
    pub fn etcdctl(&self, args: &[&str]) -> CtlOutput {
        etcdctl_at(&self.endpoint(), args, None)
    }

    /// `etcdctl <args>`, asserting success; returns stdout.
    #[track_caller]
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args);
        assert!(out.success(), "etcdctl {args:?} on {} failed: {out:#?}", self.name);
        out.stdout
    }

    /// `etcdctl -w json <args>`, asserting success; returns the parsed JSON.
    #[track_caller]
    pub fn ctl_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["-w", "json"];
        a.extend_from_slice(args);
        let out = self.etcdctl(&a);
        assert!(out.success(), "etcdctl {a:?} on {} failed: {out:#?}", self.name);
        crate::parse_json(&out.stdout)
    }

    /// Runs `etcdctl <args>` until it succeeds or fails with an error containing none of `retry_on`,
    /// for at most `timeout`; returns the last output.
    pub fn ctl_retry(&self, args: &[&str], retry_on: &[&str], timeout: Duration) -> CtlOutput {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.etcdctl(args);
            let retriable = !out.success() && retry_on.iter().any(|e| out.stderr.contains(e));
            if !retriable || Instant::now() >= deadline {
                return out;
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// `Status` of `etcdctl endpoint status -w json` against this member, or `None` if it fails.
    pub fn status(&self) -> Option<Value> {
        status_of(&self.etcdctl(STATUS_ARGS))
    }

    /// Serializable (local) `get <key>`: the value this member has applied, `None` if absent or the
    /// member does not answer.
    pub fn local_value(&self, key: &str) -> Option<String> {
        let out = self.etcdctl(&[
            "--dial-timeout",
            "1s",
            "--command-timeout",
            "2s",
            "-w",
            "json",
            "get",
            "--consistency=s",
            key,
        ]);
        if !out.success() {
            return None;
        }
        let v: Value = serde_json::from_str(out.stdout.trim()).ok()?;
        crate::kvs(&v).into_iter().next().map(|kv| kv.1)
    }

    /// Polls until the client port accepts connections and the member answers: `endpoint health` for a
    /// voter; for a learner (which refuses linearizable requests, so `endpoint health` fails)
    /// `endpoint status` and a serializable `get`.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let addr: SocketAddr = ([127, 0, 0, 1], self.client_port).into();
        let mut pause = Duration::from_millis(10);
        loop {
            match self.child.as_mut() {
                None => return Err("not running".into()),
                Some(c) => {
                    if let Ok(Some(status)) = c.try_wait() {
                        self.child = None;
                        return Err(format!("exited: {status}"));
                    }
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                let ready = if self.learner {
                    self.status().is_some()
                        && self
                            .etcdctl(&[
                                "--dial-timeout",
                                "1s",
                                "--command-timeout",
                                "2s",
                                "get",
                                "--consistency=s",
                                "x",
                            ])
                            .success()
                } else {
                    self.etcdctl(&["--dial-timeout", "1s", "--command-timeout", "2s", "endpoint", "health"]).success()
                };
                if ready {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready within {timeout:?}"));
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Everything the member's processes wrote so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The last `n` lines of [`Member::log`].
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

// ---------------------------------------------------------------------------
// Clusters
// ---------------------------------------------------------------------------

/// An N-member cluster of one [`Kind`]; index it with `cluster[i]` (member `m{i+1}` for the initial
/// members; added members follow in order of addition; removed ones keep their index).
pub struct Cluster {
    pub kind: Kind,
    /// `--initial-cluster-token`, unique per cluster.
    pub token: String,
    extra_args: Vec<String>,
    dir: tempfile::TempDir,
    members: Vec<Member>,
}

fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}

/// `https` when `args` give the members peer TLS (`--peer-cert-file` or `--peer-auto-tls`), else `http`.
fn peer_scheme(args: &[String]) -> &'static str {
    if has_flag(args, "--peer-cert-file") || has_flag(args, "--peer-auto-tls") {
        "https"
    } else {
        "http"
    }
}

/// `etcdctl` arguments for one member's status, bounded in time.
pub(crate) const STATUS_ARGS: &[&str] =
    &["--dial-timeout", "1s", "--command-timeout", "2s", "-w", "json", "endpoint", "status"];

/// The `Status` object of `endpoint status -w json` output, `None` if the command failed.
pub(crate) fn status_of(out: &CtlOutput) -> Option<Value> {
    if !out.success() {
        return None;
    }
    let v: Value = serde_json::from_str(out.stdout.trim()).ok()?;
    v.get(0)?.get("Status").cloned()
}

/// The flags that place one member: name, data dir, its client and peer URLs, the cluster to form.
pub(crate) fn member_flags(
    name: &str,
    data_dir: &std::path::Path,
    client: &str,
    peer: &str,
    initial_cluster: &str,
    state: &str,
    token: &str,
) -> Vec<String> {
    [
        "--name",
        name,
        "--data-dir",
        &data_dir.display().to_string(),
        "--listen-client-urls",
        client,
        "--advertise-client-urls",
        client,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        initial_cluster,
        "--initial-cluster-token",
        token,
        "--initial-cluster-state",
        state,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The command line of one member.
#[allow(clippy::too_many_arguments)]
fn member_args(
    name: &str,
    data_dir: &std::path::Path,
    client_port: u16,
    peer_port: u16,
    initial_cluster: &str,
    state: &str,
    token: &str,
    extra: &[String],
) -> Vec<String> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("{}://127.0.0.1:{peer_port}", peer_scheme(extra));
    let mut args = member_flags(name, data_dir, &client, &peer, initial_cluster, state, token);
    if !has_flag(extra, "--heartbeat-interval") {
        args.extend(["--heartbeat-interval".to_string(), DEFAULT_HEARTBEAT_MS.to_string()]);
    }
    if !has_flag(extra, "--election-timeout") {
        args.extend(["--election-timeout".to_string(), DEFAULT_ELECTION_MS.to_string()]);
    }
    args.extend(extra.iter().cloned());
    args
}

impl Cluster {
    /// Starts `n` members `m1..mn` and waits until each answers `etcdctl endpoint health`. `extra_args`
    /// are appended to every member's command line (and replace the default `--heartbeat-interval` /
    /// `--election-timeout` if they contain them). Retries with fresh ports (up to three attempts) only
    /// if a port was taken meanwhile; panics with every member's log otherwise.
    #[track_caller]
    pub fn start(kind: Kind, n: usize, extra_args: &[&str]) -> Cluster {
        assert!(n >= 1);
        for attempt in 1..=3 {
            let mut c = Cluster::spawn(kind, n, extra_args);
            match c.wait_all_ready(CLUSTER_READY_TIMEOUT) {
                Ok(()) => return c,
                Err(e) => {
                    let port_taken = c.members.iter().any(|m| m.log().contains("address already in use"));
                    if port_taken && attempt < 3 {
                        drop(c);
                        continue;
                    }
                    panic!("{kind} cluster of {n} did not become ready: {e}");
                }
            }
        }
        unreachable!()
    }

    fn spawn(kind: Kind, n: usize, extra_args: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("modkv-cluster-{}-", kind.label()))
            .tempdir()
            .expect("create tempdir");
        let token = format!(
            "modkv-test-{}-{}-{}",
            kind.label(),
            std::process::id(),
            TOKEN_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let extra: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{}={}://127.0.0.1:{p}", i + 1, peer_scheme(&extra)))
            .collect::<Vec<_>>()
            .join(",");
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, &(client_port, peer_port))| {
                let name = format!("m{}", i + 1);
                let data_dir = dir.path().join(format!("{name}.data"));
                let args =
                    member_args(&name, &data_dir, client_port, peer_port, &initial_cluster, "new", &token, &extra);
                Member {
                    kind,
                    log_path: dir.path().join(format!("{name}.log")),
                    name,
                    client_port,
                    peer_port,
                    id: 0,
                    learner: false,
                    add_output: None,
                    data_dir,
                    args,
                    child: None,
                    paused: false,
                    starts: 0,
                }
            })
            .collect();
        let mut c = Cluster { kind, token, extra_args: extra, dir, members };
        for m in &mut c.members {
            if let Err(e) = m.spawn() {
                panic!("cannot spawn {}: {e}", kind.binary().display());
            }
        }
        c
    }

    fn wait_all_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        for m in &mut self.members {
            let left = deadline.saturating_duration_since(Instant::now());
            m.wait_ready(left).map_err(|e| format!("member {}: {e}", m.name))?;
        }
        for m in &mut self.members {
            let status = m.status().ok_or_else(|| format!("member {}: no endpoint status", m.name))?;
            m.id = status["header"]["member_id"].as_u64().ok_or_else(|| format!("no member_id in {status}"))?;
        }
        Ok(())
    }

    /// Number of members ever part of this cluster (including removed ones).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The temporary directory holding data dirs and logs.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Index of the member called `name`.
    #[track_caller]
    pub fn find(&self, name: &str) -> usize {
        self.members.iter().position(|m| m.name == name).unwrap_or_else(|| panic!("no member {name}"))
    }

    /// Index of the member with raft id `id`.
    pub fn index_of_id(&self, id: u64) -> Option<usize> {
        self.members.iter().position(|m| m.id == id)
    }

    /// Indices of members that run and are not paused.
    pub fn live(&mut self) -> Vec<usize> {
        (0..self.members.len()).filter(|&i| self.members[i].is_live()).collect()
    }

    /// Client URLs of `idx`, comma-separated (for `--endpoints`).
    pub fn endpoints(&self, idx: &[usize]) -> String {
        idx.iter().map(|&i| self.members[i].endpoint()).collect::<Vec<_>>().join(",")
    }

    /// The cluster id (`header.cluster_id` of a live member's status).
    #[track_caller]
    pub fn cluster_id(&mut self) -> u64 {
        let live = self.live();
        live.iter()
            .find_map(|&i| self.members[i].status())
            .and_then(|s| s["header"]["cluster_id"].as_u64())
            .expect("no live member answers endpoint status")
    }

    /// `endpoint status` of each of `idx`, queried concurrently.
    pub fn statuses(&self, idx: &[usize]) -> Vec<(usize, Option<Value>)> {
        thread::scope(|s| {
            let handles: Vec<_> =
                idx.iter().map(|&i| (i, s.spawn(move || self.members[i].status()))).collect::<Vec<_>>();
            handles.into_iter().map(|(i, h)| (i, h.join().unwrap())).collect()
        })
    }

    /// The leader among the live members: the one whose `endpoint status` names itself as leader
    /// (`Status.leader == Status.header.member_id`); if several do (a deposed leader that has not noticed
    /// yet), the one with the highest `raftTerm`.
    pub fn leader(&mut self) -> Option<usize> {
        let live = self.live();
        self.statuses(&live)
            .into_iter()
            .filter_map(|(i, s)| {
                let s = s?;
                let own = s["header"]["member_id"].as_u64()?;
                (s["leader"].as_u64() == Some(own)).then(|| (s["raftTerm"].as_u64().unwrap_or(0), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// Waits until a live member leads and every live member's status agrees on it; returns its index.
    #[track_caller]
    pub fn wait_leader(&mut self, timeout: Duration) -> usize {
        let live = self.live();
        self.wait_leader_among(&live, timeout)
    }

    /// Like [`Cluster::wait_leader`], requiring the leader to be one of `candidates`.
    #[track_caller]
    pub fn wait_leader_among(&mut self, candidates: &[usize], timeout: Duration) -> usize {
        let what = format!("a leader among {candidates:?} agreed by all live members");
        poll(timeout, &what, || {
            let l = self.leader()?;
            if !candidates.contains(&l) {
                return None;
            }
            let id = self.members[l].id;
            let live = self.live();
            let agreed =
                self.statuses(&live).into_iter().all(|(_, s)| s.is_some_and(|s| s["leader"].as_u64() == Some(id)));
            agreed.then_some(l)
        })
    }

    /// Runs `etcdctl member add <name> --peer-urls=<fresh url> [--learner]` against a live voter
    /// (retrying while etcd answers [`ERR_UNHEALTHY_CLUSTER`]), then starts the new member with
    /// `--initial-cluster-state existing` and the `ETCD_INITIAL_CLUSTER` etcdctl printed, and waits until
    /// it is ready (learner-aware, see [`Member::wait_ready`]). Returns its index. The `member add` output
    /// is kept in [`Member::add_output`].
    #[track_caller]
    pub fn add_member(&mut self, name: &str, learner: bool) -> usize {
        let (client_port, peer_port) = (free_port(), free_port());
        let peer = format!("{}://127.0.0.1:{peer_port}", peer_scheme(&self.extra_args));
        let via = self.live().into_iter().find(|&i| !self.members[i].learner).expect("no live voter");
        let peer_flag = format!("--peer-urls={peer}");
        let mut args = vec!["member", "add", name, &peer_flag];
        if learner {
            args.push("--learner");
        }
        let out = self.members[via].ctl_retry(&args, &[ERR_UNHEALTHY_CLUSTER], Duration::from_secs(20));
        assert!(out.success(), "member add {name} via {} failed: {out:#?}", self.members[via].name);
        let stdout = out.stdout.clone();
        let first = stdout.lines().next().unwrap_or_default();
        let id_hex = first
            .strip_prefix("Member ")
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected member add output: {stdout:?}"));
        let id = u64::from_str_radix(id_hex, 16).unwrap_or_else(|e| panic!("bad id {id_hex:?}: {e}"));
        let var = |key: &str| -> String {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=\"")).and_then(|v| v.strip_suffix('"')))
                .unwrap_or_else(|| panic!("no {key} in member add output: {stdout:?}"))
                .to_string()
        };
        let initial_cluster = var("ETCD_INITIAL_CLUSTER");
        let data_dir = self.dir.path().join(format!("{name}.data"));
        let args = member_args(
            name,
            &data_dir,
            client_port,
            peer_port,
            &initial_cluster,
            "existing",
            &self.token,
            &self.extra_args,
        );
        let mut m = Member {
            kind: self.kind,
            name: name.to_string(),
            client_port,
            peer_port,
            id,
            learner,
            add_output: Some(stdout),
            log_path: self.dir.path().join(format!("{name}.log")),
            data_dir,
            args,
            child: None,
            paused: false,
            starts: 0,
        };
        if let Err(e) = m.spawn() {
            panic!("cannot spawn {}: {e}", self.kind.binary().display());
        }
        self.members.push(m);
        let i = self.members.len() - 1;
        if let Err(e) = self.members[i].wait_ready(MEMBER_READY_TIMEOUT) {
            panic!("added {} member {name} not ready: {e}", self.kind);
        }
        i
    }
}

impl Index<usize> for Cluster {
    type Output = Member;
    fn index(&self, i: usize) -> &Member {
        &self.members[i]
    }
}

impl IndexMut<usize> for Cluster {
    fn index_mut(&mut self, i: usize) -> &mut Member {
        &mut self.members[i]
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill9();
        }
        if thread::panicking() {
            for m in &self.members {
                let tail = m.log_tail(LOG_TAIL);
                eprintln!(
                    "--- {} member {} log ({}, last {} lines) ---\n{tail}\n--- end of {} log ---",
                    self.kind,
                    m.name,
                    m.log_path.display(),
                    tail.lines().count(),
                    m.name
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------

/// `Some(error)` if nothing listens on the `http://host:port` endpoint (connection refused).
fn connect_refused(endpoint: &str) -> Option<String> {
    let addr: SocketAddr = endpoint.strip_prefix("http://")?.parse().ok()?;
    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(format!("harness: {e}")),
        _ => None,
    }
}

/// What a [`Writer`] did.
#[derive(Debug, Default, Clone)]
pub struct WriteLog {
    /// `(key, value)` of every put etcdctl reported `OK` for, in order.
    pub acked: Vec<(String, String)>,
    /// `(key, endpoint, error lines)` of every put that failed (it may or may not have been applied).
    pub failed: Vec<(String, String, String)>,
}

/// A background thread doing sequential `etcdctl put <prefix><i:06> v<i>`, round-robin over a set of
/// endpoints (`--dial-timeout 1s --command-timeout 3s`), recording which puts were acknowledged.
pub struct Writer {
    stop: Arc<AtomicBool>,
    endpoints: Arc<Mutex<Vec<String>>>,
    log: Arc<Mutex<WriteLog>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(endpoints: Vec<String>, prefix: &str) -> Writer {
        assert!(!endpoints.is_empty());
        let stop = Arc::new(AtomicBool::new(false));
        let endpoints = Arc::new(Mutex::new(endpoints));
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let handle = {
            let (stop, endpoints, log, prefix) = (stop.clone(), endpoints.clone(), log.clone(), prefix.to_string());
            thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let ep = {
                        let eps = endpoints.lock().unwrap();
                        eps[i % eps.len()].clone()
                    };
                    let (key, value) = (format!("{prefix}{i:06}"), format!("v{i}"));
                    // A killed member refuses connections; etcdctl would spend its whole dial timeout
                    // on it, so such a put fails fast without etcdctl.
                    let result = match connect_refused(&ep) {
                        Some(e) => Err(e),
                        None => {
                            let out = etcdctl_at(
                                &ep,
                                &["--dial-timeout", "1s", "--command-timeout", "3s", "put", &key, &value],
                                None,
                            );
                            if out.success() && out.stdout == "OK\n" {
                                Ok(())
                            } else {
                                Err(out.error_lines().join(" | "))
                            }
                        }
                    };
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    match result {
                        Ok(()) => log.acked.push((key, value)),
                        Err(e) => log.failed.push((key, ep, e)),
                    }
                    i += 1;
                }
            })
        };
        Writer { stop, endpoints, log, handle: Some(handle) }
    }

    /// Replaces the endpoints used from the next put on.
    pub fn set_endpoints(&self, endpoints: Vec<String>) {
        assert!(!endpoints.is_empty());
        *self.endpoints.lock().unwrap() = endpoints;
    }

    /// Number of acknowledged puts so far.
    pub fn acked(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).acked.len()
    }

    /// The most recent acknowledged put.
    pub fn last_acked(&self) -> Option<(String, String)> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).acked.last().cloned()
    }

    /// Waits until at least `n` puts have been acknowledged.
    #[track_caller]
    pub fn wait_acked(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.acked() < n {
            if Instant::now() >= deadline {
                let log = self.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let recent: Vec<_> = log.failed.iter().rev().take(5).collect();
                panic!(
                    "writer: {} of {n} puts acknowledged after {timeout:?}; recent failures: {recent:#?}",
                    log.acked.len()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the thread (after its current put) and returns what it did.
    pub fn stop(mut self) -> WriteLog {
        self.stop_thread();
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// Puts `<prefix><i:05>` = `v<i>` for `i` in `0..n` over the raw gRPC client, from `threads` concurrent
/// connections spread over `endpoints`; each put is retried a few times, then the call panics. Returns
/// how long it took.
#[track_caller]
pub fn put_many_grpc(endpoints: &[String], prefix: &str, n: usize, threads: usize) -> Duration {
    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..threads {
            let ep = endpoints[t % endpoints.len()].clone();
            s.spawn(move || {
                let mut client = grpc::Client::connect(&ep).unwrap_or_else(|e| panic!("connect {ep}: {e:?}"));
                for i in (t..n).step_by(threads) {
                    let (key, value) = (format!("{prefix}{i:05}"), format!("v{i}"));
                    let mut attempt = 0;
                    loop {
                        match client.put(PutRequest::new(&key, &value)) {
                            Ok(_) => break,
                            Err(e) if attempt < 5 => {
                                attempt += 1;
                                eprintln!("put {key} via {ep} failed ({e:?}), retrying");
                                thread::sleep(Duration::from_millis(200));
                            }
                            Err(e) => panic!("put {key} via {ep} failed: {e:?}"),
                        }
                    }
                }
            });
        }
    });
    start.elapsed()
}

// ---------------------------------------------------------------------------
// Raw gRPC: Maintenance/MoveLeader (etcdctl refuses to send it to a non-leader)
// ---------------------------------------------------------------------------

/// `etcdserverpb.MoveLeaderRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct MoveLeaderRequest {
    #[prost(uint64, tag = "1")]
    pub target_id: u64,
}

/// `etcdserverpb.MoveLeaderResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct MoveLeaderResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

/// Calls `/etcdserverpb.Maintenance/MoveLeader` on `endpoint` directly. etcdctl's `move-leader` first
/// asks every endpoint for its status and only sends the request to the one that is leader.
pub fn move_leader_grpc(endpoint: &str, target_id: u64) -> Result<MoveLeaderResponse, GrpcError> {
    grpc::unary_once(endpoint, "/etcdserverpb.Maintenance/MoveLeader", MoveLeaderRequest { target_id })
}

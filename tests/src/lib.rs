//! Test harness for modkv's integration tests.
//!
//! Every test talks to a server process through the real `etcdctl` 3.4 client,
//! so the same test body can run against the reference etcd 3.4
//! (`/usr/bin/etcd`) and against modkv. See [`both_kinds!`] for how a test is
//! instantiated for both, and the `modkv` feature in `tests/Cargo.toml` for the
//! switch that un-ignores the modkv variants.
//!
//! Overview:
//! * [`Kind`] — which server binary to run.
//! * [`Server::start`] / [`ServerOpts`] — a single-member cluster on free ports
//!   with a temporary data dir; [`Server::kill9`], [`Server::restart`],
//!   [`Server::stop`]; the process log is printed when a test panics.
//! * [`Server::etcdctl`] / [`Server::etcdctl_stdin`] → [`CtlOutput`].
//! * [`run_to_exit`] — run a server binary that is expected to exit (startup
//!   errors).
//! * [`Normalizer`] / [`normalize`] — make `-w json` output of independent
//!   servers comparable.
//! * [`grpc`] — raw `KV/Range` for request fields etcdctl 3.4 has no flags for.
//! * [`netns`] — clusters whose members run in their own network namespaces (partition tests).
//! * [`test_plugins`] — the guest crates of `tests/plugins/`, built and installed into a plugin dir.

pub mod cluster;
pub mod grpc;
pub mod h2frame;
pub mod h2stall;
pub mod http;
pub mod netns;
pub mod procstat;
pub mod test_plugins;
pub mod tls;
pub mod txnwire;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

pub use serde_json::{json, Value};

/// How long to wait for a server to answer `etcdctl endpoint health`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Hard limit for a single etcdctl invocation (etcdctl's own
/// `--command-timeout` is 5 s; this only guards against hangs).
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Path of the reference etcd binary.
pub fn etcd_bin() -> PathBuf {
    env_path("ETCD_BIN").unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"))
}

/// Path of the etcdctl 3.4 client.
pub fn etcdctl_bin() -> PathBuf {
    env_path("ETCDCTL_BIN").unwrap_or_else(|| PathBuf::from("/usr/bin/etcdctl"))
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
// Process helpers
// ---------------------------------------------------------------------------

/// Output of a finished child process.
#[derive(Clone, Debug)]
pub struct CtlOutput {
    /// Exit code; -1 if killed by a signal or timed out.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// Asserts exit code 0 and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.status, 0, "command failed: {self:#?}");
        &self.stdout
    }

    /// Asserts exit code 0 and parses stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        let out = self.ok();
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    /// `(status, stdout, stderr)`.
    pub fn into_tuple(self) -> (i32, String, String) {
        (self.status, self.stdout, self.stderr)
    }

    /// stderr lines that are not etcdctl's structured client-side log lines
    /// (those carry a timestamp and a random client id), e.g.
    /// `["Error: etcdserver: key not found"]`.
    pub fn error_lines(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && client_log_line(l).is_none())
            .map(str::to_string)
            .collect()
    }

    /// The `error` field of etcdctl's client-side log lines, i.e. the gRPC
    /// status as the client saw it, e.g.
    /// `["rpc error: code = InvalidArgument desc = etcdserver: key not found"]`.
    pub fn rpc_errors(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter_map(client_log_line)
            .filter_map(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .collect()
    }

    /// Asserts that the command failed the way etcdctl reports a server-side
    /// error: exit code 1, `Error: <desc>` as the only plain stderr line, and
    /// the gRPC status `code = <code> desc = <desc>`.
    #[track_caller]
    pub fn assert_server_error(&self, code: &str, desc: &str) {
        assert_eq!(
            (self.status, self.stdout.as_str(), self.error_lines()),
            (1, "", vec![format!("Error: {desc}")]),
            "unexpected result: {self:#?}"
        );
        let rpc = self.rpc_errors();
        assert!(!rpc.is_empty(), "no client log line with the gRPC status: {self:#?}");
        for e in rpc {
            assert_eq!(e, format!("rpc error: code = {code} desc = {desc}"), "{self:#?}");
        }
    }
}

fn client_log_line(line: &str) -> Option<Value> {
    let t = line.trim();
    if !t.starts_with('{') {
        return None;
    }
    let v: Value = serde_json::from_str(t).ok()?;
    (v.get("level").is_some() && v.get("msg").is_some()).then_some(v)
}

/// Runs `cmd` with `stdin` to completion, with a hard timeout.
pub fn run_command(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> CtlOutput {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let writer = stdin.map(|data| {
        let data = data.to_vec();
        let mut pipe = child.stdin.take().unwrap();
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let out_reader = read_to_end_thread(child.stdout.take().unwrap());
    let err_reader = read_to_end_thread(child.stderr.take().unwrap());
    let status = wait_timeout(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    CtlOutput {
        status: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: match status {
            Some(_) => String::from_utf8_lossy(&stderr).into_owned(),
            None => format!("{}\n<harness: timed out after {timeout:?}>", String::from_utf8_lossy(&stderr)),
        },
    }
}

fn read_to_end_thread<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Waits for `child` to exit, polling; `None` on timeout (child left running).
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Runs etcdctl (API v3) against `endpoint` (e.g. `http://127.0.0.1:2379`).
pub fn etcdctl_at(endpoint: &str, args: &[&str], stdin: Option<&[u8]>) -> CtlOutput {
    let mut cmd = Command::new(etcdctl_bin());
    cmd.env("ETCDCTL_API", "3").env_remove("ETCDCTL_ENDPOINTS").arg("--endpoints").arg(endpoint).args(args);
    run_command(cmd, stdin, ETCDCTL_TIMEOUT)
}

// ---------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------

/// Options for [`Server::start`].
#[derive(Clone, Debug)]
pub struct ServerOpts {
    /// `--name`, also used in `--initial-cluster`.
    pub name: String,
    /// Extra command-line arguments appended after the standard ones.
    pub args: Vec<String>,
    /// How long to wait for `endpoint health` to succeed.
    pub ready_timeout: Duration,
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts { name: "node1".to_string(), args: Vec::new(), ready_timeout: READY_TIMEOUT }
    }
}

impl ServerOpts {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}

/// The standard single-member arguments shared by etcd and modkv.
pub fn standard_args(name: &str, data_dir: &Path, client_port: u16, peer_port: u16) -> Vec<String> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    vec![
        "--name".into(),
        name.into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--listen-client-urls".into(),
        client.clone(),
        "--advertise-client-urls".into(),
        client,
        "--listen-peer-urls".into(),
        peer.clone(),
        "--initial-advertise-peer-urls".into(),
        peer.clone(),
        "--initial-cluster".into(),
        format!("{name}={peer}"),
    ]
}

/// A running single-member server with its own temporary directory.
///
/// The directory holds the data dir (`<tmp>/data`) and the process log
/// (`<tmp>/server.log`, stdout and stderr of every incarnation). Dropping the
/// server SIGKILLs it; if the thread is panicking, the log is printed first.
pub struct Server {
    pub kind: Kind,
    pub opts: ServerOpts,
    pub client_port: u16,
    pub peer_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

/// Why a server did not become ready.
#[derive(Debug)]
pub enum StartError {
    /// The process exited before becoming ready.
    Exited(ExitStatus),
    /// Not healthy within the timeout.
    Timeout,
    /// The binary could not be spawned.
    Spawn(std::io::Error),
}

impl Server {
    /// Starts a server and waits until `etcdctl endpoint health` succeeds.
    /// Panics (printing the server log) if it does not become ready.
    #[track_caller]
    pub fn start(kind: Kind, opts: ServerOpts) -> Server {
        Server::start_retrying(kind, "", || {
            let mut server = Server::spawn(kind, opts.clone());
            let ready = server.wait_ready();
            (server, ready)
        })
    }

    /// Runs `attempt` (spawn a server and wait for it) until it is ready. A port can be taken by another
    /// process between our check and the server's bind: only then is it retried, with fresh ports, up to
    /// three times. Panics with the server log otherwise; `how` qualifies the message (e.g. " over https").
    #[track_caller]
    pub fn start_retrying(
        kind: Kind,
        how: &str,
        mut attempt: impl FnMut() -> (Server, Result<(), StartError>),
    ) -> Server {
        let mut last = String::new();
        for _ in 0..3 {
            let (mut server, ready) = attempt();
            match ready {
                Ok(()) => return server,
                Err(e) => {
                    let log = server.log();
                    server.kill9();
                    if log.contains("address already in use") {
                        last = format!("{e:?}\n{log}");
                        continue;
                    }
                    let dir = server.dir.path().display().to_string();
                    drop(server);
                    panic!("{kind} did not become ready{how}: {e:?}\n--- log ({dir}) ---\n{log}\n--- end of log ---");
                }
            }
        }
        panic!("{kind} did not become ready after 3 attempts (ports in use):\n{last}");
    }

    /// Spawns the server on fresh ports without waiting for it.
    pub fn spawn(kind: Kind, opts: ServerOpts) -> Server {
        let dir = tempfile::Builder::new()
            .prefix(&format!("modkv-test-{}-", kind.label()))
            .tempdir()
            .expect("create tempdir");
        let mut server =
            Server { kind, opts, client_port: free_port(), peer_port: free_port(), dir, child: None, starts: 0 };
        if let Err(e) = server.spawn_process() {
            panic!("cannot spawn {}: {e}", kind.binary().display());
        }
        server
    }

    fn spawn_process(&mut self) -> std::io::Result<()> {
        self.starts += 1;
        let mut log = OpenOptions::new().create(true).append(true).open(self.log_path())?;
        writeln!(log, "=== harness: start #{} of {}: {:?}", self.starts, self.kind, self.args())?;
        let mut cmd = Command::new(self.kind.binary());
        cmd.args(self.args()).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).env("RUST_BACKTRACE", "1");
        self.child = Some(cmd.spawn()?);
        Ok(())
    }

    /// Full argument list used to start the server.
    pub fn args(&self) -> Vec<String> {
        let mut args = standard_args(&self.opts.name, &self.data_dir(), self.client_port, self.peer_port);
        args.extend(self.opts.args.iter().cloned());
        args
    }

    /// Polls until the client port accepts connections and
    /// `etcdctl endpoint health` succeeds.
    pub fn wait_ready(&mut self) -> Result<(), StartError> {
        let endpoint = self.endpoint();
        self.wait_ready_at(&endpoint, &[])
    }

    /// Like [`Server::wait_ready`], against `endpoint` with extra etcdctl flags (e.g. TLS ones).
    pub fn wait_ready_at(&mut self, endpoint: &str, ctl: &[&str]) -> Result<(), StartError> {
        let deadline = Instant::now() + self.opts.ready_timeout;
        let addr: SocketAddr = ([127, 0, 0, 1], self.client_port).into();
        let mut pause = Duration::from_millis(5);
        let mut args = ctl.to_vec();
        args.extend(["--dial-timeout", "1s", "--command-timeout", "2s", "endpoint", "health"]);
        loop {
            match self.child.as_mut() {
                None => return Err(StartError::Timeout),
                Some(c) => {
                    if let Ok(Some(status)) = c.try_wait() {
                        return Err(StartError::Exited(status));
                    }
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && etcdctl_at(endpoint, &args, None).success()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartError::Timeout);
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<client_port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:<peer_port>`.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The temporary directory owned by this server.
    pub fn tmp_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Everything the server wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read(self.log_path()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// OS process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs `etcdctl --endpoints <this server> <args>`.
    pub fn etcdctl(&self, args: &[&str]) -> CtlOutput {
        etcdctl_at(&self.endpoint(), args, None)
    }

    /// Like [`Server::etcdctl`], feeding `stdin` (for `txn`, or `put <key>`
    /// reading the value from stdin).
    pub fn etcdctl_stdin(&self, args: &[&str], stdin: &[u8]) -> CtlOutput {
        etcdctl_at(&self.endpoint(), args, Some(stdin))
    }

    /// `etcdctl <args>`, asserting success; returns stdout.
    #[track_caller]
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        self.etcdctl(args).ok().to_string()
    }

    /// `etcdctl -w json <args>`, asserting success; returns the parsed JSON.
    #[track_caller]
    pub fn ctl_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["-w", "json"];
        a.extend_from_slice(args);
        self.etcdctl(&a).json()
    }

    /// Current store revision (`header.revision` of a `get`).
    #[track_caller]
    pub fn revision(&self) -> i64 {
        self.ctl_json(&["get", "revision-probe"])["header"]["revision"].as_i64().expect("header.revision")
    }

    /// SIGKILLs the process and reaps it (no-op if not running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits up to 15 s for a clean exit (then SIGKILL).
    /// Returns the exit status (`None` if it had to be killed or was not running).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        match wait_timeout(&mut c, Duration::from_secs(15)) {
            Some(s) => Some(s),
            None => {
                let _ = c.kill();
                let _ = c.wait();
                None
            }
        }
    }

    /// Restarts with the same data dir, ports and arguments (SIGKILLing the
    /// current process first if it is still running) and waits until ready.
    #[track_caller]
    pub fn restart(&mut self) {
        self.kill9();
        if let Err(e) = self.spawn_process() {
            panic!("cannot respawn {}: {e}", self.kind.binary().display());
        }
        if let Err(e) = self.wait_ready() {
            let log = self.log();
            panic!("{} did not become ready after restart: {e:?}\n--- log ---\n{log}\n--- end of log ---", self.kind);
        }
    }

    /// True if the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(300)..];
            eprintln!(
                "--- {} log ({}, last {} lines) ---\n{}\n--- end of {} log ---",
                self.kind,
                self.log_path().display(),
                tail.len(),
                tail.join("\n"),
                self.kind
            );
        }
    }
}

/// Starts several servers concurrently (startup dominates test time).
pub fn start_all(specs: Vec<(Kind, ServerOpts)>) -> Vec<Server> {
    let handles: Vec<_> = specs.into_iter().map(|(k, o)| thread::spawn(move || Server::start(k, o))).collect();
    handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
}

/// Result of [`run_to_exit`].
#[derive(Debug)]
pub struct ExitOutput {
    /// Exit code; `None` if the process did not exit within the timeout
    /// (it is killed) or was killed by a signal.
    pub code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `kind` with exactly `args`, expecting it to exit by itself within
/// `timeout` (used for startup-error tests).
pub fn run_to_exit(kind: Kind, args: &[String], timeout: Duration) -> ExitOutput {
    let mut cmd = Command::new(kind.binary());
    cmd.args(args).env("RUST_BACKTRACE", "1");
    let out = run_command(cmd, None, timeout);
    let timed_out = out.stderr.ends_with(&format!("<harness: timed out after {timeout:?}>"));
    ExitOutput {
        code: if out.status == -1 { None } else { Some(out.status) },
        timed_out,
        stdout: out.stdout,
        stderr: out.stderr,
    }
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
/// The modkv variants are `#[ignore]`d unless the crate feature `modkv` is
/// enabled — THE single switch is `default = [...]` in `tests/Cargo.toml`
/// (or pass `--features modkv`, or run with `-- --include-ignored`).
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
                    ignore = "modkv server not runnable yet; enable feature `modkv` of modkv-tests"
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

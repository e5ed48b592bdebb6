//! The one server process type of the harness: a [`Member`] runs a server binary (modkv or the reference
//! etcd, see [`Kind`]) with its arguments, for a single [`crate::Server`], a member of a loopback
//! [`crate::cluster::Cluster`] or one in its own network namespace ([`crate::netns::NsCluster`]).
//!
//! * Starting: `Member::launch` spawns the binary (through `ip netns exec` for a member in a namespace)
//!   with stdout and stderr appended to `<dir>/<name>.log`, each start and each signal noted there;
//!   [`Member::wait_ready`] polls until the member answers; `start_with_retries` starts again on fresh
//!   ports when a port was taken between our check and the server's bind.
//! * Stopping: [`Member::kill9`], [`Member::stop`] (SIGTERM), [`Member::restart`] (same arguments and data
//!   dir), [`Member::pause`] / [`Member::resume`] (SIGSTOP / SIGCONT), [`Member::wait_exit`].
//! * etcdctl against this member only: [`Member::etcdctl`], [`Member::etcdctl_stdin`], [`Member::ctl_ok`],
//!   [`Member::ctl_json`], [`Member::ctl_retry`], [`Member::status`], [`Member::local_value`],
//!   [`Member::revision`].
//! * Dropping a member SIGKILLs it; when the test panics, the last [`LOG_TAIL`] lines of its log are
//!   printed first.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::ctl::{etcdctl_at, status_of, wait_timeout, CtlOutput, STATUS_ARGS};
use crate::{Kind, Value};

/// How long a (re)started member may take to become ready, unless its owner says otherwise.
pub const MEMBER_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of a member's log printed when a test panics.
pub const LOG_TAIL: usize = 300;
/// How long [`Member::stop`] waits for the process to exit after SIGTERM before it SIGKILLs it.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Member ids as etcdctl takes them on the command line (`member remove`, `move-leader`): hex.
pub fn hex_id(id: u64) -> String {
    format!("{id:x}")
}

/// Why a server did not become ready.
#[derive(Debug)]
pub enum StartError {
    /// The process exited before becoming ready.
    Exited(ExitStatus),
    /// Not ready within the timeout.
    Timeout,
    /// The process was not running (never started, or killed).
    NotRunning,
    /// The binary could not be spawned.
    Spawn(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Exited(status) => write!(f, "exited: {status}"),
            StartError::Timeout => f.write_str("not ready in time"),
            StartError::NotRunning => f.write_str("not running"),
            StartError::Spawn(e) => write!(f, "cannot spawn: {e}"),
        }
    }
}

/// True if `args` hold `flag`, as `flag value` or `flag=value`.
pub(crate) fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}

/// `https` when `args` give the member peer TLS (`--peer-cert-file` or `--peer-auto-tls`), else `http`.
pub(crate) fn peer_scheme(args: &[String]) -> &'static str {
    if has_flag(args, "--peer-cert-file") || has_flag(args, "--peer-auto-tls") {
        "https"
    } else {
        "http"
    }
}

/// One server process, with its data dir and log in its owner's temporary directory.
pub struct Member {
    pub kind: Kind,
    /// `--name` (`m1`, `m2`, ... in a cluster, `node1` or the name in [`crate::ServerOpts`] for a server).
    pub name: String,
    /// The address clients reach the member at: `127.0.0.1`, or its address in its network namespace.
    pub client_ip: String,
    pub client_port: u16,
    /// The address peers reach the member at.
    pub peer_ip: String,
    pub peer_port: u16,
    /// Raft member id (from `endpoint status` once a cluster is ready, or from `member add`).
    pub id: u64,
    /// True while the member is a learner. [`crate::cluster::Cluster::add_member`] sets it; a test that
    /// promotes the member clears it. Decides how readiness is checked (see [`Member::wait_ready`]).
    pub learner: bool,
    /// stdout of the `etcdctl member add` that created this member (`None` for initial members).
    pub add_output: Option<String>,
    /// The full command line after the binary (set by the owner before [`Member::launch`]).
    pub(crate) args: Vec<String>,
    /// Network namespace the member runs in (`ip netns exec <namespace> <binary>`), if any.
    pub(crate) namespace: Option<String>,
    /// URL and extra etcdctl flags of the readiness check, when the plain client URL does not answer
    /// (a server on `https://` URLs).
    pub(crate) probe: Option<(String, Vec<String>)>,
    /// How long [`Member::restart`] waits for readiness.
    pub(crate) ready_timeout: Duration,
    /// The binary run instead of the kind's (e.g. `modkv-failpoints`), from the next start on.
    pub binary: Option<PathBuf>,
    /// Extra environment of the process (e.g. `FAILPOINTS`), from the next start on.
    pub env: Vec<(String, String)>,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    paused: bool,
    starts: u32,
}

impl Member {
    /// A member that is not started yet, with data dir `<dir>/<name>.data` and log `<dir>/<name>.log`;
    /// its owner sets [`Member::args`] (and, if needed, the namespace and readiness probe) and launches it.
    pub(crate) fn new(kind: Kind, name: &str, dir: &Path, client: (&str, u16), peer: (&str, u16)) -> Member {
        Member {
            kind,
            name: name.to_string(),
            client_ip: client.0.to_string(),
            client_port: client.1,
            peer_ip: peer.0.to_string(),
            peer_port: peer.1,
            id: 0,
            learner: false,
            add_output: None,
            args: Vec::new(),
            namespace: None,
            probe: None,
            ready_timeout: MEMBER_READY_TIMEOUT,
            binary: None,
            env: Vec::new(),
            data_dir: dir.join(format!("{name}.data")),
            log_path: dir.join(format!("{name}.log")),
            child: None,
            paused: false,
            starts: 0,
        }
    }

    /// `http://<client address>:<client_port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.client_ip, self.client_port)
    }

    /// `http://<peer address>:<peer_port>` (`https://` when the member has peer TLS).
    pub fn peer_url(&self) -> String {
        format!("{}://{}:{}", peer_scheme(&self.args), self.peer_ip, self.peer_port)
    }

    /// Full argument list of the process (after the binary).
    pub fn args(&self) -> Vec<String> {
        self.args.clone()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    /// The file that collects stdout and stderr of every start of the process.
    pub fn log_path(&self) -> PathBuf {
        self.log_path.clone()
    }

    /// Member id in hex, as etcdctl prints and takes it.
    pub fn id_hex(&self) -> String {
        hex_id(self.id)
    }

    /// Spawns the process (not waiting for it), its output appended to the log.
    pub(crate) fn launch(&mut self) -> std::io::Result<()> {
        self.starts += 1;
        let mut log = OpenOptions::new().create(true).append(true).open(&self.log_path)?;
        let place = self.namespace.as_ref().map(|ns| format!(" in namespace {ns}")).unwrap_or_default();
        let env = if self.env.is_empty() { String::new() } else { format!(" with {:?}", self.env) };
        writeln!(
            log,
            "=== harness: start #{} of {} {}{place}{env}: {:?}",
            self.starts, self.kind, self.name, self.args
        )?;
        let binary = self.binary.clone().unwrap_or_else(|| self.kind.binary());
        let mut cmd = match &self.namespace {
            None => Command::new(&binary),
            // `ip netns exec` execs the binary: the child is the member itself.
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(&binary);
                cmd
            }
        };
        // RUST_BACKTRACE: a panic shows where.
        cmd.env("RUST_BACKTRACE", "1").envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.args(&self.args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        self.child = Some(cmd.spawn()?);
        self.paused = false;
        Ok(())
    }

    /// Starts the process without waiting for it to become ready ([`Member::launch`]), panicking if the
    /// binary cannot be spawned.
    #[track_caller]
    pub fn launch_or_panic(&mut self) {
        if let Err(e) = self.launch() {
            let binary = self.binary.clone().unwrap_or_else(|| self.kind.binary());
            panic!("cannot spawn {}: {e}", binary.display());
        }
    }

    /// Appends `=== harness: <msg>` to the log (what the harness did, among what the server wrote).
    pub(crate) fn note(&self, msg: &str) {
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

    /// Sends SIGTERM and waits up to [`STOP_TIMEOUT`] for a clean exit (then SIGKILL).
    /// Returns the exit status (`None` if it had to be killed or was not running).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.paused {
            self.resume();
        }
        self.signal(libc::SIGTERM);
        self.note("SIGTERM");
        let status = self.wait_exit(STOP_TIMEOUT);
        if status.is_none() {
            self.kill9();
        }
        status
    }

    /// Restarts with the same arguments and data dir (SIGKILLing the process first if it runs) and waits
    /// until it is ready. `--initial-cluster-state` stays what it was; etcd ignores it for an existing
    /// data dir.
    #[track_caller]
    pub fn restart(&mut self) {
        self.kill9();
        self.launch_or_panic();
        if let Err(e) = self.wait_ready(self.ready_timeout) {
            panic!("{} {} not ready after restart: {e}", self.kind, self.name);
        }
    }

    /// Sends `sig` to the running process (no-op if it is not running).
    fn signal(&self, sig: libc::c_int) {
        let Some(pid) = self.pid() else { return };
        // SAFETY: kill(2) on the pid of our own, not yet reaped, child.
        let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed: {}", std::io::Error::last_os_error());
    }

    /// SIGSTOPs the process (it keeps its sockets; peers see it hang).
    #[track_caller]
    pub fn pause(&mut self) {
        self.set_paused(true);
    }

    /// SIGCONTs a paused process.
    #[track_caller]
    pub fn resume(&mut self) {
        self.set_paused(false);
    }

    #[track_caller]
    fn set_paused(&mut self, paused: bool) {
        assert!(self.child.is_some(), "{} is not running", self.name);
        let (sig, name) = if paused { (libc::SIGSTOP, "SIGSTOP") } else { (libc::SIGCONT, "SIGCONT") };
        self.signal(sig);
        self.paused = paused;
        self.note(name);
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

    /// Waits up to `timeout` for the process to exit; `None` if it is still running (or was not running
    /// at all).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = wait_timeout(self.child.as_mut()?, timeout)?;
        self.child = None;
        self.note(&format!("exited: {status}"));
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

    /// Like [`Member::etcdctl`], feeding `stdin` (for `txn`, or `put <key>` reading the value from stdin).
    pub fn etcdctl_stdin(&self, args: &[&str], stdin: &[u8]) -> CtlOutput {
        etcdctl_at(&self.endpoint(), args, Some(stdin))
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
        crate::parse_json(&self.ctl_ok(&a))
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

    /// Current store revision (`header.revision` of a `get`).
    #[track_caller]
    pub fn revision(&self) -> i64 {
        crate::header_rev(&self.ctl_json(&["get", "revision-probe"]))
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

    /// Does the member answer? `endpoint health` for a voter (at the probe URL with its flags, if set);
    /// for a learner (which refuses linearizable requests, so `endpoint health` fails) `endpoint status`
    /// and a serializable `get`.
    fn answers(&self) -> bool {
        const BOUNDED: [&str; 4] = ["--dial-timeout", "1s", "--command-timeout", "2s"];
        if self.learner {
            let get = [&BOUNDED[..], &["get", "--consistency=s", "x"]].concat();
            return self.status().is_some() && self.etcdctl(&get).success();
        }
        let (url, flags) = match &self.probe {
            Some((url, flags)) => (url.clone(), flags.iter().map(String::as_str).collect()),
            None => (self.endpoint(), Vec::new()),
        };
        let health = [&flags[..], &BOUNDED[..], &["endpoint", "health"]].concat();
        etcdctl_at(&url, &health, None).success()
    }

    /// Probes readiness with these extra etcdctl flags (e.g. `--user=root:pw` once auth is enabled).
    pub fn probe_with(&mut self, flags: &[&str]) {
        self.probe = Some((self.endpoint(), flags.iter().map(|f| f.to_string()).collect()));
    }

    /// Polls until the client port accepts connections and the member answers (see `answers`), at most
    /// `timeout`.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), StartError> {
        let deadline = Instant::now() + timeout;
        let addr: Option<SocketAddr> = format!("{}:{}", self.client_ip, self.client_port).parse().ok();
        let mut pause = Duration::from_millis(5);
        loop {
            match self.child.as_mut().map(Child::try_wait) {
                None => return Err(StartError::NotRunning),
                Some(Ok(Some(status))) => {
                    self.child = None;
                    self.note(&format!("exited: {status}"));
                    return Err(StartError::Exited(status));
                }
                Some(_) => {}
            }
            let listening = addr.is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok());
            if listening && self.answers() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartError::Timeout);
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
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

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            let tail = self.log_tail(LOG_TAIL);
            eprintln!(
                "--- {} {} log ({}, last {} lines) ---\n{tail}\n--- end of {} log ---",
                self.kind,
                self.name,
                self.log_path.display(),
                tail.lines().count(),
                self.name
            );
        }
    }
}

/// Runs `attempt` (spawn members and wait for them) until they are ready. A port can be taken by another
/// process between our check and the server's bind: only then, as a member's log says, is it tried
/// again (`attempt` picks fresh ports), up to three times. Panics naming `what` otherwise; the members'
/// logs are printed as they are dropped.
#[track_caller]
pub(crate) fn start_with_retries<T, E: fmt::Display>(
    what: &str,
    members: impl Fn(&T) -> &[Member],
    mut attempt: impl FnMut() -> (T, Result<(), E>),
) -> T {
    for n in 1..=3 {
        let (started, ready) = attempt();
        match ready {
            Ok(()) => return started,
            Err(_) if n < 3 && members(&started).iter().any(|m| m.log().contains("address already in use")) => continue,
            Err(e) if n > 1 => panic!("{what} did not become ready after {n} attempts (ports in use before): {e}"),
            Err(e) => panic!("{what} did not become ready: {e}"),
        }
    }
    unreachable!()
}

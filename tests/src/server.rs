//! Single servers: a [`Server`] is a one-member [`Cluster`] started with the plain single-member flags.
//!
//! * [`Server::start`] / [`ServerOpts`] — one member on fresh loopback ports with [`standard_args`] plus
//!   `opts.args`, its data dir and log in a temporary directory; waits until `etcdctl endpoint health`
//!   succeeds. Everything a process does (kill9, stop, restart, etcdctl, log, printing the log when a test
//!   panics) is [`Member`]'s: a `Server` dereferences to its member.
//! * [`Server::start_retrying`] — the same with a custom spawn (TLS servers, [`crate::tls::start_https`]).
//! * [`start_all`] — several servers started concurrently.
//! * [`run_to_exit`] — a server binary that is expected to exit by itself (startup errors).

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::thread;
use std::time::Duration;

use crate::cluster::{member_flags, Cluster};
use crate::ctl::run_command;
use crate::process::{start_with_retries, Member, StartError};
use crate::{free_port, Kind};

/// How long to wait for a server to answer `etcdctl endpoint health`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Options for [`Server::start`].
#[derive(Clone, Debug)]
pub struct ServerOpts {
    /// `--name`, also used in `--initial-cluster`.
    pub name: String,
    /// Extra command-line arguments appended after the standard ones.
    pub args: Vec<String>,
    /// How long to wait for `endpoint health` to succeed (at start and after a restart).
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
    member_flags(name, data_dir, &client, &peer, &format!("{name}={peer}"))
}

/// A running single-member server: a one-member [`Cluster`] whose temporary directory holds the data dir
/// (`<tmp>/<name>.data`) and the process log (`<tmp>/<name>.log`, stdout and stderr of every start).
/// Dropping the server SIGKILLs it; if the thread is panicking, the log is printed first.
pub struct Server {
    pub opts: ServerOpts,
    cluster: Cluster,
}

impl Deref for Server {
    type Target = Member;
    fn deref(&self) -> &Member {
        &self.cluster[0]
    }
}

impl DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Member {
        &mut self.cluster[0]
    }
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
    pub fn start_retrying(kind: Kind, how: &str, attempt: impl FnMut() -> (Server, Result<(), StartError>)) -> Server {
        start_with_retries(&format!("{kind}{how}"), |s: &Server| s.cluster.members(), attempt)
    }

    /// Spawns the server on fresh ports without waiting for it.
    #[track_caller]
    pub fn spawn(kind: Kind, opts: ServerOpts) -> Server {
        let (client_port, peer_port) = (free_port(), free_port());
        let mut server = Server::unstarted(kind, opts, client_port, peer_port, Vec::new());
        server.launch_or_panic();
        server
    }

    /// A server on the given ports that is not started yet; its command line is [`standard_args`], then
    /// `more`, then `opts.args` (later arguments win).
    pub(crate) fn unstarted(
        kind: Kind,
        opts: ServerOpts,
        client_port: u16,
        peer_port: u16,
        more: Vec<String>,
    ) -> Server {
        let dir = tempfile::Builder::new()
            .prefix(&format!("modkv-test-{}-", kind.label()))
            .tempdir()
            .expect("create tempdir");
        let mut m = Member::new(kind, &opts.name, dir.path(), ("127.0.0.1", client_port), ("127.0.0.1", peer_port));
        m.args = standard_args(&opts.name, &m.data_dir(), client_port, peer_port);
        m.args.extend(more);
        m.args.extend(opts.args.iter().cloned());
        m.ready_timeout = opts.ready_timeout;
        let cluster = Cluster::of(kind, String::new(), opts.args.clone(), dir, vec![m]);
        Server { opts, cluster }
    }

    /// Polls until the client port accepts connections and `etcdctl endpoint health` succeeds, at most
    /// `opts.ready_timeout`.
    pub fn wait_ready(&mut self) -> Result<(), StartError> {
        let timeout = self.opts.ready_timeout;
        self.cluster[0].wait_ready(timeout)
    }

    /// The temporary directory owned by this server.
    pub fn tmp_dir(&self) -> &Path {
        self.cluster.dir()
    }

    /// The server as the one-member cluster it is.
    pub fn cluster(&mut self) -> &mut Cluster {
        &mut self.cluster
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
    let mut cmd = kind.command();
    cmd.args(args);
    let out = run_command(cmd, None, timeout);
    let timed_out = out.stderr.ends_with(&format!("<harness: timed out after {timeout:?}>"));
    ExitOutput {
        code: if out.status == -1 { None } else { Some(out.status) },
        timed_out,
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

//! Multi-member clusters of etcd 3.4 or modkv, for `tests/tests/cluster.rs`.
//!
//! * [`Cluster::start`] — `n` members `m1..mn` on 127.0.0.1 (fresh client and peer port each), all data
//!   dirs and logs in one temporary directory, started with etcd's static-bootstrap flags and a
//!   per-cluster `--initial-cluster-token`; returns once every member answers `etcdctl endpoint health`.
//! * [`Member`] (from [`crate::process`]) — one process: kill9, restart, pause / resume, etcdctl against
//!   that member only, status. Dropping the [`Cluster`] drops its members: each is SIGKILLed, and when a
//!   test panics, the last [`LOG_TAIL`] lines of its log are printed.
//! * [`Cluster::add_member`] — `etcdctl member add` (optionally `--learner`), then starts the new
//!   process with `--initial-cluster-state existing` and the `ETCD_INITIAL_CLUSTER` etcdctl printed.
//! * [`Cluster::leader`] / [`Cluster::wait_leader`] — who leads, from `endpoint status -w json`.
//! * [`member_flags`] / [`cluster_flags`] — the flags that place one member (shared with single servers
//!   and network-namespace clusters).
//! * Load while members fail ([`Writer`], [`put_many_grpc`], from [`crate::load`]);
//!   [`move_leader_grpc`] — `Maintenance/MoveLeader` sent to any member.
//!
//! Everything waits with a bound.

use std::ops::{Index, IndexMut};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::grpc::{self, GrpcError, ResponseHeader};
pub use crate::load::{put_many_grpc, WriteLog, Writer};
use crate::process::{has_flag, peer_scheme, start_with_retries};
pub use crate::process::{hex_id, Member, LOG_TAIL, MEMBER_READY_TIMEOUT};
use crate::{free_port, Kind, Value};

/// How long [`Cluster::start`] waits for all members to be healthy.
pub const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default raft timing for tests (etcd's defaults are 100 / 1000 ms), unless overridden by `extra_args`.
pub const DEFAULT_HEARTBEAT_MS: &str = "50";
pub const DEFAULT_ELECTION_MS: &str = "500";

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

/// The flags that place one member: name, data dir, its client and peer URLs, the cluster it starts in.
pub fn member_flags(name: &str, data_dir: &Path, client: &str, peer: &str, initial_cluster: &str) -> Vec<String> {
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
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// [`member_flags`] of a member of a multi-member cluster: with its `--initial-cluster-token` and
/// `--initial-cluster-state` (`new` or `existing`).
#[allow(clippy::too_many_arguments)]
pub fn cluster_flags(
    name: &str,
    data_dir: &Path,
    client: &str,
    peer: &str,
    initial_cluster: &str,
    state: &str,
    token: &str,
) -> Vec<String> {
    let mut args = member_flags(name, data_dir, client, peer, initial_cluster);
    args.extend(["--initial-cluster-token", token, "--initial-cluster-state", state].map(String::from));
    args
}

/// The command line of a loopback member: [`cluster_flags`], the test raft timing unless `extra` sets
/// its own, then `extra`.
fn member_args(m: &Member, initial_cluster: &str, state: &str, token: &str, extra: &[String]) -> Vec<String> {
    let peer = format!("{}://{}:{}", peer_scheme(extra), m.peer_ip, m.peer_port);
    let mut args = cluster_flags(&m.name, &m.data_dir(), &m.endpoint(), &peer, initial_cluster, state, token);
    if !has_flag(extra, "--heartbeat-interval") {
        args.extend(["--heartbeat-interval".to_string(), DEFAULT_HEARTBEAT_MS.to_string()]);
    }
    if !has_flag(extra, "--election-timeout") {
        args.extend(["--election-timeout".to_string(), DEFAULT_ELECTION_MS.to_string()]);
    }
    args.extend(extra.iter().cloned());
    args
}

/// An N-member cluster of one [`Kind`]; index it with `cluster[i]` (member `m{i+1}` for the initial
/// members; added members follow in order of addition; removed ones keep their index).
pub struct Cluster {
    pub kind: Kind,
    /// `--initial-cluster-token`, unique per cluster.
    pub token: String,
    extra_args: Vec<String>,
    /// The members (declared before `dir`: dropped first, while their logs still exist).
    pub members: Vec<Member>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` members `m1..mn` and waits until each answers `etcdctl endpoint health`. `extra_args`
    /// are appended to every member's command line (and replace the default `--heartbeat-interval` /
    /// `--election-timeout` if they contain them). Retries with fresh ports (up to three attempts) only
    /// if a port was taken meanwhile; panics with every member's log otherwise.
    #[track_caller]
    pub fn start(kind: Kind, n: usize, extra_args: &[&str]) -> Cluster {
        Cluster::start_with(kind, n, extra_args, |_| {})
    }

    /// [`Cluster::start`], with `prepare` called on each member before its first start (to set its
    /// [`Member::binary`] or [`Member::env`]).
    #[track_caller]
    pub fn start_with(kind: Kind, n: usize, extra_args: &[&str], prepare: impl Fn(&mut Member)) -> Cluster {
        assert!(n >= 1);
        let what = format!("{kind} cluster of {n}");
        start_with_retries(&what, Cluster::members, || {
            let mut c = Cluster::spawn(kind, n, extra_args, &prepare);
            let ready = c.wait_all_ready(CLUSTER_READY_TIMEOUT);
            (c, ready)
        })
    }

    /// A cluster of `members` (not started yet) in `dir`.
    pub(crate) fn of(
        kind: Kind,
        token: String,
        extra_args: Vec<String>,
        dir: tempfile::TempDir,
        members: Vec<Member>,
    ) -> Cluster {
        Cluster { kind, token, extra_args, members, dir }
    }

    /// Spawns `n` members on fresh loopback ports without waiting for them.
    fn spawn(kind: Kind, n: usize, extra_args: &[&str], prepare: &dyn Fn(&mut Member)) -> Cluster {
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
        let mut members: Vec<Member> = (1..=n)
            .map(|i| {
                Member::new(kind, &format!("m{i}"), dir.path(), ("127.0.0.1", free_port()), ("127.0.0.1", free_port()))
            })
            .collect();
        let scheme = peer_scheme(&extra);
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={scheme}://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.args = member_args(m, &initial_cluster, "new", &token, &extra);
            prepare(m);
        }
        let mut c = Cluster::of(kind, token, extra, dir, members);
        for m in &mut c.members {
            m.launch_or_panic();
        }
        c
    }

    /// Waits until every member is ready (at most `timeout` for all), then reads each one's raft id.
    pub(crate) fn wait_all_ready(&mut self, timeout: Duration) -> Result<(), String> {
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
    pub fn dir(&self) -> &Path {
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
        assert!(self.members.iter().all(|m| m.namespace.is_none()), "add_member starts loopback members only");
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
        let mut m = Member::new(self.kind, name, self.dir.path(), ("127.0.0.1", client_port), ("127.0.0.1", peer_port));
        m.args = member_args(&m, &var("ETCD_INITIAL_CLUSTER"), "existing", &self.token, &self.extra_args);
        (m.id, m.learner, m.add_output) = (id, learner, Some(stdout));
        m.launch_or_panic();
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

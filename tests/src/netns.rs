//! Clusters whose members each run in their own network namespace, so a test can cut a member off
//! from its peers the way a network does (packets silently dropped, TCP left retransmitting) while
//! clients still reach every member. For `tests/tests/partition.rs`; needs root and `ip` (iproute2).
//!
//! ```text
//!   test process (host namespace)
//!     bridge <id>c  198.18.N.254/24 ─┬─ veth ── namespace <id>-m1: client address 198.18.N.1
//!                                    └─ veth ── namespace <id>-m2: client address 198.18.N.2  …
//!     bridge <id>p  (no address)    ─┬─ veth ── namespace <id>-m1: peer address   198.19.N.1
//!                                    └─ veth ── namespace <id>-m2: peer address   198.19.N.2  …
//!   cut(i):  the host end of member i's peer veth goes down: its peer traffic is dropped both ways
//!   heal(i): it comes up again
//! ```
//!
//! Addresses are in 198.18.0.0/15 (set aside for network tests), N picked so no interface of the host
//! has it yet; names carry the test's pid. Dropping the cluster kills its members and removes its
//! namespaces and bridges; when the test panics, each member's log tail is printed.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::cluster::LOG_TAIL;
use crate::{etcdctl_at, CtlOutput, Kind, Value};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One member: its namespace, addresses and process.
pub struct NsMember {
    pub name: String,
    pub client_ip: String,
    pub peer_ip: String,
    /// `--name`'s raft id, from `endpoint status` once ready.
    pub id: u64,
    namespace: String,
    /// Host end of the member's peer veth (down while cut).
    peer_link: String,
    log_path: PathBuf,
    child: Option<Child>,
}

impl NsMember {
    /// `http://<client address>:2379`.
    pub fn endpoint(&self) -> String {
        format!("http://{}:2379", self.client_ip)
    }

    /// `etcdctl --endpoints <this member> <args>`.
    pub fn etcdctl(&self, args: &[&str]) -> CtlOutput {
        etcdctl_at(&self.endpoint(), args, None)
    }

    /// `Status` of `endpoint status`, or `None` if the member does not answer.
    pub fn status(&self) -> Option<Value> {
        crate::cluster::status_of(&self.etcdctl(crate::cluster::STATUS_ARGS))
    }

    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read(&self.log_path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn note(&self, msg: &str) {
        if let Ok(mut log) = OpenOptions::new().append(true).open(&self.log_path) {
            let _ = writeln!(log, "=== harness: {msg}");
        }
    }
}

/// Runs `ip <args>`, panicking with its error output if it fails.
#[track_caller]
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("cannot run `ip` (iproute2): {e}"));
    assert!(out.status.success(), "ip {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
}

/// Removes what `ip` made, ignoring what is already gone.
fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// A cluster of members in namespaces (see the module docs).
pub struct NsCluster {
    pub kind: Kind,
    pub members: Vec<NsMember>,
    prefix: String,
    _dir: tempfile::TempDir,
}

impl NsCluster {
    /// Starts `n` members `m1..mn` with etcd's static bootstrap flags plus `extra_args`, each in its own
    /// namespace, and waits until each answers `endpoint health`.
    #[track_caller]
    pub fn start(kind: Kind, n: usize, extra_args: &[&str]) -> NsCluster {
        assert!((1..=9).contains(&n));
        let uid = (std::process::id() * 8 + COUNTER.fetch_add(1, Ordering::Relaxed)) & 0xffff;
        let prefix = format!("mk{uid:04x}");
        let subnet = free_subnet(uid);
        let dir = tempfile::Builder::new().prefix(&format!("modkv-netns-{}-", kind.label())).tempdir().unwrap();
        let mut c = NsCluster { kind, members: Vec::new(), prefix: prefix.clone(), _dir: dir };
        let (brc, brp) = (format!("{prefix}c"), format!("{prefix}p"));
        ip(&["link", "add", &brc, "type", "bridge"]);
        ip(&["link", "add", &brp, "type", "bridge"]);
        ip(&["addr", "add", &format!("198.18.{subnet}.254/24"), "dev", &brc]);
        ip(&["link", "set", &brc, "up"]);
        ip(&["link", "set", &brp, "up"]);
        for i in 1..=n {
            let ns = format!("{prefix}-m{i}");
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            for (side, bridge, net) in [("c", &brc, 18), ("p", &brp, 19)] {
                let host_end = format!("{prefix}{side}{i}");
                ip(&["link", "add", &host_end, "type", "veth", "peer", "name", side, "netns", &ns]);
                ip(&["link", "set", &host_end, "master", bridge, "up"]);
                ip(&["-n", &ns, "addr", "add", &format!("198.{net}.{subnet}.{i}/24"), "dev", side]);
                ip(&["-n", &ns, "link", "set", side, "up"]);
            }
            c.members.push(NsMember {
                name: format!("m{i}"),
                client_ip: format!("198.18.{subnet}.{i}"),
                peer_ip: format!("198.19.{subnet}.{i}"),
                id: 0,
                namespace: ns,
                peer_link: format!("{prefix}p{i}"),
                log_path: c._dir.path().join(format!("m{i}.log")),
                child: None,
            });
        }
        let initial: Vec<String> = c.members.iter().map(|m| format!("{}=http://{}:2380", m.name, m.peer_ip)).collect();
        let initial = initial.join(",");
        for m in &mut c.members {
            let (client, peer) = (m.endpoint(), format!("http://{}:2380", m.peer_ip));
            let data_dir = c._dir.path().join(format!("{}.data", m.name));
            let mut args = crate::cluster::member_flags(&m.name, &data_dir, &client, &peer, &initial, "new", &prefix);
            args.extend(extra_args.iter().map(|s| s.to_string()));
            let log = OpenOptions::new().create(true).append(true).open(&m.log_path).unwrap();
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &m.namespace]).arg(kind.binary()).args(&args);
            cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).env("RUST_BACKTRACE", "1");
            m.note(&format!("start {kind} member {} in namespace {}: {args:?}", m.name, m.namespace));
            // `ip netns exec` execs the binary: the child is the member itself.
            m.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", kind.binary().display())));
        }
        let deadline = Instant::now() + crate::cluster::CLUSTER_READY_TIMEOUT;
        for m in &mut c.members {
            loop {
                let healthy =
                    m.etcdctl(&["--dial-timeout", "1s", "--command-timeout", "2s", "endpoint", "health"]).success();
                if let Some(s) = m.status().filter(|_| healthy) {
                    m.id = s["header"]["member_id"].as_u64().expect("member_id in endpoint status");
                    break;
                }
                if let Some(Ok(Some(status))) = m.child.as_mut().map(|c| c.try_wait()) {
                    panic!("{kind} member {} exited: {status}\n{}", m.name, m.log_tail(LOG_TAIL));
                }
                assert!(Instant::now() < deadline, "{kind} member {} not healthy in time", m.name);
                thread::sleep(Duration::from_millis(100));
            }
        }
        c
    }

    /// Index of the member every member names as leader, once they agree (at most `timeout`).
    #[track_caller]
    pub fn wait_leader(&self, among: &[usize], timeout: Duration) -> usize {
        crate::cluster::poll(timeout, "an agreed leader", || {
            let leaders: Vec<u64> = among
                .iter()
                .map(|&i| self.members[i].status().and_then(|s| s["leader"].as_u64()).unwrap_or(0))
                .collect();
            let first = *leaders.first()?;
            if first == 0 || leaders.iter().any(|&l| l != first) {
                return None;
            }
            self.members.iter().position(|m| m.id == first)
        })
    }

    /// Cuts member `i` off from its peers (clients still reach it).
    pub fn cut(&self, i: usize) {
        ip(&["link", "set", &self.members[i].peer_link, "down"]);
        self.members[i].note("peer link cut");
    }

    /// Reconnects member `i` to its peers.
    pub fn heal(&self, i: usize) {
        ip(&["link", "set", &self.members[i].peer_link, "up"]);
        self.members[i].note("peer link restored");
    }
}

impl std::ops::Index<usize> for NsCluster {
    type Output = NsMember;
    fn index(&self, i: usize) -> &NsMember {
        &self.members[i]
    }
}

impl Drop for NsCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if thread::panicking() {
            for m in &self.members {
                eprintln!(
                    "--- {} member {} log (last {LOG_TAIL} lines) ---\n{}",
                    self.kind,
                    m.name,
                    m.log_tail(LOG_TAIL)
                );
            }
        }
        for m in &self.members {
            // Removing the namespace removes the veth pairs too.
            ip_quiet(&["netns", "del", &m.namespace]);
        }
        ip_quiet(&["link", "del", &format!("{}c", self.prefix)]);
        ip_quiet(&["link", "del", &format!("{}p", self.prefix)]);
    }
}

/// A third octet N for 198.18.N.0/24 and 198.19.N.0/24 that no host interface uses yet.
fn free_subnet(uid: u32) -> u32 {
    let out = Command::new("ip").args(["-o", "addr"]).output().expect("cannot run `ip` (iproute2)");
    let used = String::from_utf8_lossy(&out.stdout).into_owned();
    (0..256)
        .map(|k| (uid + k) % 256)
        .find(|n| !used.contains(&format!("198.18.{n}.")) && !used.contains(&format!("198.19.{n}.")))
        .expect("a free /24 in 198.18.0.0/15")
}

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
//! [`NsCluster`] is a [`Cluster`] (it dereferences to one) whose members are the harness's one process
//! type, [`Member`], launched through `ip netns exec`; [`NsCluster::cut`] / [`NsCluster::heal`] are what
//! it adds, and [`NsCluster::wait_leader`] waits for the members it names to agree on a leader.
//!
//! Addresses are in 198.18.0.0/15 (set aside for network tests), N picked so no interface of the host
//! has it yet; names carry the test's pid. Dropping the cluster kills its members and removes its
//! namespaces and bridges; when the test panics, each member's log tail is printed.

use std::ops::{Deref, DerefMut};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::cluster::{cluster_flags, poll, Cluster, CLUSTER_READY_TIMEOUT};
use crate::process::Member;
use crate::Kind;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One member: a [`Member`] whose process runs in its own namespace, reached at its namespace's
/// addresses (client port 2379, peer port 2380).
pub type NsMember = Member;

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

/// A cluster of members in namespaces (see the module docs): a [`Cluster`] (which it dereferences to)
/// plus the namespaces and bridges it owns.
pub struct NsCluster {
    cluster: Cluster,
    prefix: String,
}

impl Deref for NsCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl DerefMut for NsCluster {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }
}

impl NsCluster {
    /// Starts `n` members `m1..mn` with etcd's static bootstrap flags plus `extra_args`, each in its own
    /// namespace, and waits until each answers `endpoint health`.
    #[track_caller]
    pub fn start(kind: Kind, n: usize, extra_args: &[&str]) -> NsCluster {
        NsCluster::start_with(kind, n, extra_args, |_| {})
    }

    /// [`NsCluster::start`], with `prepare` called on each member before its first start (to put its
    /// data dir on a filesystem of its own, say).
    #[track_caller]
    pub fn start_with(kind: Kind, n: usize, extra_args: &[&str], mut prepare: impl FnMut(&mut Member)) -> NsCluster {
        assert!((1..=9).contains(&n));
        let uid = (std::process::id() * 8 + COUNTER.fetch_add(1, Ordering::Relaxed)) & 0xffff;
        let prefix = format!("mk{uid:04x}");
        let subnet = free_subnet(uid);
        let dir = tempfile::Builder::new().prefix(&format!("modkv-netns-{}-", kind.label())).tempdir().unwrap();
        let extra: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let cluster = Cluster::of(kind, prefix.clone(), extra.clone(), dir, Vec::new());
        // Owned from here on: dropping it (also on a panic below) removes what `ip` made.
        let mut c = NsCluster { cluster, prefix: prefix.clone() };
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
            let (client_ip, peer_ip) = (format!("198.18.{subnet}.{i}"), format!("198.19.{subnet}.{i}"));
            let dir = c.cluster.dir().to_path_buf();
            let mut m = Member::new(kind, &format!("m{i}"), &dir, (&client_ip, 2379), (&peer_ip, 2380));
            m.namespace = Some(ns);
            c.cluster.members.push(m);
        }
        let initial: Vec<String> = c.members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect();
        let initial = initial.join(",");
        for m in &mut c.cluster.members {
            m.args = cluster_flags(&m.name, &m.data_dir(), &m.endpoint(), &m.peer_url(), &initial, "new", &prefix);
            m.args.extend(extra.iter().cloned());
            prepare(m);
            m.launch_or_panic();
        }
        if let Err(e) = c.cluster.wait_all_ready(CLUSTER_READY_TIMEOUT) {
            panic!("{kind} cluster of {n} in network namespaces did not become ready: {e}");
        }
        c
    }

    /// Index of the member every member names as leader, once they agree (at most `timeout`).
    #[track_caller]
    pub fn wait_leader(&self, among: &[usize], timeout: Duration) -> usize {
        poll(timeout, "an agreed leader", || {
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

    /// The host end of member `i`'s peer veth (down while it is cut off).
    fn peer_link(&self, i: usize) -> String {
        format!("{}p{}", self.prefix, i + 1)
    }

    /// Cuts member `i` off from its peers (clients still reach it).
    pub fn cut(&self, i: usize) {
        ip(&["link", "set", &self.peer_link(i), "down"]);
        self.members[i].note("peer link cut");
    }

    /// Reconnects member `i` to its peers.
    pub fn heal(&self, i: usize) {
        ip(&["link", "set", &self.peer_link(i), "up"]);
        self.members[i].note("peer link restored");
    }
}

impl Drop for NsCluster {
    fn drop(&mut self) {
        // The members go first (their logs are printed when the cluster itself is dropped, after this).
        for m in &mut self.cluster.members {
            m.kill9();
        }
        for m in &self.cluster.members {
            // Removing the namespace removes the veth pairs too.
            if let Some(ns) = &m.namespace {
                ip_quiet(&["netns", "del", ns]);
            }
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

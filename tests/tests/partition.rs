//! Network partitions, made with network namespaces (`modkv_tests::netns`): a member cut off from its
//! peers by dropped packets, as a real network fails, while clients reach every member.
//!
//! * `late_writes_after_a_partition` (issue 17): writes whose clients timed out while the leader was cut
//!   off must not be applied when the network heals, long after their clients gave up; at most within
//!   the server's request timeout of the client's error.
//!
//! Needs root and `ip` (iproute2); each test runs about 40 s.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use modkv_tests::netns::{NsCluster, NsMember};
use modkv_tests::{both_kinds, etcdctl_bin, header_rev};

/// How long the leader stays cut off: well past any timeout, so a write held up in the network and
/// delivered when it heals comes far later than allowed.
const CUT: Duration = Duration::from_secs(15);
/// The server's request timeout with etcd's default timing (100 ms heartbeat, 1 s election timeout):
/// 5 s + 2 × the election timeout. Until then a member may still apply a write whose client gave up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
const MARGIN: Duration = Duration::from_secs(1);
/// How long to look for late applications after the heal: TCP retransmits what it holds with
/// exponential backoff, the next try ≈ 10 s after a 15 s cut.
const AFTER_HEAL: Duration = Duration::from_secs(15);

/// One `etcdctl put`: through which member, when it returned, and how.
#[derive(Debug)]
struct Put {
    value: String,
    via: String,
    returned: Instant,
    revision: Option<i64>,
    error: String,
}

fn put(m: &NsMember, value: &str, timeout: &str) -> Put {
    let out = m.etcdctl(&["--command-timeout", timeout, "-w", "json", "put", "k", value]);
    let revision = out.success().then(|| header_rev(&out.json()));
    Put { value: value.into(), via: m.name.clone(), returned: Instant::now(), revision, error: out.stderr }
}

/// `etcdctl watch --rev 1 k` through one member, each value seen with the time it arrived.
struct Watcher {
    child: Child,
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Watcher {
    fn start(m: &NsMember) -> Watcher {
        let mut child = Command::new(etcdctl_bin())
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &m.endpoint(), "watch", "--rev", "1", "k"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcdctl watch");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (out, log) = (child.stdout.take().unwrap(), seen.clone());
        thread::spawn(move || {
            // Each event is three lines: PUT, the key, the value.
            let mut lines = BufReader::new(out).lines().map_while(Result::ok);
            while let (Some(_put), Some(_key), Some(value)) = (lines.next(), lines.next(), lines.next()) {
                log.lock().unwrap().push((Instant::now(), value));
            }
        });
        Watcher { child, seen }
    }

    fn seen(&self) -> Vec<(Instant, String)> {
        self.seen.lock().unwrap().clone()
    }

    #[track_caller]
    fn wait_for(&self, value: &str, timeout: Duration) {
        modkv_tests::cluster::poll(timeout, &format!("the watch to see {value}"), || {
            self.seen().iter().any(|(_, v)| v == value).then_some(())
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

both_kinds! {
    /// Issue 17: the leader is cut off from its peers; a write through each follower, with a 1 s client
    /// timeout: the first, forwarded to the cut-off leader, times out; the other two members elect a new
    /// leader and acknowledge two writes; the network heals after 15 s. The writes that timed out may be
    /// applied, but not later than the server's request timeout (plus a margin) after their client's
    /// error: a write applied when the network heals, after its client and every later acknowledged
    /// write, overwrites newer acknowledged values. Every member ends with the same value, the last
    /// one applied.
    fn late_writes_after_a_partition(kind) {
        let c = NsCluster::start(kind, 3, &[]);
        let first = put(&c[0], "v0", "5s");
        assert!(first.revision.is_some(), "{first:?}");
        // Who leads once the cluster has settled (right after the start, leadership may still move).
        let leader = c.wait_leader(&[0, 1, 2], Duration::from_secs(20));
        let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        let (b, d) = (others[0], others[1]);
        let watch = Watcher::start(&c[b]);
        watch.wait_for("v0", Duration::from_secs(5));

        c.cut(leader);
        let cut_at = Instant::now();
        let mut puts = vec![put(&c[b], "v1.1", "1s"), put(&c[d], "v1.2", "1s")];
        // Forwarded to the cut-off leader, which can no longer commit: the client gives up.
        assert!(puts[0].revision.is_none(), "{:?}; {} was cut off, leaders: {:?}", puts[0], c[leader].name, leaders(&c));
        // The client's deadline, or the server's request context ending with it (etcd answers either way).
        let timed_out = ["context deadline exceeded", "etcdserver: request timed out"];
        assert!(timed_out.iter().any(|e| puts[0].error.contains(e)), "{:?}", puts[0]);
        // The majority elects a leader and takes writes.
        let mut acked = Vec::new();
        for n in 1.. {
            assert!(cut_at.elapsed() < CUT - Duration::from_secs(2), "the majority acknowledged too little: {puts:#?}");
            let p = put(&c[b], &format!("v2.{n}"), "2s");
            if p.revision.is_some() {
                acked.push(p.value.clone());
            }
            puts.push(p);
            if acked.len() == 2 {
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
        thread::sleep(CUT.saturating_sub(cut_at.elapsed()));
        c.heal(leader);
        let healed = Instant::now();
        thread::sleep(AFTER_HEAL);

        let seen = watch.seen();
        for value in &acked {
            assert!(seen.iter().any(|(_, v)| v == value), "acknowledged {value} never applied: {seen:?}");
        }
        for p in puts.iter().filter(|p| p.revision.is_none()) {
            if let Some((at, _)) = seen.iter().find(|(_, v)| *v == p.value) {
                let late = at.saturating_duration_since(p.returned);
                assert!(
                    late <= REQUEST_TIMEOUT + MARGIN,
                    "{} (put through {}, its client's error: {}) was applied {late:?} after that error, {:?} after \
                     the network healed; applied in order: {:?}",
                    p.value,
                    p.via,
                    p.error.trim(),
                    at.saturating_duration_since(healed),
                    seen.iter().map(|(_, v)| v).collect::<Vec<_>>()
                );
            }
        }
        // Every member has applied the same last write.
        let last = seen.last().unwrap().1.clone();
        let values = modkv_tests::cluster::poll(Duration::from_secs(10), "every member to agree on k", || {
            let v: Vec<(String, i64)> = (0..3).filter_map(|i| local(&c[i])).collect();
            (v.len() == 3 && v.iter().all(|x| *x == v[0])).then_some(v)
        });
        assert_eq!(values[0].0, last, "members {values:?}, the watch saw {seen:?}");
    }
}

/// Whom each member takes for the leader (0: none, or no answer).
fn leaders(c: &NsCluster) -> Vec<u64> {
    (0..3).map(|i| c[i].status().and_then(|s| s["leader"].as_u64()).unwrap_or(0)).collect()
}

/// The value of k and its mod revision as `m` has applied them (serializable get).
fn local(m: &NsMember) -> Option<(String, i64)> {
    let out = m.etcdctl(&["--command-timeout", "2s", "-w", "json", "get", "--consistency=s", "k"]);
    if !out.success() {
        return None;
    }
    modkv_tests::kvs(&out.json()).into_iter().next().map(|kv| (kv.1, kv.3))
}

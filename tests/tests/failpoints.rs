//! Failpoints: a member crashes at a chosen point of its write path (or its fsync fails) under a small
//! write load, is restarted without the failpoint, catches up, and every acknowledged write is on every
//! member with its value and revision.
//!
//! modkv only: the members run `modkv-failpoints` (the server built with the `failpoints` feature,
//! beside `modkv`; the sites are listed in `modkv::failpoints::SITES`), each site set through the
//! `FAILPOINTS` environment variable of one member. Debian's etcd 3.4 is built without gofail's
//! failpoints, so there is no etcd side to compare with here.
//!
//! ```text
//!   crash_at(site, role)    3 members, the site on m1 (leading, or following) as `N*off->panic`: m1
//!                           aborts there under load ─▶ the others go on ─▶ m1 restarted plain ─▶ converged
//!   *_snapshot              a member down while 6000 puts pass (`--snapshot-count 100`), restarted: the
//!                           leader crashes sending it the snapshot, or it crashes installing it
//!   *_mid_compaction        a follower crashes halfway through applying a compaction
//!   error_stops_the_member  m1's fsync fails (leading or following), or its apply write: it exits with
//!                           status 1 within seconds, the others (electing a leader if needed) go on
//! ```
//!
//! "Converged" ([`assert_converged`]): a linearizable read of the whole key space on each member gives
//! the same key-values at the same revision, every acknowledged put is there with its value and its
//! acknowledged revision (create = mod = that revision, version 1: each key is written once), and the
//! members' `endpoint hashkv` at that revision agree.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use modkv_tests::cluster::*;
use modkv_tests::grpc::{self, Client, KeyValue, PutRequest, RangeRequest};
use modkv_tests::*;

const LEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a member with a crash failpoint may take to reach it under load.
const CRASH_TIMEOUT: Duration = Duration::from_secs(30);
/// Acknowledged puts awaited at each stage (the load goes on between stages).
const STAGE_PUTS: usize = 50;
/// Evaluations a crash site lets pass before it fires: past start-up and the leader moves, into the load.
const PASS_FIRST: u32 = 200;
/// Puts while a member is down, to put it behind the leader's compacted log (modkv, like etcd, keeps
/// 5000 entries after a compaction; `--snapshot-count 100`).
const SNAPSHOT_PUTS: usize = 6000;
/// Concurrent writers of the load.
const WRITERS: usize = 2;

/// A cluster of 3 `modkv-failpoints` members, `failpoint` (`site=actions`) set on member `at`.
fn failpoint_cluster(extra: &[&str], failpoint: Option<(usize, String)>) -> Cluster {
    let bin = modkv_failpoints_bin();
    assert!(bin.exists(), "{} is missing: `make build-failpoints` builds it", bin.display());
    Cluster::start_with(Kind::Modkv, 3, extra, |m| {
        m.binary = Some(modkv_failpoints_bin());
        if let Some((at, spec)) = &failpoint {
            if m.name == format!("m{}", at + 1) {
                m.env = vec![("FAILPOINTS".to_string(), spec.clone())];
            }
        }
    })
}

/// Makes member `want` the leader.
fn make_leader(c: &mut Cluster, want: usize) {
    let l = c.wait_leader(LEADER_TIMEOUT);
    if l != want {
        move_leader_grpc(&c[l].endpoint(), c[want].id).unwrap_or_else(|e| panic!("move-leader to {want}: {e:?}"));
    }
    c.wait_leader_among(&[want], LEADER_TIMEOUT);
}

/// Makes sure member `who` does not lead; returns the leader.
fn make_follower(c: &mut Cluster, who: usize) -> usize {
    let l = c.wait_leader(LEADER_TIMEOUT);
    if l != who {
        return l;
    }
    let to = (who + 1) % c.len();
    make_leader(c, to);
    to
}

/// Waits for member `i` to exit by itself; it must have aborted (the failpoint binary turns a panic into
/// an abort) at failpoint `site`.
#[track_caller]
fn assert_crashed_at(c: &mut Cluster, i: usize, site: &str) -> ExitStatus {
    let status = c[i]
        .wait_exit(CRASH_TIMEOUT)
        .unwrap_or_else(|| panic!("{} still runs {CRASH_TIMEOUT:?} after its failpoint {site} was set", c[i].name));
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{} exited with {status}, not by its failpoint", c[i].name);
    let log = c[i].log();
    assert!(
        log.contains(&format!("failpoint {site} panic")),
        "{} did not stop at {site}:\n{}",
        c[i].name,
        c[i].log_tail(30)
    );
    status
}

/// Restarts member `i` without its failpoint.
fn restart_plain(c: &mut Cluster, i: usize) {
    c[i].env.clear();
    c[i].restart();
}

/// An acknowledged put: key, value, the revision of its response header.
#[derive(Debug, Clone)]
struct Acked {
    key: String,
    value: String,
    rev: i64,
}

/// [`WRITERS`] threads doing sequential gRPC puts of fresh keys `<prefix><writer>-<i>`, round-robin over
/// the endpoints (a dead member refuses at once; every put is bounded by 2 s), recording the
/// acknowledged ones.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Acked>>>,
    failed: Arc<Mutex<usize>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(c: &Cluster, prefix: &str) -> Load {
        let endpoints: Vec<String> = c.members().iter().map(Member::endpoint).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
        let failed: Arc<Mutex<usize>> = Arc::default();
        let threads = (0..WRITERS)
            .map(|w| {
                let (stop, acked, failed) = (stop.clone(), acked.clone(), failed.clone());
                let (endpoints, prefix) = (endpoints.clone(), prefix.to_string());
                thread::spawn(move || {
                    let mut clients: Vec<Client> =
                        endpoints.iter().map(|ep| Client::lazy(ep, Duration::from_secs(2)).expect("client")).collect();
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let n = clients.len();
                        let (key, value) = (format!("{prefix}{w}-{i:06}"), format!("v{w}-{i}"));
                        match clients[(w + i) % n].put(PutRequest::new(&key, &value)) {
                            Ok(r) => {
                                let rev = r.header.map(|h| h.revision).unwrap_or(0);
                                acked.lock().unwrap().push(Acked { key, value, rev });
                            }
                            Err(_) => {
                                *failed.lock().unwrap() += 1;
                                thread::sleep(Duration::from_millis(20));
                            }
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        Load { stop, acked, failed, threads }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `n` more puts have been acknowledged.
    #[track_caller]
    fn wait_more(&self, n: usize, what: &str) {
        let want = self.acked() + n;
        poll(Duration::from_secs(20), &format!("{n} more acknowledged puts {what}"), || {
            (self.acked() >= want).then_some(())
        });
    }

    fn stop(mut self) -> Vec<Acked> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().expect("writer thread");
        }
        let acked = self.acked.lock().unwrap().clone();
        eprintln!("load: {} puts acknowledged, {} failed", acked.len(), self.failed.lock().unwrap());
        acked
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// See the file's doc. Returns the common revision and key-values.
#[track_caller]
fn assert_converged(c: &Cluster, acked: &[Acked]) -> (i64, Vec<KeyValue>) {
    let reads: Vec<(i64, Vec<KeyValue>)> = (0..c.len())
        .map(|i| {
            let what = format!("a linearizable range on {}", c[i].name);
            let r = poll(Duration::from_secs(30), &what, || grpc::range(&c[i].endpoint(), RangeRequest::all()).ok());
            (r.header.expect("header").revision, r.kvs)
        })
        .collect();
    let (rev, kvs) = reads[0].clone();
    for (i, (r, other)) in reads.iter().enumerate().skip(1) {
        assert_eq!(*r, rev, "revision of {} vs {}", c[i].name, c[0].name);
        if let Some(d) = (0..kvs.len().max(other.len())).find(|&j| kvs.get(j) != other.get(j)) {
            panic!("{} and {} differ at key #{d}: {:?} vs {:?}", c[0].name, c[i].name, kvs.get(d), other.get(d));
        }
    }
    let by_key: HashMap<&[u8], &KeyValue> = kvs.iter().map(|kv| (kv.key.as_slice(), kv)).collect();
    for a in acked {
        let kv = by_key.get(a.key.as_bytes()).unwrap_or_else(|| panic!("acknowledged put lost: {a:?}"));
        let got = (kv.value.as_slice(), kv.create_revision, kv.mod_revision, kv.version);
        assert_eq!(got, (a.value.as_bytes(), a.rev, a.rev, 1), "acknowledged put {a:?}");
    }
    let rev_arg = rev.to_string();
    let hashes: Vec<Value> = c
        .members()
        .iter()
        .map(|m| m.ctl_json(&["endpoint", "hashkv", "--rev", &rev_arg])[0]["HashKV"]["hash"].clone())
        .collect();
    assert!(hashes[0].is_u64() && hashes.iter().all(|h| *h == hashes[0]), "hashkv at {rev}: {hashes:?}");
    eprintln!(
        "converged: {} members at revision {rev}, {} keys, {} acknowledged puts checked",
        c.len(),
        kvs.len(),
        acked.len()
    );
    (rev, kvs)
}

/// m1 (the leader, or a follower) crashes at `site` under load; the others go on; m1 comes back without
/// the failpoint and the cluster converges.
fn crash_at(site: &str, leader: bool) {
    let mut c = failpoint_cluster(&[], Some((0, format!("{site}={PASS_FIRST}*off->panic"))));
    if leader {
        make_leader(&mut c, 0);
    } else {
        make_follower(&mut c, 0);
    }
    let load = Load::start(&c, "load-");
    assert_crashed_at(&mut c, 0, site);
    c.wait_leader_among(&[1, 2], LEADER_TIMEOUT);
    load.wait_more(STAGE_PUTS, "with m1 down");
    restart_plain(&mut c, 0);
    load.wait_more(STAGE_PUTS, "after m1's restart");
    let acked = load.stop();
    assert_converged(&c, &acked);
}

#[test]
fn leader_crashes_before_persisting_entries() {
    crash_at("raft::before_persist", true);
}

#[test]
fn follower_crashes_after_persisting_before_acknowledging() {
    crash_at("raft::after_persist_before_send", false);
}

#[test]
fn leader_crashes_between_commit_and_apply() {
    crash_at("raft::before_apply", true);
}

#[test]
fn follower_crashes_before_writing_applied_entries() {
    crash_at("apply::before_write", false);
}

#[test]
fn follower_crashes_before_persisting_entries() {
    crash_at("raft::before_persist", false);
}

#[test]
fn leader_crashes_after_persisting_before_sending() {
    crash_at("raft::after_persist_before_send", true);
}

#[test]
fn follower_crashes_between_commit_and_apply() {
    crash_at("raft::before_apply", false);
}

#[test]
fn leader_crashes_before_writing_applied_entries() {
    crash_at("apply::before_write", true);
}

/// Stops a follower of `c` (not `keep`), puts [`SNAPSHOT_PUTS`] keys `snap-*` through the others; returns
/// the follower.
fn fall_behind(c: &mut Cluster, keep: usize) -> usize {
    let l = c.wait_leader(LEADER_TIMEOUT);
    let f = (0..3).find(|&i| i != l && i != keep).expect("a follower");
    c[f].kill9();
    let live: Vec<String> = (0..3).filter(|&i| i != f).map(|i| c[i].endpoint()).collect();
    let took = put_many_grpc(&live, "snap-", SNAPSHOT_PUTS, 16);
    eprintln!("{SNAPSHOT_PUTS} puts with {} down took {took:?}", c[f].name);
    f
}

/// The snapshot puts are all there, on every member (they were all acknowledged: put_many_grpc retries
/// and panics otherwise).
#[track_caller]
fn assert_snapshot_puts(kvs: &[KeyValue]) {
    let snap: Vec<&KeyValue> = kvs.iter().filter(|kv| kv.key.starts_with(b"snap-")).collect();
    assert_eq!(snap.len(), SNAPSHOT_PUTS);
    for (i, kv) in snap.iter().enumerate() {
        assert_eq!(
            (kv.key.as_slice(), kv.value.as_slice()),
            (format!("snap-{i:05}").as_bytes(), format!("v{i}").as_bytes())
        );
    }
}

#[test]
fn member_crashes_installing_a_snapshot() {
    let site = "raft::snapshot_install_mid";
    let mut c = failpoint_cluster(&["--snapshot-count", "100"], None);
    let f = fall_behind(&mut c, 3);
    let load = Load::start(&c, "load-");
    c[f].env = vec![("FAILPOINTS".to_string(), format!("{site}=panic"))];
    c[f].launch_or_panic();
    assert_crashed_at(&mut c, f, site);
    assert!(c[f].log().contains("installing snapshot from the leader"), "{}", c[f].log_tail(30));
    restart_plain(&mut c, f);
    let log = c[f].log();
    let restarted = &log[log.rfind("=== harness: start #").expect("start noted")..];
    assert!(restarted.contains("applied incoming snapshot"), "not caught up by a snapshot:\n{}", c[f].log_tail(30));
    load.wait_more(STAGE_PUTS, "after the restart");
    let acked = load.stop();
    let (_, kvs) = assert_converged(&c, &acked);
    assert_snapshot_puts(&kvs);
}

#[test]
fn leader_crashes_sending_a_snapshot() {
    let site = "raft::snapshot_send_mid";
    let mut c = failpoint_cluster(&["--snapshot-count", "100"], Some((0, format!("{site}=panic"))));
    make_leader(&mut c, 0);
    let f = fall_behind(&mut c, 0);
    let load = Load::start(&c, "load-");
    // m1 makes a snapshot for the returning member and crashes as it sends it; the third member leads
    // then, and sends its own.
    c[f].launch_or_panic();
    assert_crashed_at(&mut c, 0, site);
    assert!(c[0].log().contains("made a snapshot for a peer"), "{}", c[0].log_tail(30));
    if let Err(e) = c[f].wait_ready(Duration::from_secs(30)) {
        panic!("{} not ready after the leader's crash: {e}", c[f].name);
    }
    assert!(c[f].log().contains("applied incoming snapshot"), "not caught up by a snapshot:\n{}", c[f].log_tail(30));
    load.wait_more(STAGE_PUTS, "with m1 down");
    restart_plain(&mut c, 0);
    load.wait_more(STAGE_PUTS, "after m1's restart");
    let acked = load.stop();
    let (_, kvs) = assert_converged(&c, &acked);
    assert_snapshot_puts(&kvs);
}

#[test]
fn follower_crashes_mid_compaction() {
    let site = "mvcc::compaction_mid";
    let mut c = failpoint_cluster(&[], Some((2, format!("{site}=panic"))));
    let l = make_follower(&mut c, 2);
    let load = Load::start(&c, "load-");
    // One key's history: v1..v5, the compaction at v3's revision.
    let revs: Vec<i64> = (1..=5).map(|i| header_rev(&c[l].ctl_json(&["put", "hist", &format!("v{i}")]))).collect();
    load.wait_more(STAGE_PUTS, "before the compaction");
    let at = revs[2];
    assert_eq!(c[l].ctl_ok(&["compaction", &at.to_string()]), format!("compacted revision {at}\n"));
    assert_crashed_at(&mut c, 2, site);
    load.wait_more(STAGE_PUTS, "with m3 down");
    restart_plain(&mut c, 2);
    load.wait_more(STAGE_PUTS, "after m3's restart");
    let acked = load.stop();
    let (rev, _) = assert_converged(&c, &acked);
    for m in c.members() {
        // Each member's own state (serializable reads, after the linearizable one above caught it up).
        m.etcdctl(&["get", "hist", "--consistency=s", "--rev", &(at - 1).to_string()])
            .assert_server_error("OutOfRange", "etcdserver: mvcc: required revision has been compacted");
        assert_eq!(m.ctl_ok(&["get", "hist", "--consistency=s", "--rev", &at.to_string()]), "hist\nv3\n");
        assert_eq!(m.ctl_ok(&["get", "hist", "--consistency=s"]), "hist\nv5\n");
        let hash = m.ctl_json(&["endpoint", "hashkv", "--rev", &rev.to_string()]);
        assert_eq!(hash[0]["HashKV"]["compact_revision"].as_i64(), Some(at), "{}: {hash}", m.name);
    }
}

/// m1 (the leader, or a follower) fails at `site` with its `return` action (an error, not a crash): it
/// must stop by itself with exit status 1 within seconds, saying `why` (what the binary prints last),
/// while the others go on; restarted without the failpoint, it catches up.
fn error_stops_the_member(site: &str, leader: bool, why: &str) {
    let mut c = failpoint_cluster(&[], Some((0, format!("{site}={PASS_FIRST}*off->return"))));
    if leader {
        make_leader(&mut c, 0);
    } else {
        make_follower(&mut c, 0);
    }
    let load = Load::start(&c, "load-");
    let failed = poll(CRASH_TIMEOUT, &format!("m1 to fail at {site}"), || c[0].log().contains(why).then(Instant::now));
    let status = c[0].wait_exit(Duration::from_secs(20)).unwrap_or_else(|| panic!("m1 still runs 20 s after {why}"));
    eprintln!("m1 exited {:?} after the failure at {site}: {status}", failed.elapsed());
    assert_eq!(status.code(), Some(1), "{status}\n{}", c[0].log_tail(30));
    assert!(c[0].log().contains(&format!("\nmodkv: {why}")), "{}", c[0].log_tail(30));
    c.wait_leader_among(&[1, 2], LEADER_TIMEOUT);
    load.wait_more(STAGE_PUTS, "with m1 stopped");
    restart_plain(&mut c, 0);
    load.wait_more(STAGE_PUTS, "after m1's restart");
    let acked = load.stop();
    assert_converged(&c, &acked);
}

/// What a member whose fsync failed says as it stops.
const FSYNC_FAILED: &str = "raft node stopped: etcdserver: storage: IO error: While fsync: input/output error";

#[test]
fn leader_with_failing_fsync_stops_and_the_others_go_on() {
    error_stops_the_member("storage::fsync_error", true, FSYNC_FAILED);
}

#[test]
fn follower_with_failing_fsync_stops_and_the_others_go_on() {
    error_stops_the_member("storage::fsync_error", false, FSYNC_FAILED);
}

#[test]
fn follower_failing_to_write_applied_entries_stops() {
    error_stops_the_member("apply::before_write", false, "apply failed: etcdserver: failpoint apply::before_write");
}

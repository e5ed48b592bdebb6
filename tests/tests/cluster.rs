//! Multi-member clusters: replication, leader failure, membership changes, catch-up, quorum loss and
//! leadership transfer, asserting what etcd 3.4 does (see `tests/src/cluster.rs` for the harness).
//!
//! etcd facts these tests rely on (checked against etcd 3.4.23):
//! * member ids are printed as decimal numbers in `-w json` and taken as hex on the command line
//!   (`member remove/promote`, `move-leader`); `member list` is sorted by id.
//! * a reconfiguration is refused with `etcdserver: unhealthy cluster` until the member handling it has
//!   been connected to every voter for 5 s; the harness and these tests retry on that answer.
//! * etcdctl prints `Member %16x added to|removed from|promoted in cluster %16x` (ids space-padded to 16
//!   columns), but `Leadership transferred from %x to %x` unpadded.
//! * a learner serves only serializable reads and `endpoint status` (which says `isLearner: true`); other
//!   requests get `etcdserver: rpc not supported for learner` (gRPC `Unavailable`): `etcdctl put` fails
//!   at once, read-only calls (`get`, `member list`) are retried by etcdctl until its deadline, and
//!   `endpoint health` reports it unhealthy.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use modkv_tests::cluster::*;
use modkv_tests::*;

const LEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What etcdctl (`--command-timeout=3s`) prints for a put or linearizable get on a member without a leader:
/// its own deadline (`DeadlineExceeded`) or the server's context error (`Unknown`), whichever comes first.
const MINORITY_ERRORS: [&str; 2] =
    ["Error: context deadline exceeded", "Error: rpc error: code = Unknown desc = context deadline exceeded"];

/// `(id, name, peerURLs, clientURLs, isLearner)` of each member in a `member list -w json`, in order.
type MemberRow = (u64, String, Vec<String>, Vec<String>, bool);

/// Polls `f` every 100 ms until it holds or `timeout` passes; whether it held.
fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

#[track_caller]
fn member_rows(list: &Value) -> Vec<MemberRow> {
    list["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members in {list}"))
        .iter()
        .map(|m| {
            (
                m["ID"].as_u64().unwrap_or_else(|| panic!("no ID in {m}")),
                m["name"].as_str().unwrap_or("").to_string(),
                strings(&m["peerURLs"]),
                strings(&m["clientURLs"]),
                m["isLearner"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// The rows a started member `c[i]` should have in `member list`.
fn expected_row(c: &Cluster, i: usize, learner: bool) -> MemberRow {
    (c[i].id, c[i].name.clone(), vec![c[i].peer_url()], vec![c[i].endpoint()], learner)
}

/// Expected `member list` rows for `members` (index, learner), sorted by id as etcd lists them.
fn expected_rows(c: &Cluster, members: &[(usize, bool)]) -> Vec<MemberRow> {
    let mut rows: Vec<MemberRow> = members.iter().map(|&(i, l)| expected_row(c, i, l)).collect();
    rows.sort();
    rows
}

/// Polls `member list -w json` on `c[i]` until its rows equal `want` (membership changes reach
/// followers asynchronously); panics with the last answer otherwise.
#[track_caller]
fn wait_member_list(c: &Cluster, i: usize, want: &[MemberRow], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let out = c[i].etcdctl(&["-w", "json", "member", "list"]);
        let rows = out.success().then(|| member_rows(&parse_json(&out.stdout)));
        if rows.as_deref() == Some(want) {
            return;
        }
        if Instant::now() >= deadline {
            panic!("member list on {} after {timeout:?}: {rows:#?}\nwanted {want:#?}\n{out:#?}", c[i].name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// All `(key, value)` with `prefix` as `c[i]` has applied them (serializable read).
#[track_caller]
fn local_kvs(c: &Cluster, i: usize, prefix: &str) -> BTreeMap<String, String> {
    let j = c[i].ctl_json(&["get", "--consistency=s", "--prefix", prefix]);
    kvs(&j).into_iter().map(|(k, v, ..)| (k, v)).collect()
}

#[track_caller]
fn wait_local_value(c: &Cluster, i: usize, key: &str, value: &str, timeout: Duration) {
    let what = format!("{key}={value} on {} (serializable)", c[i].name);
    poll(timeout, &what, || (c[i].local_value(key).as_deref() == Some(value)).then_some(()));
}

/// `endpoint hashkv --rev <rev>` (a hash of the whole key space and its history up to `rev`) is the same
/// on the members `idx`.
#[track_caller]
fn assert_same_hashkv(c: &Cluster, idx: &[usize], rev: i64) {
    let rev = rev.to_string();
    let hashes: Vec<Value> = idx
        .iter()
        .map(|&i| c[i].ctl_json(&["endpoint", "hashkv", "--rev", &rev])[0]["HashKV"]["hash"].clone())
        .collect();
    assert!(hashes[0].is_u64() && hashes.iter().all(|h| *h == hashes[0]), "hashkv at {rev}: {hashes:?}");
}

#[track_caller]
fn status_u64(s: &Value, field: &str) -> u64 {
    s[field].as_u64().unwrap_or_else(|| panic!("no {field} in {s}"))
}

both_kinds! {
    fn three_members_write_anywhere_read_everywhere(kind) {
        let mut c = Cluster::start(kind, 3, &[]);
        let l = c.wait_leader(LEADER_TIMEOUT);
        let f = (l + 1) % 3;
        // A fresh cluster is at revision 1; the follower forwards its put to the leader.
        assert_eq!(c[f].ctl_ok(&["put", "via-follower", "f-value"]), "OK\n");
        assert_eq!(c[l].ctl_ok(&["put", "via-leader", "l-value"]), "OK\n");
        let want = vec![kv("via-follower", "f-value", 2, 2, 1), kv("via-leader", "l-value", 3, 3, 1)];
        let cluster_id = c.cluster_id();
        for i in 0..3 {
            let j = c[i].ctl_json(&["get", "via-", "--prefix"]);
            assert_eq!((kvs(&j), header_rev(&j), j["count"].as_i64()), (want.clone(), 3, Some(2)), "{} {j}", c[i].name);
            assert_eq!(j["header"]["member_id"].as_u64(), Some(c[i].id), "{j}");
            assert_eq!(j["header"]["cluster_id"].as_u64(), Some(cluster_id), "{j}");
            let j = c[i].ctl_json(&["get", "via-leader"]);
            assert_eq!((kvs(&j), header_rev(&j)), (vec![want[1].clone()], 3), "{} {j}", c[i].name);
        }
        for i in 0..3 {
            let what = format!("serializable get on {}", c[i].name);
            poll(Duration::from_secs(5), &what, || {
                let j = c[i].ctl_json(&["get", "via-", "--prefix", "--consistency=s"]);
                (kvs(&j) == want && header_rev(&j) == 3).then_some(())
            });
        }

        // member list: the same three members (sorted by id) from every member.
        let rows = expected_rows(&c, &[(0, false), (1, false), (2, false)]);
        for i in 0..3 {
            let j = c[i].ctl_json(&["member", "list"]);
            assert_eq!(member_rows(&j), rows, "member list on {}: {j}", c[i].name);
            assert_eq!(j["header"]["member_id"].as_u64(), Some(c[i].id), "{j}");
            assert_eq!(j["header"]["cluster_id"].as_u64(), Some(cluster_id), "{j}");
        }
        let ids: BTreeSet<u64> = (0..3).map(|i| c[i].id).collect();
        assert_eq!(ids.len(), 3, "member ids are distinct");

        // endpoint status --cluster: one entry per member (in member-list order), one agreed leader.
        let st = c[0].ctl_json(&["endpoint", "status", "--cluster"]);
        let entries = st.as_array().unwrap_or_else(|| panic!("not an array: {st}"));
        let endpoints: Vec<String> = entries.iter().map(|e| e["Endpoint"].as_str().unwrap().to_string()).collect();
        let want_endpoints: Vec<String> = rows.iter().map(|r| r.3[0].clone()).collect();
        assert_eq!(endpoints, want_endpoints, "{st}");
        let leaders: BTreeSet<u64> = entries.iter().map(|e| status_u64(&e["Status"], "leader")).collect();
        assert_eq!(leaders, BTreeSet::from([c[l].id]), "{st}");
        let self_leaders: Vec<&str> = entries
            .iter()
            .filter(|e| e["Status"]["header"]["member_id"] == e["Status"]["leader"])
            .map(|e| e["Endpoint"].as_str().unwrap())
            .collect();
        assert_eq!(self_leaders, vec![c[l].endpoint().as_str()], "{st}");
        for e in entries {
            let s = &e["Status"];
            assert!(status_u64(s, "raftIndex") > 0, "{e}");
            assert!(status_u64(s, "raftTerm") > 0, "{e}");
            assert!(!s["version"].as_str().unwrap_or("").is_empty(), "{e}");
            assert_eq!(s["header"]["cluster_id"].as_u64(), Some(cluster_id), "{e}");
            assert_eq!(s["header"]["revision"].as_i64(), Some(3), "{e}");
            assert!(!s["isLearner"].as_bool().unwrap_or(false), "{e}");
            assert!(s.get("errors").is_none(), "{e}");
        }

        // SIGTERM, the leader first: each member stops at once (etcd in ≈ 0.1 s). modkv's used to wait
        // out its 5 s drain deadline for the raft streams the other members keep open to it.
        for i in [l, f, (l + 2) % 3] {
            let started = Instant::now();
            let status = c[i].stop();
            let took = started.elapsed();
            assert!(status.is_some(), "{} did not exit after SIGTERM", c[i].name);
            assert!(took < Duration::from_secs(3), "{} took {took:?} to stop", c[i].name);
            assert!(!c[i].log().contains("still open"), "{}", c[i].log());
        }
    }

    fn leader_kill9_under_load_loses_no_acknowledged_write(kind) {
        let mut c = Cluster::start(kind, 3, &[]);
        let l = c.wait_leader(LEADER_TIMEOUT);
        let writer = Writer::start((0..3).map(|i| c[i].endpoint()).collect(), "k");
        writer.wait_acked(30, Duration::from_secs(20));

        c[l].kill9();
        let killed_at = Instant::now();
        let others: Vec<usize> = (0..3).filter(|&i| i != l).collect();
        let nl = c.wait_leader_among(&others, LEADER_TIMEOUT);
        assert!(killed_at.elapsed() < LEADER_TIMEOUT);
        assert_ne!(nl, l);
        // Keep writing through the election and after it.
        let before = writer.acked();
        writer.wait_acked(before + 40, Duration::from_secs(20));

        c[l].restart();
        let more = writer.acked();
        writer.wait_acked(more + 10, Duration::from_secs(20));
        let log = writer.stop();
        let (last_key, last_value) = log.acked.last().cloned().unwrap();
        wait_local_value(&c, l, &last_key, &last_value, Duration::from_secs(20));

        // Every acknowledged put is on every member; failed ones are absent or have their exact value.
        for i in 0..3 {
            let got = local_kvs(&c, i, "k");
            for (k, v) in &log.acked {
                assert_eq!(got.get(k), Some(v), "acknowledged {k} on {}", c[i].name);
            }
            for (k, _, _) in &log.failed {
                let want = format!("v{}", k[1..].parse::<usize>().unwrap());
                assert!(got.get(k).is_none_or(|v| *v == want), "{k} on {}: {:?}", c[i].name, got.get(k));
            }
        }
        // Linearizable reads through each member agree exactly.
        let views: Vec<Value> = (0..3).map(|i| c[i].ctl_json(&["get", "k", "--prefix"])).collect();
        for i in 1..3 {
            assert_eq!((kvs(&views[i]), header_rev(&views[i])), (kvs(&views[0]), header_rev(&views[0])));
        }
        // And their whole key spaces, history included, hash the same at that revision.
        assert_same_hashkv(&c, &[0, 1, 2], header_rev(&views[0]));
        assert!(log.acked.len() >= 80, "{} acked, {} failed", log.acked.len(), log.failed.len());
    }

    fn member_add_promote_remove_under_load(kind) {
        let mut c = Cluster::start(kind, 3, &[]);
        c.wait_leader(LEADER_TIMEOUT);
        let cluster_id = c.cluster_id();
        let writer = Writer::start((0..3).map(|i| c[i].endpoint()).collect(), "load-");
        writer.wait_acked(10, Duration::from_secs(20));

        // Errors etcd answers for bad membership requests.
        c[0].etcdctl(&["member", "promote", &c[1].id_hex()])
            .assert_server_error("FailedPrecondition", "etcdserver: can only promote a learner member");
        c[0].etcdctl(&["member", "remove", "1234"]).assert_server_error("NotFound", "etcdserver: member not found");
        c[0].etcdctl(&["member", "promote", "1234"]).assert_server_error("NotFound", "etcdserver: member not found");
        let dup = format!("--peer-urls={}", c[2].peer_url());
        c[0].ctl_retry(&["member", "add", "dup", &dup], &[ERR_UNHEALTHY_CLUSTER], Duration::from_secs(20))
            .assert_server_error("FailedPrecondition", "etcdserver: Peer URLs already exists");

        // A learner.
        let m4 = c.add_member("m4", true);
        let mut initial: Vec<(u64, String)> =
            (0..3).chain([m4]).map(|i| (c[i].id, format!("{}={}", c[i].name, c[i].peer_url()))).collect();
        initial.sort();
        let initial = initial.into_iter().map(|(_, s)| s).collect::<Vec<_>>().join(",");
        assert_eq!(
            c[m4].add_output.as_deref().unwrap(),
            format!(
                "Member {:16x} added to cluster {cluster_id:16x}\n\n\
                 ETCD_NAME=\"m4\"\nETCD_INITIAL_CLUSTER=\"{initial}\"\n\
                 ETCD_INITIAL_ADVERTISE_PEER_URLS=\"{}\"\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n",
                c[m4].id,
                c[m4].peer_url()
            )
        );
        // A learner serves neither `member list` nor `endpoint health` (only serializable reads and
        // `endpoint status`), so ask the voters.
        let with_learner = expected_rows(&c, &[(0, false), (1, false), (2, false), (m4, true)]);
        for i in [0, 1, 2] {
            wait_member_list(&c, i, &with_learner, Duration::from_secs(10));
        }
        // The learner has the data but serves no linearizable request.
        let (k, v) = writer.last_acked().unwrap();
        wait_local_value(&c, m4, &k, &v, Duration::from_secs(20));
        let put = c[m4].etcdctl(&["put", "on-learner", "x"]);
        put.assert_server_error("Unavailable", "etcdserver: rpc not supported for learner");
        let status = c[m4].status().unwrap();
        assert_eq!(status["isLearner"].as_bool(), Some(true), "{status}");
        let health = c[m4].etcdctl(&["--command-timeout=2s", "endpoint", "health"]);
        let last_error = health.error_lines().last().cloned();
        assert_eq!((health.status, last_error.as_deref()), (1, Some("Error: unhealthy cluster")), "{health:#?}");

        // Promote it (etcd refuses until the learner is in sync with the leader).
        let promote = c[0].ctl_retry(
            &["member", "promote", &c[m4].id_hex()],
            &["etcdserver: can only promote a learner member which is in sync with leader", ERR_UNHEALTHY_CLUSTER],
            Duration::from_secs(20),
        );
        assert_eq!(promote.ok(), format!("Member {:16x} promoted in cluster {cluster_id:16x}\n", c[m4].id));
        c[m4].learner = false;
        let four = expected_rows(&c, &[(0, false), (1, false), (2, false), (m4, false)]);
        for i in [0, 1, 2, m4] {
            wait_member_list(&c, i, &four, Duration::from_secs(10));
        }
        poll(Duration::from_secs(10), "m4 to serve linearizable puts", || {
            c[m4].etcdctl(&["put", "on-m4", "promoted"]).success().then_some(())
        });

        // A voter added directly.
        let m5 = c.add_member("m5", false);
        writer.set_endpoints([0, 2, m4, m5].iter().map(|&i| c[i].endpoint()).collect());
        let five = expected_rows(&c, &[(0, false), (1, false), (2, false), (m4, false), (m5, false)]);
        for i in [0, 1, 2, m4, m5] {
            wait_member_list(&c, i, &five, Duration::from_secs(10));
        }

        // Remove m2; it stops by itself (etcd exits 0).
        let remove =
            c[0].ctl_retry(&["member", "remove", &c[1].id_hex()], &[ERR_UNHEALTHY_CLUSTER], Duration::from_secs(20));
        assert_eq!(remove.ok(), format!("Member {:16x} removed from cluster {cluster_id:16x}\n", c[1].id));
        let exited = c[1].wait_exit(Duration::from_secs(15));
        c[1].kill9();
        assert_eq!(exited.map(|s| s.code()), Some(Some(0)), "removed member m2: still running or failed");
        let remaining = [0, 2, m4, m5];
        let final_rows = expected_rows(&c, &[(0, false), (2, false), (m4, false), (m5, false)]);
        for i in remaining {
            wait_member_list(&c, i, &final_rows, Duration::from_secs(10));
        }

        // Writes still succeed through every remaining member, and the load lost nothing.
        let more = writer.acked();
        writer.wait_acked(more + 10, Duration::from_secs(20));
        let log = writer.stop();
        for i in remaining {
            let key = format!("after-{}", c[i].name);
            assert_eq!(c[i].ctl_ok(&["put", &key, "ok"]), "OK\n");
        }
        for i in remaining {
            let got: BTreeMap<String, String> =
                kvs(&c[i].ctl_json(&["get", "load-", "--prefix"])).into_iter().map(|(k, v, ..)| (k, v)).collect();
            for (k, v) in &log.acked {
                assert_eq!(got.get(k), Some(v), "acknowledged {k} on {}", c[i].name);
            }
            let after = kvs(&c[i].ctl_json(&["get", "after-", "--prefix"]));
            let after: Vec<&str> = after.iter().map(|kv| kv.0.as_str()).collect();
            assert_eq!(after, ["after-m1", "after-m3", "after-m4", "after-m5"]);
        }
    }

    fn paused_member_catches_up_through_snapshot(kind) {
        // etcd keeps 5000 entries after a snapshot for slow followers (SnapshotCatchUpEntries), so more than
        // 5000 + --snapshot-count entries must pass while the follower is stopped for it to need a snapshot.
        const N: usize = 6000;
        let mut c = Cluster::start(kind, 3, &["--snapshot-count", "100"]);
        let l = c.wait_leader(LEADER_TIMEOUT);
        let f = (l + 1) % 3;
        let other = (l + 2) % 3;
        c[f].pause();
        let took = put_many_grpc(&[c[l].endpoint(), c[other].endpoint()], "snap-", N, 16);
        eprintln!("{N} puts took {took:?}");
        let last = format!("snap-{:05}", N - 1);
        c[f].resume();

        wait_local_value(&c, f, &last, &format!("v{}", N - 1), Duration::from_secs(20));
        let j = c[f].ctl_json(&["get", "snap-", "--prefix", "--consistency=s", "--limit", "1"]);
        assert_eq!(j["count"].as_u64(), Some(N as u64), "{j}");
        // One more write, through the leader, reaches the follower by the log. (etcd 3.4 goes on reporting
        // the pre-snapshot raftAppliedIndex on a follower, and refuses its proposals with "etcdserver: too
        // many requests", until it has applied an entry after the snapshot.)
        assert_eq!(c[l].ctl_ok(&["put", "after-snapshot", "1"]), "OK\n");
        wait_local_value(&c, f, "after-snapshot", "1", Duration::from_secs(10));
        poll(Duration::from_secs(20), "the follower's raftAppliedIndex to reach the leader's", || {
            let (leader, follower) = (c[l].status()?, c[f].status()?);
            let (li, fi) = (status_u64(&leader, "raftAppliedIndex"), status_u64(&follower, "raftAppliedIndex"));
            (li > N as u64 && fi + 2 >= li && status_u64(&follower, "leader") == c[l].id).then_some(())
        });
        // Every key with its value, and the same revision as on the leader.
        let lj = c[l].ctl_json(&["get", "", "--prefix", "--consistency=s"]);
        let fj = c[f].ctl_json(&["get", "", "--prefix", "--consistency=s"]);
        assert_eq!(header_rev(&fj), header_rev(&lj));
        assert_eq!(header_rev(&fj), N as i64 + 2);
        let got = kvs(&fj);
        assert_eq!(got.len(), N + 1);
        assert_eq!(got, kvs(&lj));
        assert_eq!(got[0], kv("after-snapshot", "1", N as i64 + 2, N as i64 + 2, 1));
        for (i, (k, v, ..)) in got[1..].iter().enumerate() {
            assert_eq!((k.as_str(), v.as_str()), (format!("snap-{i:05}").as_str(), format!("v{i}").as_str()));
        }
        // The history it got from the snapshot is the leader's too.
        assert_same_hashkv(&c, &[l, f], N as i64 + 2);
        // It was a snapshot, not the log, that caught it up (both servers log it in these words).
        assert!(c[f].log().contains("applied incoming snapshot"), "no snapshot was installed:\n{}", c[f].log_tail(40));
        // It takes part in consensus again.
        assert_eq!(c[f].ctl_ok(&["put", "via-caught-up", "1"]), "OK\n");
        let rev = N as i64 + 3;
        assert_eq!(kvs(&c[l].ctl_json(&["get", "via-caught-up"])), vec![kv("via-caught-up", "1", rev, rev, 1)]);
    }

    fn minority_cannot_commit(kind) {
        let mut c = Cluster::start(kind, 3, &[]);
        let l = c.wait_leader(LEADER_TIMEOUT);
        assert_eq!(c[l].ctl_ok(&["put", "before", "1"]), "OK\n");
        let survivor = (l + 1) % 3;
        let paused = [l, (l + 2) % 3];
        for i in paused {
            c[i].pause();
        }
        // The survivor notices it has no leader (after an election timeout).
        let status = poll(Duration::from_secs(10), "the survivor to have no leader", || {
            c[survivor].status().filter(|s| s["leader"].as_u64().unwrap_or(0) == 0)
        });
        assert_eq!(strings(&status["errors"]), ["etcdserver: no leader"], "{status}");

        // A put, and a linearizable read, wait for a leader until the client gives up. etcd spells the
        // failure either way, depending on whether the client's deadline or the server's (the same one,
        // propagated by gRPC) fires first.
        for args in [["put", "minority", "lost"], ["get", "before", "--consistency=l"]] {
            let t = Instant::now();
            let mut a = vec!["--command-timeout=3s"];
            a.extend(args);
            let out = c[survivor].etcdctl(&a);
            assert!(t.elapsed() >= Duration::from_millis(2500), "{args:?} failed early: {out:#?}");
            assert_eq!((out.status, out.stdout.as_str()), (1, ""), "{out:#?}");
            let line = out.error_lines().join("\n");
            assert!(MINORITY_ERRORS.contains(&line.as_str()), "{args:?}: {out:#?}");
        }
        // A serializable read still answers from local state.
        assert_eq!(c[survivor].local_value("before").as_deref(), Some("1"));

        for i in paused {
            c[i].resume();
        }
        poll(Duration::from_secs(15), "a put to succeed after the majority is back", || {
            c[survivor].etcdctl(&["--command-timeout=2s", "put", "after", "2"]).success().then_some(())
        });
        // The put that timed out without a leader was never proposed.
        for i in 0..3 {
            let j = c[i].ctl_json(&["get", "", "--prefix"]);
            let keys: Vec<(String, String)> = kvs(&j).into_iter().map(|(k, v, ..)| (k, v)).collect();
            let want = [("after".to_string(), "2".to_string()), ("before".to_string(), "1".to_string())];
            assert_eq!(keys, want, "{}", c[i].name);
        }
    }

    fn five_members_survive_two_losses(kind) {
        let mut c = Cluster::start(kind, 5, &[]);
        let l = c.wait_leader(LEADER_TIMEOUT);
        assert_eq!(c[l].ctl_ok(&["put", "before", "0"]), "OK\n");
        let killed = [l, (l + 1) % 5];
        for i in killed {
            c[i].kill9();
        }
        let survivors: Vec<usize> = (0..5).filter(|i| !killed.contains(i)).collect();
        let nl = c.wait_leader_among(&survivors, LEADER_TIMEOUT);
        for &i in &survivors {
            let key = format!("after-{}", c[i].name);
            assert_eq!(c[i].ctl_ok(&["put", &key, &c[i].name]), "OK\n");
        }
        // Revisions: before@2, then one per survivor in order.
        let mut want = vec![kv("before", "0", 2, 2, 1)];
        let mut afters: Vec<_> = survivors
            .iter()
            .enumerate()
            .map(|(n, &i)| kv(&format!("after-{}", c[i].name), &c[i].name, n as i64 + 3, n as i64 + 3, 1))
            .collect();
        afters.sort();
        want.splice(0..0, afters);
        for &i in &survivors {
            let j = c[i].ctl_json(&["get", "", "--prefix"]);
            assert_eq!((kvs(&j), header_rev(&j)), (want.clone(), survivors.len() as i64 + 2), "{}", c[i].name);
            let s = c[i].status().unwrap();
            assert_eq!(status_u64(&s, "leader"), c[nl].id, "{s}");
        }
        assert!(survivors.contains(&nl));
    }

    fn move_leader(kind) {
        let mut c = Cluster::start(kind, 3, &[]);
        let l = c.wait_leader(LEADER_TIMEOUT);
        let (t, other) = ((l + 1) % 3, (l + 2) % 3);
        let out = c[l].etcdctl(&["move-leader", &c[t].id_hex()]);
        assert_eq!(out.ok(), format!("Leadership transferred from {:x} to {:x}\n", c[l].id, c[t].id));
        assert_eq!(c.wait_leader(LEADER_TIMEOUT), t);
        for i in 0..3 {
            assert_eq!(status_u64(&c[i].status().unwrap(), "leader"), c[t].id);
        }

        // etcdctl only sends MoveLeader to an endpoint whose status says it leads.
        let out = c[l].etcdctl(&["move-leader", &c[other].id_hex()]);
        assert_eq!(
            (out.status, out.stdout.as_str(), out.stderr.as_str()),
            (128, "", format!("Error: no leader endpoint given at [{}]\n", c[l].endpoint()).as_str())
        );
        // Sent to a follower anyway, the server refuses.
        let err = move_leader_grpc(&c[l].endpoint(), c[other].id).unwrap_err();
        assert_eq!(err, ("FailedPrecondition".to_string(), "etcdserver: not leader".to_string()));
        // An unknown transferee.
        c[t].etcdctl(&["move-leader", "1234"])
            .assert_server_error("FailedPrecondition", "etcdserver: bad leader transferee");
        assert_eq!(c.wait_leader(LEADER_TIMEOUT), t);

        // The new leader serves writes; the transfer can go on.
        assert_eq!(c[other].ctl_ok(&["put", "after-move", "1"]), "OK\n");
        let out = c[t].etcdctl(&["move-leader", &c[other].id_hex()]);
        assert_eq!(out.ok(), format!("Leadership transferred from {:x} to {:x}\n", c[t].id, c[other].id));
        assert_eq!(c.wait_leader(LEADER_TIMEOUT), other);
        assert_eq!(kvs(&c[l].ctl_json(&["get", "after-move"])), vec![kv("after-move", "1", 2, 2, 1)]);
    }

    /// A member started with another `--initial-cluster-token` belongs to another cluster: the running
    /// cluster refuses its messages, and both sides log why, in the same words etcd uses.
    fn mismatched_cluster_token_is_refused_on_both_sides(kind) {
        let mut c = Cluster::start(kind, 3, &[]);
        c.wait_leader(LEADER_TIMEOUT);
        assert_eq!(c[0].ctl_ok(&["put", "k", "v"]), "OK\n");
        // An intruder that claims m1 as its peer, with its own token (so another cluster id).
        let (cport, pport) = (free_port(), free_port());
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("intruder.log");
        let peer = format!("http://127.0.0.1:{pport}");
        let client = format!("http://127.0.0.1:{cport}");
        let args = [
            "--name", "intruder", "--data-dir", &dir.path().join("data").display().to_string(),
            "--listen-client-urls", &client, "--advertise-client-urls", &client,
            "--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer,
            "--initial-cluster", &format!("m1={},intruder={peer}", c[0].peer_url()),
            "--initial-cluster-token", "another-token", "--initial-cluster-state", "new",
            "--heartbeat-interval", "50", "--election-timeout", "500",
        ];
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = std::process::Command::new(kind.binary())
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let refused = |text: &str| text.contains("cluster ID mismatch");
        let seen = poll_until(Duration::from_secs(15), || {
            refused(&c[0].log()) && refused(&std::fs::read_to_string(&log_path).unwrap_or_default())
        });
        let _ = child.kill();
        let _ = child.wait();
        let intruder_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        assert!(seen, "no refusal logged on both sides:\n--- m1 ---\n{}\n--- intruder ---\n{intruder_log}", c[0].log_tail(30));
        // The cluster is unharmed: same members, same data.
        assert_eq!(member_rows(&c[1].ctl_json(&["member", "list"])).len(), 3);
        assert_eq!(kvs(&c[2].ctl_json(&["get", "k"])), vec![kv("k", "v", 2, 2, 1)]);
    }

    /// A member removed while it was stopped (SIGSTOP) never sees its removal commit; when it runs again,
    /// the others refuse it and it stops by itself, exit status 0, as etcd's does.
    fn member_removed_while_paused_stops_when_resumed(kind) {
        let mut c = Cluster::start(kind, 3, &[]);
        let l = c.wait_leader(LEADER_TIMEOUT);
        let victim = (l + 1) % 3;
        let cluster_id = c.cluster_id();
        c[victim].pause();
        let remove =
            c[l].ctl_retry(&["member", "remove", &c[victim].id_hex()], &[ERR_UNHEALTHY_CLUSTER], Duration::from_secs(20));
        assert_eq!(remove.ok(), format!("Member {:16x} removed from cluster {cluster_id:16x}\n", c[victim].id));
        c[victim].resume();
        let exited = c[victim].wait_exit(Duration::from_secs(15));
        c[victim].kill9();
        assert_eq!(exited.map(|s| s.code()), Some(Some(0)), "the removed member: still running or failed");
        let other = 3 - l - victim;
        assert_eq!(c[other].ctl_ok(&["put", "after-removal", "1"]), "OK\n");
        assert_eq!(member_rows(&c[l].ctl_json(&["member", "list"])).len(), 2);
    }

    /// Leases through any member: granted through one follower, kept alive through another, and every
    /// member reports the leader's view of its time to live (keep-alives renew it on the leader).
    fn leases_through_any_member(kind) {
        let mut c = Cluster::start(kind, 3, &[]);
        let l = c.wait_leader(LEADER_TIMEOUT);
        let (f1, f2) = ((l + 1) % 3, (l + 2) % 3);
        let grant = c[f1].ctl_json(&["lease", "grant", "20"]);
        assert_eq!(grant["TTL"].as_i64(), Some(20), "{grant}");
        // etcdctl prints lease ids as %016x (zero-padded).
        let id = format!("{:016x}", grant["ID"].as_u64().unwrap());
        assert_eq!(c[f2].ctl_ok(&["put", "leased", "v", "--lease", &id]), "OK\n");
        std::thread::sleep(Duration::from_secs(3));
        let kept = c[f2].ctl_ok(&["lease", "keep-alive", "--once", &id]);
        assert_eq!(kept, format!("lease {id} keepalived with TTL(20)\n"));
        for i in [l, f1, f2] {
            let t = c[i].ctl_json(&["lease", "timetolive", &id, "--keys"]);
            let ttl = t["ttl"].as_i64().unwrap();
            assert!((18..=20).contains(&ttl), "{}: ttl {ttl} right after a keep-alive: {t}", c[i].name);
            assert_eq!(t["granted-ttl"].as_i64(), Some(20), "{t}");
            assert_eq!(strings(&t["keys"]), [b64encode(b"leased")], "{t}");
        }
        assert_eq!(c[f1].ctl_ok(&["lease", "revoke", &id]), format!("lease {id} revoked\n"));
        for i in [l, f1, f2] {
            assert_eq!(c[i].ctl_ok(&["get", "leased"]), "", "{}", c[i].name);
        }
    }

    /// A member that joined later takes full part in elections: the leader is removed and one more of the
    /// original members is killed, so no leader can be elected without the joined member's vote, and the
    /// two left (one original, one joined) go on taking writes.
    fn joined_member_votes_after_the_leader_is_removed(kind) {
        let mut c = Cluster::start(kind, 3, &[]);
        let l = c.wait_leader(LEADER_TIMEOUT);
        assert_eq!(c[l].ctl_ok(&["put", "before", "1"]), "OK\n");
        let m4 = c.add_member("m4", false);
        let (a, b) = ((l + 1) % 3, (l + 2) % 3);
        let remove =
            c[a].ctl_retry(&["member", "remove", &c[l].id_hex()], &[ERR_UNHEALTHY_CLUSTER], Duration::from_secs(20));
        assert!(remove.success(), "{remove:?}");
        let exited = c[l].wait_exit(Duration::from_secs(15));
        c[l].kill9();
        assert_eq!(exited.map(|s| s.code()), Some(Some(0)), "the removed leader: still running or failed");
        c.wait_leader_among(&[a, b, m4], LEADER_TIMEOUT);
        c[b].kill9();
        let leader = c.wait_leader_among(&[a, m4], LEADER_TIMEOUT);
        assert_eq!(c[leader].ctl_ok(&["put", "after", "2"]), "OK\n");
        for i in [a, m4] {
            assert_eq!(c[i].local_value("after").as_deref(), Some("2"), "{}", c[i].name);
            assert_eq!(c[i].local_value("before").as_deref(), Some("1"), "{}", c[i].name);
        }
    }

    /// Members talk over https peer URLs with certificates from one CA, each presenting its certificate
    /// (`--peer-client-cert-auth`): the cluster forms, replicates, lists the https peer URLs, and a member
    /// added later joins over TLS too.
    fn peer_tls_with_client_certificates(kind) {
        let pki = modkv_tests::tls::Pki::generate();
        let ca = pki.path("ca.pem");
        let mut args: Vec<String> = pki.peer_args();
        args.extend(["--peer-trusted-ca-file".to_string(), ca, "--peer-client-cert-auth".to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut c = Cluster::start(kind, 3, &args);
        let l = c.wait_leader(LEADER_TIMEOUT);
        let f = (l + 1) % 3;
        assert_eq!(c[f].ctl_ok(&["put", "over-tls", "v"]), "OK\n");
        for i in 0..3 {
            assert!(c[i].peer_url().starts_with("https://"), "{}", c[i].peer_url());
            wait_local_value(&c, i, "over-tls", "v", Duration::from_secs(5));
        }
        let m4 = c.add_member("m4", false);
        wait_local_value(&c, m4, "over-tls", "v", Duration::from_secs(10));
        let rows = expected_rows(&c, &[(0, false), (1, false), (2, false), (m4, false)]);
        wait_member_list(&c, m4, &rows, Duration::from_secs(10));
        assert_eq!(c[m4].ctl_ok(&["put", "from-m4", "w"]), "OK\n");
        for i in 0..3 {
            wait_local_value(&c, i, "from-m4", "w", Duration::from_secs(5));
        }
    }

    /// `--peer-auto-tls`: each member makes its own self-signed peer certificate, and members do not
    /// verify each other's (as etcd 3.4): the cluster still forms and replicates over https.
    fn peer_auto_tls(kind) {
        let mut c = Cluster::start(kind, 3, &["--peer-auto-tls"]);
        let l = c.wait_leader(LEADER_TIMEOUT);
        assert_eq!(c[l].ctl_ok(&["put", "auto", "tls"]), "OK\n");
        for i in 0..3 {
            assert!(c[i].peer_url().starts_with("https://"), "{}", c[i].peer_url());
            wait_local_value(&c, i, "auto", "tls", Duration::from_secs(5));
        }
    }
}

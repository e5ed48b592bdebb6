//! The Lease service through etcdctl 3.4, with exact outputs: grant (and the
//! minimum TTL), attaching keys, time-to-live, list, keep-alive, revoke,
//! expiry, errors, and leases across a SIGKILL restart.
//!
//! Lease ids are random, so outputs are built from the id etcdctl printed at
//! grant. etcd keeps a lease's keys (and its leases) in Go maps, so where
//! several appear their order is random: such lists are sorted first.

use std::thread;
use std::time::{Duration, Instant};

use modkv_tests::watch::*;
use modkv_tests::*;

const NOT_FOUND: &str = "etcdserver: requested lease not found";

fn fresh(kind: Kind) -> Server {
    Server::start(kind, ServerOpts::new())
}

/// Parses `lease <id> granted with TTL(<g>s), remaining(<r>s)[, attached keys([k1 k2])]`
/// into `(id, granted, remaining, sorted keys)`; `keys` is `None` without `--keys`.
#[track_caller]
fn parse_ttl(out: &str) -> (String, i64, i64, Option<Vec<String>>) {
    let line = out.strip_suffix('\n').unwrap_or_else(|| panic!("no newline: {out:?}"));
    let rest = line.strip_prefix("lease ").unwrap_or_else(|| panic!("{out:?}"));
    let (id, rest) = rest.split_once(" granted with TTL(").unwrap_or_else(|| panic!("{out:?}"));
    let (granted, rest) = rest.split_once("s), remaining(").unwrap_or_else(|| panic!("{out:?}"));
    let (remaining, rest) = rest.split_once("s)").unwrap_or_else(|| panic!("{out:?}"));
    let keys = if rest.is_empty() {
        None
    } else {
        let list = rest
            .strip_prefix(", attached keys([")
            .and_then(|r| r.strip_suffix("])"))
            .unwrap_or_else(|| panic!("{out:?}"));
        let mut keys: Vec<String> = list.split(' ').filter(|k| !k.is_empty()).map(str::to_string).collect();
        keys.sort();
        Some(keys)
    };
    (id.to_string(), granted.parse().unwrap(), remaining.parse().unwrap(), keys)
}

/// `lease timetolive <id> --keys`, asserting the exact shape, the granted TTL,
/// a remaining TTL just below it, and the (sorted) attached keys.
#[track_caller]
fn assert_ttl(s: &Server, id: &str, granted: i64, keys: &[&str]) {
    let out = s.ctl_ok(&["lease", "timetolive", id, "--keys"]);
    let (got_id, got_granted, remaining, got_keys) = parse_ttl(&out);
    assert_eq!(
        (got_id.as_str(), got_granted, got_keys),
        (id, granted, Some(keys.iter().map(|k| k.to_string()).collect()))
    );
    assert!((granted - 3..granted).contains(&remaining), "remaining {remaining} of {granted}: {out:?}");
}

/// Sorted lease ids of `lease list`, asserting its exact shape.
#[track_caller]
fn lease_list(s: &Server) -> Vec<String> {
    let out = s.ctl_ok(&["lease", "list"]);
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    assert_eq!(lines.first().cloned(), Some(format!("found {} leases", lines.len() - 1)), "{out:?}");
    lines.remove(0);
    lines.sort();
    lines
}

/// Asserts an etcdctl failure whose `Error:` line wraps the server error
/// (`lease grant` / `lease revoke` print `Error: failed to <what> (<desc>)`).
#[track_caller]
fn assert_wrapped_error(out: &CtlOutput, what: &str, code: &str, desc: &str) {
    assert_eq!(
        (out.status, out.stdout.as_str(), out.error_lines()),
        (1, "", vec![format!("Error: failed to {what} ({desc})")]),
        "{out:#?}"
    );
    let rpc = out.rpc_errors();
    assert!(!rpc.is_empty(), "{out:#?}");
    for e in rpc {
        assert_eq!(e, format!("rpc error: code = {code} desc = {desc}"));
    }
}

/// Polls `get <key>` until the key is gone; panics after `timeout`.
#[track_caller]
fn wait_gone(s: &Server, key: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    while !s.ctl_ok(&["get", key]).is_empty() {
        assert!(start.elapsed() < timeout, "{key} still there after {timeout:?}");
        thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

both_kinds! {
    fn grant_and_list(kind) {
        let s = fresh(kind);
        // Below the minimum (1.5 election timeouts = 1.5 s, rounded up) the TTL is raised.
        let short = grant(&s, 1, 2);
        let zero = grant(&s, 0, 2);
        let long = grant(&s, 60, 60);
        assert_ttl(&s, &short, 2, &[]);
        assert_ttl(&s, &long, 60, &[]);

        let j = s.ctl_json(&["lease", "grant", "30"]);
        // etcdctl flattens the header into the grant response.
        assert_eq!(keys_of(&j), ["Error", "ID", "TTL", "cluster_id", "member_id", "raft_term", "revision"]);
        assert_eq!((j["TTL"].clone(), j["Error"].clone(), j["revision"].clone()), (json!(30), json!(""), json!(1)));
        let json_id = format!("{:016x}", j["ID"].as_i64().unwrap());

        // The largest TTL is accepted; one more is rejected.
        let max = grant(&s, 9_000_000_000, 9_000_000_000);
        let too_large = s.etcdctl(&["lease", "grant", "9000000001"]);
        assert_wrapped_error(&too_large, "grant lease", "OutOfRange", "etcdserver: too large lease TTL");

        let mut expected = vec![short, zero, long, json_id, max];
        expected.sort();
        assert_eq!(lease_list(&s), expected);
        let j = s.ctl_json(&["lease", "list"]);
        assert_eq!(keys_of(&j), ["cluster_id", "leases", "member_id", "raft_term", "revision"]);
        let mut ids: Vec<String> =
            j["leases"].as_array().unwrap().iter().map(|l| format!("{:016x}", l["id"].as_i64().unwrap())).collect();
        ids.sort();
        assert_eq!(ids, expected);
        assert!(j["leases"].as_array().unwrap().iter().all(|l| keys_of(l) == ["id"]));

        // Granting does not create a revision.
        assert_eq!(s.revision(), 1);
    }

    fn put_with_lease_and_time_to_live(kind) {
        let s = fresh(kind);
        let id = grant(&s, 100, 100);
        let num = lease_num(&id);
        assert_eq!(s.ctl_ok(&["put", "a", "1", &format!("--lease={id}")]), "OK\n");
        assert_eq!(s.ctl_ok(&["put", "b", "2", "--lease", &id]), "OK\n");

        let j = s.ctl_json(&["get", "a"]);
        assert_eq!(keys_of(&j["kvs"][0]), ["create_revision", "key", "lease", "mod_revision", "value", "version"]);
        assert_eq!(j["kvs"][0]["lease"], num);

        // Text, without and with --keys.
        let (got, granted, remaining, keys) = parse_ttl(&s.ctl_ok(&["lease", "timetolive", &id]));
        assert_eq!((got.as_str(), granted, keys), (id.as_str(), 100, None));
        assert!((97..100).contains(&remaining), "{remaining}");
        assert_ttl(&s, &id, 100, &["a", "b"]);

        // JSON.
        let j = s.ctl_json(&["lease", "timetolive", &id, "--keys"]);
        assert_eq!(
            keys_of(&j),
            ["cluster_id", "granted-ttl", "id", "keys", "member_id", "raft_term", "revision", "ttl"]
        );
        assert_eq!((j["id"].as_i64(), j["granted-ttl"].as_i64(), j["revision"].as_i64()), (Some(num), Some(100), Some(3)));
        assert!((97..100).contains(&j["ttl"].as_i64().unwrap()), "{j}");
        let mut keys: Vec<String> = j["keys"].as_array().unwrap().iter().map(b64str).collect();
        keys.sort();
        assert_eq!(keys, ["a", "b"]);
        let j = s.ctl_json(&["lease", "timetolive", &id]);
        assert_eq!(j["keys"], Value::Null);
        assert_eq!(j["granted-ttl"], 100);

        // A lease that does not exist: not an error, TTL -1.
        assert_eq!(s.ctl_ok(&["lease", "timetolive", "1234"]), "lease 0000000000001234 already expired\n");
        assert_eq!(s.ctl_ok(&["lease", "timetolive", "1234", "--keys"]), "lease 0000000000001234 already expired\n");
        let j = s.ctl_json(&["lease", "timetolive", "1234"]);
        assert_eq!(keys_of(&j), ["cluster_id", "granted-ttl", "id", "keys", "member_id", "raft_term", "revision", "ttl"]);
        assert_eq!(
            (j["id"].clone(), j["ttl"].clone(), j["granted-ttl"].clone(), j["keys"].clone(), j["revision"].clone()),
            (json!(4660), json!(-1), json!(0), Value::Null, json!(3))
        );
    }

    fn unknown_lease_errors(kind) {
        let s = fresh(kind);
        s.etcdctl(&["put", "k", "v", "--lease=1234"]).assert_server_error("NotFound", NOT_FOUND);
        s.etcdctl(&["-w", "json", "put", "k", "v", "--lease=1234"]).assert_server_error("NotFound", NOT_FOUND);
        // Inside a txn the whole txn fails.
        s.etcdctl_stdin(&["txn"], b"\nput ok 1\nput k v --lease=1234\n\n\n").assert_server_error("NotFound", NOT_FOUND);
        assert_eq!(s.ctl_ok(&["get", "", "--from-key"]), "");

        let out = s.etcdctl(&["lease", "revoke", "1234"]);
        assert_wrapped_error(&out, "revoke lease", "NotFound", NOT_FOUND);
        let out = s.etcdctl(&["-w", "json", "lease", "revoke", "1234"]);
        assert_wrapped_error(&out, "revoke lease", "NotFound", NOT_FOUND);

        // keep-alive --once: the server answers TTL 0 and etcdctl turns that into
        // an error of its own (exit code 2, no gRPC error).
        let out = s.etcdctl(&["lease", "keep-alive", "--once", "1234"]);
        assert_eq!((out.status, out.stdout.as_str(), out.stderr.as_str()), (2, "", format!("Error: {NOT_FOUND}\n").as_str()));

        // Bad ids are rejected by etcdctl itself.
        let out = s.etcdctl(&["lease", "revoke", "zz"]);
        assert_eq!(
            (out.status, out.stderr.as_str()),
            (128, "Error: bad lease ID arg (strconv.ParseInt: parsing \"zz\": invalid syntax), expecting ID in Hex\n")
        );
        assert_eq!(s.revision(), 1);
    }

    fn keep_alive_once(kind) {
        let s = fresh(kind);
        let id = grant(&s, 100, 100);
        assert_eq!(s.ctl_ok(&["lease", "keep-alive", "--once", &id]), format!("lease {id} keepalived with TTL(100)\n"));
        let j = s.ctl_json(&["lease", "keep-alive", "--once", &id]);
        assert_eq!(keys_of(&j), ["ID", "TTL", "cluster_id", "member_id", "raft_term", "revision"]);
        assert_eq!((j["ID"].as_i64(), j["TTL"].as_i64(), j["revision"].as_i64()), (Some(lease_num(&id)), Some(100), Some(1)));
        assert_ttl(&s, &id, 100, &[]);
    }

    fn revoke_deletes_keys_in_one_revision(kind) {
        let s = fresh(kind);
        let id = grant(&s, 100, 100);
        for k in ["a", "b", "c"] {
            assert_eq!(s.ctl_ok(&["put", k, "v", "--lease", &id]), "OK\n"); // 2, 3, 4
        }
        assert_eq!(s.ctl_ok(&["put", "other", "o"]), "OK\n"); // 5

        let j = s.ctl_json(&["lease", "revoke", &id]);
        assert_eq!(keys_of(&j), ["header"]);
        assert_eq!(header_rev(&j), 6);
        assert_eq!(s.ctl_ok(&["get", "a", "c"]), "");
        assert_eq!(s.ctl_ok(&["get", "", "--from-key"]), "other\no\n");
        assert_eq!(s.revision(), 6);
        // The keys are in history until the revoke.
        assert_eq!(kvs(&s.ctl_json(&["get", "a", "--prefix", "--rev", "5"])).len(), 1);

        // All three deletes in one response at revision 6.
        let w = CtlProc::spawn(&s, &["-w", "json", "watch", "--rev", "6", "", "--prefix"]);
        let resps = w.wait_json(1);
        assert_eq!(
            watch_json(&resps[0]),
            events_resp(6, json!([
                {"type": 1, "kv": {"key": "a", "mod_revision": 6}},
                {"type": 1, "kv": {"key": "b", "mod_revision": 6}},
                {"type": 1, "kv": {"key": "c", "mod_revision": 6}},
            ]))
        );
        drop(w);

        assert!(!lease_list(&s).contains(&id));
        assert_eq!(s.ctl_ok(&["lease", "timetolive", &id]), format!("lease {id} already expired\n"));
        assert_wrapped_error(&s.etcdctl(&["lease", "revoke", &id]), "revoke lease", "NotFound", NOT_FOUND);

        // A lease without keys: revoking it creates no revision.
        let empty = grant(&s, 100, 100);
        assert_eq!(s.ctl_ok(&["lease", "revoke", &empty]), format!("lease {empty} revoked\n"));
        assert_eq!(s.revision(), 6);
        assert_eq!(lease_list(&s), Vec::<String>::new());
        assert_eq!(s.ctl_ok(&["lease", "list"]), "found 0 leases\n");
    }

    fn keys_move_between_leases(kind) {
        let s = fresh(kind);
        let l1 = grant(&s, 100, 100);
        let l2 = grant(&s, 100, 100);
        assert_eq!(s.ctl_ok(&["put", "k", "1", "--lease", &l1]), "OK\n"); // 2
        assert_eq!(s.ctl_ok(&["put", "k", "2", "--lease", &l2]), "OK\n"); // 3
        assert_ttl(&s, &l1, 100, &[]);
        assert_ttl(&s, &l2, 100, &["k"]);
        // Revoking the first lease leaves the key alone (and creates no revision).
        assert_eq!(header_rev(&s.ctl_json(&["lease", "revoke", &l1])), 3);
        assert_eq!(s.ctl_ok(&["get", "k"]), "k\n2\n");

        // A put without a lease detaches the key.
        assert_eq!(s.ctl_ok(&["put", "k", "3"]), "OK\n"); // 4
        assert_ttl(&s, &l2, 100, &[]);
        assert_eq!(keys_of(&s.ctl_json(&["get", "k"])["kvs"][0]), ["create_revision", "key", "mod_revision", "value", "version"]);
        assert_eq!(s.ctl_ok(&["lease", "revoke", &l2]), format!("lease {l2} revoked\n"));
        assert_eq!(s.ctl_ok(&["get", "k"]), "k\n3\n");

        // So does a delete: a key re-created without a lease survives the revoke.
        let l3 = grant(&s, 100, 100);
        assert_eq!(s.ctl_ok(&["put", "d", "1", "--lease", &l3]), "OK\n"); // 5
        assert_eq!(s.ctl_ok(&["del", "d"]), "1\n"); // 6
        assert_ttl(&s, &l3, 100, &[]);
        assert_eq!(s.ctl_ok(&["put", "d", "2"]), "OK\n"); // 7
        assert_eq!(header_rev(&s.ctl_json(&["lease", "revoke", &l3])), 7);
        assert_eq!(s.ctl_ok(&["get", "d"]), "d\n2\n");

        // A txn can attach keys too.
        let l4 = grant(&s, 100, 100);
        let txn = format!("\nput t1 x --lease={l4}\nput t2 y --lease={l4}\n\n\n");
        assert_eq!(s.etcdctl_stdin(&["txn"], txn.as_bytes()).ok(), "SUCCESS\n\nOK\n\nOK\n");
        assert_ttl(&s, &l4, 100, &["t1", "t2"]);
        assert_eq!(header_rev(&s.ctl_json(&["lease", "revoke", &l4])), 9);
        assert_eq!(s.ctl_ok(&["get", "t", "--prefix"]), "");
    }

    fn ignore_lease(kind) {
        let s = fresh(kind);
        let id = grant(&s, 100, 100);
        assert_eq!(s.ctl_ok(&["put", "k", "v1", "--lease", &id]), "OK\n"); // 2
        assert_eq!(s.ctl_ok(&["put", "k", "v2", "--ignore-lease"]), "OK\n"); // 3
        let j = s.ctl_json(&["get", "k"]);
        assert_eq!(kvs(&j), [kv("k", "v2", 2, 3, 2)]);
        assert_eq!(j["kvs"][0]["lease"], lease_num(&id));
        assert_ttl(&s, &id, 100, &["k"]);

        s.etcdctl(&["put", "nokey", "v", "--ignore-lease"]).assert_server_error("InvalidArgument", "etcdserver: key not found");
        s.etcdctl(&["put", "k", "v", "--ignore-lease", "--lease", &id])
            .assert_server_error("InvalidArgument", "etcdserver: lease is provided");

        assert_eq!(header_rev(&s.ctl_json(&["lease", "revoke", &id])), 4);
        assert_eq!(s.ctl_ok(&["get", "k"]), "");
    }

    fn expiry_without_keep_alive(kind) {
        let s = fresh(kind);
        let id = grant(&s, 2, 2);
        assert_eq!(s.ctl_ok(&["put", "e1", "x", "--lease", &id]), "OK\n"); // 2
        assert_eq!(s.ctl_ok(&["put", "e2", "y", "--lease", &id]), "OK\n"); // 3
        assert_eq!(s.ctl_ok(&["put", "keep", "z"]), "OK\n"); // 4
        let took = wait_gone(&s, "e1", Duration::from_secs(10));
        assert!(took < Duration::from_secs(6), "expired after {took:?}");
        assert_eq!(s.ctl_ok(&["get", "", "--from-key"]), "keep\nz\n");
        // Both keys went in the one revision of the revoke.
        assert_eq!(s.revision(), 5);
        let w = CtlProc::spawn(&s, &["-w", "json", "watch", "--rev", "5", "e", "--prefix"]);
        assert_eq!(
            watch_json(&w.wait_json(1)[0]),
            events_resp(5, json!([
                {"type": 1, "kv": {"key": "e1", "mod_revision": 5}},
                {"type": 1, "kv": {"key": "e2", "mod_revision": 5}},
            ]))
        );
        assert_eq!(s.ctl_ok(&["lease", "timetolive", &id]), format!("lease {id} already expired\n"));
        assert!(!lease_list(&s).contains(&id));
    }

    fn keep_alive_stream(kind) {
        let s = fresh(kind);
        let id = grant(&s, 2, 2);
        assert_eq!(s.ctl_ok(&["put", "k", "v", "--lease", &id]), "OK\n");
        // etcdctl renews every TTL/3 and prints each answer.
        let ka = CtlProc::spawn(&s, &["lease", "keep-alive", &id]);
        let line = format!("lease {id} keepalived with TTL(2)\n");
        ka.wait_for("a keep-alive", WAIT, |o| !o.is_empty());
        thread::sleep(Duration::from_secs(4));
        assert_eq!(s.ctl_ok(&["get", "k"]), "k\nv\n", "kept alive past its TTL");
        let out = ka.stdout();
        assert!(out.len() >= 3 * line.len() && out.split_inclusive('\n').all(|l| l == line), "{out:?}");
        // Revoked while kept alive: etcdctl reports it and exits with 0.
        assert_eq!(s.ctl_ok(&["lease", "revoke", &id]), format!("lease {id} revoked\n"));
        let end = format!("lease {id} expired or revoked.\n");
        ka.wait_ends_with(&end);
        let out = ka.wait_exit(WAIT);
        assert_eq!((out.status, out.stderr.as_str()), (0, ""), "{out:#?}");
        assert_eq!(s.ctl_ok(&["get", "k"]), "");

        // Without the keep-alive the lease expires.
        let id = grant(&s, 2, 2);
        assert_eq!(s.ctl_ok(&["put", "k2", "v", "--lease", &id]), "OK\n");
        let ka = CtlProc::spawn(&s, &["lease", "keep-alive", &id]);
        ka.wait_for("a keep-alive", WAIT, |o| !o.is_empty());
        ka.kill();
        wait_gone(&s, "k2", Duration::from_secs(10));
    }

    fn leases_survive_kill9(kind) {
        let mut s = fresh(kind);
        let id = grant(&s, 1000, 1000);
        let short = grant(&s, 3, 3);
        assert_eq!(s.ctl_ok(&["put", "k1", "a", "--lease", &id]), "OK\n"); // 2
        assert_eq!(s.ctl_ok(&["put", "k2", "b", "--lease", &id]), "OK\n"); // 3
        assert_eq!(s.ctl_ok(&["put", "k3", "c", "--lease", &short]), "OK\n"); // 4
        assert_eq!(s.ctl_ok(&["put", "free", "d"]), "OK\n"); // 5
        s.kill9();
        s.restart();

        // A restarted server gives each lease its full TTL again, plus one
        // election timeout (1 s): right after the restart etcd shows 1000 s.
        let out = s.ctl_ok(&["lease", "timetolive", &id, "--keys"]);
        let (_, granted, remaining, keys) = parse_ttl(&out);
        assert_eq!((granted, keys), (1000, Some(vec!["k1".to_string(), "k2".to_string()])));
        assert!((998..=1000).contains(&remaining), "{out:?}");
        let mut both = vec![id.clone(), short.clone()];
        both.sort();
        assert_eq!(lease_list(&s), both);
        let j = s.ctl_json(&["get", "k", "--prefix"]);
        assert_eq!(kvs(&j), [kv("k1", "a", 2, 2, 1), kv("k2", "b", 3, 3, 1), kv("k3", "c", 4, 4, 1)]);
        assert_eq!(j["kvs"][1]["lease"], lease_num(&id));

        // The short lease still expires, taking its key.
        wait_gone(&s, "k3", Duration::from_secs(15));
        assert_eq!(s.revision(), 6);
        assert_eq!(lease_list(&s), std::slice::from_ref(&id));

        assert_eq!(header_rev(&s.ctl_json(&["lease", "revoke", &id])), 7);
        assert_eq!(s.ctl_ok(&["get", "", "--from-key"]), "free\nd\n");
        // A revoke is durable too.
        s.kill9();
        s.restart();
        assert_eq!(s.ctl_ok(&["lease", "list"]), "found 0 leases\n");
        assert_eq!(s.ctl_ok(&["get", "", "--from-key"]), "free\nd\n");
        assert_eq!(s.revision(), 7);
    }
}

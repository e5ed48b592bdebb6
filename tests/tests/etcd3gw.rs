//! The Python `etcd3gw` client (PyPI, 2.x) against the JSON gateway: `tests/python/etcd3gw_session.py`
//! drives put/get (single key, prefix, ranges, revisions), create/replace/txn, delete, leases (grant, put
//! with lease, ttl, keys, refresh, revoke → keys gone), locks, and watches (a watch started in a thread
//! sees the puts and deletes made after it, then is cancelled; history from a past revision; filters) and
//! prints one JSON line per step. Lease ids and cluster/member ids are normalised by the script;
//! revisions are not: identical sessions on fresh servers give identical revisions.
//!
//! `session::{etcd,modkv}` check the transcript against [`EXPECTED`] (recorded from etcd 3.4, so the
//! etcd variant proves it); `etcd_vs_modkv` runs both servers side by side and compares step by step.
//! Needs `python3` with `etcd3gw` (`make deps-test` installs it).

use std::process::Command;
use std::time::Duration;

use modkv_tests::*;

/// The script's own waits are bounded (10 s per watch); this only guards against a hang.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// The transcript on a fresh etcd 3.4 (one JSON object per line).
const EXPECTED: &str = r#"{"result": "/v3/", "step": "api_path"}
{"result": [{"client_urls_ok": [true], "name": "node1", "peer_urls": 1}], "step": "members"}
{"result": true, "step": "status_leader_is_self"}
{"result": true, "step": "put a"}
{"result": true, "step": "put foo/1"}
{"result": true, "step": "put foo/2"}
{"result": true, "step": "put foo/3"}
{"result": true, "step": "put foo0"}
{"result": true, "step": "put a again"}
{"result": true, "step": "put binary"}
{"result": ["2"], "step": "get a"}
{"result": [{"meta": {"create_revision": "2", "key": "a", "mod_revision": "7", "version": "2"}, "value": "2"}], "step": "get a metadata"}
{"result": [], "step": "get missing"}
{"result": [[1, 2]], "step": "get binary"}
{"result": [{"meta": {"create_revision": "3", "key": "foo/1", "mod_revision": "3", "version": "1"}, "value": "one"}, {"meta": {"create_revision": "4", "key": "foo/2", "mod_revision": "4", "version": "1"}, "value": "two"}, {"meta": {"create_revision": "5", "key": "foo/3", "mod_revision": "5", "version": "1"}, "value": "three"}], "step": "get_prefix foo/"}
{"result": [{"meta": {"create_revision": "4", "key": "foo/2", "mod_revision": "4", "version": "1"}, "value": "two"}, {"meta": {"create_revision": "5", "key": "foo/3", "mod_revision": "5", "version": "1"}, "value": "three"}, {"meta": {"create_revision": "3", "key": "foo/1", "mod_revision": "3", "version": "1"}, "value": "one"}], "step": "get_prefix foo/ descend by value"}
{"result": [{"meta": {"create_revision": "3", "key": "foo/1", "mod_revision": "3", "version": "1"}, "value": "one"}, {"meta": {"create_revision": "4", "key": "foo/2", "mod_revision": "4", "version": "1"}, "value": "two"}], "step": "get range limit 2"}
{"result": [{"meta": {"create_revision": "3", "key": "foo/1", "mod_revision": "3", "version": "1"}, "value": ""}, {"meta": {"create_revision": "4", "key": "foo/2", "mod_revision": "4", "version": "1"}, "value": ""}, {"meta": {"create_revision": "5", "key": "foo/3", "mod_revision": "5", "version": "1"}, "value": ""}], "step": "get keys_only"}
{"result": [{"meta": {"create_revision": "2", "key": "a", "mod_revision": "2", "version": "1"}, "value": "1"}], "step": "get at revision 2"}
{"result": [{"meta": {"create_revision": "2", "key": "a", "mod_revision": "7", "version": "2"}, "value": "2"}, {"meta": {"create_revision": "8", "key": "bin\u0000\ufffd", "mod_revision": "8", "version": "1"}, "value": "\u0001\u0002"}, {"meta": {"create_revision": "5", "key": "foo/3", "mod_revision": "5", "version": "1"}, "value": "three"}, {"meta": {"create_revision": "6", "key": "foo0", "mod_revision": "6", "version": "1"}, "value": "outside"}], "step": "get min_mod_revision"}
{"result": ["a", "bin\u0000\ufffd", "foo/1", "foo/2", "foo/3", "foo0"], "step": "get_all"}
{"result": {"detail": {"code": 11, "error": "etcdserver: mvcc: required revision is a future revision", "message": "etcdserver: mvcc: required revision is a future revision"}, "exception": "Etcd3Exception", "reason": ["Bad Request"]}, "step": "get future revision"}
{"result": true, "step": "create x"}
{"result": false, "step": "create x again"}
{"result": true, "step": "replace x 1->2"}
{"result": false, "step": "replace x 1->3"}
{"result": ["2"], "step": "get x"}
{"result": {"header": {"revision": "11"}, "responses": [{"response_range": {"count": "1", "header": {"revision": "10"}, "kvs": [{"create_revision": "9", "key": "eA==", "mod_revision": "10", "value": "Mg==", "version": "2"}]}}, {"response_put": {"header": {"revision": "11"}}}], "succeeded": true}, "step": "transaction"}
{"result": true, "step": "delete a"}
{"result": false, "step": "delete a again"}
{"result": [], "step": "get a after delete"}
{"result": true, "step": "delete foo/1 prev_kv"}
{"result": true, "step": "delete_prefix foo/"}
{"result": [], "step": "get_prefix foo/ after delete"}
{"result": ["outside"], "step": "get foo0 survives"}
{"result": true, "step": "lease id positive"}
{"result": true, "step": "put lk1 with lease"}
{"result": true, "step": "put lk2 with lease"}
{"result": [{"meta": {"create_revision": "15", "key": "lk1", "lease": "<lease:1>", "mod_revision": "15", "version": "1"}, "value": "v1"}], "step": "get lk1 metadata"}
{"result": true, "step": "lease ttl in (58, 60]"}
{"result": "60", "step": "lease timetolive"}
{"result": ["lk1", "lk2"], "step": "lease keys"}
{"result": 60, "step": "lease refresh"}
{"result": [{"ID": "<lease:1>"}], "step": "lease leases"}
{"result": true, "step": "lease revoke"}
{"result": [], "step": "get lk1 after revoke"}
{"result": [], "step": "get lk2 after revoke"}
{"result": -1, "step": "lease ttl after revoke"}
{"result": [], "step": "lease keys after revoke"}
{"result": -1, "step": "lease refresh after revoke"}
{"result": {"detail": {"code": 5, "error": "etcdserver: requested lease not found", "message": "etcdserver: requested lease not found"}, "exception": "Etcd3Exception", "reason": ["Not Found"]}, "step": "lease revoke again"}
{"result": true, "step": "lock acquire"}
{"result": false, "step": "other lock acquire fails"}
{"result": true, "step": "lock is_acquired"}
{"result": false, "step": "other is_acquired"}
{"result": true, "step": "lock release"}
{"result": false, "step": "lock release again"}
{"result": true, "step": "other lock acquire now"}
{"result": true, "step": "other release"}
{"result": {"complete": true, "events": [{"create_revision": "22", "key": "w/1", "mod_revision": "22", "prev_value": null, "type": "PUT", "value": "a", "version": "1"}, {"create_revision": "23", "key": "w/2", "mod_revision": "23", "prev_value": null, "type": "PUT", "value": "b", "version": "1"}, {"create_revision": "22", "key": "w/1", "mod_revision": "25", "prev_value": null, "type": "PUT", "value": "c", "version": "2"}, {"create_revision": null, "key": "w/2", "mod_revision": "26", "prev_value": null, "type": "DELETE", "value": "", "version": null}, {"create_revision": null, "key": "w/1", "mod_revision": "27", "prev_value": null, "type": "DELETE", "value": "", "version": null}]}, "step": "watch_prefix w/"}
{"result": {"complete": true, "events": [{"create_revision": "28", "key": "k", "mod_revision": "28", "prev_value": null, "type": "PUT", "value": "1", "version": "1"}, {"create_revision": "28", "key": "k", "mod_revision": "30", "prev_value": "MQ==", "type": "PUT", "value": "2", "version": "2"}, {"create_revision": null, "key": "k", "mod_revision": "31", "prev_value": "Mg==", "type": "DELETE", "value": "", "version": null}]}, "step": "watch key k with prev_kv"}
{"result": "31", "step": "revision after watches"}
{"result": {"complete": true, "events": [{"create_revision": "22", "key": "w/1", "mod_revision": "25", "prev_value": null, "type": "PUT", "value": "c", "version": "2"}, {"create_revision": null, "key": "w/1", "mod_revision": "27", "prev_value": null, "type": "DELETE", "value": "", "version": null}]}, "step": "watch w/1 from revision 23"}
{"result": {"complete": true, "events": [{"create_revision": "32", "key": "w/3", "mod_revision": "32", "prev_value": null, "type": "PUT", "value": "d", "version": "1"}, {"create_revision": "34", "key": "w/3", "mod_revision": "34", "prev_value": null, "type": "PUT", "value": "e", "version": "1"}]}, "step": "watch_prefix w/ NODELETE"}
{"result": [{"meta": {"create_revision": "34", "key": "w/3", "mod_revision": "34", "version": "1"}, "value": "e"}], "step": "get w/3 after watches"}
{"result": {"detail": {"code": 3, "error": "etcdserver: key is not provided", "message": "etcdserver: key is not provided"}, "exception": "Etcd3Exception", "reason": ["Bad Request"]}, "step": "put empty key"}
{"result": {"ID": "-1", "TTL": "5", "header": {"revision": "34"}}, "step": "lease grant negative id"}
{"result": "34", "step": "final revision"}"#;

fn script_path() -> std::path::PathBuf {
    workspace_root().join("tests").join("python").join("etcd3gw_session.py")
}

/// Runs the session against `s` and returns its steps as `(name, result)`.
fn run_session(s: &Server) -> Vec<(String, Value)> {
    let mut cmd = Command::new("python3");
    cmd.arg(script_path()).arg("127.0.0.1").arg(s.client_port.to_string()).env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run_command(cmd, None, SCRIPT_TIMEOUT);
    assert!(
        out.success(),
        "etcd3gw session against {} failed (is etcd3gw installed? `make deps-test`): {out:#?}",
        s.kind
    );
    parse_transcript(&out.stdout)
}

fn parse_transcript(text: &str) -> Vec<(String, Value)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            (v["step"].as_str().unwrap_or_else(|| panic!("no step name: {l}")).to_string(), v["result"].clone())
        })
        .collect()
}

/// Compares step by step (so the first difference is named), then the lengths.
#[track_caller]
fn assert_same(what: &str, got: &[(String, Value)], want: &[(String, Value)]) {
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "{what}: step {:?} differs", w.0);
    }
    assert_eq!(
        got.iter().map(|s| &s.0).collect::<Vec<_>>(),
        want.iter().map(|s| &s.0).collect::<Vec<_>>(),
        "{what}: different steps"
    );
}

both_kinds! {
    fn session(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let got = run_session(&s);
        assert_same(&format!("{kind} vs the expected transcript"), &got, &parse_transcript(EXPECTED));
        // The session's writes really happened: the final revision as etcdctl sees it.
        assert_eq!(s.revision(), 34);
    }
}

#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn etcd_vs_modkv() {
    let servers = start_all(vec![(Kind::Etcd, ServerOpts::new()), (Kind::Modkv, ServerOpts::new())]);
    let (etcd, modkv) = std::thread::scope(|sc| {
        let e = sc.spawn(|| run_session(&servers[0]));
        let m = sc.spawn(|| run_session(&servers[1]));
        (e.join().unwrap(), m.join().unwrap())
    });
    assert_same("modkv vs etcd", &modkv, &etcd);
}

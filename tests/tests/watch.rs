//! The Watch service, mostly through etcdctl 3.4 (`watch` runs until killed,
//! so it is a child process whose output is read as it comes), with exact
//! outputs; raw gRPC only for what etcdctl does not show (watch ids, cancel,
//! filters, created/canceled responses).
//!
//! To avoid racing a watch's creation against the writes it should see,
//! watches start at an explicit `--rev` (or use `watch -i` with `progress`,
//! whose answer proves the watch exists).

use std::thread;
use std::time::Duration;

use modkv_tests::grpc::KeyValue;
use modkv_tests::watch::*;
use modkv_tests::*;

const COMPACTED: &str = "watch was canceled (etcdserver: mvcc: required revision has been compacted)\n\
                         Error: watch is canceled by the server\n";
const QUIET: Duration = Duration::from_millis(400);

fn fresh(kind: Kind) -> Server {
    Server::start(kind, ServerOpts::new())
}

fn put_all(s: &Server, pairs: &[(&str, &str)]) {
    for (k, v) in pairs {
        assert_eq!(s.ctl_ok(&["put", k, v]), "OK\n", "put {k}");
    }
}

/// A normalised JSON KeyValue.
fn jkv(key: &str, value: &str, create: i64, modr: i64, version: i64) -> Value {
    json!({"key": key, "value": value, "create_revision": create, "mod_revision": modr, "version": version})
}

fn put_ev(kv: Value) -> Value {
    json!({"kv": kv})
}

/// A delete event: the tombstone carries only the key and its revision.
fn del_ev(key: &str, modr: i64) -> Value {
    json!({"type": 1, "kv": {"key": key, "mod_revision": modr}})
}

fn ev(t: &str, key: &str, rev: i64) -> (String, String, i64) {
    (t.to_string(), key.to_string(), rev)
}

/// `-w json watch -i` with one `watch …` line, followed by a `progress`
/// request: once its answer (at revision `rev`, the first line) is printed,
/// the watch exists and sees every later change.
#[track_caller]
fn live_json_watch(s: &Server, line: &str, rev: i64) -> CtlProc {
    let mut w = CtlProc::spawn(s, &["-w", "json", "watch", "-i"]);
    w.send_line(line);
    w.send_line("progress");
    // etcdctl prints a progress notification as text, then (with `-w json`) as JSON.
    let r = w.wait_json(1);
    assert_eq!(
        watch_json(&r[0]),
        json!({"Header": hdr(rev), "Events": [], "CompactRevision": 0, "Canceled": false, "Created": false})
    );
    assert!(w.stdout().starts_with(&format!("progress notify: {rev}\n{{")), "{}", w.stdout());
    w
}

both_kinds! {
    fn single_key(kind) {
        let s = fresh(kind);
        put_all(&s, &[("foo", "v0")]); // 2
        let w = CtlProc::spawn(&s, &["watch", "--rev", "3", "foo"]);
        put_all(&s, &[("foo", "bar"), ("foo2", "x"), ("fo", "x")]); // 3, 4, 5
        assert_eq!(s.ctl_ok(&["del", "foo"]), "1\n"); // 6
        put_all(&s, &[("foo", "baz")]); // 7
        let expected = "PUT\nfoo\nbar\nDELETE\nfoo\n\nPUT\nfoo\nbaz\n";
        w.wait_lines(9);
        w.assert_quiet(expected, QUIET);
        assert_eq!(w.kill().stderr, "");

        // The same from history, in JSON: one response at the current revision.
        let w = CtlProc::spawn(&s, &["-w", "json", "watch", "--rev", "2", "foo"]);
        let r = w.wait_json(1);
        assert_eq!(
            watch_json(&r[0]),
            events_resp(7, json!([
                put_ev(jkv("foo", "v0", 2, 2, 1)),
                put_ev(jkv("foo", "bar", 2, 3, 2)),
                del_ev("foo", 6),
                put_ev(jkv("foo", "baz", 7, 7, 1)),
            ]))
        );
        // Then live, one response per revision.
        put_all(&s, &[("foo", "live")]); // 8
        let r = w.wait_json(2);
        assert_eq!(watch_json(&r[1]), events_resp(8, json!([put_ev(jkv("foo", "live", 7, 8, 2))])));
        assert_eq!(r.len(), 2);
    }

    fn prefix_range_and_all_keys(kind) {
        let s = fresh(kind);
        put_all(&s, &[("a", "1"), ("ab", "2"), ("abc", "3"), ("b", "4"), ("c", "5"), ("d", "6")]); // 2..7
        assert_eq!(s.ctl_ok(&["del", "ab"]), "1\n"); // 8
        let prefix = CtlProc::spawn(&s, &["-w", "json", "watch", "--rev", "2", "a", "--prefix"]);
        let range = CtlProc::spawn(&s, &["-w", "json", "watch", "--rev", "2", "ab", "c"]);
        let all = CtlProc::spawn(&s, &["-w", "json", "watch", "--rev", "2", "", "--prefix"]);
        let single = CtlProc::spawn(&s, &["-w", "json", "watch", "--rev", "2", "b"]);
        // History comes in one response each.
        assert_eq!(
            event_revs(&prefix.wait_json(1)),
            [ev("PUT", "a", 2), ev("PUT", "ab", 3), ev("PUT", "abc", 4), ev("DELETE", "ab", 8)]
        );
        assert_eq!(event_revs(&range.wait_json(1)), [ev("PUT", "ab", 3), ev("PUT", "abc", 4), ev("PUT", "b", 5), ev("DELETE", "ab", 8)]);
        assert_eq!(all.wait_json(1)[0]["Events"].as_array().unwrap().len(), 7);
        assert_eq!(event_revs(&single.wait_json(1)), [ev("PUT", "b", 5)]);
        for w in [&prefix, &range, &all, &single] {
            assert_eq!(watch_rev(&w.json()[0]), 8);
        }

        // Live: the range end is exclusive, a prefix does not match its neighbours.
        put_all(&s, &[("aa", "x"), ("c", "y"), ("bz", "z"), ("a", "w")]); // 9..12
        assert_eq!(event_revs(&prefix.wait_json(3)[1..]), [ev("PUT", "aa", 9), ev("PUT", "a", 12)]);
        assert_eq!(event_revs(&range.wait_json(2)[1..]), [ev("PUT", "bz", 11)]);
        assert_eq!(event_revs(&all.wait_json(5)[1..]), [ev("PUT", "aa", 9), ev("PUT", "c", 10), ev("PUT", "bz", 11), ev("PUT", "a", 12)]);
        thread::sleep(QUIET);
        assert_eq!((prefix.json().len(), range.json().len(), all.json().len(), single.json().len()), (3, 2, 5, 1));
    }

    fn prev_kv(kind) {
        let s = fresh(kind);
        put_all(&s, &[("k", "v1"), ("k", "v2")]); // 2, 3
        assert_eq!(s.ctl_ok(&["del", "k"]), "1\n"); // 4
        put_all(&s, &[("k", "v3")]); // 5
        let w = CtlProc::spawn(&s, &["-w", "json", "watch", "--rev", "2", "k", "--prev-kv"]);
        assert_eq!(
            watch_json(&w.wait_json(1)[0]),
            events_resp(5, json!([
                // A create has no previous value.
                put_ev(jkv("k", "v1", 2, 2, 1)),
                {"kv": jkv("k", "v2", 2, 3, 2), "prev_kv": jkv("k", "v1", 2, 2, 1)},
                {"type": 1, "kv": {"key": "k", "mod_revision": 4}, "prev_kv": jkv("k", "v2", 2, 3, 2)},
                put_ev(jkv("k", "v3", 5, 5, 1)),
            ]))
        );
        drop(w);

        // Text: the previous key-value is printed before the new one.
        let w = CtlProc::spawn(&s, &["watch", "--rev", "6", "k", "--prev-kv"]);
        put_all(&s, &[("k", "v4")]); // 6
        assert_eq!(s.ctl_ok(&["del", "k"]), "1\n"); // 7
        put_all(&s, &[("k", "v5")]); // 8
        let expected = "PUT\nk\nv3\nk\nv4\nDELETE\nk\nv4\nk\n\nPUT\nk\nv5\n";
        w.wait_lines(expected.matches('\n').count());
        w.assert_quiet(expected, QUIET);
    }

    fn txn_and_multi_delete_arrive_as_one_response(kind) {
        let s = fresh(kind);
        put_all(&s, &[("c", "x"), ("p/1", "1"), ("p/2", "2"), ("p/3", "3")]); // 2..5
        // Every key in [a, {), from now on.
        let w = live_json_watch(&s, "watch a {", 5);
        let out = s.etcdctl_stdin(&["txn"], b"\nput b 2\nput a 1\ndel c\n\n\n");
        assert_eq!(out.ok(), "SUCCESS\n\nOK\n\nOK\n\n1\n"); // 6
        assert_eq!(s.ctl_ok(&["del", "p/", "--prefix"]), "3\n"); // 7
        // A txn that changes nothing makes no revision and no event.
        let out = s.etcdctl_stdin(&["txn"], b"\nget a\n\n\n");
        assert_eq!(out.ok(), "SUCCESS\n\na\n1\n");
        put_all(&s, &[("z", "last")]); // 8
        let r = &w.wait_json(4)[1..];
        // In the order of the txn's operations, not of the keys.
        assert_eq!(
            watch_json(&r[0]),
            events_resp(6, json!([put_ev(jkv("b", "2", 6, 6, 1)), put_ev(jkv("a", "1", 6, 6, 1)), del_ev("c", 6)]))
        );
        assert_eq!(watch_json(&r[1]), events_resp(7, json!([del_ev("p/1", 7), del_ev("p/2", 7), del_ev("p/3", 7)])));
        assert_eq!(watch_json(&r[2]), events_resp(8, json!([put_ev(jkv("z", "last", 8, 8, 1))])));
        thread::sleep(QUIET);
        assert_eq!(w.json().len(), 4);
    }

    fn compacted_start_revision(kind) {
        let s = fresh(kind);
        for i in 1..=5 {
            put_all(&s, &[("k", &format!("v{i}"))]); // 2..6
        }
        assert_eq!(s.ctl_ok(&["compaction", "4"]), "compacted revision 4\n");

        // Below the compact revision: one canceled response, exit code 5.
        let out = CtlProc::spawn(&s, &["watch", "--rev", "3", "k"]).wait_exit(WAIT);
        assert_eq!((out.status, out.stdout.as_str(), out.stderr.as_str()), (5, "", COMPACTED));
        let out = CtlProc::spawn(&s, &["-w", "json", "watch", "--rev", "1", "k", "--prefix"]).wait_exit(WAIT);
        assert_eq!((out.status, out.stderr.as_str()), (5, COMPACTED));
        let r = json_lines(&out.stdout);
        assert_eq!(r.len(), 1, "{out:#?}");
        // This response has no header revision.
        assert_eq!(
            watch_json(&r[0]),
            json!({
                "Header": {"cluster_id": "<id:1>", "member_id": "<id:2>", "raft_term": "<raft_term>"},
                "Events": [], "CompactRevision": 4, "Canceled": true, "Created": false
            })
        );

        // At the compact revision itself: what compaction kept there is delivered.
        let w = CtlProc::spawn(&s, &["-w", "json", "watch", "--rev", "4", "k"]);
        assert_eq!(
            watch_json(&w.wait_json(1)[0]),
            events_resp(6, json!([
                put_ev(jkv("k", "v3", 2, 4, 3)),
                put_ev(jkv("k", "v4", 2, 5, 4)),
                put_ev(jkv("k", "v5", 2, 6, 5)),
            ]))
        );
        drop(w);

        // (Whether a tombstone at the compact revision is still delivered is
        // racy in etcd, whose backend compaction runs in the background.)
    }

    fn history_meets_live_writes(kind) {
        const N: usize = 300;
        let s = fresh(kind);
        let endpoint = s.endpoint();
        // A writer puts k=0..N one by one while watchers start from revision 2.
        let writer = thread::spawn(move || (0..N).map(|i| put(&endpoint, "k", &i.to_string())).collect::<Vec<i64>>());
        while s.revision() < 50 {
            thread::sleep(Duration::from_millis(10));
        }
        let w = CtlProc::spawn(&s, &["-w", "json", "watch", "--rev", "2", "k"]);
        let mut raw = WatchClient::connect(&s.endpoint());
        raw.create(WatchCreateRequest::key("k").rev(2));
        let revs = writer.join().unwrap();
        assert_eq!(revs, (2..N as i64 + 2).collect::<Vec<_>>());

        let resps = w.wait_events(N);
        let got: Vec<i64> = event_revs(&resps).into_iter().map(|(_, _, r)| r).collect();
        assert_eq!(got, revs, "every revision exactly once, in order");
        for (i, r) in resps.iter().enumerate() {
            let events = r["Events"].as_array().unwrap();
            let last = events.last().unwrap()["kv"]["mod_revision"].as_i64().unwrap();
            assert!(last <= watch_rev(r), "response {i}: {r}");
            for e in events {
                assert_eq!(b64str(&e["kv"]["value"]), (e["kv"]["mod_revision"].as_i64().unwrap() - 2).to_string());
            }
        }

        let created = raw.recv();
        assert!(created.created && !created.canceled, "{}", created.summary());
        let mut got = Vec::new();
        while got.len() < N {
            let r = raw.recv();
            assert_eq!((r.watch_id, r.created, r.canceled), (0, false, false), "{}", r.summary());
            got.extend(r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
        }
        assert_eq!(got, revs);
        raw.assert_quiet(QUIET);
    }

    fn many_events_under_load(kind) {
        const N: usize = 2000;
        let s = fresh(kind);
        put_all(&s, &[("other", "x")]); // 2
        let w = CtlProc::spawn(&s, &["-w", "json", "watch", "--rev", "3", "load/", "--prefix"]);
        let mut raw = WatchClient::connect(&s.endpoint());
        raw.create(WatchCreateRequest::range("load/", "load0").rev(3).prev_kv());
        let mut quiet = WatchClient::connect(&s.endpoint());
        quiet.create(WatchCreateRequest::key("other"));
        assert!(quiet.recv().created);

        // Keys repeat, so prev_kv has something to find.
        let pairs: Vec<(String, String)> = (0..N).map(|i| (format!("load/{:03}", i % 500), format!("v{i}"))).collect();
        let mut revs = put_many(&s.endpoint(), &pairs, 8);
        revs.sort();
        assert_eq!(revs, (3..N as i64 + 3).collect::<Vec<_>>());

        let resps = w.wait_events(N);
        let got: Vec<i64> = event_revs(&resps).into_iter().map(|(_, _, r)| r).collect();
        assert_eq!(got, revs, "etcdctl: every revision exactly once, in order");
        thread::sleep(QUIET);
        assert_eq!(event_revs(&w.json()).len(), N);

        assert!(raw.recv().created);
        let mut got = Vec::new();
        let mut last_value: std::collections::HashMap<Vec<u8>, KeyValue> = Default::default();
        while got.len() < N {
            let r = raw.recv();
            assert!(!r.canceled && !r.created, "{}", r.summary());
            for e in &r.events {
                let kv = e.kv.clone().unwrap();
                assert!(kv.mod_revision <= r.rev());
                // prev_kv is exactly the previous event's key-value for the key.
                assert_eq!(e.prev_kv.as_ref(), last_value.get(&kv.key), "prev_kv of {kv:?}");
                got.push(kv.mod_revision);
                last_value.insert(kv.key.clone(), kv);
            }
        }
        assert_eq!(got, revs, "raw: every revision exactly once, in order");
        raw.assert_quiet(QUIET);
        quiet.assert_quiet(Duration::from_millis(1));
    }

    fn slow_reader_catches_up(kind) {
        const N: usize = 2000;
        let s = fresh(kind);
        // This watcher does not read while the writes happen: ~16 MB of events
        // (4 KB values, with prev_kv) overflow every buffer on the way, so the
        // server has to hold the watcher back and catch it up later.
        let mut slow = WatchClient::connect(&s.endpoint());
        slow.create(WatchCreateRequest::range("s/", "s0").prev_kv());
        let pairs: Vec<(String, String)> =
            (0..N).map(|i| (format!("s/{}", i % 100), format!("{i:04}{}", "x".repeat(4096)))).collect();
        let mut revs = put_many(&s.endpoint(), &pairs, 4);
        revs.sort();
        assert_eq!(revs, (2..N as i64 + 2).collect::<Vec<_>>());

        assert_eq!(slow.next_summary(), "id=0 rev=1 created");
        let mut got = Vec::new();
        let mut last: std::collections::HashMap<Vec<u8>, KeyValue> = Default::default();
        let mut responses = 0;
        while got.len() < N {
            let r = slow.recv();
            responses += 1;
            assert!(!r.canceled && !r.created && r.watch_id == 0, "{}", r.summary());
            for e in &r.events {
                let kv = e.kv.clone().unwrap();
                assert!(kv.mod_revision <= r.rev());
                assert_eq!(e.prev_kv.as_ref(), last.get(&kv.key), "prev_kv at {}", kv.mod_revision);
                got.push(kv.mod_revision);
                last.insert(kv.key.clone(), kv);
            }
        }
        assert_eq!(got, revs, "every revision exactly once, in order");
        // Some responses carry several revisions: the watcher was caught up from history.
        assert!(responses < N, "{responses} responses: the slow path was not exercised");
        slow.assert_quiet(QUIET);
        assert_eq!(put(&s.endpoint(), "s/live", "1"), N as i64 + 2);
        assert_eq!(slow.next_summary(), format!("id=0 rev={0} PUT s/live=1@{0}", N + 2));
    }

    fn long_history_comes_in_batches(kind) {
        const N: usize = 1200;
        let s = fresh(kind);
        let pairs: Vec<(String, String)> = (0..N).map(|i| (format!("h/{i:04}"), i.to_string())).collect();
        put_many(&s.endpoint(), &pairs, 4); // 2..=1201
        // At most 1000 revisions per response; every response from history
        // carries the store's revision, even when more history follows.
        let w = CtlProc::spawn(&s, &["-w", "json", "watch", "--rev", "2", "h/", "--prefix"]);
        let r = w.wait_events(N);
        let shape: Vec<(i64, usize)> =
            r.iter().map(|r| (watch_rev(r), r["Events"].as_array().unwrap().len())).collect();
        assert_eq!(shape, [(1201, 1000), (1201, 200)]);
        let got: Vec<i64> = event_revs(&r).into_iter().map(|(_, _, r)| r).collect();
        assert_eq!(got, (2..=1201).collect::<Vec<i64>>());
    }

    fn live_events_one_response_per_revision(kind) {
        const N: usize = 200;
        let s = fresh(kind);
        let w = live_json_watch(&s, "watch c/ --prefix", 1);
        let mut raw = WatchClient::connect(&s.endpoint());
        raw.create(WatchCreateRequest::range("c/", "c0"));
        assert_eq!(raw.next_summary(), "id=0 rev=1 created");
        // Concurrent writers: the server applies several revisions at once,
        // yet each revision is a response of its own, at that revision.
        let pairs: Vec<(String, String)> = (0..N).map(|i| (format!("c/{}", i % 10), i.to_string())).collect();
        put_many(&s.endpoint(), &pairs, 8);
        for rev in 2..N as i64 + 2 {
            let r = raw.recv();
            assert_eq!((r.rev(), r.events.len()), (rev, 1), "{}", r.summary());
            assert_eq!(r.events[0].kv.as_ref().unwrap().mod_revision, rev);
        }
        let r = &w.wait_events(N)[1..];
        let shape: Vec<(i64, Vec<i64>)> = r
            .iter()
            .map(|r| (watch_rev(r), r["Events"].as_array().unwrap().iter().map(|e| e["kv"]["mod_revision"].as_i64().unwrap()).collect()))
            .collect();
        assert_eq!(shape, (2..N as i64 + 2).map(|rev| (rev, vec![rev])).collect::<Vec<_>>());
    }

    fn interactive(kind) {
        let s = fresh(kind);
        let mut w = CtlProc::spawn(&s, &["watch", "-i"]);
        w.send_line("watch a");
        // The progress answer comes after the watch exists (same stream, in order).
        w.send_line("progress");
        w.wait_ends_with("progress notify: 1\n");
        put_all(&s, &[("a", "1"), ("b", "1")]); // 2, 3
        w.wait_ends_with("PUT\na\n1\n");

        // A second watch on the same stream, from history.
        w.send_line("watch --rev 2 b --prefix");
        w.wait_ends_with("PUT\nb\n1\n");
        put_all(&s, &[("bb", "2")]); // 4
        w.wait_ends_with("PUT\nbb\n2\n");
        // One progress request, one notification per watcher of the stream.
        w.send_line("progress");
        let expected = "progress notify: 1\nPUT\na\n1\nPUT\nb\n1\nPUT\nbb\n2\nprogress notify: 4\nprogress notify: 4\n";
        w.wait_lines(expected.matches('\n').count());
        w.assert_quiet(expected, QUIET);

        w.send_line("bogus x");
        w.close_stdin();
        let out = w.wait_exit(WAIT);
        assert_eq!(
            (out.status, out.stdout.as_str(), out.stderr.as_str()),
            (3, expected, "Invalid command bogus x (only support watch)\nError: Error reading watch request line: EOF\n")
        );
    }

    fn watch_ids_cancel_filters(kind) {
        let s = fresh(kind);
        let mut c = WatchClient::connect(&s.endpoint());
        c.create(WatchCreateRequest::key("a"));
        assert_eq!(c.next_summary(), "id=0 rev=1 created");
        c.create(WatchCreateRequest::key("b").id(7));
        assert_eq!(c.next_summary(), "id=7 rev=1 created");
        c.create(WatchCreateRequest::key("c"));
        assert_eq!(c.next_summary(), "id=1 rev=1 created");
        c.create(WatchCreateRequest::key("d").id(7));
        assert_eq!(c.next_summary(), "id=-1 rev=1 created canceled reason=\"mvcc: duplicate watch ID provided on the WatchStream\"");
        c.create(WatchCreateRequest::range("b", "a"));
        assert_eq!(c.next_summary(), "id=-1 rev=1 created canceled reason=\"mvcc: watcher range is empty\"");
        c.create(WatchCreateRequest::range("b", "b"));
        assert_eq!(c.next_summary(), "id=-1 rev=1 created canceled reason=\"mvcc: watcher range is empty\"");
        c.create(WatchCreateRequest::key("f").filter(filter::NOPUT));
        assert_eq!(c.next_summary(), "id=2 rev=1 created");
        c.create(WatchCreateRequest::key("f").filter(filter::NODELETE).prev_kv());
        assert_eq!(c.next_summary(), "id=3 rev=1 created");
        // A range end of "\0" means every key from `key` on.
        c.create(WatchCreateRequest::range("e", "\0"));
        assert_eq!(c.next_summary(), "id=4 rev=1 created");

        assert_eq!(s.ctl_ok(&["put", "a", "1"]), "OK\n"); // 2
        assert_eq!(c.next_summary(), "id=0 rev=2 PUT a=1@2");
        assert_eq!(s.ctl_ok(&["put", "f", "x"]), "OK\n"); // 3
        let mut two = [c.next_summary(), c.next_summary()];
        two.sort();
        assert_eq!(two, ["id=3 rev=3 PUT f=x@3", "id=4 rev=3 PUT f=x@3"]);
        assert_eq!(s.ctl_ok(&["put", "f", "y"]), "OK\n"); // 4
        let mut two = [c.next_summary(), c.next_summary()];
        two.sort();
        assert_eq!(two, ["id=3 rev=4 PUT f=y@4(prev x@3)", "id=4 rev=4 PUT f=y@4"]);
        assert_eq!(s.ctl_ok(&["del", "f"]), "1\n"); // 5
        let mut two = [c.next_summary(), c.next_summary()];
        two.sort();
        assert_eq!(two, ["id=2 rev=5 DEL f@5", "id=4 rev=5 DEL f@5"]);

        // Cancel: answered with the current revision; an unknown id is ignored.
        c.cancel(0);
        assert_eq!(c.next_summary(), "id=0 rev=5 canceled");
        c.cancel(99);
        c.cancel(0);
        c.assert_quiet(QUIET);
        assert_eq!(s.ctl_ok(&["put", "a", "2"]), "OK\n"); // 6
        c.assert_quiet(QUIET);
        // An id freed by cancel can be chosen again (0 cannot be chosen: it asks for a fresh id).
        c.cancel(7);
        assert_eq!(c.next_summary(), "id=7 rev=6 canceled");
        c.create(WatchCreateRequest::key("a").id(7).rev(6));
        assert_eq!(c.next_summary(), "id=7 rev=6 created");
        assert_eq!(c.next_summary(), "id=7 rev=6 PUT a=2@6");

        // Progress: not tied to a watcher (id -1), at the current revision.
        c.progress();
        assert_eq!(c.next_summary(), "id=-1 rev=6");
        c.assert_quiet(QUIET);

        c.cancel(4);
        assert_eq!(c.next_summary(), "id=4 rev=6 canceled");
        // A watch starting in the future sees nothing before its revision.
        c.create(WatchCreateRequest::key("g").rev(9));
        assert_eq!(c.next_summary(), "id=5 rev=6 created");
        put_all(&s, &[("g", "1"), ("g", "2"), ("g", "3")]); // 7, 8, 9
        assert_eq!(c.next_summary(), "id=5 rev=9 PUT g=3@9");

        // From a compacted revision: created, then canceled with the compact revision and no header revision.
        assert_eq!(s.ctl_ok(&["compaction", "8"]), "compacted revision 8\n");
        c.create(WatchCreateRequest::key("g").rev(7));
        assert_eq!(c.next_summary(), "id=6 rev=9 created");
        assert_eq!(c.next_summary(), "id=6 rev=0 canceled compact=8");
        c.assert_quiet(QUIET);

        // Closing the request side does not end the stream: the watchers stay.
        c.close_send();
        c.assert_quiet(QUIET);
        put_all(&s, &[("g", "4")]); // 10
        assert_eq!(c.next_summary(), "id=5 rev=10 PUT g=4@10");
    }

    fn watch_resumes_after_restart(kind) {
        let mut s = fresh(kind);
        put_all(&s, &[("k", "1")]); // 2
        let w = CtlProc::spawn(&s, &["watch", "--rev", "2", "k"]);
        w.wait_lines(3);
        s.kill9();
        s.restart();
        put_all(&s, &[("k", "2"), ("k", "3")]); // 3, 4
        // The client re-creates its watch from the next revision it needs:
        // nothing lost, nothing repeated.
        w.wait_lines(9);
        w.assert_quiet("PUT\nk\n1\nPUT\nk\n2\nPUT\nk\n3\n", QUIET);
    }

    /// Open watch and keep-alive streams do not hold a stopping member up: they end with the member
    /// (`server stopped`), the member exits cleanly, and its clients resume on the restarted member.
    fn open_streams_end_when_the_member_stops(kind) {
        let mut s = fresh(kind);
        put_all(&s, &[("k", "1")]); // 2
        let w = CtlProc::spawn(&s, &["watch", "--rev", "2", "k"]);
        w.wait_lines(3);
        let id = modkv_tests::watch::grant(&s, 60, 60);
        let _keep = CtlProc::spawn(&s, &["lease", "keep-alive", &id]);
        std::thread::sleep(Duration::from_millis(300));
        let status = s.stop().expect("the member exits");
        // etcd re-raises SIGTERM once it has stopped; modkv exits 0.
        use std::os::unix::process::ExitStatusExt;
        let clean = if kind == Kind::Etcd { status.signal() == Some(libc::SIGTERM) } else { status.success() };
        assert!(clean, "{status:?}");
        assert!(!s.log().contains("still open after"), "the stop waited for open streams:\n{}", s.log());
        s.restart();
        put_all(&s, &[("k", "2")]); // 3
        w.wait_lines(6);
        w.assert_quiet("PUT\nk\n1\nPUT\nk\n2\n", QUIET);
    }
}

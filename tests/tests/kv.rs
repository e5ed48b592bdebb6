//! KV and cluster commands through etcdctl 3.4, with exact outputs.
//!
//! Every test starts its own fresh single-member server, so revisions are
//! deterministic: the first write of a fresh store gets revision 2.

use modkv_tests::*;

fn fresh(kind: Kind) -> Server {
    Server::start(kind, ServerOpts::new())
}

/// Puts `pairs` in order, asserting each put's output.
fn put_all(s: &Server, pairs: &[(&str, &str)]) {
    for (k, v) in pairs {
        assert_eq!(s.ctl_ok(&["put", k, v]), "OK\n", "put {k}");
    }
}

both_kinds! {
    fn put_get(kind) {
        let s = fresh(kind);
        assert_eq!(s.revision(), 1);
        assert_eq!(s.ctl_ok(&["put", "foo", "bar"]), "OK\n");
        assert_eq!(s.ctl_ok(&["get", "foo"]), "foo\nbar\n");
        assert_eq!(s.ctl_ok(&["get", "missing"]), "");

        let j = s.ctl_json(&["get", "foo"]);
        assert_eq!(keys_of(&j), ["count", "header", "kvs"]);
        assert_eq!(keys_of(&j["header"]), ["cluster_id", "member_id", "raft_term", "revision"]);
        assert_eq!(keys_of(&j["kvs"][0]), ["create_revision", "key", "mod_revision", "value", "version"]);
        assert_eq!(header_rev(&j), 2);
        assert_eq!(j["count"], 1);
        assert_eq!(kvs(&j), [kv("foo", "bar", 2, 2, 1)]);

        // A put's JSON response is just the header with the new revision.
        let p = s.ctl_json(&["put", "foo", "bar2"]);
        assert_eq!(keys_of(&p), ["header"]);
        assert_eq!(header_rev(&p), 3);
        assert_eq!(kvs(&s.ctl_json(&["get", "foo"])), [kv("foo", "bar2", 2, 3, 2)]);

        // A miss: no kvs, no count (zero values are omitted).
        let miss = s.ctl_json(&["get", "missing"]);
        assert_eq!(keys_of(&miss), ["header"]);
        assert_eq!(header_rev(&miss), 3);

        assert_eq!(s.ctl_ok(&["get", "foo", "--print-value-only"]), "bar2\n");
        assert_eq!(s.ctl_ok(&["get", "foo", "--keys-only"]), "foo\n\n");

        // Empty value, value with a newline, value from stdin.
        assert_eq!(s.ctl_ok(&["put", "empty", ""]), "OK\n");
        assert_eq!(s.ctl_ok(&["get", "empty"]), "empty\n\n");
        let e = s.ctl_json(&["get", "empty"]);
        assert_eq!(keys_of(&e["kvs"][0]), ["create_revision", "key", "mod_revision", "version"]);
        assert_eq!(s.ctl_ok(&["put", "nl", "two\nlines"]), "OK\n");
        assert_eq!(s.ctl_ok(&["get", "nl"]), "nl\ntwo\nlines\n");
        assert_eq!(s.etcdctl_stdin(&["put", "stdin-key"], b"from stdin").ok(), "OK\n");
        assert_eq!(s.ctl_ok(&["get", "stdin-key", "--print-value-only"]), "from stdin\n");
        assert_eq!(s.revision(), 6);
    }

    fn get_ranges(kind) {
        let s = fresh(kind);
        put_all(&s, &[("a", "1"), ("ab", "2"), ("abc", "3"), ("b", "4"), ("c", "5"), ("d", "6")]);
        assert_eq!(s.ctl_ok(&["get", "a", "--prefix"]), "a\n1\nab\n2\nabc\n3\n");
        assert_eq!(s.ctl_ok(&["get", "ab", "--prefix", "--keys-only"]), "ab\n\nabc\n\n");
        assert_eq!(s.ctl_ok(&["get", "a", "--prefix", "--print-value-only"]), "1\n2\n3\n");
        // [a, c)
        assert_eq!(s.ctl_ok(&["get", "a", "c"]), "a\n1\nab\n2\nabc\n3\nb\n4\n");
        assert_eq!(s.ctl_ok(&["get", "ab", "b"]), "ab\n2\nabc\n3\n");
        assert_eq!(s.ctl_ok(&["get", "b", "--from-key"]), "b\n4\nc\n5\nd\n6\n");
        assert_eq!(s.ctl_ok(&["get", "abd", "--from-key", "--keys-only"]), "b\n\nc\n\nd\n\n");
        assert_eq!(s.ctl_ok(&["get", "", "--from-key", "--keys-only"]), "a\n\nab\n\nabc\n\nb\n\nc\n\nd\n\n");
        assert_eq!(s.ctl_ok(&["get", "", "--prefix", "--print-value-only"]), "1\n2\n3\n4\n5\n6\n");
        assert_eq!(s.ctl_ok(&["get", "e", "--from-key"]), "");
        assert_eq!(s.ctl_ok(&["get", "x", "--prefix"]), "");

        let j = s.ctl_json(&["get", "a", "c"]);
        assert_eq!(j["count"], 4);
        assert_eq!(
            kvs(&j),
            [kv("a", "1", 2, 2, 1), kv("ab", "2", 3, 3, 1), kv("abc", "3", 4, 4, 1), kv("b", "4", 5, 5, 1)]
        );
        // --keys-only in JSON drops the value field.
        let k = s.ctl_json(&["get", "c", "--from-key", "--keys-only"]);
        assert_eq!(keys_of(&k["kvs"][0]), ["create_revision", "key", "mod_revision", "version"]);
        assert_eq!(kvs(&k), [kv("c", "", 6, 6, 1), kv("d", "", 7, 7, 1)]);
    }

    fn get_limit(kind) {
        let s = fresh(kind);
        put_all(&s, &[("k1", "v1"), ("k2", "v2"), ("k3", "v3"), ("k4", "v4"), ("k5", "v5")]);
        let j = s.ctl_json(&["get", "k", "--prefix", "--limit", "2"]);
        assert_eq!(keys_of(&j), ["count", "header", "kvs", "more"]);
        assert_eq!(j["more"], true);
        assert_eq!(j["count"], 5);
        assert_eq!(kvs(&j), [kv("k1", "v1", 2, 2, 1), kv("k2", "v2", 3, 3, 1)]);

        // Exactly all: `more` is false and therefore omitted.
        let j = s.ctl_json(&["get", "k", "--prefix", "--limit", "5"]);
        assert_eq!(keys_of(&j), ["count", "header", "kvs"]);
        assert_eq!(j["count"], 5);
        assert_eq!(j["kvs"].as_array().unwrap().len(), 5);
        let j = s.ctl_json(&["get", "k", "--prefix", "--limit", "100"]);
        assert_eq!(keys_of(&j), ["count", "header", "kvs"]);

        let j = s.ctl_json(&["get", "k3", "--from-key", "--limit", "1"]);
        assert_eq!((j["more"].clone(), j["count"].clone()), (json!(true), json!(3)));
        assert_eq!(kvs(&j), [kv("k3", "v3", 4, 4, 1)]);

        assert_eq!(s.ctl_ok(&["get", "k", "--prefix", "--limit", "2"]), "k1\nv1\nk2\nv2\n");
        assert_eq!(s.ctl_ok(&["get", "k", "--prefix", "--limit", "0"]).lines().count(), 10);
    }

    fn get_past_revisions(kind) {
        let s = fresh(kind);
        assert_eq!(header_rev(&s.ctl_json(&["put", "k", "v1"])), 2);
        assert_eq!(header_rev(&s.ctl_json(&["put", "k", "v2"])), 3);
        assert_eq!(header_rev(&s.ctl_json(&["del", "k"])), 4);
        assert_eq!(header_rev(&s.ctl_json(&["put", "k", "v3"])), 5);
        assert_eq!(header_rev(&s.ctl_json(&["put", "other", "o"])), 6);

        assert_eq!(s.ctl_ok(&["get", "k", "--rev", "1"]), "");
        assert_eq!(s.ctl_ok(&["get", "k", "--rev", "2"]), "k\nv1\n");
        assert_eq!(s.ctl_ok(&["get", "k", "--rev", "3"]), "k\nv2\n");
        assert_eq!(s.ctl_ok(&["get", "k", "--rev", "4"]), "");
        assert_eq!(s.ctl_ok(&["get", "k", "--rev", "5"]), "k\nv3\n");
        assert_eq!(s.ctl_ok(&["get", "k", "--rev", "6"]), "k\nv3\n");
        assert_eq!(s.ctl_ok(&["get", "", "--from-key", "--rev", "5"]), "k\nv3\n");
        assert_eq!(s.ctl_ok(&["get", "", "--from-key", "--rev", "0"]), "k\nv3\nother\no\n");

        // The header always carries the current revision, not the requested one.
        let j = s.ctl_json(&["get", "k", "--rev", "3"]);
        assert_eq!(header_rev(&j), 6);
        assert_eq!(kvs(&j), [kv("k", "v2", 2, 3, 2)]);
        let j = s.ctl_json(&["get", "k", "--rev", "4"]);
        assert_eq!(keys_of(&j), ["header"]);
        // Recreated after delete: new create_revision, version restarts at 1.
        assert_eq!(kvs(&s.ctl_json(&["get", "k", "--rev", "5"])), [kv("k", "v3", 5, 5, 1)]);
    }

    fn get_sort_order(kind) {
        let s = fresh(kind);
        // b@2, a@3, c@4, b@5 (b: version 2)
        put_all(&s, &[("b", "1"), ("a", "3"), ("c", "2"), ("b", "4")]);
        let get = |extra: &[&str]| {
            let mut args = vec!["get", "", "--from-key"];
            args.extend_from_slice(extra);
            s.ctl_ok(&args)
        };
        assert_eq!(get(&[]), "a\n3\nb\n4\nc\n2\n");
        assert_eq!(get(&["--sort-by=MODIFY", "--order=DESCEND"]), "b\n4\nc\n2\na\n3\n");
        assert_eq!(get(&["--sort-by=MODIFY"]), "a\n3\nc\n2\nb\n4\n");
        assert_eq!(get(&["--sort-by=MODIFY", "--order=ASCEND"]), "a\n3\nc\n2\nb\n4\n");
        assert_eq!(get(&["--sort-by=CREATE", "--order=DESCEND"]), "c\n2\na\n3\nb\n4\n");
        assert_eq!(get(&["--sort-by=CREATE"]), "b\n4\na\n3\nc\n2\n");
        assert_eq!(get(&["--sort-by=VALUE"]), "c\n2\na\n3\nb\n4\n");
        assert_eq!(get(&["--sort-by=VALUE", "--order=DESCEND"]), "b\n4\na\n3\nc\n2\n");
        assert_eq!(get(&["--sort-by=KEY", "--order=DESCEND"]), "c\n2\nb\n4\na\n3\n");
        // --order alone sorts by key.
        assert_eq!(get(&["--order=DESCEND"]), "c\n2\nb\n4\na\n3\n");
        assert_eq!(get(&["--order=DESCEND", "--keys-only"]), "c\n\nb\n\na\n\n");
        // Sorting happens before the limit is applied.
        assert_eq!(get(&["--sort-by=VERSION", "--order=DESCEND", "--limit", "1"]), "b\n4\n");
        assert_eq!(get(&["--sort-by=MODIFY", "--order=DESCEND", "--limit", "2"]), "b\n4\nc\n2\n");
        let j = s.ctl_json(&["get", "", "--from-key", "--sort-by=VALUE", "--order=DESCEND", "--limit", "2"]);
        assert_eq!((j["count"].clone(), j["more"].clone()), (json!(3), json!(true)));
        assert_eq!(kvs(&j), [kv("b", "4", 2, 5, 2), kv("a", "3", 3, 3, 1)]);
    }

    fn get_serializable(kind) {
        let s = fresh(kind);
        put_all(&s, &[("x", "1"), ("y", "2")]);
        assert_eq!(s.ctl_ok(&["get", "x", "--consistency=s"]), "x\n1\n");
        assert_eq!(s.ctl_ok(&["get", "", "--from-key", "--consistency=s"]), "x\n1\ny\n2\n");
        assert_eq!(s.ctl_ok(&["get", "x", "--consistency=l"]), "x\n1\n");
        let j = s.ctl_json(&["get", "y", "--consistency=s"]);
        assert_eq!(header_rev(&j), 3);
        assert_eq!(kvs(&j), [kv("y", "2", 3, 3, 1)]);
    }

    fn put_prev_kv(kind) {
        let s = fresh(kind);
        assert_eq!(s.ctl_ok(&["put", "k", "v1", "--prev-kv"]), "OK\n");
        assert_eq!(s.ctl_ok(&["put", "k", "v2", "--prev-kv"]), "OK\nk\nv1\n");
        let j = s.ctl_json(&["put", "k", "v3", "--prev-kv"]);
        assert_eq!(keys_of(&j), ["header", "prev_kv"]);
        assert_eq!(header_rev(&j), 4);
        assert_eq!(kv_list(&json!([j["prev_kv"].clone()])), [kv("k", "v2", 2, 3, 2)]);
        // No previous key: no prev_kv field.
        let j = s.ctl_json(&["put", "new", "n", "--prev-kv"]);
        assert_eq!(keys_of(&j), ["header"]);
        assert_eq!(kvs(&s.ctl_json(&["get", "k"])), [kv("k", "v3", 2, 4, 3)]);
    }

    fn put_ignore_value(kind) {
        let s = fresh(kind);
        assert_eq!(s.ctl_ok(&["put", "k", "v1"]), "OK\n");
        assert_eq!(s.ctl_ok(&["put", "k", "--ignore-value"]), "OK\n");
        // Value kept; version and mod_revision advance.
        assert_eq!(kvs(&s.ctl_json(&["get", "k"])), [kv("k", "v1", 2, 3, 2)]);
        assert_eq!(s.ctl_ok(&["put", "k", "--ignore-value", "--prev-kv"]), "OK\nk\nv1\n");
        let j = s.ctl_json(&["get", "k"]);
        assert_eq!(header_rev(&j), 4);
        assert_eq!(kvs(&j), [kv("k", "v1", 2, 4, 3)]);
    }

    fn delete(kind) {
        let s = fresh(kind);
        put_all(&s, &[("a", "va"), ("ab", "vab"), ("abc", "vabc"), ("b", "vb"), ("c", "vc"), ("d", "vd")]);
        assert_eq!(s.revision(), 7);
        assert_eq!(s.ctl_ok(&["del", "a"]), "1\n");
        assert_eq!(s.revision(), 8);
        // Deleting nothing prints 0 and does not create a revision.
        assert_eq!(s.ctl_ok(&["del", "a"]), "0\n");
        assert_eq!(s.ctl_ok(&["del", "zzz", "--prefix"]), "0\n");
        let j = s.ctl_json(&["del", "nothing"]);
        assert_eq!(keys_of(&j), ["header"]);
        assert_eq!(header_rev(&j), 8);

        assert_eq!(s.ctl_ok(&["del", "ab", "--prefix", "--prev-kv"]), "2\nab\nvab\nabc\nvabc\n");
        assert_eq!(s.revision(), 9);
        // [b, c)
        assert_eq!(s.ctl_ok(&["del", "b", "c"]), "1\n");
        assert_eq!(s.revision(), 10);
        let j = s.ctl_json(&["del", "c", "--from-key", "--prev-kv"]);
        assert_eq!(keys_of(&j), ["deleted", "header", "prev_kvs"]);
        assert_eq!(j["deleted"], 2);
        assert_eq!(header_rev(&j), 11);
        assert_eq!(kv_list(&j["prev_kvs"]), [kv("c", "vc", 6, 6, 1), kv("d", "vd", 7, 7, 1)]);
        assert_eq!(s.ctl_ok(&["get", "", "--from-key"]), "");

        // Recreate: fresh create_revision and version.
        put_all(&s, &[("a", "again"), ("x", "1"), ("y", "2")]);
        assert_eq!(kvs(&s.ctl_json(&["get", "a"])), [kv("a", "again", 12, 12, 1)]);
        let j = s.ctl_json(&["del", "", "--from-key"]);
        assert_eq!(keys_of(&j), ["deleted", "header"]);
        assert_eq!((j["deleted"].clone(), header_rev(&j)), (json!(3), 15));
        // Past revisions still see deleted keys.
        assert_eq!(s.ctl_ok(&["get", "a", "--rev", "7"]), "a\nva\n");
    }

    fn revisions(kind) {
        let s = fresh(kind);
        assert_eq!(header_rev(&s.ctl_json(&["put", "a", "1"])), 2);
        assert_eq!(header_rev(&s.ctl_json(&["put", "a", "2"])), 3);
        assert_eq!(header_rev(&s.ctl_json(&["put", "b", "1"])), 4);
        assert_eq!(header_rev(&s.ctl_json(&["del", "missing"])), 4);
        assert_eq!(header_rev(&s.ctl_json(&["get", "a"])), 4);
        // One txn with several writes is one revision; all share mod_revision.
        let t = s.etcdctl_stdin(&["-w", "json", "txn"], b"\nput a 3\nput c 1\ndel b\n\n\n").json();
        assert_eq!(header_rev(&t), 5);
        let j = s.ctl_json(&["get", "", "--from-key"]);
        assert_eq!(kvs(&j), [kv("a", "3", 2, 5, 3), kv("c", "1", 5, 5, 1)]);
        // A read-only txn does not advance the revision.
        let t = s.etcdctl_stdin(&["-w", "json", "txn"], b"\nget a\n\n\n").json();
        assert_eq!(header_rev(&t), 5);
        // Deleting a range is one revision.
        assert_eq!(header_rev(&s.ctl_json(&["del", "", "--from-key"])), 6);
        assert_eq!(s.revision(), 6);
        // Compaction does not advance the revision.
        assert_eq!(s.ctl_ok(&["compaction", "6"]), "compacted revision 6\n");
        assert_eq!(s.revision(), 6);
        assert_eq!(header_rev(&s.ctl_json(&["put", "d", "1"])), 7);
    }

    fn compaction(kind) {
        let s = fresh(kind);
        for i in 1..=5 {
            assert_eq!(s.ctl_ok(&["put", "k", &format!("v{i}")]), "OK\n");
        }
        // k = v1@2 .. v5@6
        assert_eq!(s.ctl_ok(&["compaction", "4"]), "compacted revision 4\n");
        // -w json does not change compaction's output.
        assert_eq!(s.ctl_ok(&["-w", "json", "compaction", "5"]), "compacted revision 5\n");
        s.etcdctl(&["get", "k", "--rev", "4"])
            .assert_server_error("OutOfRange", "etcdserver: mvcc: required revision has been compacted");
        assert_eq!(s.ctl_ok(&["get", "k", "--rev", "5"]), "k\nv4\n");
        assert_eq!(s.ctl_ok(&["get", "k", "--rev", "6"]), "k\nv5\n");
        assert_eq!(kvs(&s.ctl_json(&["get", "k"])), [kv("k", "v5", 2, 6, 5)]);
        s.etcdctl(&["get", "k", "--rev", "7"])
            .assert_server_error("OutOfRange", "etcdserver: mvcc: required revision is a future revision");
        s.etcdctl(&["compaction", "5"])
            .assert_server_error("OutOfRange", "etcdserver: mvcc: required revision has been compacted");
        s.etcdctl(&["compaction", "3"])
            .assert_server_error("OutOfRange", "etcdserver: mvcc: required revision has been compacted");
        s.etcdctl(&["compaction", "7"])
            .assert_server_error("OutOfRange", "etcdserver: mvcc: required revision is a future revision");
        assert_eq!(s.ctl_ok(&["compaction", "--physical", "6"]), "compacted revision 6\n");
        assert_eq!(s.revision(), 6);
        assert_eq!(s.ctl_ok(&["get", "k"]), "k\nv5\n");
        assert_eq!(s.ctl_ok(&["put", "k", "v6"]), "OK\n");
        assert_eq!(kvs(&s.ctl_json(&["get", "k"])), [kv("k", "v6", 2, 7, 6)]);
    }

    fn member_list(kind) {
        let s = Server::start(kind, ServerOpts::new().name("alpha"));
        let j = s.ctl_json(&["member", "list"]);
        assert_eq!(keys_of(&j), ["header", "members"]);
        // MemberList's header carries no revision.
        assert_eq!(keys_of(&j["header"]), ["cluster_id", "member_id", "raft_term"]);
        let members = j["members"].as_array().unwrap();
        assert_eq!(members.len(), 1);
        let m = &members[0];
        assert_eq!(keys_of(m), ["ID", "clientURLs", "name", "peerURLs"]);
        assert_eq!(m["ID"], j["header"]["member_id"]);
        assert_eq!(m["name"], "alpha");
        assert_eq!(m["peerURLs"], json!([s.peer_url()]));
        assert_eq!(m["clientURLs"], json!([s.endpoint()]));
        assert!(j["header"]["cluster_id"].as_u64().unwrap() != 0);
        assert!(j["header"]["raft_term"].as_u64().unwrap() >= 1);

        let id = m["ID"].as_u64().unwrap();
        assert_eq!(
            s.ctl_ok(&["member", "list"]),
            format!("{id:x}, started, alpha, {}, {}, false\n", s.peer_url(), s.endpoint())
        );
        // The ids agree with those in a KV response header.
        let g = s.ctl_json(&["get", "x"]);
        assert_eq!(g["header"]["member_id"], j["header"]["member_id"]);
        assert_eq!(g["header"]["cluster_id"], j["header"]["cluster_id"]);
    }

    fn endpoint_status(kind) {
        let s = fresh(kind);
        put_all(&s, &[("a", "1"), ("b", "2")]);
        let j = s.ctl_json(&["endpoint", "status"]);
        let list = j.as_array().expect("endpoint status -w json is an array");
        assert_eq!(list.len(), 1);
        assert_eq!(keys_of(&list[0]), ["Endpoint", "Status"]);
        assert_eq!(list[0]["Endpoint"], s.endpoint());
        let st = &list[0]["Status"];
        assert_eq!(
            keys_of(st),
            ["dbSize", "dbSizeInUse", "header", "leader", "raftAppliedIndex", "raftIndex", "raftTerm", "version"]
        );
        assert_eq!(keys_of(&st["header"]), ["cluster_id", "member_id", "raft_term", "revision"]);
        assert_eq!(header_rev(st), 3);
        assert_eq!(st["leader"], st["header"]["member_id"]);
        assert_eq!(st["raftTerm"], st["header"]["raft_term"]);
        let version = st["version"].as_str().unwrap();
        assert!(version.starts_with("3.4."), "version {version}");
        let db = st["dbSize"].as_i64().unwrap();
        let in_use = st["dbSizeInUse"].as_i64().unwrap();
        assert!(db > 0 && in_use > 0 && in_use <= db, "dbSize {db} dbSizeInUse {in_use}");
        let idx = st["raftIndex"].as_u64().unwrap();
        let applied = st["raftAppliedIndex"].as_u64().unwrap();
        assert!(applied >= 3 && applied <= idx, "raftIndex {idx} raftAppliedIndex {applied}");

        let ml = s.ctl_json(&["member", "list"]);
        assert_eq!(st["leader"], ml["members"][0]["ID"]);

        // Simple format: endpoint, id (hex), version, db size, is leader,
        // is learner, raft term, raft index, raft applied index, errors.
        let line = s.ctl_ok(&["endpoint", "status"]);
        let fields: Vec<&str> = line.trim_end_matches('\n').split(", ").collect();
        assert_eq!(fields.len(), 10, "{line:?}");
        let id = st["header"]["member_id"].as_u64().unwrap();
        let term = st["raftTerm"].as_u64().unwrap();
        assert_eq!(
            (fields[0], fields[1], fields[2], fields[4], fields[5], fields[6], fields[9]),
            (s.endpoint().as_str(), format!("{id:x}").as_str(), version, "true", "false", term.to_string().as_str(), "")
        );
    }

    fn endpoint_health(kind) {
        let s = fresh(kind);
        let out = s.etcdctl(&["endpoint", "health"]);
        // etcdctl 3.4 prints the simple-format health line on stderr.
        assert_eq!(out.ok(), "");
        let text = out.stderr.as_str();
        let prefix = format!("{} is healthy: successfully committed proposal: took = ", s.endpoint());
        assert!(text.starts_with(&prefix) && text.ends_with('\n') && text.lines().count() == 1, "{text:?}");
        let j = s.ctl_json(&["endpoint", "health"]);
        let list = j.as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(keys_of(&list[0]), ["endpoint", "health", "took"]);
        assert_eq!(list[0]["endpoint"], s.endpoint());
        assert_eq!(list[0]["health"], true);
        assert!(list[0]["took"].is_string());
    }
}

//! `etcdctl txn` (non-interactive, from stdin): compares, both branches,
//! ranges inside branches, JSON shapes and revisions.
//!
//! stdin format: compares, blank line, success ops, blank line, failure ops,
//! blank line. etcdctl 3.4's compare grammar only takes a single key
//! (`value("a") = "1"`); it rejects ranges in compares client-side, so range
//! semantics are tested through `get/del --prefix` inside the branches.

use modkv_tests::*;

fn fresh(kind: Kind) -> Server {
    Server::start(kind, ServerOpts::new())
}

fn txn(s: &Server, script: &str) -> String {
    s.etcdctl_stdin(&["txn"], script.as_bytes()).ok().to_string()
}

fn txn_json(s: &Server, script: &str) -> Value {
    s.etcdctl_stdin(&["-w", "json", "txn"], script.as_bytes()).json()
}

both_kinds! {
    fn branches(kind) {
        let s = fresh(kind);
        assert_eq!(s.ctl_ok(&["put", "a", "1"]), "OK\n");
        // Success branch.
        assert_eq!(
            txn(&s, "value(\"a\") = \"1\"\n\nput b 2\nput c 3\n\nput never 0\n\n"),
            "SUCCESS\n\nOK\n\nOK\n"
        );
        assert_eq!(
            kvs(&s.ctl_json(&["get", "", "--from-key"])),
            [kv("a", "1", 2, 2, 1), kv("b", "2", 3, 3, 1), kv("c", "3", 3, 3, 1)]
        );
        // Failure branch, with a read and a write.
        assert_eq!(
            txn(&s, "value(\"a\") = \"nope\"\n\nput never 0\n\nget a\nput f 1\ndel b\n\n"),
            "FAILURE\n\na\n1\n\nOK\n\n1\n"
        );
        assert_eq!(s.ctl_ok(&["get", "never"]), "");
        assert_eq!(s.ctl_ok(&["get", "", "--from-key", "--keys-only"]), "a\n\nc\n\nf\n\n");
        assert_eq!(s.revision(), 4);
        // Failure with an empty failure branch.
        assert_eq!(txn(&s, "value(\"a\") = \"nope\"\n\nput never 0\n\n\n"), "FAILURE\n");
        // No compares: always succeeds; empty branches.
        assert_eq!(txn(&s, "\n\n\n"), "SUCCESS\n");
        assert_eq!(s.revision(), 4);
        // put --prev-kv / del --prev-kv inside a txn print the previous pairs.
        assert_eq!(
            txn(&s, "\nput a 2 --prev-kv\ndel c --prev-kv\ndel missing --prev-kv\n\n\n"),
            "SUCCESS\n\nOK\na\n1\n\n1\nc\n3\n\n0\n"
        );
        assert_eq!(s.revision(), 5);
    }

    fn compares(kind) {
        let s = fresh(kind);
        // a: create 2, mod 3, version 2, value "2"
        assert_eq!(s.ctl_ok(&["put", "a", "1"]), "OK\n");
        assert_eq!(s.ctl_ok(&["put", "a", "2"]), "OK\n");
        let cases: &[(&str, bool)] = &[
            ("value(\"a\") = \"2\"", true),
            ("value(\"a\") = \"1\"", false),
            ("value(\"a\") != \"1\"", true),
            ("value(\"a\") != \"2\"", false),
            ("value(\"a\") > \"1\"", true),
            ("value(\"a\") < \"3\"", true),
            // Values compare as bytes, not numbers.
            ("value(\"a\") < \"10\"", false),
            ("value(\"a\") > \"10\"", true),
            ("version(\"a\") = \"2\"", true),
            ("version(\"a\") > \"1\"", true),
            ("version(\"a\") < \"2\"", false),
            ("version(\"a\") != \"2\"", false),
            ("create(\"a\") = \"2\"", true),
            ("create(\"a\") = \"3\"", false),
            ("create(\"a\") < \"3\"", true),
            ("mod(\"a\") = \"3\"", true),
            ("mod(\"a\") > \"2\"", true),
            ("mod(\"a\") > \"3\"", false),
            ("mod(\"a\") != \"3\"", false),
            // Missing keys: version/create/mod are 0 ...
            ("version(\"m\") = \"0\"", true),
            ("create(\"m\") = \"0\"", true),
            ("mod(\"m\") = \"0\"", true),
            ("mod(\"m\") < \"1\"", true),
            ("version(\"m\") != \"1\"", true),
            ("version(\"m\") > \"0\"", false),
            // ... and any value compare on a missing key fails.
            ("value(\"m\") = \"\"", false),
            ("value(\"m\") != \"x\"", false),
            ("value(\"m\") > \"\"", false),
            // Several compares: all must hold.
            ("value(\"a\") = \"2\"\nversion(\"a\") = \"2\"\ncreate(\"a\") = \"2\"\nmod(\"a\") = \"3\"", true),
            ("value(\"a\") = \"2\"\nversion(\"a\") = \"2\"\ncreate(\"a\") = \"2\"\nmod(\"a\") = \"4\"", false),
            ("version(\"m\") = \"0\"\nvalue(\"a\") = \"1\"", false),
        ];
        let mut results = Vec::new();
        for (cmp, _) in cases {
            let out = txn(&s, &format!("{cmp}\n\n\n\n"));
            results.push((cmp.to_string(), out == "SUCCESS\n"));
            assert!(out == "SUCCESS\n" || out == "FAILURE\n", "{cmp}: {out:?}");
        }
        let expected: Vec<(String, bool)> = cases.iter().map(|(c, r)| (c.to_string(), *r)).collect();
        assert_eq!(results, expected);
        // None of that wrote anything.
        assert_eq!(s.revision(), 3);
    }

    fn json_shapes(kind) {
        let s = fresh(kind);
        assert_eq!(s.ctl_ok(&["put", "a", "1"]), "OK\n");
        assert_eq!(s.ctl_ok(&["put", "b", "x"]), "OK\n");
        // Success: `succeeded: true`, one entry per op, in order. Sub-response
        // headers carry only the revision current at that point of the txn.
        let j = txn_json(&s, "value(\"a\") = \"1\"\n\nget a\nput a 2\nget a\nput k new --prev-kv\ndel b --prev-kv\ndel missing\n\n\n");
        assert_eq!(keys_of(&j), ["header", "responses", "succeeded"]);
        assert_eq!(j["succeeded"], true);
        assert_eq!(header_rev(&j), 4);
        let r = j["responses"].as_array().unwrap();
        assert_eq!(r.len(), 6);
        for resp in r {
            assert_eq!(keys_of(resp), ["Response"]);
        }
        let inner = |i: usize, name: &str| -> Value {
            assert_eq!(keys_of(&r[i]["Response"]), [name], "response {i}: {}", r[i]);
            r[i]["Response"][name].clone()
        };
        let g0 = inner(0, "ResponseRange");
        assert_eq!(keys_of(&g0), ["count", "header", "kvs"]);
        assert_eq!(g0["header"], json!({"revision": 3}));
        assert_eq!(kvs(&g0), [kv("a", "1", 2, 2, 1)]);
        let p1 = inner(1, "ResponsePut");
        assert_eq!(p1, json!({"header": {"revision": 4}}));
        // Reads see the txn's own earlier writes.
        let g2 = inner(2, "ResponseRange");
        assert_eq!(g2["header"], json!({"revision": 4}));
        assert_eq!(kvs(&g2), [kv("a", "2", 2, 4, 2)]);
        // --prev-kv on a new key: no prev_kv field.
        let p3 = inner(3, "ResponsePut");
        assert_eq!(p3, json!({"header": {"revision": 4}}));
        let d4 = inner(4, "ResponseDeleteRange");
        assert_eq!(keys_of(&d4), ["deleted", "header", "prev_kvs"]);
        assert_eq!(d4["header"], json!({"revision": 4}));
        assert_eq!(d4["deleted"], 1);
        assert_eq!(kv_list(&d4["prev_kvs"]), [kv("b", "x", 3, 3, 1)]);
        let d5 = inner(5, "ResponseDeleteRange");
        assert_eq!(d5, json!({"header": {"revision": 4}}));
        assert_eq!(
            kvs(&s.ctl_json(&["get", "", "--from-key"])),
            [kv("a", "2", 2, 4, 2), kv("k", "new", 4, 4, 1)]
        );

        // Failure: `succeeded` is false and therefore omitted.
        let j = txn_json(&s, "value(\"a\") = \"1\"\n\nput x 1\n\nget k\n\n");
        assert_eq!(keys_of(&j), ["header", "responses"]);
        assert_eq!(header_rev(&j), 4);
        let g = &j["responses"][0]["Response"]["ResponseRange"];
        assert_eq!(g["header"], json!({"revision": 4}));
        assert_eq!(kvs(g), [kv("k", "new", 4, 4, 1)]);

        // No ops at all: just the header (+ succeeded).
        let j = txn_json(&s, "\n\n\n");
        assert_eq!(keys_of(&j), ["header", "succeeded"]);
        let j = txn_json(&s, "value(\"a\") = \"1\"\n\n\n\n");
        assert_eq!(keys_of(&j), ["header"]);
        assert_eq!(header_rev(&j), 4);

        // A miss inside a txn: range response without kvs/count.
        let j = txn_json(&s, "\nget nothing\n\n\n");
        assert_eq!(j["responses"][0]["Response"]["ResponseRange"], json!({"header": {"revision": 4}}));
    }

    fn ranges_in_branches(kind) {
        let s = fresh(kind);
        for (k, v) in [("p/1", "a"), ("p/2", "b"), ("p/3", "c"), ("q/1", "d")] {
            assert_eq!(s.ctl_ok(&["put", k, v]), "OK\n");
        }
        assert_eq!(
            txn(&s, "version(\"p/1\") = \"1\"\n\nget p/ --prefix\nget p/2 --from-key --keys-only\nget p/1 p/3\n\n\n"),
            "SUCCESS\n\np/1\na\np/2\nb\np/3\nc\n\np/2\n\np/3\n\nq/1\n\n\np/1\na\np/2\nb\n"
        );
        let j = txn_json(&s, "\nget p/ --prefix --limit 2\n\n\n");
        let g = &j["responses"][0]["Response"]["ResponseRange"];
        assert_eq!((g["count"].clone(), g["more"].clone()), (json!(3), json!(true)));
        assert_eq!(kvs(g), [kv("p/1", "a", 2, 2, 1), kv("p/2", "b", 3, 3, 1)]);

        assert_eq!(
            txn(&s, "create(\"p/3\") = \"4\"\n\ndel p/ --prefix --prev-kv\nget \"\" --from-key\n\n\n"),
            "SUCCESS\n\n3\np/1\na\np/2\nb\np/3\nc\n\nq/1\nd\n"
        );
        assert_eq!(s.revision(), 6);
        // Deleting an already empty range inside a txn: 0, no new revision.
        assert_eq!(txn(&s, "\ndel p/ --prefix\n\n\n"), "SUCCESS\n\n0\n");
        assert_eq!(s.revision(), 6);
        // A range read of a past revision inside a txn.
        assert_eq!(txn(&s, "\nget p/ --prefix --rev 5 --keys-only\n\n\n"), "SUCCESS\n\np/1\n\np/2\n\np/3\n\n");
    }

    fn txn_revisions(kind) {
        let s = fresh(kind);
        let j = txn_json(&s, "\nput a 1\nput b 1\nput c 1\n\n\n");
        assert_eq!(header_rev(&j), 2);
        let j = txn_json(&s, "\nput a 2\nput b 2\n\n\n");
        assert_eq!(header_rev(&j), 3);
        assert_eq!(
            kvs(&s.ctl_json(&["get", "", "--from-key"])),
            [kv("a", "2", 2, 3, 2), kv("b", "2", 2, 3, 2), kv("c", "1", 2, 2, 1)]
        );
        // Reading from the past revision 2 sees all three at version 1.
        assert_eq!(s.ctl_ok(&["get", "", "--from-key", "--rev", "2", "--print-value-only"]), "1\n1\n1\n");
        // Compare on a key written in the same earlier txn.
        assert_eq!(txn(&s, "mod(\"a\") = \"3\"\nmod(\"c\") = \"2\"\n\nput d 1\n\n\n"), "SUCCESS\n\nOK\n");
        assert_eq!(kvs(&s.ctl_json(&["get", "d"])), [kv("d", "1", 4, 4, 1)]);
    }
}

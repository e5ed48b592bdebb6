//! Server-side errors exactly as etcdctl 3.4 reports them: exit code 1, a
//! single `Error: <desc>` line on stderr, and (in etcdctl's client log line)
//! the gRPC status `rpc error: code = <Code> desc = <desc>`.

use modkv_tests::*;

const INVALID: &str = "InvalidArgument";
const OUT_OF_RANGE: &str = "OutOfRange";

fn limited(kind: Kind) -> Server {
    Server::start(kind, ServerOpts::new().args(["--max-request-bytes", "1024", "--max-txn-ops", "4"]))
}

both_kinds! {
    /// A method or service the server does not have gets grpc-go's words (a 3.5 client calling a 3.4
    /// server meets these).
    fn unknown_methods_and_services(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let call = |path: &'static str| {
            grpc::unary_once::<grpc::PutRequest, grpc::PutResponse>(&s.endpoint(), path, grpc::PutRequest::new("k", "v"))
                .map(|_| ())
        };
        let unimplemented = |m: &str| Err(("Unimplemented".to_string(), m.to_string()));
        assert_eq!(
            call("/etcdserverpb.Maintenance/Downgrade"),
            unimplemented("unknown method Downgrade for service etcdserverpb.Maintenance")
        );
        assert_eq!(call("/etcdserverpb.KV/Delete"), unimplemented("unknown method Delete for service etcdserverpb.KV"));
        assert_eq!(call("/foo.Bar/Baz"), unimplemented("unknown service foo.Bar"));
        // Nothing was written.
        assert_eq!(s.revision(), 1);
    }

    fn empty_key(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let desc = "etcdserver: key is not provided";
        s.etcdctl(&["put", "", "x"]).assert_server_error(INVALID, desc);
        s.etcdctl(&["get", ""]).assert_server_error(INVALID, desc);
        s.etcdctl(&["del", ""]).assert_server_error(INVALID, desc);
        s.etcdctl(&["-w", "json", "put", "", "x"]).assert_server_error(INVALID, desc);
        // Nothing was written.
        assert_eq!(s.revision(), 1);
    }

    fn ignore_value_on_missing_key(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let desc = "etcdserver: key not found";
        s.etcdctl(&["put", "nokey", "--ignore-value"]).assert_server_error(INVALID, desc);
        assert_eq!(s.ctl_ok(&["put", "k", "v"]), "OK\n");
        assert_eq!(s.ctl_ok(&["del", "k"]), "1\n");
        // A deleted key is missing too.
        s.etcdctl(&["put", "k", "--ignore-value"]).assert_server_error(INVALID, desc);
        // Inside a txn the whole txn fails.
        s.etcdctl_stdin(&["txn"], b"\nput ok 1\nput nokey --ignore-value\n\n\n").assert_server_error(INVALID, desc);
        assert_eq!(s.ctl_ok(&["get", "ok"]), "");
        assert_eq!(s.revision(), 3);
    }

    fn request_too_large(kind) {
        let s = limited(kind);
        let desc = "etcdserver: request is too large";
        let big = vec![b'x'; 2000];
        s.etcdctl_stdin(&["put", "big"], &big).assert_server_error(INVALID, desc);
        assert_eq!(s.ctl_ok(&["get", "big"]), "");
        // Below the limit (value + key + framing < 1024) is fine.
        let ok = vec![b'y'; 900];
        assert_eq!(s.etcdctl_stdin(&["put", "fits"], &ok).ok(), "OK\n");
        assert_eq!(s.ctl_ok(&["get", "fits", "--print-value-only"]), format!("{}\n", "y".repeat(900)));
        // The limit applies to the whole request, e.g. a txn of small puts.
        let v = "z".repeat(300);
        let script = format!("\nput t1 {v}\nput t2 {v}\nput t3 {v}\nput t4 {v}\n\n\n");
        s.etcdctl_stdin(&["txn"], script.as_bytes()).assert_server_error(INVALID, desc);
        assert_eq!(s.ctl_ok(&["get", "t", "--prefix"]), "");
        assert_eq!(s.revision(), 2);
    }

    fn too_many_txn_ops(kind) {
        let s = limited(kind);
        let desc = "etcdserver: too many operations in txn request";
        // 4 ops per branch and 4 compares are allowed ...
        assert_eq!(
            s.etcdctl_stdin(
                &["txn"],
                b"version(\"a\") = \"0\"\nversion(\"b\") = \"0\"\nversion(\"c\") = \"0\"\nversion(\"d\") = \"0\"\n\nput a 1\nput b 1\nput c 1\nput d 1\n\nget a\nget b\nget c\nget d\n\n"
            )
            .ok(),
            "SUCCESS\n\nOK\n\nOK\n\nOK\n\nOK\n"
        );
        // ... 5 in any of compares / success / failure is not.
        s.etcdctl_stdin(&["txn"], b"\nput a 1\nput b 1\nput c 1\nput d 1\nput e 1\n\n\n")
            .assert_server_error(INVALID, desc);
        s.etcdctl_stdin(&["txn"], b"\n\nget a\nget b\nget c\nget d\nget e\n\n")
            .assert_server_error(INVALID, desc);
        s.etcdctl_stdin(
            &["txn"],
            b"version(\"a\") = \"1\"\nversion(\"b\") = \"1\"\nversion(\"c\") = \"1\"\nversion(\"d\") = \"1\"\nversion(\"e\") = \"0\"\n\nput x 1\n\n\n",
        )
        .assert_server_error(INVALID, desc);
        assert_eq!(s.revision(), 2);
        assert_eq!(s.ctl_ok(&["get", "e"]), "");
    }

    fn duplicate_key_in_txn(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let desc = "etcdserver: duplicate key given in txn request";
        s.etcdctl_stdin(&["txn"], b"\nput x 1\nput x 2\n\n\n").assert_server_error(INVALID, desc);
        s.etcdctl_stdin(&["txn"], b"\nput x 1\ndel x\n\n\n").assert_server_error(INVALID, desc);
        s.etcdctl_stdin(&["txn"], b"\ndel p/ --prefix\nput p/1 1\n\n\n").assert_server_error(INVALID, desc);
        s.etcdctl_stdin(&["txn"], b"\n\nput y 1\nput y 2\n\n").assert_server_error(INVALID, desc);
        assert_eq!(s.revision(), 1);
        // Not duplicates: the same key in different branches, reads mixed
        // with writes, overlapping deletes.
        assert_eq!(s.etcdctl_stdin(&["txn"], b"\nput x 1\n\nput x 2\n\n").ok(), "SUCCESS\n\nOK\n");
        assert_eq!(s.etcdctl_stdin(&["txn"], b"\nget x\nput x 3\nget x\n\n\n").ok(), "SUCCESS\n\nx\n1\n\nOK\n\nx\n3\n");
        assert_eq!(s.etcdctl_stdin(&["txn"], b"\ndel x\ndel x --prefix\n\n\n").ok(), "SUCCESS\n\n1\n\n0\n");
        assert_eq!(s.revision(), 4);
    }

    fn bad_revisions(kind) {
        let s = Server::start(kind, ServerOpts::new());
        for i in 0..4 {
            assert_eq!(s.ctl_ok(&["put", "k", &i.to_string()]), "OK\n");
        }
        // revision is 5
        let future = "etcdserver: mvcc: required revision is a future revision";
        let compacted = "etcdserver: mvcc: required revision has been compacted";
        s.etcdctl(&["get", "k", "--rev", "6"]).assert_server_error(OUT_OF_RANGE, future);
        s.etcdctl(&["get", "k", "--rev", "1000"]).assert_server_error(OUT_OF_RANGE, future);
        s.etcdctl(&["compaction", "6"]).assert_server_error(OUT_OF_RANGE, future);
        assert_eq!(s.ctl_ok(&["compaction", "3"]), "compacted revision 3\n");
        s.etcdctl(&["get", "k", "--rev", "2"]).assert_server_error(OUT_OF_RANGE, compacted);
        s.etcdctl(&["get", "", "--from-key", "--rev", "1"]).assert_server_error(OUT_OF_RANGE, compacted);
        s.etcdctl(&["-w", "json", "get", "k", "--rev", "2"]).assert_server_error(OUT_OF_RANGE, compacted);
        s.etcdctl(&["compaction", "3"]).assert_server_error(OUT_OF_RANGE, compacted);
        s.etcdctl(&["compaction", "1"]).assert_server_error(OUT_OF_RANGE, compacted);
        // Inside a txn.
        s.etcdctl_stdin(&["txn"], b"\nget k --rev 2\n\n\n").assert_server_error(OUT_OF_RANGE, compacted);
        s.etcdctl_stdin(&["txn"], b"\nget k --rev 9\n\n\n").assert_server_error(OUT_OF_RANGE, future);
        // The compaction revision itself is still readable.
        assert_eq!(s.ctl_ok(&["get", "k", "--rev", "3"]), "k\n1\n");
        assert_eq!(s.revision(), 5);
    }
}

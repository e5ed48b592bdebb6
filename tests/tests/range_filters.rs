//! RangeRequest fields etcdctl 3.4 has no flags for (`count_only`,
//! `min/max_mod_revision`, `min/max_create_revision`), plus a few request
//! edge cases, through a raw gRPC `KV/Range` call (`modkv_tests::grpc`).

use modkv_tests::grpc::{self, sort_order, sort_target, RangeRequest, RangeResponse};
use modkv_tests::*;

/// a(create 2, mod 5, v2)  b(create 3, mod 7, v2)  c(create 4, mod 4)  d(create 6, mod 6); revision 7.
fn seeded(kind: Kind) -> Server {
    let s = Server::start(kind, ServerOpts::new());
    for (k, v) in [("a", "1"), ("b", "1"), ("c", "1"), ("a", "2"), ("d", "1"), ("b", "2")] {
        assert_eq!(s.ctl_ok(&["put", k, v]), "OK\n");
    }
    s
}

#[track_caller]
fn range(s: &Server, req: RangeRequest) -> RangeResponse {
    grpc::range(&s.endpoint(), req).unwrap_or_else(|e| panic!("Range failed: {e:?}"))
}

/// (keys, count, more)
#[track_caller]
fn summary(s: &Server, req: RangeRequest) -> (Vec<String>, i64, bool) {
    let r = range(s, req);
    assert_eq!(r.header.as_ref().expect("header").revision, 7);
    (r.keys(), r.count, r.more)
}

fn keys(k: &[&str]) -> Vec<String> {
    k.iter().map(|s| s.to_string()).collect()
}

both_kinds! {
    fn count_only(kind) {
        let s = seeded(kind);
        let all = RangeRequest::all();
        assert_eq!(summary(&s, RangeRequest { count_only: true, ..all.clone() }), (keys(&[]), 4, false));
        // The limit does not apply to a count, and `more` stays false.
        assert_eq!(summary(&s, RangeRequest { count_only: true, limit: 1, ..all.clone() }), (keys(&[]), 4, false));
        assert_eq!(
            summary(&s, RangeRequest { count_only: true, keys_only: true, ..all.clone() }),
            (keys(&[]), 4, false)
        );
        assert_eq!(summary(&s, RangeRequest { count_only: true, ..RangeRequest::range("b", "d") }), (keys(&[]), 2, false));
        assert_eq!(summary(&s, RangeRequest { count_only: true, ..RangeRequest::range("zz", "") }), (keys(&[]), 0, false));
        // At a past revision.
        assert_eq!(summary(&s, RangeRequest { count_only: true, revision: 3, ..all }), (keys(&[]), 2, false));
    }

    fn mod_and_create_revision_filters(kind) {
        let s = seeded(kind);
        let all = RangeRequest::all();
        // Filters drop kvs, but `count` is the unfiltered number of keys in range.
        assert_eq!(summary(&s, RangeRequest { min_mod_revision: 5, ..all.clone() }), (keys(&["a", "b", "d"]), 4, false));
        assert_eq!(summary(&s, RangeRequest { max_mod_revision: 5, ..all.clone() }), (keys(&["a", "c"]), 4, false));
        assert_eq!(summary(&s, RangeRequest { min_create_revision: 3, ..all.clone() }), (keys(&["b", "c", "d"]), 4, false));
        assert_eq!(summary(&s, RangeRequest { max_create_revision: 3, ..all.clone() }), (keys(&["a", "b"]), 4, false));
        assert_eq!(
            summary(&s, RangeRequest { min_mod_revision: 5, max_create_revision: 3, ..all.clone() }),
            (keys(&["a", "b"]), 4, false)
        );
        assert_eq!(
            summary(&s, RangeRequest { min_mod_revision: 6, max_mod_revision: 6, ..all.clone() }),
            (keys(&["d"]), 4, false)
        );
        assert_eq!(summary(&s, RangeRequest { min_mod_revision: 8, ..all.clone() }), (keys(&[]), 4, false));
        // The limit applies after filtering.
        assert_eq!(summary(&s, RangeRequest { min_mod_revision: 5, limit: 1, ..all.clone() }), (keys(&["a"]), 4, true));
        assert_eq!(summary(&s, RangeRequest { min_mod_revision: 5, limit: 3, ..all.clone() }), (keys(&["a", "b", "d"]), 4, false));
        // Filters at a past revision (rev 4: a@2, b@3, c@4).
        assert_eq!(
            summary(&s, RangeRequest { revision: 4, min_mod_revision: 3, ..all.clone() }),
            (keys(&["b", "c"]), 3, false)
        );
        // Filters combined with sorting and a prefix range.
        assert_eq!(
            summary(
                &s,
                RangeRequest {
                    min_create_revision: 3,
                    sort_order: sort_order::DESCEND,
                    sort_target: sort_target::MOD,
                    ..all.clone()
                }
            ),
            (keys(&["b", "d", "c"]), 4, false)
        );
        assert_eq!(summary(&s, RangeRequest { max_mod_revision: 5, ..RangeRequest::range("b", "\0") }), (keys(&["c"]), 3, false));
        // Revisions, values and versions of filtered results are intact.
        let r = range(&s, RangeRequest { min_mod_revision: 7, ..all });
        let kv = &r.kvs[0];
        assert_eq!(
            (kv.key.as_slice(), kv.value.as_slice(), kv.create_revision, kv.mod_revision, kv.version, kv.lease),
            (&b"b"[..], &b"2"[..], 3, 7, 2, 0)
        );
    }

    fn request_edge_cases(kind) {
        let s = seeded(kind);
        let all = RangeRequest::all();
        assert_eq!(summary(&s, RangeRequest::range("a", "")), (keys(&["a"]), 1, false));
        assert_eq!(summary(&s, RangeRequest::range("b", "\0")), (keys(&["b", "c", "d"]), 3, false));
        // range_end <= key: empty.
        assert_eq!(summary(&s, RangeRequest::range("c", "a")), (keys(&[]), 0, false));
        // Key "\0" with no range_end is a single (missing) key.
        assert_eq!(summary(&s, RangeRequest { key: vec![0], ..Default::default() }), (keys(&[]), 0, false));
        // Negative limit and revision mean "no limit" and "current".
        assert_eq!(summary(&s, RangeRequest { limit: -1, ..all.clone() }), (keys(&["a", "b", "c", "d"]), 4, false));
        assert_eq!(summary(&s, RangeRequest { revision: -1, ..all.clone() }), (keys(&["a", "b", "c", "d"]), 4, false));
        // Sort order NONE with a non-key target sorts ascending by that target.
        assert_eq!(
            summary(&s, RangeRequest { sort_target: sort_target::MOD, ..all.clone() }),
            (keys(&["c", "a", "d", "b"]), 4, false)
        );
        assert_eq!(
            summary(&s, RangeRequest { sort_order: sort_order::DESCEND, ..all.clone() }),
            (keys(&["d", "c", "b", "a"]), 4, false)
        );
        assert_eq!(
            summary(&s, RangeRequest { sort_order: sort_order::DESCEND, sort_target: sort_target::MOD, limit: 2, ..all.clone() }),
            (keys(&["b", "d"]), 4, true)
        );
        assert_eq!(
            summary(&s, RangeRequest { sort_order: sort_order::ASCEND, sort_target: sort_target::VERSION, limit: 2, ..all.clone() }).1,
            4
        );
        // keys_only drops values only.
        let r = range(&s, RangeRequest { keys_only: true, ..all.clone() });
        assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
        assert_eq!(
            r.kvs.iter().map(|kv| (kv.create_revision, kv.mod_revision, kv.version)).collect::<Vec<_>>(),
            [(2, 5, 2), (3, 7, 2), (4, 4, 1), (6, 6, 1)]
        );
        assert_eq!(summary(&s, RangeRequest { serializable: true, ..all.clone() }), (keys(&["a", "b", "c", "d"]), 4, false));
        // Header ids match what etcdctl reports.
        let h = range(&s, all.clone()).header.unwrap();
        let ml = s.ctl_json(&["member", "list"]);
        assert_eq!(json!(h.member_id), ml["header"]["member_id"]);
        assert_eq!(json!(h.cluster_id), ml["header"]["cluster_id"]);
        assert_eq!(json!(h.raft_term), ml["header"]["raft_term"]);
        // gRPC status codes and messages.
        assert_eq!(
            grpc::range(&s.endpoint(), RangeRequest { revision: 100, ..all }),
            Err(("OutOfRange".to_string(), "etcdserver: mvcc: required revision is a future revision".to_string()))
        );
        assert_eq!(
            grpc::range(&s.endpoint(), RangeRequest::range("", "")),
            Err(("InvalidArgument".to_string(), "etcdserver: key is not provided".to_string()))
        );
    }
}

//! Durability: acknowledged writes survive SIGKILL and restarts.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::Mutex;

use modkv_tests::*;

const N: usize = 500;
const WORKERS: usize = 4;

both_kinds! {
    fn acknowledged_puts_survive_kill9(kind) {
        let mut s = Server::start(kind, ServerOpts::new());
        // key -> mod_revision reported by the acknowledged put
        let acked: Mutex<BTreeMap<String, i64>> = Mutex::new(BTreeMap::new());
        std::thread::scope(|sc| {
            for w in 0..WORKERS {
                let (s, acked) = (&s, &acked);
                sc.spawn(move || {
                    for i in (w..N).step_by(WORKERS) {
                        let key = format!("key-{i:04}");
                        let j = s.ctl_json(&["put", &key, &format!("value-{i}")]);
                        acked.lock().unwrap().insert(key, header_rev(&j));
                    }
                });
            }
        });
        let acked = acked.into_inner().unwrap();
        assert_eq!(acked.len(), N);
        // Every put got its own revision: exactly 2..=N+1.
        let mut revs: Vec<i64> = acked.values().copied().collect();
        revs.sort();
        assert_eq!(revs, (2..=(N as i64 + 1)).collect::<Vec<_>>());

        s.kill9();
        assert!(!s.is_running());
        s.restart();

        let j = s.ctl_json(&["get", "key-", "--prefix"]);
        assert_eq!(header_rev(&j), N as i64 + 1);
        assert_eq!(j["count"], N);
        let got = kvs(&j);
        assert_eq!(got.len(), N);
        for (key, value, create, modr, version) in &got {
            let i: usize = key["key-".len()..].parse().unwrap();
            let rev = acked[key];
            assert_eq!((value.as_str(), *create, *modr, *version), (format!("value-{i}").as_str(), rev, rev, 1), "{key}");
        }
        // Writing continues from the recovered revision.
        assert_eq!(header_rev(&s.ctl_json(&["put", "after", "restart"])), N as i64 + 2);
    }

    fn history_and_compaction_survive_kill9(kind) {
        let mut s = Server::start(kind, ServerOpts::new());
        for i in 1..=6 {
            assert_eq!(s.ctl_ok(&["put", "k", &format!("v{i}")]), "OK\n");
        }
        // k: v1@2 .. v6@7
        assert_eq!(s.ctl_ok(&["put", "gone", "x"]), "OK\n"); // 8
        assert_eq!(s.ctl_ok(&["del", "gone"]), "1\n"); // 9
        assert_eq!(s.etcdctl_stdin(&["txn"], b"\nput t1 a\nput t2 b\n\n\n").ok(), "SUCCESS\n\nOK\n\nOK\n"); // 10
        assert_eq!(s.ctl_ok(&["compaction", "4"]), "compacted revision 4\n");

        s.kill9();
        s.restart();

        assert_eq!(s.revision(), 10);
        assert_eq!(kvs(&s.ctl_json(&["get", "k"])), [kv("k", "v6", 2, 7, 6)]);
        assert_eq!(s.ctl_ok(&["get", "k", "--rev", "5"]), "k\nv4\n");
        assert_eq!(s.ctl_ok(&["get", "gone"]), "");
        assert_eq!(s.ctl_ok(&["get", "gone", "--rev", "8"]), "gone\nx\n");
        assert_eq!(
            kvs(&s.ctl_json(&["get", "t", "--prefix"])),
            [kv("t1", "a", 10, 10, 1), kv("t2", "b", 10, 10, 1)]
        );
        // The compaction is durable too.
        s.etcdctl(&["get", "k", "--rev", "3"])
            .assert_server_error("OutOfRange", "etcdserver: mvcc: required revision has been compacted");
        assert_eq!(s.ctl_ok(&["get", "k", "--rev", "4"]), "k\nv3\n");
    }

    fn graceful_stop_and_restart(kind) {
        let mut s = Server::start(kind, ServerOpts::new());
        assert_eq!(s.ctl_ok(&["put", "a", "1"]), "OK\n");
        assert_eq!(s.ctl_ok(&["put", "b", "2"]), "OK\n");
        let before = s.ctl_json(&["member", "list"]);
        let status = s.stop().expect("server exits within 15 s of SIGTERM");
        // etcd re-raises SIGTERM after shutting down (dies "by signal 15");
        // a clean exit(0) is just as good.
        assert!(status.code() == Some(0) || status.signal() == Some(libc::SIGTERM), "{status:?}");
        s.restart();
        assert_eq!(s.revision(), 3);
        assert_eq!(s.ctl_ok(&["get", "", "--from-key"]), "a\n1\nb\n2\n");
        // Same member and cluster identity after a restart.
        let after = s.ctl_json(&["member", "list"]);
        assert_eq!(after["members"], before["members"]);
        assert_eq!(after["header"]["cluster_id"], before["header"]["cluster_id"]);
        // Restarts a second time, via SIGKILL.
        s.kill9();
        s.restart();
        assert_eq!(s.ctl_ok(&["put", "c", "3"]), "OK\n");
        assert_eq!(s.revision(), 4);
    }
}

//! A watch on a member that is catching up by a snapshot: opened on a follower as it comes back from
//! being down while the leader compacted its log (`--snapshot-count 100`, 6000 puts), from the revision
//! after the last one the follower had, it delivers every revision from there on, those the snapshot
//! brought included (etcd's watchable store moves its watchers to unsynced when it restores a snapshot
//! and catches them up from the restored history). Found by the chaos suite (issue 13, seed 71817910: a
//! watch on a replaced member, opened before its snapshot arrived, skipped 155 revisions): modkv notified
//! its watchers past everything the snapshot brought.

use std::time::{Duration, Instant};

use modkv_tests::cluster::Cluster;
use modkv_tests::load::put_many_grpc;
use modkv_tests::watch::{WatchClient, WatchCreateRequest};
use modkv_tests::*;

const PUTS: usize = 6000;

both_kinds! {
    fn a_watch_opened_before_a_snapshot_arrives_misses_nothing(kind) {
        let mut c = Cluster::start(kind, 3, &["--snapshot-count", "100"]);
        let l = c.wait_leader(Duration::from_secs(10));
        let f = (0..3).find(|&i| i != l).unwrap();
        c[f].kill9();
        let from = c[l].revision() + 1;
        let live: Vec<String> = (0..3).filter(|&i| i != f).map(|i| c[i].endpoint()).collect();
        put_many_grpc(&live, "snap-", PUTS, 16);
        // The follower comes back: the watch is opened as soon as it takes one, before it is caught up.
        c[f].launch_or_panic();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut wc = loop {
            match WatchClient::try_connect(&c[f].endpoint()) {
                Ok(wc) => break wc,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("cannot open a watch on {}: {e}", c[f].name),
            }
        };
        wc.create(WatchCreateRequest::range("snap-", "snap.").rev(from));
        let mut revs = Vec::new();
        while revs.len() < PUTS && Instant::now() < deadline {
            match wc.try_recv(Duration::from_millis(500)) {
                Ok(Some(r)) => {
                    assert!(!r.canceled, "watch canceled: {}", r.cancel_reason);
                    revs.extend(r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
                }
                Ok(None) => {}
                Err(e) => panic!("watch stream ended: {e:?}"),
            }
        }
        let want: Vec<i64> = (from..from + PUTS as i64).collect();
        if revs != want {
            let k = revs.iter().zip(&want).take_while(|(a, b)| a == b).count();
            panic!(
                "watch from revision {from} on {}: {} events; the first {k} in order, then {:?} where {:?} was due",
                c[f].name,
                revs.len(),
                revs.get(k),
                want.get(k)
            );
        }
    }
}

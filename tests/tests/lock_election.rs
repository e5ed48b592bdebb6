//! The lock (`v3lockpb.Lock`) and election (`v3electionpb.Election`) services through the JSON
//! gateway, as clients that use them (and not etcdctl's client-side recipes) see them: a second locker
//! waits until the holder unlocks, a waiter that gives up leaves no key behind, revoking the holder's
//! lease passes the lock on; a second candidate leads once the leader resigns, and an observer sees
//! every leader and value in turn. Same assertions against etcd and modkv. (The single calls and their
//! errors are in the gateway differential.)

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use modkv_tests::http::post;
use modkv_tests::*;

fn b64(s: &str) -> String {
    b64encode(s.as_bytes())
}

fn unb64(s: &str) -> String {
    String::from_utf8(b64decode(s).expect("base64")).expect("UTF-8")
}

fn grant(ep: &str, id: u64) {
    let r = post(ep, "/v3/lease/grant", &format!(r#"{{"TTL":"60","ID":"{id}"}}"#));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// `lock/lock`: the key it returns once the lock is held.
fn lock(ep: &str, name: &str, lease: u64) -> String {
    let r = post(ep, "/v3/lock/lock", &format!(r#"{{"name":"{}","lease":"{lease}"}}"#, b64(name)));
    assert_eq!(r.status, 200, "{}", r.text());
    unb64(r.json()["key"].as_str().expect("key"))
}

/// `lock/lock` in a thread; its key arrives on the channel.
fn lock_in_background(ep: &str, name: &str, lease: u64) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let (ep, name) = (ep.to_string(), name.to_string());
    thread::spawn(move || {
        let _ = tx.send(lock(&ep, &name, lease));
    });
    rx
}

/// The keys under `prefix`.
fn keys(ep: &str, prefix: &str) -> Vec<String> {
    let end = format!("{}0", prefix.trim_end_matches('/'));
    let r = post(
        ep,
        "/v3/kv/range",
        &format!(r#"{{"key":"{}","range_end":"{}","keys_only":true}}"#, b64(prefix), b64(&end)),
    );
    let kvs = r.json()["kvs"].as_array().cloned().unwrap_or_default();
    kvs.iter().map(|kv| unb64(kv["key"].as_str().unwrap())).collect()
}

both_kinds! {
    fn lock_waits_for_the_holder(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let ep = s.endpoint();
        for id in [4000, 5000, 6000, 7000] {
            grant(&ep, id);
        }
        assert_eq!(lock(&ep, "job", 4000), "job/fa0");

        // A second lease waits while the first holds the lock, and gets it once the holder unlocks.
        let second = lock_in_background(&ep, "job", 5000);
        assert!(second.recv_timeout(Duration::from_millis(1000)).is_err(), "the second locker did not wait");
        assert_eq!(keys(&ep, "job/"), ["job/1388", "job/fa0"], "the waiter's key is queued (by lease id here)");
        let r = post(&ep, "/v3/lock/unlock", &format!(r#"{{"key":"{}"}}"#, b64("job/fa0")));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(second.recv_timeout(Duration::from_secs(5)).expect("lock after unlock"), "job/1388");

        // A waiter that gives up (its client goes away) leaves no key behind.
        let body = format!(r#"{{"name":"{}","lease":"6000"}}"#, b64("job"));
        let out = modkv_tests::tls::curl(&["--max-time", "1", "-X", "POST", "-d", &body, &format!("{ep}/v3/lock/lock")]);
        assert_eq!(out.status, 28, "curl should have timed out waiting: {out:#?}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while keys(&ep, "job/") != ["job/1388"] && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(keys(&ep, "job/"), ["job/1388"], "the abandoned waiter's key was not deleted");

        // Revoking the holder's lease deletes its key: the next waiter holds the lock.
        let third = lock_in_background(&ep, "job", 7000);
        assert!(third.recv_timeout(Duration::from_millis(500)).is_err(), "the third locker did not wait");
        let r = post(&ep, "/v3/lease/revoke", r#"{"ID":"5000"}"#);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(third.recv_timeout(Duration::from_secs(5)).expect("lock after revoke"), "job/1b58");
        assert_eq!(keys(&ep, "job/"), ["job/1b58"]);
    }

    fn election_succession_and_observe(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let ep = s.endpoint();
        for id in [8000, 9000] {
            grant(&ep, id);
        }
        let campaign = |lease: u64, value: &str| {
            let body = format!(r#"{{"name":"{}","lease":"{lease}","value":"{}"}}"#, b64("boss"), b64(value));
            let r = post(&ep, "/v3/election/campaign", &body);
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["leader"].clone()
        };
        let first = campaign(8000, "a");
        assert_eq!(first["key"], b64("boss/1f40"));

        // An observer: the leader now, then each change.
        let observer = {
            let url = format!("{ep}/v3/election/observe");
            let body = format!(r#"{{"name":"{}"}}"#, b64("boss"));
            thread::spawn(move || modkv_tests::tls::curl(&["--max-time", "4", "-N", "-X", "POST", "-d", &body, &url]))
        };
        // A second candidate waits while the first leads.
        let second = {
            let (tx, rx) = mpsc::channel();
            let ep = ep.clone();
            thread::spawn(move || {
                let body = format!(r#"{{"name":"{}","lease":"9000","value":"{}"}}"#, b64("boss"), b64("b"));
                let _ = tx.send(post(&ep, "/v3/election/campaign", &body));
            });
            rx
        };
        assert!(second.recv_timeout(Duration::from_millis(800)).is_err(), "the second candidate did not wait");
        let proclaim = format!(r#"{{"leader":{first},"value":"{}"}}"#, b64("a2"));
        assert_eq!(post(&ep, "/v3/election/proclaim", &proclaim).status, 200);
        thread::sleep(Duration::from_millis(300));
        let resign = post(&ep, "/v3/election/resign", &format!(r#"{{"leader":{first}}}"#));
        assert_eq!(resign.status, 200, "{}", resign.text());
        let second = second.recv_timeout(Duration::from_secs(5)).expect("the second candidate leads after the resign");
        assert_eq!(second.json()["leader"]["key"], b64("boss/2328"), "{}", second.text());
        let leader = post(&ep, "/v3/election/leader", &format!(r#"{{"name":"{}"}}"#, b64("boss")));
        assert_eq!(leader.json()["kv"]["value"], b64("b"));

        // The observer saw the first leader, its new value, then the second leader.
        let out = observer.join().unwrap();
        assert_eq!(out.status, 28, "observe ends only when the client goes: {out:#?}");
        let seen: Vec<String> = out
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
                unb64(v["result"]["kv"]["value"].as_str().unwrap_or_else(|| panic!("no kv in {l}")))
            })
            .collect();
        assert_eq!(seen, ["a", "a2", "b"], "{}", out.stdout);
    }
}

//! Auth (issue 12): users, roles, key-range permissions and simple tokens, the same session against
//! etcd 3.4 and modkv, asserting what etcdctl and the JSON gateway show; where modkv is deliberately
//! stricter than etcd 3.4.23 (as later 3.4 releases are) the modkv variant asserts modkv's answer.

use std::time::Duration;

use modkv_tests::cluster::*;
use modkv_tests::http::post_with_headers;
use modkv_tests::*;

/// etcdctl's stderr without clientv3's own retry warnings: the `Error: …` line(s).
fn errors(out: &CtlOutput) -> String {
    out.stderr.lines().filter(|l| !l.contains("retrying of unary invoker")).collect::<Vec<_>>().join("\n")
}

/// Runs etcdctl on `m` and asserts its exit code and the error it prints.
#[track_caller]
fn fails(m: &Member, args: &[&str], status: i32, error: &str) {
    let out = m.etcdctl(args);
    assert_eq!((out.status, errors(&out).as_str()), (status, error), "{args:?}: {out:#?}");
}

/// Users root (root role, granted by etcdctl's `auth enable`, which adds the role) and alice (role reader: READ foo, READWRITE prefix /app/, WRITE [a, c) and
/// from zz), auth enabled.
fn setup(m: &Member) {
    for (args, out) in [
        (vec!["user", "add", "root:rootpw"], "User root created\n"),
        (vec!["user", "add", "alice:apw"], "User alice created\n"),
        (vec!["role", "add", "reader"], "Role reader created\n"),
        (vec!["role", "grant-permission", "reader", "read", "foo"], "Role reader updated\n"),
        (vec!["role", "grant-permission", "reader", "readwrite", "--prefix", "/app/"], "Role reader updated\n"),
        (vec!["role", "grant-permission", "reader", "write", "a", "c"], "Role reader updated\n"),
        (vec!["role", "grant-permission", "reader", "write", "--from-key", "zz"], "Role reader updated\n"),
        (vec!["user", "grant-role", "alice", "reader"], "Role reader is granted to user alice\n"),
        (vec!["auth", "enable"], "Authentication Enabled\n"),
    ] {
        assert_eq!(m.etcdctl(&args).ok(), out, "{args:?}");
    }
}

const ROOT: &str = "--user=root:rootpw";
const ALICE: &str = "--user=alice:apw";

/// POST `path` on the gateway with `token` (if any) in `Authorization`: status and JSON body.
fn gw(m: &Member, path: &str, body: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let headers: Vec<(&str, &str)> = token.map(|t| ("Authorization", t)).into_iter().collect();
    let r = post_with_headers(&m.endpoint(), path, body, &headers);
    (r.status, r.json())
}

/// A token for `name` from the gateway's authenticate.
fn token(m: &Member, name: &str, password: &str) -> String {
    let (st, j) = gw(m, "/v3/auth/authenticate", &format!(r#"{{"name":"{name}","password":"{password}"}}"#), None);
    assert_eq!(st, 200, "{j}");
    let t = j["token"].as_str().unwrap().to_string();
    let (prefix, index) = t.split_once('.').unwrap();
    assert!(prefix.len() == 16 && prefix.bytes().all(|b| b.is_ascii_alphabetic()), "{t}");
    assert!(index.parse::<u64>().is_ok(), "{t}");
    t
}

both_kinds! {
    /// An etcdctl session: user and role management with etcd's exact output and errors, auth enable
    /// and disable, what alice may and may not do, a wrong password, an anonymous client.
    fn etcdctl_session(kind) {
        let s = Server::start(kind, ServerOpts::new());
        fails(&s, &["auth", "enable"], 1, "Error: etcdserver: root user does not exist");
        setup(&s);
        fails(&s, &["user", "add", "bob:x"], 1, "Error: etcdserver: user name is empty");
        fails(&s, &["put", "foo", "bar"], 1, "Error: etcdserver: user name is empty");
        fails(&s, &[ROOT, "user", "add", "alice:x"], 1, "Error: etcdserver: user name already exists");
        fails(&s, &[ROOT, "role", "add", "reader"], 1, "Error: etcdserver: role name already exists");
        assert_eq!(s.etcdctl(&[ROOT, "user", "list"]).ok(), "alice\nroot\n");
        assert_eq!(s.etcdctl(&[ROOT, "role", "list"]).ok(), "reader\nroot\n");
        assert_eq!(s.etcdctl(&[ROOT, "user", "get", "alice"]).ok(), "User: alice\nRoles: reader\n");
        let role = "Role reader\nKV Read:\n\t[/app/, /app0) (prefix /app/)\n\tfoo\nKV Write:\n\t[/app/, /app0) (prefix /app/)\n\t[a, c)\n\t[zz, <open ended>\n";
        assert_eq!(s.etcdctl(&[ROOT, "role", "get", "reader"]).ok(), role);
        assert_eq!(s.etcdctl(&[ROOT, "role", "get", "root"]).ok(), "Role root\nKV Read:\nKV Write:\n");

        assert_eq!(s.etcdctl(&[ROOT, "put", "foo", "bar"]).ok(), "OK\n");
        assert_eq!(s.etcdctl(&[ALICE, "get", "foo"]).ok(), "foo\nbar\n");
        fails(&s, &[ALICE, "put", "foo", "x"], 1, "Error: etcdserver: permission denied");
        assert_eq!(s.etcdctl(&[ALICE, "put", "/app/x", "1"]).ok(), "OK\n");
        assert_eq!(s.etcdctl(&[ALICE, "get", "/app/", "--prefix"]).ok(), "/app/x\n1\n");
        fails(&s, &[ALICE, "get", "foo", "--prefix"], 1, "Error: etcdserver: permission denied");
        fails(&s, &[ALICE, "get", "a", "e"], 1, "Error: etcdserver: permission denied");
        fails(&s, &[ALICE, "del", "foo"], 1, "Error: etcdserver: permission denied");
        assert_eq!(s.etcdctl(&[ALICE, "put", "b", "1"]).ok(), "OK\n");
        assert_eq!(s.etcdctl(&[ALICE, "put", "zzz", "1"]).ok(), "OK\n");
        fails(&s, &["--user=alice:wrong", "get", "foo"], 2, "Error: etcdserver: authentication failed, invalid user ID or password");
        fails(&s, &["--user=carol:x", "get", "foo"], 2, "Error: etcdserver: authentication failed, invalid user ID or password");
        fails(&s, &[ALICE, "user", "list"], 1, "Error: etcdserver: permission denied");
        fails(&s, &[ALICE, "role", "add", "x"], 1, "Error: etcdserver: permission denied");
        assert_eq!(s.etcdctl(&[ALICE, "user", "get", "alice"]).ok(), "User: alice\nRoles: reader\n", "one's own user");
        assert_eq!(s.etcdctl(&[ALICE, "role", "get", "reader"]).ok(), role, "a role one holds");
        fails(&s, &[ALICE, "user", "get", "root"], 1, "Error: etcdserver: permission denied");
        let defrag = s.etcdctl(&[ALICE, "defrag"]);
        assert_eq!(defrag.status, 1);
        let expected = format!("Failed to defragment etcd member[{}] (rpc error: code = Unknown desc = auth: permission denied)", s.endpoint());
        assert_eq!(errors(&defrag), expected);

        // A watch outside the granted range is cancelled by the server.
        let w = s.etcdctl(&[ALICE, "watch", "foo", "--prefix"]);
        assert_eq!(w.status, 5, "{w:#?}");
        let canceled = "watch was canceled (rpc error: code = PermissionDenied desc = etcdserver: permission denied)";
        assert!(errors(&w).contains(canceled), "{w:#?}");
        assert!(errors(&w).ends_with("Error: watch is canceled by the server"), "{w:#?}");

        let passwd = s.etcdctl_stdin(&[ROOT, "user", "passwd", "alice", "--interactive=false"], b"apw2\n");
        assert_eq!(passwd.ok(), "Password updated\n");
        fails(&s, &[ALICE, "get", "foo"], 2, "Error: etcdserver: authentication failed, invalid user ID or password");
        assert_eq!(s.etcdctl(&["--user=alice:apw2", "get", "foo"]).ok(), "foo\nbar\n");

        for (args, out) in [
            (vec![ROOT, "role", "revoke-permission", "reader", "foo"], "Permission of key foo is revoked from role reader\n"),
            (vec![ROOT, "role", "revoke-permission", "reader", "--prefix", "/app/"], "Permission of range [/app/, /app0) is revoked from role reader\n"),
            (vec![ROOT, "role", "revoke-permission", "reader", "--from-key", "zz"], "Permission of range [zz, <open ended> is revoked from role reader\n"),
            (vec![ROOT, "user", "revoke-role", "alice", "reader"], "Role reader is revoked from user alice\n"),
            (vec![ROOT, "role", "delete", "reader"], "Role reader deleted\n"),
            (vec![ROOT, "user", "delete", "alice"], "User alice deleted\n"),
        ] {
            assert_eq!(s.etcdctl(&args).ok(), out, "{args:?}");
        }
        fails(&s, &[ROOT, "role", "revoke-permission", "root", "nope"], 1, "Error: etcdserver: permission is not granted to the role");
        fails(&s, &[ROOT, "user", "revoke-role", "root", "reader"], 1, "Error: etcdserver: role is not granted to the user");
        fails(&s, &[ROOT, "user", "delete", "root"], 1, "Error: etcdserver: invalid auth management");
        fails(&s, &[ROOT, "role", "delete", "root"], 1, "Error: etcdserver: invalid auth management");
        fails(&s, &[ROOT, "user", "revoke-role", "root", "root"], 1, "Error: etcdserver: invalid auth management");
        fails(&s, &[ROOT, "user", "delete", "alice"], 1, "Error: etcdserver: user name not found");
        fails(&s, &[ROOT, "role", "get", "reader"], 1, "Error: etcdserver: role name not found");
        assert_eq!(s.etcdctl(&[ROOT, "auth", "disable"]).ok(), "Authentication Disabled\n");
        assert_eq!(s.etcdctl(&["get", "foo"]).ok(), "foo\nbar\n");
        assert_eq!(s.etcdctl(&["user", "list"]).ok(), "root\n");
    }

    /// The gateway: authenticate, then requests with the token in `Authorization`; none, a bad one.
    fn gateway_with_token(kind) {
        let s = Server::start(kind, ServerOpts::new());
        setup(&s);
        let root = token(&s, "root", "rootpw");
        let (st, j) = gw(&s, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#, Some(&root));
        assert_eq!(st, 200, "{j}");
        let alice = token(&s, "alice", "apw");
        let (st, j) = gw(&s, "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(&alice));
        assert_eq!((st, j["kvs"][0]["value"].as_str()), (200, Some("YmFy")), "{j}");
        let (st, j) = gw(&s, "/v3/kv/put", r#"{"key":"Zm9v","value":"eA=="}"#, Some(&alice));
        assert_eq!((st, &j["error"], &j["code"]), (403, &"etcdserver: permission denied".into(), &7.into()), "{j}");
        let (st, j) = gw(&s, "/v3/kv/range", r#"{"key":"Zm9v"}"#, None);
        assert_eq!((st, &j["message"], &j["code"]), (400, &"etcdserver: user name is empty".into(), &3.into()), "{j}");
        let (st, j) = gw(&s, "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some("abcdefghijklmnop.1"));
        assert_eq!((st, &j["message"], &j["code"]), (401, &"etcdserver: invalid auth token".into(), &16.into()), "{j}");
        let (st, j) = gw(&s, "/v3/auth/authenticate", r#"{"name":"alice","password":"no"}"#, None);
        let failed = "etcdserver: authentication failed, invalid user ID or password";
        assert_eq!((st, &j["message"], &j["code"]), (400, &failed.into(), &3.into()), "{j}");
        let (st, j) = gw(&s, "/v3/auth/user/list", "{}", Some(&root));
        assert_eq!((st, &j["users"]), (200, &serde_json::json!(["alice", "root"])), "{j}");
        let (st, j) = gw(&s, "/v3/auth/role/get", r#"{"role":"reader"}"#, Some(&root));
        assert_eq!(st, 200, "{j}");
        assert_eq!(j["perm"][0], serde_json::json!({"permType":"READWRITE","key":"L2FwcC8=","range_end":"L2FwcDA="}), "{j}");
        assert_eq!(j["perm"][2], serde_json::json!({"key":"Zm9v"}), "READ is the default value, left out: {j}");
        let (st, j) = gw(&s, "/v3/auth/user/grant", r#"{"user":"alice","role":"nope"}"#, Some(&root));
        assert_eq!((st, &j["message"]), (412, &"etcdserver: role name not found".into()), "{j}");
        // A user deleted loses its tokens.
        let (st, j) = gw(&s, "/v3/auth/user/delete", r#"{"name":"alice"}"#, Some(&root));
        assert_eq!(st, 200, "{j}");
        let (st, j) = gw(&s, "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(&alice));
        assert_eq!((st, &j["message"]), (401, &"etcdserver: invalid auth token".into()), "{j}");
        let (st, _) = gw(&s, "/v3/auth/disable", "{}", Some(&root));
        assert_eq!(st, 200);
        let (st, j) = gw(&s, "/v3/auth/authenticate", r#"{"name":"root","password":"rootpw"}"#, None);
        assert_eq!((st, &j["message"]), (412, &"etcdserver: authentication is not enabled".into()), "{j}");
    }

    /// Users and roles survive a restart; a token from before it is refused by modkv, a new one works.
    fn restart_keeps_users_not_tokens(kind) {
        let mut s = Server::start(kind, ServerOpts::new());
        setup(&s);
        let old = token(&s, "alice", "apw");
        assert_eq!(gw(&s, "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(&old)).0, 200);
        s.probe_with(&[ROOT]);
        s.restart();
        let (st, j) = gw(&s, "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(&old));
        match kind {
            // etcd replays its WAL since the last snapshot at start, Authenticate entries included, so the
            // token is made again; modkv applies nothing twice (the applied index is stored with the state).
            Kind::Etcd => assert_eq!(st, 200, "{j}"),
            Kind::Modkv => assert_eq!((st, &j["message"]), (401, &"etcdserver: invalid auth token".into()), "{j}"),
        }
        let new = token(&s, "alice", "apw");
        assert_eq!(gw(&s, "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(&new)).0, 200);
        fails(&s, &["get", "foo"], 1, "Error: etcdserver: user name is empty");
        assert_eq!(s.etcdctl(&[ROOT, "user", "list"]).ok(), "alice\nroot\n");
        assert_eq!(s.etcdctl(&[ALICE, "user", "get", "alice"]).ok(), "User: alice\nRoles: reader\n");
    }

    /// A user added through one member of three authenticates on another, and a token from one member
    /// is good on the others.
    fn user_added_on_one_member_authenticates_on_another(kind) {
        let mut c = Cluster::start(kind, 3, &[]);
        c.wait_leader(Duration::from_secs(20));
        let m = c.members();
        setup(&m[0]);
        assert_eq!(m[1].etcdctl(&[ALICE, "put", "/app/k", "v"]).ok(), "OK\n");
        assert_eq!(m[2].etcdctl(&[ALICE, "get", "/app/k"]).ok(), "/app/k\nv\n");
        fails(&m[2], &[ALICE, "put", "foo", "v"], 1, "Error: etcdserver: permission denied");
        let t = token(&m[1], "alice", "apw");
        let (st, j) = gw(&m[2], "/v3/kv/range", r#"{"key":"L2FwcC9r"}"#, Some(&t));
        assert_eq!((st, j["kvs"][0]["value"].as_str()), (200, Some("dg==")), "{j}");
    }

    /// A follower stopped while users, roles and grants are made and auth is enabled, and while enough
    /// is written that it needs a snapshot to catch up: the snapshot brings the auth state, so alice
    /// authenticates on it and is held to her grants there.
    fn auth_state_reaches_a_lagging_member_by_snapshot(kind) {
        const N: usize = 6000;
        let mut c = Cluster::start(kind, 3, &["--snapshot-count", "100"]);
        let l = c.wait_leader(Duration::from_secs(10));
        let f = (l + 1) % 3;
        let other = (l + 2) % 3;
        c[f].pause();
        let took = modkv_tests::load::put_many_grpc(&[c[l].endpoint(), c[other].endpoint()], "/app/s", N, 16);
        eprintln!("{N} puts took {took:?}");
        setup(&c[l]);
        c[f].resume();
        // (An etcd 3.4 follower refuses proposals, Authenticate's among them, with "too many requests" until
        // it has applied an entry after the snapshot: one more write through the leader.)
        assert_eq!(c[l].etcdctl(&[ROOT, "put", "/app/after", "1"]).ok(), "OK\n");
        let last = format!("/app/s{:05}", N - 1);
        poll(Duration::from_secs(30), "alice to read the last key on the follower", || {
            let out = c[f].etcdctl(&[ALICE, "get", &last, "--consistency=s"]);
            (out.success() && out.stdout == format!("{last}\nv{}\n", N - 1)).then_some(())
        });
        assert!(c[f].log().contains("applied incoming snapshot"), "no snapshot was installed:\n{}", c[f].log_tail(40));
        fails(&c[f], &[ALICE, "put", "foo", "x"], 1, "Error: etcdserver: permission denied");
        fails(&c[f], &["get", "foo"], 1, "Error: etcdserver: user name is empty");
        assert_eq!(c[f].etcdctl(&[ROOT, "user", "list"]).ok(), "alice\nroot\n");
    }

    /// `snapshot save` as root, restored: the users and roles come back with the keys.
    fn snapshot_restore_keeps_users(kind) {
        let mut s = Server::start(kind, ServerOpts::new());
        setup(&s);
        assert_eq!(s.etcdctl(&[ROOT, "put", "foo", "bar"]).ok(), "OK\n");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup.db").display().to_string();
        let out = s.etcdctl(&[ALICE, "snapshot", "save", &file]);
        assert!(!out.success() && out.stderr.contains("auth: permission denied"), "{out:#?}");
        assert_eq!(s.etcdctl(&[ROOT, "snapshot", "save", &file]).ok(), format!("Snapshot saved at {file}\n"));
        s.kill9();
        std::fs::remove_dir_all(s.data_dir()).unwrap();
        let data_dir = s.data_dir().display().to_string();
        let out = match kind {
            Kind::Etcd => {
                let peer = format!("http://127.0.0.1:{}", s.peer_port);
                let cluster = format!("{}={peer}", s.opts.name);
                s.etcdctl(&["snapshot", "restore", &file, "--data-dir", &data_dir, "--name", &s.opts.name,
                    "--initial-cluster", &cluster, "--initial-advertise-peer-urls", &peer])
            }
            Kind::Modkv => {
                let mut cmd = std::process::Command::new(Kind::Modkv.binary());
                cmd.args(["snapshot", "restore", &file, "--data-dir", &data_dir]);
                run_command(cmd, None, Duration::from_secs(30))
            }
        };
        assert!(out.success(), "{out:#?}");
        s.probe_with(&[ROOT]);
        s.restart();
        fails(&s, &["get", "foo"], 1, "Error: etcdserver: user name is empty");
        assert_eq!(s.etcdctl(&[ALICE, "get", "foo"]).ok(), "foo\nbar\n");
        assert_eq!(s.etcdctl(&[ROOT, "user", "list"]).ok(), "alice\nroot\n");
    }

    /// Where etcd 3.4.23 lets a user through and modkv (as later 3.4 releases) does not: compaction,
    /// a nested txn, a txn put's prev_kv, lease listing, status.
    fn secure_by_default_deviations(kind) {
        let s = Server::start(kind, ServerOpts::new());
        setup(&s);
        assert_eq!(s.etcdctl(&[ROOT, "put", "secret", "s"]).ok(), "OK\n");
        let compact = s.etcdctl(&[ALICE, "compaction", "1"]);
        let alice = token(&s, "alice", "apw");
        // A nested txn whose inner op writes outside alice's grant.
        let nested = r#"{"success":[{"request_txn":{"success":[{"request_put":{"key":"c2VjcmV0","value":"eA=="}}]}}]}"#;
        let (nested_st, nested_j) = gw(&s, "/v3/kv/txn", nested, Some(&alice));
        // A txn put inside alice's write grant asking for the previous value she may not read.
        let prev = r#"{"success":[{"request_put":{"key":"Yg==","value":"eA==","prev_kv":true}}]}"#;
        let (prev_st, _) = gw(&s, "/v3/kv/txn", prev, Some(&alice));
        match kind {
            Kind::Etcd => {
                assert_eq!(compact.ok(), "compacted revision 1\n");
                assert_eq!(nested_st, 200, "{nested_j}");
                assert_eq!(s.etcdctl(&[ROOT, "get", "secret"]).ok(), "secret\nx\n", "3.4.23 does not check nested ops");
                assert_eq!(prev_st, 200);
            }
            Kind::Modkv => {
                assert_eq!((compact.status, errors(&compact).as_str()), (1, "Error: etcdserver: permission denied"));
                assert_eq!((nested_st, &nested_j["message"]), (403, &"etcdserver: permission denied".into()));
                assert_eq!(s.etcdctl(&[ROOT, "get", "secret"]).ok(), "secret\ns\n");
                assert_eq!(prev_st, 403);
                fails(&s, &[ALICE, "lease", "list"], 2, "Error: etcdserver: permission denied");
                let st = s.etcdctl(&[ALICE, "endpoint", "status"]);
                assert!(!st.success() && st.stderr.contains("auth: permission denied"), "{st:#?}");
                // READ on the key "\0" alone (etcdctl's key ""); a watch of every key (clientv3's prefix
                // "": key "\0", range_end "\0") is checked against all of them. etcd 3.4.23 checks it as
                // the key "\0" and lets it through.
                assert_eq!(s.etcdctl(&[ROOT, "role", "grant-permission", "reader", "read", ""]).ok(), "Role reader updated\n");
                let w = s.etcdctl(&[ALICE, "watch", "--prefix", ""]);
                assert_eq!(w.status, 5, "{w:#?}");
            }
        }
    }
}

both_kinds! {
    /// `--auth-token-ttl 2`: a token used within its TTL stays good, one left unused longer is refused,
    /// and a new one works.
    fn token_expires_unless_used(kind) {
        let s = Server::start(kind, ServerOpts::new().args(["--auth-token-ttl", "2"]));
        setup(&s);
        let t = token(&s, "alice", "apw");
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(1000));
            assert_eq!(gw(&s, "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(&t)).0, 200, "used within its TTL");
        }
        std::thread::sleep(Duration::from_millis(4500));
        let (st, j) = gw(&s, "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(&t));
        assert_eq!((st, &j["message"], &j["code"]), (401, &"etcdserver: invalid auth token".into(), &16.into()), "{j}");
        let t = token(&s, "alice", "apw");
        assert_eq!(gw(&s, "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(&t)).0, 200);
    }

    /// A user added with `--no-password` cannot authenticate (etcd's unmapped error, `Unknown`).
    fn no_password_user(kind) {
        let s = Server::start(kind, ServerOpts::new());
        setup(&s);
        assert_eq!(s.etcdctl(&[ROOT, "user", "add", "bob", "--no-password"]).ok(), "User bob created\n");
        assert_eq!(s.etcdctl(&[ROOT, "user", "get", "bob"]).ok(), "User: bob\nRoles:\n");
        let (st, j) = gw(&s, "/v3/auth/authenticate", r#"{"name":"bob","password":"x"}"#, None);
        let msg = "auth: authentication failed, password was given for no password user";
        assert_eq!((st, &j["message"], &j["code"]), (500, &msg.into(), &2.into()), "{j}");
    }

    /// The lock and election services run as the caller: inside alice's grant they work, outside it
    /// they are refused.
    fn lock_and_election_run_as_the_caller(kind) {
        let s = Server::start(kind, ServerOpts::new());
        setup(&s);
        let alice = token(&s, "alice", "apw");
        let (st, j) = gw(&s, "/v3/lock/lock", r#"{"name":"L2FwcC9sb2Nr"}"#, Some(&alice));
        assert_eq!(st, 200, "{j}");
        let key = b64decode(j["key"].as_str().unwrap()).unwrap();
        assert!(key.starts_with(b"/app/lock/"), "{j}");
        let (st, j) = gw(&s, "/v3/lock/lock", r#"{"name":"bG9jaw=="}"#, Some(&alice));
        assert_eq!((st, &j["message"]), (500, &"etcdserver: permission denied".into()), "{j}");
        let (st, j) = gw(&s, "/v3/election/campaign", r#"{"name":"L2FwcC9l","value":"dg=="}"#, Some(&alice));
        assert_eq!(st, 200, "{j}");
        let (st, j) = gw(&s, "/v3/election/campaign", r#"{"name":"ZQ==","value":"dg=="}"#, Some(&alice));
        assert_eq!((st, &j["message"]), (500, &"etcdserver: permission denied".into()), "{j}");
        let (st, j) = gw(&s, "/v3/lock/lock", r#"{"name":"L2FwcC9sb2Nr"}"#, None);
        assert_eq!((st, &j["message"]), (500, &"etcdserver: user name is empty".into()), "{j}");
    }
}

both_kinds! {
    /// The member's own requests run as root: automatic compaction goes on with auth enabled.
    fn auto_compaction_runs_with_auth_on(kind) {
        let args = ["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1s"];
        let s = Server::start(kind, ServerOpts::new().args(args));
        setup(&s);
        for v in ["1", "2", "3"] {
            assert_eq!(s.etcdctl(&[ROOT, "put", "foo", v]).ok(), "OK\n");
        }
        poll(Duration::from_secs(30), "revision 2 to be compacted", || {
            let out = s.etcdctl(&[ROOT, "get", "foo", "--rev", "2"]);
            errors(&out).contains("required revision has been compacted").then_some(())
        });
    }
}

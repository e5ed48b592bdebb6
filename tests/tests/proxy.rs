//! Proxy mode (issue 15): `etcd grpc-proxy start` and `modkv grpc-proxy start` in front of a cluster of
//! their own kind, used through etcdctl with the same assertions: kv, txn, history, leases, watch, lock,
//! compaction and the members' errors; a namespace; the member the proxy uses killed in a 3-member
//! cluster (puts resume within seconds, an open watch keeps every event once); coalescing as the member
//! sees it (twenty clients' keep-alives of one lease on one upstream stream, fifty watchers of one key
//! costing the member a few watchers). modkv only (etcd's
//! proxy has no gateway): the JSON gateway, `/health` turning 503 when the cluster loses quorum,
//! `/version` and `/metrics` on the proxy's port. The read cache with auth on: a session's repeated
//! serializable read answered by the proxy alone (both kinds); modkv only (etcd's proxy hands cached
//! answers to any caller, etcd #22065, and never sees writes made elsewhere): users kept apart, writes
//! through another member, auth enabled and disabled elsewhere, a revoked role honoured within the
//! entries' lifetime.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use modkv_tests::chaos::lease::{LeaseIdRequest, LeaseKeepAliveResponse};
use modkv_tests::cluster::{poll, Cluster};
use modkv_tests::grpc;
use modkv_tests::http::{post, request};
use modkv_tests::proxy::grpc_proxy_args;
use modkv_tests::tls;
use modkv_tests::watch::CtlProc;
use modkv_tests::*;

/// A `grpc-proxy start` process of one kind, killed when dropped (its log printed if the test failed).
struct Proxy {
    child: Child,
    endpoint: String,
    /// etcdctl's TLS flags towards the proxy (with `--cert-file`).
    ctl_tls: Vec<String>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts a proxy of `kind` in front of `endpoints` (comma-separated) and waits until a read
    /// through it is answered.
    fn start(kind: Kind, endpoints: &str, extra: &[&str]) -> Proxy {
        Proxy::start_tls(kind, endpoints, extra, &[])
    }

    /// [`Proxy::start`] serving TLS (`extra` has `--cert-file`): etcdctl reaches it with `ctl_tls`.
    fn start_tls(kind: Kind, endpoints: &str, extra: &[&str], ctl_tls: &[String]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let args = grpc_proxy_args(endpoints, port, dir.path(), extra);
        Proxy::spawn(kind, args, port, dir, ctl_tls)
    }

    /// `modkv --proxy <mode>` (the v2-proxy switch) in front of the cluster whose peers `initial_cluster`
    /// names.
    fn member_flags_proxy(mode: &str, initial_cluster: &str) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let args = vec![
            format!("--proxy={mode}"),
            format!("--initial-cluster={initial_cluster}"),
            format!("--listen-client-urls=http://127.0.0.1:{port}"),
            format!("--data-dir={}", dir.path().join("proxy").display()),
        ];
        Proxy::spawn(Kind::Modkv, args, port, dir, &[])
    }

    /// Runs `kind`'s binary with `args`, serving on `port`, and waits until a read through it is answered.
    fn spawn(kind: Kind, args: Vec<String>, port: u16, dir: tempfile::TempDir, ctl_tls: &[String]) -> Proxy {
        let log = dir.path().join("proxy.log");
        let out = std::fs::File::create(&log).expect("log file");
        let mut cmd = kind.command();
        cmd.args(args).stdin(Stdio::null()).stdout(out.try_clone().expect("log file")).stderr(out);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let scheme = if ctl_tls.is_empty() { "http" } else { "https" };
        let endpoint = format!("{scheme}://127.0.0.1:{port}");
        let p = Proxy { child, endpoint, ctl_tls: ctl_tls.to_vec(), log, _dir: dir };
        poll(Duration::from_secs(20), "the proxy to answer", || {
            TcpStream::connect(("127.0.0.1", port)).ok()?;
            p.ctl(&["get", "ready"]).success().then_some(())
        });
        p
    }

    fn ctl(&self, args: &[&str]) -> CtlOutput {
        let mut all: Vec<&str> = self.ctl_tls.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        etcdctl_at(&self.endpoint, &all, None)
    }

    /// etcdctl's stdout, the command required to succeed.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(out.success(), "etcdctl {args:?} through the proxy: {out:?}");
        out.stdout
    }
}

/// Through the proxy: users root (`rootpw`) and alice (`pw`, role `r`: readwrite on `a/`), then auth on;
/// each step's etcdctl output checked.
fn enable_auth(p: &Proxy) {
    assert_eq!(p.ok(&["user", "add", "root:rootpw"]), "User root created\n");
    assert_eq!(p.ok(&["role", "add", "r"]), "Role r created\n");
    assert_eq!(p.ok(&["role", "grant-permission", "r", "readwrite", "a/", "--prefix"]), "Role r updated\n");
    assert_eq!(p.ok(&["user", "add", "alice:pw"]), "User alice created\n");
    assert_eq!(p.ok(&["user", "grant-role", "alice", "r"]), "Role r is granted to user alice\n");
    assert_eq!(p.ok(&["auth", "enable"]), "Authentication Enabled\n");
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- proxy log ---\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

/// The header revision of `get <key> -w json` through `p`.
fn revision(p: &Proxy) -> i64 {
    let out = p.ok(&["get", "nothing", "-w", "json"]);
    let v: Value = serde_json::from_str(out.trim()).expect("json");
    v["header"]["revision"].as_i64().expect("revision")
}

/// The lease id etcdctl prints for `lease grant`.
fn granted_id(out: &str) -> String {
    out.strip_prefix("lease ").and_then(|s| s.split_whitespace().next()).expect("lease <id> granted").to_string()
}

both_kinds! {
    fn etcdctl_through_the_proxy(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let p = Proxy::start(kind, &s.endpoint(), &[]);
        // kv and history.
        assert_eq!(p.ok(&["put", "k", "v1"]), "OK\n");
        assert_eq!(p.ok(&["put", "k", "v2"]), "OK\n");
        assert_eq!(p.ok(&["get", "k"]), "k\nv2\n");
        assert_eq!(p.ok(&["get", "k", "--rev=2"]), "k\nv1\n");
        assert_eq!(s.ctl_ok(&["get", "k"]), "k\nv2\n", "the proxy wrote to the member");
        // txn, both branches.
        let txn = |script: &str| etcdctl_at(&p.endpoint, &["txn"], Some(script.as_bytes())).ok().to_string();
        assert_eq!(txn("value(\"k\") = \"v2\"\n\nput t yes\n\nput t no\n\n"), "SUCCESS\n\nOK\n");
        assert_eq!(txn("value(\"k\") = \"v1\"\n\nput t yes\n\nget t\n\n"), "FAILURE\n\nt\nyes\n");
        assert_eq!(p.ok(&["del", "t"]), "1\n");
        // Leases: grant, attach, keep alive, time to live, revoke.
        let id = granted_id(&p.ok(&["lease", "grant", "60"]));
        assert_eq!(p.ok(&["put", "lk", "x", &format!("--lease={id}")]), "OK\n");
        assert_eq!(p.ok(&["lease", "keep-alive", "--once", &id]), format!("lease {id} keepalived with TTL(60)\n"));
        let ttl = p.ok(&["lease", "timetolive", &id, "--keys"]);
        assert!(
            ttl.starts_with(&format!("lease {id} granted with TTL(60s), remaining(")) && ttl.ends_with("s), attached keys([lk])\n"),
            "{ttl}"
        );
        assert_eq!(p.ok(&["lease", "revoke", &id]), format!("lease {id} revoked\n"));
        assert_eq!(p.ok(&["get", "lk"]), "");
        // A member's error comes back unchanged.
        let out = p.ctl(&["lease", "revoke", "1"]);
        assert_eq!(out.status, 1);
        assert!(out.stderr.ends_with("Error: failed to revoke lease (etcdserver: requested lease not found)\n"), "{out:?}");
        // Watch from the next revision: every event once, in order.
        let next = revision(&p) + 1;
        let w = CtlProc::spawn_at(&p.endpoint, &["watch", "w", "--prefix", &format!("--rev={next}")]);
        assert_eq!(p.ok(&["put", "w1", "a"]), "OK\n");
        assert_eq!(p.ok(&["put", "w2", "b"]), "OK\n");
        assert_eq!(p.ok(&["del", "w1"]), "1\n");
        w.wait_for("three events", Duration::from_secs(15), |o| o == "PUT\nw1\na\nPUT\nw2\nb\nDELETE\nw1\n\n");
        drop(w);
        // Lock: the command runs while the lock is held.
        assert_eq!(p.ok(&["lock", "mutex", "--", "echo", "held"]), "held\n");
        // Compaction: history before it is gone, with the member's error.
        let rev = revision(&p);
        assert_eq!(p.ok(&["compaction", &rev.to_string()]), format!("compacted revision {rev}\n"));
        let out = p.ctl(&["get", "k", "--rev=2"]);
        assert_eq!(out.status, 1);
        assert!(out.stderr.ends_with("Error: etcdserver: mvcc: required revision has been compacted\n"), "{out:?}");
    }

    fn each_call_is_made_as_its_caller(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let p = Proxy::start(kind, &s.endpoint(), &[]);
        enable_auth(&p);
        assert_eq!(p.ok(&["--user", "alice:pw", "put", "a/1", "x"]), "OK\n");
        assert_eq!(p.ok(&["--user", "alice:pw", "get", "a/1"]), "a/1\nx\n");
        let refused = |args: &[&str], error: &str, status: i32| {
            let out = p.ctl(args);
            assert_eq!(out.status, status, "{args:?}: {out:?}");
            assert!(out.stderr.ends_with(&format!("Error: {error}\n")), "{args:?}: {out:?}");
        };
        refused(&["--user", "alice:pw", "put", "b", "x"], "etcdserver: permission denied", 1);
        refused(&["--user", "alice:pw", "user", "list"], "etcdserver: permission denied", 1);
        refused(&["put", "a/2", "x"], "etcdserver: user name is empty", 1);
        refused(&["--user", "alice:bad", "get", "a/1"], "etcdserver: authentication failed, invalid user ID or password", 2);
        assert_eq!(p.ok(&["--user", "root:rootpw", "user", "list"]), "alice\nroot\n");
        assert_eq!(p.ok(&["--user", "root:rootpw", "get", "a/1", "--print-value-only"]), "x\n");
    }

    fn tls_towards_the_members_and_the_clients(kind) {
        let pki = tls::Pki::generate();
        // No client certificate towards the member: etcd's proxy refuses one with a Common Name (`cert has
        // non empty Common Name`), as the test PKI's have.
        let s = tls::start_https(kind, ServerOpts::new().args(pki.server_args()), false, &pki.ctl_ca());
        let (ca, server, server_key) = (pki.path("ca.pem"), pki.path("server.pem"), pki.path("server.key"));
        let p = Proxy::start_tls(
            kind,
            &tls::https_endpoint(&s),
            &["--cacert", &ca, "--cert-file", &server, "--key-file", &server_key],
            &pki.ctl_ca(),
        );
        assert_eq!(p.ok(&["put", "k", "over tls"]), "OK\n");
        assert_eq!(p.ok(&["get", "k", "--print-value-only"]), "over tls\n");
        assert_eq!(tls::etcdctl_tls(&s, &pki.ctl_ca(), &["get", "k", "--print-value-only"]).ok(), "over tls\n");
        // A client that does not trust the proxy's certificate does not get through.
        let out = etcdctl_at(&p.endpoint, &["--dial-timeout=2s", "get", "k"], None);
        assert!(!out.success(), "{out:?}");
    }

    fn namespace_prefixes_and_hides(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let p = Proxy::start(kind, &s.endpoint(), &["--namespace=p/"]);
        assert_eq!(s.ctl_ok(&["put", "outside", "o"]), "OK\n");
        assert_eq!(s.ctl_ok(&["put", "q/x", "o"]), "OK\n");
        let next = revision(&p) + 1;
        let w = CtlProc::spawn_at(&p.endpoint, &["watch", "", "--prefix", &format!("--rev={next}")]);
        assert_eq!(p.ok(&["put", "a", "1"]), "OK\n");
        assert_eq!(p.ok(&["put", "b", "2", "--prev-kv"]), "OK\n");
        assert_eq!(p.ok(&["put", "b", "3", "--prev-kv"]), "OK\nb\n2\n");
        // Stored under the prefix; read back without it.
        assert_eq!(s.ctl_ok(&["get", "p/", "--prefix"]), "p/a\n1\np/b\n3\n");
        assert_eq!(p.ok(&["get", "a"]), "a\n1\n");
        assert_eq!(p.ok(&["get", "", "--prefix", "--keys-only"]), "a\n\nb\n\n");
        assert_eq!(p.ok(&["get", "", "--from-key", "--keys-only"]), "a\n\nb\n\n");
        assert_eq!(p.ok(&["get", "outside"]), "");
        let id = granted_id(&p.ok(&["lease", "grant", "60"]));
        assert_eq!(p.ok(&["put", "l", "x", &format!("--lease={id}")]), "OK\n");
        assert!(p.ok(&["lease", "timetolive", &id, "--keys"]).ends_with("s), attached keys([l])\n"));
        let txn = etcdctl_at(&p.endpoint, &["txn"], Some(b"value(\"a\") = \"1\"\n\nget b\n\n\n")).ok().to_string();
        assert_eq!(txn, "SUCCESS\n\nb\n3\n");
        assert_eq!(p.ok(&["del", "", "--prefix"]), "3\n");
        assert_eq!(s.ctl_ok(&["get", "", "--prefix", "--keys-only"]), "outside\n\nq/x\n\n");
        w.wait_for("the namespace's events", Duration::from_secs(15), |o| {
            o == "PUT\na\n1\nPUT\nb\n2\nPUT\nb\n3\nPUT\nl\nx\nDELETE\na\n\nDELETE\nb\n\nDELETE\nl\n\n"
        });
    }

    fn puts_resume_when_the_proxied_member_dies(kind) {
        let mut c = Cluster::start(kind, 3, &[]);
        let p = Proxy::start(kind, &c.endpoints(&[0, 1, 2]), &[]);
        assert_eq!(p.ok(&["put", "k0", "v"]), "OK\n");
        let next = revision(&p) + 1;
        let w = CtlProc::spawn_at(&p.endpoint, &["watch", "k", "--prefix", &format!("--rev={next}")]);
        assert_eq!(p.ok(&["put", "k1", "v"]), "OK\n");
        w.wait_for("the first event", Duration::from_secs(15), |o| o == "PUT\nk1\nv\n");
        // m1: the member modkv's proxy uses first (etcd's uses the three in turn).
        c.members[0].kill9();
        let killed = Instant::now();
        for i in 2..=6 {
            let key = format!("k{i}");
            poll(Duration::from_secs(20), &format!("put {key} through the proxy"), || {
                p.ctl(&["put", &key, "v"]).success().then_some(())
            });
        }
        println!("{kind}: five puts through the proxy done {:?} after the member was killed", killed.elapsed());
        assert!(killed.elapsed() < Duration::from_secs(20));
        let expected: String = (1..=6).map(|i| format!("PUT\nk{i}\nv\n")).collect();
        w.wait_for("every event once, in order", Duration::from_secs(20), |o| o == expected);
    }
}

/// modkv's proxy goes beyond etcd's: the JSON gateway, `/version`, `/metrics` with the members' metrics,
/// and `/health` answering 503 once the cluster has lost its quorum.
#[test]
fn gateway_health_and_metrics_on_the_proxy_port() {
    let mut c = Cluster::start(Kind::Modkv, 3, &[]);
    let p = Proxy::start(Kind::Modkv, &c.endpoints(&[0, 1, 2]), &["--namespace=g/"]);
    let r = post(&p.endpoint, "/v3/kv/put", r#"{"key":"YQ==","value":"MQ=="}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(&p.endpoint, "/v3/kv/range", r#"{"key":"YQ=="}"#);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["kvs"][0]["key"], "YQ==", "the namespace is stripped: {}", r.text());
    assert_eq!(r.json()["kvs"][0]["value"], "MQ==");
    assert_eq!(c.members[1].ctl_ok(&["get", "g/a"]), "g/a\n1\n");
    // A member's error through the gateway: its code and message, grpc-gateway's status.
    let r = post(&p.endpoint, "/v3/lease/revoke", r#"{"ID":"1"}"#);
    assert_eq!((r.status, r.json()["message"].as_str()), (404, Some("etcdserver: requested lease not found")));
    let r = request(&p.endpoint, "GET", "/version", b"");
    assert_eq!(r.status, 200);
    assert!(r.json()["etcdserver"].as_str().is_some_and(|v| v.starts_with("3.4.")), "{}", r.text());
    let r = request(&p.endpoint, "GET", "/metrics", b"");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("modkv_proxy_members 3\n"), "the proxy's own gauge");
    assert!(r.text().contains("\netcd_server_has_leader 1\n"), "a member's metrics are passed on");
    let r = request(&p.endpoint, "GET", "/health", b"");
    assert_eq!((r.status, r.text()), (200, r#"{"health":"true"}"#.to_string()));
    // Two of three members gone: no quorum.
    c.members[1].kill9();
    c.members[2].kill9();
    let lost = Instant::now();
    poll(Duration::from_secs(15), "/health to answer 503", || {
        let r = request(&p.endpoint, "GET", "/health", b"");
        (r.status == 503).then_some(r.text())
    });
    println!("/health answered 503 {:?} after quorum was lost", lost.elapsed());
    let r = request(&p.endpoint, "GET", "/health", b"");
    assert_eq!((r.status, r.text()), (503, "{\"health\":\"false\"}\n".to_string()));
}

/// modkv's proxy presents `--cert` to members that require a client certificate (etcd's refuses a
/// certificate with a Common Name, which this one has), for gRPC and for the members' `/metrics` it
/// passes on.
#[test]
fn client_certificate_towards_the_members() {
    let pki = tls::Pki::generate();
    let mut member_flags = pki.server_args();
    member_flags.extend(["--client-cert-auth".into(), "--trusted-ca-file".into(), pki.path("ca.pem")]);
    let s = tls::start_https(Kind::Modkv, ServerOpts::new().args(member_flags), false, &pki.ctl_client());
    let (ca, client, key) = (pki.path("ca.pem"), pki.path("client.pem"), pki.path("client.key"));
    let p = Proxy::start(Kind::Modkv, &tls::https_endpoint(&s), &["--cacert", &ca, "--cert", &client, "--key", &key]);
    assert_eq!(p.ok(&["put", "k", "v"]), "OK\n");
    assert_eq!(tls::etcdctl_tls(&s, &pki.ctl_client(), &["get", "k", "--print-value-only"]).ok(), "v\n");
    // The member's metrics come through too, fetched over https with the same certificate.
    let m = proxy_metrics(&p);
    assert!(m.contains("\netcd_server_has_leader 1\n"), "{m}");
    assert!(m.contains("\nmodkv_proxy_members 1\n"), "{m}");
}

/// The proxy's `/metrics` text.
fn proxy_metrics(p: &Proxy) -> String {
    let r = request(&p.endpoint, "GET", "/metrics", b"");
    assert_eq!(r.status, 200);
    r.text()
}

/// Fifty watchers of one key that start now share one upstream watch (modkv's proxy's gauges); each
/// hears every event once, in order, a watcher that joins late from the revision of its `created` on;
/// the shared watch ends with its last watcher.
#[test]
fn fifty_watchers_share_one_upstream_watch() {
    use modkv_tests::watch::{WatchClient, WatchCreateRequest};
    let s = Server::start(Kind::Modkv, ServerOpts::new());
    let p = Proxy::start(Kind::Modkv, &s.endpoint(), &[]);
    let mut watchers: Vec<WatchClient> = (0..50).map(|_| WatchClient::connect(&p.endpoint)).collect();
    for w in &mut watchers {
        w.create(WatchCreateRequest::key("hot"));
        let created = w.recv();
        assert!(created.created && created.watch_id == 0, "{}", created.summary());
    }
    let m = proxy_metrics(&p);
    assert!(m.contains("\nmodkv_proxy_shared_watches 1\n"), "{m}");
    assert!(m.contains("\nmodkv_proxy_coalesced_watchers 50\n"), "{m}");
    assert_eq!(p.ok(&["put", "hot", "1"]), "OK\n");
    assert_eq!(p.ok(&["put", "cold", "x"]), "OK\n");
    assert_eq!(p.ok(&["put", "hot", "2"]), "OK\n");
    let rev = revision(&p);
    let mut late = WatchClient::connect(&p.endpoint);
    late.create(WatchCreateRequest::key("hot"));
    let created = late.recv();
    assert!(created.created, "{}", created.summary());
    assert_eq!(p.ok(&["put", "hot", "3"]), "OK\n");
    // The values of the events a watcher hears up to the last put's revision.
    let values = |w: &mut WatchClient| {
        let mut seen: Vec<(String, i64)> = Vec::new();
        while seen.last().is_none_or(|&(_, r)| r < rev + 1) {
            for e in &w.recv().events {
                let kv = e.kv.as_ref().expect("kv");
                seen.push((String::from_utf8_lossy(&kv.value).into_owned(), kv.mod_revision));
            }
        }
        seen.into_iter().map(|(v, _)| v).collect::<Vec<_>>()
    };
    for w in &mut watchers {
        assert_eq!(values(w), ["1", "2", "3"]);
    }
    assert_eq!(values(&mut late), ["3"], "the late watcher hears what follows its created revision");
    assert_eq!(created.rev(), rev);
    drop(watchers);
    drop(late);
    poll(Duration::from_secs(10), "the shared watch to end with its watchers", || {
        proxy_metrics(&p).contains("\nmodkv_proxy_shared_watches 0\n").then_some(())
    });
}

/// A shared upstream watch whose member dies resumes on another member: each of its watchers hears
/// every event once, in order.
#[test]
fn a_shared_watch_survives_its_member() {
    use modkv_tests::watch::{WatchClient, WatchCreateRequest};
    let mut c = Cluster::start(Kind::Modkv, 3, &[]);
    let p = Proxy::start(Kind::Modkv, &c.endpoints(&[0, 1, 2]), &[]);
    let mut watchers: Vec<WatchClient> = (0..5).map(|_| WatchClient::connect(&p.endpoint)).collect();
    for w in &mut watchers {
        w.create(WatchCreateRequest::range("s", "t"));
        assert!(w.recv().created);
    }
    assert!(proxy_metrics(&p).contains("\nmodkv_proxy_shared_watches 1\n"));
    assert_eq!(p.ok(&["put", "s1", "v"]), "OK\n");
    c.members[0].kill9();
    for i in 2..=4 {
        let key = format!("s{i}");
        poll(Duration::from_secs(20), &format!("put {key}"), || p.ctl(&["put", &key, "v"]).success().then_some(()));
    }
    for w in &mut watchers {
        let mut keys = Vec::new();
        while keys.len() < 4 {
            for e in &w.recv().events {
                keys.push(String::from_utf8_lossy(&e.kv.as_ref().expect("kv").key).into_owned());
            }
        }
        assert_eq!(keys, ["s1", "s2", "s3", "s4"]);
        w.assert_quiet(Duration::from_millis(300));
    }
}

/// `modkv --proxy on|readonly` (etcd's v2-proxy switch; etcd 3.4's is HTTP/1 v2 only, so modkv only): the
/// proxy finds the members' client URLs through the peers `--initial-cluster` names and serves etcdctl
/// on `--listen-client-urls`; `readonly` answers reads and refuses every write with `Unimplemented`
/// (gRPC's 501, what etcd's v2 readonly proxy answers).
#[test]
fn member_flags_proxy_on_and_readonly() {
    let c = Cluster::start(Kind::Modkv, 3, &[]);
    let initial: Vec<String> =
        c.members().iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect();
    let initial = initial.join(",");
    let on = Proxy::member_flags_proxy("on", &initial);
    assert_eq!(on.ok(&["put", "k", "v1"]), "OK\n");
    assert_eq!(on.ok(&["get", "k"]), "k\nv1\n");
    assert_eq!(etcdctl_at(&c.endpoints(&[2]), &["get", "k"], None).ok(), "k\nv1\n", "written to the cluster");
    let ro = Proxy::member_flags_proxy("readonly", &initial);
    assert_eq!(ro.ok(&["get", "k"]), "k\nv1\n");
    // etcdctl prints a client warning line first (its retry interceptor logs every failed attempt), then
    // the error: once, as the code is not retried.
    let rpc = "rpc error: code = Unimplemented desc = proxy: read-only proxy (--proxy readonly): write requests are not implemented";
    let refused = format!("Error: {rpc}");
    let error_line = |out: &CtlOutput| out.stderr.lines().last().unwrap_or_default().to_string();
    let writes = [
        (&["put", "k", "v2"][..], refused.clone()),
        (&["del", "k"], refused.clone()),
        (&["lease", "grant", "10"], format!("Error: failed to grant lease ({rpc})")),
        (&["compaction", "1"], refused.clone()),
    ];
    for (args, expected) in writes {
        let out = ro.ctl(args);
        assert!(!out.success(), "etcdctl {args:?} through a readonly proxy succeeded: {out:?}");
        assert_eq!(error_line(&out), expected, "etcdctl {args:?}");
        // etcdctl's retry interceptor logs each failed attempt: one, as the code is not retried.
        assert!(out.stderr.matches("\"attempt\"").count() <= 1, "retried: {out:?}");
    }
    let txn = etcdctl_at(&ro.endpoint, &["txn"], Some(b"\nput k v3\n\n\n"));
    assert_eq!(error_line(&txn), refused, "a txn that writes");
    assert_eq!(etcdctl_at(&ro.endpoint, &["txn"], Some(b"\nget k\n\n\n")).ok(), "SUCCESS\n\nk\nv1\n");
    // The JSON gateway answers the refusal with 501, as etcd's v2 readonly proxy does.
    let r = post(&ro.endpoint, "/v3/kv/put", r#"{"key":"aw==","value":"djQ="}"#);
    assert_eq!(r.status, 501, "{:?}", r.text());
    assert_eq!(r.json()["message"], rpc.split("desc = ").nth(1).unwrap());
    assert_eq!(on.ok(&["get", "k"]), "k\nv1\n", "nothing was written through the readonly proxy");
}

/// A counter of the proxy's `/metrics`.
fn proxy_counter(p: &Proxy, name: &str) -> u64 {
    let text = proxy_metrics(p);
    let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name} in {text}"));
    line[name.len() + 1..].trim().parse().expect("a number")
}

/// modkv's serializable read cache (modkv only: etcd's proxy answers from its cache after a write made
/// through another member, and hands root's cached read to any caller, etcd #22065): a write through
/// another member reaches the cache through its watch well within an entry's 5 s lifetime; a cached
/// answer is never given to another caller.
#[test]
fn read_cache_follows_the_cluster_and_the_caller() {
    let c = Cluster::start(Kind::Modkv, 3, &[]);
    let p = Proxy::start(Kind::Modkv, &c.endpoints(&[0]), &[]);
    let direct = |i: usize, args: &[&str]| etcdctl_at(&c.endpoints(&[i]), args, None).ok().to_string();
    assert_eq!(direct(1, &["put", "k", "v1"]), "OK\n");
    let serializable = ["get", "k", "--consistency=s"];
    poll(Duration::from_secs(10), "a serializable read answered from the cache", || {
        let hits = proxy_counter(&p, "etcd_grpc_proxy_cache_hits_total");
        assert_eq!(p.ok(&serializable), "k\nv1\n");
        assert_eq!(p.ok(&serializable), "k\nv1\n");
        (proxy_counter(&p, "etcd_grpc_proxy_cache_hits_total") > hits).then_some(())
    });
    // A write through another member: the next reads are the new value, not the cached one.
    assert_eq!(direct(2, &["put", "k", "v2"]), "OK\n");
    poll(Duration::from_millis(2500), "the cached read invalidated by a write elsewhere", || {
        (p.ok(&serializable) == "k\nv2\n").then_some(())
    });
    assert_eq!(direct(1, &["del", "k"]), "1\n");
    poll(Duration::from_millis(2500), "the cached read invalidated by a delete elsewhere", || {
        p.ok(&serializable).is_empty().then_some(())
    });

    // Two users: root's cached read is never alice's nor an anonymous caller's.
    enable_auth(&p);
    assert_eq!(p.ok(&["--user", "root:rootpw", "put", "secret", "s3cr3t"]), "OK\n");
    assert_eq!(p.ok(&["--user", "alice:pw", "put", "a/1", "x"]), "OK\n");
    for _ in 0..2 {
        assert_eq!(p.ok(&["--user", "root:rootpw", "get", "secret", "--consistency=s"]), "secret\ns3cr3t\n");
        assert_eq!(p.ok(&["--user", "alice:pw", "get", "a/1", "--consistency=s"]), "a/1\nx\n");
    }
    let refused = |args: &[&str], error: &str| {
        let out = p.ctl(args);
        assert!(!out.success() && out.stderr.ends_with(&format!("Error: {error}\n")), "{args:?}: {out:?}");
    };
    refused(&["--user", "alice:pw", "get", "secret", "--consistency=s"], "etcdserver: permission denied");
    refused(&["get", "secret", "--consistency=s"], "etcdserver: user name is empty");
    refused(&["get", "a/1", "--consistency=s"], "etcdserver: user name is empty");
}

/// The sum of a member's samples of `family` (`grpc_server_*_total`, `etcd_debugging_mvcc_*`) whose
/// labels include `grpc_method="<method>"` (every sample when `method` is empty).
fn member_metric(s: &Server, family: &str, method: &str) -> f64 {
    let r = request(&s.endpoint(), "GET", "/metrics", b"");
    assert_eq!(r.status, 200);
    let label = format!("grpc_method=\"{method}\"");
    r.text()
        .lines()
        .filter(|l| l.strip_prefix(family).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter(|l| method.is_empty() || l.contains(&label))
        .map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()).expect("a sample value"))
        .sum()
}

/// A member's LeaseKeepAlive figures: (streams started, streams open, messages received).
fn keep_alive_counts(s: &Server) -> (f64, f64, f64) {
    let started = member_metric(s, "grpc_server_started_total", "LeaseKeepAlive");
    let handled = member_metric(s, "grpc_server_handled_total", "LeaseKeepAlive");
    (started, started - handled, member_metric(s, "grpc_server_msg_received_total", "LeaseKeepAlive"))
}

/// `etcdserverpb.AuthenticateRequest`
#[derive(Clone, PartialEq, prost::Message)]
struct AuthenticateRequest {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    password: String,
}

/// `etcdserverpb.AuthenticateResponse` (its header left out)
#[derive(Clone, PartialEq, prost::Message)]
struct AuthenticateResponse {
    #[prost(string, tag = "2")]
    token: String,
}

/// How long the keep-alive clients renew their lease, and how often each sends a keep-alive.
const RENEW_FOR: Duration = Duration::from_secs(3);
const RENEW_EVERY: Duration = Duration::from_millis(5);

/// Where the keep-alive clients are.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Renew,
    /// Stop sending, take every answer due.
    Drain,
    /// The lease was revoked: ask until an answer says it is gone.
    Revoked,
}

/// What one keep-alive client saw while renewing: keep-alives sent, answers, answers that were wrong.
#[derive(Debug, Default)]
struct Renewed {
    sent: u64,
    answered: u64,
    wrong: Vec<String>,
}

/// One client's `LeaseKeepAlive` stream through `endpoint` (a connection of its own): once a first
/// keep-alive is answered, says it is `ready` and sends a keep-alive of `id` every [`RENEW_EVERY`] while
/// renewing, then takes the answers due and reports them on
/// `renewed`; once revoked, asks every 100 ms until an answer has TTL ≤ 0: that answer's (ID, TTL).
async fn keep_alive_client(
    endpoint: String,
    id: i64,
    mut phase: tokio::sync::watch::Receiver<Phase>,
    ready: tokio::sync::mpsc::Sender<()>,
    renewed: tokio::sync::mpsc::Sender<Renewed>,
) -> (i64, i64) {
    let (tx, mut answers) = keep_alive_stream(endpoint, id, 1, None).await;
    let mut r = Renewed { sent: 1, ..Default::default() };
    let check = |a: &LeaseKeepAliveResponse, r: &mut Renewed| {
        r.answered += 1;
        if a.id != id || a.ttl <= 0 {
            r.wrong.push(format!("id {:x} ttl {}", a.id, a.ttl));
        }
    };
    let first = tokio::time::timeout(Duration::from_secs(10), answers.message()).await.expect("a first answer");
    check(&first.expect("an answer").expect("the stream goes on"), &mut r);
    ready.send(()).await.expect("ready");
    let mut tick = tokio::time::interval(RENEW_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                tx.send(LeaseIdRequest { id }).expect("open");
                r.sent += 1;
            }
            a = answers.message() => check(&a.expect("an answer").expect("the stream goes on"), &mut r),
            _ = phase.wait_for(|p| *p != Phase::Renew) => break,
        }
    }
    while r.answered < r.sent {
        let a = tokio::time::timeout(Duration::from_secs(10), answers.message()).await;
        let a = a.unwrap_or_else(|_| panic!("{} of {} keep-alives unanswered", r.sent - r.answered, r.sent));
        check(&a.expect("an answer").expect("the stream goes on"), &mut r);
    }
    renewed.send(r).await.expect("reported");
    let _ = phase.wait_for(|p| *p == Phase::Revoked).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "no answer with TTL <= 0 after the revoke");
        tx.send(LeaseIdRequest { id }).expect("open");
        match tokio::time::timeout(Duration::from_millis(100), answers.message()).await {
            Ok(a) => {
                let a = a.expect("an answer").expect("the stream goes on");
                if a.ttl <= 0 {
                    return (a.id, a.ttl);
                }
            }
            Err(_) => continue,
        }
    }
}

/// A `LeaseKeepAlive` stream through `endpoint` on a connection of its own, as the caller of `token`,
/// opened with `first` keep-alives of `id` (sent before the call: a server may answer the headers only
/// with its first message): its requests' sender and its answers.
async fn keep_alive_stream(
    endpoint: String,
    id: i64,
    first: usize,
    token: Option<&str>,
) -> (tokio::sync::mpsc::UnboundedSender<LeaseIdRequest>, tonic::Streaming<LeaseKeepAliveResponse>) {
    use tonic::codegen::http::uri::PathAndQuery;
    use tonic::codegen::tokio_stream::wrappers::UnboundedReceiverStream;
    let endpoint = tonic::transport::Endpoint::from_shared(endpoint).expect("endpoint");
    let mut grpc = tonic::client::Grpc::new(endpoint.connect().await.expect("connect"));
    grpc.ready().await.expect("ready");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..first {
        tx.send(LeaseIdRequest { id }).expect("open");
    }
    let codec = tonic_prost::ProstCodec::<LeaseIdRequest, LeaseKeepAliveResponse>::default();
    let path = PathAndQuery::from_static("/etcdserverpb.Lease/LeaseKeepAlive");
    let mut request = tonic::Request::new(UnboundedReceiverStream::new(rx));
    if let Some(t) = token {
        request.metadata_mut().insert("token", t.parse().expect("token metadata"));
    }
    let call = grpc.streaming(request, path, codec);
    let answers = tokio::time::timeout(Duration::from_secs(10), call).await.expect("the stream opens in time");
    (tx, answers.expect("the keep-alive stream opens").into_inner())
}

/// A client that sends 100 000 keep-alives of `id` at once through `endpoint` and reads no answer until
/// the lease is revoked: far more answers than the flow-control windows let through.
async fn silent_client(endpoint: String, id: i64, mut phase: tokio::sync::watch::Receiver<Phase>) {
    let _stream = keep_alive_stream(endpoint, id, 100_000, None).await;
    let _ = phase.wait_for(|p| *p == Phase::Revoked).await;
}

both_kinds! {
    /// Keep-alive coalescing (issue 15 item 3): twenty clients, each with its own connection, renew one
    /// lease through the proxy every 5 ms for 3 s. The member sees one LeaseKeepAlive stream and far
    /// fewer keep-alives than the clients sent: modkv's proxy sends a lease's keep-alive up at most once
    /// per round trip and per 100 ms (3 s → about 32); etcd's proxy renews through its client library
    /// every TTL/3 (6 s lease → about 2 to 3). Every client gets one answer per keep-alive, with the
    /// lease's ID and a positive TTL, whatever a client that stops reading does; after the revoke, an
    /// answer saying the lease is gone.
    fn keep_alives_share_one_upstream_stream(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let p = Proxy::start(kind, &s.endpoint(), &[]);
        let hex = granted_id(&p.ok(&["lease", "grant", "6"]));
        let id = i64::from_str_radix(&hex, 16).expect("hex lease id");
        let (started0, open0, received0) = keep_alive_counts(&s);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (phase_tx, phase) = tokio::sync::watch::channel(Phase::Renew);
        let (renewed_tx, mut renewed) = tokio::sync::mpsc::channel(20);
        let began = Instant::now();
        let silent = rt.spawn(silent_client(p.endpoint.clone(), id, phase.clone()));
        let (ready_tx, mut ready) = tokio::sync::mpsc::channel(20);
        let clients: Vec<_> = (0..20)
            .map(|_| {
                let client = keep_alive_client(p.endpoint.clone(), id, phase.clone(), ready_tx.clone(), renewed_tx.clone());
                rt.spawn(client)
            })
            .collect();
        rt.block_on(async {
            for _ in 0..clients.len() {
                tokio::time::timeout(Duration::from_secs(30), ready.recv()).await.expect("every client ready");
            }
        });
        std::thread::sleep(RENEW_FOR);
        phase_tx.send(Phase::Drain).unwrap();
        let reports: Vec<Renewed> = rt.block_on(async {
            let mut all = Vec::new();
            while all.len() < clients.len() {
                all.push(tokio::time::timeout(Duration::from_secs(30), renewed.recv()).await.unwrap().unwrap());
            }
            all
        });
        let (started, open, received) = keep_alive_counts(&s);
        let sent: u64 = reports.iter().map(|r| r.sent).sum();
        let upstream = received - received0;
        println!("{kind}: the clients sent {sent} keep-alives; the member received {upstream}");
        for r in &reports {
            assert!(r.wrong.is_empty(), "answers with a wrong ID or TTL: {:?}", r.wrong);
            assert_eq!(r.answered, r.sent);
            assert!(r.sent >= 100, "{r:?}");
        }
        assert_eq!((started - started0, open - open0), (1.0, 1.0), "one upstream stream for all the clients");
        // modkv's bound: its keep-alives of one lease go up at least 100 ms apart.
        let bound = (began.elapsed().as_millis() / 100) as f64 + 1.0;
        assert!((1.0..=bound).contains(&upstream), "{upstream} keep-alives upstream for {sent} sent, {bound} at most");
        assert!(upstream * 50.0 < sent as f64, "{upstream} keep-alives upstream for {sent} sent");

        assert_eq!(p.ok(&["lease", "revoke", &hex]), format!("lease {hex} revoked\n"));
        phase_tx.send(Phase::Revoked).unwrap();
        // modkv's proxy passes on the member's answer for a lease not found (TTL 0, as a client of the
        // member gets); etcd's proxy sees its client library's keep-alive end and answers with what
        // LeaseTimeToLive says of the lease (TTL -1).
        let gone = if kind == Kind::Etcd { -1 } else { 0 };
        for c in clients {
            assert_eq!(rt.block_on(c).unwrap(), (id, gone));
        }
        rt.block_on(silent).unwrap();
        drop(rt);
        if kind == Kind::Modkv {
            // The shared stream ends with its last client (etcd's proxy keeps its client library's open).
            poll(Duration::from_secs(10), "the upstream keep-alive stream to end", || {
                (keep_alive_counts(&s).1 == open0).then_some(())
            });
        }
    }

    /// Keep-alive streams are shared per caller: with auth on, two clients of root and two of alice (one
    /// token each) keep a lease alive through the proxy. modkv's proxy opens one upstream stream per
    /// token, carrying it (2); etcd's proxy renews every lease on its client library's one stream, which
    /// carries no caller's token (1). Every client gets the lease's answer.
    fn keep_alive_streams_are_shared_per_caller(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let p = Proxy::start(kind, &s.endpoint(), &[]);
        enable_auth(&p);
        // A short TTL: etcd's proxy answers a client that joins a lease already kept alive at its next
        // renewal (TTL/3), and sends no response headers before.
        let hex = granted_id(&p.ok(&["--user", "root:rootpw", "lease", "grant", "6"]));
        let id = i64::from_str_radix(&hex, 16).expect("hex lease id");
        let token = |name: &str, password: &str| {
            let req = AuthenticateRequest { name: name.into(), password: password.into() };
            let r: AuthenticateResponse =
                modkv_tests::grpc::unary_once(&p.endpoint, "/etcdserverpb.Auth/Authenticate", req).expect("authenticate");
            r.token
        };
        let (root, alice) = (token("root", "rootpw"), token("alice", "pw"));
        assert_ne!(root, alice);
        let (started0, open0, _) = keep_alive_counts(&s);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let _streams: Vec<_> = [&root, &root, &alice, &alice]
            .into_iter()
            .map(|t| {
                rt.block_on(async {
                    let (tx, mut answers) = keep_alive_stream(p.endpoint.clone(), id, 1, Some(t)).await;
                    let a = tokio::time::timeout(Duration::from_secs(10), answers.message()).await.expect("an answer");
                    let a = a.expect("an answer").expect("the stream goes on");
                    assert_eq!((a.id, a.ttl), (id, 6));
                    (tx, answers)
                })
            })
            .collect();
        let (started, open, _) = keep_alive_counts(&s);
        let upstream = if kind == Kind::Etcd { 1.0 } else { 2.0 };
        assert_eq!((started - started0, open - open0), (upstream, upstream));
    }

    /// A keep-alive stream through the proxy outlives the member it used: etcdctl's `lease keep-alive`
    /// keeps renewing across the kill of member 1 (the one modkv's proxy uses first), and 15 s later,
    /// past the lease's TTL of 10 s and a new leader's extension of it, the lease is alive.
    fn keep_alives_survive_their_member(kind) {
        let mut c = Cluster::start(kind, 3, &[]);
        let p = Proxy::start(kind, &c.endpoints(&[0, 1, 2]), &[]);
        let id = granted_id(&p.ok(&["lease", "grant", "10"]));
        let ka = CtlProc::spawn_at(&p.endpoint, &["lease", "keep-alive", &id]);
        let line = format!("lease {id} keepalived with TTL(10)\n");
        ka.wait_for("a first keep-alive", Duration::from_secs(15), |o| o.contains(&line));
        c.members[0].kill9();
        let before = ka.stdout().matches(&line).count();
        std::thread::sleep(Duration::from_secs(15));
        let after = ka.stdout().matches(&line).count();
        assert!(after >= before + 2, "{} keep-alives answered in the 15 s after the kill", after - before);
        let ttl = poll(Duration::from_secs(20), "lease timetolive through the proxy", || {
            let out = p.ctl(&["lease", "timetolive", &id]);
            out.success().then_some(out.stdout)
        });
        assert!(ttl.starts_with(&format!("lease {id} granted with TTL(10s), remaining(")), "{ttl}");
    }

    /// Watch coalescing as the member sees it (issue 15 item 8): fifty watchers of one key through the
    /// proxy raise the member's `etcd_debugging_mvcc_watcher_total` by a few at most (etcd's proxy, whose
    /// broadcasts stop taking watchers at 5, gives +1 to +6; modkv's shares one watch: +1); each watcher
    /// hears every put of the key, in order, with its revision.
    fn fifty_watchers_cost_the_member_a_few(kind) {
        use modkv_tests::watch::{WatchClient, WatchCreateRequest};
        let s = Server::start(kind, ServerOpts::new());
        let p = Proxy::start(kind, &s.endpoint(), &[]);
        let before = member_metric(&s, "etcd_debugging_mvcc_watcher_total", "");
        let mut watchers: Vec<WatchClient> = (0..50).map(|_| WatchClient::connect(&p.endpoint)).collect();
        for w in &mut watchers {
            w.create(WatchCreateRequest::key("hot"));
            let created = w.recv();
            assert!(created.created && !created.canceled, "{}", created.summary());
        }
        let grown = member_metric(&s, "etcd_debugging_mvcc_watcher_total", "") - before;
        println!("{kind}: fifty watchers through the proxy, {grown} more on the member");
        assert!((1.0..=6.0).contains(&grown), "the member's watchers grew by {grown}");
        if kind == Kind::Modkv {
            assert_eq!(grown, 1.0);
        }
        let mut revs = Vec::new();
        for (key, value) in [("hot", "1"), ("cold", "x"), ("hot", "2"), ("hot", "3")] {
            let out = p.ok(&["put", key, value, "-w", "json"]);
            let v: Value = serde_json::from_str(out.trim()).expect("json");
            if key == "hot" {
                revs.push((value.to_string(), v["header"]["revision"].as_i64().expect("revision")));
            }
        }
        for w in &mut watchers {
            let mut seen = Vec::new();
            while seen.len() < revs.len() {
                for e in &w.recv().events {
                    let kv = e.kv.as_ref().expect("kv");
                    assert_eq!(kv.key, b"hot");
                    seen.push((String::from_utf8_lossy(&kv.value).into_owned(), kv.mod_revision));
                }
            }
            assert_eq!(seen, revs);
        }
    }
}
/// A gRPC client that authenticates once and sends its token with every call, as etcd's Go client does
/// (etcdctl authenticates anew on each run, and the proxy's cache is per token).
struct Session {
    rt: tokio::runtime::Runtime,
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
    token: Option<String>,
}

type GrpcError = (tonic::Code, String);

impl Session {
    /// Connects to `endpoint`, as `user` (`name`, `password`) or anonymously.
    fn new(endpoint: &str, user: Option<(&str, &str)>) -> Session {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let channel = rt.block_on(async {
            tonic::transport::Endpoint::from_shared(endpoint.to_string())
                .expect("endpoint")
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(10))
                .connect()
                .await
                .expect("connect")
        });
        let mut s = Session { rt, grpc: tonic::client::Grpc::new(channel), token: None };
        if let Some((name, password)) = user {
            let req = AuthenticateRequest { name: name.into(), password: password.into() };
            let resp: AuthenticateResponse = s.call("/etcdserverpb.Auth/Authenticate", req).expect("authenticate");
            s.token = Some(resp.token);
        }
        s
    }

    fn call<Req, Resp>(&mut self, path: &'static str, req: Req) -> Result<Resp, GrpcError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut r = tonic::Request::new(req);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("token", t.parse().expect("ascii token"));
        }
        let grpc = &mut self.grpc;
        self.rt.block_on(async move {
            grpc.ready().await.map_err(|e| (tonic::Code::Unavailable, e.to_string()))?;
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            grpc.unary(r, tonic::codegen::http::uri::PathAndQuery::from_static(path), codec)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| (s.code(), s.message().to_string()))
        })
    }

    /// A serializable read of `key`: its value ("" if absent), or the error's code and message.
    fn get_s(&mut self, key: &str) -> Result<String, GrpcError> {
        let req = grpc::RangeRequest { serializable: true, ..grpc::RangeRequest::range(key, "") };
        let resp: grpc::RangeResponse = self.call("/etcdserverpb.KV/Range", req)?;
        Ok(resp.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned()).unwrap_or_default())
    }
}

/// The Range calls a member has handled (`grpc_server_handled_total`, every code).
fn member_ranges(endpoint: &str) -> u64 {
    let r = request(endpoint, "GET", "/metrics", b"");
    assert_eq!(r.status, 200);
    r.text()
        .lines()
        .filter(|l| l.starts_with("grpc_server_handled_total{") && l.contains("grpc_method=\"Range\""))
        .map(|l| l.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()).expect("a number") as u64)
        .sum()
}

both_kinds! {
    /// With auth on, a session's repeated serializable read is answered by the proxy alone: the member
    /// handles no Range for it (etcd's proxy caches every answer whatever the token; modkv's per token,
    /// under a watch opened with the caller's token).
    fn the_cache_answers_a_session_with_auth_on(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let p = Proxy::start(kind, &s.endpoint(), &[]);
        enable_auth(&p);
        assert_eq!(p.ok(&["--user", "alice:pw", "put", "a/1", "x"]), "OK\n");
        let mut alice = Session::new(&p.endpoint, Some(("alice", "pw")));
        poll(Duration::from_secs(10), "alice's read answered from the cache", || {
            assert_eq!(alice.get_s("a/1"), Ok("x".into()));
            let before = member_ranges(&s.endpoint());
            assert_eq!(alice.get_s("a/1"), Ok("x".into()));
            (member_ranges(&s.endpoint()) == before).then_some(())
        });
        let before = member_ranges(&s.endpoint());
        for _ in 0..3 {
            assert_eq!(alice.get_s("a/1"), Ok("x".into()));
        }
        assert_eq!(member_ranges(&s.endpoint()), before, "three more reads, none reached the member");
        // A linearizable read is never cached.
        let linear: grpc::RangeResponse = alice.call("/etcdserverpb.KV/Range", grpc::RangeRequest::range("a/1", "")).unwrap();
        assert_eq!(linear.kvs.len(), 1);
        assert_eq!(member_ranges(&s.endpoint()), before + 1);
    }
}

/// modkv's cache with auth on, auth turned on and off behind the proxy's back (modkv only: etcd's proxy
/// gives any caller a cached answer, etcd #22065, and sees only the writes made through it): anonymous
/// reads cached until auth is enabled on a member, then refused within an entry's lifetime; alice's reads
/// cached, never bob's (no role) nor an anonymous caller's; alice's write through another member seen on
/// her next read; her role revoked on a member honoured within an entry's lifetime; auth disabled on a
/// member: anonymous reads cached again.
#[test]
fn the_cache_with_auth_on_keeps_users_apart_and_follows_the_cluster() {
    let c = Cluster::start(Kind::Modkv, 3, &[]);
    let p = Proxy::start(Kind::Modkv, &c.endpoints(&[0]), &[]);
    let member = |i: usize, args: &[&str]| etcdctl_at(&c.endpoints(&[i]), args, None).ok().to_string();
    let hits = || proxy_counter(&p, "etcd_grpc_proxy_cache_hits_total");
    // Cached until the next step proves it: a read that hits.
    let cached = |what: &str, read: &mut dyn FnMut() -> Result<String, GrpcError>, value: &str| {
        poll(Duration::from_secs(10), what, || {
            assert_eq!(read(), Ok(value.to_string()), "{what}");
            let before = hits();
            assert_eq!(read(), Ok(value.to_string()), "{what}");
            (hits() > before).then_some(())
        });
    };
    let within = |what: &str,
                  bound: Duration,
                  read: &mut dyn FnMut() -> Result<String, GrpcError>,
                  expected: Result<String, GrpcError>| {
        let t = Instant::now();
        poll(bound, what, || (read() == expected).then_some(()));
        println!("{what}: {:?}", t.elapsed());
    };
    let user_empty = Err((tonic::Code::InvalidArgument, "etcdserver: user name is empty".to_string()));
    let denied = Err((tonic::Code::PermissionDenied, "etcdserver: permission denied".to_string()));
    // Entries live 5 s (server/src/proxy/cache.rs ENTRY_TTL); a poll's reads take a little more.
    let ttl = Duration::from_secs(5) + Duration::from_secs(3);

    assert_eq!(member(1, &["put", "a/1", "x"]), "OK\n");
    let mut anonymous = Session::new(&p.endpoint, None);
    cached("an anonymous read cached (auth off)", &mut || anonymous.get_s("a/1"), "x");
    // Auth enabled on a member: the proxy's cached anonymous answer is refused within an entry's life.
    assert_eq!(member(1, &["user", "add", "root:rootpw"]), "User root created\n");
    assert_eq!(member(1, &["role", "add", "r"]), "Role r created\n");
    assert_eq!(member(1, &["role", "grant-permission", "r", "readwrite", "a/", "--prefix"]), "Role r updated\n");
    assert_eq!(member(1, &["user", "add", "alice:pw"]), "User alice created\n");
    assert_eq!(member(1, &["user", "grant-role", "alice", "r"]), "Role r is granted to user alice\n");
    assert_eq!(member(1, &["user", "add", "bob:pw"]), "User bob created\n");
    assert_eq!(member(1, &["auth", "enable"]), "Authentication Enabled\n");
    within(
        "anonymous reads refused after auth was enabled on a member",
        ttl,
        &mut || anonymous.get_s("a/1"),
        user_empty.clone(),
    );

    // Alice's reads are cached; bob (no role) and anonymous callers get the member's refusal, every time.
    let mut alice = Session::new(&p.endpoint, Some(("alice", "pw")));
    let mut bob = Session::new(&p.endpoint, Some(("bob", "pw")));
    cached("alice's read cached (auth on)", &mut || alice.get_s("a/1"), "x");
    for _ in 0..3 {
        assert_eq!(bob.get_s("a/1"), denied, "bob never gets alice's cached answer");
        assert_eq!(anonymous.get_s("a/1"), user_empty, "nor does an anonymous caller");
        assert_eq!(alice.get_s("a/1"), Ok("x".into()));
    }
    // One upstream watch per range read (the watch over every key is refused with auth on).
    cached("alice's read of another key cached", &mut || alice.get_s("a/2"), "");
    let m = proxy_metrics(&p);
    assert!(m.contains("\nmodkv_proxy_cache_watches 2\n"), "two watches, one per range alice read: {m}");
    assert!(m.contains("\netcd_grpc_proxy_cache_keys_total 2\n"), "two entries, alice's: {m}");

    // Alice's write through another member: her next reads see it, well within an entry's life.
    assert_eq!(member(2, &["--user", "alice:pw", "put", "a/1", "y"]), "OK\n");
    within(
        "alice's cached read invalidated by her write on another member",
        Duration::from_millis(2500),
        &mut || alice.get_s("a/1"),
        Ok("y".into()),
    );
    cached("alice's new read cached", &mut || alice.get_s("a/1"), "y");

    // Her role revoked on a member (not a key-space change: no watch sees it): refused within an entry's life.
    assert_eq!(
        member(1, &["--user", "root:rootpw", "user", "revoke-role", "alice", "r"]),
        "Role r is revoked from user alice\n"
    );
    within(
        "alice's cached reads refused after her role was revoked on a member",
        ttl,
        &mut || alice.get_s("a/1"),
        denied.clone(),
    );
    assert_eq!(alice.get_s("a/1"), denied);

    // Auth disabled on a member: found by the proxy, anonymous reads cached again.
    assert_eq!(member(1, &["--user", "root:rootpw", "auth", "disable"]), "Authentication Disabled\n");
    cached("an anonymous read cached again after auth was disabled on a member", &mut || anonymous.get_s("a/1"), "y");
}

//! Plugins at the edge (issue 15 item 7; modkv only: etcd has no plugins): `--plugin-dir` on a modkv
//! proxy in front of a cluster, as a team puts policy in front of a cluster it does not own. In front of
//! the real etcd 3.4: a route answers through the proxy, the pre-put hook rejects, rewrites (what etcd
//! stores) and checks a txn's puts before they are forwarded, the hook sees the client's keys under
//! `--namespace`, a plugin's KV imports read and write through the proxy, a trapping plugin gives a
//! clean error and the proxy keeps serving, the plugin metrics are on the proxy's /metrics. In front of
//! modkv members (`modkv --proxy on`): a refusal is etcdctl's output exactly as a member with the same
//! plugins gives it, and with auth on the KV imports carry the caller's token (a bad one: 401 before
//! the plugin runs).

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use modkv_tests::cluster::{poll, Cluster};
use modkv_tests::ctl::assert_ctl_error;
use modkv_tests::http::{post_with_headers, request, request_with_headers, HttpResponse};
use modkv_tests::proxy::grpc_proxy_args;
use modkv_tests::test_plugins::{install, install_with, GOOD_TOML};
use modkv_tests::*;

/// A modkv proxy process, killed when dropped (its log printed if the test failed).
struct Proxy {
    child: Child,
    endpoint: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// `modkv grpc-proxy start --endpoints=<endpoints> <extra>`.
    fn grpc_proxy(endpoints: &str, extra: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let args = grpc_proxy_args(endpoints, port, dir.path(), extra);
        Proxy::spawn(args, port, dir)
    }

    /// `modkv --proxy=<mode> --initial-cluster=<initial_cluster> <extra>`.
    fn member_flags(mode: &str, initial_cluster: &str, extra: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut args = vec![
            format!("--proxy={mode}"),
            format!("--initial-cluster={initial_cluster}"),
            format!("--listen-client-urls=http://127.0.0.1:{port}"),
            format!("--data-dir={}", dir.path().join("proxy").display()),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        Proxy::spawn(args, port, dir)
    }

    fn spawn(args: Vec<String>, port: u16, dir: tempfile::TempDir) -> Proxy {
        let log = dir.path().join("proxy.log");
        let out = std::fs::File::create(&log).expect("log file");
        let mut cmd = Kind::Modkv.command();
        cmd.args(args).stdin(Stdio::null()).stdout(out.try_clone().expect("log file")).stderr(out);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let p = Proxy { child, endpoint: format!("http://127.0.0.1:{port}"), log, _dir: dir };
        poll(Duration::from_secs(20), "the proxy to answer", || p.ctl(&["get", "ready"]).success().then_some(()));
        p
    }

    fn ctl(&self, args: &[&str]) -> CtlOutput {
        etcdctl_at(&self.endpoint, args, None)
    }

    fn txn(&self, script: &str) -> CtlOutput {
        etcdctl_at(&self.endpoint, &["txn"], Some(script.as_bytes()))
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(out.success(), "etcdctl {args:?} through the proxy: {out:?}");
        out.stdout
    }

    fn get(&self, path: &str) -> HttpResponse {
        request(&self.endpoint, "GET", path, b"")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- proxy log ---\n{}", self.log());
        }
    }
}

#[track_caller]
fn assert_response(r: &HttpResponse, status: u16, body: &str) {
    assert_eq!((r.status, r.text().as_str()), (status, body), "{r:?}");
}

/// What of etcdctl's output a user sees of an error: exit status, stdout and the error lines (the client
/// library's retry log lines carry timestamps).
fn shown(out: &CtlOutput) -> (i32, String, Vec<String>) {
    (out.status, out.stdout.clone(), out.error_lines())
}

/// `good` (routes under /good, a JSON check under guard/, upper-casing under up/, host KV calls,
/// metrics) and `crash` (panics in its route and its hook on crash/, fail-closed).
fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    install_with(dir.path(), "good", "good", GOOD_TOML);
    install(dir.path(), "crash", "crash");
    dir
}

fn dir_flag(dir: &Path) -> String {
    format!("--plugin-dir={}", dir.display())
}

const NOT_JSON: &str = "etcdserver: plugin good rejected the put: value is not valid JSON";
const NOT_JSON_TXN: &str = "etcdserver: plugin good rejected the put: value is not valid JSON (in a txn)";

/// Policy in front of the real etcd 3.4: every plugin hook point through `modkv grpc-proxy start`.
#[test]
#[cfg_attr(not(feature = "modkv"), ignore = "modkv variants are off: feature `modkv` of modkv-tests is disabled")]
fn plugins_in_front_of_etcd() {
    let etcd = Server::start(Kind::Etcd, ServerOpts::new());
    let dir = plugin_dir();
    let p = Proxy::grpc_proxy(&etcd.endpoint(), &[&dir_flag(dir.path())]);
    let direct = |args: &[&str]| etcd.ctl_ok(args);

    // A route, on the proxy's port, with exact status and body; other paths are Go's 404.
    let r = request(&p.endpoint, "POST", "/good/hello?x=1", b"payload");
    assert_response(
        &r,
        200,
        r#"{"plugin":"good","version":"1","greeting":"hello from config","method":"POST","query":"x=1","body":"payload"}"#,
    );
    assert_response(&p.get("/good/nope"), 404, r#"{"error":"no such page"}"#);
    assert_response(&p.get("/goodness"), 404, "404 page not found\n");
    assert_response(&p.get("/health"), 200, r#"{"health":"true"}"#);

    // The pre-put hook before forwarding: a refusal reaches etcdctl with the member's code and message,
    // and nothing reaches etcd; an allowed put does.
    let rev = header_rev(&etcd.ctl_json(&["get", "probe"]));
    assert_ctl_error(&p.ctl(&["put", "guard/a", "not json"]), "InvalidArgument", NOT_JSON);
    assert_eq!(p.ok(&["put", "guard/b", r#"{"a":1}"#]), "OK\n");
    assert_eq!(direct(&["get", "guard/", "--prefix"]), "guard/b\n{\"a\":1}\n");
    assert_eq!(header_rev(&etcd.ctl_json(&["get", "probe"])), rev + 1, "only the allowed put reached etcd");
    // A rewrite is what etcd stores.
    assert_eq!(p.ok(&["put", "up/x", "hello"]), "OK\n");
    assert_eq!(direct(&["get", "up/x", "--print-value-only"]), "HELLO\n");
    // A txn's puts are hooked too, in either branch; one refusal fails the whole txn.
    assert_ctl_error(&p.txn("\nput guard/t1 {\"ok\":1}\nput guard/t2 bad\n\n\n"), "InvalidArgument", NOT_JSON_TXN);
    assert_ctl_error(
        &p.txn("mod(\"guard/b\") > \"0\"\n\nput guard/t1 {}\n\nput guard/t2 bad\n\n"),
        "InvalidArgument",
        NOT_JSON_TXN,
    );
    assert_eq!(direct(&["get", "guard/t", "--prefix"]), "");
    let out = p.txn("value(\"up/x\") = \"HELLO\"\n\nput up/y abc\nput guard/t3 {}\n\nput up/z no\n\n");
    assert_eq!(out.ok(), "SUCCESS\n\nOK\n\nOK\n");
    assert_eq!(direct(&["get", "up/y", "--print-value-only"]), "ABC\n");
    assert_eq!(direct(&["get", "up/z"]), "", "the failure branch did not run");

    // The plugin's KV imports read and write etcd through the proxy, within its grants; its own put
    // skips its own hook (this value would be refused), as on a member.
    let r = p.get("/good/put?k=good/a&v=xyz");
    assert_eq!(r.status, 200, "{r:?}");
    let rev = r.json()["revision"].as_i64().unwrap();
    assert_eq!(direct(&["get", "good/a", "--print-value-only"]), "xyz\n");
    assert_eq!(p.get("/good/get?k=good/a").json(), json!({"revision": rev, "count": 1, "value": "xyz"}));
    assert_response(
        &p.get("/good/get?k=secret"),
        403,
        r#"{"error":"permission denied: plugin good may not read key \"secret\"; grant it in good.toml: [grants] read = [\"good/\", \"secret\"]"}"#,
    );
    assert_eq!(p.get("/good/put?k=guard/raw&v=notjson").status, 200);
    assert_eq!(direct(&["get", "guard/raw", "--print-value-only"]), "notjson\n");
    assert_eq!(p.get("/good/delete?k=good/a").json(), json!({"deleted": 1}));
    assert_eq!(direct(&["get", "good/a"]), "");

    // A trapping plugin: a clean 500 naming it, a fail-closed refusal of the put; the proxy serves on.
    let r = p.get("/crash");
    let text = r.text();
    assert!(
        r.status == 500
            && text.starts_with("plugin crash failed: trapped: wasm `unreachable` instruction executed (panicked at ")
            && text.ends_with(": boom at /crash)\n"),
        "{r:?}"
    );
    let out = p.ctl(&["put", "crash/k", "v"]);
    let prefix = "Error: rpc error: code = FailedPrecondition desc = etcdserver: plugin crash failed, the put is \
                  refused (fail-closed): trapped: wasm `unreachable` instruction executed (panicked at ";
    let lines = out.error_lines();
    assert!(
        out.status == 1 && lines.len() == 1 && lines[0].starts_with(prefix) && lines[0].ends_with(": hook boom)"),
        "{out:#?}"
    );
    assert_eq!(direct(&["get", "crash/k"]), "");
    assert_eq!(p.get("/good/hello").status, 200);
    assert_eq!(p.ok(&["put", "alive", "yes"]), "OK\n");
    assert_eq!(p.ok(&["get", "alive", "--print-value-only"]), "yes\n");

    // The proxy's /metrics: the plugins' own metrics and the host's counters, beside etcd's passed on.
    let m = p.get("/metrics").text();
    for needle in [
        "# TYPE modkv_plugin_good_requests_total counter\n",
        "modkv_plugin_good_requests_total{path=\"/good/hello\"} 2.0\n",
        "modkv_plugin_good_requests_total{path=\"/good/put\"} 2.0\n",
        "\nmodkv_plugin_good_last_status 200.0\n",
        "modkv_plugin_calls_total{plugin=\"crash\",hook=\"http\"} 1\n",
        "modkv_plugin_traps_total{plugin=\"crash\",hook=\"http\"} 1\n",
        "modkv_plugin_traps_total{plugin=\"crash\",hook=\"pre_put\"} 1\n",
        "modkv_plugin_call_duration_seconds_count{plugin=\"good\",hook=\"pre_put\"} ",
        "\netcd_server_has_leader 1\n",
    ] {
        assert!(m.contains(needle), "the proxy's /metrics lacks {needle:?}:\n{m}");
    }
    // Each family once (a scraper refuses a second HELP of one name).
    let mut helps: Vec<&str> = m.lines().filter_map(|l| l.strip_prefix("# HELP ")?.split(' ').next()).collect();
    let all = helps.len();
    helps.sort_unstable();
    helps.dedup();
    assert_eq!(helps.len(), all, "a family twice in the proxy's /metrics:\n{m}");
    assert!(!m.contains("modkv_plugin_traps_total{plugin=\"good\""), "{m}");

    // Under --namespace the hooks and the KV imports see the client's keys, as a team writes them; etcd
    // stores them under the prefix.
    let ns = Proxy::grpc_proxy(&etcd.endpoint(), &[&dir_flag(dir.path()), "--namespace=team/"]);
    assert_eq!(ns.ok(&["put", "up/n", "shout"]), "OK\n");
    assert_eq!(direct(&["get", "team/up/n", "--print-value-only"]), "SHOUT\n");
    assert_ctl_error(&ns.ctl(&["put", "guard/n", "bad"]), "InvalidArgument", NOT_JSON);
    assert_eq!(direct(&["get", "team/guard/n"]), "");
    assert_eq!(ns.get("/good/put?k=good/n&v=1").status, 200);
    assert_eq!(direct(&["get", "team/good/n", "--print-value-only"]), "1\n");
    assert_eq!(ns.get("/good/get?k=good/n").json()["value"], "1");
    assert_eq!(direct(&["get", "good/n"]), "", "nothing outside the namespace");

    // Hot reload, as on a member: a plugin removed from the directory stops serving and hooking.
    std::fs::remove_file(dir.path().join("crash.wasm")).unwrap();
    poll(Duration::from_secs(10), "crash unloaded", || (p.get("/crash").status == 404).then_some(()));
    assert_response(&p.get("/crash"), 404, "404 page not found\n");
    assert_eq!(p.ok(&["put", "crash/k", "v"]), "OK\n");
    assert_eq!(direct(&["get", "crash/k", "--print-value-only"]), "v\n");
}

/// modkv members behind `modkv --proxy on --plugin-dir`: refusals are etcdctl's output exactly as a
/// member running the same plugins gives them; with auth on, a route's bad token is refused before the
/// plugin runs and the KV imports carry the caller's token (the proxy holds no credentials).
#[test]
#[cfg_attr(not(feature = "modkv"), ignore = "modkv variants are off: feature `modkv` of modkv-tests is disabled")]
fn plugins_in_front_of_modkv_members() {
    let c = Cluster::start(Kind::Modkv, 3, &[]);
    let initial: Vec<String> =
        c.members().iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect();
    let dir = plugin_dir();
    let p = Proxy::member_flags("on", &initial.join(","), &[&dir_flag(dir.path())]);
    let member = Server::start(Kind::Modkv, ServerOpts::new().arg(dir_flag(dir.path())));
    let direct = |args: &[&str]| etcdctl_at(&c.endpoints(&[1]), args, None).ok().to_string();

    // The same refusals, byte for byte, through the proxy as from a member with the plugins.
    let bad_put = ["put", "guard/a", "not json"];
    assert_ctl_error(&p.ctl(&bad_put), "InvalidArgument", NOT_JSON);
    assert_eq!(shown(&p.ctl(&bad_put)), shown(&member.etcdctl(&bad_put)));
    let bad_txn = "\nput up/t ok\nput guard/t bad\n\n\n";
    assert_ctl_error(&p.txn(bad_txn), "InvalidArgument", NOT_JSON_TXN);
    assert_eq!(shown(&p.txn(bad_txn)), shown(&member.etcdctl_stdin(&["txn"], bad_txn.as_bytes())));
    let crash = ["put", "crash/k", "v"];
    assert_eq!(shown(&p.ctl(&crash)), shown(&member.etcdctl(&crash)));
    assert_eq!(p.ctl(&crash).status, 1);
    assert_eq!(direct(&["get", "", "--prefix", "--keys-only"]), "", "nothing refused was written");
    // A rewrite, read from a member directly.
    assert_eq!(p.ok(&["put", "up/x", "hello"]), "OK\n");
    assert_eq!(direct(&["get", "up/x", "--print-value-only"]), "HELLO\n");
    // A readonly proxy refuses a write as readonly, whatever a hook would say of it; its routes serve.
    let ro = Proxy::member_flags("readonly", &initial.join(","), &[&dir_flag(dir.path())]);
    let readonly = "proxy: read-only proxy (--proxy readonly): write requests are not implemented";
    for args in [&bad_put[..], &["put", "up/r", "x"]] {
        let out = ro.ctl(args);
        assert_eq!(
            out.stderr.lines().last(),
            Some(format!("Error: rpc error: code = Unimplemented desc = {readonly}").as_str()),
            "{out:?}"
        );
    }
    assert_eq!(ro.get("/good/hello").status, 200);
    drop(ro);

    // Auth on (through the proxy): alice may read and write good/.
    for (args, out) in [
        (vec!["user", "add", "root:rootpw"], "User root created\n"),
        (vec!["role", "add", "r"], "Role r created\n"),
        (vec!["role", "grant-permission", "r", "readwrite", "good/", "--prefix"], "Role r updated\n"),
        (vec!["user", "add", "alice:pw"], "User alice created\n"),
        (vec!["user", "grant-role", "alice", "r"], "Role r is granted to user alice\n"),
        (vec!["auth", "enable"], "Authentication Enabled\n"),
    ] {
        assert_eq!(p.ok(&args), out, "{args:?}");
    }
    let r = post_with_headers(&p.endpoint, "/v3/auth/authenticate", r#"{"name":"alice","password":"pw"}"#, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let alice = r.json()["token"].as_str().unwrap().to_string();
    let as_alice = |path: &str| request_with_headers(&p.endpoint, "GET", path, b"", &[("Authorization", &alice)]);

    // A token the cluster does not know: 401 as the gateway answers it, and the plugin is not called.
    let calls = |p: &Proxy| {
        let m = p.get("/metrics").text();
        let line = m.lines().find(|l| l.starts_with("modkv_plugin_calls_total{plugin=\"good\",hook=\"http\"} "));
        line.map_or(0, |l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
    };
    let before = calls(&p);
    let r = request_with_headers(&p.endpoint, "GET", "/good/hello", b"", &[("Authorization", "garbage")]);
    assert_response(
        &r,
        401,
        r#"{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}"#,
    );
    assert_eq!(calls(&p), before, "the plugin was not called");
    // The plugin never sees the credential.
    let headers = as_alice("/good/headers").json();
    assert!(!headers["headers"].as_array().unwrap().iter().any(|h| h == "authorization"), "{headers}");

    // The KV imports carry the caller's token: alice's within her permissions work; without a token
    // the cluster refuses them.
    let r = as_alice("/good/put?k=good/b&v=1");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        etcdctl_at(&c.endpoints(&[2]), &["--user=alice:pw", "get", "good/b", "--print-value-only"], None).ok(),
        "1\n"
    );
    assert_eq!(as_alice("/good/get?k=good/b").json()["value"], "1");
    assert_response(&p.get("/good/put?k=good/c&v=1"), 403, r#"{"error":"etcdserver: user name is empty"}"#);
    assert_eq!(as_alice("/good/as-caller?k=good/b").json()["keys"], json!(["good/b"]));
    assert_eq!(p.get("/good/as-caller?k=good/b").json()["err"], "etcdserver: user name is empty");
    // Her puts are hooked before the cluster checks them.
    let ctl_alice = |args: &[&str]| {
        let mut all = vec!["--user=alice:pw"];
        all.extend_from_slice(args);
        p.ctl(&all)
    };
    assert_ctl_error(&ctl_alice(&["put", "guard/x", "bad"]), "InvalidArgument", NOT_JSON);
    assert_eq!(ctl_alice(&["put", "good/d", "v"]).ok(), "OK\n");
}

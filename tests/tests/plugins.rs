//! WebAssembly plugins (modkv only): routes on the client port, the pre-put hook through etcdctl (plain
//! put and txn: reject, rewrite, fail-open / fail-closed on a trapping hook), host KV calls and their
//! grants, plugin metrics in /metrics, hostile plugins (infinite loop, memory growth past the cap, panic,
//! huge response, unknown import) and malformed files, and hot reload under load.
//!
//! The test plugins are small guest crates in `tests/plugins/` (their own workspace), built once per
//! test binary with `cargo build --release --target wasm32-wasip2` into `$CARGO_TARGET_DIR/test-plugins`
//! (`modkv_tests::test_plugins`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use modkv_tests::ctl::assert_ctl_error;
use modkv_tests::http::{request, HttpResponse};
use modkv_tests::test_plugins::{install, install_with, write_atomic, GOOD_TOML, HOG_TOML, SPIN_TOML};
use modkv_tests::*;

/// `toml` with `[config] name = "<name>"` added: the test plugins `good` and `crash` take their manifest
/// name from it, so one component can be installed under several names (a plugin's file must be named
/// after its manifest's name).
fn named(name: &str, toml: &str) -> String {
    let line = format!("name = \"{name}\"\n");
    match toml.find("[config]\n") {
        Some(i) => format!("{}[config]\n{line}{}", &toml[..i], &toml[i + "[config]\n".len()..]),
        None => format!("{toml}\n[config]\n{line}"),
    }
}

fn start(dir: &Path) -> Server {
    Server::start(Kind::Modkv, ServerOpts::new().args(["--plugin-dir", dir.to_str().unwrap()]))
}

fn get(s: &Server, path: &str) -> HttpResponse {
    request(&s.endpoint(), "GET", path, b"")
}

#[track_caller]
fn assert_response(r: &HttpResponse, status: u16, body: &str) {
    assert_eq!((r.status, r.text().as_str()), (status, body), "{r:?}");
}

/// `good` still answers and etcdctl still reads and writes: the server is unharmed.
#[track_caller]
fn assert_serving(s: &Server) {
    assert_eq!(get(s, "/good/hello").status, 200);
    assert_eq!(s.etcdctl(&["put", "alive", "yes"]).ok(), "OK\n");
    assert_eq!(s.etcdctl(&["get", "alive", "--print-value-only"]).ok(), "yes\n");
}

/// Waits (up to `limit`) until `f` holds; returns how long it took.
#[track_caller]
fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// One server with every kind of plugin: what works, what is hostile, what does not load.
fn hostile_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    install_with(d, "good", "good", GOOD_TOML);
    install_with(d, "spin", "spin", SPIN_TOML);
    install_with(d, "hog", "hog", HOG_TOML);
    // The same panicking component twice, fail-closed and fail-open, each on its own part of what the
    // code declares (`/crash`, `crash/`): a TOML narrows the routes and prefixes, never widens them.
    install(d, "crash", "crash-closed");
    std::fs::write(d.join("crash-closed.toml"), named("crash-closed", "hooked-prefixes = [\"crash/closed/\"]\n"))
        .unwrap();
    install(d, "crash", "crash-open");
    std::fs::write(
        d.join("crash-open.toml"),
        named(
            "crash-open",
            "routes = [\"/crash/open\"]\nhooked-prefixes = [\"crash/open/\"]\nfailure-mode = \"fail-open\"\n",
        ),
    )
    .unwrap();
    // Refused: a file not named after its manifest's name, and a second file of one name ("-" = "_").
    install(d, "good", "misnamed");
    install(d, "crash", "crash_open");
    install(d, "huge", "huge");
    install(d, "alien", "alien");
    // Refused: a TOML that would widen what the code declares.
    install(d, "crash", "wide");
    std::fs::write(d.join("wide.toml"), named("wide", "routes = [\"/crash\", \"/elsewhere\"]\n")).unwrap();
    // Malformed: not WebAssembly at all, and a good component with a broken settings file.
    std::fs::write(d.join("broken.wasm"), b"this is not a wasm component\n").unwrap();
    install(d, "good", "badconf");
    std::fs::write(d.join("badconf.toml"), "[limits\ntime-ms = 'x'\n").unwrap();
    dir
}

#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn routes_hooks_metrics_and_hostile_plugins() {
    let dir = hostile_dir();
    let s = start(dir.path());
    let ep = s.endpoint();
    let log = s.log();

    // Load errors name the file and the reason; everything else loaded.
    for needle in [
        "alien.wasm: failed to load: cannot link it: component imports instance `test:alien/evil`, but a matching implementation was not found in the linker",
        "broken.wasm: failed to load: not a loadable WebAssembly component: failed to parse WebAssembly module",
        "badconf.wasm: failed to load: ",
        "badconf.toml: TOML parse error at line 1, column 8",
        "misnamed.wasm: failed to load: its manifest names it \"good\", but the file is misnamed.wasm; a plugin is known by its manifest's name and its files are <name>.wasm and <name>.toml (\"-\" and \"_\" alike): rename it good.wasm",
        "wide.wasm: failed to load: wide.toml: route \"/elsewhere\" is not one the plugin serves: its code declares \"/crash\"; the TOML may only narrow them (a route at or under one of these)",
        "crash_open.wasm: not loaded: crash-open.wasm has the same name (\"-\" and \"_\" in a plugin's name are the same); remove one of them",
        "plugins (startup): 6 loaded plugins=[\"crash-closed\", \"crash-open\", \"good\", \"hog\", \"huge\", \"spin\"]",
    ] {
        assert!(log.contains(needle), "log lacks {needle:?}:\n{log}");
    }

    // Routes next to the built-in endpoints; the plugin's config reaches it.
    let r = request(&ep, "POST", "/good/hello?x=1", b"payload");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"plugin": "good", "version": "1", "greeting": "hello from config", "method": "POST", "query": "x=1", "body": "payload"})
    );
    assert_response(&get(&s, "/good/nope"), 404, r#"{"error":"no such page"}"#);
    assert_response(&get(&s, "/goodness"), 404, "404 page not found\n");
    assert_response(&get(&s, "/health"), 200, r#"{"health":"true"}"#);

    // Host KV calls, within the grants.
    let r = get(&s, "/good/put?k=good/a&v=xyz");
    assert_eq!(r.status, 200, "{r:?}");
    let rev = r.json()["revision"].as_i64().unwrap();
    assert_eq!(s.etcdctl(&["get", "good/a", "--print-value-only"]).ok(), "xyz\n");
    assert_eq!(get(&s, "/good/get?k=good/a").json(), json!({"revision": rev, "count": 1, "value": "xyz"}));
    assert_response(
        &get(&s, "/good/get?k=secret"),
        403,
        r#"{"error":"permission denied: plugin good may not read key \"secret\"; grant it in good.toml: [grants] read = [\"good/\", \"secret\"]"}"#,
    );
    assert_response(
        &get(&s, "/good/put?k=secret&v=1"),
        403,
        r#"{"error":"permission denied: plugin good may not write key \"secret\"; grant it in good.toml: [grants] write = [\"good/\", \"guard/\", \"secret\"]"}"#,
    );
    // An update of a metric the manifest does not define is ignored, and warned about once per name.
    for _ in 0..3 {
        assert_response(&get(&s, "/good/typo"), 200, "{}");
    }
    let warning = "metric update ignored: no metric \"request_total\" in the manifest (its manifest defines: \
                   requests, value_bytes, last_status); said once per metric name";
    wait_until(Duration::from_secs(5), "the metric warning", || s.log().contains(warning));
    assert_eq!(s.log().matches(warning).count(), 1, "{}", s.log());

    // A plugin's own writes do not go through its own hook (this value would be rejected).
    assert_eq!(get(&s, "/good/put?k=guard/raw&v=notjson").status, 200);
    assert_eq!(s.etcdctl(&["get", "guard/raw", "--print-value-only"]).ok(), "notjson\n");
    assert_eq!(get(&s, "/good/delete?k=good/a").json(), json!({"deleted": 1}));

    // Hostile routes: each a clean 500 naming the plugin; everyone else keeps being served.
    let started = Instant::now();
    assert_response(&get(&s, "/spin"), 500, "plugin spin failed: exceeded its time limit of 200 ms\n");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_serving(&s);
    assert_response(&get(&s, "/hog"), 500, "plugin hog failed: exceeded its memory limit of 16777216 bytes\n");
    assert_serving(&s);
    let r = get(&s, "/crash");
    assert_eq!(r.status, 500, "{r:?}");
    let text = r.text();
    assert!(
        text.starts_with("plugin crash-closed failed: trapped: wasm `unreachable` instruction executed (panicked at ")
            && text.ends_with(": boom at /crash)\n"),
        "{text}"
    );
    assert_eq!(get(&s, "/crash/open").status, 500);
    assert_serving(&s);
    assert_response(
        &get(&s, "/huge"),
        500,
        "plugin huge failed: response body of 25165824 bytes exceeds the limit of 16777216 bytes\n",
    );
    let r = get(&s, "/huge/small");
    assert_eq!((r.status, r.body.len()), (200, 1 << 20));
    assert_eq!(get(&s, "/alien").status, 404);
    assert_serving(&s);

    // A spinning call does not hold up the others.
    let spinning = {
        let ep = ep.clone();
        thread::spawn(move || (0..3).map(|_| request(&ep, "GET", "/spin", b"").status).collect::<Vec<_>>())
    };
    for _ in 0..20 {
        assert_eq!(get(&s, "/good/hello").status, 200);
    }
    assert_eq!(spinning.join().unwrap(), vec![500, 500, 500]);

    // Pre-put: rejection reaches etcdctl with the plugin's name and text; nothing is written.
    assert_ctl_error(
        &s.etcdctl(&["put", "guard/a", "not json"]),
        "InvalidArgument",
        "etcdserver: plugin good rejected the put: value is not valid JSON",
    );
    assert_eq!(s.etcdctl(&["get", "guard/a"]).ok(), "");
    assert_eq!(s.etcdctl(&["put", "guard/b", r#"{"a":1}"#]).ok(), "OK\n");
    assert_eq!(s.etcdctl(&["get", "guard/b", "--print-value-only"]).ok(), "{\"a\":1}\n");
    // Inside a txn: one bad put fails the whole txn.
    let rev = s.revision();
    assert_ctl_error(
        &s.etcdctl_stdin(&["txn"], b"\nput guard/t1 {\"ok\":1}\nput guard/t2 bad\n\n\n"),
        "InvalidArgument",
        "etcdserver: plugin good rejected the put: value is not valid JSON (in a txn)",
    );
    // ... in either branch (which one runs is only known at apply).
    assert_ctl_error(
        &s.etcdctl_stdin(&["txn"], b"mod(\"guard/b\") > \"0\"\n\nput guard/t1 {}\n\nput guard/t2 bad\n\n"),
        "InvalidArgument",
        "etcdserver: plugin good rejected the put: value is not valid JSON (in a txn)",
    );
    assert_eq!(s.etcdctl(&["get", "guard/t", "--prefix"]).ok(), "");
    assert_eq!(s.revision(), rev);

    // Rewrite: the log only holds the final value.
    assert_eq!(s.etcdctl(&["put", "up/x", "hello"]).ok(), "OK\n");
    assert_eq!(s.etcdctl(&["get", "up/x", "--print-value-only"]).ok(), "HELLO\n");
    assert_eq!(s.etcdctl_stdin(&["txn"], b"\nput up/y abc\nput guard/t3 {}\n\n\n").ok(), "SUCCESS\n\nOK\n\nOK\n");
    assert_eq!(s.etcdctl(&["get", "up/y", "--print-value-only"]).ok(), "ABC\n");

    // A trapping hook: fail-closed refuses the put, fail-open lets it through.
    let out = s.etcdctl(&["put", "crash/closed/k", "v"]);
    let prefix = "Error: rpc error: code = FailedPrecondition desc = etcdserver: plugin crash-closed failed, the put is refused (fail-closed): trapped: wasm `unreachable` instruction executed (panicked at ";
    let lines = out.error_lines();
    assert!(
        out.status == 1 && lines.len() == 1 && lines[0].starts_with(prefix) && lines[0].ends_with(": hook boom)"),
        "{out:#?}"
    );
    assert!(out.rpc_errors().iter().all(|e| e.starts_with("rpc error: code = FailedPrecondition desc = ")), "{out:#?}");
    assert_eq!(s.etcdctl(&["get", "crash/closed/k"]).ok(), "");
    assert_eq!(s.etcdctl(&["put", "crash/open/k", "v"]).ok(), "OK\n");
    assert_eq!(s.etcdctl(&["get", "crash/open/k", "--print-value-only"]).ok(), "v\n");
    // A hook past its time limit, fail-open: allowed after the limit.
    let started = Instant::now();
    assert_eq!(s.etcdctl(&["put", "spin/k", "v"]).ok(), "OK\n");
    assert!(started.elapsed() >= Duration::from_millis(200));

    // Metrics: the plugin's own, and the host's per-plugin counters and latency.
    let m = get(&s, "/metrics").text();
    for needle in [
        "# TYPE modkv_plugin_good_requests_total counter\n",
        "modkv_plugin_good_requests_total{path=\"/good/hello\"} 25.0\n",
        "# TYPE modkv_plugin_good_value_bytes histogram\n",
        "modkv_plugin_good_value_bytes_bucket{le=",
        "\nmodkv_plugin_good_last_status 200.0\n",
        "modkv_plugin_calls_total{plugin=\"spin\",hook=\"http\"} 4\n",
        "modkv_plugin_traps_total{plugin=\"spin\",hook=\"http\"} 4\n",
        "modkv_plugin_traps_total{plugin=\"hog\",hook=\"http\"} 1\n",
        "modkv_plugin_traps_total{plugin=\"crash-closed\",hook=\"pre_put\"} 1\n",
        "modkv_plugin_traps_total{plugin=\"crash-open\",hook=\"pre_put\"} 1\n",
        "modkv_plugin_traps_total{plugin=\"spin\",hook=\"pre_put\"} 1\n",
        "modkv_plugin_errors_total{plugin=\"huge\",hook=\"http\"} 1\n",
        "modkv_plugin_call_duration_seconds_count{plugin=\"good\",hook=\"pre_put\"} ",
        "# TYPE modkv_plugin_call_duration_seconds histogram\n",
    ] {
        assert!(m.contains(needle), "/metrics lacks {needle:?}:\n{m}");
    }
    assert!(!m.contains("modkv_plugin_traps_total{plugin=\"huge\""), "{m}");
    assert!(!m.contains("modkv_plugin_traps_total{plugin=\"good\""), "{m}");
    assert_serving(&s);
}

/// Requests `/good/hello` in a loop on `threads` threads until stopped; every answer is recorded.
struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<(u16, String)>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(ep: &str, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|_| {
                let (ep, stop, answers) = (ep.to_string(), stop.clone(), answers.clone());
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let r = request(&ep, "GET", "/good/hello", b"");
                        let version =
                            if r.status == 200 { r.json()["version"].as_str().unwrap().to_string() } else { r.text() };
                        answers.lock().unwrap().push((r.status, version));
                    }
                })
            })
            .collect();
        Load { stop, answers, threads }
    }

    fn finish(self) -> Vec<(u16, String)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.answers).unwrap().into_inner().unwrap()
    }
}

#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn hot_reload_replace_remove_restore_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    install(d, "good", "good");
    std::fs::write(d.join("good.toml"), GOOD_TOML).unwrap();
    let s = start(d);
    let version = |s: &Server| {
        let r = get(s, "/good/hello");
        if r.status == 200 {
            r.json()["version"].as_str().unwrap().to_string()
        } else {
            r.status.to_string()
        }
    };
    assert_eq!(version(&s), "1");
    let limit = Duration::from_secs(3);

    // Replace under load: every request answered 200, by the old version and then the new one.
    let load = Load::start(&s.endpoint(), 2);
    thread::sleep(Duration::from_millis(200));
    install(d, "good-v2", "good");
    let took = wait_until(limit, "version 2 answers", || version(&s) == "2");
    eprintln!("replace took effect in {took:?}");
    thread::sleep(Duration::from_millis(200));
    let answers = load.finish();
    assert!(answers.len() > 20, "{} requests", answers.len());
    assert!(answers.iter().all(|(status, _)| *status == 200), "failed requests during the reload: {answers:?}");
    let versions: Vec<&str> = answers.iter().map(|(_, v)| v.as_str()).collect();
    let first_v2 = versions.iter().position(|v| *v == "2").expect("v2 answered");
    assert!(versions[..first_v2].iter().all(|v| *v == "1"));
    assert!(versions[first_v2..].iter().filter(|v| **v == "1").count() <= 2, "{versions:?}");

    // Remove → 404; restore → 200.
    std::fs::remove_file(d.join("good.wasm")).unwrap();
    let took = wait_until(limit, "404 after removal", || get(&s, "/good/hello").status == 404);
    eprintln!("removal took effect in {took:?}");
    install(d, "good", "good");
    let took = wait_until(limit, "200 after restore", || version(&s) == "1");
    eprintln!("restore took effect in {took:?}");

    // A broken new version leaves the old one running, and says why.
    let load = Load::start(&s.endpoint(), 1);
    write_atomic(d, "good.wasm", b"\0asm garbage");
    wait_until(limit, "the failed reload logged", || {
        s.log().contains("good.wasm: failed to load: not a loadable WebAssembly component")
    });
    assert!(s.log().contains("the running version (1) stays"), "{}", s.log());
    assert_eq!(version(&s), "1");
    // A settings change reloads too.
    install(d, "good", "good");
    std::fs::write(d.join("good.toml"), GOOD_TOML.replace("hello from config", "changed")).unwrap();
    wait_until(limit, "new config", || get(&s, "/good/hello").json()["greeting"] == "changed");
    let answers = load.finish();
    assert!(answers.iter().all(|(status, _)| *status == 200), "failed requests during the reloads: {answers:?}");

    // A plugin added; SIGHUP reloads (and does not stop the server).
    install(d, "crash", "crash");
    wait_until(limit, "added plugin", || get(&s, "/crash").status == 500);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(s.pid().unwrap() as libc::pid_t, libc::SIGHUP) };
    thread::sleep(Duration::from_millis(300));
    assert_serving(&s);
    let log = s.log();
    assert!(log.contains("plugin ") && log.contains("crash.wasm loaded"), "{log}");
}

#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn compiled_components_are_cached_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "good", "good");
    let mut s = start(dir.path());
    assert_eq!(get(&s, "/good/hello").status, 200);
    let cache = s.data_dir().join("plugin-cache");
    let entries = || std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    assert_eq!(entries(), 1, "{cache:?}");
    s.stop();
    s.restart();
    assert_eq!(get(&s, "/good/hello").status, 200);
    assert_eq!(entries(), 1);
}

/// Concurrent puts through plugins whose instances answer many calls (stateless), yet every put gets
/// its own answer. Good JSON is written, bad JSON is rejected with its message, and a hook that traps
/// refuses only its own put, never the puts of the instances around it.
#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn reused_instances_answer_each_put() {
    use modkv_tests::grpc::{Client, PutRequest, RangeRequest};
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "good", "good");
    std::fs::write(dir.path().join("good.toml"), format!("{GOOD_TOML}stateless = \"true\"\n")).unwrap();
    install(dir.path(), "crash", "crash-closed");
    std::fs::write(
        dir.path().join("crash-closed.toml"),
        named("crash-closed", "hooked-prefixes = [\"crash/closed/\"]\n"),
    )
    .unwrap();
    let s = start(dir.path());
    let ep = s.endpoint();
    const THREADS: usize = 24;
    const PER_THREAD: usize = 30;
    let trapped = "etcdserver: plugin crash-closed failed, the put is refused (fail-closed): trapped: wasm `unreachable` instruction executed (panicked at ";
    thread::scope(|scope| {
        for t in 0..THREADS {
            let ep = ep.clone();
            scope.spawn(move || {
                let mut c = Client::connect(&ep).unwrap();
                for i in (0..PER_THREAD).map(|j| t * PER_THREAD + j) {
                    match i % 3 {
                        0 => {
                            let r = c.put(PutRequest::new(&format!("guard/{i:04}"), &format!("bad {i}")));
                            let want = "etcdserver: plugin good rejected the put: value is not valid JSON";
                            assert_eq!(
                                r.map(|_| ()),
                                Err(("InvalidArgument".to_string(), want.to_string())),
                                "put {i}"
                            );
                        }
                        1 => {
                            let r = c.put(PutRequest::new(&format!("guard/{i:04}"), &format!("{{\"n\":{i}}}")));
                            assert!(r.is_ok(), "put {i}: {r:?}");
                        }
                        _ => {
                            let (code, msg) = c.put(PutRequest::new(&format!("crash/closed/{i:04}"), "v")).unwrap_err();
                            assert_eq!(code, "FailedPrecondition", "put {i}: {msg}");
                            assert!(msg.starts_with(trapped) && msg.ends_with(": hook boom)"), "put {i}: {msg}");
                        }
                    }
                }
            });
        }
    });
    let kvs = modkv_tests::grpc::range(&ep, RangeRequest::range("guard/", "guard0")).unwrap().kvs;
    let got: Vec<(String, String)> = kvs
        .iter()
        .map(|kv| (String::from_utf8_lossy(&kv.key).into(), String::from_utf8_lossy(&kv.value).into()))
        .collect();
    let want: Vec<(String, String)> = (0..THREADS * PER_THREAD)
        .filter(|i| i % 3 == 1)
        .map(|i| (format!("guard/{i:04}"), format!("{{\"n\":{i}}}")))
        .collect();
    assert_eq!(got, want);
    assert!(modkv_tests::grpc::range(&ep, RangeRequest::range("crash/closed/", "crash/closed0"))
        .unwrap()
        .kvs
        .is_empty());
    let m = get(&s, "/metrics").text();
    let n = THREADS * PER_THREAD / 3;
    for needle in [
        format!("modkv_plugin_calls_total{{plugin=\"good\",hook=\"pre_put\"}} {}\n", 2 * n),
        format!("modkv_plugin_traps_total{{plugin=\"crash-closed\",hook=\"pre_put\"}} {n}\n"),
    ] {
        assert!(m.contains(&needle), "/metrics lacks {needle:?}:\n{m}");
    }
}

/// `GET <route>/calls` of the `good` plugin: how many calls the instance answering it has answered.
fn calls(s: &Server, route: &str) -> u64 {
    let r = get(s, &format!("{route}/calls"));
    assert_eq!(r.status, 200, "{route}/calls: {}", r.text());
    let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    v["calls"].as_u64().unwrap()
}

/// Whether one instance answers several calls: only if the manifest says the plugin is stateless
/// (contract 0.2.0 on) or the operator's TOML sets `calls-per-instance`; a plugin built against contract
/// 0.1.0 loads, serves routes, hooks puts and reports metrics as before, with a fresh instance per call;
/// one built against 0.2.0 loads and is reused as it declares. (The caller, 0.3.0: plugin_auth.rs.)
#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn instances_reused_as_declared_and_old_contract_plugins_load() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plugin = |file: &str, crate_name: &str, toml: &str| {
        install(d, crate_name, file);
        std::fs::write(d.join(format!("{file}.toml")), named(file, toml)).unwrap();
    };
    plugin("fresh", "good", "routes = [\"/good/fresh\"]\nhooked-prefixes = []\n");
    plugin("reused", "good", "routes = [\"/good/reused\"]\nhooked-prefixes = []\n[config]\nstateless = \"true\"\n");
    plugin(
        "capped",
        "good",
        "routes = [\"/good/capped\"]\nhooked-prefixes = []\n[limits]\ncalls-per-instance = 3\n[config]\nstateless = \"true\"\n",
    );
    // Built against 0.1.0, whose manifest cannot say `stateless`: its config asking for it changes nothing.
    plugin(
        "old",
        "legacy",
        "routes = [\"/good/old\"]\n[grants]\nread = [\"good/\"]\n[config]\ngreeting = \"from 0.1.0\"\nstateless = \"true\"\n",
    );
    // Built against 0.2.0: its manifest says `stateless`.
    plugin("v2", "v02", "routes = [\"/good/v2\"]\nhooked-prefixes = []\n[config]\nstateless = \"true\"\n");
    let s = start(d);
    let seq = |route: &str| (0..7).map(|_| calls(&s, route)).collect::<Vec<_>>();
    assert_eq!(seq("/good/fresh"), vec![1; 7]);
    assert_eq!(seq("/good/reused"), (1..=7).collect::<Vec<_>>());
    assert_eq!(seq("/good/capped"), vec![1, 2, 3, 1, 2, 3, 1]);
    assert_eq!(seq("/good/old"), vec![1; 7]);
    assert_eq!(seq("/good/v2"), (1..=7).collect::<Vec<_>>());
    let log = s.log();
    for (name, contract, calls) in [
        ("fresh", "0.3.0", 1),
        ("reused", "0.3.0", 64),
        ("capped", "0.3.0", 3),
        ("old", "0.1.0", 1),
        ("v2", "0.2.0", 64),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("plugin={name} ")) && l.contains("loaded"))
            .unwrap_or_else(|| panic!("no load line for {name}:\n{log}"));
        assert!(line.contains(&format!("contract=\"{contract}\"")), "{line}");
        assert!(line.contains(&format!("calls_per_instance={calls}")), "{line}");
    }

    // The 0.1.0 plugin's exports and host imports work as they did.
    assert_response(
        &get(&s, "/good/old/hello?x=1"),
        200,
        r#"{"plugin":"good","version":"legacy-0.1.0","greeting":"from 0.1.0","method":"GET","query":"x=1","body":""}"#,
    );
    assert_response(
        &get(&s, "/good/v2/hello?x=2"),
        200,
        r#"{"plugin":"good","version":"v02-0.2.0","greeting":"","method":"GET","query":"x=2","body":""}"#,
    );
    s.ctl_ok(&["put", "good/k", "v1"]);
    assert_response(&get(&s, "/good/old/get?k=good/k"), 200, r#"{"revision":2,"count":1,"value":"v1"}"#);
    let out = s.etcdctl(&["put", "guard/a", "not json"]);
    assert_ctl_error(&out, "InvalidArgument", "etcdserver: plugin old rejected the put: value is not valid JSON");
    s.ctl_ok(&["put", "guard/a", "{\"ok\":1}"]);
    s.ctl_ok(&["put", "up/a", "shout"]);
    assert_eq!(s.ctl_ok(&["get", "up/a", "--print-value-only"]), "SHOUT\n");
    let m = get(&s, "/metrics").text();
    for needle in [
        "modkv_plugin_old_requests_total{path=\"/good/old/hello\"} 1.0\n",
        "modkv_plugin_old_value_bytes_count 3\n",
        "modkv_plugin_calls_total{plugin=\"old\",hook=\"pre_put\"} 3\n",
    ] {
        assert!(m.contains(needle), "/metrics lacks {needle:?}:\n{m}");
    }
}

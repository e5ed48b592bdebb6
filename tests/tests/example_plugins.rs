//! End to end with the example plugins (`make plugins`): a member loads hello, json-guard, audit and
//! kv-browser; etcdctl and HTTP clients see their routes, the JSON guard, their metrics, and hot reload.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use modkv_tests::http;
use modkv_tests::*;

const EXAMPLES: [&str; 4] = ["hello", "json-guard", "audit", "kv-browser"];

fn example_plugins() -> PathBuf {
    if let Some(dir) = std::env::var_os("MODKV_PLUGIN_DIR") {
        return PathBuf::from(dir);
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    target.join("plugins")
}

/// A plugin dir holding the example plugins and their TOML files.
fn plugin_dir() -> tempfile::TempDir {
    let src = example_plugins();
    let dir = tempfile::tempdir().unwrap();
    for name in EXAMPLES {
        let wasm = src.join(format!("{name}.wasm"));
        assert!(wasm.exists(), "{} is missing: run `make plugins`", wasm.display());
        std::fs::copy(&wasm, dir.path().join(format!("{name}.wasm"))).unwrap();
        let toml = src.join(format!("{name}.toml"));
        if toml.exists() {
            std::fs::copy(&toml, dir.path().join(format!("{name}.toml"))).unwrap();
        }
    }
    dir
}

fn get(s: &Server, path: &str) -> (u16, String) {
    let r = http::request(&s.endpoint(), "GET", path, b"");
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

fn wait_status(s: &Server, path: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(s, path).0 != want {
        assert!(Instant::now() < deadline, "{path} never answered {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(dir: &Path) -> Server {
    Server::start(Kind::Modkv, ServerOpts::new().args(["--plugin-dir", dir.to_str().unwrap()]))
}

#[test]
fn routes_guard_and_metrics() {
    let dir = plugin_dir();
    let s = start(dir.path());
    assert_eq!(
        get(&s, "/hello"),
        (200, "{\"message\":\"hello, world\",\"plugin\":\"hello\",\"revision\":1,\"version\":\"0.1.0\"}\n".to_string())
    );

    // json-guard: good JSON is written, bad JSON is refused with the plugin's reason and nothing is written.
    assert_eq!(s.ctl_ok(&["put", "json/a", r#"{"id":1}"#]), "OK\n");
    let bad = s.etcdctl(&["put", "json/b", "nope"]);
    assert_eq!(bad.status, 1);
    assert!(
        bad.stderr.ends_with(
            "Error: rpc error: code = InvalidArgument desc = etcdserver: plugin json-guard rejected the put: \
             value of \"json/b\" is not valid JSON: expected ident at line 1 column 2\n"
        ),
        "{bad:?}"
    );
    // Inside a txn one bad put fails the whole txn.
    let txn = s.etcdctl_stdin(&["txn"], b"\nput json/c {\"x\":1}\nput json/d bad\n\n\n");
    assert_eq!(txn.status, 1);
    assert!(
        txn.stderr.contains("plugin json-guard rejected the put: value of \"json/d\" is not valid JSON"),
        "{txn:?}"
    );
    assert_eq!(s.ctl_ok(&["get", "json/", "--prefix", "--keys-only"]), "json/a\n\n");
    assert_eq!(s.revision(), 2);
    // Keys outside the guarded prefix are not checked.
    assert_eq!(s.ctl_ok(&["put", "plain/x", "not json"]), "OK\n");

    // The hello route reads the revision through the host.
    assert!(get(&s, "/hello").1.contains(r#""revision":3"#));

    // audit's metrics: puts per top-level prefix (the refused ones were seen too: audit runs first).
    let (code, metrics) = get(&s, "/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains(r#"modkv_plugin_audit_puts_total{prefix="json/",txn="false"} 2"#), "{metrics}");
    assert!(metrics.contains(r#"modkv_plugin_audit_puts_total{prefix="json/",txn="true"} 2"#), "{metrics}");
    assert!(metrics.contains(r#"modkv_plugin_audit_puts_total{prefix="plain/",txn="false"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"modkv_plugin_audit_value_bytes_count{prefix="json/"} 4"#), "{metrics}");
    assert!(metrics.contains(r#"modkv_plugin_calls_total{plugin="hello",hook="http"} 2"#), "{metrics}");

    // kv-browser's JSON route.
    let (code, keys) = get(&s, "/ui/api/keys?prefix=json/");
    assert_eq!(code, 200);
    assert!(keys.contains(r#""key":"json/a""#) && keys.contains(r#""count":1"#), "{keys}");
}

#[test]
fn hot_reload_under_load() {
    let dir = plugin_dir();
    let s = start(dir.path());
    let endpoint = s.endpoint();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A steady stream of requests to another plugin's route while hello comes and goes.
    let load = {
        let stop = stop.clone();
        let endpoint = endpoint.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 5000 {
                let r = http::request(&endpoint, "GET", "/ui/api/keys", b"");
                assert_eq!(r.status, 200, "kv-browser failed during a reload: {}", String::from_utf8_lossy(&r.body));
                n += 1;
            }
            n
        })
    };
    let hello = dir.path().join("hello.wasm");
    let saved = std::fs::read(&hello).unwrap();
    for _ in 0..3 {
        std::fs::remove_file(&hello).unwrap();
        wait_status(&s, "/hello", 404);
        std::fs::write(&hello, &saved).unwrap();
        wait_status(&s, "/hello", 200);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = load.join().expect("no request failed during the reloads");
    assert!(served > 10, "the load loop ran ({served} requests)");
}

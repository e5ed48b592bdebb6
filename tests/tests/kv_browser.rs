//! The kv-browser example plugin's page, rendered by a real browser (Debian's headless Chromium) against a
//! member that loads the plugin: the keys under a prefix appear in the page, a screenshot is kept as a
//! test artifact (`$CARGO_TARGET_DIR/test-artifacts/kv-browser.png`). With auth on (plugin contract
//! 0.3.0) the listing is the logged-in user's: only what they may read, everything for root, and an
//! anonymous listing refused as etcd refuses an anonymous Range (401 `etcdserver: user name is empty`,
//! the page then shows its login form); the browser logs in through the gateway and out again.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use modkv_tests::browser::Browser;
use modkv_tests::http::{post_with_headers, request_with_headers, HttpResponse};
use modkv_tests::*;

/// Where `make plugins` put the example plugins.
fn example_plugins() -> PathBuf {
    if let Some(dir) = std::env::var_os("MODKV_PLUGIN_DIR") {
        return PathBuf::from(dir);
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    target.join("plugins")
}

fn artifacts() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}

/// Runs headless Chromium with the flags this machine needs (no sandbox as root, no background traffic).
fn chromium(args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = Command::new("chromium");
    cmd.args(modkv_tests::browser::HEADLESS_FLAGS)
        .arg("--virtual-time-budget=5000")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args);
    let out = run_command(cmd, None, Duration::from_secs(60));
    assert!(out.success(), "chromium failed (is Debian's chromium installed? `make deps-test`): {out:?}");
    out.stdout
}

#[test]
fn page_lists_keys_in_a_browser() {
    let (s, _dir) = start_with_kv_browser();
    assert_eq!(s.ctl_ok(&["put", "json/a", r#"{"id": 1}"#]), "OK\n");
    assert_eq!(s.ctl_ok(&["put", "json/b", r#"{"id": 2}"#]), "OK\n");
    assert_eq!(s.ctl_ok(&["put", "other/x", "1"]), "OK\n");

    let url = format!("{}/ui/?prefix=json/", s.endpoint());
    let dom = chromium(&["--dump-dom", &url]);
    assert!(dom.contains(r#"data-key="json/a""#), "json/a listed: {dom}");
    assert!(dom.contains(r#"data-key="json/b""#), "json/b listed: {dom}");
    assert!(!dom.contains(r#"data-key="other/x""#), "keys outside the prefix are not listed: {dom}");
    assert!(dom.contains("2 keys under"), "status line: {dom}");

    let shot = artifacts().join("kv-browser.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&["--window-size=1024,768", &format!("--screenshot={}", shot.display()), &url]);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000, "a PNG screenshot");
}

/// A member loading kv-browser (its example TOML: the plugin may read every key).
fn start_with_kv_browser() -> (Server, tempfile::TempDir) {
    let src = example_plugins();
    let wasm = src.join("kv-browser.wasm");
    assert!(wasm.exists(), "{} is missing: run `make plugins`", wasm.display());
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&wasm, dir.path().join("kv-browser.wasm")).unwrap();
    std::fs::copy(src.join("kv-browser.toml"), dir.path().join("kv-browser.toml")).unwrap();
    let s = Server::start(Kind::Modkv, ServerOpts::new().args(["--plugin-dir", dir.path().to_str().unwrap()]));
    (s, dir)
}

const ROOT: &str = "--user=root:rootpw";

/// Keys app/a, app/b, foo, other/x; users root and alice (role app-reader: read `app/`), auth on.
fn keys_and_users(s: &Server) {
    for k in ["app/a", "app/b", "foo", "other/x"] {
        assert_eq!(s.ctl_ok(&["put", k, &format!("value of {k}")]), "OK\n");
    }
    for args in [
        vec!["user", "add", "root:rootpw"],
        vec!["user", "add", "alice:apw"],
        vec!["role", "add", "app-reader"],
        vec!["role", "grant-permission", "app-reader", "read", "--prefix", "app/"],
        vec!["user", "grant-role", "alice", "app-reader"],
        vec!["auth", "enable"],
    ] {
        s.ctl_ok(&args);
    }
}

fn token(s: &Server, name: &str, password: &str) -> String {
    let body = format!(r#"{{"name":"{name}","password":"{password}"}}"#);
    let r = post_with_headers(&s.endpoint(), "/v3/auth/authenticate", &body, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["token"].as_str().unwrap().to_string()
}

fn get(s: &Server, path: &str, token: Option<&str>) -> HttpResponse {
    let headers: Vec<(&str, &str)> = token.map(|t| ("Authorization", t)).into_iter().collect();
    request_with_headers(&s.endpoint(), "GET", path, b"", &headers)
}

/// The keys listing the JSON route answers: `{"revision","prefix","user","count","more","keys"}`, each
/// key `{"key","size","create_revision","mod_revision","version","lease"}` (puts at revisions 2..=5).
fn listing(revision: i64, user: &str, keys: &[&str]) -> serde_json::Value {
    let all = ["app/a", "app/b", "foo", "other/x"];
    let keys: Vec<_> = keys
        .iter()
        .map(|k| {
            let rev = all.iter().position(|a| a == k).unwrap() as i64 + 2;
            let size = format!("value of {k}").len();
            serde_json::json!({"key": k, "size": size, "create_revision": rev, "mod_revision": rev, "version": 1, "lease": 0})
        })
        .collect();
    serde_json::json!({"revision": revision, "prefix": "", "user": user, "count": keys.len(), "more": false, "keys": keys})
}

#[test]
fn listing_is_the_logged_in_users() {
    let (s, _dir) = start_with_kv_browser();
    keys_and_users(&s);
    let rev = header_rev(&s.etcdctl(&[ROOT, "-w", "json", "get", "foo"]).json());
    assert_eq!(rev, 5);
    let alice = token(&s, "alice", "apw");
    let root = token(&s, "root", "rootpw");

    // Anonymous: refused as etcd refuses an anonymous Range (not an empty list).
    let r = get(&s, "/ui/api/keys?prefix=", None);
    assert_eq!((r.status, r.text().as_str()), (401, "{\"error\":\"etcdserver: user name is empty\"}\n"), "{r:?}");
    assert_eq!(get(&s, "/ui/api/value?key=app/a", None).status, 401);
    // alice sees app/ only; root everything.
    let r = get(&s, "/ui/api/keys?prefix=", Some(&alice));
    assert_eq!((r.status, r.json()), (200, listing(rev, "alice", &["app/a", "app/b"])), "{r:?}");
    let r = get(&s, "/ui/api/keys?prefix=", Some(&root));
    assert_eq!((r.status, r.json()), (200, listing(rev, "root", &["app/a", "app/b", "foo", "other/x"])), "{r:?}");
    // A value: hers to read, or refused with etcd's error.
    let r = get(&s, "/ui/api/value?key=app/b", Some(&alice));
    assert_eq!((r.status, r.json()["value"].as_str()), (200, Some("value of app/b")), "{r:?}");
    let r = get(&s, "/ui/api/value?key=other/x", Some(&alice));
    assert_eq!((r.status, r.text().as_str()), (403, "{\"error\":\"etcdserver: permission denied\"}\n"), "{r:?}");
    // A bad token is the server's 401, as the gateway answers it.
    let r = get(&s, "/ui/api/keys", Some("AAAAAAAAAAAAAAAA.77"));
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, r#"{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}"#),
        "{r:?}"
    );

    // In the browser: the login form for an anonymous visitor; logged in as alice (through the
    // gateway, the token in sessionStorage), her keys only; logged out, the form again.
    let url = format!("{}/ui/?prefix=", s.endpoint());
    let mut browser = Browser::launch();
    let mut page = browser.open(&url);
    let limit = Duration::from_secs(10);
    page.wait_for("document.getElementById('status').textContent === 'log in to list keys'", limit);
    assert_eq!(page.eval("document.getElementById('login').hidden"), serde_json::json!(false));
    assert_eq!(page.eval("document.querySelectorAll('#keys li').length"), serde_json::json!(0));

    // A wrong password: etcd's error, still no keys.
    page.eval(
        "document.getElementById('user').value = 'alice'; document.getElementById('password').value = 'nope'; \
         document.getElementById('login').requestSubmit(); true",
    );
    page.wait_for("document.getElementById('status').textContent.startsWith('login failed')", limit);
    assert_eq!(
        page.eval("document.getElementById('status').textContent"),
        serde_json::json!("login failed: etcdserver: authentication failed, invalid user ID or password")
    );

    page.eval(
        "document.getElementById('user').value = 'alice'; document.getElementById('password').value = 'apw'; \
         document.getElementById('login').requestSubmit(); true",
    );
    page.wait_for("document.querySelectorAll('#keys li').length > 0", limit);
    assert_eq!(
        page.eval("[...document.querySelectorAll('#keys li')].map(li => li.dataset.key)"),
        serde_json::json!(["app/a", "app/b"])
    );
    assert_eq!(page.eval("document.getElementById('whoami').textContent"), serde_json::json!("alice"));
    assert_eq!(page.eval("document.getElementById('login').hidden"), serde_json::json!(true));
    assert_eq!(page.eval("document.getElementById('password').value"), serde_json::json!(""));
    let stored = page.eval("sessionStorage.getItem('modkv-kv-browser-token')");
    let stored = stored.as_str().expect("a token in sessionStorage");
    assert_eq!(get(&s, "/ui/api/keys?prefix=", Some(stored)).json()["user"], "alice", "the page's token is alice's");
    assert_eq!(
        page.eval("document.getElementById('status').textContent"),
        serde_json::json!(format!("2 keys under \u{201c}\u{201d} at revision {rev}"))
    );
    // Her value shows; a key she may not read would not (it is not listed; asked for, 403).
    page.eval("document.querySelector('#keys li[data-key=\"app/a\"]').click(); true");
    page.wait_for("document.getElementById('value').textContent === 'value of app/a'", limit);

    page.eval("document.getElementById('logout').click(); true");
    page.wait_for("document.getElementById('login').hidden === false", limit);
    assert_eq!(page.eval("sessionStorage.getItem('modkv-kv-browser-token')"), serde_json::Value::Null);
    assert_eq!(page.eval("document.querySelectorAll('#keys li').length"), serde_json::json!(0));
    assert_eq!(page.eval("document.getElementById('status').textContent"), serde_json::json!("logged out"));
}

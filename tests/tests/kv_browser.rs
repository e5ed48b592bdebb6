//! The kv-browser example plugin's page, rendered by a real browser (Debian's headless Chromium) against a
//! member that loads the plugin: the keys under a prefix appear in the page, a screenshot is kept as a
//! test artifact (`$CARGO_TARGET_DIR/test-artifacts/kv-browser.png`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

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
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args);
    let out = run_command(cmd, None, Duration::from_secs(60));
    assert!(out.success(), "chromium failed (is Debian's chromium installed? `make deps-test`): {out:?}");
    out.stdout
}

#[test]
fn page_lists_keys_in_a_browser() {
    let src = example_plugins();
    let wasm = src.join("kv-browser.wasm");
    assert!(wasm.exists(), "{} is missing: run `make plugins`", wasm.display());
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&wasm, dir.path().join("kv-browser.wasm")).unwrap();
    std::fs::copy(src.join("kv-browser.toml"), dir.path().join("kv-browser.toml")).unwrap();

    let s = Server::start(Kind::Modkv, ServerOpts::new().args(["--plugin-dir", dir.path().to_str().unwrap()]));
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

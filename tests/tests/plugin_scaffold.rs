//! A plugin as a newcomer writes one, outside the repository (modkv only): `modkv plugin new` makes a
//! crate in a temp dir, cargo builds it for wasm32-wasip2 (offline: the crates are those `make plugins`
//! already fetched), `modkv plugin check` describes the component or refuses it as the server would,
//! and a member loads it from --plugin-dir: its route answers through the host KV API, its hook refuses
//! long values through etcdctl, its metric counts them. A copy under another name is refused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use modkv_tests::http::request;
use modkv_tests::*;

fn modkv(args: &[&str]) -> CtlOutput {
    let mut cmd = Command::new(modkv_bin());
    cmd.args(args);
    run_command(cmd, None, Duration::from_secs(60))
}

/// `modkv plugin new my-counter --route /count --hook limited/` in `dir`, built for wasm32-wasip2;
/// returns the component.
fn new_plugin(dir: &Path) -> PathBuf {
    let krate = dir.join("my-counter");
    let out = modkv(&[
        "plugin",
        "new",
        "my-counter",
        "--route",
        "/count",
        "--hook",
        "limited/",
        "--dir",
        krate.to_str().unwrap(),
    ]);
    assert_eq!(out.status, 0, "{out:#?}");
    assert_eq!(
        out.stdout.lines().next(),
        Some(
            format!(
                "created plugin my-counter in {}: Cargo.toml, src/lib.rs, my-counter.toml, README.md, .gitignore",
                krate.display()
            )
            .as_str()
        ),
        "{out:#?}"
    );
    // Its own target dir under the suite's, so a second run only relinks.
    let target = test_plugins::target_dir("scaffold-plugin");
    let build = ["build", "--offline", "--release", "--target", "wasm32-wasip2"];
    test_plugins::cargo_in(&krate, &target, &build, "`make plugins` fetches its crates; wasm32-wasip2 installed?");
    // Its unit test passes on the host too.
    let stdout = test_plugins::cargo_in(&krate, &target, &["test", "--offline", "--release"], "its unit test");
    assert!(stdout.contains("test tests::manifest_names_the_crate ... ok"), "{stdout}");
    target.join("wasm32-wasip2/release/my_counter.wasm")
}

#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn a_new_plugin_builds_checks_loads_and_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let wasm = new_plugin(tmp.path());
    let toml = tmp.path().join("my-counter/my-counter.toml");
    let size = std::fs::metadata(&wasm).unwrap().len();

    // `check` describes it as the server will load it.
    let out = modkv(&["plugin", "check", wasm.to_str().unwrap(), "--toml", toml.to_str().unwrap()]);
    assert_eq!(out.status, 0, "{out:#?}");
    let want = format!(
        "plugin       my-counter 0.1.0\n\
         file         {} ({size} bytes), contract modkv:plugin@0.3.0\n\
         settings     my-counter.toml\n\
         routes       /count\n\
         hooks        puts under \"limited/\"\n\
         metric       counter modkv_plugin_my_counter_rejected_total: Puts refused for their size\n\
         stateless    no (a fresh instance for every call)\n\
         grant read   [\"my-counter/\"]\n\
         grant write  none\n\
         failure-mode fail-closed (a failing hook refuses the put)\n\
         limits       memory 67108864 bytes, time 1000 ms per call\n\
         config       {{\"max-value-bytes\": \"64\"}}\n",
        wasm.display()
    );
    assert_eq!(out.stdout, want);

    // Under a name that is not its manifest's, `check` refuses it with the server's words.
    let plugins = tempfile::tempdir().unwrap();
    let d = plugins.path();
    std::fs::copy(&wasm, d.join("counter.wasm")).unwrap();
    let out = modkv(&["plugin", "check", d.join("counter.wasm").to_str().unwrap()]);
    let refusal = "failed to load: its manifest names it \"my-counter\", but the file is counter.wasm; a plugin is \
                   known by its manifest's name and its files are <name>.wasm and <name>.toml (\"-\" and \"_\" alike): \
                   rename it my-counter.wasm";
    assert_eq!(
        (out.status, out.stdout.as_str(), out.stderr.trim_end()),
        (1, "", format!("plugin {}: {refusal}", d.join("counter.wasm").display()).as_str())
    );

    // A member loads cargo's file as it is (my_counter.wasm) with my-counter.toml, and refuses the copy.
    std::fs::copy(&wasm, d.join("my_counter.wasm")).unwrap();
    std::fs::copy(&toml, d.join("my-counter.toml")).unwrap();
    let s = Server::start(Kind::Modkv, ServerOpts::new().args(["--plugin-dir", d.to_str().unwrap()]));
    let log = s.log();
    for needle in [
        format!("plugin {}: {refusal}", d.join("counter.wasm").display()),
        "plugins (startup): 1 loaded plugins=[\"my-counter\"]".to_string(),
    ] {
        assert!(log.contains(&needle), "log lacks {needle:?}:\n{log}");
    }

    // The route counts keys under my-counter/<rest> through the host, with the revision.
    s.ctl_ok(&["put", "my-counter/a1", "x"]);
    s.ctl_ok(&["put", "my-counter/a2", "y"]);
    s.ctl_ok(&["put", "my-counter/b", "z"]);
    let r = request(&s.endpoint(), "GET", "/count/a", b"");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "{\"count\":2,\"prefix\":\"my-counter/a\",\"revision\":4}\n"),
        "{r:?}"
    );
    let r = request(&s.endpoint(), "POST", "/count/a", b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")), "{r:?}");

    // The hook lets short values through and refuses long ones, with its message, and counts them.
    s.ctl_ok(&["put", "limited/k", "short"]);
    let long = "x".repeat(65);
    let out = s.etcdctl(&["put", "limited/k", &long]);
    assert_eq!(
        (out.status, out.stdout.as_str(), out.error_lines()),
        (
            1,
            "",
            vec!["Error: rpc error: code = InvalidArgument desc = etcdserver: plugin my-counter rejected the put: \
                  limited/k is 65 bytes long, more than 64"
                .to_string()]
        ),
        "{out:#?}"
    );
    s.ctl_ok(&["put", "other/k", &long]);
    assert_eq!(s.ctl_ok(&["get", "limited/k", "--print-value-only"]), "short\n");
    let m = request(&s.endpoint(), "GET", "/metrics", b"").text();
    assert!(m.contains("\nmodkv_plugin_my_counter_rejected_total 1.0\n"), "{m}");
}

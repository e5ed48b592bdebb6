//! Plugins and auth (plugin contract 0.3.0; modkv only: etcd has no plugins). A route is told the user
//! its `Authorization` token names (none without one, 401 for a bad token, before the plugin runs; the
//! token itself is not passed on while auth is on); a
//! pre-put hook the user whose put it is, through etcdctl `--user` and through the gateway with a token
//! (none for a plugin's own put); `range-for-caller` reads bounded by both the plugin's grants and the
//! caller's read permission; components built for 0.1.0 and 0.2.0 load and work beside it, untold.
//!
//! The test plugins (`tests/plugins/`): `good` (0.3.0) answers `/good/caller` with its caller, reads for
//! the caller at `/good/as-caller`, and stamps puts under `who/` with `by <caller>` (`by nobody`);
//! `legacy` (0.1.0) and `v02` (0.2.0), the same code on older contracts, stamp `by <their version>`.

use std::path::Path;

use modkv_tests::http::{post_with_headers, request_with_headers, HttpResponse};
use modkv_tests::test_plugins::install;
use modkv_tests::*;

/// `[config] name = "<name>"` (the test plugins take their manifest's name from it) and `toml`.
fn named(name: &str, toml: &str) -> String {
    format!("{toml}\n[config]\nname = \"{name}\"\n")
}

/// good (every key readable by the plugin itself, writes under who/), good2 (hooks who/p only), old
/// (0.1.0) on /old, v02 (0.2.0) on /v02. Hooks run in file-name order: good, good2, old, v02.
fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plugin = |file: &str, crate_name: &str, toml: &str| {
        install(d, crate_name, file);
        std::fs::write(d.join(format!("{file}.toml")), named(file, toml)).unwrap();
    };
    plugin("good", "good", "[grants]\nread = [\"\"]\nwrite = [\"who/\"]\n");
    plugin(
        "good2",
        "good",
        "routes = [\"/good/narrow\"]\nhooked-prefixes = [\"who/p\"]\n[grants]\nread = [\"app/\"]\n",
    );
    plugin("old", "legacy", "routes = [\"/good/old\"]\n[grants]\nread = [\"app/\"]\n");
    plugin("v02", "v02", "routes = [\"/good/v02\"]\n[grants]\nread = [\"app/\"]\n");
    dir
}

fn start(dir: &Path) -> Server {
    Server::start(Kind::Modkv, ServerOpts::new().args(["--plugin-dir", dir.to_str().unwrap()]))
}

/// GET `path` with `token` (if any) in `Authorization`.
fn get(s: &Server, path: &str, token: Option<&str>) -> HttpResponse {
    let headers: Vec<(&str, &str)> = token.map(|t| ("Authorization", t)).into_iter().collect();
    request_with_headers(&s.endpoint(), "GET", path, b"", &headers)
}

#[track_caller]
fn assert_response(r: &HttpResponse, status: u16, body: &str) {
    assert_eq!((r.status, r.text().as_str()), (status, body), "{r:?}");
}

/// Users root and alice (role app-reader: read `app/`, readwrite `who/`, read `foo`), auth enabled.
fn enable_auth(s: &Server) {
    for (args, out) in [
        (vec!["user", "add", "root:rootpw"], "User root created\n"),
        (vec!["user", "add", "alice:apw"], "User alice created\n"),
        (vec!["role", "add", "app-reader"], "Role app-reader created\n"),
        (vec!["role", "grant-permission", "app-reader", "read", "--prefix", "app/"], "Role app-reader updated\n"),
        (vec!["role", "grant-permission", "app-reader", "readwrite", "--prefix", "who/"], "Role app-reader updated\n"),
        (vec!["role", "grant-permission", "app-reader", "read", "foo"], "Role app-reader updated\n"),
        (vec!["user", "grant-role", "alice", "app-reader"], "Role app-reader is granted to user alice\n"),
        (vec!["auth", "enable"], "Authentication Enabled\n"),
    ] {
        assert_eq!(s.etcdctl(&args).ok(), out, "{args:?}");
    }
}

const ROOT: &str = "--user=root:rootpw";
const ALICE: &str = "--user=alice:apw";
const BAD_TOKEN: &str =
    r#"{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}"#;

/// A token for `name` from the gateway's authenticate.
fn token(s: &Server, name: &str, password: &str) -> String {
    let body = format!(r#"{{"name":"{name}","password":"{password}"}}"#);
    let r = post_with_headers(&s.endpoint(), "/v3/auth/authenticate", &body, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["token"].as_str().unwrap().to_string()
}

/// The store's revision, read as root.
fn revision(s: &Server) -> i64 {
    header_rev(&s.etcdctl(&[ROOT, "-w", "json", "get", "revision-probe"]).json())
}

/// The header names `good` was handed, sorted.
fn header_names(s: &Server, token: Option<&str>) -> Vec<String> {
    let r = get(s, "/good/headers", token);
    assert_eq!(r.status, 200, "{r:?}");
    let mut names: Vec<String> =
        r.json()["headers"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

/// What a put under who/ became: each hook in file order appends its stamp.
fn stored(s: &Server, key: &str) -> String {
    s.etcdctl(&[ROOT, "get", key, "--print-value-only"]).ok().to_string()
}

#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn routes_and_hooks_see_the_caller() {
    let dir = plugin_dir();
    let s = start(dir.path());
    let log = s.log();
    for (name, contract) in [("good", "0.3.0"), ("good2", "0.3.0"), ("old", "0.1.0"), ("v02", "0.2.0")] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("plugin={name} ")) && l.contains("loaded"))
            .unwrap_or_else(|| panic!("no load line for {name}:\n{log}"));
        assert!(line.contains(&format!("contract=\"{contract}\"")), "{line}");
    }

    // Auth off: nobody is calling, whatever the header says (etcd ignores tokens then).
    assert_response(&get(&s, "/good/caller", None), 200, r#"{"caller":null}"#);
    assert_response(&get(&s, "/good/caller", Some("whatever.1")), 200, r#"{"caller":null}"#);
    assert_eq!(s.etcdctl(&["put", "who/off", "x"]).ok(), "OK\n");
    assert_eq!(stored(&s, "who/off"), "x by nobody by legacy-0.1.0 by v02-0.2.0\n");
    // ... and the request reaches the plugin as it came, Authorization included (a plugin's own scheme).
    let sent = ["authorization", "connection", "content-length", "content-type", "host"];
    assert_eq!(header_names(&s, Some("whatever.1")), sent);

    enable_auth(&s);
    let root = token(&s, "root", "rootpw");
    let alice = token(&s, "alice", "apw");

    // A route is told who is calling: root, alice, nobody; a bad token never reaches the plugin.
    assert_response(&get(&s, "/good/caller", Some(&root)), 200, r#"{"caller":"root"}"#);
    assert_response(&get(&s, "/good/caller", Some(&alice)), 200, r#"{"caller":"alice"}"#);
    assert_response(&get(&s, "/good/caller", None), 200, r#"{"caller":null}"#);
    for bad in ["AAAAAAAAAAAAAAAA.999", "garbage", ""] {
        let r = get(&s, "/good/caller", Some(bad));
        assert_response(&r, 401, BAD_TOKEN);
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    // With auth on the plugin is told the caller, never handed the user's token.
    assert_eq!(header_names(&s, Some(&alice)), sent[1..]);
    // Paths no plugin serves stay 404 whatever the token (the token is only looked at for a plugin).
    assert_response(&get(&s, "/nothing", Some("garbage")), 404, "404 page not found\n");

    // The older contracts' components load, serve and hook with auth on; they are not told the caller.
    assert_response(&get(&s, "/good/old/caller", Some(&alice)), 200, r#"{"caller":"unknown to legacy-0.1.0"}"#);
    assert_response(&get(&s, "/good/v02/caller", Some(&alice)), 200, r#"{"caller":"unknown to v02-0.2.0"}"#);
    assert_response(&get(&s, "/good/v02/caller", Some("garbage")), 401, BAD_TOKEN);

    // A plugin's own reads are bounded by its grants only, not by the caller (anonymous here): it
    // reads `secret`, which alice may not.
    assert_eq!(s.etcdctl(&[ROOT, "put", "secret", "s3"]).ok(), "OK\n");
    let rev = revision(&s);
    assert_response(
        &get(&s, "/good/get?k=secret", None),
        200,
        &format!(r#"{{"revision":{rev},"count":1,"value":"s3"}}"#),
    );
    assert_response(
        &get(&s, "/good/old/get?k=app/x", Some(&alice)),
        200,
        &format!(r#"{{"revision":{rev},"count":0,"value":null}}"#),
    );

    // The pre-put hook is told the put's caller: etcdctl --user (gRPC token), the gateway's
    // Authorization, in a txn too.
    assert_eq!(s.etcdctl(&[ALICE, "put", "who/a", "x"]).ok(), "OK\n");
    assert_eq!(stored(&s, "who/a"), "x by alice by legacy-0.1.0 by v02-0.2.0\n");
    assert_eq!(s.etcdctl(&[ROOT, "put", "who/r", "z"]).ok(), "OK\n");
    assert_eq!(stored(&s, "who/r"), "z by root by legacy-0.1.0 by v02-0.2.0\n");
    let put = format!(r#"{{"key":"{}","value":"{}"}}"#, b64encode(b"who/g"), b64encode(b"y"));
    let r = post_with_headers(&s.endpoint(), "/v3/kv/put", &put, &[("Authorization", &alice)]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(stored(&s, "who/g"), "y by alice by legacy-0.1.0 by v02-0.2.0\n");
    let r = post_with_headers(&s.endpoint(), "/v3/kv/put", &put, &[("Authorization", "garbage")]);
    assert_response(&r, 401, BAD_TOKEN);
    let txn = s.etcdctl_stdin(&[ALICE, "txn"], b"\nput who/t t\n\n\n");
    assert_eq!((txn.status, txn.stdout.as_str()), (0, "SUCCESS\n\nOK\n"), "{txn:?}");
    assert_eq!(stored(&s, "who/t"), "t by alice by legacy-0.1.0 by v02-0.2.0\n");
    // Refused as etcd refuses an anonymous put: no hook runs.
    let anon = s.etcdctl(&["put", "who/n", "n"]);
    assert_eq!((anon.status, anon.error_lines()), (1, vec!["Error: etcdserver: user name is empty".to_string()]));

    // A plugin's own put (good's host `put`, for alice's request) is no user's: good2's hook is told
    // nobody, and good's own hook does not run for it.
    assert_eq!(get(&s, "/good/put?k=who/p1&v=q", Some(&alice)).status, 200);
    assert_eq!(stored(&s, "who/p1"), "q by nobody by legacy-0.1.0 by v02-0.2.0\n");
}

#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn reads_for_the_caller_are_bounded_by_grants_and_permissions() {
    let dir = plugin_dir();
    let s = start(dir.path());
    for k in ["app/a", "app/b", "foo", "other/x", "zzz"] {
        assert_eq!(s.etcdctl(&["put", k, "v"]).ok(), "OK\n");
    }
    // Auth off: a plain read.
    let rev = s.revision();
    assert_response(
        &get(&s, "/good/as-caller?prefix=&scope=readable", None),
        200,
        &format!(r#"{{"revision":{rev},"count":5,"more":false,"keys":["app/a","app/b","foo","other/x","zzz"]}}"#),
    );
    assert_response(
        &get(&s, "/good/as-caller?prefix=", None),
        200,
        &format!(r#"{{"revision":{rev},"count":5,"more":false,"keys":["app/a","app/b","foo","other/x","zzz"]}}"#),
    );

    enable_auth(&s);
    let root = token(&s, "root", "rootpw");
    let alice = token(&s, "alice", "apw");
    let rev = revision(&s);
    let answer = |count: usize, more: bool, keys: &[&str]| {
        let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
        format!(r#"{{"revision":{rev},"count":{count},"more":{more},"keys":[{}]}}"#, keys.join(","))
    };
    let all = ["app/a", "app/b", "foo", "other/x", "zzz"];

    // Root reads everything, either way.
    assert_response(&get(&s, "/good/as-caller?prefix=&scope=readable", Some(&root)), 200, &answer(5, false, &all));
    assert_response(&get(&s, "/good/as-caller?prefix=", Some(&root)), 200, &answer(5, false, &all));

    // alice: only what her role grants (app/ and foo), in key order, at one revision; the limit counts
    // over the parts, `count` and `more` are theirs.
    let readable = |q: &str| get(&s, &format!("/good/as-caller?scope=readable&{q}"), Some(&alice));
    assert_response(&readable("prefix="), 200, &answer(3, false, &["app/a", "app/b", "foo"]));
    assert_response(&readable("prefix=&limit=1"), 200, &answer(3, true, &["app/a"]));
    assert_response(&readable("prefix=&limit=2"), 200, &answer(3, true, &["app/a", "app/b"]));
    assert_response(&readable("prefix=&limit=3"), 200, &answer(3, false, &["app/a", "app/b", "foo"]));
    assert_response(&readable("prefix=app/"), 200, &answer(2, false, &["app/a", "app/b"]));
    assert_response(&readable("prefix=other/"), 200, &answer(0, false, &[]));
    // Whole ranges as her own Range would be: all of it readable, or refused.
    let whole = |q: &str| get(&s, &format!("/good/as-caller?{q}"), Some(&alice));
    assert_response(&whole("prefix=app/"), 200, &answer(2, false, &["app/a", "app/b"]));
    assert_response(&whole("k=foo"), 200, &answer(1, false, &["foo"]));
    let denied = r#"{"err":"etcdserver: permission denied"}"#;
    assert_response(&whole("prefix="), 200, denied);
    assert_response(&whole("k=other/x"), 200, denied);
    assert_eq!(
        s.etcdctl(&[ALICE, "get", "other/x"]).error_lines(),
        vec!["Error: etcdserver: permission denied".to_string()],
        "the same answer as her own Range"
    );

    // Anonymous: refused as etcd refuses an anonymous Range.
    let anonymous = r#"{"err":"etcdserver: user name is empty"}"#;
    assert_response(&get(&s, "/good/as-caller?prefix=&scope=readable", None), 200, anonymous);
    assert_response(&get(&s, "/good/as-caller?k=app/a", None), 200, anonymous);

    // The plugin's grants bound even root: good2 may read app/ only.
    assert_response(
        &get(&s, "/good/narrow/as-caller?prefix=&scope=readable", Some(&root)),
        200,
        r#"{"err":"permission denied: plugin good2 may not read every key; grant it in good2.toml: [grants] read = [\"app/\", \"\"]"}"#,
    );
    assert_response(
        &get(&s, "/good/narrow/as-caller?prefix=app/&scope=readable", Some(&alice)),
        200,
        &answer(2, false, &["app/a", "app/b"]),
    );

    // Permissions follow the auth store: once app/ is revoked from her role, alice reads only foo.
    assert_eq!(
        s.etcdctl(&[ROOT, "role", "revoke-permission", "app-reader", "--prefix", "app/"]).ok(),
        "Permission of range [app/, app0) is revoked from role app-reader\n"
    );
    let alice = token(&s, "alice", "apw");
    assert_response(
        &get(&s, "/good/as-caller?scope=readable&prefix=", Some(&alice)),
        200,
        &format!(r#"{{"revision":{rev},"count":1,"more":false,"keys":["foo"]}}"#),
    );
}

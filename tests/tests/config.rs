//! Startup/configuration errors: the server must exit non-zero (not hang, not
//! panic) with a stderr line that names the problem.
//!
//! The contract is written for modkv; the etcd variants document that the
//! reference fails the same way (same keywords, same non-zero exit).

use std::net::TcpListener;
use std::time::Duration;

use modkv_tests::*;

const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

struct Setup {
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

impl Setup {
    fn new() -> Setup {
        Setup { dir: tempfile::tempdir().unwrap(), client_port: free_port(), peer_port: free_port() }
    }

    fn args(&self, name: &str) -> Vec<String> {
        standard_args(name, &self.dir.path().join("data"), self.client_port, self.peer_port)
    }
}

/// Replaces the value following `flag` in `args`.
fn set(args: &mut [String], flag: &str, value: &str) {
    let i = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} not in {args:?}"));
    args[i + 1] = value.to_string();
}

/// Runs the server with `args`, expecting a startup failure whose stderr has
/// a line containing all `keywords` (case-insensitively).
#[track_caller]
fn expect_startup_error(kind: Kind, args: &[String], keywords: &[&str]) -> ExitOutput {
    let out = run_to_exit(kind, args, EXIT_TIMEOUT);
    let show = || format!("{kind} {args:?}\n--- stdout ---\n{}\n--- stderr ---\n{}", out.stdout, out.stderr);
    assert!(!out.timed_out, "still running after {EXIT_TIMEOUT:?}: {}", show());
    assert!(matches!(out.code, Some(c) if c != 0), "exit code {:?}, expected non-zero: {}", out.code, show());
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains("panicked"), "panicked: {}", show());
        assert!(!text.contains("RUST_BACKTRACE") && !text.contains("stack backtrace"), "{}", show());
    }
    let line = out.stderr.lines().find(|l| {
        let l = l.to_lowercase();
        keywords.iter().all(|k| l.contains(&k.to_lowercase()))
    });
    assert!(line.is_some(), "no stderr line mentions all of {keywords:?}: {}", show());
    if kind == Kind::Modkv {
        // One clear line, not a log dump: the explanation is a short line.
        let line = line.unwrap();
        assert!(line.len() < 400, "error line too long: {line:?}");
    }
    out
}

both_kinds! {
    fn client_port_in_use(kind) {
        let s = Setup::new();
        let _busy = TcpListener::bind(("127.0.0.1", s.client_port)).unwrap();
        let addr = format!("127.0.0.1:{}", s.client_port);
        expect_startup_error(kind, &s.args("node1"), &[&addr, "in use"]);
    }

    fn peer_port_in_use(kind) {
        let s = Setup::new();
        let _busy = TcpListener::bind(("127.0.0.1", s.peer_port)).unwrap();
        let addr = format!("127.0.0.1:{}", s.peer_port);
        expect_startup_error(kind, &s.args("node1"), &[&addr, "in use"]);
    }

    fn malformed_client_url(kind) {
        let s = Setup::new();
        let mut args = s.args("node1");
        set(&mut args, "--listen-client-urls", "http//127.0.0.1:x");
        expect_startup_error(kind, &args, &["http//127.0.0.1:x"]);
    }

    fn peer_url_without_scheme(kind) {
        let s = Setup::new();
        let mut args = s.args("node1");
        let bare = format!("127.0.0.1:{}", s.peer_port);
        set(&mut args, "--listen-peer-urls", &bare);
        expect_startup_error(kind, &args, &[&bare]);
    }

    fn name_not_in_initial_cluster(kind) {
        let s = Setup::new();
        let mut args = s.args("node1");
        set(&mut args, "--name", "stranger");
        expect_startup_error(kind, &args, &["stranger", "initial"]);
    }

    fn unwritable_data_dir(kind) {
        let s = Setup::new();
        // A path below a regular file cannot be created, even by root.
        let file = s.dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let data_dir = file.join("data");
        let mut args = s.args("node1");
        set(&mut args, "--data-dir", data_dir.to_str().unwrap());
        expect_startup_error(kind, &args, &[data_dir.to_str().unwrap()]);
    }
}

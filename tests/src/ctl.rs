//! Running etcdctl (and other short-lived commands) and reading what it printed.
//!
//! * [`run_command`] — a child process to completion with a hard timeout → [`CtlOutput`];
//!   [`wait_timeout`] — a bounded wait for a child's exit.
//! * [`etcdctl_at`] — `etcdctl --endpoints <url> <args>` (API v3), bounded by [`ETCDCTL_TIMEOUT`].
//! * [`CtlOutput`] — exit code, stdout, stderr; [`CtlOutput::ok`] / [`CtlOutput::json`] assert success,
//!   [`CtlOutput::error_lines`] / [`CtlOutput::rpc_errors`] split etcdctl's stderr, and
//!   [`CtlOutput::assert_server_error`] checks an error the way etcdctl reports it.
//! * [`STATUS_ARGS`] / [`status_of`] — one member's `endpoint status -w json`, bounded in time.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::etcdctl_bin;

/// Hard limit for a single etcdctl invocation (etcdctl's own
/// `--command-timeout` is 5 s; this only guards against hangs).
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// Output of a finished child process.
#[derive(Clone, Debug)]
pub struct CtlOutput {
    /// Exit code; -1 if killed by a signal or timed out.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// Asserts exit code 0 and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.status, 0, "command failed: {self:#?}");
        &self.stdout
    }

    /// Asserts exit code 0 and parses stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        let out = self.ok();
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    /// `(status, stdout, stderr)`.
    pub fn into_tuple(self) -> (i32, String, String) {
        (self.status, self.stdout, self.stderr)
    }

    /// stderr lines that are not etcdctl's structured client-side log lines
    /// (those carry a timestamp and a random client id), e.g.
    /// `["Error: etcdserver: key not found"]`.
    pub fn error_lines(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && client_log_line(l).is_none())
            .map(str::to_string)
            .collect()
    }

    /// The `error` field of etcdctl's client-side log lines, i.e. the gRPC
    /// status as the client saw it, e.g.
    /// `["rpc error: code = InvalidArgument desc = etcdserver: key not found"]`.
    pub fn rpc_errors(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter_map(client_log_line)
            .filter_map(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .collect()
    }

    /// Asserts that the command failed with an error etcdctl 3.4's client library does not know (a
    /// plugin's): exit code 1 and the whole gRPC status printed,
    /// `Error: rpc error: code = <code> desc = <desc>`, the status also in any client log line.
    #[track_caller]
    pub fn assert_unknown_error(&self, code: &str, desc: &str) {
        let status = format!("rpc error: code = {code} desc = {desc}");
        assert_eq!(
            (self.status, self.stdout.as_str(), self.error_lines()),
            (1, "", vec![format!("Error: {status}")]),
            "{self:#?}"
        );
        assert!(self.rpc_errors().iter().all(|e| *e == status), "{self:#?}");
    }

    /// Asserts that the command failed the way etcdctl reports a server-side
    /// error: exit code 1, `Error: <desc>` as the only plain stderr line, and
    /// the gRPC status `code = <code> desc = <desc>`.
    #[track_caller]
    pub fn assert_server_error(&self, code: &str, desc: &str) {
        assert_eq!(
            (self.status, self.stdout.as_str(), self.error_lines()),
            (1, "", vec![format!("Error: {desc}")]),
            "unexpected result: {self:#?}"
        );
        let rpc = self.rpc_errors();
        assert!(!rpc.is_empty(), "no client log line with the gRPC status: {self:#?}");
        for e in rpc {
            assert_eq!(e, format!("rpc error: code = {code} desc = {desc}"), "{self:#?}");
        }
    }
}

fn client_log_line(line: &str) -> Option<Value> {
    let t = line.trim();
    if !t.starts_with('{') {
        return None;
    }
    let v: Value = serde_json::from_str(t).ok()?;
    (v.get("level").is_some() && v.get("msg").is_some()).then_some(v)
}

/// Runs `cmd` with `stdin` to completion, with a hard timeout.
pub fn run_command(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> CtlOutput {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let writer = stdin.map(|data| {
        let data = data.to_vec();
        let mut pipe = child.stdin.take().unwrap();
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let out_reader = read_to_end_thread(child.stdout.take().unwrap());
    let err_reader = read_to_end_thread(child.stderr.take().unwrap());
    let status = wait_timeout(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    CtlOutput {
        status: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: match status {
            Some(_) => String::from_utf8_lossy(&stderr).into_owned(),
            None => format!("{}\n<harness: timed out after {timeout:?}>", String::from_utf8_lossy(&stderr)),
        },
    }
}

fn read_to_end_thread<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Waits for `child` to exit, polling; `None` on timeout (child left running).
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Runs etcdctl (API v3) against `endpoint` (e.g. `http://127.0.0.1:2379`).
pub fn etcdctl_at(endpoint: &str, args: &[&str], stdin: Option<&[u8]>) -> CtlOutput {
    etcdctl_of(&etcdctl_bin(), endpoint, args, stdin)
}

/// Runs the etcdctl binary `bin` (API v3) against `endpoint`: another version than the system's.
pub fn etcdctl_of(bin: &std::path::Path, endpoint: &str, args: &[&str], stdin: Option<&[u8]>) -> CtlOutput {
    let mut cmd = Command::new(bin);
    cmd.env("ETCDCTL_API", "3").env_remove("ETCDCTL_ENDPOINTS").arg("--endpoints").arg(endpoint).args(args);
    run_command(cmd, stdin, ETCDCTL_TIMEOUT)
}

/// `etcdctl` arguments for one member's status, bounded in time.
pub(crate) const STATUS_ARGS: &[&str] =
    &["--dial-timeout", "1s", "--command-timeout", "2s", "-w", "json", "endpoint", "status"];

/// The `Status` object of `endpoint status -w json` output, `None` if the command failed.
pub(crate) fn status_of(out: &CtlOutput) -> Option<Value> {
    if !out.success() {
        return None;
    }
    let v: Value = serde_json::from_str(out.stdout.trim()).ok()?;
    v.get(0)?.get("Status").cloned()
}

/// [`CtlOutput::assert_unknown_error`] as a function, for call sites that build the output inline.
#[track_caller]
pub fn assert_ctl_error(out: &CtlOutput, code: &str, desc: &str) {
    out.assert_unknown_error(code, desc);
}

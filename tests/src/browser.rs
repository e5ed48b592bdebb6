//! A real browser driven from a test: Debian's headless Chromium over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: commands on the child's fd 3, answers and events on its fd 4, each a JSON
//! message ended by a NUL byte), so a test can fill a form, click and read the page as a user would,
//! with no driver crate. Every wait has a time limit; the browser is killed when [`Browser`] drops.
//!
//! ```text
//!   Browser::launch ─▶ chromium --headless --remote-debugging-pipe      (reader thread: fd 4 ─▶ channel)
//!   Browser::open(url) ─▶ Target.createTarget + attachToTarget ─▶ Page (a session id)
//!   Page::eval(js) ─▶ Runtime.evaluate (awaits promises, returns the value as JSON)
//!   Page::wait_for(js) ─▶ eval until it is true
//! ```

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long one DevTools command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Browser {
    child: Child,
    to_browser: File,
    from_browser: Receiver<Value>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// A pipe whose two ends are at fds >= 10, close-on-exec (the child gets copies at 3 and 4).
fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: plain libc calls on fds this function owns.
    unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0, "pipe2");
        let high = fds.map(|fd| {
            let h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
            assert!(h >= 10, "fcntl F_DUPFD_CLOEXEC");
            libc::close(fd);
            h
        });
        (high[0], high[1])
    }
}

/// The flags headless Chromium needs on this machine: no sandbox (tests run as root), no GPU, no
/// background traffic.
pub const HEADLESS_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

impl Browser {
    /// Starts headless Chromium (no sandbox as root, no background traffic, a fresh profile).
    pub fn launch() -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let (cmd_read, cmd_write) = pipe();
        let (resp_read, resp_write) = pipe();
        let mut cmd = Command::new("chromium");
        cmd.args(HEADLESS_FLAGS)
            .arg("--remote-debugging-pipe")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(cmd_read, 3) < 0 || libc::dup2(resp_write, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start chromium (Debian's chromium; `make deps-test`): {e}"));
        // SAFETY: the parent's ends are owned here; the child's are closed in the parent after the spawn.
        let (to_browser, mut from) = unsafe {
            libc::close(cmd_read);
            libc::close(resp_write);
            (File::from_raw_fd(cmd_write), File::from_raw_fd(resp_read))
        };
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 64 * 1024];
            loop {
                let n = match from.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|&b| b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..end]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Browser { child, to_browser, from_browser: rx, next_id: 0, _profile: profile }
    }

    /// Sends a DevTools command (to `session`, if given) and waits for its result, or its error answer.
    fn command(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to_browser.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from_browser
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("chromium did not answer {method} within {COMMAND_TIMEOUT:?}: {e}"));
            if v["id"].as_u64() == Some(id) {
                return match v.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(v["result"].clone()),
                };
            }
        }
    }

    /// Opens `url` (http or https) in a new tab and waits until it has loaded.
    pub fn open(&mut self, url: &str) -> Page<'_> {
        let target = self.command(None, "Target.createTarget", json!({ "url": url })).expect("Target.createTarget");
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = self
            .command(None, "Target.attachToTarget", json!({ "targetId": target_id, "flatten": true }))
            .expect("Target.attachToTarget");
        let session = attached["sessionId"].as_str().expect("sessionId").to_string();
        let mut page = Page { browser: self, session };
        page.wait_for(
            "location.protocol.startsWith('http') && document.readyState === 'complete'",
            Duration::from_secs(10),
        );
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tab of a [`Browser`].
pub struct Page<'a> {
    browser: &'a mut Browser,
    session: String,
}

impl Page<'_> {
    /// Evaluates `expression` in the page (awaiting a promise) and returns its value as JSON; an
    /// exception fails the test.
    pub fn eval(&mut self, expression: &str) -> Value {
        self.try_eval(expression).unwrap_or_else(|e| panic!("{expression}: {e}"))
    }

    /// [`Page::eval`], its failure (an exception, or no page to run in while one loads) as an error.
    fn try_eval(&mut self, expression: &str) -> Result<Value, Value> {
        let params = json!({ "expression": expression, "returnByValue": true, "awaitPromise": true });
        let r = self.browser.command(Some(&self.session), "Runtime.evaluate", params)?;
        match r.get("exceptionDetails") {
            Some(e) => Err(e.clone()),
            None => Ok(r["result"]["value"].clone()),
        }
    }

    /// Waits until `expression` is true in the page (failures while a page loads count as not yet);
    /// fails the test after `limit`, showing the body.
    pub fn wait_for(&mut self, expression: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.try_eval(expression).ok() != Some(json!(true)) {
            if Instant::now() >= deadline {
                let body = self.try_eval("document.body ? document.body.outerHTML : ''");
                panic!("not within {limit:?}: {expression}\npage: {body:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

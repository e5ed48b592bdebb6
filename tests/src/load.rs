//! Client load while members fail or restart (for `tests/tests/cluster.rs`).
//!
//! * [`Writer`] — a background thread doing sequential `etcdctl put`s, recording which were
//!   acknowledged ([`WriteLog`]).
//! * [`put_many_grpc`] — many concurrent puts over the raw gRPC client.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::ctl::etcdctl_at;
use crate::grpc::{self, PutRequest};

/// `Some(error)` if nothing listens on the `http://host:port` endpoint (connection refused).
fn connect_refused(endpoint: &str) -> Option<String> {
    let addr: SocketAddr = endpoint.strip_prefix("http://")?.parse().ok()?;
    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(format!("harness: {e}")),
        _ => None,
    }
}

/// What a [`Writer`] did.
#[derive(Debug, Default, Clone)]
pub struct WriteLog {
    /// `(key, value)` of every put etcdctl reported `OK` for, in order.
    pub acked: Vec<(String, String)>,
    /// `(key, endpoint, error lines)` of every put that failed (it may or may not have been applied).
    pub failed: Vec<(String, String, String)>,
}

/// A background thread doing sequential `etcdctl put <prefix><i:06> v<i>`, round-robin over a set of
/// endpoints (`--dial-timeout 1s --command-timeout 3s`), recording which puts were acknowledged.
pub struct Writer {
    stop: Arc<AtomicBool>,
    endpoints: Arc<Mutex<Vec<String>>>,
    log: Arc<Mutex<WriteLog>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(endpoints: Vec<String>, prefix: &str) -> Writer {
        assert!(!endpoints.is_empty());
        let stop = Arc::new(AtomicBool::new(false));
        let endpoints = Arc::new(Mutex::new(endpoints));
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let handle = {
            let (stop, endpoints, log, prefix) = (stop.clone(), endpoints.clone(), log.clone(), prefix.to_string());
            thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let ep = {
                        let eps = endpoints.lock().unwrap();
                        eps[i % eps.len()].clone()
                    };
                    let (key, value) = (format!("{prefix}{i:06}"), format!("v{i}"));
                    // A killed member refuses connections; etcdctl would spend its whole dial timeout
                    // on it, so such a put fails fast without etcdctl.
                    let result = match connect_refused(&ep) {
                        Some(e) => Err(e),
                        None => {
                            let out = etcdctl_at(
                                &ep,
                                &["--dial-timeout", "1s", "--command-timeout", "3s", "put", &key, &value],
                                None,
                            );
                            if out.success() && out.stdout == "OK\n" {
                                Ok(())
                            } else {
                                Err(out.error_lines().join(" | "))
                            }
                        }
                    };
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    match result {
                        Ok(()) => log.acked.push((key, value)),
                        Err(e) => log.failed.push((key, ep, e)),
                    }
                    i += 1;
                }
            })
        };
        Writer { stop, endpoints, log, handle: Some(handle) }
    }

    /// Replaces the endpoints used from the next put on.
    pub fn set_endpoints(&self, endpoints: Vec<String>) {
        assert!(!endpoints.is_empty());
        *self.endpoints.lock().unwrap() = endpoints;
    }

    /// Number of acknowledged puts so far.
    pub fn acked(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).acked.len()
    }

    /// The most recent acknowledged put.
    pub fn last_acked(&self) -> Option<(String, String)> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).acked.last().cloned()
    }

    /// Waits until at least `n` puts have been acknowledged.
    #[track_caller]
    pub fn wait_acked(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.acked() < n {
            if Instant::now() >= deadline {
                let log = self.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let recent: Vec<_> = log.failed.iter().rev().take(5).collect();
                panic!(
                    "writer: {} of {n} puts acknowledged after {timeout:?}; recent failures: {recent:#?}",
                    log.acked.len()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the thread (after its current put) and returns what it did.
    pub fn stop(mut self) -> WriteLog {
        self.stop_thread();
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// Puts `<prefix><i:05>` = `v<i>` for `i` in `0..n` over the raw gRPC client, from `threads` concurrent
/// connections spread over `endpoints`; each put is retried a few times, then the call panics. Returns
/// how long it took.
#[track_caller]
pub fn put_many_grpc(endpoints: &[String], prefix: &str, n: usize, threads: usize) -> Duration {
    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..threads {
            let ep = endpoints[t % endpoints.len()].clone();
            s.spawn(move || {
                let mut client = grpc::Client::connect(&ep).unwrap_or_else(|e| panic!("connect {ep}: {e:?}"));
                for i in (t..n).step_by(threads) {
                    let (key, value) = (format!("{prefix}{i:05}"), format!("v{i}"));
                    let mut attempt = 0;
                    loop {
                        match client.put(PutRequest::new(&key, &value)) {
                            Ok(_) => break,
                            Err(e) if attempt < 5 => {
                                attempt += 1;
                                eprintln!("put {key} via {ep} failed ({e:?}), retrying");
                                thread::sleep(Duration::from_millis(200));
                            }
                            Err(e) => panic!("put {key} via {ep} failed: {e:?}"),
                        }
                    }
                }
            });
        }
    });
    start.elapsed()
}

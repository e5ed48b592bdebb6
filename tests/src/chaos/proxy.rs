//! Latency and loss without `tc netem` (this kernel has no netem qdisc): a fault proxy in front of each
//! member's peer port. The member listens for peers on [`PROXIED_PORT`] and advertises port 2380, where
//! its [`Proxy`] listens (in the member's network namespace) and forwards each connection to it, both
//! directions, every chunk held for the current [`Shape`]: `delay` added, and `loss_pct` % of chunks
//! held a further [`RTO`] — what a lost segment costs a TCP stream (it is retransmitted), since bytes
//! cannot be dropped from a stream without breaking it.
//!
//! One thread accepts (it entered the namespace with `setns`, so the sockets it makes live there);
//! each direction of a connection is a reader thread and a writer thread joined by a channel of
//! `(due instant, bytes)` (due instants never decrease: the stream stays in order).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::rng::Rng;

/// The port a proxied member listens for its peers on (its advertised peer port 2380 is the proxy's).
pub const PROXIED_PORT: u16 = 2390;
/// What a lost chunk costs: Linux's minimum retransmission timeout.
pub const RTO: Duration = Duration::from_millis(200);

/// How a proxy treats the bytes it forwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    pub delay: Duration,
    pub loss_pct: u64,
}

/// A proxy in a member's namespace (see the module docs); stopped when dropped.
pub struct Proxy {
    shape: Arc<Mutex<Shape>>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<thread::JoinHandle<()>>,
}

static CONN_SEQ: AtomicU64 = AtomicU64::new(0);

impl Proxy {
    /// Listens on `listen` inside network namespace `ns` and forwards to `target` (from there too).
    pub fn start(ns: &str, listen: SocketAddr, target: SocketAddr) -> Result<Proxy, String> {
        let shape = Arc::new(Mutex::new(Shape::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let ns_path = format!("/var/run/netns/{ns}");
        let (s, st, cs) = (shape.clone(), stop.clone(), conns.clone());
        let accept = thread::Builder::new()
            .name(format!("proxy-{ns}"))
            .spawn(move || {
                let listener = enter(&ns_path).and_then(|()| {
                    let l = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
                    l.set_nonblocking(true).map_err(|e| e.to_string())?;
                    Ok(l)
                });
                let listener = match listener {
                    Ok(l) => {
                        let _ = ready_tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                accept_loop(listener, target, &s, &st, &cs);
            })
            .map_err(|e| e.to_string())?;
        ready_rx.recv().map_err(|e| e.to_string())??;
        Ok(Proxy { shape, stop, conns, accept: Some(accept) })
    }

    /// From now on, every chunk forwarded is treated as `shape` says.
    pub fn set(&self, shape: Shape) {
        *self.shape.lock().unwrap() = shape;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Moves this thread into the network namespace at `path`.
fn enter(path: &str) -> Result<(), String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    // SAFETY: setns(2) on a namespace file we hold open; it changes only this thread's namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    shape: &Arc<Mutex<Shape>>,
    stop: &AtomicBool,
    conns: &Arc<Mutex<Vec<TcpStream>>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(_) => continue,
        };
        // Made here: in the member's namespace. A member that is down refuses: so does the proxy.
        let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else { continue };
        let _ = client.set_nonblocking(false);
        for s in [&client, &server] {
            let _ = s.set_nodelay(true);
        }
        let seq = CONN_SEQ.fetch_add(1, Ordering::Relaxed);
        let mut list = conns.lock().unwrap();
        list.retain(|c| c.peer_addr().is_ok());
        for (from, to, salt) in [(&client, &server, 2 * seq), (&server, &client, 2 * seq + 1)] {
            let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else { continue };
            pipe(from, to, shape.clone(), Rng::new(salt));
        }
        list.extend([client, server]);
    }
}

/// Forwards `from` to `to`, each chunk held as the shape says at the time it was read.
fn pipe(mut from: TcpStream, mut to: TcpStream, shape: Arc<Mutex<Shape>>, mut rng: Rng) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        let mut last = Instant::now();
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let s = *shape.lock().unwrap();
            let mut due = Instant::now() + s.delay;
            if s.loss_pct > 0 && rng.percent(s.loss_pct) {
                due += RTO;
            }
            last = last.max(due);
            if tx.send((last, buf[..n].to_vec())).is_err() {
                break;
            }
        }
        // Dropping `tx` ends the writer once it wrote what is queued.
    });
    thread::spawn(move || {
        for (due, bytes) in rx {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

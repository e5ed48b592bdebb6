//! What one unauthenticated connection can make a member hold or do (issue 10: HTTP/2 header memory,
//! connection limits, file descriptor exhaustion), probed over raw sockets with hand-written HTTP/2 frames
//! and HPACK, against etcd 3.4 and modkv alike. After every probe the member must answer with the keys put
//! before it; the growth of the server's resident memory (`VmRSS`, sampled during the probe) is printed
//! beside etcd's and bounded generously per hostile connection.
//!
//! - `header_block_bombs`: header blocks of 64 KiB that decode to ~250 MB (one 4000-byte HPACK table entry
//!   referred to over and over), on the client and the peer port;
//! - `continuation_flood`: a header block that never ends, 32 MiB of CONTINUATION frames;
//! - `oversized_frame`: a frame announcing 1 MiB (over the 16 KiB frame limit), half sent: closed at once;
//! - `no_protocol`: connections that never finish the HTTP/2 preface (modkv closes them, etcd does not);
//! - `grpc_message_over_the_receive_limit`: etcd's `ResourceExhausted` answer, also before the message is
//!   complete;
//! - `file_descriptors_run_out`: more connections than the process may open: the log stays small and the
//!   member serves again once they are gone;
//! - `huge_max_request_bytes` (modkv only): `--max-request-bytes` near `u64::MAX` does not wrap around.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use modkv_tests::grpc::{self, PutRequest};
use modkv_tests::*;

use modkv_tests::h2frame::{frame, CONTINUATION, DATA, END_HEADERS, END_STREAM, HEADERS, MAX_FRAME, PREFACE, SETTINGS};

/// The bound on resident memory growth per hostile connection (generous: the point is that it does not
/// grow with what the connection sends).
const RSS_PER_CONNECTION_KB: u64 = 32 * 1024;

// ---------------------------------------------------------------------------
// Frames, HPACK, connections
// ---------------------------------------------------------------------------

/// An HPACK string literal (no Huffman coding).
fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    let mut n = s.len();
    if n < 127 {
        out.push(n as u8);
    } else {
        out.push(127);
        n -= 127;
        while n >= 128 {
            out.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        out.push(n as u8);
    }
    out.extend_from_slice(s);
}

/// A header block of `len` bytes that decodes to ~4 KB per byte: a 4000-byte value added to the HPACK
/// table, then referred to (indexed field 62, one byte) until the block is full.
fn bomb_block(len: usize) -> Vec<u8> {
    let mut b = vec![0x40]; // literal with incremental indexing, new name
    hpack_str(&mut b, b"x-bomb");
    hpack_str(&mut b, &[b'v'; 4000]);
    b.resize(len, 0x80 | 62);
    b
}

/// `block` as a HEADERS frame on `stream` and as many CONTINUATION frames as it needs.
fn header_frames(stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = block.chunks(MAX_FRAME).collect();
    for (i, c) in chunks.iter().enumerate() {
        let mut flags = if i + 1 == chunks.len() { END_HEADERS } else { 0 };
        if i == 0 && end_stream {
            flags |= END_STREAM;
        }
        out.extend(frame(if i == 0 { HEADERS } else { CONTINUATION }, flags, stream, c));
    }
    out
}

/// A connection to `port` that has sent the HTTP/2 preface and an empty SETTINGS frame.
fn h2_connect(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).unwrap();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    s.write_all(&hello).expect("send the preface");
    s
}

/// How the connection ended: waits up to `limit` for EOF or a reset, reading (and keeping) what the
/// server sends; the time it took (`None` if still open) and a description of what was received.
fn wait_closed(s: &mut TcpStream, limit: Duration) -> (Option<Duration>, String) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        let Some(left) = limit.checked_sub(start.elapsed()) else { break None };
        s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break Some(start.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break Some(start.elapsed()),
        }
    };
    (closed, describe(&got))
}

/// The frames in `bytes` by kind (GOAWAY and RST_STREAM with their error code), or the first line of an
/// HTTP/1.1 answer.
fn describe(bytes: &[u8]) -> String {
    if bytes.starts_with(b"HTTP/") {
        return String::from_utf8_lossy(bytes.split(|&b| b == b'\r').next().unwrap_or_default()).into_owned();
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[pos], bytes[pos + 1], bytes[pos + 2]]) as usize;
        let p = &bytes[(pos + 9).min(bytes.len())..(pos + 9 + len).min(bytes.len())];
        let code = |at: usize| p.get(at..at + 4).map_or(0, |c| u32::from_be_bytes(c.try_into().unwrap()));
        out.push(match bytes[pos + 3] {
            0x0 => "DATA".to_string(),
            0x1 => "HEADERS".to_string(),
            0x3 => format!("RST_STREAM({})", code(0)),
            0x4 => "SETTINGS".to_string(),
            0x6 => "PING".to_string(),
            0x7 => format!("GOAWAY({})", code(4)),
            0x8 => "WINDOW_UPDATE".to_string(),
            k => format!("frame type {k}"),
        });
        pos += 9 + len;
    }
    out.join(" ")
}

// ---------------------------------------------------------------------------
// The member
// ---------------------------------------------------------------------------

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Samples the resident memory of `pid` every 20 ms until dropped; [`RssPeak::growth_kb`] is the peak over
/// the level when it started.
struct RssPeak {
    pid: u32,
    before: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: Option<thread::JoinHandle<()>>,
}

impl RssPeak {
    fn start(pid: u32) -> RssPeak {
        let before = rss_kb(pid);
        let (peak, stop) = (Arc::new(AtomicU64::new(before)), Arc::new(AtomicBool::new(false)));
        let (p, s) = (peak.clone(), stop.clone());
        let sampler = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    if let Some(kb) = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    {
                        p.fetch_max(kb, Ordering::Relaxed);
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        RssPeak { pid, before, peak, stop, sampler: Some(sampler) }
    }

    /// Stops sampling; prints the peak growth and returns it per connection (KB).
    fn growth(mut self, kind: Kind, what: &str, connections: u64) -> u64 {
        self.peak.fetch_max(rss_kb(self.pid), Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.sampler.take() {
            t.join().unwrap();
        }
        let growth = self.peak.load(Ordering::Relaxed).saturating_sub(self.before);
        println!(
            "{kind} {what}: RSS {} KB before, peak +{growth} KB over {connections} connection(s) (+{} KB each)",
            self.before,
            growth / connections
        );
        growth / connections
    }

    /// Like [`RssPeak::growth`], asserting that it stays under the bound.
    #[track_caller]
    fn check(self, kind: Kind, what: &str, connections: u64) {
        let each = self.growth(kind, what, connections);
        assert!(each < RSS_PER_CONNECTION_KB, "{kind} {what}: RSS grew by {each} KB per connection");
    }
}

impl Drop for RssPeak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn start(kind: Kind, args: &[&str]) -> (Server, u32) {
    let s = Server::start(kind, ServerOpts::new().args(args.iter().copied()));
    for (k, v) in [("conn/1", "one"), ("conn/2", "two")] {
        assert_eq!(s.ctl_ok(&["put", k, v]), "OK\n");
    }
    let pid = s.pid().expect("server pid");
    (s, pid)
}

/// The member still answers, with the keys put before the probes, and takes a new one.
#[track_caller]
fn assert_serves(s: &mut Server) {
    assert!(s.is_running(), "{} is gone", s.kind);
    assert_eq!(s.ctl_ok(&["get", "conn/1", "conn/3"]), "conn/1\none\nconn/2\ntwo\n");
    assert_eq!(s.ctl_ok(&["put", "conn/after", "x"]), "OK\n");
    assert_eq!(s.ctl_ok(&["get", "conn/after", "--print-value-only"]), "x\n");
}

// ---------------------------------------------------------------------------
// The probes
// ---------------------------------------------------------------------------

both_kinds! {
    fn header_block_bombs(kind) {
        let (mut s, pid) = start(kind, &[]);
        // 4 connections on each port, each with one 64 KiB block that decodes to ~250 MB.
        let block = bomb_block(64 * 1024);
        let rss = RssPeak::start(pid);
        let mut conns = Vec::new();
        for port in [s.client_port, s.peer_port] {
            for i in 0..4 {
                let mut c = h2_connect(port);
                let _ = c.write_all(&header_frames(1 + 2 * i, &block, true));
                conns.push(c);
            }
        }
        thread::sleep(Duration::from_secs(2));
        rss.check(kind, "64 KiB header blocks decoding to 250 MB", conns.len() as u64);
        for (i, mut c) in conns.into_iter().enumerate() {
            let (closed, got) = wait_closed(&mut c, Duration::from_millis(500));
            println!("{kind} bomb connection {i}: closed: {closed:?}, received: {got}");
        }
        assert_serves(&mut s);
    }

    fn continuation_flood(kind) {
        let (mut s, pid) = start(kind, &[]);
        // Small header fields, 1170 to a frame, ~50 KB of header list per 16 KiB frame; never END_HEADERS.
        let mut fields = Vec::new();
        while fields.len() + 14 <= MAX_FRAME {
            fields.extend_from_slice(&[0x00, 1, b'a', 10]);
            fields.extend_from_slice(&[b'b'; 10]);
        }
        let continuation = frame(CONTINUATION, 0, 1, &fields);
        for port in [s.client_port, s.peer_port] {
            let rss = RssPeak::start(pid);
            let mut c = h2_connect(port);
            let mut sent = 0usize;
            if c.write_all(&frame(HEADERS, 0, 1, &fields)).is_ok() {
                while sent < 32 << 20 && c.write_all(&continuation).is_ok() {
                    sent += continuation.len();
                }
            }
            thread::sleep(Duration::from_millis(500));
            // Measured while the connection is still open. etcd 3.4 (its Go HTTP/2 predates the limit on
            // CONTINUATION frames) reads the flood to the end, its heap growing with it: not bounded there.
            let what = format!("CONTINUATION flood on port {port} ({} KiB sent)", sent >> 10);
            if kind == Kind::Modkv {
                rss.check(kind, &what, 1);
            } else {
                rss.growth(kind, &what, 1);
            }
            let (closed, got) = wait_closed(&mut c, Duration::from_millis(500));
            println!("{kind} flood on port {port}: closed: {closed:?}, received: {got}");
        }
        assert_serves(&mut s);
    }

    fn oversized_frame(kind) {
        let (mut s, pid) = start(kind, &[]);
        let rss = RssPeak::start(pid);
        for port in [s.client_port, s.peer_port] {
            let mut c = h2_connect(port);
            // A DATA frame announcing 1 MiB (the limit is 16 KiB), of which 1000 bytes come.
            let mut f = frame(DATA, 0, 1, &[]);
            f[..3].copy_from_slice(&[0x10, 0, 0]);
            f.extend_from_slice(&[b'd'; 1000]);
            let _ = c.write_all(&f);
            // etcd closes at once; the bound is generous.
            let (closed, got) = wait_closed(&mut c, Duration::from_secs(10));
            println!("{kind} oversized frame on port {port}: closed after {closed:?}, received: {got}");
            assert!(closed.is_some(), "{kind} kept the connection open (port {port}); received: {got}");
        }
        rss.check(kind, "half-sent oversized frames", 2);
        assert_serves(&mut s);
    }

    fn no_protocol(kind) {
        let (mut s, pid) = start(kind, &[]);
        let rss = RssPeak::start(pid);
        // 20 connections that say nothing, 20 that stop in the middle of the HTTP/2 preface.
        let mut conns = Vec::new();
        for i in 0..40 {
            let mut c = TcpStream::connect(("127.0.0.1", s.client_port)).expect("connect");
            if i % 2 == 1 {
                c.write_all(&PREFACE[..16]).unwrap();
            }
            conns.push(c);
        }
        // The member serves others meanwhile.
        assert_serves(&mut s);
        let start = Instant::now();
        let mut open = 0;
        for c in conns.iter_mut() {
            let (closed, _) = wait_closed(c, Duration::from_secs(30).saturating_sub(start.elapsed()));
            open += usize::from(closed.is_none());
        }
        println!("{kind}: {open} of 40 connections without a protocol still open after {:?}", start.elapsed());
        rss.check(kind, "connections without a protocol", 40);
        // etcd (cmux without a read timeout) keeps them for as long as the client likes; modkv closes them
        // after 10 s.
        if kind == Kind::Modkv {
            assert_eq!(open, 0, "connections without a protocol are closed");
        }
        assert_serves(&mut s);
    }

    fn grpc_message_over_the_receive_limit(kind) {
        let (mut s, _) = start(kind, &[]);
        // etcd's receive limit: --max-request-bytes (1.5 MiB by default) + 512 KiB.
        let max = 1_572_864 + 512 * 1024;
        let req = PutRequest::new("conn/big", &"b".repeat(3_000_000));
        let len = prost::Message::encoded_len(&req);
        let err = grpc::unary_once::<_, grpc::PutResponse>(&s.endpoint(), "/etcdserverpb.KV/Put", req).unwrap_err();
        assert_eq!(
            err,
            ("ResourceExhausted".to_string(), format!("grpc: received message larger than max ({len} vs. {max})"))
        );
        // Announced but not sent: refused on the 5-byte prefix, the rest is not waited for.
        let (status, message) = half_sent_put(s.client_port, 100_000_000);
        assert_eq!(
            (status.as_str(), message.as_str()),
            ("8", format!("grpc: received message larger than max (100000000 vs. {max})").as_str())
        );
        // Under the limit but over --max-request-bytes: the server's own answer (errors.rs has more).
        let req = PutRequest::new("conn/big", &"b".repeat(1_600_000));
        let err = grpc::unary_once::<_, grpc::PutResponse>(&s.endpoint(), "/etcdserverpb.KV/Put", req).unwrap_err();
        assert_eq!(err, ("InvalidArgument".to_string(), "etcdserver: request is too large".to_string()));
        assert_eq!(s.ctl_ok(&["get", "conn/big"]), "");
        assert_serves(&mut s);
    }

    fn file_descriptors_run_out(kind) {
        let (mut s, pid) = start(kind, &[]);
        // The process may open only a few more files than it has open now.
        let open = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64;
        let old = set_nofile(pid, open + 16);
        let log_before = std::fs::metadata(s.log_path()).unwrap().len();
        let mut conns = Vec::new();
        for _ in 0..200 {
            // Connecting works while the server cannot accept: the kernel queues the connections.
            match TcpStream::connect_timeout(&([127, 0, 0, 1], s.client_port).into(), Duration::from_secs(1)) {
                Ok(c) => conns.push(c),
                Err(e) => println!("{kind}: connect failed: {e}"),
            }
        }
        thread::sleep(Duration::from_secs(3));
        let logged = std::fs::metadata(s.log_path()).unwrap().len() - log_before;
        println!("{kind}: {} connections over the file limit, {logged} bytes logged in 3 s", conns.len());
        assert!(logged < 1 << 20, "{kind} logged {logged} bytes in 3 s while out of file descriptors");
        drop(conns);
        set_nofile(pid, old);
        // Serving again once the connections are gone (the accept loop pauses up to 1 s between tries).
        let deadline = Instant::now() + Duration::from_secs(20);
        while !s.etcdctl(&["get", "conn/1"]).success() {
            assert!(Instant::now() < deadline, "{kind} does not serve again");
            thread::sleep(Duration::from_millis(200));
        }
        assert_serves(&mut s);
    }
}

/// Sets the soft limit on open files of `pid`; the old one.
fn set_nofile(pid: u32, soft: u64) -> u64 {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: prlimit(2) on our own child process, with valid pointers.
    let rc = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit { rlim_cur: soft, rlim_max: old.rlim_max };
    // SAFETY: as above.
    let rc = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

/// A `grpc-message` as clients read it (gRPC percent-encodes what it likes; grpc-go only `%` and
/// non-printable bytes, tonic also spaces).
fn percent_decode(v: &[u8]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let hex = v.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (v[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// Starts a gRPC `KV/Put` whose message announces `len` bytes, sends 1000 of them and waits (10 s at
/// most) for the answer; its `grpc-status` and `grpc-message`.
fn half_sent_put(port: u16, len: u32) -> (String, String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
        tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let req = ::http::Request::post(format!("http://127.0.0.1:{port}/etcdserverpb.KV/Put"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (resp, mut body) = client.send_request(req, false).unwrap();
        let mut data = vec![0];
        data.extend_from_slice(&len.to_be_bytes());
        data.extend_from_slice(&[0x0a; 1000]);
        body.send_data(data.into(), false).unwrap();
        let answer = async {
            let resp = resp.await.expect("response");
            let (head, mut rbody) = resp.into_parts();
            // Trailers-only, or headers and then trailers.
            let trailers = if head.headers.contains_key("grpc-status") {
                head.headers
            } else {
                while rbody.data().await.is_some() {}
                rbody.trailers().await.expect("trailers").expect("trailers present")
            };
            let get = |k: &str| trailers.get(k).map(|v| v.as_bytes().to_vec()).unwrap_or_default();
            (String::from_utf8(get("grpc-status")).unwrap(), percent_decode(&get("grpc-message")))
        };
        tokio::time::timeout(Duration::from_secs(10), answer).await.expect("an answer before the message is complete")
    })
}

#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn huge_max_request_bytes() {
    // etcd adds its gRPC overhead to the flag in a 64-bit integer, which wraps around; modkv saturates.
    let (mut s, _) = start(Kind::Modkv, &["--max-request-bytes", "18446744073709551615"]);
    let req = PutRequest::new("conn/big", &"b".repeat(600_000));
    let resp = grpc::unary_once::<_, grpc::PutResponse>(&s.endpoint(), "/etcdserverpb.KV/Put", req);
    assert!(resp.is_ok(), "{resp:?}");
    assert_eq!(s.ctl_ok(&["get", "conn/big", "--print-value-only"]).len(), 600_001);
    assert_serves(&mut s);
}

//! Bad connections do not hurt others: with 50 connections stalled in the middle of an HTTP/1.1 request
//! line, 50 stalled in the middle of the HTTP/2 connection preface, 50 that never send a byte and 10
//! stalled in a request body shorter than its `Content-Length`, all open on the client port, etcdctl
//! (gRPC), `/health`, the JSON gateway and raw gRPC each answer within [`QUICK`]. A few of the stalled
//! connections then finish what they started and are served; the rest are dropped, and the server still
//! serves. Nothing here depends on a server-side timeout (the stalls last a few seconds at most).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use modkv_tests::grpc::{self, RangeRequest};
use modkv_tests::http::{post, request};
use modkv_tests::*;

/// How long one request from a well-behaved client may take while the bad ones are open (etcdctl's
/// includes starting the process).
const QUICK: Duration = Duration::from_secs(3);
const PARTIAL_LINE: usize = 50;
const PARTIAL_PREFACE: usize = 50;
const SILENT: usize = 50;
const PARTIAL_BODY: usize = 10;
/// How many of each kind are completed after the checks (the rest are just dropped).
const RESUMED: usize = 5;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty HTTP/2 SETTINGS frame (length 0, type 4, flags 0, stream 0).
const H2_EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Runs `f`, asserting that it took less than [`QUICK`].
#[track_caller]
fn quick<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    let took = t.elapsed();
    assert!(took < QUICK, "{what} took {took:?} with the stalled connections open");
    out
}

fn connect(s: &Server) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", s.client_port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

/// Opens a connection and sends `bytes` (possibly nothing).
fn stalled(s: &Server, bytes: &[u8]) -> TcpStream {
    let mut c = connect(s);
    c.write_all(bytes).expect("write the partial request");
    c
}

fn put_body(key: &str, value: &str) -> String {
    format!(r#"{{"key":"{}","value":"{}"}}"#, b64encode(key.as_bytes()), b64encode(value.as_bytes()))
}

fn post_head(path: &str, len: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
}

/// Reads an HTTP/1.1 response up to the server closing (the requests say `Connection: close`);
/// returns the status line and the raw rest.
fn read_response(c: &mut TcpStream) -> (String, String) {
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (line, rest) = text.split_once("\r\n").unwrap_or((&text, ""));
    (line.to_string(), rest.to_string())
}

/// Everything a well-behaved client does, each step within [`QUICK`]; `n` makes the keys unique.
fn well_behaved_clients_are_served(s: &Server, n: usize) {
    let key = format!("good/{n}");
    quick("etcdctl put", || assert_eq!(s.ctl_ok(&["put", &key, "v"]), "OK\n"));
    quick("etcdctl get", || assert_eq!(s.ctl_ok(&["get", &key, "--print-value-only"]), "v\n"));
    quick("GET /health", || {
        let r = request(&s.endpoint(), "GET", "/health", b"");
        assert_eq!((r.status, r.json()), (200, json!({"health": "true"})));
    });
    quick("gateway put", || {
        let r = post(&s.endpoint(), "/v3/kv/put", &put_body(&format!("gw/{n}"), "w"));
        assert_eq!(r.status, 200, "{}", r.text());
    });
    quick("gateway range", || {
        let r =
            post(&s.endpoint(), "/v3/kv/range", &format!(r#"{{"key":"{}"}}"#, b64encode(format!("gw/{n}").as_bytes())));
        assert_eq!((r.status, r.json()["kvs"][0]["value"].clone()), (200, json!(b64encode(b"w"))), "{}", r.text());
    });
    quick("raw gRPC range", || {
        let r = grpc::range(&s.endpoint(), RangeRequest::range(&key, "")).expect("gRPC range");
        assert_eq!(r.kvs.len(), 1);
        assert_eq!(r.kvs[0].value, b"v");
    });
}

both_kinds! {
    fn stalled_connections_do_not_block_others(kind) {
        let s = Server::start(kind, ServerOpts::new());
        well_behaved_clients_are_served(&s, 0); // revisions 2, 3

        let partial_line: Vec<TcpStream> = (0..PARTIAL_LINE).map(|_| stalled(&s, b"GET /heal")).collect();
        let partial_preface: Vec<TcpStream> = (0..PARTIAL_PREFACE).map(|_| stalled(&s, &H2_PREFACE[..10])).collect();
        let silent: Vec<TcpStream> = (0..SILENT).map(|_| stalled(&s, b"")).collect();
        let bodies: Vec<(TcpStream, String)> = (0..PARTIAL_BODY)
            .map(|i| {
                let body = put_body(&format!("slow/{i}"), &format!("slow-value-{i}"));
                let mut head = post_head("/v3/kv/put", body.len()).into_bytes();
                head.extend_from_slice(&body.as_bytes()[..body.len() / 2]);
                (stalled(&s, &head), body)
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));

        // With 160 bad connections open, everyone else is served promptly, twice over.
        well_behaved_clients_are_served(&s, 1); // 4, 5
        well_behaved_clients_are_served(&s, 2); // 6, 7

        // Slow is not dead: a few of each finish their request and get their answer.
        for mut c in partial_line.into_iter().take(RESUMED) {
            c.write_all(b"th HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
            let (status, rest) = read_response(&mut c);
            assert_eq!(status, "HTTP/1.1 200 OK", "resumed /health: {rest}");
            assert!(rest.contains(r#"{"health":"true"}"#), "resumed /health: {rest}");
        }
        for mut c in silent.into_iter().take(RESUMED) {
            c.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
            let (status, rest) = read_response(&mut c);
            assert_eq!(status, "HTTP/1.1 200 OK", "late /health: {rest}");
        }
        for mut c in partial_preface.into_iter().take(RESUMED) {
            c.write_all(&H2_PREFACE[10..]).unwrap();
            c.write_all(&H2_EMPTY_SETTINGS).unwrap();
            // The server's first frame is its SETTINGS frame.
            let mut frame = [0u8; 9];
            c.read_exact(&mut frame).expect("the server's SETTINGS frame");
            assert_eq!((frame[3], frame[5..9].to_vec()), (4, vec![0, 0, 0, 0]), "frame header {frame:?}");
        }
        for (i, (mut c, body)) in bodies.into_iter().enumerate() {
            if i >= RESUMED {
                continue; // dropped with the rest
            }
            c.write_all(&body.as_bytes()[body.len() / 2..]).unwrap();
            let (status, rest) = read_response(&mut c);
            assert_eq!(status, "HTTP/1.1 200 OK", "resumed put: {rest}");
            assert_eq!(s.ctl_ok(&["get", &format!("slow/{i}"), "--print-value-only"]), format!("slow-value-{i}\n"));
        } // revisions 8..=12; the other stalled bodies never became puts

        // Everything else was dropped above (moved into the loops, the remainder dropped with them).
        std::thread::sleep(Duration::from_millis(300));
        well_behaved_clients_are_served(&s, 3); // 13, 14
        assert_eq!(s.revision(), 14);
        let slow = s.ctl_ok(&["get", "slow/", "--prefix", "--keys-only"]);
        let want: String = (0..RESUMED).map(|i| format!("slow/{i}\n\n")).collect();
        assert_eq!(slow, want);
    }
}

//! The gateway's bidirectional calls (`/v3/watch`, `/v3/lease/keepalive`) with a body that arrives in
//! pieces: requests split anywhere are read as etcd's gateway reads them. modkv also serves each request
//! while the body is still open (a client may send its second watch request long after the first);
//! etcd cannot over HTTP/1.1 (Go's server reads the rest of the body before it writes the response), so
//! that part is modkv's own test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use modkv_tests::*;

/// A POST whose chunked body stays open, and its chunked response read line by line.
struct OpenCall {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    pending: Vec<u8>,
    head_read: bool,
}

impl OpenCall {
    fn start(s: &Server, path: &str, first: &str) -> OpenCall {
        let host = s.endpoint().trim_start_matches("http://").to_string();
        let mut stream = TcpStream::connect(&host).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut call = OpenCall { stream, reader, pending: Vec::new(), head_read: false };
        call.send(first);
        call
    }

    /// The response's status line and headers, read once.
    fn read_head(&mut self) {
        if std::mem::replace(&mut self.head_read, true) {
            return;
        }
        let mut status = String::new();
        self.reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
    }

    /// One more request in the open body.
    fn send(&mut self, json: &str) {
        if json.is_empty() {
            return; // an empty chunk would end the body
        }
        write!(self.stream, "{:x}\r\n{json}\r\n", json.len()).unwrap();
        self.stream.flush().unwrap();
    }

    fn end_body(&mut self) {
        self.stream.write_all(b"0\r\n\r\n").unwrap();
    }

    /// The next response message (one JSON line of the response body); `None` at its end.
    fn next(&mut self) -> Option<Value> {
        self.read_head();
        loop {
            if let Some(nl) = self.pending.iter().position(|&c| c == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let mut size = String::new();
            self.reader.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or_else(|_| panic!("chunk size {size:?}"));
            if n == 0 {
                return None;
            }
            let mut chunk = vec![0; n + 2];
            self.reader.read_exact(&mut chunk).unwrap();
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A body whose first request arrives in three pieces, with pauses; the rest of the body (more
/// requests) comes in one write with its end. (etcd's gateway, on Go's HTTP/1.1 server, drops what
/// arrives after it starts answering, so later requests must be in the buffer by then.)
fn send_in_pieces(call: &mut OpenCall, first: &str, rest: &str) {
    let (a, more) = first.split_at(first.len() / 3);
    let (b, c) = more.split_at(more.len() / 2);
    for piece in [a, b] {
        call.send(piece);
        std::thread::sleep(Duration::from_millis(50));
    }
    let last = format!("{c}{rest}");
    write!(call.stream, "{:x}\r\n{last}\r\n0\r\n\r\n", last.len()).unwrap();
}

both_kinds! {
    fn requests_split_across_chunks(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let watch_a = format!(r#"{{"create_request":{{"key":"{}"}}}}"#, b64encode(b"a"));
        let watch_b = format!(r#" {{"create_request":{{"key":"{}","prev_kv":true}}}}"#, b64encode(b"b"));
        let mut call = OpenCall::start(&s, "/v3/watch", "");
        send_in_pieces(&mut call, &watch_a, &watch_b);
        let created: Vec<Value> = (0..2).map(|_| call.next().unwrap()).collect();
        assert_eq!(created[0]["result"]["created"], json!(true), "{created:?}");
        assert_eq!(created[1]["result"]["watch_id"], json!("1"), "{created:?}");
        // The watchers stay after the body ends, as etcd's do.
        assert_eq!(s.ctl_ok(&["put", "b", "1"]), "OK\n");
        let event = call.next().unwrap();
        assert_eq!(event["result"]["watch_id"], json!("1"), "{event}");
        assert_eq!(event["result"]["events"][0]["kv"]["value"], json!(b64encode(b"1")), "{event}");

        let granted = http::post(&s.endpoint(), "/v3/lease/grant", r#"{"TTL":"60","ID":"1234"}"#).json();
        assert_eq!(granted["ID"], json!("1234"), "{granted}");
        let mut call = OpenCall::start(&s, "/v3/lease/keepalive", "");
        send_in_pieces(&mut call, r#"{"ID":"1234"}"#, r#"{"ID":"1234"} {"ID":"1234"}"#);
        for _ in 0..3 {
            let answer = call.next().unwrap();
            assert_eq!((&answer["result"]["ID"], &answer["result"]["TTL"]), (&json!("1234"), &json!("60")), "{answer}");
        }
        assert_eq!(call.next(), None);
    }
}

#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn watch_requests_are_served_while_the_body_is_open_modkv() {
    let s = Server::start(Kind::Modkv, ServerOpts::new());
    let mut call =
        OpenCall::start(&s, "/v3/watch", &format!(r#"{{"create_request":{{"key":"{}"}}}}"#, b64encode(b"a")));
    let created = call.next().unwrap();
    assert_eq!(created["result"]["created"], json!(true), "{created}");
    assert_eq!(s.ctl_ok(&["put", "a", "1"]), "OK\n");
    let event = call.next().unwrap();
    assert_eq!(event["result"]["events"][0]["kv"]["value"], json!(b64encode(b"1")), "{event}");
    // A second watch on the same stream, sent later.
    call.send(&format!(r#"{{"create_request":{{"key":"{}"}}}}"#, b64encode(b"b")));
    let created = call.next().unwrap();
    assert_eq!(created["result"]["created"], json!(true), "{created}");
    assert_eq!(created["result"]["watch_id"], json!("1"), "{created}");
    assert_eq!(s.ctl_ok(&["put", "b", "2"]), "OK\n");
    let event = call.next().unwrap();
    assert_eq!(event["result"]["watch_id"], json!("1"), "{event}");
    assert_eq!(event["result"]["events"][0]["kv"]["key"], json!(b64encode(b"b")), "{event}");
}

#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn keepalives_are_answered_while_the_body_is_open_modkv() {
    let s = Server::start(Kind::Modkv, ServerOpts::new());
    let granted = http::post(&s.endpoint(), "/v3/lease/grant", r#"{"TTL":"60","ID":"1234"}"#).json();
    assert_eq!(granted["ID"], json!("1234"), "{granted}");
    let mut call = OpenCall::start(&s, "/v3/lease/keepalive", r#"{"ID":"1234"}"#);
    for round in 0..3 {
        let answer = call.next().unwrap();
        assert_eq!((&answer["result"]["ID"], &answer["result"]["TTL"]), (&json!("1234"), &json!("60")), "{answer}");
        if round < 2 {
            call.send(r#"{"ID":"1234"}"#);
        }
    }
    // The call ends once the body ends and every request is answered.
    call.end_body();
    assert_eq!(call.next(), None);
}

//! The gateway's bidirectional calls (`/v3/watch`, `/v3/lease/keepalive`) with a body the client keeps
//! open: each request is served as it arrives, as etcd's grpc-gateway forwards it, not once the body
//! ends (a client may send its second watch request long after the first).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use modkv_tests::*;

/// A POST whose chunked body stays open, and its chunked response read line by line.
struct OpenCall {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    pending: Vec<u8>,
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
        let mut call = OpenCall { stream, reader, pending: Vec::new() };
        call.send(first);
        let mut status = String::new();
        call.reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{path}: {status}");
        loop {
            let mut line = String::new();
            call.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
        call
    }

    /// One more request in the open body.
    fn send(&mut self, json: &str) {
        write!(self.stream, "{:x}\r\n{json}\r\n", json.len()).unwrap();
        self.stream.flush().unwrap();
    }

    fn end_body(&mut self) {
        self.stream.write_all(b"0\r\n\r\n").unwrap();
    }

    /// The next response message (one JSON line of the response body); `None` at its end.
    fn next(&mut self) -> Option<Value> {
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

both_kinds! {
    fn watch_requests_are_served_while_the_body_is_open(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let mut call = OpenCall::start(&s, "/v3/watch", &format!(r#"{{"create_request":{{"key":"{}"}}}}"#, b64encode(b"a")));
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

    fn keepalives_are_answered_while_the_body_is_open(kind) {
        let s = Server::start(kind, ServerOpts::new());
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
}

//! A minimal blocking HTTP/1.1 client for the JSON gateway tests: one request per connection
//! (`Connection: close`), raw status, headers and body (chunked bodies are de-chunked), so tests see
//! exactly what the server wrote.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

/// How long one exchange may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body if it is not.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// `host:port` of an endpoint such as `http://127.0.0.1:2379`.
fn authority(endpoint: &str) -> &str {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// Sends one request and reads the whole response.
#[track_caller]
pub fn request(endpoint: &str, method: &str, path: &str, body: &[u8]) -> HttpResponse {
    request_with_headers(endpoint, method, path, body, &[])
}

/// Sends one request with extra headers (e.g. `Authorization: <token>`) and reads the whole response.
#[track_caller]
pub fn request_with_headers(
    endpoint: &str,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> HttpResponse {
    let host = authority(endpoint);
    let mut s = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    s.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(HTTP_TIMEOUT)).unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer before reading everything (e.g. a body it refuses); that is its answer.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        if raw.is_empty() {
            panic!("{method} {path}: reading the response: {e}");
        }
    }
    parse(&raw).unwrap_or_else(|| panic!("{method} {path}: malformed response: {}", String::from_utf8_lossy(&raw)))
}

/// `POST` with extra request headers (e.g. `Authorization: <token>`).
#[track_caller]
pub fn post_with_headers(endpoint: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let host = authority(endpoint);
    let mut s = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    s.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw).unwrap_or_else(|| panic!("POST {path}: malformed response: {}", String::from_utf8_lossy(&raw)))
}

/// `POST` with a JSON (or deliberately malformed) body.
#[track_caller]
pub fn post(endpoint: &str, path: &str, body: &str) -> HttpResponse {
    request(endpoint, "POST", path, body.as_bytes())
}

fn parse(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        let mut out = Vec::new();
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n")?;
            let size = std::str::from_utf8(&rest[..eol]).ok()?;
            let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[eol + 2..];
            if n == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..n)?);
            rest = rest.get(n + 2..)?;
        }
        out
    } else {
        rest.to_vec()
    };
    Some(HttpResponse { status, headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice(), r.header("content-length")), (200, &b"{}"[..], Some("2")));
        let r = parse(
            b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX: y\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.text().as_str()), (400, "abcde"));
        assert_eq!(authority("http://127.0.0.1:2379"), "127.0.0.1:2379");
    }
}

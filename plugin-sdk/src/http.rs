//! HTTP: what a route gets ([`Request`]) and answers ([`Response`], or anything [`IntoResponse`]), and
//! query-string and percent-encoding helpers ([`parse_query`], [`percent_decode`], [`percent_encode`]).

use std::fmt;

pub use crate::{Request, Response};

impl Request {
    /// The user who sent the request: the one its `Authorization` header's token names (a token from
    /// the gateway's `POST /v3/auth/authenticate`). `None` while auth is off or without a token; an
    /// invalid or expired token never reaches the plugin (the server answers 401), and while auth is on
    /// the `authorization` header is not passed on (the plugin never holds the user's token). To read
    /// keys as this user, bounded by what they may read: [`kv::Range::for_caller`](crate::kv::Range::for_caller).
    pub fn caller(&self) -> Option<&str> {
        self.caller.as_deref()
    }

    /// The first value of a query parameter, percent-decoded (`+` is a space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        parse_query(&self.query).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Every query parameter in order, percent-decoded.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        parse_query(&self.query)
    }

    /// The first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8, if it is.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The rest of the path after `prefix`, if the path is `prefix` or under it, with its leading `/`:
    /// with prefix `/ui`, `/ui` gives `""`, `/ui/api/keys` gives `"/api/keys"` (not `"api/keys"`), and
    /// `/uix` gives `None`.
    pub fn path_under(&self, prefix: &str) -> Option<&str> {
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        let rest = self.path.strip_prefix(prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }
}

impl Response {
    /// A response with a body and a `content-type`.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response { status, headers: vec![("content-type".into(), content_type.into())], body: body.into() }
    }

    /// `value` serialized as JSON (`application/json`). A value that cannot be serialized gives a 500.
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(mut body) => {
                body.push(b'\n');
                Self::new(status, "application/json", body)
            }
            Err(e) => Self::error(500, format!("serializing the response: {e}")),
        }
    }

    /// Plain text (`text/plain; charset=utf-8`).
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// HTML (`text/html; charset=utf-8`).
    pub fn html(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/html; charset=utf-8", body.into())
    }

    /// A JSON error, `{"error": "<message>"}`.
    pub fn error(status: u16, message: impl fmt::Display) -> Self {
        Self::json(status, &serde_json::json!({ "error": message.to_string() }))
    }

    /// A response with no body.
    pub fn empty(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: Vec::new() }
    }

    /// A `302 Found` to `location`.
    pub fn redirect(location: &str) -> Self {
        Self::empty(302).with_header("location", location)
    }

    /// Adds a header (a `content-type` given here replaces the one the constructor set).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if name.eq_ignore_ascii_case("content-type") {
            self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
        }
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The body as UTF-8 (lossy); handy in tests.
    pub fn body_string(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What a route function may return: a [`Response`], or a `Result` whose error answers for itself
/// (a [`kv::Error`](crate::kv::Error) is a 503 with `{"error": ...}`, or 403 for a denied grant).
pub trait IntoResponse {
    /// The response.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        }
    }
}

impl IntoResponse for crate::kv::Error {
    fn into_response(self) -> Response {
        let status = if self.0.starts_with("permission denied") { 403 } else { 503 };
        Response::error(status, self)
    }
}

/// Parses `a=1&b=x%20y&c` into `[("a","1"), ("b","x y"), ("c","")]`.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (a space); invalid escapes stay as they are, invalid UTF-8 becomes
/// U+FFFD.
pub fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode_bytes(s)).into_owned()
}

/// Like [`percent_decode`], keeping the bytes (keys need not be UTF-8).
pub fn percent_decode_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && hex(b[i + 1]).is_some() && hex(b[i + 2]).is_some() => {
                out.push(hex(b[i + 1]).unwrap() << 4 | hex(b[i + 2]).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Percent-encodes everything but `A-Z a-z 0-9 - _ . ~ /`, for building URLs and query strings.
pub fn percent_encode(s: impl AsRef<[u8]>) -> String {
    let mut out = String::new();
    for &c in s.as_ref() {
        if c.is_ascii_alphanumeric() || b"-_.~/".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        assert_eq!(
            parse_query("a=1&b=x%20y+z&c&&d=%2Fe%zz"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y z".into()),
                ("c".into(), "".into()),
                ("d".into(), "/e%zz".into())
            ]
        );
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%4"), "a%4");
        assert_eq!(percent_decode_bytes("%ff"), vec![0xff]);
        assert_eq!(percent_encode("a b/c&d=é"), "a%20b/c%26d%3D%C3%A9");
        let req = Request {
            method: "GET".into(),
            path: "/ui/api/keys".into(),
            query: "prefix=json%2F&limit=5".into(),
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: b"{\"a\":1}".to_vec(),
            caller: Some("alice".into()),
        };
        assert_eq!(req.caller(), Some("alice"));
        assert_eq!(req.query_param("prefix").as_deref(), Some("json/"));
        assert_eq!(req.query_param("nope"), None);
        assert_eq!(req.header("content-type"), Some("text/plain"));
        assert_eq!(req.path_under("/ui"), Some("/api/keys"));
        assert_eq!(req.path_under("/ui/"), Some("/api/keys"));
        assert_eq!(req.path_under("/u"), None);
        assert_eq!(req.json::<serde_json::Value>().unwrap()["a"], 1);
    }

    #[test]
    fn responses() {
        let r = Response::json(201, &serde_json::json!({"a": [1, 2]}));
        assert_eq!(r.status, 201);
        assert_eq!(r.body_string(), "{\"a\":[1,2]}\n");
        assert_eq!(r.headers, vec![("content-type".to_string(), "application/json".to_string())]);
        let r = Response::error(404, "not found");
        assert_eq!(r.body_string(), "{\"error\":\"not found\"}\n");
        let r = Response::html(200, "<p>").with_header("Content-Type", "text/html").with_header("x-a", "b");
        assert_eq!(r.headers.len(), 2);
        assert_eq!(Response::redirect("/ui/").headers, vec![("location".to_string(), "/ui/".to_string())]);
    }

    #[test]
    fn into_responses() {
        let ok: Result<Response, crate::kv::Error> = Ok(Response::text(200, "x"));
        assert_eq!(ok.into_response().status, 200);
        let down: Result<Response, crate::kv::Error> = Err(crate::kv::Error("etcdserver: no leader".into()));
        let r = down.into_response();
        assert_eq!((r.status, r.body_string()), (503, "{\"error\":\"etcdserver: no leader\"}\n".to_string()));
        let denied = crate::kv::Error("permission denied: plugin p may not read key \"k\"".into()).into_response();
        assert_eq!(denied.status, 403);
    }
}

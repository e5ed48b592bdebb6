//! `kv-browser`: a small web UI on the client port.
//!
//! - `GET /ui/`: an HTML+JS page that lists the keys under a prefix and shows a key's value (pretty
//!   JSON when it parses), using the two JSON routes below;
//! - `GET /ui/api/keys?prefix=json/&limit=100`: `{"revision", "prefix", "user", "count", "more", "keys":
//!   [{"key", "size", "create_revision", "mod_revision", "version", "lease"}]}`;
//! - `GET /ui/api/value?key=json/a`: `{"revision", "key", "value", "utf8", "size", "create_revision",
//!   "mod_revision", "version", "lease"}`, or 404 `{"error": "key not found: ..."}`.
//!
//! Both read for the caller (contract 0.3.0): the user the request's `Authorization` token names. With
//! auth on, a listing holds only the keys that user may read (`readable_by_caller`), a value is shown
//! only if they may read it (`for_caller`: 403 `etcdserver: permission denied`), and an anonymous
//! request is refused as etcd refuses an anonymous Range: 401 `etcdserver: user name is empty`. The
//! page then shows a login form; its script authenticates with the gateway (`POST
//! /v3/auth/authenticate`, the password never passes through this plugin), keeps the token in the tab's
//! `sessionStorage` and sends it in `Authorization`. With auth off everything is read as before.
//!
//! Read-only. `kv-browser.toml`'s `[config]`: `prefix` (the page's initial prefix, default every key),
//! `limit` (most keys listed, default 500), `serializable` (read the local member without a ReadIndex
//! round, default false).

use modkv_plugin_sdk::http::percent_decode_bytes;
use modkv_plugin_sdk::kv::{self, KeyValue, RangeResult};
use modkv_plugin_sdk::prelude::*;

struct KvBrowser;

const ROUTE: &str = "/ui";
const DEFAULT_LIMIT: i64 = 500;
const PAGE: &str = include_str!("page.html");

impl Plugin for KvBrowser {
    fn manifest() -> Manifest {
        Manifest::new("kv-browser", env!("CARGO_PKG_VERSION")).route(ROUTE).stateless()
    }

    fn handle_http(req: Request) -> Response {
        let settings = Settings {
            default_prefix: config::get_or("prefix", ""),
            max_limit: config::parse("limit").filter(|&n: &i64| n > 0).unwrap_or(DEFAULT_LIMIT),
            serializable: config::flag("serializable").unwrap_or(false),
        };
        handle(&req, &settings, &HostStore)
    }
}

export!(KvBrowser);

struct Settings {
    default_prefix: String,
    max_limit: i64,
    serializable: bool,
}

/// The reads the routes need, for the request's caller; the host in the plugin, a map in the tests.
trait Store {
    fn list(&self, prefix: &[u8], limit: i64, serializable: bool) -> kv::Result<RangeResult>;
    fn get(&self, key: &[u8], serializable: bool) -> kv::Result<RangeResult>;
}

struct HostStore;

impl Store for HostStore {
    /// Only the keys the caller may read.
    fn list(&self, prefix: &[u8], limit: i64, serializable: bool) -> kv::Result<RangeResult> {
        let range = kv::Range::prefix(prefix).limit(limit).readable_by_caller();
        if serializable { range.serializable() } else { range }.get()
    }
    /// Refused unless the caller may read the key.
    fn get(&self, key: &[u8], serializable: bool) -> kv::Result<RangeResult> {
        let range = kv::Range::key(key).for_caller();
        if serializable { range.serializable() } else { range }.get()
    }
}

fn handle(req: &Request, settings: &Settings, store: &dyn Store) -> Response {
    let Some(sub) = req.path_under(ROUTE) else {
        return Response::error(404, "not found");
    };
    if req.method != "GET" && req.method != "HEAD" {
        return Response::error(405, "method not allowed: kv-browser is read-only").with_header("allow", "GET, HEAD");
    }
    match sub {
        // Relative URLs in the page ("api/keys") need the trailing slash.
        "" => Response::redirect("/ui/"),
        "/" | "/index.html" => Response::html(200, PAGE).with_header("cache-control", "no-cache"),
        "/api/keys" => list_keys(req, settings, store),
        "/api/value" => show_value(req, settings, store),
        _ => Response::error(404, format_args!("not found: {}", req.path)),
    }
}

fn list_keys(req: &Request, settings: &Settings, store: &dyn Store) -> Response {
    let prefix = query_bytes(req, "prefix").unwrap_or_else(|| settings.default_prefix.as_bytes().to_vec());
    let limit = match req.query_param("limit").map(|l| l.parse::<i64>()) {
        None => settings.max_limit,
        Some(Ok(n)) if n > 0 => n.min(settings.max_limit),
        Some(_) => return Response::error(400, "limit must be a positive integer"),
    };
    match store.list(&prefix, limit, settings.serializable) {
        Ok(res) => Response::json(200, &keys_json(&prefix, req.caller(), &res)),
        Err(e) => store_error(e),
    }
}

fn show_value(req: &Request, settings: &Settings, store: &dyn Store) -> Response {
    let Some(key) = query_bytes(req, "key").filter(|k| !k.is_empty()) else {
        return Response::error(400, "missing query parameter: key");
    };
    match store.get(&key, settings.serializable) {
        Ok(res) => match res.kvs.first() {
            Some(kv) => Response::json(200, &value_json(kv, res.revision)),
            None => Response::error(404, format_args!("key not found: {}", String::from_utf8_lossy(&key))),
        },
        Err(e) => store_error(e),
    }
}

/// A failed read: 401 when the caller must log in (again), 403 outside the caller's permission or the
/// plugin's read grant, 502 otherwise (e.g. no leader).
fn store_error(e: kv::Error) -> Response {
    let status = match e.0.as_str() {
        "etcdserver: user name is empty" | "etcdserver: revision of auth store is old" => 401,
        "etcdserver: permission denied" => 403,
        m if m.starts_with("permission denied") => 403,
        _ => 502,
    };
    Response::error(status, e)
}

/// A query parameter's raw bytes (keys need not be UTF-8).
fn query_bytes(req: &Request, name: &str) -> Option<Vec<u8>> {
    req.query
        .split('&')
        .filter_map(|p| p.split_once('=').or(Some((p, ""))))
        .find(|(k, _)| percent_decode_bytes(k) == name.as_bytes())
        .map(|(_, v)| percent_decode_bytes(v))
}

fn keys_json(prefix: &[u8], user: Option<&str>, res: &RangeResult) -> serde_json::Value {
    let keys: Vec<_> = res
        .kvs
        .iter()
        .map(|kv| {
            json!({
                "key": kv.key_str(),
                "size": kv.value.len(),
                "create_revision": kv.create_revision,
                "mod_revision": kv.mod_revision,
                "version": kv.version,
                "lease": kv.lease,
            })
        })
        .collect();
    json!({
        "revision": res.revision,
        "prefix": String::from_utf8_lossy(prefix),
        "user": user,
        "count": res.count,
        "more": res.more,
        "keys": keys,
    })
}

fn value_json(kv: &KeyValue, revision: i64) -> serde_json::Value {
    json!({
        "revision": revision,
        "key": kv.key_str(),
        "value": kv.value_str(),
        "utf8": std::str::from_utf8(&kv.value).is_ok(),
        "size": kv.value.len(),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct MapStore(BTreeMap<Vec<u8>, Vec<u8>>);

    impl MapStore {
        fn kv(k: &[u8], v: &[u8], rev: i64) -> KeyValue {
            KeyValue {
                key: k.to_vec(),
                value: v.to_vec(),
                create_revision: rev,
                mod_revision: rev,
                version: 1,
                lease: 0,
            }
        }
    }

    impl Store for MapStore {
        fn list(&self, prefix: &[u8], limit: i64, _: bool) -> kv::Result<RangeResult> {
            let all: Vec<_> = self.0.iter().filter(|(k, _)| k.starts_with(prefix)).collect();
            let kvs: Vec<_> =
                all.iter().take(limit as usize).enumerate().map(|(i, (k, v))| Self::kv(k, v, i as i64 + 2)).collect();
            Ok(RangeResult { revision: 9, more: all.len() > kvs.len(), count: all.len() as i64, kvs })
        }
        fn get(&self, key: &[u8], _: bool) -> kv::Result<RangeResult> {
            let kvs: Vec<_> = self.0.get(key).map(|v| Self::kv(key, v, 5)).into_iter().collect();
            Ok(RangeResult { revision: 9, more: false, count: kvs.len() as i64, kvs })
        }
    }

    fn store() -> MapStore {
        MapStore(
            [(&b"json/a"[..], &br#"{"id":1}"#[..]), (b"json/b", b"[2]"), (b"other", b"x"), (b"bin/\xff", b"\xff\x00")]
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect(),
        )
    }

    fn get(path: &str, query: &str) -> (u16, serde_json::Value, Response) {
        let req = Request {
            method: "GET".into(),
            path: path.into(),
            query: query.into(),
            headers: vec![],
            body: vec![],
            caller: Some("alice".into()),
        };
        let settings = Settings { default_prefix: "json/".into(), max_limit: 3, serializable: false };
        let r = handle(&req, &settings, &store());
        let json = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
        (r.status, json, r)
    }

    #[test]
    fn page_and_redirect() {
        let (status, _, r) = get("/ui/", "");
        assert_eq!(status, 200);
        assert!(r.headers.contains(&("content-type".into(), "text/html; charset=utf-8".into())));
        let html = r.body_string();
        for needle in [
            "<title>modkv kv-browser</title>",
            "id=\"prefix\"",
            "id=\"keys\"",
            "id=\"value\"",
            "api/keys?prefix=",
            "<form id=\"login\" hidden>",
            "fetch(\"/v3/auth/authenticate\"",
            "sessionStorage.setItem(TOKEN, body.token)",
            "headers.authorization = token",
        ] {
            assert!(html.contains(needle), "page lacks {needle}");
        }
        let (status, _, r) = get("/ui", "");
        assert_eq!(status, 302);
        assert_eq!(r.headers, vec![("location".to_string(), "/ui/".to_string())]);
        assert_eq!(get("/ui/nope", "").0, 404);
        assert_eq!(get("/uix", "").0, 404);
    }

    #[test]
    fn lists_keys_under_a_prefix() {
        let (status, body, _) = get("/ui/api/keys", "prefix=json%2F");
        assert_eq!(status, 200);
        assert_eq!(body["revision"], 9);
        assert_eq!(body["prefix"], "json/");
        assert_eq!(body["user"], "alice");
        assert_eq!(body["count"], 2);
        assert_eq!(body["more"], false);
        let keys: Vec<_> = body["keys"].as_array().unwrap().iter().map(|k| k["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["json/a", "json/b"]);
        assert_eq!(body["keys"][0]["size"], 8);

        // The configured default prefix, the limit capped by the configured maximum, every key.
        assert_eq!(get("/ui/api/keys", "").1["prefix"], "json/");
        let (_, body, _) = get("/ui/api/keys", "prefix=&limit=100");
        assert_eq!(body["count"], 4);
        assert_eq!(body["keys"].as_array().unwrap().len(), 3);
        assert_eq!(body["more"], true);
        assert_eq!(get("/ui/api/keys", "limit=-1").0, 400);
        // Non-UTF-8 keys list lossily.
        assert_eq!(get("/ui/api/keys", "prefix=bin%2F").1["keys"][0]["key"], "bin/\u{fffd}");
    }

    #[test]
    fn shows_a_value() {
        let (status, body, _) = get("/ui/api/value", "key=json%2Fa");
        assert_eq!(status, 200);
        assert_eq!(body["key"], "json/a");
        assert_eq!(body["value"], r#"{"id":1}"#);
        assert_eq!(body["utf8"], true);
        assert_eq!(body["mod_revision"], 5);
        assert_eq!(get("/ui/api/value", "key=bin%2F%FF").1["utf8"], false);
        let (status, body, _) = get("/ui/api/value", "key=missing");
        assert_eq!(status, 404);
        assert_eq!(body["error"], "key not found: missing");
        assert_eq!(get("/ui/api/value", "").0, 400);
    }

    #[test]
    fn read_errors() {
        assert_eq!(store_error(kv::Error("permission denied: plugin kv-browser may not read x".into())).status, 403);
        assert_eq!(store_error(kv::Error("etcdserver: permission denied".into())).status, 403);
        let r = store_error(kv::Error("etcdserver: user name is empty".into()));
        assert_eq!((r.status, r.body_string()), (401, "{\"error\":\"etcdserver: user name is empty\"}\n".into()));
        assert_eq!(store_error(kv::Error("etcdserver: revision of auth store is old".into())).status, 401);
        let r = store_error(kv::Error("etcdserver: no leader".into()));
        assert_eq!(r.status, 502);
        assert_eq!(r.body_string(), "{\"error\":\"etcdserver: no leader\"}\n");
    }

    #[test]
    fn read_only() {
        let req = Request {
            method: "POST".into(),
            path: "/ui/api/keys".into(),
            query: "".into(),
            headers: vec![],
            body: vec![],
            caller: None,
        };
        let settings = Settings { default_prefix: String::new(), max_limit: 10, serializable: true };
        assert_eq!(handle(&req, &settings, &store()).status, 405);
    }
}

// Shared by `good`, `good-v2`, `v02` and `legacy` (each generates its own bindings first, and names its
// VERSION and `base_manifest`, which holds the fields its contract version has beyond these, and the
// caller's pages and hook: `caller_page`, `as_caller_page`, `who_decision`; current.rs or older.rs).
use std::sync::atomic::{AtomicU64, Ordering};
use modkv::plugin::host;
use modkv::plugin::types::{MetricDef, MetricKind};

struct Good;

/// Calls this instance answered (`GET /good/calls` tells): 1 on every call when each gets a fresh
/// instance.
static CALLS: AtomicU64 = AtomicU64::new(0);

fn json(status: u16, body: String) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into_bytes(),
    }
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `k=v&...` → the value of `name` (no percent-decoding: tests use plain keys).
fn param<'a>(query: &'a str, name: &str) -> &'a str {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map_or("", |(_, v)| v)
}

/// Standard base64 with padding (the `kv` page's byte strings).
fn b64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ABC[(n >> (18 - 6 * i)) as usize & 63] as char } else { '=' });
        }
    }
    out
}

/// Takes a u32 length and that many bytes off the front of `rest`.
fn field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let b = rest.get(4..4usize.checked_add(len)?)?;
    *rest = &rest[4 + len..];
    Some(b)
}

/// Reads the `kv` page's body: the op byte, then key, range-end and value (each a u32 length and the
/// bytes), the limit (i64) and serializable (one byte), all little-endian. `None`: malformed.
fn kv_args(body: &[u8]) -> Option<(u8, &[u8], &[u8], &[u8], i64, bool)> {
    let (&op, mut rest) = body.split_first()?;
    let (key, end, value) = (field(&mut rest)?, field(&mut rest)?, field(&mut rest)?);
    let limit = i64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    match rest.get(8..)? {
        [s] => Some((op, key, end, value, limit, *s != 0)),
        _ => None,
    }
}

/// The `kv` page: one host KV call with exactly the argument bytes given, answered with its result.
fn kv_call(body: &[u8]) -> HttpResponse {
    let Some((op, key, end, value, limit, serializable)) = kv_args(body) else {
        return json(400, r#"{"error":"malformed kv arguments"}"#.into());
    };
    let ok = match op {
        b'r' => host::range(key, end, limit, serializable).map(|r| {
            let kvs: Vec<String> = r
                .kvs
                .iter()
                .map(|kv| {
                    format!(
                        r#"{{"key":"{}","value":"{}","create_revision":{},"mod_revision":{},"version":{},"lease":{}}}"#,
                        b64(&kv.key),
                        b64(&kv.value),
                        kv.create_revision,
                        kv.mod_revision,
                        kv.version,
                        kv.lease
                    )
                })
                .collect();
            format!(
                r#"{{"revision":{},"count":{},"more":{},"kvs":[{}]}}"#,
                r.revision,
                r.count,
                r.more,
                kvs.join(",")
            )
        }),
        b'p' => host::put(key, value).map(|rev| format!(r#"{{"revision":{rev}}}"#)),
        b'd' => host::delete(key, end).map(|n| format!(r#"{{"deleted":{n}}}"#)),
        _ => return json(400, r#"{"error":"unknown kv op"}"#.into()),
    };
    match ok {
        Ok(result) => json(200, format!(r#"{{"ok":{result}}}"#)),
        Err(e) => json(200, format!(r#"{{"err":{}}}"#, quote(&e))),
    }
}

impl Guest for Good {
    fn manifest() -> Manifest {
        Manifest {
            // A plugin is known by its manifest's name, and its file must be named after it: the tests
            // install this component under several names, each with `[config] name = "<name>"`.
            name: host::config("name").unwrap_or_else(|| "good".into()),
            version: VERSION.into(),
            routes: vec!["/good".into()],
            hooked_prefixes: vec![b"guard/".to_vec(), b"up/".to_vec(), b"who/".to_vec()],
            metrics: vec![
                MetricDef {
                    name: "requests_total".into(),
                    help: "Requests served, by path".into(),
                    kind: MetricKind::Counter,
                    labels: vec!["path".into()],
                    buckets: vec![],
                },
                MetricDef {
                    name: "value_bytes".into(),
                    help: "Sizes of hooked values".into(),
                    kind: MetricKind::Histogram,
                    labels: vec![],
                    buckets: vec![10.0, 100.0, 1000.0],
                },
                MetricDef {
                    name: "last_status".into(),
                    help: "Status of the last response".into(),
                    kind: MetricKind::Gauge,
                    labels: vec![],
                    buckets: vec![],
                },
            ],
            ..base_manifest()
        }
    }

    fn handle_http(req: HttpRequest) -> HttpResponse {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        host::counter_add("requests_total", &[req.path.clone()], 1.0);
        host::log(host::Level::Info, &format!("good {VERSION} serving {} {}", req.method, req.path));
        // By the last path segment, so the plugin serves the same pages under any route prefix.
        let resp = match req.path.rsplit('/').next().unwrap_or("") {
            "hello" => {
                let greeting = host::config("greeting").unwrap_or_default();
                json(
                    200,
                    format!(
                        r#"{{"plugin":"good","version":{},"greeting":{},"method":{},"query":{},"body":{}}}"#,
                        quote(VERSION),
                        quote(&greeting),
                        quote(&req.method),
                        quote(&req.query),
                        quote(&String::from_utf8_lossy(&req.body)),
                    ),
                )
            }
            "get" => {
                let key = param(&req.query, "k");
                match host::range(key.as_bytes(), b"", 0, false) {
                    Ok(r) => {
                        let value = r.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                        json(
                            200,
                            format!(
                                r#"{{"revision":{},"count":{},"value":{}}}"#,
                                r.revision,
                                r.count,
                                value.map_or("null".to_string(), |v| quote(&v))
                            ),
                        )
                    }
                    Err(e) => json(403, format!(r#"{{"error":{}}}"#, quote(&e))),
                }
            }
            "calls" => json(200, format!(r#"{{"calls":{calls}}}"#)),
            // The names of the request's headers, in order.
            "headers" => {
                let names: Vec<String> = req.headers.iter().map(|(k, _)| quote(k)).collect();
                json(200, format!(r#"{{"headers":[{}]}}"#, names.join(",")))
            }
            // A misspelt metric name (the manifest defines `requests_total`): ignored, warned once.
            "typo" => {
                host::counter_add("request_total", &[], 1.0);
                json(200, "{}".into())
            }
            "put" => match host::put(param(&req.query, "k").as_bytes(), param(&req.query, "v").as_bytes()) {
                Ok(rev) => json(200, format!(r#"{{"revision":{rev}}}"#)),
                Err(e) => json(403, format!(r#"{{"error":{}}}"#, quote(&e))),
            },
            "delete" => match host::delete(param(&req.query, "k").as_bytes(), b"") {
                Ok(n) => json(200, format!(r#"{{"deleted":{n}}}"#)),
                Err(e) => json(403, format!(r#"{{"error":{}}}"#, quote(&e))),
            },
            "kv" => kv_call(&req.body),
            "caller" => caller_page(&req),
            "as-caller" => as_caller_page(&req),
            _ => json(404, r#"{"error":"no such page"}"#.into()),
        };
        host::gauge_set("last_status", &[], resp.status as f64);
        resp
    }

    fn pre_put(req: PutRequest) -> PutDecision {
        CALLS.fetch_add(1, Ordering::Relaxed);
        host::histogram_observe("value_bytes", &[], req.value.len() as f64);
        if req.key.starts_with(b"guard/") {
            let v = String::from_utf8_lossy(&req.value);
            let v = v.trim();
            if v.starts_with('{') && v.ends_with('}') {
                PutDecision::Allow
            } else if req.in_txn {
                PutDecision::Reject("value is not valid JSON (in a txn)".into())
            } else {
                PutDecision::Reject("value is not valid JSON".into())
            }
        } else if req.key.starts_with(b"up/") {
            PutDecision::Rewrite(req.value.to_ascii_uppercase())
        } else if req.key.starts_with(b"who/") {
            who_decision(&req)
        } else {
            PutDecision::Allow
        }
    }
}

export!(Good);

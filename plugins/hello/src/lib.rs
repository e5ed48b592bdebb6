//! `hello`: `GET /hello` answers with a greeting and the cluster's current revision, read through the
//! host's KV import. `GET /hello?name=ada` greets Ada. The greeting is the value of the key
//! `hello/greeting` if there is one, else `hello.toml`'s `[config] greeting`, else "hello"; the same
//! read gives the revision, so the plugin only needs the read grant `hello/`.

use modkv_plugin_sdk::prelude::*;

struct Hello;

/// A key whose value, when set, replaces the configured greeting.
const GREETING_KEY: &str = "hello/greeting";

impl Plugin for Hello {
    fn manifest() -> Manifest {
        Manifest::new("hello", env!("CARGO_PKG_VERSION")).route("/hello").stateless()
    }

    fn handle_http(req: Request) -> Response {
        if req.method != "GET" && req.method != "HEAD" {
            return Response::error(405, "method not allowed: use GET").with_header("allow", "GET, HEAD");
        }
        // One linearizable read: the stored greeting, if any, and the store's current revision.
        match kv::Range::key(GREETING_KEY).get() {
            Ok(res) => {
                let greeting = match res.kvs.first() {
                    Some(kv) => kv.value_str().trim().to_string(),
                    None => config::get_or("greeting", "hello"),
                };
                greet(&greeting, req.query_param("name").as_deref(), res.revision)
            }
            Err(e) => Response::error(503, format_args!("reading {GREETING_KEY}: {e}")),
        }
    }
}

export!(Hello);

/// The response body: `{"message": "hello, world", "plugin": "hello", "version": "0.1.0", "revision": 7}`.
fn greet(greeting: &str, name: Option<&str>, revision: i64) -> Response {
    let name = name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or("world");
    Response::json(
        200,
        &json!({
            "message": format!("{greeting}, {name}"),
            "plugin": "hello",
            "version": env!("CARGO_PKG_VERSION"),
            "revision": revision,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_with_the_revision() {
        let r = greet("hello", None, 42);
        assert_eq!(r.status, 200);
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["message"], "hello, world");
        assert_eq!(body["revision"], 42);
        assert_eq!(body["plugin"], "hello");
        let body: serde_json::Value = serde_json::from_slice(&greet("hi", Some(" ada "), 1).body).unwrap();
        assert_eq!(body["message"], "hi, ada");
    }

    #[test]
    fn manifest_serves_hello() {
        let m = Hello::manifest();
        assert_eq!(m.name, "hello");
        assert_eq!(m.routes, vec!["/hello"]);
        assert!(m.hooked_prefixes.is_empty());
    }
}

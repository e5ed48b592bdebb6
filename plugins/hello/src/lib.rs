//! `hello`: `GET /hello` answers with a greeting and the cluster's current revision, read through the
//! host's KV import. `GET /hello?name=ada` greets Ada. The greeting is the value of the key
//! `hello/greeting` if there is one, else `hello.toml`'s `[config] greeting`, else "hello"; the same
//! read gives the revision, so the plugin only needs the read grant `hello/`. Other methods than
//! GET/HEAD answer 405; a failed read (no leader, say) 503.
use modkv_plugin_sdk::prelude::*;

#[route("/hello", method = "GET", stateless)]
fn hello(req: Request) -> kv::Result<Response> {
    let res = kv::Range::key("hello/greeting").get()?;
    let greeting = res.kvs.first().map_or_else(|| config::get_or("greeting", "hello"), |kv| kv.value_str().into());
    Ok(greet(greeting.trim(), req.query_param("name").as_deref(), res.revision))
}

/// The response body: `{"message": "hello, world", "plugin": "hello", "revision": 7, "version": "0.1.0"}`.
fn greet(greeting: &str, name: Option<&str>, revision: i64) -> Response {
    let name = name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or("world");
    let (message, version) = (format!("{greeting}, {name}"), env!("CARGO_PKG_VERSION"));
    Response::json(200, &json!({ "message": message, "plugin": "hello", "revision": revision, "version": version }))
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

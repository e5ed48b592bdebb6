// `good` on the current contract (shared by `good` and `good-v2`, which name VERSION first): the
// bindings, the manifest fields beyond plugin.rs's, and the caller's pages and hook (contract 0.3.0).
// It says it is stateless when its config says `stateless = true`.
wit_bindgen::generate!({ path: "../../../plugin-sdk/wit", world: "plugin" });

fn base_manifest() -> Manifest {
    Manifest {
        name: String::new(),
        version: String::new(),
        routes: vec![],
        hooked_prefixes: vec![],
        metrics: vec![],
        stateless: host::config("stateless").as_deref() == Some("true"),
    }
}

/// `GET .../caller`: `{"caller": <the request's caller, or null>}`.
fn caller_page(req: &HttpRequest) -> HttpResponse {
    json(200, format!(r#"{{"caller":{}}}"#, req.caller.as_deref().map_or("null".to_string(), quote)))
}

/// `GET .../as-caller?prefix=app/&scope=readable&limit=2` (or `k=<key>` for one key; scope `whole` by
/// default): `range-for-caller`, answered with `{"revision","count","more","keys":[...]}` or
/// `{"err": <its error>}`.
fn as_caller_page(req: &HttpRequest) -> HttpResponse {
    use modkv::plugin::types::CallerScope;
    let q = &req.query;
    let scope = if param(q, "scope") == "readable" { CallerScope::Readable } else { CallerScope::Whole };
    let limit: i64 = param(q, "limit").parse().unwrap_or(0);
    let (key, end) = if q.split('&').any(|kv| kv.starts_with("prefix=")) {
        let prefix = param(q, "prefix").as_bytes().to_vec();
        let mut end = prefix.clone();
        while end.last() == Some(&0xff) {
            end.pop();
        }
        match end.last_mut() {
            Some(b) => *b += 1,
            None => end = vec![0],
        }
        (if prefix.is_empty() { vec![0] } else { prefix }, end)
    } else {
        (param(q, "k").as_bytes().to_vec(), Vec::new())
    };
    match host::range_for_caller(&key, &end, limit, false, scope) {
        Ok(r) => {
            let keys: Vec<String> = r.kvs.iter().map(|kv| quote(&String::from_utf8_lossy(&kv.key))).collect();
            json(
                200,
                format!(r#"{{"revision":{},"count":{},"more":{},"keys":[{}]}}"#, r.revision, r.count, r.more, keys.join(",")),
            )
        }
        Err(e) => json(200, format!(r#"{{"err":{}}}"#, quote(&e))),
    }
}

/// Puts under `who/` are stamped with their caller: `<value> by <user>` (`by nobody` without one).
fn who_decision(req: &PutRequest) -> PutDecision {
    let by = req.caller.as_deref().unwrap_or("nobody");
    PutDecision::Rewrite(format!("{} by {by}", String::from_utf8_lossy(&req.value)).into_bytes())
}

include!("plugin.rs");

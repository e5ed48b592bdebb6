// The caller's pages and hook of `good` built against a contract older than 0.3.0 (`legacy`, `v02`),
// which does not tell a plugin its caller: the pages say so, puts under `who/` are stamped with the
// contract's VERSION instead of a user.

fn caller_page(_req: &HttpRequest) -> HttpResponse {
    json(200, format!(r#"{{"caller":"unknown to {VERSION}"}}"#))
}

fn as_caller_page(_req: &HttpRequest) -> HttpResponse {
    json(404, format!(r#"{{"error":"no range-for-caller in {VERSION}"}}"#))
}

fn who_decision(req: &PutRequest) -> PutDecision {
    PutDecision::Rewrite(format!("{} by {VERSION}", String::from_utf8_lossy(&req.value)).into_bytes())
}

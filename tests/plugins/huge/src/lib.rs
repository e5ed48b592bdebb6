//! Hostile: answers with a body larger than the host's response limit (at /huge; /huge/small is fine).
wit_bindgen::generate!({ path: "../../../plugin-sdk/wit", world: "plugin" });

struct Huge;

impl Guest for Huge {
    fn manifest() -> Manifest {
        Manifest {
            name: "huge".into(),
            version: "1".into(),
            routes: vec!["/huge".into()],
            hooked_prefixes: vec![],
            metrics: vec![],
            // Reusable instances: failures must still drop them.
            stateless: true,
        }
    }
    fn handle_http(req: HttpRequest) -> HttpResponse {
        let size = if req.path == "/huge/small" { 1 << 20 } else { 24 << 20 };
        HttpResponse { status: 200, headers: vec![], body: vec![b'x'; size] }
    }
    fn pre_put(_req: PutRequest) -> PutDecision {
        PutDecision::Allow
    }
}

export!(Huge);

//! Hostile: panics (a trap) in its route and its pre-put hook.
wit_bindgen::generate!({ path: "../../../plugin-sdk/wit", world: "plugin" });

use modkv::plugin::host;

struct Crash;

impl Guest for Crash {
    fn manifest() -> Manifest {
        Manifest {
            // Installed under several names, each with `[config] name = "<name>"` (the file's name).
            name: host::config("name").unwrap_or_else(|| "crash".into()),
            version: "1".into(),
            routes: vec!["/crash".into()],
            hooked_prefixes: vec![b"crash/".to_vec()],
            metrics: vec![],
            // Reusable instances: failures must still drop them.
            stateless: true,
        }
    }
    fn handle_http(req: HttpRequest) -> HttpResponse {
        panic!("boom at {}", req.path)
    }
    fn pre_put(_req: PutRequest) -> PutDecision {
        panic!("hook boom")
    }
}

export!(Crash);

//! Hostile: allocates until its memory cap stops it.
wit_bindgen::generate!({ path: "../../../plugin-sdk/wit", world: "plugin" });

struct Hog;

impl Guest for Hog {
    fn manifest() -> Manifest {
        Manifest {
            name: "hog".into(),
            version: "1".into(),
            routes: vec!["/hog".into()],
            hooked_prefixes: vec![],
            metrics: vec![],
            // Reusable instances: failures must still drop them.
            stateless: true,
        }
    }
    fn handle_http(_req: HttpRequest) -> HttpResponse {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            chunks.push(core::hint::black_box(vec![7u8; 1 << 20]));
            if chunks.len() > 100_000 {
                break;
            }
        }
        HttpResponse { status: 200, headers: vec![], body: vec![chunks.len() as u8] }
    }
    fn pre_put(_req: PutRequest) -> PutDecision {
        PutDecision::Allow
    }
}

export!(Hog);

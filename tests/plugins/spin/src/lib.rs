//! Hostile: never returns (an infinite loop in every export but the manifest).
wit_bindgen::generate!({ path: "../../../plugin-sdk/wit", world: "plugin" });

struct Spin;

fn forever() -> ! {
    let mut i = 0u64;
    loop {
        i = core::hint::black_box(i.wrapping_add(1));
    }
}

impl Guest for Spin {
    fn manifest() -> Manifest {
        Manifest {
            name: "spin".into(),
            version: "1".into(),
            routes: vec!["/spin".into()],
            hooked_prefixes: vec![b"spin/".to_vec()],
            metrics: vec![],
            // Reusable instances: failures must still drop them.
            stateless: true,
        }
    }
    fn handle_http(_req: HttpRequest) -> HttpResponse {
        forever()
    }
    fn pre_put(_req: PutRequest) -> PutDecision {
        forever()
    }
}

export!(Spin);

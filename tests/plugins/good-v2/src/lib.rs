//! `good`, version 2 (for the hot reload test).
wit_bindgen::generate!({ path: "../../../plugin-sdk/wit", world: "plugin" });
const VERSION: &str = "2";

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

include!("../../good/src/plugin.rs");

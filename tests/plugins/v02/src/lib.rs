//! `good` built against contract 0.2.0 (`plugin-sdk/wit-0.2.0`: `manifest.stateless`, no caller): a
//! server must keep loading and calling components built before the contract grew.
wit_bindgen::generate!({ path: "../../../plugin-sdk/wit-0.2.0", world: "plugin" });
const VERSION: &str = "v02-0.2.0";

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

include!("../../good/src/older.rs");
include!("../../good/src/plugin.rs");

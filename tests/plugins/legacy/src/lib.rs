//! `good` built against contract 0.1.0 (`plugin-sdk/wit-0.1.0`, whose manifest has no `stateless`):
//! a server must keep loading and calling components built before the contract grew.
wit_bindgen::generate!({ path: "../../../plugin-sdk/wit-0.1.0", world: "plugin" });
const VERSION: &str = "legacy-0.1.0";

fn base_manifest() -> Manifest {
    Manifest { name: String::new(), version: String::new(), routes: vec![], hooked_prefixes: vec![], metrics: vec![] }
}

include!("../../good/src/older.rs");
include!("../../good/src/plugin.rs");

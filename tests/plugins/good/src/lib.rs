//! A plugin that behaves: routes under /good, a pre-put hook (JSON check under guard/, upper-casing
//! under up/), host KV calls and metrics. `good-v2` is the same code with another version, `legacy` the
//! same code built against contract 0.1.0. It says it is stateless when its config says
//! `stateless = true`.
wit_bindgen::generate!({ path: "../../../plugin-sdk/wit", world: "plugin" });
const VERSION: &str = "1";

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

include!("plugin.rs");

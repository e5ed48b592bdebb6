// `good` on the current contract (shared by `good` and `good-v2`, which name VERSION first): the
// bindings, and the manifest fields beyond plugin.rs's. It says it is stateless when its config says
// `stateless = true`.
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

include!("plugin.rs");

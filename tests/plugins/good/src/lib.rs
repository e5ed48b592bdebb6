//! A plugin that behaves: routes under /good, a pre-put hook (JSON check under guard/, upper-casing
//! under up/), host KV calls and metrics. `good-v2` is the same code with another version.
const VERSION: &str = "1";
include!("plugin.rs");

//! A plugin that behaves: routes under /good, a pre-put hook (JSON check under guard/, upper-casing
//! under up/), host KV calls and metrics. `good-v2` is the same code with another version, `legacy` the
//! same code built against contract 0.1.0.
const VERSION: &str = "1";
include!("current.rs");

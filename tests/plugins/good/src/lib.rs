//! A plugin that behaves: routes under /good, a pre-put hook (JSON check under guard/, upper-casing
//! under up/), host KV calls and metrics. `good-v2` is the same code with another version, `legacy` the
//! same code built against contract 0.1.0.
//!
//! Pages (by the path's last segment): `hello` (echo and config), `get`/`put`/`delete` (host KV calls
//! with `?k=`/`&v=`), `calls`, `typo` (an unknown metric), `headers` (the request's header names),
//! `caller` and `as-caller` (the caller, contract 0.3.0: current.rs / older.rs; puts under `who/` are
//! stamped with it), and `kv` for `tests/tests/plugin_imports.rs`,
//! which passes arbitrary bytes to the host KV imports. Its POST body, little-endian:
//!
//! ```text
//!   op: u8 ('r' range, 'p' put, 'd' delete)
//!   key, range_end, value: each u32 length + bytes (range_end unused by put, value only by put)
//!   limit: i64, serializable: u8 (range only)
//! ```
//!
//! It answers 200 with `{"ok": <result>}` (range: `{"revision","count","more","kvs":[{"key","value"
//! (base64),"create_revision","mod_revision","version","lease"}]}`; put: `{"revision"}`; delete:
//! `{"deleted"}`) or `{"err": "<the import's error text>"}`, and 400 for a malformed body.
const VERSION: &str = "1";
include!("current.rs");

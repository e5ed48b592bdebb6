//! Write modkv plugins in safe Rust.
//!
//! A modkv plugin is a WebAssembly component built against the WIT package `modkv:plugin@0.2.0`
//! (`wit/plugin.wit` in this crate; servers keep loading components built against earlier versions,
//! whose files are kept in `wit-<version>/`). The server loads every `*.wasm` in its `--plugin-dir`, and each
//! plugin can
//!
//! - serve **HTTP routes** on the client port, next to `/health` and `/metrics` ([`Plugin::handle_http`]);
//! - **validate or rewrite puts** under key prefixes before they enter the raft log, a plain Put or a put
//!   inside a Txn ([`Plugin::pre_put`]); a rejection reaches `etcdctl` as an error naming the plugin;
//! - define **metrics** that appear in `/metrics` as `modkv_plugin_<plugin>_<name>` ([`metrics`]);
//! - read and write keys through the host ([`kv`]), log into the server's log ([`log`]) and read its
//!   `[config]` table from `<name>.toml` beside the `.wasm` ([`config`]).
//!
//! This crate generates the WIT bindings for you (with the re-exported [`wit_bindgen`]); a plugin only
//! implements the [`Plugin`] trait and names its type in [`export!`].
//!
//! # A route plugin
//!
//! ```
//! use modkv_plugin_sdk::prelude::*;
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn manifest() -> Manifest {
//!         Manifest::new("hello", env!("CARGO_PKG_VERSION")).route("/hello").stateless()
//!     }
//!
//!     fn handle_http(_req: Request) -> Response {
//!         match kv::range("hello/") {
//!             Ok(res) => Response::json(200, &json!({ "hello": res.count, "revision": res.revision })),
//!             Err(e) => Response::error(503, e),
//!         }
//!     }
//! }
//!
//! export!(Hello);
//! ```
//!
//! Host calls are checked against the grants in the plugin's `<name>.toml` (nothing is granted by
//! default), so this one needs `hello.toml` beside `hello.wasm`:
//!
//! ```toml
//! [grants]
//! read = ["hello/"]
//! ```
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "hello"
//! version = "0.1.0"
//! edition = "2021"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! modkv-plugin-sdk = { path = "../../plugin-sdk" }
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` (`rustup target add wasm32-wasip2` once)
//! and copy `target/wasm32-wasip2/release/hello.wasm` into the server's `--plugin-dir`.
//!
//! # A complete plugin: route, pre-put hook, metrics, config
//!
//! ```
//! use modkv_plugin_sdk::prelude::*;
//!
//! struct Notes;
//!
//! impl Plugin for Notes {
//!     fn manifest() -> Manifest {
//!         Manifest::new("notes", "1.0.0")
//!             .route("/notes")
//!             .hook_prefix("notes/")
//!             .metric(MetricDef::counter("rejected", "Puts rejected").labels(&["reason"]))
//!             .metric(MetricDef::histogram("note_bytes", "Size of accepted notes").buckets(&[64.0, 1024.0]))
//!     }
//!
//!     // GET /notes?prefix=notes/a -> {"revision": 7, "notes": {"notes/a1": "..."}}
//!     fn handle_http(req: Request) -> Response {
//!         if req.method != "GET" {
//!             return Response::error(405, "only GET");
//!         }
//!         let prefix = req.query_param("prefix").unwrap_or_else(|| "notes/".into());
//!         match kv::range(&prefix) {
//!             Ok(res) => {
//!                 let notes: serde_json::Map<String, serde_json::Value> =
//!                     res.kvs.iter().map(|kv| (kv.key_str().into_owned(), kv.value_str().into_owned().into())).collect();
//!                 Response::json(200, &json!({ "revision": res.revision, "notes": notes }))
//!             }
//!             Err(e) => Response::error(500, e),
//!         }
//!     }
//!
//!     // Notes must be non-empty and at most `max_bytes` (from notes.toml's [config]) long.
//!     fn pre_put(put: Put) -> Decision {
//!         let max: usize = config::parse("max_bytes").unwrap_or(4096);
//!         if put.value.is_empty() || put.value.len() > max {
//!             metrics::counter("rejected").labels(&["size"]).inc();
//!             log::warn!("rejected {} ({} bytes)", put.key_str(), put.value.len());
//!             return Decision::reject(format!("a note must have 1 to {max} bytes"));
//!         }
//!         metrics::histogram("note_bytes").observe(put.value.len() as f64);
//!         Decision::Allow
//!     }
//! }
//!
//! export!(Notes);
//! ```
//!
//! Trait methods a plugin does not implement keep their defaults: [`Plugin::handle_http`] answers 404 and
//! [`Plugin::pre_put`] allows every put.
//!
//! # Mistakes are compile errors
//!
//! The hooks are trait methods, so a wrong signature is reported by rustc on the plugin's own line
//! (`error[E0053]: method `pre_put` has an incompatible type for trait`):
//!
//! ```compile_fail,E0053
//! use modkv_plugin_sdk::prelude::*;
//!
//! struct Wrong;
//!
//! impl Plugin for Wrong {
//!     fn manifest() -> Manifest {
//!         Manifest::new("wrong", "0.1.0")
//!     }
//!     fn pre_put(put: Put) -> bool {
//!         !put.value.is_empty()
//!     }
//! }
//!
//! export!(Wrong);
//! ```
//!
//! and exporting a type that is not a plugin points at the `export!` argument
//! (`error[E0277]: `NotAPlugin` is not a modkv plugin`):
//!
//! ```compile_fail,E0277
//! struct NotAPlugin;
//!
//! modkv_plugin_sdk::export!(NotAPlugin);
//! ```
//!
//! # How calls run
//!
//! The host instantiates the component afresh for every call (a fresh store, bounded memory and time),
//! so a plugin keeps no state between calls in its own memory: state lives in the key-value store
//! ([`kv`]) or in metrics. A plugin whose answers never depend on what earlier calls left behind says
//! [`Manifest::stateless`]: one instance may then answer up to 64 calls in a row, which for a small
//! hook saves most of its cost (instantiating); globals survive between those calls. A panic or trap fails only that call: a route answers 500 naming the plugin,
//! a pre-put hook rejects or allows the put as the plugin's `fail-open`/`fail-closed` setting says.
//! Host calls ([`kv`], [`config`], ...) are checked against the grants in the plugin's TOML file.
#![warn(missing_docs)]

extern crate self as modkv_plugin_sdk;

pub use serde;
pub use serde_json;
pub use wit_bindgen;

use std::borrow::Cow;
use std::fmt;

/// The bindings wit-bindgen generates from `wit/plugin.wit`. Plugins use the re-exports at the crate
/// root and the helper modules instead; this module is public for [`export!`].
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        additional_derives: [PartialEq],
    });
}

use bindings::modkv::plugin::host;
pub use bindings::modkv::plugin::types::{
    HttpRequest as Request, HttpResponse as Response, KeyValue, Manifest, MetricDef, MetricKind,
    PutDecision as Decision, PutRequest as Put, RangeResult,
};

/// The WIT package this SDK implements; a plugin built with it loads in servers that support it.
pub const WIT_PACKAGE: &str = "modkv:plugin@0.2.0";

/// What a plugin is: its manifest, and the hooks it implements. Export the implementing type with
/// [`export!`].
///
/// The methods take no `self`: the host creates a fresh instance for every call, unless the manifest
/// says the plugin is [`Manifest::stateless`] (then one instance answers several calls in a row), so a
/// plugin type is usually a unit struct and keeps no state between calls.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a modkv plugin",
    label = "this type does not implement `modkv_plugin_sdk::Plugin`",
    note = "add `impl modkv_plugin_sdk::Plugin for {Self} {{ fn manifest() -> Manifest {{ ... }} }}`"
)]
pub trait Plugin {
    /// What the plugin serves and hooks: its name, version, route prefixes, hooked key prefixes and
    /// metric definitions. Called once after loading.
    fn manifest() -> Manifest;

    /// A request whose path is under one of the manifest's routes. Default: 404.
    fn handle_http(req: Request) -> Response {
        let _ = req;
        Response::error(404, "not found")
    }

    /// A put whose key is under one of the manifest's hooked prefixes, before it is proposed to raft.
    /// Default: allow.
    fn pre_put(put: Put) -> Decision {
        let _ = put;
        Decision::Allow
    }
}

#[doc(hidden)]
pub mod __private {
    use super::*;

    /// Implements the generated `Guest` trait for any [`Plugin`].
    pub struct Adapter<T>(std::marker::PhantomData<T>);

    impl<T: Plugin> bindings::Guest for Adapter<T> {
        fn manifest() -> Manifest {
            T::manifest()
        }
        fn handle_http(req: Request) -> Response {
            T::handle_http(req)
        }
        fn pre_put(req: Put) -> Decision {
            T::pre_put(req)
        }
    }

    pub fn assert_plugin<T: Plugin>() {}
}

/// Exports a [`Plugin`] implementation as the component's `manifest`, `handle-http` and `pre-put`.
/// Use it once per plugin crate, at the top level:
///
/// ```
/// # use modkv_plugin_sdk::prelude::*;
/// struct Minimal;
/// impl Plugin for Minimal {
///     fn manifest() -> Manifest {
///         Manifest::new("minimal", "0.1.0")
///     }
/// }
/// modkv_plugin_sdk::export!(Minimal);
/// ```
#[macro_export]
macro_rules! export {
    ($plugin:ty $(,)?) => {
        const _: () = {
            #[allow(dead_code)]
            fn __modkv_plugin_check() {
                $crate::__private::assert_plugin::<$plugin>();
            }
            type __ModkvPluginAdapter = $crate::__private::Adapter<$plugin>;
    $crate::bindings::__export_plugin_world!(__ModkvPluginAdapter with_types_in $crate::bindings);
        };
    };
}

/// `use modkv_plugin_sdk::prelude::*;` brings in what most plugins need.
pub mod prelude {
    pub use crate::{
        config, export, kv, log, metrics, Decision, KeyValue, Manifest, MetricDef, MetricKind, Plugin, Put,
        RangeResult, Request, Response,
    };
    pub use serde_json::{self, json};
}

// ---------------------------------------------------------------------------------------------------
// Manifest and metric definitions

impl Manifest {
    /// A manifest with no routes, hooks or metrics. `version` is usually `env!("CARGO_PKG_VERSION")`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Manifest {
            name: name.into(),
            version: version.into(),
            routes: Vec::new(),
            hooked_prefixes: Vec::new(),
            metrics: Vec::new(),
            stateless: false,
        }
    }

    /// Says the plugin's answers do not depend on what earlier calls left in its memory: the server may
    /// then let one instance answer many calls in a row instead of instantiating the plugin for every
    /// call, which for a small hook is most of its cost. Globals survive between those calls (a cache
    /// in a `static` works; [`config`] values are cached this way), but a plugin that counts or
    /// remembers calls in its memory must not say it. Without it, every call gets a fresh instance.
    /// The operator's `[limits] calls-per-instance` in the plugin's TOML overrides either way.
    pub fn stateless(mut self) -> Self {
        self.stateless = true;
        self
    }

    /// Serves requests whose path is `prefix` or under it (e.g. `"/hello"` serves `/hello` and
    /// `/hello/x`).
    pub fn route(mut self, prefix: impl Into<String>) -> Self {
        self.routes.push(prefix.into());
        self
    }

    /// Runs [`Plugin::pre_put`] for puts whose key starts with `prefix`.
    pub fn hook_prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        self.hooked_prefixes.push(prefix.as_ref().to_vec());
        self
    }

    /// Runs [`Plugin::pre_put`] for every put (the empty prefix).
    pub fn hook_all(self) -> Self {
        self.hook_prefix(b"")
    }

    /// Defines a metric the plugin updates through [`metrics`].
    pub fn metric(mut self, def: MetricDef) -> Self {
        self.metrics.push(def);
        self
    }
}

impl MetricDef {
    fn new(kind: MetricKind, name: &str, help: &str) -> Self {
        MetricDef { name: name.into(), help: help.into(), kind, labels: Vec::new(), buckets: Vec::new() }
    }

    /// A counter: only goes up ([`metrics::Counter::add`]). Name it without `_total`: `/metrics` shows
    /// counter `puts` of plugin `audit` as `modkv_plugin_audit_puts_total` (a `_total` given here is
    /// dropped by the host, and [`metrics::counter`] drops it too, so both spellings work).
    pub fn counter(name: &str, help: &str) -> Self {
        Self::new(MetricKind::Counter, name, help)
    }

    /// A gauge: set to any value ([`metrics::Gauge::set`]).
    pub fn gauge(name: &str, help: &str) -> Self {
        Self::new(MetricKind::Gauge, name, help)
    }

    /// A histogram of observed values ([`metrics::Histogram::observe`]); the host's default buckets
    /// unless [`MetricDef::buckets`] gives others.
    pub fn histogram(name: &str, help: &str) -> Self {
        Self::new(MetricKind::Histogram, name, help)
    }

    /// Label names; every update gives values for them, in this order.
    pub fn labels(mut self, names: &[&str]) -> Self {
        self.labels = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Histogram bucket upper bounds, ascending.
    pub fn buckets(mut self, bounds: &[f64]) -> Self {
        self.buckets = bounds.to_vec();
        self
    }
}

// ---------------------------------------------------------------------------------------------------
// HTTP

impl Request {
    /// The first value of a query parameter, percent-decoded (`+` is a space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        http::parse_query(&self.query).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Every query parameter in order, percent-decoded.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        http::parse_query(&self.query)
    }

    /// The first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8, if it is.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The rest of the path after `prefix`, if the path is `prefix` or under it: with prefix `/ui`,
    /// `/ui` gives `""`, `/ui/api/keys` gives `"/api/keys"`, and `/uix` gives `None`.
    pub fn path_under(&self, prefix: &str) -> Option<&str> {
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        let rest = self.path.strip_prefix(prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }
}

impl Response {
    /// A response with a body and a `content-type`.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response { status, headers: vec![("content-type".into(), content_type.into())], body: body.into() }
    }

    /// `value` serialized as JSON (`application/json`). A value that cannot be serialized gives a 500.
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(mut body) => {
                body.push(b'\n');
                Self::new(status, "application/json", body)
            }
            Err(e) => Self::error(500, format!("serializing the response: {e}")),
        }
    }

    /// Plain text (`text/plain; charset=utf-8`).
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// HTML (`text/html; charset=utf-8`).
    pub fn html(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/html; charset=utf-8", body.into())
    }

    /// A JSON error, `{"error": "<message>"}`.
    pub fn error(status: u16, message: impl fmt::Display) -> Self {
        Self::json(status, &serde_json::json!({ "error": message.to_string() }))
    }

    /// A response with no body.
    pub fn empty(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: Vec::new() }
    }

    /// A `302 Found` to `location`.
    pub fn redirect(location: &str) -> Self {
        Self::empty(302).with_header("location", location)
    }

    /// Adds a header (a `content-type` given here replaces the one the constructor set).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if name.eq_ignore_ascii_case("content-type") {
            self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
        }
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The body as UTF-8 (lossy); handy in tests.
    pub fn body_string(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Query-string and percent-encoding helpers.
pub mod http {
    /// Parses `a=1&b=x%20y&c` into `[("a","1"), ("b","x y"), ("c","")]`.
    pub fn parse_query(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    }

    /// Decodes `%XX` escapes and `+` (a space); invalid escapes stay as they are, invalid UTF-8 becomes
    /// U+FFFD.
    pub fn percent_decode(s: &str) -> String {
        String::from_utf8_lossy(&percent_decode_bytes(s)).into_owned()
    }

    /// Like [`percent_decode`], keeping the bytes (keys need not be UTF-8).
    pub fn percent_decode_bytes(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() && hex(b[i + 1]).is_some() && hex(b[i + 2]).is_some() => {
                    out.push(hex(b[i + 1]).unwrap() << 4 | hex(b[i + 2]).unwrap());
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        out
    }

    /// Percent-encodes everything but `A-Z a-z 0-9 - _ . ~ /`, for building URLs and query strings.
    pub fn percent_encode(s: impl AsRef<[u8]>) -> String {
        let mut out = String::new();
        for &c in s.as_ref() {
            if c.is_ascii_alphanumeric() || b"-_.~/".contains(&c) {
                out.push(c as char);
            } else {
                out.push_str(&format!("%{c:02X}"));
            }
        }
        out
    }

    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
}

// ---------------------------------------------------------------------------------------------------
// Pre-put

impl Put {
    /// The key as UTF-8 (lossy).
    pub fn key_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.key)
    }

    /// The value as UTF-8, if it is.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }

    /// The value parsed as JSON.
    pub fn value_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.value)
    }
}

impl Decision {
    /// Rejects the put; `etcdctl` shows the message, prefixed with the plugin's name. A rejected put
    /// inside a Txn fails the whole Txn.
    pub fn reject(message: impl Into<String>) -> Self {
        Decision::Reject(message.into())
    }

    /// Stores `value` instead of the value the client sent.
    pub fn rewrite(value: impl Into<Vec<u8>>) -> Self {
        Decision::Rewrite(value.into())
    }

    /// Whether this is [`Decision::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

// ---------------------------------------------------------------------------------------------------
// Host imports

impl KeyValue {
    /// The key as UTF-8 (lossy).
    pub fn key_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.key)
    }

    /// The value as UTF-8 (lossy).
    pub fn value_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.value)
    }
}

/// Reading and writing keys through the host. Reads are linearizable unless marked serializable;
/// writes go through raft like a client's Put and do not run the calling plugin's own pre-put hook.
///
/// Every call is checked against the key prefixes the plugin's TOML file grants, and fails with
/// `permission denied: ...` outside them:
///
/// ```toml
/// [grants]
/// read = ["counters/"]    # "" grants every key
/// write = ["counters/"]
/// ```
///
/// ```no_run
/// use modkv_plugin_sdk::kv;
///
/// # fn main() -> Result<(), kv::Error> {
/// let rev = kv::put("counters/a", "1")?;
/// let a = kv::get("counters/a")?.expect("just written");
/// assert_eq!(a.mod_revision, rev);
/// for kv in kv::range("counters/")?.kvs {
///     println!("{} = {}", kv.key_str(), kv.value_str());
/// }
/// let page = kv::Range::prefix("counters/").limit(10).serializable().get()?;
/// kv::delete_prefix("counters/")?;
/// # let _ = page; Ok(()) }
/// ```
pub mod kv {
    use super::host;
    pub use super::{KeyValue, RangeResult};

    /// An error from the host: etcd's message (e.g. `etcdserver: mvcc: required revision has been
    /// compacted`), or a denied grant.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Error(pub String);

    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Error {}

    /// The result of a host KV call.
    pub type Result<T> = std::result::Result<T, Error>;

    /// A range read: build it, then [`Range::get`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Range {
        key: Vec<u8>,
        range_end: Vec<u8>,
        limit: i64,
        serializable: bool,
    }

    impl Range {
        /// Just `key`.
        pub fn key(key: impl AsRef<[u8]>) -> Self {
            Range { key: key.as_ref().to_vec(), range_end: Vec::new(), limit: 0, serializable: false }
        }

        /// Every key starting with `prefix` (every key when `prefix` is empty).
        pub fn prefix(prefix: impl AsRef<[u8]>) -> Self {
            let prefix = prefix.as_ref();
            if prefix.is_empty() {
                return Range::between([0u8], [0u8]);
            }
            Range { range_end: prefix_end(prefix), ..Range::key(prefix) }
        }

        /// Keys in `[start, end)`; an `end` of `"\0"` means every key `>= start`.
        pub fn between(start: impl AsRef<[u8]>, end: impl AsRef<[u8]>) -> Self {
            Range { range_end: end.as_ref().to_vec(), ..Range::key(start) }
        }

        /// At most `n` keys (0: no limit); [`RangeResult::more`] says whether there were more.
        pub fn limit(mut self, n: i64) -> Self {
            self.limit = n;
            self
        }

        /// Reads the local member's state without the ReadIndex round: faster, possibly stale.
        pub fn serializable(mut self) -> Self {
            self.serializable = true;
            self
        }

        /// Runs the read.
        pub fn get(&self) -> Result<RangeResult> {
            host::range(&self.key, &self.range_end, self.limit, self.serializable).map_err(Error)
        }
    }

    /// The key-value pair at `key`, if there is one (linearizable).
    pub fn get(key: impl AsRef<[u8]>) -> Result<Option<KeyValue>> {
        Ok(Range::key(key).get()?.kvs.into_iter().next())
    }

    /// Every key-value pair under `prefix`, in key order (linearizable, no limit; use [`Range`] for
    /// limits and serializable reads).
    pub fn range(prefix: impl AsRef<[u8]>) -> Result<RangeResult> {
        Range::prefix(prefix).get()
    }

    /// The store's current revision: a linearizable read of the key `"\0"`, so it needs a read grant
    /// that covers that key (`read = [""]`, or just `read = ["\u0000"]`). A plugin that reads other
    /// keys anyway gets the revision from their [`RangeResult::revision`] instead.
    pub fn revision() -> Result<i64> {
        Ok(Range::key([0u8]).get()?.revision)
    }

    /// Writes `value` at `key` through raft; returns the revision of the write.
    pub fn put(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<i64> {
        host::put(key.as_ref(), value.as_ref()).map_err(Error)
    }

    /// Deletes `key`; returns how many keys were deleted (0 or 1).
    pub fn delete(key: impl AsRef<[u8]>) -> Result<i64> {
        host::delete(key.as_ref(), &[]).map_err(Error)
    }

    /// Deletes every key under `prefix` (refuses the empty prefix); returns how many were deleted.
    pub fn delete_prefix(prefix: impl AsRef<[u8]>) -> Result<i64> {
        let prefix = prefix.as_ref();
        if prefix.is_empty() {
            return Err(Error("kv::delete_prefix: refusing to delete every key".into()));
        }
        host::delete(prefix, &prefix_end(prefix)).map_err(Error)
    }

    /// The range end that covers every key starting with `prefix`, as etcd computes it: the prefix
    /// with its last byte below 0xff incremented (and what follows dropped), or `"\0"` (no end) when
    /// every byte is 0xff or the prefix is empty.
    pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
        let mut end = prefix.to_vec();
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                return end;
            }
        }
        vec![0]
    }
}

/// Logging into the server's log, tagged with the plugin's name: functions ([`log::info()`](crate::log::info())) and
/// `format!`-style macros ([`log::info!`](crate::log::info!)).
///
/// ```no_run
/// use modkv_plugin_sdk::log;
///
/// log::info("loaded");
/// let key = "a";
/// log::warn!("rejected {key}: {} bytes", 3);
/// ```
pub mod log {
    use super::host::{self, Level};

    /// Logs at debug level.
    pub fn debug(message: impl AsRef<str>) {
        host::log(Level::Debug, message.as_ref())
    }
    /// Logs at info level.
    pub fn info(message: impl AsRef<str>) {
        host::log(Level::Info, message.as_ref())
    }
    /// Logs at warn level.
    pub fn warn(message: impl AsRef<str>) {
        host::log(Level::Warn, message.as_ref())
    }
    /// Logs at error level.
    pub fn error(message: impl AsRef<str>) {
        host::log(Level::Error, message.as_ref())
    }

    #[doc(inline)]
    pub use crate::{__log_debug as debug, __log_error as error, __log_info as info, __log_warn as warn};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_debug {
    ($($arg:tt)+) => { $crate::log::debug(::std::format!($($arg)+)) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __log_info {
    ($($arg:tt)+) => { $crate::log::info(::std::format!($($arg)+)) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __log_warn {
    ($($arg:tt)+) => { $crate::log::warn(::std::format!($($arg)+)) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __log_error {
    ($($arg:tt)+) => { $crate::log::error(::std::format!($($arg)+)) };
}

/// The plugin's `[config]` table from `<name>.toml` beside its `.wasm`.
///
/// ```toml
/// [config]
/// prefix = "json/"
/// required = ["id", "name"]   # or "id,name"
/// max_bytes = 4096
/// ```
///
/// ```no_run
/// use modkv_plugin_sdk::config;
///
/// let prefix = config::get_or("prefix", "json/");
/// let required: Vec<String> = config::list("required");
/// let max: usize = config::parse("max_bytes").unwrap_or(1 << 20);
/// ```
pub mod config {
    use super::host;

    use std::cell::RefCell;
    use std::collections::HashMap;

    thread_local! {
        /// Values already asked for. A plugin's config is fixed for the life of an instance (a change
        /// reloads the plugin), so an instance that answers many calls asks the host once per key.
        static CACHE: RefCell<HashMap<String, Option<String>>> = RefCell::new(HashMap::new());
    }

    /// The value of `key` as the host gives it: a TOML string as is, any other TOML value as JSON text
    /// (`3`, `true`, `["a","b"]`).
    pub fn get(key: &str) -> Option<String> {
        if let Some(v) = CACHE.with(|c| c.borrow().get(key).cloned()) {
            return v;
        }
        let v = host::config(key);
        CACHE.with(|c| c.borrow_mut().insert(key.to_string(), v.clone()));
        v
    }

    /// The value of `key`, or `default`.
    pub fn get_or(key: &str, default: &str) -> String {
        get(key).unwrap_or_else(|| default.to_string())
    }

    /// The value of `key` parsed with [`str::parse`]; `None` if it is missing or does not parse.
    pub fn parse<T: std::str::FromStr>(key: &str) -> Option<T> {
        get(key)?.trim().parse().ok()
    }

    /// The value of `key` as a boolean (`true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`).
    pub fn flag(key: &str) -> Option<bool> {
        parse_flag(&get(key)?)
    }

    /// The value of `key` as a list of strings: a TOML/JSON array of strings, or a comma-separated
    /// string. Missing: empty.
    pub fn list(key: &str) -> Vec<String> {
        get(key).map(|v| parse_list(&v)).unwrap_or_default()
    }

    /// The parsing behind [`flag`].
    pub fn parse_flag(value: &str) -> Option<bool> {
        match value.trim().trim_matches('"').to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" => Some(false),
            _ => None,
        }
    }

    /// The parsing behind [`list`]: `["a", "b"]` (JSON or TOML, `'` quotes too), or `a, b`; empty items
    /// are dropped.
    pub fn parse_list(value: &str) -> Vec<String> {
        let v = value.trim();
        if let Some(inner) = v.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            if let Ok(items) = serde_json::from_str::<Vec<String>>(v) {
                return items.into_iter().filter(|s| !s.is_empty()).collect();
            }
            return inner
                .split(',')
                .map(|s| s.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    }
}

/// Updating the metrics the manifest defines ([`MetricDef`]); they appear in `/metrics` as
/// `modkv_plugin_<plugin>_<name>`.
///
/// ```no_run
/// use modkv_plugin_sdk::metrics;
///
/// metrics::counter("requests").inc();
/// metrics::counter("puts").labels(&["json/"]).add(2.0);
/// metrics::gauge("queue_depth").set(3.0);
/// metrics::histogram("value_bytes").labels(&["json/"]).observe(512.0);
/// ```
pub mod metrics {
    use super::host;

    macro_rules! metric {
        ($(#[$doc:meta])* $ty:ident, $ctor:ident) => {
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq, Eq)]
            #[must_use = "a metric handle does nothing until it is updated"]
            pub struct $ty<'a> {
                name: &'a str,
                labels: Vec<String>,
            }

            impl<'a> $ty<'a> {
                /// The label values, in the order of the definition's label names.
                pub fn labels(mut self, values: &[&str]) -> Self {
                    self.labels = values.iter().map(|s| s.to_string()).collect();
                    self
                }
            }

            #[doc = concat!("A handle on the ", stringify!($ctor), " `name` of the manifest.")]
            pub fn $ctor(name: &str) -> $ty<'_> {
                $ty { name, labels: Vec::new() }
            }
        };
    }

    metric!(
        /// A counter of the manifest ([`counter`]).
        Counter,
        counter
    );
    metric!(
        /// A gauge of the manifest ([`gauge`]).
        Gauge,
        gauge
    );
    metric!(
        /// A histogram of the manifest ([`histogram`]).
        Histogram,
        histogram
    );

    impl Counter<'_> {
        /// Adds `value` (>= 0).
        pub fn add(&self, value: f64) {
            // The host registers a counter under its name without `_total`.
            let name = self.name.strip_suffix("_total").unwrap_or(self.name);
            host::counter_add(name, &self.labels, value)
        }
        /// Adds 1.
        pub fn inc(&self) {
            self.add(1.0)
        }
    }

    impl Gauge<'_> {
        /// Sets the gauge.
        pub fn set(&self, value: f64) {
            host::gauge_set(self.name, &self.labels, value)
        }
    }

    impl Histogram<'_> {
        /// Observes one value.
        pub fn observe(&self, value: f64) {
            host::histogram_observe(self.name, &self.labels, value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        assert_eq!(
            http::parse_query("a=1&b=x%20y+z&c&&d=%2Fe%zz"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y z".into()),
                ("c".into(), "".into()),
                ("d".into(), "/e%zz".into())
            ]
        );
        assert_eq!(http::percent_decode("%"), "%");
        assert_eq!(http::percent_decode("a%4"), "a%4");
        assert_eq!(http::percent_decode_bytes("%ff"), vec![0xff]);
        assert_eq!(http::percent_encode("a b/c&d=é"), "a%20b/c%26d%3D%C3%A9");
        let req = Request {
            method: "GET".into(),
            path: "/ui/api/keys".into(),
            query: "prefix=json%2F&limit=5".into(),
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: b"{\"a\":1}".to_vec(),
        };
        assert_eq!(req.query_param("prefix").as_deref(), Some("json/"));
        assert_eq!(req.query_param("nope"), None);
        assert_eq!(req.header("content-type"), Some("text/plain"));
        assert_eq!(req.path_under("/ui"), Some("/api/keys"));
        assert_eq!(req.path_under("/ui/"), Some("/api/keys"));
        assert_eq!(req.path_under("/u"), None);
        assert_eq!(req.json::<serde_json::Value>().unwrap()["a"], 1);
    }

    #[test]
    fn responses() {
        let r = Response::json(201, &serde_json::json!({"a": [1, 2]}));
        assert_eq!(r.status, 201);
        assert_eq!(r.body_string(), "{\"a\":[1,2]}\n");
        assert_eq!(r.headers, vec![("content-type".to_string(), "application/json".to_string())]);
        let r = Response::error(404, "not found");
        assert_eq!(r.body_string(), "{\"error\":\"not found\"}\n");
        let r = Response::html(200, "<p>").with_header("Content-Type", "text/html").with_header("x-a", "b");
        assert_eq!(r.headers.len(), 2);
        assert_eq!(Response::redirect("/ui/").headers, vec![("location".to_string(), "/ui/".to_string())]);
    }

    #[test]
    fn manifest_builder() {
        let m = Manifest::new("p", "1")
            .route("/p")
            .hook_prefix("a/")
            .hook_all()
            .metric(MetricDef::histogram("h", "help").labels(&["x"]).buckets(&[1.0, 2.0]));
        assert_eq!(m.routes, vec!["/p"]);
        assert_eq!(m.hooked_prefixes, vec![b"a/".to_vec(), Vec::new()]);
        assert_eq!(m.metrics[0].kind, MetricKind::Histogram);
        assert_eq!(m.metrics[0].labels, vec!["x"]);
        assert_eq!(m.metrics[0].buckets, vec![1.0, 2.0]);
        assert!(!m.stateless);
        assert!(Manifest::new("p", "1").stateless().stateless);
    }

    #[test]
    fn prefix_end_like_etcd() {
        assert_eq!(kv::prefix_end(b"abc"), b"abd");
        assert_eq!(kv::prefix_end(b"a\xff"), b"b");
        assert_eq!(kv::prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(kv::prefix_end(b""), b"\0");
        assert_eq!(kv::Range::prefix(""), kv::Range::between([0], [0]));
        assert_eq!(kv::Range::prefix("x/"), kv::Range::between("x/", "x0"));
    }

    #[test]
    fn config_parsing() {
        assert_eq!(config::parse_list("[\"id\", \"name\"]"), vec!["id", "name"]);
        assert_eq!(config::parse_list("['id', 'name',]"), vec!["id", "name"]);
        assert_eq!(config::parse_list("id, name,"), vec!["id", "name"]);
        assert_eq!(config::parse_list(""), Vec::<String>::new());
        assert_eq!(config::parse_flag(" Yes"), Some(true));
        assert_eq!(config::parse_flag("\"false\""), Some(false));
        assert_eq!(config::parse_flag("maybe"), None);
    }

    #[test]
    fn decisions_and_puts() {
        assert!(Decision::Allow.is_allow());
        assert_eq!(Decision::reject("no"), Decision::Reject("no".into()));
        assert_eq!(Decision::rewrite("x"), Decision::Rewrite(b"x".to_vec()));
        let put = Put { key: b"k\xff".to_vec(), value: b"[1]".to_vec(), lease: 0, in_txn: false };
        assert_eq!(put.key_str(), "k\u{fffd}");
        assert_eq!(put.value_str(), Some("[1]"));
        assert_eq!(put.value_json::<Vec<i32>>().unwrap(), vec![1]);
    }
}

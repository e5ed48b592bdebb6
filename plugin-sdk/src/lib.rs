//! Write modkv plugins in safe Rust.
//!
//! A modkv plugin is a WebAssembly component built against the WIT package `modkv:plugin@0.3.0`
//! (`wit/plugin.wit` in this crate; servers keep loading components built against earlier versions,
//! whose files are kept in `wit-<version>/`). The server loads every `*.wasm` in its `--plugin-dir`, and
//! each plugin can
//!
//! - serve **HTTP routes** on the client port, next to `/health` and `/metrics` ([`route`],
//!   [`Plugin::handle_http`], [`http`]);
//! - **validate or rewrite puts** under key prefixes before they enter the raft log, a plain Put or a put
//!   inside a Txn ([`pre_put`], [`Plugin::pre_put`]); a rejection reaches `etcdctl` as an error naming
//!   the plugin;
//! - define **metrics** that appear in `/metrics` as `modkv_plugin_<plugin>_<name>` ([`metrics`]);
//! - read and write keys through the host ([`kv`]), log into the server's log ([`log`]) and read its
//!   `[config]` table from `<name>.toml` beside the `.wasm` ([`config`]).
//!
//! Where things are:
//!
//! ```text
//!   lib.rs        the Plugin trait, export!, the attributes #[route] / #[pre_put], the prelude
//!   manifest.rs   Manifest and MetricDef builders
//!   http.rs       Request, Response, IntoResponse, query and percent-encoding helpers   (mod http)
//!   put.rs        Put and Decision
//!   kv.rs, log.rs, config.rs, metrics.rs    the host imports                          (mod kv, ...)
//!   toml.md       the <name>.toml reference                                          (mod toml_reference)
//! ```
//!
//! # A route plugin is a function with its route
//!
//! ```
//! use modkv_plugin_sdk::prelude::*;
//!
//! #[route("/hello", method = "GET", stateless)]
//! fn hello(req: Request) -> kv::Result<Response> {
//!     let res = kv::range("hello/")?;
//!     Ok(Response::json(200, &json!({ "hello": res.count, "revision": res.revision, "path": req.path })))
//! }
//! # fn main() { assert_eq!(Hello::manifest().routes, ["/hello"]); }
//! ```
//!
//! [`route`] makes the function a plugin: its name and version are the crate's (`Cargo.toml`'s
//! `name`, which also names the `.wasm` cargo writes), its route the attribute's; methods other than
//! the ones named get 405; what the function returns becomes the response ([`IntoResponse`]: a
//! `kv::Error` that `?` passes on answers 503, or 403 for a denied grant). [`pre_put`] does the same
//! for a pre-put hook. The plugin type is named after the function (`fn hello` → `Hello`). A plugin
//! with both, or with metrics, implements [`Plugin`] itself (below).
//!
//! A hook alone:
//!
//! ```
//! use modkv_plugin_sdk::prelude::*;
//!
//! #[pre_put("limited/", stateless)]
//! fn short_values(put: Put) -> Decision {
//!     match put.value.len() {
//!         0..=64 => Decision::Allow,
//!         n => Decision::reject(format!("{} is {n} bytes long, more than 64", put.key_str())),
//!     }
//! }
//! # fn main() {
//! #     let m = ShortValues::manifest();
//! #     assert_eq!((m.hooked_prefixes, m.routes.len(), m.stateless), (vec![b"limited/".to_vec()], 0, true));
//! #     let put = Put { key: b"limited/k".to_vec(), value: vec![b'x'; 65], lease: 0, in_txn: false, caller: None };
//! #     assert_eq!(ShortValues::pre_put(put), Decision::reject("limited/k is 65 bytes long, more than 64"));
//! # }
//! ```
//!
//! A route must start with `/`; the attribute says so on the literal (`error: a route starts with '/'`):
//!
//! ```compile_fail
//! use modkv_plugin_sdk::prelude::*;
//!
//! #[route("hello")]
//! fn hello(_req: Request) -> Response {
//!     Response::text(200, "hi")
//! }
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
//! `Cargo.toml` (what `modkv plugin new` writes):
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
//! modkv-plugin-sdk = { path = "/path/to/modkv/plugin-sdk" }
//!
//! [profile.release]   # small components load faster: hello is 2.5 MB with the default profile, 98 KB with this
//! opt-level = "s"
//! lto = true
//! codegen-units = 1
//! strip = true
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` (`rustup target add wasm32-wasip2` once)
//! and copy `target/wasm32-wasip2/release/hello.wasm` into the server's `--plugin-dir`.
//!
//! # A plugin's name
//!
//! A plugin is known by its manifest's name ([`Manifest::new`]; the attributes use the crate's name):
//! errors, logs and metrics say it. Its files are `<name>.wasm` and `<name>.toml`, with `-` and `_`
//! alike (cargo writes crate `my-plugin` as `my_plugin.wasm`). The server refuses, with a log line, a
//! file named otherwise and a second file of the same name; `modkv plugin check FILE.wasm` says the same
//! without a server.
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
//! [`Plugin::pre_put`] allows every put. An update of a metric the manifest does not define (a typo) is
//! ignored, and the server's log warns once per plugin and metric name.
//!
//! # Who is calling
//!
//! With auth enabled on the server, a route is told the user its request's `Authorization` header names
//! ([`Request::caller`]; the raw token from the gateway's `POST /v3/auth/authenticate`, as the gateway
//! takes it), and a pre-put hook the user whose request the put is ([`Put::caller`]); `None` while auth
//! is off, for an anonymous caller, and for a plugin's own put. A request with an invalid or expired
//! token is answered 401 `etcdserver: invalid auth token` by the server; the plugin never sees it.
//!
//! ```
//! use modkv_plugin_sdk::prelude::*;
//!
//! #[route("/whoami", method = "GET")]
//! fn whoami(req: Request) -> Response {
//!     Response::json(200, &json!({ "user": req.caller() }))
//! }
//! # fn main() {}
//! ```
//!
//! ```
//! use modkv_plugin_sdk::prelude::*;
//!
//! #[pre_put("owned/")]
//! fn stamp(put: Put) -> Decision {
//!     match put.caller() {
//!         Some(user) => Decision::rewrite(format!("{} (by {user})", put.value_str().unwrap_or(""))),
//!         None => Decision::Allow,
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! A plugin's own host calls ([`kv::get`], [`kv::put`], ...) act with the member's authority, bounded
//! only by the plugin's grants, whoever the caller is. To read *for* the caller, bounded by the caller's
//! read permission as well, use [`kv::Range::for_caller`] (the whole range, refused unless the caller may
//! read all of it, as the caller's own Range) or [`kv::Range::readable_by_caller`] (only the parts the
//! caller may read: a listing for a user). The server checks the caller's permission itself; the plugin
//! cannot widen it.
//!
//! # Routes and hooked prefixes: one source, narrowed by the operator
//!
//! The manifest (or the attribute) says which routes a plugin serves and which key prefixes it hooks;
//! nothing else does. The operator's `<name>.toml` may set `routes` / `hooked-prefixes` in their place,
//! to narrow them (hook only `orders/` of a plugin that hooks every key) or move them; the plugin's
//! code is not told, so a hook looks at `put.key` rather than assume its prefix. See
//! [`toml_reference`].
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
//! A route function that returns something that is not a response is an error on its return type
//! (`error[E0277]: the trait bound `u32: IntoResponse` is not satisfied`):
//!
//! ```compile_fail,E0277
//! use modkv_plugin_sdk::prelude::*;
//!
//! #[route("/n")]
//! fn n(_req: Request) -> u32 {
//!     7
//! }
//! ```
//!
//! # How calls run
//!
//! The host instantiates the component afresh for every call (a fresh store, bounded memory and time),
//! so a plugin keeps no state between calls in its own memory: state lives in the key-value store
//! ([`kv`]) or in metrics. A plugin whose answers never depend on what earlier calls left behind says
//! [`Manifest::stateless`] (`stateless` in the attributes): one instance may then answer up to 64 calls
//! in a row, which for a small hook saves most of its cost (instantiating); globals survive between
//! those calls. A panic or trap fails only that call: a route answers 500 naming the plugin, a pre-put
//! hook rejects or allows the put as the plugin's `failure-mode` says. Host calls ([`kv`], [`config`],
//! ...) are checked against the grants in the plugin's TOML file.
#![warn(missing_docs)]

extern crate self as modkv_plugin_sdk;

pub use serde;
pub use serde_json;
pub use wit_bindgen;

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

pub use bindings::modkv::plugin::types::{
    CallerScope, HttpRequest as Request, HttpResponse as Response, KeyValue, Manifest, MetricDef, MetricKind,
    PutDecision as Decision, PutRequest as Put, RangeResult,
};

/// The WIT package this SDK implements; a plugin built with it loads in servers that support it.
pub const WIT_PACKAGE: &str = "modkv:plugin@0.3.0";

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

    /// What `#[route(.., method = "GET")]` answers a request of another method: 405 with an `allow`
    /// header (GET allows HEAD too); `None` for an allowed method.
    pub fn method_not_allowed(req: &Request, methods: &[&str]) -> Option<Response> {
        let allowed = |m: &str| m == req.method || (m == "GET" && req.method == "HEAD");
        if methods.iter().any(|m| allowed(m)) {
            return None;
        }
        let mut allow: Vec<&str> = methods.to_vec();
        if methods.contains(&"GET") && !methods.contains(&"HEAD") {
            allow.push("HEAD");
        }
        let message = format!("method not allowed: use {}", methods.join(" or "));
        Some(Response::error(405, message).with_header("allow", &allow.join(", ")))
    }
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

/// `use modkv_plugin_sdk::prelude::*;` brings in what most plugins need: the types, the attributes, the
/// helper modules (`http`, `kv`, `log`, `config`, `metrics`) and `serde_json`'s `json!`.
pub mod prelude {
    pub use crate::{
        config, export, http, kv, log, metrics, pre_put, route, Decision, IntoResponse, KeyValue, Manifest, MetricDef,
        MetricKind, Plugin, Put, RangeResult, Request, Response,
    };
    pub use serde_json::{self, json};
}

mod manifest;
mod put;

pub mod config;
pub mod http;
pub mod kv;
pub mod log;
pub mod metrics;

pub use http::IntoResponse;
/// Makes `fn(Put) -> Decision` a plugin hooking puts under the given key prefixes:
/// `#[pre_put("limited/", stateless)]`. See the [crate docs](crate).
pub use modkv_plugin_sdk_macros::pre_put;
/// Makes `fn(Request) -> impl IntoResponse` a plugin serving the given routes:
/// `#[route("/hello", method = "GET", stateless)]`. See the [crate docs](crate).
pub use modkv_plugin_sdk_macros::route;

#[doc = include_str!("toml.md")]
pub mod toml_reference {}

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

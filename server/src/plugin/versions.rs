//! The contract versions the host loads. A released `modkv:plugin` version never changes; a component
//! built against any of them keeps loading after the contract grows.
//!
//! ```text
//!   version   WIT                          what it added
//!   0.3.0     plugin-sdk/wit/              the caller (http-request.caller, put-request.caller),
//!                                          range-for-caller
//!   0.2.0     plugin-sdk/wit-0.2.0/        manifest.stateless (instances may answer several calls)
//!   0.1.0     plugin-sdk/wit-0.1.0/        first release
//! ```
//!
//! The linker offers every version's host interface (`modkv:plugin/host@<version>`), so a component
//! links whatever version it imports; [`Pre::new`] then tells the version from the exports' types,
//! newest first. Calls go through [`Bindings`], which converts an older version's types to and from the
//! current ones: the rest of the host only knows the current contract (an older component is not told
//! the caller). An older version's host imports are the current ones, converted (`older_host!` below).

use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::Store;

use super::host::{current, one_line, wit, Plugin, PluginPre, State};
use super::instances::{Answer, Export};

/// The bindings of contract 0.1.0.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit-0.1.0",
        world: "plugin",
        imports: { default: async },
        exports: { default: async },
    });
}

/// The bindings of contract 0.2.0.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit-0.2.0",
        world: "plugin",
        imports: { default: async },
        exports: { default: async },
    });
}

use v0_1::modkv::plugin::{host as host1, types as types1};
use v0_2::modkv::plugin::{host as host2, types as types2};

/// Adds every older version's host imports to `linker` (the current version's are added by the caller).
pub fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    v0_2::Plugin::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    v0_1::Plugin::add_to_linker::<State, HasSelf<State>>(linker, |s| s)
}

/// A linked plugin, of the contract version it was built against.
#[derive(Clone)]
pub enum Pre {
    Current(PluginPre<State>),
    V0_2(v0_2::PluginPre<State>),
    V0_1(v0_1::PluginPre<State>),
}

/// An instance of a plugin, of its contract version.
pub enum Bindings {
    Current(Plugin),
    V0_2(v0_2::Plugin),
    V0_1(v0_1::Plugin),
}

impl Pre {
    /// Tells the contract version of a linked component from its exports, newest first.
    pub fn new(pre: InstancePre<State>) -> Result<Pre, String> {
        let current = match PluginPre::new(pre.clone()) {
            Ok(p) => return Ok(Pre::Current(p)),
            Err(e) => e,
        };
        if let Ok(p) = v0_2::PluginPre::new(pre.clone()) {
            return Ok(Pre::V0_2(p));
        }
        if let Ok(p) = v0_1::PluginPre::new(pre) {
            return Ok(Pre::V0_1(p));
        }
        Err(format!(
            "it does not implement modkv:plugin@{} or any earlier version: {}",
            current::VERSION,
            one_line(&format!("{current:#}"))
        ))
    }

    /// The `modkv:plugin` version the component was built against.
    pub fn version(&self) -> &'static str {
        match self {
            Pre::Current(_) => current::VERSION,
            Pre::V0_2(_) => "0.2.0",
            Pre::V0_1(_) => "0.1.0",
        }
    }

    pub async fn instantiate(&self, store: &mut Store<State>) -> wasmtime::Result<Bindings> {
        Ok(match self {
            Pre::Current(p) => Bindings::Current(p.instantiate_async(store).await?),
            Pre::V0_2(p) => Bindings::V0_2(p.instantiate_async(store).await?),
            Pre::V0_1(p) => Bindings::V0_1(p.instantiate_async(store).await?),
        })
    }
}

/// Calls `$export` on `$p`, an instance of an older version whose types are in `$types`, converting its
/// arguments (the caller left out) and answers; `$manifest` converts its manifest.
macro_rules! older_call {
    ($p:expr, $store:expr, $export:expr, $types:ident, $manifest:path) => {
        match $export {
            Export::Manifest => $p.call_manifest($store).await.map(|m| Answer::Manifest($manifest(m))),
            Export::HandleHttp(req) => {
                let req = $types::HttpRequest {
                    method: req.method.clone(),
                    path: req.path.clone(),
                    query: req.query.clone(),
                    headers: req.headers.clone(),
                    body: req.body.clone(),
                };
                let r = $p.call_handle_http($store, &req).await?;
                Ok(Answer::HandleHttp(wit::HttpResponse { status: r.status, headers: r.headers, body: r.body }))
            }
            Export::PrePut(req) => {
                let req = $types::PutRequest {
                    key: req.key.clone(),
                    value: req.value.clone(),
                    lease: req.lease,
                    in_txn: req.in_txn,
                };
                let d = $p.call_pre_put($store, &req).await?;
                Ok(Answer::PrePut(match d {
                    $types::PutDecision::Allow => wit::PutDecision::Allow,
                    $types::PutDecision::Reject(m) => wit::PutDecision::Reject(m),
                    $types::PutDecision::Rewrite(v) => wit::PutDecision::Rewrite(v),
                }))
            }
        }
    };
}

impl Bindings {
    /// Calls `export`, converting to and from the instance's contract version.
    pub async fn call(&self, store: &mut Store<State>, export: Export<'_>) -> wasmtime::Result<Answer> {
        match self {
            Bindings::Current(p) => match export {
                Export::Manifest => p.call_manifest(store).await.map(Answer::Manifest),
                Export::HandleHttp(req) => p.call_handle_http(store, req).await.map(Answer::HandleHttp),
                Export::PrePut(req) => p.call_pre_put(store, req).await.map(Answer::PrePut),
            },
            Bindings::V0_2(p) => older_call!(p, &mut *store, export, types2, manifest2),
            Bindings::V0_1(p) => older_call!(p, &mut *store, export, types1, manifest1),
        }
    }
}

/// An older version's metric definitions as the current ones.
macro_rules! metric_defs {
    ($defs:expr, $types:ident) => {
        $defs
            .into_iter()
            .map(|d| wit::MetricDef {
                name: d.name,
                help: d.help,
                kind: match d.kind {
                    $types::MetricKind::Counter => wit::MetricKind::Counter,
                    $types::MetricKind::Gauge => wit::MetricKind::Gauge,
                    $types::MetricKind::Histogram => wit::MetricKind::Histogram,
                },
                labels: d.labels,
                buckets: d.buckets,
            })
            .collect()
    };
}

/// A 0.2.0 manifest as the current one (unchanged since).
fn manifest2(m: types2::Manifest) -> wit::Manifest {
    wit::Manifest {
        name: m.name,
        version: m.version,
        routes: m.routes,
        hooked_prefixes: m.hooked_prefixes,
        metrics: metric_defs!(m.metrics, types2),
        stateless: m.stateless,
    }
}

/// A 0.1.0 manifest as the current one: not stateless (0.1.0 promised a fresh instance per call).
fn manifest1(m: types1::Manifest) -> wit::Manifest {
    wit::Manifest {
        name: m.name,
        version: m.version,
        routes: m.routes,
        hooked_prefixes: m.hooked_prefixes,
        metrics: metric_defs!(m.metrics, types1),
        stateless: false,
    }
}

/// An older version's host imports: the current ones (unchanged since 0.1.0; 0.3.0 only added
/// `range-for-caller`), types converted.
macro_rules! older_host {
    ($host:ident, $types:ident) => {
        impl $types::Host for State {}

        impl $host::Host for State {
            async fn log(&mut self, level: $host::Level, message: String) {
                let level = match level {
                    $host::Level::Debug => current::Level::Debug,
                    $host::Level::Info => current::Level::Info,
                    $host::Level::Warn => current::Level::Warn,
                    $host::Level::Error => current::Level::Error,
                };
                current::Host::log(self, level, message).await
            }

            async fn config(&mut self, key: String) -> Option<String> {
                current::Host::config(self, key).await
            }

            async fn range(
                &mut self,
                key: Vec<u8>,
                range_end: Vec<u8>,
                limit: i64,
                serializable: bool,
            ) -> Result<$types::RangeResult, String> {
                let r = current::Host::range(self, key, range_end, limit, serializable).await?;
                Ok($types::RangeResult {
                    revision: r.revision,
                    kvs: r
                        .kvs
                        .into_iter()
                        .map(|kv| $types::KeyValue {
                            key: kv.key,
                            value: kv.value,
                            create_revision: kv.create_revision,
                            mod_revision: kv.mod_revision,
                            version: kv.version,
                            lease: kv.lease,
                        })
                        .collect(),
                    more: r.more,
                    count: r.count,
                })
            }

            async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<i64, String> {
                current::Host::put(self, key, value).await
            }

            async fn delete(&mut self, key: Vec<u8>, range_end: Vec<u8>) -> Result<i64, String> {
                current::Host::delete(self, key, range_end).await
            }

            async fn counter_add(&mut self, name: String, label_values: Vec<String>, value: f64) {
                current::Host::counter_add(self, name, label_values, value).await
            }

            async fn gauge_set(&mut self, name: String, label_values: Vec<String>, value: f64) {
                current::Host::gauge_set(self, name, label_values, value).await
            }

            async fn histogram_observe(&mut self, name: String, label_values: Vec<String>, value: f64) {
                current::Host::histogram_observe(self, name, label_values, value).await
            }
        }
    };
}

older_host!(host2, types2);
older_host!(host1, types1);

//! WebAssembly plugins: components in `--plugin-dir` that serve HTTP routes on the client port, check
//! or rewrite puts before they are proposed, and report metrics. The contract is
//! `plugin-sdk/wit/plugin.wit` (`modkv:plugin@0.2.0`); components built against earlier versions load
//! too (`versions`).
//!
//! ```text
//!   --plugin-dir/<name>.wasm (+ <name>.toml)      sorted by file name: the order hooks run in
//!        │  load: read → compile (or <data-dir>/plugin-cache) → link (InstancePre, contract version)
//!        │        → manifest() → instances (calls per instance: TOML, else manifest.stateless)
//!        ▼
//!   Registry (immutable) ◀── ArcSwap in Plugins ◀── reload: directory polled every 250 ms, or SIGHUP;
//!        │                                            unchanged plugins kept, a broken new version
//!        │                                            leaves the old one running; one atomic swap
//!        ├─ hooks::serve_http   client-port HTTP router fallback: longest route prefix wins
//!        └─ hooks::pre_put      EtcdServer::put / txn, before propose: allow | reject | rewrite
//! ```
//!
//! A plugin's name is its file name without `.wasm`: errors, logs and metrics use it. Requests in flight
//! hold the registry (and so the plugin version) they started with, so a reload never fails them.

pub mod config;
pub mod hooks;
pub mod host;
pub mod instances;
pub mod versions;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::plugin::{valid_name, MetricDef, MetricKind};
use crate::metrics::Metrics;
use crate::server::EtcdServer;
use config::PluginConfig;
use host::{wit, PluginInfo, Runtime};

/// How often the plugin dir is looked at; a change is applied once two looks agree.
const POLL: Duration = Duration::from_millis(250);
/// Paths the client port serves itself; no plugin route may be at or under them.
const RESERVED_ROUTES: [&str; 5] = ["/health", "/version", "/metrics", "/v3", "/v3beta"];

/// One loaded plugin version.
pub struct Loaded {
    pub info: Arc<PluginInfo>,
    pub file: PathBuf,
    /// The manifest's name and version (informational: the plugin is known by its file name).
    pub manifest_name: String,
    pub version: String,
    /// Route prefixes, without a trailing '/' (except "/" itself).
    pub routes: Vec<String>,
    pub hooked: Vec<Vec<u8>>,
    pre: versions::Pre,
    /// Its idle instances (see `instances`).
    instances: instances::Instances,
    wasm_hash: [u8; 32],
    toml_text: Option<String>,
}

impl Loaded {
    pub fn name(&self) -> &str {
        &self.info.name
    }

    fn hooks(&self, key: &[u8]) -> bool {
        self.hooked.iter().any(|p| key.starts_with(p))
    }
}

/// The loaded plugins, in file-name order. Never changed: a reload builds a new one.
#[derive(Default)]
pub struct Registry {
    pub plugins: Vec<Arc<Loaded>>,
    any_hooks: bool,
}

impl Registry {
    fn new(plugins: Vec<Arc<Loaded>>) -> Registry {
        let any_hooks = plugins.iter().any(|p| !p.hooked.is_empty());
        Registry { plugins, any_hooks }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Loaded>> {
        self.plugins.iter().find(|p| p.name() == name)
    }

    /// The plugin serving `path`: the longest matching route prefix, the first file on a tie.
    pub fn route(&self, path: &str) -> Option<&Arc<Loaded>> {
        let mut best: Option<(usize, &Arc<Loaded>)> = None;
        for p in &self.plugins {
            for r in &p.routes {
                if route_matches(r, path) && best.is_none_or(|(len, _)| r.len() > len) {
                    best = Some((r.len(), p));
                }
            }
        }
        best.map(|(_, p)| p)
    }
}

/// Whether route prefix `prefix` (normalized) covers `path`: the path itself or anything below it.
fn route_matches(prefix: &str, path: &str) -> bool {
    prefix == "/" || path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// `/ui/` → `/ui`.
fn normalize_route(r: &str) -> String {
    let t = r.trim_end_matches('/');
    if t.is_empty() {
        "/".to_string()
    } else {
        t.to_string()
    }
}

/// What the plugin layer needs once it runs: the engine, where plugins come from, the server.
struct Host {
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    dir: PathBuf,
    server: Weak<EtcdServer>,
    reloading: tokio::sync::Mutex<()>,
}

/// The plugins of a server: the current registry and, once started, the host that loads them.
pub struct Plugins {
    registry: ArcSwap<Registry>,
    host: OnceLock<Arc<Host>>,
}

impl Default for Plugins {
    fn default() -> Plugins {
        Plugins { registry: ArcSwap::from_pointee(Registry::default()), host: OnceLock::new() }
    }
}

impl Plugins {
    /// The current registry.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// Loads the plugin dir again now (what a directory change or SIGHUP does).
    pub async fn reload(&self, why: &str) {
        let Some(host) = self.host.get() else { return };
        let _one_at_a_time = host.reloading.lock().await;
        let started = Instant::now();
        let old = self.registry.load_full();
        let entries = match scan(&host.dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(dir = %host.dir.display(), "plugin dir unreadable ({e}); keeping the loaded plugins");
                return;
            }
        };
        let mut next = Vec::new();
        let mut changed = false;
        for e in &entries {
            let prev = old.get(&e.name);
            let loaded = load(host, e, prev).await;
            match (loaded, prev) {
                (Ok(p), Some(prev)) if Arc::ptr_eq(&p, prev) => next.push(p),
                (Ok(p), prev) => {
                    changed = true;
                    tracing::info!(
                        plugin = %p.name(),
                        version = %p.version,
                        contract = p.pre.version(),
                        calls_per_instance = p.instances.calls_per_instance(),
                        routes = ?p.routes,
                        hooked_prefixes = ?p.hooked.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect::<Vec<_>>(),
                        "plugin {} {}",
                        p.file.display(),
                        if prev.is_some() { "reloaded" } else { "loaded" }
                    );
                    next.push(p);
                }
                (Err(reason), prev) => match prev {
                    Some(prev) => {
                        tracing::error!(
                            "plugin {}: failed to load: {reason}; the running version ({}) stays",
                            e.wasm.display(),
                            prev.version
                        );
                        next.push(prev.clone());
                    }
                    None => tracing::error!("plugin {}: failed to load: {reason}", e.wasm.display()),
                },
            }
        }
        for p in &old.plugins {
            if !next.iter().any(|n| n.name() == p.name()) {
                changed = true;
                tracing::info!(plugin = %p.name(), "plugin {} unloaded", p.file.display());
            }
        }
        if !changed && next.len() == old.plugins.len() {
            tracing::debug!("plugins ({why}): no change");
            return;
        }
        let names: Vec<&str> = next.iter().map(|p| p.name()).collect();
        host.metrics.plugins().retain(&names);
        let hashes: Vec<[u8; 32]> = next.iter().map(|p| p.wasm_hash).collect();
        host.runtime.prune_cache(&hashes);
        tracing::info!(plugins = ?names, elapsed_ms = started.elapsed().as_millis() as u64, "plugins ({why}): {} loaded", names.len());
        self.registry.store(Arc::new(Registry::new(next)));
    }
}

/// A plugin file and its optional settings file.
struct Entry {
    name: Arc<str>,
    wasm: PathBuf,
    toml: PathBuf,
}

/// The `*.wasm` files of `dir`, by file name.
fn scan(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        let (Some(stem), Some("wasm")) =
            (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|s| s.to_str()))
        else {
            continue;
        };
        if stem.starts_with('.') || !path.is_file() {
            continue;
        }
        entries.push(Entry { name: stem.into(), toml: path.with_extension("toml"), wasm: path });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// What the watcher compares: every `.wasm` and `.toml` with its size and modification time.
fn snapshot(dir: &Path) -> Vec<(String, u64, Option<SystemTime>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.ends_with(".wasm") || name.ends_with(".toml")) {
                return None;
            }
            let meta = std::fs::metadata(e.path()).ok()?;
            Some((name, meta.len(), meta.modified().ok()))
        })
        .collect();
    files.sort();
    files
}

/// Loads `e`, or returns `prev` when neither file changed.
async fn load(host: &Arc<Host>, e: &Entry, prev: Option<&Arc<Loaded>>) -> Result<Arc<Loaded>, String> {
    let wasm = std::fs::read(&e.wasm).map_err(|err| format!("cannot read it: {err}"))?;
    let toml_text = match std::fs::read_to_string(&e.toml) {
        Ok(t) => Some(t),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(format!("{}: cannot read it: {err}", e.toml.display())),
    };
    let wasm_hash: [u8; 32] = Sha256::digest(&wasm).into();
    if let Some(prev) = prev {
        if prev.wasm_hash == wasm_hash && prev.toml_text == toml_text {
            return Ok(prev.clone());
        }
    }
    let config = match &toml_text {
        Some(t) => PluginConfig::parse(t).map_err(|err| format!("{}: {err}", e.toml.display()))?,
        None => PluginConfig::default(),
    };
    let started = Instant::now();
    let runtime = host.runtime.clone();
    let (component, cached) = tokio::task::spawn_blocking(move || runtime.compile(&wasm))
        .await
        .map_err(|err| format!("compiling: {err}"))?
        .map_err(|err| format!("not a loadable WebAssembly component: {err}"))?;
    let compiled = started.elapsed();
    let pre = host.runtime.prepare(&component).map_err(|err| format!("cannot link it: {err}"))?;
    let info =
        Arc::new(PluginInfo { name: e.name.clone(), config, metrics: OnceLock::new(), server: host.server.clone() });
    let call = Instant::now();
    let manifest = host.runtime.manifest(&pre, &info).await;
    let outcome = manifest.as_ref().map_or_else(|err| err.outcome(), |_| crate::metrics::plugin::CallOutcome::Ok);
    host.metrics.plugins().observe_call(&e.name, "manifest", call.elapsed(), outcome);
    let manifest = manifest.map_err(|err| format!("manifest() {err}"))?;
    let routes = match &info.config.routes {
        Some(r) => r.clone(),
        None => manifest.routes.clone(),
    };
    let routes: Vec<String> = routes.iter().map(|r| normalize_route(r)).collect();
    for r in &routes {
        if !r.starts_with('/') {
            return Err(format!("route {r:?} does not start with '/'"));
        }
        if let Some(reserved) = RESERVED_ROUTES.iter().find(|res| route_matches(res, r)) {
            return Err(format!("route {r:?} is under {reserved}, which the server serves itself"));
        }
    }
    let hooked = info.config.hooked_prefixes.clone().unwrap_or_else(|| manifest.hooked_prefixes.clone());
    let defs = metric_defs(&manifest.metrics)?;
    let set = host.metrics.plugins().define(&e.name, defs);
    let _ = info.metrics.set(set);
    tracing::debug!(
        plugin = %e.name,
        cached,
        compile_ms = compiled.as_secs_f64() * 1e3,
        total_ms = started.elapsed().as_secs_f64() * 1e3,
        "plugin compiled and linked"
    );
    // The operator's TOML decides; else a stateless plugin's instances answer several calls in a row.
    let calls_per_instance = info.config.calls_per_instance.unwrap_or(if manifest.stateless {
        config::STATELESS_CALLS_PER_INSTANCE
    } else {
        1
    });
    Ok(Arc::new(Loaded {
        info,
        file: e.wasm.clone(),
        manifest_name: manifest.name,
        version: manifest.version,
        routes,
        hooked,
        pre,
        instances: instances::Instances::new(calls_per_instance),
        wasm_hash,
        toml_text,
    }))
}

/// Checks a manifest's metric definitions; a counter's `_total` suffix is dropped (the encoder adds it).
fn metric_defs(defs: &[wit::MetricDef]) -> Result<Vec<MetricDef>, String> {
    let mut out: Vec<MetricDef> = Vec::new();
    for d in defs {
        let kind = match d.kind {
            wit::MetricKind::Counter => MetricKind::Counter,
            wit::MetricKind::Gauge => MetricKind::Gauge,
            wit::MetricKind::Histogram => MetricKind::Histogram,
        };
        let mut name = d.name.clone();
        if kind == MetricKind::Counter {
            if let Some(n) = name.strip_suffix("_total") {
                name = n.to_string();
            }
        }
        if !valid_name(&name) {
            return Err(format!("metric name {:?} is not a valid Prometheus name", d.name));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(format!("metric {:?} is declared twice", d.name));
        }
        if let Some(l) = d.labels.iter().find(|l| !valid_name(l) || l.starts_with("__")) {
            return Err(format!("metric {:?}: label name {l:?} is not valid", d.name));
        }
        if !d.buckets.iter().all(|b| b.is_finite()) || !d.buckets.windows(2).all(|w| w[0] < w[1]) {
            return Err(format!("metric {:?}: buckets must be finite and increasing", d.name));
        }
        out.push(MetricDef { name, help: d.help.clone(), kind, labels: d.labels.clone(), buckets: d.buckets.clone() });
    }
    Ok(out)
}

/// The running plugin layer of a member: the watcher task and the engine's ticker.
pub struct PluginHost {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    runtime: Arc<Runtime>,
}

/// Starts the plugin layer of `server`: loads every plugin in `dir` (errors are logged per plugin), then
/// watches the directory and SIGHUP. Fails only if the engine cannot be created.
pub async fn start(server: &Arc<EtcdServer>, dir: &Path, cache_dir: Option<PathBuf>) -> Result<PluginHost, String> {
    let runtime = Runtime::new(cache_dir)?;
    let host = Arc::new(Host {
        runtime: runtime.clone(),
        metrics: server.metrics.clone(),
        dir: dir.to_path_buf(),
        server: Arc::downgrade(server),
        reloading: tokio::sync::Mutex::new(()),
    });
    if server.plugins.host.set(host).is_err() {
        return Err("plugins already started".into());
    }
    if !dir.is_dir() {
        tracing::warn!(dir = %dir.display(), "--plugin-dir is not a directory (yet); watching it");
    }
    let mut seen = snapshot(dir);
    server.plugins.reload("startup").await;
    let (stop, mut stopped) = watch::channel(false);
    let weak = Arc::downgrade(server);
    let dir = dir.to_path_buf();
    let task = tokio::spawn(async move {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| tracing::warn!(%e, "cannot listen for SIGHUP; plugin reload on directory changes only"))
            .ok();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending: Option<Vec<_>> = None;
        loop {
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            let why = tokio::select! {
                _ = stopped.changed() => return,
                _ = hangup => "SIGHUP",
                _ = tick.tick() => {
                    let now = snapshot(&dir);
                    if now == seen {
                        pending = None;
                        continue;
                    }
                    // Applied once two looks agree, so a file being written is not loaded half-way.
                    if pending.as_ref() != Some(&now) {
                        pending = Some(now);
                        continue;
                    }
                    "directory changed"
                }
            };
            seen = snapshot(&dir);
            pending = None;
            let Some(server) = weak.upgrade() else { return };
            server.plugins.reload(why).await;
        }
    });
    Ok(PluginHost { stop, task, runtime })
}

impl PluginHost {
    /// Stops watching the directory and the epoch ticker.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let runtime = self.runtime.clone();
        let _ = tokio::task::spawn_blocking(move || runtime.stop()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_whole_segments() {
        assert!(route_matches("/hello", "/hello"));
        assert!(route_matches("/hello", "/hello/x"));
        assert!(!route_matches("/hello", "/helloworld"));
        assert!(route_matches("/", "/anything"));
        assert_eq!(normalize_route("/ui/"), "/ui");
        assert_eq!(normalize_route("/"), "/");
        assert!(RESERVED_ROUTES.iter().any(|r| route_matches(r, "/v3/kv")));
        assert!(!RESERVED_ROUTES.iter().any(|r| route_matches(r, "/v3x")));
    }
}

//! WebAssembly plugins: components in `--plugin-dir` that serve HTTP routes on the client port, check
//! or rewrite puts before they are proposed, and report metrics. The contract is
//! `plugin-sdk/wit/plugin.wit` (`modkv:plugin@0.3.0`); components built against earlier versions load
//! too (`versions`). Who is calling (a route's `Authorization`, a put's caller) and what a plugin may
//! read for them: `caller`.
//!
//! ```text
//!   --plugin-dir/<name>.wasm (+ <name>.toml)      sorted by file name: the order hooks run in
//!        │  load (`inspect`): read → compile (or <data-dir>/plugin-cache) → link (contract version)
//!        │        → manifest() → identity checked → instances (calls per instance: TOML, else stateless)
//!        ▼
//!   Registry (immutable) ◀── ArcSwap in Plugins ◀── reload: directory polled every 250 ms, or SIGHUP;
//!        │                                            unchanged plugins kept, a broken new version
//!        │                                            leaves the old one running; one atomic swap
//!        ├─ hooks::serve_http   client-port HTTP router fallback: longest route prefix wins; the caller
//!        │                      from the Authorization header (api::http)
//!        └─ hooks::pre_put      EtcdServer::put / txn, before propose: allow | reject | rewrite; the
//!                               request's caller (on a proxy: before forwarding, `proxy::edge`)
//!   host KV imports: `kv::PluginKv`, the member's server or a proxy's cluster
//!   each call: `instances` (a fresh or an idle instance); a call past 2 ms takes turns with the other
//!   long calls behind one gate (`throttle`), so a looping plugin cannot starve the member
//! ```
//!
//! A plugin is known by its manifest's name: errors, logs and metrics use it. Its files must be named
//! after it, `<name>.wasm` and `<name>.toml`, with `-` and `_` alike (cargo writes crate `my-plugin` as
//! `my_plugin.wasm`); a file named otherwise, or a second file of the same name, is refused with a log
//! line that says so (`inspect`). Requests in flight hold the registry (and so the plugin version) they
//! started with, so a reload never fails them.

pub mod caller;
pub mod config;
pub mod hooks;
pub mod host;
pub mod inspect;
pub mod instances;
pub mod kv;
pub mod scaffold;
pub mod throttle;
pub mod versions;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::plugin::CallOutcome;
use crate::metrics::Metrics;
use host::{PluginInfo, Runtime};
use inspect::{file_name, route_matches, Candidate};

/// How often the plugin dir is looked at; a change is applied once two looks agree.
const POLL: Duration = Duration::from_millis(250);

/// One loaded plugin version.
pub struct Loaded {
    pub info: Arc<PluginInfo>,
    pub file: PathBuf,
    /// The manifest's version (its name is `info.name`).
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

/// What the plugin layer needs once it runs: the engine, where plugins come from, the key space.
struct Host {
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    dir: PathBuf,
    kv: Weak<dyn kv::PluginKv>,
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
        let entries = match inspect::scan(&host.dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(dir = %host.dir.display(), "plugin dir unreadable ({e}); keeping the loaded plugins");
                return;
            }
        };
        let mut next: Vec<Arc<Loaded>> = Vec::new();
        let mut changed = false;
        for e in &entries {
            let prev = old.plugins.iter().find(|p| p.file == e.wasm);
            if let Some(first) = &e.duplicate_of {
                tracing::error!(
                    "plugin {}: not loaded: {} has the same name (\"-\" and \"_\" in a plugin's name are the same); \
                     remove one of them",
                    e.wasm.display(),
                    file_name(first)
                );
                changed |= prev.is_some();
                continue;
            }
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
            if !next.iter().any(|n| Arc::ptr_eq(n, p) || n.file == p.file) {
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
async fn load(host: &Arc<Host>, e: &Candidate, prev: Option<&Arc<Loaded>>) -> Result<Arc<Loaded>, String> {
    let wasm = std::fs::read(&e.wasm).map_err(|err| format!("cannot read it: {err}"))?;
    let toml = match e.toml.clone()? {
        None => None,
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(t) => Some((path, t)),
            Err(err) => return Err(format!("{}: cannot read it: {err}", path.display())),
        },
    };
    let toml_text = toml.as_ref().map(|(_, t)| t.clone());
    let wasm_hash: [u8; 32] = Sha256::digest(&wasm).into();
    if let Some(prev) = prev {
        if prev.wasm_hash == wasm_hash && prev.toml_text == toml_text {
            return Ok(prev.clone());
        }
    }
    let started = Instant::now();
    let toml = toml.as_ref().map(|(p, t)| (p.as_path(), t.as_str()));
    let found = inspect::inspect(&host.runtime, &e.wasm, wasm, toml, host.kv.clone()).await;
    let i = match found {
        Ok(i) => i,
        Err(reason) => return Err(reason),
    };
    let (took, result) = &i.manifest_call;
    let outcome = result.as_ref().map_or_else(|err| err.outcome(), |_| CallOutcome::Ok);
    host.metrics.plugins().observe_call(&i.info.name, "manifest", *took, outcome);
    let set = host.metrics.plugins().define(&i.info.name, i.metric_defs);
    let _ = i.info.metrics.set(set);
    tracing::debug!(
        plugin = %i.info.name,
        cached = i.cached,
        total_ms = started.elapsed().as_secs_f64() * 1e3,
        "plugin compiled and linked"
    );
    Ok(Arc::new(Loaded {
        info: i.info,
        file: e.wasm.clone(),
        version: i.manifest.version,
        routes: i.routes,
        hooked: i.hooked,
        pre: i.pre,
        instances: instances::Instances::new(i.calls_per_instance),
        wasm_hash,
        toml_text,
    }))
}

/// The running plugin layer of a member: the watcher task and the engine's ticker.
pub struct PluginHost {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    runtime: Arc<Runtime>,
}

/// Starts `plugins`, the plugin layer of `server` (a member's `EtcdServer`, or a proxy's forwarding:
/// what the host KV imports act on): loads every plugin in `dir` (errors are logged per plugin), then
/// watches the directory and SIGHUP. Fails only if the engine cannot be created.
pub async fn start<K: kv::PluginKv + 'static>(
    plugins: &Arc<Plugins>,
    server: &Arc<K>,
    metrics: Arc<Metrics>,
    dir: &Path,
    cache_dir: Option<PathBuf>,
) -> Result<PluginHost, String> {
    let runtime = Runtime::new(cache_dir)?;
    let host = Arc::new(Host {
        runtime: runtime.clone(),
        metrics,
        dir: dir.to_path_buf(),
        kv: Arc::downgrade(server) as Weak<dyn kv::PluginKv>,
        reloading: tokio::sync::Mutex::new(()),
    });
    if plugins.host.set(host).is_err() {
        return Err("plugins already started".into());
    }
    if !dir.is_dir() {
        tracing::warn!(dir = %dir.display(), "--plugin-dir is not a directory (yet); watching it");
    }
    let mut seen = snapshot(dir);
    plugins.reload("startup").await;
    let (stop, mut stopped) = watch::channel(false);
    let weak = Arc::downgrade(plugins);
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
            let Some(plugins) = weak.upgrade() else { return };
            plugins.reload(why).await;
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

//! The wasmtime side of plugins: one [`Engine`] (pooling allocator, epoch interruption, a ticker thread),
//! one [`Linker`] with the host imports of every contract version (`versions`) and WASI p2 stubs, the
//! compile cache, and the [`Store`] an instance lives in: a memory cap, an epoch deadline and a
//! wall-clock limit per call, whose failures become a [`CallError`]. Which instance answers a call (a
//! fresh one, or one that answered calls before): `instances`.
//!
//! ```text
//!   instance ─▶ Store{State: WASI ctx (nothing granted by default), limiter, grants, captured output}
//!               ├─ Pre::instantiate (pooled slots)
//!               ├─ call_<export> ──▶ host imports: log, config, range/put/delete ─▶ PluginKv (`kv`:
//!               │   (deadline and    the member's server or a proxy's cluster), range-for-caller
//!               │    caller set      (as the caller: `caller`), counter-add, gauge-set, histogram-observe
//!               │    per call)
//!               └─ epoch tick (1 ms): yield to tokio (a long call: take turns, `throttle`); past the
//!                  call's time limit: trap
//! ```

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::caller::Caller;
use super::config::{granted, PluginConfig, MAX_MEMORY_BYTES};
use super::kv::PluginKv;
use super::throttle::{Gate, Turn};
use super::versions::Pre;
use crate::metrics::plugin::{CallOutcome, MetricKind, PluginMetricSet};
use crate::mvcc::KeyRange;

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "plugin",
    imports: { default: async },
    exports: { default: async },
});

pub use self::modkv::plugin::types as wit;

/// The contract version this host is built on (`plugin-sdk/wit/plugin.wit`); older ones: `versions`.
pub mod current {
    pub use super::modkv::plugin::host::{Host, Level};
    pub const VERSION: &str = "0.3.0";
}

/// How often the engine's epoch advances: the granularity of time limits and of yielding to tokio.
const TICK: Duration = Duration::from_millis(1);
/// Wall-clock slack on top of a plugin's time limit before its call is abandoned (the epoch deadline
/// normally traps first; this catches time spent waiting in host calls).
pub(super) const WALL_CLOCK_SLACK: Duration = Duration::from_millis(50);
/// Captured guest stdout/stderr per call.
pub(super) const PIPE_CAPACITY: usize = 64 * 1024;
/// Table elements a plugin may grow to.
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Bytes of each pooled linear memory, table and async stack kept mapped between calls (reset in place).
const KEEP_RESIDENT_MEMORY: usize = 2 << 20;
const KEEP_RESIDENT_TABLE: usize = 64 << 10;
const KEEP_RESIDENT_STACK: usize = 128 << 10;
/// Decommits queued before they are flushed together.
const DECOMMIT_BATCH: usize = 16;
/// Longest log line or message taken from a plugin.
const MAX_MESSAGE: usize = 4096;
/// Bytes of a key a denied call's message shows (a plugin may pass megabytes; the message stays short).
const MAX_KEY_SHOWN: usize = 256;

/// What a plugin is, for the calls into it: its name, settings and metrics, and the key space its host
/// imports act on.
pub struct PluginInfo {
    /// The manifest's name (while the manifest is asked for: the file's).
    pub name: Arc<str>,
    pub config: PluginConfig,
    /// The file name of its settings, `<name>.toml`, for errors that say what to change there.
    pub toml_name: String,
    /// Set once its manifest is known; metric updates before that are ignored.
    pub metrics: OnceLock<Arc<PluginMetricSet>>,
    pub kv: Weak<dyn PluginKv>,
    /// The metric names its manifest defines, for the warning about an update of another one.
    metric_names: Vec<String>,
    /// Metric names whose updates failed and were already logged (warned once each).
    warned: Mutex<HashSet<String>>,
}

/// Distinct bad metric updates warned about per plugin version; past this they are logged at debug.
const MAX_WARNED: usize = 64;

impl PluginInfo {
    pub fn new(
        name: Arc<str>,
        config: PluginConfig,
        toml_name: String,
        metric_names: Vec<String>,
        kv: Weak<dyn PluginKv>,
    ) -> PluginInfo {
        let warned = Mutex::new(HashSet::new());
        PluginInfo { name, config, toml_name, metrics: OnceLock::new(), kv, metric_names, warned }
    }

    /// What a denied host call says: what was refused, and the `[grants]` line that would allow it.
    fn denied(&self, verb: &str, key: &[u8], end: &[u8]) -> String {
        let (line, granted) = match verb {
            "read" => ("read", &self.config.grants.read),
            _ => ("write", &self.config.grants.write),
        };
        let want = grant_for(key, end);
        let mut list: Vec<String> = granted.iter().map(|g| format!("{g:?}")).collect();
        list.push(format!("{:?}", shown(&want)));
        format!(
            "permission denied: plugin {} may not {verb} {}; grant it in {}: [grants] {line} = [{}]",
            self.name,
            describe(key, end),
            self.toml_name,
            list.join(", ")
        )
    }
}

/// The data of one call's [`Store`].
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: Limiter,
    info: Arc<PluginInfo>,
    /// Plugins whose host calls led to this one, this one last: their pre-put hooks are skipped for
    /// writes this call makes, so a plugin never re-enters its own hook and hooks cannot cycle.
    pub(super) chain: Vec<Arc<str>>,
    /// When the running call must end (set for each call).
    pub(super) deadline: Instant,
    /// Whether the running call is long, and its turn at the engine's gate for long calls.
    pub(super) turn: Turn,
    /// Who the running call serves (set for each call): what `range-for-caller` reads as.
    pub(super) caller: Caller,
    pub(super) output: Output,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The memory cap of one call, remembering whether it was hit (so the error can say so).
pub(super) struct Limiter {
    memory_bytes: usize,
    pub(super) memory_hit: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_hit = true;
            wasmtime::bail!("memory limit of {} bytes exceeded (growing to {desired})", self.memory_bytes);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Why a call into a plugin did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("exceeded its time limit of {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("exceeded its memory limit of {0} bytes")]
    Memory(u64),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("{0}")]
    Failed(String),
}

impl CallError {
    pub fn outcome(&self) -> CallOutcome {
        match self {
            CallError::Failed(_) => CallOutcome::Error,
            _ => CallOutcome::Trap,
        }
    }
}

/// The engine, the linker, and the epoch ticker.
pub struct Runtime {
    pub engine: Engine,
    linker: Linker<State>,
    cache_dir: Option<PathBuf>,
    stop_ticker: Arc<AtomicBool>,
    ticker: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Long calls take turns here (`throttle`).
    gate: Gate,
}

fn engine() -> Result<Engine, String> {
    let mut c = wasmtime::Config::new();
    c.wasm_component_model(true).epoch_interruption(true);
    let mut pool = PoolingAllocationConfig::new();
    // Slots for concurrent calls: each call holds one component instance (a few core instances, one
    // or two memories) until it returns; past this, calls fail cleanly with an instantiation error.
    pool.total_component_instances(256)
        .total_core_instances(2048)
        .total_memories(512)
        .total_tables(1024)
        .total_stacks(256)
        .max_memory_size(MAX_MEMORY_BYTES as usize)
        // Calls are short and many (a pre-put hook runs for every put): a slot is reused at once, so
        // its pages stay mapped and only the ones a call dirtied are reset (PAGEMAP_SCAN on Linux ≥ 6.7,
        // else memset of the low pages) instead of an madvise per call, whose TLB shootdowns cost
        // every thread of the server; what does get decommitted goes in batches.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(KEEP_RESIDENT_TABLE)
        .async_stack_keep_resident(KEEP_RESIDENT_STACK)
        .decommit_batch_size(DECOMMIT_BATCH);
    let mut pooled = c.clone();
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&pooled) {
        Ok(e) => Ok(e),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "plugin engine: pooling allocator unavailable, allocating on demand");
            c.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Engine::new(&c).map_err(|e| format!("{e:#}"))
        }
    }
}

impl Runtime {
    /// Creates the engine and starts its epoch ticker. `cache_dir`: where compiled components are kept
    /// (`None`: in memory only, i.e. compiled at every start).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Arc<Runtime>, String> {
        let engine = engine()?;
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| format!("{e:#}"))?;
        Plugin::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(|e| format!("{e:#}"))?;
        super::versions::add_to_linker(&mut linker).map_err(|e| format!("{e:#}"))?;
        if let Some(dir) = &cache_dir {
            if let Err(e) = std::fs::create_dir_all(dir) {
                tracing::warn!(dir = %dir.display(), %e, "plugin cache dir unusable; compiling in memory only");
            }
        }
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (engine, stop) = (engine.clone(), stop_ticker.clone());
            std::thread::Builder::new()
                .name("plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| format!("cannot start the plugin epoch thread: {e}"))?
        };
        Ok(Arc::new(Runtime {
            engine,
            linker,
            cache_dir,
            stop_ticker,
            ticker: std::sync::Mutex::new(Some(ticker)),
            gate: Gate::new(),
        }))
    }

    /// Stops the epoch ticker (calls still running then trap at their next deadline check only if the
    /// wall-clock limit ends them; none should be running).
    pub fn stop(&self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }

    /// Compiles a component, or loads it from the cache (keyed by the content's SHA-256 and the
    /// engine's compatibility hash, which covers the wasmtime version and settings). Blocking: run it
    /// off the async workers. Returns the component and whether it came from the cache.
    pub fn compile(&self, bytes: &[u8]) -> Result<(Component, bool), String> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let path = self.cache_dir.as_ref().map(|dir| dir.join(self.cache_name(&digest)));
        if let Some(path) = &path {
            if path.exists() {
                // SAFETY: the cache dir is inside the member's data dir, written only by `serialize` below
                // under a name that binds it to this engine; a file that does not deserialize is recompiled.
                match unsafe { Component::deserialize_file(&self.engine, path) } {
                    Ok(c) => return Ok((c, true)),
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %format!("{e:#}"), "plugin cache entry unusable; recompiling")
                    }
                }
            }
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| one_line(&format!("{e:#}")))?;
        if let Some(path) = &path {
            match component.serialize() {
                Ok(data) => {
                    let tmp = path.with_extension("tmp");
                    if let Err(e) = std::fs::write(&tmp, data).and_then(|_| std::fs::rename(&tmp, path)) {
                        tracing::warn!(file = %path.display(), %e, "cannot write the plugin cache entry");
                    }
                }
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot serialize a compiled plugin"),
            }
        }
        Ok((component, false))
    }

    fn cache_name(&self, digest: &[u8; 32]) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}-{:016x}.cwasm", h.finish())
    }

    /// Removes cached compilations of anything but the components whose SHA-256 is in `keep`.
    pub fn prune_cache(&self, keep: &[[u8; 32]]) {
        let Some(dir) = &self.cache_dir else { return };
        let keep: Vec<String> = keep.iter().map(|d| self.cache_name(d)).collect();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".cwasm") && !keep.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Links a component's imports (a component importing anything the host does not offer fails here)
    /// and tells which contract version it implements.
    pub fn prepare(&self, component: &Component) -> Result<Pre, String> {
        let pre = self.linker.instantiate_pre(component).map_err(|e| one_line(&format!("{e:#}")))?;
        Pre::new(pre)
    }

    /// A fresh store for calls into `info` (one instance lives in it).
    pub(super) fn store(&self, info: &Arc<PluginInfo>) -> Store<State> {
        let (stdout, stderr) = (MemoryOutputPipe::new(PIPE_CAPACITY), MemoryOutputPipe::new(PIPE_CAPACITY));
        let mut b = WasiCtxBuilder::new();
        b.stdout(stdout.clone()).stderr(stderr.clone());
        b.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        let grants = &info.config.grants;
        for name in &grants.env {
            if let Ok(v) = std::env::var(name) {
                b.env(name, v);
            }
        }
        if grants.network {
            b.inherit_network().allow_tcp(true).allow_udp(true).allow_ip_name_lookup(true);
        }
        for (guest, host) in &grants.dirs {
            if let Err(e) = b.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadOnly) {
                tracing::warn!(plugin = %info.name, dir = %host.display(), error = %format!("{e:#}"), "granted dir unavailable");
            }
        }
        let state = State {
            wasi: b.build(),
            table: ResourceTable::new(),
            limiter: Limiter { memory_bytes: info.config.memory_bytes as usize, memory_hit: false },
            info: info.clone(),
            chain: vec![info.name.clone()],
            deadline: Instant::now() + info.config.time,
            turn: self.gate.turn(),
            caller: Caller::default(),
            output: Output { stdout, stderr, logged: [0, 0] },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            let state = ctx.data_mut();
            if Instant::now() >= state.deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(state.turn.on_tick())
            }
        });
        store
    }
}

/// What a plugin printed (WASI stdout and stderr, captured), and how much of it is already logged.
pub(super) struct Output {
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    logged: [usize; 2],
}

impl Output {
    /// What was printed since the last look: (stdout, stderr).
    fn take(&mut self) -> (String, String) {
        let mut new = |i: usize, pipe: &MemoryOutputPipe| {
            let all = pipe.contents();
            let text = String::from_utf8_lossy(&all[self.logged[i].min(all.len())..]).trim().to_string();
            self.logged[i] = all.len();
            text
        };
        (new(0, &self.stdout), new(1, &self.stderr))
    }

    /// Bytes captured so far: an instance whose pipes fill up is not reused.
    pub(super) fn used(&self) -> usize {
        self.logged[0] + self.logged[1]
    }
}

/// Turns a call's result into the value or a [`CallError`], and passes on what the guest printed.
pub(super) fn finish<R>(
    info: &PluginInfo,
    r: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
    store: &mut Store<State>,
) -> Result<R, CallError> {
    store.data_mut().turn.reset();
    let (out, err) = store.data_mut().output.take();
    if !out.is_empty() {
        tracing::info!(plugin = %info.name, "stdout: {}", out.replace('\n', " | "));
    }
    if !err.is_empty() {
        tracing::warn!(plugin = %info.name, "stderr: {}", err.replace('\n', " | "));
    }
    let e = match r {
        Ok(Ok(v)) => return Ok(v),
        Err(_) => return Err(CallError::Timeout(info.config.time)),
        Ok(Err(e)) => e,
    };
    if store.data().limiter.memory_hit {
        return Err(CallError::Memory(info.config.memory_bytes));
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Err(CallError::Timeout(info.config.time)),
        Some(trap) => {
            // A Rust guest's panic message is on its stderr; it says more than `unreachable`.
            let panic: Vec<&str> = err
                .lines()
                .map(|l| l.find("panicked at ").map_or(l, |i| &l[i..]).trim())
                .filter(|l| !l.is_empty() && !l.starts_with("note: "))
                .take(3)
                .collect();
            let trap = trap.to_string();
            let mut msg = trap.strip_prefix("wasm trap: ").unwrap_or(&trap).to_string();
            if !panic.is_empty() {
                msg = format!("{msg} ({})", truncate(&panic.join(" "), 512));
            }
            Err(CallError::Trap(msg))
        }
        None => Err(CallError::Failed(one_line(&format!("{e:#}")))),
    }
}

/// Error text on one line (wasmtime's parse errors span several).
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl State {
    fn kv(&self) -> Result<Arc<dyn PluginKv>, String> {
        self.info.kv.upgrade().ok_or_else(|| "etcdserver: server stopped".to_string())
    }

    /// Refuses a host KV call on `key`..`range_end` unless the key is given and `grants` (the plugin's
    /// read or write prefixes) cover the range; `verb` names the refusal (read, write, delete).
    fn permitted(&self, grants: &[Vec<u8>], verb: &str, key: &[u8], range_end: &[u8]) -> Result<(), String> {
        key_given(key)?;
        if !granted(grants, key, range_end) {
            return Err(self.info.denied(verb, key, range_end));
        }
        Ok(())
    }

    fn metric(&self, name: String, kind: MetricKind, labels: Vec<String>, value: f64) {
        let Some(set) = self.info.metrics.get() else { return };
        if let Err(e) = set.update(&name, kind, labels, value) {
            // A misspelt name or a wrong label count is a bug in the plugin: said once, loudly.
            let first = {
                let mut warned = self.info.warned.lock().unwrap_or_else(|e| e.into_inner());
                warned.len() < MAX_WARNED && warned.insert(name.clone())
            };
            if first {
                let defined = match self.info.metric_names.as_slice() {
                    [] => "none".to_string(),
                    names => names.join(", "),
                };
                tracing::warn!(
                    plugin = %self.info.name,
                    "metric update ignored: {e} (its manifest defines: {defined}); said once per metric name"
                );
            } else {
                tracing::debug!(plugin = %self.info.name, %e, "plugin metric update ignored");
            }
        }
    }
}

/// etcd checks a request before the caller's permissions: an empty key is refused as etcd refuses it, not
/// as a grant the plugin lacks (whose suggested fix, granting every key, would not help).
fn key_given(key: &[u8]) -> Result<(), String> {
    match key {
        [] => Err(crate::error::Error::EmptyKey.to_string()),
        _ => Ok(()),
    }
}

/// A key as a denied call's message shows it: lossy UTF-8, at most [`MAX_KEY_SHOWN`] bytes of it.
fn shown(key: &[u8]) -> String {
    let s = String::from_utf8_lossy(&key[..key.len().min(MAX_KEY_SHOWN)]);
    if key.len() > MAX_KEY_SHOWN {
        format!("{s}…")
    } else {
        s.into_owned()
    }
}

/// What a denied call touched, in a user's terms: a key, the keys under a prefix, every key, a range.
fn describe(key: &[u8], end: &[u8]) -> String {
    let k = shown(key);
    match end {
        b"" => format!("key {k:?}"),
        b"\0" if key.is_empty() || key == b"\0" => "every key".to_string(),
        b"\0" => format!("keys from {k:?} on"),
        _ if KeyRange::prefix_end(key) == end => format!("keys under {k:?}"),
        _ => format!("keys [{k:?}, {:?})", shown(end)),
    }
}

/// The grant prefix that covers `[key, end)`: a single key's own folder (up to its last '/'), a
/// prefix range's prefix, a range's common prefix; `""` (every key) for an open-ended range.
fn grant_for(key: &[u8], end: &[u8]) -> Vec<u8> {
    match end {
        b"" => match key.iter().rposition(|&b| b == b'/') {
            Some(i) => key[..=i].to_vec(),
            None => key.to_vec(),
        },
        b"\0" => Vec::new(),
        _ if KeyRange::prefix_end(key) == end => key.to_vec(),
        _ => key.iter().zip(end).take_while(|(a, b)| a == b).map(|(a, _)| *a).collect(),
    }
}

/// A Range's answer as the contract's.
fn range_result(resp: crate::proto::etcdserverpb::RangeResponse) -> wit::RangeResult {
    wit::RangeResult {
        revision: resp.header.map_or(0, |h| h.revision),
        kvs: resp
            .kvs
            .into_iter()
            .map(|kv| wit::KeyValue {
                key: kv.key,
                value: kv.value,
                create_revision: kv.create_revision,
                mod_revision: kv.mod_revision,
                version: kv.version,
                lease: kv.lease,
            })
            .collect(),
        more: resp.more,
        count: resp.count,
    }
}

impl self::modkv::plugin::types::Host for State {}

impl self::modkv::plugin::host::Host for State {
    async fn log(&mut self, level: self::modkv::plugin::host::Level, message: String) {
        use self::modkv::plugin::host::Level;
        let name = &self.info.name;
        let message = truncate(&message, MAX_MESSAGE);
        match level {
            Level::Debug => tracing::debug!(plugin = %name, "{message}"),
            Level::Info => tracing::info!(plugin = %name, "{message}"),
            Level::Warn => tracing::warn!(plugin = %name, "{message}"),
            Level::Error => tracing::error!(plugin = %name, "{message}"),
        }
    }

    async fn config(&mut self, key: String) -> Option<String> {
        self.info.config.values.get(&key).cloned()
    }

    async fn range(
        &mut self,
        key: Vec<u8>,
        range_end: Vec<u8>,
        limit: i64,
        serializable: bool,
    ) -> Result<wit::RangeResult, String> {
        self.permitted(&self.info.config.read, "read", &key, &range_end)?;
        let kv = self.kv()?;
        let r = crate::proto::etcdserverpb::RangeRequest { key, range_end, limit, serializable, ..Default::default() };
        Ok(range_result(kv.kv_range(r, self.caller.clone()).await?))
    }

    async fn range_for_caller(
        &mut self,
        key: Vec<u8>,
        range_end: Vec<u8>,
        limit: i64,
        serializable: bool,
        scope: wit::CallerScope,
    ) -> Result<wit::RangeResult, String> {
        self.permitted(&self.info.config.read, "read", &key, &range_end)?;
        let kv = self.kv()?;
        let r = crate::proto::etcdserverpb::RangeRequest { key, range_end, limit, serializable, ..Default::default() };
        Ok(range_result(kv.kv_range_for_caller(r, scope, self.caller.clone()).await?))
    }

    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<i64, String> {
        self.permitted(&self.info.config.write, "write", &key, b"")?;
        let kv = self.kv()?;
        let r = crate::proto::etcdserverpb::PutRequest { key, value, ..Default::default() };
        let resp = kv.kv_put(r, self.chain.clone(), self.caller.clone()).await?;
        Ok(resp.header.map_or(0, |h| h.revision))
    }

    async fn delete(&mut self, key: Vec<u8>, range_end: Vec<u8>) -> Result<i64, String> {
        self.permitted(&self.info.config.write, "delete", &key, &range_end)?;
        let kv = self.kv()?;
        let r = crate::proto::etcdserverpb::DeleteRangeRequest { key, range_end, ..Default::default() };
        Ok(kv.kv_delete(r, self.caller.clone()).await?.deleted)
    }

    async fn counter_add(&mut self, name: String, label_values: Vec<String>, value: f64) {
        self.metric(name, MetricKind::Counter, label_values, value)
    }

    async fn gauge_set(&mut self, name: String, label_values: Vec<String>, value: f64) {
        self.metric(name, MetricKind::Gauge, label_values, value)
    }

    async fn histogram_observe(&mut self, name: String, label_values: Vec<String>, value: f64) {
        self.metric(name, MetricKind::Histogram, label_values, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(toml: &str) -> PluginInfo {
        let config = PluginConfig::parse(toml).unwrap();
        PluginInfo::new("counter".into(), config, "counter.toml".into(), Vec::new(), super::super::kv::detached())
    }

    #[test]
    fn a_denied_call_names_the_grant_that_allows_it() {
        let p = info("[grants]\nread = [\"hello/\"]\n");
        assert_eq!(
            p.denied("read", b"app/", b"app0"),
            "permission denied: plugin counter may not read keys under \"app/\"; grant it in counter.toml: [grants] \
             read = [\"hello/\", \"app/\"]"
        );
        assert_eq!(
            p.denied("write", b"app/x/y", b""),
            "permission denied: plugin counter may not write key \"app/x/y\"; grant it in counter.toml: [grants] \
             write = [\"app/x/\"]"
        );
        assert_eq!(
            p.denied("read", b"\0", b"\0"),
            "permission denied: plugin counter may not read every key; grant it in counter.toml: [grants] \
             read = [\"hello/\", \"\"]"
        );
        assert!(p
            .denied("delete", b"a", b"\0")
            .contains("may not delete keys from \"a\" on; grant it in counter.toml: [grants] write = [\"\"]"));
        assert!(p
            .denied("read", b"ab/c", b"ab/x")
            .contains("keys [\"ab/c\", \"ab/x\"); grant it in counter.toml: [grants] read = [\"hello/\", \"ab/\"]"));
        // A key of megabytes is shown cut (lossy UTF-8, 256 bytes of it).
        let key = [&b"b/"[..], &[0xff; 1 << 20]].concat();
        assert_eq!(
            p.denied("write", &key, b""),
            format!(
                "permission denied: plugin counter may not write key \"b/{}…\"; grant it in counter.toml: [grants] \
                 write = [\"b/\"]",
                "\u{fffd}".repeat(254)
            )
        );
        assert_eq!(key_given(b""), Err("etcdserver: key is not provided".to_string()));
        // What each suggestion grants does cover the call.
        for (key, end) in
            [(&b"app/"[..], &b"app0"[..]), (b"app/x/y", b""), (b"\0", b"\0"), (b"a", b"\0"), (b"ab/c", b"ab/x")]
        {
            assert!(granted(&[grant_for(key, end)], key, end), "{key:?} {end:?}");
        }
    }
}

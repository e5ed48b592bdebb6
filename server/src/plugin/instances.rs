//! Calls into a plugin version, and the instances that answer them.
//!
//! ```text
//!   call ─▶ idle instance? ─ yes ─▶ call it ─ ok ─▶ answer; the instance goes back to the idle list
//!             │ no                      │           unless it answered `calls-per-instance` calls, is
//!             ▼                         │           older than MAX_AGE or printed a lot: then dropped
//!           fresh Store + instance ─────┘
//!                                      └─ failed ─▶ instance dropped; if it had answered calls before,
//!                                                   the call runs again alone in a fresh instance
//! ```
//!
//! Every instance lives in its own [`Store`] (memory cap, epoch deadline, WASI context). With
//! `calls-per-instance = 1` (the default for plugins that do not declare themselves stateless) every
//! call gets a fresh one. A plugin that declares it (or an operator's TOML) lets one instance answer up
//! to that many calls in a row: instantiating is most of a small hook's cost (≈ 10 µs for json-guard
//! against ≈ 1.5 µs for the call itself), and the call runs in the caller's task, no hand-off.
//!
//! What a reused instance keeps between calls is its memory (a plugin may cache in globals); what it
//! must not do is let one call's leftovers decide another's answer. So a call that fails in a reused
//! instance is judged again on its own in a fresh one (a time-out is not run twice: its time is spent).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::caller::Caller;
use super::host::{finish, wit, CallError, PluginInfo, Runtime, State, PIPE_CAPACITY, WALL_CLOCK_SLACK};
use super::versions::{Bindings, Pre};

/// The longest an instance is kept, however few calls it answered.
const MAX_AGE: Duration = Duration::from_secs(10);
/// Idle instances kept per plugin version (more are dropped when they come back).
const MAX_IDLE: usize = 8;

/// An export of the plugin contract, with its argument.
#[derive(Clone, Copy)]
pub enum Export<'a> {
    Manifest,
    HandleHttp(&'a wit::HttpRequest),
    PrePut(&'a wit::PutRequest),
}

/// What an export returned.
pub enum Answer {
    Manifest(wit::Manifest),
    HandleHttp(wit::HttpResponse),
    PrePut(wit::PutDecision),
}

/// One instance of a plugin in its own store.
pub struct Warm {
    store: wasmtime::Store<State>,
    plugin: Bindings,
    calls: u32,
    born: Instant,
}

impl Runtime {
    /// A fresh instance of `pre` (its time limit covers instantiation).
    pub async fn instantiate(&self, pre: &Pre, info: &Arc<PluginInfo>) -> Result<Warm, CallError> {
        let mut store = self.store(info);
        let r = tokio::time::timeout(info.config.time + WALL_CLOCK_SLACK, pre.instantiate(&mut store)).await;
        let plugin = finish(info, r, &mut store)?;
        Ok(Warm { store, plugin, calls: 0, born: Instant::now() })
    }

    /// Calls `manifest` in a fresh instance (at load, before the plugin's instances exist).
    pub async fn manifest(&self, pre: &Pre, info: &Arc<PluginInfo>) -> Result<wit::Manifest, CallError> {
        match self.instantiate(pre, info).await?.call(info, &[], &Caller::default(), Export::Manifest).await? {
            Answer::Manifest(m) => Ok(m),
            _ => Err(CallError::Failed("manifest returned another export's answer".into())),
        }
    }
}

impl Warm {
    /// Calls `export` with the plugin's time limit; `chain`: the plugins whose host calls led here (their
    /// pre-put hooks are skipped for writes this call makes); `caller`: who the call serves.
    pub async fn call(
        &mut self,
        info: &PluginInfo,
        chain: &[Arc<str>],
        caller: &Caller,
        export: Export<'_>,
    ) -> Result<Answer, CallError> {
        let state = self.store.data_mut();
        state.deadline = Instant::now() + info.config.time;
        state.turn.reset();
        state.caller = caller.clone();
        state.chain.clear();
        state.chain.extend(chain.iter().cloned());
        state.chain.push(info.name.clone());
        self.store.set_epoch_deadline(1);
        self.calls += 1;
        let call = self.plugin.call(&mut self.store, export);
        let r = tokio::time::timeout(info.config.time + WALL_CLOCK_SLACK, call).await;
        finish(info, r, &mut self.store)
    }
}

/// The idle instances of one plugin version, and how many calls one may answer.
pub struct Instances {
    idle: Mutex<Vec<Warm>>,
    calls_per_instance: u32,
}

impl Instances {
    pub fn new(calls_per_instance: u32) -> Instances {
        Instances { idle: Mutex::new(Vec::new()), calls_per_instance: calls_per_instance.max(1) }
    }

    pub fn calls_per_instance(&self) -> u32 {
        self.calls_per_instance
    }

    /// Calls `export` for `caller`, in an idle instance if there is one, else in a fresh one.
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        runtime: &Runtime,
        pre: &Pre,
        info: &Arc<PluginInfo>,
        chain: &[Arc<str>],
        caller: &Caller,
        export: Export<'_>,
    ) -> Result<Answer, CallError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let reused = idle.is_some();
        let mut warm = match idle {
            Some(w) => w,
            None => runtime.instantiate(pre, info).await?,
        };
        let result = match warm.call(info, chain, caller, export).await {
            Err(e) if reused && !matches!(e, CallError::Timeout(_)) => {
                tracing::debug!(plugin = %info.name, error = %e, "call failed in a reused instance; running it alone");
                drop(warm);
                warm = runtime.instantiate(pre, info).await?;
                warm.call(info, chain, caller, export).await
            }
            r => r,
        };
        if result.is_ok() {
            self.give_back(warm);
        }
        result
    }

    /// Keeps `warm` for the next call, unless it has served its share.
    fn give_back(&self, warm: Warm) {
        if warm.calls >= self.calls_per_instance
            || warm.born.elapsed() >= MAX_AGE
            || warm.store.data().output.used() >= PIPE_CAPACITY / 2
        {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(warm);
        }
    }

    pub async fn pre_put(
        &self,
        runtime: &Runtime,
        pre: &Pre,
        info: &Arc<PluginInfo>,
        chain: &[Arc<str>],
        caller: &Caller,
        req: &wit::PutRequest,
    ) -> Result<wit::PutDecision, CallError> {
        match self.call(runtime, pre, info, chain, caller, Export::PrePut(req)).await? {
            Answer::PrePut(d) => Ok(d),
            _ => Err(CallError::Failed("pre-put returned another export's answer".into())),
        }
    }

    pub async fn handle_http(
        &self,
        runtime: &Runtime,
        pre: &Pre,
        info: &Arc<PluginInfo>,
        caller: &Caller,
        req: &wit::HttpRequest,
    ) -> Result<wit::HttpResponse, CallError> {
        match self.call(runtime, pre, info, &[], caller, Export::HandleHttp(req)).await? {
            Answer::HandleHttp(r) => Ok(r),
            _ => Err(CallError::Failed("handle-http returned another export's answer".into())),
        }
    }
}

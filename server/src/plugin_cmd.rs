//! `modkv plugin …`: writing plugins without a server.
//!
//! ```text
//!   modkv plugin new NAME [--route /p]... [--hook k/]... [--dir D] [--sdk P]   a ready crate (scaffold)
//!   modkv plugin check FILE.wasm [--toml NAME.toml]                           what the server would load
//! ```
//!
//! `check` runs the server's own loader steps (`plugin::inspect`) on one file, so it refuses what a
//! server refuses, with the same reason.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use modkv::plugin::config::{FailureMode, STATELESS_CALLS_PER_INSTANCE};
use modkv::plugin::host::Runtime;
use modkv::plugin::inspect::{self, file_name, Inspected};
use modkv::plugin::scaffold;

/// `modkv plugin`: make and check plugins.
#[derive(clap::Parser)]
#[command(name = "modkv plugin", version)]
enum PluginCommand {
    /// Writes a new plugin crate (Cargo.toml, src/lib.rs with a test, NAME.toml, README.md) into
    /// ./NAME (or --dir): build it with `cargo build --target wasm32-wasip2 --release`.
    New {
        /// The plugin's name: the crate's, the .wasm's and the TOML's.
        name: String,
        /// A route prefix it serves (repeatable); with neither --route nor --hook: /NAME.
        #[arg(long = "route")]
        routes: Vec<String>,
        /// A key prefix whose puts it checks (repeatable).
        #[arg(long = "hook")]
        hooks: Vec<String>,
        /// Where to write the crate [default: ./NAME]; must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The SDK folder to depend on [default: plugin-sdk/ of the checkout this modkv was built from].
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Loads a plugin component without a server and prints what it is (name, version, contract,
    /// routes, hooked prefixes, metrics, statelessness, grants), or why a server would refuse it.
    Check {
        /// The component (`target/wasm32-wasip2/release/NAME.wasm`).
        file: PathBuf,
        /// Its settings [default: the NAME.toml beside the file, if any].
        #[arg(long)]
        toml: Option<PathBuf>,
    },
}

pub fn main(args: impl Iterator<Item = std::ffi::OsString>) -> ExitCode {
    use clap::Parser;
    let cmd = match PluginCommand::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let result = match cmd {
        PluginCommand::New { name, routes, hooks, dir, sdk } => new(name, routes, hooks, dir, sdk),
        PluginCommand::Check { file, toml } => check(&file, toml.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `plugin-sdk/` of the checkout this binary was built from.
fn default_sdk() -> Result<PathBuf, String> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
    sdk.canonicalize().map_err(|e| {
        format!(
            "modkv plugin new: the SDK of the checkout modkv was built from ({}) is not there ({e}): give --sdk \
             <modkv checkout>/plugin-sdk",
            sdk.display()
        )
    })
}

fn new(
    name: String,
    routes: Vec<String>,
    hooks: Vec<String>,
    dir: Option<PathBuf>,
    sdk: Option<PathBuf>,
) -> Result<(), String> {
    let sdk = match sdk {
        Some(s) => s.canonicalize().map_err(|e| format!("modkv plugin new: --sdk {}: {e}", s.display()))?,
        None => default_sdk()?,
    };
    if !sdk.join("Cargo.toml").is_file() {
        return Err(format!("modkv plugin new: {} is not the plugin SDK (no Cargo.toml)", sdk.display()));
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
    let spec = scaffold::Spec { name: name.clone(), routes, hooks, sdk };
    let files = scaffold::files(&spec).map_err(|e| format!("modkv plugin new: {e}"))?;
    scaffold::write(&dir, &files).map_err(|e| format!("modkv plugin new: {e}"))?;
    let list: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
    println!("created plugin {name} in {}: {}", dir.display(), list.join(", "));
    println!("next:");
    println!("  cd {}", dir.display());
    println!("  cargo build --target wasm32-wasip2 --release");
    println!("  modkv plugin check target/wasm32-wasip2/release/{}.wasm --toml {name}.toml", name.replace('-', "_"));
    Ok(())
}

fn check(file: &Path, toml: Option<&Path>) -> Result<(), String> {
    let refused = |reason: String| format!("plugin {}: failed to load: {reason}", file.display());
    let wasm = std::fs::read(file).map_err(|e| refused(format!("cannot read it: {e}")))?;
    let toml = match toml {
        Some(t) => Some(t.to_path_buf()),
        None => inspect::settings_beside(file).map_err(refused)?,
    };
    let toml = match toml {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(text) => Some((path, text)),
            Err(e) => return Err(refused(format!("{}: cannot read it: {e}", path.display()))),
        },
        None => None,
    };
    let size = wasm.len();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("modkv plugin check: {e}"))?;
    let runtime = Runtime::new(None).map_err(|e| format!("modkv plugin check: the plugin engine: {e}"))?;
    let settings = toml.as_ref().map(|(p, t)| (p.as_path(), t.as_str()));
    let found = rt.block_on(inspect::inspect(&runtime, file, wasm, settings, modkv::plugin::kv::detached()));
    runtime.stop();
    let i = found.map_err(refused)?;
    print!("{}", describe(&i, file, size, toml.as_ref().map(|(p, _)| p.as_path())));
    Ok(())
}

/// What `check` prints about a plugin the server would load.
fn describe(i: &Inspected, file: &Path, size: usize, toml: Option<&Path>) -> String {
    let m = &i.manifest;
    let c = &i.info.config;
    let quoted = |v: &[Vec<u8>]| -> String {
        let items: Vec<String> = v.iter().map(|p| format!("{:?}", String::from_utf8_lossy(p))).collect();
        if items.is_empty() {
            "none".into()
        } else {
            items.join(", ")
        }
    };
    let from = |set_in_toml: bool, declared: bool| match (set_in_toml, declared) {
        (true, true) => " (narrowed by the TOML)",
        (true, false) => " (set by the TOML; the code declares none)",
        (false, _) => "",
    };
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<13}{v}\n"));
    line("plugin", format!("{} {}", i.info.name, m.version));
    line("file", format!("{} ({size} bytes), contract modkv:plugin@{}", file.display(), i.pre.version()));
    line(
        "settings",
        toml.map_or_else(|| format!("none (a {}.toml beside it: nothing granted)", i.info.name), file_name),
    );
    line(
        "routes",
        format!(
            "{}{}",
            if i.routes.is_empty() { "none".into() } else { i.routes.join(", ") },
            from(c.routes.is_some(), !m.routes.is_empty())
        ),
    );
    let hooks = if i.hooked.is_empty() { "none".into() } else { format!("puts under {}", quoted(&i.hooked)) };
    line("hooks", format!("{hooks}{}", from(c.hooked_prefixes.is_some(), !m.hooked_prefixes.is_empty())));
    if i.metric_defs.is_empty() {
        line("metrics", "none".into());
    }
    let prefix = modkv::metrics::plugin::sanitize(&i.info.name);
    for d in &i.metric_defs {
        let kind = format!("{:?}", d.kind).to_lowercase();
        let suffix = if kind == "counter" { "_total" } else { "" };
        let labels = if d.labels.is_empty() { String::new() } else { format!(" {{{}}}", d.labels.join(", ")) };
        line("metric", format!("{kind} modkv_plugin_{prefix}_{}{suffix}{labels}: {}", d.name, d.help));
    }
    let reuse = match (m.stateless, c.calls_per_instance) {
        (_, Some(n)) => format!("calls per instance: {n} (set by the TOML)"),
        (true, None) => format!("one instance answers up to {STATELESS_CALLS_PER_INSTANCE} calls in a row"),
        (false, None) => "a fresh instance for every call".into(),
    };
    line("stateless", format!("{} ({reuse})", if m.stateless { "yes" } else { "no" }));
    let g = &c.grants;
    let strs = |v: &[String]| if v.is_empty() { "none".to_string() } else { format!("{v:?}") };
    line("grant read", strs(&g.read));
    line("grant write", strs(&g.write));
    if !g.env.is_empty() || g.network || !g.dirs.is_empty() {
        let dirs: Vec<String> = g.dirs.iter().map(|(k, v)| format!("{k}={}", v.display())).collect();
        line("grant wasi", format!("env {:?}, network {}, dirs [{}]", g.env, g.network, dirs.join(", ")));
    }
    let failure = match c.failure_mode {
        FailureMode::FailClosed => "fail-closed (a failing hook refuses the put)",
        FailureMode::FailOpen => "fail-open (a failing hook lets the put through)",
    };
    line("failure-mode", failure.into());
    line("limits", format!("memory {} bytes, time {} ms per call", c.memory_bytes, c.time.as_millis()));
    line("config", if c.values.is_empty() { "none".into() } else { format!("{:?}", c.values) });
    out
}

//! What a plugin file is, before it joins a registry: its identity, its settings file, its manifest
//! checked against what the server serves. Shared by the server's loader and `modkv plugin check`, so
//! both refuse the same files with the same words.
//!
//! ```text
//!   <dir>/<file>.wasm ─▶ settings: the one <name>.toml whose name matches the file's ("-" = "_")
//!        │            ─▶ compile (cache) → link (contract version) → manifest() in a fresh instance
//!        ▼
//!   identity: the manifest's name; the file must be named after it ("-" and "_" alike, for cargo's
//!   `my-plugin` → my_plugin.wasm), or the plugin is refused; two files of one name: the first loads
//!        ▼
//!   routes / hooked prefixes: the manifest's, narrowed by the TOML's (each within one the code
//!   declares, unless it declares none); routes checked against the server's own paths; metric
//!   definitions checked (valid Prometheus names, no duplicates)
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::config::{self, PluginConfig};
use super::host::{wit, CallError, PluginInfo, Runtime};
use super::kv::PluginKv;
use super::versions::Pre;
use crate::metrics::plugin::{valid_name, MetricDef, MetricKind};

/// Paths the client port serves itself; no plugin route may be at or under them.
pub const RESERVED_ROUTES: [&str; 5] = ["/health", "/version", "/metrics", "/v3", "/v3beta"];

/// A plugin name or file stem as the identity rule compares it: `-` and `_` are the same character
/// (cargo names `my-plugin`'s component `my_plugin.wasm`).
pub fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| x == y || (x == b'-' || x == b'_') && (y == b'-' || y == b'_'))
}

/// A plugin file of a directory, with its settings file (or why it has no usable one).
pub struct Candidate {
    pub stem: String,
    pub wasm: PathBuf,
    /// The settings file: `None` if there is none, `Err` if there are two spellings of it.
    pub toml: Result<Option<PathBuf>, String>,
    /// An earlier file of the directory with the same name (`-` and `_` alike): this one is refused.
    pub duplicate_of: Option<PathBuf>,
}

/// The `*.wasm` files of `dir` in file-name order (the order hooks run in), each with its settings file.
pub fn scan(dir: &Path) -> std::io::Result<Vec<Candidate>> {
    let mut wasm = Vec::new();
    let mut tomls = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        let (Some(stem), Some(ext)) =
            (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|s| s.to_str()))
        else {
            continue;
        };
        if stem.starts_with('.') || !path.is_file() {
            continue;
        }
        match ext {
            "wasm" => wasm.push((stem.to_string(), path)),
            "toml" => tomls.push((stem.to_string(), path)),
            _ => {}
        }
    }
    wasm.sort();
    tomls.sort();
    let mut out: Vec<Candidate> = Vec::new();
    for (stem, path) in wasm {
        let duplicate_of = out.iter().find(|c| same_name(&c.stem, &stem)).map(|c| c.wasm.clone());
        let toml = settings_file(&stem, tomls.iter().filter(|(s, _)| same_name(s, &stem)).map(|(_, p)| p));
        out.push(Candidate { stem, wasm: path, toml, duplicate_of });
    }
    Ok(out)
}

/// The one settings file among `found` (the `.toml` files whose names match plugin file `stem`).
fn settings_file<'a>(stem: &str, found: impl Iterator<Item = &'a PathBuf>) -> Result<Option<PathBuf>, String> {
    let found: Vec<&PathBuf> = found.collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        many => Err(format!(
            "plugin {stem} has {} settings files ({}); keep one (\"-\" and \"_\" in a plugin's name are the same)",
            many.len(),
            many.iter().map(|p| file_name(p)).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The settings file of the plugin file `wasm` when it is looked at alone (`modkv plugin check`).
pub fn settings_beside(wasm: &Path) -> Result<Option<PathBuf>, String> {
    let stem = wasm.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let dir = wasm.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| p.file_stem().and_then(|s| s.to_str()).is_some_and(|s| same_name(s, stem)))
        .collect();
    found.sort();
    settings_file(stem, found.iter())
}

pub fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// What loading a plugin file found: everything the registry needs, checked.
pub struct Inspected {
    /// Its identity, with the settings and metrics (not yet defined) calls into it use.
    pub info: Arc<PluginInfo>,
    pub manifest: wit::Manifest,
    /// Route prefixes, without a trailing '/' (except "/" itself).
    pub routes: Vec<String>,
    pub hooked: Vec<Vec<u8>>,
    pub metric_defs: Vec<MetricDef>,
    pub calls_per_instance: u32,
    pub pre: Pre,
    /// Whether the compiled code came from the cache; how long the manifest call took.
    pub cached: bool,
    pub manifest_call: (Duration, Result<(), CallError>),
}

/// Reads what `wasm` (the bytes of `file`) is, with the settings `toml` (path and text): compiles and
/// links it, calls its manifest, and checks the manifest against the identity rule and what the server
/// serves. The error is the reason the server gives for not loading it.
pub async fn inspect(
    runtime: &Arc<Runtime>,
    file: &Path,
    wasm: Vec<u8>,
    toml: Option<(&Path, &str)>,
    kv: Weak<dyn PluginKv>,
) -> Result<Inspected, String> {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
    let config = match toml {
        Some((path, text)) => PluginConfig::parse(text).map_err(|err| format!("{}: {err}", file_name(path)))?,
        None => PluginConfig::default(),
    };
    let rt = runtime.clone();
    let (component, cached) = tokio::task::spawn_blocking(move || rt.compile(&wasm))
        .await
        .map_err(|err| format!("compiling: {err}"))?
        .map_err(|err| format!("not a loadable WebAssembly component: {err}"))?;
    let pre = runtime.prepare(&component).map_err(|err| format!("cannot link it: {err}"))?;
    // The manifest is asked under the file's name (it is not known before); calls after it use the
    // manifest's.
    let toml_name = toml.map_or_else(|| format!("{stem}.toml"), |(p, _)| file_name(p));
    let asking = Arc::new(PluginInfo::new(stem.as_str().into(), config.clone(), toml_name, Vec::new(), kv.clone()));
    let started = std::time::Instant::now();
    let manifest = runtime.manifest(&pre, &asking).await;
    let manifest_call = (started.elapsed(), manifest.as_ref().map(|_| ()).map_err(Clone::clone));
    let manifest = manifest.map_err(|err| format!("manifest() {err}"))?;
    check_identity(&stem, &manifest.name)?;
    let toml_name = toml.map_or_else(|| format!("{}.toml", manifest.name), |(p, _)| file_name(p));
    let declared: Vec<String> = manifest.routes.iter().map(|r| normalize_route(r)).collect();
    let routes = match &config.routes {
        Some(set) => narrowed_routes(&declared, set).map_err(|e| format!("{toml_name}: {e}"))?,
        None => declared,
    };
    for r in &routes {
        if !r.starts_with('/') {
            return Err(format!("route {r:?} does not start with '/'"));
        }
        if let Some(reserved) = RESERVED_ROUTES.iter().find(|res| route_matches(res, r)) {
            return Err(format!("route {r:?} is under {reserved}, which the server serves itself"));
        }
    }
    let hooked = match &config.hooked_prefixes {
        Some(set) => narrowed_prefixes(&manifest.hooked_prefixes, set).map_err(|e| format!("{toml_name}: {e}"))?,
        None => manifest.hooked_prefixes.clone(),
    };
    let metric_defs = metric_defs(&manifest.metrics)?;
    // The operator's TOML decides; else a stateless plugin's instances answer several calls in a row.
    let calls_per_instance =
        config.calls_per_instance.unwrap_or(if manifest.stateless { config::STATELESS_CALLS_PER_INSTANCE } else { 1 });
    let names = metric_defs.iter().map(|d| d.name.clone()).collect();
    let info = Arc::new(PluginInfo::new(manifest.name.as_str().into(), config, toml_name, names, kv));
    Ok(Inspected { info, manifest, routes, hooked, metric_defs, calls_per_instance, pre, cached, manifest_call })
}

/// The routes a plugin serves when its TOML sets `routes`: the code's declaration is the one source of
/// truth and the TOML may only narrow it — each route at or under one the manifest declares. Code that
/// declares no route (it answers wherever it is mounted, or predates route declarations) takes the
/// TOML's as they are.
pub fn narrowed_routes(declared: &[String], set: &[String]) -> Result<Vec<String>, String> {
    let set: Vec<String> = set.iter().map(|r| normalize_route(r)).collect();
    if declared.is_empty() {
        return Ok(set);
    }
    match set.iter().find(|r| !declared.iter().any(|d| route_matches(d, r))) {
        Some(r) => Err(format!(
            "route {r:?} is not one the plugin serves: its code declares {}; the TOML may only narrow them (a \
             route at or under one of these)",
            quoted(declared.iter().map(|d| d.as_bytes()))
        )),
        None => Ok(set),
    }
}

/// The key prefixes a plugin's pre-put hook runs for when its TOML sets `hooked-prefixes`: as with
/// routes, each must lie within one the code declares (start with it), unless the code declares none.
pub fn narrowed_prefixes(declared: &[Vec<u8>], set: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, String> {
    if declared.is_empty() {
        return Ok(set.to_vec());
    }
    match set.iter().find(|p| !declared.iter().any(|d| p.starts_with(d))) {
        Some(p) => Err(format!(
            "hooked prefix {:?} is not one the plugin hooks: its code declares {}; the TOML may only narrow them \
             (a prefix starting with one of these)",
            String::from_utf8_lossy(p),
            quoted(declared.iter().map(Vec::as_slice))
        )),
        None => Ok(set.to_vec()),
    }
}

/// `"a", "b"` for messages.
fn quoted<'a>(items: impl Iterator<Item = &'a [u8]>) -> String {
    items.map(|i| format!("{:?}", String::from_utf8_lossy(i))).collect::<Vec<_>>().join(", ")
}

/// A plugin is known by its manifest's name, and its file must say the same.
pub fn check_identity(stem: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!(
            "its manifest gives no name; a plugin is known by its manifest's name, and this file says it is \
             {stem:?}: Manifest::new(\"{stem}\", ..)"
        ));
    }
    if !valid_plugin_name(name) {
        return Err(format!(
            "its manifest names it {name:?}; a plugin name is ASCII letters, digits, '-' and '_' (it names \
             its files, metrics and errors)"
        ));
    }
    if !same_name(stem, name) {
        return Err(format!(
            "its manifest names it {name:?}, but the file is {stem}.wasm; a plugin is known by its manifest's \
             name and its files are <name>.wasm and <name>.toml (\"-\" and \"_\" alike): rename it {name}.wasm"
        ));
    }
    Ok(())
}

fn valid_plugin_name(name: &str) -> bool {
    name.len() <= 128 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether route prefix `prefix` (normalized) covers `path`: the path itself or anything below it.
pub fn route_matches(prefix: &str, path: &str) -> bool {
    prefix == "/" || path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// `/ui/` → `/ui`.
pub fn normalize_route(r: &str) -> String {
    let t = r.trim_end_matches('/');
    if t.is_empty() {
        "/".to_string()
    } else {
        t.to_string()
    }
}

/// Checks a manifest's metric definitions; a counter's `_total` suffix is dropped (the encoder adds it).
pub fn metric_defs(defs: &[wit::MetricDef]) -> Result<Vec<MetricDef>, String> {
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

    #[test]
    fn the_toml_only_narrows_what_the_code_declares() {
        let declared = vec!["/good".to_string(), "/ui".to_string()];
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(narrowed_routes(&declared, &set(&["/good/x/", "/ui"])).unwrap(), ["/good/x", "/ui"]);
        assert_eq!(narrowed_routes(&declared, &[]).unwrap(), Vec::<String>::new());
        assert_eq!(
            narrowed_routes(&declared, &set(&["/goodies"])).unwrap_err(),
            "route \"/goodies\" is not one the plugin serves: its code declares \"/good\", \"/ui\"; the TOML may \
             only narrow them (a route at or under one of these)"
        );
        assert_eq!(narrowed_routes(&[], &set(&["/anywhere"])).unwrap(), ["/anywhere"]);
        let hooks = vec![b"json/".to_vec()];
        assert_eq!(narrowed_prefixes(&hooks, &[b"json/a".to_vec()]).unwrap(), [b"json/a".to_vec()]);
        assert_eq!(
            narrowed_prefixes(&hooks, &[b"".to_vec()]).unwrap_err(),
            "hooked prefix \"\" is not one the plugin hooks: its code declares \"json/\"; the TOML may only narrow \
             them (a prefix starting with one of these)"
        );
        assert_eq!(narrowed_prefixes(&[], &[b"x/".to_vec()]).unwrap(), [b"x/".to_vec()]);
    }

    #[test]
    fn a_plugin_is_known_by_its_manifest_name() {
        assert!(check_identity("json-guard", "json-guard").is_ok());
        assert!(check_identity("json_guard", "json-guard").is_ok());
        assert!(check_identity("my_counter", "my-counter").is_ok());
        assert_eq!(
            check_identity("my_counter", "counter").unwrap_err(),
            "its manifest names it \"counter\", but the file is my_counter.wasm; a plugin is known by its manifest's \
             name and its files are <name>.wasm and <name>.toml (\"-\" and \"_\" alike): rename it counter.wasm"
        );
        assert!(check_identity("x", "").unwrap_err().contains("Manifest::new(\"x\", ..)"));
        assert!(check_identity("a.b", "a.b").unwrap_err().contains("ASCII letters"));
        assert!(!same_name("ab", "a-b") && same_name("a-b_c", "a_b-c") && !same_name("a-b", "a.b"));
    }

    #[test]
    fn one_settings_file_per_plugin_and_one_plugin_per_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in ["json-guard.wasm", "json_guard.wasm", "json_guard.toml", "hello.wasm", "hello.toml", "hello_.toml"] {
            std::fs::write(d.join(f), b"").unwrap();
        }
        std::fs::write(d.join("a-b.wasm"), b"").unwrap();
        std::fs::write(d.join("a-b.toml"), b"").unwrap();
        std::fs::write(d.join("a_b.toml"), b"").unwrap();
        let c = scan(d).unwrap();
        let stems: Vec<&str> = c.iter().map(|c| c.stem.as_str()).collect();
        assert_eq!(stems, ["a-b", "hello", "json-guard", "json_guard"]);
        assert_eq!(
            c[0].toml.as_ref().unwrap_err(),
            "plugin a-b has 2 settings files (a-b.toml, a_b.toml); keep one (\"-\" and \"_\" in a plugin's name are \
             the same)"
        );
        assert_eq!(c[1].toml, Ok(Some(d.join("hello.toml"))));
        assert_eq!(c[2].toml, Ok(Some(d.join("json_guard.toml"))));
        assert_eq!((c[2].duplicate_of.as_ref(), c[3].duplicate_of.as_ref()), (None, Some(&d.join("json-guard.wasm"))));
        assert_eq!(settings_beside(&d.join("json-guard.wasm")), Ok(Some(d.join("json_guard.toml"))));
    }
}

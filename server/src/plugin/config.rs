//! A plugin's optional `<name>.toml`, beside its `<name>.wasm` (`-` and `_` alike in the name; see
//! `inspect`). Plugin authors' reference: `plugin-sdk/src/toml.md`; keep the two in step.
//!
//! ```toml
//! routes = ["/hello"]               # narrows the manifest's route prefixes (inspect::narrowed_routes)
//! hooked-prefixes = ["json/"]       # narrows the manifest's hooked key prefixes
//! failure-mode = "fail-closed"      # or "fail-open": what a failing pre-put hook means (default closed)
//!
//! [limits]
//! memory-bytes = 67108864           # linear memory cap (default 64 MiB, at most 256 MiB)
//! time-ms = 1000                    # wall-clock time per call, host calls included (default 1000)
//! response-bytes = 16777216         # largest HTTP response body (default 16 MiB)
//! calls-per-instance = 64           # calls one instance may answer in a row (1: a fresh instance
//!                                   # for every call); default: 64 if the plugin's manifest says it is
//!                                   # stateless, else 1
//!
//! [grants]                          # nothing unless granted
//! read = ["json/"]                  # key prefixes the host `range` import may read ("" = every key)
//! write = ["audit/"]                # key prefixes `put` / `delete` may write
//! env = ["TZ"]                      # environment variables passed through (WASI)
//! network = false                   # WASI sockets (TCP, UDP, name lookup)
//! [grants.dirs]                     # read-only WASI preopens: guest path = host path
//! "/static" = "/srv/static"
//!
//! [config]                          # the plugin's own settings, read with the host `config` import
//! required = ["id", "kind"]         # non-string values are passed as JSON text
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::mvcc::KeyRange;

pub const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;
/// The pooling allocator's slot size: no plugin gets more linear memory than this.
pub const MAX_MEMORY_BYTES: u64 = 256 << 20;
pub const DEFAULT_TIME: Duration = Duration::from_millis(1000);
pub const DEFAULT_RESPONSE_BYTES: u64 = 16 << 20;
/// Calls one instance answers in a row when the manifest says the plugin is stateless.
pub const STATELESS_CALLS_PER_INSTANCE: u32 = 64;
pub const MAX_CALLS_PER_INSTANCE: u32 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    /// A failing pre-put hook refuses the put.
    #[default]
    FailClosed,
    /// A failing pre-put hook lets the put through unchanged.
    FailOpen,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    routes: Option<Vec<String>>,
    hooked_prefixes: Option<Vec<String>>,
    failure_mode: Option<FailureMode>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    grants: Grants,
    #[serde(default)]
    config: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Limits {
    memory_bytes: Option<u64>,
    time_ms: Option<u64>,
    response_bytes: Option<u64>,
    calls_per_instance: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Grants {
    #[serde(default)]
    pub read: Vec<String>,
    #[serde(default)]
    pub write: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub network: bool,
    #[serde(default)]
    pub dirs: BTreeMap<String, PathBuf>,
}

/// A plugin's settings, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    pub routes: Option<Vec<String>>,
    pub hooked_prefixes: Option<Vec<Vec<u8>>>,
    pub failure_mode: FailureMode,
    pub memory_bytes: u64,
    pub time: Duration,
    pub response_bytes: u64,
    /// Calls one instance may answer in a row (see `instances`); `None`: as the manifest says.
    pub calls_per_instance: Option<u32>,
    pub grants: Grants,
    pub read: Vec<Vec<u8>>,
    pub write: Vec<Vec<u8>>,
    pub values: BTreeMap<String, String>,
}

impl Default for PluginConfig {
    fn default() -> PluginConfig {
        PluginConfig::parse("").expect("the empty file is valid")
    }
}

impl PluginConfig {
    /// Parses the text of a `<name>.toml`; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<PluginConfig, String> {
        let f: File = toml::from_str(text).map_err(|e| e.to_string().trim_end().replace('\n', " "))?;
        let memory_bytes = f.limits.memory_bytes.unwrap_or(DEFAULT_MEMORY_BYTES);
        if memory_bytes == 0 || memory_bytes > MAX_MEMORY_BYTES {
            return Err(format!("limits.memory-bytes must be between 1 and {MAX_MEMORY_BYTES}, not {memory_bytes}"));
        }
        let time = f.limits.time_ms.map(Duration::from_millis).unwrap_or(DEFAULT_TIME);
        if time.is_zero() || time > Duration::from_secs(600) {
            return Err(format!("limits.time-ms must be between 1 and 600000, not {}", time.as_millis()));
        }
        if let Some(n) = f.limits.calls_per_instance {
            if !(1..=MAX_CALLS_PER_INSTANCE).contains(&n) {
                return Err(format!(
                    "limits.calls-per-instance must be between 1 and {MAX_CALLS_PER_INSTANCE}, not {n}"
                ));
            }
        }
        if let Some(routes) = &f.routes {
            for r in routes {
                if !r.starts_with('/') {
                    return Err(format!("routes: {r:?} does not start with '/'"));
                }
            }
        }
        let values = f
            .config
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(s) => s,
                    other => serde_json::to_string(&other).unwrap_or_else(|_| other.to_string()),
                };
                (k, v)
            })
            .collect();
        let bytes = |v: &[String]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        Ok(PluginConfig {
            routes: f.routes,
            hooked_prefixes: f.hooked_prefixes.as_deref().map(bytes),
            failure_mode: f.failure_mode.unwrap_or_default(),
            memory_bytes,
            time,
            response_bytes: f.limits.response_bytes.unwrap_or(DEFAULT_RESPONSE_BYTES),
            calls_per_instance: f.limits.calls_per_instance,
            read: bytes(&f.grants.read),
            write: bytes(&f.grants.write),
            grants: f.grants,
            values,
        })
    }
}

/// Whether the keys in `[key, range_end)` (etcd's range semantics: empty `range_end` is the single key,
/// `"\0"` every key from `key` on) all lie under one of `prefixes`.
pub fn granted(prefixes: &[Vec<u8>], key: &[u8], range_end: &[u8]) -> bool {
    prefixes.iter().any(|p| {
        if !key.starts_with(p) {
            return false;
        }
        if range_end.is_empty() {
            return true;
        }
        match KeyRange::prefix_end(p).as_slice() {
            // No key follows the prefix's keys: every key from `p` on is under it.
            [0] => true,
            _ if range_end == b"\0" => false,
            end => range_end <= end,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file_and_fills_defaults() {
        let c = PluginConfig::parse(
            r#"
            routes = ["/x"]
            hooked-prefixes = ["json/"]
            failure-mode = "fail-open"
            [limits]
            memory-bytes = 1048576
            time-ms = 200
            [grants]
            read = ["a/"]
            [config]
            s = "v"
            n = 3
            l = ["a", "b"]
            "#,
        )
        .unwrap();
        assert_eq!(c.routes, Some(vec!["/x".to_string()]));
        assert_eq!(c.hooked_prefixes, Some(vec![b"json/".to_vec()]));
        assert_eq!(c.failure_mode, FailureMode::FailOpen);
        assert_eq!((c.memory_bytes, c.time), (1 << 20, Duration::from_millis(200)));
        assert_eq!(c.read, vec![b"a/".to_vec()]);
        assert!(c.write.is_empty());
        assert_eq!(c.values["s"], "v");
        assert_eq!(c.values["n"], "3");
        assert_eq!(c.values["l"], r#"["a","b"]"#);
        let d = PluginConfig::default();
        assert_eq!((d.failure_mode, d.memory_bytes, d.time), (FailureMode::FailClosed, 64 << 20, DEFAULT_TIME));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = PluginConfig::parse("rotues = []").unwrap_err();
        assert!(e.contains("unknown field `rotues`"), "{e}");
        let e = PluginConfig::parse("[limits]\nmemory-bytes = 0").unwrap_err();
        assert!(e.contains("limits.memory-bytes"), "{e}");
        let e = PluginConfig::parse("[limits]\ncalls-per-instance = 0").unwrap_err();
        assert_eq!(e, "limits.calls-per-instance must be between 1 and 1000000, not 0");
        assert_eq!(PluginConfig::parse("[limits]\ncalls-per-instance = 5").unwrap().calls_per_instance, Some(5));
        assert_eq!(PluginConfig::default().calls_per_instance, None);
        let e = PluginConfig::parse("routes = [\"x\"]").unwrap_err();
        assert!(e.contains("does not start with '/'"), "{e}");
        assert!(PluginConfig::parse("this is not toml").is_err());
    }

    #[test]
    fn grants_cover_ranges_inside_a_prefix_only() {
        let p = vec![b"a/".to_vec()];
        assert!(granted(&p, b"a/x", b""));
        assert!(granted(&p, b"a/", b"a0"));
        assert!(granted(&p, b"a/x", b"a/y"));
        assert!(!granted(&p, b"a/", b"b"));
        assert!(!granted(&p, b"a/", b"\0"));
        assert!(!granted(&p, b"b", b""));
        assert!(granted(&[Vec::new()], b"", b"\0"));
        assert!(!granted(&[], b"a/x", b""));
    }
}

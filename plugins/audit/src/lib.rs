//! `audit`: hooks every put and always allows it, counting puts per top-level key prefix and observing
//! value sizes, as plugin metrics:
//!
//! - `modkv_plugin_audit_puts_total{prefix, txn}` (counter `puts`): puts, by top-level prefix and whether
//!   inside a Txn;
//! - `modkv_plugin_audit_value_bytes{prefix}` (histogram `value_bytes`): value sizes in bytes.
//!
//! The top-level prefix of `json/users/1` is `json/`, of `/registry/pods/x` it is `/registry/`; a key
//! with no `/` counts as `(none)`. `audit.toml`'s `[config] log = true` also logs every put.

use modkv_plugin_sdk::prelude::*;

struct Audit;

/// Label values longer than this are cut, to bound what one odd key can add to /metrics.
const MAX_LABEL_CHARS: usize = 64;

/// Histogram buckets: 16 B to 1 MiB, by 4x (etcd's default request limit is 1.5 MiB).
const SIZE_BUCKETS: [f64; 9] = [16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0];

impl Plugin for Audit {
    fn manifest() -> Manifest {
        Manifest::new("audit", env!("CARGO_PKG_VERSION"))
            // Counts go to host metrics, nothing is kept in memory: instances may be reused.
            .stateless()
            .hook_all()
            .metric(
                MetricDef::counter("puts", "Puts seen by audit, by top-level key prefix").labels(&["prefix", "txn"]),
            )
            .metric(
                MetricDef::histogram("value_bytes", "Sizes of values put, by top-level key prefix (audit)")
                    .labels(&["prefix"])
                    .buckets(&SIZE_BUCKETS),
            )
    }

    fn pre_put(put: Put) -> Decision {
        let prefix = top_level_prefix(&put.key);
        let txn = if put.in_txn { "true" } else { "false" };
        metrics::counter("puts").labels(&[&prefix, txn]).inc();
        metrics::histogram("value_bytes").labels(&[&prefix]).observe(put.value.len() as f64);
        if config::flag("log").unwrap_or(false) {
            log::info!(
                "put {:?} ({} bytes, lease {}, in txn: {})",
                put.key_str(),
                put.value.len(),
                put.lease,
                put.in_txn
            );
        }
        Decision::Allow
    }
}

export!(Audit);

/// The key up to and including its first `/` after any leading ones: `json/a/b` → `json/`,
/// `/registry/pods` → `/registry/`; `(none)` without such a `/`. Lossy UTF-8, at most
/// [`MAX_LABEL_CHARS`] characters.
fn top_level_prefix(key: &[u8]) -> String {
    let start = key.iter().take_while(|&&b| b == b'/').count();
    let Some(slash) = key[start..].iter().position(|&b| b == b'/') else {
        return "(none)".to_string();
    };
    let prefix = String::from_utf8_lossy(&key[..start + slash + 1]);
    if prefix.chars().count() > MAX_LABEL_CHARS {
        prefix.chars().take(MAX_LABEL_CHARS - 1).chain(['…']).collect()
    } else {
        prefix.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(top_level_prefix(b"json/users/1"), "json/");
        assert_eq!(top_level_prefix(b"json/"), "json/");
        assert_eq!(top_level_prefix(b"/registry/pods/x"), "/registry/");
        assert_eq!(top_level_prefix(b"//a/b"), "//a/");
        assert_eq!(top_level_prefix(b"foo"), "(none)");
        assert_eq!(top_level_prefix(b"/foo"), "(none)");
        assert_eq!(top_level_prefix(b""), "(none)");
        assert_eq!(top_level_prefix(b"\xffx/y"), "\u{fffd}x/");
        let long = format!("{}/x", "a".repeat(100));
        let label = top_level_prefix(long.as_bytes());
        assert_eq!(label.chars().count(), MAX_LABEL_CHARS);
        assert!(label.ends_with('…'));
    }

    #[test]
    fn manifest_hooks_everything() {
        let m = Audit::manifest();
        assert_eq!(m.hooked_prefixes, vec![Vec::<u8>::new()]);
        assert!(m.routes.is_empty());
        let names: Vec<_> = m.metrics.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["puts", "value_bytes"]);
        assert_eq!(m.metrics[1].kind, MetricKind::Histogram);
    }
}

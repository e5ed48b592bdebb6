//! What a plugin declares: [`Manifest`] (name, version, routes, hooked prefixes, metrics, whether it
//! is stateless) and [`MetricDef`].

use crate::{Manifest, MetricDef, MetricKind};

impl Manifest {
    /// A manifest with no routes, hooks or metrics. `version` is usually `env!("CARGO_PKG_VERSION")`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Manifest {
            name: name.into(),
            version: version.into(),
            routes: Vec::new(),
            hooked_prefixes: Vec::new(),
            metrics: Vec::new(),
            stateless: false,
        }
    }

    /// Says the plugin's answers do not depend on what earlier calls left in its memory: the server may
    /// then let one instance answer many calls in a row instead of instantiating the plugin for every
    /// call, which for a small hook is most of its cost. Globals survive between those calls (a cache
    /// in a `static` works; [`config`] values are cached this way), but a plugin that counts or
    /// remembers calls in its memory must not say it. Without it, every call gets a fresh instance.
    /// The operator's `[limits] calls-per-instance` in the plugin's TOML overrides either way.
    pub fn stateless(mut self) -> Self {
        self.stateless = true;
        self
    }

    /// Serves requests whose path is `prefix` or under it (e.g. `"/hello"` serves `/hello` and
    /// `/hello/x`).
    pub fn route(mut self, prefix: impl Into<String>) -> Self {
        self.routes.push(prefix.into());
        self
    }

    /// Runs [`Plugin::pre_put`] for puts whose key starts with `prefix`.
    pub fn hook_prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        self.hooked_prefixes.push(prefix.as_ref().to_vec());
        self
    }

    /// Runs [`Plugin::pre_put`] for every put (the empty prefix).
    pub fn hook_all(self) -> Self {
        self.hook_prefix(b"")
    }

    /// Defines a metric the plugin updates through [`metrics`].
    pub fn metric(mut self, def: MetricDef) -> Self {
        self.metrics.push(def);
        self
    }
}

impl MetricDef {
    fn new(kind: MetricKind, name: &str, help: &str) -> Self {
        MetricDef { name: name.into(), help: help.into(), kind, labels: Vec::new(), buckets: Vec::new() }
    }

    /// A counter: only goes up ([`metrics::Counter::add`]). Name it without `_total`: `/metrics` shows
    /// counter `puts` of plugin `audit` as `modkv_plugin_audit_puts_total` (a `_total` given here is
    /// dropped by the host, and [`metrics::counter`] drops it too, so both spellings work).
    pub fn counter(name: &str, help: &str) -> Self {
        Self::new(MetricKind::Counter, name, help)
    }

    /// A gauge: set to any value ([`metrics::Gauge::set`]).
    pub fn gauge(name: &str, help: &str) -> Self {
        Self::new(MetricKind::Gauge, name, help)
    }

    /// A histogram of observed values ([`metrics::Histogram::observe`]); the host's default buckets
    /// unless [`MetricDef::buckets`] gives others.
    pub fn histogram(name: &str, help: &str) -> Self {
        Self::new(MetricKind::Histogram, name, help)
    }

    /// Label names; every update gives values for them, in this order.
    pub fn labels(mut self, names: &[&str]) -> Self {
        self.labels = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Histogram bucket upper bounds, ascending.
    pub fn buckets(mut self, bounds: &[f64]) -> Self {
        self.buckets = bounds.to_vec();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_builder() {
        let m = Manifest::new("p", "1")
            .route("/p")
            .hook_prefix("a/")
            .hook_all()
            .metric(MetricDef::histogram("h", "help").labels(&["x"]).buckets(&[1.0, 2.0]));
        assert_eq!(m.routes, vec!["/p"]);
        assert_eq!(m.hooked_prefixes, vec![b"a/".to_vec(), Vec::new()]);
        assert_eq!(m.metrics[0].kind, MetricKind::Histogram);
        assert_eq!(m.metrics[0].labels, vec!["x"]);
        assert_eq!(m.metrics[0].buckets, vec![1.0, 2.0]);
        assert!(!m.stateless);
        assert!(Manifest::new("p", "1").stateless().stateless);
    }
}

//! Metrics of the WebAssembly plugins.
//!
//! ```text
//!   host, per plugin and hook (registered):  modkv_plugin_calls_total{plugin,hook}
//!                                            modkv_plugin_errors_total{plugin,hook}
//!                                            modkv_plugin_traps_total{plugin,hook}
//!                                            modkv_plugin_call_duration_seconds{plugin,hook}
//!   defined by a plugin's manifest (a collector over the loaded set, which hot reload changes):
//!                                            modkv_plugin_<plugin>_<metric>{<its labels>}
//! ```
//!
//! A plugin's metrics live as long as a plugin of that name is loaded: a reload that keeps a metric's
//! definition keeps its values; one that changes it starts it afresh; removing the plugin drops them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// `{plugin, hook}`.
type CallLabels = [(&'static str, String); 2];
type CallHistograms = Family<CallLabels, Histogram, fn() -> Histogram>;

/// Plugin call latency: 10 µs … ~5 s.
fn call_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00001, 2.0, 20))
}

/// Buckets for a plugin histogram that names none: Prometheus' defaults.
const DEFAULT_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How a plugin call ended, for the per-plugin counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    /// Failed without a trap (bad output, instantiation failure, wall-clock timeout in a host call).
    Error,
    /// A wasm trap: panic, `unreachable`, epoch deadline, memory cap.
    Trap,
}

#[derive(Debug)]
pub struct PluginMetrics {
    calls: Family<CallLabels, Counter>,
    errors: Family<CallLabels, Counter>,
    traps: Family<CallLabels, Counter>,
    duration: CallHistograms,
    defined: Arc<DefinedMetrics>,
}

impl PluginMetrics {
    pub(super) fn new(registry: &mut Registry) -> PluginMetrics {
        let calls = Family::<CallLabels, Counter>::default();
        let errors = Family::<CallLabels, Counter>::default();
        let traps = Family::<CallLabels, Counter>::default();
        let duration = CallHistograms::new_with_constructor(call_histogram);
        registry.register("modkv_plugin_calls", "Calls into WebAssembly plugins, by plugin and hook", calls.clone());
        registry.register(
            "modkv_plugin_errors",
            "Plugin calls that failed (traps included), by plugin and hook",
            errors.clone(),
        );
        registry.register(
            "modkv_plugin_traps",
            "Plugin calls that trapped (panic, time limit, memory cap), by plugin and hook",
            traps.clone(),
        );
        registry.register(
            "modkv_plugin_call_duration_seconds",
            "Latency of plugin calls, instantiation included, by plugin and hook",
            duration.clone(),
        );
        let defined = Arc::new(DefinedMetrics::default());
        registry.register_collector(Box::new(defined.clone()));
        PluginMetrics { calls, errors, traps, duration, defined }
    }

    /// Counts one call of `hook` into `plugin` that took `elapsed`.
    pub fn observe_call(&self, plugin: &str, hook: &'static str, elapsed: Duration, outcome: CallOutcome) {
        let labels = [("plugin", plugin.to_string()), ("hook", hook.to_string())];
        self.calls.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        if outcome != CallOutcome::Ok {
            self.errors.get_or_create(&labels).inc();
        }
        if outcome == CallOutcome::Trap {
            self.traps.get_or_create(&labels).inc();
        }
    }

    /// Declares `plugin`'s metrics (from its manifest), keeping the values of those whose definition is
    /// unchanged. Returns the handle its host calls update.
    pub fn define(&self, plugin: &str, defs: Vec<MetricDef>) -> Arc<PluginMetricSet> {
        let mut all = self.defined.plugins.write().unwrap_or_else(|e| e.into_inner());
        let old = all.get(plugin).cloned();
        let prefix = format!("modkv_plugin_{}_", sanitize(plugin));
        let mut metrics = BTreeMap::new();
        for def in defs {
            let kept = old.as_ref().and_then(|o| o.metrics.get(&def.name)).filter(|m| m.def == def).cloned();
            let m = kept.unwrap_or_else(|| {
                let full_name = format!("{prefix}{}", def.name);
                Arc::new(DefinedMetric::new(full_name, def.clone()))
            });
            metrics.insert(def.name.clone(), m);
        }
        let set = Arc::new(PluginMetricSet { metrics });
        all.insert(plugin.to_string(), set.clone());
        set
    }

    /// Drops the metrics of every plugin not in `loaded`.
    pub fn retain(&self, loaded: &[&str]) {
        let mut all = self.defined.plugins.write().unwrap_or_else(|e| e.into_inner());
        all.retain(|name, _| loaded.contains(&name.as_str()));
    }
}

/// `json-guard` → `json_guard`: a plugin name as it appears in metric names.
pub fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// Whether `s` is a valid Prometheus metric or label name (no colons: those are for recording rules).
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric as a plugin's manifest declares it. A counter's name is given without `_total` (the
/// encoder appends it).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDef {
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    pub labels: Vec<String>,
    pub buckets: Vec<f64>,
}

/// Every loaded plugin's metrics, by plugin name.
#[derive(Debug, Default)]
struct DefinedMetrics {
    plugins: RwLock<BTreeMap<String, Arc<PluginMetricSet>>>,
}

/// One plugin's metrics, by the name its manifest gives.
#[derive(Debug, Default)]
pub struct PluginMetricSet {
    metrics: BTreeMap<String, Arc<DefinedMetric>>,
}

/// Why a plugin's metric update was ignored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetricError {
    #[error("no metric {0:?} in the manifest")]
    Unknown(String),
    #[error("metric {name:?} is a {kind:?}, not a {used:?}")]
    WrongKind { name: String, kind: MetricKind, used: MetricKind },
    #[error("metric {name:?} has {want} labels, {got} values given")]
    Labels { name: String, want: usize, got: usize },
    #[error("counter {0:?} can only go up")]
    Negative(String),
}

/// Series per label-value combination, at most this many per metric (more are refused).
const MAX_SERIES: usize = 10_000;

impl PluginMetricSet {
    /// Applies one host call: `counter-add`, `gauge-set` or `histogram-observe`. A counter is found by
    /// the name its manifest gave, with or without `_total`.
    pub fn update(&self, name: &str, used: MetricKind, labels: Vec<String>, value: f64) -> Result<(), MetricError> {
        let m = self
            .metrics
            .get(name)
            .or_else(|| name.strip_suffix("_total").and_then(|n| self.metrics.get(n)))
            .ok_or_else(|| MetricError::Unknown(name.to_string()))?;
        if m.def.kind != used {
            return Err(MetricError::WrongKind { name: name.to_string(), kind: m.def.kind, used });
        }
        if labels.len() != m.def.labels.len() {
            return Err(MetricError::Labels { name: name.to_string(), want: m.def.labels.len(), got: labels.len() });
        }
        if used == MetricKind::Counter && (value.is_nan() || value < 0.0) {
            return Err(MetricError::Negative(name.to_string()));
        }
        let mut series = m.series.lock().unwrap_or_else(|e| e.into_inner());
        if !series.contains_key(&labels) && series.len() >= MAX_SERIES {
            return Ok(());
        }
        let s = series.entry(labels).or_insert_with(|| m.new_series());
        match s {
            Series::Counter(c) => {
                c.inc_by(value);
            }
            Series::Gauge(g) => {
                g.set(value);
            }
            Series::Histogram(h) => h.observe(value),
        }
        Ok(())
    }
}

#[derive(Debug)]
enum Series {
    Counter(Counter<f64, AtomicU64>),
    Gauge(Gauge<f64, AtomicU64>),
    Histogram(Histogram),
}

#[derive(Debug)]
struct DefinedMetric {
    full_name: String,
    def: MetricDef,
    series: Mutex<HashMap<Vec<String>, Series>>,
}

impl DefinedMetric {
    fn new(full_name: String, def: MetricDef) -> DefinedMetric {
        let m = DefinedMetric { full_name, def, series: Mutex::new(HashMap::new()) };
        if m.def.labels.is_empty() {
            // Without labels the one series exists from the start, at zero.
            let s = m.new_series();
            m.series.lock().unwrap_or_else(|e| e.into_inner()).insert(Vec::new(), s);
        }
        m
    }

    fn new_series(&self) -> Series {
        match self.def.kind {
            MetricKind::Counter => Series::Counter(Counter::default()),
            MetricKind::Gauge => Series::Gauge(Gauge::default()),
            MetricKind::Histogram => {
                let buckets =
                    if self.def.buckets.is_empty() { DEFAULT_BUCKETS.to_vec() } else { self.def.buckets.clone() };
                Series::Histogram(Histogram::new(buckets))
            }
        }
    }

    fn encode(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let kind = match self.def.kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        };
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if series.is_empty() {
            return Ok(());
        }
        let help = if self.def.help.is_empty() { "Defined by a plugin" } else { self.def.help.as_str() };
        let mut m = enc.encode_descriptor(&self.full_name, help.strip_suffix('.').unwrap_or(help), None, kind)?;
        let mut sorted: Vec<_> = series.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        if self.def.labels.is_empty() {
            // The one series, without `{}`.
            return match sorted.first() {
                Some((_, s)) => encode_series(s, m),
                None => Ok(()),
            };
        }
        for (values, s) in sorted {
            let labels: Vec<(String, String)> = self.def.labels.iter().cloned().zip(values.iter().cloned()).collect();
            encode_series(s, m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

fn encode_series(s: &Series, enc: prometheus_client::encoding::MetricEncoder) -> std::fmt::Result {
    match s {
        Series::Counter(c) => c.encode(enc),
        Series::Gauge(g) => g.encode(enc),
        Series::Histogram(h) => h.encode(enc),
    }
}

impl Collector for DefinedMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let all = self.plugins.read().unwrap_or_else(|e| e.into_inner());
        for set in all.values() {
            for m in set.metrics.values() {
                m.encode(&mut enc)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_metrics_encode_under_their_prefix_and_survive_a_same_definition_reload() {
        let m = super::super::Metrics::new(0);
        let def = |name: &str, kind, labels: &[&str]| MetricDef {
            name: name.into(),
            help: "Help.".into(),
            kind,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            buckets: vec![],
        };
        let set = m.plugins().define(
            "json-guard",
            vec![
                def("puts", MetricKind::Counter, &["prefix"]),
                def("size", MetricKind::Histogram, &[]),
                def("up", MetricKind::Gauge, &[]),
            ],
        );
        set.update("puts_total", MetricKind::Counter, vec!["a".into()], 2.0).unwrap();
        set.update("size", MetricKind::Histogram, vec![], 0.3).unwrap();
        assert_eq!(
            set.update("puts", MetricKind::Gauge, vec![], 1.0),
            Err(MetricError::WrongKind { name: "puts".into(), kind: MetricKind::Counter, used: MetricKind::Gauge })
        );
        assert!(matches!(set.update("nope", MetricKind::Gauge, vec![], 1.0), Err(MetricError::Unknown(_))));
        assert!(matches!(set.update("puts", MetricKind::Counter, vec![], 1.0), Err(MetricError::Labels { .. })));
        m.plugins().observe_call("json-guard", "pre_put", Duration::from_millis(1), CallOutcome::Trap);
        let text = m.encode(false);
        assert!(text.contains("# TYPE modkv_plugin_json_guard_puts_total counter\n"), "{text}");
        assert!(text.contains("modkv_plugin_json_guard_puts_total{prefix=\"a\"} 2.0\n"), "{text}");
        assert!(text.contains("modkv_plugin_json_guard_size_bucket{le=\"0.5\"} 1\n"), "{text}");
        assert!(text.contains("\nmodkv_plugin_json_guard_up 0.0\n"), "{text}");
        assert!(text.contains("\nmodkv_plugin_json_guard_size_count 1\n"), "{text}");
        assert!(text.contains("modkv_plugin_traps_total{plugin=\"json-guard\",hook=\"pre_put\"} 1\n"), "{text}");
        // Same definitions again: values kept.
        let set = m.plugins().define("json-guard", vec![def("puts", MetricKind::Counter, &["prefix"])]);
        set.update("puts", MetricKind::Counter, vec!["a".into()], 1.0).unwrap();
        let text = m.encode(false);
        assert!(text.contains("modkv_plugin_json_guard_puts_total{prefix=\"a\"} 3.0\n"), "{text}");
        assert!(!text.contains("modkv_plugin_json_guard_size"), "{text}");
        m.plugins().retain(&[]);
        assert!(!m.encode(false).contains("modkv_plugin_json_guard_puts"));
    }

    #[test]
    fn names() {
        assert_eq!(sanitize("json-guard.v2"), "json_guard_v2");
        assert!(valid_name("puts_total") && valid_name("_x") && !valid_name("1x") && !valid_name("a-b"));
    }
}

//! Updating the metrics the manifest defines ([`MetricDef`](crate::MetricDef)); they appear in `/metrics` as
//! `modkv_plugin_<plugin>_<name>`.
//!
//! ```no_run
//! use modkv_plugin_sdk::metrics;
//!
//! metrics::counter("requests").inc();
//! metrics::counter("puts").labels(&["json/"]).add(2.0);
//! metrics::gauge("queue_depth").set(3.0);
//! metrics::histogram("value_bytes").labels(&["json/"]).observe(512.0);
//! ```
use crate::bindings::modkv::plugin::host;

macro_rules! metric {
    ($(#[$doc:meta])* $ty:ident, $ctor:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[must_use = "a metric handle does nothing until it is updated"]
        pub struct $ty<'a> {
            name: &'a str,
            labels: Vec<String>,
        }

        impl<'a> $ty<'a> {
            /// The label values, in the order of the definition's label names.
            pub fn labels(mut self, values: &[&str]) -> Self {
                self.labels = values.iter().map(|s| s.to_string()).collect();
                self
            }
        }

        #[doc = concat!("A handle on the ", stringify!($ctor), " `name` of the manifest.")]
        pub fn $ctor(name: &str) -> $ty<'_> {
            $ty { name, labels: Vec::new() }
        }
    };
}

metric!(
    /// A counter of the manifest ([`counter`]).
    Counter,
    counter
);
metric!(
    /// A gauge of the manifest ([`gauge`]).
    Gauge,
    gauge
);
metric!(
    /// A histogram of the manifest ([`histogram`]).
    Histogram,
    histogram
);

impl Counter<'_> {
    /// Adds `value` (>= 0).
    pub fn add(&self, value: f64) {
        // The host registers a counter under its name without `_total`.
        let name = self.name.strip_suffix("_total").unwrap_or(self.name);
        host::counter_add(name, &self.labels, value)
    }
    /// Adds 1.
    pub fn inc(&self) {
        self.add(1.0)
    }
}

impl Gauge<'_> {
    /// Sets the gauge.
    pub fn set(&self, value: f64) {
        host::gauge_set(self.name, &self.labels, value)
    }
}

impl Histogram<'_> {
    /// Observes one value.
    pub fn observe(&self, value: f64) {
        host::histogram_observe(self.name, &self.labels, value)
    }
}

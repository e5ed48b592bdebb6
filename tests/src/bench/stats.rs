//! Latencies of one run and their summary: etcd's text (Summary, Response time histogram, Latency
//! distribution, Error distribution) or JSON.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use serde_json::{json, Value};

/// The percentiles the summary lists (etcd's, 10 to 99.9).
pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];
/// Buckets of the text histogram.
const BUCKETS: usize = 10;

/// What one run measured: each successful request's latency (seconds) and the errors by message.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub name: String,
    /// Sorted once [`Stats::finish`] ran.
    pub lats: Vec<f64>,
    pub errors: BTreeMap<String, usize>,
    /// Wall time of the whole run.
    pub wall: Duration,
}

impl Stats {
    pub fn new(name: &str) -> Stats {
        Stats { name: name.into(), ..Default::default() }
    }

    pub fn record(&mut self, r: Result<Duration, String>) {
        match r {
            Ok(d) => self.lats.push(d.as_secs_f64()),
            Err(e) => *self.errors.entry(e).or_default() += 1,
        }
    }

    pub fn merge(&mut self, other: Stats) {
        self.lats.extend(other.lats);
        for (e, n) in other.errors {
            *self.errors.entry(e).or_default() += n;
        }
    }

    pub fn finish(mut self, wall: Duration) -> Stats {
        self.lats.sort_by(f64::total_cmp);
        self.wall = wall;
        self
    }

    pub fn count(&self) -> usize {
        self.lats.len()
    }

    pub fn error_count(&self) -> usize {
        self.errors.values().sum()
    }

    pub fn qps(&self) -> f64 {
        self.lats.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    pub fn average(&self) -> f64 {
        self.lats.iter().sum::<f64>() / self.lats.len().max(1) as f64
    }

    pub fn stddev(&self) -> f64 {
        let avg = self.average();
        (self.lats.iter().map(|l| (l - avg) * (l - avg)).sum::<f64>() / self.lats.len().max(1) as f64).sqrt()
    }

    /// The `p`th percentile in seconds, the way etcd's report picks it (index ⌈p·(n+1)/100⌉ − 1).
    pub fn percentile(&self, p: f64) -> f64 {
        let n = self.lats.len();
        if n == 0 {
            return 0.0;
        }
        let i = ((p * (n as f64 + 1.0) / 100.0).ceil() as isize - 1).clamp(0, n as isize - 1);
        self.lats[i as usize]
    }

    /// Upper bounds (seconds) and counts of [`BUCKETS`] + 1 equal-width buckets from fastest to slowest.
    pub fn histogram(&self) -> Vec<(f64, usize)> {
        let (Some(&lo), Some(&hi)) = (self.lats.first(), self.lats.last()) else { return Vec::new() };
        let width = (hi - lo) / BUCKETS as f64;
        let mut bounds: Vec<f64> = (0..BUCKETS).map(|i| lo + width * i as f64).collect();
        bounds.push(hi);
        let mut counts = vec![0; bounds.len()];
        let mut b = 0;
        for &l in &self.lats {
            while l > bounds[b] && b + 1 < bounds.len() {
                b += 1;
            }
            counts[b] += 1;
        }
        bounds.into_iter().zip(counts).collect()
    }

    /// The summary as etcd's benchmark prints it.
    pub fn text(&self) -> String {
        let mut s = String::new();
        if !self.lats.is_empty() {
            let _ = writeln!(s, "\n{} summary:", self.name);
            let _ = writeln!(s, "  Total:\t{:.4} secs.", self.wall.as_secs_f64());
            let _ = writeln!(s, "  Slowest:\t{:.4} secs.", self.lats[self.lats.len() - 1]);
            let _ = writeln!(s, "  Fastest:\t{:.4} secs.", self.lats[0]);
            let _ = writeln!(s, "  Average:\t{:.4} secs.", self.average());
            let _ = writeln!(s, "  Stddev:\t{:.4} secs.", self.stddev());
            let _ = writeln!(s, "  Requests/sec:\t{:.4}", self.qps());
            let _ = writeln!(s, "\nResponse time histogram:");
            let hist = self.histogram();
            let max = hist.iter().map(|h| h.1).max().unwrap_or(0).max(1);
            for (bound, count) in hist {
                let _ = writeln!(s, "  {bound:.4} [{count}]\t|{}", "∎".repeat(count * 40 / max));
            }
            let _ = writeln!(s, "\nLatency distribution:");
            for p in PERCENTILES {
                let _ = writeln!(s, "  {p}% in {:.3} ms.", self.percentile(p) * 1000.0);
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "\nError distribution:");
            for (e, n) in &self.errors {
                let _ = writeln!(s, "  [{n}]\t{e}");
            }
        }
        s
    }

    /// The same figures as JSON (milliseconds for latencies).
    pub fn json(&self) -> Value {
        let ms = |s: f64| (s * 1e6).round() / 1e3;
        let pct: serde_json::Map<String, Value> =
            PERCENTILES.iter().map(|&p| (format!("p{p}"), json!(ms(self.percentile(p))))).collect();
        let hist: Vec<Value> = self.histogram().into_iter().map(|(b, c)| json!({"le_ms": ms(b), "count": c})).collect();
        json!({
            "name": self.name,
            "count": self.count(),
            "errors": self.errors,
            "total_secs": self.wall.as_secs_f64(),
            "qps": self.qps(),
            "average_ms": ms(self.average()),
            "stddev_ms": ms(self.stddev()),
            "fastest_ms": ms(self.lats.first().copied().unwrap_or(0.0)),
            "slowest_ms": ms(self.lats.last().copied().unwrap_or(0.0)),
            "percentiles_ms": pct,
            "histogram": hist,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(ms: &[u64]) -> Stats {
        let mut s = Stats::new("t");
        for &m in ms {
            s.record(Ok(Duration::from_millis(m)));
        }
        s.finish(Duration::from_secs(1))
    }

    #[test]
    fn percentiles_and_histogram_match_etcds_rules() {
        let s = of(&(1..=100).collect::<Vec<_>>());
        // ⌈50·101/100⌉ − 1 = 50: the 51st of 100.
        assert_eq!(s.percentile(50.0), 0.051);
        assert_eq!(s.percentile(99.0), 0.100);
        assert_eq!(s.percentile(99.9), 0.100);
        let h = s.histogram();
        assert_eq!(h.len(), BUCKETS + 1);
        assert_eq!(h.iter().map(|b| b.1).sum::<usize>(), 100);
        assert_eq!(s.qps(), 100.0);
    }
}

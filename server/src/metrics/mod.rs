//! Prometheus metrics under etcd 3.4's names, so existing etcd dashboards and alerts work against modkv.
//!
//! ```text
//!   Metrics ── Registry ─┬─ registered:   proposals pending / failed, disk histograms (storage hook),
//!                        │                peer round-trip time, grpc_server_* (grpc layer)
//!                        ├─ ServerCollector:  read through [`MemberView`] at scrape time (leader, commit and
//!                        │                    applied index, db size, revisions, ids, versions)
//!                        ├─ ProcessCollector: read from /proc/self at scrape time (process_*)
//!                        └─ plugin:  per-plugin calls / errors / traps / latency, and each loaded
//!                                    plugin's own metrics (modkv_plugin_<plugin>_<metric>)
//!   /metrics (client port and --listen-metrics-urls) ── Metrics::encode
//! ```
//!
//! Output is the Prometheus text format 0.0.4 (`text/plain; version=0.0.4`), as etcd serves it, or
//! OpenMetrics when the scraper asks for it. Names, types, label names and help texts follow what etcd
//! 3.4 exposes; modkv's own metrics are under `modkv_`.

pub mod grpc;
pub mod plugin;
mod process;

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::storage::WriteObserver;
use crate::version::{ETCD_CLUSTER_VERSION, ETCD_VERSION};

/// The content type of the Prometheus text format, exactly as etcd sends it.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of OpenMetrics text, served when the scraper's `Accept` asks for it.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `etcd_network_peer_round_trip_time_seconds`'s label set: the peer's member id in hex.
type PeerLabels = [(&'static str, String); 1];
type PeerHistograms = Family<PeerLabels, Histogram, fn() -> Histogram>;

/// Every metric of one member.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    proposals_pending: Gauge,
    proposals_failed: Counter,
    wal_fsync: Histogram,
    backend_commit: Histogram,
    peer_rtt: PeerHistograms,
    grpc: grpc::GrpcMetrics,
    server: Arc<ServerCollector>,
    plugins: plugin::PluginMetrics,
}

/// etcd's disk latency buckets: 1 ms … 8.192 s (`prometheus.ExponentialBuckets(0.001, 2, 14)`).
fn disk_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

/// etcd's peer round-trip buckets: 0.1 ms … 0.8192 s (`prometheus.ExponentialBuckets(0.0001, 2, 14)`).
fn peer_rtt_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 14))
}

/// Registers under etcd's help text; the registry appends the final period itself.
fn register(registry: &mut Registry, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
    registry.register(name, help.strip_suffix('.').unwrap_or(help), metric);
}

impl Metrics {
    /// Creates the registry with every metric at zero. `quota_backend_bytes` is `--quota-backend-bytes`
    /// (0: etcd's default).
    pub fn new(quota_backend_bytes: u64) -> Arc<Metrics> {
        let mut registry = Registry::default();
        let proposals_pending = Gauge::default();
        let proposals_failed = Counter::default();
        let wal_fsync = disk_histogram();
        let backend_commit = disk_histogram();
        let peer_rtt = PeerHistograms::new_with_constructor(peer_rtt_histogram);
        // Counters are registered without `_total`; the encoder appends it.
        register(
            &mut registry,
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
            proposals_pending.clone(),
        );
        register(
            &mut registry,
            "etcd_server_proposals_failed",
            "The total number of failed proposals seen.",
            proposals_failed.clone(),
        );
        register(
            &mut registry,
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            wal_fsync.clone(),
        );
        register(
            &mut registry,
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
            backend_commit.clone(),
        );
        register(
            &mut registry,
            "etcd_network_peer_round_trip_time_seconds",
            "Round-Trip-Time histogram between peers.",
            peer_rtt.clone(),
        );
        let grpc = grpc::GrpcMetrics::new(&mut registry);
        let plugins = plugin::PluginMetrics::new(&mut registry);
        let quota =
            if quota_backend_bytes == 0 { crate::config::DEFAULT_QUOTA_BACKEND_BYTES } else { quota_backend_bytes };
        let server = Arc::new(ServerCollector { member: OnceLock::new(), quota_backend_bytes: quota });
        registry.register_collector(Box::new(server.clone()));
        registry.register_collector(Box::new(process::ProcessCollector));
        Arc::new(Metrics {
            registry,
            proposals_pending,
            proposals_failed,
            wal_fsync,
            backend_commit,
            peer_rtt,
            grpc,
            server,
            plugins,
        })
    }

    /// The member whose state the scrape-time metrics read. Held weakly: the member holds the metrics.
    pub fn set_member<M: MemberView + 'static>(&self, member: &Arc<M>) {
        let weak: Weak<dyn MemberView> = Arc::downgrade(member) as Weak<dyn MemberView>;
        let _ = self.server.member.set(weak);
    }

    /// Counts a proposal as pending until the returned guard is dropped (`etcd_server_proposals_pending`).
    pub fn proposal_pending(&self) -> PendingProposal {
        self.proposals_pending.inc();
        PendingProposal(self.proposals_pending.clone())
    }

    /// Counts a proposal that raft dropped, that timed out or that the stopping server abandoned
    /// (`etcd_server_proposals_failed_total`).
    pub fn proposal_failed(&self) {
        self.proposals_failed.inc();
    }

    /// A round trip to the peer `to` (`etcd_network_peer_round_trip_time_seconds{To="<hex id>"}`).
    pub fn observe_peer_rtt(&self, to: u64, rtt: Duration) {
        self.peer_rtt.get_or_create(&[("To", format!("{to:x}"))]).observe(rtt.as_secs_f64());
    }

    /// The WebAssembly plugins' metrics: per-plugin calls, errors, traps, latency, and their own.
    pub fn plugins(&self) -> &plugin::PluginMetrics {
        &self.plugins
    }

    pub fn grpc(&self) -> &grpc::GrpcMetrics {
        &self.grpc
    }

    /// The tower layer that counts the gRPC services' requests (`grpc_server_*`).
    pub fn grpc_layer(&self) -> grpc::GrpcMetricsLayer {
        self.grpc.layer()
    }

    /// Everything, in the Prometheus text format 0.0.4 or, with `openmetrics`, as OpenMetrics text.
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut om = String::with_capacity(64 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut om, &self.registry) {
            tracing::warn!(%e, "encoding metrics failed");
        }
        if openmetrics {
            om
        } else {
            openmetrics_to_text(&om)
        }
    }
}

/// The lines of Prometheus text `text` whose family is a plugin's (`modkv_plugin_*`: `plugin`) or is not
/// (`!plugin`), comments included.
pub fn plugin_families(text: &str, plugin: bool) -> String {
    families_where(text, |name| name.starts_with("modkv_plugin_") == plugin)
}

/// The families of a Prometheus text `text` whose names start with none of `prefixes` (a proxy passing
/// a member's metrics on without the families it serves itself).
pub fn families_without(text: &str, prefixes: &[&str]) -> String {
    families_where(text, |name| !prefixes.iter().any(|p| name.starts_with(p)))
}

fn families_where(text: &str, keep: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let name = match line.strip_prefix("# ") {
            Some(comment) => comment.split_whitespace().nth(1).unwrap_or(""),
            None => line,
        };
        if keep(name) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

impl Metrics {
    /// Only the plugins' families, in the Prometheus text format: what a proxy serves of this registry
    /// (it has no member whose metrics the others would describe).
    pub fn encode_plugins(&self) -> String {
        plugin_families(&self.encode(false), true)
    }
}

/// Decrements `etcd_server_proposals_pending` when dropped.
#[must_use]
pub struct PendingProposal(Gauge);

impl Drop for PendingProposal {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl WriteObserver for Metrics {
    /// A synced write is what etcd's WAL fsync is (the raft log and hard state made durable); an
    /// unsynced one is etcd's backend commit (the applied key space).
    fn observe_write(&self, sync: bool, elapsed: Duration) {
        let h = if sync { &self.wal_fsync } else { &self.backend_commit };
        h.observe(elapsed.as_secs_f64());
    }
}

/// Rewrites prometheus-client's OpenMetrics text as the Prometheus text format 0.0.4 that etcd serves:
/// a counter family is named with its `_total` suffix, `# UNIT` and `# EOF` go, OpenMetrics-only types
/// become `untyped`, and a family without samples is left out (as Go's client does).
fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut help: Option<&str> = None;
    let mut header = String::new();
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            header.clear();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let Some((name, kind)) = rest.rsplit_once(' ') else { continue };
            let (family, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "gauge" | "histogram" | "summary" => (name.to_string(), kind),
                "info" => (format!("{name}_info"), "gauge"),
                _ => (name.to_string(), "untyped"),
            };
            header.clear();
            if let Some(text) = help.take().and_then(|h| h.strip_prefix(name)) {
                let _ = writeln!(header, "# HELP {family}{text}");
            }
            let _ = writeln!(header, "# TYPE {family} {kind}");
        } else if line.starts_with('#') || line.is_empty() {
            // `# UNIT`, `# EOF`: not part of the 0.0.4 format.
        } else {
            out.push_str(&header);
            header.clear();
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// What the scrape-time metrics read of a member: implemented by the server layer, so metrics sit below
/// it and see only this.
pub trait MemberView: Send + Sync {
    fn member_state(&self) -> MemberState;
}

/// A member's state at one scrape.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemberState {
    pub member_id: u64,
    /// 0: no leader known.
    pub leader: u64,
    pub leader_changes: u64,
    pub applied_index: u64,
    pub commit_index: u64,
    pub current_rev: i64,
    pub compact_rev: i64,
    pub db_size: u64,
    pub db_size_in_use: u64,
    /// Watchers, unsynced (slow) watchers and watch streams now; events sent to watchers so far.
    pub watchers: i64,
    pub slow_watchers: i64,
    pub watch_streams: i64,
    pub watch_events: u64,
}

/// Metrics read from the member at scrape time.
struct ServerCollector {
    member: OnceLock<Weak<dyn MemberView>>,
    quota_backend_bytes: u64,
}

impl std::fmt::Debug for ServerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCollector").field("quota_backend_bytes", &self.quota_backend_bytes).finish()
    }
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

/// A gauge that is always 1 and carries its information in one label, like `etcd_server_version`.
fn label_gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, labels: &[(&str, &str)]) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(1i64).encode(m.encode_family(&labels)?)
}

/// `3.4.0` → `3.4`, as etcd labels its cluster version.
fn major_minor(v: &str) -> &str {
    match v.match_indices('.').nth(1) {
        Some((i, _)) => &v[..i],
        None => v,
    }
}

impl Collector for ServerCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let Some(m) = self.member.get().and_then(Weak::upgrade) else { return Ok(()) };
        let s = m.member_state();
        let (leader, me, on_disk, in_use) = (s.leader, s.member_id, s.db_size, s.db_size_in_use);
        let e = &mut enc;
        label_gauge(
            e,
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            &[("cluster_version", major_minor(ETCD_CLUSTER_VERSION))],
        )?;
        let compact = s.compact_rev;
        gauge(
            e,
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
            if compact > 0 { compact } else { -1 },
        )?;
        gauge(e, "etcd_debugging_mvcc_current_revision", "The current revision of store.", s.current_rev)?;
        let physical = "Total size of the underlying database physically allocated in bytes.";
        gauge(e, "etcd_debugging_mvcc_db_total_size_in_bytes", physical, on_disk as i64)?;
        let events = ConstCounter::new(s.watch_events);
        events.encode(e.encode_descriptor(
            "etcd_debugging_mvcc_events",
            "Total number of events sent by this member.",
            None,
            MetricType::Counter,
        )?)?;
        gauge(e, "etcd_debugging_mvcc_slow_watcher_total", "Total number of unsynced slow watchers.", s.slow_watchers)?;
        gauge(e, "etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.", s.watch_streams)?;
        gauge(e, "etcd_debugging_mvcc_watcher_total", "Total number of watchers.", s.watchers)?;
        gauge(e, "etcd_mvcc_db_total_size_in_bytes", physical, on_disk as i64)?;
        gauge(
            e,
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            in_use as i64,
        )?;
        gauge(
            e,
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            (leader != 0) as i64,
        )?;
        label_gauge(
            e,
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            &[("server_id", &format!("{me:x}"))],
        )?;
        gauge(
            e,
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            (leader != 0 && leader == me) as i64,
        )?;
        gauge(e, "etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.", 0)?;
        let changes = ConstCounter::new(s.leader_changes);
        changes.encode(e.encode_descriptor(
            "etcd_server_leader_changes_seen",
            "The number of leader changes seen.",
            None,
            MetricType::Counter,
        )?)?;
        // Gauges in etcd despite the `_total`: they are the applied and commit indexes.
        gauge(
            e,
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            s.applied_index as i64,
        )?;
        gauge(
            e,
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            s.commit_index as i64,
        )?;
        gauge(
            e,
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes.",
            self.quota_backend_bytes as i64,
        )?;
        label_gauge(
            e,
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            &[("server_version", ETCD_VERSION)],
        )?;
        label_gauge(
            e,
            "modkv_build_info",
            "modkv's version and the etcd version it speaks. Always 1.",
            &[("version", crate::version::MODKV_VERSION), ("etcd_version", ETCD_VERSION)],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_serves_only_the_plugin_families() {
        let m = Metrics::new(0);
        m.proposal_failed();
        m.plugins().observe_call("guard", "pre_put", Duration::from_millis(1), plugin::CallOutcome::Trap);
        let text = m.encode_plugins();
        let traps = "# TYPE modkv_plugin_traps_total counter\n\
                     modkv_plugin_traps_total{plugin=\"guard\",hook=\"pre_put\"} 1\n";
        assert!(text.contains(traps), "{text}");
        let names: Vec<&str> = text.lines().map(|l| l.strip_prefix("# ").map_or(l, |c| &c[5..])).collect();
        assert!(names.iter().all(|n| n.starts_with("modkv_plugin_")), "{text}");
        // The rest of a scrape: everything but those.
        let rest = plugin_families(&m.encode(false), false);
        assert!(rest.contains("\netcd_server_proposals_failed_total 1\n") && !rest.contains("modkv_plugin_"), "{rest}");
    }

    #[test]
    fn text_format_names_counters_with_total_and_drops_empty_families() {
        let m = Metrics::new(0);
        m.proposal_failed();
        {
            let _p = m.proposal_pending();
            assert!(m.encode(false).contains("\netcd_server_proposals_pending 1\n"));
        }
        m.observe_write(true, Duration::from_millis(3));
        let text = m.encode(false);
        assert!(text.starts_with("# HELP "), "{text}");
        assert!(text.contains(
            "# HELP etcd_server_proposals_failed_total The total number of failed proposals seen.\n\
             # TYPE etcd_server_proposals_failed_total counter\n\
             etcd_server_proposals_failed_total 1\n"
        ));
        assert!(text.contains("\netcd_server_proposals_pending 0\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 0\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.004\"} 1\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"} 1\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_count 1\n"));
        assert!(text.contains("# TYPE grpc_server_handled_total counter\n"));
        assert!(text.contains(
            "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 0\n"
        ));
        // No peers: the round-trip histogram has no samples and is left out, as etcd does.
        assert!(!text.contains("etcd_network_peer_round_trip_time_seconds"));
        assert!(!text.contains("# EOF"));
        assert!(!text.contains("# UNIT"));
        m.observe_peer_rtt(0xabc, Duration::from_millis(1));
        let text = m.encode(false);
        assert!(text.contains("# TYPE etcd_network_peer_round_trip_time_seconds histogram\n"));
        assert!(
            text.contains("etcd_network_peer_round_trip_time_seconds_bucket{le=\"0.0016\",To=\"abc\"} 1\n"),
            "{text}"
        );
        // OpenMetrics as prometheus-client writes it.
        let om = m.encode(true);
        assert!(om.contains("# TYPE etcd_server_proposals_failed counter\n"));
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn major_minor_version() {
        assert_eq!(major_minor("3.4.0"), "3.4");
        assert_eq!(major_minor("3.4"), "3.4");
    }
}

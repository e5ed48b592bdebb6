//! `/metrics` in the Prometheus text format with etcd 3.4's core metric names, on the client port and on
//! a separate `--listen-metrics-urls` listener (which also serves `/health`). The scrape is parsed and
//! checked for format validity, names, types, label sets and values that must hold after a known
//! sequence of requests.

use std::collections::{BTreeMap, BTreeSet};

use modkv_tests::http::{request, HttpResponse};
use modkv_tests::*;

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The families a dashboard for etcd relies on, with their types as etcd 3.4 declares them.
const REQUIRED: &[(&str, &str)] = &[
    ("etcd_server_has_leader", "gauge"),
    ("etcd_server_is_leader", "gauge"),
    ("etcd_server_is_learner", "gauge"),
    ("etcd_server_leader_changes_seen_total", "counter"),
    // Gauges despite the name: they are the commit and applied indexes.
    ("etcd_server_proposals_committed_total", "gauge"),
    ("etcd_server_proposals_applied_total", "gauge"),
    ("etcd_server_proposals_pending", "gauge"),
    ("etcd_server_proposals_failed_total", "counter"),
    ("etcd_server_id", "gauge"),
    ("etcd_server_version", "gauge"),
    ("etcd_server_quota_backend_bytes", "gauge"),
    ("etcd_cluster_version", "gauge"),
    ("etcd_mvcc_db_total_size_in_bytes", "gauge"),
    ("etcd_mvcc_db_total_size_in_use_in_bytes", "gauge"),
    ("etcd_debugging_mvcc_db_total_size_in_bytes", "gauge"),
    ("etcd_debugging_mvcc_current_revision", "gauge"),
    ("etcd_debugging_mvcc_compact_revision", "gauge"),
    ("etcd_debugging_mvcc_watcher_total", "gauge"),
    ("etcd_debugging_mvcc_watch_stream_total", "gauge"),
    ("etcd_debugging_mvcc_slow_watcher_total", "gauge"),
    ("etcd_debugging_mvcc_events_total", "counter"),
    ("etcd_disk_wal_fsync_duration_seconds", "histogram"),
    ("etcd_disk_backend_commit_duration_seconds", "histogram"),
    ("grpc_server_started_total", "counter"),
    ("grpc_server_handled_total", "counter"),
    ("grpc_server_msg_received_total", "counter"),
    ("grpc_server_msg_sent_total", "counter"),
    ("process_cpu_seconds_total", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_virtual_memory_max_bytes", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_max_fds", "gauge"),
    ("process_start_time_seconds", "gauge"),
];

/// `prometheus.ExponentialBuckets(0.001, 2, 14)`, etcd's disk latency buckets.
const DISK_BUCKETS: &[&str] = &[
    "0.001", "0.002", "0.004", "0.008", "0.016", "0.032", "0.064", "0.128", "0.256", "0.512", "1.024", "2.048",
    "4.096", "8.192", "+Inf",
];

/// gRPC status codes as go-grpc-prometheus labels them.
const GRPC_CODES: &[&str] = &[
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

// ---------------------------------------------------------------------------
// A parser for the Prometheus text format 0.0.4
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: Option<String>,
    samples: Vec<Sample>,
}

#[derive(Debug, Default)]
struct Scrape {
    families: BTreeMap<String, Family>,
}

/// The family a sample belongs to: histogram and summary samples carry a suffix.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, Family>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).is_some_and(|f| f.kind == "histogram" || (f.kind == "summary" && suffix != "_bucket")) {
                return base;
            }
        }
    }
    name
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_value(v: &str) -> f64 {
    match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => v.parse().unwrap_or_else(|e| panic!("bad sample value {v:?}: {e}")),
    }
}

/// `{a="x",b="y\"z"}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').expect("labels start with {");
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(r) = rest.strip_prefix('}') {
            return (labels, r);
        }
        let (name, r) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label in {s:?}"));
        assert!(is_name(name) && !name.starts_with("__"), "bad label name {name:?}");
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("bad escape {other:?} in {s:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {s:?}"),
            }
        };
        assert!(labels.insert(name.to_string(), value).is_none(), "label {name} twice in {s:?}");
        rest = &r[end + 1..];
    }
}

/// Parses a scrape, checking what makes it valid text format: HELP and TYPE at most once per family and
/// before its samples, known types, each family's samples together, names and labels well formed, no
/// sample twice.
fn parse_scrape(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    let mut current: Option<String> = None;
    let mut finished = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let f = scrape.families.entry(name.to_string()).or_default();
            assert!(f.help.is_none(), "second HELP for {name}");
            assert!(f.samples.is_empty(), "HELP for {name} after its samples");
            f.help = Some(help.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
            assert!(is_name(name), "bad family name {name:?}");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "bad type in {line:?}");
            let f = scrape.families.entry(name.to_string()).or_default();
            assert!(f.kind.is_empty(), "second TYPE for {name}");
            assert!(f.samples.is_empty(), "TYPE for {name} after its samples");
            f.kind = kind.to_string();
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let name = &line[..name_end];
        assert!(is_name(name), "bad metric name {name:?}");
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..])
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest.split_whitespace();
        let value = parse_value(fields.next().unwrap_or_else(|| panic!("no value in {line:?}")));
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().unwrap_or_else(|_| panic!("bad timestamp in {line:?}"));
        }
        assert!(fields.next().is_none(), "trailing fields in {line:?}");
        assert!(seen.insert(format!("{name}{labels:?}")), "sample twice: {line}");
        let family = family_of(name, &scrape.families).to_string();
        if current.as_deref() != Some(family.as_str()) {
            if let Some(prev) = current.take() {
                finished.insert(prev);
            }
            assert!(!finished.contains(&family), "samples of {family} are not together");
            current = Some(family.clone());
        }
        let f = scrape.families.entry(family).or_default();
        f.samples.push(Sample { name: name.to_string(), labels, value });
    }
    scrape
}

impl Scrape {
    #[track_caller]
    fn family(&self, name: &str) -> &Family {
        self.families.get(name).unwrap_or_else(|| panic!("no family {name}"))
    }

    /// The value of the one sample of `name` whose labels include `labels`.
    #[track_caller]
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let f = self.family(family_of(name, &self.families));
        let found: Vec<&Sample> = f
            .samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .collect();
        assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
        found[0].value
    }

    /// The sample names, as a dashboard sees them.
    fn names(&self) -> BTreeSet<&str> {
        self.families.keys().map(String::as_str).collect()
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn get(endpoint: &str, path: &str) -> HttpResponse {
    request(endpoint, "GET", path, b"")
}

#[track_caller]
fn scrape(endpoint: &str) -> Scrape {
    let r = get(endpoint, "/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some(TEXT_FORMAT));
    parse_scrape(&r.text())
}

fn with_metrics_listener(kind: Kind) -> (Server, String) {
    let metrics = format!("http://127.0.0.1:{}", free_port());
    let s = Server::start(kind, ServerOpts::new().args(["--listen-metrics-urls", &metrics]));
    (s, metrics)
}

const PUTS: usize = 3;

/// A known sequence: `PUTS` puts, two gets, one put with an empty key (InvalidArgument).
fn requests(s: &Server) {
    for i in 0..PUTS {
        assert_eq!(s.ctl_ok(&["put", &format!("k{i}"), "v"]), "OK\n");
    }
    assert_eq!(s.ctl_ok(&["get", "k0", "--print-value-only"]), "v\n");
    assert_eq!(s.ctl_ok(&["get", "k", "--prefix", "--keys-only"]), "k0\n\nk1\n\nk2\n\n");
    s.etcdctl(&["put", "", "x"]).assert_server_error("InvalidArgument", "etcdserver: key is not provided");
}

#[track_caller]
fn check_histogram(m: &Scrape, name: &str, buckets: &[&str]) -> f64 {
    let f = m.family(name);
    let les: Vec<&str> =
        f.samples.iter().filter(|s| s.name == format!("{name}_bucket")).map(|s| s.labels["le"].as_str()).collect();
    assert_eq!(les, buckets, "{name} buckets");
    let counts: Vec<f64> = f.samples.iter().filter(|s| s.name.ends_with("_bucket")).map(|s| s.value).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{name} buckets are not cumulative: {counts:?}");
    let count = m.value(&format!("{name}_count"), &[]);
    assert_eq!(counts.last().copied(), Some(count), "{name}: +Inf bucket = count");
    assert!(m.value(&format!("{name}_sum"), &[]) >= 0.0);
    count
}

fn kv(method: &str) -> [(&'static str, &str); 3] {
    [("grpc_service", "etcdserverpb.KV"), ("grpc_method", method), ("grpc_type", "unary")]
}

fn kv_code<'a>(method: &'a str, code: &'a str) -> [(&'static str, &'a str); 4] {
    [("grpc_service", "etcdserverpb.KV"), ("grpc_method", method), ("grpc_type", "unary"), ("grpc_code", code)]
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

both_kinds! {
    /// Names, types, label sets and values after a known sequence of requests.
    fn scrape_after_requests(kind) {
        let (s, _) = with_metrics_listener(kind);
        requests(&s);
        let m = scrape(&s.endpoint());

        for (name, ty) in REQUIRED {
            let f = m.family(name);
            assert_eq!(f.kind, *ty, "TYPE of {name}");
            assert!(f.help.as_deref().is_some_and(|h| !h.is_empty()), "HELP of {name}");
            assert!(!f.samples.is_empty(), "{name} has no samples");
        }
        // Every sample belongs to a family with a TYPE.
        for (name, f) in &m.families {
            assert!(!f.kind.is_empty(), "{name} has samples but no TYPE");
        }
        // A single member has no peers: the round-trip histogram has nothing to show.
        assert!(!m.families.contains_key("etcd_network_peer_round_trip_time_seconds"));

        // Raft and the server.
        assert_eq!(m.value("etcd_server_has_leader", &[]), 1.0);
        assert_eq!(m.value("etcd_server_is_leader", &[]), 1.0);
        assert_eq!(m.value("etcd_server_is_learner", &[]), 0.0);
        assert!(m.value("etcd_server_leader_changes_seen_total", &[]) >= 1.0);
        let committed = m.value("etcd_server_proposals_committed_total", &[]);
        let applied = m.value("etcd_server_proposals_applied_total", &[]);
        assert!(committed >= PUTS as f64, "committed {committed}");
        assert!(applied >= PUTS as f64, "applied {applied}");
        assert_eq!(m.value("etcd_server_proposals_pending", &[]), 0.0);
        assert_eq!(m.value("etcd_server_proposals_failed_total", &[]), 0.0);
        assert_eq!(m.value("etcd_server_quota_backend_bytes", &[]), 2147483648.0);
        assert_eq!(m.value("etcd_server_version", &[("server_version", "3.4.23")]), 1.0);
        assert_eq!(m.value("etcd_cluster_version", &[("cluster_version", "3.4")]), 1.0);
        let id = &m.family("etcd_server_id").samples[0].labels["server_id"];
        assert!(u64::from_str_radix(id, 16).is_ok_and(|id| id != 0), "server_id {id}");

        // The key space.
        assert_eq!(m.value("etcd_debugging_mvcc_current_revision", &[]), 1.0 + PUTS as f64);
        assert_eq!(m.value("etcd_debugging_mvcc_compact_revision", &[]), -1.0);
        assert!(m.value("etcd_mvcc_db_total_size_in_bytes", &[]) > 0.0);
        assert!(m.value("etcd_mvcc_db_total_size_in_use_in_bytes", &[]) > 0.0);

        // Disk latencies, with etcd's buckets.
        assert!(check_histogram(&m, "etcd_disk_wal_fsync_duration_seconds", DISK_BUCKETS) > 0.0);
        assert!(check_histogram(&m, "etcd_disk_backend_commit_duration_seconds", DISK_BUCKETS) > 0.0);

        // gRPC, as go-grpc-prometheus counts it.
        for (family, names) in [
            ("grpc_server_started_total", &["grpc_method", "grpc_service", "grpc_type"][..]),
            ("grpc_server_msg_received_total", &["grpc_method", "grpc_service", "grpc_type"][..]),
            ("grpc_server_msg_sent_total", &["grpc_method", "grpc_service", "grpc_type"][..]),
            ("grpc_server_handled_total", &["grpc_code", "grpc_method", "grpc_service", "grpc_type"][..]),
        ] {
            for sample in &m.family(family).samples {
                assert_eq!(sample.labels.keys().map(String::as_str).collect::<Vec<_>>(), names, "{sample:?}");
                assert!(
                    ["unary", "client_stream", "server_stream", "bidi_stream"].contains(&sample.labels["grpc_type"].as_str()),
                    "{sample:?}"
                );
            }
        }
        assert_eq!(m.value("grpc_server_started_total", &kv("Put")), PUTS as f64 + 1.0);
        assert_eq!(m.value("grpc_server_handled_total", &kv_code("Put", "OK")), PUTS as f64);
        assert_eq!(m.value("grpc_server_handled_total", &kv_code("Put", "InvalidArgument")), 1.0);
        assert_eq!(m.value("grpc_server_msg_received_total", &kv("Put")), PUTS as f64 + 1.0);
        assert_eq!(m.value("grpc_server_msg_sent_total", &kv("Put")), PUTS as f64);
        // The harness's readiness check reads too, so at least the two gets.
        assert!(m.value("grpc_server_handled_total", &kv_code("Range", "OK")) >= 2.0);
        // Every method of the API starts at zero with every code, so rates exist before the first error.
        for code in GRPC_CODES {
            m.value("grpc_server_handled_total", &kv_code("Txn", code));
        }
        assert_eq!(m.value("grpc_server_started_total", &kv("Compact")), 0.0);

        // The process.
        assert!(m.value("process_open_fds", &[]) > 0.0);
        assert!(m.value("process_max_fds", &[]) >= m.value("process_open_fds", &[]));
        assert!(m.value("process_resident_memory_bytes", &[]) > 0.0);
        assert!(m.value("process_virtual_memory_bytes", &[]) >= m.value("process_resident_memory_bytes", &[]));
        assert!(m.value("process_cpu_seconds_total", &[]) >= 0.0);
        assert!(m.value("process_start_time_seconds", &[]) > 1.6e9);

        // Counters only grow: a second scrape after another put.
        assert_eq!(s.ctl_ok(&["put", "k9", "v"]), "OK\n");
        let m2 = scrape(&s.endpoint());
        assert_eq!(m2.value("grpc_server_handled_total", &kv_code("Put", "OK")), PUTS as f64 + 1.0);
        assert!(m2.value("etcd_server_proposals_committed_total", &[]) > committed);
        assert!(m2.value("etcd_disk_wal_fsync_duration_seconds_count", &[]) > m.value("etcd_disk_wal_fsync_duration_seconds_count", &[]));

        // JSON gateway calls count as gRPC calls (etcd's gateway calls its own gRPC port).
        let ok = modkv_tests::http::post(&s.endpoint(), "/v3/kv/put", r#"{"key":"Z3c=","value":"dg=="}"#);
        assert_eq!(ok.status, 200, "{}", ok.text());
        let bad = modkv_tests::http::post(&s.endpoint(), "/v3/kv/put", r#"{"value":"dg=="}"#);
        assert_eq!(bad.status, 400, "{}", bad.text());
        let m3 = scrape(&s.endpoint());
        assert_eq!(m3.value("grpc_server_started_total", &kv("Put")), PUTS as f64 + 4.0);
        assert_eq!(m3.value("grpc_server_handled_total", &kv_code("Put", "OK")), PUTS as f64 + 2.0);
        assert_eq!(m3.value("grpc_server_handled_total", &kv_code("Put", "InvalidArgument")), 2.0);
        assert_eq!(m3.value("grpc_server_msg_received_total", &kv("Put")), PUTS as f64 + 4.0);
        assert_eq!(m3.value("grpc_server_msg_sent_total", &kv("Put")), PUTS as f64 + 2.0);
    }

    /// The watch gauges: five watchers on two streams raise `etcd_debugging_mvcc_watcher_total` by
    /// exactly 5 and `etcd_debugging_mvcc_watch_stream_total` by 2; a put they all watch adds 5 to
    /// `etcd_debugging_mvcc_events_total`; cancelling two watchers lowers the first by 2, closing the
    /// streams brings both back; no watcher is slow at rest.
    fn watch_gauges(kind) {
        use modkv_tests::watch::{WatchClient, WatchCreateRequest};
        let s = Server::start(kind, ServerOpts::new());
        let m = scrape(&s.endpoint());
        let figures = |m: &Scrape| {
            [
                "etcd_debugging_mvcc_watcher_total",
                "etcd_debugging_mvcc_watch_stream_total",
                "etcd_debugging_mvcc_slow_watcher_total",
                "etcd_debugging_mvcc_events_total",
            ]
            .map(|name| m.value(name, &[]))
        };
        let [watchers, streams, slow, events] = figures(&m);
        assert_eq!(slow, 0.0);
        let mut a = WatchClient::connect(&s.endpoint());
        let mut b = WatchClient::connect(&s.endpoint());
        for (w, n) in [(&mut a, 3), (&mut b, 2)] {
            for id in 0..n {
                w.create(WatchCreateRequest::key("w"));
                assert_eq!(w.next_summary(), format!("id={id} rev=1 created"));
            }
        }
        assert_eq!(figures(&scrape(&s.endpoint())), [watchers + 5.0, streams + 2.0, 0.0, events]);
        assert_eq!(s.ctl_ok(&["put", "w", "v"]), "OK\n");
        for (w, n) in [(&mut a, 3), (&mut b, 2)] {
            for _ in 0..n {
                assert!(w.next_summary().ends_with(" rev=2 PUT w=v@2"));
            }
        }
        assert_eq!(figures(&scrape(&s.endpoint())), [watchers + 5.0, streams + 2.0, 0.0, events + 5.0]);
        for id in [0, 2] {
            a.cancel(id);
            assert_eq!(a.next_summary(), format!("id={id} rev=2 canceled"));
        }
        assert_eq!(figures(&scrape(&s.endpoint())), [watchers + 3.0, streams + 2.0, 0.0, events + 5.0]);
        drop((a, b));
        modkv_tests::cluster::poll(std::time::Duration::from_secs(10), "the closed streams' watchers to go", || {
            (figures(&scrape(&s.endpoint())) == [watchers, streams, 0.0, events + 5.0]).then_some(())
        });
    }

    /// `--listen-metrics-urls`: `/metrics` and `/health` on their own listener, nothing else.
    fn metrics_listener(kind) {
        let (s, metrics) = with_metrics_listener(kind);
        assert_eq!(s.ctl_ok(&["put", "a", "1"]), "OK\n");
        let m = scrape(&metrics);
        assert_eq!(m.value("etcd_server_has_leader", &[]), 1.0);
        assert_eq!(m.value("grpc_server_handled_total", &kv_code("Put", "OK")), 1.0);
        let h = get(&metrics, "/health");
        assert_eq!(h.status, 200);
        assert_eq!(h.json(), json!({"health": "true"}));
        assert_eq!(get(&metrics, "/version").status, 404);
        assert_eq!(get(&metrics, "/v3/kv/range").status, 404);
        // The client port serves /metrics as well.
        assert_eq!(scrape(&s.endpoint()).value("etcd_server_has_leader", &[]), 1.0);
    }
}

/// The families above exist in both scrapes with the same TYPE, HELP and label names.
#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn families_match_etcd() {
    let servers = start_all(vec![(Kind::Etcd, ServerOpts::new()), (Kind::Modkv, ServerOpts::new())]);
    let scrapes: Vec<Scrape> = servers
        .iter()
        .map(|s| {
            requests(s);
            scrape(&s.endpoint())
        })
        .collect();
    let (etcd, modkv) = (&scrapes[0], &scrapes[1]);
    for (name, _) in REQUIRED {
        let (e, m) = (etcd.family(name), modkv.family(name));
        assert_eq!(e.kind, m.kind, "TYPE of {name}");
        assert_eq!(e.help, m.help, "HELP of {name}");
        let label_names =
            |f: &Family| -> BTreeSet<String> { f.samples.iter().flat_map(|s| s.labels.keys().cloned()).collect() };
        assert_eq!(label_names(e), label_names(m), "label names of {name}");
    }
    // The gRPC label sets etcd starts at zero, modkv does too.
    for family in ["grpc_server_started_total", "grpc_server_handled_total"] {
        let sets = |s: &Scrape| -> BTreeSet<BTreeMap<String, String>> {
            s.family(family).samples.iter().map(|s| s.labels.clone()).collect()
        };
        let missing: Vec<_> = sets(etcd).difference(&sets(modkv)).cloned().collect();
        assert!(missing.is_empty(), "{family}: modkv lacks {missing:?}");
    }
    // What modkv has that etcd 3.4 does not is modkv's own.
    let extra: Vec<&str> = modkv.names().difference(&etcd.names()).copied().collect();
    assert!(extra.iter().all(|n| n.starts_with("modkv_")), "not etcd's and not under modkv_: {extra:?}");
}

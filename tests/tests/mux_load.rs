//! gRPC and HTTP/1.1 on one client port at once, under load (etcd's cmux): 8 threads of raw gRPC puts
//! (one HTTP/2 connection each), 8 threads of JSON-gateway puts and ranges over HTTP/1.1 (a new
//! connection per request), and `/health` and `/metrics` scrapes, all started together against the same
//! port. Every request must succeed; afterwards the key count, the revision (1 + number of puts), every
//! value and the set of revisions the puts were given are exact.

use std::collections::BTreeMap;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use modkv_tests::grpc::{self, PutRequest, RangeRequest};
use modkv_tests::http::{post, request};
use modkv_tests::*;

const GRPC_THREADS: usize = 8;
/// Puts per gRPC thread; every 10th is also read back over gRPC.
const GRPC_PUTS: usize = 250;
const HTTP_THREADS: usize = 8;
/// Puts per HTTP thread, each followed by a range of the same key.
const HTTP_PUTS: usize = 150;
const HEALTH_SCRAPES: usize = 100;
const METRICS_SCRAPES: usize = 20;
const TOTAL_PUTS: usize = GRPC_THREADS * GRPC_PUTS + HTTP_THREADS * HTTP_PUTS;
/// The whole load phase must finish within this (it takes a few seconds).
const LOAD_LIMIT: Duration = Duration::from_secs(30);

fn grpc_key(t: usize, i: usize) -> (String, String) {
    (format!("g/{t}/{i:04}"), format!("grpc-value-{t}-{i}"))
}

fn http_key(t: usize, i: usize) -> (String, String) {
    (format!("h/{t}/{i:04}"), format!("http-value-{t}-{i}"))
}

/// `header.revision` of a gateway response (a decimal string).
#[track_caller]
fn json_revision(v: &Value) -> i64 {
    v["header"]["revision"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no revision: {v}"))
}

/// The value of `grpc_server_handled_total{grpc_code="OK",grpc_method=<method>,...}` in a scrape.
fn handled_ok(metrics: &str, method: &str) -> f64 {
    let label = format!("grpc_method=\"{method}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("grpc_server_handled_total{") && l.contains(&label))
        .filter(|l| l.contains("grpc_code=\"OK\"") && l.contains("grpc_service=\"etcdserverpb.KV\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn grpc_worker(endpoint: &str, t: usize, start: &Barrier, revs: &Mutex<Vec<i64>>) {
    let mut client = grpc::Client::connect(endpoint).unwrap_or_else(|e| panic!("gRPC connect: {e:?}"));
    let mut mine = Vec::with_capacity(GRPC_PUTS);
    start.wait();
    for i in 0..GRPC_PUTS {
        let (k, v) = grpc_key(t, i);
        let resp = client.put(PutRequest::new(&k, &v)).unwrap_or_else(|e| panic!("gRPC put {k}: {e:?}"));
        mine.push(resp.header.expect("put header").revision);
        if i % 10 == 0 {
            let r = client.range(RangeRequest::range(&k, "")).unwrap_or_else(|e| panic!("gRPC range {k}: {e:?}"));
            assert_eq!(r.kvs.len(), 1, "gRPC range {k}");
            assert_eq!(r.kvs[0].value, v.as_bytes(), "gRPC range {k}");
        }
    }
    revs.lock().unwrap().extend(mine);
}

fn http_worker(endpoint: &str, t: usize, start: &Barrier, revs: &Mutex<Vec<i64>>) {
    let mut mine = Vec::with_capacity(HTTP_PUTS);
    start.wait();
    for i in 0..HTTP_PUTS {
        let (k, v) = http_key(t, i);
        let (kb, vb) = (b64encode(k.as_bytes()), b64encode(v.as_bytes()));
        let r = post(endpoint, "/v3/kv/put", &format!(r#"{{"key":"{kb}","value":"{vb}"}}"#));
        assert_eq!(r.status, 200, "HTTP put {k}: {}", r.text());
        let put_rev = json_revision(&r.json());
        mine.push(put_rev);
        let r = post(endpoint, "/v3/kv/range", &format!(r#"{{"key":"{kb}"}}"#));
        assert_eq!(r.status, 200, "HTTP range {k}: {}", r.text());
        let j = r.json();
        assert_eq!(j["count"], "1", "HTTP range {k}: {j}");
        assert_eq!(j["kvs"][0]["value"], vb.as_str(), "HTTP range {k}: {j}");
        assert_eq!(j["kvs"][0]["mod_revision"], put_rev.to_string(), "HTTP range {k}: {j}");
        assert!(json_revision(&j) >= put_rev, "HTTP range {k}: {j}");
    }
    revs.lock().unwrap().extend(mine);
}

fn health_worker(endpoint: &str, start: &Barrier) {
    start.wait();
    for _ in 0..HEALTH_SCRAPES {
        let r = request(endpoint, "GET", "/health", b"");
        assert_eq!((r.status, r.json()), (200, json!({"health": "true"})), "/health");
    }
}

fn metrics_worker(endpoint: &str, start: &Barrier) {
    start.wait();
    for _ in 0..METRICS_SCRAPES {
        let r = request(endpoint, "GET", "/metrics", b"");
        assert_eq!(r.status, 200, "/metrics");
        assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/plain")), "{:?}", r.headers);
        let text = r.text();
        assert!(text.lines().any(|l| l == "etcd_server_has_leader 1"), "/metrics: no leader line");
        assert!(text.contains("# TYPE grpc_server_handled_total counter"), "/metrics: no grpc_server_handled_total");
    }
}

/// `(key, value)` of every key under `prefix`, read over gRPC.
fn grpc_dump(endpoint: &str, prefix: &str) -> BTreeMap<String, String> {
    let end = format!("{}{}", &prefix[..prefix.len() - 1], (prefix.as_bytes()[prefix.len() - 1] + 1) as char);
    let r = grpc::range(endpoint, RangeRequest::range(prefix, &end)).unwrap_or_else(|e| panic!("range: {e:?}"));
    r.kvs
        .iter()
        .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), String::from_utf8_lossy(&kv.value).into_owned()))
        .collect()
}

both_kinds! {
    fn mixed_grpc_and_http_load(kind) {
        let s = Server::start(kind, ServerOpts::new());
        let ep = s.endpoint();
        let revs = Mutex::new(Vec::with_capacity(TOTAL_PUTS));
        let start = Barrier::new(GRPC_THREADS + HTTP_THREADS + 2);
        let began = Instant::now();
        std::thread::scope(|sc| {
            let mut handles = Vec::new();
            for t in 0..GRPC_THREADS {
                let (ep, start, revs) = (&ep, &start, &revs);
                handles.push(sc.spawn(move || grpc_worker(ep, t, start, revs)));
            }
            for t in 0..HTTP_THREADS {
                let (ep, start, revs) = (&ep, &start, &revs);
                handles.push(sc.spawn(move || http_worker(ep, t, start, revs)));
            }
            handles.push(sc.spawn(|| health_worker(&ep, &start)));
            handles.push(sc.spawn(|| metrics_worker(&ep, &start)));
            for h in handles {
                if let Err(e) = h.join() {
                    std::panic::resume_unwind(e);
                }
            }
        });
        let took = began.elapsed();
        assert!(took < LOAD_LIMIT, "{kind}: the load phase took {took:?}");
        eprintln!("{kind}: {TOTAL_PUTS} puts and {} other requests in {took:?}",
            GRPC_THREADS * GRPC_PUTS / 10 + HTTP_THREADS * HTTP_PUTS + HEALTH_SCRAPES + METRICS_SCRAPES);

        // Every put got its own revision: exactly 2..=TOTAL_PUTS+1.
        let mut revs = revs.into_inner().unwrap();
        revs.sort_unstable();
        assert_eq!(revs, (2..=TOTAL_PUTS as i64 + 1).collect::<Vec<_>>());

        // Key count and revision, over gRPC and over the gateway.
        let all = grpc::range(&ep, RangeRequest { count_only: true, ..RangeRequest::all() }).unwrap();
        assert_eq!((all.count, all.header.unwrap().revision), (TOTAL_PUTS as i64, TOTAL_PUTS as i64 + 1));
        let j = post(&ep, "/v3/kv/range", r#"{"key":"AA==","range_end":"AA==","count_only":true}"#).json();
        assert_eq!((j["count"].clone(), json_revision(&j)), (json!(TOTAL_PUTS.to_string()), TOTAL_PUTS as i64 + 1));
        assert_eq!(s.revision(), TOTAL_PUTS as i64 + 1);

        // Every value is the one written.
        let want: BTreeMap<String, String> =
            (0..GRPC_THREADS).flat_map(|t| (0..GRPC_PUTS).map(move |i| grpc_key(t, i))).collect();
        assert_eq!(grpc_dump(&ep, "g/"), want);
        let want: BTreeMap<String, String> =
            (0..HTTP_THREADS).flat_map(|t| (0..HTTP_PUTS).map(move |i| http_key(t, i))).collect();
        assert_eq!(grpc_dump(&ep, "h/"), want);

        // The gRPC puts are all counted as handled OK (etcd also counts the gateway's, which it forwards
        // over gRPC; modkv may or may not, so only the lower bound is exact for both).
        let m = request(&ep, "GET", "/metrics", b"").text();
        let puts = handled_ok(&m, "Put");
        assert!(puts >= (GRPC_THREADS * GRPC_PUTS) as f64 && puts <= TOTAL_PUTS as f64, "{kind}: Put OK = {puts}");
        eprintln!("{kind}: grpc_server_handled_total{{Put,OK}} = {puts}");

        // And the server still answers etcdctl.
        assert_eq!(s.ctl_ok(&["get", "g/0/0000", "--print-value-only"]), "grpc-value-0-0\n");
    }
}

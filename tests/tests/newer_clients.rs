//! What the etcd 3.5 generation of clients and operators' tools ask of a member beyond etcd 3.4's own
//! etcdctl (issue 18): the gRPC health service, `dbSizeInUse` after deletes and compaction, and the
//! watch progress interval flag. Each test runs against etcd 3.4 and modkv alike.

use std::time::Duration;

use modkv_tests::grpc::unary_once;
use modkv_tests::watch::{WatchClient, WatchCreateRequest};
use modkv_tests::*;

/// `grpc.health.v1.HealthCheckRequest`
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse` (status: 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN)
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

const SERVING: i32 = 1;
const SERVICE_UNKNOWN: i32 = 3;

fn check(s: &Server, service: &str) -> Result<i32, (String, String)> {
    let req = HealthCheckRequest { service: service.into() };
    unary_once::<_, HealthCheckResponse>(&s.endpoint(), "/grpc.health.v1.Health/Check", req).map(|r| r.status)
}

/// The first answer of a `Watch` call for `service` (the stream stays open after it).
fn first_watch_answer(s: &Server, service: &str) -> i32 {
    use tonic::codegen::http::uri::PathAndQuery;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(s.endpoint()).unwrap().connect().await.unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
        let req = tonic::Request::new(HealthCheckRequest { service: service.into() });
        let path = PathAndQuery::from_static("/grpc.health.v1.Health/Watch");
        let mut stream = grpc.server_streaming(req, path, codec).await.unwrap().into_inner();
        let first = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
        first.expect("an answer within 10 s").unwrap().expect("a message").status
    })
}

/// `etcdctl endpoint status -w json`: (dbSize, dbSizeInUse).
fn db_sizes(s: &Server) -> (i64, i64) {
    let v = s.ctl_json(&["endpoint", "status"]);
    let st = &v[0]["Status"];
    // `-w json` leaves zero fields out.
    (st["dbSize"].as_i64().unwrap_or(0), st["dbSizeInUse"].as_i64().unwrap_or(0))
}

both_kinds! {
    /// Load balancers and gRPC clients' health checking: the overall status is SERVING, another
    /// service name is unknown, and Watch answers at once.
    fn grpc_health_service(kind) {
        let s = Server::start(kind, ServerOpts::new());
        assert_eq!(check(&s, ""), Ok(SERVING));
        assert_eq!(check(&s, "etcdserverpb.KV"), Err(("NotFound".to_string(), "unknown service".to_string())));
        assert_eq!(first_watch_answer(&s, ""), SERVING);
        assert_eq!(first_watch_answer(&s, "etcdserverpb.KV"), SERVICE_UNKNOWN);
    }

    /// Defragmentation tooling decides from `dbSize − dbSizeInUse`: deleting most of the data and
    /// compacting leaves the size on disk but not in use; a defragment closes the gap.
    fn db_size_in_use_drops_after_deletes_and_compaction(kind) {
        let s = Server::start(kind, ServerOpts::new());
        // 400 values of 16 KiB of incompressible bytes (about 6.5 MB).
        let mut client = modkv_tests::grpc::Client::connect(&s.endpoint()).unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..400 {
            let value: String = (0..16 * 1024)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (b'!' + (seed % 90) as u8) as char
                })
                .collect();
            client.put(modkv_tests::grpc::PutRequest::new(&format!("big/{i:04}"), &value)).unwrap();
        }
        let (before, in_use_before) = db_sizes(&s);
        assert!(before > 4_000_000 && in_use_before * 10 >= before * 9, "dbSize {before} dbSizeInUse {in_use_before}");
        for prefix in ["big/00", "big/01", "big/02"] {
            assert_eq!(s.ctl_ok(&["del", "--prefix", prefix]), "100\n");
        }
        let rev = s.revision();
        s.ctl_ok(&["compaction", &rev.to_string(), "--physical"]);
        // bbolt keeps the freed pages pending until no read transaction older than the compaction's
        // commit is open; etcd reopens its read transaction at each backend commit (every 100 ms, only
        // when something was written), so the pages come free after a few later writes. Write and look
        // again for up to 10 s.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let (mut size, mut in_use) = db_sizes(&s);
        for i in 0.. {
            if in_use * 10 < size * 6 || std::time::Instant::now() > deadline {
                break;
            }
            s.ctl_ok(&["put", "after", &format!("compaction {i}")]);
            std::thread::sleep(Duration::from_millis(250));
            (size, in_use) = db_sizes(&s);
        }
        eprintln!("{kind}: before {before}/{in_use_before}, after deletes and compaction {size}/{in_use}");
        assert!(in_use * 10 < size * 6, "after deleting 3/4 and compacting: dbSize {size} dbSizeInUse {in_use}");
        assert!(in_use > 0, "dbSizeInUse {in_use}");
        s.ctl_ok(&["defrag"]);
        let (size, in_use) = db_sizes(&s);
        eprintln!("{kind}: after defrag {size}/{in_use}");
        assert!(in_use * 10 >= size * 9, "after defrag: dbSize {size} dbSizeInUse {in_use}");
    }

    /// `--experimental-watch-progress-notify-interval`: a watcher that asked for progress notifications
    /// hears the current revision about once an interval while nothing changes (the default, ten
    /// minutes, would send nothing here).
    fn watch_progress_notify_interval(kind) {
        let s = Server::start(kind, ServerOpts::new().args(["--experimental-watch-progress-notify-interval", "1s"]));
        s.ctl_ok(&["put", "k", "v"]);
        let mut w = WatchClient::connect(&s.endpoint());
        w.create(WatchCreateRequest { progress_notify: true, ..WatchCreateRequest::key("k") });
        let created = w.try_recv(Duration::from_secs(5)).unwrap().expect("the created response");
        assert!(created.created, "{created:?}");
        let started = std::time::Instant::now();
        for _ in 0..2 {
            let r = w.try_recv(Duration::from_secs(5)).unwrap().expect("a progress notification within 5 s");
            assert_eq!((r.rev(), r.events.len(), r.created, r.canceled), (2, 0, false, false), "{r:?}");
        }
        assert!(started.elapsed() >= Duration::from_millis(500), "{:?}", started.elapsed());
    }
}

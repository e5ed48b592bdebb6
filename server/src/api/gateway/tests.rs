//! In-process tests: a real single-member server, the gateway served on a port-0 listener, HTTP/1.1.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;
use crate::embed::{self, Listeners};

/// A minimal HTTP/1.1 exchange (`Connection: close`): status, lower-cased headers, body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(": ").map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))).collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v == "chunked");
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    (status, headers, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_answers_as_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = [
        "modkv",
        "--name",
        "gw",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen-client-urls",
        "http://127.0.0.1:0",
        "--advertise-client-urls",
        "http://127.0.0.1:2379",
        "--listen-peer-urls",
        "http://127.0.0.1:0",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-cluster",
        "gw=http://127.0.0.1:2380",
    ];
    let cfg = Config::from_args(args.iter().map(|s| s.to_string())).unwrap();
    let listeners = Listeners::bind(&cfg).unwrap();
    let etcd = embed::start(&cfg, listeners).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), etcd.ready()).await.unwrap();

    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let client_cfg = crate::api::ClientConfig {
        max_request_bytes: super::DEFAULT_MAX_REQUEST_BYTES,
        watch_progress_notify_interval: std::time::Duration::from_secs(600),
    };
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let services = crate::api::Services::new(&etcd.server.handles(), &client_cfg, stop_rx);
    let app = super::router(services, crate::metrics::Metrics::new(0), super::DEFAULT_MAX_REQUEST_BYTES);
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let (st, h, b) = http(addr, "POST", "/v3/kv/put", r#"{"key":"YQ==","value":"MQ=="}"#).await;
    assert_eq!(st, 200, "{b}");
    assert!(h.contains(&("content-type".into(), "application/json".into())));
    assert!(h.contains(&("access-control-allow-origin".into(), "*".into())));
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["header"]["revision"], "2");
    assert!(v["header"]["cluster_id"].is_string());

    let (st, _, b) =
        http(addr, "POST", "/v3beta/kv/range", r#"{"key":"YQ==","rangeEnd":"Yg==","sort_order":"DESCEND"}"#).await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        v["kvs"],
        serde_json::json!([{"key":"YQ==","create_revision":"2","mod_revision":"2","version":"1","value":"MQ=="}])
    );
    assert_eq!(v["count"], "1");

    let (st, _, b) = http(addr, "POST", "/v3/kv/range", r#"{"key":"YQ="}"#).await;
    assert_eq!(
        (st, b.as_str()),
        (
            400,
            r#"{"error":"illegal base64 data at input byte 3","message":"illegal base64 data at input byte 3","code":3}"#
        )
    );
    let (st, _, b) = http(addr, "POST", "/v3/kv/range", r#"{"key":"YQ==","revision":"99"}"#).await;
    assert_eq!(st, 400);
    assert_eq!(
        b,
        r#"{"error":"etcdserver: mvcc: required revision is a future revision","message":"etcdserver: mvcc: required revision is a future revision","code":11}"#
    );
    let (st, _, b) = http(addr, "POST", "/v3/kv/put", "{}").await;
    assert_eq!(
        (st, b.as_str()),
        (400, r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#)
    );
    let (st, _, b) = http(addr, "POST", "/v3/auth/enable", "{}").await;
    assert_eq!(
        (st, b.as_str()),
        (
            412,
            r#"{"error":"etcdserver: root user does not exist","message":"etcdserver: root user does not exist","code":9}"#
        )
    );
    let (st, _, b) = http(addr, "GET", "/v3/kv/range", "").await;
    assert_eq!((st, b.as_str()), (405, "Method Not Allowed\n"));
    let (st, _, b) = http(addr, "POST", "/v3/kv/nope", "").await;
    assert_eq!((st, b.as_str()), (404, "Not Found\n"));
    let (st, _, b) = http(addr, "OPTIONS", "/v3/kv/range", "").await;
    assert_eq!((st, b.as_str()), (200, ""));

    let (st, _, b) = http(addr, "POST", "/v3/cluster/member/list", "").await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["members"][0]["name"], "gw");
    assert_eq!(v["members"][0]["peerURLs"], serde_json::json!(["http://127.0.0.1:2380"]));
    assert!(v["header"].get("revision").is_none(), "{b}");

    let (st, _, b) = http(addr, "POST", "/v3/maintenance/status", "").await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["version"], "3.4.23");
    assert!(v["dbSize"].is_string() && v["raftIndex"].is_string(), "{b}");

    etcd.close().await;
}

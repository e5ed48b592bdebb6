//! Put benchmark over the etcd v3 gRPC API, for modkv and etcd alike.
//!
//! ```text
//! modkv-bench --endpoint http://127.0.0.1:2379 --mode seq --total 2000
//! modkv-bench --endpoint http://127.0.0.1:2379 --mode par --clients 100 --conns 10 --total 20000
//! ```
//!
//! `seq`: one client, one put at a time: latency. `par`: `clients` concurrent clients spread over `conns`
//! HTTP/2 connections: throughput. `--key-prefix json/ --json true` writes JSON values under a prefix (to
//! measure a pre-put hook such as json-guard). Prints one line of figures (`key=value`), nothing is asserted.

use std::time::{Duration, Instant};

use modkv::proto::etcdserverpb::kv_client::KvClient;
use modkv::proto::etcdserverpb::PutRequest;
use tonic::transport::Channel;

struct Args {
    endpoint: String,
    mode: String,
    total: usize,
    clients: usize,
    conns: usize,
    value_size: usize,
    label: String,
    /// Keys are `<key_prefix><client>/<n>`.
    key_prefix: String,
    /// Values are a JSON document (`{"v":"xxx…"}`) of about `value_size` bytes.
    json: bool,
}

fn parse() -> Args {
    let mut a = Args {
        endpoint: "http://127.0.0.1:2379".into(),
        mode: "seq".into(),
        total: 2000,
        clients: 100,
        conns: 10,
        value_size: 256,
        label: "server".into(),
        key_prefix: "bench/".into(),
        json: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.chunks(2);
    while let Some([k, v]) = it.next() {
        match k.as_str() {
            "--endpoint" => a.endpoint = v.clone(),
            "--mode" => a.mode = v.clone(),
            "--total" => a.total = v.parse().expect("--total takes a number"),
            "--clients" => a.clients = v.parse().expect("--clients takes a number"),
            "--conns" => a.conns = v.parse().expect("--conns takes a number"),
            "--value-size" => a.value_size = v.parse().expect("--value-size takes a number"),
            "--label" => a.label = v.clone(),
            "--key-prefix" => a.key_prefix = v.clone(),
            "--json" => a.json = v == "true",
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn worker(mut c: KvClient<Channel>, prefix: String, id: usize, n: usize, value: Vec<u8>) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("{prefix}{id:04}/{i:08}").into_bytes();
        let t = Instant::now();
        c.put(PutRequest { key, value: value.clone(), ..Default::default() }).await.expect("put failed");
        lat.push(t.elapsed());
    }
    lat
}

#[tokio::main]
async fn main() {
    let a = parse();
    let value = if a.json {
        format!(r#"{{"v":"{}"}}"#, "x".repeat(a.value_size.saturating_sub(8))).into_bytes()
    } else {
        vec![b'x'; a.value_size]
    };
    let (clients, conns) = if a.mode == "seq" { (1, 1) } else { (a.clients, a.conns.max(1)) };
    let mut channels = Vec::new();
    for _ in 0..conns {
        channels.push(Channel::from_shared(a.endpoint.clone()).expect("endpoint").connect().await.expect("connect"));
    }
    let per = a.total / clients;
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|id| {
            let client = KvClient::new(channels[id % conns].clone());
            tokio::spawn(worker(client, a.key_prefix.clone(), id, per, value.clone()))
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("worker"));
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let mean = lat.iter().map(|d| d.as_secs_f64()).sum::<f64>() / lat.len().max(1) as f64 * 1000.0;
    println!(
        "bench server={} mode={} prefix={} clients={} conns={} puts={} value_bytes={} secs={:.2} qps={:.0} mean_ms={:.3} p50_ms={:.3} p99_ms={:.3}",
        a.label,
        a.mode,
        a.key_prefix,
        clients,
        conns,
        lat.len(),
        value.len(),
        secs,
        lat.len() as f64 / secs,
        mean,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
}

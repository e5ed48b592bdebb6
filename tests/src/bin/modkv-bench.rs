//! Put benchmark over the etcd v3 gRPC API, for modkv and etcd alike.
//!
//! ```text
//! modkv-bench --endpoint http://127.0.0.1:2379 --mode seq --total 2000
//! modkv-bench --endpoint http://127.0.0.1:2379 --mode par --clients 100 --conns 10 --total 20000
//! ```
//!
//! `seq`: one client, one put at a time: latency. `par`: `clients` concurrent clients spread over `conns`
//! HTTP/2 connections: throughput. `--key-prefix json/ --json true` writes JSON values under a prefix (to
//! measure a pre-put hook such as json-guard). `--op range` makes linearizable ranges of one key instead
//! of puts, `--op authenticate` Authenticate calls of `--user`; `--user NAME:PASSWORD` authenticates once
//! and sends the token with every request (auth on). Prints one line of figures (`key=value`), nothing is
//! asserted.

use std::time::{Duration, Instant};

use modkv::proto::etcdserverpb::auth_client::AuthClient;
use modkv::proto::etcdserverpb::kv_client::KvClient;
use modkv::proto::etcdserverpb::{AuthenticateRequest, PutRequest, RangeRequest};
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
    /// `put`, `range` or `authenticate`.
    op: String,
    /// `name:password`, authenticated once; its token goes with every request.
    user: Option<(String, String)>,
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
        op: "put".into(),
        user: None,
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
            "--op" => a.op = v.clone(),
            "--user" => {
                let (name, pass) = v.split_once(':').expect("--user takes NAME:PASSWORD");
                a.user = Some((name.into(), pass.into()));
            }
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

/// What one worker does `n` times.
#[derive(Clone)]
struct Work {
    op: String,
    prefix: String,
    value: Vec<u8>,
    user: Option<(String, String)>,
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Work {
    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("token", t.clone());
        }
        r
    }
}

async fn worker(ch: Channel, w: Work, id: usize, n: usize) -> Vec<Duration> {
    let (mut kv, mut auth) = (KvClient::new(ch.clone()), AuthClient::new(ch));
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        match w.op.as_str() {
            "put" => {
                let key = format!("{}{id:04}/{i:08}", w.prefix).into_bytes();
                kv.put(w.request(PutRequest { key, value: w.value.clone(), ..Default::default() })).await.expect("put");
            }
            "range" => {
                let key = format!("{}range", w.prefix).into_bytes();
                kv.range(w.request(RangeRequest { key, ..Default::default() })).await.expect("range");
            }
            "authenticate" => {
                let (name, password) = w.user.clone().expect("--op authenticate needs --user");
                auth.authenticate(AuthenticateRequest { name, password }).await.expect("authenticate");
            }
            other => panic!("unknown --op {other}"),
        }
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
    let mut work =
        Work { op: a.op.clone(), prefix: a.key_prefix.clone(), value: value.clone(), user: a.user, token: None };
    if let (Some((name, password)), true) = (&work.user, work.op != "authenticate") {
        let r = AuthClient::new(channels[0].clone())
            .authenticate(AuthenticateRequest { name: name.clone(), password: password.clone() })
            .await
            .expect("authenticate");
        work.token = Some(r.into_inner().token.parse().expect("an ASCII token"));
    }
    if work.op == "range" {
        let key = format!("{}range", work.prefix).into_bytes();
        let mut kv = KvClient::new(channels[0].clone());
        kv.put(work.request(PutRequest { key, value: value.clone(), ..Default::default() })).await.expect("put");
    }
    let per = a.total / clients;
    let start = Instant::now();
    let tasks: Vec<_> =
        (0..clients).map(|id| tokio::spawn(worker(channels[id % conns].clone(), work.clone(), id, per))).collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("worker"));
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let mean = lat.iter().map(|d| d.as_secs_f64()).sum::<f64>() / lat.len().max(1) as f64 * 1000.0;
    println!(
        "bench server={} op={} auth={} mode={} prefix={} clients={} conns={} calls={} value_bytes={} secs={:.2} qps={:.0} mean_ms={:.3} p50_ms={:.3} p99_ms={:.3}",
        a.label,
        work.op,
        if work.user.is_some() { "on" } else { "off" },
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

//! modkv-bench: a load generator for the etcd v3 gRPC API after etcd's `benchmark` tool, and the
//! side-by-side runner of `make bench-report`.
//!
//! * [`cli`] — subcommands and flags (etcd's), plus the older one-line form the scripts use.
//! * [`conn`] — channels over the endpoints or to the leader, the auth token, keys and values.
//! * [`load`] — the driver (clients, `--rate`, progress bar) and the request-response workloads.
//! * [`watch`] — `watch` and `watch-latency`.
//! * [`stats`] — latencies → etcd's summary text (histogram, percentiles) or JSON.
//! * [`fsync`] — the machine's fdatasync time.
//! * [`runner`] — etcd 3.4 and modkv side by side; [`report`] writes its report.md and [`charts`] its PNGs.

pub mod charts;
pub mod cli;
pub mod conn;
pub mod fsync;
pub mod load;
pub mod report;
pub mod runner;
pub mod stats;
pub mod watch;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use clap::Parser;
use modkv::proto::etcdserverpb::auth_client::AuthClient;
use modkv::proto::etcdserverpb::kv_client::KvClient;
use modkv::proto::etcdserverpb::PutRequest;
use serde_json::{json, Value};

use cli::{Cli, Cmd, Common, Consistency, LegacyOp, Mode};
use conn::{random_value, Conns, Keys};
use load::{drive, Plan};
use stats::Stats;

/// What one load run measured: its stats (one or more: e.g. reads and writes) and other figures.
pub struct Outcome {
    pub command: String,
    pub plan: Plan,
    pub conns: usize,
    pub stats: Vec<Stats>,
    pub extra: serde_json::Map<String, Value>,
}

impl Outcome {
    pub fn json(&self, c: &Common) -> Value {
        json!({
            "command": self.command,
            "label": c.label,
            "endpoints": c.endpoints,
            "clients": self.plan.clients,
            "conns": self.conns,
            "total": self.plan.total,
            "rate": self.plan.rate,
            "key_size": c.key_size,
            "key_space_size": c.key_space_size,
            "consistency": if c.consistency == Consistency::S { "s" } else { "l" },
            "results": self.stats.iter().map(Stats::json).collect::<Vec<_>>(),
            "extra": self.extra,
        })
    }

    pub fn text(&self) -> String {
        let mut s: String = self.stats.iter().map(Stats::text).collect();
        for (k, v) in &self.extra {
            s.push_str(&format!("\n{k}: {v}"));
        }
        s
    }
}

/// The tool's entry point; returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match &cli.cmd {
        Some(Cmd::Report(args)) => runner::run(args),
        Some(Cmd::Fsync { dir, count, size, preallocated }) => {
            match fsync::measure(dir, *count, *size, *preallocated) {
                Ok(s) if cli.common.json => {
                    println!("{}", s.json());
                    0
                }
                Ok(s) => {
                    println!("{}", s.text());
                    0
                }
                Err(e) => {
                    eprintln!("modkv-bench: fsync in {}: {e}", dir.display());
                    1
                }
            }
        }
        Some(cmd) => {
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            match rt.block_on(run(cmd, &cli.common)) {
                Ok(o) if cli.common.json => {
                    println!("{}", o.json(&cli.common));
                    i32::from(o.stats.iter().any(|s| s.count() == 0 && s.error_count() > 0))
                }
                Ok(o) => {
                    println!("{}", o.text());
                    0
                }
                Err(e) => {
                    eprintln!("modkv-bench: {e}");
                    1
                }
            }
        }
        None => {
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            match rt.block_on(legacy(&cli)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("modkv-bench: {e}");
                    1
                }
            }
        }
    }
}

/// Parses `args` (without the program name) as the tool would; for the runner's workloads.
pub fn parse(args: &[String]) -> Result<(Cmd, Common), String> {
    let cli = Cli::try_parse_from(std::iter::once("modkv-bench".to_string()).chain(args.iter().cloned()))
        .map_err(|e| e.to_string())?;
    Ok((cli.cmd.ok_or("no subcommand")?, cli.common))
}

/// Authenticate calls as `--user NAME:PASSWORD` (`missing`: the error without `--user`).
async fn authenticate(c: &Common, missing: &str, plan: Plan, conns: &Conns) -> Result<Vec<Stats>, String> {
    let user = c.user.as_deref().ok_or(missing)?;
    let (name, password) = user.split_once(':').ok_or("--user takes NAME:PASSWORD")?;
    Ok(drive(&["authenticate"], plan, |i| load::Authenticate {
        auth: AuthClient::new(conns.channel(i)),
        name: name.into(),
        password: password.into(),
    })
    .await)
}

/// Runs one load subcommand.
pub async fn run(cmd: &Cmd, c: &Common) -> Result<Outcome, String> {
    let plan = Plan { total: c.total.unwrap_or(10_000), clients: c.clients.unwrap_or(1).max(1), rate: c.rate };
    let nconns = c.conns.unwrap_or(1).max(1);
    let conns = Conns::open(c, nconns).await?;
    let keys = Keys::new(c);
    let value = random_value(c.val_size.unwrap_or(8));
    let serializable = c.consistency == Consistency::S;
    let mut extra = serde_json::Map::new();
    let kv = |i: usize| KvClient::new(conns.channel(i));
    let stats = match cmd {
        Cmd::Put => {
            drive(&["put"], plan, |i| load::Put {
                kv: kv(i),
                conns: conns.clone(),
                keys: keys.clone(),
                value: value.clone(),
                legacy_client: None,
            })
            .await
        }
        Cmd::Range { key, end, limit } => {
            let (key, end) = (key.clone().into_bytes(), end.clone().unwrap_or_default().into_bytes());
            drive(&["range"], plan, |i| load::Range {
                kv: kv(i),
                conns: conns.clone(),
                key: key.clone(),
                end: end.clone(),
                limit: *limit,
                serializable,
            })
            .await
        }
        Cmd::TxnPut { txn_ops } => {
            drive(&["txn-put"], plan, |i| load::TxnPut {
                kv: kv(i),
                conns: conns.clone(),
                keys: keys.clone(),
                value: value.clone(),
                ops: (*txn_ops).max(1),
            })
            .await
        }
        Cmd::TxnMixed { rw_ratio, end_range, limit } => {
            let end = end_range.clone().map(String::into_bytes);
            drive(&["txn-mixed read", "txn-mixed write"], plan, |i| load::TxnMixed {
                kv: kv(i),
                conns: conns.clone(),
                keys: keys.clone(),
                value: value.clone(),
                rw_ratio: *rw_ratio,
                end: end.clone(),
                limit: *limit,
                serializable,
            })
            .await
        }
        Cmd::Stm { keys: nkeys, keys_per_txn } => {
            let retries = Arc::new(AtomicUsize::new(0));
            let stm_keys = Keys { space: (*nkeys).max(1), ..keys.clone() };
            let s = drive(&["stm"], plan, |i| load::Stm {
                kv: kv(i),
                conns: conns.clone(),
                keys: stm_keys.clone(),
                value: value.clone(),
                per_txn: (*keys_per_txn).max(1),
                retries: retries.clone(),
            })
            .await;
            extra.insert("stm_retries".into(), json!(retries.load(Ordering::Relaxed)));
            s
        }
        Cmd::LeaseKeepalive => {
            drive(&["lease-keepalive"], plan, |i| load::LeaseKeepalive::new(conns.channel(i), conns.clone())).await
        }
        Cmd::Authenticate => authenticate(c, "authenticate needs --user NAME:PASSWORD", plan, &conns).await?,
        Cmd::Watch { streams, watch_per_stream, watched_key_total } => {
            watch::watch(&conns, &keys, value.clone(), plan, *streams, *watch_per_stream, *watched_key_total).await?
        }
        Cmd::WatchLatency { streams, watchers_per_stream } => {
            watch::watch_latency(&conns, &keys, value.clone(), plan, *streams, *watchers_per_stream).await?
        }
        Cmd::Fsync { .. } | Cmd::Report(_) => return Err("not a load subcommand".into()),
    };
    Ok(Outcome { command: command_name(cmd).into(), plan, conns: nconns, stats, extra })
}

pub fn command_name(cmd: &Cmd) -> &'static str {
    match cmd {
        Cmd::Put => "put",
        Cmd::Range { .. } => "range",
        Cmd::TxnPut { .. } => "txn-put",
        Cmd::TxnMixed { .. } => "txn-mixed",
        Cmd::Watch { .. } => "watch",
        Cmd::WatchLatency { .. } => "watch-latency",
        Cmd::LeaseKeepalive => "lease-keepalive",
        Cmd::Stm { .. } => "stm",
        Cmd::Authenticate => "authenticate",
        Cmd::Fsync { .. } => "fsync",
        Cmd::Report(_) => "report",
    }
}

/// The one-line form: `--mode seq|par --op put|range|authenticate`; prints `bench key=value…`.
async fn legacy(cli: &Cli) -> Result<(), String> {
    let (c, l) = (&cli.common, &cli.legacy);
    let mode = l.mode.unwrap_or(Mode::Seq);
    let op = l.op.unwrap_or(LegacyOp::Put);
    let (clients, nconns) = match mode {
        Mode::Seq => (1, 1),
        Mode::Par => (c.clients.unwrap_or(100).max(1), c.conns.unwrap_or(10).max(1)),
    };
    let total = c.total.unwrap_or(2000) / clients * clients;
    let plan = Plan { total, clients, rate: c.rate };
    let prefix = if c.key_prefix.is_empty() { "bench/".to_string() } else { c.key_prefix.clone() };
    let size = c.val_size.unwrap_or(256);
    let value = if l.json_values {
        format!(r#"{{"v":"{}"}}"#, "x".repeat(size.saturating_sub(8))).into_bytes()
    } else {
        vec![b'x'; size]
    };
    let conns = Conns::open(c, nconns).await?;
    let keys = Keys { prefix: prefix.clone(), ..Keys::new(c) };
    let kv = |i: usize| KvClient::new(conns.channel(i));
    let stats = match op {
        LegacyOp::Put => {
            drive(&["put"], plan, |i| load::Put {
                kv: kv(i),
                conns: conns.clone(),
                keys: keys.clone(),
                value: value.clone(),
                legacy_client: Some(i),
            })
            .await
        }
        LegacyOp::Range => {
            let key = format!("{prefix}range").into_bytes();
            let put = PutRequest { key: key.clone(), value: value.clone(), ..Default::default() };
            kv(0).put(conns.req(put)).await.map_err(|e| format!("put {prefix}range: {}", e.message()))?;
            drive(&["range"], plan, |i| load::Range {
                kv: kv(i),
                conns: conns.clone(),
                key: key.clone(),
                end: Vec::new(),
                limit: 0,
                serializable: c.consistency == Consistency::S,
            })
            .await
        }
        LegacyOp::Authenticate => authenticate(c, "--op authenticate needs --user", plan, &conns).await?,
    };
    let s = &stats[0];
    let op = match op {
        LegacyOp::Put => "put",
        LegacyOp::Range => "range",
        LegacyOp::Authenticate => "authenticate",
    };
    println!(
        "bench server={} op={op} auth={} mode={} prefix={prefix} clients={clients} conns={nconns} calls={} value_bytes={} secs={:.2} qps={:.0} mean_ms={:.3} p50_ms={:.3} p99_ms={:.3} errors={}",
        c.label,
        if c.user.is_some() { "on" } else { "off" },
        if mode == Mode::Seq { "seq" } else { "par" },
        s.count(),
        value.len(),
        s.wall.as_secs_f64(),
        s.qps(),
        s.average() * 1000.0,
        s.percentile(50.0) * 1000.0,
        s.percentile(99.0) * 1000.0,
        s.error_count(),
    );
    for (e, n) in &s.errors {
        eprintln!("  [{n}] {e}");
    }
    Ok(())
}

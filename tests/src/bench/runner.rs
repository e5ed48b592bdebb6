//! The side-by-side runner (`modkv-bench report`, `make bench-report`): etcd 3.4 and modkv with the
//! same settings (etcd's default raft timing, fsync on, fresh data dirs under the temp dir), 1 member
//! then 3, ROUNDS rounds whose order alternates (etcd first in odd rounds, modkv first in even ones).
//!
//! Per round and server: start-to-ready, then each [`WORKLOADS`] entry through the leader (its QPS,
//! latency percentiles and the CPU seconds all members spent meanwhile, from `/proc/<pid>/stat`), then
//! peak RSS (`VmHWM`, the largest member), bytes on disk (the largest data dir), and the time to
//! restart every member on its data dir. The machine's fdatasync time is measured before and after.
//! Writes `results.json` (every sample), `report.md` ([`super::report`]) and PNG charts
//! ([`super::charts`]) to `--out`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use modkv_tests::cluster::Cluster;
use modkv_tests::{procstat, Kind};
use serde_json::{json, Value};

use super::stats::Stats;

#[derive(Args, Debug, Clone)]
pub struct RunnerArgs {
    /// Where report.md, results.json and the charts go [default: bench/results/<UTC date>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Rounds (each starts both servers afresh).
    #[arg(long, env = "ROUNDS", default_value_t = 3)]
    pub rounds: usize,
    /// Cluster sizes, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    pub members: Vec<usize>,
    /// Multiplies every workload's request count.
    #[arg(long, env = "BENCH_SCALE", default_value_t = 1.0)]
    pub scale: f64,
    /// Only the workloads whose names contain one of these (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// A remark printed at the top of the report (e.g. what else ran on the machine).
    #[arg(long, env = "BENCH_NOTE")]
    pub note: Option<String>,
}

/// A named load: the tool's own arguments (after `--endpoints`), `{total}` scaled.
pub struct Workload {
    pub name: &'static str,
    /// The chart's label.
    pub short: &'static str,
    pub args: &'static str,
    pub total: usize,
}

/// The loads of every round, in order (the ranges read the key the first put wrote). The puts run long
/// enough that starting the clients (1000 of them on 100 connections) does not weigh in the figure: etcd's
/// performance guide runs its put loads with `--total=100000`.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "put, 1 client",
        short: "put 1c",
        args: "--clients 1 --conns 1 --val-size 256 --key-prefix s/ --sequential-keys --key-space-size 100000000 put",
        total: 3000,
    },
    Workload {
        name: "put, 100 clients",
        short: "put 100c",
        args: "--clients 100 --conns 10 --val-size 256 --key-prefix p/ --key-space-size 100000 put",
        total: 50_000,
    },
    Workload {
        name: "put, 1000 clients",
        short: "put 1000c",
        args: "--clients 1000 --conns 100 --val-size 256 --key-prefix q/ --key-space-size 100000 put",
        total: 100_000,
    },
    Workload {
        name: "range l, 100 clients",
        short: "range l",
        args: "--clients 100 --conns 10 --consistency l range s/00000000",
        total: 20_000,
    },
    Workload {
        name: "range s, 100 clients",
        short: "range s",
        args: "--clients 100 --conns 10 --consistency s range s/00000000",
        total: 20_000,
    },
    Workload {
        name: "txn-mixed 4:1, 100 clients",
        short: "txn-mixed",
        args: "--clients 100 --conns 10 --val-size 256 --key-prefix p/ --key-space-size 100000 txn-mixed --rw-ratio 4",
        total: 20_000,
    },
    Workload {
        name: "watch-latency, 100 watchers",
        short: "watch lat",
        args: "--val-size 256 --key-prefix w/ --rate 200 watch-latency --streams 10 --watchers-per-stream 10",
        total: 400,
    },
];

/// How long a cluster may take to elect a leader after start or restart.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(a: &RunnerArgs) -> i32 {
    match run_all(a) {
        Ok(out) => {
            println!("report: {}", out.join("report.md").display());
            0
        }
        Err(e) => {
            eprintln!("modkv-bench report: {e}");
            1
        }
    }
}

fn run_all(a: &RunnerArgs) -> Result<PathBuf, String> {
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("bench/results").join(today()));
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.spawn(stop_servers_on_signal());
    let tmp = std::env::temp_dir();
    let fsync_before = fsync_pair(&tmp)?;
    let machine = machine(&tmp);
    let workloads: Vec<&Workload> =
        WORKLOADS.iter().filter(|w| a.only.is_empty() || a.only.iter().any(|o| w.name.contains(o.as_str()))).collect();
    let (mut samples, mut servers) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for &members in &a.members {
        for round in 1..=a.rounds {
            let order = if round % 2 == 1 { [Kind::Etcd, Kind::Modkv] } else { [Kind::Modkv, Kind::Etcd] };
            for kind in order {
                eprintln!("== {kind}, {members} member(s), round {round}");
                let (s, w) = one_server(&rt, kind, members, round, &workloads, a.scale)?;
                servers.push(s);
                samples.extend(w);
            }
        }
    }
    let fsync_after = fsync_pair(&tmp)?;
    let results = json!({
        "machine": machine,
        "machine_after": { "loadavg": loadavg() },
        "run_secs": started.elapsed().as_secs_f64(),
        "rounds": a.rounds,
        "scale": a.scale,
        "note": a.note,
        "fsync": { "before": fsync_before, "after": fsync_after },
        "workloads": workloads.iter().map(|w| json!({"name": w.name, "short": w.short, "args": args_of(w, a.scale).join(" ")})).collect::<Vec<_>>(),
        "servers": servers,
        "samples": samples,
    });
    let text = serde_json::to_string_pretty(&results).expect("json");
    std::fs::write(out.join("results.json"), text).map_err(|e| e.to_string())?;
    let charts = super::charts::draw(&results, &out);
    if let Err(e) = &charts {
        eprintln!("charts not drawn: {e}");
    }
    let md = super::report::markdown(&results, charts.unwrap_or_default());
    std::fs::write(out.join("report.md"), md).map_err(|e| e.to_string())?;
    Ok(out)
}

/// fdatasync of 4 KiB writes in `dir`, appended and preallocated (300 each), as JSON.
fn fsync_pair(dir: &Path) -> Result<Value, String> {
    let mut v = serde_json::Map::new();
    for (key, pre) in [("append", false), ("preallocated", true)] {
        let s = super::fsync::measure(dir, 300, 4096, pre).map_err(|e| format!("fsync in {}: {e}", dir.display()))?;
        eprintln!("{}: p50 {:.3} ms, p99 {:.3} ms", s.name, s.percentile(50.0) * 1000.0, s.percentile(99.0) * 1000.0);
        v.insert(key.into(), s.json());
    }
    Ok(Value::Object(v))
}

fn args_of(w: &Workload, scale: f64) -> Vec<String> {
    let total = ((w.total as f64 * scale).round() as usize).max(1);
    let mut v: Vec<String> = vec!["--total".into(), total.to_string()];
    v.extend(w.args.split_whitespace().map(String::from));
    v
}

/// One server (cluster) of one round: start, the workloads, its costs, a restart.
fn one_server(
    rt: &tokio::runtime::Runtime,
    kind: Kind,
    members: usize,
    round: usize,
    workloads: &[&Workload],
    scale: f64,
) -> Result<(Value, Vec<Value>), String> {
    // etcd's default raft timing for both (the test harness's default is faster).
    let timing = ["--heartbeat-interval", "100", "--election-timeout", "1000"];
    let t = Instant::now();
    let mut c = Cluster::start(kind, members, &timing);
    track(&c);
    let leader = c.wait_leader(LEADER_TIMEOUT);
    let ready = t.elapsed();
    let endpoints = c.endpoints(&(0..members).collect::<Vec<_>>());
    let mut samples = Vec::new();
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    for w in workloads {
        let mut args = vec!["--endpoints".to_string(), endpoints.clone(), "--target-leader".into()];
        args.extend(args_of(w, scale));
        let (cmd, common) = super::parse(&args)?;
        let cpu0 = cpu(&c);
        let o = rt.block_on(super::run(&cmd, &common))?;
        let cpu_s = (cpu(&c) - cpu0).as_secs_f64();
        // The figures of a workload: txn-mixed's reads and writes together; watch-latency's events (its
        // last stats, after the watchers' creation and the puts); else its one stats.
        let main = if o.command == "txn-mixed" {
            let mut all = Stats::new("txn-mixed");
            let wall = o.stats[0].wall;
            o.stats.iter().for_each(|s| all.merge(s.clone()));
            summary(&all.finish(wall))
        } else {
            summary(o.stats.last().expect("stats"))
        };
        eprintln!(
            "   {:<28} {:>9.0} qps  p50 {:>8.3} ms  p99 {:>8.3} ms",
            w.name,
            f(&main["qps"]),
            f(&main["p50"]),
            f(&main["p99"])
        );
        samples.push(json!({
            "kind": kind.label(), "members": members, "round": round, "workload": w.name,
            "cpu_s": cpu_s, "main": main,
            "all": o.stats.iter().map(Stats::json).collect::<Vec<_>>(),
        }));
    }
    let pids: Vec<u32> = c.members.iter().filter_map(|m| m.pid()).collect();
    let peak_rss = pids.iter().map(|&p| vm_hwm(p)).max().unwrap_or(0);
    let cpu_total = cpu(&c).as_secs_f64();
    let disk = c.members.iter().map(|m| dir_bytes(&m.data_dir())).max().unwrap_or(0);
    for m in &mut c.members {
        m.stop();
    }
    let t = Instant::now();
    for m in &mut c.members {
        m.launch_or_panic();
    }
    for m in &mut c.members {
        m.wait_ready(LEADER_TIMEOUT).map_err(|e| format!("{kind} {} restart: {e}", m.name))?;
    }
    track(&c);
    c.wait_leader(LEADER_TIMEOUT);
    let restart = t.elapsed();
    eprintln!(
        "   ready {:.2} s, restart {:.2} s, peak RSS {} MiB, disk {} MiB, leader m{}",
        ready.as_secs_f64(),
        restart.as_secs_f64(),
        peak_rss >> 20,
        disk >> 20,
        leader + 1
    );
    let server = json!({
        "kind": kind.label(), "members": members, "round": round,
        "ready_s": ready.as_secs_f64(), "restart_s": restart.as_secs_f64(),
        "peak_rss": peak_rss, "disk_bytes": disk, "cpu_s": cpu_total,
    });
    Ok((server, samples))
}

/// The pids of the members running now, for [`stop_servers_on_signal`].
static RUNNING: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn track(c: &Cluster) {
    *RUNNING.lock().expect("pids") = c.members.iter().filter_map(|m| m.pid()).collect();
}

/// On SIGINT or SIGTERM: SIGKILLs the members running now (a Cluster stops its members when dropped,
/// which an interrupted process never does) and exits with 130.
async fn stop_servers_on_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    for &pid in RUNNING.lock().expect("pids").iter() {
        // SAFETY: kill(2) on a member this process started and has not reaped.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    eprintln!("modkv-bench report: interrupted; the servers are stopped (their data dirs stay in the temp dir)");
    std::process::exit(130);
}

/// The figures the report tables and charts use, latencies in ms.
fn summary(s: &Stats) -> Value {
    let ms = |p: f64| s.percentile(p) * 1000.0;
    json!({
        "name": s.name, "count": s.count(), "errors": s.error_count(), "qps": s.qps(),
        "average": s.average() * 1000.0, "p50": ms(50.0), "p90": ms(90.0), "p99": ms(99.0), "p99.9": ms(99.9),
    })
}

/// CPU time all running members have used so far.
fn cpu(c: &Cluster) -> Duration {
    c.members.iter().filter_map(|m| m.pid()).map(procstat::cpu_time).sum()
}

/// `VmHWM` (peak resident set) of `pid`, bytes.
fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Bytes of the files under `dir` (allocated blocks, as `du` counts them).
fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string()
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

/// What the report says about the machine: CPU, cores, load, kernel, filesystem, versions.
fn machine(tmp: &Path) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']));
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "loadavg": loadavg(),
        "kernel": command_line("uname", &["-r"]),
        "filesystem": command_line("sh", &["-c", &format!("df -T {} | tail -1", tmp.display())]),
        "etcd": command_line(&Kind::Etcd.binary().display().to_string(), &["--version"]),
        "modkv": command_line(&Kind::Modkv.binary().display().to_string(), &["--version"]),
        "date": command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    })
}

fn today() -> String {
    let d = command_line("date", &["-u", "+%Y-%m-%d"]);
    if d.is_empty() {
        "undated".into()
    } else {
        d
    }
}

//! The `modkv` binary: parse the configuration, start a member or a proxy, run until SIGINT/SIGTERM.
//! `modkv snapshot …` works on snapshot files instead (what `etcdctl snapshot restore|status` does for
//! etcd 3.4); `modkv plugin …` makes and checks plugins (`plugin_cmd`).
//!
//! ```text
//!   modkv [flags]                   ─▶ start_member ─┐  each returns how it is stopped and where it
//!   modkv --proxy on|readonly       ─▶ start_proxy  ─┤  (members' client URLs asked of --initial-cluster)
//!   modkv grpc-proxy start [flags]  ─▶ start_proxy  ─┤  reports that it stopped by itself (etcd's
//!                                                    │  startEtcdOrProxyV2)
//!                                     one interrupt handler (SIGINT/SIGTERM) ─▶ stop ─▶ exit status
//! ```

mod plugin_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use std::ffi::OsString;

use modkv::config::{Config, ProxyConfig, ProxyMode};
use modkv::embed::{self, Listeners};

/// mimalloc instead of glibc's malloc: a request is allocated on a gRPC worker and freed on the apply
/// thread, and glibc's arenas serialize those frees on a lock (`make bench-ab` has the figures).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps memory freed back to it before returning it to the OS: 10 s instead of its 1 s.
/// Its arenas are transparent huge pages, so memory returned and taken again under load comes back 2 MiB
/// at a time, zeroed: with 1000 clients putting, the apply thread spent ≈ 20 % of its time there, and a
/// fresh member's first seconds under load the most. What a burst leaves still goes back, 10 s later.
/// `MIMALLOC_PURGE_DELAY` (milliseconds; -1: never) overrides it.
const ALLOCATOR_PURGE_DELAY_MS: std::ffi::c_long = 10_000;
/// mimalloc's `mi_option_purge_delay` (mimalloc.h; libmimalloc-sys names no constant for it) and its
/// default: the option is only set while it holds that default, so a renumbered option is left alone.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const MI_PURGE_DELAY_DEFAULT: std::ffi::c_long = 1_000;

fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: reads and sets one of mimalloc's integer options; no memory is handed over.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == MI_PURGE_DELAY_DEFAULT {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ALLOCATOR_PURGE_DELAY_MS);
        }
    }
}

/// Stack of each async worker and blocking thread.
const WORKER_STACK_BYTES: usize = 8 << 20;

pub fn main() -> ExitCode {
    tune_allocator();
    if std::env::args_os().nth(1).is_some_and(|a| a == "snapshot") {
        return snapshot(std::env::args_os().skip(1));
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "plugin") {
        return plugin_cmd::main(std::env::args_os().skip(1));
    }
    let what = if std::env::args_os().nth(1).is_some_and(|a| a == "grpc-proxy") {
        match grpc_proxy_args() {
            Ok(cfg) => What::Proxy(cfg),
            Err(code) => return code,
        }
    } else {
        match Config::from_args(std::env::args_os()) {
            Ok(cfg) if cfg.proxy != ProxyMode::Off => What::MemberFlagsProxy(cfg),
            Ok(cfg) => What::Member(cfg),
            Err(e) if e.is_help_or_version() => e.exit(),
            Err(e) => {
                eprintln!("modkv: {e}");
                return ExitCode::from(2);
            }
        }
    };
    init_logging(match &what {
        What::Member(cfg) | What::MemberFlagsProxy(cfg) => &cfg.log_level,
        What::Proxy(cfg) => &cfg.log_level,
    });
    match run(what) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("modkv: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    // rustls warns for every TLS client that sends an IP address as SNI (grpc-js does; the name is
    // ignored and the handshake goes on): shown only at `--log-level debug`.
    let sni = if level == "debug" { "" } else { ",rustls::msgs::handshake=error" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},h2=warn,hyper=warn,tower=warn{sni}")));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// What the process runs: a member of a cluster, or a proxy in front of one.
enum What {
    Member(Config),
    Proxy(ProxyConfig),
    /// `modkv --proxy on|readonly` (etcd's v2-proxy switch): a proxy configured by the member flags.
    MemberFlagsProxy(Config),
}

/// `modkv grpc-proxy start [flags]`: the proxy's configuration, or the exit code of a bad command line.
fn grpc_proxy_args() -> Result<ProxyConfig, ExitCode> {
    let mut args = std::env::args_os().skip(1);
    let start = args.nth(1);
    if start.as_ref().is_none_or(|a| a != "start") {
        eprintln!("Usage: modkv grpc-proxy start [flags]   (see modkv grpc-proxy start --help)");
        return Err(ExitCode::from(2));
    }
    match ProxyConfig::from_args(std::iter::once(OsString::from("modkv grpc-proxy start")).chain(args)) {
        Ok(cfg) => Ok(cfg),
        Err(e) if e.is_help_or_version() => e.exit(),
        Err(e) => {
            eprintln!("modkv grpc-proxy: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// A started member or proxy: `stop` asks it to stop; `stopped` resolves once it has, with its error
/// if it stopped by itself because something failed.
struct Started {
    stop: tokio::sync::oneshot::Sender<()>,
    stopped: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_member(cfg: Config) -> anyhow::Result<Started> {
    let listeners = Listeners::bind(&cfg)?;
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let stopped = tokio::spawn(async move {
        embed::run(&cfg, listeners, async move {
            let _ = stopping.await;
        })
        .await?;
        Ok(())
    });
    Ok(Started { stop, stopped })
}

async fn start_proxy(cfg: ProxyConfig) -> anyhow::Result<Started> {
    let mut proxy = modkv::proxy::start(&cfg).await.map_err(anyhow::Error::msg)?;
    let (stop, mut stopping) = tokio::sync::oneshot::channel::<()>();
    let stopped = tokio::spawn(async move {
        let result = tokio::select! {
            _ = &mut stopping => Ok(()),
            e = proxy.err() => Err(anyhow::anyhow!("{}", e.map_or_else(|| "stopped".to_owned(), |e| e.to_string()))),
        };
        proxy.close().await;
        result
    });
    Ok(Started { stop, stopped })
}

fn run(what: What) -> anyhow::Result<()> {
    // Deeply nested requests (a txn may nest 129 levels, as etcd allows) recurse while they are decoded,
    // checked, applied and encoded: give the workers room beyond tokio's 2 MiB default.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(async {
        let Started { stop, mut stopped } = match what {
            What::Member(cfg) => start_member(cfg).await?,
            What::Proxy(cfg) => start_proxy(cfg).await?,
            What::MemberFlagsProxy(cfg) => {
                let endpoints = modkv::proxy::peers::client_urls(&cfg).await.map_err(anyhow::Error::msg)?;
                start_proxy(ProxyConfig::from_member(&cfg, endpoints)?).await?
            }
        };
        let ended = tokio::select! {
            _ = shutdown_signal() => {
                let _ = stop.send(());
                stopped.await
            }
            ended = &mut stopped => ended,
        };
        ended.context("the server task failed")?
    });
    // Tasks still blocked (e.g. on a failed core thread) must not keep the process alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
        _ = term.recv() => tracing::info!("received SIGTERM"),
    }
}

/// `modkv snapshot`: snapshot files taken with `etcdctl snapshot save` from a modkv member.
#[derive(clap::Parser)]
#[command(name = "modkv snapshot", version)]
enum SnapshotCommand {
    /// Restores a snapshot file into a new data dir; then start a new cluster on it (every member of
    /// which restores the same file) with the usual flags.
    Restore {
        /// The snapshot file.
        file: PathBuf,
        /// The data dir to create (must not exist or be empty) [default: <name>.modkv]
        #[arg(long = "data-dir")]
        data_dir: Option<PathBuf>,
        /// The member name, for the default data dir.
        #[arg(long, default_value = "default")]
        name: String,
        /// Restore even if the file's SHA-256 does not match (or it has none: a database copied from a
        /// data dir).
        #[arg(long = "skip-hash-check")]
        skip_hash_check: bool,
        /// The cluster the restored members will form, name=peer URL each (etcdctl's flag): stored in the
        /// data dir with the member and cluster ids etcd derives (without it, the member's start flags
        /// decide them).
        #[arg(long = "initial-cluster")]
        initial_cluster: Option<String>,
        /// The new cluster's token, from which the member and cluster ids are derived (etcdctl's flag).
        #[arg(long = "initial-cluster-token", default_value = "etcd-cluster")]
        initial_cluster_token: String,
        /// This member's peer URLs (etcdctl's flag; checked against --initial-cluster).
        #[arg(long = "initial-advertise-peer-urls")]
        initial_advertise_peer_urls: Option<String>,
    },
    /// Prints the hash, revision, number of keys and size of a snapshot file.
    Status {
        file: PathBuf,
        /// Output format: simple, json or table (etcdctl's).
        #[arg(short = 'w', long = "write-out", default_value = "simple")]
        write_out: String,
    },
}

/// The members a restore's cluster flags name, `(name, peer URLs)` each, after etcdctl's checks: the member
/// is named in `--initial-cluster`, with the peer URLs it advertises (etcd's `VerifyBootstrap`). URLs are
/// written as a member started with the same flags writes them.
fn restore_cluster(name: &str, cluster: &str, peer_urls: Option<&str>) -> Result<Vec<(String, Vec<String>)>, String> {
    let normal = |u: &str| {
        url::Url::parse(u.trim())
            .map(|u| modkv::membership::url_string(&u))
            .map_err(|e| format!("--initial-cluster: {u:?} is not a URL: {e}"))
    };
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    for entry in cluster.split(',').filter(|e| !e.trim().is_empty()) {
        let Some((n, u)) = entry.split_once('=') else {
            return Err(format!("--initial-cluster: {entry:?} is not name=URL"));
        };
        let u = normal(u)?;
        match members.iter_mut().find(|(m, _)| m == n.trim()) {
            Some((_, urls)) => urls.push(u),
            None => members.push((n.trim().to_string(), vec![u])),
        }
    }
    let Some((_, own)) = members.iter().find(|(n, _)| n == name) else {
        return Err(format!("couldn't find local name {name:?} in the initial cluster configuration"));
    };
    if let Some(peer_urls) = peer_urls {
        let mut advertised = peer_urls.split(',').map(normal).collect::<Result<Vec<_>, _>>()?;
        let mut own = own.clone();
        own.sort_unstable();
        advertised.sort_unstable();
        if own != advertised {
            // etcd's words (`advertiseMatchesCluster`), with what its URL comparison says.
            let why = match advertised.iter().zip(&own).find(|(a, o)| a != o) {
                Some((a, o)) if own.len() == advertised.len() => format!("resolved urls: {a:?} != {o:?}"),
                _ => format!("len({}) != len({})", go_quoted(&advertised), go_quoted(&own)),
            };
            let not_in = |list: &[String], of: &[String]| -> Vec<String> {
                list.iter().filter(|u| !of.contains(u)).cloned().collect()
            };
            let (unadvertised, unlisted) = (not_in(&own, &advertised), not_in(&advertised, &own));
            let named = |urls: &[String]| urls.iter().map(|u| format!("{name}={u}")).collect::<Vec<_>>().join(",");
            return Err(if !unadvertised.is_empty() {
                format!(
                    "--initial-cluster has {} but missing from --initial-advertise-peer-urls={} ({why})",
                    named(&unadvertised),
                    advertised.join(",")
                )
            } else if !unlisted.is_empty() {
                format!(
                    "--initial-advertise-peer-urls has {} but missing from --initial-cluster={}",
                    unlisted.join(","),
                    named(&advertised)
                )
            } else {
                format!(
                    "failed to resolve {} to match --initial-cluster={} ({why})",
                    advertised.join(","),
                    named(&advertised)
                )
            });
        }
    }
    Ok(members)
}

/// A list of strings as Go's `%q` prints a `[]string`: `["a" "b"]`.
fn go_quoted(list: &[String]) -> String {
    format!("[{}]", list.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" "))
}

fn snapshot(args: impl Iterator<Item = std::ffi::OsString>) -> ExitCode {
    use clap::Parser;
    let cmd = match SnapshotCommand::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let result = match cmd {
        SnapshotCommand::Restore {
            file,
            data_dir,
            name,
            skip_hash_check,
            initial_cluster,
            initial_cluster_token,
            initial_advertise_peer_urls,
        } => {
            // As etcdctl, the restored member's id and its cluster's id come from these flags (the
            // members are then started on the data dir, whose cluster wins over their start flags).
            // Without --initial-cluster none is stored: the member's start flags decide.
            let cluster = match initial_cluster.as_deref().map(|c| {
                restore_cluster(&name, c, initial_advertise_peer_urls.as_deref())
                    .map(|members| modkv::membership::Cluster::bootstrap(&name, &members, &initial_cluster_token))
            }) {
                Some(Err(e)) => {
                    eprintln!("Error: {e}");
                    return ExitCode::FAILURE;
                }
                Some(Ok(c)) => c,
                None => None,
            };
            let dir = data_dir.unwrap_or_else(|| PathBuf::from(format!("{name}.modkv")));
            modkv::backup::restore(&file, &dir, skip_hash_check, cluster.as_ref())
                .map(|rev| println!("restored snapshot {} into {} (revision {rev})", file.display(), dir.display()))
        }
        SnapshotCommand::Status { file, write_out } => match modkv::backup::status(&file) {
            Ok(s) => match s.render(&write_out) {
                Ok(text) => {
                    print!("{text}");
                    Ok(())
                }
                Err(e) => {
                    eprintln!("Error: {e}");
                    return ExitCode::FAILURE;
                }
            },
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("modkv snapshot: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The `modkv` binary: parse the configuration, bind, run until SIGINT/SIGTERM.

use std::process::ExitCode;

use anyhow::Context;
use modkv::config::Config;
use modkv::embed::{self, Listeners};

fn main() -> ExitCode {
    let cfg = match Config::from_args(std::env::args_os()) {
        Ok(cfg) => cfg,
        Err(e) if e.is_help_or_version() => e.exit(),
        Err(e) => {
            eprintln!("modkv: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg.log_level);
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("modkv: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},h2=warn,hyper=warn,tower=warn")));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn run(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let listeners = Listeners::bind(&cfg)?;
        embed::run(&cfg, listeners, shutdown_signal()).await?;
        Ok(())
    })
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

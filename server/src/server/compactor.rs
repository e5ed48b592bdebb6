//! Automatic compaction, as etcd's `--auto-compaction-mode` / `--auto-compaction-retention`:
//! periodic mode keeps a span of time of history, revision mode a number of revisions.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::EtcdServer;
use crate::config::AutoCompaction;
use crate::error::Error;
use crate::proto::etcdserverpb::CompactionRequest;

/// How often revision mode compacts (etcd's revision compactor period).
const REVISION_PERIOD: Duration = Duration::from_secs(300);
/// The shortest sampling period of periodic mode.
const MIN_SAMPLE: Duration = Duration::from_millis(100);

/// Runs the compactor the configuration asks for, while this member leads, until `stop` fires.
pub async fn run(server: Arc<EtcdServer>, mode: AutoCompaction, mut stop: watch::Receiver<bool>) {
    let (period, retention) = match mode {
        AutoCompaction::Off => return,
        // Periodic: sample the revision ten times per retention (at most hourly) and compact to the
        // newest sample at least `retention` old.
        AutoCompaction::Periodic(d) => ((d / 10).clamp(MIN_SAMPLE, Duration::from_secs(3600)), Some(d)),
        AutoCompaction::Revision(_) => (REVISION_PERIOD, None),
    };
    tracing::info!(?mode, ?period, "auto compaction enabled");
    let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let current = server.kv.current_rev();
        let target = match (mode, retention) {
            (AutoCompaction::Revision(keep), _) => current - keep as i64,
            (_, Some(retention)) => {
                samples.push_back((now, current));
                let mut target = 0;
                while let Some(&(at, rev)) = samples.front() {
                    if now.duration_since(at) < retention {
                        break;
                    }
                    target = rev;
                    samples.pop_front();
                }
                target
            }
            _ => 0,
        };
        if target <= server.kv.compact_rev() || target <= 1 || !server.is_leader() {
            continue;
        }
        // The member's own request: as root while auth is enabled.
        let compact = server.compact(CompactionRequest { revision: target, physical: false });
        match crate::auth::with_caller(crate::auth::member(), compact).await {
            Ok(_) => tracing::info!(revision = target, "auto compaction done"),
            Err(Error::Compacted) => {}
            Err(e) => tracing::warn!(revision = target, %e, "auto compaction failed"),
        }
    }
}

//! The watch layer (etcd's watchable store): watchers on key ranges get every change, in revision order,
//! from the revision they ask for on.
//!
//! ```text
//!   apply ──commit──▶ WatchHub::notify(events) ──▶ synced watchers (their stream's channel)
//!                                                   │ channel full: the watcher becomes unsynced
//!   sync task (every 100 ms) ──reads history from mvcc──▶ unsynced watchers, until caught up
//! ```
//!
//! Each watcher remembers the next revision it needs, so an event is delivered once and none is skipped
//! whether it comes from `notify` or from history. A watcher whose next revision was compacted away gets
//! one response carrying the compact revision and is cancelled, as in etcd.
//!
//! The hub also keeps what etcd's `etcd_debugging_mvcc_*` watch metrics show ([`WatchHub::gauges`]):
//! watchers, unsynced ("slow") watchers, gRPC watch streams ([`WatchHub::open_stream`]) and the events
//! handed to the streams.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::mvcc::{KeyRange, KvStore};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::Event;

/// How often unsynced watchers are caught up from history.
const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Revisions read from history in one round (etcd's `watchBatchMaxRevs`).
const MAX_REVS_PER_SYNC: i64 = 1000;

/// What a watcher's stream receives.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchBatch {
    pub watch_id: i64,
    pub events: Vec<Event>,
    /// The store revision these events bring the watcher to.
    pub revision: i64,
    /// Non-zero: the watcher asked for compacted history and is cancelled.
    pub compact_revision: i64,
}

/// What a watcher asks for.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub range: KeyRange,
    /// 0: from the next change on.
    pub start_revision: i64,
    pub no_put: bool,
    pub no_delete: bool,
    pub watch_id: i64,
}

struct Watcher {
    spec: WatchSpec,
    next_rev: i64,
    synced: bool,
    tx: mpsc::Sender<WatchBatch>,
}

impl Watcher {
    /// Behind, and its stream has room for what history would bring.
    fn catching_up(&self) -> bool {
        !self.synced && self.tx.capacity() > 0
    }

    fn wants(&self, e: &Event) -> bool {
        let Some(kv) = &e.kv else { return false };
        if kv.mod_revision < self.next_rev || !self.spec.range.contains(&kv.key) {
            return false;
        }
        match EventType::try_from(e.r#type) {
            Ok(EventType::Put) => !self.spec.no_put,
            Ok(EventType::Delete) => !self.spec.no_delete,
            Err(_) => false,
        }
    }
}

fn mod_rev(e: &Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

struct State {
    watchers: HashMap<u64, Watcher>,
    next_handle: u64,
    /// The store revision of the last notify: synced watchers have everything up to it.
    notified_rev: i64,
}

pub struct WatchHub {
    kv: Arc<KvStore>,
    state: Mutex<State>,
    /// Watch streams open (each held by a [`WatchStream`]).
    streams: Arc<AtomicI64>,
    /// Events handed to the watchers' streams.
    events: AtomicU64,
}

/// The watch figures etcd exposes as `etcd_debugging_mvcc_*`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WatchGauges {
    /// `watcher_total`: watchers registered.
    pub watchers: i64,
    /// `slow_watcher_total`: watchers catching up from history (unsynced), slow readers included.
    pub slow_watchers: i64,
    /// `watch_stream_total`: watch streams open.
    pub streams: i64,
    /// `events_total`: events handed to the watchers' streams.
    pub events: u64,
}

/// An open watch stream, counted until dropped.
pub struct WatchStream(Arc<AtomicI64>);

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Identifies a watcher in the hub.
pub type WatchHandle = u64;

impl WatchHub {
    pub fn new(kv: Arc<KvStore>) -> Arc<WatchHub> {
        let notified_rev = kv.current_rev();
        Arc::new(WatchHub {
            kv,
            state: Mutex::new(State { watchers: HashMap::new(), next_handle: 1, notified_rev }),
            streams: Arc::default(),
            events: AtomicU64::new(0),
        })
    }

    /// Counts a watch stream (a gRPC `Watch` call or the gateway's) while the guard lives.
    pub fn open_stream(&self) -> WatchStream {
        self.streams.fetch_add(1, Ordering::Relaxed);
        WatchStream(self.streams.clone())
    }

    /// Watchers, slow watchers, streams and events now.
    pub fn gauges(&self) -> WatchGauges {
        let st = self.lock();
        WatchGauges {
            watchers: st.watchers.len() as i64,
            slow_watchers: st.watchers.values().filter(|w| !w.synced).count() as i64,
            streams: self.streams.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a watcher; its batches go to `tx`.
    pub fn watch(&self, spec: WatchSpec, tx: mpsc::Sender<WatchBatch>) -> WatchHandle {
        let mut st = self.lock();
        // As etcd: 0 is "from now on"; a negative start lies before any history and gets the compacted
        // answer (at -1 while nothing was compacted) from the next sync round.
        let next_rev = if spec.start_revision != 0 { spec.start_revision } else { st.notified_rev + 1 };
        let synced = next_rev > st.notified_rev;
        let handle = st.next_handle;
        st.next_handle += 1;
        st.watchers.insert(handle, Watcher { spec, next_rev, synced, tx });
        handle
    }

    pub fn cancel(&self, handle: WatchHandle) {
        self.lock().watchers.remove(&handle);
    }

    /// The store revision watchers have been notified up to.
    pub fn notified_rev(&self) -> i64 {
        self.lock().notified_rev
    }

    pub fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }

    /// Delivers committed changes (the store is at `rev` after them) to synced watchers.
    ///
    /// `events` may span several revisions (apply commits several raft entries at once), but etcd notifies
    /// once per write txn: a watcher gets one batch per revision, carrying that revision.
    pub fn notify(&self, events: &[Event], rev: i64) {
        let runs: Vec<(i64, &[Event])> =
            events.chunk_by(|a, b| mod_rev(a) == mod_rev(b)).map(|run| (mod_rev(&run[0]), run)).collect();
        let mut st = self.lock();
        st.notified_rev = rev;
        st.watchers.retain(|_, w| {
            if !w.synced {
                return true;
            }
            for &(run_rev, run) in &runs {
                let mine: Vec<Event> = run.iter().filter(|e| w.wants(e)).cloned().collect();
                if mine.is_empty() {
                    continue;
                }
                let batch =
                    WatchBatch { watch_id: w.spec.watch_id, events: mine, revision: run_rev, compact_revision: 0 };
                let n = batch.events.len() as u64;
                match w.tx.try_send(batch) {
                    Ok(()) => {
                        w.next_rev = run_rev + 1;
                        self.events.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        // A slow reader: catch it up from history later instead of buffering without bound.
                        // `next_rev` is at most `run_rev`: nothing from here on was delivered.
                        w.synced = false;
                        return true;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            w.next_rev = w.next_rev.max(rev + 1);
            true
        });
    }

    /// The store was replaced by a snapshot at `rev`: every watcher that still needs a revision up to `rev`
    /// catches up from the restored history (as etcd's watchable store moves its watchers to unsynced on
    /// restore), instead of being notified past what the snapshot brought.
    pub fn restore(&self, rev: i64) {
        let mut st = self.lock();
        st.notified_rev = rev;
        for w in st.watchers.values_mut() {
            if w.next_rev <= rev {
                w.synced = false;
            }
        }
    }

    /// Catches unsynced watchers up from history, one bounded round. Returns whether any that can take
    /// more is still behind; a watcher whose stream is full is left for the periodic round, so a client
    /// that stops reading costs one check per [`SYNC_INTERVAL`], not a history read in a loop.
    pub fn sync_round(&self) -> bool {
        let (from, target) = {
            let mut st = self.lock();
            st.watchers.retain(|_, w| !w.tx.is_closed());
            let from = st.watchers.values().filter(|w| w.catching_up()).map(|w| w.next_rev).min();
            match from {
                None => return false,
                Some(from) => (from, st.notified_rev.min(from + MAX_REVS_PER_SYNC - 1)),
            }
        };
        // The compact revision itself is still readable: what survived compaction there (the puts; tombstones
        // are dropped) is delivered, as etcd does for a watch starting at the compact revision.
        let compact_rev = self.kv.compact_rev();
        let mut events = Vec::new();
        let read = if from > target {
            Ok(())
        } else {
            self.kv.history(from.max(compact_rev), target, |e| {
                events.push(e);
                true
            })
        };
        // A compaction during the read may have removed part of what was read.
        let compact_after = self.kv.compact_rev();
        let mut st = self.lock();
        let notified = st.notified_rev;
        st.watchers.retain(|_, w| {
            if !w.catching_up() {
                return true;
            }
            if w.next_rev < compact_after {
                // etcd sends this response without a header revision (0).
                let batch = WatchBatch {
                    watch_id: w.spec.watch_id,
                    events: vec![],
                    revision: 0,
                    compact_revision: compact_after,
                };
                // Dropped when the stream is gone or full: it retries on the next round.
                return w.tx.try_send(batch).is_err_and(|e| matches!(e, mpsc::error::TrySendError::Full(_)));
            }
            if read.is_err() || w.next_rev > target + 1 {
                return true;
            }
            let mine: Vec<Event> = events.iter().filter(|e| w.wants(e)).cloned().collect();
            if !mine.is_empty() {
                // Like etcd, a batch from history carries the store's revision, even when more history follows.
                let n = mine.len() as u64;
                let batch =
                    WatchBatch { watch_id: w.spec.watch_id, events: mine, revision: notified, compact_revision: 0 };
                match w.tx.try_send(batch) {
                    Ok(()) => {
                        self.events.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => return true,
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            w.next_rev = target + 1;
            if w.next_rev > notified {
                w.synced = true;
            }
            true
        });
        if let Err(e) = read {
            tracing::warn!(%e, "reading watch history failed");
        }
        st.watchers.values().any(|w| w.catching_up())
    }

    /// Runs sync rounds until `stop` fires.
    pub async fn run_sync(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(SYNC_INTERVAL);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {
                    let hub = self.clone();
                    // History reads touch the disk: keep them off the async workers.
                    let behind = tokio::task::spawn_blocking(move || hub.sync_round()).await.unwrap_or(false);
                    if behind {
                        tick.reset_immediately();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Backend, RocksDb, WriteBatch};

    fn put(kv: &KvStore, hub: &WatchHub, k: &str) {
        let mut b = WriteBatch::default();
        let mut w = kv.write(&mut b);
        w.put(k.as_bytes(), b"v".to_vec(), 0);
        let rev = w.end();
        let events = kv.commit(b, false).unwrap();
        hub.notify(&events, rev);
    }

    fn spec(key: &str, start: i64) -> WatchSpec {
        WatchSpec {
            range: KeyRange::new(key.as_bytes(), b""),
            start_revision: start,
            no_put: false,
            no_delete: false,
            watch_id: 0,
        }
    }

    fn revs(b: &WatchBatch) -> Vec<i64> {
        b.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision).collect()
    }

    #[test]
    fn live_history_slow_readers_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(RocksDb::open(dir.path()).unwrap());
        let kv = Arc::new(KvStore::open(backend).unwrap());
        let hub = WatchHub::new(kv.clone());
        let (tx, mut live) = mpsc::channel(16);
        hub.watch(spec("a", 0), tx);
        put(&kv, &hub, "a"); // 2
        put(&kv, &hub, "b"); // 3
        put(&kv, &hub, "a"); // 4
        assert_eq!(revs(&live.try_recv().unwrap()), vec![2]);
        assert_eq!(revs(&live.try_recv().unwrap()), vec![4]);
        assert!(live.try_recv().is_err());

        // From history, then live, with no gap and no repeat.
        let (tx, mut old) = mpsc::channel(16);
        hub.watch(spec("a", 1), tx);
        assert!(!hub.sync_round());
        assert_eq!(revs(&old.try_recv().unwrap()), vec![2, 4]);
        put(&kv, &hub, "a"); // 5
        assert_eq!(revs(&old.try_recv().unwrap()), vec![5]);

        // A reader whose channel is full falls back to history and still sees every revision once.
        let (tx, mut slow) = mpsc::channel(1);
        hub.watch(spec("a", 0), tx);
        put(&kv, &hub, "a"); // 6
        put(&kv, &hub, "a"); // 7: channel full
        put(&kv, &hub, "a"); // 8
        assert_eq!(revs(&slow.try_recv().unwrap()), vec![6]);
        hub.sync_round();
        assert_eq!(revs(&slow.try_recv().unwrap()), vec![7, 8]);

        // Compacted history: one response naming the compact revision.
        let mut b = WriteBatch::default();
        kv.compact(6, &mut b).unwrap();
        kv.commit(b, false).unwrap();
        let (tx, mut late) = mpsc::channel(16);
        hub.watch(spec("a", 3), tx);
        hub.sync_round();
        let b = late.try_recv().unwrap();
        assert_eq!((b.compact_revision, b.events.len()), (6, 0));
        assert_eq!(hub.watcher_count(), 3);
    }

    #[test]
    fn gauges_count_watchers_slow_ones_streams_and_events() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(RocksDb::open(dir.path()).unwrap());
        let kv = Arc::new(KvStore::open(backend).unwrap());
        let hub = WatchHub::new(kv.clone());
        assert_eq!(hub.gauges(), WatchGauges::default());
        put(&kv, &hub, "a"); // 2
        let stream = hub.open_stream();
        let (tx, mut rx) = mpsc::channel(16);
        let live = hub.watch(spec("a", 0), tx.clone());
        let old = hub.watch(spec("a", 1), tx);
        let g = hub.gauges();
        assert_eq!((g.watchers, g.slow_watchers, g.streams, g.events), (2, 1, 1, 0));
        put(&kv, &hub, "a"); // 3: one event to the live watcher
        hub.sync_round(); // revisions 2 and 3 to the old one
        assert_eq!(hub.gauges().events, 3);
        assert_eq!(hub.gauges().slow_watchers, 0);
        hub.cancel(live);
        hub.cancel(old);
        drop(stream);
        assert_eq!(hub.gauges(), WatchGauges { events: 3, ..Default::default() });
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    fn a_reader_that_stops_reading_is_not_caught_up_in_a_loop() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(RocksDb::open(dir.path()).unwrap());
        let kv = Arc::new(KvStore::open(backend).unwrap());
        let hub = WatchHub::new(kv.clone());
        let (tx, mut stalled) = mpsc::channel(1);
        hub.watch(spec("a", 0), tx);
        put(&kv, &hub, "a"); // 2: fills the channel
        put(&kv, &hub, "a"); // 3: the watcher falls behind
                             // Nothing can be delivered while the channel is full: the round says nobody is waiting for it
                             // (the sync task then waits for its next tick instead of looping).
        assert!(!hub.sync_round());
        assert!(!hub.sync_round());
        assert_eq!(revs(&stalled.try_recv().unwrap()), vec![2]);
        // Room again: caught up from history, nothing lost.
        assert!(!hub.sync_round());
        assert_eq!(revs(&stalled.try_recv().unwrap()), vec![3]);
        put(&kv, &hub, "a"); // 4: live again
        assert_eq!(revs(&stalled.try_recv().unwrap()), vec![4]);
        // A watcher whose stream is gone is dropped by the next round.
        drop(stalled);
        hub.sync_round();
        assert_eq!(hub.watcher_count(), 0);
    }
}

//! The watch workloads: [`watch`] (watcher creation, then puts until every watcher saw every event) and
//! [`watch_latency`] (from a put's start to each watcher's event).

use std::sync::Arc;
use std::time::{Duration, Instant};

use modkv::proto::etcdserverpb::kv_client::KvClient;
use modkv::proto::etcdserverpb::watch_client::WatchClient;
use modkv::proto::etcdserverpb::watch_request::RequestUnion;
use modkv::proto::etcdserverpb::{PutRequest, RangeRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use tokio::sync::{mpsc, Barrier};
use tonic::codegen::tokio_stream::wrappers::UnboundedReceiverStream;

use super::conn::{Conns, Keys};
use super::load::{self, drive, Plan, Put};
use super::stats::Stats;

/// How long the last events may take to arrive after the last put.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// One Watch stream: where to send creates, where responses arrive.
struct Stream {
    tx: mpsc::UnboundedSender<WatchRequest>,
    rx: tonic::Streaming<WatchResponse>,
}

fn create(key: Vec<u8>) -> WatchRequest {
    WatchRequest { request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest { key, ..Default::default() })) }
}

/// Opens a stream on `conns`' channel `s` and creates a watcher on each of `keys`, one after the
/// other; records each creation's latency (request to `created` response).
async fn open(conns: &Conns, s: usize, keys: Vec<Vec<u8>>, stats: &mut Stats) -> Result<Stream, String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut rx = Some(rx);
    let mut stream: Option<tonic::Streaming<WatchResponse>> = None;
    for key in keys {
        let t = Instant::now();
        tx.send(create(key)).map_err(|_| "watch stream closed")?;
        if let Some(rx) = rx.take() {
            let mut w = WatchClient::new(conns.channel(s));
            let req = conns.stream_req(UnboundedReceiverStream::new(rx));
            stream = Some(w.watch(req).await.map_err(|e| e.message().to_string())?.into_inner());
        }
        let st = stream.as_mut().expect("opened");
        loop {
            match tokio::time::timeout(DRAIN_TIMEOUT, st.message()).await {
                Ok(Ok(Some(r))) if r.created => break,
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => return Err("watch stream ended".into()),
                Ok(Err(e)) => return Err(e.message().to_string()),
                Err(_) => return Err("watch create timed out".into()),
            }
        }
        stats.record(Ok(t.elapsed()));
    }
    let rx = stream.ok_or("no watcher")?;
    Ok(Stream { tx, rx })
}

/// Counts events on `s` until `expected`; returns when the last arrived (None on timeout or error).
async fn count_events(mut s: Stream, expected: usize) -> Option<Instant> {
    let mut seen = 0;
    while seen < expected {
        match tokio::time::timeout(DRAIN_TIMEOUT, s.rx.message()).await {
            Ok(Ok(Some(r))) => seen += r.events.len(),
            _ => return None,
        }
    }
    drop(s.tx);
    Some(Instant::now())
}

/// `streams` × `per_stream` watchers on `watched` keys (`Keys::key(0..watched)`), then `plan.total`
/// puts on those keys; returns the creation stats, the put stats, and the events' stats (one entry per
/// stream: the time from the first put until its last event).
pub async fn watch(
    conns: &Conns,
    keys: &Keys,
    value: Vec<u8>,
    plan: Plan,
    streams: usize,
    per_stream: usize,
    watched: usize,
) -> Result<Vec<Stats>, String> {
    let watched = watched.max(1);
    let mut created = Stats::new("watch-create");
    let mut opened = Vec::new();
    let t0 = Instant::now();
    // Puts on key n: `plan.total` puts over the watched keys in turn.
    let puts_on = |n: usize| plan.total / watched + usize::from(n < plan.total % watched);
    let mut expected = Vec::new();
    for s in 0..streams {
        let ks: Vec<usize> = (0..per_stream).map(|w| (s * per_stream + w) % watched).collect();
        expected.push(ks.iter().map(|&n| puts_on(n)).sum::<usize>());
        let keys = ks.iter().map(|&n| keys.key(n as u64)).collect();
        opened.push(open(conns, s, keys, &mut created).await?);
    }
    let created = created.finish(t0.elapsed());
    let counters: Vec<_> = opened.into_iter().zip(expected).map(|(s, n)| tokio::spawn(count_events(s, n))).collect();
    let start = Instant::now();
    let mut put_keys = keys.clone();
    put_keys.space = watched as u64;
    put_keys.sequential = true;
    let puts = drive(&["put"], plan, |c| Put {
        kv: KvClient::new(conns.channel(c)),
        conns: conns.clone(),
        keys: put_keys.clone(),
        value: value.clone(),
        legacy_client: None,
    })
    .await;
    let mut events = Stats::new("watch-events");
    for c in counters {
        events.record(c.await.expect("counter").map(|at| at - start).ok_or_else(|| "events missing".to_string()));
    }
    let events = events.finish(start.elapsed());
    Ok([vec![created], puts, vec![events]].concat())
}

/// `streams` × `per_stream` watchers of one key; `plan.total` puts one at a time at `plan.rate`; each
/// put gives one latency per watcher: from the put's start until that watcher has the event.
pub async fn watch_latency(
    conns: &Conns,
    keys: &Keys,
    value: Vec<u8>,
    plan: Plan,
    streams: usize,
    per_stream: usize,
) -> Result<Vec<Stats>, String> {
    let key = keys.key(0);
    let mut kv = KvClient::new(conns.channel(0));
    // The key's version before the puts: put i makes version `base + i + 1`.
    let r = kv.range(conns.req(RangeRequest { key: key.clone(), ..Default::default() })).await;
    let base = r.map_err(|e| e.message().to_string())?.into_inner().kvs.first().map_or(0, |kv| kv.version) as usize;
    let mut created = Stats::new("watch-create");
    let mut opened = Vec::new();
    for s in 0..streams {
        opened.push(open(conns, s, vec![key.clone(); per_stream], &mut created).await?);
    }
    // Each watcher task reports, per put, when its stream delivered the event (one event per watcher).
    let start_times: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let barrier = Arc::new(Barrier::new(streams + 1));
    let mut readers = Vec::new();
    for mut s in opened {
        let (times, barrier) = (start_times.clone(), barrier.clone());
        readers.push(tokio::spawn(async move {
            let mut stats = Stats::new("watch-latency");
            let mut per_put = vec![0usize; plan.total];
            barrier.wait().await;
            let mut left = plan.total * per_stream;
            while left > 0 {
                let r = match tokio::time::timeout(DRAIN_TIMEOUT, s.rx.message()).await {
                    Ok(Ok(Some(r))) => r,
                    _ => break,
                };
                let now = Instant::now();
                for ev in r.events {
                    let i = ev.kv.map_or(0, |kv| kv.version as usize).wrapping_sub(base + 1);
                    let started = times.lock().expect("times").get(i).copied();
                    if let (Some(t), Some(n)) = (started, per_put.get_mut(i)) {
                        *n += 1;
                        stats.record(Ok(now - t));
                        left -= 1;
                    }
                }
            }
            for _ in 0..left {
                stats.record(Err("event missing".into()));
            }
            drop(s.tx);
            stats
        }));
    }
    barrier.wait().await;
    let limiter = load::Limiter::new(if plan.rate == 0 { 100 } else { plan.rate });
    let mut puts = Stats::new("put");
    let bar = load::progress(plan.total, "watch-latency");
    let t0 = Instant::now();
    for _ in 0..plan.total {
        if let Some(l) = &limiter {
            l.wait().await;
        }
        let t = Instant::now();
        start_times.lock().expect("times").push(t);
        let r = kv.put(conns.req(PutRequest { key: key.clone(), value: value.clone(), ..Default::default() })).await;
        puts.record(r.map(|_| t.elapsed()).map_err(|e| e.message().to_string()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut lat = Stats::new("watch-latency");
    for r in readers {
        lat.merge(r.await.expect("reader"));
    }
    let wall = t0.elapsed();
    Ok(vec![created.finish(wall), puts.finish(wall), lat.finish(wall)])
}

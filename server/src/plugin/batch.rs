//! Pre-put calls of one plugin, batched: puts that arrive while a call runs are answered by the next
//! instance together, one call after another, so a busy server pays one instantiation per batch
//! instead of one per put (instantiating is most of a small hook's cost).
//!
//! ```text
//!   put ─┐                         ┌─ fresh Store + instance ─ call 1, call 2, … call n ─▶ answers
//!   put ─┼─▶ queue ─▶ batch task ──┤   (each call: its own time limit; the memory cap is per instance)
//!   put ─┘   (per plugin version,  └─ a call fails: its answer is the error if it ran first, and every
//!             one task per core)      call after it runs again alone, in a fresh instance
//! ```
//!
//! One task per core takes batches from the queue: while one runs a batch, the next puts are taken by
//! another, so a batch in progress does not hold up the puts behind it.
//!
//! What a batch shares is one instance's memory: a plugin sees the puts of its batch one after another,
//! as it sees every put it hooks anyway. A plugin whose calls must not share an instance sets
//! `batch-pre-put = false` in its TOML: every call then gets its own instance.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::host::{wit, CallError, PluginInfo, PluginPre, Runtime, State};

/// Puts answered by one instance at most.
const MAX_BATCH: usize = 64;
/// Puts waiting for a batch before callers wait to queue.
const QUEUE: usize = 1024;

pub type Answer = Result<wit::PutDecision, CallError>;

struct Job {
    req: wit::PutRequest,
    reply: oneshot::Sender<Answer>,
}

/// The queue of one plugin version's pre-put calls; its task ends when the version is unloaded.
pub struct Batcher {
    tx: mpsc::Sender<Job>,
}

impl Batcher {
    pub fn start(runtime: Arc<Runtime>, pre: PluginPre<State>, info: Arc<PluginInfo>) -> Batcher {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
        for _ in 0..workers {
            tokio::spawn(run(runtime.clone(), pre.clone(), info.clone(), rx.clone()));
        }
        Batcher { tx }
    }

    /// The plugin's decision on `req`.
    pub async fn pre_put(&self, req: wit::PutRequest) -> Answer {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job { req, reply }).await.map_err(|_| CallError::Failed("plugin unloaded".into()))?;
        rx.await.map_err(|_| CallError::Failed("plugin unloaded".into()))?
    }
}

type Queue = Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>;

/// Everything queued now (up to a batch), or `None` once the plugin is unloaded.
async fn next_batch(queue: &Queue) -> Option<Vec<Job>> {
    let mut rx = queue.lock().await;
    let mut jobs = vec![rx.recv().await?];
    while jobs.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
    }
    Some(jobs)
}

async fn run(runtime: Arc<Runtime>, pre: PluginPre<State>, info: Arc<PluginInfo>, queue: Queue) {
    while let Some(mut jobs) = next_batch(&queue).await {
        // Callers that gave up (their request ended) need no answer.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let reqs: Vec<wit::PutRequest> = jobs.iter().map(|j| j.req.clone()).collect();
        let results = runtime.pre_put_batch(&pre, &info, &reqs).await;
        for (i, (job, result)) in jobs.into_iter().zip(results).enumerate() {
            let answer = match result {
                Some(Ok(d)) => Ok(d),
                // The first call of a fresh instance failed on its own.
                Some(Err(e)) if i == 0 => Err(e),
                // It failed after others ran in the same instance, or did not run: alone, it is judged
                // on its own.
                _ => runtime.pre_put(&pre, &info, &[], &job.req).await,
            };
            let _ = job.reply.send(answer);
        }
    }
}

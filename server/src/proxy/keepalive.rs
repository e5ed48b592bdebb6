//! Keep-alive coalescing (issue 15 item 3): the `LeaseKeepAlive` streams of every client of one caller
//! (one token; anonymous callers share one) share one upstream stream that carries all their leases, and
//! a lease asked for while its keep-alive is in flight waits for that answer instead of going up again.
//!
//! ```text
//!   client stream A ─ ask X ─┐ commands  ┌─ Shared (a task per token) ──────────────┐   one upstream
//!   client stream B ─ ask X ─┼─────────▶ │ Table: lease → streams waiting, in flight │ ─▶ LeaseKeepAlive
//!   client stream C ─ ask Y ─┘           │        since, next send                   │    stream (pump)
//!         ▲                              └───────────────────────────────────────────┘        │
//!         └─ answer X to A and B (each once per request it made) ◀─────── answer X ───────────┘
//! ```
//!
//! The table of a shared stream's leases (who waits, what is in flight, pacing) is `table`, without
//! I/O; `Shared` drives it.
//!
//! - **Coalescing.** Per lease at most one keep-alive is in flight upstream; the answer goes to every
//!   client stream that asked since the previous answer. The next one goes up no sooner than
//!   [`MIN_RENEW_INTERVAL`] after the previous one (a client asking earlier waits that long at most), so
//!   the members see at most one keep-alive per lease per caller per round trip and per interval,
//!   however many clients renew it and however often (etcd's proxy: one per TTL/3, its client library's
//!   own schedule, a client waiting up to that long).
//! - **Answers as the member sends them.** A lease not found is the member's answer with TTL 0; an
//!   error of the member ends the upstream stream and every client stream waiting for it, with that
//!   status. A failed member (transport error, stream ended, no answer for [`STALL_TIMEOUT`]) is
//!   skipped and the stream reopened on the next one after [`REOPEN_PAUSE`], the keep-alives in flight
//!   sent again (repeating a keep-alive is harmless).
//! - **Slow clients.** A client stream's pending requests are one count per lease; it asks the shared
//!   stream once per lease until that answer is taken, so the channel of answers towards it never holds
//!   more than its pending leases ([`MAX_PENDING_PER_CLIENT`], its capacity) and the fan-out never
//!   waits. A client that stops reading stalls only its own stream (and, through HTTP/2 flow control,
//!   its own requests), as it would on a member: its answers wait coalesced as counts instead of being
//!   buffered or dropped.
//! - **Bounds.** A client stream stops reading requests while [`MAX_PENDING_PER_CLIENT`] leases are
//!   pending; a shared stream keeps at most [`MAX_LEASES_PER_UPSTREAM`] leases and refuses more with
//!   `etcdserver: too many requests`. The shared stream and its upstream stream end with the last
//!   client stream of their token.

mod table;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::upstream::{is_transport_failure, with_token, Token, Upstream};
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};
use table::{Ask, Table};

/// The shortest time between two upstream keep-alives of one lease on one shared stream.
pub const MIN_RENEW_INTERVAL: Duration = Duration::from_millis(100);
/// Leases one client stream may have waiting for an answer; it is not read further meanwhile.
pub const MAX_PENDING_PER_CLIENT: usize = 1024;
/// Leases one shared stream keeps track of at once (waiting, in flight, or renewed within
/// [`MIN_RENEW_INTERVAL`]).
pub const MAX_LEASES_PER_UPSTREAM: usize = 16 * 1024;
/// Pause before reopening a failed upstream stream.
pub const REOPEN_PAUSE: Duration = Duration::from_millis(200);
/// A keep-alive unanswered this long fails its member.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Upstream answers buffered towards the shared stream's task.
const EVENT_BUFFER: usize = 64;

type Answer = Result<LeaseKeepAliveResponse, Status>;
/// A client stream of a shared stream.
type ClientId = u64;
/// A token's bytes (`None`: anonymous).
type TokenKey = Option<Vec<u8>>;

enum Command {
    Join { id: ClientId, answers: mpsc::Sender<Answer> },
    Ask { id: ClientId, lease: i64 },
    Leave { id: ClientId },
}

/// The shared keep-alive streams of a proxy, one per token.
pub struct KeepAlives {
    up: Arc<Upstream>,
    /// Token → (generation, the commands of its shared stream's task).
    shared: Mutex<HashMap<TokenKey, (u64, mpsc::UnboundedSender<Command>)>>,
    next_id: AtomicU64,
}

impl KeepAlives {
    pub fn new(up: Arc<Upstream>) -> Arc<KeepAlives> {
        Arc::new(KeepAlives { up, shared: Mutex::new(HashMap::new()), next_id: AtomicU64::new(1) })
    }

    /// The shared streams running (one per token with a client stream).
    pub fn shared_streams(&self) -> usize {
        self.shared.lock().expect("keep-alives lock").len()
    }

    /// Joins a client stream whose answers go to `answers` to the shared stream of `token`, starting it.
    fn join(
        self: &Arc<Self>,
        token: &Token,
        answers: mpsc::Sender<Answer>,
    ) -> (ClientId, mpsc::UnboundedSender<Command>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key = token.as_ref().map(|t| t.as_bytes().to_vec());
        let mut shared = self.shared.lock().expect("keep-alives lock");
        let mut join = Command::Join { id, answers };
        if let Some((_, cmds)) = shared.get(&key) {
            // Sent under the lock: a task about to end checks for commands under it too.
            match cmds.send(join) {
                Ok(()) => return (id, cmds.clone()),
                Err(e) => join = e.0,
            }
        }
        let (cmds, rx) = mpsc::unbounded_channel();
        let _ = cmds.send(join);
        let generation = self.next_id.fetch_add(1, Ordering::Relaxed);
        shared.insert(key.clone(), (generation, cmds.clone()));
        tokio::spawn(Shared::new(self.clone(), key, generation, token.clone()).run(rx));
        (id, cmds)
    }
}

/// One client's keep-alive stream: its requests become asks of the shared stream of its token, the
/// answers go back once per request. Ends when the client goes, on an error, or when it has ended its
/// requests and every one is answered.
pub async fn client_stream(
    hub: Arc<KeepAlives>,
    token: Token,
    mut requests: Pin<Box<dyn Stream<Item = LeaseKeepAliveRequest> + Send>>,
    out: mpsc::Sender<Answer>,
) {
    let (answers_tx, mut answers) = mpsc::channel(MAX_PENDING_PER_CLIENT);
    let (id, cmds) = hub.join(&token, answers_tx);
    let _leave = Leave { id, cmds: cmds.clone() };
    // Lease → requests not answered yet.
    let mut pending: HashMap<i64, u64> = HashMap::new();
    let mut requests_done = false;
    loop {
        tokio::select! {
            r = requests.next(), if !requests_done && pending.len() < MAX_PENDING_PER_CLIENT => match r {
                Some(r) => {
                    let n = pending.entry(r.id).or_insert(0);
                    if *n == 0 && cmds.send(Command::Ask { id, lease: r.id }).is_err() {
                        return;
                    }
                    *n += 1;
                }
                None if pending.is_empty() => return,
                None => requests_done = true,
            },
            a = answers.recv() => match a {
                Some(Ok(a)) => {
                    for _ in 0..pending.remove(&a.id).unwrap_or(0) {
                        if out.send(Ok(a)).await.is_err() {
                            return;
                        }
                    }
                    if requests_done && pending.is_empty() {
                        return;
                    }
                }
                Some(Err(s)) => {
                    let _ = out.send(Err(s)).await;
                    return;
                }
                None => {
                    let _ = out.send(Err(Status::unavailable("modkv proxy: the shared keep-alive stream ended"))).await;
                    return;
                }
            },
            _ = out.closed() => return,
        }
    }
}

/// Tells the shared stream that its client stream left.
struct Leave {
    id: ClientId,
    cmds: mpsc::UnboundedSender<Command>,
}

impl Drop for Leave {
    fn drop(&mut self) {
        let _ = self.cmds.send(Command::Leave { id: self.id });
    }
}

/// What the pump of an upstream stream reports.
enum UpEvent {
    Answer(LeaseKeepAliveResponse),
    Failed(Status),
    Ended,
}

/// An upstream stream: its requests and the task reading its answers (stopped when dropped).
struct Conn {
    url: String,
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    pump: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// The task of one token's shared stream.
struct Shared {
    hub: Arc<KeepAlives>,
    key: TokenKey,
    generation: u64,
    token: Token,
    clients: HashMap<ClientId, mpsc::Sender<Answer>>,
    table: Table,
    conn: Option<Conn>,
    /// Which upstream stream an event is from (events of a replaced one are ignored).
    conn_seq: u64,
    /// A failed upstream stream is reopened then.
    reopen_at: Option<Instant>,
    events_tx: mpsc::Sender<(u64, UpEvent)>,
    events: mpsc::Receiver<(u64, UpEvent)>,
}

impl Shared {
    fn new(hub: Arc<KeepAlives>, key: TokenKey, generation: u64, token: Token) -> Shared {
        let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
        Shared {
            hub,
            key,
            generation,
            token,
            clients: HashMap::new(),
            table: Table::default(),
            conn: None,
            conn_seq: 0,
            reopen_at: None,
            events_tx,
            events,
        }
    }

    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Command>) {
        let mut stall_check = tokio::time::interval(Duration::from_secs(1));
        loop {
            let wake = match (self.table.next_timer(), self.reopen_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => return,
                },
                Some((seq, event)) = self.events.recv() => {
                    if seq == self.conn_seq && self.conn.is_some() {
                        self.upstream(event);
                    }
                }
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => self.timers(),
                _ = stall_check.tick() => {
                    if self.conn.is_some() && self.table.stalled(Instant::now()) {
                        tracing::warn!("a lease keep-alive went unanswered; using another member");
                        self.member_failed();
                    }
                }
            }
            if self.clients.is_empty() && self.end(&cmds) {
                return;
            }
        }
    }

    /// Whether the task may end (no client stream left, none joining): then it is no longer found.
    fn end(&self, cmds: &mpsc::UnboundedReceiver<Command>) -> bool {
        let mut shared = self.hub.shared.lock().expect("keep-alives lock");
        if !cmds.is_empty() {
            return false;
        }
        if shared.get(&self.key).is_some_and(|(g, _)| *g == self.generation) {
            shared.remove(&self.key);
        }
        true
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Join { id, answers } => {
                self.clients.insert(id, answers);
            }
            Command::Ask { id, lease } => {
                if !self.clients.contains_key(&id) {
                    return;
                }
                match self.table.ask(lease, id, Instant::now()) {
                    Ask::Send => self.send(lease),
                    Ask::Wait => {}
                    Ask::Full => self.answer(id, Err(crate::error::Error::TooManyRequests.into())),
                }
            }
            Command::Leave { id } => {
                self.clients.remove(&id);
            }
        }
    }

    /// Gives client stream `id` an answer. Its channel has room for one answer per lease it waits for,
    /// so it is full only if that count was broken: the stream is then dropped (it ends with an error).
    fn answer(&mut self, id: ClientId, a: Answer) {
        let Some(tx) = self.clients.get(&id) else { return };
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(a) {
            tracing::warn!("a keep-alive client stream has no room for its answer; dropping it");
            self.clients.remove(&id);
        }
    }

    /// Sends a keep-alive of `lease` up (marked in flight in the table already): on the open upstream
    /// stream, or with every lease in flight on a new one; while a failed one waits to be reopened, then.
    fn send(&mut self, lease: i64) {
        if self.reopen_at.is_some() {
            return;
        }
        match &self.conn {
            // Room for one request per lease in flight: never full.
            Some(c) => {
                let _ = c.requests.try_send(LeaseKeepAliveRequest { id: lease });
            }
            None => self.open(),
        }
    }

    /// Opens an upstream stream on the member to use now, sending every keep-alive in flight.
    fn open(&mut self) {
        let (url, channel) = self.hub.up.channel();
        let (requests, rx) = mpsc::channel(MAX_LEASES_PER_UPSTREAM);
        for lease in self.table.resend(Instant::now()) {
            let _ = requests.try_send(LeaseKeepAliveRequest { id: lease });
        }
        self.conn_seq += 1;
        let (seq, events) = (self.conn_seq, self.events_tx.clone());
        let mut client = LeaseClient::new(channel).max_decoding_message_size(self.hub.up.max_recv);
        let call = with_token(ReceiverStream::new(rx), &self.token);
        let pump = tokio::spawn(async move {
            let mut answers = match client.lease_keep_alive(call).await {
                Ok(s) => s.into_inner(),
                Err(s) => {
                    let _ = events.send((seq, UpEvent::Failed(s))).await;
                    return;
                }
            };
            loop {
                let event = match answers.next().await {
                    Some(Ok(a)) => UpEvent::Answer(a),
                    Some(Err(s)) => UpEvent::Failed(s),
                    None => UpEvent::Ended,
                };
                let last = !matches!(event, UpEvent::Answer(_));
                if events.send((seq, event)).await.is_err() || last {
                    return;
                }
            }
        });
        self.conn = Some(Conn { url, requests, pump });
    }

    fn upstream(&mut self, event: UpEvent) {
        match event {
            UpEvent::Answer(a) => {
                for id in self.table.answered(a.id, Instant::now()).unwrap_or_default() {
                    self.answer(id, Ok(a));
                }
            }
            UpEvent::Failed(s) if !is_transport_failure(&s) => {
                // The member's own error: it ended the stream, as it ends each client's on a member.
                self.conn = None;
                for id in self.table.fail() {
                    self.answer(id, Err(s.clone()));
                }
            }
            UpEvent::Failed(_) | UpEvent::Ended => self.member_failed(),
        }
    }

    /// The member of the upstream stream failed: skipped; the stream reopened on the next one after a
    /// pause if keep-alives are in flight, else when one is asked for.
    fn member_failed(&mut self) {
        if let Some(c) = self.conn.take() {
            self.hub.up.failed(&c.url);
        }
        if self.table.in_flight() {
            self.reopen_at = Some(Instant::now() + REOPEN_PAUSE);
        }
    }

    /// Pacing deadlines and the reopening of a failed upstream stream.
    fn timers(&mut self) {
        let now = Instant::now();
        if self.reopen_at.is_some_and(|t| t <= now) {
            self.reopen_at = None;
            if self.table.in_flight() {
                self.open();
            }
        }
        let clients = &self.clients;
        let due = self.table.due(now, |c| clients.contains_key(&c));
        if self.conn.is_none() {
            // A new upstream stream carries every keep-alive in flight, these included.
            if let Some(&lease) = due.first() {
                self.send(lease);
            }
            return;
        }
        for lease in due {
            self.send(lease);
        }
    }
}

//! What a run records: every client operation with its invocation and completion instants and its
//! result ([`Op`]), every watch stream's responses ([`WatchSegment`]), and the end state read from each
//! member ([`FinalRead`]). Instants are microseconds since the run started ([`Micros`]).
//!
//! An operation's result is [`Outcome::Ok`] (the server answered), [`Outcome::NotSent`] (nothing reached
//! a server: the connection was refused, so a write cannot have happened), [`Outcome::Refused`] (the
//! server said the write cannot apply: a put with a lease that is gone), or [`Outcome::Unknown`] (an
//! error or a timeout: a write may or may not have happened; a read tells nothing).

use std::fmt;
use std::time::Instant;

/// Microseconds since the run started.
pub type Micros = u64;

/// The run's clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock(pub Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    pub fn now(&self) -> Micros {
        self.0.elapsed().as_micros() as Micros
    }

    pub fn at(&self, i: Instant) -> Micros {
        i.saturating_duration_since(self.0).as_micros() as Micros
    }
}

/// A key-value as a response or an event carries it (`mvccpb.KeyValue`; `lease` 0: none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: String,
    pub create: i64,
    pub modr: i64,
    pub version: i64,
    pub lease: i64,
}

impl fmt::Display for Kv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}@{} (create {}, version {}", self.key, self.value, self.modr, self.create, self.version)?;
        if self.lease != 0 {
            write!(f, ", lease {:x}", self.lease)?;
        }
        f.write_str(")")
    }
}

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Put {
        key: String,
        value: String,
    },
    /// `DeleteRange` of one key.
    Delete {
        key: String,
    },
    /// A txn: if `mod_revision(key) == expect` (0: the key is absent) put `key = value`, else range `key`.
    Cas {
        key: String,
        expect: i64,
        value: String,
    },
    /// A txn without compares putting several keys at one revision.
    MultiPut {
        puts: Vec<(String, String)>,
    },
    Range {
        key: String,
        serializable: bool,
    },
    /// `LeaseGrant` with the client's own lease id (so that a grant of unknown outcome is known by id).
    Grant {
        lease: i64,
        ttl: i64,
    },
    /// A put attached to a lease.
    LeasePut {
        key: String,
        value: String,
        lease: i64,
    },
    /// One request and its answer on a `LeaseKeepAlive` stream.
    KeepAlive {
        lease: i64,
    },
    LeaseRevoke {
        lease: i64,
    },
}

impl Request {
    /// Does it change the key space (a revoke deletes its lease's keys)?
    pub fn is_write(&self) -> bool {
        !matches!(self, Request::Range { .. } | Request::Grant { .. } | Request::KeepAlive { .. })
    }

    /// The lease it names, if any.
    pub fn lease(&self) -> Option<i64> {
        match self {
            Request::Grant { lease, .. }
            | Request::LeasePut { lease, .. }
            | Request::KeepAlive { lease }
            | Request::LeaseRevoke { lease } => Some(*lease),
            _ => None,
        }
    }

    /// The `(key, value)` pairs this request would put, if it writes.
    pub fn puts(&self) -> Vec<(&str, &str)> {
        match self {
            Request::Put { key, value } | Request::Cas { key, value, .. } | Request::LeasePut { key, value, .. } => {
                vec![(key, value)]
            }
            Request::MultiPut { puts } => puts.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            _ => Vec::new(),
        }
    }
}

/// What the server answered (`rev` is the response header's revision).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Put {
        rev: i64,
    },
    Delete {
        rev: i64,
        deleted: i64,
    },
    /// `kv`: the failure branch's range result (`None` on success, or if the key is absent).
    Cas {
        rev: i64,
        succeeded: bool,
        kv: Option<Kv>,
    },
    MultiPut {
        rev: i64,
    },
    Range {
        rev: i64,
        kv: Option<Kv>,
    },
    Grant {
        rev: i64,
        ttl: i64,
    },
    /// `ttl` 0: the lease was not found (etcd answers a keep-alive of an unknown lease with TTL 0).
    KeepAlive {
        rev: i64,
        ttl: i64,
    },
    LeaseRevoke {
        rev: i64,
    },
}

impl Response {
    pub fn rev(&self) -> i64 {
        match self {
            Response::Put { rev }
            | Response::Delete { rev, .. }
            | Response::Cas { rev, .. }
            | Response::MultiPut { rev }
            | Response::Range { rev, .. }
            | Response::Grant { rev, .. }
            | Response::KeepAlive { rev, .. }
            | Response::LeaseRevoke { rev } => *rev,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok(Response),
    /// The request reached no server (connection refused).
    NotSent(String),
    /// The server refused the write: it did not and will not apply (`etcdserver: requested lease not
    /// found` for a put with a lease that is gone).
    Refused(String),
    /// Error or timeout: a write may or may not have taken effect.
    Unknown(String),
}

/// One operation of one client.
#[derive(Clone, Debug)]
pub struct Op {
    /// Index in [`History::ops`].
    pub id: usize,
    pub client: usize,
    /// The member it was sent to.
    pub member: usize,
    pub req: Request,
    pub invoke: Micros,
    /// When the answer (or the error) came back.
    pub complete: Micros,
    pub outcome: Outcome,
}

impl Op {
    pub fn ok(&self) -> Option<&Response> {
        match &self.outcome {
            Outcome::Ok(r) => Some(r),
            _ => None,
        }
    }

    /// A write whose outcome the client does not know.
    pub fn unknown_write(&self) -> bool {
        self.req.is_write() && matches!(self.outcome, Outcome::Unknown(_))
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "op {} client {} via m{} [{:.3}s..{:.3}s] {:?} -> {:?}",
            self.id,
            self.client,
            self.member + 1,
            self.invoke as f64 / 1e6,
            self.complete as f64 / 1e6,
            self.req,
            self.outcome
        )
    }
}

/// `mvccpb.Event` as the checkers see it: a put carries the new key-value, a delete the key and the
/// revision (`kv.value` empty, `create` / `version` 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub delete: bool,
    pub kv: Kv,
}

impl Event {
    pub fn rev(&self) -> i64 {
        self.kv.modr
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.delete {
            write!(f, "DELETE {}@{}", self.kv.key, self.kv.modr)
        } else {
            write!(f, "PUT {}", self.kv)
        }
    }
}

/// One watch response that carried events.
#[derive(Clone, Debug)]
pub struct WatchBatch {
    pub at: Micros,
    pub header_rev: i64,
    pub events: Vec<Event>,
}

/// One watch stream: created at `start_rev` on one member, read until it ended.
#[derive(Clone, Debug)]
pub struct WatchSegment {
    pub watcher: usize,
    pub member: usize,
    pub start_rev: i64,
    pub opened: Micros,
    pub batches: Vec<WatchBatch>,
    /// Why it ended (the watcher's time was up, the stream broke, the server canceled it).
    pub end: String,
}

impl WatchSegment {
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.batches.iter().flat_map(|b| b.events.iter())
    }
}

/// The keys of the workload's prefix as one member holds them at the end (serializable range).
#[derive(Clone, Debug)]
pub struct FinalRead {
    pub member: usize,
    pub rev: i64,
    pub kvs: Vec<Kv>,
}

/// Everything a run recorded.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub ops: Vec<Op>,
    pub watches: Vec<WatchSegment>,
    /// The whole key space's events from revision 1, read by a watch after the faults were healed.
    pub log: Vec<Event>,
    /// The revision the cluster had when the log was read.
    pub final_rev: i64,
    pub finals: Vec<FinalRead>,
    /// Historical reads `(op id, response)` of acknowledged writes at their revision (`Range` with
    /// `revision` set) after the run: proof that each is present with its value and revision.
    pub at_rev: Vec<(usize, Option<Kv>)>,
    /// The leases `LeaseLeases` still listed at the end, after every lease was revoked or left to
    /// expire (see [`crate::chaos::end`]): normally none.
    pub leases_left: Vec<i64>,
    /// `(member, hash, compact revision)` of `HashKV` at the final revision on each member.
    pub hashes: Vec<(usize, u32, i64)>,
}

impl History {
    /// Renumbers ops by position (after they were merged from several clients).
    pub fn renumber(&mut self) {
        self.ops.sort_by_key(|o| (o.invoke, o.client));
        for (i, o) in self.ops.iter_mut().enumerate() {
            o.id = i;
        }
    }

    /// One line per op, watch segment and log event, for a file next to a failed run.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for o in &self.ops {
            s += &format!("{o}\n");
        }
        for w in &self.watches {
            s += &format!(
                "watch {} via m{} from rev {} at {:.3}s, ended: {}\n",
                w.watcher,
                w.member + 1,
                w.start_rev,
                w.opened as f64 / 1e6,
                w.end
            );
            for b in &w.batches {
                let evs: Vec<String> = b.events.iter().map(Event::to_string).collect();
                s += &format!("  [{:.3}s] header {}: {}\n", b.at as f64 / 1e6, b.header_rev, evs.join(", "));
            }
        }
        s += &format!("log up to revision {}:\n", self.final_rev);
        for e in &self.log {
            s += &format!("  {e}\n");
        }
        for f in &self.finals {
            s += &format!("final read via m{} at {}: {:?}\n", f.member + 1, f.rev, f.kvs);
        }
        s
    }
}

//! etcd 3.4's backend layout, both ways: the state machine's column families as etcd's buckets (what a
//! snapshot file holds), and etcd's buckets back as column families (what a restore writes).
//!
//! ```text
//!   Cf::Kv    revision (8 BE main, '_', 8 BE sub [, 't']) → mvccpb.KeyValue   ⇄  key   (the same pairs)
//!   Cf::Meta  applied_index                                                   ⇄  meta  consistent_index
//!             compact_rev (u64 BE)                       → 17-byte revision      meta  scheduledCompactRev,
//!                                                                                      finishedCompactRev
//!             current_rev        ⇠ max(last key's main revision, scheduled compaction) (etcd derives it)
//!             members (JSON)     → members: hex id → etcd's member JSON        (restore: the new cluster's)
//!             removed_members    → members_removed: hex id → "removed"         (restore: dropped)
//!             alarms (JSON)      → alarm: etcdserverpb.AlarmMember → ""        (restore: dropped)
//!             ETCD_CLUSTER_VERSION → cluster: clusterVersion                   (restore: dropped)
//!   Cf::Lease id (8 BE) → TTL (i64 BE)                                    ⇄  lease: id → leasepb.Lease
//!   Cf::Auth  enabled, revision (absent: 1, written as etcd writes it)    ⇄  auth: authEnabled, authRevision
//!             role/<name> → authpb.Role, user/<name> → authpb.User        ⇄  authRoles, authUsers: name → …
//! ```
//!
//! Writing follows one scan of the state (column family by column family, keys in order): `key`, `lease`,
//! `authRoles` and `authUsers` are streamed as they come; the few meta and auth pairs are kept until the
//! scan ends. Every bucket etcd creates at start is written, empty or not.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;

use prost::Message;
use serde::Serialize;

use crate::membership::Member;
use crate::mvcc::Revision;
use crate::proto::etcdserverpb::AlarmMember;
use crate::storage::{meta, Cf, StateSnapshot, StorageError};

pub const KEY: &[u8] = b"key";
pub const META: &[u8] = b"meta";
pub const LEASE: &[u8] = b"lease";
pub const MEMBERS: &[u8] = b"members";
pub const MEMBERS_REMOVED: &[u8] = b"members_removed";
pub const CLUSTER: &[u8] = b"cluster";
pub const ALARM: &[u8] = b"alarm";
pub const AUTH: &[u8] = b"auth";
pub const AUTH_USERS: &[u8] = b"authUsers";
pub const AUTH_ROLES: &[u8] = b"authRoles";
/// Every bucket etcd 3.4 creates.
const BUCKETS: [&[u8]; 10] = [KEY, META, LEASE, MEMBERS, MEMBERS_REMOVED, CLUSTER, ALARM, AUTH, AUTH_USERS, AUTH_ROLES];

pub const CONSISTENT_INDEX: &[u8] = b"consistent_index";
const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
const CLUSTER_VERSION: &[u8] = b"clusterVersion";
const AUTH_ENABLED: &[u8] = b"authEnabled";
const AUTH_REVISION: &[u8] = b"authRevision";
/// modkv's own keys in `Cf::Auth` (see `auth`).
const MODKV_ENABLED: &[u8] = b"enabled";
const MODKV_REVISION: &[u8] = b"revision";
const MODKV_USER: &[u8] = b"user/";
const MODKV_ROLE: &[u8] = b"role/";

/// A bucket's pairs.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;
/// A pair of modkv's state machine.
pub type StatePair = (Cf, Vec<u8>, Vec<u8>);

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, prost::Message)]
struct LeasePb {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

/// etcd's member JSON (`membership.Member`: id, then its raft attributes, then its attributes).
#[derive(Serialize)]
struct EtcdMember<'a> {
    id: u64,
    #[serde(rename = "peerURLs")]
    peer_urls: &'a [String],
    #[serde(rename = "isLearner", skip_serializing_if = "std::ops::Not::not")]
    is_learner: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(rename = "clientURLs", skip_serializing_if = "<[String]>::is_empty")]
    client_urls: &'a [String],
}

fn corrupt(what: String) -> StorageError {
    StorageError::Corrupt(format!("snapshot: {what}"))
}

fn io_error(e: std::io::Error) -> StorageError {
    StorageError::Backend(format!("snapshot: {e}"))
}

/// The etcd bucket and key a streamed pair goes to (`None`: kept for the end, or not written).
fn streamed(cf: Cf, k: &[u8]) -> Option<(&'static [u8], &[u8])> {
    match cf {
        Cf::Kv => Some((KEY, k)),
        Cf::Lease => Some((LEASE, k)),
        Cf::Auth => {
            if let Some(name) = k.strip_prefix(MODKV_ROLE) {
                Some((AUTH_ROLES, name))
            } else {
                k.strip_prefix(MODKV_USER).map(|name| (AUTH_USERS, name))
            }
        }
        _ => None,
    }
}

/// What [`feed`] hands etcd's buckets to: a bbolt writer (a snapshot file), or the hash of
/// `Maintenance.Hash` (`super::hash`). Buckets come one after another in the order of the scan, each with
/// its keys ascending, each bucket once.
pub trait Sink {
    /// Starts the next bucket (ending the one before).
    fn bucket(&mut self, name: &[u8]) -> std::io::Result<()>;
    /// Adds a pair to the current bucket.
    fn put(&mut self, key: &[u8], value: &[u8]) -> std::io::Result<()>;
}

impl<W: Write> Sink for bbolt::Writer<W> {
    fn bucket(&mut self, name: &[u8]) -> std::io::Result<()> {
        bbolt::Writer::bucket(self, name)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        bbolt::Writer::put(self, key, value)
    }
}

/// Writes the state in `snap` as etcd's buckets to `w` (called once per pass of the writer). Stops early,
/// with `Ok(false)`, when the writer's output fails with [`std::io::ErrorKind::BrokenPipe`] (the receiver
/// stopped).
pub fn feed(snap: &dyn StateSnapshot, w: &mut dyn Sink) -> Result<bool, StorageError> {
    let mut small: BTreeMap<&'static [u8], Pairs> = BTreeMap::new();
    let mut written: Vec<&'static [u8]> = Vec::new();
    let mut failure: Option<std::io::Error> = None;
    let mut bad: Option<StorageError> = None;
    let mut meta_pairs: Pairs = Vec::new();
    snap.scan(&mut |cf, k, v| {
        let result = if let Some((bucket, key)) = streamed(cf, k) {
            // (A value is copied only when it changes: a leaf holds one copy until it is written.)
            let value = if cf == Cf::Lease { lease_value(k, v).map(Cow::Owned) } else { Ok(Cow::Borrowed(v)) };
            match value {
                Err(e) => {
                    bad = Some(e);
                    return false;
                }
                Ok(value) => {
                    if written.last() != Some(&bucket) {
                        written.push(bucket);
                        if let Err(e) = w.bucket(bucket) {
                            failure = Some(e);
                            return false;
                        }
                    }
                    w.put(key, &value)
                }
            }
        } else {
            match cf {
                Cf::Meta => meta_pairs.push((k.to_vec(), v.to_vec())),
                Cf::Auth if k == MODKV_ENABLED => {
                    small.entry(AUTH).or_default().push((AUTH_ENABLED.to_vec(), v.to_vec()))
                }
                Cf::Auth if k == MODKV_REVISION => {
                    small.entry(AUTH).or_default().push((AUTH_REVISION.to_vec(), v.to_vec()))
                }
                _ => {}
            }
            Ok(())
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = bad {
        return Err(e);
    }
    match failure {
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(false),
        Some(e) => return Err(io_error(e)),
        None => {}
    }
    for (bucket, pairs) in meta_buckets(&meta_pairs)? {
        small.entry(bucket).or_default().extend(pairs);
    }
    // etcd's auth store writes its revision, 1, when it first starts; modkv's starts at 1 without writing
    // it (`auth`): the file holds what etcd's would.
    let auth = small.entry(AUTH).or_default();
    if !auth.iter().any(|(k, _)| k == AUTH_REVISION) {
        auth.push((AUTH_REVISION.to_vec(), meta::encode_u64(1)));
    }
    let mut run = |w: &mut dyn Sink| -> std::io::Result<()> {
        for bucket in BUCKETS {
            if written.contains(&bucket) {
                continue;
            }
            w.bucket(bucket)?;
            let mut pairs = small.remove(bucket).unwrap_or_default();
            pairs.sort();
            for (k, v) in pairs {
                w.put(&k, &v)?;
            }
        }
        Ok(())
    };
    match run(w) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(io_error(e)),
    }
}

/// etcd's `leasepb.Lease` for a lease id and its stored TTL.
fn lease_value(k: &[u8], v: &[u8]) -> Result<Vec<u8>, StorageError> {
    match (<[u8; 8]>::try_from(k), <[u8; 8]>::try_from(v)) {
        (Ok(id), Ok(ttl)) => {
            Ok(LeasePb { id: i64::from_be_bytes(id), ttl: i64::from_be_bytes(ttl), remaining_ttl: 0 }.encode_to_vec())
        }
        _ => Err(corrupt(format!("a lease entry of {} and {} bytes", k.len(), v.len()))),
    }
}

/// The buckets made from modkv's meta pairs.
fn meta_buckets(pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<(&'static [u8], Pairs)>, StorageError> {
    let get = |key: &[u8]| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_slice());
    let json_error = |what: &str, e: serde_json::Error| corrupt(format!("{what}: {e}"));
    let mut meta = Vec::new();
    if let Some(index) = get(meta::APPLIED_INDEX) {
        meta.push((CONSISTENT_INDEX.to_vec(), index.to_vec()));
    }
    if let Some(rev) = get(meta::COMPACT_REV).and_then(meta::decode_u64) {
        let rev = Revision::new(rev as i64, 0).to_bytes(false);
        meta.push((SCHEDULED_COMPACT.to_vec(), rev.clone()));
        meta.push((FINISHED_COMPACT.to_vec(), rev));
    }
    let members: Vec<Member> = match get(meta::MEMBERS) {
        Some(b) => serde_json::from_slice(b).map_err(|e| json_error("members", e))?,
        None => Vec::new(),
    };
    let members = members
        .iter()
        .map(|m| {
            let json = EtcdMember {
                id: m.id,
                peer_urls: &m.peer_urls,
                is_learner: m.is_learner,
                name: &m.name,
                client_urls: &m.client_urls,
            };
            (format!("{:x}", m.id).into_bytes(), serde_json::to_vec(&json).expect("a member encodes"))
        })
        .collect();
    let removed: Vec<u64> = match get(meta::REMOVED_MEMBERS) {
        Some(b) => serde_json::from_slice(b).map_err(|e| json_error("removed members", e))?,
        None => Vec::new(),
    };
    let removed = removed.iter().map(|id| (format!("{id:x}").into_bytes(), b"removed".to_vec())).collect();
    let alarms: Vec<(u64, i32)> = match get(meta::ALARMS) {
        Some(b) => serde_json::from_slice(b).map_err(|e| json_error("alarms", e))?,
        None => Vec::new(),
    };
    let alarms = alarms
        .iter()
        .map(|&(member_id, alarm)| (AlarmMember { member_id, alarm }.encode_to_vec(), Vec::new()))
        .collect();
    let cluster = vec![(CLUSTER_VERSION.to_vec(), crate::version::ETCD_CLUSTER_VERSION.as_bytes().to_vec())];
    Ok(vec![(META, meta), (MEMBERS, members), (MEMBERS_REMOVED, removed), (ALARM, alarms), (CLUSTER, cluster)])
}

/// Turns etcd's buckets, entry by entry, into the pairs of modkv's state machine. What belongs to the old
/// cluster (members, alarms, its raft position) is left out, as `etcdctl snapshot restore` leaves it.
#[derive(Default)]
pub struct Restorer {
    bucket: Vec<u8>,
    last_rev: i64,
    scheduled_compact: i64,
    finished_compact: Option<i64>,
}

impl Restorer {
    pub fn bucket(&mut self, name: &[u8]) {
        self.bucket = name.to_vec();
    }

    /// The modkv pair for an entry of the current bucket, if it has one.
    pub fn entry(&mut self, key: &[u8], value: &[u8]) -> Result<Option<StatePair>, String> {
        let name = String::from_utf8_lossy(&self.bucket);
        let bad = |what: &str| Err(format!("bucket {name}: {what}"));
        Ok(Some(match self.bucket.as_slice() {
            KEY => {
                let Some((rev, _)) = Revision::from_bytes(key) else { return bad("a key that is not a revision") };
                if mvcc_key_value(value).is_none() {
                    return bad("a value that is not an mvccpb.KeyValue");
                }
                self.last_rev = self.last_rev.max(rev.main);
                (Cf::Kv, key.to_vec(), value.to_vec())
            }
            LEASE => {
                let Ok(lease) = LeasePb::decode(value) else { return bad("a value that is not a leasepb.Lease") };
                (Cf::Lease, lease.id.to_be_bytes().to_vec(), lease.ttl.to_be_bytes().to_vec())
            }
            META => {
                let rev = || match Revision::from_bytes(value) {
                    Some((r, false)) => Ok(r.main),
                    _ => Err(format!("bucket meta: {} is not a revision", String::from_utf8_lossy(key))),
                };
                match key {
                    SCHEDULED_COMPACT => self.scheduled_compact = rev()?,
                    FINISHED_COMPACT => self.finished_compact = Some(rev()?),
                    _ => {}
                }
                return Ok(None);
            }
            AUTH => match key {
                AUTH_ENABLED => (Cf::Auth, MODKV_ENABLED.to_vec(), value.to_vec()),
                AUTH_REVISION => (Cf::Auth, MODKV_REVISION.to_vec(), value.to_vec()),
                _ => return Ok(None),
            },
            AUTH_USERS => (Cf::Auth, [MODKV_USER, key].concat(), value.to_vec()),
            AUTH_ROLES => (Cf::Auth, [MODKV_ROLE, key].concat(), value.to_vec()),
            _ => return Ok(None),
        }))
    }

    /// The meta pairs that end a restore: the revision counters. Returns them and the store's revision.
    pub fn finish(&self) -> (Vec<StatePair>, i64) {
        // etcd: the last key's revision, or the compaction's if that is later.
        let revision = self.last_rev.max(self.scheduled_compact).max(1);
        let mut pairs = vec![(Cf::Meta, meta::CURRENT_REV.to_vec(), meta::encode_u64(revision as u64))];
        if let Some(compact) = self.finished_compact {
            pairs.push((Cf::Meta, meta::COMPACT_REV.to_vec(), meta::encode_u64(compact as u64)));
        }
        (pairs, revision)
    }
}

/// Decodes a stored `mvccpb.KeyValue`.
fn mvcc_key_value(value: &[u8]) -> Option<crate::proto::mvccpb::KeyValue> {
    crate::proto::mvccpb::KeyValue::decode(value).ok()
}

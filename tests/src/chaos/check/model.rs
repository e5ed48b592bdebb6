//! The revision log: the whole key space's events from revision 1, as a watch read them after the run.
//! [`RevLog::build`] checks the log itself (revisions 2..=final with no gap, each key's create revision
//! and version following from its events) and then answers "what did key k hold at revision r".

use std::collections::{BTreeMap, HashMap};

use super::Anomaly;
use crate::chaos::history::{Event, Kv};

pub struct RevLog {
    by_rev: BTreeMap<i64, Vec<Event>>,
    /// Each key's states after each of its changes, by revision (`None`: deleted).
    per_key: HashMap<String, Vec<(i64, Option<Kv>)>>,
    /// The revision the cluster had when the log was read.
    pub last: i64,
}

impl RevLog {
    /// Builds the log from `events` (in the order the watch delivered them), the cluster being at
    /// `final_rev`; anomalies of the log itself go to `out`.
    pub fn build(events: &[Event], final_rev: i64, out: &mut Vec<Anomaly>) -> RevLog {
        let mut by_rev: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
        let mut per_key: HashMap<String, Vec<(i64, Option<Kv>)>> = HashMap::new();
        let mut prev = 1;
        for e in events {
            let rev = e.rev();
            if rev < prev {
                out.push(Anomaly::new("log", format!("event {e} after revision {prev}: out of order")));
                continue;
            }
            if rev > prev + 1 {
                out.push(Anomaly::new("log", format!("revisions {}..={} have no event: a gap", prev + 1, rev - 1)));
            }
            prev = rev;
            let states = per_key.entry(e.kv.key.clone()).or_default();
            let before = states.last().and_then(|(_, s)| s.clone());
            let after = if e.delete {
                if before.is_none() {
                    out.push(Anomaly::new("log", format!("{e} deletes a key that does not exist")));
                }
                None
            } else {
                let (create, version) = match &before {
                    Some(b) => (b.create, b.version + 1),
                    None => (rev, 1),
                };
                if (e.kv.create, e.kv.version) != (create, version) {
                    out.push(Anomaly::new(
                        "log",
                        format!("{e}: expected create revision {create} and version {version} from the key's history"),
                    ));
                }
                Some(e.kv.clone())
            };
            if states.last().is_some_and(|(r, _)| *r == rev) {
                out.push(Anomaly::new("log", format!("{e}: the key changes twice at one revision")));
            }
            states.push((rev, after));
            by_rev.entry(rev).or_default().push(e.clone());
        }
        if prev != final_rev {
            out.push(Anomaly::new(
                "log",
                format!("the cluster is at revision {final_rev} but the log's last event is at {prev}"),
            ));
        }
        RevLog { by_rev, per_key, last: final_rev }
    }

    /// What `key` held at revision `rev` (`None`: absent).
    pub fn state(&self, key: &str, rev: i64) -> Option<&Kv> {
        let states = self.per_key.get(key)?;
        let n = states.partition_point(|(r, _)| *r <= rev);
        states[..n].last().and_then(|(_, s)| s.as_ref())
    }

    /// The events of revision `rev` (empty if none).
    pub fn at(&self, rev: i64) -> &[Event] {
        self.by_rev.get(&rev).map_or(&[], Vec::as_slice)
    }

    /// Events of revisions `lo..=hi` whose key starts with `prefix`, in order.
    pub fn between(&self, lo: i64, hi: i64, prefix: &str) -> Vec<&Event> {
        self.by_rev.range(lo..=hi).flat_map(|(_, es)| es.iter()).filter(|e| e.kv.key.starts_with(prefix)).collect()
    }

    /// Every event, in revision order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.by_rev.values().flat_map(|es| es.iter())
    }

    /// The keys starting with `prefix` present at revision `rev`, sorted by key.
    pub fn snapshot(&self, prefix: &str, rev: i64) -> Vec<Kv> {
        let mut keys: Vec<&String> = self.per_key.keys().filter(|k| k.starts_with(prefix)).collect();
        keys.sort();
        keys.into_iter().filter_map(|k| self.state(k, rev).cloned()).collect()
    }
}

//! Members and the ids etcd derives for them: a member id is the SHA-1 of its sorted peer URLs and the
//! cluster token, a cluster id the SHA-1 of the sorted member ids, so a cluster started with etcd's
//! flags gets the same ids etcd would give it.

use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use crate::error::Result;
use crate::storage::{meta, Backend, Cf, StorageError, WriteBatch};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    #[serde(default)]
    pub is_learner: bool,
}

impl From<Member> for crate::proto::etcdserverpb::Member {
    fn from(m: Member) -> Self {
        crate::proto::etcdserverpb::Member {
            id: m.id,
            name: m.name,
            peer_ur_ls: m.peer_urls,
            client_ur_ls: m.client_urls,
            is_learner: m.is_learner,
        }
    }
}

/// A URL as etcd prints it: no trailing slash on an empty path.
pub fn url_string(u: &url::Url) -> String {
    u.as_str().trim_end_matches('/').to_string()
}

pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = Sha1::new();
    for u in &urls {
        h.update(u.as_bytes());
    }
    h.update(token.as_bytes());
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("sha1 is 20 bytes"))
}

pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("sha1 is 20 bytes"))
}

/// The context of a raft configuration change entry: which request proposed it and the member it is
/// about (for an add, the whole new member).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeContext {
    pub request_id: u64,
    pub member: Member,
}

/// The id of a member added at run time: its peer URLs, the cluster and the time (as etcd, which hashes
/// the time in so re-adding the same URLs gives a new id).
pub fn new_member_id(peer_urls: &[String], cluster_id: u64) -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    member_id(peer_urls, &format!("{cluster_id:x}/{}", now.as_nanos()))
}

/// This member's view of the cluster.
pub struct Cluster {
    pub member_id: u64,
    pub cluster_id: u64,
    members: RwLock<Vec<Member>>,
    /// Ids of members removed from the cluster: their messages are refused, which tells them to stop.
    removed: RwLock<Vec<u64>>,
}

fn read_json<T: serde::de::DeserializeOwned + Default>(backend: &dyn Backend, key: &[u8]) -> Result<T> {
    match backend.get(Cf::Meta, key)? {
        Some(b) => Ok(serde_json::from_slice(&b)
            .map_err(|e| StorageError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(key))))?),
        None => Ok(T::default()),
    }
}

impl Cluster {
    /// The cluster a new member bootstraps from `--initial-cluster`: `(name, peer urls)` per member.
    pub fn bootstrap(local_name: &str, initial: &[(String, Vec<String>)], token: &str) -> Option<Cluster> {
        let members: Vec<Member> = initial
            .iter()
            .map(|(name, urls)| Member {
                id: member_id(urls, token),
                name: name.clone(),
                peer_urls: urls.clone(),
                client_urls: vec![],
                is_learner: false,
            })
            .collect();
        let me = members.iter().find(|m| m.name == local_name)?.id;
        let cid = cluster_id(&members.iter().map(|m| m.id).collect::<Vec<_>>());
        Some(Cluster { member_id: me, cluster_id: cid, members: RwLock::new(members), removed: RwLock::new(vec![]) })
    }

    /// The cluster as stored in the data dir, if it was ever bootstrapped.
    pub fn load(backend: &dyn Backend) -> Result<Option<Cluster>> {
        let get = |k| -> Result<Option<u64>> { Ok(backend.get(Cf::Meta, k)?.and_then(|b| meta::decode_u64(&b))) };
        let (Some(member_id), Some(cluster_id)) = (get(meta::MEMBER_ID)?, get(meta::CLUSTER_ID)?) else {
            return Ok(None);
        };
        let members = read_json(backend, meta::MEMBERS)?;
        let removed = read_json(backend, meta::REMOVED_MEMBERS)?;
        Ok(Some(Cluster { member_id, cluster_id, members: RwLock::new(members), removed: RwLock::new(removed) }))
    }

    /// A member joining a running cluster, from the member list a peer sent.
    pub fn joined(member_id: u64, cluster_id: u64, members: Vec<Member>) -> Cluster {
        Cluster { member_id, cluster_id, members: RwLock::new(members), removed: RwLock::new(vec![]) }
    }

    /// Reloads the member list from storage (after a snapshot replaced the state).
    pub fn reload(&self, backend: &dyn Backend) -> Result<()> {
        *self.members.write().unwrap_or_else(|e| e.into_inner()) = read_json(backend, meta::MEMBERS)?;
        *self.removed.write().unwrap_or_else(|e| e.into_inner()) = read_json(backend, meta::REMOVED_MEMBERS)?;
        Ok(())
    }

    pub fn save(&self, batch: &mut WriteBatch) {
        batch.put(Cf::Meta, meta::MEMBER_ID, meta::encode_u64(self.member_id));
        batch.put(Cf::Meta, meta::CLUSTER_ID, meta::encode_u64(self.cluster_id));
        let members =
            serde_json::to_vec(&*self.members.read().unwrap_or_else(|e| e.into_inner())).expect("members encode");
        batch.put(Cf::Meta, meta::MEMBERS, members);
        let removed = serde_json::to_vec(&*self.removed.read().unwrap_or_else(|e| e.into_inner())).expect("ids encode");
        batch.put(Cf::Meta, meta::REMOVED_MEMBERS, removed);
    }

    /// Whether `id` was removed from the cluster.
    pub fn is_removed(&self, id: u64) -> bool {
        self.removed.read().unwrap_or_else(|e| e.into_inner()).contains(&id)
    }

    /// The members, by id (the order etcd lists them in).
    pub fn members(&self) -> Vec<Member> {
        let mut ms = self.members.read().unwrap_or_else(|e| e.into_inner()).clone();
        ms.sort_by_key(|m| m.id);
        ms
    }

    pub fn voter_ids(&self) -> Vec<u64> {
        self.members().iter().filter(|m| !m.is_learner).map(|m| m.id).collect()
    }

    pub fn member(&self, id: u64) -> Option<Member> {
        self.members.read().unwrap_or_else(|e| e.into_inner()).iter().find(|m| m.id == id).cloned()
    }

    /// Asked by every write (`not_learner`): looked up in place, nothing copied.
    pub fn is_learner(&self, id: u64) -> bool {
        self.members.read().unwrap_or_else(|e| e.into_inner()).iter().any(|m| m.id == id && m.is_learner)
    }

    /// The first peer URL of member `id`.
    pub fn peer_url(&self, id: u64) -> Option<String> {
        self.member(id).and_then(|m| m.peer_urls.first().cloned())
    }

    fn change(&self, f: impl FnOnce(&mut Vec<Member>)) {
        f(&mut self.members.write().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records the name and client URLs a member published (etcd publishes them at every start).
    pub fn set_attributes(&self, id: u64, name: &str, urls: Vec<String>) {
        self.change(|ms| {
            if let Some(m) = ms.iter_mut().find(|m| m.id == id) {
                m.name = name.to_string();
                m.client_urls = urls;
            }
        })
    }

    pub fn set_peer_urls(&self, id: u64, urls: Vec<String>) {
        self.change(|ms| {
            if let Some(m) = ms.iter_mut().find(|m| m.id == id) {
                m.peer_urls = urls;
            }
        })
    }

    /// Adds a member, or (same id) replaces it: an add applied twice after a restart is one add.
    pub fn add(&self, m: Member) {
        self.change(|ms| match ms.iter_mut().find(|x| x.id == m.id) {
            Some(x) => *x = m,
            None => ms.push(m),
        })
    }

    pub fn remove(&self, id: u64) {
        self.change(|ms| ms.retain(|m| m.id != id));
        let mut removed = self.removed.write().unwrap_or_else(|e| e.into_inner());
        if !removed.contains(&id) {
            removed.push(id);
        }
    }

    pub fn promote(&self, id: u64) {
        self.change(|ms| {
            if let Some(m) = ms.iter_mut().find(|m| m.id == id) {
                m.is_learner = false;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_etcds_defaults() {
        // etcd's well-known ids for `--initial-cluster default=http://localhost:2380` and the default token.
        let urls = vec!["http://localhost:2380".to_string()];
        let id = member_id(&urls, "etcd-cluster");
        assert_eq!(format!("{id:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[id])), "cdf818194e3a8c32");
        let u = url::Url::parse("http://localhost:2380").unwrap();
        assert_eq!(url_string(&u), "http://localhost:2380");
    }
}

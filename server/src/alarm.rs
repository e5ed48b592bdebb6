//! Cluster alarms (etcd's `v3alarm`): raised and cleared through raft, kept in the state machine.
//! While `NOSPACE` is raised, writes that would grow the database are refused at apply time.

use std::sync::{Mutex, MutexGuard};

use crate::error::Result;
use crate::proto::etcdserverpb::{AlarmMember, AlarmType};
use crate::storage::{meta, Backend, Cf, StorageError, WriteBatch};

#[derive(Default)]
pub struct AlarmStore {
    alarms: Mutex<Vec<(u64, i32)>>,
}

impl AlarmStore {
    pub fn open(backend: &dyn Backend) -> Result<AlarmStore> {
        let alarms = match backend.get(Cf::Meta, meta::ALARMS)? {
            Some(b) => serde_json::from_slice(&b).map_err(|e| StorageError::Corrupt(format!("alarms: {e}")))?,
            None => vec![],
        };
        Ok(AlarmStore { alarms: Mutex::new(alarms) })
    }

    /// Reloads the alarms from storage (after a snapshot replaced the state).
    pub fn reload(&self, backend: &dyn Backend) -> Result<()> {
        let fresh = AlarmStore::open(backend)?;
        *self.lock() = fresh.alarms.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(u64, i32)>> {
        self.alarms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(alarms: &[(u64, i32)], batch: &mut WriteBatch) {
        batch.put(Cf::Meta, meta::ALARMS, serde_json::to_vec(alarms).expect("alarms encode"));
    }

    /// The alarms of one type (`None`: all).
    pub fn get(&self, kind: AlarmType) -> Vec<AlarmMember> {
        self.lock()
            .iter()
            .filter(|(_, a)| kind == AlarmType::None || *a == kind as i32)
            .map(|&(member_id, alarm)| AlarmMember { member_id, alarm })
            .collect()
    }

    pub fn is_raised(&self, kind: AlarmType) -> bool {
        self.lock().iter().any(|(_, a)| *a == kind as i32)
    }

    pub fn any(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Raises an alarm; returns it if it was not raised before.
    pub fn activate(&self, member_id: u64, kind: AlarmType, batch: &mut WriteBatch) -> Option<AlarmMember> {
        if kind == AlarmType::None {
            return None;
        }
        let mut alarms = self.lock();
        if !alarms.contains(&(member_id, kind as i32)) {
            alarms.push((member_id, kind as i32));
            Self::save(&alarms, batch);
        }
        Some(AlarmMember { member_id, alarm: kind as i32 })
    }

    /// Clears an alarm; returns it if it was raised.
    pub fn deactivate(&self, member_id: u64, kind: AlarmType, batch: &mut WriteBatch) -> Option<AlarmMember> {
        let mut alarms = self.lock();
        let before = alarms.len();
        alarms.retain(|a| *a != (member_id, kind as i32));
        if alarms.len() == before {
            return None;
        }
        Self::save(&alarms, batch);
        Some(AlarmMember { member_id, alarm: kind as i32 })
    }
}

//! In-memory backend: the same contract as the sled one, minus durability.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use crate::StoreError;
use crate::{mapping_keys, normalize_jid, normalize_sip, trimmed, Mapping, MappingStore, Outbox};
use crate::{Table, TableStore};

/// State kept in process memory only; lost when the process ends.
#[derive(Debug, Default)]
pub struct MemoryStore {
    mappings: Mutex<Mappings>,
    outbox: Mutex<Queue>,
    tables: Mutex<BTreeMap<(Table, String), Vec<u8>>>,
}

#[derive(Debug, Default)]
struct Mappings {
    /// Normalized JID → mapping. A `BTreeMap` so that `list` comes out in key order.
    by_jid: BTreeMap<String, Mapping>,
    /// Normalized SIP URI → normalized JID.
    by_sip: HashMap<String, String>,
}

#[derive(Debug, Default)]
struct Queue {
    next: u64,
    items: BTreeMap<u64, Vec<u8>>,
}

/// Locks `m`, recovering the data if another thread panicked while holding the lock: every
/// critical section below leaves the maps consistent before it can panic (it only allocates).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Mappings {
    fn remove_pair(&mut self, jid_key: &str) -> Option<Mapping> {
        let old = self.by_jid.remove(jid_key)?;
        let sip_key = normalize_sip(&old.sip);
        if self.by_sip.get(&sip_key).map(String::as_str) == Some(jid_key) {
            self.by_sip.remove(&sip_key);
        }
        Some(old)
    }
}

impl MappingStore for MemoryStore {
    fn put(&self, m: &Mapping) -> Result<Option<Mapping>, StoreError> {
        let (jid_key, sip_key) = mapping_keys(m)?;
        let mut t = lock(&self.mappings);
        let old_of_jid = t.remove_pair(&jid_key);
        let old_of_sip = match t.by_sip.get(&sip_key).cloned() {
            Some(other_jid) => t.remove_pair(&other_jid),
            None => None,
        };
        t.by_sip.insert(sip_key, jid_key.clone());
        t.by_jid.insert(jid_key, trimmed(m));
        Ok(old_of_jid.or(old_of_sip))
    }

    fn by_jid(&self, jid: &str) -> Result<Option<Mapping>, StoreError> {
        Ok(lock(&self.mappings)
            .by_jid
            .get(&normalize_jid(jid))
            .cloned())
    }

    fn by_sip(&self, sip: &str) -> Result<Option<Mapping>, StoreError> {
        let t = lock(&self.mappings);
        Ok(t.by_sip
            .get(&normalize_sip(sip))
            .and_then(|jid_key| t.by_jid.get(jid_key))
            .cloned())
    }

    fn remove_jid(&self, jid: &str) -> Result<Option<Mapping>, StoreError> {
        Ok(lock(&self.mappings).remove_pair(&normalize_jid(jid)))
    }

    fn list(&self) -> Result<Vec<Mapping>, StoreError> {
        Ok(lock(&self.mappings).by_jid.values().cloned().collect())
    }
}

impl Outbox for MemoryStore {
    fn push(&self, item: &[u8]) -> Result<u64, StoreError> {
        let mut q = lock(&self.outbox);
        let seq = q.next;
        q.next += 1;
        q.items.insert(seq, item.to_vec());
        Ok(seq)
    }

    fn remove(&self, seq: u64) -> Result<(), StoreError> {
        lock(&self.outbox).items.remove(&seq);
        Ok(())
    }

    fn pending(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        Ok(lock(&self.outbox)
            .items
            .iter()
            .map(|(seq, item)| (*seq, item.clone()))
            .collect())
    }

    fn len(&self) -> Result<usize, StoreError> {
        Ok(lock(&self.outbox).items.len())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl TableStore for MemoryStore {
    fn put(&self, table: Table, key: &str, value: &[u8]) -> Result<(), StoreError> {
        if key.is_empty() {
            return Err(StoreError::EmptyKey("table"));
        }
        lock(&self.tables).insert((table, key.to_owned()), value.to_vec());
        Ok(())
    }

    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(lock(&self.tables).get(&(table, key.to_owned())).cloned())
    }

    fn remove(&self, table: Table, key: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.tables)
            .remove(&(table, key.to_owned()))
            .is_some())
    }

    fn list(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.list_prefix(table, "")
    }

    fn list_prefix(
        &self,
        table: Table,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(lock(&self.tables)
            .range((table, prefix.to_owned())..)
            .take_while(|((t, k), _)| *t == table && k.starts_with(prefix))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

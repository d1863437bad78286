//! The embedded on-disk backend: sled 0.34, one `Tree` per concern.
//!
//! Layout (keys are the normalized forms of the crate docs):
//!
//! | tree | key | value |
//! |---|---|---|
//! | `mappings.by_jid` | JID key (UTF-8) | the [`Mapping`], JSON |
//! | `mappings.by_sip` | SIP URI key (UTF-8) | the JID key it belongs to |
//! | `outbox` | seq, `u64` big-endian (so iteration order is seq order) | the item bytes |
//! | `outbox.meta` | `next` | the lowest seq not yet used, `u64` big-endian |
//! | `presence.<table>`, `registrar.<table>` ([`Table::tree`]) | the record's key (UTF-8) | the record, as the gateway wrote it; durable at `flush` |
//!
//! Both mapping trees change in one sled transaction, so a crash never leaves half a pair.
//! The outbox counter starts after the last key on open; `outbox.meta` only matters when the
//! highest seq has been removed, so that removing the tail and restarting cannot reuse it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionalTree,
};
use sled::Transactional;

use crate::StoreError;
use crate::{mapping_keys, normalize_jid, normalize_sip, trimmed, Mapping, MappingStore, Outbox};
use crate::{Table, TableStore};

const BY_JID: &str = "mappings.by_jid";
const BY_SIP: &str = "mappings.by_sip";
const OUTBOX: &str = "outbox";
const OUTBOX_META: &str = "outbox.meta";
const NEXT_SEQ: &[u8] = b"next";

/// State in a sled database directory.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    by_jid: sled::Tree,
    by_sip: sled::Tree,
    outbox: sled::Tree,
    outbox_meta: sled::Tree,
    /// The record tables, in [`Table::ALL`] order.
    tables: Vec<sled::Tree>,
    /// The next outbox seq to hand out.
    next_seq: AtomicU64,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> StoreError {
        StoreError::Backend(Box::new(e))
    }
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> StoreError {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => e.into(),
        }
    }
}

fn decode_mapping(bytes: &[u8]) -> Result<Mapping, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree: BY_JID,
        reason: e.to_string(),
    })
}

fn decode_seq(tree: &'static str, bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        tree,
        reason: format!("{}-byte sequence number, expected 8", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// Inside a transaction: removes the pair stored under `jid_key` from both trees.
fn remove_pair(
    by_jid: &TransactionalTree,
    by_sip: &TransactionalTree,
    jid_key: &[u8],
) -> ConflictableTransactionResult<Option<Mapping>, StoreError> {
    let Some(bytes) = by_jid.remove(jid_key)? else {
        return Ok(None);
    };
    let old = decode_mapping(&bytes).map_err(ConflictableTransactionError::Abort)?;
    let sip_key = normalize_sip(&old.sip);
    if by_sip.get(sip_key.as_bytes())?.as_deref() == Some(jid_key) {
        by_sip.remove(sip_key.as_bytes())?;
    }
    Ok(Some(old))
}

impl SledStore {
    /// Opens (or creates) the database directory at `path`.
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::LowSpace)
            .open()?;
        let by_jid = db.open_tree(BY_JID)?;
        let by_sip = db.open_tree(BY_SIP)?;
        let outbox = db.open_tree(OUTBOX)?;
        let outbox_meta = db.open_tree(OUTBOX_META)?;
        let tables = Table::ALL
            .iter()
            .map(|t| db.open_tree(t.tree()))
            .collect::<Result<Vec<_>, _>>()?;
        let after_last = match outbox.last()? {
            Some((key, _)) => decode_seq(OUTBOX, &key)?.saturating_add(1),
            None => 0,
        };
        let floor = match outbox_meta.get(NEXT_SEQ)? {
            Some(v) => decode_seq(OUTBOX_META, &v)?,
            None => 0,
        };
        let next_seq = after_last.max(floor);
        tracing::debug!(
            path = %path.display(),
            mappings = by_jid.len(),
            outbox = outbox.len(),
            next_seq,
            "opened sled store"
        );
        Ok(SledStore {
            db,
            by_jid,
            by_sip,
            outbox,
            outbox_meta,
            tables,
            next_seq: AtomicU64::new(next_seq),
        })
    }

    fn flush_all(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

impl MappingStore for SledStore {
    fn put(&self, m: &Mapping) -> Result<Option<Mapping>, StoreError> {
        let (jid_key, sip_key) = mapping_keys(m)?;
        let value = serde_json::to_vec(&trimmed(m)).map_err(|e| StoreError::Corrupt {
            tree: BY_JID,
            reason: e.to_string(),
        })?;
        let replaced = (&self.by_jid, &self.by_sip).transaction(|(j, s)| {
            let old_of_jid = remove_pair(j, s, jid_key.as_bytes())?;
            let old_of_sip = match s.get(sip_key.as_bytes())? {
                Some(other_jid) => remove_pair(j, s, &other_jid)?,
                None => None,
            };
            s.insert(sip_key.as_bytes(), jid_key.as_bytes())?;
            j.insert(jid_key.as_bytes(), value.as_slice())?;
            Ok::<_, ConflictableTransactionError<StoreError>>(old_of_jid.or(old_of_sip))
        })?;
        self.flush_all()?;
        Ok(replaced)
    }

    fn by_jid(&self, jid: &str) -> Result<Option<Mapping>, StoreError> {
        match self.by_jid.get(normalize_jid(jid).as_bytes())? {
            Some(bytes) => decode_mapping(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn by_sip(&self, sip: &str) -> Result<Option<Mapping>, StoreError> {
        let Some(jid_key) = self.by_sip.get(normalize_sip(sip).as_bytes())? else {
            return Ok(None);
        };
        match self.by_jid.get(&jid_key)? {
            Some(bytes) => decode_mapping(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn remove_jid(&self, jid: &str) -> Result<Option<Mapping>, StoreError> {
        let jid_key = normalize_jid(jid);
        let removed = (&self.by_jid, &self.by_sip)
            .transaction(|(j, s)| remove_pair(j, s, jid_key.as_bytes()))?;
        if removed.is_some() {
            self.flush_all()?;
        }
        Ok(removed)
    }

    fn list(&self) -> Result<Vec<Mapping>, StoreError> {
        self.by_jid
            .iter()
            .values()
            .map(|v| decode_mapping(&v?))
            .collect()
    }
}

impl Outbox for SledStore {
    fn push(&self, item: &[u8]) -> Result<u64, StoreError> {
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        self.outbox.insert(seq.to_be_bytes(), item)?;
        Ok(seq)
    }

    fn remove(&self, seq: u64) -> Result<(), StoreError> {
        let key = seq.to_be_bytes();
        let is_tail = match self.outbox.last()? {
            Some((last, _)) => last.as_ref() == key,
            None => false,
        };
        if !is_tail {
            self.outbox.remove(key)?;
            return Ok(());
        }
        // Removing the highest seq: record the counter in the same transaction, so that a
        // restart after this removal cannot hand the seq out again.
        let next = self
            .next_seq
            .load(Ordering::SeqCst)
            .max(seq.saturating_add(1));
        (&self.outbox, &self.outbox_meta).transaction(|(o, meta)| {
            o.remove(&key[..])?;
            meta.insert(NEXT_SEQ, &next.to_be_bytes()[..])?;
            Ok::<(), ConflictableTransactionError<StoreError>>(())
        })?;
        Ok(())
    }

    fn pending(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.outbox
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((decode_seq(OUTBOX, &k)?, v.to_vec()))
            })
            .collect()
    }

    fn len(&self) -> Result<usize, StoreError> {
        Ok(self.outbox.len())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.flush_all()
    }
}

impl SledStore {
    fn table_tree(&self, table: Table) -> &sled::Tree {
        let i = Table::ALL.iter().position(|t| *t == table).unwrap_or(0);
        &self.tables[i]
    }
}

impl TableStore for SledStore {
    fn put(&self, table: Table, key: &str, value: &[u8]) -> Result<(), StoreError> {
        if key.is_empty() {
            return Err(StoreError::EmptyKey("table"));
        }
        self.table_tree(table).insert(key.as_bytes(), value)?;
        Ok(())
    }

    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .table_tree(table)
            .get(key.as_bytes())?
            .map(|v| v.to_vec()))
    }

    fn remove(&self, table: Table, key: &str) -> Result<bool, StoreError> {
        Ok(self.table_tree(table).remove(key.as_bytes())?.is_some())
    }

    fn list(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.list_prefix(table, "")
    }

    fn list_prefix(
        &self,
        table: Table,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.table_tree(table)
            .scan_prefix(prefix.as_bytes())
            .map(|r| {
                let (k, v) = r?;
                let key = String::from_utf8(k.to_vec()).map_err(|e| StoreError::Corrupt {
                    tree: "table",
                    reason: e.to_string(),
                })?;
                Ok((key, v.to_vec()))
            })
            .collect()
    }

    fn flush(&self) -> Result<(), StoreError> {
        // One sled log: flushing the database makes every tree durable.
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn m(jid: &str, sip: &str, t: u64) -> Mapping {
        Mapping {
            jid: jid.into(),
            sip: sip.into(),
            created_unix: t,
        }
    }

    #[test]
    fn reopening_finds_mappings_and_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (m("a@h", "sip:a@pbx", 1), m("b@h", "sip:b@pbx", 2));
        let (s1, s2);
        {
            let store = Store::open_sled(dir.path()).unwrap();
            store.mappings.put(&a).unwrap();
            store.mappings.put(&b).unwrap();
            store.mappings.put(&m("gone@h", "sip:gone@pbx", 3)).unwrap();
            store.mappings.remove_jid("gone@h").unwrap();
            s1 = store.outbox.push(b"first").unwrap();
            s2 = store.outbox.push(b"second").unwrap();
            store.outbox.flush().unwrap();
            // Dropping the last handle closes the database and releases its lock.
        }
        let store = Store::open_sled(dir.path()).unwrap();
        assert_eq!(store.mappings.list().unwrap(), vec![a.clone(), b]);
        assert_eq!(store.mappings.by_sip("sip:a@pbx").unwrap(), Some(a));
        assert_eq!(store.mappings.by_sip("sip:gone@pbx").unwrap(), None);
        assert_eq!(
            store.outbox.pending().unwrap(),
            vec![(s1, b"first".to_vec()), (s2, b"second".to_vec())]
        );
        // The counter resumes after the last stored key.
        assert!(store.outbox.push(b"third").unwrap() > s2);
    }

    #[test]
    fn seq_is_not_reused_after_the_tail_was_removed_and_the_store_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let last;
        {
            let store = SledStore::open(dir.path()).unwrap();
            let first = store.push(b"1").unwrap();
            last = store.push(b"2").unwrap();
            Outbox::remove(&store, last).unwrap();
            Outbox::flush(&store).unwrap();
            assert_eq!(store.pending().unwrap(), vec![(first, b"1".to_vec())]);
            Outbox::remove(&store, first).unwrap();
            Outbox::flush(&store).unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert!(store.is_empty().unwrap());
        assert!(store.push(b"3").unwrap() > last);
    }

    #[test]
    fn a_second_open_of_a_held_database_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let _held = SledStore::open(dir.path()).unwrap();
        assert!(matches!(
            SledStore::open(dir.path()),
            Err(StoreError::Backend(_))
        ));
    }

    #[test]
    fn a_corrupt_outbox_key_is_reported_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.outbox.insert(b"short", b"x".as_slice()).unwrap();
            Outbox::flush(&store).unwrap();
        }
        assert!(matches!(
            SledStore::open(dir.path()),
            Err(StoreError::Corrupt { tree: OUTBOX, .. })
        ));
    }
}

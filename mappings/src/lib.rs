//! stox-mappings: persistent gateway state behind small synchronous traits.
//!
//! Two concerns live here today:
//!
//! - [`MappingStore`]: the operator-provisioned address table, one bare JID ⇄ one SIP
//!   address-of-record (the "mapping store / same domain" scheme of STOX-MAPPING.md §1, as
//!   Kamailio's gwmap does it), used before the RFC 7247 §5 algorithmic mapping.
//! - [`Outbox`]: a durable FIFO of messages not yet handed over (while the XMPP link is down,
//!   and for in-flight messages so that a crash or a restart does not lose them).
//! - [`TableStore`]: records per [`Table`]: presence authorizations, subscriptions in both
//!   directions and published state (RFC 8048, RFC 3903); the registrar's users, bindings and
//!   held messages (RFC 3261 §10); the external SIP accounts of XMPP users (issue 5).
//!
//! Backends: [`SledStore`] (embedded, on disk, one sled `Tree` per concern) and [`MemoryStore`]
//! (tests, and deployments that accept losing state). The traits are deliberately small and
//! synchronous so that a shared backend (ARCHITECTURE.md "Scale beyond one machine") is one new
//! file implementing them.
//!
//! # Key normalization
//!
//! Lookups are by normalized key, while the stored [`Mapping`] keeps the strings it was given
//! (trimmed). See [`normalize_jid`] and [`normalize_sip`]:
//!
//! - JID (RFC 7622 §3): surrounding whitespace trimmed; the localpart and the domainpart
//!   lowercased (the domainpart is case-insensitive, §3.2; the localpart profile
//!   `UsernameCaseMapped` case-maps it, §3.3); a resourcepart, if any, is kept as is.
//! - SIP URI (RFC 3261 §19.1.4): surrounding whitespace trimmed; the scheme and the host
//!   lowercased; the user part, port, parameters and headers kept as is (the user part is
//!   case-sensitive).
//!
//! This is not full PRECIS or URI canonicalization: it is enough that `Alice@LocalHost` and
//! `alice@localhost`, or `SIP:bob@PBX.example` and `sip:bob@pbx.example`, find the same row.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod memory;
mod sled_store;

pub use memory::MemoryStore;
pub use sled_store::SledStore;

/// One provisioned address pair: the bare JID `jid` is the SIP address-of-record `sip`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// Bare JID (`local@domain`, no resource).
    pub jid: String,
    /// SIP address-of-record, as a URI string (`sip:user@host`).
    pub sip: String,
    /// When the mapping was created, in seconds since the Unix epoch.
    pub created_unix: u64,
}

/// Errors from a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, a lock held by another process, corruption it detected).
    #[error("storage backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A stored record could not be decoded (written by an incompatible version, or damaged).
    #[error("corrupt record in {tree}: {reason}")]
    Corrupt {
        /// Which table the record was read from.
        tree: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// A key was empty after normalization (a mapping needs both a JID and a SIP URI).
    #[error("empty {0} key")]
    EmptyKey(&'static str),
}

/// The address mapping table: one JID ⇄ one SIP URI, looked up either way.
pub trait MappingStore: Send + Sync {
    /// Stores `m` and makes it durable before returning.
    ///
    /// A JID maps to one SIP URI and a SIP URI to one JID: if `m.jid` or `m.sip` already belongs
    /// to another pair, that pair is removed entirely (both of its lookups). Returns the pair
    /// this JID held before, or else the pair this SIP URI held before.
    fn put(&self, m: &Mapping) -> Result<Option<Mapping>, StoreError>;
    /// The mapping of this JID, if any (normalized lookup).
    fn by_jid(&self, jid: &str) -> Result<Option<Mapping>, StoreError>;
    /// The mapping of this SIP URI, if any (normalized lookup).
    fn by_sip(&self, sip: &str) -> Result<Option<Mapping>, StoreError>;
    /// Removes the mapping of this JID (both lookups), durably; returns it if it existed.
    fn remove_jid(&self, jid: &str) -> Result<Option<Mapping>, StoreError>;
    /// Every mapping, ordered by normalized JID.
    fn list(&self) -> Result<Vec<Mapping>, StoreError>;
}

/// Durable FIFO of messages not yet handed over (used while the XMPP link is down, and for
/// in-flight messages so a crash or restart does not lose them).
pub trait Outbox: Send + Sync {
    /// Appends `item`; returns its sequence number, strictly increasing across restarts.
    /// Not durable until [`Outbox::flush`] returns.
    fn push(&self, item: &[u8]) -> Result<u64, StoreError>;
    /// Removes the item `seq` (a no-op if it is not there).
    fn remove(&self, seq: u64) -> Result<(), StoreError>;
    /// Every item not yet removed, in `seq` order.
    fn pending(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// How many items are pending.
    fn len(&self) -> Result<usize, StoreError>;
    /// Whether no item is pending.
    fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
    /// Durability point: after it returns, everything pushed survives `kill -9`.
    fn flush(&self) -> Result<(), StoreError>;
}

/// The record tables: presence state (issue 4, RFC 8048) and the registrar's state (issue 5):
/// what survives a restart so that nobody has to subscribe or register again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Long-lived authorizations (who may see whom), RFC 8048 §5.
    Authorizations,
    /// Subscriptions stox holds toward SIP contacts for XMPP users (its SUBSCRIBE dialogs).
    Watches,
    /// Subscriptions SIP watchers hold toward XMPP users (stox notifies them).
    Watchers,
    /// Presence SIP UAs PUBLISHed to stox (RFC 3903), by entity.
    Published,
    /// The SIP users of stox's own registrar and their credentials (digest HA1s).
    SipUsers,
    /// Registrations of those users: AOR → contacts (RFC 3261 §10.3).
    Bindings,
    /// Messages for a SIP user with no registered contact, delivered when one registers.
    Held,
    /// External SIP accounts of XMPP users (issue 5): stox registers them at their
    /// providers. Key `bare JID|account id`.
    Accounts,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 8] = [
        Table::Authorizations,
        Table::Watches,
        Table::Watchers,
        Table::Published,
        Table::SipUsers,
        Table::Bindings,
        Table::Held,
        Table::Accounts,
    ];

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Authorizations => "authorizations",
            Table::Watches => "watches",
            Table::Watchers => "watchers",
            Table::Published => "published",
            Table::SipUsers => "sip_users",
            Table::Bindings => "bindings",
            Table::Held => "held",
            Table::Accounts => "accounts",
        }
    }

    /// The sled tree that holds it (`presence.<name>`, `registrar.<name>` or
    /// `accounts.accounts`).
    pub fn tree(self) -> String {
        match self {
            Table::Authorizations | Table::Watches | Table::Watchers | Table::Published => {
                format!("presence.{}", self.name())
            }
            Table::SipUsers | Table::Bindings | Table::Held => {
                format!("registrar.{}", self.name())
            }
            Table::Accounts => "accounts.accounts".to_string(),
        }
    }
}

/// Records: opaque values (the gateway serializes them) under string keys, one namespace per
/// [`Table`]. Writes are durable after [`TableStore::flush`] (the gateway's event loop calls
/// it once per batch of work that wrote, before any answer leaves), and within the backend's
/// own flush interval otherwise (sled: 500 ms).
pub trait TableStore: Send + Sync {
    /// Stores `value` under `key`, replacing what was there.
    fn put(&self, table: Table, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// The value under `key`, if any.
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Removes `key`; whether it was there.
    fn remove(&self, table: Table, key: &str) -> Result<bool, StoreError>;
    /// Every record of a table, ordered by key.
    fn list(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Every record of a table whose key starts with `prefix`, ordered by key.
    fn list_prefix(&self, table: Table, prefix: &str)
        -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Durability point: after it returns, every write before it survives `kill -9`.
    fn flush(&self) -> Result<(), StoreError>;
}

/// All of the gateway's persistent state, one handle per concern.
#[derive(Clone)]
pub struct Store {
    /// The address mapping table.
    pub mappings: Arc<dyn MappingStore>,
    /// Messages not yet handed over.
    pub outbox: Arc<dyn Outbox>,
    /// Presence authorizations, subscriptions and published state.
    pub tables: Arc<dyn TableStore>,
}

impl Store {
    /// Opens (or creates) the sled database at `path`. A database is held by one process at a
    /// time: opening one that another process holds fails with [`StoreError::Backend`].
    pub fn open_sled(path: &std::path::Path) -> Result<Store, StoreError> {
        let store = Arc::new(SledStore::open(path)?);
        Ok(Store {
            mappings: store.clone(),
            outbox: store.clone(),
            tables: store,
        })
    }

    /// A store that lives in memory only.
    pub fn memory() -> Store {
        let store = Arc::new(MemoryStore::new());
        Store {
            mappings: store.clone(),
            outbox: store.clone(),
            tables: store,
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// The lookup key of a JID: trimmed, localpart and domainpart lowercased, resourcepart kept.
///
/// ```
/// assert_eq!(stox_mappings::normalize_jid(" Alice@LocalHost "), "alice@localhost");
/// assert_eq!(stox_mappings::normalize_jid("a@B/Res"), "a@b/Res");
/// ```
pub fn normalize_jid(jid: &str) -> String {
    let jid = jid.trim();
    // RFC 7622 §3.1: the resourcepart starts at the first '/'; the localpart ends at the
    // first '@' before it.
    let (bare, resource) = match jid.find('/') {
        Some(i) => jid.split_at(i),
        None => (jid, ""),
    };
    let mut key = bare.to_lowercase();
    key.push_str(resource);
    key
}

/// The lookup key of a SIP URI: trimmed, scheme and host lowercased, everything else kept.
///
/// ```
/// assert_eq!(
///     stox_mappings::normalize_sip(" SIP:Bob@PBX.Example:5060;transport=TCP "),
///     "sip:Bob@pbx.example:5060;transport=TCP"
/// );
/// ```
pub fn normalize_sip(sip: &str) -> String {
    let sip = sip.trim();
    let (scheme, rest) = match sip.find(':') {
        Some(i) => (&sip[..i], &sip[i + 1..]),
        None => return sip.to_owned(),
    };
    // RFC 3261 §25.1: neither the userinfo (which may contain ';') nor parameters may hold a
    // raw '@', so the first '@' before the headers ends the userinfo.
    let before_headers = rest.find('?').unwrap_or(rest.len());
    let (userinfo, host_and_tail) = match rest[..before_headers].find('@') {
        Some(i) => rest.split_at(i + 1),
        None => ("", rest),
    };
    // The host ends at the port colon (an IPv6 reference is bracketed), ';' or '?'.
    let host_end = if host_and_tail.starts_with('[') {
        host_and_tail
            .find(']')
            .map_or(host_and_tail.len(), |i| i + 1)
    } else {
        host_and_tail
            .find([':', ';', '?'])
            .unwrap_or(host_and_tail.len())
    };
    let (host, tail) = host_and_tail.split_at(host_end);
    let mut key = String::with_capacity(sip.len());
    key.push_str(&scheme.to_ascii_lowercase());
    key.push(':');
    key.push_str(userinfo);
    key.push_str(&host.to_lowercase());
    key.push_str(tail);
    key
}

/// Checks that a mapping has both keys, and returns them normalized `(jid, sip)`.
pub(crate) fn mapping_keys(m: &Mapping) -> Result<(String, String), StoreError> {
    let jid = normalize_jid(&m.jid);
    let sip = normalize_sip(&m.sip);
    if jid.is_empty() {
        return Err(StoreError::EmptyKey("jid"));
    }
    if sip.is_empty() {
        return Err(StoreError::EmptyKey("sip"));
    }
    Ok((jid, sip))
}

/// The mapping as stored: strings trimmed.
pub(crate) fn trimmed(m: &Mapping) -> Mapping {
    Mapping {
        jid: m.jid.trim().to_owned(),
        sip: m.sip.trim().to_owned(),
        created_unix: m.created_unix,
    }
}

#[cfg(test)]
mod battery;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jid_keys_fold_case_of_local_and_domain_only() {
        assert_eq!(normalize_jid("Alice@LocalHost"), "alice@localhost");
        assert_eq!(normalize_jid("\talice@localhost\n"), "alice@localhost");
        assert_eq!(normalize_jid("LocalHost"), "localhost");
        assert_eq!(normalize_jid("a@H/Mobile"), "a@h/Mobile");
        assert_eq!(normalize_jid("a@H/x/Y"), "a@h/x/Y");
        assert_eq!(normalize_jid("ÉLISE@Exämple.org"), "élise@exämple.org");
    }

    #[test]
    fn sip_keys_fold_case_of_scheme_and_host_only() {
        assert_eq!(normalize_sip("SIP:Bob@PBX.example"), "sip:Bob@pbx.example");
        assert_eq!(
            normalize_sip("sip:Bob@PBX.example:5070;Transport=TCP?Subject=Hi"),
            "sip:Bob@pbx.example:5070;Transport=TCP?Subject=Hi"
        );
        assert_eq!(normalize_sip("sips:Bob:Pw@HOST"), "sips:Bob:Pw@host");
        assert_eq!(
            normalize_sip("sip:Alice;Day=Tue@HOST;Lr"),
            "sip:Alice;Day=Tue@host;Lr"
        );
        assert_eq!(
            normalize_sip("sip:Bob@[2001:DB8::1]:5060"),
            "sip:Bob@[2001:db8::1]:5060"
        );
        assert_eq!(
            normalize_sip("sip:PBX.Example;maddr=X"),
            "sip:pbx.example;maddr=X"
        );
        assert_eq!(
            normalize_sip("sip:bob%40Example.NET@Sip.Localhost"),
            "sip:bob%40Example.NET@sip.localhost"
        );
        assert_eq!(normalize_sip("  "), "");
        assert_eq!(normalize_sip("NoScheme"), "NoScheme");
    }

    #[test]
    fn mapping_keys_reject_empty_sides() {
        let m = Mapping {
            jid: " ".into(),
            sip: "sip:a@b".into(),
            created_unix: 0,
        };
        assert!(matches!(mapping_keys(&m), Err(StoreError::EmptyKey("jid"))));
        let m = Mapping {
            jid: "a@b".into(),
            sip: "".into(),
            created_unix: 0,
        };
        assert!(matches!(mapping_keys(&m), Err(StoreError::EmptyKey("sip"))));
    }
}

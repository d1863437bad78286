//! External SIP accounts of XMPP users (issue 5, "multiple accounts"): stox registers each
//! account at its provider as a SIP UA would (RFC 3261 §10.2, Digest RFC 7616 / RFC 8760),
//! delivers what arrives at the account to its XMPP user, and sends what the user writes
//! through the gateway with the account's identity.
//!
//! # The record
//!
//! An account belongs to a bare JID and has an id unique for that JID (`[a-z0-9-]`, 1 to 32;
//! table `accounts`, key `jid|id`): the registrar URI (`sip:provider.example`), the user
//! (the AOR is `sip:user@<registrar host[:port]>`), the authentication user (the user when
//! absent), the password, the transport (`udp`, `tcp` or `tls`), an outbound proxy, a display name,
//! the requested expiry, and whether it is the user's default account.
//!
//! **The password is stored in clear** in stox's store: the Digest realm, and so the `HA1`,
//! are known only when the provider challenges. It is never returned by the admin API or the
//! XMPP commands; protect the store directory like a credential file.
//!
//! # Registration (RFC 3261 §10.2)
//!
//! | event | what stox does |
//! |---|---|
//! | account added or changed, stox started | `REGISTER` at once: Request-URI the registrar, From/To the AOR, `Contact: <sip:acct-<hash>@<stox's SIP address>>` (the hash names the account), `Expires` the requested expiry |
//! | `401` / `407` | the same Call-ID, CSeq + 1, `Authorization` / `Proxy-Authorization` for the challenge (SHA-256 preferred, else MD5; `qop=auth` with `cnonce` and `nc`) |
//! | `401` / `407` again, not `stale` | the password is wrong: failed, retried only after the backoff |
//! | `2xx` | registered until the expiry granted (our Contact's `expires`, else `Expires`, else what was asked); refreshed at `max(expiry/2, expiry − 60 s)` |
//! | `423` | asks again with the response's `Min-Expires` (once per larger value) |
//! | any other failure, a timeout | failed; retried after a capped exponential backoff (`[accounts] backoff_initial_secs`, default [`BACKOFF_MIN`], doubling to `backoff_max_secs`, default [`BACKOFF_MAX`]) |
//! | account removed | its presence subscriptions end (`SUBSCRIBE` `Expires: 0` for watches through it, `NOTIFY` `terminated;reason=noresource` to watchers at its Contact, `Gateway::end_account_subscriptions`), then `REGISTER` with `Expires: 0` for our Contact (answering one challenge) |
//!
//! Her presence is PUBLISHed at each registered account's provider as the account's AOR
//! (RFC 3903; `accounts/publish.rs`): `SIP-ETag` kept and refreshed with `SIP-If-Match`,
//! `412` starts over, `Expires: 0` when she is unavailable and before the account is
//! removed.
//!
//! Requests go to the outbound proxy when there is one, else to the registrar's (REGISTER)
//! or the Request-URI's (other requests) host.
//!
//! # Routing (the address contract, extended)
//!
//! - A request whose Request-URI user part is an account's Contact user (`acct-<hash>`)
//!   goes to the account's XMPP user; its sender is the usual JID at `C` of the SIP From
//!   (`carol\40pbx.example@C`), with `#<id>` appended to the local part when the account is
//!   not the user's default (so a reply leaves through the same account).
//! - What an XMPP user with accounts sends to a foreign SIP address through `C` leaves
//!   through his default account: From is the account's AOR (with its display name), the
//!   next hop its outbound proxy; a `401`/`407` is answered once with its credentials.
//! - `<target>#<id>@C` (e.g. `carol\40pbx.example#work@C`) picks the account `id` instead
//!   of the default; a `#<id>` that names none of the sender's accounts is left alone.
//! - SIP users of `C` are reached directly, never through an account.
//! - Presence (`core/presence/bridge.rs`): a watch of a SIP contact SUBSCRIBEs through the
//!   account like a message (From the AOR, the account's Contact, its outbound proxy, a
//!   `401`/`407` answered once per request); a SUBSCRIBE at an account's Contact watches its
//!   user, and the PIDF sent to that watcher names the account's AOR, not the XMPP address.
//!
//! # Status
//!
//! Each account's state (`registering`, `registered` with its expiry, `failed` with the last
//! error, `idle`) is listed by the admin API and the XMPP commands, counted in the gauge
//! `stox_accounts{state}`, and told to the user as a `headline` message from `C` whenever
//! it changes between registered and failed.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use metrics::gauge;
use serde::{Deserialize, Serialize};
use stox_mappings::Table;
use stox_sip::digest::{self, Algorithm, Challenge};
use stox_sip::uri::{Scheme, SipUri};
use tracing::{debug, info, warn};
use xmpp_parsers::minidom::Element;

use super::{Gateway, Output, SendFailure, TxId};
use crate::sipmsg::{header_in, header_values, uri_of_name_addr, DialogRef, OutRequest};
use crate::sipmsg::{SipResponse, Transport};

/// The first wait after a failed registration.
pub const BACKOFF_MIN: Duration = Duration::from_secs(30);
/// The longest wait between two failed registrations.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1800);
/// The expiry asked for when the record names none.
pub const DEFAULT_EXPIRES: u32 = 3600;
/// The shortest expiry an account may ask for (default of `[accounts] min_expires`).
pub const MIN_EXPIRES: u32 = 60;
/// The longest expiry an account may ask for (default of `[accounts] max_expires`).
pub const MAX_EXPIRES: u32 = 86_400;

/// `[accounts]` settings the core uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountSettings {
    /// The first wait after a failed registration.
    pub backoff_min: Duration,
    /// The longest wait between two failed registrations.
    pub backoff_max: Duration,
    /// The shortest expiry an account may ask for.
    pub min_expires: u32,
    /// The longest expiry an account may ask for (and accept in a `423`'s `Min-Expires`).
    pub max_expires: u32,
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            backoff_min: BACKOFF_MIN,
            backoff_max: BACKOFF_MAX,
            min_expires: MIN_EXPIRES,
            max_expires: MAX_EXPIRES,
        }
    }
}

impl AccountSettings {
    /// The backoff after `failures` failures in a row: `backoff_min` doubling up to
    /// `backoff_max`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(16);
        self.backoff_min
            .saturating_mul(1u32 << shift)
            .min(self.backoff_max)
    }
}
/// The Contact user part prefix that names an account.
pub const CONTACT_PREFIX: &str = "acct-";

fn default_expires() -> u32 {
    DEFAULT_EXPIRES
}

/// The transport an account's requests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountTransport {
    /// UDP (TCP when a request is too large for it).
    #[default]
    Udp,
    /// TCP.
    Tcp,
    /// TLS (RFC 3261 §26), verified against `[sip.tls] ca`: every request of the account
    /// leaves over TLS, and its Contact names stox's `tls:` listener.
    Tls,
}

/// An external SIP account of an XMPP user (table `accounts`, key `jid|id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// The owner, a bare JID (lowercase).
    pub jid: String,
    /// Unique per owner: `[a-z0-9-]`, 1 to 32.
    pub id: String,
    /// The registrar, e.g. `sip:provider.example` (its host is the AOR's domain).
    pub registrar: String,
    /// The user part of the AOR.
    pub user: String,
    /// The Digest user name, when it is not `user`.
    #[serde(default)]
    pub auth_user: Option<String>,
    /// The password, in clear (see the module doc).
    pub password: String,
    /// `udp`, `tcp` or `tls`.
    #[serde(default)]
    pub transport: AccountTransport,
    /// Where every request of the account goes first, e.g. `sip:proxy.example:5060`.
    #[serde(default)]
    pub outbound_proxy: Option<String>,
    /// The display name of From.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The user's default account (at most one per owner).
    #[serde(default)]
    pub default: bool,
    /// The registration expiry asked for, seconds.
    #[serde(default = "default_expires")]
    pub expires: u32,
    /// When it was created (Unix seconds).
    #[serde(default)]
    pub created_unix: u64,
}

/// Why an account record is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// A field is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// No such account.
    #[error("no account {id} for {jid}")]
    NotFound {
        /// The owner.
        jid: String,
        /// The id.
        id: String,
    },
    /// The owner has an account with this id already.
    #[error("{jid} has an account {id} already")]
    Exists {
        /// The owner.
        jid: String,
        /// The id.
        id: String,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

/// Whether an account id is acceptable: `[a-z0-9-]`, 1 to 32.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl AccountRecord {
    /// The store key, `jid|id`.
    pub fn key(&self) -> String {
        format!("{}|{}", self.jid, self.id)
    }

    /// The registrar as a URI.
    pub fn registrar_uri(&self) -> Result<SipUri, AccountError> {
        let u: SipUri =
            self.registrar.trim().parse().map_err(|e| {
                AccountError::Invalid(format!("registrar {:?}: {e}", self.registrar))
            })?;
        if u.scheme != Scheme::Sip || u.user.is_some() {
            return Err(AccountError::Invalid(format!(
                "registrar {:?}: a sip: URI without a user part",
                self.registrar
            )));
        }
        Ok(u)
    }

    /// The address-of-record, `sip:user@<registrar host[:port]>`.
    pub fn aor(&self) -> Result<SipUri, AccountError> {
        let r = self.registrar_uri()?;
        format!("sip:{}@{}", self.user, r.host_port())
            .parse()
            .map_err(|e| AccountError::Invalid(format!("user {:?}: {e}", self.user)))
    }

    /// The From of the account's requests: the AOR, with the display name if any.
    pub fn from_name_addr(&self) -> Result<String, AccountError> {
        let aor = self.aor()?;
        Ok(match self.display_name.as_deref().map(str::trim) {
            Some(d) if !d.is_empty() => {
                format!("\"{}\" <{aor}>", d.replace(['"', '\\', '\r', '\n'], ""))
            }
            _ => aor.to_string(),
        })
    }

    /// Whether the account's requests leave over TLS only: its transport is `tls`, or its
    /// outbound proxy says `;transport=tls` (RFC 3261 §26.2.2: never downgraded).
    pub fn tls(&self) -> bool {
        self.transport == AccountTransport::Tls
            || self
                .outbound_proxy
                .as_deref()
                .and_then(|p| p.parse::<SipUri>().ok())
                .and_then(|u| u.param("transport").map(|t| t.eq_ignore_ascii_case("tls")))
                .unwrap_or(false)
    }

    /// The Digest user name.
    pub fn auth_user(&self) -> &str {
        self.auth_user
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or(&self.user)
    }

    /// The user part of stox's Contact for this account: `acct-` and 16 hex digits of
    /// SHA-256 over the key (stable across restarts, names no one).
    pub fn contact_user(&self) -> String {
        let h = Algorithm::Sha256.hex(self.key().as_bytes());
        format!("{CONTACT_PREFIX}{}", &h[..16])
    }

    /// Checks every field (what the admin API and the XMPP commands accept), with the
    /// default expiry range.
    pub fn validate(&self) -> Result<(), AccountError> {
        self.validate_in(&AccountSettings::default())
    }

    /// Checks every field, the expiry against `settings`' range.
    pub fn validate_in(&self, settings: &AccountSettings) -> Result<(), AccountError> {
        if !valid_id(&self.id) {
            return Err(AccountError::Invalid(format!(
                "id {:?}: 1 to 32 of a-z, 0-9 and -",
                self.id
            )));
        }
        let jid: xmpp_parsers::jid::BareJid = self
            .jid
            .parse()
            .map_err(|e| AccountError::Invalid(format!("jid {:?}: {e}", self.jid)))?;
        if jid.node().is_none() {
            return Err(AccountError::Invalid(format!(
                "jid {:?}: a user's bare JID",
                self.jid
            )));
        }
        if !crate::core::registrar::valid_user(&self.user) {
            return Err(AccountError::Invalid(format!(
                "user {:?}: 1 to 64 of letters, digits and -._~!$&'()*+,;=",
                self.user
            )));
        }
        if let Some(a) = &self.auth_user {
            if a.is_empty() || a.len() > 128 || a.chars().any(char::is_control) {
                return Err(AccountError::Invalid(format!("auth_user {a:?}")));
            }
        }
        if self.password.is_empty()
            || self.password.len() > 128
            || self.password.chars().any(char::is_control)
        {
            return Err(AccountError::Invalid(
                "password: 1 to 128 characters, no control characters".into(),
            ));
        }
        self.aor()?;
        if let Some(p) = &self.outbound_proxy {
            let u: SipUri = p
                .parse()
                .map_err(|e| AccountError::Invalid(format!("outbound_proxy {p:?}: {e}")))?;
            if u.scheme != Scheme::Sip {
                return Err(AccountError::Invalid(format!(
                    "outbound_proxy {p:?}: a sip: URI"
                )));
            }
        }
        if let Some(d) = &self.display_name {
            if d.len() > 128 || d.chars().any(char::is_control) {
                return Err(AccountError::Invalid(format!("display_name {d:?}")));
            }
        }
        if !(settings.min_expires..=settings.max_expires).contains(&self.expires) {
            return Err(AccountError::Invalid(format!(
                "expires {}: {} to {}",
                self.expires, settings.min_expires, settings.max_expires
            )));
        }
        Ok(())
    }
}

/// Where an account's registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegState {
    /// A REGISTER is out (first one, or after a challenge).
    Registering,
    /// Registered until then.
    Registered {
        /// When the binding expires.
        expires_at: Instant,
    },
    /// The last attempt failed; the next one is due at `next`.
    Failed {
        /// What went wrong.
        error: String,
    },
}

impl RegState {
    /// The name the API and the metric use.
    pub fn name(&self) -> &'static str {
        match self {
            RegState::Registering => "registering",
            RegState::Registered { .. } => "registered",
            RegState::Failed { .. } => "failed",
        }
    }
}

/// An account as the API shows it (never the password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountView {
    /// The owner's bare JID.
    pub jid: String,
    /// The account id.
    pub id: String,
    /// The AOR, `sip:user@provider`.
    pub aor: String,
    /// The registrar URI.
    pub registrar: String,
    /// The AOR's user part.
    pub user: String,
    /// The Digest user name.
    pub auth_user: String,
    /// `udp`, `tcp` or `tls`.
    pub transport: AccountTransport,
    /// The outbound proxy.
    pub outbound_proxy: Option<String>,
    /// The display name.
    pub display_name: Option<String>,
    /// The owner's default account.
    pub default: bool,
    /// The expiry asked for.
    pub expires: u32,
    /// `registering`, `registered` or `failed`.
    pub state: String,
    /// Seconds until the registration expires (when registered).
    pub expires_in: Option<u64>,
    /// The last error (when failed).
    pub last_error: Option<String>,
    /// Seconds until the next REGISTER (a refresh or a retry).
    pub next_register_in: Option<u64>,
    /// stox's Contact user part for this account.
    pub contact_user: String,
    /// Failed attempts in a row.
    pub failures: u32,
}

/// What an outstanding client transaction of this module is for.
#[derive(Debug, Clone)]
pub(in crate::core) enum AccountTx {
    /// A REGISTER of a live account.
    Register(String),
    /// A last request of a removed (or readdressed) account: its unregistration, or the
    /// end of a presence subscription made through it (RFC 6665 §4.1.2.3). The record and
    /// transport are kept to answer one challenge (`true` once answered).
    Farewell(Box<(AccountRecord, OutRequest, Transport)>, bool),
    /// A PUBLISH of the user's presence (RFC 3903, `accounts/publish.rs`).
    Publish(Box<publish::PublishTx>),
}

struct Account {
    rec: AccountRecord,
    call_id: String,
    from_tag: String,
    cseq: u32,
    state: RegState,
    /// The outstanding REGISTER.
    tx: Option<TxId>,
    /// When the next REGISTER is due (when none is out).
    next: Option<Instant>,
    failures: u32,
    /// The latest challenge, answered in every REGISTER until a new one comes, and its
    /// nonce count.
    challenge: Option<(Challenge, bool)>,
    nc: u32,
    /// The outstanding REGISTER carries credentials for the current challenge.
    sent_credentials: bool,
    /// Challenges answered since the last final outcome (a registrar that answers every
    /// REGISTER with a fresh `stale=true` challenge must not get a tight loop).
    auth_rounds: u32,
    /// The expiry asked for (raised by a 423).
    expires: u32,
    /// Told the user about this state (registered/failed) already.
    told: Option<&'static str>,
    /// The user's presence published at the provider (RFC 3903).
    publication: publish::Publication,
}

/// Every account and the transactions about them.
#[derive(Default)]
pub(in crate::core) struct AccountsState {
    accounts: HashMap<String, Account>,
    /// Contact user part → account key.
    by_contact: HashMap<String, String>,
    pub(in crate::core) txs: HashMap<TxId, AccountTx>,
    /// Users with accounts → their available resources' last presence (to publish).
    presence: HashMap<String, BTreeMap<String, Element>>,
}

impl AccountsState {
    /// When the next REGISTER or PUBLISH is due.
    pub(in crate::core) fn next_timeout(&self) -> Option<Instant> {
        let register = self
            .accounts
            .values()
            .filter(|a| a.tx.is_none())
            .filter_map(|a| a.next);
        let publish = self
            .accounts
            .values()
            .filter(|a| a.publication.tx.is_none())
            .filter_map(|a| a.publication.next);
        register.chain(publish).min()
    }
}

/// The challenge to answer among a 401/407's headers: SHA-256 first (RFC 8760 §2.4), else
/// MD5; `None` when none is usable.
fn pick_challenge(resp: &SipResponse) -> Option<(Challenge, bool)> {
    let (name, proxy) = if resp.code == 407 {
        ("Proxy-Authenticate", true)
    } else {
        ("WWW-Authenticate", false)
    };
    let mut all: Vec<Challenge> = resp
        .headers
        .iter()
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .filter_map(|(_, v)| digest::parse_challenge(v).ok())
        .collect();
    all.sort_by_key(|c| match c.algorithm {
        Algorithm::Sha256 => 0,
        Algorithm::Md5 => 1,
    });
    all.into_iter().next().map(|c| (c, proxy))
}

/// The backoff after `failures` failures in a row, with the default settings.
pub fn backoff(failures: u32) -> Duration {
    AccountSettings::default().backoff(failures)
}

/// When to refresh a registration granted for `secs`: `max(secs/2, secs − 60)`.
pub fn refresh_after(secs: u32) -> Duration {
    let full = Duration::from_secs(u64::from(secs));
    (full / 2)
        .max(full.saturating_sub(Duration::from_secs(60)))
        .max(Duration::from_millis(500))
}

/// A client nonce from a counter and a seed (no randomness inside the core).
fn cnonce(seed: u64, n: u64) -> String {
    Algorithm::Md5.hex(format!("{seed:x}:{n}").as_bytes())[..16].to_string()
}

impl Gateway {
    fn view(&self, now: Instant, a: &Account) -> AccountView {
        let r = &a.rec;
        AccountView {
            jid: r.jid.clone(),
            id: r.id.clone(),
            aor: r.aor().map(|u| u.to_string()).unwrap_or_default(),
            registrar: r.registrar.clone(),
            user: r.user.clone(),
            auth_user: r.auth_user().to_string(),
            transport: r.transport,
            outbound_proxy: r.outbound_proxy.clone(),
            display_name: r.display_name.clone(),
            default: r.default,
            expires: r.expires,
            state: a.state.name().to_string(),
            expires_in: match a.state {
                RegState::Registered { expires_at } => {
                    Some(expires_at.saturating_duration_since(now).as_secs())
                }
                _ => None,
            },
            last_error: match &a.state {
                RegState::Failed { error } => Some(error.clone()),
                _ => None,
            },
            next_register_in: a
                .next
                .filter(|_| a.tx.is_none())
                .map(|n| n.saturating_duration_since(now).as_secs()),
            contact_user: r.contact_user(),
            failures: a.failures,
        }
    }

    /// Every account (of `jid` when given), ordered by owner and id.
    pub fn accounts(&self, now: Instant, jid: Option<&str>) -> Vec<AccountView> {
        let jid = jid.map(stox_mappings::normalize_jid);
        let mut v: Vec<AccountView> = self
            .accounts
            .accounts
            .values()
            .filter(|a| jid.as_deref().is_none_or(|j| a.rec.jid == j))
            .map(|a| self.view(now, a))
            .collect();
        v.sort_by(|a, b| (&a.jid, &a.id).cmp(&(&b.jid, &b.id)));
        v
    }

    /// One account.
    pub fn account(&self, now: Instant, jid: &str, id: &str) -> Option<AccountView> {
        let key = format!("{}|{id}", stox_mappings::normalize_jid(jid));
        self.accounts.accounts.get(&key).map(|a| self.view(now, a))
    }

    /// The stored record of an account (the password included: for the core and updates
    /// only, never shown).
    pub fn account_record(&self, jid: &str, id: &str) -> Option<AccountRecord> {
        let key = format!("{}|{id}", stox_mappings::normalize_jid(jid));
        self.accounts.accounts.get(&key).map(|a| a.rec.clone())
    }

    /// Creates or replaces an account, stores it and registers it at once. The first account
    /// of a user becomes his default; a new default clears the old one.
    pub fn put_account(
        &mut self,
        now: Instant,
        mut rec: AccountRecord,
    ) -> Result<AccountView, AccountError> {
        rec.jid = stox_mappings::normalize_jid(&rec.jid);
        rec.registrar = rec.registrar.trim().to_string();
        rec.validate_in(&self.settings.accounts)?;
        // The provider reaches the account's Contact over TLS too: never at a plain one.
        if rec.tls() && self.settings.contacts.tls.is_none() {
            return Err(AccountError::Invalid(
                "transport tls: stox has no `tls:` listener in [sip] listen for the account's Contact"
                    .into(),
            ));
        }
        let key = rec.key();
        let others: Vec<String> = self
            .accounts
            .accounts
            .values()
            .filter(|a| a.rec.jid == rec.jid && a.rec.id != rec.id)
            .map(|a| a.rec.key())
            .collect();
        if others.is_empty() {
            rec.default = true;
        } else if rec.default {
            for k in &others {
                self.set_default_flag(k, false);
            }
        } else if !others
            .iter()
            .any(|k| self.accounts.accounts.get(k).is_some_and(|a| a.rec.default))
        {
            rec.default = true;
        }
        if rec.created_unix == 0 {
            rec.created_unix = self.unix_of(now);
        }
        let bytes = serde_json::to_vec(&rec).map_err(|e| AccountError::Store(e.to_string()))?;
        self.tables
            .put(Table::Accounts, &key, &bytes)
            .map_err(|e| AccountError::Store(e.to_string()))?;
        self.tables_dirty.set(true);
        // A changed account unregisters its old binding first when the AOR or registrar
        // changed; otherwise the next REGISTER simply refreshes it.
        let mut carried = None;
        if let Some(mut old) = self.accounts.accounts.remove(&key) {
            self.accounts.by_contact.remove(&old.rec.contact_user());
            if old.rec.aor() != rec.aor() || old.rec.registrar != rec.registrar {
                // The publication and subscriptions were made with the old identity: they
                // end with it (RFC 3903 §4.4, RFC 6665).
                self.unpublish_account(&old);
                self.end_account_subscriptions(&old.rec);
                self.unregister(old);
            } else {
                // The same AOR: its publication goes on (refreshed with its entity-tag).
                carried = Some(std::mem::take(&mut old.publication));
            }
        }
        info!(jid = %rec.jid, id = %rec.id, aor = %rec.aor().map(|a| a.to_string()).unwrap_or_default(), "account stored");
        self.add_account(now, rec);
        if let (Some(p), Some(a)) = (carried, self.accounts.accounts.get_mut(&key)) {
            a.publication = p;
        }
        self.account_metrics();
        let view = self
            .accounts
            .accounts
            .get(&key)
            .map(|a| self.view(now, a))
            .ok_or_else(|| AccountError::Store("account vanished".into()))?;
        Ok(view)
    }

    fn set_default_flag(&mut self, key: &str, default: bool) {
        let Some(a) = self.accounts.accounts.get_mut(key) else {
            return;
        };
        if a.rec.default == default {
            return;
        }
        a.rec.default = default;
        let rec = a.rec.clone();
        self.store_put(Table::Accounts, key, &rec);
    }

    /// Makes `id` the default account of `jid`.
    pub fn set_default_account(&mut self, jid: &str, id: &str) -> Result<(), AccountError> {
        let jid = stox_mappings::normalize_jid(jid);
        let key = format!("{jid}|{id}");
        if !self.accounts.accounts.contains_key(&key) {
            return Err(AccountError::NotFound {
                jid,
                id: id.to_string(),
            });
        }
        let keys: Vec<String> = self
            .accounts
            .accounts
            .values()
            .filter(|a| a.rec.jid == jid)
            .map(|a| a.rec.key())
            .collect();
        for k in keys {
            let d = k == key;
            self.set_default_flag(&k, d);
        }
        Ok(())
    }

    /// Removes an account: deleted from the store, unregistered at its provider. Another
    /// account of the user becomes the default if this one was.
    pub fn remove_account(&mut self, jid: &str, id: &str) -> Result<(), AccountError> {
        let jid = stox_mappings::normalize_jid(jid);
        let key = format!("{jid}|{id}");
        let Some(a) = self.accounts.accounts.remove(&key) else {
            return Err(AccountError::NotFound {
                jid,
                id: id.to_string(),
            });
        };
        self.accounts.by_contact.remove(&a.rec.contact_user());
        self.store_remove(Table::Accounts, &key);
        info!(%jid, %id, "account removed");
        if !self.accounts.accounts.values().any(|o| o.rec.jid == jid) {
            self.accounts.presence.remove(&jid);
        }
        let was_default = a.rec.default;
        // RFC 3903 §4.4: the publication is removed first; RFC 6665: the subscriptions
        // through the account end before it unregisters.
        self.unpublish_account(&a);
        self.end_account_subscriptions(&a.rec);
        self.unregister(a);
        if was_default {
            let mut rest: Vec<String> = self
                .accounts
                .accounts
                .values()
                .filter(|a| a.rec.jid == jid)
                .map(|a| a.rec.key())
                .collect();
            rest.sort();
            if let Some(k) = rest.first() {
                self.set_default_flag(k, true);
            }
        }
        self.account_metrics();
        Ok(())
    }

    fn add_account(&mut self, now: Instant, rec: AccountRecord) {
        let key = rec.key();
        let seed = self.id_seed;
        let call_id = format!("{}@stox", cnonce(seed, self.next_id + 1_000_000));
        self.next_id += 1;
        let from_tag = cnonce(seed ^ 0x5a5a, self.next_id);
        self.accounts
            .by_contact
            .insert(rec.contact_user(), key.clone());
        let expires = rec.expires;
        self.accounts.accounts.insert(
            key.clone(),
            Account {
                rec,
                call_id,
                from_tag,
                cseq: 0,
                state: RegState::Registering,
                tx: None,
                next: Some(now),
                failures: 0,
                challenge: None,
                nc: 0,
                sent_credentials: false,
                auth_rounds: 0,
                expires,
                told: None,
                publication: publish::Publication::default(),
            },
        );
        self.send_register(now, &key);
    }

    /// Brings back the stored accounts and registers them (at start).
    pub fn restore_accounts(&mut self, now: Instant) {
        let rows = match self.tables.list(Table::Accounts) {
            Ok(r) => r,
            Err(e) => return warn!(error = %e, "cannot read accounts"),
        };
        let mut n = 0;
        for (key, bytes) in rows {
            match serde_json::from_slice::<AccountRecord>(&bytes) {
                Ok(r) if r.key() == key => {
                    self.add_account(now, r);
                    n += 1;
                }
                _ => warn!(%key, "unreadable account skipped"),
            }
        }
        if n > 0 {
            info!(accounts = n, "accounts restored; registering");
        }
        self.account_metrics();
    }

    /// stox's Contact URI for an account.
    pub(in crate::core) fn account_contact(&self, rec: &AccountRecord) -> String {
        let c = &self.settings.contacts;
        let user = rec.contact_user();
        if let (true, Some(a)) = (rec.tls(), c.tls) {
            return format!("sip:{user}@{a};transport=tls");
        }
        match (rec.transport, c.tcp, c.udp) {
            (AccountTransport::Tcp, Some(a), _) => format!("sip:{user}@{a};transport=tcp"),
            (_, _, Some(a)) => format!("sip:{user}@{a}"),
            (_, Some(a), None) => format!("sip:{user}@{a};transport=tcp"),
            _ => format!("sip:{user}@{}", self.settings.component),
        }
    }

    pub(in crate::core) fn transport_of(&self, rec: &AccountRecord) -> Transport {
        if rec.tls() {
            return Transport::Tls;
        }
        match rec.transport {
            AccountTransport::Tcp => Transport::Tcp,
            AccountTransport::Tls => Transport::Tls,
            AccountTransport::Udp if self.settings.contacts.udp.is_none() => Transport::Tcp,
            AccountTransport::Udp => Transport::Udp,
        }
    }

    fn register_request(
        &self,
        rec: &AccountRecord,
        expires: u32,
        call_id: &str,
        from_tag: &str,
        cseq: u32,
    ) -> Option<OutRequest> {
        let aor = rec.aor().ok()?.to_string();
        Some(OutRequest {
            method: "REGISTER".into(),
            uri: rec.registrar_uri().ok()?.to_string(),
            from: rec.from_name_addr().ok()?,
            to: aor,
            call_id: Some(call_id.to_string()),
            headers: vec![
                ("Max-Forwards".into(), "70".into()),
                (
                    "Contact".into(),
                    format!("<{}>;expires={expires}", self.account_contact(rec)),
                ),
                ("Expires".into(), expires.to_string()),
            ],
            content_type: None,
            body: Vec::new(),
            flow: None,
            flow_only: false,
            dialog: Some(DialogRef {
                from_tag: from_tag.to_string(),
                to_tag: None,
                cseq,
                route: Vec::new(),
            }),
            next_hop: rec.outbound_proxy.clone(),
        })
    }

    /// The credentials header for a request of `rec` answering `ch`.
    fn credentials(
        &mut self,
        rec: &AccountRecord,
        ch: &(Challenge, bool),
        method: &str,
        uri: &str,
        nc: u32,
    ) -> (String, String) {
        self.next_id += 1;
        let cn = cnonce(self.id_seed, self.next_id);
        let value =
            digest::authorization(&ch.0, rec.auth_user(), &rec.password, method, uri, nc, &cn);
        let name = if ch.1 {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        (name.to_string(), value)
    }

    fn send_register(&mut self, now: Instant, key: &str) {
        let Some(a) = self.accounts.accounts.get_mut(key) else {
            return;
        };
        if a.tx.is_some() {
            return;
        }
        a.cseq += 1;
        a.next = None;
        let (rec, expires, call_id, from_tag, cseq) = (
            a.rec.clone(),
            a.expires,
            a.call_id.clone(),
            a.from_tag.clone(),
            a.cseq,
        );
        let challenge = a.challenge.clone();
        let Some(mut req) = self.register_request(&rec, expires, &call_id, &from_tag, cseq) else {
            return self.account_failed(now, key, "the account's addresses do not parse".into());
        };
        let mut sent_credentials = false;
        if let Some(ch) = challenge {
            let nc = {
                let Some(a) = self.accounts.accounts.get_mut(key) else {
                    return;
                };
                a.nc += 1;
                a.nc
            };
            let uri = req.uri.clone();
            req.headers
                .push(self.credentials(&rec, &ch, "REGISTER", &uri, nc));
            sent_credentials = true;
        }
        let tx = self.next_tx;
        self.next_tx -= 1;
        let transport = self.transport_of(&rec);
        if let Some(a) = self.accounts.accounts.get_mut(key) {
            a.tx = Some(tx);
            a.sent_credentials = sent_credentials;
            if !matches!(a.state, RegState::Registered { .. }) {
                a.state = RegState::Registering;
            }
        }
        self.accounts
            .txs
            .insert(tx, AccountTx::Register(key.to_string()));
        debug!(%key, cseq, expires, credentials = sent_credentials, "account: REGISTER");
        self.outputs
            .push_back(Output::SipSend { tx, req, transport });
    }

    /// Unregisters a removed (or readdressed) account: `Expires: 0` for our Contact.
    fn unregister(&mut self, a: Account) {
        if let Some(tx) = a.tx {
            self.accounts.txs.remove(&tx);
        }
        if a.cseq == 0 {
            return;
        }
        let Some(mut req) = self.register_request(&a.rec, 0, &a.call_id, &a.from_tag, a.cseq + 1)
        else {
            return;
        };
        let mut answered = false;
        if let Some(ch) = &a.challenge {
            let uri = req.uri.clone();
            req.headers
                .push(self.credentials(&a.rec, ch, "REGISTER", &uri, a.nc + 1));
            answered = true;
        }
        let transport = self.transport_of(&a.rec);
        self.farewell(a.rec, req, transport, answered);
    }

    /// Sends a last request of a removed account (see [`AccountTx::Farewell`]).
    pub(in crate::core) fn farewell(
        &mut self,
        rec: AccountRecord,
        req: OutRequest,
        transport: Transport,
        answered: bool,
    ) {
        let tx = self.next_tx;
        self.next_tx -= 1;
        self.accounts.txs.insert(
            tx,
            AccountTx::Farewell(Box::new((rec, req.clone(), transport)), answered),
        );
        self.outputs
            .push_back(Output::SipSend { tx, req, transport });
    }

    /// Handles the outcome of an account's transaction; `false` when `tx` is not one.
    pub(in crate::core) fn on_account_response(
        &mut self,
        now: Instant,
        tx: TxId,
        result: &Result<SipResponse, SendFailure>,
    ) -> bool {
        let Some(what) = self.accounts.txs.remove(&tx) else {
            return false;
        };
        match what {
            AccountTx::Register(key) => self.on_register_response(now, &key, tx, result),
            AccountTx::Publish(p) => self.on_publish_response(now, tx, *p, result),
            AccountTx::Farewell(boxed, answered) => match result {
                Ok(r) if matches!(r.code, 401 | 407) && !answered => {
                    let (rec, mut req, transport) = *boxed;
                    let Some(ch) = pick_challenge(r) else {
                        return true;
                    };
                    req.headers.retain(|(n, _)| {
                        !n.eq_ignore_ascii_case("Authorization")
                            && !n.eq_ignore_ascii_case("Proxy-Authorization")
                    });
                    if let Some(d) = req.dialog.as_mut() {
                        d.cseq += 1;
                    }
                    let (method, uri) = (req.method.clone(), req.uri.clone());
                    req.headers
                        .push(self.credentials(&rec, &ch, &method, &uri, 1));
                    self.farewell(rec, req, transport, true);
                }
                Ok(r) => {
                    info!(jid = %boxed.0.jid, id = %boxed.0.id, method = %boxed.1.method, code = r.code, "account: last request of a removed account answered")
                }
                Err(e) => {
                    info!(jid = %boxed.0.jid, id = %boxed.0.id, method = %boxed.1.method, error = ?e, "account: last request of a removed account failed")
                }
            },
        }
        true
    }

    fn on_register_response(
        &mut self,
        now: Instant,
        key: &str,
        tx: TxId,
        result: &Result<SipResponse, SendFailure>,
    ) {
        let contact = match self.accounts.accounts.get(key) {
            Some(a) if a.tx == Some(tx) => self.account_contact(&a.rec),
            _ => return, // an answer to a REGISTER of an account since changed
        };
        if let Some(a) = self.accounts.accounts.get_mut(key) {
            a.tx = None;
        }
        let r = match result {
            Ok(r) => r,
            Err(SendFailure::Timeout) => {
                return self.account_failed(now, key, "no answer from the registrar".into())
            }
            Err(SendFailure::Transport(why) | SendFailure::FlowFailed(why)) => {
                return self.account_failed(now, key, format!("cannot reach the registrar: {why}"))
            }
        };
        match r.code {
            200..=299 => {
                let Some(a) = self.accounts.accounts.get_mut(key) else {
                    return;
                };
                // RFC 3261 §10.2.4: the expiry of our binding as the registrar lists it.
                let ours = header_values(&r.headers, "Contact")
                    .into_iter()
                    .find_map(|c| {
                        let uri = uri_of_name_addr(c);
                        let same = uri.parse::<SipUri>().ok().and_then(|u| u.user)
                            == Some(a.rec.contact_user());
                        same.then(|| {
                            crate::sipmsg::header_params(c)
                                .split(';')
                                .filter_map(|p| p.split_once('='))
                                .find(|(k, _)| k.trim().eq_ignore_ascii_case("expires"))
                                .and_then(|(_, v)| v.trim().parse::<u32>().ok())
                        })
                    });
                let granted = ours
                    .flatten()
                    .or_else(|| header_in(&r.headers, "Expires").and_then(|v| v.parse().ok()))
                    .unwrap_or(a.expires);
                if granted == 0 {
                    return self.account_failed(
                        now,
                        key,
                        "the registrar granted no time (expires=0)".into(),
                    );
                }
                let expires_at = now + Duration::from_secs(u64::from(granted));
                a.state = RegState::Registered { expires_at };
                a.failures = 0;
                a.auth_rounds = 0;
                a.next = Some(now + refresh_after(granted));
                let (jid, id) = (a.rec.jid.clone(), a.rec.id.clone());
                info!(%jid, %id, %contact, expires = granted, "account: registered");
                self.tell_user(key, &format!("registered (expires in {granted} s)"));
                // RFC 3903: her presence goes to the provider once registered.
                self.publish_account(now, key);
            }
            401 | 407 => {
                let Some(ch) = pick_challenge(r) else {
                    return self.account_failed(
                        now,
                        key,
                        format!("{} {} without a usable Digest challenge", r.code, r.reason),
                    );
                };
                let Some(a) = self.accounts.accounts.get_mut(key) else {
                    return;
                };
                a.auth_rounds += 1;
                if a.auth_rounds > 3 {
                    a.challenge = Some(ch);
                    a.nc = 0;
                    return self.account_failed(
                        now,
                        key,
                        format!("{} {}: challenged again and again", r.code, r.reason),
                    );
                }
                if a.sent_credentials && !ch.0.stale {
                    a.challenge = Some(ch);
                    a.nc = 0;
                    return self.account_failed(
                        now,
                        key,
                        format!(
                            "{} {}: the provider refused the credentials (wrong user or password?)",
                            r.code, r.reason
                        ),
                    );
                }
                a.challenge = Some(ch);
                a.nc = 0;
                self.send_register(now, key);
            }
            423 => {
                let min = header_in(&r.headers, "Min-Expires").and_then(|v| v.parse::<u32>().ok());
                let max_expires = self.settings.accounts.max_expires;
                let Some(a) = self.accounts.accounts.get_mut(key) else {
                    return;
                };
                match min {
                    Some(m) if m > a.expires && m <= max_expires => {
                        a.expires = m;
                        self.send_register(now, key);
                    }
                    _ => self.account_failed(
                        now,
                        key,
                        "423 Interval Too Brief without a usable Min-Expires".into(),
                    ),
                }
            }
            code => self.account_failed(now, key, format!("{code} {}", r.reason)),
        }
        self.account_metrics();
    }

    fn account_failed(&mut self, now: Instant, key: &str, error: String) {
        let Some(a) = self.accounts.accounts.get_mut(key) else {
            return;
        };
        a.failures += 1;
        a.auth_rounds = 0;
        let wait = self.settings.accounts.backoff(a.failures);
        a.next = Some(now + wait);
        a.state = RegState::Failed {
            error: error.clone(),
        };
        warn!(jid = %a.rec.jid, id = %a.rec.id, %error, failures = a.failures, retry_in = wait.as_secs(), "account: registration failed");
        self.tell_user(
            key,
            &format!(
                "registration failed: {error} (next attempt in {} s)",
                wait.as_secs()
            ),
        );
        self.account_metrics();
    }

    /// A headline from `C` to the account's user when its state changed (registered ⇄
    /// failed).
    fn tell_user(&mut self, key: &str, text: &str) {
        let Some(a) = self.accounts.accounts.get_mut(key) else {
            return;
        };
        let state = a.state.name();
        if a.told == Some(state) {
            return;
        }
        a.told = Some(state);
        let body = format!(
            "SIP account {} ({}): {text}",
            a.rec.id,
            a.rec.aor().map(|u| u.to_string()).unwrap_or_default()
        );
        let to = a.rec.jid.clone();
        let id = self.fresh_id();
        let m = crate::stanza::builder(
            "message",
            &self.settings.component,
            &to,
            &id,
            Some("headline"),
        )
        .append(crate::stanza::text_child(
            "body",
            crate::stanza::NS_COMPONENT,
            &body,
        ))
        .build();
        self.outputs.push_back(Output::Stanza(m));
    }

    /// Runs the REGISTERs that are due.
    pub(in crate::core) fn accounts_handle_timeout(&mut self, now: Instant) {
        let due: Vec<String> = self
            .accounts
            .accounts
            .iter()
            .filter(|(_, a)| a.tx.is_none() && a.next.is_some_and(|n| n <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(a) = self.accounts.accounts.get_mut(&key) {
                if let RegState::Registered { expires_at } = a.state {
                    if expires_at <= now {
                        a.state = RegState::Registering;
                    }
                }
            }
            self.send_register(now, &key);
        }
        self.publications_handle_timeout(now);
    }

    fn account_metrics(&self) {
        for state in ["registering", "registered", "failed"] {
            let n = self
                .accounts
                .accounts
                .values()
                .filter(|a| a.state.name() == state)
                .count();
            gauge!("stox_accounts", "state" => state).set(n as f64);
        }
    }

    // ------------------------------------------------------------- routing

    /// The account whose Contact a Request-URI names (`acct-<hash>@...`).
    pub(in crate::core) fn account_of_request_uri(&self, uri: &SipUri) -> Option<AccountRecord> {
        let user = uri.user.as_deref()?;
        if !user.starts_with(CONTACT_PREFIX) {
            return None;
        }
        let key = self.accounts.by_contact.get(user)?;
        self.accounts.accounts.get(key).map(|a| a.rec.clone())
    }

    /// The account stored under `key` (`jid|id`).
    pub(in crate::core) fn account_by_key(&self, key: &str) -> Option<AccountRecord> {
        self.accounts.accounts.get(key).map(|a| a.rec.clone())
    }

    /// The sender JID of a request that arrived at an account's Contact: through an account
    /// that is not the user's default, the local part carries `#id`, so that a reply or a
    /// call back leaves through the same account.
    pub(in crate::core) fn sender_through_account(
        &self,
        req: &crate::sipmsg::SipRequest,
        from: xmpp_parsers::jid::Jid,
    ) -> xmpp_parsers::jid::Jid {
        let account = req
            .uri
            .parse::<SipUri>()
            .ok()
            .and_then(|u| self.account_of_request_uri(&u));
        match account {
            Some(a) if !a.default => from
                .node()
                .and_then(|n| {
                    let bare = format!("{}#{}@{}", n, a.id, from.domain());
                    let full = match from.resource() {
                        Some(r) => format!("{bare}/{r}"),
                        None => bare,
                    };
                    full.parse().ok()
                })
                .unwrap_or(from),
            _ => from,
        }
    }

    /// The account a message from `from` to `to` leaves through, and `to` without the
    /// account suffix: `<target>#<id>@C` names one of the sender's accounts, else his
    /// default one is used (if he has any).
    pub(in crate::core) fn account_for(
        &self,
        from: &xmpp_parsers::jid::Jid,
        to: &xmpp_parsers::jid::Jid,
    ) -> (Option<AccountRecord>, xmpp_parsers::jid::Jid) {
        let owner = stox_mappings::normalize_jid(from.to_bare().as_str());
        if let Some(node) = to.node() {
            if let Some((target, id)) = node.as_str().rsplit_once('#') {
                if let Some(a) = self.accounts.accounts.get(&format!("{owner}|{id}")) {
                    let stripped = format!("{target}@{}", to.domain());
                    let stripped = match to.resource() {
                        Some(r) => format!("{stripped}/{r}"),
                        None => stripped,
                    };
                    if let Ok(j) = stripped.parse() {
                        return (Some(a.rec.clone()), j);
                    }
                }
            }
        }
        let default = self
            .accounts
            .accounts
            .values()
            .find(|a| a.rec.jid == owner && a.rec.default)
            .map(|a| a.rec.clone());
        (default, to.clone())
    }

    /// Answers a provider's challenge to a request sent through an account: the same
    /// request with CSeq + 1 and credentials, or `None` when it cannot be answered.
    pub(in crate::core) fn answer_challenge(
        &mut self,
        key: &str,
        mut req: OutRequest,
        resp: &SipResponse,
    ) -> Option<OutRequest> {
        let rec = self.accounts.accounts.get(key)?.rec.clone();
        let ch = pick_challenge(resp)?;
        req.headers.retain(|(n, _)| {
            !n.eq_ignore_ascii_case("Authorization")
                && !n.eq_ignore_ascii_case("Proxy-Authorization")
        });
        let d = req.dialog.as_mut()?;
        d.cseq += 1;
        let (method, uri) = (req.method.clone(), req.uri.clone());
        req.headers
            .push(self.credentials(&rec, &ch, &method, &uri, 1));
        Some(req)
    }
}

/// An account id from the registrar's host: `sip:sip2.localhost` → `sip2-localhost`.
pub fn id_from_registrar(registrar: &str) -> String {
    let host = registrar
        .trim()
        .trim_start_matches("sip:")
        .split([':', ';', '?'])
        .next()
        .unwrap_or_default();
    let id: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(32)
        .collect();
    if id.is_empty() {
        "default".into()
    } else {
        id
    }
}

pub mod commands;
mod publish;
#[cfg(test)]
mod tests;

//! stox as the registrar of its own domain `C` (issue 5, RFC 3261 §10.3), and the
//! authentication of the SIP users of `C` (RFC 3261 §22, Digest with SHA-256 and MD5,
//! RFC 8760).
//!
//! # Users
//!
//! A SIP user of `C` (`sip:dave@C`, the XMPP contact `dave@C`) exists when the operator
//! created him (`/api/v1/sip-users`): his record holds `HA1 = H(user:realm:password)` for
//! each algorithm, never the password ([`SipUserRecord`]). The realm is `C`.
//!
//! # REGISTER (RFC 3261 §10.3, in the order the RFC gives)
//!
//! | step | check | answer |
//! |---|---|---|
//! | 1 | the Request-URI is `C` | `403` otherwise: stox registers nobody else |
//! | 3–4 | Digest credentials for realm `C`, for the user of the To AOR | `401` with a challenge per algorithm (`[registrar] digest_algorithms`); `403` for another user's AOR |
//! | 5 | To is `sip:user@C` of an existing user | (credentials cannot verify otherwise) |
//! | 6 | `Contact: *` only with `Expires: 0`, alone | `400` |
//! | 7 | each contact's expiry (`expires` param, else `Expires`, else 3600) | `423` with `Min-Expires` below `[registrar] min_expires`; longer ones shortened |
//! | 7 | a binding's Call-ID and CSeq: same Call-ID with a CSeq not higher | `500` (out of order) |
//! | 8 | — | `200` with every current binding as `Contact: <uri>;expires=N` |
//!
//! At most `[registrar] max_contacts` bindings per AOR (a new one beyond: `403`).
//!
//! # Flows (RFC 5626, RFC 5923, RFC 7118)
//!
//! A binding made over a stream (TCP, TLS, WS, WSS) remembers its flow: the transport and
//! the peer's end of the connection. Requests to the contact go over that connection while
//! it is open (the io layer keeps the connections): a WebSocket client's Contact names an
//! `.invalid` host (RFC 7118 §5), and a UA behind NAT cannot be reached at the address it
//! wrote. A binding made with outbound, or by a WebSocket client, is reached over its flow
//! only ([`Binding::flow_only`]); a TCP or TLS contact without outbound is reached as its
//! URI says once the connection is gone.
//!
//! A failed flow (RFC 5626 §7): when the io layer reports a closed connection
//! (`Input::FlowClosed`), or a request finds it closed (`SendFailure::FlowFailed`, the
//! edge proxy's 430), every binding reached over it only is removed, whatever its AOR. A
//! MESSAGE to the AOR then goes to one flow per UA instance at a time ([`Target`]), the
//! next flow after a 430 or 408; a 430 never reaches the sender (RFC 5626 §11).
//!
//! A REGISTER using outbound (RFC 5626 §4.2: `Supported: outbound`, a contact with
//! `reg-id` and `+sip.instance`) straight from the UA (one Via) gets, as RFC 5626 §6 says
//! for a registrar that is also the edge proxy, `Require: outbound` and `Flow-Timer`
//! (`[sip] flow_timer_secs`) in its `200`; its binding replaces the one of the same
//! instance and reg-id (the flow changed, the contact may have too). Keepalives (CRLF,
//! RFC 5626 §4.4.1) are answered by the transport layer.
//!
//! # Who must authenticate
//!
//! Every request whose From is a user of `C` (MESSAGE, SUBSCRIBE, PUBLISH, INVITE) needs
//! `Proxy-Authorization` for that user (`407` with a challenge otherwise): stox is no open
//! relay and nobody speaks as dave but dave. Requests inside dialogs (NOTIFY, BYE, ACK) are
//! not challenged.
//!
//! # Guessing passwords
//!
//! After `[registrar] max_failures` failed responses from one source address within a
//! minute, that address gets `403` (with `Retry-After`) for every authenticated request
//! during `[registrar] block_secs`. Nonces are stateless and live five minutes; after that a
//! request is challenged again with `stale=true` (RFC 7616 §3.3).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use metrics::{counter, gauge};
use serde::{Deserialize, Serialize};
use stox_mappings::Table;
use stox_sip::digest::{self, Algorithm, NonceCheck, NonceKey};
use stox_sip::uri::SipUri;
use tracing::{debug, info, warn};

use super::{Gateway, TxId};
use crate::sipmsg::{header_values, uri_of_name_addr, Flow, SipRequest, Transport};

/// How long a nonce is good for.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// The window in which failures are counted.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// `[registrar]` settings.
#[derive(Debug, Clone)]
pub struct RegistrarSettings {
    /// The shortest registration granted (`423` below it).
    pub min_expires: u32,
    /// The longest registration granted (longer ones are shortened).
    pub max_expires: u32,
    /// Bindings per AOR.
    pub max_contacts: usize,
    /// Failed Digest responses from one address within a minute before it is blocked.
    pub max_failures: u32,
    /// How long a blocked address stays blocked.
    pub block: Duration,
    /// The secret of the nonces (random per process; a cluster would share one).
    pub nonce_secret: [u8; 32],
    /// The Digest algorithms challenged with, in order (one `WWW-Authenticate` each;
    /// credentials are accepted in any of them). RFC 8760 §2.4 lets a UAS offer SHA-256
    /// and MD5 together, the preferred first; but baresip 1.0 (libre 1.x) gives up as soon
    /// as one challenge names an algorithm it does not know ("Function not implemented",
    /// seen here, whatever the order), and SIPp 3.6 knows only MD5. So the default is MD5
    /// alone; `[registrar] digest_algorithms = ["SHA-256", "MD5"]` offers both.
    pub digest_algorithms: Vec<Algorithm>,
    /// `Flow-Timer` granted to outbound registrations (seconds, RFC 5626 §4.4.1).
    pub flow_timer: u32,
}

impl Default for RegistrarSettings {
    fn default() -> Self {
        RegistrarSettings {
            min_expires: 60,
            max_expires: 3600,
            max_contacts: 10,
            max_failures: 5,
            block: Duration::from_secs(60),
            nonce_secret: [0; 32],
            digest_algorithms: vec![Algorithm::Md5],
            flow_timer: 120,
        }
    }
}

/// A SIP user of `C` (table `sip_users`, key: the user part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipUserRecord {
    /// The user part (`dave` of `sip:dave@C`).
    pub user: String,
    /// `H(user:realm:password)` with MD5, hex.
    pub ha1_md5: String,
    /// The same with SHA-256, hex.
    pub ha1_sha256: String,
    /// When it was created (Unix seconds).
    pub created_unix: u64,
}

impl SipUserRecord {
    /// A record for `user` with `password` in `realm` (the password is not kept).
    pub fn new(user: &str, realm: &str, password: &str, created_unix: u64) -> SipUserRecord {
        SipUserRecord {
            user: user.to_owned(),
            ha1_md5: digest::ha1(Algorithm::Md5, user, realm, password),
            ha1_sha256: digest::ha1(Algorithm::Sha256, user, realm, password),
            created_unix,
        }
    }

    /// The HA1 for an algorithm.
    pub fn ha1(&self, alg: Algorithm) -> &str {
        match alg {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }
}

/// Whether a user part can name a SIP user of `C` (what the admin API accepts): letters,
/// digits and `-._~!$&'()*+,;=` as RFC 3261 §25.1 `unreserved` / `user-unreserved` allow
/// unescaped, 1 to 64 of them, and not a `%`-escape or `@` (those fold foreign addresses,
/// ARCHITECTURE.md "Addresses").
pub fn valid_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=".contains(c))
}

/// One registration (table `bindings`, key `AOR|contact URI`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingRecord {
    /// `sip:user@C`.
    pub aor: String,
    /// The contact URI as registered (parameters kept: the UA's transport, GRUU, ...).
    pub contact: String,
    /// When it expires (Unix seconds).
    pub expires_unix: u64,
    /// The Call-ID of the REGISTER that made or refreshed it.
    pub call_id: String,
    /// Its CSeq.
    pub cseq: u32,
    /// `q`, as given.
    #[serde(default)]
    pub q: Option<String>,
    /// Where the REGISTER came from (requests go there when the contact is not reachable
    /// as written, e.g. a private address: RFC 5626 flow, later).
    #[serde(default)]
    pub source: Option<String>,
    /// It came over TCP.
    #[serde(default)]
    pub tcp: bool,
    /// The transport it came over (`UDP`, `TCP`, `TLS`, `WS`, `WSS`), when recorded.
    #[serde(default)]
    pub transport: Option<String>,
    /// RFC 5626 `+sip.instance` and `reg-id`, when it registered with outbound.
    #[serde(default)]
    pub outbound: Option<(String, u32)>,
}

/// A binding as the core keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The contact URI.
    pub contact: String,
    /// When it expires.
    pub expires_at: Instant,
    /// Call-ID and CSeq of the last REGISTER about it.
    pub call_id: String,
    /// Its CSeq.
    pub cseq: u32,
    /// `q`.
    pub q: Option<String>,
    /// The REGISTER's source address.
    pub source: Option<SocketAddr>,
    /// Registered over TCP.
    pub tcp: bool,
    /// The stream connection it registered over (requests to it go back over it).
    pub flow: Option<Flow>,
    /// RFC 5626 `+sip.instance` and `reg-id`.
    pub outbound: Option<(String, u32)>,
}

impl Binding {
    /// Whether the contact is reached over its flow only (RFC 5626 §5.3: registered with
    /// outbound; RFC 7118 §5: a WebSocket client, whose Contact host is `.invalid`).
    pub fn flow_only(&self) -> bool {
        self.flow.is_some_and(|f| {
            self.outbound.is_some() || matches!(f.transport, Transport::Ws | Transport::Wss)
        })
    }
}

/// One target of a request for an AOR (RFC 5626 §7): a binding, and the other flows of the
/// same UA instance to try in its place when its flow failed.
#[derive(Debug, Clone)]
pub(in crate::core) struct Target {
    /// The binding tried first.
    pub first: Binding,
    /// The same instance's other bindings (other `reg-id`s), most recent first.
    pub alternates: Vec<Binding>,
}

/// Registrations and authentication state.
#[derive(Default)]
pub(in crate::core) struct RegistrarState {
    /// AOR → its bindings.
    bindings: HashMap<String, Vec<Binding>>,
    /// (expiry, AOR, contact), for the sweep.
    expiries: BTreeSet<(Instant, String, String)>,
    /// Failed Digest responses per source: (count, first in the window, blocked until).
    failures: HashMap<IpAddr, (u32, Instant, Option<Instant>)>,
    nonce_key: Option<NonceKey>,
}

impl RegistrarState {
    /// The next binding expiry.
    pub(in crate::core) fn next_timeout(&self) -> Option<Instant> {
        self.expiries.first().map(|(t, _, _)| *t)
    }

    /// Live bindings of an AOR, most recently refreshed first.
    pub(in crate::core) fn contacts(&self, aor: &str, now: Instant) -> Vec<Binding> {
        let mut v: Vec<Binding> = self
            .bindings
            .get(aor)
            .map(|b| b.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default();
        v.sort_by_key(|b| std::cmp::Reverse(b.expires_at));
        v
    }

    /// The target set of a request for `aor` (RFC 5626 §7): one target per UA instance
    /// (a binding without outbound is an instance of its own), the most recently refreshed
    /// first, each with the other flows of its instance (other `reg-id`s) to try in turn
    /// when it fails with 430 (Flow Failed) or 408.
    pub(in crate::core) fn targets(&self, aor: &str, now: Instant) -> Vec<Target> {
        let mut out: Vec<Target> = Vec::new();
        for b in self.contacts(aor, now) {
            let instance = b.outbound.as_ref().map(|(i, _)| i.clone());
            match out.iter_mut().find(|t| {
                instance.is_some() && t.first.outbound.as_ref().map(|(i, _)| i) == instance.as_ref()
            }) {
                Some(t) => t.alternates.push(b),
                None => out.push(Target {
                    first: b,
                    alternates: Vec::new(),
                }),
            }
        }
        out
    }

    /// How many bindings exist.
    pub(in crate::core) fn count(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }
}

/// The outcome of authenticating a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::core) enum Authn {
    /// Good credentials of this user.
    User(String),
    /// Answer with this code and these headers (a challenge, or 403 when blocked).
    Refuse(u16, Vec<(String, String)>, String),
}

/// RFC 5626 §4.2: the `+sip.instance` and `reg-id` of a Contact, when both are there.
fn outbound_params(value: &str) -> Option<(String, u32)> {
    let params = crate::sipmsg::header_params(value);
    let mut instance = None;
    let mut reg_id = None;
    for p in params.split(';').map(str::trim) {
        match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("+sip.instance") => {
                instance = Some(v.trim().trim_matches('"').to_owned())
            }
            Some((k, v)) if k.trim().eq_ignore_ascii_case("reg-id") => {
                reg_id = v.trim().parse().ok()
            }
            _ => {}
        }
    }
    Some((
        instance.filter(|i| !i.is_empty())?,
        reg_id.filter(|r| *r > 0)?,
    ))
}

/// Whether a request's `Supported` (or `Require`) lists option tag `tag`.
fn supports(req: &SipRequest, tag: &str) -> bool {
    ["Supported", "Require"].iter().any(|h| {
        header_values(&req.headers, h)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(tag))
    })
}

/// Splits a Contact value into its URI and header parameters (`expires`, `q`).
fn contact_params(value: &str) -> (String, Option<u32>, Option<String>, bool) {
    let uri = uri_of_name_addr(value).to_owned();
    let params = crate::sipmsg::header_params(value);
    let mut expires = None;
    let mut q = None;
    let mut bad = false;
    for p in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("expires") => match v.trim().parse() {
                Ok(n) => expires = Some(n),
                Err(_) => bad = true,
            },
            Some((k, v)) if k.trim().eq_ignore_ascii_case("q") => q = Some(v.trim().to_owned()),
            _ => {}
        }
    }
    (uri, expires, q, bad)
}

impl Gateway {
    fn nonce_key(&mut self) -> &NonceKey {
        let secret = self.settings.registrar.nonce_secret;
        self.registrar
            .nonce_key
            .get_or_insert_with(|| NonceKey::new(secret))
    }

    /// `WWW-Authenticate` (registrar) or `Proxy-Authenticate` headers: one challenge per
    /// configured algorithm, in order (RFC 8760 §2.4).
    fn challenges(&mut self, now: Instant, proxy: bool, stale: bool) -> Vec<(String, String)> {
        let realm = self.settings.component.clone();
        let unix = self.unix_of(now);
        let nonce = self.nonce_key().issue(unix, &realm);
        let name = if proxy {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        self.settings
            .registrar
            .digest_algorithms
            .iter()
            .map(|a| {
                (
                    name.to_string(),
                    digest::challenge(&realm, &nonce, *a, stale),
                )
            })
            .collect()
    }

    /// A SIP user's record.
    pub(in crate::core) fn sip_user(&self, user: &str) -> Option<SipUserRecord> {
        match self.tables.get(Table::SipUsers, user) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes)
                .map_err(|e| warn!(%user, error = %e, "unreadable SIP user record"))
                .ok(),
            Ok(None) => None,
            Err(e) => {
                warn!(%user, error = %e, "cannot read SIP users");
                None
            }
        }
    }

    fn failure(&mut self, now: Instant, source: Option<IpAddr>, user: &str) {
        counter!("stox_sip_auth_failures_total").increment(1);
        let Some(ip) = source else { return };
        let max = self.settings.registrar.max_failures;
        let block = self.settings.registrar.block;
        if self.registrar.failures.len() > 10_000 {
            self.registrar.failures.retain(|_, (_, since, until)| {
                *since + FAILURE_WINDOW > now || until.is_some_and(|u| u > now)
            });
        }
        let e = self.registrar.failures.entry(ip).or_insert((0, now, None));
        if e.1 + FAILURE_WINDOW <= now {
            *e = (0, now, None);
        }
        e.0 += 1;
        if e.0 >= max && e.2.is_none() {
            e.2 = Some(now + block);
            warn!(%ip, %user, failures = e.0, "SIP: too many failed authentications; address blocked");
        }
    }

    /// Checks the Digest credentials of a request (RFC 3261 §22.3 registrar with
    /// `Authorization`, §22.3 proxy with `Proxy-Authorization`).
    pub(in crate::core) fn authenticate(
        &mut self,
        now: Instant,
        req: &SipRequest,
        proxy: bool,
    ) -> Authn {
        let source = req.source.map(|s| s.ip());
        if let Some(ip) = source {
            if let Some((_, _, Some(until))) = self.registrar.failures.get(&ip) {
                if *until > now {
                    let secs = until.saturating_duration_since(now).as_secs().max(1);
                    return Authn::Refuse(
                        403,
                        vec![("Retry-After".into(), secs.to_string())],
                        "too many failed authentications from this address".into(),
                    );
                }
            }
        }
        let realm = self.settings.component.clone();
        let name = if proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        let code = if proxy { 407 } else { 401 };
        // A UA may send credentials for several realms; take ours.
        // (Not `header_values`: Digest parameters are separated by commas too.)
        let creds = req
            .headers
            .iter()
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| digest::parse_credentials(v).ok())
            .find(|c| c.realm.eq_ignore_ascii_case(&realm));
        let Some(creds) = creds else {
            let h = self.challenges(now, proxy, false);
            return Authn::Refuse(code, h, "credentials needed".into());
        };
        let unix = self.unix_of(now);
        match self
            .nonce_key()
            .check(&creds.nonce, unix, &realm, NONCE_LIFETIME.as_secs())
        {
            NonceCheck::Fresh => {}
            NonceCheck::Stale => {
                let h = self.challenges(now, proxy, true);
                return Authn::Refuse(code, h, "stale nonce".into());
            }
            NonceCheck::Foreign => {
                let h = self.challenges(now, proxy, false);
                return Authn::Refuse(code, h, "unknown nonce".into());
            }
        }
        if !self
            .settings
            .registrar
            .digest_algorithms
            .contains(&creds.algorithm)
        {
            let h = self.challenges(now, proxy, false);
            return Authn::Refuse(
                code,
                h,
                format!("{} is not offered", creds.algorithm.name()),
            );
        }
        let ok = self
            .sip_user(&creds.username)
            .is_some_and(|u| digest::verify(&creds, &req.method, u.ha1(creds.algorithm)));
        if !ok {
            info!(user = %creds.username, source = ?req.source, "SIP: authentication failed");
            self.failure(now, source, &creds.username);
            let h = self.challenges(now, proxy, false);
            return Authn::Refuse(code, h, "wrong credentials".into());
        }
        Authn::User(creds.username)
    }

    /// The AOR of a URI at `C` with a user part (`sip:dave@C`), normalized.
    pub(in crate::core) fn local_aor(&self, uri: &SipUri) -> Option<(String, String)> {
        let user = uri.user.as_deref().filter(|u| !u.is_empty())?;
        if !uri.host.eq_ignore_ascii_case(&self.settings.component) || user.contains('@') {
            return None;
        }
        Some((
            user.to_owned(),
            format!("sip:{user}@{}", self.settings.component),
        ))
    }

    /// RFC 3261 §10.3 (see the module doc).
    pub(in crate::core) fn on_register(&mut self, now: Instant, tx: TxId, req: SipRequest) {
        counter!("stox_registrations_total").increment(1);
        let uri: Result<SipUri, _> = req.uri.parse();
        match uri {
            Ok(u) if u.user.is_none() && u.host.eq_ignore_ascii_case(&self.settings.component) => {}
            Ok(u) => {
                return self.refuse(
                    tx,
                    403,
                    vec![],
                    &format!(
                        "stox registers users of {} only, not {}",
                        self.settings.component, u.host
                    ),
                )
            }
            Err(e) => return self.refuse(tx, 400, vec![], &format!("bad Request-URI: {e}")),
        }
        let to = req
            .header("To")
            .map(uri_of_name_addr)
            .and_then(|t| t.parse::<SipUri>().ok());
        let Some((user, aor)) = to.as_ref().and_then(|t| self.local_aor(t)) else {
            return self.refuse(
                tx,
                403,
                vec![],
                &format!(
                    "the To of a REGISTER must be sip:user@{}",
                    self.settings.component
                ),
            );
        };
        match self.authenticate(now, &req, false) {
            Authn::User(u) if u == user => {}
            Authn::User(u) => {
                return self.refuse(tx, 403, vec![], &format!("{u} may not register {aor}"))
            }
            Authn::Refuse(code, headers, why) => {
                debug!(%aor, code, %why, "REGISTER challenged");
                return self.reply(tx, code, headers);
            }
        }
        let call_id = req.header("Call-ID").unwrap_or_default().to_owned();
        let cseq: u32 = req
            .header("CSeq")
            .and_then(|c| c.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let header_expires = match req.header("Expires") {
            None => None,
            Some(v) => match v.parse::<u32>() {
                Ok(n) => Some(n),
                Err(_) => return self.refuse(tx, 400, vec![], &format!("bad Expires `{v}`")),
            },
        };
        let contacts = header_values(&req.headers, "Contact");
        let settings = self.settings.registrar.clone();
        if contacts.iter().any(|c| c.trim() == "*") {
            // RFC 3261 §10.3 step 6: `*` only alone and with Expires: 0.
            if contacts.len() != 1 || header_expires != Some(0) {
                return self.refuse(
                    tx,
                    400,
                    vec![],
                    "Contact: * needs Expires: 0 and no other contact",
                );
            }
            let removed: Vec<Binding> = self.registrar.bindings.remove(&aor).unwrap_or_default();
            for b in &removed {
                self.registrar
                    .expiries
                    .remove(&(b.expires_at, aor.clone(), b.contact.clone()));
                self.store_remove(Table::Bindings, &format!("{aor}|{}", b.contact));
            }
            info!(%aor, removed = removed.len(), "SIP: all bindings removed");
            return self.registered(now, tx, &aor);
        }
        // RFC 5626 §6: outbound applies when the UA asks for it and stox is its first hop.
        let first_hop = header_values(&req.headers, "Via").len() == 1;
        let use_outbound = first_hop && supports(&req, "outbound") && req.transport.is_stream();
        let flow = req
            .source
            .filter(|_| req.transport.is_stream())
            .map(|remote| Flow {
                transport: req.transport,
                remote,
            });
        let mut outbound_used = false;
        // Step 7: the expiry of each contact, all checked before any change.
        let mut changes = Vec::new();
        for c in &contacts {
            let outbound = outbound_params(c).filter(|_| use_outbound);
            outbound_used |= outbound.is_some();
            let (contact, expires, q, bad) = contact_params(c);
            if bad || contact.parse::<SipUri>().is_err() {
                return self.refuse(tx, 400, vec![], &format!("bad Contact `{c}`"));
            }
            let e = expires
                .or(header_expires)
                .unwrap_or(settings.max_expires.min(3600));
            if e > 0 && e < settings.min_expires {
                return self.reply(
                    tx,
                    423,
                    vec![("Min-Expires".into(), settings.min_expires.to_string())],
                );
            }
            changes.push((contact, e.min(settings.max_expires), q, outbound));
        }
        for (contact, e, q, outbound) in changes {
            // RFC 5626 §6: a binding is the instance and reg-id's; a new flow (or a new
            // contact URI) of the same ones replaces it.
            if let Some(ob) = &outbound {
                let stale: Vec<Binding> = self
                    .registrar
                    .bindings
                    .get(&aor)
                    .map(|l| {
                        l.iter()
                            .filter(|b| b.outbound.as_ref() == Some(ob) && b.contact != contact)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                for old in stale {
                    if let Some(list) = self.registrar.bindings.get_mut(&aor) {
                        list.retain(|b| b.contact != old.contact);
                    }
                    self.registrar.expiries.remove(&(
                        old.expires_at,
                        aor.clone(),
                        old.contact.clone(),
                    ));
                    self.store_remove(Table::Bindings, &format!("{aor}|{}", old.contact));
                }
            }
            let list = self.registrar.bindings.entry(aor.clone()).or_default();
            let existing = list.iter().position(|b| b.contact == contact);
            if let Some(i) = existing {
                let b = &list[i];
                if b.call_id == call_id && cseq <= b.cseq {
                    return self.refuse(tx, 500, vec![], "REGISTER out of order (CSeq not higher)");
                }
                let old = list.remove(i);
                self.registrar
                    .expiries
                    .remove(&(old.expires_at, aor.clone(), old.contact.clone()));
            } else if e > 0 && list.len() >= settings.max_contacts {
                return self.refuse(
                    tx,
                    403,
                    vec![],
                    &format!("at most {} contacts per address", settings.max_contacts),
                );
            }
            let key = format!("{aor}|{contact}");
            if e == 0 {
                info!(%aor, %contact, "SIP: binding removed");
                self.store_remove(Table::Bindings, &key);
                continue;
            }
            let b = Binding {
                contact: contact.clone(),
                expires_at: now + Duration::from_secs(u64::from(e)),
                call_id: call_id.clone(),
                cseq,
                q,
                source: req.source,
                tcp: req.transport == Transport::Tcp,
                flow,
                outbound: outbound.clone(),
            };
            let rec = BindingRecord {
                aor: aor.clone(),
                contact: contact.clone(),
                expires_unix: self.unix_of(b.expires_at),
                call_id: b.call_id.clone(),
                cseq,
                q: b.q.clone(),
                source: b.source.map(|s| s.to_string()),
                tcp: b.tcp,
                transport: Some(req.transport.via_name().to_string()),
                outbound,
            };
            if existing.is_none() {
                info!(%aor, %contact, expires = e, "SIP: registered");
            }
            self.store_put(Table::Bindings, &key, &rec);
            self.registrar
                .expiries
                .insert((b.expires_at, aor.clone(), contact.clone()));
            self.registrar
                .bindings
                .entry(aor.clone())
                .or_default()
                .push(b);
        }
        if self.registrar.bindings.get(&aor).is_some_and(Vec::is_empty) {
            self.registrar.bindings.remove(&aor);
        }
        let extra = if outbound_used {
            vec![
                ("Require".to_string(), "outbound".to_string()),
                (
                    "Flow-Timer".to_string(),
                    self.settings.registrar.flow_timer.to_string(),
                ),
            ]
        } else {
            vec![]
        };
        self.registered_with(now, tx, &aor, extra);
        self.deliver_held(now, &aor);
    }

    fn refuse(&mut self, tx: TxId, code: u16, mut headers: Vec<(String, String)>, why: &str) {
        debug!(code, %why, "SIP request refused");
        headers.push((
            "Warning".into(),
            format!("399 stox \"{}\"", why.replace(['"', '\\', '\r', '\n'], " ")),
        ));
        self.reply(tx, code, headers);
    }

    /// `200` with every current binding (RFC 3261 §10.3 step 8).
    fn registered(&mut self, now: Instant, tx: TxId, aor: &str) {
        self.registered_with(now, tx, aor, vec![]);
    }

    /// The same with more headers (RFC 5626 §6 `Require: outbound`, `Flow-Timer`).
    fn registered_with(&mut self, now: Instant, tx: TxId, aor: &str, extra: Vec<(String, String)>) {
        let mut headers: Vec<(String, String)> = self
            .registrar
            .contacts(aor, now)
            .into_iter()
            .map(|b| {
                let left = b.expires_at.saturating_duration_since(now).as_secs();
                // RFC 5626 §6: the contact comes back with its instance and reg-id.
                let ob = b
                    .outbound
                    .as_ref()
                    .map(|(i, r)| format!(";+sip.instance=\"{i}\";reg-id={r}"))
                    .unwrap_or_default();
                (
                    "Contact".to_string(),
                    format!("<{}>;expires={left}{ob}", b.contact),
                )
            })
            .collect();
        headers.extend(extra);
        gauge!("stox_sip_bindings").set(self.registrar.count() as f64);
        self.reply(tx, 200, headers);
    }

    /// RFC 5626 §7: a flow failed (its connection is gone), so every binding reached over
    /// it only is invalid, whatever its AOR: removed, as if the UA had unregistered. It
    /// registers again over a new flow (RFC 5626 §4.4). Bindings that are not tied to the
    /// flow (TCP or TLS without outbound) stay: they are reached as their URI says.
    pub(in crate::core) fn flow_failed(&mut self, flow: Flow) {
        let mut gone = Vec::new();
        for (aor, list) in self.registrar.bindings.iter_mut() {
            list.retain(|b| {
                let dead = b.flow == Some(flow) && b.flow_only();
                if dead {
                    gone.push((aor.clone(), b.contact.clone(), b.expires_at));
                }
                !dead
            });
        }
        self.registrar.bindings.retain(|_, l| !l.is_empty());
        for (aor, contact, at) in gone {
            info!(%aor, %contact, flow = %flow.remote, transport = flow.transport.via_name(), "SIP: binding removed, its flow failed (RFC 5626 §7)");
            self.registrar
                .expiries
                .remove(&(at, aor.clone(), contact.clone()));
            self.store_remove(Table::Bindings, &format!("{aor}|{contact}"));
        }
        gauge!("stox_sip_bindings").set(self.registrar.count() as f64);
    }

    /// Drops the bindings that expired.
    pub(in crate::core) fn registrar_handle_timeout(&mut self, now: Instant) {
        while let Some((at, aor, contact)) = self.registrar.expiries.first().cloned() {
            if at > now {
                break;
            }
            self.registrar.expiries.pop_first();
            if let Some(list) = self.registrar.bindings.get_mut(&aor) {
                list.retain(|b| !(b.contact == contact && b.expires_at == at));
                if list.is_empty() {
                    self.registrar.bindings.remove(&aor);
                }
            }
            info!(%aor, %contact, "SIP: binding expired");
            self.store_remove(Table::Bindings, &format!("{aor}|{contact}"));
            gauge!("stox_sip_bindings").set(self.registrar.count() as f64);
        }
    }

    /// Brings back the stored bindings (at start).
    pub fn restore_registrar(&mut self, now: Instant) {
        let rows = match self.tables.list(Table::Bindings) {
            Ok(r) => r,
            Err(e) => return warn!(error = %e, "cannot read bindings"),
        };
        let mut n = 0;
        for (key, bytes) in rows {
            let Ok(r) = serde_json::from_slice::<BindingRecord>(&bytes) else {
                warn!(%key, "unreadable binding skipped");
                continue;
            };
            let expires_at = self.instant_of(r.expires_unix);
            if expires_at <= now {
                self.store_remove(Table::Bindings, &key);
                continue;
            }
            self.registrar
                .expiries
                .insert((expires_at, r.aor.clone(), r.contact.clone()));
            self.registrar
                .bindings
                .entry(r.aor)
                .or_default()
                .push(Binding {
                    contact: r.contact,
                    expires_at,
                    call_id: r.call_id,
                    cseq: r.cseq,
                    q: r.q,
                    source: r.source.as_ref().and_then(|s| s.parse().ok()),
                    tcp: r.tcp,
                    // The connection died with the last process; the flow is kept so that
                    // a WebSocket contact is not tried at its `.invalid` host.
                    flow: r
                        .transport
                        .as_deref()
                        .and_then(Transport::from_param)
                        .filter(|t| t.is_stream())
                        .zip(r.source.as_ref().and_then(|s| s.parse().ok()))
                        .map(|(transport, remote)| Flow { transport, remote }),
                    outbound: r.outbound,
                });
            n += 1;
        }
        if n > 0 {
            info!(bindings = n, "SIP: registrations restored");
        }
        gauge!("stox_sip_bindings").set(self.registrar.count() as f64);
    }
}

#[cfg(test)]
mod tests;

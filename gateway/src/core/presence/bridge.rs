//! The presence bridge (issue 4, RFC 8048, STOX-MAPPING.md §6): the [`Watch`] and
//! [`Watcher`] machines wired to SIP dialogs, stanzas, the store and the clock.
//!
//! # XMPP user watches a SIP contact
//!
//! ```text
//! <presence type='subscribe'> to contact@C ──▶ SUBSCRIBE (Event: presence,
//!     Accept: application/pidf+xml, Expires: 3600, a new dialog)
//! NOTIFY pending ──▶ 200, nothing else (RFC 8048 §5)
//! first NOTIFY active ──▶ 200; <presence type='subscribed'/> and the presence of the body,
//!     one resource per tuple (translate::presence, RFC 8048 Table 2), with the contact's caps
//! 403 / 489 / 603, NOTIFY terminated;reason=rejected ──▶ <presence type='unsubscribed'/>
//! 423 ──▶ SUBSCRIBE again with Min-Expires;  481 ──▶ a new dialog
//! refresh at 90 % of the granted Expires, and when the user logs in (her server's probe)
//! <presence type='unsubscribe'> ──▶ SUBSCRIBE Expires: 0 and <presence type='unsubscribed'/>
//! <presence type='probe'> ──▶ answered from the last NOTIFY (or a one-shot SUBSCRIBE)
//! ```
//!
//! A contact that is a SIP user of `C` itself (`dave@C`) is a presentity stox serves: no
//! SUBSCRIBE leaves; the subscription is approved at once and the presence is what dave's
//! phones PUBLISHed (RFC 3903, [`super::publish`]).
//!
//! # SIP user watches an XMPP user
//!
//! ```text
//! SUBSCRIBE sip:alice@H ──▶ 200 (To tag, Expires, Contact); <presence type='subscribe'>
//!     from the watcher's JID to alice; NOTIFY pending
//! <presence type='subscribed'> ──▶ probe; NOTIFY active with her presence (PIDF, RFC 8048
//!     Table 1: a tuple per resource)
//! <presence type='unsubscribed'> ──▶ NOTIFY terminated;reason=rejected
//! alice's presence ──▶ NOTIFY, at most one per subscription per 5 s, the last state winning
//! no refresh before Expires ──▶ NOTIFY terminated;reason=timeout (the authorization stays)
//! SUBSCRIBE Expires: 0 ──▶ final NOTIFY (a probe first when nothing is cached)
//! ```
//!
//! A SUBSCRIBE to a SIP user of `C` is answered from the published state, approved at once.
//!
//! # Durability
//!
//! Authorizations, watches, watchers and publications are written to the presence store when
//! they change ([`super::records`]); after a restart (`kill -9` included) watches are
//! refreshed inside their old dialogs (a 481 starts new ones), watchers keep their dialogs
//! and get a NOTIFY once the link is up and the XMPP server answered a probe, and
//! publications keep composing until they expire. The CSeq of stox's dialogs is written at
//! least every [`CSEQ_PERSIST_EVERY`] requests and restored [`CSEQ_RESTORE_MARGIN`] higher,
//! so a restarted stox never reuses one.
//!
//! # Limits
//!
//! Out-of-dialog SUBSCRIBE and PUBLISH are rate-limited per source address (token bucket,
//! `[presence] rate_per_source` / `rate_burst`: `503` with `Retry-After`), subscription
//! requests per XMPP user likewise (`resource-constraint`), NOTIFYs from a SIP contact are
//! translated at most once per [`MIN_TRANSLATE_INTERVAL`] per watch (the last state wins), and
//! the number of subscriptions is bounded (`[presence] max_subscriptions`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use metrics::{counter, gauge};
use stox_mappings::{normalize_jid, Table};
use stox_sip::body::pidf;
use stox_sip::uri::{Scheme, SipUri};
use tracing::{debug, info, warn};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::DefinedCondition;

use super::publish::{Publication, Publications, PublishError, PublishRequest};
use super::records::{
    pair_key, AuthorizationRecord, DialogRecord, PublicationRecord, WatchRecord, WatcherRecord,
};
use super::{SubState, Watch, WatchAction, Watcher, WatcherAction};
use crate::core::{aor_string, AccountRecord, Gateway, Output, SendFailure, TxId};
use crate::sipmsg::{
    header_values, tag_of, uri_of_name_addr, DialogRef, OutRequest, SipRequest, SipResponse,
    Transport,
};
use crate::stanza;
use crate::translate::presence as xlate;

/// `application/pidf+xml` (RFC 3863 §7.1).
pub const PIDF: &str = "application/pidf+xml";
/// RFC 3856 §6: the event package.
const EVENT: &str = "presence";
/// A NOTIFY from a SIP contact becomes presence stanzas at most this often per watch; a
/// faster stream keeps only its last state (issue 4 "rate-limited").
pub const MIN_TRANSLATE_INTERVAL: Duration = Duration::from_secs(1);
/// stox writes a dialog's CSeq to the store at least every this many requests...
pub const CSEQ_PERSIST_EVERY: u32 = 50;
/// ... and a restored dialog continues this much higher.
pub const CSEQ_RESTORE_MARGIN: u32 = 2 * CSEQ_PERSIST_EVERY;
/// Restored watches refresh this far apart, so a restart does not burst thousands of
/// SUBSCRIBEs at once.
const RESTORE_SPACING: Duration = Duration::from_millis(5);
/// Stanzas kept while the component link is down (presence is state: past this the oldest
/// are dropped, and the resync at link-up sends the current state anyway).
const MAX_HELD: usize = 50_000;
/// A probe or subscription request for the same pair is not repeated within this time.
const ASK_DEDUP: Duration = Duration::from_secs(1);
/// Resources of an XMPP user remembered per watcher JID.
const MAX_RESOURCES: usize = 32;
/// How long the dialog of an ended watch still gets 200 for a NOTIFY (64·T1).
const CLOSING_FOR: Duration = Duration::from_secs(32);

/// `[presence]` settings the core uses.
#[derive(Debug, Clone)]
pub struct PresenceSettings {
    /// RFC 8048 presence (SUBSCRIBE/NOTIFY/PUBLISH). Off: contacts are always shown
    /// available with call caps and nothing is sent to SIP (the issue 3 behaviour).
    pub enabled: bool,
    /// The Expires stox asks for in its SUBSCRIBEs.
    pub expires: u32,
    /// The shortest Expires stox grants to a SUBSCRIBE or PUBLISH (`423` below it).
    pub min_expires: u32,
    /// The longest Expires stox grants (longer requests are shortened).
    pub max_expires: u32,
    /// Out-of-dialog SUBSCRIBE and PUBLISH per second per source address (0: no limit).
    pub rate_per_source: u32,
    /// The burst allowed above that rate.
    pub rate_burst: u32,
    /// Most subscriptions, both directions together.
    pub max_subscriptions: usize,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        PresenceSettings {
            enabled: true,
            expires: super::DEFAULT_EXPIRES,
            min_expires: 60,
            max_expires: 3600,
            rate_per_source: 20,
            rate_burst: 200,
            max_subscriptions: 100_000,
        }
    }
}

/// A subscription as the admin API lists it (`GET /api/v1/subscriptions`).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SubscriptionInfo {
    /// `xmpp_to_sip` (an XMPP user watches a SIP contact) or `sip_to_xmpp` (a SIP user
    /// watches an XMPP user or a SIP user of the component domain).
    pub direction: String,
    /// Who watches (bare JID, or SIP URI for SIP watchers).
    pub watcher: String,
    /// Who is watched (SIP URI for SIP contacts, bare JID or AOR otherwise).
    pub presentity: String,
    /// Watches: `idle`, `subscribing`, `pending`, `active`. Watchers: `pending`, `active`,
    /// `rejected`. A local presentity's XMPP watchers: `local`.
    pub state: String,
    /// Seconds until the SIP subscription expires (watchers) or is refreshed (watches).
    pub expires_in: Option<u64>,
    /// The SIP dialog's Call-ID, if there is a dialog.
    pub call_id: Option<String>,
}

/// A SIP request stox sent for presence, awaiting its final response.
#[derive(Debug, Clone)]
enum PresTx {
    /// A SUBSCRIBE of a watch, in the dialog with this Call-ID; through an external
    /// account, the account's key, the request and its transport (to answer a challenge).
    Subscribe {
        watch: u64,
        call_id: String,
        account: Option<(String, Box<OutRequest>, Transport)>,
    },
    /// A NOTIFY to a watcher.
    Notify { watcher: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Timer {
    Watch(u64),
    Watcher(u64),
    Publications,
}

/// An XMPP user watching a SIP contact.
struct WatchEntry {
    user: String,
    contact: String,
    target: String,
    from_uri: String,
    local: bool,
    machine: Watch,
    dialog: Option<DialogRecord>,
    /// CSeq last written to the store.
    stored_cseq: u32,
    /// Resources announced available to the user (to send `unavailable` for vanished ones).
    announced: BTreeSet<String>,
    lang: Option<String>,
    last_translated: Option<Instant>,
    /// A NOTIFY body held back by the translation rate limit, and when it may go.
    held: Option<(Instant, Vec<u8>)>,
    /// The external account (`jid|id`) the SUBSCRIBEs leave through (issue 5).
    account: Option<String>,
}

/// Which presentity a SIP watcher watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Presentity {
    /// An XMPP user (normalized bare JID).
    Xmpp(String),
    /// A SIP user of `C` whose state is published to stox (normalized AOR).
    Local(String),
}

/// A SIP user watching a presentity.
struct WatcherEntry {
    watcher_uri: String,
    watcher_jid: String,
    presentity: Presentity,
    machine: Watcher,
    dialog: DialogRecord,
    stored_cseq: u32,
    lang: Option<String>,
    /// The AOR of the external account whose Contact the SUBSCRIBE reached (issue 5).
    account_aor: Option<String>,
    /// That account's Contact URI: stox's Contact in this dialog.
    account_contact: Option<String>,
}

/// The presence of one XMPP user as one watcher JID sees it: resource → last stanza.
#[derive(Default)]
struct UserPresence {
    resources: BTreeMap<String, Element>,
    lang: Option<String>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Everything the presence bridge knows.
#[derive(Default)]
pub(in crate::core) struct PresenceState {
    watches: HashMap<u64, WatchEntry>,
    /// (user, contact) → watch.
    watch_by_pair: HashMap<(String, String), u64>,
    /// (Call-ID, local tag) → watch.
    watch_by_dialog: HashMap<(String, String), u64>,
    /// Dialogs of watches that ended while the notifier may still send its final NOTIFY
    /// (RFC 6665 §4.1.2.3: after `Expires: 0` comes NOTIFY `terminated`), until when.
    closing: HashMap<(String, String), Instant>,
    /// local contact JID → its XMPP watchers.
    local_watches_of: HashMap<String, BTreeSet<u64>>,
    watchers: HashMap<u64, WatcherEntry>,
    /// (Call-ID, local tag) → watcher.
    watcher_by_dialog: HashMap<(String, String), u64>,
    /// (Call-ID, the watcher's tag) → watcher: a SUBSCRIBE without To tag that repeats an
    /// existing dialog's identifiers is that dialog's refresh (some UAs never learn the tag).
    watcher_by_remote: HashMap<(String, String), u64>,
    /// (presentity, watcher JID) → watchers (XMPP presentities).
    watchers_of: HashMap<(String, String), BTreeSet<u64>>,
    /// local AOR → its SIP watchers.
    local_watchers_of: HashMap<String, BTreeSet<u64>>,
    /// (presentity, watcher JID) → what that watcher JID was told of the presentity.
    cache: HashMap<(String, String), UserPresence>,
    publications: Publications,
    txs: HashMap<TxId, PresTx>,
    timers: BTreeSet<(Instant, Timer)>,
    scheduled: HashMap<Timer, Instant>,
    held: VecDeque<Element>,
    /// (presentity, watcher JID) → when stox last probed or asked (dedup).
    asked: HashMap<(String, String, bool), Instant>,
    sip_buckets: HashMap<IpAddr, Bucket>,
    xmpp_buckets: HashMap<String, Bucket>,
    next_id: u64,
}

impl PresenceState {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn schedule(&mut self, timer: Timer, at: Option<Instant>) {
        if let Some(old) = self.scheduled.get(&timer).copied() {
            if Some(old) == at {
                return;
            }
            self.timers.remove(&(old, timer));
            self.scheduled.remove(&timer);
        }
        if let Some(at) = at {
            self.timers.insert((at, timer));
            self.scheduled.insert(timer, at);
        }
    }

    /// The next presence deadline.
    pub(in crate::core) fn next_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    fn subscription_count(&self) -> usize {
        self.watches.len() + self.watchers.len()
    }
}

/// A token bucket check: `rate` per second, `burst` deep (rate 0: unlimited).
fn allow<K: std::hash::Hash + Eq>(
    buckets: &mut HashMap<K, Bucket>,
    key: K,
    now: Instant,
    rate: u32,
    burst: u32,
) -> bool {
    if rate == 0 {
        return true;
    }
    if buckets.len() > 10_000 {
        // Forget buckets that refilled: they hold no information.
        let full = f64::from(burst.max(1));
        buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * f64::from(rate) < full
        });
    }
    let b = buckets.entry(key).or_insert(Bucket {
        tokens: f64::from(burst.max(1)),
        at: now,
    });
    let refill = now.saturating_duration_since(b.at).as_secs_f64() * f64::from(rate);
    b.tokens = (b.tokens + refill).min(f64::from(burst.max(1)));
    b.at = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        true
    } else {
        false
    }
}

/// RFC 6665 §4.1.3 / §8.2.3: a `Subscription-State` header value.
pub fn parse_sub_state(value: &str) -> Option<SubState> {
    let mut parts = value.split(';');
    let state = parts.next()?.trim().to_ascii_lowercase();
    let mut expires = None;
    let mut reason = None;
    let mut retry_after = None;
    for p in parts {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim()),
            None => continue,
        };
        match k.as_str() {
            "expires" => expires = v.parse().ok(),
            "reason" => reason = Some(v.to_ascii_lowercase()),
            "retry-after" => retry_after = v.parse().ok(),
            _ => {}
        }
    }
    match state.as_str() {
        "pending" => Some(SubState::Pending),
        "active" => Some(SubState::Active { expires }),
        "terminated" => Some(SubState::Terminated {
            reason,
            retry_after,
        }),
        // RFC 6665 §4.1.3: an unknown state is treated as pending... but acted on as
        // nothing: it is acknowledged and not translated.
        _ => Some(SubState::Pending),
    }
}

/// The `Subscription-State` value stox writes.
pub fn sub_state_value(state: &SubState) -> String {
    match state {
        SubState::Pending => "pending".to_string(),
        SubState::Active { expires: Some(e) } => format!("active;expires={e}"),
        SubState::Active { expires: None } => "active".to_string(),
        SubState::Terminated {
            reason,
            retry_after,
        } => {
            let mut v = "terminated".to_string();
            if let Some(r) = reason {
                v.push_str(";reason=");
                v.push_str(r);
            }
            if let Some(s) = retry_after {
                v.push_str(&format!(";retry-after={s}"));
            }
            v
        }
    }
}

/// Whether an `Event` header names the presence package (RFC 6665 §8.2.1: the package name
/// is case-sensitive... in practice compared case-insensitively; parameters ignored).
fn is_presence_event(value: Option<&str>) -> bool {
    value
        .and_then(|v| v.split(';').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case(EVENT))
}

/// Whether an `Accept` header allows PIDF (absent: the package default, PIDF).
fn accepts_pidf(req: &SipRequest) -> bool {
    let values = header_values(&req.headers, "Accept");
    if req.header("Accept").is_none() {
        return true;
    }
    values.iter().any(|v| {
        let t = v
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        t == PIDF || t == "*/*" || t == "application/*"
    })
}

fn is_pidf(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| c.trim().eq_ignore_ascii_case(PIDF))
}

/// A PIDF document that says "closed" for a presentity with nothing known (RFC 8048: an
/// empty body is unknown, shown as unavailable; a SIP UA shows closed as offline).
fn closed_pidf(entity: &str) -> Vec<u8> {
    let tuple = pidf::Tuple {
        id: xlate::tuple_id(""),
        basic: Some(pidf::Basic::Closed),
        ..pidf::Tuple::default()
    };
    pidf::write(&xlate::document(entity, vec![tuple])).into_bytes()
}

fn presence_stanza(from: &str, to: &str, kind: Option<&str>) -> Element {
    stanza::builder("presence", from, to, "", kind).build()
}

impl Gateway {
    // ------------------------------------------------------------ plumbing

    fn presence_out(&mut self, s: Element) {
        counter!("stox_presence_stanzas_total", "direction" => "out").increment(1);
        if self.link_up {
            self.outputs.push_back(Output::Stanza(s));
        } else {
            let held = &mut self.presence.held;
            if held.len() >= MAX_HELD {
                held.pop_front();
                counter!("stox_presence_held_dropped_total").increment(1);
            }
            held.push_back(s);
        }
    }

    /// Presence answers to a request that stox cannot serve: a `<presence type='error'/>`.
    fn presence_error(&mut self, original: &Element, cond: DefinedCondition, text: &str) {
        if original.attr("type") == Some("error") {
            return;
        }
        counter!("stox_errors_total", "direction" => "xmpp_to_sip", "condition" => crate::translate::error::condition_name(&cond)).increment(1);
        let reply = stanza::error_reply(original, &cond, Some(text));
        self.presence_out(reply);
    }

    /// The SIP URI of an XMPP user (explicit mapping first), without `;gr`.
    fn user_sip_uri(&self, bare: &str) -> Option<String> {
        let jid: Jid = bare.parse().ok()?;
        let mut uri = match self.mappings.by_jid(bare) {
            Ok(Some(m)) => m.sip.parse::<SipUri>().ok()?,
            _ => self.addresses.jid_sender_to_sip(&jid).ok()?,
        };
        uri.params.retain(|(k, _)| !k.eq_ignore_ascii_case("gr"));
        Some(uri.to_string())
    }

    // ------------------------------------------------------------ routing

    /// A presence stanza to a contact JID (`to` has a localpart at `C`).
    pub(in crate::core) fn on_presence_stanza(&mut self, now: Instant, s: Element) {
        counter!("stox_presence_stanzas_total", "direction" => "in").increment(1);
        let (Some(from), Some(to)) = (
            s.attr("from").and_then(|f| f.parse::<Jid>().ok()),
            s.attr("to").and_then(|t| t.parse::<Jid>().ok()),
        ) else {
            return;
        };
        if from.domain().as_str() == self.settings.component {
            return; // a contact of stox cannot send presence to another (loop)
        }
        let user = normalize_jid(from.to_bare().as_str());
        let contact = normalize_jid(to.to_bare().as_str());
        match s.attr("type") {
            Some("subscribe") => self.watch_subscribe(now, &s, user, contact),
            Some("unsubscribe") => self.watch_unsubscribe(now, user, contact),
            Some("probe") => self.watch_probe(now, &s, user, contact),
            Some("subscribed") => self.authorize(now, user, contact),
            Some("unsubscribed") => self.revoke(now, user, contact),
            None | Some("unavailable") => self.user_presence(now, &s, &from, user, contact),
            Some("error") => self.presence_bounced(now, user, contact),
            _ => {}
        }
    }

    /// Routes a SIP presence request (SUBSCRIBE, NOTIFY, PUBLISH).
    pub(in crate::core) fn on_presence_request(&mut self, now: Instant, tx: TxId, req: SipRequest) {
        let to_tag = req.header("To").and_then(tag_of).map(str::to_owned);
        match (req.method.as_str(), to_tag) {
            ("NOTIFY", Some(tag)) => self.on_notify(now, tx, &req, &tag),
            ("NOTIFY", None) => self.reply_warn(tx, 481, "NOTIFY outside any subscription"),
            ("SUBSCRIBE", Some(tag)) => self.on_resubscribe(now, tx, &req, &tag),
            ("SUBSCRIBE", None) => self.on_subscribe(now, tx, &req),
            ("PUBLISH", _) => self.on_publish(now, tx, &req),
            _ => self.reply(tx, 405, vec![]),
        }
    }

    fn reply_warn(&mut self, tx: TxId, code: u16, why: &str) {
        debug!(code, %why, "presence request refused");
        counter!("stox_presence_rejected_total", "code" => code.to_string()).increment(1);
        let warning = format!("399 stox \"{}\"", why.replace(['"', '\\', '\r', '\n'], " "));
        self.reply(tx, code, vec![("Warning".into(), warning)]);
    }

    /// Whether the presence part of a response belongs here (then it was handled).
    pub(in crate::core) fn on_presence_response(
        &mut self,
        now: Instant,
        tx: TxId,
        result: &Result<SipResponse, SendFailure>,
    ) -> bool {
        let Some(p) = self.presence.txs.remove(&tx) else {
            return false;
        };
        match p {
            PresTx::Subscribe {
                watch,
                call_id,
                account,
            } => {
                if let (Ok(r), Some((key, req, transport))) = (result, account) {
                    if self.answer_subscribe_challenge(watch, &call_id, key, *req, transport, r) {
                        return true;
                    }
                }
                self.on_subscribe_response(now, watch, &call_id, result)
            }
            PresTx::Notify { watcher } => self.on_notify_response(now, watcher, result),
        }
        true
    }

    /// Runs presence deadlines.
    pub(in crate::core) fn presence_handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, timer)) = self.presence.timers.first() {
            if at > now {
                break;
            }
            self.presence.timers.remove(&(at, timer));
            self.presence.scheduled.remove(&timer);
            match timer {
                Timer::Watch(id) => {
                    let held = match self.presence.watches.get_mut(&id) {
                        Some(e) => {
                            e.machine.handle_timeout(now);
                            e.held.take_if(|(at, _)| *at <= now).map(|(_, b)| b)
                        }
                        None => None,
                    };
                    if let Some(body) = held {
                        self.translate_watch(now, id, body);
                    }
                    self.run_watch(now, id);
                }
                Timer::Watcher(id) => {
                    if let Some(e) = self.presence.watchers.get_mut(&id) {
                        e.machine.handle_timeout(now);
                    }
                    self.run_watcher(now, id);
                }
                Timer::Publications => self.expire_publications(now),
            }
        }
    }

    // ------------------------------------------- XMPP user watches a SIP contact

    fn watch_subscribe(&mut self, now: Instant, s: &Element, user: String, contact: String) {
        if let Some(&id) = self
            .presence
            .watch_by_pair
            .get(&(user.clone(), contact.clone()))
        {
            if let Some(e) = self.presence.watches.get_mut(&id) {
                if e.local {
                    self.local_watch_answer(id, true);
                    return;
                }
                e.machine.on_xmpp_subscribe(now);
            }
            self.run_watch(now, id);
            return;
        }
        let p = self.settings.presence.clone();
        if !allow(
            &mut self.presence.xmpp_buckets,
            user.clone(),
            now,
            p.rate_per_source,
            p.rate_burst,
        ) {
            counter!("stox_presence_rate_limited_total", "side" => "xmpp").increment(1);
            return self.presence_error(
                s,
                DefinedCondition::ResourceConstraint,
                "too many subscription requests; try again later",
            );
        }
        if self.presence.subscription_count() >= p.max_subscriptions {
            warn!(
                max = p.max_subscriptions,
                "presence: subscription limit reached"
            );
            return self.presence_error(
                s,
                DefinedCondition::ResourceConstraint,
                "the gateway has too many subscriptions",
            );
        }
        let Some(id) = self.new_watch(s, &user, &contact) else {
            return;
        };
        let local = self.presence.watches.get(&id).is_some_and(|e| e.local);
        if local {
            self.local_watch_answer(id, true);
            self.persist_watch(id);
            return;
        }
        if let Some(e) = self.presence.watches.get_mut(&id) {
            e.machine.on_xmpp_subscribe(now);
        }
        self.run_watch(now, id);
    }

    /// A new watch for (user, contact), or `None` after answering an error.
    fn new_watch(&mut self, s: &Element, user: &str, contact: &str) -> Option<u64> {
        let contact_jid: Jid = match contact.parse() {
            Ok(j) => j,
            Err(e) => {
                self.presence_error(s, DefinedCondition::JidMalformed, &e.to_string());
                return None;
            }
        };
        // The user's external account (`<target>#<id>@C` picks one, else the default).
        let (account, plain) = match user.parse::<Jid>() {
            Ok(u) => self.account_for(&u, &contact_jid),
            Err(_) => (None, contact_jid.clone()),
        };
        let target = match self.sip_target_of(&plain) {
            Ok(t) => t,
            Err(why) => {
                self.presence_error(s, DefinedCondition::ItemNotFound, &why);
                return None;
            }
        };
        if target.scheme == Scheme::Sips {
            self.presence_error(
                s,
                DefinedCondition::NotAcceptable,
                "SIPS URIs are not translated (RFC 7247 §8)",
            );
            return None;
        }
        let local = target.host.eq_ignore_ascii_case(&self.settings.component);
        // SIP users of `C` are reached directly, never through an account.
        let account = account.filter(|_| !local);
        let from_uri = match &account {
            // The provider sees the account's identity, never the XMPP address.
            Some(a) => a.from_name_addr().ok(),
            None => self.user_sip_uri(user),
        };
        let Some(from_uri) = from_uri else {
            self.presence_error(
                s,
                DefinedCondition::JidMalformed,
                "no SIP form of the sender",
            );
            return None;
        };
        let target_aor = aor_string(&target);
        let id = self.presence.next_id();
        let entry = WatchEntry {
            user: user.to_owned(),
            contact: contact.to_owned(),
            target: target_aor,
            from_uri,
            local,
            machine: Watch::new(),
            dialog: None,
            stored_cseq: 0,
            announced: BTreeSet::new(),
            lang: None,
            last_translated: None,
            held: None,
            account: account.map(|a| a.key()),
        };
        self.insert_watch(id, entry);
        info!(%user, %contact, local, "presence: XMPP user watches a SIP contact");
        Some(id)
    }

    fn insert_watch(&mut self, id: u64, e: WatchEntry) {
        let st = &mut self.presence;
        st.watch_by_pair
            .insert((e.user.clone(), e.contact.clone()), id);
        if e.local {
            st.local_watches_of
                .entry(e.contact.clone())
                .or_default()
                .insert(id);
        }
        if let Some(d) = &e.dialog {
            st.watch_by_dialog
                .insert((d.call_id.clone(), d.local_tag.clone()), id);
        }
        st.watches.insert(id, e);
    }

    fn remove_watch(&mut self, now: Instant, id: u64) {
        let st = &mut self.presence;
        let Some(e) = st.watches.remove(&id) else {
            return;
        };
        st.watch_by_pair
            .remove(&(e.user.clone(), e.contact.clone()));
        if let Some(d) = &e.dialog {
            let key = (d.call_id.clone(), d.local_tag.clone());
            st.watch_by_dialog.remove(&key);
            if st.closing.len() > 10_000 {
                st.closing.retain(|_, until| *until > now);
            }
            st.closing.insert(key, now + CLOSING_FOR);
        }
        if let Some(set) = st.local_watches_of.get_mut(&e.contact) {
            set.remove(&id);
            if set.is_empty() {
                st.local_watches_of.remove(&e.contact);
            }
        }
        st.schedule(Timer::Watch(id), None);
        self.store_remove(Table::Watches, &pair_key(&e.user, &e.contact));
    }

    fn persist_watch(&mut self, id: u64) {
        let Some(e) = self.presence.watches.get_mut(&id) else {
            return;
        };
        if let Some(d) = &e.dialog {
            e.stored_cseq = d.local_cseq;
        }
        let rec = WatchRecord {
            user: e.user.clone(),
            contact: e.contact.clone(),
            target: e.target.clone(),
            from_uri: e.from_uri.clone(),
            local: e.local,
            authorized: e.machine.authorized() || e.local,
            expires: e.machine.expires(),
            dialog: e.dialog.clone(),
            cached: e
                .machine
                .cached()
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            lang: e.lang.clone(),
            account: e.account.clone(),
        };
        let key = pair_key(&e.user, &e.contact);
        self.store_put(Table::Watches, &key, &rec);
    }

    fn watch_unsubscribe(&mut self, now: Instant, user: String, contact: String) {
        let id = self
            .presence
            .watch_by_pair
            .get(&(user.clone(), contact.clone()));
        match id.copied() {
            Some(id) => {
                let local = match self.presence.watches.get_mut(&id) {
                    Some(e) if e.local => true,
                    Some(e) => {
                        e.machine.on_xmpp_unsubscribe(now);
                        false
                    }
                    None => false,
                };
                if local {
                    self.watch_ended(now, id, true);
                } else {
                    self.run_watch(now, id);
                }
            }
            // RFC 6121 §3.3.3: an unsubscribe for no subscription still gets unsubscribed.
            None => self.presence_out(presence_stanza(&contact, &user, Some("unsubscribed"))),
        }
    }

    fn watch_probe(&mut self, now: Instant, s: &Element, user: String, contact: String) {
        match self
            .presence
            .watch_by_pair
            .get(&(user.clone(), contact.clone()))
            .copied()
        {
            Some(id) => {
                let (local, cached) = match self.presence.watches.get_mut(&id) {
                    Some(e) if e.local => (true, None),
                    Some(e) => {
                        // The user's server probes when she logs in: RFC 8048 §5 asks for a
                        // refresh then; the probe is answered from the cache at once (an
                        // answer, not a change: no rate limit), or by a one-shot fetch.
                        let cached = match e.machine.cached() {
                            Some(c) if e.machine.authorized() => Some(c.to_vec()),
                            _ => {
                                e.machine.on_xmpp_probe(now);
                                None
                            }
                        };
                        e.machine.on_xmpp_available(now);
                        (false, cached)
                    }
                    None => return,
                };
                if local {
                    self.local_watch_answer(id, false);
                } else {
                    if let Some(body) = cached {
                        self.translate_watch_now(id, body);
                    }
                    self.run_watch(now, id);
                }
            }
            // A probe from a roster that believes in a subscription stox has no record of
            // (an older stox, a lost store): subscribe again, so it is repaired.
            None => {
                debug!(%user, %contact, "probe without a watch: subscribing");
                self.watch_subscribe(now, s, user, contact);
            }
        }
    }

    /// `subscribed` + the published presence to an XMPP watcher of a local presentity.
    fn local_watch_answer(&mut self, id: u64, subscribed: bool) {
        let Some(e) = self.presence.watches.get(&id) else {
            return;
        };
        let (user, contact, aor) = (e.user.clone(), e.contact.clone(), e.target.clone());
        if subscribed {
            self.presence_out(presence_stanza(&contact, &user, Some("subscribed")));
        }
        let body = self
            .presence
            .publications
            .composed(&aor)
            .unwrap_or_default();
        if let Some(e) = self.presence.watches.get_mut(&id) {
            e.lang = body.1;
            e.last_translated = None;
        }
        self.translate_watch_now(id, body.0);
    }

    fn send_subscribe(&mut self, id: u64, expires: u32, new_dialog: bool) {
        // Through an external account: its Contact, transport and outbound proxy.
        let account = self
            .presence
            .watches
            .get(&id)
            .and_then(|e| e.account.as_deref())
            .and_then(|k| self.account_by_key(k));
        let tcp_default = match &account {
            Some(a) => self.transport_of(a) == Transport::Tcp,
            None => self.settings.default_transport == Transport::Tcp,
        };
        let fresh_call = format!("{}@stox", self.fresh_id());
        let fresh_tag = self.fresh_id();
        let contact_tcp;
        let (req, tcp, call_id) = {
            let Some(e) = self.presence.watches.get_mut(&id) else {
                return;
            };
            // A SUBSCRIBE that never made a dialog (423, a timeout, 5xx) is retried with the
            // same Call-ID and tag and the next CSeq (RFC 3261 §8.1.3.5, as for 401/407):
            // only a dialog the notifier knew (481) or ended needs a new one.
            let unestablished = e.dialog.as_ref().is_some_and(|d| d.remote_tag.is_none());
            let renew = e.dialog.is_none() || (new_dialog && !unestablished);
            if renew {
                if let Some(old) = e.dialog.take() {
                    self.presence
                        .watch_by_dialog
                        .remove(&(old.call_id, old.local_tag));
                }
                let d = DialogRecord {
                    call_id: fresh_call,
                    local_tag: fresh_tag,
                    remote_tag: None,
                    local_uri: e.from_uri.clone(),
                    remote_uri: e.target.clone(),
                    remote_target: e.target.clone(),
                    route: Vec::new(),
                    local_cseq: 1,
                    tcp: tcp_default,
                    flow: None,
                };
                self.presence
                    .watch_by_dialog
                    .insert((d.call_id.clone(), d.local_tag.clone()), id);
                e.dialog = Some(d);
            }
            let Some(d) = e.dialog.as_mut() else { return };
            if !renew {
                d.local_cseq = d.local_cseq.saturating_add(1);
            }
            contact_tcp = d.tcp;
            let req = subscribe_in(d, expires);
            (req, d.tcp, d.call_id.clone())
        };
        let mut req = req;
        // The default transport when it is a secured one (`sips:` outbound proxy): never
        // downgraded to UDP.
        let transport = self.subscribe_transport(tcp, account.as_ref());
        let contact = match &account {
            Some(a) => format!("<{}>", self.account_contact(a)),
            None => self.own_contact(contact_tcp),
        };
        req.headers.push(("Contact".into(), contact));
        let account = account.map(|a| {
            req.next_hop = a.outbound_proxy.clone();
            (a.key(), Box::new(req.clone()), transport)
        });
        let tx = self.next_tx;
        self.next_tx -= 1;
        self.presence.txs.insert(
            tx,
            PresTx::Subscribe {
                watch: id,
                call_id,
                account,
            },
        );
        counter!("stox_presence_subscribe_total", "direction" => "out").increment(1);
        debug!(tx, uri = %req.uri, expires, "presence: SUBSCRIBE");
        self.outputs
            .push_back(Output::SipSend { tx, req, transport });
    }

    /// An external account goes (removed, or its AOR or registrar changed): the presence
    /// subscriptions that exist through it end before it unregisters.
    ///
    /// * An XMPP user watching a SIP contact through it: `SUBSCRIBE` with `Expires: 0` in
    ///   the dialog (RFC 6665 §4.1.2.3), through the account (its Contact, its outbound
    ///   proxy, one challenge answered with its credentials). The contact's authorization
    ///   was given to the account's AOR, so the XMPP user is told the contact is
    ///   `unavailable` and `unsubscribed`; he may subscribe again through another account.
    /// * A SIP watcher of the user at the account's AOR (its SUBSCRIBE reached the account's
    ///   Contact): `NOTIFY` with `Subscription-State: terminated;reason=noresource`
    ///   (RFC 6665 §4.2.2: the resource no longer exists, the watcher should not subscribe
    ///   again; `deactivated` would send it back at once to an AOR that no longer leads
    ///   to the user), and the subscription is forgotten.
    pub(in crate::core) fn end_account_subscriptions(&mut self, rec: &AccountRecord) {
        let now = self.last_now;
        let key = rec.key();
        let mut watches: Vec<u64> = self
            .presence
            .watches
            .iter()
            .filter(|(_, e)| e.account.as_deref() == Some(key.as_str()))
            .map(|(id, _)| *id)
            .collect();
        watches.sort_unstable();
        for id in watches {
            self.unsubscribe_through(id, rec);
            info!(account = %key, "presence: watch through a removed account ended");
            self.watch_ended(now, id, true);
        }
        let contact_user = rec.contact_user();
        let mut watchers: Vec<u64> = self
            .presence
            .watchers
            .iter()
            .filter(|(_, e)| {
                e.account_contact
                    .as_deref()
                    .and_then(|c| c.parse::<SipUri>().ok())
                    .and_then(|u| u.user)
                    .is_some_and(|u| u == contact_user)
            })
            .map(|(id, _)| *id)
            .collect();
        watchers.sort_unstable();
        for id in watchers {
            self.send_notify(
                id,
                SubState::Terminated {
                    reason: Some("noresource".into()),
                    retry_after: None,
                },
                None,
            );
            info!(account = %key, "presence: SIP watcher at a removed account's Contact: terminated;reason=noresource");
            self.remove_watcher(id);
        }
    }

    /// The transport of a watch's SUBSCRIBE: TLS only through a `tls` account, else TCP for
    /// a dialog over TCP, else the default transport when it is a secured one (a `sips:`
    /// outbound proxy: never downgraded), else UDP.
    fn subscribe_transport(&self, tcp: bool, account: Option<&AccountRecord>) -> Transport {
        match self.settings.default_transport {
            _ if account.is_some_and(|a| self.transport_of(a) == Transport::Tls) => Transport::Tls,
            _ if tcp => Transport::Tcp,
            t if t.is_secure() => t,
            _ => Transport::Udp,
        }
    }

    /// `SUBSCRIBE` with `Expires: 0` in a watch's dialog, through the account `rec`.
    fn unsubscribe_through(&mut self, id: u64, rec: &AccountRecord) {
        let contact = format!("<{}>", self.account_contact(rec));
        let Some(d) = self
            .presence
            .watches
            .get_mut(&id)
            .and_then(|e| e.dialog.as_mut())
        else {
            return; // no dialog: nothing to end on the SIP side
        };
        if d.remote_tag.is_none() {
            // The notifier never made the dialog (a challenge or an error ended the last
            // SUBSCRIBE): there is no subscription to end.
            return;
        }
        d.local_cseq = d.local_cseq.saturating_add(1);
        let mut req = subscribe_in(d, 0);
        req.headers.push(("Contact".into(), contact));
        // The account's outbound proxy, as for the dialog's other requests.
        req.next_hop = rec.outbound_proxy.clone();
        let tcp = d.tcp;
        let transport = self.subscribe_transport(tcp, Some(rec));
        debug!(uri = %req.uri, "presence: SUBSCRIBE Expires: 0 through a removed account");
        counter!("stox_presence_subscribe_total", "direction" => "out").increment(1);
        self.farewell(rec.clone(), req, transport, false);
    }

    /// A provider's `401`/`407` to a SUBSCRIBE sent through an account: the same request
    /// with CSeq + 1 and the account's credentials, once per request. `false`: not a
    /// challenge, or not answerable (the response then goes to the watch as any failure).
    fn answer_subscribe_challenge(
        &mut self,
        watch: u64,
        call_id: &str,
        key: String,
        req: OutRequest,
        transport: Transport,
        r: &SipResponse,
    ) -> bool {
        if !matches!(r.code, 401 | 407) {
            return false;
        }
        let authorized = req.headers.iter().any(|(n, _)| {
            n.eq_ignore_ascii_case("Authorization") || n.eq_ignore_ascii_case("Proxy-Authorization")
        });
        if authorized {
            return false; // the credentials were refused
        }
        let current = self
            .presence
            .watches
            .get(&watch)
            .and_then(|e| e.dialog.as_ref())
            .is_some_and(|d| d.call_id == call_id);
        if !current {
            return false;
        }
        let Some(req) = self.answer_challenge(&key, req, r) else {
            return false;
        };
        let cseq = req.dialog.as_ref().map_or(0, |d| d.cseq);
        if let Some(d) = self
            .presence
            .watches
            .get_mut(&watch)
            .and_then(|e| e.dialog.as_mut())
        {
            d.local_cseq = d.local_cseq.max(cseq);
        }
        let tx = self.next_tx;
        self.next_tx -= 1;
        self.presence.txs.insert(
            tx,
            PresTx::Subscribe {
                watch,
                call_id: call_id.to_owned(),
                account: Some((key, Box::new(req.clone()), transport)),
            },
        );
        debug!(tx, uri = %req.uri, "presence: SUBSCRIBE with the account's credentials");
        self.outputs
            .push_back(Output::SipSend { tx, req, transport });
        true
    }

    fn on_subscribe_response(
        &mut self,
        now: Instant,
        id: u64,
        call_id: &str,
        result: &Result<SipResponse, SendFailure>,
    ) {
        let Some(e) = self.presence.watches.get_mut(&id) else {
            return;
        };
        if e.dialog.as_ref().map(|d| d.call_id.as_str()) != Some(call_id) {
            return; // a response about a dialog already replaced
        }
        let (code, expires, min_expires) = match result {
            Ok(r) => {
                if (200..300).contains(&r.code) {
                    if let Some(d) = e.dialog.as_mut() {
                        // RFC 3261 §12.1.2: the dialog takes the To tag, the Contact as
                        // remote target and the Record-Route, reversed, as route set.
                        if d.remote_tag.is_none() {
                            d.remote_tag = r.header("To").and_then(tag_of).map(str::to_owned);
                            let mut route: Vec<String> = header_values(&r.headers, "Record-Route")
                                .into_iter()
                                .map(str::to_owned)
                                .collect();
                            route.reverse();
                            d.route = route;
                        }
                        if let Some(c) = r.header("Contact") {
                            d.remote_target = uri_of_name_addr(c).to_owned();
                        }
                    }
                } else {
                    info!(code = r.code, reason = %r.reason, contact = %e.contact, "presence: SUBSCRIBE refused");
                }
                (
                    r.code,
                    r.header("Expires").and_then(|v| v.parse().ok()),
                    r.header("Min-Expires").and_then(|v| v.parse().ok()),
                )
            }
            Err(SendFailure::Timeout) => (408, None, None),
            Err(SendFailure::Transport(why) | SendFailure::FlowFailed(why)) => {
                info!(%why, contact = %e.contact, "presence: SUBSCRIBE not sent");
                (503, None, None)
            }
        };
        e.machine.on_response(now, code, expires, min_expires);
        self.run_watch(now, id);
        if (200..300).contains(&code) {
            self.persist_watch(id);
        }
    }

    fn on_notify(&mut self, now: Instant, tx: TxId, req: &SipRequest, to_tag: &str) {
        counter!("stox_presence_notify_total", "direction" => "in").increment(1);
        let call_id = req.header("Call-ID").unwrap_or_default().to_owned();
        let Some(&id) = self
            .presence
            .watch_by_dialog
            .get(&(call_id.clone(), to_tag.to_owned()))
        else {
            let key = (call_id, to_tag.to_owned());
            if self.presence.closing.get(&key).is_some_and(|t| *t > now) {
                // The last words of a subscription stox ended: acknowledged, not translated.
                return self.reply(tx, 200, vec![]);
            }
            return self.reply_warn(tx, 481, "no such subscription");
        };
        if !is_presence_event(req.header("Event")) {
            return self.reply(tx, 489, vec![("Allow-Events".into(), EVENT.into())]);
        }
        let Some(state) = req.header("Subscription-State").and_then(parse_sub_state) else {
            return self.reply_warn(tx, 400, "no Subscription-State (RFC 6665 §8.2.3)");
        };
        let body_present = !req.body.iter().all(u8::is_ascii_whitespace);
        if body_present {
            if !is_pidf(req.header("Content-Type")) {
                return self.reply(tx, 415, vec![("Accept".into(), PIDF.into())]);
            }
            if let Err(e) = pidf::parse(&req.body) {
                warn!(error = %e, %call_id, "presence: NOTIFY with bad PIDF refused");
                return self.reply_warn(tx, 400, &format!("bad PIDF: {e}"));
            }
        }
        let from_tag = req.header("From").and_then(tag_of).map(str::to_owned);
        let Some(e) = self.presence.watches.get_mut(&id) else {
            return self.reply_warn(tx, 481, "no such subscription");
        };
        if let Some(d) = e.dialog.as_mut() {
            match (&d.remote_tag, &from_tag) {
                (None, Some(t)) => {
                    // RFC 6665 §4.1.2.4: the NOTIFY may come before the 200; it makes the
                    // dialog, with its Record-Route as route set.
                    d.remote_tag = Some(t.clone());
                    d.route = header_values(&req.headers, "Record-Route")
                        .into_iter()
                        .map(str::to_owned)
                        .collect();
                }
                (Some(mine), Some(t)) if mine != t => {
                    // A second dialog from a forked SUBSCRIBE: one is enough.
                    return self.reply_warn(tx, 481, "forked subscription not kept");
                }
                _ => {}
            }
            if let Some(c) = req.header("Contact") {
                d.remote_target = uri_of_name_addr(c).to_owned();
            }
        }
        if let Some(l) = req.header("Content-Language") {
            e.lang = Some(l.to_owned());
        }
        let terminated = matches!(state, SubState::Terminated { .. });
        let body = if body_present {
            req.body.clone()
        } else {
            Vec::new()
        };
        self.reply(tx, 200, vec![]);
        if let Some(e) = self.presence.watches.get_mut(&id) {
            e.machine.on_notify(now, state, body);
            if terminated {
                // The dialog is over; a new SUBSCRIBE makes a new one.
                if let Some(d) = e.dialog.take() {
                    self.presence
                        .watch_by_dialog
                        .remove(&(d.call_id, d.local_tag));
                }
            }
        }
        self.run_watch(now, id);
        self.persist_watch(id);
    }

    /// Carries out what a watch's machine decided.
    fn run_watch(&mut self, now: Instant, id: u64) {
        let Some(e) = self.presence.watches.get_mut(&id) else {
            return;
        };
        let actions = e.machine.take_actions();
        let (user, contact) = (e.user.clone(), e.contact.clone());
        for a in actions {
            match a {
                WatchAction::Subscribe {
                    expires,
                    new_dialog,
                } => self.send_subscribe(id, expires, new_dialog),
                WatchAction::Subscribed => {
                    info!(%user, %contact, "presence: subscription approved by the SIP side");
                    self.presence_out(presence_stanza(&contact, &user, Some("subscribed")));
                }
                WatchAction::Unsubscribed => {
                    info!(%user, %contact, "presence: subscription ended");
                }
                WatchAction::Presence(body) => self.translate_watch(now, id, body),
            }
        }
        let ended = self
            .presence
            .watches
            .get(&id)
            .is_some_and(|e| e.machine.ended());
        if ended {
            return self.watch_ended(now, id, true);
        }
        let next = self.presence.watches.get(&id).and_then(|e| {
            [e.machine.poll_timeout(), e.held.as_ref().map(|(t, _)| *t)]
                .into_iter()
                .flatten()
                .min()
        });
        self.presence.schedule(Timer::Watch(id), next);
        // Keep the stored CSeq close (CSEQ_RESTORE_MARGIN).
        let stale = self.presence.watches.get(&id).is_some_and(|e| {
            e.dialog
                .as_ref()
                .is_some_and(|d| d.local_cseq >= e.stored_cseq + CSEQ_PERSIST_EVERY)
        });
        if stale {
            self.persist_watch(id);
        }
    }

    /// The authorization ended: unavailable for what was announced, `unsubscribed`, and the
    /// watch is forgotten.
    fn watch_ended(&mut self, now: Instant, id: u64, tell: bool) {
        if let Some(e) = self.presence.watches.get_mut(&id) {
            let announced = std::mem::take(&mut e.announced);
            let (user, contact) = (e.user.clone(), e.contact.clone());
            if tell {
                for r in announced {
                    let from = if r.is_empty() {
                        contact.clone()
                    } else {
                        format!("{contact}/{r}")
                    };
                    self.presence_out(presence_stanza(&from, &user, Some("unavailable")));
                }
                self.presence_out(presence_stanza(&contact, &user, Some("unsubscribed")));
            }
        }
        self.remove_watch(now, id);
    }

    /// A NOTIFY body for the watch's user, rate-limited per watch.
    fn translate_watch(&mut self, now: Instant, id: u64, body: Vec<u8>) {
        let Some(e) = self.presence.watches.get_mut(&id) else {
            return;
        };
        if let Some(last) = e.last_translated {
            if now < last + MIN_TRANSLATE_INTERVAL {
                counter!("stox_presence_coalesced_total", "direction" => "sip_to_xmpp")
                    .increment(1);
                e.held = Some((last + MIN_TRANSLATE_INTERVAL, body));
                let at = e.held.as_ref().map(|(t, _)| *t);
                let next = [e.machine.poll_timeout(), at].into_iter().flatten().min();
                self.presence.schedule(Timer::Watch(id), next);
                return;
            }
        }
        e.last_translated = Some(now);
        e.held = None;
        self.translate_watch_now(id, body);
    }

    /// RFC 8048 Table 2: the stanzas of a PIDF body, one resource per tuple, with the
    /// contact's caps on available ones (so clients offer calls), and `unavailable` for the
    /// resources that vanished since the last time.
    fn translate_watch_now(&mut self, id: u64, body: Vec<u8>) {
        let Some(e) = self.presence.watches.get_mut(&id) else {
            return;
        };
        let stanzas = match xlate::body_to_stanzas(&body, &e.contact, &e.user, e.lang.as_deref()) {
            Ok(s) => s,
            Err(err) => {
                warn!(error = %err, contact = %e.contact, "presence: PIDF not translated");
                return;
            }
        };
        let mut now_available = BTreeSet::new();
        let mut out = Vec::with_capacity(stanzas.len() + 1);
        for mut s in stanzas {
            let resource = s
                .attr("from")
                .and_then(|f| f.split_once('/'))
                .map(|(_, r)| r.to_owned())
                .unwrap_or_default();
            if s.attr("type").is_none() {
                s.append_child(stox_xmpp::presence::contact_caps());
                now_available.insert(resource);
            }
            out.push(s);
        }
        let gone: Vec<String> = e.announced.difference(&now_available).cloned().collect();
        let (user, contact) = (e.user.clone(), e.contact.clone());
        e.announced = now_available;
        if !gone.is_empty() {
            // "Nothing known" (an unavailable from the bare JID) is said by the resources
            // that go away.
            out.retain(|s| {
                !(s.attr("type") == Some("unavailable") && s.attr("from") == Some(contact.as_str()))
            });
        }
        for r in gone {
            let from = if r.is_empty() {
                contact.clone()
            } else {
                format!("{contact}/{r}")
            };
            // A resource that was announced and is not in the new document, unless the new
            // document says something about it already.
            if !out.iter().any(|s| s.attr("from") == Some(from.as_str())) {
                out.push(presence_stanza(&from, &user, Some("unavailable")));
            }
        }
        for s in out {
            self.presence_out(s);
        }
    }

    // ----------------------------------------------- SIP user watches a presentity

    fn on_subscribe(&mut self, now: Instant, tx: TxId, req: &SipRequest) {
        counter!("stox_presence_subscribe_total", "direction" => "in").increment(1);
        let known = match (req.header("Call-ID"), req.header("From").and_then(tag_of)) {
            (Some(c), Some(t)) => self
                .presence
                .watcher_by_remote
                .get(&(c.to_owned(), t.to_owned()))
                .and_then(|id| self.presence.watchers.get(id))
                .map(|e| e.dialog.local_tag.clone()),
            _ => None,
        };
        if let Some(local_tag) = known {
            // The same dialog again without our tag: a refresh, answered with the tag.
            return self.on_resubscribe(now, tx, req, &local_tag);
        }
        let p = self.settings.presence.clone();
        if let Some(ip) = req.source.map(|s| s.ip()) {
            if !allow(
                &mut self.presence.sip_buckets,
                ip,
                now,
                p.rate_per_source,
                p.rate_burst,
            ) {
                counter!("stox_presence_rate_limited_total", "side" => "sip").increment(1);
                return self.reply(tx, 503, vec![("Retry-After".into(), "5".into())]);
            }
        }
        if !is_presence_event(req.header("Event")) {
            return self.reply(tx, 489, vec![("Allow-Events".into(), EVENT.into())]);
        }
        if !accepts_pidf(req) {
            return self.reply(tx, 406, vec![("Accept".into(), PIDF.into())]);
        }
        let expires = match self.granted_expires(req) {
            Ok(e) => e,
            Err(code_headers) => return self.reply(tx, code_headers.0, code_headers.1),
        };
        let presentity = match self.sip_presentity(req) {
            Ok(p) => p,
            Err((code, why)) => return self.reply_warn(tx, code, &why),
        };
        let watcher_jid = match self.sip_sender(req) {
            // Through a non-default account the watcher's JID carries `#<id>`.
            Ok(j) => normalize_jid(self.sender_through_account(req, j).to_bare().as_str()),
            Err((code, why)) => return self.reply_warn(tx, code, &why),
        };
        let Some(contact) = req.header("Contact").map(uri_of_name_addr) else {
            return self.reply_warn(tx, 400, "no Contact (RFC 6665 §4.1.2)");
        };
        let (Some(call_id), Some(from_tag), Some(from), Some(to)) = (
            req.header("Call-ID"),
            req.header("From").and_then(tag_of),
            req.header("From").map(uri_of_name_addr),
            req.header("To").map(uri_of_name_addr),
        ) else {
            return self.reply_warn(tx, 400, "Call-ID, From with tag and To are required");
        };
        if expires > 0 && self.presence.subscription_count() >= p.max_subscriptions {
            warn!(
                max = p.max_subscriptions,
                "presence: subscription limit reached"
            );
            return self.reply(tx, 503, vec![("Retry-After".into(), "60".into())]);
        }
        // At an external account's Contact: its AOR stands for the user, and its Contact is
        // stox's in the dialog (issue 5).
        let account = req
            .uri
            .parse::<SipUri>()
            .ok()
            .and_then(|u| self.account_of_request_uri(&u));
        let account_aor = account
            .as_ref()
            .and_then(|a| a.aor().ok())
            .map(|u| u.to_string());
        let account_contact = account.as_ref().map(|a| self.account_contact(a));
        let local_tag = self.fresh_id();
        let dialog = DialogRecord {
            call_id: call_id.to_owned(),
            local_tag: local_tag.clone(),
            remote_tag: Some(from_tag.to_owned()),
            local_uri: to.to_owned(),
            remote_uri: from.to_owned(),
            remote_target: contact.to_owned(),
            route: header_values(&req.headers, "Record-Route")
                .into_iter()
                .map(str::to_owned)
                .collect(),
            local_cseq: 0,
            tcp: req.transport == Transport::Tcp,
            flow: req
                .source
                .filter(|_| req.transport.is_stream())
                .map(|remote| crate::sipmsg::Flow {
                    transport: req.transport,
                    remote,
                }),
        };
        let (authorized, cached, lang) = match &presentity {
            Presentity::Local(aor) => {
                let (body, lang) = self
                    .presence
                    .publications
                    .composed(aor)
                    .unwrap_or_else(|| (closed_pidf(aor), None));
                (true, Some(body), lang)
            }
            Presentity::Xmpp(jid) => {
                let key = pair_key(jid, &watcher_jid);
                let authorized =
                    matches!(self.tables.get(Table::Authorizations, &key), Ok(Some(_)));
                let cached = self.user_pidf(jid, &watcher_jid, account_aor.as_deref());
                let lang = self
                    .presence
                    .cache
                    .get(&(jid.clone(), watcher_jid.clone()))
                    .and_then(|c| c.lang.clone());
                (authorized, cached, lang)
            }
        };
        let uri = from.to_owned();
        let to_tag = local_tag.clone();
        let contact_hdr = match &account_contact {
            Some(c) => format!("<{c}>"),
            None => self.own_contact(dialog.tcp),
        };
        self.reply_tagged(
            tx,
            200,
            vec![
                ("Expires".into(), expires.to_string()),
                ("Contact".into(), contact_hdr),
            ],
            Some(to_tag),
        );
        let id = self.presence.next_id();
        let machine = Watcher::new(now, expires, authorized, cached);
        info!(watcher = %uri, presentity = ?presentity, expires, authorized, "presence: SIP user subscribes");
        let entry = WatcherEntry {
            watcher_uri: uri,
            watcher_jid,
            presentity,
            machine,
            dialog,
            stored_cseq: 0,
            lang,
            account_aor,
            account_contact,
        };
        self.insert_watcher(id, entry);
        self.run_watcher(now, id);
        self.persist_watcher(id);
    }

    /// The Expires to grant, or the error response (423 with Min-Expires).
    #[allow(clippy::type_complexity)]
    fn granted_expires(&self, req: &SipRequest) -> Result<u32, (u16, Vec<(String, String)>)> {
        let p = &self.settings.presence;
        let asked = match req.header("Expires") {
            None => p.max_expires.min(super::DEFAULT_EXPIRES),
            Some(v) => v.parse::<u32>().map_err(|_| {
                (
                    400,
                    vec![(
                        "Warning".to_string(),
                        format!("399 stox \"bad Expires `{}`\"", v.replace('"', "")),
                    )],
                )
            })?,
        };
        if asked > 0 && asked < p.min_expires {
            return Err((423, vec![("Min-Expires".into(), p.min_expires.to_string())]));
        }
        Ok(asked.min(p.max_expires))
    }

    /// The presentity of a SUBSCRIBE or PUBLISH Request-URI.
    fn sip_presentity(&self, req: &SipRequest) -> Result<Presentity, (u16, String)> {
        // An external account's Contact: its XMPP user watched (issue 5).
        if let Some(a) = req
            .uri
            .parse::<SipUri>()
            .ok()
            .and_then(|u| self.account_of_request_uri(&u))
        {
            return Ok(Presentity::Xmpp(normalize_jid(&a.jid)));
        }
        let jid = self.sip_target_any(req)?;
        if jid.domain().as_str() == self.settings.component {
            let uri: SipUri = req
                .uri
                .parse()
                .map_err(|e| (400, format!("bad Request-URI: {e}")))?;
            let mut aor = uri.clone();
            aor.params.clear();
            aor.host = aor.host.to_ascii_lowercase();
            return Ok(Presentity::Local(aor.to_string()));
        }
        Ok(Presentity::Xmpp(normalize_jid(jid.to_bare().as_str())))
    }

    fn insert_watcher(&mut self, id: u64, e: WatcherEntry) {
        let st = &mut self.presence;
        st.watcher_by_dialog
            .insert((e.dialog.call_id.clone(), e.dialog.local_tag.clone()), id);
        if let Some(remote) = &e.dialog.remote_tag {
            st.watcher_by_remote
                .insert((e.dialog.call_id.clone(), remote.clone()), id);
        }
        match &e.presentity {
            Presentity::Xmpp(jid) => {
                st.watchers_of
                    .entry((jid.clone(), e.watcher_jid.clone()))
                    .or_default()
                    .insert(id);
            }
            Presentity::Local(aor) => {
                st.local_watchers_of
                    .entry(aor.clone())
                    .or_default()
                    .insert(id);
            }
        }
        st.watchers.insert(id, e);
    }

    fn remove_watcher(&mut self, id: u64) {
        let st = &mut self.presence;
        let Some(e) = st.watchers.remove(&id) else {
            return;
        };
        st.watcher_by_dialog
            .remove(&(e.dialog.call_id.clone(), e.dialog.local_tag.clone()));
        if let Some(remote) = &e.dialog.remote_tag {
            let key = (e.dialog.call_id.clone(), remote.clone());
            if st.watcher_by_remote.get(&key) == Some(&id) {
                st.watcher_by_remote.remove(&key);
            }
        }
        match &e.presentity {
            Presentity::Xmpp(jid) => {
                let key = (jid.clone(), e.watcher_jid.clone());
                if let Some(set) = st.watchers_of.get_mut(&key) {
                    set.remove(&id);
                    if set.is_empty() {
                        st.watchers_of.remove(&key);
                    }
                }
            }
            Presentity::Local(aor) => {
                if let Some(set) = st.local_watchers_of.get_mut(aor) {
                    set.remove(&id);
                    if set.is_empty() {
                        st.local_watchers_of.remove(aor);
                    }
                }
            }
        }
        st.schedule(Timer::Watcher(id), None);
        self.store_remove(
            Table::Watchers,
            &pair_key(&e.dialog.call_id, &e.dialog.local_tag),
        );
    }

    fn persist_watcher(&mut self, id: u64) {
        let Some(e) = self.presence.watchers.get_mut(&id) else {
            return;
        };
        let Some(expires_at) = e.machine.expires_at() else {
            return;
        };
        e.stored_cseq = e.dialog.local_cseq;
        let (presentity, local) = match &e.presentity {
            Presentity::Xmpp(j) => (j.clone(), false),
            Presentity::Local(a) => (a.clone(), true),
        };
        let rec = WatcherRecord {
            watcher_uri: e.watcher_uri.clone(),
            watcher_jid: e.watcher_jid.clone(),
            presentity,
            local,
            authorized: e.machine.authorized(),
            expires_unix: 0,
            dialog: e.dialog.clone(),
            account_aor: e.account_aor.clone(),
            account_contact: e.account_contact.clone(),
        };
        let key = pair_key(&e.dialog.call_id, &e.dialog.local_tag);
        let rec = WatcherRecord {
            expires_unix: self.unix_of(expires_at),
            ..rec
        };
        self.store_put(Table::Watchers, &key, &rec);
    }

    fn on_resubscribe(&mut self, now: Instant, tx: TxId, req: &SipRequest, to_tag: &str) {
        let call_id = req.header("Call-ID").unwrap_or_default().to_owned();
        let Some(&id) = self
            .presence
            .watcher_by_dialog
            .get(&(call_id, to_tag.to_owned()))
        else {
            // RFC 6665 §4.2.1.2: a refresh of a subscription that does not exist.
            return self.reply_warn(tx, 481, "no such subscription");
        };
        if !is_presence_event(req.header("Event")) {
            return self.reply(tx, 489, vec![("Allow-Events".into(), EVENT.into())]);
        }
        let from_tag = req.header("From").and_then(tag_of);
        let matches = self
            .presence
            .watchers
            .get(&id)
            .is_some_and(|e| e.dialog.remote_tag.as_deref() == from_tag);
        if !matches {
            return self.reply_warn(tx, 481, "no such subscription");
        }
        let expires = match self.granted_expires(req) {
            Ok(e) => e,
            Err((code, headers)) => return self.reply(tx, code, headers),
        };
        let Some(e) = self.presence.watchers.get_mut(&id) else {
            return;
        };
        if let Some(c) = req.header("Contact") {
            e.dialog.remote_target = uri_of_name_addr(c).to_owned();
        }
        let (account_contact, tcp) = (e.account_contact.clone(), e.dialog.tcp);
        let contact = match account_contact {
            Some(c) => format!("<{c}>"),
            None => self.own_contact(tcp),
        };
        let untagged = req.header("To").and_then(tag_of).is_none();
        self.reply_tagged(
            tx,
            200,
            vec![
                ("Expires".into(), expires.to_string()),
                ("Contact".into(), contact),
            ],
            untagged.then(|| to_tag.to_owned()),
        );
        if let Some(e) = self.presence.watchers.get_mut(&id) {
            e.machine.on_subscribe(now, expires);
        }
        self.run_watcher(now, id);
        self.persist_watcher(id);
    }

    fn run_watcher(&mut self, now: Instant, id: u64) {
        let Some(e) = self.presence.watchers.get_mut(&id) else {
            return;
        };
        let actions = e.machine.take_actions();
        let watcher_jid = e.watcher_jid.clone();
        let presentity = e.presentity.clone();
        for a in actions {
            match a {
                WatcherAction::AskXmpp => {
                    if let Presentity::Xmpp(jid) = &presentity {
                        self.ask_xmpp(now, jid, &watcher_jid, false);
                    }
                }
                WatcherAction::Probe => {
                    if let Presentity::Xmpp(jid) = &presentity {
                        self.ask_xmpp(now, jid, &watcher_jid, true);
                    }
                }
                WatcherAction::Notify { state, body } => self.send_notify(id, state, body),
            }
        }
        let Some(e) = self.presence.watchers.get(&id) else {
            return;
        };
        if e.machine.ended() {
            return self.remove_watcher(id);
        }
        let next = e.machine.poll_timeout();
        let stale = e.dialog.local_cseq >= e.stored_cseq + CSEQ_PERSIST_EVERY;
        self.presence.schedule(Timer::Watcher(id), next);
        if stale {
            self.persist_watcher(id);
        }
    }

    /// `<presence type='subscribe'>` (or `probe`) from the watcher's JID to the XMPP user,
    /// once per pair per [`ASK_DEDUP`].
    fn ask_xmpp(&mut self, now: Instant, presentity: &str, watcher_jid: &str, probe: bool) {
        let key = (presentity.to_owned(), watcher_jid.to_owned(), probe);
        if let Some(t) = self.presence.asked.get(&key) {
            if now < *t + ASK_DEDUP {
                return;
            }
        }
        if self.presence.asked.len() > 10_000 {
            self.presence.asked.retain(|_, t| now < *t + ASK_DEDUP);
        }
        self.presence.asked.insert(key, now);
        let kind = if probe { "probe" } else { "subscribe" };
        self.presence_out(presence_stanza(watcher_jid, presentity, Some(kind)));
    }

    fn send_notify(&mut self, id: u64, state: SubState, body: Option<Vec<u8>>) {
        let Some(e) = self.presence.watchers.get(&id) else {
            return;
        };
        let entity = e
            .account_aor
            .clone()
            .unwrap_or_else(|| e.dialog.local_uri.clone());
        let body = match (&state, body) {
            (SubState::Pending, _) => None,
            (_, Some(b)) => Some(b),
            // Active with nothing known: the presentity shows closed.
            (SubState::Active { .. }, None) => Some(closed_pidf(&entity)),
            (SubState::Terminated { .. }, None) => None,
        };
        let tcp = e.dialog.tcp;
        let flow = e.dialog.flow;
        let contact = match &e.account_contact {
            Some(c) => format!("<{c}>"),
            None => self.own_contact(tcp),
        };
        let Some(e) = self.presence.watchers.get_mut(&id) else {
            return;
        };
        e.dialog.local_cseq = e.dialog.local_cseq.saturating_add(1);
        let d = &e.dialog;
        let mut headers = vec![
            ("Max-Forwards".to_string(), "70".to_string()),
            ("Event".to_string(), EVENT.to_string()),
            ("Subscription-State".to_string(), sub_state_value(&state)),
            ("Contact".to_string(), contact),
        ];
        if body.is_some() {
            if let Some(l) = &e.lang {
                headers.push(("Content-Language".into(), super::super::one_line(l)));
            }
        }
        let req = OutRequest {
            method: "NOTIFY".into(),
            uri: d.remote_target.clone(),
            from: d.local_uri.clone(),
            to: d.remote_uri.clone(),
            call_id: Some(d.call_id.clone()),
            headers,
            content_type: body.as_ref().map(|_| PIDF.to_string()),
            body: body.unwrap_or_default(),
            flow: None,
            flow_only: false,
            dialog: Some(DialogRef {
                from_tag: d.local_tag.clone(),
                to_tag: d.remote_tag.clone(),
                cseq: d.local_cseq,
                route: d.route.clone(),
            }),
            next_hop: None,
        };
        let transport = match (flow, self.settings.default_transport) {
            (Some(f), _) => f.transport,
            (None, _) if tcp => Transport::Tcp,
            (None, t) if t.is_secure() => t,
            (None, _) => Transport::Udp,
        };
        let mut req = req;
        req.flow = flow;
        let tx = self.next_tx;
        self.next_tx -= 1;
        self.presence.txs.insert(tx, PresTx::Notify { watcher: id });
        counter!("stox_presence_notify_total", "direction" => "out").increment(1);
        debug!(tx, uri = %req.uri, state = %sub_state_value(&state), "presence: NOTIFY");
        self.outputs
            .push_back(Output::SipSend { tx, req, transport });
    }

    fn on_notify_response(
        &mut self,
        _now: Instant,
        id: u64,
        result: &Result<SipResponse, SendFailure>,
    ) {
        // RFC 6665 §4.2.2: a NOTIFY that times out, or gets 481 or another error that is
        // not about authentication, ends the subscription.
        let failure = match result {
            Ok(r) if r.code < 300 => return,
            Ok(r) if matches!(r.code, 401 | 407 | 491) => return,
            Ok(r) => format!("{} {}", r.code, r.reason),
            Err(SendFailure::Timeout) => "no response (timer F)".to_string(),
            Err(SendFailure::Transport(why) | SendFailure::FlowFailed(why)) => why.clone(),
        };
        if let Some(e) = self.presence.watchers.get(&id) {
            info!(watcher = %e.watcher_uri, %failure, "presence: NOTIFY failed; subscription removed");
            self.remove_watcher(id);
        }
    }

    /// The XMPP user approved the watcher JID.
    fn authorize(&mut self, now: Instant, presentity: String, watcher_jid: String) {
        info!(%presentity, watcher = %watcher_jid, "presence: XMPP user approved a SIP watcher");
        self.store_put(
            Table::Authorizations,
            &pair_key(&presentity, &watcher_jid),
            &AuthorizationRecord {
                since_unix: self.unix_of(now),
            },
        );
        let ids: Vec<u64> = self
            .presence
            .watchers_of
            .get(&(presentity, watcher_jid))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            if let Some(e) = self.presence.watchers.get_mut(&id) {
                e.machine.on_xmpp_subscribed(now);
            }
            self.run_watcher(now, id);
            self.persist_watcher(id);
        }
    }

    /// The XMPP user refused or revoked the watcher JID.
    fn revoke(&mut self, now: Instant, presentity: String, watcher_jid: String) {
        info!(%presentity, watcher = %watcher_jid, "presence: XMPP user refused a SIP watcher");
        self.store_remove(Table::Authorizations, &pair_key(&presentity, &watcher_jid));
        let key = (presentity, watcher_jid);
        self.presence.cache.remove(&key);
        let ids: Vec<u64> = self
            .presence
            .watchers_of
            .get(&key)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            if let Some(e) = self.presence.watchers.get_mut(&id) {
                e.machine.on_xmpp_unsubscribed(now);
            }
            self.run_watcher(now, id);
        }
    }

    /// A presence error about a pair: the XMPP user does not exist or refuses stanzas from
    /// the gateway. Pending watchers end with `noresource` (RFC 6665 §4.2.2).
    fn presence_bounced(&mut self, now: Instant, presentity: String, watcher_jid: String) {
        let key = (presentity, watcher_jid);
        let ids: Vec<u64> = self
            .presence
            .watchers_of
            .get(&key)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            let pending = self
                .presence
                .watchers
                .get(&id)
                .is_some_and(|e| !e.machine.authorized());
            if pending {
                info!(presentity = %key.0, "presence: subscription request bounced; watcher ends");
                self.send_notify(
                    id,
                    SubState::Terminated {
                        reason: Some("noresource".into()),
                        retry_after: None,
                    },
                    None,
                );
                self.remove_watcher(id);
            }
        }
        let _ = now;
    }

    /// Presence of an XMPP user as the watcher JID sees it (RFC 8048 Table 1).
    fn user_presence(
        &mut self,
        now: Instant,
        s: &Element,
        from: &Jid,
        presentity: String,
        watcher_jid: String,
    ) {
        let resource = from.resource().map(|r| r.to_string()).unwrap_or_default();
        let key = (presentity.clone(), watcher_jid.clone());
        let cache = self.presence.cache.entry(key.clone()).or_default();
        cache.lang = stanza::lang(s).map(str::to_owned).or(cache.lang.take());
        if s.attr("type") == Some("unavailable") {
            cache.resources.remove(&resource);
            if cache.resources.is_empty() {
                // The last one: keep it, so the document says closed.
                cache.resources.insert(resource, s.clone());
            }
        } else {
            cache
                .resources
                .retain(|_, st| st.attr("type") != Some("unavailable"));
            cache.resources.insert(resource, s.clone());
            while cache.resources.len() > MAX_RESOURCES {
                cache.resources.pop_first();
            }
        }
        let ids: Vec<u64> = self
            .presence
            .watchers_of
            .get(&key)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        if ids.is_empty() {
            return;
        }
        let Some(body) = self.user_pidf(&presentity, &watcher_jid, None) else {
            return;
        };
        let lang = self.presence.cache.get(&key).and_then(|c| c.lang.clone());
        for id in ids {
            // Through an external account: the account's AOR, no XMPP address.
            let aor = self
                .presence
                .watchers
                .get(&id)
                .and_then(|e| e.account_aor.clone());
            let body = match aor {
                Some(aor) => match self.user_pidf(&presentity, &watcher_jid, Some(&aor)) {
                    Some(b) => b,
                    None => continue,
                },
                None => body.clone(),
            };
            if let Some(e) = self.presence.watchers.get_mut(&id) {
                e.lang = lang.clone();
                e.machine.on_presence(now, body);
            }
            self.run_watcher(now, id);
        }
    }

    /// The PIDF of an XMPP user as a watcher JID was told it, `None` when nothing is known.
    /// With `account_aor` (a watcher at an external account's Contact) the entity is that
    /// AOR and the tuples carry no contact (no GRUU of the XMPP address).
    fn user_pidf(
        &self,
        presentity: &str,
        watcher_jid: &str,
        account_aor: Option<&str>,
    ) -> Option<Vec<u8>> {
        let cache = self
            .presence
            .cache
            .get(&(presentity.to_owned(), watcher_jid.to_owned()))?;
        let entity = match account_aor {
            Some(aor) => aor.to_owned(),
            None => self.user_sip_uri(presentity)?,
        };
        let tuples: Vec<pidf::Tuple> = cache
            .resources
            .iter()
            .filter_map(|(r, st)| {
                let full = if r.is_empty() {
                    presentity.to_owned()
                } else {
                    format!("{presentity}/{r}")
                };
                let gruu = full
                    .parse::<Jid>()
                    .ok()
                    .filter(|_| account_aor.is_none())
                    .and_then(|j| self.addresses.jid_sender_to_sip(&j).ok())
                    .map(|u| u.to_string());
                xlate::stanza_to_tuple(st, gruu.as_deref()).map(|t| t.tuple)
            })
            .collect();
        if tuples.is_empty() {
            return Some(closed_pidf(&entity));
        }
        Some(pidf::write(&xlate::document(&entity, tuples)).into_bytes())
    }

    // ------------------------------------------------------------- PUBLISH

    fn on_publish(&mut self, now: Instant, tx: TxId, req: &SipRequest) {
        counter!("stox_presence_publish_total").increment(1);
        let p = self.settings.presence.clone();
        if let Some(ip) = req.source.map(|s| s.ip()) {
            if !allow(
                &mut self.presence.sip_buckets,
                ip,
                now,
                p.rate_per_source,
                p.rate_burst,
            ) {
                counter!("stox_presence_rate_limited_total", "side" => "sip").increment(1);
                return self.reply(tx, 503, vec![("Retry-After".into(), "5".into())]);
            }
        }
        let aor = match self.sip_presentity(req) {
            Ok(Presentity::Local(aor)) => aor,
            Ok(Presentity::Xmpp(jid)) => {
                return self.reply_warn(
                    tx,
                    403,
                    &format!("{jid} is an XMPP user; its presence comes from XMPP"),
                )
            }
            Err((code, why)) => return self.reply_warn(tx, code, &why),
        };
        // Only dave publishes dave's presence (issue 5): Digest credentials of the
        // presentity, whatever the From says (407 when dave's UA uses stox as its proxy,
        // 401 otherwise).
        let owner = aor
            .parse::<SipUri>()
            .ok()
            .and_then(|u| u.user.clone())
            .unwrap_or_default();
        let from_local = req
            .header("From")
            .map(uri_of_name_addr)
            .and_then(|f| f.parse::<SipUri>().ok())
            .is_some_and(|f| self.local_aor(&f).is_some());
        match self.authenticate(now, req, from_local) {
            crate::core::registrar::Authn::User(u) if u == owner => {}
            crate::core::registrar::Authn::User(u) => {
                return self.reply_warn(tx, 403, &format!("{u} may not publish for {aor}"))
            }
            crate::core::registrar::Authn::Refuse(code, headers, _) => {
                return self.reply(tx, code, headers)
            }
        }
        if !is_presence_event(req.header("Event")) {
            return self.reply(tx, 489, vec![("Allow-Events".into(), EVENT.into())]);
        }
        let expires = match self.granted_expires(req) {
            Ok(e) => e,
            Err((code, headers)) => return self.reply(tx, code, headers),
        };
        let has_body = !req.body.iter().all(u8::is_ascii_whitespace);
        if has_body {
            if !is_pidf(req.header("Content-Type")) {
                return self.reply(tx, 415, vec![("Accept".into(), PIDF.into())]);
            }
            if let Err(e) = pidf::parse(&req.body) {
                warn!(error = %e, %aor, "presence: PUBLISH with bad PIDF refused");
                return self.reply_warn(tx, 400, &format!("bad PIDF: {e}"));
            }
        }
        let if_match = req.header("SIP-If-Match").map(str::to_owned);
        let new_etag = self.fresh_id();
        let lang = req.header("Content-Language").map(str::to_owned);
        let result = self.presence.publications.publish(
            now,
            PublishRequest {
                aor: &aor,
                if_match: if_match.as_deref(),
                expires,
                body: has_body.then_some(req.body.as_slice()),
                lang: lang.as_deref(),
                new_etag,
            },
        );
        let published = match result {
            Ok(r) => r,
            Err(e @ PublishError::UnknownEtag) | Err(e @ PublishError::NoBody) => {
                return self.reply_warn(tx, e.code(), e.reason())
            }
        };
        if let Some(old) = &if_match {
            self.store_remove(Table::Published, &pair_key(&aor, old));
        }
        let mut headers = vec![("Expires".to_string(), published.expires.to_string())];
        if let Some(etag) = &published.etag {
            headers.push(("SIP-ETag".into(), etag.clone()));
            if let Some(p) = self
                .presence
                .publications
                .of(&aor)
                .iter()
                .find(|p| &p.etag == etag)
            {
                let rec = PublicationRecord {
                    aor: aor.clone(),
                    etag: etag.clone(),
                    expires_unix: self.unix_of(p.expires_at),
                    body: String::from_utf8_lossy(&p.body).into_owned(),
                    lang: p.lang.clone(),
                    version: p.version,
                };
                self.store_put(Table::Published, &pair_key(&aor, etag), &rec);
            }
        }
        debug!(%aor, expires, etag = ?published.etag, changed = published.changed, "presence: PUBLISH");
        self.reply(tx, 200, headers);
        self.schedule_publications();
        if published.changed {
            self.local_presence_changed(now, &aor);
        }
    }

    fn schedule_publications(&mut self) {
        let next = self.presence.publications.next_expiry();
        self.presence.schedule(Timer::Publications, next);
    }

    fn expire_publications(&mut self, now: Instant) {
        let changed = self.presence.publications.expire(now);
        for (aor, gone) in changed {
            for etag in gone {
                self.store_remove(Table::Published, &pair_key(&aor, &etag));
            }
            info!(%aor, "presence: publication expired");
            self.local_presence_changed(now, &aor);
        }
        self.schedule_publications();
    }

    /// The composed state of a local presentity changed: its XMPP watchers get stanzas, its
    /// SIP watchers a NOTIFY.
    fn local_presence_changed(&mut self, now: Instant, aor: &str) {
        let (body, lang) = self
            .presence
            .publications
            .composed(aor)
            .unwrap_or_else(|| (closed_pidf(aor), None));
        let contact = aor
            .parse::<SipUri>()
            .ok()
            .and_then(|u| self.addresses.sip_target_to_jid(&u).ok())
            .map(|j| normalize_jid(j.to_bare().as_str()));
        if let Some(contact) = contact {
            let ids: Vec<u64> = self
                .presence
                .local_watches_of
                .get(&contact)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            for id in ids {
                if let Some(e) = self.presence.watches.get_mut(&id) {
                    e.lang = lang.clone();
                }
                self.translate_watch(now, id, body.clone());
                self.run_watch(now, id);
            }
        }
        let ids: Vec<u64> = self
            .presence
            .local_watchers_of
            .get(aor)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            if let Some(e) = self.presence.watchers.get_mut(&id) {
                e.lang = lang.clone();
                e.machine.on_presence(now, body.clone());
            }
            self.run_watcher(now, id);
        }
    }

    // ------------------------------------------------------ link, restore, admin

    /// The link is up: what was held goes out, the XMPP watchers of SIP contacts get the
    /// contacts' last known presence again, and watched XMPP users are probed. A restarted
    /// XMPP server (or a restarted stox) knows nothing of the other side, and the probes
    /// and broadcasts it sent while the component was away bounced.
    pub(in crate::core) fn presence_on_link_up(&mut self, now: Instant) {
        let held = std::mem::take(&mut self.presence.held);
        if !held.is_empty() {
            info!(
                count = held.len(),
                "presence: sending what was held while the link was down"
            );
        }
        for s in held {
            self.outputs.push_back(Output::Stanza(s));
        }
        let resend: Vec<(u64, Vec<u8>)> = self
            .presence
            .watches
            .iter()
            .filter_map(|(id, e)| {
                if e.local {
                    let body = self
                        .presence
                        .publications
                        .composed(&e.target)
                        .map(|(b, _)| b)
                        .unwrap_or_default();
                    Some((*id, body))
                } else if e.machine.authorized() {
                    e.machine.cached().map(|c| (*id, c.to_vec()))
                } else {
                    None
                }
            })
            .collect();
        for (id, body) in resend {
            self.translate_watch_now(id, body);
        }
        let pairs: Vec<(String, String, bool)> = self
            .presence
            .watchers
            .values()
            .filter_map(|e| match &e.presentity {
                Presentity::Xmpp(j) => {
                    Some((j.clone(), e.watcher_jid.clone(), e.machine.authorized()))
                }
                Presentity::Local(_) => None,
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for (presentity, watcher, authorized) in pairs {
            // Probes dedup per pair; subscription requests still pending are asked again
            // (an XMPP server that restarted may not have kept them).
            self.presence
                .asked
                .remove(&(presentity.clone(), watcher.clone(), authorized));
            self.ask_xmpp(now, &presentity, &watcher, authorized);
        }
    }

    /// Brings back what the store holds (call once at start, before the first input).
    pub fn restore_presence(&mut self, now: Instant) {
        let mut restored = (0usize, 0usize, 0usize);
        // Publications first: local watchers are notified from them.
        match self.tables.list(Table::Published) {
            Ok(rows) => {
                for (key, bytes) in rows {
                    match serde_json::from_slice::<PublicationRecord>(&bytes) {
                        Ok(r) => {
                            let expires_at = self.instant_of(r.expires_unix);
                            if expires_at <= now {
                                self.store_remove(Table::Published, &key);
                                continue;
                            }
                            self.presence.publications.restore(
                                now,
                                &r.aor,
                                Publication {
                                    etag: r.etag,
                                    expires_at,
                                    body: r.body.into_bytes(),
                                    lang: r.lang,
                                    version: r.version,
                                },
                            );
                            restored.2 += 1;
                        }
                        Err(e) => {
                            warn!(%key, error = %e, "presence: unreadable publication skipped")
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "presence: cannot read publications"),
        }
        self.schedule_publications();
        match self.tables.list(Table::Watches) {
            Ok(rows) => {
                let mut at = now;
                for (key, bytes) in rows {
                    let r = match serde_json::from_slice::<WatchRecord>(&bytes) {
                        Ok(r) => r,
                        Err(e) => {
                            warn!(%key, error = %e, "presence: unreadable watch skipped");
                            continue;
                        }
                    };
                    let id = self.presence.next_id();
                    let mut dialog = r.dialog.clone();
                    if let Some(d) = dialog.as_mut() {
                        d.local_cseq = d.local_cseq.saturating_add(CSEQ_RESTORE_MARGIN);
                    }
                    let machine = if r.local {
                        Watch::new()
                    } else {
                        at += RESTORE_SPACING;
                        Watch::restore(
                            at,
                            r.expires,
                            r.authorized,
                            dialog.is_some(),
                            r.cached.clone().map(String::into_bytes),
                        )
                    };
                    let entry = WatchEntry {
                        user: r.user.clone(),
                        contact: r.contact.clone(),
                        target: r.target.clone(),
                        from_uri: r.from_uri.clone(),
                        local: r.local,
                        machine,
                        stored_cseq: dialog.as_ref().map_or(0, |d| d.local_cseq),
                        dialog,
                        announced: BTreeSet::new(),
                        lang: r.lang.clone(),
                        last_translated: None,
                        held: None,
                        account: r.account.clone(),
                    };
                    self.insert_watch(id, entry);
                    let next = self
                        .presence
                        .watches
                        .get(&id)
                        .and_then(|e| e.machine.poll_timeout());
                    self.presence.schedule(Timer::Watch(id), next);
                    self.persist_watch(id);
                    restored.0 += 1;
                }
            }
            Err(e) => warn!(error = %e, "presence: cannot read watches"),
        }
        match self.tables.list(Table::Watchers) {
            Ok(rows) => {
                for (key, bytes) in rows {
                    let r = match serde_json::from_slice::<WatcherRecord>(&bytes) {
                        Ok(r) => r,
                        Err(e) => {
                            warn!(%key, error = %e, "presence: unreadable watcher skipped");
                            continue;
                        }
                    };
                    let expires_at = self.instant_of(r.expires_unix);
                    let mut dialog = r.dialog.clone();
                    dialog.local_cseq = dialog.local_cseq.saturating_add(CSEQ_RESTORE_MARGIN);
                    let id = self.presence.next_id();
                    let presentity = if r.local {
                        Presentity::Local(r.presentity.clone())
                    } else {
                        Presentity::Xmpp(r.presentity.clone())
                    };
                    let mut machine = Watcher::restore(expires_at, r.authorized);
                    if let Presentity::Local(aor) = &presentity {
                        let body = self
                            .presence
                            .publications
                            .composed(aor)
                            .map(|(b, _)| b)
                            .unwrap_or_else(|| closed_pidf(aor));
                        machine.on_presence(now, body);
                    }
                    let entry = WatcherEntry {
                        watcher_uri: r.watcher_uri.clone(),
                        watcher_jid: r.watcher_jid.clone(),
                        presentity,
                        machine,
                        stored_cseq: dialog.local_cseq,
                        dialog,
                        lang: None,
                        account_aor: r.account_aor.clone(),
                        account_contact: r.account_contact.clone(),
                    };
                    self.insert_watcher(id, entry);
                    if expires_at <= now {
                        // It expired while stox was away: the final NOTIFY it is owed.
                        if let Some(e) = self.presence.watchers.get_mut(&id) {
                            e.machine.handle_timeout(now);
                        }
                    }
                    self.run_watcher(now, id);
                    self.persist_watcher(id);
                    restored.1 += 1;
                }
            }
            Err(e) => warn!(error = %e, "presence: cannot read watchers"),
        }
        if restored != (0, 0, 0) {
            info!(
                watches = restored.0,
                watchers = restored.1,
                publications = restored.2,
                "presence: restored subscriptions and publications"
            );
        }
    }

    /// Every subscription, both directions (`GET /api/v1/subscriptions`).
    pub fn subscriptions(&self, now: Instant) -> Vec<SubscriptionInfo> {
        let secs = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(now).as_secs());
        let mut out: Vec<SubscriptionInfo> = self
            .presence
            .watches
            .values()
            .map(|e| SubscriptionInfo {
                direction: "xmpp_to_sip".into(),
                watcher: e.user.clone(),
                presentity: e.target.clone(),
                state: if e.local {
                    "local".into()
                } else {
                    e.machine.state_name().into()
                },
                expires_in: secs(e.machine.poll_timeout()),
                call_id: e.dialog.as_ref().map(|d| d.call_id.clone()),
            })
            .collect();
        out.extend(self.presence.watchers.values().map(|e| SubscriptionInfo {
            direction: "sip_to_xmpp".into(),
            watcher: e.watcher_uri.clone(),
            presentity: match &e.presentity {
                Presentity::Xmpp(j) => j.clone(),
                Presentity::Local(a) => a.clone(),
            },
            state: e.machine.state_name().into(),
            expires_in: secs(e.machine.expires_at()),
            call_id: Some(e.dialog.call_id.clone()),
        }));
        out.sort_by(|a, b| {
            (&a.direction, &a.watcher, &a.presentity).cmp(&(
                &b.direction,
                &b.watcher,
                &b.presentity,
            ))
        });
        out
    }

    /// Sets the subscription gauges (called about once a second by the io layer).
    pub fn publish_presence_metrics(&self) {
        let mut counts: HashMap<(&'static str, &'static str), usize> = HashMap::new();
        for e in self.presence.watches.values() {
            let state = if e.local {
                "local"
            } else {
                e.machine.state_name()
            };
            *counts.entry(("xmpp_to_sip", state)).or_default() += 1;
        }
        for e in self.presence.watchers.values() {
            *counts
                .entry(("sip_to_xmpp", e.machine.state_name()))
                .or_default() += 1;
        }
        for direction in ["xmpp_to_sip", "sip_to_xmpp"] {
            for state in [
                "idle",
                "subscribing",
                "pending",
                "active",
                "rejected",
                "local",
            ] {
                let n = counts.get(&(direction, state)).copied().unwrap_or(0);
                gauge!("stox_presence_subscriptions", "direction" => direction, "state" => state)
                    .set(n as f64);
            }
        }
        gauge!("stox_presence_publications").set(
            self.presence
                .publications
                .aors()
                .map(|a| self.presence.publications.of(a).len())
                .sum::<usize>() as f64,
        );
    }
}

/// A presence `SUBSCRIBE` inside the watch dialog `d` with `Expires: expires` (RFC 6665
/// §4.1.2.2 refresh; `0` ends it, §4.1.2.3), at `d`'s current CSeq. The caller adds the
/// Contact and the next hop.
fn subscribe_in(d: &DialogRecord, expires: u32) -> OutRequest {
    OutRequest {
        method: "SUBSCRIBE".into(),
        uri: d.remote_target.clone(),
        from: d.local_uri.clone(),
        to: d.remote_uri.clone(),
        call_id: Some(d.call_id.clone()),
        headers: vec![
            ("Max-Forwards".into(), "70".into()),
            ("Event".into(), EVENT.into()),
            ("Accept".into(), PIDF.into()),
            ("Expires".into(), expires.to_string()),
        ],
        content_type: None,
        body: Vec::new(),
        flow: None,
        flow_only: false,
        dialog: Some(DialogRef {
            from_tag: d.local_tag.clone(),
            to_tag: d.remote_tag.clone(),
            cseq: d.local_cseq,
            route: d.route.clone(),
        }),
        next_hop: None,
    }
}

#[cfg(test)]
mod tests;

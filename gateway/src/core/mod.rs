//! The sans-IO gateway core: one value that takes SIP requests, SIP responses,
//! stanzas, link events and `now` as inputs and yields SIP replies, SIP
//! requests and stanzas as outputs (STYLE.md habit 1, the str0m shape).
//!
//! After every `handle_*` call, drain `poll_output()` until `None`, then sleep
//! until `poll_timeout()`.
//!
//! # Messages SIP → XMPP and the bounce window (RFC 7572, RFC 7247 §7)
//!
//! A SIP MESSAGE becomes a `<message/>` at once. Its final response waits up to
//! `bounce_window` (default 300 ms) for an XMPP error bounce with the same stanza
//! id: Prosody bounces a message to a user that does not exist, or is offline
//! without offline storage, within a few milliseconds, and the SIP sender then
//! gets the RFC 7247 §7 mapped error instead of a 200 OK for a message that is
//! lost. After the window without a bounce: 200 OK. The window delays only the
//! 200 OK, never delivery, and never by more than the configured bound. A bounce
//! from a remote XMPP domain slower than the window is logged and counted.
//!
//! # Nothing lost while the link is down
//!
//! While the link is up, a message in its bounce window is kept in memory only:
//! its sender has no final response yet and retransmits it if stox dies. When
//! the component link drops, the messages still in their window are written to
//! the durable outbox (sled) and their senders get `202 Accepted` once the io
//! layer has flushed it; while the link is down new MESSAGEs are stored and answered `202
//! Accepted`. A stored message leaves the outbox once it was sent again and its
//! window closed without a bounce. When the link comes back, everything in the
//! outbox is sent again, in order, with its original stanza id. A message that
//! was written to a link that then died may thus arrive twice (at least once,
//! never zero times); receivers can drop the duplicate by its id. A stox killed
//! with SIGKILL resends its outbox at the next start.
//!
//! A server that shuts down (a Prosody restart) may have read stanzas it never
//! delivers, and stox learns that the link is gone only when the socket closes,
//! possibly after their windows closed with 200 OK. So the stanzas whose window
//! closed within the last [`RESEND_HORIZON`] are kept in memory too, and go to the
//! outbox with the pending ones when the link drops: more duplicates after a
//! restart, no gap.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use metrics::counter;
use stox_mappings::{MappingStore, Outbox, TableStore};
use stox_sip::uri::{Scheme, SipUri};
use stox_xmpp::disco::{self, GatewayInfo};
use tracing::{debug, info, warn};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::DefinedCondition;

pub mod accounts;
pub mod call;
pub mod presence;
pub mod registrar;

pub use accounts::{AccountError, AccountRecord, AccountSettings, AccountView};
pub use call::{
    CallInfo, CallKey, CallSettings, DialogAction, DialogEvent, InviteAccount, MediaCommand,
};
pub use presence::{PresenceSettings, SubscriptionInfo};
pub use registrar::{RegistrarSettings, SipUserRecord};

use crate::media::relay::{CallStarted, RelayEventKind};
use crate::sipmsg::{uri_of_name_addr, OutRequest, SipRequest, SipResponse, Transport};
use crate::stanza;
use crate::translate::address::Addresses;
use crate::translate::{error as errmap, im};

/// Identifies a SIP transaction between the core and the io layer.
pub type TxId = u64;

/// Why a client transaction produced no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    /// RFC 3261 §17.1.2.2 Timer F fired.
    Timeout,
    /// The transport could not reach the next hop.
    Transport(String),
    /// RFC 5626 §5.3: the request was for a contact reached over its flow only (an
    /// outbound registration, a WebSocket client) and that connection is gone. stox is the
    /// edge proxy of its registered users, and this is its `430 (Flow Failed)`; stox is
    /// their authoritative proxy too, so the 430 stays inside (RFC 5626 §7, §11).
    FlowFailed(String),
}

/// What the io layer feeds the core.
#[derive(Debug)]
pub enum Input {
    /// A new SIP server transaction; answer it with `Output::SipReply{tx}`.
    SipRequest {
        /// Its id.
        tx: TxId,
        /// The request.
        req: SipRequest,
    },
    /// The final response (or failure) of a client transaction stox started.
    SipResponse {
        /// The id given in `Output::SipSend`.
        tx: TxId,
        /// The outcome.
        result: Result<SipResponse, SendFailure>,
    },
    /// A stanza from the component link.
    Stanza(Element),
    /// The component link is up (after connect or reconnect).
    LinkUp,
    /// The component link is down.
    LinkDown,
    /// A new INVITE (no To tag); the io layer keeps its dialog under `call`.
    Invite {
        /// The call's key.
        call: CallKey,
        /// The INVITE.
        req: SipRequest,
    },
    /// Something happened to an INVITE dialog.
    Dialog {
        /// The call.
        call: CallKey,
        /// What.
        event: DialogEvent,
    },
    /// The relay's answer to `MediaCommand::Start`, fed back before the next input.
    MediaStarted {
        /// The call.
        call: CallKey,
        /// Our ends of the media, or why the relay refused.
        result: Result<CallStarted, String>,
    },
    /// A relay event about a call's media.
    Media {
        /// The call.
        call: CallKey,
        /// What.
        event: RelayEventKind,
    },
    /// A stream connection requests came in on has closed: the bindings reached over it
    /// only are invalid (RFC 5626 §7).
    FlowClosed(crate::sipmsg::Flow),
}

/// What the core asks the io layer to do.
#[derive(Debug)]
pub enum Output {
    /// Send the final response of server transaction `tx`.
    ///
    /// A `202` promises the message is stored: before sending it, the io
    /// layer calls `Outbox::flush` (once for all the outputs it drains) and
    /// answers `503` with `Retry-After` instead if that fails. The core never
    /// waits on the disk itself.
    SipReply {
        /// Which transaction.
        tx: TxId,
        /// Status code.
        code: u16,
        /// Extra headers (Accept, Allow, Retry-After, ...).
        headers: Vec<(String, String)>,
        /// The To tag of the response, when the core chose it (a 2xx to a dialog-creating
        /// SUBSCRIBE, RFC 6665 §4.2.1); otherwise the io layer makes one up.
        to_tag: Option<String>,
    },
    /// Start a client transaction; its outcome comes back as `Input::SipResponse`.
    SipSend {
        /// Id for the outcome.
        tx: TxId,
        /// The request.
        req: OutRequest,
        /// The transport to use (TCP when the request is too large for UDP).
        transport: Transport,
    },
    /// Send a stanza on the component link.
    Stanza(Element),
    /// Act on an INVITE dialog.
    Dialog {
        /// The call.
        call: CallKey,
        /// What to do.
        action: DialogAction,
    },
    /// Command the relay about a call.
    Media {
        /// The call.
        call: CallKey,
        /// What to do.
        cmd: MediaCommand,
    },
}

/// Core settings taken from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Home XMPP domain H.
    pub home: String,
    /// Component domain C.
    pub component: String,
    /// RFC 7572 message type stox writes (`chat` or `normal`).
    pub message_type: String,
    /// How long a MESSAGE's 200 waits for an XMPP bounce.
    pub bounce_window: Duration,
    /// RFC 3261 §18.1.1 limit for UDP.
    pub udp_max_bytes: usize,
    /// Transport of the next hop when the message fits in UDP.
    pub default_transport: Transport,
    /// A wall-clock reading and the `Instant` it was taken at: the core turns
    /// `now` into dates (IMDN `datetime`) without reading the clock itself.
    pub epoch: (Instant, SystemTime),
    /// Calls (`[calls]`, `[media]`).
    pub calls: CallSettings,
    /// Presence (`[presence]`).
    pub presence: PresenceSettings,
    /// The registrar of `C` (`[registrar]`).
    pub registrar: RegistrarSettings,
    /// External SIP accounts of XMPP users (`[accounts]`).
    pub accounts: accounts::AccountSettings,
    /// stox's own SIP addresses, for the Contact of its dialogs.
    pub contacts: LocalContacts,
}

/// Where stox listens for SIP, for the Contact headers of the dialogs it makes (RFC 3261
/// §8.1.1.8: the peer sends in-dialog requests there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalContacts {
    /// The UDP listener.
    pub udp: Option<std::net::SocketAddr>,
    /// The TCP listener.
    pub tcp: Option<std::net::SocketAddr>,
    /// The first TLS listener (the Contact of a `tls` external account).
    pub tls: Option<std::net::SocketAddr>,
}

struct PendingIn {
    /// The SIP transaction still waiting for its final response.
    tx: Option<TxId>,
    /// The stanza id (bounces are matched by it).
    id: String,
    deadline: Instant,
    /// Where it is in the durable outbox, once it was stored there.
    seq: Option<u64>,
    /// The stanza itself while it is only in memory (kept to store it if the
    /// link drops before its window closes).
    stanza: Option<Element>,
}

struct PendingOut {
    stanza: Element,
    forced_tcp: bool,
    /// To a SIP user of `C`: the branch, for another flow of the same UA (RFC 5626 §7).
    branch: Option<Branch>,
    /// The fork group when the MESSAGE went to several contacts of a SIP user of `C`.
    fork: Option<u64>,
    /// Sent through an external account (its key), with the request and transport to send
    /// again with credentials if the provider challenges (once).
    account: Option<(String, OutRequest, Transport)>,
}

/// A MESSAGE relayed to the contacts of a SIP user of `C`: the sender's transaction and
/// what came back so far.
struct RelayGroup {
    tx: TxId,
    left: usize,
    answered: bool,
    last: u16,
    /// The user (for the Warning of a 480 after failed flows).
    aor: String,
    /// A branch's flow failed (RFC 5626 §5.3).
    flow_failed: bool,
}

/// One branch of a MESSAGE to a SIP user of `C`: the request as sent, and the other flows
/// of the same UA instance to send it to instead if this one's flow failed (RFC 5626 §7).
#[derive(Debug, Clone)]
struct Branch {
    req: OutRequest,
    alternates: Vec<registrar::Binding>,
}

/// A relayed MESSAGE's client transaction: its group and its branch.
struct RelayBranch {
    group: u64,
    branch: Branch,
}

/// The request of `template` for one binding of a SIP user of `C`: to its contact, over
/// the connection it registered on while that is open (RFC 5626 §5.3), over that
/// connection only when it registered with outbound or is a WebSocket client.
fn to_binding(
    template: &OutRequest,
    b: &registrar::Binding,
    transport: Transport,
) -> (OutRequest, Transport) {
    let mut r = template.clone();
    r.uri = b.contact.clone();
    r.flow = b.flow;
    r.flow_only = b.flow_only();
    let transport = match b.flow {
        Some(f) => f.transport,
        None if b.tcp => Transport::Tcp,
        None => transport,
    };
    (r, transport)
}

/// Whether a branch's outcome lets the request go to another flow of the same UA instance
/// (RFC 5626 §7: after 430 or 408 only).
fn retry_other_flow(result: &Result<SipResponse, SendFailure>) -> bool {
    match result {
        Err(SendFailure::FlowFailed(_) | SendFailure::Timeout) => true,
        Ok(r) => matches!(r.code, 408 | 430),
        Err(SendFailure::Transport(_)) => false,
    }
}

/// A refusal: status code, headers (a challenge), and why (for the log).
type Refusal = (u16, Vec<(String, String)>, String);

/// A MESSAGE sent to every contact of a SIP user of `C` (RFC 3261 §16.7 forking; the first
/// 2xx wins, a failure is reported only when every fork failed).
struct Fork {
    left: usize,
    delivered: bool,
    failure: Option<(DefinedCondition, String)>,
    /// Every branch that failed so far failed because its flow did (RFC 5626 §5.3): its
    /// binding is gone, and when all are, the user has no binding left.
    flows_only: bool,
}

/// How long a message answered 200 OK stays in memory to be sent again if the
/// link drops (see the module doc: a restarting server may drop what it read).
pub const RESEND_HORIZON: Duration = Duration::from_secs(1);

/// The methods stox accepts (RFC 3428 MESSAGE, RFC 3261 INVITE dialogs, RFC 6665 / RFC 3856
/// SUBSCRIBE and NOTIFY, RFC 3903 PUBLISH).
const ALLOW: &str =
    "INVITE, ACK, BYE, CANCEL, MESSAGE, OPTIONS, SUBSCRIBE, NOTIFY, PUBLISH, REGISTER";

/// The gateway: all protocol state, no I/O.
pub struct Gateway {
    settings: Settings,
    addresses: Addresses,
    mappings: Arc<dyn MappingStore>,
    outbox: Arc<dyn Outbox>,
    info: GatewayInfo,
    link_up: bool,
    /// Messages in their bounce window, in arrival order.
    pending_in: BTreeMap<u64, PendingIn>,
    next_pending: u64,
    /// Stanza id → the latest pending outbox entry sent with it. Ids come
    /// from the SIP sender when CPIM carries an IMDN Message-ID, so two
    /// pending messages may share one; each is still answered at its own
    /// window's end, and a bounce is matched to the latest.
    by_id: HashMap<String, u64>,
    window: VecDeque<(Instant, u64)>,
    pending_out: HashMap<TxId, PendingOut>,
    outputs: VecDeque<Output>,
    id_prefix: String,
    id_seed: u64,
    next_id: u64,
    next_tx: TxId,
    calls: call::Calls,
    call_settings: CallSettings,
    /// Stanzas answered 200 OK within the last [`RESEND_HORIZON`], oldest first.
    recent: VecDeque<(Instant, Element)>,
    /// Presence subscriptions and publications (RFC 8048, RFC 3903).
    presence: presence::PresenceState,
    /// Registrations of the SIP users of `C`, authentication state.
    registrar: registrar::RegistrarState,
    /// External SIP accounts of XMPP users and their registrations.
    accounts: accounts::AccountsState,
    /// Forked MESSAGEs: group → (forks still out, best failure so far, delivered).
    forks: HashMap<u64, Fork>,
    next_fork: u64,
    /// Relayed SIP MESSAGEs: client transaction → group and branch, and the groups.
    relays: HashMap<TxId, RelayBranch>,
    relay_groups: HashMap<u64, RelayGroup>,
    /// The `now` of the latest input or timeout (for work that runs later in the same turn).
    last_now: Instant,
    tables: Arc<dyn TableStore>,
    /// Records were written since the io layer last asked ([`Gateway::take_tables_dirty`]).
    tables_dirty: std::cell::Cell<bool>,
}

impl Gateway {
    /// A gateway over the given stores. `id_seed` makes stanza ids unique per
    /// process (pass something random). Stored presence state comes back with
    /// [`Gateway::restore_presence`].
    pub fn new(
        settings: Settings,
        store: &stox_mappings::Store,
        id_seed: u64,
    ) -> Result<Gateway, crate::translate::address::AddressError> {
        let mappings = store.mappings.clone();
        let outbox = store.outbox.clone();
        let addresses = Addresses::new(&settings.home, &settings.component)?;
        let settings_epoch_now = settings.epoch.0;
        let call_settings = settings.calls.clone();
        let info = GatewayInfo {
            component: settings.component.clone(),
            name: "stox SIP gateway".to_string(),
        };
        Ok(Gateway {
            settings,
            addresses,
            mappings,
            outbox,
            info,
            link_up: false,
            pending_in: BTreeMap::new(),
            next_pending: 0,
            by_id: HashMap::new(),
            window: VecDeque::new(),
            pending_out: HashMap::new(),
            outputs: VecDeque::new(),
            id_prefix: format!("stox-{id_seed:016x}-"),
            id_seed,
            next_id: 0,
            // Client transaction ids count down from the top so they never
            // collide with the io layer's server ids.
            next_tx: u64::MAX,
            calls: call::Calls::default(),
            call_settings,
            recent: VecDeque::new(),
            presence: presence::PresenceState::default(),
            registrar: registrar::RegistrarState::default(),
            accounts: accounts::AccountsState::default(),
            forks: HashMap::new(),
            next_fork: 0,
            relays: HashMap::new(),
            relay_groups: HashMap::new(),
            last_now: settings_epoch_now,
            tables: store.tables.clone(),
            tables_dirty: std::cell::Cell::new(false),
        })
    }

    /// Whether the core believes the component link is up.
    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// Whether records were written since the last call: the io layer then calls
    /// `TableStore::flush` once, before the outputs of the batch leave (a 200 to a
    /// SUBSCRIBE or REGISTER promises what it stored).
    pub fn take_tables_dirty(&self) -> bool {
        self.tables_dirty.replace(false)
    }

    /// Writes a record (JSON); a failure is logged (the state stays in memory).
    fn store_put<T: serde::Serialize>(&self, table: stox_mappings::Table, key: &str, value: &T) {
        match serde_json::to_vec(value) {
            Ok(bytes) => {
                self.tables_dirty.set(true);
                if let Err(e) = self.tables.put(table, key, &bytes) {
                    warn!(table = table.name(), %key, error = %e, "store write failed");
                }
            }
            Err(e) => warn!(error = %e, "record does not serialize"),
        }
    }

    /// Removes a record; a failure is logged.
    fn store_remove(&self, table: stox_mappings::Table, key: &str) {
        self.tables_dirty.set(true);
        if let Err(e) = self.tables.remove(table, key) {
            warn!(table = table.name(), %key, error = %e, "store remove failed");
        }
    }

    pub(super) fn unix_of(&self, t: Instant) -> u64 {
        let (t0, wall0) = self.settings.epoch;
        let wall = if t >= t0 {
            wall0 + (t - t0)
        } else {
            wall0 - (t0 - t)
        };
        wall.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    pub(super) fn instant_of(&self, unix: u64) -> Instant {
        let (t0, wall0) = self.settings.epoch;
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(unix);
        match wall.duration_since(wall0) {
            Ok(ahead) => t0 + ahead,
            Err(e) => t0.checked_sub(e.duration()).unwrap_or(t0),
        }
    }

    /// stox's Contact for a dialog on this transport.
    pub(super) fn own_contact(&self, tcp: bool) -> String {
        let c = &self.settings.contacts;
        match (tcp, c.tcp, c.udp) {
            (true, Some(a), _) => format!("<sip:stox@{a};transport=tcp>"),
            (_, _, Some(a)) => format!("<sip:stox@{a}>"),
            (_, Some(a), None) => format!("<sip:stox@{a};transport=tcp>"),
            _ => format!("<sip:stox@{}>", self.settings.component),
        }
    }

    /// Messages waiting in the durable outbox.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len().unwrap_or(0)
    }

    /// Feeds one input.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.last_now = now;
        match input {
            Input::SipRequest { tx, req } => self.on_sip_request(now, tx, req),
            Input::SipResponse { tx, result } => self.on_sip_response(now, tx, result),
            Input::Stanza(s) => self.on_stanza(now, s),
            Input::LinkUp => self.on_link_up(now),
            Input::LinkDown => self.on_link_down(),
            Input::Invite { call, req } => self.on_invite(now, call, req),
            Input::Dialog { call, event } => self.on_dialog(call, event),
            Input::MediaStarted { call, result } => self.on_media_started(call, result),
            Input::Media { call, event } => self.on_media_event(call, event),
            Input::FlowClosed(flow) => self.flow_failed(flow),
        }
        self.handle_timeout(now);
    }

    /// Runs what is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        self.calls_handle_timeout(now);
        self.presence_handle_timeout(now);
        self.registrar_handle_timeout(now);
        self.accounts_handle_timeout(now);
        while let Some((deadline, _)) = self.window.front() {
            if *deadline > now {
                break;
            }
            let Some((deadline, key)) = self.window.pop_front() else {
                break;
            };
            let due = matches!(self.pending_in.get(&key), Some(p) if p.deadline == deadline);
            if !due {
                continue;
            }
            if let Some(p) = self.untrack_in(key) {
                if let Some(seq) = p.seq {
                    self.outbox_remove(seq);
                }
                if let Some(tx) = p.tx {
                    self.reply(tx, 200, vec![]);
                }
                if let Some(stanza) = p.stanza {
                    self.recent.push_back((deadline, stanza));
                }
            }
        }
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| *t + RESEND_HORIZON < now)
        {
            self.recent.pop_front();
        }
    }

    /// The next output, if any.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When `handle_timeout` must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let window = self.window.front().map(|(d, _)| *d);
        [
            window,
            self.calls_timeout(),
            self.presence.next_timeout(),
            self.registrar.next_timeout(),
            self.accounts.next_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn reply(&mut self, tx: TxId, code: u16, headers: Vec<(String, String)>) {
        self.reply_tagged(tx, code, headers, None);
    }

    fn reply_tagged(
        &mut self,
        tx: TxId,
        code: u16,
        headers: Vec<(String, String)>,
        to_tag: Option<String>,
    ) {
        counter!("stox_sip_responses_sent_total", "code" => code.to_string()).increment(1);
        self.outputs.push_back(Output::SipReply {
            tx,
            code,
            headers,
            to_tag,
        });
    }

    fn outbox_remove(&mut self, seq: u64) {
        if let Err(e) = self.outbox.remove(seq) {
            warn!(seq, error = %e, "outbox remove failed");
        }
    }

    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}{}", self.id_prefix, self.next_id)
    }

    /// A fresh id in UUID form (XEP-0353 session ids), made from the process seed and the
    /// id counter: unique per process, and no randomness inside the sans-IO core.
    fn fresh_uuid(&mut self) -> String {
        self.next_id += 1;
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.id_seed.to_be_bytes());
        bytes[8..].copy_from_slice(&self.next_id.to_be_bytes());
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }

    // ---------------------------------------------------------------- SIP in

    fn on_sip_request(&mut self, now: Instant, tx: TxId, req: SipRequest) {
        counter!("stox_sip_requests_received_total", "method" => req.method.clone()).increment(1);
        // The SIP users of `C` speak only after authenticating (issue 5: no open relay).
        if matches!(req.method.as_str(), "MESSAGE" | "SUBSCRIBE" | "PUBLISH")
            && req.header("To").and_then(crate::sipmsg::tag_of).is_none()
        {
            if let Some((code, headers, why)) = self.local_sender_refused(now, &req) {
                info!(code, %why, method = %req.method, "request from a SIP user of the component refused");
                return self.reply(tx, code, headers);
            }
        }
        match req.method.as_str() {
            "MESSAGE" => self.on_sip_message(now, tx, req),
            "REGISTER" => self.on_register(now, tx, req),
            "SUBSCRIBE" | "NOTIFY" | "PUBLISH" if self.settings.presence.enabled => {
                self.on_presence_request(now, tx, req)
            }
            "OPTIONS" => self.reply(
                tx,
                200,
                vec![
                    ("Allow".into(), ALLOW.into()),
                    ("Accept".into(), im::ACCEPT.into()),
                    ("Allow-Events".into(), "presence".into()),
                ],
            ),
            _ => self.reply(tx, 405, vec![("Allow".into(), ALLOW.into())]),
        }
    }

    /// Resolves the Request-URI of a MESSAGE to a JID (explicit mapping first).
    fn sip_target(&self, req: &SipRequest) -> Result<Jid, (u16, String)> {
        // An external account's Contact: its XMPP user (issue 5).
        if let Some(a) = req
            .uri
            .parse::<SipUri>()
            .ok()
            .and_then(|u| self.account_of_request_uri(&u))
        {
            return a
                .jid
                .parse::<Jid>()
                .map_err(|e| (404, format!("account owner {}: {e}", a.jid)));
        }
        let jid = self.sip_target_any(req)?;
        if jid.domain().as_str() == self.settings.component {
            // A SIP user of stox's own registrar: not available before the
            // registrar exists (issue 5).
            return Err((404, format!("{jid} is not a registered SIP user")));
        }
        Ok(jid)
    }

    /// Resolves a Request-URI to a JID (explicit mapping first), a JID at `C` included
    /// (a SIP user of the component domain).
    fn sip_target_any(&self, req: &SipRequest) -> Result<Jid, (u16, String)> {
        // RFC 3261 §16.3 / RFC 5393: loop defence.
        if let Some(mf) = req.header("Max-Forwards") {
            match mf.parse::<u32>() {
                Ok(0) => return Err((483, "Max-Forwards is 0".into())),
                Ok(_) => {}
                Err(_) => return Err((400, format!("bad Max-Forwards `{mf}`"))),
            }
        }
        let uri: SipUri = req
            .uri
            .parse()
            .map_err(|e| (400, format!("bad Request-URI: {e}")))?;
        if uri.scheme == Scheme::Sips {
            // RFC 7247 §8: a SIPS URI is never translated to XMPP, also when it came over
            // TLS or WSS: that hop is secured, but SIPS asks for TLS on every hop to the
            // target (RFC 5630 §3.1.3) and stox cannot know that of the XMPP hops after
            // it (c2s, s2s). docs/transports.md "sips:".
            return Err((
                416,
                "SIPS URIs are not translated to XMPP (RFC 7247 §8)".into(),
            ));
        }
        let aor = aor_string(&uri);
        if let Ok(Some(m)) = self.mappings.by_sip(&aor) {
            if let Ok(jid) = m.jid.parse::<Jid>() {
                return Ok(jid);
            }
        }
        self.addresses.sip_target_to_jid(&uri).map_err(|e| match e {
            // Not an open relay (issue 5): stox is the SIP service of H and C only, and
            // refuses to route anywhere else (403, as a proxy refusing to relay, RFC 3261
            // §21.4.4), whoever asks.
            crate::translate::address::AddressError::UnknownSipDomain { domain } => (
                403,
                format!(
                    "stox serves {} and {} only; it does not relay to {domain}",
                    self.settings.home, self.settings.component
                ),
            ),
            e => (404, format!("no XMPP address for {aor}: {e}")),
        })
    }

    fn sip_sender(&self, req: &SipRequest) -> Result<Jid, (u16, String)> {
        let from = req
            .header("From")
            .ok_or((400, "no From header".to_string()))?;
        let uri: SipUri = uri_of_name_addr(from)
            .parse()
            .map_err(|e| (400, format!("bad From URI: {e}")))?;
        if uri.scheme == Scheme::Sips {
            return Err((
                416,
                "SIPS URIs are not translated to XMPP (RFC 7247 §8)".into(),
            ));
        }
        if let Ok(Some(m)) = self.mappings.by_sip(&aor_string(&uri)) {
            if let Ok(jid) = m.jid.parse::<Jid>() {
                if jid.domain().as_str() == self.settings.component {
                    return Ok(match uri.gr() {
                        Some(gr) => jid
                            .to_bare()
                            .with_resource_str(gr)
                            .map(Jid::from)
                            .unwrap_or(jid),
                        None => jid,
                    });
                }
            }
        }
        self.addresses
            .sip_sender_to_jid(&uri)
            .map_err(|e| (400, format!("From has no XMPP form: {e}")))
    }

    fn on_sip_message(&mut self, now: Instant, tx: TxId, req: SipRequest) {
        // A SIP user of `C` with registered contacts: relayed to them (RFC 3261 §16.6).
        if self.relay_to_contacts(now, tx, &req) {
            return;
        }
        let to = match self.sip_target(&req) {
            Ok(j) => j,
            Err((code, why)) => {
                info!(code, %why, "MESSAGE rejected");
                counter!("stox_messages_rejected_total", "direction" => "sip_to_xmpp", "code" => code.to_string()).increment(1);
                return self.reply(tx, code, vec![]);
            }
        };
        let from = match self.sip_sender(&req) {
            Ok(j) => j,
            Err((code, why)) => {
                info!(code, %why, "MESSAGE rejected");
                counter!("stox_messages_rejected_total", "direction" => "sip_to_xmpp", "code" => code.to_string()).increment(1);
                return self.reply(tx, code, vec![]);
            }
        };
        let from = self.sender_through_account(&req, from);
        let id = self.fresh_id();
        let stanza = match im::sip_to_stanza(
            &req,
            from.as_str(),
            to.as_str(),
            &id,
            &self.settings.message_type,
        ) {
            Ok(Some(s)) => s,
            Ok(None) => return self.reply(tx, 200, vec![]),
            Err(r) => {
                info!(code = r.code, reason = %r.reason, "MESSAGE rejected");
                counter!("stox_messages_rejected_total", "direction" => "sip_to_xmpp", "code" => r.code.to_string()).increment(1);
                let headers = if r.code == 415 {
                    vec![("Accept".into(), im::ACCEPT.into())]
                } else {
                    vec![]
                };
                return self.reply(tx, r.code, headers);
            }
        };
        let sid = stanza.attr("id").unwrap_or_default().to_string();
        counter!("stox_messages_total", "direction" => "sip_to_xmpp").increment(1);
        if !self.link_up {
            // Stored durably, delivered in order after reconnect.
            // The io layer makes the outbox durable (one fsync per batch of
            // outputs) before it sends any 202: `Output::SipReply` docs.
            return match self.outbox.push(stanza::to_string(&stanza).as_bytes()) {
                Ok(_) => {
                    counter!("stox_messages_queued_total").increment(1);
                    self.reply(tx, 202, vec![])
                }
                Err(e) => {
                    warn!(error = %e, "outbox write failed; answering 503");
                    self.reply(tx, 503, vec![("Retry-After".into(), "5".into())])
                }
            };
        }
        debug!(id = %sid, %from, %to, "SIP MESSAGE → XMPP");
        // While the link is up the message stays in memory: until its final
        // response the SIP sender retransmits it, so a crash loses nothing;
        // it goes to the outbox only if the link drops inside its window.
        self.outputs.push_back(Output::Stanza(stanza.clone()));
        self.track_in(now, sid, Some(tx), None, Some(stanza));
    }

    fn track_in(
        &mut self,
        now: Instant,
        id: String,
        tx: Option<TxId>,
        seq: Option<u64>,
        stanza: Option<Element>,
    ) {
        let deadline = now + self.settings.bounce_window;
        let key = self.next_pending;
        self.next_pending += 1;
        self.window.push_back((deadline, key));
        self.by_id.insert(id.clone(), key);
        self.pending_in.insert(
            key,
            PendingIn {
                tx,
                id,
                deadline,
                seq,
                stanza,
            },
        );
    }

    fn untrack_in(&mut self, key: u64) -> Option<PendingIn> {
        let p = self.pending_in.remove(&key)?;
        if self.by_id.get(&p.id) == Some(&key) {
            self.by_id.remove(&p.id);
        }
        Some(p)
    }

    /// SIP MESSAGEs in their bounce window (for overload control).
    pub fn pending_messages(&self) -> usize {
        self.pending_in.len()
    }

    // --------------------------------------------------------------- link

    fn on_link_down(&mut self) {
        if !self.link_up {
            return;
        }
        self.link_up = false;
        warn!(
            pending = self.pending_in.len(),
            "XMPP link down: messages are stored until it is back"
        );
        // Messages answered within the resend horizon may have been read by a
        // server that is going away: stored too, ahead of the pending ones.
        let mut stored_ok = true;
        let recent = std::mem::take(&mut self.recent);
        if !recent.is_empty() {
            counter!("stox_messages_resent_recent_total").increment(recent.len() as u64);
        }
        for (_, stanza) in recent {
            if let Err(e) = self.outbox.push(stanza::to_string(&stanza).as_bytes()) {
                warn!(error = %e, "outbox write failed");
                stored_ok = false;
            }
        }
        // Messages still in their window may not have reached the server:
        // store them (in arrival order) and answer 202; resent after reconnect.
        let pending = std::mem::take(&mut self.pending_in);
        let mut waiting = Vec::new();
        for p in pending.into_values() {
            if let (None, Some(stanza)) = (p.seq, &p.stanza) {
                if let Err(e) = self.outbox.push(stanza::to_string(stanza).as_bytes()) {
                    warn!(error = %e, "outbox write failed");
                    stored_ok = false;
                }
            }
            if let Some(tx) = p.tx {
                waiting.push(tx);
            }
        }
        for tx in waiting {
            if stored_ok {
                self.reply(tx, 202, vec![]);
            } else {
                self.reply(tx, 503, vec![("Retry-After".into(), "5".into())]);
            }
        }
        self.by_id.clear();
        self.window.clear();
    }

    fn on_link_up(&mut self, now: Instant) {
        self.link_up = true;
        self.presence_on_link_up(now);
        let pending = match self.outbox.pending() {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "cannot read the outbox");
                return;
            }
        };
        if !pending.is_empty() {
            info!(
                count = pending.len(),
                "XMPP link up: resending stored messages in order"
            );
        }
        for (seq, bytes) in pending {
            let parsed = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse::<Element>().ok());
            let Some(stanza) = parsed else {
                warn!(seq, "dropping an unreadable outbox entry");
                self.outbox_remove(seq);
                continue;
            };
            let id = stanza.attr("id").unwrap_or_default().to_string();
            counter!("stox_messages_resent_total").increment(1);
            self.outputs.push_back(Output::Stanza(stanza));
            self.track_in(now, id, None, Some(seq), None);
        }
    }

    // ------------------------------------------------------------ XMPP in

    fn on_stanza(&mut self, now: Instant, s: Element) {
        match s.name() {
            "iq" => {
                match s.attr("type") {
                    Some("set") if s.has_child("jingle", stox_xmpp::jingle::ns::JINGLE) => {
                        return self.on_jingle(now, s)
                    }
                    Some("result") | Some("error") => {
                        if let Some(id) = s.attr("id").map(str::to_owned) {
                            self.on_call_stanza_error(&id, &s);
                        }
                        return;
                    }
                    _ => {}
                }
                self.on_iq(now, s)
            }
            "message" => {
                if s.attr("type") != Some("error") {
                    if let Some(jmi) = stox_xmpp::jingle::JingleMessage::from_message(&s) {
                        match jmi {
                            Ok(jmi) => self.on_jmi(&s, jmi),
                            Err(e) => debug!(error = %e, "bad JMI message ignored"),
                        }
                        return;
                    }
                } else if let Some(id) = s.attr("id").map(str::to_owned) {
                    if self.on_call_stanza_error(&id, &s) {
                        return;
                    }
                }
                self.on_message(now, s)
            }
            // RFC 8048 presence for contacts; the gateway itself (XEP-0100, in rosters) and,
            // with `[presence] enabled = false`, every contact are always available with
            // caps, so that clients offer a call button (STOX-MAPPING §8).
            "presence" => {
                // RFC 3903: a user with external accounts publishes her presence through
                // them (`accounts/publish.rs`), whichever JID at `C` it was sent to.
                if self.settings.presence.enabled {
                    self.account_user_presence(now, &s);
                }
                let to_contact = s
                    .attr("to")
                    .and_then(|t| t.parse::<Jid>().ok())
                    .is_some_and(|j| j.node().is_some());
                if to_contact && self.settings.presence.enabled {
                    return self.on_presence_stanza(now, s);
                }
                for answer in stox_xmpp::presence::answer(&self.info, &s) {
                    self.outputs.push_back(Output::Stanza(answer));
                }
            }
            _ => {}
        }
    }

    fn on_iq(&mut self, now: Instant, iq: Element) {
        // XEP-0077 / XEP-0050: the user's external SIP accounts.
        if self.on_account_iq(now, &iq) {
            return;
        }
        let addresses = &self.addresses;
        let escape = |prompt: &str| -> Option<String> {
            let text = prompt.trim();
            let text = if text.starts_with("sip:") || text.starts_with("sips:") {
                text.to_string()
            } else {
                format!("sip:{text}")
            };
            let uri: SipUri = text.parse().ok()?;
            if uri.scheme == Scheme::Sips {
                return None;
            }
            addresses
                .sip_sender_to_jid(&uri)
                .ok()
                .map(|j| j.to_bare().to_string())
        };
        if let Some(answer) = disco::answer_iq(&self.info, &iq, escape) {
            self.outputs.push_back(Output::Stanza(answer));
        }
    }

    fn bounce(&mut self, original: &Element, cond: DefinedCondition, text: &str) {
        if original.attr("type") == Some("error") {
            return; // RFC 6120 §8.1: never answer an error with an error.
        }
        counter!("stox_errors_total", "direction" => "xmpp_to_sip", "condition" => errmap::condition_name(&cond)).increment(1);
        self.outputs.push_back(Output::Stanza(stanza::error_reply(
            original,
            &cond,
            Some(text),
        )));
    }

    fn on_message(&mut self, now: Instant, msg: Element) {
        if msg.attr("type") == Some("error") {
            return self.on_message_error(msg);
        }
        let Some(to) = msg.attr("to").and_then(|t| t.parse::<Jid>().ok()) else {
            return self.bounce(&msg, DefinedCondition::JidMalformed, "bad to address");
        };
        let Some(from) = msg.attr("from").and_then(|t| t.parse::<Jid>().ok()) else {
            return; // the server always stamps from; nothing to answer to
        };
        if to.node().is_none() {
            return self.bounce(
                &msg,
                DefinedCondition::ServiceUnavailable,
                "the gateway itself takes no messages; write to a contact address",
            );
        }
        if msg.attr("type") == Some("groupchat") {
            return self.bounce(
                &msg,
                DefinedCondition::NotAcceptable,
                "groupchat is not translated",
            );
        }
        // The sender's external account, if he has one (`<target>#<id>@C` picks one).
        let (account, to) = self.account_for(&from, &to);
        // An explicit mapping wins; a stored SIP URI that no longer parses is
        // the operator's error: item-not-found with the reason.
        let target = match self.mappings.by_jid(to.to_bare().as_str()) {
            Ok(Some(m)) => m.sip.parse::<SipUri>().map_err(|e| {
                (
                    DefinedCondition::ItemNotFound,
                    format!("mapping for {to}: {e}"),
                )
            }),
            _ => self
                .addresses
                .jid_target_to_sip(&to)
                .map_err(|e| (e.condition(), e.to_string())),
        };
        let target = match target {
            Ok(t) => t,
            Err((cond, why)) => return self.bounce(&msg, cond, &why),
        };
        let sender = match self.mappings.by_jid(from.to_bare().as_str()) {
            Ok(Some(m)) => m.sip.parse::<SipUri>().map_err(|e| e.to_string()),
            _ => self
                .addresses
                .jid_sender_to_sip(&from)
                .map_err(|e| e.to_string()),
        };
        let sender = match sender {
            Ok(s) => s,
            Err(why) => return self.bounce(&msg, DefinedCondition::JidMalformed, &why),
        };
        let (t0, wall0) = self.settings.epoch;
        let wall = wall0 + now.saturating_duration_since(t0);
        let content = match im::stanza_to_sip(&msg, &rfc3339(wall)) {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(r) => return self.bounce(&msg, r.condition, &r.text),
        };
        let mut headers = Vec::new();
        if let Some(s) = &content.subject {
            headers.push(("Subject".to_string(), one_line(s)));
        }
        if let Some(l) = &content.lang {
            headers.push(("Content-Language".to_string(), one_line(l)));
        }
        headers.push(("Max-Forwards".to_string(), "70".to_string()));
        let req = OutRequest {
            method: "MESSAGE".into(),
            uri: target.to_string(),
            from: sender.to_string(),
            to: target.to_string(),
            call_id: content
                .thread
                .as_deref()
                .map(one_line)
                .filter(|c| is_call_id(c)),
            headers,
            content_type: Some(content.content_type),
            body: content.body,
            flow: None,
            flow_only: false,
            dialog: None,
            next_hop: None,
        };
        // RFC 3261 §18.1.1: a request within 200 bytes of the path MTU (1300
        // bytes) must go over a congestion-controlled transport.
        let estimate = estimate_size(&req);
        let (transport, forced_tcp) = if self.settings.default_transport == Transport::Udp
            && estimate > self.settings.udp_max_bytes
        {
            (Transport::Tcp, true)
        } else {
            (self.settings.default_transport, false)
        };
        counter!("stox_messages_total", "direction" => "xmpp_to_sip").increment(1);
        // A SIP user of `C`: to every registered contact (forked), or held until he
        // registers (issue 5).
        if let Some((user, aor)) = self.local_aor(&target) {
            if self.sip_user(&user).is_none() {
                return self.bounce(
                    &msg,
                    DefinedCondition::ItemNotFound,
                    &format!("{aor} is not a SIP user of this gateway"),
                );
            }
            // One target per UA instance (RFC 5626 §7), the other flows held back.
            let targets = self.registrar.targets(&aor, now);
            if targets.is_empty() {
                return self.hold_for(&aor, &msg);
            }
            let fork = self.next_fork;
            self.next_fork += 1;
            self.forks.insert(
                fork,
                Fork {
                    left: targets.len(),
                    delivered: false,
                    failure: None,
                    flows_only: true,
                },
            );
            debug!(%from, %aor, forks = targets.len(), "XMPP message → SIP MESSAGE to a registered user");
            let default = if forced_tcp {
                Transport::Tcp
            } else {
                transport
            };
            for t in targets {
                // Over the connection it registered on, while open (RFC 5626 §5.3).
                let (r, transport) = to_binding(&req, &t.first, default);
                let branch = Branch {
                    req: r.clone(),
                    alternates: t.alternates,
                };
                self.send_message(r, transport, msg.clone(), forced_tcp, Some((fork, branch)));
            }
            return;
        }
        if let Some(a) = account {
            // The provider sees the account's identity, never the XMPP address.
            let Ok(from_na) = a.from_name_addr() else {
                return self.bounce(
                    &msg,
                    DefinedCondition::InternalServerError,
                    "account address",
                );
            };
            let mut req = req;
            req.from = from_na;
            req.next_hop = a.outbound_proxy.clone();
            self.next_id += 1;
            req.call_id = Some(
                req.call_id
                    .unwrap_or_else(|| format!("{}-{}@stox", self.id_prefix, self.next_id)),
            );
            req.dialog = Some(crate::sipmsg::DialogRef {
                from_tag: format!("{:x}{:x}", self.id_seed & 0xffff_ffff, self.next_id),
                to_tag: None,
                cseq: 1,
                route: Vec::new(),
            });
            let transport = match a.transport {
                // Never downgraded, whatever the size.
                _ if a.tls() => Transport::Tls,
                accounts::AccountTransport::Tcp => Transport::Tcp,
                accounts::AccountTransport::Tls => Transport::Tls,
                accounts::AccountTransport::Udp => transport,
            };
            debug!(%from, %target, account = %a.id, "XMPP message → SIP MESSAGE through an account");
            let tx = self.next_tx;
            self.next_tx -= 1;
            self.pending_out.insert(
                tx,
                PendingOut {
                    stanza: msg,
                    forced_tcp,
                    branch: None,
                    fork: None,
                    account: Some((a.key(), req.clone(), transport)),
                },
            );
            self.outputs
                .push_back(Output::SipSend { tx, req, transport });
            return;
        }
        debug!(%from, %target, size = estimate, ?transport, "XMPP message → SIP MESSAGE");
        self.send_message(req, transport, msg, forced_tcp, None);
    }

    fn send_message(
        &mut self,
        req: OutRequest,
        transport: Transport,
        stanza: Element,
        forced_tcp: bool,
        fork: Option<(u64, Branch)>,
    ) {
        let tx = self.next_tx;
        self.next_tx -= 1;
        let (fork, branch) = fork.unzip();
        self.pending_out.insert(
            tx,
            PendingOut {
                stanza,
                forced_tcp,
                branch,
                fork,
                account: None,
            },
        );
        self.outputs
            .push_back(Output::SipSend { tx, req, transport });
    }

    /// Keeps a message for a SIP user of `C` who has no registered contact: it is sent, in
    /// order, when he registers (the sender hears nothing until then: a receipt, if asked
    /// for, comes from his phone).
    fn hold_for(&mut self, aor: &str, msg: &Element) {
        let seq = self.unix_of(self.settings.epoch.0) * 1_000_000 + self.next_held();
        let key = format!("{aor}|{seq:020}");
        self.store_put(stox_mappings::Table::Held, &key, &stanza::to_string(msg));
        counter!("stox_messages_held_total").increment(1);
        info!(%aor, "message held until the SIP user registers");
    }

    fn next_held(&mut self) -> u64 {
        self.next_pending += 1;
        self.next_pending
    }

    /// Sends what was held for `aor`, in order (after a REGISTER made a binding).
    fn deliver_held(&mut self, now: Instant, aor: &str) {
        if self.registrar.contacts(aor, now).is_empty() {
            return;
        }
        let held = match self
            .tables
            .list_prefix(stox_mappings::Table::Held, &format!("{aor}|"))
        {
            Ok(h) => h,
            Err(e) => return warn!(%aor, error = %e, "cannot read held messages"),
        };
        if !held.is_empty() {
            info!(%aor, count = held.len(), "delivering held messages");
        }
        for (key, bytes) in held {
            self.store_remove(stox_mappings::Table::Held, &key);
            let stanza = serde_json::from_slice::<String>(&bytes)
                .ok()
                .and_then(|s| s.parse::<Element>().ok());
            match stanza {
                Some(s) => self.on_message(now, s),
                None => warn!(%key, "unreadable held message dropped"),
            }
        }
    }

    /// The answer to a new INVITE from a SIP user of `C` that did not authenticate (`407`
    /// with a challenge, or `403`), `None` when it may go on (issue 5: no open relay).
    pub fn refuse_unauthenticated(
        &mut self,
        now: Instant,
        req: &SipRequest,
    ) -> Option<(u16, Vec<(String, String)>)> {
        let (code, headers, why) = self.local_sender_refused(now, req)?;
        info!(code, %why, method = %req.method, "request from a SIP user of the component refused");
        counter!("stox_sip_responses_sent_total", "code" => code.to_string()).increment(1);
        Some((code, headers))
    }

    /// The answer to a new INVITE for a SIP user of `C` (`sip:dave@C`) from the SIP side:
    /// stox bridges calls between SIP and XMPP only, so it acts as a redirect server
    /// (RFC 3261 §8.3, §21.3.3): `302 Moved Temporarily` with one `Contact` per registered
    /// binding (its `q` and remaining `expires`), the caller then calls them itself; `480`
    /// when he has none. `None` for any other Request-URI.
    pub fn redirect_invite(
        &mut self,
        now: Instant,
        req: &SipRequest,
    ) -> Option<(u16, Vec<(String, String)>)> {
        let uri: SipUri = req.uri.parse().ok()?;
        let (_, aor) = self.local_aor(&uri)?;
        // A contact reachable only over the connection it registered on (a WebSocket
        // client's `.invalid` host, RFC 7118 §5) is of no use to the caller.
        let contacts: Vec<_> = self
            .registrar
            .contacts(&aor, now)
            .into_iter()
            .filter(|b| {
                b.contact.parse::<SipUri>().is_ok_and(|u| {
                    !u.host.ends_with(".invalid")
                        && !u.transport().is_some_and(|t| {
                            t.eq_ignore_ascii_case("ws") || t.eq_ignore_ascii_case("wss")
                        })
                })
            })
            .collect();
        if contacts.is_empty() {
            info!(%aor, "INVITE for a SIP user of the component with no binding a caller can reach: 480");
            counter!("stox_sip_responses_sent_total", "code" => "480").increment(1);
            return Some((
                480,
                vec![(
                    "Warning".into(),
                    format!("399 stox \"{aor} is not registered\""),
                )],
            ));
        }
        let headers = contacts
            .iter()
            .map(|b| {
                let expires = b.expires_at.saturating_duration_since(now).as_secs();
                let q =
                    b.q.as_deref()
                        .map(|q| format!(";q={q}"))
                        .unwrap_or_default();
                (
                    "Contact".to_string(),
                    format!("<{}>{q};expires={expires}", b.contact),
                )
            })
            .collect::<Vec<_>>();
        info!(%aor, contacts = headers.len(), "INVITE for a SIP user of the component: 302 to his contacts");
        counter!("stox_sip_responses_sent_total", "code" => "302").increment(1);
        Some((302, headers))
    }

    /// `Some((code, headers, why))` when `req` comes from a SIP user of `C` (its From) and is
    /// not authenticated as him (RFC 3261 §22.3, `407` with a challenge).
    fn local_sender_refused(&mut self, now: Instant, req: &SipRequest) -> Option<Refusal> {
        let from: SipUri = uri_of_name_addr(req.header("From")?).parse().ok()?;
        let (user, aor) = self.local_aor(&from)?;
        match self.authenticate(now, req, true) {
            registrar::Authn::User(u) if u == user => None,
            registrar::Authn::User(u) => Some((403, vec![], format!("{u} may not speak as {aor}"))),
            registrar::Authn::Refuse(code, headers, why) => Some((code, headers, why)),
        }
    }

    /// RFC 3261 §16.6 / §16.7 as a registrar's proxy would for MESSAGE: a request for a SIP
    /// user of `C` (`sip:dave@C`) goes to each of his registered contacts, each a new client
    /// transaction; the first 2xx answers the sender, else the last failure does (`408` for
    /// a timeout, `503` when no contact could be reached). No contact: `480`. `false` when
    /// the Request-URI is not such a user (the XMPP side then decides).
    fn relay_to_contacts(&mut self, now: Instant, tx: TxId, req: &SipRequest) -> bool {
        let Some((user, aor)) = req
            .uri
            .parse::<SipUri>()
            .ok()
            .and_then(|u| self.local_aor(&u))
        else {
            return false;
        };
        if self.sip_user(&user).is_none() {
            return false;
        }
        let max_forwards = match req.header("Max-Forwards").map(str::parse::<u32>) {
            None => 70,
            Some(Ok(0)) => {
                self.reply(tx, 483, vec![]);
                return true;
            }
            Some(Ok(n)) => n - 1,
            Some(Err(_)) => {
                self.reply(tx, 400, vec![]);
                return true;
            }
        };
        // One target per UA instance (RFC 5626 §7), the other flows held back.
        let targets = self.registrar.targets(&aor, now);
        if targets.is_empty() {
            info!(%aor, "MESSAGE for a SIP user with no registered contact: 480");
            self.reply(tx, 480, vec![]);
            return true;
        }
        let from = req.header("From").map(uri_of_name_addr).unwrap_or_default();
        let group = self.next_fork;
        self.next_fork += 1;
        self.relay_groups.insert(
            group,
            RelayGroup {
                tx,
                left: targets.len(),
                answered: false,
                last: 480,
                aor: aor.clone(),
                flow_failed: false,
            },
        );
        let mut headers = vec![("Max-Forwards".to_string(), max_forwards.to_string())];
        for name in ["Subject", "Content-Language"] {
            if let Some(v) = req.header(name) {
                headers.push((name.to_string(), one_line(v)));
            }
        }
        debug!(%aor, forks = targets.len(), "SIP MESSAGE relayed to the registered contacts");
        let template = OutRequest {
            method: "MESSAGE".into(),
            uri: String::new(),
            from: from.to_string(),
            to: aor.clone(),
            call_id: None,
            headers,
            content_type: req.header("Content-Type").map(one_line),
            body: req.body.clone(),
            flow: None,
            flow_only: false,
            dialog: None,
            next_hop: None,
        };
        for t in targets {
            // Over the connection it registered on, while open (RFC 5626 §5.3).
            let (out, transport) = to_binding(&template, &t.first, Transport::Udp);
            let branch = Branch {
                req: out,
                alternates: t.alternates,
            };
            self.relay_send(group, branch, transport);
        }
        true
    }

    /// Sends one branch of a relayed MESSAGE.
    fn relay_send(&mut self, group: u64, branch: Branch, transport: Transport) {
        let tx = self.next_tx;
        self.next_tx -= 1;
        let req = branch.req.clone();
        self.relays.insert(tx, RelayBranch { group, branch });
        self.outputs
            .push_back(Output::SipSend { tx, req, transport });
    }

    /// RFC 5626 §5.3 / §7 for one branch to a SIP user of `C`: a failed flow invalidates
    /// the bindings reached over it; after 430 or 408 the next flow of the same UA instance
    /// takes the request (`Some((request, transport, the rest))`), if it has one.
    fn next_flow(
        &mut self,
        branch: Option<Branch>,
        result: &Result<SipResponse, SendFailure>,
    ) -> Option<(OutRequest, Transport, Branch)> {
        let mut b = branch?;
        if let (Err(SendFailure::FlowFailed(why)), Some(f)) = (result, b.req.flow) {
            info!(uri = %b.req.uri, %why, "flow failed (RFC 5626 §5.3: 430 Flow Failed)");
            self.flow_failed(f);
        }
        if !retry_other_flow(result) || b.alternates.is_empty() {
            return None;
        }
        let next = b.alternates.remove(0);
        let (req, transport) = to_binding(&b.req, &next, Transport::Udp);
        debug!(uri = %req.uri, "the same UA over its next flow (RFC 5626 §7)");
        let rest = Branch {
            req: req.clone(),
            alternates: b.alternates,
        };
        Some((req, transport, rest))
    }

    /// The outcome of a relayed MESSAGE; `false` when `tx` is not one.
    ///
    /// A branch whose flow failed (the edge proxy's 430, RFC 5626 §5.3) goes to the next
    /// flow of the same UA instance if there is one (§7). A 430 is never the answer: it
    /// is meant for the authoritative proxy, which stox is, and an endpoint must not get
    /// one (RFC 5626 §11); with no other answer the sender gets `480 Temporarily
    /// Unavailable`, as for a user without binding (the failed ones are gone, §7).
    fn on_relay_response(&mut self, tx: TxId, result: &Result<SipResponse, SendFailure>) -> bool {
        let Some(RelayBranch { group, branch }) = self.relays.remove(&tx) else {
            return false;
        };
        if let Some((_, transport, rest)) = self.next_flow(Some(branch), result) {
            self.relay_send(group, rest, transport);
            return true;
        }
        let Some(g) = self.relay_groups.get_mut(&group) else {
            return true;
        };
        g.left = g.left.saturating_sub(1);
        let code = match result {
            Ok(r) => r.code,
            Err(SendFailure::Timeout) => 408,
            Err(SendFailure::Transport(_)) => 503,
            Err(SendFailure::FlowFailed(_)) => 430,
        };
        let mut answer = None;
        if (200..300).contains(&code) && !g.answered {
            g.answered = true;
            answer = Some((g.tx, code, vec![]));
        } else if code == 430 {
            g.flow_failed = true;
        } else if code >= 300 {
            g.last = code;
        }
        if g.left == 0 {
            if !g.answered {
                let headers = if g.flow_failed && g.last == 480 {
                    let why = format!(
                        "the connection of {}'s user agent is gone (RFC 5626 430 Flow Failed)",
                        g.aor
                    );
                    vec![("Warning".to_string(), format!("399 stox \"{why}\""))]
                } else {
                    vec![]
                };
                answer = Some((g.tx, g.last, headers));
            }
            self.relay_groups.remove(&group);
        }
        if let Some((tx, code, headers)) = answer {
            self.reply(tx, code, headers);
        }
        true
    }

    fn on_message_error(&mut self, msg: Element) {
        let Some(id) = msg.attr("id") else { return };
        let (cond, text) = stanza::error_of(&msg).unwrap_or((None, None));
        let cond = cond.unwrap_or(DefinedCondition::UndefinedCondition);
        let Some(p) = self.by_id.get(id).copied().and_then(|key| {
            let p = self.untrack_in(key)?;
            if let Some(seq) = p.seq {
                self.outbox_remove(seq);
            }
            Some(p)
        }) else {
            debug!(%id, "error bounce for no pending message (late or unknown)");
            counter!("stox_late_bounces_total").increment(1);
            return;
        };
        // RFC 7247 §7: a bounce about a bare JID concerns all of the user's
        // endpoints (6xx); about a full JID, one endpoint (4xx).
        let to_full = msg
            .attr("from")
            .and_then(|f| f.parse::<Jid>().ok())
            .is_some_and(|j| j.resource().is_some());
        let code = errmap::xmpp_to_sip(&cond, to_full, false);
        info!(%id, condition = errmap::condition_name(&cond), code, text = text.as_deref().unwrap_or(""), "XMPP bounce → SIP error");
        counter!("stox_errors_total", "direction" => "sip_to_xmpp", "condition" => errmap::condition_name(&cond)).increment(1);
        if let Some(tx) = p.tx {
            let mut headers = vec![];
            if let Some(t) = text.filter(|t| !t.is_empty()) {
                // The Reason-Phrase cannot be set through the stack; carry the
                // XMPP <text/> in a Warning (RFC 3261 §20.43, code 399 misc).
                headers.push((
                    "Warning".into(),
                    format!("399 stox \"{}\"", t.replace(['"', '\\', '\r', '\n'], " ")),
                ));
            }
            self.reply(tx, code, headers);
        }
    }

    // ----------------------------------------------------------- SIP back

    fn on_sip_response(
        &mut self,
        now: Instant,
        tx: TxId,
        result: Result<SipResponse, SendFailure>,
    ) {
        if self.on_presence_response(now, tx, &result) {
            return;
        }
        if self.on_account_response(now, tx, &result) {
            return;
        }
        if self.on_relay_response(tx, &result) {
            return;
        }
        let Some(mut p) = self.pending_out.remove(&tx) else {
            return;
        };
        // To a SIP user of `C`: a failed flow, then the next flow of the same UA.
        if let Some((req, transport, rest)) = self.next_flow(p.branch.take(), &result) {
            let tx = self.next_tx;
            self.next_tx -= 1;
            p.branch = Some(rest);
            self.pending_out.insert(tx, p);
            self.outputs
                .push_back(Output::SipSend { tx, req, transport });
            return;
        }
        // A provider's challenge to a message sent through an account: answered once.
        if let (Ok(r), Some((key, req, transport))) = (&result, p.account.take()) {
            if matches!(r.code, 401 | 407) {
                let authorized = req.headers.iter().any(|(n, _)| {
                    n.eq_ignore_ascii_case("Authorization")
                        || n.eq_ignore_ascii_case("Proxy-Authorization")
                });
                if !authorized {
                    if let Some(req) = self.answer_challenge(&key, req, r) {
                        let tx = self.next_tx;
                        self.next_tx -= 1;
                        p.account = Some((key, req.clone(), transport));
                        self.pending_out.insert(tx, p);
                        self.outputs
                            .push_back(Output::SipSend { tx, req, transport });
                        return;
                    }
                }
            }
        }
        let delivered = matches!(&result, Ok(r) if r.code < 300);
        let flow_failed = matches!(&result, Err(SendFailure::FlowFailed(_)));
        if let Some(f) = p.fork.and_then(|f| self.forks.get_mut(&f)) {
            f.left = f.left.saturating_sub(1);
            f.delivered |= delivered;
            f.flows_only &= delivered || flow_failed;
        }
        let (cond, text) = match result {
            Ok(r) if (200..300).contains(&r.code) => return self.fork_done(p.fork),
            Ok(r) if r.code < 200 => return self.fork_done(p.fork),
            Ok(r) => {
                info!(code = r.code, reason = %r.reason, "SIP MESSAGE failed");
                counter!("stox_errors_total", "direction" => "sip_response", "code" => r.code.to_string()).increment(1);
                (errmap::sip_to_xmpp(r.code), r.reason)
            }
            Err(SendFailure::Timeout) => (
                DefinedCondition::RemoteServerTimeout,
                "no response from the SIP side (timer F)".to_string(),
            ),
            Err(SendFailure::Transport(why)) if p.forced_tcp => (
                DefinedCondition::PolicyViolation,
                format!("message too large for UDP (RFC 3261 §18.1.1) and no TCP path: {why}"),
            ),
            Err(SendFailure::Transport(why) | SendFailure::FlowFailed(why)) => {
                (DefinedCondition::RemoteServerNotFound, why)
            }
        };
        if let Some(fork) = p.fork {
            // A forked MESSAGE fails only when every contact failed (the last failure
            // is reported).
            let Some(f) = self.forks.get_mut(&fork) else {
                return;
            };
            f.failure = Some((cond, text));
            if f.left > 0 || f.delivered {
                return self.fork_done(Some(fork));
            }
            let Some(f) = self.forks.remove(&fork) else {
                return;
            };
            if f.flows_only {
                // Every contact it went to was reached over a flow that failed: those
                // bindings are gone (RFC 5626 §7), and a message for a user without a
                // binding waits until he registers again, as any other.
                info!(
                    "every flow of the SIP user failed; the message waits for a new registration"
                );
                return self.on_message(now, p.stanza);
            }
            if let Some((cond, text)) = f.failure {
                self.bounce(&p.stanza, cond, &text);
            }
            return;
        }
        self.bounce(&p.stanza, cond, &text);
    }

    fn fork_done(&mut self, fork: Option<u64>) {
        if let Some(f) = fork {
            if self.forks.get(&f).is_some_and(|f| f.left == 0) {
                self.forks.remove(&f);
            }
        }
    }
}

/// RFC 3339 UTC date-time of a wall-clock time (no leap seconds, as Unix time).
fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // H. Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The AOR of a URI as the store keys it: scheme, user, host, port, no parameters.
fn aor_string(uri: &SipUri) -> String {
    let mut u = uri.clone();
    u.params.clear();
    u.to_string()
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// RFC 3261 §25.1: `callid = word [ "@" word ]`.
fn is_call_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.!%*_+`'~()<>:\\\"/[]?{}@".contains(c))
        && s.matches('@').count() <= 1
}

/// The size of the request on the wire, within a few bytes: the headers the
/// io layer adds (Via, tags, CSeq, Contact...) take about 350 bytes.
fn estimate_size(req: &OutRequest) -> usize {
    let headers: usize = req.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    350 + req.uri.len() * 2
        + req.from.len()
        + req.to.len()
        + req.call_id.as_ref().map_or(60, |c| c.len() + 12)
        + req.content_type.as_ref().map_or(0, |c| c.len() + 16)
        + headers
        + req.body.len()
}

#[cfg(test)]
mod tests;

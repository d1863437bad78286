//! The call bridge: one SIP INVITE dialog ⇄ one XEP-0353 + Jingle session, with the relay
//! between their media (STOX-MAPPING.md §7, issue 3). Sans-IO like the rest of the core: SIP
//! dialog events, stanzas and relay events come in as values, [`DialogAction`]s, stanzas and
//! [`MediaCommand`]s go out.
//!
//! # SIP → XMPP
//!
//! ```text
//! INVITE (SDP offer) ──▶ relay started; <propose> (+<store/>) to the bare JID, from the
//!                        caller's contact JID with resource `phone`
//! 180 ◀── <ringing/>
//!         <proceed/> from a full JID ──▶ session-initiate to exactly that JID
//! 200 (SDP answer) ◀── session-accept; ACK
//! BYE ⇄ session-terminate (success)
//! CANCEL ──▶ <retract/> (before session-initiate) or session-terminate cancel
//! 603/486/… ◀── <reject/> or session-terminate before accept (reason, translate::call)
//! 480 + <retract/> when nobody answers within `[calls] no_answer_secs`
//! ```
//!
//! # XMPP → SIP
//!
//! ```text
//! <propose> to a contact JID ──▶ <ringing/> and <proceed/> from `contact/phone` at once
//!   (stox needs the Jingle offer to write the SIP offer: STOX-MAPPING §8, "send <proceed/>
//!   and put early SIP states in session-info")
//! session-initiate (also without JMI) ──▶ relay started; INVITE with the SDP offer
//! session-info <ringing/> ◀── 180
//! session-accept ◀── 200 (ACK sent by the stack)
//! session-terminate (reason) ◀── 3xx–6xx, timeout
//! session-terminate ──▶ CANCEL before the answer, BYE after
//! ```
//!
//! Jingle is accepted only from the JID the session is with; a second `session-terminate` is
//! answered with a result and otherwise ignored. Media never passes through here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use metrics::{counter, gauge};
use stox_xmpp::jingle::{
    self, Action, Jingle, JingleMessage, ProposedDescription, Reason, ReasonCondition, SessionInfo,
};
use tracing::{debug, info, warn};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::DefinedCondition;

use super::{Gateway, Output};
use crate::media::negotiate::{self, Relayable};
use crate::media::relay::{
    CallMedia, CallStarted, RelayEventKind, RemoteCandidate, SipLegParams, XmppLegParams,
    XmppRemote,
};
use crate::media::sdp_jingle::{self, JingleMedia, Role, SdpParams};
use crate::sipmsg::{OutRequest, SipRequest};
use crate::stanza::{self, NS_COMPONENT};
use crate::translate::call as reasons;

/// Identifies one call (one INVITE dialog, one Jingle session) between the core and the io
/// layer. The io layer numbers incoming INVITEs upwards from 1; the core numbers the calls it
/// starts downwards from `u64::MAX`.
pub type CallKey = u64;

/// The resource of a contact JID that calls and is called (XEP-0353 `<proceed/>` comes from
/// it; disco and presence of contacts name it).
pub use stox_xmpp::disco::CALL_RESOURCE;

/// What happened to a SIP INVITE dialog (io → core).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogEvent {
    /// The caller CANCELled the incoming INVITE (the stack answered 200 and 487).
    Cancelled,
    /// The incoming INVITE's 2xx was ACKed.
    Confirmed,
    /// A provisional response (180, 183) to stox's INVITE.
    Progress {
        /// Its code.
        code: u16,
    },
    /// A 2xx to stox's INVITE (the stack sent the ACK).
    Answered {
        /// The SDP answer.
        sdp: Vec<u8>,
    },
    /// stox's INVITE failed: a final 3xx–6xx, or 408 (timer B) / 503 (transport) made up.
    Failed {
        /// The status code.
        code: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The other side sent BYE (the stack answered 200).
    Bye,
    /// The stack ended the dialog for another reason (e.g. no ACK).
    Terminated,
}

/// What the core asks of a SIP INVITE dialog (core → io).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogAction {
    /// 180 Ringing on the incoming INVITE.
    Ringing,
    /// 200 OK with this SDP answer on the incoming INVITE.
    Accept {
        /// The SDP answer.
        sdp: Vec<u8>,
    },
    /// A final error response on the incoming INVITE.
    Reject {
        /// 4xx–6xx.
        code: u16,
        /// Why, for a `Warning` header and the log.
        reason: String,
    },
    /// Send an INVITE (the body is the SDP offer); outcomes come back as [`DialogEvent`]s.
    Invite {
        /// The request.
        req: Box<OutRequest>,
        /// The caller's external account, when the call leaves through one: its
        /// credentials answer the provider's 401/407, its display name goes into From
        /// (`req.from` is then the account's AOR and `req.next_hop` its outbound proxy).
        account: Option<Box<InviteAccount>>,
    },
    /// End the dialog: BYE once established, CANCEL while stox's INVITE is pending.
    Hangup,
}

/// The external account an INVITE leaves through (module `accounts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteAccount {
    /// The AOR's user part.
    pub user: String,
    /// The Digest user name when it is not `user`.
    pub auth_user: Option<String>,
    /// The password.
    pub password: String,
    /// From's display name.
    pub display_name: Option<String>,
    /// The account's transport: a `tls` account's INVITE leaves over TLS only, a `tcp`
    /// one's over TCP.
    pub transport: crate::core::accounts::AccountTransport,
}

/// What the core asks of the relay for one call (core → io).
#[derive(Debug, Clone)]
pub enum MediaCommand {
    /// Open the call's sockets; the io layer answers with `Input::MediaStarted`.
    Start(Box<CallMedia>),
    /// The XMPP leg's remote description is known.
    XmppRemote(Box<XmppRemote>),
    /// The SIP leg's remote RTP address is known.
    SipRemote(SocketAddr),
    /// A trickled XEP-0176 candidate.
    Candidate(RemoteCandidate),
    /// Close the call's media.
    Hangup,
}

/// Call settings (`[calls]`, `[media]`).
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// Ring time before 480 + `<retract/>` (SIP → XMPP) or CANCEL (XMPP → SIP).
    pub no_answer: Duration,
    /// A leg without media for this long ends the call (the relay enforces it).
    pub no_media: Duration,
}

impl Default for CallSettings {
    fn default() -> Self {
        CallSettings {
            no_answer: Duration::from_secs(45),
            no_media: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    SipToXmpp,
    XmppToSip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// SIP → XMPP: `<propose>` sent, waiting for `<proceed/>`.
    Proposed,
    /// SIP → XMPP: `session-initiate` sent, waiting for `session-accept`.
    Initiated,
    /// XMPP → SIP: waiting for the relay before the INVITE leaves.
    Starting,
    /// XMPP → SIP: INVITE sent, waiting for its final response.
    Inviting,
    /// Answered both ways.
    Active,
}

pub(super) struct Call {
    dir: Dir,
    sid: String,
    /// Our side on XMPP: the SIP party's contact JID with resource `phone`.
    gw: String,
    /// The XMPP party: the bare JID until `<proceed/>` names a device (SIP → XMPP).
    peer: String,
    state: State,
    /// The offer, reduced to what the relay carries (the SIP offer for SIP → XMPP, the Jingle
    /// offer for XMPP → SIP).
    offer: Relayable,
    /// The relay's description of our ends, once started.
    started: Option<CallStarted>,
    want_initiate: bool,
    /// Candidates trickled before the relay call existed.
    early_candidates: Vec<RemoteCandidate>,
    ring_deadline: Option<Instant>,
    ringing_sent: bool,
    /// The SIP side, for the log and the admin API.
    sip_party: String,
    /// XMPP → SIP: From and Request-URI of the INVITE to send once the relay started.
    invite: Option<(String, String)>,
    codec: String,
    sdp_version: u64,
    /// XMPP → SIP to a SIP user of `C` with several contacts: the parallel INVITEs.
    fork: Fork,
}

/// The branches of an XMPP → SIP call forked to every registered contact of a SIP user of
/// `C` (issue 5; RFC 3261 §16.7 gives the rules a forking proxy follows, which stox
/// applies as the UAC of each branch): the first 2xx wins and the other branches are
/// cancelled; when every branch failed, the best final response ends the call.
#[derive(Debug, Default)]
struct Fork {
    /// Branch keys whose INVITE has no final response yet (the call's own key is the first
    /// branch; further ones come from `Calls::next_key`).
    pending: Vec<CallKey>,
    /// The branch that answered: in-dialog actions (BYE) go to its dialog.
    winner: Option<CallKey>,
    /// The best final error seen so far (RFC 3261 §16.7 step 6).
    best: Option<(u16, String)>,
}

/// RFC 3261 §16.7 (6): a 6xx beats everything; else the lowest class wins, and among
/// 4xx the more telling codes (486, 480…) beat 408 and 487, which only say nobody answered.
fn better_failure(a: u16, b: u16) -> bool {
    let rank = |c: u16| -> (u16, u16) {
        match c {
            600..=699 => (0, c),
            408 | 487 => (c / 100 * 10 + 9, c),
            _ => (c / 100 * 10, c),
        }
    };
    rank(a) < rank(b)
}

/// What a dialog event of one branch means for the call.
enum ForkOutcome {
    /// Handle it as the call's own event.
    Pass(DialogEvent),
    /// This branch answered first: cancel `cancel`, then handle the answer.
    Won {
        /// The branch's SDP answer.
        sdp: Vec<u8>,
        /// The other branches, still ringing.
        cancel: Vec<CallKey>,
    },
    /// A 2xx on a branch that lost (it was cancelled too late): BYE it (RFC 3261
    /// §13.2.2.4; the dialog layer ACKs it).
    Bye,
    /// Nothing for the call: a cancelled branch's 487, one failure among branches still
    /// ringing.
    Absorbed,
}

fn fork_event(f: &mut Fork, branch: CallKey, event: DialogEvent) -> ForkOutcome {
    let lost = |event: &DialogEvent| match event {
        DialogEvent::Answered { .. } => ForkOutcome::Bye,
        _ => ForkOutcome::Absorbed,
    };
    if let Some(w) = f.winner {
        return if branch == w {
            ForkOutcome::Pass(event)
        } else {
            lost(&event)
        };
    }
    if !f.pending.contains(&branch) {
        return lost(&event);
    }
    let (code, reason) = match event {
        DialogEvent::Answered { sdp } => {
            f.winner = Some(branch);
            let cancel = f.pending.iter().copied().filter(|b| *b != branch).collect();
            f.pending.clear();
            return ForkOutcome::Won { sdp, cancel };
        }
        DialogEvent::Failed { code, reason } => (code, reason),
        DialogEvent::Bye | DialogEvent::Terminated | DialogEvent::Cancelled
            if f.pending.len() == 1 =>
        {
            f.pending.clear();
            return ForkOutcome::Pass(event);
        }
        DialogEvent::Bye | DialogEvent::Terminated | DialogEvent::Cancelled => {
            (487, "Request Terminated".to_string())
        }
        DialogEvent::Progress { .. } | DialogEvent::Confirmed => return ForkOutcome::Pass(event),
    };
    f.pending.retain(|b| *b != branch);
    let best = match f.best.take() {
        Some((b, why)) if !better_failure(code, b) => (b, why),
        _ => (code, reason),
    };
    if f.pending.is_empty() {
        ForkOutcome::Pass(DialogEvent::Failed {
            code: best.0,
            reason: best.1,
        })
    } else {
        f.best = Some(best);
        ForkOutcome::Absorbed
    }
}

/// A call as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CallInfo {
    /// The call's key (`DELETE /api/v1/calls/{id}`).
    pub id: u64,
    /// `sip_to_xmpp` or `xmpp_to_sip`.
    pub direction: String,
    /// The Jingle session id.
    pub sid: String,
    /// The SIP party (From of an incoming INVITE, Request-URI of stox's).
    pub sip: String,
    /// The XMPP party (full JID once known).
    pub xmpp: String,
    /// `proposed`, `initiated`, `starting`, `inviting` or `active`.
    pub state: String,
    /// The voice codec carried (empty until answered).
    pub codec: String,
}

/// The calls the core knows, and how stanzas find them.
#[derive(Default)]
pub(super) struct Calls {
    by_key: HashMap<CallKey, Call>,
    /// (peer bare JID, sid) → call.
    by_sid: HashMap<(String, String), CallKey>,
    /// Ids of JMI messages and iqs stox sent → call (to match bounces and iq errors).
    by_stanza: HashMap<String, CallKey>,
    /// Extra INVITE branches of forked calls → the call.
    by_branch: HashMap<CallKey, CallKey>,
    next_key: CallKey,
}

fn bare(jid: &str) -> String {
    jid.split('/').next().unwrap_or(jid).to_owned()
}

fn jmi_message(from: &str, to: &str, id: &str, jmi: &JingleMessage) -> Element {
    stanza::builder("message", from, to, id, Some("chat"))
        .append(jmi.to_element())
        .append(jingle::jmi::store_hint())
        .build()
}

fn iq_set(from: &str, to: &str, id: &str, j: &Jingle) -> Element {
    stanza::builder("iq", from, to, id, Some("set"))
        .append(j.to_element())
        .build()
}

fn iq_result(iq: &Element) -> Element {
    stanza::builder(
        "iq",
        iq.attr("to").unwrap_or_default(),
        iq.attr("from").unwrap_or_default(),
        iq.attr("id").unwrap_or_default(),
        Some("result"),
    )
    .build()
}

/// XEP-0166 §7.3: an iq about a session that does not exist.
fn unknown_session(iq: &Element) -> Element {
    let mut e = stanza::error_reply(
        iq,
        &DefinedCondition::ItemNotFound,
        Some("no such Jingle session"),
    );
    if let Some(err) = e.get_child_mut("error", NS_COMPONENT) {
        err.append_child(Element::bare("unknown-session", jingle::ns::JINGLE_ERRORS));
    }
    e
}

fn sdp_bytes(media: &JingleMedia, role: Role, version: u64, id: u64) -> Option<Vec<u8>> {
    let params = SdpParams {
        role,
        session_id: id,
        session_version: version,
    };
    match sdp_jingle::jingle_to_sdp(media, &params) {
        Ok(s) => Some(s.to_string().into_bytes()),
        Err(e) => {
            warn!(error = %e, "writing SDP failed");
            None
        }
    }
}

impl Gateway {
    fn call_out(&mut self, call: CallKey, action: DialogAction) {
        self.outputs.push_back(Output::Dialog { call, action });
    }

    fn media_out(&mut self, call: CallKey, cmd: MediaCommand) {
        self.outputs.push_back(Output::Media { call, cmd });
    }

    fn stanza_out(&mut self, s: Element) {
        self.outputs.push_back(Output::Stanza(s));
    }

    /// Live calls, for the admin API.
    pub fn calls(&self) -> Vec<CallInfo> {
        let mut v: Vec<CallInfo> = self
            .calls
            .by_key
            .iter()
            .map(|(k, c)| CallInfo {
                id: *k,
                direction: match c.dir {
                    Dir::SipToXmpp => "sip_to_xmpp",
                    Dir::XmppToSip => "xmpp_to_sip",
                }
                .into(),
                sid: c.sid.clone(),
                sip: c.sip_party.clone(),
                xmpp: c.peer.clone(),
                state: match c.state {
                    State::Proposed => "proposed",
                    State::Initiated => "initiated",
                    State::Starting => "starting",
                    State::Inviting => "inviting",
                    State::Active => "active",
                }
                .into(),
                codec: c.codec.clone(),
            })
            .collect();
        v.sort_by_key(|c| c.id);
        v
    }

    pub(super) fn calls_timeout(&self) -> Option<Instant> {
        self.calls
            .by_key
            .values()
            .filter_map(|c| c.ring_deadline)
            .min()
    }

    pub(super) fn calls_handle_timeout(&mut self, now: Instant) {
        let due: Vec<CallKey> = self
            .calls
            .by_key
            .iter()
            .filter(|(_, c)| c.ring_deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            info!(call = key, "no answer: ending the call");
            counter!("stox_calls_ended_total", "why" => "no_answer").increment(1);
            self.end_call(
                key,
                Some((480, "no answer".into())),
                ReasonCondition::Timeout,
                "nobody answered",
            );
        }
    }

    /// Ends a call on both sides: `sip` is the final response for an unanswered incoming
    /// INVITE (else BYE/CANCEL), `cond` the Jingle reason (retract before session-initiate).
    fn end_call(
        &mut self,
        key: CallKey,
        sip: Option<(u16, String)>,
        cond: ReasonCondition,
        text: &str,
    ) {
        self.end_xmpp(key, cond, text);
        self.end_sip(key, sip);
        self.forget(key);
    }

    fn end_xmpp(&mut self, key: CallKey, cond: ReasonCondition, text: &str) {
        let id = self.fresh_id();
        let Some(c) = self.calls.by_key.get(&key) else {
            return;
        };
        // The text may come from the SIP side (a reason phrase): only XML-safe characters.
        let reason = Reason {
            condition: cond,
            text: (!text.is_empty()).then(|| stanza::xml_safe(text).into_owned()),
        };
        let s = if c.dir == Dir::SipToXmpp && c.state == State::Proposed {
            jmi_message(
                &c.gw,
                &c.peer,
                &id,
                &JingleMessage::Retract {
                    id: c.sid.clone(),
                    reason: Some(reason),
                },
            )
        } else {
            let mut j = Jingle::new(Action::SessionTerminate, &c.sid);
            j.reason = Some(reason);
            iq_set(&c.gw, &c.peer, &id, &j)
        };
        self.stanza_out(s);
    }

    fn end_sip(&mut self, key: CallKey, sip: Option<(u16, String)>) {
        let Some(c) = self.calls.by_key.get(&key) else {
            return;
        };
        let action = match (c.dir, c.state) {
            (Dir::SipToXmpp, State::Active) => DialogAction::Hangup,
            (Dir::SipToXmpp, _) => {
                let (code, reason) = sip.unwrap_or((480, "call ended".into()));
                DialogAction::Reject { code, reason }
            }
            (Dir::XmppToSip, State::Starting) => return,
            (Dir::XmppToSip, State::Active) => {
                let dialog = c.fork.winner.unwrap_or(key);
                return self.call_out(dialog, DialogAction::Hangup);
            }
            (Dir::XmppToSip, _) => {
                // CANCEL every branch still ringing.
                let branches = if c.fork.pending.is_empty() {
                    vec![key]
                } else {
                    c.fork.pending.clone()
                };
                for b in branches {
                    self.call_out(b, DialogAction::Hangup);
                }
                return;
            }
        };
        self.call_out(key, action);
    }

    /// Drops a call's state and its media.
    fn forget(&mut self, key: CallKey) {
        if let Some(c) = self.calls.by_key.remove(&key) {
            self.calls.by_sid.remove(&(bare(&c.peer), c.sid.clone()));
            self.calls.by_stanza.retain(|_, k| *k != key);
            self.calls.by_branch.retain(|_, k| *k != key);
            if c.started.is_some() {
                self.media_out(key, MediaCommand::Hangup);
            }
            gauge!("stox_calls_active").set(self.calls.by_key.len() as f64);
            debug!(call = key, sid = %c.sid, "call forgotten");
        }
    }

    fn insert_call(&mut self, key: CallKey, call: Call) {
        self.calls
            .by_sid
            .insert((bare(&call.peer), call.sid.clone()), key);
        self.calls.by_key.insert(key, call);
        gauge!("stox_calls_active").set(self.calls.by_key.len() as f64);
    }

    // ------------------------------------------------------------ SIP → XMPP

    /// A new INVITE (`Input::Invite`).
    pub(super) fn on_invite(&mut self, now: Instant, key: CallKey, req: SipRequest) {
        counter!("stox_calls_total", "direction" => "sip_to_xmpp").increment(1);
        let reject = |this: &mut Gateway, code: u16, why: String| {
            info!(call = key, code, %why, "INVITE rejected");
            counter!("stox_calls_rejected_total", "direction" => "sip_to_xmpp", "code" => code.to_string()).increment(1);
            this.call_out(key, DialogAction::Reject { code, reason: why });
        };
        let target = match self.sip_target(&req) {
            Ok(j) => j,
            Err((code, why)) => return reject(self, code, why),
        };
        let from = match self.sip_sender(&req) {
            Ok(j) => self.sender_through_account(&req, j),
            Err((code, why)) => return reject(self, code, why),
        };
        let is_sdp = req
            .header("Content-Type")
            .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/sdp"));
        if !is_sdp || req.body.is_empty() {
            // RFC 3261 §13.2.1 allows an INVITE without offer; stox needs the offer to build
            // the Jingle one (no delayed offer yet).
            return reject(
                self,
                488,
                "an INVITE without an SDP offer is not supported".into(),
            );
        }
        let offer = match sdp_jingle::parse_sdp(&req.body)
            .map_err(|e| e.to_string())
            .and_then(|s| sdp_jingle::sdp_to_jingle(&s, Role::Initiator).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(why) => return reject(self, 400, format!("bad SDP: {why}")),
        };
        let offer = match negotiate::relayable(&offer) {
            Ok(r) => r,
            Err(e) => return reject(self, 488, e.to_string()),
        };
        let remote = negotiate::sip_remote(&offer.content);
        let rtcp_mux = offer
            .content
            .description
            .as_ref()
            .is_some_and(|d| d.rtcp_mux);
        let gw = format!("{}/{CALL_RESOURCE}", from.to_bare());
        let peer = target.to_bare().to_string();
        let sid = self.fresh_uuid();
        let sip_party = req
            .header("From")
            .map(crate::sipmsg::uri_of_name_addr)
            .unwrap_or_default()
            .to_owned();
        info!(call = key, from = %gw, to = %peer, %sid, "INVITE → <propose>");
        let media = CallMedia {
            xmpp: XmppLegParams {
                we_offer: true,
                content_name: "audio".into(),
                remote: None,
                extensions: Vec::new(),
            },
            sip: SipLegParams {
                remote,
                remote_rtcp: None,
                rtcp_mux,
            },
            pt_map: offer.pt_map.clone(),
            no_media_timeout: self.call_settings.no_media,
        };
        let call = Call {
            dir: Dir::SipToXmpp,
            sid: sid.clone(),
            gw: gw.clone(),
            peer: peer.clone(),
            state: State::Proposed,
            offer,
            started: None,
            want_initiate: false,
            early_candidates: Vec::new(),
            ring_deadline: Some(now + self.call_settings.no_answer),
            ringing_sent: false,
            sip_party,
            invite: None,
            codec: String::new(),
            sdp_version: 1,
            fork: Fork::default(),
        };
        self.insert_call(key, call);
        self.media_out(key, MediaCommand::Start(Box::new(media)));
        let id = self.fresh_id();
        self.calls.by_stanza.insert(id.clone(), key);
        let propose = JingleMessage::Propose {
            id: sid,
            descriptions: vec![ProposedDescription::rtp("audio")],
        };
        self.stanza_out(jmi_message(&gw, &peer, &id, &propose));
    }

    /// `Input::MediaStarted`.
    pub(super) fn on_media_started(&mut self, key: CallKey, result: Result<CallStarted, String>) {
        let Some(c) = self.calls.by_key.get_mut(&key) else {
            // The call ended before the relay answered: free the media again.
            if result.is_ok() {
                self.media_out(key, MediaCommand::Hangup);
            }
            return;
        };
        let started = match result {
            Ok(s) => s,
            Err(why) => {
                warn!(call = key, %why, "the relay could not start the call");
                counter!("stox_calls_ended_total", "why" => "relay").increment(1);
                self.end_call(
                    key,
                    Some((503, "media relay unavailable".into())),
                    ReasonCondition::GeneralError,
                    "media relay unavailable",
                );
                return;
            }
        };
        c.started = Some(started);
        for cand in std::mem::take(&mut c.early_candidates) {
            self.media_out(key, MediaCommand::Candidate(cand));
        }
        let Some(c) = self.calls.by_key.get(&key) else {
            return;
        };
        match (c.dir, c.state) {
            (Dir::SipToXmpp, _) if c.want_initiate => self.send_initiate(key),
            (Dir::XmppToSip, State::Starting) => self.send_invite(key),
            _ => {}
        }
    }

    fn send_initiate(&mut self, key: CallKey) {
        let Some(c) = self.calls.by_key.get_mut(&key) else {
            return;
        };
        let Some(started) = &c.started else {
            c.want_initiate = true;
            return;
        };
        c.want_initiate = false;
        c.state = State::Initiated;
        let mut j = Jingle::new(Action::SessionInitiate, &c.sid);
        j.initiator = Some(c.gw.clone());
        negotiate::xmpp_offer(&c.offer, started, "audio").apply_to(&mut j);
        let (gw, peer) = (c.gw.clone(), c.peer.clone());
        let id = self.fresh_id();
        self.calls.by_stanza.insert(id.clone(), key);
        info!(call = key, to = %peer, "session-initiate");
        self.stanza_out(iq_set(&gw, &peer, &id, &j));
    }

    /// A JMI message from an XMPP user (`<ringing/>`, `<proceed/>`, `<reject/>`, … for a call
    /// stox proposed; `<propose/>`, `<retract/>` for one it is offered).
    pub(super) fn on_jmi(&mut self, msg: &Element, jmi: JingleMessage) {
        let (Some(from), Some(to)) = (msg.attr("from"), msg.attr("to")) else {
            return;
        };
        if let JingleMessage::Propose { id, descriptions } = &jmi {
            return self.on_propose(from, to, id, descriptions);
        }
        let Some(&key) = self.calls.by_sid.get(&(bare(from), jmi.id().to_owned())) else {
            debug!(%from, sid = jmi.id(), kind = jmi.name(), "JMI for no call");
            return;
        };
        let Some(c) = self.calls.by_key.get_mut(&key) else {
            return;
        };
        match (c.dir, jmi) {
            (Dir::SipToXmpp, JingleMessage::Ringing { .. }) => {
                if !c.ringing_sent && c.state == State::Proposed {
                    c.ringing_sent = true;
                    info!(call = key, "<ringing/> → 180");
                    self.call_out(key, DialogAction::Ringing);
                }
            }
            (Dir::SipToXmpp, JingleMessage::Proceed { .. }) => {
                if c.state != State::Proposed {
                    return; // a second device proceeding: the first one won
                }
                c.peer = from.to_owned();
                info!(call = key, device = %from, "<proceed/>");
                self.send_initiate(key);
            }
            (Dir::SipToXmpp, JingleMessage::Reject { reason, .. }) => {
                if c.state != State::Proposed {
                    return;
                }
                let cond = reason.as_ref().map(|r| r.condition.clone());
                let code = reasons::jingle_to_sip(cond.as_ref());
                info!(call = key, code, "<reject/> → SIP error");
                counter!("stox_calls_ended_total", "why" => "rejected").increment(1);
                self.call_out(
                    key,
                    DialogAction::Reject {
                        code,
                        reason: reason
                            .and_then(|r| r.text)
                            .unwrap_or_else(|| "declined".into()),
                    },
                );
                self.forget(key);
            }
            (Dir::XmppToSip, JingleMessage::Retract { .. }) => {
                // The caller withdrew before its session-initiate reached us: no SIP side yet.
                if c.state == State::Starting {
                    info!(call = key, "<retract/> before the INVITE");
                    self.forget(key);
                }
            }
            (_, other) => debug!(call = key, kind = other.name(), "JMI ignored"),
        }
    }

    // ------------------------------------------------------------ XMPP → SIP

    fn on_propose(
        &mut self,
        from: &str,
        to: &str,
        sid: &str,
        descriptions: &[ProposedDescription],
    ) {
        let Ok(to_jid) = to.parse::<Jid>() else {
            return;
        };
        if to_jid.node().is_none() {
            return;
        }
        let gw = format!("{}/{CALL_RESOURCE}", to_jid.to_bare());
        let audio = descriptions
            .iter()
            .any(|d| d.ns == jingle::ns::RTP && d.media.as_deref() == Some("audio"));
        if !audio || self.sip_target_of(&Jid::from(to_jid.to_bare())).is_err() {
            let reason = if audio {
                ReasonCondition::Gone
            } else {
                ReasonCondition::UnsupportedApplications
            };
            info!(%from, %to, reason = reason.as_str(), "<propose/> → <reject/>");
            let id = self.fresh_id();
            self.stanza_out(jmi_message(
                &gw,
                from,
                &id,
                &JingleMessage::Reject {
                    id: sid.to_owned(),
                    reason: Some(Reason::new(reason)),
                },
            ));
            return;
        }
        info!(%from, %to, %sid, "<propose/> → <ringing/> + <proceed/>");
        for jmi in [
            JingleMessage::Ringing { id: sid.to_owned() },
            JingleMessage::Proceed { id: sid.to_owned() },
        ] {
            let id = self.fresh_id();
            self.stanza_out(jmi_message(&gw, from, &id, &jmi));
        }
    }

    pub(super) fn sip_target_of(&self, to: &Jid) -> Result<stox_sip::uri::SipUri, String> {
        match self.mappings.by_jid(to.to_bare().as_str()) {
            Ok(Some(m)) => m.sip.parse().map_err(|e| format!("mapping for {to}: {e}")),
            _ => self
                .addresses
                .jid_target_to_sip(to)
                .map_err(|e| e.to_string()),
        }
    }

    fn sip_sender_of(&self, from: &Jid) -> Result<stox_sip::uri::SipUri, String> {
        match self.mappings.by_jid(from.to_bare().as_str()) {
            Ok(Some(m)) => m
                .sip
                .parse()
                .map_err(|e| format!("mapping for {from}: {e}")),
            _ => self
                .addresses
                .jid_sender_to_sip(from)
                .map_err(|e| e.to_string()),
        }
    }

    /// A Jingle iq (`type='set'`) to a contact JID. Answers it (result or error) and acts.
    pub(super) fn on_jingle(&mut self, now: Instant, iq: Element) {
        let Some(el) = iq.get_child("jingle", jingle::ns::JINGLE) else {
            return;
        };
        let j = match Jingle::parse(el) {
            Ok(j) => j,
            Err(e) => {
                return self.stanza_out(stanza::error_reply(
                    &iq,
                    &DefinedCondition::BadRequest,
                    Some(&format!("bad Jingle: {e}")),
                ));
            }
        };
        let from = iq.attr("from").unwrap_or("").to_owned();
        let key = self
            .calls
            .by_sid
            .get(&(bare(&from), j.sid.clone()))
            .copied();
        // XEP-0166 §7.2.8 / issue 3: Jingle only from the JID the session is with.
        let key = key.filter(|k| {
            self.calls.by_key.get(k).is_some_and(|c| {
                c.peer == from || (c.state == State::Proposed && bare(&from) == c.peer)
            })
        });
        match (j.action, key) {
            (Action::SessionInitiate, None) => self.on_session_initiate(now, iq, j),
            // A duplicate or late session-terminate (StanzaJS sends two): acknowledged.
            (Action::SessionTerminate, None) => self.stanza_out(iq_result(&iq)),
            (_, None) => self.stanza_out(unknown_session(&iq)),
            (Action::SessionInitiate, Some(_)) => self.stanza_out(stanza::error_reply(
                &iq,
                &DefinedCondition::Conflict,
                Some("this session already exists"),
            )),
            (Action::SessionAccept, Some(key)) => {
                self.stanza_out(iq_result(&iq));
                self.on_session_accept(key, j);
            }
            (Action::TransportInfo, Some(key)) => {
                self.stanza_out(iq_result(&iq));
                self.on_transport_info(key, &j);
            }
            (Action::SessionTerminate, Some(key)) => {
                self.stanza_out(iq_result(&iq));
                let cond = j.reason.as_ref().map(|r| r.condition.clone());
                info!(
                    call = key,
                    reason = cond.as_ref().map(|c| c.as_str()).unwrap_or("none"),
                    "session-terminate from XMPP"
                );
                counter!("stox_calls_ended_total", "why" => "xmpp_terminate").increment(1);
                let code = reasons::jingle_to_sip(cond.as_ref());
                let text = j.reason.and_then(|r| r.text).unwrap_or_default();
                self.end_sip(key, Some((code, text)));
                self.forget(key);
            }
            (Action::SessionInfo, Some(_)) => {
                // <ringing/>, <mute/>, <active/>: nothing to tell the SIP side (hold comes
                // with re-INVITE support).
                if let Some(info) = &j.info {
                    debug!(?info, "session-info");
                }
                self.stanza_out(iq_result(&iq));
            }
            (_, Some(_)) => self.stanza_out(stanza::error_reply(
                &iq,
                &DefinedCondition::FeatureNotImplemented,
                Some(&format!("{} is not supported", j.action.as_str())),
            )),
        }
    }

    fn on_session_initiate(&mut self, now: Instant, iq: Element, j: Jingle) {
        let from = iq.attr("from").unwrap_or("").to_owned();
        let (Ok(from_jid), Ok(to_jid)) = (
            from.parse::<Jid>(),
            iq.attr("to").unwrap_or("").parse::<Jid>(),
        ) else {
            return self.stanza_out(stanza::error_reply(
                &iq,
                &DefinedCondition::JidMalformed,
                Some("bad from or to"),
            ));
        };
        // Acknowledge first (XEP-0166 §6.2), then terminate if it cannot be bridged.
        self.stanza_out(iq_result(&iq));
        let key = self.calls.next_key();
        counter!("stox_calls_total", "direction" => "xmpp_to_sip").increment(1);
        let gw = format!("{}/{CALL_RESOURCE}", to_jid.to_bare());
        let terminate = |this: &mut Gateway, cond: ReasonCondition, text: String| {
            info!(%from, sid = %j.sid, reason = cond.as_str(), %text, "session-initiate refused");
            counter!("stox_calls_rejected_total", "direction" => "xmpp_to_sip", "code" => cond.as_str().to_owned()).increment(1);
            let mut t = Jingle::new(Action::SessionTerminate, &j.sid);
            t.reason = Some(Reason {
                condition: cond,
                text: Some(stanza::xml_safe(&text).into_owned()),
            });
            let id = this.fresh_id();
            this.stanza_out(iq_set(&gw, &from, &id, &t));
        };
        // The contact's AOR: the resource names stox's own call endpoint, not a SIP GRUU.
        // A `#id` suffix picks the caller's external account (module `accounts`); the
        // account itself is looked up again when the INVITE is written.
        let (_, plain_to) = self.account_for(&from_jid, &Jid::from(to_jid.to_bare()));
        let target = match self.sip_target_of(&plain_to) {
            Ok(t) => t,
            Err(why) => return terminate(self, ReasonCondition::Gone, why),
        };
        let sender = match self.sip_sender_of(&from_jid) {
            Ok(s) => s,
            Err(why) => return terminate(self, ReasonCondition::GeneralError, why),
        };
        let media = JingleMedia::from_jingle(&j);
        let offer = match negotiate::relayable(&media) {
            Ok(o) => o,
            Err(negotiate::NegotiationError::NoAudio) => {
                return terminate(
                    self,
                    ReasonCondition::UnsupportedApplications,
                    "only audio calls are bridged".into(),
                )
            }
            Err(e) => {
                return terminate(self, ReasonCondition::IncompatibleParameters, e.to_string())
            }
        };
        let remote = match negotiate::xmpp_remote(
            offer.content.transport.as_ref(),
            negotiate::ssrcs(&offer.content),
        ) {
            Ok(r) => r,
            Err(e) => return terminate(self, ReasonCondition::SecurityError, e.to_string()),
        };
        info!(call = key, %from, sip = %target, sid = %j.sid, "session-initiate → INVITE");
        let cm = CallMedia {
            xmpp: XmppLegParams {
                we_offer: false,
                content_name: offer.content.name.clone(),
                remote: Some(remote),
                extensions: Vec::new(),
            },
            sip: SipLegParams::default(),
            pt_map: offer.pt_map.clone(),
            no_media_timeout: self.call_settings.no_media,
        };
        let call = Call {
            dir: Dir::XmppToSip,
            sid: j.sid.clone(),
            gw,
            peer: from.clone(),
            state: State::Starting,
            offer,
            started: None,
            want_initiate: false,
            early_candidates: Vec::new(),
            ring_deadline: Some(now + self.call_settings.no_answer),
            ringing_sent: false,
            sip_party: target.to_string(),
            invite: Some((sender.to_string(), target.to_string())),
            codec: String::new(),
            sdp_version: 1,
            fork: Fork::default(),
        };
        self.insert_call(key, call);
        self.media_out(key, MediaCommand::Start(Box::new(cm)));
    }

    fn send_invite(&mut self, key: CallKey) {
        let Some(c) = self.calls.by_key.get_mut(&key) else {
            return;
        };
        let Some((from, to)) = c.invite.take() else {
            return;
        };
        let Some(started) = &c.started else { return };
        let media = negotiate::sip_offer(&c.offer, started);
        let Some(body) = sdp_bytes(&media, Role::Initiator, c.sdp_version, key & 0xffff_ffff)
        else {
            return self.end_call(
                key,
                None,
                ReasonCondition::GeneralError,
                "cannot write the SDP offer",
            );
        };
        // A SIP user of `C` is called at every registered contact at once (parallel
        // forking, issue 5), the most recently registered first.
        let local = to
            .parse::<stox_sip::uri::SipUri>()
            .ok()
            .and_then(|u| self.local_aor(&u));
        let to_local_user = local.is_some();
        let uris: Vec<(String, Option<crate::sipmsg::Flow>)> = match local {
            Some((_, aor)) => {
                // Each over the connection it registered on, while open (RFC 5626 §5.3).
                let contacts: Vec<(String, Option<crate::sipmsg::Flow>)> = self
                    .registrar
                    .contacts(&aor, self.last_now)
                    .iter()
                    .map(|b| (b.contact.clone(), b.flow))
                    .collect();
                if contacts.is_empty() {
                    return self.end_call(
                        key,
                        None,
                        ReasonCondition::Gone,
                        &format!("{aor} is not registered"),
                    );
                }
                contacts
            }
            None => vec![(to.clone(), None)],
        };
        // The caller's external account (never for a SIP user of `C`).
        let account = match (to_local_user, self.calls.by_key.get(&key)) {
            (false, Some(c)) => match (c.peer.parse::<Jid>(), c.gw.parse::<Jid>()) {
                (Ok(peer), Ok(gw)) => self.account_for(&peer, &Jid::from(gw.to_bare())).0,
                _ => None,
            },
            _ => None,
        };
        let branches: Vec<CallKey> = (0..uris.len())
            .map(|i| if i == 0 { key } else { self.calls.next_key() })
            .collect();
        for b in branches.iter().skip(1) {
            self.calls.by_branch.insert(*b, key);
        }
        let Some(c) = self.calls.by_key.get_mut(&key) else {
            return;
        };
        c.state = State::Inviting;
        c.fork.pending = branches.clone();
        if uris.len() > 1 {
            info!(
                call = key,
                branches = uris.len(),
                "INVITE forked to every registered contact"
            );
        }
        for ((uri, flow), branch) in uris.into_iter().zip(branches) {
            let mut req = OutRequest {
                method: "INVITE".into(),
                uri,
                from: from.clone(),
                to: to.clone(),
                call_id: None,
                headers: vec![("Max-Forwards".into(), "70".into())],
                content_type: Some("application/sdp".into()),
                body: body.clone(),
                flow,
                flow_only: false,
                dialog: None,
                next_hop: None,
            };
            let account = account.as_ref().and_then(|a| {
                req.from = a.aor().ok()?.to_string();
                req.next_hop = a.outbound_proxy.clone();
                info!(call = key, account = %a.id, from = %req.from, "INVITE through an external account");
                Some(Box::new(InviteAccount {
                    user: a.user.clone(),
                    auth_user: a.auth_user.clone(),
                    password: a.password.clone(),
                    display_name: a.display_name.clone(),
                    transport: if a.tls() {
                        crate::core::accounts::AccountTransport::Tls
                    } else {
                        a.transport
                    },
                }))
            });
            self.call_out(
                branch,
                DialogAction::Invite {
                    req: Box::new(req),
                    account,
                },
            );
        }
    }

    fn on_session_accept(&mut self, key: CallKey, j: Jingle) {
        let Some(c) = self.calls.by_key.get_mut(&key) else {
            return;
        };
        if c.dir != Dir::SipToXmpp || c.state != State::Initiated {
            return;
        }
        let answer = JingleMedia::from_jingle(&j);
        let kept = match negotiate::answered(&c.offer, &answer) {
            Ok(k) => k,
            Err(e) => {
                return self.end_call(
                    key,
                    Some((488, e.to_string())),
                    ReasonCondition::IncompatibleParameters,
                    &e.to_string(),
                )
            }
        };
        let content = negotiate::audio_content(&answer).cloned();
        let remote = content
            .as_ref()
            .map(|ct| negotiate::xmpp_remote(ct.transport.as_ref(), negotiate::ssrcs(ct)));
        let remote = match remote {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                return self.end_call(
                    key,
                    Some((488, e.to_string())),
                    ReasonCondition::SecurityError,
                    &e.to_string(),
                )
            }
            None => {
                return self.end_call(
                    key,
                    Some((488, "no audio in the answer".into())),
                    ReasonCondition::IncompatibleParameters,
                    "no audio in the answer",
                )
            }
        };
        let Some(started) = &c.started else { return };
        let media = negotiate::sip_answer(&c.offer, &kept, started);
        c.sdp_version += 1;
        let Some(sdp) = sdp_bytes(&media, Role::Responder, c.sdp_version, key & 0xffff_ffff) else {
            return self.end_call(
                key,
                Some((500, "cannot write the SDP answer".into())),
                ReasonCondition::GeneralError,
                "",
            );
        };
        c.codec = negotiate::voice_codec(&kept);
        c.state = State::Active;
        c.ring_deadline = None;
        info!(call = key, codec = %c.codec, "session-accept → 200 OK");
        counter!("stox_calls_answered_total", "direction" => "sip_to_xmpp").increment(1);
        self.media_out(key, MediaCommand::XmppRemote(Box::new(remote)));
        self.call_out(key, DialogAction::Accept { sdp });
    }

    fn on_transport_info(&mut self, key: CallKey, j: &Jingle) {
        let cands: Vec<RemoteCandidate> = j
            .contents
            .iter()
            .filter_map(|c| c.transport.as_ref())
            .flat_map(|t| t.candidates.iter().filter_map(negotiate::remote_candidate))
            .collect();
        let Some(c) = self.calls.by_key.get_mut(&key) else {
            return;
        };
        if c.started.is_none() {
            c.early_candidates.extend(cands);
            return;
        }
        for cand in cands {
            self.media_out(key, MediaCommand::Candidate(cand));
        }
    }

    /// An iq result or error for a Jingle iq or JMI message stox sent.
    pub(super) fn on_call_stanza_error(&mut self, id: &str, stanza_el: &Element) -> bool {
        let Some(key) = self.calls.by_stanza.remove(id) else {
            return false;
        };
        if stanza_el.attr("type") != Some("error") {
            return true;
        }
        let (cond, text) = stanza::error_of(stanza_el).unwrap_or((None, None));
        let cond = cond.unwrap_or(DefinedCondition::UndefinedCondition);
        let code = match cond {
            // A call to a user with no online resource (Prosody bounces the <propose> with
            // service-unavailable when it has no offline storage for it): RFC 3261 §21.4.18
            // 480 "not logged in" says it better than RFC 7247's 403 for messages.
            DefinedCondition::ServiceUnavailable | DefinedCondition::RecipientUnavailable => 480,
            _ => crate::translate::error::xmpp_to_sip(&cond, true, false),
        };
        info!(
            call = key,
            code,
            condition = crate::translate::error::condition_name(&cond),
            "XMPP error on a call stanza: ending the call"
        );
        counter!("stox_calls_ended_total", "why" => "xmpp_error").increment(1);
        // The peer refused our stanza: no retract or terminate to send back.
        self.end_sip(key, Some((code, text.unwrap_or_default())));
        self.forget(key);
        true
    }

    /// `Input::Dialog`.
    pub(super) fn on_dialog(&mut self, branch: CallKey, event: DialogEvent) {
        let key = self.calls.by_branch.get(&branch).copied().unwrap_or(branch);
        let Some(c) = self.calls.by_key.get_mut(&key) else {
            debug!(call = key, ?event, "dialog event for no call");
            return;
        };
        // The branches of stox's INVITE (XMPP → SIP; one branch unless forked).
        let event =
            if c.dir == Dir::XmppToSip && (!c.fork.pending.is_empty() || c.fork.winner.is_some()) {
                match fork_event(&mut c.fork, branch, event) {
                    ForkOutcome::Pass(event) => event,
                    ForkOutcome::Won { sdp, cancel } => {
                        for b in cancel {
                            info!(call = key, branch = b, "another branch answered: CANCEL");
                            self.call_out(b, DialogAction::Hangup);
                        }
                        DialogEvent::Answered { sdp }
                    }
                    ForkOutcome::Bye => {
                        info!(call = key, branch, "2xx on a branch that lost: BYE");
                        return self.call_out(branch, DialogAction::Hangup);
                    }
                    ForkOutcome::Absorbed => return,
                }
            } else {
                event
            };
        self.on_dialog_of_call(key, event);
    }

    /// A dialog event of call `key` (after [`fork_event`] for forked calls).
    fn on_dialog_of_call(&mut self, key: CallKey, event: DialogEvent) {
        let Some(c) = self.calls.by_key.get_mut(&key) else {
            return;
        };
        match event {
            DialogEvent::Confirmed => {}
            DialogEvent::Cancelled => {
                info!(call = key, "CANCEL → retract / session-terminate");
                counter!("stox_calls_ended_total", "why" => "sip_cancel").increment(1);
                self.end_xmpp(key, ReasonCondition::Cancel, "the caller cancelled");
                self.forget(key);
            }
            DialogEvent::Bye | DialogEvent::Terminated => {
                info!(call = key, ?event, "SIP side ended → session-terminate");
                counter!("stox_calls_ended_total", "why" => "sip_bye").increment(1);
                let cond = if c.state == State::Active {
                    ReasonCondition::Success
                } else {
                    ReasonCondition::Cancel
                };
                self.end_xmpp(key, cond, "");
                self.forget(key);
            }
            DialogEvent::Progress { code } => {
                if c.dir == Dir::XmppToSip && !c.ringing_sent && (180..=183).contains(&code) {
                    c.ringing_sent = true;
                    let mut j = Jingle::new(Action::SessionInfo, &c.sid);
                    j.info = Some(SessionInfo::Ringing);
                    let (gw, peer) = (c.gw.clone(), c.peer.clone());
                    let id = self.fresh_id();
                    info!(call = key, code, "SIP {code} → session-info <ringing/>");
                    self.stanza_out(iq_set(&gw, &peer, &id, &j));
                }
            }
            DialogEvent::Failed { code, reason } => {
                info!(call = key, code, %reason, "INVITE failed → session-terminate");
                counter!("stox_calls_ended_total", "why" => "sip_error").increment(1);
                let cond = reasons::sip_to_jingle(code);
                // The INVITE is over: no CANCEL/BYE to send.
                c.state = State::Starting;
                self.end_xmpp(key, cond, &reason);
                self.forget(key);
            }
            DialogEvent::Answered { sdp } => self.on_sip_answer(key, &sdp),
        }
    }

    fn on_sip_answer(&mut self, key: CallKey, sdp: &[u8]) {
        let Some(c) = self.calls.by_key.get_mut(&key) else {
            return;
        };
        if c.dir != Dir::XmppToSip || c.state != State::Inviting {
            return;
        }
        let answer = sdp_jingle::parse_sdp(sdp)
            .map_err(|e| e.to_string())
            .and_then(|s| {
                sdp_jingle::sdp_to_jingle(&s, Role::Responder).map_err(|e| e.to_string())
            });
        let kept = answer.and_then(|a| {
            let kept = negotiate::answered(&c.offer, &a).map_err(|e| e.to_string())?;
            let remote = negotiate::audio_content(&a).and_then(negotiate::sip_remote);
            Ok((kept, remote))
        });
        let (kept, remote) = match kept {
            Ok(k) => k,
            Err(why) => {
                c.state = State::Active; // established: BYE it
                warn!(call = key, %why, "unusable SDP answer");
                return self.end_call(key, None, ReasonCondition::IncompatibleParameters, &why);
            }
        };
        let Some(started) = &c.started else { return };
        let media = negotiate::xmpp_answer(&c.offer, &kept, started);
        c.codec = negotiate::voice_codec(&kept);
        c.state = State::Active;
        c.ring_deadline = None;
        let mut j = Jingle::new(Action::SessionAccept, &c.sid);
        j.responder = Some(c.gw.clone());
        media.apply_to(&mut j);
        let (gw, peer) = (c.gw.clone(), c.peer.clone());
        info!(call = key, codec = %c.codec, "200 OK → session-accept");
        counter!("stox_calls_answered_total", "direction" => "xmpp_to_sip").increment(1);
        if let Some(addr) = remote {
            self.media_out(key, MediaCommand::SipRemote(addr));
        }
        let id = self.fresh_id();
        self.calls.by_stanza.insert(id.clone(), key);
        self.stanza_out(iq_set(&gw, &peer, &id, &j));
    }

    /// `Input::Media`: something happened to a call's media.
    pub(super) fn on_media_event(&mut self, key: CallKey, event: RelayEventKind) {
        if !self.calls.by_key.contains_key(&key) {
            return;
        }
        let (cond, text) = match event {
            RelayEventKind::IceConnected | RelayEventKind::DtlsConnected => {
                debug!(call = key, ?event, "media up");
                return;
            }
            RelayEventKind::Failed { why } => {
                counter!("stox_media_failures_total").increment(1);
                (ReasonCondition::ConnectivityError, why)
            }
            RelayEventKind::NoMedia { leg } => (
                ReasonCondition::ConnectivityError,
                format!("no media on the {leg:?} leg"),
            ),
            RelayEventKind::Closed { reason, .. } => (
                ReasonCondition::ConnectivityError,
                format!("media closed: {reason:?}"),
            ),
        };
        info!(call = key, %text, "media ended: ending the call");
        counter!("stox_calls_ended_total", "why" => "media").increment(1);
        self.end_call(key, Some((480, text.clone())), cond, &text);
    }

    /// `DELETE /api/v1/calls/{id}`: hangs up both legs. False when there is no such call.
    pub fn hangup_call(&mut self, key: CallKey) -> bool {
        if !self.calls.by_key.contains_key(&key) {
            return false;
        }
        info!(call = key, "hung up by the admin API");
        counter!("stox_calls_ended_total", "why" => "admin").increment(1);
        self.end_call(
            key,
            Some((480, "ended by the operator".into())),
            ReasonCondition::Success,
            "ended by the operator",
        );
        true
    }
}

impl Calls {
    fn next_key(&mut self) -> CallKey {
        self.next_key = self.next_key.wrapping_add(1);
        u64::MAX - self.next_key
    }
}

#[cfg(test)]
mod tests;

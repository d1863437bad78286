//! INVITE dialogs (rsipstack's dialog layer) and the relay, driven by the core's
//! [`DialogAction`]s and [`MediaCommand`]s; their events come back to the event loop as
//! [`DialogEvent`]s and relay events.
//!
//! The dialog layer does RFC 3261 §13 for stox: 100 Trying, 2xx retransmission until ACK, 487
//! after CANCEL, ACK of a 2xx, BYE both ways, in-dialog requests. Each dialog's state changes
//! arrive on its own channel, which a small task turns into [`DialogEvent`]s tagged with the
//! call's key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use rsipstack::dialog::dialog::{Dialog, DialogState, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, HeadersExt, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::SipAddr;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Event;
use crate::core::{CallKey, DialogAction, DialogEvent, MediaCommand};
use crate::media::relay::{self, CallCounters, CallId, CallStarted, Relay};
use crate::sipmsg::Transport;

/// Methods that only make sense inside an INVITE dialog: without one they get 481. NOTIFY
/// and SUBSCRIBE outside a call go to the core, which owns the subscription dialogs
/// (RFC 6665).
const IN_DIALOG: &[&str] = &["BYE", "INFO", "UPDATE", "PRACK", "REFER", "INVITE"];

/// The io side of calls.
pub(super) struct CallIo {
    layer: Arc<DialogLayer>,
    relay: Relay,
    events: mpsc::UnboundedSender<Event>,
    dialogs: HashMap<CallKey, InviteDialog>,
    /// The SDP stox last gave each dialog (its answer, or its offer), for re-INVITEs.
    local_sdp: HashMap<CallKey, LocalSdp>,
    media: HashMap<CallKey, CallId>,
    media_calls: HashMap<CallId, CallKey>,
    contact: rsipstack::sip::Uri,
    /// The Contact for dialogs that run over TCP (`;transport=tcp`, RFC 3261 §8.1.1.8), so
    /// that the ACK and in-dialog requests come back over the same transport.
    contact_tcp: Option<rsipstack::sip::Uri>,
    /// stox's Contact per stream transport it listens on (`;transport=tls` and the like):
    /// a dialog over TLS or WebSocket gets a Contact of that transport, so that the peer's
    /// in-dialog requests (ACK, BYE) come back over it and not over UDP (RFC 3261 §12.1.1).
    contact_by: HashMap<Transport, rsipstack::sip::Uri>,
    proxy: Option<SocketAddr>,
    transport: Transport,
    /// RFC 3263 location of a callee's domain (no outbound proxy, host not an IP).
    dns: Option<stox_sip::locate::Resolver>,
    /// Outgoing TLS, verified for the callee's domain (or the proxy's name).
    tls: super::transports::TlsDialer,
    /// Calls whose INVITE waits for its next hop to be located; a hangup meanwhile
    /// removes the call, and the INVITE is then never sent.
    locating: HashMap<CallKey, Option<crate::core::InviteAccount>>,
    /// INVITEs with located targets not tried yet (RFC 3263 §4.3): the request, its
    /// account and the next hops, until the call is answered or ends otherwise.
    fallbacks: HashMap<CallKey, Fallback>,
    next_key: CallKey,
    /// Counters of calls that already closed (live ones are read from the relay).
    closed: CallCounters,
}

/// An INVITE that may still go to other located targets: the request, the account it
/// leaves through, the hops not tried yet.
type Fallback = (
    crate::sipmsg::OutRequest,
    Option<crate::core::InviteAccount>,
    Vec<(SocketAddr, Transport)>,
);

/// Where INVITEs go: the outbound proxy, else the callee's host located per RFC 3263.
pub(super) struct Routing {
    /// `[sip] outbound_proxy`.
    pub(super) proxy: Option<SocketAddr>,
    /// The transport toward the proxy (or by default).
    pub(super) transport: Transport,
    /// The resolver for domains.
    pub(super) dns: Option<stox_sip::locate::Resolver>,
    /// Outgoing TLS.
    pub(super) tls: super::transports::TlsDialer,
}

impl CallIo {
    /// stox's Contact for dialogs over each stream transport it listens on.
    pub(super) fn set_stream_contacts(&mut self, locals: &HashMap<Transport, SocketAddr>) {
        for (t, addr) in locals {
            let param = match t {
                Transport::Udp => continue,
                Transport::Tcp => "tcp",
                Transport::Tls => "tls",
                Transport::Ws => "ws",
                Transport::Wss => "wss",
            };
            if let Ok(uri) =
                rsipstack::sip::Uri::try_from(format!("sip:stox@{addr};transport={param}").as_str())
            {
                self.contact_by.insert(*t, uri);
            }
        }
    }

    pub(super) fn new(
        layer: Arc<DialogLayer>,
        relay: Relay,
        events: mpsc::UnboundedSender<Event>,
        local: SocketAddr,
        tcp_local: Option<SocketAddr>,
        routing: Routing,
    ) -> anyhow::Result<CallIo> {
        let Routing {
            proxy,
            transport,
            dns,
            tls,
        } = routing;
        let contact = rsipstack::sip::Uri::try_from(format!("sip:stox@{local}").as_str())
            .map_err(|e| anyhow::anyhow!("contact URI: {e}"))?;
        let contact_tcp = match tcp_local {
            Some(a) => Some(
                rsipstack::sip::Uri::try_from(format!("sip:stox@{a};transport=tcp").as_str())
                    .map_err(|e| anyhow::anyhow!("contact URI: {e}"))?,
            ),
            None => None,
        };
        Ok(CallIo {
            layer,
            relay,
            events,
            dialogs: HashMap::new(),
            local_sdp: HashMap::new(),
            media: HashMap::new(),
            media_calls: HashMap::new(),
            contact,
            contact_tcp,
            contact_by: HashMap::new(),
            proxy,
            transport,
            dns,
            tls,
            locating: HashMap::new(),
            fallbacks: HashMap::new(),
            next_key: 0,
            closed: CallCounters::default(),
        })
    }

    /// A server transaction that belongs to calls: a new INVITE gets a dialog and a key (the
    /// caller then feeds `Input::Invite`); an in-dialog request is handled by its dialog.
    /// Returns the transaction back when it is not about calls.
    pub(super) fn on_transaction(
        &mut self,
        mut tx: Transaction,
    ) -> Result<Option<CallKey>, Box<Transaction>> {
        let method = tx.original.method.to_string();
        let has_tag = tx
            .original
            .to_header()
            .ok()
            .and_then(|t| t.tag().ok().flatten())
            .is_some();
        if has_tag {
            if let Some(dialog) = self.layer.match_dialog(&tx) {
                tokio::spawn(async move {
                    let r = match dialog {
                        Dialog::Invite(mut d) => d.handle(&mut tx).await,
                        other => {
                            drop(other);
                            tx.reply(StatusCode::CallTransactionDoesNotExist).await
                        }
                    };
                    if let Err(e) = r {
                        debug!(error = %e, "in-dialog request");
                    }
                });
                return Ok(None);
            }
            if IN_DIALOG.contains(&method.as_str()) {
                tokio::spawn(async move {
                    let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
                });
                return Ok(None);
            }
            return Err(Box::new(tx));
        }
        if method != "INVITE" {
            return Err(Box::new(tx));
        }
        let (state_tx, state_rx) = self.layer.new_dialog_state_channel();
        let reliable = tx.connection.as_ref().is_some_and(|c| c.is_reliable());
        let stream = tx
            .connection
            .as_ref()
            .and_then(super::transports::flow_of)
            .map(|f| f.transport);
        let contact = match (
            stream.and_then(|t| self.contact_by.get(&t)),
            &self.contact_tcp,
            reliable,
        ) {
            (Some(c), _, _) => c.clone(),
            (None, Some(tcp), true) => tcp.clone(),
            _ => self.contact.clone(),
        };
        let dialog =
            match self
                .layer
                .get_or_create_server_invite(&tx, state_tx, None, Some(contact))
            {
                Ok(d) => d,
                Err(e) => {
                    warn!(error = %e, "cannot create a dialog for an INVITE");
                    tokio::spawn(async move {
                        let _ = tx.reply(StatusCode::ServerInternalError).await;
                    });
                    return Ok(None);
                }
            };
        self.next_key += 1;
        let key = self.next_key;
        self.dialogs.insert(key, dialog.clone());
        let sdp = LocalSdp::default();
        self.local_sdp.insert(key, sdp.clone());
        forward_states(key, state_rx, self.events.clone(), true, sdp);
        let mut d = dialog;
        tokio::spawn(async move {
            if let Err(e) = d.handle(&mut tx).await {
                debug!(call = key, error = %e, "INVITE transaction");
            }
        });
        Ok(Some(key))
    }

    pub(super) fn act(&mut self, key: CallKey, action: DialogAction) {
        match action {
            DialogAction::Ringing => {
                if let Some(d) = self.dialogs.get(&key) {
                    if let Err(e) = d.ringing(None, None) {
                        debug!(call = key, error = %e, "180");
                    }
                }
            }
            DialogAction::Accept { sdp } => {
                if let Some(l) = self.local_sdp.get(&key) {
                    l.set(sdp.clone());
                }
                if let Some(d) = self.dialogs.get(&key) {
                    let headers = vec![Header::ContentType("application/sdp".into())];
                    if let Err(e) = d.accept(Some(headers), Some(sdp)) {
                        warn!(call = key, error = %e, "200 OK failed");
                    }
                }
            }
            DialogAction::Reject { code, reason } => {
                self.local_sdp.remove(&key);
                if let Some(d) = self.dialogs.remove(&key) {
                    // The text may come from XMPP: no control characters in a SIP header.
                    let reason: String = reason
                        .chars()
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .collect();
                    let reason = (!reason.trim().is_empty()).then_some(reason);
                    if let Err(e) = d.reject(Some(StatusCode::from(code)), reason) {
                        debug!(call = key, error = %e, "reject");
                    }
                }
            }
            DialogAction::Hangup => {
                self.fallbacks.remove(&key);
                if self.locating.remove(&key).is_some() {
                    // The INVITE never left: end it as a CANCEL would have (RFC 3261 §9.1).
                    let _ = self.events.send(Event::Dialog(
                        key,
                        DialogEvent::Failed {
                            code: 487,
                            reason: "Request Terminated".into(),
                        },
                    ));
                }
                self.local_sdp.remove(&key);
                if let Some(d) = self.dialogs.remove(&key) {
                    tokio::spawn(async move {
                        if let Err(e) = d.hangup().await {
                            debug!(call = key, error = %e, "hangup");
                        }
                    });
                }
            }
            DialogAction::Invite { req, account } => {
                self.locate_then_invite(key, *req, account.map(|a| *a))
            }
        }
    }

    /// Sends the INVITE now when its next hop is the proxy or a plain IP address; for a
    /// domain, locates its server first (RFC 3263), and for a TLS next hop connects first
    /// (see [`reachable`]); the INVITE leaves when [`CallIo::located`] is called with the
    /// outcome.
    fn locate_then_invite(
        &mut self,
        key: CallKey,
        req: crate::sipmsg::OutRequest,
        account: Option<crate::core::InviteAccount>,
    ) {
        // An external account's outbound proxy is the next hop when it has one; else the
        // global proxy, else the Request-URI.
        let (target, via_proxy) = match &req.next_hop {
            Some(hop) => (hop.parse::<stox_sip::uri::SipUri>().ok(), false),
            None => (req.uri.parse().ok(), self.proxy.is_some()),
        };
        let tls = invite_needs_tls(&req, account.as_ref());
        // A registered contact with an open flow is not located: it goes over the flow;
        // nor is anything through the global proxy.
        let (Some(target), false, None) = (target, via_proxy, req.flow) else {
            return self.invite(key, req, None, account);
        };
        let ip = target
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .ok();
        let dns = match (ip, self.dns.clone()) {
            // An IP address over TLS: connected first, verified for that address.
            (Some(ip), _) if tls => {
                let hop = (
                    SocketAddr::new(ip, target.port.unwrap_or(5061)),
                    Transport::Tls,
                );
                return self.connect_then_invite(key, req, account, vec![hop]);
            }
            (Some(_), _) | (None, None) => return self.invite(key, req, None, account),
            (None, Some(dns)) => dns,
        };
        // RFC 3263 §4.1: a `sips:` callee (or a TLS next hop, or a `tls` account) is located
        // for TLS only.
        // Otherwise UDP, TCP when stox listens on it, and TLS when it can verify a server
        // (a `sip:` domain may be served over TLS only: `SIPS+D2T`, `_sips._tcp`).
        let supported = if tls {
            vec![stox_sip::locate::Proto::Tls]
        } else {
            let mut p = vec![stox_sip::locate::Proto::Udp];
            if self.contact_tcp.is_some() {
                p.push(stox_sip::locate::Proto::Tcp);
            }
            if self.tls.can_verify() {
                p.push(stox_sip::locate::Proto::Tls);
            }
            p
        };
        self.locating.insert(key, account);
        let endpoint = self.layer.endpoint.clone();
        let dialer = self.tls.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let hop = stox_sip::locate::locate(&dns, &target, &supported, &mut super::srv_random)
                .await
                .map_err(|e| {
                    info!(call = key, uri = %target, error = %e, "RFC 3263: no next hop for the INVITE");
                    match e {
                        stox_sip::locate::LocateError::NotFound { .. } => (404, e.to_string()),
                        stox_sip::locate::LocateError::Dns { .. } => (503, e.to_string()),
                    }
                })
                .map(|targets| {
                    // Every target in order: the INVITE goes to the first, and to the next
                    // when one fails with 503 or 408 (RFC 3263 §4.3, `CallIo::failover`).
                    targets
                        .iter()
                        .map(|t| (t.addr, Transport::of_located(t.proto)))
                        .collect::<Vec<_>>()
                });
            let hop = match hop {
                Ok(hops) => reachable(key, &target, hops, &endpoint, &dialer).await,
                Err(e) => Err(e),
            };
            let _ = events.send(Event::Located {
                call: key,
                req: Box::new(req),
                hop,
            });
        });
    }

    /// Connects to the first of `hops` that accepts (see [`reachable`]), then sends the
    /// INVITE there through [`CallIo::located`], the others kept for failover.
    fn connect_then_invite(
        &mut self,
        key: CallKey,
        req: crate::sipmsg::OutRequest,
        account: Option<crate::core::InviteAccount>,
        hops: Vec<(SocketAddr, Transport)>,
    ) {
        let Some(target) = req
            .next_hop
            .as_deref()
            .unwrap_or(&req.uri)
            .parse::<stox_sip::uri::SipUri>()
            .ok()
        else {
            return self.invite(key, req, None, account);
        };
        self.locating.insert(key, account);
        let endpoint = self.layer.endpoint.clone();
        let dialer = self.tls.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let hop = reachable(key, &target, hops, &endpoint, &dialer).await;
            let _ = events.send(Event::Located {
                call: key,
                req: Box::new(req),
                hop,
            });
        });
    }

    /// The outcome of locating the next hop of call `key`'s INVITE.
    pub(super) fn located(
        &mut self,
        key: CallKey,
        req: crate::sipmsg::OutRequest,
        hop: Result<Vec<(SocketAddr, Transport)>, (u16, String)>,
    ) {
        let Some(account) = self.locating.remove(&key) else {
            debug!(call = key, "call ended while its callee was being located");
            return;
        };
        match hop {
            Ok(mut hops) => {
                let first = hops.remove(0);
                if !hops.is_empty() {
                    self.fallbacks
                        .insert(key, (req.clone(), account.clone(), hops));
                }
                self.invite(key, req, Some(first), account)
            }
            Err((code, reason)) => {
                let _ = self
                    .events
                    .send(Event::Dialog(key, DialogEvent::Failed { code, reason }));
            }
        }
    }

    fn invite(
        &mut self,
        key: CallKey,
        req: crate::sipmsg::OutRequest,
        hop: Option<(SocketAddr, Transport)>,
        account: Option<crate::core::InviteAccount>,
    ) {
        // A `tcp` account's INVITE goes over TCP when nothing else decided.
        let account_tcp = account
            .as_ref()
            .is_some_and(|a| a.transport == crate::core::accounts::AccountTransport::Tcp);
        let transport = match hop {
            Some((_, t)) => t,
            None if account_tcp && self.contact_tcp.is_some() => Transport::Tcp,
            None => self.transport,
        };
        let events = self.events.clone();
        let fail = move |code: u16, reason: String| {
            let _ = events.send(Event::Dialog(key, DialogEvent::Failed { code, reason }));
        };
        let (caller, callee) = match (
            rsipstack::sip::Uri::try_from(req.from.as_str()),
            rsipstack::sip::Uri::try_from(req.uri.as_str()),
        ) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return fail(400, format!("bad URI {} or {}", req.from, req.uri)),
        };
        // RFC 3261 §26.2.2: a `sips:` or `;transport=tls` callee is called over TLS only, and
        // so is everything through a TLS next hop or a `tls` account.
        let tls = invite_needs_tls(&req, account.as_ref());
        // An external account's outbound proxy first (an IP address; a name was located
        // before, see `locate_then_invite`).
        let next_hop = req
            .next_hop
            .as_deref()
            .and_then(|h| super::ip_hop(h, if tls { 5061 } else { 5060 }));
        let dest = hop
            .map(|(a, _)| a)
            .or(next_hop)
            .or(self.proxy)
            .or_else(|| super::ip_hop(&req.uri, if tls { 5061 } else { 5060 }));
        // A registered contact's flow: rsipstack finds the open connection by the peer's
        // address and transport (RFC 5626 §5.3).
        // RFC 5923 §5: an open TLS connection to `dest` whose peer is authenticated for the
        // name a new connection would be checked against (one a peer aliased to `dest` with
        // its certificate, or one stox opened) carries the INVITE; rsipstack finds it by its
        // real remote address, which for an aliased connection is the peer's own port.
        // The name is the one the next hop was found from (RFC 5922 §4), as in `reachable`.
        let reused = match (req.flow, dest) {
            (None, Some(d)) if tls || transport == Transport::Tls => {
                let uri = |u: &str| u.parse::<stox_sip::uri::SipUri>().ok();
                let next_hop = req.next_hop.as_deref().and_then(uri);
                // A located hop was found from the Request-URI, not from the global proxy.
                let proxy = if hop.is_none() { self.proxy } else { None };
                uri(&req.uri)
                    .map(|target| super::tls_name_for(next_hop.as_ref(), proxy, &target))
                    .and_then(|n| self.tls.open_to(d, &n))
                    .and_then(|c| c.get_remote_addr().cloned())
            }
            _ => None,
        };
        let destination = match (req.flow, reused) {
            (Some(f), _) => Some(SipAddr {
                r#type: Some(f.transport.to_stack()),
                addr: f.remote.into(),
            }),
            (None, Some(conn)) => {
                info!(call = key, via = %conn, "INVITE over a reused TLS connection (RFC 5923)");
                Some(conn)
            }
            (None, None) => dest.map(|d| SipAddr {
                r#type: Some((if tls { Transport::Tls } else { transport }).to_stack()),
                addr: d.into(),
            }),
        };
        let headers = req
            .headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("Max-Forwards"))
            .map(|(n, v)| Header::Other(n.clone(), v.clone()))
            .collect::<Vec<_>>();
        let opt = InviteOption {
            caller,
            callee,
            destination,
            content_type: req.content_type.clone(),
            offer: Some(req.body.clone()),
            contact: {
                let t = req
                    .flow
                    .map_or(if tls { Transport::Tls } else { transport }, |f| {
                        f.transport
                    });
                match (self.contact_by.get(&t), &self.contact_tcp, t) {
                    (Some(c), _, _) => c.clone(),
                    (None, Some(tcp), Transport::Tcp) => tcp.clone(),
                    _ => self.contact.clone(),
                }
            },
            headers: (!headers.is_empty()).then_some(headers),
            caller_display_name: account.as_ref().and_then(|a| a.display_name.clone()),
            credential: account.map(|a| rsipstack::dialog::authenticate::Credential {
                username: a.user,
                password: a.password,
                realm: None,
                auth_username: a.auth_user,
            }),
            ..Default::default()
        };
        let (state_tx, state_rx) = self.layer.new_dialog_state_channel();
        let (dialog, handle) = match self.layer.do_invite_async(opt, state_tx) {
            Ok(x) => x,
            Err(e) => return fail(503, format!("INVITE not sent: {e}")),
        };
        info!(call = key, to = %req.uri, "INVITE sent");
        self.dialogs.insert(key, dialog);
        let sdp = LocalSdp::default();
        sdp.set(req.body.clone());
        self.local_sdp.insert(key, sdp.clone());
        forward_states(key, state_rx, self.events.clone(), false, sdp);
        let events = self.events.clone();
        tokio::spawn(async move {
            let event = match handle.await {
                Ok(Ok((_, Some(resp)))) => {
                    let code = resp.status_code.code();
                    if (200..300).contains(&code) {
                        DialogEvent::Answered { sdp: resp.body }
                    } else {
                        DialogEvent::Failed {
                            code,
                            reason: resp
                                .wire_reason
                                .clone()
                                .unwrap_or_else(|| resp.status_code.to_string()),
                        }
                    }
                }
                Ok(Ok((_, None))) => DialogEvent::Failed {
                    code: 408,
                    reason: "no final response".into(),
                },
                Ok(Err(e)) => DialogEvent::Failed {
                    code: 503,
                    reason: e.to_string(),
                },
                Err(e) => DialogEvent::Failed {
                    code: 500,
                    reason: e.to_string(),
                },
            };
            let _ = events.send(Event::Dialog(key, event));
        });
    }

    /// RFC 3263 §4.3 for INVITEs: when the INVITE to one located target failed with 503
    /// (a transport error included) or 408, it goes to the next target, under the same call
    /// key, and `true` says the core is not to hear of the failure. Any other outcome ends
    /// the failover.
    pub(super) fn failover(&mut self, key: CallKey, event: &DialogEvent) -> bool {
        match event {
            DialogEvent::Failed {
                code: code @ (503 | 408),
                reason,
            } => {
                let Some((req, account, mut hops)) = self.fallbacks.remove(&key) else {
                    return false;
                };
                // (Fallbacks are stored only with hops left.)
                let Some(&(next_addr, next_transport)) = hops.first() else {
                    return false;
                };
                info!(call = key, code, %reason, next = %next_addr, "INVITE failed, trying the next target (RFC 3263 §4.3)");
                // A stream target is connected to first (a TLS one verified for the
                // callee's domain), as the first target was.
                if next_transport != Transport::Udp {
                    self.connect_then_invite(key, req, account, hops);
                    return true;
                }
                let next = hops.remove(0);
                if !hops.is_empty() {
                    self.fallbacks
                        .insert(key, (req.clone(), account.clone(), hops));
                }
                self.invite(key, req, Some(next), account);
                true
            }
            DialogEvent::Progress { .. } | DialogEvent::Confirmed => false,
            _ => {
                self.fallbacks.remove(&key);
                false
            }
        }
    }

    /// Drops the dialog of a call the core forgot after the SIP side ended it.
    pub(super) fn dialog_ended(&mut self, key: CallKey, event: &DialogEvent) {
        if matches!(
            event,
            DialogEvent::Bye
                | DialogEvent::Cancelled
                | DialogEvent::Terminated
                | DialogEvent::Failed { .. }
        ) {
            self.local_sdp.remove(&key);
        }
        if matches!(
            event,
            DialogEvent::Bye
                | DialogEvent::Cancelled
                | DialogEvent::Terminated
                | DialogEvent::Failed { .. }
        ) {
            self.dialogs.remove(&key);
        }
    }

    /// Runs a relay command; `Start` returns what to feed back as `Input::MediaStarted`.
    pub(super) fn media(
        &mut self,
        key: CallKey,
        cmd: MediaCommand,
    ) -> Option<Result<CallStarted, String>> {
        let id = self.media.get(&key).copied();
        let r = match (cmd, id) {
            (MediaCommand::Start(m), _) => {
                return Some(match self.relay.spawn_call(*m) {
                    Ok(started) => {
                        self.media.insert(key, started.id);
                        self.media_calls.insert(started.id, key);
                        metrics::gauge!("stox_media_calls").set(self.media.len() as f64);
                        Ok(started)
                    }
                    Err(e) => Err(e.to_string()),
                })
            }
            (_, None) => return None,
            (MediaCommand::XmppRemote(r), Some(id)) => self.relay.set_xmpp_remote(id, *r),
            (MediaCommand::SipRemote(a), Some(id)) => self.relay.set_sip_remote(id, a),
            (MediaCommand::Candidate(c), Some(id)) => self.relay.add_remote_candidate(id, c),
            (MediaCommand::Hangup, Some(id)) => {
                self.relay.hangup(id);
                Ok(())
            }
        };
        if let Err(e) = r {
            debug!(call = key, error = %e, "relay command");
        }
        None
    }

    /// The call a relay event is about; forgets the media of a closed call (and records its
    /// counters in the metrics).
    pub(super) fn relay_event(&mut self, ev: &relay::RelayEvent) -> Option<CallKey> {
        let key = self.media_calls.get(&ev.call).copied();
        match &ev.kind {
            relay::RelayEventKind::Closed { counters, .. } => {
                self.media_calls.remove(&ev.call);
                if let Some(k) = key {
                    self.media.remove(&k);
                }
                metrics::gauge!("stox_media_calls").set(self.media.len() as f64);
                add(&mut self.closed, counters);
            }
            relay::RelayEventKind::Failed { why } => {
                let kind = if why.to_ascii_lowercase().contains("dtls") {
                    "dtls"
                } else {
                    "ice"
                };
                metrics::counter!("stox_media_setup_failures_total", "kind" => kind).increment(1);
            }
            _ => {}
        }
        key
    }

    /// Media state and counters of a call, for the admin API.
    pub(super) fn media_of(&self, key: CallKey) -> Option<relay::CallSummary> {
        let id = self.media.get(&key)?;
        self.relay.calls().into_iter().find(|c| c.id == *id)
    }
}

/// The located hops of call `key`'s INVITE from the first one that takes a connection on: a
/// TCP target that refuses it, or a TLS target whose certificate does not prove the name of
/// `target` (the URI located, RFC 5922 §4), is skipped now (RFC 3263 §4.3) rather than after
/// Timer B. The connection made stays in rsipstack's pool, where the dialog layer finds it
/// for the INVITE (for TLS: the newest connection to that address, the one just verified).
async fn reachable(
    key: CallKey,
    target: &stox_sip::uri::SipUri,
    mut hops: Vec<(SocketAddr, Transport)>,
    endpoint: &Arc<rsipstack::transaction::endpoint::EndpointInner>,
    dialer: &super::transports::TlsDialer,
) -> Result<Vec<(SocketAddr, Transport)>, (u16, String)> {
    let name = super::tls_name(target);
    while let Some(&(addr, transport)) = hops.first() {
        let connect = match transport {
            Transport::Tcp => {
                let to = SipAddr {
                    r#type: Some(rsipstack::sip::Transport::Tcp),
                    addr: addr.into(),
                };
                tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    endpoint.transport_layer.lookup(&to, None),
                )
                .await
                .map_err(|_| "no connection within 5 s".to_string())
                .and_then(|r| r.map(drop).map_err(|e| e.to_string()))
            }
            // The dialer bounds its own wait.
            Transport::Tls => dialer.connect(&name, addr).await.map(drop),
            _ => break,
        };
        match connect {
            Ok(()) => break,
            Err(e) => {
                hops.remove(0);
                info!(call = key, %addr, transport = transport.via_name(), %name, error = %e, next = ?hops.first().map(|h| h.0), "INVITE target unreachable, trying the next target (RFC 3263 §4.3)");
            }
        }
    }
    if hops.is_empty() {
        Err((503, format!("no SIP server of {target} could be reached")))
    } else {
        Ok(hops)
    }
}

/// Whether an INVITE must leave over TLS: a `sips:` or `;transport=tls` Request-URI or next
/// hop (RFC 3261 §26.2.2, RFC 5630 §3.1.3), or an account whose transport is `tls`.
fn invite_needs_tls(
    req: &crate::sipmsg::OutRequest,
    account: Option<&crate::core::InviteAccount>,
) -> bool {
    let tls_uri = |uri: &str| {
        uri.parse::<stox_sip::uri::SipUri>()
            .is_ok_and(|u| super::needs_tls_uri(&u))
    };
    tls_uri(&req.uri)
        || req.next_hop.as_deref().is_some_and(tls_uri)
        || account.is_some_and(|a| a.transport == crate::core::accounts::AccountTransport::Tls)
}

fn add(total: &mut CallCounters, c: &CallCounters) {
    for (t, l) in [(&mut total.xmpp, c.xmpp), (&mut total.sip, c.sip)] {
        t.packets_in += l.packets_in;
        t.bytes_in += l.bytes_in;
        t.packets_out += l.packets_out;
        t.bytes_out += l.bytes_out;
        t.dropped += l.dropped;
    }
}

impl CallIo {
    /// Publishes the RTP counters (closed calls plus live ones) as Prometheus counters; the
    /// event loop calls it once a second, so media never touches the loop per packet.
    pub(super) fn publish_media_metrics(&self) {
        let mut total = self.closed;
        for call in self.relay.calls() {
            add(&mut total, &call.counters);
        }
        for (leg, l) in [("xmpp", total.xmpp), ("sip", total.sip)] {
            metrics::counter!("stox_rtp_packets_total", "leg" => leg, "dir" => "in")
                .absolute(l.packets_in);
            metrics::counter!("stox_rtp_packets_total", "leg" => leg, "dir" => "out")
                .absolute(l.packets_out);
            metrics::counter!("stox_rtp_bytes_total", "leg" => leg, "dir" => "in")
                .absolute(l.bytes_in);
            metrics::counter!("stox_rtp_bytes_total", "leg" => leg, "dir" => "out")
                .absolute(l.bytes_out);
            metrics::counter!("stox_rtp_dropped_total", "leg" => leg).absolute(l.dropped);
        }
    }
}

/// Turns a dialog's state changes into [`DialogEvent`]s. Client dialogs report only what the
/// final response does not (180/183, and a BYE from the callee); their outcome comes from the
/// INVITE's result.
/// The SDP stox last sent in a dialog, shared with the dialog's state task.
#[derive(Clone, Default)]
struct LocalSdp(Arc<std::sync::Mutex<Option<Vec<u8>>>>);

impl LocalSdp {
    fn set(&self, sdp: Vec<u8>) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(sdp);
        }
    }
    fn get(&self) -> Option<Vec<u8>> {
        self.0.lock().ok().and_then(|g| g.clone())
    }
}

/// The answer to a re-INVITE (a session refresh, RFC 4028, or a direction change such as
/// hold, RFC 3264 §8.4): the session stays as negotiated, so stox answers with the SDP it
/// last sent, its direction mirrored to the offer's (sendonly ⇒ recvonly, inactive ⇒
/// inactive, RFC 3264 §6.1). The relay keeps relaying what arrives.
pub(super) fn reinvite_answer(ours: &[u8], offer: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(ours);
    let offer = String::from_utf8_lossy(offer);
    let offered = |d: &str| offer.lines().any(|l| l.trim() == format!("a={d}"));
    let dir = if offered("inactive") {
        "inactive"
    } else if offered("sendonly") {
        "recvonly"
    } else if offered("recvonly") {
        "sendonly"
    } else {
        "sendrecv"
    };
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end();
        if matches!(
            bare,
            "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive"
        ) {
            out.push_str("a=");
            out.push_str(dir);
            out.push_str("\r\n");
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

fn forward_states(
    key: CallKey,
    mut rx: rsipstack::dialog::dialog::DialogStateReceiver,
    events: mpsc::UnboundedSender<Event>,
    server: bool,
    local_sdp: LocalSdp,
) {
    tokio::spawn(async move {
        while let Some(state) = rx.recv().await {
            let event = match (server, state) {
                (_, DialogState::Updated(_, req, handle)) => {
                    // A re-INVITE or UPDATE inside the call.
                    let reply = match local_sdp.get() {
                        Some(ours) if !req.body.is_empty() => {
                            let sdp = reinvite_answer(&ours, &req.body);
                            info!(call = key, "re-INVITE answered with the current session");
                            handle
                                .respond(
                                    StatusCode::OK,
                                    Some(vec![Header::ContentType("application/sdp".into())]),
                                    Some(sdp),
                                )
                                .await
                        }
                        Some(ours) => {
                            // An offerless re-INVITE: our SDP is the offer, the ACK the answer.
                            handle
                                .respond(
                                    StatusCode::OK,
                                    Some(vec![Header::ContentType("application/sdp".into())]),
                                    Some(ours),
                                )
                                .await
                        }
                        None => handle.reply(StatusCode::RequestPending).await,
                    };
                    if reply.is_err() {
                        debug!(call = key, "re-INVITE transaction gone");
                    }
                    None
                }
                (_, DialogState::Info(_, req, handle)) => {
                    // SIP INFO (e.g. application/dtmf-relay): acknowledged; DTMF reaches the
                    // XMPP side as RFC 4733 in RTP only.
                    let ct = req
                        .headers
                        .iter()
                        .find(|h| h.name().eq_ignore_ascii_case("content-type"))
                        .map(|h| h.value().to_string())
                        .unwrap_or_default();
                    info!(call = key, content_type = %ct, "SIP INFO acknowledged (not translated)");
                    let _ = handle.reply(StatusCode::OK).await;
                    None
                }
                (_, DialogState::Options(_, _, handle)) => {
                    let _ = handle.reply(StatusCode::OK).await;
                    None
                }
                (true, DialogState::Confirmed(..)) => Some(DialogEvent::Confirmed),
                (true, DialogState::Terminated(_, TerminatedReason::UacCancel)) => {
                    Some(DialogEvent::Cancelled)
                }
                (true, DialogState::Terminated(_, TerminatedReason::UacBye)) => {
                    Some(DialogEvent::Bye)
                }
                (true, DialogState::Terminated(_, TerminatedReason::Timeout)) => {
                    Some(DialogEvent::Terminated)
                }
                (false, DialogState::Early(_, resp)) => Some(DialogEvent::Progress {
                    code: resp.status_code.code(),
                }),
                (false, DialogState::Terminated(_, TerminatedReason::UasBye)) => {
                    Some(DialogEvent::Bye)
                }
                (_, DialogState::Terminated(..)) => None,
                (_, other) => {
                    debug!(call = key, state = %other, "dialog state");
                    None
                }
            };
            if let Some(event) = event {
                if events.send(Event::Dialog(key, event)).is_err() {
                    break;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::reinvite_answer;

    const OURS: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";

    #[test]
    fn reinvite_answers_mirror_the_offered_direction() {
        for (offered, answered) in [
            ("a=sendrecv", "a=sendrecv"),
            ("a=sendonly", "a=recvonly"),
            ("a=recvonly", "a=sendonly"),
            ("a=inactive", "a=inactive"),
            ("", "a=sendrecv"),
        ] {
            let offer = format!("v=0\r\nm=audio 1 RTP/AVP 0\r\n{offered}\r\n");
            let got =
                String::from_utf8(reinvite_answer(OURS.as_bytes(), offer.as_bytes())).unwrap();
            assert!(got.contains(&format!("{answered}\r\n")), "{offered}: {got}");
            assert_eq!(got.matches("a=").count(), 2, "{got}");
            assert!(
                got.starts_with("v=0\r\no=- 1 2 "),
                "same session version: {got}"
            );
        }
    }
}

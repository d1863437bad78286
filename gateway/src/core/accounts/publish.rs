//! RFC 3903 PUBLISH of an XMPP user's presence to her external accounts' providers.
//!
//! A provider whose presence server answers SUBSCRIBEs itself (instead of forwarding them
//! to the registered Contact) only knows what is published for the AOR. stox is the
//! user's Event Publication Agent there, one publication per *registered* account:
//!
//! | event | what stox sends (From/To/Request-URI the account's AOR, `Event: presence`) |
//! |---|---|
//! | her presence changes, no publication yet | `PUBLISH` with the PIDF (RFC 8048, entity the AOR, no tuple contact), `Expires` the account's expiry (§4.1) |
//! | `2xx` | the `SIP-ETag` is kept; a refresh is due at `max(expiry/2, expiry − 60 s)` |
//! | the refresh is due | `PUBLISH` with `SIP-If-Match`, no body (§4.2) |
//! | her presence changes again | `PUBLISH` with `SIP-If-Match` and the new PIDF (§4.3) |
//! | `412 Conditional Request Failed` | the entity-tag is forgotten: a new full `PUBLISH` (§4.1, §6 step 4) |
//! | `401` / `407` | the same request once more with the account's credentials (RFC 7616) |
//! | `423` | again with the response's `Min-Expires` (§6 step 5), up to `[accounts] max_expires` |
//! | she is unavailable (every resource), the account is removed or readdressed | `PUBLISH` `Expires: 0` with `SIP-If-Match`, no body (§4.4) |
//! | any other failure | tried again after the account backoff |
//!
//! The core stays sans-IO: deadlines are [`Publication::next`], run from
//! `accounts_handle_timeout`.

use std::collections::BTreeMap;
use std::time::Instant;

use stox_mappings::normalize_jid;
use stox_sip::body::pidf;
use tracing::{debug, info, warn};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::{pick_challenge, refresh_after, AccountTx, RegState};
use crate::core::{Gateway, Output, SendFailure, TxId};
use crate::sipmsg::{header_in, DialogRef, OutRequest, SipResponse, Transport};
use crate::translate::presence as xlate;

/// The PIDF media type (RFC 3863).
const PIDF: &str = "application/pidf+xml";
/// Resources of a user remembered for publication.
const MAX_RESOURCES: usize = 32;

/// The publication of one account (RFC 3903 §4).
#[derive(Debug, Default)]
pub(in crate::core) struct Publication {
    /// The entity-tag of the provider's publication (`SIP-ETag`), when it holds one.
    pub(super) etag: Option<String>,
    /// The PIDF the provider holds (the last one it accepted).
    pub(super) body: Option<Vec<u8>>,
    /// The outstanding PUBLISH.
    pub(super) tx: Option<TxId>,
    /// When the refresh (or the retry after a failure) is due.
    pub(super) next: Option<Instant>,
    /// Her presence changed while a PUBLISH was out: publish again after its answer.
    pub(super) dirty: bool,
    /// The expiry asked for (raised by a 423); 0 until first used.
    pub(super) expires: u32,
    pub(super) cseq: u32,
    pub(super) failures: u32,
}

/// An outstanding PUBLISH (see [`AccountTx::Publish`]).
#[derive(Debug, Clone)]
pub(in crate::core) struct PublishTx {
    key: String,
    req: OutRequest,
    transport: Transport,
    /// A challenge was answered in `req` already.
    answered: bool,
    /// The PIDF this request sets (`None`: a refresh or a removal).
    body: Option<Vec<u8>>,
    /// `Expires: 0` (§4.4).
    remove: bool,
}

impl Gateway {
    /// Available or unavailable presence from a local XMPP user (to `C` or a contact at
    /// `C`): publishes it through her registered accounts.
    pub(in crate::core) fn account_user_presence(&mut self, now: Instant, s: &Element) {
        let kind = s.attr("type");
        if !matches!(kind, None | Some("unavailable")) {
            return;
        }
        let Some(from) = s.attr("from").and_then(|f| f.parse::<Jid>().ok()) else {
            return;
        };
        let user = normalize_jid(from.to_bare().as_str());
        let keys: Vec<String> = self
            .accounts
            .accounts
            .values()
            .filter(|a| a.rec.jid == user)
            .map(|a| a.rec.key())
            .collect();
        if keys.is_empty() {
            return;
        }
        let resource = from.resource().map(|r| r.to_string()).unwrap_or_default();
        let resources = self.accounts.presence.entry(user.clone()).or_default();
        if kind == Some("unavailable") {
            resources.remove(&resource);
        } else {
            resources.insert(resource, s.clone());
            while resources.len() > MAX_RESOURCES {
                resources.pop_first();
            }
        }
        if resources.is_empty() {
            self.accounts.presence.remove(&user);
        }
        for key in keys {
            self.publish_account(now, &key);
        }
    }

    /// The PIDF to publish for an account: its user's available resources (RFC 8048
    /// Table 1) as the account's AOR, without tuple contacts (her XMPP address never
    /// reaches the provider); `None` when she is unavailable.
    fn account_pidf(&self, key: &str) -> Option<Vec<u8>> {
        let a = self.accounts.accounts.get(key)?;
        let resources: &BTreeMap<String, Element> = self.accounts.presence.get(&a.rec.jid)?;
        let tuples: Vec<pidf::Tuple> = resources
            .values()
            .filter_map(|st| xlate::stanza_to_tuple(st, None).map(|t| t.tuple))
            .collect();
        if tuples.is_empty() {
            return None;
        }
        let aor = a.rec.aor().ok()?.to_string();
        Some(pidf::write(&xlate::document(&aor, tuples)).into_bytes())
    }

    /// Brings the provider's publication in line with the user's presence: a new one, a
    /// modification, a removal, or nothing when it already holds that state.
    pub(in crate::core) fn publish_account(&mut self, now: Instant, key: &str) {
        let _ = now;
        let desired = self.account_pidf(key);
        let Some(a) = self.accounts.accounts.get_mut(key) else {
            return;
        };
        if !matches!(a.state, RegState::Registered { .. }) {
            return; // published once registered
        }
        let p = &mut a.publication;
        if p.tx.is_some() {
            p.dirty = true;
            return;
        }
        match (desired, p.etag.clone()) {
            // RFC 3903 §4.4: she is gone; the publication is removed.
            (None, Some(etag)) => self.send_publish(key, None, Some(etag), true),
            (None, None) => p.body = None,
            // The provider holds this state: refreshed on time, or now when no refresh is
            // due (one fell through while the account was not registered, §4.2).
            (Some(b), Some(etag)) if p.body.as_ref() == Some(&b) => {
                if p.next.is_none() {
                    self.send_publish(key, None, Some(etag), false);
                }
            }
            // §4.1 initial (no tag) or §4.3 modify (with the tag).
            (Some(b), etag) => self.send_publish(key, Some(b), etag, false),
        }
    }

    /// The refresh (§4.2) or the retry after a failure is due.
    fn publication_due(&mut self, now: Instant, key: &str) {
        let Some(a) = self.accounts.accounts.get_mut(key) else {
            return;
        };
        a.publication.next = None;
        match (a.publication.etag.clone(), a.publication.body.is_some()) {
            (Some(etag), true) if matches!(a.state, RegState::Registered { .. }) => {
                self.send_publish(key, None, Some(etag), false)
            }
            _ => self.publish_account(now, key),
        }
    }

    /// The PUBLISH of an account; `None` when its addresses do not parse.
    fn publish_request(
        &mut self,
        key: &str,
        body: Option<&[u8]>,
        if_match: Option<&str>,
        expires: u32,
    ) -> Option<(OutRequest, Transport)> {
        self.next_id += 1;
        let from_tag = super::cnonce(self.id_seed ^ 0x3903, self.next_id);
        let call_id = format!(
            "{}@stox",
            super::cnonce(self.id_seed ^ 0x9c, self.next_id + 2_000_000)
        );
        let a = self.accounts.accounts.get_mut(key)?;
        a.publication.cseq += 1;
        let cseq = a.publication.cseq;
        let rec = a.rec.clone();
        let aor = rec.aor().ok()?.to_string();
        let mut headers = vec![
            ("Max-Forwards".to_string(), "70".to_string()),
            ("Event".into(), "presence".into()),
            ("Expires".into(), expires.to_string()),
        ];
        if let Some(tag) = if_match {
            headers.push(("SIP-If-Match".into(), tag.to_string()));
        }
        let req = OutRequest {
            method: "PUBLISH".into(),
            uri: aor.clone(),
            from: rec.from_name_addr().ok()?,
            to: aor,
            call_id: Some(call_id),
            headers,
            content_type: body.map(|_| PIDF.to_string()),
            body: body.map(<[u8]>::to_vec).unwrap_or_default(),
            flow: None,
            flow_only: false,
            dialog: Some(DialogRef {
                from_tag,
                to_tag: None,
                cseq,
                route: Vec::new(),
            }),
            next_hop: rec.outbound_proxy.clone(),
        };
        Some((req, self.transport_of(&rec)))
    }

    fn send_publish(
        &mut self,
        key: &str,
        body: Option<Vec<u8>>,
        if_match: Option<String>,
        remove: bool,
    ) {
        let default_expires = self.accounts.accounts.get(key).map(|a| a.expires);
        let Some(expires) = self.accounts.accounts.get_mut(key).map(|a| {
            if a.publication.expires == 0 {
                a.publication.expires = default_expires.unwrap_or(super::DEFAULT_EXPIRES);
            }
            a.publication.expires
        }) else {
            return;
        };
        let expires = if remove { 0 } else { expires };
        let Some((req, transport)) =
            self.publish_request(key, body.as_deref(), if_match.as_deref(), expires)
        else {
            return warn!(%key, "account: PUBLISH not sent, the account's addresses do not parse");
        };
        debug!(%key, expires, if_match = ?if_match, body = body.is_some(), "account: PUBLISH");
        self.publish_out(PublishTx {
            key: key.to_string(),
            req,
            transport,
            answered: false,
            body,
            remove,
        });
    }

    fn publish_out(&mut self, p: PublishTx) {
        let tx = self.next_tx;
        self.next_tx -= 1;
        if let Some(a) = self.accounts.accounts.get_mut(&p.key) {
            a.publication.tx = Some(tx);
            a.publication.next = None;
        }
        let (req, transport) = (p.req.clone(), p.transport);
        self.accounts
            .txs
            .insert(tx, AccountTx::Publish(Box::new(p)));
        self.outputs
            .push_back(Output::SipSend { tx, req, transport });
    }

    /// The answer to a PUBLISH.
    pub(in crate::core) fn on_publish_response(
        &mut self,
        now: Instant,
        tx: TxId,
        p: PublishTx,
        result: &Result<SipResponse, SendFailure>,
    ) {
        let max_expires = self.settings.accounts.max_expires;
        let Some(a) = self.accounts.accounts.get_mut(&p.key) else {
            return; // the account is gone (its removal unpublished)
        };
        if a.publication.tx != Some(tx) {
            return;
        }
        a.publication.tx = None;
        let key = p.key.clone();
        let r = match result {
            Ok(r) => r,
            Err(e) => {
                let why = match e {
                    SendFailure::Timeout => "no answer".to_string(),
                    SendFailure::Transport(w) | SendFailure::FlowFailed(w) => w.clone(),
                };
                return self.publish_failed(now, &key, p.remove, why);
            }
        };
        match r.code {
            200..=299 => {
                let pubn = &mut a.publication;
                let granted = header_in(&r.headers, "Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .unwrap_or(pubn.expires);
                pubn.failures = 0;
                if p.remove || granted == 0 {
                    pubn.etag = None;
                    pubn.body = None;
                    pubn.next = None;
                    info!(%key, "account: publication removed");
                } else {
                    // §6 step 8 / §11.3.1: the new entity-tag replaces the old one.
                    if let Some(tag) = header_in(&r.headers, "SIP-ETag") {
                        pubn.etag = Some(tag.trim().to_string());
                    }
                    if let Some(b) = p.body {
                        pubn.body = Some(b);
                    }
                    pubn.next = Some(now + refresh_after(granted));
                    debug!(%key, etag = ?pubn.etag, expires = granted, "account: published");
                }
            }
            401 | 407 if !p.answered => {
                let Some(ch) = pick_challenge(r) else {
                    return self.publish_failed(
                        now,
                        &key,
                        p.remove,
                        format!("{} without a usable challenge", r.code),
                    );
                };
                a.publication.cseq += 1;
                let cseq = a.publication.cseq;
                let rec = a.rec.clone();
                let mut p = p;
                p.req.headers.retain(|(n, _)| {
                    !n.eq_ignore_ascii_case("Authorization")
                        && !n.eq_ignore_ascii_case("Proxy-Authorization")
                });
                if let Some(d) = p.req.dialog.as_mut() {
                    d.cseq = cseq;
                }
                let uri = p.req.uri.clone();
                let cred = self.credentials(&rec, &ch, "PUBLISH", &uri, 1);
                p.req.headers.push(cred);
                p.answered = true;
                return self.publish_out(p);
            }
            // §4.1 / §6 step 4: the provider lost the publication; start over.
            412 => {
                info!(%key, "account: 412 for the entity-tag; publishing anew");
                a.publication.etag = None;
                a.publication.body = None;
                a.publication.dirty = !p.remove;
            }
            // §6 step 5: too short an expiry.
            423 => {
                let min =
                    header_in(&r.headers, "Min-Expires").and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(m) if m > a.publication.expires && m <= max_expires => {
                        a.publication.expires = m;
                        let expires = if p.remove { 0 } else { m };
                        let mut p = p;
                        p.req
                            .headers
                            .retain(|(n, _)| !n.eq_ignore_ascii_case("Expires"));
                        p.req.headers.push(("Expires".into(), expires.to_string()));
                        a.publication.cseq += 1;
                        if let Some(d) = p.req.dialog.as_mut() {
                            d.cseq = a.publication.cseq;
                        }
                        p.answered = false;
                        return self.publish_out(p);
                    }
                    _ => {
                        return self.publish_failed(
                            now,
                            &key,
                            p.remove,
                            "423 without a usable Min-Expires".into(),
                        )
                    }
                }
            }
            code => {
                return self.publish_failed(now, &key, p.remove, format!("{code} {}", r.reason))
            }
        }
        self.publish_again_if_dirty(now, &key);
    }

    fn publish_again_if_dirty(&mut self, now: Instant, key: &str) {
        let dirty = self
            .accounts
            .accounts
            .get_mut(key)
            .map(|a| std::mem::take(&mut a.publication.dirty))
            .unwrap_or(false);
        if dirty {
            self.publish_account(now, key);
        }
    }

    fn publish_failed(&mut self, now: Instant, key: &str, remove: bool, why: String) {
        let Some(a) = self.accounts.accounts.get_mut(key) else {
            return;
        };
        let p = &mut a.publication;
        p.failures += 1;
        if remove {
            // The provider's publication expires by itself.
            p.etag = None;
            p.body = None;
        }
        let wait = self.settings.accounts.backoff(p.failures);
        p.next = Some(now + wait);
        p.dirty = false;
        warn!(%key, %why, retry_in = wait.as_secs(), "account: PUBLISH failed");
    }

    /// Removes the account's publication before it unregisters (§4.4), answering one
    /// challenge as its other last requests do.
    pub(super) fn unpublish_account(&mut self, a: &super::Account) {
        let Some(etag) = a.publication.etag.clone() else {
            return;
        };
        let rec = a.rec.clone();
        let Ok(aor) = rec.aor() else {
            return;
        };
        let Ok(from) = rec.from_name_addr() else {
            return;
        };
        self.next_id += 1;
        let from_tag = super::cnonce(self.id_seed ^ 0x3903, self.next_id);
        let call_id = format!(
            "{}@stox",
            super::cnonce(self.id_seed ^ 0x9c, self.next_id + 2_000_000)
        );
        let req = OutRequest {
            method: "PUBLISH".into(),
            uri: aor.to_string(),
            from,
            to: aor.to_string(),
            call_id: Some(call_id),
            headers: vec![
                ("Max-Forwards".into(), "70".into()),
                ("Event".into(), "presence".into()),
                ("Expires".into(), "0".into()),
                ("SIP-If-Match".into(), etag),
            ],
            content_type: None,
            body: Vec::new(),
            flow: None,
            flow_only: false,
            dialog: Some(DialogRef {
                from_tag,
                to_tag: None,
                cseq: a.publication.cseq + 1,
                route: Vec::new(),
            }),
            next_hop: rec.outbound_proxy.clone(),
        };
        info!(jid = %rec.jid, id = %rec.id, "account: removing its presence publication");
        let transport = self.transport_of(&rec);
        self.farewell(rec, req, transport, false);
    }

    /// Runs the publications that are due.
    pub(in crate::core) fn publications_handle_timeout(&mut self, now: Instant) {
        let due: Vec<String> = self
            .accounts
            .accounts
            .iter()
            .filter(|(_, a)| {
                a.publication.tx.is_none() && a.publication.next.is_some_and(|n| n <= now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.publication_due(now, &key);
        }
    }
}

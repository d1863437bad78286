//! Sans-IO tests of the core: a fake clock, the in-memory store, no sockets.

use super::*;
use crate::stanza::NS_STANZA;
use stox_mappings::{Mapping, Store};

const H: &str = "localhost";
const C: &str = "sip.localhost";

fn settings() -> Settings {
    Settings {
        accounts: Default::default(),
        home: H.into(),
        component: C.into(),
        message_type: "chat".into(),
        bounce_window: Duration::from_millis(300),
        udp_max_bytes: 1300,
        default_transport: Transport::Udp,
        epoch: (
            Instant::now(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_072_000),
        ),
        calls: crate::core::CallSettings::default(),
        presence: crate::core::PresenceSettings::default(),
        contacts: crate::core::LocalContacts::default(),
        registrar: crate::core::RegistrarSettings::default(),
    }
}

struct Harness {
    gw: Gateway,
    store: Store,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        let store = Store::memory();
        let gw = Gateway::new(settings(), &store, 7).expect("gateway");
        let mut h = Harness {
            gw,
            store,
            now: Instant::now(),
        };
        h.input(Input::LinkUp);
        h
    }

    fn input(&mut self, i: Input) -> Vec<Output> {
        self.gw.handle_input(self.now, i);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Output> {
        let mut v = Vec::new();
        while let Some(o) = self.gw.poll_output() {
            v.push(o);
        }
        v
    }

    /// Jumps the clock to the next timeout and runs it.
    fn advance(&mut self) -> Vec<Output> {
        if let Some(t) = self.gw.poll_timeout() {
            self.now = self.now.max(t);
        }
        self.gw.handle_timeout(self.now);
        self.drain()
    }
}

fn message(uri: &str, from: &str, ct: &str, body: &str) -> SipRequest {
    SipRequest {
        method: "MESSAGE".into(),
        uri: uri.into(),
        headers: vec![
            (
                "Via".into(),
                "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1".into(),
            ),
            ("From".into(), format!("<{from}>;tag=1")),
            ("To".into(), format!("<{uri}>")),
            ("Call-ID".into(), "call-1@pbx".into()),
            ("CSeq".into(), "1 MESSAGE".into()),
            ("Max-Forwards".into(), "70".into()),
            ("Content-Type".into(), ct.into()),
        ],
        body: body.as_bytes().to_vec(),
        transport: Transport::Udp,
        source: None,
    }
}

fn reply_code(outs: &[Output], tx: TxId) -> Option<u16> {
    outs.iter().find_map(|o| match o {
        Output::SipReply { tx: t, code, .. } if *t == tx => Some(*code),
        _ => None,
    })
}

fn stanzas(outs: &[Output]) -> Vec<&Element> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Stanza(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn body_of(s: &Element) -> String {
    s.get_child("body", NS_STANZA)
        .map(|b| b.text())
        .unwrap_or_default()
}

#[test]
fn sip_message_becomes_stanza_and_200_after_the_window() {
    let mut h = Harness::new();
    let outs = h.input(Input::SipRequest {
        tx: 1,
        req: message(
            "sip:alice@localhost",
            "sip:carol@127.0.0.1:5080",
            "text/plain;charset=UTF-8",
            "héllo 🎉",
        ),
    });
    let s = stanzas(&outs);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].attr("to"), Some("alice@localhost"));
    assert_eq!(
        s[0].attr("from"),
        Some("carol\\40127.0.0.1\\3a5080@sip.localhost")
    );
    assert_eq!(body_of(s[0]), "héllo 🎉");
    assert_eq!(
        reply_code(&outs, 1),
        None,
        "the 200 waits for the bounce window"
    );
    // Unanswered, the sender still retransmits: nothing is written to disk.
    assert_eq!(h.store.outbox.len().expect("len"), 0);
    assert_eq!(h.gw.pending_messages(), 1);
    let outs = h.advance();
    assert_eq!(reply_code(&outs, 1), Some(200));
    assert_eq!(h.gw.pending_messages(), 0);
}

#[test]
fn link_drop_inside_the_window_stores_the_message_before_answering_202() {
    let mut h = Harness::new();
    h.input(Input::SipRequest {
        tx: 1,
        req: message(
            "sip:alice@localhost",
            "sip:c@pbx",
            "text/plain",
            "in flight",
        ),
    });
    let outs = h.input(Input::LinkDown);
    assert_eq!(reply_code(&outs, 1), Some(202));
    assert_eq!(
        h.store.outbox.len().expect("len"),
        1,
        "stored before the 202"
    );
    let outs = h.input(Input::LinkUp);
    assert_eq!(
        stanzas(&outs)
            .iter()
            .map(|s| body_of(s))
            .collect::<Vec<_>>(),
        vec!["in flight"]
    );
    let outs = h.advance();
    assert_eq!(reply_code(&outs, 1), None, "answered once only");
    assert_eq!(
        h.store.outbox.len().expect("len"),
        0,
        "removed after its window"
    );
}

#[test]
fn bounce_within_the_window_becomes_the_mapped_sip_error() {
    let mut h = Harness::new();
    let outs = h.input(Input::SipRequest {
        tx: 1,
        req: message(
            "sip:nobody@localhost",
            "sip:carol@pbx.example",
            "text/plain",
            "hi",
        ),
    });
    let sent = stanzas(&outs)[0].clone();
    let id = sent.attr("id").expect("id").to_string();
    let bounce: Element = format!(
        "<message xmlns='jabber:client' type='error' from='nobody@localhost' to='{}' id='{id}'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
        sent.attr("from").expect("from")
    )
    .parse()
    .expect("xml");
    let outs = h.input(Input::Stanza(bounce));
    // RFC 7247 §7 Table 2: item-not-found about a bare JID → 604.
    assert_eq!(
        reply_code(&outs, 1),
        Some(errmap::xmpp_to_sip(
            &DefinedCondition::ItemNotFound,
            false,
            false
        ))
    );
    assert_ne!(reply_code(&outs, 1), Some(200));
    assert_eq!(h.store.outbox.len().expect("len"), 0);
    let outs = h.advance();
    assert_eq!(reply_code(&outs, 1), None, "answered once only");
}

#[test]
fn link_down_answers_202_and_resends_in_order_after_reconnect() {
    let mut h = Harness::new();
    h.input(Input::SipRequest {
        tx: 1,
        req: message("sip:alice@localhost", "sip:c@pbx", "text/plain", "one"),
    });
    let outs = h.input(Input::LinkDown);
    assert_eq!(reply_code(&outs, 1), Some(202));
    let outs = h.input(Input::SipRequest {
        tx: 2,
        req: message("sip:alice@localhost", "sip:c@pbx", "text/plain", "two"),
    });
    assert_eq!(reply_code(&outs, 2), Some(202));
    assert!(
        stanzas(&outs).is_empty(),
        "nothing is sent while the link is down"
    );
    let outs = h.input(Input::LinkUp);
    let bodies: Vec<String> = stanzas(&outs).iter().map(|s| body_of(s)).collect();
    assert_eq!(bodies, vec!["one", "two"]);
    h.advance();
    assert_eq!(h.store.outbox.len().expect("len"), 0);
}

#[test]
fn outbox_left_by_a_previous_run_is_sent_on_first_link_up() {
    let store = Store::memory();
    let stanza = "<message xmlns='jabber:client' from='c\\40pbx@sip.localhost' to='alice@localhost' id='old-1'><body>from before</body></message>";
    store.outbox.push(stanza.as_bytes()).expect("push");
    let mut gw = Gateway::new(settings(), &store, 1).expect("gw");
    let now = Instant::now();
    gw.handle_input(now, Input::LinkUp);
    let mut outs = Vec::new();
    while let Some(o) = gw.poll_output() {
        outs.push(o);
    }
    let s = stanzas(&outs);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].attr("id"), Some("old-1"));
}

#[test]
fn request_checks() {
    let mut h = Harness::new();
    let mut r = message("sip:alice@localhost", "sip:c@pbx", "text/plain", "x");
    r.headers.retain(|(n, _)| n != "Max-Forwards");
    r.headers.push(("Max-Forwards".into(), "0".into()));
    assert_eq!(
        reply_code(&h.input(Input::SipRequest { tx: 1, req: r }), 1),
        Some(483)
    );
    let r = message("sips:alice@localhost", "sip:c@pbx", "text/plain", "x");
    assert_eq!(
        reply_code(&h.input(Input::SipRequest { tx: 2, req: r }), 2),
        Some(416)
    );
    let r = message("sip:alice@localhost", "sip:c@pbx", "image/png", "x");
    let outs = h.input(Input::SipRequest { tx: 3, req: r });
    assert_eq!(reply_code(&outs, 3), Some(415));
    assert!(outs.iter().any(|o| matches!(o, Output::SipReply { headers, .. } if headers.iter().any(|(n, v)| n == "Accept" && v.contains("text/plain")))));
    let mut r = message("sip:alice@localhost", "sip:c@pbx", "text/plain", "x");
    r.method = "OPTIONS".into();
    assert_eq!(
        reply_code(&h.input(Input::SipRequest { tx: 4, req: r }), 4),
        Some(200)
    );
    let mut r = message("sip:alice@localhost", "sip:c@pbx", "text/plain", "x");
    r.method = "REFER".into();
    assert_eq!(
        reply_code(&h.input(Input::SipRequest { tx: 5, req: r }), 5),
        Some(405)
    );
    // RFC 6665 §8.2.1: a SUBSCRIBE without `Event: presence` names no package stox has.
    let mut r = message("sip:alice@localhost", "sip:c@pbx", "text/plain", "x");
    r.method = "SUBSCRIBE".into();
    assert_eq!(
        reply_code(&h.input(Input::SipRequest { tx: 55, req: r }), 55),
        Some(489)
    );
    let r = message("sip:dave@sip.localhost", "sip:c@pbx", "text/plain", "x");
    assert_eq!(
        reply_code(&h.input(Input::SipRequest { tx: 6, req: r }), 6),
        Some(404)
    );
    // Not an open relay: a domain stox does not serve gets 403, whoever asks.
    for (n, target) in [(61, "sip:bob@example.net"), (62, "sip:bob@127.0.0.1:5099")] {
        let r = message(target, "sip:c@pbx", "text/plain", "x");
        assert_eq!(
            reply_code(&h.input(Input::SipRequest { tx: n, req: r }), n),
            Some(403),
            "{target}"
        );
    }
    let mut r = message("sip:alice@localhost", "sip:c@pbx", "text/plain", "x");
    r.headers.retain(|(n, _)| n != "From");
    assert_eq!(
        reply_code(&h.input(Input::SipRequest { tx: 7, req: r }), 7),
        Some(400)
    );
}

fn xmpp_message(to: &str, body: &str) -> Element {
    format!("<message xmlns='jabber:client' type='chat' from='alice@localhost/phone' to='{to}' id='m1'><body>{body}</body></message>")
        .parse()
        .expect("xml")
}

fn sip_send(outs: &[Output]) -> Option<(TxId, &OutRequest, Transport)> {
    outs.iter().find_map(|o| match o {
        Output::SipSend { tx, req, transport } => Some((*tx, req, *transport)),
        _ => None,
    })
}

#[test]
fn xmpp_message_becomes_sip_message_and_errors_come_back() {
    let mut h = Harness::new();
    let outs = h.input(Input::Stanza(xmpp_message(
        "bob\\40127.0.0.1\\3a5080@sip.localhost",
        "grüß &lt;&amp;&gt;",
    )));
    let (tx, req, transport) = sip_send(&outs).expect("a SIP request");
    assert_eq!(req.uri, "sip:bob@127.0.0.1:5080");
    assert_eq!(req.from, "sip:alice@localhost;gr=phone");
    assert_eq!(req.body, "grüß <&>".as_bytes());
    assert_eq!(transport, Transport::Udp);
    let outs = h.input(Input::SipResponse {
        tx,
        result: Ok(SipResponse {
            code: 486,
            reason: "Busy Here".into(),
            headers: vec![],
        }),
    });
    let s = stanzas(&outs);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].attr("type"), Some("error"));
    assert_eq!(s[0].attr("to"), Some("alice@localhost/phone"));
    assert_eq!(s[0].attr("id"), Some("m1"));
    let (cond, text) = stanza::error_of(s[0]).expect("error");
    assert_eq!(cond, Some(DefinedCondition::RecipientUnavailable));
    assert_eq!(text.as_deref(), Some("Busy Here"));

    let outs = h.input(Input::Stanza(xmpp_message(
        "bob\\40127.0.0.1\\3a5080@sip.localhost",
        "ok",
    )));
    let (tx, _, _) = sip_send(&outs).expect("a SIP request");
    let outs = h.input(Input::SipResponse {
        tx,
        result: Ok(SipResponse {
            code: 200,
            reason: "OK".into(),
            headers: vec![],
        }),
    });
    assert!(stanzas(&outs).is_empty());
}

#[test]
fn large_message_goes_over_tcp_or_policy_violation() {
    let mut h = Harness::new();
    let big = "x".repeat(2000);
    let outs = h.input(Input::Stanza(xmpp_message(
        "bob\\40127.0.0.1\\3a5080@sip.localhost",
        &big,
    )));
    let (tx, _, transport) = sip_send(&outs).expect("a SIP request");
    assert_eq!(transport, Transport::Tcp);
    let outs = h.input(Input::SipResponse {
        tx,
        result: Err(SendFailure::Transport("connection refused".into())),
    });
    let (cond, _) = stanza::error_of(stanzas(&outs)[0]).expect("error");
    assert_eq!(cond, Some(DefinedCondition::PolicyViolation));
}

#[test]
fn bad_target_jids_get_stanza_errors() {
    let mut h = Harness::new();
    let outs = h.input(Input::Stanza(xmpp_message(
        "sip.localhost",
        "to the gateway",
    )));
    assert_eq!(stanzas(&outs)[0].attr("type"), Some("error"));
    let outs = h.input(Input::Stanza(xmpp_message(
        "bob\\40@sip.localhost",
        "no host",
    )));
    let (cond, _) = stanza::error_of(stanzas(&outs)[0]).expect("error");
    assert!(
        matches!(
            cond,
            Some(DefinedCondition::JidMalformed) | Some(DefinedCondition::ItemNotFound)
        ),
        "{cond:?}"
    );
    assert!(sip_send(&outs).is_none());
}

#[test]
fn explicit_mapping_overrides_the_rules() {
    let mut h = Harness::new();
    h.store
        .mappings
        .put(&Mapping {
            jid: "frank@sip.localhost".into(),
            sip: "sip:frank@127.0.0.1:5099".into(),
            created_unix: 0,
        })
        .expect("put");
    let outs = h.input(Input::Stanza(xmpp_message("frank@sip.localhost", "hi")));
    let (_, req, _) = sip_send(&outs).expect("a SIP request");
    assert_eq!(req.uri, "sip:frank@127.0.0.1:5099");
    // And the SIP side of the mapping appears in XMPP as the mapped JID.
    let outs = h.input(Input::SipRequest {
        tx: 9,
        req: message(
            "sip:alice@localhost",
            "sip:frank@127.0.0.1:5099",
            "text/plain",
            "yo",
        ),
    });
    assert_eq!(stanzas(&outs)[0].attr("from"), Some("frank@sip.localhost"));
}

#[test]
fn disco_on_the_component_is_answered() {
    let mut h = Harness::new();
    let iq: Element = "<iq xmlns='jabber:client' type='get' id='d1' from='alice@localhost/r' to='sip.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        .parse()
        .expect("xml");
    let outs = h.input(Input::Stanza(iq));
    let s = stanzas(&outs);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].attr("type"), Some("result"));
    let xml = String::from(s[0]);
    assert!(xml.contains("jid\\20escaping"), "{xml}");
    assert!(
        xml.contains("category=\"gateway\"") || xml.contains("category='gateway'"),
        "{xml}"
    );
}

#[test]
fn rfc3339_dates() {
    assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00Z"
    );
    assert_eq!(
        rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_072_000)),
        "2025-11-25T12:00:00Z"
    );
}

/// A server restart may drop stanzas it read just before the link closed: messages answered
/// 200 within the last second are sent again after reconnect (at least once).
#[test]
fn messages_answered_just_before_a_link_drop_are_sent_again() {
    let mut h = Harness::new();
    for (tx, body) in [(1, "early"), (2, "late")] {
        h.input(Input::SipRequest {
            tx,
            req: message(
                "sip:alice@localhost",
                "sip:carol@127.0.0.1:5080",
                "text/plain",
                body,
            ),
        });
        let outs = h.advance();
        assert_eq!(reply_code(&outs, tx), Some(200));
        if tx == 1 {
            // "early" leaves the resend horizon before the link drops.
            h.now += RESEND_HORIZON + Duration::from_millis(500);
            h.gw.handle_timeout(h.now);
        }
    }
    h.now += Duration::from_millis(100);
    h.input(Input::LinkDown);
    assert_eq!(h.store.outbox.len().expect("len"), 1, "only the recent one");
    let outs = h.input(Input::LinkUp);
    let bodies: Vec<String> = stanzas(&outs).into_iter().map(body_of).collect();
    assert_eq!(bodies, vec!["late".to_string()]);
    // Its window closes again without a bounce: the outbox is empty.
    h.advance();
    assert_eq!(h.store.outbox.len().expect("len"), 0);
}

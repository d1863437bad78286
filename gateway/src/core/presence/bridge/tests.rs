//! The presence bridge through `Gateway::handle_input`, under a fake clock: SIP requests and
//! responses and stanzas in, SIP requests, replies and stanzas out.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use stox_mappings::{Store, Table};
use stox_sip::body::pidf;
use xmpp_parsers::minidom::Element;

use crate::core::{
    CallSettings, Gateway, Input, LocalContacts, Output, PresenceSettings, SendFailure, Settings,
    TxId,
};
use crate::sipmsg::{tag_of, OutRequest, SipRequest, SipResponse, Transport};

const H: &str = "localhost";
const C: &str = "sip.localhost";
/// The SIP contact alice watches, and its JID.
const CAROL: &str = "sip:carol@127.0.0.1:5080";
const CAROL_JID: &str = "carol\\40127.0.0.1\\3a5080@sip.localhost";
const STOX: &str = "127.0.0.1:5060";

fn settings(epoch: Instant) -> Settings {
    Settings {
        accounts: Default::default(),
        home: H.into(),
        component: C.into(),
        message_type: "chat".into(),
        bounce_window: Duration::from_millis(300),
        udp_max_bytes: 1300,
        default_transport: Transport::Udp,
        epoch: (
            epoch,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        ),
        calls: CallSettings::default(),
        presence: PresenceSettings {
            min_expires: 1,
            rate_per_source: 5,
            rate_burst: 10,
            ..PresenceSettings::default()
        },
        contacts: LocalContacts {
            udp: Some(STOX.parse().expect("addr")),
            tcp: None,
            tls: None,
        },
        registrar: crate::core::RegistrarSettings {
            digest_algorithms: vec![
                stox_sip::digest::Algorithm::Md5,
                stox_sip::digest::Algorithm::Sha256,
            ],
            ..crate::core::RegistrarSettings::default()
        },
    }
}

struct H {
    gw: Gateway,
    store: Store,
    now: Instant,
    epoch: Instant,
    next_tx: TxId,
}

impl H {
    fn new() -> H {
        let now = Instant::now();
        H::with_store(Store::memory(), now, now)
    }

    fn with_store(store: Store, epoch: Instant, now: Instant) -> H {
        let mut gw = Gateway::new(settings(epoch), &store, 3).expect("gateway");
        gw.restore_presence(now);
        let mut h = H {
            gw,
            store,
            now,
            epoch,
            next_tx: 1,
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

    fn stanza(&mut self, xml: &str) -> Vec<Output> {
        let e: Element = xml.parse().expect("test stanza");
        self.input(Input::Stanza(e))
    }

    /// Sends a SIP request; returns its reply code and everything else that came out.
    #[allow(clippy::type_complexity)]
    fn sip(
        &mut self,
        req: SipRequest,
    ) -> (u16, Vec<(String, String)>, Option<String>, Vec<Output>) {
        let tx = self.next_tx;
        self.next_tx += 1;
        let outs = self.input(Input::SipRequest { tx, req });
        let mut reply = None;
        let mut rest = Vec::new();
        for o in outs {
            match o {
                Output::SipReply {
                    tx: t,
                    code,
                    headers,
                    to_tag,
                } if t == tx => reply = Some((code, headers, to_tag)),
                o => rest.push(o),
            }
        }
        let (code, headers, tag) = reply.expect("the request is answered at once");
        (code, headers, tag, rest)
    }

    fn respond(&mut self, tx: TxId, code: u16, headers: &[(&str, &str)]) -> Vec<Output> {
        self.input(Input::SipResponse {
            tx,
            result: Ok(SipResponse {
                code,
                reason: "R".into(),
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            }),
        })
    }

    /// Moves the clock to `t` and runs what is due.
    fn at(&mut self, t: Instant) -> Vec<Output> {
        self.now = t;
        self.gw.handle_timeout(t);
        self.drain()
    }

    fn secs(&self, n: u64) -> Instant {
        self.epoch + Duration::from_secs(n)
    }
}

fn sends(outs: &[Output]) -> Vec<(TxId, &OutRequest)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::SipSend { tx, req, .. } => Some((*tx, req)),
            _ => None,
        })
        .collect()
}

fn stanzas(outs: &[Output]) -> Vec<&Element> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Stanza(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn header<'a>(req: &'a OutRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn hdr<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `(type or "available", from)` of each presence stanza.
fn presences(outs: &[Output]) -> Vec<(String, String)> {
    stanzas(outs)
        .into_iter()
        .filter(|s| s.name() == "presence")
        .map(|s| {
            (
                s.attr("type").unwrap_or("available").to_string(),
                s.attr("from").unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn pidf_body(basic: &str, note: &str) -> Vec<u8> {
    format!(
        "<?xml version='1.0'?><presence xmlns='urn:ietf:params:xml:ns:pidf' entity='{CAROL}'>\
         <tuple id='desk'><status><basic>{basic}</basic></status><note>{note}</note></tuple></presence>"
    )
    .into_bytes()
}

fn request(method: &str, uri: &str, from: &str, to: &str, call_id: &str) -> SipRequest {
    SipRequest {
        method: method.into(),
        uri: uri.into(),
        headers: vec![
            (
                "Via".into(),
                "SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKx".into(),
            ),
            ("From".into(), from.into()),
            ("To".into(), to.into()),
            ("Call-ID".into(), call_id.into()),
            ("CSeq".into(), format!("1 {method}")),
            ("Event".into(), "presence".into()),
        ],
        body: Vec::new(),
        transport: Transport::Udp,
        source: Some("127.0.0.1:5080".parse::<SocketAddr>().expect("addr")),
    }
}

fn with(mut r: SipRequest, name: &str, value: &str) -> SipRequest {
    r.headers.push((name.into(), value.into()));
    r
}

/// The NOTIFY carol's phone sends in stox's subscription dialog.
fn notify(sub: &OutRequest, remote_tag: &str, state: &str, body: Option<Vec<u8>>) -> SipRequest {
    let d = sub.dialog.as_ref().expect("dialog");
    let mut r = request(
        "NOTIFY",
        &format!("sip:stox@{STOX}"),
        &format!("<{CAROL}>;tag={remote_tag}"),
        &format!("<{}>;tag={}", sub.from, d.from_tag),
        sub.call_id.as_deref().expect("call-id"),
    );
    r = with(r, "Subscription-State", state);
    r = with(r, "Contact", "<sip:carol@127.0.0.1:5080;transport=udp>");
    if let Some(b) = body {
        r = with(r, "Content-Type", "application/pidf+xml");
        r.body = b;
    }
    r
}

/// alice subscribes to carol, carol's phone accepts with this Expires and tag.
fn alice_watches_carol(h: &mut H, expires: &str) -> (TxId, OutRequest) {
    let outs = h.stanza(&format!(
        "<presence xmlns='jabber:component:accept' type='subscribe' from='alice@localhost' to='{CAROL_JID}'/>"
    ));
    let s = sends(&outs);
    assert_eq!(s.len(), 1, "one SUBSCRIBE: {outs:?}");
    let (tx, sub) = (s[0].0, s[0].1.clone());
    assert!(
        presences(&outs).is_empty(),
        "nothing said to alice before a NOTIFY"
    );
    let outs = h.respond(
        tx,
        200,
        &[
            ("To", &format!("<{CAROL}>;tag=ct")),
            ("Contact", "<sip:carol@127.0.0.1:5080>"),
            ("Expires", expires),
        ],
    );
    assert!(outs.is_empty(), "{outs:?}");
    (tx, sub)
}

#[test]
fn xmpp_user_watches_a_sip_contact() {
    let mut h = H::new();
    let (_, sub) = alice_watches_carol(&mut h, "600");
    // RFC 8048 §5 / RFC 3856: the SUBSCRIBE.
    assert_eq!(sub.method, "SUBSCRIBE");
    assert_eq!(sub.uri, CAROL);
    assert_eq!(sub.from, "sip:alice@localhost");
    assert_eq!(sub.to, CAROL);
    assert_eq!(header(&sub, "Event"), Some("presence"));
    assert_eq!(header(&sub, "Accept"), Some("application/pidf+xml"));
    assert_eq!(header(&sub, "Expires"), Some("3600"));
    assert_eq!(header(&sub, "Contact"), Some("<sip:stox@127.0.0.1:5060>"));
    let d = sub.dialog.clone().expect("a dialog");
    assert_eq!((d.to_tag.as_deref(), d.cseq), (None, 1));

    // NOTIFY pending: 200, not translated.
    let (code, _, _, outs) = h.sip(notify(&sub, "ct", "pending;expires=600", None));
    assert_eq!(code, 200);
    assert!(outs.is_empty(), "{outs:?}");
    // The first active NOTIFY: subscribed, then the presence with caps.
    let (code, _, _, outs) = h.sip(notify(
        &sub,
        "ct",
        "active;expires=600",
        Some(pidf_body("open", "at my desk")),
    ));
    assert_eq!(code, 200);
    assert_eq!(
        presences(&outs),
        vec![
            ("subscribed".to_string(), CAROL_JID.to_string()),
            ("available".to_string(), format!("{CAROL_JID}/desk")),
        ]
    );
    let p = stanzas(&outs)[1];
    assert_eq!(p.attr("to"), Some("alice@localhost"));
    assert_eq!(
        p.get_child("status", crate::stanza::NS_STANZA)
            .map(|s| s.text()),
        Some("at my desk".to_string())
    );
    assert!(
        p.get_child("c", "http://jabber.org/protocol/caps")
            .is_some(),
        "callable: caps on available presence"
    );
    // Closed, less than a second later: held back (one translation per second per
    // watch, the last state winning), then unavailable.
    h.now += Duration::from_millis(200);
    let (_, _, _, outs) = h.sip(notify(
        &sub,
        "ct",
        "active;expires=600",
        Some(pidf_body("open", "brb")),
    ));
    assert!(presences(&outs).is_empty());
    let (_, _, _, outs) = h.sip(notify(
        &sub,
        "ct",
        "active;expires=590",
        Some(pidf_body("closed", "gone")),
    ));
    assert!(presences(&outs).is_empty());
    let outs = h.at(h.now + Duration::from_millis(800));
    assert_eq!(
        presences(&outs),
        vec![("unavailable".to_string(), format!("{CAROL_JID}/desk"))]
    );

    // Refresh at 90 % of the granted 590 s, inside the dialog.
    let outs = h.at(h.now + Duration::from_secs(531));
    let s = sends(&outs);
    assert_eq!(s.len(), 1, "{outs:?}");
    let refresh = s[0].1;
    let d = refresh.dialog.as_ref().expect("dialog");
    assert_eq!(refresh.call_id, sub.call_id);
    assert_eq!(d.to_tag.as_deref(), Some("ct"));
    assert_eq!(d.cseq, 2);
    assert_eq!(refresh.uri, "sip:carol@127.0.0.1:5080;transport=udp");
    let tx = s[0].0;
    h.respond(tx, 200, &[("Expires", "600")]);

    // alice unsubscribes: SUBSCRIBE Expires 0 in the dialog, unavailable + unsubscribed.
    let outs = h.stanza(&format!(
        "<presence xmlns='jabber:component:accept' type='unsubscribe' from='alice@localhost' to='{CAROL_JID}'/>"
    ));
    let s = sends(&outs);
    assert_eq!(s.len(), 1);
    assert_eq!(header(s[0].1, "Expires"), Some("0"));
    assert_eq!(s[0].1.dialog.as_ref().map(|d| d.cseq), Some(3));
    assert_eq!(
        presences(&outs),
        vec![("unsubscribed".to_string(), CAROL_JID.to_string())]
    );
    // The final NOTIFY of the dialog (RFC 6665 §4.1.2.3) is acknowledged, not translated...
    let (code, _, _, outs) = h.sip(notify(&sub, "ct", "terminated;reason=timeout", None));
    assert_eq!(code, 200);
    assert!(outs.is_empty(), "{outs:?}");
    // ... for a while: after 64·T1 the dialog is forgotten.
    h.now += Duration::from_secs(33);
    let (code, _, _, _) = h.sip(notify(&sub, "ct", "terminated;reason=timeout", None));
    assert_eq!(code, 481);
    assert!(h
        .store
        .tables
        .list(Table::Watches)
        .expect("list")
        .is_empty());
}

#[test]
fn refusals_retries_and_probes() {
    // 403: the authorization ends.
    let mut h = H::new();
    let outs = h.stanza(&format!(
        "<presence xmlns='jabber:component:accept' type='subscribe' from='alice@localhost' to='{CAROL_JID}'/>"
    ));
    let tx = sends(&outs)[0].0;
    let outs = h.respond(tx, 403, &[]);
    assert_eq!(
        presences(&outs),
        vec![("unsubscribed".to_string(), CAROL_JID.to_string())]
    );
    assert!(h.gw.subscriptions(h.now).is_empty());

    // 423: again with Min-Expires, same Call-ID and tag, next CSeq.
    let mut h = H::new();
    let outs = h.stanza(&format!(
        "<presence xmlns='jabber:component:accept' type='subscribe' from='alice@localhost' to='{CAROL_JID}'/>"
    ));
    let (tx, first) = (sends(&outs)[0].0, sends(&outs)[0].1.clone());
    let outs = h.respond(tx, 423, &[("Min-Expires", "7200")]);
    let s = sends(&outs);
    assert_eq!(header(s[0].1, "Expires"), Some("7200"));
    assert_eq!(s[0].1.call_id, first.call_id);
    let (d0, d1) = (
        first.dialog.as_ref().expect("dialog"),
        s[0].1.dialog.as_ref().expect("dialog"),
    );
    assert_eq!((d1.from_tag.as_str(), d1.cseq), (d0.from_tag.as_str(), 2));
    assert_eq!(d1.to_tag, None);

    // No answer (timer F): retried later, nothing said to alice.
    let tx = s[0].0;
    let outs = h.input(Input::SipResponse {
        tx,
        result: Err(SendFailure::Timeout),
    });
    assert!(outs.is_empty(), "{outs:?}");
    let outs = h.at(h.now + Duration::from_secs(30));
    assert_eq!(sends(&outs).len(), 1, "retried after the backoff");

    // A probe is answered from the last NOTIFY and refreshes (alice logged in).
    let mut h = H::new();
    let (_, sub) = alice_watches_carol(&mut h, "600");
    h.sip(notify(
        &sub,
        "ct",
        "active;expires=600",
        Some(pidf_body("open", "here")),
    ));
    h.now += Duration::from_secs(5);
    let outs = h.stanza(&format!(
        "<presence xmlns='jabber:component:accept' type='probe' from='alice@localhost' to='{CAROL_JID}'/>"
    ));
    assert_eq!(
        presences(&outs),
        vec![("available".to_string(), format!("{CAROL_JID}/desk"))]
    );
    let s = sends(&outs);
    assert_eq!(s.len(), 1, "the probe refreshes the subscription");
    assert_eq!(s[0].1.dialog.as_ref().map(|d| d.cseq), Some(2));

    // NOTIFY terminated;reason=rejected: unsubscribed.
    let outs = {
        let (code, _, _, outs) = h.sip(notify(&sub, "ct", "terminated;reason=rejected", None));
        assert_eq!(code, 200);
        outs
    };
    assert_eq!(
        presences(&outs),
        vec![
            ("unavailable".to_string(), format!("{CAROL_JID}/desk")),
            ("unsubscribed".to_string(), CAROL_JID.to_string()),
        ]
    );
}

#[test]
fn bad_notifies() {
    let mut h = H::new();
    let (_, sub) = alice_watches_carol(&mut h, "600");
    // Unknown dialog.
    let mut other = sub.clone();
    other.call_id = Some("nope".into());
    assert_eq!(h.sip(notify(&other, "ct", "active", None)).0, 481);
    // Not PIDF.
    let mut n = notify(&sub, "ct", "active", Some(b"hello".to_vec()));
    for (k, v) in n.headers.iter_mut() {
        if k == "Content-Type" {
            *v = "text/plain".into();
        }
    }
    let (code, headers, _, _) = h.sip(n);
    assert_eq!(code, 415);
    assert_eq!(hdr(&headers, "Accept"), Some("application/pidf+xml"));
    // Malformed, entity tricks, huge: 400, nothing translated.
    for body in [
        b"<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple".to_vec(),
        b"<!DOCTYPE p [<!ENTITY a 'aaaa'>]><presence xmlns='urn:ietf:params:xml:ns:pidf' entity='&a;'/>".to_vec(),
        vec![b' '; 10].into_iter().chain(std::iter::repeat_n(b'x', pidf::MAX_BODY + 1)).collect(),
    ] {
        let (code, _, _, outs) = h.sip(notify(&sub, "ct", "active", Some(body)));
        assert_eq!(code, 400);
        assert!(presences(&outs).is_empty());
    }
    // No Subscription-State.
    let mut n = notify(&sub, "ct", "active", None);
    n.headers.retain(|(k, _)| k != "Subscription-State");
    assert_eq!(h.sip(n).0, 400);
    // Another event package.
    let mut n = notify(&sub, "ct", "active", None);
    for (k, v) in n.headers.iter_mut() {
        if k == "Event" {
            *v = "dialog".into();
        }
    }
    assert_eq!(h.sip(n).0, 489);
    // A forked second dialog is refused; the first goes on.
    let (code, _, _, _) = h.sip(notify(&sub, "ct", "active", Some(pidf_body("open", "a"))));
    assert_eq!(code, 200);
    assert_eq!(h.sip(notify(&sub, "other-tag", "active", None)).0, 481);
}

/// carol (SIP) subscribes to alice (XMPP).
fn carol_watches_alice(h: &mut H, expires: &str, call_id: &str) -> (String, Vec<Output>) {
    let r = request(
        "SUBSCRIBE",
        "sip:alice@localhost",
        &format!("<{CAROL}>;tag=cw"),
        "<sip:alice@localhost>",
        call_id,
    );
    let r = with(r, "Expires", expires);
    let r = with(r, "Accept", "application/pidf+xml");
    let r = with(r, "Contact", "<sip:carol@127.0.0.1:5080>");
    let (code, headers, tag, outs) = h.sip(r);
    assert_eq!(code, 200, "RFC 6665: 200, never 202");
    assert_eq!(hdr(&headers, "Contact"), Some("<sip:stox@127.0.0.1:5060>"));
    assert!(hdr(&headers, "Expires").is_some());
    (tag.expect("a To tag for the dialog"), outs)
}

/// (Subscription-State, body) of each NOTIFY.
fn notifies(outs: &[Output]) -> Vec<(TxId, String, String)> {
    sends(outs)
        .into_iter()
        .filter(|(_, r)| r.method == "NOTIFY")
        .map(|(tx, r)| {
            (
                tx,
                header(r, "Subscription-State").unwrap_or("").to_string(),
                String::from_utf8_lossy(&r.body).into_owned(),
            )
        })
        .collect()
}

#[test]
fn sip_user_watches_an_xmpp_user() {
    let mut h = H::new();
    let (tag, outs) = carol_watches_alice(&mut h, "600", "w1");
    // subscribe to alice from carol's JID, NOTIFY pending.
    let st = stanzas(&outs);
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].attr("type"), Some("subscribe"));
    assert_eq!(st[0].attr("from"), Some(CAROL_JID));
    assert_eq!(st[0].attr("to"), Some("alice@localhost"));
    let n = notifies(&outs);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].1, "pending");
    let notify_req = sends(&outs)[0].1.clone();
    assert_eq!(notify_req.uri, "sip:carol@127.0.0.1:5080");
    assert_eq!(notify_req.to, CAROL);
    assert_eq!(notify_req.from, "sip:alice@localhost");
    let d = notify_req.dialog.clone().expect("dialog");
    assert_eq!(d.from_tag, tag);
    assert_eq!(d.to_tag.as_deref(), Some("cw"));
    assert_eq!(header(&notify_req, "Event"), Some("presence"));

    // alice approves: a probe, and the active NOTIFY waits for the answer.
    let outs = h.stanza(&format!(
        "<presence xmlns='jabber:component:accept' type='subscribed' from='alice@localhost' to='{CAROL_JID}'/>"
    ));
    assert_eq!(
        presences(&outs),
        vec![("probe".to_string(), CAROL_JID.to_string())]
    );
    assert!(notifies(&outs).is_empty());
    let outs = h.stanza(&format!(
        "<presence xmlns='jabber:component:accept' from='alice@localhost/laptop' to='{CAROL_JID}'>\
         <show>dnd</show><status>in a meeting</status><priority>1</priority></presence>"
    ));
    let n = notifies(&outs);
    assert_eq!(n.len(), 1);
    assert!(n[0].1.starts_with("active;expires="), "{}", n[0].1);
    let doc = pidf::parse(n[0].2.as_bytes()).expect("PIDF");
    assert_eq!(doc.entity, "sip:alice@localhost");
    assert_eq!(doc.tuples.len(), 1);
    let t = &doc.tuples[0];
    assert_eq!(t.id, "ID-laptop");
    assert_eq!(t.basic, Some(pidf::Basic::Open));
    assert_eq!(t.show, Some(pidf::Show::Dnd));
    assert_eq!(t.notes[0].text, "in a meeting");
    let c = t.contact.as_ref().expect("contact");
    assert_eq!(c.uri, "sip:alice@localhost;gr=laptop");
    assert_eq!(c.priority.map(|p| p.thousandths()), Some(7));
    assert_eq!(
        sends(&outs)[0].1.dialog.as_ref().map(|d| d.cseq),
        Some(2),
        "CSeq counts up"
    );

    // A burst: one NOTIFY 5 s after the last, the last state winning.
    for (i, show) in ["away", "xa", "chat"].iter().enumerate() {
        h.now += Duration::from_millis(100 * (i as u64 + 1));
        let outs = h.stanza(&format!(
            "<presence xmlns='jabber:component:accept' from='alice@localhost/laptop' to='{CAROL_JID}'><show>{show}</show></presence>"
        ));
        assert!(notifies(&outs).is_empty());
    }
    let deadline = h.gw.poll_timeout().expect("a coalesced NOTIFY is due");
    let outs = h.at(deadline);
    let n = notifies(&outs);
    assert_eq!(n.len(), 1);
    let doc = pidf::parse(n[0].2.as_bytes()).expect("PIDF");
    assert_eq!(doc.tuples[0].show, Some(pidf::Show::Chat));

    // A second resource, then the first goes offline.
    h.now += Duration::from_secs(10);
    let outs = h.stanza(&format!(
        "<presence xmlns='jabber:component:accept' from='alice@localhost/phone' to='{CAROL_JID}'/>"
    ));
    let doc = pidf::parse(notifies(&outs)[0].2.as_bytes()).expect("PIDF");
    assert_eq!(
        doc.tuples.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec!["ID-laptop", "ID-phone"]
    );

    // The admin view.
    let subs = h.gw.subscriptions(h.now);
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].direction, "sip_to_xmpp");
    assert_eq!(subs[0].state, "active");
    assert_eq!(subs[0].call_id.as_deref(), Some("w1"));

    // alice revokes: terminated;reason=rejected, the watcher is gone.
    h.now += Duration::from_secs(10);
    let outs = h.stanza(&format!(
        "<presence xmlns='jabber:component:accept' type='unsubscribed' from='alice@localhost' to='{CAROL_JID}'/>"
    ));
    let n = notifies(&outs);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].1, "terminated;reason=rejected");
    assert!(h.gw.subscriptions(h.now).is_empty());
    assert!(h
        .store
        .tables
        .list(Table::Authorizations)
        .expect("list")
        .is_empty());
}

#[test]
fn watcher_refresh_expiry_fetch_and_errors() {
    let mut h = H::new();
    // A watcher alice approved before: active at once once presence comes.
    h.stanza(&format!(
        "<presence xmlns='jabber:component:accept' type='subscribed' from='alice@localhost' to='{CAROL_JID}'/>"
    ));
    h.stanza(&format!(
        "<presence xmlns='jabber:component:accept' from='alice@localhost/laptop' to='{CAROL_JID}'/>"
    ));
    let (tag, outs) = carol_watches_alice(&mut h, "10", "w2");
    let n = notifies(&outs);
    assert_eq!(n.len(), 1, "{outs:?}");
    assert!(n[0].1.starts_with("active"));
    assert!(
        stanzas(&outs).is_empty(),
        "no subscription request when authorized"
    );

    // Refresh inside the dialog: 200 and a NOTIFY.
    h.now += Duration::from_secs(8);
    let r = request(
        "SUBSCRIBE",
        "sip:stox@127.0.0.1:5060",
        &format!("<{CAROL}>;tag=cw"),
        &format!("<sip:alice@localhost>;tag={tag}"),
        "w2",
    );
    let r = with(
        with(r, "Expires", "10"),
        "Contact",
        "<sip:carol@127.0.0.1:5081>",
    );
    let (code, headers, _, outs) = h.sip(r.clone());
    assert_eq!(code, 200);
    assert_eq!(hdr(&headers, "Expires"), Some("10"));
    let s = sends(&outs);
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[0].1.uri, "sip:carol@127.0.0.1:5081",
        "the new Contact is the target"
    );

    // A UA that never learnt the tag refreshes without it: the same subscription, and the
    // answer carries the tag.
    h.now += Duration::from_secs(1);
    let untagged = request(
        "SUBSCRIBE",
        "sip:alice@localhost",
        &format!("<{CAROL}>;tag=cw"),
        "<sip:alice@localhost>",
        "w2",
    );
    let untagged = with(
        with(untagged, "Expires", "10"),
        "Contact",
        "<sip:carol@127.0.0.1:5081>",
    );
    let (code, _, answered_tag, outs) = h.sip(untagged);
    assert_eq!(code, 200);
    assert_eq!(answered_tag.as_deref(), Some(tag.as_str()));
    assert_eq!(notifies(&outs).len(), 1);
    assert_eq!(h.gw.subscriptions(h.now).len(), 1, "still one subscription");

    // Not refreshed again: terminated;reason=timeout at expiry.
    let outs = h.at(h.now + Duration::from_secs(10));
    let n = notifies(&outs);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].1, "terminated;reason=timeout");
    assert!(h.gw.subscriptions(h.now).is_empty());
    // A refresh of the expired subscription: 481.
    assert_eq!(h.sip(r).0, 481);

    // A fetch (Expires: 0): one final NOTIFY with the state.
    let r = request(
        "SUBSCRIBE",
        "sip:alice@localhost",
        &format!("<{CAROL}>;tag=f"),
        "<sip:alice@localhost>",
        "w3",
    );
    let r = with(
        with(r, "Expires", "0"),
        "Contact",
        "<sip:carol@127.0.0.1:5080>",
    );
    let (code, _, _, outs) = h.sip(r);
    assert_eq!(code, 200);
    let n = notifies(&outs);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].1, "terminated;reason=timeout");
    assert!(n[0].2.contains("ID-laptop"));

    // Request errors.
    let base = || {
        let r = request(
            "SUBSCRIBE",
            "sip:alice@localhost",
            &format!("<{CAROL}>;tag=e"),
            "<sip:alice@localhost>",
            "e1",
        );
        with(r, "Contact", "<sip:carol@127.0.0.1:5080>")
    };
    let mut r = base();
    r.headers.retain(|(k, _)| k != "Event");
    let (code, headers, _, _) = h.sip(r);
    assert_eq!(
        (code, hdr(&headers, "Allow-Events")),
        (489, Some("presence"))
    );
    let (code, _, _, _) = h.sip(with(base(), "Accept", "text/plain"));
    assert_eq!(code, 406);
    let (code, _, _, _) = h.sip(with(base(), "Expires", "soon"));
    assert_eq!(code, 400);
    let mut r = base();
    r.headers.retain(|(k, _)| k != "Contact");
    assert_eq!(h.sip(r).0, 400);
    let mut r = base();
    r.uri = "sips:alice@localhost".into();
    assert_eq!(h.sip(r).0, 416);
    let mut r = base();
    r.uri = "sip:alice@elsewhere.example".into();
    assert_eq!(h.sip(r).0, 403, "not an open relay");

    // A NOTIFY that fails ends the subscription (RFC 6665 §4.2.2).
    let (_, outs) = carol_watches_alice(&mut h, "600", "w4");
    let tx = notifies(&outs)[0].0;
    assert_eq!(h.gw.subscriptions(h.now).len(), 1);
    h.input(Input::SipResponse {
        tx,
        result: Err(SendFailure::Timeout),
    });
    assert!(h.gw.subscriptions(h.now).is_empty());
}

#[test]
fn min_expires_and_rate_limit() {
    let mut h = H::new();
    let mut s = settings(h.epoch);
    s.presence.min_expires = 60;
    let store = Store::memory();
    h.gw = Gateway::new(s, &store, 3).expect("gateway");
    h.input(Input::LinkUp);
    let r = request(
        "SUBSCRIBE",
        "sip:alice@localhost",
        &format!("<{CAROL}>;tag=m"),
        "<sip:alice@localhost>",
        "m1",
    );
    let r = with(
        with(r, "Expires", "30"),
        "Contact",
        "<sip:carol@127.0.0.1:5080>",
    );
    let (code, headers, _, _) = h.sip(r);
    assert_eq!((code, hdr(&headers, "Min-Expires")), (423, Some("60")));

    // 10 (burst) pass, then 503 with Retry-After; a second later 5 more pass.
    let mut codes = Vec::new();
    for i in 0..12 {
        let r = request(
            "SUBSCRIBE",
            "sip:alice@localhost",
            &format!("<{CAROL}>;tag=r{i}"),
            "<sip:alice@localhost>",
            &format!("r{i}"),
        );
        let r = with(
            with(r, "Expires", "600"),
            "Contact",
            "<sip:carol@127.0.0.1:5080>",
        );
        let (code, headers, _, _) = h.sip(r);
        if code == 503 {
            assert!(hdr(&headers, "Retry-After").is_some());
        }
        codes.push(code);
    }
    // The 423 above took one token.
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 9, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 503).count(), 3);
}

fn publish(etag: Option<&str>, expires: &str, body: Option<Vec<u8>>) -> SipRequest {
    let r = request(
        "PUBLISH",
        "sip:dave@sip.localhost",
        "<sip:dave@sip.localhost>;tag=p",
        "<sip:dave@sip.localhost>",
        "pub1",
    );
    let mut r = with(r, "Expires", expires);
    if let Some(e) = etag {
        r = with(r, "SIP-If-Match", e);
    }
    if let Some(b) = body {
        r = with(r, "Content-Type", "application/pidf+xml");
        r.body = b;
    }
    r
}

const DAVE_PASSWORD: &str = "dave's password";

/// dave, a SIP user of `C` (issue 5: only he may publish for sip:dave@C).
fn add_dave(h: &H) {
    let record = crate::core::SipUserRecord::new("dave", C, DAVE_PASSWORD, 0);
    h.store
        .tables
        .put(
            Table::SipUsers,
            "dave",
            &serde_json::to_vec(&record).expect("json"),
        )
        .expect("put");
}

/// Sends `req` as dave: the 407 challenge, then the request again with his Digest response
/// (RFC 3261 §22.3, SHA-256).
#[allow(clippy::type_complexity)]
fn as_dave(
    h: &mut H,
    req: SipRequest,
) -> (u16, Vec<(String, String)>, Option<String>, Vec<Output>) {
    use stox_sip::digest::{self, Algorithm};
    let (code, headers, _, _) = h.sip(req.clone());
    assert_eq!(code, 407, "challenged first");
    // These settings offer SHA-256 (and MD5); dave's UA takes SHA-256.
    let challenge = headers
        .iter()
        .filter(|(n, _)| n == "Proxy-Authenticate")
        .map(|(_, v)| v.as_str())
        .find(|v| v.contains("algorithm=SHA-256"))
        .expect("a SHA-256 challenge");
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("nonce")
        .to_string();
    let ha1 = digest::ha1(Algorithm::Sha256, "dave", C, DAVE_PASSWORD);
    let response = digest::expected_response(
        Algorithm::Sha256,
        &ha1,
        &nonce,
        &req.method,
        &req.uri,
        Some(("00000001", "c0ffee")),
    );
    let auth = format!(
        "Digest username=\"dave\", realm=\"{C}\", nonce=\"{nonce}\", uri=\"{}\", \
         response=\"{response}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c0ffee\"",
        req.uri
    );
    h.sip(with(req, "Proxy-Authorization", &auth))
}

fn dave_pidf(basic: &str, note: &str) -> Vec<u8> {
    format!(
        "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:dave@sip.localhost'>\
         <tuple id='t1'><status><basic>{basic}</basic></status><note>{note}</note></tuple></presence>"
    )
    .into_bytes()
}

#[test]
fn publish_reaches_xmpp_and_sip_watchers() {
    let mut h = H::new();
    add_dave(&h);
    // alice watches dave@C, a presentity stox serves: approved at once, offline for now.
    let outs = h.stanza(
        "<presence xmlns='jabber:component:accept' type='subscribe' from='alice@localhost' to='dave@sip.localhost'/>",
    );
    assert!(
        sends(&outs).is_empty(),
        "no SUBSCRIBE for a local presentity"
    );
    assert_eq!(
        presences(&outs),
        vec![
            ("subscribed".to_string(), "dave@sip.localhost".to_string()),
            ("unavailable".to_string(), "dave@sip.localhost".to_string()),
        ]
    );
    // carol (SIP) watches dave too: active at once, closed.
    let r = request(
        "SUBSCRIBE",
        "sip:dave@sip.localhost",
        &format!("<{CAROL}>;tag=cd"),
        "<sip:dave@sip.localhost>",
        "cd1",
    );
    let r = with(
        with(r, "Expires", "600"),
        "Contact",
        "<sip:carol@127.0.0.1:5080>",
    );
    let (code, _, _, outs) = h.sip(r);
    assert_eq!(code, 200);
    let n = notifies(&outs);
    assert_eq!(n.len(), 1);
    assert!(n[0].1.starts_with("active"));
    assert!(n[0].2.contains("closed"));

    // dave's phone publishes.
    h.now += Duration::from_secs(10);
    let (code, headers, _, outs) =
        as_dave(&mut h, publish(None, "60", Some(dave_pidf("open", "hi"))));
    assert_eq!(code, 200);
    let etag = hdr(&headers, "SIP-ETag").expect("SIP-ETag").to_string();
    assert_eq!(hdr(&headers, "Expires"), Some("60"));
    assert_eq!(
        presences(&outs),
        vec![("available".to_string(), "dave@sip.localhost/t1".to_string())]
    );
    let n = notifies(&outs);
    assert_eq!(n.len(), 1);
    assert!(n[0].2.contains("<note>hi</note>"), "{}", n[0].2);

    // Refresh (no body): new tag, nothing to tell.
    h.now += Duration::from_secs(10);
    let (code, headers, _, outs) = as_dave(&mut h, publish(Some(&etag), "60", None));
    assert_eq!(code, 200);
    let etag2 = hdr(&headers, "SIP-ETag").expect("SIP-ETag").to_string();
    assert_ne!(etag, etag2);
    assert!(presences(&outs).is_empty() && notifies(&outs).is_empty());
    // The old tag: 412.
    assert_eq!(as_dave(&mut h, publish(Some(&etag), "60", None)).0, 412);
    // Not PIDF: 415; bad PIDF: 400; another package: 489; too short: 423 (min 1 here, so 0
    // without a tag: 400).
    let mut r = publish(None, "60", Some(b"x".to_vec()));
    for (k, v) in r.headers.iter_mut() {
        if k == "Content-Type" {
            *v = "text/plain".into();
        }
    }
    assert_eq!(as_dave(&mut h, r).0, 415);
    assert_eq!(
        as_dave(&mut h, publish(None, "60", Some(b"<presence".to_vec()))).0,
        400
    );
    assert_eq!(as_dave(&mut h, publish(None, "0", None)).0, 400);
    // PUBLISH for an XMPP user: 403.
    let mut r = publish(None, "60", Some(dave_pidf("open", "x")));
    r.uri = "sip:alice@localhost".into();
    assert_eq!(as_dave(&mut h, r).0, 403);
    // Without credentials nothing is published: 407, and a wrong password too.
    assert_eq!(
        h.sip(publish(None, "60", Some(dave_pidf("open", "x")))).0,
        407
    );

    // The publication expires: unavailable and a closed NOTIFY.
    let outs = h.at(h.now + Duration::from_secs(60));
    assert_eq!(
        presences(&outs),
        vec![(
            "unavailable".to_string(),
            "dave@sip.localhost/t1".to_string()
        )]
    );
    let n = notifies(&outs);
    assert_eq!(n.len(), 1);
    assert!(n[0].2.contains("closed"));
    assert!(h
        .store
        .tables
        .list(Table::Published)
        .expect("list")
        .is_empty());
}

#[test]
fn a_restart_keeps_every_subscription() {
    let epoch = Instant::now();
    let store = Store::memory();
    let mut h = H::with_store(store.clone(), epoch, epoch);
    add_dave(&h);
    let (_, sub) = alice_watches_carol(&mut h, "600");
    h.sip(notify(
        &sub,
        "ct",
        "active;expires=600",
        Some(pidf_body("open", "here")),
    ));
    h.stanza(&format!(
        "<presence xmlns='jabber:component:accept' type='subscribed' from='alice@localhost' to='{CAROL_JID}'/>"
    ));
    let (watcher_tag, _) = carol_watches_alice(&mut h, "600", "w9");
    as_dave(
        &mut h,
        publish(None, "600", Some(dave_pidf("open", "kept"))),
    );

    // "kill -9": a new gateway over the same store, 20 s later, link down at first.
    let later = h.secs(20);
    let mut gw = Gateway::new(settings(epoch), &store, 4).expect("gateway");
    gw.restore_presence(later);
    let mut h = H {
        gw,
        store: store.clone(),
        now: later,
        epoch,
        next_tx: 100,
    };
    let subs = h.gw.subscriptions(h.now);
    assert_eq!(subs.len(), 2, "{subs:?}");
    // The link comes up: alice gets carol's last known presence again (from the store),
    // and alice is probed for carol's watcher.
    let outs = h.input(Input::LinkUp);
    assert_eq!(
        presences(&outs),
        vec![
            ("available".to_string(), format!("{CAROL_JID}/desk")),
            ("probe".to_string(), CAROL_JID.to_string())
        ]
    );
    // The watch refreshes inside its old dialog, CSeq well past the old one.
    let deadline = h.gw.poll_timeout().expect("refresh due");
    let outs = h.at(deadline);
    let s = sends(&outs);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].1.call_id, sub.call_id);
    let d = s[0].1.dialog.as_ref().expect("dialog");
    assert_eq!(d.to_tag.as_deref(), Some("ct"));
    assert!(d.cseq > 2, "CSeq {} continues past the restart", d.cseq);
    // A 481 (carol's phone forgot it) makes a new dialog.
    let outs = h.respond(s[0].0, 481, &[]);
    let s2 = sends(&outs);
    assert_eq!(s2.len(), 1);
    assert_ne!(s2[0].1.call_id, sub.call_id);
    // The probe answer: carol's watcher gets a NOTIFY in the old dialog.
    let outs = h.stanza(&format!(
        "<presence xmlns='jabber:component:accept' from='alice@localhost/laptop' to='{CAROL_JID}'/>"
    ));
    let n = sends(&outs);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].1.method, "NOTIFY");
    assert_eq!(n[0].1.call_id.as_deref(), Some("w9"));
    assert_eq!(
        n[0].1.dialog.as_ref().map(|d| d.from_tag.clone()),
        Some(watcher_tag)
    );
    // dave's publication survived: its refresh works with the stored tag.
    let etags: Vec<String> = store
        .tables
        .list(Table::Published)
        .expect("list")
        .into_iter()
        .map(|(k, _)| k.rsplit('|').next().unwrap_or("").to_string())
        .collect();
    assert_eq!(etags.len(), 1);
    assert_eq!(
        as_dave(&mut h, publish(Some(&etags[0]), "600", None)).0,
        200
    );
}

#[test]
fn presence_waits_for_the_link() {
    let mut h = H::new();
    h.input(Input::LinkDown);
    // A SIP SUBSCRIBE while the link is down: answered, NOTIFY pending, the subscription
    // request held until the link is back.
    let (_, outs) = carol_watches_alice(&mut h, "600", "l1");
    assert!(stanzas(&outs).is_empty());
    assert_eq!(notifies(&outs)[0].1, "pending");
    let outs = h.input(Input::LinkUp);
    let p = presences(&outs);
    assert!(
        p.contains(&("subscribe".to_string(), CAROL_JID.to_string())),
        "{p:?}"
    );
    assert!(tag_of("<sip:a@b>;tag=x").is_some());
}

#[test]
fn notifies_go_back_over_the_websocket_a_watcher_subscribed_on() {
    let mut h = H::new();
    let r = request(
        "SUBSCRIBE",
        "sip:alice@localhost",
        &format!("<{CAROL}>;tag=cw"),
        "<sip:alice@localhost>",
        "ws1",
    );
    let r = with(r, "Expires", "600");
    let mut r = with(r, "Contact", "<sip:k2@c3.invalid;transport=ws>");
    r.transport = Transport::Ws;
    r.source = Some("127.0.0.1:41000".parse().expect("addr"));
    let (code, _, _, outs) = h.sip(r);
    assert_eq!(code, 200);
    let expected = Some(crate::sipmsg::Flow {
        transport: Transport::Ws,
        remote: "127.0.0.1:41000".parse().expect("addr"),
    });
    let sent: Vec<(&OutRequest, Transport)> = outs
        .iter()
        .filter_map(|o| match o {
            Output::SipSend { req, transport, .. } if req.method == "NOTIFY" => {
                Some((req, *transport))
            }
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0.uri, "sip:k2@c3.invalid;transport=ws");
    assert_eq!(sent[0].0.flow, expected);
    assert_eq!(sent[0].1, Transport::Ws);
    // Over UDP no flow is kept.
    let (_, outs) = carol_watches_alice(&mut h, "600", "udp1");
    let flows: Vec<_> = sends(&outs).iter().map(|(_, r)| r.flow).collect();
    assert_eq!(flows, vec![None]);
}

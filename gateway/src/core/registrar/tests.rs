//! The registrar and Digest authentication through `Gateway::handle_input`, under a fake
//! clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use stox_mappings::{Store, Table};
use stox_sip::digest::{self, Algorithm};
use xmpp_parsers::minidom::Element;

use crate::core::{
    CallSettings, Gateway, Input, LocalContacts, Output, PresenceSettings, RegistrarSettings,
    SendFailure, Settings, SipUserRecord, TxId,
};
use crate::sipmsg::{OutRequest, SipRequest, SipResponse, Transport};

const C: &str = "sip.localhost";
const PW: &str = "dave's password";

fn settings(epoch: Instant) -> Settings {
    Settings {
        accounts: Default::default(),
        home: "localhost".into(),
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
        presence: PresenceSettings::default(),
        contacts: LocalContacts::default(),
        registrar: RegistrarSettings {
            nonce_secret: [5; 32],
            digest_algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            ..RegistrarSettings::default()
        },
    }
}

struct H {
    gw: Gateway,
    store: Store,
    now: Instant,
    next_tx: TxId,
}

type Reply = (u16, Vec<(String, String)>, Vec<Output>);

impl H {
    fn new() -> H {
        H::with_store(Store::memory())
    }

    fn with_store(store: Store) -> H {
        let now = Instant::now();
        let mut gw = Gateway::new(settings(now), &store, 9).expect("gateway");
        gw.restore_registrar(now);
        let mut h = H {
            gw,
            store,
            now,
            next_tx: 1,
        };
        h.input(Input::LinkUp);
        h.user("dave", PW);
        h
    }

    fn user(&self, user: &str, pw: &str) {
        let r = SipUserRecord::new(user, C, pw, 0);
        self.store
            .tables
            .put(
                Table::SipUsers,
                user,
                &serde_json::to_vec(&r).expect("json"),
            )
            .expect("put");
    }

    fn input(&mut self, i: Input) -> Vec<Output> {
        self.gw.handle_input(self.now, i);
        let mut v = Vec::new();
        while let Some(o) = self.gw.poll_output() {
            v.push(o);
        }
        v
    }

    fn sip(&mut self, req: SipRequest) -> Reply {
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
                    ..
                } if t == tx => reply = Some((code, headers)),
                o => rest.push(o),
            }
        }
        let (code, headers) = reply.expect("answered at once");
        (code, headers, rest)
    }

    fn at(&mut self, t: Instant) -> Vec<Output> {
        self.now = t;
        self.gw.handle_timeout(t);
        let mut v = Vec::new();
        while let Some(o) = self.gw.poll_output() {
            v.push(o);
        }
        v
    }
}

fn hdrs<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn register(contact: &str, expires: Option<&str>, call_id: &str, cseq: u32) -> SipRequest {
    let mut headers = vec![
        (
            "Via".to_string(),
            "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKr".to_string(),
        ),
        ("From".into(), format!("<sip:dave@{C}>;tag=r1")),
        ("To".into(), format!("<sip:dave@{C}>")),
        ("Call-ID".into(), call_id.into()),
        ("CSeq".into(), format!("{cseq} REGISTER")),
        ("Contact".into(), contact.into()),
    ];
    if let Some(e) = expires {
        headers.push(("Expires".into(), e.into()));
    }
    SipRequest {
        method: "REGISTER".into(),
        uri: format!("sip:{C}"),
        headers,
        body: vec![],
        transport: Transport::Udp,
        source: Some("127.0.0.1:5062".parse::<SocketAddr>().expect("addr")),
    }
}

fn nonce_of(challenge: &str) -> String {
    challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a nonce")
        .to_string()
}

/// `req` with Digest credentials (`header`) answering `challenge`.
fn answer(
    mut req: SipRequest,
    header: &str,
    challenge: &str,
    alg: Algorithm,
    user: &str,
    pw: &str,
) -> SipRequest {
    let nonce = nonce_of(challenge);
    let ha1 = digest::ha1(alg, user, C, pw);
    let response = digest::expected_response(
        alg,
        &ha1,
        &nonce,
        &req.method,
        &req.uri,
        Some(("00000001", "abcd")),
    );
    req.headers.push((
        header.into(),
        format!(
            "Digest username=\"{user}\", realm=\"{C}\", nonce=\"{nonce}\", uri=\"{}\", \
             response=\"{response}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"abcd\"",
            req.uri,
            alg.name()
        ),
    ));
    req
}

/// REGISTER as dave with SHA-256 after the 401.
fn registered(h: &mut H, req: SipRequest) -> Reply {
    let (code, headers, _) = h.sip(req.clone());
    assert_eq!(code, 401);
    let ch = hdrs(&headers, "WWW-Authenticate")[0].to_string();
    h.sip(answer(
        req,
        "Authorization",
        &ch,
        Algorithm::Sha256,
        "dave",
        PW,
    ))
}

#[test]
fn register_is_challenged_then_bound() {
    let mut h = H::new();
    let req = register("<sip:dave@127.0.0.1:5062>", Some("600"), "c1", 1);
    let (code, headers, _) = h.sip(req.clone());
    // RFC 8760 §2.4: a challenge per algorithm, the preferred first.
    assert_eq!(code, 401);
    let challenges = hdrs(&headers, "WWW-Authenticate");
    assert_eq!(challenges.len(), 2);
    assert!(
        challenges[0].contains("algorithm=SHA-256")
            && challenges[0].contains("realm=\"sip.localhost\"")
    );
    assert!(challenges[1].contains("algorithm=MD5"));
    assert!(challenges[0].contains("qop=\"auth\""));
    for (alg, ch) in [
        (Algorithm::Sha256, challenges[0]),
        (Algorithm::Md5, challenges[1]),
    ] {
        let mut r = req.clone();
        r.headers.retain(|(n, _)| n != "CSeq");
        r.headers.push((
            "CSeq".into(),
            if alg == Algorithm::Md5 {
                "3 REGISTER"
            } else {
                "2 REGISTER"
            }
            .into(),
        ));
        let (code, headers, _) = h.sip(answer(r, "Authorization", ch, alg, "dave", PW));
        assert_eq!(code, 200, "{alg:?}");
        assert_eq!(
            hdrs(&headers, "Contact"),
            vec!["<sip:dave@127.0.0.1:5062>;expires=600"]
        );
    }
    // The binding is in the store.
    let rows = h.store.tables.list(Table::Bindings).expect("list");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "sip:dave@sip.localhost|sip:dave@127.0.0.1:5062");
}

#[test]
fn wrong_passwords_are_refused_then_the_address_is_blocked() {
    let mut h = H::new();
    let req = register("<sip:dave@127.0.0.1:5062>", Some("600"), "c1", 1);
    for i in 0..5 {
        let (code, headers, _) = h.sip(req.clone());
        assert_eq!(code, 401, "attempt {i}");
        let ch = hdrs(&headers, "WWW-Authenticate")[0].to_string();
        let (code, _, _) = h.sip(answer(
            req.clone(),
            "Authorization",
            &ch,
            Algorithm::Sha256,
            "dave",
            "guess",
        ));
        if i < 4 {
            assert_eq!(code, 401, "attempt {i}");
        } else {
            assert_eq!(code, 401, "the failure that blocks is still a challenge");
        }
    }
    // Blocked: 403 with Retry-After, even with the right password.
    let (code, headers, _) = h.sip(req.clone());
    assert_eq!(code, 403);
    assert!(!hdrs(&headers, "Retry-After").is_empty());
    // After the block, the right password works.
    h.now += Duration::from_secs(61);
    let (code, _, _) = registered(
        &mut h,
        register("<sip:dave@127.0.0.1:5062>", Some("600"), "c1", 9),
    );
    assert_eq!(code, 200);
    // A user that does not exist is challenged like one that does (no enumeration).
    let mut r = register("<sip:erin@127.0.0.1:5062>", Some("600"), "e1", 1);
    for (n, v) in r.headers.iter_mut() {
        if n == "To" || n == "From" {
            *v = format!("<sip:erin@{C}>");
        }
    }
    let (code, headers, _) = h.sip(r.clone());
    assert_eq!(code, 401);
    let ch = hdrs(&headers, "WWW-Authenticate")[0].to_string();
    let (code, _, _) = h.sip(answer(
        r,
        "Authorization",
        &ch,
        Algorithm::Sha256,
        "erin",
        "whatever",
    ));
    assert_eq!(code, 401);
}

#[test]
fn register_rules_of_rfc3261_10_3() {
    let mut h = H::new();
    // Another domain's registrations: 403 without a challenge.
    let mut r = register("<sip:dave@127.0.0.1:5062>", Some("600"), "c1", 1);
    r.uri = "sip:pbx.example".into();
    assert_eq!(h.sip(r).0, 403);
    // dave registering erin's AOR: 403 after authentication.
    h.user("erin", "erin's password");
    let mut r = register("<sip:dave@127.0.0.1:5062>", Some("600"), "c1", 1);
    for (n, v) in r.headers.iter_mut() {
        if n == "To" {
            *v = format!("<sip:erin@{C}>");
        }
    }
    let (code, headers, _) = h.sip(r.clone());
    assert_eq!(code, 401);
    let ch = hdrs(&headers, "WWW-Authenticate")[0].to_string();
    assert_eq!(
        h.sip(answer(
            r,
            "Authorization",
            &ch,
            Algorithm::Sha256,
            "dave",
            PW
        ))
        .0,
        403
    );
    // Too short: 423 with Min-Expires.
    let (code, headers, _) = registered(
        &mut h,
        register("<sip:dave@127.0.0.1:5062>", Some("30"), "c1", 2),
    );
    assert_eq!(code, 423);
    assert_eq!(hdrs(&headers, "Min-Expires"), vec!["60"]);
    // Two contacts, one with its own expires (after a quoted `>`, as baresip writes its
    // +sip.instance), the other longer than the maximum.
    let mut r = register(
        "<sip:dave@127.0.0.1:5062>;+sip.instance=\"<urn:uuid:1cd1>\";expires=120",
        Some("99999"),
        "c1",
        3,
    );
    r.headers.push((
        "Contact".into(),
        "<sip:dave@127.0.0.1:5064;transport=tcp>".into(),
    ));
    let (code, headers, _) = registered(&mut h, r);
    assert_eq!(code, 200);
    let mut contacts = hdrs(&headers, "Contact");
    contacts.sort();
    assert_eq!(
        contacts,
        vec![
            "<sip:dave@127.0.0.1:5062>;expires=120",
            "<sip:dave@127.0.0.1:5064;transport=tcp>;expires=3600"
        ]
    );
    // Same Call-ID, older CSeq: out of order, 500.
    let (code, _, _) = registered(
        &mut h,
        register("<sip:dave@127.0.0.1:5062>", Some("600"), "c1", 2),
    );
    assert_eq!(code, 500);
    // Expires 0 removes one; the 200 lists the other.
    let (code, headers, _) = registered(
        &mut h,
        register("<sip:dave@127.0.0.1:5062>", Some("0"), "c1", 4),
    );
    assert_eq!(code, 200);
    assert_eq!(
        hdrs(&headers, "Contact"),
        vec!["<sip:dave@127.0.0.1:5064;transport=tcp>;expires=3600"]
    );
    // `*` needs Expires: 0.
    let (code, _, _) = registered(&mut h, register("*", Some("60"), "c1", 5));
    assert_eq!(code, 400);
    let (code, headers, _) = registered(&mut h, register("*", Some("0"), "c1", 6));
    assert_eq!(code, 200);
    assert!(hdrs(&headers, "Contact").is_empty());
    assert!(h
        .store
        .tables
        .list(Table::Bindings)
        .expect("list")
        .is_empty());
    // A fetch (no Contact) lists the bindings.
    let mut r = register("x", None, "c1", 7);
    r.headers.retain(|(n, _)| n != "Contact");
    assert_eq!(registered(&mut h, r).0, 200);
}

#[test]
fn bindings_expire_and_survive_a_restart() {
    let store = Store::memory();
    let mut h = H::with_store(store.clone());
    let (code, _, _) = registered(
        &mut h,
        register("<sip:dave@127.0.0.1:5062>", Some("100"), "c1", 1),
    );
    assert_eq!(code, 200);
    // A new process over the same store finds the binding.
    let mut h2 = H::with_store(store.clone());
    h2.now = h.now + Duration::from_secs(10);
    let mut r = register("x", None, "c1", 2);
    r.headers.retain(|(n, _)| n != "Contact");
    let (code, headers, _) = registered(&mut h2, r);
    assert_eq!(code, 200);
    let c = hdrs(&headers, "Contact");
    assert_eq!(c.len(), 1);
    assert!(
        c[0].starts_with("<sip:dave@127.0.0.1:5062>;expires="),
        "{c:?}"
    );
    // It expires.
    let t = h2.gw.poll_timeout().expect("the expiry is due");
    h2.at(t);
    assert!(store.tables.list(Table::Bindings).expect("list").is_empty());
}

#[test]
fn stale_nonces_are_challenged_again() {
    let mut h = H::new();
    let req = register("<sip:dave@127.0.0.1:5062>", Some("600"), "c1", 1);
    let (_, headers, _) = h.sip(req.clone());
    let ch = hdrs(&headers, "WWW-Authenticate")[0].to_string();
    h.now += Duration::from_secs(301);
    let (code, headers, _) = h.sip(answer(
        req,
        "Authorization",
        &ch,
        Algorithm::Sha256,
        "dave",
        PW,
    ));
    assert_eq!(code, 401);
    assert!(hdrs(&headers, "WWW-Authenticate")[0].contains("stale=true"));
}

fn message_to(jid: &str, id: &str, body: &str) -> Element {
    format!(
        "<message xmlns='jabber:component:accept' from='alice@localhost/laptop' to='{jid}' id='{id}' type='chat'><body>{body}</body></message>"
    )
    .parse()
    .expect("stanza")
}

fn sends(outs: &[Output]) -> Vec<(TxId, &OutRequest)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::SipSend { tx, req, .. } => Some((*tx, req)),
            _ => None,
        })
        .collect()
}

fn errors(outs: &[Output]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Stanza(s) if s.attr("type") == Some("error") => Some(
                s.get_child("error", crate::stanza::NS_STANZA)
                    .and_then(|e| e.children().next())
                    .map(|c| c.name().to_string())
                    .unwrap_or_default(),
            ),
            _ => None,
        })
        .collect()
}

#[test]
fn messages_wait_for_registration_then_fork_to_every_contact() {
    let mut h = H::new();
    // No binding: held, nothing sent, no error.
    for (id, body) in [("m1", "first"), ("m2", "second")] {
        let outs = h.input(Input::Stanza(message_to("dave@sip.localhost", id, body)));
        assert!(
            sends(&outs).is_empty() && errors(&outs).is_empty(),
            "{outs:?}"
        );
    }
    assert_eq!(h.store.tables.list(Table::Held).expect("list").len(), 2);
    // Unknown user: item-not-found.
    let outs = h.input(Input::Stanza(message_to("erin@sip.localhost", "m0", "x")));
    assert_eq!(errors(&outs), vec!["item-not-found"]);
    // dave registers: the two come out in order, to his contact.
    let (code, _, outs) = registered(
        &mut h,
        register("<sip:dave@127.0.0.1:5062>", Some("600"), "c1", 1),
    );
    assert_eq!(code, 200);
    let s = sends(&outs);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].1.uri, "sip:dave@127.0.0.1:5062");
    assert_eq!(s[0].1.to, "sip:dave@sip.localhost");
    assert_eq!(s[0].1.body, b"first");
    assert_eq!(s[1].1.body, b"second");
    assert!(h.store.tables.list(Table::Held).expect("list").is_empty());

    // A second contact: a message goes to both; one 200 is enough.
    let (code, _, _) = registered(
        &mut h,
        register("<sip:dave@127.0.0.1:5064>", Some("600"), "c2", 1),
    );
    assert_eq!(code, 200);
    let outs = h.input(Input::Stanza(message_to(
        "dave@sip.localhost",
        "m3",
        "both",
    )));
    let s: Vec<(TxId, String)> = sends(&outs)
        .iter()
        .map(|(t, r)| (*t, r.uri.clone()))
        .collect();
    assert_eq!(s.len(), 2);
    let mut uris: Vec<&str> = s.iter().map(|(_, u)| u.as_str()).collect();
    uris.sort();
    assert_eq!(
        uris,
        vec!["sip:dave@127.0.0.1:5062", "sip:dave@127.0.0.1:5064"]
    );
    let outs = h.input(Input::SipResponse {
        tx: s[0].0,
        result: Ok(SipResponse::new(480, "Temporarily Unavailable")),
    });
    assert!(
        errors(&outs).is_empty(),
        "one fork failed, the other is still out"
    );
    let outs = h.input(Input::SipResponse {
        tx: s[1].0,
        result: Ok(SipResponse::new(200, "OK")),
    });
    assert!(errors(&outs).is_empty());
    // Every fork fails: one error, the last failure's.
    let outs = h.input(Input::Stanza(message_to(
        "dave@sip.localhost",
        "m4",
        "none",
    )));
    let s: Vec<TxId> = sends(&outs).iter().map(|(t, _)| *t).collect();
    let outs = h.input(Input::SipResponse {
        tx: s[0],
        result: Err(SendFailure::Timeout),
    });
    assert!(errors(&outs).is_empty());
    let outs = h.input(Input::SipResponse {
        tx: s[1],
        result: Ok(SipResponse::new(486, "Busy Here")),
    });
    assert_eq!(errors(&outs), vec!["recipient-unavailable"]);
}

fn message_from_dave(body: &str) -> SipRequest {
    SipRequest {
        method: "MESSAGE".into(),
        uri: "sip:alice@localhost".into(),
        headers: vec![
            (
                "Via".into(),
                "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKm".into(),
            ),
            ("From".into(), format!("<sip:dave@{C}>;tag=m1")),
            ("To".into(), "<sip:alice@localhost>".into()),
            ("Call-ID".into(), "m-1".into()),
            ("CSeq".into(), "1 MESSAGE".into()),
            ("Content-Type".into(), "text/plain".into()),
        ],
        body: body.as_bytes().to_vec(),
        transport: Transport::Udp,
        source: Some("127.0.0.1:5062".parse::<SocketAddr>().expect("addr")),
    }
}

#[test]
fn sip_users_of_c_must_authenticate_to_speak() {
    let mut h = H::new();
    let req = message_from_dave("hi alice");
    let (code, headers, outs) = h.sip(req.clone());
    assert_eq!(code, 407, "a proxy challenge");
    assert!(
        outs.iter().all(|o| !matches!(o, Output::Stanza(_))),
        "nothing reached XMPP"
    );
    let ch = hdrs(&headers, "Proxy-Authenticate")[0].to_string();
    // Someone else's credentials for dave's From: 403.
    h.user("erin", "erin's password");
    let (code, _, _) = h.sip(answer(
        req.clone(),
        "Proxy-Authorization",
        &ch,
        Algorithm::Sha256,
        "erin",
        "erin's password",
    ));
    assert_eq!(code, 403);
    // dave's own: the message goes to alice from dave@sip.localhost.
    let tx = h.next_tx;
    h.next_tx += 1;
    let outs = h.input(Input::SipRequest {
        tx,
        req: answer(req, "Proxy-Authorization", &ch, Algorithm::Md5, "dave", PW),
    });
    let stanza = outs
        .iter()
        .find_map(|o| match o {
            Output::Stanza(s) => Some(s),
            _ => None,
        })
        .expect("a message");
    assert_eq!(stanza.attr("from"), Some("dave@sip.localhost"));
    assert_eq!(stanza.attr("to"), Some("alice@localhost"));
}

/// RFC 3261 §8.3: a SIP INVITE for a SIP user of `C` is redirected to his bindings
/// (302 with a Contact each, `expires` counting down); with none, 480; any other
/// Request-URI is not stox's to redirect.
#[test]
fn sip_invites_for_users_of_c_are_redirected_to_their_contacts() {
    let mut h = H::new();
    let invite = |uri: &str| SipRequest {
        method: "INVITE".into(),
        uri: uri.into(),
        headers: vec![
            ("From".into(), "<sip:carol@127.0.0.1:5070>;tag=c1".into()),
            ("To".into(), format!("<{uri}>")),
            ("Call-ID".into(), "inv1".into()),
            ("CSeq".into(), "1 INVITE".into()),
        ],
        body: vec![],
        transport: Transport::Udp,
        source: None,
    };
    let now = h.now;
    let dave = format!("sip:dave@{C}");
    let (code, headers) = h.gw.redirect_invite(now, &invite(&dave)).expect("ours");
    assert_eq!(code, 480);
    assert!(hdrs(&headers, "Warning")[0].contains("not registered"));
    h.user("dave", PW);
    let r = registered(
        &mut h,
        register("<sip:dave@127.0.0.1:5062>", Some("600"), "c1", 1),
    );
    assert_eq!(r.0, 200);
    let r = registered(
        &mut h,
        register("<sip:dave@127.0.0.1:5064>;q=0.5", Some("300"), "c2", 1),
    );
    assert_eq!(r.0, 200);
    // A WebSocket client's contact (RFC 7118 §5) cannot be called directly: not listed.
    let r = registered(
        &mut h,
        register(
            "<sip:x1y2@df7jal23ls0d.invalid;transport=ws>",
            Some("600"),
            "c3",
            1,
        ),
    );
    assert_eq!(r.0, 200);
    let (code, headers) = h.gw.redirect_invite(now, &invite(&dave)).expect("ours");
    assert_eq!(code, 302);
    let mut contacts = hdrs(&headers, "Contact");
    contacts.sort();
    assert_eq!(
        contacts,
        [
            "<sip:dave@127.0.0.1:5062>;expires=600",
            "<sip:dave@127.0.0.1:5064>;q=0.5;expires=300"
        ]
    );
    let later = now + Duration::from_secs(100);
    let (_, headers) = h.gw.redirect_invite(later, &invite(&dave)).expect("ours");
    assert!(hdrs(&headers, "Contact")
        .iter()
        .any(|c| c.ends_with("expires=500")));
    for other in [
        "sip:alice@localhost",
        "sip:bob@127.0.0.1:5099",
        "sip:x%40y.example@sip.localhost",
    ] {
        assert_eq!(h.gw.redirect_invite(now, &invite(other)), None, "{other}");
    }
}

/// A REGISTER from JsSIP over WebSocket (RFC 7118): `.invalid` contact, outbound
/// (RFC 5626 §4.2), one Via.
fn ws_register(contact_user: &str, remote: &str, reg_id: u32) -> SipRequest {
    let mut req = register(
        &format!(
            "<sip:{contact_user}@x1.invalid;transport=ws>;+sip.ice;reg-id={reg_id};\
             +sip.instance=\"<urn:uuid:0f1e>\";expires=600"
        ),
        None,
        &format!("ws-{contact_user}"),
        1,
    );
    req.headers[0].1 = "SIP/2.0/WSS x1.invalid;branch=z9hG4bKw;received=127.0.0.1".into();
    req.headers
        .push(("Supported".into(), "path, gruu, outbound".into()));
    req.transport = Transport::Ws;
    req.source = Some(remote.parse().expect("addr"));
    req
}

#[test]
fn outbound_registration_over_websocket_keeps_its_flow() {
    let mut h = H::new();
    let (code, headers, _) = registered(&mut h, ws_register("u1", "127.0.0.1:40001", 1));
    assert_eq!(code, 200);
    // RFC 5626 §6: stox is the first hop and the registrar.
    assert_eq!(hdrs(&headers, "Require"), vec!["outbound"]);
    assert_eq!(hdrs(&headers, "Flow-Timer"), vec!["120"]);
    let contacts = hdrs(&headers, "Contact");
    assert_eq!(contacts.len(), 1);
    assert!(
        contacts[0].starts_with("<sip:u1@x1.invalid;transport=ws>;expires=600")
            && contacts[0].contains("+sip.instance=\"<urn:uuid:0f1e>\";reg-id=1"),
        "{contacts:?}"
    );

    // A message from XMPP goes to that contact over that WebSocket connection.
    let outs = h.input(Input::Stanza(message_to("dave@sip.localhost", "m1", "hi")));
    let sent: Vec<(&OutRequest, Transport)> = outs
        .iter()
        .filter_map(|o| match o {
            Output::SipSend { req, transport, .. } => Some((req, *transport)),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0.uri, "sip:u1@x1.invalid;transport=ws");
    assert_eq!(sent[0].1, Transport::Ws);
    assert_eq!(
        sent[0].0.flow,
        Some(crate::sipmsg::Flow {
            transport: Transport::Ws,
            remote: "127.0.0.1:40001".parse().expect("addr"),
        })
    );

    // The same instance and reg-id from a new connection (and a new contact URI) replaces
    // the binding: one contact, the new flow.
    let (code, headers, _) = registered(&mut h, ws_register("u2", "127.0.0.1:40002", 1));
    assert_eq!(code, 200);
    let contacts = hdrs(&headers, "Contact");
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert!(contacts[0].starts_with("<sip:u2@"), "{contacts:?}");
    let outs = h.input(Input::Stanza(message_to("dave@sip.localhost", "m2", "hi")));
    let flows: Vec<_> = sends(&outs).iter().map(|(_, r)| r.flow).collect();
    assert_eq!(flows.len(), 1);
    assert_eq!(
        flows[0].map(|f| f.remote),
        Some("127.0.0.1:40002".parse().expect("addr"))
    );

    // The flow survives a restart in the store (the io layer then finds no connection for
    // it, and a WebSocket contact is not tried at its `.invalid` host).
    let mut h2 = H::with_store(h.store.clone());
    let outs = h2.input(Input::Stanza(message_to("dave@sip.localhost", "m3", "hi")));
    let flows: Vec<_> = sends(&outs).iter().map(|(_, r)| r.flow).collect();
    assert_eq!(
        flows,
        vec![Some(crate::sipmsg::Flow {
            transport: Transport::Ws,
            remote: "127.0.0.1:40002".parse().expect("addr"),
        })]
    );
}

#[test]
fn outbound_needs_a_stream_first_hop_and_supported_outbound() {
    // Through a proxy (two Vias): no outbound, no flow timer (RFC 5626 §6).
    let mut h = H::new();
    let mut req = ws_register("u1", "127.0.0.1:40001", 1);
    req.headers.insert(
        0,
        (
            "Via".into(),
            "SIP/2.0/TCP 127.0.0.9:5060;branch=z9hG4bKp".into(),
        ),
    );
    let (code, headers, _) = registered(&mut h, req);
    assert_eq!(code, 200);
    assert!(hdrs(&headers, "Require").is_empty());
    assert!(hdrs(&headers, "Flow-Timer").is_empty());

    // Without `Supported: outbound`: a plain binding.
    let mut h = H::new();
    let mut req = ws_register("u1", "127.0.0.1:40001", 1);
    req.headers.retain(|(n, _)| n != "Supported");
    let (code, headers, _) = registered(&mut h, req);
    assert_eq!(code, 200);
    assert!(hdrs(&headers, "Require").is_empty());
    assert!(!hdrs(&headers, "Contact")[0].contains("reg-id"));

    // Over UDP: no flow is kept (a UDP "flow" is its source address, the contact is used).
    let mut h = H::new();
    let (code, _, _) = registered(
        &mut h,
        register("<sip:dave@127.0.0.1:5062>", Some("600"), "c1", 1),
    );
    assert_eq!(code, 200);
    let outs = h.input(Input::Stanza(message_to("dave@sip.localhost", "m1", "hi")));
    let flows: Vec<_> = sends(&outs).iter().map(|(_, r)| r.flow).collect();
    assert_eq!(flows, vec![None]);
}

/// A MESSAGE from a foreign SIP user to dave (relayed to his contacts, RFC 3261 §16).
fn message_to_dave(body: &str) -> SipRequest {
    SipRequest {
        method: "MESSAGE".into(),
        uri: format!("sip:dave@{C}"),
        headers: vec![
            (
                "Via".into(),
                "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKc".into(),
            ),
            ("From".into(), "<sip:carol@127.0.0.1:5070>;tag=c1".into()),
            ("To".into(), format!("<sip:dave@{C}>")),
            ("Call-ID".into(), format!("c-{body}")),
            ("CSeq".into(), "1 MESSAGE".into()),
            ("Content-Type".into(), "text/plain".into()),
        ],
        body: body.as_bytes().to_vec(),
        transport: Transport::Udp,
        source: Some("127.0.0.1:5070".parse::<SocketAddr>().expect("addr")),
    }
}

fn flow(remote: &str) -> crate::sipmsg::Flow {
    crate::sipmsg::Flow {
        transport: Transport::Ws,
        remote: remote.parse().expect("addr"),
    }
}

/// The final reply to server transaction `tx` among `outs`.
fn reply_to(outs: &[Output], tx: TxId) -> Option<(u16, Vec<(String, String)>)> {
    outs.iter().find_map(|o| match o {
        Output::SipReply {
            tx: t,
            code,
            headers,
            ..
        } if *t == tx => Some((*code, headers.clone())),
        _ => None,
    })
}

#[test]
fn a_failed_flow_is_a_430_inside_and_a_480_to_the_sender() {
    let mut h = H::new();
    let (code, _, _) = registered(&mut h, ws_register("u1", "127.0.0.1:40001", 1));
    assert_eq!(code, 200);
    // A MESSAGE from carol is relayed over dave's WebSocket, over it only.
    let tx = h.next_tx;
    h.next_tx += 1;
    let outs = h.input(Input::SipRequest {
        tx,
        req: message_to_dave("hello"),
    });
    let s = sends(&outs);
    assert_eq!(s.len(), 1, "{outs:?}");
    assert_eq!(s[0].1.flow, Some(flow("127.0.0.1:40001")));
    assert!(
        s[0].1.flow_only,
        "an outbound binding is reached over its flow only"
    );
    // The connection is gone: the edge proxy's 430 (RFC 5626 §5.3). stox is the
    // authoritative proxy too; the sender, an endpoint, gets 480 (RFC 5626 §11).
    let outs = h.input(Input::SipResponse {
        tx: s[0].0,
        result: Err(SendFailure::FlowFailed("closed".into())),
    });
    let (code, headers) = reply_to(&outs, tx).expect("answered");
    assert_eq!(code, 480);
    let warning = hdrs(&headers, "Warning").join(" ");
    assert!(warning.contains("430 Flow Failed"), "{warning}");
    // RFC 5626 §7: the binding is gone, in memory and in the store.
    assert!(h
        .store
        .tables
        .list(Table::Bindings)
        .expect("list")
        .is_empty());
    let (code, _, outs) = h.sip(message_to_dave("again"));
    assert_eq!(code, 480, "no binding left");
    assert!(sends(&outs).is_empty());
}

#[test]
fn an_xmpp_message_whose_flow_failed_waits_for_the_next_registration() {
    let mut h = H::new();
    let (code, _, _) = registered(&mut h, ws_register("u1", "127.0.0.1:40001", 1));
    assert_eq!(code, 200);
    let outs = h.input(Input::Stanza(message_to("dave@sip.localhost", "m1", "hi")));
    let s = sends(&outs);
    assert_eq!(s.len(), 1);
    let outs = h.input(Input::SipResponse {
        tx: s[0].0,
        result: Err(SendFailure::FlowFailed("closed".into())),
    });
    // No binding any more (RFC 5626 §7): held like any message for an unregistered user,
    // no error to alice.
    assert!(errors(&outs).is_empty(), "{outs:?}");
    assert!(sends(&outs).is_empty(), "{outs:?}");
    assert_eq!(h.store.tables.list(Table::Held).expect("list").len(), 1);
    // dave's browser comes back over a new WebSocket: the message goes there.
    let (code, _, outs) = registered(&mut h, ws_register("u2", "127.0.0.1:40002", 1));
    assert_eq!(code, 200);
    let s = sends(&outs);
    assert_eq!(s.len(), 1, "{outs:?}");
    assert_eq!(s[0].1.body, b"hi");
    assert_eq!(s[0].1.flow, Some(flow("127.0.0.1:40002")));
    assert!(h.store.tables.list(Table::Held).expect("list").is_empty());

    // A failure that is not the flow's is still reported.
    let outs = h.input(Input::Stanza(message_to("dave@sip.localhost", "m2", "x")));
    let s = sends(&outs);
    let outs = h.input(Input::SipResponse {
        tx: s[0].0,
        result: Ok(SipResponse::new(486, "Busy Here")),
    });
    assert_eq!(errors(&outs), vec!["recipient-unavailable"]);
}

#[test]
fn one_flow_per_instance_at_a_time_the_next_after_430() {
    let mut h = H::new();
    // One UA instance registered over two flows (reg-id 1 and 2, RFC 5626 §4.2), and a
    // UDP phone.
    let (code, _, _) = registered(&mut h, ws_register("u1", "127.0.0.1:40001", 1));
    assert_eq!(code, 200);
    h.now += Duration::from_secs(1);
    let (code, _, _) = registered(&mut h, ws_register("u2", "127.0.0.1:40002", 2));
    assert_eq!(code, 200);
    let (code, _, _) = registered(
        &mut h,
        register("<sip:dave@127.0.0.1:5062>", Some("300"), "c1", 1),
    );
    assert_eq!(code, 200);
    // RFC 5626 §7: one target per instance; the UDP phone is another.
    let tx = h.next_tx;
    h.next_tx += 1;
    let outs = h.input(Input::SipRequest {
        tx,
        req: message_to_dave("m"),
    });
    let s = sends(&outs);
    assert_eq!(s.len(), 2, "{outs:?}");
    let ws: Vec<_> = s.iter().filter(|(_, r)| r.flow.is_some()).collect();
    assert_eq!(ws.len(), 1, "one flow of the instance: {s:?}");
    let first = ws[0].1.flow.expect("flow");
    let udp = s.iter().find(|(_, r)| r.flow.is_none()).expect("udp").0;
    // The phone is busy; the instance's first flow failed: its other flow takes it.
    let outs = h.input(Input::SipResponse {
        tx: udp,
        result: Ok(SipResponse::new(486, "Busy Here")),
    });
    assert!(reply_to(&outs, tx).is_none());
    let outs = h.input(Input::SipResponse {
        tx: ws[0].0,
        result: Err(SendFailure::FlowFailed("closed".into())),
    });
    assert!(reply_to(&outs, tx).is_none(), "not answered yet: {outs:?}");
    let s = sends(&outs);
    assert_eq!(s.len(), 1, "{outs:?}");
    let second = s[0].1.flow.expect("flow");
    assert_ne!(first, second);
    assert!(s[0].1.flow_only);
    let outs = h.input(Input::SipResponse {
        tx: s[0].0,
        result: Ok(SipResponse::new(200, "OK")),
    });
    assert_eq!(reply_to(&outs, tx).map(|r| r.0), Some(200));
    // The failed flow's binding is gone, the other two stay.
    let left: Vec<String> = h
        .store
        .tables
        .list(Table::Bindings)
        .expect("list")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");

    // A branch that fails otherwise (not 430/408) is not retried on the other flow
    // (RFC 5626 §7), and the sender gets that failure.
    let (code, _, outs) = registered(&mut h, ws_register("u3", "127.0.0.1:40003", 1));
    assert_eq!(code, 200);
    drop(outs);
    let tx = h.next_tx;
    h.next_tx += 1;
    let outs = h.input(Input::SipRequest {
        tx,
        req: message_to_dave("n"),
    });
    let branches: Vec<(TxId, bool)> = sends(&outs)
        .iter()
        .map(|(t, r)| (*t, r.flow.is_some()))
        .collect();
    assert_eq!(branches.len(), 2, "{outs:?}");
    for (t, over_flow) in branches {
        let result = if over_flow {
            Ok(SipResponse::new(603, "Decline"))
        } else {
            Ok(SipResponse::new(486, "Busy Here"))
        };
        let o = h.input(Input::SipResponse { tx: t, result });
        assert!(sends(&o).is_empty(), "no retry after 603 or 486: {o:?}");
        if let Some((code, _)) = reply_to(&o, tx) {
            assert!(code == 603 || code == 486, "{code}");
        }
    }
}

#[test]
fn a_closed_connection_invalidates_the_bindings_tied_to_it() {
    let mut h = H::new();
    let (code, _, _) = registered(&mut h, ws_register("u1", "127.0.0.1:40001", 1));
    assert_eq!(code, 200);
    // A TCP phone without outbound: its binding is not tied to the connection.
    let mut tcp = register(
        "<sip:dave@127.0.0.1:5090;transport=tcp>",
        Some("300"),
        "t1",
        1,
    );
    tcp.transport = Transport::Tcp;
    tcp.source = Some("127.0.0.1:40009".parse().expect("addr"));
    let (code, _, _) = registered(&mut h, tcp);
    assert_eq!(code, 200);
    assert_eq!(h.store.tables.list(Table::Bindings).expect("list").len(), 2);
    h.input(Input::FlowClosed(flow("127.0.0.1:40001")));
    h.input(Input::FlowClosed(crate::sipmsg::Flow {
        transport: Transport::Tcp,
        remote: "127.0.0.1:40009".parse().expect("addr"),
    }));
    let left: Vec<String> = h
        .store
        .tables
        .list(Table::Bindings)
        .expect("list")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].contains("transport=tcp"), "{left:?}");
    let outs = h.input(Input::Stanza(message_to("dave@sip.localhost", "m1", "hi")));
    let s = sends(&outs);
    assert_eq!(s.len(), 1);
    assert!(
        !s[0].1.flow_only,
        "reached as its URI says if the connection is gone"
    );
}

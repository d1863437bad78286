//! External accounts under a fake clock: stox A's REGISTER client against stox B's
//! registrar (two `Gateway` values wired together), and against scripted answers.

use std::time::{Duration, Instant, SystemTime};

use stox_mappings::{Store, Table};
use stox_sip::digest::Algorithm;
use xmpp_parsers::minidom::Element;

use super::{backoff, refresh_after, AccountRecord, AccountTransport, BACKOFF_MAX, BACKOFF_MIN};
use crate::core::{
    CallSettings, Gateway, Input, LocalContacts, Output, PresenceSettings, RegistrarSettings,
    SendFailure, Settings, SipUserRecord, TxId,
};
use crate::sipmsg::{header_in, OutRequest, SipRequest, SipResponse, Transport};

const A_UDP: &str = "127.0.0.1:5070";

fn settings(epoch: Instant, component: &str) -> Settings {
    Settings {
        accounts: Default::default(),
        home: "localhost".into(),
        component: component.into(),
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
        contacts: LocalContacts {
            udp: Some(A_UDP.parse().expect("addr")),
            tcp: None,
            tls: None,
        },
        registrar: RegistrarSettings {
            nonce_secret: [5; 32],
            digest_algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            min_expires: 60,
            ..RegistrarSettings::default()
        },
    }
}

/// One gateway and its outputs.
struct Side {
    gw: Gateway,
    store: Store,
}

impl Side {
    fn new(now: Instant, component: &str) -> Side {
        let store = Store::memory();
        let mut gw = Gateway::new(settings(now, component), &store, 7).expect("gateway");
        gw.handle_input(now, Input::LinkUp);
        let mut s = Side { gw, store };
        s.drain();
        s
    }

    fn drain(&mut self) -> Vec<Output> {
        let mut v = Vec::new();
        while let Some(o) = self.gw.poll_output() {
            v.push(o);
        }
        v
    }
}

fn account(id: &str, password: &str) -> AccountRecord {
    AccountRecord {
        jid: "alice@localhost".into(),
        id: id.into(),
        registrar: "sip:sip2.localhost".into(),
        user: "alice2".into(),
        auth_user: None,
        password: password.into(),
        transport: AccountTransport::Udp,
        outbound_proxy: Some("sip:127.0.0.1:5062".into()),
        display_name: Some("Alice Two".into()),
        default: false,
        expires: 3600,
        created_unix: 0,
    }
}

/// The SIP requests among outputs.
fn sends(outs: Vec<Output>) -> Vec<(TxId, OutRequest)> {
    outs.into_iter()
        .filter_map(|o| match o {
            Output::SipSend { tx, req, .. } => Some((tx, req)),
            _ => None,
        })
        .collect()
}

fn stanzas(outs: &[Output]) -> Vec<Element> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Stanza(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// What B receives when A sends `req` (the headers the io layer writes).
fn as_received(req: &OutRequest) -> SipRequest {
    let d = req
        .dialog
        .as_ref()
        .expect("account requests carry their CSeq");
    let mut headers = vec![
        (
            "Via".to_string(),
            format!("SIP/2.0/UDP {A_UDP};branch=z9hG4bKx"),
        ),
        (
            "From".into(),
            format!("{};tag={}", req.from_name_addr(), d.from_tag),
        ),
        ("To".into(), format!("<{}>", req.to)),
        ("Call-ID".into(), req.call_id.clone().expect("call-id")),
        ("CSeq".into(), format!("{} {}", d.cseq, req.method)),
    ];
    headers.extend(req.headers.iter().cloned());
    if let Some(ct) = &req.content_type {
        headers.push(("Content-Type".into(), ct.clone()));
    }
    SipRequest {
        method: req.method.clone(),
        uri: req.uri.clone(),
        headers,
        body: req.body.clone(),
        transport: Transport::Udp,
        source: Some(A_UDP.parse().expect("addr")),
    }
}

/// B answers `req` (a new server transaction); the reply as A's `SipResponse`.
fn b_answers(b: &mut Side, now: Instant, req: &OutRequest) -> SipResponse {
    b.gw.handle_input(
        now,
        Input::SipRequest {
            tx: 1,
            req: as_received(req),
        },
    );
    let outs = b.drain();
    let (code, headers) = outs
        .into_iter()
        .find_map(|o| match o {
            Output::SipReply {
                tx: 1,
                code,
                headers,
                ..
            } => Some((code, headers)),
            _ => None,
        })
        .expect("B answers at once");
    SipResponse {
        code,
        reason: String::new(),
        headers,
    }
}

fn respond(
    a: &mut Side,
    now: Instant,
    tx: TxId,
    r: Result<SipResponse, SendFailure>,
) -> Vec<Output> {
    a.gw.handle_input(now, Input::SipResponse { tx, result: r });
    a.drain()
}

fn ok(code: u16, headers: &[(&str, &str)]) -> Result<SipResponse, SendFailure> {
    Ok(SipResponse {
        code,
        reason: "x".into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    })
}

fn b_with_alice2(now: Instant, password: &str) -> Side {
    let b = Side::new(now, "sip2.localhost");
    let u = SipUserRecord::new("alice2", "sip2.localhost", password, 0);
    b.store
        .tables
        .put(
            Table::SipUsers,
            "alice2",
            &serde_json::to_vec(&u).expect("json"),
        )
        .expect("put");
    b
}

/// A registers alice's account at B: 401, then credentials, then 200.
fn register_at_b(a: &mut Side, b: &mut Side, now: Instant, rec: AccountRecord) {
    a.gw.put_account(now, rec).expect("stored");
    let mut s = sends(a.drain());
    assert_eq!(s.len(), 1, "REGISTER at once");
    let (tx, first) = s.remove(0);
    let r = b_answers(b, now, &first);
    assert_eq!(r.code, 401);
    let mut s = sends(respond(a, now, tx, Ok(r)));
    let (tx, second) = s.remove(0);
    let r = b_answers(b, now, &second);
    assert_eq!(r.code, 200, "B accepts A's Digest answer");
    respond(a, now, tx, Ok(r));
}

#[test]
fn registers_with_digest_at_a_stox_registrar() {
    let now = Instant::now();
    let mut a = Side::new(now, "sip.localhost");
    let mut b = b_with_alice2(now, "alice2-secret");
    a.gw.put_account(now, account("work", "alice2-secret"))
        .expect("stored");
    let mut s = sends(a.drain());
    let (tx, first) = s.remove(0);
    assert_eq!(first.method, "REGISTER");
    assert_eq!(first.uri, "sip:sip2.localhost");
    assert_eq!(first.to, "sip:alice2@sip2.localhost");
    assert_eq!(first.from, "\"Alice Two\" <sip:alice2@sip2.localhost>");
    assert_eq!(first.next_hop.as_deref(), Some("sip:127.0.0.1:5062"));
    let contact = header_in(&first.headers, "Contact")
        .expect("contact")
        .to_string();
    let user = account("work", "x").contact_user();
    assert_eq!(contact, format!("<sip:{user}@{A_UDP}>;expires=3600"));
    assert!(header_in(&first.headers, "Authorization").is_none());
    let r = b_answers(&mut b, now, &first);
    assert_eq!(r.code, 401);
    let mut s = sends(respond(&mut a, now, tx, Ok(r)));
    assert_eq!(s.len(), 1);
    let (tx, second) = s.remove(0);
    assert_eq!(
        second.call_id, first.call_id,
        "RFC 3261 §10.2.4: one Call-ID"
    );
    assert_eq!(
        second.dialog.as_ref().map(|d| d.cseq),
        first.dialog.as_ref().map(|d| d.cseq + 1)
    );
    let auth = header_in(&second.headers, "Authorization").expect("credentials");
    assert!(
        auth.contains("algorithm=SHA-256") && auth.contains("qop=auth"),
        "{auth}"
    );
    assert!(auth.contains("username=\"alice2\"") && auth.contains("realm=\"sip2.localhost\""));
    let r = b_answers(&mut b, now, &second);
    assert_eq!(r.code, 200);
    let outs = respond(&mut a, now, tx, Ok(r));
    let v = a.gw.account(now, "alice@localhost", "work").expect("view");
    assert_eq!(v.state, "registered");
    assert_eq!(v.expires_in, Some(3600));
    assert_eq!(
        v.next_register_in,
        Some(3540),
        "refreshed 60 s before expiry"
    );
    assert!(v.default, "the first account is the default");
    // B holds the binding; alice heard about it once.
    let bindings = b.store.tables.list(Table::Bindings).expect("list");
    assert_eq!(bindings.len(), 1);
    assert!(bindings[0].0.contains(&user), "{}", bindings[0].0);
    let told = stanzas(&outs);
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].attr("type"), Some("headline"));
    assert!(
        told[0].text().contains("registered")
            || told[0].children().any(|c| c.text().contains("registered"))
    );
}

#[test]
fn refreshes_before_expiry_with_the_cached_challenge() {
    let now = Instant::now();
    let mut a = Side::new(now, "sip.localhost");
    let mut b = b_with_alice2(now, "pw-alice2");
    let mut rec = account("work", "pw-alice2");
    rec.expires = 120;
    register_at_b(&mut a, &mut b, now, rec);
    let due = a.gw.poll_timeout().expect("a refresh is scheduled");
    assert_eq!(due, now + Duration::from_secs(60), "max(120/2, 120-60)");
    assert!(sends(a.drain()).is_empty());
    a.gw.handle_timeout(now + Duration::from_secs(59));
    assert!(sends(a.drain()).is_empty(), "not before it is due");
    let t = now + Duration::from_secs(60);
    a.gw.handle_timeout(t);
    let mut s = sends(a.drain());
    assert_eq!(s.len(), 1);
    let (tx, refresh) = s.remove(0);
    let auth = header_in(&refresh.headers, "Authorization").expect("credentials at once");
    assert!(auth.contains("nc=00000002"), "{auth}");
    let r = b_answers(&mut b, t, &refresh);
    assert_eq!(r.code, 200, "the nonce is still fresh at B");
    respond(&mut a, t, tx, Ok(r));
    let v = a.gw.account(t, "alice@localhost", "work").expect("view");
    assert_eq!((v.state.as_str(), v.expires_in), ("registered", Some(120)));
}

#[test]
fn a_wrong_password_fails_and_backs_off() {
    let now = Instant::now();
    let mut a = Side::new(now, "sip.localhost");
    let mut b = b_with_alice2(now, "the-right-one");
    a.gw.put_account(now, account("work", "a-wrong-one"))
        .expect("stored");
    let mut t = now;
    let mut tells = 0;
    for round in 1..=3u32 {
        let mut s = sends(a.drain());
        assert_eq!(s.len(), 1, "round {round}: one REGISTER");
        let (tx, req) = s.remove(0);
        let r = b_answers(&mut b, t, &req);
        assert_eq!(r.code, 401);
        let outs = respond(&mut a, t, tx, Ok(r));
        tells += stanzas(&outs).len();
        let mut s = sends(outs);
        let (tx, req) = if round == 1 {
            assert_eq!(s.len(), 1, "the first challenge is answered");
            s.remove(0)
        } else {
            // The challenge from the failure is answered at once in later rounds.
            assert!(header_in(&req.headers, "Authorization").is_some());
            let v = a.gw.account(t, "alice@localhost", "work").expect("view");
            assert_eq!(v.state, "failed");
            assert_eq!(v.failures, round);
            let wait = backoff(round);
            assert_eq!(a.gw.poll_timeout(), Some(t + wait), "round {round}");
            assert!(s.is_empty(), "no tight loop");
            t += wait;
            a.gw.handle_timeout(t);
            continue;
        };
        let r = b_answers(&mut b, t, &req);
        assert_eq!(r.code, 401, "B refuses the wrong password");
        let outs = respond(&mut a, t, tx, Ok(r));
        tells += stanzas(&outs).len();
        assert!(sends(outs).is_empty(), "failed: nothing more now");
        let v = a.gw.account(t, "alice@localhost", "work").expect("view");
        assert_eq!(v.state, "failed");
        assert!(
            v.last_error.as_deref().unwrap_or("").contains("401"),
            "{v:?}"
        );
        assert_eq!(v.next_register_in, Some(BACKOFF_MIN.as_secs()));
        t += BACKOFF_MIN;
        a.gw.handle_timeout(t);
    }
    assert_eq!(tells, 1, "the user is told once, not every attempt");
}

/// `[accounts]`: the configured backoff and expiry range are the ones the core applies.
#[test]
fn configured_backoff_and_expiry_range_are_applied() {
    let now = Instant::now();
    let mut st = settings(now, "sip.localhost");
    st.accounts = super::AccountSettings {
        backoff_min: Duration::from_secs(5),
        backoff_max: Duration::from_secs(12),
        min_expires: 300,
        max_expires: 7200,
    };
    let store = Store::memory();
    let mut gw = Gateway::new(st, &store, 7).expect("gateway");
    gw.handle_input(now, Input::LinkUp);
    let mut a = Side { gw, store };
    a.drain();
    let mut rec = account("work", "pw");
    rec.expires = 120;
    assert!(
        a.gw.put_account(now, rec.clone()).is_err(),
        "below the configured minimum"
    );
    rec.expires = 7201;
    assert!(
        a.gw.put_account(now, rec.clone()).is_err(),
        "above the maximum"
    );
    rec.expires = 7200;
    a.gw.put_account(now, rec).expect("in range");
    // Each timeout fails the account; the next REGISTER waits 5, 10, then 12 s (capped).
    let mut t = now;
    for wait in [5u64, 10, 12, 12] {
        let mut s = sends(a.drain());
        assert_eq!(s.len(), 1, "one REGISTER");
        let (tx, _) = s.remove(0);
        respond(&mut a, t, tx, Err(SendFailure::Timeout));
        let v = a.gw.account(t, "alice@localhost", "work").expect("view");
        assert_eq!(v.state, "failed");
        assert_eq!(v.next_register_in, Some(wait), "{v:?}");
        t += Duration::from_secs(wait);
        a.gw.handle_timeout(t);
    }
    // A 423 asking for more than the configured maximum fails the account.
    let (tx, _) = sends(a.drain()).remove(0);
    respond(&mut a, t, tx, ok(423, &[("Min-Expires", "7300")]));
    let v = a.gw.account(t, "alice@localhost", "work").expect("view");
    assert_eq!(v.state, "failed");
    assert!(
        v.last_error.as_deref().unwrap_or("").contains("423"),
        "{v:?}"
    );
}

#[test]
fn backoff_doubles_up_to_its_cap_and_refresh_times() {
    assert_eq!(backoff(1), BACKOFF_MIN);
    assert_eq!(backoff(2), BACKOFF_MIN * 2);
    assert_eq!(backoff(3), BACKOFF_MIN * 4);
    assert_eq!(backoff(40), BACKOFF_MAX);
    assert_eq!(refresh_after(3600), Duration::from_secs(3540));
    assert_eq!(refresh_after(100), Duration::from_secs(50));
    assert_eq!(refresh_after(1), Duration::from_millis(500));
}

#[test]
fn min_expires_timeouts_and_removal() {
    let now = Instant::now();
    let mut a = Side::new(now, "sip.localhost");
    let mut rec = account("work", "pw");
    rec.outbound_proxy = None;
    a.gw.put_account(now, rec).expect("stored");
    let (tx, _) = sends(a.drain()).remove(0);
    // 423 → asks again with Min-Expires.
    let mut s = sends(respond(
        &mut a,
        now,
        tx,
        ok(423, &[("Min-Expires", "7200")]),
    ));
    let (tx, again) = s.remove(0);
    assert_eq!(header_in(&again.headers, "Expires"), Some("7200"));
    assert_eq!(
        again.next_hop, None,
        "no outbound proxy: the registrar's host"
    );
    // A timeout → failed, retried after the backoff.
    let out = respond(&mut a, now, tx, Err(SendFailure::Timeout));
    assert!(sends(out).is_empty());
    let v = a.gw.account(now, "alice@localhost", "work").expect("view");
    assert_eq!(v.state, "failed");
    assert_eq!(
        v.last_error.as_deref(),
        Some("no answer from the registrar")
    );
    let t = now + BACKOFF_MIN;
    a.gw.handle_timeout(t);
    let (tx, retry) = sends(a.drain()).remove(0);
    assert_eq!(header_in(&retry.headers, "Expires"), Some("7200"));
    // 200 with our contact's expiry, among others.
    let user = account("work", "x").contact_user();
    let other = "<sip:someone@192.0.2.1>;expires=30".to_string();
    let ours = format!("<sip:{user}@{A_UDP}>;expires=7000");
    respond(
        &mut a,
        t,
        tx,
        ok(
            200,
            &[("Contact", &other), ("Contact", &ours), ("Expires", "9")],
        ),
    );
    let v = a.gw.account(t, "alice@localhost", "work").expect("view");
    assert_eq!(
        (v.state.as_str(), v.expires_in, v.failures),
        ("registered", Some(7000), 0)
    );
    // Removed → REGISTER Expires: 0, and the record is gone from the store.
    a.gw.remove_account("alice@localhost", "work")
        .expect("removed");
    let mut s = sends(a.drain());
    assert_eq!(s.len(), 1);
    let (tx, bye) = s.remove(0);
    assert_eq!(header_in(&bye.headers, "Expires"), Some("0"));
    assert!(header_in(&bye.headers, "Contact").is_some_and(|c| c.ends_with(";expires=0")));
    assert!(a.gw.accounts(t, None).is_empty());
    assert!(a
        .store
        .tables
        .list(Table::Accounts)
        .expect("list")
        .is_empty());
    // Its challenge is answered once, then nothing more.
    let out = respond(
        &mut a,
        t,
        tx,
        ok(
            401,
            &[(
                "WWW-Authenticate",
                "Digest realm=\"sip2.localhost\", nonce=\"n\", qop=\"auth\"",
            )],
        ),
    );
    let (tx, bye2) = sends(out).remove(0);
    assert!(header_in(&bye2.headers, "Authorization").is_some());
    let out = respond(
        &mut a,
        t,
        tx,
        ok(
            401,
            &[(
                "WWW-Authenticate",
                "Digest realm=\"sip2.localhost\", nonce=\"n\", qop=\"auth\"",
            )],
        ),
    );
    assert!(sends(out).is_empty());
    assert_eq!(a.gw.poll_timeout(), None);
}

#[test]
fn accounts_are_restored_and_registered_at_start() {
    let now = Instant::now();
    let store = Store::memory();
    {
        let mut gw = Gateway::new(settings(now, "sip.localhost"), &store, 1).expect("gw");
        gw.put_account(now, account("work", "pw")).expect("stored");
        gw.put_account(now, account("home", "pw")).expect("stored");
        gw.set_default_account("alice@localhost", "home")
            .expect("default");
    }
    let mut gw = Gateway::new(settings(now, "sip.localhost"), &store, 2).expect("gw");
    gw.restore_accounts(now);
    let mut n = 0;
    while let Some(o) = gw.poll_output() {
        if matches!(o, Output::SipSend { ref req, .. } if req.method == "REGISTER") {
            n += 1;
        }
    }
    assert_eq!(n, 2, "both registered again");
    let v = gw.accounts(now, Some("Alice@LocalHost"));
    let defaults: Vec<(&str, bool)> = v.iter().map(|a| (a.id.as_str(), a.default)).collect();
    assert_eq!(defaults, vec![("home", true), ("work", false)]);
    assert!(
        !serde_json::to_string(&v).expect("json").contains("pw\""),
        "no password shown"
    );
}

#[test]
fn invalid_records_are_refused() {
    let now = Instant::now();
    let mut a = Side::new(now, "sip.localhost");
    for (f, what) in [
        (
            Box::new(|r: &mut AccountRecord| r.id = "Work!".into())
                as Box<dyn Fn(&mut AccountRecord)>,
            "id",
        ),
        (
            Box::new(|r: &mut AccountRecord| r.registrar = "sip:bob@x".into()),
            "registrar",
        ),
        (
            Box::new(|r: &mut AccountRecord| r.registrar = "nonsense".into()),
            "registrar",
        ),
        (
            Box::new(|r: &mut AccountRecord| r.jid = "localhost".into()),
            "jid",
        ),
        (
            Box::new(|r: &mut AccountRecord| r.password = String::new()),
            "password",
        ),
        (
            Box::new(|r: &mut AccountRecord| r.user = "a b".into()),
            "user",
        ),
        (Box::new(|r: &mut AccountRecord| r.expires = 5), "expires"),
    ] {
        let mut r = account("work", "pw");
        f(&mut r);
        let e = a.gw.put_account(now, r).expect_err(what).to_string();
        assert!(e.contains(what), "{e}");
    }
    assert!(sends(a.drain()).is_empty());
}

/// A `tls` account: refused while stox has no `tls:` listener (its Contact would be a plain
/// one); with one, its REGISTER names that listener with `;transport=tls`, and its
/// REGISTER, MESSAGE and SUBSCRIBE leave over TLS whatever their size.
#[test]
fn a_tls_account_registers_a_tls_contact_and_sends_over_tls() {
    let now = Instant::now();
    let mut a = Side::new(now, "sip.localhost");
    let mut rec = account("work", "pw");
    rec.transport = AccountTransport::Tls;
    let e =
        a.gw.put_account(now, rec.clone())
            .expect_err("no tls listener");
    assert!(e.to_string().contains("transport tls"), "{e}");
    assert!(sends(a.drain()).is_empty());

    let store = Store::memory();
    let mut with_tls = settings(now, "sip.localhost");
    with_tls.contacts.tls = Some("127.0.0.1:5071".parse().expect("addr"));
    let mut a = Side {
        gw: Gateway::new(with_tls, &store, 7).expect("gateway"),
        store,
    };
    a.gw.handle_input(now, Input::LinkUp);
    a.drain();
    a.gw.put_account(now, rec.clone()).expect("stored");
    let outs = a.drain();
    let registers: Vec<_> = outs
        .iter()
        .filter_map(|o| match o {
            Output::SipSend { req, transport, .. } if req.method == "REGISTER" => {
                Some((req.clone(), *transport))
            }
            _ => None,
        })
        .collect();
    assert_eq!(registers.len(), 1, "{outs:?}");
    let (register, transport) = &registers[0];
    assert_eq!(*transport, Transport::Tls);
    assert_eq!(register.next_hop.as_deref(), Some("sip:127.0.0.1:5062"));
    let contact = header_in(&register.headers, "Contact").expect("contact");
    assert_eq!(
        contact,
        format!(
            "<sip:{}@127.0.0.1:5071;transport=tls>;expires=3600",
            rec.contact_user()
        )
    );

    // A long message still goes over TLS (never "UDP, else TCP").
    let long = "x".repeat(3000);
    a.gw.handle_input(
        now,
        Input::Stanza(message(
            "alice@localhost/phone",
            "carol\\40pbx.example@sip.localhost",
            &long,
        )),
    );
    let outs = a.drain();
    let transports: Vec<Transport> = outs
        .iter()
        .filter_map(|o| match o {
            Output::SipSend { req, transport, .. } if req.method == "MESSAGE" => Some(*transport),
            _ => None,
        })
        .collect();
    assert_eq!(transports, vec![Transport::Tls], "{outs:?}");

    // A presence subscription through it too.
    a.gw.handle_input(
        now,
        Input::Stanza(presence(
            "alice@localhost",
            "carol\\40pbx.example@sip.localhost",
            "subscribe",
        )),
    );
    let outs = a.drain();
    let subscribes: Vec<_> = outs
        .iter()
        .filter_map(|o| match o {
            Output::SipSend {
                tx, req, transport, ..
            } if req.method == "SUBSCRIBE" => Some((req.clone(), *transport, *tx)),
            _ => None,
        })
        .collect();
    assert_eq!(subscribes.len(), 1, "{outs:?}");
    assert_eq!(subscribes[0].1, Transport::Tls);
    assert!(
        header_in(&subscribes[0].0.headers, "Contact")
            .is_some_and(|c| c.contains(";transport=tls")),
        "{:?}",
        subscribes[0].0
    );
    // carol's server makes the dialog; removing the account ends it with a SUBSCRIBE
    // `Expires: 0` that also leaves over TLS (it went over UDP/TCP before).
    respond(
        &mut a,
        now,
        subscribes[0].2,
        ok(
            200,
            &[
                ("To", "<sip:carol@pbx.example>;tag=c1"),
                ("Contact", "<sip:carol@10.0.0.9:5060>"),
                ("Expires", "3600"),
            ],
        ),
    );
    a.gw.remove_account("alice@localhost", "work")
        .expect("removed");
    let outs = a.drain();
    let ends: Vec<_> = outs
        .iter()
        .filter_map(|o| match o {
            Output::SipSend { req, transport, .. } if req.method == "SUBSCRIBE" => Some((
                header_in(&req.headers, "Expires").map(str::to_string),
                *transport,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        ends,
        vec![(Some("0".to_string()), Transport::Tls)],
        "{outs:?}"
    );
    a.gw.put_account(now, rec.clone()).expect("stored again");
    a.drain();
    // An outbound proxy `;transport=tls` makes a `udp` account a TLS one as well.
    let mut via_proxy = account("proxy", "pw");
    via_proxy.outbound_proxy = Some("sip:127.0.0.1:5062;transport=tls".into());
    assert!(via_proxy.tls() && !account("x", "pw").tls());
    a.gw.put_account(now, via_proxy.clone()).expect("stored");
    let outs = a.drain();
    let register = outs
        .iter()
        .find_map(|o| match o {
            Output::SipSend { req, transport, .. } if req.method == "REGISTER" => {
                Some((req.clone(), *transport))
            }
            _ => None,
        })
        .expect("a REGISTER");
    assert_eq!(register.1, Transport::Tls);
    assert!(
        header_in(&register.0.headers, "Contact").is_some_and(|c| c.contains(&format!(
            "{}@127.0.0.1:5071;transport=tls",
            via_proxy.contact_user()
        ))),
        "{:?}",
        register.0
    );
}

fn message(from: &str, to: &str, body: &str) -> Element {
    format!(
        "<message xmlns='jabber:component:accept' from='{from}' to='{to}' type='chat' id='m1'><body>{body}</body></message>"
    )
    .parse()
    .expect("xml")
}

#[test]
fn messages_arrive_at_the_account_and_leave_through_it() {
    let now = Instant::now();
    let mut a = Side::new(now, "sip.localhost");
    let mut b = b_with_alice2(now, "pw2");
    register_at_b(&mut a, &mut b, now, account("work", "pw2"));
    let mut other = account("home", "pw3");
    other.registrar = "sip:other.example".into();
    other.user = "al".into();
    other.outbound_proxy = None;
    other.display_name = None;
    a.gw.put_account(now, other).expect("second account");
    a.drain();

    // In: a MESSAGE at the account's Contact reaches alice, from the sender's JID at C.
    for (id, from_node) in [
        ("work", "carol\\40pbx.example"),
        ("home", "carol\\40pbx.example#home"),
    ] {
        let user = account(id, "x").contact_user();
        let req = SipRequest {
            method: "MESSAGE".into(),
            uri: format!("sip:{user}@{A_UDP}"),
            headers: vec![
                ("From".into(), "<sip:carol@pbx.example>;tag=1".into()),
                ("To".into(), "<sip:alice2@sip2.localhost>".into()),
                ("Call-ID".into(), format!("in-{id}")),
                ("CSeq".into(), "1 MESSAGE".into()),
                ("Content-Type".into(), "text/plain".into()),
            ],
            body: b"hello alice".to_vec(),
            transport: Transport::Udp,
            source: None,
        };
        a.gw.handle_input(now, Input::SipRequest { tx: 5, req });
        let outs = a.drain();
        let s = stanzas(&outs);
        assert_eq!(s.len(), 1, "{id}");
        assert_eq!(s[0].attr("to"), Some("alice@localhost"));
        assert_eq!(
            s[0].attr("from"),
            Some(format!("{from_node}@sip.localhost").as_str()),
            "non-default accounts mark the sender"
        );
    }

    // Out: through the default account, answering the provider's 407.
    a.gw.handle_input(
        now,
        Input::Stanza(message(
            "alice@localhost/phone",
            "carol\\40pbx.example@sip.localhost",
            "hi carol",
        )),
    );
    let mut s = sends(a.drain());
    assert_eq!(s.len(), 1);
    let (tx, m) = s.remove(0);
    assert_eq!(m.method, "MESSAGE");
    assert_eq!(m.uri, "sip:carol@pbx.example");
    assert_eq!(m.from, "\"Alice Two\" <sip:alice2@sip2.localhost>");
    assert!(
        !format!("{m:?}").contains("alice@localhost"),
        "no XMPP address: {m:?}"
    );
    assert_eq!(m.next_hop.as_deref(), Some("sip:127.0.0.1:5062"));
    let challenge = "Digest realm=\"sip2.localhost\", nonce=\"abc\", algorithm=MD5, qop=\"auth\"";
    let mut s = sends(respond(
        &mut a,
        now,
        tx,
        ok(407, &[("Proxy-Authenticate", challenge)]),
    ));
    let (tx, m2) = s.remove(0);
    assert_eq!(m2.call_id, m.call_id);
    assert_eq!(m2.dialog.as_ref().map(|d| d.cseq), Some(2));
    let pa = header_in(&m2.headers, "Proxy-Authorization").expect("answered");
    assert!(pa.contains("username=\"alice2\"") && pa.contains("uri=\"sip:carol@pbx.example\""));
    // A second 407: the credentials were refused; the XMPP sender gets an error.
    let outs = respond(
        &mut a,
        now,
        tx,
        ok(407, &[("Proxy-Authenticate", challenge)]),
    );
    assert!(sends(outs_clone(&outs)).is_empty(), "answered once only");
    let errs = stanzas(&outs);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].attr("type"), Some("error"));

    // `#home` picks the other account: its identity, straight to the target.
    a.gw.handle_input(
        now,
        Input::Stanza(message(
            "alice@localhost/phone",
            "carol\\40pbx.example#home@sip.localhost",
            "via home",
        )),
    );
    let (_, m) = sends(a.drain()).remove(0);
    assert_eq!(m.uri, "sip:carol@pbx.example");
    assert_eq!(m.from, "sip:al@other.example");
    assert_eq!(m.next_hop, None);
    // Someone without accounts still speaks as himself.
    a.gw.handle_input(
        now,
        Input::Stanza(message(
            "bob@localhost/x",
            "carol\\40pbx.example@sip.localhost",
            "plain",
        )),
    );
    let (_, m) = sends(a.drain()).remove(0);
    assert!(m.from.starts_with("sip:bob@localhost"), "{}", m.from);
    // An unknown `#suffix` is not an account: left as it is (and here not a valid host).
    a.gw.handle_input(
        now,
        Input::Stanza(message(
            "alice@localhost/phone",
            "carol\\40pbx.example#nope@sip.localhost",
            "?",
        )),
    );
    let outs = a.drain();
    assert!(sends(outs_clone(&outs)).is_empty());
    assert_eq!(stanzas(&outs)[0].attr("type"), Some("error"));
}

fn outs_clone(outs: &[Output]) -> Vec<Output> {
    outs.iter()
        .filter_map(|o| match o {
            Output::SipSend { tx, req, transport } => Some(Output::SipSend {
                tx: *tx,
                req: req.clone(),
                transport: *transport,
            }),
            _ => None,
        })
        .collect()
}

fn iq(a: &mut Side, now: Instant, from: &str, kind: &str, payload: &str) -> Element {
    let xml = format!(
        "<iq xmlns='jabber:component:accept' type='{kind}' id='q1' from='{from}' to='sip.localhost'>{payload}</iq>"
    );
    a.gw.handle_input(now, Input::Stanza(xml.parse().expect("xml")));
    let outs = a.drain();
    stanzas(&outs)
        .into_iter()
        .find(|s| s.name() == "iq")
        .expect("an iq answer")
}

fn form(fields: &[(&str, &str)]) -> String {
    let f: String = fields
        .iter()
        .map(|(k, v)| format!("<field var='{k}'><value>{v}</value></field>"))
        .collect();
    format!("<x xmlns='jabber:x:data' type='submit'>{f}</x>")
}

fn field_vars(e: &Element) -> Vec<String> {
    let mut out = Vec::new();
    for c in e.children() {
        if c.name() == "field" {
            out.push(c.attr("var").unwrap_or_default().to_string());
        }
        out.extend(field_vars(c));
    }
    out
}

#[test]
fn xep0077_registers_changes_and_removes_the_default_account() {
    let now = Instant::now();
    let mut a = Side::new(now, "sip.localhost");
    const REG: &str = "jabber:iq:register";
    let alice = "alice@localhost/phone";
    // The form, nothing registered yet.
    let r = iq(
        &mut a,
        now,
        alice,
        "get",
        &format!("<query xmlns='{REG}'/>"),
    );
    assert_eq!(r.attr("type"), Some("result"));
    let q = r.get_child("query", REG).expect("query");
    assert!(q.get_child("registered", REG).is_none());
    let vars = field_vars(q);
    for v in [
        "FORM_TYPE",
        "registrar",
        "user",
        "auth_user",
        "password",
        "transport",
        "outbound_proxy",
        "display_name",
    ] {
        assert!(vars.iter().any(|x| x == v), "{v} in {vars:?}");
    }
    // Missing the password: not-acceptable, nothing stored.
    let r = iq(
        &mut a,
        now,
        alice,
        "set",
        &format!(
            "<query xmlns='{REG}'>{}</query>",
            form(&[("registrar", "sip:sip2.localhost"), ("user", "alice2")])
        ),
    );
    assert_eq!(r.attr("type"), Some("error"));
    assert!(a.gw.accounts(now, None).is_empty());
    // Registered: stored as the default account, REGISTER sent.
    a.gw.handle_input(
        now,
        Input::Stanza(
            format!(
                "<iq xmlns='jabber:component:accept' type='set' id='q2' from='{alice}' to='sip.localhost'><query xmlns='{REG}'>{}</query></iq>",
                form(&[("registrar", "sip:sip2.localhost"), ("user", "alice2"), ("password", "pw"), ("display_name", "Alice")])
            )
            .parse()
            .expect("xml"),
        ),
    );
    let outs = a.drain();
    assert!(stanzas(&outs)
        .iter()
        .any(|s| s.attr("type") == Some("result") && s.attr("id") == Some("q2")));
    assert_eq!(sends(outs).len(), 1, "registering");
    let v = a.gw.accounts(now, Some("alice@localhost"));
    assert_eq!(v.len(), 1);
    assert_eq!(
        (v[0].id.as_str(), v[0].default, v[0].aor.as_str()),
        ("sip2-localhost", true, "sip:alice2@sip2.localhost")
    );
    // The form now says registered and shows the values, not the password.
    let r = iq(
        &mut a,
        now,
        alice,
        "get",
        &format!("<query xmlns='{REG}'/>"),
    );
    let q = r.get_child("query", REG).expect("query");
    assert!(q.get_child("registered", REG).is_some());
    assert!(String::from(&r).contains("alice2"));
    assert!(!String::from(&r).contains(">pw<"));
    // A change without a password keeps it.
    let r = iq(
        &mut a,
        now,
        alice,
        "set",
        &format!(
            "<query xmlns='{REG}'>{}</query>",
            form(&[("display_name", "Alice B")])
        ),
    );
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
    let rec =
        a.gw.account_record("alice@localhost", "sip2-localhost")
            .expect("record");
    assert_eq!(
        (rec.password.as_str(), rec.display_name.as_deref()),
        ("pw", Some("Alice B"))
    );
    // Someone of another domain may not.
    let r = iq(
        &mut a,
        now,
        "eve@elsewhere.example/x",
        "get",
        &format!("<query xmlns='{REG}'/>"),
    );
    assert_eq!(r.attr("type"), Some("error"));
    assert!(String::from(&r).contains("forbidden"));
    // <remove/>: all accounts gone, unregistered.
    a.gw.handle_input(
        now,
        Input::Stanza(
            format!("<iq xmlns='jabber:component:accept' type='set' id='q3' from='{alice}' to='sip.localhost'><query xmlns='{REG}'><remove/></query></iq>")
                .parse()
                .expect("xml"),
        ),
    );
    let outs = a.drain();
    assert!(stanzas(&outs)
        .iter()
        .any(|s| s.attr("type") == Some("result") && s.attr("id") == Some("q3")));
    let s = sends(outs);
    assert_eq!(s.len(), 1);
    assert_eq!(header_in(&s[0].1.headers, "Expires"), Some("0"));
    assert!(a.gw.accounts(now, None).is_empty());
}

#[test]
fn xep0050_commands_list_add_remove_and_choose_the_default() {
    let now = Instant::now();
    let mut a = Side::new(now, "sip.localhost");
    const CMD: &str = "http://jabber.org/protocol/commands";
    let alice = "alice@localhost/phone";
    let r = iq(
        &mut a,
        now,
        alice,
        "get",
        &format!("<query xmlns='http://jabber.org/protocol/disco#items' node='{CMD}'/>"),
    );
    let nodes: Vec<String> = r
        .children()
        .flat_map(|q| q.children())
        .filter_map(|i| i.attr("node").map(str::to_string))
        .collect();
    assert_eq!(
        nodes,
        [
            "list-accounts",
            "add-account",
            "remove-account",
            "set-default-account"
        ]
    );
    // add-account: a form first, then the submitted form.
    let r = iq(
        &mut a,
        now,
        alice,
        "set",
        &format!("<command xmlns='{CMD}' node='add-account' action='execute'/>"),
    );
    let c = r.get_child("command", CMD).expect("command");
    assert_eq!(c.attr("status"), Some("executing"));
    let session = c.attr("sessionid").expect("session").to_string();
    assert!(field_vars(c).iter().any(|v| v == "registrar"));
    for (id, user) in [("work", "alice2"), ("home", "al")] {
        let r = iq(
            &mut a,
            now,
            alice,
            "set",
            &format!(
                "<command xmlns='{CMD}' node='add-account' sessionid='{session}' action='complete'>{}</command>",
                form(&[("id", id), ("registrar", "sip:sip2.localhost"), ("user", user), ("password", "pw")])
            ),
        );
        let c = r.get_child("command", CMD).expect("command");
        assert_eq!(c.attr("status"), Some("completed"), "{}", String::from(&r));
    }
    a.drain();
    // list-accounts: both, with their state; work is the default (the first).
    let r = iq(
        &mut a,
        now,
        alice,
        "set",
        &format!("<command xmlns='{CMD}' node='list-accounts' action='execute'/>"),
    );
    let text = String::from(&r);
    assert!(
        text.contains("status=\"completed\"") || text.contains("status='completed'"),
        "{text}"
    );
    assert!(
        text.contains("sip:alice2@sip2.localhost") && text.contains("sip:al@sip2.localhost"),
        "{text}"
    );
    assert!(text.contains("registering"), "{text}");
    // set-default-account: a list of her accounts, then the choice.
    let r = iq(
        &mut a,
        now,
        alice,
        "set",
        &format!("<command xmlns='{CMD}' node='set-default-account' action='execute'/>"),
    );
    let options: Vec<String> = String::from(&r)
        .match_indices("<value>")
        .map(|(i, _)| {
            String::from(&r)[i..]
                .chars()
                .skip(7)
                .take_while(|c| *c != '<')
                .collect()
        })
        .collect();
    assert!(
        options.contains(&"home".to_string()) && options.contains(&"work".to_string()),
        "{options:?}"
    );
    let r = iq(
        &mut a,
        now,
        alice,
        "set",
        &format!(
            "<command xmlns='{CMD}' node='set-default-account' action='complete'>{}</command>",
            form(&[("id", "home")])
        ),
    );
    assert_eq!(
        r.get_child("command", CMD).and_then(|c| c.attr("status")),
        Some("completed")
    );
    let v = a.gw.accounts(now, Some("alice@localhost"));
    let d: Vec<(&str, bool)> = v.iter().map(|v| (v.id.as_str(), v.default)).collect();
    assert_eq!(d, vec![("home", true), ("work", false)]);
    // remove-account: work goes; an unknown id is item-not-found.
    let r = iq(
        &mut a,
        now,
        alice,
        "set",
        &format!(
            "<command xmlns='{CMD}' node='remove-account' action='complete'>{}</command>",
            form(&[("id", "work")])
        ),
    );
    assert_eq!(
        r.get_child("command", CMD).and_then(|c| c.attr("status")),
        Some("completed")
    );
    let r = iq(
        &mut a,
        now,
        alice,
        "set",
        &format!(
            "<command xmlns='{CMD}' node='remove-account' action='complete'>{}</command>",
            form(&[("id", "nope")])
        ),
    );
    assert_eq!(r.attr("type"), Some("error"));
    assert_eq!(a.gw.accounts(now, None).len(), 1);
    // Unknown command; cancel.
    let r = iq(
        &mut a,
        now,
        alice,
        "set",
        &format!("<command xmlns='{CMD}' node='format-disk' action='execute'/>"),
    );
    assert_eq!(r.attr("type"), Some("error"));
    let r = iq(
        &mut a,
        now,
        alice,
        "set",
        &format!("<command xmlns='{CMD}' node='add-account' sessionid='s' action='cancel'/>"),
    );
    assert_eq!(
        r.get_child("command", CMD).and_then(|c| c.attr("status")),
        Some("canceled")
    );
}

#[test]
fn the_provider_stox_relays_a_sip_message_to_the_accounts_contact() {
    let now = Instant::now();
    let mut a = Side::new(now, "sip.localhost");
    let mut b = b_with_alice2(now, "pw2");
    let message = |user: &str| SipRequest {
        method: "MESSAGE".into(),
        uri: format!("sip:{user}@sip2.localhost"),
        headers: vec![
            ("From".into(), "<sip:carol@127.0.0.1:5099>;tag=1".into()),
            ("To".into(), format!("<sip:{user}@sip2.localhost>")),
            ("Call-ID".into(), "relay-1".into()),
            ("CSeq".into(), "1 MESSAGE".into()),
            ("Max-Forwards".into(), "70".into()),
            ("Content-Type".into(), "text/plain".into()),
        ],
        body: b"hi alice2".to_vec(),
        transport: Transport::Udp,
        source: None,
    };
    let reply_of = |outs: &[Output], tx: TxId| {
        outs.iter().find_map(|o| match o {
            Output::SipReply { tx: t, code, .. } if *t == tx => Some(*code),
            _ => None,
        })
    };
    // No contact yet: 480.
    b.gw.handle_input(
        now,
        Input::SipRequest {
            tx: 40,
            req: message("alice2"),
        },
    );
    assert_eq!(reply_of(&b.drain(), 40), Some(480));
    register_at_b(&mut a, &mut b, now, account("work", "pw2"));
    // Relayed to A's Contact for the account, answered with A's answer.
    b.gw.handle_input(
        now,
        Input::SipRequest {
            tx: 41,
            req: message("alice2"),
        },
    );
    let outs = b.drain();
    assert_eq!(reply_of(&outs, 41), None, "waits for the contact");
    let (tx, relayed) = sends(outs).remove(0);
    let user = account("work", "x").contact_user();
    assert_eq!(relayed.uri, format!("sip:{user}@{A_UDP}"));
    assert_eq!(relayed.from, "sip:carol@127.0.0.1:5099");
    assert_eq!(relayed.body, b"hi alice2");
    assert_eq!(header_in(&relayed.headers, "Max-Forwards"), Some("69"));
    b.gw.handle_input(
        now,
        Input::SipResponse {
            tx,
            result: ok(200, &[]),
        },
    );
    assert_eq!(reply_of(&b.drain(), 41), Some(200));
    // A failure comes back as it is.
    b.gw.handle_input(
        now,
        Input::SipRequest {
            tx: 42,
            req: message("alice2"),
        },
    );
    let (tx, _) = sends(b.drain()).remove(0);
    b.gw.handle_input(
        now,
        Input::SipResponse {
            tx,
            result: ok(486, &[]),
        },
    );
    assert_eq!(reply_of(&b.drain(), 42), Some(486));
    // Max-Forwards 0: 483.
    let mut m = message("alice2");
    m.headers.retain(|(n, _)| n != "Max-Forwards");
    m.headers.push(("Max-Forwards".into(), "0".into()));
    b.gw.handle_input(now, Input::SipRequest { tx: 43, req: m });
    assert_eq!(reply_of(&b.drain(), 43), Some(483));
}

#[test]
fn endless_stale_challenges_end_in_a_failure_not_a_loop() {
    let now = Instant::now();
    let mut a = Side::new(now, "sip.localhost");
    a.gw.put_account(now, account("work", "pw"))
        .expect("stored");
    let (mut tx, _) = sends(a.drain()).remove(0);
    let stale = "Digest realm=\"r\", nonce=\"n\", qop=\"auth\", stale=true";
    let mut sent = 1;
    loop {
        let out = respond(&mut a, now, tx, ok(401, &[("WWW-Authenticate", stale)]));
        let mut s = sends(out);
        if s.is_empty() {
            break;
        }
        sent += 1;
        assert!(sent < 10, "a tight loop");
        tx = s.remove(0).0;
    }
    assert_eq!(sent, 4, "three answers to the challenge, then failed");
    let v = a.gw.account(now, "alice@localhost", "work").expect("view");
    assert_eq!(v.state, "failed");
    assert_eq!(v.next_register_in, Some(BACKOFF_MIN.as_secs()));
}

fn presence(from: &str, to: &str, kind: &str) -> Element {
    format!("<presence xmlns='jabber:component:accept' from='{from}' to='{to}' type='{kind}'/>")
        .parse()
        .expect("xml")
}

const PIDF_OPEN: &str = "<?xml version='1.0'?><presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:carol@pbx.example'><tuple id='t1'><status><basic>open</basic></status></tuple></presence>";

/// A request from the provider's side to A (`tx` 9).
fn sip_in(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Input {
    let mut h: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    if !body.is_empty() {
        h.push(("Content-Type".into(), "application/pidf+xml".into()));
    }
    Input::SipRequest {
        tx: 9,
        req: SipRequest {
            method: method.into(),
            uri: uri.into(),
            headers: h,
            body: body.as_bytes().to_vec(),
            transport: Transport::Udp,
            source: None,
        },
    }
}

#[test]
fn presence_subscriptions_leave_through_the_account_and_arrive_at_it() {
    let now = Instant::now();
    let mut a = Side::new(now, "sip.localhost");
    a.gw.put_account(now, account("work", "pw2"))
        .expect("default");
    let mut other = account("home", "pw3");
    other.registrar = "sip:other.example".into();
    other.user = "al".into();
    other.outbound_proxy = None;
    other.display_name = None;
    a.gw.put_account(now, other).expect("second account");
    a.drain();

    // Out, through the default account: From its AOR, its proxy, its Contact.
    a.gw.handle_input(
        now,
        Input::Stanza(presence(
            "alice@localhost",
            "carol\\40pbx.example@sip.localhost",
            "subscribe",
        )),
    );
    let mut s = sends(a.drain());
    assert_eq!(s.len(), 1);
    let (tx, sub) = s.remove(0);
    assert_eq!(sub.method, "SUBSCRIBE");
    assert_eq!(sub.uri, "sip:carol@pbx.example");
    assert_eq!(sub.from, "\"Alice Two\" <sip:alice2@sip2.localhost>");
    assert_eq!(sub.next_hop.as_deref(), Some("sip:127.0.0.1:5062"));
    let contact = header_in(&sub.headers, "Contact").expect("Contact");
    assert!(
        contact.contains(&account("work", "x").contact_user()),
        "the account's Contact: {contact}"
    );
    assert!(!format!("{sub:?}").contains("alice@localhost"), "{sub:?}");
    // 407 → the same SUBSCRIBE, CSeq + 1, with the account's credentials.
    let challenge = "Digest realm=\"sip2.localhost\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"";
    let mut s = sends(respond(
        &mut a,
        now,
        tx,
        ok(407, &[("Proxy-Authenticate", challenge)]),
    ));
    assert_eq!(s.len(), 1, "answered");
    let (tx, sub2) = s.remove(0);
    assert_eq!(sub2.call_id, sub.call_id);
    let (d1, d2) = (
        sub.dialog.clone().expect("d"),
        sub2.dialog.clone().expect("d"),
    );
    assert_eq!(
        (d2.from_tag.as_str(), d2.cseq),
        (d1.from_tag.as_str(), d1.cseq + 1)
    );
    let pa = header_in(&sub2.headers, "Proxy-Authorization").expect("credentials");
    assert!(
        pa.contains("username=\"alice2\"") && pa.contains("uri=\"sip:carol@pbx.example\""),
        "{pa}"
    );
    assert_eq!(sub2.next_hop.as_deref(), Some("sip:127.0.0.1:5062"));
    respond(
        &mut a,
        now,
        tx,
        ok(
            200,
            &[
                ("To", "<sip:carol@pbx.example>;tag=c1"),
                ("Contact", "<sip:carol@10.0.0.9:5060>"),
                ("Expires", "3600"),
            ],
        ),
    );
    // The NOTIFY arrives at the account's Contact; alice sees carol subscribed + available.
    let call_id = sub.call_id.clone().expect("call-id");
    let to = format!("<sip:alice2@sip2.localhost>;tag={}", d1.from_tag);
    a.gw.handle_input(
        now,
        sip_in(
            "NOTIFY",
            &format!("sip:{}@{A_UDP}", account("work", "x").contact_user()),
            &[
                ("From", "<sip:carol@pbx.example>;tag=c1"),
                ("To", &to),
                ("Call-ID", &call_id),
                ("CSeq", "1 NOTIFY"),
                ("Event", "presence"),
                ("Subscription-State", "active;expires=3599"),
            ],
            PIDF_OPEN,
        ),
    );
    let outs = a.drain();
    assert!(
        outs.iter().any(|o| matches!(
            o,
            Output::SipReply {
                tx: 9,
                code: 200,
                ..
            }
        )),
        "NOTIFY accepted"
    );
    let st = stanzas(&outs);
    assert!(
        st.iter().any(|p| p.attr("type") == Some("subscribed")
            && p.attr("from") == Some("carol\\40pbx.example@sip.localhost")
            && p.attr("to") == Some("alice@localhost")),
        "{st:?}"
    );
    assert!(
        st.iter().any(|p| p.attr("type").is_none()
            && p.attr("from")
                .is_some_and(|f| f.starts_with("carol\\40pbx.example@"))),
        "carol's presence: {st:?}"
    );

    // `#home`: that account's identity, straight to the target; a second 401 is not
    // answered again.
    a.gw.handle_input(
        now,
        Input::Stanza(presence(
            "alice@localhost",
            "carol\\40pbx.example#home@sip.localhost",
            "subscribe",
        )),
    );
    let (tx, sub) = sends(a.drain()).remove(0);
    assert_eq!(sub.from, "sip:al@other.example");
    assert_eq!(sub.next_hop, None);
    let challenge = "Digest realm=\"other.example\", nonce=\"n2\", algorithm=MD5";
    let mut s = sends(respond(
        &mut a,
        now,
        tx,
        ok(401, &[("WWW-Authenticate", challenge)]),
    ));
    let (tx, sub2) = s.remove(0);
    let au = header_in(&sub2.headers, "Authorization").expect("credentials");
    assert!(au.contains("username=\"al\""), "{au}");
    let outs = respond(&mut a, now, tx, ok(401, &[("WWW-Authenticate", challenge)]));
    assert!(sends(outs_clone(&outs)).is_empty(), "answered once only");

    // Someone without accounts still subscribes as himself.
    a.gw.handle_input(
        now,
        Input::Stanza(presence(
            "bob@localhost",
            "carol\\40pbx.example@sip.localhost",
            "subscribe",
        )),
    );
    let (_, sub) = sends(a.drain()).remove(0);
    assert!(sub.from.starts_with("sip:bob@localhost"), "{}", sub.from);
    assert_eq!(sub.next_hop, None);

    // In: a SIP watcher of the `home` AOR, at that account's Contact, reaches alice as a
    // subscription request from `dave\40pbx.example#home@C`; her approval makes the NOTIFY.
    let home_contact = format!("sip:{}@{A_UDP}", account("home", "x").contact_user());
    a.gw.handle_input(
        now,
        sip_in(
            "SUBSCRIBE",
            &home_contact,
            &[
                ("From", "<sip:dave@pbx.example>;tag=d1"),
                ("To", "<sip:al@other.example>"),
                ("Call-ID", "watch-1"),
                ("CSeq", "1 SUBSCRIBE"),
                ("Event", "presence"),
                ("Accept", "application/pidf+xml"),
                ("Contact", "<sip:dave@10.0.0.8:5060>"),
                ("Expires", "600"),
            ],
            "",
        ),
    );
    let outs = a.drain();
    let home_user = account("home", "x").contact_user();
    let ok_contact = outs.iter().find_map(|o| match o {
        Output::SipReply {
            tx: 9,
            code: 200,
            headers,
            ..
        } => Some(
            header_in(headers, "Contact")
                .unwrap_or_default()
                .to_string(),
        ),
        _ => None,
    });
    let ok_contact = ok_contact.expect("SUBSCRIBE accepted");
    assert!(
        ok_contact.contains(&home_user),
        "the account's Contact in the dialog: {ok_contact}"
    );
    let watcher = "dave\\40pbx.example#home@sip.localhost";
    let st = stanzas(&outs);
    assert!(
        st.iter().any(|p| p.attr("type") == Some("subscribe")
            && p.attr("from") == Some(watcher)
            && p.attr("to") == Some("alice@localhost")),
        "{st:?}"
    );
    let notifies = |outs: Vec<Output>| -> Vec<OutRequest> {
        sends(outs)
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| r.method == "NOTIFY")
            .collect()
    };
    let pending = notifies(outs);
    assert_eq!(pending.len(), 1, "NOTIFY pending");
    assert_eq!(pending[0].uri, "sip:dave@10.0.0.8:5060");
    assert_eq!(pending[0].from, "sip:al@other.example");
    let c = header_in(&pending[0].headers, "Contact").unwrap_or_default();
    assert!(c.contains(&home_user), "{c}");
    // alice approves; her presence (the answer to stox's probe) goes out as NOTIFY.
    a.gw.handle_input(
        now,
        Input::Stanza(presence("alice@localhost", watcher, "subscribed")),
    );
    a.drain();
    a.gw.handle_input(
        now + Duration::from_secs(1),
        Input::Stanza(
            format!(
                "<presence xmlns='jabber:component:accept' from='alice@localhost/phone' to='{watcher}'/>"
            )
            .parse()
            .expect("xml"),
        ),
    );
    let mut active = notifies(a.drain());
    a.gw.handle_timeout(now + Duration::from_secs(7));
    active.extend(notifies(a.drain()));
    let last = active.last().expect("a NOTIFY with alice's presence");
    assert_eq!(last.uri, "sip:dave@10.0.0.8:5060");
    assert!(
        header_in(&last.headers, "Subscription-State").is_some_and(|v| v.starts_with("active")),
        "{last:?}"
    );
    let body = String::from_utf8_lossy(&last.body);
    assert!(body.contains("open"), "{body}");
    assert!(
        body.contains("entity=\"sip:al@other.example\"")
            || body.contains("entity='sip:al@other.example'"),
        "the account's AOR is the presentity: {body}"
    );
    assert!(
        !body.contains("alice@localhost"),
        "the XMPP address leaked: {body}"
    );

    // alice removes `work`: her watch of carol through it ends with SUBSCRIBE Expires: 0 in
    // the dialog (RFC 6665 §4.1.2.3), through the account, before the REGISTER Expires: 0.
    let later = now + Duration::from_secs(10);
    a.gw.handle_timeout(later);
    a.drain();
    a.gw.remove_account("alice@localhost", "work")
        .expect("removed");
    let outs = a.drain();
    let st = stanzas(&outs);
    let reqs = sends(outs);
    let methods: Vec<&str> = reqs.iter().map(|(_, r)| r.method.as_str()).collect();
    assert_eq!(methods, vec!["SUBSCRIBE", "REGISTER"], "{reqs:?}");
    let (tx, unsub) = &reqs[0];
    assert_eq!(header_in(&unsub.headers, "Expires"), Some("0"));
    assert_eq!(
        unsub.uri, "sip:carol@10.0.0.9:5060",
        "the dialog's remote target"
    );
    assert_eq!(unsub.call_id.as_deref(), Some(call_id.as_str()));
    assert_eq!(unsub.from, "\"Alice Two\" <sip:alice2@sip2.localhost>");
    let d = unsub.dialog.clone().expect("in the dialog");
    assert_eq!(d.to_tag.as_deref(), Some("c1"));
    assert!(d.cseq > d2.cseq, "{} after {}", d.cseq, d2.cseq);
    assert_eq!(unsub.next_hop.as_deref(), Some("sip:127.0.0.1:5062"));
    let contact = header_in(&unsub.headers, "Contact").unwrap_or_default();
    assert!(
        contact.contains(&account("work", "x").contact_user()),
        "{contact}"
    );
    assert_eq!(header_in(&reqs[1].1.headers, "Expires"), Some("0"));
    // alice is told: carol unavailable, and the authorization (the account's) is gone.
    assert!(
        st.iter().any(|p| p.attr("type") == Some("unavailable")
            && p.attr("from")
                .is_some_and(|f| f.starts_with("carol\\40pbx.example@sip.localhost"))),
        "{st:?}"
    );
    assert!(
        st.iter().any(|p| p.attr("type") == Some("unsubscribed")
            && p.attr("from") == Some("carol\\40pbx.example@sip.localhost")),
        "{st:?}"
    );
    // The provider challenges the SUBSCRIBE: answered once with the removed account's
    // credentials.
    let challenge = "Digest realm=\"sip2.localhost\", nonce=\"n3\", algorithm=MD5, qop=\"auth\"";
    let mut s = sends(respond(
        &mut a,
        later,
        *tx,
        ok(407, &[("Proxy-Authenticate", challenge)]),
    ));
    assert_eq!(s.len(), 1, "the challenge is answered");
    let (tx, unsub2) = s.remove(0);
    assert_eq!(header_in(&unsub2.headers, "Expires"), Some("0"));
    let pa = header_in(&unsub2.headers, "Proxy-Authorization").expect("credentials");
    assert!(pa.contains("username=\"alice2\""), "{pa}");
    assert!(sends(respond(&mut a, later, tx, ok(200, &[]))).is_empty());
    // carol's last NOTIFY (terminated) is acknowledged, not translated.
    a.gw.handle_input(
        later,
        sip_in(
            "NOTIFY",
            &format!("sip:{}@{A_UDP}", account("work", "x").contact_user()),
            &[
                ("From", "<sip:carol@pbx.example>;tag=c1"),
                ("To", &to),
                ("Call-ID", &call_id),
                ("CSeq", "2 NOTIFY"),
                ("Event", "presence"),
                ("Subscription-State", "terminated;reason=timeout"),
            ],
            "",
        ),
    );
    let outs = a.drain();
    assert!(
        outs.iter().any(|o| matches!(
            o,
            Output::SipReply {
                tx: 9,
                code: 200,
                ..
            }
        )),
        "{outs:?}"
    );
    assert!(stanzas(&outs).is_empty(), "{outs:?}");

    // alice removes `home`: dave, watching her at that AOR, gets NOTIFY terminated with
    // reason noresource (RFC 6665 §4.2.2) in his dialog, then the account unregisters; the
    // `#home` watch never got a dialog (401 twice): nothing to end on the SIP side.
    a.gw.remove_account("alice@localhost", "home")
        .expect("removed");
    let reqs = sends(a.drain());
    let methods: Vec<&str> = reqs.iter().map(|(_, r)| r.method.as_str()).collect();
    assert_eq!(methods, vec!["NOTIFY", "REGISTER"], "{reqs:?}");
    let n = &reqs[0].1;
    assert_eq!(n.uri, "sip:dave@10.0.0.8:5060");
    assert_eq!(n.call_id.as_deref(), Some("watch-1"));
    assert_eq!(
        header_in(&n.headers, "Subscription-State"),
        Some("terminated;reason=noresource")
    );
    assert!(n.body.is_empty());
    let c = header_in(&n.headers, "Contact").unwrap_or_default();
    assert!(c.contains(&home_user), "{c}");
    // Every subscription through the two accounts is gone; bob's own watch stays.
    let subs = a.gw.subscriptions(later);
    let watchers: Vec<&str> = subs.iter().map(|s| s.watcher.as_str()).collect();
    assert_eq!(watchers, vec!["bob@localhost"], "{subs:?}");
}

// ------------------------------------------------------------- RFC 3903 PUBLISH

/// Available presence of `from` with `<show/>` and `<status/>`.
fn available(from: &str, to: &str, show: &str, status: &str) -> Element {
    format!(
        "<presence xmlns='jabber:component:accept' from='{from}' to='{to}'><show>{show}</show><status>{status}</status></presence>"
    )
    .parse()
    .expect("xml")
}

fn unavailable(from: &str, to: &str) -> Element {
    format!(
        "<presence xmlns='jabber:component:accept' from='{from}' to='{to}' type='unavailable'/>"
    )
    .parse()
    .expect("xml")
}

/// The one PUBLISH among outputs.
fn the_publish(outs: Vec<Output>) -> (TxId, OutRequest) {
    let mut p: Vec<(TxId, OutRequest)> = sends(outs)
        .into_iter()
        .filter(|(_, r)| r.method == "PUBLISH")
        .collect();
    assert_eq!(p.len(), 1, "one PUBLISH");
    p.remove(0)
}

/// B answers A's PUBLISH; a challenge is answered by A once. The final answer, and the
/// request B accepted it for.
fn publish_at_b(
    a: &mut Side,
    b: &mut Side,
    now: Instant,
    tx: TxId,
    req: OutRequest,
) -> (SipResponse, OutRequest) {
    let r = b_answers(b, now, &req);
    if !matches!(r.code, 401 | 407) {
        respond(a, now, tx, Ok(r.clone()));
        return (r, req);
    }
    let (tx, again) = the_publish(respond(a, now, tx, Ok(r)));
    assert_eq!(
        again.dialog.as_ref().map(|d| d.cseq),
        req.dialog.as_ref().map(|d| d.cseq + 1)
    );
    assert!(
        header_in(&again.headers, "Authorization").is_some()
            || header_in(&again.headers, "Proxy-Authorization").is_some(),
        "the challenge is answered with the account's credentials"
    );
    assert_eq!(again.body, req.body, "the same request, with credentials");
    let r = b_answers(b, now, &again);
    respond(a, now, tx, Ok(r.clone()));
    (r, again)
}

fn published_at_b(b: &Side) -> Vec<String> {
    b.store
        .tables
        .list(Table::Published)
        .expect("list")
        .into_iter()
        .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
        .collect()
}

#[test]
fn presence_is_published_at_the_provider_stox_refreshed_modified_and_removed() {
    let now = Instant::now();
    let mut a = Side::new(now, "sip.localhost");
    let mut b = b_with_alice2(now, "pw-alice2");
    register_at_b(&mut a, &mut b, now, account("work", "pw-alice2"));
    a.drain();
    // Her presence to the gateway (XEP-0100, in her roster) → initial PUBLISH (§4.1).
    a.gw.handle_input(
        now,
        Input::Stanza(available(
            "alice@localhost/phone",
            "sip.localhost",
            "away",
            "In a meeting",
        )),
    );
    let (tx, first) = the_publish(a.drain());
    assert_eq!(first.uri, "sip:alice2@sip2.localhost");
    assert_eq!(first.to, "sip:alice2@sip2.localhost");
    assert_eq!(first.from, "\"Alice Two\" <sip:alice2@sip2.localhost>");
    assert_eq!(first.next_hop.as_deref(), Some("sip:127.0.0.1:5062"));
    assert_eq!(header_in(&first.headers, "Event"), Some("presence"));
    assert_eq!(header_in(&first.headers, "Expires"), Some("3600"));
    assert_eq!(header_in(&first.headers, "SIP-If-Match"), None);
    assert_eq!(first.content_type.as_deref(), Some("application/pidf+xml"));
    let body = String::from_utf8_lossy(&first.body).into_owned();
    assert!(body.contains("In a meeting"), "{body}");
    assert!(body.contains("sip:alice2@sip2.localhost"), "{body}");
    assert!(
        !body.contains("alice@localhost"),
        "her XMPP address stays home: {body}"
    );
    let (r, _) = publish_at_b(&mut a, &mut b, now, tx, first);
    assert_eq!(r.code, 200);
    let etag = header_in(&r.headers, "SIP-ETag").expect("etag").to_string();
    let kept = a.gw.accounts.accounts["alice@localhost|work"]
        .publication
        .etag
        .clone();
    assert_eq!(
        kept.as_deref(),
        Some(etag.as_str()),
        "the entity-tag is kept"
    );
    let held = published_at_b(&b);
    assert_eq!(held.len(), 1);
    assert!(held[0].contains("In a meeting"), "{}", held[0]);
    // The same presence again (broadcast to a contact at C too): nothing to publish.
    a.gw.handle_input(
        now,
        Input::Stanza(available(
            "alice@localhost/phone",
            "carol\\40pbx.example@sip.localhost",
            "away",
            "In a meeting",
        )),
    );
    assert!(sends(a.drain()).iter().all(|(_, r)| r.method != "PUBLISH"));
    // The refresh (§4.2): SIP-If-Match, no body, before the expiry.
    let t = now + Duration::from_secs(3540);
    a.gw.handle_timeout(t - Duration::from_secs(1));
    assert!(sends(a.drain()).iter().all(|(_, r)| r.method != "PUBLISH"));
    a.gw.handle_timeout(t);
    let (tx, refresh) = the_publish(a.drain());
    assert_eq!(
        header_in(&refresh.headers, "SIP-If-Match"),
        Some(etag.as_str())
    );
    assert!(refresh.body.is_empty() && refresh.content_type.is_none());
    assert_eq!(header_in(&refresh.headers, "Expires"), Some("3600"));
    let (r, _) = publish_at_b(&mut a, &mut b, t, tx, refresh);
    assert_eq!(r.code, 200);
    let etag2 = header_in(&r.headers, "SIP-ETag").expect("etag").to_string();
    assert_ne!(etag2, etag, "B gives a new entity-tag on refresh");
    // A new status: modify (§4.3) with the new tag and the new body.
    a.gw.handle_input(
        t,
        Input::Stanza(available(
            "alice@localhost/phone",
            "sip.localhost",
            "chat",
            "Back soon",
        )),
    );
    let (tx, modify) = the_publish(a.drain());
    assert_eq!(
        header_in(&modify.headers, "SIP-If-Match"),
        Some(etag2.as_str())
    );
    assert!(String::from_utf8_lossy(&modify.body).contains("Back soon"));
    let (r, _) = publish_at_b(&mut a, &mut b, t, tx, modify);
    assert_eq!(r.code, 200);
    let etag3 = header_in(&r.headers, "SIP-ETag").expect("etag").to_string();
    let held = published_at_b(&b);
    assert_eq!(held.len(), 1);
    assert!(held[0].contains("Back soon"), "{}", held[0]);
    // Unavailable: removal (§4.4), Expires 0 with the tag, no body.
    a.gw.handle_input(
        t,
        Input::Stanza(unavailable("alice@localhost/phone", "sip.localhost")),
    );
    let (tx, remove) = the_publish(a.drain());
    assert_eq!(header_in(&remove.headers, "Expires"), Some("0"));
    assert_eq!(
        header_in(&remove.headers, "SIP-If-Match"),
        Some(etag3.as_str())
    );
    assert!(remove.body.is_empty());
    let (r, _) = publish_at_b(&mut a, &mut b, t, tx, remove);
    assert_eq!(r.code, 200);
    assert!(published_at_b(&b).is_empty(), "B holds nothing for alice2");
    let p = &a.gw.accounts.accounts["alice@localhost|work"].publication;
    assert!(p.etag.is_none() && p.next.is_none());
}

#[test]
fn publish_waits_for_registration_answers_407_restarts_on_412_and_is_removed_first() {
    let now = Instant::now();
    let mut a = Side::new(now, "sip.localhost");
    a.gw.put_account(now, account("work", "pw"))
        .expect("stored");
    let (reg_tx, _) = sends(a.drain()).remove(0);
    // Not registered yet: nothing published.
    a.gw.handle_input(
        now,
        Input::Stanza(available(
            "alice@localhost/pc",
            "sip.localhost",
            "dnd",
            "Busy",
        )),
    );
    assert!(sends(a.drain()).is_empty());
    // Registered → her presence is published at once.
    let (tx, first) = the_publish(respond(
        &mut a,
        now,
        reg_tx,
        ok(200, &[("Expires", "3600")]),
    ));
    assert!(String::from_utf8_lossy(&first.body).contains("Busy"));
    // 407 → the same PUBLISH with Proxy-Authorization (RFC 7616), CSeq + 1.
    let challenge = "Digest realm=\"proxy.example\", nonce=\"n407\", qop=\"auth\", algorithm=MD5";
    let (tx, authed) = the_publish(respond(
        &mut a,
        now,
        tx,
        ok(407, &[("Proxy-Authenticate", challenge)]),
    ));
    let cred = header_in(&authed.headers, "Proxy-Authorization").expect("credentials");
    assert!(
        cred.contains("username=\"alice2\"")
            && cred.contains("realm=\"proxy.example\"")
            && cred.contains("uri=\"sip:alice2@sip2.localhost\""),
        "{cred}"
    );
    assert_eq!(
        authed.dialog.as_ref().map(|d| d.cseq),
        first.dialog.as_ref().map(|d| d.cseq + 1)
    );
    assert_eq!(authed.body, first.body);
    // 200 with a shorter expiry: the refresh follows it.
    respond(
        &mut a,
        now,
        tx,
        ok(200, &[("SIP-ETag", "e1"), ("Expires", "600")]),
    );
    let p = &a.gw.accounts.accounts["alice@localhost|work"].publication;
    assert_eq!(p.etag.as_deref(), Some("e1"));
    assert_eq!(p.next, Some(now + Duration::from_secs(540)));
    // A new state → modify with e1; 412 → a new full PUBLISH without the tag (§4.1).
    a.gw.handle_input(
        now,
        Input::Stanza(available(
            "alice@localhost/pc",
            "sip.localhost",
            "chat",
            "Free",
        )),
    );
    let (tx, modify) = the_publish(a.drain());
    assert_eq!(header_in(&modify.headers, "SIP-If-Match"), Some("e1"));
    let (tx, anew) = the_publish(respond(&mut a, now, tx, ok(412, &[])));
    assert_eq!(header_in(&anew.headers, "SIP-If-Match"), None);
    assert!(String::from_utf8_lossy(&anew.body).contains("Free"));
    assert_eq!(
        header_in(&anew.headers, "Expires"),
        Some("3600"),
        "asks for its expiry again; the provider may shorten it"
    );
    respond(
        &mut a,
        now,
        tx,
        ok(200, &[("SIP-ETag", "e2"), ("Expires", "600")]),
    );
    // A second challenge of one request is not answered again.
    let t = now + Duration::from_secs(540);
    a.gw.handle_timeout(t);
    let (tx, refresh) = the_publish(a.drain());
    assert_eq!(header_in(&refresh.headers, "SIP-If-Match"), Some("e2"));
    let (tx, _) = the_publish(respond(
        &mut a,
        t,
        tx,
        ok(407, &[("Proxy-Authenticate", challenge)]),
    ));
    let out = respond(&mut a, t, tx, ok(407, &[("Proxy-Authenticate", challenge)]));
    assert!(sends(out).is_empty());
    let p = &a.gw.accounts.accounts["alice@localhost|work"].publication;
    assert_eq!(p.next, Some(t + BACKOFF_MIN), "retried after the backoff");
    // Removing the account removes the publication before it unregisters.
    a.gw.remove_account("alice@localhost", "work")
        .expect("removed");
    let s = sends(a.drain());
    let methods: Vec<&str> = s.iter().map(|(_, r)| r.method.as_str()).collect();
    assert_eq!(methods, ["PUBLISH", "REGISTER"]);
    let (tx, bye) = &s[0];
    assert_eq!(header_in(&bye.headers, "Expires"), Some("0"));
    assert_eq!(header_in(&bye.headers, "SIP-If-Match"), Some("e2"));
    assert!(bye.body.is_empty());
    // Its challenge is answered once, like the account's other last requests.
    let (_, bye2) = the_publish(respond(
        &mut a,
        t,
        *tx,
        ok(407, &[("Proxy-Authenticate", challenge)]),
    ));
    assert!(header_in(&bye2.headers, "Proxy-Authorization").is_some());
    assert_eq!(header_in(&bye2.headers, "SIP-If-Match"), Some("e2"));
}

#[test]
fn a_refresh_missed_while_unregistered_is_sent_once_registered_again() {
    let now = Instant::now();
    let mut a = Side::new(now, "sip.localhost");
    a.gw.put_account(now, account("work", "pw"))
        .expect("stored");
    let (reg_tx, _) = sends(a.drain()).remove(0);
    let out = respond(&mut a, now, reg_tx, ok(200, &[("Expires", "120")]));
    assert!(sends(out).is_empty(), "unavailable: nothing to publish yet");
    a.gw.handle_input(
        now,
        Input::Stanza(available(
            "alice@localhost/pc",
            "sip.localhost",
            "away",
            "Out",
        )),
    );
    let (tx, _) = the_publish(a.drain());
    respond(
        &mut a,
        now,
        tx,
        ok(200, &[("SIP-ETag", "e1"), ("Expires", "60")]),
    );
    // t = 30: the refresh; t = 60: the REGISTER refresh fails, so does the PUBLISH.
    let t = now + Duration::from_secs(30);
    a.gw.handle_timeout(t);
    let (tx, refresh) = the_publish(a.drain());
    assert_eq!(header_in(&refresh.headers, "SIP-If-Match"), Some("e1"));
    respond(
        &mut a,
        t,
        tx,
        ok(200, &[("SIP-ETag", "e2"), ("Expires", "60")]),
    );
    let t = now + Duration::from_secs(60);
    a.gw.handle_timeout(t);
    let s = sends(a.drain());
    let reg = s
        .iter()
        .find(|(_, r)| r.method == "REGISTER")
        .expect("REGISTER")
        .0;
    let publ = s
        .iter()
        .find(|(_, r)| r.method == "PUBLISH")
        .expect("PUBLISH")
        .0;
    respond(&mut a, t, reg, ok(503, &[]));
    respond(&mut a, t, publ, ok(500, &[]));
    // t = 90: the REGISTER is tried again; the PUBLISH waits for it.
    let t = now + Duration::from_secs(90);
    a.gw.handle_timeout(t);
    let s = sends(a.drain());
    let methods: Vec<&str> = s.iter().map(|(_, r)| r.method.as_str()).collect();
    assert_eq!(methods, ["REGISTER"]);
    // Registered again → the publication is refreshed at once with its tag.
    let (_, refresh) = the_publish(respond(&mut a, t, s[0].0, ok(200, &[("Expires", "120")])));
    assert_eq!(header_in(&refresh.headers, "SIP-If-Match"), Some("e2"));
    assert!(refresh.body.is_empty());
}

//! stox as the registrar of its own domain (issue 5): SIP users of `sip.localhost` created
//! through the admin API register with Digest (RFC 3261 §10, §22), are reachable from XMPP
//! (forked to every contact, held while they have none) and must authenticate to speak.
//!
//! ```text
//! admin POST /api/v1/sip-users {"user": "dave", "password": ...}
//! sipp REGISTER sip:sip.localhost (dave) → 401 → REGISTER with credentials → 200, the
//!   binding listed with its expiry; a wrong password → 401 again, never 200
//! alice → dave@sip.localhost while dave has no contact: held; dave registers a SIPp UAS as
//!   contact → both messages arrive there, in order; a second contact → a message reaches
//!   both
//! sipp MESSAGE From sip:dave@sip.localhost to alice → 407 → with credentials → 200, alice
//!   gets it from dave@sip.localhost
//! baresip carol@sip.localhost registers (REGISTER_OK); with a wrong password it fails
//! ```

use std::time::Duration;

use stox_tests::baresip::{Baresip, BaresipOptions};
use stox_tests::sipp::Sipp;
use stox_tests::{Prosody, ProsodyOptions, Stox, XmppClient, PASSWORD};

const T: Duration = Duration::from_secs(20);
const DOMAIN: &str = "sip.localhost";

struct World {
    _prosody: Prosody,
    stox: Stox,
    alice: XmppClient,
}

fn world() -> World {
    let prosody = Prosody::start(ProsodyOptions::without_offline()).expect("prosody");
    let stox = Stox::start(&prosody, "[registrar]\nmin_expires = 1\n").expect("stox");
    let alice = XmppClient::connect(&prosody, "alice", PASSWORD, "laptop").expect("alice");
    World {
        _prosody: prosody,
        stox,
        alice,
    }
}

fn create_user(w: &World, user: &str, password: &str) {
    let r = w
        .stox
        .admin_request(
            "POST",
            "/api/v1/sip-users",
            Some(&format!(
                r#"{{"user": "{user}", "password": "{password}"}}"#
            )),
        )
        .expect("admin");
    assert_eq!(r.status, 201, "{}", r.body.as_str());
}

fn metric(w: &World, name: &str) -> Option<f64> {
    let r = w.stox.admin_get("/metrics").ok()?;
    r.body
        .lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// sipp registers dave with Digest (Expires 60), then unregisters
/// expect 401 with `WWW-Authenticate: Digest realm="sip.localhost"` (MD5, qop auth), then
///        200 listing the contact with expires=60; the unregistration gets 200 with no
///        Contact; a wrong password gets 401 again and nothing is bound
#[test]
fn sipp_registers_with_digest_and_unregisters() {
    let w = world();
    create_user(&w, "dave", "dave-secret");
    let contact = "sip:dave@127.0.0.1:5999";
    let run = Sipp::uac_register(
        w.stox.sip_addr(),
        "dave",
        DOMAIN,
        "dave-secret",
        contact,
        60,
        200,
        Some(Duration::from_millis(300)),
    )
    .run()
    .expect("sipp");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let answers = run.final_responses("REGISTER", true);
    let codes: Vec<u16> = answers.iter().filter_map(|m| m.status()).collect();
    assert_eq!(codes, vec![401, 200, 200], "{}", run.summary());
    let challenge = answers[0].header("WWW-Authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Digest ")
            && challenge.contains("realm=\"sip.localhost\"")
            && challenge.contains("algorithm=MD5")
            && challenge.contains("qop=\"auth\""),
        "{challenge}"
    );
    assert_eq!(
        answers[1].header("Contact"),
        Some(format!("<{contact}>;expires=60").as_str())
    );
    assert_eq!(answers[2].header("Contact"), None, "unregistered");

    let run = Sipp::uac_register(
        w.stox.sip_addr(),
        "dave",
        DOMAIN,
        "wrong-secret",
        contact,
        60,
        401,
        None,
    )
    .run()
    .expect("sipp");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let codes: Vec<u16> = run
        .final_responses("REGISTER", true)
        .iter()
        .filter_map(|m| m.status())
        .collect();
    assert_eq!(codes, vec![401, 401]);
    assert_eq!(metric(&w, "stox_sip_bindings"), Some(0.0));
    assert!(metric(&w, "stox_sip_auth_failures_total").unwrap_or(0.0) >= 1.0);
}

/// alice sends two messages to dave@sip.localhost while dave has no contact
/// expect no error (held in sled)
/// dave registers a SIPp UAS as his contact
/// expect the UAS gets both messages, in order, To sip:dave@sip.localhost
/// dave registers a second UAS; alice sends a third message
/// expect both UASes get it (forked, RFC 3261 §16.7)
#[test]
fn messages_wait_for_registration_and_fork_to_every_contact() {
    let mut w = world();
    create_user(&w, "dave", "dave-secret");
    let dave = format!("dave@{DOMAIN}");
    w.alice.send_message(&dave, "first").expect("send");
    w.alice.send_message(&dave, "second").expect("send");
    let early = w.alice.drain(Duration::from_millis(800));
    assert!(
        !early.iter().any(|s| s.kind() == Some("error")),
        "{:?}",
        early.iter().map(|s| s.xml()).collect::<Vec<_>>()
    );

    let a = Sipp::uas_message_n(200, "OK", 3).expect("uas a");
    let run = Sipp::uac_register(
        w.stox.sip_addr(),
        "dave",
        DOMAIN,
        "dave-secret",
        &format!("sip:dave@{}", a.addr()),
        60,
        200,
        None,
    )
    .run()
    .expect("register a");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let b = Sipp::uas_message_n(200, "OK", 1).expect("uas b");
    std::thread::sleep(Duration::from_millis(1500));
    let run = Sipp::uac_register(
        w.stox.sip_addr(),
        "dave",
        DOMAIN,
        "dave-secret",
        &format!("sip:dave@{}", b.addr()),
        60,
        200,
        None,
    )
    .run()
    .expect("register b");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    // Both contacts are listed in the 200.
    let ok = run.final_responses("REGISTER", true);
    assert_eq!(ok.last().map(|m| m.headers_named("Contact").len()), Some(2));
    w.alice.send_message(&dave, "third").expect("send");

    let a = a.wait(T).expect("uas a ends");
    let b = b.wait(T).expect("uas b ends");
    assert_eq!(a.exit_code, Some(0), "{}", a.summary());
    assert_eq!(b.exit_code, Some(0), "{}", b.summary());
    let bodies = |run: &stox_tests::sipp::SippRun| -> Vec<String> {
        run.requests("MESSAGE", true)
            .iter()
            .map(|m| m.body_text())
            .collect()
    };
    assert_eq!(bodies(&a), vec!["first", "second", "third"]);
    assert_eq!(bodies(&b), vec!["third"]);
    for m in a.requests("MESSAGE", true) {
        assert_eq!(m.header_uri("To"), Some("sip:dave@sip.localhost"));
        assert_eq!(
            m.header_uri("From")
                .map(|f| f.split(';').next().unwrap_or(f)),
            Some("sip:alice@localhost")
        );
    }
}

/// sipp sends MESSAGE From sip:dave@sip.localhost to alice with dave's credentials
/// expect 407 with a Proxy-Authenticate challenge, then 200; alice gets the message from
///        dave@sip.localhost
/// the same with a wrong password
/// expect 407 again and nothing for alice
#[test]
fn a_sip_user_of_the_domain_authenticates_to_send() {
    let mut w = world();
    create_user(&w, "dave", "dave-secret");
    let run = Sipp::uac_message_auth(
        w.stox.sip_addr(),
        "alice",
        "localhost",
        "dave",
        DOMAIN,
        "dave-secret",
        "hello from the registrar",
        200,
    )
    .run()
    .expect("sipp");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let codes: Vec<u16> = run
        .final_responses("MESSAGE", true)
        .iter()
        .filter_map(|m| m.status())
        .collect();
    assert_eq!(codes, vec![407, 200]);
    let m = w.alice.expect_message(T).expect("message");
    assert_eq!(
        m.from().map(|f| f.split('/').next().unwrap_or(f)),
        Some("dave@sip.localhost")
    );
    assert_eq!(m.body().as_deref(), Some("hello from the registrar"));

    let run = Sipp::uac_message_auth(
        w.stox.sip_addr(),
        "alice",
        "localhost",
        "dave",
        DOMAIN,
        "wrong-secret",
        "should not arrive",
        407,
    )
    .run()
    .expect("sipp");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let late = w.alice.drain(Duration::from_millis(800));
    assert!(
        !late
            .iter()
            .any(|s| s.body().is_some_and(|b| b.contains("should not"))),
        "{:?}",
        late.iter().map(|s| s.xml()).collect::<Vec<_>>()
    );
}

/// baresip carol@sip.localhost (outbound stox, regint 60) with the right password
/// expect 401 then 200 to its REGISTERs, and a message alice sends to carol@sip.localhost
///        reaches baresip
/// baresip with a wrong password
/// expect 401 to every REGISTER, never 200, and after five failures 403: the address is
///        blocked (brute-force protection)
#[test]
fn baresip_registers_and_is_reachable() {
    let mut w = world();
    create_user(&w, "carol", "carol-secret");
    let mut options = BaresipOptions::new("carol", 440.0)
        .domain(DOMAIN)
        .outbound(w.stox.sip_addr())
        .sip_trace(true);
    options.register_interval = 60;
    options.password = Some("carol-secret".into());
    let b = Baresip::start(options).expect("baresip");
    let answers = b
        .expect_final_responses("REGISTER", 2, T)
        .expect("two answers");
    let codes: Vec<u16> = answers.iter().filter_map(|m| m.status()).collect();
    assert_eq!(codes, vec![401, 200], "{}", b.context());
    w.alice
        .send_message(&format!("carol@{DOMAIN}"), "hi baresip")
        .expect("send");
    let deadline = std::time::Instant::now() + T;
    while !b.log_contains("hi baresip") {
        assert!(std::time::Instant::now() < deadline, "{}", b.context());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(b);

    let mut options = BaresipOptions::new("carol", 440.0)
        .domain(DOMAIN)
        .outbound(w.stox.sip_addr())
        .sip_trace(true);
    options.register_interval = 60;
    options.password = Some("not-her-secret".into());
    let b = Baresip::start(options).expect("baresip");
    // baresip answers each challenge again at once: after [registrar] max_failures (5)
    // wrong responses its address is blocked (403 with Retry-After).
    let deadline = std::time::Instant::now() + T;
    let codes = loop {
        let codes: Vec<u16> = b
            .received_final_responses("REGISTER")
            .iter()
            .filter_map(|m| m.status())
            .collect();
        if codes.contains(&403) {
            break codes;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{codes:?}\n{}",
            b.context()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let blocked = codes.iter().position(|c| *c == 403).unwrap_or(0);
    assert!(blocked >= 5, "blocked after the fifth failure: {codes:?}");
    assert!(codes[..blocked].iter().all(|c| *c == 401), "{codes:?}");
    assert!(!codes.contains(&200), "{codes:?}");
}

/// Not an open relay: a MESSAGE to a domain stox does not serve (`sip:bob@example.net`)
/// gets 403 and goes nowhere, from anybody.
/// raw UDP MESSAGE sip:bob@example.net → expect 403 with a reason; alice gets nothing
#[test]
fn requests_for_foreign_domains_are_refused() {
    let mut w = world();
    for target in ["sip:bob@example.net", "sip:bob@127.0.0.1:5099"] {
        let request = stox_tests::sip_raw::build_message(
            target,
            "mallory",
            "127.0.0.1:9".parse().expect("addr"),
            "UDP",
            b"relay me",
        );
        let reply = stox_tests::sip_raw::send_sip_udp(w.stox.sip_addr(), &request)
            .expect("a final response");
        let reply = stox_tests::SipMessage::parse(&reply).expect("parse");
        assert_eq!(reply.status(), Some(403), "{target}: {reply:?}");
    }
    let got = w.alice.drain(Duration::from_millis(500));
    assert!(
        !got.iter().any(|s| s.body().is_some()),
        "{:?}",
        got.iter().map(|s| s.xml()).collect::<Vec<_>>()
    );
}

/// A SIP phone calling a SIP user of `C` is redirected to his contacts (RFC 3261 §8.3):
/// stox bridges SIP and XMPP, it does not proxy SIP to SIP.
/// raw INVITE sip:dave@sip.localhost while dave has no binding → 480
/// sipp registers dave with Contact sip:dave@127.0.0.1:5999 → the INVITE gets 302 with
///   that Contact
#[test]
fn a_sip_call_to_a_user_of_the_domain_is_redirected_to_his_contact() {
    let w = world();
    create_user(&w, "dave", "dave-secret");
    let invite = || {
        let text = stox_tests::sip_raw::build_message(
            &format!("sip:dave@{DOMAIN}"),
            "carol",
            "127.0.0.1:9".parse().expect("addr"),
            "UDP",
            b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
        );
        let text = String::from_utf8(text)
            .expect("utf-8")
            .replacen("MESSAGE sip:", "INVITE sip:", 1)
            .replace(
                "CSeq: 1 MESSAGE",
                "CSeq: 1 INVITE\r\nContact: <sip:carol@127.0.0.1:9>",
            )
            .replace(
                "Content-Type: text/plain;charset=UTF-8",
                "Content-Type: application/sdp",
            );
        let reply = stox_tests::sip_raw::send_sip_udp(w.stox.sip_addr(), text.as_bytes())
            .expect("a final response");
        stox_tests::SipMessage::parse(&reply).expect("parse")
    };
    let reply = invite();
    assert_eq!(reply.status(), Some(480), "{reply:?}");
    let run = Sipp::uac_register(
        w.stox.sip_addr(),
        "dave",
        DOMAIN,
        "dave-secret",
        "sip:dave@127.0.0.1:5999",
        60,
        200,
        None,
    )
    .run()
    .expect("sipp");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let reply = invite();
    assert_eq!(reply.status(), Some(302), "{reply:?}");
    let contact = reply.header("Contact").unwrap_or_default();
    assert!(
        contact.starts_with("<sip:dave@127.0.0.1:5999>") && contact.contains("expires="),
        "{contact}"
    );
}

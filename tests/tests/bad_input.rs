//! End-to-end: what stox does with SIP requests and XMPP stanzas it must refuse, and that it
//! survives garbage.
//!
//! SIP side (raw datagrams, RFC 3261): `sips:` targets (RFC 7247 §8 → 416), loops
//! (RFC 3261 §16.3 → 483), unparseable requests (§21.4.1 → 400 with a Warning, §18.3),
//! random bytes and truncated requests (nothing answers them, stox keeps working),
//! OPTIONS (§11 → 200 with Allow) and methods stox does not implement (§21.4.6 → 405).
//!
//! XMPP side (real Prosody + slixmpp): malformed contact JIDs (XEP-0106, RFC 7247 §6),
//! messages to the gateway domain itself, `groupchat` (RFC 7572 §4 covers one-to-one
//! messages only). For these, stox runs with a SIPp UAS as its outbound proxy, so "nothing
//! was sent to SIP" is observable: after the refused stanza, a valid one must be the only
//! request the UAS saw.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use stox_tests::scenarios::{bare, RawRequest, World, XorShift};
use stox_tests::Sipp;

const T: Duration = Duration::from_secs(10);

fn start() -> World {
    World::start().expect("prosody, stox and alice")
}

/// raw UAC sends MESSAGE sips:alice@localhost (To the same), body "secret"
/// expect 416 Unsupported URI Scheme (RFC 7247 §8: SIPS is never translated to XMPP);
///        alice gets nothing
#[test]
fn sips_request_uri_gets_416_and_nothing_reaches_xmpp() {
    let mut w = start();
    let ex = RawRequest::message("sips:alice@localhost", "secret")
        .send_udp(w.stox.sip_addr())
        .expect("udp exchange");
    assert_eq!(ex.status(), Some(416), "{}", ex.summary());
    let seen = w.alice_messages(Duration::from_millis(700));
    assert!(seen.is_empty(), "alice must get nothing: {seen:?}");
}

/// raw UAC sends MESSAGE sip:alice@localhost with Max-Forwards: 0
/// expect 483 Too Many Hops (RFC 3261 §16.3 step 3); alice gets nothing
#[test]
fn max_forwards_zero_gets_483() {
    let mut w = start();
    let ex = RawRequest::message("sip:alice@localhost", "looping")
        .max_forwards(Some("0"))
        .send_udp(w.stox.sip_addr())
        .expect("udp exchange");
    assert_eq!(ex.status(), Some(483), "{}", ex.summary());
    let seen = w.alice_messages(Duration::from_millis(700));
    assert!(seen.is_empty(), "alice must get nothing: {seen:?}");
}

/// raw UAC sends over UDP MESSAGE sip:alice@localhost with Content-Length: banana
/// expect 400 Bad Request (RFC 3261 §21.4.1) carrying the request's Via/Call-ID/CSeq and a
///        Warning: 399 stox "malformed request: …" that says what was wrong; alice gets nothing
#[test]
fn content_length_banana_gets_400_with_warning() {
    let mut w = start();
    let ex = RawRequest::message("sip:alice@localhost", "hello")
        .call_id("banana-1@127.0.0.1")
        .content_length("banana")
        .send_udp(w.stox.sip_addr())
        .expect("udp exchange");
    assert_eq!(ex.status(), Some(400), "{}", ex.summary());
    let response = ex.final_response().expect("a final response");
    assert_eq!(response.header("Call-ID"), Some("banana-1@127.0.0.1"));
    assert_eq!(response.header("CSeq"), Some("1 MESSAGE"));
    let warning = response.header("Warning").unwrap_or_default();
    assert!(
        warning.starts_with("399 ") && warning.contains("malformed request"),
        "Warning: {warning}\n{}",
        ex.summary()
    );
    let seen = w.alice_messages(Duration::from_millis(500));
    assert!(seen.is_empty(), "alice must get nothing: {seen:?}");
}

/// raw UDP socket sends 200 datagrams of random bytes (1..1400 bytes, fixed seed), 100 random
///   datagrams that start with a MESSAGE request line, and every truncation of a valid MESSAGE
///   to alice (cut inside the headers and inside the body, RFC 3261 §18.3: a short UDP body is
///   an error)
/// then raw UAC sends a valid MESSAGE "after the storm"
/// expect 200 for it; alice gets exactly one message, "after the storm" (no partial ones);
///        GET /health answers 200; the stox process is the same one
#[test]
fn garbage_and_truncated_datagrams_leave_stox_working() {
    let mut w = start();
    let pid = w.stox.pid();
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("udp socket");
    let stox = w.stox.sip_addr();
    let mut rng = XorShift::new(0x5107_0c0d_e5ee_d001);
    for _ in 0..200 {
        let len = 1 + rng.below(1400);
        socket.send_to(&rng.bytes(len), stox).expect("send");
    }
    for _ in 0..100 {
        let mut datagram = b"MESSAGE sip:alice@localhost SIP/2.0\r\n".to_vec();
        let len = rng.below(600);
        datagram.extend(rng.bytes(len));
        socket.send_to(&datagram, stox).expect("send");
    }
    let local = socket.local_addr().expect("local addr");
    let whole = RawRequest::message(
        "sip:alice@localhost",
        "TRUNCATED body that must never arrive",
    )
    .build(local, "UDP");
    for cut in (1..whole.len()).step_by(7) {
        socket.send_to(&whole[..cut], stox).expect("send");
        std::thread::sleep(Duration::from_millis(1));
    }

    let ex = RawRequest::message("sip:alice@localhost", "after the storm")
        .send_udp(stox)
        .expect("udp exchange");
    assert_eq!(ex.status(), Some(200), "{}", ex.summary());
    let contact = ex.sender_jid("carol", w.component());
    let got = w
        .alice
        .expect(T, |m| {
            m.is_message() && m.body().as_deref() == Some("after the storm")
        })
        .expect("alice gets the valid message");
    assert_eq!(
        got.from().map(bare),
        Some(contact.as_str()),
        "{}",
        got.xml()
    );
    let health = w.stox.admin_get("/health").expect("GET /health");
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(w.stox.is_running(), "stox exited:\n{}", w.stox.log_tail(30));
    assert_eq!(w.stox.pid(), pid);

    let others = w.alice_messages(Duration::from_millis(700));
    assert!(
        others.is_empty(),
        "only the valid message may reach alice, also got: {:?}",
        others.iter().map(|s| s.xml()).collect::<Vec<_>>()
    );
}

/// raw UAC sends over UDP MESSAGE sip:alice@localhost with Content-Length: 37 and only the
///   first 9 body bytes ("TRUNCATED")
/// expect 400 Bad Request (RFC 3261 §18.3: "If the transport packet ends before the end of
///        the message body, this is considered an error ... the element SHOULD treat it as a
///        malformed request and respond with 400"); alice gets nothing
#[test]
fn udp_body_shorter_than_content_length_gets_400() {
    let mut w = start();
    let ex = RawRequest::message("sip:alice@localhost", "TRUNCATED")
        .content_length("37")
        .send_udp(w.stox.sip_addr())
        .expect("udp exchange");
    assert_eq!(ex.status(), Some(400), "{}", ex.summary());
    let seen = w.alice_messages(Duration::from_millis(700));
    assert!(
        seen.is_empty(),
        "a truncated request must not reach alice: {:?}",
        seen.iter().map(|s| s.xml()).collect::<Vec<_>>()
    );
}

/// raw UAC sends OPTIONS sip:alice@localhost
/// expect 200 OK with Allow listing MESSAGE (RFC 3261 §11.2)
#[test]
fn options_gets_200_with_allow_message() {
    let w = start();
    let ex = RawRequest::new("OPTIONS", "sip:alice@localhost")
        .header("Accept", "application/sdp")
        .send_udp(w.stox.sip_addr())
        .expect("udp exchange");
    assert_eq!(ex.status(), Some(200), "{}", ex.summary());
    let allow: Vec<String> = ex
        .final_response()
        .map(|r| r.headers_named("Allow"))
        .unwrap_or_default()
        .iter()
        .flat_map(|v| v.split(','))
        .map(|m| m.trim().to_ascii_uppercase())
        .collect();
    assert!(
        allow.iter().any(|m| m == "MESSAGE"),
        "Allow: {allow:?}\n{}",
        ex.summary()
    );
}

/// raw UAC sends SUBSCRIBE sip:alice@localhost, Event: dialog (a package stox does not have)
/// expect 489 Bad Event with `Allow-Events: presence` (RFC 6665 §8.2.1, §7.2.2)
/// raw UAC sends PUBLISH sip:dave@sip.localhost (dave: a SIP user of stox's domain)
/// expect 401 with a Digest challenge: only dave publishes his presence (issue 5)
/// raw UAC answers it as dave, with a body that is not XML under
///        `Content-Type: application/pidf+xml`, then one under `text/plain`
/// expect 400 (RFC 3903 §6 step 5: the body is checked) with a Warning, then 415 with
///        `Accept: application/pidf+xml`; stox stays up and answers an OPTIONS with 200
#[test]
fn presence_requests_with_bad_events_and_bodies() {
    let w = start();
    let ex = RawRequest::new("SUBSCRIBE", "sip:alice@localhost")
        .header("Event", "dialog")
        .header("Expires", "600")
        .header("Contact", "<sip:carol@127.0.0.1>")
        .send_udp(w.stox.sip_addr())
        .expect("udp exchange");
    assert_eq!(ex.status(), Some(489), "{}", ex.summary());
    let allow_events = ex
        .final_response()
        .and_then(|r| r.header("Allow-Events"))
        .unwrap_or_default();
    assert_eq!(allow_events, "presence", "{}", ex.summary());

    let created = w
        .stox
        .admin_request(
            "POST",
            "/api/v1/sip-users",
            Some(r#"{"user": "dave", "password": "dave's password"}"#),
        )
        .expect("admin");
    assert_eq!(created.status, 201);
    let publish = |body: &[u8], content_type: &str, auth: Option<String>| {
        let mut r = RawRequest::new("PUBLISH", "sip:dave@sip.localhost")
            .header("Event", "presence")
            .header("Expires", "60")
            .body(content_type, body);
        if let Some(a) = auth {
            r = r.header("Authorization", &a);
        }
        r.send_udp(w.stox.sip_addr()).expect("udp exchange")
    };
    let ex = publish(b"<presence><tuple id='x'", "application/pidf+xml", None);
    assert_eq!(ex.status(), Some(401), "{}", ex.summary());
    let challenge = ex
        .final_response()
        .and_then(|r| r.header("WWW-Authenticate"))
        .unwrap_or_default()
        .to_string();
    let auth = || {
        stox_tests::digest::md5_credentials(
            &challenge,
            "PUBLISH",
            "sip:dave@sip.localhost",
            "dave",
            "dave's password",
        )
    };
    assert!(auth().is_some(), "a Digest challenge: {challenge}");
    let ex = publish(b"<presence><tuple id='x'", "application/pidf+xml", auth());
    assert_eq!(ex.status(), Some(400), "{}", ex.summary());
    let warning = ex
        .final_response()
        .and_then(|r| r.header("Warning"))
        .unwrap_or_default();
    assert!(warning.contains("PIDF"), "{}", ex.summary());

    let ex = publish(b"online", "text/plain", auth());
    assert_eq!(ex.status(), Some(415), "{}", ex.summary());
    let accept = ex
        .final_response()
        .and_then(|r| r.header("Accept"))
        .unwrap_or_default();
    assert_eq!(accept, "application/pidf+xml", "{}", ex.summary());

    let ex = RawRequest::new("OPTIONS", "sip:alice@localhost")
        .send_udp(w.stox.sip_addr())
        .expect("udp exchange");
    assert_eq!(ex.status(), Some(200), "{}", ex.summary());
    let allow = ex
        .final_response()
        .and_then(|r| r.header("Allow"))
        .unwrap_or_default()
        .to_ascii_uppercase();
    for m in ["MESSAGE", "SUBSCRIBE", "NOTIFY", "PUBLISH"] {
        assert!(allow.contains(m), "Allow: {allow}");
    }
}

/// sipp UAS(P) as stox's outbound proxy, answering one MESSAGE with 200
/// alice sends <message type=KIND id='bad1'> to LOCAL@sip.localhost (or to sip.localhost
///   itself when LOCAL is None), expecting an error with one of `conditions`; then a valid
///   message "proof" to bob\40pbx.example@sip.localhost
/// expect alice gets the error (id 'bad1', from the address she wrote to); the UAS got exactly
///        one MESSAGE, sip:bob@pbx.example with body "proof": the refused stanza never left
fn refused_stanza(local: Option<&str>, kind: &str, conditions: &[&str]) {
    let uas = Sipp::uas_message(200, "OK").expect("sipp uas");
    let mut w = World::start_with(&format!(
        "[sip]\noutbound_proxy = \"sip:127.0.0.1:{}\"\n",
        uas.port()
    ))
    .expect("prosody, stox and alice");
    let to = match local {
        Some(local) => format!("{local}@{}", w.component()),
        None => w.component().to_string(),
    };
    w.alice
        .send_raw(&format!(
            "<message to='{to}' type='{kind}' id='bad1'><body>must not reach SIP</body></message>"
        ))
        .expect("send");
    let error = w
        .alice
        .expect(T, |m| m.is_message() && m.kind() == Some("error"))
        .expect("alice gets an error");
    let condition = error.error_condition().unwrap_or_default();
    assert!(
        conditions.contains(&condition.as_str()),
        "expected one of {conditions:?}: {}",
        error.xml()
    );
    assert_eq!(error.id(), Some("bad1"), "{}", error.xml());
    assert_eq!(error.from(), Some(to.as_str()), "{}", error.xml());

    let proof = format!("bob\\40pbx.example@{}", w.component());
    w.alice
        .send_raw(&format!(
            "<message to='{proof}' type='chat' id='ok1'><body>proof</body></message>"
        ))
        .expect("send");
    let run = uas.wait(T + T).expect("sipp uas result");
    let requests = run.received_requests_unique();
    assert_eq!(requests.len(), 1, "{}", run.summary());
    assert_eq!(requests[0].request_uri(), Some("sip:bob@pbx.example"));
    assert_eq!(requests[0].body, b"proof");
}

/// alice sends <message to='bad\40@sip.localhost'> (escapes to the SIP address "bad@": no host)
/// expect an error with jid-malformed or item-not-found; nothing reaches SIP
#[test]
fn message_to_malformed_contact_jid_is_refused() {
    refused_stanza(
        Some("bad\\40"),
        "chat",
        &["jid-malformed", "item-not-found"],
    );
}

/// alice sends <message to='sip.localhost'> (the gateway itself, no contact)
/// expect an error stanza (service-unavailable: the gateway takes no messages); nothing
///        reaches SIP
#[test]
fn message_to_the_gateway_domain_is_refused() {
    refused_stanza(None, "chat", &["service-unavailable"]);
}

/// alice sends <message type='groupchat'> to bob\40pbx.example@sip.localhost
/// expect not-acceptable (RFC 7572 covers one-to-one messages); nothing reaches SIP
#[test]
fn groupchat_message_is_not_acceptable() {
    refused_stanza(Some("bob\\40pbx.example"), "groupchat", &["not-acceptable"]);
}

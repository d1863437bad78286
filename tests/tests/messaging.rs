//! End-to-end pager-mode IM through stox: RFC 7572 (SIP MESSAGE ⇄ XMPP `<message/>`),
//! RFC 7247 §6 / XEP-0106 addresses, RFC 7247 §7 error mapping. Real Prosody, real slixmpp,
//! real SIPp; stox is the `stox` binary.
//!
//! Each test starts its own Prosody (mod_offline disabled, so loss is visible as an error),
//! its own stox and its own SIPp, on free loopback ports.

use std::time::Duration;

use stox_tests::scenarios::World;
use stox_tests::sipp::Transport;
use stox_tests::{sip_contact_jid, Sipp, Stanza};

const BODY: &str = "héllo ünïcode 你好 🎉 <&>";
const T: Duration = Duration::from_secs(10);
const SIPP_TIMEOUT: Duration = Duration::from_secs(15);

/// start prosody (no mod_offline), stox, slixmpp alice@localhost/phone
fn setup() -> World {
    World::start().expect("prosody, stox and alice")
}

fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

/// sipp UAC(P) sends MESSAGE sip:alice@localhost, body BODY, text/plain;charset=UTF-8
/// expect alice gets <message from='carol\40127.0.0.1\3aP@sip.localhost'> with body BODY
/// expect sipp got 200
fn sip_to_xmpp(transport: Transport) {
    let mut s = setup();
    let uac = Sipp::uac_message(s.stox.sip_addr(), "alice", "localhost", BODY)
        .transport(transport)
        .timeout(SIPP_TIMEOUT);
    let port = uac.local_port();
    let run = uac.run().expect("sipp");

    let contact = sip_contact_jid("carol", "127.0.0.1", port, s.prosody.component());
    let got = s
        .alice
        .expect(T, |m| m.is_message() && m.body().is_some())
        .expect("alice receives the MESSAGE");
    assert_eq!(got.body().as_deref(), Some(BODY), "{}", got.xml());
    assert_eq!(
        got.from().map(bare),
        Some(contact.as_str()),
        "{}",
        got.xml()
    );
    assert_eq!(got.to().map(bare), Some("alice@localhost"), "{}", got.xml());
    assert_ne!(got.kind(), Some("error"), "{}", got.xml());

    assert_eq!(run.final_status(), Some(200), "{}", run.summary());
    assert_eq!(run.successful, 1, "{}", run.summary());
}

#[test]
fn sip_message_over_udp_reaches_xmpp_user_byte_exact() {
    sip_to_xmpp(Transport::Udp);
}

#[test]
fn sip_message_over_tcp_reaches_xmpp_user_byte_exact() {
    sip_to_xmpp(Transport::Tcp);
}

/// sipp UAS(P) answers 200
/// alice sends <message to='bob\40127.0.0.1\3aP@sip.localhost' type='chat'><body>BODY</body>
/// expect sipp got MESSAGE sip:bob@127.0.0.1:P, From <sip:alice@localhost;gr=phone>,
///        Content-Type text/plain, body BODY byte-exact
#[test]
fn xmpp_message_reaches_sip_uas_byte_exact() {
    let mut s = setup();
    let uas = Sipp::uas_message(200, "OK").expect("sipp uas");
    let port = uas.port();
    let to = sip_contact_jid("bob", "127.0.0.1", port, s.prosody.component());
    s.alice
        .send_raw(&format!(
            "<message to='{to}' type='chat' id='m1'><body>{}</body></message>",
            stox_tests::xmpp::xml_escape(BODY)
        ))
        .expect("send");
    let run = uas.wait(T + T).expect("sipp uas result");

    let requests = run.received_requests_unique();
    assert_eq!(requests.len(), 1, "{}", run.summary());
    let message = requests[0];
    assert_eq!(message.method(), Some("MESSAGE"));
    assert_eq!(
        message.request_uri(),
        Some(format!("sip:bob@127.0.0.1:{port}").as_str())
    );
    let from = message.header_uri("From").unwrap_or("");
    let mut from_parts = from.split(';');
    assert_eq!(
        from_parts.next(),
        Some("sip:alice@localhost"),
        "From: {from}"
    );
    assert!(
        from_parts.any(|p| p == "gr=phone"),
        "From must carry the resource as GRUU: {from}"
    );
    let to_uri = message.header_uri("To").unwrap_or("");
    assert_eq!(to_uri, format!("sip:bob@127.0.0.1:{port}"));
    let content_type = message.header("Content-Type").unwrap_or("");
    assert!(
        content_type.to_ascii_lowercase().starts_with("text/plain"),
        "Content-Type: {content_type}"
    );
    assert_eq!(message.body_text(), BODY);
    assert_eq!(message.body, BODY.as_bytes());
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());

    // A 200 is not an error: alice gets no error stanza back.
    let errors: Vec<Stanza> = s
        .alice
        .drain(Duration::from_millis(500))
        .into_iter()
        .filter(|m| m.kind() == Some("error"))
        .collect();
    assert!(errors.is_empty(), "unexpected errors: {errors:?}");
}

/// sipp UAS(P) answers STATUS
/// alice sends a message to bob\40127.0.0.1\3aP@sip.localhost with id 'e1'
/// expect alice gets <message type='error' id='e1'> with CONDITION (RFC 7247 §7, Table 3)
fn sip_error_becomes_stanza_error(status: u16, reason: &str, condition: &str) {
    let mut s = setup();
    let uas = Sipp::uas_message(status, reason).expect("sipp uas");
    let port = uas.port();
    let contact = sip_contact_jid("bob", "127.0.0.1", port, s.prosody.component());
    s.alice
        .send_raw(&format!(
            "<message to='{contact}' type='chat' id='e1'><body>are you there?</body></message>"
        ))
        .expect("send");
    let error = s
        .alice
        .expect(T, |m| m.is_message() && m.kind() == Some("error"))
        .expect("alice gets an error message");
    let run = uas.wait(T).expect("sipp uas result");
    assert_eq!(run.received_requests_unique().len(), 1, "{}", run.summary());
    assert_eq!(
        error.error_condition().as_deref(),
        Some(condition),
        "SIP {status} → {}",
        error.xml()
    );
    assert_eq!(error.id(), Some("e1"), "{}", error.xml());
    assert_eq!(
        error.from().map(bare),
        Some(contact.as_str()),
        "{}",
        error.xml()
    );
}

#[test]
fn sip_404_becomes_item_not_found() {
    sip_error_becomes_stanza_error(404, "Not Found", "item-not-found");
}

#[test]
fn sip_486_becomes_recipient_unavailable() {
    sip_error_becomes_stanza_error(486, "Busy Here", "recipient-unavailable");
}

#[test]
fn sip_480_becomes_recipient_unavailable() {
    sip_error_becomes_stanza_error(480, "Temporarily Unavailable", "recipient-unavailable");
}

#[test]
fn sip_503_becomes_internal_server_error() {
    sip_error_becomes_stanza_error(503, "Service Unavailable", "internal-server-error");
}

/// sipp UAC sends MESSAGE sip:nobody@localhost (no such account; mod_offline disabled)
/// expect Prosody bounces, stox answers a 4xx/6xx (RFC 7247 §7 Table 2), never 200
#[test]
fn sip_message_to_unknown_xmpp_user_gets_an_error_status() {
    let s = setup();
    let run = Sipp::uac_message(s.stox.sip_addr(), "nobody", "localhost", BODY)
        .timeout(SIPP_TIMEOUT)
        .run()
        .expect("sipp");
    let status = run.final_status();
    assert!(
        matches!(status, Some(400..=699)),
        "expected a 4xx-6xx, got {status:?}\n{}",
        run.summary()
    );
    assert_eq!(run.successful, 0, "{}", run.summary());
    assert_eq!(run.failed, 1, "{}", run.summary());
}

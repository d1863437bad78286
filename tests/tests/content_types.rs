//! End-to-end content types and header mapping through stox, both ways:
//!
//! * RFC 7572 §4 / §5: body, `Subject` ⇄ `<subject/>`, `Call-ID` ⇄ `<thread/>`,
//!   `Content-Language` ⇄ `xml:lang`;
//! * RFC 3862 `message/cpim` (with RFC 5438 `imdn.` headers), RFC 2854 `text/html`,
//!   RFC 2046 §4.1.2 charsets;
//! * RFC 3994 isComposing ⇄ XEP-0085 chat states (the RFC 7573 §7 mapping);
//! * RFC 5438 IMDN ⇄ XEP-0184 receipts;
//! * RFC 3261 §21.4.16: 415 with `Accept` for what stox cannot translate;
//! * RFC 3261 §18.1.1 / RFC 7572 §5: large messages over TCP, byte-exact.
//!
//! SIP → XMPP requests are written by hand ([`RawRequest`], over UDP) where SIPp would
//! not send them as needed; the XMPP side is real Prosody + slixmpp; the SIP receiver is a
//! real SIPp UAS.

use std::time::Duration;

use stox_tests::scenarios::{bare, descendant, parse_xml_body, xml_lang, RawRequest, World};
use stox_tests::sipp::{SippCommand, Transport};
use stox_tests::xmpp::xml_escape;
use stox_tests::{sip_contact_jid, SipMessage, Sipp, Stanza};

const T: Duration = Duration::from_secs(10);
const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
const NS_RECEIPTS: &str = "urn:xmpp:receipts";

fn start() -> World {
    World::start().expect("prosody, stox and alice")
}

/// A raw MESSAGE to alice; asserts stox answered 200 and returns the sender's contact JID.
fn send_to_alice(w: &World, request: RawRequest) -> String {
    let ex = request.send_udp(w.stox.sip_addr()).expect("udp exchange");
    assert_eq!(ex.status(), Some(200), "{}", ex.summary());
    ex.sender_jid("carol", w.component())
}

/// The first message alice receives (not an error), checked to come from `contact`.
fn alice_receives(w: &mut World, contact: &str) -> Stanza {
    let got = w
        .alice
        .expect(T, |m| m.is_message() && m.kind() != Some("error"))
        .expect("alice receives a message");
    assert_eq!(got.from().map(bare), Some(contact), "{}", got.xml());
    assert_eq!(got.to().map(bare), Some("alice@localhost"), "{}", got.xml());
    got
}

/// raw UAC sends MESSAGE sip:alice@localhost, Content-Type message/cpim:
///   imdn.Message-ID: cpim-42, imdn.Disposition-Notification: positive-delivery,
///   inner Content-Type text/plain;charset=UTF-8, inner body "héllo from CPIM 你好"
/// expect 200; alice gets <message id='cpim-42'> with body "héllo from CPIM 你好" (the inner
///        body only, no CPIM headers) and a XEP-0184 <request/>
#[test]
fn sip_cpim_wrapping_text_plain_delivers_the_inner_body() {
    let mut w = start();
    let inner = "héllo from CPIM 你好";
    let cpim = format!(
        "From: <sip:carol@127.0.0.1>\r\n\
         To: <sip:alice@localhost>\r\n\
         DateTime: 2024-05-01T12:00:00Z\r\n\
         NS: imdn <urn:ietf:params:imdn>\r\n\
         imdn.Message-ID: cpim-42\r\n\
         imdn.Disposition-Notification: positive-delivery\r\n\
         \r\n\
         Content-Type: text/plain;charset=UTF-8\r\n\
         \r\n\
         {inner}"
    );
    let contact = send_to_alice(
        &w,
        RawRequest::new("MESSAGE", "sip:alice@localhost").body("message/cpim", cpim.as_bytes()),
    );
    let got = alice_receives(&mut w, &contact);
    assert_eq!(got.body().as_deref(), Some(inner), "{}", got.xml());
    assert_eq!(got.id(), Some("cpim-42"), "{}", got.xml());
    let request = got.child("request").expect("a XEP-0184 receipt request");
    assert_eq!(request.ns(), NS_RECEIPTS, "{}", got.xml());
}

/// raw UAC sends MESSAGE, Content-Type text/html;charset=UTF-8,
///   "<html><head><title>T</title><style>p{}</style></head><body><p>Hello <b>world</b>
///    &amp; caf&eacute;</p></body></html>"
/// expect alice gets the body "Hello world & café": the text, no tags, no head content
#[test]
fn sip_text_html_is_reduced_to_text() {
    let mut w = start();
    let html = "<html><head><title>T</title><style>p { color: red }</style></head>\
                <body><p>Hello <b>world</b> &amp; caf&eacute;</p></body></html>";
    let contact = send_to_alice(
        &w,
        RawRequest::new("MESSAGE", "sip:alice@localhost")
            .body("text/html;charset=UTF-8", html.as_bytes()),
    );
    let got = alice_receives(&mut w, &contact);
    let body = got.body().unwrap_or_default();
    assert_eq!(body, "Hello world & café", "{}", got.xml());
    assert!(!body.contains(['<', '>']), "tags left in {body:?}");
}

/// raw UAC sends MESSAGE, Content-Type text/plain;charset=ISO-8859-1, body bytes
///   "caf" 0xE9 " cr" 0xE8 "me"
/// expect alice gets the body "café crème" (decoded from Latin-1, re-encoded as UTF-8)
#[test]
fn sip_latin1_body_arrives_as_unicode() {
    let mut w = start();
    let contact = send_to_alice(
        &w,
        RawRequest::new("MESSAGE", "sip:alice@localhost")
            .body("text/plain;charset=ISO-8859-1", b"caf\xe9 cr\xe8me"),
    );
    let got = alice_receives(&mut w, &contact);
    assert_eq!(got.body().as_deref(), Some("café crème"), "{}", got.xml());
}

/// raw UAC sends MESSAGE, Content-Type application/im-iscomposing+xml, state active
/// expect 200; alice gets <message> with <composing xmlns='http://jabber.org/protocol/chatstates'/>
///        and no <body/>
#[test]
fn sip_iscomposing_active_becomes_composing_chat_state() {
    let mut w = start();
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                <isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\">\n\
                  <state>active</state>\n\
                  <contenttype>text/plain</contenttype>\n\
                  <refresh>60</refresh>\n\
                </isComposing>\n";
    let contact = send_to_alice(
        &w,
        RawRequest::new("MESSAGE", "sip:alice@localhost")
            .body("application/im-iscomposing+xml", body.as_bytes()),
    );
    let got = alice_receives(&mut w, &contact);
    let composing = got.child("composing").expect("a <composing/> chat state");
    assert_eq!(composing.ns(), NS_CHATSTATES, "{}", got.xml());
    assert!(got.body().is_none(), "no body expected: {}", got.xml());
}

/// raw UAC sends MESSAGE, Content-Type message/imdn+xml: message-id "imdn-7", delivered
/// expect 200; alice gets <message> with <received xmlns='urn:xmpp:receipts' id='imdn-7'/>
///        and no <body/>
#[test]
fn sip_imdn_delivered_becomes_xep_0184_receipt() {
    let mut w = start();
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                <imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">\n\
                  <message-id>imdn-7</message-id>\n\
                  <datetime>2024-05-01T12:00:00Z</datetime>\n\
                  <delivery-notification><status><delivered/></status></delivery-notification>\n\
                </imdn>\n";
    let contact = send_to_alice(
        &w,
        RawRequest::new("MESSAGE", "sip:alice@localhost").body("message/imdn+xml", body.as_bytes()),
    );
    let got = alice_receives(&mut w, &contact);
    let received = got.child("received").expect("a XEP-0184 <received/>");
    assert_eq!(received.ns(), NS_RECEIPTS, "{}", got.xml());
    assert_eq!(received.attr("id"), Some("imdn-7"), "{}", got.xml());
    assert!(got.body().is_none(), "no body expected: {}", got.xml());
}

/// raw UAC sends MESSAGE, Content-Type image/png, 8 bytes of PNG signature
/// expect 415 Unsupported Media Type with Accept listing text/plain (RFC 3261 §21.4.16);
///        alice gets nothing
#[test]
fn sip_image_png_gets_415_with_accept() {
    let mut w = start();
    let ex = RawRequest::new("MESSAGE", "sip:alice@localhost")
        .body("image/png", b"\x89PNG\r\n\x1a\n")
        .send_udp(w.stox.sip_addr())
        .expect("udp exchange");
    assert_eq!(ex.status(), Some(415), "{}", ex.summary());
    let accept = ex
        .final_response()
        .and_then(|r| r.header("Accept"))
        .unwrap_or_default();
    let types: Vec<String> = accept
        .split(',')
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect();
    assert!(
        types.iter().any(|t| t == "text/plain"),
        "Accept: {accept}\n{}",
        ex.summary()
    );
    let seen = w.alice_messages(Duration::from_millis(700));
    assert!(seen.is_empty(), "alice must get nothing: {seen:?}");
}

/// raw UAC sends MESSAGE with Subject "Lunch?", Call-ID "thread-77@127.0.0.1",
///   Content-Language fr, body "On y va ?"
/// expect alice gets <message xml:lang='fr'> with <subject>Lunch?</subject>,
///        <thread>thread-77@127.0.0.1</thread>, <body>On y va ?</body> (RFC 7572 §5)
#[test]
fn sip_subject_call_id_and_language_map_to_the_stanza() {
    let mut w = start();
    let contact = send_to_alice(
        &w,
        RawRequest::message("sip:alice@localhost", "On y va ?")
            .header("Subject", "Lunch?")
            .header("Content-Language", "fr")
            .call_id("thread-77@127.0.0.1"),
    );
    let got = alice_receives(&mut w, &contact);
    assert_eq!(got.body().as_deref(), Some("On y va ?"), "{}", got.xml());
    assert_eq!(got.subject().as_deref(), Some("Lunch?"), "{}", got.xml());
    assert_eq!(
        got.thread().as_deref(),
        Some("thread-77@127.0.0.1"),
        "{}",
        got.xml()
    );
    assert_eq!(xml_lang(&got), Some("fr"), "{}", got.xml());
}

/// sipp UAS(P) on UDP answers 200; alice sends `payload` to bob\40127.0.0.1\3aP@sip.localhost;
/// returns the one MESSAGE SIPp received.
fn xmpp_to_sip_uas(w: &mut World, attrs: &str, payload: &str) -> SipMessage {
    let uas = Sipp::uas_message(200, "OK").expect("sipp uas");
    let to = w.contact("bob", uas.port());
    w.alice
        .send_raw(&format!(
            "<message to='{to}' type='chat' id='x1'{attrs}>{payload}</message>"
        ))
        .expect("send");
    let run = uas.wait(T + T).expect("sipp uas result");
    let requests = run.received_requests_unique();
    assert_eq!(requests.len(), 1, "{}", run.summary());
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let message = requests[0].clone();
    assert_eq!(message.method(), Some("MESSAGE"));
    assert_eq!(
        message
            .header_uri("From")
            .map(|f| f.split(';').next().unwrap_or(f)),
        Some("sip:alice@localhost")
    );
    message
}

fn content_type(message: &SipMessage) -> String {
    message
        .header("Content-Type")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// sipp UAS(P) answers 200
/// alice sends <message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/>
/// expect sipp got MESSAGE, Content-Type application/im-iscomposing+xml,
///        body <isComposing><state>active</state>…</isComposing> (RFC 3994 §3)
#[test]
fn xmpp_composing_becomes_iscomposing_active() {
    let mut w = start();
    let message = xmpp_to_sip_uas(&mut w, "", &format!("<composing xmlns='{NS_CHATSTATES}'/>"));
    assert_eq!(content_type(&message), "application/im-iscomposing+xml");
    let doc = parse_xml_body(&message.body).expect("isComposing XML");
    assert_eq!(doc.name(), "isComposing", "{}", message.body_text());
    assert_eq!(doc.ns(), "urn:ietf:params:xml:ns:im-iscomposing");
    assert_eq!(
        descendant(&doc, &["state"]).map(|s| s.text()).as_deref(),
        Some("active"),
        "{}",
        message.body_text()
    );
}

/// sipp UAS(P) answers 200
/// alice sends <message><received xmlns='urn:xmpp:receipts' id='x'/></message>
/// expect sipp got MESSAGE, Content-Type message/imdn+xml, body <imdn> with
///        <message-id>x</message-id> and <delivery-notification><status><delivered/>
///        (RFC 5438 §7.2.1)
#[test]
fn xmpp_receipt_becomes_imdn_delivered() {
    let mut w = start();
    let message = xmpp_to_sip_uas(
        &mut w,
        "",
        &format!("<received xmlns='{NS_RECEIPTS}' id='x'/>"),
    );
    assert_eq!(content_type(&message), "message/imdn+xml");
    let doc = parse_xml_body(&message.body).expect("IMDN XML");
    assert_eq!(doc.name(), "imdn", "{}", message.body_text());
    assert_eq!(doc.ns(), "urn:ietf:params:xml:ns:imdn");
    assert_eq!(
        descendant(&doc, &["message-id"])
            .map(|s| s.text())
            .as_deref(),
        Some("x"),
        "{}",
        message.body_text()
    );
    assert!(
        descendant(&doc, &["delivery-notification", "status", "delivered"]).is_some(),
        "{}",
        message.body_text()
    );
}

/// sipp UAS(P) answers 200
/// alice sends <message xml:lang='de'><subject>Termin</subject><thread>th-9@alice</thread>
///   <body>Grüße</body></message>
/// expect sipp got MESSAGE with Subject: Termin, Call-ID: th-9@alice, Content-Language: de,
///        body "Grüße" (RFC 7572 §4)
#[test]
fn xmpp_subject_thread_and_language_map_to_headers() {
    let mut w = start();
    let message = xmpp_to_sip_uas(
        &mut w,
        " xml:lang='de'",
        "<subject>Termin</subject><thread>th-9@alice</thread><body>Grüße</body>",
    );
    assert_eq!(message.header("Subject"), Some("Termin"));
    assert_eq!(message.header("Call-ID"), Some("th-9@alice"));
    assert_eq!(message.header("Content-Language"), Some("de"));
    assert_eq!(content_type(&message), "text/plain");
    assert_eq!(message.body, "Grüße".as_bytes());
}

/// About 4,000 bytes of CJK, emoji and XML-special characters (no line breaks).
fn big_body(target: usize) -> String {
    let unit = "你好世界🎉<&>\"' ";
    let mut s = String::new();
    while s.len() + unit.len() <= target {
        s.push_str(unit);
    }
    s.push_str("end");
    s
}

/// sipp UAS listens on TCP port P only (-t t1), answers 200
/// alice sends a ~4,000-byte body (CJK, emoji, <&>"') to bob\40127.0.0.1\3aP@sip.localhost
/// expect sipp got the MESSAGE over TCP (RFC 3261 §18.1.1: too large for UDP),
///        body byte-exact
#[test]
fn xmpp_large_message_goes_over_tcp_byte_exact() {
    let mut w = start();
    let body = big_body(4000);
    assert!(body.len() > 3900, "{}", body.len());
    let uas = SippCommand::new("uas_message.xml")
        .template("STATUS", "200")
        .template("REASON", "OK")
        .transport(Transport::Tcp)
        .spawn()
        .expect("sipp tcp uas");
    let to = w.contact("bob", uas.port());
    w.alice
        .send_raw(&format!(
            "<message to='{to}' type='chat' id='big1'><body>{}</body></message>",
            xml_escape(&body)
        ))
        .expect("send");
    let run = uas.wait(T + T).expect("sipp uas result");
    let requests = run.received_requests_unique();
    assert_eq!(requests.len(), 1, "{}", run.summary());
    let message = requests[0];
    assert_eq!(message.transport, "TCP");
    assert_eq!(message.body.len(), body.len());
    assert_eq!(message.body, body.as_bytes());
    let errors: Vec<Stanza> = w
        .alice
        .drain(Duration::from_millis(500))
        .into_iter()
        .filter(|m| m.kind() == Some("error"))
        .collect();
    assert!(errors.is_empty(), "unexpected errors: {errors:?}");
}

/// sipp UAS listens on UDP port P only
/// alice sends the same ~4,000-byte body to bob\40127.0.0.1\3aP@sip.localhost with id 'big2'
/// expect alice gets <message type='error' id='big2'> with policy-violation (RFC 7572 §5:
///        too large for UDP, and no TCP at P); sipp got nothing
#[test]
fn xmpp_large_message_without_tcp_path_is_policy_violation() {
    let mut w = start();
    let body = big_body(4000);
    let uas = Sipp::uas_message(200, "OK").expect("sipp udp uas");
    let to = w.contact("bob", uas.port());
    w.alice
        .send_raw(&format!(
            "<message to='{to}' type='chat' id='big2'><body>{}</body></message>",
            xml_escape(&body)
        ))
        .expect("send");
    let error = w
        .alice
        .expect(T, |m| m.is_message() && m.kind() == Some("error"))
        .expect("alice gets an error");
    assert_eq!(
        error.error_condition().as_deref(),
        Some("policy-violation"),
        "{}",
        error.xml()
    );
    assert_eq!(error.id(), Some("big2"), "{}", error.xml());
    assert_eq!(error.from().map(bare), Some(to.as_str()), "{}", error.xml());
    let run = uas.stop().expect("sipp uas result");
    assert!(
        run.received_requests().is_empty(),
        "nothing may reach the UDP-only UAS: {}",
        run.summary()
    );
}

/// sipp UAC(P) over TCP sends MESSAGE sip:alice@localhost with a ~5,000-byte UTF-8 body
/// expect 200; alice gets the body byte-exact from carol\40127.0.0.1\3aP@sip.localhost
#[test]
fn sip_large_message_over_tcp_reaches_xmpp_byte_exact() {
    let mut w = start();
    let body = big_body(5000);
    assert!(body.len() > 4900, "{}", body.len());
    let uac = Sipp::uac_message(w.stox.sip_addr(), "alice", "localhost", &body)
        .transport(Transport::Tcp)
        .timeout(Duration::from_secs(15));
    let contact = sip_contact_jid("carol", "127.0.0.1", uac.local_port(), w.component());
    let run = uac.run().expect("sipp");
    let got = alice_receives(&mut w, &contact);
    let received = got.body().unwrap_or_default();
    assert_eq!(received.len(), body.len(), "{}", got.xml());
    assert_eq!(received, body);
    assert_eq!(run.final_status(), Some(200), "{}", run.summary());
}

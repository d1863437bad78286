//! End-to-end calls through stox (issue 3): a real SIP phone (baresip, a WAV tone as its
//! microphone, recording what it hears) or SIPp on one side, a real XMPP call client
//! (StanzaJS + libwebrtc, `tests/peers/jingle`) logged in to Prosody on the other, and stox
//! between them doing XEP-0353 + Jingle (XEP-0166/0167/0176/0320) ⇄ SIP INVITE, with its
//! relay terminating ICE + DTLS-SRTP toward the XMPP client and plain RTP toward the phone.
//!
//! Each test reads like this (C = `carol\40127.0.0.1\3aP@sip.localhost`, the gateway JID of
//! the phone at 127.0.0.1:P; the phone sends 440 Hz, alice's client 660 Hz):
//!
//! ```text
//! start prosody (websocket), stox, alice (jingle peer), carol (baresip, outbound proxy stox)
//! carol dials sip:alice@localhost
//! expect alice gets <propose id=S> (type chat, <store/>) from C/phone; alice rings, proceeds
//! expect carol sees 180; alice gets session-initiate S from C/phone (ICE-UDP, 127.0.0.1
//!        candidates, DTLS actpass, the phone's codecs); alice accepts; carol gets 200 OK
//! expect alice hears 440 Hz; carol hears 660 Hz
//! carol hangs up (BYE)  →  alice gets session-terminate <success/>
//! ```
//!
//! The other direction: alice sends `<propose>` to C (or `session-initiate` straight to
//! C/phone), stox answers `<ringing/>` + `<proceed/>` from C/phone, sends INVITE
//! `sip:carol@127.0.0.1:P`, 180 → session-info `<ringing/>`, 200 → session-accept.
//!
//! Also covered, each in its own test: hang-up from either side, SIP over TCP, PCMU-only and
//! Opus-only offers both ways, RFC 4733 keys from baresip and from a SIPp pcap, two calls at
//! once, CANCEL before and after session-initiate, decline (603), busy (486) both ways, the
//! SIP error → Jingle reason table, ring timeouts both ways (480 + `<retract/>`, CANCEL +
//! `<timeout/>`), an offline callee, 488 for offers stox cannot relay, a silent SIP leg
//! (`no_media_secs`), a duplicate session-terminate, both devices of the callee ringing (the
//! first to proceed gets the call), the phone's hold/resume re-INVITEs, symmetric RTP latching
//! toward a phone behind a NAT, the admin API's calls and metrics, and calls both ways with
//! a SIP UA over WebSocket (`ws_phone.js`) whose in-dialog requests from stox (ACK, BYE)
//! come over its WebSocket to its `.invalid` Contact.
//! Every test ends with no ERROR and no panic in stox's log.
//!
//! Run: `cargo build -p stox-gateway --bin stox && cargo test -p stox-tests --test calls --
//! --test-threads=4` (one to two minutes; the pcap tests need root for SIPp's `play_pcap_audio`).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use minidom::Element;
use serde_json::Value;
use stox_tests::baresip::{Baresip, BaresipOptions, Codecs};
use stox_tests::jingle_peer::{Answer, CallOptions, JinglePeer, PeerOptions};
use stox_tests::process::temp_dir;
use stox_tests::scenarios::RawRequest;
use stox_tests::sipp::{pcmu_tone_with_rfc4733, write_rtp_pcap};
use stox_tests::{sip_contact_jid, Prosody, ProsodyOptions, SipMessage, Sipp, Stox, PASSWORD};

const T: Duration = Duration::from_secs(10);
/// The SIP phone's tone.
const PHONE_HZ: f64 = 440.0;
/// The XMPP client's tone.
const CLIENT_HZ: u32 = 660;
/// ±10 Hz around the tone sent.
const TOL: f64 = 10.0;
/// The jingle peer sends amplitude 0.3 (RMS 0.21); it hears silence as RMS ~0.
const MIN_RMS: f64 = 0.05;
/// baresip's tone has amplitude 8000 (RMS ≈ 5657), in 16-bit units; silence is ~0.
const RMS_FLOOR: f64 = 1000.0;
/// What baresip's recording skips: call setup, ICE + DTLS on the XMPP leg, jitter buffer.
const SKIP: Duration = Duration::from_millis(1000);

const NS_JINGLE: &str = "urn:xmpp:jingle:1";
const NS_RTP: &str = "urn:xmpp:jingle:apps:rtp:1";
const NS_ICE: &str = "urn:xmpp:jingle:transports:ice-udp:1";
const NS_DTLS: &str = "urn:xmpp:jingle:apps:dtls:0";
const NS_JMI: &str = "urn:xmpp:jingle-message:0";
const NS_HINTS: &str = "urn:xmpp:hints";

// ---------------------------------------------------------------------------------------------
// The world of one test

/// Prosody (with WebSocket for the jingle peer, without mod_offline so loss shows) and stox.
struct Calls {
    // stox first: fields drop in order, so stox stops before Prosody does.
    stox: Stox,
    prosody: Prosody,
    /// `[media] port_range` given to stox, if any.
    media: Option<(u16, u16)>,
}

/// A media port range of its own for each stox of this test process, above Linux's
/// ephemeral ports (32768–60999) and away from baresip's `rtp_ports` (40000–49998).
fn media_range() -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 40;
    let lo = 61000 + n * 100;
    (lo, lo + 99)
}

impl Calls {
    /// stox with its own media port range and `extra` config.
    fn start(extra: &str) -> Calls {
        let media = media_range();
        let config = format!(
            "[media]\naddress = \"127.0.0.1\"\nport_range = \"{}-{}\"\n{extra}",
            media.0, media.1
        );
        Calls::start_config(&config, Some(media))
    }

    /// stox with no `[media]` / `[calls]` sections at all: the defaults must work.
    fn start_default_media() -> Calls {
        Calls::start_config("", None)
    }

    fn start_config(config: &str, media: Option<(u16, u16)>) -> Calls {
        let prosody = Prosody::start(ProsodyOptions {
            websocket: true,
            ..ProsodyOptions::without_offline()
        })
        .expect("prosody");
        let stox = Stox::start(&prosody, config).expect("stox");
        Calls {
            stox,
            prosody,
            media,
        }
    }

    /// alice@localhost/a, a StanzaJS + libwebrtc client sending 660 Hz.
    fn alice(&self, answer: Answer) -> JinglePeer {
        JinglePeer::connect(
            &self.prosody,
            "alice",
            PASSWORD,
            "a",
            PeerOptions::tone(CLIENT_HZ).answer(answer),
        )
        .expect("alice online")
    }

    /// Another XMPP user's call client, `user@localhost/resource`, sending `tone_hz`.
    fn client(&self, user: &str, resource: &str, tone_hz: u32) -> JinglePeer {
        JinglePeer::connect(
            &self.prosody,
            user,
            PASSWORD,
            resource,
            PeerOptions::tone(tone_hz),
        )
        .expect("jingle peer online")
    }

    /// A baresip phone `sip:user@127.0.0.1:PORT` sending 440 Hz, with stox as its outbound
    /// proxy, answering by hand, tracing its SIP messages.
    fn phone(&self, user: &str, codecs: Codecs) -> Baresip {
        self.phone_with_tone(user, PHONE_HZ, codecs)
    }

    /// [`Calls::phone`] sending `tone_hz`.
    fn phone_with_tone(&self, user: &str, tone_hz: f64, codecs: Codecs) -> Baresip {
        let mut options = BaresipOptions::new(user, tone_hz)
            .codecs(codecs)
            .sip_trace(true);
        options.outbound_proxy = Some(self.stox.sip_addr());
        Baresip::start(options).expect("baresip")
    }

    /// The gateway JID of a phone, e.g. `carol\40127.0.0.1\3a5070@sip.localhost`.
    fn contact(&self, phone: &Baresip) -> String {
        let user = phone
            .uri()
            .trim_start_matches("sip:")
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        sip_contact_jid(
            &user,
            "127.0.0.1",
            phone.sip_port(),
            self.prosody.component(),
        )
    }

    /// Ends the test: stox's log must hold no ERROR and no panic (a call's task that died
    /// would only show there).
    fn finish(self) {
        let log = std::fs::read_to_string(self.stox.log_path()).unwrap_or_default();
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("panicked"))
            .collect();
        assert!(bad.is_empty(), "stox logged errors:\n{}", bad.join("\n"));
    }

    fn alice_uri(&self) -> String {
        format!("sip:alice@{}", self.prosody.domain())
    }

    fn alice_bare(&self) -> String {
        format!("alice@{}", self.prosody.domain())
    }
}

// ---------------------------------------------------------------------------------------------
// Stanza helpers

/// Parses a captured stanza (RFC 7395 framing puts `xmlns='jabber:client'` on each one; add
/// it if it is missing).
fn parse(xml: &str) -> Element {
    if let Ok(e) = xml.parse::<Element>() {
        return e;
    }
    let fixed = match xml.find([' ', '>']) {
        Some(at) => format!("{} xmlns='jabber:client'{}", &xml[..at], &xml[at..]),
        None => xml.to_string(),
    };
    fixed
        .parse::<Element>()
        .unwrap_or_else(|e| panic!("captured stanza does not parse ({e}): {xml}"))
}

/// The `<jingle/>` of an IQ, if it has one.
fn jingle_of(iq: &Element) -> Option<&Element> {
    iq.get_child("jingle", NS_JINGLE)
}

/// The Jingle IQs alice received for `sid` with `action`, parsed.
fn received_jingle(peer: &JinglePeer, sid: &str, action: &str) -> Vec<Element> {
    peer.captured_stanzas("in", action)
        .expect("capture log")
        .iter()
        .map(|x| parse(x))
        .filter(|iq| {
            jingle_of(iq)
                .is_some_and(|j| j.attr("action") == Some(action) && j.attr("sid") == Some(sid))
        })
        .collect()
}

/// The first JMI message of `kind` (propose, ringing, ...) with id `sid` alice received.
fn received_jmi(peer: &JinglePeer, sid: &str, kind: &str) -> Option<Element> {
    peer.captured_stanzas("in", &format!("<{kind}"))
        .expect("capture log")
        .iter()
        .map(|x| parse(x))
        .find(|m| {
            m.name() == "message"
                && m.get_child(kind, NS_JMI)
                    .is_some_and(|c| c.attr("id") == Some(sid))
        })
}

/// Everything stox said about its media in a `session-initiate` or `session-accept` (and
/// the `transport-info`s that trickled candidates): payload types, DTLS setup, candidates.
#[derive(Debug, Default)]
struct Offer {
    /// Payload-type names, e.g. `["opus", "PCMU", "telephone-event"]`.
    codecs: Vec<String>,
    /// `setup` of the XEP-0320 fingerprint.
    setup: Option<String>,
    /// `hash` of the fingerprint.
    hash: Option<String>,
    /// Whether the ICE transport has `ufrag` and `pwd`.
    ice_credentials: bool,
    /// (ip, port, protocol, type) of every candidate, in the stanza or trickled.
    candidates: Vec<(String, u16, String, String)>,
}

fn candidates_of(transport: &Element) -> Vec<(String, u16, String, String)> {
    transport
        .children()
        .filter(|c| c.name() == "candidate")
        .map(|c| {
            (
                c.attr("ip").unwrap_or_default().to_string(),
                c.attr("port").and_then(|p| p.parse().ok()).unwrap_or(0),
                c.attr("protocol").unwrap_or_default().to_string(),
                c.attr("type").unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// What stox sent alice for `sid` in its `action` (`session-initiate` or `session-accept`)
/// plus its `transport-info`s.
fn stox_media(peer: &JinglePeer, sid: &str, action: &str) -> Offer {
    let stanzas = received_jingle(peer, sid, action);
    let iq = stanzas
        .first()
        .unwrap_or_else(|| panic!("alice received no {action} for {sid}"));
    let jingle = jingle_of(iq).expect("jingle");
    let mut offer = Offer::default();
    for content in jingle.children().filter(|c| c.name() == "content") {
        if let Some(description) = content.get_child("description", NS_RTP) {
            assert_eq!(
                description.attr("media"),
                Some("audio"),
                "{}",
                String::from(iq)
            );
            offer.codecs.extend(
                description
                    .children()
                    .filter(|p| p.name() == "payload-type")
                    .filter_map(|p| p.attr("name").map(str::to_string)),
            );
        }
        if let Some(transport) = content.get_child("transport", NS_ICE) {
            offer.ice_credentials = transport.attr("ufrag").is_some_and(|u| !u.is_empty())
                && transport.attr("pwd").is_some_and(|p| !p.is_empty());
            offer.candidates.extend(candidates_of(transport));
            if let Some(fp) = transport.get_child("fingerprint", NS_DTLS) {
                offer.setup = fp.attr("setup").map(str::to_string);
                offer.hash = fp.attr("hash").map(str::to_string);
            }
        }
    }
    for info in received_jingle(peer, sid, "transport-info") {
        let jingle = jingle_of(&info).expect("jingle");
        for content in jingle.children().filter(|c| c.name() == "content") {
            if let Some(transport) = content.get_child("transport", NS_ICE) {
                offer.candidates.extend(candidates_of(transport));
            }
        }
    }
    offer
}

/// stox's host candidates: on 127.0.0.1 (the media address), UDP, in the port range.
fn assert_loopback_candidates(offer: &Offer, range: Option<(u16, u16)>) {
    assert!(
        !offer.candidates.is_empty(),
        "no ICE candidate from stox: {offer:?}"
    );
    for (ip, port, protocol, kind) in &offer.candidates {
        assert_eq!(ip, "127.0.0.1", "{offer:?}");
        assert!(protocol.eq_ignore_ascii_case("udp"), "{offer:?}");
        assert_eq!(kind, "host", "{offer:?}");
        if let Some((lo, hi)) = range {
            assert!(
                (lo..=hi).contains(port),
                "candidate port {port} outside [media] port_range {lo}-{hi}: {offer:?}"
            );
        }
    }
}

fn has_codec(codecs: &[String], name: &str) -> bool {
    codecs.iter().any(|c| c.eq_ignore_ascii_case(name))
}

/// The phone heard `hz` (its recording, after [`SKIP`]).
fn assert_phone_heard(phone: &Baresip, hz: f64) -> u32 {
    let wav = phone.last_recording().expect("baresip recording");
    let heard = wav.analyse(SKIP);
    assert!(
        heard.is_tone(hz, TOL) && heard.rms > RMS_FLOOR && heard.analysed >= Duration::from_secs(1),
        "{} should hear {hz} Hz from the XMPP client, heard {heard:?}\n{}",
        phone.uri(),
        phone.context()
    );
    wav.sample_rate
}

/// The `param` of the phone's `CALL_CLOSED` (e.g. `603 Decline`), within `timeout`.
fn phone_closed(phone: &mut Baresip, timeout: Duration) -> String {
    phone
        .expect_event("CALL_CLOSED", timeout)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .param
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// SIP → XMPP

/// A SIP phone's call to alice, established, with audio both ways checked at alice.
struct SipCall {
    w: Calls,
    alice: JinglePeer,
    phone: Baresip,
    sid: String,
    /// The phone's gateway JID with resource, `C/phone`.
    caller: String,
}

/// carol (baresip, `codecs`) dials sip:alice@localhost through stox; alice answers
/// (`Answer::Auto`: `<ringing/>`, then `<proceed/>`, then accepts the session-initiate).
/// Checks the XEP-0353 proposal, the 180, the session-initiate and that alice hears 440 Hz.
fn sip_call_to_alice(w: Calls, codecs: Codecs) -> SipCall {
    let phone = w.phone("carol", codecs);
    sip_call_to_alice_from(w, phone)
}

/// [`sip_call_to_alice`] from a phone of the test's own making.
fn sip_call_to_alice_from(w: Calls, mut phone: Baresip) -> SipCall {
    let mut alice = w.alice(Answer::Auto);
    let caller = format!("{}/phone", w.contact(&phone));

    phone.dial(&w.alice_uri()).expect("dial");
    let propose = alice
        .expect(T, |e| e.kind() == "propose")
        .unwrap_or_else(|e| panic!("no <propose/> for the INVITE: {e:#}\n{}", phone.context()));
    let sid = propose.sid().expect("sid").to_string();
    assert_eq!(propose.str("from"), Some(caller.as_str()), "{propose}");
    assert_eq!(propose.value["media"][0], "audio", "{propose}");

    // XEP-0353: a chat message to the bare JID with a <store/> hint.
    let message = received_jmi(&alice, &sid, "propose").expect("captured <propose/>");
    assert_eq!(
        message.attr("type"),
        Some("chat"),
        "{}",
        String::from(&message)
    );
    assert_eq!(message.attr("to"), Some(w.alice_bare().as_str()));
    assert!(
        message.get_child("store", NS_HINTS).is_some(),
        "<propose/> without <store/>: {}",
        String::from(&message)
    );
    let description = message
        .get_child("propose", NS_JMI)
        .and_then(|p| p.get_child("description", NS_RTP))
        .unwrap_or_else(|| panic!("no RTP description: {}", String::from(&message)));
    assert_eq!(description.attr("media"), Some("audio"));

    // <ringing/> → 180, <proceed/> → session-initiate to alice's full JID.
    phone
        .expect_event("CALL_RINGING", T)
        .unwrap_or_else(|e| panic!("no 180 for <ringing/>: {e:#}"));
    let incoming = alice
        .expect_event("incoming", &sid, T)
        .unwrap_or_else(|e| panic!("no session-initiate after <proceed/>: {e:#}"));
    assert_eq!(incoming.str("from"), Some(caller.as_str()), "{incoming}");
    assert_eq!(incoming.value["jmi"], true, "{incoming}");
    let initiate = received_jingle(&alice, &sid, "session-initiate");
    assert_eq!(initiate.len(), 1, "one session-initiate");
    assert_eq!(initiate[0].attr("to"), Some(alice.jid()));

    // session-accept → 200 OK; then ICE + DTLS on the XMPP leg.
    alice.expect_event("accepted", &sid, T).expect("accepted");
    phone
        .expect_event("CALL_ESTABLISHED", T)
        .unwrap_or_else(|e| panic!("no 200 OK after session-accept: {e:#}"));
    alice
        .wait_connected(&sid, T)
        .unwrap_or_else(|e| panic!("ICE/DTLS with stox did not connect: {e:#}"));
    let offer = stox_media(&alice, &sid, "session-initiate");
    assert!(offer.ice_credentials, "{offer:?}");
    // The offer's DTLS role is checked by session_initiate_offers_dtls_actpass.
    assert!(
        matches!(
            offer.setup.as_deref(),
            Some("actpass" | "passive" | "active")
        ),
        "{offer:?}"
    );
    assert_eq!(offer.hash.as_deref(), Some("sha-256"), "{offer:?}");
    assert_loopback_candidates(&offer, w.media);

    let heard = alice
        .wait_tone(&sid, PHONE_HZ, TOL, MIN_RMS, T)
        .unwrap_or_else(|e| panic!("alice does not hear the phone: {e:#}"));
    eprintln!("alice heard {heard:?}");
    SipCall {
        w,
        alice,
        phone,
        sid,
        caller,
    }
}

/// Lets audio flow for a while so the phone records enough of alice's tone.
fn talk() {
    std::thread::sleep(Duration::from_millis(2500));
}

/// carol (440 Hz) calls alice (660 Hz) through stox, each hears the other's tone, carol hangs
/// up: BYE → session-terminate `<success/>`.
#[test]
fn sip_phone_calls_xmpp_client_tones_both_ways_phone_hangs_up() {
    let SipCall {
        w,
        mut alice,
        mut phone,
        sid,
        ..
    } = sip_call_to_alice(Calls::start(""), Codecs::OpusAndPcmu);
    let offer = stox_media(&alice, &sid, "session-initiate");
    assert!(
        has_codec(&offer.codecs, "opus") && has_codec(&offer.codecs, "PCMU"),
        "session-initiate must carry the phone's codecs: {offer:?}"
    );
    // RFC 4733 keys from the phone next to Opus audio (telephone-event/8000 on both legs).
    phone.send_dtmf("7#").expect("sndcode");
    let digits = alice
        .expect_dtmf(&sid, 2, T)
        .unwrap_or_else(|e| panic!("the phone's RFC 4733 keys did not reach alice: {e:#}"));
    assert_eq!(digits, "7#");
    talk();

    phone.hangup().expect("hangup");
    let ended = alice
        .expect_event("terminated", &sid, T)
        .unwrap_or_else(|e| panic!("BYE did not end the Jingle session: {e:#}"));
    assert_eq!(ended.str("by"), Some("remote"), "{ended}");
    assert_eq!(ended.str("reason"), Some("success"), "{ended}");
    phone_closed(&mut phone, T);
    // The BYE was answered 200 by stox (it reached the phone's trace as a received 200).
    let bye_ok = phone.sip_trace().iter().any(|t| {
        t.received
            && t.message.status() == Some(200)
            && t.message.header("CSeq").is_some_and(|c| c.ends_with("BYE"))
    });
    assert!(bye_ok, "no 200 OK to the BYE\n{}", phone.context());
    assert_phone_heard(&phone, f64::from(CLIENT_HZ));
    w.finish();
}

/// Same call with stox's default `[media]` (no section: the address of the first SIP
/// listener, the default port range), hung up by alice: session-terminate → BYE.
#[test]
fn sip_phone_calls_xmpp_client_default_media_config_xmpp_hangs_up() {
    let SipCall {
        w,
        mut alice,
        mut phone,
        sid,
        caller,
    } = sip_call_to_alice(Calls::start_default_media(), Codecs::OpusAndPcmu);
    talk();

    alice.hangup(&sid).expect("hangup");
    let ended = alice
        .expect_event("terminated", &sid, T)
        .expect("terminated");
    assert_eq!(ended.str("by"), Some("local"));
    // A duplicate session-terminate (StanzaJS and wrtc may send two) must not hang up twice.
    alice
        .send_raw(&format!(
            "<iq xmlns='jabber:client' type='set' id='dup-terminate' to='{caller}'>\
             <jingle xmlns='{NS_JINGLE}' action='session-terminate' sid='{sid}'>\
             <reason><success/></reason></jingle></iq>"
        ))
        .expect("duplicate terminate");
    let closed = phone_closed(&mut phone, T);
    std::thread::sleep(Duration::from_millis(500));
    let byes = phone.received_requests("BYE");
    assert_eq!(
        byes.len(),
        1,
        "session-terminate must reach the phone as one BYE (closed: {closed})\n{}",
        phone.context()
    );
    // The phone answered it.
    assert!(phone.sent_statuses().contains(&200));
    assert_phone_heard(&phone, f64::from(CLIENT_HZ));
    w.finish();
}

/// The same call with the phone reaching stox over SIP TCP (RFC 3261 §18; its outbound proxy
/// is `sip:stox;transport=tcp`): every SIP message of the call runs on TCP, alice hangs up
/// and stox's BYE reaches the phone on TCP too.
#[test]
fn sip_phone_over_tcp_calls_xmpp_client_xmpp_hangs_up() {
    let w = Calls::start("");
    let mut options = BaresipOptions::new("carol", PHONE_HZ).sip_trace(true);
    options.outbound_proxy = Some(w.stox.sip_addr());
    options.outbound_tcp = true;
    let phone = Baresip::start(options).expect("baresip");
    let SipCall {
        w,
        mut alice,
        mut phone,
        sid,
        ..
    } = sip_call_to_alice_from(w, phone);
    talk();
    alice.hangup(&sid).expect("hangup");
    phone_closed(&mut phone, T);
    let trace = phone.sip_trace();
    // Everything, the 2xx ACK included: stox's Contact carries `;transport=tcp`.
    let udp: Vec<String> = trace
        .iter()
        .filter(|t| t.transport != "TCP")
        .map(|t| format!("{} {}", t.transport, t.message.start_line))
        .collect();
    assert!(udp.is_empty(), "SIP outside TCP: {udp:?}");
    let ok = trace
        .iter()
        .find(|t| t.received && t.message.status() == Some(200))
        .expect("200 OK");
    eprintln!(
        "200 OK over {} with Contact {:?}",
        ok.transport,
        ok.message.header("Contact")
    );
    let byes = phone.received_requests("BYE");
    assert_eq!(byes.len(), 1, "{}", phone.context());
    assert_phone_heard(&phone, f64::from(CLIENT_HZ));
    w.finish();
}

/// carol offers one codec only: stox offers alice exactly that one (no transcoding), the call
/// runs on it end to end and both sides decode at its rate. With PCMU the phone's RFC 4733 keys
/// (telephone-event/8000 on both legs) must reach alice too.
fn single_codec_sip_offer(codecs: Codecs, offered: &str, absent: &str, rate: u32, dtmf: bool) {
    let SipCall {
        w,
        mut alice,
        mut phone,
        sid,
        ..
    } = sip_call_to_alice(Calls::start(""), codecs);
    let offer = stox_media(&alice, &sid, "session-initiate");
    assert!(has_codec(&offer.codecs, offered), "{offer:?}");
    assert!(
        !has_codec(&offer.codecs, absent),
        "{absent} was not offered by the phone: {offer:?}"
    );
    let stats = alice.call_stats(&sid).expect("stats");
    assert_eq!(
        stats.codec.as_deref(),
        Some(format!("audio/{offered}").as_str()),
        "{stats:?}"
    );
    assert_eq!(stats.heard.map(|h| h.rate), Some(rate), "{stats:?}");
    if dtmf {
        assert!(has_codec(&offer.codecs, "telephone-event"), "{offer:?}");
        phone.send_dtmf("42*").expect("sndcode");
        let digits = alice
            .expect_dtmf(&sid, 3, T)
            .unwrap_or_else(|e| panic!("the phone's RFC 4733 keys did not reach alice: {e:#}"));
        assert_eq!(digits, "42*");
    }
    talk();
    phone.hangup().expect("hangup");
    alice
        .expect_event("terminated", &sid, T)
        .expect("terminated");
    phone_closed(&mut phone, T);
    assert_eq!(
        assert_phone_heard(&phone, f64::from(CLIENT_HZ)),
        rate,
        "{offered} decodes at {rate} Hz"
    );
    w.finish();
}

/// carol offers PCMU only: stox offers alice PCMU, both hear at 8 kHz, DTMF passes.
#[test]
fn pcmu_only_sip_offer_reaches_xmpp_client_as_pcmu() {
    single_codec_sip_offer(Codecs::PcmuOnly, "PCMU", "opus", 8000, true);
}

/// carol offers Opus only: the call runs on Opus end to end, both hear at 48 kHz.
#[test]
fn opus_only_sip_offer_reaches_xmpp_client_as_opus() {
    single_codec_sip_offer(Codecs::OpusOnly, "opus", "PCMU", 48000, false);
}

/// Two calls at once through one stox: carol (440 Hz) → alice (660 Hz) and dave (550 Hz) →
/// bob (880 Hz). Each side hears only its own peer; ending one call leaves the other up.
#[test]
fn two_concurrent_calls_keep_their_audio_apart() {
    let w = Calls::start("");
    let mut alice = w.alice(Answer::Auto);
    let mut bob = w.client("bob", "b", 880);
    let mut carol = w.phone_with_tone("carol", PHONE_HZ, Codecs::OpusAndPcmu);
    let mut dave = w.phone_with_tone("dave", 550.0, Codecs::PcmuOnly);
    carol.dial(&w.alice_uri()).expect("dial");
    dave.dial(&format!("sip:bob@{}", w.prosody.domain()))
        .expect("dial");
    let sid_a = alice
        .expect(T, |e| e.kind() == "propose")
        .expect("alice's propose")
        .sid()
        .expect("sid")
        .to_string();
    let sid_b = bob
        .expect(T, |e| e.kind() == "propose")
        .expect("bob's propose")
        .sid()
        .expect("sid")
        .to_string();
    assert_ne!(sid_a, sid_b);
    carol
        .expect_event("CALL_ESTABLISHED", T)
        .expect("carol established");
    dave.expect_event("CALL_ESTABLISHED", T)
        .expect("dave established");
    alice
        .wait_tone(&sid_a, PHONE_HZ, TOL, MIN_RMS, T)
        .unwrap_or_else(|e| panic!("alice does not hear carol: {e:#}"));
    bob.wait_tone(&sid_b, 550.0, TOL, MIN_RMS, T)
        .unwrap_or_else(|e| panic!("bob does not hear dave: {e:#}"));
    let listed = w
        .stox
        .admin_get("/api/v1/calls")
        .expect("GET /api/v1/calls");
    assert_eq!(listed.status, 200, "{}", listed.body);
    talk();

    carol.hangup().expect("hangup");
    alice
        .expect_event("terminated", &sid_a, T)
        .expect("alice terminated");
    phone_closed(&mut carol, T);
    // bob's call is still up and still carries dave's tone.
    let later = bob.expect(Duration::from_secs(3), |e| {
        e.kind() == "terminated" && e.sid() == Some(sid_b.as_str())
    });
    assert!(later.is_err(), "ending carol's call ended bob's too");
    bob.wait_tone(&sid_b, 550.0, TOL, MIN_RMS, T)
        .unwrap_or_else(|e| panic!("bob lost dave after carol hung up: {e:#}"));
    bob.hangup(&sid_b).expect("hangup");
    phone_closed(&mut dave, T);

    assert_phone_heard(&carol, f64::from(CLIENT_HZ));
    assert_eq!(assert_phone_heard(&dave, 880.0), 8000);
    w.finish();
}

/// alice has two devices online: alice/a (rings, answers later) and alice/b (answers at
/// once). The `<propose/>` to the bare JID rings both (XEP-0353 §3.1); the session goes to
/// the device that proceeded first only; a late `<proceed/>` from the other device starts no
/// second session and does not disturb the call.
#[test]
fn sip_call_rings_every_device_and_goes_to_the_first_that_proceeds() {
    let w = Calls::start("");
    let mut desk = w.alice(Answer::Manual);
    let mut mobile =
        JinglePeer::connect(&w.prosody, "alice", PASSWORD, "b", PeerOptions::tone(880))
            .expect("alice/b online");
    let mut phone = w.phone("carol", Codecs::OpusAndPcmu);
    phone.dial(&w.alice_uri()).expect("dial");
    let sid = desk
        .expect(T, |e| e.kind() == "propose")
        .expect("alice/a rings")
        .sid()
        .expect("sid")
        .to_string();
    mobile
        .expect_event("propose", &sid, T)
        .expect("alice/b rings with the same proposal");
    let incoming = mobile
        .expect_event("incoming", &sid, T)
        .unwrap_or_else(|e| panic!("no session-initiate to the device that proceeded: {e:#}"));
    assert_eq!(incoming.value["jmi"], true);
    phone
        .expect_event("CALL_ESTABLISHED", T)
        .expect("established");
    mobile
        .wait_tone(&sid, PHONE_HZ, TOL, MIN_RMS, T)
        .unwrap_or_else(|e| panic!("alice/b does not hear the phone: {e:#}"));

    // The desk answers too late.
    desk.proceed(&sid).expect("late proceed");
    let second = desk.expect(Duration::from_secs(2), |e| e.kind() == "incoming");
    assert!(
        second.is_err(),
        "a second session went to alice/a: {second:?}"
    );
    assert!(received_jingle(&desk, &sid, "session-initiate").is_empty());
    mobile
        .wait_tone(&sid, PHONE_HZ, TOL, MIN_RMS, T)
        .unwrap_or_else(|e| panic!("the late proceed disturbed the call: {e:#}"));
    talk();
    phone.hangup().expect("hangup");
    mobile
        .expect_event("terminated", &sid, T)
        .expect("terminated");
    phone_closed(&mut phone, T);
    assert_phone_heard(&phone, 880.0);
    w.finish();
}

/// carol dials an XMPP user who is not online (dave, registered, no session; Prosody without
/// offline storage bounces the `<propose/>` with service-unavailable): the INVITE fails at
/// once with a final error, not after the ring timeout. (stox answers 403, its RFC 7247 §7
/// mapping of service-unavailable; RFC 3261 §21.4.18's 480 "not logged in" would fit a call
/// better.)
#[test]
fn call_to_offline_xmpp_user_fails_at_once() {
    let w = Calls::start("");
    let mut phone = w.phone("carol", Codecs::OpusAndPcmu);
    let started = Instant::now();
    phone
        .dial(&format!("sip:dave@{}", w.prosody.domain()))
        .expect("dial");
    let closed = phone_closed(&mut phone, Duration::from_secs(15));
    let code: u16 = closed
        .split_whitespace()
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    assert!(
        code == 480,
        "expected 480 (RFC 3261 §21.4.18, not logged in), the phone saw \
         {closed:?} after {:?}\n{}",
        started.elapsed(),
        phone.context()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    w.finish();
}

/// carol dials alice, alice's client rings (`<ringing/>`, 180), carol gives up: CANCEL →
/// `<retract/>` from C/phone; no Jingle session was started.
#[test]
fn sip_cancel_before_answer_retracts_the_proposal() {
    let w = Calls::start("");
    let mut alice = w.alice(Answer::Manual);
    let mut phone = w.phone("carol", Codecs::OpusAndPcmu);
    let caller = format!("{}/phone", w.contact(&phone));
    phone.dial(&w.alice_uri()).expect("dial");
    let propose = alice.expect(T, |e| e.kind() == "propose").expect("propose");
    let sid = propose.sid().expect("sid").to_string();
    phone.expect_event("CALL_RINGING", T).expect("180");

    phone.hangup().expect("hangup (CANCEL)");
    let retract = alice
        .expect_event("retract", &sid, T)
        .unwrap_or_else(|e| panic!("CANCEL did not retract the proposal: {e:#}"));
    assert_eq!(retract.str("from"), Some(caller.as_str()), "{retract}");
    let closed = phone_closed(&mut phone, T);
    assert!(phone.received_requests("INVITE").is_empty());
    // stox answered the CANCEL 200 and the INVITE 487 (RFC 3261 §9.2).
    let statuses: Vec<u16> = phone
        .sip_trace()
        .iter()
        .filter(|t| t.received)
        .filter_map(|t| t.message.status())
        .collect();
    assert!(
        statuses.contains(&487),
        "INVITE not answered 487 ({closed}): {statuses:?}"
    );
    assert!(received_jingle(&alice, &sid, "session-initiate").is_empty());
    w.finish();
}

/// alice proceeds, stox sends session-initiate, alice's client rings instead of accepting;
/// carol gives up: CANCEL → session-terminate `<cancel/>` (the proposal is past retracting).
#[test]
fn sip_cancel_after_session_initiate_terminates_with_cancel() {
    let w = Calls::start("");
    let mut alice = w.alice(Answer::Manual);
    alice.set_accept_proceeded(false).expect("set");
    let mut phone = w.phone("carol", Codecs::OpusAndPcmu);
    phone.dial(&w.alice_uri()).expect("dial");
    let sid = alice
        .expect(T, |e| e.kind() == "propose")
        .expect("propose")
        .sid()
        .expect("sid")
        .to_string();
    alice.proceed(&sid).expect("proceed");
    alice
        .expect_event("incoming", &sid, T)
        .unwrap_or_else(|e| panic!("no session-initiate after <proceed/>: {e:#}"));
    phone.expect_event("CALL_RINGING", T).expect("180");

    phone.hangup().expect("hangup (CANCEL)");
    let ended = alice
        .expect_event("terminated", &sid, T)
        .unwrap_or_else(|e| panic!("CANCEL did not end the Jingle session: {e:#}"));
    assert_eq!(ended.str("reason"), Some("cancel"), "{ended}");
    assert_eq!(ended.str("by"), Some("remote"), "{ended}");
    phone_closed(&mut phone, T);
    let statuses: Vec<u16> = phone
        .sip_trace()
        .iter()
        .filter(|t| t.received)
        .filter_map(|t| t.message.status())
        .collect();
    assert!(
        statuses.contains(&487),
        "INVITE not answered 487: {statuses:?}"
    );
    w.finish();
}

/// INVITEs stox cannot bridge get 488 Not Acceptable Here at once and never ring alice: an
/// offer of G.729 only (no codec the relay passes through: Opus, PCMU, PCMA, G722), and an
/// INVITE without an offer (no delayed offer yet).
#[test]
fn invite_without_a_relayable_offer_gets_488() {
    let w = Calls::start("");
    let mut alice = w.alice(Answer::Auto);
    let uri = w.alice_uri();
    let g729 = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\na=sendrecv\r\n";
    for (what, request) in [
        (
            "G.729 only",
            RawRequest::new("INVITE", &uri)
                .header("Contact", "<sip:carol@127.0.0.1:4999>")
                .body("application/sdp", g729.as_bytes()),
        ),
        (
            "no SDP",
            RawRequest::new("INVITE", &uri).header("Contact", "<sip:carol@127.0.0.1:4999>"),
        ),
    ] {
        let exchange = request.send_udp(w.stox.sip_addr()).expect("INVITE");
        assert_eq!(
            exchange.status(),
            Some(488),
            "{what}\n{}",
            exchange.summary()
        );
    }
    let rang = alice.expect(Duration::from_secs(1), |e| e.kind() == "propose");
    assert!(
        rang.is_err(),
        "alice was proposed a call stox cannot bridge"
    );
    w.finish();
}

/// alice declines (`<reject/>` with `<decline/>`): the phone gets 603 Decline.
#[test]
fn xmpp_decline_answers_the_invite_603() {
    let w = Calls::start("");
    let mut alice = w.alice(Answer::Manual);
    let mut phone = w.phone("carol", Codecs::OpusAndPcmu);
    phone.dial(&w.alice_uri()).expect("dial");
    let sid = alice
        .expect(T, |e| e.kind() == "propose")
        .expect("propose")
        .sid()
        .expect("sid")
        .to_string();
    phone.expect_event("CALL_RINGING", T).expect("180");
    alice.reject(&sid, "decline").expect("reject");
    let closed = phone_closed(&mut phone, T);
    assert!(
        closed.starts_with("603"),
        "expected 603, the phone saw {closed:?}\n{}",
        phone.context()
    );
    w.finish();
}

/// alice is busy (`<reject/>` with `<busy/>`): the phone gets 486 Busy Here.
#[test]
fn xmpp_busy_answers_the_invite_486() {
    let w = Calls::start("");
    let mut alice = w.alice(Answer::Manual);
    let mut phone = w.phone("carol", Codecs::OpusAndPcmu);
    phone.dial(&w.alice_uri()).expect("dial");
    let sid = alice
        .expect(T, |e| e.kind() == "propose")
        .expect("propose")
        .sid()
        .expect("sid")
        .to_string();
    alice.reject(&sid, "busy").expect("reject");
    let closed = phone_closed(&mut phone, T);
    assert!(
        closed.starts_with("486"),
        "expected 486, the phone saw {closed:?}\n{}",
        phone.context()
    );
    w.finish();
}

/// alice never answers: after `[calls] no_answer_secs` (3 s here) the phone gets 480 and
/// alice's clients a `<retract/>`.
#[test]
fn unanswered_call_times_out_480_and_retracts() {
    let w = Calls::start("[calls]\nno_answer_secs = 3\n");
    let mut alice = w.alice(Answer::Manual);
    let mut phone = w.phone("carol", Codecs::OpusAndPcmu);
    let caller = format!("{}/phone", w.contact(&phone));
    let started = Instant::now();
    phone.dial(&w.alice_uri()).expect("dial");
    let sid = alice
        .expect(T, |e| e.kind() == "propose")
        .expect("propose")
        .sid()
        .expect("sid")
        .to_string();
    let closed = phone_closed(&mut phone, Duration::from_secs(15));
    let waited = started.elapsed();
    assert!(
        closed.starts_with("480"),
        "expected 480, the phone saw {closed:?}\n{}",
        phone.context()
    );
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(12),
        "the ring timeout is 3 s, the call ended after {waited:?}"
    );
    let retract = alice
        .expect_event("retract", &sid, T)
        .unwrap_or_else(|e| panic!("no <retract/> on the ring timeout: {e:#}"));
    assert_eq!(retract.str("from"), Some(caller.as_str()), "{retract}");
    w.finish();
}

/// RFC 5763 §5, RFC 8842 §5.2 and XEP-0320: the offerer's DTLS role is `actpass`, so the
/// answerer (alice) picks. stox's session-initiate is the offer.
#[test]
fn session_initiate_offers_dtls_actpass() {
    let w = Calls::start("");
    let mut alice = w.alice(Answer::Auto);
    let mut phone = w.phone("carol", Codecs::OpusAndPcmu);
    phone.dial(&w.alice_uri()).expect("dial");
    let sid = alice
        .expect(T, |e| e.kind() == "incoming")
        .unwrap_or_else(|e| panic!("no session-initiate: {e:#}"))
        .sid()
        .expect("sid")
        .to_string();
    let offer = stox_media(&alice, &sid, "session-initiate");
    alice.expect_event("accepted", &sid, T).expect("accepted");
    let local_answer = alice
        .captured_sdp(&sid, "local", "answer")
        .expect("capture log")
        .unwrap_or_default();
    phone.hangup().expect("hangup");
    assert_eq!(
        offer.setup.as_deref(),
        Some("actpass"),
        "{offer:?}\nalice's answer:\n{local_answer}"
    );
    w.finish();
}

// ---------------------------------------------------------------------------------------------
// XMPP → SIP

/// alice's call to a phone, established, with audio both ways checked at alice.
struct XmppCall {
    w: Calls,
    alice: JinglePeer,
    phone: Baresip,
    sid: String,
}

/// alice calls bob's phone (baresip, `codecs`) through stox: with XEP-0353 to the bare
/// gateway JID if `jmi`, else `session-initiate` straight to `C/phone`; `offer` restricts
/// alice's codecs. Checks ringing/proceed, the INVITE the phone gets, 180 → session-info
/// `<ringing/>`, 200 → session-accept, and that alice hears 440 Hz.
fn alice_calls_phone(w: Calls, codecs: Codecs, jmi: bool, offer: Option<&[&str]>) -> XmppCall {
    let mut alice = w.alice(Answer::Auto);
    let mut phone = w.phone("bob", codecs);
    let contact = w.contact(&phone);
    let full = format!("{contact}/phone");
    let mut opts = if jmi {
        CallOptions::jmi()
    } else {
        CallOptions::direct()
    };
    if let Some(codecs) = offer {
        opts = opts.codecs(codecs);
    }
    let sid = alice
        .call(if jmi { &contact } else { &full }, opts)
        .expect("call");
    if jmi {
        let ringing = alice
            .expect_event("ringing", &sid, T)
            .unwrap_or_else(|e| panic!("no <ringing/> for the <propose/>: {e:#}"));
        assert_eq!(ringing.str("from"), Some(full.as_str()), "{ringing}");
        let proceed = alice
            .expect_event("proceed", &sid, T)
            .unwrap_or_else(|e| panic!("no <proceed/> for the <propose/>: {e:#}"));
        assert_eq!(proceed.str("from"), Some(full.as_str()), "{proceed}");
        let outgoing = alice.expect_event("outgoing", &sid, T).expect("outgoing");
        assert_eq!(outgoing.str("to"), Some(full.as_str()), "{outgoing}");
    }

    let incoming = phone
        .expect_event("CALL_INCOMING", T)
        .unwrap_or_else(|e| panic!("no INVITE at the phone: {e:#}"));
    let from = incoming.peer_uri.clone().unwrap_or_default();
    assert!(
        from.starts_with(&w.alice_uri()),
        "the INVITE should come from {}: {incoming:?}",
        w.alice_uri()
    );
    let invites = phone.received_requests("INVITE");
    assert_eq!(invites.len(), 1, "{}", phone.context());
    let invite = &invites[0];
    // Its parameters are checked by invite_request_uri_is_the_phones_address.
    let ruri = invite.request_uri().unwrap_or_default().to_string();
    assert_eq!(ruri.split(';').next(), Some(phone.uri().as_str()), "{ruri}");
    let sdp = invite.body_text();
    assert!(
        sdp.contains("m=audio ") && sdp.contains("RTP/AVP") && sdp.contains("c=IN IP4 127.0.0.1"),
        "the phone needs a plain RTP offer on 127.0.0.1:\n{sdp}"
    );
    assert!(
        !sdp.contains("a=fingerprint"),
        "no DTLS toward the phone:\n{sdp}"
    );

    // 180 → session-info <ringing/>; accept → 200 → session-accept.
    alice
        .expect_event("session_ringing", &sid, T)
        .unwrap_or_else(|e| panic!("180 did not become session-info <ringing/>: {e:#}"));
    phone.accept().expect("accept");
    let accepted = alice
        .expect_event("accepted", &sid, T)
        .unwrap_or_else(|e| panic!("200 OK did not become session-accept: {e:#}"));
    assert_eq!(accepted.str("by"), Some("remote"));
    phone
        .expect_event("CALL_ESTABLISHED", T)
        .expect("established");
    alice
        .wait_connected(&sid, T)
        .unwrap_or_else(|e| panic!("ICE/DTLS with stox did not connect: {e:#}"));

    // StanzaJS trickles (XEP-0176 §2.2): its session-initiate carries no candidate, they all
    // went in transport-info; ICE connecting means stox took them.
    let initiate = alice
        .captured_stanzas("out", "session-initiate")
        .expect("capture");
    assert!(
        initiate.iter().all(|x| !x.contains("<candidate")),
        "{initiate:?}"
    );
    assert!(!alice
        .captured_stanzas("out", "transport-info")
        .expect("capture")
        .is_empty());
    let answer = stox_media(&alice, &sid, "session-accept");
    let accept = &received_jingle(&alice, &sid, "session-accept")[0];
    assert_eq!(
        accept.attr("from"),
        Some(full.as_str()),
        "Jingle must come from the JID called"
    );
    assert!(answer.ice_credentials, "{answer:?}");
    assert!(
        matches!(answer.setup.as_deref(), Some("active" | "passive")),
        "the answerer picks active or passive, never actpass (RFC 5763): {answer:?}"
    );
    assert_loopback_candidates(&answer, w.media);

    let heard = alice
        .wait_tone(&sid, PHONE_HZ, TOL, MIN_RMS, T)
        .unwrap_or_else(|e| panic!("alice does not hear the phone: {e:#}"));
    eprintln!("alice heard {heard:?}");
    XmppCall {
        w,
        alice,
        phone,
        sid,
    }
}

/// alice (660 Hz) calls bob's phone (440 Hz) with XEP-0353, each hears the other, alice hangs
/// up: session-terminate → BYE.
#[test]
fn xmpp_client_calls_sip_phone_with_jmi_tones_both_ways_xmpp_hangs_up() {
    let XmppCall {
        w,
        mut alice,
        mut phone,
        sid,
    } = alice_calls_phone(Calls::start(""), Codecs::OpusAndPcmu, true, None);
    talk();
    alice.hangup(&sid).expect("hangup");
    alice
        .expect_event("terminated", &sid, T)
        .expect("terminated");
    phone_closed(&mut phone, T);
    assert_eq!(
        phone.received_requests("BYE").len(),
        1,
        "{}",
        phone.context()
    );
    assert_phone_heard(&phone, f64::from(CLIENT_HZ));
    w.finish();
}

/// alice sends `session-initiate` straight to `C/phone` (no XEP-0353): the same call; the
/// phone hangs up: BYE → session-terminate `<success/>`.
#[test]
fn xmpp_client_calls_sip_phone_directly_phone_hangs_up() {
    let XmppCall {
        w,
        mut alice,
        mut phone,
        sid,
    } = alice_calls_phone(Calls::start(""), Codecs::OpusAndPcmu, false, None);
    talk();
    phone.hangup().expect("hangup");
    let ended = alice
        .expect_event("terminated", &sid, T)
        .unwrap_or_else(|e| panic!("BYE did not end the Jingle session: {e:#}"));
    assert_eq!(ended.str("by"), Some("remote"), "{ended}");
    assert_eq!(ended.str("reason"), Some("success"), "{ended}");
    phone_closed(&mut phone, T);
    assert_phone_heard(&phone, f64::from(CLIENT_HZ));
    w.finish();
}

/// alice offers one codec only: the phone gets exactly that offer (no relay-added codecs) and
/// the call runs on it; the phone decodes at its rate.
fn single_codec_xmpp_offer(codec: &str, rtpmap: &str, absent: &str, rate: u32) {
    let XmppCall {
        w,
        mut alice,
        mut phone,
        sid,
    } = alice_calls_phone(Calls::start(""), Codecs::OpusAndPcmu, true, Some(&[codec]));
    let sdp = phone.received_requests("INVITE")[0].body_text();
    let lower = sdp.to_ascii_lowercase();
    assert!(lower.contains(&rtpmap.to_ascii_lowercase()), "{sdp}");
    assert!(
        !lower.contains(&absent.to_ascii_lowercase()),
        "alice did not offer {absent}:\n{sdp}"
    );
    let stats = alice.call_stats(&sid).expect("stats");
    assert_eq!(
        stats.codec.as_deref(),
        Some(format!("audio/{codec}").as_str()),
        "{stats:?}"
    );
    talk();
    alice.hangup(&sid).expect("hangup");
    phone_closed(&mut phone, T);
    assert_eq!(assert_phone_heard(&phone, f64::from(CLIENT_HZ)), rate);
    w.finish();
}

/// alice offers PCMU only: the phone gets a PCMU offer and the call runs on PCMU.
#[test]
fn pcmu_only_xmpp_offer_reaches_sip_phone_as_pcmu() {
    single_codec_xmpp_offer("PCMU", "PCMU/8000", "opus", 8000);
}

/// alice offers Opus only: the phone gets an Opus offer and the call runs on Opus.
#[test]
fn opus_only_xmpp_offer_reaches_sip_phone_as_opus() {
    single_codec_xmpp_offer("opus", "opus/48000/2", "PCMU", 48000);
}

/// The phone is busy (rejects the INVITE: 486): alice's session ends with `<busy/>`.
#[test]
fn xmpp_call_to_busy_phone_ends_with_busy() {
    let w = Calls::start("");
    let mut alice = w.alice(Answer::Auto);
    let mut phone = w.phone("bob", Codecs::OpusAndPcmu);
    let contact = w.contact(&phone);
    let sid = alice.call(&contact, CallOptions::jmi()).expect("call");
    phone
        .expect_event("CALL_INCOMING", T)
        .unwrap_or_else(|e| panic!("no INVITE at the phone: {e:#}"));
    phone.hangup().expect("reject with 486");
    assert!(phone.sent_statuses().contains(&486), "{}", phone.context());
    let ended = alice
        .expect_event("terminated", &sid, T)
        .unwrap_or_else(|e| panic!("486 did not end the Jingle session: {e:#}"));
    assert_eq!(ended.str("reason"), Some("busy"), "{ended}");
    assert_eq!(ended.str("by"), Some("remote"), "{ended}");
    w.finish();
}

/// A SIP user of `C` with two registered phones (issue 5: INVITE forking).
/// admin creates dave@sip.localhost; two baresips register as dave (Digest)
/// alice calls dave@sip.localhost (JMI) → both phones ring; the second answers → alice's
///   session is accepted, the first phone gets CANCEL; alice hangs up → BYE to the second
#[test]
fn xmpp_call_to_a_registered_sip_user_rings_every_phone_and_the_first_answer_wins() {
    let w = Calls::start("");
    let r = w
        .stox
        .admin_request(
            "POST",
            "/api/v1/sip-users",
            Some(r#"{"user": "dave", "password": "dave-secret"}"#),
        )
        .expect("admin");
    assert_eq!(r.status, 201, "{}", r.body);
    let register = |hz: f64| {
        let mut options = BaresipOptions::new("dave", hz)
            .domain(w.prosody.component())
            .outbound(w.stox.sip_addr())
            .codecs(Codecs::OpusAndPcmu)
            .sip_trace(true);
        options.register_interval = 60;
        options.password = Some("dave-secret".into());
        let phone = Baresip::start(options).expect("baresip");
        let codes: Vec<u16> = phone
            .expect_final_responses("REGISTER", 2, T)
            .expect("REGISTER answers")
            .iter()
            .filter_map(|m| m.status())
            .collect();
        assert_eq!(codes, vec![401, 200], "{}", phone.context());
        phone
    };
    let mut desk = register(PHONE_HZ);
    let mut mobile = register(PHONE_HZ);
    let mut alice = w.alice(Answer::Auto);
    let dave = format!("dave@{}", w.prosody.component());
    let sid = alice.call(&dave, CallOptions::jmi()).expect("call");
    for phone in [&mut desk, &mut mobile] {
        phone
            .expect_event("CALL_INCOMING", T)
            .unwrap_or_else(|e| panic!("a phone did not ring: {e:#}\n{}", w.stox.log_tail(30)));
    }
    mobile.accept().expect("accept");
    alice
        .expect_event("accepted", &sid, T)
        .unwrap_or_else(|e| panic!("the answer did not reach alice: {e:#}"));
    let why = phone_closed(&mut desk, T);
    assert_eq!(
        desk.received_requests("CANCEL").len(),
        1,
        "{why}\n{}",
        desk.context()
    );
    talk();
    alice.hangup(&sid).expect("hangup");
    phone_closed(&mut mobile, T);
    assert_eq!(
        mobile.received_requests("BYE").len(),
        1,
        "{}",
        mobile.context()
    );
    assert_phone_heard(&mobile, f64::from(CLIENT_HZ));
    w.finish();
}

/// A baresip phone `sip:bob@127.0.0.1:PORT` (no outbound proxy), a dnsmasq serving
/// `zone(PORT)`, and stox asking that dnsmasq (RFC 3263 tests).
fn phone_behind_dns(
    zone: impl FnOnce(u16) -> stox_tests::dnsmasq::Zone,
) -> (Calls, Baresip, stox_tests::dnsmasq::Dnsmasq) {
    phone_behind_dns_with(zone, "")
}

/// [`phone_behind_dns`] with more `[sip]` settings (`sip_extra`, e.g. `t1_ms = 100`).
fn phone_behind_dns_with(
    zone: impl FnOnce(u16) -> stox_tests::dnsmasq::Zone,
    sip_extra: &str,
) -> (Calls, Baresip, stox_tests::dnsmasq::Dnsmasq) {
    let phone = Baresip::start(
        BaresipOptions::new("bob", PHONE_HZ)
            .codecs(Codecs::OpusAndPcmu)
            .sip_trace(true),
    )
    .expect("baresip");
    let dns = stox_tests::dnsmasq::Dnsmasq::start(&zone(phone.sip_port())).expect("dnsmasq");
    let w = Calls::start(&format!(
        "[sip]\ndns_server = \"{}\"\n{sip_extra}\n",
        dns.addr()
    ));
    (w, phone, dns)
}

/// The phone the INVITE fell over to rings: it answers, alice hears it, alice hangs up and
/// the phone gets the BYE. Returns how long after the call began the phone rang.
fn answered_after_failover(
    w: &Calls,
    alice: &mut JinglePeer,
    phone: &mut Baresip,
    callee: &str,
    ring_within: Duration,
) -> Duration {
    let started = Instant::now();
    let sid = alice.call(callee, CallOptions::jmi()).expect("call");
    phone
        .expect_event("CALL_INCOMING", ring_within)
        .unwrap_or_else(|e| panic!("no INVITE at the phone: {e:#}\n{}", w.stox.log_tail(40)));
    let rang = started.elapsed();
    assert!(
        w.stox
            .log_tail(400)
            .lines()
            .any(|l| l.contains("trying the next target")),
        "{}",
        w.stox.log_tail(40)
    );
    phone.accept().expect("accept");
    alice
        .expect_event("accepted", &sid, T)
        .unwrap_or_else(|e| panic!("the answer did not reach alice: {e:#}"));
    alice
        .wait_tone(&sid, PHONE_HZ, TOL, MIN_RMS, T)
        .unwrap_or_else(|e| panic!("alice does not hear the phone: {e:#}"));
    alice.hangup(&sid).expect("hangup");
    phone_closed(phone, T);
    assert_eq!(
        phone.received_requests("BYE").len(),
        1,
        "{}",
        phone.context()
    );
    rang
}

/// RFC 3263 §4.1 and RFC 5922 §4 for calls: a callee's domain whose NAPTR offers only
/// `SIPS+D2T` gets the INVITE over TLS, the phone's certificate verified for the domain
/// (`voip.test`; the SRV target's name is not in it); a domain whose SRV target merely *is*
/// `voip.test` gets nothing, although a connection verified for voip.test to that very
/// address is open.
/// baresip bob, TLS with a certificate for DNS:voip.test only
/// dnsmasq: voip.test NAPTR SIPS+D2T → _sips._tcp.voip.test SRV → pbx.provider.test:TLS;
///   evil.test NAPTR SIPS+D2T → _sips._tcp.evil.test SRV → voip.test:TLS
/// alice calls bob\40voip.test@C → INVITE over TLS, the phone rings, answers 486 → `busy`
/// alice calls bob\40evil.test@C → the session ends, the phone sees no second INVITE
#[test]
fn xmpp_call_to_a_domain_located_to_tls_is_verified_for_the_domain() {
    use stox_tests::dnsmasq::Zone;
    let certs = temp_dir("certs").expect("temp dir");
    let (cert, key) = stox_tests::certs::self_signed_for(certs.path(), "voip", &["DNS:voip.test"]);
    let mut options = BaresipOptions::new("bob", PHONE_HZ)
        .codecs(Codecs::OpusAndPcmu)
        .sip_trace(true);
    options.tls_certificate = Some(stox_tests::certs::bundle(&cert, &key));
    options.tls_ca = Some(cert.clone());
    let mut phone = Baresip::start(options).expect("baresip");
    let dns = stox_tests::dnsmasq::Dnsmasq::start(
        &Zone::new()
            .naptr("voip.test", 10, 10, "SIPS+D2T", "_sips._tcp.voip.test")
            .srv(
                "_sips._tcp.voip.test",
                "pbx.provider.test",
                phone.tls_port(),
                0,
                0,
            )
            .a("pbx.provider.test", "127.0.0.1")
            .naptr("evil.test", 10, 10, "SIPS+D2T", "_sips._tcp.evil.test")
            .srv("_sips._tcp.evil.test", "voip.test", phone.tls_port(), 0, 0)
            .a("voip.test", "127.0.0.1"),
    )
    .expect("dnsmasq");
    let w = Calls::start(&format!(
        "[sip]\ndns_server = \"{}\"\n[sip.tls]\nca = \"{}\"\n",
        dns.addr(),
        cert.display()
    ));
    let mut alice = w.alice(Answer::Auto);
    let callee = format!("bob\\40voip.test@{}", w.prosody.component());
    let sid = alice.call(&callee, CallOptions::jmi()).expect("call");
    phone
        .expect_event("CALL_INCOMING", T)
        .unwrap_or_else(|e| panic!("no INVITE at the phone: {e:#}\n{}", w.stox.log_tail(40)));
    // (The trace parser takes baresip's SIP port for its own end; its TLS port is +1.)
    let to_phone = format!(":{}", phone.tls_port());
    let invites: Vec<_> = phone
        .sip_trace()
        .into_iter()
        .filter(|t| t.dst.ends_with(&to_phone) && t.message.method() == Some("INVITE"))
        .collect();
    assert_eq!(invites.len(), 1, "{}", phone.context());
    assert_eq!(invites[0].transport, "TLS", "{}", phone.context());
    assert_eq!(invites[0].message.request_uri(), Some("sip:bob@voip.test"));
    phone.hangup().expect("reject with 486");
    let ended = alice
        .expect_event("terminated", &sid, T)
        .unwrap_or_else(|e| panic!("486 did not end the Jingle session: {e:#}"));
    assert_eq!(ended.str("reason"), Some("busy"), "{ended}");
    phone_closed(&mut phone, T);

    let callee = format!("bob\\40evil.test@{}", w.prosody.component());
    let sid = alice.call(&callee, CallOptions::jmi()).expect("call");
    let ended = alice
        .expect_event("terminated", &sid, T)
        .unwrap_or_else(|e| {
            panic!(
                "the call to evil.test did not end: {e:#}\n{}",
                w.stox.log_tail(40)
            )
        });
    assert_ne!(ended.str("reason"), Some("success"), "{ended}");
    assert!(
        w.stox
            .log_tail(400)
            .lines()
            .any(|l| l.contains("INVITE target unreachable") && l.contains("evil.test")),
        "{}",
        w.stox.log_tail(40)
    );
    let invites = phone
        .sip_trace()
        .into_iter()
        .filter(|t| t.message.method() == Some("INVITE"))
        .count();
    assert_eq!(
        invites,
        1,
        "evil.test reached the phone\n{}",
        phone.context()
    );
    w.finish();
}

/// RFC 3263 §4.3, RFC 3261 §17.1.1.2: the priority-0 server never answers, the INVITE
/// client transaction times out (Timer B = 64·T1; `[sip] t1_ms = 100` makes it 6.4 s
/// instead of 32 s), and the INVITE goes to the priority-10 server, which completes the
/// call.
/// dnsmasq: _sip._udp.silent.test SRV prio 0 → a UDP socket that reads nothing, prio 10 →
///   the phone
/// alice calls bob\40silent.test@sip.localhost → INVITE (and its Timer A retransmissions)
///   into the void; after Timer B the phone rings, answers; tones; alice hangs up → BYE
#[test]
fn xmpp_call_goes_to_the_next_server_after_timer_b() {
    use stox_tests::dnsmasq::Zone;
    // A bound UDP socket nobody reads: no ICMP, no answer, the datagrams pile up.
    let void = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let void_port = void.local_addr().expect("addr").port();
    let (w, mut phone, _dns) = phone_behind_dns_with(
        |port| {
            Zone::new()
                .srv("_sip._udp.silent.test", "a.silent.test", void_port, 0, 0)
                .srv("_sip._udp.silent.test", "b.silent.test", port, 10, 0)
                .a("a.silent.test", "127.0.0.1")
                .a("b.silent.test", "127.0.0.1")
        },
        "t1_ms = 100",
    );
    let mut alice = w.alice(Answer::Auto);
    let callee = format!("bob\\40silent.test@{}", w.prosody.component());
    let rang = answered_after_failover(&w, &mut alice, &mut phone, &callee, T * 2);
    // Timer B is 64·T1 = 6.4 s: not before, and far from the default 32 s.
    assert!(
        rang >= Duration::from_millis(6000) && rang < Duration::from_secs(15),
        "the phone rang {rang:?} after the call began"
    );
    // What reached the void: the INVITE, retransmitted by Timer A (T1, 2·T1, 4·T1, …).
    void.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 65536];
    let mut invites = 0;
    while let Ok(n) = void.recv(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("INVITE sip:bob@silent.test"), "{text}");
        invites += 1;
    }
    assert!(invites >= 4, "{invites} INVITE datagram(s) in the void");
    let log = w.stox.log_tail(600);
    assert!(
        log.lines()
            .any(|l| l.contains("trying the next target") && l.contains("408")),
        "{}",
        w.stox.log_tail(40)
    );
    w.finish();
}

/// RFC 3263 §4.3 as stox applies it: a `408` answered by the priority-0 server sends the
/// INVITE to the next one too, and that call completes.
/// dnsmasq: _sip._udp.late.test SRV prio 0 → a SIPp UAS answering 408, prio 10 → the phone
#[test]
fn xmpp_call_goes_to_the_next_server_after_a_408() {
    use stox_tests::dnsmasq::Zone;
    let timing_out = Sipp::uas_invite_status(408, "Request Timeout").expect("sipp");
    let (w, mut phone, _dns) = phone_behind_dns(|port| {
        Zone::new()
            .srv(
                "_sip._udp.late.test",
                "a.late.test",
                timing_out.port(),
                0,
                0,
            )
            .srv("_sip._udp.late.test", "b.late.test", port, 10, 0)
            .a("a.late.test", "127.0.0.1")
            .a("b.late.test", "127.0.0.1")
    });
    let mut alice = w.alice(Answer::Auto);
    let callee = format!("bob\\40late.test@{}", w.prosody.component());
    answered_after_failover(&w, &mut alice, &mut phone, &callee, T);
    let run = timing_out.wait(T).expect("sipp");
    let invites: Vec<_> = run
        .received_requests_unique()
        .into_iter()
        .filter(|m| m.method() == Some("INVITE"))
        .collect();
    assert_eq!(invites.len(), 1, "{}", run.summary());
    w.finish();
}

/// RFC 3263 §4.3 for calls: the INVITE goes to the next SRV target when the first cannot
/// be reached.
/// dnsmasq: _sip._tcp.backup.test SRV prio 0 → a TCP port where nobody listens, prio 10 →
///   the phone's port (no NAPTR, no UDP SRV)
/// alice calls bob\40backup.test@sip.localhost → the phone rings (over TCP); it answers 486
///   → alice's session ends `busy`; stox's log shows the failover
#[test]
fn xmpp_call_fails_over_to_the_next_srv_target() {
    use stox_tests::dnsmasq::Zone;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let (w, mut phone, _dns) = phone_behind_dns(|port| {
        Zone::new()
            .srv("_sip._tcp.backup.test", "dead.backup.test", dead, 0, 0)
            .srv("_sip._tcp.backup.test", "live.backup.test", port, 10, 0)
            .a("dead.backup.test", "127.0.0.1")
            .a("live.backup.test", "127.0.0.1")
    });
    let mut alice = w.alice(Answer::Auto);
    let contact = format!("bob\\40backup.test@{}", w.prosody.component());
    let sid = alice.call(&contact, CallOptions::jmi()).expect("call");
    phone
        .expect_event("CALL_INCOMING", T)
        .unwrap_or_else(|e| panic!("no INVITE at the phone: {e:#}\n{}", w.stox.log_tail(30)));
    let log = w.stox.log_tail(400);
    assert!(
        log.lines()
            .any(|l| l.contains("trying the next target")
                && l.contains(&phone.sip_port().to_string())),
        "{}",
        w.stox.log_tail(40)
    );
    phone.hangup().expect("reject with 486");
    let ended = alice
        .expect_event("terminated", &sid, T)
        .unwrap_or_else(|e| panic!("486 did not end the Jingle session: {e:#}"));
    assert_eq!(ended.str("reason"), Some("busy"), "{ended}");
    w.finish();
}

/// RFC 3263 §4.3: a 503 from the first located server sends the INVITE to the next one.
/// dnsmasq: _sip._udp.busyish.test SRV prio 0 → a SIPp UAS answering 503, prio 10 → the
///   phone
/// alice calls bob\40busyish.test@sip.localhost → SIPp gets the INVITE and answers 503,
///   the phone then rings; it answers 486 → alice's session ends `busy`
#[test]
fn xmpp_call_goes_to_the_next_server_after_a_503() {
    use stox_tests::dnsmasq::Zone;
    let overloaded = Sipp::uas_invite_status(503, "Service Unavailable").expect("sipp");
    let (w, mut phone, _dns) = phone_behind_dns(|port| {
        Zone::new()
            .srv(
                "_sip._udp.busyish.test",
                "a.busyish.test",
                overloaded.port(),
                0,
                0,
            )
            .srv("_sip._udp.busyish.test", "b.busyish.test", port, 10, 0)
            .a("a.busyish.test", "127.0.0.1")
            .a("b.busyish.test", "127.0.0.1")
    });
    let mut alice = w.alice(Answer::Auto);
    let contact = format!("bob\\40busyish.test@{}", w.prosody.component());
    let sid = alice.call(&contact, CallOptions::jmi()).expect("call");
    phone
        .expect_event("CALL_INCOMING", T)
        .unwrap_or_else(|e| panic!("no INVITE at the phone: {e:#}\n{}", w.stox.log_tail(30)));
    let run = overloaded.wait(T).expect("sipp");
    let invites: Vec<_> = run
        .received_requests_unique()
        .into_iter()
        .filter(|m| m.method() == Some("INVITE"))
        .collect();
    assert_eq!(invites.len(), 1, "{}", run.summary());
    assert!(
        w.stox
            .log_tail(400)
            .lines()
            .any(|l| l.contains("trying the next target")),
        "{}",
        w.stox.log_tail(40)
    );
    phone.hangup().expect("reject with 486");
    let ended = alice
        .expect_event("terminated", &sid, T)
        .unwrap_or_else(|e| panic!("486 did not end the Jingle session: {e:#}"));
    assert_eq!(ended.str("reason"), Some("busy"), "{ended}");
    w.finish();
}

/// Calls over SIP over TLS (issue 5), both ways, with a phone registered over TLS.
/// stox listens on UDP and TLS (self-signed certificate); carol (baresip) is a SIP user of
/// `C` registered over TLS (her TLS connection is her flow, RFC 5626 §5.3)
/// carol dials alice: the INVITE, ACK and BYE travel over that TLS connection; alice hears
///   her, the call ends
/// alice calls carol@sip.localhost: the INVITE reaches carol over her TLS flow; she answers,
///   alice hears her, alice hangs up → BYE over TLS; every SIP message carol saw was TLS
#[test]
fn calls_over_tls_both_ways() {
    let certs = temp_dir("certs").expect("temp dir");
    let (cert, key) = stox_tests::certs::self_signed(certs.path());
    let (udp, tls) = (
        stox_tests::ports::free_port(),
        stox_tests::ports::free_port(),
    );
    let w = Calls::start(&format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:{udp}\", \"tls:127.0.0.1:{tls}\"]\n\
         [sip.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    let r = w
        .stox
        .admin_request(
            "POST",
            "/api/v1/sip-users",
            Some(r#"{"user": "carol", "password": "carol-secret"}"#),
        )
        .expect("admin");
    assert_eq!(r.status, 201, "{}", r.body);
    let mut options = BaresipOptions::new("carol", PHONE_HZ)
        .domain(w.prosody.component())
        .codecs(Codecs::OpusAndPcmu)
        .sip_trace(true);
    options.outbound_proxy = Some(SocketAddr::from(([127, 0, 0, 1], tls)));
    options.outbound_tls = true;
    options.tls_ca = Some(cert.clone());
    options.register_interval = 600;
    options.password = Some("carol-secret".into());
    let mut carol = Baresip::start(options).expect("baresip");
    let codes: Vec<u16> = carol
        .expect_final_responses("REGISTER", 2, T)
        .unwrap_or_else(|e| panic!("{e}\n{}", w.stox.log_tail(40)))
        .iter()
        .filter_map(|m| m.status())
        .collect();
    assert_eq!(codes, vec![401, 200], "{}", carol.context());

    // carol → alice.
    let mut alice = w.alice(Answer::Auto);
    carol.dial(&w.alice_uri()).expect("dial");
    let incoming = alice
        .expect(T, |e| e.kind() == "incoming")
        .unwrap_or_else(|e| {
            panic!(
                "no call at alice: {e:#}\n{}\n{}",
                carol.context(),
                w.stox.log_tail(40)
            )
        });
    let sid = incoming.sid().expect("sid").to_string();
    alice.expect_event("accepted", &sid, T).expect("accepted");
    carol
        .expect_event("CALL_ESTABLISHED", T)
        .unwrap_or_else(|e| panic!("no 200 OK over TLS: {e:#}\n{}", carol.context()));
    alice
        .wait_tone(&sid, PHONE_HZ, TOL, MIN_RMS, T)
        .unwrap_or_else(|e| panic!("alice does not hear carol: {e:#}"));
    carol.hangup().expect("hangup");
    alice
        .expect_event("terminated", &sid, T)
        .unwrap_or_else(|e| panic!("BYE over TLS did not end the session: {e:#}"));
    phone_closed(&mut carol, T);

    // alice → carol@C, over carol's TLS flow.
    let dave = format!("carol@{}", w.prosody.component());
    let sid = alice.call(&dave, CallOptions::jmi()).expect("call");
    carol
        .expect_event("CALL_INCOMING", T)
        .unwrap_or_else(|e| panic!("carol does not ring: {e:#}\n{}", w.stox.log_tail(40)));
    carol.accept().expect("accept");
    alice
        .expect_event("accepted", &sid, T)
        .unwrap_or_else(|e| panic!("carol's answer did not reach alice: {e:#}"));
    alice
        .wait_tone(&sid, PHONE_HZ, TOL, MIN_RMS, T)
        .unwrap_or_else(|e| panic!("alice does not hear carol: {e:#}"));
    alice.hangup(&sid).expect("hangup");
    phone_closed(&mut carol, T);
    assert_eq!(
        carol.received_requests("BYE").len(),
        1,
        "{}",
        carol.context()
    );
    let trace = carol.sip_trace();
    assert!(!trace.is_empty());
    assert!(
        trace.iter().all(|t| t.transport == "TLS"),
        "{:?}",
        trace
            .iter()
            .map(|t| (&t.transport, t.message.request_uri(), t.message.status()))
            .collect::<Vec<_>>()
    );
    w.finish();
}

/// RFC 3263 for calls: with no outbound proxy, an INVITE to `sip:bob@voip.test` goes
/// where DNS says (dnsmasq on loopback: `_sip._udp.voip.test` SRV → the phone's port).
/// dnsmasq: _sip._udp.voip.test SRV 0 0 PHONE_PORT pbx.voip.test, pbx.voip.test A 127.0.0.1
/// alice calls bob\40voip.test@sip.localhost (JMI) → the phone gets INVITE
///   sip:bob@voip.test; it answers 486 → alice's session ends `busy`
#[test]
fn xmpp_call_to_a_sip_domain_goes_where_dns_says() {
    use stox_tests::dnsmasq::Zone;
    let (w, mut phone, dns) = phone_behind_dns(|port| {
        Zone::new()
            .srv("_sip._udp.voip.test", "pbx.voip.test", port, 0, 0)
            .a("pbx.voip.test", "127.0.0.1")
    });
    let mut alice = w.alice(Answer::Auto);
    let contact = format!("bob\\40voip.test@{}", w.prosody.component());
    let sid = alice.call(&contact, CallOptions::jmi()).expect("call");
    phone
        .expect_event("CALL_INCOMING", T)
        .unwrap_or_else(|e| panic!("no INVITE at the phone: {e:#}\n{}", w.stox.log_tail(30)));
    let invites = phone.received_requests("INVITE");
    assert_eq!(invites.len(), 1, "{}", phone.context());
    assert_eq!(
        invites[0]
            .request_uri()
            .map(|u| u.split(';').next().unwrap_or(u)),
        Some("sip:bob@voip.test"),
        "{}",
        phone.context()
    );
    assert!(
        dns.queries()
            .iter()
            .any(|q| q.contains("query[SRV] _sip._udp.voip.test")),
        "{:#?}",
        dns.queries()
    );
    phone.hangup().expect("reject with 486");
    let ended = alice
        .expect_event("terminated", &sid, T)
        .unwrap_or_else(|e| panic!("486 did not end the Jingle session: {e:#}"));
    assert_eq!(ended.str("reason"), Some("busy"), "{ended}");
    w.finish();
}

/// bob's phone rings and rings: after `[calls] no_answer_secs` (3 s here) stox gives up on
/// it too: CANCEL to the phone, session-terminate `<timeout/>` to alice.
#[test]
fn xmpp_call_to_phone_that_never_answers_times_out() {
    let w = Calls::start("[calls]\nno_answer_secs = 3\n");
    let mut alice = w.alice(Answer::Auto);
    let mut phone = w.phone("bob", Codecs::OpusAndPcmu);
    let contact = w.contact(&phone);
    let started = Instant::now();
    let sid = alice.call(&contact, CallOptions::jmi()).expect("call");
    phone.expect_event("CALL_INCOMING", T).expect("INVITE");
    let ended = alice
        .expect_event("terminated", &sid, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("the unanswered call did not end: {e:#}"));
    let waited = started.elapsed();
    assert_eq!(ended.str("reason"), Some("timeout"), "{ended}");
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(12),
        "the ring timeout is 3 s, the call ended after {waited:?}"
    );
    phone_closed(&mut phone, T);
    assert_eq!(
        phone.received_requests("CANCEL").len(),
        1,
        "{}",
        phone.context()
    );
    w.finish();
}

/// alice calls SIP phones (SIPp) that ring, then refuse with a final error: each reaches
/// alice as session-terminate with the reason of STOX-MAPPING.md §7, and stox ACKs it.
#[test]
fn sip_error_responses_end_the_xmpp_call_with_the_mapped_reason() {
    let w = Calls::start("");
    let mut alice = w.alice(Answer::Auto);
    for (status, phrase, condition) in [
        (603, "Decline", "decline"),
        (480, "Temporarily Unavailable", "gone"),
        (404, "Not Found", "gone"),
        (488, "Not Acceptable Here", "incompatible-parameters"),
        (500, "Server Internal Error", "general-error"),
        (503, "Service Unavailable", "connectivity-error"),
    ] {
        let uas = Sipp::uas_invite_status(status, phrase).expect("sipp uas");
        let port = uas.port();
        let contact = sip_contact_jid("bob", "127.0.0.1", port, w.prosody.component());
        let sid = alice.call(&contact, CallOptions::jmi()).expect("call");
        alice
            .expect_event("session_ringing", &sid, T)
            .unwrap_or_else(|e| panic!("SIP {status}: 180 did not ring: {e:#}"));
        let ended = alice
            .expect_event("terminated", &sid, T)
            .unwrap_or_else(|e| panic!("SIP {status} did not end the session: {e:#}"));
        assert_eq!(
            ended.str("reason"),
            Some(condition),
            "SIP {status}: {ended}"
        );
        assert_eq!(ended.str("by"), Some("remote"), "SIP {status}: {ended}");
        let run = uas.wait(T).expect("sipp result");
        assert_eq!(
            run.exit_code,
            Some(0),
            "SIP {status} not ACKed? {}",
            run.summary()
        );
        let invites: Vec<_> = run
            .received_requests_unique()
            .into_iter()
            .filter(|m| m.method() == Some("INVITE"))
            .collect();
        assert_eq!(invites.len(), 1, "{}", run.summary());
        let ruri = invites[0].request_uri().unwrap_or_default();
        assert!(
            ruri.starts_with(&format!("sip:bob@127.0.0.1:{port}")),
            "{ruri}"
        );
        assert!(
            invites[0].body_text().contains("RTP/AVP"),
            "{}",
            invites[0].body_text()
        );
    }
    w.finish();
}

/// alice gives up while the phone rings: session-terminate `<cancel/>` → CANCEL.
#[test]
fn xmpp_hangup_before_answer_cancels_the_invite() {
    let w = Calls::start("");
    let mut alice = w.alice(Answer::Auto);
    let mut phone = w.phone("bob", Codecs::OpusAndPcmu);
    let contact = w.contact(&phone);
    let sid = alice.call(&contact, CallOptions::jmi()).expect("call");
    phone.expect_event("CALL_INCOMING", T).expect("INVITE");
    alice
        .expect_event("session_ringing", &sid, T)
        .unwrap_or_else(|e| panic!("180 did not become session-info <ringing/>: {e:#}"));
    alice.hangup_with(&sid, "cancel").expect("hangup");
    phone_closed(&mut phone, T);
    let cancels = phone.received_requests("CANCEL");
    assert_eq!(cancels.len(), 1, "{}", phone.context());
    assert!(phone.received_requests("BYE").is_empty());
    w.finish();
}

/// The INVITE for a call to `C/phone` goes to the phone's address `sip:bob@127.0.0.1:P`:
/// `phone` is the resource the gateway gives every contact JID, not a GRUU the phone issued
/// (RFC 5627), so it has no `;gr=` on the Request-URI.
#[test]
fn invite_request_uri_is_the_phones_address() {
    let w = Calls::start("");
    let mut alice = w.alice(Answer::Auto);
    let mut phone = w.phone("bob", Codecs::OpusAndPcmu);
    let contact = w.contact(&phone);
    let sid = alice.call(&contact, CallOptions::jmi()).expect("call");
    phone.expect_event("CALL_INCOMING", T).expect("INVITE");
    let invites = phone.received_requests("INVITE");
    alice.hangup_with(&sid, "cancel").expect("hangup");
    assert_eq!(invites.len(), 1, "{}", phone.context());
    assert_eq!(invites[0].request_uri(), Some(phone.uri().as_str()));
    assert_eq!(invites[0].header_uri("To"), Some(phone.uri().as_str()));
    w.finish();
}

// ---------------------------------------------------------------------------------------------
// RFC 4733 from a pcap

/// SIPp plays a phone: INVITE sip:alice@localhost with PCMU + telephone-event, then replays a
/// pcap of a 500 Hz PCMU tone with the RFC 4733 events of "159#" in it; alice hears the tone
/// and the four keys (libwebrtc plays received telephone-events out as DTMF tones); SIPp's
/// BYE ends alice's session.
#[test]
fn sipp_rfc4733_digits_from_a_pcap_reach_the_xmpp_client() {
    let w = Calls::start("");
    let mut alice = w.alice(Answer::Auto);
    let dir = temp_dir("calls-pcap").expect("temp dir");
    let pcap = dir.path().join("pcmu-500hz-159#.pcap");
    let packets = pcmu_tone_with_rfc4733(
        500.0,
        Duration::from_millis(1500),
        "159#",
        Duration::from_millis(400),
        Duration::from_millis(600),
    );
    let length = packets.last().map(|(at, _)| *at).unwrap_or_default();
    write_rtp_pcap(&pcap, &packets).expect("pcap");
    let sipp = Sipp::uac_invite_pcap(
        w.stox.sip_addr(),
        "alice",
        w.prosody.domain(),
        &pcap,
        Duration::from_millis(1500),
        length + Duration::from_millis(1500),
    )
    .timeout(Duration::from_secs(40))
    .spawn()
    .expect("sipp");

    let propose = alice
        .expect(T, |e| e.kind() == "propose")
        .unwrap_or_else(|e| panic!("no <propose/> for SIPp's INVITE: {e:#}"));
    let sid = propose.sid().expect("sid").to_string();
    alice
        .wait_connected(&sid, T)
        .unwrap_or_else(|e| panic!("ICE/DTLS with stox did not connect: {e:#}"));
    let offer = stox_media(&alice, &sid, "session-initiate");
    assert!(has_codec(&offer.codecs, "PCMU"), "{offer:?}");
    assert!(
        has_codec(&offer.codecs, "telephone-event"),
        "the phone offered telephone-event: {offer:?}"
    );
    alice
        .wait_tone(&sid, 500.0, TOL, 0.02, T)
        .unwrap_or_else(|e| panic!("alice does not hear the pcap's tone: {e:#}"));
    let digits = alice
        .expect_dtmf(&sid, 4, T)
        .unwrap_or_else(|e| panic!("RFC 4733 events did not reach alice: {e:#}"));
    assert_eq!(digits, "159#");

    let ended = alice
        .expect_event("terminated", &sid, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("SIPp's BYE did not end the session: {e:#}"));
    assert_eq!(ended.str("reason"), Some("success"), "{ended}");
    let run = sipp.wait(T).expect("sipp result");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    assert_eq!(run.successful, 1, "{}", run.summary());
    w.finish();
}

/// Harness check without stox: the generated pcap, replayed by SIPp into a baresip, carries
/// the tone and the four keys. If this fails, the pcap or SIPp is at fault, not stox.
#[test]
fn generated_rfc4733_pcap_reaches_baresip_without_stox() {
    let mut phone = Baresip::start(
        BaresipOptions::new("b", PHONE_HZ)
            .codecs(Codecs::PcmuOnly)
            .auto_answer(true),
    )
    .expect("baresip");
    let dir = temp_dir("calls-pcap").expect("temp dir");
    let pcap = dir.path().join("pcmu-500hz.pcap");
    let packets = pcmu_tone_with_rfc4733(
        500.0,
        Duration::from_millis(1500),
        "159#",
        Duration::from_millis(400),
        Duration::from_millis(600),
    );
    let length = packets.last().map(|(at, _)| *at).unwrap_or_default();
    write_rtp_pcap(&pcap, &packets).expect("pcap");
    let domain = format!("127.0.0.1:{}", phone.sip_port());
    let sipp = Sipp::uac_invite_pcap(
        phone.sip_addr(),
        "b",
        &domain,
        &pcap,
        Duration::from_millis(300),
        length + Duration::from_millis(500),
    )
    .timeout(Duration::from_secs(30))
    .spawn()
    .expect("sipp");
    phone
        .expect_event("CALL_ESTABLISHED", T)
        .expect("established");
    assert_eq!(phone.expect_dtmf(4, T).expect("dtmf"), "159#");
    phone_closed(&mut phone, T);
    let run = sipp.wait(T).expect("sipp result");
    assert_eq!(run.exit_code, Some(0), "{}", run.summary());
    let heard = phone.heard(Duration::from_millis(200)).expect("recording");
    assert!(heard.is_tone(500.0, TOL), "{heard:?}");
}

/// A SIP leg that sends no RTP at all (SIPp after its ACK) ends the call after
/// `[media] no_media_secs` (3 s here): BYE to the phone, session-terminate to alice.
#[test]
fn silent_sip_leg_ends_the_call_after_no_media_secs() {
    let w = Calls::start("no_media_secs = 3\n");
    let mut alice = w.alice(Answer::Auto);
    let sipp = Sipp::uac_invite_wait_bye(w.stox.sip_addr(), "alice", w.prosody.domain())
        .timeout(Duration::from_secs(30))
        .spawn()
        .expect("sipp");
    let sid = alice
        .expect(T, |e| e.kind() == "propose")
        .unwrap_or_else(|e| panic!("no <propose/> for SIPp's INVITE: {e:#}"))
        .sid()
        .expect("sid")
        .to_string();
    alice.wait_connected(&sid, T).expect("connected");
    let connected = Instant::now();
    let ended = alice
        .expect_event("terminated", &sid, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("the silent call was not ended: {e:#}"));
    let after = connected.elapsed();
    assert_eq!(ended.str("by"), Some("remote"), "{ended}");
    assert!(
        after >= Duration::from_secs(1) && after < Duration::from_secs(12),
        "no_media_secs is 3, the call ended {after:?} after connecting"
    );
    let run = sipp.wait(T).expect("sipp result");
    assert_eq!(
        run.exit_code,
        Some(0),
        "no BYE at the phone? {}",
        run.summary()
    );
    w.finish();
}

/// G.711 μ-law decoding (ITU-T G.711).
fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if u & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

/// A phone behind a NAT, written by hand over UDP: its SDP says RTP port X, but it sends its
/// RTP from another socket Y (a NAT would rewrite the source port). It receives on Y only.
struct NatPhone {
    sip: UdpSocket,
    rtp: UdpSocket,
    advertised: UdpSocket,
    call_id: String,
    from_tag: String,
    to: String,
    contact: String,
    media: SocketAddr,
}

impl NatPhone {
    fn request_head(&self, method: &str, uri: &str, cseq: u32, to: &str) -> String {
        let local = self.sip.local_addr().expect("addr");
        format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK{method}{cseq}{}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:nat@{local}>;tag={}\r\n\
             To: {to}\r\n\
             Call-ID: {}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:nat@{local}>\r\n",
            self.from_tag, self.from_tag, self.call_id
        )
    }

    /// Reads SIP until a final response to `cseq_method`; returns it.
    fn final_response(&self, cseq_method: &str) -> SipMessage {
        let deadline = Instant::now() + T;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            self.sip
                .set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            let Ok((n, _)) = self.sip.recv_from(&mut buf) else {
                continue;
            };
            let Some(m) = SipMessage::parse(&buf[..n]) else {
                continue;
            };
            if m.status().is_some_and(|s| s >= 200)
                && m.header("CSeq").is_some_and(|c| c.ends_with(cseq_method))
            {
                return m;
            }
        }
        panic!("no final response to {cseq_method}");
    }

    /// INVITE `uri` through stox with a PCMU offer on port X; 200 OK; ACK.
    fn call(stox: SocketAddr, uri: &str) -> NatPhone {
        let bind = || UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let mut phone = NatPhone {
            sip: bind(),
            rtp: bind(),
            advertised: bind(),
            call_id: format!("nat-{}@127.0.0.1", std::process::id()),
            from_tag: "natphone".to_string(),
            to: format!("<{uri}>"),
            contact: String::new(),
            media: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        };
        let x = phone.advertised.local_addr().expect("addr").port();
        let sdp = format!(
            "v=0\r\no=nat 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {x} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
        );
        let invite = format!(
            "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            phone.request_head("INVITE", uri, 1, &phone.to),
            sdp.len()
        );
        phone.sip.send_to(invite.as_bytes(), stox).expect("INVITE");
        let ok = phone.final_response("INVITE");
        assert_eq!(
            ok.status(),
            Some(200),
            "{}",
            String::from_utf8_lossy(&ok.raw)
        );
        phone.to = ok.header("To").expect("To").to_string();
        phone.contact = ok.header_uri("Contact").expect("Contact").to_string();
        let answer = ok.body_text();
        let port: u16 = answer
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no m=audio in the answer:\n{answer}"));
        assert!(answer.contains("c=IN IP4 127.0.0.1"), "{answer}");
        phone.media = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let ack = format!(
            "{}Content-Length: 0\r\n\r\n",
            phone.request_head("ACK", &phone.contact, 1, &phone.to)
        );
        phone.sip.send_to(ack.as_bytes(), stox).expect("ACK");
        phone
    }

    /// BYE, answered 200.
    fn hang_up(&self, stox: SocketAddr) {
        let bye = format!(
            "{}Content-Length: 0\r\n\r\n",
            self.request_head("BYE", &self.contact, 2, &self.to)
        );
        self.sip.send_to(bye.as_bytes(), stox).expect("BYE");
        assert_eq!(self.final_response("BYE").status(), Some(200));
    }
}

/// Symmetric RTP (RFC 4961) on the SIP leg: a phone behind a NAT advertises RTP port X but
/// sends from Y. stox latches on to Y: alice hears the phone's 500 Hz, and the phone hears
/// alice's 660 Hz on Y (decoded from the PCMU stox sends there).
#[test]
fn sip_leg_latches_on_to_the_phones_actual_rtp_source() {
    let w = Calls::start("");
    let mut alice = w.alice(Answer::Auto);
    let stox = w.stox.sip_addr();
    let uri = w.alice_uri();
    let phone = std::thread::scope(|scope| {
        let dialing = scope.spawn(|| NatPhone::call(stox, &uri));
        let propose = alice.expect(T, |e| e.kind() == "propose");
        let phone = dialing.join().expect("phone thread");
        (phone, propose)
    });
    let (phone, propose) = phone;
    let sid = propose.expect("propose").sid().expect("sid").to_string();
    alice.wait_connected(&sid, T).expect("connected");

    // 3 s of 500 Hz from Y, while collecting what stox sends to Y.
    let packets = pcmu_tone_with_rfc4733(
        500.0,
        Duration::from_secs(3),
        "",
        Duration::ZERO,
        Duration::ZERO,
    );
    let rtp = phone.rtp.try_clone().expect("clone");
    let media = phone.media;
    let sender = std::thread::spawn(move || {
        let start = Instant::now();
        for (at, packet) in packets {
            if let Some(wait) = at.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            let _ = rtp.send_to(&packet, media);
        }
    });
    let mut heard: Vec<i16> = Vec::new();
    let mut sources = std::collections::HashSet::new();
    let mut buf = [0u8; 2048];
    let until = Instant::now() + Duration::from_millis(3200);
    while Instant::now() < until {
        phone
            .rtp
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        if let Ok((n, from)) = phone.rtp.recv_from(&mut buf) {
            if n > 12 && buf[1] & 0x7f == 0 {
                sources.insert(from);
                heard.extend(buf[12..n].iter().map(|&b| ulaw_to_linear(b)));
            }
        }
    }
    sender.join().expect("sender");
    alice
        .wait_tone(&sid, 500.0, TOL, 0.02, T)
        .unwrap_or_else(|e| panic!("alice does not hear the NATed phone: {e:#}"));
    assert_eq!(
        sources.into_iter().collect::<Vec<_>>(),
        vec![media],
        "RTP to the phone comes from the port of stox's answer"
    );
    let analysis = stox_tests::audio::analyse_samples(&heard, 8000, 0.5);
    assert!(
        analysis.is_tone(f64::from(CLIENT_HZ), TOL) && analysis.rms > RMS_FLOOR,
        "the phone should hear 660 Hz on its real RTP port, heard {analysis:?} in {} samples",
        heard.len()
    );

    phone.hang_up(stox);
    alice
        .expect_event("terminated", &sid, T)
        .expect("BYE ends the session");
    w.finish();
}

// ---------------------------------------------------------------------------------------------
// Admin API

/// The calls of `GET /api/v1/calls` (a JSON array, or an object with a `calls` array).
fn listed_calls(stox: &Stox) -> Vec<Value> {
    let response = stox.admin_get("/api/v1/calls").expect("GET /api/v1/calls");
    assert_eq!(response.status, 200, "{}", response.body);
    let body = response.json().expect("JSON");
    match body {
        Value::Array(calls) => calls,
        Value::Object(mut o) => match o.remove("calls") {
            Some(Value::Array(calls)) => calls,
            other => panic!("no calls array in {other:?}"),
        },
        other => panic!("unexpected body {other}"),
    }
}

/// Every (key path, number) in a JSON value.
fn numbers(v: &Value, path: &str, out: &mut Vec<(String, f64)>) {
    match v {
        Value::Number(n) => out.push((path.to_string(), n.as_f64().unwrap_or(0.0))),
        Value::Object(o) => {
            for (k, v) in o {
                numbers(v, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                numbers(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The value of the Prometheus sample `name{labels}` in `text` (labels in any order; others
/// may be present), e.g. `metric(t, "stox_rtp_packets_total", &[("leg", "sip"), ("dir", "in")])`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|(_, value)| value.trim().parse().ok())
}

/// A live SIP → XMPP call is listed with both legs, its codec, its state and packet counters
/// that grow; `DELETE /api/v1/calls/{id}` hangs up both legs (BYE to the phone,
/// session-terminate to alice), and the list is empty again; `/metrics` counted the call,
/// the RTP packets of both legs and the admin hang-up.
#[test]
fn admin_api_lists_a_live_call_and_delete_hangs_up_both_legs_and_metrics_count_it() {
    let SipCall {
        w,
        mut alice,
        mut phone,
        sid,
        caller,
    } = sip_call_to_alice(Calls::start(""), Codecs::PcmuOnly);
    talk();
    let calls = listed_calls(&w.stox);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    let text = call.to_string();
    assert!(
        text.contains("PCMU") || text.contains("pcmu"),
        "codec missing: {text}"
    );
    assert!(
        text.contains(alice.jid()) || text.contains(&w.alice_bare()),
        "XMPP leg missing: {text}"
    );
    let caller_bare = caller.split('/').next().unwrap_or_default();
    assert!(
        text.contains(&format!("127.0.0.1:{}", phone.sip_port())) || text.contains(caller_bare),
        "SIP leg missing: {text}"
    );
    let mut counters = Vec::new();
    numbers(call, "", &mut counters);
    let packets: Vec<&(String, f64)> = counters
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().contains("packet"))
        .collect();
    assert!(
        packets.len() >= 2 && packets.iter().all(|(_, n)| *n > 0.0),
        "packet counters of both legs should be > 0 after 2.5 s of audio: {text}"
    );
    let id = match &call["id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("call without id: {other} in {text}"),
    };

    let response = w
        .stox
        .admin_request("DELETE", &format!("/api/v1/calls/{id}"), None)
        .expect("DELETE");
    assert!(
        (200..300).contains(&response.status),
        "{} {}",
        response.status,
        response.body
    );
    let ended = alice
        .expect_event("terminated", &sid, T)
        .unwrap_or_else(|e| panic!("DELETE did not end the Jingle session: {e:#}"));
    assert_eq!(ended.str("by"), Some("remote"));
    phone_closed(&mut phone, T);
    assert_eq!(
        phone.received_requests("BYE").len(),
        1,
        "{}",
        phone.context()
    );
    let deadline = Instant::now() + T;
    while !listed_calls(&w.stox).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(listed_calls(&w.stox).is_empty(), "the call is still listed");
    let missing = w
        .stox
        .admin_request("DELETE", &format!("/api/v1/calls/{id}"), None)
        .expect("DELETE again");
    assert_eq!(missing.status, 404, "{}", missing.body);

    // Prometheus: one call each way counted, RTP relayed on both legs, ended by the admin.
    let metrics =
        stox_tests::stox::http_request(w.stox.admin_addr(), "GET", "/metrics", None, None)
            .expect("GET /metrics");
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    let m =
        |name: &str, labels: &[(&str, &str)]| metric(&metrics.body, name, labels).unwrap_or(0.0);
    assert_eq!(
        m("stox_calls_total", &[("direction", "sip_to_xmpp")]),
        1.0,
        "{}",
        metrics.body
    );
    assert_eq!(
        m("stox_calls_answered_total", &[("direction", "sip_to_xmpp")]),
        1.0
    );
    assert_eq!(
        m("stox_calls_ended_total", &[("why", "admin")]),
        1.0,
        "{}",
        metrics.body
    );
    assert_eq!(m("stox_calls_active", &[]), 0.0, "{}", metrics.body);
    for leg in ["xmpp", "sip"] {
        for dir in ["in", "out"] {
            // 2.5 s at 50 packets/s each way.
            let packets = m("stox_rtp_packets_total", &[("leg", leg), ("dir", dir)]);
            assert!(
                packets >= 50.0,
                "{leg} {dir}: {packets} packets\n{}",
                metrics.body
            );
            assert!(m("stox_rtp_bytes_total", &[("leg", leg), ("dir", dir)]) > packets);
        }
    }
    w.finish();
}

/// The phone puts the call on hold and resumes it (baresip `hold`/`resume`: re-INVITEs with
/// `a=sendonly`, then `a=sendrecv`, RFC 3264 §8.4): stox answers both 200 with an SDP, the
/// call survives, and audio flows both ways after the resume.
#[test]
fn phone_hold_and_resume_reinvites_keep_the_call() {
    let SipCall {
        w,
        mut alice,
        mut phone,
        sid,
        ..
    } = sip_call_to_alice(Calls::start(""), Codecs::OpusAndPcmu);
    let hold = phone.command("hold", None).expect("hold");
    assert!(hold.ok, "{hold:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let resume = phone.command("resume", None).expect("resume");
    assert!(resume.ok, "{resume:?}");
    std::thread::sleep(Duration::from_millis(1500));

    let trace = phone.sip_trace();
    let reinvites: Vec<_> = trace
        .iter()
        .filter(|t| !t.received && t.message.method() == Some("INVITE"))
        .skip(1)
        .collect();
    assert_eq!(reinvites.len(), 2, "{}", phone.context());
    assert!(reinvites[0].message.body_text().contains("a=sendonly"));
    let answers: Vec<_> = trace
        .iter()
        .filter(|t| t.received && t.message.status() == Some(200))
        .filter(|t| {
            t.message
                .header("CSeq")
                .is_some_and(|c| c.ends_with("INVITE"))
        })
        .map(|t| t.message.body_text())
        .collect();
    assert!(answers.len() >= 3, "each INVITE answered 200: {answers:?}");
    assert!(
        answers.iter().all(|sdp| sdp.contains("m=audio ")),
        "{answers:?}"
    );
    let ended = alice.expect(Duration::from_millis(100), |e| e.kind() == "terminated");
    assert!(ended.is_err(), "hold ended the call");
    alice
        .wait_tone(&sid, PHONE_HZ, TOL, MIN_RMS, T)
        .unwrap_or_else(|e| panic!("no audio from the phone after resume: {e:#}"));
    // Toward the phone: baresip 1.0's sndfile stops dumping when hold restarts its player,
    // so the recording cannot tell; stox's own counters of the SIP leg must keep growing
    // (50 packets/s).
    let sent_to_phone = |w: &Calls| -> f64 {
        let calls = listed_calls(&w.stox);
        calls
            .first()
            .and_then(|c| c["media"]["sip"]["packets_out"].as_f64())
            .unwrap_or_else(|| panic!("no media.sip.packets_out in {calls:?}"))
    };
    let before = sent_to_phone(&w);
    std::thread::sleep(Duration::from_secs(1));
    let after = sent_to_phone(&w);
    assert!(
        after - before >= 30.0,
        "{before} → {after} packets to the phone in 1 s"
    );
    phone.hangup().expect("hangup");
    alice
        .expect_event("terminated", &sid, T)
        .expect("terminated");
    phone_closed(&mut phone, T);
    w.finish();
}

/// A SIP request's first line and header values by name, from a `ws_phone.js` event.
fn ws_request_headers(text: &str, name: &str) -> Vec<String> {
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// stox with a ws listener, dave a SIP user of `C`, and dave's `ws_phone.js` registered
/// over WebSocket with outbound (an `.invalid` Contact); returns the ws port and his Contact.
fn websocket_phone() -> (Calls, stox_tests::jssip_peer::JsSipPeer, u16, String) {
    let (w, phone, ws, contact, _) = websocket_phone_over(false);
    (w, phone, ws, contact)
}

/// The same over `ws:` or (`secure`) `wss:` with a self-signed certificate the phone trusts;
/// the last item keeps the certificate's directory.
fn websocket_phone_over(
    secure: bool,
) -> (
    Calls,
    stox_tests::jssip_peer::JsSipPeer,
    u16,
    String,
    Option<tempfile::TempDir>,
) {
    let (udp, ws) = (
        stox_tests::ports::free_port(),
        stox_tests::ports::free_port(),
    );
    let (scheme, certs) = if secure {
        let dir = stox_tests::process::temp_dir("wsscert").expect("temp dir");
        let (cert, key) = stox_tests::certs::self_signed(dir.path());
        (
            "wss",
            Some((
                format!(
                    "[sip.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                    cert.display(),
                    key.display()
                ),
                cert,
                dir,
            )),
        )
    } else {
        ("ws", None)
    };
    let w = Calls::start(&format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:{udp}\", \"{scheme}:127.0.0.1:{ws}\"]\n{}",
        certs.as_ref().map_or("", |c| c.0.as_str())
    ));
    let r = w
        .stox
        .admin_request(
            "POST",
            "/api/v1/sip-users",
            Some(r#"{"user": "dave", "password": "dave-secret"}"#),
        )
        .expect("admin");
    assert_eq!(r.status, 201, "{}", r.body);
    let mut phone =
        stox_tests::jssip_peer::JsSipPeer::start_ws_phone(&stox_tests::jssip_peer::JsSipOptions {
            url: format!("{scheme}://127.0.0.1:{ws}"),
            uri: format!("sip:dave@{}", w.prosody.component()),
            password: "dave-secret".into(),
            ca_file: certs.as_ref().map(|c| c.1.clone()),
        })
        .expect("ws phone");
    let reg = phone
        .expect_event("registered", T)
        .unwrap_or_else(|e| panic!("not registered: {e:#}\n{}", w.stox.log_tail(30)));
    let contact = reg["contact"]
        .as_str()
        .unwrap_or_default()
        .trim_matches(|c| c == '<' || c == '>')
        .to_string();
    // RFC 7118 §5.1: `;transport=ws` over both (the Via says WS or WSS).
    assert!(contact.ends_with(".invalid;transport=ws"), "{contact}");
    let response = reg["response"].as_str().unwrap_or_default();
    assert_eq!(
        ws_request_headers(response, "Require"),
        vec!["outbound"],
        "{response}"
    );
    (w, phone, ws, contact, certs.map(|c| c.2))
}

/// The first line of a SIP message, lowercased: URI parameter values compare
/// case-insensitively (RFC 3261 §19.1.4), and rsipstack writes `transport=WS`.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_ascii_lowercase()
}

/// stox's BYE inside the call's dialog came over dave's WebSocket: to his Contact (the
/// dialog's remote target, an `.invalid` host), with one Via naming stox's ws listener.
fn assert_bye_over_the_websocket(
    w: &Calls,
    phone: &mut stox_tests::jssip_peer::JsSipPeer,
    ws: u16,
    contact: &str,
) {
    let bye = phone
        .expect(T, |e| e["event"] == "request" && e["method"] == "BYE")
        .unwrap_or_else(|e| panic!("no BYE over the WebSocket: {e:#}\n{}", w.stox.log_tail(40)));
    let text = bye["text"].as_str().unwrap_or_default();
    assert_eq!(
        first_line(text),
        format!("bye {} sip/2.0", contact.to_ascii_lowercase()),
        "to dave's Contact (the dialog's remote target): {text}"
    );
    let via = ws_request_headers(text, "Via");
    assert_eq!(via.len(), 1, "{via:?}");
    assert!(
        via[0].starts_with(&format!("SIP/2.0/WS 127.0.0.1:{ws}")),
        "stox's Via names its ws listener: {via:?}"
    );
    // One WebSocket all along; nothing was sent towards the `.invalid` host.
    assert_eq!(phone.count("connected"), 1, "{:?}", phone.seen());
    let log = w.stox.log_tail(300);
    assert!(!log.contains("failed to send request"), "{log}");
    assert!(!log.contains("fallback send"), "{log}");
    assert!(!log.contains("retrying via recorded flow address"), "{log}");
}

/// alice calls dave, whose phone is a SIP UA over WebSocket (RFC 7118; `ws_phone.js`, a
/// scripted UA on the `ws` package: JsSIP needs WebRTC for calls, stox's SIP legs are plain
/// RTP) registered with outbound and an `.invalid` Contact. The INVITE, the ACK and, when
/// alice hangs up, stox's BYE all come over the WebSocket dave opened: the BYE to his
/// Contact (`….invalid;transport=ws`), with stox's `Via: SIP/2.0/WS` (its ws listener) and
/// stox's Contact in the dialog naming `;transport=ws` (RFC 3261 §12.1.1, RFC 5626 §5.3).
#[test]
fn xmpp_call_to_a_websocket_phone_ends_with_a_bye_over_its_websocket() {
    let (w, mut phone, ws, contact) = websocket_phone();
    let mut alice = w.alice(Answer::Auto);
    let dave = format!("dave@{}", w.prosody.component());
    let sid = alice.call(&dave, CallOptions::jmi()).expect("call");
    let invite = phone
        .expect(T, |e| e["event"] == "request" && e["method"] == "INVITE")
        .unwrap_or_else(|e| {
            panic!(
                "no INVITE over the WebSocket: {e:#}\n{}",
                w.stox.log_tail(30)
            )
        });
    let text = invite["text"].as_str().unwrap_or_default();
    assert_eq!(
        first_line(text),
        format!("invite {} sip/2.0", contact.to_ascii_lowercase()),
        "to dave's Contact: {text}"
    );
    let via = ws_request_headers(text, "Via");
    assert!(
        via.first()
            .is_some_and(|v| v.starts_with(&format!("SIP/2.0/WS 127.0.0.1:{ws}"))),
        "stox's Via names its ws listener: {via:?}"
    );
    let stox_contact = ws_request_headers(text, "Contact").join(",");
    assert!(
        stox_contact
            .to_ascii_lowercase()
            .contains(&format!("127.0.0.1:{ws};transport=ws")),
        "stox's Contact in a dialog over WebSocket: {stox_contact}"
    );
    assert!(text.contains("RTP/AVP"), "a plain RTP offer: {text}");
    alice
        .expect_event("accepted", &sid, T)
        .unwrap_or_else(|e| panic!("the answer did not reach alice: {e:#}"));
    phone
        .expect(T, |e| e["event"] == "request" && e["method"] == "ACK")
        .unwrap_or_else(|e| panic!("no ACK over the WebSocket: {e:#}"));

    // alice hangs up: stox's BYE, in the dialog stox started (UAC), over dave's WebSocket.
    alice.hangup(&sid).expect("hangup");
    assert_bye_over_the_websocket(&w, &mut phone, ws, &contact);
    alice
        .expect_event("terminated", &sid, T)
        .expect("terminated");
    phone.quit();
    w.finish();
}

/// dave's WebSocket phone calls alice (INVITE over its WebSocket, a 407 answered with
/// Digest as dave); stox's 200 names its ws Contact; alice hangs up: stox's BYE, in the
/// dialog stox answered (UAS), comes over the same WebSocket to dave's `.invalid` Contact.
#[test]
fn a_websocket_phone_calls_xmpp_and_gets_the_bye_over_its_websocket() {
    let (w, mut phone, ws, contact) = websocket_phone();
    let mut alice = w.alice(Answer::Auto);
    phone.call(&w.alice_uri()).expect("call");
    let challenged = phone
        .expect(T, |e| e["event"] == "call_response" && e["status"] == 407)
        .unwrap_or_else(|e| panic!("no 407 for dave's INVITE: {e:#}\n{}", w.stox.log_tail(30)));
    assert!(
        challenged["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Proxy-Authenticate"),
        "{challenged}"
    );
    let propose = alice
        .expect(T, |e| e.kind() == "propose")
        .unwrap_or_else(|e| panic!("no <propose/>: {e:#}\n{}", w.stox.log_tail(30)));
    let sid = propose.sid().expect("sid").to_string();
    assert!(
        propose
            .str("from")
            .is_some_and(|f| f.starts_with(&format!("dave@{}", w.prosody.component()))),
        "{propose}"
    );
    alice.expect_event("accepted", &sid, T).expect("accepted");
    let ok = phone
        .expect(T, |e| e["event"] == "call_response" && e["status"] == 200)
        .unwrap_or_else(|e| panic!("no 200 for dave's INVITE: {e:#}\n{}", w.stox.log_tail(30)));
    let text = ok["text"].as_str().unwrap_or_default();
    let stox_contact = ws_request_headers(text, "Contact").join(",");
    assert!(
        stox_contact
            .to_ascii_lowercase()
            .contains(&format!("127.0.0.1:{ws};transport=ws")),
        "stox's Contact in a dialog over WebSocket: {stox_contact}"
    );
    assert!(text.contains("RTP/AVP"), "a plain RTP answer: {text}");
    std::thread::sleep(Duration::from_millis(500));

    alice.hangup(&sid).expect("hangup");
    // The Contact of dave's INVITE (with RFC 5626 §5.4's `ob`) is the dialog's target.
    assert_bye_over_the_websocket(&w, &mut phone, ws, &format!("{contact};ob"));
    alice
        .expect_event("terminated", &sid, T)
        .expect("terminated");
    phone.quit();
    w.finish();
}

/// The same over secure WebSocket (`wss:`, stox's own TLS + WebSocket bridge; browsers on an
/// https page may only use wss): alice calls dave's phone, registered over wss with outbound;
/// the INVITE, the ACK and stox's BYE come over that one secure WebSocket, to dave's
/// `.invalid` Contact, with stox's Via and Contact naming WSS.
#[test]
fn xmpp_call_to_a_secure_websocket_phone_runs_over_its_websocket() {
    let (w, mut phone, wss, contact, _certs) = websocket_phone_over(true);
    let mut alice = w.alice(Answer::Auto);
    let dave = format!("dave@{}", w.prosody.component());
    let sid = alice.call(&dave, CallOptions::jmi()).expect("call");
    let invite = phone
        .expect(T, |e| e["event"] == "request" && e["method"] == "INVITE")
        .unwrap_or_else(|e| panic!("no INVITE over the wss: {e:#}\n{}", w.stox.log_tail(30)));
    let text = invite["text"].as_str().unwrap_or_default();
    assert_eq!(
        first_line(text),
        format!("invite {} sip/2.0", contact.to_ascii_lowercase()),
        "to dave's Contact: {text}"
    );
    let via = ws_request_headers(text, "Via");
    assert!(
        via.first()
            .is_some_and(|v| v.starts_with(&format!("SIP/2.0/WSS 127.0.0.1:{wss};"))),
        "stox's Via names its wss listener: {via:?}"
    );
    let stox_contact = ws_request_headers(text, "Contact").join(",");
    assert!(
        stox_contact
            .to_ascii_lowercase()
            .contains(&format!("127.0.0.1:{wss};transport=wss")),
        "stox's Contact in a dialog over secure WebSocket: {stox_contact}"
    );
    alice
        .expect_event("accepted", &sid, T)
        .unwrap_or_else(|e| panic!("the answer did not reach alice: {e:#}"));
    phone
        .expect(T, |e| e["event"] == "request" && e["method"] == "ACK")
        .unwrap_or_else(|e| panic!("no ACK over the wss: {e:#}\n{}", w.stox.log_tail(30)));
    alice.hangup(&sid).expect("hangup");
    let bye = phone
        .expect(T, |e| e["event"] == "request" && e["method"] == "BYE")
        .unwrap_or_else(|e| panic!("no BYE over the wss: {e:#}\n{}", w.stox.log_tail(40)));
    let text = bye["text"].as_str().unwrap_or_default();
    assert_eq!(
        first_line(text),
        format!("bye {} sip/2.0", contact.to_ascii_lowercase()),
        "{text}"
    );
    let via = ws_request_headers(text, "Via");
    assert!(
        via.first()
            .is_some_and(|v| v.starts_with(&format!("SIP/2.0/WSS 127.0.0.1:{wss};"))),
        "{via:?}"
    );
    assert_eq!(phone.count("connected"), 1, "{:?}", phone.seen());
    alice
        .expect_event("terminated", &sid, T)
        .expect("terminated");
    phone.quit();
    w.finish();
}

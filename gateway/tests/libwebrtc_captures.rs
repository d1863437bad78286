//! Real captures from the StanzaJS + libwebrtc call peer (`tests/peers/jingle/captures/`,
//! written by its self-test with `STOX_UPDATE_CAPTURES=1`) through the lenient Jingle parser
//! and the SDP ⇄ Jingle converter: what a real client sends must parse and convert.

use std::path::PathBuf;

use stox_gateway::media::sdp_jingle::{
    jingle_to_sdp, parse_sdp, sdp_to_jingle, JingleMedia, Role, SdpParams,
};
use stox_xmpp::jingle::{Action, Jingle, JingleMessage};
use xmpp_parsers::minidom::Element;

fn capture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/peers/jingle/captures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn jingle_of(iq_xml: &str) -> Jingle {
    let iq: Element = iq_xml.trim().parse().expect("capture is XML");
    let jingle = iq
        .get_child("jingle", "urn:xmpp:jingle:1")
        .expect("a <jingle/> child");
    Jingle::parse(jingle).expect("the lenient parser accepts the real client")
}

#[test]
fn libwebrtc_offer_parses_with_its_quirks() {
    let j = jingle_of(&capture("libwebrtc-audio-offer.xml"));
    assert_eq!(j.action, Action::SessionInitiate);
    // Quirk: no initiator attribute.
    assert_eq!(j.initiator, None);
    assert_eq!(j.contents.len(), 1);
    let content = &j.contents[0];
    let desc = content.description.as_ref().expect("rtp description");
    assert_eq!(desc.media, "audio");
    assert!(desc.rtcp_mux);
    let names: Vec<&str> = desc
        .payload_types
        .iter()
        .filter_map(|p| p.name.as_deref())
        .collect();
    for codec in ["opus", "PCMU", "PCMA", "G722", "telephone-event"] {
        assert!(names.contains(&codec), "{codec} offered: {names:?}");
    }
    // Quirk: red carries a parameter without a value.
    let red = desc
        .payload_types
        .iter()
        .find(|p| p.name.as_deref() == Some("red"))
        .expect("red");
    assert!(red.parameters.iter().any(|(_, v)| v.is_none()), "{red:?}");
    // Quirk: ufrag/pwd and fingerprint but no candidates in session-initiate.
    let t = content.transport.as_ref().expect("ice transport");
    assert!(t.ufrag.is_some() && t.pwd.is_some());
    assert!(t.candidates.is_empty());
    assert!(t.fingerprint.is_some());
}

#[test]
fn libwebrtc_trickled_candidates_without_id_parse() {
    let j = jingle_of(&capture("libwebrtc-transport-info.xml"));
    assert_eq!(j.action, Action::TransportInfo);
    let t = j.contents[0].transport.as_ref().expect("transport");
    assert_eq!(t.candidates.len(), 1);
    assert_eq!(t.candidates[0].id, None);
    assert_eq!(t.candidates[0].ip.to_string(), "127.0.0.1");
    let j = jingle_of(&capture("libwebrtc-transport-info-gathering-complete.xml"));
    let t = j.contents[0].transport.as_ref().expect("transport");
    assert!(t.gathering_complete);
}

#[test]
fn libwebrtc_offer_and_answer_convert_to_sdp_and_back() {
    for (file, role) in [
        ("libwebrtc-audio-offer.xml", Role::Initiator),
        ("libwebrtc-audio-answer.xml", Role::Responder),
    ] {
        let j = jingle_of(&capture(file));
        let media = JingleMedia::from_jingle(&j);
        let sdp = jingle_to_sdp(
            &media,
            &SdpParams {
                role,
                session_id: 1,
                session_version: 1,
            },
        )
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        let text = sdp.to_string();
        let back = parse_sdp(text.as_bytes()).unwrap_or_else(|e| panic!("{file}: {e}\n{text}"));
        let again = sdp_to_jingle(&back, role).unwrap_or_else(|e| panic!("{file}: {e}"));
        let before: Vec<(u8, Option<String>)> = media.contents[0]
            .description
            .as_ref()
            .map(|d| {
                d.payload_types
                    .iter()
                    .map(|p| (p.id, p.name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let after: Vec<(u8, Option<String>)> = again.contents[0]
            .description
            .as_ref()
            .map(|d| {
                d.payload_types
                    .iter()
                    .map(|p| (p.id, p.name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            before, after,
            "{file}: payload types survive Jingle → SDP → Jingle"
        );
    }
}

#[test]
fn libwebrtc_sdp_converts_to_jingle() {
    for (file, role) in [
        ("libwebrtc-audio-offer.sdp", Role::Initiator),
        ("libwebrtc-audio-answer.sdp", Role::Responder),
    ] {
        let sdp = parse_sdp(capture(file).as_bytes()).unwrap_or_else(|e| panic!("{file}: {e}"));
        let media = sdp_to_jingle(&sdp, role).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(media.contents.len(), 1, "{file}");
        let t = media.contents[0].transport.as_ref().expect("transport");
        assert!(t.ufrag.is_some(), "{file}: ICE credentials carried");
        assert!(t.fingerprint.is_some(), "{file}: DTLS fingerprint carried");
    }
}

#[test]
fn jmi_propose_capture_parses() {
    let m: Element = capture("jmi-propose.xml").trim().parse().expect("xml");
    let jmi = JingleMessage::from_message(&m)
        .expect("a JMI payload")
        .expect("parses");
    assert!(matches!(jmi, JingleMessage::Propose { .. }), "{jmi:?}");
}

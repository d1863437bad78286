//! SDP ⇄ Jingle on the vector files (gateway/tests/vectors and xmpp/tests/vectors; provenance
//! in their READMEs): exact expectations on key fields and round trips both ways.

use minidom::Element;
use std::path::PathBuf;
use stox_gateway::media::sdp_jingle::*;
use stox_xmpp::jingle::*;

fn dir(crate_dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("tests/vectors")
}

fn sdp_vector(name: &str) -> sdp_types::Session {
    parse_sdp(&std::fs::read(dir("gateway").join(name)).unwrap()).unwrap()
}

fn jingle_vector(name: &str) -> Jingle {
    let el: Element = std::fs::read_to_string(dir("xmpp").join(name))
        .unwrap()
        .parse()
        .unwrap();
    Jingle::parse(&el).unwrap()
}

fn params(role: Role) -> SdpParams {
    SdpParams {
        role,
        session_id: 4242,
        session_version: 1,
    }
}

fn description(m: &JingleMedia) -> &RtpDescription {
    m.contents[0].description.as_ref().unwrap()
}

fn names(d: &RtpDescription) -> Vec<(u8, String, u32, u8)> {
    d.payload_types
        .iter()
        .map(|p| {
            (
                p.id,
                p.name.clone().unwrap_or_default(),
                p.clockrate.unwrap_or(0),
                p.channels,
            )
        })
        .collect()
}

/// SDP → Jingle → SDP text → Jingle gives the same Jingle.
fn assert_sdp_round_trip(name: &str, role: Role) -> JingleMedia {
    let j = sdp_to_jingle(&sdp_vector(name), role).unwrap();
    let text = jingle_to_sdp(&j, &params(role)).unwrap().to_string();
    let again = sdp_to_jingle(&parse_sdp(text.as_bytes()).unwrap(), role).unwrap();
    assert_eq!(again, j, "{name}:\n{text}");
    j
}

#[test]
fn every_sdp_vector_round_trips_in_both_roles() {
    let mut n = 0;
    for entry in std::fs::read_dir(dir("gateway")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("sdp") {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            assert_sdp_round_trip(&name, Role::Initiator);
            assert_sdp_round_trip(&name, Role::Responder);
            n += 1;
        }
    }
    assert_eq!(n, 4);
}

#[test]
fn chrome_offer() {
    let j = assert_sdp_round_trip("chrome-audio-offer.sdp", Role::Initiator);
    assert_eq!(
        j.group,
        Some(Group {
            semantics: "BUNDLE".into(),
            contents: vec!["0".into()]
        })
    );
    let c = &j.contents[0];
    assert_eq!(
        (c.name.as_str(), c.senders, c.creator),
        ("0", Senders::Both, Creator::Initiator)
    );
    let d = description(&j);
    assert_eq!(
        names(d),
        [
            (111, "opus".into(), 48000, 2),
            (63, "red".into(), 48000, 2),
            (9, "G722".into(), 8000, 1),
            (0, "PCMU".into(), 8000, 1),
            (8, "PCMA".into(), 8000, 1),
            (13, "CN".into(), 8000, 1),
            (110, "telephone-event".into(), 48000, 1),
            (126, "telephone-event".into(), 8000, 1),
        ]
    );
    assert_eq!(
        d.payload_types[0].parameters,
        [
            ("minptime".to_owned(), Some("10".to_owned())),
            ("useinbandfec".to_owned(), Some("1".to_owned()))
        ]
    );
    assert_eq!(
        d.payload_types[0].rtcp_fb,
        [RtcpFb {
            typ: "transport-cc".into(),
            subtype: None
        }]
    );
    assert_eq!(
        d.payload_types[1].parameters,
        [("111/111".to_owned(), None)],
        "valueless red parameter"
    );
    assert_eq!(d.hdrexts.len(), 4);
    assert_eq!(
        (d.hdrexts[0].id, d.hdrexts[0].uri.as_str()),
        (1, "urn:ietf:params:rtp-hdrext:ssrc-audio-level")
    );
    assert!(
        d.extmap_allow_mixed && d.rtcp_mux,
        "session-level extmap-allow-mixed applies to the media"
    );
    assert_eq!(d.sources[0].ssrc, 2850195721);
    assert_eq!(
        d.sources[0].params[0],
        ("cname".to_owned(), Some("Zk3vRq0nN0dV9bXy".to_owned()))
    );
    assert_eq!(
        d.msid.as_ref().unwrap().track.as_deref(),
        Some("9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d")
    );
    let t = c.transport.as_ref().unwrap();
    assert_eq!(
        (t.ufrag.as_deref(), t.pwd.as_deref()),
        (Some("q7Zb"), Some("U2hN3pYc0rVx6kLmT8aB1dEf"))
    );
    let fp = t.fingerprint.as_ref().unwrap();
    assert_eq!(
        (fp.hash.as_str(), fp.setup),
        ("sha-256", Some(Setup::Actpass))
    );
    assert!(fp.value.starts_with("5B:29:8E"));
    let cand = &t.candidates[0];
    assert_eq!(
        (
            cand.foundation.as_str(),
            cand.component,
            cand.priority,
            cand.ip.as_str(),
            cand.port,
            cand.typ,
            cand.generation,
            cand.network
        ),
        (
            "2175306218",
            1,
            2122260223,
            "127.0.0.1",
            51000,
            CandidateType::Host,
            Some(0),
            Some(1)
        )
    );
}

#[test]
fn chrome_answer_is_active_with_no_candidates_yet() {
    let j = assert_sdp_round_trip("chrome-audio-answer.sdp", Role::Responder);
    let t = j.contents[0].transport.as_ref().unwrap();
    assert!(
        t.candidates.is_empty(),
        "ICE SDP: c=0.0.0.0 port 9 is not a candidate"
    );
    assert_eq!(t.fingerprint.as_ref().unwrap().setup, Some(Setup::Active));
    assert_eq!(
        description(&j).payload_types.len(),
        8,
        "the answer lists every common codec"
    );
}

#[test]
fn baresip_offer_is_plain_rtp() {
    let j = assert_sdp_round_trip("baresip-1.0-audio-offer.sdp", Role::Initiator);
    let c = &j.contents[0];
    assert_eq!(c.name, "audio", "no a=mid: named after the media");
    let d = description(&j);
    assert_eq!(
        names(d),
        [
            (96, "opus".into(), 48000, 2),
            (0, "PCMU".into(), 8000, 1),
            (8, "PCMA".into(), 8000, 1),
            (101, "telephone-event".into(), 8000, 1)
        ]
    );
    assert_eq!(d.payload_types[3].parameters, [("0-15".to_owned(), None)]);
    assert!(d.payload_types.iter().all(|p| p.ptime == Some(20)));
    assert_eq!(
        d.bandwidth,
        Some(Bandwidth {
            typ: "AS".into(),
            value: 64
        })
    );
    assert!(!d.rtcp_mux);
    let t = c.transport.as_ref().unwrap();
    assert_eq!((t.ufrag.clone(), t.fingerprint.clone()), (None, None));
    let cands: Vec<(u8, &str, u16)> = t
        .candidates
        .iter()
        .map(|c| (c.component, c.ip.as_str(), c.port))
        .collect();
    assert_eq!(cands, [(1, "127.0.0.1", 10002), (2, "127.0.0.1", 10003)]);

    let text = jingle_to_sdp(&j, &params(Role::Initiator))
        .unwrap()
        .to_string();
    for line in [
        "m=audio 10002 RTP/AVP 96 0 8 101",
        "c=IN IP4 127.0.0.1",
        "a=sendrecv",
        "a=ptime:20",
        "b=AS:64",
        "a=fmtp:101 0-15",
        "a=rtpmap:96 opus/48000/2",
        "a=fmtp:96 stereo=1;sprop-stereo=1",
    ] {
        assert!(
            text.contains(&format!("{line}\r\n")),
            "{line} missing:\n{text}"
        );
    }
    assert!(
        !text.contains("a=ice-") && !text.contains("a=mid"),
        "{text}"
    );
}

#[test]
fn linphone_offer_static_types_and_wildcard_feedback() {
    let j = assert_sdp_round_trip("linphone-audio-offer.sdp", Role::Initiator);
    let d = description(&j);
    assert_eq!(
        names(d),
        [
            (96, "opus".into(), 48000, 2),
            (97, "speex".into(), 16000, 1),
            (98, "speex".into(), 8000, 1),
            (0, "PCMU".into(), 8000, 1),
            (8, "PCMA".into(), 8000, 1),
            (18, "G729".into(), 8000, 1),
            (101, "telephone-event".into(), 48000, 1),
            (99, "telephone-event".into(), 16000, 1),
            (100, "telephone-event".into(), 8000, 1),
        ],
        "rtpmap-less static types come from RFC 3551"
    );
    assert_eq!(
        d.payload_types[5].parameters,
        [("annexb".to_owned(), Some("yes".to_owned()))]
    );
    assert_eq!(
        d.rtcp_fb,
        [
            RtcpFb {
                typ: "trr-int".into(),
                subtype: Some("1000".into())
            },
            RtcpFb {
                typ: "ccm".into(),
                subtype: Some("tmmbr".into())
            }
        ],
        "a=rtcp-fb:* is description-level"
    );
    let text = jingle_to_sdp(&j, &params(Role::Initiator))
        .unwrap()
        .to_string();
    assert!(text.contains("a=rtcp-fb:* ccm tmmbr\r\n"), "{text}");
}

/// Jingle → SDP → Jingle keeps every field SDP can express.
#[test]
fn libwebrtc_jingle_offer_to_sdp_and_back() {
    let j = jingle_vector("libwebrtc-audio-offer-session-initiate.xml");
    let media = JingleMedia::from_jingle(&j);
    let text = jingle_to_sdp(&media, &params(Role::Initiator))
        .unwrap()
        .to_string();
    for line in [
        "a=group:BUNDLE 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
        "c=IN IP4 0.0.0.0",
        "a=ice-ufrag:q7Zb",
        "a=setup:actpass",
        "a=mid:0",
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=extmap-allow-mixed",
        "a=rtcp-mux",
        "a=rtpmap:63 red/48000/2",
        "a=fmtp:63 111/111",
        "a=rtcp-fb:111 transport-cc",
        "a=ssrc:2850195721 cname:Zk3vRq0nN0dV9bXy",
        "a=msid:3c5e7a1b-2d4f-4e6a-8b9c-0d1e2f3a4b5c 9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
    ] {
        assert!(
            text.contains(&format!("{line}\r\n")),
            "{line} missing:\n{text}"
        );
    }
    let back = sdp_to_jingle(&parse_sdp(text.as_bytes()).unwrap(), Role::Initiator).unwrap();
    // The description `ssrc` attribute has no SDP counterpart (the XEP-0339 source does).
    let mut expected = media.clone();
    expected.contents[0].description.as_mut().unwrap().ssrc = None;
    assert_eq!(back, expected);

    // Trickled candidate and end of candidates, added to the offer as the session goes on.
    let cand = jingle_vector("libwebrtc-transport-info-candidate.xml").contents[0]
        .transport
        .clone()
        .unwrap()
        .candidates;
    let mut with_cand = media;
    let t = with_cand.contents[0].transport.as_mut().unwrap();
    t.candidates = cand;
    t.gathering_complete = true;
    let text = jingle_to_sdp(&with_cand, &params(Role::Initiator))
        .unwrap()
        .to_string();
    assert!(text.contains("m=audio 51000 UDP/TLS/RTP/SAVPF"), "{text}");
    assert!(text.contains("c=IN IP4 127.0.0.1\r\n"), "{text}");
    assert!(
        text.contains("a=candidate:2175306218 1 udp 2122260223 127.0.0.1 51000 typ host\r\n"),
        "{text}"
    );
    assert!(text.contains("a=end-of-candidates\r\n"), "{text}");
}

#[test]
fn xep_examples_convert_to_sdp() {
    let j = jingle_vector("xep-0167-example-1-session-initiate.xml");
    let text = jingle_to_sdp(&JingleMedia::from_jingle(&j), &params(Role::Initiator))
        .unwrap()
        .to_string();
    for line in [
        "m=audio 8998 RTP/AVP 96 97 18 0 103 98",
        "c=IN IP4 10.0.1.1",
        "a=rtpmap:103 L16/16000/2",
        "a=candidate:2 1 udp 1694498815 192.0.2.3 45664 typ srflx raddr 10.0.1.1 rport 8998 generation 0 network-id 1",
    ] {
        assert!(text.contains(&format!("{line}\r\n")), "{line} missing:\n{text}");
    }
    // G729 has no clockrate in the XEP example: no rtpmap is written, RFC 3551 fills it back.
    assert!(!text.contains("a=rtpmap:18"), "{text}");

    let j = jingle_vector("xep-0320-example-session-initiate.xml");
    let text = jingle_to_sdp(&JingleMedia::from_jingle(&j), &params(Role::Initiator))
        .unwrap()
        .to_string();
    assert!(text.contains("a=fingerprint:sha-256 02:1A:CC:54"), "{text}");
    assert!(text.contains("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"), "{text}");
}

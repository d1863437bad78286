use super::testing::started;
use super::*;
use crate::media::sdp_jingle::{jingle_to_sdp, parse_sdp, sdp_to_jingle, Role, SdpParams};

/// What baresip 1.0 offers with Opus, PCMU and telephone-event (plus a codec the relay does
/// not carry, and a video line).
const BARESIP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 10000 RTP/AVP 96 0 97 101\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 stereo=1;sprop-stereo=1\r\n\
a=rtpmap:0 PCMU/8000\r\na=rtpmap:97 speex/16000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\na=sendrecv\r\n\
m=video 10002 RTP/AVP 100\r\na=rtpmap:100 VP8/90000\r\n";

fn media(sdp: &str, role: Role) -> JingleMedia {
    sdp_to_jingle(&parse_sdp(sdp.as_bytes()).unwrap(), role).unwrap()
}

fn ids(pts: &[PayloadType]) -> Vec<u8> {
    pts.iter().map(|p| p.id).collect()
}

#[test]
fn relayable_keeps_the_codecs_the_relay_carries_in_offer_order() {
    let r = relayable(&media(BARESIP, Role::Initiator)).unwrap();
    assert_eq!(ids(&r.payload_types), vec![96, 0, 101]);
    let codecs: Vec<_> = r
        .pt_map
        .pairs()
        .iter()
        .map(|p| (p.codec, p.xmpp, p.sip, p.clock_rate))
        .collect();
    assert_eq!(
        codecs,
        vec![
            (AudioCodec::Opus, 96, 96, 48_000),
            (AudioCodec::Pcmu, 0, 0, 8000),
            (AudioCodec::TelephoneEvent, 101, 101, 8000)
        ]
    );
    assert_eq!(
        sip_remote(&r.content),
        Some("127.0.0.1:10000".parse().unwrap())
    );
}

#[test]
fn codec_table() {
    let pt = |id, name: Option<&str>, rate| PayloadType {
        name: name.map(str::to_owned),
        clockrate: rate,
        ..PayloadType::new(id, "x", 8000, 1)
    };
    let cases = [
        (pt(111, Some("opus"), Some(48000)), Some(AudioCodec::Opus)),
        (pt(111, Some("OPUS"), Some(48000)), Some(AudioCodec::Opus)),
        (pt(111, Some("opus"), Some(16000)), None),
        (pt(0, Some("PCMU"), Some(8000)), Some(AudioCodec::Pcmu)),
        (pt(0, None, None), Some(AudioCodec::Pcmu)),
        (pt(8, None, None), Some(AudioCodec::Pcma)),
        (pt(9, None, None), Some(AudioCodec::G722)),
        (pt(3, None, None), None),
        (pt(9, Some("G722"), Some(8000)), Some(AudioCodec::G722)),
        (
            pt(126, Some("telephone-event"), Some(8000)),
            Some(AudioCodec::TelephoneEvent),
        ),
        (
            pt(110, Some("telephone-event"), Some(48000)),
            Some(AudioCodec::TelephoneEvent),
        ),
        (pt(110, Some("telephone-event"), Some(16000)), None),
        (pt(97, Some("speex"), Some(16000)), None),
    ];
    for (p, want) in cases {
        assert_eq!(codec_of(&p), want, "{p:?}");
    }
}

#[test]
fn no_common_codec_is_an_error() {
    let gsm = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 10000 RTP/AVP 3 101\r\na=rtpmap:3 GSM/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    assert_eq!(
        relayable(&media(gsm, Role::Initiator)),
        Err(NegotiationError::NoCommonCodec)
    );
    let video = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=video 10000 RTP/AVP 100\r\na=rtpmap:100 VP8/90000\r\n";
    assert_eq!(
        relayable(&media(video, Role::Initiator)),
        Err(NegotiationError::NoAudio)
    );
}

#[test]
fn answered_matches_by_number_then_by_codec() {
    let offer = relayable(&media(BARESIP, Role::Initiator)).unwrap();
    let answer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 20000 RTP/AVP 0 111 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:101 telephone-event/8000\r\n";
    let kept = answered(&offer, &media(answer, Role::Responder)).unwrap();
    // 111 is the offer's 96 (same codec and clock); the offer's numbers are kept.
    assert_eq!(ids(&kept), vec![0, 96, 101]);
    let dtmf_only = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 20000 RTP/AVP 101\r\na=rtpmap:101 telephone-event/8000\r\n";
    assert_eq!(
        answered(&offer, &media(dtmf_only, Role::Responder)),
        Err(NegotiationError::NoCommonCodec)
    );
}

#[test]
fn sip_to_xmpp_descriptions() {
    let offer = relayable(&media(BARESIP, Role::Initiator)).unwrap();
    let s = started(Setup::Actpass);
    let jingle = xmpp_offer(&offer, &s, "audio");
    let c = &jingle.contents[0];
    let t = c.transport.as_ref().unwrap();
    assert_eq!(t.ufrag.as_deref(), Some("uf"));
    assert_eq!(t.candidates[0].port, 40002);
    let f = t.fingerprint.as_ref().unwrap();
    assert_eq!(
        (f.hash.as_str(), f.setup),
        ("sha-256", Some(JingleSetup::Actpass))
    );
    let d = c.description.as_ref().unwrap();
    assert!(d.rtcp_mux);
    assert_eq!(d.sources[0].ssrc, 1234);
    assert_eq!(ids(&d.payload_types), vec![96, 0, 101]);
    // Its SDP form is a WebRTC offer: ICE, DTLS, the relay's candidate.
    let sdp = jingle_to_sdp(
        &jingle,
        &SdpParams {
            role: Role::Initiator,
            session_id: 1,
            session_version: 1,
        },
    )
    .unwrap()
    .to_string();
    for needle in [
        "UDP/TLS/RTP/SAVPF",
        "a=ice-ufrag:uf",
        "a=setup:actpass",
        "a=fingerprint:sha-256 AB:CD",
        "a=rtcp-mux",
    ] {
        assert!(sdp.contains(needle), "{needle} missing in\n{sdp}");
    }

    // The XMPP client answers PCMU + telephone-event; the SIP phone gets plain RTP/AVP at the
    // relay's SIP-leg port, with only those codecs.
    let kept: Vec<PayloadType> = offer.payload_types[1..].to_vec();
    let answer = sip_answer(&offer, &kept, &s);
    let sdp = jingle_to_sdp(
        &answer,
        &SdpParams {
            role: Role::Responder,
            session_id: 1,
            session_version: 2,
        },
    )
    .unwrap()
    .to_string();
    assert!(sdp.contains("m=audio 40000 RTP/AVP 0 101\r\n"), "{sdp}");
    assert!(sdp.contains("c=IN IP4 127.0.0.1"), "{sdp}");
    assert!(
        !sdp.contains("ice-ufrag") && !sdp.contains("fingerprint"),
        "{sdp}"
    );
}

#[test]
fn xmpp_to_sip_descriptions() {
    // A libwebrtc-style Jingle offer, as the SDP it came from.
    let webrtc = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 9 0 8 126\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef01234567\r\n\
a=fingerprint:sha-256 12:34\r\na=setup:actpass\r\na=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:42 cname:x\r\n";
    let offer = relayable(&media(webrtc, Role::Initiator)).unwrap();
    let remote = xmpp_remote(offer.content.transport.as_ref(), ssrcs(&offer.content)).unwrap();
    assert_eq!(
        (remote.ufrag.as_str(), remote.setup),
        ("abcd", Setup::Actpass)
    );
    assert_eq!(remote.ssrcs, vec![42]);
    let s = started(Setup::Active);
    let sdp_offer = jingle_to_sdp(
        &sip_offer(&offer, &s),
        &SdpParams {
            role: Role::Initiator,
            session_id: 9,
            session_version: 1,
        },
    )
    .unwrap()
    .to_string();
    assert!(
        sdp_offer.contains("m=audio 40000 RTP/AVP 111 9 0 8 126\r\n"),
        "{sdp_offer}"
    );
    assert!(
        !sdp_offer.contains("rtcp-fb"),
        "plain phones get no feedback lines: {sdp_offer}"
    );
    assert!(
        !sdp_offer.contains("ice-") && !sdp_offer.contains("fingerprint"),
        "{sdp_offer}"
    );

    // The phone answers PCMU only: session-accept carries PCMU with the relay's ICE/DTLS.
    let phone = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let phone = media(phone, Role::Responder);
    let kept = answered(&offer, &phone).unwrap();
    assert_eq!(ids(&kept), vec![0]);
    assert_eq!(voice_codec(&kept), "PCMU/8000");
    assert_eq!(
        audio_content(&phone).and_then(sip_remote),
        Some("127.0.0.1:30000".parse().unwrap())
    );
    let accept = xmpp_answer(&offer, &kept, &s);
    assert_eq!(accept.contents[0].name, "0");
    assert_eq!(
        accept.group.as_ref().unwrap().contents,
        vec!["0".to_string()]
    );
    let t = accept.contents[0].transport.as_ref().unwrap();
    assert_eq!(
        t.fingerprint.as_ref().unwrap().setup,
        Some(JingleSetup::Active)
    );
}

#[test]
fn xmpp_remote_needs_ice_and_dtls() {
    let plain = relayable(&media(BARESIP, Role::Initiator)).unwrap();
    assert!(matches!(
        xmpp_remote(plain.content.transport.as_ref(), vec![]),
        Err(NegotiationError::MissingTransport(_))
    ));
    assert!(matches!(
        xmpp_remote(None, vec![]),
        Err(NegotiationError::MissingTransport(_))
    ));
}

#[test]
fn remote_candidates_need_udp_and_an_ip() {
    let mut c = Candidate {
        component: 1,
        foundation: "f".into(),
        generation: None,
        id: None,
        ip: "127.0.0.1".into(),
        port: 5000,
        priority: 1,
        protocol: "udp".into(),
        typ: CandidateType::Srflx,
        rel_addr: Some("10.0.0.1".into()),
        rel_port: Some(6000),
        network: None,
    };
    let r = remote_candidate(&c).unwrap();
    assert_eq!(
        (r.kind.as_str(), r.related),
        ("srflx", Some("10.0.0.1:6000".parse().unwrap()))
    );
    c.ip = "abcd.local".into();
    assert_eq!(remote_candidate(&c), None);
    c.ip = "127.0.0.1".into();
    c.protocol = "tcp".into();
    assert_eq!(remote_candidate(&c), None);
}

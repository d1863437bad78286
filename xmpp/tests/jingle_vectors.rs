//! Jingle / JMI vectors (tests/vectors, provenance in its README) and property tests of the
//! lenient parser: element round trips and "never panics" on arbitrary elements.

use minidom::Element;
use proptest::prelude::*;
use std::path::PathBuf;
use stox_xmpp::jingle::*;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn load(name: &str) -> Element {
    let text = std::fs::read_to_string(vectors_dir().join(name)).unwrap();
    text.parse().unwrap()
}

/// What `to_element` fills in: candidate `id` and `generation`.
fn normalized(mut j: Jingle) -> Jingle {
    for c in &mut j.contents {
        if let Some(t) = &mut c.transport {
            for cand in &mut t.candidates {
                cand.id = Some(cand.output_id());
                cand.generation = Some(cand.generation.unwrap_or(0));
            }
        }
    }
    j
}

#[test]
fn every_vector_parses_and_round_trips() {
    let mut n = 0;
    for entry in std::fs::read_dir(vectors_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("xml") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let el = load(&name);
        if name.starts_with("jmi-") {
            let m = JingleMessage::parse(&el).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(JingleMessage::parse(&m.to_element()).unwrap(), m, "{name}");
        } else {
            let j = Jingle::parse(&el).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                Jingle::parse(&j.to_element()).unwrap(),
                normalized(j),
                "{name}"
            );
        }
        n += 1;
    }
    assert!(n >= 14, "only {n} vectors");
}

#[test]
fn xep_0167_example_1() {
    let j = Jingle::parse(&load("xep-0167-example-1-session-initiate.xml")).unwrap();
    assert_eq!(j.action, Action::SessionInitiate);
    assert_eq!(j.sid, "a73sjjvkla37jfea");
    assert_eq!(j.initiator.as_deref(), Some("romeo@montague.lit/orchard"));
    let c = &j.contents[0];
    assert_eq!(
        (c.creator, c.name.as_str(), c.senders),
        (Creator::Initiator, "voice", Senders::Both)
    );
    let d = c.description.as_ref().unwrap();
    assert_eq!(d.media, "audio");
    let ids: Vec<u8> = d.payload_types.iter().map(|p| p.id).collect();
    assert_eq!(ids, [96, 97, 18, 0, 103, 98]);
    assert_eq!(d.payload_types[2].clockrate, None);
    assert_eq!(d.payload_types[4].channels, 2);
    let t = c.transport.as_ref().unwrap();
    assert_eq!(
        (t.ufrag.as_deref(), t.pwd.as_deref()),
        (Some("8hhy"), Some("asd88fgpdd777uzjYhagZg"))
    );
    assert_eq!(t.candidates.len(), 2);
    let srflx = &t.candidates[1];
    assert_eq!(srflx.typ, CandidateType::Srflx);
    assert_eq!(
        (srflx.rel_addr.as_deref(), srflx.rel_port),
        (Some("10.0.1.1"), Some(8998))
    );
    assert_eq!(
        (srflx.id.as_deref(), srflx.generation, srflx.network),
        (Some("y3s2b30v3r"), Some(0), Some(1))
    );
}

#[test]
fn xep_0176_relay_candidate_and_xep_0320_fingerprint() {
    let j = Jingle::parse(&load("xep-0176-example-transport-info.xml")).unwrap();
    assert_eq!(j.action, Action::TransportInfo);
    let c = &j.contents[0].transport.as_ref().unwrap().candidates[0];
    assert_eq!(
        (c.typ, c.ip.as_str(), c.port, c.priority),
        (CandidateType::Relay, "192.0.2.1", 3478, 16777215)
    );
    assert!(j.contents[0].description.is_none());

    let j = Jingle::parse(&load("xep-0320-example-session-initiate.xml")).unwrap();
    let fp = j.contents[0]
        .transport
        .as_ref()
        .unwrap()
        .fingerprint
        .clone()
        .unwrap();
    assert_eq!(
        (fp.hash.as_str(), fp.setup),
        ("sha-256", Some(Setup::Actpass))
    );
    assert_eq!(
        fp.value.len(),
        95,
        "32 hex pairs and 31 colons, whitespace trimmed"
    );
    assert!(j.contents[0].description.as_ref().unwrap().rtcp_mux);
}

#[test]
fn libwebrtc_offer_quirks() {
    let j = Jingle::parse(&load("libwebrtc-audio-offer-session-initiate.xml")).unwrap();
    assert_eq!(j.initiator, None, "libwebrtc/StanzaJS sends no initiator");
    let c = &j.contents[0];
    assert_eq!(c.name, "0");
    let d = c.description.as_ref().unwrap();
    assert_eq!(d.ssrc, Some(2850195721));
    let red = d
        .payload_types
        .iter()
        .find(|p| p.name.as_deref() == Some("red"))
        .unwrap();
    assert_eq!(red.parameters, [("111/111".to_owned(), None)]);
    let opus = &d.payload_types[0];
    assert_eq!(
        opus.rtcp_fb,
        [RtcpFb {
            typ: "transport-cc".into(),
            subtype: None
        }]
    );
    assert_eq!(
        opus.parameters[1],
        ("useinbandfec".to_owned(), Some("1".to_owned()))
    );
    assert_eq!(d.hdrexts.len(), 4);
    assert_eq!(d.hdrexts[3].uri, "urn:ietf:params:rtp-hdrext:sdes:mid");
    assert!(d.extmap_allow_mixed && d.rtcp_mux);
    assert_eq!(d.sources[0].ssrc, 2850195721);
    assert_eq!(
        d.sources[0].params[0],
        ("cname".to_owned(), Some("Zk3vRq0nN0dV9bXy".to_owned()))
    );
    assert_eq!(d.sources[0].params[1].0, "msid");
    let msid = d.msid.as_ref().unwrap();
    assert_eq!(msid.id, "3c5e7a1b-2d4f-4e6a-8b9c-0d1e2f3a4b5c");
    assert_eq!(
        msid.track.as_deref(),
        Some("9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d")
    );
    let t = c.transport.as_ref().unwrap();
    assert!(t.candidates.is_empty());
    assert_eq!(t.fingerprint.as_ref().unwrap().setup, Some(Setup::Actpass));
    assert_eq!(
        j.group,
        Some(Group {
            semantics: "BUNDLE".into(),
            contents: vec!["0".into()]
        })
    );

    let ti = Jingle::parse(&load("libwebrtc-transport-info-candidate.xml")).unwrap();
    let cand = &ti.contents[0].transport.as_ref().unwrap().candidates[0];
    assert_eq!((cand.id.as_deref(), cand.generation), (None, None));
    assert_eq!((cand.ip.as_str(), cand.port), ("127.0.0.1", 51000));

    let gc = Jingle::parse(&load("libwebrtc-transport-info-gathering-complete.xml")).unwrap();
    assert!(
        gc.contents[0]
            .transport
            .as_ref()
            .unwrap()
            .gathering_complete
    );

    let term = Jingle::parse(&load("libwebrtc-session-terminate-success.xml")).unwrap();
    assert_eq!(term.reason.unwrap().condition, ReasonCondition::Success);
}

#[test]
fn jmi_vectors() {
    let id = "ca3cf894-5325-482f-a412-a6e9f832298d".to_owned();
    let p = JingleMessage::parse(&load("jmi-propose.xml")).unwrap();
    assert_eq!(
        p,
        JingleMessage::Propose {
            id: id.clone(),
            descriptions: vec![ProposedDescription::rtp("audio")]
        }
    );
    assert_eq!(
        JingleMessage::parse(&load("jmi-ringing.xml")).unwrap(),
        JingleMessage::Ringing { id: id.clone() }
    );
    assert_eq!(
        JingleMessage::parse(&load("jmi-proceed.xml")).unwrap(),
        JingleMessage::Proceed { id: id.clone() }
    );
    assert_eq!(
        JingleMessage::parse(&load("jmi-accept.xml")).unwrap(),
        JingleMessage::Accept { id: id.clone() }
    );
    let reason = |m: JingleMessage| match m {
        JingleMessage::Retract { reason, .. }
        | JingleMessage::Reject { reason, .. }
        | JingleMessage::Finish { reason, .. } => reason.unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        reason(JingleMessage::parse(&load("jmi-retract.xml")).unwrap()).condition,
        ReasonCondition::Cancel
    );
    let r = reason(JingleMessage::parse(&load("jmi-reject.xml")).unwrap());
    assert_eq!(
        (r.condition, r.text.as_deref()),
        (ReasonCondition::Busy, Some("Busy"))
    );
    assert_eq!(
        reason(JingleMessage::parse(&load("jmi-finish.xml")).unwrap()).condition,
        ReasonCondition::Success
    );
}

// ---- property tests -------------------------------------------------------------------

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9+/=._-]{1,12}"
}

fn text() -> impl Strategy<Value = String> {
    // Any characters XML can carry, including markup characters that must be escaped.
    "[ -~éü<>&'\"]{0,16}"
}

fn params() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    prop::collection::vec((token(), prop::option::of(text())), 0..3)
}

fn rtcp_fb() -> impl Strategy<Value = RtcpFb> {
    (token(), prop::option::of(token())).prop_map(|(typ, subtype)| RtcpFb { typ, subtype })
}

fn senders() -> impl Strategy<Value = Senders> {
    prop::sample::select(Senders::ALL.to_vec())
}

fn payload_type() -> impl Strategy<Value = PayloadType> {
    (
        0u8..128,
        prop::option::of(token()),
        prop::option::of(1u32..200_000),
        1u8..9,
        prop::option::of(1u32..200),
        prop::option::of(1u32..200),
        params(),
        prop::collection::vec(rtcp_fb(), 0..3),
    )
        .prop_map(
            |(id, name, clockrate, channels, ptime, maxptime, parameters, rtcp_fb)| PayloadType {
                id,
                name,
                clockrate,
                channels,
                ptime,
                maxptime,
                parameters,
                rtcp_fb,
            },
        )
}

fn description() -> impl Strategy<Value = RtpDescription> {
    (
        (
            prop::sample::select(vec!["audio", "video"]),
            prop::option::of(any::<u32>()),
            prop::collection::vec(payload_type(), 0..4),
            prop::collection::vec(rtcp_fb(), 0..2),
            prop::collection::vec((1u16..256, token(), prop::option::of(senders())), 0..3),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            prop::collection::vec((any::<u32>(), params()), 0..3),
            prop::collection::vec((token(), prop::collection::vec(any::<u32>(), 1..3)), 0..2),
            prop::option::of((
                any::<bool>(),
                prop::collection::vec(
                    (any::<u32>(), token(), token(), prop::option::of(token())),
                    0..2,
                ),
            )),
            prop::option::of((token(), any::<u64>())),
            prop::option::of((token(), prop::option::of(token()))),
        ),
    )
        .prop_map(
            |((media, ssrc, pts, fb, hx, mixed, mux), (srcs, groups, enc, bw, msid))| {
                let mut d = RtpDescription::new(media);
                d.ssrc = ssrc;
                d.payload_types = pts;
                d.rtcp_fb = fb;
                d.hdrexts = hx
                    .into_iter()
                    .map(|(id, uri, senders)| HdrExt { id, uri, senders })
                    .collect();
                d.extmap_allow_mixed = mixed;
                d.rtcp_mux = mux;
                d.sources = srcs
                    .into_iter()
                    .map(|(ssrc, params)| Source { ssrc, params })
                    .collect();
                d.ssrc_groups = groups
                    .into_iter()
                    .map(|(semantics, ssrcs)| SsrcGroup { semantics, ssrcs })
                    .collect();
                d.encryption = enc.map(|(required, cs)| Encryption {
                    required,
                    crypto: cs
                        .into_iter()
                        .map(|(tag, crypto_suite, key_params, session_params)| Crypto {
                            tag,
                            crypto_suite,
                            key_params,
                            session_params,
                        })
                        .collect(),
                });
                d.bandwidth = bw.map(|(typ, value)| Bandwidth { typ, value });
                d.msid = msid.map(|(id, track)| MsidStream { id, track });
                d
            },
        )
}

fn candidate() -> impl Strategy<Value = Candidate> {
    (
        (
            1u8..3,
            token(),
            any::<u32>(),
            token(),
            "[0-9a-f:.]{1,20}",
            any::<u16>(),
            any::<u32>(),
        ),
        (
            prop::sample::select(vec![
                CandidateType::Host,
                CandidateType::Srflx,
                CandidateType::Prflx,
                CandidateType::Relay,
            ]),
            prop::option::of("[0-9.]{7,15}"),
            prop::option::of(any::<u16>()),
            prop::option::of(any::<u32>()),
        ),
    )
        .prop_map(
            |(
                (component, foundation, generation, id, ip, port, priority),
                (typ, rel_addr, rel_port, network),
            )| Candidate {
                component,
                foundation,
                generation: Some(generation),
                id: Some(id),
                ip,
                port,
                priority,
                protocol: "udp".into(),
                typ,
                rel_addr,
                rel_port,
                network,
            },
        )
}

fn transport() -> impl Strategy<Value = IceTransport> {
    (
        prop::option::of(token()),
        prop::option::of(token()),
        prop::collection::vec(candidate(), 0..3),
        prop::option::of((
            token(),
            prop::option::of(prop::sample::select(vec![
                Setup::Actpass,
                Setup::Active,
                Setup::Passive,
                Setup::Holdconn,
            ])),
            "[0-9A-F:]{2,40}",
        )),
        any::<bool>(),
    )
        .prop_map(
            |(ufrag, pwd, candidates, fp, gathering_complete)| IceTransport {
                ufrag,
                pwd,
                candidates,
                fingerprint: fp.map(|(hash, setup, value)| Fingerprint { hash, setup, value }),
                gathering_complete,
            },
        )
}

fn jingle() -> impl Strategy<Value = Jingle> {
    (
        prop::sample::select(Action::ALL.to_vec()),
        token(),
        prop::option::of(token()),
        prop::option::of(token()),
        prop::collection::vec(
            (
                prop::sample::select(Creator::ALL.to_vec()),
                token(),
                senders(),
                prop::option::of(description()),
                prop::option::of(transport()),
            ),
            0..3,
        ),
        prop::option::of((
            prop::sample::select(vec![
                ReasonCondition::Busy,
                ReasonCondition::Success,
                ReasonCondition::Decline,
                ReasonCondition::AlternativeSession(Some("x".into())),
            ]),
            prop::option::of(text()),
        )),
        prop::option::of((token(), prop::collection::vec(token(), 0..3))),
        prop::option::of(prop::sample::select(vec![
            SessionInfo::Ringing,
            SessionInfo::Hold,
            SessionInfo::Mute {
                creator: Some(Creator::Responder),
                name: Some("voice".into()),
            },
        ])),
    )
        .prop_map(
            |(action, sid, initiator, responder, contents, reason, group, info)| Jingle {
                action,
                sid,
                initiator,
                responder,
                contents: contents
                    .into_iter()
                    .map(|(creator, name, senders, description, transport)| Content {
                        creator,
                        name,
                        senders,
                        description,
                        transport,
                    })
                    .collect(),
                reason: reason.map(|(condition, text)| Reason { condition, text }),
                group: group.map(|(semantics, contents)| Group {
                    semantics,
                    contents,
                }),
                info,
            },
        )
}

const NAMES: &[&str] = &[
    "jingle",
    "content",
    "description",
    "payload-type",
    "parameter",
    "rtcp-fb",
    "rtp-hdrext",
    "extmap-allow-mixed",
    "rtcp-mux",
    "source",
    "ssrc-group",
    "encryption",
    "crypto",
    "bandwidth",
    "stream",
    "transport",
    "candidate",
    "fingerprint",
    "gathering-complete",
    "group",
    "reason",
    "text",
    "busy",
    "alternative-session",
    "sid",
    "ringing",
    "mute",
    "propose",
    "proceed",
    "retract",
    "reject",
    "accept",
    "finish",
    "x",
];
const NAMESPACES: &[&str] = &[
    "urn:xmpp:jingle:1",
    "urn:xmpp:jingle:apps:rtp:1",
    "urn:xmpp:jingle:apps:rtp:rtcp-fb:0",
    "urn:xmpp:jingle:apps:rtp:rtp-hdrext:0",
    "urn:xmpp:jingle:apps:rtp:ssma:0",
    "urn:xmpp:jingle:apps:rtp:msid:0",
    "urn:xmpp:jingle:transports:ice-udp:1",
    "urn:xmpp:jingle:apps:dtls:0",
    "urn:xmpp:jingle:apps:grouping:0",
    "urn:xmpp:jingle-message:0",
    "urn:xmpp:jingle:apps:rtp:info:1",
    "urn:xmpp:jingle:errors:1",
    "other",
];
const ATTRS: &[&str] = &[
    "action",
    "sid",
    "initiator",
    "creator",
    "name",
    "senders",
    "media",
    "ssrc",
    "id",
    "clockrate",
    "channels",
    "ptime",
    "maxptime",
    "value",
    "type",
    "subtype",
    "uri",
    "semantics",
    "component",
    "foundation",
    "generation",
    "ip",
    "port",
    "priority",
    "protocol",
    "rel-addr",
    "rel-port",
    "network",
    "ufrag",
    "pwd",
    "hash",
    "setup",
    "tag",
    "crypto-suite",
    "key-params",
    "track",
];

fn arbitrary_element() -> impl Strategy<Value = Element> {
    let leaf = (
        prop::sample::select(NAMES.to_vec()),
        prop::sample::select(NAMESPACES.to_vec()),
        prop::collection::vec(
            (
                prop::sample::select(ATTRS.to_vec()),
                prop_oneof![text(), "-?[0-9]{1,12}".prop_map(|s| s)],
            ),
            0..6,
        ),
        text(),
    )
        .prop_map(|(name, ns_, attrs, body)| {
            let mut el = Element::bare(name, ns_);
            for (k, v) in attrs {
                let Ok(k) = minidom::rxml::NcName::try_from(k) else {
                    continue;
                };
                el.set_attr(minidom::rxml::Namespace::NONE, k, v);
            }
            el.append_text(body);
            el
        });
    leaf.prop_recursive(4, 40, 6, |inner| {
        (inner.clone(), prop::collection::vec(inner, 0..6)).prop_map(|(mut parent, children)| {
            for c in children {
                parent.append_child(c);
            }
            parent
        })
    })
}

fn parse_everything(el: &Element) {
    let _ = Jingle::parse(el);
    let _ = Content::parse(el);
    let _ = RtpDescription::parse(el);
    let _ = PayloadType::parse(el);
    let _ = IceTransport::parse(el);
    let _ = Candidate::parse(el);
    let _ = Fingerprint::parse(el);
    let _ = Group::parse(el);
    let _ = Reason::parse(el);
    let _ = SessionInfo::parse(el);
    let _ = JingleMessage::parse(el);
    let _ = JingleMessage::from_message(el);
    let _ = JingleErrorCondition::parse(el);
    for c in el.children() {
        parse_everything(c);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn jingle_element_round_trip(j in jingle()) {
        let el = j.to_element();
        let text = String::from(&el);
        let reparsed: Element = text.parse().unwrap();
        prop_assert_eq!(Jingle::parse(&reparsed).unwrap(), j);
    }

    #[test]
    fn jmi_round_trip(id in token(), media in prop::collection::vec(prop::sample::select(vec!["audio", "video"]), 0..3), which in 0usize..7, text in prop::option::of(text())) {
        let reason = Some(Reason { condition: ReasonCondition::Decline, text });
        let m = match which {
            0 => JingleMessage::Propose { id, descriptions: media.into_iter().map(ProposedDescription::rtp).collect() },
            1 => JingleMessage::Ringing { id },
            2 => JingleMessage::Proceed { id },
            3 => JingleMessage::Retract { id, reason },
            4 => JingleMessage::Reject { id, reason },
            5 => JingleMessage::Accept { id },
            _ => JingleMessage::Finish { id, reason },
        };
        prop_assert_eq!(JingleMessage::parse(&m.to_element()).unwrap(), m);
    }

    #[test]
    fn never_panics_on_arbitrary_elements(el in arbitrary_element()) {
        parse_everything(&el);
        // Whatever parses also writes and parses again.
        if let Ok(j) = Jingle::parse(&el) {
            prop_assert_eq!(Jingle::parse(&j.to_element()).unwrap(), normalized(j));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_xml_text(s in "<[a-z]{1,8} xmlns='urn:xmpp:jingle:1'( [a-z]{1,6}='[^'<&]{0,8}'){0,4}>(<[a-z-]{1,10}( [a-z]{1,6}='[^'<&]{0,8}'){0,3}/>){0,5}</[a-z]{1,8}>") {
        if let Ok(el) = s.parse::<Element>() {
            parse_everything(&el);
        }
    }
}

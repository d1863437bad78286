//! Robustness of everything stox reads from the network (STYLE.md habit 3: bad input is
//! an error, never a panic), as bounded property tests run by `cargo test`:
//!
//! - arbitrary SIP bytes through rsipstack's parser and `io::badsip` (RFC 3261 §21.4.1);
//! - arbitrary SIP MESSAGEs through `im::sip_to_stanza` (RFC 7572 §5): a stanza that
//!   survives XML, nothing, or a 4xx;
//! - arbitrary stanzas through `im::stanza_to_sip` (RFC 7572 §4);
//! - RFC 7247 §6 addresses, SIP URIs (RFC 3261 §19.1) and the body parsers;
//! - the sans-IO core over random input sequences: every SIP request gets exactly one
//!   final response, and nothing stays in the outbox once the link is up;
//! - SDP bodies through the SDP ⇄ Jingle converter and `negotiate` (what stox writes reads
//!   back with the same contents and payload type ids), Jingle / XEP-0353 elements through
//!   their parsers (`to_element` reparses equal);
//! - the core's call bridge over random INVITEs, JMI messages, Jingle iqs, dialog and relay
//!   events: one final response per INVITE, one reply per Jingle iq set, no leaked media;
//! - PIDF bodies (RFC 3863/4480) through the reader, the writer and the RFC 8048
//!   translation (`fuzz/src/pidf_checks.rs`), random and spliced into real documents.
//!
//! The checks are the ones of the cargo-fuzz targets (`fuzz/src/checks.rs`, included
//! below); every file under `fuzz/regressions/<target>/` is replayed through its target.
//! A file whose name ends in `.open` reproduces a bug not fixed yet: it is replayed by
//! the ignored test `open_regressions` (`cargo test --test robustness -- --ignored`).
//! The `bug_*` tests guard the bugs these checks found (see `fuzz/README.md`).

#[path = "../../fuzz/src/checks.rs"]
#[allow(dead_code)]
mod checks;

#[path = "../../fuzz/src/pidf_checks.rs"]
mod pidf_checks;

use std::path::{Path, PathBuf};

use checks::{CallOp, JingleBody};
use proptest::prelude::*;
use stox_gateway::core::{DialogAction, DialogEvent};
use stox_gateway::sipmsg::{SipRequest, Transport};
use stox_xmpp::jingle::Action;
use xmpp_parsers::minidom::Element;

/// 256 cases each, unless `PROPTEST_CASES` says otherwise.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text that looks like SIP: a request line and header lines from realistic and broken
/// pieces, CRLF or LF, then a body.
fn sip_text() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        "MESSAGE",
        "OPTIONS",
        "ACK",
        "INVITE",
        "[A-Z]{1,8}",
        "\\PC{0,6}"
    ];
    let uri = prop_oneof![
        Just("sip:alice@localhost".to_string()),
        Just("sip:bob%40example.net@sip.localhost".to_string()),
        Just("sips:alice@localhost".to_string()),
        "sip:[a-z%0-9@;=?&:.\\[\\]]{0,30}",
        "\\PC{0,20}",
    ];
    let header = prop_oneof![
        Just("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1".to_string()),
        Just("v: SIP/2.0/TCP [::1]:5070;branch=z9hG4bKx;rport".to_string()),
        Just("From: <sip:carol@127.0.0.1:5080>;tag=1".to_string()),
        Just("f: \"C\\\"x\" <sip:c@pbx>;tag=2".to_string()),
        Just("To: <sip:alice@localhost>".to_string()),
        Just("Call-ID: call-1@pbx".to_string()),
        Just("CSeq: 1 MESSAGE".to_string()),
        Just("Max-Forwards: 70".to_string()),
        Just("Content-Type: text/plain;charset=UTF-8".to_string()),
        Just("c: message/cpim".to_string()),
        "Content-Length: [0-9]{0,4}",
        "[A-Za-z-]{1,12}: [ -~]{0,30}",
        "[A-Za-z-]{1,12}:[ -~\r\t]{0,30}",
        "\\PC{0,30}",
    ];
    (
        method,
        uri,
        prop_oneof![Just("SIP/2.0"), Just("SIP/3.0"), Just("HTTP/1.1")],
        proptest::collection::vec(header, 0..12),
        prop_oneof![Just("\r\n"), Just("\n")],
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(m, u, v, headers, eol, body)| {
            let mut text = format!("{m} {u} {v}{eol}");
            for h in headers {
                text.push_str(&h);
                text.push_str(eol);
            }
            text.push_str(eol);
            let mut bytes = text.into_bytes();
            bytes.extend(body);
            bytes
        })
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    proptest::option::weighted(
        0.9,
        prop_oneof![
            Just("text/plain".to_string()),
            Just("text/plain; charset=ISO-8859-1".to_string()),
            Just("text/plain; charset=utf-16".to_string()),
            Just("text/html".to_string()),
            Just("message/cpim".to_string()),
            Just("application/im-iscomposing+xml".to_string()),
            Just("message/imdn+xml".to_string()),
            "[a-z]{1,8}/[a-z+.-]{1,12}(;[ a-z]{1,8}=[\"a-zA-Z0-9-]{0,10}){0,2}",
            "\\PC{0,30}",
        ],
    )
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        "\\PC{0,200}".prop_map(String::into_bytes),
        // Text with every control character XML 1.0 forbids.
        "[\\x00-\\x1f a-z<>&'\"\\x7f]{0,40}".prop_map(String::into_bytes),
        ("\\PC{0,20}", "[ -~]{0,20}", "[\\x00-\\x7f]{0,40}").prop_map(|(id, inner, text)| format!(
            "From: <sip:c@pbx>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {id}\r\nimdn.Disposition-Notification: positive-delivery\r\n\r\nContent-Type: {inner}\r\n\r\n{text}"
        )
        .into_bytes()),
        ("[a-z]{0,8}", "[ -~]{0,12}").prop_map(|(state, refresh)| format!(
            "<isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'><state>{state}</state><refresh>{refresh}</refresh></isComposing>"
        )
        .into_bytes()),
        ("[ -~]{0,16}", "[a-z]{0,10}").prop_map(|(id, status)| format!(
            "<imdn xmlns='urn:ietf:params:xml:ns:imdn'><message-id>{id}</message-id><delivery-notification><status><{status}/></status></delivery-notification></imdn>"
        )
        .into_bytes()),
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,30}", "\\PC{0,30}", "[\\x00-\\x1f a-z]{0,10}"]
}

fn sip_request() -> impl Strategy<Value = SipRequest> {
    let extra = proptest::collection::vec(
        (
            prop_oneof![
                Just("Subject"),
                Just("Content-Language"),
                Just("Call-ID"),
                Just("Content-Encoding"),
                Just("s"),
                Just("i"),
            ],
            header_value(),
        ),
        0..4,
    );
    (content_type(), body(), extra).prop_map(|(ct, body, extra)| {
        let mut headers = vec![("From".to_string(), "<sip:carol@pbx>;tag=1".to_string())];
        if let Some(ct) = ct {
            headers.push(("Content-Type".into(), ct));
        }
        headers.extend(extra.into_iter().map(|(n, v)| (n.to_string(), v)));
        SipRequest {
            method: "MESSAGE".into(),
            uri: "sip:alice@localhost".into(),
            headers,
            body,
            transport: Transport::Udp,
            source: None,
        }
    })
}

/// Stanzas as XML text: a `<message/>` with realistic and random attributes and children.
fn stanza_xml() -> impl Strategy<Value = String> {
    let attr = "[ -~&&[^<&'\"]]{0,20}|\\PC{0,10}";
    let child = prop_oneof![
        "[ -~&&[^<&]]{0,30}".prop_map(|t| format!("<body>{t}</body>")),
        "[ -~&&[^<&]]{0,30}".prop_map(|t| format!("<subject>{t}</subject>")),
        "[ -~&&[^<&]]{0,30}".prop_map(|t| format!("<thread>{t}</thread>")),
        Just("<body/>".to_string()),
        prop_oneof![
            Just("composing"),
            Just("paused"),
            Just("active"),
            Just("gone"),
            Just("bogus")
        ]
        .prop_map(|s| format!("<{s} xmlns='http://jabber.org/protocol/chatstates'/>")),
        proptest::option::of("[ -~&&[^<&'\"]]{0,20}|\\PC{0,10}|&lt;&amp;").prop_map(
            |id| match id {
                Some(id) => format!("<received xmlns='urn:xmpp:receipts' id='{id}'/>"),
                None => "<received xmlns='urn:xmpp:receipts'/>".to_string(),
            }
        ),
        "[ -~&&[^<&'\"]]{0,20}|\\PC{0,10}|&#x9;x"
            .prop_map(|id| format!("<displayed xmlns='urn:xmpp:chat-markers:0' id='{id}'/>")),
        Just("<x xmlns='urn:example'><body>not mine</body></x>".to_string()),
    ];
    (
        attr,
        prop_oneof![Just("chat"), Just("normal"), Just("error"), Just("groupchat")],
        proptest::option::of("[a-z]{0,3}"),
        proptest::collection::vec(child, 0..4),
    )
        .prop_map(|(to, kind, lang, children)| {
            let lang = lang.map(|l| format!(" xml:lang='{l}'")).unwrap_or_default();
            format!(
                "<message xmlns='jabber:client' to='{to}' from='alice@localhost/r' type='{kind}'{lang}>{}</message>",
                children.concat()
            )
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_through_rsipstack_and_badsip(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        checks::sip_message(&data);
    }

    #[test]
    fn sip_looking_text_through_rsipstack_and_badsip(data in sip_text()) {
        checks::sip_message(&data);
    }

    #[test]
    fn sip_message_to_stanza_is_a_stanza_or_a_4xx(req in sip_request()) {
        checks::check_sip_to_stanza(&req);
    }

    #[test]
    fn stanza_to_sip_writes_bodies_stox_reads_back(xml in stanza_xml()) {
        if let Ok(e) = xml.parse::<Element>() {
            checks::check_stanza_to_sip(&e);
        }
    }

    #[test]
    fn arbitrary_xml_to_sip(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        checks::xmpp_to_sip(&data);
    }

    #[test]
    fn sip_uris_reparse(s in "(sips?:)?[a-zA-Z0-9%@;=?&:.\\[\\]+-]{0,40}") {
        checks::check_sip_uri(&s);
    }

    #[test]
    fn addresses_in_all_directions(
        uri in "sips?:[a-zA-Z0-9%@;=.:'&\\\\-]{1,12}@(localhost|sip\\.localhost|pbx\\.example|127\\.0\\.0\\.1:5080)(;gr=[a-z0-9]{0,4})?",
        jid in "[a-zA-Z0-9%@'&\\\\-]{1,12}@(localhost|sip\\.localhost|example\\.net)(/[a-z]{1,4})?",
    ) {
        checks::check_address(&uri, &jid);
    }

    #[test]
    fn body_parsers(which in 0u8..6, data in proptest::collection::vec(any::<u8>(), 0..256)) {
        checks::check_body(which, &data);
    }

    #[test]
    fn core_answers_every_request_once(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        checks::gateway_core(&data);
    }

    #[test]
    fn digest_credentials(data in proptest::collection::vec(any::<u8>(), 0..160)) {
        checks::digest(&data);
    }
}

/// SDP text: a real peer's body (or a bare session) with lines from realistic and broken
/// pieces inserted, CRLF or LF.
fn sdp_text() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        "a=(rtpmap|fmtp|rtcp-fb|extmap|ssrc|ssrc-group|msid|candidate|mid|group|fingerprint|setup|ptime|crypto|ice-ufrag|rtcp):[ -~]{0,30}",
        "a=rtpmap:[0-9]{1,3} (opus|PCMU|PCMA|G722|telephone-event)/[0-9]{1,6}(/[0-9a-z]{0,3})?",
        "a=fmtp:[0-9]{1,3} \\PC{0,20}",
        "a=(rtcp-mux|bundle-only|sendonly|recvonly|inactive|end-of-candidates|extmap-allow-mixed)",
        "m=(audio|video|application) [0-9]{1,5} (RTP/AVP|UDP/TLS/RTP/SAVPF|RTP/SAVP|TCP) [0-9 ]{0,12}",
        "c=IN IP[46] [ -~]{0,15}",
        "[\\x00-\\x1f a-z=:]{0,20}",
    ];
    (
        0..=checks::SDP_SEEDS.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), line), 0..6),
        any::<bool>(),
    )
        .prop_map(|(seed, inserts, crlf)| {
            let base = checks::SDP_SEEDS.get(seed).copied().unwrap_or(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
            );
            let mut lines: Vec<String> = base.lines().map(str::to_owned).collect();
            for (at, l) in inserts {
                let at = at.index(lines.len() + 1);
                lines.insert(at, l);
            }
            let eol = if crlf { "\r\n" } else { "\n" };
            (lines.join(eol) + eol).into_bytes()
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sdp_bytes_through_the_converter(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        checks::sdp(&data);
    }

    #[test]
    fn sdp_from_real_peers_reads_back(body in sdp_text()) {
        checks::check_sdp(&body);
    }

    #[test]
    fn jingle_bytes_through_the_parsers(data in proptest::collection::vec(any::<u8>(), 0..768)) {
        checks::jingle(&data);
    }

    #[test]
    fn generated_jingle_reparses(data in proptest::collection::vec(any::<u8>(), 0..768)) {
        let mut r = checks::Reader::new(&data);
        if let Ok(e) = checks::jingle_xml(&mut r, None).parse::<Element>() {
            checks::check_jingle(&e);
        }
    }

    #[test]
    fn generated_jmi_reparses(sid in "\\PC{0,12}", data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut r = checks::Reader::new(&data);
        if let Ok(e) = checks::jmi_xml(&mut r, &sid).parse::<Element>() {
            checks::check_jingle(&e);
        }
    }

    #[test]
    fn calls_get_one_final_response_each(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        checks::calls(&data);
    }
}

fn baresip_invite() -> SipRequest {
    SipRequest {
        method: "INVITE".into(),
        uri: "sip:alice@localhost".into(),
        headers: vec![
            ("From".into(), "<sip:carol@pbx.example>;tag=1".into()),
            ("To".into(), "<sip:alice@localhost>".into()),
            ("Content-Type".into(), "application/sdp".into()),
        ],
        body: checks::SDP_SEEDS[0].as_bytes().to_vec(),
        transport: Transport::Udp,
        source: None,
    }
}

fn calls_driver() -> checks::Driver {
    let mut d = checks::Driver::with_calls(stox_gateway::core::CallSettings {
        no_answer: checks::NO_ANSWER,
        no_media: std::time::Duration::from_secs(2),
    });
    d.input(stox_gateway::core::Input::LinkUp);
    d
}

/// The `calls` ops reach an answered call: baresip INVITE → `<propose>`, `<proceed/>` from
/// a device → `session-initiate` → libwebrtc `session-accept` → 200 with an SDP answer, then
/// BYE → `session-terminate` and the media hung up.
#[test]
fn calls_scripted_sip_to_xmpp() {
    let mut d = calls_driver();
    d.call_op(CallOp::Invite(baresip_invite()));
    d.call_op(CallOp::Jmi {
        from: 0,
        to: 1,
        sid: 0,
        xml: "<proceed xmlns='urn:xmpp:jingle-message:0' id='{sid}'/>".into(),
    });
    d.call_op(CallOp::Jingle {
        from: 0,
        to: 1,
        sid: 0,
        body: JingleBody::Capture {
            which: 1,
            action: Action::SessionAccept,
            alter: 0,
        },
        twice: false,
    });
    let actions = d.actions(1);
    assert!(
        matches!(actions.last(), Some(DialogAction::Accept { .. })),
        "{actions:?}"
    );
    d.call_op(CallOp::Dialog {
        key: 0,
        event: DialogEvent::Bye,
    });
    assert_eq!(d.media_state(1), Some(checks::MediaState::HungUp));
    d.finish_calls();
}

/// The `calls` ops reach an answered call the other way: libwebrtc `session-initiate` to a
/// contact → INVITE, 180, 200 (baresip answer) → `session-accept`; two `session-terminate`s
/// (StanzaJS sends two) → one BYE, both iqs answered.
#[test]
fn calls_scripted_xmpp_to_sip() {
    let mut d = calls_driver();
    d.call_op(CallOp::Jingle {
        from: 0,
        to: 0,
        sid: 0,
        body: JingleBody::Capture {
            which: 0,
            action: Action::SessionInitiate,
            alter: 0,
        },
        twice: false,
    });
    let key = *d.call_keys().first().expect("a call");
    assert!(
        matches!(d.actions(key).as_slice(), [DialogAction::Invite { .. }]),
        "{:?}",
        d.actions(key)
    );
    for event in [
        DialogEvent::Progress { code: 180 },
        DialogEvent::Answered {
            sdp: checks::BARESIP_ANSWER.as_bytes().to_vec(),
        },
    ] {
        d.call_op(CallOp::Dialog { key: 0, event });
    }
    d.call_op(CallOp::IqReply { n: 0, error: None });
    d.call_op(CallOp::Jingle {
        from: 0,
        to: 1,
        sid: 0,
        body: JingleBody::Terminate("success".into()),
        twice: true,
    });
    assert_eq!(
        d.actions(key).last(),
        Some(&DialogAction::Hangup),
        "{:?}",
        d.actions(key)
    );
    d.finish_calls();
}

/// A link that comes and goes around a stream of MESSAGEs and bounces: each request is
/// answered once, and what was stored while the link was down leaves the outbox.
#[test]
fn core_scripted_outage_answers_every_request() {
    let text = |body: &str| SipRequest {
        method: "MESSAGE".into(),
        uri: "sip:alice@localhost".into(),
        headers: vec![
            ("From".into(), "<sip:carol@pbx>;tag=1".into()),
            ("Content-Type".into(), "text/plain".into()),
        ],
        body: body.as_bytes().to_vec(),
        transport: Transport::Udp,
        source: None,
    };
    let mut d = checks::Driver::new();
    d.input(stox_gateway::core::Input::LinkUp);
    let a = d.sip(text("one"));
    d.input(stox_gateway::core::Input::LinkDown);
    assert_eq!(d.answer(a), Some(202));
    let b = d.sip(text("two"));
    assert_eq!(d.answer(b), Some(202));
    d.input(stox_gateway::core::Input::LinkUp);
    let c = d.sip(text("three"));
    assert_eq!(d.answer(c), None, "waits for the bounce window");
    d.finish();
    assert_eq!(d.answer(c), Some(200));
}

fn regressions() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    let mut files = Vec::new();
    let Ok(dirs) = std::fs::read_dir(&root) else {
        return files;
    };
    for dir in dirs.flatten() {
        let target = dir.file_name().to_string_lossy().into_owned();
        assert!(
            checks::TARGETS.contains(&target.as_str()),
            "fuzz/regressions/{target}: no such target"
        );
        let Ok(entries) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for f in entries.flatten() {
            if f.path().is_file() {
                files.push((target.clone(), f.path()));
            }
        }
    }
    files.sort();
    files
}

fn is_open(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "open")
}

/// Every saved fuzz reproducer of a fixed bug still passes.
#[test]
fn fixed_regressions() {
    for (target, path) in regressions().into_iter().filter(|(_, p)| !is_open(p)) {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("replaying {}", path.display());
        assert!(checks::run_target(&target, &data));
    }
}

/// The reproducers of bugs still open: each one must still fail (when one passes, its bug
/// is fixed: drop the `.open` suffix so that `fixed_regressions` guards it).
#[test]
#[ignore = "replays the reproducers of open bugs, which fail until fixed"]
fn open_regressions() {
    let mut passing = Vec::new();
    for (target, path) in regressions().into_iter().filter(|(_, p)| is_open(p)) {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if std::panic::catch_unwind(|| checks::strictly(|| checks::run_target(&target, &data)))
            .is_ok()
        {
            passing.push(path.display().to_string());
        }
    }
    assert!(
        passing.is_empty(),
        "fixed, rename without .open: {passing:?}"
    );
}

/// Bug 1 (fixed in c6daab7): a SIP MESSAGE whose text holds a character XML 1.0
/// forbids (here BEL, U+0007) made the core panic: `im::sip_to_stanza` copies it into the
/// `<body/>`, and `stanza::to_string` (minidom) panics serializing it for the outbox. In
/// the daemon that panic is in the event loop: one datagram stops stox. The same holds
/// for `Subject`, `Call-ID` (→ `<thread/>`) and a CPIM `imdn.Message-ID` (→ `id`).
#[test]
fn bug_1_control_character_in_a_sip_message() {
    let req = SipRequest {
        method: "MESSAGE".into(),
        uri: "sip:alice@localhost".into(),
        headers: vec![
            ("From".into(), "<sip:carol@pbx>;tag=1".into()),
            ("Content-Type".into(), "text/plain".into()),
        ],
        body: b"bell\x07".to_vec(),
        transport: Transport::Udp,
        source: None,
    };
    let mut d = checks::Driver::new();
    d.input(stox_gateway::core::Input::LinkUp);
    // Straight into the core: the panic was in handle_input.
    d.gw.handle_input(d.now, stox_gateway::core::Input::SipRequest { tx: 1, req });
    let mut answered = false;
    while let Some(t) = d.gw.poll_timeout() {
        d.gw.handle_timeout(t);
        while let Some(o) = d.gw.poll_output() {
            answered |= matches!(o, stox_gateway::core::Output::SipReply { tx: 1, .. });
        }
    }
    assert!(answered);
}

fn text_message(content_type: &str, body: &str) -> SipRequest {
    SipRequest {
        method: "MESSAGE".into(),
        uri: "sip:alice@localhost".into(),
        headers: vec![
            ("From".into(), "<sip:carol@pbx>;tag=1".into()),
            ("Content-Type".into(), content_type.into()),
        ],
        body: body.as_bytes().to_vec(),
        transport: Transport::Udp,
        source: None,
    }
}

fn cpim_with_imdn_id(id: &str) -> SipRequest {
    text_message(
        "message/cpim",
        &format!("From: <sip:carol@pbx>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {id}\r\n\r\nContent-Type: text/plain\r\n\r\nhi"),
    )
}

/// Bug 2 (fixed in c6daab7): a CPIM `imdn.Message-ID` becomes the stanza id (im.rs), and the core keys
/// pending messages by stanza id. The de-duplication in `on_sip_message` only renames
/// the new stanza to its fresh id, which can itself be taken: MESSAGE 1 carries the id
/// stox will give MESSAGE 2 (`stox-<seed>-2`, a prefix every XMPP recipient sees), and
/// MESSAGE 2 then replaces MESSAGE 1's pending entry. MESSAGE 1's transaction never gets
/// a reply from the core (the io layer's 30 s guard answers 500 for a delivered message).
#[test]
fn bug_2_imdn_id_equal_to_a_later_stanza_id() {
    let mut d = checks::Driver::new();
    d.input(stox_gateway::core::Input::LinkUp);
    d.sip(cpim_with_imdn_id("stox-0000000000000007-2"));
    d.sip(text_message("text/plain", "second"));
    d.finish();
}

/// Bug 3 (fixed in c6daab7): while the link is down there is nothing pending, so two MESSAGEs with the
/// same CPIM `imdn.Message-ID` are both stored under one stanza id (both answered 202).
/// After the reconnect both are resent and tracked under that id; the second replaces the
/// first, whose outbox entry is then never removed: it is sent again at every reconnect
/// and every restart, forever.
#[test]
fn bug_3_same_imdn_id_twice_while_the_link_is_down() {
    let mut d = checks::Driver::new();
    d.sip(cpim_with_imdn_id("dup"));
    d.sip(cpim_with_imdn_id("dup"));
    d.finish();
}

/// Bug 4 (fixed in c6daab7): `im::stanza_to_sip` refuses an empty receipt / marker id but not a
/// blank one; `<displayed id=' '/>` becomes an RFC 5438 IMDN whose `<message-id>` is
/// blank, which stox's own IMDN parser (and a SIP client) refuses.
#[test]
fn bug_4_blank_receipt_id() {
    let e: Element = "<message xmlns='jabber:client' to='x\\40pbx@sip.localhost' from='alice@localhost/r'><displayed xmlns='urn:xmpp:chat-markers:0' id=' '/></message>"
        .parse()
        .expect("xml");
    checks::check_stanza_to_sip(&e);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn pidf_bytes_through_reader_writer_and_translation(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        pidf_checks::pidf(&data);
    }
}

/// Every PIDF vector of `sip/tests/vectors/pidf/`, as a body (first byte even) and as template
/// fields (first byte odd), through the same checks.
#[test]
fn pidf_vectors_through_the_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sip/tests/vectors/pidf");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("pidf vectors") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("xml") {
            continue;
        }
        let body = std::fs::read(&path).expect("read vector");
        for first in [0u8, 1] {
            let mut data = vec![first];
            data.extend_from_slice(&body);
            pidf_checks::pidf(&data);
        }
        n += 1;
    }
    assert!(n >= 10, "only {n} PIDF vectors in {}", dir.display());
}

//! Sans-IO tests of the call bridge: both directions, every ending, under a fake clock. The
//! relay is played by the test: every `MediaCommand::Start` is answered with a fabricated
//! `CallStarted`, as the io layer does synchronously.

use std::time::{Duration, Instant, SystemTime};

use stox_mappings::Store;
use stox_xmpp::jingle::{Action, Jingle, JingleMessage, ReasonCondition, SessionInfo};
use xmpp_parsers::minidom::Element;

use super::*;
use crate::core::{Input, Output, Settings};
use crate::media::negotiate::testing::started;
use crate::media::relay::Setup;
use crate::sipmsg::Transport;

const H: &str = "localhost";
const C: &str = "sip.localhost";
const ALICE_PHONE: &str = "alice@localhost/phone1";
const CAROL: &str = "carol\\40127.0.0.1\\3a5070@sip.localhost";

const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 10000 RTP/AVP 96 0 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

struct Harness {
    gw: Gateway,
    now: Instant,
    /// Keys the relay "started".
    media: Vec<CallKey>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_store(Store::memory())
    }

    /// A gateway whose store holds registrations of SIP users of `C`: `(user, contact)`,
    /// valid for an hour (as `restore_registrar` reads them at start).
    fn with_bindings(bindings: &[(&str, &str)]) -> Harness {
        let store = Store::memory();
        for (i, (user, contact)) in bindings.iter().enumerate() {
            let aor = format!("sip:{user}@{C}");
            let record = crate::core::registrar::BindingRecord {
                aor: aor.clone(),
                contact: (*contact).into(),
                // Later rows expire later: the "most recently registered" come last.
                expires_unix: 3600 + i as u64,
                call_id: format!("reg{i}"),
                cseq: 1,
                q: None,
                source: None,
                tcp: false,
                transport: None,
                outbound: None,
            };
            store
                .tables
                .put(
                    stox_mappings::Table::Bindings,
                    &format!("{aor}|{contact}"),
                    &serde_json::to_vec(&record).unwrap(),
                )
                .unwrap();
        }
        let mut h = Harness::with_store(store);
        let now = h.now;
        h.gw.restore_registrar(now);
        h
    }

    fn with_store(store: Store) -> Harness {
        let settings = Settings {
            accounts: Default::default(),
            home: H.into(),
            component: C.into(),
            message_type: "chat".into(),
            bounce_window: Duration::from_millis(300),
            udp_max_bytes: 1300,
            default_transport: Transport::Udp,
            epoch: (Instant::now(), SystemTime::UNIX_EPOCH),
            calls: CallSettings {
                no_answer: Duration::from_secs(30),
                no_media: Duration::from_secs(20),
            },
            presence: crate::core::PresenceSettings::default(),
            contacts: crate::core::LocalContacts::default(),
            registrar: crate::core::RegistrarSettings::default(),
        };
        let mut h = Harness {
            gw: Gateway::new(settings, &store, 1).unwrap(),
            now: Instant::now(),
            media: Vec::new(),
        };
        h.input(Input::LinkUp);
        h
    }

    /// Feeds an input and drains the outputs, answering relay starts like the io layer.
    fn input(&mut self, i: Input) -> Vec<Output> {
        self.gw.handle_input(self.now, i);
        let mut out = Vec::new();
        while let Some(o) = self.gw.poll_output() {
            if let Output::Media {
                call,
                cmd: MediaCommand::Start(m),
            } = &o
            {
                self.media.push(*call);
                let setup = if m.xmpp.we_offer {
                    Setup::Actpass
                } else {
                    Setup::Active
                };
                self.gw.handle_input(
                    self.now,
                    Input::MediaStarted {
                        call: *call,
                        result: Ok(started(setup)),
                    },
                );
            }
            out.push(o);
        }
        out
    }

    fn stanza(&mut self, xml: &str) -> Vec<Output> {
        let e: Element = xml.parse().expect("test XML");
        self.input(Input::Stanza(e))
    }

    fn invite(&mut self, key: CallKey) -> Vec<Output> {
        self.invite_to(key, "sip:alice@localhost")
    }

    fn invite_to(&mut self, key: CallKey, uri: &str) -> Vec<Output> {
        let req = SipRequest {
            method: "INVITE".into(),
            uri: uri.into(),
            headers: vec![
                ("From".into(), "<sip:carol@127.0.0.1:5070>;tag=a".into()),
                ("To".into(), "<sip:alice@localhost>".into()),
                ("Call-ID".into(), "c1".into()),
                ("CSeq".into(), "1 INVITE".into()),
                ("Max-Forwards".into(), "70".into()),
                ("Content-Type".into(), "application/sdp".into()),
            ],
            body: OFFER.as_bytes().to_vec(),
            transport: Transport::Udp,
            source: None,
        };
        self.input(Input::Invite { call: key, req })
    }
}

fn stanzas(out: &[Output]) -> Vec<&Element> {
    out.iter()
        .filter_map(|o| match o {
            Output::Stanza(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn actions(out: &[Output]) -> Vec<&DialogAction> {
    out.iter()
        .filter_map(|o| match o {
            Output::Dialog { action, .. } => Some(action),
            _ => None,
        })
        .collect()
}

fn media(out: &[Output]) -> Vec<&MediaCommand> {
    out.iter()
        .filter_map(|o| match o {
            Output::Media { cmd, .. } => Some(cmd),
            _ => None,
        })
        .collect()
}

fn jmi(e: &Element) -> Option<JingleMessage> {
    JingleMessage::from_message(e).and_then(Result::ok)
}

fn jingle(e: &Element) -> Option<Jingle> {
    e.get_child("jingle", jingle::ns::JINGLE)
        .and_then(|j| Jingle::parse(j).ok())
}

/// A libwebrtc-like answer or offer content (ICE + DTLS, PCMU + telephone-event).
fn webrtc_content(name: &str, setup: &str) -> String {
    format!(
        "<content xmlns='urn:xmpp:jingle:1' creator='initiator' name='{name}'>\
<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
<payload-type id='0' name='PCMU' clockrate='8000'/>\
<payload-type id='101' name='telephone-event' clockrate='8000'/><rtcp-mux/></description>\
<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='rU' pwd='rPrPrPrPrPrPrPrPrPrPrPrP'>\
<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='{setup}'>12:34</fingerprint>\
</transport></content>"
    )
}

/// SIP → XMPP up to the `session-initiate`; returns the sid.
fn sip_call_proceeded(h: &mut Harness) -> String {
    let out = h.invite(1);
    assert!(matches!(media(&out)[..], [MediaCommand::Start(_)]));
    let propose = stanzas(&out)
        .into_iter()
        .find_map(|s| jmi(s).map(|j| (s.clone(), j)))
        .expect("a propose");
    let (msg, JingleMessage::Propose { id: sid, .. }) = propose else {
        panic!("not a propose")
    };
    assert_eq!(msg.attr("to"), Some("alice@localhost"));
    assert_eq!(msg.attr("from"), Some(format!("{CAROL}/phone").as_str()));
    assert_eq!(msg.attr("type"), Some("chat"));
    assert!(
        msg.has_child("store", jingle::ns::HINTS),
        "XEP-0334 store hint"
    );

    let out = h.stanza(&format!(
        "<message xmlns='jabber:component:accept' from='{ALICE_PHONE}' to='{CAROL}/phone' type='chat'>\
<ringing xmlns='urn:xmpp:jingle-message:0' id='{sid}'/></message>"
    ));
    assert_eq!(actions(&out), vec![&DialogAction::Ringing]);
    let out = h.stanza(&format!(
        "<message xmlns='jabber:component:accept' from='{ALICE_PHONE}' to='{CAROL}/phone' type='chat'>\
<proceed xmlns='urn:xmpp:jingle-message:0' id='{sid}'/></message>"
    ));
    let init = stanzas(&out)[0];
    assert_eq!(
        init.attr("to"),
        Some(ALICE_PHONE),
        "exactly the proceeding device"
    );
    let j = jingle(init).expect("jingle");
    assert_eq!(j.action, Action::SessionInitiate);
    assert_eq!(j.sid, sid);
    let fp = j.contents[0]
        .transport
        .as_ref()
        .and_then(|t| t.fingerprint.clone())
        .expect("fingerprint");
    assert_eq!(fp.setup, Some(stox_xmpp::jingle::Setup::Actpass));
    sid
}

#[test]
fn sip_to_xmpp_answered_then_bye() {
    let mut h = Harness::new();
    let sid = sip_call_proceeded(&mut h);
    let out = h.stanza(&format!(
        "<iq xmlns='jabber:component:accept' type='set' id='acc1' from='{ALICE_PHONE}' to='{CAROL}/phone'>\
<jingle xmlns='urn:xmpp:jingle:1' action='session-accept' sid='{sid}'>{}</jingle></iq>",
        webrtc_content("audio", "active")
    ));
    let replies = stanzas(&out);
    assert_eq!(replies[0].attr("type"), Some("result"));
    assert_eq!(replies[0].attr("id"), Some("acc1"));
    assert!(matches!(media(&out)[..], [MediaCommand::XmppRemote(r)] if r.setup == Setup::Active));
    let [DialogAction::Accept { sdp }] = actions(&out)[..] else {
        panic!("expected 200 OK: {out:?}")
    };
    let sdp = String::from_utf8(sdp.clone()).unwrap();
    assert!(sdp.contains("m=audio 40000 RTP/AVP 0 101"), "{sdp}");
    assert_eq!(h.gw.calls()[0].state, "active");
    assert_eq!(h.gw.calls()[0].codec, "PCMU/8000");

    let out = h.input(Input::Dialog {
        call: 1,
        event: DialogEvent::Bye,
    });
    let j = jingle(stanzas(&out)[0]).unwrap();
    assert_eq!(j.action, Action::SessionTerminate);
    assert_eq!(j.reason.unwrap().condition, ReasonCondition::Success);
    assert!(matches!(media(&out)[..], [MediaCommand::Hangup]));
    assert!(h.gw.calls().is_empty());
    // StanzaJS terminates twice: the late one is acknowledged, nothing else happens.
    let out = h.stanza(&format!(
        "<iq xmlns='jabber:component:accept' type='set' id='t2' from='{ALICE_PHONE}' to='{CAROL}/phone'>\
<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='{sid}'><reason><success/></reason></jingle></iq>"
    ));
    assert_eq!(out.len(), 1);
    assert_eq!(stanzas(&out)[0].attr("type"), Some("result"));
}

#[test]
fn xmpp_hangup_of_an_answered_call_sends_bye() {
    let mut h = Harness::new();
    let sid = sip_call_proceeded(&mut h);
    h.stanza(&format!(
        "<iq xmlns='jabber:component:accept' type='set' id='acc1' from='{ALICE_PHONE}' to='{CAROL}/phone'>\
<jingle xmlns='urn:xmpp:jingle:1' action='session-accept' sid='{sid}'>{}</jingle></iq>",
        webrtc_content("audio", "active")
    ));
    let out = h.stanza(&format!(
        "<iq xmlns='jabber:component:accept' type='set' id='t1' from='{ALICE_PHONE}' to='{CAROL}/phone'>\
<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='{sid}'><reason><success/></reason></jingle></iq>"
    ));
    assert_eq!(stanzas(&out)[0].attr("type"), Some("result"));
    assert_eq!(actions(&out), vec![&DialogAction::Hangup]);
    assert!(matches!(media(&out)[..], [MediaCommand::Hangup]));
}

#[test]
fn jingle_from_another_jid_is_an_unknown_session() {
    let mut h = Harness::new();
    let sid = sip_call_proceeded(&mut h);
    let out = h.stanza(&format!(
        "<iq xmlns='jabber:component:accept' type='set' id='x' from='alice@localhost/other' to='{CAROL}/phone'>\
<jingle xmlns='urn:xmpp:jingle:1' action='session-accept' sid='{sid}'>{}</jingle></iq>",
        webrtc_content("audio", "active")
    ));
    let e = stanzas(&out)[0];
    assert_eq!(e.attr("type"), Some("error"));
    assert!(crate::stanza::to_string(e).contains("unknown-session"));
    assert!(actions(&out).is_empty());
}

#[test]
fn reject_reasons_become_sip_codes() {
    for (reason, code) in [("busy", 486), ("decline", 603), ("", 603), ("gone", 480)] {
        let mut h = Harness::new();
        let out = h.invite(1);
        let sid = stanzas(&out)
            .into_iter()
            .find_map(jmi)
            .map(|j| j.id().to_owned())
            .unwrap();
        let reason = if reason.is_empty() {
            String::new()
        } else {
            format!("<reason xmlns='urn:xmpp:jingle:1'><{reason}/></reason>")
        };
        let out = h.stanza(&format!(
            "<message xmlns='jabber:component:accept' from='{ALICE_PHONE}' to='{CAROL}/phone' type='chat'>\
<reject xmlns='urn:xmpp:jingle-message:0' id='{sid}'>{reason}</reject></message>"
        ));
        assert!(
            matches!(actions(&out)[..], [DialogAction::Reject { code: c, .. }] if *c == code),
            "{reason}: {out:?}"
        );
        assert!(matches!(media(&out)[..], [MediaCommand::Hangup]));
    }
}

#[test]
fn cancel_retracts_and_no_answer_times_out() {
    let mut h = Harness::new();
    h.invite(1);
    let out = h.input(Input::Dialog {
        call: 1,
        event: DialogEvent::Cancelled,
    });
    let r = jmi(stanzas(&out)[0]).unwrap();
    assert!(
        matches!(&r, JingleMessage::Retract { reason: Some(re), .. } if re.condition == ReasonCondition::Cancel),
        "{r:?}"
    );
    assert!(actions(&out).is_empty(), "the stack already answered 487");

    let mut h = Harness::new();
    h.invite(2);
    assert_eq!(h.gw.poll_timeout(), Some(h.now + Duration::from_secs(30)));
    h.now += Duration::from_secs(30);
    h.gw.handle_timeout(h.now);
    let out: Vec<Output> = std::iter::from_fn(|| h.gw.poll_output()).collect();
    assert!(matches!(
        actions(&out)[..],
        [DialogAction::Reject { code: 480, .. }]
    ));
    let r = jmi(stanzas(&out)[0]).unwrap();
    assert!(
        matches!(&r, JingleMessage::Retract { reason: Some(re), .. } if re.condition == ReasonCondition::Timeout)
    );
    assert!(h.gw.calls().is_empty());
}

#[test]
fn bad_invites_get_sip_errors() {
    let mut h = Harness::new();
    let mut invite = |body: &str, ct: &str| {
        let req = SipRequest {
            method: "INVITE".into(),
            uri: "sip:alice@localhost".into(),
            headers: vec![
                ("From".into(), "<sip:carol@127.0.0.1:5070>;tag=a".into()),
                ("To".into(), "<sip:alice@localhost>".into()),
                ("Content-Type".into(), ct.into()),
            ],
            body: body.as_bytes().to_vec(),
            transport: Transport::Udp,
            source: None,
        };
        let out = h.input(Input::Invite { call: 9, req });
        match actions(&out)[..] {
            [DialogAction::Reject { code, .. }] => *code,
            _ => panic!("{out:?}"),
        }
    };
    assert_eq!(invite("", "application/sdp"), 488);
    assert_eq!(invite(OFFER, "text/plain"), 488);
    assert_eq!(invite("v=0\r\ngarbage", "application/sdp"), 400);
    let gsm = OFFER.replace("96 0 101", "3").replace(
        "a=rtpmap:96 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n",
        "a=rtpmap:3 GSM/8000\r\n",
    );
    assert_eq!(invite(&gsm, "application/sdp"), 488);
}

#[test]
fn xmpp_to_sip_with_jmi_then_sip_answers_and_hangs_up() {
    let mut h = Harness::new();
    let sid = "s1";
    let out = h.stanza(&format!(
        "<message xmlns='jabber:component:accept' from='{ALICE_PHONE}' to='{CAROL}' type='chat'>\
<propose xmlns='urn:xmpp:jingle-message:0' id='{sid}'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose></message>"
    ));
    let kinds: Vec<&str> = stanzas(&out)
        .into_iter()
        .filter_map(jmi)
        .map(|j| j.name())
        .collect();
    assert_eq!(kinds, vec!["ringing", "proceed"]);
    assert_eq!(
        stanzas(&out)[1].attr("from"),
        Some(format!("{CAROL}/phone").as_str())
    );

    let out = h.stanza(&format!(
        "<iq xmlns='jabber:component:accept' type='set' id='i1' from='{ALICE_PHONE}' to='{CAROL}/phone'>\
<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='{sid}'>{}</jingle></iq>",
        webrtc_content("0", "actpass")
    ));
    assert_eq!(stanzas(&out)[0].attr("type"), Some("result"));
    let [DialogAction::Invite { req, .. }] = actions(&out)[..] else {
        panic!("{out:?}")
    };
    assert_eq!(req.uri, "sip:carol@127.0.0.1:5070");
    // The address contract (RFC 7247 §6): a full JID sender carries its resource as ;gr.
    assert_eq!(req.from, "sip:alice@localhost;gr=phone1");
    let body = String::from_utf8(req.body.clone()).unwrap();
    assert!(body.contains("m=audio 40000 RTP/AVP 0 101"), "{body}");
    let key = h.media[0];

    let out = h.input(Input::Dialog {
        call: key,
        event: DialogEvent::Progress { code: 180 },
    });
    let j = jingle(stanzas(&out)[0]).unwrap();
    assert_eq!(
        (j.action, j.info),
        (Action::SessionInfo, Some(SessionInfo::Ringing))
    );

    let answer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let out = h.input(Input::Dialog {
        call: key,
        event: DialogEvent::Answered {
            sdp: answer.as_bytes().to_vec(),
        },
    });
    assert!(matches!(media(&out)[..], [MediaCommand::SipRemote(a)] if a.port() == 30000));
    let acc = stanzas(&out)[0];
    assert_eq!(acc.attr("to"), Some(ALICE_PHONE));
    let j = jingle(acc).unwrap();
    assert_eq!(j.action, Action::SessionAccept);
    let ids: Vec<u8> = j.contents[0]
        .description
        .as_ref()
        .unwrap()
        .payload_types
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, vec![0]);
    assert_eq!(
        j.contents[0]
            .transport
            .as_ref()
            .unwrap()
            .fingerprint
            .as_ref()
            .unwrap()
            .setup,
        Some(stox_xmpp::jingle::Setup::Active),
        "answered actpass with active, never actpass"
    );

    let out = h.input(Input::Dialog {
        call: key,
        event: DialogEvent::Bye,
    });
    let j = jingle(stanzas(&out)[0]).unwrap();
    assert_eq!(j.reason.unwrap().condition, ReasonCondition::Success);
    assert!(matches!(media(&out)[..], [MediaCommand::Hangup]));
}

#[test]
fn xmpp_to_sip_failures_and_cancel() {
    for (code, cond) in [
        (486, ReasonCondition::Busy),
        (603, ReasonCondition::Decline),
        (404, ReasonCondition::Gone),
        (408, ReasonCondition::Timeout),
    ] {
        let mut h = Harness::new();
        h.stanza(&format!(
            "<iq xmlns='jabber:component:accept' type='set' id='i1' from='{ALICE_PHONE}' to='{CAROL}/phone'>\
<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s'>{}</jingle></iq>",
            webrtc_content("0", "actpass")
        ));
        let key = h.media[0];
        let out = h.input(Input::Dialog {
            call: key,
            event: DialogEvent::Failed {
                code,
                reason: "x".into(),
            },
        });
        let j = jingle(stanzas(&out)[0]).unwrap();
        assert_eq!(j.reason.unwrap().condition, cond, "{code}");
        assert!(
            actions(&out).is_empty(),
            "the INVITE is over: no CANCEL/BYE"
        );
    }
    // session-terminate while the INVITE is pending: CANCEL (DialogAction::Hangup).
    let mut h = Harness::new();
    h.stanza(&format!(
        "<iq xmlns='jabber:component:accept' type='set' id='i1' from='{ALICE_PHONE}' to='{CAROL}/phone'>\
<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s'>{}</jingle></iq>",
        webrtc_content("0", "actpass")
    ));
    let out = h.stanza(&format!(
        "<iq xmlns='jabber:component:accept' type='set' id='t' from='{ALICE_PHONE}' to='{CAROL}/phone'>\
<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='s'><reason><cancel/></reason></jingle></iq>"
    ));
    assert_eq!(actions(&out), vec![&DialogAction::Hangup]);
}

#[test]
fn session_initiate_without_dtls_or_audio_is_terminated() {
    let mut h = Harness::new();
    let plain = "<content xmlns='urn:xmpp:jingle:1' creator='initiator' name='a'>\
<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'><payload-type id='0' name='PCMU' clockrate='8000'/></description>\
<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='u' pwd='pppppppppppppppppppppp'/></content>";
    let video = "<content xmlns='urn:xmpp:jingle:1' creator='initiator' name='v'>\
<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'><payload-type id='96' name='VP8' clockrate='90000'/></description></content>";
    for (content, cond) in [
        (plain, ReasonCondition::SecurityError),
        (video, ReasonCondition::UnsupportedApplications),
    ] {
        let out = h.stanza(&format!(
            "<iq xmlns='jabber:component:accept' type='set' id='i1' from='{ALICE_PHONE}' to='{CAROL}/phone'>\
<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s'>{content}</jingle></iq>"
        ));
        let s = stanzas(&out);
        assert_eq!(s[0].attr("type"), Some("result"), "acknowledged first");
        let j = jingle(s[1]).unwrap();
        assert_eq!(
            (j.action, j.reason.unwrap().condition),
            (Action::SessionTerminate, cond)
        );
        assert!(actions(&out).is_empty() && media(&out).is_empty());
    }
}

#[test]
fn relay_failure_ends_the_call_both_ways() {
    let mut h = Harness::new();
    sip_call_proceeded(&mut h);
    let out = h.input(Input::Media {
        call: 1,
        event: crate::media::relay::RelayEventKind::Failed {
            why: "ICE timed out".into(),
        },
    });
    assert!(matches!(
        actions(&out)[..],
        [DialogAction::Reject { code: 480, .. }]
    ));
    let j = jingle(stanzas(&out)[0]).unwrap();
    assert_eq!(
        j.reason.unwrap().condition,
        ReasonCondition::ConnectivityError
    );
    assert!(h.gw.calls().is_empty());
    // The admin API finds nothing to hang up any more.
    assert!(!h.gw.hangup_call(1));
}

#[test]
fn a_bounced_propose_answers_480() {
    let mut h = Harness::new();
    let out = h.invite(1);
    let propose = stanzas(&out)
        .into_iter()
        .find(|s| jmi(s).is_some())
        .unwrap()
        .clone();
    let id = propose.attr("id").unwrap();
    let out = h.stanza(&format!(
        "<message xmlns='jabber:component:accept' type='error' id='{id}' from='alice@localhost' to='{CAROL}/phone'>\
<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    ));
    assert!(
        matches!(actions(&out)[..], [DialogAction::Reject { code: 480, .. }]),
        "{out:?}"
    );
    assert!(stanzas(&out).is_empty(), "nothing goes back to a bounce");
    assert!(h.gw.calls().is_empty());
}

/// A call to a SIP user of `C` with three registered contacts: one INVITE per contact (the
/// latest registration first); the first 2xx wins, the two others are cancelled, a late 2xx
/// from a cancelled branch is BYE'd, and the hang-up goes to the winner's dialog only.
#[test]
fn xmpp_call_to_a_registered_user_forks_and_the_first_answer_wins() {
    let mut h = Harness::with_bindings(&[
        ("dave", "sip:dave@127.0.0.1:5071"),
        ("dave", "sip:dave@127.0.0.1:5072"),
        ("dave", "sip:dave@127.0.0.1:5073"),
    ]);
    let dave = format!("dave@{C}");
    let out = h.stanza(&format!(
        "<iq xmlns='jabber:component:accept' type='set' id='i1' from='{ALICE_PHONE}' to='{dave}/phone'>\
<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='f1'>{}</jingle></iq>",
        webrtc_content("0", "actpass")
    ));
    let invites: Vec<(CallKey, String)> = out
        .iter()
        .filter_map(|o| match o {
            Output::Dialog {
                call,
                action: DialogAction::Invite { req, .. },
            } => Some((*call, req.uri.clone())),
            _ => None,
        })
        .collect();
    let uris: Vec<&str> = invites.iter().map(|(_, u)| u.as_str()).collect();
    assert_eq!(
        uris,
        [
            "sip:dave@127.0.0.1:5073",
            "sip:dave@127.0.0.1:5072",
            "sip:dave@127.0.0.1:5071"
        ]
    );
    let key = h.media[0];
    assert_eq!(invites[0].0, key, "the first branch is the call's own key");
    let keys: std::collections::HashSet<CallKey> = invites.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys.len(), 3, "one dialog key per branch");
    let (b1, b2) = (invites[1].0, invites[2].0);

    // Ringing on any branch gives one <ringing/>.
    let out = h.input(Input::Dialog {
        call: b2,
        event: DialogEvent::Progress { code: 180 },
    });
    assert_eq!(stanzas(&out).len(), 1);
    let out = h.input(Input::Dialog {
        call: key,
        event: DialogEvent::Progress { code: 180 },
    });
    assert!(stanzas(&out).is_empty(), "{out:?}");
    // One branch fails: nothing happens yet.
    let out = h.input(Input::Dialog {
        call: key,
        event: DialogEvent::Failed {
            code: 486,
            reason: "Busy Here".into(),
        },
    });
    assert!(out.is_empty(), "{out:?}");

    // b1 answers: b2 is cancelled, alice gets session-accept.
    let answer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let out = h.input(Input::Dialog {
        call: b1,
        event: DialogEvent::Answered {
            sdp: answer.as_bytes().to_vec(),
        },
    });
    let hangups: Vec<CallKey> = out
        .iter()
        .filter_map(|o| match o {
            Output::Dialog {
                call,
                action: DialogAction::Hangup,
            } => Some(*call),
            _ => None,
        })
        .collect();
    assert_eq!(hangups, [b2]);
    let j = jingle(stanzas(&out)[0]).unwrap();
    assert_eq!(j.action, Action::SessionAccept);
    assert!(matches!(media(&out)[..], [MediaCommand::SipRemote(a)] if a.port() == 30000));

    // The cancelled branch's 487 is absorbed; a late 2xx on it is BYE'd.
    let out = h.input(Input::Dialog {
        call: b2,
        event: DialogEvent::Failed {
            code: 487,
            reason: "Request Terminated".into(),
        },
    });
    assert!(out.is_empty(), "{out:?}");
    let out = h.input(Input::Dialog {
        call: b2,
        event: DialogEvent::Answered {
            sdp: answer.as_bytes().to_vec(),
        },
    });
    assert!(
        matches!(&out[..], [Output::Dialog { call, action: DialogAction::Hangup }] if *call == b2),
        "{out:?}"
    );

    // alice hangs up: BYE on the winner's dialog, media closed.
    let out = h.stanza(&format!(
        "<iq xmlns='jabber:component:accept' type='set' id='i2' from='{ALICE_PHONE}' to='{dave}/phone'>\
<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='f1'><reason><success/></reason></jingle></iq>"
    ));
    let hangups: Vec<CallKey> = out
        .iter()
        .filter_map(|o| match o {
            Output::Dialog {
                call,
                action: DialogAction::Hangup,
            } => Some(*call),
            _ => None,
        })
        .collect();
    assert_eq!(hangups, [b1]);
    assert!(
        media(&out)
            .iter()
            .any(|m| matches!(m, MediaCommand::Hangup)),
        "{out:?}"
    );
    assert!(h.gw.calls().is_empty());
}

/// Every branch of a forked call fails: the best response ends it (RFC 3261 §16.7: a 6xx
/// beats a 4xx, a 486 beats a 408 / 487), once, when the last branch is done.
#[test]
fn a_forked_call_that_fails_everywhere_ends_with_the_best_response() {
    let mut h = Harness::with_bindings(&[
        ("dave", "sip:dave@127.0.0.1:5071"),
        ("dave", "sip:dave@127.0.0.1:5072"),
        ("dave", "sip:dave@127.0.0.1:5073"),
    ]);
    let dave = format!("dave@{C}");
    let out = h.stanza(&format!(
        "<iq xmlns='jabber:component:accept' type='set' id='i1' from='{ALICE_PHONE}' to='{dave}/phone'>\
<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='f2'>{}</jingle></iq>",
        webrtc_content("0", "actpass")
    ));
    let keys: Vec<CallKey> = actions_with_keys(&out);
    assert_eq!(keys.len(), 3);
    for (k, code) in [(keys[0], 408), (keys[1], 486)] {
        let out = h.input(Input::Dialog {
            call: k,
            event: DialogEvent::Failed {
                code,
                reason: format!("r{code}"),
            },
        });
        assert!(out.is_empty(), "{code}: {out:?}");
    }
    let out = h.input(Input::Dialog {
        call: keys[2],
        event: DialogEvent::Failed {
            code: 503,
            reason: "r503".into(),
        },
    });
    let j = jingle(stanzas(&out)[0]).unwrap();
    assert_eq!(j.action, Action::SessionTerminate);
    let reason = j.reason.unwrap();
    assert_eq!(
        reason.condition,
        ReasonCondition::Busy,
        "486 wins over 408 and 503"
    );
    assert_eq!(reason.text.as_deref(), Some("r486"));
    assert!(h.gw.calls().is_empty());
}

fn actions_with_keys(out: &[Output]) -> Vec<CallKey> {
    out.iter()
        .filter_map(|o| match o {
            Output::Dialog {
                call,
                action: DialogAction::Invite { .. },
            } => Some(*call),
            _ => None,
        })
        .collect()
}

#[test]
fn failure_ranking_follows_rfc3261_16_7() {
    assert!(better_failure(603, 486));
    assert!(better_failure(486, 408));
    assert!(better_failure(486, 487));
    assert!(better_failure(404, 503));
    assert!(better_failure(480, 486), "same class: the lower code");
    assert!(!better_failure(503, 404));
    assert!(
        better_failure(408, 500),
        "408 ranks below real 4xx but above 5xx"
    );
    assert!(!better_failure(487, 486));
}

/// alice has external accounts: her call leaves with the account's AOR, next hop and
/// credentials; `#id` in the callee's JID picks another account.
#[test]
fn xmpp_to_sip_calls_leave_through_the_callers_account() {
    let mut h = Harness::new();
    let now = h.now;
    for (id, user, proxy) in [
        ("work", "alice2", Some("sip:127.0.0.1:5062")),
        ("home", "al", None),
    ] {
        h.gw.put_account(
            now,
            crate::core::AccountRecord {
                jid: "alice@localhost".into(),
                id: id.into(),
                registrar: "sip:sip2.localhost".into(),
                user: user.into(),
                auth_user: None,
                password: format!("{id}-pw"),
                transport: Default::default(),
                outbound_proxy: proxy.map(str::to_string),
                display_name: Some("Alice".into()),
                default: false,
                expires: 3600,
                created_unix: 0,
            },
        )
        .unwrap();
    }
    while h.gw.poll_output().is_some() {}
    // In: an INVITE at each account's Contact rings alice; through the non-default one the
    // caller's JID carries `#home`, so that calling back uses the same account.
    for (key, id, from) in [
        (7, "work", format!("{CAROL}/phone")),
        (
            8,
            "home",
            format!(
                "{}/phone",
                CAROL.replace("@sip.localhost", "#home@sip.localhost")
            ),
        ),
    ] {
        let rec = h.gw.account_record("alice@localhost", id).unwrap();
        let out = h.invite_to(key, &format!("sip:{}@127.0.0.1:5060", rec.contact_user()));
        let propose = stanzas(&out)
            .into_iter()
            .find(|s| jmi(s).is_some())
            .cloned()
            .expect("a propose");
        assert_eq!(propose.attr("to"), Some("alice@localhost"));
        assert_eq!(propose.attr("from"), Some(from.as_str()));
    }
    for (to, sid, from, hop, pw) in [
        (
            CAROL.to_string(),
            "a1",
            "sip:alice2@sip2.localhost",
            Some("sip:127.0.0.1:5062"),
            "work-pw",
        ),
        (
            CAROL.replace("@sip.localhost", "#home@sip.localhost"),
            "a2",
            "sip:al@sip2.localhost",
            None,
            "home-pw",
        ),
    ] {
        let out = h.stanza(&format!(
            "<iq xmlns='jabber:component:accept' type='set' id='i-{sid}' from='{ALICE_PHONE}' to='{to}/phone'>\
<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='{sid}'>{}</jingle></iq>",
            webrtc_content("0", "actpass")
        ));
        let [DialogAction::Invite { req, account }] = actions(&out)[..] else {
            panic!("{out:?}")
        };
        assert_eq!(
            req.uri, "sip:carol@127.0.0.1:5070",
            "the #id is not part of the target"
        );
        assert_eq!(req.from, from);
        assert_eq!(req.next_hop.as_deref(), hop);
        let a = account.as_ref().expect("the account's credentials");
        assert_eq!(
            (a.password.as_str(), a.display_name.as_deref()),
            (pw, Some("Alice"))
        );
    }
}

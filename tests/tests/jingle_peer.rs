//! Self-tests of the StanzaJS + libwebrtc call client (`tests/peers/jingle`, wrapped by
//! `stox_tests::jingle_peer`): two peers call each other through a real Prosody over
//! WebSocket, with XEP-0353 (propose / ringing / proceed / reject / retract / finish) and
//! XEP-0166/0167/0176/0320 Jingle, and each checks the tone the other sends.
//!
//! With `STOX_UPDATE_CAPTURES=1`, `jmi_call_carries_both_tones_and_hangup_ends_both` also writes
//! the libwebrtc capture vectors to `tests/peers/jingle/captures/`.

use std::time::Duration;

use stox_tests::jingle_peer::{Answer, CallOptions, Captured, JinglePeer, PeerOptions};
use stox_tests::{crate_path, Prosody, ProsodyOptions, PASSWORD};

const T: Duration = Duration::from_secs(10);
/// ±10 Hz around the tone sent.
const TOL: f64 = 10.0;
/// The peers send amplitude 0.3 (RMS 0.21); anything above this is the tone, not noise.
const MIN_RMS: f64 = 0.05;

fn prosody() -> Prosody {
    Prosody::start(ProsodyOptions {
        websocket: true,
        ..ProsodyOptions::without_offline()
    })
    .expect("prosody")
}

fn peer(prosody: &Prosody, user: &str, resource: &str, opts: PeerOptions) -> JinglePeer {
    JinglePeer::connect(prosody, user, PASSWORD, resource, opts).expect("jingle peer online")
}

/// Writes the first stanza of `stanzas` to `captures/NAME` (STOX_UPDATE_CAPTURES=1 only).
fn write_capture(name: &str, text: &str) {
    let dir = crate_path("peers/jingle/captures");
    std::fs::create_dir_all(&dir).expect("captures dir");
    let mut text = text.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    std::fs::write(dir.join(name), text).expect("write capture");
}

fn local_sdp(peer: &JinglePeer, sid: &str, kind: &str) -> String {
    peer.capture_log()
        .expect("capture log")
        .into_iter()
        .find_map(|c| match c {
            Captured::Sdp {
                dir,
                sid: s,
                kind: k,
                sdp,
            } if dir == "local" && s == sid && k == kind => Some(sdp),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no local {kind} SDP for {sid}"))
}

#[test]
fn jmi_call_carries_both_tones_and_hangup_ends_both() {
    let prosody = prosody();
    let mut a = peer(&prosody, "alice", "a", PeerOptions::tone(440));
    let mut b = peer(&prosody, "bob", "b", PeerOptions::tone(660));

    // XEP-0353: propose to the bare JID, ringing and proceed from bob's full JID.
    let sid = a.call("bob@localhost", CallOptions::jmi()).unwrap();
    let propose = b.expect_event("propose", &sid, T).unwrap();
    assert_eq!(propose.str("from"), Some("alice@localhost/a"));
    assert_eq!(propose.value["media"][0], "audio");
    let ringing = a.expect_event("ringing", &sid, T).unwrap();
    assert_eq!(ringing.str("from"), Some("bob@localhost/b"));
    let proceed = a.expect_event("proceed", &sid, T).unwrap();
    assert_eq!(proceed.str("from"), Some("bob@localhost/b"));

    // Jingle to the full JID that proceeded, with the JMI id as sid.
    let outgoing = a.expect_event("outgoing", &sid, T).unwrap();
    assert_eq!(outgoing.str("to"), Some("bob@localhost/b"));
    let incoming = b.expect_event("incoming", &sid, T).unwrap();
    assert_eq!(incoming.str("from"), Some("alice@localhost/a"));
    a.expect_event("accepted", &sid, T).unwrap();
    a.wait_connected(&sid, T).unwrap();
    b.wait_connected(&sid, T).unwrap();

    // Each hears the other's tone.
    let heard_a = a.wait_tone(&sid, 660.0, TOL, MIN_RMS, T).unwrap();
    let heard_b = b.wait_tone(&sid, 440.0, TOL, MIN_RMS, T).unwrap();
    eprintln!("alice heard {heard_a:?}, bob heard {heard_b:?}");
    let stats = a.call_stats(&sid).unwrap();
    assert_eq!(stats.state, "active");
    assert!(
        stats.packets_received > 0 && stats.packets_sent > 0,
        "{stats:?}"
    );

    // Hang-up from alice ends bob's session; both send XEP-0353 <finish/>.
    a.hangup(&sid).unwrap();
    let ended_a = a.expect_event("terminated", &sid, T).unwrap();
    assert_eq!(ended_a.str("by"), Some("local"));
    let ended_b = b.expect_event("terminated", &sid, T).unwrap();
    assert_eq!(ended_b.str("by"), Some("remote"));
    assert_eq!(ended_b.str("reason"), Some("success"));
    b.expect_event("finish", &sid, T).unwrap();
    a.expect_event("finish", &sid, T).unwrap();

    // The capture log holds the whole exchange as sent on the wire.
    let initiate = a.captured_stanzas("out", "session-initiate").unwrap();
    assert_eq!(initiate.len(), 1, "{initiate:?}");
    assert!(
        initiate[0].contains("urn:xmpp:jingle:apps:dtls:0"),
        "{}",
        initiate[0]
    );
    let accept = b.captured_stanzas("out", "session-accept").unwrap();
    assert_eq!(accept.len(), 1);
    let candidates = a.captured_stanzas("out", "<candidate ").unwrap();
    assert!(!candidates.is_empty());
    for c in &candidates {
        assert!(
            c.contains("ip=\"127.0.0.1\"") || c.contains("ip=\"::1\""),
            "non-loopback candidate sent: {c}"
        );
    }
    let propose_xml = a.captured_stanzas("out", "<propose").unwrap();
    assert!(propose_xml[0].contains("type='chat'") && propose_xml[0].contains("<store"));

    if std::env::var_os("STOX_UPDATE_CAPTURES").is_some() {
        write_capture("libwebrtc-audio-offer.xml", &initiate[0]);
        write_capture("libwebrtc-audio-answer.xml", &accept[0]);
        let with_ip4 = candidates
            .iter()
            .find(|c| c.contains("ip=\"127.0.0.1\"") && c.contains("protocol=\"udp\""))
            .unwrap_or(&candidates[0]);
        write_capture("libwebrtc-transport-info.xml", with_ip4);
        if let Some(done) = a
            .captured_stanzas("out", "gathering-complete")
            .unwrap()
            .first()
        {
            write_capture("libwebrtc-transport-info-gathering-complete.xml", done);
        }
        write_capture("libwebrtc-audio-offer.sdp", &local_sdp(&a, &sid, "offer"));
        write_capture("libwebrtc-audio-answer.sdp", &local_sdp(&b, &sid, "answer"));
        write_capture("jmi-propose.xml", &propose_xml[0]);
    }
    a.quit().unwrap();
    b.quit().unwrap();
}

#[test]
fn decline_and_busy_rejects_reach_the_caller() {
    let prosody = prosody();
    let mut a = peer(&prosody, "alice", "a", PeerOptions::tone(440));
    let mut b = peer(
        &prosody,
        "bob",
        "b",
        PeerOptions::tone(660).answer(Answer::Manual),
    );
    for reason in ["decline", "busy"] {
        let sid = a.call("bob@localhost", CallOptions::jmi()).unwrap();
        b.expect_event("propose", &sid, T).unwrap();
        a.expect_event("ringing", &sid, T).unwrap();
        b.reject(&sid, reason).unwrap();
        let rejected = b.expect_event("rejected", &sid, T).unwrap();
        assert_eq!(rejected.str("reason"), Some(reason));
        let reject = a.expect_event("reject", &sid, T).unwrap();
        assert_eq!(reject.str("reason"), Some(reason));
        assert_eq!(reject.str("from"), Some("bob@localhost/b"));
    }
    // No Jingle session was ever started.
    assert!(a
        .captured_stanzas("out", "session-initiate")
        .unwrap()
        .is_empty());
}

#[test]
fn retract_before_answer_reaches_the_callee() {
    let prosody = prosody();
    let mut a = peer(&prosody, "alice", "a", PeerOptions::tone(440));
    let mut b = peer(
        &prosody,
        "bob",
        "b",
        PeerOptions::tone(660).answer(Answer::Manual),
    );
    let sid = a.call("bob@localhost", CallOptions::jmi()).unwrap();
    b.expect_event("propose", &sid, T).unwrap();
    a.expect_event("ringing", &sid, T).unwrap();
    a.retract(&sid).unwrap();
    a.expect_event("retracted", &sid, T).unwrap();
    let retract = b.expect_event("retract", &sid, T).unwrap();
    assert_eq!(retract.str("reason"), Some("cancel"));
    assert_eq!(retract.str("from"), Some("alice@localhost/a"));
}

#[test]
fn opus_only_jmi_call_and_pcmu_only_direct_call_carry_audio() {
    let prosody = prosody();
    let mut a = peer(&prosody, "alice", "a", PeerOptions::tone(440));
    let mut b = peer(&prosody, "bob", "b", PeerOptions::tone(660));

    // Opus only, through XEP-0353.
    let sid = a
        .call("bob@localhost", CallOptions::jmi().codecs(&["opus"]))
        .unwrap();
    let offer = a.expect_event("sdp", &sid, T).unwrap();
    assert_eq!(offer.str("type"), Some("offer"));
    let names: Vec<&str> = offer.value["codecs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["opus"]);
    a.wait_connected(&sid, T).unwrap();
    let heard = b.wait_tone(&sid, 440.0, TOL, MIN_RMS, T).unwrap();
    assert_eq!(heard.rate, 48000);
    a.wait_tone(&sid, 660.0, TOL, MIN_RMS, T).unwrap();
    assert_eq!(
        b.call_stats(&sid).unwrap().codec.as_deref(),
        Some("audio/opus")
    );
    a.hangup(&sid).unwrap();
    b.expect_event("terminated", &sid, T).unwrap();

    // PCMU only, session-initiate straight to bob's full JID (no JMI).
    let sid = a
        .call("bob@localhost/b", CallOptions::direct().codecs(&["PCMU"]))
        .unwrap();
    let incoming = b.expect_event("incoming", &sid, T).unwrap();
    assert_eq!(incoming.value["jmi"], false);
    b.wait_connected(&sid, T).unwrap();
    let heard = b.wait_tone(&sid, 440.0, TOL, MIN_RMS, T).unwrap();
    assert_eq!(heard.rate, 8000);
    a.wait_tone(&sid, 660.0, TOL, MIN_RMS, T).unwrap();
    assert_eq!(
        a.call_stats(&sid).unwrap().codec.as_deref(),
        Some("audio/PCMU")
    );
    // Hang-up from the callee this time.
    b.hangup(&sid).unwrap();
    let ended = a.expect_event("terminated", &sid, T).unwrap();
    assert_eq!(ended.str("by"), Some("remote"));
}

/// The peer's own unit tests (tone generator, analyser, SDP munging, loopback filter) run
/// under `node --test`, so `cargo test` covers them too.
#[test]
fn node_unit_tests_pass() {
    stox_tests::jingle_peer::ensure_installed().expect("npm ci");
    let out = std::process::Command::new("node")
        .args(["--test", "test/"])
        .current_dir(stox_tests::jingle_peer::peer_dir())
        .output()
        .expect("running node --test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("# fail 0"), "{stdout}");
}

#[test]
fn direct_session_initiate_in_manual_mode_rings_then_is_accepted_or_declined_busy() {
    let prosody = prosody();
    let mut a = peer(&prosody, "alice", "a", PeerOptions::tone(440));
    let mut b = peer(
        &prosody,
        "bob",
        "b",
        PeerOptions::tone(660).answer(Answer::Manual),
    );

    // Accepted by command after Jingle session-info <ringing/>.
    let sid = a.call("bob@localhost/b", CallOptions::direct()).unwrap();
    let incoming = b.expect_event("incoming", &sid, T).unwrap();
    assert_eq!(incoming.value["jmi"], false);
    a.expect_event("session_ringing", &sid, T).unwrap();
    b.accept(&sid).unwrap();
    a.expect_event("accepted", &sid, T).unwrap();
    a.wait_tone(&sid, 660.0, TOL, MIN_RMS, T).unwrap();
    a.hangup(&sid).unwrap();
    b.expect_event("terminated", &sid, T).unwrap();

    // Declined busy: session-terminate with <busy/> (XEP-0166 §6.7).
    let sid = a.call("bob@localhost/b", CallOptions::direct()).unwrap();
    b.expect_event("incoming", &sid, T).unwrap();
    b.reject(&sid, "busy").unwrap();
    let ended = a.expect_event("terminated", &sid, T).unwrap();
    assert_eq!(ended.str("reason"), Some("busy"));
    assert_eq!(ended.str("by"), Some("remote"));
}

//! Self-tests of the harness against the real peers alone (no stox): if these fail, the
//! machine or the harness is broken, not the gateway.
//!
//! ```text
//! start prosody; alice and bob log in with slixmpp
//! alice sends bob a chat message with a non-ASCII body → bob receives it byte-exact
//! sipp UAS(486) on P; sipp UAC sends MESSAGE sip:bob@127.0.0.1:P → UAS got it byte-exact, UAC got 486
//! a stand-in stox (tests/peers/fake_stox.py) → /health, restart, kill work on the same store
//! ```

use std::time::Duration;

use stox_tests::sip_raw::{build_message, exchange_tcp, send_sip_udp};
use stox_tests::{Prosody, ProsodyOptions, SipMessage, Sipp, Stox, XmppClient, PASSWORD};

const BODY: &str = "héllo ünïcode 你好 🎉 <&>";
const T: Duration = Duration::from_secs(10);

#[test]
fn two_slixmpp_clients_message_each_other_through_prosody() {
    let prosody = Prosody::start(ProsodyOptions::default()).unwrap();
    let mut alice = XmppClient::connect(&prosody, "alice", PASSWORD, "laptop").unwrap();
    let mut bob = XmppClient::connect(&prosody, "bob", PASSWORD, "phone").unwrap();

    alice.send_message("bob@localhost", BODY).unwrap();
    let got = bob
        .expect(T, |s| s.is_message() && s.body().is_some())
        .unwrap();
    assert_eq!(got.body().as_deref(), Some(BODY));
    assert_eq!(got.from(), Some("alice@localhost/laptop"));
    assert_eq!(got.kind(), Some("chat"));

    bob.send_raw(
        "<message to='alice@localhost/laptop' type='chat' id='r1'><body>ok</body></message>",
    )
    .unwrap();
    let reply = alice.expect(T, |s| s.id() == Some("r1")).unwrap();
    assert_eq!(reply.body().as_deref(), Some("ok"));
    assert_eq!(reply.from(), Some("bob@localhost/phone"));
}

#[test]
fn prosody_without_offline_bounces_messages_to_unknown_users() {
    let prosody = Prosody::start(ProsodyOptions::without_offline()).unwrap();
    let mut alice = XmppClient::connect(&prosody, "alice", PASSWORD, "laptop").unwrap();
    alice
        .send_raw("<message to='nobody@localhost' type='chat' id='lost'><body>x</body></message>")
        .unwrap();
    let bounce = alice.expect(T, |s| s.id() == Some("lost")).unwrap();
    assert_eq!(bounce.kind(), Some("error"), "{}", bounce.xml());
    assert_eq!(
        bounce.error_condition().as_deref(),
        Some("service-unavailable")
    );
}

#[test]
fn prosody_restart_keeps_ports_and_accounts() {
    let mut prosody = Prosody::start(ProsodyOptions::default()).unwrap();
    prosody.register("erin", "erin-pw").unwrap();
    let before = (prosody.c2s_addr(), prosody.component_addr(), prosody.pid());
    prosody.restart().unwrap();
    assert_eq!(before.0, prosody.c2s_addr());
    assert_eq!(before.1, prosody.component_addr());
    assert_ne!(before.2, prosody.pid());
    let mut erin = XmppClient::connect(&prosody, "erin", "erin-pw", "r").unwrap();
    let mut alice = XmppClient::connect(&prosody, "alice", PASSWORD, "r").unwrap();
    alice
        .send_message("erin@localhost", "after restart")
        .unwrap();
    let got = erin.expect(T, |s| s.body().is_some()).unwrap();
    assert_eq!(got.body().as_deref(), Some("after restart"));
}

#[test]
fn wrong_password_is_refused() {
    let prosody = Prosody::start(ProsodyOptions::default()).unwrap();
    let err = XmppClient::connect(&prosody, "alice", "wrong", "r").unwrap_err();
    assert!(err.to_string().contains("authentication failed"), "{err:#}");
}

#[test]
fn sipp_uac_and_uas_exchange_a_byte_exact_message() {
    let uas = Sipp::uas_message(486, "Busy Here").unwrap();
    let port = uas.port();
    let uac = Sipp::uac_message(uas.addr(), "bob", &format!("127.0.0.1:{port}"), BODY)
        .run()
        .unwrap();
    let uas = uas.wait(T).unwrap();

    let requests = uas.received_requests_unique();
    assert_eq!(requests.len(), 1, "{}", uas.summary());
    let message = requests[0];
    assert_eq!(message.method(), Some("MESSAGE"));
    assert_eq!(
        message.request_uri(),
        Some(format!("sip:bob@127.0.0.1:{port}").as_str())
    );
    assert_eq!(message.body, BODY.as_bytes());
    assert_eq!(
        message.header("Content-Type"),
        Some("text/plain;charset=UTF-8")
    );
    assert_eq!(uas.exit_code, Some(0), "{}", uas.summary());
    assert_eq!(uas.successful, 1);

    // The UAC expected 200 and got 486: one failed call, and the status is readable.
    assert_eq!(uac.final_status(), Some(486), "{}", uac.summary());
    assert_eq!(uac.failed, 1);
    assert_eq!(uac.exit_code, Some(1));
}

#[test]
fn sipp_uas_answers_several_calls_with_200() {
    let uas = Sipp::uas_message_n(200, "OK", 3).unwrap();
    let uac = Sipp::uac_message(uas.addr(), "bob", "127.0.0.1", "one of three")
        .calls(3)
        .rate(50)
        .run()
        .unwrap();
    let uas = uas.wait(T).unwrap();
    assert_eq!(uac.successful, 3, "{}", uac.summary());
    assert_eq!(uac.exit_code, Some(0));
    assert_eq!(uas.received_requests_unique().len(), 3);
}

#[test]
fn raw_udp_and_tcp_helpers_talk_to_a_sipp_uas() {
    let uas = Sipp::uas_message(404, "Not Found").unwrap();
    let request = build_message(
        &format!("sip:bob@127.0.0.1:{}", uas.port()),
        "raw",
        "127.0.0.1:9".parse().unwrap(),
        "UDP",
        BODY.as_bytes(),
    );
    let reply = send_sip_udp(uas.addr(), &request).expect("a response");
    let reply = SipMessage::parse(&reply).unwrap();
    assert_eq!(reply.status(), Some(404));
    let run = uas.wait(T).unwrap();
    assert_eq!(run.received_requests()[0].body, BODY.as_bytes());

    // TCP: nobody listens on this port, so the helper reports no response.
    let closed = stox_tests::ports::free_port();
    let none = exchange_tcp(
        format!("127.0.0.1:{closed}").parse().unwrap(),
        &request,
        Duration::from_secs(1),
    );
    assert!(none.is_empty());
}

/// The Stox harness itself, with a stand-in binary that only serves /health: start waits
/// for 200, stop/kill end the process, restart reuses ports and store.
#[test]
fn stox_harness_starts_stops_and_restarts_on_the_same_store() {
    let prosody = Prosody::start(ProsodyOptions::default()).unwrap();
    let fake = stox_tests::crate_path("peers/fake_stox.py");
    let mut stox = Stox::start_binary(
        &fake,
        &prosody,
        "[sip]\noutbound_proxy = \"sip:127.0.0.1:5080\"\n",
    )
    .unwrap();
    let config = std::fs::read_to_string(stox.config_path()).unwrap();
    assert!(config.contains(&format!(
        "server = \"127.0.0.1:{}\"",
        prosody.component_addr().port()
    )));
    assert!(config.contains("outbound_proxy = \"sip:127.0.0.1:5080\""));
    assert!(config.contains(&format!("udp:127.0.0.1:{}", stox.sip_port())));
    let health = stox.admin_get("/health").unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.json().unwrap()["starts"], 1);

    let admin = stox.admin_addr();
    stox.restart().unwrap();
    assert_eq!(stox.admin_addr(), admin);
    assert_eq!(
        stox.admin_get("/health").unwrap().json().unwrap()["starts"],
        2
    );

    let status = stox.kill().expect("killed");
    assert!(!status.success());
    assert!(!stox.is_running());
    assert!(stox.admin_get("/health").is_err());
    stox.restart().unwrap();
    assert_eq!(
        stox.admin_get("/health").unwrap().json().unwrap()["starts"],
        3
    );
    assert!(stox.stop().is_some());
}

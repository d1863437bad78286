//! RFC 5923 connection reuse between two stoxes over mutual TLS (issue 5: "SIP over TLS ...
//! with connection reuse").
//!
//! ```text
//! a test CA (openssl) signs stox A's and stox B's certificates (IP:127.0.0.1, localhost)
//! start prosody PA (localhost) with stox A: tls:127.0.0.1:TA, outbound proxy
//!   sip:127.0.0.1:TB;transport=tls, [sip.tls] cert/key, ca = client_ca = the CA
//! start prosody PB (b.localhost) with stox B: tls:127.0.0.1:TB, outbound proxy
//!   sip:127.0.0.1:TA;transport=tls, the same
//! alice@localhost → bob\40b.localhost@sip.localhost: A opens TLS to B (presenting its
//!   certificate), MESSAGE with Via SIP/2.0/TLS 127.0.0.1:TA;...;alias; B verifies the
//!   certificate, it names 127.0.0.1: B aliases the connection to 127.0.0.1:TA
//! bob answers alice\40localhost@sip.b.localhost: B sends to 127.0.0.1:TA over A's
//!   connection
//! expect alice gets it; no connection to TA was ever made (ss), one to TB; B opened no TLS
//!   connection, made one alias; A opened one
//! the same where B must not alias — B asks no client certificate (no client_ca), or its
//!   client_ca did not sign A's certificate, or A's Via sent-by (its first TLS listener,
//!   127.0.0.2) is not in A's certificate: bob's answer comes over a connection B opens to
//!   TA, no alias
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use stox_tests::certs::TestCa;
use stox_tests::ports::free_port;
use stox_tests::process::temp_dir;
use stox_tests::{Prosody, ProsodyOptions, Stox, XmppClient, PASSWORD};

const T: Duration = Duration::from_secs(20);

/// How stox B (the TLS server of the first connection) is set up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Case {
    /// B asks for client certificates, verified against the CA that signed A's.
    Alias,
    /// B has no `client_ca`: it asks for no client certificate.
    NoClientCa,
    /// B's `client_ca` is another CA: A's certificate does not verify.
    ForeignClientCa,
    /// A's Via sent-by (its first TLS listener, on 127.0.0.2) is not in its certificate.
    SentByNotInCertificate,
}

/// What was seen once alice got bob's answer.
#[derive(Debug)]
struct Seen {
    /// Established TCP connections to A's TLS port (accepted by A).
    to_a: usize,
    /// Established TCP connections to B's TLS port (accepted by B).
    to_b: usize,
    /// TLS connections A and B opened themselves.
    a_opened: f64,
    b_opened: f64,
    /// Connections B aliased (RFC 5923).
    b_aliases: f64,
}

/// Established TCP connections whose local end is `addr` (accepted on that listener).
fn accepted(addr: SocketAddr) -> usize {
    let out = Command::new("ss")
        .args(["-Htn", "state", "established"])
        .arg(format!("( sport = :{} )", addr.port()))
        .output()
        .expect("ss");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&addr.to_string()))
        .count()
}

/// A Prometheus sample of `stox` by its name with labels (0 when not exported yet).
fn metric(stox: &Stox, sample: &str) -> f64 {
    let r = stox.admin_get("/metrics").expect("metrics");
    r.body
        .lines()
        .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn tls_config(cert: &Path, key: &Path, ca: &Path, client_ca: Option<&Path>) -> String {
    let mut s = format!(
        "[sip.tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
        cert.display(),
        key.display(),
        ca.display()
    );
    if let Some(c) = client_ca {
        s.push_str(&format!("client_ca = \"{}\"\n", c.display()));
    }
    s
}

/// Two stoxes and their Prosodys, alice on A, bob on B. Fields drop in order: the
/// clients and stoxes before their Prosodys.
struct Pair {
    alice: XmppClient,
    bob: XmppClient,
    stox_a: Stox,
    stox_b: Stox,
    pa: Prosody,
    pb: Prosody,
    a_tls_addr: SocketAddr,
    b_tls_addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// The set-up of `case`; `calls`: Prosodys with WebSocket for the jingle peers and a media
/// port range for each stox.
fn setup(case: Case, calls: bool) -> Pair {
    let dir = temp_dir("tlsreuse").expect("temp dir");
    let ca = TestCa::new(dir.path(), "peers");
    let other = TestCa::new(dir.path(), "other");
    let a_san = match case {
        Case::SentByNotInCertificate => "IP:127.0.0.1",
        _ => "IP:127.0.0.1,DNS:localhost",
    };
    let (a_cert, a_key) = ca.leaf("stox-a", a_san);
    let (b_cert, b_key) = ca.leaf("stox-b", "IP:127.0.0.1,DNS:localhost");

    let pa = Prosody::start(ProsodyOptions {
        websocket: calls,
        ..ProsodyOptions::without_offline()
    })
    .expect("prosody A");
    let pb = Prosody::start(ProsodyOptions {
        domain: "b.localhost".into(),
        component: "sip.b.localhost".into(),
        websocket: calls,
        ..ProsodyOptions::without_offline()
    })
    .expect("prosody B");
    // Media ports of their own, above the ephemeral range (test binaries run one at a time).
    let media = |lo: u16| {
        if calls {
            format!(
                "[media]\naddress = \"127.0.0.1\"\nport_range = \"{lo}-{}\"\n",
                lo + 99
            )
        } else {
            String::new()
        }
    };
    let (a_udp, a_tls, b_udp, b_tls) = (free_port(), free_port(), free_port(), free_port());
    let a_tls_addr = SocketAddr::from(([127, 0, 0, 1], a_tls));
    let b_tls_addr = SocketAddr::from(([127, 0, 0, 1], b_tls));
    // A's first TLS listener is its Via sent-by; in that case it is one on 127.0.0.2.
    let a_listen = match case {
        Case::SentByNotInCertificate => format!(
            "\"udp:127.0.0.1:{a_udp}\", \"tls:127.0.0.2:{}\", \"tls:127.0.0.1:{a_tls}\"",
            free_port()
        ),
        _ => format!("\"udp:127.0.0.1:{a_udp}\", \"tls:127.0.0.1:{a_tls}\""),
    };
    let stox_a = Stox::start(
        &pa,
        &format!(
            "{}[sip]\nlisten = [{a_listen}]\noutbound_proxy = \"sip:127.0.0.1:{b_tls};transport=tls\"\n{}",
            media(64000),
            tls_config(&a_cert, &a_key, &ca.cert, Some(&ca.cert))
        ),
    )
    .expect("stox A");
    let b_client_ca = match case {
        Case::NoClientCa => None,
        Case::ForeignClientCa => Some(other.cert.as_path()),
        _ => Some(ca.cert.as_path()),
    };
    let stox_b = Stox::start(
        &pb,
        &format!(
            "{}[sip]\nlisten = [\"udp:127.0.0.1:{b_udp}\", \"tls:127.0.0.1:{b_tls}\"]\n\
             outbound_proxy = \"sip:127.0.0.1:{a_tls};transport=tls\"\n{}",
            media(64100),
            tls_config(&b_cert, &b_key, &ca.cert, b_client_ca)
        ),
    )
    .expect("stox B");
    let alice = XmppClient::connect(&pa, "alice", PASSWORD, "laptop").expect("alice");
    let bob = XmppClient::connect(&pb, "bob", PASSWORD, "phone").expect("bob");
    Pair {
        alice,
        bob,
        stox_a,
        stox_b,
        pa,
        pb,
        a_tls_addr,
        b_tls_addr,
        _dir: dir,
    }
}

/// alice on A writes to bob on B (A opens TLS to B), bob answers; what was seen then.
fn exchange(p: &mut Pair) -> Seen {
    let Pair {
        alice,
        bob,
        stox_a,
        stox_b,
        ..
    } = p;
    alice
        .send_message("bob\\40b.localhost@sip.localhost", "hello over TLS")
        .expect("alice sends");
    let got = bob.expect_message(T).unwrap_or_else(|e| {
        panic!(
            "bob never got alice's message: {e}\n--- A ---\n{}\n--- B ---\n{}",
            stox_a.log_tail(40),
            stox_b.log_tail(40)
        )
    });
    assert_eq!(got.body().as_deref(), Some("hello over TLS"));
    let from = got.from().unwrap_or_default().to_string();
    assert!(
        from.starts_with("alice\\40localhost@sip.b.localhost"),
        "from {from}"
    );

    bob.send_message(&from, "hi alice, back over TLS")
        .expect("bob answers");
    let back = alice.expect_message(T).unwrap_or_else(|e| {
        panic!(
            "alice never got bob's answer: {e}\n--- A ---\n{}\n--- B ---\n{}",
            stox_a.log_tail(40),
            stox_b.log_tail(40)
        )
    });
    assert_eq!(back.body().as_deref(), Some("hi alice, back over TLS"));
    assert!(
        back.from()
            .unwrap_or_default()
            .starts_with("bob\\40b.localhost@sip.localhost"),
        "{:?}",
        back.from()
    );
    // Both MESSAGEs were answered 2xx: neither side got an error back.
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        for s in alice.drain(Duration::from_millis(100)) {
            assert_ne!(s.kind(), Some("error"), "{}", s.xml());
        }
    }
    seen(p)
}

fn seen(p: &Pair) -> Seen {
    Seen {
        to_a: accepted(p.a_tls_addr),
        to_b: accepted(p.b_tls_addr),
        a_opened: metric(&p.stox_a, "stox_sip_tls_connections_total{side=\"opened\"}"),
        b_opened: metric(&p.stox_b, "stox_sip_tls_connections_total{side=\"opened\"}"),
        b_aliases: metric(&p.stox_b, "stox_sip_tls_aliases_total"),
    }
}

fn run(case: Case) -> Seen {
    let mut p = setup(case, false);
    exchange(&mut p)
}

/// A presents its certificate and asks for an alias; B verifies the certificate, aliases
/// the connection, and its answer goes back over the connection A opened: no connection to
/// A's TLS port at all.
#[test]
fn the_answer_comes_back_over_the_connection_a_opened() {
    let seen = run(Case::Alias);
    assert_eq!(seen.to_b, 1, "{seen:?}");
    assert_eq!(seen.to_a, 0, "{seen:?}");
    assert_eq!(seen.a_opened, 1.0, "{seen:?}");
    assert_eq!(seen.b_opened, 0.0, "{seen:?}");
    assert_eq!(seen.b_aliases, 1.0, "{seen:?}");
}

/// The negative cases: B opens a connection of its own to A's TLS port for its answer.
fn b_connects_itself(case: Case) {
    let seen = run(case);
    assert_eq!(seen.to_b, 1, "{case:?}: {seen:?}");
    assert_eq!(seen.to_a, 1, "{case:?}: {seen:?}");
    assert_eq!(seen.a_opened, 1.0, "{case:?}: {seen:?}");
    assert_eq!(seen.b_opened, 1.0, "{case:?}: {seen:?}");
    assert_eq!(seen.b_aliases, 0.0, "{case:?}: {seen:?}");
}

/// B asks for no client certificate (no `client_ca`): A's alias is not honoured.
#[test]
fn no_alias_when_no_client_certificate_is_asked() {
    b_connects_itself(Case::NoClientCa);
}

/// B's `client_ca` did not sign A's certificate: A still connects (the client certificate
/// is optional), but is not aliased.
#[test]
fn no_alias_with_a_client_certificate_that_does_not_verify() {
    b_connects_itself(Case::ForeignClientCa);
}

/// A's Via sent-by (127.0.0.2) is not in its verified certificate (IP:127.0.0.1 only).
#[test]
fn no_alias_when_the_certificate_does_not_name_the_sent_by() {
    b_connects_itself(Case::SentByNotInCertificate);
}

/// `stox check-config` takes `[sip.tls] client_ca` naming a CA certificate, and refuses one
/// that holds no certificate usable as a trust anchor, naming `sip.tls.client_ca`.
#[test]
fn check_config_validates_client_ca() {
    let dir = temp_dir("clientca").expect("temp dir");
    let ca = TestCa::new(dir.path(), "check");
    let (cert, key) = ca.leaf("server", "IP:127.0.0.1");
    let config = |client_ca: &PathBuf| {
        format!(
            "[xmpp]\ncomponent = \"sip.localhost\"\nserver = \"127.0.0.1:5347\"\n\
             secret = \"s\"\nhome_domain = \"localhost\"\n\
             [sip]\nlisten = [\"udp:127.0.0.1:5060\", \"tls:127.0.0.1:5061\"]\n\
             [sip.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n\
             [admin]\nlisten = \"127.0.0.1:8080\"\ntoken = \"t\"\n\
             [store]\npath = \"./data\"\n",
            cert.display(),
            key.display(),
            client_ca.display()
        )
    };
    let path = dir.path().join("stox.toml");
    std::fs::write(&path, config(&ca.cert)).expect("write");
    let out = stox_tests::stox::check_config(&path).expect("check-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A certificate block that is not DER of a certificate, and a missing file.
    let bad = dir.path().join("bad-ca.pem");
    std::fs::write(
        &bad,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    for client_ca in [bad, dir.path().join("missing.pem")] {
        std::fs::write(&path, config(&client_ca)).expect("write");
        let out = stox_tests::stox::check_config(&path).expect("check-config");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}: {stderr}", client_ca.display());
        assert!(stderr.contains("sip.tls.client_ca"), "{stderr}");
    }
}

/// A call from B to A after the alias (RFC 5923 for INVITE dialogs): bob (libwebrtc, on B)
/// calls alice\40localhost@sip.b.localhost; B's INVITE, ACK and BYE go over the connection A
/// opened, A rings alice (libwebrtc), both hear each other's tone through the two gateways,
/// and still nobody ever connected to A's TLS port.
#[test]
fn a_call_goes_over_the_connection_a_opened() {
    use stox_tests::jingle_peer::{CallOptions, JinglePeer, PeerOptions};
    let mut p = setup(Case::Alias, true);
    let before = exchange(&mut p);
    assert_eq!(before.b_aliases, 1.0, "{before:?}");
    assert_eq!(before.to_a, 0, "{before:?}");

    let mut alice = JinglePeer::connect(&p.pa, "alice", PASSWORD, "call", PeerOptions::tone(880))
        .expect("alice's jingle peer");
    let mut bob = JinglePeer::connect(&p.pb, "bob", PASSWORD, "call", PeerOptions::tone(440))
        .expect("bob's jingle peer");
    let sid = bob
        .call("alice\\40localhost@sip.b.localhost", CallOptions::jmi())
        .expect("bob calls");
    let incoming = alice.expect_incoming(T).unwrap_or_else(|e| {
        panic!(
            "alice was never called: {e:#}\n--- A ---\n{}\n--- B ---\n{}",
            p.stox_a.log_tail(40),
            p.stox_b.log_tail(40)
        )
    });
    let alice_sid = incoming.sid().unwrap_or_default().to_string();
    bob.expect_event("accepted", &sid, T).unwrap_or_else(|e| {
        panic!(
            "bob's call was not accepted: {e:#}\n--- A ---\n{}\n--- B ---\n{}",
            p.stox_a.log_tail(40),
            p.stox_b.log_tail(40)
        )
    });
    bob.wait_connected(&sid, T).expect("bob's media connected");
    bob.wait_tone(&sid, 880.0, 30.0, 0.01, T)
        .expect("bob hears alice's tone");
    alice
        .wait_tone(&alice_sid, 440.0, 30.0, 0.01, T)
        .expect("alice hears bob's tone");
    bob.hangup(&sid).expect("bob hangs up");
    let ended = alice
        .expect_event("terminated", &alice_sid, T)
        .unwrap_or_else(|e| panic!("the BYE did not reach alice: {e:#}"));
    assert_eq!(ended.str("by"), Some("remote"), "{ended}");

    let after = seen(&p);
    assert_eq!(after.to_a, 0, "a connection to A's TLS port: {after:?}");
    assert_eq!(after.to_b, 1, "{after:?}");
    assert_eq!(after.b_opened, 0.0, "B opened a TLS connection: {after:?}");
    assert!(
        p.stox_b
            .log_tail(400)
            .contains("INVITE over a reused TLS connection (RFC 5923)"),
        "{}",
        p.stox_b.log_tail(60)
    );
}

//! RFC 3263 server location against a real DNS server (dnsmasq on loopback): with no
//! outbound proxy, stox finds the SIP server of a foreign domain through NAPTR → SRV →
//! A, falls over to the next SRV target when one cannot be reached (§4.3), and tells the
//! XMPP sender when a domain has no SIP server.
//!
//! ```text
//! dnsmasq: voip.test NAPTR SIP+D2T → _sip._tcp.voip.test SRV → pbx.voip.test:P (SIPp, TCP)
//! alice → bob\40voip.test@sip.localhost: SIPp gets MESSAGE sip:bob@voip.test over TCP
//! dnsmasq: no NAPTR for backup.test; _sip._tcp SRV prio 0 → dead port, prio 10 → SIPp
//! alice → bob\40backup.test@...: SIPp gets it (the dead target was tried first)
//! alice → bob\40nowhere.test@...: NXDOMAIN → alice gets remote-server-not-found
//! baresip bob with a certificate for voip.test only (SAN DNS:voip.test), on TLS:
//! dnsmasq: voip.test NAPTR SIPS+D2T → _sips._tcp.voip.test SRV → pbx.provider.test:TLS
//! alice → bob\40voip.test@...: MESSAGE sip:bob@voip.test over TLS, the certificate
//!   verified for voip.test (the SRV target's name is not in it)
//! alice → securebob@C, mapped to sips:bob@voip.test: the same, Request-URI sips:
//! dnsmasq: evil.test NAPTR SIPS+D2T → _sips._tcp.evil.test SRV → voip.test:TLS
//! alice → bob\40evil.test@...: the certificate does not name evil.test (only the SRV
//!   target's name) → alice gets an error; the open connection verified for voip.test is
//!   not reused; nothing reaches bob
//! dnsmasq: plain.test NAPTR SIP+D2U → _sip._udp.plain.test SRV → bob's UDP port
//! alice → plainbob@C, mapped to sips:bob@plain.test: no TLS server → an error, nothing
//!   sent in clear
//! ```

use std::net::TcpListener;
use std::time::{Duration, Instant};

use stox_tests::baresip::{Baresip, BaresipOptions, TracedSip};
use stox_tests::process::temp_dir;

use stox_tests::dnsmasq::{Dnsmasq, Zone};
use stox_tests::scenarios::World;
use stox_tests::sipp::{SippCommand, Transport};
use stox_tests::Sipp;

const T: Duration = Duration::from_secs(20);

fn world(dns: &Dnsmasq) -> World {
    World::start_with(&format!("[sip]\ndns_server = \"{}\"\n", dns.addr())).expect("world")
}

fn tcp_uas() -> Sipp {
    SippCommand::new("uas_message.xml")
        .template("STATUS", "200")
        .template("REASON", "OK")
        .transport(Transport::Tcp)
        .spawn()
        .expect("sipp uas")
}

#[test]
fn naptr_srv_a_leads_a_message_to_the_domains_server_over_tcp() {
    let uas = tcp_uas();
    let dns = Dnsmasq::start(
        &Zone::new()
            .naptr("voip.test", 10, 10, "SIP+D2T", "_sip._tcp.voip.test")
            .srv("_sip._tcp.voip.test", "pbx.voip.test", uas.port(), 0, 0)
            .a("pbx.voip.test", "127.0.0.1"),
    )
    .expect("dnsmasq");
    let mut w = world(&dns);
    let to = format!("bob\\40voip.test@{}", w.prosody.component());
    w.alice
        .send_raw(&format!(
            "<message to='{to}' type='chat' id='d1'><body>found by NAPTR</body></message>"
        ))
        .expect("send");
    let run = uas.wait(T).expect("sipp");
    let got = run.received_requests_unique();
    assert_eq!(got.len(), 1, "{}\n{}", run.summary(), w.stox.log_tail(40));
    assert_eq!(got[0].request_uri(), Some("sip:bob@voip.test"));
    assert_eq!(got[0].body_text(), "found by NAPTR");
    let via = got[0].header("Via").unwrap_or("");
    assert!(via.starts_with("SIP/2.0/TCP"), "Via: {via}");
    // The NAPTR → SRV → A chain is what stox asked, in that order.
    let queries = dns.queries();
    let position = |what: &str| {
        queries
            .iter()
            .position(|q| q.contains(what))
            .unwrap_or_else(|| panic!("no {what} query in {queries:#?}"))
    };
    assert!(position("query[NAPTR] voip.test") < position("query[SRV] _sip._tcp.voip.test"));
    assert!(position("query[SRV] _sip._tcp.voip.test") < position("query[A] pbx.voip.test"));
    // alice gets no error.
    let errors: Vec<_> = w
        .alice
        .drain(Duration::from_millis(500))
        .into_iter()
        .filter(|m| m.kind() == Some("error"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn an_unreachable_srv_target_falls_over_to_the_next_priority() {
    let uas = tcp_uas();
    // A port where nothing listens: bind, note, close.
    let dead = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let dns = Dnsmasq::start(
        &Zone::new()
            .srv("_sip._tcp.backup.test", "dead.backup.test", dead, 0, 0)
            .srv(
                "_sip._tcp.backup.test",
                "live.backup.test",
                uas.port(),
                10,
                0,
            )
            .a("dead.backup.test", "127.0.0.1")
            .a("live.backup.test", "127.0.0.1")
            .nxdomain("backup.test"),
    )
    .expect("dnsmasq");
    let mut w = world(&dns);
    let to = format!("bob\\40backup.test@{}", w.prosody.component());
    w.alice
        .send_raw(&format!(
            "<message to='{to}' type='chat' id='d2'><body>second choice</body></message>"
        ))
        .expect("send");
    let run = uas.wait(T).expect("sipp");
    let got = run.received_requests_unique();
    assert_eq!(got.len(), 1, "{}\n{}", run.summary(), w.stox.log_tail(40));
    assert_eq!(got[0].body_text(), "second choice");
    // The priority-0 target was tried first, and its failure logged (RFC 3263 §4.3).
    let log = w.stox.log_tail(400);
    assert!(
        log.lines()
            .any(|l| l.contains("trying the next one") && l.contains(&format!("127.0.0.1:{dead}"))),
        "{}",
        w.stox.log_tail(40)
    );
    let errors: Vec<_> = w
        .alice
        .drain(Duration::from_millis(500))
        .into_iter()
        .filter(|m| m.kind() == Some("error"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_domain_without_sip_server_bounces_with_remote_server_not_found() {
    let dns = Dnsmasq::start(&Zone::new().nxdomain("nowhere.test")).expect("dnsmasq");
    let mut w = world(&dns);
    let to = format!("bob\\40nowhere.test@{}", w.prosody.component());
    w.alice
        .send_raw(&format!(
            "<message to='{to}' type='chat' id='d3'><body>anyone?</body></message>"
        ))
        .expect("send");
    let err = w
        .alice
        .expect(T, |m| m.is_message() && m.kind() == Some("error"))
        .expect("an error bounce");
    assert_eq!(err.id(), Some("d3"), "{}", err.xml());
    assert_eq!(
        err.error_condition().as_deref(),
        Some("remote-server-not-found"),
        "{}",
        err.xml()
    );
    assert!(
        w.stox
            .log_tail(200)
            .contains("nowhere.test has no SIP server"),
        "the log says why: {}",
        w.stox.log_tail(40)
    );
}

/// The MESSAGEs with `body` that baresip received, waiting up to `wait` for one.
fn received_messages(bob: &Baresip, body: &str, wait: Duration) -> Vec<TracedSip> {
    let deadline = Instant::now() + wait;
    loop {
        let got: Vec<TracedSip> = bob
            .sip_trace()
            .into_iter()
            .filter(|t| t.message.method() == Some("MESSAGE") && t.message.body == body.as_bytes())
            .collect();
        if !got.is_empty() || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// RFC 3263 §4.1/§4.2 with TLS, RFC 5922 §4: a domain whose NAPTR offers only `SIPS+D2T`
/// is reached over TLS, and the certificate is checked against the domain of the URI,
/// not against the SRV target DNS led to; a domain whose SRV target merely *is* a name
/// the certificate holds is refused; a `sips:` target with no TLS server is not reached
/// in clear.
#[test]
fn a_domain_located_to_tls_is_reached_over_tls_verified_for_the_domain() {
    let certs = temp_dir("certs").expect("temp dir");
    let (cert, key) = stox_tests::certs::self_signed_for(certs.path(), "voip", &["DNS:voip.test"]);
    let mut options = BaresipOptions::new("bob", 440.0);
    options.tls_certificate = Some(stox_tests::certs::bundle(&cert, &key));
    options.tls_ca = Some(cert.clone());
    options.sip_trace = true;
    let bob = Baresip::start(options).expect("baresip");
    let dns = Dnsmasq::start(
        &Zone::new()
            .naptr("voip.test", 10, 10, "SIPS+D2T", "_sips._tcp.voip.test")
            .srv(
                "_sips._tcp.voip.test",
                "pbx.provider.test",
                bob.tls_port(),
                0,
                0,
            )
            .a("pbx.provider.test", "127.0.0.1")
            .naptr("evil.test", 10, 10, "SIPS+D2T", "_sips._tcp.evil.test")
            .srv("_sips._tcp.evil.test", "voip.test", bob.tls_port(), 0, 0)
            .a("voip.test", "127.0.0.1")
            .naptr("plain.test", 10, 10, "SIP+D2U", "_sip._udp.plain.test")
            .srv(
                "_sip._udp.plain.test",
                "pbx.plain.test",
                bob.sip_port(),
                0,
                0,
            )
            .a("pbx.plain.test", "127.0.0.1"),
    )
    .expect("dnsmasq");
    let mut w = World::start_with(&format!(
        "[sip]\ndns_server = \"{}\"\n[sip.tls]\nca = \"{}\"\n",
        dns.addr(),
        cert.display()
    ))
    .expect("world");
    let component = w.prosody.component().to_string();
    let map = |jid: &str, sip: &str| {
        let r = w
            .stox
            .admin_request(
                "POST",
                "/api/v1/mappings",
                Some(&serde_json::json!({ "jid": jid, "sip": sip }).to_string()),
            )
            .expect("admin");
        assert_eq!(r.status, 201, "{}", r.body);
    };
    map(&format!("securebob@{component}"), "sips:bob@voip.test");
    map(&format!("plainbob@{component}"), "sips:bob@plain.test");

    // sip:bob@voip.test: NAPTR SIPS+D2T → SRV → A, then TLS verified for voip.test.
    w.alice
        .send_message(
            &format!("bob\\40voip.test@{component}"),
            "over TLS by NAPTR",
        )
        .expect("send");
    let got = received_messages(&bob, "over TLS by NAPTR", T);
    assert_eq!(got.len(), 1, "{}\n{}", bob.context(), w.stox.log_tail(40));
    assert_eq!(got[0].transport, "TLS");
    assert!(
        got[0].dst.ends_with(&format!(":{}", bob.tls_port())),
        "{}",
        got[0].dst
    );
    assert_eq!(got[0].message.request_uri(), Some("sip:bob@voip.test"));
    let via = got[0].message.header("Via").unwrap_or_default().to_string();
    assert!(via.starts_with("SIP/2.0/TLS "), "Via {via}");
    let queries = dns.queries();
    let position = |what: &str| {
        queries
            .iter()
            .position(|q| q.contains(what))
            .unwrap_or_else(|| panic!("no {what} query in {queries:#?}"))
    };
    assert!(position("query[NAPTR] voip.test") < position("query[SRV] _sips._tcp.voip.test"));
    assert!(position("query[SRV] _sips._tcp.voip.test") < position("query[A] pbx.provider.test"));

    // sips:bob@voip.test (a mapping): located for TLS only, the same server and name.
    w.alice
        .send_message(&format!("securebob@{component}"), "sips by NAPTR")
        .expect("send");
    let got = received_messages(&bob, "sips by NAPTR", T);
    assert_eq!(got.len(), 1, "{}\n{}", bob.context(), w.stox.log_tail(40));
    assert_eq!(got[0].transport, "TLS");
    assert_eq!(got[0].message.request_uri(), Some("sips:bob@voip.test"));
    let errors: Vec<String> = w
        .alice
        .drain(Duration::from_millis(500))
        .into_iter()
        .filter(|m| m.kind() == Some("error"))
        .map(|m| m.xml().to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");

    // evil.test → SRV target voip.test: the certificate names the SRV target, not the
    // domain asked for. The connection already verified for voip.test (same address) is not
    // reused for it either.
    w.alice
        .send_raw(&format!(
            "<message to='bob\\40evil.test@{component}' type='chat' id='evil'>\
             <body>wrong name</body></message>"
        ))
        .expect("send");
    let err = w
        .alice
        .expect(T, |m| m.kind() == Some("error") && m.id() == Some("evil"))
        .unwrap_or_else(|e| panic!("no error for evil.test: {e:#}\n{}", w.stox.log_tail(40)));
    assert!(err.error_condition().is_some(), "{}", err.xml());
    assert!(
        w.stox.log_tail(400).contains("evil.test"),
        "the log names the failing name\n{}",
        w.stox.log_tail(40)
    );

    // sips:bob@plain.test: only a UDP server; never reached in clear.
    w.alice
        .send_raw(&format!(
            "<message to='plainbob@{component}' type='chat' id='plain'>\
             <body>must not leak</body></message>"
        ))
        .expect("send");
    let err = w
        .alice
        .expect(T, |m| m.kind() == Some("error") && m.id() == Some("plain"))
        .unwrap_or_else(|e| panic!("no error for plain.test: {e:#}\n{}", w.stox.log_tail(40)));
    assert!(err.error_condition().is_some(), "{}", err.xml());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        received_messages(&bob, "wrong name", Duration::ZERO).is_empty()
            && !bob.log_contains("wrong name"),
        "evil.test reached bob\n{}",
        bob.context()
    );
    assert!(
        received_messages(&bob, "must not leak", Duration::ZERO).is_empty()
            && !bob.log_contains("must not leak"),
        "a sips: target was reached without TLS\n{}",
        bob.context()
    );
}

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
//! ```

use std::net::TcpListener;
use std::time::Duration;

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

//! The RFC 3263 procedure against fixed zones (the real resolver meets a real DNS server
//! in `tests/tests/dns.rs`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use super::*;

#[derive(Default)]
struct Zone {
    naptr: HashMap<String, Vec<Naptr>>,
    srv: HashMap<String, Vec<Srv>>,
    ip: HashMap<String, Vec<IpAddr>>,
    failing: Vec<String>,
    asked: Mutex<Vec<String>>,
}

impl Zone {
    fn naptr(mut self, name: &str, order: u16, pref: u16, service: &str, repl: &str) -> Self {
        self.naptr.entry(name.into()).or_default().push(Naptr {
            order,
            preference: pref,
            flags: "s".into(),
            service: service.into(),
            replacement: repl.into(),
        });
        self
    }
    fn srv(mut self, name: &str, priority: u16, weight: u16, port: u16, target: &str) -> Self {
        self.srv.entry(name.into()).or_default().push(Srv {
            priority,
            weight,
            port,
            target: target.into(),
        });
        self
    }
    fn a(mut self, name: &str, last: u8) -> Self {
        self.ip
            .entry(name.into())
            .or_default()
            .push(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)));
        self
    }
    fn fail(mut self, name: &str) -> Self {
        self.failing.push(name.into());
        self
    }
    fn check(&self, kind: &str, name: &str) -> Result<(), DnsFailure> {
        self.asked
            .lock()
            .expect("lock")
            .push(format!("{kind} {name}"));
        if self.failing.iter().any(|f| f == name) {
            return Err(DnsFailure("SERVFAIL".into()));
        }
        Ok(())
    }
    fn asked(&self) -> Vec<String> {
        self.asked.lock().expect("lock").clone()
    }
}

impl Dns for Zone {
    async fn naptr(&self, name: &str) -> Result<Vec<Naptr>, DnsFailure> {
        self.check("NAPTR", name)?;
        Ok(self.naptr.get(name).cloned().unwrap_or_default())
    }
    async fn srv(&self, name: &str) -> Result<Vec<Srv>, DnsFailure> {
        self.check("SRV", name)?;
        Ok(self.srv.get(name).cloned().unwrap_or_default())
    }
    async fn ip(&self, name: &str) -> Result<Vec<IpAddr>, DnsFailure> {
        self.check("A", name)?;
        Ok(self.ip.get(name).cloned().unwrap_or_default())
    }
}

const ALL: &[Proto] = &[Proto::Udp, Proto::Tcp, Proto::Tls];
const PLAIN: &[Proto] = &[Proto::Udp, Proto::Tcp];

fn run(zone: &Zone, uri: &str, supported: &[Proto]) -> Result<Vec<Target>, LocateError> {
    let uri: SipUri = uri.parse().expect("uri");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // Deterministic "random": always the lowest pick, so order is by weight-0 first,
    // then list order.
    rt.block_on(locate(zone, &uri, supported, &mut |_| 0))
}

fn show(targets: &[Target]) -> Vec<String> {
    targets
        .iter()
        .map(|t| format!("{} {} {}", t.proto, t.addr, t.host))
        .collect()
}

#[test]
fn numeric_host_uses_udp_or_tls_and_asks_nothing() {
    let z = Zone::default();
    assert_eq!(
        show(&run(&z, "sip:bob@127.0.0.9", ALL).expect("ok")),
        ["UDP 127.0.0.9:5060 127.0.0.9"]
    );
    assert_eq!(
        show(&run(&z, "sips:bob@127.0.0.9", ALL).expect("ok")),
        ["TLS 127.0.0.9:5061 127.0.0.9"]
    );
    assert_eq!(
        show(&run(&z, "sip:bob@127.0.0.9:5070;transport=tcp", ALL).expect("ok")),
        ["TCP 127.0.0.9:5070 127.0.0.9"]
    );
    assert_eq!(
        show(&run(&z, "sip:bob@[::1]:5071", ALL).expect("ok")),
        ["UDP [::1]:5071 ::1"]
    );
    assert!(z.asked().is_empty());
}

#[test]
fn explicit_port_means_a_records_only() {
    let z = Zone::default()
        .a("pbx.example", 7)
        .srv("_sip._udp.pbx.example", 0, 0, 9, "x");
    assert_eq!(
        show(&run(&z, "sip:bob@pbx.example:5090", ALL).expect("ok")),
        ["UDP 127.0.0.7:5090 pbx.example"]
    );
    assert_eq!(z.asked(), ["A pbx.example"]);
}

#[test]
fn naptr_then_srv_then_a() {
    let z = Zone::default()
        .naptr("example.net", 10, 20, "SIP+D2U", "_sip._udp.example.net")
        .naptr("example.net", 10, 10, "SIP+D2T", "_sip._tcp.example.net")
        .srv("_sip._tcp.example.net", 0, 0, 5070, "tcp.example.net")
        .srv("_sip._udp.example.net", 0, 0, 5080, "udp.example.net")
        .a("tcp.example.net", 2)
        .a("udp.example.net", 3);
    // Preference 10 (TCP) before 20 (UDP).
    assert_eq!(
        show(&run(&z, "sip:bob@example.net", ALL).expect("ok")),
        [
            "TCP 127.0.0.2:5070 tcp.example.net",
            "UDP 127.0.0.3:5080 udp.example.net"
        ]
    );
    assert_eq!(
        z.asked(),
        [
            "NAPTR example.net",
            "SRV _sip._tcp.example.net",
            "A tcp.example.net",
            "SRV _sip._udp.example.net",
            "A udp.example.net"
        ]
    );
}

#[test]
fn naptr_of_a_higher_order_is_not_used_when_a_lower_one_matches() {
    let z = Zone::default()
        .naptr("example.net", 20, 0, "SIP+D2U", "_sip._udp.example.net")
        .naptr("example.net", 10, 0, "SIP+D2T", "_sip._tcp.example.net")
        .srv("_sip._tcp.example.net", 0, 0, 5070, "tcp.example.net")
        .srv("_sip._udp.example.net", 0, 0, 5080, "udp.example.net")
        .a("tcp.example.net", 2)
        .a("udp.example.net", 3);
    assert_eq!(
        show(&run(&z, "sip:bob@example.net", ALL).expect("ok")),
        ["TCP 127.0.0.2:5070 tcp.example.net"]
    );
}

#[test]
fn unsupported_naptr_services_are_skipped() {
    // Only TLS is offered by NAPTR, and stox here has no TLS: the NAPTR set has nothing
    // usable, so SRV queries for what stox supports follow (RFC 3263 §4.1).
    let z = Zone::default()
        .naptr("example.net", 10, 0, "SIPS+D2T", "_sips._tcp.example.net")
        .naptr("example.net", 10, 0, "E2U+sip", "whatever.example.net")
        .srv("_sip._tcp.example.net", 0, 0, 5070, "tcp.example.net")
        .a("tcp.example.net", 2);
    assert_eq!(
        show(&run(&z, "sip:bob@example.net", PLAIN).expect("ok")),
        ["TCP 127.0.0.2:5070 tcp.example.net"]
    );
    assert_eq!(
        z.asked(),
        [
            "NAPTR example.net",
            "SRV _sip._udp.example.net",
            "SRV _sip._tcp.example.net",
            "A tcp.example.net"
        ]
    );
}

#[test]
fn sips_uses_only_secure_services() {
    let z = Zone::default()
        .naptr("example.net", 10, 0, "SIP+D2U", "_sip._udp.example.net")
        .naptr("example.net", 10, 5, "SIPS+D2T", "_sips._tcp.example.net")
        .srv("_sip._udp.example.net", 0, 0, 5080, "udp.example.net")
        .srv("_sips._tcp.example.net", 0, 0, 5061, "tls.example.net")
        .a("udp.example.net", 3)
        .a("tls.example.net", 4);
    assert_eq!(
        show(&run(&z, "sips:bob@example.net", ALL).expect("ok")),
        ["TLS 127.0.0.4:5061 tls.example.net"]
    );
    // Without TLS support, a sips: URI has nowhere to go.
    assert!(matches!(
        run(&z, "sips:bob@example.net", PLAIN),
        Err(LocateError::NotFound { .. })
    ));
}

#[test]
fn without_naptr_srv_for_each_transport_then_a_with_default_port() {
    let z = Zone::default()
        .srv("_sip._udp.example.org", 0, 0, 5090, "sip.example.org")
        .a("sip.example.org", 5);
    assert_eq!(
        show(&run(&z, "sip:bob@example.org", PLAIN).expect("ok")),
        ["UDP 127.0.0.5:5090 sip.example.org"]
    );
    let z = Zone::default().a("example.org", 6);
    assert_eq!(
        show(&run(&z, "sip:bob@example.org", PLAIN).expect("ok")),
        ["UDP 127.0.0.6:5060 example.org"]
    );
    assert_eq!(
        z.asked(),
        [
            "NAPTR example.org",
            "SRV _sip._udp.example.org",
            "SRV _sip._tcp.example.org",
            "A example.org"
        ]
    );
    assert_eq!(
        show(&run(&z, "sips:bob@example.org", ALL).expect("ok")),
        ["TLS 127.0.0.6:5061 example.org"]
    );
}

#[test]
fn transport_parameter_goes_straight_to_its_srv() {
    let z = Zone::default()
        .srv("_sip._tcp.example.org", 0, 0, 5071, "t.example.org")
        .a("t.example.org", 8);
    assert_eq!(
        show(&run(&z, "sip:bob@example.org;transport=TCP", PLAIN).expect("ok")),
        ["TCP 127.0.0.8:5071 t.example.org"]
    );
    assert_eq!(z.asked(), ["SRV _sip._tcp.example.org", "A t.example.org"]);
    // A transport stox lacks, or one that is not a transport: not found.
    assert!(run(&z, "sip:bob@example.org;transport=tls", PLAIN).is_err());
    assert!(run(&z, "sip:bob@example.org;transport=sctp", ALL).is_err());
    assert!(run(&z, "sips:bob@example.org;transport=udp", ALL).is_err());
}

#[test]
fn srv_target_dot_means_not_offered() {
    let z = Zone::default()
        .srv("_sip._udp.example.org", 0, 0, 0, ".")
        .a("example.org", 6);
    // The SRV answer exists (the service is explicitly not offered), so no A fallback.
    assert!(matches!(
        run(&z, "sip:bob@example.org", &[Proto::Udp]),
        Err(LocateError::NotFound { .. })
    ));
}

#[test]
fn dns_failures_are_reported_not_taken_as_absence() {
    let z = Zone::default().fail("example.org");
    let e = run(&z, "sip:bob@example.org", PLAIN).expect_err("fails");
    assert!(matches!(e, LocateError::Dns { .. }), "{e}");
    assert!(e.to_string().contains("SERVFAIL"));
    assert_eq!(
        run(&Zone::default(), "sip:bob@nowhere.example", PLAIN),
        Err(LocateError::NotFound {
            host: "nowhere.example".into(),
            transports: "UDP/TCP".into()
        })
    );
}

#[test]
fn srv_order_is_priority_then_weight() {
    let s = |priority, weight, target: &str| Srv {
        priority,
        weight,
        port: 1,
        target: target.into(),
    };
    let srvs = vec![s(20, 0, "d"), s(10, 60, "b"), s(10, 0, "a"), s(10, 40, "c")];
    // random(total) = 0: the first record with a running sum >= 0 each time, i.e. the
    // weight-0 one first, then the others in list order.
    let order = |pick: &mut dyn FnMut(u32) -> u32| {
        order_srv(srvs.clone(), &mut |n| pick(n))
            .into_iter()
            .map(|s| s.target)
            .collect::<Vec<_>>()
    };
    assert_eq!(order(&mut |_| 0), ["a", "b", "c", "d"]);
    // The largest pick each time: the last record of the group whose running sum
    // reaches the total.
    assert_eq!(order(&mut |n| n), ["c", "b", "a", "d"]);
    // Over many draws, weight 60 comes first about 60 % of the time.
    let mut seed = 12345u64;
    let mut b_first = 0;
    for _ in 0..10_000 {
        let mut rng = |n: u32| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % (u64::from(n) + 1)) as u32
        };
        if order_srv(vec![s(10, 60, "b"), s(10, 40, "c")], &mut rng)[0].target == "b" {
            b_first += 1;
        }
    }
    assert!((5_700..6_300).contains(&b_first), "{b_first}");
}

#[test]
fn transport_parameters_and_ports() {
    for (text, proto) in [
        ("udp", Proto::Udp),
        ("TCP", Proto::Tcp),
        ("tls", Proto::Tls),
        ("ws", Proto::Ws),
        ("WSS", Proto::Wss),
    ] {
        assert_eq!(Proto::from_param(text), Some(proto));
    }
    assert_eq!(Proto::from_param("sctp"), None);
    assert_eq!(Proto::Tls.default_port(), 5061);
    assert_eq!(Proto::Udp.default_port(), 5060);
    for (service, proto) in [
        ("SIP+D2U", Proto::Udp),
        ("sip+d2t", Proto::Tcp),
        ("SIPS+D2T", Proto::Tls),
        ("SIP+D2W", Proto::Ws),
        ("SIPS+D2W", Proto::Wss),
    ] {
        assert_eq!(Proto::from_naptr_service(service).map(|p| p.0), Some(proto));
    }
    assert_eq!(Proto::from_naptr_service("E2U+sip"), None);
}

//! End-to-end resilience and durability of SIP → XMPP messages through stox: the durable
//! outbox and the reconnecting XEP-0114 component link (`gateway/src/core/mod.rs` "Nothing
//! lost while the link is down", `xmpp/src/link.rs`). Real Prosody (with `mod_offline`, so a
//! message for a user who is reconnecting is stored, RFC 6121 §8.5.2.1.1), real slixmpp,
//! real SIPp; stox is the `stox` binary.
//!
//! The promise under test: a SIP MESSAGE answered `200 OK` or `202 Accepted` (RFC 3428 §7)
//! reaches the XMPP user at least once, whatever happens to the component link or to stox
//! itself; duplicates are allowed (same stanza id), loss is not. While the link is down new
//! MESSAGEs are answered `202` and delivered in order after it is back; a stox killed with
//! SIGKILL delivers its outbox at the next start. A second stox with the same component
//! domain gets `<conflict/>` (XEP-0114 §3.1, Prosody's `kick_new` policy) and backs off.
//!
//! Every test starts its own Prosody, stox and SIPp on free loopback ports; the link's
//! reconnect backoff is capped at 1 s (`[xmpp] reconnect_max_secs`) to keep them short.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::thread;
use std::time::{Duration, Instant};

use stox_tests::{
    ClientOptions, Prosody, ProsodyOptions, Sipp, SippRun, Stox, XmppClient, PASSWORD,
};

/// Caps the component link's reconnect backoff at 1 s.
const FAST_RECONNECT: &str = "[xmpp]\nreconnect_max_secs = 1\n";
const T: Duration = Duration::from_secs(10);

/// Reads `alice`'s messages whose body is `{prefix}N` until `n` distinct N have arrived
/// (or `timeout` has passed), then keeps reading for `settle` to catch late duplicates.
/// Returns every N in arrival order, duplicates included. Panics on an error stanza.
fn receive_numbered(
    alice: &mut XmppClient,
    prefix: &str,
    n: usize,
    timeout: Duration,
    settle: Duration,
) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    let mut arrived = Vec::new();
    let mut distinct = BTreeSet::new();
    let mut settle_until: Option<Instant> = None;
    loop {
        let until = settle_until.unwrap_or(deadline);
        let left = until.saturating_duration_since(Instant::now());
        let Ok(stanza) = alice.expect(left, |m| {
            m.is_message() && m.body().is_some_and(|b| b.starts_with(prefix))
        }) else {
            break;
        };
        assert_ne!(stanza.kind(), Some("error"), "{}", stanza.xml());
        let body = stanza.body().unwrap_or_default();
        let number: u32 = body[prefix.len()..]
            .parse()
            .unwrap_or_else(|_| panic!("unexpected body {body:?}"));
        arrived.push(number);
        distinct.insert(number);
        if distinct.len() >= n && settle_until.is_none() {
            settle_until = Some(Instant::now() + settle);
        }
    }
    arrived
}

/// The numbers in `arrived` in order of first arrival (duplicates removed).
fn first_arrivals(arrived: &[u32]) -> Vec<u32> {
    let mut seen = BTreeSet::new();
    arrived
        .iter()
        .copied()
        .filter(|n| seen.insert(*n))
        .collect()
}

/// Asserts SIPp sent `n` MESSAGEs with bodies `{prefix}1..=n`, each answered with a final
/// status in `allowed`; returns how many got each status.
fn assert_outcomes(run: &SippRun, prefix: &str, n: usize, allowed: &[u16]) -> BTreeMap<u16, usize> {
    let outcomes = run.sent_requests_outcome();
    assert_eq!(
        outcomes.len(),
        n,
        "SIPp sent {} MESSAGEs\n{}",
        outcomes.len(),
        run.summary()
    );
    let mut counts = BTreeMap::new();
    for (i, (call_id, body, status)) in outcomes.iter().enumerate() {
        assert_eq!(body, &format!("{prefix}{}", i + 1), "Call-ID {call_id}");
        match status {
            Some(s) if allowed.contains(s) => *counts.entry(*s).or_insert(0) += 1,
            other => panic!(
                "MESSAGE {body:?} (Call-ID {call_id}) got {other:?}, expected one of {allowed:?}\n{}",
                run.summary()
            ),
        }
    }
    assert_eq!(run.failed, 0, "{}", run.summary());
    counts
}

/// Asserts `GET /health` answers `status` with `"xmpp_link": link`.
fn assert_health(stox: &Stox, status: u16, link: &str) {
    let health = stox.admin_get("/health").expect("GET /health");
    assert_eq!(health.status, status, "/health: {}", health.body);
    let json = health.json().expect("/health is JSON");
    assert_eq!(json["xmpp_link"], link, "/health: {}", health.body);
}

/// start prosody (mod_offline), stox (reconnect ≤ 1 s), alice@localhost/phone (slixmpp,
///   reconnecting every 0.2 s when her stream closes)
/// sipp UAC sends 300 MESSAGEs sip:alice@localhost at 100/s, bodies "burst #1".."burst #300"
/// after ~1 s: restart prosody (stox's link and alice's stream drop; both reconnect)
/// expect every SIPp MESSAGE got 200 or 202 (none failed or timed out)
/// expect alice saw a second session, and received every body at least once
///   (duplicates are allowed: at least once; their count is printed)
#[test]
fn prosody_restart_mid_stream_loses_no_message() {
    const N: usize = 300;
    let mut prosody = Prosody::start(ProsodyOptions::default()).expect("prosody");
    let stox = Stox::start(&prosody, FAST_RECONNECT).expect("stox");
    let options = ClientOptions {
        reconnect: true,
        ..ClientOptions::default()
    };
    let mut alice =
        XmppClient::connect_with(&prosody, "alice", PASSWORD, "phone", options).expect("alice");

    let sipp = Sipp::uac_message_numbered(stox.sip_addr(), "alice", "localhost", "burst #")
        .calls(N as u32)
        .rate(100)
        .timeout(Duration::from_secs(40))
        .spawn()
        .expect("sipp uac");
    thread::sleep(Duration::from_secs(1));
    let restart_at = Instant::now();
    prosody.restart().expect("prosody restart");
    eprintln!("prosody restarted in {:?}", restart_at.elapsed());
    let run = sipp.wait(Duration::from_secs(50)).expect("sipp result");
    let statuses = assert_outcomes(&run, "burst #", N, &[200, 202]);
    eprintln!("SIPp final statuses: {statuses:?}");

    alice
        .wait_sessions(2, Duration::from_secs(20))
        .expect("alice is back online after the restart");
    let arrived = receive_numbered(
        &mut alice,
        "burst #",
        N,
        Duration::from_secs(20),
        Duration::from_millis(500),
    );
    let distinct: BTreeSet<u32> = arrived.iter().copied().collect();
    let missing: Vec<u32> = (1..=N as u32).filter(|n| !distinct.contains(n)).collect();
    eprintln!(
        "alice received {} messages, {} distinct, {} duplicates",
        arrived.len(),
        distinct.len(),
        arrived.len() - distinct.len()
    );
    assert!(
        missing.is_empty(),
        "{} of {N} messages lost: {missing:?}\n--- stox log tail ---\n{}",
        missing.len(),
        stox.log_tail(40)
    );
}

/// start prosody (mod_offline), stox (reconnect ≤ 1 s)
/// stop prosody; expect /health 503, "xmpp_link": "down"
/// sipp UAC sends 20 MESSAGEs sip:alice@localhost, bodies "stored #1".."stored #20"
/// expect each answered 202 Accepted
/// start prosody again (same data dir); expect /health back to 200, "xmpp_link": "up"
/// alice@localhost/phone logs in
/// expect alice receives "stored #1".."stored #20", in order
#[test]
fn messages_sent_while_link_is_down_are_stored_and_delivered_in_order() {
    const N: usize = 20;
    let mut prosody = Prosody::start(ProsodyOptions::default()).expect("prosody");
    let mut stox = Stox::start(&prosody, FAST_RECONNECT).expect("stox");
    assert_health(&stox, 200, "up");

    prosody.stop();
    stox.wait_unhealthy(T)
        .expect("/health turns 503 when prosody stops");
    assert_health(&stox, 503, "down");

    let run = Sipp::uac_message_numbered(stox.sip_addr(), "alice", "localhost", "stored #")
        .calls(N as u32)
        .rate(50)
        .timeout(Duration::from_secs(20))
        .run()
        .expect("sipp uac");
    assert_outcomes(&run, "stored #", N, &[202]);

    prosody.restart().expect("prosody start");
    stox.wait_healthy(T).expect("/health back to 200");
    assert_health(&stox, 200, "up");
    let mut alice = XmppClient::connect(&prosody, "alice", PASSWORD, "phone").expect("alice");
    let arrived = receive_numbered(&mut alice, "stored #", N, T, Duration::from_millis(300));
    let expected: Vec<u32> = (1..=N as u32).collect();
    assert_eq!(
        first_arrivals(&arrived),
        expected,
        "arrival order (duplicates included): {arrived:?}\n--- stox log tail ---\n{}",
        stox.log_tail(40)
    );
}

/// start prosody (mod_offline), stox (reconnect ≤ 1 s)
/// stop prosody; sipp UAC sends 10 MESSAGEs, bodies "durable #1".."durable #10"
/// expect each answered 202 Accepted
/// kill -9 stox; start stox again on the same store (prosody still down: /health 503)
/// start prosody; expect stox's /health 200
/// alice@localhost/phone logs in
/// expect alice receives "durable #1".."durable #10", in order
#[test]
fn outbox_survives_sigkill_and_is_delivered_at_next_start() {
    const N: usize = 10;
    let mut prosody = Prosody::start(ProsodyOptions::default()).expect("prosody");
    let mut stox = Stox::start(&prosody, FAST_RECONNECT).expect("stox");

    prosody.stop();
    stox.wait_unhealthy(T)
        .expect("/health turns 503 when prosody stops");
    let run = Sipp::uac_message_numbered(stox.sip_addr(), "alice", "localhost", "durable #")
        .calls(N as u32)
        .rate(50)
        .timeout(Duration::from_secs(20))
        .run()
        .expect("sipp uac");
    assert_outcomes(&run, "durable #", N, &[202]);

    let status = stox.kill().expect("stox was running");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    stox.restart_without_link().expect("stox starts again");
    assert_health(&stox, 503, "down");

    prosody.restart().expect("prosody start");
    stox.wait_healthy(T)
        .expect("/health 200 once prosody is back");
    let mut alice = XmppClient::connect(&prosody, "alice", PASSWORD, "phone").expect("alice");
    let arrived = receive_numbered(&mut alice, "durable #", N, T, Duration::from_millis(300));
    let expected: Vec<u32> = (1..=N as u32).collect();
    assert_eq!(
        first_arrivals(&arrived),
        expected,
        "arrival order (duplicates included): {arrived:?}\n--- stox log tail ---\n{}",
        stox.log_tail(40)
    );
}

/// start prosody, stox #1, alice@localhost/phone
/// start stox #2 with the same component domain and secret
/// expect prosody refuses #2 with <conflict/> (kick_new), #1 stays connected
/// after ~3 s: expect #2's /health 503 "xmpp_link": "down", its log names the conflict,
///   and prosody saw at most 3 attempts of #2 (it backs off ≥ 10 s, it does not spin)
/// sipp UAC sends MESSAGE sip:alice@localhost to #1
/// expect alice receives it, sipp got 200; #1's /health 200
#[test]
fn second_stox_with_same_domain_gets_conflict_and_backs_off() {
    let prosody = Prosody::start(ProsodyOptions::without_offline()).expect("prosody");
    let first = Stox::start(&prosody, "").expect("stox #1");
    let mut alice = XmppClient::connect(&prosody, "alice", PASSWORD, "phone").expect("alice");

    let started = Instant::now();
    let second = Stox::start_without_link(&prosody, "").expect("stox #2");
    thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));

    assert_health(&second, 503, "down");
    let second_log = std::fs::read_to_string(second.log_path()).unwrap_or_default();
    assert!(
        second_log.to_ascii_lowercase().contains("conflict"),
        "stox #2 log does not mention the conflict:\n{}",
        second.log_tail(30)
    );
    let prosody_log = std::fs::read_to_string(prosody.log_path()).unwrap_or_default();
    let refusals = prosody_log
        .lines()
        .filter(|l| l.contains("Second component attempted to connect"))
        .count();
    eprintln!(
        "prosody refused {refusals} component connection(s) in {:?}",
        started.elapsed()
    );
    assert!(
        (1..=3).contains(&refusals),
        "stox #2 made {refusals} connection attempts in {:?}\n--- stox #2 log ---\n{}",
        started.elapsed(),
        second.log_tail(30)
    );

    let run = Sipp::uac_message(first.sip_addr(), "alice", "localhost", "still here")
        .timeout(Duration::from_secs(15))
        .run()
        .expect("sipp uac");
    let got = alice
        .expect(T, |m| {
            m.is_message() && m.body().as_deref() == Some("still here")
        })
        .expect("alice receives the MESSAGE through stox #1");
    assert_ne!(got.kind(), Some("error"), "{}", got.xml());
    assert_eq!(run.final_status(), Some(200), "{}", run.summary());
    assert_health(&first, 200, "up");
}

//! The media relay over loopback, without XMPP or SIP signalling: a second str0m instance plays
//! the libwebrtc XMPP client (full ICE, DTLS-SRTP, RFC 8842 roles) and a plain UDP socket plays
//! the SIP phone (RFC 3550 RTP). Asserts what a listener would notice: every packet arrives, in
//! order, with the payload type and SSRC of its leg, and nothing leaks before DTLS completes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stox_gateway::media::relay::{
    AudioCodec, CallId, CallMedia, CallStarted, CloseReason, Leg, PtMap, PtPair, Relay,
    RelayConfig, RelayEvent, RelayEventKind, RelayEvents, RemoteCandidate, Setup, SipLegParams,
    XmppLegParams, XmppRemote,
};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceCreds, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const XMPP_OPUS: u8 = 111;
const XMPP_TEL: u8 = 126;
const SIP_OPUS: u8 = 96;
const SIP_TEL: u8 = 101;

fn pt_map() -> PtMap {
    PtMap::new(vec![
        PtPair::new(AudioCodec::Opus, XMPP_OPUS, SIP_OPUS),
        PtPair::new(AudioCodec::TelephoneEvent, XMPP_TEL, SIP_TEL),
    ])
    .unwrap()
}

fn relay(port_min: u16) -> (Relay, EventLog) {
    let (relay, rx) = Relay::new(RelayConfig {
        address: "127.0.0.1".parse().unwrap(),
        port_min,
        port_max: port_min + 99,
    })
    .unwrap();
    (relay, EventLog { rx, seen: vec![] })
}

/// Relay events, waited for per call (other calls' events are kept for later).
struct EventLog {
    rx: RelayEvents,
    seen: Vec<RelayEvent>,
}

impl EventLog {
    async fn wait(
        &mut self,
        call: CallId,
        what: &str,
        pred: impl Fn(&RelayEventKind) -> bool,
    ) -> RelayEventKind {
        if let Some(i) = self
            .seen
            .iter()
            .position(|e| e.call == call && pred(&e.kind))
        {
            return self.seen.remove(i).kind;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let e = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out waiting for {what} on {call}; seen {:?}",
                        self.seen
                    )
                })
                .expect("relay event stream ended");
            if e.call == call && pred(&e.kind) {
                return e.kind;
            }
            self.seen.push(e);
        }
    }

    fn seen_for(&self, call: CallId) -> Vec<&RelayEventKind> {
        self.seen
            .iter()
            .filter(|e| e.call == call)
            .map(|e| &e.kind)
            .collect()
    }
}

/// A received RTP packet, as either side saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    pt: u8,
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker: bool,
    payload: Vec<u8>,
}

enum PeerCmd {
    Send {
        pt: u8,
        seq: u64,
        ts: u32,
        payload: Vec<u8>,
    },
}

/// The XMPP client: a str0m session over a loopback socket, driven by its own task.
struct Peer {
    ufrag: String,
    pwd: String,
    fingerprint: String,
    candidate: SocketAddr,
    cmds: mpsc::UnboundedSender<PeerCmd>,
    got: mpsc::UnboundedReceiver<Got>,
    connected: mpsc::UnboundedReceiver<()>,
}

impl Peer {
    fn remote(&self, setup: Setup) -> XmppRemote {
        let (hash, hex) = self.fingerprint.split_once(' ').unwrap();
        XmppRemote {
            ufrag: self.ufrag.clone(),
            pwd: self.pwd.clone(),
            fingerprint_hash: hash.into(),
            fingerprint: hex.into(),
            setup,
            ssrcs: vec![],
            candidates: vec![],
        }
    }

    fn candidate(&self) -> RemoteCandidate {
        RemoteCandidate {
            foundation: "1".into(),
            component: 1,
            protocol: "udp".into(),
            priority: 2_130_706_431,
            addr: self.candidate,
            kind: "host".into(),
            related: None,
        }
    }

    fn send(&self, pt: u8, seq: u64, ts: u32, payload: Vec<u8>) {
        let _ = self.cmds.send(PeerCmd::Send {
            pt,
            seq,
            ts,
            payload,
        });
    }
}

/// Creates the client's session; `start` later gives it the relay's description.
async fn peer(controlling: bool) -> (Peer, PeerStarter) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let mut cfg = Rtc::builder().set_rtp_mode(true).clear_codecs();
    cfg.codec_config().add_config(
        Pt::from(XMPP_OPUS),
        None,
        Codec::Opus,
        Frequency::FORTY_EIGHT_KHZ,
        Some(2),
        FormatParams::default(),
    );
    cfg.codec_config().add_config(
        Pt::from(XMPP_TEL),
        None,
        Codec::Tele,
        Frequency::EIGHT_KHZ,
        None,
        FormatParams::default(),
    );
    let mut rtc = cfg.build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mid = Mid::from("audio");
    let (creds, fp) = {
        let mut api = rtc.direct_api();
        api.set_ice_controlling(controlling);
        api.declare_media(mid, MediaKind::Audio);
        api.declare_stream_tx(Ssrc::from(0x1111_2222), None, mid, None);
        (
            api.local_ice_credentials(),
            api.local_dtls_fingerprint().to_string(),
        )
    };
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (got_tx, got_rx) = mpsc::unbounded_channel();
    let (conn_tx, conn_rx) = mpsc::unbounded_channel();
    (
        Peer {
            ufrag: creds.ufrag,
            pwd: creds.pass,
            fingerprint: fp.trim().to_string(),
            candidate: local,
            cmds: cmd_tx,
            got: got_rx,
            connected: conn_rx,
        },
        PeerStarter {
            rtc,
            sock,
            mid,
            cmds: cmd_rx,
            got: got_tx,
            connected: conn_tx,
        },
    )
}

struct PeerStarter {
    rtc: Rtc,
    sock: UdpSocket,
    mid: Mid,
    cmds: mpsc::UnboundedReceiver<PeerCmd>,
    got: mpsc::UnboundedSender<Got>,
    connected: mpsc::UnboundedSender<()>,
}

impl PeerStarter {
    /// Gives the client the relay's description (as the Jingle offer or answer would) and runs it.
    fn start(mut self, relay_side: &CallStarted, dtls_active: bool) {
        let x = &relay_side.xmpp;
        let fp = format!("{} {}", x.fingerprint_hash, x.fingerprint)
            .parse()
            .unwrap();
        let mid = self.mid;
        {
            let mut api = self.rtc.direct_api();
            api.set_remote_ice_credentials(IceCreds {
                ufrag: x.ufrag.clone(),
                pass: x.pwd.clone(),
            });
            api.set_remote_fingerprint(fp);
            api.expect_stream_rx(Ssrc::from(x.ssrc), None, mid, None);
            api.start_dtls(dtls_active).unwrap();
        }
        for c in &x.candidates {
            self.rtc
                .add_remote_candidate(Candidate::host(c.addr, "udp").unwrap());
        }
        tokio::spawn(self.run());
    }

    async fn run(mut self) {
        let local = self.sock.local_addr().unwrap();
        let mut buf = vec![0u8; 2048];
        loop {
            let timeout = loop {
                match self.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => break t,
                    Ok(Output::Transmit(t)) => {
                        let _ = self.sock.send_to(&t.contents, t.destination).await;
                    }
                    Ok(Output::Event(Event::Connected)) => {
                        let _ = self.connected.send(());
                    }
                    Ok(Output::Event(Event::RtpPacket(p))) => {
                        let _ = self.got.send(Got {
                            pt: *p.header.payload_type,
                            ssrc: *p.header.ssrc,
                            seq: p.header.sequence_number,
                            ts: p.header.timestamp,
                            marker: p.header.marker,
                            payload: p.payload.to_vec(),
                        });
                    }
                    Ok(Output::Event(_)) => {}
                    Err(_) => return,
                }
            };
            if !self.rtc.is_alive() {
                return;
            }
            tokio::select! {
                r = self.sock.recv_from(&mut buf) => {
                    let Ok((n, src)) = r else { continue };
                    let Ok(contents) = buf[..n].try_into() else { continue };
                    let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source: src, destination: local, contents });
                    let _ = self.rtc.handle_input(input);
                }
                c = self.cmds.recv() => {
                    let Some(PeerCmd::Send { pt, seq, ts, payload }) = c else { return };
                    let mut api = self.rtc.direct_api();
                    if let Some(s) = api.stream_tx(&Ssrc::from(0x1111_2222)) {
                        s.write_rtp(RtpWrite::new(Pt::from(pt), SeqNo::from(seq), ts, Instant::now(), payload));
                    }
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(timeout)) => {
                    let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
                }
            }
        }
    }
}

/// The SIP phone: plain RTP on a UDP socket.
struct Phone {
    sock: UdpSocket,
}

impl Phone {
    async fn new() -> Phone {
        Phone {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    async fn send(&self, to: SocketAddr, pt: u8, seq: u16, ts: u32, payload: &[u8]) {
        let pkt = rtp_types::RtpPacketBuilder::<&[u8], &[u8]>::new()
            .payload_type(pt)
            .sequence_number(seq)
            .timestamp(ts)
            .ssrc(0x5151_5151)
            .payload(payload)
            .write_vec()
            .unwrap();
        self.sock.send_to(&pkt, to).await.unwrap();
    }

    /// RTP packets received within `within` (RTCP is skipped).
    async fn recv_rtp(&self, n: usize, within: Duration) -> Vec<Got> {
        let mut out = vec![];
        let mut buf = vec![0u8; 2048];
        let deadline = tokio::time::Instant::now() + within;
        while out.len() < n {
            let Ok(Ok((len, _))) =
                tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf)).await
            else {
                break;
            };
            // RFC 5761 §4: 200..=204 are RTCP.
            if (192..=223).contains(&buf[1]) {
                continue;
            }
            let p = rtp_types::RtpPacket::parse(&buf[..len]).unwrap();
            out.push(Got {
                pt: p.payload_type(),
                ssrc: p.ssrc(),
                seq: p.sequence_number(),
                ts: p.timestamp(),
                marker: p.marker_bit(),
                payload: p.payload().to_vec(),
            });
        }
        out
    }
}

async fn recv_peer(peer: &mut Peer, n: usize, within: Duration) -> Vec<Got> {
    let mut out = vec![];
    let deadline = tokio::time::Instant::now() + within;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, peer.got.recv()).await {
            Ok(Some(g)) => out.push(g),
            _ => break,
        }
    }
    out
}

fn media(
    remote: Option<XmppRemote>,
    we_offer: bool,
    sip: Option<SocketAddr>,
    timeout: Duration,
) -> CallMedia {
    CallMedia {
        xmpp: XmppLegParams {
            we_offer,
            content_name: "audio".into(),
            remote,
            extensions: vec![],
        },
        sip: SipLegParams {
            remote: sip,
            ..SipLegParams::default()
        },
        pt_map: pt_map(),
        no_media_timeout: timeout,
    }
}

/// Asserts consecutive sequence numbers and the payloads in the order sent.
fn assert_in_order(got: &[Got], prefix: &str, n: usize, pt: u8, ssrc: u32, ts_step: u32) {
    assert_eq!(
        got.len(),
        n,
        "{prefix}: expected {n} packets, got {}",
        got.len()
    );
    for (i, g) in got.iter().enumerate() {
        assert_eq!(
            g.payload,
            format!("{prefix}-{i}").into_bytes(),
            "{prefix}: packet {i} out of order"
        );
        assert_eq!((g.pt, g.ssrc), (pt, ssrc), "{prefix}: packet {i} header");
        if i > 0 {
            assert_eq!(
                g.seq,
                got[i - 1].seq.wrapping_add(1),
                "{prefix}: seq at {i}"
            );
            assert_eq!(
                g.ts,
                got[i - 1].ts.wrapping_add(ts_step),
                "{prefix}: ts at {i}"
            );
        }
    }
}

/// One XMPP → SIP call set up with the client as Jingle initiator (relay answers `active` to
/// `actpass`), a phone whose signalled address is wrong until it latches, and 3 s of audio at
/// 50 packets/s each way.
async fn call_flows(relay: &Relay, events: &mut EventLog, label: &str) -> CallId {
    let phone = Phone::new().await;
    let (mut peer, starter) = peer(true).await;
    // The SDP said a port nobody listens on; symmetric RTP must send to where packets come from.
    let wrong = SocketAddr::new(phone.addr().ip(), 9);
    let started = relay
        .spawn_call(media(
            Some(peer.remote(Setup::Actpass)),
            false,
            Some(wrong),
            Duration::from_secs(10),
        ))
        .unwrap();
    let id = started.id;
    assert_eq!(started.xmpp.setup, Setup::Active);
    relay.add_remote_candidate(id, peer.candidate()).unwrap();

    // Before DTLS: the phone talks, nothing may reach the client.
    for i in 0..5u16 {
        phone
            .send(
                started.sip.rtp,
                SIP_OPUS,
                60_000 + i,
                7_000 + u32::from(i) * 960,
                b"early",
            )
            .await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    starter.start(&started, false);
    events
        .wait(id, "DtlsConnected", |k| *k == RelayEventKind::DtlsConnected)
        .await;
    peer.connected.recv().await.unwrap();
    let c = relay.counters(id).unwrap();
    assert_eq!(c.sip.packets_in, 5);
    assert_eq!(c.sip.dropped, 5);
    assert_eq!(c.xmpp.packets_out, 0);

    // 3 s at 50 packets/s each way, then one RFC 4733 event each way.
    let n = 150usize;
    let sip_to = started.sip.rtp;
    let phone_send = async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for i in 0..n {
            tick.tick().await;
            let payload = format!("{label}-sip-{i}");
            phone
                .send(
                    sip_to,
                    SIP_OPUS,
                    65_500u16.wrapping_add(i as u16),
                    123 + i as u32 * 960,
                    payload.as_bytes(),
                )
                .await;
        }
        phone
            .send(
                sip_to,
                SIP_TEL,
                65_500u16.wrapping_add(n as u16),
                123 + n as u32 * 960,
                &[5, 0x8a, 0x03, 0x20],
            )
            .await;
    };
    let peer_send = async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for i in 0..n {
            tick.tick().await;
            peer.send(
                XMPP_OPUS,
                100 + i as u64,
                5_000 + i as u32 * 960,
                format!("{label}-xmpp-{i}").into_bytes(),
            );
        }
        peer.send(
            XMPP_TEL,
            100 + n as u64,
            5_000 + n as u32 * 960,
            vec![7, 0x8a, 0x03, 0x20],
        );
    };
    let phone_recv = phone.recv_rtp(n + 1, Duration::from_secs(8));
    let (_, _, at_phone) = tokio::join!(phone_send, peer_send, phone_recv);
    let at_peer = recv_peer(&mut peer, n + 1, Duration::from_secs(3)).await;

    assert_in_order(
        &at_phone[..n.min(at_phone.len())],
        &format!("{label}-xmpp"),
        n,
        SIP_OPUS,
        started.sip.ssrc,
        960,
    );
    assert_in_order(
        &at_peer[..n.min(at_peer.len())],
        &format!("{label}-sip"),
        n,
        XMPP_OPUS,
        started.xmpp.ssrc,
        960,
    );
    assert!(
        at_peer.iter().all(|g| g.payload != b"early"),
        "a packet passed before DTLS"
    );
    let tel_at_phone = &at_phone[n];
    assert_eq!(
        (tel_at_phone.pt, &tel_at_phone.payload[..]),
        (SIP_TEL, &[7u8, 0x8a, 0x03, 0x20][..])
    );
    assert_eq!(tel_at_phone.seq, at_phone[n - 1].seq.wrapping_add(1));
    let tel_at_peer = &at_peer[n];
    assert_eq!(
        (tel_at_peer.pt, &tel_at_peer.payload[..]),
        (XMPP_TEL, &[5u8, 0x8a, 0x03, 0x20][..])
    );

    let c = relay.counters(id).unwrap();
    assert_eq!(c.xmpp.packets_in, n as u64 + 1);
    assert_eq!(c.sip.packets_out, n as u64 + 1);
    assert_eq!(c.sip.packets_in, 5 + n as u64 + 1);
    assert_eq!(c.xmpp.packets_out, n as u64 + 1);
    assert_eq!(c.sip.dropped, 5);
    id
}

#[tokio::test]
async fn two_calls_flow_both_ways_at_50pps_without_mixing() {
    let (relay, events) = relay(41_000);
    // Two calls at once on one relay: each phone and client sees only its own call's payloads
    // (assert_in_order checks every payload's label).
    let (mut ea, mut eb) = split_events(events);
    let (a, b) = tokio::join!(
        call_flows(&relay, &mut ea, "one"),
        call_flows(&relay, &mut eb, "two")
    );
    assert_ne!(a, b);
    assert_eq!(relay.calls().len(), 2);
    assert!(relay.hangup(a));
    assert!(relay.hangup(b));
    ea.wait(a, "Closed", |k| matches!(k, RelayEventKind::Closed { .. }))
        .await;
    eb.wait(b, "Closed", |k| matches!(k, RelayEventKind::Closed { .. }))
        .await;
}

/// Splits one event stream into two logs that each see every event (each waits by call id).
fn split_events(mut log: EventLog) -> (EventLog, EventLog) {
    let (ta, ra) = mpsc::unbounded_channel();
    let (tb, rb) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(e) = log.rx.recv().await {
            let _ = ta.send(e.clone());
            let _ = tb.send(e);
        }
    });
    (
        EventLog {
            rx: ra,
            seen: vec![],
        },
        EventLog {
            rx: rb,
            seen: vec![],
        },
    )
}

#[tokio::test]
async fn sip_to_xmpp_call_with_trickled_candidates_and_idempotent_hangup() {
    let (relay, mut events) = relay(41_200);
    let phone = Phone::new().await;
    // SIP → XMPP: stox offers on the XMPP leg (actpass), the client answers active.
    let started = relay
        .spawn_call(media(
            None,
            true,
            Some(phone.addr()),
            Duration::from_secs(10),
        ))
        .unwrap();
    let id = started.id;
    assert_eq!(started.xmpp.setup, Setup::Actpass);
    assert_eq!(
        started.sip.rtp.port() % 2,
        0,
        "RTP on an even port (RFC 3550 §11)"
    );
    assert_eq!(started.sip.rtcp.port(), started.sip.rtp.port() + 1);
    let (mut peer, starter) = peer(false).await;
    relay
        .set_xmpp_remote(id, peer.remote(Setup::Active))
        .unwrap();
    // The candidate trickles in after the accept.
    relay.add_remote_candidate(id, peer.candidate()).unwrap();
    starter.start(&started, true);
    events
        .wait(id, "IceConnected", |k| *k == RelayEventKind::IceConnected)
        .await;
    events
        .wait(id, "DtlsConnected", |k| *k == RelayEventKind::DtlsConnected)
        .await;
    peer.connected.recv().await.unwrap();

    for i in 0..10u16 {
        phone
            .send(
                started.sip.rtp,
                SIP_OPUS,
                i,
                u32::from(i) * 960,
                format!("p-{i}").as_bytes(),
            )
            .await;
        peer.send(
            XMPP_OPUS,
            1 + u64::from(i),
            u32::from(i) * 960,
            format!("c-{i}").into_bytes(),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_peer = recv_peer(&mut peer, 10, Duration::from_secs(3)).await;
    let at_phone = phone.recv_rtp(10, Duration::from_secs(3)).await;
    assert_in_order(&at_peer, "p", 10, XMPP_OPUS, started.xmpp.ssrc, 960);
    assert_in_order(&at_phone, "c", 10, SIP_OPUS, started.sip.ssrc, 960);

    assert!(relay.hangup(id));
    // Hanging up again, before or after the task ended, is harmless.
    relay.hangup(id);
    let closed = events
        .wait(id, "Closed", |k| matches!(k, RelayEventKind::Closed { .. }))
        .await;
    let RelayEventKind::Closed { reason, counters } = closed else {
        unreachable!()
    };
    assert_eq!(reason, CloseReason::Hangup);
    assert_eq!(counters.sip.packets_out, 10);
    assert!(!relay.hangup(id));
    assert!(relay.counters(id).is_none());
    assert!(relay.calls().is_empty());
    // Exactly one Closed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(e) = events.rx.try_recv() {
        events.seen.push(e);
    }
    assert!(events
        .seen_for(id)
        .iter()
        .all(|k| !matches!(k, RelayEventKind::Closed { .. })));
}

#[tokio::test]
async fn a_silent_leg_ends_the_call() {
    let (relay, mut events) = relay(41_400);
    let phone = Phone::new().await;
    let (peer, starter) = peer(true).await;
    let started = relay
        .spawn_call(media(
            Some(peer.remote(Setup::Actpass)),
            false,
            Some(phone.addr()),
            Duration::from_millis(800),
        ))
        .unwrap();
    let id = started.id;
    relay.add_remote_candidate(id, peer.candidate()).unwrap();
    starter.start(&started, false);
    events
        .wait(id, "DtlsConnected", |k| *k == RelayEventKind::DtlsConnected)
        .await;
    let t0 = Instant::now();
    // The client keeps talking; the phone says nothing.
    let talk = async {
        for i in 0..100u64 {
            peer.send(XMPP_OPUS, 1 + i, i as u32 * 960, b"x".to_vec());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let wait = async {
        let kind = events
            .wait(id, "NoMedia", |k| {
                matches!(k, RelayEventKind::NoMedia { .. })
            })
            .await;
        (kind, t0.elapsed())
    };
    let (kind, elapsed) = tokio::select! {
        r = wait => r,
        _ = talk => panic!("no NoMedia within 2 s"),
    };
    assert_eq!(kind, RelayEventKind::NoMedia { leg: Leg::Sip });
    assert!(
        elapsed >= Duration::from_millis(700),
        "fired after {elapsed:?}"
    );
    let closed = events
        .wait(id, "Closed", |k| matches!(k, RelayEventKind::Closed { .. }))
        .await;
    assert!(matches!(
        closed,
        RelayEventKind::Closed {
            reason: CloseReason::NoMedia,
            ..
        }
    ));
    assert!(relay.calls().is_empty());
}

#[tokio::test]
async fn ice_that_never_completes_fails_the_call() {
    let (relay, mut events) = relay(41_600);
    let phone = Phone::new().await;
    let (peer, _never_started) = peer(true).await;
    let started = relay
        .spawn_call(media(
            Some(peer.remote(Setup::Actpass)),
            false,
            Some(phone.addr()),
            Duration::from_millis(500),
        ))
        .unwrap();
    let why = events
        .wait(started.id, "Failed", |k| {
            matches!(k, RelayEventKind::Failed { .. })
        })
        .await;
    assert!(
        matches!(why, RelayEventKind::Failed { ref why } if why.contains("ICE")),
        "{why:?}"
    );
    events
        .wait(started.id, "Closed", |k| {
            matches!(
                k,
                RelayEventKind::Closed {
                    reason: CloseReason::Failed,
                    ..
                }
            )
        })
        .await;
}

#[tokio::test]
async fn bad_remote_parameters_are_refused() {
    let (relay, mut events) = relay(41_800);
    let (peer, _s) = peer(true).await;
    let mut remote = peer.remote(Setup::Actpass);
    remote.fingerprint = "not hex".into();
    assert!(relay
        .spawn_call(media(Some(remote), false, None, Duration::from_secs(1)))
        .is_err());
    assert!(relay.calls().is_empty(), "a refused call keeps no ports");
    // We offered actpass; an answer that says actpass too fixes no roles (RFC 8842 §5.3).
    let started = relay
        .spawn_call(media(None, true, None, Duration::from_secs(1)))
        .unwrap();
    assert_eq!(started.xmpp.setup, Setup::Actpass);
    relay
        .set_xmpp_remote(started.id, peer.remote(Setup::Actpass))
        .unwrap();
    let failed = events
        .wait(started.id, "Failed", |k| {
            matches!(k, RelayEventKind::Failed { .. })
        })
        .await;
    assert!(
        matches!(failed, RelayEventKind::Failed { ref why } if why.contains("conflicts")),
        "{failed:?}"
    );
    events
        .wait(started.id, "Closed", |k| {
            matches!(k, RelayEventKind::Closed { .. })
        })
        .await;
}

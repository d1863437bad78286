//! Relay benchmark: N concurrent calls through the media relay on loopback, 50 packets/s each
//! way, DTLS-SRTP on the XMPP leg (a str0m client per call) and plain RTP on the SIP leg.
//!
//! `cargo run --release -p stox-gateway --example relay_bench -- [calls] [seconds]`
//!
//! Reports loss, end-to-end latency p50/p99 per direction (client/phone send → the other end
//! receives, so it includes the simulated client's own SRTP work: an upper bound on what the relay
//! adds), process CPU per 1,000 relayed packets (the simulated clients and phones run in the same
//! process, so this too is an upper bound), and resident memory per call right after the calls'
//! sessions are created (before media).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stox_gateway::media::relay::{
    AudioCodec, CallMedia, PtMap, PtPair, Relay, RelayConfig, RelayEventKind, RemoteCandidate,
    Setup, SipLegParams, XmppLegParams, XmppRemote,
};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceCreds, Input, Output, Rtc};
use tokio::net::UdpSocket;

fn field(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime of this process, in clock ticks (100 Hz on Linux).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn percentile(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64 / 1000.0
}

struct Stats {
    sent: AtomicU64,
    lat_to_sip: Mutex<Vec<u64>>,
    lat_to_xmpp: Mutex<Vec<u64>>,
}

fn stamp(epoch: Instant) -> Vec<u8> {
    let mut p = (epoch.elapsed().as_micros() as u64).to_be_bytes().to_vec();
    p.resize(160, 0xd5);
    p
}

fn latency(epoch: Instant, payload: &[u8]) -> Option<u64> {
    let b: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    Some((epoch.elapsed().as_micros() as u64).saturating_sub(u64::from_be_bytes(b)))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let (relay, mut events) = Relay::new(RelayConfig {
        address: "127.0.0.1".parse()?,
        port_min: 20_000,
        port_max: 20_000 + (calls as u16 + 10) * 4,
    })?;
    let pt_map = PtMap::new(vec![PtPair::new(AudioCodec::Pcmu, 0, 0)])?;
    let epoch = Instant::now();
    let stats = Arc::new(Stats {
        sent: AtomicU64::new(0),
        lat_to_sip: Mutex::new(Vec::new()),
        lat_to_xmpp: Mutex::new(Vec::new()),
    });
    let rss0 = field("/proc/self/status", "VmRSS:");
    let mut starts = Vec::new();
    for _ in 0..calls {
        let phone = UdpSocket::bind("127.0.0.1:0").await?;
        let peer_sock = UdpSocket::bind("127.0.0.1:0").await?;
        let local = peer_sock.local_addr()?;
        let mut cfg = Rtc::builder().set_rtp_mode(true).clear_codecs();
        cfg.codec_config().add_config(
            Pt::from(0),
            None,
            Codec::PCMU,
            Frequency::EIGHT_KHZ,
            None,
            FormatParams::default(),
        );
        let mut rtc = cfg.build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp")?);
        let mid = Mid::from("audio");
        let (creds, fp) = {
            let mut api = rtc.direct_api();
            api.set_ice_controlling(true);
            api.declare_media(mid, MediaKind::Audio);
            api.declare_stream_tx(Ssrc::from(7), None, mid, None);
            (
                api.local_ice_credentials(),
                api.local_dtls_fingerprint().to_string(),
            )
        };
        let (hash, hex) = fp.trim().split_once(' ').ok_or("fingerprint")?;
        let started = relay.spawn_call(CallMedia {
            xmpp: XmppLegParams {
                we_offer: false,
                content_name: "audio".into(),
                remote: Some(XmppRemote {
                    ufrag: creds.ufrag,
                    pwd: creds.pass,
                    fingerprint_hash: hash.into(),
                    fingerprint: hex.into(),
                    setup: Setup::Actpass,
                    ssrcs: vec![7],
                    candidates: vec![RemoteCandidate {
                        foundation: "1".into(),
                        component: 1,
                        protocol: "udp".into(),
                        priority: 2_130_706_431,
                        addr: local,
                        kind: "host".into(),
                        related: None,
                    }],
                }),
                extensions: vec![],
            },
            sip: SipLegParams {
                remote: Some(phone.local_addr()?),
                ..SipLegParams::default()
            },
            pt_map: pt_map.clone(),
            no_media_timeout: Duration::from_secs(60),
        })?;
        {
            let x = &started.xmpp;
            let mut api = rtc.direct_api();
            api.set_remote_ice_credentials(IceCreds {
                ufrag: x.ufrag.clone(),
                pass: x.pwd.clone(),
            });
            api.set_remote_fingerprint(
                format!("{} {}", x.fingerprint_hash, x.fingerprint).parse()?,
            );
            api.expect_stream_rx(Ssrc::from(x.ssrc), None, mid, None);
            api.start_dtls(false)?;
        }
        rtc.add_remote_candidate(Candidate::host(started.xmpp.candidates[0].addr, "udp")?);
        starts.push((rtc, peer_sock, phone, started.sip.rtp));
    }
    let rss1 = field("/proc/self/status", "VmRSS:");
    println!(
        "{calls} calls created: {:.1} KiB RSS per call (relay session + simulated client)",
        (rss1.saturating_sub(rss0)) as f64 / calls as f64
    );

    let stop = epoch + Duration::from_secs(secs) + Duration::from_secs(5);
    let media_from = Arc::new(Mutex::new(None::<Instant>));
    for (mut rtc, sock, phone, relay_sip) in starts {
        let (stats_c, media_c) = (stats.clone(), media_from.clone());
        // The client: str0m, sending 50 pps once connected and recording what arrives.
        tokio::spawn(async move {
            let local = sock
                .local_addr()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
            let mut buf = vec![0u8; 2048];
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut connected = false;
            let mut seq = 1u64;
            loop {
                let timeout = loop {
                    match rtc.poll_output() {
                        Ok(Output::Timeout(t)) => break t,
                        Ok(Output::Transmit(t)) => {
                            let _ = sock.try_send_to(&t.contents, t.destination);
                        }
                        Ok(Output::Event(Event::Connected)) => connected = true,
                        Ok(Output::Event(Event::RtpPacket(p))) => {
                            if let Some(l) = latency(epoch, &p.payload) {
                                if let Ok(mut v) = stats_c.lat_to_xmpp.lock() {
                                    v.push(l);
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                };
                if Instant::now() > stop {
                    return;
                }
                let media_on = media_c.lock().ok().and_then(|m| *m).is_some_and(|t| {
                    Instant::now() >= t && Instant::now() < stop - Duration::from_secs(4)
                });
                tokio::select! {
                    r = sock.recv_from(&mut buf) => {
                        if let Ok((n, src)) = r {
                            if let Ok(contents) = buf[..n].try_into() {
                                let _ = rtc.handle_input(Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source: src, destination: local, contents }));
                            }
                        }
                    }
                    _ = tick.tick(), if connected && media_on => {
                        if let Some(s) = rtc.direct_api().stream_tx(&Ssrc::from(7)) {
                            s.write_rtp(RtpWrite::new(Pt::from(0), SeqNo::from(seq), seq as u32 * 160, Instant::now(), stamp(epoch)));
                            seq += 1;
                            stats_c.sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(timeout)) => {
                        let _ = rtc.handle_input(Input::Timeout(Instant::now()));
                    }
                }
            }
        });
        let stats = stats.clone();
        let media_from = media_from.clone();
        // The phone: plain RTP, 50 pps, and what arrives.
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut seq = 0u16;
            loop {
                if Instant::now() > stop {
                    return;
                }
                let media_on = media_from.lock().ok().and_then(|m| *m).is_some_and(|t| {
                    Instant::now() >= t && Instant::now() < stop - Duration::from_secs(4)
                });
                tokio::select! {
                    r = phone.recv_from(&mut buf) => {
                        if let Ok((n, _)) = r {
                            if let Ok(p) = rtp_types::RtpPacket::parse(&buf[..n]) {
                                if let Some(l) = latency(epoch, p.payload()) {
                                    if let Ok(mut v) = stats.lat_to_sip.lock() { v.push(l); }
                                }
                            }
                        }
                    }
                    _ = tick.tick() => {
                        if media_on {
                            let payload = stamp(epoch);
                            let pkt = rtp_types::RtpPacketBuilder::<&[u8], &[u8]>::new()
                                .payload_type(0).sequence_number(seq).timestamp(u32::from(seq) * 160).ssrc(9)
                                .payload(&payload[..]);
                            if let Ok(b) = pkt.write_vec() {
                                let _ = phone.try_send_to(&b, relay_sip);
                                seq = seq.wrapping_add(1);
                                stats.sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        });
    }

    // Wait for every call's DTLS, then start media for everyone at once.
    let mut up = 0;
    let t_setup = Instant::now();
    while up < calls {
        match tokio::time::timeout(Duration::from_secs(20), events.recv()).await {
            Ok(Some(e)) if e.kind == RelayEventKind::DtlsConnected => up += 1,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    println!(
        "{up}/{calls} calls connected (ICE + DTLS) in {:?}",
        t_setup.elapsed()
    );
    let media_start = Instant::now() + Duration::from_millis(200);
    if let Ok(mut m) = media_from.lock() {
        *m = Some(media_start);
    }
    let cpu0 = cpu_ticks();
    tokio::time::sleep_until(tokio::time::Instant::from_std(
        stop - Duration::from_secs(4),
    ))
    .await;
    let cpu1 = cpu_ticks();
    // Let the tail drain.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = stats.sent.load(Ordering::Relaxed);
    let mut to_sip = stats
        .lat_to_sip
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    let mut to_xmpp = stats
        .lat_to_xmpp
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    let received = (to_sip.len() + to_xmpp.len()) as u64;
    let cpu_ms = (cpu1 - cpu0) as f64 * 10.0;
    println!(
        "sent {sent}, received {received}, loss {:.3}%",
        100.0 * sent.saturating_sub(received) as f64 / sent.max(1) as f64
    );
    println!(
        "latency XMPP→SIP p50 {:.3} ms p99 {:.3} ms; SIP→XMPP p50 {:.3} ms p99 {:.3} ms",
        percentile(&mut to_sip, 0.5),
        percentile(&mut to_sip, 0.99),
        percentile(&mut to_xmpp, 0.5),
        percentile(&mut to_xmpp, 0.99)
    );
    println!(
        "process CPU {:.0} ms over the media phase: {:.2} ms per 1,000 packets (relay + simulated peers)",
        cpu_ms,
        cpu_ms * 1000.0 / received.max(1) as f64
    );
    for c in relay.calls() {
        relay.hangup(c.id);
    }
    Ok(())
}

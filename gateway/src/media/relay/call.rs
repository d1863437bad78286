//! One call's media task: the str0m session of the XMPP leg (RFC 8445 ICE, RFC 5764 DTLS-SRTP)
//! and the plain-RTP sockets of the SIP leg (RFC 3550, RFC 4961), forwarding between them.
//!
//! The task follows str0m's contract: every mutation of the `Rtc` (a datagram, a timeout, a
//! written packet, a command) is followed by a full drain of `poll_output` until it returns a
//! timeout, and the task then waits for the earliest of that timeout, its own timers, a datagram
//! or a command. Handlers never await: sends use `try_send_to` (a full socket buffer drops the
//! datagram, as UDP would).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use str0m::change::DirectApi;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcError};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::rewrite::{self, demux, Demux, InHeader, Latch, Leg, PtMap, Setup, SourceRewriter};
use super::rtcp::{self, Reception, SentInfo};
use super::{
    CallCounters, CallId, CallMedia, CallStarted, CallState, CloseReason, Command, LocalCandidate,
    RelayError, RelayEvent, RelayEventKind, RemoteCandidate, SharedCounters, SipLocal, XmppLocal,
    XmppRemote, BYTES_IN, BYTES_OUT, DROPPED, PACKETS_IN, PACKETS_OUT,
};

/// The three sockets of a call, bound by the relay.
pub(super) struct Sockets {
    pub sip_rtp: std::net::UdpSocket,
    pub sip_rtcp: std::net::UdpSocket,
    pub xmpp: std::net::UdpSocket,
}

/// A configured call, ready to run.
pub(super) struct Prepared {
    pub started: CallStarted,
    pub task: CallTask,
}

/// At most this many remote SSRCs are learnt from traffic on the XMPP leg (XEP-0339 sources
/// need not be signalled; an attacker must not make us allocate streams without bound).
const MAX_LEARNT_SSRCS: usize = 4;

/// The largest datagram read; RTP audio is far smaller.
const BUF: usize = 2048;

fn io_err(e: std::io::Error) -> RelayError {
    RelayError::Bind(e)
}

fn to_tokio(s: std::net::UdpSocket) -> Result<UdpSocket, RelayError> {
    s.set_nonblocking(true).map_err(io_err)?;
    UdpSocket::from_std(s).map_err(io_err)
}

fn codec(c: rewrite::AudioCodec) -> Codec {
    match c {
        rewrite::AudioCodec::Opus => Codec::Opus,
        rewrite::AudioCodec::Pcmu => Codec::PCMU,
        rewrite::AudioCodec::Pcma => Codec::PCMA,
        rewrite::AudioCodec::G722 => Codec::G722,
        rewrite::AudioCodec::TelephoneEvent => Codec::Tele,
    }
}

/// The str0m extension for a XEP-0294 / RFC 8285 URI, for those str0m knows.
fn extension(uri: &str) -> Option<Extension> {
    [
        Extension::AudioLevel,
        Extension::AbsoluteSendTime,
        Extension::AbsoluteCaptureTime,
        Extension::TransmissionTimeOffset,
        Extension::TransportSequenceNumber,
        Extension::RtpMid,
    ]
    .into_iter()
    .find(|e| e.as_uri() == uri)
}

/// A str0m mid is at most 16 letters or digits (ARCHITECTURE.md): use the Jingle content name
/// when it fits, otherwise a fixed one (streams are mapped by SSRC anyway).
fn mid_for(content_name: &str) -> Mid {
    let fits = !content_name.is_empty()
        && content_name.len() <= 16
        && content_name.bytes().all(|b| b.is_ascii_alphanumeric());
    Mid::from(if fits { content_name } else { "audio" })
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn random_u32() -> u32 {
    *Ssrc::new()
}

/// Builds the `Rtc` and the task of one call.
pub(super) fn prepare(
    id: CallId,
    media: CallMedia,
    sockets: Sockets,
    crypto: Arc<str0m::crypto::CryptoProvider>,
    counters: Arc<SharedCounters>,
    events: mpsc::UnboundedSender<RelayEvent>,
) -> Result<Prepared, RelayError> {
    let now = Instant::now();
    let xmpp_local = sockets.xmpp.local_addr().map_err(io_err)?;
    let sip_rtp_local = sockets.sip_rtp.local_addr().map_err(io_err)?;
    let sip_rtcp_local = sockets.sip_rtcp.local_addr().map_err(io_err)?;

    let mut cfg = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .clear_extension_map()
        .set_stats_interval(None)
        .set_crypto_provider(crypto);
    for p in media.pt_map.pairs() {
        let Some(rate) = Frequency::new(p.clock_rate) else {
            continue;
        };
        cfg.codec_config().add_config(
            Pt::from(p.xmpp),
            None,
            codec(p.codec),
            rate,
            p.channels,
            FormatParams::default(),
        );
    }
    for (ext_id, uri) in &media.xmpp.extensions {
        // RFC 8285 §4.2: one-byte header ids 1..=14.
        if let (1..=14, Some(ext)) = (*ext_id, extension(uri)) {
            cfg = cfg.set_extension(*ext_id, ext);
        }
    }
    let mut rtc = cfg.build(now);

    let candidate =
        Candidate::host(xmpp_local, "udp").map_err(|_| RelayError::BadAddress(xmpp_local.ip()))?;
    let local = rtc
        .add_local_candidate(candidate)
        .cloned()
        .ok_or(RelayError::BadAddress(xmpp_local.ip()))?;
    let sdp = local.to_sdp_string();
    let foundation = sdp
        .split_whitespace()
        .next()
        .and_then(|t| t.strip_prefix("candidate:"))
        .unwrap_or("1")
        .to_string();

    let mid = mid_for(&media.xmpp.content_name);
    let xmpp_ssrc = Ssrc::new();
    let sip_ssrc = random_u32();
    let our_setup = rewrite::our_setup(
        media.xmpp.we_offer,
        media.xmpp.remote.as_ref().map(|r| r.setup),
    );
    let (creds, fingerprint) = {
        let mut api = rtc.direct_api();
        api.set_ice_controlling(media.xmpp.we_offer);
        api.declare_media(mid, MediaKind::Audio);
        api.declare_stream_tx(xmpp_ssrc, None, mid, None);
        (
            api.local_ice_credentials(),
            api.local_dtls_fingerprint().clone(),
        )
    };

    let started = CallStarted {
        id,
        xmpp: XmppLocal {
            ufrag: creds.ufrag,
            pwd: creds.pass,
            fingerprint_hash: fingerprint.hash_func.clone(),
            fingerprint: hex(&fingerprint.bytes),
            setup: our_setup,
            candidates: vec![LocalCandidate {
                foundation,
                component: 1,
                protocol: "udp".into(),
                priority: local.prio(),
                addr: xmpp_local,
                kind: "host".into(),
            }],
            ssrc: *xmpp_ssrc,
        },
        sip: SipLocal {
            rtp: sip_rtp_local,
            rtcp: sip_rtcp_local,
            ssrc: sip_ssrc,
        },
    };

    let sip = media.sip;
    let rtcp_signalled = sip.remote_rtcp.or_else(|| {
        sip.remote
            .map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1)))
    });
    let mut task = CallTask {
        id,
        rtc,
        mid,
        xmpp_ssrc,
        xmpp_local,
        io: Io {
            xmpp: to_tokio(sockets.xmpp)?,
            sip_rtp: to_tokio(sockets.sip_rtp)?,
            sip_rtcp: to_tokio(sockets.sip_rtcp)?,
        },
        pt_map: media.pt_map,
        timeout: media.no_media_timeout,
        our_setup,
        to_xmpp: SourceRewriter::new(*xmpp_ssrc, random_u32() as u16, random_u32()),
        to_sip: SourceRewriter::new(sip_ssrc, random_u32() as u16, random_u32()),
        sip_rtp: Latch::new(sip.remote),
        sip_rtcp: Latch::new(rtcp_signalled),
        sip_remote_known: sip.remote.is_some(),
        rtcp_mux: sip.rtcp_mux,
        reception: Reception::default(),
        sip_sent: None,
        xmpp_remote_known: false,
        pending_candidates: Vec::new(),
        learnt_ssrcs: Vec::new(),
        ice_connected: false,
        dtls_connected: false,
        setup_deadline: None,
        last_rx: [now, now],
        next_rtcp: now + rtcp::REPORT_INTERVAL,
        ended: None,
        counters,
        events,
        out: Vec::with_capacity(BUF),
    };
    task.counters.set_state(super::CallState::Waiting);
    if let Some(remote) = media.xmpp.remote {
        task.apply_remote(now, remote)?;
    }
    task.arm_setup(now);
    Ok(Prepared { started, task })
}

struct Io {
    xmpp: UdpSocket,
    sip_rtp: UdpSocket,
    sip_rtcp: UdpSocket,
}

/// Packets and octets the relay sent on the SIP leg, and the last RTP timestamp with its time.
#[derive(Debug, Clone, Copy)]
struct SipSent {
    packets: u32,
    octets: u32,
    timestamp: u32,
    clock_rate: u32,
    at: Instant,
}

pub(super) struct CallTask {
    id: CallId,
    rtc: Rtc,
    mid: Mid,
    xmpp_ssrc: Ssrc,
    xmpp_local: SocketAddr,
    io: Io,
    pt_map: PtMap,
    timeout: Duration,
    our_setup: Setup,
    to_xmpp: SourceRewriter,
    to_sip: SourceRewriter,
    sip_rtp: Latch,
    sip_rtcp: Latch,
    sip_remote_known: bool,
    rtcp_mux: bool,
    reception: Reception,
    sip_sent: Option<SipSent>,
    xmpp_remote_known: bool,
    pending_candidates: Vec<RemoteCandidate>,
    learnt_ssrcs: Vec<u32>,
    ice_connected: bool,
    dtls_connected: bool,
    setup_deadline: Option<Instant>,
    /// When each leg last received media (index: 0 XMPP, 1 SIP).
    last_rx: [Instant; 2],
    next_rtcp: Instant,
    ended: Option<CloseReason>,
    counters: Arc<SharedCounters>,
    events: mpsc::UnboundedSender<RelayEvent>,
    out: Vec<u8>,
}

fn leg_index(leg: Leg) -> usize {
    match leg {
        Leg::Xmpp => 0,
        Leg::Sip => 1,
    }
}

impl CallTask {
    fn emit(&self, kind: RelayEventKind) {
        let _ = self.events.send(RelayEvent {
            call: self.id,
            kind,
        });
    }

    fn fail(&mut self, why: String) {
        warn!(call = %self.id, %why, "call media failed");
        self.emit(RelayEventKind::Failed { why });
        self.ended.get_or_insert(CloseReason::Failed);
    }

    /// Applies the remote XEP-0176/0320 description and starts ICE and DTLS.
    fn apply_remote(&mut self, now: Instant, remote: XmppRemote) -> Result<(), RelayError> {
        if self.xmpp_remote_known {
            // A second description (transport-replace, a duplicate accept) is not supported:
            // keep the running session.
            debug!(call = %self.id, "ignoring a second remote description");
            return Ok(());
        }
        rewrite::check_setup(self.our_setup, remote.setup)?;
        self.our_setup = rewrite::resolve_setup(self.our_setup, remote.setup);
        let fp_text = format!("{} {}", remote.fingerprint_hash, remote.fingerprint);
        let fingerprint: str0m::config::Fingerprint = fp_text
            .parse()
            .map_err(|_| RelayError::BadFingerprint(fp_text.clone()))?;
        if fingerprint.bytes.is_empty() {
            return Err(RelayError::BadFingerprint(fp_text));
        }
        let mid = self.mid;
        {
            let mut api: DirectApi = self.rtc.direct_api();
            api.set_remote_ice_credentials(str0m::IceCreds {
                ufrag: remote.ufrag,
                pass: remote.pwd,
            });
            api.set_remote_fingerprint(fingerprint);
            for ssrc in remote.ssrcs.iter().take(MAX_LEARNT_SSRCS) {
                api.expect_stream_rx(Ssrc::from(*ssrc), None, mid, None);
            }
            api.start_dtls(self.our_setup == Setup::Active)
                .map_err(|e| RelayError::BadFingerprint(format!("starting DTLS: {e}")))?;
        }
        self.learnt_ssrcs
            .extend(remote.ssrcs.iter().take(MAX_LEARNT_SSRCS));
        self.xmpp_remote_known = true;
        self.counters.set_state(CallState::Connecting);
        let pending = std::mem::take(&mut self.pending_candidates);
        for c in remote.candidates.into_iter().chain(pending) {
            self.add_candidate(c);
        }
        self.arm_setup(now);
        Ok(())
    }

    fn add_candidate(&mut self, c: RemoteCandidate) {
        if !self.xmpp_remote_known {
            self.pending_candidates.push(c);
            return;
        }
        if c.component != 1 || !c.protocol.eq_ignore_ascii_case("udp") {
            return;
        }
        let mut line = format!(
            "candidate:{} 1 udp {} {} {} typ {}",
            c.foundation,
            c.priority,
            c.addr.ip(),
            c.addr.port(),
            c.kind
        );
        if let Some(r) = c.related {
            line.push_str(&format!(" raddr {} rport {}", r.ip(), r.port()));
        }
        match Candidate::from_sdp_string(&line) {
            Ok(cand) => self.rtc.add_remote_candidate(cand),
            Err(e) => debug!(call = %self.id, %line, error = %e, "ignoring a remote candidate"),
        }
    }

    /// Starts the setup deadline once both remotes are known.
    fn arm_setup(&mut self, now: Instant) {
        if self.xmpp_remote_known
            && self.sip_remote_known
            && self.setup_deadline.is_none()
            && !self.dtls_connected
        {
            self.setup_deadline = Some(now + self.timeout);
        }
    }

    fn forwarding(&self) -> bool {
        self.dtls_connected && self.sip_remote_known
    }

    fn start_media_timers(&mut self, now: Instant) {
        self.last_rx = [now, now];
        self.next_rtcp = now + rtcp::REPORT_INTERVAL;
    }

    fn next_timer(&self) -> Option<Instant> {
        let mut t = self.setup_deadline;
        if self.forwarding() {
            let media = self.last_rx.iter().min().map(|l| *l + self.timeout);
            t = [t, media, Some(self.next_rtcp)].into_iter().flatten().min();
        }
        t
    }

    fn on_timers(&mut self, now: Instant) {
        if let Some(d) = self.setup_deadline {
            if now >= d && !self.dtls_connected {
                let what = if self.ice_connected { "DTLS" } else { "ICE" };
                self.fail(format!("{what} did not complete within {:?}", self.timeout));
                return;
            }
        }
        if !self.forwarding() {
            return;
        }
        for leg in [Leg::Xmpp, Leg::Sip] {
            if now.saturating_duration_since(self.last_rx[leg_index(leg)]) >= self.timeout {
                info!(call = %self.id, %leg, "no media");
                self.emit(RelayEventKind::NoMedia { leg });
                self.ended.get_or_insert(CloseReason::NoMedia);
                return;
            }
        }
        if now >= self.next_rtcp {
            self.next_rtcp = now + rtcp::REPORT_INTERVAL;
            self.send_sip_report(now);
        }
    }

    fn rtcp_destination(&self) -> Option<SocketAddr> {
        if self.rtcp_mux {
            self.sip_rtp.destination()
        } else {
            self.sip_rtcp.destination()
        }
    }

    fn send_sip_rtcp(&self, bytes: &[u8]) {
        let Some(dst) = self.rtcp_destination() else {
            return;
        };
        let sock = if self.rtcp_mux {
            &self.io.sip_rtp
        } else {
            &self.io.sip_rtcp
        };
        let _ = sock.try_send_to(bytes, dst);
    }

    fn send_sip_report(&mut self, now: Instant) {
        let sent = self.sip_sent.map(|s| {
            let since = now.saturating_duration_since(s.at);
            let wall = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            SentInfo {
                ntp: rtcp::ntp_from_unix(wall),
                rtp_timestamp: s
                    .timestamp
                    .wrapping_add((since.as_secs_f64() * f64::from(s.clock_rate)) as u32),
                packets: s.packets,
                octets: s.octets,
            }
        });
        match rtcp::report(
            now,
            self.to_sip.out_ssrc(),
            "stox",
            sent,
            &mut self.reception,
        ) {
            Ok(bytes) => self.send_sip_rtcp(&bytes),
            Err(e) => debug!(call = %self.id, error = ?e, "building an RTCP report"),
        }
    }

    /// Drains str0m's output until its next timeout.
    fn drain(&mut self, now: Instant) -> Result<Instant, RtcError> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    let _ = self.io.xmpp.try_send_to(&t.contents, t.destination);
                }
                Output::Event(e) => self.on_rtc_event(now, e),
            }
        }
    }

    fn on_rtc_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::IceConnectionStateChange(s) => {
                debug!(call = %self.id, state = ?s, "ICE");
                if s.is_connected() && !self.ice_connected {
                    self.ice_connected = true;
                    self.emit(RelayEventKind::IceConnected);
                }
                if s == IceConnectionState::Disconnected && self.ice_connected {
                    warn!(call = %self.id, "ICE disconnected");
                }
            }
            Event::Connected if !self.dtls_connected => {
                self.dtls_connected = true;
                self.setup_deadline = None;
                self.counters.set_state(CallState::Connected);
                self.start_media_timers(now);
                info!(call = %self.id, "DTLS-SRTP connected");
                self.emit(RelayEventKind::DtlsConnected);
            }
            Event::RtpPacket(p) => self.forward_to_sip(now, p),
            Event::Closed => {
                self.ended.get_or_insert(CloseReason::RemoteClosed);
            }
            _ => {}
        }
    }

    fn count(&self, leg: Leg, packets: usize, bytes: usize, out: bool) {
        let (p, b) = if out {
            (PACKETS_OUT, BYTES_OUT)
        } else {
            (PACKETS_IN, BYTES_IN)
        };
        self.counters.add(leg, p, packets as u64);
        self.counters.add(leg, b, bytes as u64);
    }

    fn drop_packet(&self, leg: Leg) {
        self.counters.add(leg, DROPPED, 1);
    }

    /// XMPP → SIP: a decrypted RTP packet from str0m.
    fn forward_to_sip(&mut self, now: Instant, p: RtpPacket) {
        self.count(Leg::Xmpp, 1, p.payload.len(), false);
        self.last_rx[0] = now;
        let pt = *p.header.payload_type;
        let Some(pair) = self.pt_map.lookup(Leg::Xmpp, pt).copied() else {
            self.drop_packet(Leg::Xmpp);
            return;
        };
        let Some(dst) = self.sip_rtp.destination() else {
            self.drop_packet(Leg::Xmpp);
            return;
        };
        let out = self.to_sip.rewrite(
            now,
            InHeader {
                ssrc: *p.header.ssrc,
                seq: *p.seq_no as u16,
                timestamp: p.header.timestamp,
            },
            pair.clock_rate,
        );
        let builder = rtp_types::RtpPacketBuilder::<&[u8], &[u8]>::new()
            .payload_type(pair.sip)
            .sequence_number(out.seq)
            .timestamp(out.timestamp)
            .ssrc(out.ssrc)
            .marker_bit(p.header.marker)
            .payload(&p.payload[..]);
        self.out.clear();
        if builder.write_into_vec(&mut self.out).is_err() {
            self.drop_packet(Leg::Xmpp);
            return;
        }
        if self.io.sip_rtp.try_send_to(&self.out, dst).is_ok() {
            self.count(Leg::Sip, 1, p.payload.len(), true);
            let s = self.sip_sent.get_or_insert(SipSent {
                packets: 0,
                octets: 0,
                timestamp: out.timestamp,
                clock_rate: pair.clock_rate,
                at: now,
            });
            s.packets = s.packets.wrapping_add(1);
            s.octets = s.octets.wrapping_add(p.payload.len() as u32);
            if let Some((_, ts)) = self.to_sip.last_sent() {
                s.timestamp = ts;
                s.clock_rate = pair.clock_rate;
                s.at = now;
            }
        }
    }

    /// SIP → XMPP: a datagram on the SIP RTP socket (RTP, or RTCP when multiplexed).
    fn on_sip_rtp(&mut self, now: Instant, src: SocketAddr, data: &[u8]) {
        if demux(data) == Demux::Rtcp {
            self.on_sip_rtcp(now, src, data);
            return;
        }
        let Ok(pkt) = rtp_types::RtpPacket::parse(data) else {
            self.drop_packet(Leg::Sip);
            return;
        };
        if !self.sip_rtp.on_packet(now, src) {
            self.drop_packet(Leg::Sip);
            return;
        }
        let payload = pkt.payload();
        self.count(Leg::Sip, 1, payload.len(), false);
        self.reception.on_rtp(pkt.ssrc(), pkt.sequence_number());
        self.last_rx[1] = now;
        if !self.dtls_connected {
            // RFC 5763 / ARCHITECTURE.md: nothing flows before DTLS completes.
            self.drop_packet(Leg::Sip);
            return;
        }
        let Some(pair) = self.pt_map.lookup(Leg::Sip, pkt.payload_type()).copied() else {
            self.drop_packet(Leg::Sip);
            return;
        };
        let out = self.to_xmpp.rewrite(
            now,
            InHeader {
                ssrc: pkt.ssrc(),
                seq: pkt.sequence_number(),
                timestamp: pkt.timestamp(),
            },
            pair.clock_rate,
        );
        let write = RtpWrite::new(
            Pt::from(pair.xmpp),
            SeqNo::from(out.ext_seq),
            out.timestamp,
            now,
            payload.to_vec(),
        )
        .marker(pkt.marker_bit());
        let mut api = self.rtc.direct_api();
        match api.stream_tx(&self.xmpp_ssrc) {
            Some(stream) => {
                stream.write_rtp(write);
                self.count(Leg::Xmpp, 1, payload.len(), true);
            }
            None => self.drop_packet(Leg::Sip),
        }
    }

    /// RTCP from the phone: latched and read for LSR, never forwarded.
    fn on_sip_rtcp(&mut self, now: Instant, src: SocketAddr, data: &[u8]) {
        let Some(srs) = rtcp::sender_reports(data) else {
            return;
        };
        if !self.rtcp_mux {
            self.sip_rtcp.on_packet(now, src);
        }
        for (ssrc, ntp) in srs {
            self.reception.on_sender_report(now, ssrc, ntp);
        }
    }

    /// XMPP leg: STUN, DTLS and SRTP for str0m.
    fn on_xmpp(&mut self, now: Instant, src: SocketAddr, data: &[u8]) -> Result<(), RtcError> {
        if demux(data) == Demux::Rtp && self.xmpp_remote_known {
            // The SSRC is in the clear (RFC 3711 §3.1): learn unsignalled sources so str0m maps
            // them onto our one audio media.
            if let Some(ssrc) = rewrite::rtp_ssrc(data) {
                if ssrc != 0
                    && !self.learnt_ssrcs.contains(&ssrc)
                    && self.learnt_ssrcs.len() < MAX_LEARNT_SSRCS
                {
                    self.learnt_ssrcs.push(ssrc);
                    let mid = self.mid;
                    self.rtc
                        .direct_api()
                        .expect_stream_rx(Ssrc::from(ssrc), None, mid, None);
                }
            }
        }
        let Ok(contents) = data.try_into() else {
            return Ok(());
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: src,
                destination: self.xmpp_local,
                contents,
            },
        );
        if self.rtc.accepts(&input) {
            self.rtc.handle_input(input)?;
        }
        Ok(())
    }

    fn on_command(&mut self, now: Instant, cmd: Option<Command>) {
        match cmd {
            Some(Command::XmppRemote(r)) => {
                if let Err(e) = self.apply_remote(now, r) {
                    self.fail(e.to_string());
                }
            }
            Some(Command::SipRemote(addr)) => {
                self.sip_rtp.set_signalled(addr);
                self.sip_rtcp
                    .set_signalled(SocketAddr::new(addr.ip(), addr.port().wrapping_add(1)));
                if !self.sip_remote_known {
                    self.sip_remote_known = true;
                    if self.dtls_connected {
                        self.start_media_timers(now);
                    }
                    self.arm_setup(now);
                }
            }
            Some(Command::Candidate(c)) => self.add_candidate(c),
            Some(Command::Hangup) | None => {
                self.ended.get_or_insert(CloseReason::Hangup);
            }
            #[cfg(test)]
            Some(Command::Panic) => panic!("injected panic"),
        }
    }

    /// Runs the call until it ends; returns why.
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> CloseReason {
        let mut xbuf = vec![0u8; BUF];
        let mut sbuf = vec![0u8; BUF];
        let mut cbuf = vec![0u8; BUF];
        let mut now = Instant::now();
        loop {
            let rtc_timeout = match self.drain(now) {
                Ok(t) => t,
                Err(e) => {
                    self.fail(format!("str0m: {e}"));
                    now
                }
            };
            if !self.rtc.is_alive() {
                self.ended.get_or_insert(CloseReason::RemoteClosed);
            }
            if let Some(reason) = self.ended {
                return self.finish(reason);
            }
            let deadline = self
                .next_timer()
                .map_or(rtc_timeout, |t| t.min(rtc_timeout));
            // tokio's timer has millisecond resolution; never spin on a deadline in the past.
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
            let io = &self.io;
            enum Woke {
                Xmpp(std::io::Result<(usize, SocketAddr)>),
                SipRtp(std::io::Result<(usize, SocketAddr)>),
                SipRtcp(std::io::Result<(usize, SocketAddr)>),
                Command(Option<Command>),
                Timer,
            }
            let woke = tokio::select! {
                r = io.xmpp.recv_from(&mut xbuf) => Woke::Xmpp(r),
                r = io.sip_rtp.recv_from(&mut sbuf) => Woke::SipRtp(r),
                r = io.sip_rtcp.recv_from(&mut cbuf) => Woke::SipRtcp(r),
                c = commands.recv() => Woke::Command(c),
                _ = sleep => Woke::Timer,
            };
            now = Instant::now();
            match woke {
                Woke::Xmpp(Ok((n, src))) => {
                    if let Err(e) = self.on_xmpp(now, src, &xbuf[..n]) {
                        debug!(call = %self.id, error = %e, "XMPP-leg datagram refused");
                    }
                }
                Woke::SipRtp(Ok((n, src))) => self.on_sip_rtp(now, src, &sbuf[..n]),
                Woke::SipRtcp(Ok((n, src))) => self.on_sip_rtcp(now, src, &cbuf[..n]),
                // ICMP errors (port unreachable) surface here on Linux: keep going.
                Woke::Xmpp(Err(_)) | Woke::SipRtp(Err(_)) | Woke::SipRtcp(Err(_)) => {}
                Woke::Command(c) => self.on_command(now, c),
                Woke::Timer => {
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                        self.fail(format!("str0m: {e}"));
                    }
                    self.on_timers(now);
                }
            }
        }
    }

    /// Closes both legs: DTLS close_notify (and RTCP BYE) on the XMPP leg, RTCP BYE on the SIP leg.
    fn finish(&mut self, reason: CloseReason) -> CloseReason {
        self.counters.set_state(CallState::Closing);
        if self.rtc.is_alive() {
            let _ = self.rtc.close();
            let now = Instant::now();
            for _ in 0..16 {
                match self.drain(now) {
                    Ok(_) if self.rtc.is_alive() => {
                        let _ = self.rtc.handle_input(Input::Timeout(now));
                    }
                    _ => break,
                }
            }
        }
        if self.forwarding() {
            if let Ok(bytes) = rtcp::bye(self.to_sip.out_ssrc()) {
                self.send_sip_rtcp(&bytes);
            }
        }
        let c: CallCounters = self.counters.snapshot();
        info!(call = %self.id, ?reason, ?c, "call media ended");
        reason
    }
}

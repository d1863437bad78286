//! RFC 3550 §5.1 / §8.2: the header rewriting a translator does between two RTP sessions.
//!
//! The relay joins two RTP sessions that negotiated independently (Jingle on one side, SDP on the
//! other), so every forwarded packet gets the payload type of the outgoing leg ([`PtMap`], one row
//! per codec and per RFC 4733 `telephone-event` clock rate), the relay's own SSRC on that leg, and
//! sequence numbers and timestamps that continue without a jump when the incoming source changes
//! ([`SourceRewriter`]). Gaps and reordering are preserved as they arrived: the relay adds no
//! jitter buffer. Everything here is pure: time comes in as `now`.

use std::time::{Duration, Instant};

/// What a payload type carries; the relay passes it through without transcoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// RFC 7587 Opus (48 kHz RTP clock, 2 channels in SDP).
    Opus,
    /// RFC 3551 G.711 µ-law (static PT 0).
    Pcmu,
    /// RFC 3551 G.711 A-law (static PT 8).
    Pcma,
    /// RFC 3551 G.722 (static PT 9, 8 kHz RTP clock).
    G722,
    /// RFC 4733 `telephone-event` (DTMF).
    TelephoneEvent,
}

impl AudioCodec {
    /// The RTP clock rate an SDP `rtpmap` usually gives this codec (RFC 3551 §4.5.2 for G.722's 8000).
    pub fn default_clock_rate(self) -> u32 {
        match self {
            AudioCodec::Opus => 48_000,
            AudioCodec::Pcmu | AudioCodec::Pcma | AudioCodec::G722 => 8_000,
            AudioCodec::TelephoneEvent => 8_000,
        }
    }
}

/// One payload type as each leg negotiated it, for the same codec and clock rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtPair {
    /// The codec.
    pub codec: AudioCodec,
    /// The RTP clock rate (both legs use the same one: no transcoding).
    pub clock_rate: u32,
    /// Channels from `rtpmap` (Opus: 2), if any.
    pub channels: Option<u8>,
    /// The payload type on the XMPP (Jingle) leg.
    pub xmpp: u8,
    /// The payload type on the SIP (SDP) leg.
    pub sip: u8,
}

impl PtPair {
    /// A pair with the codec's usual clock rate and channel count.
    pub fn new(codec: AudioCodec, xmpp: u8, sip: u8) -> Self {
        PtPair {
            codec,
            clock_rate: codec.default_clock_rate(),
            channels: (codec == AudioCodec::Opus).then_some(2),
            xmpp,
            sip,
        }
    }
}

/// The payload type table of one call: the rows both legs share. A packet whose payload type is
/// not in the table is dropped (RFC 3264 §5.1: only negotiated formats may be sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PtMap {
    pairs: Vec<PtPair>,
}

/// Why a payload type table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PtMapError {
    /// No row at all: there is nothing the call could carry (the gateway answers 488).
    #[error("no payload type shared by both legs")]
    Empty,
    /// A payload type outside 0..=127 (RFC 3550 §5.1: 7 bits).
    #[error("payload type {0} is not a 7-bit RTP payload type")]
    OutOfRange(u8),
    /// The same payload type appears twice on one leg.
    #[error("payload type {0} is used twice on the {1} leg")]
    Duplicate(u8, Leg),
    /// A payload type in the RTCP range 64..=95 (RFC 5761 §4), which cannot be demultiplexed.
    #[error("payload type {0} collides with RTCP packet types (RFC 5761 §4)")]
    RtcpCollision(u8),
}

impl PtMap {
    /// Checks and builds the table.
    pub fn new(pairs: Vec<PtPair>) -> Result<Self, PtMapError> {
        if pairs.is_empty() {
            return Err(PtMapError::Empty);
        }
        for (i, p) in pairs.iter().enumerate() {
            for pt in [p.xmpp, p.sip] {
                if pt > 127 {
                    return Err(PtMapError::OutOfRange(pt));
                }
                if (64..=95).contains(&pt) {
                    return Err(PtMapError::RtcpCollision(pt));
                }
            }
            if pairs[..i].iter().any(|q| q.xmpp == p.xmpp) {
                return Err(PtMapError::Duplicate(p.xmpp, Leg::Xmpp));
            }
            if pairs[..i].iter().any(|q| q.sip == p.sip) {
                return Err(PtMapError::Duplicate(p.sip, Leg::Sip));
            }
        }
        Ok(PtMap { pairs })
    }

    /// The rows.
    pub fn pairs(&self) -> &[PtPair] {
        &self.pairs
    }

    /// The row for a payload type arriving on `from`.
    pub fn lookup(&self, from: Leg, pt: u8) -> Option<&PtPair> {
        self.pairs.iter().find(|p| match from {
            Leg::Xmpp => p.xmpp == pt,
            Leg::Sip => p.sip == pt,
        })
    }
}

/// One of the two legs of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Leg {
    /// Toward the XMPP client: ICE + DTLS-SRTP.
    Xmpp,
    /// Toward the SIP phone: plain RTP.
    Sip,
}

impl std::fmt::Display for Leg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Leg::Xmpp => "XMPP",
            Leg::Sip => "SIP",
        })
    }
}

/// The header fields of an incoming packet that the rewriter needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InHeader {
    /// Sender's SSRC.
    pub ssrc: u32,
    /// 16-bit sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
}

/// The rewritten header fields of the outgoing packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutHeader {
    /// The relay's SSRC on the outgoing leg.
    pub ssrc: u32,
    /// 16-bit sequence number.
    pub seq: u16,
    /// Sequence number extended with the rollover count (RFC 3711 §3.3.1), starting below 65536.
    pub ext_seq: u64,
    /// RTP timestamp.
    pub timestamp: u32,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
}

/// The per-direction SSRC / sequence / timestamp mapping of RFC 3550 §8.2 for one outgoing stream.
///
/// The first source is mapped onto random bases; when a new incoming SSRC appears (a phone that
/// restarts its stream, a re-INVITE), the outgoing sequence continues at the next number and the
/// timestamp advances by the wall-clock time since the last packet, so the receiver sees one
/// continuous stream.
#[derive(Debug, Clone)]
pub struct SourceRewriter {
    out_ssrc: u32,
    seq_base: u16,
    ts_base: u32,
    source: Option<Source>,
    last: Option<(u64, u32, Instant)>,
}

impl SourceRewriter {
    /// A rewriter that sends as `out_ssrc`, starting at `seq_base` (kept below 2^15 so the ROC
    /// starts at zero with room to spare) and `ts_base`.
    pub fn new(out_ssrc: u32, seq_base: u16, ts_base: u32) -> Self {
        SourceRewriter {
            out_ssrc,
            seq_base: seq_base & 0x7fff,
            ts_base,
            source: None,
            last: None,
        }
    }

    /// The outgoing SSRC.
    pub fn out_ssrc(&self) -> u32 {
        self.out_ssrc
    }

    /// The last packet sent: extended sequence number and timestamp.
    pub fn last_sent(&self) -> Option<(u64, u32)> {
        self.last.map(|(s, t, _)| (s, t))
    }

    /// Rewrites one packet. `clock_rate` is the RTP clock of its payload type, used only to
    /// advance the timestamp across a source change.
    pub fn rewrite(&mut self, now: Instant, h: InHeader, clock_rate: u32) -> OutHeader {
        let source = match self.source {
            Some(s) if s.ssrc == h.ssrc => s,
            _ => {
                let (next_seq, next_ts) = match self.last {
                    None => (self.seq_base, self.ts_base),
                    Some((ext, ts, at)) => {
                        let elapsed = now
                            .saturating_duration_since(at)
                            .max(Duration::from_millis(1));
                        let ticks = (elapsed.as_secs_f64() * f64::from(clock_rate)) as u64;
                        ((ext as u16).wrapping_add(1), ts.wrapping_add(ticks as u32))
                    }
                };
                let s = Source {
                    ssrc: h.ssrc,
                    seq_offset: next_seq.wrapping_sub(h.seq),
                    ts_offset: next_ts.wrapping_sub(h.timestamp),
                };
                self.source = Some(s);
                s
            }
        };
        let seq = h.seq.wrapping_add(source.seq_offset);
        let timestamp = h.timestamp.wrapping_add(source.ts_offset);
        let ext_seq = match self.last {
            None => u64::from(seq),
            Some((prev, _, _)) => extend_seq(prev, seq),
        };
        let newest = self.last.is_none_or(|(prev, _, _)| ext_seq > prev);
        if newest {
            self.last = Some((ext_seq, timestamp, now));
        }
        OutHeader {
            ssrc: self.out_ssrc,
            seq,
            ext_seq,
            timestamp,
        }
    }
}

/// RFC 3711 §3.3.1: the extended sequence number closest to `prev` whose low 16 bits are `seq`.
pub fn extend_seq(prev: u64, seq: u16) -> u64 {
    let roc = prev >> 16;
    let candidates = [roc.checked_sub(1), Some(roc), roc.checked_add(1)];
    candidates
        .into_iter()
        .flatten()
        .map(|r| (r << 16) | u64::from(seq))
        .min_by_key(|c| c.abs_diff(prev))
        .unwrap_or(u64::from(seq))
}

/// RFC 7983 §7: what a datagram on the ICE socket is, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demux {
    /// 0..=3: STUN.
    Stun,
    /// 20..=63: DTLS.
    Dtls,
    /// 128..=191 with a payload type byte outside the RTCP range: SRTP.
    Rtp,
    /// 128..=191 with packet type 192..=223 (RFC 5761 §4): SRTCP.
    Rtcp,
    /// Anything else (ZRTP, TURN channels, garbage).
    Other,
}

/// Classifies a datagram per RFC 7983 §7 and RFC 5761 §4.
pub fn demux(datagram: &[u8]) -> Demux {
    match datagram.first() {
        Some(0..=3) => Demux::Stun,
        Some(20..=63) => Demux::Dtls,
        Some(128..=191) => match datagram.get(1) {
            Some(b) if (192..=223).contains(b) => Demux::Rtcp,
            Some(_) => Demux::Rtp,
            None => Demux::Other,
        },
        _ => Demux::Other,
    }
}

/// The SSRC of an RTP packet (bytes 8..12, RFC 3550 §5.1), if the datagram is long enough.
pub fn rtp_ssrc(datagram: &[u8]) -> Option<u32> {
    let b = datagram.get(8..12)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// DTLS role of an endpoint, RFC 4145 §4 `a=setup` / XEP-0320 `setup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Setup {
    /// Initiates the DTLS handshake (client).
    Active,
    /// Waits for the handshake (server).
    Passive,
    /// Either (only ever in an offer).
    Actpass,
}

impl Setup {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::Actpass => "actpass",
        }
    }
}

/// Why the remote `setup` cannot be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// Both ends would be the same DTLS role, or the answer said `actpass` (RFC 8842 §5.3).
    #[error("remote setup {remote:?} conflicts with ours ({ours:?})")]
    Conflict {
        /// What the remote said.
        remote: Setup,
        /// What we said.
        ours: Setup,
    },
}

/// The DTLS `setup` we announce on the XMPP leg (RFC 8842 §5.2–5.3 / RFC 5763 §5).
///
/// As the offerer we say `actpass` (RFC 8842 §5.2: the offerer MUST); the answer then fixes the
/// roles ([`resolve_setup`]). As the answerer to `actpass` we say `active` (RFC 5763 §5: the
/// answerer SHOULD be `active`); to `active`, `passive`; to `passive`, `active`. An answer is
/// never `actpass`.
pub fn our_setup(we_offer: bool, remote: Option<Setup>) -> Setup {
    match (we_offer, remote) {
        (true, _) => Setup::Actpass,
        (false, Some(Setup::Active)) => Setup::Passive,
        (false, _) => Setup::Active,
    }
}

/// Checks the remote's `setup` against ours once both are known.
pub fn check_setup(ours: Setup, remote: Setup) -> Result<(), SetupError> {
    match (ours, remote) {
        (Setup::Active, Setup::Passive) | (Setup::Passive, Setup::Active) => Ok(()),
        // An offer that says actpass, answered by us with a definite role.
        (Setup::Active | Setup::Passive, Setup::Actpass) => Ok(()),
        // Our actpass offer, answered with a definite role.
        (Setup::Actpass, Setup::Active | Setup::Passive) => Ok(()),
        (ours, remote) => Err(SetupError::Conflict { remote, ours }),
    }
}

/// Our DTLS role once the remote's `setup` is known (after [`check_setup`]): the opposite of
/// the answerer's when we offered `actpass`, else what we announced.
pub fn resolve_setup(ours: Setup, remote: Setup) -> Setup {
    match (ours, remote) {
        (Setup::Actpass, Setup::Passive) => Setup::Active,
        (Setup::Actpass, _) => Setup::Passive,
        (ours, _) => ours,
    }
}

/// RFC 4961 symmetric RTP: send to the address packets actually come from.
///
/// Until the first packet arrives the relay sends to the signalled address. The first source then
/// wins; another source takes over only after the latched one has been silent for
/// [`Latch::RELATCH_AFTER`] (a NAT rebinding), so a stray sender cannot hijack a live stream.
#[derive(Debug, Clone)]
pub struct Latch {
    signalled: Option<std::net::SocketAddr>,
    latched: Option<(std::net::SocketAddr, Instant)>,
}

impl Latch {
    /// Silence after which another source may take over.
    pub const RELATCH_AFTER: Duration = Duration::from_secs(2);

    /// A latch that sends to `signalled` until packets arrive.
    pub fn new(signalled: Option<std::net::SocketAddr>) -> Self {
        Latch {
            signalled,
            latched: None,
        }
    }

    /// Replaces the signalled address (an SDP answer or re-INVITE).
    pub fn set_signalled(&mut self, addr: std::net::SocketAddr) {
        self.signalled = Some(addr);
    }

    /// A valid packet arrived from `src`: returns whether it is accepted.
    pub fn on_packet(&mut self, now: Instant, src: std::net::SocketAddr) -> bool {
        match self.latched {
            Some((addr, _)) if addr == src => {
                self.latched = Some((src, now));
                true
            }
            Some((_, last)) if now.saturating_duration_since(last) < Self::RELATCH_AFTER => false,
            _ => {
                self.latched = Some((src, now));
                true
            }
        }
    }

    /// Where to send.
    pub fn destination(&self) -> Option<std::net::SocketAddr> {
        self.latched.map(|(a, _)| a).or(self.signalled)
    }

    /// Whether a packet has been latched.
    pub fn is_latched(&self) -> bool {
        self.latched.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(ssrc: u32, seq: u16, ts: u32) -> InHeader {
        InHeader {
            ssrc,
            seq,
            timestamp: ts,
        }
    }

    #[test]
    fn pt_map_refuses_bad_tables() {
        assert_eq!(PtMap::new(vec![]), Err(PtMapError::Empty));
        let opus = PtPair::new(AudioCodec::Opus, 111, 96);
        assert_eq!(
            PtMap::new(vec![opus, PtPair::new(AudioCodec::Pcmu, 111, 0)]),
            Err(PtMapError::Duplicate(111, Leg::Xmpp))
        );
        assert_eq!(
            PtMap::new(vec![opus, PtPair::new(AudioCodec::Pcmu, 0, 96)]),
            Err(PtMapError::Duplicate(96, Leg::Sip))
        );
        assert_eq!(
            PtMap::new(vec![PtPair::new(AudioCodec::Opus, 72, 96)]),
            Err(PtMapError::RtcpCollision(72))
        );
        assert_eq!(
            PtMap::new(vec![PtPair::new(AudioCodec::Opus, 111, 128)]),
            Err(PtMapError::OutOfRange(128))
        );
    }

    #[test]
    fn pt_map_looks_up_both_ways() {
        let map = PtMap::new(vec![
            PtPair::new(AudioCodec::Opus, 111, 96),
            PtPair::new(AudioCodec::TelephoneEvent, 126, 101),
        ])
        .unwrap();
        assert_eq!(map.lookup(Leg::Xmpp, 111).map(|p| p.sip), Some(96));
        assert_eq!(map.lookup(Leg::Sip, 96).map(|p| p.xmpp), Some(111));
        assert_eq!(map.lookup(Leg::Sip, 101).map(|p| p.xmpp), Some(126));
        assert_eq!(map.lookup(Leg::Sip, 111), None);
        assert_eq!(map.lookup(Leg::Xmpp, 0), None);
    }

    #[test]
    fn rewriter_maps_onto_bases_and_keeps_gaps_and_order() {
        let t0 = Instant::now();
        let mut r = SourceRewriter::new(0xAAAA, 1000, 5000);
        let a = r.rewrite(t0, h(7, 60_000, 90_000), 8000);
        assert_eq!(
            (a.ssrc, a.seq, a.ext_seq, a.timestamp),
            (0xAAAA, 1000, 1000, 5000)
        );
        // A gap of one packet stays a gap.
        let b = r.rewrite(t0, h(7, 60_002, 90_320), 8000);
        assert_eq!((b.seq, b.timestamp), (1002, 5320));
        // A late packet keeps its place.
        let c = r.rewrite(t0, h(7, 60_001, 90_160), 8000);
        assert_eq!((c.seq, c.ext_seq, c.timestamp), (1001, 1001, 5160));
        assert_eq!(r.last_sent(), Some((1002, 5320)));
    }

    #[test]
    fn rewriter_continues_across_a_new_source() {
        let t0 = Instant::now();
        let mut r = SourceRewriter::new(1, 10, 0);
        r.rewrite(t0, h(7, 500, 1000), 8000);
        let later = t0 + Duration::from_millis(100);
        let n = r.rewrite(later, h(9, 3, 77), 8000);
        assert_eq!(n.ssrc, 1);
        assert_eq!(n.seq, 11);
        // 100 ms at 8 kHz.
        assert_eq!(n.timestamp, 800);
        let n2 = r.rewrite(later, h(9, 4, 237), 8000);
        assert_eq!((n2.seq, n2.timestamp), (12, 960));
    }

    #[test]
    fn rewriter_extends_across_the_16_bit_wrap() {
        let t0 = Instant::now();
        let mut r = SourceRewriter::new(1, 0x7fff, 0);
        // seq_base is masked below 2^15; walk over the 16-bit boundary.
        let first = r.rewrite(t0, h(5, 0, 0), 8000);
        assert_eq!(first.ext_seq, 0x7fff);
        let mut last = first;
        for i in 1..=40_000u32 {
            last = r.rewrite(t0, h(5, i as u16, i * 160), 8000);
        }
        assert_eq!(last.ext_seq, 0x7fff + 40_000);
        assert_eq!(last.seq, (0x7fffu32 + 40_000) as u16);
    }

    #[test]
    fn extend_seq_picks_the_nearest_rollover() {
        assert_eq!(extend_seq(65_535, 0), 65_536);
        assert_eq!(extend_seq(65_536, 65_535), 65_535);
        assert_eq!(extend_seq(10, 12), 12);
        assert_eq!(extend_seq(0, 65_535), 65_535);
    }

    #[test]
    fn demux_follows_rfc7983() {
        assert_eq!(demux(&[0, 1]), Demux::Stun);
        assert_eq!(demux(&[22, 254]), Demux::Dtls);
        assert_eq!(demux(&[0x80, 111]), Demux::Rtp);
        assert_eq!(demux(&[0x80, 0x80 | 111]), Demux::Rtp);
        assert_eq!(demux(&[0x81, 200]), Demux::Rtcp);
        assert_eq!(demux(&[0x80]), Demux::Other);
        assert_eq!(demux(&[]), Demux::Other);
        assert_eq!(demux(&[64]), Demux::Other);
        assert_eq!(
            rtp_ssrc(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]),
            Some(0xdeadbeef)
        );
        assert_eq!(rtp_ssrc(&[0x80, 0, 0, 1]), None);
    }

    #[test]
    fn setup_offers_actpass_and_answers_a_definite_role() {
        for remote in [None, Some(Setup::Active), Some(Setup::Passive)] {
            assert_eq!(our_setup(true, remote), Setup::Actpass);
        }
        for remote in [
            None,
            Some(Setup::Active),
            Some(Setup::Passive),
            Some(Setup::Actpass),
        ] {
            assert_ne!(
                our_setup(false, remote),
                Setup::Actpass,
                "answer to {remote:?}"
            );
        }
        assert_eq!(our_setup(false, Some(Setup::Actpass)), Setup::Active);
        assert_eq!(our_setup(false, Some(Setup::Active)), Setup::Passive);
        assert_eq!(our_setup(false, Some(Setup::Passive)), Setup::Active);
        assert!(check_setup(Setup::Passive, Setup::Active).is_ok());
        assert!(check_setup(Setup::Active, Setup::Actpass).is_ok());
        assert!(check_setup(Setup::Actpass, Setup::Active).is_ok());
        assert!(check_setup(Setup::Actpass, Setup::Passive).is_ok());
        assert!(check_setup(Setup::Actpass, Setup::Actpass).is_err());
        assert!(check_setup(Setup::Passive, Setup::Passive).is_err());
        assert!(check_setup(Setup::Active, Setup::Active).is_err());
        assert_eq!(resolve_setup(Setup::Actpass, Setup::Active), Setup::Passive);
        assert_eq!(resolve_setup(Setup::Actpass, Setup::Passive), Setup::Active);
        assert_eq!(resolve_setup(Setup::Active, Setup::Actpass), Setup::Active);
        assert_eq!(resolve_setup(Setup::Passive, Setup::Active), Setup::Passive);
    }

    #[test]
    fn latch_follows_the_first_source_and_relatches_after_silence() {
        let a: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let b: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let s: std::net::SocketAddr = "127.0.0.1:6000".parse().unwrap();
        let t0 = Instant::now();
        let mut l = Latch::new(Some(s));
        assert_eq!(l.destination(), Some(s));
        assert!(l.on_packet(t0, a));
        assert_eq!(l.destination(), Some(a));
        assert!(!l.on_packet(t0 + Duration::from_millis(500), b));
        assert_eq!(l.destination(), Some(a));
        assert!(l.on_packet(t0 + Duration::from_secs(3), b));
        assert_eq!(l.destination(), Some(b));
    }
}

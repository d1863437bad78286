//! RFC 3550 §6: the RTCP the relay itself sends and reads on the SIP leg.
//!
//! The two legs are separate RTP sessions, so RTCP is not forwarded: on the XMPP leg str0m
//! generates its own reports for the streams it sends and receives, and on the SIP leg the relay
//! sends a compound SR (or RR, before it has sent anything) with one reception report block for
//! the phone's source, plus an SDES CNAME (§6.1), every [`REPORT_INTERVAL`] (§6.2 minimum 5 s),
//! and a BYE (§6.6) at hang-up. The phone's RTCP is parsed to keep LSR/DLSR honest and is
//! otherwise only counted: its SSRCs never reach the XMPP leg.

use std::time::{Duration, Instant};

use rtcp_types::{
    Bye, Compound, CompoundBuilder, Packet, ReceiverReport, ReportBlock, RtcpPacketWriterExt,
    RtcpWriteError, Sdes, SdesChunk, SdesItem, SenderReport,
};

use super::rewrite::extend_seq;

/// RFC 3550 §6.2: the recommended minimum report interval.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Seconds from the NTP era (1900) to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// RFC 3550 §4: 64-bit NTP timestamp of a time since the Unix epoch.
pub fn ntp_from_unix(since_epoch: Duration) -> u64 {
    let secs = since_epoch.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Reception statistics of the phone's source (RFC 3550 §6.4.1, Appendix A.3), simplified: no
/// probation and no jitter estimate.
#[derive(Debug, Clone, Default)]
pub struct Reception {
    ssrc: Option<u32>,
    base: u64,
    max: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    last_sr: Option<(u32, Instant)>,
}

impl Reception {
    /// An RTP packet from the phone.
    pub fn on_rtp(&mut self, ssrc: u32, seq: u16) {
        if self.ssrc != Some(ssrc) {
            *self = Reception {
                ssrc: Some(ssrc),
                base: u64::from(seq),
                max: u64::from(seq),
                received: 0,
                ..Reception::default()
            };
        }
        let ext = extend_seq(self.max, seq);
        self.max = self.max.max(ext);
        self.base = self.base.min(ext);
        self.received += 1;
    }

    /// A sender report from the phone arrived at `now` (for LSR/DLSR).
    pub fn on_sender_report(&mut self, now: Instant, ssrc: u32, ntp: u64) {
        if self.ssrc == Some(ssrc) {
            self.last_sr = Some(((ntp >> 16) as u32, now));
        }
    }

    /// The report block for the next report, and the interval bookkeeping (§6.4.1, A.3).
    fn block(&mut self, now: Instant) -> Option<rtcp_types::ReportBlockBuilder> {
        let ssrc = self.ssrc?;
        let expected = self.max - self.base + 1;
        let lost = expected.saturating_sub(self.received);
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        let (lsr, dlsr) = match self.last_sr {
            Some((lsr, at)) => {
                let d = now.saturating_duration_since(at);
                (lsr, (d.as_secs_f64() * 65_536.0) as u32)
            }
            None => (0, 0),
        };
        Some(
            ReportBlock::builder(ssrc)
                .fraction_lost(fraction)
                .cumulative_lost(lost.min(0x7f_ffff) as u32)
                .extended_sequence_number(self.max as u32)
                .last_sender_report_timestamp(lsr)
                .delay_since_last_sender_report_timestamp(dlsr),
        )
    }
}

/// What the relay has sent on the SIP leg, for the SR sender info (§6.4.1).
#[derive(Debug, Clone, Copy)]
pub struct SentInfo {
    /// NTP time of the report.
    pub ntp: u64,
    /// The RTP timestamp corresponding to `ntp`.
    pub rtp_timestamp: u32,
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
}

/// A compound SR or RR + SDES CNAME from `ssrc`.
pub fn report(
    now: Instant,
    ssrc: u32,
    cname: &str,
    sent: Option<SentInfo>,
    reception: &mut Reception,
) -> Result<Vec<u8>, RtcpWriteError> {
    let block = reception.block(now);
    let sdes = Sdes::builder()
        .add_chunk(SdesChunk::builder(ssrc).add_item(SdesItem::builder(SdesItem::CNAME, cname)));
    let compound = match sent {
        Some(s) => {
            let mut sr = SenderReport::builder(ssrc)
                .ntp_timestamp(s.ntp)
                .rtp_timestamp(s.rtp_timestamp)
                .packet_count(s.packets)
                .octet_count(s.octets);
            if let Some(b) = block {
                sr = sr.add_report_block(b);
            }
            Compound::builder().add_packet(sr).add_packet(sdes)
        }
        None => {
            let mut rr = ReceiverReport::builder(ssrc);
            if let Some(b) = block {
                rr = rr.add_report_block(b);
            }
            Compound::builder().add_packet(rr).add_packet(sdes)
        }
    };
    write(&compound)
}

/// RFC 3550 §6.6: a compound RR + BYE for `ssrc`.
pub fn bye(ssrc: u32) -> Result<Vec<u8>, RtcpWriteError> {
    let compound = Compound::builder()
        .add_packet(ReceiverReport::builder(ssrc))
        .add_packet(Bye::builder().add_source(ssrc));
    write(&compound)
}

fn write(compound: &CompoundBuilder<'_>) -> Result<Vec<u8>, RtcpWriteError> {
    use rtcp_types::RtcpPacketWriter;
    let mut buf = vec![0; compound.calculate_size()?];
    let n = compound.write_into(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Reads an RTCP compound from the phone: returns the sender reports it carries as
/// `(ssrc, ntp)`, or `None` if the datagram is not valid RTCP (§6.1).
pub fn sender_reports(datagram: &[u8]) -> Option<Vec<(u32, u64)>> {
    let compound = Compound::parse(datagram).ok()?;
    let mut out = Vec::new();
    for packet in compound {
        if let Packet::Sr(sr) = packet.ok()? {
            out.push((sr.ssrc(), sr.ntp_timestamp()));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_epoch_offset() {
        assert_eq!(ntp_from_unix(Duration::ZERO), NTP_UNIX_OFFSET << 32);
        assert_eq!(
            ntp_from_unix(Duration::from_millis(1500)),
            ((NTP_UNIX_OFFSET + 1) << 32) | (1 << 31)
        );
    }

    #[test]
    fn sender_report_round_trips_with_a_block_for_the_phone() {
        let t0 = Instant::now();
        let mut rx = Reception::default();
        for seq in [10u16, 11, 13, 14] {
            rx.on_rtp(0xfeed, seq);
        }
        rx.on_sender_report(t0, 0xfeed, 0x1122_3344_5566_7788);
        let sent = SentInfo {
            ntp: 0xAABB_CCDD_0000_0000,
            rtp_timestamp: 1234,
            packets: 50,
            octets: 8000,
        };
        let bytes = report(
            t0 + Duration::from_secs(1),
            0xbeef,
            "stox",
            Some(sent),
            &mut rx,
        )
        .unwrap();
        let compound = Compound::parse(&bytes).unwrap();
        let packets: Vec<_> = compound.map(|p| p.unwrap()).collect();
        assert_eq!(packets.len(), 2);
        let Packet::Sr(sr) = &packets[0] else {
            panic!("first packet must be the SR: {packets:?}")
        };
        assert_eq!(
            (sr.ssrc(), sr.packet_count(), sr.octet_count()),
            (0xbeef, 50, 8000)
        );
        let block = sr.report_blocks().next().unwrap();
        assert_eq!(block.ssrc(), 0xfeed);
        assert_eq!(block.cumulative_lost(), 1);
        assert_eq!(block.extended_sequence_number(), 14);
        // 1 lost of 5 expected: 51/256.
        assert_eq!(block.fraction_lost(), 51);
        assert_eq!(block.last_sender_report_timestamp(), 0x3344_5566);
        assert_eq!(block.delay_since_last_sender_report_timestamp(), 65_536);
        assert!(matches!(packets[1], Packet::Sdes(_)));
        assert_eq!(
            sender_reports(&bytes),
            Some(vec![(0xbeef, 0xAABB_CCDD_0000_0000)])
        );
    }

    #[test]
    fn receiver_report_before_sending_and_bye() {
        let mut rx = Reception::default();
        let bytes = report(Instant::now(), 7, "stox", None, &mut rx).unwrap();
        let packets: Vec<_> = Compound::parse(&bytes)
            .unwrap()
            .map(|p| p.unwrap())
            .collect();
        assert!(matches!(&packets[0], Packet::Rr(rr) if rr.ssrc() == 7 && rr.n_reports() == 0));
        let bye = bye(7).unwrap();
        let packets: Vec<_> = Compound::parse(&bye).unwrap().map(|p| p.unwrap()).collect();
        assert!(matches!(&packets[1], Packet::Bye(b) if b.ssrcs().collect::<Vec<_>>() == vec![7]));
        assert_eq!(sender_reports(&[0x80, 0, 0]), None);
    }
}

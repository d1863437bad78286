//! Offer/answer for the relay (RFC 3264): which codecs a call can carry without transcoding,
//! and the description each leg is given.
//!
//! The relay passes Opus, PCMU, PCMA, G.722 and RFC 4733 `telephone-event` through unchanged
//! ([`AudioCodec`]), so a call carries only codecs both ends offered or answered. stox keeps
//! the offerer's payload type numbers on both legs (RFC 3264 §6.1: the answerer uses the
//! offer's numbers), which makes the [`PtMap`] an identity per codec.
//!
//! The four descriptions stox writes:
//!
//! | call | offer stox writes | answer stox writes |
//! |---|---|---|
//! | SIP → XMPP | [`xmpp_offer`]: the SIP offer's relayable codecs, ICE + DTLS of the relay | [`sip_answer`]: the codecs the XMPP answer kept, the relay's SIP-leg address |
//! | XMPP → SIP | [`sip_offer`]: the Jingle offer's relayable codecs, plain RTP/AVP | [`xmpp_answer`]: the codecs the SIP answer kept, ICE + DTLS of the relay |
//!
//! Only the first audio content is bridged (the relay carries one audio stream): other
//! contents are left out of what stox writes (video comes later).

use stox_xmpp::jingle::{
    Candidate, CandidateType, Content, Creator, Fingerprint, Group, IceTransport, PayloadType,
    RtpDescription, Senders, Setup as JingleSetup, Source,
};

use super::relay::{AudioCodec, CallStarted, PtMap, PtPair, RemoteCandidate, Setup, XmppRemote};
use super::sdp_jingle::JingleMedia;

/// Why a call cannot be bridged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// No audio content / m-line.
    #[error("the offer has no audio stream")]
    NoAudio,
    /// No codec the relay passes through (Opus, PCMU, PCMA, G.722).
    #[error("no codec in common: the relay passes Opus, PCMU, PCMA and G.722 without transcoding")]
    NoCommonCodec,
    /// The XMPP side lacks ICE credentials or the DTLS fingerprint (XEP-0176, XEP-0320).
    #[error("the Jingle description lacks {0}")]
    MissingTransport(&'static str),
}

/// The relay codec of a payload type, by name and clock rate (or static number, RFC 3551).
pub fn codec_of(pt: &PayloadType) -> Option<AudioCodec> {
    let rate = pt.clockrate;
    match pt.name.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("opus") if rate == Some(48_000) => Some(AudioCodec::Opus),
        Some("pcmu") if rate.unwrap_or(8000) == 8000 => Some(AudioCodec::Pcmu),
        Some("pcma") if rate.unwrap_or(8000) == 8000 => Some(AudioCodec::Pcma),
        Some("g722") if rate.unwrap_or(8000) == 8000 => Some(AudioCodec::G722),
        Some("telephone-event") if matches!(rate, Some(8000) | Some(48_000)) => {
            Some(AudioCodec::TelephoneEvent)
        }
        Some(_) => None,
        None => match pt.id {
            0 => Some(AudioCodec::Pcmu),
            8 => Some(AudioCodec::Pcma),
            9 => Some(AudioCodec::G722),
            _ => None,
        },
    }
}

fn clock_of(pt: &PayloadType, codec: AudioCodec) -> u32 {
    pt.clockrate.unwrap_or_else(|| codec.default_clock_rate())
}

/// The first audio content of a description.
pub fn audio_content(media: &JingleMedia) -> Option<&Content> {
    media
        .contents
        .iter()
        .find(|c| c.description.as_ref().is_some_and(|d| d.media == "audio"))
}

/// What an offer leaves the relay to carry: its audio content, the relayable payload types in
/// the offer's order, and the payload type table (identity numbers).
#[derive(Debug, Clone, PartialEq)]
pub struct Relayable {
    /// The offer's audio content (name, senders, transport).
    pub content: Content,
    /// Its relayable payload types, as offered.
    pub payload_types: Vec<PayloadType>,
    /// One row per payload type, the same number on both legs.
    pub pt_map: PtMap,
}

/// Reads an offer (either leg) down to what the relay can carry.
pub fn relayable(offer: &JingleMedia) -> Result<Relayable, NegotiationError> {
    let content = audio_content(offer).ok_or(NegotiationError::NoAudio)?;
    let desc = content
        .description
        .as_ref()
        .ok_or(NegotiationError::NoAudio)?;
    let mut payload_types = Vec::new();
    let mut rows = Vec::new();
    for pt in &desc.payload_types {
        let Some(codec) = codec_of(pt) else { continue };
        if rows.iter().any(|r: &PtPair| r.xmpp == pt.id) {
            continue;
        }
        let mut row = PtPair::new(codec, pt.id, pt.id);
        row.clock_rate = clock_of(pt, codec);
        row.channels = (pt.channels > 1).then_some(pt.channels);
        if codec == AudioCodec::Opus {
            row.channels = Some(2);
        }
        rows.push(row);
        payload_types.push(pt.clone());
    }
    if !rows.iter().any(|r| r.codec != AudioCodec::TelephoneEvent) {
        return Err(NegotiationError::NoCommonCodec);
    }
    let pt_map = PtMap::new(rows).map_err(|_| NegotiationError::NoCommonCodec)?;
    Ok(Relayable {
        content: content.clone(),
        payload_types,
        pt_map,
    })
}

/// The offer's payload types that an answer kept, in the answer's order (matched by number,
/// else by codec and clock rate). Errors when no audio codec is left.
pub fn answered(
    offer: &Relayable,
    answer: &JingleMedia,
) -> Result<Vec<PayloadType>, NegotiationError> {
    let content = audio_content(answer).ok_or(NegotiationError::NoAudio)?;
    let desc = content
        .description
        .as_ref()
        .ok_or(NegotiationError::NoAudio)?;
    let mut kept: Vec<PayloadType> = Vec::new();
    for a in &desc.payload_types {
        let found = offer
            .payload_types
            .iter()
            .find(|o| o.id == a.id)
            .or_else(|| {
                let codec = codec_of(a)?;
                offer.payload_types.iter().find(|o| {
                    codec_of(o) == Some(codec) && clock_of(o, codec) == clock_of(a, codec)
                })
            });
        if let Some(o) = found {
            if !kept.iter().any(|k| k.id == o.id) {
                kept.push(o.clone());
            }
        }
    }
    if !kept
        .iter()
        .any(|p| codec_of(p).is_some_and(|c| c != AudioCodec::TelephoneEvent))
    {
        return Err(NegotiationError::NoCommonCodec);
    }
    Ok(kept)
}

/// The name of the codec that carries the voice (the first non-DTMF one), for logs and the API.
pub fn voice_codec(pts: &[PayloadType]) -> String {
    pts.iter()
        .find(|p| codec_of(p).is_some_and(|c| c != AudioCodec::TelephoneEvent))
        .map(|p| {
            let name = p.name.clone().unwrap_or_else(|| match p.id {
                0 => "PCMU".into(),
                8 => "PCMA".into(),
                9 => "G722".into(),
                n => n.to_string(),
            });
            format!("{name}/{}", p.clockrate.unwrap_or(8000))
        })
        .unwrap_or_default()
}

/// Only what a plain RTP/AVP phone needs of a payload type (no XEP-0293 feedback).
fn plain(pt: &PayloadType) -> PayloadType {
    PayloadType {
        rtcp_fb: Vec::new(),
        ..pt.clone()
    }
}

/// XEP-0339: the SSRC the relay sends with on the XMPP leg (Monal's parser wants it).
fn our_source(started: &CallStarted) -> Vec<Source> {
    vec![Source {
        ssrc: started.xmpp.ssrc,
        params: vec![("cname".to_owned(), Some("stox".to_owned()))],
    }]
}

fn relay_transport(started: &CallStarted, setup: Setup) -> IceTransport {
    let x = &started.xmpp;
    IceTransport {
        ufrag: Some(x.ufrag.clone()),
        pwd: Some(x.pwd.clone()),
        candidates: x
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| Candidate {
                component: u8::try_from(c.component).unwrap_or(1),
                foundation: c.foundation.clone(),
                generation: Some(0),
                id: Some(format!("stox{i}")),
                ip: c.addr.ip().to_string(),
                port: c.addr.port(),
                priority: c.priority,
                protocol: c.protocol.clone(),
                typ: CandidateType::Host,
                rel_addr: None,
                rel_port: None,
                network: None,
            })
            .collect(),
        fingerprint: Some(Fingerprint {
            hash: x.fingerprint_hash.clone(),
            setup: Some(match setup {
                Setup::Active => JingleSetup::Active,
                Setup::Passive => JingleSetup::Passive,
                Setup::Actpass => JingleSetup::Actpass,
            }),
            value: x.fingerprint.clone(),
        }),
        gathering_complete: false,
    }
}

fn sip_transport(started: &CallStarted) -> IceTransport {
    let rtp = started.sip.rtp;
    IceTransport {
        candidates: vec![Candidate {
            component: 1,
            foundation: "1".into(),
            generation: None,
            id: None,
            ip: rtp.ip().to_string(),
            port: rtp.port(),
            priority: 1,
            protocol: "udp".into(),
            typ: CandidateType::Host,
            rel_addr: None,
            rel_port: None,
            network: None,
        }],
        ..IceTransport::default()
    }
}

/// SIP → XMPP: the `session-initiate` contents for the SIP offer. `content_name` must be the
/// one the relay's XMPP leg was started with.
pub fn xmpp_offer(offer: &Relayable, started: &CallStarted, content_name: &str) -> JingleMedia {
    let mut desc = RtpDescription::new("audio");
    desc.payload_types = offer.payload_types.iter().map(plain).collect();
    desc.rtcp_mux = true;
    desc.sources = our_source(started);
    JingleMedia {
        contents: vec![Content {
            creator: Creator::Initiator,
            name: content_name.to_owned(),
            senders: Senders::Both,
            description: Some(desc),
            transport: Some(relay_transport(started, started.xmpp.setup)),
        }],
        group: Some(Group {
            semantics: "BUNDLE".into(),
            contents: vec![content_name.to_owned()],
        }),
    }
}

/// SIP → XMPP: the SDP answer's media for the SIP phone: the codecs the XMPP answer kept, with
/// the SIP offer's own parameters, at the relay's SIP-leg address.
pub fn sip_answer(
    sip_offer: &Relayable,
    kept: &[PayloadType],
    started: &CallStarted,
) -> JingleMedia {
    let offered = sip_offer.content.description.as_ref();
    let mut desc = RtpDescription::new("audio");
    desc.payload_types = kept.iter().map(plain).collect();
    desc.rtcp_mux = offered.is_some_and(|d| d.rtcp_mux);
    JingleMedia {
        contents: vec![Content {
            creator: Creator::Initiator,
            name: sip_offer.content.name.clone(),
            senders: sip_offer.content.senders,
            description: Some(desc),
            transport: Some(sip_transport(started)),
        }],
        group: None,
    }
}

/// XMPP → SIP: the SDP offer's media for the SIP phone: the Jingle offer's relayable codecs,
/// plain RTP/AVP at the relay's SIP-leg address.
pub fn sip_offer(xmpp_offer: &Relayable, started: &CallStarted) -> JingleMedia {
    let mut desc = RtpDescription::new("audio");
    desc.payload_types = xmpp_offer.payload_types.iter().map(plain).collect();
    JingleMedia {
        contents: vec![Content {
            creator: Creator::Initiator,
            name: "audio".into(),
            senders: Senders::Both,
            description: Some(desc),
            transport: Some(sip_transport(started)),
        }],
        group: None,
    }
}

/// XMPP → SIP: the `session-accept` contents: the codecs the SIP answer kept (with the Jingle
/// offer's numbers and parameters), ICE + DTLS of the relay.
pub fn xmpp_answer(
    xmpp_offer: &Relayable,
    kept: &[PayloadType],
    started: &CallStarted,
) -> JingleMedia {
    let offered = xmpp_offer.content.description.as_ref();
    let mut desc = RtpDescription::new("audio");
    desc.payload_types = kept.to_vec();
    desc.rtcp_mux = offered.is_none_or(|d| d.rtcp_mux);
    desc.sources = our_source(started);
    let name = xmpp_offer.content.name.clone();
    JingleMedia {
        contents: vec![Content {
            creator: xmpp_offer.content.creator,
            name: name.clone(),
            senders: xmpp_offer.content.senders,
            description: Some(desc),
            transport: Some(relay_transport(started, started.xmpp.setup)),
        }],
        group: Some(Group {
            semantics: "BUNDLE".into(),
            contents: vec![name],
        }),
    }
}

/// A remote XEP-0176 candidate the relay can use (UDP, an IP literal: mDNS `.local` names are
/// not resolved).
pub fn remote_candidate(c: &Candidate) -> Option<RemoteCandidate> {
    if !c.protocol.eq_ignore_ascii_case("udp") {
        return None;
    }
    let ip: std::net::IpAddr = c.ip.parse().ok()?;
    let related = match (&c.rel_addr, c.rel_port) {
        (Some(a), Some(p)) => a
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| std::net::SocketAddr::new(ip, p)),
        _ => None,
    };
    Some(RemoteCandidate {
        foundation: c.foundation.clone(),
        component: u16::from(c.component),
        protocol: "udp".into(),
        priority: c.priority,
        addr: std::net::SocketAddr::new(ip, c.port),
        kind: c.typ.as_str().to_owned(),
        related,
    })
}

/// The XMPP remote of the relay from a Jingle transport (offer or answer).
pub fn xmpp_remote(
    transport: Option<&IceTransport>,
    ssrcs: Vec<u32>,
) -> Result<XmppRemote, NegotiationError> {
    let t = transport.ok_or(NegotiationError::MissingTransport("an ICE-UDP transport"))?;
    let ufrag = t
        .ufrag
        .clone()
        .ok_or(NegotiationError::MissingTransport("the ICE ufrag"))?;
    let pwd = t
        .pwd
        .clone()
        .ok_or(NegotiationError::MissingTransport("the ICE pwd"))?;
    let f = t
        .fingerprint
        .as_ref()
        .ok_or(NegotiationError::MissingTransport(
            "the DTLS fingerprint (XEP-0320)",
        ))?;
    let setup = match f.setup {
        Some(JingleSetup::Active) => Setup::Active,
        Some(JingleSetup::Passive) => Setup::Passive,
        _ => Setup::Actpass,
    };
    Ok(XmppRemote {
        ufrag,
        pwd,
        fingerprint_hash: f.hash.clone(),
        fingerprint: f.value.clone(),
        setup,
        ssrcs,
        candidates: t.candidates.iter().filter_map(remote_candidate).collect(),
    })
}

/// The SSRCs an RTP description announces (XEP-0339).
pub fn ssrcs(content: &Content) -> Vec<u32> {
    content
        .description
        .as_ref()
        .map(|d| {
            let mut v: Vec<u32> = d.sources.iter().map(|s| s.ssrc).collect();
            v.extend(d.ssrc);
            v.dedup();
            v
        })
        .unwrap_or_default()
}

/// The plain-RTP remote address of a SIP description: the best component-1 host candidate that
/// [`super::sdp_jingle::sdp_to_jingle`] made of `c=` and the `m=` port; `None` for a port of
/// 0 or the `0.0.0.0` hold address.
pub fn sip_remote(content: &Content) -> Option<std::net::SocketAddr> {
    let t = content.transport.as_ref()?;
    let c = t
        .candidates
        .iter()
        .filter(|c| c.component == 1)
        .max_by_key(|c| c.priority)?;
    let ip: std::net::IpAddr = c.ip.parse().ok()?;
    (!ip.is_unspecified() && c.port != 0).then(|| std::net::SocketAddr::new(ip, c.port))
}

/// A relay answer with fixed, recognisable values (ports 40000-40002 on 127.0.0.1), for the
/// tests of this module and of the call bridge.
#[cfg(test)]
pub(crate) mod testing {
    use crate::media::relay::{CallId, CallStarted, LocalCandidate, Setup, SipLocal, XmppLocal};

    /// What `Relay::spawn_call` would answer, with our DTLS `setup`.
    pub(crate) fn started(setup: Setup) -> CallStarted {
        let addr = |p| std::net::SocketAddr::from(([127, 0, 0, 1], p));
        CallStarted {
            id: CallId(1),
            xmpp: XmppLocal {
                ufrag: "uf".into(),
                pwd: "pwpwpwpwpwpwpwpwpwpwpwpw".into(),
                fingerprint_hash: "sha-256".into(),
                fingerprint: "AB:CD".into(),
                setup,
                candidates: vec![LocalCandidate {
                    foundation: "1".into(),
                    component: 1,
                    protocol: "udp".into(),
                    priority: 2_130_706_431,
                    addr: addr(40002),
                    kind: "host".into(),
                }],
                ssrc: 1234,
            },
            sip: SipLocal {
                rtp: addr(40000),
                rtcp: addr(40001),
                ssrc: 5678,
            },
        }
    }
}

#[cfg(test)]
mod tests;

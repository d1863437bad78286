//! SDP ⇄ Jingle RTP sessions: STOX-MAPPING.md §7, assembled from XEP-0167 §4–§7,
//! XEP-0176, XEP-0293, XEP-0294, XEP-0320, XEP-0338, XEP-0339, RFC 3264, RFC 8839 and
//! RFC 8842.
//!
//! Pure functions on typed values: [`sdp_types::Session`] on one side, [`JingleMedia`] (the
//! contents and BUNDLE group of a [`Jingle`] element) on the other.
//!
//! | SDP | Jingle |
//! |---|---|
//! | `m=` line | `<content>` + `<description media>` |
//! | `a=mid` | content `name` (the media type when there is no mid) |
//! | `a=rtpmap` / `a=fmtp` | `<payload-type id name clockrate channels>` / `<parameter name value?>` |
//! | `a=ptime` / `a=maxptime` | payload-type `ptime` / `maxptime` (on every payload type) |
//! | `a=rtcp-fb:PT` / `a=rtcp-fb:*` | payload-type / description `<rtcp-fb type subtype>` |
//! | `a=extmap[/dir]`, `a=extmap-allow-mixed` | `<rtp-hdrext id uri senders>`, `<extmap-allow-mixed/>` |
//! | `a=rtcp-mux` | `<rtcp-mux/>` |
//! | `a=ssrc`, `a=ssrc-group`, `a=msid` | `<source>`, `<ssrc-group>`, `<stream id track>` |
//! | `a=crypto` | `<encryption><crypto/>` |
//! | `b=` | `<bandwidth type>` |
//! | `a=ice-ufrag` / `a=ice-pwd` / `a=candidate` / `a=end-of-candidates` | ICE-UDP `<transport ufrag pwd>` / `<candidate>` / `<gathering-complete/>` |
//! | `a=fingerprint` + `a=setup` | `<fingerprint hash setup>` |
//! | `a=group:BUNDLE` | `<group semantics='BUNDLE'>` |
//! | `a=sendrecv/sendonly/recvonly/inactive` | content `senders`, see [`direction_to_senders`] |
//! | `c=` + `m=` port of a plain-RTP SDP | a host `<candidate>` without ufrag, see below |
//!
//! **Direction.** XEP-0166 `senders` names parties of the *session* (initiator, responder);
//! an SDP direction is seen from the *writer* of that SDP. So every conversion takes the
//! [`Role`] the SDP speaks for: the SDP offer that becomes a `session-initiate` speaks for the
//! initiator; the SDP answer built from a `session-accept` speaks for the responder.
//!
//! **Plain RTP.** An SDP without ICE (`baresip`, `linphone`, SIP phones) becomes a transport
//! without `ufrag` holding host candidates for the `c=` address and `m=` port (component 2 at
//! port + 1 unless `rtcp-mux`); back to SDP such a transport gives `c=` and the port of the
//! best component-1 candidate and no ICE attributes. An ICE transport gives the ICE attributes,
//! with `c=`/port from the best candidate (RFC 8839 §4.2.1.1 default candidate), or
//! `IN IP4 0.0.0.0` and port 9 when no candidate is known yet (trickle, RFC 8840).
//!
//! **Not carried** (no counterpart, or nothing stox needs): `m=` lines with port 0 and
//! non-RTP `m=` lines are skipped (rejected streams simply have no content in Jingle); the SDP
//! profile is derived again (`UDP/TLS/RTP/SAVPF` with a fingerprint, `RTP/SAVP` with SDES,
//! else `RTP/AVP`); `a=rtcp`, `a=ice-options`, `a=msid-semantic`, extmap extension
//! attributes, candidate extensions other than `generation` and `network-id`, candidate
//! `id`s (SDP has none) and a content `creator` other than `initiator` are not carried; XEP-0293
//! `trr-int` travels as an `<rtcp-fb type='trr-int' subtype='N'/>`.

use sdp_types::{AddrType, Attribute, Connection, Media, NetType, Origin, Session, Time};
use std::collections::HashSet;
use std::net::IpAddr;
use stox_xmpp::jingle::{
    Bandwidth, Candidate, CandidateType, Content, Creator, Crypto, Encryption, Fingerprint, Group,
    HdrExt, IceTransport, Jingle, MsidStream, PayloadType, RtcpFb, RtpDescription, Senders, Setup,
    Source, SsrcGroup,
};

/// Which party of the Jingle session an SDP speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The Jingle initiator (its SDP is the offer of `session-initiate`).
    Initiator,
    /// The Jingle responder (its SDP is the answer of `session-accept`).
    Responder,
}

impl Role {
    fn senders(self) -> Senders {
        match self {
            Role::Initiator => Senders::Initiator,
            Role::Responder => Senders::Responder,
        }
    }
    fn other(self) -> Role {
        match self {
            Role::Initiator => Role::Responder,
            Role::Responder => Role::Initiator,
        }
    }
}

/// SDP media direction (RFC 3264 §5.1, RFC 8866 §6.7).
pub use sdp_types::Direction;

/// XEP-0166 `senders` (session view) → the SDP direction written by `role`.
pub fn senders_to_direction(senders: Senders, role: Role) -> Direction {
    match senders {
        Senders::Both => Direction::SendRecv,
        Senders::None => Direction::Inactive,
        s if s == role.senders() => Direction::SendOnly,
        _ => Direction::RecvOnly,
    }
}

/// SDP direction written by `role` → XEP-0166 `senders` (session view).
pub fn direction_to_senders(direction: Direction, role: Role) -> Senders {
    match direction {
        Direction::SendRecv => Senders::Both,
        Direction::Inactive => Senders::None,
        Direction::SendOnly => role.senders(),
        Direction::RecvOnly => role.other().senders(),
    }
}

/// The media part of a Jingle session: what an SDP body describes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JingleMedia {
    /// One content per RTP `m=` line.
    pub contents: Vec<Content>,
    /// XEP-0338 group (BUNDLE).
    pub group: Option<Group>,
}

impl JingleMedia {
    /// The contents and group of a Jingle element.
    pub fn from_jingle(jingle: &Jingle) -> Self {
        JingleMedia {
            contents: jingle.contents.clone(),
            group: jingle.group.clone(),
        }
    }

    /// Puts contents and group into a Jingle element.
    pub fn apply_to(self, jingle: &mut Jingle) {
        jingle.contents = self.contents;
        jingle.group = self.group;
    }
}

/// Parameters of a Jingle → SDP conversion that Jingle does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpParams {
    /// The party the SDP speaks for.
    pub role: Role,
    /// `o=` session id (RFC 8866 §5.2).
    pub session_id: u64,
    /// `o=` session version; increment it for every new offer or answer of a dialog.
    pub session_version: u64,
}

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum SdpJingleError {
    /// The SDP text does not parse.
    #[error("SDP does not parse: {0}")]
    Parse(#[from] sdp_types::ParserError),
    /// An SDP attribute the conversion needs cannot be read.
    #[error("invalid a={attribute}:{value}")]
    InvalidAttribute {
        /// Attribute name.
        attribute: &'static str,
        /// Its value.
        value: String,
    },
    /// A value does not fit the other side's range (candidate priority above 2^32,
    /// extmap id above 255, component above 255).
    #[error("{field} {value} is out of range")]
    OutOfRange {
        /// What.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// A Jingle content has no RTP description, so no `m=` line can be written.
    #[error("content {0:?} has no RTP description")]
    NoDescription(String),
}

/// Reads SDP text.
pub fn parse_sdp(body: &[u8]) -> Result<Session, SdpJingleError> {
    Ok(Session::parse(body)?)
}

/// RFC 3551 §6 static audio payload types, for `m=` lines that omit their `a=rtpmap`.
const STATIC_PAYLOAD_TYPES: &[(u8, &str, u32)] = &[
    (0, "PCMU", 8000),
    (3, "GSM", 8000),
    (4, "G723", 8000),
    (5, "DVI4", 8000),
    (6, "DVI4", 16000),
    (7, "LPC", 8000),
    (8, "PCMA", 8000),
    (9, "G722", 8000),
    (10, "L16", 44100),
    (11, "L16", 44100),
    (12, "QCELP", 8000),
    (13, "CN", 8000),
    (14, "MPA", 90000),
    (15, "G728", 8000),
    (16, "DVI4", 11025),
    (17, "DVI4", 22050),
    (18, "G729", 8000),
];

fn attr_values<'a>(attrs: &'a [Attribute], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    attrs
        .iter()
        .filter(move |a| a.attribute.eq_ignore_ascii_case(name))
        .map(|a| a.value.as_deref().unwrap_or("").trim())
}

fn has_attr(attrs: &[Attribute], name: &str) -> bool {
    attrs.iter().any(|a| a.attribute.eq_ignore_ascii_case(name))
}

/// The first value of `name` at media level, else at session level.
fn media_or_session<'a>(m: &'a Media, s: &'a Session, name: &'a str) -> Option<&'a str> {
    attr_values(&m.attributes, name)
        .next()
        .or_else(|| attr_values(&s.attributes, name).next())
}

fn direction_of(attrs: &[Attribute]) -> Option<Direction> {
    attrs.iter().find_map(|a| a.attribute.parse().ok())
}

fn invalid(attribute: &'static str, value: &str) -> SdpJingleError {
    SdpJingleError::InvalidAttribute {
        attribute,
        value: value.to_owned(),
    }
}

/// SDP → Jingle: one content per RTP `m=` line with a non-zero port.
pub fn sdp_to_jingle(sdp: &Session, role: Role) -> Result<JingleMedia, SdpJingleError> {
    let mut out = JingleMedia::default();
    let mut names = HashSet::new();
    for (index, m) in sdp.medias.iter().enumerate() {
        if m.port == 0 && !has_attr(&m.attributes, "bundle-only") {
            continue;
        }
        if !m.proto.to_ascii_uppercase().contains("RTP/") {
            continue;
        }
        let mut name = attr_values(&m.attributes, "mid")
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or(m.media.as_str())
            .to_owned();
        if !names.insert(name.clone()) {
            name = format!("{name}-{index}");
            names.insert(name.clone());
        }
        // A media-level direction overrides a session-level one (RFC 8866 §6.7).
        let direction = direction_of(&m.attributes)
            .or_else(|| direction_of(&sdp.attributes))
            .unwrap_or(Direction::SendRecv);
        out.contents.push(Content {
            creator: Creator::Initiator,
            name,
            senders: direction_to_senders(direction, role),
            description: Some(description_from_media(m, sdp, role)?),
            transport: Some(transport_from_media(m, sdp)?),
        });
    }
    if let Some(g) = attr_values(&sdp.attributes, "group").find_map(|v| {
        let mut it = v.split_whitespace();
        let semantics = it.next()?;
        semantics.eq_ignore_ascii_case("BUNDLE").then(|| Group {
            semantics: semantics.to_owned(),
            contents: it.map(str::to_owned).collect(),
        })
    }) {
        out.group = Some(g);
    }
    Ok(out)
}

fn description_from_media(
    m: &Media,
    s: &Session,
    role: Role,
) -> Result<RtpDescription, SdpJingleError> {
    let mut d = RtpDescription::new(&m.media);
    let ptime = attr_values(&m.attributes, "ptime").find_map(|v| v.parse().ok());
    let maxptime = attr_values(&m.attributes, "maxptime").find_map(|v| v.parse().ok());
    for fmt in m.fmt.split_whitespace() {
        let Ok(id) = fmt.parse::<u8>() else { continue };
        if id > 127 {
            continue;
        }
        let mut pt = PayloadType {
            id,
            name: None,
            clockrate: None,
            channels: 1,
            ptime,
            maxptime,
            parameters: Vec::new(),
            rtcp_fb: Vec::new(),
        };
        if let Some(&(_, n, c)) = STATIC_PAYLOAD_TYPES.iter().find(|(i, _, _)| *i == id) {
            pt.name = Some(n.to_owned());
            pt.clockrate = Some(c);
        }
        d.payload_types.push(pt);
    }
    for v in attr_values(&m.attributes, "rtpmap") {
        let map: sdp_types::RtpMap = v.parse().map_err(|_| invalid("rtpmap", v))?;
        if let Some(pt) = d
            .payload_types
            .iter_mut()
            .find(|p| p.id == map.payload_type)
        {
            pt.name = Some(map.encoding_name);
            pt.clockrate = Some(map.clock_rate);
            pt.channels = match map.encoding_params {
                Some(ch) => ch.trim().parse().map_err(|_| invalid("rtpmap", v))?,
                None => 1,
            };
        }
    }
    for v in attr_values(&m.attributes, "fmtp") {
        let fmtp: sdp_types::Fmtp = v.parse().map_err(|_| invalid("fmtp", v))?;
        if let Some(pt) = d.payload_types.iter_mut().find(|p| p.id == fmtp.fmt) {
            pt.parameters.extend(
                fmtp.format_specific_params
                    .into_iter()
                    .filter(|p| !p.param.trim().is_empty())
                    .map(|p| {
                        (
                            p.param.trim().to_owned(),
                            p.val.map(|v| v.trim().to_owned()),
                        )
                    }),
            );
        }
    }
    for v in attr_values(&m.attributes, "rtcp-fb") {
        let mut it = v.splitn(2, ' ');
        let (Some(pt), Some(rest)) = (it.next(), it.next()) else {
            return Err(invalid("rtcp-fb", v));
        };
        let rest = rest.trim();
        let (typ, subtype) = match rest.split_once(' ') {
            Some((t, st)) => (t, Some(st.trim().to_owned())),
            None => (rest, None),
        };
        if typ.is_empty() {
            return Err(invalid("rtcp-fb", v));
        }
        let fb = RtcpFb {
            typ: typ.to_owned(),
            subtype,
        };
        if pt == "*" {
            d.rtcp_fb.push(fb);
        } else {
            let id: u8 = pt.parse().map_err(|_| invalid("rtcp-fb", v))?;
            if let Some(p) = d.payload_types.iter_mut().find(|p| p.id == id) {
                p.rtcp_fb.push(fb);
            }
        }
    }
    for v in attr_values(&m.attributes, "extmap") {
        let e: sdp_types::ExtMap = v.parse().map_err(|_| invalid("extmap", v))?;
        d.hdrexts.push(HdrExt {
            id: u16::from(e.id),
            uri: e.uri,
            senders: e.direction.map(|dir| direction_to_senders(dir, role)),
        });
    }
    d.extmap_allow_mixed = has_attr(&m.attributes, "extmap-allow-mixed")
        || has_attr(&s.attributes, "extmap-allow-mixed");
    d.rtcp_mux = has_attr(&m.attributes, "rtcp-mux");
    for v in attr_values(&m.attributes, "ssrc") {
        let (id, rest) = v.split_once(' ').ok_or_else(|| invalid("ssrc", v))?;
        let ssrc: u32 = id.parse().map_err(|_| invalid("ssrc", v))?;
        let param = match rest.split_once(':') {
            Some((n, val)) => (n.to_owned(), Some(val.to_owned())),
            None => (rest.to_owned(), None),
        };
        match d.sources.iter_mut().find(|x| x.ssrc == ssrc) {
            Some(src) => src.params.push(param),
            None => d.sources.push(Source {
                ssrc,
                params: vec![param],
            }),
        }
    }
    for v in attr_values(&m.attributes, "ssrc-group") {
        let mut it = v.split_whitespace();
        let semantics = it.next().ok_or_else(|| invalid("ssrc-group", v))?;
        let ssrcs = it
            .map(|x| x.parse::<u32>().map_err(|_| invalid("ssrc-group", v)))
            .collect::<Result<_, _>>()?;
        d.ssrc_groups.push(SsrcGroup {
            semantics: semantics.to_owned(),
            ssrcs,
        });
    }
    if let Some(v) = attr_values(&m.attributes, "msid").next() {
        let mut it = v.split_whitespace();
        if let Some(id) = it.next() {
            d.msid = Some(MsidStream {
                id: id.to_owned(),
                track: it.next().map(str::to_owned),
            });
        }
    }
    let crypto = attr_values(&m.attributes, "crypto")
        .map(|v| {
            let mut it = v.split_whitespace();
            let (Some(tag), Some(suite), Some(key)) = (it.next(), it.next(), it.next()) else {
                return Err(invalid("crypto", v));
            };
            let rest: Vec<&str> = it.collect();
            Ok(Crypto {
                tag: tag.parse().map_err(|_| invalid("crypto", v))?,
                crypto_suite: suite.to_owned(),
                key_params: key.to_owned(),
                session_params: (!rest.is_empty()).then(|| rest.join(" ")),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !crypto.is_empty() {
        d.encryption = Some(Encryption {
            required: m.proto.to_ascii_uppercase().contains("SAVP"),
            crypto,
        });
    }
    d.bandwidth = m.bandwidths.first().map(|b| Bandwidth {
        typ: b.bwtype.clone(),
        value: b.bandwidth,
    });
    Ok(d)
}

/// RFC 8445 §5.1.2.1 priority of a host candidate with the highest local preference.
fn host_priority(component: u8) -> u32 {
    (126 << 24) | (65535 << 8) | (256 - u32::from(component))
}

fn transport_from_media(m: &Media, s: &Session) -> Result<IceTransport, SdpJingleError> {
    let mut t = IceTransport {
        ufrag: media_or_session(m, s, "ice-ufrag")
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
        pwd: media_or_session(m, s, "ice-pwd")
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
        ..IceTransport::default()
    };
    if let Some(v) = media_or_session(m, s, "fingerprint") {
        let (hash, value) = v.split_once(' ').ok_or_else(|| invalid("fingerprint", v))?;
        t.fingerprint = Some(Fingerprint {
            hash: hash.to_owned(),
            setup: media_or_session(m, s, "setup").and_then(|x| x.parse::<Setup>().ok()),
            value: value.trim().to_owned(),
        });
    }
    for v in attr_values(&m.attributes, "candidate") {
        let c: sdp_types::Candidate = v.parse().map_err(|_| invalid("candidate", v))?;
        let typ = match c.typ {
            sdp_types::CandidateType::Host => CandidateType::Host,
            sdp_types::CandidateType::Srflx => CandidateType::Srflx,
            sdp_types::CandidateType::Prflx => CandidateType::Prflx,
            sdp_types::CandidateType::Relay => CandidateType::Relay,
            sdp_types::CandidateType::Other(_) => continue,
        };
        let ext = |k: &str| {
            c.extensions
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .and_then(|(_, v)| v.parse::<u32>().ok())
        };
        t.candidates.push(Candidate {
            component: u8::try_from(c.component_id).map_err(|_| SdpJingleError::OutOfRange {
                field: "candidate component",
                value: u64::from(c.component_id),
            })?,
            foundation: c.foundation.clone(),
            generation: ext("generation"),
            id: None,
            ip: match &c.address {
                sdp_types::CandidateAddress::IpAddr(ip) => ip.to_string(),
                sdp_types::CandidateAddress::FQDN(n) => n.clone(),
            },
            port: c.port,
            priority: u32::try_from(c.priority).map_err(|_| SdpJingleError::OutOfRange {
                field: "candidate priority",
                value: c.priority,
            })?,
            protocol: c.transport.clone(),
            typ,
            rel_addr: c.rel_addr.map(|a| a.to_string()),
            rel_port: c.rel_port,
            network: ext("network-id"),
        });
    }
    t.gathering_complete = has_attr(&m.attributes, "end-of-candidates");
    if t.ufrag.is_none() && t.candidates.is_empty() {
        // Plain RTP: the c= address and m= port are the one candidate there is.
        // An empty address (`c=IN IP4 /`) gives no candidate: there is nowhere to send to.
        let connection = m.connections.first().or(s.connection.as_ref()).filter(|c| {
            !c.connection_address
                .split('/')
                .next()
                .unwrap_or_default()
                .trim()
                .is_empty()
        });
        if let Some(c) = connection {
            let ip = c
                .connection_address
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let mut components = vec![(1u8, m.port)];
            if !has_attr(&m.attributes, "rtcp-mux") {
                if let Some(p) = m.port.checked_add(1) {
                    components.push((2, p));
                }
            }
            for (component, port) in components {
                t.candidates.push(Candidate {
                    component,
                    foundation: "1".to_owned(),
                    generation: None,
                    id: None,
                    ip: ip.clone(),
                    port,
                    priority: host_priority(component),
                    protocol: "udp".to_owned(),
                    typ: CandidateType::Host,
                    rel_addr: None,
                    rel_port: None,
                    network: None,
                });
            }
        }
    }
    Ok(t)
}

/// The candidate that gives `c=` and the `m=` port: the highest-priority component-1 one.
fn default_candidate(t: &IceTransport) -> Option<&Candidate> {
    t.candidates
        .iter()
        .filter(|c| c.component == 1)
        .max_by_key(|c| c.priority)
}

fn connection_for(ip: &str) -> Connection {
    let addrtype = match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => AddrType::Ip6,
        _ => AddrType::Ip4,
    };
    Connection::new(NetType::In, addrtype, ip)
}

/// Jingle → SDP: one `m=` line per content, in order.
pub fn jingle_to_sdp(media: &JingleMedia, params: &SdpParams) -> Result<Session, SdpJingleError> {
    let mut medias = Vec::new();
    for content in &media.contents {
        medias.push(media_from_content(
            content,
            media.group.is_some(),
            params.role,
        )?);
    }
    let origin_addr = medias
        .iter()
        .filter_map(|m: &Media| m.connections.first())
        .map(|c| c.connection_address.clone())
        .find(|a| a != "0.0.0.0")
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let origin = Origin {
        username: None,
        sess_id: params.session_id.to_string(),
        sess_version: params.session_version,
        nettype: NetType::In,
        addrtype: connection_for(&origin_addr).addrtype,
        unicast_address: origin_addr,
    };
    let mut s = Session::new(origin, "-");
    s.add_time(Time::new(0, 0));
    if let Some(g) = &media.group {
        let mut v = g.semantics.clone();
        for c in &g.contents {
            v.push(' ');
            v.push_str(c);
        }
        s.add_attribute(Attribute::with_value("group", v));
    }
    s.medias = medias;
    Ok(s)
}

fn media_from_content(c: &Content, grouped: bool, role: Role) -> Result<Media, SdpJingleError> {
    let d = c
        .description
        .as_ref()
        .ok_or_else(|| SdpJingleError::NoDescription(c.name.clone()))?;
    let ice = c.transport.as_ref().filter(|t| t.ufrag.is_some());
    let fingerprint = c.transport.as_ref().and_then(|t| t.fingerprint.as_ref());
    // Plain SIP phones expect the profile they offered: AVP, never AVPF (feedback lines are
    // still written; RFC 4585 §5 lets an AVP endpoint ignore them).
    let proto = if fingerprint.is_some() {
        "UDP/TLS/RTP/SAVPF"
    } else if d.encryption.as_ref().is_some_and(|e| !e.crypto.is_empty()) {
        "RTP/SAVP"
    } else {
        "RTP/AVP"
    }
    .to_owned();
    let default = c.transport.as_ref().and_then(default_candidate);
    let (ip, port) = match default {
        Some(cand) => (cand.ip.clone(), cand.port),
        None => ("0.0.0.0".to_owned(), 9),
    };
    let fmt: Vec<String> = d.payload_types.iter().map(|p| p.id.to_string()).collect();
    let mut m = Media {
        media: d.media.clone(),
        port,
        num_ports: None,
        proto,
        fmt: fmt.join(" "),
        media_title: None,
        connections: vec![connection_for(&ip)],
        bandwidths: d
            .bandwidth
            .iter()
            .map(|b| sdp_types::Bandwidth {
                bwtype: b.typ.clone(),
                bandwidth: b.value,
            })
            .collect(),
        key: None,
        attributes: Vec::new(),
    };
    let mut add = |name: &str, value: Option<String>| {
        m.attributes.push(Attribute {
            attribute: name.to_owned(),
            value,
        })
    };
    if let Some(t) = ice {
        for (name, value) in [("ice-ufrag", &t.ufrag), ("ice-pwd", &t.pwd)] {
            if let Some(v) = value {
                add(name, Some(v.clone()));
            }
        }
    }
    if let Some(f) = fingerprint {
        add("fingerprint", Some(format!("{} {}", f.hash, f.value)));
        if let Some(setup) = f.setup {
            add("setup", Some(setup.as_str().to_owned()));
        }
    }
    if ice.is_some() || grouped || c.name != d.media {
        add("mid", Some(c.name.clone()));
    }
    for h in &d.hdrexts {
        let id = u8::try_from(h.id).map_err(|_| SdpJingleError::OutOfRange {
            field: "rtp-hdrext id",
            value: u64::from(h.id),
        })?;
        let e = sdp_types::ExtMap {
            id,
            direction: h.senders.map(|s| senders_to_direction(s, role)),
            uri: h.uri.clone(),
            attributes: None,
        };
        add("extmap", Some(e.to_string()));
    }
    if d.extmap_allow_mixed {
        add("extmap-allow-mixed", None);
    }
    add(senders_to_direction(c.senders, role).as_str(), None);
    if let Some(msid) = &d.msid {
        let v = match &msid.track {
            Some(t) => format!("{} {t}", msid.id),
            None => msid.id.clone(),
        };
        add("msid", Some(v));
    }
    if d.rtcp_mux {
        add("rtcp-mux", None);
    }
    for fb in &d.rtcp_fb {
        add("rtcp-fb", Some(rtcp_fb_value("*", fb)));
    }
    for p in &d.payload_types {
        if let (Some(name), Some(rate)) = (&p.name, p.clockrate) {
            let v = if p.channels != 1 {
                format!("{} {name}/{rate}/{}", p.id, p.channels)
            } else {
                format!("{} {name}/{rate}", p.id)
            };
            add("rtpmap", Some(v));
        }
        for fb in &p.rtcp_fb {
            add("rtcp-fb", Some(rtcp_fb_value(&p.id.to_string(), fb)));
        }
        if !p.parameters.is_empty() {
            let params: Vec<String> = p
                .parameters
                .iter()
                .map(|(n, v)| match v {
                    Some(v) => format!("{n}={v}"),
                    None => n.clone(),
                })
                .collect();
            add("fmtp", Some(format!("{} {}", p.id, params.join(";"))));
        }
    }
    if let Some(ptime) = d.payload_types.iter().find_map(|p| p.ptime) {
        add("ptime", Some(ptime.to_string()));
    }
    if let Some(maxptime) = d.payload_types.iter().find_map(|p| p.maxptime) {
        add("maxptime", Some(maxptime.to_string()));
    }
    if let Some(e) = &d.encryption {
        for cr in &e.crypto {
            let mut v = format!("{} {} {}", cr.tag, cr.crypto_suite, cr.key_params);
            if let Some(sp) = &cr.session_params {
                v.push(' ');
                v.push_str(sp);
            }
            add("crypto", Some(v));
        }
    }
    for g in &d.ssrc_groups {
        let mut v = g.semantics.clone();
        for s in &g.ssrcs {
            v.push_str(&format!(" {s}"));
        }
        add("ssrc-group", Some(v));
    }
    for src in &d.sources {
        for (n, v) in &src.params {
            let v = match v {
                Some(v) => format!("{} {n}:{v}", src.ssrc),
                None => format!("{} {n}", src.ssrc),
            };
            add("ssrc", Some(v));
        }
    }
    if let Some(t) = ice {
        for cand in &t.candidates {
            add("candidate", Some(candidate_value(cand)));
        }
        if t.gathering_complete {
            add("end-of-candidates", None);
        }
    }
    Ok(m)
}

fn rtcp_fb_value(pt: &str, fb: &RtcpFb) -> String {
    match &fb.subtype {
        Some(st) => format!("{pt} {} {st}", fb.typ),
        None => format!("{pt} {}", fb.typ),
    }
}

/// RFC 8839 §5.1 `candidate-attribute` value.
fn candidate_value(c: &Candidate) -> String {
    let mut v = format!(
        "{} {} {} {} {} {} typ {}",
        c.foundation,
        c.component,
        c.protocol,
        c.priority,
        c.ip,
        c.port,
        c.typ.as_str()
    );
    if let Some(a) = c
        .rel_addr
        .as_deref()
        .filter(|a| a.parse::<IpAddr>().is_ok())
    {
        v.push_str(&format!(" raddr {a}"));
    }
    if let Some(p) = c.rel_port {
        v.push_str(&format!(" rport {p}"));
    }
    if let Some(g) = c.generation {
        v.push_str(&format!(" generation {g}"));
    }
    if let Some(n) = c.network {
        v.push_str(&format!(" network-id {n}"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sdp(text: &str) -> Session {
        parse_sdp(text.replace('\n', "\r\n").as_bytes()).unwrap()
    }

    const PLAIN: &str = "v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 4000 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=sendonly
";

    #[test]
    fn senders_and_direction_depend_on_who_wrote_the_sdp() {
        use Direction::*;
        let table = [
            (Senders::Both, Role::Initiator, SendRecv),
            (Senders::Both, Role::Responder, SendRecv),
            (Senders::None, Role::Initiator, Inactive),
            (Senders::None, Role::Responder, Inactive),
            (Senders::Initiator, Role::Initiator, SendOnly),
            (Senders::Initiator, Role::Responder, RecvOnly),
            (Senders::Responder, Role::Initiator, RecvOnly),
            (Senders::Responder, Role::Responder, SendOnly),
        ];
        for (senders, role, dir) in table {
            assert_eq!(
                senders_to_direction(senders, role),
                dir,
                "{senders:?} {role:?}"
            );
            assert_eq!(direction_to_senders(dir, role), senders, "{dir:?} {role:?}");
        }
    }

    #[test]
    fn sendonly_offer_from_the_sip_caller_is_initiator_senders() {
        let s = sdp(PLAIN);
        // The SIP caller's offer becomes the session-initiate: it speaks for the initiator.
        let j = sdp_to_jingle(&s, Role::Initiator).unwrap();
        assert_eq!(j.contents[0].senders, Senders::Initiator);
        // The same SDP as an answer from the responder side means the responder sends.
        let j = sdp_to_jingle(&s, Role::Responder).unwrap();
        assert_eq!(j.contents[0].senders, Senders::Responder);
        let back = jingle_to_sdp(
            &j,
            &SdpParams {
                role: Role::Initiator,
                session_id: 1,
                session_version: 2,
            },
        )
        .unwrap();
        assert!(back.medias[0].has_attribute("recvonly"));
    }

    #[test]
    fn plain_rtp_becomes_host_candidates_and_back() {
        let j = sdp_to_jingle(&sdp(PLAIN), Role::Initiator).unwrap();
        let c = &j.contents[0];
        assert_eq!(c.name, "audio");
        let t = c.transport.as_ref().unwrap();
        assert_eq!(t.ufrag, None);
        let ports: Vec<(u8, &str, u16)> = t
            .candidates
            .iter()
            .map(|c| (c.component, c.ip.as_str(), c.port))
            .collect();
        assert_eq!(ports, [(1, "127.0.0.1", 4000), (2, "127.0.0.1", 4001)]);
        let d = c.description.as_ref().unwrap();
        assert_eq!(
            d.payload_types[0].name.as_deref(),
            Some("PCMU"),
            "static table"
        );
        assert_eq!(d.payload_types[1].parameters, [("0-16".to_owned(), None)]);

        let params = SdpParams {
            role: Role::Initiator,
            session_id: 7,
            session_version: 1,
        };
        let text = jingle_to_sdp(&j, &params).unwrap().to_string();
        assert!(text.contains("m=audio 4000 RTP/AVP 0 101\r\n"), "{text}");
        assert!(text.contains("c=IN IP4 127.0.0.1\r\n"), "{text}");
        assert!(text.contains("a=fmtp:101 0-16\r\n"), "{text}");
        assert!(
            !text.contains("a=mid") && !text.contains("ice-ufrag"),
            "{text}"
        );
    }

    #[test]
    fn ice_without_candidates_is_port_9_and_zero_address() {
        let mut d = RtpDescription::new("audio");
        d.payload_types
            .push(PayloadType::new(111, "opus", 48000, 2));
        let media = JingleMedia {
            contents: vec![Content {
                creator: Creator::Initiator,
                name: "0".into(),
                senders: Senders::Both,
                description: Some(d),
                transport: Some(IceTransport {
                    ufrag: Some("u".into()),
                    pwd: Some("p".into()),
                    fingerprint: Some(Fingerprint {
                        hash: "sha-256".into(),
                        setup: Some(Setup::Active),
                        value: "AB:CD".into(),
                    }),
                    ..IceTransport::default()
                }),
            }],
            group: None,
        };
        let params = SdpParams {
            role: Role::Responder,
            session_id: 1,
            session_version: 1,
        };
        let text = jingle_to_sdp(&media, &params).unwrap().to_string();
        for line in [
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "c=IN IP4 0.0.0.0",
            "a=setup:active",
            "a=fingerprint:sha-256 AB:CD",
            "a=mid:0",
            "a=rtpmap:111 opus/48000/2",
        ] {
            assert!(
                text.contains(&format!("{line}\r\n")),
                "{line} missing in {text}"
            );
        }
    }

    #[test]
    fn content_without_description_and_out_of_range_values_are_errors() {
        let media = JingleMedia {
            contents: vec![Content {
                creator: Creator::Initiator,
                name: "x".into(),
                senders: Senders::Both,
                description: None,
                transport: None,
            }],
            group: None,
        };
        let params = SdpParams {
            role: Role::Initiator,
            session_id: 1,
            session_version: 1,
        };
        assert!(matches!(
            jingle_to_sdp(&media, &params),
            Err(SdpJingleError::NoDescription(_))
        ));
        let s = sdp(&PLAIN.replace(
            "a=sendonly\n",
            "a=candidate:1 1 udp 99999999999 1.2.3.4 5 typ host\na=ice-ufrag:u\n",
        ));
        assert!(matches!(
            sdp_to_jingle(&s, Role::Initiator),
            Err(SdpJingleError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse_sdp(b"garbage"),
            Err(SdpJingleError::Parse(_))
        ));
    }

    // ---- round-trip property: every field SDP can express survives Jingle → SDP → Jingle.

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9+/._-]{1,10}"
    }

    fn rtcp_fbs() -> impl Strategy<Value = Vec<RtcpFb>> {
        prop::collection::vec(
            ("[a-z-]{1,10}", prop::option::of("[a-z0-9]{1,6}"))
                .prop_map(|(typ, subtype)| RtcpFb { typ, subtype }),
            0..3,
        )
    }

    fn senders() -> impl Strategy<Value = Senders> {
        prop::sample::select(Senders::ALL.to_vec())
    }

    fn description() -> impl Strategy<Value = RtpDescription> {
        (
            (
                prop::sample::select(vec!["audio", "video"]),
                prop::collection::btree_map(
                    0u8..128,
                    (
                        "[A-Za-z0-9._-]{1,10}",
                        1u32..200_000,
                        1u8..3,
                        prop::collection::vec(
                            ("[a-z0-9/-]{1,8}", prop::option::of("[A-Za-z0-9=/.-]{0,8}")),
                            0..3,
                        ),
                        rtcp_fbs(),
                    ),
                    1..5,
                ),
                (prop::option::of(1u32..200), prop::option::of(1u32..200)),
                rtcp_fbs(),
            ),
            (
                prop::collection::btree_map(
                    1u16..256,
                    (token(), prop::option::of(senders())),
                    0..3,
                ),
                any::<bool>(),
                any::<bool>(),
                prop::collection::btree_map(
                    any::<u32>(),
                    prop::collection::vec(
                        (
                            "[a-z]{1,6}",
                            prop::option::of("[A-Za-z0-9+/]{1,8}( [a-z0-9]{1,4})?"),
                        ),
                        1..3,
                    ),
                    0..3,
                ),
                prop::collection::vec((token(), prop::collection::vec(any::<u32>(), 1..3)), 0..2),
                prop::collection::vec(
                    (any::<u32>(), token(), token(), prop::option::of(token())),
                    0..2,
                ),
                prop::option::of(("[A-Z]{2,4}", any::<u32>())),
                prop::option::of((token(), prop::option::of(token()))),
            ),
        )
            .prop_map(
                |(
                    (media, pts, (ptime, maxptime), fb),
                    (hx, mixed, mux, srcs, groups, cr, bw, msid),
                )| {
                    let mut d = RtpDescription::new(media);
                    d.payload_types = pts
                        .into_iter()
                        .map(|(id, (name, rate, ch, parameters, rtcp_fb))| PayloadType {
                            id,
                            name: Some(name),
                            clockrate: Some(rate),
                            channels: ch,
                            ptime,
                            maxptime,
                            parameters,
                            rtcp_fb,
                        })
                        .collect();
                    d.rtcp_fb = fb;
                    d.hdrexts = hx
                        .into_iter()
                        .map(|(id, (uri, senders))| HdrExt { id, uri, senders })
                        .collect();
                    d.extmap_allow_mixed = mixed;
                    d.rtcp_mux = mux;
                    d.sources = srcs
                        .into_iter()
                        .map(|(ssrc, params)| Source { ssrc, params })
                        .collect();
                    d.ssrc_groups = groups
                        .into_iter()
                        .map(|(semantics, ssrcs)| SsrcGroup { semantics, ssrcs })
                        .collect();
                    if !cr.is_empty() {
                        d.encryption = Some(Encryption {
                            required: true,
                            crypto: cr
                                .into_iter()
                                .map(|(tag, crypto_suite, key_params, session_params)| Crypto {
                                    tag,
                                    crypto_suite,
                                    key_params,
                                    session_params,
                                })
                                .collect(),
                        });
                    }
                    d.bandwidth = bw.map(|(typ, v)| Bandwidth {
                        typ,
                        value: u64::from(v),
                    });
                    d.msid = msid.map(|(id, track)| MsidStream { id, track });
                    d
                },
            )
    }

    fn ipv4() -> impl Strategy<Value = String> {
        any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string())
    }

    fn ice_transport() -> impl Strategy<Value = IceTransport> {
        (
            token(),
            prop::option::of(token()),
            prop::collection::vec(
                (
                    (
                        1u8..3,
                        "[a-z0-9]{1,10}",
                        prop::option::of(0u32..10),
                        ipv4(),
                        1u16..,
                    ),
                    (
                        any::<u32>(),
                        prop::sample::select(vec![
                            CandidateType::Host,
                            CandidateType::Srflx,
                            CandidateType::Prflx,
                            CandidateType::Relay,
                        ]),
                        prop::option::of((ipv4(), 1u16..)),
                        prop::option::of(0u32..100),
                    ),
                )
                    .prop_map(
                        |(
                            (component, foundation, generation, ip, port),
                            (priority, typ, rel, network),
                        )| {
                            Candidate {
                                component,
                                foundation,
                                generation,
                                id: None,
                                ip,
                                port,
                                priority,
                                protocol: "udp".into(),
                                typ,
                                rel_addr: rel.as_ref().map(|(a, _)| a.clone()),
                                rel_port: rel.map(|(_, p)| p),
                                network,
                            }
                        },
                    ),
                0..3,
            ),
            prop::option::of((
                prop::sample::select(vec!["sha-256", "sha-1"]),
                prop::option::of(prop::sample::select(vec![
                    Setup::Actpass,
                    Setup::Active,
                    Setup::Passive,
                ])),
                "[0-9A-F]{2}(:[0-9A-F]{2}){1,8}",
            )),
            any::<bool>(),
        )
            .prop_map(
                |(ufrag, pwd, candidates, fp, gathering_complete)| IceTransport {
                    ufrag: Some(ufrag),
                    pwd,
                    candidates,
                    fingerprint: fp.map(|(hash, setup, value)| Fingerprint {
                        hash: hash.into(),
                        setup,
                        value,
                    }),
                    gathering_complete,
                },
            )
    }

    /// A plain-RTP transport has exactly the shape `sdp_to_jingle` gives a `c=`/`m=` pair.
    fn plain_transport(ip: String, port: u16, rtcp_mux: bool) -> IceTransport {
        let mut components = vec![(1u8, port)];
        if !rtcp_mux {
            components.push((2, port + 1));
        }
        IceTransport {
            candidates: components
                .into_iter()
                .map(|(component, port)| Candidate {
                    component,
                    foundation: "1".into(),
                    generation: None,
                    id: None,
                    ip: ip.clone(),
                    port,
                    priority: host_priority(component),
                    protocol: "udp".into(),
                    typ: CandidateType::Host,
                    rel_addr: None,
                    rel_port: None,
                    network: None,
                })
                .collect(),
            ..IceTransport::default()
        }
    }

    fn jingle_media() -> impl Strategy<Value = JingleMedia> {
        (
            prop::collection::vec(
                (
                    description(),
                    senders(),
                    prop::option::of(ice_transport()),
                    (ipv4(), 1u16..65535),
                    prop::option::of(token()),
                ),
                1..3,
            ),
            any::<bool>(),
        )
            .prop_map(|(contents, bundle)| {
                let contents: Vec<Content> = contents
                    .into_iter()
                    .enumerate()
                    .map(|(i, (d, senders, ice, (ip, port), name))| {
                        let transport = match ice {
                            Some(t) => t,
                            None => plain_transport(ip, port, d.rtcp_mux),
                        };
                        Content {
                            creator: Creator::Initiator,
                            name: match name {
                                Some(n) => format!("{n}{i}"),
                                None => format!("m{i}"),
                            },
                            senders,
                            description: Some(d),
                            transport: Some(transport),
                        }
                    })
                    .collect();
                let group = bundle.then(|| Group {
                    semantics: "BUNDLE".into(),
                    contents: contents.iter().map(|c| c.name.clone()).collect(),
                });
                JingleMedia { contents, group }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn jingle_to_sdp_to_jingle_keeps_every_field(
            media in jingle_media(),
            initiator in any::<bool>(),
        ) {
            let role = if initiator { Role::Initiator } else { Role::Responder };
            let params = SdpParams { role, session_id: 42, session_version: 3 };
            let text = jingle_to_sdp(&media, &params).unwrap().to_string();
            let back = sdp_to_jingle(&parse_sdp(text.as_bytes()).unwrap(), role).unwrap();
            prop_assert_eq!(back, media, "{}", text);
        }

        #[test]
        fn sdp_to_jingle_to_sdp_is_a_fixpoint(
            media in jingle_media(),
            initiator in any::<bool>(),
        ) {
            let role = if initiator { Role::Initiator } else { Role::Responder };
            let params = SdpParams { role, session_id: 42, session_version: 3 };
            let first = jingle_to_sdp(&media, &params).unwrap().to_string();
            let j = sdp_to_jingle(&parse_sdp(first.as_bytes()).unwrap(), role).unwrap();
            let second = jingle_to_sdp(&j, &params).unwrap().to_string();
            prop_assert_eq!(first, second);
        }

        #[test]
        fn arbitrary_sdp_never_panics(body in "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n(m=(audio|video) [0-9]{1,5} (RTP/AVP|UDP/TLS/RTP/SAVPF) [0-9 ]{0,12}\r\n(a=[a-z-]{1,12}(:[ -~]{0,30})?\r\n|c=IN IP4 [0-9.]{1,15}\r\n){0,8}){0,3}") {
            if let Ok(s) = parse_sdp(body.as_bytes()) {
                for role in [Role::Initiator, Role::Responder] {
                    if let Ok(j) = sdp_to_jingle(&s, role) {
                        let _ = jingle_to_sdp(&j, &SdpParams { role, session_id: 1, session_version: 1 });
                    }
                }
            }
        }
    }
}

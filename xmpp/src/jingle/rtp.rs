//! XEP-0167 RTP description, with XEP-0293 RTCP feedback, XEP-0294 header extensions and
//! XEP-0339 source-specific attributes.
//!
//! `<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>` holds `<payload-type>`s
//! (XEP-0167 §4), `<encryption>` with SDES `<crypto>` (XEP-0167 §7.3), `<bandwidth>`,
//! `<rtcp-mux/>` (XEP-0167 §4), `<rtcp-fb>` (XEP-0293 §3, at payload-type or description
//! level, the SDP `*`), `<rtp-hdrext>` and `<extmap-allow-mixed/>` (XEP-0294), `<source>` and
//! `<ssrc-group>` (XEP-0339), and the non-standard `<stream xmlns='urn:xmpp:jingle:apps:rtp:msid:0'>`
//! (the SDP `a=msid`, sent by StanzaJS).

use super::session::Senders;
use super::{attr, expect, ns, opt_parse, opt_string, req_attr, req_parse, JingleError};
use minidom::Element;

/// One `<parameter name value/>`; the value may be absent (libwebrtc's `red` sends
/// `<parameter name='111/111'/>`).
pub type Parameter = (String, Option<String>);

fn parse_parameters(el: &Element, ns_: &str) -> Vec<Parameter> {
    el.children()
        .filter(|c| c.is("parameter", ns_))
        .filter_map(|c| {
            let name = c.attr("name");
            let value = c.attr("value").map(str::to_owned);
            match (name, value) {
                (Some(n), v) => Some((n.to_owned(), v)),
                // `<parameter value='x'/>` without a name: keep it as a valueless token.
                (None, Some(v)) => Some((v, None)),
                (None, None) => None,
            }
        })
        .collect()
}

fn parameter_elements<'a>(
    params: &'a [Parameter],
    ns_: &'static str,
) -> impl Iterator<Item = Element> + 'a {
    params.iter().map(move |(n, v)| {
        let b = attr!(Element::builder("parameter", ns_), "name", n.as_str());
        attr!(b, "value", v.as_deref()).build()
    })
}

/// XEP-0293 §3 `<rtcp-fb type subtype/>` (SDP `a=rtcp-fb:PT type subtype`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpFb {
    /// `nack`, `ccm`, `goog-remb`, `transport-cc`, …
    pub typ: String,
    /// `pli`, `fir`, … (everything after the type in SDP).
    pub subtype: Option<String>,
}

impl RtcpFb {
    /// Reads an `<rtcp-fb/>`; `type` is required.
    pub fn parse(el: &Element) -> Result<Self, JingleError> {
        expect(el, "rtcp-fb", ns::RTCP_FB)?;
        Ok(RtcpFb {
            typ: req_attr(el, "rtcp-fb", "type")?.to_owned(),
            subtype: opt_string(el, "subtype").filter(|s| !s.is_empty()),
        })
    }

    /// Writes the `<rtcp-fb/>` element.
    pub fn to_element(&self) -> Element {
        let b = attr!(
            Element::builder("rtcp-fb", ns::RTCP_FB),
            "type",
            self.typ.as_str()
        );
        attr!(b, "subtype", self.subtype.as_deref()).build()
    }
}

fn parse_rtcp_fbs(el: &Element) -> Vec<RtcpFb> {
    el.children()
        .filter(|c| c.is("rtcp-fb", ns::RTCP_FB))
        .filter_map(|c| RtcpFb::parse(c).ok())
        .collect()
}

/// XEP-0167 §4 `<payload-type/>` (SDP `a=rtpmap` + `a=fmtp` + `a=rtcp-fb`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadType {
    /// RTP payload type, 0–127.
    pub id: u8,
    /// Encoding name (`opus`, `PCMU`, `telephone-event`); optional for static types.
    pub name: Option<String>,
    /// Clock rate in Hz.
    pub clockrate: Option<u32>,
    /// Channels; XEP-0167 default 1.
    pub channels: u8,
    /// Packet time in ms.
    pub ptime: Option<u32>,
    /// Maximum packet time in ms.
    pub maxptime: Option<u32>,
    /// Format parameters (`a=fmtp`), in order, value optional.
    pub parameters: Vec<Parameter>,
    /// XEP-0293 feedback for this payload type.
    pub rtcp_fb: Vec<RtcpFb>,
}

impl PayloadType {
    /// A payload type with only id, name, clock rate and channels.
    pub fn new(id: u8, name: &str, clockrate: u32, channels: u8) -> Self {
        PayloadType {
            id,
            name: Some(name.to_owned()),
            clockrate: Some(clockrate),
            channels,
            ptime: None,
            maxptime: None,
            parameters: Vec::new(),
            rtcp_fb: Vec::new(),
        }
    }

    /// Reads a `<payload-type/>`; `id` (0–127) is required.
    pub fn parse(el: &Element) -> Result<Self, JingleError> {
        expect(el, "payload-type", ns::RTP)?;
        let id: u8 = req_parse(el, "payload-type", "id")?;
        if id > 127 {
            return Err(JingleError::InvalidAttribute {
                element: "payload-type",
                attribute: "id",
                value: id.to_string(),
            });
        }
        Ok(PayloadType {
            id,
            name: opt_string(el, "name").filter(|n| !n.is_empty()),
            clockrate: opt_parse(el, "clockrate"),
            channels: opt_parse(el, "channels").filter(|c| *c > 0).unwrap_or(1),
            ptime: opt_parse(el, "ptime"),
            maxptime: opt_parse(el, "maxptime"),
            parameters: parse_parameters(el, ns::RTP),
            rtcp_fb: parse_rtcp_fbs(el),
        })
    }

    /// Writes the `<payload-type/>` element (`channels` only when not 1).
    pub fn to_element(&self) -> Element {
        let b = Element::builder("payload-type", ns::RTP);
        let b = attr!(b, "id", self.id.to_string());
        let b = attr!(b, "name", self.name.as_deref());
        let b = attr!(b, "clockrate", self.clockrate.map(|c| c.to_string()));
        let b = attr!(
            b,
            "channels",
            (self.channels != 1).then(|| self.channels.to_string())
        );
        let b = attr!(b, "ptime", self.ptime.map(|c| c.to_string()));
        let b = attr!(b, "maxptime", self.maxptime.map(|c| c.to_string()));
        b.append_all(parameter_elements(&self.parameters, ns::RTP))
            .append_all(self.rtcp_fb.iter().map(RtcpFb::to_element))
            .build()
    }
}

/// XEP-0294 §3 `<rtp-hdrext id uri senders/>` (SDP `a=extmap`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HdrExt {
    /// Extension id (1–14 one-byte, up to 255 two-byte).
    pub id: u16,
    /// Extension URI.
    pub uri: String,
    /// Direction, as content `senders`; absent means `both`.
    pub senders: Option<Senders>,
}

impl HdrExt {
    /// Reads an `<rtp-hdrext/>`; `id` and `uri` are required.
    pub fn parse(el: &Element) -> Result<Self, JingleError> {
        expect(el, "rtp-hdrext", ns::RTP_HDREXT)?;
        Ok(HdrExt {
            id: req_parse(el, "rtp-hdrext", "id")?,
            uri: req_attr(el, "rtp-hdrext", "uri")?.to_owned(),
            senders: el.attr("senders").and_then(|s| s.parse().ok()),
        })
    }

    /// Writes the `<rtp-hdrext/>` element.
    pub fn to_element(&self) -> Element {
        let b = Element::builder("rtp-hdrext", ns::RTP_HDREXT);
        let b = attr!(b, "id", self.id.to_string());
        let b = attr!(b, "uri", self.uri.as_str());
        attr!(b, "senders", self.senders.map(Senders::as_str)).build()
    }
}

/// XEP-0339 §3.1 `<source ssrc><parameter name value/></source>` (SDP `a=ssrc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The SSRC.
    pub ssrc: u32,
    /// `cname`, `msid`, `mslabel`, `label`, … in order, value optional.
    pub params: Vec<Parameter>,
}

impl Source {
    /// Reads a `<source/>`; `ssrc` is required.
    pub fn parse(el: &Element) -> Result<Self, JingleError> {
        expect(el, "source", ns::SSMA)?;
        Ok(Source {
            ssrc: req_parse(el, "source", "ssrc")?,
            params: parse_parameters(el, ns::SSMA),
        })
    }

    /// Writes the `<source/>` element.
    pub fn to_element(&self) -> Element {
        let b = attr!(
            Element::builder("source", ns::SSMA),
            "ssrc",
            self.ssrc.to_string()
        );
        b.append_all(parameter_elements(&self.params, ns::SSMA))
            .build()
    }
}

/// XEP-0339 §3.2 `<ssrc-group semantics><source ssrc/></ssrc-group>` (SDP `a=ssrc-group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcGroup {
    /// `FID`, `FEC`, `SIM`, …
    pub semantics: String,
    /// The SSRCs in order; unreadable ones are skipped.
    pub ssrcs: Vec<u32>,
}

impl SsrcGroup {
    /// Reads an `<ssrc-group/>`; `semantics` is required.
    pub fn parse(el: &Element) -> Result<Self, JingleError> {
        expect(el, "ssrc-group", ns::SSMA)?;
        Ok(SsrcGroup {
            semantics: req_attr(el, "ssrc-group", "semantics")?.to_owned(),
            ssrcs: el
                .children()
                .filter(|c| c.is("source", ns::SSMA))
                .filter_map(|c| opt_parse(c, "ssrc"))
                .collect(),
        })
    }

    /// Writes the `<ssrc-group/>` element.
    pub fn to_element(&self) -> Element {
        let b = attr!(
            Element::builder("ssrc-group", ns::SSMA),
            "semantics",
            self.semantics.as_str()
        );
        b.append_all(
            self.ssrcs.iter().map(|s| {
                attr!(Element::builder("source", ns::SSMA), "ssrc", s.to_string()).build()
            }),
        )
        .build()
    }
}

/// XEP-0167 §7.3 `<crypto crypto-suite key-params session-params tag/>` (SDES, SDP `a=crypto`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    /// RFC 4568 tag.
    pub tag: u32,
    /// `AES_CM_128_HMAC_SHA1_80`, …
    pub crypto_suite: String,
    /// `inline:KEY|…`, kept verbatim.
    pub key_params: String,
    /// Session parameters, kept verbatim.
    pub session_params: Option<String>,
}

impl Crypto {
    /// Reads a `<crypto/>`; `tag`, `crypto-suite` and `key-params` are required.
    pub fn parse(el: &Element) -> Result<Self, JingleError> {
        expect(el, "crypto", ns::RTP)?;
        Ok(Crypto {
            tag: req_parse(el, "crypto", "tag")?,
            crypto_suite: req_attr(el, "crypto", "crypto-suite")?.to_owned(),
            key_params: req_attr(el, "crypto", "key-params")?.to_owned(),
            session_params: opt_string(el, "session-params"),
        })
    }

    /// Writes the `<crypto/>` element.
    pub fn to_element(&self) -> Element {
        let b = Element::builder("crypto", ns::RTP);
        let b = attr!(b, "crypto-suite", self.crypto_suite.as_str());
        let b = attr!(b, "key-params", self.key_params.as_str());
        let b = attr!(b, "session-params", self.session_params.as_deref());
        attr!(b, "tag", self.tag.to_string()).build()
    }
}

/// XEP-0167 §7.3 `<encryption required>` with its SDES crypto lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encryption {
    /// `required='1'|'true'`.
    pub required: bool,
    /// The crypto lines; malformed ones are skipped.
    pub crypto: Vec<Crypto>,
}

/// XEP-0167 §4 `<bandwidth type>value</bandwidth>` (SDP `b=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    /// `AS`, `TIAS`, `CT`, …
    pub typ: String,
    /// The value (kbit/s for AS, bit/s for TIAS).
    pub value: u64,
}

/// `<stream xmlns='urn:xmpp:jingle:apps:rtp:msid:0' id track/>` (SDP `a=msid:id track`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsidStream {
    /// MediaStream id.
    pub id: String,
    /// Track id.
    pub track: Option<String>,
}

/// XEP-0167 `<description xmlns='urn:xmpp:jingle:apps:rtp:1'/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpDescription {
    /// `audio`, `video`.
    pub media: String,
    /// XEP-0167 `ssrc` attribute (superseded by XEP-0339 sources).
    pub ssrc: Option<u32>,
    /// Payload types in preference order; malformed ones are skipped.
    pub payload_types: Vec<PayloadType>,
    /// Description-level XEP-0293 feedback: applies to every payload type (SDP `*`).
    pub rtcp_fb: Vec<RtcpFb>,
    /// XEP-0294 header extensions.
    pub hdrexts: Vec<HdrExt>,
    /// XEP-0294 `<extmap-allow-mixed/>` (SDP `a=extmap-allow-mixed`, RFC 8285).
    pub extmap_allow_mixed: bool,
    /// XEP-0167 `<rtcp-mux/>`.
    pub rtcp_mux: bool,
    /// XEP-0339 sources.
    pub sources: Vec<Source>,
    /// XEP-0339 SSRC groups.
    pub ssrc_groups: Vec<SsrcGroup>,
    /// XEP-0167 SDES encryption.
    pub encryption: Option<Encryption>,
    /// XEP-0167 bandwidth.
    pub bandwidth: Option<Bandwidth>,
    /// WebRTC msid (`<stream>`).
    pub msid: Option<MsidStream>,
}

impl RtpDescription {
    /// An empty description of `media`.
    pub fn new(media: &str) -> Self {
        RtpDescription {
            media: media.to_owned(),
            ssrc: None,
            payload_types: Vec::new(),
            rtcp_fb: Vec::new(),
            hdrexts: Vec::new(),
            extmap_allow_mixed: false,
            rtcp_mux: false,
            sources: Vec::new(),
            ssrc_groups: Vec::new(),
            encryption: None,
            bandwidth: None,
            msid: None,
        }
    }

    /// Reads a `<description/>`; `media` is required (XEP-0167 §4).
    pub fn parse(el: &Element) -> Result<Self, JingleError> {
        expect(el, "description", ns::RTP)?;
        let mut d = RtpDescription::new(req_attr(el, "description", "media")?);
        d.ssrc = opt_parse(el, "ssrc");
        d.rtcp_fb = parse_rtcp_fbs(el);
        for c in el.children() {
            if c.is("payload-type", ns::RTP) {
                if let Ok(pt) = PayloadType::parse(c) {
                    d.payload_types.push(pt);
                }
            } else if c.is("rtp-hdrext", ns::RTP_HDREXT) {
                if let Ok(h) = HdrExt::parse(c) {
                    d.hdrexts.push(h);
                }
            } else if c.is("extmap-allow-mixed", ns::RTP_HDREXT) {
                d.extmap_allow_mixed = true;
            } else if c.is("rtcp-mux", ns::RTP) {
                d.rtcp_mux = true;
            } else if c.is("source", ns::SSMA) {
                if let Ok(s) = Source::parse(c) {
                    d.sources.push(s);
                }
            } else if c.is("ssrc-group", ns::SSMA) {
                if let Ok(g) = SsrcGroup::parse(c) {
                    d.ssrc_groups.push(g);
                }
            } else if c.is("encryption", ns::RTP) {
                d.encryption = Some(Encryption {
                    required: matches!(c.attr("required"), Some("1" | "true")),
                    crypto: c
                        .children()
                        .filter(|x| x.is("crypto", ns::RTP))
                        .filter_map(|x| Crypto::parse(x).ok())
                        .collect(),
                });
            } else if c.is("bandwidth", ns::RTP) {
                if let (Some(t), Ok(v)) = (c.attr("type"), c.text().trim().parse()) {
                    d.bandwidth = Some(Bandwidth {
                        typ: t.to_owned(),
                        value: v,
                    });
                }
            } else if c.is("stream", ns::MSID) {
                if let Some(id) = c.attr("id") {
                    d.msid = Some(MsidStream {
                        id: id.to_owned(),
                        track: opt_string(c, "track"),
                    });
                }
            }
        }
        Ok(d)
    }

    /// Writes the `<description/>` element.
    pub fn to_element(&self) -> Element {
        let b = attr!(
            Element::builder("description", ns::RTP),
            "media",
            self.media.as_str()
        );
        let mut b = attr!(b, "ssrc", self.ssrc.map(|s| s.to_string()));
        b = b.append_all(self.payload_types.iter().map(PayloadType::to_element));
        if let Some(e) = &self.encryption {
            let eb = Element::builder("encryption", ns::RTP);
            let eb = attr!(eb, "required", e.required.then_some("1"));
            b = b.append(
                eb.append_all(e.crypto.iter().map(Crypto::to_element))
                    .build(),
            );
        }
        if let Some(bw) = &self.bandwidth {
            let bb = attr!(
                Element::builder("bandwidth", ns::RTP),
                "type",
                bw.typ.as_str()
            );
            b = b.append(bb.append(bw.value.to_string()).build());
        }
        b = b.append_all(self.rtcp_fb.iter().map(RtcpFb::to_element));
        b = b.append_all(self.hdrexts.iter().map(HdrExt::to_element));
        if self.extmap_allow_mixed {
            b = b.append(Element::bare("extmap-allow-mixed", ns::RTP_HDREXT));
        }
        if self.rtcp_mux {
            b = b.append(Element::bare("rtcp-mux", ns::RTP));
        }
        b = b.append_all(self.sources.iter().map(Source::to_element));
        b = b.append_all(self.ssrc_groups.iter().map(SsrcGroup::to_element));
        if let Some(m) = &self.msid {
            let mb = attr!(Element::builder("stream", ns::MSID), "id", m.id.as_str());
            b = b.append(attr!(mb, "track", m.track.as_deref()).build());
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valueless_red_parameter_and_transport_cc() {
        let el: Element = "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>
            <payload-type id='63' name='red' clockrate='48000' channels='2'>
              <parameter name='111/111'/></payload-type>
            <payload-type id='111' name='opus' clockrate='48000' channels='2'>
              <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='transport-cc'/>
              <parameter name='minptime' value='10'/></payload-type>
            <payload-type id='x' name='bad'/>
            <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='nack' subtype='pli'/>
            <rtcp-mux/></description>"
            .parse()
            .unwrap();
        let d = RtpDescription::parse(&el).unwrap();
        assert_eq!(d.payload_types.len(), 2);
        assert_eq!(
            d.payload_types[0].parameters,
            [("111/111".to_owned(), None)]
        );
        assert_eq!(d.payload_types[0].channels, 2);
        assert_eq!(d.payload_types[1].rtcp_fb[0].typ, "transport-cc");
        assert_eq!(d.rtcp_fb[0].subtype.as_deref(), Some("pli"));
        assert!(d.rtcp_mux);
        let back = RtpDescription::parse(&d.to_element()).unwrap();
        assert_eq!(back, d);
        assert_eq!(
            d.to_element()
                .children()
                .next()
                .unwrap()
                .children()
                .next()
                .unwrap()
                .attr("value"),
            None
        );
    }

    #[test]
    fn payload_type_id_above_127_is_rejected() {
        let el: Element = "<payload-type xmlns='urn:xmpp:jingle:apps:rtp:1' id='200'/>"
            .parse()
            .unwrap();
        assert!(PayloadType::parse(&el).is_err());
    }

    #[test]
    fn sdes_encryption_is_kept() {
        let el: Element = "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>
            <encryption required='1'><crypto crypto-suite='AES_CM_128_HMAC_SHA1_80'
              key-params='inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:32' tag='1'/>
            </encryption></description>"
            .parse()
            .unwrap();
        let d = RtpDescription::parse(&el).unwrap();
        let e = d.encryption.clone().unwrap();
        assert!(e.required);
        assert_eq!(e.crypto[0].crypto_suite, "AES_CM_128_HMAC_SHA1_80");
        assert_eq!(RtpDescription::parse(&d.to_element()).unwrap(), d);
    }
}

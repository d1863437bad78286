//! XEP-0176: Jingle ICE-UDP Transport Method (with the XEP-0320 fingerprint it carries).
//!
//! Real libwebrtc clients send a transport with `ufrag`/`pwd` and the fingerprint but no
//! candidates in `session-initiate`, then one candidate per `transport-info`, without `id` and
//! `generation`, and possibly a non-standard `<gathering-complete/>` (STOX-MAPPING.md §8).

use super::JingleError;
use super::{attr, dtls::Fingerprint, expect, ns, opt_parse, opt_string, req_attr, req_parse};
use minidom::Element;
use std::fmt;
use std::str::FromStr;

/// XEP-0176 §5.1 / RFC 8445 §5.1.1 candidate type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateType {
    /// Host candidate.
    Host,
    /// Peer-reflexive candidate.
    Prflx,
    /// Relayed candidate (TURN).
    Relay,
    /// Server-reflexive candidate (STUN).
    Srflx,
}

impl CandidateType {
    /// The attribute value (also the SDP `typ` value).
    pub fn as_str(self) -> &'static str {
        match self {
            CandidateType::Host => "host",
            CandidateType::Prflx => "prflx",
            CandidateType::Relay => "relay",
            CandidateType::Srflx => "srflx",
        }
    }
}

impl fmt::Display for CandidateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CandidateType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "host" => Ok(CandidateType::Host),
            "prflx" => Ok(CandidateType::Prflx),
            "relay" => Ok(CandidateType::Relay),
            "srflx" => Ok(CandidateType::Srflx),
            _ => Err(()),
        }
    }
}

/// XEP-0176 §5.1 `<candidate/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// 1 for RTP, 2 for RTCP.
    pub component: u8,
    /// RFC 8445 foundation.
    pub foundation: String,
    /// ICE generation (libwebrtc omits it).
    pub generation: Option<u32>,
    /// Unique id (libwebrtc omits it); written on output when absent, see [`Candidate::output_id`].
    pub id: Option<String>,
    /// Address: an IP literal, or a name (mDNS `.local`) kept as received.
    pub ip: String,
    /// Port.
    pub port: u16,
    /// RFC 8445 priority.
    pub priority: u32,
    /// Transport protocol, `udp` (kept as received).
    pub protocol: String,
    /// Candidate type.
    pub typ: CandidateType,
    /// Related address (srflx/relay/prflx).
    pub rel_addr: Option<String>,
    /// Related port.
    pub rel_port: Option<u16>,
    /// Network interface index (libwebrtc's `network-id`).
    pub network: Option<u32>,
}

impl Candidate {
    /// Reads a `<candidate/>`. Required: `component`, `foundation`, `ip`, `port`, `priority`,
    /// `type`; `protocol` defaults to `udp`; `id` and `generation` are optional.
    pub fn parse(el: &Element) -> Result<Self, JingleError> {
        expect(el, "candidate", ns::ICE_UDP)?;
        const E: &str = "candidate";
        Ok(Candidate {
            component: req_parse(el, E, "component")?,
            foundation: req_attr(el, E, "foundation")?.to_owned(),
            generation: opt_parse(el, "generation"),
            id: opt_string(el, "id"),
            ip: req_attr(el, E, "ip")?.trim().to_owned(),
            port: req_parse(el, E, "port")?,
            priority: req_parse(el, E, "priority")?,
            protocol: el.attr("protocol").unwrap_or("udp").to_owned(),
            typ: req_parse(el, E, "type")?,
            rel_addr: opt_string(el, "rel-addr"),
            rel_port: opt_parse(el, "rel-port"),
            network: opt_parse(el, "network"),
        })
    }

    /// The `id` written on output: the received one, or one derived from the candidate itself
    /// (XEP-0176 requires an `id`; a derived one is stable for the same candidate).
    pub fn output_id(&self) -> String {
        match &self.id {
            Some(id) => id.clone(),
            None => format!(
                "{}-{}-{}-{}",
                self.foundation, self.component, self.protocol, self.port
            )
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect(),
        }
    }

    /// Writes the `<candidate/>` with every attribute XEP-0176 requires (`generation` 0 and a
    /// derived `id` when they were absent).
    pub fn to_element(&self) -> Element {
        let b = Element::builder("candidate", ns::ICE_UDP);
        let b = attr!(b, "component", self.component.to_string());
        let b = attr!(b, "foundation", self.foundation.as_str());
        let b = attr!(b, "generation", self.generation.unwrap_or(0).to_string());
        let b = attr!(b, "id", self.output_id());
        let b = attr!(b, "ip", self.ip.as_str());
        let b = attr!(b, "network", self.network.map(|n| n.to_string()));
        let b = attr!(b, "port", self.port.to_string());
        let b = attr!(b, "priority", self.priority.to_string());
        let b = attr!(b, "protocol", self.protocol.as_str());
        let b = attr!(b, "rel-addr", self.rel_addr.as_deref());
        let b = attr!(b, "rel-port", self.rel_port.map(|p| p.to_string()));
        attr!(b, "type", self.typ.as_str()).build()
    }
}

/// XEP-0176 §5 `<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag pwd>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceTransport {
    /// ICE username fragment (absent in some `transport-info`s).
    pub ufrag: Option<String>,
    /// ICE password.
    pub pwd: Option<String>,
    /// Candidates; malformed ones are skipped on input.
    pub candidates: Vec<Candidate>,
    /// XEP-0320 DTLS fingerprint and setup role.
    pub fingerprint: Option<Fingerprint>,
    /// A `<gathering-complete/>` child was present (non-standard, sent by StanzaJS; the SDP
    /// equivalent is `a=end-of-candidates`).
    pub gathering_complete: bool,
}

impl IceTransport {
    /// Reads a `<transport/>`.
    pub fn parse(el: &Element) -> Result<Self, JingleError> {
        expect(el, "transport", ns::ICE_UDP)?;
        let mut t = IceTransport {
            ufrag: opt_string(el, "ufrag"),
            pwd: opt_string(el, "pwd"),
            ..IceTransport::default()
        };
        for child in el.children() {
            if child.is("candidate", ns::ICE_UDP) {
                if let Ok(c) = Candidate::parse(child) {
                    t.candidates.push(c);
                }
            } else if child.is("fingerprint", ns::DTLS) {
                if t.fingerprint.is_none() {
                    t.fingerprint = Fingerprint::parse(child).ok();
                }
            } else if child.name() == "gathering-complete" {
                t.gathering_complete = true;
            }
        }
        Ok(t)
    }

    /// Writes the `<transport/>` element (`<gathering-complete/>` in the ICE-UDP namespace,
    /// as StanzaJS writes it, when set).
    pub fn to_element(&self) -> Element {
        let b = Element::builder("transport", ns::ICE_UDP);
        let b = attr!(b, "pwd", self.pwd.as_deref());
        let b = attr!(b, "ufrag", self.ufrag.as_deref());
        let b = b.append_all(self.fingerprint.iter().map(Fingerprint::to_element));
        let b = b.append_all(self.candidates.iter().map(Candidate::to_element));
        let b = if self.gathering_complete {
            b.append(Element::bare("gathering-complete", ns::ICE_UDP))
        } else {
            b
        };
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libwebrtc_candidate_without_id_and_generation() {
        let el: Element = "<candidate xmlns='urn:xmpp:jingle:transports:ice-udp:1' component='1' foundation='2175306218' ip='127.0.0.1' port='51000' priority='2122260223' protocol='udp' type='host' network='1'/>".parse().unwrap();
        let c = Candidate::parse(&el).unwrap();
        assert_eq!((c.component, c.port, c.priority), (1, 51000, 2122260223));
        assert_eq!(
            (c.id.as_deref(), c.generation, c.network),
            (None, None, Some(1))
        );
        let out = c.to_element();
        assert_eq!(out.attr("generation"), Some("0"));
        assert_eq!(out.attr("id"), Some("2175306218-1-udp-51000"));
    }

    #[test]
    fn bad_candidates_are_skipped_and_gathering_complete_is_seen() {
        let el: Element =
            "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='u' pwd='p'>
            <candidate component='1' foundation='1' port='1' priority='1' type='host'/>
            <candidate component='1' foundation='1' ip='::1' port='9' priority='1' type='host'/>
            <gathering-complete/></transport>"
                .parse()
                .unwrap();
        let t = IceTransport::parse(&el).unwrap();
        assert_eq!(t.candidates.len(), 1);
        assert_eq!(t.candidates[0].ip, "::1");
        assert!(t.gathering_complete);
        assert!(
            IceTransport::parse(&t.to_element())
                .unwrap()
                .gathering_complete
        );
    }
}

//! XEP-0166 Jingle, XEP-0167 RTP sessions and their companions, parsed leniently.
//!
//! Typed values for the Jingle stanzas a call peer exchanges, read from and written to
//! [`minidom::Element`]:
//!
//! | module | spec |
//! |---|---|
//! | [`session`] | XEP-0166 Jingle (`<jingle>`, `<content>`, `<reason>`, jingle errors), XEP-0167 §7 informational messages |
//! | [`rtp`] | XEP-0167 RTP description, XEP-0293 rtcp-fb, XEP-0294 header extensions, XEP-0339 sources |
//! | [`ice`] | XEP-0176 ICE-UDP transport |
//! | [`dtls`] | XEP-0320 DTLS-SRTP fingerprint |
//! | [`group`] | XEP-0338 grouping (BUNDLE) |
//! | [`jmi`] | XEP-0353 Jingle Message Initiation |
//!
//! `xmpp-parsers` already has Jingle types, but they reject what real clients send (see
//! ARCHITECTURE.md "stanza types" and STOX-MAPPING.md §8 "Quirks"): candidates without `id`,
//! valueless `<parameter>`, `<ringing/>` and `<finish/>` in JMI, `<gathering-complete/>`. The
//! rules here are:
//!
//! * **Input is lenient.** Unknown children and attributes are ignored. Attributes a peer
//!   commonly omits (`initiator`, `creator`, `senders`, candidate `id` and `generation`) are
//!   optional. A malformed item inside a list (a candidate without `ip`, a payload-type without
//!   a numeric `id`) is skipped rather than failing the whole stanza; only what makes the stanza
//!   meaningless (no `action`, no `sid`, a content without `name`) is a [`JingleError`].
//! * **Output is valid per the XEPs.** `to_element()` writes every attribute the XEP requires
//!   (for example a candidate `id` and `generation` are filled in when they were absent).
//! * Nothing here panics on network input.

pub mod dtls;
pub mod group;
pub mod ice;
pub mod jmi;
pub mod rtp;
pub mod session;

pub use dtls::{Fingerprint, Setup};
pub use group::Group;
pub use ice::{Candidate, CandidateType, IceTransport};
pub use jmi::{JingleMessage, ProposedDescription};
pub use rtp::{
    Bandwidth, Crypto, Encryption, HdrExt, MsidStream, PayloadType, RtcpFb, RtpDescription, Source,
    SsrcGroup,
};
pub use session::{
    Action, Content, Creator, Jingle, JingleErrorCondition, Reason, ReasonCondition, Senders,
    SessionInfo,
};

use minidom::Element;
use std::str::FromStr;

/// The namespaces of the Jingle family, one constant per XEP namespace.
pub mod ns {
    /// XEP-0166 Jingle.
    pub const JINGLE: &str = "urn:xmpp:jingle:1";
    /// XEP-0166 §10 Jingle error conditions.
    pub const JINGLE_ERRORS: &str = "urn:xmpp:jingle:errors:1";
    /// XEP-0167 RTP sessions.
    pub const RTP: &str = "urn:xmpp:jingle:apps:rtp:1";
    /// XEP-0167 §7 informational messages (`<ringing/>`, `<hold/>`, …).
    pub const RTP_INFO: &str = "urn:xmpp:jingle:apps:rtp:info:1";
    /// XEP-0167 disco feature for audio.
    pub const RTP_AUDIO: &str = "urn:xmpp:jingle:apps:rtp:audio";
    /// XEP-0167 disco feature for video.
    pub const RTP_VIDEO: &str = "urn:xmpp:jingle:apps:rtp:video";
    /// XEP-0293 RTCP feedback.
    pub const RTCP_FB: &str = "urn:xmpp:jingle:apps:rtp:rtcp-fb:0";
    /// XEP-0294 RTP header extensions.
    pub const RTP_HDREXT: &str = "urn:xmpp:jingle:apps:rtp:rtp-hdrext:0";
    /// XEP-0339 source-specific media attributes.
    pub const SSMA: &str = "urn:xmpp:jingle:apps:rtp:ssma:0";
    /// Non-standard `<stream>` (WebRTC msid) that StanzaJS and Jitsi send.
    pub const MSID: &str = "urn:xmpp:jingle:apps:rtp:msid:0";
    /// XEP-0176 ICE-UDP transport.
    pub const ICE_UDP: &str = "urn:xmpp:jingle:transports:ice-udp:1";
    /// XEP-0320 DTLS-SRTP.
    pub const DTLS: &str = "urn:xmpp:jingle:apps:dtls:0";
    /// XEP-0338 grouping.
    pub const GROUPING: &str = "urn:xmpp:jingle:apps:grouping:0";
    /// XEP-0353 Jingle Message Initiation.
    pub const JMI: &str = "urn:xmpp:jingle-message:0";
    /// XEP-0334 message processing hints (`<store/>` on JMI messages).
    pub const HINTS: &str = "urn:xmpp:hints";
}

/// Why a Jingle or JMI element could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JingleError {
    /// The element is not the one this type parses (wrong name or namespace).
    #[error("expected <{expected}/> in {ns}, got <{got}/> in {got_ns}")]
    WrongElement {
        /// Expected local name.
        expected: &'static str,
        /// Expected namespace.
        ns: &'static str,
        /// Local name found.
        got: String,
        /// Namespace found.
        got_ns: String,
    },
    /// A required attribute is absent.
    #[error("<{element}/> lacks the required attribute {attribute}")]
    MissingAttribute {
        /// Element local name.
        element: &'static str,
        /// Attribute name.
        attribute: &'static str,
    },
    /// A required attribute has a value that cannot be read.
    #[error("<{element} {attribute}='{value}'/> is invalid")]
    InvalidAttribute {
        /// Element local name.
        element: &'static str,
        /// Attribute name.
        attribute: &'static str,
        /// The offending value.
        value: String,
    },
    /// The element carries no child this type understands (e.g. an empty JMI wrapper).
    #[error("<{element}/> has no recognised child")]
    NoPayload {
        /// Element local name.
        element: &'static str,
    },
}

/// Checks name and namespace of `el`.
pub(crate) fn expect(
    el: &Element,
    name: &'static str,
    ns_: &'static str,
) -> Result<(), JingleError> {
    if el.is(name, ns_) {
        Ok(())
    } else {
        Err(JingleError::WrongElement {
            expected: name,
            ns: ns_,
            got: el.name().to_owned(),
            got_ns: el.ns(),
        })
    }
}

/// A required string attribute.
pub(crate) fn req_attr<'a>(
    el: &'a Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<&'a str, JingleError> {
    el.attr(attribute)
        .ok_or(JingleError::MissingAttribute { element, attribute })
}

/// A required attribute parsed with `FromStr` (surrounding whitespace tolerated).
pub(crate) fn req_parse<T: FromStr>(
    el: &Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<T, JingleError> {
    let v = req_attr(el, element, attribute)?;
    v.trim().parse().map_err(|_| JingleError::InvalidAttribute {
        element,
        attribute,
        value: v.to_owned(),
    })
}

/// An optional attribute parsed with `FromStr`; an unreadable value counts as absent
/// (leniency: a peer's garbage in an optional attribute must not fail the call).
pub(crate) fn opt_parse<T: FromStr>(el: &Element, attribute: &str) -> Option<T> {
    el.attr(attribute).and_then(|v| v.trim().parse().ok())
}

/// An optional string attribute, owned.
pub(crate) fn opt_string(el: &Element, attribute: &str) -> Option<String> {
    el.attr(attribute).map(str::to_owned)
}

/// Sets attribute `$name` on an [`minidom::ElementBuilder`]; `None` values are skipped.
macro_rules! attr {
    ($b:expr, $name:literal, $v:expr) => {
        $b.attr(::minidom::rxml::xml_ncname!($name).into(), $v)
    };
}
pub(crate) use attr;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_element_is_an_error_naming_both() {
        let el: Element = "<foo xmlns='bar'/>".parse().unwrap();
        let err = expect(&el, "jingle", ns::JINGLE).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected <jingle/> in urn:xmpp:jingle:1, got <foo/> in bar"
        );
    }

    #[test]
    fn optional_garbage_is_absent_required_garbage_is_an_error() {
        let el: Element = "<x xmlns='n' a=' 12 ' b='zz'/>".parse().unwrap();
        assert_eq!(opt_parse::<u32>(&el, "a"), Some(12));
        assert_eq!(opt_parse::<u32>(&el, "b"), None);
        assert!(matches!(
            req_parse::<u32>(&el, "x", "b"),
            Err(JingleError::InvalidAttribute { .. })
        ));
        assert!(matches!(
            req_parse::<u32>(&el, "x", "c"),
            Err(JingleError::MissingAttribute { .. })
        ));
    }
}

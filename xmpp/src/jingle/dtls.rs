//! XEP-0320: Use of DTLS-SRTP in Jingle Sessions (`<fingerprint/>` inside an ICE-UDP transport).
//!
//! `setup` carries the RFC 4145 / RFC 8842 role: an offer says `actpass`, an answer MUST say
//! `active` or `passive` (STOX-MAPPING.md §8: answering `actpass` hangs real clients).

use super::{attr, expect, ns, req_attr, JingleError};
use minidom::Element;
use std::fmt;
use std::str::FromStr;

/// RFC 4145 §4 / RFC 8842 §5 DTLS role (the SDP `a=setup` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setup {
    /// Offerer: either role.
    Actpass,
    /// Opens the DTLS connection (sends the ClientHello).
    Active,
    /// Waits for the ClientHello.
    Passive,
    /// No connection for now.
    Holdconn,
}

impl Setup {
    /// The attribute value, as in SDP and XEP-0320.
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::Actpass => "actpass",
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::Holdconn => "holdconn",
        }
    }
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Setup {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "actpass" => Ok(Setup::Actpass),
            "active" => Ok(Setup::Active),
            "passive" => Ok(Setup::Passive),
            "holdconn" => Ok(Setup::Holdconn),
            _ => Err(()),
        }
    }
}

/// XEP-0320 §3 `<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash setup>HEX</fingerprint>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Hash function name as in RFC 8122 (`sha-256`).
    pub hash: String,
    /// DTLS role; absent or unknown values read as `None`.
    pub setup: Option<Setup>,
    /// The fingerprint, colon-separated hex exactly as received (case preserved).
    pub value: String,
}

impl Fingerprint {
    /// Reads a `<fingerprint/>`. `hash` is required; the value is trimmed.
    pub fn parse(el: &Element) -> Result<Self, JingleError> {
        expect(el, "fingerprint", ns::DTLS)?;
        Ok(Fingerprint {
            hash: req_attr(el, "fingerprint", "hash")?.to_owned(),
            setup: el.attr("setup").and_then(|s| s.trim().parse().ok()),
            value: el.text().trim().to_owned(),
        })
    }

    /// Writes the `<fingerprint/>` element.
    pub fn to_element(&self) -> Element {
        let b = Element::builder("fingerprint", ns::DTLS);
        let b = attr!(b, "hash", self.hash.as_str());
        let b = attr!(b, "setup", self.setup.map(Setup::as_str));
        b.append(self.value.as_str()).build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0320_example_round_trips() {
        let xml = "<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>\n  02:1A:CC:54:27:AB:EB:9C:53:3F:3E:4B:65:2E:7D:46:3F:54:42:CD:54:F1:7A:03:A2:7D:F9:B0:7F:46:19:B2\n</fingerprint>";
        let el: Element = xml.parse().unwrap();
        let fp = Fingerprint::parse(&el).unwrap();
        assert_eq!(fp.hash, "sha-256");
        assert_eq!(fp.setup, Some(Setup::Actpass));
        assert!(fp.value.starts_with("02:1A:CC") && fp.value.ends_with("19:B2"));
        assert_eq!(Fingerprint::parse(&fp.to_element()).unwrap(), fp);
    }

    #[test]
    fn missing_hash_is_an_error_unknown_setup_is_none() {
        let el: Element = "<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0'>AB</fingerprint>"
            .parse()
            .unwrap();
        assert!(Fingerprint::parse(&el).is_err());
        let el: Element =
            "<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-1' setup='bogus'>AB</fingerprint>"
                .parse()
                .unwrap();
        assert_eq!(Fingerprint::parse(&el).unwrap().setup, None);
    }
}

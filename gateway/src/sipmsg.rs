//! SIP requests and responses as plain values, the way the sans-IO core sees them.
//!
//! The io layer converts `rsipstack` messages to and from these, so that the
//! core and the translation tables are tested without a SIP stack.

/// The transport a request arrived on or should leave on (RFC 3261 §18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: a request larger than the RFC 3261 §18.1.1 limit must not use it.
    Udp,
    /// TCP: congestion controlled.
    Tcp,
}

/// RFC 3261 §7.3.3: compact header forms and their long names.
const COMPACT: &[(&str, &str)] = &[
    ("i", "call-id"),
    ("m", "contact"),
    ("e", "content-encoding"),
    ("l", "content-length"),
    ("c", "content-type"),
    ("f", "from"),
    ("s", "subject"),
    ("k", "supported"),
    ("t", "to"),
    ("v", "via"),
];

/// The long form of a header name (compact forms expanded), without allocating;
/// the comparison that follows is case-insensitive.
fn long_name(n: &str) -> &str {
    let n = n.trim();
    if n.len() == 1 {
        if let Some((_, long)) = COMPACT.iter().find(|(c, _)| c.eq_ignore_ascii_case(n)) {
            return long;
        }
    }
    n
}

/// An incoming SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipRequest {
    /// The method, e.g. `MESSAGE`.
    pub method: String,
    /// The Request-URI as text.
    pub uri: String,
    /// Headers in order, names as received (compact forms allowed).
    pub headers: Vec<(String, String)>,
    /// The body, opaque bytes (RFC 3261 §7.4).
    pub body: Vec<u8>,
    /// The transport it arrived on.
    pub transport: Transport,
}

impl SipRequest {
    /// The first value of a header, by long or compact name, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = long_name(name);
        self.headers
            .iter()
            .find(|(n, _)| long_name(n).eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

/// A final response to one of stox's client transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipResponse {
    /// The status code.
    pub code: u16,
    /// The reason phrase as received.
    pub reason: String,
}

/// A request stox asks the io layer to send as a client transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRequest {
    /// The method.
    pub method: String,
    /// Request-URI.
    pub uri: String,
    /// `From` URI (the io layer adds the tag).
    pub from: String,
    /// `To` URI.
    pub to: String,
    /// `Call-ID`; the io layer makes one when `None`.
    pub call_id: Option<String>,
    /// Extra headers (Subject, Content-Language, ...).
    pub headers: Vec<(String, String)>,
    /// `Content-Type` of the body, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// Where a SIP header value carries a URI in `<...>` or bare (RFC 3261 §20.20 name-addr / addr-spec),
/// returns the URI part.
pub fn uri_of_name_addr(value: &str) -> &str {
    let value = value.trim();
    if let Some(start) = value.find('<') {
        if let Some(end) = value[start + 1..].find('>') {
            return &value[start + 1..start + 1 + end];
        }
    }
    // addr-spec: header parameters follow a ';' after the URI, but URI
    // parameters also use ';': without brackets RFC 3261 §20 says the
    // parameters belong to the header, so cut at the first ';'.
    value.split(';').next().unwrap_or(value).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_long_names_match() {
        let r = SipRequest {
            method: "MESSAGE".into(),
            uri: "sip:a@b".into(),
            headers: vec![
                ("f".into(), "<sip:x@y>;tag=1".into()),
                ("Content-Type".into(), " text/plain ".into()),
            ],
            body: vec![],
            transport: Transport::Udp,
        };
        assert_eq!(r.header("From"), Some("<sip:x@y>;tag=1"));
        assert_eq!(r.header("c"), Some("text/plain"));
        assert_eq!(r.header("subject"), None);
        assert_eq!(r.header(" F "), Some("<sip:x@y>;tag=1"));
        assert_eq!(r.header("CONTENT-TYPE"), Some("text/plain"));
        assert!(long_name(" I ").eq_ignore_ascii_case("Call-ID"));
        assert_eq!(long_name("Via"), "Via");
    }

    #[test]
    fn name_addr_uri() {
        assert_eq!(
            uri_of_name_addr("\"Carol\" <sip:carol@pbx;gr=x>;tag=9"),
            "sip:carol@pbx;gr=x"
        );
        assert_eq!(uri_of_name_addr("sip:carol@pbx;tag=9"), "sip:carol@pbx");
        assert_eq!(uri_of_name_addr("<sip:carol@pbx"), "<sip:carol@pbx");
    }
}

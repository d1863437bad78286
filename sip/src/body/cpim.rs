//! RFC 3862: `message/cpim`, the Common Presence and Instant Messaging message format, with the
//! RFC 5438 `imdn.` header fields that request disposition notifications.
//!
//! RFC 3862 §2: a CPIM message is a block of message headers, an empty line, then an
//! encapsulated MIME object (its content headers, an empty line, its body):
//!
//! ```text
//! From: Alice <im:alice@example.com>          message headers (RFC 3862 §3, §4)
//! To: Bob <im:bob@example.com>
//! NS: imdn <urn:ietf:params:imdn>             §3.4 namespace declaration
//! imdn.Message-ID: 34jk324j                   a header in that namespace
//!
//! Content-type: text/plain                    content headers (RFC 2045)
//!
//! Hello World                                 body
//! ```
//!
//! Tolerated on input: bare LF line ends; folded (continuation) header lines; a missing empty
//! line before the content headers (a `Content-*` header in the message-header block starts
//! the content headers, as several clients write it); a message that ends after the content
//! headers (empty body); a `imdn.` prefix used without its `NS` declaration. Header values
//! are kept as written (RFC 3862 §3.3 `;lang=` parameters and §2.3 escapes are not decoded).
//! Header names are looked up ASCII case-insensitively, although RFC 3862 §3.1 makes them
//! case-sensitive: no two headers stox reads differ only in case.

use std::fmt;

use super::{BodyError, ContentType};

/// RFC 5438 namespace URI of the IMDN CPIM header fields.
pub const IMDN_NS: &str = "urn:ietf:params:imdn";

/// RFC 3862 §3.4: the namespace of the core headers (From, To, DateTime, …).
const CORE_NS: &str = "urn:ietf:params:cpim-headers:";

/// A parsed `message/cpim` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpimMessage {
    /// Message headers in order, names as written (including any `prefix.`), values as
    /// written without the separating whitespace. `NS` declarations are included.
    pub headers: Vec<(String, String)>,
    /// The encapsulated object's `Content-Type`, when present and valid.
    pub content_type: Option<ContentType>,
    /// The encapsulated object's headers in order (including `Content-Type` as written).
    pub content_headers: Vec<(String, String)>,
    /// The encapsulated object's body, byte for byte.
    pub body: Vec<u8>,
}

/// RFC 5438: what an `imdn.Disposition-Notification` header field requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DispositionNotification {
    /// `positive-delivery`: report successful delivery.
    pub positive_delivery: bool,
    /// `negative-delivery`: report failed delivery.
    pub negative_delivery: bool,
    /// `display`: report that the message was displayed.
    pub display: bool,
    /// `processing`: report intermediary processing (stored, processed).
    pub processing: bool,
}

impl DispositionNotification {
    /// Parses the header value: a comma-separated list of tokens (case-insensitive); unknown
    /// tokens are ignored (RFC 5438 allows extension values).
    pub fn parse(value: &str) -> Self {
        let mut d = Self::default();
        for token in value.split(',').map(str::trim) {
            if token.eq_ignore_ascii_case("positive-delivery") {
                d.positive_delivery = true;
            } else if token.eq_ignore_ascii_case("negative-delivery") {
                d.negative_delivery = true;
            } else if token.eq_ignore_ascii_case("display") {
                d.display = true;
            } else if token.eq_ignore_ascii_case("processing") {
                d.processing = true;
            }
        }
        d
    }

    /// True when nothing is requested.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Display for DispositionNotification {
    /// The header value, e.g. `positive-delivery, display`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tokens = [
            (self.positive_delivery, "positive-delivery"),
            (self.negative_delivery, "negative-delivery"),
            (self.display, "display"),
            (self.processing, "processing"),
        ];
        let mut first = true;
        for (_, token) in tokens.iter().filter(|(on, _)| *on) {
            if !first {
                f.write_str(", ")?;
            }
            f.write_str(token)?;
            first = false;
        }
        Ok(())
    }
}

/// The next line of `buf` from `pos`: (line without its CRLF or LF, position after it).
fn next_line(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    if pos >= buf.len() {
        return None;
    }
    let rest = &buf[pos..];
    match rest.iter().position(|&b| b == b'\n') {
        Some(n) => {
            let line = &rest[..n];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            Some((line, pos + n + 1))
        }
        None => Some((rest, buf.len())),
    }
}

/// RFC 3862 §3.1 header name characters: a token, with `.` separating a namespace prefix.
fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn shown(line: &[u8]) -> String {
    String::from_utf8_lossy(line).chars().take(80).collect()
}

/// Splits `Name: value`. The value keeps everything after the colon but leading whitespace.
fn split_header(line: &[u8]) -> Result<(String, String), BodyError> {
    let invalid = || BodyError::CpimInvalidHeader(shown(line));
    let text = std::str::from_utf8(line).map_err(|_| invalid())?;
    let (name, value) = text.split_once(':').ok_or_else(invalid)?;
    let name = name.trim_end_matches([' ', '\t']);
    if name.is_empty() || !name.bytes().all(is_name_char) {
        return Err(invalid());
    }
    Ok((
        name.to_owned(),
        value.trim_start_matches([' ', '\t']).to_owned(),
    ))
}

fn is_content_header(name: &str) -> bool {
    name.len() > 8 && name[..8].eq_ignore_ascii_case("content-")
}

/// A header block as read by [`read_headers`].
struct HeaderBlock {
    headers: Vec<(String, String)>,
    /// Where what follows the block starts: after its empty line, at the `Content-*` header
    /// that ended it, or at the end of input.
    next: usize,
    /// The block ended with an empty line (not at the end of input or a `Content-*` header).
    terminated: bool,
}

/// Reads a header block from `pos` up to and including its empty line; with
/// `stop_at_content`, a `Content-*` header also ends it (that header is not consumed).
fn read_headers(
    buf: &[u8],
    mut pos: usize,
    stop_at_content: bool,
) -> Result<HeaderBlock, BodyError> {
    let mut headers: Vec<(String, String)> = Vec::new();
    while let Some((line, next)) = next_line(buf, pos) {
        if line.is_empty() {
            return Ok(HeaderBlock {
                headers,
                next,
                terminated: true,
            });
        }
        if matches!(line[0], b' ' | b'\t') {
            // Continuation of a folded header.
            let Some((_, value)) = headers.last_mut() else {
                return Err(BodyError::CpimInvalidHeader(shown(line)));
            };
            let more =
                std::str::from_utf8(line).map_err(|_| BodyError::CpimInvalidHeader(shown(line)))?;
            if !value.is_empty() {
                value.push(' ');
            }
            value.push_str(more.trim_matches([' ', '\t']));
        } else {
            let (name, value) = split_header(line)?;
            if stop_at_content && is_content_header(&name) {
                return Ok(HeaderBlock {
                    headers,
                    next: pos,
                    terminated: false,
                });
            }
            headers.push((name, value));
        }
        pos = next;
    }
    Ok(HeaderBlock {
        headers,
        next: pos,
        terminated: false,
    })
}

/// Parses a `message/cpim` body.
///
/// Errors: [`BodyError::CpimInvalidHeader`] for a header line that is not `Name: value`
/// (or not UTF-8), [`BodyError::CpimMissingSeparator`] when the input ends inside the
/// message headers, [`BodyError::CpimNoHeaders`] when there are no message headers.
pub fn parse(bytes: &[u8]) -> Result<CpimMessage, BodyError> {
    let message = read_headers(bytes, 0, true)?;
    if !message.terminated && message.next >= bytes.len() {
        return Err(BodyError::CpimMissingSeparator("message"));
    }
    let headers = message.headers;
    if headers.is_empty() {
        return Err(BodyError::CpimNoHeaders);
    }
    let content = read_headers(bytes, message.next, false)?;
    let content_headers = content.headers;
    let body_start = content.next;
    let content_type = content_headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .and_then(|(_, v)| v.parse::<ContentType>().ok());
    Ok(CpimMessage {
        headers,
        content_type,
        content_headers,
        body: bytes[body_start.min(bytes.len())..].to_vec(),
    })
}

impl CpimMessage {
    /// The first message header called `name` (ASCII case-insensitive, prefix included:
    /// `header("imdn.Message-ID")`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first content header called `name` (ASCII case-insensitive).
    pub fn content_header(&self, name: &str) -> Option<&str> {
        self.content_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// RFC 3862 §4.1: the `From` header value, e.g. `Alice <im:alice@example.com>`.
    pub fn from(&self) -> Option<&str> {
        self.ns_header(CORE_NS, "From")
    }

    /// RFC 3862 §4.2: the first `To` header value.
    pub fn to(&self) -> Option<&str> {
        self.ns_header(CORE_NS, "To")
    }

    /// RFC 3862 §4.4: the `DateTime` header value (RFC 3339 timestamp, as written).
    pub fn datetime(&self) -> Option<&str> {
        self.ns_header(CORE_NS, "DateTime")
    }

    /// RFC 3862 §3.4: the first header called `name` in the namespace `uri`, resolving the
    /// `NS` declarations in force where each header appears (`NS: prefix <uri>` for
    /// `prefix.Name`, `NS: <uri>` for unprefixed names). The core namespace is also the one
    /// of unprefixed names when no default is declared.
    pub fn ns_header(&self, uri: &str, name: &str) -> Option<&str> {
        let mut prefixes: Vec<(&str, &str)> = Vec::new();
        let mut default_ns = CORE_NS;
        for (n, v) in &self.headers {
            if n == "NS" {
                if let Some((prefix, ns)) = parse_ns(v) {
                    match prefix {
                        Some(p) => prefixes.push((p, ns)),
                        None => default_ns = ns,
                    }
                }
                continue;
            }
            let (ns, local) = match n.split_once('.') {
                Some((p, local)) => match prefixes.iter().rev().find(|(q, _)| *q == p) {
                    Some((_, ns)) => (*ns, local),
                    None => continue,
                },
                None => (default_ns, n.as_str()),
            };
            if ns.eq_ignore_ascii_case(uri) && local.eq_ignore_ascii_case(name) {
                return Some(v);
            }
        }
        None
    }

    /// RFC 5438: `imdn.Message-ID`, the identifier notifications refer to. The IMDN
    /// namespace prefix is resolved from its `NS` declaration; an undeclared `imdn.` prefix
    /// is accepted too.
    pub fn imdn_message_id(&self) -> Option<&str> {
        self.imdn_header("Message-ID")
    }

    /// RFC 5438: the notifications requested by `imdn.Disposition-Notification`.
    pub fn disposition_notification(&self) -> Option<DispositionNotification> {
        self.imdn_header("Disposition-Notification")
            .map(DispositionNotification::parse)
    }

    fn imdn_header(&self, name: &str) -> Option<&str> {
        self.ns_header(IMDN_NS, name)
            .or_else(|| self.header(&format!("imdn.{name}")))
    }
}

/// RFC 3862 §3.4 `NS` value: `[prefix] SP "<" uri ">"`.
fn parse_ns(value: &str) -> Option<(Option<&str>, &str)> {
    let value = value.trim();
    let (prefix, rest) = match value.find('<') {
        Some(0) => (None, value),
        Some(i) => (Some(value[..i].trim()), &value[i..]),
        None => return None,
    };
    let uri = rest.strip_prefix('<')?.strip_suffix('>')?;
    Some((prefix.filter(|p| !p.is_empty()), uri.trim()))
}

/// Makes a header value safe to write: control characters (which would end the header line
/// or corrupt it) are replaced by a space. RFC 3862 §2.3 would escape them instead; stox never
/// needs to carry them.
fn header_value(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `Name <uri>` stays as written; a bare URI is put in angle brackets (RFC 3862 §4.1).
fn address(v: &str) -> String {
    let v = header_value(v);
    if v.contains('<') {
        v
    } else {
        format!("<{}>", v.trim())
    }
}

/// Builds a `message/cpim` body (RFC 3862 §2, headers in the order of the RFC 5438 examples).
///
/// * `from`, `to`: `Name <uri>` or a bare URI (put in angle brackets).
/// * `datetime`: RFC 3339 timestamp for the `DateTime` header (RFC 3862 §4.4).
/// * `imdn_message_id`, `disposition_notification`: the RFC 5438 header fields; when either is
///   given, `NS: imdn <urn:ietf:params:imdn>` is declared. An empty request is not written.
/// * `content_type`, `body`: the encapsulated object; `Content-Length` is added.
///
/// Control characters in header values are replaced by spaces, so no value can inject a
/// header.
pub fn build(
    from: &str,
    to: &str,
    datetime: Option<&str>,
    imdn_message_id: Option<&str>,
    disposition_notification: Option<&DispositionNotification>,
    content_type: &ContentType,
    body: &[u8],
) -> Vec<u8> {
    let disposition = disposition_notification.filter(|d| !d.is_empty());
    let mut head = String::new();
    head.push_str(&format!("From: {}\r\n", address(from)));
    head.push_str(&format!("To: {}\r\n", address(to)));
    if imdn_message_id.is_some() || disposition.is_some() {
        head.push_str(&format!("NS: imdn <{IMDN_NS}>\r\n"));
    }
    if let Some(id) = imdn_message_id {
        head.push_str(&format!("imdn.Message-ID: {}\r\n", header_value(id)));
    }
    if let Some(dt) = datetime {
        head.push_str(&format!("DateTime: {}\r\n", header_value(dt)));
    }
    if let Some(d) = disposition {
        head.push_str(&format!("imdn.Disposition-Notification: {d}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(&format!(
        "Content-Type: {}\r\nContent-Length: {}\r\n\r\n",
        header_value(&content_type.to_string()),
        body.len()
    ));
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vector(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn rfc3862_example() {
        // RFC 3862's example message: its `h:` and `e:` lines (the `m:` line is the SIP Content-Type).
        let m = parse(&vector("rfc3862-example.cpim")).unwrap();
        assert_eq!(m.from(), Some("MR SANDERS <im:piglet@100akerwood.com>"));
        assert_eq!(m.to(), Some("Depressed Donkey <im:eeyore@100akerwood.com>"));
        assert_eq!(m.datetime(), Some("2000-12-13T13:40:00-08:00"));
        assert_eq!(m.header("Subject"), Some("the weather will be fine today"));
        assert_eq!(m.headers.len(), 9);
        assert_eq!(
            m.headers[4],
            (
                "Subject".to_owned(),
                ";lang=fr beau temps prevu pour aujourd'hui".to_owned()
            )
        );
        assert_eq!(
            m.ns_header("mid:MessageFeatures@id.foo.com", "VitalMessageOption"),
            Some("Confirmation-requested")
        );
        assert_eq!(
            m.header("MyFeatures.WackyMessageOption"),
            Some("Use-silly-font")
        );
        assert_eq!(
            m.content_type,
            Some("text/xml; charset=utf-8".parse().unwrap())
        );
        assert_eq!(m.content_header("content-id"), Some("<1234567890@foo.com>"));
        assert_eq!(
            m.body,
            b"<body>\r\nHere is the text of my message.\r\n</body>\r\n"
        );
        assert_eq!(m.imdn_message_id(), None);
        assert_eq!(m.disposition_notification(), None);
    }

    #[test]
    fn rfc5438_disposition_request_example() {
        // RFC 5438's example of a message requesting delivery notifications (this vector is
        // stored with bare LF line ends).
        let m = parse(&vector("rfc5438-disposition-request.cpim")).unwrap();
        assert_eq!(m.from(), Some("Alice <im:alice@example.com>"));
        assert_eq!(m.to(), Some("Bob <im:bob@example.com>"));
        assert_eq!(m.imdn_message_id(), Some("34jk324j"));
        assert_eq!(m.datetime(), Some("2006-04-04T12:16:49-05:00"));
        assert_eq!(
            m.disposition_notification(),
            Some(DispositionNotification {
                positive_delivery: true,
                negative_delivery: true,
                ..Default::default()
            })
        );
        assert!(m.content_type.as_ref().unwrap().is("text/plain"));
        assert_eq!(m.body, b"Hello World\n");
    }

    #[test]
    fn rfc5438_imdn_in_cpim_example() {
        // RFC 5438's delivery notification example travels in CPIM; the example
        // has no empty line between message and content headers.
        let m = parse(&vector("rfc5438-delivery-notification.cpim")).unwrap();
        assert_eq!(m.from(), Some("Bob <im:bob@example.com>"));
        assert_eq!(m.imdn_message_id(), Some("d834jied93rf"));
        assert_eq!(m.headers.len(), 5);
        assert!(m.content_type.as_ref().unwrap().is("message/imdn+xml"));
        assert_eq!(
            m.content_header("Content-Disposition"),
            Some("notification")
        );
        let imdn = super::super::imdn::parse(&m.body).unwrap();
        assert_eq!(imdn.message_id, "34jk324j");
    }

    #[test]
    fn crlf_and_lf_give_the_same_message() {
        let crlf = b"From: <sip:a@x>\r\nTo: <sip:b@y>\r\n\r\nContent-Type: text/plain\r\n\r\nhi";
        let lf = b"From: <sip:a@x>\nTo: <sip:b@y>\n\nContent-Type: text/plain\n\nhi";
        assert_eq!(parse(crlf).unwrap(), parse(lf).unwrap());
    }

    #[test]
    fn namespace_resolution() {
        // Prefix other than `imdn`, a default namespace, and a re-declared prefix.
        let m = parse(
            b"From: <sip:a@x>\r\nTo: <sip:b@y>\r\nNS: rcs <urn:ietf:params:imdn>\r\n\
              rcs.Message-ID: abc\r\nNS: <urn:ietf:params:imdn>\r\n\
              Disposition-Notification: display\r\n\r\nContent-Type: text/plain\r\n\r\n",
        )
        .unwrap();
        assert_eq!(m.imdn_message_id(), Some("abc"));
        assert_eq!(
            m.disposition_notification(),
            Some(DispositionNotification {
                display: true,
                ..Default::default()
            })
        );
        // After `NS: <urn:…imdn>`, an unprefixed header is no longer a core header.
        assert_eq!(m.from(), Some("<sip:a@x>"));
        // A prefix declared for another namespace does not count.
        let m = parse(
            b"From: <sip:a@x>\nNS: imdn <urn:other>\nimdn.Message-ID: no\n\nContent-Type: a/b\n\n",
        )
        .unwrap();
        assert_eq!(m.ns_header(IMDN_NS, "Message-ID"), None);
        // Undeclared `imdn.` prefix: accepted.
        let m = parse(b"From: <sip:a@x>\nimdn.Message-ID: yes\n\nContent-Type: a/b\n\n").unwrap();
        assert_eq!(m.imdn_message_id(), Some("yes"));
    }

    #[test]
    fn tolerances() {
        // Folded header, no content headers at all, then body.
        let m = parse(b"From: <sip:a@x>\r\nSubject: one\r\n two\r\n\r\n\r\nbody").unwrap();
        assert_eq!(m.header("subject"), Some("one two"));
        assert!(m.content_headers.is_empty());
        assert_eq!(m.content_type, None);
        assert_eq!(m.body, b"body");
        // Ends after the content headers.
        let m = parse(b"From: <sip:a@x>\n\nContent-Type: text/plain").unwrap();
        assert!(m.body.is_empty());
        assert!(m.content_type.is_some());
        // Invalid Content-Type: kept as a header, not parsed.
        let m = parse(b"From: <sip:a@x>\n\nContent-Type: garbage\n\nx").unwrap();
        assert_eq!(m.content_type, None);
        assert_eq!(m.content_header("content-type"), Some("garbage"));
        // Binary body kept byte for byte.
        let m = parse(b"From: <sip:a@x>\n\nContent-Type: a/b\n\n\x00\xff\r\n\r\n").unwrap();
        assert_eq!(m.body, b"\x00\xff\r\n\r\n");
    }

    #[test]
    fn rejects_non_cpim() {
        assert_eq!(parse(b""), Err(BodyError::CpimMissingSeparator("message")));
        assert_eq!(
            parse(b"From: <sip:a@x>\r\nTo: <sip:b@y>"),
            Err(BodyError::CpimMissingSeparator("message"))
        );
        assert!(matches!(
            parse(b"Hello Bob!"),
            Err(BodyError::CpimInvalidHeader(_))
        ));
        assert_eq!(parse(b"\r\nHello"), Err(BodyError::CpimNoHeaders));
        assert_eq!(
            parse(b"Content-Type: text/plain\r\n\r\nHello"),
            Err(BodyError::CpimNoHeaders)
        );
        assert!(matches!(
            parse(b" folded: x\n\n"),
            Err(BodyError::CpimInvalidHeader(_))
        ));
        assert!(matches!(
            parse(b"Fr om: x\n\n"),
            Err(BodyError::CpimInvalidHeader(_))
        ));
        assert!(matches!(
            parse(b"From: \xff\n\n"),
            Err(BodyError::CpimInvalidHeader(_))
        ));
        assert!(matches!(
            parse(b"From: <sip:a@x>\n\nnot a header\n\nbody"),
            Err(BodyError::CpimInvalidHeader(_))
        ));
    }

    #[test]
    fn build_matches_rfc5438_layout() {
        let d = DispositionNotification {
            positive_delivery: true,
            negative_delivery: true,
            ..Default::default()
        };
        let ct = ContentType::new("text/plain").with_param("charset", "utf-8");
        let out = build(
            "Alice <im:alice@example.com>",
            "im:bob@example.com",
            Some("2006-04-04T12:16:49-05:00"),
            Some("34jk324j"),
            Some(&d),
            &ct,
            b"Hello World",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "From: Alice <im:alice@example.com>\r\n\
             To: <im:bob@example.com>\r\n\
             NS: imdn <urn:ietf:params:imdn>\r\n\
             imdn.Message-ID: 34jk324j\r\n\
             DateTime: 2006-04-04T12:16:49-05:00\r\n\
             imdn.Disposition-Notification: positive-delivery, negative-delivery\r\n\
             \r\n\
             Content-Type: text/plain;charset=utf-8\r\n\
             Content-Length: 11\r\n\
             \r\n\
             Hello World"
        );
    }

    #[test]
    fn build_without_imdn_has_no_ns() {
        let out = build(
            "<sip:a@x>",
            "<sip:b@y>",
            None,
            None,
            Some(&DispositionNotification::default()),
            &ContentType::new("text/plain"),
            b"",
        );
        let m = parse(&out).unwrap();
        assert_eq!(m.headers.len(), 2);
        assert!(m.body.is_empty());
    }

    #[test]
    fn build_cannot_inject_headers() {
        let out = build(
            "<sip:a@x>\r\nTo: evil",
            "<sip:b@y>",
            Some("now\nimdn.Message-ID: forged"),
            None,
            None,
            &ContentType::new("text/plain"),
            b"x",
        );
        let m = parse(&out).unwrap();
        assert_eq!(m.headers.len(), 3);
        assert_eq!(m.to(), Some("<sip:b@y>"));
        assert_eq!(m.imdn_message_id(), None);
    }

    #[test]
    fn body_is_decoded_by_its_charset() {
        let ct = ContentType::new("text/plain").with_param("charset", "ISO-8859-1");
        let out = build("<sip:a@x>", "<sip:b@y>", None, None, None, &ct, b"caf\xE9");
        let m = parse(&out).unwrap();
        let charset = m.content_type.as_ref().and_then(ContentType::charset);
        assert_eq!(super::super::decode_text(&m.body, charset).unwrap(), "café");
    }

    #[test]
    fn disposition_tokens() {
        let d = DispositionNotification::parse(" Display ,processing, x-unknown,");
        assert!(d.display && d.processing && !d.positive_delivery && !d.negative_delivery);
        assert_eq!(d.to_string(), "display, processing");
        assert!(DispositionNotification::parse("").is_empty());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(m) = parse(&bytes) {
                let _ = (m.from(), m.to(), m.imdn_message_id(), m.disposition_notification());
            }
        }

        #[test]
        fn never_panics_on_header_soup(s in "([A-Za-z.:<> \t]|\r\n|\n|NS: |imdn|Content-Type: |From: ){0,60}") {
            if let Ok(m) = parse(s.as_bytes()) {
                let _ = (m.from(), m.to(), m.imdn_message_id(), m.disposition_notification());
            }
        }

        #[test]
        fn build_then_parse(
            from in "[a-z]{1,8}@[a-z]{1,8}",
            to in "[a-z]{1,8}@[a-z]{1,8}",
            id in proptest::option::of("[A-Za-z0-9._~-]{1,24}"),
            display in any::<bool>(),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let d = DispositionNotification { display, ..Default::default() };
            let ct = ContentType::new("application/octet-stream");
            let out = build(&format!("sip:{from}"), &format!("sip:{to}"), Some("2024-01-01T00:00:00Z"),
                            id.as_deref(), Some(&d), &ct, &body);
            let m = parse(&out).unwrap();
            let from_header = format!("<sip:{from}>");
            let to_header = format!("<sip:{to}>");
            prop_assert_eq!(m.from(), Some(from_header.as_str()));
            prop_assert_eq!(m.to(), Some(to_header.as_str()));
            prop_assert_eq!(m.imdn_message_id(), id.as_deref());
            prop_assert_eq!(m.disposition_notification(), display.then_some(d));
            prop_assert_eq!(m.content_type, Some(ct));
            prop_assert_eq!(m.body, body);
        }
    }
}

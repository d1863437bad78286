//! Just enough SIP for the presence benchmark: RFC 3856 SUBSCRIBE from the SIP watchers,
//! RFC 6665 NOTIFY from the SIP contacts (inside the dialog stox's SUBSCRIBE created), the
//! responses both UAs give (RFC 3261 §8.2.6: Via, From, To with a tag, Call-ID and CSeq
//! copied), and a one-tuple PIDF document (RFC 3863) with its `<note>`, `<show>` and `<basic>`
//! read back.
//!
//! Hand-written like the messaging bench's `sipwire`: the load generator must cost far less
//! CPU than stox, and the bench must not measure a SIP stack of its own.

use std::net::SocketAddr;

/// A parsed SIP datagram (request or response): the start line, the header fields in
/// order and the body. Borrowed from the datagram.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Msg<'a> {
    /// `METHOD URI SIP/2.0` or `SIP/2.0 CODE REASON`.
    pub start: &'a str,
    /// Header fields in order, names as sent.
    pub headers: Vec<(&'a str, &'a str)>,
    /// The body (after the blank line); Content-Length not checked.
    pub body: &'a str,
}

/// RFC 3261 §7.3.3 compact forms of the headers the bench reads.
fn long_name(name: &str) -> &str {
    match name {
        "i" | "I" => "call-id",
        "f" | "F" => "from",
        "t" | "T" => "to",
        "v" | "V" => "via",
        "m" | "M" => "contact",
        "o" | "O" => "event",
        "c" | "C" => "content-type",
        "l" | "L" => "content-length",
        _ => name,
    }
}

/// Parses a datagram; `None` if it is not UTF-8 or has no SIP start line.
pub fn parse(datagram: &[u8]) -> Option<Msg<'_>> {
    let text = std::str::from_utf8(datagram).ok()?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.split("\r\n");
    let start = lines.next()?;
    if !(start.starts_with("SIP/2.0 ") || start.ends_with(" SIP/2.0")) {
        return None;
    }
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim(), v.trim()))
        .collect();
    Some(Msg {
        start,
        headers,
        body,
    })
}

impl<'a> Msg<'a> {
    /// The first value of header `name` (case-insensitive, compact forms understood).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| long_name(n).eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&'a str> {
        self.headers
            .iter()
            .filter(|(n, _)| long_name(n).eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
            .collect()
    }

    /// The status code of a response, `None` for a request.
    pub fn status(&self) -> Option<u16> {
        self.start.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
    }

    /// The method of a request, `None` for a response.
    pub fn method(&self) -> Option<&'a str> {
        if self.start.starts_with("SIP/2.0 ") {
            return None;
        }
        self.start.split(' ').next()
    }

    /// The Request-URI of a request.
    pub fn request_uri(&self) -> Option<&'a str> {
        self.method()?;
        self.start.split(' ').nth(1)
    }

    /// The method named in CSeq (`1 SUBSCRIBE` → `SUBSCRIBE`).
    pub fn cseq_method(&self) -> Option<&'a str> {
        self.header("cseq")?.split_whitespace().nth(1)
    }

    /// The branch of the top Via.
    pub fn branch(&self) -> Option<&'a str> {
        param(self.header("via")?, "branch")
    }
}

/// Header parameter `name` of a header value (`...;name=value;...`).
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    // Parameters follow the closing '>' of a name-addr, else the first ';'.
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value.split_once(';').map_or("", |(_, p)| p),
    };
    params
        .split(';')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The `tag` parameter of a From or To value.
pub fn tag_of(value: &str) -> Option<&str> {
    param(value, "tag")
}

/// The URI of a name-addr (`"x" <sip:a@b>;tag=1` → `sip:a@b`) or addr-spec.
pub fn uri_of(value: &str) -> &str {
    let value = value.trim();
    if let Some(start) = value.find('<') {
        if let Some(end) = value[start + 1..].find('>') {
            return &value[start + 1..start + 1 + end];
        }
    }
    value.split(';').next().unwrap_or(value).trim()
}

/// The user part of a SIP URI (`sip:c12@127.0.0.1:5080;x` → `c12`).
pub fn user_of(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    Some(user.split(';').next().unwrap_or(user))
}

/// The number after `prefix` in `text` (`c12`, `c` → 12).
pub fn index_after(text: &str, prefix: &str) -> Option<usize> {
    let rest = text.strip_prefix(prefix)?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// An initial SUBSCRIBE (RFC 3856 §6) from `sip:WATCHER@LOCAL` to `sip:USER@DOMAIN`.
pub fn subscribe(
    local: SocketAddr,
    watcher: &str,
    user: &str,
    domain: &str,
    call_id: &str,
    branch: &str,
    expires: u32,
) -> String {
    format!(
        "SUBSCRIBE sip:{user}@{domain} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{watcher}@{local}>;tag=t-{watcher}\r\n\
         To: <sip:{user}@{domain}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 SUBSCRIBE\r\n\
         Contact: <sip:{watcher}@{local}>\r\n\
         Event: presence\r\n\
         Accept: application/pidf+xml\r\n\
         Expires: {expires}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// What a NOTIFY inside a dialog needs (RFC 6665 §4.2.1, RFC 3261 §12.2.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialog {
    /// The Call-ID of the dialog.
    pub call_id: String,
    /// Our From value (`<sip:c12@127.0.0.1:P>;tag=...`).
    pub local: String,
    /// The peer's From value with its tag (our To).
    pub remote: String,
    /// Where requests go (the peer's Contact URI).
    pub target: String,
    /// Our Contact URI.
    pub contact: String,
    /// Our last CSeq.
    pub cseq: u32,
}

/// A NOTIFY in `dialog` (its CSeq incremented) with `Subscription-State: STATE` and a body
/// (PIDF, or none).
pub fn notify(
    local: SocketAddr,
    dialog: &mut Dialog,
    branch: &str,
    state: &str,
    pidf: Option<&str>,
) -> String {
    dialog.cseq += 1;
    let (content_type, body) = match pidf {
        Some(b) => ("Content-Type: application/pidf+xml\r\n", b),
        None => ("", ""),
    };
    format!(
        "NOTIFY {target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: {from}\r\n\
         To: {to}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} NOTIFY\r\n\
         Contact: <{contact}>\r\n\
         Event: presence\r\n\
         Subscription-State: {state}\r\n\
         {content_type}\
         Content-Length: {len}\r\n\r\n{body}",
        target = dialog.target,
        from = dialog.local,
        to = dialog.remote,
        call_id = dialog.call_id,
        cseq = dialog.cseq,
        contact = dialog.contact,
        len = body.len(),
    )
}

/// A response to `req`: Via, From, To (with `to_tag` added unless it has one), Call-ID and
/// CSeq copied, then `extra` headers.
pub fn response(
    req: &Msg<'_>,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut out = String::with_capacity(384);
    out.push_str("SIP/2.0 ");
    out.push_str(&code.to_string());
    out.push(' ');
    out.push_str(reason);
    out.push_str("\r\n");
    for via in req.header_all("via") {
        out.push_str("Via: ");
        out.push_str(via);
        out.push_str("\r\n");
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(req.header(name).unwrap_or(""));
        if name == "To" && req.header("to").and_then(tag_of).is_none() {
            out.push_str(";tag=");
            out.push_str(to_tag);
        }
        out.push_str("\r\n");
    }
    for (name, value) in extra {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// A PIDF document (RFC 3863) with one tuple: basic `open` or `closed` and a note.
pub fn pidf(entity: &str, tuple: &str, open: bool, note: &str) -> String {
    let basic = if open { "open" } else { "closed" };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{entity}\">\
         <tuple id=\"{tuple}\"><status><basic>{basic}</basic></status>\
         <note>{note}</note></tuple></presence>"
    )
}

/// The text of the first element named `name` (any prefix, any attributes) in `xml`.
fn element_text<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let tag_end = rest.find('>')?;
        let tag = &rest[..tag_end];
        let tag_name = tag.split([' ', '\t', '\r', '\n', '/']).next().unwrap_or("");
        let local = tag_name.rsplit(':').next().unwrap_or(tag_name);
        if local == name && !tag.ends_with('/') {
            let content = &rest[tag_end + 1..];
            let end = content.find('<')?;
            return Some(content[..end].trim());
        }
        rest = &rest[tag_end + 1..];
    }
    None
}

/// What the bench reads from a PIDF body: the first tuple's `<basic>`, the `<show>` stox
/// embeds in `<status>` (RFC 8048 Table 1) and the first `<note>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PidfState<'a> {
    /// `open` or `closed`.
    pub basic: Option<&'a str>,
    /// `away`, `dnd`, `xa`, `chat`.
    pub show: Option<&'a str>,
    /// The note text.
    pub note: Option<&'a str>,
}

/// Reads `body` (a PIDF document) for [`PidfState`].
pub fn pidf_state(body: &str) -> PidfState<'_> {
    PidfState {
        basic: element_text(body, "basic"),
        show: element_text(body, "show"),
        note: element_text(body, "note"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOX_SUBSCRIBE: &str = "SUBSCRIBE sip:c12@127.0.0.1:5080 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsx1;rport\r\n\
        From: <sip:wat1@localhost>;tag=abc\r\n\
        t: <sip:c12@127.0.0.1:5080>\r\n\
        i: 77@stox\r\n\
        CSeq: 1 SUBSCRIBE\r\n\
        Contact: <sip:stox@127.0.0.1:5060>\r\n\
        Event: presence\r\n\
        Expires: 3600\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn requests_and_responses_parse() {
        let m = parse(STOX_SUBSCRIBE.as_bytes()).unwrap();
        assert_eq!(m.method(), Some("SUBSCRIBE"));
        assert_eq!(m.request_uri(), Some("sip:c12@127.0.0.1:5080"));
        assert_eq!(m.status(), None);
        assert_eq!(m.header("call-id"), Some("77@stox"));
        assert_eq!(m.header("To"), Some("<sip:c12@127.0.0.1:5080>"));
        assert_eq!(m.cseq_method(), Some("SUBSCRIBE"));
        assert_eq!(m.branch(), Some("z9hG4bKsx1"));
        assert_eq!(user_of(uri_of(m.header("contact").unwrap())), Some("stox"));
        assert_eq!(
            index_after(user_of(m.request_uri().unwrap()).unwrap(), "c"),
            Some(12)
        );
        let r = parse(b"SIP/2.0 200 OK\r\nTo: <sip:a@b>;tag=x\r\nCSeq: 3 NOTIFY\r\n\r\n").unwrap();
        assert_eq!((r.status(), r.method()), (Some(200), None));
        assert_eq!(tag_of(r.header("to").unwrap()), Some("x"));
        assert_eq!(r.cseq_method(), Some("NOTIFY"));
        assert_eq!(parse(b"hello\r\n\r\n"), None);
        assert_eq!(parse(b"\xff\xfe"), None);
    }

    #[test]
    fn response_copies_the_transaction_and_tags_to() {
        let m = parse(STOX_SUBSCRIBE.as_bytes()).unwrap();
        let r = response(&m, 200, "OK", "ct12", &[("Expires", "3600")]);
        assert_eq!(
            r,
            "SIP/2.0 200 OK\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsx1;rport\r\n\
             From: <sip:wat1@localhost>;tag=abc\r\n\
             To: <sip:c12@127.0.0.1:5080>;tag=ct12\r\n\
             Call-ID: 77@stox\r\n\
             CSeq: 1 SUBSCRIBE\r\n\
             Expires: 3600\r\n\
             Content-Length: 0\r\n\r\n"
        );
        // A To that has a tag keeps it.
        let n = parse(b"NOTIFY sip:w@h SIP/2.0\r\nVia: v\r\nFrom: <sip:u@l>;tag=s\r\nTo: <sip:w@h>;tag=mine\r\nCall-ID: c\r\nCSeq: 2 NOTIFY\r\n\r\n").unwrap();
        assert!(response(&n, 200, "OK", "other", &[]).contains("To: <sip:w@h>;tag=mine\r\n"));
    }

    #[test]
    fn subscribe_and_notify_are_well_formed() {
        let local: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        let s = subscribe(local, "w7", "pres1", "localhost", "bw-7@pb", "bw-7", 3600);
        let m = parse(s.as_bytes()).unwrap();
        assert_eq!(m.request_uri(), Some("sip:pres1@localhost"));
        assert_eq!(tag_of(m.header("from").unwrap()), Some("t-w7"));
        assert_eq!(m.header("contact"), Some("<sip:w7@127.0.0.1:5099>"));
        assert_eq!(m.header("expires"), Some("3600"));

        let mut d = Dialog {
            call_id: "77@stox".into(),
            local: "<sip:c12@127.0.0.1:5099>;tag=ct12".into(),
            remote: "<sip:wat1@localhost>;tag=abc".into(),
            target: "sip:stox@127.0.0.1:5060".into(),
            contact: "sip:c12@127.0.0.1:5099".into(),
            cseq: 0,
        };
        let body = pidf("sip:c12@127.0.0.1:5099", "t1", true, "stoxbench 1 2 3");
        let n = notify(local, &mut d, "cn-1-2", "active;expires=3600", Some(&body));
        let m = parse(n.as_bytes()).unwrap();
        assert_eq!(m.request_uri(), Some("sip:stox@127.0.0.1:5060"));
        assert_eq!(m.header("cseq"), Some("1 NOTIFY"));
        assert_eq!(tag_of(m.header("to").unwrap()), Some("abc"));
        assert_eq!(
            m.header("content-length"),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(m.body, body);
        let n2 = notify(local, &mut d, "cn-1-3", "pending", None);
        assert!(n2.contains("CSeq: 2 NOTIFY\r\n"));
        assert!(!n2.contains("Content-Type"));
    }

    #[test]
    fn pidf_state_reads_basic_show_and_note() {
        let ours = pidf("sip:c1@h", "t1", false, "stoxbench 4 5 6");
        assert_eq!(
            pidf_state(&ours),
            PidfState {
                basic: Some("closed"),
                show: None,
                note: Some("stoxbench 4 5 6"),
            }
        );
        // What stox writes for an XMPP user (RFC 8048 Table 1): show embedded in status.
        let stox = r#"<?xml version='1.0' encoding='UTF-8'?><presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:pres1@localhost'><tuple id='ID-bench'><status><basic>open</basic><show xmlns='jabber:client'>away</show></status><contact priority='0'>sip:x@y</contact><note xml:lang='en'>stoxbench 9 0 12</note></tuple></presence>"#;
        assert_eq!(
            pidf_state(stox),
            PidfState {
                basic: Some("open"),
                show: Some("away"),
                note: Some("stoxbench 9 0 12"),
            }
        );
        assert_eq!(pidf_state("").note, None);
        assert_eq!(pidf_state("<a><note/></a>").note, None);
    }
}

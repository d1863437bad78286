//! SIP requests and responses as plain values, the way the sans-IO core sees them.
//!
//! The io layer converts `rsipstack` messages to and from these, so that the
//! core and the translation tables are tested without a SIP stack.

/// The transport a request arrived on or should leave on (RFC 3261 §18, RFC 7118 for
/// WebSocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Transport {
    /// UDP: a request larger than the RFC 3261 §18.1.1 limit must not use it.
    Udp,
    /// TCP: congestion controlled.
    Tcp,
    /// TLS over TCP (RFC 3261 §26.2, the transport of `sips:`).
    Tls,
    /// WebSocket (RFC 7118): only over a connection the client opened.
    Ws,
    /// Secure WebSocket (RFC 7118, over TLS): likewise.
    Wss,
}

impl Transport {
    /// rsipstack's name for it.
    pub fn to_stack(self) -> rsipstack::sip::Transport {
        match self {
            Transport::Udp => rsipstack::sip::Transport::Udp,
            Transport::Tcp => rsipstack::sip::Transport::Tcp,
            Transport::Tls => rsipstack::sip::Transport::Tls,
            Transport::Ws => rsipstack::sip::Transport::Ws,
            Transport::Wss => rsipstack::sip::Transport::Wss,
        }
    }

    /// The transport of a target RFC 3263 located.
    pub fn of_located(proto: stox_sip::locate::Proto) -> Transport {
        use stox_sip::locate::Proto;
        match proto {
            Proto::Udp => Transport::Udp,
            Proto::Tcp => Transport::Tcp,
            Proto::Tls => Transport::Tls,
            Proto::Ws => Transport::Ws,
            Proto::Wss => Transport::Wss,
        }
    }

    /// A connection-oriented transport (everything but UDP).
    pub fn is_stream(self) -> bool {
        self != Transport::Udp
    }

    /// Secured by TLS on this hop (RFC 5630 §3.1.3: what a `sips:` hop needs).
    pub fn is_secure(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// The name in a Via header (RFC 3261 §20.42, RFC 7118 §5.2).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// The value of a `transport` URI parameter (RFC 3261 §19.1.1, RFC 7118 §5.1),
    /// case-insensitive; `None` for one stox does not speak (`sctp`, ...).
    pub fn from_param(value: &str) -> Option<Transport> {
        [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Ws,
            Transport::Wss,
        ]
        .into_iter()
        .find(|t| t.via_name().eq_ignore_ascii_case(value.trim()))
    }
}

/// A connection a request came in on, as the core remembers it (RFC 5626 §3 "flow"): the
/// transport and the peer's address. Requests to a UA that registered or subscribed over a
/// stream go back over the same connection (RFC 5626 §5.3, RFC 5923, RFC 7118 §5): a
/// WebSocket client's Contact names an `.invalid` host nobody can connect to, and a
/// TLS or TCP client behind NAT cannot be reached at the address it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Flow {
    /// The transport of the connection.
    pub transport: Transport,
    /// The peer's address (its end of the connection).
    pub remote: std::net::SocketAddr,
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

/// The first value of header `name` (long or compact form, case-insensitive) in `headers`.
pub fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let name = long_name(name);
    headers
        .iter()
        .find(|(n, _)| long_name(n).eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Every value of header `name`, in order, comma-separated values split apart (RFC 3261
/// §7.3.1; for headers such as Record-Route whose values are name-addrs, a comma inside
/// `<...>` or quotes does not split).
pub fn header_values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    let name = long_name(name);
    let mut out = Vec::new();
    for (_, v) in headers
        .iter()
        .filter(|(n, _)| long_name(n).eq_ignore_ascii_case(name))
    {
        let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
        for (i, c) in v.char_indices() {
            match c {
                '"' => quoted = !quoted,
                '<' if !quoted => depth += 1,
                '>' if !quoted => depth -= 1,
                ',' if !quoted && depth <= 0 => {
                    out.push(v[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        out.push(v[start..].trim());
    }
    out.retain(|v| !v.is_empty());
    out
}

/// The header parameters of a name-addr or addr-spec value (RFC 3261 §20): what follows
/// the `>` closing the URI (a quoted parameter may hold `<` and `>` itself, e.g.
/// `+sip.instance="<urn:uuid:...>"`), or the first `;` of an addr-spec.
pub fn header_params(value: &str) -> &str {
    let value = value.trim();
    if let Some(start) = value.find('<') {
        if let Some(end) = value[start..].find('>') {
            return &value[start + end + 1..];
        }
        return "";
    }
    value.split_once(';').map_or("", |(_, p)| p)
}

/// The `tag` parameter of a From or To header value (RFC 3261 §19.3).
pub fn tag_of(value: &str) -> Option<&str> {
    header_params(value)
        .split(';')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("tag"))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Where a request came from, by its top Via (RFC 3261 §18.2.1 `received`, RFC 3581
/// `rport`, else the sent-by): the transport layers stamp `received`/`rport` on what they
/// receive. `None` when the top Via names no IP address.
pub fn via_source(headers: &[(String, String)]) -> Option<std::net::SocketAddr> {
    let via = *header_values(headers, "Via").first()?;
    let mut parts = via.split(';');
    // "SIP/2.0/UDP host:port"
    let sent_by = parts.next()?.split_whitespace().nth(1)?;
    let (mut host, mut port) = match stox_sip::uri::parse_host_port(sent_by) {
        Ok((h, p)) => (h, p.unwrap_or(5060)),
        Err(_) => return None,
    };
    for p in parts {
        match p.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some((k, v)) if k.eq_ignore_ascii_case("received") => host = v.to_string(),
            Some((k, v)) if k.eq_ignore_ascii_case("rport") => {
                if let Ok(n) = v.parse() {
                    port = n;
                }
            }
            _ => {}
        }
    }
    let ip: std::net::IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    Some(std::net::SocketAddr::new(ip, port))
}

/// One via-parm of a Via header (RFC 3261 §20.42, §25.1), taken apart:
/// `SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bK776;rport;alias`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaParm {
    /// The protocol name and version, as written (`SIP/2.0`).
    pub protocol: String,
    /// The transport token, upper case (`TLS`).
    pub transport: String,
    /// The sent-by host, lower case (an IPv6 reference keeps its brackets).
    pub host: String,
    /// The sent-by port, if written.
    pub port: Option<u16>,
    /// The parameters as written, each without its `;` (`branch=z9hG4bK776`, `rport`).
    pub params: Vec<String>,
}

impl ViaParm {
    /// Parses one via-parm (not a comma-separated list; see [`header_values`]).
    pub fn parse(value: &str) -> Option<ViaParm> {
        let mut parts = value.split(';');
        let head = parts.next()?;
        // sent-protocol = name SLASH version SLASH transport, LWS allowed around the slashes.
        let mut fields = head.splitn(3, '/');
        let name = fields.next()?.trim();
        let version = fields.next()?.trim();
        let rest = fields.next()?.trim_start();
        let (transport, sent_by) = rest.split_once(|c: char| c.is_ascii_whitespace())?;
        // sent-by = host [ COLON port ], SWS allowed around the colon.
        let sent_by: String = sent_by.chars().filter(|c| !c.is_whitespace()).collect();
        if name.is_empty() || version.is_empty() || transport.is_empty() || sent_by.is_empty() {
            return None;
        }
        let (host, port) = stox_sip::uri::parse_host_port(&sent_by).ok()?;
        let params = parts
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        Some(ViaParm {
            protocol: format!("{name}/{version}"),
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params,
        })
    }

    /// Whether a parameter named `name` is present (with or without a value).
    pub fn has_param(&self, name: &str) -> bool {
        self.params.iter().any(|p| {
            p.split('=')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(name)
        })
    }

    /// The RFC 5923 `alias` parameter, asking the receiver to reuse this connection
    /// for requests to the sent-by.
    pub fn alias(&self) -> bool {
        self.has_param("alias")
    }

    /// Adds `alias` (once) or takes every `alias` away.
    pub fn set_alias(&mut self, on: bool) {
        self.params.retain(|p| {
            !p.split('=')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("alias")
        });
        if on {
            self.params.push("alias".to_string());
        }
    }
}

impl std::fmt::Display for ViaParm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} {}", self.protocol, self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for p in &self.params {
            write!(f, ";{p}")?;
        }
        Ok(())
    }
}

/// The topmost via-parm of a request, taken apart (`None` without a parsable Via).
pub fn top_via(headers: &[(String, String)]) -> Option<ViaParm> {
    ViaParm::parse(header_values(headers, "Via").first()?)
}

/// A Via header value with its first via-parm changed by `change` (the via-parms after
/// the first comma are kept as written); `None` if the first one does not parse.
pub fn rewrite_top_via(value: &str, change: impl FnOnce(&mut ViaParm)) -> Option<String> {
    let mut quoted = false;
    let split = value.char_indices().find_map(|(i, c)| match c {
        '"' => {
            quoted = !quoted;
            None
        }
        ',' if !quoted => Some(i),
        _ => None,
    });
    let (first, rest) = match split {
        Some(i) => (&value[..i], Some(&value[i..])),
        None => (value, None),
    };
    let mut via = ViaParm::parse(first.trim())?;
    change(&mut via);
    Some(format!("{via}{}", rest.unwrap_or("")))
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
    /// The address it came from (rate limits are per source), when the io layer knows it.
    pub source: Option<std::net::SocketAddr>,
}

impl SipRequest {
    /// The first value of a header, by long or compact name, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

/// A final response to one of stox's client transactions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SipResponse {
    /// The status code.
    pub code: u16,
    /// The reason phrase as received.
    pub reason: String,
    /// The headers stox may need from it (To tag, Contact, Record-Route, Expires,
    /// Min-Expires, SIP-ETag, Retry-After...), names as received; the io layer may leave
    /// out the ones no caller reads (Via, Content-Length).
    pub headers: Vec<(String, String)>,
}

impl SipResponse {
    /// A response with no headers.
    pub fn new(code: u16, reason: impl Into<String>) -> SipResponse {
        SipResponse {
            code,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    /// The first value of a header, by long or compact name, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

/// What makes an [`OutRequest`] part of a dialog (RFC 3261 §12.2.1.1): stox's tag, the
/// peer's tag once known, the CSeq number and the route set. Without it the io layer makes
/// up a From tag and sends CSeq 1 (a request outside any dialog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogRef {
    /// The From tag (stox's local tag).
    pub from_tag: String,
    /// The To tag (the remote tag), absent on a dialog-creating request.
    pub to_tag: Option<String>,
    /// CSeq number.
    pub cseq: u32,
    /// The route set, in order (each a URI, written as `Route: <uri>`); the request goes
    /// to the first entry when there is one (loose routing, RFC 3261 §12.2.1.1).
    pub route: Vec<String>,
}

/// A request stox asks the io layer to send as a client transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRequest {
    /// The method.
    pub method: String,
    /// Request-URI.
    pub uri: String,
    /// `From` URI (the io layer adds the tag), or a whole name-addr with a display name
    /// (`"Alice" <sip:alice2@provider.example>`) when it contains `<`.
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
    /// Dialog state, for requests that create or belong to a dialog (SUBSCRIBE, NOTIFY);
    /// also the From tag and CSeq of a request that is sent again with credentials
    /// (REGISTER refreshes, RFC 3261 §10.2.4; a challenged MESSAGE, §22.2).
    pub dialog: Option<DialogRef>,
    /// Where the request goes instead of the Request-URI's host (an external account's
    /// outbound proxy or registrar, issue 5): a SIP URI whose host and port are the next
    /// hop; a dialog's route set still comes first.
    pub next_hop: Option<String>,
    /// Send over this connection when it is still open (a registered contact's flow);
    /// else as the Request-URI says.
    pub flow: Option<Flow>,
    /// The contact is reached over `flow` only (RFC 5626 §5.3: a binding registered with
    /// outbound, or a WebSocket client, RFC 7118 §5): when that connection is gone the
    /// request fails with [`crate::core::SendFailure::FlowFailed`], the edge proxy's
    /// `430 (Flow Failed)`, and is never sent to the address the URI names.
    pub flow_only: bool,
}

impl OutRequest {
    /// The From header's name-addr (the URI in `<>` unless `from` already is a name-addr).
    pub fn from_name_addr(&self) -> String {
        if self.from.contains('<') {
            self.from.clone()
        } else {
            format!("<{}>", self.from)
        }
    }
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
    fn the_alias_of_the_top_via() {
        let h = |v: &str| vec![("Via".to_string(), v.to_string())];
        let via = top_via(&h(
            "SIP/2.0/TLS 192.0.2.1:5062;branch=z9hG4bKa;rport=40000;received=192.0.2.9;alias, \
             SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb",
        ))
        .expect("via");
        assert_eq!(
            (via.transport.as_str(), via.host.as_str(), via.port),
            ("TLS", "192.0.2.1", Some(5062))
        );
        assert!(via.alias());
        // Only the topmost via-parm counts; LWS and case as RFC 3261 §7.3.1 allows them.
        for (value, alias) in [
            (
                "SIP/2.0/TLS a.example;branch=z9hG4bKa, SIP/2.0/TLS b.example;alias",
                false,
            ),
            (
                "SIP / 2.0 / tls  PROXY.Example : 5061 ; ALIAS ; branch=z9hG4bKa",
                true,
            ),
            ("SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKa;alias", true),
            ("SIP/2.0/TLS a.example;branch=z9hG4bKa;aliased", false),
            ("SIP/2.0/TLS a.example;branch=\"x;alias\"", false),
        ] {
            let via = top_via(&h(value)).expect(value);
            assert_eq!(via.alias(), alias, "{value}");
        }
        let via = top_via(&h("SIP / 2.0 / tls  PROXY.Example : 5061 ; ALIAS")).unwrap();
        assert_eq!((via.host.as_str(), via.port), ("proxy.example", Some(5061)));
        assert_eq!(via.transport, "TLS");
        let v6 = top_via(&h("SIP/2.0/TLS [2001:db8::1]:5061;alias")).unwrap();
        assert_eq!(v6.host, "[2001:db8::1]");
        // The compact form `v`, and a Via split over two header lines.
        let compact = vec![
            (
                "v".to_string(),
                "SIP/2.0/TCP 10.0.0.2:5060;alias".to_string(),
            ),
            ("Via".to_string(), "SIP/2.0/TLS 10.0.0.3;alias".to_string()),
        ];
        assert_eq!(top_via(&compact).unwrap().transport, "TCP");
        for bad in ["", "SIP/2.0/TLS", "SIP/2.0 10.0.0.1", "garbage"] {
            assert_eq!(top_via(&h(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn the_top_via_rewritten() {
        let on = |v: &str| rewrite_top_via(v, |via| via.set_alias(true));
        let off = |v: &str| rewrite_top_via(v, |via| via.set_alias(false));
        assert_eq!(
            on("SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKa;rport").as_deref(),
            Some("SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKa;rport;alias")
        );
        // Once only, whatever case it had; the other via-parms are left alone.
        assert_eq!(
            on("SIP/2.0/TLS 127.0.0.1:5061;ALIAS;branch=z9hG4bKa, SIP/2.0/TCP x;alias").as_deref(),
            Some("SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKa;alias, SIP/2.0/TCP x;alias")
        );
        assert_eq!(
            off("SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKa;rport;alias").as_deref(),
            Some("SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKa;rport")
        );
        let moved = rewrite_top_via("SIP/2.0/TLS 127.0.0.1:5060;branch=z9hG4bKa", |v| {
            v.host = "[::1]".into();
            v.port = Some(5061);
        });
        assert_eq!(
            moved.as_deref(),
            Some("SIP/2.0/TLS [::1]:5061;branch=z9hG4bKa")
        );
        assert_eq!(on("not a via"), None);
    }

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
            source: None,
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

    #[test]
    fn tags_of_from_and_to() {
        for (value, tag) in [
            ("<sip:a@b>;tag=1x", Some("1x")),
            (
                "\"A;tag=no\" <sip:a@b;tag=uri-param>;TAG=real",
                Some("real"),
            ),
            ("sip:a@b;tag=9", Some("9")),
            ("<sip:a@b>", None),
            ("<sip:a@b>;tag=", None),
            ("<sip:a@b;tag=inside>", None),
            (
                "<sip:a@b>;+sip.instance=\"<urn:uuid:1>\";tag=t2",
                Some("t2"),
            ),
            ("sip:a@b", None),
        ] {
            assert_eq!(tag_of(value), tag, "{value}");
        }
    }

    #[test]
    fn source_from_the_top_via() {
        let via = |v: &str| vec![("Via".to_string(), v.to_string())];
        for (v, want) in [
            (
                "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1",
                Some("127.0.0.1:5070"),
            ),
            (
                "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1",
                Some("127.0.0.1:5060"),
            ),
            (
                "SIP/2.0/UDP pc.example:5070;branch=z;received=127.0.0.9;rport=4000",
                Some("127.0.0.9:4000"),
            ),
            ("SIP/2.0/TCP [::1]:5080;rport;branch=z", Some("[::1]:5080")),
            ("SIP/2.0/UDP pc.example:5070;branch=z", None),
            ("garbage", None),
            (
                "SIP/2.0/UDP 127.0.0.2:1, SIP/2.0/UDP 127.0.0.3:2",
                Some("127.0.0.2:1"),
            ),
        ] {
            assert_eq!(
                via_source(&via(v)),
                want.map(|w| w.parse().expect("literal")),
                "{v}"
            );
        }
        assert_eq!(via_source(&[]), None);
    }

    #[test]
    fn header_values_split_at_top_level_commas() {
        let headers = vec![
            (
                "Record-Route".to_string(),
                "<sip:p1;lr>, \"x,y\" <sip:p2;lr;a=b,c>".to_string(),
            ),
            ("record-route".to_string(), " <sip:p3;lr> ".to_string()),
            ("Via".to_string(), "SIP/2.0/UDP h".to_string()),
        ];
        assert_eq!(
            header_values(&headers, "Record-Route"),
            vec!["<sip:p1;lr>", "\"x,y\" <sip:p2;lr;a=b,c>", "<sip:p3;lr>"]
        );
        assert!(header_values(&headers, "Route").is_empty());
        let r = SipResponse {
            code: 200,
            reason: "OK".into(),
            headers: vec![("t".into(), "<sip:x@y>;tag=abc".into())],
        };
        assert_eq!(r.header("To").and_then(tag_of), Some("abc"));
    }
}

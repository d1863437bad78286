//! Building blocks for the scenario tests (`tests/tests/content_types.rs`, `bad_input.rs`,
//! `discovery.rs`): a [`World`] of Prosody + stox + one logged-in XMPP user, and
//! [`RawRequest`], a hand-written SIP request (RFC 3261 §7.1) sent over UDP from a socket
//! whose address is also the `From`, so a test knows which contact JID (RFC 7247 §6,
//! XEP-0106) the message must come from.
//!
//! SIPp sends what its scenario says and no more; the tests here need requests SIPp will
//! not write (a `sips:` Request-URI, `Max-Forwards: 0`, `Content-Length: banana`, ISO-8859-1
//! bytes, arbitrary content types), hence the raw requests.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use minidom::{Element, NSChoice};

use crate::sipp::SipMessage;
use crate::{sip_contact_jid, Prosody, ProsodyOptions, Stanza, Stox, XmppClient, PASSWORD};

/// How long a raw request waits for its final response. stox answers a MESSAGE after its
/// bounce window (300 ms by default).
pub const RAW_TIMEOUT: Duration = Duration::from_secs(8);

/// Prosody (without mod_offline, so loss shows as an error), stox and
/// `alice@localhost/phone` logged in.
pub struct World {
    /// The XMPP server.
    pub prosody: Prosody,
    /// The gateway under test.
    pub stox: Stox,
    /// A real XMPP client.
    pub alice: XmppClient,
}

impl World {
    /// Starts everything with the default stox config.
    pub fn start() -> Result<World> {
        World::start_with("")
    }

    /// Starts everything with `overrides` merged into the stox config (see [`Stox::start`]).
    pub fn start_with(overrides: &str) -> Result<World> {
        let prosody = Prosody::start(ProsodyOptions::without_offline()).context("prosody")?;
        let stox = Stox::start(&prosody, overrides).context("stox")?;
        // `connect` returns once the server has processed alice's initial
        // presence (the helper pings the server first), so nothing bounces.
        let alice = XmppClient::connect(&prosody, "alice", PASSWORD, "phone").context("alice")?;
        Ok(World {
            prosody,
            stox,
            alice,
        })
    }

    /// The component domain, e.g. `sip.localhost`.
    pub fn component(&self) -> &str {
        self.prosody.component()
    }

    /// The contact JID of `sip:user@127.0.0.1:port`.
    pub fn contact(&self, user: &str, port: u16) -> String {
        sip_contact_jid(user, "127.0.0.1", port, self.prosody.component())
    }

    /// The `<message/>` stanzas alice received within `settle` that are not errors:
    /// what she would see in her chat window.
    pub fn alice_messages(&mut self, settle: Duration) -> Vec<Stanza> {
        self.alice
            .drain(settle)
            .into_iter()
            .filter(|s| s.is_message() && s.kind() != Some("error"))
            .collect()
    }
}

/// The bare part of a JID.
pub fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

/// `xml:lang` of a stanza's top element.
pub fn xml_lang(stanza: &Stanza) -> Option<&str> {
    stanza
        .element()
        .and_then(|e| e.attr_ns(&minidom::rxml::Namespace::XML, "lang"))
}

/// Parses a SIP body as an XML document (isComposing, IMDN), skipping an XML declaration.
pub fn parse_xml_body(body: &[u8]) -> Option<Element> {
    let text = std::str::from_utf8(body).ok()?.trim();
    let text = match text.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>")?.1.trim(),
        None => text,
    };
    text.parse::<Element>().ok()
}

/// The descendant of `e` found by following `path` (element names, any namespace).
pub fn descendant<'a>(e: &'a Element, path: &[&str]) -> Option<&'a Element> {
    path.iter()
        .try_fold(e, |e, name| e.get_child(name, NSChoice::Any))
}

/// A SIP request written by hand. Defaults: `Max-Forwards: 70`, `From` the sending
/// socket's own address (`sip:carol@127.0.0.1:PORT`), a fresh `Call-ID`, `CSeq: 1 METHOD`,
/// no body. `Content-Length` is the body length unless overridden.
#[derive(Clone, Debug)]
pub struct RawRequest {
    method: String,
    uri: String,
    from_user: String,
    to: Option<String>,
    call_id: Option<String>,
    max_forwards: Option<String>,
    content_type: Option<String>,
    content_length: Option<String>,
    extra: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawRequest {
    /// `METHOD uri SIP/2.0`.
    pub fn new(method: &str, uri: &str) -> RawRequest {
        RawRequest {
            method: method.to_string(),
            uri: uri.to_string(),
            from_user: "carol".to_string(),
            to: None,
            call_id: None,
            max_forwards: Some("70".to_string()),
            content_type: None,
            content_length: None,
            extra: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A pager-mode MESSAGE (RFC 3428) with a `text/plain;charset=UTF-8` body.
    pub fn message(uri: &str, body: &str) -> RawRequest {
        RawRequest::new("MESSAGE", uri).body("text/plain;charset=UTF-8", body.as_bytes())
    }

    /// The user part of `From` (the host is the sending socket).
    pub fn from_user(mut self, user: &str) -> Self {
        self.from_user = user.to_string();
        self
    }

    /// The `To` URI (default: the Request-URI).
    pub fn to(mut self, uri: &str) -> Self {
        self.to = Some(uri.to_string());
        self
    }

    /// `Call-ID`.
    pub fn call_id(mut self, call_id: &str) -> Self {
        self.call_id = Some(call_id.to_string());
        self
    }

    /// `Max-Forwards` as written (`None`: no such header).
    pub fn max_forwards(mut self, value: Option<&str>) -> Self {
        self.max_forwards = value.map(str::to_string);
        self
    }

    /// `Content-Type` and the body bytes, sent as given.
    pub fn body(mut self, content_type: &str, body: &[u8]) -> Self {
        self.content_type = Some(content_type.to_string());
        self.body = body.to_vec();
        self
    }

    /// `Content-Length` as written instead of the body length (for malformed requests).
    pub fn content_length(mut self, value: &str) -> Self {
        self.content_length = Some(value.to_string());
        self
    }

    /// Any other header, after the standard ones.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.extra.push((name.to_string(), value.to_string()));
        self
    }

    /// The `From` URI the request carries when sent from `local`.
    pub fn from_uri(&self, local: SocketAddr) -> String {
        format!("sip:{}@{local}", self.from_user)
    }

    /// The request bytes as sent from `local` over `transport` (`UDP`, `TCP`). Via carries
    /// `rport` (RFC 3581).
    pub fn build(&self, local: SocketAddr, transport: &str) -> Vec<u8> {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let call_id = self
            .call_id
            .clone()
            .unwrap_or_else(|| format!("{nonce:x}@127.0.0.1"));
        let mut head = format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{transport} {local};rport;branch=z9hG4bK{nonce:x}\r\n",
            method = self.method,
            uri = self.uri,
        );
        if let Some(mf) = &self.max_forwards {
            head.push_str(&format!("Max-Forwards: {mf}\r\n"));
        }
        head.push_str(&format!(
            "From: <{from}>;tag={nonce:x}\r\n\
             To: <{to}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 {method}\r\n",
            from = self.from_uri(local),
            to = self.to.as_deref().unwrap_or(&self.uri),
            method = self.method,
        ));
        for (name, value) in &self.extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(ct) = &self.content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        let length = self
            .content_length
            .clone()
            .unwrap_or_else(|| self.body.len().to_string());
        head.push_str(&format!("Content-Length: {length}\r\n\r\n"));
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    /// Sends the request from a fresh loopback socket, retransmitting it as a UAC would until
    /// the first response, and collects the responses until a final one or `timeout`.
    pub fn send_udp_within(&self, to: SocketAddr, timeout: Duration) -> Result<RawExchange> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let local = socket.local_addr()?;
        let request = self.build(local, "UDP");
        socket.send_to(&request, to)?;
        let mut responses = Vec::new();
        let deadline = Instant::now() + timeout;
        // RFC 3261 §17.1.2.2: retransmit at T1, doubling up to T2, until a response comes
        // (a busy test machine may drop or delay a datagram, as a real network would).
        let mut interval = Duration::from_millis(500);
        let mut next_retransmit = Instant::now() + interval;
        let mut buf = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if responses.is_empty() && now >= next_retransmit {
                socket.send_to(&request, to)?;
                interval = (interval * 2).min(Duration::from_secs(4));
                next_retransmit = now + interval;
            }
            let wake = if responses.is_empty() {
                next_retransmit.min(deadline)
            } else {
                deadline
            };
            let left = wake
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            socket.set_read_timeout(Some(left))?;
            let (n, _) = match socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(_) => break,
            };
            if let Some(message) = SipMessage::parse(&buf[..n]) {
                let is_final = message.status().is_some_and(|s| s >= 200);
                responses.push(message);
                if is_final {
                    break;
                }
            }
        }
        Ok(RawExchange {
            local,
            from: self.from_uri(local),
            request,
            responses,
        })
    }

    /// [`RawRequest::send_udp_within`] with [`RAW_TIMEOUT`].
    pub fn send_udp(&self, to: SocketAddr) -> Result<RawExchange> {
        self.send_udp_within(to, RAW_TIMEOUT)
    }
}

/// One raw request and what came back.
#[derive(Clone, Debug)]
pub struct RawExchange {
    /// The sending socket.
    pub local: SocketAddr,
    /// The `From` URI that was sent.
    pub from: String,
    /// The request bytes.
    pub request: Vec<u8>,
    /// Every response received, provisional ones included.
    pub responses: Vec<SipMessage>,
}

impl RawExchange {
    /// The final (≥ 200) response.
    pub fn final_response(&self) -> Option<&SipMessage> {
        self.responses
            .iter()
            .find(|m| m.status().is_some_and(|s| s >= 200))
    }

    /// Its status code.
    pub fn status(&self) -> Option<u16> {
        self.final_response().and_then(SipMessage::status)
    }

    /// The contact JID the sender appears as at `component` (user `carol`, this socket).
    pub fn sender_jid(&self, user: &str, component: &str) -> String {
        sip_contact_jid(user, "127.0.0.1", self.local.port(), component)
    }

    /// A readable summary for assertion messages.
    pub fn summary(&self) -> String {
        let responses: Vec<String> = self
            .responses
            .iter()
            .map(|m| String::from_utf8_lossy(&m.raw).to_string())
            .collect();
        format!(
            "--- request ---\n{}\n--- responses ---\n{}",
            String::from_utf8_lossy(&self.request),
            responses.join("\n")
        )
    }
}

/// A deterministic xorshift64* generator, so a fuzz test that fails can be replayed.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// Seeded (0 is replaced by a fixed non-zero seed).
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() >> 56) as u8).collect()
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_message_has_the_headers_a_uas_needs() {
        let local: SocketAddr = "127.0.0.1:5999".parse().unwrap();
        let bytes = RawRequest::message("sip:alice@localhost", "hé")
            .header("Subject", "hi")
            .call_id("c1@x")
            .build(local, "UDP");
        let m = SipMessage::parse(&bytes).unwrap();
        assert_eq!(m.method(), Some("MESSAGE"));
        assert_eq!(m.request_uri(), Some("sip:alice@localhost"));
        assert_eq!(m.header_uri("From"), Some("sip:carol@127.0.0.1:5999"));
        assert_eq!(m.header_uri("To"), Some("sip:alice@localhost"));
        assert_eq!(m.header("Call-ID"), Some("c1@x"));
        assert_eq!(m.header("CSeq"), Some("1 MESSAGE"));
        assert_eq!(m.header("Max-Forwards"), Some("70"));
        assert_eq!(m.header("Subject"), Some("hi"));
        assert_eq!(m.header("Content-Length"), Some("3"));
        assert_eq!(m.body, "hé".as_bytes());
    }

    #[test]
    fn overrides_write_malformed_values_verbatim() {
        let local: SocketAddr = "127.0.0.1:5999".parse().unwrap();
        let bytes = RawRequest::message("sip:alice@localhost", "x")
            .max_forwards(Some("0"))
            .content_length("banana")
            .build(local, "UDP");
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("\r\nMax-Forwards: 0\r\n"), "{text}");
        assert!(
            text.contains("\r\nContent-Length: banana\r\n\r\nx"),
            "{text}"
        );
    }

    #[test]
    fn xml_bodies_parse_after_a_declaration() {
        let body = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\"><state>active</state></isComposing>";
        let e = parse_xml_body(body).unwrap();
        assert_eq!(
            descendant(&e, &["state"]).map(Element::text).as_deref(),
            Some("active")
        );
    }

    #[test]
    fn xorshift_is_deterministic() {
        let a = XorShift::new(7).bytes(16);
        assert_eq!(a, XorShift::new(7).bytes(16));
        assert_ne!(a, XorShift::new(8).bytes(16));
        let mut r = XorShift::new(1);
        assert!((0..100).all(|_| r.below(10) < 10));
    }
}

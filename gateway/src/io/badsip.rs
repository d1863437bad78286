//! RFC 3261 §16.3 / §21.4.1: answering malformed requests with 400.
//!
//! `rsipstack` drops a datagram it cannot parse without a word. A SIP client
//! would then retransmit for 32 seconds and give up with no reason. stox puts a
//! guard in front of the UDP socket: anything the stack cannot parse but that
//! still carries the headers a response needs (Via, From, To, Call-ID, CSeq)
//! gets `400 Bad Request` with a Warning that says what was wrong; the rest is
//! dropped with a log line (there is nobody to answer).
//!
//! Over TCP the stack's framing (RFC 3261 §18.3, Content-Length) decides where
//! a message ends; when a framed message does not parse, the byte stream can no
//! longer be trusted and rsipstack closes the connection, which is what §18.3
//! leaves to the implementation. The client sees the connection close at once
//! rather than a silent timeout.

use std::net::SocketAddr;
use std::sync::Arc;

use rsipstack::platform::net::UdpSocket as StackUdpSocket;
use tracing::info;

/// Headers a response copies from its request (RFC 3261 §8.2.6.2), with compact forms.
const COPIED: &[(&str, Option<&str>)] = &[
    ("via", Some("v")),
    ("from", Some("f")),
    ("to", Some("t")),
    ("call-id", Some("i")),
    ("cseq", None),
];

/// Builds the 400 for a request the stack cannot parse, if one can be built.
pub fn bad_request_response(packet: &[u8], why: &str) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(packet);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let first = lines.next()?;
    let mut parts = first.split(' ');
    let method = parts.next()?;
    let _uri = parts.next()?;
    if !parts.next()?.starts_with("SIP/")
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_alphabetic())
    {
        return None;
    }
    if method.eq_ignore_ascii_case("ACK") {
        return None; // RFC 3261 §17.2.3: never answer an ACK
    }
    let mut found: Vec<(usize, String)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if value.contains('\r') {
            // A bare CR inside a header: echoing it would split the
            // response's header line; such a request cannot be answered.
            return None;
        }
        let name = name.trim().to_ascii_lowercase();
        for (i, (long, short)) in COPIED.iter().enumerate() {
            if name == *long || Some(name.as_str()) == *short {
                found.push((i, format!("{}: {}", canonical(long), value.trim())));
            }
        }
    }
    for i in 0..COPIED.len() {
        if !found.iter().any(|(j, _)| *j == i) {
            return None;
        }
    }
    found.sort_by_key(|(i, _)| *i);
    let mut out = String::from("SIP/2.0 400 Bad Request\r\n");
    for (_, h) in &found {
        out.push_str(h);
        out.push_str("\r\n");
    }
    let why: String = why
        .chars()
        .map(|c| if c == '"' || c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    out.push_str(&format!(
        "Warning: 399 stox \"malformed request: {why}\"\r\nContent-Length: 0\r\n\r\n"
    ));
    Some(out.into_bytes())
}

fn canonical(long: &str) -> &'static str {
    match long {
        "via" => "Via",
        "from" => "From",
        "to" => "To",
        "call-id" => "Call-ID",
        _ => "CSeq",
    }
}

/// RFC 3261 §18.3 framing of a datagram: the length of the message in it.
///
/// A request whose `Content-Length` is not a number, or says more than the
/// datagram holds, is an error (the second: "the element SHOULD generate a
/// 400"); bytes past the declared body are discarded. Without a
/// `Content-Length` the body runs to the end of the datagram. A datagram
/// without the blank line that ends the headers (RFC 3261 §7) is truncated.
pub fn datagram_length(packet: &[u8]) -> Result<usize, String> {
    let (head_end, body_start) = match find(packet, b"\r\n\r\n") {
        Some(i) => (i, i + 4),
        None => match find(packet, b"\n\n") {
            Some(i) => (i, i + 2),
            None => return Err("no blank line after the headers (truncated?)".into()),
        },
    };
    let head = &packet[..head_end];
    let mut declared = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon])
            .trim()
            .to_ascii_lowercase();
        if name == "content-length" || name == "l" {
            let value = String::from_utf8_lossy(&line[colon + 1..]);
            let value = value.trim();
            let n: usize = value
                .parse()
                .map_err(|_| format!("Content-Length `{value}` is not a number"))?;
            if declared.is_some_and(|d| d != n) {
                return Err("two different Content-Length values".into());
            }
            declared = Some(n);
        }
    }
    let available = packet.len() - body_start;
    match declared {
        None => Ok(packet.len()),
        Some(n) if n > available => Err(format!(
            "Content-Length {n} but the datagram holds {available} body bytes (RFC 3261 §18.3)"
        )),
        Some(n) => Ok(body_start + n),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A UDP socket that answers unparseable requests before the stack sees them,
/// and runs the transactions of out-of-dialog MESSAGEs itself when given a
/// [`nist::Table`](super::nist::Table).
pub struct GuardedUdp {
    inner: Arc<tokio::net::UdpSocket>,
    fast: Option<Arc<super::nist::Table>>,
}

impl GuardedUdp {
    /// Wraps a bound socket.
    pub fn new(inner: tokio::net::UdpSocket) -> GuardedUdp {
        GuardedUdp {
            inner: Arc::new(inner),
            fast: None,
        }
    }

    /// Wraps a bound socket whose MESSAGE transactions `fast` handles.
    pub fn with_fast_path(
        inner: Arc<tokio::net::UdpSocket>,
        fast: Arc<super::nist::Table>,
    ) -> GuardedUdp {
        GuardedUdp {
            inner,
            fast: Some(fast),
        }
    }
}

#[async_trait::async_trait]
impl StackUdpSocket for GuardedUdp {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        loop {
            let (len, addr) = self.inner.recv_from(buf).await?;
            let packet = &buf[..len];
            // Keepalives (RFC 5626 §4.4.1 CRLF) and blank datagrams pass through.
            if packet.iter().all(|b| b.is_ascii_whitespace()) {
                return Ok((len, addr));
            }
            let framed = datagram_length(packet).and_then(|n| {
                rsipstack::sip::SipMessage::try_from(&packet[..n])
                    .map(|msg| (n, msg))
                    .map_err(|e| e.to_string())
            });
            match framed {
                Ok((n, msg)) => match &self.fast {
                    Some(fast) => match fast.offer(msg, addr) {
                        super::nist::Offer::Taken => continue,
                        super::nist::Offer::NotMine => return Ok((n, addr)),
                    },
                    None => return Ok((n, addr)),
                },
                Err(why) => {
                    metrics::counter!("stox_sip_malformed_total").increment(1);
                    match bad_request_response(packet, &why) {
                        Some(resp) => {
                            info!(src = %addr, error = %why, "malformed SIP request: answering 400");
                            let _ = self.inner.send_to(&resp, addr).await;
                        }
                        None => {
                            info!(src = %addr, error = %why, "malformed SIP datagram dropped (cannot be answered)")
                        }
                    }
                }
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.inner.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.inner.local_addr()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answerable_garbage_gets_400_with_copied_headers() {
        let req = b"MESSAGE sip:alice@localhost SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nf: <sip:c@pbx>;tag=1\r\nTo: <sip:alice@localhost>\r\nCall-ID: x1\r\nCSeq: 1 MESSAGE\r\nContent-Length: banana\r\n\r\n";
        let resp = bad_request_response(req, "bad Content-Length").expect("answerable");
        let resp = String::from_utf8(resp).expect("utf8");
        assert!(resp.starts_with("SIP/2.0 400 Bad Request\r\n"));
        assert!(resp.contains("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"));
        assert!(resp.contains("From: <sip:c@pbx>;tag=1\r\n"));
        assert!(resp.contains("Call-ID: x1\r\n"));
        assert!(resp.contains("CSeq: 1 MESSAGE\r\n"));
        assert!(resp.contains("Warning: 399 stox \"malformed request: bad Content-Length\""));
    }

    #[test]
    fn datagram_framing_rfc3261_18_3() {
        let ok = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(datagram_length(ok), Ok(ok.len()));
        let extra = b"MESSAGE sip:a@b SIP/2.0\r\nl: 2\r\n\r\nhello";
        assert_eq!(datagram_length(extra), Ok(extra.len() - 3));
        let short = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 50\r\n\r\nhello";
        assert!(datagram_length(short)
            .expect_err("short")
            .contains("holds 5"));
        let banana = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: banana\r\n\r\n";
        assert!(datagram_length(banana)
            .expect_err("banana")
            .contains("not a number"));
        let none = b"MESSAGE sip:a@b SIP/2.0\r\nVia: x\r\n\r\nbody";
        assert_eq!(datagram_length(none), Ok(none.len()));
        assert!(datagram_length(b"MESSAGE sip:a@b SIP/2.0\r\nVia: x\r\n").is_err());
    }

    #[test]
    fn bare_cr_in_a_copied_header_is_not_echoed() {
        let req = b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: 0\rA\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n\r\n";
        assert!(bad_request_response(req, "x").is_none());
    }

    #[test]
    fn unanswerable_input_gets_nothing() {
        assert!(bad_request_response(b"\x00\x01garbage", "x").is_none());
        assert!(bad_request_response(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", "x").is_none());
        assert!(bad_request_response(b"MESSAGE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n", "x").is_none());
        assert!(bad_request_response(b"ACK sip:a@b SIP/2.0\r\nVia: v\r\nFrom: f\r\nTo: t\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n", "x").is_none());
    }
}

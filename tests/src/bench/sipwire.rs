//! Just enough SIP (RFC 3261) on the wire for the benchmark: the MESSAGE requests of the
//! load generator (RFC 3428 §4), the `200 OK` of the sink (RFC 3261 §8.2.6: Via, From, To with
//! a tag, Call-ID and CSeq copied), and reading a response's status code (§7.2).
//!
//! Hand-written on purpose: the load generator must cost far less CPU than stox, and the
//! benchmark must not measure a SIP stack of its own.

use std::net::SocketAddr;

/// A pager-mode MESSAGE from `sip:FROM_USER@LOCAL` to `sip:TO_USER@TO_DOMAIN`, `text/plain`.
/// `tx` makes the branch and Call-ID unique; the From tag names the run.
pub fn message_request(
    local: SocketAddr,
    from_user: &str,
    to_user: &str,
    to_domain: &str,
    tx: &str,
    body: &str,
) -> String {
    format!(
        "MESSAGE sip:{to_user}@{to_domain} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{tx};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{from_user}@{local}>;tag=sb-{tx}\r\n\
         To: <sip:{to_user}@{to_domain}>\r\n\
         Call-ID: {tx}@stoxbench\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain;charset=UTF-8\r\n\
         Content-Length: {len}\r\n\r\n{body}",
        len = body.len()
    )
}

/// The status code of a SIP response (`SIP/2.0 200 OK`), `None` for a request or garbage.
pub fn response_status(datagram: &[u8]) -> Option<u16> {
    let rest = datagram.strip_prefix(b"SIP/2.0 ")?;
    let code = rest.get(..3)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// The parts of a received request that the sink needs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method of the request line.
    pub method: &'a str,
    /// Every `Via` header value, in order.
    pub via: Vec<&'a str>,
    /// `From`.
    pub from: &'a str,
    /// `To`.
    pub to: &'a str,
    /// `Call-ID`.
    pub call_id: &'a str,
    /// `CSeq`.
    pub cseq: &'a str,
    /// The body (after the blank line), Content-Length not checked.
    pub body: &'a str,
}

/// Parses a request datagram; `None` if it is not UTF-8, has no request line or lacks a
/// header a response must copy. Compact header names (RFC 3261 §7.3.3) are understood.
pub fn parse_request(datagram: &[u8]) -> Option<Request<'_>> {
    let text = std::str::from_utf8(datagram).ok()?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?;
    let method = request_line.split(' ').next()?;
    if !request_line.ends_with("SIP/2.0") || method.is_empty() {
        return None;
    }
    let mut req = Request {
        method,
        body,
        ..Request::default()
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" => req.via.push(value),
            "from" | "f" => req.from = value,
            "to" | "t" => req.to = value,
            "call-id" | "i" => req.call_id = value,
            "cseq" => req.cseq = value,
            _ => {}
        }
    }
    if req.via.is_empty() || req.from.is_empty() || req.to.is_empty() || req.call_id.is_empty() {
        return None;
    }
    Some(req)
}

/// `200 OK` for `req` (RFC 3261 §8.2.6.2): the To gets a tag unless it has one.
pub fn ok_response(req: &Request<'_>) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("SIP/2.0 200 OK\r\n");
    for via in &req.via {
        out.push_str("Via: ");
        out.push_str(via);
        out.push_str("\r\n");
    }
    out.push_str("From: ");
    out.push_str(req.from);
    out.push_str("\r\nTo: ");
    out.push_str(req.to);
    if !req.to.contains(";tag=") {
        out.push_str(";tag=stoxbench-sink");
    }
    out.push_str("\r\nCall-ID: ");
    out.push_str(req.call_id);
    out.push_str("\r\nCSeq: ");
    out.push_str(req.cseq);
    out.push_str("\r\nContent-Length: 0\r\n\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_request_parses_back_with_body_and_length() {
        let local: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        let text = message_request(local, "carol", "user1", "localhost", "r1-42", "hi there");
        assert!(text.starts_with("MESSAGE sip:user1@localhost SIP/2.0\r\n"));
        assert!(text.contains("From: <sip:carol@127.0.0.1:5099>;tag=sb-r1-42\r\n"));
        assert!(text.contains("Content-Length: 8\r\n\r\nhi there"));
        let req = parse_request(text.as_bytes()).unwrap();
        assert_eq!(req.method, "MESSAGE");
        assert_eq!(
            req.via,
            vec!["SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-r1-42;rport"]
        );
        assert_eq!(req.call_id, "r1-42@stoxbench");
        assert_eq!(req.cseq, "1 MESSAGE");
        assert_eq!(req.body, "hi there");
    }

    #[test]
    fn ok_response_copies_the_transaction_headers_and_tags_to() {
        let raw = "MESSAGE sip:sink@127.0.0.1:5080 SIP/2.0\r\n\
                   v: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa\r\n\
                   Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb\r\n\
                   f: <sip:alice@localhost>;tag=x\r\n\
                   t: <sip:sink@127.0.0.1:5080>\r\n\
                   i: abc\r\n\
                   CSeq: 7 MESSAGE\r\n\
                   Content-Length: 2\r\n\r\nhi";
        let req = parse_request(raw.as_bytes()).unwrap();
        let resp = ok_response(&req);
        assert_eq!(
            resp,
            "SIP/2.0 200 OK\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa\r\n\
             Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb\r\n\
             From: <sip:alice@localhost>;tag=x\r\n\
             To: <sip:sink@127.0.0.1:5080>;tag=stoxbench-sink\r\n\
             Call-ID: abc\r\n\
             CSeq: 7 MESSAGE\r\n\
             Content-Length: 0\r\n\r\n"
        );
        assert_eq!(response_status(resp.as_bytes()), Some(200));
    }

    #[test]
    fn responses_and_garbage_are_not_requests() {
        assert_eq!(parse_request(b"SIP/2.0 200 OK\r\n\r\n"), None);
        assert_eq!(parse_request(b"\xff\xfe"), None);
        assert_eq!(
            parse_request(b"MESSAGE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n"),
            None
        );
        assert_eq!(response_status(b"MESSAGE sip:a@b SIP/2.0\r\n"), None);
        assert_eq!(response_status(b"SIP/2.0 202 Accepted\r\n"), Some(202));
        assert_eq!(response_status(b"SIP/2.0 2"), None);
    }
}

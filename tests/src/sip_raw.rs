//! Hand-written SIP over UDP and TCP (RFC 3261 §18), for malformed-input and edge-case tests
//! where SIPp would refuse to send what the test needs.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::sipp::SipMessage;

/// How long the helpers wait for an answer by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// Sends `request` in one datagram from a fresh socket and returns the first final
/// (≥ 200) response, or `None` if none came within 3 s.
pub fn send_sip_udp(addr: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    exchange_udp(addr, request, DEFAULT_TIMEOUT)
        .into_iter()
        .find(|m| m.status().is_some_and(|s| s >= 200))
        .map(|m| m.raw)
}

/// Sends `request` over UDP and returns every response datagram until a final one or
/// `timeout`.
pub fn exchange_udp(addr: SocketAddr, request: &[u8], timeout: Duration) -> Vec<SipMessage> {
    let mut out = Vec::new();
    let Ok(socket) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
        return out;
    };
    if socket.send_to(request, addr).is_err() {
        return out;
    }
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            return out;
        }
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                if let Some(message) = SipMessage::parse(&buf[..n]) {
                    let is_final = message.status().is_some_and(|s| s >= 200);
                    out.push(message);
                    if is_final {
                        return out;
                    }
                }
            }
            Err(_) => return out,
        }
    }
}

/// Sends `request` on a new TCP connection and returns the first final response, or
/// `None` if the connection closed or 3 s passed without one.
pub fn send_sip_tcp(addr: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    exchange_tcp(addr, request, DEFAULT_TIMEOUT)
        .into_iter()
        .find(|m| m.status().is_some_and(|s| s >= 200))
        .map(|m| m.raw)
}

/// Sends `request` over TCP and returns the responses read until a final one, EOF or
/// `timeout` (RFC 3261 §18.3 framing by Content-Length).
pub fn exchange_tcp(addr: SocketAddr, request: &[u8], timeout: Duration) -> Vec<SipMessage> {
    let mut out = Vec::new();
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return out;
    };
    if stream.write_all(request).is_err() {
        return out;
    }
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        // Frame off every complete message in `pending`.
        while let Some(len) = complete_message_len(&pending) {
            let raw: Vec<u8> = pending.drain(..len).collect();
            if let Some(message) = SipMessage::parse(&raw) {
                let is_final = message.status().is_some_and(|s| s >= 200);
                out.push(message);
                if is_final {
                    return out;
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return out;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

/// Length of the first complete message in a TCP byte stream (headers + Content-Length).
fn complete_message_len(stream: &[u8]) -> Option<usize> {
    // RFC 3261 §7.5: CRLFs before a start line are ignored (keep-alives).
    let skip = stream
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let data = &stream[skip..];
    let head_end = data.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&data[..head_end]);
    let body_len = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| {
            let n = n.trim();
            n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l")
        })
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (data.len() >= head_end + body_len).then_some(skip + head_end + body_len)
}

/// A well-formed MESSAGE (RFC 3428) from `from_user@local` to `request_uri`, with the
/// given transport in Via (`UDP`/`TCP`), for tests that then break one part of it.
/// Via carries `rport` (RFC 3581), so the answer comes back to the helper's own socket
/// whatever `local` says.
pub fn build_message(
    request_uri: &str,
    from_user: &str,
    local: SocketAddr,
    transport: &str,
    body: &[u8],
) -> Vec<u8> {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut out = format!(
        "MESSAGE {request_uri} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};rport;branch=z9hG4bK{nonce:x}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{from_user}@{local}>;tag={nonce:x}\r\n\
         To: <{request_uri}>\r\n\
         Call-ID: {nonce:x}@127.0.0.1\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain;charset=UTF-8\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_framing_uses_content_length_and_skips_keepalives() {
        let two = b"\r\n\r\nSIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nabcSIP/2.0 404 N\r\n";
        assert_eq!(complete_message_len(two), Some(4 + 37 + 3));
        assert_eq!(
            complete_message_len(b"SIP/2.0 200 OK\r\nl: 9\r\n\r\nabc"),
            None
        );
    }

    #[test]
    fn udp_exchange_reads_until_a_final_response() {
        let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = server.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let (_, peer) = server.recv_from(&mut buf).unwrap();
            server.send_to(b"SIP/2.0 100 Trying\r\n\r\n", peer).unwrap();
            server
                .send_to(
                    b"SIP/2.0 415 Unsupported Media Type\r\nContent-Length: 0\r\n\r\n",
                    peer,
                )
                .unwrap();
        });
        let request = build_message(
            "sip:alice@localhost",
            "carol",
            "127.0.0.1:5999".parse().unwrap(),
            "UDP",
            "hé".as_bytes(),
        );
        let reply = send_sip_udp(addr, &request).unwrap();
        let reply = SipMessage::parse(&reply).unwrap();
        assert_eq!(reply.status(), Some(415));
        handle.join().unwrap();
    }
}

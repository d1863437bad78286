//! The benchmark's SIP side over UDP (RFC 3261 §18): sockets with large buffers, the MESSAGE
//! load generator's response reader, and the sink UAS that answers every request `200 OK` at
//! once and counts benchmark MESSAGEs (RFC 3428 §7).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::UdpSocket;

use super::body::{now_us, Stamp};
use super::sipwire::{ok_response, parse_request, response_status};
use super::stats::{Recorder, Slot};

/// Socket buffer size asked for (capped by `net.core.rmem_max`/`wmem_max`, 4 MiB here).
pub const SOCKET_BUFFER: usize = 4 << 20;

fn set_buffer(socket: &UdpSocket, option: libc::c_int, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the fd is a valid open socket owned by `socket`; the option value is a c_int
    // whose size is passed alongside.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A UDP socket on `addr` with [`SOCKET_BUFFER`]-sized send and receive buffers.
pub async fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr).await?;
    set_buffer(&socket, libc::SO_RCVBUF, SOCKET_BUFFER)?;
    set_buffer(&socket, libc::SO_SNDBUF, SOCKET_BUFFER)?;
    Ok(socket)
}

/// Reads responses on `socket` and counts final ones into `recorder` until aborted.
pub async fn count_responses(socket: Arc<UdpSocket>, recorder: Arc<Recorder>) {
    let mut buf = vec![0u8; 65536];
    while let Ok((n, _)) = socket.recv_from(&mut buf).await {
        if let Some(code) = response_status(&buf[..n]).filter(|c| *c >= 200) {
            recorder.on_response(code);
        }
    }
}

/// What the sink saw besides benchmark MESSAGEs.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Datagrams that were not a parseable request.
    pub unparsed: AtomicU64,
    /// Requests other than a benchmark MESSAGE (OPTIONS, foreign bodies).
    pub other: AtomicU64,
}

/// The sink UAS: answers every request on `socket` `200 OK` (to the datagram's source,
/// which is stox's listening socket) and records benchmark MESSAGEs into the current run.
pub async fn run_sink(socket: Arc<UdpSocket>, slot: Arc<Slot>, counters: Arc<SinkCounters>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let at = now_us();
        let Some(request) = parse_request(&buf[..n]) else {
            counters.unparsed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        counters.requests.fetch_add(1, Ordering::Relaxed);
        // A lost response shows up as a retransmission, counted as a duplicate.
        let _ = socket.send_to(ok_response(&request).as_bytes(), from).await;
        match Stamp::parse(request.body).filter(|_| request.method == "MESSAGE") {
            Some(stamp) => {
                slot.get().on_arrival(stamp, at);
            }
            None => {
                counters.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sipwire::message_request;
    use super::*;

    #[tokio::test]
    async fn sink_answers_200_and_counts_the_message() {
        let slot = Arc::new(Slot::default());
        let rec = Arc::new(Recorder::new(9, 3));
        slot.set(rec.clone());
        let sink = Arc::new(bind("127.0.0.1:0".parse().unwrap()).await.unwrap());
        let sink_addr = sink.local_addr().unwrap();
        let counters = Arc::new(SinkCounters::default());
        let task = tokio::spawn(run_sink(sink, slot, counters.clone()));

        let peer = Arc::new(bind("127.0.0.1:0".parse().unwrap()).await.unwrap());
        let local = peer.local_addr().unwrap();
        let body = Stamp {
            run: 9,
            seq: 2,
            sent_us: now_us(),
        }
        .encode();
        let req = message_request(local, "alice", "sink", "127.0.0.1", "t1", &body);
        peer.send_to(req.as_bytes(), sink_addr).await.unwrap();
        let replies = Arc::new(Recorder::new(0, 0));
        let reader = tokio::spawn(count_responses(peer.clone(), replies.clone()));
        for _ in 0..200 {
            if replies.responses() > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        reader.abort();
        task.abort();
        assert_eq!(replies.summary().responses.get(&200), Some(&1));
        assert_eq!(rec.delivered(), 1);
        assert_eq!(counters.requests.load(Ordering::Relaxed), 1);
    }
}

//! Free loopback ports for the peers of one test.
//!
//! Ports come from 20000..32000, below Linux's ephemeral range (32768..60999), so an outgoing
//! connection of another test cannot grab a port between "picked" and "bound". A port is
//! handed out at most once per test process, and only if both TCP and UDP can bind it on
//! 127.0.0.1 right now (SIP listens on both). Parallel test binaries are not coordinated:
//! the random start makes a clash unlikely, and a peer that fails to bind fails loudly.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const FIRST: u16 = 20000;
const END: u16 = 32000;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A small xorshift step: enough to spread ports, no `rand` dependency.
fn next_random() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// Whether `port` is bindable on 127.0.0.1 for both TCP and UDP right now.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A port free for TCP and UDP on 127.0.0.1, never returned before by this process.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive ports, each free for TCP and UDP on 127.0.0.1 and never
/// returned before by this process; all `n` are handed out. For a peer that binds more
/// than the port it is given (baresip's TLS transport takes the SIP port + 1).
pub fn free_ports(n: u16) -> u16 {
    assert!((1..=16).contains(&n), "free_ports({n})");
    let span = u64::from(END - FIRST - (n - 1));
    let mut guard = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let taken = guard.get_or_insert_with(HashSet::new);
    let start = next_random() % span;
    for step in 0..span {
        // `(start + step) % span < span <= u16::MAX - FIRST`, so this fits in a u16.
        let first = FIRST + ((start + step) % span) as u16;
        if (first..first + n).all(|p| !taken.contains(&p) && is_free(p)) {
            taken.extend(first..first + n);
            return first;
        }
    }
    panic!("no {n} free consecutive loopback ports left in {FIRST}..{END}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        for port in ports {
            assert!((FIRST..END).contains(&port));
            assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok());
        }
        // Consecutive ports are handed out together, never again alone.
        let first = free_ports(2);
        for _ in 0..200 {
            let p = free_port();
            assert!(p != first && p != first + 1, "{p} handed out twice");
        }
    }
}

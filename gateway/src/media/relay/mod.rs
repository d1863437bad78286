//! The per-call RTP relay: ICE (RFC 8445) + DTLS-SRTP (RFC 5763/5764, RFC 8842) toward the XMPP
//! client, plain RTP (RFC 3550) with symmetric-RTP latching (RFC 4961) toward the SIP phone.
//!
//! XMPP clients that call (Conversations, Monal, Dino: libwebrtc) insist on ICE-UDP (XEP-0176) and
//! DTLS-SRTP (XEP-0320); SIP phones speak plain RTP. For each call the relay binds one UDP socket
//! for the XMPP leg, driven by a `str0m` [`Rtc`](str0m::Rtc) in RTP mode through its direct API,
//! and two for the SIP leg (RTP on an even port, RTCP on the next one, RFC 3550 §11; RTCP may
//! also arrive multiplexed on the RTP port, RFC 5761). Packets are forwarded only after DTLS
//! completes, with payload type, SSRC, sequence number and timestamp rewritten per leg
//! ([`rewrite`]); RFC 4733 `telephone-event` passes through its own row of the [`PtMap`]. Each
//! leg's RTCP stays on that leg ([`rtcp`]).
//!
//! Media never passes through the gateway's main loop (ARCHITECTURE.md, "Data flow"): each call
//! is one tokio task owning its sockets, and the loop talks to it only through [`Relay`]'s
//! methods (commands over a channel) and the [`RelayEvent`] stream. A panic in a call task (str0m
//! panics on API misuse) ends that call alone: the task runs under `catch_unwind`, and the
//! relay then reports [`RelayEventKind::Failed`] and [`RelayEventKind::Closed`] for it.
//!
//! The two directions of call setup:
//! - SIP → XMPP: the SIP offer gives the SIP leg's remote address at [`Relay::spawn_call`]
//!   (`we_offer: true` on the XMPP leg, no remote yet); the Jingle `session-accept` later gives
//!   [`Relay::set_xmpp_remote`], and candidates trickle through [`Relay::add_remote_candidate`].
//! - XMPP → SIP: the Jingle offer is the XMPP remote at spawn (`we_offer: false`); the SIP 200
//!   gives [`Relay::set_sip_remote`].
//!
//! ICE and DTLS are started as soon as the XMPP remote is known; the setup deadline (the call's
//! no-media timeout) and the per-leg no-media timers start once both remotes are known.

mod call;
pub mod rewrite;
pub mod rtcp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

pub use rewrite::{AudioCodec, Leg, PtMap, PtMapError, PtPair, Setup, SetupError};

/// Relay configuration: `[media]` in the config file.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The address media sockets bind to and host candidates announce (`[media] address`).
    /// Must be a concrete address: ICE cannot announce `0.0.0.0`.
    pub address: IpAddr,
    /// First port of the range (`[media] port_range`), inclusive.
    pub port_min: u16,
    /// Last port of the range, inclusive. Each call takes an aligned block of four ports.
    pub port_max: u16,
}

/// A call's handle inside the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct CallId(pub u64);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "media-{}", self.0)
    }
}

/// What the relay needs to start a call.
#[derive(Debug, Clone)]
pub struct CallMedia {
    /// The XMPP (Jingle) leg.
    pub xmpp: XmppLegParams,
    /// The SIP (SDP) leg.
    pub sip: SipLegParams,
    /// Payload types both legs share. Every XMPP-leg payload type the call may carry must be in
    /// it at spawn (the str0m session is configured once); pass the offer's rows and let the
    /// answer narrow what is actually sent.
    pub pt_map: PtMap,
    /// A leg that receives no media for this long ends the call; ICE + DTLS must also complete
    /// within it once both remotes are known.
    pub no_media_timeout: Duration,
}

/// The XMPP leg as the Jingle negotiation describes it.
#[derive(Debug, Clone)]
pub struct XmppLegParams {
    /// Whether stox sent the Jingle offer (`session-initiate`) on this leg: then it is the ICE
    /// controlling agent (RFC 8445 §6.1.1) and offers `setup='actpass'`.
    pub we_offer: bool,
    /// The Jingle content name (becomes the str0m mid when it is at most 16 letters or digits).
    pub content_name: String,
    /// The remote description, when known (the offer, when we answer).
    pub remote: Option<XmppRemote>,
    /// XEP-0294 header extensions to honour on this leg, `(id, uri)`. Pass only what our own
    /// description (offer or answer) lists; an empty list means none are parsed.
    pub extensions: Vec<(u8, String)>,
}

/// The remote side of the XMPP leg: XEP-0176 transport, XEP-0320 fingerprint, XEP-0339 sources.
#[derive(Debug, Clone)]
pub struct XmppRemote {
    /// ICE username fragment.
    pub ufrag: String,
    /// ICE password.
    pub pwd: String,
    /// The fingerprint's hash function, e.g. `sha-256`.
    pub fingerprint_hash: String,
    /// The fingerprint, hex bytes separated by colons.
    pub fingerprint: String,
    /// The remote DTLS role.
    pub setup: Setup,
    /// XEP-0339 SSRCs the remote announced (optional: unknown SSRCs are learnt from traffic).
    pub ssrcs: Vec<u32>,
    /// Candidates that came with the description.
    pub candidates: Vec<RemoteCandidate>,
}

/// A XEP-0176 candidate from the XMPP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCandidate {
    /// `foundation`.
    pub foundation: String,
    /// `component` (1 = RTP; 2 = RTCP, ignored: rtcp-mux).
    pub component: u16,
    /// `protocol` (only `udp` is used).
    pub protocol: String,
    /// `priority`.
    pub priority: u32,
    /// `ip` and `port`.
    pub addr: SocketAddr,
    /// `type`: `host`, `srflx`, `prflx` or `relay`.
    pub kind: String,
    /// `rel-addr` / `rel-port`.
    pub related: Option<SocketAddr>,
}

/// The SIP leg as the SDP negotiation describes it.
#[derive(Debug, Clone, Default)]
pub struct SipLegParams {
    /// The remote RTP address (`c=` and `m=` port), when known.
    pub remote: Option<SocketAddr>,
    /// The remote RTCP address (`a=rtcp`, RFC 3605); default: RTP port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    /// `a=rtcp-mux` (RFC 5761) was negotiated: RTCP goes to the RTP address.
    pub rtcp_mux: bool,
}

/// What the gateway puts in its own descriptions after [`Relay::spawn_call`].
#[derive(Debug, Clone)]
pub struct CallStarted {
    /// The call.
    pub id: CallId,
    /// Our side of the XMPP leg (Jingle transport, fingerprint).
    pub xmpp: XmppLocal,
    /// Our side of the SIP leg (SDP `c=`, `m=` port, `a=rtcp`).
    pub sip: SipLocal,
}

/// Our XEP-0176 transport and XEP-0320 fingerprint on the XMPP leg.
#[derive(Debug, Clone)]
pub struct XmppLocal {
    /// ICE username fragment.
    pub ufrag: String,
    /// ICE password.
    pub pwd: String,
    /// Fingerprint hash function (`sha-256`).
    pub fingerprint_hash: String,
    /// Fingerprint, uppercase hex bytes separated by colons.
    pub fingerprint: String,
    /// The DTLS `setup` we announce: `actpass` when we offer (the answer fixes the roles),
    /// `active` or `passive` when we answer (never `actpass` in an answer).
    pub setup: Setup,
    /// Our host candidates.
    pub candidates: Vec<LocalCandidate>,
    /// The SSRC we send with (XEP-0339 `<source>`).
    pub ssrc: u32,
}

/// One of our ICE candidates, as XEP-0176 wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCandidate {
    /// `foundation`.
    pub foundation: String,
    /// `component` (always 1: rtcp-mux).
    pub component: u16,
    /// `protocol` (`udp`).
    pub protocol: String,
    /// `priority`.
    pub priority: u32,
    /// `ip` and `port`.
    pub addr: SocketAddr,
    /// `type` (`host`).
    pub kind: String,
}

/// Our side of the SIP leg.
#[derive(Debug, Clone, Copy)]
pub struct SipLocal {
    /// RTP address (even port).
    pub rtp: SocketAddr,
    /// RTCP address (RTP port + 1).
    pub rtcp: SocketAddr,
    /// The SSRC we send with.
    pub ssrc: u32,
}

/// Something that happened to a call.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayEvent {
    /// The call.
    pub call: CallId,
    /// What happened.
    pub kind: RelayEventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayEventKind {
    /// ICE found a working pair on the XMPP leg.
    IceConnected,
    /// DTLS completed and SRTP keys are in place: media now flows.
    DtlsConnected,
    /// The call failed (ICE/DTLS timeout, bad remote parameters, a bug); `Closed` follows.
    Failed {
        /// A human-readable reason.
        why: String,
    },
    /// A leg received no media for the no-media timeout; `Closed` follows.
    NoMedia {
        /// The silent leg.
        leg: Leg,
    },
    /// The call's task ended and its ports are free. Sent exactly once per call.
    Closed {
        /// Why it ended.
        reason: CloseReason,
        /// Final counters.
        counters: CallCounters,
    },
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// [`Relay::hangup`].
    Hangup,
    /// The XMPP client closed DTLS (close_notify), usually just before `session-terminate`.
    RemoteClosed,
    /// A leg went silent.
    NoMedia,
    /// Setup failed or the task hit an error.
    Failed,
}

/// Packet counters of one leg. "in" is what arrived on the leg, "out" what the relay sent on it;
/// bytes are RTP payload bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LegCounters {
    /// RTP packets received.
    pub packets_in: u64,
    /// RTP payload bytes received.
    pub bytes_in: u64,
    /// RTP packets sent.
    pub packets_out: u64,
    /// RTP payload bytes sent.
    pub bytes_out: u64,
    /// Packets received but not forwarded (before DTLS, unknown payload type, wrong source).
    pub dropped: u64,
}

/// Counters of both legs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CallCounters {
    /// The XMPP leg.
    pub xmpp: LegCounters,
    /// The SIP leg.
    pub sip: LegCounters,
}

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Waiting for a remote description.
    Waiting,
    /// ICE / DTLS in progress.
    Connecting,
    /// DTLS up, media flowing.
    Connected,
    /// Ending.
    Closing,
}

/// One live call, for the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallSummary {
    /// The call.
    pub id: CallId,
    /// Where it stands.
    pub state: CallState,
    /// Our XMPP-leg socket.
    pub xmpp_local: SocketAddr,
    /// Our SIP-leg RTP socket.
    pub sip_local: SocketAddr,
    /// Counters so far.
    pub counters: CallCounters,
}

/// Why the relay refused something.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The configured address cannot carry ICE host candidates.
    #[error("media address {0} cannot be announced as an ICE host candidate")]
    BadAddress(IpAddr),
    /// The port range has no free block of four ports.
    #[error("no free ports left in the media port range")]
    NoPorts,
    /// The configured port range is empty or smaller than one block of four.
    #[error("media port range {0}-{1} holds no aligned block of four ports")]
    BadRange(u16, u16),
    /// Binding a socket failed for another reason than the port being taken.
    #[error("binding a media socket failed: {0}")]
    Bind(#[source] std::io::Error),
    /// The remote fingerprint is not hex bytes.
    #[error("remote DTLS fingerprint is malformed: {0}")]
    BadFingerprint(String),
    /// The remote `setup` conflicts with ours.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The call does not exist (any more).
    #[error("no such call: {0}")]
    NoSuchCall(CallId),
    /// `spawn_call` was called outside a tokio runtime.
    #[error("the relay must be used inside a tokio runtime")]
    NoRuntime,
}

#[derive(Debug)]
enum Command {
    XmppRemote(XmppRemote),
    SipRemote(SocketAddr),
    Candidate(RemoteCandidate),
    Hangup,
    #[cfg(test)]
    Panic,
}

/// Counters shared between a call task and the relay handle (read without waiting on the task).
#[derive(Debug, Default)]
struct SharedCounters {
    c: [AtomicU64; 10],
    state: AtomicU8,
}

impl SharedCounters {
    fn add(&self, leg: Leg, field: usize, n: u64) {
        let base = match leg {
            Leg::Xmpp => 0,
            Leg::Sip => 5,
        };
        self.c[base + field].fetch_add(n, Ordering::Relaxed);
    }
    fn leg(&self, base: usize) -> LegCounters {
        let g = |i: usize| self.c[base + i].load(Ordering::Relaxed);
        LegCounters {
            packets_in: g(0),
            bytes_in: g(1),
            packets_out: g(2),
            bytes_out: g(3),
            dropped: g(4),
        }
    }
    fn snapshot(&self) -> CallCounters {
        CallCounters {
            xmpp: self.leg(0),
            sip: self.leg(5),
        }
    }
    fn set_state(&self, s: CallState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }
    fn state(&self) -> CallState {
        match self.state.load(Ordering::Relaxed) {
            0 => CallState::Waiting,
            1 => CallState::Connecting,
            2 => CallState::Connected,
            _ => CallState::Closing,
        }
    }
}

const PACKETS_IN: usize = 0;
const BYTES_IN: usize = 1;
const PACKETS_OUT: usize = 2;
const BYTES_OUT: usize = 3;
const DROPPED: usize = 4;

struct CallEntry {
    commands: mpsc::UnboundedSender<Command>,
    counters: Arc<SharedCounters>,
    xmpp_local: SocketAddr,
    sip_local: SocketAddr,
}

/// Aligned blocks of four ports: SIP RTP (even), SIP RTCP, XMPP, spare.
#[derive(Debug)]
struct PortPool {
    first: u16,
    blocks: u16,
    used: Vec<bool>,
    next: u16,
}

impl PortPool {
    fn new(min: u16, max: u16) -> Option<Self> {
        let first = min.checked_add(3)? & !3;
        let blocks = (u32::from(max) + 1).checked_sub(u32::from(first))? / 4;
        let blocks = u16::try_from(blocks).ok().filter(|b| *b > 0)?;
        Some(PortPool {
            first,
            blocks,
            used: vec![false; usize::from(blocks)],
            next: 0,
        })
    }

    /// Candidate blocks in round-robin order, starting after the last one handed out.
    fn candidates(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.blocks)
            .map(move |i| (self.next + i) % self.blocks)
            .filter(move |b| !self.used[usize::from(*b)])
    }

    fn port(&self, block: u16) -> u16 {
        self.first + block * 4
    }

    fn take(&mut self, block: u16) {
        self.used[usize::from(block)] = true;
        self.next = (block + 1) % self.blocks;
    }

    fn release(&mut self, block: u16) {
        if let Some(u) = self.used.get_mut(usize::from(block)) {
            *u = false;
        }
    }
}

struct Shared {
    config: RelayConfig,
    crypto: Arc<str0m::crypto::CryptoProvider>,
    ports: Mutex<PortPool>,
    calls: Mutex<HashMap<CallId, CallEntry>>,
    next_id: AtomicU64,
    events: mpsc::UnboundedSender<RelayEvent>,
}

/// The relay: a cheap, cloneable handle the gateway keeps. All methods return at once.
#[derive(Clone)]
pub struct Relay {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.shared.config)
            .finish()
    }
}

/// The relay's event stream.
pub type RelayEvents = mpsc::UnboundedReceiver<RelayEvent>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic while holding it; the data (a port bitmap, a map of
    // channels) stays consistent at every await-free step, so keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Relay {
    /// A relay with the given configuration, and its event stream.
    pub fn new(config: RelayConfig) -> Result<(Relay, RelayEvents), RelayError> {
        let addr = config.address;
        if addr.is_unspecified() || addr.is_multicast() {
            return Err(RelayError::BadAddress(addr));
        }
        let ports = PortPool::new(config.port_min, config.port_max)
            .ok_or(RelayError::BadRange(config.port_min, config.port_max))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared {
            config,
            crypto: Arc::new(str0m::crypto::from_feature_flags()),
            ports: Mutex::new(ports),
            calls: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            events: tx,
        };
        Ok((
            Relay {
                shared: Arc::new(shared),
            },
            rx,
        ))
    }

    /// Opens the sockets of a new call, configures its XMPP leg and starts its task.
    /// Must be called inside a tokio runtime.
    pub fn spawn_call(&self, media: CallMedia) -> Result<CallStarted, RelayError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| RelayError::NoRuntime)?;
        let (block, sockets) = self.bind_block()?;
        let id = CallId(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let counters = Arc::new(SharedCounters::default());
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let prepared = match call::prepare(
            id,
            media,
            sockets,
            self.shared.crypto.clone(),
            counters.clone(),
            self.shared.events.clone(),
        ) {
            Ok(p) => p,
            Err(e) => {
                lock(&self.shared.ports).release(block);
                return Err(e);
            }
        };
        let started = prepared.started.clone();
        lock(&self.shared.calls).insert(
            id,
            CallEntry {
                commands: cmd_tx,
                counters: counters.clone(),
                xmpp_local: started.xmpp.candidates[0].addr,
                sip_local: started.sip.rtp,
            },
        );
        let shared = self.shared.clone();
        runtime.spawn(async move {
            use futures::FutureExt;
            let outcome = std::panic::AssertUnwindSafe(prepared.task.run(cmd_rx))
                .catch_unwind()
                .await;
            let reason = match outcome {
                Ok(reason) => reason,
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    tracing::error!(call = %id, %why, "media task panicked");
                    let _ = shared.events.send(RelayEvent {
                        call: id,
                        kind: RelayEventKind::Failed {
                            why: format!("panic in the call's media task: {why}"),
                        },
                    });
                    CloseReason::Failed
                }
            };
            lock(&shared.calls).remove(&id);
            lock(&shared.ports).release(block);
            let _ = shared.events.send(RelayEvent {
                call: id,
                kind: RelayEventKind::Closed {
                    reason,
                    counters: counters.snapshot(),
                },
            });
        });
        Ok(started)
    }

    fn bind_block(&self) -> Result<(u16, call::Sockets), RelayError> {
        let addr = self.shared.config.address;
        let mut pool = lock(&self.shared.ports);
        let candidates: Vec<u16> = pool.candidates().collect();
        for block in candidates {
            let port = pool.port(block);
            let bind = |p: u16| StdUdpSocket::bind(SocketAddr::new(addr, p));
            let sockets = (|| -> std::io::Result<call::Sockets> {
                Ok(call::Sockets {
                    sip_rtp: bind(port)?,
                    sip_rtcp: bind(port + 1)?,
                    xmpp: bind(port + 2)?,
                })
            })();
            match sockets {
                Ok(s) => {
                    pool.take(block);
                    return Ok((block, s));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(RelayError::Bind(e)),
            }
        }
        Err(RelayError::NoPorts)
    }

    fn send(&self, id: CallId, cmd: Command) -> Result<(), RelayError> {
        let calls = lock(&self.shared.calls);
        let entry = calls.get(&id).ok_or(RelayError::NoSuchCall(id))?;
        entry
            .commands
            .send(cmd)
            .map_err(|_| RelayError::NoSuchCall(id))
    }

    /// The XMPP client's description arrived (`session-accept` when we offered).
    pub fn set_xmpp_remote(&self, id: CallId, remote: XmppRemote) -> Result<(), RelayError> {
        self.send(id, Command::XmppRemote(remote))
    }

    /// The SIP side's RTP address is known (the 200 OK's SDP when we offered, a re-INVITE).
    pub fn set_sip_remote(&self, id: CallId, addr: SocketAddr) -> Result<(), RelayError> {
        self.send(id, Command::SipRemote(addr))
    }

    /// A candidate trickled in (`transport-info`). Buffered until the remote description is known.
    pub fn add_remote_candidate(&self, id: CallId, c: RemoteCandidate) -> Result<(), RelayError> {
        self.send(id, Command::Candidate(c))
    }

    /// Ends the call: DTLS close_notify and RTCP BYE on the way out, then `Closed`. Idempotent:
    /// returns whether the call was still live.
    pub fn hangup(&self, id: CallId) -> bool {
        self.send(id, Command::Hangup).is_ok()
    }

    /// The counters of a live call.
    pub fn counters(&self, id: CallId) -> Option<CallCounters> {
        lock(&self.shared.calls)
            .get(&id)
            .map(|e| e.counters.snapshot())
    }

    /// Every live call.
    pub fn calls(&self) -> Vec<CallSummary> {
        let mut v: Vec<_> = lock(&self.shared.calls)
            .iter()
            .map(|(id, e)| CallSummary {
                id: *id,
                state: e.counters.state(),
                xmpp_local: e.xmpp_local,
                sip_local: e.sip_local,
                counters: e.counters.snapshot(),
            })
            .collect();
        v.sort_by_key(|c| c.id);
        v
    }

    #[cfg(test)]
    fn inject_panic(&self, id: CallId) -> Result<(), RelayError> {
        self.send(id, Command::Panic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_pool_hands_out_aligned_blocks_round_robin() {
        let mut p = PortPool::new(40_001, 40_015).unwrap();
        // 40004..=40015 holds three blocks.
        assert_eq!(p.blocks, 3);
        let c: Vec<u16> = p.candidates().map(|b| p.port(b)).collect();
        assert_eq!(c, vec![40_004, 40_008, 40_012]);
        p.take(0);
        let c: Vec<u16> = p.candidates().map(|b| p.port(b)).collect();
        assert_eq!(c, vec![40_008, 40_012]);
        p.take(1);
        p.release(0);
        let c: Vec<u16> = p.candidates().map(|b| p.port(b)).collect();
        assert_eq!(c, vec![40_012, 40_004]);
        assert!(PortPool::new(40_001, 40_003).is_none());
        assert!(PortPool::new(50_000, 40_000).is_none());
        assert!(PortPool::new(65_533, 65_535).is_none());
    }

    #[test]
    fn relay_refuses_unannounceable_addresses() {
        let cfg = |a: &str| RelayConfig {
            address: a.parse().unwrap(),
            port_min: 40_000,
            port_max: 40_100,
        };
        assert!(matches!(
            Relay::new(cfg("0.0.0.0")),
            Err(RelayError::BadAddress(_))
        ));
        assert!(Relay::new(cfg("127.0.0.1")).is_ok());
    }

    fn media() -> CallMedia {
        CallMedia {
            xmpp: XmppLegParams {
                we_offer: true,
                content_name: "audio".into(),
                remote: None,
                extensions: vec![],
            },
            sip: SipLegParams::default(),
            pt_map: PtMap::new(vec![PtPair::new(AudioCodec::Pcmu, 0, 0)]).unwrap(),
            no_media_timeout: Duration::from_secs(30),
        }
    }

    #[tokio::test]
    async fn a_panic_in_a_call_task_ends_only_that_call() {
        let (relay, mut events) = Relay::new(RelayConfig {
            address: "127.0.0.1".parse().unwrap(),
            port_min: 47_200,
            port_max: 47_299,
        })
        .unwrap();
        let a = relay.spawn_call(media()).unwrap();
        let b = relay.spawn_call(media()).unwrap();
        assert_eq!(a.xmpp.setup, Setup::Actpass);
        relay.inject_panic(a.id).unwrap();
        let failed = events.recv().await.unwrap();
        assert_eq!(failed.call, a.id);
        assert!(
            matches!(failed.kind, RelayEventKind::Failed { ref why } if why.contains("injected"))
        );
        let closed = events.recv().await.unwrap();
        assert_eq!(closed.call, a.id);
        assert!(matches!(
            closed.kind,
            RelayEventKind::Closed {
                reason: CloseReason::Failed,
                ..
            }
        ));
        // The other call lives on, and the panicked call's ports are free again.
        let live: Vec<CallId> = relay.calls().iter().map(|c| c.id).collect();
        assert_eq!(live, vec![b.id]);
        assert!(!relay.hangup(a.id));
        assert!(relay.hangup(b.id));
        let closed = events.recv().await.unwrap();
        assert_eq!(closed.call, b.id);
        assert!(matches!(
            closed.kind,
            RelayEventKind::Closed {
                reason: CloseReason::Hangup,
                ..
            }
        ));
        assert!(relay.calls().is_empty());
    }
}

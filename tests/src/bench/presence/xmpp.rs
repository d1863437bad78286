//! The benchmark's XMPP users: tokio-xmpp c2s clients (plain TCP, SASL PLAIN) that fetch
//! their roster (so Prosody treats them as interested resources, RFC 6121 §2.1.6, and
//! delivers `subscribed` and roster pushes to them), send available presence, and then:
//!
//! * approve every subscription request (`<presence type='subscribe'/>` → `subscribed`,
//!   RFC 6121 §3.1.4): the XMPP users that SIP watchers watch;
//! * record what SIP contacts tell them (RFC 8048 Table 2): `subscribed`, the first
//!   available presence of each contact, and presence whose `<status/>` is a benchmark
//!   [`Stamp`] (the note of a NOTIFY the bench sent), counted into the current run;
//! * answer roster pushes (`<iq type='set'/>`) with an empty result (RFC 6121 §2.1.6);
//! * send what the bench asks ([`Command`]): subscription requests, presence changes.
//!
//! The clients drive a [`StanzaStream`] directly rather than a `tokio_xmpp::Client`: in
//! tokio-xmpp 6.0.0 the `Client` splits its stream into a sender and a receiver that share a
//! mutex, and the receiver's `poll_next` returns `Pending` without registering a waker when
//! the sender holds the lock (`StanzaReceiver::poll_next`, `try_lock`). A client that sends
//! while stanzas pour in (here: approving 1,000 subscription requests) then stops receiving
//! for good. `StanzaStream::send` only enqueues, and its receive side has no lock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_xmpp::connect::{DnsConfig, TcpServerConnector};
use tokio_xmpp::jid::Jid;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::presence::{Presence, Show, Type};
use tokio_xmpp::parsers::roster::Roster;
use tokio_xmpp::stanzastream::{Event, StanzaStream, StreamEvent};
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::Stanza;

use super::wire::index_after;
use crate::bench::body::{now_us, Stamp};
use crate::bench::stats::Slot;

/// Stanzas queued each way inside a [`StanzaStream`].
const QUEUE_DEPTH: usize = 1024;

/// What the bench asks a client to send.
#[derive(Debug)]
pub enum Command {
    /// `<presence type='subscribe' to=JID/>`.
    Subscribe(Jid),
    /// An available presence with `show` and the stamp of `run` (sent now) as status.
    Change {
        /// The stamp's run.
        run: u32,
        /// `<show/>`.
        show: Show,
        /// Gets the send time (bench clock, µs) once the stanza was written.
        sent: Option<tokio::sync::oneshot::Sender<u64>>,
    },
}

/// What one SIP contact told the XMPP user watching it.
#[derive(Debug, Default)]
pub struct ContactSeen {
    /// `<presence type='subscribed'/>` arrived.
    pub subscribed: AtomicBool,
    /// An available presence arrived.
    pub available: AtomicBool,
    /// The latest stamp seen: `run << 32 | (seq + 1)`.
    pub last: AtomicU64,
}

/// Everything the clients record, shared by all of them.
#[derive(Debug)]
pub struct Board {
    /// The localpart suffix of a contact JID after `cN` (`\40127.0.0.1\3aPORT`).
    contact_suffix: String,
    /// stox's component domain.
    component: String,
    /// Per SIP contact `cN`.
    pub contacts: Vec<ContactSeen>,
    /// Subscription requests answered `subscribed`.
    pub approvals: AtomicU64,
    /// Contacts that sent `subscribed`.
    pub subscribed: AtomicU64,
    /// Contacts that sent available presence.
    pub available: AtomicU64,
    /// When the last contact became both subscribed and available (bench clock, µs).
    pub last_established_us: AtomicU64,
    /// `unavailable` from contacts.
    pub unavailable: AtomicU64,
    /// `unsubscribed` from contacts.
    pub unsubscribed: AtomicU64,
    /// Presence errors.
    pub errors: AtomicU64,
    /// Roster pushes answered.
    pub roster_pushes: AtomicU64,
    /// Streams suspended (connection lost; tokio-xmpp reconnects by itself).
    pub disconnects: AtomicU64,
    /// The NOTIFY run in progress: translated presence counts into it.
    pub slot: Slot,
}

impl Board {
    /// A board for `contacts` SIP contacts `cN` at `contact_addr`, behind `component`.
    pub fn new(contacts: usize, contact_addr: SocketAddr, component: &str) -> Board {
        Board {
            contact_suffix: format!("\\40{}\\3a{}", contact_addr.ip(), contact_addr.port()),
            component: component.to_string(),
            contacts: (0..contacts).map(|_| ContactSeen::default()).collect(),
            approvals: AtomicU64::new(0),
            subscribed: AtomicU64::new(0),
            available: AtomicU64::new(0),
            last_established_us: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            unsubscribed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            roster_pushes: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            slot: Slot::default(),
        }
    }

    /// The JID of SIP contact `j` (XEP-0106: `cJ\40127.0.0.1\3aPORT@COMPONENT`).
    pub fn contact_jid(&self, j: usize) -> String {
        format!("c{j}{}@{}", self.contact_suffix, self.component)
    }

    /// Which contact a JID is, if it is one.
    pub fn contact_of(&self, jid: &Jid) -> Option<usize> {
        if jid.domain().as_str() != self.component {
            return None;
        }
        let node = jid.node()?;
        let node = node.as_str().strip_suffix(&self.contact_suffix)?;
        index_after(node, "c").filter(|j| *j < self.contacts.len())
    }

    /// Contacts that sent both `subscribed` and available presence.
    pub fn established(&self) -> usize {
        self.contacts
            .iter()
            .filter(|c| c.subscribed.load(Relaxed) && c.available.load(Relaxed))
            .count()
    }

    fn on_presence(&self, p: &Presence, at: u64) -> Option<Presence> {
        let from = p.from.as_ref()?;
        if p.type_ == Type::Subscribe {
            // Approve whoever asks (the SIP watchers' JIDs).
            self.approvals.fetch_add(1, Relaxed);
            return Some(Presence::subscribed().with_to(from.to_bare()));
        }
        if p.type_ == Type::Error {
            self.errors.fetch_add(1, Relaxed);
            return None;
        }
        let j = self.contact_of(from)?;
        let seen = &self.contacts[j];
        let newly = match p.type_ {
            Type::Subscribed => {
                !seen.subscribed.swap(true, Relaxed) && {
                    self.subscribed.fetch_add(1, Relaxed);
                    seen.available.load(Relaxed)
                }
            }
            Type::None => {
                let first = !seen.available.swap(true, Relaxed) && {
                    self.available.fetch_add(1, Relaxed);
                    seen.subscribed.load(Relaxed)
                };
                if let Some(stamp) = p.statuses.values().find_map(|s| Stamp::parse(s)) {
                    let recorder = self.slot.get();
                    if stamp.run == recorder.run() {
                        recorder.on_arrival(stamp, at);
                        let mark = u64::from(stamp.run) << 32 | (u64::from(stamp.seq) + 1);
                        seen.last.fetch_max(mark, Relaxed);
                    }
                }
                first
            }
            Type::Unavailable => {
                self.unavailable.fetch_add(1, Relaxed);
                false
            }
            Type::Unsubscribed => {
                self.unsubscribed.fetch_add(1, Relaxed);
                false
            }
            _ => false,
        };
        if newly {
            self.last_established_us.fetch_max(at, Relaxed);
        }
        None
    }
}

/// A connected client: its command queue and task.
#[derive(Debug)]
pub struct PresenceClient {
    /// Queue of sends.
    pub commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

/// Logs `jid` in at `server` (c2s, plain TCP, SASL PLAIN), fetches the roster, sends
/// available presence and starts the client's task.
pub async fn connect(
    server: SocketAddr,
    jid: &str,
    password: &str,
    board: Arc<Board>,
) -> Result<PresenceClient> {
    let bare: Jid = jid.parse().with_context(|| format!("bad JID {jid}"))?;
    let mut stream = StanzaStream::new_c2s(
        TcpServerConnector::from(DnsConfig::addr(&server.to_string())),
        bare,
        password.to_string(),
        Timeouts::default(),
        QUEUE_DEPTH,
    );
    let online = async {
        while let Some(event) = stream.next().await {
            if let Event::Stream(StreamEvent::Reset { .. }) = event {
                return Ok(());
            }
        }
        Err(anyhow!("{jid}: stream ended before login"))
    };
    // The stream retries a failed login by itself: a wrong password shows as a timeout.
    tokio::time::timeout(Duration::from_secs(15), online)
        .await
        .map_err(|_| anyhow!("{jid}: no login after 15 s"))??;
    let roster = Iq::from_get(
        "roster-1",
        Roster {
            ver: None,
            items: Vec::new(),
        },
    );
    stream.send(Box::new(roster.into())).await;
    stream.send(Box::new(Presence::available().into())).await;
    let (commands, queue) = mpsc::channel(8192);
    let task = tokio::spawn(run(stream, queue, board));
    Ok(PresenceClient { commands, task })
}

impl PresenceClient {
    /// Closes the command queue and waits for the task to end its stream.
    pub async fn close(self) {
        drop(self.commands);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

async fn run(mut stream: StanzaStream, mut queue: mpsc::Receiver<Command>, board: Arc<Board>) {
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Event::Stanza(stanza)) => {
                    if let Some(reply) = on_stanza(&board, stanza) {
                        stream.send(Box::new(reply)).await;
                    }
                }
                Some(Event::Stream(StreamEvent::Suspended)) => {
                    board.disconnects.fetch_add(1, Relaxed);
                }
                Some(_) => {}
                None => return,
            },
            command = queue.recv() => match command {
                Some(Command::Subscribe(to)) => {
                    stream.send(Box::new(Presence::subscribe().with_to(to).into())).await;
                }
                Some(Command::Change { run, show, sent }) => {
                    let at = now_us();
                    let mut p = Presence::available().with_show(show);
                    p.set_status("", Stamp { run, seq: 0, sent_us: at }.encode());
                    stream.send(Box::new(p.into())).await;
                    if let Some(sent) = sent {
                        let _ = sent.send(at);
                    }
                }
                None => break,
            },
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.close()).await;
}

/// What a stanza asks the client to send back.
fn on_stanza(board: &Board, stanza: Stanza) -> Option<Stanza> {
    let at = now_us();
    match stanza {
        Stanza::Presence(p) => board.on_presence(&p, at).map(Into::into),
        Stanza::Iq(Iq::Set { id, .. }) => {
            board.roster_pushes.fetch_add(1, Relaxed);
            Some(
                Iq::Result {
                    from: None,
                    to: None,
                    id,
                    payload: None,
                }
                .into(),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::Recorder;

    fn board() -> Board {
        Board::new(3, "127.0.0.1:5080".parse().unwrap(), "sip.localhost")
    }

    fn from(p: Presence, jid: &str) -> Presence {
        p.with_from(jid.parse::<Jid>().unwrap())
    }

    #[test]
    fn contact_jids_round_trip() {
        let b = board();
        let jid = b.contact_jid(2);
        assert_eq!(jid, "c2\\40127.0.0.1\\3a5080@sip.localhost");
        let full: Jid = format!("{jid}/bench").parse().unwrap();
        assert_eq!(b.contact_of(&full), Some(2));
        assert_eq!(
            b.contact_of(&"c3\\40127.0.0.1\\3a5080@sip.localhost".parse().unwrap()),
            None
        );
        assert_eq!(
            b.contact_of(&"c1\\40127.0.0.1\\3a5081@sip.localhost".parse().unwrap()),
            None
        );
        assert_eq!(b.contact_of(&"c1@localhost".parse().unwrap()), None);
    }

    #[test]
    fn subscribe_requests_are_approved() {
        let b = board();
        let req = from(
            Presence::subscribe(),
            "w1\\40127.0.0.1\\3a6000@sip.localhost",
        );
        let reply = b.on_presence(&req, 1).unwrap();
        assert_eq!(reply.type_, Type::Subscribed);
        assert_eq!(
            reply.to.unwrap().to_string(),
            "w1\\40127.0.0.1\\3a6000@sip.localhost"
        );
        assert_eq!(b.approvals.load(Relaxed), 1);
    }

    #[test]
    fn contacts_establish_and_stamps_count() {
        let b = board();
        let c1 = format!("{}/bench", b.contact_jid(1));
        assert!(b
            .on_presence(&from(Presence::subscribed(), &c1), 10)
            .is_none());
        assert_eq!(b.established(), 0);
        let mut avail = from(Presence::available(), &c1);
        avail.set_status("", "online");
        b.on_presence(&avail, 20);
        assert_eq!(b.established(), 1);
        assert_eq!(b.last_established_us.load(Relaxed), 20);

        let rec = Arc::new(Recorder::new(4, 10));
        b.slot.set(rec.clone());
        let mut p = from(Presence::available(), &c1);
        p.set_status(
            "",
            Stamp {
                run: 4,
                seq: 7,
                sent_us: 5,
            }
            .encode(),
        );
        b.on_presence(&p, 30);
        assert_eq!(rec.delivered(), 1);
        assert_eq!(b.contacts[1].last.load(Relaxed), 4u64 << 32 | 8);
        // Another run's stamp is not counted.
        let mut stale = p.clone();
        stale.set_status(
            "",
            Stamp {
                run: 3,
                seq: 9,
                sent_us: 5,
            }
            .encode(),
        );
        b.on_presence(&stale, 40);
        assert_eq!(rec.delivered(), 1);
        assert_eq!(b.contacts[1].last.load(Relaxed), 4u64 << 32 | 8);
    }
}

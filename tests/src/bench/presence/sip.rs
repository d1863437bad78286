//! The benchmark's two SIP user agents, each one UDP socket acting as many SIP users:
//!
//! * [`Watchers`]: SIP users `w0..wN` on `127.0.0.1:PW` that watch XMPP users (RFC 3856):
//!   each sends one SUBSCRIBE (its own dialog: Call-ID `bw-K@pb`) and answers every NOTIFY
//!   `200` at once (RFC 6665 §4.1.3; a NOTIFY that times out would end the subscription). It
//!   records each watcher's `Subscription-State` and, for the fan-out runs, the PIDF note of
//!   every NOTIFY.
//! * [`Contacts`]: SIP contacts `c0..cM` on `127.0.0.1:PC` that XMPP users watch: stox
//!   SUBSCRIBEs to them; each SUBSCRIBE gets `200` (To tag, Contact, Expires) and a NOTIFY
//!   `active` with a PIDF body inside the new dialog (RFC 6665 §4.2.1). The bench later sends
//!   NOTIFYs into those dialogs at an offered rate ([`Contacts::notify`]).
//!
//! Neither retransmits (loopback loses a datagram only when a receive buffer is full, which
//! the kernel counts; see `procstat::udp_rcvbuf_errors`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::net::UdpSocket;

use super::wire::{self, Dialog, Msg};
use crate::bench::body::{now_us, Stamp};
use crate::bench::stats::{Recorder, Slot};

/// How long the bench asks for and grants (s): longer than any run, so no refresh happens.
pub const EXPIRES: u32 = 3600;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts by SIP status code.
#[derive(Debug, Default)]
pub struct Codes(Mutex<BTreeMap<u16, u64>>);

impl Codes {
    /// One more `code`.
    pub fn add(&self, code: u16) {
        *lock(&self.0).entry(code).or_insert(0) += 1;
    }

    /// The counts so far.
    pub fn get(&self) -> BTreeMap<u16, u64> {
        lock(&self.0).clone()
    }

    /// All codes together.
    pub fn total(&self) -> u64 {
        lock(&self.0).values().sum()
    }

    /// `200:N 503:N`, or `-`.
    pub fn text(&self) -> String {
        codes_text(&self.get())
    }
}

/// `200:N 503:N`, or `-`.
pub fn codes_text(codes: &BTreeMap<u16, u64>) -> String {
    if codes.is_empty() {
        return "-".to_string();
    }
    codes
        .iter()
        .map(|(c, n)| format!("{c}:{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A watcher's subscription as its NOTIFYs said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum SubState {
    /// No NOTIFY yet.
    None = 0,
    /// `pending`.
    Pending = 1,
    /// `active`.
    Active = 2,
    /// `terminated` (whatever the reason).
    Terminated = 3,
}

impl SubState {
    fn from_u8(v: u8) -> SubState {
        match v {
            1 => SubState::Pending,
            2 => SubState::Active,
            3 => SubState::Terminated,
            _ => SubState::None,
        }
    }

    /// The state of a `Subscription-State` value.
    pub fn parse(value: &str) -> SubState {
        let state = value.split(';').next().unwrap_or("").trim();
        if state.eq_ignore_ascii_case("active") {
            SubState::Active
        } else if state.eq_ignore_ascii_case("terminated") {
            SubState::Terminated
        } else {
            SubState::Pending
        }
    }
}

/// A fan-out run: which watchers count and what they should be told.
#[derive(Debug)]
pub struct Fanout {
    /// Arrivals: sequence number = watcher index − `first`.
    pub recorder: Arc<Recorder>,
    /// The first watcher of the range.
    pub first: usize,
    /// The `<show>` the new state carries.
    pub show: Option<&'static str>,
    /// NOTIFYs of this run whose PIDF did not carry `show`.
    pub wrong_show: AtomicU64,
    /// When the first NOTIFY of this run arrived (bench clock, µs; `u64::MAX`: none yet).
    pub first_arrival_us: AtomicU64,
}

impl Fanout {
    /// A run counting the NOTIFYs to watchers `range` that carry a stamp of `run`.
    pub fn new(run: u32, range: Range<usize>, show: Option<&'static str>) -> Fanout {
        let n = u32::try_from(range.len()).unwrap_or(u32::MAX);
        Fanout {
            recorder: Arc::new(Recorder::new(run, n)),
            first: range.start,
            show,
            wrong_show: AtomicU64::new(0),
            first_arrival_us: AtomicU64::new(u64::MAX),
        }
    }
}

/// What the watchers saw, over the whole bench.
#[derive(Debug, Default)]
pub struct WatcherCounters {
    /// Final responses to the SUBSCRIBEs.
    pub subscribe_responses: Codes,
    /// NOTIFYs received (all answered 200).
    pub notifies: AtomicU64,
    /// Watchers whose first NOTIFY said pending.
    pub pending: AtomicU64,
    /// Watchers that became active.
    pub active: AtomicU64,
    /// Watchers whose subscription was terminated.
    pub terminated: AtomicU64,
    /// When the last watcher became active (bench clock, µs).
    pub last_active_us: AtomicU64,
    /// Requests for no known watcher, and unparsable datagrams.
    pub other: AtomicU64,
}

/// The SIP watchers `w0..wN` (one socket).
#[derive(Debug)]
pub struct Watchers {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    states: Vec<AtomicU8>,
    /// The counters.
    pub counters: WatcherCounters,
    fanout: RwLock<Arc<Fanout>>,
}

impl Watchers {
    /// `count` watchers on `socket`.
    pub fn new(socket: Arc<UdpSocket>, count: usize) -> std::io::Result<Arc<Watchers>> {
        let local = socket.local_addr()?;
        Ok(Arc::new(Watchers {
            socket,
            local,
            states: (0..count).map(|_| AtomicU8::new(0)).collect(),
            counters: WatcherCounters::default(),
            fanout: RwLock::new(Arc::new(Fanout::new(0, 0..0, None))),
        }))
    }

    /// Where the watchers are.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Watcher `k`'s state.
    pub fn state(&self, k: usize) -> SubState {
        SubState::from_u8(self.states.get(k).map_or(0, |s| s.load(Relaxed)))
    }

    /// Makes `fanout` the run NOTIFYs count into.
    pub fn set_fanout(&self, fanout: Arc<Fanout>) {
        *self.fanout.write().unwrap_or_else(PoisonError::into_inner) = fanout;
    }

    fn fanout(&self) -> Arc<Fanout> {
        self.fanout
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends watcher `k`'s SUBSCRIBE to `sip:USER@DOMAIN` at `stox`.
    pub async fn subscribe(
        &self,
        k: usize,
        user: &str,
        domain: &str,
        stox: SocketAddr,
    ) -> std::io::Result<()> {
        let watcher = format!("w{k}");
        let call_id = format!("bw-{k}@pb");
        let branch = format!("bw-{k}");
        let req = wire::subscribe(
            self.local, &watcher, user, domain, &call_id, &branch, EXPIRES,
        );
        self.socket.send_to(req.as_bytes(), stox).await.map(|_| ())
    }

    /// Receives until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = self.socket.recv_from(&mut buf).await else {
                continue;
            };
            let at = now_us();
            let Some(msg) = wire::parse(&buf[..n]) else {
                self.counters.other.fetch_add(1, Relaxed);
                continue;
            };
            if let Some(code) = msg.status() {
                if code >= 200 && msg.cseq_method() == Some("SUBSCRIBE") {
                    self.counters.subscribe_responses.add(code);
                }
                continue;
            }
            let reply = self.on_request(&msg, at);
            let _ = self.socket.send_to(reply.as_bytes(), from).await;
        }
    }

    fn on_request(&self, msg: &Msg<'_>, at: u64) -> String {
        let k = msg
            .header("call-id")
            .and_then(|c| wire::index_after(c, "bw-"))
            .filter(|k| *k < self.states.len());
        let (Some("NOTIFY"), Some(k)) = (msg.method(), k) else {
            self.counters.other.fetch_add(1, Relaxed);
            return wire::response(msg, 481, "Call/Transaction Does Not Exist", "pb", &[]);
        };
        self.counters.notifies.fetch_add(1, Relaxed);
        let state = msg
            .header("subscription-state")
            .map_or(SubState::Pending, SubState::parse);
        let before = SubState::from_u8(self.states[k].swap(state as u8, Relaxed));
        let c = &self.counters;
        match state {
            SubState::Pending if before == SubState::None => {
                c.pending.fetch_add(1, Relaxed);
            }
            SubState::Active if before != SubState::Active => {
                c.active.fetch_add(1, Relaxed);
                c.last_active_us.fetch_max(at, Relaxed);
            }
            SubState::Terminated if before != SubState::Terminated => {
                c.terminated.fetch_add(1, Relaxed);
            }
            _ => {}
        }
        if state == SubState::Active {
            let pidf = wire::pidf_state(msg.body);
            let fanout = self.fanout();
            let seq = k.checked_sub(fanout.first);
            if let (Some(stamp), Some(seq)) = (pidf.note.and_then(Stamp::parse), seq) {
                let seq = u32::try_from(seq).unwrap_or(u32::MAX);
                let stamp = Stamp { seq, ..stamp };
                if stamp.run == fanout.recorder.run() {
                    fanout.first_arrival_us.fetch_min(at, Relaxed);
                    if fanout.show.is_some() && pidf.show != fanout.show {
                        fanout.wrong_show.fetch_add(1, Relaxed);
                    }
                }
                fanout.recorder.on_arrival(stamp, at);
            }
        }
        wire::response(msg, 200, "OK", "pb", &[])
    }
}

/// What the contacts saw, over the whole bench.
#[derive(Debug, Default)]
pub struct ContactCounters {
    /// SUBSCRIBEs that made a dialog.
    pub dialogs: AtomicU64,
    /// Initial SUBSCRIBEs for a contact that had a dialog already (stox started over).
    pub new_dialogs_again: AtomicU64,
    /// Retransmitted initial SUBSCRIBEs (same Call-ID).
    pub retransmissions: AtomicU64,
    /// SUBSCRIBEs inside a dialog (refresh; Expires: 0 ends it).
    pub refreshes: AtomicU64,
    /// Responses to the NOTIFYs sent outside benchmark runs (after a SUBSCRIBE).
    pub initial_notify_responses: Codes,
    /// Requests that were not for a contact, and unparsable datagrams.
    pub other: AtomicU64,
}

/// The SIP contacts `c0..cM` (one socket).
#[derive(Debug)]
pub struct Contacts {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    dialogs: Vec<Mutex<Option<Dialog>>>,
    /// The counters.
    pub counters: ContactCounters,
    /// The NOTIFY run in progress (responses count into it).
    pub slot: Slot,
}

impl Contacts {
    /// `count` contacts on `socket`.
    pub fn new(socket: Arc<UdpSocket>, count: usize) -> std::io::Result<Arc<Contacts>> {
        let local = socket.local_addr()?;
        Ok(Arc::new(Contacts {
            socket,
            local,
            dialogs: (0..count).map(|_| Mutex::new(None)).collect(),
            counters: ContactCounters::default(),
            slot: Slot::default(),
        }))
    }

    /// Where the contacts are.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.dialogs.len()
    }

    /// Contacts that have a dialog with stox.
    pub fn established(&self) -> usize {
        self.dialogs.iter().filter(|d| lock(d).is_some()).count()
    }

    fn pidf(&self, j: usize, note: &str) -> String {
        wire::pidf(&format!("sip:c{j}@{}", self.local), "bench", true, note)
    }

    /// Sends NOTIFY `seq` of `recorder`'s run into contact `j`'s dialog (`false`: no dialog).
    pub async fn notify(&self, j: usize, recorder: &Recorder, seq: u32, stox: SocketAddr) -> bool {
        let at = now_us();
        let note = Stamp {
            run: recorder.run(),
            seq,
            sent_us: at,
        }
        .encode();
        let body = self.pidf(j, &note);
        let branch = format!("cn-{}-{seq}", recorder.run());
        let request = {
            let Some(slot) = self.dialogs.get(j) else {
                return false;
            };
            let mut dialog = lock(slot);
            let Some(d) = dialog.as_mut() else {
                return false;
            };
            wire::notify(
                self.local,
                d,
                &branch,
                &format!("active;expires={EXPIRES}"),
                Some(&body),
            )
        };
        match self.socket.send_to(request.as_bytes(), stox).await {
            Ok(_) => recorder.on_sent(at),
            Err(_) => recorder.on_send_failed(),
        }
        true
    }

    /// Receives until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = self.socket.recv_from(&mut buf).await else {
                continue;
            };
            let Some(msg) = wire::parse(&buf[..n]) else {
                self.counters.other.fetch_add(1, Relaxed);
                continue;
            };
            if let Some(code) = msg.status() {
                self.on_response(&msg, code);
                continue;
            }
            for datagram in self.on_request(&msg) {
                let _ = self.socket.send_to(datagram.as_bytes(), from).await;
            }
        }
    }

    fn on_response(&self, msg: &Msg<'_>, code: u16) {
        if code < 200 || msg.cseq_method() != Some("NOTIFY") {
            return;
        }
        let branch = msg.branch().unwrap_or("");
        if let Some(rest) = branch.strip_prefix("z9hG4bK-cn-") {
            let run: Option<u32> = rest.split('-').next().and_then(|r| r.parse().ok());
            let recorder = self.slot.get();
            if run == Some(recorder.run()) {
                recorder.on_response(code);
            }
        } else {
            self.counters.initial_notify_responses.add(code);
        }
    }

    /// The datagrams answering `msg` (a request from stox).
    fn on_request(&self, msg: &Msg<'_>) -> Vec<String> {
        let j = msg
            .request_uri()
            .and_then(wire::user_of)
            .and_then(|u| wire::index_after(u, "c"))
            .filter(|j| *j < self.dialogs.len());
        let (Some("SUBSCRIBE"), Some(j)) = (msg.method(), j) else {
            self.counters.other.fetch_add(1, Relaxed);
            return vec![wire::response(
                msg,
                481,
                "Call/Transaction Does Not Exist",
                "pb",
                &[],
            )];
        };
        let (Some(call_id), Some(stox_from), Some(stox_contact)) = (
            msg.header("call-id"),
            msg.header("from"),
            msg.header("contact").map(wire::uri_of),
        ) else {
            return vec![wire::response(msg, 400, "Bad Request", "pb", &[])];
        };
        let expires: u32 = msg
            .header("expires")
            .and_then(|e| e.parse().ok())
            .unwrap_or(EXPIRES);
        let tag = format!("ct{j}");
        let contact_uri = format!("sip:c{j}@{}", self.local);
        let contact_hdr = format!("<{contact_uri}>");
        let expires_text = expires.to_string();
        let ok = wire::response(
            msg,
            200,
            "OK",
            &tag,
            &[("Contact", &contact_hdr), ("Expires", &expires_text)],
        );
        let in_dialog = msg.header("to").and_then(wire::tag_of).is_some();
        let mut slot = lock(&self.dialogs[j]);
        let c = &self.counters;
        match slot.as_mut() {
            Some(d) if d.call_id == call_id => {
                if in_dialog {
                    c.refreshes.fetch_add(1, Relaxed);
                    d.target = stox_contact.to_owned();
                } else {
                    // Our 200 was lost or late: the same answer, no second NOTIFY.
                    c.retransmissions.fetch_add(1, Relaxed);
                    return vec![ok];
                }
            }
            Some(_) if in_dialog => {
                return vec![wire::response(
                    msg,
                    481,
                    "Call/Transaction Does Not Exist",
                    &tag,
                    &[],
                )];
            }
            existing => {
                if existing.is_some() {
                    c.new_dialogs_again.fetch_add(1, Relaxed);
                } else {
                    c.dialogs.fetch_add(1, Relaxed);
                }
                *slot = Some(Dialog {
                    call_id: call_id.to_owned(),
                    local: format!("<{contact_uri}>;tag={tag}"),
                    remote: stox_from.to_owned(),
                    target: stox_contact.to_owned(),
                    contact: contact_uri.clone(),
                    cseq: 0,
                });
            }
        }
        let Some(d) = slot.as_mut() else {
            return vec![ok];
        };
        // RFC 6665 §4.2.1: a NOTIFY follows every accepted SUBSCRIBE; Expires: 0 ends it.
        let branch = format!("ci-{j}-{}", d.cseq + 1);
        let notify = if expires == 0 {
            let n = wire::notify(self.local, d, &branch, "terminated;reason=timeout", None);
            *slot = None;
            n
        } else {
            let body = self.pidf(j, "online");
            wire::notify(
                self.local,
                d,
                &branch,
                &format!("active;expires={expires}"),
                Some(&body),
            )
        };
        vec![ok, notify]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::sip::bind;
    use std::time::Duration;

    async fn socket() -> Arc<UdpSocket> {
        Arc::new(bind("127.0.0.1:0".parse().unwrap()).await.unwrap())
    }

    async fn recv(s: &UdpSocket) -> String {
        let mut buf = vec![0u8; 65536];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
            .await
            .expect("a datagram")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn subscription_states() {
        assert_eq!(SubState::parse("active;expires=3600"), SubState::Active);
        assert_eq!(
            SubState::parse("Terminated;reason=timeout"),
            SubState::Terminated
        );
        assert_eq!(SubState::parse("pending"), SubState::Pending);
        assert_eq!(SubState::parse("bogus"), SubState::Pending);
    }

    /// stox's side played by hand: SUBSCRIBE to a contact, 200 + NOTIFY back; then a bench
    /// NOTIFY in the dialog; a watcher's SUBSCRIBE, a NOTIFY to it answered 200 and counted.
    #[tokio::test]
    async fn contacts_answer_and_notify_watchers_count() {
        let stox = socket().await;
        let stox_addr = stox.local_addr().unwrap();
        let contacts = Contacts::new(socket().await, 3).unwrap();
        let contacts_addr = contacts.local();
        let task = tokio::spawn(contacts.clone().run());
        let sub = format!(
            "SUBSCRIBE sip:c2@{contacts_addr} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {stox_addr};branch=z9hG4bKsx1\r\n\
             From: <sip:wat1@localhost>;tag=st1\r\nTo: <sip:c2@{contacts_addr}>\r\n\
             Call-ID: 9@stox\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:stox@{stox_addr}>\r\n\
             Event: presence\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
        );
        stox.send_to(sub.as_bytes(), contacts_addr).await.unwrap();
        let ok = recv(&stox).await;
        assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains(&format!("To: <sip:c2@{contacts_addr}>;tag=ct2\r\n")),
            "{ok}"
        );
        assert!(
            ok.contains(&format!("Contact: <sip:c2@{contacts_addr}>\r\n")),
            "{ok}"
        );
        let n = recv(&stox).await;
        let m = wire::parse(n.as_bytes()).unwrap();
        assert_eq!(
            m.request_uri(),
            Some(format!("sip:stox@{stox_addr}").as_str())
        );
        assert_eq!(m.header("to"), Some("<sip:wat1@localhost>;tag=st1"));
        assert_eq!(m.header("call-id"), Some("9@stox"));
        assert_eq!(m.header("subscription-state"), Some("active;expires=3600"));
        assert_eq!(wire::pidf_state(m.body).note, Some("online"));
        assert_eq!(contacts.established(), 1);

        let rec = Arc::new(Recorder::new(5, 1));
        contacts.slot.set(rec.clone());
        assert!(!contacts.notify(0, &rec, 0, stox_addr).await);
        assert!(contacts.notify(2, &rec, 0, stox_addr).await);
        let n = recv(&stox).await;
        let m = wire::parse(n.as_bytes()).unwrap();
        assert_eq!(m.header("cseq"), Some("2 NOTIFY"));
        let note = wire::pidf_state(m.body)
            .note
            .and_then(Stamp::parse)
            .unwrap();
        assert_eq!((note.run, note.seq), (5, 0));
        let answer = wire::response(&m, 200, "OK", "x", &[]);
        stox.send_to(answer.as_bytes(), contacts_addr)
            .await
            .unwrap();
        for _ in 0..200 {
            if rec.responses() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(rec.summary().responses.get(&200), Some(&1));
        task.abort();

        let watchers = Watchers::new(socket().await, 4).unwrap();
        let task = tokio::spawn(watchers.clone().run());
        watchers
            .subscribe(3, "pres1", "localhost", stox_addr)
            .await
            .unwrap();
        let s = recv(&stox).await;
        let m = wire::parse(s.as_bytes()).unwrap();
        assert_eq!(m.request_uri(), Some("sip:pres1@localhost"));
        let fanout = Arc::new(Fanout::new(8, 2..4, Some("away")));
        watchers.set_fanout(fanout.clone());
        let body = "<presence><tuple id='a'><status><basic>open</basic><show>away</show></status><note>stoxbench 8 0 1</note></tuple></presence>";
        let notify = format!(
            "NOTIFY sip:w3@{} SIP/2.0\r\nVia: SIP/2.0/UDP {stox_addr};branch=z9hG4bKn\r\n\
             From: <sip:pres1@localhost>;tag=s\r\nTo: <sip:w3@{}>;tag=t-w3\r\n\
             Call-ID: bw-3@pb\r\nCSeq: 1 NOTIFY\r\nSubscription-State: active;expires=3599\r\n\
             Content-Length: {}\r\n\r\n{body}",
            watchers.local(),
            watchers.local(),
            body.len()
        );
        stox.send_to(notify.as_bytes(), watchers.local())
            .await
            .unwrap();
        let ok = recv(&stox).await;
        assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Call-ID: bw-3@pb\r\n"), "{ok}");
        assert_eq!(watchers.state(3), SubState::Active);
        assert_eq!(watchers.counters.active.load(Relaxed), 1);
        assert_eq!(fanout.recorder.delivered(), 1);
        assert_eq!(fanout.wrong_show.load(Relaxed), 0);
        task.abort();
    }
}

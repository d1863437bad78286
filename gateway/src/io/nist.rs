//! RFC 3261 §17.2.2 and §17.1.2: non-INVITE server and client transactions
//! for out-of-dialog MESSAGE over UDP, in front of `rsipstack`.
//!
//! # Server transactions
//!
//! Through `rsipstack` every MESSAGE costs a second parse, a transaction object
//! with its own channel, a tokio task waiting for the core's answer and a
//! clone of all request headers for the response: about half of stox's CPU per
//! message. The [`GuardedUdp`](super::badsip::GuardedUdp) guard parses every
//! datagram anyway, so for the commonest request it runs the transaction
//! itself:
//!
//! * **Which requests.** `MESSAGE` with an RFC 3261 branch (`z9hG4bK`), a From
//!   tag and no To tag (out of dialog). Everything else (other methods,
//!   in-dialog requests, TCP) goes to `rsipstack` as before.
//! * **Matching** (§17.2.3): `rsipstack`'s own [`TransactionKey`] (method, CSeq,
//!   Call-ID, From tag, branch), kept as a 128-bit keyed hash.
//! * **Trying**: retransmissions are absorbed (no provisional response is sent,
//!   as through `rsipstack`). The request goes to the core once.
//! * **Completed**: the final response is sent to the Via's `received`/`rport`
//!   address (§18.2.2, RFC 3581) and a retransmission of the request gets it
//!   again, until Timer J (64·T1, 32 s with the default T1) expires. Only the code, the extra
//!   headers and the key are kept: the response is rebuilt from the
//!   retransmitted request, whose Via, From, To, Call-ID and CSeq are the
//!   same, and the To tag is a keyed hash of the transaction key, so the same
//!   bytes go out again.
//! * **Overload** (RFC 3261 §21.5.4): past `max_pending` requests awaiting the
//!   core, `503` with `Retry-After: 1` at once, as the `rsipstack` path does.
//!
//! The response is the one `rsipstack` would send (its `make_response`): the
//! request's Via (with `received`/`rport`), From, To (tag added), Call-ID,
//! CSeq, then `Content-Length`, `User-Agent` and the core's headers.
//!
//! # Client transactions
//!
//! A MESSAGE stox sends over UDP to an IP address (the outbound proxy or a
//! numeric Request-URI host) is written as text once and sent as is, instead
//! of text → `rsipstack` request → text plus a transaction task per request.
//! The request is the one `send_request` builds, with a branch that starts
//! with [`CLIENT_BRANCH`] so that responses are recognised without a lookup
//! elsewhere. §17.1.2.2: Timer E retransmits after T1, doubling up to T2 (at
//! T2 once a provisional response came), Timer F (64·T1) ends the transaction
//! with a timeout; the first final response ends it (a retransmitted response
//! after that is dropped: no ACK for non-INVITE, so Timer K keeps nothing).
//! Other destinations (names to resolve, TCP) use `rsipstack` as before.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, Request, Response, SipMessage, StatusCode};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transport::SipConnection;
use tracing::debug;

use crate::core::{SendFailure, TxId};
use crate::sipmsg::{OutRequest, SipRequest, SipResponse, Transport};

/// T1, the RTT estimate (RFC 3261 §17.1.1.1), by default (`[sip] t1_ms`).
#[cfg(test)]
const T1: Duration = Duration::from_millis(500);
/// T2, the longest retransmission interval of a non-INVITE request.
const T2: Duration = Duration::from_secs(4);
/// How often the retransmission timers are looked at while requests are out.
const TICK: Duration = Duration::from_millis(50);
/// The branch of every client transaction of this module starts with this
/// (RFC 3261 magic cookie + `sx`); the hex after it is the transaction's key.
pub const CLIENT_BRANCH: &str = "z9hG4bKsx";

/// Most transactions remembered at once; past it the oldest are forgotten
/// early (a very late retransmission of one is then taken as a new request).
/// About 100 bytes each.
const MAX_REMEMBERED: usize = 1 << 20;

/// What the table hands to the core.
pub enum ToCore {
    /// A new request.
    Request(Incoming),
    /// The outcome of a client transaction started with [`Table::send_request`].
    Response(TxId, Result<SipResponse, SendFailure>),
}

/// A new request for the core, and what answering it needs.
pub struct Incoming {
    /// The request as the core sees it.
    pub req: SipRequest,
    /// Pass to [`Pending::reply`] with the core's answer.
    pub pending: Pending,
}

/// A transaction waiting for the core's final response.
pub struct Pending {
    table: Arc<Table>,
    key: u128,
    /// The response headers copied from the request (To tag added).
    copied: Vec<Header>,
    dest: SocketAddr,
}

impl Pending {
    /// Sends the final response and moves the transaction to Completed.
    pub fn reply(self, code: u16, headers: Vec<(String, String)>) {
        let bytes = self.table.response(self.copied, code, &headers);
        {
            let mut state = self.table.lock();
            let expires = Instant::now() + self.table.timer_j();
            state.txs.insert(
                self.key,
                Entry {
                    expires,
                    state: TxState::Completed {
                        code,
                        headers: (!headers.is_empty()).then(|| headers.into_boxed_slice()),
                    },
                },
            );
            state.expiry.push_back((expires, self.key));
        }
        self.table.outstanding.fetch_sub(1, Ordering::Relaxed);
        self.table.send(bytes, self.dest);
    }
}

enum TxState {
    Trying,
    Completed {
        code: u16,
        headers: Option<Box<[(String, String)]>>,
    },
}

struct Entry {
    expires: Instant,
    state: TxState,
}

#[derive(Default)]
struct State {
    txs: HashMap<u128, Entry>,
    /// (expiry, key) in the order pushed, hence by expiry.
    expiry: VecDeque<(Instant, u128)>,
    /// Client transactions by the key in their branch.
    clients: HashMap<u64, ClientTx>,
    /// (when to look at it again, key); stale items are skipped.
    client_timers: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, u64)>>,
    next_client: u64,
}

struct ClientTx {
    tx: TxId,
    branch: String,
    bytes: Arc<[u8]>,
    dest: SocketAddr,
    /// Next Timer E firing, and its current interval.
    next: Instant,
    interval: Duration,
    /// Timer F.
    deadline: Instant,
}

/// What [`Table::offer`] did with a datagram.
pub enum Offer {
    /// Handled here (new request delivered, retransmission absorbed or answered).
    Taken,
    /// Not for the fast path: give it to `rsipstack`.
    NotMine,
}

/// The transaction table of one UDP socket.
pub struct Table {
    socket: Arc<tokio::net::UdpSocket>,
    user_agent: String,
    deliver: Box<dyn Fn(ToCore) -> bool + Send + Sync>,
    /// Wakes the timer task when the first client transaction starts.
    timer_wake: Arc<tokio::sync::Notify>,
    outstanding: Arc<AtomicUsize>,
    max_pending: usize,
    /// T1 (`[sip] t1_ms`): Timer E starts at T1; Timers F and J are 64·T1.
    t1: Duration,
    keys: (RandomState, RandomState),
    state: Mutex<State>,
}

impl Table {
    /// A table answering through `socket`; `deliver` hands new requests to the
    /// core (false: the core is gone). `outstanding` counts requests awaiting
    /// the core, shared with the `rsipstack` path. `t1` is RFC 3261's T1.
    ///
    /// Spawns the task of the client transactions' timers (on the current
    /// tokio runtime); it ends when the table is dropped.
    pub fn new(
        socket: Arc<tokio::net::UdpSocket>,
        user_agent: impl Into<String>,
        outstanding: Arc<AtomicUsize>,
        max_pending: usize,
        t1: Duration,
        deliver: impl Fn(ToCore) -> bool + Send + Sync + 'static,
    ) -> Arc<Table> {
        let table = Arc::new(Table {
            socket,
            user_agent: user_agent.into(),
            deliver: Box::new(deliver),
            timer_wake: Arc::new(tokio::sync::Notify::new()),
            outstanding,
            max_pending,
            t1,
            keys: (RandomState::new(), RandomState::new()),
            state: Mutex::new(State::default()),
        });
        tokio::spawn(client_timers(
            Arc::downgrade(&table),
            table.timer_wake.clone(),
        ));
        table
    }

    /// Timer J for unreliable transports: 64·T1 (RFC 3261 §17.2.2, Table 4); the same
    /// span is Timer F of a client (§17.1.2.2).
    fn timer_j(&self) -> Duration {
        self.t1 * 64
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Handles `msg` (parsed from a datagram from `src`) if it is an
    /// out-of-dialog MESSAGE with an RFC 3261 branch.
    pub fn offer(self: &Arc<Self>, msg: SipMessage, src: SocketAddr) -> Offer {
        let req = match msg {
            SipMessage::Request(req) => req,
            SipMessage::Response(resp) => return self.on_response(&resp),
        };
        if req.method != Method::Message {
            return Offer::NotMine;
        }
        let Some((key, tag)) = self.key_of(&req) else {
            return Offer::NotMine;
        };
        let mut req = match SipConnection::update_msg_received(
            req.into(),
            src,
            rsipstack::sip::transport::Transport::Udp,
        ) {
            Ok(SipMessage::Request(req)) => req,
            _ => return Offer::NotMine,
        };
        let Some((copied, dest)) = copied_headers(&req, &tag, src) else {
            return Offer::NotMine;
        };
        let now = Instant::now();
        let mut state = self.lock();
        expire(&mut state, now);
        match state.txs.get(&key).map(|e| &e.state) {
            Some(TxState::Trying) => return Offer::Taken,
            Some(TxState::Completed { code, headers }) => {
                let (code, headers) = (*code, headers.as_deref().unwrap_or(&[]).to_vec());
                drop(state);
                debug!(%src, code, "MESSAGE retransmission: resending the final response");
                let bytes = self.response(copied, code, &headers);
                self.send(bytes, dest);
                return Offer::Taken;
            }
            None => {}
        }
        if self.outstanding.load(Ordering::Relaxed) >= self.max_pending {
            metrics::counter!("stox_sip_overload_rejected_total").increment(1);
            let headers = vec![("Retry-After".to_string(), "1".to_string())];
            let expires = now + self.timer_j();
            state.txs.insert(
                key,
                Entry {
                    expires,
                    state: TxState::Completed {
                        code: 503,
                        headers: Some(headers.clone().into_boxed_slice()),
                    },
                },
            );
            state.expiry.push_back((expires, key));
            drop(state);
            let bytes = self.response(copied, 503, &headers);
            self.send(bytes, dest);
            return Offer::Taken;
        }
        // Timer F of the sender: after 64·T1 it has given up.
        let expires = now + self.timer_j();
        state.txs.insert(
            key,
            Entry {
                expires,
                state: TxState::Trying,
            },
        );
        state.expiry.push_back((expires, key));
        drop(state);
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        let body = std::mem::take(&mut req.body);
        let value = super::sip_request(&req, body, Transport::Udp);
        let pending = Pending {
            table: self.clone(),
            key,
            copied,
            dest,
        };
        if !(self.deliver)(ToCore::Request(Incoming {
            req: value,
            pending,
        })) {
            self.outstanding.fetch_sub(1, Ordering::Relaxed);
            self.lock().txs.remove(&key);
        }
        Offer::Taken
    }

    /// The transaction key (as a 128-bit keyed hash) and the To tag of a
    /// fast-path request; `None` for any other request.
    fn key_of(&self, req: &Request) -> Option<(u128, String)> {
        let branch_ok = req
            .top_via_header()
            .ok()
            .and_then(|v| top_via_branch(v.value()).map(|b| b.starts_with("z9hG4bK")))
            .unwrap_or(false);
        if !branch_ok || req.to_header().ok()?.tag().ok()?.is_some() {
            return None;
        }
        let key = TransactionKey::from_request(req, TransactionRole::Server).ok()?;
        let (a, b) = (self.keys.0.hash_one(&key), self.keys.1.hash_one(&key));
        Some(((u128::from(a) << 64) | u128::from(b), format!("{b:016x}")))
    }

    fn response(&self, mut headers: Vec<Header>, code: u16, extra: &[(String, String)]) -> Vec<u8> {
        headers.push(Header::ContentLength(0u32.into()));
        headers.push(Header::UserAgent(self.user_agent.clone().into()));
        headers.extend(
            extra
                .iter()
                .map(|(n, v)| Header::Other(n.clone(), v.clone())),
        );
        let status: StatusCode = code.into();
        Response {
            status_code: status,
            wire_reason: None,
            version: rsipstack::sip::Version::V2,
            headers: headers.into(),
            body: Vec::new(),
        }
        .to_bytes()
    }

    fn send(&self, bytes: Vec<u8>, dest: SocketAddr) {
        match self.socket.try_send_to(&bytes, dest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let socket = self.socket.clone();
                tokio::spawn(async move {
                    if let Err(e) = socket.send_to(&bytes, dest).await {
                        debug!(error = %e, %dest, "sending a SIP response failed");
                    }
                });
            }
            Err(e) => debug!(error = %e, %dest, "sending a SIP response failed"),
        }
    }

    /// Starts a client transaction for `req` (any non-INVITE request: MESSAGE,
    /// SUBSCRIBE, NOTIFY) over UDP from `local` if its next hop (the first Route of its
    /// dialog, else `proxy`, else the Request-URI's host) is an IP address; gives `req`
    /// back otherwise. The outcome comes as [`ToCore::Response`].
    pub fn send_request(
        self: &Arc<Self>,
        tx: TxId,
        req: OutRequest,
        local: SocketAddr,
        proxy: Option<SocketAddr>,
    ) -> Option<OutRequest> {
        if matches!(req.method.as_str(), "INVITE" | "ACK" | "CANCEL") {
            return Some(req);
        }
        let ip_of = |uri: &str| super::ip_hop(uri, 5060);
        // RFC 3261 §12.2.1.1: a dialog's route set decides the next hop.
        let first_route = req.dialog.as_ref().and_then(|d| d.route.first());
        let next_hop = match req.next_hop.as_deref() {
            Some(h) => match ip_of(h) {
                Some(d) => Some(d),
                None => return Some(req),
            },
            None => proxy,
        };
        let dest = match (first_route, next_hop) {
            (Some(r), _) => match ip_of(crate::sipmsg::uri_of_name_addr(r)) {
                Some(d) => d,
                None => return Some(req),
            },
            (None, Some(p)) => p,
            (None, None) => match ip_of(&req.uri) {
                Some(d) => d,
                None => return Some(req),
            },
        };
        let now = Instant::now();
        let mut state = self.lock();
        let key = state.next_client;
        state.next_client += 1;
        let branch = format!("{CLIENT_BRANCH}{key:x}x{}", random_hex());
        let bytes: Arc<[u8]> = request_bytes(&req, local, &branch).into();
        state.clients.insert(
            key,
            ClientTx {
                tx,
                branch,
                bytes: bytes.clone(),
                dest,
                next: now + self.t1,
                interval: self.t1,
                deadline: now + self.timer_j(),
            },
        );
        state
            .client_timers
            .push(std::cmp::Reverse((now + self.t1, key)));
        let first = state.clients.len() == 1;
        drop(state);
        if first {
            self.timer_wake.notify_one();
        }
        if let Err(e) = self.send_now(&bytes, dest) {
            self.lock().clients.remove(&key);
            let failure = SendFailure::Transport(format!("sending to {dest}: {e}"));
            (self.deliver)(ToCore::Response(tx, Err(failure)));
        }
        None
    }

    /// A response to one of our client transactions ends it (final) or slows
    /// its retransmissions (provisional); other responses go to `rsipstack`.
    fn on_response(&self, resp: &Response) -> Offer {
        let Some(branch) = resp
            .via_header()
            .ok()
            .and_then(|v| top_via_branch(v.value()))
        else {
            return Offer::NotMine;
        };
        let Some(key) = branch
            .strip_prefix(CLIENT_BRANCH)
            .and_then(|rest| rest.split('x').next())
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        else {
            return Offer::NotMine;
        };
        let code = resp.status_code.code();
        let mut state = self.lock();
        let Some(client) = state.clients.get_mut(&key) else {
            // Late or retransmitted: the transaction already ended.
            return Offer::Taken;
        };
        if client.branch != branch {
            return Offer::Taken;
        }
        if code < 200 {
            // §17.1.2.2 Proceeding: retransmit at T2 from now on.
            client.interval = T2;
            return Offer::Taken;
        }
        let tx = client.tx;
        state.clients.remove(&key);
        drop(state);
        let reason = resp
            .wire_reason
            .clone()
            .unwrap_or_else(|| resp.status_code.to_string());
        // What a SUBSCRIBE's or REGISTER's answer tells (To tag, Contact, Expires,
        // Record-Route, Min-Expires, a Digest challenge...); a MESSAGE's caller reads only
        // the code, or the challenge of an external account's provider.
        let headers = if code < 300 || matches!(code, 401 | 407 | 423) {
            resp.headers
                .iter()
                .filter(|h| !matches!(h, Header::Via(_) | Header::ContentLength(_)))
                .map(|h| (h.name().to_string(), h.value().to_string()))
                .collect()
        } else {
            Vec::new()
        };
        (self.deliver)(ToCore::Response(
            tx,
            Ok(SipResponse {
                code,
                reason,
                headers,
            }),
        ));
        Offer::Taken
    }

    /// One pass of Timer E and Timer F; true while client transactions remain.
    fn fire_client_timers(&self, now: Instant) -> bool {
        let mut resend = Vec::new();
        let mut timed_out = Vec::new();
        let mut state = self.lock();
        while let Some(&std::cmp::Reverse((at, key))) = state.client_timers.peek() {
            if at > now {
                break;
            }
            state.client_timers.pop();
            let Some(client) = state.clients.get_mut(&key) else {
                continue;
            };
            if client.next != at {
                continue; // stale timer entry
            }
            if now >= client.deadline {
                timed_out.push(client.tx);
                state.clients.remove(&key);
                continue;
            }
            resend.push((client.bytes.clone(), client.dest));
            client.next = (now + client.interval).min(client.deadline);
            client.interval = (client.interval * 2).min(T2);
            let next = client.next;
            state.client_timers.push(std::cmp::Reverse((next, key)));
        }
        let busy = !state.clients.is_empty();
        drop(state);
        for (bytes, dest) in resend {
            let _ = self.send_now(&bytes, dest);
        }
        for tx in timed_out {
            (self.deliver)(ToCore::Response(tx, Err(SendFailure::Timeout)));
        }
        busy
    }

    /// Sends now, or from a task when the socket buffer is full.
    fn send_now(&self, bytes: &Arc<[u8]>, dest: SocketAddr) -> std::io::Result<()> {
        match self.socket.try_send_to(bytes, dest) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let socket = self.socket.clone();
                let bytes = bytes.clone();
                tokio::spawn(async move {
                    if let Err(e) = socket.send_to(&bytes, dest).await {
                        debug!(error = %e, %dest, "sending a SIP request failed");
                    }
                });
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Transactions remembered (Trying and Completed), for tests.
    pub fn len(&self) -> usize {
        self.lock().txs.len()
    }

    /// True when no transaction is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs the client transactions' timers while there are any.
async fn client_timers(table: std::sync::Weak<Table>, wake: Arc<tokio::sync::Notify>) {
    loop {
        let Some(t) = table.upgrade() else { return };
        let idle = t.lock().clients.is_empty();
        drop(t);
        if idle {
            // Wait for the first client transaction; `Notify` keeps a permit
            // if it was signalled before this wait.
            wake.notified().await;
            continue;
        }
        tokio::time::sleep(TICK).await;
        let Some(t) = table.upgrade() else { return };
        t.fire_client_timers(Instant::now());
    }
}

/// The branch parameter of the first Via value (RFC 3261 §20.42), by text.
fn top_via_branch(via: &str) -> Option<&str> {
    let first = via.split(',').next()?;
    first.split(';').skip(1).find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("branch")
            .then(|| value.trim())
    })
}

fn random_hex() -> String {
    let s = uuid::Uuid::new_v4().simple().to_string();
    s[..12].to_string()
}

/// The request `send_request` in `io` builds, as bytes.
fn request_bytes(req: &OutRequest, local: SocketAddr, branch: &str) -> Vec<u8> {
    use std::fmt::Write;
    let call_id = req
        .call_id
        .clone()
        .unwrap_or_else(|| format!("{}@stox", uuid::Uuid::new_v4().simple()));
    let random = random_hex();
    let (tag, to_tag, cseq) = match &req.dialog {
        Some(d) => (d.from_tag.as_str(), d.to_tag.as_deref(), d.cseq),
        None => (&random[..10], None, 1),
    };
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let mut text = String::with_capacity(512 + req.body.len());
    let _ = write!(
        text,
        "{m} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nFrom: {from};tag={tag}\r\nTo: <{to}>{to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {m}\r\n",
        m = req.method,
        uri = req.uri,
        from = req.from_name_addr(),
        to = req.to,
    );
    for r in req.dialog.iter().flat_map(|d| d.route.iter()) {
        let r = r.trim();
        if r.starts_with('<') {
            let _ = write!(text, "Route: {r}\r\n");
        } else {
            let _ = write!(text, "Route: <{r}>\r\n");
        }
    }
    for (n, v) in &req.headers {
        let _ = write!(text, "{n}: {v}\r\n");
    }
    if let Some(ct) = &req.content_type {
        let _ = write!(text, "Content-Type: {ct}\r\n");
    }
    let _ = write!(text, "Content-Length: {}\r\n\r\n", req.body.len());
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(&req.body);
    bytes
}

/// Forgets transactions whose Timer J (or the sender's Timer F) has fired, and
/// the oldest beyond [`MAX_REMEMBERED`].
fn expire(state: &mut State, now: Instant) {
    while let Some(&(at, key)) = state.expiry.front() {
        if at > now && state.txs.len() <= MAX_REMEMBERED {
            break;
        }
        state.expiry.pop_front();
        if let Some(entry) = state.txs.get(&key) {
            if entry.expires <= at {
                state.txs.remove(&key);
            }
        }
    }
}

/// `make_response` after `reply_with` of `rsipstack`: Via, From, Call-ID and
/// CSeq in the request's order, then To with `tag`; and where the response
/// goes (§18.2.2).
fn copied_headers(req: &Request, tag: &str, src: SocketAddr) -> Option<(Vec<Header>, SocketAddr)> {
    let mut copied = Vec::with_capacity(6);
    let mut to_tagged = None;
    for h in req.headers.iter() {
        match h {
            Header::Via(_) | Header::CallId(_) | Header::From(_) | Header::CSeq(_) => {
                copied.push(h.clone())
            }
            // `reply_with` re-pushes the tagged To at the end (`unique_push`).
            Header::To(to) => to_tagged = Some(Header::To(to.with_tag(tag.to_string().into()))),
            _ => {}
        }
    }
    copied.push(to_tagged?);
    let dest = SipConnection::parse_target_from_via(req.via_header().ok()?)
        .ok()
        .and_then(|(_, hp)| SocketAddr::try_from(hp).ok())
        .unwrap_or(src);
    Some((copied, dest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc as std_mpsc;

    const REQ: &str = "MESSAGE sip:user1@localhost SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{PORT};branch=z9hG4bK{BRANCH};rport\r\nMax-Forwards: 70\r\nFrom: <sip:carol@127.0.0.1>;tag=f1\r\nTo: <sip:user1@localhost>\r\nCall-ID: c-{BRANCH}\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";

    fn request(port: u16, branch: &str) -> SipMessage {
        let text = REQ
            .replace("{PORT}", &port.to_string())
            .replace("{BRANCH}", branch);
        SipMessage::try_from(text.as_bytes()).expect("parses")
    }

    async fn setup(
        max_pending: usize,
    ) -> (
        Arc<Table>,
        tokio::net::UdpSocket,
        std_mpsc::Receiver<Incoming>,
        Arc<AtomicUsize>,
    ) {
        let server = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        );
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let (tx, rx) = std_mpsc::channel();
        let tx = Mutex::new(tx);
        let outstanding = Arc::new(AtomicUsize::new(0));
        let table = Table::new(
            server,
            "stox/test",
            outstanding.clone(),
            max_pending,
            T1,
            move |m| match m {
                ToCore::Request(i) => tx.lock().expect("lock").send(i).is_ok(),
                ToCore::Response(..) => true,
            },
        );
        (table, client, rx, outstanding)
    }

    async fn recv(client: &tokio::net::UdpSocket) -> String {
        let mut buf = vec![0u8; 4096];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .expect("a response in time")
            .expect("recv");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn one_delivery_retransmissions_absorbed_then_answered_again() {
        let (table, client, rx, outstanding) = setup(10).await;
        let port = client.local_addr().expect("addr").port();
        let src = client.local_addr().expect("addr");
        assert!(matches!(
            table.offer(request(port, "a1"), src),
            Offer::Taken
        ));
        // Trying: a retransmission is absorbed, nothing more reaches the core.
        assert!(matches!(
            table.offer(request(port, "a1"), src),
            Offer::Taken
        ));
        let first = rx.try_recv().expect("delivered once");
        assert!(rx.try_recv().is_err(), "delivered twice");
        assert_eq!(first.req.method, "MESSAGE");
        assert_eq!(first.req.body, b"hi");
        assert_eq!(first.req.transport, Transport::Udp);
        assert_eq!(outstanding.load(Ordering::Relaxed), 1);

        first.pending.reply(200, vec![]);
        assert_eq!(outstanding.load(Ordering::Relaxed), 0);
        let resp = recv(&client).await;
        assert!(resp.starts_with("SIP/2.0 200 OK\r\n"), "{resp}");
        assert!(
            resp.contains(&format!(
                "Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKa1;rport={port}\r\n"
            )),
            "{resp}"
        );
        assert!(
            resp.contains("From: <sip:carol@127.0.0.1>;tag=f1\r\n"),
            "{resp}"
        );
        assert!(resp.contains("To: <sip:user1@localhost>;tag="), "{resp}");
        assert!(resp.contains("Call-ID: c-a1\r\n"), "{resp}");
        assert!(resp.contains("CSeq: 1 MESSAGE\r\n"), "{resp}");
        assert!(resp.contains("Content-Length: 0\r\n"), "{resp}");
        assert!(resp.contains("User-Agent: stox/test\r\n"), "{resp}");

        // Completed: the retransmission gets the same response, byte for byte.
        assert!(matches!(
            table.offer(request(port, "a1"), src),
            Offer::Taken
        ));
        assert_eq!(recv(&client).await, resp);
        assert!(rx.try_recv().is_err(), "a retransmission reached the core");

        // Another branch is another transaction, with another To tag.
        assert!(matches!(
            table.offer(request(port, "b2"), src),
            Offer::Taken
        ));
        rx.try_recv()
            .expect("delivered")
            .pending
            .reply(415, vec![("Accept".into(), "text/plain".into())]);
        let other = recv(&client).await;
        assert!(other.starts_with("SIP/2.0 415 "), "{other}");
        assert!(other.contains("Accept: text/plain\r\n"), "{other}");
        let tag = |r: &str| {
            r.split("To: ")
                .nth(1)
                .map(|t| t.lines().next().map(str::to_string))
        };
        assert_ne!(tag(&resp), tag(&other));
        assert_eq!(table.len(), 2);
    }

    #[tokio::test]
    async fn overload_answers_503_with_retry_after() {
        let (table, client, rx, _) = setup(1).await;
        let port = client.local_addr().expect("addr").port();
        let src = client.local_addr().expect("addr");
        assert!(matches!(
            table.offer(request(port, "o1"), src),
            Offer::Taken
        ));
        assert!(matches!(
            table.offer(request(port, "o2"), src),
            Offer::Taken
        ));
        let resp = recv(&client).await;
        assert!(resp.starts_with("SIP/2.0 503 "), "{resp}");
        assert!(resp.contains("Call-ID: c-o2\r\n"), "{resp}");
        assert!(resp.contains("Retry-After: 1\r\n"), "{resp}");
        // Only the first one reached the core.
        let first = rx.try_recv().expect("delivered");
        assert!(rx.try_recv().is_err());
        assert_eq!(first.req.header("Call-ID"), Some("c-o1"));
    }

    #[tokio::test]
    async fn other_requests_are_left_to_the_stack() {
        let (table, client, _rx, _) = setup(10).await;
        let port = client.local_addr().expect("addr").port();
        let src = client.local_addr().expect("addr");
        let text = REQ
            .replace("{PORT}", &port.to_string())
            .replace("{BRANCH}", "x");
        let variants = [
            text.replace("MESSAGE sip:", "OPTIONS sip:")
                .replace("1 MESSAGE", "1 OPTIONS"),
            text.replace(
                "To: <sip:user1@localhost>",
                "To: <sip:user1@localhost>;tag=t9",
            ),
            text.replace("branch=z9hG4bKx", "branch=rfc2543"),
            text.replace(";tag=f1", ""),
        ];
        for v in variants {
            let msg = SipMessage::try_from(v.as_bytes()).expect("parses");
            assert!(matches!(table.offer(msg, src), Offer::NotMine), "{v}");
        }
        assert!(table.is_empty());
    }

    #[tokio::test]
    async fn client_transaction_retransmits_then_takes_the_final_response() {
        let server = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        );
        let local = server.local_addr().expect("addr");
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let peer_addr = peer.local_addr().expect("addr");
        let (tx, rx) = std_mpsc::channel();
        let tx = Mutex::new(tx);
        let table = Table::new(
            server,
            "stox/test",
            Arc::new(AtomicUsize::new(0)),
            10,
            T1,
            move |m| match m {
                ToCore::Response(id, r) => tx.lock().expect("lock").send((id, r)).is_ok(),
                ToCore::Request(_) => true,
            },
        );
        let out = |uri: String| OutRequest {
            method: "MESSAGE".into(),
            uri,
            from: "sip:alice@localhost".into(),
            to: "sip:bob@127.0.0.1".into(),
            call_id: Some("cid-1".into()),
            headers: vec![("Subject".into(), "hi".into())],
            content_type: Some("text/plain;charset=UTF-8".into()),
            body: "héllo".as_bytes().to_vec(),
            flow: None,
            flow_only: false,
            dialog: None,
            next_hop: None,
        };
        // A host name is left to rsipstack; so are INVITE transactions.
        assert!(table
            .send_request(1, out("sip:bob@example.invalid".into()), local, None)
            .is_some());
        let mut invite = out(format!("sip:bob@{peer_addr}"));
        invite.method = "INVITE".into();
        assert!(table.send_request(1, invite, local, None).is_some());

        let sent_at = Instant::now();
        assert!(table
            .send_request(7, out(format!("sip:bob@{peer_addr}")), local, None)
            .is_none());
        let first = recv(&peer).await;
        let parsed = SipMessage::try_from(first.as_bytes()).expect("a valid request");
        let SipMessage::Request(req) = parsed else {
            panic!("not a request")
        };
        assert_eq!(req.method, Method::Message);
        assert_eq!(req.body, "héllo".as_bytes());
        assert!(
            first.contains(&format!("Via: SIP/2.0/UDP {local};branch={CLIENT_BRANCH}")),
            "{first}"
        );
        assert!(first.contains("Call-ID: cid-1\r\n"), "{first}");
        assert!(first.contains("Subject: hi\r\n"), "{first}");
        assert!(
            first.contains("Content-Type: text/plain;charset=UTF-8\r\n"),
            "{first}"
        );
        // Unanswered: Timer E retransmits the same bytes after T1.
        let again = recv(&peer).await;
        assert_eq!(again, first);
        assert!(sent_at.elapsed() >= T1 - TICK, "{:?}", sent_at.elapsed());
        assert!(rx.try_recv().is_err());

        // A provisional response is absorbed; the final one ends the transaction.
        let via = first.lines().find(|l| l.starts_with("Via:")).expect("via");
        let response = |code: &str| {
            format!("SIP/2.0 {code}\r\n{via}\r\nFrom: <sip:alice@localhost>;tag=1\r\nTo: <sip:bob@127.0.0.1>;tag=2\r\nCall-ID: cid-1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n")
        };
        let offer = |text: String| {
            table.offer(
                SipMessage::try_from(text.as_bytes()).expect("parses"),
                peer_addr,
            )
        };
        assert!(matches!(offer(response("100 Trying")), Offer::Taken));
        assert!(rx.try_recv().is_err());
        assert!(matches!(offer(response("486 Busy Here")), Offer::Taken));
        let (id, result) = rx.try_recv().expect("the outcome");
        assert_eq!(id, 7);
        // The reason as `send_request` reports it (rsipstack's wire reason or
        // its status text).
        let outcome = result.expect("a response");
        assert_eq!(outcome.code, 486);
        assert!(outcome.reason.ends_with("Busy Here"), "{outcome:?}");
        // A retransmitted final response is dropped; nothing more is sent.
        assert!(matches!(offer(response("486 Busy Here")), Offer::Taken));
        assert!(rx.try_recv().is_err());
        let mut buf = [0u8; 64];
        let quiet =
            tokio::time::timeout(Duration::from_millis(1200), peer.recv_from(&mut buf)).await;
        assert!(quiet.is_err(), "retransmitted after the final response");
        // A response to someone else's branch is not ours.
        let foreign = response("200 OK").replace(CLIENT_BRANCH, "z9hG4bKother");
        assert!(matches!(offer(foreign), Offer::NotMine));

        // A SUBSCRIBE inside a dialog (RFC 3261 §12.2.1.1): its tags, CSeq and route set,
        // sent to the first route; the 2xx's headers come back to the core.
        let mut sub = out("sip:bob@pbx.invalid;transport=udp".into());
        sub.method = "SUBSCRIBE".into();
        sub.body.clear();
        sub.content_type = None;
        sub.dialog = Some(crate::sipmsg::DialogRef {
            from_tag: "mine".into(),
            to_tag: Some("theirs".into()),
            cseq: 7,
            route: vec![format!("<sip:{peer_addr};lr>")],
        });
        assert!(table.send_request(9, sub, local, None).is_none());
        let first = recv(&peer).await;
        assert!(
            first.starts_with("SUBSCRIBE sip:bob@pbx.invalid;transport=udp SIP/2.0\r\n"),
            "{first}"
        );
        assert!(first.contains(";tag=mine\r\n"), "{first}");
        assert!(first.contains(";tag=theirs\r\n"), "{first}");
        assert!(first.contains("CSeq: 7 SUBSCRIBE\r\n"), "{first}");
        assert!(
            first.contains(&format!("Route: <sip:{peer_addr};lr>\r\n")),
            "{first}"
        );
        let via = first.lines().find(|l| l.starts_with("Via:")).expect("via");
        let ok = format!("SIP/2.0 200 OK\r\n{via}\r\nFrom: <sip:alice@localhost>;tag=mine\r\nTo: <sip:bob@pbx>;tag=theirs\r\nCall-ID: cid-1\r\nCSeq: 7 SUBSCRIBE\r\nContact: <sip:bob@127.0.0.1:9>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n");
        assert!(matches!(offer(ok), Offer::Taken));
        let (id, result) = rx.try_recv().expect("the outcome");
        assert_eq!(id, 9);
        let r = result.expect("a response");
        assert_eq!(r.code, 200);
        assert_eq!(r.header("Expires"), Some("600"));
        assert_eq!(r.header("Contact"), Some("<sip:bob@127.0.0.1:9>"));
        assert_eq!(r.header("Via"), None);
    }

    #[test]
    fn top_via_branch_by_text() {
        assert_eq!(
            top_via_branch(
                "SIP/2.0/UDP h:5060;rport;Branch=z9hG4bKa ;x, SIP/2.0/UDP j;branch=z9hG4bKb"
            ),
            Some("z9hG4bKa")
        );
        assert_eq!(
            top_via_branch("SIP/2.0/UDP h, SIP/2.0/UDP j;branch=b"),
            None
        );
    }

    #[test]
    fn timer_j_forgets_completed_transactions() {
        let mut state = State::default();
        let t0 = Instant::now();
        for (i, at) in [(1u128, t0), (2, t0 + Duration::from_secs(1))] {
            state.txs.insert(
                i,
                Entry {
                    expires: at,
                    state: TxState::Trying,
                },
            );
            state.expiry.push_back((at, i));
        }
        expire(&mut state, t0 + Duration::from_millis(500));
        assert!(!state.txs.contains_key(&1));
        assert!(state.txs.contains_key(&2));
        expire(&mut state, t0 + Duration::from_secs(2));
        assert!(state.txs.is_empty());
        assert!(state.expiry.is_empty());
    }
}

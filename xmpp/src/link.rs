//! XEP-0114: the component link, reconnecting with capped exponential backoff.
//!
//! stox is an XEP-0114 ("Jabber Component Protocol") external component: it opens a
//! TCP stream to the XMPP server in the `jabber:component:accept` namespace, proves
//! it knows the shared secret with `<handshake>hex(SHA-1(stream id ‖ secret))</handshake>`
//! (XEP-0114 §3) and then exchanges stanzas for every JID at its domain.
//!
//! `tokio-xmpp` provides the XML stream but neither reconnection nor keepalive. This
//! module adds both and hides the outages behind two channels:
//!
//! - [`spawn`] starts a driver task and returns a [`LinkHandle`] (clonable, never
//!   blocks) to send stanzas and a receiver of [`LinkEvent`]s: `Up`, `Down { reason }`
//!   (once per outage) and every received stanza.
//! - **Keepalive** (XEP-0199): after [`LinkConfig::keepalive`] without any data from the
//!   server, the driver sends `<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>` to
//!   the server's domain ([`LinkConfig::ping_target`]) and swallows the answer (matched
//!   by id). If nothing at all arrives within twice `keepalive`, the link is dead.
//! - **Reconnect**: on any failure the driver emits `Down`, waits with capped
//!   exponential backoff (with jitter) and connects again. A `<conflict/>` stream error
//!   (another process holds the component domain), a rejected secret
//!   (`<not-authorized/>`) or an unknown domain (`<host-unknown/>`) are configuration
//!   problems that retrying soon cannot fix: the driver then waits at least
//!   [`LinkConfig::conflict_backoff`] and logs a warning at every attempt saying why.
//!
//! # Delivery guarantees
//!
//! Stanzas handed to [`LinkHandle::send`] while the link is down wait in the channel
//! and are written after the next handshake, in the order they were sent. Outgoing
//! stanzas are written in batches: everything queued is serialised, then flushed once.
//! A stanza that was already handed to the socket of a link that then died may or may
//! not have reached the server; the link does **not** re-send it. Guaranteeing delivery
//! across outages is the gateway's job (it re-sends from its durable outbox); the link
//! only promises that nothing it has not yet written is lost or reordered.
//!
//! # Why not `tokio_xmpp::Component`
//!
//! `Component` parses every stanza into `xmpp_parsers` types and ends the stream on
//! the first one that fails to parse (any remote user could then cut the link), and
//! it reports every stream error, `<conflict/>` included, as the same
//! `AuthError::ComponentFail`. The link therefore performs the same XEP-0114 login
//! over `tokio_xmpp::xmlstream` itself and reads plain [`minidom::Element`]s.
//!
//! Stanzas are exchanged in the `jabber:component:accept` namespace
//! (`xmpp_parsers::ns::DEFAULT_NS` with the `component` feature, which this crate
//! enables): build outgoing stanzas in that namespace.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use minidom::rxml::xml_ncname;
use minidom::Element;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_xmpp::xmlstream::{initiate_stream, ReadError, StreamHeader, Timeouts, XmlStream};
use tracing::{debug, info, warn};
use xmpp_parsers::component::Handshake;
use xmpp_parsers::ns;

/// How many stanzas are taken from the outgoing queue for one batch (one flush).
const BATCH: usize = 512;

/// Capacity of the event channel. When the gateway falls this far behind, the driver
/// stops reading the socket, which pushes back on the XMPP server through TCP.
const EVENT_CAPACITY: usize = 4096;

/// How many keepalive ping ids are remembered to recognise late answers.
const PINGS_REMEMBERED: usize = 4;

/// Prefix of the ids of the link's own keepalive pings.
const PING_ID_PREFIX: &str = "stox-keepalive-";

/// Configuration of the component link.
#[derive(Clone)]
pub struct LinkConfig {
    /// Address of the server's component port, `host:port`, e.g. `127.0.0.1:5347`.
    pub server: String,
    /// The component domain stox owns, e.g. `sip.localhost`.
    pub component: String,
    /// The shared secret (Prosody's `component_secret`).
    pub secret: String,
    /// Silence after which a keepalive ping is sent; the link is dead after twice this.
    pub keepalive: Duration,
    /// First reconnect delay; doubled after every failed attempt.
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Minimum wait after `<conflict/>`, `<not-authorized/>` or `<host-unknown/>`.
    pub conflict_backoff: Duration,
    /// Where keepalive pings go; `None`: the parent domain of `component` (see
    /// [`LinkConfig::ping_target`]).
    pub ping_to: Option<String>,
}

impl LinkConfig {
    /// A configuration with the default timers: keepalive 30 s, backoff 250 ms up to
    /// 30 s, 10 s after a conflict.
    pub fn new(
        server: impl Into<String>,
        component: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        LinkConfig {
            server: server.into(),
            component: component.into(),
            secret: secret.into(),
            keepalive: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            conflict_backoff: Duration::from_secs(10),
            ping_to: None,
        }
    }

    /// The JID keepalive pings are sent to: `ping_to` if set, else the component's
    /// parent domain (`sip.localhost` → `localhost`), which the server answers itself.
    /// A ping to the component's own domain would be routed back to us.
    pub fn ping_target(&self) -> String {
        if let Some(to) = &self.ping_to {
            return to.clone();
        }
        match self.component.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => parent.to_owned(),
            _ => self.component.clone(),
        }
    }
}

impl fmt::Debug for LinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkConfig")
            .field("server", &self.server)
            .field("component", &self.component)
            .field("secret", &"<redacted>")
            .field("keepalive", &self.keepalive)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .field("conflict_backoff", &self.conflict_backoff)
            .field("ping_to", &self.ping_to)
            .finish()
    }
}

/// What the link reports to the gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// The handshake succeeded: stanzas flow.
    Up,
    /// The link is down (once per outage); the driver is reconnecting.
    Down {
        /// Why, for logs and the admin API.
        reason: String,
    },
    /// A stanza (`<message/>`, `<presence/>` or `<iq/>`) from the server.
    Stanza(Element),
}

/// Why the link failed, or why a stanza could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The driver task has stopped (the event receiver was dropped).
    #[error("the component link has stopped")]
    Closed,
    /// The TCP connection to the server could not be opened.
    #[error("cannot connect to {server}: {source}")]
    Connect {
        /// The configured server address.
        server: String,
        /// The socket error.
        source: io::Error,
    },
    /// Another connection already holds the component domain (`<conflict/>`).
    #[error("another component is already connected with this domain (<conflict/>)")]
    Conflict,
    /// The server rejected the handshake, i.e. the secret (`<not-authorized/>`).
    #[error("the server rejected the component secret (<not-authorized/>)")]
    NotAuthorized,
    /// The server does not serve the component domain (`<host-unknown/>`).
    #[error("the server does not know the component domain (<host-unknown/>)")]
    HostUnknown,
    /// The server closed the stream with another stream error (RFC 6120 §4.9).
    #[error("stream error <{condition}/>{}", text.as_deref().map(|t| format!(": {t}")).unwrap_or_default())]
    StreamError {
        /// The defined condition, e.g. `system-shutdown`.
        condition: String,
        /// The optional human-readable text.
        text: Option<String>,
    },
    /// The server closed the stream (`</stream:stream>`) without a stream error.
    #[error("the server closed the stream")]
    StreamClosed,
    /// The TCP connection ended in the middle of the stream.
    #[error("the server closed the connection without closing the stream")]
    ConnectionLost,
    /// Nothing arrived for this long despite a keepalive ping.
    #[error("no data from the server for {0:?} despite a keepalive ping")]
    Silent(Duration),
    /// Writing to the server made no progress for this long.
    #[error("writing to the server stalled for {0:?}")]
    WriteStalled(Duration),
    /// Connecting and the handshake did not complete within this time.
    #[error("the connection and handshake did not complete within {0:?}")]
    HandshakeTimedOut(Duration),
    /// The server broke XEP-0114 (e.g. no stream id, or a stanza before the handshake).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Any other socket error.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl LinkError {
    /// A refusal that retrying soon cannot fix: wait at least `conflict_backoff`.
    fn is_refusal(&self) -> bool {
        matches!(
            self,
            LinkError::Conflict | LinkError::NotAuthorized | LinkError::HostUnknown
        )
    }
}

/// Sends stanzas over the link. Cheap to clone; never blocks.
#[derive(Clone, Debug)]
pub struct LinkHandle {
    tx: mpsc::UnboundedSender<Element>,
}

impl LinkHandle {
    /// Queues `stanza` for sending. While the link is down it waits in the queue and
    /// is sent after the reconnect, in order. Fails only when the driver has stopped.
    pub fn send(&self, stanza: Element) -> Result<(), LinkError> {
        self.tx.send(stanza).map_err(|_| LinkError::Closed)
    }
}

/// Starts the driver task (on the current tokio runtime) and returns the handle to
/// send stanzas and the receiver of [`LinkEvent`]s. The driver runs until the event
/// receiver is dropped.
pub fn spawn(cfg: LinkConfig) -> (LinkHandle, mpsc::Receiver<LinkEvent>) {
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_CAPACITY);
    let driver = Driver {
        ping_to: cfg.ping_target(),
        backoff: Backoff::new(cfg.backoff_initial, cfg.backoff_max),
        cfg,
        outgoing: out_rx,
        outgoing_open: true,
        events: ev_tx,
        unsent: Vec::with_capacity(BATCH),
        pings: VecDeque::with_capacity(PINGS_REMEMBERED),
        ping_seq: 0,
        down_reported: false,
    };
    tokio::spawn(driver.run());
    (LinkHandle { tx: out_tx }, ev_rx)
}

type Stream = XmlStream<BufStream<QuickAck>, Element>;

/// The component link's TCP stream, acknowledging at once what it reads (Linux
/// `TCP_QUICKACK`, re-armed after every read: the kernel clears it).
///
/// The server writes small stanzas; with Nagle's algorithm on its side (Prosody's default,
/// `network_settings = { nagle = true }`) a stanza waits for the acknowledgement of the
/// previous one, and a delayed acknowledgement here holds it up to 40 ms: that was the p95
/// of every XMPP → SIP message in the benchmark (docs/benchmarks.md). Acknowledging at once
/// costs one `setsockopt` per read (reads carry many stanzas under load).
pub struct QuickAck(TcpStream);

impl QuickAck {
    fn arm(&self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let one: libc::c_int = 1;
            // SAFETY: a valid socket descriptor, a c_int option of the size passed. A failure
            // only loses the optimisation.
            unsafe {
                libc::setsockopt(
                    self.0.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_QUICKACK,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }
}

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut this.0).poll_read(cx, buf);
        if matches!(poll, std::task::Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.arm();
        }
        poll
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, data)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// How a session ended.
enum End {
    /// The gateway dropped the event receiver: stop for good.
    Stop,
    /// The link failed: reconnect.
    Failed(LinkError),
}

struct Driver {
    cfg: LinkConfig,
    ping_to: String,
    backoff: Backoff,
    outgoing: mpsc::UnboundedReceiver<Element>,
    /// False once every `LinkHandle` is gone (the queue can then only drain).
    outgoing_open: bool,
    events: mpsc::Sender<LinkEvent>,
    /// Stanzas taken from `outgoing` and not yet handed to a socket, oldest first.
    unsent: Vec<Element>,
    /// Ids of recent keepalive pings, whose answers are swallowed.
    pings: VecDeque<String>,
    ping_seq: u64,
    down_reported: bool,
}

impl Driver {
    async fn run(mut self) {
        loop {
            let failure = match self.connect().await {
                Ok(stream) => {
                    info!(component = %self.cfg.component, server = %self.cfg.server, "component link up");
                    if self.events.send(LinkEvent::Up).await.is_err() {
                        return;
                    }
                    self.down_reported = false;
                    let since = Instant::now();
                    match self.session(stream).await {
                        End::Stop => return,
                        End::Failed(e) => {
                            // Only a link that stayed up for a while resets the backoff,
                            // so a server that accepts and at once drops us is not
                            // hammered at the initial rate.
                            if since.elapsed() >= self.cfg.keepalive {
                                self.backoff.reset();
                            }
                            e
                        }
                    }
                }
                Err(e) => e,
            };
            let mut delay = self.backoff.next_delay();
            if failure.is_refusal() {
                delay = delay.max(self.cfg.conflict_backoff);
                let advice = match failure {
                    LinkError::Conflict => {
                        "is another stox (or another component) connected with the same domain?"
                    }
                    LinkError::NotAuthorized => {
                        "check the secret against the server's component_secret"
                    }
                    _ => "check that the server declares this Component domain",
                };
                warn!(component = %self.cfg.component, server = %self.cfg.server,
                    "component link refused: {failure}; {advice} Retrying in {delay:?}");
            } else {
                warn!(component = %self.cfg.component, server = %self.cfg.server,
                    "component link down: {failure}; reconnecting in {delay:?}");
            }
            if !self.down_reported {
                let down = LinkEvent::Down {
                    reason: failure.to_string(),
                };
                if self.events.send(down).await.is_err() {
                    return;
                }
                self.down_reported = true;
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.events.closed() => return,
            }
        }
    }

    /// Opens the TCP connection and performs the XEP-0114 handshake.
    async fn connect(&self) -> Result<Stream, LinkError> {
        let limit = self.cfg.keepalive * 2;
        match tokio::time::timeout(limit, self.login()).await {
            Ok(result) => result,
            Err(_) => Err(LinkError::HandshakeTimedOut(limit)),
        }
    }

    async fn login(&self) -> Result<Stream, LinkError> {
        let tcp = TcpStream::connect(&self.cfg.server)
            .await
            .map_err(|source| LinkError::Connect {
                server: self.cfg.server.clone(),
                source,
            })?;
        tcp.set_nodelay(true)?;
        let tcp = QuickAck(tcp);
        tcp.arm();
        // tokio-xmpp's read timeouts implement the keepalive: a soft timeout after
        // `keepalive` of silence (we ping), a hard one `keepalive` later (dead).
        let timeouts = Timeouts {
            read_timeout: self.cfg.keepalive,
            response_timeout: self.cfg.keepalive,
        };
        let header = StreamHeader {
            to: Some(Cow::Borrowed(self.cfg.component.as_str())),
            from: None,
            id: None,
        };
        let mut pending =
            initiate_stream(BufStream::new(tcp), ns::COMPONENT, header, timeouts).await?;
        let stream_id = match pending.take_header().id {
            Some(id) => id.into_owned(),
            None => return Err(LinkError::Protocol("stream header without an id".into())),
        };
        // XEP-0114 §3: no stream features; the handshake follows the header.
        let mut stream: Stream = pending.skip_features();
        let handshake = Handshake::from_stream_id_and_password(stream_id, &self.cfg.secret);
        stream.send(&handshake).await?;
        loop {
            match stream.next().await {
                Some(Ok(el)) if el.is("handshake", ns::COMPONENT) => return Ok(stream),
                Some(Ok(el)) if el.is("error", ns::STREAM) => return Err(stream_error(&el)),
                Some(Ok(el)) => {
                    return Err(LinkError::Protocol(format!(
                        "<{}/> before the handshake reply",
                        el.name()
                    )))
                }
                Some(Err(ReadError::SoftTimeout)) => continue,
                Some(Err(ReadError::ParseError(e))) => {
                    return Err(LinkError::Protocol(e.to_string()))
                }
                Some(Err(ReadError::HardError(e))) => return Err(e.into()),
                Some(Err(ReadError::StreamFooterReceived)) | None => {
                    return Err(LinkError::StreamClosed)
                }
            }
        }
    }

    /// Runs one connected session until it fails or the gateway goes away.
    async fn session(&mut self, mut stream: Stream) -> End {
        self.pings.clear();
        // Stanzas left over from the previous connection go first.
        if let Err(e) = self.write_unsent(&mut stream).await {
            return End::Failed(e);
        }
        loop {
            tokio::select! {
                item = stream.next() => {
                    if let Err(end) = self.incoming(item, &mut stream).await {
                        return end;
                    }
                }
                n = self.outgoing.recv_many(&mut self.unsent, BATCH), if self.outgoing_open => {
                    if n == 0 {
                        // Every LinkHandle is gone: nothing more to send, keep reading.
                        self.outgoing_open = false;
                        continue;
                    }
                    if let Err(e) = self.write_unsent(&mut stream).await {
                        return End::Failed(e);
                    }
                }
                () = self.events.closed() => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
                    return End::Stop;
                }
            }
        }
    }

    /// Handles one item read from the stream; `Err` ends the session.
    async fn incoming(
        &mut self,
        item: Option<Result<Element, ReadError>>,
        stream: &mut Stream,
    ) -> Result<(), End> {
        match item {
            Some(Ok(el)) => {
                if el.is("error", ns::STREAM) {
                    return Err(End::Failed(stream_error(&el)));
                }
                if self.is_keepalive_answer(&el) {
                    return Ok(());
                }
                if !matches!(el.name(), "message" | "presence" | "iq") {
                    debug!(name = el.name(), ns = %el.ns(), "ignoring an unexpected top-level element");
                    return Ok(());
                }
                self.events
                    .send(LinkEvent::Stanza(el))
                    .await
                    .map_err(|_| End::Stop)
            }
            Some(Err(ReadError::SoftTimeout)) => {
                let ping = self.keepalive_ping();
                debug!(to = %self.ping_to, "link silent: sending a keepalive ping");
                self.unsent.push(ping);
                self.write_unsent(stream).await.map_err(End::Failed)
            }
            Some(Err(ReadError::ParseError(e))) => {
                warn!("skipping an unparsable element from the server: {e}");
                Ok(())
            }
            Some(Err(ReadError::HardError(e))) if e.kind() == io::ErrorKind::TimedOut => {
                Err(End::Failed(LinkError::Silent(self.cfg.keepalive * 2)))
            }
            Some(Err(ReadError::HardError(e))) if is_eof(&e) => {
                Err(End::Failed(LinkError::ConnectionLost))
            }
            Some(Err(ReadError::HardError(e))) => Err(End::Failed(LinkError::Io(e))),
            Some(Err(ReadError::StreamFooterReceived)) | None => {
                // Answer the server's footer with ours, best effort.
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
                Err(End::Failed(LinkError::StreamClosed))
            }
        }
    }

    /// Writes every stanza in `unsent` and flushes once. On failure, the stanzas not
    /// yet handed to the socket stay in `unsent`, in order, for the next connection.
    async fn write_unsent(&mut self, stream: &mut Stream) -> Result<(), LinkError> {
        if self.unsent.is_empty() {
            return Ok(());
        }
        let limit = self.cfg.keepalive * 2;
        let mut handed = 0;
        let unsent = &self.unsent;
        let write = async {
            for stanza in unsent {
                match stream.feed(stanza).await {
                    Ok(()) => {}
                    // Serialisation failed; tokio-xmpp rewound its buffer, so the
                    // stream is intact: drop this one stanza.
                    Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                        warn!(
                            name = stanza.name(),
                            "dropping an outgoing stanza that cannot be serialised: {e}"
                        );
                    }
                    Err(e) => return Err(LinkError::Io(e)),
                }
                handed += 1;
            }
            SinkExt::<&Element>::flush(stream)
                .await
                .map_err(LinkError::Io)
        };
        let result = match tokio::time::timeout(limit, write).await {
            Ok(result) => result,
            Err(_) => Err(LinkError::WriteStalled(limit)),
        };
        self.unsent.drain(..handed);
        result
    }

    fn keepalive_ping(&mut self) -> Element {
        self.ping_seq += 1;
        let id = format!("{PING_ID_PREFIX}{}", self.ping_seq);
        if self.pings.len() == PINGS_REMEMBERED {
            self.pings.pop_front();
        }
        self.pings.push_back(id.clone());
        Element::builder("iq", ns::COMPONENT)
            .attr(xml_ncname!("type").into(), "get")
            .attr(xml_ncname!("id").into(), id)
            .attr(xml_ncname!("from").into(), self.cfg.component.as_str())
            .attr(xml_ncname!("to").into(), self.ping_to.as_str())
            .append(Element::builder("ping", ns::PING).build())
            .build()
    }

    /// True (and forgets the id) for the result or error answering one of our pings.
    fn is_keepalive_answer(&mut self, el: &Element) -> bool {
        if el.name() != "iq" || !matches!(el.attr("type"), Some("result" | "error")) {
            return false;
        }
        let Some(id) = el.attr("id") else {
            return false;
        };
        match self.pings.iter().position(|p| p == id) {
            Some(i) => {
                self.pings.remove(i);
                true
            }
            None => false,
        }
    }
}

/// True for the parser's "end of file inside the stream": the peer closed the TCP
/// connection without sending `</stream:stream>`.
fn is_eof(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::UnexpectedEof
        || matches!(
            e.get_ref()
                .and_then(|inner| inner.downcast_ref::<minidom::rxml::Error>()),
            Some(minidom::rxml::Error::InvalidEof(_))
        )
}

/// RFC 6120 §4.9.3: the defined condition of a `<stream:error/>`.
fn stream_error(el: &Element) -> LinkError {
    let mut condition = None;
    let mut text = None;
    for child in el.children() {
        if !child.has_ns(ns::XMPP_STREAMS) {
            continue;
        }
        if child.name() == "text" {
            text = Some(child.text());
        } else if condition.is_none() {
            condition = Some(child.name().to_owned());
        }
    }
    match condition.as_deref() {
        Some("conflict") => LinkError::Conflict,
        Some("not-authorized") => LinkError::NotAuthorized,
        Some("host-unknown") => LinkError::HostUnknown,
        _ => LinkError::StreamError {
            condition: condition.unwrap_or_else(|| "undefined-condition".into()),
            text,
        },
    }
}

/// Capped exponential backoff with jitter: `initial`, ×2 per failure, at most `max`;
/// each delay is drawn from [¾ d, d] so that several instances do not reconnect in step.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    random: RandomState,
    draws: u64,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial.min(max),
            random: RandomState::new(),
            draws: 0,
        }
    }

    fn reset(&mut self) {
        self.next = self.initial.min(self.max);
    }

    fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        self.draws += 1;
        let mut h = self.random.build_hasher();
        h.write_u64(self.draws);
        let frac = (h.finish() % 1024) as f64 / 1024.0;
        d.mul_f64(0.75 + 0.25 * frac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest, Sha1};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const COMPONENT: &str = "sip.localhost";
    const SECRET: &str = "s3cret";
    /// Upper bound for anything a test waits for; a failing test fails, it never hangs.
    const WAIT: Duration = Duration::from_secs(5);
    const CONFLICT: &str = "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>";
    const NOT_AUTHORIZED: &str = "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>";

    /// A tiny fake XEP-0114 server on 127.0.0.1, speaking just enough of the protocol
    /// (stream header, `<handshake>` checked against hex(SHA-1(id ‖ secret)), raw XML
    /// afterwards) to drive the link's connect, keepalive and reconnect logic.
    ///
    /// This is only a unit test of the reconnect logic: the tests against a real
    /// Prosody live in the `stox-tests` crate.
    struct FakeServer {
        listener: TcpListener,
        secret: &'static str,
        streams: u32,
    }

    /// One accepted connection after a successful handshake.
    struct Conn {
        tcp: TcpStream,
        /// Everything received and not yet consumed by `read_until`, with `"` turned
        /// into `'` so that assertions need not care about the writer's quoting.
        buf: String,
    }

    impl FakeServer {
        async fn bind(secret: &'static str) -> (Self, String) {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("local addr").to_string();
            let server = FakeServer {
                listener,
                secret,
                streams: 0,
            };
            (server, addr)
        }

        /// Accepts one connection and answers its handshake with `<handshake/>`, or
        /// with `refusal` (a stream error) and a close when given.
        async fn accept(&mut self, refusal: Option<&str>) -> Option<Conn> {
            let (tcp, _) = tokio::time::timeout(WAIT, self.listener.accept())
                .await
                .expect("the link did not connect in time")
                .expect("accept");
            let mut conn = Conn {
                tcp,
                buf: String::new(),
            };
            // The XML declaration and the stream header: two '>'.
            let head = conn.read_until(">").await + &conn.read_until(">").await;
            assert!(head.contains("http://etherx.jabber.org/streams"), "{head}");
            assert!(head.contains("jabber:component:accept"), "{head}");
            assert!(head.contains(&format!("to='{COMPONENT}'")), "{head}");
            self.streams += 1;
            let id = format!("stream-{}", self.streams);
            conn.send(&format!(
                "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
                 xmlns='jabber:component:accept' from='{COMPONENT}' id='{id}'>"
            ))
            .await;
            conn.read_until("<handshake").await;
            conn.read_until(">").await;
            let hex = conn.read_until("</handshake>").await;
            let hex = hex.trim_end_matches("</handshake>");
            let expected: String = Sha1::digest(format!("{id}{}", self.secret).as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let refusal = if hex == expected {
                refusal
            } else {
                Some(NOT_AUTHORIZED)
            };
            match refusal {
                Some(error) => {
                    conn.send(error).await;
                    None
                }
                None => {
                    conn.send("<handshake/>").await;
                    Some(conn)
                }
            }
        }
    }

    impl Conn {
        /// Reads until `pat` was received; returns the text up to and including it.
        async fn read_until(&mut self, pat: &str) -> String {
            let deadline = Instant::now() + WAIT;
            loop {
                if let Some(i) = self.buf.find(pat) {
                    let rest = self.buf.split_off(i + pat.len());
                    return std::mem::replace(&mut self.buf, rest);
                }
                let mut chunk = [0u8; 4096];
                let n = tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk))
                    .await
                    .unwrap_or_else(|_| panic!("timed out waiting for {pat:?}; got {:?}", self.buf))
                    .expect("read");
                assert!(n > 0, "connection closed while waiting for {pat:?}");
                self.buf
                    .push_str(&String::from_utf8_lossy(&chunk[..n]).replace('"', "'"));
            }
        }

        async fn send(&mut self, xml: &str) {
            self.tcp.write_all(xml.as_bytes()).await.expect("write");
        }
    }

    fn config(server: &str, secret: &str) -> LinkConfig {
        LinkConfig {
            keepalive: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            conflict_backoff: Duration::from_millis(400),
            ..LinkConfig::new(server, COMPONENT, secret)
        }
    }

    async fn next_event(events: &mut mpsc::Receiver<LinkEvent>) -> LinkEvent {
        tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("no link event in time")
            .expect("the driver stopped")
    }

    fn message(id: &str) -> Element {
        Element::builder("message", ns::COMPONENT)
            .attr(
                xml_ncname!("from").into(),
                "carol\\40pbx.example@sip.localhost",
            )
            .attr(xml_ncname!("to").into(), "alice@localhost")
            .attr(xml_ncname!("id").into(), id)
            .append(Element::builder("body", ns::COMPONENT).append("hi").build())
            .build()
    }

    #[tokio::test]
    async fn stanzas_flow_both_ways_and_survive_a_reconnect_in_order() {
        let (mut server, addr) = FakeServer::bind(SECRET).await;
        let (link, mut events) = spawn(config(&addr, SECRET));

        let mut conn = server.accept(None).await.expect("handshake");
        assert_eq!(next_event(&mut events).await, LinkEvent::Up);

        conn.send("<message from='alice@localhost/phone' to='carol\\40pbx.example@sip.localhost' id='in-1' type='chat'><body>hello</body></message>").await;
        match next_event(&mut events).await {
            LinkEvent::Stanza(el) => {
                assert!(el.is("message", ns::COMPONENT));
                assert_eq!(el.attr("id"), Some("in-1"));
                assert_eq!(el.attr("from"), Some("alice@localhost/phone"));
                let body = el.get_child("body", ns::COMPONENT).map(Element::text);
                assert_eq!(body.as_deref(), Some("hello"));
            }
            other => panic!("expected the message, got {other:?}"),
        }

        link.send(message("out-1")).expect("queued");
        let got = conn.read_until("</message>").await;
        assert!(got.contains("id='out-1'"), "{got}");
        assert!(got.contains("<body>hi</body>"), "{got}");

        // The server goes away: Down, and stanzas queued meanwhile wait.
        drop(conn);
        match next_event(&mut events).await {
            LinkEvent::Down { reason } => {
                assert_eq!(reason, LinkError::ConnectionLost.to_string())
            }
            other => panic!("expected Down, got {other:?}"),
        }
        for i in 0..200 {
            link.send(message(&format!("queued-{i:03}")))
                .expect("queued");
        }

        let mut conn = server.accept(None).await.expect("handshake");
        assert_eq!(next_event(&mut events).await, LinkEvent::Up);
        let got = conn.read_until("'queued-199'").await;
        let positions: Vec<usize> = (0..200)
            .map(|i| {
                got.find(&format!("'queued-{i:03}'"))
                    .unwrap_or_else(|| panic!("queued-{i:03} missing"))
            })
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "out of order");
    }

    #[tokio::test]
    async fn conflict_waits_the_conflict_backoff_and_reports_down_once() {
        let (mut server, addr) = FakeServer::bind(SECRET).await;
        let cfg = config(&addr, SECRET);
        let floor = cfg.conflict_backoff;
        let (_link, mut events) = spawn(cfg);

        assert!(server.accept(Some(CONFLICT)).await.is_none());
        let refused_at = Instant::now();
        match next_event(&mut events).await {
            LinkEvent::Down { reason } => assert!(reason.contains("conflict"), "{reason}"),
            other => panic!("expected Down, got {other:?}"),
        }

        assert!(server.accept(Some(CONFLICT)).await.is_none());
        let waited = refused_at.elapsed();
        assert!(waited >= floor, "retried after {waited:?} < {floor:?}");
        let refused_at = Instant::now();

        assert!(server.accept(None).await.is_some());
        let waited = refused_at.elapsed();
        assert!(waited >= floor, "retried after {waited:?} < {floor:?}");
        // One Down for the whole outage, then Up.
        assert_eq!(next_event(&mut events).await, LinkEvent::Up);
    }

    #[tokio::test]
    async fn a_wrong_secret_does_not_spin() {
        let (mut server, addr) = FakeServer::bind(SECRET).await;
        let cfg = config(&addr, "not-the-secret");
        let floor = cfg.conflict_backoff;
        let (_link, mut events) = spawn(cfg);

        assert!(server.accept(None).await.is_none());
        let refused_at = Instant::now();
        match next_event(&mut events).await {
            LinkEvent::Down { reason } => assert!(reason.contains("not-authorized"), "{reason}"),
            other => panic!("expected Down, got {other:?}"),
        }
        assert!(server.accept(None).await.is_none());
        let waited = refused_at.elapsed();
        assert!(waited >= floor, "retried after {waited:?} < {floor:?}");
    }

    #[tokio::test]
    async fn keepalive_pings_the_parent_domain_and_silence_kills_the_link() {
        let (mut server, addr) = FakeServer::bind(SECRET).await;
        let keepalive = Duration::from_millis(150);
        let cfg = LinkConfig {
            keepalive,
            ..config(&addr, SECRET)
        };
        let (_link, mut events) = spawn(cfg);
        let mut conn = server.accept(None).await.expect("handshake");
        assert_eq!(next_event(&mut events).await, LinkEvent::Up);

        // First silence: a ping to the parent domain, which we answer.
        let ping = conn.read_until("</iq>").await;
        assert!(ping.contains("urn:xmpp:ping"), "{ping}");
        assert!(ping.contains("to='localhost'"), "{ping}");
        assert!(ping.contains("from='sip.localhost'"), "{ping}");
        let id_at = ping.find(PING_ID_PREFIX).expect("ping id");
        let id: String = ping[id_at..].chars().take_while(|c| *c != '\'').collect();
        conn.send(&format!(
            "<iq type='result' from='localhost' to='sip.localhost' id='{id}'/>"
        ))
        .await;

        // Second silence: another ping, unanswered: the link dies after 2×keepalive.
        let ping = conn.read_until("</iq>").await;
        assert!(ping.contains("urn:xmpp:ping"), "{ping}");
        // The answer to the first ping was swallowed: the next event is Down.
        match next_event(&mut events).await {
            LinkEvent::Down { reason } => assert!(reason.contains("no data"), "{reason}"),
            other => panic!("expected Down, got {other:?}"),
        }
        assert!(server.accept(None).await.is_some());
        assert_eq!(next_event(&mut events).await, LinkEvent::Up);
    }

    /// 20,000 stanzas each way, at the same time, through the batched writer and the
    /// reader; the bound is loose (debug build, shared machine): it catches a
    /// flush-per-stanza or quadratic regression, not a few percent.
    #[tokio::test]
    async fn twenty_thousand_stanzas_each_way() {
        const N: usize = 20_000;
        let (mut server, addr) = FakeServer::bind(SECRET).await;
        let (link, mut events) = spawn(config(&addr, SECRET));
        let conn = server.accept(None).await.expect("handshake");
        assert_eq!(next_event(&mut events).await, LinkEvent::Up);
        let start = Instant::now();

        let mut blob = String::new();
        for i in 0..N {
            blob.push_str(&format!(
                "<message from='alice@localhost/phone' to='dave@sip.localhost' id='in-{i}'><body>{i}</body></message>"
            ));
        }
        let (mut rd, mut wr) = conn.tcp.into_split();
        let writer = tokio::spawn(async move {
            wr.write_all(blob.as_bytes()).await.expect("write");
            wr
        });
        let sender = tokio::spawn(async move {
            for i in 0..N {
                link.send(message(&format!("out-{i}"))).expect("queued");
            }
            link
        });
        let reader = tokio::spawn(async move {
            let last = format!("out-{}", N - 1);
            let mut tail = String::new();
            let mut chunk = vec![0u8; 65536];
            loop {
                let n = rd.read(&mut chunk).await.expect("read");
                assert!(n > 0, "closed");
                tail.push_str(&String::from_utf8_lossy(&chunk[..n]));
                if tail.contains(&last) {
                    return rd;
                }
                let keep = tail.len().saturating_sub(64);
                let keep = (keep..tail.len())
                    .find(|i| tail.is_char_boundary(*i))
                    .unwrap_or(0);
                tail.drain(..keep);
            }
        });
        for i in 0..N {
            match next_event(&mut events).await {
                LinkEvent::Stanza(el) => {
                    assert_eq!(el.attr("id"), Some(format!("in-{i}").as_str()))
                }
                other => panic!("expected stanza {i}, got {other:?}"),
            }
        }
        let _wr = writer.await.expect("writer");
        let _link = sender.await.expect("sender");
        let _rd = tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .expect("outgoing stanzas in time")
            .expect("reader");
        let elapsed = start.elapsed();
        eprintln!("{N} stanzas each way in {elapsed:?}");
        assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        for nominal in [100, 200, 400, 800, 1000, 1000] {
            let d = b.next_delay();
            assert!(
                d >= ms(nominal * 3 / 4) && d <= ms(nominal),
                "{d:?} vs {nominal}"
            );
        }
        b.reset();
        let d = b.next_delay();
        assert!(d >= ms(75) && d <= ms(100), "{d:?}");
    }

    #[test]
    fn ping_target_is_the_parent_domain_unless_configured() {
        let mut cfg = LinkConfig::new("127.0.0.1:5347", "sip.localhost", "x");
        assert_eq!(cfg.ping_target(), "localhost");
        cfg.component = "localhost".into();
        assert_eq!(cfg.ping_target(), "localhost");
        cfg.ping_to = Some("example.org".into());
        assert_eq!(cfg.ping_target(), "example.org");
    }

    #[test]
    fn defaults_match_the_documented_timers_and_debug_hides_the_secret() {
        let cfg = LinkConfig::new("127.0.0.1:5347", "sip.localhost", "hunter2");
        assert_eq!(cfg.keepalive, Duration::from_secs(30));
        assert_eq!(cfg.backoff_initial, Duration::from_millis(250));
        assert_eq!(cfg.backoff_max, Duration::from_secs(30));
        assert_eq!(cfg.conflict_backoff, Duration::from_secs(10));
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn stream_errors_are_classified() {
        let parse = |xml: &str| stream_error(&xml.parse::<Element>().expect("xml"));
        assert!(matches!(
            parse("<error xmlns='http://etherx.jabber.org/streams'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></error>"),
            LinkError::Conflict
        ));
        assert!(matches!(
            parse("<error xmlns='http://etherx.jabber.org/streams'><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>bad</text><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></error>"),
            LinkError::NotAuthorized
        ));
        let e = parse("<error xmlns='http://etherx.jabber.org/streams'><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>bye</text></error>");
        assert_eq!(e.to_string(), "stream error <system-shutdown/>: bye");
        assert!(!e.is_refusal());
        assert!(LinkError::HostUnknown.is_refusal());
    }
}

//! SIP over TLS (RFC 3261 §26.2, rustls) and WebSocket (RFC 7118), and the flows requests go
//! back over (RFC 5626 §5.3, RFC 5923).
//!
//! rsipstack owns the sockets: its TLS and WS listeners accept, its stream loops parse,
//! answer a double-CRLF keepalive with a CRLF (RFC 5626 §4.4.1; a WebSocket binary frame
//! holding CRLFCRLF likewise) and close a stream silent for 300 s. What stox adds here:
//!
//! * [`Flows`]: every stream connection a request came in on, by (transport, peer address).
//!   The core remembers the [`Flow`] of a registration; a request to that contact goes
//!   over that very connection while it is open (a WebSocket client's Contact names an
//!   `.invalid` host; a NAT'd TLS client cannot be connected to). A closed flow is never
//!   replaced by a new connection to the peer's address.
//! * outgoing TLS: to `sips:` URIs, `;transport=tls`, `tls` accounts and servers located
//!   through `SIPS+D2T` / `_sips._tcp`, verified against `[sip.tls] ca`, with the host name
//!   of the URI the next hop was found from as SNI and as the name checked in the
//!   certificate (RFC 5922 §4): the Route's, the outbound proxy's, else the Request-URI's
//!   domain (never the SRV target it led to). [`TlsClients`] keeps those connections by
//!   address *and* verified name.
//! * the secure WebSocket listener, which rsipstack 0.7.14 lacks (its `wss` listener speaks
//!   plain WebSocket): TLS (tokio-rustls) then the WebSocket handshake (tungstenite), and
//!   the SIP messages handed to rsipstack through a channel connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use rsipstack::sip::SipMessage;
use rsipstack::transport::channel::ChannelConnection;
use rsipstack::transport::{SipAddr, SipConnection, TransportEvent};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use super::mtls::{ClientAuth, PeerIdentity};
use crate::sipmsg::{Flow, Transport};

/// The transport of a connection rsipstack handed over, and the peer's address for a
/// stream (`None` for UDP: its "flow" is the source address only).
pub fn flow_of(conn: &SipConnection) -> Option<Flow> {
    let transport = match conn {
        SipConnection::Tcp(_) => Transport::Tcp,
        SipConnection::Tls(_) => Transport::Tls,
        SipConnection::WebSocket(_) => match conn.get_addr().r#type {
            Some(rsipstack::sip::Transport::Wss) => Transport::Wss,
            _ => Transport::Ws,
        },
        // Only the secure WebSocket bridge below makes channel connections.
        SipConnection::Channel(_) => Transport::Wss,
        _ => return None,
    };
    let remote = conn.get_remote_addr()?.get_socketaddr().ok()?;
    Some(Flow { transport, remote })
}

/// Whether rsipstack still serves a connection (it cancels the token of a stream it retires).
fn open(conn: &SipConnection) -> bool {
    conn.cancel_token().is_none_or(|t| !t.is_cancelled())
}

/// Told when a flow's connection closes.
type OnClose = Arc<dyn Fn(Flow) + Send + Sync>;

/// A connection known under a flow, and what its peer was authenticated as, if anything:
/// the name stox verified a server's certificate for, or the identities of a client
/// certificate that aliased the connection (RFC 5923).
#[derive(Clone)]
struct Entry {
    conn: SipConnection,
    identity: Option<Arc<PeerIdentity>>,
}

/// The (local, remote) addresses of a stream connection.
fn ends(conn: &SipConnection) -> Option<(SocketAddr, SocketAddr)> {
    let local = conn.get_addr().get_socketaddr().ok()?;
    let remote = conn.get_remote_addr()?.get_socketaddr().ok()?;
    Some((local, remote))
}

/// Whether two handles are the same stream connection (rsipstack's own test is private):
/// two open streams never have the same two ends.
fn same(a: &SipConnection, b: &SipConnection) -> bool {
    ends(a).is_some() && ends(a) == ends(b)
}

/// The stream connections requests came in on, the TLS connections stox opened, and the
/// TLS connections peers aliased (RFC 5923), by flow; and the verified client certificate
/// of each TLS connection accepted with one.
#[derive(Clone, Default)]
pub struct Flows {
    map: Arc<Mutex<HashMap<Flow, Entry>>>,
    /// Accepted TLS connections whose client certificate verified, by (local, remote).
    peers: Arc<Mutex<HashMap<(SocketAddr, SocketAddr), Verified>>>,
    /// Told when a learned connection closes.
    on_close: Option<OnClose>,
}

/// An accepted TLS connection and the identity of its verified client certificate.
type Verified = (SipConnection, Arc<PeerIdentity>);

impl Flows {
    /// Flows that call `on_close` when a connection they learned closes (RFC 5626 §7: the
    /// registrar then invalidates the bindings that use it).
    pub fn with_on_close(on_close: impl Fn(Flow) + Send + Sync + 'static) -> Flows {
        Flows {
            map: Arc::default(),
            peers: Arc::default(),
            on_close: Some(Arc::new(on_close)),
        }
    }

    /// Remembers the connection of a request that came in; forgets closed ones when a new
    /// flow appears.
    pub fn learn(&self, flow: Flow, conn: &SipConnection) {
        let Ok(mut map) = self.map.lock() else { return };
        if let Some(known) = map.get(&flow) {
            if open(&known.conn) {
                return;
            }
        }
        map.retain(|_, e| open(&e.conn));
        map.insert(
            flow,
            Entry {
                conn: conn.clone(),
                identity: None,
            },
        );
        metrics::gauge!("stox_sip_flows").set(map.len() as f64);
        // rsipstack cancels a stream's token when it retires the connection (and the
        // secure WebSocket bridge its own when the socket ends).
        if let (Some(on_close), Some(token)) = (self.on_close.clone(), conn.cancel_token()) {
            tokio::spawn(async move {
                token.cancelled().await;
                debug!(remote = %flow.remote, transport = flow.transport.via_name(), "flow closed");
                on_close(flow);
            });
        }
    }

    /// The connection of a flow, if it is still open.
    pub fn get(&self, flow: &Flow) -> Option<SipConnection> {
        let map = self.map.lock().ok()?;
        map.get(flow)
            .filter(|e| open(&e.conn))
            .map(|e| e.conn.clone())
    }

    /// An open TLS connection to `dest` whose peer is authenticated as `host` (the name, or
    /// IP address, stox would check in a new connection's certificate): one stox opened to
    /// `dest` for that name, or one a peer aliased to `dest` with a certificate holding it
    /// (RFC 5923 §5; RFC 5922 for the comparison). A connection that merely came from
    /// `dest` is not one.
    pub fn tls_to(&self, dest: SocketAddr, host: &str) -> Option<SipConnection> {
        let map = self.map.lock().ok()?;
        let flow = Flow {
            transport: Transport::Tls,
            remote: dest,
        };
        map.get(&flow)
            .filter(|e| open(&e.conn))
            .filter(|e| e.identity.as_ref().is_some_and(|id| id.covers(host)))
            .map(|e| e.conn.clone())
    }

    /// Remembers a TLS connection under `flow` with the identity its peer was
    /// authenticated as: a connection stox opened (`flow` is its destination) or one a
    /// peer aliased. An open connection already known with an identity stays; `false`
    /// then, unless it is this very one.
    pub fn authenticated(
        &self,
        flow: Flow,
        conn: &SipConnection,
        identity: Arc<PeerIdentity>,
    ) -> bool {
        let Ok(mut map) = self.map.lock() else {
            return false;
        };
        if let Some(known) = map.get(&flow) {
            if open(&known.conn) && known.identity.is_some() {
                return same(&known.conn, conn);
            }
        }
        map.retain(|_, e| open(&e.conn));
        map.insert(
            flow,
            Entry {
                conn: conn.clone(),
                identity: Some(identity),
            },
        );
        metrics::gauge!("stox_sip_flows").set(map.len() as f64);
        true
    }

    /// Remembers the verified client certificate of a TLS connection just accepted.
    pub fn client_verified(&self, conn: &SipConnection, identity: PeerIdentity) {
        let (Some(key), Ok(mut peers)) = (ends(conn), self.peers.lock()) else {
            return;
        };
        peers.retain(|_, (c, _)| open(c));
        peers.insert(key, (conn.clone(), Arc::new(identity)));
    }

    /// The verified client certificate of an accepted TLS connection.
    fn client_identity(&self, conn: &SipConnection) -> Option<Arc<PeerIdentity>> {
        let key = ends(conn)?;
        let peers = self.peers.lock().ok()?;
        peers
            .get(&key)
            .filter(|(c, _)| same(c, conn) && open(c))
            .map(|(_, id)| id.clone())
    }

    /// RFC 5923 §5, the server's part: a request came over `conn` (flow `flow`); if its
    /// topmost Via asks for an alias, the connection came over TLS and its client presented
    /// a verified certificate naming the Via sent-by, later requests of stox to that
    /// sent-by (port 5061 if none) go over this connection. Otherwise nothing is aliased
    /// (logged at debug with the reason).
    pub fn alias(&self, flow: Flow, conn: &SipConnection, headers: &[(String, String)]) {
        let Some(via) = crate::sipmsg::top_via(headers).filter(|v| v.alias()) else {
            return;
        };
        if flow.transport != Transport::Tls {
            debug!(remote = %flow.remote, transport = ?flow.transport, "Via alias ignored: RFC 5923 connection reuse is for TLS only");
            return;
        }
        let own = self.map.lock().ok().is_some_and(|map| {
            map.get(&flow)
                .is_some_and(|e| e.identity.is_some() && same(&e.conn, conn))
        });
        if own {
            // A connection stox opened: already known by its destination.
            return;
        }
        let identity = self.client_identity(conn);
        match super::mtls::alias_target(&via, identity.as_deref(), flow.remote) {
            Ok(target) => {
                let Some(identity) = identity else { return };
                let alias = Flow {
                    transport: Transport::Tls,
                    remote: target,
                };
                if self.authenticated(alias, conn, identity.clone()) {
                    metrics::counter!("stox_sip_tls_aliases_total").increment(1);
                    info!(remote = %flow.remote, alias = %target, certificate = %identity, "RFC 5923: TLS connection aliased; requests to the alias reuse it");
                } else {
                    debug!(remote = %flow.remote, alias = %target, "Via alias: another authenticated connection to that address is kept");
                }
            }
            Err(why) => {
                debug!(remote = %flow.remote, sent_by = %via.host, %why, "Via alias: connection not aliased (RFC 5923)")
            }
        }
    }
}

/// The TLS connections stox opened, by the server's address and the name its certificate
/// was verified for. A connection is reused only for a next hop of that same name: one
/// verified for `voip.test` proves nothing about `other.test`, even when DNS sends both to
/// the same address (RFC 5922 §4; RFC 5923 likewise ties reuse to the identity a
/// certificate proved).
#[derive(Clone, Default)]
pub struct TlsClients(Arc<Mutex<HashMap<(SocketAddr, String), SipConnection>>>);

impl TlsClients {
    /// The open connection to `dest` verified for `name`.
    pub fn get(&self, dest: SocketAddr, name: &str) -> Option<SipConnection> {
        let map = self.0.lock().ok()?;
        map.get(&(dest, name.to_ascii_lowercase()))
            .filter(|c| open(c))
            .cloned()
    }

    /// Remembers a connection to `dest` verified for `name`; forgets closed ones.
    pub fn insert(&self, dest: SocketAddr, name: &str, conn: &SipConnection) {
        let Ok(mut map) = self.0.lock() else { return };
        map.retain(|_, c| open(c));
        map.insert((dest, name.to_ascii_lowercase()), conn.clone());
    }
}

/// Outgoing TLS: new connections verified against `[sip.tls] ca` for the name the next hop
/// was found from, reused per [`TlsClients`]. Both the requests stox sends itself and the
/// INVITEs of the dialog layer (which connects to a pooled address) go through it.
#[derive(Clone)]
pub struct TlsDialer {
    endpoint: Arc<rsipstack::transaction::endpoint::EndpointInner>,
    ca: Option<Vec<u8>>,
    /// The certificate and key stox presents as a TLS client (`[sip.tls] cert`, `key`).
    client: Option<(Vec<u8>, Vec<u8>)>,
    clients: TlsClients,
    flows: Flows,
}

impl TlsDialer {
    /// A dialer trusting `ca` (PEM), presenting `client` (certificate and key, PEM) to a
    /// server that asks for one (mutual TLS, RFC 5923 §5), adding its connections to
    /// `endpoint`'s pool and to `flows`.
    pub fn new(
        endpoint: Arc<rsipstack::transaction::endpoint::EndpointInner>,
        ca: Option<Vec<u8>>,
        client: Option<(Vec<u8>, Vec<u8>)>,
        flows: Flows,
    ) -> TlsDialer {
        TlsDialer {
            endpoint,
            ca,
            client,
            clients: TlsClients::default(),
            flows,
        }
    }

    /// Whether a server's certificate can be verified at all (`[sip.tls] ca` is set).
    pub fn can_verify(&self) -> bool {
        self.ca.is_some()
    }

    /// An open TLS connection to `dest` whose peer proved `name` (see [`TlsDialer::connect`]),
    /// without opening one.
    pub fn open_to(&self, dest: SocketAddr, name: &str) -> Option<SipConnection> {
        self.flows
            .tls_to(dest, name)
            .or_else(|| self.clients.get(dest, name))
    }

    /// A TLS connection to `dest` whose peer proved `name`: one already open (reuse only
    /// for that same name, RFC 5923: one stox opened, or one the peer aliased to `dest` with
    /// a client certificate naming it), else a new one with `name` as SNI and as the
    /// identity the certificate must hold (RFC 5922 §7.2; an IP address for a literal),
    /// presenting stox's certificate if the server asks. A new one joins rsipstack's pool,
    /// which reads what comes back over it.
    pub async fn connect(
        &self,
        name: &str,
        dest: SocketAddr,
    ) -> Result<(SipConnection, SipAddr), String> {
        let addr = SipAddr {
            r#type: Some(rsipstack::sip::Transport::Tls),
            addr: dest.into(),
        };
        if let Some(conn) = self.open_to(dest, name) {
            debug!(%dest, %name, "TLS: reusing an open connection (RFC 5923)");
            return Ok((conn, addr));
        }
        let config = rsipstack::transport::TlsConfig {
            ca_certs: self.ca.clone(),
            sni_hostname: Some(name.to_string()),
            client_cert: self.client.as_ref().map(|(c, _)| c.clone()),
            client_key: self.client.as_ref().map(|(_, k)| k.clone()),
            ..Default::default()
        };
        let conn = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            rsipstack::transport::tls::TlsConnection::connect(
                &addr,
                Some(&config),
                None,
                Some(CancellationToken::new()),
            ),
        )
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
        let conn = SipConnection::Tls(conn);
        metrics::counter!("stox_sip_tls_connections_total", "side" => "opened").increment(1);
        info!(%dest, %name, "new TLS connection opened");
        self.endpoint.transport_layer.add_connection(conn.clone());
        self.clients.insert(dest, name, &conn);
        // Known under its flow with the name it proved: requests the server sends back over
        // it are matched to this flow, and it is reused only for that name.
        self.flows.authenticated(
            Flow {
                transport: Transport::Tls,
                remote: dest,
            },
            &conn,
            Arc::new(PeerIdentity::of_verified_host(name)),
        );
        Ok((conn, addr))
    }
}

/// A plain-TCP listening socket for a WebSocket listener, bound now so that a busy port
/// fails at start (rsipstack's own listeners only log it).
pub fn check_bind(addr: SocketAddr) -> std::io::Result<()> {
    std::net::TcpListener::bind(addr).map(drop)
}

/// The rustls server config of the `tls:` and `wss:` listeners: with `client_auth`, it
/// asks for a client certificate and takes a client without one (`mtls`).
pub fn server_config(
    cert: &[u8],
    key: &[u8],
    client_auth: Option<&ClientAuth>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("sip.tls.cert: {e}"))?;
    if certs.is_empty() {
        anyhow::bail!("sip.tls.cert: no certificate");
    }
    let key =
        PrivateKeyDer::from_pem_slice(key).map_err(|e| anyhow::anyhow!("sip.tls.key: {e}"))?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| anyhow::anyhow!("sip.tls: {e}"))?;
    let builder = match client_auth {
        Some(auth) => builder.with_client_cert_verifier(auth.handshake_verifier()),
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("sip.tls: certificate and key do not fit: {e}"))?;
    Ok(Arc::new(config))
}

/// Serves SIP over TLS (RFC 3261 §26.2) on `listener`: the handshake (with a client
/// certificate when `client_auth` asks for one, `mtls`), then the connection is handed to
/// rsipstack, which reads and answers on it like on its own. rsipstack 0.7.14's TLS
/// listener cannot ask for a client certificate nor tell which one came.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    local: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    client_auth: Option<Arc<ClientAuth>>,
    layer: Arc<rsipstack::transaction::endpoint::EndpointInner>,
    flows: Flows,
    cancel: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors, most likely: do not spin.
                    warn!(error = %e, "TLS accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => return,
        };
        let acceptor = acceptor.clone();
        let (layer, flows, auth) = (layer.clone(), flows.clone(), client_auth.clone());
        let cancel = cancel.child_token();
        tokio::spawn(async move {
            if let Err(e) =
                accept_tls(stream, remote, local, acceptor, auth, layer, flows, cancel).await
            {
                debug!(%remote, error = %e, "TLS connection not accepted");
            }
        });
    }
}

#[allow(clippy::too_many_arguments)]
async fn accept_tls(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    client_auth: Option<Arc<ClientAuth>>,
    layer: Arc<rsipstack::transaction::endpoint::EndpointInner>,
    flows: Flows,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let tls = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream))
        .await
        .map_err(|_| anyhow::anyhow!("TLS handshake timed out"))??;
    let presented = tls.get_ref().1.peer_certificates().map(<[_]>::to_vec);
    let identity = match (&client_auth, presented) {
        (Some(auth), Some(chain)) if !chain.is_empty() => match auth.verify(&chain) {
            Ok(id) => Some(id),
            Err(e) => {
                info!(%remote, error = %e, "TLS client certificate not verified against sip.tls.client_ca: the connection goes on without it");
                None
            }
        },
        _ => None,
    };
    let conn = rsipstack::transport::tls::TlsConnection::from_server_stream(
        tls,
        SipAddr {
            r#type: Some(rsipstack::sip::Transport::Tls),
            addr: local.into(),
        },
        SipAddr {
            r#type: Some(rsipstack::sip::Transport::Tls),
            addr: remote.into(),
        },
        Some(cancel),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let conn = SipConnection::Tls(conn);
    match identity {
        Some(id) => {
            info!(%remote, %local, certificate = %id, "new TLS connection with a verified client certificate");
            flows.client_verified(&conn, id);
        }
        None => info!(%remote, %local, "new TLS connection"),
    }
    metrics::counter!("stox_sip_tls_connections_total", "side" => "accepted").increment(1);
    layer.transport_layer.add_connection(conn);
    Ok(())
}

/// Sets the topmost Via of every request stox sends (its own, and those rsipstack's
/// dialogs build) for RFC 5923: over TLS, stox's TLS listener as sent-by (rsipstack would
/// name another listener: the `tls:` ones are stox's, not rsipstack's) and `alias` when
/// stox presents a client certificate; over any other transport no `alias` (rsipstack
/// 0.7.14 adds it over TCP as well, which RFC 5923 §5 leaves to TLS). Over secure
/// WebSocket likewise stox's `wss:` listener as sent-by (RFC 3261 §18.1.1, RFC 7118 §5.2):
/// that listener is stox's bridge, and rsipstack named its first listener's address.
pub struct ViaInspector {
    /// The first `tls:` listener.
    pub tls_local: Option<SocketAddr>,
    /// The first `wss:` listener.
    pub wss_local: Option<SocketAddr>,
    /// Whether stox has a certificate to present as a TLS client.
    pub alias: bool,
}

impl ViaInspector {
    /// The Via header value of a request to send.
    pub fn top_via(&self, value: &str) -> Option<String> {
        crate::sipmsg::rewrite_top_via(value, |via| {
            let tls = via.transport == "TLS";
            let local = match via.transport.as_str() {
                "TLS" => self.tls_local,
                "WSS" => self.wss_local,
                _ => None,
            };
            if let Some(local) = local {
                via.host = match local.ip() {
                    std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                    ip => ip.to_string(),
                };
                via.port = Some(local.port());
            }
            via.set_alias(tls && self.alias);
        })
    }
}

impl rsipstack::transaction::endpoint::MessageInspector for ViaInspector {
    fn before_send(&self, msg: SipMessage, _dest: Option<&SipAddr>) -> SipMessage {
        let SipMessage::Request(mut req) = msg else {
            return msg;
        };
        if let Some(h) = req
            .headers
            .iter_mut()
            .find(|h| matches!(h, rsipstack::sip::Header::Via(_)))
        {
            if let rsipstack::sip::Header::Via(via) = h {
                if let Some(value) = self.top_via(&via.0) {
                    *h = rsipstack::sip::Header::Via(value.into());
                }
            }
        }
        SipMessage::Request(req)
    }

    fn after_received(&self, msg: SipMessage, _from: Option<&SipAddr>) -> SipMessage {
        msg
    }
}

/// Serves secure WebSocket (RFC 7118 §4, `wss`) on `listener`: TLS, then the WebSocket
/// handshake with the `sip` subprotocol, then each text or binary frame is one SIP message.
pub async fn serve_wss(
    listener: tokio::net::TcpListener,
    local: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    layer: Arc<rsipstack::transaction::endpoint::EndpointInner>,
    cancel: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "WSS accept failed");
                    continue;
                }
            },
            _ = cancel.cancelled() => return,
        };
        let acceptor = acceptor.clone();
        let layer = layer.clone();
        let cancel = cancel.child_token();
        tokio::spawn(async move {
            if let Err(e) = wss_connection(stream, remote, local, acceptor, layer, cancel).await {
                debug!(%remote, error = %e, "WSS connection ended");
            }
        });
    }
}

async fn wss_connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    layer: Arc<rsipstack::transaction::endpoint::EndpointInner>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    use tokio_tungstenite::tungstenite::Message;
    let tls = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream))
        .await
        .map_err(|_| anyhow::anyhow!("TLS handshake timed out"))??;
    // RFC 7118 §4.1: the client asks for the `sip` subprotocol; the server echoes it.
    #[allow(clippy::result_large_err)] // the signature tungstenite's callback requires
    let callback = |req: &Request, mut resp: Response| {
        let wants_sip = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("sip"));
        if wants_sip {
            resp.headers_mut().insert(
                "sec-websocket-protocol",
                tokio_tungstenite::tungstenite::http::HeaderValue::from_static("sip"),
            );
        }
        Ok(resp)
    };
    let ws = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio_tungstenite::accept_hdr_async(tls, callback),
    )
    .await
    .map_err(|_| anyhow::anyhow!("WebSocket handshake timed out"))??;
    let (mut sink, mut read) = ws.split();
    let addr = SipAddr {
        r#type: Some(rsipstack::sip::Transport::Wss),
        addr: remote.into(),
    };
    // Messages for rsipstack go in `to_stack`; what rsipstack sends on the channel
    // connection comes out of `from_stack`.
    let (to_stack, stack_in) = tokio::sync::mpsc::unbounded_channel();
    let (stack_out, mut from_stack) = tokio::sync::mpsc::unbounded_channel();
    let conn = ChannelConnection::create_connection(
        stack_in,
        stack_out,
        addr.clone(),
        Some(cancel.clone()),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let conn = SipConnection::Channel(conn);
    layer.transport_layer.add_connection(conn.clone());
    info!(%remote, %local, "new secure WebSocket connection");
    let idle = std::time::Duration::from_secs(300);
    let result = loop {
        tokio::select! {
            out = from_stack.recv() => {
                let Some(TransportEvent::Incoming(msg, _, _)) = out else {
                    if out.is_none() { break Ok(()); }
                    continue;
                };
                if let Err(e) = sink.send(Message::Text(msg.to_string().into())).await {
                    break Err(e.into());
                }
            }
            frame = tokio::time::timeout(idle, read.next()) => {
                let frame = match frame {
                    Err(_) => break Err(anyhow::anyhow!("idle for 300 s")),
                    Ok(None) => break Ok(()),
                    Ok(Some(Err(e))) => break Err(e.into()),
                    Ok(Some(Ok(f))) => f,
                };
                let bytes: Vec<u8> = match frame {
                    Message::Text(t) => t.as_bytes().to_vec(),
                    Message::Binary(b) => b.to_vec(),
                    Message::Ping(p) => {
                        if let Err(e) = sink.send(Message::Pong(p)).await {
                            break Err(e.into());
                        }
                        continue;
                    }
                    Message::Close(_) => break Ok(()),
                    _ => continue,
                };
                // RFC 5626 §4.4.1 keepalive, as rsipstack's own WebSocket loop answers it.
                if bytes == b"\r\n\r\n" {
                    if let Err(e) = sink.send(Message::Binary(b"\r\n".to_vec().into())).await {
                        break Err(e.into());
                    }
                    continue;
                }
                let msg = match SipMessage::try_from(bytes.as_slice()) {
                    Ok(m) => m,
                    Err(e) => {
                        debug!(%remote, error = %e, "WSS: unparsable SIP message dropped");
                        continue;
                    }
                };
                let msg = match SipConnection::update_msg_received(
                    msg,
                    remote,
                    rsipstack::sip::Transport::Wss,
                ) {
                    Ok(m) => m,
                    Err(e) => {
                        debug!(%remote, error = %e, "WSS: bad Via; message dropped");
                        continue;
                    }
                };
                if to_stack
                    .send(TransportEvent::Incoming(msg, conn.clone(), addr.clone()))
                    .is_err()
                {
                    break Ok(());
                }
            }
            _ = cancel.cancelled() => break Ok(()),
        }
    };
    // The flow is gone: the token tells `Flows` and rsipstack (dropping `to_stack` ends
    // the channel's serve loop, which retires the connection).
    cancel.cancel();
    let _ = sink.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_via_of_requests_stox_sends() {
        let tls = ViaInspector {
            tls_local: Some("127.0.0.1:5061".parse().unwrap()),
            wss_local: None,
            alias: true,
        };
        // Over TLS: stox's TLS listener as sent-by (rsipstack's dialogs name its first
        // listener) and alias.
        assert_eq!(
            tls.top_via("SIP/2.0/TLS 127.0.0.1:5060;branch=z9hG4bKa;rport;alias")
                .as_deref(),
            Some("SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKa;rport;alias")
        );
        assert_eq!(
            tls.top_via("SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKa;rport")
                .as_deref(),
            Some("SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKa;rport;alias")
        );
        // Never over TCP (rsipstack adds it there), UDP or WebSocket.
        for t in ["TCP", "UDP", "WSS"] {
            assert_eq!(
                tls.top_via(&format!("SIP/2.0/{t} 127.0.0.1:5060;branch=z9hG4bKa;alias"))
                    .as_deref(),
                Some(format!("SIP/2.0/{t} 127.0.0.1:5060;branch=z9hG4bKa").as_str())
            );
        }
        // Without a certificate to present, no alias even over TLS.
        let plain = ViaInspector {
            tls_local: Some("[::1]:5061".parse().unwrap()),
            wss_local: None,
            alias: false,
        };
        assert_eq!(
            plain
                .top_via("SIP/2.0/TLS 127.0.0.1:5060;branch=z9hG4bKa;alias")
                .as_deref(),
            Some("SIP/2.0/TLS [::1]:5061;branch=z9hG4bKa")
        );
        // Over secure WebSocket: stox's wss listener as sent-by, no alias; other
        // transports keep what rsipstack wrote.
        let wss = ViaInspector {
            tls_local: None,
            wss_local: Some("127.0.0.1:8089".parse().unwrap()),
            alias: true,
        };
        assert_eq!(
            wss.top_via("SIP/2.0/WSS 127.0.0.1:5060;branch=z9hG4bKa;rport")
                .as_deref(),
            Some("SIP/2.0/WSS 127.0.0.1:8089;branch=z9hG4bKa;rport")
        );
        assert_eq!(
            wss.top_via("SIP/2.0/WS 127.0.0.1:8088;branch=z9hG4bKa")
                .as_deref(),
            Some("SIP/2.0/WS 127.0.0.1:8088;branch=z9hG4bKa")
        );
    }
}

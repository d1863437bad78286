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

/// The stream connections requests came in on (and TLS connections stox opened), by flow.
#[derive(Clone, Default)]
pub struct Flows(Arc<Mutex<HashMap<Flow, SipConnection>>>);

impl Flows {
    /// Remembers the connection of a request that came in; forgets closed ones when a new
    /// flow appears.
    pub fn learn(&self, flow: Flow, conn: &SipConnection) {
        let Ok(mut map) = self.0.lock() else { return };
        if let Some(known) = map.get(&flow) {
            if open(known) {
                return;
            }
        }
        map.retain(|_, c| open(c));
        map.insert(flow, conn.clone());
        metrics::gauge!("stox_sip_flows").set(map.len() as f64);
    }

    /// The connection of a flow, if it is still open.
    pub fn get(&self, flow: &Flow) -> Option<SipConnection> {
        let map = self.0.lock().ok()?;
        map.get(flow).filter(|c| open(c)).cloned()
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
    clients: TlsClients,
    flows: Flows,
}

impl TlsDialer {
    /// A dialer trusting `ca` (PEM), adding its connections to `endpoint`'s pool and to
    /// `flows`.
    pub fn new(
        endpoint: Arc<rsipstack::transaction::endpoint::EndpointInner>,
        ca: Option<Vec<u8>>,
        flows: Flows,
    ) -> TlsDialer {
        TlsDialer {
            endpoint,
            ca,
            clients: TlsClients::default(),
            flows,
        }
    }

    /// Whether a server's certificate can be verified at all (`[sip.tls] ca` is set).
    pub fn can_verify(&self) -> bool {
        self.ca.is_some()
    }

    /// A TLS connection to `dest` whose certificate proved `name`: one already open (reuse
    /// only for that same name, RFC 5923), else a new one with `name` as SNI and as the
    /// identity the certificate must hold (RFC 5922 §7.2; an IP address for a literal).
    /// A new one joins rsipstack's pool, which reads what comes back over it.
    pub async fn connect(
        &self,
        name: &str,
        dest: SocketAddr,
    ) -> Result<(SipConnection, SipAddr), String> {
        let addr = SipAddr {
            r#type: Some(rsipstack::sip::Transport::Tls),
            addr: dest.into(),
        };
        if let Some(conn) = self.clients.get(dest, name) {
            return Ok((conn, addr));
        }
        let config = rsipstack::transport::TlsConfig {
            ca_certs: self.ca.clone(),
            sni_hostname: Some(name.to_string()),
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
        self.endpoint.transport_layer.add_connection(conn.clone());
        self.clients.insert(dest, name, &conn);
        // Requests the server sends back over it are matched to this flow.
        self.flows.learn(
            Flow {
                transport: Transport::Tls,
                remote: dest,
            },
            &conn,
        );
        debug!(%dest, %name, "TLS connection verified");
        Ok((conn, addr))
    }
}

/// A plain-TCP listening socket for a TLS or WebSocket listener, bound now so that a busy
/// port fails at start (rsipstack's own listeners only log it).
pub fn check_bind(addr: SocketAddr) -> std::io::Result<()> {
    std::net::TcpListener::bind(addr).map(drop)
}

/// The rustls server config of the `tls:` and `wss:` listeners.
pub fn server_config(cert: &[u8], key: &[u8]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
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
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("sip.tls: certificate and key do not fit: {e}"))?;
    Ok(Arc::new(config))
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

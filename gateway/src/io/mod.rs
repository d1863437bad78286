//! The only socket and tokio code of the gateway: it owns the `Gateway` value
//! in one event loop (ARCHITECTURE.md "Data flow"), turns SIP transactions,
//! stanzas and link events into `Input`s, and executes the `Output`s.

pub mod badsip;
mod calls;
pub mod mtls;
pub mod nist;
pub mod transports;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rsipstack::sip::{Header, SipMessage};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::{SipAddr, SipConnection, TransportLayer};
use rsipstack::EndpointBuilder;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{Config, ListenTransport};
use crate::core::{CallKey, DialogEvent, Gateway, Input, Output, SendFailure, Settings, TxId};
use crate::sipmsg::{Flow, OutRequest, SipRequest, SipResponse, Transport};

/// A final response decided by the core for a server transaction.
struct Reply {
    code: u16,
    headers: Vec<(String, String)>,
    /// The To tag the core chose (dialog-creating 2xx), else one is made up.
    to_tag: Option<String>,
    /// Told once the response is on its way (see `Gates`).
    sent: oneshot::Sender<()>,
}

/// The responses decided in one batch of outputs, which requests decided in the same batch
/// wait for: a SUBSCRIBE's 200 leaves before its first NOTIFY (RFC 6665 §4.1.2.4 lets a
/// NOTIFY come first, but JsSIP answers such a NOTIFY 481), and over one connection the
/// order is then the core's.
type Gates = Vec<futures::future::Shared<oneshot::Receiver<()>>>;

enum Event {
    Sip(Box<Transaction>),
    /// A MESSAGE over UDP whose transaction `nist` runs (no rsipstack transaction).
    Udp(Box<nist::Incoming>),
    Response(TxId, Result<SipResponse, SendFailure>),
    Dialog(CallKey, DialogEvent),
    Relay(crate::media::relay::RelayEvent),
    Admin(crate::admin::calls::CallRequest),
    /// The next hop of an INVITE to a domain, located (RFC 3263), or why not.
    Located {
        call: CallKey,
        req: Box<crate::sipmsg::OutRequest>,
        hop: Result<Vec<(SocketAddr, Transport)>, (u16, String)>,
    },
    /// A stream connection requests came in on closed (RFC 5626 §7).
    FlowClosed(Flow),
}

/// Everything the client-transaction tasks need.
#[derive(Clone)]
struct Sender {
    endpoint: Arc<rsipstack::transaction::endpoint::EndpointInner>,
    udp_local: Option<SocketAddr>,
    tcp_local: Option<SocketAddr>,
    /// The first listener of each stream transport (the Via sent-by of what leaves on it).
    stream_locals: HashMap<Transport, SocketAddr>,
    proxy: Option<SocketAddr>,
    /// RFC 3263 location of next hops named by a domain (`None`: the system's A/AAAA
    /// lookup only, when no resolver could be set up).
    dns: Option<stox_sip::locate::Resolver>,
    events: mpsc::UnboundedSender<Event>,
    /// Stream connections requests came in on, to send back over (RFC 5626 §5.3).
    flows: transports::Flows,
    /// Outgoing TLS (`[sip.tls] ca`), connections reused per verified name.
    tls: transports::TlsDialer,
}

/// Runs the daemon until SIGINT/SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // rsipstack builds rustls with ring; tokio-xmpp may bring aws-lc-rs:
    // one process-wide provider (ARCHITECTURE.md dependencies).
    let _ = rustls::crypto::ring::default_provider().install_default();

    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    crate::metrics::describe();

    std::fs::create_dir_all(&config.store.path)
        .with_context(|| format!("creating store directory {}", config.store.path.display()))?;
    let store = stox_mappings::Store::open_sled(&config.store.path)
        .with_context(|| format!("opening the store at {}", config.store.path.display()))?;

    let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
    let outstanding = Arc::new(AtomicUsize::new(0));
    let max_pending = config.sip.max_pending_requests;

    let cancel = CancellationToken::new();
    let transport_layer = TransportLayer::new(cancel.clone());
    let mut udp_local = None;
    let mut tcp_local = None;
    let mut stream_locals: HashMap<Transport, SocketAddr> = HashMap::new();
    let mut wss_listeners = Vec::new();
    let mut tls_listeners = Vec::new();
    let mut udp_fast: Option<Arc<nist::Table>> = None;
    let tls_files = config.tls_files()?;
    // Mutual TLS (`[sip.tls] client_ca`): the `tls:` listeners ask for a client
    // certificate; RFC 5923 aliases need one (docs/transports.md).
    let client_auth = tls_files
        .client_ca
        .as_deref()
        .map(transports::ClientAuth::new)
        .transpose()?
        .map(Arc::new);
    let tls_client = tls_files.cert.clone().zip(tls_files.key.clone());
    let (tls_server, wss_server) = match &tls_client {
        Some((cert, key)) => (
            Some(transports::server_config(
                cert,
                key,
                client_auth.as_deref(),
            )?),
            Some(transports::server_config(cert, key, None)?),
        ),
        None => (None, None),
    };
    if tls_files.ca.is_some() || tls_client.is_some() {
        // rsipstack's own TLS connections (calls): the same trust anchors, and stox's
        // certificate for a server that asks for one.
        transport_layer.set_tls_config(rsipstack::transport::TlsConfig {
            ca_certs: tls_files.ca.clone(),
            client_cert: tls_client.as_ref().map(|(c, _)| c.clone()),
            client_key: tls_client.as_ref().map(|(_, k)| k.clone()),
            ..Default::default()
        });
    }
    for listen in config.listens()? {
        match listen.transport {
            ListenTransport::Udp => {
                let socket = bind_udp(listen.addr)
                    .with_context(|| format!("binding SIP UDP {}", listen.addr))?;
                let local = socket.local_addr()?;
                let socket = Arc::new(socket);
                let to_core = events_tx.clone();
                let fast = nist::Table::new(
                    socket.clone(),
                    concat!("stox/", env!("CARGO_PKG_VERSION")),
                    outstanding.clone(),
                    max_pending,
                    config.t1(),
                    move |m| {
                        let ev = match m {
                            nist::ToCore::Request(r) => Event::Udp(Box::new(r)),
                            nist::ToCore::Response(id, r) => Event::Response(id, r),
                        };
                        to_core.send(ev).is_ok()
                    },
                );
                udp_fast.get_or_insert(fast.clone());
                let conn = rsipstack::transport::udp::UdpConnection::from_socket(
                    Arc::new(badsip::GuardedUdp::with_fast_path(socket, fast)),
                    None,
                    Some(cancel.child_token()),
                )
                .await
                .map_err(|e| anyhow::anyhow!("SIP UDP {}: {e}", listen.addr))?;
                transport_layer.add_transport(conn.into());
                udp_local.get_or_insert(local);
                info!(%local, "SIP listening on UDP");
            }
            ListenTransport::Tcp => {
                let conn = rsipstack::transport::TcpListenerConnection::new(listen.addr, None)
                    .await
                    .map_err(|e| anyhow::anyhow!("SIP TCP {}: {e}", listen.addr))?;
                transport_layer.add_transport(conn.into());
                tcp_local.get_or_insert(listen.addr);
                stream_locals.entry(Transport::Tcp).or_insert(listen.addr);
                info!(local = %listen.addr, "SIP listening on TCP");
            }
            ListenTransport::Tls => {
                // stox's own listener (`transports::serve_tls`), for client certificates.
                let listener = tokio::net::TcpListener::bind(listen.addr)
                    .await
                    .with_context(|| format!("binding SIP TLS {}", listen.addr))?;
                tls_listeners.push((listener, listen.addr));
                stream_locals.entry(Transport::Tls).or_insert(listen.addr);
                info!(local = %listen.addr, client_certificates = client_auth.is_some(), "SIP listening on TLS");
            }
            ListenTransport::Ws => {
                transports::check_bind(listen.addr)
                    .with_context(|| format!("binding SIP WebSocket {}", listen.addr))?;
                let conn = rsipstack::transport::WebSocketListenerConnection::new(
                    listen.addr,
                    None,
                    false,
                )
                .await
                .map_err(|e| anyhow::anyhow!("SIP WS {}: {e}", listen.addr))?;
                transport_layer.add_transport(conn.into());
                stream_locals.entry(Transport::Ws).or_insert(listen.addr);
                info!(local = %listen.addr, "SIP listening on WebSocket");
            }
            ListenTransport::Wss => {
                let listener = tokio::net::TcpListener::bind(listen.addr)
                    .await
                    .with_context(|| format!("binding SIP secure WebSocket {}", listen.addr))?;
                wss_listeners.push((listener, listen.addr));
                stream_locals.entry(Transport::Wss).or_insert(listen.addr);
                info!(local = %listen.addr, "SIP listening on secure WebSocket");
            }
        }
    }
    // RFC 3261 §17: every timer of rsipstack's transactions and dialogs derives from T1
    // (`[sip] t1_ms`); Timer B / F / H and the 2xx-ACK window are 64·T1.
    let t1 = config.t1();
    let endpoint = EndpointBuilder::new()
        .with_option(rsipstack::transaction::endpoint::EndpointOption {
            t1,
            t1x64: t1 * 64,
            ..Default::default()
        })
        .with_user_agent(concat!("stox/", env!("CARGO_PKG_VERSION")))
        .with_transport_layer(transport_layer)
        .with_cancel_token(cancel.clone())
        .with_inspector(Box::new(transports::ViaInspector {
            tls_local: stream_locals.get(&Transport::Tls).copied(),
            wss_local: stream_locals.get(&Transport::Wss).copied(),
            alias: tls_client.is_some(),
        }))
        .with_allows(vec![
            rsipstack::sip::Method::Invite,
            rsipstack::sip::Method::Ack,
            rsipstack::sip::Method::Bye,
            rsipstack::sip::Method::Cancel,
            rsipstack::sip::Method::Message,
            rsipstack::sip::Method::Options,
            rsipstack::sip::Method::Subscribe,
            rsipstack::sip::Method::Notify,
            rsipstack::sip::Method::Publish,
            rsipstack::sip::Method::Register,
        ])
        .build();
    let mut incoming = endpoint
        .incoming_transactions()
        .map_err(|e| anyhow::anyhow!("SIP endpoint: {e}"))?;
    let endpoint_inner = endpoint.inner.clone();
    let flows = {
        let events = events_tx.clone();
        transports::Flows::with_on_close(move |flow| {
            let _ = events.send(Event::FlowClosed(flow));
        })
    };
    for (listener, local) in tls_listeners {
        let tls = tls_server
            .clone()
            .ok_or_else(|| anyhow::anyhow!("sip.tls: a tls listener needs cert and key"))?;
        tokio::spawn(transports::serve_tls(
            listener,
            local,
            tls,
            client_auth.clone(),
            endpoint_inner.clone(),
            flows.clone(),
            cancel.child_token(),
        ));
    }
    for (listener, local) in wss_listeners {
        let tls = wss_server
            .clone()
            .ok_or_else(|| anyhow::anyhow!("sip.tls: a wss listener needs cert and key"))?;
        tokio::spawn(transports::serve_wss(
            listener,
            local,
            tls,
            endpoint_inner.clone(),
            cancel.child_token(),
        ));
    }
    let dialog_layer = Arc::new(rsipstack::dialog::dialog_layer::DialogLayer::new(
        endpoint.inner.clone(),
    ));
    tokio::spawn(async move { endpoint.serve().await });

    let media_address = config.media_address()?;
    let (port_min, port_max) = config.media_ports()?;
    let (relay, mut relay_events) =
        crate::media::relay::Relay::new(crate::media::relay::RelayConfig {
            address: media_address,
            port_min,
            port_max,
        })
        .map_err(|e| anyhow::anyhow!("media relay: {e}"))?;
    info!(address = %media_address, ports = %format!("{port_min}-{port_max}"), "media relay ready");

    let proxy = config
        .outbound_proxy_addr()
        .map_err(|e| anyhow::anyhow!("sip.outbound_proxy: {e}"))?;
    let default_transport = match proxy {
        Some((ListenTransport::Udp, _)) if udp_local.is_some() => Transport::Udp,
        Some((t, _)) => t,
        _ if udp_local.is_none() => Transport::Tcp,
        _ => Transport::Udp,
    };

    let (link, mut link_events) = stox_xmpp::link::spawn(stox_xmpp::link::LinkConfig {
        server: config.xmpp.server.clone(),
        component: config.xmpp.component.clone(),
        secret: config.xmpp.secret.clone(),
        keepalive: config.keepalive(),
        backoff_initial: Duration::from_millis(250),
        backoff_max: Duration::from_secs(config.xmpp.reconnect_max_secs),
        conflict_backoff: Duration::from_secs(10),
        ping_to: None,
    });

    let link_up = Arc::new(AtomicBool::new(false));
    let (admin_calls, mut admin_calls_rx) = mpsc::unbounded_channel();
    let forward = events_tx.clone();
    tokio::spawn(async move {
        while let Some(r) = admin_calls_rx.recv().await {
            if forward.send(Event::Admin(r)).is_err() {
                break;
            }
        }
    });
    let forward = events_tx.clone();
    tokio::spawn(async move {
        while let Some(ev) = relay_events.recv().await {
            if forward.send(Event::Relay(ev)).is_err() {
                break;
            }
        }
    });
    let admin_listen: SocketAddr = config.admin.listen.parse()?;
    let admin = crate::admin::router(crate::admin::AdminState {
        token: config.admin.token.clone(),
        store: store.clone(),
        link_up: link_up.clone(),
        metrics,
        calls: Some(admin_calls),
        realm: config.xmpp.component.clone(),
    });
    let listener = tokio::net::TcpListener::bind(admin_listen)
        .await
        .with_context(|| format!("binding the admin API on {admin_listen}"))?;
    info!(listen = %admin_listen, "admin API listening");
    let admin_cancel = cancel.clone();
    tokio::spawn(async move {
        let r = axum::serve(listener, admin)
            .with_graceful_shutdown(async move { admin_cancel.cancelled().await })
            .await;
        if let Err(e) = r {
            warn!(error = %e, "admin API stopped");
        }
    });

    let settings = Settings {
        home: config.xmpp.home_domain.clone(),
        component: config.xmpp.component.clone(),
        message_type: config.messaging.message_type.clone(),
        bounce_window: Duration::from_millis(config.messaging.bounce_window_ms),
        udp_max_bytes: config.messaging.udp_max_bytes,
        default_transport,
        epoch: (Instant::now(), std::time::SystemTime::now()),
        calls: config.call_settings(),
        presence: config.presence_settings(),
        accounts: config.account_settings(),
        registrar: config.registrar_settings({
            let mut secret = [0u8; 32];
            secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            secret
        }),
        contacts: crate::core::LocalContacts {
            udp: udp_local,
            tcp: tcp_local,
            tls: stream_locals.get(&Transport::Tls).copied(),
        },
    };
    let seed =
        u64::from_str_radix(&uuid::Uuid::new_v4().simple().to_string()[..16], 16).unwrap_or(1);
    let mut gateway =
        Gateway::new(settings, &store, seed).map_err(|e| anyhow::anyhow!("addresses: {e}"))?;
    gateway.restore_presence(Instant::now());
    gateway.restore_registrar(Instant::now());
    gateway.restore_accounts(Instant::now());

    let sip_local = udp_local
        .or(tcp_local)
        .or_else(|| stream_locals.values().next().copied())
        .ok_or_else(|| anyhow::anyhow!("no SIP listener"))?;
    let dns = match config.dns_server()? {
        Some(server) => Some(
            stox_sip::locate::Resolver::with_server(server)
                .map_err(|e| anyhow::anyhow!("sip.dns_server {server}: {e}"))?,
        ),
        None => match stox_sip::locate::Resolver::system() {
            Ok(r) => Some(r),
            Err(e) => {
                warn!(error = %e, "no DNS resolver configuration: SIP domains are located by A/AAAA only (RFC 3263 NAPTR/SRV off)");
                None
            }
        },
    };
    let tls = transports::TlsDialer::new(
        endpoint_inner.clone(),
        tls_files.ca.clone(),
        tls_client.clone(),
        flows.clone(),
    );
    let mut call_io = calls::CallIo::new(
        dialog_layer,
        relay,
        events_tx.clone(),
        sip_local,
        tcp_local,
        calls::Routing {
            proxy: proxy.map(|(_, a)| a),
            transport: default_transport,
            dns: dns.clone(),
            tls: tls.clone(),
        },
    )?;
    call_io.set_stream_contacts(&stream_locals);
    let sender = Sender {
        endpoint: endpoint_inner,
        udp_local,
        tcp_local,
        stream_locals,
        proxy: proxy.map(|(_, a)| a),
        dns,
        events: events_tx.clone(),
        flows: flows.clone(),
        tls,
    };
    // Server transactions come in on their own task so that the loop below
    // only ever sees whole requests.
    let sip_events = events_tx.clone();
    let in_progress = outstanding.clone();
    tokio::spawn(async move {
        while let Some(mut tx) = incoming.recv().await {
            // Overload control (RFC 3261 §21.5.4): refuse at once rather than
            // queue without bound; the sender retries after Retry-After.
            if in_progress.load(Ordering::Relaxed) >= max_pending {
                metrics::counter!("stox_sip_overload_rejected_total").increment(1);
                tokio::spawn(async move {
                    let retry = vec![Header::Other("Retry-After".into(), "1".into())];
                    let _ = tx.reply_with(503.into(), retry, None).await;
                });
                continue;
            }
            in_progress.fetch_add(1, Ordering::Relaxed);
            if sip_events.send(Event::Sip(Box::new(tx))).is_err() {
                break;
            }
        }
    });

    let mut replies: HashMap<TxId, oneshot::Sender<Reply>> = HashMap::new();
    let mut udp_replies: HashMap<TxId, nist::Pending> = HashMap::new();
    let mut next_server_tx: TxId = 1;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut media_metrics = tokio::time::interval(Duration::from_secs(1));
    media_metrics.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    info!(component = %config.xmpp.component, home = %config.xmpp.home_domain, "stox running");
    loop {
        let timeout = gateway.poll_timeout();
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                let now = Instant::now();
                let mut next = Some(ev);
                while let Some(ev) = next.take() {
                    match ev {
                        // The UDP fast path answers through `udp_replies`.
                        Event::Udp(incoming) => on_udp_request(&mut gateway, now, *incoming, &mut udp_replies, &mut next_server_tx),
                        ev => on_event(&mut gateway, now, ev, &mut call_io, &mut replies, &mut next_server_tx, &outstanding, &flows),
                    }
                    // Drain whatever else is already queued before the outputs.
                    next = events.try_recv().ok();
                }
            }
            ev = link_events.recv() => {
                let Some(ev) = ev else { break };
                let now = Instant::now();
                let mut next = Some(ev);
                while let Some(ev) = next.take() {
                    match ev {
                        stox_xmpp::link::LinkEvent::Up => {
                            link_up.store(true, Ordering::Relaxed);
                            metrics::gauge!("stox_xmpp_link_up").set(1.0);
                            info!("XMPP component link up");
                            gateway.handle_input(now, Input::LinkUp);
                        }
                        stox_xmpp::link::LinkEvent::Down { reason } => {
                            link_up.store(false, Ordering::Relaxed);
                            metrics::gauge!("stox_xmpp_link_up").set(0.0);
                            warn!(%reason, "XMPP component link down");
                            gateway.handle_input(now, Input::LinkDown);
                        }
                        stox_xmpp::link::LinkEvent::Stanza(s) => {
                            metrics::counter!("stox_stanzas_received_total").increment(1);
                            gateway.handle_input(now, Input::Stanza(s));
                        }
                    }
                    next = link_events.try_recv().ok();
                    // Bound the batch so SIP input is not starved.
                    if next.is_none() { break; }
                }
            }
            _ = sleep_until(timeout) => {
                gateway.handle_timeout(Instant::now());
            }
            _ = media_metrics.tick() => {
                call_io.publish_media_metrics();
                gateway.publish_presence_metrics();
            }
            _ = tokio::signal::ctrl_c() => { info!("SIGINT: shutting down"); break; }
            _ = terminate.recv() => { info!("SIGTERM: shutting down"); break; }
        }
        // Records written by this batch (subscriptions, registrations) are made durable
        // once, before anything the batch decided leaves.
        if gateway.take_tables_dirty() {
            if let Err(e) = store.tables.flush() {
                warn!(error = %e, "store flush failed");
            }
        }
        // `202 Accepted` promises durability: one flush of the outbox for the
        // whole batch, before the first 202 leaves (see `Output::SipReply`).
        let mut flushed: Option<bool> = None;
        let mut gates: Gates = Vec::new();
        while let Some(out) = gateway.poll_output() {
            match out {
                Output::SipReply {
                    tx,
                    code,
                    headers,
                    to_tag,
                } => {
                    let (code, headers) = if code == 202 {
                        let ok = *flushed.get_or_insert_with(|| match store.outbox.flush() {
                            Ok(()) => true,
                            Err(e) => {
                                warn!(error = %e, "outbox flush failed: answering 503 instead of 202");
                                false
                            }
                        });
                        if ok {
                            (code, headers)
                        } else {
                            (503, vec![("Retry-After".to_string(), "5".to_string())])
                        }
                    } else {
                        (code, headers)
                    };
                    if let Some(r) = replies.remove(&tx) {
                        let (sent, gate) = oneshot::channel();
                        gates.push(futures::FutureExt::shared(gate));
                        let _ = r.send(Reply {
                            code,
                            headers,
                            to_tag,
                            sent,
                        });
                    } else if let Some(p) = udp_replies.remove(&tx) {
                        p.reply(code, headers);
                    }
                }
                Output::Stanza(s) => {
                    metrics::counter!("stox_stanzas_sent_total").increment(1);
                    if let Err(e) = link.send(s) {
                        warn!(error = %e, "component link closed");
                    }
                }
                Output::Dialog { call, action } => call_io.act(call, action),
                Output::Media { call, cmd } => {
                    if let Some(result) = call_io.media(call, cmd) {
                        gateway.handle_input(Instant::now(), Input::MediaStarted { call, result });
                    }
                }
                Output::SipSend { tx, req, transport } => {
                    // MESSAGE over UDP to an IP address: `nist` runs the transaction.
                    let req = match (&udp_fast, transport, sender.udp_local) {
                        (Some(fast), Transport::Udp, Some(local))
                            if req.flow.is_none() && udp_only(&req) =>
                        {
                            match fast.send_request(tx, req, local, sender.proxy) {
                                None => continue,
                                Some(req) => req,
                            }
                        }
                        _ => req,
                    };
                    let sender = sender.clone();
                    let gates = gates.clone();
                    tokio::spawn(async move {
                        for gate in gates {
                            let _ = gate.await;
                        }
                        let result = send_request(&sender, req, transport).await;
                        if let Err(e) = &result {
                            debug!(error = ?e, "SIP request not answered");
                        }
                        let _ = sender.events.send(Event::Response(tx, result));
                    });
                }
            }
        }
    }
    if let Err(e) = store.outbox.flush() {
        warn!(error = %e, "final outbox flush failed");
    }
    cancel.cancel();
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let domain = if addr.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Bursts of thousands of MESSAGEs per second overflow the default buffer.
    // The kernel caps SO_RCVBUF at net.core.rmem_max (208 KiB by default);
    // with CAP_NET_ADMIN, SO_RCVBUFFORCE goes past it.
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(8 << 20);
    force_recv_buffer(&socket, 8 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

#[cfg(target_os = "linux")]
fn force_recv_buffer(socket: &socket2::Socket, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket descriptor and a c_int option value of the size passed.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        debug!("SO_RCVBUFFORCE not permitted; the UDP receive buffer stays at net.core.rmem_max");
    }
}

#[cfg(not(target_os = "linux"))]
fn force_recv_buffer(_socket: &socket2::Socket, _bytes: i32) {}

#[allow(clippy::too_many_arguments)]
fn on_event(
    gateway: &mut Gateway,
    now: Instant,
    ev: Event,
    call_io: &mut calls::CallIo,
    replies: &mut HashMap<TxId, oneshot::Sender<Reply>>,
    next: &mut TxId,
    outstanding: &Arc<AtomicUsize>,
    flows: &transports::Flows,
) {
    match ev {
        Event::Sip(tx) => on_server_transaction(
            gateway,
            now,
            *tx,
            call_io,
            replies,
            next,
            outstanding,
            flows,
        ),
        // Handled in the loop, which holds the fast path's pending replies.
        Event::Udp(_) => warn!("a fast-path MESSAGE reached on_event; dropped"),
        Event::Response(id, result) => {
            gateway.handle_input(now, Input::SipResponse { tx: id, result })
        }
        Event::Dialog(call, event) => {
            call_io.dialog_ended(call, &event);
            if !call_io.failover(call, &event) {
                gateway.handle_input(now, Input::Dialog { call, event });
            }
        }
        Event::Relay(ev) => {
            if let Some(call) = call_io.relay_event(&ev) {
                gateway.handle_input(
                    now,
                    Input::Media {
                        call,
                        event: ev.kind,
                    },
                );
            }
        }
        Event::Admin(crate::admin::calls::CallRequest::List(reply)) => {
            let calls = gateway
                .calls()
                .into_iter()
                .map(|call| {
                    let media = call_io
                        .media_of(call.id)
                        .map(|m| crate::admin::calls::MediaView {
                            state: m.state,
                            xmpp_local: m.xmpp_local.to_string(),
                            sip_local: m.sip_local.to_string(),
                            xmpp: m.counters.xmpp,
                            sip: m.counters.sip,
                        });
                    crate::admin::calls::CallView { call, media }
                })
                .collect();
            let _ = reply.send(calls);
        }
        Event::Admin(crate::admin::calls::CallRequest::Hangup(id, reply)) => {
            let _ = reply.send(gateway.hangup_call(id));
        }
        Event::Admin(crate::admin::calls::CallRequest::Subscriptions(reply)) => {
            let _ = reply.send(gateway.subscriptions(now));
        }
        Event::Located { call, req, hop } => call_io.located(call, *req, hop),
        Event::FlowClosed(flow) => gateway.handle_input(now, Input::FlowClosed(flow)),
        Event::Admin(crate::admin::calls::CallRequest::Accounts(r)) => {
            crate::admin::accounts::answer(gateway, now, r);
        }
    }
}

/// The core's view of an rsipstack request (its body passed apart, so a caller that owns the
/// request can move it).
fn sip_request(req: &rsipstack::sip::Request, body: Vec<u8>, transport: Transport) -> SipRequest {
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| (h.name().to_string(), h.value().to_string()))
        .collect();
    SipRequest {
        method: req.method.to_string(),
        uri: req.uri.to_string(),
        source: crate::sipmsg::via_source(&headers),
        headers,
        body,
        transport,
    }
}

/// Puts the core's To tag on a request about to be answered (RFC 3261 §8.2.6.2: the
/// response copies the request's To and adds the tag); `reply_with` keeps a tag it finds.
fn set_to_tag(req: &mut rsipstack::sip::Request, tag: &str) {
    use rsipstack::sip::prelude::HeadersExt;
    let Ok(to) = req.to_header() else { return };
    if to.tag().ok().flatten().is_some() {
        return;
    }
    let tagged = to.with_tag(tag.to_string().into());
    req.headers.unique_push(tagged.into());
}

#[allow(clippy::too_many_arguments)]
fn on_server_transaction(
    gateway: &mut Gateway,
    now: Instant,
    tx: Transaction,
    call_io: &mut calls::CallIo,
    replies: &mut HashMap<TxId, oneshot::Sender<Reply>>,
    next: &mut TxId,
    outstanding: &Arc<AtomicUsize>,
    flows: &transports::Flows,
) {
    let flow = tx.connection.as_ref().and_then(transports::flow_of);
    let transport = flow.map_or(Transport::Udp, |f| f.transport);
    let mut value = sip_request(&tx.original, tx.original.body.clone(), transport);
    if let (Some(flow), Some(conn)) = (flow, tx.connection.as_ref()) {
        // Over a stream the peer is the other end of the connection, whatever its Via
        // says (a WebSocket client writes an `.invalid` host, RFC 7118 §5.2).
        value.source = Some(flow.remote);
        flows.learn(flow, conn);
        // RFC 5923: a TLS client asking, with a certificate, for this connection to carry
        // stox's requests to it.
        flows.alias(flow, conn, &value.headers);
    }
    // A new INVITE from a SIP user of the component domain must be authenticated before a
    // dialog exists (the core decides; the challenge needs headers a dialog's reject
    // cannot carry).
    if value.method == "INVITE" && value.header("To").and_then(crate::sipmsg::tag_of).is_none() {
        let refused = gateway
            .refuse_unauthenticated(now, &value)
            .or_else(|| gateway.redirect_invite(now, &value));
        if let Some((code, headers)) = refused {
            outstanding.fetch_sub(1, Ordering::Relaxed);
            let mut tx = tx;
            tokio::spawn(async move {
                let headers = headers
                    .into_iter()
                    .map(|(n, v)| Header::Other(n, v))
                    .collect();
                if let Err(e) = tx.reply_with(code.into(), headers, None).await {
                    debug!(error = %e, "refusing an INVITE failed");
                }
            });
            return;
        }
    }
    // INVITE dialogs and requests inside them belong to the call side.
    let mut tx = match call_io.on_transaction(tx) {
        Ok(call) => {
            outstanding.fetch_sub(1, Ordering::Relaxed);
            if let Some(call) = call {
                gateway.handle_input(now, Input::Invite { call, req: value });
            }
            return;
        }
        Err(tx) => *tx,
    };
    let id = *next;
    *next += 1;
    let (reply_tx, reply_rx) = oneshot::channel::<Reply>();
    replies.insert(id, reply_tx);
    let outstanding = outstanding.clone();
    tokio::spawn(async move {
        // The core answers every transaction; this bound only covers a bug.
        let reply = tokio::time::timeout(Duration::from_secs(30), reply_rx).await;
        let (code, headers, sent) = match reply {
            Ok(Ok(r)) => {
                if let Some(tag) = r.to_tag.filter(|_| r.code >= 200) {
                    set_to_tag(&mut tx.original, &tag);
                }
                (r.code, r.headers, Some(r.sent))
            }
            _ => (500, vec![], None),
        };
        let headers: Vec<Header> = headers
            .into_iter()
            .map(|(n, v)| Header::Other(n, v))
            .collect();
        if let Err(e) = tx.reply_with(code.into(), headers, None).await {
            debug!(error = %e, "sending a SIP response failed");
        }
        if let Some(sent) = sent {
            let _ = sent.send(());
        }
        outstanding.fetch_sub(1, Ordering::Relaxed);
    });
    gateway.handle_input(now, Input::SipRequest { tx: id, req: value });
}

fn on_udp_request(
    gateway: &mut Gateway,
    now: Instant,
    incoming: nist::Incoming,
    replies: &mut HashMap<TxId, nist::Pending>,
    next: &mut TxId,
) {
    let id = *next;
    *next += 1;
    replies.insert(id, incoming.pending);
    gateway.handle_input(
        now,
        Input::SipRequest {
            tx: id,
            req: incoming.req,
        },
    );
}

fn random_token(n: usize) -> String {
    let s = uuid::Uuid::new_v4().simple().to_string();
    s[..n.min(s.len())].to_string()
}

/// A random number in `0..=n`, for the RFC 2782 weighted choice among SRV targets.
fn srv_random(n: u32) -> u32 {
    (uuid::Uuid::new_v4().as_u128() as u32) % n.saturating_add(1).max(1)
}

/// The address of a URI whose host is an IP address (its port, else `default_port`);
/// `None` for a host name or a URI that does not parse.
fn ip_hop(uri: &str, default_port: u16) -> Option<SocketAddr> {
    let target: stox_sip::uri::SipUri = uri.parse().ok()?;
    let host = target.host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, target.port.unwrap_or(default_port)))
}

/// Where a request goes, in the order to try: the outbound proxy, else the URI's
/// server(s) located per RFC 3263 (NAPTR → SRV → A/AAAA). Each hop has the transport to
/// use: the located one, or TCP instead of UDP when `required` is TCP (a request too
/// large for UDP, RFC 3261 §18.1.1, goes to the same server over TCP). A `sips:` or
/// `;transport=tls` URI, or a request that must leave over TLS (`required`: a `tls`
/// account, a `sips:` Request-URI behind this hop), is located for TLS only (RFC 3263 §4.1,
/// RFC 5630 §3.1.3); otherwise TLS is one more transport a domain's NAPTR or SRV records
/// may pick (`SIPS+D2T`, `_sips._tcp`), when outgoing TLS can be verified (`[sip.tls] ca`).
async fn next_hops(
    sender: &Sender,
    uri: &stox_sip::uri::SipUri,
    required: Transport,
    use_proxy: bool,
) -> Result<Vec<(SocketAddr, Transport)>, SendFailure> {
    use stox_sip::locate::Proto;
    if let (true, Some(p)) = (use_proxy, sender.proxy) {
        return Ok(vec![(p, required)]);
    }
    let tls = needs_tls_uri(uri) || required == Transport::Tls;
    let host = uri.host.trim_start_matches('[').trim_end_matches(']');
    let numeric = host.parse::<std::net::IpAddr>().ok();
    let Some(dns) = sender.dns.as_ref().filter(|_| numeric.is_none()) else {
        let ip = match numeric {
            Some(ip) => ip,
            None => tokio::net::lookup_host((host, 0))
                .await
                .map_err(|e| SendFailure::Transport(format!("cannot resolve {host}: {e}")))?
                .next()
                .ok_or_else(|| SendFailure::Transport(format!("{host} has no address")))?
                .ip(),
        };
        let transport = match uri.transport().and_then(Proto::from_param) {
            _ if tls => Transport::Tls,
            Some(Proto::Tcp) => Transport::Tcp,
            _ => required,
        };
        // RFC 3261 §19.1.2: 5061 for TLS, else 5060.
        let port = uri.port.unwrap_or(if tls { 5061 } else { 5060 });
        return Ok(vec![(SocketAddr::new(ip, port), transport)]);
    };
    let mut supported = Vec::new();
    if tls {
        supported.push(Proto::Tls);
    } else {
        if sender.udp_local.is_some() {
            supported.push(Proto::Udp);
        }
        if sender.tcp_local.is_some() {
            supported.push(Proto::Tcp);
        }
        // RFC 3263 §4.1: a `sip:` URI may be served over TLS too (`SIPS+D2T`).
        if sender.tls.can_verify() {
            supported.push(Proto::Tls);
        }
    }
    let targets = stox_sip::locate::locate(dns, uri, &supported, &mut srv_random)
        .await
        .map_err(|e| {
            info!(uri = %uri, error = %e, "RFC 3263: no next hop for the request");
            SendFailure::Transport(e.to_string())
        })?;
    debug!(uri = %uri, targets = ?targets, "RFC 3263 location");
    let mut hops: Vec<(SocketAddr, Transport)> = Vec::new();
    for t in targets {
        let transport = match (t.proto, required) {
            (Proto::Tls, _) => Transport::Tls,
            // Never downgraded: a request that needs TLS takes TLS targets only.
            (_, Transport::Tls) => continue,
            (Proto::Tcp, _) | (Proto::Udp, Transport::Tcp) => Transport::Tcp,
            (Proto::Udp, Transport::Udp) => Transport::Udp,
            // locate() returns only what `supported` lists.
            _ => continue,
        };
        if !hops.contains(&(t.addr, transport)) {
            hops.push((t.addr, transport));
        }
    }
    if hops.is_empty() {
        return Err(SendFailure::Transport(format!(
            "{uri}: no server over {}",
            required.via_name()
        )));
    }
    Ok(hops)
}

/// Whether a URI must be reached over TLS: `sips:` or `;transport=tls`.
fn needs_tls_uri(uri: &stox_sip::uri::SipUri) -> bool {
    uri.scheme == stox_sip::uri::Scheme::Sips
        || uri
            .param("transport")
            .is_some_and(|t| t.eq_ignore_ascii_case("tls"))
}

/// Whether the UDP fast path may send `req`: nothing on its way names another transport
/// (the Request-URI, the first Route, an account's outbound proxy: a `sips:` or
/// `;transport=tls` one must not be reached in clear, a `;transport=tcp` one over UDP).
fn udp_only(req: &OutRequest) -> bool {
    let plain = |uri: &str| !needs_tls(uri) && !names_transport(uri, b";transport=tcp");
    plain(&req.uri)
        && req.next_hop.as_deref().is_none_or(plain)
        && req
            .dialog
            .as_ref()
            .and_then(|d| d.route.first())
            .is_none_or(|r| plain(r))
}

/// Whether `uri` holds `param` (lowercase bytes), in any case.
fn names_transport(uri: &str, param: &[u8]) -> bool {
    uri.as_bytes()
        .windows(param.len())
        .any(|w| w.eq_ignore_ascii_case(param))
}

/// The same for a URI as text (an unparsable one is left to `send_request` to refuse).
/// Cheap (no parse: it is asked of every message the UDP fast path might take); a false
/// "yes" only sends the request through `send_request`, which parses.
fn needs_tls(uri: &str) -> bool {
    let b = uri.as_bytes();
    b.len() >= 5 && b[..5].eq_ignore_ascii_case(b"sips:") || names_transport(uri, b";transport=tls")
}

/// The host of a URI, without brackets: the name a TLS server reached through it must prove.
fn tls_name(uri: &stox_sip::uri::SipUri) -> String {
    uri.host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_string()
}

/// The name a TLS next hop must prove (RFC 5922 §4, RFC 3261 §26.2): the host of the URI
/// the next hop is found from (`hop`: the first Route, else the request's own next hop such
/// as an account's proxy), else the global outbound proxy's address, else the Request-URI's
/// domain (the input of RFC 3263, not the SRV target it led to, which DNS alone vouches for).
fn tls_name_for(
    hop: Option<&stox_sip::uri::SipUri>,
    proxy: Option<SocketAddr>,
    target: &stox_sip::uri::SipUri,
) -> String {
    match (hop, proxy) {
        (Some(h), _) => tls_name(h),
        (None, Some(p)) => p.ip().to_string(),
        (None, None) => tls_name(target),
    }
}

async fn send_request(
    sender: &Sender,
    req: OutRequest,
    transport: Transport,
) -> Result<SipResponse, SendFailure> {
    let target: stox_sip::uri::SipUri = req
        .uri
        .parse()
        .map_err(|e| SendFailure::Transport(format!("bad target URI: {e}")))?;
    // RFC 3261 §12.2.1.1 / §16.12: with a route set, the request goes to its first entry
    // (loose routing); the Request-URI stays the remote target.
    let first_route = req
        .dialog
        .as_ref()
        .and_then(|d| d.route.first())
        .map(|r| crate::sipmsg::uri_of_name_addr(r).parse::<stox_sip::uri::SipUri>())
        .transpose()
        .map_err(|e| SendFailure::Transport(format!("bad Route: {e}")))?;
    // A registered contact's flow, while its connection is open (RFC 5626 §5.3, RFC 5923):
    // the same connection, whatever the URI says.
    if let Some(f) = req.flow {
        if let Some(conn) = sender.flows.get(&f) {
            let to = Hop {
                dest: f.remote,
                transport: f.transport,
                conn: Some(conn),
            };
            return send_to(sender, &req, to, "").await;
        }
        // RFC 7118 §5: nobody connects to a WebSocket client; RFC 5626 §5.3: the flow of
        // an outbound binding is not replaced by a connection to the peer's address or to
        // its contact: the flow failed (the edge proxy's 430).
        if req.flow_only || matches!(f.transport, Transport::Ws | Transport::Wss) {
            return Err(SendFailure::FlowFailed(format!(
                "the {} connection of {} is closed",
                f.transport.via_name(),
                f.remote
            )));
        }
    }
    // RFC 5630 §3.1.3 / RFC 3261 §26.2.2: a `sips:` (or `;transport=tls`) target is
    // reached over TLS only, never downgraded.
    let transport = if needs_tls_uri(&target) || first_route.as_ref().is_some_and(needs_tls_uri) {
        Transport::Tls
    } else {
        match target.param("transport").and_then(Transport::from_param) {
            Some(Transport::Ws | Transport::Wss) => {
                return Err(SendFailure::Transport(format!(
                    "{} is reached only over a WebSocket connection it opened",
                    req.uri
                )))
            }
            _ => transport,
        }
    };
    // An external account's outbound proxy (RFC 3261 §8.1.2: a request's own next hop)
    // before the global one.
    let next_hop = req
        .next_hop
        .as_deref()
        .map(|h| {
            h.parse::<stox_sip::uri::SipUri>()
                .map_err(|e| SendFailure::Transport(format!("bad next hop {h}: {e}")))
        })
        .transpose()?;
    // The URI the next hop is found from: the first Route, else the request's own next hop,
    // else the Request-URI (or the global outbound proxy).
    let (hop_uri, use_proxy) = match (&first_route, &next_hop) {
        (Some(route), _) => (route, false),
        (None, Some(hop)) => (hop, false),
        (None, None) => (&target, true),
    };
    let hops = next_hops(sender, hop_uri, transport, use_proxy).await?;
    // Over TLS the server must prove the name of that URI (or the proxy's).
    let name = tls_name_for(
        first_route.as_ref().or(next_hop.as_ref()),
        sender.proxy,
        &target,
    );
    // RFC 3263 §4.3: the next target when a connection cannot be made to one.
    let mut last_error = None;
    for (dest, transport) in hops {
        let to = Hop {
            dest,
            transport,
            conn: None,
        };
        match send_to(sender, &req, to, &name).await {
            Err(SendFailure::Transport(why)) => {
                debug!(%dest, %why, "next hop unreachable, trying the next one (RFC 3263 §4.3)");
                last_error = Some(SendFailure::Transport(why));
            }
            outcome => return outcome,
        }
    }
    Err(last_error.unwrap_or_else(|| SendFailure::Transport("no next hop".into())))
}

/// Where one attempt goes: the address, the transport, and the connection to use when it
/// is a flow's.
struct Hop {
    dest: SocketAddr,
    transport: Transport,
    conn: Option<SipConnection>,
}

/// One attempt of `req` to a hop: the client transaction's final response, or why it
/// failed. A new TLS connection must prove `tls_name` (see [`transports::TlsDialer`]).
async fn send_to(
    sender: &Sender,
    req: &OutRequest,
    hop: Hop,
    tls_name: &str,
) -> Result<SipResponse, SendFailure> {
    let Hop {
        dest,
        transport,
        conn,
    } = hop;
    let proto = transport.via_name();
    let local = match transport {
        Transport::Udp => sender.udp_local,
        Transport::Tcp => sender
            .tcp_local
            .or(sender.udp_local)
            .or_else(|| sender.stream_locals.values().min().copied()),
        t => sender
            .stream_locals
            .get(&t)
            .copied()
            .or(sender.tcp_local)
            .or(sender.udp_local),
    };
    let stack_transport = transport.to_stack();
    let local =
        local.ok_or_else(|| SendFailure::Transport(format!("no {proto} listener configured")))?;
    let call_id = req
        .call_id
        .clone()
        .unwrap_or_else(|| format!("{}@stox", uuid::Uuid::new_v4().simple()));
    let (from_tag, to_tag, cseq) = match &req.dialog {
        Some(d) => (d.from_tag.clone(), d.to_tag.clone(), d.cseq),
        None => (random_token(10), None, 1),
    };
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let mut text = format!(
        "{m} {uri} SIP/2.0\r\nVia: SIP/2.0/{proto} {local};branch=z9hG4bK{branch};rport\r\nFrom: {from};tag={from_tag}\r\nTo: <{to}>{to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {m}\r\n",
        m = req.method,
        uri = req.uri,
        branch = random_token(20),
        from = req.from_name_addr(),
        to = req.to,
    );
    for r in req.dialog.iter().flat_map(|d| d.route.iter()) {
        let r = r.trim();
        if r.starts_with('<') {
            text.push_str(&format!("Route: {r}\r\n"));
        } else {
            text.push_str(&format!("Route: <{r}>\r\n"));
        }
    }
    for (n, v) in &req.headers {
        text.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(ct) = &req.content_type {
        text.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n", req.body.len()));
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(&req.body);
    let request = rsipstack::sip::Request::try_from(bytes.as_slice())
        .map_err(|e| SendFailure::Transport(format!("building the request: {e}")))?;
    let key = TransactionKey::from_request(&request, TransactionRole::Client)
        .map_err(|e| SendFailure::Transport(e.to_string()))?;
    let addr = SipAddr {
        r#type: Some(stack_transport),
        addr: dest.into(),
    };
    let mut tx = Transaction::new_client(key, request, sender.endpoint.clone(), None);
    if let Some(conn) = conn {
        tx.connection = Some(conn);
        tx.destination = Some(addr);
    } else if transport == Transport::Tls {
        let (conn, resolved) = sender
            .tls
            .connect(tls_name, dest)
            .await
            .map_err(|e| SendFailure::Transport(format!("TLS to {dest} ({tls_name}): {e}")))?;
        tx.connection = Some(conn);
        tx.destination = Some(resolved);
    } else if transport == Transport::Tcp {
        // Connect first, so that a peer without TCP fails now rather than
        // after Timer F (32 s).
        let (conn, resolved): (SipConnection, SipAddr) = sender
            .endpoint
            .transport_layer
            .lookup(&addr, None)
            .await
            .map_err(|e| SendFailure::Transport(format!("TCP to {dest}: {e}")))?;
        tx.connection = Some(conn);
        tx.destination = Some(resolved);
    } else {
        tx.destination = Some(addr);
    }
    tx.send()
        .await
        .map_err(|e| SendFailure::Transport(format!("sending to {dest}: {e}")))?;
    while let Some(msg) = tx.receive().await {
        if let SipMessage::Response(resp) = msg {
            let code = resp.status_code.code();
            if code >= 200 {
                let reason = resp
                    .wire_reason
                    .clone()
                    .unwrap_or_else(|| resp.status_code.to_string());
                let headers = resp
                    .headers
                    .iter()
                    .filter(|h| !matches!(h, Header::Via(_) | Header::ContentLength(_)))
                    .map(|h| (h.name().to_string(), h.value().to_string()))
                    .collect();
                return Ok(SipResponse {
                    code,
                    reason,
                    headers,
                });
            }
        }
    }
    Err(SendFailure::Timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_targets_need_tls() {
        for (uri, tls) in [
            ("sips:bob@example.net", true),
            ("SIPS:bob@127.0.0.1:5061", true),
            ("sip:bob@127.0.0.1;transport=tls", true),
            ("sip:bob@127.0.0.1;lr;TRANSPORT=TLS", true),
            ("sip:bob@127.0.0.1;transport=tcp", false),
            ("sip:bob@127.0.0.1;transport=ws", false),
            ("sip:sips@127.0.0.1", false),
            ("sip:bob@x", false),
        ] {
            assert_eq!(needs_tls(uri), tls, "{uri}");
            let parsed: stox_sip::uri::SipUri = uri.parse().expect(uri);
            assert_eq!(needs_tls_uri(&parsed), tls, "{uri}");
        }
    }

    /// The UDP fast path never takes a request whose next hop wants TLS or TCP: an
    /// account's outbound proxy `;transport=tls`, a Route of a TLS dialog.
    #[test]
    fn the_udp_fast_path_leaves_tls_and_tcp_hops_alone() {
        let req = |uri: &str, next_hop: Option<&str>, route: Option<&str>| OutRequest {
            method: "MESSAGE".into(),
            uri: uri.into(),
            from: "sip:alice@example.org".into(),
            to: uri.into(),
            call_id: None,
            headers: vec![],
            content_type: None,
            body: vec![],
            dialog: route.map(|r| crate::sipmsg::DialogRef {
                from_tag: "t".into(),
                to_tag: None,
                cseq: 1,
                route: vec![r.into()],
            }),
            next_hop: next_hop.map(Into::into),
            flow: None,
            flow_only: false,
        };
        for (r, udp) in [
            (req("sip:bob@127.0.0.1", None, None), true),
            (req("sip:bob@127.0.0.1;transport=udp", None, None), true),
            (
                req("sip:bob@127.0.0.1", Some("sip:127.0.0.1:5070"), None),
                true,
            ),
            (req("sips:bob@127.0.0.1", None, None), false),
            (req("sip:bob@127.0.0.1;transport=TCP", None, None), false),
            (
                req(
                    "sip:bob@127.0.0.1",
                    Some("sip:127.0.0.1:5071;transport=tls"),
                    None,
                ),
                false,
            ),
            (
                req(
                    "sip:bob@127.0.0.1",
                    Some("sip:127.0.0.1:5070;transport=tcp"),
                    None,
                ),
                false,
            ),
            (
                req("sip:bob@127.0.0.1", Some("sips:127.0.0.1:5071"), None),
                false,
            ),
            (
                req(
                    "sip:bob@127.0.0.1",
                    None,
                    Some("<sip:127.0.0.1:5071;transport=tls;lr>"),
                ),
                false,
            ),
            (
                req("sip:bob@127.0.0.1", None, Some("<sip:127.0.0.1;lr>")),
                true,
            ),
        ] {
            assert_eq!(udp_only(&r), udp, "{r:?}");
        }
    }
}

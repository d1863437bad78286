//! RFC 3263 server location: which transport, address and port a request to a SIP URI
//! goes to (NAPTR → SRV → A/AAAA), for requests to foreign SIP domains when no outbound
//! proxy is configured.
//!
//! The procedure ([`locate`]) is written against the small [`Dns`] trait so that its
//! order of queries and its choices are tested here against fixed zones; [`Resolver`]
//! is the real implementation over `hickory-resolver` (which caches by TTL). rsipstack
//! can look up SRV but not NAPTR (ARCHITECTURE.md), hence this module.
//!
//! What stox implements, by section of RFC 3263:
//! - §4.1 transport: the URI's `transport` parameter; else UDP (`sip:`) or TLS (`sips:`)
//!   for a numeric host or an explicit port; else the NAPTR records of the domain whose
//!   service stox supports (`SIP+D2U`, `SIP+D2T`, `SIPS+D2T`, and RFC 7118's `SIP+D2W` /
//!   `SIPS+D2W`), by order then preference, only `SIPS+` services for a `sips:` URI;
//!   without usable NAPTR records, SRV queries for each supported transport; without
//!   those, UDP (`sip:`) or TLS (`sips:`). A `sip:` URI may end on TLS too (`SIPS+D2T`,
//!   `_sips._tcp`) when the caller supports it.
//! - §4.2 port and address: a numeric host is used as is; an explicit port means A/AAAA
//!   of the host; else the SRV records of the NAPTR replacement (or of `_sip._udp.host`
//!   and the like), ordered per RFC 2782 (priority, then weighted random), a target of
//!   `.` meaning "not offered"; without SRV records, A/AAAA with the default port
//!   (5060, 5061 for TLS).
//! - §4.3 failover: the result is every target in order; the caller tries the next one
//!   when a connection cannot be made.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use crate::uri::{Scheme, SipUri};

/// A transport a located target is reached over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket (RFC 7118).
    Ws,
    /// Secure WebSocket (RFC 7118).
    Wss,
}

impl Proto {
    /// The `transport` uri-parameter value (RFC 3261 §19.1.1, RFC 7118 §5.2), any case.
    pub fn from_param(value: &str) -> Option<Proto> {
        match value.to_ascii_lowercase().as_str() {
            "udp" => Some(Proto::Udp),
            "tcp" => Some(Proto::Tcp),
            "tls" => Some(Proto::Tls),
            "ws" => Some(Proto::Ws),
            "wss" => Some(Proto::Wss),
            _ => None,
        }
    }

    /// The default port (RFC 3261 §19.1.2; RFC 3263 §4.2).
    pub fn default_port(self) -> u16 {
        match self {
            Proto::Udp | Proto::Tcp => 5060,
            Proto::Tls => 5061,
            Proto::Ws => 80,
            Proto::Wss => 443,
        }
    }

    /// Whether it carries TLS.
    pub fn secure(self) -> bool {
        matches!(self, Proto::Tls | Proto::Wss)
    }

    /// NAPTR service field → transport (RFC 3263 §4.1, RFC 7118 §8).
    fn from_naptr_service(service: &str) -> Option<(Proto, bool)> {
        match service.to_ascii_uppercase().as_str() {
            "SIP+D2U" => Some((Proto::Udp, false)),
            "SIP+D2T" => Some((Proto::Tcp, false)),
            "SIPS+D2T" => Some((Proto::Tls, true)),
            "SIP+D2W" => Some((Proto::Ws, false)),
            "SIPS+D2W" => Some((Proto::Wss, true)),
            _ => None,
        }
    }

    /// The SRV name prefix for a domain (RFC 3263 §4.1: `_sips` for `sips:` URIs, which
    /// always use TLS).
    fn srv_prefix(self) -> &'static str {
        match self {
            Proto::Udp => "_sip._udp",
            Proto::Tcp => "_sip._tcp",
            Proto::Tls => "_sips._tcp",
            Proto::Ws => "_sip._ws",
            Proto::Wss => "_sips._ws",
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
            Proto::Tls => "TLS",
            Proto::Ws => "WS",
            Proto::Wss => "WSS",
        })
    }
}

/// One place a request can go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Over what.
    pub proto: Proto,
    /// Where.
    pub addr: SocketAddr,
    /// The host name the address was found for (the SRV target, or the URI's host), for
    /// logs. Not the name a TLS client checks the certificate against: that is the URI's
    /// own host, the input of this procedure (RFC 5922 §4), since the records that led from
    /// it to this name are not authenticated.
    pub host: String,
}

/// A NAPTR record (RFC 3403 §4.1), the fields stox reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naptr {
    /// ORDER.
    pub order: u16,
    /// PREFERENCE.
    pub preference: u16,
    /// FLAGS (`s` for a replacement that is an SRV name).
    pub flags: String,
    /// SERVICES.
    pub service: String,
    /// REPLACEMENT, without the trailing dot.
    pub replacement: String,
}

/// An SRV record (RFC 2782).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    /// Priority: lowest first.
    pub priority: u16,
    /// Weight among equal priorities.
    pub weight: u16,
    /// Port.
    pub port: u16,
    /// Target host, without the trailing dot; `.` (or empty) means "not offered here".
    pub target: String,
}

/// A lookup that failed for another reason than "no such records" (which is an empty
/// answer): timeout, SERVFAIL, a refused query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DnsFailure(pub String);

/// The three lookups RFC 3263 needs. An empty answer (NXDOMAIN, NODATA) is `Ok(vec![])`.
pub trait Dns {
    /// NAPTR records of `name`.
    fn naptr(&self, name: &str) -> impl Future<Output = Result<Vec<Naptr>, DnsFailure>> + Send;
    /// SRV records of `name`.
    fn srv(&self, name: &str) -> impl Future<Output = Result<Vec<Srv>, DnsFailure>> + Send;
    /// A and AAAA records of `name`.
    fn ip(&self, name: &str) -> impl Future<Output = Result<Vec<IpAddr>, DnsFailure>> + Send;
}

/// Why no target was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    /// The name has no usable records (RFC 3263 §4.3 exhausted): 404-like.
    #[error("{host} has no SIP server stox can reach over {transports}")]
    NotFound {
        /// The domain.
        host: String,
        /// What stox supports, for the log line.
        transports: String,
    },
    /// A lookup failed (timeout, SERVFAIL): 503-like, retry later.
    #[error("DNS lookup for {host} failed: {reason}")]
    Dns {
        /// The domain.
        host: String,
        /// The resolver's reason.
        reason: String,
    },
}

/// Every target for `uri`, in the order to try them (RFC 3263 §4), over the transports in
/// `supported` only. `random(n)` returns a number in `0..=n` for the RFC 2782 weighted
/// choice.
pub async fn locate<D: Dns>(
    dns: &D,
    uri: &SipUri,
    supported: &[Proto],
    random: &mut (impl FnMut(u32) -> u32 + Send),
) -> Result<Vec<Target>, LocateError> {
    let sips = uri.scheme == Scheme::Sips;
    let host = uri
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_string();
    let usable = |p: Proto| supported.contains(&p) && (!sips || p.secure());
    let not_found = || LocateError::NotFound {
        host: host.clone(),
        transports: supported
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("/"),
    };
    let dns_err = |e: DnsFailure| LocateError::Dns {
        host: host.clone(),
        reason: e.0,
    };
    // §4.1: a transport parameter fixes the transport. A `sips:` URI with
    // `transport=tcp` means TLS over TCP (RFC 3261 §26.2.2 uses that form).
    let param = match uri.transport() {
        Some(t) => match Proto::from_param(t) {
            Some(Proto::Tcp) if sips => Some(Proto::Tls),
            Some(Proto::Udp) if sips => return Err(not_found()),
            Some(p) => Some(p),
            None => return Err(not_found()),
        },
        None => None,
    };
    let numeric = host.parse::<IpAddr>().ok();
    // §4.1: numeric host or explicit port without a transport: UDP for sip, TLS for sips.
    let fallback = if sips { Proto::Tls } else { Proto::Udp };
    if let Some(ip) = numeric {
        let proto = param.unwrap_or(fallback);
        if !usable(proto) {
            return Err(not_found());
        }
        let port = uri.port.unwrap_or(proto.default_port());
        return Ok(vec![Target {
            proto,
            addr: SocketAddr::new(ip, port),
            host,
        }]);
    }
    if let Some(port) = uri.port {
        // §4.2: an explicit port means no SRV: A/AAAA of the host.
        let proto = param.unwrap_or(fallback);
        if !usable(proto) {
            return Err(not_found());
        }
        let ips = dns.ip(&host).await.map_err(dns_err)?;
        let out = addresses(&ips, port, proto, &host);
        return if out.is_empty() {
            Err(not_found())
        } else {
            Ok(out)
        };
    }
    // SRV names to query, in order, with their transport.
    let mut srv_names: Vec<(Proto, String)> = Vec::new();
    match param {
        Some(p) => {
            if !usable(p) {
                return Err(not_found());
            }
            srv_names.push((p, format!("{}.{host}", p.srv_prefix())));
        }
        None => {
            let mut naptrs: Vec<(Naptr, Proto)> = dns
                .naptr(&host)
                .await
                .map_err(dns_err)?
                .into_iter()
                .filter(|n| n.flags.eq_ignore_ascii_case("s"))
                .filter_map(|n| {
                    let (p, secure_service) = Proto::from_naptr_service(&n.service)?;
                    // §4.1: a sips: URI only uses SIPS+ services.
                    (usable(p) && (!sips || secure_service)).then_some((n, p))
                })
                .collect();
            naptrs.sort_by_key(|(n, _)| (n.order, n.preference));
            // RFC 3403 §4.1: once a rule of one ORDER matched, records of another ORDER
            // are not considered; stox takes every usable record of the lowest ORDER
            // (by preference) so that failover has somewhere to go.
            if let Some(first) = naptrs.first().map(|(n, _)| n.order) {
                for (n, p) in naptrs.into_iter().filter(|(n, _)| n.order == first) {
                    srv_names.push((p, n.replacement.trim_end_matches('.').to_string()));
                }
            } else {
                // No usable NAPTR: SRV for each transport stox supports, UDP first for
                // sip (RFC 3261's default), TCP, then TLS.
                for p in [Proto::Udp, Proto::Tcp, Proto::Tls, Proto::Ws, Proto::Wss] {
                    if usable(p) {
                        srv_names.push((p, format!("{}.{host}", p.srv_prefix())));
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut any_srv = false;
    for (proto, name) in srv_names {
        let srvs = dns.srv(&name).await.map_err(dns_err)?;
        any_srv |= !srvs.is_empty();
        for srv in order_srv(srvs, random) {
            let ips = dns.ip(&srv.target).await.map_err(dns_err)?;
            out.extend(addresses(&ips, srv.port, proto, &srv.target));
        }
    }
    if !any_srv {
        // §4.2: no SRV records: A/AAAA of the host with the transport's default port.
        let proto = param.unwrap_or(fallback);
        if usable(proto) {
            let ips = dns.ip(&host).await.map_err(dns_err)?;
            out.extend(addresses(&ips, proto.default_port(), proto, &host));
        }
    }
    if out.is_empty() {
        Err(not_found())
    } else {
        Ok(out)
    }
}

fn addresses(ips: &[IpAddr], port: u16, proto: Proto, host: &str) -> Vec<Target> {
    ips.iter()
        .map(|ip| Target {
            proto,
            addr: SocketAddr::new(*ip, port),
            host: host.to_string(),
        })
        .collect()
}

/// RFC 2782 ordering: by priority; within a priority, repeatedly pick by weight (weight-0
/// records first in the running sum, so they are rarely but possibly chosen). A target of
/// `.` means the service is not offered: such records are dropped.
pub fn order_srv(mut srvs: Vec<Srv>, random: &mut impl FnMut(u32) -> u32) -> Vec<Srv> {
    srvs.retain(|s| !s.target.is_empty() && s.target != ".");
    srvs.sort_by_key(|s| (s.priority, s.weight != 0));
    let mut out = Vec::with_capacity(srvs.len());
    while !srvs.is_empty() {
        let priority = srvs[0].priority;
        let group_len = srvs.iter().take_while(|s| s.priority == priority).count();
        let mut group: Vec<Srv> = srvs.drain(..group_len).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|s| u32::from(s.weight)).sum();
            let pick = random(total).min(total);
            let mut running = 0u32;
            let mut at = group.len() - 1;
            for (i, s) in group.iter().enumerate() {
                running += u32::from(s.weight);
                if running >= pick {
                    at = i;
                    break;
                }
            }
            out.push(group.remove(at));
        }
    }
    out
}

/// [`Dns`] over `hickory-resolver` (with its TTL cache).
#[derive(Clone)]
pub struct Resolver {
    inner: hickory_resolver::TokioResolver,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl Resolver {
    /// The system's resolver configuration (`/etc/resolv.conf`).
    pub fn system() -> Result<Resolver, DnsFailure> {
        let inner = hickory_resolver::Resolver::builder_tokio()
            .map_err(|e| DnsFailure(e.to_string()))?
            .build()
            .map_err(|e| DnsFailure(e.to_string()))?;
        Ok(Resolver { inner })
    }

    /// One name server, over UDP and TCP, at `server` (a port other than 53 allowed).
    pub fn with_server(server: SocketAddr) -> Result<Resolver, DnsFailure> {
        use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = server.port();
        let ns = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
        let config = ResolverConfig::from_parts(None, vec![], vec![ns]);
        let inner = hickory_resolver::Resolver::builder_with_config(
            config,
            hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
        )
        .build()
        .map_err(|e| DnsFailure(e.to_string()))?;
        Ok(Resolver { inner })
    }

    async fn records(
        &self,
        name: &str,
        kind: hickory_resolver::proto::rr::RecordType,
    ) -> Result<Vec<hickory_resolver::proto::rr::RData>, DnsFailure> {
        // A fully qualified name: no search domains.
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.inner.lookup(fqdn.as_str(), kind).await {
            Ok(lookup) => Ok(lookup.answers().iter().map(|r| r.data.clone()).collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(vec![]),
            Err(e) => Err(DnsFailure(e.to_string())),
        }
    }
}

fn name_text(name: &hickory_resolver::proto::rr::Name) -> String {
    name.to_ascii().trim_end_matches('.').to_string()
}

impl Dns for Resolver {
    async fn naptr(&self, name: &str) -> Result<Vec<Naptr>, DnsFailure> {
        use hickory_resolver::proto::rr::{RData, RecordType};
        Ok(self
            .records(name, RecordType::NAPTR)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::NAPTR(n) => Some(Naptr {
                    order: n.order,
                    preference: n.preference,
                    flags: String::from_utf8_lossy(&n.flags).into_owned(),
                    service: String::from_utf8_lossy(&n.services).into_owned(),
                    replacement: name_text(&n.replacement),
                }),
                _ => None,
            })
            .collect())
    }

    async fn srv(&self, name: &str) -> Result<Vec<Srv>, DnsFailure> {
        use hickory_resolver::proto::rr::{RData, RecordType};
        Ok(self
            .records(name, RecordType::SRV)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::SRV(s) => Some(Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: name_text(&s.target),
                }),
                _ => None,
            })
            .collect())
    }

    async fn ip(&self, name: &str) -> Result<Vec<IpAddr>, DnsFailure> {
        use hickory_resolver::proto::rr::{RData, RecordType};
        // A failure of one of the two queries (a server refusing AAAA, say) does not hide
        // the addresses the other one found.
        let mut out = Vec::new();
        let mut failure = None;
        for kind in [RecordType::A, RecordType::AAAA] {
            match self.records(name, kind).await {
                Ok(records) => out.extend(records.into_iter().filter_map(|d| match d {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests;

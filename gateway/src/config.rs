//! The stox configuration file (TOML, `deny_unknown_fields`).
//!
//! Every field has a doc comment and, where it is optional, a default given by
//! a function. `STOX_ADMIN_TOKEN` overrides `[admin] token`. `check()` validates
//! everything that can be validated without opening a socket, so that
//! `stox check-config` catches it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The XEP-0114 component link.
    pub xmpp: XmppConfig,
    /// The SIP endpoint.
    pub sip: SipConfig,
    /// The HTTP admin API.
    pub admin: AdminConfig,
    /// The embedded store.
    pub store: StoreConfig,
    /// Messaging behaviour (RFC 7572).
    #[serde(default)]
    pub messaging: MessagingConfig,
    /// The RTP relay of calls.
    #[serde(default)]
    pub media: MediaConfig,
    /// Call signalling.
    #[serde(default)]
    pub calls: CallsConfig,
    /// Presence (RFC 8048).
    #[serde(default)]
    pub presence: PresenceConfig,
    /// The registrar of the component domain (RFC 3261 §10).
    #[serde(default)]
    pub registrar: RegistrarConfig,
    /// External SIP accounts of XMPP users (issue 5).
    #[serde(default)]
    pub accounts: AccountsConfig,
}

/// `[accounts]`: how stox registers the external SIP accounts of XMPP users
/// (`docs/accounts.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsConfig {
    /// The wait after an account's first failed registration; it doubles after each further
    /// failure (seconds, default 30).
    #[serde(default = "default_account_backoff_initial")]
    pub backoff_initial_secs: u64,
    /// The longest wait between two failed registrations (seconds, default 1800).
    #[serde(default = "default_account_backoff_max")]
    pub backoff_max_secs: u64,
    /// The shortest registration expiry an account may ask for (seconds, default 60).
    #[serde(default = "default_min_expires")]
    pub min_expires: u32,
    /// The longest registration expiry an account may ask for, and the largest
    /// `Min-Expires` of a `423` it follows (seconds, default 86400). The range must hold
    /// 3600, the expiry asked for when an account names none.
    #[serde(default = "default_account_max_expires")]
    pub max_expires: u32,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            backoff_initial_secs: default_account_backoff_initial(),
            backoff_max_secs: default_account_backoff_max(),
            min_expires: default_min_expires(),
            max_expires: default_account_max_expires(),
        }
    }
}

fn default_account_backoff_initial() -> u64 {
    crate::core::accounts::BACKOFF_MIN.as_secs()
}
fn default_account_backoff_max() -> u64 {
    crate::core::accounts::BACKOFF_MAX.as_secs()
}
fn default_account_max_expires() -> u32 {
    crate::core::accounts::MAX_EXPIRES
}

/// `[registrar]`: SIP users of the component domain register to stox (issue 5).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarConfig {
    /// The shortest registration granted; shorter ones get `423` (seconds, default 60).
    #[serde(default = "default_min_expires")]
    pub min_expires: u32,
    /// The longest registration granted; longer ones are shortened (seconds, default 3600).
    #[serde(default = "default_max_expires")]
    pub max_expires: u32,
    /// Contacts per address of record (default 10).
    #[serde(default = "default_max_contacts")]
    pub max_contacts: usize,
    /// Failed Digest responses from one address within a minute before it is blocked
    /// (default 5).
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// How long a blocked address is refused (seconds, default 60).
    #[serde(default = "default_block_secs")]
    pub block_secs: u64,
    /// Digest algorithms challenged with, in order: `MD5`, `SHA-256` (RFC 8760). Default
    /// `["MD5"]`: older UAs (baresip 1.0) give up on a challenge list that names SHA-256
    /// at all; `["SHA-256", "MD5"]` offers both, SHA-256 preferred.
    #[serde(default = "default_digest_algorithms")]
    pub digest_algorithms: Vec<String>,
}

fn default_digest_algorithms() -> Vec<String> {
    vec!["MD5".into()]
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: default_min_expires(),
            max_expires: default_max_expires(),
            max_contacts: default_max_contacts(),
            max_failures: default_max_failures(),
            block_secs: default_block_secs(),
            digest_algorithms: default_digest_algorithms(),
        }
    }
}

fn default_max_contacts() -> usize {
    10
}
fn default_max_failures() -> u32 {
    5
}
fn default_block_secs() -> u64 {
    60
}

/// `[xmpp]`: how stox attaches to the XMPP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppConfig {
    /// The component domain `C` that stox owns, e.g. `sip.example.org`.
    pub component: String,
    /// `host:port` of the XMPP server's XEP-0114 listener.
    pub server: String,
    /// The shared component secret.
    pub secret: String,
    /// The home XMPP domain `H` served by the XMPP server.
    pub home_domain: String,
    /// Seconds of silence after which the link sends a XEP-0199 ping.
    #[serde(default = "default_keepalive_secs")]
    pub keepalive_secs: u64,
    /// Upper bound of the reconnect backoff, in seconds.
    #[serde(default = "default_backoff_max_secs")]
    pub reconnect_max_secs: u64,
}

fn default_keepalive_secs() -> u64 {
    30
}
fn default_backoff_max_secs() -> u64 {
    30
}

/// `[sip]`: the SIP endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// Listening sockets, each `udp:ADDR:PORT`, `tcp:ADDR:PORT`, `tls:ADDR:PORT`,
    /// `ws:ADDR:PORT` or `wss:ADDR:PORT` (SIP over WebSocket, RFC 7118). `tls` and `wss`
    /// need `[sip.tls]`.
    pub listen: Vec<String>,
    /// Optional next hop for every outgoing request, e.g. `sip:127.0.0.1:5080`.
    #[serde(default)]
    pub outbound_proxy: Option<String>,
    /// Overload control: SIP requests in progress (received, not yet
    /// answered) beyond which new ones get `503 Service Unavailable` with
    /// `Retry-After` at once (RFC 3261 §21.5.4) instead of queueing without
    /// bound.
    #[serde(default = "default_max_pending")]
    pub max_pending_requests: usize,
    /// RFC 3263 server location for requests to SIP domains when no outbound proxy is
    /// set: the DNS server (`ADDR:PORT`) stox asks for NAPTR, SRV and A/AAAA records.
    /// Default: the system's resolvers (`/etc/resolv.conf`).
    #[serde(default)]
    pub dns_server: Option<String>,
    /// `[sip.tls]`: the certificate of the `tls:` and `wss:` listeners, and the CAs that
    /// servers stox connects to over TLS must chain to.
    #[serde(default)]
    pub tls: Option<SipTlsConfig>,
    /// The `Flow-Timer` (seconds) granted to a UA that registers with RFC 5626 outbound:
    /// it sends a keepalive (CRLF, RFC 5626 §4.4.1) at least this often, so that the
    /// connection and its NAT binding stay up. Default 120; at most 290 (stox closes a
    /// stream that stays silent for 300 s).
    #[serde(default = "default_flow_timer")]
    pub flow_timer_secs: u32,
    /// RFC 3261 T1, the round-trip estimate every transaction timer derives from
    /// (milliseconds, default 500, 50 to 4000): retransmissions start at T1, and a
    /// request nobody answers fails after 64·T1 (Timer B for an INVITE, Timer F
    /// otherwise; 32 s by default), which is when an INVITE goes to the next located server
    /// (RFC 3263 §4.3). RFC 3261 §17.1.1.1 allows a smaller T1 on networks known to be
    /// faster; it cannot exceed T2 (4 s).
    #[serde(default = "default_t1_ms")]
    pub t1_ms: u64,
}

fn default_flow_timer() -> u32 {
    120
}
fn default_t1_ms() -> u64 {
    500
}

/// `[sip.tls]`: PEM files for SIP over TLS and secure WebSocket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipTlsConfig {
    /// The certificate chain (PEM) stox presents on `tls:` and `wss:` listeners, and as
    /// its client certificate on TLS connections it opens (to a server that asks).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM, PKCS#8 or PKCS#1).
    pub key: Option<PathBuf>,
    /// CA certificates (PEM) that the servers stox connects to over TLS must chain to
    /// (outgoing `sips:` and `;transport=tls`). Without it, outgoing TLS fails: stox has
    /// no implicit trust anchors.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// CA certificates (PEM) for client certificates (mutual TLS): with it, the `tls:`
    /// listeners ask every client for a certificate (a client without one still connects)
    /// and one that chains to these anchors identifies its peer, which RFC 5923 connection
    /// reuse (the Via `alias`) needs. It may be the same file as `ca`. Not asked on `wss:`
    /// (a browser would prompt its user for a certificate).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

fn default_max_pending() -> usize {
    10_000
}

/// `[admin]`: the HTTP admin API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `ADDR:PORT` the admin API listens on.
    pub listen: String,
    /// Bearer token for `/api/*`; `STOX_ADMIN_TOKEN` overrides it.
    pub token: String,
}

/// `[store]`: the embedded sled store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory of the sled database; created if missing.
    pub path: PathBuf,
}

/// `[messaging]`: pager-mode IM (RFC 7572).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagingConfig {
    /// How long a SIP MESSAGE's final response waits for an XMPP error bounce
    /// (milliseconds). A bounce within this window becomes the mapped SIP error
    /// (RFC 7247 §7); after it, 200 OK. Bounds the delay added to the 200 OK,
    /// not to delivery.
    #[serde(default = "default_bounce_window_ms")]
    pub bounce_window_ms: u64,
    /// The XMPP `type` of messages stox sends: `chat` (default; what clients
    /// thread and what carbons/MAM handle) or `normal` (RFC 7572 §5).
    #[serde(default = "default_message_type")]
    pub message_type: String,
    /// Largest SIP MESSAGE sent over UDP (RFC 3261 §18.1.1: 1300 bytes);
    /// larger ones go over TCP.
    #[serde(default = "default_udp_max")]
    pub udp_max_bytes: usize,
}

fn default_bounce_window_ms() -> u64 {
    300
}
fn default_message_type() -> String {
    "chat".to_string()
}
fn default_udp_max() -> usize {
    1300
}

impl Default for MessagingConfig {
    fn default() -> Self {
        MessagingConfig {
            bounce_window_ms: default_bounce_window_ms(),
            message_type: default_message_type(),
            udp_max_bytes: default_udp_max(),
        }
    }
}

/// `[media]`: the RTP relay (ICE + DTLS-SRTP toward XMPP clients, plain RTP toward SIP).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// The address media sockets bind to and announce (ICE host candidates, SDP `c=`). Default:
    /// the IP of the first `[sip] listen` entry when it is a concrete address.
    pub address: Option<std::net::IpAddr>,
    /// UDP ports for media, `"MIN-MAX"` inclusive; each call takes an aligned block of four.
    /// Default `"40000-49999"` (2,500 calls).
    pub port_range: Option<String>,
    /// A leg that receives no media for this long ends the call (seconds, default 20).
    pub no_media_secs: Option<u64>,
}

/// `[calls]`: call signalling.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsConfig {
    /// How long a call rings before stox gives up: 480 and `<retract/>` toward an XMPP callee,
    /// CANCEL toward a SIP callee (seconds, default 45).
    pub no_answer_secs: Option<u64>,
}

/// `[presence]`: SIP SUBSCRIBE/NOTIFY/PUBLISH ⇄ XMPP presence (RFC 8048, RFC 3903).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceConfig {
    /// Translate presence (default true). False: SUBSCRIBE and PUBLISH get 405 and every
    /// contact is shown always available with call caps (for phone-number gateways whose
    /// SIP side has no presence).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The Expires stox asks for in its SUBSCRIBEs (seconds, default 3600, RFC 3856).
    #[serde(default = "default_presence_expires")]
    pub expires: u32,
    /// The shortest Expires stox grants to a SUBSCRIBE or PUBLISH; shorter ones get `423`
    /// with `Min-Expires` (seconds, default 60).
    #[serde(default = "default_min_expires")]
    pub min_expires: u32,
    /// The longest Expires stox grants; longer requests are shortened (seconds, default
    /// 3600).
    #[serde(default = "default_max_expires")]
    pub max_expires: u32,
    /// Out-of-dialog SUBSCRIBE and PUBLISH per second per source address, and subscription
    /// requests per second per XMPP user (default 20; 0: no limit).
    #[serde(default = "default_rate")]
    pub rate_per_source: u32,
    /// The burst allowed above that rate (default 200).
    #[serde(default = "default_burst")]
    pub rate_burst: u32,
    /// Most subscriptions, both directions together (default 100000).
    #[serde(default = "default_max_subscriptions")]
    pub max_subscriptions: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            enabled: true,
            expires: default_presence_expires(),
            min_expires: default_min_expires(),
            max_expires: default_max_expires(),
            rate_per_source: default_rate(),
            rate_burst: default_burst(),
            max_subscriptions: default_max_subscriptions(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_presence_expires() -> u32 {
    3600
}
fn default_min_expires() -> u32 {
    60
}
fn default_max_expires() -> u32 {
    3600
}
fn default_rate() -> u32 {
    20
}
fn default_burst() -> u32 {
    200
}
fn default_max_subscriptions() -> usize {
    100_000
}

impl Config {
    /// Registrar settings for the core (the nonce secret is the caller's: random per
    /// process).
    pub fn registrar_settings(&self, nonce_secret: [u8; 32]) -> crate::core::RegistrarSettings {
        let r = &self.registrar;
        crate::core::RegistrarSettings {
            min_expires: r.min_expires,
            max_expires: r.max_expires,
            max_contacts: r.max_contacts,
            max_failures: r.max_failures,
            block: Duration::from_secs(r.block_secs),
            nonce_secret,
            digest_algorithms: r
                .digest_algorithms
                .iter()
                .filter_map(|a| stox_sip::digest::Algorithm::parse(a))
                .collect(),
            flow_timer: self.sip.flow_timer_secs,
        }
    }

    /// Account settings for the core.
    pub fn account_settings(&self) -> crate::core::AccountSettings {
        let a = &self.accounts;
        crate::core::AccountSettings {
            backoff_min: Duration::from_secs(a.backoff_initial_secs),
            backoff_max: Duration::from_secs(a.backoff_max_secs),
            min_expires: a.min_expires,
            max_expires: a.max_expires,
        }
    }

    /// Presence settings for the core.
    pub fn presence_settings(&self) -> crate::core::PresenceSettings {
        let p = &self.presence;
        crate::core::PresenceSettings {
            enabled: p.enabled,
            expires: p.expires,
            min_expires: p.min_expires,
            max_expires: p.max_expires,
            rate_per_source: p.rate_per_source,
            rate_burst: p.rate_burst,
            max_subscriptions: p.max_subscriptions,
        }
    }

    /// The media address (`[media] address`, else the first SIP listen IP).
    pub fn media_address(&self) -> Result<std::net::IpAddr, ConfigError> {
        if let Some(a) = self.media.address {
            if a.is_unspecified() || a.is_multicast() {
                return Err(invalid(
                    "media.address",
                    format!("`{a}` cannot be announced as an ICE host candidate"),
                ));
            }
            return Ok(a);
        }
        let first = self.listens()?.first().map(|l| l.addr.ip());
        match first {
            Some(ip) if !ip.is_unspecified() => Ok(ip),
            _ => Err(invalid(
                "media.address",
                "must be set when the first [sip] listen address is a wildcard",
            )),
        }
    }

    /// The media port range (`[media] port_range`, default 40000-49999).
    pub fn media_ports(&self) -> Result<(u16, u16), ConfigError> {
        let Some(r) = &self.media.port_range else {
            return Ok((40000, 49999));
        };
        let parsed = r.split_once('-').and_then(|(a, b)| {
            Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
        });
        match parsed {
            Some((a, b)) if a >= 1024 && b >= a.saturating_add(3) => Ok((a, b)),
            _ => Err(invalid(
                "media.port_range",
                format!("`{r}`: must be \"MIN-MAX\" with 1024 <= MIN and at least 4 ports"),
            )),
        }
    }

    /// Call settings for the core.
    pub fn call_settings(&self) -> crate::core::CallSettings {
        let d = crate::core::CallSettings::default();
        crate::core::CallSettings {
            no_answer: self
                .calls
                .no_answer_secs
                .map(Duration::from_secs)
                .unwrap_or(d.no_answer),
            no_media: self
                .media
                .no_media_secs
                .map(Duration::from_secs)
                .unwrap_or(d.no_media),
        }
    }
}

/// A SIP transport a listener uses (UDP, TCP, TLS, WS, WSS).
pub type ListenTransport = crate::sipmsg::Transport;

/// One parsed `[sip] listen` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// Its transport.
    pub transport: ListenTransport,
    /// Its socket address.
    pub addr: SocketAddr,
}

/// The PEM files of `[sip.tls]`, read.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: Option<Vec<u8>>,
    /// Private key.
    pub key: Option<Vec<u8>>,
    /// CA certificates for outgoing TLS.
    pub ca: Option<Vec<u8>>,
    /// CA certificates for client certificates on `tls:` listeners.
    pub client_ca: Option<Vec<u8>>,
}

/// What is wrong with a configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax error or unknown/missing key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message (it names the key and line).
        message: String,
    },
    /// A value is syntactically fine but unusable.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, e.g. `sip.listen[1]`.
        key: String,
        /// Why.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    /// Reads, parses and checks a file; applies `STOX_ADMIN_TOKEN`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        if let Ok(token) = std::env::var("STOX_ADMIN_TOKEN") {
            if !token.is_empty() {
                config.admin.token = token;
            }
        }
        Ok(config)
    }

    /// Parses and checks TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    /// Validates values that parse but cannot work.
    pub fn check(&self) -> Result<(), ConfigError> {
        check_domain("xmpp.component", &self.xmpp.component)?;
        check_domain("xmpp.home_domain", &self.xmpp.home_domain)?;
        if self
            .xmpp
            .component
            .eq_ignore_ascii_case(&self.xmpp.home_domain)
        {
            return Err(invalid(
                "xmpp.component",
                "must differ from xmpp.home_domain (the component owns its own domain)",
            ));
        }
        if self.xmpp.secret.is_empty() {
            return Err(invalid("xmpp.secret", "must not be empty"));
        }
        if self
            .xmpp
            .server
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(invalid(
                "xmpp.server",
                format!("`{}` is not HOST:PORT", self.xmpp.server),
            ));
        }
        if self.xmpp.keepalive_secs == 0 {
            return Err(invalid("xmpp.keepalive_secs", "must be at least 1"));
        }
        if self.sip.listen.is_empty() {
            return Err(invalid(
                "sip.listen",
                "needs at least one `udp:`, `tcp:`, `tls:`, `ws:` or `wss:` entry",
            ));
        }
        self.check_tls()?;
        if !(10..=290).contains(&self.sip.flow_timer_secs) {
            return Err(invalid(
                "sip.flow_timer_secs",
                "between 10 and 290 seconds (idle streams are closed after 300 s)",
            ));
        }
        if !(50..=4000).contains(&self.sip.t1_ms) {
            return Err(invalid(
                "sip.t1_ms",
                "between 50 and 4000 milliseconds (RFC 3261 T1, at most T2 = 4 s)",
            ));
        }
        self.dns_server()?;
        if self.sip.max_pending_requests == 0 {
            return Err(invalid("sip.max_pending_requests", "must be at least 1"));
        }
        if let Some(proxy) = &self.sip.outbound_proxy {
            self.outbound_proxy_addr()
                .map_err(|m| invalid("sip.outbound_proxy", format!("`{proxy}`: {m}")))?;
        }
        self.admin
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| invalid("admin.listen", format!("`{}`: {e}", self.admin.listen)))?;
        if self.admin.token.trim().is_empty() {
            return Err(invalid(
                "admin.token",
                "must not be empty (or set STOX_ADMIN_TOKEN)",
            ));
        }
        if self.store.path.as_os_str().is_empty() {
            return Err(invalid("store.path", "must not be empty"));
        }
        match self.messaging.message_type.as_str() {
            "chat" | "normal" => {}
            other => {
                return Err(invalid(
                    "messaging.message_type",
                    format!("`{other}`: must be `chat` or `normal`"),
                ))
            }
        }
        if self.messaging.bounce_window_ms > 10_000 {
            return Err(invalid(
                "messaging.bounce_window_ms",
                "at most 10000: SIP clients retransmit and time out (Timer F, 32 s)",
            ));
        }
        if self.messaging.udp_max_bytes < 500 {
            return Err(invalid("messaging.udp_max_bytes", "at least 500"));
        }
        self.media_address()?;
        self.media_ports()?;
        if self.media.no_media_secs == Some(0) {
            return Err(invalid("media.no_media_secs", "must be at least 1"));
        }
        match self.calls.no_answer_secs {
            Some(0) => return Err(invalid("calls.no_answer_secs", "must be at least 1")),
            Some(n) if n > 600 => return Err(invalid("calls.no_answer_secs", "at most 600")),
            _ => {}
        }
        let p = &self.presence;
        if !(60..=86_400).contains(&p.expires) {
            return Err(invalid(
                "presence.expires",
                "between 60 and 86400 seconds (RFC 3856 default 3600)",
            ));
        }
        if p.min_expires == 0 {
            return Err(invalid("presence.min_expires", "must be at least 1"));
        }
        if p.max_expires < p.min_expires || p.max_expires > 86_400 {
            return Err(invalid(
                "presence.max_expires",
                "between presence.min_expires and 86400 seconds",
            ));
        }
        if p.max_subscriptions == 0 {
            return Err(invalid("presence.max_subscriptions", "must be at least 1"));
        }
        let r = &self.registrar;
        if r.min_expires == 0 {
            return Err(invalid("registrar.min_expires", "must be at least 1"));
        }
        if r.max_expires < r.min_expires || r.max_expires > 86_400 {
            return Err(invalid(
                "registrar.max_expires",
                "between registrar.min_expires and 86400 seconds",
            ));
        }
        if r.max_contacts == 0 {
            return Err(invalid("registrar.max_contacts", "must be at least 1"));
        }
        if r.max_failures == 0 {
            return Err(invalid("registrar.max_failures", "must be at least 1"));
        }
        if r.digest_algorithms.is_empty() {
            return Err(invalid(
                "registrar.digest_algorithms",
                "at least one of MD5, SHA-256",
            ));
        }
        for a in &r.digest_algorithms {
            if stox_sip::digest::Algorithm::parse(a).is_none() {
                return Err(invalid(
                    "registrar.digest_algorithms",
                    format!("`{a}`: MD5 or SHA-256"),
                ));
            }
        }
        let a = &self.accounts;
        if !(1..=86_400).contains(&a.backoff_initial_secs) {
            return Err(invalid(
                "accounts.backoff_initial_secs",
                "between 1 and 86400 seconds",
            ));
        }
        if a.backoff_max_secs < a.backoff_initial_secs || a.backoff_max_secs > 86_400 {
            return Err(invalid(
                "accounts.backoff_max_secs",
                "between accounts.backoff_initial_secs and 86400 seconds",
            ));
        }
        let default = crate::core::accounts::DEFAULT_EXPIRES;
        if a.min_expires < 10 || a.min_expires > default {
            return Err(invalid(
                "accounts.min_expires",
                format!("between 10 and {default} seconds (the default expiry)"),
            ));
        }
        if a.max_expires < default || a.max_expires > 604_800 {
            return Err(invalid(
                "accounts.max_expires",
                format!("between {default} (the default expiry) and 604800 seconds"),
            ));
        }
        Ok(())
    }

    /// `tls:`/`wss:` listeners need a certificate and key; every file named must be a
    /// readable PEM file.
    fn check_tls(&self) -> Result<(), ConfigError> {
        let listens = self.listens()?;
        let secure = listens
            .iter()
            .position(|l| l.transport.is_secure())
            .map(|i| format!("sip.listen[{i}]"));
        let tls = self.sip.tls.as_ref();
        if let Some(key) = &secure {
            if tls.and_then(|t| t.cert.as_ref()).is_none() {
                return Err(invalid(
                    "sip.tls.cert",
                    format!("{key} is a TLS listener: a certificate (PEM) is needed"),
                ));
            }
            if tls.and_then(|t| t.key.as_ref()).is_none() {
                return Err(invalid(
                    "sip.tls.key",
                    format!("{key} is a TLS listener: a private key (PEM) is needed"),
                ));
            }
        }
        if let Some(t) = tls {
            for (name, path, marker) in [
                ("sip.tls.cert", &t.cert, "CERTIFICATE-----"),
                ("sip.tls.key", &t.key, "PRIVATE KEY-----"),
                ("sip.tls.ca", &t.ca, "CERTIFICATE-----"),
                ("sip.tls.client_ca", &t.client_ca, "CERTIFICATE-----"),
            ] {
                let Some(path) = path else { continue };
                let text = std::fs::read_to_string(path)
                    .map_err(|e| invalid(name, format!("cannot read {}: {e}", path.display())))?;
                if !text.contains(marker) {
                    return Err(invalid(
                        name,
                        format!("{} holds no PEM `{marker}` block", path.display()),
                    ));
                }
            }
            // Client certificates are verified against these: each must be a certificate
            // usable as a trust anchor.
            if let Some(path) = &t.client_ca {
                let pem = std::fs::read(path).map_err(|e| {
                    invalid(
                        "sip.tls.client_ca",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                crate::io::mtls::trust_anchors(&pem).map_err(|e| {
                    invalid("sip.tls.client_ca", format!("{}: {e}", path.display()))
                })?;
            }
        }
        Ok(())
    }

    /// The PEM contents of `[sip.tls]` (certificate, key, CA), read now.
    pub fn tls_files(&self) -> Result<TlsFiles, ConfigError> {
        let read = |name: &str, p: &Option<PathBuf>| -> Result<Option<Vec<u8>>, ConfigError> {
            p.as_ref()
                .map(|p| {
                    std::fs::read(p)
                        .map_err(|e| invalid(name, format!("cannot read {}: {e}", p.display())))
                })
                .transpose()
        };
        let Some(t) = &self.sip.tls else {
            return Ok(TlsFiles::default());
        };
        Ok(TlsFiles {
            cert: read("sip.tls.cert", &t.cert)?,
            key: read("sip.tls.key", &t.key)?,
            ca: read("sip.tls.ca", &t.ca)?,
            client_ca: read("sip.tls.client_ca", &t.client_ca)?,
        })
    }

    /// The parsed `[sip] listen` entries.
    pub fn listens(&self) -> Result<Vec<Listen>, ConfigError> {
        self.sip
            .listen
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                parse_listen(entry)
                    .map_err(|m| invalid(format!("sip.listen[{i}]"), format!("`{entry}`: {m}")))
            })
            .collect()
    }

    /// `[sip] dns_server`, parsed.
    pub fn dns_server(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.sip
            .dns_server
            .as_deref()
            .map(|s| {
                s.parse::<SocketAddr>().map_err(|e| {
                    invalid(
                        "sip.dns_server",
                        format!("`{s}`: {e} (an ADDR:PORT such as 127.0.0.1:53)"),
                    )
                })
            })
            .transpose()
    }

    /// The outbound proxy as a socket address and transport, if configured.
    pub fn outbound_proxy_addr(&self) -> Result<Option<(ListenTransport, SocketAddr)>, String> {
        let Some(proxy) = &self.sip.outbound_proxy else {
            return Ok(None);
        };
        let uri: stox_sip::uri::SipUri =
            proxy.parse().map_err(|e| format!("not a SIP URI: {e}"))?;
        let port = uri.port.unwrap_or(5060);
        let host = uri.host.trim_start_matches('[').trim_end_matches(']');
        let ip: std::net::IpAddr = host.parse().map_err(|_| {
            "the host must be an IP address (DNS lookup of the proxy is not supported yet)"
                .to_string()
        })?;
        let transport = match uri.param("transport") {
            // RFC 7118 §5: WebSocket is only ever a connection the client opened.
            Some(t) if t.eq_ignore_ascii_case("ws") || t.eq_ignore_ascii_case("wss") => {
                return Err(format!("transport `{t}` cannot reach a proxy"))
            }
            Some(t) => ListenTransport::from_param(t)
                .ok_or_else(|| format!("unsupported transport `{t}`"))?,
            // RFC 3261 §19.1.4 / RFC 5630: `sips:` means TLS.
            None if uri.scheme == stox_sip::uri::Scheme::Sips => ListenTransport::Tls,
            None => ListenTransport::Udp,
        };
        if uri.scheme == stox_sip::uri::Scheme::Sips && transport != ListenTransport::Tls {
            return Err("a `sips:` proxy is reached over TLS only".into());
        }
        Ok(Some((transport, SocketAddr::new(ip, port))))
    }

    /// RFC 3261 T1 (`[sip] t1_ms`).
    pub fn t1(&self) -> Duration {
        Duration::from_millis(self.sip.t1_ms)
    }

    /// Keepalive interval of the component link.
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.xmpp.keepalive_secs)
    }
}

fn parse_listen(entry: &str) -> Result<Listen, String> {
    let (scheme, addr) = entry
        .split_once(':')
        .ok_or("expected `TRANSPORT:ADDR:PORT`, TRANSPORT one of udp, tcp, tls, ws, wss")?;
    let transport = ListenTransport::from_param(scheme).ok_or_else(|| {
        format!("unknown transport `{scheme}` (udp, tcp, tls, ws and wss are supported)")
    })?;
    let addr: SocketAddr = addr.parse().map_err(|e| format!("bad address: {e}"))?;
    Ok(Listen { transport, addr })
}

fn check_domain(key: &str, domain: &str) -> Result<(), ConfigError> {
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && !domain.contains(['@', '/', ' ', ':'])
        && domain.split('.').all(|label| !label.is_empty());
    if ok {
        Ok(())
    } else {
        Err(invalid(key, format!("`{domain}` is not a domain name")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[xmpp]
component = "sip.localhost"
server = "127.0.0.1:5347"
secret = "componentsecret"
home_domain = "localhost"
[sip]
listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
outbound_proxy = "sip:127.0.0.1:5080"
[admin]
listen = "127.0.0.1:8080"
token = "change-me"
[store]
path = "./stox-data"
"#;

    #[test]
    fn sample_parses_with_defaults() {
        let c = Config::parse(SAMPLE).expect("sample config");
        assert_eq!(c.xmpp.component, "sip.localhost");
        assert_eq!(c.messaging.bounce_window_ms, 300);
        assert_eq!(c.messaging.message_type, "chat");
        let l = c.listens().expect("listens");
        assert_eq!(l[0].transport, ListenTransport::Udp);
        assert_eq!(l[1].transport, ListenTransport::Tcp);
        assert_eq!(l[1].addr, "127.0.0.1:5060".parse().expect("addr"));
        assert_eq!(
            c.outbound_proxy_addr().expect("proxy"),
            Some((
                ListenTransport::Udp,
                "127.0.0.1:5080".parse().expect("addr")
            ))
        );
    }

    #[test]
    fn every_sample_config_in_the_repo_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut n = 0;
        for dir in ["examples", "docs"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "toml") {
                    let text = std::fs::read_to_string(&p).expect("read sample");
                    Config::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                    n += 1;
                }
            }
        }
        assert!(n >= 1, "no sample config found under examples/");
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let text = SAMPLE.replace("[store]", "[store]\nbogus = 1");
        let e = Config::parse(&text).expect_err("unknown key");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (
                SAMPLE.replace("udp:127.0.0.1:5060\"", "sctp:127.0.0.1:5060\""),
                "sip.listen[0]",
            ),
            (SAMPLE.replace("127.0.0.1:5347", "nowhere"), "xmpp.server"),
            (
                SAMPLE.replace("\"sip.localhost\"", "\"localhost\""),
                "xmpp.component",
            ),
            (
                SAMPLE.replace("127.0.0.1:8080", "localhost"),
                "admin.listen",
            ),
            (
                SAMPLE.replace("sip:127.0.0.1:5080", "http://x"),
                "sip.outbound_proxy",
            ),
            (
                SAMPLE.replace("token = \"change-me\"", "token = \" \""),
                "admin.token",
            ),
            (
                format!("{SAMPLE}\n[messaging]\nmessage_type = \"groupchat\"\n"),
                "messaging.message_type",
            ),
            (
                format!("{SAMPLE}\n[media]\naddress = \"0.0.0.0\"\n"),
                "media.address",
            ),
            (
                format!("{SAMPLE}\n[media]\nport_range = \"5000\"\n"),
                "media.port_range",
            ),
            (
                format!("{SAMPLE}\n[media]\nport_range = \"40000-40001\"\n"),
                "media.port_range",
            ),
            (
                format!("{SAMPLE}\n[media]\nno_media_secs = 0\n"),
                "media.no_media_secs",
            ),
            (
                format!("{SAMPLE}\n[calls]\nno_answer_secs = 0\n"),
                "calls.no_answer_secs",
            ),
            (
                SAMPLE.replace("udp:127.0.0.1:5060\"", "udp:0.0.0.0:5060\""),
                "media.address",
            ),
            (
                format!("{SAMPLE}\n[accounts]\nbackoff_initial_secs = 0\n"),
                "accounts.backoff_initial_secs",
            ),
            (
                format!("{SAMPLE}\n[accounts]\nbackoff_initial_secs = 60\nbackoff_max_secs = 30\n"),
                "accounts.backoff_max_secs",
            ),
            (
                format!("{SAMPLE}\n[accounts]\nmin_expires = 5\n"),
                "accounts.min_expires",
            ),
            (
                format!("{SAMPLE}\n[accounts]\nmin_expires = 7200\n"),
                "accounts.min_expires",
            ),
            (
                format!("{SAMPLE}\n[accounts]\nmax_expires = 1800\n"),
                "accounts.max_expires",
            ),
        ];
        for (text, key) in cases {
            let e = Config::parse(&text).expect_err(key);
            assert!(e.to_string().starts_with(key), "{key}: {e}");
        }
    }

    #[test]
    fn media_and_call_defaults() {
        let c = Config::parse(SAMPLE).expect("sample config");
        assert_eq!(
            c.media_address().unwrap(),
            "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(c.media_ports().unwrap(), (40000, 49999));
        let s = c.call_settings();
        assert_eq!((s.no_answer.as_secs(), s.no_media.as_secs()), (45, 20));
        let c = Config::parse(&format!(
            "{SAMPLE}\n[media]\naddress = \"127.0.0.2\"\nport_range = \"30000 - 30099\"\nno_media_secs = 5\n[calls]\nno_answer_secs = 9\n"
        ))
        .expect("media config");
        assert_eq!(c.media_address().unwrap().to_string(), "127.0.0.2");
        assert_eq!(c.media_ports().unwrap(), (30000, 30099));
        let s = c.call_settings();
        assert_eq!((s.no_answer.as_secs(), s.no_media.as_secs()), (9, 5));
    }

    #[test]
    fn tls_and_websocket_listeners() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let listen = r#"listen = ["udp:127.0.0.1:5060", "tls:127.0.0.1:5061", "ws:127.0.0.1:8080", "WSS:127.0.0.1:8443"]"#;
        let base = SAMPLE.replace(
            r#"listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]"#,
            listen,
        );
        let with_tls = format!(
            "{base}\n[sip.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        );
        let c = Config::parse(&with_tls).expect("tls config");
        let kinds: Vec<ListenTransport> = c
            .listens()
            .expect("listens")
            .iter()
            .map(|l| l.transport)
            .collect();
        assert_eq!(
            kinds,
            vec![
                ListenTransport::Udp,
                ListenTransport::Tls,
                ListenTransport::Ws,
                ListenTransport::Wss
            ]
        );
        assert_eq!(c.sip.flow_timer_secs, 120);
        assert_eq!(c.registrar_settings([0; 32]).flow_timer, 120);
        let files = c.tls_files().expect("files");
        assert!(files.cert.is_some() && files.key.is_some() && files.ca.is_none());

        // A TLS listener without a certificate or key is named; so is a file that is not
        // PEM, or missing; and an unknown key in [sip.tls].
        let no_key = format!("{base}\n[sip.tls]\ncert = \"{}\"\n", cert.display());
        let not_pem = with_tls.replace(
            &format!("key = \"{}\"", key.display()),
            &format!("key = \"{}\"", cert.display()),
        );
        let missing = with_tls.replace("cert.pem", "nothing.pem");
        let cases = [
            (base.clone(), "sip.tls.cert"),
            (no_key, "sip.tls.key"),
            (not_pem, "sip.tls.key"),
            (missing, "sip.tls.cert"),
            (format!("{with_tls}bogus = 1\n"), "bogus"),
            (
                with_tls.replace("[sip.tls]", "[sip.tls]\nca = \"/nonexistent/ca.pem\""),
                "sip.tls.ca",
            ),
            (
                with_tls.replace(
                    "[sip.tls]",
                    "[sip.tls]\nclient_ca = \"/nonexistent/ca.pem\"",
                ),
                "sip.tls.client_ca",
            ),
            // A PEM certificate block that is no certificate cannot be a trust anchor.
            (
                with_tls.replace(
                    "[sip.tls]",
                    &format!("[sip.tls]\nclient_ca = \"{}\"", cert.display()),
                ),
                "sip.tls.client_ca",
            ),
        ];
        for (text, key) in cases {
            let e = Config::parse(&text).expect_err(key);
            assert!(e.to_string().contains(key), "{key}: {e}");
        }
        let e = Config::parse(&format!(
            "{}\n[sip.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            base.replace("[sip]", "[sip]\nflow_timer_secs = 5"),
            cert.display(),
            key.display()
        ))
        .expect_err("flow timer");
        assert!(e.to_string().starts_with("sip.flow_timer_secs"), "{e}");
        // T1: 500 ms by default, 50 to 4000 ms.
        let c = Config::parse(SAMPLE).expect("sample");
        assert_eq!(c.t1(), Duration::from_millis(500));
        for (t1, ok) in [
            (49, false),
            (50, true),
            (100, true),
            (4000, true),
            (4001, false),
        ] {
            let text = SAMPLE.replacen("[sip]", &format!("[sip]\nt1_ms = {t1}"), 1);
            match Config::parse(&text) {
                Ok(c) => {
                    assert!(ok, "t1_ms = {t1} accepted");
                    assert_eq!(c.t1(), Duration::from_millis(t1));
                }
                Err(e) => {
                    assert!(!ok, "t1_ms = {t1}: {e}");
                    assert!(e.to_string().starts_with("sip.t1_ms"), "{e}");
                }
            }
        }
        // Plain UDP and TCP need no [sip.tls].
        assert!(Config::parse(SAMPLE).is_ok());
    }

    #[test]
    fn outbound_proxy_transports() {
        let proxy = |uri: &str| {
            Config::parse(&SAMPLE.replace("sip:127.0.0.1:5080", uri)).map(|c| {
                c.outbound_proxy_addr()
                    .expect("proxy")
                    .map(|(t, a)| (t, a.port()))
            })
        };
        assert_eq!(
            proxy("sips:127.0.0.1:5081").expect("sips"),
            Some((ListenTransport::Tls, 5081))
        );
        assert_eq!(
            proxy("sip:127.0.0.1:5081;transport=TLS").expect("tls"),
            Some((ListenTransport::Tls, 5081))
        );
        assert_eq!(
            proxy("sip:127.0.0.1;transport=tcp").expect("tcp"),
            Some((ListenTransport::Tcp, 5060))
        );
        for bad in [
            "sip:127.0.0.1;transport=ws",
            "sips:127.0.0.1;transport=tcp",
            "sip:127.0.0.1;transport=sctp",
        ] {
            let e = proxy(bad).expect_err(bad);
            assert!(
                e.to_string().starts_with("sip.outbound_proxy"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn account_settings_default_to_the_core_constants_and_follow_the_config() {
        use crate::core::accounts::{self, AccountSettings};
        let c = Config::parse(SAMPLE).expect("sample config");
        let s = c.account_settings();
        assert_eq!(s, AccountSettings::default());
        assert_eq!(
            (s.backoff_min, s.backoff_max, s.min_expires, s.max_expires),
            (
                accounts::BACKOFF_MIN,
                accounts::BACKOFF_MAX,
                accounts::MIN_EXPIRES,
                accounts::MAX_EXPIRES
            )
        );
        let c = Config::parse(&format!(
            "{SAMPLE}\n[accounts]\nbackoff_initial_secs = 5\nbackoff_max_secs = 25\nmin_expires = 120\nmax_expires = 7200\n"
        ))
        .expect("accounts config");
        let s = c.account_settings();
        assert_eq!((s.min_expires, s.max_expires), (120, 7200));
        let waits: Vec<u64> = (1..=5).map(|n| s.backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 25, 25]);
        let e =
            Config::parse(&format!("{SAMPLE}\n[accounts]\nbogus = 1\n")).expect_err("unknown key");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn missing_section_is_an_error() {
        let text = SAMPLE.replace(
            "[admin]\nlisten = \"127.0.0.1:8080\"\ntoken = \"change-me\"\n",
            "",
        );
        let e = Config::parse(&text).expect_err("missing admin");
        assert!(e.to_string().contains("admin"), "{e}");
    }
}

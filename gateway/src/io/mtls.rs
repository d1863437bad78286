//! Mutual TLS: the client certificates a `tls:` listener asks for, and the SIP identities a
//! certificate holds (RFC 5922 §7.1), for connection reuse (RFC 5923).
//!
//! With `[sip.tls] client_ca`, the `tls:` listeners send a CertificateRequest; a client
//! may answer with no certificate (it connects as before) or with one. rustls checks in the
//! handshake that the client holds the key of what it presented ([`OptionalClientCert`]);
//! whether the chain leads to a `client_ca` anchor is checked after the handshake
//! ([`ClientAuth::verify`]), so that a phone presenting a certificate stox cannot verify
//! still connects, only without an identity. A verified certificate's identities are what
//! an RFC 5923 `alias` is checked against (`transports::Flows::alias`).

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use crate::sipmsg::ViaParm;

/// The SIP identities of a verified certificate (RFC 5922 §7.1) and its IP addresses, or
/// the one name stox verified a server for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerIdentity {
    /// Domain names, lower case, without a trailing dot.
    pub names: Vec<String>,
    /// `iPAddress` subjectAltNames.
    pub ips: Vec<IpAddr>,
}

impl PeerIdentity {
    /// The identities of a certificate (DER), RFC 5922 §7.1: the host of each `sip:` URI
    /// subjectAltName if there is one; else each `dNSName` subjectAltName; the subject's
    /// Common Name only for a certificate without a subjectAltName extension. `iPAddress`
    /// subjectAltNames are kept apart (RFC 5922 has none; stox matches an IP sent-by
    /// against them).
    pub fn of_certificate(der: &[u8]) -> Result<PeerIdentity, String> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| format!("certificate: {e}"))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| format!("subjectAltName: {e}"))?;
        let mut id = PeerIdentity::default();
        let Some(san) = san else {
            id.names = cert
                .subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .filter_map(normal_name)
                .collect();
            return Ok(id);
        };
        let (mut uris, mut dns) = (Vec::new(), Vec::new());
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => {
                    // `sip:example.com` (a SIP domain; RFC 5922 §7.1 takes the host part of
                    // a URI without a user part).
                    let scheme = uri.get(..4).filter(|s| s.eq_ignore_ascii_case("sip:"));
                    let host = scheme
                        .and_then(|_| uri.get(4..))
                        .filter(|h| !h.contains('@'));
                    if let Some(h) = host.and_then(normal_name) {
                        uris.push(h);
                    }
                }
                GeneralName::DNSName(d) => dns.extend(normal_name(d)),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        id.ips.push(v4.into());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        id.ips.push(v6.into());
                    }
                }
                _ => {}
            }
        }
        id.names = if uris.is_empty() { dns } else { uris };
        Ok(id)
    }

    /// The identity of a server stox connected to and verified for `host` (a name or an IP
    /// address).
    pub fn of_verified_host(host: &str) -> PeerIdentity {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => PeerIdentity {
                names: vec![],
                ips: vec![ip],
            },
            Err(_) => PeerIdentity {
                names: normal_name(bare).into_iter().collect(),
                ips: vec![],
            },
        }
    }

    /// Whether `host` (a domain name, or an IP address, IPv6 with or without brackets) is
    /// one of these identities: names compare case-insensitively and exactly (RFC 5922
    /// §7.2; a `*.example.com` dNSName matches no name), IP addresses by value.
    pub fn covers(&self, host: &str) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.ips.contains(&ip),
            Err(_) => normal_name(bare).is_some_and(|h| self.names.contains(&h)),
        }
    }
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all: Vec<String> = self
            .names
            .iter()
            .cloned()
            .chain(self.ips.iter().map(IpAddr::to_string))
            .collect();
        if all.is_empty() {
            write!(f, "no identity")
        } else {
            write!(f, "{}", all.join(", "))
        }
    }
}

/// A name as compared: lower case, no trailing dot; `None` for an empty one or one with a
/// wildcard (never matched).
fn normal_name(name: &str) -> Option<String> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty() && !name.contains('*')).then_some(name)
}

/// RFC 5923 §5: the destination a connection is aliased to, for a request that came over
/// it whose topmost Via is `via`, the peer having presented a certificate verified as
/// `identity` from `peer`; or why the connection is not aliased.
///
/// The sent-by host must be one of the certificate's identities (RFC 5923 §5, with the
/// identities of RFC 5922). An IP sent-by aliases the connection to that address; a host name to the
/// peer's address (the connection's) with the sent-by port: stox looks up its TLS next
/// hops by address, and reuses such a connection only for a target whose name the
/// certificate also holds (`Flows::tls_to`). No port: 5061 (RFC 3261 §19.1.2 for TLS).
pub fn alias_target(
    via: &ViaParm,
    identity: Option<&PeerIdentity>,
    peer: std::net::SocketAddr,
) -> Result<std::net::SocketAddr, String> {
    if !via.alias() {
        return Err("no alias parameter in the topmost Via".into());
    }
    if via.transport != "TLS" {
        return Err(format!(
            "the topmost Via names {}: an alias is honoured over TLS only",
            via.transport
        ));
    }
    let Some(identity) = identity else {
        return Err("the client presented no certificate stox could verify".into());
    };
    if !identity.covers(&via.host) {
        return Err(format!(
            "the client certificate ({identity}) does not name the Via sent-by {}",
            via.host
        ));
    }
    let port = via.port.unwrap_or(5061);
    let bare = via.host.trim_start_matches('[').trim_end_matches(']');
    Ok(match bare.parse::<IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, port),
        Err(_) => std::net::SocketAddr::new(peer.ip(), port),
    })
}

/// The trust anchors of a PEM file (`[sip.tls] client_ca`): every certificate in it, each
/// one usable as an anchor.
pub fn trust_anchors(pem: &[u8]) -> Result<RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate".into());
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| format!("certificate {}: {e}", i + 1))?;
    }
    Ok(roots)
}

/// Client certificates on a `tls:` listener, verified against `[sip.tls] client_ca`.
#[derive(Debug)]
pub struct ClientAuth {
    roots: Arc<RootCertStore>,
    /// rustls' verifier of client certificates (chain, validity, clientAuth usage).
    client: Arc<dyn ClientCertVerifier>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientAuth {
    /// From the PEM of the trust anchors.
    pub fn new(ca_pem: &[u8]) -> anyhow::Result<ClientAuth> {
        let roots = trust_anchors(ca_pem).map_err(|e| anyhow::anyhow!("sip.tls.client_ca: {e}"))?;
        ClientAuth::with_roots(roots)
    }

    /// From trust anchors already loaded.
    pub fn with_roots(roots: RootCertStore) -> anyhow::Result<ClientAuth> {
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| anyhow::anyhow!("sip.tls.client_ca: {e}"))?;
        Ok(ClientAuth {
            roots,
            client,
            provider,
        })
    }

    /// The verifier for the handshake: asks for a certificate, takes none, and checks only
    /// that the client holds the key of the one it presents.
    pub fn handshake_verifier(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::new(OptionalClientCert(self.client.clone()))
    }

    /// The identities of a client's certificate chain (end entity first) if it leads to a
    /// `client_ca` anchor and is valid now: as a client certificate (extended key usage
    /// clientAuth, or none), or as a server certificate (serverAuth): SIP servers present
    /// their domain certificate in both roles, and public CAs now issue server-only ones.
    pub fn verify(&self, chain: &[CertificateDer<'_>]) -> Result<PeerIdentity, String> {
        let (end_entity, intermediates) = chain
            .split_first()
            .ok_or_else(|| "no certificate".to_string())?;
        let now = UnixTime::now();
        if let Err(as_client) = self
            .client
            .verify_client_cert(end_entity, intermediates, now)
        {
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)
                .map_err(|e| e.to_string())?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &parsed,
                &self.roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )
            .map_err(|as_server| format!("{as_client} (as a server certificate: {as_server})"))?;
        }
        PeerIdentity::of_certificate(end_entity)
    }
}

/// A handshake verifier that offers client authentication, accepts a client without a
/// certificate or with any certificate, and checks the handshake signature (proof that the
/// client holds the key). The chain is judged after the handshake by [`ClientAuth::verify`].
#[derive(Debug)]
struct OptionalClientCert(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for OptionalClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, SanType,
    };
    use rustls::pki_types::PrivateKeyDer;

    /// A test CA and a function making leaf certificates it signs.
    struct Ca {
        der: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    }

    impl Ca {
        fn new(name: &str) -> Ca {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate().expect("key");
            let der = params.self_signed(&key).expect("CA").der().clone();
            Ca {
                der,
                issuer: Issuer::new(params, key),
            }
        }

        fn roots(&self) -> RootCertStore {
            let mut roots = RootCertStore::empty();
            roots.add(self.der.clone()).expect("anchor");
            roots
        }

        /// A leaf with these subjectAltNames (none: no extension) and extended key usages.
        fn leaf(
            &self,
            cn: &str,
            sans: Vec<SanType>,
            eku: Vec<ExtendedKeyUsagePurpose>,
        ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params.subject_alt_names = sans;
            params.extended_key_usages = eku;
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &self.issuer).expect("leaf");
            let key = PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
            (cert.der().clone(), key)
        }
    }

    fn dns(name: &str) -> SanType {
        SanType::DnsName(name.try_into().expect("dns"))
    }

    fn uri(u: &str) -> SanType {
        SanType::URI(u.try_into().expect("uri"))
    }

    fn ip(a: &str) -> SanType {
        SanType::IpAddress(a.parse().expect("ip"))
    }

    #[test]
    fn sip_identities_of_a_certificate() {
        let ca = Ca::new("test CA");
        let id = |sans, cn: &str| {
            let (cert, _) = ca.leaf(cn, sans, vec![]);
            PeerIdentity::of_certificate(&cert).expect("identity")
        };
        // dNSName and iPAddress subjectAltNames; the CN is not looked at then.
        let both = id(
            vec![ip("127.0.0.1"), dns("Proxy.Example."), ip("2001:db8::1")],
            "cn.example",
        );
        assert_eq!(both.names, vec!["proxy.example"]);
        assert_eq!(
            both.ips,
            vec![
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
        assert!(both.covers("PROXY.example"));
        assert!(both.covers("proxy.example."));
        assert!(both.covers("127.0.0.1"));
        assert!(both.covers("[2001:db8::1]"));
        assert!(!both.covers("cn.example"));
        assert!(!both.covers("127.0.0.2"));
        assert!(!both.covers("other.proxy.example"));
        // RFC 5922 §7.1: `sip:` URIs, when present, are the identities; dNSNames are not.
        let sip = id(
            vec![
                uri("sip:example.com"),
                uri("sip:alice@example.org"),
                uri("https://web.example"),
                dns("other.example"),
            ],
            "cn.example",
        );
        assert_eq!(sip.names, vec!["example.com"]);
        assert!(!sip.covers("other.example") && !sip.covers("example.org"));
        // No subjectAltName at all: the Common Name.
        let cn = id(vec![], "CN.Example");
        assert_eq!(cn.names, vec!["cn.example"]);
        // A wildcard matches nothing.
        let wild = id(vec![dns("*.example.com")], "x");
        assert!(wild.names.is_empty());
        assert!(!wild.covers("a.example.com") && !wild.covers("*.example.com"));
        assert!(PeerIdentity::of_certificate(b"not a certificate").is_err());
        assert_eq!(both.to_string(), "proxy.example, 127.0.0.1, 2001:db8::1");
        assert_eq!(PeerIdentity::default().to_string(), "no identity");
    }

    #[test]
    fn the_identity_of_a_verified_host() {
        let name = PeerIdentity::of_verified_host("PBX.example");
        assert!(name.covers("pbx.example") && !name.covers("127.0.0.1"));
        let v6 = PeerIdentity::of_verified_host("[::1]");
        assert!(v6.covers("::1") && v6.covers("[::1]") && !v6.covers("localhost"));
    }

    fn via(text: &str) -> ViaParm {
        ViaParm::parse(text).expect(text)
    }

    #[test]
    fn where_a_connection_is_aliased() {
        let peer: std::net::SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let id = PeerIdentity {
            names: vec!["proxy.example".into()],
            ips: vec!["192.0.2.1".parse().unwrap()],
        };
        let to = |v: &str, id: Option<&PeerIdentity>| alias_target(&via(v), id, peer);
        // An IP sent-by: that address, 5061 without a port.
        assert_eq!(
            to(
                "SIP/2.0/TLS 192.0.2.1:5062;branch=z9hG4bKa;alias",
                Some(&id)
            ),
            Ok("192.0.2.1:5062".parse().unwrap())
        );
        assert_eq!(
            to("SIP/2.0/TLS 192.0.2.1;branch=z9hG4bKa;alias", Some(&id)),
            Ok("192.0.2.1:5061".parse().unwrap())
        );
        // A name: the peer's address with the sent-by port.
        assert_eq!(
            to("SIP/2.0/TLS Proxy.Example:5070;alias", Some(&id)),
            Ok("192.0.2.7:5070".parse().unwrap())
        );
        // Never without alias, over another transport, without a verified certificate,
        // or with a certificate that does not name the sent-by.
        for (v, id, why) in [
            (
                "SIP/2.0/TLS 192.0.2.1:5062;branch=z9hG4bKa",
                Some(&id),
                "no alias",
            ),
            (
                "SIP/2.0/TCP 192.0.2.1:5062;alias",
                Some(&id),
                "over TLS only",
            ),
            ("SIP/2.0/TLS 192.0.2.1:5062;alias", None, "no certificate"),
            (
                "SIP/2.0/TLS 192.0.2.9:5062;alias",
                Some(&id),
                "does not name",
            ),
            (
                "SIP/2.0/TLS other.example;alias",
                Some(&id),
                "does not name",
            ),
        ] {
            let e = to(v, id).expect_err(v);
            assert!(e.contains(why), "{v}: {e}");
        }
    }

    /// A TLS handshake in memory between a rustls client (with `client`'s certificate, if
    /// any) and a server asking for one through `auth`; what the server saw.
    fn handshake(
        auth: &ClientAuth,
        server: &(CertificateDer<'static>, PrivateKeyDer<'static>),
        server_roots: RootCertStore,
        client: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    ) -> Option<Vec<CertificateDer<'static>>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(auth.handshake_verifier())
            .with_single_cert(vec![server.0.clone()], server.1.clone_key())
            .expect("server config");
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(server_roots);
        let client_config = match client {
            Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
            None => builder.with_no_client_auth(),
        };
        let name = rustls::pki_types::ServerName::try_from("proxy.example").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut s = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()
                .expect("server side of the handshake");
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()
                .expect("client side of the handshake");
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
        }
        assert!(!s.is_handshaking(), "handshake done");
        s.peer_certificates().map(|c| c.to_vec())
    }

    #[test]
    fn a_client_certificate_is_optional_and_verified_after_the_handshake() {
        let ca = Ca::new("peers CA");
        let stranger = Ca::new("another CA");
        let auth = ClientAuth::with_roots(ca.roots()).expect("auth");
        let server = ca.leaf("server", vec![dns("proxy.example")], vec![]);
        // No certificate: the handshake succeeds, nothing to verify.
        assert_eq!(handshake(&auth, &server, ca.roots(), None), None);
        // A certificate from the CA: verified, its identities read.
        let good = ca.leaf("a", vec![ip("127.0.0.1"), dns("a.example")], vec![]);
        let chain = handshake(&auth, &server, ca.roots(), Some(good)).expect("presented");
        let id = auth.verify(&chain).expect("verified");
        assert!(id.covers("127.0.0.1") && id.covers("a.example"));
        // A domain certificate with the serverAuth usage only is taken too.
        let server_only = ca.leaf(
            "b",
            vec![dns("b.example")],
            vec![ExtendedKeyUsagePurpose::ServerAuth],
        );
        let chain = handshake(&auth, &server, ca.roots(), Some(server_only)).expect("presented");
        assert!(auth.verify(&chain).expect("verified").covers("b.example"));
        // One of another CA: the handshake still succeeds, the certificate is not verified.
        let foreign = stranger.leaf("c", vec![ip("127.0.0.1")], vec![]);
        let chain = handshake(&auth, &server, ca.roots(), Some(foreign)).expect("presented");
        assert!(auth.verify(&chain).is_err());
        // An email-protection-only certificate is no client's nor server's.
        let email = ca.leaf(
            "d",
            vec![dns("d.example")],
            vec![ExtendedKeyUsagePurpose::EmailProtection],
        );
        let chain = handshake(&auth, &server, ca.roots(), Some(email)).expect("presented");
        assert!(auth.verify(&chain).is_err());
        assert!(auth.verify(&[]).is_err());
    }

    #[test]
    fn trust_anchors_from_pem() {
        let ca = Ca::new("pem CA");
        let b64 = {
            // A PEM block by hand (rcgen's PEM output is not built here).
            const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut out = String::new();
            for chunk in ca.der.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
                for i in 0..4 {
                    if i <= chunk.len() {
                        out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                    } else {
                        out.push('=');
                    }
                }
            }
            out
        };
        let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
        assert_eq!(trust_anchors(pem.as_bytes()).expect("anchors").len(), 1);
        assert!(trust_anchors(b"").is_err());
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(trust_anchors(garbage.as_bytes()).is_err());
    }
}

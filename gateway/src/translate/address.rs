//! RFC 7247 §6: address translation, with XEP-0106 escaping for foreign addresses.
//!
//! [`Addresses`] is the one place where SIP URIs become JIDs and back. It implements the
//! "Addresses" table of ARCHITECTURE.md, with `H` the home XMPP domain (served by the XMPP
//! server) and `C` the component domain (owned by stox); stox is the SIP service of both.
//!
//! Characters follow RFC 7247 §6.4 / §6.5: a SIP user part is percent-decoded (the
//! [`SipUri`] parser does that) and the characters a JID localpart cannot hold are escaped
//! with XEP-0106 (`&` → `\26`, `'` → `\27`, `/` → `\2f`, and likewise `@ : " < >`, space,
//! and `\` before an escape code); the other way, the localpart is XEP-0106-unescaped and
//! the [`SipUri`] display percent-encodes what a SIP user part cannot hold (non-ASCII as
//! UTF-8 bytes). A `;gr=` value (a public GRUU, RFC 5627) and a JID resource map to each
//! other (RFC 7247 §6.4 step 7, §6.5 step 5); `;gr` without a value (a temporary GRUU) is
//! not a resource.
//!
//! A XEP-0114 component can only send from `C`, so a foreign SIP address is folded into a
//! localpart at `C`: `sip:carol@pbx.example` is `carol\40pbx.example@C` (the Cheogram
//! convention; STOX-MAPPING.md §1). An XMPP user of another domain appears to SIP as a user
//! of `C` whose name is the JID: `bob@example.net` is `sip:bob%40example.net@C`.
//!
//! Worked examples, with `H = localhost` and `C = sip.localhost`:
//!
//! | direction | input | output |
//! |---|---|---|
//! | [`sip_target_to_jid`] | `sip:alice@localhost` | `alice@localhost` |
//! | | `sip:dave@sip.localhost` | `dave@sip.localhost` |
//! | | `sip:bob%40example.net@sip.localhost` | `bob@example.net` |
//! | | `sip:alice@localhost;gr=phone` | `alice@localhost/phone` |
//! | | `sips:alice@localhost` | `Err(AddressError::Sips)` (RFC 7247 §8) |
//! | [`sip_sender_to_jid`] | `sip:carol@pbx.example` | `carol\40pbx.example@sip.localhost` |
//! | | `sip:carol@127.0.0.1:5080` | `carol\40127.0.0.1\3a5080@sip.localhost` |
//! | | `sip:dave@sip.localhost` | `dave@sip.localhost` |
//! | | `sip:alice@localhost` | `alice\40localhost@sip.localhost` |
//! | | `sip:o'malley@pbx.example;gr=x` | `o\27malley\40pbx.example@sip.localhost/x` |
//! | [`jid_target_to_sip`] | `carol\40pbx.example@sip.localhost` | `sip:carol@pbx.example` |
//! | | `carol%pbx.example@sip.localhost` | `sip:carol@pbx.example` (alias) |
//! | | `carol\40127.0.0.1\3a5080@sip.localhost` | `sip:carol@127.0.0.1:5080` |
//! | | `dave@sip.localhost` | `sip:dave@sip.localhost` |
//! | | `carol\40pbx.example@sip.localhost/x` | `sip:carol@pbx.example;gr=x` |
//! | [`jid_sender_to_sip`] | `alice@localhost/phone` | `sip:alice@localhost;gr=phone` |
//! | | `m\26m@localhost` | `sip:m&m@localhost` |
//! | | `tschüss@localhost` | `sip:tsch%C3%BCss@localhost` |
//! | | `bob@example.net/x` | `sip:bob%40example.net@sip.localhost;gr=x` |
//!
//! ```
//! use stox_gateway::translate::address::Addresses;
//!
//! let a = Addresses::new("localhost", "sip.localhost").unwrap();
//! let from = a.sip_sender_to_jid(&"sip:carol@127.0.0.1:5080".parse().unwrap()).unwrap();
//! assert_eq!(from.to_string(), r"carol\40127.0.0.1\3a5080@sip.localhost");
//! let back = a.jid_target_to_sip(&from).unwrap();
//! assert_eq!(back.to_string(), "sip:carol@127.0.0.1:5080");
//! ```
//!
//! Two limits come from XMPP itself: nodeprep case-folds and NFKC-normalises the localpart,
//! so SIP users that differ only in case (`Carol` / `carol`) get the same JID; and a
//! localpart that nodeprep refuses (control characters, mixed-direction text) has no JID
//! ([`AddressError::InvalidJid`]). Only the AOR is carried: uri-parameters other than `gr`
//! (such as `transport`) are not part of the JID. Explicit mappings from the store override
//! all of this; the caller consults them first.
//!
//! [`sip_target_to_jid`]: Addresses::sip_target_to_jid
//! [`sip_sender_to_jid`]: Addresses::sip_sender_to_jid
//! [`jid_target_to_sip`]: Addresses::jid_target_to_sip
//! [`jid_sender_to_sip`]: Addresses::jid_sender_to_sip

use stox_sip::uri::{parse_host_port, Scheme, SipUri};
use stox_xmpp::escape::{escape_node, unescape_node};
use xmpp_parsers::jid::{BareJid, DomainPart, Jid, NodePart};
use xmpp_parsers::stanza_error::DefinedCondition;

/// Why an address has no translation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// A SIPS URI in a request: never translated to XMPP, which cannot promise TLS on
    /// every hop (RFC 7247 §8).
    #[error("SIPS URIs are not translated to XMPP (RFC 7247 §8)")]
    Sips,
    /// The SIP URI has no user part, so it names no user.
    #[error("SIP URI without a user part")]
    MissingUser,
    /// The SIP target's host is neither the home domain nor the component domain.
    #[error("{domain} is not served here")]
    UnknownSipDomain {
        /// The host of the URI.
        domain: String,
    },
    /// The JID target is not at the component domain.
    #[error("{domain} is not the component domain")]
    NotAtComponent {
        /// The domain of the JID.
        domain: String,
    },
    /// The JID has no localpart where one is needed.
    #[error("JID without a localpart")]
    MissingNode,
    /// A foreign address with nothing before its `@` (`\40pbx.example@C`).
    #[error("empty user part before '@'")]
    EmptyUser,
    /// The host (or domain) folded into the address is not a valid one.
    #[error("invalid host {host:?}")]
    BadHost {
        /// The text that should have been a host.
        host: String,
    },
    /// The translated parts do not form a JID (nodeprep / resourceprep refused them).
    #[error("no valid JID: {0}")]
    InvalidJid(String),
    /// A stanza "from" the component domain itself: nothing at `C` is an XMPP user.
    #[error("sender {0} is at the component domain")]
    SenderAtComponent(String),
    /// [`Addresses::new`]: a domain that is not both a JID domain and a SIP host.
    #[error("invalid domain {0:?}")]
    InvalidDomain(String),
    /// [`Addresses::new`]: the home and component domain are the same.
    #[error("home and component domain must differ")]
    SameDomain,
}

impl AddressError {
    /// The stanza error condition for this failure: `jid-malformed` when the address
    /// itself is broken, `item-not-found` when it is well-formed but nothing here answers
    /// for it. (On the SIP side, map it with the RFC 7247 §7 table:
    /// [`crate::translate::error::xmpp_to_sip`].)
    pub fn condition(&self) -> DefinedCondition {
        match self {
            AddressError::Sips
            | AddressError::UnknownSipDomain { .. }
            | AddressError::NotAtComponent { .. } => DefinedCondition::ItemNotFound,
            AddressError::MissingUser
            | AddressError::MissingNode
            | AddressError::EmptyUser
            | AddressError::BadHost { .. }
            | AddressError::InvalidJid(_)
            | AddressError::SenderAtComponent(_)
            | AddressError::InvalidDomain(_)
            | AddressError::SameDomain => DefinedCondition::JidMalformed,
        }
    }
}

/// The address contract between SIP and XMPP for one home domain `H` and one component
/// domain `C`. See the module documentation for the rules and worked examples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// `H`, normalised (lowercase).
    home: String,
    /// `C`, normalised (lowercase).
    component: String,
}

impl Addresses {
    /// Both domains must be valid as JID domains and as SIP hosts, and differ.
    pub fn new(home: &str, component: &str) -> Result<Self, AddressError> {
        let home = normalise_domain(home)?;
        let component = normalise_domain(component)?;
        if home == component {
            return Err(AddressError::SameDomain);
        }
        Ok(Addresses { home, component })
    }

    /// The home XMPP domain `H`.
    pub fn home(&self) -> &str {
        &self.home
    }

    /// The component domain `C`.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// Request-URI / To of an inbound SIP request → the JID to deliver to.
    ///
    /// `sip:alice@H` → `alice@H`; `sip:dave@C` → `dave@C`; `sip:bob%40example.net@C` →
    /// `bob@example.net`; `;gr=x` → resource `x`. The port of the URI is ignored (it names
    /// stox's listener). A `sips:` URI is refused with [`AddressError::Sips`]
    /// (RFC 7247 §8); a host other than `H` and `C` with
    /// [`AddressError::UnknownSipDomain`].
    pub fn sip_target_to_jid(&self, uri: &SipUri) -> Result<Jid, AddressError> {
        if uri.scheme == Scheme::Sips {
            return Err(AddressError::Sips);
        }
        let user = sip_user(uri)?;
        let bare = if uri.host == self.home {
            bare_jid(&escape_node(user), &self.home)?
        } else if uri.host == self.component {
            // An '@' in the user part names an XMPP address elsewhere; the last '@' is the
            // one before the domain (an escaped localpart may hold '@' itself).
            match user.rsplit_once('@') {
                Some(("", _)) => return Err(AddressError::EmptyUser),
                Some((local, domain)) => bare_jid(&escape_node(local), domain)?,
                None => bare_jid(&escape_node(user), &self.component)?,
            }
        } else {
            return Err(AddressError::UnknownSipDomain {
                domain: uri.host.clone(),
            });
        };
        with_resource(bare, uri.gr())
    }

    /// From of an inbound SIP request → the `from` JID stox sends as (always at `C`).
    ///
    /// `sip:carol@pbx.example` → `carol\40pbx.example@C`; `sip:carol@127.0.0.1:5080` →
    /// `carol\40127.0.0.1\3a5080@C`; `sip:dave@C` → `dave@C`; `sip:alice@H` →
    /// `alice\40H@C`; `;gr=x` → `/x`. The user part is percent-decoded and then
    /// XEP-0106-escaped. A user of `C` keeps the plain form only if its name has no `@`
    /// and no `%` (so that [`Addresses::jid_target_to_sip`] reads it back unchanged);
    /// otherwise it is folded like any foreign address.
    pub fn sip_sender_to_jid(&self, uri: &SipUri) -> Result<Jid, AddressError> {
        if uri.scheme == Scheme::Sips {
            return Err(AddressError::Sips);
        }
        let user = sip_user(uri)?;
        let local_user =
            uri.host == self.component && uri.port.is_none() && !user.contains(['@', '%']);
        let node = if local_user {
            escape_node(user)
        } else {
            escape_node(&format!("{user}@{}", uri.host_port()))
        };
        with_resource(bare_jid(&node, &self.component)?, uri.gr())
    }

    /// `to` of a stanza addressed to `C` → the SIP target.
    ///
    /// `carol\40pbx.example@C` → `sip:carol@pbx.example`; `carol%pbx.example@C` → the same
    /// (a friendlier alias, used when the text after the last `%` is a valid host[:port]
    /// and there is no `\40`); `carol\40127.0.0.1\3a5080@C` → `sip:carol@127.0.0.1:5080`;
    /// `dave@C` → `sip:dave@C`. A resource becomes `;gr=`. Errors: not at `C`
    /// ([`AddressError::NotAtComponent`], item-not-found); no localpart, an empty user or
    /// a bad host (jid-malformed).
    pub fn jid_target_to_sip(&self, jid: &Jid) -> Result<SipUri, AddressError> {
        if jid.domain().as_str() != self.component {
            return Err(AddressError::NotAtComponent {
                domain: jid.domain().to_string(),
            });
        }
        let node = jid.node().ok_or(AddressError::MissingNode)?;
        let raw = unescape_node(node.as_str());
        let alias = || {
            raw.rsplit_once('%')
                .filter(|(_, host_port)| parse_host_port(host_port).is_ok())
        };
        let uri = match raw.rsplit_once('@').or_else(alias) {
            Some((user, host_port)) => {
                if user.is_empty() {
                    return Err(AddressError::EmptyUser);
                }
                let (host, port) =
                    parse_host_port(host_port).map_err(|_| AddressError::BadHost {
                        host: host_port.to_owned(),
                    })?;
                sip_uri(user, &host, port)?
            }
            None => sip_uri(&raw, &self.component, None)?,
        };
        Ok(with_gr(uri, jid.resource().map(|r| r.as_str())))
    }

    /// `from` of a stanza from an XMPP user → the SIP From.
    ///
    /// `alice@H/phone` → `sip:alice@H;gr=phone` (a home user keeps her address; the
    /// localpart is XEP-0106-unescaped: `m\26m@H` → `sip:m&m@H`); `bob@example.net/x` →
    /// `sip:bob%40example.net@C;gr=x` (user `bob@example.net` at `C`). The server `H`
    /// itself is `sip:H`. A sender at `C` is refused ([`AddressError::SenderAtComponent`]),
    /// so is a domain JID of another server ([`AddressError::MissingNode`]).
    pub fn jid_sender_to_sip(&self, jid: &Jid) -> Result<SipUri, AddressError> {
        let domain = jid.domain().as_str();
        let node = jid.node().map(|n| unescape_node(n.as_str()));
        let uri = if domain == self.home {
            match node {
                Some(user) => sip_uri(&user, &self.home, None)?,
                None => SipUri::new(Scheme::Sip, None, &self.home, None).map_err(|_| {
                    AddressError::BadHost {
                        host: self.home.clone(),
                    }
                })?,
            }
        } else if domain == self.component {
            return Err(AddressError::SenderAtComponent(jid.to_string()));
        } else {
            let user = node.ok_or(AddressError::MissingNode)?;
            sip_uri(&format!("{user}@{domain}"), &self.component, None)?
        };
        Ok(with_gr(uri, jid.resource().map(|r| r.as_str())))
    }
}

/// A configured domain: valid as a JID domain and as a SIP host (no port), lowercase.
fn normalise_domain(domain: &str) -> Result<String, AddressError> {
    let invalid = || AddressError::InvalidDomain(domain.to_owned());
    let jid_domain = DomainPart::new(domain).map_err(|_| invalid())?;
    match parse_host_port(jid_domain.as_str()) {
        Ok((host, None)) if host == jid_domain.as_str() => Ok(host),
        _ => Err(invalid()),
    }
}

/// The user part of a SIP URI, required.
fn sip_user(uri: &SipUri) -> Result<&str, AddressError> {
    match uri.user.as_deref() {
        Some(user) if !user.is_empty() => Ok(user),
        _ => Err(AddressError::MissingUser),
    }
}

/// `node@domain`, both checked (nodeprep, domain rules).
fn bare_jid(node: &str, domain: &str) -> Result<BareJid, AddressError> {
    let domain = DomainPart::new(domain).map_err(|_| AddressError::BadHost {
        host: domain.to_owned(),
    })?;
    let node = NodePart::new(node).map_err(|e| AddressError::InvalidJid(e.to_string()))?;
    Ok(BareJid::from_parts(Some(&*node), &domain))
}

/// The bare JID, or the full JID with the public GRUU instance as resource.
fn with_resource(bare: BareJid, gr: Option<&str>) -> Result<Jid, AddressError> {
    match gr {
        Some(gr) if !gr.is_empty() => bare
            .with_resource_str(gr)
            .map(Jid::from)
            .map_err(|e| AddressError::InvalidJid(e.to_string())),
        _ => Ok(Jid::from(bare)),
    }
}

/// `sip:user@host[:port]`.
fn sip_uri(user: &str, host: &str, port: Option<u16>) -> Result<SipUri, AddressError> {
    if user.is_empty() {
        return Err(AddressError::EmptyUser);
    }
    SipUri::new(Scheme::Sip, Some(user.to_owned()), host, port).map_err(|_| AddressError::BadHost {
        host: host.to_owned(),
    })
}

/// The URI with `;gr=resource` when there is a resource.
fn with_gr(uri: SipUri, resource: Option<&str>) -> SipUri {
    match resource {
        Some(resource) => uri.with_param("gr", Some(resource)),
        None => uri,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: &str = "localhost";
    const C: &str = "sip.localhost";

    fn addresses() -> Addresses {
        match Addresses::new(H, C) {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        }
    }

    fn uri(s: &str) -> SipUri {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn jid(s: &str) -> Jid {
        Jid::new(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn new_checks_the_domains() {
        let a = addresses();
        assert_eq!((a.home(), a.component()), (H, C));
        assert_eq!(
            Addresses::new("LocalHost", "SIP.localhost").map(|a| a.component().to_owned()),
            Ok(C.to_owned())
        );
        assert_eq!(Addresses::new(H, H), Err(AddressError::SameDomain));
        assert_eq!(
            Addresses::new("", C),
            Err(AddressError::InvalidDomain(String::new()))
        );
        assert_eq!(
            Addresses::new(H, "sip.localhost:5060"),
            Err(AddressError::InvalidDomain("sip.localhost:5060".into()))
        );
        assert!(Addresses::new("a b", C).is_err());
    }

    /// Every row of the ARCHITECTURE.md "Addresses" table, in both directions.
    #[test]
    fn architecture_table() {
        let a = addresses();
        // SIP sip:alice@H ⇄ XMPP alice@H
        assert_eq!(
            a.sip_target_to_jid(&uri("sip:alice@localhost")),
            Ok(jid("alice@localhost"))
        );
        assert_eq!(
            a.jid_sender_to_sip(&jid("alice@localhost")),
            Ok(uri("sip:alice@localhost"))
        );
        // SIP sip:dave@C ⇄ XMPP dave@C
        assert_eq!(
            a.sip_target_to_jid(&uri("sip:dave@sip.localhost")),
            Ok(jid("dave@sip.localhost"))
        );
        assert_eq!(
            a.sip_sender_to_jid(&uri("sip:dave@sip.localhost")),
            Ok(jid("dave@sip.localhost"))
        );
        assert_eq!(
            a.jid_target_to_sip(&jid("dave@sip.localhost")),
            Ok(uri("sip:dave@sip.localhost"))
        );
        // SIP sip:bob%40example.net@C ⇄ XMPP bob@example.net
        assert_eq!(
            a.sip_target_to_jid(&uri("sip:bob%40example.net@sip.localhost")),
            Ok(jid("bob@example.net"))
        );
        assert_eq!(
            a.jid_sender_to_sip(&jid("bob@example.net")),
            Ok(uri("sip:bob%40example.net@sip.localhost"))
        );
        // XMPP carol\40pbx.example@C ⇄ SIP sip:carol@pbx.example
        assert_eq!(
            a.jid_target_to_sip(&jid(r"carol\40pbx.example@sip.localhost")),
            Ok(uri("sip:carol@pbx.example"))
        );
        assert_eq!(
            a.sip_sender_to_jid(&uri("sip:carol@pbx.example")),
            Ok(jid(r"carol\40pbx.example@sip.localhost"))
        );
        // ... with \3a for a :port
        assert_eq!(
            a.jid_target_to_sip(&jid(r"carol\40127.0.0.1\3a5080@sip.localhost")),
            Ok(uri("sip:carol@127.0.0.1:5080"))
        );
        assert_eq!(
            a.sip_sender_to_jid(&uri("sip:carol@127.0.0.1:5080")),
            Ok(jid(r"carol\40127.0.0.1\3a5080@sip.localhost"))
        );
        // XMPP carol%pbx.example@C → SIP sip:carol@pbx.example (alias, input only)
        assert_eq!(
            a.jid_target_to_sip(&jid("carol%pbx.example@sip.localhost")),
            Ok(uri("sip:carol@pbx.example"))
        );
        assert_eq!(
            a.jid_target_to_sip(&jid(r"carol%127.0.0.1\3a5080@sip.localhost")),
            Ok(uri("sip:carol@127.0.0.1:5080"))
        );
        // XMPP sender alice@H/phone ⇄ SIP sip:alice@H;gr=phone
        assert_eq!(
            a.jid_sender_to_sip(&jid("alice@localhost/phone")),
            Ok(uri("sip:alice@localhost;gr=phone"))
        );
        assert_eq!(
            a.sip_target_to_jid(&uri("sip:alice@localhost;gr=phone")),
            Ok(jid("alice@localhost/phone"))
        );
        // SIP sender sip:alice@H → alice\40H@C (stox can only send from C)
        assert_eq!(
            a.sip_sender_to_jid(&uri("sip:alice@localhost")),
            Ok(jid(r"alice\40localhost@sip.localhost"))
        );
        assert_eq!(
            a.jid_target_to_sip(&jid(r"alice\40localhost@sip.localhost")),
            Ok(uri("sip:alice@localhost"))
        );
    }

    #[test]
    fn gruu_and_resource() {
        let a = addresses();
        let from = a
            .sip_sender_to_jid(&uri(
                "sip:carol@pbx.example;gr=urn:uuid:f81d4fae;transport=tcp",
            ))
            .unwrap();
        assert_eq!(
            from,
            jid(r"carol\40pbx.example@sip.localhost/urn:uuid:f81d4fae")
        );
        assert_eq!(
            a.jid_target_to_sip(&from),
            Ok(uri("sip:carol@pbx.example;gr=urn:uuid:f81d4fae"))
        );
        // A temporary GRUU (`;gr` without value) is not a resource (RFC 7247 §6.4 step 7).
        assert_eq!(
            a.sip_sender_to_jid(&uri(
                "sip:tgruu.7hs==jd7vnzga5w7fajsc7-ajd6fabz0f8g5@pbx.example;gr"
            )),
            Ok(jid(
                r"tgruu.7hs==jd7vnzga5w7fajsc7-ajd6fabz0f8g5\40pbx.example@sip.localhost"
            ))
        );
        assert_eq!(
            a.jid_sender_to_sip(&jid("bob@example.net/x")),
            Ok(uri("sip:bob%40example.net@sip.localhost;gr=x"))
        );
        assert_eq!(
            a.jid_sender_to_sip(&jid("alice@localhost/ü phone")),
            Ok(uri("sip:alice@localhost;gr=%C3%BC%20phone"))
        );
    }

    /// RFC 7247 §6.4 / §6.5 examples (with the example domain as `H`).
    #[test]
    fn rfc7247_examples() {
        let sip = Addresses::new("sip.example", "gw.example").unwrap();
        assert_eq!(
            sip.sip_target_to_jid(&uri("sip:f%C3%BC@sip.example")),
            Ok(jid("fü@sip.example"))
        );
        assert_eq!(
            sip.sip_target_to_jid(&uri("sip:o'malley@sip.example")),
            Ok(jid(r"o\27malley@sip.example"))
        );
        assert_eq!(
            sip.sip_target_to_jid(&uri("sip:foo@sip.example;gr=bar")),
            Ok(jid("foo@sip.example/bar"))
        );

        let xmpp = Addresses::new("xmpp.example", "gw.example").unwrap();
        assert_eq!(
            xmpp.jid_sender_to_sip(&jid(r"m\26m@xmpp.example"))
                .map(|u| u.to_string()),
            Ok("sip:m&m@xmpp.example".to_owned())
        );
        assert_eq!(
            xmpp.jid_sender_to_sip(&jid("tschüss@xmpp.example"))
                .map(|u| u.to_string()),
            Ok("sip:tsch%C3%BCss@xmpp.example".to_owned())
        );
        assert_eq!(
            xmpp.jid_sender_to_sip(&jid("baz@xmpp.example/qux"))
                .map(|u| u.to_string()),
            Ok("sip:baz@xmpp.example;gr=qux".to_owned())
        );
    }

    #[test]
    fn characters_are_escaped() {
        let a = addresses();
        for (sip, xmpp) in [
            (
                "sip:o'malley@pbx.example",
                r"o\27malley\40pbx.example@sip.localhost",
            ),
            ("sip:m&m@pbx.example", r"m\26m\40pbx.example@sip.localhost"),
            ("sip:a/b@pbx.example", r"a\2fb\40pbx.example@sip.localhost"),
            (
                "sip:a%20b@pbx.example",
                r"a\20b\40pbx.example@sip.localhost",
            ),
            (
                "sip:a%22b%3C%3E@pbx.example",
                r"a\22b\3c\3e\40pbx.example@sip.localhost",
            ),
            ("sip:a%5Cb@pbx.example", r"a\b\40pbx.example@sip.localhost"),
            (
                "sip:a%5C40@pbx.example",
                r"a\5c40\40pbx.example@sip.localhost",
            ),
            (
                "sip:bob%40example.net@pbx.example",
                r"bob\40example.net\40pbx.example@sip.localhost",
            ),
            ("sip:50%25@pbx.example", r"50%\40pbx.example@sip.localhost"),
            (
                "sip:50%25@sip.localhost",
                r"50%\40sip.localhost@sip.localhost",
            ),
            (
                "sip:dave@sip.localhost:5060",
                r"dave\40sip.localhost\3a5060@sip.localhost",
            ),
            (
                "sip:carol@[2001:db8::1]:5080",
                r"carol\40[2001\3adb8\3a\3a1]\3a5080@sip.localhost",
            ),
            ("sip:f%C3%BC@pbx.example", r"fü\40pbx.example@sip.localhost"),
            (
                "sip:+15551234567;phone-context=pbx@pbx.example",
                r"+15551234567;phone-context=pbx\40pbx.example@sip.localhost",
            ),
        ] {
            let from = a.sip_sender_to_jid(&uri(sip));
            assert_eq!(from, Ok(jid(xmpp)), "{sip}");
            assert_eq!(a.jid_target_to_sip(&jid(xmpp)), Ok(uri(sip)), "{xmpp}");
        }
        // XMPP → SIP unescapes and percent-encodes.
        assert_eq!(
            a.jid_sender_to_sip(&jid(r"d\27artagnan\20x@example.net"))
                .map(|u| u.to_string()),
            Ok("sip:d'artagnan%20x%40example.net@sip.localhost".to_owned())
        );
        assert_eq!(
            a.sip_target_to_jid(&uri("sip:d'artagnan%20x%40example.net@sip.localhost")),
            Ok(jid(r"d\27artagnan\20x@example.net"))
        );
        // The last '@' separates the domain: user\40host@example.net survives.
        assert_eq!(
            a.jid_sender_to_sip(&jid(r"user\40host@example.net")),
            Ok(uri("sip:user%40host%40example.net@sip.localhost"))
        );
        assert_eq!(
            a.sip_target_to_jid(&uri("sip:user%40host%40example.net@sip.localhost")),
            Ok(jid(r"user\40host@example.net"))
        );
        // Nodeprep case-folds.
        assert_eq!(
            a.sip_sender_to_jid(&uri("sip:Carol@PBX.example")),
            Ok(jid(r"carol\40pbx.example@sip.localhost"))
        );
        assert_eq!(
            a.sip_target_to_jid(&uri("sip:Alice@LOCALHOST:5070")),
            Ok(jid("alice@localhost"))
        );
    }

    #[test]
    fn errors_and_their_conditions() {
        let a = addresses();
        let malformed = DefinedCondition::JidMalformed;
        let not_found = DefinedCondition::ItemNotFound;
        for (result, err, cond) in [
            (
                a.sip_target_to_jid(&uri("sips:alice@localhost")),
                AddressError::Sips,
                &not_found,
            ),
            (
                a.sip_sender_to_jid(&uri("sips:carol@pbx.example")),
                AddressError::Sips,
                &not_found,
            ),
            (
                a.sip_target_to_jid(&uri("sip:alice@example.org")),
                AddressError::UnknownSipDomain {
                    domain: "example.org".into(),
                },
                &not_found,
            ),
            (
                a.sip_target_to_jid(&uri("sip:localhost")),
                AddressError::MissingUser,
                &malformed,
            ),
            (
                a.sip_sender_to_jid(&uri("sip:pbx.example")),
                AddressError::MissingUser,
                &malformed,
            ),
            (
                a.sip_target_to_jid(&uri("sip:%40example.net@sip.localhost")),
                AddressError::EmptyUser,
                &malformed,
            ),
            (
                a.sip_target_to_jid(&uri("sip:bob%40exa%20mple@sip.localhost")),
                AddressError::BadHost {
                    host: "exa mple".into(),
                },
                &malformed,
            ),
        ] {
            assert_eq!(result.as_ref(), Err(&err));
            assert_eq!(&err.condition(), cond, "{err}");
        }
        assert!(matches!(
            a.sip_sender_to_jid(&uri("sip:a%01b@pbx.example")),
            Err(AddressError::InvalidJid(_))
        ));

        for (result, err, cond) in [
            (
                a.jid_target_to_sip(&jid("carol@example.net")),
                AddressError::NotAtComponent {
                    domain: "example.net".into(),
                },
                &not_found,
            ),
            (
                a.jid_target_to_sip(&jid("alice@localhost")),
                AddressError::NotAtComponent {
                    domain: "localhost".into(),
                },
                &not_found,
            ),
            (
                a.jid_target_to_sip(&jid("sip.localhost")),
                AddressError::MissingNode,
                &malformed,
            ),
            (
                a.jid_target_to_sip(&jid(r"\40pbx.example@sip.localhost")),
                AddressError::EmptyUser,
                &malformed,
            ),
            (
                a.jid_target_to_sip(&jid(r"carol\40pbx\2fexample@sip.localhost")),
                AddressError::BadHost {
                    host: "pbx/example".into(),
                },
                &malformed,
            ),
            (
                a.jid_target_to_sip(&jid(r"carol\40pbx.example\3a99999@sip.localhost")),
                AddressError::BadHost {
                    host: "pbx.example:99999".into(),
                },
                &malformed,
            ),
            (
                a.jid_target_to_sip(&jid(r"carol\40@sip.localhost")),
                AddressError::BadHost { host: "".into() },
                &malformed,
            ),
        ] {
            assert_eq!(result.as_ref(), Err(&err));
            assert_eq!(&err.condition(), cond, "{err}");
        }

        assert_eq!(
            a.jid_sender_to_sip(&jid("dave@sip.localhost/x")),
            Err(AddressError::SenderAtComponent(
                "dave@sip.localhost/x".into()
            ))
        );
        assert_eq!(
            a.jid_sender_to_sip(&jid("example.net")),
            Err(AddressError::MissingNode)
        );
        assert_eq!(
            a.jid_sender_to_sip(&jid("localhost")),
            Ok(uri("sip:localhost"))
        );
    }

    #[test]
    fn percent_alias_needs_a_host() {
        let a = addresses();
        // Without a valid host after the last '%', the '%' is part of a plain user name.
        assert_eq!(
            a.jid_target_to_sip(&jid("50%@sip.localhost")),
            Ok(uri("sip:50%25@sip.localhost"))
        );
        assert_eq!(
            a.jid_target_to_sip(&jid("a%b%pbx.example@sip.localhost")),
            Ok(uri("sip:a%25b@pbx.example"))
        );
    }

    /// Characters for generated user parts: RFC 7247 Table 1 specials of both sides,
    /// the XEP-0106 set, and non-ASCII letters that nodeprep leaves unchanged.
    const USER_CHARS: &str = r#"[a-z0-9 !#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~üéøжπ日本]"#;

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z]{2,6}){0,2}",
            any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
            any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
            Just(C.to_owned()),
            Just(H.to_owned()),
        ]
    }

    proptest! {
        /// A foreign SIP AOR → the JID stox sends as → back to the same AOR, with the
        /// GRUU instance carried as the resource.
        #[test]
        fn sip_sender_round_trip(
            user in proptest::string::string_regex(&format!("{USER_CHARS}{{1,16}}")).unwrap(),
            host in host(),
            port in proptest::option::of(any::<u16>()),
            gr in proptest::option::of("[a-z0-9:-]{1,12}"),
        ) {
            let a = addresses();
            let aor = SipUri::new(Scheme::Sip, Some(user), &host, port).unwrap();
            let uri = match &gr {
                Some(gr) => aor.clone().with_param("gr", Some(gr)),
                None => aor.clone(),
            };
            let from = a.sip_sender_to_jid(&uri);
            prop_assert!(from.is_ok(), "{} -> {:?}", uri, from);
            let from = from.unwrap();
            prop_assert_eq!(from.domain().as_str(), C);
            prop_assert_eq!(from.resource().map(|r| r.as_str()), gr.as_deref());
            let back = a.jid_target_to_sip(&from);
            prop_assert_eq!(back.as_ref().map(SipUri::aor), Ok(aor), "{}", from);
            prop_assert_eq!(back.map(|b| b.gr().map(str::to_owned)), Ok(gr));
        }

        /// Any user text at all: never a panic, and whenever nodeprep keeps the folded
        /// localpart as it is, the AOR comes back exactly.
        #[test]
        fn sip_sender_any_user(
            user in "\\PC{1,16}",
            host in host(),
            port in proptest::option::of(any::<u16>()),
        ) {
            let a = addresses();
            let aor = SipUri::new(Scheme::Sip, Some(user.clone()), &host, port).unwrap();
            if let Ok(from) = a.sip_sender_to_jid(&aor) {
                let plain = escape_node(&user);
                let folded = escape_node(&format!("{user}@{}", aor.host_port()));
                let node = from.node().map(|n| n.as_str().to_owned()).unwrap_or_default();
                if node == plain || node == folded {
                    prop_assert_eq!(a.jid_target_to_sip(&from), Ok(aor));
                }
            }
        }

        /// An XMPP user of another domain → the SIP From → back (as a SIP target) to the
        /// same bare JID.
        #[test]
        fn xmpp_sender_round_trip(
            raw in proptest::string::string_regex(&format!("{USER_CHARS}{{1,16}}")).unwrap(),
            domain in "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z]{2,6}){1,2}",
            resource in proptest::option::of("[a-zA-Z0-9 ./@-]{1,12}"),
        ) {
            let a = addresses();
            let node = escape_node(&raw);
            let bare = BareJid::new(&format!("{node}@{domain}"));
            prop_assume!(bare.is_ok());
            let bare = bare.unwrap();
            let sender: Jid = match &resource {
                Some(r) => bare.with_resource_str(r).unwrap().into(),
                None => bare.clone().into(),
            };
            let from = a.jid_sender_to_sip(&sender);
            prop_assert!(from.is_ok(), "{} -> {:?}", sender, from);
            let from = from.unwrap();
            prop_assert_eq!(&from.host, C);
            let target = a.sip_target_to_jid(&from.aor());
            prop_assert_eq!(target, Ok(Jid::from(bare)));
            // And through the text form, as it goes over the wire.
            let reparsed: SipUri = from.to_string().parse().unwrap();
            prop_assert_eq!(reparsed, from);
        }
    }
}

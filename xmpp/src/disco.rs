//! XEP-0030 / XEP-0100 / XEP-0199 answers of the component.
//!
//! Pure functions from a request `<iq/>` to its answer, for the iqs that the component
//! itself answers:
//!
//! - XEP-0030 (Service Discovery) §3.1 `disco#info` and §4.1 `disco#items`, on the
//!   component domain `C` (identity `gateway/sip`) and on contact JIDs `x@C`, bare or
//!   full (identity `client/phone`, with the Jingle / RTP audio / ICE-UDP / DTLS-SRTP /
//!   XEP-0353 features that calling clients look for, STOX-MAPPING.md §8);
//! - XEP-0115 (Entity Capabilities) §5: the `ver` of each of these two disco#info
//!   answers ([`contact_caps_ver`], [`component_caps_ver`]), and §6.2 the answer to a
//!   disco#info carrying `node='`[`CAPS_NODE`]`#ver'`, with the node echoed;
//! - XEP-0100 (Gateway Interaction) §6.3 `jabber:iq:gateway`: the prompt for a SIP
//!   address and its translation to a JID at `C`;
//! - XEP-0199 (XMPP Ping) §4.2 / §4.3: an empty result;
//! - RFC 6120 §8.4: `<service-unavailable/>` for any other `get`/`set`, and never
//!   an answer to a `result` or `error`.
//!
//! Every answer swaps `from` and `to`, keeps the `id` and uses the request's
//! namespace (`jabber:component:accept` on the component stream).
//!
//! The gateway calls [`answer_iq`] **after** its own iq handlers (Jingle, …) declined
//! the iq: an iq it does not know here gets `service-unavailable`.

use std::sync::OnceLock;

use minidom::rxml::xml_ncname;
use minidom::Element;
use xmpp_parsers::caps;
use xmpp_parsers::disco::{DiscoInfoResult, Identity};
use xmpp_parsers::hashes::Algo;
use xmpp_parsers::ns;

/// The `jabber:iq:gateway` namespace (XEP-0100 §6.3).
pub const NS_GATEWAY: &str = "jabber:iq:gateway";

/// The resource of a contact JID that stox calls from and answers calls on
/// (`carol\40pbx.example@sip.example.org/phone`): its presence carries the caps,
/// and calling clients send Jingle to it.
pub const CALL_RESOURCE: &str = "phone";

/// XEP-0115 §4: the `node` of stox's caps, a URI naming the software (`.invalid`,
/// RFC 2606: stox has no web site of its own yet).
pub const CAPS_NODE: &str = "https://stox.invalid/caps";

/// XEP-0030 features of the component domain, sorted.
pub const COMPONENT_FEATURES: &[&str] = &[
    ns::CAPS,
    ns::CHATSTATES,
    // XEP-0050: the account commands.
    "http://jabber.org/protocol/commands",
    ns::DISCO_INFO,
    NS_GATEWAY,
    // XEP-0077: registering a SIP account with the gateway.
    "jabber:iq:register",
    // XEP-0106 §5: the entity understands escaped JIDs.
    "jid\\20escaping",
    ns::PING,
    ns::RECEIPTS,
];

/// XEP-0030 features of a contact JID at the component (a SIP address), bare or full,
/// sorted (i;octet, as XEP-0115 §5.1 hashes them).
///
/// Besides messaging, the minimum profile of STOX-MAPPING.md §8 for clients such as
/// Conversations to offer a call: Jingle (XEP-0166), RTP audio (XEP-0167), ICE-UDP
/// (XEP-0176), DTLS-SRTP (XEP-0320), Jingle Message Initiation (XEP-0353) and SDP
/// offer/answer semantics (`urn:ietf:rfc:3264`, as Cheogram advertises), and XEP-0338
/// grouping (RFC 5888): stox's Jingle descriptions carry a BUNDLE group of their one audio
/// content, as libwebrtc clients expect. No video: the relay carries one audio stream.
pub const CONTACT_FEATURES: &[&str] = &[
    ns::CAPS,
    ns::CHATSTATES,
    ns::DISCO_INFO,
    NS_RFC_3264,
    NS_RFC_5888,
    ns::JINGLE_MESSAGE,
    ns::JINGLE,
    ns::JINGLE_DTLS,
    crate::jingle::ns::GROUPING,
    ns::JINGLE_RTP,
    ns::JINGLE_RTP_AUDIO,
    ns::JINGLE_ICE_UDP,
    ns::PING,
    ns::RECEIPTS,
];

/// RFC 3264 offer/answer, as a disco feature (advertised by Cheogram).
pub const NS_RFC_3264: &str = "urn:ietf:rfc:3264";

/// RFC 5888 SDP grouping (BUNDLE), as a disco feature (XEP-0338 §3).
pub const NS_RFC_5888: &str = "urn:ietf:rfc:5888";

/// Who the component says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayInfo {
    /// The component domain, e.g. `sip.localhost`.
    pub component: String,
    /// The human-readable name of its `gateway/sip` identity.
    pub name: String,
}

impl GatewayInfo {
    /// The component `component` named "stox SIP gateway".
    pub fn new(component: impl Into<String>) -> Self {
        GatewayInfo {
            component: component.into(),
            name: "stox SIP gateway".into(),
        }
    }
}

/// XEP-0115 §5 `ver` (sha-1, base64) of the disco#info of every contact JID.
///
/// Every contact has the same, fixed disco#info, so the hash is computed once: it goes on
/// every available presence of a contact, and hashing it each time (serialising the
/// identity and features, then SHA-1) was about 5 % of the event loop while NOTIFYs were
/// translated into presence (docs/presence-benchmark.md).
pub fn contact_caps_ver() -> String {
    static VER: OnceLock<String> = OnceLock::new();
    VER.get_or_init(|| caps_ver(&identity(Target::Contact, None), CONTACT_FEATURES))
        .clone()
}

/// XEP-0115 §5 `ver` (sha-1, base64) of the disco#info of the component domain.
pub fn component_caps_ver(info: &GatewayInfo) -> String {
    caps_ver(
        &identity(Target::Component, Some(&info.name)),
        COMPONENT_FEATURES,
    )
}

/// XEP-0115 §5.1: sha-1 over `category/type/lang/name<` then each `feature<`, sorted.
fn caps_ver(identity: &Identity, features: &[&str]) -> String {
    let disco = DiscoInfoResult {
        node: None,
        identities: vec![identity.clone()],
        features: features.iter().map(|f| f.to_string()).collect(),
        extensions: Vec::new(),
    };
    caps::hash_caps(&caps::compute_disco(&disco), Algo::Sha_1)
        .map(|hash| hash.to_base64())
        // hash_caps fails only for an unknown algorithm, never for sha-1.
        .unwrap_or_default()
}

/// The one identity of `target`.
fn identity(target: Target, name: Option<&str>) -> Identity {
    let (category, type_) = match target {
        Target::Component => ("gateway", "sip"),
        Target::Contact => ("client", "phone"),
    };
    Identity {
        category: category.into(),
        type_: type_.into(),
        lang: None,
        name: name.map(str::to_string),
    }
}

/// Whom a stanza is addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The component domain itself (with or without a resource).
    Component,
    /// A JID `x@C`, bare or full.
    Contact,
}

/// Stanza error conditions used here (RFC 6120 §8.3.3).
#[derive(Debug, Clone, Copy)]
enum Condition {
    BadRequest,
    ItemNotFound,
    JidMalformed,
    ServiceUnavailable,
}

impl Condition {
    fn name(self) -> &'static str {
        match self {
            Condition::BadRequest => "bad-request",
            Condition::ItemNotFound => "item-not-found",
            Condition::JidMalformed => "jid-malformed",
            Condition::ServiceUnavailable => "service-unavailable",
        }
    }

    /// The error type RFC 6120 §8.3.3 gives for the condition.
    fn error_type(self) -> &'static str {
        match self {
            Condition::BadRequest | Condition::JidMalformed => "modify",
            Condition::ItemNotFound | Condition::ServiceUnavailable => "cancel",
        }
    }
}

/// Answers an `<iq/>` addressed to the component or to a contact JID at it, or `None`
/// if it is not one of these (not an iq, another domain, no `id`, or a `result` /
/// `error`, which are never answered).
///
/// `escape` turns a SIP address, given without its `sip:` scheme
/// (`carol@pbx.example`), into the JID that stands for it at the component
/// (`carol\40pbx.example@sip.localhost`), or returns `None` when the address is
/// invalid (the answer is then `jid-malformed`).
pub fn answer_iq(
    info: &GatewayInfo,
    iq: &Element,
    escape: impl Fn(&str) -> Option<String>,
) -> Option<Element> {
    if iq.name() != "iq" {
        return None;
    }
    let type_ = iq.attr("type")?;
    if type_ != "get" && type_ != "set" {
        return None;
    }
    let target = target(&info.component, iq.attr("to")?)?;
    // RFC 6120 §8.1.3: an iq without an id cannot be answered.
    let id = iq.attr("id")?;

    let mut children = iq.children();
    let (Some(payload), None) = (children.next(), children.next()) else {
        // RFC 6120 §8.2.3: a get or set carries exactly one payload.
        return Some(error(iq, id, Condition::BadRequest));
    };
    let answer = match (type_, payload.ns().as_str(), payload.name(), target) {
        ("get", ns::DISCO_INFO, "query", _) => disco_info(info, payload, target),
        ("get", ns::DISCO_ITEMS, "query", _) => Ok(Element::builder("query", ns::DISCO_ITEMS)
            .attr(xml_ncname!("node").into(), payload.attr("node"))
            .build()),
        ("get", NS_GATEWAY, "query", Target::Component) => Ok(gateway_prompt()),
        ("set", NS_GATEWAY, "query", Target::Component) => gateway_jid(payload, escape),
        ("get", ns::PING, "ping", _) => return Some(result(iq, id, None)),
        _ => Err(Condition::ServiceUnavailable),
    };
    Some(match answer {
        Ok(payload) => result(iq, id, Some(payload)),
        Err(condition) => error(iq, id, condition),
    })
}

/// Classifies `to`: the component domain, a JID at it, or neither (`None`).
pub(crate) fn target(component: &str, to: &str) -> Option<Target> {
    // RFC 7622 §3.1: the resource starts at the first '/', the local part ends at
    // the first '@' before it.
    let bare = to.split_once('/').map_or(to, |(bare, _)| bare);
    let (local, domain) = match bare.split_once('@') {
        Some((local, domain)) => (Some(local), domain),
        None => (None, bare),
    };
    if !domain.eq_ignore_ascii_case(component) {
        return None;
    }
    match local {
        None => Some(Target::Component),
        Some("") => None,
        Some(_) => Some(Target::Contact),
    }
}

/// XEP-0030 §3.1: identity and features. XEP-0115 §6.2: a `node` naming our caps
/// (`CAPS_NODE#ver` of that entity) gets the same answer with the node echoed; any
/// other node is unknown (XEP-0030 §3.2: `item-not-found`).
fn disco_info(info: &GatewayInfo, query: &Element, target: Target) -> Result<Element, Condition> {
    let (name, features, ver) = match target {
        Target::Component => (
            Some(info.name.as_str()),
            COMPONENT_FEATURES,
            component_caps_ver(info),
        ),
        Target::Contact => (None, CONTACT_FEATURES, contact_caps_ver()),
    };
    let node = query.attr("node");
    if let Some(node) = node {
        if node
            .strip_prefix(CAPS_NODE)
            .and_then(|n| n.strip_prefix('#'))
            != Some(ver.as_str())
        {
            return Err(Condition::ItemNotFound);
        }
    }
    let identity = identity(target, name);
    let identity = Element::builder("identity", ns::DISCO_INFO)
        .attr(xml_ncname!("category").into(), identity.category)
        .attr(xml_ncname!("type").into(), identity.type_)
        .attr(xml_ncname!("name").into(), identity.name)
        .build();
    let features = features.iter().map(|var| {
        Element::builder("feature", ns::DISCO_INFO)
            .attr(xml_ncname!("var").into(), *var)
            .build()
    });
    Ok(Element::builder("query", ns::DISCO_INFO)
        .attr(xml_ncname!("node").into(), node)
        .append(identity)
        .append_all(features)
        .build())
}

/// XEP-0100 §6.3.1: the description and the prompt.
fn gateway_prompt() -> Element {
    Element::builder("query", NS_GATEWAY)
        .append(
            Element::builder("desc", NS_GATEWAY)
                .append("Enter the SIP address of the person you would like to contact, e.g. sip:carol@pbx.example.")
                .build(),
        )
        .append(
            Element::builder("prompt", NS_GATEWAY)
                .append("SIP address")
                .build(),
        )
        .build()
}

/// XEP-0100 §6.3.2: the JID standing for the SIP address in `<prompt/>`.
fn gateway_jid(
    query: &Element,
    escape: impl Fn(&str) -> Option<String>,
) -> Result<Element, Condition> {
    let prompt = query
        .get_child("prompt", NS_GATEWAY)
        .ok_or(Condition::BadRequest)?
        .text();
    let address = prompt.trim();
    if address.is_empty() {
        return Err(Condition::BadRequest);
    }
    // RFC 7247 §8: SIPS URIs are never translated.
    if has_scheme(address, "sips:") {
        return Err(Condition::JidMalformed);
    }
    let address = if has_scheme(address, "sip:") {
        &address["sip:".len()..]
    } else {
        address
    };
    let jid = escape(address).ok_or(Condition::JidMalformed)?;
    Ok(Element::builder("query", NS_GATEWAY)
        .append(Element::builder("jid", NS_GATEWAY).append(jid).build())
        .build())
}

/// URI schemes are case-insensitive (RFC 3986 §3.1).
fn has_scheme(address: &str, scheme: &str) -> bool {
    address
        .get(..scheme.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
}

/// The answer's `<iq/>` with `type`, swapped addresses and the request's `id`.
fn reply(iq: &Element, type_: &str, id: &str) -> minidom::ElementBuilder {
    Element::builder("iq", iq.ns())
        .attr(xml_ncname!("type").into(), type_)
        .attr(xml_ncname!("id").into(), id)
        .attr(xml_ncname!("from").into(), iq.attr("to"))
        .attr(xml_ncname!("to").into(), iq.attr("from"))
}

fn result(iq: &Element, id: &str, payload: Option<Element>) -> Element {
    let builder = reply(iq, "result", id);
    match payload {
        Some(payload) => builder.append(payload).build(),
        None => builder.build(),
    }
}

/// RFC 6120 §8.3: `<error type='…'><condition xmlns='…xmpp-stanzas'/></error>`.
fn error(iq: &Element, id: &str, condition: Condition) -> Element {
    let error = Element::builder("error", iq.ns())
        .attr(xml_ncname!("type").into(), condition.error_type())
        .append(Element::builder(condition.name(), ns::XMPP_STANZAS).build())
        .build();
    reply(iq, "error", id).append(error).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult};
    use xmpp_parsers::iq::Iq;

    fn info() -> GatewayInfo {
        GatewayInfo::new("sip.localhost")
    }

    fn xml(s: &str) -> Element {
        s.parse().expect("literal XML")
    }

    /// The stand-in for XEP-0106 escaping: `@` → `\40`, only `user@host` accepted.
    fn escape(address: &str) -> Option<String> {
        let (user, host) = address.split_once('@')?;
        (!user.is_empty() && !host.is_empty() && !host.contains('@'))
            .then(|| format!("{user}\\40{host}@sip.localhost"))
    }

    fn answer(request: &str) -> Option<Element> {
        answer_iq(&info(), &xml(request), escape)
    }

    fn assert_answer(request: &str, expected: &str) {
        let got = answer(request).expect("an answer");
        assert_eq!(got, xml(expected), "\n got: {}", String::from(&got));
    }

    #[test]
    fn contact_caps_ver_is_computed_once_and_is_the_contact_disco_hash() {
        let fresh = caps_ver(&identity(Target::Contact, None), CONTACT_FEATURES);
        assert!(!fresh.is_empty());
        assert_eq!(contact_caps_ver(), fresh);
        // The second call answers from the cell, with the same value.
        assert_eq!(contact_caps_ver(), fresh);
        assert_ne!(contact_caps_ver(), component_caps_ver(&info()));
    }

    #[test]
    fn disco_info_on_the_component() {
        let got = answer(
            "<iq xmlns='jabber:component:accept' type='get' id='d1' from='alice@localhost/phone' to='sip.localhost'>\
             <query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        )
        .expect("an answer");
        assert_eq!(
            got,
            xml("<iq xmlns='jabber:component:accept' type='result' id='d1' from='sip.localhost' to='alice@localhost/phone'>\
                 <query xmlns='http://jabber.org/protocol/disco#info'>\
                 <identity category='gateway' type='sip' name='stox SIP gateway'/>\
                 <feature var='http://jabber.org/protocol/caps'/>\
                 <feature var='http://jabber.org/protocol/chatstates'/>\
                 <feature var='http://jabber.org/protocol/commands'/>\
                 <feature var='http://jabber.org/protocol/disco#info'/>\
                 <feature var='jabber:iq:gateway'/>\
                 <feature var='jabber:iq:register'/>\
                 <feature var='jid\\20escaping'/>\
                 <feature var='urn:xmpp:ping'/>\
                 <feature var='urn:xmpp:receipts'/>\
                 </query></iq>")
        );
        // xmpp-parsers reads it as a valid XEP-0030 result.
        let Iq::Result {
            payload: Some(query),
            ..
        } = Iq::try_from(got).expect("iq")
        else {
            panic!("not a result with payload");
        };
        let disco = DiscoInfoResult::try_from(query).expect("disco#info result");
        assert_eq!(disco.identities[0].category, "gateway");
        assert!(disco.features.contains("jabber:iq:gateway"));
    }

    #[test]
    fn disco_info_with_a_node_on_the_component_is_item_not_found() {
        assert_answer(
            "<iq xmlns='jabber:component:accept' type='get' id='d2' from='alice@localhost/phone' to='sip.localhost'>\
             <query xmlns='http://jabber.org/protocol/disco#info' node='x'/></iq>",
            "<iq xmlns='jabber:component:accept' type='error' id='d2' from='sip.localhost' to='alice@localhost/phone'>\
             <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
    }

    #[test]
    fn disco_items_on_the_component_is_empty() {
        let request = "<iq xmlns='jabber:component:accept' type='get' id='i1' from='alice@localhost/phone' to='sip.localhost'>\
             <query xmlns='http://jabber.org/protocol/disco#items'/></iq>";
        let expected = "<iq xmlns='jabber:component:accept' type='result' id='i1' from='sip.localhost' to='alice@localhost/phone'>\
             <query xmlns='http://jabber.org/protocol/disco#items'/></iq>";
        assert_answer(request, expected);
        let Iq::Result {
            payload: Some(query),
            ..
        } = Iq::try_from(xml(expected)).expect("iq")
        else {
            panic!("not a result with payload");
        };
        assert!(DiscoItemsResult::try_from(query)
            .expect("items")
            .items
            .is_empty());
    }

    /// The disco#info query of a contact, with every feature STOX-MAPPING.md §8 asks
    /// of a call peer.
    fn contact_query(node: Option<&str>) -> String {
        let node = node.map(|n| format!(" node='{n}'")).unwrap_or_default();
        format!(
            "<query xmlns='http://jabber.org/protocol/disco#info'{node}>\
             <identity category='client' type='phone'/>\
             <feature var='http://jabber.org/protocol/caps'/>\
             <feature var='http://jabber.org/protocol/chatstates'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='urn:ietf:rfc:3264'/>\
             <feature var='urn:ietf:rfc:5888'/>\
             <feature var='urn:xmpp:jingle-message:0'/>\
             <feature var='urn:xmpp:jingle:1'/>\
             <feature var='urn:xmpp:jingle:apps:dtls:0'/>\
             <feature var='urn:xmpp:jingle:apps:grouping:0'/>\
             <feature var='urn:xmpp:jingle:apps:rtp:1'/>\
             <feature var='urn:xmpp:jingle:apps:rtp:audio'/>\
             <feature var='urn:xmpp:jingle:transports:ice-udp:1'/>\
             <feature var='urn:xmpp:ping'/>\
             <feature var='urn:xmpp:receipts'/>\
             </query>"
        )
    }

    #[test]
    fn the_feature_lists_are_sorted_and_distinct() {
        for features in [COMPONENT_FEATURES, CONTACT_FEATURES] {
            assert!(features.windows(2).all(|w| w[0] < w[1]), "{features:?}");
        }
    }

    #[test]
    fn disco_info_on_a_contact_lists_the_call_features() {
        let caps_node = format!("{CAPS_NODE}#{}", contact_caps_ver());
        // (to, node asked, node echoed)
        let table = [
            ("carol\\40pbx.example@sip.localhost".to_string(), None),
            (
                format!("carol\\40pbx.example@sip.localhost/{CALL_RESOURCE}"),
                None,
            ),
            ("dave@sip.localhost/desk".to_string(), None),
            // XEP-0115 §6.2: verification of the caps of the calling resource
            (
                format!("carol\\40pbx.example@sip.localhost/{CALL_RESOURCE}"),
                Some(caps_node.as_str()),
            ),
            ("dave@sip.localhost".to_string(), Some(caps_node.as_str())),
        ];
        for (to, node) in table {
            let node_attr = node.map(|n| format!(" node='{n}'")).unwrap_or_default();
            assert_answer(
                &format!(
                    "<iq xmlns='jabber:component:accept' type='get' id='c1' from='alice@localhost/phone' to='{to}'>\
                     <query xmlns='http://jabber.org/protocol/disco#info'{node_attr}/></iq>"
                ),
                &format!(
                    "<iq xmlns='jabber:component:accept' type='result' id='c1' from='{to}' to='alice@localhost/phone'>{}</iq>",
                    contact_query(node)
                ),
            );
        }
    }

    #[test]
    fn disco_info_with_an_unknown_node_is_item_not_found() {
        let stale = format!("{CAPS_NODE}#AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        let component = format!("{CAPS_NODE}#{}", component_caps_ver(&info()));
        let contact = format!("{CAPS_NODE}#{}", contact_caps_ver());
        for (to, node) in [
            ("dave@sip.localhost/phone", "https://stox#abc"),
            ("dave@sip.localhost/phone", stale.as_str()),
            ("dave@sip.localhost/phone", CAPS_NODE),
            // each entity's caps node is its own
            ("dave@sip.localhost/phone", component.as_str()),
            ("sip.localhost", contact.as_str()),
        ] {
            assert_answer(
                &format!(
                    "<iq xmlns='jabber:component:accept' type='get' id='c3' from='alice@localhost/phone' to='{to}'>\
                     <query xmlns='http://jabber.org/protocol/disco#info' node='{node}'/></iq>"
                ),
                &format!(
                    "<iq xmlns='jabber:component:accept' type='error' id='c3' from='{to}' to='alice@localhost/phone'>\
                     <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                ),
            );
        }
    }

    #[test]
    fn disco_info_with_the_caps_node_on_the_component() {
        let node = format!("{CAPS_NODE}#{}", component_caps_ver(&info()));
        let got = answer(&format!(
            "<iq xmlns='jabber:component:accept' type='get' id='c4' from='alice@localhost/phone' to='sip.localhost'>\
             <query xmlns='http://jabber.org/protocol/disco#info' node='{node}'/></iq>"
        ))
        .expect("an answer");
        assert_eq!(got.attr("type"), Some("result"), "{}", String::from(&got));
        let query = got.get_child("query", ns::DISCO_INFO).expect("query");
        assert_eq!(query.attr("node"), Some(node.as_str()));
        assert_eq!(
            query.children().filter(|c| c.name() == "feature").count(),
            COMPONENT_FEATURES.len()
        );
    }

    #[test]
    fn gateway_get_prompts_for_a_sip_address() {
        let got = answer(
            "<iq xmlns='jabber:component:accept' type='get' id='g1' from='alice@localhost/phone' to='sip.localhost'>\
             <query xmlns='jabber:iq:gateway'/></iq>",
        )
        .expect("an answer");
        assert_eq!(got.attr("type"), Some("result"));
        let query = got.get_child("query", NS_GATEWAY).expect("query");
        let prompt = query.get_child("prompt", NS_GATEWAY).map(Element::text);
        assert_eq!(prompt.as_deref(), Some("SIP address"));
        assert!(query.get_child("desc", NS_GATEWAY).is_some());
    }

    #[test]
    fn gateway_set_translates_the_address_with_or_without_scheme() {
        let expected = "<iq xmlns='jabber:component:accept' type='result' id='g2' from='sip.localhost' to='alice@localhost/phone'>\
             <query xmlns='jabber:iq:gateway'><jid>carol\\40pbx.example@sip.localhost</jid></query></iq>";
        for prompt in [
            "sip:carol@pbx.example",
            "carol@pbx.example",
            " SIP:carol@pbx.example\n",
        ] {
            assert_answer(
                &format!(
                    "<iq xmlns='jabber:component:accept' type='set' id='g2' from='alice@localhost/phone' to='sip.localhost'>\
                     <query xmlns='jabber:iq:gateway'><prompt>{prompt}</prompt></query></iq>"
                ),
                expected,
            );
        }
    }

    #[test]
    fn gateway_set_errors() {
        let request = |query: &str| {
            format!(
                "<iq xmlns='jabber:component:accept' type='set' id='g3' from='alice@localhost/phone' to='sip.localhost'>\
                 <query xmlns='jabber:iq:gateway'>{query}</query></iq>"
            )
        };
        let error = |condition: &str, type_: &str| {
            format!(
                "<iq xmlns='jabber:component:accept' type='error' id='g3' from='sip.localhost' to='alice@localhost/phone'>\
                 <error type='{type_}'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            )
        };
        // The escape closure rejects it.
        assert_answer(
            &request("<prompt>sip:nobody</prompt>"),
            &error("jid-malformed", "modify"),
        );
        // RFC 7247 §8: SIPS is never translated.
        assert_answer(
            &request("<prompt>sips:carol@pbx.example</prompt>"),
            &error("jid-malformed", "modify"),
        );
        assert_answer(
            &request("<prompt>  </prompt>"),
            &error("bad-request", "modify"),
        );
        assert_answer(&request(""), &error("bad-request", "modify"));
    }

    #[test]
    fn ping_to_the_component_and_to_a_contact() {
        assert_answer(
            "<iq xmlns='jabber:component:accept' type='get' id='p1' from='localhost' to='sip.localhost'>\
             <ping xmlns='urn:xmpp:ping'/></iq>",
            "<iq xmlns='jabber:component:accept' type='result' id='p1' from='sip.localhost' to='localhost'/>",
        );
        assert_answer(
            "<iq xmlns='jabber:component:accept' type='get' id='p2' from='alice@localhost/phone' to='carol\\40pbx.example@sip.localhost/x'>\
             <ping xmlns='urn:xmpp:ping'/></iq>",
            "<iq xmlns='jabber:component:accept' type='result' id='p2' from='carol\\40pbx.example@sip.localhost/x' to='alice@localhost/phone'/>",
        );
    }

    #[test]
    fn unknown_requests_are_service_unavailable() {
        let unavailable = |id: &str, from: &str| {
            xml(&format!(
                "<iq xmlns='jabber:component:accept' type='error' id='{id}' from='{from}' to='alice@localhost/phone'>\
                 <error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            ))
        };
        let got = answer(
            "<iq xmlns='jabber:component:accept' type='get' id='u1' from='alice@localhost/phone' to='sip.localhost'>\
             <query xmlns='jabber:iq:version'/></iq>",
        );
        assert_eq!(got, Some(unavailable("u1", "sip.localhost")));
        // XEP-0100 is the component's, not a contact's.
        let got = answer(
            "<iq xmlns='jabber:component:accept' type='get' id='u2' from='alice@localhost/phone' to='dave@sip.localhost'>\
             <query xmlns='jabber:iq:gateway'/></iq>",
        );
        assert_eq!(got, Some(unavailable("u2", "dave@sip.localhost")));
        let got = answer(
            "<iq xmlns='jabber:component:accept' type='set' id='u3' from='alice@localhost/phone' to='dave@sip.localhost/r'>\
             <jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s'/></iq>",
        );
        assert_eq!(got, Some(unavailable("u3", "dave@sip.localhost/r")));
    }

    #[test]
    fn a_get_without_payload_is_bad_request() {
        assert_answer(
            "<iq xmlns='jabber:component:accept' type='get' id='b1' from='alice@localhost/phone' to='sip.localhost'/>",
            "<iq xmlns='jabber:component:accept' type='error' id='b1' from='sip.localhost' to='alice@localhost/phone'>\
             <error type='modify'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
    }

    #[test]
    fn not_ours_or_not_a_request_gets_no_answer() {
        for request in [
            // results and errors are never answered (RFC 6120 §8.2.3)
            "<iq xmlns='jabber:component:accept' type='result' id='n1' from='localhost' to='sip.localhost'/>",
            "<iq xmlns='jabber:component:accept' type='error' id='n2' from='localhost' to='sip.localhost'>\
             <error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
            // another domain, or a subdomain of ours
            "<iq xmlns='jabber:component:accept' type='get' id='n3' from='alice@localhost/phone' to='localhost'>\
             <ping xmlns='urn:xmpp:ping'/></iq>",
            "<iq xmlns='jabber:component:accept' type='get' id='n4' from='alice@localhost/phone' to='x.sip.localhost'>\
             <ping xmlns='urn:xmpp:ping'/></iq>",
            // no to, no id, empty local part
            "<iq xmlns='jabber:component:accept' type='get' id='n5' from='alice@localhost/phone'><ping xmlns='urn:xmpp:ping'/></iq>",
            "<iq xmlns='jabber:component:accept' type='get' from='alice@localhost/phone' to='sip.localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
            "<iq xmlns='jabber:component:accept' type='get' id='n6' from='alice@localhost/phone' to='@sip.localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
            // not an iq
            "<message xmlns='jabber:component:accept' id='n7' from='alice@localhost/phone' to='sip.localhost'><body>hi</body></message>",
        ] {
            assert_eq!(answer(request), None, "{request}");
        }
    }

    #[test]
    fn the_domain_matches_case_insensitively_and_a_resource_is_ignored() {
        assert_answer(
            "<iq xmlns='jabber:component:accept' type='get' id='k1' from='localhost' to='SIP.localhost/a@b'>\
             <ping xmlns='urn:xmpp:ping'/></iq>",
            "<iq xmlns='jabber:component:accept' type='result' id='k1' from='SIP.localhost/a@b' to='localhost'/>",
        );
    }
}

//! Presence of the gateway's contact JIDs, as the calls issue (issue 3) needs it.
//!
//! XMPP calling clients (Conversations and its forks, Monal, …) offer a call button
//! only for a contact with an available full JID whose XEP-0115 caps name the Jingle
//! features (STOX-MAPPING.md §8, item 8). So, as Cheogram does, every contact JID
//! `x@C` is **always shown available**, from `x@C/`[`CALL_RESOURCE`], with caps whose
//! disco#info ([`crate::disco`]) lists Jingle, RTP audio, ICE-UDP, DTLS-SRTP and
//! XEP-0353. Nothing here looks at the SIP side.
//!
//! [`answer`] is a pure function from a presence stanza addressed to a contact JID
//! (or to the component domain itself) to the presence stanzas to send back
//! (RFC 6121):
//!
//! | received (`to` = `x@C`)         | sent                                                 |
//! |---------------------------------|------------------------------------------------------|
//! | `subscribe` (§3.1)              | `subscribed` from `x@C`, then available from `x@C/phone` with caps |
//! | `probe` (§4.3)                  | available from `x@C/phone` with caps                 |
//! | available, directed (§4.6)      | available from `x@C/phone` with caps                 |
//! | `unsubscribe` (§3.3)            | `unsubscribed` from `x@C`                            |
//! | anything else                   | nothing                                              |
//!
//! Answers go to the sender's bare JID, except the answer to a probe, which goes to
//! the JID that probed. A presence to the component domain `C` is answered the same
//! way from `C` (with the component's caps), so a user can keep the gateway in the
//! roster (XEP-0100).
//!
//! Issue 4 (presence, RFC 8048) replaces the `subscribe` / `probe` handling with SIP
//! SUBSCRIBE / NOTIFY, so that contacts show the real presence of the SIP user.
//!
//! Stanzas are read in `jabber:client` or `jabber:component:accept` and written in
//! `jabber:component:accept` (XEP-0114; Prosody drops component stanzas in
//! `jabber:client`).

use minidom::rxml::xml_ncname;
use minidom::{Element, NSChoice};
use xmpp_parsers::ns;

use crate::disco::{self, GatewayInfo, Target, CALL_RESOURCE, CAPS_NODE};

/// XEP-0114 §3: the namespace stox writes stanzas in.
pub const NS_COMPONENT: &str = "jabber:component:accept";
/// `jabber:client`, accepted on reading.
pub const NS_CLIENT: &str = "jabber:client";

/// The presence stanzas to send in answer to `presence`, in order (possibly none).
///
/// `presence` must be a `<presence/>` with `from` and a `to` at `info.component`;
/// anything else, and every presence type not in the table of the module doc
/// (`subscribed`, `unsubscribed`, `unavailable`, `error`, …), gets no answer.
pub fn answer(info: &GatewayInfo, presence: &Element) -> Vec<Element> {
    if !presence.is("presence", NSChoice::AnyOf(&[NS_CLIENT, NS_COMPONENT])) {
        return Vec::new();
    }
    let (Some(to), Some(from)) = (presence.attr("to"), presence.attr("from")) else {
        return Vec::new();
    };
    let Some(target) = disco::target(&info.component, to) else {
        return Vec::new();
    };
    let us = bare(to);
    let them = bare(from);
    if them.is_empty() {
        return Vec::new();
    }
    match presence.attr("type") {
        Some("subscribe") => vec![
            stanza(us, them, Some("subscribed")).build(),
            available(info, target, us, them),
        ],
        Some("probe") => vec![available(info, target, us, from)],
        None => vec![available(info, target, us, them)],
        Some("unsubscribe") => vec![stanza(us, them, Some("unsubscribed")).build()],
        Some(_) => Vec::new(),
    }
}

/// The bare part of a JID (RFC 7622 §3.1: the resource starts at the first '/').
fn bare(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(bare, _)| bare)
}

/// `<presence from to [type]/>` in `jabber:component:accept`.
fn stanza(from: &str, to: &str, type_: Option<&str>) -> minidom::ElementBuilder {
    Element::builder("presence", NS_COMPONENT)
        .attr(xml_ncname!("from").into(), from)
        .attr(xml_ncname!("to").into(), to)
        .attr(xml_ncname!("type").into(), type_)
}

/// The XEP-0115 §4 `<c/>` of a contact JID (its disco#info lists Jingle, RTP audio, ICE-UDP,
/// DTLS-SRTP and XEP-0353): put on every available presence of a contact so that calling
/// clients offer a call button (STOX-MAPPING.md §8).
pub fn contact_caps() -> Element {
    Element::builder("c", ns::CAPS)
        .attr(xml_ncname!("hash").into(), "sha-1")
        .attr(xml_ncname!("node").into(), CAPS_NODE)
        .attr(xml_ncname!("ver").into(), disco::contact_caps_ver())
        .build()
}

/// Available presence of `us` (a contact: from its [`CALL_RESOURCE`]; the component:
/// from its domain) to `to`, with the XEP-0115 §4 `<c/>` of its disco#info.
fn available(info: &GatewayInfo, target: Target, us: &str, to: &str) -> Element {
    let (from, ver) = match target {
        Target::Contact => (format!("{us}/{CALL_RESOURCE}"), disco::contact_caps_ver()),
        Target::Component => (us.to_string(), disco::component_caps_ver(info)),
    };
    let caps = Element::builder("c", ns::CAPS)
        .attr(xml_ncname!("hash").into(), "sha-1")
        .attr(xml_ncname!("node").into(), CAPS_NODE)
        .attr(xml_ncname!("ver").into(), ver)
        .build();
    stanza(&from, to, None).append(caps).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disco::{answer_iq, COMPONENT_FEATURES, CONTACT_FEATURES};
    use xmpp_parsers::caps::Caps;
    use xmpp_parsers::disco::DiscoInfoResult;
    use xmpp_parsers::hashes::{Algo, Hash};
    use xmpp_parsers::iq::Iq;
    use xmpp_parsers::presence::Presence;

    const CAROL: &str = "carol\\40pbx.example@sip.localhost";

    fn info() -> GatewayInfo {
        GatewayInfo::new("sip.localhost")
    }

    fn xml(s: &str) -> Element {
        s.parse().expect("literal XML")
    }

    fn answer_to(presence: &str) -> Vec<Element> {
        answer(&info(), &xml(presence))
    }

    /// The caps element every available presence of a contact carries.
    fn contact_caps() -> String {
        format!(
            "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{CAPS_NODE}' ver='{}'/>",
            disco::contact_caps_ver()
        )
    }

    #[test]
    fn each_presence_type_to_a_contact() {
        let caps = contact_caps();
        let available_to = |to: &str| {
            format!(
                "<presence xmlns='jabber:component:accept' from='{CAROL}/phone' to='{to}'>{caps}</presence>"
            )
        };
        let typed = |type_: &str| {
            format!(
                "<presence xmlns='jabber:component:accept' from='{CAROL}' to='alice@localhost' type='{type_}'/>"
            )
        };
        // (what alice's server sends, what stox answers)
        let table: Vec<(String, Vec<String>)> = vec![
            (
                format!("<presence xmlns='jabber:client' type='subscribe' id='s1' from='alice@localhost' to='{CAROL}'/>"),
                vec![typed("subscribed"), available_to("alice@localhost")],
            ),
            // the full JID of a client that sends the subscribe itself; the
            // component namespace; a resource on the contact
            (
                format!("<presence xmlns='jabber:component:accept' type='subscribe' from='alice@localhost/phone' to='{CAROL}/desk'/>"),
                vec![typed("subscribed"), available_to("alice@localhost")],
            ),
            (
                format!("<presence xmlns='jabber:component:accept' type='probe' from='alice@localhost' to='{CAROL}'/>"),
                vec![available_to("alice@localhost")],
            ),
            (
                format!("<presence xmlns='jabber:component:accept' type='probe' from='alice@localhost/laptop' to='{CAROL}'/>"),
                vec![available_to("alice@localhost/laptop")],
            ),
            // directed available presence (a client's initial presence to a contact)
            (
                format!("<presence xmlns='jabber:component:accept' from='alice@localhost/laptop' to='{CAROL}'>\
                         <show>away</show><priority>5</priority></presence>"),
                vec![available_to("alice@localhost")],
            ),
            (
                format!("<presence xmlns='jabber:client' type='unsubscribe' from='alice@localhost' to='{CAROL}'/>"),
                vec![typed("unsubscribed")],
            ),
        ];
        for (received, expected) in table {
            let got = answer_to(&received);
            let expected: Vec<Element> = expected.iter().map(|e| xml(e)).collect();
            assert_eq!(
                got,
                expected,
                "\nreceived: {received}\n got: {:?}",
                got.iter().map(String::from).collect::<Vec<_>>()
            );
            // xmpp-parsers reads every answer as a valid presence.
            for stanza in got {
                Presence::try_from(stanza).expect("a valid presence");
            }
        }
    }

    #[test]
    fn no_answer_to_anything_else() {
        for received in [
            // types that need no answer (RFC 6121 §3.1.6, §3.3, §4.5, §8.3)
            format!("<presence xmlns='jabber:component:accept' type='subscribed' from='alice@localhost' to='{CAROL}'/>"),
            format!("<presence xmlns='jabber:component:accept' type='unsubscribed' from='alice@localhost' to='{CAROL}'/>"),
            format!("<presence xmlns='jabber:component:accept' type='unavailable' from='alice@localhost/a' to='{CAROL}'/>"),
            format!("<presence xmlns='jabber:component:accept' type='error' from='alice@localhost' to='{CAROL}'>\
                     <error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"),
            format!("<presence xmlns='jabber:component:accept' type='bogus' from='alice@localhost' to='{CAROL}'/>"),
            // not at our domain, no from, no to, an empty local part
            "<presence xmlns='jabber:component:accept' type='probe' from='alice@localhost' to='bob@localhost'/>".into(),
            "<presence xmlns='jabber:component:accept' type='probe' from='alice@localhost' to='x.sip.localhost'/>".into(),
            format!("<presence xmlns='jabber:component:accept' type='probe' to='{CAROL}'/>"),
            "<presence xmlns='jabber:component:accept' type='probe' from='alice@localhost'/>".into(),
            "<presence xmlns='jabber:component:accept' type='probe' from='alice@localhost' to='@sip.localhost'/>".into(),
            format!("<presence xmlns='jabber:component:accept' type='probe' from='/r' to='{CAROL}'/>"),
            // not a presence, or not a stanza namespace
            format!("<message xmlns='jabber:component:accept' from='alice@localhost' to='{CAROL}'><body>hi</body></message>"),
            format!("<presence xmlns='urn:example' type='probe' from='alice@localhost' to='{CAROL}'/>"),
        ] {
            assert_eq!(answer_to(&received), Vec::<Element>::new(), "{received}");
        }
    }

    #[test]
    fn the_component_itself_answers_with_its_own_caps() {
        let ver = disco::component_caps_ver(&info());
        let got = answer_to(
            "<presence xmlns='jabber:client' type='subscribe' from='alice@localhost/phone' to='sip.localhost'/>",
        );
        let expected = [
            "<presence xmlns='jabber:component:accept' from='sip.localhost' to='alice@localhost' type='subscribed'/>".to_string(),
            format!(
                "<presence xmlns='jabber:component:accept' from='sip.localhost' to='alice@localhost'>\
                 <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{CAPS_NODE}' ver='{ver}'/></presence>"
            ),
        ];
        assert_eq!(got, expected.iter().map(|e| xml(e)).collect::<Vec<_>>());
        assert_ne!(ver, disco::contact_caps_ver());
    }

    /// XEP-0115 §5.1, written out by hand: `S = category/type/lang/name<` then each
    /// `feature<` in i;octet order; `ver` = base64(sha-1(S)).
    fn ver_by_hand(identity: &str, features: &[&str]) -> String {
        use sha1::{Digest, Sha1};
        let mut sorted = features.to_vec();
        sorted.sort_unstable();
        let mut s = format!("{identity}<");
        for feature in sorted {
            s.push_str(feature);
            s.push('<');
        }
        Hash::new(Algo::Sha_1, Sha1::digest(s.as_bytes()).to_vec()).to_base64()
    }

    #[test]
    fn caps_ver_matches_xep_0115_and_the_features() {
        // The XEP-0115 §5.2 example, to check the hand-written algorithm itself.
        assert_eq!(
            ver_by_hand(
                "client/pc//Exodus 0.9.1",
                &[
                    "http://jabber.org/protocol/caps",
                    "http://jabber.org/protocol/disco#info",
                    "http://jabber.org/protocol/disco#items",
                    "http://jabber.org/protocol/muc",
                ]
            ),
            "QgayPKawpkPSDYmwT/WM94uAlu0="
        );
        let ver = disco::contact_caps_ver();
        assert_eq!(ver, ver_by_hand("client/phone//", CONTACT_FEATURES));
        assert_eq!(ver, disco::contact_caps_ver(), "stable");
        assert_eq!(
            disco::component_caps_ver(&info()),
            ver_by_hand("gateway/sip//stox SIP gateway", COMPONENT_FEATURES)
        );
        // The caps element parses, and its ver is a 20-byte sha-1.
        let presence = answer_to(&format!(
            "<presence xmlns='jabber:client' type='probe' from='alice@localhost' to='{CAROL}'/>"
        ));
        let c = presence[0]
            .get_child("c", ns::CAPS)
            .cloned()
            .expect("a <c/>");
        let c = Caps::try_from(c).expect("valid caps");
        assert_eq!(c.hash, Algo::Sha_1);
        assert_eq!(c.ver.len(), 20);
        assert_eq!(c.node, CAPS_NODE);
    }

    /// What a client does with the caps: disco#info on `CAPS_NODE#ver` at the full
    /// JID the presence came from, then check that the answer hashes to `ver`.
    #[test]
    fn disco_with_the_caps_node_answers_the_features_that_hash_to_ver() {
        let escape = |_: &str| None;
        for (to, ver) in [
            (
                format!("{CAROL}/{CALL_RESOURCE}"),
                disco::contact_caps_ver(),
            ),
            (CAROL.to_string(), disco::contact_caps_ver()),
            (
                "sip.localhost".to_string(),
                disco::component_caps_ver(&info()),
            ),
        ] {
            let node = format!("{CAPS_NODE}#{ver}");
            let iq = xml(&format!(
                "<iq xmlns='jabber:component:accept' type='get' id='q1' from='alice@localhost/phone' to='{to}'>\
                 <query xmlns='http://jabber.org/protocol/disco#info' node='{node}'/></iq>"
            ));
            let got = answer_iq(&info(), &iq, escape).expect("an answer");
            let Iq::Result {
                payload: Some(query),
                ..
            } = Iq::try_from(got.clone()).expect("iq")
            else {
                panic!("not a result: {}", String::from(&got));
            };
            let disco_result = DiscoInfoResult::try_from(query).expect("disco#info");
            assert_eq!(disco_result.node.as_deref(), Some(node.as_str()));
            let hashed = xmpp_parsers::caps::hash_caps(
                &xmpp_parsers::caps::compute_disco(&disco_result),
                Algo::Sha_1,
            )
            .expect("sha-1")
            .to_base64();
            assert_eq!(hashed, ver, "{to}");
        }
    }
}

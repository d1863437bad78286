//! End-to-end service discovery of the gateway through Prosody, as an XMPP client sees it:
//! XEP-0030 disco#info on the component and on a contact JID, XEP-0100 `jabber:iq:gateway`
//! (prompt and address translation, RFC 7247 §6 / XEP-0106), XEP-0199 ping, and RFC 6120
//! §8.4 `service-unavailable` for an iq nobody handles; and the callability of a contact
//! JID (issue 3, STOX-MAPPING.md §8): a subscription gets available presence with XEP-0115
//! caps from `<contact>/phone`, whose disco#info lists the Jingle features.
//!
//! alice (real slixmpp) sends each iq to the component through a real Prosody; stox answers.

use std::time::Duration;

use minidom::Element;
use stox_tests::scenarios::World;
use stox_tests::Stanza;

const T: Duration = Duration::from_secs(10);
const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_GATEWAY: &str = "jabber:iq:gateway";
const NS_PING: &str = "urn:xmpp:ping";

fn start() -> World {
    World::start().expect("prosody, stox and alice")
}

/// alice sends `<iq type=KIND id=ID to=TO>PAYLOAD</iq>`; returns the answer with that id,
/// checked to come from TO and to be addressed to alice's full JID.
fn iq(w: &mut World, kind: &str, id: &str, to: &str, payload: &str) -> Stanza {
    w.alice
        .send_raw(&format!(
            "<iq type='{kind}' id='{id}' to='{to}'>{payload}</iq>"
        ))
        .expect("send");
    let answer = w
        .alice
        .expect(T, |s| s.name() == "iq" && s.id() == Some(id))
        .expect("an answer to the iq");
    assert_eq!(answer.from(), Some(to), "{}", answer.xml());
    assert_eq!(
        answer.to(),
        Some("alice@localhost/phone"),
        "{}",
        answer.xml()
    );
    answer
}

fn features(query: &Element) -> Vec<String> {
    query
        .children()
        .filter(|c| c.name() == "feature" && c.ns() == NS_DISCO_INFO)
        .filter_map(|c| c.attr("var").map(str::to_string))
        .collect()
}

/// alice sends <iq type='get' to='sip.localhost'><query xmlns='disco#info'/></iq>
/// expect a result with <identity category='gateway' type='sip'/> and the features
///        jid\20escaping (XEP-0106 §5), jabber:iq:gateway (XEP-0100), urn:xmpp:ping (XEP-0199)
///        and disco#info itself
#[test]
fn disco_info_on_the_component_names_a_sip_gateway() {
    let mut w = start();
    let component = w.component().to_string();
    let answer = iq(
        &mut w,
        "get",
        "d1",
        &component,
        &format!("<query xmlns='{NS_DISCO_INFO}'/>"),
    );
    assert_eq!(answer.kind(), Some("result"), "{}", answer.xml());
    let query = answer.child("query").expect("a <query/>");
    assert_eq!(query.ns(), NS_DISCO_INFO);
    let identities: Vec<(Option<&str>, Option<&str>)> = query
        .children()
        .filter(|c| c.name() == "identity")
        .map(|c| (c.attr("category"), c.attr("type")))
        .collect();
    assert!(
        identities.contains(&(Some("gateway"), Some("sip"))),
        "{}",
        answer.xml()
    );
    let features = features(query);
    for wanted in ["jid\\20escaping", NS_GATEWAY, NS_PING, NS_DISCO_INFO] {
        assert!(
            features.iter().any(|f| f == wanted),
            "missing feature {wanted}: {}",
            answer.xml()
        );
    }
}

/// alice sends disco#info to carol\40pbx.example@sip.localhost (a SIP contact)
/// expect a result (not an error) with at least one identity and the disco#info feature
#[test]
fn disco_info_on_a_contact_jid_is_answered() {
    let mut w = start();
    let contact = format!("carol\\40pbx.example@{}", w.component());
    let answer = iq(
        &mut w,
        "get",
        "d2",
        &contact,
        &format!("<query xmlns='{NS_DISCO_INFO}'/>"),
    );
    assert_eq!(answer.kind(), Some("result"), "{}", answer.xml());
    let query = answer.child("query").expect("a <query/>");
    assert!(
        query.children().any(|c| c.name() == "identity"),
        "{}",
        answer.xml()
    );
    assert!(
        features(query).iter().any(|f| f == NS_DISCO_INFO),
        "{}",
        answer.xml()
    );
}

/// alice sends <iq type='get' to='sip.localhost'><query xmlns='jabber:iq:gateway'/></iq>
/// expect a result with a non-empty <prompt/> (XEP-0100 §6.3.1)
#[test]
fn gateway_get_returns_a_prompt() {
    let mut w = start();
    let component = w.component().to_string();
    let answer = iq(
        &mut w,
        "get",
        "g1",
        &component,
        &format!("<query xmlns='{NS_GATEWAY}'/>"),
    );
    assert_eq!(answer.kind(), Some("result"), "{}", answer.xml());
    let query = answer.child("query").expect("a <query/>");
    assert_eq!(query.ns(), NS_GATEWAY);
    let prompt = query
        .get_child("prompt", NS_GATEWAY)
        .map(Element::text)
        .unwrap_or_default();
    assert!(!prompt.trim().is_empty(), "{}", answer.xml());
}

/// alice sends <iq type='set' to='sip.localhost'><query xmlns='jabber:iq:gateway'>
///   <prompt>sip:carol@pbx.example</prompt></query></iq>
/// expect a result with <jid>carol\40pbx.example@sip.localhost</jid> (XEP-0100 §6.3.2,
///        XEP-0106 escaping of the SIP address)
#[test]
fn gateway_set_translates_a_sip_address_to_a_jid() {
    let mut w = start();
    let component = w.component().to_string();
    let answer = iq(
        &mut w,
        "set",
        "g2",
        &component,
        &format!("<query xmlns='{NS_GATEWAY}'><prompt>sip:carol@pbx.example</prompt></query>"),
    );
    assert_eq!(answer.kind(), Some("result"), "{}", answer.xml());
    let jid = answer
        .child("query")
        .and_then(|q| q.get_child("jid", NS_GATEWAY))
        .map(Element::text);
    assert_eq!(
        jid.as_deref(),
        Some(format!("carol\\40pbx.example@{component}").as_str()),
        "{}",
        answer.xml()
    );
}

/// alice sends <iq type='get' to='sip.localhost'><ping xmlns='urn:xmpp:ping'/></iq>
/// expect an empty result (XEP-0199 §4.2)
#[test]
fn ping_to_the_component_gets_a_result() {
    let mut w = start();
    let component = w.component().to_string();
    let answer = iq(
        &mut w,
        "get",
        "p1",
        &component,
        &format!("<ping xmlns='{NS_PING}'/>"),
    );
    assert_eq!(answer.kind(), Some("result"), "{}", answer.xml());
    assert!(answer.child("error").is_none(), "{}", answer.xml());
}

/// alice sends <iq type='get' to='sip.localhost'><query xmlns='urn:example:unknown'/></iq>
/// expect an error with service-unavailable (RFC 6120 §8.4)
#[test]
fn unknown_iq_gets_service_unavailable() {
    let mut w = start();
    let component = w.component().to_string();
    let answer = iq(
        &mut w,
        "get",
        "u1",
        &component,
        "<query xmlns='urn:example:unknown'/>",
    );
    assert_eq!(answer.kind(), Some("error"), "{}", answer.xml());
    assert_eq!(
        answer.error_condition().as_deref(),
        Some("service-unavailable"),
        "{}",
        answer.xml()
    );
    assert_eq!(answer.error_type(), Some("cancel"), "{}", answer.xml());
}

const NS_CAPS: &str = "http://jabber.org/protocol/caps";

/// stox with `[presence] enabled = false` (a phone-number gateway whose SIP side has no
///   presence: every contact is always callable; with presence on, the same caps ride on the
///   presence translated from the contact's PIDF, tests/tests/presence.rs)
/// alice gets her roster, then sends
///        <presence type='subscribe' to='carol\40pbx.example@sip.localhost'/>
/// expect <presence type='subscribed'/> from the bare contact JID, then an available
///        presence from carol\40pbx.example@sip.localhost/phone carrying
///        <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node=N ver=V/> (XEP-0115 §4)
/// alice sends disco#info with node='N#V' to that full JID
/// expect a result echoing the node, listing the Jingle, RTP audio, ICE-UDP, DTLS-SRTP,
///        XEP-0353 and RFC 3264 features (STOX-MAPPING.md §8), whose XEP-0115 §5 hash is V
#[test]
fn a_subscribed_contact_is_available_with_caps_naming_the_call_features() {
    let mut w =
        World::start_with("[presence]\nenabled = false\n").expect("prosody, stox and alice");
    let contact = format!("carol\\40pbx.example@{}", w.component());
    let phone = format!("{contact}/phone");
    // RFC 6121 §2.2: like every real client, alice asks for her roster first; Prosody
    // delivers `subscribed` (and roster pushes) only to such "interested resources".
    w.alice
        .send_raw("<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>")
        .expect("send");
    w.alice
        .expect(T, |s| s.name() == "iq" && s.id() == Some("roster1"))
        .expect("the roster");
    w.alice
        .send_raw(&format!("<presence type='subscribe' to='{contact}'/>"))
        .expect("send");

    let subscribed = w
        .alice
        .expect(T, |s| {
            s.name() == "presence" && s.kind() == Some("subscribed") && s.from() == Some(&contact)
        })
        .expect("subscribed from the contact");
    assert_eq!(
        subscribed.to(),
        Some("alice@localhost"),
        "{}",
        subscribed.xml()
    );

    let available = w
        .alice
        .expect(T, |s| {
            s.name() == "presence" && s.kind().is_none() && s.from() == Some(&phone)
        })
        .expect("available presence from <contact>/phone");
    let caps = available.child("c").expect("XEP-0115 <c/>");
    assert_eq!(caps.ns(), NS_CAPS, "{}", available.xml());
    assert_eq!(caps.attr("hash"), Some("sha-1"), "{}", available.xml());
    let node = caps.attr("node").expect("caps node");
    let ver = caps.attr("ver").expect("caps ver");
    assert!(!node.is_empty() && !ver.is_empty(), "{}", available.xml());
    let caps_node = format!("{node}#{ver}");

    let answer = iq(
        &mut w,
        "get",
        "caps1",
        &phone,
        &format!("<query xmlns='{NS_DISCO_INFO}' node='{caps_node}'/>"),
    );
    assert_eq!(answer.kind(), Some("result"), "{}", answer.xml());
    let query = answer.child("query").expect("a <query/>");
    assert_eq!(
        query.attr("node"),
        Some(caps_node.as_str()),
        "{}",
        answer.xml()
    );
    let features = features(query);
    for wanted in [
        "urn:xmpp:jingle:1",
        "urn:xmpp:jingle:apps:rtp:1",
        "urn:xmpp:jingle:apps:rtp:audio",
        "urn:xmpp:jingle:transports:ice-udp:1",
        "urn:xmpp:jingle:apps:dtls:0",
        "urn:xmpp:jingle-message:0",
        "urn:ietf:rfc:3264",
        NS_CAPS,
    ] {
        assert!(
            features.iter().any(|f| f == wanted),
            "missing feature {wanted}: {}",
            answer.xml()
        );
    }
    // What a client checks before it trusts the caps (XEP-0115 §5.4): the answer
    // received through Prosody hashes to the advertised ver.
    let disco = xmpp_parsers::disco::DiscoInfoResult::try_from(query.clone())
        .expect("a valid disco#info result");
    let hashed = xmpp_parsers::caps::hash_caps(
        &xmpp_parsers::caps::compute_disco(&disco),
        xmpp_parsers::hashes::Algo::Sha_1,
    )
    .expect("sha-1")
    .to_base64();
    assert_eq!(hashed, ver, "{}", answer.xml());
}

//! Small builders and readers for the stanzas stox writes (RFC 6120 §8).
//!
//! `minidom` wants `NcName`s for attribute names; these helpers keep that noise
//! out of the translation code.

use xmpp_parsers::minidom::rxml::{xml_ncname, Namespace};
use xmpp_parsers::minidom::{Element, ElementBuilder, NSChoice};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

/// `jabber:client`, the namespace of client stanzas.
pub const NS_CLIENT: &str = "jabber:client";
/// XEP-0114 §3: the namespace of stanzas on a component stream; stox writes
/// every stanza in it.
pub const NS_COMPONENT: &str = "jabber:component:accept";
/// Reading: a stanza child such as `<body/>` is in the stream's namespace,
/// which is `jabber:component:accept` on the link and `jabber:client` in tests
/// and in literal examples.
pub const NS_STANZA: NSChoice<'static> = NSChoice::AnyOf(&[NS_CLIENT, NS_COMPONENT]);
/// RFC 6120 §8.3: stanza error conditions.
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// XEP-0085 chat states.
pub const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
/// XEP-0184 message delivery receipts.
pub const NS_RECEIPTS: &str = "urn:xmpp:receipts";
/// XEP-0333 chat markers.
pub const NS_MARKERS: &str = "urn:xmpp:chat-markers:0";

/// XML 1.0 §2.2 `Char`: text from SIP may hold characters XML cannot carry
/// (C0 controls other than tab, LF and CR; U+FFFE, U+FFFF). Each becomes
/// U+FFFD, so the reader sees that something was there.
pub fn xml_safe(text: &str) -> std::borrow::Cow<'_, str> {
    fn bad(c: char) -> bool {
        matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
    }
    if text.chars().any(bad) {
        text.chars()
            .map(|c| if bad(c) { '\u{fffd}' } else { c })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

/// Starts a stanza `name` in `jabber:client` with from/to/id/type set.
pub fn builder(name: &str, from: &str, to: &str, id: &str, kind: Option<&str>) -> ElementBuilder {
    let mut b = Element::builder(name, NS_COMPONENT)
        .attr(xml_ncname!("from").into(), from)
        .attr(xml_ncname!("to").into(), to);
    if !id.is_empty() {
        b = b.attr(xml_ncname!("id").into(), xml_safe(id).into_owned());
    }
    if let Some(kind) = kind {
        b = b.attr(xml_ncname!("type").into(), kind);
    }
    b
}

/// Sets `xml:lang`.
pub fn with_lang(b: ElementBuilder, lang: &str) -> ElementBuilder {
    b.attr_ns(
        Namespace::XML,
        xml_ncname!("lang").into(),
        xml_safe(lang).into_owned(),
    )
}

/// Reads `xml:lang`.
pub fn lang(e: &Element) -> Option<&str> {
    e.attr_ns(&Namespace::XML, "lang")
}

/// An element with text in `ns`.
pub fn text_child(name: &str, ns: &str, text: &str) -> Element {
    Element::builder(name, ns)
        .append(xml_safe(text).into_owned())
        .build()
}

/// An element in `ns` with one `id` attribute (XEP-0184 `<received/>`, XEP-0333 markers).
pub fn id_child(name: &str, ns: &str, id: &str) -> Element {
    Element::builder(name, ns)
        .attr(xml_ncname!("id").into(), xml_safe(id).into_owned())
        .build()
}

/// RFC 6120 §8.3.2: the `<error/>` child.
pub fn error_child(cond: &DefinedCondition, text: Option<&str>) -> Element {
    let kind = crate::translate::error::error_type_for(cond);
    let kind = match kind {
        ErrorType::Auth => "auth",
        ErrorType::Cancel => "cancel",
        ErrorType::Continue => "continue",
        ErrorType::Modify => "modify",
        ErrorType::Wait => "wait",
    };
    let mut b = Element::builder("error", NS_COMPONENT)
        .attr(xml_ncname!("type").into(), kind)
        .append(Element::bare(
            crate::translate::error::condition_name(cond),
            NS_STANZAS,
        ));
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        b = b.append(text_child("text", NS_STANZAS, text));
    }
    b.build()
}

/// RFC 6120 §8.2: an error reply to `original` (from/to swapped, same id and name).
pub fn error_reply(original: &Element, cond: &DefinedCondition, text: Option<&str>) -> Element {
    let from = original.attr("to").unwrap_or_default();
    let to = original.attr("from").unwrap_or_default();
    let id = original.attr("id").unwrap_or_default();
    builder(original.name(), from, to, id, Some("error"))
        .append(error_child(cond, text))
        .build()
}

/// Reads the condition and text of a stanza's `<error/>` child.
pub fn error_of(stanza: &Element) -> Option<(Option<DefinedCondition>, Option<String>)> {
    let error = stanza.get_child("error", NS_STANZA)?;
    let mut cond = None;
    let mut text = None;
    for child in error.children() {
        if child.ns() != NS_STANZAS {
            continue;
        }
        if child.name() == "text" {
            text = Some(child.text());
        } else if cond.is_none() {
            cond = crate::translate::error::condition_from_name(child.name());
        }
    }
    Some((cond, text))
}

/// Serializes an element (for the durable outbox).
pub fn to_string(e: &Element) -> String {
    String::from(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_swaps_addresses_and_keeps_id() {
        let m: Element = "<message xmlns='jabber:client' from='a@x/r' to='b@y' id='m1'><body>hi</body></message>"
            .parse()
            .expect("xml");
        let e = error_reply(&m, &DefinedCondition::ItemNotFound, Some("no such user"));
        assert_eq!(e.attr("from"), Some("b@y"));
        assert_eq!(e.attr("to"), Some("a@x/r"));
        assert_eq!(e.attr("id"), Some("m1"));
        assert_eq!(e.attr("type"), Some("error"));
        let (cond, text) = error_of(&e).expect("error child");
        assert_eq!(cond, Some(DefinedCondition::ItemNotFound));
        assert_eq!(text.as_deref(), Some("no such user"));
    }

    #[test]
    fn characters_xml_cannot_carry_become_replacement_characters() {
        assert_eq!(
            xml_safe("bell\u{7} tab\t nl\n \u{fffe}"),
            "bell\u{fffd} tab\t nl\n \u{fffd}"
        );
        let e = builder("message", "a@x", "b@y", "id\u{1}", None)
            .append(text_child("body", NS_COMPONENT, "a\u{0}b"))
            .build();
        // Serialising must not panic, and the text survives otherwise intact.
        let back: Element = to_string(&e).parse().expect("reparse");
        assert_eq!(
            back.get_child("body", NS_STANZA)
                .map(|b| b.text())
                .as_deref(),
            Some("a\u{fffd}b")
        );
        assert_eq!(back.attr("id"), Some("id\u{fffd}"));
    }

    #[test]
    fn lang_round_trips() {
        let e = with_lang(builder("message", "a@x", "b@y", "1", None), "de").build();
        assert_eq!(lang(&e), Some("de"));
        let back: Element = to_string(&e).parse().expect("reparse");
        assert_eq!(lang(&back), Some("de"));
    }
}

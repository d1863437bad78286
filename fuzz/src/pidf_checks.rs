//! The properties of PIDF handling (RFC 3863 / RFC 4480 bodies, RFC 8048 translation) that
//! the `pidf` fuzz target checks.
//!
//! [`pidf`] takes bytes and panics only when a property of stox is broken:
//!
//! * `pidf::parse` never panics, whatever the bytes;
//! * a document it accepts survives its own writer: `parse(write(p)) == p` (unless the
//!   written form is over the size limit, which escaping can cause);
//! * `presence::pidf_to_stanzas` / `body_to_stanzas` never panic, and every stanza they
//!   produce is in `jabber:component:accept`, carries only characters XML can, serializes
//!   and parses back unchanged;
//! * a `<presence/>` built from the same bytes maps to a tuple (RFC 8048 Table 1) that the
//!   PIDF writer and reader keep intact.
//!
//! The first byte picks how the rest is used: even, as the body itself; odd, as fields
//! spliced into a PIDF template (tuple id, basic, show, priority, note, activity, …), so that
//! random bytes reach the translation rather than stopping at the XML parser.
//!
//! Uses only crates the fuzz crate depends on (stox-gateway, stox-sip, xmpp-parsers).

use stox_gateway::stanza::{self, NS_COMPONENT};
use stox_gateway::translate::presence;
use stox_sip::body::pidf;
use xmpp_parsers::minidom::Element;

/// The SIP contact's bare JID the stanzas come from.
const FROM: &str = "carol\\40pbx.example@sip.localhost";
/// The XMPP watcher.
const TO: &str = "alice@localhost";

/// Realistic values for each templated field; fuzz text is the fallback.
const BASICS: &[&str] = &["open", "closed", "OPEN", "", "maybe"];
const SHOWS: &[&str] = &["away", "chat", "dnd", "xa", "", "busy"];
const ACTIVITIES: &[&str] = &[
    "away",
    "busy",
    "on-the-phone",
    "meeting",
    "vacation",
    "sleeping",
    "meal",
    "unknown",
    "flying",
];
const PRIORITIES: &[&str] = &["0", "1", "0.8", "1.0", "0.007", "0.500000", "2", "-1", ".5"];
const IDS: &[&str] = &[
    "ID-balcony",
    "ID-",
    "ID-my_20phone",
    "t6a5ed77e",
    "ID-_41",
    "",
];
const LANGS: &[&str] = &["en", "fr", "", "de-CH"];

/// Splits fuzz bytes into fields at 0xFF (a byte UTF-8 never has).
struct Fields<'a> {
    parts: std::slice::Split<'a, u8, fn(&u8) -> bool>,
}

impl<'a> Fields<'a> {
    fn new(data: &'a [u8]) -> Self {
        fn sep(b: &u8) -> bool {
            *b == 0xFF
        }
        Self {
            parts: data.split(sep as fn(&u8) -> bool),
        }
    }

    /// The next field: a dictionary value when it is one byte long, else its text.
    fn pick(&mut self, dict: &[&str]) -> String {
        match self.parts.next() {
            None => dict[0].to_owned(),
            Some([b]) => dict[usize::from(*b) % dict.len()].to_owned(),
            Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        }
    }

    /// The next field as free text, escaped unless its first byte is odd (then raw, to
    /// exercise the parser's refusals).
    fn text(&mut self) -> String {
        let Some(bytes) = self.parts.next() else {
            return String::new();
        };
        let raw = bytes.first().is_some_and(|b| b % 2 == 1);
        let s = String::from_utf8_lossy(bytes);
        if raw {
            s.into_owned()
        } else {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('\'', "&apos;")
        }
    }
}

/// Builds a PIDF body from fields.
fn templated(data: &[u8]) -> (Vec<u8>, Option<String>) {
    let mut f = Fields::new(data);
    let id = f.pick(IDS);
    let basic = f.pick(BASICS);
    let show = f.pick(SHOWS);
    let priority = f.pick(PRIORITIES);
    let lang = f.pick(LANGS);
    let note = f.text();
    let activity = f.pick(ACTIVITIES);
    let person_note = f.text();
    let second_id = f.pick(IDS);
    let content_language = f.pick(LANGS);
    let body = format!(
        "<?xml version='1.0' encoding='UTF-8'?>\
         <presence xmlns='{ns}' xmlns:dm='{dm}' xmlns:rpid='{rpid}' entity='sip:carol@pbx.example'>\
         <tuple id='{id}'><status><basic>{basic}</basic><show xmlns='jabber:client'>{show}</show>\
         </status><contact priority='{priority}'>sip:carol@pbx.example</contact>\
         <note xml:lang='{lang}'>{note}</note></tuple>\
         <tuple id='{second_id}'><status><rpid:activities><rpid:{activity}/></rpid:activities>\
         </status></tuple><note>{note}</note>\
         <dm:person id='p'><rpid:activities><rpid:{activity}/><rpid:other>{note}</rpid:other>\
         </rpid:activities><dm:note>{person_note}</dm:note></dm:person></presence>",
        ns = pidf::NS,
        dm = pidf::NS_DM,
        rpid = pidf::NS_RPID,
    );
    let cl = (!content_language.is_empty()).then_some(content_language);
    (body.into_bytes(), cl)
}

/// A character XML 1.0 cannot carry, anywhere in `e` (names, attributes, text).
fn forbidden_char(e: &Element) -> Option<char> {
    let bad = |s: &str| {
        s.chars().find(|&c| {
            (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{fffe}' || c == '\u{ffff}'
        })
    };
    e.attrs()
        .values()
        .find_map(|v| bad(v))
        .or_else(|| e.texts().find_map(bad))
        .or_else(|| e.children().find_map(forbidden_char))
}

/// A stanza from the translation: component namespace, XML-safe, survives serialization.
fn check_stanza(e: &Element) {
    assert_eq!(e.name(), "presence");
    assert_eq!(e.ns(), NS_COMPONENT, "stanza namespace");
    for c in e.children() {
        assert_eq!(c.ns(), NS_COMPONENT, "<{}> namespace", c.name());
    }
    assert_eq!(forbidden_char(e), None, "XML-forbidden character in {e:?}");
    let xml = stanza::to_string(e);
    let back: Element = xml
        .parse()
        .unwrap_or_else(|err| panic!("stanza does not reparse: {err}\n{xml}"));
    // XML end-of-line handling turns a literal CR into LF; compare modulo that.
    let again = stanza::to_string(&back);
    assert_eq!(
        again.replace('\r', "\n"),
        xml.replace('\r', "\n"),
        "stanza changed through XML"
    );
    if let Some(t) = e.attr("type") {
        assert_eq!(
            t, "unavailable",
            "only available/unavailable presence is produced"
        );
    }
}

/// What parses survives `write`, and translates to valid stanzas.
fn check_document(doc: &pidf::Presence, content_language: Option<&str>) {
    let written = pidf::write(doc);
    match pidf::parse(written.as_bytes()) {
        Ok(again) => assert_eq!(&again, doc, "write → parse changed the document\n{written}"),
        // Escaping can grow a body past the limit; anything else is a bug.
        Err(pidf::PidfError::TooLarge { .. }) => {}
        Err(e) => panic!("stox's own PIDF does not parse: {e}\n{written}"),
    }
    let stanzas = presence::pidf_to_stanzas(Some(doc), FROM, TO, content_language);
    assert_eq!(stanzas.len(), doc.tuples.len().max(1));
    for s in &stanzas {
        check_stanza(s);
    }
}

/// The reverse direction: a `<presence/>` from the same bytes → tuple → PIDF → tuple.
fn check_stanza_to_pidf(data: &[u8]) {
    let mut f = Fields::new(data);
    let resource = f.pick(&["balcony", "my phone", "", "a/b", "ü"]);
    let kind = f.pick(&["", "unavailable", "subscribe", "probe", "error"]);
    let show = f.pick(SHOWS);
    let status = f.text();
    let priority = f.pick(&["1", "127", "-1", "0", "x", "300"]);
    let mut b = stanza::builder(
        "presence",
        &format!("juliet@example.com/{}", stanza::xml_safe(&resource)),
        TO,
        "",
        (!kind.is_empty()).then_some(kind.as_str()),
    );
    for (name, text) in [
        ("show", &show),
        ("status", &status),
        ("priority", &priority),
    ] {
        b = b.append(stanza::text_child(name, NS_COMPONENT, text));
    }
    let p = b.build();
    let Some(t) = presence::stanza_to_tuple(&p, Some("sip:juliet@example.com")) else {
        assert!(
            !kind.is_empty() && kind != "unavailable",
            "type {kind:?} must map"
        );
        return;
    };
    assert!(kind.is_empty() || kind == "unavailable");
    let doc = presence::document("pres:juliet@example.com", vec![t.tuple]);
    let written = pidf::write(&doc);
    let again = pidf::parse(written.as_bytes())
        .unwrap_or_else(|e| panic!("stox's own PIDF does not parse: {e}\n{written}"));
    assert_eq!(again, doc, "tuple changed through PIDF\n{written}");
    for s in presence::pidf_to_stanzas(Some(&again), "juliet@example.com", TO, None) {
        check_stanza(&s);
    }
}

/// The `pidf` fuzz target: see the module documentation.
pub fn pidf(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        // The empty body: "unknown", one unavailable.
        let s = presence::body_to_stanzas(b"", FROM, TO, None).expect("empty body");
        assert_eq!(s.len(), 1);
        return;
    };
    let (body, content_language) = if mode % 2 == 0 {
        (rest.to_vec(), None)
    } else {
        templated(rest)
    };
    let content_language = content_language.as_deref();
    match pidf::parse(&body) {
        Ok(doc) => check_document(&doc, content_language),
        Err(_) => {
            // A refused body is an error for the caller, never a panic.
            assert!(
                presence::body_to_stanzas(&body, FROM, TO, content_language).is_err()
                    || body.iter().all(u8::is_ascii_whitespace)
            );
        }
    }
    if let Ok(stanzas) = presence::body_to_stanzas(&body, FROM, TO, content_language) {
        for s in &stanzas {
            check_stanza(s);
        }
    }
    if mode % 4 == 1 {
        check_stanza_to_pidf(rest);
    }
}

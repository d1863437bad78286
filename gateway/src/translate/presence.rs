//! RFC 8048 §7: presence notifications, XMPP `<presence/>` ⇄ SIP PIDF (RFC 3863).
//!
//! Pure: addresses are resolved by the caller (`translate::address`), which also owns the
//! subscription state; this module maps one stanza to one PIDF tuple (Table 1) and one PIDF
//! document to one stanza per tuple (Table 2).
//!
//! * [`TYPE_TO_BASIC`] / [`BASIC_TO_TYPE`]: Table 1 and Table 2 for `type` ⇄ `<basic>`.
//! * [`ACTIVITY_TO_SHOW`]: RPID activities (RFC 4480) → `<show/>`, not in the RFC (a
//!   practical addition, as Kamailio and FreeSWITCH do).
//! * Resources ⇄ tuple ids: `ID-<resource>` (Table 1), with the resource escaped so that the
//!   id is an `xs:ID` ([`tuple_id`], reversed by [`resource_for_tuple_id`]).
//! * Priority ⇄ `<contact priority>`: [`priority_to_pidf`], [`priority_to_xmpp`].
//!
//! Stanzas are written in `jabber:component:accept` (XEP-0114; Prosody drops component
//! stanzas in `jabber:client`); stanzas are read in either namespace.

use stox_sip::body::pidf::{self, Activity, Basic, Contact, Note, Priority, Show, Tuple};
use xmpp_parsers::jid::{Jid, ResourcePart};
use xmpp_parsers::minidom::Element;

use crate::stanza::{self, NS_COMPONENT, NS_STANZA};

/// RFC 8048 Table 1: presence `type` → `<basic>`. Only these two types become a NOTIFY
/// (§7: presence of other types is about subscriptions, not availability).
pub const TYPE_TO_BASIC: &[(Option<&str>, Basic)] = &[
    // "MUST": no type → open.
    (None, Basic::Open),
    // "MUST": unavailable → closed.
    (Some("unavailable"), Basic::Closed),
];

/// RFC 8048 Table 2: `<basic>` → presence `type`.
pub const BASIC_TO_TYPE: &[(Option<Basic>, Option<&str>)] = &[
    // "MUST": open → no type.
    (Some(Basic::Open), None),
    // "MUST": closed → unavailable.
    (Some(Basic::Closed), Some("unavailable")),
    // Not in the RFC: a tuple whose <status> has no <basic> (RFC 3863 allows it; RPID-only
    // publishers send it) still describes a reachable service; stox treats it as open and lets
    // the activities speak.
    (None, None),
];

/// RPID activities → `<show/>` (not in RFC 8048; STOX-MAPPING §6 "practical additions").
/// Activities without a row give no `<show/>` (plain available).
pub const ACTIVITY_TO_SHOW: &[(Activity, Show)] = &[
    (Activity::Away, Show::Away),
    (Activity::Busy, Show::Dnd),
    (Activity::OnThePhone, Show::Dnd),
    (Activity::Meeting, Show::Dnd),
    (Activity::Vacation, Show::Xa),
    (Activity::Sleeping, Show::Xa),
];

/// `<show/>` → RPID activities (RFC 4480 §3.2), written beside the embedded `<show/>` that
/// RFC 8048 recommends: SIP phones do not read `jabber:client` inside a PIDF, but many read
/// RPID (baresip shows `busy` as busy; Linphone's model is RPID). Not in RFC 8048; chosen to
/// read back through [`ACTIVITY_TO_SHOW`] to the same `<show/>` except `xa` (RPID has no
/// "extended away"; the embedded `<show/>` keeps it for XMPP readers).
pub const SHOW_TO_ACTIVITY: &[(Show, Activity)] = &[
    (Show::Away, Activity::Away),
    (Show::Xa, Activity::Away),
    (Show::Dnd, Activity::Busy),
];

/// RFC 8048 Table 1: the tuple id prefix ("ID-", because an `xs:ID` may not start with a
/// digit, and resources often do).
pub const TUPLE_ID_PREFIX: &str = "ID-";

/// Longest resource stox emits for a foreign tuple id, in bytes (RFC 7622 allows 1023).
const MAX_RESOURCE: usize = 256;

/// Bytes kept as they are in a tuple id; every other byte is `_XX` (uppercase hex), `_`
/// included. The result is ASCII letters, digits, `-`, `.`, `_`: NCName characters.
fn id_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

fn escape_id(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if id_safe(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    out
}

/// Reverses [`escape_id`]; `None` unless `s` is exactly what `escape_id` writes for some
/// UTF-8 string (so the mapping is one-to-one).
fn unescape_id(s: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(s.len());
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        match b {
            b'_' => {
                let hex = |c: u8| match c {
                    b'0'..=b'9' => Some(c - b'0'),
                    b'A'..=b'F' => Some(c - b'A' + 10),
                    _ => None,
                };
                let hi = hex(it.next()?)?;
                let lo = hex(it.next()?)?;
                let v = hi << 4 | lo;
                if id_safe(v) {
                    return None;
                }
                bytes.push(v);
            }
            b if id_safe(b) => bytes.push(b),
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}

/// The normalized resource, if `r` is a valid one (RFC 7622 §3.4).
fn valid_resource(r: &str) -> Option<String> {
    ResourcePart::new(r).ok().map(|p| p.to_string())
}

/// RFC 8048 Table 1: the tuple id for a resource, `ID-` and the resource with every byte
/// outside `[A-Za-z0-9.-]` written `_XX`. Stable, an `xs:ID`, reversed by
/// [`resource_for_tuple_id`]. The bare JID (no resource) is `ID-`.
pub fn tuple_id(resource: &str) -> String {
    format!("{TUPLE_ID_PREFIX}{}", escape_id(resource))
}

/// RFC 8048 Table 2 ("one XMPP resource per tuple"): the resource for a tuple id. An id stox
/// wrote ([`tuple_id`]) gives its resource back. A foreign id is used as it is when it is a
/// valid resource (normalized), else escaped as in [`tuple_id`] (ASCII, always valid), cut at
/// 256 bytes. An empty id gives `""`: the stanza comes from the bare JID.
pub fn resource_for_tuple_id(id: &str) -> String {
    let id = id.trim();
    if let Some(r) = id
        .strip_prefix(TUPLE_ID_PREFIX)
        .and_then(unescape_id)
        .and_then(|r| {
            if r.is_empty() {
                Some(r)
            } else {
                valid_resource(&r)
            }
        })
    {
        return r;
    }
    if id.is_empty() {
        return String::new();
    }
    if let Some(r) = valid_resource(id).filter(|r| r.len() <= MAX_RESOURCE) {
        return r;
    }
    let mut escaped = escape_id(id);
    escaped.truncate(MAX_RESOURCE);
    escaped
}

/// RFC 8048 Table 1: `<priority/>` → `<contact priority>`. Negative priorities "MUST NOT be
/// mapped"; 0..=127 scales to 0..=1, cut (not rounded) to the three decimals a `qvalue`
/// has, which is what the RFC's examples give: 1 → 0.007, 2 → 0.015, 126 → 0.992.
pub fn priority_to_pidf(priority: i8) -> Option<Priority> {
    let p = u32::try_from(priority).ok()?;
    // p ≤ 127, so the quotient ≤ 1000.
    Priority::from_thousandths(u16::try_from(p * 1000 / 127).ok()?)
}

/// RFC 8048 Table 2: `<contact priority>` → `<priority/>`, 0..=1 → 0..=127, rounded to the
/// nearest, which inverts [`priority_to_pidf`] exactly (0.007 → 1, 0.992 → 126).
pub fn priority_to_xmpp(priority: Priority) -> i8 {
    let p = (u32::from(priority.thousandths()) * 127 + 500) / 1000;
    // thousandths ≤ 1000, so p ≤ 127.
    i8::try_from(p).unwrap_or(i8::MAX)
}

/// The `<show/>` for a list of activities: the first one with a row in
/// [`ACTIVITY_TO_SHOW`], in document order.
pub fn show_for_activities(activities: &[Activity]) -> Option<Show> {
    activities.iter().find_map(|a| {
        ACTIVITY_TO_SHOW
            .iter()
            .find(|(row, _)| row == a)
            .map(|(_, s)| *s)
    })
}

/// A presence stanza as one PIDF tuple (RFC 8048 Table 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidfTuple {
    /// The tuple.
    pub tuple: Tuple,
    /// The stanza's `xml:lang`, for `Content-Language`.
    pub content_language: Option<String>,
}

/// The resource of a stanza's `from` (empty for a bare JID or no `from`).
fn from_resource(stanza: &Element) -> String {
    let from = stanza.attr("from").unwrap_or_default();
    match Jid::new(from) {
        Ok(jid) => jid.resource().map(|r| r.to_string()).unwrap_or_default(),
        Err(_) => from
            .split_once('/')
            .map(|(_, r)| r.to_owned())
            .unwrap_or_default(),
    }
}

/// RFC 8048 Table 1: a `<presence/>` → the tuple for its sender's resource.
///
/// `None` for presence that does not map: any `type` other than none or `unavailable`
/// (subscription management, probes, errors) and stanzas that are not `<presence/>`.
/// `contact_uri` (e.g. the GRUU or `xmpp:` URI of that resource) becomes `<contact>`, carrying
/// the priority; without it the priority is not mapped. `<show/>` is embedded in `<status>` as
/// RFC 8048 recommends (available presence only), and written as an RPID activity too
/// ([`SHOW_TO_ACTIVITY`]); each `<status/>` is a `<note>` with its own
/// `xml:lang`; the stanza's `xml:lang` is returned for `Content-Language`.
pub fn stanza_to_tuple(presence: &Element, contact_uri: Option<&str>) -> Option<PidfTuple> {
    if !presence.is("presence", NS_STANZA) {
        return None;
    }
    let kind = presence.attr("type");
    let basic = TYPE_TO_BASIC
        .iter()
        .find(|(t, _)| *t == kind)
        .map(|(_, b)| *b)?;
    let show = match basic {
        Basic::Open => presence
            .get_child("show", NS_STANZA)
            .and_then(|s| Show::from_name(&s.text())),
        Basic::Closed => None,
    };
    let notes = presence
        .children()
        .filter(|c| c.is("status", NS_STANZA))
        .filter_map(|s| {
            let text = s.text();
            let text = text.trim();
            (!text.is_empty()).then(|| Note {
                lang: stanza::lang(s)
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
                text: text.to_owned(),
            })
        })
        .collect();
    let priority = presence
        .get_child("priority", NS_STANZA)
        .and_then(|p| p.text().trim().parse::<i8>().ok())
        .and_then(priority_to_pidf);
    let contact = contact_uri
        .filter(|u| !u.trim().is_empty())
        .map(|uri| Contact {
            uri: uri.trim().to_owned(),
            priority,
        });
    Some(PidfTuple {
        tuple: Tuple {
            id: tuple_id(&from_resource(presence)),
            basic: Some(basic),
            show,
            activities: show
                .and_then(|s| {
                    SHOW_TO_ACTIVITY
                        .iter()
                        .find(|(row, _)| *row == s)
                        .map(|(_, a)| a.clone())
                })
                .into_iter()
                .collect(),
            contact,
            notes,
            timestamp: None,
        },
        content_language: stanza::lang(presence)
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned),
    })
}

/// RFC 8048 §7: the PIDF document for a presentity with one tuple per resource.
pub fn document(entity: &str, tuples: Vec<Tuple>) -> pidf::Presence {
    pidf::Presence {
        entity: entity.to_owned(),
        tuples,
        notes: Vec::new(),
        person: None,
    }
}

/// The first language of a `Content-Language` value.
fn first_language(header: Option<&str>) -> Option<&str> {
    header
        .and_then(|h| h.split(',').next())
        .map(str::trim)
        .filter(|l| !l.is_empty())
}

/// RFC 8048 Table 2: a PIDF document (from a NOTIFY or PUBLISH body) → the presence stanzas
/// to send, one per tuple, from `from/<resource>` (`from` is the SIP contact's bare JID) to
/// `to`.
///
/// `doc: None` (an empty or absent body) or a document without tuples means the contact's
/// presence is unknown: one `type='unavailable'` from the bare JID. Per tuple: basic → `type`
/// ([`BASIC_TO_TYPE`]); for available tuples, `<show/>` from the embedded
/// `<show xmlns='jabber:client'>`, else the tuple's activities, else the person's
/// ([`ACTIVITY_TO_SHOW`]), and `<priority/>` from the contact priority; `<status/>`s from the
/// tuple's notes, else the person's, else the presentity's. `content_language` (the
/// `Content-Language` header) becomes the stanza's `xml:lang`; a note in another language
/// keeps its own.
pub fn pidf_to_stanzas(
    doc: Option<&pidf::Presence>,
    from: &str,
    to: &str,
    content_language: Option<&str>,
) -> Vec<Element> {
    let lang = first_language(content_language);
    let start = |from: &str, kind: Option<&str>| {
        let b = stanza::builder("presence", from, to, "", kind);
        match lang {
            Some(l) => stanza::with_lang(b, l),
            None => b,
        }
    };
    let Some(doc) = doc.filter(|d| !d.tuples.is_empty()) else {
        return vec![start(from, Some("unavailable")).build()];
    };
    let person = doc.person.as_ref();
    doc.tuples
        .iter()
        .map(|t| {
            let resource = resource_for_tuple_id(&t.id);
            let full = if resource.is_empty() {
                from.to_owned()
            } else {
                format!("{from}/{resource}")
            };
            let kind = BASIC_TO_TYPE
                .iter()
                .find(|(b, _)| *b == t.basic)
                .and_then(|(_, k)| *k);
            let mut children = Vec::new();
            if kind.is_none() {
                let show = t
                    .show
                    .or_else(|| show_for_activities(&t.activities))
                    .or_else(|| person.and_then(|p| show_for_activities(&p.activities)));
                if let Some(show) = show {
                    children.push(stanza::text_child("show", NS_COMPONENT, show.as_str()));
                }
            }
            let notes: &[Note] = if !t.notes.is_empty() {
                &t.notes
            } else if let Some(p) = person.filter(|p| !p.notes.is_empty()) {
                &p.notes
            } else {
                &doc.notes
            };
            for n in notes {
                let mut status = Element::builder("status", NS_COMPONENT)
                    .append(stanza::xml_safe(&n.text).into_owned());
                if let Some(l) = n.lang.as_deref().filter(|l| Some(*l) != lang) {
                    status = stanza::with_lang(status, l);
                }
                children.push(status.build());
            }
            if kind.is_none() {
                if let Some(p) = t.contact.as_ref().and_then(|c| c.priority) {
                    children.push(stanza::text_child(
                        "priority",
                        NS_COMPONENT,
                        &priority_to_xmpp(p).to_string(),
                    ));
                }
            }
            start(&full, kind).append_all(children).build()
        })
        .collect()
}

/// [`pidf_to_stanzas`] for a raw body: an empty body is "unknown" (one unavailable); a body
/// that does not parse is an error (the caller answers 400 or logs and ignores it).
pub fn body_to_stanzas(
    body: &[u8],
    from: &str,
    to: &str,
    content_language: Option<&str>,
) -> Result<Vec<Element>, pidf::PidfError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(pidf_to_stanzas(None, from, to, content_language));
    }
    let doc = pidf::parse(body)?;
    Ok(pidf_to_stanzas(Some(&doc), from, to, content_language))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stanza::NS_CLIENT;
    use proptest::prelude::*;

    fn el(xml: &str) -> Element {
        xml.parse().unwrap_or_else(|e| panic!("{xml}: {e}"))
    }

    fn vector(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../sip/tests/vectors/pidf/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// XML 1.0 NCName restricted to ASCII (what `tuple_id` promises).
    fn is_ascii_ncname(s: &str) -> bool {
        let mut b = s.bytes();
        b.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
            && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
    }

    fn child_text(e: &Element, name: &str) -> Option<String> {
        e.get_child(name, NS_STANZA).map(|c| c.text())
    }

    /// Every stanza is in the component namespace and survives serialization.
    fn reparse(e: &Element) -> Element {
        assert_eq!(e.ns(), NS_COMPONENT);
        for c in e.children() {
            assert_eq!(c.ns(), NS_COMPONENT, "{}", c.name());
        }
        let back: Element = stanza::to_string(e).parse().expect("reparses");
        assert_eq!(&back, e);
        back
    }

    fn juliet(attrs: &str, children: &str) -> Element {
        el(&format!(
            "<presence xmlns='jabber:client' from='juliet@example.com/balcony' \
             to='romeo@sip.example.net' {attrs}>{children}</presence>"
        ))
    }

    // ---- Table 1: XMPP → PIDF ----

    #[test]
    fn type_to_basic_rows() {
        for (kind, basic) in TYPE_TO_BASIC {
            let attrs = kind.map(|k| format!("type='{k}'")).unwrap_or_default();
            let t = stanza_to_tuple(&juliet(&attrs, ""), None).expect("maps");
            assert_eq!(t.tuple.basic, Some(*basic), "{kind:?}");
        }
        assert_eq!(TYPE_TO_BASIC.len(), 2);
    }

    #[test]
    fn other_presence_types_do_not_map() {
        for kind in [
            "subscribe",
            "subscribed",
            "unsubscribe",
            "unsubscribed",
            "probe",
            "error",
            "bogus",
        ] {
            assert_eq!(
                stanza_to_tuple(&juliet(&format!("type='{kind}'"), ""), None),
                None,
                "{kind}"
            );
        }
        assert_eq!(
            stanza_to_tuple(
                &el("<message xmlns='jabber:client' from='a@b/c'><body>x</body></message>"),
                None
            ),
            None
        );
        assert_eq!(
            stanza_to_tuple(&el("<presence xmlns='urn:other'/>"), None),
            None
        );
    }

    #[test]
    fn full_stanza_to_tuple_matches_the_rfc8048_vector() {
        let p = juliet(
            "xml:lang='en'",
            "<show>away</show><status>Sleeping</status><priority>1</priority>",
        );
        let t = stanza_to_tuple(&p, Some("xmpp:juliet@example.com/balcony")).expect("maps");
        assert_eq!(t.content_language.as_deref(), Some("en"));
        assert_eq!(t.tuple.id, "ID-balcony");
        assert_eq!(t.tuple.show, Some(Show::Away));
        assert_eq!(
            t.tuple.contact.as_ref().and_then(|c| c.priority),
            Priority::from_thousandths(7)
        );
        // The stanza's own xml:lang is Content-Language; the note written in the vector
        // carries it explicitly, so compare with the status' language set.
        // The RPID activity stox adds for SIP phones (SHOW_TO_ACTIVITY) is not in the vector.
        assert_eq!(t.tuple.activities, vec![Activity::Away]);
        let mut tuple = t.tuple.clone();
        tuple.activities.clear();
        tuple.notes[0].lang = Some("en".into());
        let doc = document("pres:juliet@example.com", vec![tuple]);
        let expected = pidf::parse(&vector("stox-rfc8048-away.xml")).expect("vector");
        assert_eq!(doc, expected);
        assert_eq!(pidf::parse(pidf::write(&doc).as_bytes()).unwrap(), expected);
    }

    #[test]
    fn unavailable_keeps_status_but_not_show() {
        let t = stanza_to_tuple(
            &juliet(
                "type='unavailable'",
                "<show>dnd</show><status xml:lang='fr'>Parti</status><priority>5</priority>",
            ),
            Some("sip:juliet@example.com"),
        )
        .expect("maps");
        assert_eq!(t.tuple.basic, Some(Basic::Closed));
        assert_eq!(t.tuple.show, None);
        assert_eq!(
            t.tuple.notes,
            vec![Note {
                lang: Some("fr".into()),
                text: "Parti".into()
            }]
        );
        assert_eq!(t.content_language, None);
    }

    #[test]
    fn stanza_details() {
        // Component namespace, several statuses, invalid show and priority ignored.
        let p = el(
            "<presence xmlns='jabber:component:accept' from='a@b/r' xml:lang=' de '>\
             <show>sleepy</show><status> </status><status>eins</status>\
             <status xml:lang='en'>one</status><priority>x</priority></presence>",
        );
        let t = stanza_to_tuple(&p, Some(" sip:a@b ")).expect("maps");
        assert_eq!(t.content_language.as_deref(), Some("de"));
        assert_eq!(t.tuple.show, None);
        assert_eq!(
            t.tuple
                .notes
                .iter()
                .map(|n| (n.lang.as_deref(), n.text.as_str()))
                .collect::<Vec<_>>(),
            [(None, "eins"), (Some("en"), "one")]
        );
        assert_eq!(
            t.tuple.contact,
            Some(Contact {
                uri: "sip:a@b".into(),
                priority: None
            })
        );
        // Negative priority: not mapped. No contact URI: no <contact> at all.
        let neg =
            stanza_to_tuple(&juliet("", "<priority>-1</priority>"), Some("sip:j@e")).expect("maps");
        assert_eq!(neg.tuple.contact.and_then(|c| c.priority), None);
        let none = stanza_to_tuple(&juliet("", "<priority>5</priority>"), None).expect("maps");
        assert_eq!(none.tuple.contact, None);
        assert_eq!(
            stanza_to_tuple(&juliet("", ""), Some("  "))
                .unwrap()
                .tuple
                .contact,
            None
        );
        // Every show value is embedded.
        for (name, show) in pidf::SHOW_TABLE {
            let t = stanza_to_tuple(&juliet("", &format!("<show>{name}</show>")), None).unwrap();
            assert_eq!(t.tuple.show, Some(*show));
        }
        // Bare JID, no from, unparseable from.
        let bare = el("<presence xmlns='jabber:client' from='juliet@example.com'/>");
        assert_eq!(stanza_to_tuple(&bare, None).unwrap().tuple.id, "ID-");
        let nofrom = el("<presence xmlns='jabber:client'/>");
        assert_eq!(stanza_to_tuple(&nofrom, None).unwrap().tuple.id, "ID-");
        let odd = el("<presence xmlns='jabber:client' from='@/x y'/>");
        assert_eq!(stanza_to_tuple(&odd, None).unwrap().tuple.id, "ID-x_20y");
    }

    #[test]
    fn priority_examples_and_round_trip() {
        // RFC 8048 Table 1 examples.
        for (xmpp, thousandths) in [(0, 0), (1, 7), (2, 15), (126, 992), (127, 1000), (64, 503)] {
            let p = priority_to_pidf(xmpp).expect("maps");
            assert_eq!(p.thousandths(), thousandths, "{xmpp}");
            assert_eq!(priority_to_xmpp(p), xmpp);
        }
        assert_eq!(priority_to_pidf(1).unwrap().to_string(), "0.007");
        assert_eq!(priority_to_pidf(2).unwrap().to_string(), "0.015");
        assert_eq!(priority_to_pidf(126).unwrap().to_string(), "0.992");
        for neg in [-1, -50, i8::MIN] {
            assert_eq!(priority_to_pidf(neg), None);
        }
        for p in 0..=127i8 {
            assert_eq!(priority_to_xmpp(priority_to_pidf(p).unwrap()), p);
        }
        for (t, xmpp) in [(0, 0), (800, 102), (1000, 127), (500, 64), (3, 0), (4, 1)] {
            assert_eq!(
                priority_to_xmpp(Priority::from_thousandths(t).unwrap()),
                xmpp,
                "{t}"
            );
        }
    }

    #[test]
    fn tuple_ids() {
        for (resource, id) in [
            ("balcony", "ID-balcony"),
            ("", "ID-"),
            ("Conversations.x1-Y", "ID-Conversations.x1-Y"),
            ("my phone", "ID-my_20phone"),
            ("a_b", "ID-a_5Fb"),
            ("a:b/c@d", "ID-a_3Ab_2Fc_40d"),
            ("ü", "ID-_C3_BC"),
            ("1", "ID-1"),
        ] {
            assert_eq!(tuple_id(resource), id);
            assert!(is_ascii_ncname(&tuple_id(resource)), "{id}");
            assert_eq!(resource_for_tuple_id(id), resource);
        }
    }

    #[test]
    fn foreign_tuple_ids() {
        for (id, resource) in [
            ("t6a5ed77e", "t6a5ed77e"),
            (
                "Td6lzgpUlv03USHnjIzKGIlO06bqnvEPX",
                "Td6lzgpUlv03USHnjIzKGIlO06bqnvEPX",
            ),
            (" sg89ae ", "sg89ae"),
            ("", ""),
            // Not what tuple_id writes (bad escape, lowercase hex, escaped safe byte,
            // invalid UTF-8): used as they are.
            ("ID-zz_", "ID-zz_"),
            ("ID-_2f", "ID-_2f"),
            ("ID-_41", "ID-_41"),
            ("ID-_FF", "ID-_FF"),
            // Not a valid resource (a control character): escaped.
            ("a\u{7}b", "a_07b"),
        ] {
            assert_eq!(resource_for_tuple_id(id), resource, "{id:?}");
        }
        let long = "x".repeat(2000);
        assert_eq!(resource_for_tuple_id(&long).len(), MAX_RESOURCE);
        // "ID-" followed by the escape of a character no resource may hold.
        assert_eq!(resource_for_tuple_id("ID-_07"), "ID-_07");
    }

    // ---- Table 2: PIDF → XMPP ----

    fn doc(tuples: Vec<Tuple>) -> pidf::Presence {
        document("sip:carol@pbx.example", tuples)
    }

    fn open_tuple(id: &str) -> Tuple {
        Tuple {
            id: id.into(),
            basic: Some(Basic::Open),
            ..Tuple::default()
        }
    }

    const FROM: &str = "carol\\40pbx.example@sip.localhost";
    const TO: &str = "alice@localhost";

    #[test]
    fn basic_to_type_rows() {
        for (basic, kind) in BASIC_TO_TYPE {
            let t = Tuple {
                id: "ID-phone".into(),
                basic: *basic,
                ..Tuple::default()
            };
            let s = pidf_to_stanzas(Some(&doc(vec![t])), FROM, TO, None);
            assert_eq!(s.len(), 1);
            assert_eq!(s[0].attr("type"), *kind, "{basic:?}");
            assert_eq!(s[0].attr("from"), Some(&*format!("{FROM}/phone")));
            assert_eq!(s[0].attr("to"), Some(TO));
            reparse(&s[0]);
        }
        assert_eq!(BASIC_TO_TYPE.len(), 3);
    }

    #[test]
    fn activity_to_show_rows() {
        for (activity, show) in ACTIVITY_TO_SHOW {
            // In the person (RFC 4480) …
            let mut d = doc(vec![open_tuple("t")]);
            d.person = Some(pidf::Person {
                id: "p".into(),
                activities: vec![activity.clone()],
                ..pidf::Person::default()
            });
            let s = pidf_to_stanzas(Some(&d), FROM, TO, None);
            assert_eq!(child_text(&s[0], "show").as_deref(), Some(show.as_str()));
            // … and in the tuple (older UAs).
            let mut t = open_tuple("t");
            t.activities = vec![activity.clone()];
            let s = pidf_to_stanzas(Some(&doc(vec![t])), FROM, TO, None);
            assert_eq!(child_text(&s[0], "show").as_deref(), Some(show.as_str()));
            reparse(&s[0]);
        }
        assert_eq!(ACTIVITY_TO_SHOW.len(), 6);
        // The list, spelled out.
        use Activity as A;
        for (a, s) in [
            (A::Away, Some(Show::Away)),
            (A::Busy, Some(Show::Dnd)),
            (A::OnThePhone, Some(Show::Dnd)),
            (A::Meeting, Some(Show::Dnd)),
            (A::Vacation, Some(Show::Xa)),
            (A::Sleeping, Some(Show::Xa)),
            (A::Meal, None),
            (A::Unknown, None),
            (A::Other("busy".into()), None),
        ] {
            assert_eq!(show_for_activities(std::slice::from_ref(&a)), s, "{a:?}");
        }
        // Document order: the first activity with a row wins.
        assert_eq!(
            show_for_activities(&[A::Meal, A::Sleeping, A::Away]),
            Some(Show::Xa)
        );
        assert_eq!(show_for_activities(&[]), None);
    }

    #[test]
    fn show_to_activity_rows() {
        // Every row, through a real stanza: the embedded <show/> and the activity, and what
        // a reader of the activity alone gets back.
        for (show, activity) in SHOW_TO_ACTIVITY {
            let p = juliet("", &format!("<show>{}</show>", show.as_str()));
            let t = stanza_to_tuple(&p, None).expect("maps").tuple;
            assert_eq!(t.show, Some(*show));
            assert_eq!(t.activities, vec![activity.clone()]);
            let read_back = show_for_activities(&t.activities);
            let want = if *show == Show::Xa { Show::Away } else { *show };
            assert_eq!(read_back, Some(want), "{show:?}");
        }
        // No row: chat and plain available carry no activity; unavailable none either.
        for children in ["<show>chat</show>", ""] {
            let t = stanza_to_tuple(&juliet("", children), None)
                .expect("maps")
                .tuple;
            assert!(t.activities.is_empty(), "{children}");
        }
        let t = stanza_to_tuple(&juliet("type='unavailable'", "<show>dnd</show>"), None)
            .expect("maps")
            .tuple;
        assert!(t.activities.is_empty() && t.show.is_none());
        // Written and read back: RPID declared, both forms present.
        let p = juliet("", "<show>dnd</show>");
        let t = stanza_to_tuple(&p, None).expect("maps").tuple;
        let text = pidf::write(&document("sip:juliet@example.com", vec![t]));
        assert!(text.contains("<rpid:busy/>"), "{text}");
        assert!(text.contains("dnd</show>"), "{text}");
    }

    #[test]
    fn show_precedence_embedded_then_tuple_then_person() {
        let mut t = open_tuple("t");
        t.show = Some(Show::Chat);
        t.activities = vec![Activity::Busy];
        let mut d = doc(vec![t.clone()]);
        d.person = Some(pidf::Person {
            activities: vec![Activity::Vacation],
            ..pidf::Person::default()
        });
        let show =
            |d: &pidf::Presence| child_text(&pidf_to_stanzas(Some(d), FROM, TO, None)[0], "show");
        assert_eq!(show(&d).as_deref(), Some("chat"));
        d.tuples[0].show = None;
        assert_eq!(show(&d).as_deref(), Some("dnd"));
        d.tuples[0].activities.clear();
        assert_eq!(show(&d).as_deref(), Some("xa"));
        d.person = None;
        assert_eq!(show(&d), None);
    }

    #[test]
    fn unknown_presence_is_one_unavailable() {
        for d in [None, Some(doc(vec![]))] {
            let s = pidf_to_stanzas(d.as_ref(), FROM, TO, None);
            assert_eq!(s.len(), 1);
            assert_eq!(s[0].attr("type"), Some("unavailable"));
            assert_eq!(s[0].attr("from"), Some(FROM));
            assert_eq!(s[0].children().count(), 0);
            reparse(&s[0]);
        }
        for body in [&b""[..], b"  \r\n"] {
            let s = body_to_stanzas(body, FROM, TO, None).expect("empty body is fine");
            assert_eq!(s.len(), 1);
            assert_eq!(s[0].attr("type"), Some("unavailable"));
        }
        assert!(body_to_stanzas(b"<presence", FROM, TO, None).is_err());
        assert!(body_to_stanzas(&vector("bad-billion-laughs.xml"), FROM, TO, None).is_err());
    }

    #[test]
    fn notes_priority_and_language() {
        let mut t = open_tuple("ID-desk");
        t.contact = Some(Contact {
            uri: "sip:carol@pbx.example".into(),
            priority: Priority::from_thousandths(800),
        });
        t.notes = vec![
            Note {
                lang: Some("en".into()),
                text: "In a meeting".into(),
            },
            Note {
                lang: Some("fr".into()),
                text: "En réunion\u{1}".into(),
            },
        ];
        let mut closed = open_tuple("ID-mobile");
        closed.basic = Some(Basic::Closed);
        closed.show = Some(Show::Away);
        closed.contact = t.contact.clone();
        let mut d = doc(vec![t, closed]);
        d.notes = vec![Note::new("presentity note")];
        let s = pidf_to_stanzas(Some(&d), FROM, TO, Some(" en , fr"));
        assert_eq!(s.len(), 2);
        let desk = reparse(&s[0]);
        assert_eq!(desk.attr("from"), Some(&*format!("{FROM}/desk")));
        assert_eq!(stanza::lang(&desk), Some("en"));
        assert_eq!(desk.attr("type"), None);
        assert_eq!(child_text(&desk, "priority").as_deref(), Some("102"));
        let statuses: Vec<(Option<&str>, String)> = desk
            .children()
            .filter(|c| c.name() == "status")
            .map(|c| (stanza::lang(c), c.text()))
            .collect();
        // The Content-Language note needs no xml:lang of its own; the control character
        // becomes U+FFFD.
        assert_eq!(
            statuses,
            [
                (None, "In a meeting".to_string()),
                (Some("fr"), "En réunion\u{fffd}".to_string())
            ]
        );
        // Closed: unavailable, no show, no priority; notes fall back to the presentity's.
        let mobile = reparse(&s[1]);
        assert_eq!(mobile.attr("type"), Some("unavailable"));
        assert_eq!(child_text(&mobile, "show"), None);
        assert_eq!(child_text(&mobile, "priority"), None);
        assert_eq!(
            child_text(&mobile, "status").as_deref(),
            Some("presentity note")
        );
        // Element order: show, status, priority.
        let mut d2 = doc(vec![open_tuple("x")]);
        d2.tuples[0].show = Some(Show::Dnd);
        d2.tuples[0].notes = vec![Note::new("n")];
        d2.tuples[0].contact = Some(Contact {
            uri: String::new(),
            priority: Priority::from_thousandths(0),
        });
        let names: Vec<String> = pidf_to_stanzas(Some(&d2), FROM, TO, None)[0]
            .children()
            .map(|c| c.name().to_owned())
            .collect();
        assert_eq!(names, ["show", "status", "priority"]);
    }

    #[test]
    fn rfc4480_example_to_xmpp() {
        let s = body_to_stanzas(&vector("rfc4480-example.xml"), FROM, TO, None).expect("parses");
        assert_eq!(s.len(), 3);
        let froms: Vec<&str> = s.iter().filter_map(|e| e.attr("from")).collect();
        assert_eq!(
            froms,
            [
                &*format!("{FROM}/bs35r9"),
                &*format!("{FROM}/ty4658"),
                &*format!("{FROM}/eg92n8")
            ]
        );
        for e in &s {
            reparse(e);
            assert_eq!(e.attr("type"), None);
            // The person is away.
            assert_eq!(child_text(e, "show").as_deref(), Some("away"));
        }
        assert_eq!(child_text(&s[0], "priority").as_deref(), Some("102"));
        assert_eq!(child_text(&s[1], "priority").as_deref(), Some("127"));
        assert_eq!(
            child_text(&s[0], "status").as_deref(),
            Some("Don't Disturb Please!")
        );
        // No tuple notes: the person's note.
        assert_eq!(child_text(&s[1], "status").as_deref(), Some("Scoring 120"));
    }

    #[test]
    fn real_world_bodies_to_xmpp() {
        let s = body_to_stanzas(&vector("real-person-note.xml"), FROM, TO, None).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(child_text(&s[0], "show").as_deref(), Some("dnd"));
        assert_eq!(
            child_text(&s[0], "status").as_deref(),
            Some("Talk 07766088671")
        );
        assert_eq!(s[0].attr("from"), Some(&*format!("{FROM}/t6a5ed77e")));
        let s = body_to_stanzas(&vector("real-sipnetic-on-the-phone.xml"), FROM, TO, None).unwrap();
        assert_eq!(child_text(&s[0], "show").as_deref(), Some("dnd"));
        let s = body_to_stanzas(&vector("stox-rfc8048-closed.xml"), FROM, TO, None).unwrap();
        assert_eq!(s[0].attr("type"), Some("unavailable"));
        assert_eq!(s[0].attr("from"), Some(&*format!("{FROM}/balcony")));
    }

    #[test]
    fn xmpp_to_pidf_to_xmpp() {
        let p = el(
            "<presence xmlns='jabber:client' from='juliet@example.com/my phone' \
             xml:lang='en'><show>xa</show><status>Gone</status><priority>42</priority></presence>",
        );
        let t = stanza_to_tuple(&p, Some("sip:juliet@example.com")).unwrap();
        let body = pidf::write(&document("pres:juliet@example.com", vec![t.tuple]));
        let s = body_to_stanzas(
            body.as_bytes(),
            "juliet@example.com",
            TO,
            t.content_language.as_deref(),
        )
        .unwrap();
        assert_eq!(s.len(), 1);
        let back = reparse(&s[0]);
        assert_eq!(back.attr("from"), Some("juliet@example.com/my phone"));
        assert_eq!(stanza::lang(&back), Some("en"));
        assert_eq!(child_text(&back, "show").as_deref(), Some("xa"));
        assert_eq!(child_text(&back, "status").as_deref(), Some("Gone"));
        assert_eq!(child_text(&back, "priority").as_deref(), Some("42"));
        // Readers accept it in jabber:client too (tests and literal examples).
        assert!(back.is("presence", NS_STANZA) && !back.is("presence", NS_CLIENT));
    }

    proptest! {
        #[test]
        fn tuple_id_round_trips(resource in "[a-zA-Z0-9 ._:/@&'\"<>ü漢😀-]{0,20}") {
            let id = tuple_id(&resource);
            prop_assert!(is_ascii_ncname(&id), "{}", id);
            // Only resources XMPP accepts round-trip as themselves; the rest come back valid.
            let back = resource_for_tuple_id(&id);
            match valid_resource(&resource) {
                Some(r) if r == resource => prop_assert_eq!(back, resource),
                _ => prop_assert!(back.is_empty() || valid_resource(&back).is_some()),
            }
        }

        #[test]
        fn any_tuple_id_gives_a_usable_resource(id in "\\PC{0,40}|[\\x00-\\x7f]{0,40}") {
            let r = resource_for_tuple_id(&id);
            prop_assert!(r.is_empty() || valid_resource(&r).is_some(), "{:?} → {:?}", id, r);
            prop_assert!(r.len() <= 1023);
        }

        #[test]
        fn priority_round_trips(p in 0i8..=127) {
            prop_assert_eq!(priority_to_xmpp(priority_to_pidf(p).unwrap()), p);
        }
    }
}

//! Presence documents as the peers send them: PIDF (RFC 3863) with the data model
//! (RFC 4479), RPID activities (RFC 4480) and the RFC 8048 `<show xmlns='jabber:client'>`
//! extension inside `<status>`; and the `Subscription-State` header (RFC 6665 §8.2.3).
//!
//! The readers are lenient (for test assertions): unknown elements are skipped, a body that
//! is not XML gives `None`.

use std::fmt::Write as _;

use minidom::Element;

use crate::xmpp::{xml_escape, NS_CLIENT};

/// `urn:ietf:params:xml:ns:pidf`.
pub const NS_PIDF: &str = "urn:ietf:params:xml:ns:pidf";
/// `urn:ietf:params:xml:ns:pidf:data-model` (RFC 4479).
pub const NS_DATA_MODEL: &str = "urn:ietf:params:xml:ns:pidf:data-model";
/// `urn:ietf:params:xml:ns:pidf:rpid` (RFC 4480).
pub const NS_RPID: &str = "urn:ietf:params:xml:ns:pidf:rpid";

/// One presence state the SIPp scenarios send: PIDF `<basic>`, a `<note>` and one RPID
/// activity (an element name of RFC 4480 §3.2: `away`, `busy`, `on-the-phone`, `meal`,
/// `unknown`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceState {
    /// `open` or `closed`.
    pub basic: String,
    /// The `<note>` (of the tuple and of the person).
    pub note: String,
    /// The RPID activity element name.
    pub activity: String,
}

impl PresenceState {
    /// A state with these three values.
    pub fn new(basic: &str, note: &str, activity: &str) -> PresenceState {
        PresenceState {
            basic: basic.to_string(),
            note: note.to_string(),
            activity: activity.to_string(),
        }
    }

    /// `open`, `note`, activity `unknown`.
    pub fn open(note: &str) -> PresenceState {
        PresenceState::new("open", note, "unknown")
    }

    /// `closed`, `note`, activity `unknown`.
    pub fn closed(note: &str) -> PresenceState {
        PresenceState::new("closed", note, "unknown")
    }

    /// Sets the activity.
    pub fn activity(mut self, activity: &str) -> PresenceState {
        self.activity = activity.to_string();
        self
    }
}

/// A PIDF document as read back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pidf {
    /// `entity` of `<presence>`.
    pub entity: String,
    /// The `<tuple>`s, in order.
    pub tuples: Vec<Tuple>,
    /// RPID activity element names under any `<person>` (`dm:person`), in order.
    pub activities: Vec<String>,
    /// `<note>`s of the `<person>`s.
    pub person_notes: Vec<String>,
}

/// One PIDF `<tuple>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tuple {
    /// `id`.
    pub id: String,
    /// `<status><basic>`.
    pub basic: Option<String>,
    /// RFC 8048: `<status><show xmlns='jabber:client'>` (away, chat, dnd, xa).
    pub show: Option<String>,
    /// `<contact>`.
    pub contact: Option<String>,
    /// `<contact priority>`.
    pub priority: Option<String>,
    /// `<note>`s, in order.
    pub notes: Vec<String>,
}

impl Pidf {
    /// Parses a PIDF body (an XML declaration in front is allowed). `None` if it is not
    /// a `<presence xmlns='urn:ietf:params:xml:ns:pidf'>` document.
    pub fn parse(body: &str) -> Option<Pidf> {
        let mut text = body.trim_start_matches('\u{feff}').trim();
        if text.starts_with("<?xml") {
            text = &text[text.find("?>")? + 2..];
        }
        let root: Element = text.trim().parse().ok()?;
        if root.name() != "presence" || root.ns() != NS_PIDF {
            return None;
        }
        let mut pidf = Pidf {
            entity: root.attr("entity").unwrap_or_default().to_string(),
            ..Pidf::default()
        };
        for child in root.children() {
            match child.name() {
                "tuple" if child.ns() == NS_PIDF => pidf.tuples.push(Tuple::read(child)),
                "person" => {
                    for part in child.children() {
                        match part.name() {
                            "activities" if part.ns() == NS_RPID => pidf
                                .activities
                                .extend(part.children().map(|a| a.name().to_string())),
                            "note" => pidf.person_notes.push(part.text()),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Some(pidf)
    }

    /// The first tuple.
    pub fn tuple(&self) -> Option<&Tuple> {
        self.tuples.first()
    }

    /// The `<basic>` of the first tuple.
    pub fn basic(&self) -> Option<&str> {
        self.tuple()?.basic.as_deref()
    }

    /// The first `<note>` of the first tuple, else of a person.
    pub fn note(&self) -> Option<&str> {
        self.tuple()
            .and_then(|t| t.notes.first())
            .or_else(|| self.person_notes.first())
            .map(String::as_str)
    }

    /// A PIDF document with one tuple in the shape the SIPp scenarios send (with an RPID
    /// person carrying `state.activity`), for raw-socket tests.
    pub fn document(entity: &str, tuple: &str, state: &PresenceState) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
             <presence xmlns=\"{NS_PIDF}\" xmlns:dm=\"{NS_DATA_MODEL}\" \
             xmlns:rpid=\"{NS_RPID}\" entity=\"{e}\">\r\n\
             <tuple id=\"{t}\"><status><basic>{b}</basic></status>\
             <contact>{e}</contact><note>{n}</note></tuple>\r\n\
             <dm:person id=\"p1\"><rpid:activities><rpid:{a}/></rpid:activities>\
             <dm:note>{n}</dm:note></dm:person>\r\n</presence>\r\n",
            e = xml_escape(entity),
            t = xml_escape(tuple),
            b = xml_escape(&state.basic),
            n = xml_escape(&state.note),
            a = state.activity,
        );
        out
    }
}

impl Tuple {
    fn read(tuple: &Element) -> Tuple {
        let mut out = Tuple {
            id: tuple.attr("id").unwrap_or_default().to_string(),
            ..Tuple::default()
        };
        for child in tuple.children() {
            match child.name() {
                "status" => {
                    out.basic = child.get_child("basic", NS_PIDF).map(Element::text);
                    out.show = child.get_child("show", NS_CLIENT).map(Element::text);
                }
                "contact" => {
                    out.contact = Some(child.text());
                    out.priority = child.attr("priority").map(str::to_string);
                }
                "note" => out.notes.push(child.text()),
                _ => {}
            }
        }
        out
    }
}

/// The `Subscription-State` header (RFC 6665 §8.2.3), e.g.
/// `active;expires=60`, `terminated;reason=rejected`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionState {
    /// `active`, `pending` or `terminated` (lower-cased).
    pub state: String,
    /// `expires=`.
    pub expires: Option<u32>,
    /// `reason=` (lower-cased).
    pub reason: Option<String>,
    /// `retry-after=`.
    pub retry_after: Option<u32>,
}

impl SubscriptionState {
    /// Parses a header value; `None` if it has no state.
    pub fn parse(value: &str) -> Option<SubscriptionState> {
        let mut parts = value.split(';').map(str::trim);
        let state = parts.next()?.to_ascii_lowercase();
        if state.is_empty() {
            return None;
        }
        let mut out = SubscriptionState {
            state,
            expires: None,
            reason: None,
            retry_after: None,
        };
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "expires" => out.expires = value.parse().ok(),
                "reason" => out.reason = Some(value.to_ascii_lowercase()),
                "retry-after" => out.retry_after = value.parse().ok(),
                _ => {}
            }
        }
        Some(out)
    }

    /// Whether the state is `name` (`active`, `pending`, `terminated`).
    pub fn is(&self, name: &str) -> bool {
        self.state == name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What baresip 1.0's presence module publishes (modules/presence/publisher.c).
    const BARESIP: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\r\n\
<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"\r\n    \
xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\"\r\n    \
xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\"\r\n    \
entity=\"sip:b@127.0.0.1:5062\">\r\n  \
<dm:person id=\"p4159\"><rpid:activities/></dm:person>\r\n  \
<tuple id=\"t4109\">\r\n    <status>\r\n      <basic>open</basic>\r\n    </status>\r\n    \
<contact>sip:b@127.0.0.1:5062</contact>\r\n  </tuple>\r\n</presence>\r\n";

    #[test]
    fn reads_baresips_pidf() {
        let pidf = Pidf::parse(BARESIP).unwrap();
        assert_eq!(pidf.entity, "sip:b@127.0.0.1:5062");
        assert_eq!(pidf.basic(), Some("open"));
        let tuple = pidf.tuple().unwrap();
        assert_eq!(tuple.id, "t4109");
        assert_eq!(tuple.contact.as_deref(), Some("sip:b@127.0.0.1:5062"));
        assert!(pidf.activities.is_empty());
        assert_eq!(pidf.note(), None);
    }

    #[test]
    fn reads_rfc_8048_show_rpid_activities_and_notes() {
        let body = "<presence xmlns='urn:ietf:params:xml:ns:pidf' \
            xmlns:dm='urn:ietf:params:xml:ns:pidf:data-model' \
            xmlns:rpid='urn:ietf:params:xml:ns:pidf:rpid' entity='pres:alice@localhost'>\
            <tuple id='ID-phone'><status><basic>open</basic>\
            <show xmlns='jabber:client'>away</show></status>\
            <contact priority='0.5'>xmpp:alice@localhost/phone</contact>\
            <note xml:lang='en'>Lunch</note></tuple>\
            <dm:person id='p'><rpid:activities><rpid:meal/></rpid:activities>\
            <dm:note>Lunch</dm:note></dm:person></presence>";
        let pidf = Pidf::parse(body).unwrap();
        let tuple = pidf.tuple().unwrap();
        assert_eq!(tuple.id, "ID-phone");
        assert_eq!(tuple.show.as_deref(), Some("away"));
        assert_eq!(tuple.priority.as_deref(), Some("0.5"));
        assert_eq!(pidf.note(), Some("Lunch"));
        assert_eq!(pidf.activities, vec!["meal".to_string()]);
        assert_eq!(pidf.person_notes, vec!["Lunch".to_string()]);
    }

    #[test]
    fn document_round_trips() {
        let state = PresenceState::new("closed", "back <soon> & co", "on-the-phone");
        let body = Pidf::document("sip:c@127.0.0.1:5070", "phone", &state);
        let pidf = Pidf::parse(&body).unwrap();
        assert_eq!(pidf.basic(), Some("closed"));
        assert_eq!(pidf.note(), Some("back <soon> & co"));
        assert_eq!(pidf.activities, vec!["on-the-phone".to_string()]);
        assert_eq!(pidf.tuple().unwrap().id, "phone");
    }

    #[test]
    fn not_pidf_is_none() {
        assert_eq!(Pidf::parse(""), None);
        assert_eq!(Pidf::parse("hello"), None);
        assert_eq!(Pidf::parse("<presence xmlns='jabber:client'/>"), None);
    }

    #[test]
    fn subscription_state_values() {
        let s = SubscriptionState::parse("active;expires=60").unwrap();
        assert!(s.is("active"));
        assert_eq!(s.expires, Some(60));
        let s = SubscriptionState::parse("Terminated ; reason=Rejected").unwrap();
        assert!(s.is("terminated"));
        assert_eq!(s.reason.as_deref(), Some("rejected"));
        let s = SubscriptionState::parse("terminated;reason=probation;retry-after=30").unwrap();
        assert_eq!(s.retry_after, Some(30));
        assert_eq!(SubscriptionState::parse(""), None);
    }
}

//! RFC 3863: `application/pidf+xml`, the Presence Information Data Format, with the parts of
//! RFC 4479 (data model: `dm:person`) and RFC 4480 (RPID: `rpid:activities`) that stox maps,
//! and the `<show xmlns='jabber:client'>` that RFC 8048 recommends embedding in `<status>`.
//!
//! ```xml
//! <presence xmlns="urn:ietf:params:xml:ns:pidf"
//!           xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
//!           xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
//!           entity="pres:juliet@example.com">
//!   <tuple id="ID-balcony">
//!     <status>
//!       <basic>open</basic>
//!       <show xmlns="jabber:client">away</show>
//!     </status>
//!     <contact priority="0.8">xmpp:juliet@example.com/balcony</contact>
//!     <note xml:lang="en">Out for lunch</note>
//!     <timestamp>2016-12-01T12:00:00Z</timestamp>
//!   </tuple>
//!   <note>presentity-level note</note>
//!   <dm:person id="p1">
//!     <rpid:activities><rpid:meal/></rpid:activities>
//!     <dm:note>person-level note</dm:note>
//!   </dm:person>
//! </presence>
//! ```
//!
//! Reading is lenient where peers differ and strict where a hostile body could hurt:
//!
//! * Elements match by namespace, any prefix. Unknown elements and namespaces (the schemas'
//!   `xs:any`: `im:im`, `sc:servcaps`, `dm:device`, `rpid:mood`, …) are skipped. A root
//!   `presence` with no namespace at all (some old UAs) is read as PIDF.
//! * RPID activities are read in `dm:person` (RFC 4480) and, as older UAs put them, in a
//!   tuple's `<status>` or directly in the tuple.
//! * A priority that is not a `qvalue` in 0..=1 is ignored rather than failing the body;
//!   `0.500000` is read as 0.5.
//! * Bodies over [`MAX_BODY`] bytes, nesting deeper than [`MAX_DEPTH`], more than
//!   [`MAX_TUPLES`] tuples, a DOCTYPE with an internal subset (where `<!ENTITY` declarations
//!   live) and any entity reference other than the five XML ones are refused. Nothing is ever
//!   expanded or fetched; an external DOCTYPE without an internal subset is ignored.
//! * Text is trimmed; empty notes, timestamps and `<rpid:other>` are dropped.
//!
//! [`write`] produces what [`parse`] reads back unchanged (`write` → `parse` is the identity,
//! checked by a property test), in schema order, XML-escaped.

use std::fmt;

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::xml::escape_text;

/// RFC 3863 XML namespace.
pub const NS: &str = "urn:ietf:params:xml:ns:pidf";
/// RFC 4479 data model namespace (`dm:person`, `dm:note`, `dm:timestamp`).
pub const NS_DM: &str = "urn:ietf:params:xml:ns:pidf:data-model";
/// RFC 4480 RPID namespace (`rpid:activities`).
pub const NS_RPID: &str = "urn:ietf:params:xml:ns:pidf:rpid";
/// The namespace of the `<show/>` RFC 8048 embeds in `<status>`.
pub const NS_JABBER_CLIENT: &str = "jabber:client";
/// `xml:lang`'s namespace.
const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// Largest body accepted, in bytes. A PIDF document with a tuple per device is a few KiB.
pub const MAX_BODY: usize = 64 * 1024;
/// Deepest element nesting accepted. The RFC 4480 example needs 5.
pub const MAX_DEPTH: usize = 32;
/// Most tuples accepted in one document (each becomes an XMPP stanza).
pub const MAX_TUPLES: usize = 64;

/// Why a PIDF body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PidfError {
    /// The body is larger than [`MAX_BODY`].
    #[error("PIDF body of {size} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// Size of the body.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The document is not well-formed UTF-8 XML (quick-xml's reason), nests deeper than
    /// [`MAX_DEPTH`], or references an entity other than the XML predefined ones.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The DOCTYPE has an internal subset: entity declarations are never processed.
    #[error("DOCTYPE with an internal subset (entity declarations) refused")]
    Dtd,
    /// The root element is not `{urn:ietf:params:xml:ns:pidf}presence`.
    #[error("wrong root element: expected {{urn:ietf:params:xml:ns:pidf}}presence, found {0}")]
    WrongRoot(String),
    /// More than [`MAX_TUPLES`] tuples.
    #[error("more than {0} tuples")]
    TooManyTuples(usize),
}

/// RFC 3863 §4.1.4 `<basic>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Basic {
    /// `open`: the service can receive communication.
    Open,
    /// `closed`: it cannot.
    Closed,
}

/// `<basic>` values (RFC 3863 §4.1.4): the whole value space.
pub const BASIC_TABLE: &[(&str, Basic)] = &[("open", Basic::Open), ("closed", Basic::Closed)];

impl Basic {
    /// The `<basic>` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// XMPP `<show/>` values (RFC 6121 §4.7.2.1), as RFC 8048 embeds them in `<status>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Show {
    /// `away`.
    Away,
    /// `chat`: free for chat.
    Chat,
    /// `dnd`: busy (RFC 8048: "do not disturb" means busy, not blocking).
    Dnd,
    /// `xa`: extended away.
    Xa,
}

/// `<show/>` values (RFC 6121 §4.7.2.1): the whole value space.
pub const SHOW_TABLE: &[(&str, Show)] = &[
    ("away", Show::Away),
    ("chat", Show::Chat),
    ("dnd", Show::Dnd),
    ("xa", Show::Xa),
];

impl Show {
    /// The `<show/>` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Away => "away",
            Self::Chat => "chat",
            Self::Dnd => "dnd",
            Self::Xa => "xa",
        }
    }

    /// The value for a `<show/>` text (trimmed, exact case as RFC 6121 defines it).
    pub fn from_name(s: &str) -> Option<Self> {
        let s = s.trim();
        SHOW_TABLE.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
    }
}

/// RFC 4480 §3.2 activities (`<rpid:activities>` children).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Activity {
    /// `appointment`.
    Appointment,
    /// `away`.
    Away,
    /// `breakfast`.
    Breakfast,
    /// `busy`.
    Busy,
    /// `dinner`.
    Dinner,
    /// `holiday`.
    Holiday,
    /// `in-transit`.
    InTransit,
    /// `looking-for-work`.
    LookingForWork,
    /// `lunch`.
    Lunch,
    /// `meal`.
    Meal,
    /// `meeting`.
    Meeting,
    /// `on-the-phone`.
    OnThePhone,
    /// `performance`.
    Performance,
    /// `permanent-absence`.
    PermanentAbsence,
    /// `playing`.
    Playing,
    /// `presentation`.
    Presentation,
    /// `shopping`.
    Shopping,
    /// `sleeping`.
    Sleeping,
    /// `spectator`.
    Spectator,
    /// `steering`.
    Steering,
    /// `travel`.
    Travel,
    /// `tv`.
    Tv,
    /// `unknown`.
    Unknown,
    /// `vacation`.
    Vacation,
    /// `working`.
    Working,
    /// `worship`.
    Worship,
    /// `<rpid:other>text</rpid:other>`, or an RPID-namespace element this table does not know
    /// (its local name). Written back as `<rpid:other>`.
    Other(String),
}

/// Activity element names (RFC 4480 §3.2 and its schema), one row per named activity.
pub const ACTIVITY_TABLE: &[(&str, Activity)] = &[
    ("appointment", Activity::Appointment),
    ("away", Activity::Away),
    ("breakfast", Activity::Breakfast),
    ("busy", Activity::Busy),
    ("dinner", Activity::Dinner),
    ("holiday", Activity::Holiday),
    ("in-transit", Activity::InTransit),
    ("looking-for-work", Activity::LookingForWork),
    ("lunch", Activity::Lunch),
    ("meal", Activity::Meal),
    ("meeting", Activity::Meeting),
    ("on-the-phone", Activity::OnThePhone),
    ("performance", Activity::Performance),
    ("permanent-absence", Activity::PermanentAbsence),
    ("playing", Activity::Playing),
    ("presentation", Activity::Presentation),
    ("shopping", Activity::Shopping),
    ("sleeping", Activity::Sleeping),
    ("spectator", Activity::Spectator),
    ("steering", Activity::Steering),
    ("travel", Activity::Travel),
    ("tv", Activity::Tv),
    ("unknown", Activity::Unknown),
    ("vacation", Activity::Vacation),
    ("working", Activity::Working),
    ("worship", Activity::Worship),
];

impl Activity {
    /// The element name for a named activity; `None` for [`Activity::Other`].
    pub fn name(&self) -> Option<&'static str> {
        ACTIVITY_TABLE
            .iter()
            .find(|(_, a)| a == self)
            .map(|(n, _)| *n)
    }

    /// The activity an RPID element local name stands for (unknown names → `Other(name)`).
    pub fn from_name(name: &str) -> Self {
        ACTIVITY_TABLE
            .iter()
            .find(|(n, _)| *n == name)
            .map_or_else(|| Self::Other(name.to_owned()), |(_, a)| a.clone())
    }
}

/// A `qvalue` (RFC 3863 schema: `0(.[0-9]{0,3})?` or `1(.0{0,3})?`), kept exactly, in
/// thousandths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u16);

impl Priority {
    /// The highest priority, 1.
    pub const MAX: Priority = Priority(1000);

    /// A priority of `t`/1000; `None` above 1000.
    pub fn from_thousandths(t: u16) -> Option<Self> {
        (t <= 1000).then_some(Self(t))
    }

    /// The value in thousandths (0..=1000).
    pub fn thousandths(self) -> u16 {
        self.0
    }

    /// The value as a float in 0.0..=1.0.
    pub fn as_f32(self) -> f32 {
        f32::from(self.0) / 1000.0
    }

    /// Rounds `v` to thousandths; `None` outside 0.0..=1.0 or NaN.
    pub fn from_f32(v: f32) -> Option<Self> {
        if !(0.0..=1.0).contains(&v) {
            return None;
        }
        // In range, so the product is within 0..=1000.
        Some(Self((v * 1000.0).round() as u16))
    }

    /// Reads a decimal in 0..=1 (`0.8`, `1.0`, `.5`, `0.500000`), rounded to thousandths.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let int = int.trim_start_matches('0');
        let int: u32 = match int.len() {
            0 => 0,
            1 => u32::from(int.as_bytes()[0] - b'0'),
            _ => return None,
        };
        // Above 1, however little, is not a qvalue.
        if int == 1 && frac.bytes().any(|b| b != b'0') {
            return None;
        }
        let digit = |i: usize| frac.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
        let mut t = int * 1000 + digit(0) * 100 + digit(1) * 10 + digit(2);
        if digit(3) >= 5 {
            t += 1;
        }
        u16::try_from(t).ok().and_then(Self::from_thousandths)
    }
}

impl fmt::Display for Priority {
    /// Shortest schema-valid `qvalue`: `0`, `1`, `0.8`, `0.007`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("0"),
            1000 => f.write_str("1"),
            t => {
                let digits = format!("{t:03}");
                write!(f, "0.{}", digits.trim_end_matches('0'))
            }
        }
    }
}

/// `<note>` (RFC 3863 §4.1.6, RFC 4479 `dm:note`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// `xml:lang` (the note's own or inherited from an ancestor).
    pub lang: Option<String>,
    /// The text, trimmed.
    pub text: String,
}

impl Note {
    /// A note without language.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            lang: None,
            text: text.into(),
        }
    }
}

/// `<contact>` (RFC 3863 §4.1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The contact address (a URI), trimmed.
    pub uri: String,
    /// The `priority` attribute.
    pub priority: Option<Priority>,
}

/// `<tuple>` (RFC 3863 §4.1.2): one service of the presentity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tuple {
    /// The `id` attribute (an `xs:ID`), trimmed.
    pub id: String,
    /// `<status><basic>`; absent when the status does not say.
    pub basic: Option<Basic>,
    /// `<status><show xmlns='jabber:client'>` (RFC 8048).
    pub show: Option<Show>,
    /// RPID activities found in this tuple (`<status>` or the tuple itself; older UAs).
    pub activities: Vec<Activity>,
    /// `<contact>`.
    pub contact: Option<Contact>,
    /// `<note>`s.
    pub notes: Vec<Note>,
    /// `<timestamp>` (an `xs:dateTime`, as written).
    pub timestamp: Option<String>,
}

/// `dm:person` (RFC 4479 §3.2, with RFC 4480 activities).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Person {
    /// The `id` attribute.
    pub id: String,
    /// `rpid:activities` children, in document order.
    pub activities: Vec<Activity>,
    /// `dm:note`s.
    pub notes: Vec<Note>,
    /// `dm:timestamp`.
    pub timestamp: Option<String>,
}

/// A PIDF document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Presence {
    /// The `entity` attribute: the presentity's URI (`pres:`, `sip:`).
    pub entity: String,
    /// `<tuple>`s, in document order.
    pub tuples: Vec<Tuple>,
    /// Presentity-level `<note>`s.
    pub notes: Vec<Note>,
    /// The first `dm:person`.
    pub person: Option<Person>,
}

/// One element, namespace-resolved, with its attributes and effective `xml:lang`.
#[derive(Debug, Default)]
struct Node {
    ns: Option<String>,
    local: String,
    /// (namespace, local name, value).
    attrs: Vec<(Option<String>, String, String)>,
    /// Own or inherited `xml:lang`; `Some("")` when reset.
    lang: Option<String>,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn is(&self, ns: &str, local: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.local == local
    }

    /// An unqualified attribute.
    fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(ns, l, _)| ns.is_none() && l == local)
            .map(|(_, _, v)| v.as_str())
    }

    fn expanded_name(&self) -> String {
        match &self.ns {
            Some(ns) => format!("{{{ns}}}{}", self.local),
            None => self.local.clone(),
        }
    }

    /// Puts every unqualified element in `ns` (a root `presence` with no namespace).
    fn adopt(&mut self, ns: &str) {
        if self.ns.is_none() {
            self.ns = Some(ns.to_owned());
        }
        for c in &mut self.children {
            c.adopt(ns);
        }
    }
}

/// Drops characters XML 1.0 cannot carry (C0 controls other than TAB, LF, CR; U+FFFE,
/// U+FFFF) that a character reference or a sloppy peer let through, as [`write`] would:
/// what `parse` returns, `write` writes unchanged.
fn xml_chars(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| {
        ((c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
            || c == '\u{FFFE}'
            || c == '\u{FFFF}'
    };
    if s.chars().any(bad) {
        s.chars().filter(|&c| !bad(c)).collect::<String>().into()
    } else {
        s.into()
    }
}

fn xml_err(e: impl fmt::Display) -> PidfError {
    PidfError::Xml(e.to_string())
}

fn resolve_ref(r: &BytesRef<'_>) -> Result<String, PidfError> {
    if let Some(c) = r.resolve_char_ref().map_err(xml_err)? {
        return Ok(c.to_string());
    }
    let name = r.decode().map_err(xml_err)?;
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_owned)
        .ok_or_else(|| PidfError::Xml(format!("unknown entity &{name};")))
}

fn ns_of(r: ResolveResult<'_>) -> Result<Option<String>, PidfError> {
    match r {
        ResolveResult::Bound(n) => Ok(Some(String::from_utf8_lossy(n.as_ref()).into_owned())),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(p) => Err(PidfError::Xml(format!(
            "undeclared namespace prefix {:?}",
            String::from_utf8_lossy(&p)
        ))),
    }
}

/// Builds a node for a start tag: resolved attributes and the effective `xml:lang`.
fn node_of(
    reader: &NsReader<&[u8]>,
    ns: Option<String>,
    start: &BytesStart<'_>,
    inherited_lang: Option<&str>,
) -> Result<Node, PidfError> {
    let mut node = Node {
        ns,
        local: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
        lang: inherited_lang.map(str::to_owned),
        ..Node::default()
    };
    for attr in start.attributes() {
        let attr = attr.map_err(xml_err)?;
        // Namespace declarations are not attributes of the data model.
        if attr.key.as_namespace_binding().is_some() {
            continue;
        }
        let (ans, local) = reader.resolve_attribute(attr.key);
        let ans = ns_of(ans)?;
        let local = String::from_utf8_lossy(local.as_ref()).into_owned();
        let value = attr
            .decode_and_unescape_value(reader.decoder())
            .map_err(xml_err)?;
        let value = xml_chars(&value).into_owned();
        if ans.as_deref() == Some(NS_XML) && local == "lang" {
            node.lang = Some(value.trim().to_owned());
        }
        node.attrs.push((ans, local, value));
    }
    Ok(node)
}

/// Parses the document into its root element, enforcing the limits.
fn parse_tree(bytes: &[u8]) -> Result<Node, PidfError> {
    if bytes.len() > MAX_BODY {
        return Err(PidfError::TooLarge {
            size: bytes.len(),
            limit: MAX_BODY,
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if std::str::from_utf8(bytes).is_err() {
        return Err(PidfError::Xml("not UTF-8".into()));
    }
    let mut reader = NsReader::from_reader(bytes);
    reader.config_mut().check_end_names = true;

    let mut stack: Vec<Node> = Vec::new();
    let mut tuples = 0usize;
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(xml_err)?;
        let ns = ns_of(ns)?;
        match event {
            Event::Start(_) | Event::Empty(_) if stack.len() >= MAX_DEPTH => {
                return Err(PidfError::Xml(format!("nesting deeper than {MAX_DEPTH}")));
            }
            Event::Start(ref start) | Event::Empty(ref start) => {
                let lang = stack.last().and_then(|p| p.lang.as_deref());
                let node = node_of(&reader, ns, start, lang)?;
                match stack.len() {
                    0 if !(node.is(NS, "presence")
                        || (node.ns.is_none() && node.local == "presence")) =>
                    {
                        return Err(PidfError::WrongRoot(node.expanded_name()));
                    }
                    1 if node.local == "tuple" && node.ns.as_deref().is_none_or(|n| n == NS) => {
                        tuples += 1;
                        if tuples > MAX_TUPLES {
                            return Err(PidfError::TooManyTuples(MAX_TUPLES));
                        }
                    }
                    _ => {}
                }
                if matches!(event, Event::Start(_)) {
                    stack.push(node);
                } else {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(node),
                        None => return Ok(node),
                    }
                }
            }
            Event::End(_) => {
                let Some(node) = stack.pop() else {
                    return Err(PidfError::Xml("end tag without start tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::Text(t) => {
                let text = t.xml10_content().map_err(xml_err)?;
                match stack.last_mut() {
                    Some(n) => n.text.push_str(&xml_chars(&text)),
                    None if text.trim().is_empty() => {}
                    None => return Err(PidfError::Xml("text outside the root element".into())),
                }
            }
            Event::CData(t) => {
                let text = t.decode().map_err(xml_err)?;
                match stack.last_mut() {
                    Some(n) => n.text.push_str(&xml_chars(&text)),
                    None => return Err(PidfError::Xml("CDATA outside the root element".into())),
                }
            }
            Event::GeneralRef(r) => {
                let text = resolve_ref(&r)?;
                match stack.last_mut() {
                    Some(n) => n.text.push_str(&xml_chars(&text)),
                    None => {
                        return Err(PidfError::Xml("reference outside the root element".into()))
                    }
                }
            }
            Event::DocType(d) => {
                // An internal subset is where <!ENTITY> declarations live: refuse it whole.
                if d.as_ref().contains(&b'[') {
                    return Err(PidfError::Dtd);
                }
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => {
                return Err(PidfError::Xml(if stack.is_empty() {
                    "no root element".into()
                } else {
                    "document ends inside an element".into()
                }))
            }
        }
    }
}

fn trimmed(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn note_of(n: &Node) -> Option<Note> {
    Some(Note {
        lang: n.lang.as_deref().and_then(trimmed),
        text: trimmed(&n.text)?,
    })
}

fn activities_of(n: &Node, out: &mut Vec<Activity>) {
    for c in n
        .children
        .iter()
        .filter(|c| c.ns.as_deref() == Some(NS_RPID))
    {
        match c.local.as_str() {
            // RFC 4480: <activities> may carry notes of its own; they describe, not name.
            "note" => {}
            "other" => out.extend(trimmed(&c.text).map(Activity::Other)),
            // quick-xml is lax about names (`<rpid:/>`, control characters): keep what
            // `write` can carry, in `<rpid:other>`.
            name => out.extend(trimmed(&xml_chars(name)).map(|n| Activity::from_name(&n))),
        }
    }
}

fn tuple_of(n: &Node) -> Tuple {
    let mut t = Tuple {
        id: n.attr("id").unwrap_or_default().trim().to_owned(),
        ..Tuple::default()
    };
    for c in &n.children {
        match (c.ns.as_deref(), c.local.as_str()) {
            (Some(NS), "status") => {
                for s in &c.children {
                    match (s.ns.as_deref(), s.local.as_str()) {
                        (Some(NS), "basic") if t.basic.is_none() => {
                            let v = s.text.trim();
                            t.basic = BASIC_TABLE
                                .iter()
                                .find(|(name, _)| name.eq_ignore_ascii_case(v))
                                .map(|(_, b)| *b);
                        }
                        (Some(NS_JABBER_CLIENT), "show") if t.show.is_none() => {
                            t.show = Show::from_name(&s.text);
                        }
                        (Some(NS_RPID), "activities") => activities_of(s, &mut t.activities),
                        _ => {}
                    }
                }
            }
            (Some(NS_RPID), "activities") => activities_of(c, &mut t.activities),
            (Some(NS), "contact") if t.contact.is_none() => {
                t.contact = Some(Contact {
                    uri: c.text.trim().to_owned(),
                    priority: c.attr("priority").and_then(Priority::parse),
                });
            }
            (Some(NS), "note") => t.notes.extend(note_of(c)),
            (Some(NS), "timestamp") if t.timestamp.is_none() => t.timestamp = trimmed(&c.text),
            _ => {}
        }
    }
    t
}

fn person_of(n: &Node) -> Person {
    let mut p = Person {
        id: n.attr("id").unwrap_or_default().trim().to_owned(),
        ..Person::default()
    };
    for c in &n.children {
        match (c.ns.as_deref(), c.local.as_str()) {
            (Some(NS_RPID), "activities") => activities_of(c, &mut p.activities),
            (Some(NS_DM), "note") => p.notes.extend(note_of(c)),
            (Some(NS_DM), "timestamp") if p.timestamp.is_none() => p.timestamp = trimmed(&c.text),
            _ => {}
        }
    }
    p
}

/// Parses an `application/pidf+xml` body.
///
/// Errors: [`PidfError::TooLarge`], [`PidfError::Xml`] (not well-formed UTF-8 XML, too deep, an
/// unknown entity), [`PidfError::Dtd`], [`PidfError::WrongRoot`], [`PidfError::TooManyTuples`].
/// Unknown elements, attributes and namespaces are ignored.
pub fn parse(bytes: &[u8]) -> Result<Presence, PidfError> {
    let mut root = parse_tree(bytes)?;
    if root.ns.is_none() {
        root.adopt(NS);
    }
    let mut presence = Presence {
        entity: root.attr("entity").unwrap_or_default().trim().to_owned(),
        ..Presence::default()
    };
    for c in &root.children {
        match (c.ns.as_deref(), c.local.as_str()) {
            (Some(NS), "tuple") => presence.tuples.push(tuple_of(c)),
            (Some(NS), "note") => presence.notes.extend(note_of(c)),
            (Some(NS_DM), "person") if presence.person.is_none() => {
                presence.person = Some(person_of(c));
            }
            _ => {}
        }
    }
    Ok(presence)
}

/// Escapes an attribute value: as text, plus TAB and LF as character references so that
/// attribute-value normalization does not turn them into spaces.
fn escape_attr(s: &str) -> String {
    escape_text(s).replace('\t', "&#9;").replace('\n', "&#10;")
}

fn write_notes(out: &mut String, indent: &str, element: &str, notes: &[Note]) {
    for n in notes {
        out.push_str(indent);
        out.push('<');
        out.push_str(element);
        if let Some(lang) = &n.lang {
            out.push_str(&format!(" xml:lang=\"{}\"", escape_attr(lang)));
        }
        out.push_str(&format!(">{}</{element}>\n", escape_text(&n.text)));
    }
}

fn write_activities(out: &mut String, indent: &str, activities: &[Activity]) {
    if activities.is_empty() {
        return;
    }
    out.push_str(indent);
    out.push_str("<rpid:activities>");
    for a in activities {
        match a {
            Activity::Other(text) => {
                out.push_str(&format!("<rpid:other>{}</rpid:other>", escape_text(text)));
            }
            named => {
                // Every variant but Other has a row (test `activity_table_is_complete`).
                let name = named.name().unwrap_or("unknown");
                out.push_str(&format!("<rpid:{name}/>"));
            }
        }
    }
    out.push_str("</rpid:activities>\n");
}

/// Serialises a PIDF document (RFC 3863 schema order; RFC 4479/4480 namespaces declared when
/// used). Text is XML-escaped; characters XML cannot carry are dropped.
pub fn write(p: &Presence) -> String {
    let uses_rpid = p.tuples.iter().any(|t| !t.activities.is_empty())
        || p.person.as_ref().is_some_and(|x| !x.activities.is_empty());
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!("<presence xmlns=\"{NS}\""));
    if p.person.is_some() {
        out.push_str(&format!(" xmlns:dm=\"{NS_DM}\""));
    }
    if uses_rpid {
        out.push_str(&format!(" xmlns:rpid=\"{NS_RPID}\""));
    }
    out.push_str(&format!(" entity=\"{}\">\n", escape_attr(&p.entity)));
    for t in &p.tuples {
        out.push_str(&format!("  <tuple id=\"{}\">\n", escape_attr(&t.id)));
        out.push_str("    <status>\n");
        if let Some(b) = t.basic {
            out.push_str(&format!("      <basic>{}</basic>\n", b.as_str()));
        }
        write_activities(&mut out, "      ", &t.activities);
        if let Some(s) = t.show {
            out.push_str(&format!(
                "      <show xmlns=\"{NS_JABBER_CLIENT}\">{}</show>\n",
                s.as_str()
            ));
        }
        out.push_str("    </status>\n");
        if let Some(c) = &t.contact {
            out.push_str("    <contact");
            if let Some(pr) = c.priority {
                out.push_str(&format!(" priority=\"{pr}\""));
            }
            out.push_str(&format!(">{}</contact>\n", escape_text(&c.uri)));
        }
        write_notes(&mut out, "    ", "note", &t.notes);
        if let Some(ts) = &t.timestamp {
            out.push_str(&format!("    <timestamp>{}</timestamp>\n", escape_text(ts)));
        }
        out.push_str("  </tuple>\n");
    }
    write_notes(&mut out, "  ", "note", &p.notes);
    if let Some(person) = &p.person {
        out.push_str(&format!(
            "  <dm:person id=\"{}\">\n",
            escape_attr(&person.id)
        ));
        write_activities(&mut out, "    ", &person.activities);
        write_notes(&mut out, "    ", "dm:note", &person.notes);
        if let Some(ts) = &person.timestamp {
            out.push_str(&format!(
                "    <dm:timestamp>{}</dm:timestamp>\n",
                escape_text(ts)
            ));
        }
        out.push_str("  </dm:person>\n");
    }
    out.push_str("</presence>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vector(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/vectors/pidf/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn note(lang: Option<&str>, text: &str) -> Note {
        Note {
            lang: lang.map(str::to_owned),
            text: text.into(),
        }
    }

    fn contact(uri: &str, thousandths: u16) -> Option<Contact> {
        Some(Contact {
            uri: uri.into(),
            priority: Priority::from_thousandths(thousandths),
        })
    }

    fn rfc3863_basic() -> Presence {
        Presence {
            entity: "pres:someone@example.com".into(),
            tuples: vec![Tuple {
                id: "sg89ae".into(),
                basic: Some(Basic::Open),
                contact: contact("tel:+09012345678", 800),
                ..Tuple::default()
            }],
            ..Presence::default()
        }
    }

    #[test]
    fn rfc3863_basic_any_prefix() {
        assert_eq!(
            parse(&vector("rfc3863-basic.xml")).unwrap(),
            rfc3863_basic()
        );
        assert_eq!(
            parse(&vector("rfc3863-default-ns.xml")).unwrap(),
            rfc3863_basic()
        );
    }

    #[test]
    fn rfc3863_status_extensions_notes_and_timestamp() {
        let p = parse(&vector("rfc3863-status-extension.xml")).unwrap();
        assert_eq!(
            p,
            Presence {
                entity: "pres:someone@example.com".into(),
                tuples: vec![
                    Tuple {
                        id: "bs35r9".into(),
                        basic: Some(Basic::Open),
                        contact: contact("im:someone@mobilecarrier.net", 800),
                        notes: vec![
                            note(Some("en"), "Don't Disturb Please!"),
                            note(Some("fr"), "Ne derangez pas, s'il vous plait"),
                        ],
                        timestamp: Some("2001-10-27T16:49:29Z".into()),
                        ..Tuple::default()
                    },
                    Tuple {
                        id: "eg92n8".into(),
                        basic: Some(Basic::Open),
                        contact: contact("mailto:someone@example.com", 1000),
                        ..Tuple::default()
                    },
                ],
                notes: vec![note(None, "I'll be in Tokyo next week")],
                person: None,
            }
        );
    }

    #[test]
    fn rfc3863_must_understand_extensions_are_skipped() {
        let p = parse(&vector("rfc3863-must-understand.xml")).unwrap();
        assert_eq!(p.tuples.len(), 1);
        assert_eq!(p.tuples[0].id, "tj25ds");
        assert_eq!(p.tuples[0].basic, Some(Basic::Open));
        assert_eq!(p.tuples[0].contact, contact("tel:+09012345678", 725));
        assert!(p.notes.is_empty());
    }

    #[test]
    fn rfc4480_example() {
        let p = parse(&vector("rfc4480-example.xml")).unwrap();
        assert_eq!(p.entity, "pres:someone@example.com");
        let ids: Vec<&str> = p.tuples.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["bs35r9", "ty4658", "eg92n8"]);
        assert!(p.tuples.iter().all(|t| t.basic == Some(Basic::Open)));
        assert_eq!(
            p.tuples[0].contact,
            contact("im:someone@mobile.example.net", 800)
        );
        assert_eq!(p.tuples[0].notes.len(), 2);
        assert_eq!(
            p.tuples[0].timestamp.as_deref(),
            Some("2005-10-27T16:49:29Z")
        );
        assert_eq!(
            p.tuples[1].contact,
            contact("mailto:secretary@example.com", 1000)
        );
        // RPID elements outside <activities> (relationship, class, service-class, …) are
        // not activities.
        assert!(p.tuples.iter().all(|t| t.activities.is_empty()));
        assert_eq!(p.notes, vec![note(None, "I'll be in Tokyo next week")]);
        // dm:device's note is not the person's; mood's <rpid:other> is not an activity;
        // the activities' own <rpid:note> is not one either.
        assert_eq!(
            p.person,
            Some(Person {
                id: "p1".into(),
                activities: vec![Activity::Away],
                notes: vec![note(None, "Scoring 120")],
                timestamp: Some("2005-05-30T16:09:44+05:00".into()),
            })
        );
    }

    #[test]
    fn stox_rfc8048_vectors() {
        let away = parse(&vector("stox-rfc8048-away.xml")).unwrap();
        assert_eq!(
            away,
            Presence {
                entity: "pres:juliet@example.com".into(),
                tuples: vec![Tuple {
                    id: "ID-balcony".into(),
                    basic: Some(Basic::Open),
                    show: Some(Show::Away),
                    contact: contact("xmpp:juliet@example.com/balcony", 7),
                    notes: vec![note(Some("en"), "Sleeping")],
                    ..Tuple::default()
                }],
                ..Presence::default()
            }
        );
        let closed = parse(&vector("stox-rfc8048-closed.xml")).unwrap();
        assert_eq!(closed.tuples[0].basic, Some(Basic::Closed));
        assert_eq!(closed.tuples[0].show, None);
    }

    #[test]
    fn real_world_bodies() {
        let s = parse(&vector("real-sipnetic-on-the-phone.xml")).unwrap();
        assert_eq!(s.tuples[0].activities, vec![Activity::OnThePhone]);
        assert_eq!(
            s.person.as_ref().map(|p| p.activities.clone()),
            Some(vec![Activity::OnThePhone])
        );
        assert_eq!(
            s.tuples[0].timestamp.as_deref(),
            Some("2026-03-16T08:06:06Z")
        );

        let z = parse(&vector("real-person-note.xml")).unwrap();
        assert_eq!(z.entity, "sip:1000@bling.babblevoice.com");
        assert_eq!(z.tuples[0].basic, Some(Basic::Open));
        let person = z.person.unwrap();
        assert_eq!(person.activities, vec![Activity::OnThePhone]);
        assert_eq!(person.notes, vec![note(None, "Talk 07766088671")]);

        // No namespace, external DOCTYPE (ignored, never fetched), contact before status.
        let pals = parse(&vector("real-external-doctype.xml")).unwrap();
        assert_eq!(pals.entity, "sip:yivi@pals.internet2.edu");
        assert_eq!(pals.tuples[0].basic, Some(Basic::Open));
        assert_eq!(pals.tuples[0].contact, contact("sip:conny@garbo", 500));
    }

    #[test]
    fn refuses_bad_vectors() {
        assert_eq!(
            parse(&vector("bad-billion-laughs.xml")),
            Err(PidfError::Dtd)
        );
        assert_eq!(
            parse(&vector("bad-external-entity.xml")),
            Err(PidfError::Dtd)
        );
        assert!(matches!(
            parse(&vector("bad-undeclared-entity.xml")),
            Err(PidfError::Xml(_))
        ));
        assert!(matches!(
            parse(&vector("bad-truncated.xml")),
            Err(PidfError::Xml(_))
        ));
        assert_eq!(
            parse(&vector("bad-xpidf.xml")),
            Err(PidfError::WrongRoot(
                "{urn:example:not-pidf}presence".into()
            ))
        );
        assert_eq!(
            parse(&vector("bad-wrong-root.xml")),
            Err(PidfError::WrongRoot(
                "{urn:ietf:params:xml:ns:im-iscomposing}isComposing".into()
            ))
        );
    }

    #[test]
    fn refuses_malformed_and_oversized() {
        for bad in [
            &b""[..],
            b"   ",
            b"not xml",
            b"<presence xmlns='urn:ietf:params:xml:ns:pidf'>",
            b"<presence xmlns='urn:ietf:params:xml:ns:pidf'></tuple>",
            b"<p:presence xmlns:q='urn:ietf:params:xml:ns:pidf'/>",
            b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='&x;'/>",
            b"<presence xmlns='urn:ietf:params:xml:ns:pidf' a='1' a='2'/>",
            b"<presence xmlns='urn:ietf:params:xml:ns:pidf'>\xff</presence>",
            b"junk<presence xmlns='urn:ietf:params:xml:ns:pidf'/>",
        ] {
            assert!(
                matches!(parse(bad), Err(PidfError::Xml(_))),
                "{:?} → {:?}",
                String::from_utf8_lossy(bad),
                parse(bad)
            );
        }
        let deep = format!("<presence xmlns='{NS}'>{}", "<tuple>".repeat(MAX_DEPTH + 1));
        assert!(matches!(parse(deep.as_bytes()), Err(PidfError::Xml(m)) if m.contains("nesting")));

        let tuple = "<tuple id='t'><status><basic>open</basic></status></tuple>";
        let many = format!(
            "<presence xmlns='{NS}'>{}</presence>",
            tuple.repeat(MAX_TUPLES + 1)
        );
        assert_eq!(
            parse(many.as_bytes()),
            Err(PidfError::TooManyTuples(MAX_TUPLES))
        );
        let enough = format!(
            "<presence xmlns='{NS}'>{}</presence>",
            tuple.repeat(MAX_TUPLES)
        );
        assert_eq!(parse(enough.as_bytes()).unwrap().tuples.len(), MAX_TUPLES);

        let huge = format!(
            "<presence xmlns='{NS}'><note>{}</note></presence>",
            "x".repeat(MAX_BODY)
        );
        assert_eq!(
            parse(huge.as_bytes()),
            Err(PidfError::TooLarge {
                size: huge.len(),
                limit: MAX_BODY
            })
        );
        // An internal subset is refused even when it declares nothing.
        assert_eq!(
            parse(format!("<!DOCTYPE presence []><presence xmlns='{NS}'/>").as_bytes()),
            Err(PidfError::Dtd)
        );
    }

    #[test]
    fn lenient_reading() {
        let doc = format!(
            "\u{feff}<?xml version='1.0'?><!-- hi --><presence xmlns='{NS}' xmlns:x='urn:x' \
             xmlns:r='{NS_RPID}' xmlns:d='{NS_DM}' xmlns:j='{NS_JABBER_CLIENT}' \
             entity=' sip:a@b ' xml:lang='de'>\
             <x:tuple id='fake'/>\
             <tuple id=' t1 ' x:foo='bar'><status><basic> OPEN </basic><j:show> dnd </j:show>\
             <j:show>away</j:show></status>\
             <r:activities><r:busy/><r:other> </r:other><r:other>gaming</r:other>\
             <r:flying/><x:zzz/></r:activities>\
             <contact priority='2'>sip:a@b</contact><contact>sip:second@b</contact>\
             <note>  Hallo  </note><note xml:lang=''>none</note><note> </note>\
             <timestamp> </timestamp></tuple>\
             <tuple><status><basic>maybe</basic><j:show>sleepy</j:show></status></tuple>\
             <d:person id='p'><d:note xml:lang='en'>hi</d:note></d:person>\
             <d:person id='second'/></presence>trailing"
        );
        let p = parse(doc.as_bytes()).unwrap();
        assert_eq!(p.entity, "sip:a@b");
        assert_eq!(p.tuples.len(), 2);
        let t = &p.tuples[0];
        assert_eq!(t.id, "t1");
        assert_eq!(t.basic, Some(Basic::Open));
        assert_eq!(t.show, Some(Show::Dnd));
        assert_eq!(
            t.activities,
            vec![
                Activity::Busy,
                Activity::Other("gaming".into()),
                Activity::Other("flying".into())
            ]
        );
        // priority 2 is not a qvalue: ignored. Only the first contact counts.
        assert_eq!(
            t.contact,
            Some(Contact {
                uri: "sip:a@b".into(),
                priority: None
            })
        );
        // xml:lang is inherited from the root; xml:lang='' resets it.
        assert_eq!(t.notes, vec![note(Some("de"), "Hallo"), note(None, "none")]);
        assert_eq!(t.timestamp, None);
        assert_eq!(p.tuples[1], Tuple::default());
        assert_eq!(
            p.person,
            Some(Person {
                id: "p".into(),
                notes: vec![note(Some("en"), "hi")],
                ..Person::default()
            })
        );
    }

    #[test]
    fn characters_xml_cannot_carry_are_dropped() {
        let doc = format!(
            "<presence xmlns='{NS}' entity='a&#1;b'><tuple id='t'><status/>\
             <note>x&#x7;y\u{FFFE}z&#13;</note><note>&#1;</note></tuple></presence>"
        );
        let p = parse(doc.as_bytes()).unwrap();
        assert_eq!(p.entity, "ab");
        assert_eq!(p.tuples[0].notes, vec![note(None, "xyz")]);
        assert_eq!(parse(write(&p).as_bytes()).unwrap(), p);
    }

    #[test]
    fn basic_table_rows() {
        for (name, b) in BASIC_TABLE {
            assert_eq!(b.as_str(), *name);
            let doc = format!(
                "<presence xmlns='{NS}'><tuple id='t'><status><basic>{name}</basic></status></tuple></presence>"
            );
            assert_eq!(parse(doc.as_bytes()).unwrap().tuples[0].basic, Some(*b));
        }
        assert_eq!(BASIC_TABLE.len(), 2);
    }

    #[test]
    fn show_table_rows() {
        for (name, s) in SHOW_TABLE {
            assert_eq!(s.as_str(), *name);
            assert_eq!(Show::from_name(name), Some(*s));
            assert_eq!(Show::from_name(&name.to_uppercase()), None);
        }
        assert_eq!(SHOW_TABLE.len(), 4);
    }

    #[test]
    fn activity_table_is_complete() {
        // RFC 4480 §3.2 names 26 activities besides <other>.
        assert_eq!(ACTIVITY_TABLE.len(), 26);
        for (name, a) in ACTIVITY_TABLE {
            assert_eq!(a.name(), Some(*name));
            assert_eq!(&Activity::from_name(name), a);
            let doc = format!(
                "<presence xmlns='{NS}' xmlns:r='{NS_RPID}' xmlns:d='{NS_DM}'>\
                 <d:person id='p'><r:activities><r:{name}/></r:activities></d:person></presence>"
            );
            let p = parse(doc.as_bytes()).unwrap();
            assert_eq!(p.person.unwrap().activities, vec![a.clone()]);
        }
        assert_eq!(Activity::Other("x".into()).name(), None);
        // Found by the pidf fuzz check: `<r:/>` (empty local name) is no activity, so that
        // what parses writes back the same.
        let doc = format!(
            "<presence xmlns='{NS}' xmlns:r='{NS_RPID}' xmlns:d='{NS_DM}'><d:person id='p'>\
             <r:activities><r:/></r:activities></d:person></presence>"
        );
        let p = parse(doc.as_bytes()).unwrap();
        assert_eq!(p.person.as_ref().unwrap().activities, vec![]);
        assert_eq!(parse(write(&p).as_bytes()).unwrap(), p);
        // Likewise a control character in an element name.
        let doc = format!(
            "<presence xmlns='{NS}' xmlns:r='{NS_RPID}' xmlns:d='{NS_DM}'><d:person id='p'>\
             <r:activities><r:a\u{1}b/></r:activities></d:person></presence>"
        );
        let p = parse(doc.as_bytes()).unwrap();
        assert_eq!(
            p.person.as_ref().unwrap().activities,
            vec![Activity::Other("ab".into())]
        );
        assert_eq!(parse(write(&p).as_bytes()).unwrap(), p);
        assert_eq!(
            Activity::from_name("flying"),
            Activity::Other("flying".into())
        );
    }

    #[test]
    fn priority_values() {
        for (s, t) in [
            ("0", 0),
            ("1", 1000),
            ("1.0", 1000),
            ("1.000", 1000),
            ("0.8", 800),
            ("0.725", 725),
            (".5", 500),
            ("0.500000", 500),
            ("0.0075", 8),
            ("0.9994", 999),
            ("0.9995", 1000),
            (" 0.007 ", 7),
            ("00.5", 500),
        ] {
            assert_eq!(
                Priority::parse(s).map(Priority::thousandths),
                Some(t),
                "{s}"
            );
        }
        for s in [
            "", ".", "-0.1", "1.1", "1.0001", "2", "10", "0x1", "1e0", "0.5.", "NaN", "+0.5",
            "0,5", "١",
        ] {
            assert_eq!(Priority::parse(s), None, "{s:?}");
        }
        for (t, s) in [
            (0, "0"),
            (1000, "1"),
            (800, "0.8"),
            (7, "0.007"),
            (10, "0.01"),
            (992, "0.992"),
        ] {
            let p = Priority::from_thousandths(t).unwrap();
            assert_eq!(p.to_string(), s);
            assert_eq!(Priority::parse(s), Some(p));
        }
        assert_eq!(Priority::from_thousandths(1001), None);
        assert_eq!(
            Priority::from_f32(0.8).map(Priority::thousandths),
            Some(800)
        );
        assert_eq!(Priority::from_f32(1.5), None);
        assert_eq!(Priority::from_f32(f32::NAN), None);
        assert!((Priority::MAX.as_f32() - 1.0).abs() < f32::EPSILON);
    }

    #[test]
    fn writes_rfc8048_layout_and_escapes() {
        let p = Presence {
            entity: "pres:juliet@example.com?a=1&b=\"2\"".into(),
            tuples: vec![Tuple {
                id: "ID-balcony".into(),
                basic: Some(Basic::Open),
                show: Some(Show::Away),
                activities: vec![],
                contact: contact("xmpp:juliet@example.com/balcony", 7),
                notes: vec![note(Some("en"), "<&>\"' 漢😀\r\nline")],
                timestamp: None,
            }],
            notes: vec![],
            person: None,
        };
        let xml = write(&p);
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:juliet@example.com?a=1&amp;b=&quot;2&quot;\">\n\
             \x20 <tuple id=\"ID-balcony\">\n\
             \x20   <status>\n\
             \x20     <basic>open</basic>\n\
             \x20     <show xmlns=\"jabber:client\">away</show>\n\
             \x20   </status>\n\
             \x20   <contact priority=\"0.007\">xmpp:juliet@example.com/balcony</contact>\n\
             \x20   <note xml:lang=\"en\">&lt;&amp;&gt;&quot;&apos; 漢😀&#13;\nline</note>\n\
             \x20 </tuple>\n\
             </presence>\n"
        );
        assert_eq!(parse(xml.as_bytes()).unwrap(), p);
        // The RFC 8048 vector is what stox writes for that stanza, modulo layout.
        assert_eq!(
            parse(write(&parse(&vector("stox-rfc8048-away.xml")).unwrap()).as_bytes()).unwrap(),
            parse(&vector("stox-rfc8048-away.xml")).unwrap()
        );
    }

    #[test]
    fn vectors_survive_write() {
        for name in [
            "rfc3863-basic.xml",
            "rfc3863-status-extension.xml",
            "rfc3863-must-understand.xml",
            "rfc4480-example.xml",
            "real-sipnetic-on-the-phone.xml",
            "real-person-note.xml",
            "real-external-doctype.xml",
        ] {
            let p = parse(&vector(name)).unwrap();
            let xml = write(&p);
            assert_eq!(parse(xml.as_bytes()).unwrap(), p, "{name}\n{xml}");
        }
        let rpid = write(&parse(&vector("rfc4480-example.xml")).unwrap());
        assert!(rpid.contains(&format!("xmlns:dm=\"{NS_DM}\"")));
        assert!(rpid.contains(&format!("xmlns:rpid=\"{NS_RPID}\"")));
        assert!(rpid.contains("<rpid:activities><rpid:away/></rpid:activities>"));
        let plain = write(&rfc3863_basic());
        assert!(!plain.contains("xmlns:dm") && !plain.contains("xmlns:rpid"));
    }

    fn text() -> impl Strategy<Value = String> {
        // Trimmed, non-empty, with the characters escaping must handle.
        "[a-zA-Z0-9<>&\"' /:.+\t\n\r-]{0,12}[a-zA-Z0-9<>&\"'/漢😀]"
            .prop_map(|s| s.trim().to_owned())
            .prop_filter("non-empty", |s| !s.is_empty())
    }

    fn lang() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[a-z]{2}(-[A-Z]{2})?")
    }

    fn notes() -> impl Strategy<Value = Vec<Note>> {
        proptest::collection::vec(
            (lang(), text()).prop_map(|(lang, text)| Note { lang, text }),
            0..3,
        )
    }

    fn activity() -> impl Strategy<Value = Activity> {
        prop_oneof![
            (0..ACTIVITY_TABLE.len()).prop_map(|i| ACTIVITY_TABLE[i].1.clone()),
            text().prop_map(Activity::Other),
        ]
    }

    fn tuple() -> impl Strategy<Value = Tuple> {
        (
            "[A-Za-z_][A-Za-z0-9_.-]{0,10}",
            proptest::option::of(prop_oneof![Just(Basic::Open), Just(Basic::Closed)]),
            proptest::option::of((0..SHOW_TABLE.len()).prop_map(|i| SHOW_TABLE[i].1)),
            proptest::collection::vec(activity(), 0..3),
            proptest::option::of((
                text(),
                proptest::option::of(
                    (0u16..=1000).prop_map(|t| Priority::from_thousandths(t).unwrap()),
                ),
            )),
            notes(),
            proptest::option::of(text()),
        )
            .prop_map(
                |(id, basic, show, activities, contact, notes, timestamp)| Tuple {
                    id,
                    basic,
                    show,
                    activities,
                    contact: contact.map(|(uri, priority)| Contact { uri, priority }),
                    notes,
                    timestamp,
                },
            )
    }

    fn presence() -> impl Strategy<Value = Presence> {
        (
            text(),
            proptest::collection::vec(tuple(), 0..4),
            notes(),
            proptest::option::of(
                (
                    "[A-Za-z_][A-Za-z0-9_.-]{0,10}",
                    proptest::collection::vec(activity(), 0..3),
                    notes(),
                    proptest::option::of(text()),
                )
                    .prop_map(|(id, activities, notes, timestamp)| Person {
                        id,
                        activities,
                        notes,
                        timestamp,
                    }),
            ),
        )
            .prop_map(|(entity, tuples, notes, person)| Presence {
                entity,
                tuples,
                notes,
                person,
            })
    }

    proptest! {
        #[test]
        fn write_then_parse_is_identity(p in presence()) {
            let xml = write(&p);
            prop_assert_eq!(parse(xml.as_bytes()).unwrap(), p);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_on_xmlish(s in "(<|>|/|=|'|&|;|\\[|!DOCTYPE|!ENTITY|presence|tuple|status|basic|open|note|contact|priority|xmlns|xmlns:r|r:activities|r:away|urn:ietf:params:xml:ns:pidf|urn:ietf:params:xml:ns:pidf:rpid|[a-z0-9. ]){0,60}") {
            let _ = parse(s.as_bytes());
        }

        #[test]
        fn what_parses_survives_write(s in "(<presence xmlns='urn:ietf:params:xml:ns:pidf'>|</presence>|<tuple id='a'>|</tuple>|<status>|</status>|<basic>open</basic>|<note>|</note>|&amp;|<contact priority='0.5'>|</contact>|[a-z ]){0,30}") {
            if let Ok(p) = parse(s.as_bytes()) {
                prop_assert_eq!(parse(write(&p).as_bytes()).unwrap(), p);
            }
        }
    }
}

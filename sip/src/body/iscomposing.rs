//! RFC 3994: `application/im-iscomposing+xml`, the indication that a message is being
//! composed (§3 semantics, and the XML format and schema that follow it).
//!
//! ```xml
//! <isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing">
//!   <state>active</state>                    <!-- "active" or "idle" -->
//!   <lastactive>2003-01-27T10:43:00Z</lastactive>
//!   <contenttype>text/plain</contenttype>
//!   <refresh>90</refresh>                    <!-- seconds, active state only -->
//! </isComposing>
//! ```
//!
//! Parsing matches elements by namespace, so any prefix (or none, through a default
//! namespace) is accepted; whitespace around values is ignored; unknown children (the schema's
//! `xs:any`) and children in other namespaces are skipped.

use super::xml::{escape_text, parse_document, Element};
use super::BodyError;

/// RFC 3994 XML namespace.
pub const NS: &str = "urn:ietf:params:xml:ns:im-iscomposing";

/// RFC 3994 §3: the composer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComposingState {
    /// Composing: content is being added (XEP-0085 `composing`).
    Active,
    /// Not composing (XEP-0085 `active`, `paused`, `inactive`).
    Idle,
}

impl ComposingState {
    /// The `<state>` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Idle => "idle",
        }
    }
}

/// An RFC 3994 status message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsComposing {
    /// `<state>` (mandatory).
    pub state: ComposingState,
    /// `<lastactive>`: when the composer was last active (an `xs:dateTime`, as written).
    pub last_active: Option<String>,
    /// `<contenttype>`: what is being composed (`text/plain`, `audio`, …).
    pub content_type: Option<String>,
    /// `<refresh>`: seconds until the next active-state refresh (§3.2; positive).
    pub refresh: Option<u32>,
}

impl IsComposing {
    /// A bare state indication.
    pub fn new(state: ComposingState) -> Self {
        Self {
            state,
            last_active: None,
            content_type: None,
            refresh: None,
        }
    }

    /// Serialises as an `application/im-iscomposing+xml` document (RFC 3994 schema element order).
    pub fn to_xml(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        out.push_str(&format!("<isComposing xmlns=\"{NS}\">\n"));
        out.push_str(&format!("  <state>{}</state>\n", self.state.as_str()));
        if let Some(v) = &self.last_active {
            out.push_str(&format!("  <lastactive>{}</lastactive>\n", escape_text(v)));
        }
        if let Some(v) = &self.content_type {
            out.push_str(&format!(
                "  <contenttype>{}</contenttype>\n",
                escape_text(v)
            ));
        }
        if let Some(v) = self.refresh {
            out.push_str(&format!("  <refresh>{v}</refresh>\n"));
        }
        out.push_str("</isComposing>\n");
        out
    }
}

fn text_of<'a>(root: &'a Element, local: &str) -> Option<&'a str> {
    root.child(NS, local).map(|e| e.text.trim())
}

/// Parses an `application/im-iscomposing+xml` body.
///
/// Errors: [`BodyError::Xml`] / [`BodyError::InvalidEncoding`] for a document that is not
/// well-formed UTF-8 XML, [`BodyError::WrongRoot`] when the root is not
/// `{urn:ietf:params:xml:ns:im-iscomposing}isComposing`, [`BodyError::MissingElement`] without
/// `<state>`, [`BodyError::InvalidValue`] for a state other than `active`/`idle` or a refresh
/// that is not a positive integer.
pub fn parse(bytes: &[u8]) -> Result<IsComposing, BodyError> {
    let root = parse_document(bytes)?;
    if !root.is(NS, "isComposing") {
        return Err(BodyError::WrongRoot {
            expected: "{urn:ietf:params:xml:ns:im-iscomposing}isComposing",
            found: root.expanded_name(),
        });
    }
    let state = text_of(&root, "state").ok_or(BodyError::MissingElement("state"))?;
    let state = if state.eq_ignore_ascii_case("active") {
        ComposingState::Active
    } else if state.eq_ignore_ascii_case("idle") {
        ComposingState::Idle
    } else {
        return Err(BodyError::InvalidValue {
            element: "state",
            value: state.to_owned(),
        });
    };
    let refresh = match text_of(&root, "refresh") {
        None => None,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(BodyError::InvalidValue {
                    element: "refresh",
                    value: v.to_owned(),
                })
            }
        },
    };
    let non_empty = |v: &str| (!v.is_empty()).then(|| v.to_owned());
    Ok(IsComposing {
        state,
        last_active: text_of(&root, "lastactive").and_then(non_empty),
        content_type: text_of(&root, "contenttype").and_then(non_empty),
        refresh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vector(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn rfc3994_example_active() {
        assert_eq!(
            parse(&vector("rfc3994-active.xml")).unwrap(),
            IsComposing {
                state: ComposingState::Active,
                last_active: None,
                content_type: Some("text/plain".into()),
                refresh: Some(90),
            }
        );
    }

    #[test]
    fn rfc3994_example_idle() {
        assert_eq!(
            parse(&vector("rfc3994-idle.xml")).unwrap(),
            IsComposing {
                state: ComposingState::Idle,
                last_active: Some("2003-01-27T10:43:00Z".into()),
                content_type: Some("audio".into()),
                refresh: None,
            }
        );
    }

    #[test]
    fn any_prefix_whitespace_and_unknown_children() {
        let doc =
            br#"<ic:isComposing xmlns:ic="urn:ietf:params:xml:ns:im-iscomposing" xmlns:x="urn:x">
            <x:state>idle</x:state>
            <ic:foo><ic:state>idle</ic:state></ic:foo>
            <ic:state>
                active
            </ic:state>
            <x:refresh>7</x:refresh>
            <ic:refresh> 60 </ic:refresh>
        </ic:isComposing>"#;
        let ic = parse(doc).unwrap();
        assert_eq!(ic.state, ComposingState::Active);
        assert_eq!(ic.refresh, Some(60));
        assert_eq!(ic.content_type, None);
    }

    #[test]
    fn real_client_without_declaration() {
        // As Pidgin/SIP Communicator send it: schemaLocation with a different URN, no decl.
        let doc = b"<isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\"\n\
            xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"\n\
            xsi:schemaLocation=\"urn:ietf:params:xml:ns:im-composing iscomposing.xsd\">\n\
            <state>idle</state>\n<contenttype>text/plain</contenttype>\n<refresh>60</refresh>\n\
            </isComposing>";
        let ic = parse(doc).unwrap();
        assert_eq!(ic.state, ComposingState::Idle);
        assert_eq!(ic.refresh, Some(60));
    }

    #[test]
    fn rejects_wrong_root_and_values() {
        assert!(matches!(
            parse(b"<isComposing><state>active</state></isComposing>"),
            Err(BodyError::WrongRoot { .. })
        ));
        assert!(matches!(
            parse(b"<imdn xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\"/>"),
            Err(BodyError::WrongRoot { .. })
        ));
        assert!(matches!(
            parse(b"<isComposing xmlns=\"urn:ietf:params:xml:ns:imdn\"><state>active</state></isComposing>"),
            Err(BodyError::WrongRoot { .. })
        ));
        let wrap = |inner: &str| {
            format!("<isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\">{inner}</isComposing>")
        };
        assert_eq!(
            parse(wrap("<contenttype>text/plain</contenttype>").as_bytes()),
            Err(BodyError::MissingElement("state"))
        );
        assert_eq!(
            parse(wrap("<state>typing</state>").as_bytes()),
            Err(BodyError::InvalidValue {
                element: "state",
                value: "typing".into()
            })
        );
        for bad in ["0", "-1", "x", "4294967296", ""] {
            assert!(
                matches!(
                    parse(
                        wrap(&format!("<state>active</state><refresh>{bad}</refresh>")).as_bytes()
                    ),
                    Err(BodyError::InvalidValue {
                        element: "refresh",
                        ..
                    })
                ),
                "refresh {bad:?}"
            );
        }
        assert!(matches!(parse(b"not xml"), Err(BodyError::Xml(_))));
        assert!(matches!(
            parse(wrap("<state>active").as_bytes()),
            Err(BodyError::Xml(_))
        ));
    }

    #[test]
    fn to_xml_is_schema_ordered_and_escaped() {
        let ic = IsComposing {
            state: ComposingState::Active,
            last_active: Some("2003-01-27T10:43:00Z".into()),
            content_type: Some("text/<&>\"'漢😀".into()),
            refresh: Some(90),
        };
        let xml = ic.to_xml();
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\">\n\
             \x20 <state>active</state>\n\
             \x20 <lastactive>2003-01-27T10:43:00Z</lastactive>\n\
             \x20 <contenttype>text/&lt;&amp;&gt;&quot;&apos;漢😀</contenttype>\n\
             \x20 <refresh>90</refresh>\n\
             </isComposing>\n"
        );
        assert_eq!(parse(xml.as_bytes()).unwrap(), ic);
        let idle = IsComposing::new(ComposingState::Idle);
        assert_eq!(parse(idle.to_xml().as_bytes()).unwrap(), idle);
    }

    fn value() -> impl Strategy<Value = String> {
        // Values are trimmed on input, so generate them trimmed and non-empty.
        "[a-zA-Z0-9<>&\"' /:.+-]{0,10}[a-zA-Z0-9<>&\"'/漢😀]"
            .prop_map(|s| s.trim().to_owned())
            .prop_filter("non-empty", |s| !s.is_empty())
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_on_xmlish(s in "(<|>|/|=|\"|&|;|isComposing|state|active|refresh|xmlns|urn:ietf:params:xml:ns:im-iscomposing|[a-z0-9 ]){0,40}") {
            let _ = parse(s.as_bytes());
        }

        #[test]
        fn round_trip(
            active in any::<bool>(),
            last_active in proptest::option::of(value()),
            content_type in proptest::option::of(value()),
            refresh in proptest::option::of(1u32..),
        ) {
            let ic = IsComposing {
                state: if active { ComposingState::Active } else { ComposingState::Idle },
                last_active, content_type, refresh,
            };
            prop_assert_eq!(parse(ic.to_xml().as_bytes()).unwrap(), ic);
        }
    }
}

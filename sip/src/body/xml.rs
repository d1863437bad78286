//! A tiny namespace-resolved element tree over quick-xml, shared by the RFC 3994 and RFC 5438
//! bodies, and the escaping both use when writing.
//!
//! These documents are three levels deep and carry no attributes that stox needs, so the tree
//! keeps only names, namespaces, direct text and children. Nesting is bounded so a hostile
//! document can neither exhaust memory through depth nor overflow the stack when the tree is
//! dropped.

use quick_xml::events::{BytesRef, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::BodyError;

/// Deepest nesting accepted. The documents read here need 4.
const MAX_DEPTH: usize = 32;

/// One element: its namespace URI (None when unqualified), local name, direct text content
/// (entities resolved, not trimmed) and child elements.
#[derive(Debug, Default)]
pub(crate) struct Element {
    pub ns: Option<String>,
    pub local: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// True when this element is `{ns}local`.
    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.local == local
    }

    /// The first child that is `{ns}local`.
    pub fn child(&self, ns: &str, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, local))
    }

    /// `{ns}local`, as error messages show it.
    pub fn expanded_name(&self) -> String {
        match &self.ns {
            Some(ns) => format!("{{{ns}}}{}", self.local),
            None => self.local.clone(),
        }
    }
}

fn xml_err(e: impl std::fmt::Display) -> BodyError {
    BodyError::Xml(e.to_string())
}

fn resolve_ref(r: &BytesRef<'_>) -> Result<String, BodyError> {
    if let Some(c) = r.resolve_char_ref().map_err(xml_err)? {
        return Ok(c.to_string());
    }
    let name = r.decode().map_err(xml_err)?;
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_owned)
        .ok_or_else(|| BodyError::Xml(format!("unknown entity &{name};")))
}

/// Parses a document into its root element. Reading stops when the root element closes, so
/// whatever follows it (trailing whitespace or junk from a sloppy peer) is ignored. Entity
/// references other than the XML predefined ones and character references are an error: no
/// DTD is ever expanded.
pub(crate) fn parse_document(bytes: &[u8]) -> Result<Element, BodyError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if std::str::from_utf8(bytes).is_err() {
        return Err(BodyError::InvalidEncoding {
            charset: "UTF-8".into(),
        });
    }
    let mut reader = NsReader::from_reader(bytes);
    // Documents from the network: every end tag must match, nothing left unclosed.
    reader.config_mut().check_end_names = true;

    // Open elements, innermost last. The root, once closed, is returned.
    let mut stack: Vec<Element> = Vec::new();
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(xml_err)?;
        let ns = match ns {
            ResolveResult::Bound(n) => Some(String::from_utf8_lossy(n.as_ref()).into_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(p) => {
                return Err(BodyError::Xml(format!(
                    "undeclared namespace prefix {:?}",
                    String::from_utf8_lossy(&p)
                )))
            }
        };
        match event {
            Event::Start(_) | Event::Empty(_) if stack.len() >= MAX_DEPTH => {
                return Err(BodyError::Xml(format!("nesting deeper than {MAX_DEPTH}")));
            }
            Event::Start(start) => {
                stack.push(Element {
                    ns,
                    local: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                    ..Element::default()
                });
            }
            Event::Empty(start) => {
                let element = Element {
                    ns,
                    local: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => return Ok(element),
                }
            }
            Event::End(_) => {
                // check_end_names guarantees an End only follows its own Start.
                let Some(element) = stack.pop() else {
                    return Err(BodyError::Xml("end tag without start tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => return Ok(element),
                }
            }
            Event::Text(t) => {
                let text = t.decode().map_err(xml_err)?;
                match stack.last_mut() {
                    Some(e) => e.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(BodyError::Xml("text outside the root element".into())),
                }
            }
            Event::CData(t) => {
                let text = t.decode().map_err(xml_err)?;
                match stack.last_mut() {
                    Some(e) => e.text.push_str(&text),
                    None => return Err(BodyError::Xml("CDATA outside the root element".into())),
                }
            }
            Event::GeneralRef(r) => {
                let text = resolve_ref(&r)?;
                match stack.last_mut() {
                    Some(e) => e.text.push_str(&text),
                    None => {
                        return Err(BodyError::Xml("reference outside the root element".into()))
                    }
                }
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Eof => {
                return Err(BodyError::Xml(if stack.is_empty() {
                    "no root element".into()
                } else {
                    "document ends inside an element".into()
                }))
            }
        }
    }
}

/// Escapes `s` for XML text content: the five special characters become entity references,
/// and characters XML 1.0 cannot carry at all (C0 controls other than TAB, LF, CR; U+FFFE,
/// U+FFFF) are dropped. CR is written as `&#13;` so that it survives end-of-line handling.
pub(crate) fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_tree_with_namespaces_and_entities() {
        let doc = br#"<?xml version="1.0"?>
<!-- c --><p:a xmlns:p="urn:x" xmlns="urn:d"><b>1 &amp; &#x41;<![CDATA[<c>]]></b><p:c/></p:a>"#;
        let root = parse_document(doc).unwrap();
        assert!(root.is("urn:x", "a"));
        assert_eq!(root.children.len(), 2);
        assert!(root.children[0].is("urn:d", "b"));
        assert_eq!(root.children[0].text, "1 & A<c>");
        assert!(root.child("urn:x", "c").is_some());
    }

    #[test]
    fn rejects_malformed() {
        assert!(matches!(parse_document(b""), Err(BodyError::Xml(_))));
        assert!(matches!(parse_document(b"<a>"), Err(BodyError::Xml(_))));
        assert!(matches!(parse_document(b"<a></b>"), Err(BodyError::Xml(_))));
        assert!(matches!(parse_document(b"<x:a/>"), Err(BodyError::Xml(_))));
        assert!(matches!(
            parse_document(b"<a>&foo;</a>"),
            Err(BodyError::Xml(_))
        ));
        assert!(matches!(
            parse_document(b"<a>\xff</a>"),
            Err(BodyError::InvalidEncoding { .. })
        ));
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        assert!(matches!(
            parse_document(deep.as_bytes()),
            Err(BodyError::Xml(_))
        ));
    }

    #[test]
    fn escapes_specials_and_drops_illegal_characters() {
        assert_eq!(
            escape_text("<&>\"' \u{1}\r\n\t漢😀"),
            "&lt;&amp;&gt;&quot;&apos; &#13;\n\t漢😀"
        );
    }
}

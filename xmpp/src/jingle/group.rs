//! XEP-0338: Jingle Grouping Framework (`a=group:BUNDLE`, RFC 5888 / RFC 8843).

use super::{attr, expect, ns, req_attr, JingleError};
use minidom::Element;

/// `<group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'><content name/>…</group>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// RFC 5888 semantics (`BUNDLE`, `LS`, …).
    pub semantics: String,
    /// The content names in the group, in order (`<content>` children without `name` are skipped).
    pub contents: Vec<String>,
}

impl Group {
    /// Reads a `<group/>`; `semantics` is required.
    pub fn parse(el: &Element) -> Result<Self, JingleError> {
        expect(el, "group", ns::GROUPING)?;
        let semantics = req_attr(el, "group", "semantics")?.to_owned();
        let contents = el
            .children()
            .filter(|c| c.name() == "content")
            .filter_map(|c| c.attr("name").map(str::to_owned))
            .collect();
        Ok(Group {
            semantics,
            contents,
        })
    }

    /// Writes the `<group/>` element.
    pub fn to_element(&self) -> Element {
        let b = attr!(
            Element::builder("group", ns::GROUPING),
            "semantics",
            self.semantics.as_str()
        );
        b.append_all(self.contents.iter().map(|n| {
            attr!(
                Element::builder("content", ns::GROUPING),
                "name",
                n.as_str()
            )
            .build()
        }))
        .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0338_example_round_trips() {
        let el: Element = "<group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'><content name='voice'/><content name='webcam'/><content/></group>".parse().unwrap();
        let g = Group::parse(&el).unwrap();
        assert_eq!(g.semantics, "BUNDLE");
        assert_eq!(g.contents, ["voice", "webcam"]);
        assert_eq!(Group::parse(&g.to_element()).unwrap(), g);
    }
}

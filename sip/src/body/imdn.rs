//! RFC 5438 (IMDN format and XML schema): `message/imdn+xml`, an Instant Message Disposition
//! Notification.
//!
//! ```xml
//! <imdn xmlns="urn:ietf:params:xml:ns:imdn">
//!   <message-id>34jk324j</message-id>
//!   <datetime>2008-04-04T12:16:49-05:00</datetime>
//!   <recipient-uri>im:bob@example.com</recipient-uri>
//!   <original-recipient-uri>im:bob@example.com</original-recipient-uri>
//!   <delivery-notification><status><delivered/></status></delivery-notification>
//! </imdn>
//! ```
//!
//! The schema makes `datetime` mandatory; stox reads notifications without it (some clients
//! omit it) and writes it whenever it is set, so a value built with `datetime: None` yields a
//! document that lacks it. `subject` and extension elements (`xs:any`, other namespaces) are
//! skipped on input.

use super::xml::{escape_text, parse_document, Element};
use super::BodyError;

/// RFC 5438 XML namespace.
pub const NS: &str = "urn:ietf:params:xml:ns:imdn";

/// RFC 5438 delivery notification status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// `<delivered/>`: the message reached the recipient's device.
    Delivered,
    /// `<failed/>`: delivery failed.
    Failed,
    /// `<forbidden/>`: the recipient's policy denies sending this notification.
    Forbidden,
    /// `<error/>`: an error occurred while processing the request.
    Error,
}

/// RFC 5438 display notification status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisplayStatus {
    /// `<displayed/>`: the message was rendered to the user.
    Displayed,
    /// `<forbidden/>`: the recipient's policy denies sending this notification.
    Forbidden,
    /// `<error/>`: an error occurred while processing the request.
    Error,
}

/// RFC 5438 processing notification status (from an intermediary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessingStatus {
    /// `<processed/>`: the intermediary processed the message.
    Processed,
    /// `<stored/>`: the intermediary stored the message for later delivery.
    Stored,
    /// `<forbidden/>`: the intermediary's policy denies sending this notification.
    Forbidden,
    /// `<error/>`: an error occurred while processing the request.
    Error,
}

/// Which notification this is, with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Notification {
    /// `<delivery-notification>`.
    Delivery(DeliveryStatus),
    /// `<display-notification>`.
    Display(DisplayStatus),
    /// `<processing-notification>`.
    Processing(ProcessingStatus),
}

/// One row per (notification element, status element, value): the RFC 5438 schema allows exactly
/// these combinations.
const STATUS_TABLE: &[(&str, &str, Notification)] = &[
    (
        "delivery-notification",
        "delivered",
        Notification::Delivery(DeliveryStatus::Delivered),
    ),
    (
        "delivery-notification",
        "failed",
        Notification::Delivery(DeliveryStatus::Failed),
    ),
    (
        "delivery-notification",
        "forbidden",
        Notification::Delivery(DeliveryStatus::Forbidden),
    ),
    (
        "delivery-notification",
        "error",
        Notification::Delivery(DeliveryStatus::Error),
    ),
    (
        "display-notification",
        "displayed",
        Notification::Display(DisplayStatus::Displayed),
    ),
    (
        "display-notification",
        "forbidden",
        Notification::Display(DisplayStatus::Forbidden),
    ),
    (
        "display-notification",
        "error",
        Notification::Display(DisplayStatus::Error),
    ),
    (
        "processing-notification",
        "processed",
        Notification::Processing(ProcessingStatus::Processed),
    ),
    (
        "processing-notification",
        "stored",
        Notification::Processing(ProcessingStatus::Stored),
    ),
    (
        "processing-notification",
        "forbidden",
        Notification::Processing(ProcessingStatus::Forbidden),
    ),
    (
        "processing-notification",
        "error",
        Notification::Processing(ProcessingStatus::Error),
    ),
];

impl Notification {
    /// (notification element, status element) local names.
    fn names(self) -> (&'static str, &'static str) {
        STATUS_TABLE
            .iter()
            .find(|(_, _, n)| *n == self)
            .map(|(e, s, _)| (*e, *s))
            // Every variant has a row: the `every_variant_has_a_row` test walks them all.
            .unwrap_or(("delivery-notification", "error"))
    }
}

/// An RFC 5438 disposition notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imdn {
    /// `<message-id>`: the `imdn.Message-ID` of the message this is about.
    pub message_id: String,
    /// `<datetime>`: the `DateTime` of that message (RFC 3339, as written).
    pub datetime: Option<String>,
    /// `<recipient-uri>`: who sends this notification.
    pub recipient_uri: Option<String>,
    /// `<original-recipient-uri>`: the recipient the message was first addressed to.
    pub original_recipient_uri: Option<String>,
    /// The notification and its status.
    pub notification: Notification,
}

impl Imdn {
    /// Serialises as a `message/imdn+xml` document, elements in RFC 5438 schema order.
    pub fn to_xml(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        out.push_str(&format!("<imdn xmlns=\"{NS}\">\n"));
        let mut element = |name: &str, value: &str| {
            out.push_str(&format!("  <{name}>{}</{name}>\n", escape_text(value)));
        };
        element("message-id", &self.message_id);
        if let Some(v) = &self.datetime {
            element("datetime", v);
        }
        if let Some(v) = &self.recipient_uri {
            element("recipient-uri", v);
        }
        if let Some(v) = &self.original_recipient_uri {
            element("original-recipient-uri", v);
        }
        let (notification, status) = self.notification.names();
        out.push_str(&format!(
            "  <{notification}>\n    <status>\n      <{status}/>\n    </status>\n  </{notification}>\n"
        ));
        out.push_str("</imdn>\n");
        out
    }
}

fn text_of(root: &Element, local: &str) -> Option<String> {
    root.child(NS, local)
        .map(|e| e.text.trim())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

fn notification_of(element: &Element) -> Result<Notification, BodyError> {
    let kind = STATUS_TABLE
        .iter()
        .find(|(e, _, _)| *e == element.local)
        .map_or("delivery-notification", |(e, _, _)| *e);
    let status = element
        .child(NS, "status")
        .ok_or(BodyError::MissingElement("status"))?;
    let mut seen = Vec::new();
    for value in status
        .children
        .iter()
        .filter(|c| c.ns.as_deref() == Some(NS))
    {
        if let Some((_, _, n)) = STATUS_TABLE
            .iter()
            .find(|(e, s, _)| *e == kind && *s == value.local)
        {
            return Ok(*n);
        }
        seen.push(value.local.as_str());
    }
    Err(BodyError::InvalidValue {
        element: "status",
        value: seen.join(","),
    })
}

/// Parses a `message/imdn+xml` body.
///
/// Errors: [`BodyError::Xml`] / [`BodyError::InvalidEncoding`] for a document that is not
/// well-formed UTF-8 XML, [`BodyError::WrongRoot`] when the root is not
/// `{urn:ietf:params:xml:ns:imdn}imdn`, [`BodyError::MissingElement`] without `<message-id>`,
/// a notification element or its `<status>`, [`BodyError::InvalidValue`] for a status that the
/// notification type does not allow (such as `<delivered/>` in a display notification).
pub fn parse(bytes: &[u8]) -> Result<Imdn, BodyError> {
    let root = parse_document(bytes)?;
    if !root.is(NS, "imdn") {
        return Err(BodyError::WrongRoot {
            expected: "{urn:ietf:params:xml:ns:imdn}imdn",
            found: root.expanded_name(),
        });
    }
    let message_id = text_of(&root, "message-id").ok_or(BodyError::MissingElement("message-id"))?;
    let notification_element = root
        .children
        .iter()
        .find(|c| {
            c.ns.as_deref() == Some(NS)
                && matches!(
                    c.local.as_str(),
                    "delivery-notification" | "display-notification" | "processing-notification"
                )
        })
        .ok_or(BodyError::MissingElement("delivery-notification"))?;
    Ok(Imdn {
        message_id,
        datetime: text_of(&root, "datetime"),
        recipient_uri: text_of(&root, "recipient-uri"),
        original_recipient_uri: text_of(&root, "original-recipient-uri"),
        notification: notification_of(notification_element)?,
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

    fn rfc_example(notification: Notification) -> Imdn {
        Imdn {
            message_id: "34jk324j".into(),
            datetime: Some("2008-04-04T12:16:49-05:00".into()),
            recipient_uri: Some("im:bob@example.com".into()),
            original_recipient_uri: Some("im:bob@example.com".into()),
            notification,
        }
    }

    #[test]
    fn rfc5438_delivery_example() {
        assert_eq!(
            parse(&vector("rfc5438-delivered.xml")).unwrap(),
            rfc_example(Notification::Delivery(DeliveryStatus::Delivered))
        );
    }

    #[test]
    fn rfc5438_display_example() {
        assert_eq!(
            parse(&vector("rfc5438-displayed.xml")).unwrap(),
            rfc_example(Notification::Display(DisplayStatus::Displayed))
        );
    }

    #[test]
    fn rfc5438_processing_example() {
        assert_eq!(
            parse(&vector("rfc5438-processed.xml")).unwrap(),
            rfc_example(Notification::Processing(ProcessingStatus::Processed))
        );
    }

    #[test]
    fn every_variant_has_a_row() {
        // Walks STATUS_TABLE: each row serialises to its own names and parses back.
        for (element, status, n) in STATUS_TABLE {
            assert_eq!(n.names(), (*element, *status));
            let imdn = Imdn {
                message_id: "m".into(),
                datetime: None,
                recipient_uri: None,
                original_recipient_uri: None,
                notification: *n,
            };
            let xml = imdn.to_xml();
            assert!(xml.contains(&format!("<{element}>")) && xml.contains(&format!("<{status}/>")));
            assert_eq!(parse(xml.as_bytes()).unwrap(), imdn);
        }
        assert_eq!(STATUS_TABLE.len(), 4 + 3 + 4);
    }

    #[test]
    fn gsma_rcs_style_with_subject_and_extensions() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
<i:imdn xmlns:i="urn:ietf:params:xml:ns:imdn" xmlns:x="urn:x">
<i:message-id>  Msg-1  </i:message-id>
<i:subject>hi</i:subject>
<x:ext>ignored</x:ext>
<i:display-notification><i:status><x:why/><i:displayed/></i:status></i:display-notification>
</i:imdn>"#;
        let imdn = parse(doc).unwrap();
        assert_eq!(imdn.message_id, "Msg-1");
        assert_eq!(imdn.datetime, None);
        assert_eq!(
            imdn.notification,
            Notification::Display(DisplayStatus::Displayed)
        );
    }

    #[test]
    fn rejects_invalid() {
        let wrap = |inner: &str| format!("<imdn xmlns=\"{NS}\">{inner}</imdn>");
        assert!(matches!(
            parse(b"<imdn><message-id>x</message-id></imdn>"),
            Err(BodyError::WrongRoot { .. })
        ));
        assert!(matches!(
            parse(b"<isComposing xmlns=\"urn:ietf:params:xml:ns:imdn\"/>"),
            Err(BodyError::WrongRoot { .. })
        ));
        assert_eq!(
            parse(
                wrap(
                    "<delivery-notification><status><delivered/></status></delivery-notification>"
                )
                .as_bytes()
            ),
            Err(BodyError::MissingElement("message-id"))
        );
        assert_eq!(
            parse(wrap("<message-id> </message-id><delivery-notification><status><delivered/></status></delivery-notification>").as_bytes()),
            Err(BodyError::MissingElement("message-id"))
        );
        assert_eq!(
            parse(wrap("<message-id>x</message-id>").as_bytes()),
            Err(BodyError::MissingElement("delivery-notification"))
        );
        assert_eq!(
            parse(wrap("<message-id>x</message-id><display-notification/>").as_bytes()),
            Err(BodyError::MissingElement("status"))
        );
        assert_eq!(
            parse(wrap("<message-id>x</message-id><display-notification><status><delivered/></status></display-notification>").as_bytes()),
            Err(BodyError::InvalidValue { element: "status", value: "delivered".into() })
        );
        assert_eq!(
            parse(wrap("<message-id>x</message-id><delivery-notification><status/></delivery-notification>").as_bytes()),
            Err(BodyError::InvalidValue { element: "status", value: String::new() })
        );
        assert!(matches!(parse(b"<imdn"), Err(BodyError::Xml(_))));
    }

    #[test]
    fn escapes_special_characters() {
        let imdn = Imdn {
            message_id: "<&>\"'".into(),
            datetime: Some("2024-01-01T00:00:00Z".into()),
            recipient_uri: Some("sip:漢字@例え.jp?x=1&y=2".into()),
            original_recipient_uri: Some("sip:😀@example.com".into()),
            notification: Notification::Delivery(DeliveryStatus::Failed),
        };
        let xml = imdn.to_xml();
        assert!(xml.contains("<message-id>&lt;&amp;&gt;&quot;&apos;</message-id>"));
        assert!(xml.contains("<recipient-uri>sip:漢字@例え.jp?x=1&amp;y=2</recipient-uri>"));
        assert_eq!(parse(xml.as_bytes()).unwrap(), imdn);
    }

    #[test]
    fn to_xml_layout() {
        assert_eq!(
            rfc_example(Notification::Delivery(DeliveryStatus::Delivered)).to_xml(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">\n\
             \x20 <message-id>34jk324j</message-id>\n\
             \x20 <datetime>2008-04-04T12:16:49-05:00</datetime>\n\
             \x20 <recipient-uri>im:bob@example.com</recipient-uri>\n\
             \x20 <original-recipient-uri>im:bob@example.com</original-recipient-uri>\n\
             \x20 <delivery-notification>\n\
             \x20   <status>\n\
             \x20     <delivered/>\n\
             \x20   </status>\n\
             \x20 </delivery-notification>\n\
             </imdn>\n"
        );
    }

    fn value() -> impl Strategy<Value = String> {
        // Values are trimmed on input, so generate them trimmed and non-empty.
        "[a-zA-Z0-9<>&\"' @:;=?/.+漢字😀-]{0,16}[a-zA-Z0-9<>&\"'漢😀]"
            .prop_map(|s| s.trim().to_owned())
            .prop_filter("non-empty", |s| !s.is_empty())
    }

    fn notification() -> impl Strategy<Value = Notification> {
        (0..STATUS_TABLE.len()).prop_map(|i| STATUS_TABLE[i].2)
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_on_xmlish(s in "(<|>|/|=|\"|&|;|imdn|message-id|status|delivered|display-notification|xmlns|urn:ietf:params:xml:ns:imdn|[a-z0-9 ]){0,40}") {
            let _ = parse(s.as_bytes());
        }

        #[test]
        fn round_trip(
            message_id in value(),
            datetime in proptest::option::of(value()),
            recipient_uri in proptest::option::of(value()),
            original_recipient_uri in proptest::option::of(value()),
            notification in notification(),
        ) {
            let imdn = Imdn { message_id, datetime, recipient_uri, original_recipient_uri, notification };
            prop_assert_eq!(parse(imdn.to_xml().as_bytes()).unwrap(), imdn);
        }
    }
}

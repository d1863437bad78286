//! RFC 7572: SIP MESSAGE ⇄ XMPP `<message/>` (pager mode), plus the content
//! types stox maps beyond the RFC: RFC 3994 isComposing ⇄ XEP-0085 chat states
//! and RFC 5438 IMDN ⇄ XEP-0184 receipts / XEP-0333 displayed markers.
//!
//! Pure: addresses are resolved by the caller (`translate::address`), and the
//! stanza ids and Call-IDs are handed in.
//!
//! The XMPP `type` stox writes is configurable; the default is `chat`, not
//! the `normal` of RFC 7572 §5: Conversations, Dino and Monal thread `chat`
//! messages in the conversation view, carbons (XEP-0280) and MAM (XEP-0313)
//! treat them uniformly, and chat states are only defined for `chat`.

use stox_sip::body::{content_type::ContentType, cpim, html, imdn, iscomposing, text};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::DefinedCondition;

use crate::sipmsg::SipRequest;
use crate::stanza::{self, NS_CHATSTATES, NS_COMPONENT, NS_MARKERS, NS_RECEIPTS, NS_STANZA};

/// RFC 7572 §5 / RFC 3428 §10: the content types stox accepts in a MESSAGE;
/// sent in `Accept` with a 415.
pub const ACCEPT: &str =
    "text/plain, text/html, message/cpim, application/im-iscomposing+xml, message/imdn+xml";

/// A SIP MESSAGE that cannot be translated: the final response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Status code (4xx).
    pub code: u16,
    /// Why, for the log.
    pub reason: String,
}

fn reject(code: u16, reason: impl Into<String>) -> Reject {
    Reject {
        code,
        reason: reason.into(),
    }
}

/// What a SIP MESSAGE body means to XMPP.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Payload {
    Text(String),
    ChatState(&'static str),
    Receipt { id: String },
    Displayed { id: String },
}

/// Decodes the MESSAGE body by content type (RFC 7572 §5, RFC 3862, RFC 3994, RFC 5438).
/// Returns the payload and, for CPIM with IMDN, the sender's message id and
/// whether a delivery notification was asked for.
fn decode_body(
    content_type: Option<&str>,
    body: &[u8],
    depth: u8,
) -> Result<(Payload, Option<String>, bool), Reject> {
    let ct: ContentType = match content_type {
        Some(v) => v
            .parse()
            .map_err(|e| reject(400, format!("bad Content-Type: {e}")))?,
        // RFC 3261 §7.4.1: no Content-Type and an empty body is an empty message.
        None if body.is_empty() => return Ok((Payload::Text(String::new()), None, false)),
        None => return Err(reject(400, "body without Content-Type")),
    };
    match ct.mime.as_str() {
        "text/plain" => {
            let t = text::decode_text(body, ct.charset())
                .map_err(|e| reject(400, format!("text/plain body: {e}")))?;
            Ok((Payload::Text(t), None, false))
        }
        "text/html" => {
            let t = text::decode_text(body, ct.charset())
                .map_err(|e| reject(400, format!("text/html body: {e}")))?;
            Ok((Payload::Text(html::html_to_text(&t)), None, false))
        }
        "message/cpim" if depth == 0 => {
            let m =
                cpim::parse(body).map_err(|e| reject(400, format!("message/cpim body: {e}")))?;
            let inner_ct = m.content_type.as_ref().map(|c| c.to_string());
            let (payload, _, _) = decode_body(inner_ct.as_deref(), &m.body, depth + 1)?;
            let wants_delivery = m
                .disposition_notification()
                .is_some_and(|d| d.positive_delivery);
            Ok((
                payload,
                m.imdn_message_id().map(str::to_string),
                wants_delivery,
            ))
        }
        "application/im-iscomposing+xml" => {
            let c = iscomposing::parse(body)
                .map_err(|e| reject(400, format!("isComposing body: {e}")))?;
            // RFC 7573 §7 (the same mapping in pager mode): active → composing, idle → paused.
            let state = match c.state {
                iscomposing::ComposingState::Active => "composing",
                iscomposing::ComposingState::Idle => "paused",
            };
            Ok((Payload::ChatState(state), None, false))
        }
        "message/imdn+xml" => {
            let n = imdn::parse(body).map_err(|e| reject(400, format!("IMDN body: {e}")))?;
            match n.notification {
                imdn::Notification::Delivery(imdn::DeliveryStatus::Delivered) => {
                    Ok((Payload::Receipt { id: n.message_id }, None, false))
                }
                imdn::Notification::Display(imdn::DisplayStatus::Displayed) => {
                    Ok((Payload::Displayed { id: n.message_id }, None, false))
                }
                // Failed/forbidden/error/processing notifications have no XMPP
                // equivalent: accept them (they are valid) and translate nothing.
                _ => Ok((Payload::Text(String::new()), None, false)),
            }
        }
        other => Err(reject(415, format!("unsupported content type {other}"))),
    }
}

/// RFC 7572 §5 (Table 2): a SIP MESSAGE → the `<message/>` to send.
///
/// `Ok(None)`: valid but nothing to deliver (an empty body, an IMDN status
/// XMPP cannot express); the caller answers 200.
pub fn sip_to_stanza(
    req: &SipRequest,
    from: &str,
    to: &str,
    id: &str,
    message_type: &str,
) -> Result<Option<Element>, Reject> {
    if req
        .header("Content-Encoding")
        .is_some_and(|e| !e.eq_ignore_ascii_case("identity"))
    {
        return Err(reject(415, "Content-Encoding not supported"));
    }
    let (payload, imdn_id, wants_delivery) = decode_body(req.header("Content-Type"), &req.body, 0)?;
    // With CPIM/IMDN the sender's message id becomes the stanza id, so that a
    // XEP-0184 receipt can be mapped back to an IMDN about that id.
    let id = imdn_id.as_deref().unwrap_or(id);
    let mut b = stanza::builder("message", from, to, id, Some(message_type));
    if let Some(lang) = req.header("Content-Language") {
        let lang = lang.split(',').next().unwrap_or(lang).trim();
        if !lang.is_empty() {
            b = stanza::with_lang(b, lang);
        }
    }
    let mut children = Vec::new();
    match payload {
        Payload::Text(t) if t.is_empty() => return Ok(None),
        Payload::Text(t) => {
            if let Some(subject) = req.header("Subject").filter(|s| !s.is_empty()) {
                children.push(stanza::text_child("subject", NS_COMPONENT, subject));
            }
            children.push(stanza::text_child("body", NS_COMPONENT, &t));
            children.push(Element::bare("active", NS_CHATSTATES));
            if wants_delivery {
                children.push(Element::bare("request", NS_RECEIPTS));
            }
        }
        Payload::ChatState(s) => children.push(Element::bare(s, NS_CHATSTATES)),
        Payload::Receipt { id } => children.push(stanza::id_child("received", NS_RECEIPTS, &id)),
        Payload::Displayed { id } => children.push(stanza::id_child("displayed", NS_MARKERS, &id)),
    }
    // RFC 7572 §5: Call-ID → <thread/>.
    if let Some(call_id) = req.header("Call-ID").filter(|c| !c.is_empty()) {
        children.push(stanza::text_child("thread", NS_COMPONENT, call_id));
    }
    Ok(Some(b.append_all(children).build()))
}

/// The SIP MESSAGE content derived from a `<message/>` (RFC 7572 §4, Table 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipContent {
    /// `Content-Type`.
    pub content_type: String,
    /// The body bytes.
    pub body: Vec<u8>,
    /// `Subject`.
    pub subject: Option<String>,
    /// `<thread/>` → `Call-ID`.
    pub thread: Option<String>,
    /// `xml:lang` → `Content-Language`.
    pub lang: Option<String>,
}

/// Why a `<message/>` is not translated: the stanza error to return.
#[derive(Debug, Clone, PartialEq)]
pub struct StanzaReject {
    /// The condition (RFC 6120 §8.3.3).
    pub condition: DefinedCondition,
    /// Human-readable text.
    pub text: String,
}

/// RFC 7572 §4: a `<message/>` to a gateway JID → the SIP MESSAGE content.
/// `sender_uri`/`target_uri` are the translated From and To (for CPIM).
///
/// `Ok(None)`: nothing SIP can carry (e.g. a bare `<active/>` chat state with
/// no body, or a message with only unknown extensions): nothing is sent.
/// `datetime` is the RFC 3339 time written into IMDN bodies (RFC 5438 §7.2
/// requires it); the caller passes its clock.
pub fn stanza_to_sip(msg: &Element, datetime: &str) -> Result<Option<SipContent>, StanzaReject> {
    let lang = stanza::lang(msg).map(str::to_string);
    let thread = msg.get_child("thread", NS_STANZA).map(|t| t.text());
    let subject = msg.get_child("subject", NS_STANZA).map(|t| t.text());
    let body = msg.get_child("body", NS_STANZA).map(|t| t.text());
    let base = |content_type: &str, body: Vec<u8>| SipContent {
        content_type: content_type.to_string(),
        body,
        subject: subject.clone(),
        thread: thread.clone(),
        lang: lang.clone(),
    };
    if let Some(body) = body {
        if body.is_empty() && subject.is_none() {
            return Ok(None);
        }
        return Ok(Some(base("text/plain;charset=UTF-8", body.into_bytes())));
    }
    // XEP-0184 receipt → RFC 5438 delivery notification; XEP-0333 displayed →
    // display notification.
    let imdn_for = |id: &str, notification| {
        let n = imdn::Imdn {
            message_id: id.to_string(),
            datetime: Some(datetime.to_string()),
            recipient_uri: None,
            original_recipient_uri: None,
            notification,
        };
        base("message/imdn+xml", n.to_xml().into_bytes())
    };
    if let Some(r) = msg.get_child("received", NS_RECEIPTS) {
        let Some(id) = r.attr("id").filter(|i| !i.trim().is_empty()) else {
            return Err(StanzaReject {
                condition: DefinedCondition::BadRequest,
                text: "receipt without id".into(),
            });
        };
        let delivered = imdn::Notification::Delivery(imdn::DeliveryStatus::Delivered);
        return Ok(Some(imdn_for(id, delivered)));
    }
    if let Some(id) = msg
        .get_child("displayed", NS_MARKERS)
        .and_then(|d| d.attr("id"))
        .filter(|i| !i.trim().is_empty())
    {
        let displayed = imdn::Notification::Display(imdn::DisplayStatus::Displayed);
        return Ok(Some(imdn_for(id, displayed)));
    }
    // XEP-0085 → RFC 3994 (RFC 7573 §7 mapping): composing → active, the rest → idle.
    for child in msg.children() {
        if child.ns() != NS_CHATSTATES {
            continue;
        }
        let state = match child.name() {
            "composing" => iscomposing::ComposingState::Active,
            // A bare <active/> only says "I'm here": SIP has nothing for it.
            "active" => return Ok(None),
            "paused" | "inactive" | "gone" => iscomposing::ComposingState::Idle,
            _ => continue,
        };
        let c = iscomposing::IsComposing {
            state,
            last_active: None,
            content_type: Some("text/plain".into()),
            refresh: if state == iscomposing::ComposingState::Active {
                Some(60)
            } else {
                None
            },
        };
        return Ok(Some(base(
            "application/im-iscomposing+xml",
            c.to_xml().into_bytes(),
        )));
    }
    if subject.is_some() {
        return Ok(Some(base("text/plain;charset=UTF-8", Vec::new())));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sipmsg::Transport;

    fn req(ct: Option<&str>, body: &[u8], extra: &[(&str, &str)]) -> SipRequest {
        let mut headers = vec![("Call-ID".to_string(), "abc@host".to_string())];
        if let Some(ct) = ct {
            headers.push(("Content-Type".into(), ct.into()));
        }
        for (n, v) in extra {
            headers.push(((*n).into(), (*v).into()));
        }
        SipRequest {
            method: "MESSAGE".into(),
            uri: "sip:alice@localhost".into(),
            headers,
            body: body.to_vec(),
            transport: Transport::Udp,
            source: None,
        }
    }

    fn translate(r: &SipRequest) -> Element {
        sip_to_stanza(
            r,
            "carol\\40pbx@sip.localhost",
            "alice@localhost",
            "id1",
            "chat",
        )
        .expect("translates")
        .expect("something to send")
    }

    #[test]
    fn text_plain_maps_body_thread_subject_lang() {
        let body = "héllo 你好 🎉 <&>\"'";
        let r = req(
            Some("text/plain;charset=UTF-8"),
            body.as_bytes(),
            &[("Subject", "Greetings"), ("Content-Language", "fr")],
        );
        let m = translate(&r);
        assert_eq!(m.attr("type"), Some("chat"));
        assert_eq!(m.attr("id"), Some("id1"));
        assert_eq!(
            m.get_child("body", NS_STANZA).map(|b| b.text()).as_deref(),
            Some(body)
        );
        assert_eq!(
            m.get_child("subject", NS_STANZA)
                .map(|b| b.text())
                .as_deref(),
            Some("Greetings")
        );
        assert_eq!(
            m.get_child("thread", NS_STANZA)
                .map(|b| b.text())
                .as_deref(),
            Some("abc@host")
        );
        assert_eq!(stanza::lang(&m), Some("fr"));
        // Serialised and parsed back, the body is byte-for-byte the same.
        let back: Element = stanza::to_string(&m).parse().expect("reparse");
        assert_eq!(
            back.get_child("body", NS_STANZA)
                .map(|b| b.text())
                .as_deref(),
            Some(body)
        );
    }

    #[test]
    fn latin1_is_converted_to_utf8() {
        let r = req(Some("text/plain; charset=ISO-8859-1"), b"caf\xe9", &[]);
        let m = translate(&r);
        assert_eq!(
            m.get_child("body", NS_STANZA).map(|b| b.text()).as_deref(),
            Some("café")
        );
    }

    #[test]
    fn html_is_reduced_to_text() {
        let r = req(
            Some("text/html"),
            b"<html><body><p>Hello <b>world</b></p></body></html>",
            &[],
        );
        let m = translate(&r);
        let body = m
            .get_child("body", NS_STANZA)
            .map(|b| b.text())
            .unwrap_or_default();
        assert!(body.contains("Hello world"), "{body:?}");
        assert!(!body.contains('<'));
    }

    #[test]
    fn cpim_is_unwrapped_and_imdn_id_kept() {
        let cpim = "From: <sip:carol@pbx>\r\nTo: <sip:alice@localhost>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: 34jk324j\r\nimdn.Disposition-Notification: positive-delivery\r\n\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi there";
        let r = req(Some("message/cpim"), cpim.as_bytes(), &[]);
        let m = translate(&r);
        assert_eq!(
            m.get_child("body", NS_STANZA).map(|b| b.text()).as_deref(),
            Some("hi there")
        );
        assert_eq!(m.attr("id"), Some("34jk324j"));
        assert!(m.has_child("request", NS_RECEIPTS));
    }

    #[test]
    fn iscomposing_maps_to_chat_states() {
        let active = "<?xml version='1.0'?><isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'><state>active</state><refresh>60</refresh></isComposing>";
        let m = translate(&req(
            Some("application/im-iscomposing+xml"),
            active.as_bytes(),
            &[],
        ));
        assert!(m.has_child("composing", NS_CHATSTATES));
        assert!(!m.has_child("body", NS_STANZA));
        let idle = active.replace(">active<", ">idle<");
        let m = translate(&req(
            Some("application/im-iscomposing+xml"),
            idle.as_bytes(),
            &[],
        ));
        assert!(m.has_child("paused", NS_CHATSTATES));
    }

    #[test]
    fn imdn_maps_to_receipt_and_marker() {
        let delivered = "<?xml version='1.0' encoding='UTF-8'?><imdn xmlns='urn:ietf:params:xml:ns:imdn'><message-id>m-42</message-id><datetime>2008-04-04T12:16:49-08:00</datetime><delivery-notification><status><delivered/></status></delivery-notification></imdn>";
        let m = translate(&req(Some("message/imdn+xml"), delivered.as_bytes(), &[]));
        assert_eq!(
            m.get_child("received", NS_RECEIPTS)
                .and_then(|r| r.attr("id")),
            Some("m-42")
        );
        let displayed = "<imdn xmlns='urn:ietf:params:xml:ns:imdn'><message-id>m-43</message-id><display-notification><status><displayed/></status></display-notification></imdn>";
        let m = translate(&req(Some("message/imdn+xml"), displayed.as_bytes(), &[]));
        assert_eq!(
            m.get_child("displayed", NS_MARKERS)
                .and_then(|r| r.attr("id")),
            Some("m-43")
        );
    }

    #[test]
    fn unknown_type_is_415_and_garbage_is_400() {
        let cases: [(Option<&str>, &[u8], u16); 4] = [
            (Some("image/png"), b"\x89PNG", 415),
            (Some("text/plain;charset=utf-8"), b"\xff\xfe\xfd", 400),
            (Some("application/im-iscomposing+xml"), b"<nope", 400),
            (None, b"text without type", 400),
        ];
        for (ct, body, code) in cases {
            let e = sip_to_stanza(&req(ct, body, &[]), "a@c", "b@h", "1", "chat")
                .expect_err("rejected");
            assert_eq!(e.code, code, "{ct:?}");
        }
    }

    #[test]
    fn empty_body_sends_nothing() {
        assert_eq!(
            sip_to_stanza(&req(None, b"", &[]), "a@c", "b@h", "1", "chat"),
            Ok(None)
        );
    }

    fn parse(xml: &str) -> Element {
        xml.parse().expect("xml")
    }

    #[test]
    fn stanza_body_subject_thread_lang_to_sip() {
        let m = parse("<message xmlns='jabber:client' xml:lang='de' to='x@c' from='a@h/r' id='s1'><subject>S</subject><body>grüß 🎉 &lt;&amp;&gt;</body><thread>t-1</thread></message>");
        let c = stanza_to_sip(&m, "2026-11-25T12:00:00Z")
            .expect("ok")
            .expect("content");
        assert_eq!(c.content_type, "text/plain;charset=UTF-8");
        assert_eq!(c.body, "grüß 🎉 <&>".as_bytes());
        assert_eq!(c.subject.as_deref(), Some("S"));
        assert_eq!(c.thread.as_deref(), Some("t-1"));
        assert_eq!(c.lang.as_deref(), Some("de"));
    }

    #[test]
    fn chat_states_and_receipts_to_sip() {
        let m = parse("<message xmlns='jabber:client' to='x@c' from='a@h/r'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
        let c = stanza_to_sip(&m, "2026-11-25T12:00:00Z")
            .expect("ok")
            .expect("content");
        assert_eq!(c.content_type, "application/im-iscomposing+xml");
        let parsed = iscomposing::parse(&c.body).expect("valid isComposing");
        assert_eq!(parsed.state, iscomposing::ComposingState::Active);

        let m = parse("<message xmlns='jabber:client' to='x@c' from='a@h/r'><paused xmlns='http://jabber.org/protocol/chatstates'/></message>");
        let c = stanza_to_sip(&m, "2026-11-25T12:00:00Z")
            .expect("ok")
            .expect("content");
        assert_eq!(
            iscomposing::parse(&c.body).expect("valid").state,
            iscomposing::ComposingState::Idle
        );

        let m = parse("<message xmlns='jabber:client' to='x@c' from='a@h/r'><active xmlns='http://jabber.org/protocol/chatstates'/></message>");
        assert_eq!(stanza_to_sip(&m, "2026-11-25T12:00:00Z"), Ok(None));

        let m = parse("<message xmlns='jabber:client' to='x@c' from='a@h/r'><received xmlns='urn:xmpp:receipts' id='m-9'/></message>");
        let c = stanza_to_sip(&m, "2026-11-25T12:00:00Z")
            .expect("ok")
            .expect("content");
        assert_eq!(c.content_type, "message/imdn+xml");
        let n = imdn::parse(&c.body).expect("valid imdn");
        assert_eq!(n.message_id, "m-9");
        assert_eq!(
            n.notification,
            imdn::Notification::Delivery(imdn::DeliveryStatus::Delivered)
        );

        let m = parse("<message xmlns='jabber:client' to='x@c' from='a@h/r'><received xmlns='urn:xmpp:receipts'/></message>");
        assert_eq!(
            stanza_to_sip(&m, "2026-11-25T12:00:00Z")
                .expect_err("no id")
                .condition,
            DefinedCondition::BadRequest
        );
    }
}

//! The properties the fuzz targets and `gateway/tests/robustness.rs` check, in one place.
//!
//! Every function takes input from the network (bytes, or a value decoded from bytes)
//! and panics only when a property of stox is broken: a panic inside stox, or an
//! assertion below. The fuzz targets call the `&[u8]` entry points; the proptests call
//! the typed ones with generated values, and replay `fuzz/regressions/<target>/*` through
//! [`run_target`].
//!
//! The byte decoders ([`Reader`]) map bytes to choices among realistic values (the
//! dictionaries below) with arbitrary text as the fallback, so that random bytes reach
//! deep paths: a MESSAGE that translates, a bounce with the id of a pending message.
//!
//! This file is compiled twice: as `stox_fuzz::checks` in the cargo-fuzz crate and as a
//! module of the `robustness` integration test of stox-gateway (`#[path]`), so it uses
//! only crates both have.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use stox_gateway::core::{Gateway, Input, Output, SendFailure, Settings, TxId};
use stox_gateway::io::badsip::bad_request_response;
use stox_gateway::sipmsg::{SipRequest, SipResponse, Transport};
use stox_gateway::stanza;
use stox_gateway::translate::address::Addresses;
use stox_gateway::translate::im;
use stox_sip::body::{content_type::ContentType, cpim, html, imdn, iscomposing, text};
use stox_sip::uri::{Scheme, SipUri};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::DefinedCondition;

/// Home domain `H` of every check.
pub const HOME: &str = "localhost";
/// Component domain `C` of every check.
pub const COMPONENT: &str = "sip.localhost";
/// The bounce window of the core under test.
pub const WINDOW: Duration = Duration::from_millis(300);
/// The id seed of the core under test: its stanza ids are `stox-0000000000000007-N`.
pub const SEED: u64 = 7;

/// Bug 1 (fixed): text from SIP with a character XML 1.0 forbids (a C0 control other
/// than tab, LF, CR; U+FFFE; U+FFFF) reached a stanza, and serializing it panicked in
/// minidom. Returns the first such character of `e`.
pub fn xml_forbidden_char(e: &Element) -> Option<char> {
    let bad = |s: &str| {
        s.chars().find(|&c| {
            (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{fffe}' || c == '\u{ffff}'
        })
    };
    e.attrs()
        .values()
        .find_map(|v| bad(v))
        .or_else(|| e.texts().find_map(bad))
        .or_else(|| e.children().find_map(xml_forbidden_char))
}

/// Removes what XML 1.0 cannot carry, so that generated stanzas are ones a link delivers.
fn xml_safe(s: String) -> String {
    s.chars()
        .filter(|&c| {
            !((c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{fffe}' || c == '\u{ffff}')
        })
        .collect()
}

/// A valid XML name, or `x`.
fn xml_name(s: String) -> String {
    let ok = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        s
    } else {
        "x".to_string()
    }
}

/// The fuzz targets, by directory name under `fuzz/regressions/`.
pub const TARGETS: &[&str] = &[
    "sip_message",
    "sip_uri",
    "address",
    "sip_to_xmpp",
    "xmpp_to_sip",
    "bodies",
    "gateway_core",
];

/// Runs the check of fuzz target `target` on `data`. Returns `false` for an unknown target.
pub fn run_target(target: &str, data: &[u8]) -> bool {
    match target {
        "sip_message" => sip_message(data),
        "sip_uri" => sip_uri(data),
        "address" => address(data),
        "sip_to_xmpp" => sip_to_xmpp(data),
        "xmpp_to_sip" => xmpp_to_sip(data),
        "bodies" => bodies(data),
        "gateway_core" => gateway_core(data),
        _ => return false,
    }
    true
}

// ------------------------------------------------------------------ byte decoding

/// Reads choices out of fuzz bytes; past the end every read yields zero / empty.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte (0 at the end).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from(self.byte()) | (u16::from(self.byte()) << 8)
    }

    /// Up to `max` raw bytes, length taken from the input.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = (usize::from(self.u16()) % (max + 1)).min(self.data.len());
        let (head, rest) = self.data.split_at(len);
        self.data = rest;
        head.to_vec()
    }

    /// Arbitrary text (lossy UTF-8) of up to `max` bytes.
    pub fn text(&mut self, max: usize) -> String {
        String::from_utf8_lossy(&self.bytes(max)).into_owned()
    }

    /// One of `known`, or (for a byte past the list) arbitrary text.
    pub fn choice(&mut self, known: &[&str]) -> String {
        let b = usize::from(self.byte());
        match known.get(b % (known.len() + 2)) {
            Some(s) => (*s).to_string(),
            None => self.text(64),
        }
    }

    /// The rest of the input.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

const METHODS: &[&str] = &[
    "MESSAGE",
    "MESSAGE",
    "MESSAGE",
    "OPTIONS",
    "INVITE",
    "SUBSCRIBE",
];
const TARGET_URIS: &[&str] = &[
    "sip:alice@localhost",
    "sip:alice@localhost;gr=phone",
    "sip:bob%40example.net@sip.localhost",
    "sip:dave@sip.localhost",
    "sips:alice@localhost",
    "sip:nobody@localhost",
    "sip:x@elsewhere.example",
    "sip:localhost",
    "sip:%00@localhost",
    "tel:+15550100",
];
const FROMS: &[&str] = &[
    "<sip:carol@127.0.0.1:5080>;tag=1",
    "\"Carol\" <sip:carol@pbx.example;gr=x>;tag=2",
    "sip:c@pbx;tag=3",
    "<sips:c@pbx>;tag=4",
    "<sip:dave@sip.localhost>;tag=5",
    "<sip:alice@localhost>",
    "<sip:%e2%80%ae@pbx>",
    "<sip:pbx.example>",
];
const CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "text/plain;charset=UTF-8",
    "text/plain; charset=ISO-8859-1",
    "text/plain; charset=utf-16",
    "text/html",
    "message/cpim",
    "application/im-iscomposing+xml",
    "message/imdn+xml",
    "image/png",
    "text/plain; charset=\"x",
];
const HEADER_NAMES: &[&str] = &[
    "Subject",
    "Content-Language",
    "Call-ID",
    "i",
    "Max-Forwards",
    "Content-Encoding",
    "c",
    "f",
    "s",
];

/// A body for `content_type`: a well-formed one around fuzz text, or raw bytes.
fn body_for(r: &mut Reader<'_>, content_type: Option<&str>) -> Vec<u8> {
    let templated = r.byte() & 3 != 0;
    let ct = content_type.unwrap_or("");
    if !templated {
        return r.bytes(2048);
    }
    if ct.starts_with("message/cpim") {
        let id = r.choice(&[
            "stox-0000000000000007-1",
            "stox-0000000000000007-2",
            "m-1",
            "",
        ]);
        let inner = r.choice(&[
            "text/plain; charset=utf-8",
            "text/html",
            "message/cpim",
            "image/png",
        ]);
        let dn = r.choice(&[
            "positive-delivery",
            "positive-delivery, display",
            "negative-delivery",
        ]);
        let text = r.text(256);
        format!(
            "From: <sip:carol@pbx>\r\nTo: <sip:alice@localhost>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {id}\r\nimdn.Disposition-Notification: {dn}\r\n\r\nContent-Type: {inner}\r\n\r\n{text}"
        )
        .into_bytes()
    } else if ct.starts_with("application/im-iscomposing") {
        let state = r.choice(&["active", "idle"]);
        let refresh = r.choice(&["60", "0", "-1", "99999999999999999999"]);
        format!("<?xml version='1.0'?><isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'><state>{state}</state><refresh>{refresh}</refresh></isComposing>").into_bytes()
    } else if ct.starts_with("message/imdn") {
        let id = r.choice(&["stox-0000000000000007-1", "m-1", ""]);
        let kind = r.choice(&[
            "delivery-notification><status><delivered/></status></delivery-notification",
            "display-notification><status><displayed/></status></display-notification",
            "delivery-notification><status><failed/></status></delivery-notification",
        ]);
        format!("<?xml version='1.0' encoding='UTF-8'?><imdn xmlns='urn:ietf:params:xml:ns:imdn'><message-id>{id}</message-id><datetime>2008-04-04T12:16:49-08:00</datetime><{kind}></imdn>").into_bytes()
    } else {
        r.bytes(2048)
    }
}

/// A SIP request as the io layer would hand it to the core, decoded from fuzz bytes.
pub fn sip_request(r: &mut Reader<'_>) -> SipRequest {
    let method = r.choice(METHODS);
    let uri = r.choice(TARGET_URIS);
    let mut headers = vec![
        (
            "Via".to_string(),
            "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1".to_string(),
        ),
        ("To".to_string(), format!("<{uri}>")),
        ("CSeq".to_string(), format!("1 {method}")),
    ];
    if r.byte() & 7 != 0 {
        headers.push(("From".to_string(), r.choice(FROMS)));
    }
    if r.byte() & 3 != 0 {
        headers.push(("Call-ID".to_string(), r.choice(&["call-1@pbx", "", "a b"])));
    }
    let content_type = (r.byte() & 7 != 0).then(|| r.choice(CONTENT_TYPES));
    if let Some(ct) = &content_type {
        headers.push(("Content-Type".to_string(), ct.clone()));
    }
    for _ in 0..(r.byte() % 4) {
        let name = r.choice(HEADER_NAMES);
        let value = r.choice(&[
            "70",
            "0",
            "fr, en",
            "identity",
            "gzip",
            "Hello",
            "text/plain",
        ]);
        headers.push((name, value));
    }
    let body = body_for(r, content_type.as_deref());
    SipRequest {
        method,
        uri,
        headers,
        body,
        transport: if r.byte() & 1 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        },
    }
}

const JID_TARGETS: &[&str] = &[
    "bob\\40127.0.0.1\\3a5080@sip.localhost",
    "carol%pbx.example@sip.localhost",
    "dave@sip.localhost/res",
    "sip.localhost",
    "alice@localhost",
    "\\40pbx@sip.localhost",
    "x\\40@sip.localhost",
    "carol\\40pbx.example@sip.localhost/x",
];
const JID_SENDERS: &[&str] = &[
    "alice@localhost/phone",
    "alice@localhost",
    "bob@example.net/x",
    "localhost",
    "x@sip.localhost",
    "m\\26m@localhost",
    "tschüss@localhost/Ünï",
];
const CHILD_NS: &[&str] = &[
    stanza::NS_CLIENT,
    stanza::NS_CHATSTATES,
    stanza::NS_RECEIPTS,
    stanza::NS_MARKERS,
    "urn:example:unknown",
];
const CHILD_NAMES: &[&str] = &[
    "body",
    "subject",
    "thread",
    "composing",
    "paused",
    "active",
    "gone",
    "inactive",
    "received",
    "displayed",
    "request",
    "error",
];
const CONDITIONS: &[DefinedCondition] = &[
    DefinedCondition::ItemNotFound,
    DefinedCondition::ServiceUnavailable,
    DefinedCondition::RecipientUnavailable,
    DefinedCondition::RemoteServerNotFound,
    DefinedCondition::Forbidden,
    DefinedCondition::UndefinedCondition,
];

/// A `<message/>` decoded from fuzz bytes, as the component link would deliver it:
/// serialized and parsed again, so it holds only what XML can carry. `None` when the
/// generated text does not survive that (the link would never deliver it).
pub fn message_stanza(r: &mut Reader<'_>, id: Option<&str>) -> Option<Element> {
    let kind = xml_safe(r.choice(&["chat", "normal", "error", "groupchat", "headline", "-"]));
    let kind = (kind != "-").then_some(kind);
    let to = xml_safe(r.choice(JID_TARGETS));
    let from = xml_safe(r.choice(JID_SENDERS));
    let id = match id {
        Some(i) => i.to_string(),
        None => xml_safe(r.choice(&["m1", "m2", ""])),
    };
    let mut b = stanza::builder("message", &from, &to, &id, kind.as_deref());
    if r.byte() & 3 == 0 {
        b = stanza::with_lang(b, &xml_safe(r.choice(&["en", "fr", ""])));
    }
    let mut children = Vec::new();
    for _ in 0..(r.byte() % 5) {
        let name = xml_name(r.choice(CHILD_NAMES));
        let ns = xml_safe(r.choice(CHILD_NS));
        let child = match name.as_str() {
            "received" | "displayed" => {
                stanza::id_child(&name, &ns, &xml_safe(r.choice(&["m-1", ""])))
            }
            "error" => stanza::error_child(
                &CONDITIONS[usize::from(r.byte()) % CONDITIONS.len()],
                Some(&xml_safe(r.text(64))),
            ),
            _ => stanza::text_child(&name, &ns, &xml_safe(r.text(512))),
        };
        children.push(child);
    }
    let built = b.append_all(children).build();
    stanza::to_string(&built).parse().ok()
}

// ---------------------------------------------------------------- the checks

/// Asserts that `e` serializes to XML that parses back to the same element.
pub fn assert_reparses(e: &Element) {
    let xml = stanza::to_string(e);
    let back: Element = match xml.parse() {
        Ok(b) => b,
        Err(err) => panic!("stox wrote XML it cannot read back ({err}): {xml:?}"),
    };
    // XML end-of-line handling (XML 1.0 §2.11) turns CR LF and lone CR into LF.
    let normalized = xml.replace("\r\n", "\n").replace('\r', "\n");
    assert_eq!(
        stanza::to_string(&back),
        normalized,
        "the element changed through XML"
    );
}

/// `sip_message`: arbitrary bytes from a SIP socket through rsipstack's parser, then
/// either the core (a request it accepted) or `badsip` (one it refused). The 400 that
/// badsip writes must be one well-formed message: CRLF line ends only, no header
/// split or injected by the input.
pub fn sip_message(data: &[u8]) {
    match rsipstack::sip::SipMessage::try_from(data) {
        Ok(rsipstack::sip::SipMessage::Request(req)) => {
            // What io::on_server_transaction builds.
            let value = SipRequest {
                method: req.method.to_string(),
                uri: req.uri.to_string(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| (h.name().to_string(), h.value().to_string()))
                    .collect(),
                body: req.body.clone(),
                transport: Transport::Udp,
            };
            core_answers_once(value);
        }
        Ok(rsipstack::sip::SipMessage::Response(_)) => {}
        Err(e) => {
            let why = e.to_string();
            if let Some(resp) = bad_request_response(data, &why) {
                assert_well_formed_400(&resp);
            }
        }
    }
}

/// The 400 badsip writes: one status line, CRLF-terminated header lines, an empty line.
pub fn assert_well_formed_400(resp: &[u8]) {
    let text = std::str::from_utf8(resp).expect("badsip writes UTF-8");
    assert!(text.starts_with("SIP/2.0 400 Bad Request\r\n"), "{text:?}");
    assert!(text.ends_with("\r\n\r\n"), "{text:?}");
    let head = &text[..text.len() - 2];
    for line in head.split_terminator("\r\n") {
        assert!(
            !line.contains(['\r', '\n']),
            "bare CR or LF inside a header line of the 400: {line:?} in {text:?}"
        );
    }
    assert_eq!(
        text.matches("\r\n\r\n").count(),
        1,
        "the 400 has a second blank line: {text:?}"
    );
}

/// One request through a fresh core with the link up: exactly one reply.
pub fn core_answers_once(req: SipRequest) {
    let mut d = Driver::new();
    d.input(Input::LinkUp);
    d.sip(req);
    d.finish();
}

/// `sip_uri`: any text as a SIP URI; a parsed URI displays as text that parses back to
/// the same URI (the core writes URIs with Display and the io layer parses them again).
pub fn sip_uri(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_sip_uri(&text);
}

/// Typed form of [`sip_uri`].
pub fn check_sip_uri(text: &str) {
    if let Ok(uri) = text.parse::<SipUri>() {
        let shown = uri.to_string();
        assert_eq!(
            shown.parse::<SipUri>().as_ref(),
            Ok(&uri),
            "{text:?} displays as {shown:?}"
        );
    }
}

/// `address`: a SIP URI through both SIP → JID directions and a JID through both
/// JID → SIP directions. Whatever comes out is valid on the other side, and the
/// component address of a SIP sender reads back to a URI with the same JID
/// (sender → JID → target → JID is a fixed point).
pub fn address(data: &[u8]) {
    let mut r = Reader::new(data);
    let uri = r.choice(TARGET_URIS);
    let jid = r.choice(JID_TARGETS);
    check_address(&uri, &jid);
    let text = String::from_utf8_lossy(r.rest()).into_owned();
    check_address(&text, &text);
}

/// Typed form of [`address`].
pub fn check_address(uri: &str, jid: &str) {
    let a = Addresses::new(HOME, COMPONENT).expect("valid domains");
    if let Ok(uri) = uri.parse::<SipUri>() {
        if let Ok(j) = a.sip_target_to_jid(&uri) {
            let back: Jid = j.to_string().parse().expect("a translated JID reparses");
            assert_eq!(back, j);
        }
        if let Ok(j) = a.sip_sender_to_jid(&uri) {
            assert_eq!(
                j.domain().as_str(),
                COMPONENT,
                "a SIP sender is always at C"
            );
            assert_ne!(uri.scheme, Scheme::Sips);
            let target = a
                .jid_target_to_sip(&j)
                .unwrap_or_else(|e| panic!("sender {uri} → {j} has no way back: {e}"));
            let again = a
                .sip_sender_to_jid(&target)
                .unwrap_or_else(|e| panic!("{uri} → {j} → {target} is no sender: {e}"));
            assert_eq!(
                again.to_bare(),
                j.to_bare(),
                "{uri} → {j} → {target} → {again}"
            );
            check_sip_uri(&target.to_string());
        }
    }
    if let Ok(j) = jid.parse::<Jid>() {
        for out in [a.jid_target_to_sip(&j), a.jid_sender_to_sip(&j)]
            .into_iter()
            .flatten()
        {
            let shown = out.to_string();
            assert_eq!(shown.parse::<SipUri>().as_ref(), Ok(&out), "{j} → {shown}");
            // The request the io layer builds from it must pass rsipstack's parser.
            let msg = format!(
                "MESSAGE {shown} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <{shown}>;tag=1\r\nTo: <{shown}>\r\nCall-ID: 1@stox\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
            );
            if let Err(e) = rsipstack::sip::Request::try_from(msg.as_bytes()) {
                panic!("{j} → {shown}: rsipstack refuses the request stox would send: {e}");
            }
        }
    }
}

/// `sip_to_xmpp`: a decoded SIP request through `im::sip_to_stanza`.
pub fn sip_to_xmpp(data: &[u8]) {
    let mut r = Reader::new(data);
    check_sip_to_stanza(&sip_request(&mut r));
}

/// Typed form of [`sip_to_xmpp`]: the result is a stanza that survives XML, nothing, or a
/// 4xx reject.
pub fn check_sip_to_stanza(req: &SipRequest) {
    let from = "carol\\40pbx@sip.localhost";
    match im::sip_to_stanza(req, from, "alice@localhost", "id1", "chat") {
        Ok(Some(e)) => {
            assert_eq!(e.name(), "message");
            assert_eq!(e.attr("from"), Some(from));
            if let Some(c) = xml_forbidden_char(&e) {
                panic!("U+{:04X} from SIP reaches the stanza (bug 1)", u32::from(c));
            }
            assert_reparses(&e);
        }
        Ok(None) => {}
        Err(rej) => assert!((400..500).contains(&rej.code), "{rej:?}"),
    }
}

/// `xmpp_to_sip`: arbitrary bytes as an element (the first byte picks between raw XML
/// and a generated `<message/>`) through `im::stanza_to_sip`.
pub fn xmpp_to_sip(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let element = if mode % 2 == 0 {
        std::str::from_utf8(rest)
            .ok()
            .and_then(|s| s.parse::<Element>().ok())
    } else {
        message_stanza(&mut Reader::new(rest), None)
    };
    if let Some(e) = element {
        check_stanza_to_sip(&e);
    }
}

/// Typed form of [`xmpp_to_sip`]: what comes out is a body stox itself can read back.
pub fn check_stanza_to_sip(e: &Element) {
    let Ok(Some(c)) = im::stanza_to_sip(e, "2026-11-25T12:00:00Z") else {
        return;
    };
    let ct: ContentType = c
        .content_type
        .parse()
        .expect("stox writes a valid Content-Type");
    match ct.mime.as_str() {
        "text/plain" => {
            text::decode_text(&c.body, ct.charset()).expect("UTF-8 text body");
        }
        "message/imdn+xml" => {
            let id = e
                .get_child("received", stanza::NS_RECEIPTS)
                .or_else(|| e.get_child("displayed", stanza::NS_MARKERS))
                .and_then(|x| x.attr("id"));
            let n = imdn::parse(&c.body).unwrap_or_else(|err| {
                panic!(
                    "stox wrote an IMDN it cannot parse ({err}): {:?}",
                    String::from_utf8_lossy(&c.body)
                )
            });
            // The IMDN parser trims the id (XML whitespace around element content).
            assert_eq!(
                Some(n.message_id.as_str()),
                id.map(str::trim),
                "the IMDN lost the message id"
            );
        }
        "application/im-iscomposing+xml" => {
            iscomposing::parse(&c.body)
                .unwrap_or_else(|err| panic!("stox wrote an isComposing it cannot parse: {err}"));
        }
        other => panic!("unexpected content type {other}"),
    }
}

/// `bodies`: the first byte picks a body parser, the rest is its input.
pub fn bodies(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    check_body(which, rest);
}

/// Typed form of [`bodies`]. Parsers must not panic; what they accept survives their
/// own serializer where one exists.
pub fn check_body(which: u8, body: &[u8]) {
    match which % 6 {
        0 => {
            if let Ok(ct) = String::from_utf8_lossy(body).parse::<ContentType>() {
                let shown = ct.to_string();
                let again: ContentType = shown
                    .parse()
                    .unwrap_or_else(|e| panic!("Content-Type {shown:?} does not reparse: {e}"));
                assert_eq!(again.mime, ct.mime, "{shown:?}");
            }
        }
        1 => {
            let (label, rest) = match body.split_first() {
                Some((&n, rest)) => {
                    let n = usize::from(n % 16).min(rest.len());
                    (
                        Some(String::from_utf8_lossy(&rest[..n]).into_owned()),
                        &rest[n..],
                    )
                }
                None => (None, body),
            };
            let _ = text::decode_text(rest, label.as_deref());
        }
        2 => {
            let out = html::html_to_text(&String::from_utf8_lossy(body));
            assert!(
                out.len() <= body.len() * 4 + 16,
                "html_to_text blew up the input"
            );
        }
        3 => {
            if let Ok(m) = cpim::parse(body) {
                let _ = m.imdn_message_id();
                let _ = m.disposition_notification();
                let _ = m.from();
            }
        }
        4 => {
            if let Ok(c) = iscomposing::parse(body) {
                let again =
                    iscomposing::parse(c.to_xml().as_bytes()).expect("own isComposing reparses");
                assert_eq!(again.state, c.state);
            }
        }
        _ => {
            if let Ok(n) = imdn::parse(body) {
                let again = imdn::parse(n.to_xml().as_bytes()).expect("own IMDN reparses");
                assert_eq!(again, n);
            }
        }
    }
}

// ------------------------------------------------------------- the core, driven

/// One step of a [`gateway_core`] run.
#[derive(Debug)]
pub enum Op {
    /// A new SIP server transaction.
    Sip(SipRequest),
    /// A stanza from the link.
    Stanza(Element),
    /// An error bounce of the `n`th message stox sent (modulo how many), from a full JID or not.
    Bounce {
        /// Which sent message.
        n: usize,
        /// The condition.
        condition: usize,
        /// From the full JID.
        full: bool,
    },
    /// The outcome of the `n`th open client transaction.
    Response {
        /// Which one.
        n: usize,
        /// Its final status, or a failure when `None`.
        code: Option<u16>,
    },
    /// The link goes down if up, up if down (the link driver alternates them).
    Toggle,
    /// Time passes.
    Advance(Duration),
}

/// Decodes a sequence of ops (at most 64).
pub fn ops(data: &[u8]) -> Vec<Op> {
    let mut r = Reader::new(data);
    let mut v = Vec::new();
    while !r.is_empty() && v.len() < 64 {
        let op = match r.byte() % 8 {
            0 | 1 => Op::Sip(sip_request(&mut r)),
            2 => match message_stanza(&mut r, None) {
                Some(s) => Op::Stanza(s),
                None => continue,
            },
            3 => Op::Bounce {
                n: usize::from(r.byte()),
                condition: usize::from(r.byte()),
                full: r.byte() & 1 == 0,
            },
            4 => {
                let n = usize::from(r.byte());
                let code = match r.byte() % 12 {
                    0 => None,
                    1 => Some(r.u16()),
                    k => Some(
                        [100, 180, 200, 202, 404, 408, 486, 488, 500, 503, 603][usize::from(k) - 1],
                    ),
                };
                Op::Response { n, code }
            }
            5 => Op::Toggle,
            _ => Op::Advance(Duration::from_millis(u64::from(r.byte()) * 5)),
        };
        v.push(op);
    }
    v
}

/// `gateway_core`: a byte-driven sequence of inputs; see [`run_core`].
pub fn gateway_core(data: &[u8]) {
    run_core(ops(data));
}

/// Drives a fresh core through `ops`, then lets the clock run out. Checks: no panic; each
/// SIP request is answered exactly once, with a final status, and only requests are
/// answered; client transaction ids never collide; every stanza survives XML; once the
/// link is up and every window has closed, the outbox is empty (nothing is resent
/// forever).
pub fn run_core(ops: Vec<Op>) {
    let mut d = Driver::new();
    for op in ops {
        match op {
            Op::Sip(req) => {
                d.sip(req);
            }
            Op::Stanza(s) => d.input(Input::Stanza(s)),
            Op::Bounce { n, condition, full } => {
                if d.sent.is_empty() {
                    continue;
                }
                let (id, from, to) = d.sent[n % d.sent.len()].clone();
                let bouncer = if full { format!("{to}/phone") } else { to };
                let cond = &CONDITIONS[condition % CONDITIONS.len()];
                let b = stanza::builder("message", &bouncer, &from, &id, Some("error"))
                    .append(stanza::error_child(cond, Some("bounced")))
                    .build();
                d.input(Input::Stanza(b));
            }
            Op::Response { n, code } => {
                if d.open.is_empty() {
                    continue;
                }
                let tx = d.open.remove(n % d.open.len());
                let result = match code {
                    Some(code) => Ok(SipResponse {
                        code,
                        reason: "fuzz".into(),
                    }),
                    None => Err(SendFailure::Timeout),
                };
                d.input(Input::SipResponse { tx, result });
            }
            Op::Toggle => {
                let i = if d.gw.link_up() {
                    Input::LinkDown
                } else {
                    Input::LinkUp
                };
                d.input(i);
            }
            Op::Advance(by) => {
                d.now += by;
                d.gw.handle_timeout(d.now);
                d.drain();
            }
        }
    }
    d.finish();
}

/// A core with the in-memory store and a fake clock, and the bookkeeping of the checks.
pub struct Driver {
    /// The core.
    pub gw: Gateway,
    /// Its store.
    pub store: stox_mappings::Store,
    /// The fake clock.
    pub now: Instant,
    next_tx: TxId,
    /// Requests not answered yet.
    waiting: BTreeSet<TxId>,
    /// Requests answered, with the code.
    answered: HashMap<TxId, u16>,
    /// Open client transactions.
    open: Vec<TxId>,
    client_ids: BTreeSet<TxId>,
    /// Messages stox sent: (id, from, to).
    sent: Vec<(String, String, String)>,
}

impl Default for Driver {
    fn default() -> Self {
        Self::new()
    }
}

impl Driver {
    /// A fresh core, link down.
    pub fn new() -> Self {
        let now = Instant::now();
        let settings = Settings {
            home: HOME.into(),
            component: COMPONENT.into(),
            message_type: "chat".into(),
            bounce_window: WINDOW,
            udp_max_bytes: 1300,
            default_transport: Transport::Udp,
            epoch: (
                now,
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_072_000),
            ),
            calls: Default::default(),
        };
        let store = stox_mappings::Store::memory();
        let gw = Gateway::new(settings, store.mappings.clone(), store.outbox.clone(), SEED)
            .expect("valid settings");
        Driver {
            gw,
            store,
            now,
            next_tx: 1,
            waiting: BTreeSet::new(),
            answered: HashMap::new(),
            open: Vec::new(),
            client_ids: BTreeSet::new(),
            sent: Vec::new(),
        }
    }

    /// Feeds a SIP request under a new server transaction id; returns the id.
    pub fn sip(&mut self, req: SipRequest) -> TxId {
        let tx = self.next_tx;
        self.next_tx += 1;
        self.waiting.insert(tx);
        self.input(Input::SipRequest { tx, req });
        tx
    }

    /// Feeds one input and drains the outputs.
    pub fn input(&mut self, i: Input) {
        self.gw.handle_input(self.now, i);
        self.drain();
    }

    /// The code a request was answered with, if it was.
    pub fn answer(&self, tx: TxId) -> Option<u16> {
        self.answered.get(&tx).copied()
    }

    /// Drains `poll_output`, checking each output.
    pub fn drain(&mut self) {
        while let Some(o) = self.gw.poll_output() {
            match o {
                Output::SipReply { tx, code, .. } => {
                    assert!(
                        self.waiting.remove(&tx),
                        "reply {code} to transaction {tx}, which is {}",
                        match self.answered.get(&tx) {
                            Some(c) => format!("already answered {c}"),
                            None => "not a request".to_string(),
                        }
                    );
                    assert!((200..700).contains(&code), "final response code {code}");
                    self.answered.insert(tx, code);
                }
                Output::SipSend { tx, req, .. } => {
                    assert!(
                        tx >= self.next_tx && self.client_ids.insert(tx),
                        "client transaction id {tx} reused"
                    );
                    check_sip_uri(&req.uri);
                    self.open.push(tx);
                }
                // Calls are driven by INVITEs and Jingle, which these checks do not feed.
                Output::Dialog { .. } | Output::Media { .. } => {}
                Output::Stanza(s) => {
                    assert_reparses(&s);
                    if s.name() == "message" && s.attr("type") != Some("error") {
                        let attr = |n: &str| s.attr(n).unwrap_or_default().to_string();
                        self.sent.push((attr("id"), attr("from"), attr("to")));
                    }
                }
            }
        }
    }

    /// Lets every timer run out (link as it is), checks every request was answered, then
    /// brings the link up, lets the resent messages' windows close and checks the outbox
    /// is empty.
    pub fn finish(&mut self) {
        self.run_out();
        assert!(
            self.waiting.is_empty(),
            "requests never answered: {:?}",
            self.waiting
        );
        if !self.gw.link_up() {
            self.input(Input::LinkUp);
        }
        self.run_out();
        assert_eq!(
            self.gw.outbox_len(),
            0,
            "messages stuck in the outbox (resent at every reconnect): {:?}",
            self.store.outbox.pending().map(|p| p
                .into_iter()
                .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
                .collect::<Vec<_>>())
        );
    }

    fn run_out(&mut self) {
        for _ in 0..10_000 {
            let Some(t) = self.gw.poll_timeout() else {
                return;
            };
            self.now = self.now.max(t);
            self.gw.handle_timeout(self.now);
            self.drain();
        }
        panic!("timers never run out");
    }
}

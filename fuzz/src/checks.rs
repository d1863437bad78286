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

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use stox_gateway::core::{
    CallKey, CallSettings, DialogAction, DialogEvent, Gateway, Input, MediaCommand, Output,
    SendFailure, Settings, TxId,
};
use stox_gateway::io::badsip::bad_request_response;
use stox_gateway::media::negotiate;
use stox_gateway::media::relay::{
    CallCounters, CallId, CallStarted, CloseReason, Leg, LocalCandidate, RelayEventKind, Setup,
    SipLocal, XmppLocal,
};
use stox_gateway::media::sdp_jingle::{self, JingleMedia, Role, SdpParams};
use stox_gateway::sipmsg::{SipRequest, SipResponse, Transport};
use stox_gateway::stanza;
use stox_gateway::translate::address::Addresses;
use stox_gateway::translate::im;
use stox_sip::body::{content_type::ContentType, cpim, html, imdn, iscomposing, text};
use stox_sip::uri::{Scheme, SipUri};
use stox_xmpp::jingle::{self, Action, Jingle, JingleMessage};
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
    "sdp",
    "jingle",
    "calls",
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
        "sdp" => sdp(data),
        "jingle" => jingle(data),
        "calls" => calls(data),
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
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "REGISTER",
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
    "application/pidf+xml",
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
    "Event",
    "Expires",
    "Subscription-State",
    "Contact",
    "SIP-If-Match",
    "Accept",
    "To",
    "Authorization",
    "Proxy-Authorization",
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
    } else if ct.starts_with("application/pidf") {
        let basic = r.choice(&["open", "closed", "x"]);
        let id = r.choice(&["ID-desk", "t1", ""]);
        let note = xml_safe(r.text(128));
        format!("<?xml version='1.0'?><presence xmlns='urn:ietf:params:xml:ns:pidf' xmlns:rpid='urn:ietf:params:xml:ns:pidf:rpid' entity='sip:carol@127.0.0.1:5080'><tuple id='{id}'><status><basic>{basic}</basic></status><note>{note}</note></tuple><rpid:activities><rpid:busy/></rpid:activities></presence>").into_bytes()
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
            "presence",
            "presence;id=1",
            "dialog",
            "3600",
            "1",
            "99999999999",
            "active;expires=60",
            "pending",
            "terminated;reason=rejected",
            "terminated;reason=timeout;retry-after=5",
            "<sip:carol@127.0.0.1:5080>",
            "application/pidf+xml",
            "stox-0000000000000007-3",
            "<sip:alice@localhost>;tag=stox-0000000000000007-1",
            "*",
            "<sip:dave@127.0.0.1:5062>;expires=30;+sip.instance=\"<urn:uuid:1>\"",
            "Digest username=\"dave\", realm=\"sip.localhost\", nonce=\"6b0fcd5e.00\", uri=\"sip:sip.localhost\", response=\"00\", qop=auth, nc=00000001, cnonce=\"c\"",
            "Digest username=\"dave\", realm=\"sip.localhost\", nonce=\"x\", uri=\"sip:sip.localhost\", response=\"00\", algorithm=SHA-256",
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
        source: None,
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
                source: None,
            };
            check_top_via(&value.headers);
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

/// The topmost Via as stox reads it for RFC 5923 (`sipmsg::top_via`: transport, sent-by,
/// `alias`) and rewrites it for requests it sends (`rewrite_top_via`): never a panic, and a
/// rewritten Via reads back with what was set.
pub fn check_top_via(headers: &[(String, String)]) {
    let _ = stox_gateway::sipmsg::top_via(headers).map(|v| v.alias());
    let Some((_, value)) = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("via")) else {
        return;
    };
    for alias in [true, false] {
        if let Some(out) = stox_gateway::sipmsg::rewrite_top_via(value, |v| v.set_alias(alias)) {
            let mut back = None;
            stox_gateway::sipmsg::rewrite_top_via(&out, |v| back = Some(v.alias()));
            assert_eq!(
                back,
                Some(alias),
                "rewritten Via {out:?} of {value:?} reads back as {back:?}"
            );
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
    /// A presence stanza from an XMPP user to a contact JID.
    Presence(Element),
    /// A NOTIFY inside the `n`th SUBSCRIBE dialog stox opened.
    Notify {
        /// Which dialog.
        n: usize,
        /// `Subscription-State`.
        state: String,
        /// The body (empty: none).
        body: Vec<u8>,
        /// The notifier's tag.
        tag: String,
    },
    /// Time passes.
    Advance(Duration),
}

/// Decodes a sequence of ops (at most 64).
pub fn ops(data: &[u8]) -> Vec<Op> {
    let mut r = Reader::new(data);
    let mut v = Vec::new();
    while !r.is_empty() && v.len() < 64 {
        let op = match r.byte() % 11 {
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
            8 => match presence_stanza(&mut r) {
                Some(s) => Op::Presence(s),
                None => continue,
            },
            9 => {
                let n = usize::from(r.byte());
                let state = r.choice(&[
                    "active;expires=600",
                    "active",
                    "pending",
                    "terminated;reason=rejected",
                    "terminated;reason=deactivated",
                    "terminated;reason=timeout;retry-after=30",
                    "bogus",
                ]);
                let body = if r.byte() & 1 == 0 {
                    body_for(&mut r, Some("application/pidf+xml"))
                } else {
                    Vec::new()
                };
                let tag = r.choice(&["n1", "n1", "n2"]);
                Op::Notify {
                    n,
                    state,
                    body,
                    tag,
                }
            }
            _ => Op::Advance(Duration::from_millis(u64::from(r.byte()) * 5)),
        };
        v.push(op);
    }
    v
}

/// A presence stanza from an XMPP user to a contact JID (RFC 6121 types), decoded from fuzz
/// bytes.
pub fn presence_stanza(r: &mut Reader<'_>) -> Option<Element> {
    let kind = r.choice(&[
        "subscribe",
        "subscribe",
        "subscribed",
        "unsubscribe",
        "unsubscribed",
        "probe",
        "unavailable",
        "error",
        "-",
        "-",
    ]);
    let kind = xml_safe(kind);
    let kind = (kind != "-").then_some(kind);
    let to = xml_safe(r.choice(JID_TARGETS));
    let from = xml_safe(r.choice(JID_SENDERS));
    let mut b = stanza::builder("presence", &from, &to, "", kind.as_deref());
    if r.byte() & 3 == 0 {
        b = stanza::with_lang(b, &xml_safe(r.choice(&["en", "fr", ""])));
    }
    let mut children = Vec::new();
    if r.byte() & 1 == 0 {
        children.push(stanza::text_child(
            "show",
            stanza::NS_COMPONENT,
            &xml_safe(r.choice(&["away", "dnd", "xa", "chat", "bogus"])),
        ));
    }
    if r.byte() & 1 == 0 {
        children.push(stanza::text_child(
            "status",
            stanza::NS_COMPONENT,
            &xml_safe(r.text(128)),
        ));
    }
    if r.byte() & 3 == 0 {
        children.push(stanza::text_child(
            "priority",
            stanza::NS_COMPONENT,
            &xml_safe(r.choice(&["1", "-5", "127", "300", "x"])),
        ));
    }
    let built = b.append_all(children).build();
    stanza::to_string(&built).parse().ok()
}

/// `digest`: the first byte picks raw text or a template; the rest is an `Authorization`
/// value. Checks: `parse_credentials` never panics; what it accepts verifies (or not) without
/// panicking for every algorithm and method; a credential computed by the same rules for
/// the parsed values verifies, and changing any byte of its response makes it fail; the
/// nonce checker refuses what it did not issue (never `Fresh` for fuzz text) and accepts
/// what it issued.
pub fn digest(data: &[u8]) {
    use stox_sip::digest::{self, Algorithm, NonceCheck, NonceKey};
    let mut r = Reader::new(data);
    let templated = r.byte() & 1 == 1;
    let text = if templated {
        let user = r.choice(&["dave", "a\\\"b", ""]);
        let alg = r.choice(&["MD5", "SHA-256", "md5", "SHA-512-256", "-"]);
        let qop = r.choice(&["auth", "auth-int", "-"]);
        let rest = r.text(64);
        let mut v = format!(
            "Digest username=\"{user}\", realm=\"sip.localhost\", nonce=\"{rest}\", uri=\"sip:sip.localhost\", response=\"{rest}\""
        );
        if alg != "-" {
            v.push_str(&format!(", algorithm={alg}"));
        }
        if qop != "-" {
            v.push_str(&format!(", qop={qop}, nc=00000001, cnonce=\"{rest}\""));
        }
        v
    } else {
        String::from_utf8_lossy(r.rest()).into_owned()
    };
    let key = NonceKey::new([3; 32]);
    if let Ok(c) = digest::parse_credentials(&text) {
        for method in ["REGISTER", "MESSAGE"] {
            let _ = digest::verify(&c, method, "00");
        }
        assert_ne!(
            key.check(&c.nonce, 1_800_000_000, &c.realm, 300),
            NonceCheck::Fresh,
            "a nonce stox never issued is fresh: {:?}",
            c.nonce
        );
        // The same values with the right response verify; one changed byte does not.
        let ha1 = digest::ha1(c.algorithm, &c.username, &c.realm, "pw");
        let mut good = c.clone();
        good.response = digest::expected_response(
            c.algorithm,
            &ha1,
            &c.nonce,
            "REGISTER",
            &c.uri,
            c.qop_auth.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
        );
        assert!(digest::verify(&good, "REGISTER", &ha1));
        let mut bad = good.clone();
        let flipped: String = bad
            .response
            .chars()
            .enumerate()
            .map(|(i, ch)| {
                if i == 0 {
                    if ch == '0' {
                        '1'
                    } else {
                        '0'
                    }
                } else {
                    ch
                }
            })
            .collect();
        bad.response = flipped;
        assert!(!digest::verify(&bad, "REGISTER", &ha1));
        assert!(matches!(c.algorithm, Algorithm::Md5 | Algorithm::Sha256));
    }
    // The same text as a provider's challenge (the client side of the external accounts):
    // whatever parses is answered with credentials that parse back and verify.
    if let Ok(ch) = digest::parse_challenge(&text) {
        let v = digest::authorization(&ch, "al\"ice", "pw", "REGISTER", "sip:p.example", 1, "c0");
        let c = digest::parse_credentials(&v)
            .unwrap_or_else(|e| panic!("our own answer does not parse ({e}): {v}"));
        assert_eq!(
            (c.realm.as_str(), c.nonce.as_str()),
            (ch.realm.as_str(), ch.nonce.as_str())
        );
        let ha1 = digest::ha1(ch.algorithm, "al\"ice", &ch.realm, "pw");
        assert!(digest::verify(&c, "REGISTER", &ha1), "{v}");
    }
    let nonce = key.issue(1_800_000_000, "sip.localhost");
    assert_eq!(
        key.check(&nonce, 1_800_000_000, "sip.localhost", 300),
        NonceCheck::Fresh
    );
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
                        // What a notifier's 2xx (and a 423) carry; other requests ignore them.
                        headers: vec![
                            ("To".into(), "<sip:x@y>;tag=r1".into()),
                            ("Contact".into(), "<sip:carol@127.0.0.1:5080>".into()),
                            ("Expires".into(), (code % 700).to_string()),
                            ("Min-Expires".into(), "7200".into()),
                            ("Record-Route".into(), "<sip:p1;lr>, <sip:p2;lr>".into()),
                        ],
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
            Op::Presence(s) => d.input(Input::Stanza(s)),
            Op::Notify {
                n,
                state,
                body,
                tag,
            } => {
                if d.subscribes.is_empty() {
                    continue;
                }
                let (call_id, stox_tag, stox_uri, target) =
                    d.subscribes[n % d.subscribes.len()].clone();
                let mut headers = vec![
                    (
                        "Via".to_string(),
                        "SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKn".to_string(),
                    ),
                    ("From".to_string(), format!("<{target}>;tag={tag}")),
                    ("To".to_string(), format!("<{stox_uri}>;tag={stox_tag}")),
                    ("Call-ID".to_string(), call_id),
                    ("CSeq".to_string(), "1 NOTIFY".to_string()),
                    ("Event".to_string(), "presence".to_string()),
                    ("Subscription-State".to_string(), state),
                    ("Contact".to_string(), format!("<{target}>")),
                ];
                if !body.is_empty() {
                    headers.push((
                        "Content-Type".to_string(),
                        "application/pidf+xml".to_string(),
                    ));
                }
                d.sip(SipRequest {
                    method: "NOTIFY".into(),
                    uri: "sip:stox@127.0.0.1:5060".into(),
                    headers,
                    body,
                    transport: Transport::Udp,
                    source: None,
                });
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
    /// SUBSCRIBE dialogs stox opened: (Call-ID, its tag, its URI, the target).
    subscribes: Vec<(String, String, String, String)>,
    /// The last CSeq stox used in each dialog (Call-ID, its tag).
    cseqs: HashMap<(String, String), u32>,
    /// Incoming INVITEs (io keys) and the dialog actions each got.
    invites: BTreeMap<CallKey, Vec<DialogAction>>,
    /// INVITEs the core sent and the dialog actions each got.
    outgoing: BTreeMap<CallKey, Vec<DialogAction>>,
    /// Every call key seen, in order.
    call_keys: Vec<CallKey>,
    /// The dialog events fed for each key.
    dialog_events: BTreeMap<CallKey, Vec<DialogEvent>>,
    next_call: CallKey,
    /// The media of each call.
    media: BTreeMap<CallKey, MediaState>,
    /// `Start`s not answered yet: (call, stox offers on XMPP, the relay fails).
    pending_starts: VecDeque<(CallKey, bool, bool)>,
    /// Bit n: the nth `Start` fails.
    start_fails: u8,
    starts: u32,
    /// Jingle sessions seen: (sid, stox's JID in it).
    sessions: Vec<(String, String)>,
    /// Iq sets stox sent: (id, from, to).
    stox_iqs: Vec<(String, String, String)>,
    /// JMI messages stox sent: (id, from, to).
    stox_jmi: Vec<(String, String, String)>,
    /// Ids of iq sets fed and not answered yet; of those answered.
    iq_waiting: BTreeSet<String>,
    iq_answered: BTreeSet<String>,
    next_iq: u64,
}

impl Default for Driver {
    fn default() -> Self {
        Self::new()
    }
}

impl Driver {
    /// A fresh core, link down.
    pub fn new() -> Self {
        Self::with_calls(CallSettings::default())
    }

    /// A fresh core with these call settings, link down.
    pub fn with_calls(calls: CallSettings) -> Self {
        let now = Instant::now();
        let settings = Settings {
            accounts: Default::default(),
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
            calls,
            presence: stox_gateway::core::PresenceSettings::default(),
            contacts: stox_gateway::core::LocalContacts::default(),
            registrar: stox_gateway::core::RegistrarSettings::default(),
        };
        let store = stox_mappings::Store::memory();
        let gw = Gateway::new(settings, &store, SEED).expect("valid settings");
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
            subscribes: Vec::new(),
            cseqs: HashMap::new(),
            invites: BTreeMap::new(),
            outgoing: BTreeMap::new(),
            call_keys: Vec::new(),
            dialog_events: BTreeMap::new(),
            next_call: 0,
            media: BTreeMap::new(),
            pending_starts: VecDeque::new(),
            start_fails: 0,
            starts: 0,
            sessions: Vec::new(),
            stox_iqs: Vec::new(),
            stox_jmi: Vec::new(),
            iq_waiting: BTreeSet::new(),
            iq_answered: BTreeSet::new(),
            next_iq: 0,
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

    /// Drains `poll_output`, checking each output, and answers the relay's `Start`s.
    pub fn drain(&mut self) {
        loop {
            while let Some(o) = self.gw.poll_output() {
                self.check_output(o);
            }
            if !self.answer_starts() {
                return;
            }
        }
    }

    fn check_output(&mut self, o: Output) {
        if let Output::Stanza(s) = &o {
            assert_sendable(s, "a stanza of the core");
        }
        self.on_call_output(&o);
        {
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
                    if let Some(d) = &req.dialog {
                        // RFC 3261 §12.2.1.1: a dialog's requests carry its Call-ID and
                        // tags, and CSeq numbers that only go up.
                        let call_id = req.call_id.clone().unwrap_or_default();
                        assert!(
                            !call_id.is_empty() && !d.from_tag.is_empty(),
                            "in-dialog {} without Call-ID or tag",
                            req.method
                        );
                        let key = (call_id.clone(), d.from_tag.clone());
                        if let Some(last) = self.cseqs.insert(key, d.cseq) {
                            assert!(
                                d.cseq > last,
                                "{} CSeq {} after {last} in dialog {call_id}",
                                req.method,
                                d.cseq
                            );
                        }
                        if req.method == "SUBSCRIBE" && d.to_tag.is_none() {
                            self.subscribes.push((
                                call_id,
                                d.from_tag.clone(),
                                req.from.clone(),
                                req.to.clone(),
                            ));
                        }
                        for (name, value) in &req.headers {
                            assert!(
                                !value.contains(['\r', '\n']),
                                "{name} of a {} breaks the header: {value:?}",
                                req.method
                            );
                        }
                    }
                    self.open.push(tx);
                }
                // Checked by on_call_output.
                Output::Dialog { .. } | Output::Media { .. } => {}
                Output::Stanza(s) => {
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

// ------------------------------------------------------------------ calls: SDP and Jingle

/// The SDP bodies real peers sent (`gateway/tests/vectors/`, `tests/peers/jingle/captures/`):
/// baresip, linphone, Chrome and the libwebrtc peer.
pub const SDP_SEEDS: &[&str] = &[
    include_str!("../../gateway/tests/vectors/baresip-1.0-audio-offer.sdp"),
    include_str!("../../gateway/tests/vectors/linphone-audio-offer.sdp"),
    include_str!("../../gateway/tests/vectors/chrome-audio-offer.sdp"),
    include_str!("../../gateway/tests/vectors/chrome-audio-answer.sdp"),
    include_str!("../../tests/peers/jingle/captures/libwebrtc-audio-offer.sdp"),
    include_str!("../../tests/peers/jingle/captures/libwebrtc-audio-answer.sdp"),
];

/// A libwebrtc `session-initiate` (the StanzaJS peer's capture).
pub const LIBWEBRTC_OFFER: &str =
    include_str!("../../tests/peers/jingle/captures/libwebrtc-audio-offer.xml");
/// A libwebrtc `session-accept`.
pub const LIBWEBRTC_ANSWER: &str =
    include_str!("../../tests/peers/jingle/captures/libwebrtc-audio-answer.xml");
/// A libwebrtc `transport-info` with one host candidate.
pub const LIBWEBRTC_TRANSPORT_INFO: &str =
    include_str!("../../tests/peers/jingle/captures/libwebrtc-transport-info.xml");

const SDP_NUMBERS: &[&str] = &[
    "0",
    "8",
    "9",
    "96",
    "101",
    "111",
    "127",
    "128",
    "255",
    "256",
    "65535",
    "65536",
    "-1",
    "",
    "4294967296",
];
const SDP_TOKENS: &[&str] = &[
    "opus/48000/2",
    "PCMU/8000",
    "PCMA/8000",
    "G722/8000",
    "telephone-event/8000",
    "telephone-event/48000",
    "opus/48000/0",
    "opus/48000/x",
    "opus",
    "minptime=10;useinbandfec=1",
    "0-15",
    "stereo=1; sprop-stereo=1",
    ";;=",
    "audio",
    "0",
    "nack pli",
    "transport-cc",
    "127.0.0.1",
    "::1",
    "0.0.0.0",
    "host.local",
    "sha-256 AB:CD:EF",
    "actpass",
    "active",
    "passive",
    "holdconn",
    "BUNDLE 0 1",
    "BUNDLE audio",
    "LS a b",
];

/// One SDP line from realistic templates around fuzz values.
fn sdp_line(r: &mut Reader<'_>) -> String {
    let v = |r: &mut Reader<'_>| r.choice(SDP_TOKENS);
    let n = |r: &mut Reader<'_>| r.choice(SDP_NUMBERS);
    match r.byte() % 34 {
        0 => format!("m=audio {} RTP/AVP {} {}", n(r), n(r), n(r)),
        1 => format!("m=audio {} UDP/TLS/RTP/SAVPF {} {}", n(r), n(r), n(r)),
        2 => format!("m=video {} RTP/AVPF {}", n(r), n(r)),
        3 => "m=application 9 UDP/DTLS/SCTP webrtc-datachannel".to_string(),
        4 => format!("c=IN IP4 {}", v(r)),
        5 => format!("c=IN IP6 {}", v(r)),
        6 => format!("a=rtpmap:{} {}", n(r), v(r)),
        7 => format!("a=fmtp:{} {}", n(r), v(r)),
        8 => format!("a=rtcp-fb:{} {}", r.choice(&["*", "111", "0", "x"]), v(r)),
        9 => format!(
            "a=extmap:{}{} {}",
            n(r),
            r.choice(&["", "/sendonly", "/recvonly", "/inactive"]),
            v(r)
        ),
        10 => format!("a=ssrc:{} cname:{}", n(r), v(r)),
        11 => format!("a=ssrc-group:FID {} {}", n(r), n(r)),
        12 => format!("a=msid:{} {}", v(r), v(r)),
        13 => format!("a=crypto:{} AES_CM_128_HMAC_SHA1_80 inline:{}", n(r), v(r)),
        14 => format!(
            "a=candidate:{} {} {} {} {} {} typ {}{}",
            n(r),
            n(r),
            r.choice(&["udp", "UDP", "tcp"]),
            n(r),
            v(r),
            n(r),
            r.choice(&["host", "srflx", "relay", "prflx", "x"]),
            r.choice(&[
                "",
                " raddr 0.0.0.0 rport 0",
                " generation 0",
                " network-id 1"
            ])
        ),
        15 => format!("a=mid:{}", v(r)),
        16 => format!("a=group:{}", v(r)),
        17 => format!("a=ice-ufrag:{}", v(r)),
        18 => format!("a=ice-pwd:{}", v(r)),
        19 => format!("a=fingerprint:{}", v(r)),
        20 => format!("a=setup:{}", v(r)),
        21 => "a=rtcp-mux".to_string(),
        22 => "a=bundle-only".to_string(),
        23 => format!("a=ptime:{}", n(r)),
        24 => format!("a=maxptime:{}", n(r)),
        25 => r.choice(&["a=sendonly", "a=recvonly", "a=inactive", "a=sendrecv"]),
        26 => "a=end-of-candidates".to_string(),
        27 => format!("b=AS:{}", n(r)),
        28 => "a=extmap-allow-mixed".to_string(),
        29 => format!("a=rtcp:{} IN IP4 {}", n(r), v(r)),
        30 => format!("a={}:{}", v(r), v(r)),
        31 => format!("o=- {} {} IN IP4 {}", n(r), n(r), v(r)),
        _ => r.text(64),
    }
}

/// An SDP body decoded from fuzz bytes: a real peer's SDP (or a bare session header) with
/// lines inserted, removed, duplicated or cut, CRLF or LF line ends.
pub fn sdp_body(r: &mut Reader<'_>) -> Vec<u8> {
    let seed = usize::from(r.byte());
    let base = match SDP_SEEDS.get(seed % (SDP_SEEDS.len() + 1)) {
        Some(s) => *s,
        None => "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
    };
    let mut lines: Vec<String> = base.lines().map(str::to_owned).collect();
    for _ in 0..(r.byte() % 8) {
        let at = usize::from(r.byte()) % (lines.len() + 1);
        match r.byte() % 4 {
            0 | 1 => lines.insert(at, sdp_line(r)),
            2 if at < lines.len() => {
                lines.remove(at);
            }
            _ if at < lines.len() => {
                let l = lines[at].clone();
                let cut = usize::from(r.byte()) % (l.len() + 1);
                lines.insert(at, l.get(..cut).unwrap_or(&l).to_owned());
            }
            _ => {}
        }
    }
    let eol = if r.byte() & 3 == 0 { "\n" } else { "\r\n" };
    let mut out = lines.join(eol);
    out.push_str(eol);
    out.into_bytes()
}

/// The relay's answer to `MediaCommand::Start`, made up: our ICE/DTLS ends on the XMPP leg
/// (`setup` as the relay picks it: `actpass` when stox offers, `active` when it answers) and
/// the SIP leg's RTP address.
pub fn fake_started(n: u64, setup: Setup) -> CallStarted {
    CallStarted {
        id: CallId(n),
        xmpp: XmppLocal {
            ufrag: "stox".into(),
            pwd: "0123456789abcdefghijklmn".into(),
            fingerprint_hash: "sha-256".into(),
            fingerprint: "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89".into(),
            setup,
            candidates: vec![LocalCandidate {
                foundation: "1".into(),
                component: 1,
                protocol: "udp".into(),
                priority: 2_130_706_431,
                addr: SocketAddr::from(([127, 0, 0, 1], 40_000)),
                kind: "host".into(),
            }],
            ssrc: 0x1234_5678,
        },
        sip: SipLocal {
            rtp: SocketAddr::from(([127, 0, 0, 1], 40_002)),
            rtcp: SocketAddr::from(([127, 0, 0, 1], 40_003)),
            ssrc: 0x9abc_def0,
        },
    }
}

thread_local! {
    static STRICT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` without the carve-outs for open bugs (`open_regressions` replays `.open` files
/// this way, so that each still fails until fixed).
pub fn strictly<R>(f: impl FnOnce() -> R) -> R {
    STRICT.with(|s| s.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    STRICT.with(|s| s.set(false));
    r.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Whether the checks step around open bug `_bug` (see `fuzz/README.md`): yes, except under
/// [`strictly`]. Each carve-out keeps the fuzzer exploring past a known bug; none is needed
/// while no bug is open.
#[allow(dead_code)]
fn open_bug(_bug: u32) -> bool {
    !STRICT.with(|s| s.get())
}

/// The payload type ids of each content, in order.
fn pt_ids(media: &JingleMedia) -> Vec<Vec<u8>> {
    media
        .contents
        .iter()
        .map(|c| {
            c.description
                .as_ref()
                .map(|d| d.payload_types.iter().map(|p| p.id).collect())
                .unwrap_or_default()
        })
        .collect()
}

/// Writes `media` as the SDP `role` sends and reads it back: `jingle_to_sdp` succeeds, its
/// text parses, converts to Jingle again and describes the same contents with the same
/// payload type ids in the same order (RFC 3264 §6.1: the numbers are what the peers agree on).
/// Returns the text.
pub fn assert_sdp_reads_back(media: &JingleMedia, role: Role, what: &str) -> String {
    let params = SdpParams {
        role,
        session_id: 1,
        session_version: 1,
    };
    let text = match sdp_jingle::jingle_to_sdp(media, &params) {
        Ok(s) => s.to_string(),
        Err(e) => panic!("{what}: jingle_to_sdp failed ({e}) for {media:?}"),
    };
    let again = sdp_jingle::parse_sdp(text.as_bytes())
        .unwrap_or_else(|e| panic!("{what}: stox wrote SDP it cannot parse ({e}):\n{text}"));
    let back = sdp_jingle::sdp_to_jingle(&again, role)
        .unwrap_or_else(|e| panic!("{what}: stox wrote SDP it cannot convert ({e}):\n{text}"));
    assert_eq!(
        pt_ids(&back),
        pt_ids(media),
        "{what}: contents / payload types changed through SDP:\n{text}"
    );
    text
}

/// Serializes `e` as stox sends it and parses it back as the peer reads it. Panics when `e`
/// holds a character XML 1.0 forbids (serializing it panics in minidom) or when the XML does
/// not parse.
pub fn reparsed(e: &Element, what: &str) -> Element {
    if let Some(c) = xml_forbidden_char(e) {
        panic!(
            "{what}: U+{:04X} reaches an element stox sends; serializing it panics in minidom",
            u32::from(c)
        );
    }
    let xml = stanza::to_string(e);
    xml.parse()
        .unwrap_or_else(|err| panic!("{what}: stox wrote XML it cannot read back ({err}): {xml:?}"))
}

/// Asserts that a stanza stox sends can be serialized and reads back the same: for a Jingle
/// iq or a JMI message, the same [`Jingle`] / [`JingleMessage`] (minidom writes an empty
/// text node as `<text></text>`, which reads back as `<text/>`); otherwise the same XML
/// ([`assert_reparses`]).
pub fn assert_sendable(e: &Element, what: &str) {
    let back = reparsed(e, what);
    let jingle_of = |x: &Element| {
        x.get_child("jingle", jingle::ns::JINGLE)
            .map(|j| Jingle::parse(j).map_err(|e| e.to_string()))
    };
    if let Some(j) = jingle_of(e) {
        assert_eq!(
            jingle_of(&back),
            Some(j),
            "{what}: the Jingle changed through XML"
        );
    } else if let Some(m) = JingleMessage::from_message(e) {
        assert_eq!(
            JingleMessage::from_message(&back),
            Some(m),
            "{what}: the JMI changed through XML"
        );
    } else {
        assert_reparses(e);
    }
}

/// `sdp`: the first byte picks raw bytes (even) or an SDP built from real peers' bodies
/// (odd); see [`check_sdp`].
pub fn sdp(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        check_sdp(rest);
    } else {
        check_sdp(&sdp_body(&mut Reader::new(rest)));
    }
}

/// Typed form of [`sdp`]. `parse_sdp`, `sdp_to_jingle` (both roles) and
/// `negotiate::relayable` do not panic; what converts writes back (`jingle_to_sdp`) to SDP
/// that parses to the same contents and payload type ids ([`assert_sdp_reads_back`]). For a
/// relayable offer, what stox would send for it also holds: the `session-initiate` contents
/// (`negotiate::xmpp_offer`) survive XML, and the SDP answer (`negotiate::sip_answer`, every
/// codec kept) reads back.
pub fn check_sdp(body: &[u8]) {
    let Ok(session) = sdp_jingle::parse_sdp(body) else {
        return;
    };
    for role in [Role::Initiator, Role::Responder] {
        let Ok(media) = sdp_jingle::sdp_to_jingle(&session, role) else {
            continue;
        };
        assert_sdp_reads_back(&media, role, "SDP → Jingle → SDP");
        let Ok(offer) = negotiate::relayable(&media) else {
            continue;
        };
        let _ = negotiate::sip_remote(&offer.content);
        let started = fake_started(1, Setup::Actpass);
        let mut j = Jingle::new(Action::SessionInitiate, "sid");
        negotiate::xmpp_offer(&offer, &started, "audio").apply_to(&mut j);
        let back = reparsed(&j.to_element(), "session-initiate for a SIP offer");
        assert_eq!(
            Jingle::parse(&back).ok(),
            Some(with_candidate_ids(&j)),
            "the session-initiate for a SIP offer changed through XML"
        );
        let answer = negotiate::sip_answer(&offer, &offer.payload_types, &started);
        assert_sdp_reads_back(&answer, Role::Responder, "SDP answer to a SIP offer");
    }
}

// ------------------------------------------------------------------------- jingle

/// `s` as an XML attribute value between quotes: what XML 1.0 cannot carry is dropped, tab,
/// CR and LF become character references (so that they survive attribute normalization).
fn attr_value(s: &str) -> String {
    let mut out = String::new();
    for c in xml_safe(s.to_owned()).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as XML character data.
fn text_value(s: &str) -> String {
    attr_value(s).replace("&#9;", "\t").replace("&#10;", "\n")
}

const JINGLE_ACTIONS: &[&str] = &[
    "session-initiate",
    "session-accept",
    "transport-info",
    "session-terminate",
    "session-info",
    "content-add",
    "transport-replace",
];
const JINGLE_VALUES: &[&str] = &[
    "0",
    "audio",
    "video",
    "opus",
    "PCMU",
    "telephone-event",
    "48000",
    "8000",
    "2",
    "111",
    "127",
    "128",
    "-1",
    "",
    " 1 ",
    "initiator",
    "responder",
    "both",
    "none",
    "actpass",
    "active",
    "passive",
    "sha-256",
    "127.0.0.1",
    "::1",
    "x.local",
    "host",
    "srflx",
    "udp",
    "tcp",
    "4294967296",
    "65536",
    "a\nb",
    "a\r\na=x",
    "minptime",
    "10",
    "cname",
    "BUNDLE",
    "alice@localhost/a",
];
const REASONS: &[&str] = &[
    "success",
    "cancel",
    "decline",
    "busy",
    "timeout",
    "gone",
    "general-error",
    "connectivity-error",
    "alternative-session",
    "text",
    "reason",
    "x-unknown",
];

fn jv(r: &mut Reader<'_>) -> String {
    attr_value(&r.choice(JINGLE_VALUES))
}

/// An optional attribute ` name='value'` with a fuzz value.
fn opt_attr(r: &mut Reader<'_>, name: &str) -> String {
    if r.byte() & 3 == 0 {
        String::new()
    } else {
        format!(" {name}='{}'", jv(r))
    }
}

fn reason_xml(r: &mut Reader<'_>) -> String {
    let cond = r.choice(REASONS);
    let cond = xml_name(cond);
    let inner = if cond == "alternative-session" {
        format!("<sid>{}</sid>", text_value(&r.choice(JINGLE_VALUES)))
    } else {
        String::new()
    };
    let text = if r.byte() & 1 == 0 {
        format!("<text>{}</text>", text_value(&r.text(40)))
    } else {
        String::new()
    };
    format!("<reason xmlns='urn:xmpp:jingle:1'><{cond}>{inner}</{cond}>{text}</reason>")
}

fn description_xml(r: &mut Reader<'_>) -> String {
    let mut s = format!(
        "<description xmlns='urn:xmpp:jingle:apps:rtp:1'{}{}>",
        opt_attr(r, "media"),
        opt_attr(r, "ssrc")
    );
    for _ in 0..(r.byte() % 5) {
        s.push_str(&match r.byte() % 10 {
            0..=3 => {
                let mut p = format!(
                    "<payload-type{}{}{}{}{}>",
                    opt_attr(r, "id"),
                    opt_attr(r, "name"),
                    opt_attr(r, "clockrate"),
                    opt_attr(r, "channels"),
                    opt_attr(r, "ptime")
                );
                for _ in 0..(r.byte() % 3) {
                    if r.byte() & 1 == 0 {
                        p.push_str(&format!(
                            "<parameter{}{}/>",
                            opt_attr(r, "name"),
                            opt_attr(r, "value")
                        ));
                    } else {
                        p.push_str(&format!(
                            "<rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0'{}{}/>",
                            opt_attr(r, "type"),
                            opt_attr(r, "subtype")
                        ));
                    }
                }
                p.push_str("</payload-type>");
                p
            }
            4 => format!(
                "<rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0'{}{}{}/>",
                opt_attr(r, "id"),
                opt_attr(r, "uri"),
                opt_attr(r, "senders")
            ),
            5 => format!(
                "<source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0'{}><parameter{}{}/></source>",
                opt_attr(r, "ssrc"),
                opt_attr(r, "name"),
                opt_attr(r, "value")
            ),
            6 => format!(
                "<ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0'{}><source{}/></ssrc-group>",
                opt_attr(r, "semantics"),
                opt_attr(r, "ssrc")
            ),
            7 => format!(
                "<encryption{}><crypto{}{}{}{}/></encryption>",
                opt_attr(r, "required"),
                opt_attr(r, "crypto-suite"),
                opt_attr(r, "key-params"),
                opt_attr(r, "session-params"),
                opt_attr(r, "tag")
            ),
            8 => format!(
                "<bandwidth{}>{}</bandwidth><rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0'{}/>",
                opt_attr(r, "type"),
                text_value(&r.choice(JINGLE_VALUES)),
                opt_attr(r, "type")
            ),
            _ => format!(
                "<stream xmlns='urn:xmpp:jingle:apps:rtp:msid:0'{}{}/><rtcp-mux/><extmap-allow-mixed xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0'/>",
                opt_attr(r, "id"),
                opt_attr(r, "track")
            ),
        });
    }
    s.push_str("</description>");
    s
}

fn transport_xml(r: &mut Reader<'_>) -> String {
    let mut s = format!(
        "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'{}{}>",
        opt_attr(r, "ufrag"),
        opt_attr(r, "pwd")
    );
    if r.byte() & 1 == 0 {
        s.push_str(&format!(
            "<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0'{}{}>{}</fingerprint>",
            opt_attr(r, "hash"),
            opt_attr(r, "setup"),
            text_value(&r.choice(&["AB:CD", " 01:02 ", ""]))
        ));
    }
    for _ in 0..(r.byte() % 3) {
        s.push_str(&format!(
            "<candidate{}{}{}{}{}{}{}{}{}{}{}{}/>",
            opt_attr(r, "component"),
            opt_attr(r, "foundation"),
            opt_attr(r, "generation"),
            opt_attr(r, "id"),
            opt_attr(r, "ip"),
            opt_attr(r, "port"),
            opt_attr(r, "priority"),
            opt_attr(r, "protocol"),
            opt_attr(r, "type"),
            opt_attr(r, "rel-addr"),
            opt_attr(r, "rel-port"),
            opt_attr(r, "network")
        ));
    }
    if r.byte() & 3 == 0 {
        s.push_str("<gathering-complete/>");
    }
    s.push_str("</transport>");
    s
}

/// A `<jingle/>` element as XML text: realistic structure, fuzz attribute values.
/// `sid` replaces the fuzz session id when given (as `{sid}` stands for it in the text).
pub fn jingle_xml(r: &mut Reader<'_>, sid: Option<&str>) -> String {
    let action = attr_value(&r.choice(JINGLE_ACTIONS));
    let sid = match sid {
        Some(s) => s.to_owned(),
        None => attr_value(&r.choice(&["s1", "s2", ""])),
    };
    let mut s = format!(
        "<jingle xmlns='urn:xmpp:jingle:1' action='{action}' sid='{sid}'{}{}>",
        opt_attr(r, "initiator"),
        opt_attr(r, "responder")
    );
    for _ in 0..(r.byte() % 3) {
        s.push_str(&format!(
            "<content{}{}{}>",
            opt_attr(r, "creator"),
            opt_attr(r, "name"),
            opt_attr(r, "senders")
        ));
        if r.byte() & 3 != 0 {
            s.push_str(&description_xml(r));
        }
        if r.byte() & 3 != 0 {
            s.push_str(&transport_xml(r));
        }
        s.push_str("</content>");
    }
    match r.byte() % 6 {
        0 => s.push_str(&format!(
            "<group xmlns='urn:xmpp:jingle:apps:grouping:0'{}><content{}/></group>",
            opt_attr(r, "semantics"),
            opt_attr(r, "name")
        )),
        1 => s.push_str(&reason_xml(r)),
        2 => s.push_str(&format!(
            "<{} xmlns='urn:xmpp:jingle:apps:rtp:info:1'{}{}/>",
            xml_name(r.choice(&["ringing", "mute", "unmute", "active", "hold", "unhold"])),
            opt_attr(r, "creator"),
            opt_attr(r, "name")
        )),
        _ => {}
    }
    s.push_str("</jingle>");
    s
}

/// A XEP-0353 element as XML text.
pub fn jmi_xml(r: &mut Reader<'_>, sid: &str) -> String {
    let name = xml_name(r.choice(&[
        "propose", "ringing", "proceed", "retract", "reject", "accept", "finish",
    ]));
    let mut inner = String::new();
    if name == "propose" {
        for _ in 0..(r.byte() % 3) {
            inner.push_str(&format!(
                "<description xmlns='{}'{}/>",
                attr_value(&r.choice(&[
                    "urn:xmpp:jingle:apps:rtp:1",
                    "urn:xmpp:jingle:apps:file-transfer:5"
                ])),
                opt_attr(r, "media")
            ));
        }
    } else if r.byte() & 1 == 0 {
        inner.push_str(&reason_xml(r));
    }
    let id = if r.byte() & 7 == 0 {
        String::new()
    } else {
        format!(" id='{}'", attr_value(sid))
    };
    format!("<{name} xmlns='urn:xmpp:jingle-message:0'{id}>{inner}</{name}>")
}

/// `jingle`: the first byte picks raw XML (even), a generated `<jingle/>` (1 mod 4) or a
/// generated JMI element (3 mod 4); see [`check_jingle`].
pub fn jingle(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let xml = match mode % 4 {
        0 | 2 => match std::str::from_utf8(rest) {
            Ok(s) => s.to_owned(),
            Err(_) => return,
        },
        1 => jingle_xml(&mut Reader::new(rest), None),
        _ => {
            let mut r = Reader::new(rest);
            let sid = r.choice(&["s1", "ca3cf894-5325-482f-a412-a6e9f832298d"]);
            jmi_xml(&mut r, &sid)
        }
    };
    if let Ok(e) = xml.parse::<Element>() {
        check_jingle(&e);
    }
}

/// What `to_element` changes of a parsed Jingle: XEP-0176 requires a candidate `id` and
/// `generation`, so both are filled in when the peer left them out.
fn with_candidate_ids(j: &Jingle) -> Jingle {
    let mut j = j.clone();
    for t in j.contents.iter_mut().filter_map(|c| c.transport.as_mut()) {
        for c in &mut t.candidates {
            c.id = Some(c.output_id());
            c.generation = Some(c.generation.unwrap_or(0));
        }
    }
    j
}

/// Typed form of [`jingle`]: `e` (or, for a stanza, its `<jingle/>` / JMI child) through
/// `Jingle::parse` / `JingleMessage::parse` without a panic. What parses serializes with
/// `to_element` to XML that survives a round trip, and parses back equal (a Jingle with the
/// candidate `id`/`generation` that `to_element` fills in). For a relayable Jingle offer,
/// the SDP offer stox writes for the SIP phone (`negotiate::sip_offer`) reads back with the
/// same payload type ids, and `negotiate::xmpp_remote` does not panic.
pub fn check_jingle(e: &Element) {
    let el = if e.is("jingle", jingle::ns::JINGLE) || e.ns() == jingle::ns::JMI {
        e
    } else if let Some(c) = e
        .children()
        .find(|c| c.is("jingle", jingle::ns::JINGLE) || c.ns() == jingle::ns::JMI)
    {
        c
    } else {
        return;
    };
    if el.ns() == jingle::ns::JMI {
        if let Ok(m) = JingleMessage::parse(el) {
            let out = reparsed(&m.to_element(), "JMI to_element");
            let back = JingleMessage::parse(&out)
                .unwrap_or_else(|err| panic!("own JMI does not parse ({err}): {out:?}"));
            assert_eq!(back, m, "JMI changed through to_element");
        }
        return;
    }
    let Ok(j) = Jingle::parse(el) else { return };
    let out = reparsed(&j.to_element(), "Jingle to_element");
    let back =
        Jingle::parse(&out).unwrap_or_else(|err| panic!("own Jingle does not parse ({err})"));
    assert_eq!(
        back,
        with_candidate_ids(&j),
        "Jingle changed through to_element"
    );
    let media = JingleMedia::from_jingle(&j);
    if let Ok(offer) = negotiate::relayable(&media) {
        let _ = negotiate::xmpp_remote(
            offer.content.transport.as_ref(),
            negotiate::ssrcs(&offer.content),
        );
        let started = fake_started(1, Setup::Active);
        let sip = negotiate::sip_offer(&offer, &started);
        assert_sdp_reads_back(&sip, Role::Initiator, "SDP offer for a Jingle offer");
        let ids: Vec<u8> = offer.payload_types.iter().map(|p| p.id).collect();
        assert_eq!(pt_ids(&sip), vec![ids], "the SDP offer lost codecs");
    }
}

// -------------------------------------------------------------------------- calls

/// XMPP devices that call and answer (two of alice's, one stranger), and a bare JID.
const CALL_DEVICES: &[&str] = &[
    "alice@localhost/a",
    "alice@localhost/b",
    "mallory@localhost/x",
    "alice@localhost",
];
/// Contact JIDs, call endpoints at `C` (and two that are not).
const CALL_CONTACTS: &[&str] = &[
    "bob\\40127.0.0.1\\3a5080@sip.localhost/phone",
    "bob\\40127.0.0.1\\3a5080@sip.localhost",
    "carol\\40pbx.example@sip.localhost/phone",
    "sip.localhost",
    "nobody@localhost",
];
/// A plain-RTP answer as baresip sends it to stox's offer (PCMU + telephone-event).
pub const BARESIP_ANSWER: &str = "v=0\r\no=- 1851235292 2008014307 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:baresip 1.0.0\r\nm=audio 10004 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\na=ptime:20\r\n";
/// An Opus answer.
pub const OPUS_ANSWER: &str = "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 10006 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10\r\na=rtcp-mux\r\n";

/// What a Jingle iq of a [`CallOp::Jingle`] carries.
#[derive(Debug, Clone)]
pub enum JingleBody {
    /// The libwebrtc capture with action and sid replaced, and an alteration (0: none, 1: no
    /// transport, 2: no relayable codec, 3: video only).
    Capture {
        /// Which capture: 0 offer, 1 answer, 2 transport-info.
        which: u8,
        /// The action.
        action: Action,
        /// The alteration.
        alter: u8,
    },
    /// `session-terminate` with a reason.
    Terminate(String),
    /// `session-info` `<ringing/>`.
    Ringing,
    /// A generated `<jingle/>` (fuzz structure and values); `{sid}` stands for the session id.
    Generated(String),
}

/// One step of a [`calls`] run. Indices (`n`, `sid`, `key`, …) pick among what the run has
/// seen so far, modulo its length.
#[derive(Debug, Clone)]
pub enum CallOp {
    /// A new INVITE under a fresh io key.
    Invite(SipRequest),
    /// A JMI message from an XMPP device.
    Jmi {
        /// Which device.
        from: usize,
        /// To which endpoint: a contact of [`CALL_CONTACTS`] or a call's JID.
        to: usize,
        /// Which session id.
        sid: usize,
        /// The JMI element (`{sid}` stands for the session id).
        xml: String,
    },
    /// A Jingle iq set from an XMPP device (sent twice when `twice`).
    Jingle {
        /// Which device.
        from: usize,
        /// To which endpoint.
        to: usize,
        /// Which session id.
        sid: usize,
        /// The content.
        body: JingleBody,
        /// Sent again (a new iq id) right after.
        twice: bool,
    },
    /// An iq result (or error, with that condition) to the `n`th iq stox sent.
    IqReply {
        /// Which.
        n: usize,
        /// Error condition, or a result.
        error: Option<usize>,
    },
    /// An error bounce of the `n`th JMI message stox sent.
    Bounce {
        /// Which.
        n: usize,
    },
    /// A dialog event for a call key.
    Dialog {
        /// Which key (past the known ones: a key nobody created).
        key: usize,
        /// What.
        event: DialogEvent,
    },
    /// A relay event for a call key.
    Media {
        /// Which key.
        key: usize,
        /// What.
        event: RelayEventKind,
    },
    /// `DELETE /api/v1/calls/{id}`.
    Hangup {
        /// Which key.
        key: usize,
    },
    /// Time passes.
    Advance(Duration),
}

/// The ring time of the call checks (`[calls] no_answer_secs`).
pub const NO_ANSWER: Duration = Duration::from_secs(5);

fn invite_request(r: &mut Reader<'_>) -> SipRequest {
    let uri = r.choice(&[
        "sip:alice@localhost",
        "sip:alice@localhost",
        "sip:alice@localhost;transport=udp",
        "sip:nobody@localhost",
        "sips:alice@localhost",
        "sip:dave@sip.localhost",
        "sip:x@elsewhere.example",
    ]);
    let from = r.choice(&[
        "<sip:carol@pbx.example>;tag=1",
        "\"Bob\" <sip:bob@127.0.0.1:5080>;tag=2",
        "<sips:c@pbx>;tag=4",
        "<sip:pbx.example>;tag=5",
    ]);
    let mut headers = vec![
        (
            "Via".to_string(),
            "SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK1".to_string(),
        ),
        ("From".to_string(), from),
        ("To".to_string(), format!("<{uri}>")),
        ("Call-ID".to_string(), "call-1@pbx".to_string()),
        ("CSeq".to_string(), "1 INVITE".to_string()),
    ];
    if r.byte() & 7 != 0 {
        headers.push((
            "Content-Type".to_string(),
            r.choice(&["application/sdp", "Application/SDP; x=1", "text/plain"]),
        ));
    }
    if r.byte() & 7 == 0 {
        headers.push(("Max-Forwards".to_string(), r.choice(&["70", "0", "x"])));
    }
    let body = match r.byte() % 8 {
        0..=2 => SDP_SEEDS[usize::from(r.byte()) % SDP_SEEDS.len()]
            .as_bytes()
            .to_vec(),
        3..=5 => sdp_body(r),
        6 => r.bytes(512),
        _ => Vec::new(),
    };
    SipRequest {
        method: "INVITE".into(),
        uri,
        headers,
        body,
        transport: Transport::Udp,
        source: None,
    }
}

fn dialog_event(r: &mut Reader<'_>) -> DialogEvent {
    match r.byte() % 9 {
        0 => DialogEvent::Cancelled,
        1 => DialogEvent::Confirmed,
        2 => DialogEvent::Progress {
            code: [100, 180, 183, 199][usize::from(r.byte() % 4)],
        },
        3 | 4 => DialogEvent::Answered {
            sdp: match r.byte() % 5 {
                0 | 1 => BARESIP_ANSWER.as_bytes().to_vec(),
                2 => OPUS_ANSWER.as_bytes().to_vec(),
                3 => sdp_body(r),
                _ => r.bytes(256),
            },
        },
        5 | 6 => DialogEvent::Failed {
            code: [486, 603, 404, 408, 480, 487, 488, 503, 301, 699][usize::from(r.byte() % 10)],
            // Any text: a raw reason phrase may hold control characters (bug 7, fixed).
            reason: r.choice(&["Busy Here", "Decline", ""]),
        },
        7 => DialogEvent::Bye,
        _ => DialogEvent::Terminated,
    }
}

fn media_event(r: &mut Reader<'_>) -> RelayEventKind {
    match r.byte() % 6 {
        0 => RelayEventKind::IceConnected,
        1 => RelayEventKind::DtlsConnected,
        2 => RelayEventKind::Failed {
            why: "ICE timeout".into(),
        },
        3 => RelayEventKind::NoMedia { leg: Leg::Xmpp },
        4 => RelayEventKind::NoMedia { leg: Leg::Sip },
        _ => RelayEventKind::Closed {
            reason: CloseReason::RemoteClosed,
            counters: CallCounters::default(),
        },
    }
}

const JINGLE_CAPTURE_ACTIONS: &[Action] = &[
    Action::SessionInitiate,
    Action::SessionAccept,
    Action::TransportInfo,
    Action::SessionInitiate,
    Action::SessionAccept,
    Action::ContentAdd,
];

/// Decodes the relay outcomes (first byte: bit n set = the nth `Start` fails) and up to 48 ops.
pub fn call_ops(data: &[u8]) -> (u8, Vec<CallOp>) {
    let mut r = Reader::new(data);
    let fails = r.byte();
    let mut v = Vec::new();
    while !r.is_empty() && v.len() < 48 {
        let op = match r.byte() % 14 {
            0 | 1 => CallOp::Invite(invite_request(&mut r)),
            2 | 3 => {
                let (from, to, sid) = (
                    usize::from(r.byte()),
                    usize::from(r.byte()),
                    usize::from(r.byte()),
                );
                CallOp::Jmi {
                    from,
                    to,
                    sid,
                    xml: jmi_xml(&mut r, "{sid}"),
                }
            }
            4..=6 => {
                let (from, to, sid) = (
                    usize::from(r.byte()),
                    usize::from(r.byte()),
                    usize::from(r.byte()),
                );
                let body = match r.byte() % 6 {
                    0..=2 => {
                        let which = r.byte() % 3;
                        let action = match which {
                            0 => Action::SessionInitiate,
                            1 => Action::SessionAccept,
                            _ => Action::TransportInfo,
                        };
                        let action = if r.byte() & 7 == 0 {
                            JINGLE_CAPTURE_ACTIONS
                                [usize::from(r.byte()) % JINGLE_CAPTURE_ACTIONS.len()]
                        } else {
                            action
                        };
                        JingleBody::Capture {
                            which,
                            action,
                            alter: r.byte() % 8,
                        }
                    }
                    3 => JingleBody::Terminate(r.choice(REASONS)),
                    4 => JingleBody::Ringing,
                    _ => JingleBody::Generated(jingle_xml(&mut r, Some("{sid}"))),
                };
                CallOp::Jingle {
                    from,
                    to,
                    sid,
                    body,
                    twice: r.byte() & 3 == 0,
                }
            }
            7 => CallOp::IqReply {
                n: usize::from(r.byte()),
                error: (r.byte() & 3 == 0).then(|| usize::from(r.byte())),
            },
            8 => CallOp::Bounce {
                n: usize::from(r.byte()),
            },
            9 | 10 => CallOp::Dialog {
                key: usize::from(r.byte()),
                event: dialog_event(&mut r),
            },
            11 => CallOp::Media {
                key: usize::from(r.byte()),
                event: media_event(&mut r),
            },
            12 => CallOp::Hangup {
                key: usize::from(r.byte()),
            },
            _ => CallOp::Advance(Duration::from_millis(u64::from(r.byte()) * 40)),
        };
        v.push(op);
    }
    (fails, v)
}

/// `calls`: a byte-driven sequence of call inputs; see [`run_calls`].
pub fn calls(data: &[u8]) {
    let (fails, ops) = call_ops(data);
    run_calls(fails, ops);
}

/// The `<jingle/>` of a capture iq.
fn capture_jingle(xml: &str) -> Option<Jingle> {
    let iq: Element = xml.trim().parse().ok()?;
    Jingle::parse(iq.get_child("jingle", jingle::ns::JINGLE)?).ok()
}

fn jingle_element(body: &JingleBody, sid: &str) -> Option<Element> {
    let j = match body {
        JingleBody::Capture {
            which,
            action,
            alter,
        } => {
            let mut j = capture_jingle(match which {
                0 => LIBWEBRTC_OFFER,
                1 => LIBWEBRTC_ANSWER,
                _ => LIBWEBRTC_TRANSPORT_INFO,
            })?;
            j.action = *action;
            j.sid = sid.to_owned();
            for c in &mut j.contents {
                match alter {
                    1 => c.transport = None,
                    2 => {
                        if let Some(d) = c.description.as_mut() {
                            d.payload_types.retain(|p| negotiate::codec_of(p).is_none());
                        }
                    }
                    3 => {
                        if let Some(d) = c.description.as_mut() {
                            d.media = "video".into();
                        }
                    }
                    4 => {
                        if let Some(f) = c.transport.as_mut().and_then(|t| t.fingerprint.as_mut()) {
                            f.setup = Some(jingle::Setup::Actpass);
                        }
                    }
                    _ => {}
                }
            }
            j
        }
        JingleBody::Terminate(cond) => {
            let xml = format!(
                "<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='{}'><reason><{}/></reason></jingle>",
                attr_value(sid),
                xml_name(cond.clone())
            );
            return xml.parse().ok();
        }
        JingleBody::Ringing => {
            let mut j = Jingle::new(Action::SessionInfo, sid);
            j.info = Some(jingle::SessionInfo::Ringing);
            j
        }
        JingleBody::Generated(xml) => return xml.replace("{sid}", &attr_value(sid)).parse().ok(),
    };
    Some(j.to_element())
}

/// Drives a fresh core through call `ops` with the link up, answering every
/// `MediaCommand::Start` at once (`Err` for the nth one when bit n of `fails` is set), then
/// lets every timer run out. Checks ([`Driver`]): no panic; every stanza can be sent and
/// survives XML; every Jingle iq set gets exactly one reply; every INVITE key gets exactly one
/// final response: `Accept` or `Reject` from the core, or the stack's 487 after
/// `DialogEvent::Cancelled` (then nothing from the core); no `Ringing` after it and `Hangup`
/// only after `Accept`; no dialog action for a key nobody created (the core creates keys with
/// `Invite`); media commands only between a key's `Start` and its `Hangup`; and at the end,
/// every call the core no longer lists has had its started media hung up.
pub fn run_calls(fails: u8, ops: Vec<CallOp>) {
    let mut d = Driver::with_calls(CallSettings {
        no_answer: NO_ANSWER,
        no_media: Duration::from_secs(2),
    });
    d.start_fails = fails;
    d.input(Input::LinkUp);
    for op in ops {
        d.call_op(op);
    }
    d.finish_calls();
}

impl Driver {
    fn pick_key(&self, n: usize) -> CallKey {
        match self.call_keys.get(n % (self.call_keys.len() + 1)) {
            Some(k) => *k,
            None => 4242,
        }
    }

    /// (sid, stox's JID, the peer's JID) of the `n`th session seen, or a made-up one.
    fn pick_session(&self, n: usize) -> (String, Option<String>) {
        match self.sessions.get(n % (self.sessions.len() + 2)) {
            Some((sid, gw)) => (sid.clone(), Some(gw.clone())),
            None => (["s1", "s2"][n % 2].to_string(), None),
        }
    }

    /// Whether the io layer can report `event` for `call` (the core trusts it on this): an
    /// incoming INVITE is CANCELled before its final response, confirmed, BYEd or ended
    /// after its 200; stox's INVITE gets provisional and final responses until one final,
    /// then BYE or the end of the dialog after a 2xx. A key nobody created gets anything.
    fn dialog_event_possible(&self, call: CallKey, event: &DialogEvent) -> bool {
        use DialogEvent as E;
        let seen = self
            .dialog_events
            .get(&call)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if let Some(log) = self.invites.get(&call) {
            let accepted = log.iter().any(|a| matches!(a, DialogAction::Accept { .. }));
            let rejected = log.iter().any(|a| matches!(a, DialogAction::Reject { .. }));
            let ended = log.contains(&DialogAction::Hangup)
                || seen.iter().any(|e| matches!(e, E::Bye | E::Terminated));
            match event {
                E::Cancelled => !accepted && !rejected && !seen.contains(&E::Cancelled),
                E::Confirmed | E::Bye | E::Terminated => accepted && !ended,
                _ => false,
            }
        } else if let Some(log) = self.outgoing.get(&call) {
            let answered = seen.iter().any(|e| matches!(e, E::Answered { .. }));
            let failed = seen.iter().any(|e| matches!(e, E::Failed { .. }));
            let ended = log.contains(&DialogAction::Hangup)
                || seen.iter().any(|e| matches!(e, E::Bye | E::Terminated));
            match event {
                E::Progress { .. } | E::Answered { .. } | E::Failed { .. } => !answered && !failed,
                E::Bye | E::Terminated => answered && !ended,
                _ => false,
            }
        } else {
            !self.call_keys.contains(&call)
        }
    }

    fn fresh_iq_id(&mut self) -> String {
        self.next_iq += 1;
        format!("fz-{}", self.next_iq)
    }

    fn send_from_xmpp(&mut self, s: Element) {
        // Through XML, as the component link delivers it.
        let Ok(s) = stanza::to_string(&s).parse::<Element>() else {
            return;
        };
        if s.name() == "iq" && s.attr("type") == Some("set") {
            if let Some(id) = s.attr("id") {
                self.iq_waiting.insert(id.to_owned());
            }
        }
        self.input(Input::Stanza(s));
    }

    /// Runs one [`CallOp`].
    pub fn call_op(&mut self, op: CallOp) {
        match op {
            CallOp::Invite(req) => {
                self.next_call += 1;
                let key = self.next_call;
                self.invites.insert(key, Vec::new());
                self.call_keys.push(key);
                self.input(Input::Invite { call: key, req });
            }
            CallOp::Jmi { from, to, sid, xml } => {
                let (sid, gw) = self.pick_session(sid);
                let from = CALL_DEVICES[from % CALL_DEVICES.len()];
                let to = match gw {
                    Some(gw) if to % 4 != 0 => gw,
                    _ => CALL_CONTACTS[to % CALL_CONTACTS.len()].to_owned(),
                };
                let Ok(jmi) = xml.replace("{sid}", &attr_value(&sid)).parse::<Element>() else {
                    return;
                };
                let id = self.fresh_iq_id();
                let m = stanza::builder("message", from, &to, &id, Some("chat"))
                    .append(jmi)
                    .build();
                self.send_from_xmpp(m);
            }
            CallOp::Jingle {
                from,
                to,
                sid,
                body,
                twice,
            } => {
                let (sid, gw) = self.pick_session(sid);
                let from = CALL_DEVICES[from % CALL_DEVICES.len()];
                let to = match gw {
                    Some(gw) if to % 4 != 0 => gw,
                    _ => CALL_CONTACTS[to % CALL_CONTACTS.len()].to_owned(),
                };
                let Some(j) = jingle_element(&body, &sid) else {
                    return;
                };
                if j.attr("action") == Some("session-initiate") {
                    self.sessions.push((sid.clone(), to.clone()));
                }
                for _ in 0..(1 + usize::from(twice)) {
                    let id = self.fresh_iq_id();
                    let iq = stanza::builder("iq", from, &to, &id, Some("set"))
                        .append(j.clone())
                        .build();
                    self.send_from_xmpp(iq);
                }
            }
            CallOp::IqReply { n, error } => {
                if self.stox_iqs.is_empty() {
                    return;
                }
                let (id, from, to) = self.stox_iqs[n % self.stox_iqs.len()].clone();
                let reply = match error {
                    None => stanza::builder("iq", &to, &from, &id, Some("result")).build(),
                    Some(c) => stanza::builder("iq", &to, &from, &id, Some("error"))
                        .append(stanza::error_child(
                            &CONDITIONS[c % CONDITIONS.len()],
                            Some("refused"),
                        ))
                        .build(),
                };
                self.send_from_xmpp(reply);
            }
            CallOp::Bounce { n } => {
                if self.stox_jmi.is_empty() {
                    return;
                }
                let (id, from, to) = self.stox_jmi[n % self.stox_jmi.len()].clone();
                let b = stanza::builder("message", &to, &from, &id, Some("error"))
                    .append(stanza::error_child(
                        &DefinedCondition::ServiceUnavailable,
                        Some("offline"),
                    ))
                    .build();
                self.send_from_xmpp(b);
            }
            CallOp::Dialog { key, event } => {
                let call = self.pick_key(key);
                if self.dialog_event_possible(call, &event) {
                    self.dialog_events
                        .entry(call)
                        .or_default()
                        .push(event.clone());
                    self.input(Input::Dialog { call, event });
                }
            }
            CallOp::Media { key, event } => {
                let call = self.pick_key(key);
                let possible = match self.media.get(&call) {
                    Some(m) => *m != MediaState::Started { ok: false },
                    None => !self.call_keys.contains(&call),
                };
                if possible {
                    self.input(Input::Media { call, event });
                }
            }
            CallOp::Hangup { key } => {
                let call = self.pick_key(key);
                self.gw.hangup_call(call);
                self.drain();
            }
            CallOp::Advance(by) => {
                self.now += by;
                self.gw.handle_timeout(self.now);
                self.drain();
            }
        }
    }

    /// Checks one call output (see [`run_calls`]).
    fn on_call_output(&mut self, o: &Output) {
        match o {
            Output::Dialog { call, action } => {
                let call = *call;
                // A CANCEL is answered 487 by the stack: the INVITE's final response.
                let cancelled = self
                    .dialog_events
                    .get(&call)
                    .is_some_and(|e| e.contains(&DialogEvent::Cancelled));
                let cancel_487 = DialogAction::Reject {
                    code: 487,
                    reason: "CANCEL (answered by the stack)".into(),
                };
                if let Some(log) = self.invites.get_mut(&call) {
                    let final_before = log
                        .iter()
                        .find(|a| {
                            matches!(a, DialogAction::Accept { .. } | DialogAction::Reject { .. })
                        })
                        .or(cancelled.then_some(&cancel_487));
                    match action {
                        DialogAction::Ringing => assert!(
                            final_before.is_none(),
                            "180 for call {call} after its final response: {log:?}"
                        ),
                        DialogAction::Accept { sdp } => {
                            assert!(
                                final_before.is_none(),
                                "second final response for call {call}: {log:?} then 200"
                            );
                            let media = sdp_jingle::parse_sdp(sdp)
                                .and_then(|s| sdp_jingle::sdp_to_jingle(&s, Role::Responder))
                                .unwrap_or_else(|e| {
                                    panic!(
                                        "stox's SDP answer does not read back ({e}): {}",
                                        String::from_utf8_lossy(sdp)
                                    )
                                });
                            assert_eq!(media.contents.len(), 1, "the SDP answer has one m=");
                        }
                        DialogAction::Reject { code, .. } => {
                            assert!(
                                final_before.is_none(),
                                "second final response for call {call}: {log:?} then {code}"
                            );
                            assert!((400..700).contains(code), "Reject with {code}");
                        }
                        DialogAction::Hangup => {
                            assert!(
                                matches!(final_before, Some(DialogAction::Accept { .. })),
                                "BYE for call {call}, whose INVITE was not answered 200: {log:?}"
                            );
                            assert!(
                                !log.contains(&DialogAction::Hangup),
                                "second Hangup for call {call}"
                            );
                        }
                        DialogAction::Invite { .. } => {
                            panic!("Invite for call {call}, an incoming INVITE")
                        }
                    }
                    log.push(action.clone());
                    return;
                }
                let log = self.outgoing.get_mut(&call);
                match (action, log) {
                    (DialogAction::Invite { req, .. }, None) => {
                        assert!(
                            call > u64::MAX / 2,
                            "the core sent an INVITE under key {call}, in the io layer's range"
                        );
                        let media = sdp_jingle::parse_sdp(&req.body)
                            .and_then(|s| sdp_jingle::sdp_to_jingle(&s, Role::Initiator))
                            .unwrap_or_else(|e| {
                                panic!(
                                    "stox's SDP offer does not read back ({e}): {}",
                                    String::from_utf8_lossy(&req.body)
                                )
                            });
                        assert_eq!(media.contents.len(), 1, "the SDP offer has one m=");
                        check_sip_uri(&req.uri);
                        self.outgoing.insert(call, vec![action.clone()]);
                        self.call_keys.push(call);
                    }
                    (_, None) => panic!("{action:?} for call {call}, which nobody created"),
                    (DialogAction::Hangup, Some(log)) => {
                        assert!(
                            !log.contains(&DialogAction::Hangup),
                            "second Hangup for call {call}"
                        );
                        log.push(DialogAction::Hangup);
                    }
                    (other, Some(_)) => {
                        panic!("{other:?} for call {call}, an INVITE stox sent")
                    }
                }
            }
            Output::Media { call, cmd } => {
                let call = *call;
                let state = self.media.get(&call).copied();
                match cmd {
                    MediaCommand::Start(cm) => {
                        assert!(state.is_none(), "second media Start for call {call}");
                        assert!(
                            self.invites.contains_key(&call) || call > u64::MAX / 2,
                            "media Start for call {call}, which nobody created"
                        );
                        let fail = self.starts < 8 && self.start_fails & (1 << self.starts) != 0;
                        self.starts += 1;
                        self.pending_starts
                            .push_back((call, cm.xmpp.we_offer, fail));
                        self.media.insert(call, MediaState::Started { ok: !fail });
                        if !self.call_keys.contains(&call) {
                            self.call_keys.push(call);
                        }
                    }
                    MediaCommand::Hangup => {
                        assert!(
                            matches!(state, Some(MediaState::Started { ok: true })),
                            "media Hangup for call {call}, whose media is {state:?}"
                        );
                        self.media.insert(call, MediaState::HungUp);
                    }
                    other => assert!(
                        matches!(state, Some(MediaState::Started { ok: true })),
                        "{other:?} for call {call}, whose media is {state:?}"
                    ),
                }
            }
            Output::Stanza(s) => {
                let attr = |n: &str| s.attr(n).unwrap_or_default().to_string();
                match (s.name(), s.attr("type")) {
                    ("iq", Some("result" | "error")) => {
                        let id = attr("id");
                        assert!(
                            self.iq_waiting.remove(&id),
                            "iq {} with id {id:?}, which is {}",
                            attr("type"),
                            if self.iq_answered.contains(&id) {
                                "answered already"
                            } else {
                                "no iq set of the peer"
                            }
                        );
                        self.iq_answered.insert(id);
                    }
                    ("iq", Some("set")) => {
                        let el = s
                            .get_child("jingle", jingle::ns::JINGLE)
                            .expect("stox sends only Jingle iq sets");
                        let j = Jingle::parse(el)
                            .unwrap_or_else(|e| panic!("stox sent a Jingle it cannot read: {e}"));
                        self.stox_iqs.push((attr("id"), attr("from"), attr("to")));
                        if !self.sessions.iter().any(|(sid, _)| *sid == j.sid) {
                            self.sessions.push((j.sid.clone(), attr("from")));
                        }
                    }
                    ("message", _) => {
                        if let Some(Ok(m)) = JingleMessage::from_message(s) {
                            self.stox_jmi.push((attr("id"), attr("from"), attr("to")));
                            if !self.sessions.iter().any(|(sid, _)| sid == m.id()) {
                                self.sessions.push((m.id().to_owned(), attr("from")));
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// The dialog actions call `call` got (an incoming INVITE or one stox sent).
    pub fn actions(&self, call: CallKey) -> Vec<DialogAction> {
        self.invites
            .get(&call)
            .or_else(|| self.outgoing.get(&call))
            .cloned()
            .unwrap_or_default()
    }

    /// Every call key seen, in order.
    pub fn call_keys(&self) -> &[CallKey] {
        &self.call_keys
    }

    /// The media state of call `call`.
    pub fn media_state(&self, call: CallKey) -> Option<MediaState> {
        self.media.get(&call).copied()
    }

    /// Answers the relay's pending `Start`s (the io layer does before the next input).
    fn answer_starts(&mut self) -> bool {
        let Some((call, we_offer, fail)) = self.pending_starts.pop_front() else {
            return false;
        };
        let result = if fail {
            Err("no free port".to_string())
        } else {
            let setup = if we_offer {
                Setup::Actpass
            } else {
                Setup::Active
            };
            Ok(fake_started(call, setup))
        };
        self.gw
            .handle_input(self.now, Input::MediaStarted { call, result });
        true
    }

    /// Lets every timer run out, then checks what must hold once every ring time is over.
    pub fn finish_calls(&mut self) {
        self.run_out();
        assert!(
            self.iq_waiting.is_empty(),
            "Jingle iq sets never answered: {:?}",
            self.iq_waiting
        );
        for (call, log) in &self.invites {
            let cancelled = self
                .dialog_events
                .get(call)
                .is_some_and(|e| e.contains(&DialogEvent::Cancelled));
            let finals = log
                .iter()
                .filter(|a| matches!(a, DialogAction::Accept { .. } | DialogAction::Reject { .. }))
                .count()
                + usize::from(cancelled);
            assert_eq!(
                finals, 1,
                "INVITE {call} got {finals} final responses: {log:?}"
            );
        }
        let live: BTreeSet<CallKey> = self.gw.calls().iter().map(|c| c.id).collect();
        for (call, state) in &self.media {
            if !live.contains(call) {
                assert!(
                    !matches!(state, MediaState::Started { ok: true }),
                    "call {call} is over but its media was never hung up (leaked relay ports)"
                );
            }
        }
    }
}

/// The media of a call as the relay sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaState {
    /// `Start` came, and the relay answered `ok`.
    Started {
        /// The relay started it.
        ok: bool,
    },
    /// `Hangup` came.
    HungUp,
}

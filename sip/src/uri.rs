//! RFC 3261 §19.1: SIP and SIPS URIs.
//!
//! [`SipUri`] is the typed form of
//!
//! ```text
//! SIP-URI  = "sip:"  [ userinfo ] hostport uri-parameters [ headers ]
//! SIPS-URI = "sips:" [ userinfo ] hostport uri-parameters [ headers ]
//! userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
//! ```
//!
//! Parsing percent-decodes every component (RFC 3261 §19.1.2), so [`SipUri::user`] is the
//! plain text of the user part (it may contain any character, `@` included). Display
//! re-encodes each component with the character set its grammar allows: for the user part
//! `unreserved / "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"` stay as they are and every
//! other byte, including `@`, `%` and all non-ASCII UTF-8 bytes, becomes `%HH`. Display and
//! parse are inverse to each other on the values parsing produces (a property test checks
//! it).
//!
//! Normalisation on parse: the scheme is case-insensitive, the host is lowercased (RFC 3261
//! §19.1.4 compares hosts case-insensitively) and uri-parameter names are lowercased (they
//! are compared case-insensitively too). User part, password, parameter values and headers
//! keep their case.
//!
//! ```
//! use stox_sip::uri::{Scheme, SipUri};
//!
//! let uri: SipUri = "<sip:bob%40example.net@SIP.Example:5080;gr=x;transport=tcp>".parse().unwrap();
//! assert_eq!(uri.scheme, Scheme::Sip);
//! assert_eq!(uri.user.as_deref(), Some("bob@example.net"));
//! assert_eq!(uri.host, "sip.example");
//! assert_eq!(uri.port, Some(5080));
//! assert_eq!(uri.gr(), Some("x"));
//! assert_eq!(uri.transport(), Some("tcp"));
//! assert_eq!(uri.to_string(), "sip:bob%40example.net@sip.example:5080;gr=x;transport=tcp");
//! ```

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// RFC 3261 §25.1 `unreserved = alphanum / mark`, `mark = - _ . ! ~ * ' ( )`: the set of
/// bytes that must be escaped is everything else.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// `user = 1*( unreserved / escaped / user-unreserved )`,
/// `user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"`.
///
/// `;`, `?` and `/` are written escaped although the grammar allows them: real
/// parsers (rsipstack among them) cut the user part at `;` (a `tel`-style
/// parameter) or `?` (headers), and escaping is always allowed (fuzz bug 5).
const USER: &AsciiSet = &UNRESERVED
    .remove(b'&')
    .remove(b'=')
    .remove(b'+')
    .remove(b'$')
    .remove(b',');

/// `password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )`.
const PASSWORD: &AsciiSet = &UNRESERVED
    .remove(b'&')
    .remove(b'=')
    .remove(b'+')
    .remove(b'$')
    .remove(b',');

/// `paramchar = param-unreserved / unreserved / escaped`,
/// `param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"`.
const PARAM: &AsciiSet = &UNRESERVED
    .remove(b'[')
    .remove(b']')
    .remove(b'/')
    .remove(b':')
    .remove(b'&')
    .remove(b'+')
    .remove(b'$');

/// `hname / hvalue = *( hnv-unreserved / unreserved / escaped )`,
/// `hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"`.
const HEADER: &AsciiSet = &UNRESERVED
    .remove(b'[')
    .remove(b']')
    .remove(b'/')
    .remove(b'?')
    .remove(b':')
    .remove(b'+')
    .remove(b'$');

/// Why a string is not a SIP or SIPS URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipUriError {
    /// There is no `scheme:` prefix at all.
    #[error("not a URI: no scheme")]
    MissingScheme,
    /// The scheme is neither `sip` nor `sips`.
    #[error("unsupported URI scheme {0:?}")]
    UnsupportedScheme(String),
    /// `userinfo` is present (there is an `@`) but the user part is empty.
    #[error("empty user part")]
    EmptyUser,
    /// A `%` is not followed by two hexadecimal digits.
    #[error("invalid percent-escape")]
    InvalidEscape,
    /// The percent-decoded bytes of a component are not UTF-8.
    #[error("percent-decoded text is not UTF-8")]
    InvalidUtf8,
    /// The URI contains whitespace, a control character or `<` `>` `"`.
    #[error("invalid character {0:?} in URI")]
    InvalidChar(char),
    /// The host part is empty.
    #[error("empty host")]
    EmptyHost,
    /// The host is neither a hostname, an IPv4 address nor a bracketed IPv6 reference.
    #[error("invalid host {0:?}")]
    InvalidHost(String),
    /// The port is not a number between 0 and 65535.
    #[error("invalid port {0:?}")]
    InvalidPort(String),
    /// A `;=value` parameter without a name.
    #[error("uri-parameter without a name")]
    EmptyParamName,
}

/// The URI scheme: `sip:` or `sips:` (RFC 3261 §19.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`: TLS on every hop (RFC 3261 §26.2.2).
    Sips,
}

impl Scheme {
    /// The scheme name, lowercase, without the colon.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
        }
    }
}

/// A SIP or SIPS URI (RFC 3261 §19.1) with every component percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipUri {
    /// `sip` or `sips`.
    pub scheme: Scheme,
    /// The user part, percent-decoded (any Unicode, `@` included). `None` when the URI has
    /// no `userinfo`. Never `Some("")` for a parsed URI.
    pub user: Option<String>,
    /// The password of `user:password@` (deprecated by RFC 3261 §19.1.1, kept so that
    /// nothing is lost), percent-decoded.
    pub password: Option<String>,
    /// Lowercased hostname, IPv4 address, or IPv6 reference with its brackets (`[::1]`).
    pub host: String,
    /// The port, if the URI names one.
    pub port: Option<u16>,
    /// uri-parameters in order: lowercased name, percent-decoded value (`None` for a
    /// parameter without `=`, such as `lr`).
    pub params: Vec<(String, Option<String>)>,
    /// URI headers (`?name=value&...`) in order, percent-decoded.
    pub headers: Vec<(String, String)>,
}

impl SipUri {
    /// A URI without password, parameters or headers. The host is checked and lowercased
    /// as on parse.
    pub fn new(
        scheme: Scheme,
        user: Option<String>,
        host: &str,
        port: Option<u16>,
    ) -> Result<Self, SipUriError> {
        if user.as_deref() == Some("") {
            return Err(SipUriError::EmptyUser);
        }
        Ok(SipUri {
            scheme,
            user,
            password: None,
            host: parse_host(host)?,
            port,
            params: Vec::new(),
            headers: Vec::new(),
        })
    }

    /// The value of the uri-parameter `name` (case-insensitive). `None` both when the
    /// parameter is absent and when it has no value; see [`SipUri::has_param`].
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether the uri-parameter `name` is present, with or without a value.
    pub fn has_param(&self, name: &str) -> bool {
        self.params
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The RFC 5627 `gr` parameter's value: the instance of a public GRUU. A temporary
    /// GRUU carries `;gr` without a value and yields `None`.
    pub fn gr(&self) -> Option<&str> {
        self.param("gr")
    }

    /// The `transport` parameter (RFC 3261 §19.1.1), as written.
    pub fn transport(&self) -> Option<&str> {
        self.param("transport")
    }

    /// This URI with the parameter `name` set to `value`, replacing any existing one
    /// (names are stored lowercase).
    #[must_use]
    pub fn with_param(mut self, name: &str, value: Option<&str>) -> Self {
        let name = name.to_ascii_lowercase();
        let value = value.map(str::to_owned);
        if let Some(slot) = self.params.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
            self.params.retain({
                let mut seen = false;
                move |(n, _)| {
                    if *n != name {
                        return true;
                    }
                    let keep = !seen;
                    seen = true;
                    keep
                }
            });
        } else {
            self.params.push((name, value));
        }
        self
    }

    /// This URI without any parameter called `name` (case-insensitive).
    #[must_use]
    pub fn without_param(mut self, name: &str) -> Self {
        self.params.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// The address-of-record part: scheme, user, host and port only.
    #[must_use]
    pub fn aor(&self) -> SipUri {
        SipUri {
            scheme: self.scheme,
            user: self.user.clone(),
            password: None,
            host: self.host.clone(),
            port: self.port,
            params: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// `host[:port]` as written in a URI.
    pub fn host_port(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }
}

/// Parses RFC 3261 `hostport = host [ ":" port ]`: returns the lowercased host (IPv6 with
/// brackets) and the port.
pub fn parse_host_port(s: &str) -> Result<(String, Option<u16>), SipUriError> {
    let (host, port) = if s.starts_with('[') {
        match s.find(']') {
            Some(end) => {
                let (host, rest) = s.split_at(end + 1);
                match rest.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None if rest.is_empty() => (host, None),
                    None => return Err(SipUriError::InvalidHost(s.to_owned())),
                }
            }
            None => return Err(SipUriError::InvalidHost(s.to_owned())),
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(
            p.parse::<u16>()
                .map_err(|_| SipUriError::InvalidPort(p.to_owned()))?,
        ),
        Some(p) => return Err(SipUriError::InvalidPort(p.to_owned())),
        None => None,
    };
    Ok((parse_host(host)?, port))
}

/// RFC 3261 `host = hostname / IPv4address / IPv6reference`, lowercased. Hostnames are
/// checked leniently: letters, digits, `-`, `.` and `_` (seen in the wild).
fn parse_host(host: &str) -> Result<String, SipUriError> {
    if host.is_empty() {
        return Err(SipUriError::EmptyHost);
    }
    if let Some(inner) = host.strip_prefix('[') {
        let valid = inner
            .strip_suffix(']')
            .is_some_and(|addr| addr.parse::<Ipv6Addr>().is_ok());
        return if valid {
            Ok(host.to_ascii_lowercase())
        } else {
            Err(SipUriError::InvalidHost(host.to_owned()))
        };
    }
    let valid = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !host.starts_with('.')
        && !host.contains("..");
    if valid {
        Ok(host.to_ascii_lowercase())
    } else {
        Err(SipUriError::InvalidHost(host.to_owned()))
    }
}

/// Strict percent-decoding: every `%` must start a `%HH` escape and the result must be
/// UTF-8.
fn decode(s: &str) -> Result<String, SipUriError> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(SipUriError::InvalidEscape)?;
            let hi = hex_value(hex[0]).ok_or(SipUriError::InvalidEscape)?;
            let lo = hex_value(hex[1]).ok_or(SipUriError::InvalidEscape)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| SipUriError::InvalidUtf8)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl FromStr for SipUri {
    type Err = SipUriError;

    /// Parses `sip:` / `sips:` URIs (scheme case-insensitive), optionally inside `<>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let s = s
            .strip_prefix('<')
            .and_then(|inner| inner.strip_suffix('>'))
            .unwrap_or(s);
        if let Some(c) = s
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
        {
            return Err(SipUriError::InvalidChar(c));
        }
        let (scheme, rest) = s.split_once(':').ok_or(SipUriError::MissingScheme)?;
        let scheme = if scheme.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else {
            return Err(SipUriError::UnsupportedScheme(scheme.to_owned()));
        };

        // RFC 3261 allows no unescaped '@' in userinfo, params or headers: the first '@'
        // ends the userinfo.
        let (userinfo, rest) = match rest.split_once('@') {
            Some((userinfo, rest)) => (Some(userinfo), rest),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            Some(userinfo) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, Some(decode(password)?)),
                    None => (userinfo, None),
                };
                if user.is_empty() {
                    return Err(SipUriError::EmptyUser);
                }
                (Some(decode(user)?), password)
            }
            None => (None, None),
        };

        let (rest, headers) = match rest.split_once('?') {
            Some((rest, headers)) => (rest, Some(headers)),
            None => (rest, None),
        };
        let mut parts = rest.split(';');
        // `split` always yields at least one item.
        let hostport = parts.next().unwrap_or_default();
        let (host, port) = parse_host_port(hostport)?;

        let mut params = Vec::new();
        for param in parts {
            let (name, value) = match param.split_once('=') {
                Some((name, value)) => (name, Some(decode(value)?)),
                None => (param, None),
            };
            if name.is_empty() {
                if value.is_none() {
                    // A stray `;` (e.g. `sip:a@b;`): nothing to keep.
                    continue;
                }
                return Err(SipUriError::EmptyParamName);
            }
            params.push((decode(name)?.to_ascii_lowercase(), value));
        }

        let mut header_list = Vec::new();
        if let Some(headers) = headers {
            for header in headers.split('&').filter(|h| !h.is_empty()) {
                let (name, value) = header.split_once('=').unwrap_or((header, ""));
                header_list.push((decode(name)?, decode(value)?));
            }
        }

        Ok(SipUri {
            scheme,
            user,
            password,
            host,
            port,
            params,
            headers: header_list,
        })
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme.as_str())?;
        if let Some(user) = &self.user {
            write!(f, "{}", utf8_percent_encode(user, USER))?;
            if let Some(password) = &self.password {
                write!(f, ":{}", utf8_percent_encode(password, PASSWORD))?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for (name, value) in &self.params {
            write!(f, ";{}", utf8_percent_encode(name, PARAM))?;
            if let Some(value) = value {
                write!(f, "={}", utf8_percent_encode(value, PARAM))?;
            }
        }
        for (i, (name, value)) in self.headers.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(
                f,
                "{sep}{}={}",
                utf8_percent_encode(name, HEADER),
                utf8_percent_encode(value, HEADER)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> SipUri {
        match s.parse() {
            Ok(uri) => uri,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn parses_the_components() {
        let uri = parse("sip:alice:secret@Atlanta.COM:5060;Transport=TCP;lr;gr=urn:uuid:f81d?subject=project%20x&priority=urgent");
        assert_eq!(uri.scheme, Scheme::Sip);
        assert_eq!(uri.user.as_deref(), Some("alice"));
        assert_eq!(uri.password.as_deref(), Some("secret"));
        assert_eq!(uri.host, "atlanta.com");
        assert_eq!(uri.port, Some(5060));
        assert_eq!(
            uri.params,
            vec![
                ("transport".to_owned(), Some("TCP".to_owned())),
                ("lr".to_owned(), None),
                ("gr".to_owned(), Some("urn:uuid:f81d".to_owned())),
            ]
        );
        assert_eq!(uri.transport(), Some("TCP"));
        assert_eq!(uri.gr(), Some("urn:uuid:f81d"));
        assert_eq!(uri.param("LR"), None);
        assert!(uri.has_param("lr"));
        assert_eq!(
            uri.headers,
            vec![
                ("subject".to_owned(), "project x".to_owned()),
                ("priority".to_owned(), "urgent".to_owned()),
            ]
        );
    }

    #[test]
    fn rfc3261_19_1_3_examples() {
        for s in [
            "sip:alice@atlanta.com",
            "sip:alice:secretword@atlanta.com;transport=tcp",
            "sips:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:+1-212-555-1212:1234@gateway.com;user=phone",
            "sips:1212@gateway.com",
            "sip:alice@192.0.2.4",
            "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
        ] {
            let uri = parse(s);
            assert_eq!(uri.to_string(), s, "{s}");
        }
        // `;` in the user part is written escaped (see USER).
        assert_eq!(
            parse("sip:alice;day=tuesday@atlanta.com").to_string(),
            "sip:alice%3Bday=tuesday@atlanta.com"
        );
        let uri = parse("sip:alice;day=tuesday@atlanta.com");
        assert_eq!(uri.user.as_deref(), Some("alice;day=tuesday"));
        assert!(uri.params.is_empty());
        let uri = parse("sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com");
        assert_eq!(uri.user, None);
        assert_eq!(uri.param("method"), Some("REGISTER"));
        assert_eq!(
            uri.headers,
            vec![("to".to_owned(), "alice@atlanta.com".to_owned())]
        );
    }

    #[test]
    fn user_is_decoded_and_reencoded() {
        let uri = parse("SIP:f%C3%BC@sip.example");
        assert_eq!(uri.user.as_deref(), Some("fü"));
        assert_eq!(uri.to_string(), "sip:f%C3%BC@sip.example");

        let uri = parse("sip:bob%40example.net@sip.localhost");
        assert_eq!(uri.user.as_deref(), Some("bob@example.net"));
        assert_eq!(uri.to_string(), "sip:bob%40example.net@sip.localhost");

        let uri = parse("sip:o'malley@sip.example");
        assert_eq!(uri.user.as_deref(), Some("o'malley"));
        assert_eq!(uri.to_string(), "sip:o'malley@sip.example");

        // Raw UTF-8 is accepted on input, encoded on output.
        assert_eq!(
            parse("sip:tschüss@xmpp.example").to_string(),
            "sip:tsch%C3%BCss@xmpp.example"
        );
        // Lowercase hex on input, uppercase on output; `%` itself is always encoded.
        assert_eq!(parse("sip:50%25%2a@h").user.as_deref(), Some("50%*"));
        assert_eq!(parse("sip:50%25%2a@h").to_string(), "sip:50%25*@h");
        // user-unreserved characters are not encoded, but for `;`, `?` and `/`.
        let user = "a&b=c+d$e,f;g?h/i-_.!~*'()";
        let uri = SipUri::new(Scheme::Sip, Some(user.to_owned()), "h", None).unwrap();
        assert_eq!(uri.to_string(), "sip:a&b=c+d$e,f%3Bg%3Fh%2Fi-_.!~*'()@h");
        assert_eq!(parse(&uri.to_string()).user.as_deref(), Some(user));
        // The rest is.
        let uri = SipUri::new(Scheme::Sip, Some("a b#<>\"[]:%@".into()), "h", None).unwrap();
        assert_eq!(uri.to_string(), "sip:a%20b%23%3C%3E%22%5B%5D%3A%25%40@h");
    }

    #[test]
    fn hosts_and_ports() {
        let uri = parse("<sips:carol@[2001:DB8::1]:5061>");
        assert_eq!(uri.scheme, Scheme::Sips);
        assert_eq!(uri.host, "[2001:db8::1]");
        assert_eq!(uri.port, Some(5061));
        assert_eq!(uri.to_string(), "sips:carol@[2001:db8::1]:5061");
        assert_eq!(uri.host_port(), "[2001:db8::1]:5061");

        let uri = parse("sip:carol@127.0.0.1:5080");
        assert_eq!((uri.host.as_str(), uri.port), ("127.0.0.1", Some(5080)));
        assert_eq!(
            parse_host_port("PBX.example:0"),
            Ok(("pbx.example".to_owned(), Some(0)))
        );
        assert_eq!(parse_host_port("[::1]"), Ok(("[::1]".to_owned(), None)));
    }

    #[test]
    fn rejects_garbage() {
        use SipUriError::*;
        for (s, err) in [
            ("", MissingScheme),
            ("alice@example.com", MissingScheme),
            ("tel:+1234", UnsupportedScheme("tel".into())),
            ("http://example.com", UnsupportedScheme("http".into())),
            ("sip:", EmptyHost),
            ("sip:alice@", EmptyHost),
            ("sip:@example.com", EmptyUser),
            ("sip:alice@exa mple.com", InvalidChar(' ')),
            ("sip:alice@<example.com>", InvalidChar('<')),
            ("sip:alice@ex/ample.com", InvalidHost("ex/ample.com".into())),
            ("sip:alice@[::1", InvalidHost("[::1".into())),
            ("sip:alice@[zz::1]", InvalidHost("[zz::1]".into())),
            ("sip:alice@[::1]x", InvalidHost("[::1]x".into())),
            ("sip:alice@h:65536", InvalidPort("65536".into())),
            ("sip:alice@h:", InvalidPort("".into())),
            ("sip:alice@h:-1", InvalidPort("-1".into())),
            ("sip:al%4@h", InvalidEscape),
            ("sip:al%zz@h", InvalidEscape),
            ("sip:al%FF@h", InvalidUtf8),
            ("sip:alice@h;=x", EmptyParamName),
            ("sip:bob@example.net@h", InvalidHost("example.net@h".into())),
        ] {
            assert_eq!(s.parse::<SipUri>(), Err(err), "{s:?}");
        }
    }

    #[test]
    fn param_helpers() {
        let uri = parse("sip:alice@h;gr;transport=udp");
        assert_eq!(uri.gr(), None, "temporary GRUU: no value");
        assert!(uri.has_param("gr"));
        let uri = uri.with_param("GR", Some("phone"));
        assert_eq!(uri.gr(), Some("phone"));
        assert_eq!(uri.to_string(), "sip:alice@h;gr=phone;transport=udp");
        let uri = uri.with_param("lr", None).without_param("Transport");
        assert_eq!(uri.to_string(), "sip:alice@h;gr=phone;lr");
        let uri = parse("sip:a@h;gr=1;gr=2").with_param("gr", Some("3"));
        assert_eq!(uri.to_string(), "sip:a@h;gr=3");
        let aor = parse("sip:a:pw@h:1;gr=x?s=t").aor();
        assert_eq!(aor.to_string(), "sip:a@h:1");
    }

    #[test]
    fn params_are_encoded() {
        let uri = parse("sip:a@h").with_param("gr", Some("ü;=x?[]:/&+$"));
        assert_eq!(uri.to_string(), "sip:a@h;gr=%C3%BC%3B%3Dx%3F[]:/&+$");
        assert_eq!(parse(&uri.to_string()), uri);
    }

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z]{2,6}){0,2}",
            any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
            any::<[u16; 8]>().prop_map(|s| format!("[{}]", Ipv6Addr::from(s))),
        ]
    }

    prop_compose! {
        fn sip_uri()(
            sips in any::<bool>(),
            user in proptest::option::of(".{1,12}"),
            password in proptest::option::of(".{0,6}"),
            host in host(),
            port in proptest::option::of(any::<u16>()),
            params in proptest::collection::vec(
                ("[a-z][a-z0-9-]{0,6}", proptest::option::of(".{0,8}")), 0..4),
            headers in proptest::collection::vec(("[A-Za-z][A-Za-z-]{0,6}", ".{0,8}"), 0..3),
        ) -> SipUri {
            let password = if user.is_some() { password } else { None };
            SipUri {
                scheme: if sips { Scheme::Sips } else { Scheme::Sip },
                user, password, host, port, params, headers,
            }
        }
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(uri in sip_uri()) {
            let text = uri.to_string();
            prop_assert_eq!(text.parse::<SipUri>(), Ok(uri), "{}", text);
        }

        #[test]
        fn parse_never_panics(s in "(sips?:)?\\PC{0,40}") {
            let _ = s.parse::<SipUri>();
        }

        #[test]
        fn parsed_uris_reparse_to_themselves(s in "sip:[a-z%0-9@;=?&:.\\[\\]]{1,30}") {
            if let Ok(uri) = s.parse::<SipUri>() {
                prop_assert_eq!(uri.to_string().parse::<SipUri>(), Ok(uri));
            }
        }
    }
}

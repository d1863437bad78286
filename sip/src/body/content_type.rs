//! RFC 3261 §20.15 / RFC 2045 §5.1: the `Content-Type` media type of a body.
//!
//! ```text
//! media-type   =  m-type SLASH m-subtype *(SEMI m-parameter)
//! m-parameter  =  m-attribute EQUAL m-value
//! m-value      =  token / quoted-string
//! ```
//!
//! Type, subtype and parameter names are case-insensitive (RFC 2045 §5.1) and are kept in
//! lowercase; parameter values are kept as written, with quoted-strings unquoted. Tokens
//! follow RFC 2045 (any visible ASCII but `tspecials`), a superset of RFC 3261's. Tolerated:
//! whitespace around `/`, `;` and `=`, and empty parameters (`text/plain;`).

use std::fmt;
use std::str::FromStr;

use super::BodyError;

/// A parsed media type with its parameters, in the order they were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// `type/subtype`, lowercase, e.g. `text/plain`.
    pub mime: String,
    /// Parameters: lowercase name, value as written (unquoted).
    pub params: Vec<(String, String)>,
}

/// RFC 2045 §5.1 `tspecials`.
fn is_tspecial(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')'
            | b'<'
            | b'>'
            | b'@'
            | b','
            | b';'
            | b':'
            | b'\\'
            | b'"'
            | b'/'
            | b'['
            | b']'
            | b'?'
            | b'='
    )
}

/// RFC 2045 §5.1 `token` character: visible US-ASCII, not a tspecial.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_graphic() && !is_tspecial(b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

fn invalid(reason: &str, input: &str) -> BodyError {
    let shown: String = input.chars().take(80).collect();
    BodyError::InvalidContentType(format!("{reason} in {shown:?}"))
}

impl ContentType {
    /// A media type without parameters. `mime` is lowercased; it is not validated, so pass
    /// a well-known `type/subtype` constant.
    pub fn new(mime: &str) -> Self {
        Self {
            mime: mime.to_ascii_lowercase(),
            params: Vec::new(),
        }
    }

    /// Appends a parameter (name lowercased).
    #[must_use]
    pub fn with_param(mut self, name: &str, value: &str) -> Self {
        self.params
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// The value of the first parameter called `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `charset` parameter (RFC 2046 §4.1.2), if any.
    pub fn charset(&self) -> Option<&str> {
        self.param("charset")
    }

    /// The type part, before the `/`.
    pub fn type_(&self) -> &str {
        self.mime.split('/').next().unwrap_or_default()
    }

    /// The subtype part, after the `/`.
    pub fn subtype(&self) -> &str {
        self.mime.split_once('/').map_or("", |(_, s)| s)
    }

    /// True when this is `mime` (case-insensitive), whatever the parameters.
    pub fn is(&self, mime: &str) -> bool {
        self.mime.eq_ignore_ascii_case(mime)
    }
}

/// Linear whitespace allowed around separators (SWS); header folding has been undone by the
/// SIP parser, but a stray CR/LF is tolerated too.
fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

fn take_token(s: &[u8], mut i: usize) -> (usize, usize) {
    let start = i;
    while i < s.len() && is_token_char(s[i]) {
        i += 1;
    }
    (start, i)
}

impl FromStr for ContentType {
    type Err = BodyError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.as_bytes();
        // Every slice boundary below sits on an ASCII byte (token chars, separators,
        // quotes), so slicing `input` at these indices is always on a char boundary.
        let mut i = skip_ws(s, 0);
        let (a, b) = take_token(s, i);
        if a == b {
            return Err(invalid("missing type", input));
        }
        let type_ = &input[a..b];
        i = skip_ws(s, b);
        if s.get(i) != Some(&b'/') {
            return Err(invalid("missing '/'", input));
        }
        i = skip_ws(s, i + 1);
        let (a, b) = take_token(s, i);
        if a == b {
            return Err(invalid("missing subtype", input));
        }
        let subtype = &input[a..b];
        let mut ct = ContentType {
            mime: format!(
                "{}/{}",
                type_.to_ascii_lowercase(),
                subtype.to_ascii_lowercase()
            ),
            params: Vec::new(),
        };
        i = skip_ws(s, b);
        while i < s.len() {
            if s[i] != b';' {
                return Err(invalid("expected ';'", input));
            }
            i = skip_ws(s, i + 1);
            if i >= s.len() || s[i] == b';' {
                // Empty parameter: `text/plain;` or `a/b;;c=d`.
                continue;
            }
            let (a, b) = take_token(s, i);
            if a == b {
                return Err(invalid("invalid parameter name", input));
            }
            let name = input[a..b].to_ascii_lowercase();
            i = skip_ws(s, b);
            if s.get(i) != Some(&b'=') {
                return Err(invalid("parameter without '='", input));
            }
            i = skip_ws(s, i + 1);
            let value = if s.get(i) == Some(&b'"') {
                // quoted-string = DQUOTE *(qdtext / quoted-pair) DQUOTE
                let mut value = Vec::new();
                i += 1;
                loop {
                    match s.get(i) {
                        None => return Err(invalid("unterminated quoted-string", input)),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => match s.get(i + 1) {
                            Some(&c) => {
                                value.push(c);
                                i += 2;
                            }
                            None => return Err(invalid("unterminated quoted-string", input)),
                        },
                        Some(&c) => {
                            value.push(c);
                            i += 1;
                        }
                    }
                }
                // A quoted-pair may have split a multi-byte character only if the input
                // escaped a lone byte of it, which is still valid UTF-8 once re-joined.
                String::from_utf8(value).map_err(|_| invalid("invalid UTF-8", input))?
            } else {
                let (a, b) = take_token(s, i);
                if a == b {
                    return Err(invalid("missing parameter value", input));
                }
                i = b;
                input[a..b].to_owned()
            };
            ct.params.push((name, value));
            i = skip_ws(s, i);
        }
        Ok(ct)
    }
}

impl fmt::Display for ContentType {
    /// Writes `type/subtype;name=value`, quoting values that are not tokens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.mime)?;
        for (name, value) in &self.params {
            if is_token(value) {
                write!(f, ";{name}={value}")?;
            } else {
                f.write_str(";")?;
                f.write_str(name)?;
                f.write_str("=\"")?;
                for c in value.chars() {
                    if matches!(c, '"' | '\\') {
                        f.write_str("\\")?;
                    }
                    // CR and LF cannot appear in a header value, even quoted.
                    if matches!(c, '\r' | '\n') {
                        f.write_str(" ")?;
                    } else {
                        write!(f, "{c}")?;
                    }
                }
                f.write_str("\"")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ct(s: &str) -> ContentType {
        s.parse().unwrap()
    }

    #[test]
    fn rfc3261_20_15_example() {
        // RFC 3261 §20.15: "Content-Type: application/sdp" and "c: text/html; charset=ISO-8859-4"
        assert_eq!(ct("application/sdp"), ContentType::new("application/sdp"));
        let c = ct("text/html; charset=ISO-8859-4");
        assert_eq!(c.mime, "text/html");
        assert_eq!(c.charset(), Some("ISO-8859-4"));
        assert_eq!(c.type_(), "text");
        assert_eq!(c.subtype(), "html");
        assert_eq!(c.to_string(), "text/html;charset=ISO-8859-4");
    }

    #[test]
    fn rfc2045_5_1_examples_are_equivalent() {
        // RFC 2045 §5.1: a quoted and an unquoted value are the same value. (Its other
        // spelling, with an RFC 822 comment `(Plain text)`, is not accepted: no SIP or CPIM
        // peer writes comments in Content-Type.)
        let a = ct("text/plain; charset=us-ascii");
        let b = ct("text/plain; charset=\"us-ascii\"");
        assert_eq!(a, b);
        assert_eq!(b.charset(), Some("us-ascii"));
        assert!("text/plain; charset=us-ascii (Plain text)"
            .parse::<ContentType>()
            .is_err());
    }

    #[test]
    fn case_insensitive_names_and_whitespace() {
        let c = ct("  Text / PLAIN ;  CharSet = UTF-8 ; Format=flowed ");
        assert_eq!(c.mime, "text/plain");
        assert_eq!(
            c.params,
            vec![
                ("charset".into(), "UTF-8".into()),
                ("format".into(), "flowed".into())
            ]
        );
        assert_eq!(c.param("FORMAT"), Some("flowed"));
        assert!(c.is("TEXT/plain"));
    }

    #[test]
    fn quoted_values_with_escapes() {
        let c = ct(r#"multipart/mixed; boundary="a b;c=\"d\"\\e""#);
        assert_eq!(c.param("boundary"), Some(r#"a b;c="d"\e"#));
        assert_eq!(
            c.to_string(),
            r#"multipart/mixed;boundary="a b;c=\"d\"\\e""#
        );
        assert_eq!(ct(&c.to_string()), c);
        let utf8 = ct("text/plain; title=\"héllo 漢\"");
        assert_eq!(utf8.param("title"), Some("héllo 漢"));
    }

    #[test]
    fn tolerates_empty_parameters() {
        assert_eq!(ct("text/plain;"), ContentType::new("text/plain"));
        assert_eq!(
            ct("text/plain;;charset=utf-8"),
            ContentType::new("text/plain").with_param("charset", "utf-8")
        );
    }

    #[test]
    fn sip_message_types() {
        for m in [
            "message/cpim",
            "application/im-iscomposing+xml",
            "message/imdn+xml",
            "application/vnd.gsma.rcs-ft-http+xml",
        ] {
            assert_eq!(ct(m).mime, m);
        }
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "text",
            "text/",
            "/plain",
            "text/plain charset=utf-8",
            "text/plain; charset",
            "text/plain; charset=",
            "text/plain; =x",
            "text/plain; charset=\"utf-8",
            "text/plain; a=\"\\",
            "text/pl<ain",
            "tëxt/plain",
        ] {
            assert!(
                matches!(
                    bad.parse::<ContentType>(),
                    Err(BodyError::InvalidContentType(_))
                ),
                "{bad:?} should be rejected"
            );
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in any::<String>()) {
            let _ = s.parse::<ContentType>();
        }

        #[test]
        fn never_panics_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let s = String::from_utf8_lossy(&b);
            let _ = s.parse::<ContentType>();
        }

        #[test]
        fn display_round_trips(
            t in "[a-z][a-z0-9.+-]{0,10}",
            st in "[a-z][a-z0-9.+-]{0,10}",
            params in proptest::collection::vec(("[a-z][a-z0-9-]{0,8}", "[ -~é漢]{1,12}"), 0..4),
        ) {
            let mut c = ContentType::new(&format!("{t}/{st}"));
            for (n, v) in &params {
                c = c.with_param(n, v);
            }
            let back: ContentType = c.to_string().parse().unwrap();
            prop_assert_eq!(back, c);
        }
    }
}

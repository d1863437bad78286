//! XEP-0106: JID escaping.
//!
//! The ten characters that an XMPP localpart cannot hold (RFC 7622 §3.3.1 forbids
//! `" & ' / : < > @` and space; `\` is the escape character itself) are written as `\hh`
//! (XEP-0106 §3.2):
//!
//! | char | escape | | char | escape |
//! |---|---|---|---|---|
//! | space | `\20` | | `:` | `\3a` |
//! | `"` | `\22` | | `<` | `\3c` |
//! | `&` | `\26` | | `>` | `\3e` |
//! | `'` | `\27` | | `@` | `\40` |
//! | `/` | `\2f` | | `\` | `\5c` |
//!
//! A `\` is escaped only when the two characters after it would otherwise read as one of
//! these escape codes (XEP-0106 §4.2: `\3and\2is\5cool` escapes to `\5c3and\2is\5c5cool`);
//! any other `\` stays as it is. Unescaping replaces exactly the ten lowercase `\hh`
//! sequences and leaves every other `\` alone, so `unescape_node(&escape_node(s)) == s` for
//! every string `s` (a property test checks it).
//!
//! Escaping does not make a string a valid localpart by itself: nodeprep may still refuse
//! it (control characters, some Unicode), and it lowercases it. Build the JID and handle its
//! error.

/// The XEP-0106 escape table: character and its two lowercase hex digits.
const ESCAPES: [(char, &str); 10] = [
    (' ', "20"),
    ('"', "22"),
    ('&', "26"),
    ('\'', "27"),
    ('/', "2f"),
    (':', "3a"),
    ('<', "3c"),
    ('>', "3e"),
    ('@', "40"),
    ('\\', "5c"),
];

/// The character an escape code stands for (`"40"` → `@`). Lowercase hex only.
fn unescaped_char(code: &str) -> Option<char> {
    ESCAPES
        .iter()
        .find(|(_, hex)| *hex == code)
        .map(|(c, _)| *c)
}

/// Whether `s` starts with one of the ten escape codes, in either case. Escaping is
/// case-insensitive here because nodeprep lowercases the localpart afterwards: a literal
/// `\5C` would otherwise turn into the escape `\5c`.
fn starts_with_code(s: &str) -> bool {
    s.get(..2).is_some_and(|code| {
        ESCAPES
            .iter()
            .any(|(_, hex)| code.eq_ignore_ascii_case(hex))
    })
}

/// XEP-0106 escaping of a would-be localpart: `d'artagnan` → `d\27artagnan`,
/// `user@host` → `user\40host`, `c:\net` → `c\3a\net`.
pub fn escape_node(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        let code = match c {
            '\\' if !starts_with_code(&s[i + 1..]) => None,
            _ => ESCAPES.iter().find(|(e, _)| *e == c).map(|(_, hex)| *hex),
        };
        match code {
            Some(hex) => {
                out.push('\\');
                out.push_str(hex);
            }
            None => out.push(c),
        }
    }
    out
}

/// XEP-0106 unescaping of a localpart: `d\27artagnan` → `d'artagnan`. Only the ten
/// lowercase escape codes are replaced; any other `\` is kept (`c\3a\net` → `c:\net`).
pub fn unescape_node(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        match after.get(..2).and_then(unescaped_char) {
            Some(c) => {
                out.push(c);
                rest = &after[2..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// XEP-0106 §5 examples, §4.2's `\3and\2is\5cool`, and further vectors shared by
    /// other implementations (Prosody, aioxmpp).
    const VECTORS: &[(&str, &str)] = &[
        ("space cadet", r"space\20cadet"),
        (r#"call me "ishmael""#, r"call\20me\20\22ishmael\22"),
        ("at&t guy", r"at\26t\20guy"),
        ("d'artagnan", r"d\27artagnan"),
        ("/.fanboy", r"\2f.fanboy"),
        ("::foo::", r"\3a\3afoo\3a\3a"),
        ("<foo>", r"\3cfoo\3e"),
        ("user@host", r"user\40host"),
        (r"c:\net", r"c\3a\net"),
        (r"c:\\net", r"c\3a\\net"),
        (r"c:\cool stuff", r"c\3a\cool\20stuff"),
        (r"c:\5commas", r"c\3a\5c5commas"),
        (r"\3and\2is\5cool", r"\5c3and\2is\5c5cool"),
        (r"\5c", r"\5c5c"),
        (r"\2plus\2is\4", r"\2plus\2is\4"),
        (r"foo\bar", r"foo\bar"),
        (r"foo\41r", r"foo\41r"),
        (r"call\20me", r"call\5c20me"),
        (r"call me\20", r"call\20me\5c20"),
        (r"\5C", r"\5c5C"),
        ("\\", "\\"),
        ("a\\", "a\\"),
        ("a\\2", "a\\2"),
        ("", ""),
        ("tréville@musketeers.lit", r"tréville\40musketeers.lit"),
        ("carol@127.0.0.1:5080", r"carol\40127.0.0.1\3a5080"),
        ("carol@[::1]:5080", r"carol\40[\3a\3a1]\3a5080"),
        ("fü", "fü"),
    ];

    #[test]
    fn table() {
        for (raw, escaped) in VECTORS {
            assert_eq!(escape_node(raw), *escaped, "escape {raw:?}");
            assert_eq!(unescape_node(escaped), *raw, "unescape {escaped:?}");
        }
    }

    #[test]
    fn every_escaped_character() {
        for (c, hex) in ESCAPES.iter().filter(|(c, _)| *c != '\\') {
            let raw = format!("a{c}b");
            let escaped = format!("a\\{hex}b");
            assert_eq!(escape_node(&raw), escaped);
            assert_eq!(unescape_node(&escaped), raw);
        }
        // `\` is escaped only before something that reads as a code.
        assert_eq!(escape_node("a\\b"), "a\\b");
        for (_, hex) in ESCAPES {
            let raw = format!("a\\{hex}b");
            let escaped = format!("a\\5c{hex}b");
            assert_eq!(escape_node(&raw), escaped);
            assert_eq!(unescape_node(&escaped), raw);
        }
    }

    #[test]
    fn unescape_leaves_unknown_and_uppercase_sequences() {
        assert_eq!(unescape_node(r"a\41b"), r"a\41b");
        assert_eq!(unescape_node(r"a\3A"), r"a\3A");
        assert_eq!(unescape_node(r"\"), r"\");
        assert_eq!(unescape_node(r"\4"), r"\4");
        assert_eq!(unescape_node(r"\\40"), r"\@");
    }

    proptest! {
        #[test]
        fn unescape_inverts_escape(s in ".*") {
            prop_assert_eq!(unescape_node(&escape_node(&s)), s);
        }

        #[test]
        fn backslash_heavy_strings_round_trip(s in r"[\\a-f0-9 @:]{0,16}") {
            prop_assert_eq!(unescape_node(&escape_node(&s)), s);
        }

        #[test]
        fn escaped_text_has_no_forbidden_characters(s in ".*") {
            let escaped = escape_node(&s);
            prop_assert!(!escaped.contains([' ', '"', '&', '\'', '/', ':', '<', '>', '@']));
        }

        #[test]
        fn escaping_survives_lowercasing(s in r"[\\a-fA-F0-9 @:]{0,16}") {
            // Nodeprep lowercases the escaped localpart: the escapes must still decode to
            // the lowercased original.
            let lowered = escape_node(&s).to_lowercase();
            prop_assert_eq!(unescape_node(&lowered), s.to_lowercase());
        }
    }
}

//! RFC 2046 §4.1.2 / RFC 3428 §9: decoding a `text/*` body by its `charset` parameter.
//!
//! Any label of the WHATWG Encoding Standard is accepted (what `encoding_rs` knows: UTF-8,
//! UTF-16LE/BE, ISO-8859-x, windows-125x, Shift_JIS, EUC-KR, GBK/GB18030, Big5, KOI8, …).
//! Without a label the body is UTF-8, the SIP default for MESSAGE (RFC 3428 §9).
//!
//! Byte-order marks: a UTF-8 BOM is removed whatever the label (WHATWG "decode" lets the BOM
//! win over the label); a UTF-16 BOM is honoured when the label is a UTF-16 one. Bytes that
//! are invalid in the charset are an error, never silently replaced, so a mislabelled body is
//! reported instead of turned into U+FFFD soup.

use std::borrow::Cow;

use encoding_rs::{Encoding, REPLACEMENT, UTF_16BE, UTF_16LE, UTF_8};

use super::BodyError;

/// Decodes `body` as text in `charset` (UTF-8 when `None`).
///
/// Errors: [`BodyError::UnknownCharset`] for a label `encoding_rs` does not know (or one that
/// the Encoding Standard maps to its "replacement" encoding, such as ISO-2022-KR), and
/// [`BodyError::InvalidEncoding`] for bytes that are malformed in that charset.
pub fn decode_text(body: &[u8], charset: Option<&str>) -> Result<String, BodyError> {
    let label = charset.map(str::trim).unwrap_or("utf-8");
    let labelled = Encoding::for_label(label.as_bytes())
        .filter(|e| *e != REPLACEMENT)
        .ok_or_else(|| BodyError::UnknownCharset(label.to_owned()))?;

    let (encoding, bytes) = match Encoding::for_bom(body) {
        Some((e, len)) if e == UTF_8 => (UTF_8, &body[len..]),
        Some((e, len)) if labelled == UTF_16LE || labelled == UTF_16BE => (e, &body[len..]),
        _ => (labelled, body),
    };

    let text: Option<Cow<'_, str>> = if encoding == UTF_8 {
        std::str::from_utf8(bytes).ok().map(Cow::Borrowed)
    } else {
        encoding.decode_without_bom_handling_and_without_replacement(bytes)
    };
    text.map(Cow::into_owned)
        .ok_or_else(|| BodyError::InvalidEncoding {
            charset: encoding.name().to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn utf8_is_the_default() {
        assert_eq!(
            decode_text("héllo 漢字 😀".as_bytes(), None).unwrap(),
            "héllo 漢字 😀"
        );
        assert_eq!(decode_text(b"", None).unwrap(), "");
    }

    #[test]
    fn labels_are_case_insensitive_and_trimmed() {
        for label in ["UTF-8", "utf8", " Utf-8 ", "unicode-1-1-utf-8"] {
            assert_eq!(decode_text("é".as_bytes(), Some(label)).unwrap(), "é");
        }
    }

    #[test]
    fn strips_utf8_bom() {
        assert_eq!(decode_text(b"\xEF\xBB\xBFhi", None).unwrap(), "hi");
        assert_eq!(decode_text(b"\xEF\xBB\xBFhi", Some("utf-8")).unwrap(), "hi");
        // The BOM wins over a wrong label.
        assert_eq!(
            decode_text(b"\xEF\xBB\xBF\xC3\xA9", Some("iso-8859-1")).unwrap(),
            "é"
        );
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        for bad in [&b"caf\xE9"[..], b"\xC3", b"\xED\xA0\x80", b"\xFF"] {
            assert_eq!(
                decode_text(bad, Some("UTF-8")),
                Err(BodyError::InvalidEncoding {
                    charset: "UTF-8".into()
                })
            );
            assert!(decode_text(bad, None).is_err());
        }
    }

    #[test]
    fn legacy_charsets() {
        assert_eq!(decode_text(b"caf\xE9", Some("ISO-8859-1")).unwrap(), "café");
        assert_eq!(decode_text(b"\xA4", Some("iso-8859-15")).unwrap(), "€");
        assert_eq!(decode_text(b"\x80", Some("windows-1252")).unwrap(), "€");
        assert_eq!(decode_text(b"\xC1\xC2", Some("koi8-r")).unwrap(), "аб");
        assert_eq!(
            decode_text(b"\x82\xB1\x82\xF1", Some("Shift_JIS")).unwrap(),
            "こん"
        );
        assert_eq!(
            decode_text(b"\xC4\xE3\xBA\xC3", Some("gb2312")).unwrap(),
            "你好"
        );
        assert_eq!(decode_text(b"\xBE\xC8", Some("euc-kr")).unwrap(), "안");
    }

    #[test]
    fn invalid_legacy_bytes_are_an_error() {
        assert!(matches!(
            decode_text(b"\x82", Some("Shift_JIS")),
            Err(BodyError::InvalidEncoding { .. })
        ));
    }

    #[test]
    fn utf16_with_and_without_bom() {
        assert_eq!(decode_text(b"h\0i\0", Some("utf-16le")).unwrap(), "hi");
        assert_eq!(decode_text(b"\0h\0i", Some("UTF-16BE")).unwrap(), "hi");
        assert_eq!(decode_text(b"\xFF\xFEh\0", Some("utf-16")).unwrap(), "h");
        assert_eq!(decode_text(b"\xFE\xFF\0h", Some("utf-16")).unwrap(), "h");
        assert!(decode_text(b"h", Some("utf-16le")).is_err());
    }

    #[test]
    fn unknown_charsets() {
        for label in ["klingon", "", "utf-9", "iso-2022-kr"] {
            assert_eq!(
                decode_text(b"x", Some(label)),
                Err(BodyError::UnknownCharset(label.to_owned()))
            );
        }
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..128),
                        label in proptest::option::of("[a-zA-Z0-9_-]{0,16}|utf-8|utf-16|shift_jis|big5|gb18030|iso-8859-2")) {
            let _ = decode_text(&body, label.as_deref());
        }

        #[test]
        fn utf8_round_trips(s in any::<String>()) {
            prop_assert_eq!(decode_text(s.as_bytes(), Some("utf-8")).unwrap(),
                            s.strip_prefix('\u{FEFF}').unwrap_or(&s));
        }
    }
}

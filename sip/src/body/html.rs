//! `text/html` bodies (RFC 2854) reduced to plain text, for peers that only read text.
//!
//! A tolerant scanner, not an HTML parser: it never fails and never panics, whatever the
//! markup. Tags are dropped; the content of `<script>`, `<style>`, `<head>`, `<title>` and
//! `<template>` is dropped with them; `<br>` is a line break and block elements (`<p>`,
//! `<div>`, `<li>`, headings, rows, …) start a new line; character references (the common
//! named ones, `&#…;` and `&#x…;`) are decoded; runs of whitespace collapse to one space as a
//! browser would show them (except inside `<pre>`), at most one empty line is kept, and the
//! result is trimmed.

/// Elements whose content is not text to show.
const SKIPPED: &[&str] = &["script", "style", "head", "title", "template"];

/// Block elements: opening or closing one starts a new line.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "blockquote",
    "pre",
    "hr",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "aside",
    "address",
    "figure",
    "figcaption",
    "form",
    "fieldset",
    "body",
    "html",
];

/// Named character references stox decodes: the XML five and those common in chat HTML.
const ENTITIES: &[(&str, char)] = &[
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("nbsp", '\u{A0}'),
    ("shy", '\u{AD}'),
    ("copy", '©'),
    ("reg", '®'),
    ("trade", '™'),
    ("hellip", '…'),
    ("mdash", '—'),
    ("ndash", '–'),
    ("lsquo", '‘'),
    ("rsquo", '’'),
    ("sbquo", '‚'),
    ("ldquo", '“'),
    ("rdquo", '”'),
    ("bdquo", '„'),
    ("laquo", '«'),
    ("raquo", '»'),
    ("bull", '•'),
    ("middot", '·'),
    ("deg", '°'),
    ("plusmn", '±'),
    ("times", '×'),
    ("divide", '÷'),
    ("para", '¶'),
    ("sect", '§'),
    ("euro", '€'),
    ("pound", '£'),
    ("yen", '¥'),
    ("cent", '¢'),
    ("iexcl", '¡'),
    ("iquest", '¿'),
    ("frac12", '½'),
    ("frac14", '¼'),
    ("frac34", '¾'),
    ("larr", '←'),
    ("rarr", '→'),
    ("uarr", '↑'),
    ("darr", '↓'),
    ("hearts", '♥'),
    ("agrave", 'à'),
    ("aacute", 'á'),
    ("acirc", 'â'),
    ("auml", 'ä'),
    ("ccedil", 'ç'),
    ("egrave", 'è'),
    ("eacute", 'é'),
    ("ecirc", 'ê'),
    ("euml", 'ë'),
    ("iacute", 'í'),
    ("icirc", 'î'),
    ("iuml", 'ï'),
    ("ntilde", 'ñ'),
    ("oacute", 'ó'),
    ("ocirc", 'ô'),
    ("ouml", 'ö'),
    ("uacute", 'ú'),
    ("ugrave", 'ù'),
    ("ucirc", 'û'),
    ("uuml", 'ü'),
    ("szlig", 'ß'),
    ("Agrave", 'À'),
    ("Aacute", 'Á'),
    ("Auml", 'Ä'),
    ("Ccedil", 'Ç'),
    ("Eacute", 'É'),
    ("Egrave", 'È'),
    ("Ntilde", 'Ñ'),
    ("Ouml", 'Ö'),
    ("Uuml", 'Ü'),
];

/// Builds the output: collapses whitespace and line breaks as they arrive.
struct Out {
    text: String,
    /// A collapsible space is owed before the next visible character.
    pending_space: bool,
}

impl Out {
    fn push_char(&mut self, c: char) {
        if self.pending_space && !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push(' ');
        }
        self.pending_space = false;
        self.text.push(c);
    }

    /// Text outside `<pre>`: whitespace runs become one space.
    fn push_text(&mut self, c: char) {
        if matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0C') {
            self.pending_space = true;
        } else {
            self.push_char(c);
        }
    }

    /// Text inside `<pre>`: kept as written (CRLF becomes LF).
    fn push_pre(&mut self, c: char) {
        if c == '\r' {
            return;
        }
        self.pending_space = false;
        self.text.push(c);
    }

    /// `<br>`: a line break, even right after another one (at most one empty line is kept).
    fn hard_break(&mut self) {
        self.trim_spaces();
        if !self.text.is_empty() && !self.text.ends_with("\n\n") {
            self.text.push('\n');
        }
    }

    /// Block boundary: start a new line unless already at the start of one.
    fn soft_break(&mut self) {
        self.trim_spaces();
        if !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push('\n');
        }
    }

    fn trim_spaces(&mut self) {
        self.pending_space = false;
        let kept = self.text.trim_end_matches([' ', '\t']).len();
        self.text.truncate(kept);
    }
}

/// The position just after the `>` closing a tag that starts at `start` (on `<`), honouring
/// quoted attribute values; `None` if the input ends first.
fn tag_end(s: &str, start: usize) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for (i, b) in s.as_bytes().iter().enumerate().skip(start + 1) {
        match (quote, *b) {
            (Some(q), b) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(*b),
            (None, b'>') => return Some(i + 1),
            (None, _) => {}
        }
    }
    None
}

/// Finds `</name` (ASCII case-insensitive) at or after `from`; returns where it starts.
fn find_close(s: &str, from: usize, name: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let needle_len = name.len() + 2;
    let mut i = from;
    while i + needle_len <= bytes.len() {
        if bytes[i] == b'<'
            && bytes[i + 1] == b'/'
            && bytes[i + 2..i + needle_len].eq_ignore_ascii_case(name.as_bytes())
            && !bytes
                .get(i + needle_len)
                .is_some_and(|b| b.is_ascii_alphanumeric())
        {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Decodes the character reference at `s[start..]` (on `&`). Returns the character and the
/// length consumed, or `None` when this `&` does not start a reference we know.
fn entity(s: &str, start: usize) -> Option<(char, usize)> {
    let rest = &s[start + 1..];
    let end = rest.bytes().take(32).position(|b| b == b';')?;
    let name = &rest[..end];
    let c = if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        // HTML: NUL, surrogates and out-of-range code points become U+FFFD.
        match char::from_u32(code) {
            Some('\0') | None => '\u{FFFD}',
            Some(c) => c,
        }
    } else {
        ENTITIES
            .iter()
            .find(|(n, _)| *n == name)
            .or_else(|| ENTITIES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)))
            .map(|(_, c)| *c)?
    };
    Some((c, end + 2))
}

/// Reduces an HTML document or fragment to plain text (see the module documentation).
pub fn html_to_text(html: &str) -> String {
    let mut out = Out {
        text: String::new(),
        pending_space: false,
    };
    let mut pre_depth = 0usize;
    let mut i = 0;
    // `i` only ever moves to a char boundary: past a whole char, past an ASCII `>`/`;`, or to
    // a `<` found by byte search, so slicing `html[i..]` is always valid.
    while i < html.len() {
        let rest = &html[i..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            i = comment.find("-->").map_or(html.len(), |e| i + 4 + e + 3);
            continue;
        }
        if let Some(after) = rest.strip_prefix('<') {
            let closing = after.starts_with('/');
            let name_part = if closing { &after[1..] } else { after };
            let name_len = name_part
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count();
            let is_markup = name_len > 0 && name_part.as_bytes()[0].is_ascii_alphabetic()
                || after.starts_with('!')
                || after.starts_with('?')
                || (closing && name_len > 0);
            if is_markup {
                let Some(end) = tag_end(html, i) else {
                    // An unterminated tag swallows the rest, as a browser would.
                    break;
                };
                let name = name_part[..name_len].to_ascii_lowercase();
                let self_closing = html[..end].ends_with("/>");
                i = end;
                if !closing && SKIPPED.contains(&name.as_str()) && !self_closing {
                    i = match find_close(html, i, &name) {
                        Some(c) => tag_end(html, c).unwrap_or(html.len()),
                        None => html.len(),
                    };
                    out.soft_break();
                    continue;
                }
                if name == "br" {
                    out.hard_break();
                } else if BLOCKS.contains(&name.as_str()) {
                    out.soft_break();
                    if name == "pre" {
                        pre_depth = if closing {
                            pre_depth.saturating_sub(1)
                        } else {
                            pre_depth + 1
                        };
                    }
                } else if matches!(name.as_str(), "td" | "th") && closing {
                    out.pending_space = true;
                }
                continue;
            }
        }
        let (c, len) = if rest.starts_with('&') {
            entity(html, i).unwrap_or(('&', 1))
        } else {
            // `rest` is non-empty: `i < html.len()`.
            let c = rest.chars().next().unwrap_or('\u{FFFD}');
            (c, c.len_utf8())
        };
        i += len;
        if pre_depth > 0 {
            out.push_pre(c);
        } else if c == '\u{A0}' {
            // A no-break space is shown, never collapsed; in plain text it is a space.
            out.push_char(' ');
        } else {
            out.push_text(c);
        }
    }
    let mut text = out.text;
    // Trailing spaces on each line (from `<pre>` or a collapsed run) are noise.
    if text.contains(" \n") || text.contains("\t\n") {
        text = text
            .split('\n')
            .map(|l| l.trim_end_matches([' ', '\t']))
            .collect::<Vec<_>>()
            .join("\n");
    }
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_text_passes_through() {
        assert_eq!(html_to_text("hello world"), "hello world");
        assert_eq!(html_to_text(""), "");
        assert_eq!(html_to_text("  a   b \n c  "), "a b c");
    }

    #[test]
    fn drops_tags_keeps_inline_text() {
        assert_eq!(
            html_to_text("<b>bold</b> and <i>it<span style=\"x\">al</span>ic</i>"),
            "bold and italic"
        );
        assert_eq!(
            html_to_text(r#"<a href="http://x/?a=1&b=>2">link</a>"#),
            "link"
        );
    }

    #[test]
    fn full_document() {
        let html = "<!DOCTYPE html>\n<html><head><title>T</title>\
            <style>p { color: red }</style><script>alert('<p>x</p>')</script></head>\
            <body><p>First &amp; <em>second</em></p><p>Third</p></body></html>";
        assert_eq!(html_to_text(html), "First & second\nThird");
    }

    #[test]
    fn line_breaks() {
        assert_eq!(html_to_text("a<br>b<br/>c<BR />d"), "a\nb\nc\nd");
        assert_eq!(html_to_text("a<br><br>b"), "a\n\nb");
        assert_eq!(html_to_text("a<br><br><br><br>b"), "a\n\nb");
        assert_eq!(html_to_text("<div>a</div><div>b</div>c"), "a\nb\nc");
        assert_eq!(html_to_text("x <br> y"), "x\ny");
    }

    #[test]
    fn lists_and_tables() {
        assert_eq!(
            html_to_text("<ul>\n <li>one</li>\n <li>two\n</ul>after"),
            "one\ntwo\nafter"
        );
        assert_eq!(
            html_to_text("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>"),
            "a b\nc"
        );
    }

    #[test]
    fn entities() {
        assert_eq!(
            html_to_text("&lt;tag&gt; &quot;q&quot; &apos;"),
            "<tag> \"q\" '"
        );
        assert_eq!(html_to_text("&#65;&#x42;&#X43;&#128512;"), "ABC😀");
        assert_eq!(html_to_text("caf&eacute; &euro;5 &hellip;"), "café €5 …");
        assert_eq!(html_to_text("a&nbsp;&nbsp;b"), "a  b");
        assert_eq!(
            html_to_text("&#0;&#xD800;&#x110000;"),
            "\u{FFFD}\u{FFFD}\u{FFFD}"
        );
        // Not references: left as written.
        assert_eq!(
            html_to_text("AT&T & co &unknown; &#xZZ;"),
            "AT&T & co &unknown; &#xZZ;"
        );
        assert_eq!(html_to_text("&amp"), "&amp");
    }

    #[test]
    fn pre_keeps_whitespace() {
        assert_eq!(
            html_to_text("<pre>a  b\r\n  c</pre>d   e"),
            "a  b\n  c\nd e"
        );
    }

    #[test]
    fn comments_and_declarations() {
        assert_eq!(html_to_text("a<!-- <b>hidden</b> -->b"), "ab");
        assert_eq!(html_to_text("<?xml version=\"1.0\"?>x"), "x");
        assert_eq!(html_to_text("a<!-- unterminated"), "a");
    }

    #[test]
    fn lone_angle_brackets_are_text() {
        assert_eq!(html_to_text("1 < 2 and 3 > 2"), "1 < 2 and 3 > 2");
        assert_eq!(html_to_text("a <3 b"), "a <3 b");
        assert_eq!(html_to_text("<>"), "<>");
    }

    #[test]
    fn broken_html() {
        assert_eq!(html_to_text("text <b unterminated"), "text");
        assert_eq!(html_to_text("<script>never closed"), "");
        assert_eq!(html_to_text("<p>a</div></p></span>b"), "a\nb");
        assert_eq!(html_to_text("<scriptx>kept</scriptx>"), "kept");
        assert_eq!(html_to_text("<style/>after"), "after");
        assert_eq!(html_to_text("<a title='>'>x</a>"), "x");
    }

    #[test]
    fn xhtml_im_body() {
        // XEP-0071 §8-style XHTML that SIP clients also send as text/html.
        let html = "<body xmlns='http://www.w3.org/1999/xhtml'><p style='font-weight:bold'>\
            Hey, are you &lt;there&gt;?</p><p>漢字 😀</p></body>";
        assert_eq!(html_to_text(html), "Hey, are you <there>?\n漢字 😀");
    }

    proptest! {
        #[test]
        fn never_panics(s in any::<String>()) {
            let _ = html_to_text(&s);
        }

        #[test]
        fn never_panics_on_tag_soup(s in "([<>/&;#x!'\"a-z0-9 \n-]|<br>|<p>|</p>|<script>|</script>|<pre>|&amp;|é|😀){0,64}") {
            let out = html_to_text(&s);
            prop_assert_eq!(out.trim(), out.as_str());
        }

        #[test]
        fn text_without_markup_is_whitespace_collapsed(words in proptest::collection::vec("[a-zA-Z0-9é漢😀.,!?]{1,8}", 0..10)) {
            let spaced = words.join("  \n\t ");
            prop_assert_eq!(html_to_text(&spaced), words.join(" "));
        }
    }
}

//! Character classes and small scanners of the RFC 3261 §25 grammar.

/// `token` characters: alphanum and `-.!%*_+`'~`.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// True when `s` is a non-empty `token`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// `unreserved` = alphanum / mark.
pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

/// `word` characters of Call-ID (RFC 3261 §25.1).
pub(crate) fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~()<>:\\\"/[]?{}".contains(&b)
}

/// True when every `%` in `s` starts a `%HEXHEX` escape.
pub(crate) fn escapes_are_valid(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Decodes `%HH` escapes. Invalid escapes are kept as written.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True for linear white space inside a header value (already unfolded).
pub(crate) fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Splits a header value at commas that are outside quoted strings and
/// angle brackets, trimming each element. Empty elements are kept so the
/// caller can reject them.
pub(crate) fn split_top_level_commas(value: &str) -> Vec<&str> {
    let bytes = value.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            b',' if !in_quotes && !in_angle => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(value[start..].trim());
    parts
}

/// Reads a quoted string at the start of `s` (which must begin with `"`).
/// Returns the unescaped content and the rest after the closing quote, or
/// `None` when the quote is not closed.
pub(crate) fn take_quoted_string(s: &str) -> Option<(String, &str)> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut content = Vec::new();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                let next = *bytes.get(i + 1)?;
                if next == b'\r' || next == b'\n' || next > 0x7f {
                    return None;
                }
                content.push(next);
                i += 2;
            }
            b'"' => {
                let text = String::from_utf8_lossy(&content).into_owned();
                return Some((text, &s[i + 1..]));
            }
            b => {
                content.push(b);
                i += 1;
            }
        }
    }
    None
}

/// Skips leading linear white space.
pub(crate) fn skip_ws(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

/// Reads a `token` at the start of `s`, returning it and the rest.
pub(crate) fn take_token(s: &str) -> Option<(&str, &str)> {
    let end = s.bytes().position(|b| !is_token_byte(b)).unwrap_or(s.len());
    if end == 0 {
        None
    } else {
        Some(s.split_at(end))
    }
}

/// A generic parameter list `*( SEMI generic-param )` as it follows a
/// name-addr, Via or similar, with SWS allowed around `;` and `=`.
/// Values are tokens, hosts (including bracketed IPv6) or quoted strings;
/// quoted values keep their quotes so they can be echoed unchanged.
pub(crate) fn parse_params(mut s: &str) -> Option<Vec<(String, Option<String>)>> {
    let mut params = Vec::new();
    loop {
        s = skip_ws(s);
        if s.is_empty() {
            return Some(params);
        }
        s = s.strip_prefix(';')?;
        s = skip_ws(s);
        let (name, rest) = take_token(s)?;
        s = skip_ws(rest);
        let value = if let Some(rest) = s.strip_prefix('=') {
            s = skip_ws(rest);
            if s.starts_with('"') {
                let (_, after) = take_quoted_string(s)?;
                let raw = &s[..s.len() - after.len()];
                s = after;
                Some(raw.to_string())
            } else if s.starts_with('[') {
                let end = s.find(']')?;
                let raw = &s[..=end];
                s = &s[end + 1..];
                Some(raw.to_string())
            } else {
                let end = s
                    .bytes()
                    .position(|b| !(is_token_byte(b) || b == b':'))
                    .unwrap_or(s.len());
                if end == 0 {
                    return None;
                }
                let raw = &s[..end];
                s = &s[end..];
                Some(raw.to_string())
            }
        } else {
            None
        };
        params.push((name.to_ascii_lowercase(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_checked() {
        assert!(escapes_are_valid("a%20b%ff"));
        assert!(!escapes_are_valid("a%2"));
        assert!(!escapes_are_valid("a%zz"));
        assert!(!escapes_are_valid("%"));
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("%75se%72"), "user");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("null-%00-null"), "null-\0-null");
    }

    #[test]
    fn commas_inside_quotes_and_brackets_do_not_split() {
        assert_eq!(
            split_top_level_commas(r#""a, b" <sip:x@y>, <sip:z@w;p=1,2>"#),
            vec![r#""a, b" <sip:x@y>"#, "<sip:z@w;p=1,2>"]
        );
        assert_eq!(split_top_level_commas("a,,b"), vec!["a", "", "b"]);
    }

    #[test]
    fn quoted_strings_handle_escapes_and_reject_unclosed() {
        let (text, rest) = take_quoted_string(r#""J Rosenberg \\\"" <sip:x>"#).unwrap();
        assert_eq!(text, r#"J Rosenberg \""#);
        assert_eq!(rest, " <sip:x>");
        assert!(take_quoted_string(r#""Mr. J. User <sip:j@x>"#).is_none());
    }

    #[test]
    fn params_allow_whitespace_around_separators() {
        let params = parse_params(" ;   tag    = 1918181833n").unwrap();
        assert_eq!(params, vec![("tag".into(), Some("1918181833n".into()))]);
        let params = parse_params("; newparam = newvalue ; secondparam ; q = 0.33").unwrap();
        assert_eq!(params.len(), 3);
        assert_eq!(params[1], ("secondparam".into(), None));
        assert!(parse_params(";;").is_none());
        assert!(parse_params("; =x").is_none());
        assert!(parse_params("junk").is_none());
    }
}

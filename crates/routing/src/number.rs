//! Phone number normalisation, the one comparison rule shared by trunk
//! matching, conflict detection and list filters.

use std::borrow::Cow;

/// Normalises a phone number the way LiveKit does.
///
/// A string made only of an optional leading `+` then ASCII digits, spaces,
/// `-`, `(` and `)` loses its spaces, dashes and parentheses and gains a
/// leading `+`. Anything else (SIP user names, `*123`, `123#`) comes back
/// unchanged: such strings are identifiers, not numbers. Empty stays empty.
pub fn normalize_number(number: &str) -> Cow<'_, str> {
    if number.is_empty() || !looks_like_phone_number(number) {
        return Cow::Borrowed(number);
    }
    let digits = number.strip_prefix('+').unwrap_or(number);
    let mut out = String::with_capacity(number.len() + 1);
    out.push('+');
    out.extend(digits.chars().filter(char::is_ascii_digit));
    if out == number {
        Cow::Borrowed(number)
    } else {
        Cow::Owned(out)
    }
}

/// Whether two numbers are the same after normalisation (or byte-equal).
pub fn numbers_equal(a: &str, b: &str) -> bool {
    a == b || normalize_number(a) == normalize_number(b)
}

fn looks_like_phone_number(number: &str) -> bool {
    let body = number.strip_prefix('+').unwrap_or(number);
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b' ' | b'(' | b')'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let cases = [
            ("", ""),
            ("123", "+123"),
            ("+123", "+123"),
            ("(123) 456 7890", "+1234567890"),
            ("1111 1111", "+11111111"),
            ("+1-555-010-0000", "+15550100000"),
            ("user", "user"),
            ("*123", "*123"),
            ("123#", "123#"),
            ("+", "+"),
            ("++123", "++123"),
            ("1 2\t3", "1 2\t3"),
            ("١٢٣", "١٢٣"),
            ("alice@example.com", "alice@example.com"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_number(input), want, "input {input:?}");
        }
    }

    #[test]
    fn equality_ignores_formatting_only() {
        assert!(numbers_equal("+15105550100", "15105550100"));
        assert!(numbers_equal("(510) 555-0100", "+5105550100"));
        assert!(!numbers_equal("+15105550100", "+15105550101"));
        assert!(!numbers_equal("alice", "Alice"));
    }
}

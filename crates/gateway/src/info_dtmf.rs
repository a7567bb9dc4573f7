//! DTMF carried in SIP INFO bodies (`application/dtmf-relay`, the Cisco
//! form `Signal=5`, and `application/dtmf`, a bare digit), for carriers
//! that send digits out of band instead of RFC 4733.

use switchboard_media::dtmf::DtmfDigit;

/// The digit an INFO body carries, if it is a DTMF body we understand.
pub fn parse_info_dtmf(content_type: &str, body: &[u8]) -> Option<DtmfDigit> {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(body).ok()?;
    match media_type.as_str() {
        "application/dtmf-relay" => {
            let signal = text.lines().find_map(|line| {
                let (name, value) = line.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("signal")
                    .then(|| value.trim())
            })?;
            digit_of(signal)
        }
        "application/dtmf" => digit_of(text.trim()),
        _ => None,
    }
}

fn digit_of(signal: &str) -> Option<DtmfDigit> {
    // Some gateways send the event code (10 = '*', 11 = '#') instead of
    // the character.
    match signal {
        "10" => DtmfDigit::from_char('*'),
        "11" => DtmfDigit::from_char('#'),
        s if s.chars().count() == 1 => s.chars().next().and_then(DtmfDigit::from_char),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn char_of(content_type: &str, body: &str) -> Option<char> {
        parse_info_dtmf(content_type, body.as_bytes()).map(DtmfDigit::as_char)
    }

    #[test]
    fn relay_and_plain_bodies_give_their_digit() {
        assert_eq!(
            char_of("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            char_of(
                "Application/DTMF-Relay; charset=x",
                "signal = #\nDuration=250"
            ),
            Some('#')
        );
        assert_eq!(
            char_of("application/dtmf-relay", "Signal=11\r\n"),
            Some('#')
        );
        assert_eq!(
            char_of("application/dtmf-relay", "Signal=10\r\n"),
            Some('*')
        );
        assert_eq!(char_of("application/dtmf", "7\r\n"), Some('7'));
        assert_eq!(char_of("application/dtmf", "d"), Some('D'));
    }

    #[test]
    fn anything_else_is_not_dtmf() {
        assert_eq!(char_of("application/dtmf-relay", "Duration=160"), None);
        assert_eq!(char_of("application/dtmf-relay", "Signal=X"), None);
        assert_eq!(char_of("application/dtmf-relay", "Signal=12"), None);
        assert_eq!(char_of("application/dtmf", ""), None);
        assert_eq!(char_of("text/plain", "5"), None);
        assert_eq!(parse_info_dtmf("application/dtmf", &[0xff, 0xfe]), None);
    }
}

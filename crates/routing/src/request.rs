//! Validation of the call-control requests (CreateSIPParticipant,
//! TransferSIPParticipant), so the API refuses bad input before any SIP
//! traffic is attempted.

use livekit_protocol::{
    sip_named_dest, sip_request_dest, CreateSipParticipantRequest, Destination, SipOutboundConfig,
    SipUri, TransferSipParticipantRequest,
};

use crate::error::RoutingError;
use crate::validate::{
    check_sip_text, check_sip_uri_text, validate_header_keys, validate_header_values,
    validate_headers, validate_media, validate_outbound_host,
};

/// The longest display name accepted, in bytes.
pub const MAX_DISPLAY_NAME_LEN: usize = 128;

/// ISO 3166-1 alpha-2 codes, plus XK (Kosovo), which CLDR treats as a country.
const COUNTRY_CODES: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "XK", "YE", "YT", "ZA", "ZM", "ZW",
];

/// Whether `code` is an assigned ISO 3166-1 alpha-2 country code, exactly
/// (upper case; `UK` is not one, `GB` is).
pub fn is_country_code(code: &str) -> bool {
    COUNTRY_CODES.binary_search(&code).is_ok()
}

/// Validates the inline trunk of a CreateSIPParticipant request.
pub fn validate_outbound_config(trunk: &SipOutboundConfig) -> Result<(), RoutingError> {
    if trunk.hostname.is_empty() {
        return Err(RoutingError::OutboundConfigNoHostname);
    }
    validate_outbound_host(&trunk.hostname, "hostname")?;
    check_sip_text("trunk.hostname", &trunk.hostname)?;
    if !trunk.from_host.is_empty() {
        validate_outbound_host(&trunk.from_host, "from host")?;
        check_sip_text("trunk.from_host", &trunk.from_host)?;
    }
    check_sip_text("trunk.auth_username", &trunk.auth_username)?;
    validate_header_keys(&trunk.headers_to_attributes)?;
    validate_header_values(&trunk.attributes_to_headers)?;
    Ok(())
}

/// Validates a destination hint.
pub fn validate_destination(destination: &Destination) -> Result<(), RoutingError> {
    if !destination.city.is_empty()
        && destination.country.is_empty()
        && destination.region.is_empty()
    {
        return Err(RoutingError::DestinationCityAlone);
    }
    if !destination.country.is_empty() && !is_country_code(&destination.country) {
        return Err(RoutingError::InvalidCountry);
    }
    Ok(())
}

/// Whether `s` is the body of a valid Go double-quoted string literal
/// (what LiveKit requires of display names): no newline, no bare `"`, and
/// only Go's escape sequences after a backslash.
pub fn is_go_quotable(s: &str) -> bool {
    if s.contains('\n') {
        return false;
    }
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => return false,
            '\\' => {
                let Some(e) = chars.next() else { return false };
                let hex = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
                           n: usize|
                 -> Option<u32> {
                    let mut v = 0u32;
                    for _ in 0..n {
                        v = v * 16 + chars.next()?.to_digit(16)?;
                    }
                    Some(v)
                };
                let ok = match e {
                    'a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\' | '"' => true,
                    'x' => hex(&mut chars, 2).is_some(),
                    'u' => hex(&mut chars, 4).is_some_and(|v| char::from_u32(v).is_some()),
                    'U' => hex(&mut chars, 8).is_some_and(|v| char::from_u32(v).is_some()),
                    '0'..='7' => {
                        let rest: Option<Vec<u32>> =
                            (0..2).map(|_| chars.next()?.to_digit(8)).collect();
                        rest.is_some_and(|d| {
                            e.to_digit(8).unwrap_or(8) * 64 + d[0] * 8 + d[1] <= 255
                        })
                    }
                    _ => false,
                };
                if !ok {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

fn is_token(s: &str) -> bool {
    s.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
    })
}

/// Validates a CreateSIPParticipant request fully, as LiveKit does.
pub fn validate_create_sip_participant(
    req: &CreateSipParticipantRequest,
) -> Result<(), RoutingError> {
    if req.sip_trunk_id.is_empty() && req.trunk.is_none() && req.sip_number.is_empty() {
        return Err(RoutingError::MissingTrunkAndNumber);
    }
    if let Some(trunk) = &req.trunk {
        validate_outbound_config(trunk)?;
    }
    if req.sip_call_to.is_empty() {
        return Err(RoutingError::MissingCallee);
    }
    check_sip_uri_text("sip_call_to", &req.sip_call_to)?;
    if req.sip_call_to.contains('@') {
        return Err(RoutingError::CalleeIsUri);
    }
    check_sip_uri_text("sip_number", &req.sip_number)?;
    if !req.to_user_override.is_empty() && !is_token(&req.to_user_override) {
        return Err(RoutingError::InvalidToUserOverride);
    }
    if req.room_name.is_empty() {
        return Err(RoutingError::MissingRoomName);
    }
    if let Some(name) = &req.display_name {
        if name.len() > MAX_DISPLAY_NAME_LEN {
            return Err(RoutingError::DisplayNameTooLong);
        }
        check_sip_text("display_name", name)?;
        if !is_go_quotable(name) {
            return Err(RoutingError::DisplayNameNotQuotable);
        }
    }
    check_request_dest(req)?;
    if !req
        .dtmf
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '#'))
    {
        return Err(RoutingError::ControlCharacters("dtmf".into()));
    }
    if let Some(destination) = &req.destination {
        validate_destination(destination)?;
    }
    validate_headers(&req.headers)?;
    validate_media(req.media.as_ref())?;
    Ok(())
}

/// The Request-URI, To and From overrides of a CreateSIPParticipant
/// request: raw URIs and every part that is written into the INVITE.
fn check_request_dest(req: &CreateSipParticipantRequest) -> Result<(), RoutingError> {
    fn parts(field: &str, uri: &SipUri) -> Result<(), RoutingError> {
        for (part, value) in [("user", &uri.user), ("host", &uri.host), ("ip", &uri.ip)] {
            check_sip_uri_text(&format!("{field}.{part}"), value)?;
        }
        Ok(())
    }
    if let Some(uri) = req.sip_request_uri.as_ref().and_then(|d| d.uri.as_ref()) {
        match uri {
            sip_request_dest::Uri::Raw(raw) => check_sip_uri_text("sip_request_uri", raw.trim())?,
            sip_request_dest::Uri::Values(values) => parts("sip_request_uri", values)?,
        }
    }
    for (field, dest) in [
        ("sip_to_header", &req.sip_to_header),
        ("sip_from_header", &req.sip_from_header),
    ] {
        let Some(dest) = dest else { continue };
        check_sip_text(&format!("{field}.display_name"), &dest.display_name)?;
        match &dest.uri {
            Some(sip_named_dest::Uri::Raw(raw)) => {
                let raw = raw.trim();
                let inner = raw
                    .strip_prefix('<')
                    .and_then(|r| r.strip_suffix('>'))
                    .unwrap_or(raw);
                check_sip_uri_text(field, inner)?;
            }
            Some(sip_named_dest::Uri::Values(values)) => parts(field, values)?,
            None => {}
        }
    }
    Ok(())
}

/// Validates a TransferSIPParticipant request and returns the Refer-To
/// value to send: `<sip:…>` / `<sips:…>` for SIP URIs, the bare URI for `tel:`.
pub fn validate_transfer_sip_participant(
    req: &TransferSipParticipantRequest,
) -> Result<String, RoutingError> {
    if req.room_name.is_empty() {
        return Err(RoutingError::MissingRoomName);
    }
    if req.participant_identity.is_empty() {
        return Err(RoutingError::MissingParticipantIdentity);
    }
    if req.transfer_to.is_empty() {
        return Err(RoutingError::MissingTransferTo);
    }
    let inner = req
        .transfer_to
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(&req.transfer_to);
    check_sip_uri_text("transfer_to", inner)?;
    let refer_to = if inner.starts_with("sip:") || inner.starts_with("sips:") {
        format!("<{inner}>")
    } else if inner.starts_with("tel:") {
        inner.to_owned()
    } else {
        return Err(RoutingError::InvalidTransferTo);
    };
    validate_headers(&req.headers)?;
    Ok(refer_to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_table_is_sorted_and_complete() {
        assert!(
            COUNTRY_CODES.windows(2).all(|w| w[0] < w[1]),
            "binary search needs a sorted table"
        );
        assert_eq!(COUNTRY_CODES.len(), 249 + 1, "249 ISO codes plus XK");
        for (code, want) in [
            ("US", true),
            ("GB", true),
            ("IN", true),
            ("UK", false),
            ("us", false),
            ("XX", false),
            ("USA", false),
            ("", false),
        ] {
            assert_eq!(is_country_code(code), want, "{code}");
        }
    }

    #[test]
    fn go_quotable_table() {
        let cases = [
            ("Alice", true),
            ("Dr. Who \\\"Doc\\\"", true),
            ("tab\there", true),
            ("say \"hi\"", false),
            ("line\nbreak", false),
            ("trailing\\", false),
            ("bad \\q escape", false),
            ("hex \\x41", true),
            ("hex \\xZ1", false),
            ("uni \\u00e9", true),
            ("surrogate \\ud800", false),
            ("octal \\101", true),
            ("octal \\400", false),
            ("é and 日本", true),
        ];
        for (s, want) in cases {
            assert_eq!(is_go_quotable(s), want, "{s:?}");
        }
    }
}

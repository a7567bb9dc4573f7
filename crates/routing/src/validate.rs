//! Create/update validation of trunks and dispatch rules, and the conflict
//! checks that keep two objects from claiming the same calls.

use std::collections::{HashMap, HashSet};

use livekit_protocol::{
    sip_dispatch_rule::Rule, SipDispatchRuleInfo, SipInboundTrunkInfo, SipMediaConfig,
    SipOutboundTrunkInfo,
};

use crate::address::AddressMask;
use crate::error::{go_quote, go_quote_list, RoutingError};
use crate::number::normalize_number;

/// Longest accepted header name.
const MAX_HEADER_NAME_LEN: usize = 255;
/// Longest accepted header value.
const MAX_HEADER_VALUE_LEN: usize = 1024;
/// The longest media_timeout LiveKit accepts, in seconds (10 minutes).
pub const MAX_MEDIA_TIMEOUT_SECS: i64 = 600;

/// Headers switchboard writes itself; a user value would break the dialog.
const FORBIDDEN_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "allow",
    "allow-events",
    "call-id",
    "contact",
    "content-encoding",
    "content-length",
    "content-type",
    "cseq",
    "event",
    "expires",
    "from",
    "max-forwards",
    "record-route",
    "refer-to",
    "reply-to",
    // compact forms
    "k",
    "l",
    "m",
    "o",
    "r",
    "t",
    "u",
    "v",
];

/// Headers accepted but worth a warning: changing them changes routing.
const RISKY_HEADERS: &[&str] = &["to", "via"];

/// Whether `name` is a SIP token of acceptable length.
pub fn is_valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HEADER_NAME_LEN
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
                )
        })
}

fn is_valid_header_value(value: &str) -> bool {
    value.len() <= MAX_HEADER_VALUE_LEN && value.chars().all(|c| c == '\t' || !c.is_control())
}

/// Refuses text for a SIP message that holds CR, LF or another control
/// character (HTAB is allowed): it could add headers or end the message.
pub fn check_sip_text(field: &str, value: &str) -> Result<(), RoutingError> {
    if value.chars().any(|c| c != '\t' && c.is_control()) {
        return Err(RoutingError::ControlCharacters(field.to_string()));
    }
    Ok(())
}

/// Like [`check_sip_text`], and refuses whitespace, quotes and angle
/// brackets too: for user parts, hosts and URIs, which are written into
/// headers unquoted.
pub fn check_sip_uri_text(field: &str, value: &str) -> Result<(), RoutingError> {
    check_sip_text(field, value)?;
    if value
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '<' | '>'))
    {
        return Err(RoutingError::UnsafeUriCharacters(field.to_string()));
    }
    Ok(())
}

/// Validates a map of headers to send (`headers` of a trunk or request).
pub fn validate_headers(headers: &HashMap<String, String>) -> Result<(), RoutingError> {
    for (name, value) in sorted(headers) {
        if !is_valid_header_name(name) {
            return Err(RoutingError::InvalidHeaderName(name.clone()));
        }
        if FORBIDDEN_HEADERS
            .iter()
            .any(|f| f.eq_ignore_ascii_case(name))
        {
            return Err(RoutingError::ForbiddenHeader(name.clone()));
        }
        if !is_valid_header_value(value) {
            return Err(RoutingError::InvalidHeaderValue(name.clone()));
        }
    }
    Ok(())
}

/// Soft warnings about `headers` that are legal but probably a mistake.
pub fn header_warnings(headers: &HashMap<String, String>) -> Vec<String> {
    sorted(headers)
        .into_iter()
        .filter(|(name, _)| RISKY_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(name)))
        .map(|(name, _)| format!("header {name:?} overrides a routing header"))
        .collect()
}

/// Keys of `headers_to_attributes` must be header names.
pub fn validate_header_keys(map: &HashMap<String, String>) -> Result<(), RoutingError> {
    match sorted(map)
        .into_iter()
        .find(|(k, _)| !is_valid_header_name(k))
    {
        Some((k, _)) => Err(RoutingError::InvalidHeaderName(k.clone())),
        None => Ok(()),
    }
}

/// Values of `attributes_to_headers` must be header names.
pub fn validate_header_values(map: &HashMap<String, String>) -> Result<(), RoutingError> {
    match sorted(map)
        .into_iter()
        .find(|(_, v)| !is_valid_header_name(v))
    {
        Some((_, v)) => Err(RoutingError::InvalidHeaderName(v.clone())),
        None => Ok(()),
    }
}

/// Sorting makes "the first bad entry" deterministic across HashMap orders.
fn sorted(map: &HashMap<String, String>) -> Vec<(&String, &String)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort();
    entries
}

/// Validates a media config: codec names and media_timeout bounds.
pub fn validate_media(media: Option<&SipMediaConfig>) -> Result<(), RoutingError> {
    let Some(media) = media else { return Ok(()) };
    for codec in &media.codecs {
        if codec.name.is_empty()
            || codec.name.contains(char::is_whitespace)
            || codec.name.contains('/')
        {
            return Err(RoutingError::InvalidCodecName(codec.name.clone()));
        }
    }
    if let Some(timeout) = &media.media_timeout {
        let negative = timeout.seconds < 0 || (timeout.seconds == 0 && timeout.nanos < 0);
        let too_long = timeout.seconds > MAX_MEDIA_TIMEOUT_SECS
            || (timeout.seconds == MAX_MEDIA_TIMEOUT_SECS && timeout.nanos > 0);
        if negative || too_long {
            return Err(RoutingError::InvalidMediaTimeout);
        }
    }
    Ok(())
}

/// Validates an inbound trunk on its own (not against others).
pub fn validate_inbound_trunk(trunk: &SipInboundTrunkInfo) -> Result<(), RoutingError> {
    let has_auth = !trunk.auth_username.is_empty() || !trunk.auth_password.is_empty();
    if !has_auth && trunk.allowed_addresses.is_empty() && trunk.numbers.is_empty() {
        return Err(RoutingError::InboundTrunkUnprotected);
    }
    // LiveKit silently drops malformed masks at match time, and a trunk whose
    // masks are all malformed then accepts every source: refuse them up front.
    for mask in &trunk.allowed_addresses {
        match AddressMask::parse(mask) {
            None => return Err(RoutingError::InvalidAllowedAddress(mask.clone())),
            Some(AddressMask::Host(_)) => {
                return Err(RoutingError::HostNameAllowedAddress(mask.clone()))
            }
            Some(_) => {}
        }
    }
    // Inbound numbers are only compared, never written into a message:
    // control characters are all that is refused (they would reach logs).
    for number in trunk.numbers.iter().chain(&trunk.allowed_numbers) {
        check_sip_text("numbers", number)?;
    }
    check_sip_text("auth_username", &trunk.auth_username)?;
    check_sip_text("auth_password", &trunk.auth_password)?;
    validate_media(trunk.media.as_ref())?;
    validate_headers(&trunk.headers)?;
    validate_header_keys(&trunk.headers_to_attributes)?;
    validate_header_values(&trunk.attributes_to_headers)?;
    Ok(())
}

/// Checks an outbound host field: a host or IP with optional port, never a SIP URI.
pub fn validate_outbound_host(value: &str, field: &'static str) -> Result<(), RoutingError> {
    if value.contains("transport=") {
        return Err(RoutingError::TransportInAddress);
    }
    if value.contains(['@', ';']) || value.starts_with("sip:") || value.starts_with("sips:") {
        return Err(RoutingError::AddressIsSipUri { field });
    }
    Ok(())
}

/// Validates an outbound trunk.
pub fn validate_outbound_trunk(trunk: &SipOutboundTrunkInfo) -> Result<(), RoutingError> {
    if trunk.numbers.is_empty() {
        return Err(RoutingError::OutboundTrunkNoNumbers);
    }
    if trunk.address.is_empty() {
        return Err(RoutingError::OutboundTrunkNoAddress);
    }
    validate_outbound_host(&trunk.address, "address")?;
    // Stored fields: only what could break a header line is refused here
    // (LiveKit's own examples store placeholders like `<my-trunk>.pstn...`,
    // which fail later, at resolution).
    check_sip_text("address", &trunk.address)?;
    if !trunk.from_host.is_empty() {
        validate_outbound_host(&trunk.from_host, "from host")?;
        check_sip_text("from_host", &trunk.from_host)?;
    }
    for number in &trunk.numbers {
        check_sip_text("numbers", number)?;
    }
    check_sip_text("auth_username", &trunk.auth_username)?;
    check_sip_text("auth_password", &trunk.auth_password)?;
    validate_media(trunk.media.as_ref())?;
    validate_headers(&trunk.headers)?;
    validate_header_keys(&trunk.headers_to_attributes)?;
    validate_header_values(&trunk.attributes_to_headers)?;
    Ok(())
}

/// Validates a dispatch rule on its own (not against others).
pub fn validate_dispatch_rule(rule: &SipDispatchRuleInfo) -> Result<(), RoutingError> {
    rule_kind(rule)?;
    validate_media(rule.media.as_ref())?;
    Ok(())
}

/// The rule's oneof, or `missing rule`.
pub fn rule_kind(rule: &SipDispatchRuleInfo) -> Result<&Rule, RoutingError> {
    rule.rule
        .as_ref()
        .and_then(|r| r.rule.as_ref())
        .ok_or(RoutingError::MissingRule)
}

/// The PIN of a rule ("" when open or when the rule kind is missing).
pub fn rule_pin(rule: &SipDispatchRuleInfo) -> &str {
    match rule_kind(rule) {
        Ok(Rule::DispatchRuleDirect(r)) => &r.pin,
        Ok(Rule::DispatchRuleIndividual(r)) => &r.pin,
        Ok(Rule::DispatchRuleCallee(r)) => &r.pin,
        Err(_) => "",
    }
}

/// The room name (direct) or room prefix (individual, callee) of a rule.
pub fn rule_room(rule: &SipDispatchRuleInfo) -> &str {
    match rule_kind(rule) {
        Ok(Rule::DispatchRuleDirect(r)) => &r.room_name,
        Ok(Rule::DispatchRuleIndividual(r)) => &r.room_prefix,
        Ok(Rule::DispatchRuleCallee(r)) => &r.room_prefix,
        Err(_) => "",
    }
}

/// The (called-number group, caller key) pairs an inbound trunk claims; "" is "any".
fn inbound_trunk_keys(trunk: &SipInboundTrunkInfo) -> Vec<(String, String, Option<&str>)> {
    let groups: Vec<String> = if trunk.numbers.is_empty() {
        vec![String::new()]
    } else {
        trunk
            .numbers
            .iter()
            .map(|n| normalize_number(n).into_owned())
            .collect()
    };
    let callers: Vec<(String, Option<&str>)> = if trunk.allowed_numbers.is_empty() {
        vec![(String::new(), None)]
    } else {
        trunk
            .allowed_numbers
            .iter()
            .map(|n| (normalize_number(n).into_owned(), Some(n.as_str())))
            .collect()
    };
    let mut keys = Vec::with_capacity(groups.len() * callers.len());
    for group in &groups {
        for (caller, raw) in &callers {
            keys.push((group.clone(), caller.clone(), *raw));
        }
    }
    keys
}

fn print_id(id: &str) -> String {
    go_quote(if id.is_empty() { "<new>" } else { id })
}

/// Checks `candidate` (new, or an updated version of a stored trunk) against
/// the stored inbound trunks.
///
/// Two trunks conflict when they share a called-number group (normalised
/// `numbers`, or "any") and a caller key (normalised `allowed_numbers`, or
/// "any"). `allowed_addresses` and auth are not part of the key, as in
/// LiveKit. The stored version of the candidate (same ID) is skipped, and
/// conflicts among the other stored trunks do not block this write.
pub fn check_inbound_trunk_conflicts<'a>(
    existing: impl IntoIterator<Item = &'a SipInboundTrunkInfo>,
    candidate: &SipInboundTrunkInfo,
) -> Result<(), RoutingError> {
    let candidate_keys = inbound_trunk_keys(candidate);
    let wanted: HashMap<(&str, &str), Option<&str>> = candidate_keys
        .iter()
        .map(|(g, c, raw)| ((g.as_str(), c.as_str()), *raw))
        .collect();
    let mut others: Vec<&SipInboundTrunkInfo> = existing
        .into_iter()
        .filter(|t| candidate.sip_trunk_id.is_empty() || t.sip_trunk_id != candidate.sip_trunk_id)
        .collect();
    others.sort_by(|a, b| a.sip_trunk_id.cmp(&b.sip_trunk_id));
    for other in others {
        for (group, caller, other_raw) in inbound_trunk_keys(other) {
            let Some(candidate_raw) = wanted.get(&(group.as_str(), caller.as_str())) else {
                continue;
            };
            // LiveKit names the later of the two (in ID order, a new trunk
            // last) first, with its numbers and its spelling of the caller.
            let candidate_later =
                candidate.sip_trunk_id.is_empty() || candidate.sip_trunk_id > other.sip_trunk_id;
            let (first, second, raw) = if candidate_later {
                (candidate, other, *candidate_raw)
            } else {
                (other, candidate, other_raw)
            };
            let numbers = go_quote_list(&first.numbers);
            return Err(match raw {
                None => RoutingError::ConflictingInboundTrunks {
                    first: print_id(&first.sip_trunk_id),
                    second: print_id(&second.sip_trunk_id),
                    numbers,
                },
                Some(raw) => RoutingError::ConflictingInboundTrunksAllowedNumber {
                    first: print_id(&first.sip_trunk_id),
                    second: print_id(&second.sip_trunk_id),
                    numbers,
                    allowed_number: go_quote(raw),
                },
            });
        }
    }
    Ok(())
}

/// One scope a dispatch rule claims: (pin, trunk, caller, callee), "" is "any".
pub(crate) type RuleKey = (String, String, String, String);

pub(crate) fn dispatch_rule_keys(rule: &SipDispatchRuleInfo) -> HashSet<RuleKey> {
    let any = [String::new()];
    let list = |v: &'_ [String]| -> Vec<String> {
        if v.is_empty() {
            any.to_vec()
        } else {
            v.to_vec()
        }
    };
    let pin = rule_pin(rule).to_owned();
    let mut keys = HashSet::new();
    for trunk in list(&rule.trunk_ids) {
        for caller in list(&rule.inbound_numbers) {
            for callee in list(&rule.numbers) {
                keys.insert((
                    pin.clone(),
                    trunk.clone(),
                    normalize_number(&caller).into_owned(),
                    normalize_number(&callee).into_owned(),
                ));
            }
        }
    }
    keys
}

/// The error LiveKit gives when `candidate` collides with `existing_rule`.
pub(crate) fn dispatch_conflict_error(existing_rule: &SipDispatchRuleInfo) -> RoutingError {
    RoutingError::ConflictingDispatchRules {
        rule_id: print_id(&existing_rule.sip_dispatch_rule_id),
        rule_name: go_quote(if existing_rule.name.is_empty() {
            "<blank name>"
        } else {
            &existing_rule.name
        }),
    }
}

/// Checks `candidate` (new, or an updated stored rule) against stored rules.
///
/// Two rules conflict when they share a (PIN, trunk, caller, callee) scope
/// over the cross product of `trunk_ids`, `inbound_numbers` and `numbers`
/// (each "any" when empty; numbers normalised). The rule kind is not part of
/// the key. The error names the stored rule collided with.
pub fn check_dispatch_rule_conflicts<'a>(
    existing: impl IntoIterator<Item = &'a SipDispatchRuleInfo>,
    candidate: &SipDispatchRuleInfo,
) -> Result<(), RoutingError> {
    let keys = dispatch_rule_keys(candidate);
    let mut others: Vec<&SipDispatchRuleInfo> = existing
        .into_iter()
        .filter(|r| {
            candidate.sip_dispatch_rule_id.is_empty()
                || r.sip_dispatch_rule_id != candidate.sip_dispatch_rule_id
        })
        .collect();
    others.sort_by(|a, b| a.sip_dispatch_rule_id.cmp(&b.sip_dispatch_rule_id));
    for other in others {
        if !dispatch_rule_keys(other).is_disjoint(&keys) {
            return Err(dispatch_conflict_error(other));
        }
    }
    Ok(())
}

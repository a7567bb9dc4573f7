//! The two request shapes of a carrier trunk (seed 001 at `/v1/sip-trunks`,
//! seed 004 at `/v1/sip-trunk`), their validation, the LiveKit records a
//! trunk provisions, and how each shape shows a trunk.
//!
//! Both shapes read and write the same [`PlatformTrunk`] record, so a trunk
//! made through one path can be read, changed and deleted through the other.

use std::net::IpAddr;

use livekit_protocol::{
    sip_dispatch_rule, SipDispatchRule, SipDispatchRuleCallee, SipDispatchRuleDirect,
    SipDispatchRuleIndividual, SipDispatchRuleInfo, SipInboundTrunkInfo, SipMediaConfig,
    SipMediaEncryption, SipOutboundTrunkInfo, SipTransport,
};
use serde_json::{json, Map, Value};
use switchboard_routing::{country_of_number, format_number, is_region_code, NumberFormat};
use switchboard_store::{DialPlanRecord, PlatformTrunk, PlatformTrunkWrite};

use super::fields::{apply_bool, apply_string, apply_strings, FieldError, Fields, Given};

/// Which of the two seed shapes a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Seed 001: `kind`, `direction`, `sip_address`, `allowed_addresses`...
    Carrier,
    /// Seed 004: `sip_trunk_type`, `phone_number`, `sip_server`...
    Extension,
}

/// Defaults and limits from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSettings {
    /// Carrier trunks allowed at once (more: 402).
    pub max_trunks: usize,
    /// Room name prefix of the default per-call rule.
    pub room_prefix: String,
}

impl Default for PlatformSettings {
    fn default() -> PlatformSettings {
        PlatformSettings {
            max_trunks: 20,
            room_prefix: "call-".into(),
        }
    }
}

/// Longest name of a seed-001 trunk (seed 004 says 50).
const MAX_NAME: usize = 200;
/// Longest name of a seed-004 trunk.
const MAX_NAME_004: usize = 50;
/// Longest host name (RFC 1035), user name, password, room name.
const MAX_HOST: usize = 253;
const MAX_USERNAME: usize = 128;
const MAX_PASSWORD: usize = 256;
const MAX_ROOM: usize = 128;
/// Most entries in `allowed_addresses` and `numbers`.
const MAX_LIST: usize = 100;
/// Largest `credentials` object, as JSON text.
const MAX_CREDENTIALS: usize = 4096;

/// A fresh record with the defaults of a shape.
pub fn new_record(shape: Shape, settings: &PlatformSettings) -> PlatformTrunk {
    PlatformTrunk {
        transport: "auto".into(),
        media_encryption: "disable".into(),
        dispatch: "individual".into(),
        room_prefix: settings.room_prefix.clone(),
        kind: match shape {
            Shape::Carrier => String::new(),
            Shape::Extension => "byoc".into(),
        },
        direction: match shape {
            Shape::Carrier => String::new(),
            Shape::Extension => "both".into(),
        },
        number_format: match shape {
            Shape::Carrier => String::new(),
            Shape::Extension => NumberFormat::PlusE164.as_str().into(),
        },
        inbound_authorization: match shape {
            Shape::Carrier => String::new(),
            Shape::Extension => "auth".into(),
        },
        ..PlatformTrunk::default()
    }
}

/// Applies a request body of `shape` to `record` (a new record for a
/// create, the stored one for a PATCH); then validates the result. The
/// password stays unless the body sets it.
pub fn apply(shape: Shape, record: &mut PlatformTrunk, body: &[u8]) -> Vec<FieldError> {
    let mut fields = match Fields::parse(body) {
        Ok(fields) => fields,
        Err(e) => return vec![e],
    };
    match shape {
        Shape::Carrier => apply_carrier(record, &mut fields),
        Shape::Extension => apply_extension(record, &mut fields),
    }
    let mut errors = fields.finish();
    if errors.is_empty() {
        errors = match shape {
            Shape::Carrier => validate_carrier(record),
            Shape::Extension => validate_extension(record),
        };
    }
    errors
}

fn apply_carrier(record: &mut PlatformTrunk, fields: &mut Fields) {
    apply_string(&mut record.name, fields.string("name"));
    apply_string(&mut record.kind, fields.string("kind"));
    apply_string(&mut record.direction, fields.string("direction"));
    apply_string(&mut record.sip_address, fields.string("sip_address"));
    apply_string(&mut record.auth_username, fields.string("auth_username"));
    apply_string(&mut record.auth_password, fields.string("auth_password"));
    apply_strings(
        &mut record.allowed_addresses,
        fields.strings("allowed_addresses"),
    );
    apply_string(
        &mut record.destination_country,
        fields.string("destination_country"),
    );
    apply_string(&mut record.transport, fields.string("transport"));
    apply_string(
        &mut record.media_encryption,
        fields.string("media_encryption"),
    );
    match fields.object("credentials") {
        Given::Absent => {}
        Given::Value(map) if map.is_empty() => record.credentials_json.clear(),
        Given::Value(map) => {
            record.credentials_json = Value::Object(map).to_string();
        }
    }
    apply_strings(&mut record.numbers, fields.strings("numbers"));
    apply_string(&mut record.number_format, fields.string("number_format"));
    match fields.object("dispatch") {
        Given::Absent => {}
        Given::Value(map) => apply_dispatch(record, map, &mut fields.errors),
    }
}

fn apply_dispatch(
    record: &mut PlatformTrunk,
    map: Map<String, Value>,
    errors: &mut Vec<FieldError>,
) {
    for (key, value) in map {
        let Value::String(text) = value else {
            errors.push(FieldError::new(
                &format!("dispatch.{key}"),
                "must be a string",
            ));
            continue;
        };
        match key.as_str() {
            "rule" => record.dispatch = text,
            "room_prefix" => record.room_prefix = text,
            "room_name" => record.room_name = text,
            _ => errors.push(FieldError::new(
                &format!("dispatch.{key}"),
                "is not a field of dispatch (rule, room_prefix, room_name)",
            )),
        }
    }
}

fn apply_extension(record: &mut PlatformTrunk, fields: &mut Fields) {
    apply_string(&mut record.trunk_type, fields.string("sip_trunk_type"));
    match fields.string("phone_number") {
        Given::Absent => {}
        Given::Value(number) => record.numbers = vec![number],
    }
    apply_string(&mut record.name, fields.string("name"));
    apply_string(&mut record.auth_username, fields.string("username"));
    apply_string(&mut record.auth_password, fields.string("password"));
    apply_string(&mut record.sip_address, fields.string("sip_server"));
    apply_string(
        &mut record.number_format,
        fields.string("outbound_number_format"),
    );
    apply_string(
        &mut record.inbound_authorization,
        fields.string("inbound_authorization_type"),
    );
    apply_strings(
        &mut record.allowed_addresses,
        fields.strings("allowed_inbound_ips"),
    );
    apply_string(&mut record.destination_country, fields.string("country"));
    apply_bool(
        &mut record.use_outbound_proxy,
        fields.boolean("use_fixed_outbound_ip"),
    );
}

/// Text a person typed: no control characters (nothing of it may break a
/// SIP header or a log line), at most `max` characters.
fn check_text(errors: &mut Vec<FieldError>, field: &str, value: &str, max: usize) {
    if value.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
    } else if value.chars().count() > max {
        errors.push(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
}

fn check_one_of(errors: &mut Vec<FieldError>, field: &str, value: &str, allowed: &[&str]) {
    if !allowed.contains(&value) {
        errors.push(FieldError::new(
            field,
            format!("must be one of {}", allowed.join(", ")),
        ));
    }
}

/// A host name or IP address, with a port when `port` allows one.
fn check_host(errors: &mut Vec<FieldError>, field: &str, value: &str, port: bool) {
    let (host, port_text) = match value.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inside, after)) => (inside, after.strip_prefix(':')),
            None => {
                errors.push(FieldError::new(field, "has an unclosed '['"));
                return;
            }
        },
        None if value.parse::<IpAddr>().is_ok() => (value, None),
        None => match value.rsplit_once(':') {
            Some((host, p)) => (host, Some(p)),
            None => (value, None),
        },
    };
    if host.is_empty() {
        errors.push(FieldError::new(field, "must not be empty"));
        return;
    }
    if host.len() > MAX_HOST {
        errors.push(FieldError::new(field, "is longer than a host name may be"));
        return;
    }
    let is_ip = host.parse::<IpAddr>().is_ok();
    let is_name = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !is_ip && !is_name {
        errors.push(FieldError::new(
            field,
            "must be a host name or an IP address (no scheme, user or path)",
        ));
        return;
    }
    if let Some(p) = port_text {
        if !port {
            errors.push(FieldError::new(field, "must not include a port"));
        } else if !matches!(p.parse::<u16>(), Ok(n) if n > 0) {
            errors.push(FieldError::new(field, "has a port that is not 1-65535"));
        }
    }
}

fn check_country(errors: &mut Vec<FieldError>, field: &str, value: &str) {
    if !value.is_empty() && !is_region_code(value) {
        errors.push(FieldError::new(
            field,
            "must be an ISO 3166-1 alpha-2 country code in capitals, e.g. US or GB",
        ));
    }
}

/// An E.164 number: `+`, then 2 to 15 digits, that is a valid number.
fn check_e164(errors: &mut Vec<FieldError>, field: &str, value: &str) {
    let digits = value.strip_prefix('+').unwrap_or("");
    let shaped = (2..=15).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    if !shaped {
        errors.push(FieldError::new(
            field,
            "must be an E.164 number: + then up to 15 digits, e.g. +14155551234",
        ));
    } else if format_number(value, None, NumberFormat::PlusE164).is_err() {
        errors.push(FieldError::new(
            field,
            "is not a valid phone number in any country",
        ));
    }
}

fn validate_common(record: &PlatformTrunk, errors: &mut Vec<FieldError>) {
    check_text(errors, "auth_username", &record.auth_username, MAX_USERNAME);
    check_text(errors, "auth_password", &record.auth_password, MAX_PASSWORD);
    check_country(errors, "destination_country", &record.destination_country);
    if record.allowed_addresses.len() > MAX_LIST {
        errors.push(FieldError::new(
            "allowed_addresses",
            format!("must have at most {MAX_LIST} entries"),
        ));
    }
    if record.numbers.len() > MAX_LIST {
        errors.push(FieldError::new(
            "numbers",
            format!("must have at most {MAX_LIST} entries"),
        ));
    }
}

/// Seed 001's rules.
pub fn validate_carrier(record: &PlatformTrunk) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if record.name.trim().is_empty() {
        errors.push(FieldError::new("name", "is required"));
    }
    check_text(&mut errors, "name", &record.name, MAX_NAME);
    match record.kind.as_str() {
        "byoc" => {}
        "twilio" => errors.push(FieldError::new(
            "kind",
            "twilio trunks are made by importing a phone number with a twilio spec, \
             not by creating a trunk",
        )),
        "livekit" => errors.push(FieldError::new(
            "kind",
            "native LiveKit phone numbers are not available on a self-hosted gateway; \
             use kind byoc with your carrier's SIP address",
        )),
        "" => errors.push(FieldError::new("kind", "is required (byoc)")),
        _ => errors.push(FieldError::new(
            "kind",
            "must be one of livekit, twilio, byoc",
        )),
    }
    match record.direction.as_str() {
        "" => errors.push(FieldError::new("direction", "is required")),
        d => check_one_of(
            &mut errors,
            "direction",
            d,
            &["inbound", "outbound", "both"],
        ),
    }
    if record.kind == "byoc" {
        if record.sip_address.is_empty() {
            errors.push(FieldError::new("sip_address", "is required for kind byoc"));
        } else {
            check_host(&mut errors, "sip_address", &record.sip_address, true);
        }
    }
    if record.auth_username.is_empty() && !record.auth_password.is_empty() {
        errors.push(FieldError::new(
            "auth_username",
            "is required when auth_password is given",
        ));
    }
    if record.auth_password.is_empty() && !record.auth_username.is_empty() {
        errors.push(FieldError::new(
            "auth_password",
            "is required when auth_username is given",
        ));
    }
    for address in &record.allowed_addresses {
        if address.parse::<IpAddr>().is_err() && address.parse::<ipnet::IpNet>().is_err() {
            errors.push(FieldError::new(
                "allowed_addresses",
                format!("{address:?} is not an IP address or CIDR"),
            ));
        }
    }
    check_one_of(
        &mut errors,
        "transport",
        &record.transport,
        &["auto", "udp", "tcp", "tls"],
    );
    check_one_of(
        &mut errors,
        "media_encryption",
        &record.media_encryption,
        &["disable", "allow", "require"],
    );
    if record.credentials_json.len() > MAX_CREDENTIALS {
        errors.push(FieldError::new(
            "credentials",
            format!("must be at most {MAX_CREDENTIALS} bytes of JSON"),
        ));
    }
    for number in &record.numbers {
        check_e164(&mut errors, "numbers", number);
    }
    if !record.number_format.is_empty() && record.number_format.parse::<NumberFormat>().is_err() {
        errors.push(FieldError::new(
            "number_format",
            "must be one of +e164, e164, national",
        ));
    }
    if record.number_format == "national" && record.destination_country.is_empty() {
        errors.push(FieldError::new(
            "destination_country",
            "is required with number_format national (national numbers need a country)",
        ));
    }
    validate_dispatch(record, &mut errors);
    validate_common(record, &mut errors);
    errors
}

fn validate_dispatch(record: &PlatformTrunk, errors: &mut Vec<FieldError>) {
    match record.dispatch.as_str() {
        "individual" | "callee" => check_text(
            errors,
            "dispatch.room_prefix",
            &record.room_prefix,
            MAX_ROOM,
        ),
        "direct" if record.room_name.trim().is_empty() => errors.push(FieldError::new(
            "dispatch.room_name",
            "is required with rule direct",
        )),
        "direct" => check_text(errors, "dispatch.room_name", &record.room_name, MAX_ROOM),
        _ => errors.push(FieldError::new(
            "dispatch.rule",
            "must be one of individual, direct, callee",
        )),
    }
}

/// Seed 004's rules.
pub fn validate_extension(record: &PlatformTrunk) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let number = record.numbers.first().map(String::as_str).unwrap_or("");
    match record.trunk_type.as_str() {
        "extension" => {
            let length = number.chars().count();
            if !(1..=15).contains(&length) {
                errors.push(FieldError::new(
                    "phone_number",
                    "an extension is 1-15 characters",
                ));
            } else if !number
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*' | b'#'))
            {
                errors.push(FieldError::new(
                    "phone_number",
                    "an extension is letters, digits and - _ . * # only",
                ));
            }
        }
        "number" => check_e164(&mut errors, "phone_number", number),
        "" => errors.push(FieldError::new(
            "sip_trunk_type",
            "is required (extension or number)",
        )),
        _ => errors.push(FieldError::new(
            "sip_trunk_type",
            "must be one of extension, number",
        )),
    }
    if record.name.trim().is_empty() {
        errors.push(FieldError::new("name", "is required"));
    }
    check_text(&mut errors, "name", &record.name, MAX_NAME_004);
    let username = record.auth_username.chars().count();
    if !(3..=MAX_USERNAME).contains(&username) {
        errors.push(FieldError::new("username", "must be 3-128 characters"));
    }
    if record.auth_password.chars().count() < 3 {
        errors.push(FieldError::new("password", "must be at least 3 characters"));
    }
    if record.sip_address.is_empty() {
        errors.push(FieldError::new("sip_server", "is required"));
    } else {
        check_host(&mut errors, "sip_server", &record.sip_address, false);
    }
    if record.number_format.parse::<NumberFormat>().is_err() {
        errors.push(FieldError::new(
            "outbound_number_format",
            "must be one of +e164, e164, national",
        ));
    }
    match record.inbound_authorization.as_str() {
        "auth" => {}
        "ip" if record.allowed_addresses.is_empty() => errors.push(FieldError::new(
            "allowed_inbound_ips",
            "is required, with at least one IP address, when inbound_authorization_type is ip",
        )),
        "ip" => {}
        _ => errors.push(FieldError::new(
            "inbound_authorization_type",
            "must be one of auth, ip",
        )),
    }
    for ip in &record.allowed_addresses {
        if ip.parse::<IpAddr>().is_err() {
            errors.push(FieldError::new(
                "allowed_inbound_ips",
                format!("{ip:?} is not an IP address"),
            ));
        }
    }
    check_country(&mut errors, "country", &record.destination_country);
    if record.number_format == "national"
        && record.destination_country.is_empty()
        && record.trunk_type != "number"
    {
        errors.push(FieldError::new(
            "country",
            "is required with outbound_number_format national",
        ));
    }
    check_text(&mut errors, "username", &record.auth_username, MAX_USERNAME);
    check_text(&mut errors, "password", &record.auth_password, MAX_PASSWORD);
    if record.allowed_addresses.len() > MAX_LIST {
        errors.push(FieldError::new(
            "allowed_inbound_ips",
            format!("must have at most {MAX_LIST} entries"),
        ));
    }
    errors
}

/// Fills what a shape derives rather than asks for: seed 004's country
/// from its number.
pub fn derive(shape: Shape, record: &mut PlatformTrunk) {
    if shape == Shape::Extension
        && record.trunk_type == "number"
        && record.destination_country.is_empty()
    {
        if let Some(country) = record.numbers.first().and_then(|n| country_of_number(n)) {
            record.destination_country = country;
        }
    }
}

/// The trunk's media settings: only the SRTP policy (codecs stay the defaults).
fn media(value: &str) -> Option<SipMediaConfig> {
    let encryption = match value {
        "allow" => SipMediaEncryption::SipMediaEncryptAllow as i32,
        "require" => SipMediaEncryption::SipMediaEncryptRequire as i32,
        _ => SipMediaEncryption::SipMediaEncryptDisable as i32,
    };
    Some(SipMediaConfig {
        encryption: Some(encryption),
        ..SipMediaConfig::default()
    })
}

fn transport(value: &str) -> i32 {
    match value {
        "udp" => SipTransport::Udp as i32,
        "tcp" => SipTransport::Tcp as i32,
        "tls" => SipTransport::Tls as i32,
        _ => SipTransport::Auto as i32,
    }
}

/// The LiveKit records a validated trunk provisions.
pub fn provision(record: &PlatformTrunk) -> PlatformTrunkWrite {
    let inbound_wanted = matches!(record.direction.as_str(), "inbound" | "both");
    let outbound_wanted = matches!(record.direction.as_str(), "outbound" | "both");
    // Seed 004's "ip" admits by address alone; "auth" (and seed 001, which
    // has no such field) uses whatever credentials and addresses are given.
    let digest_inbound = record.inbound_authorization != "ip";
    let inbound = inbound_wanted.then(|| SipInboundTrunkInfo {
        name: record.name.clone(),
        numbers: record.numbers.clone(),
        allowed_addresses: record.allowed_addresses.clone(),
        auth_username: if digest_inbound {
            record.auth_username.clone()
        } else {
            String::new()
        },
        auth_password: if digest_inbound {
            record.auth_password.clone()
        } else {
            String::new()
        },
        media: media(&record.media_encryption),
        ..SipInboundTrunkInfo::default()
    });
    let outbound = outbound_wanted.then(|| SipOutboundTrunkInfo {
        name: record.name.clone(),
        address: record.sip_address.clone(),
        transport: transport(&record.transport),
        numbers: record.numbers.clone(),
        auth_username: record.auth_username.clone(),
        auth_password: record.auth_password.clone(),
        destination_country: record.destination_country.clone(),
        media: media(&record.media_encryption),
        ..SipOutboundTrunkInfo::default()
    });
    let rule = match record.dispatch.as_str() {
        "direct" => sip_dispatch_rule::Rule::DispatchRuleDirect(SipDispatchRuleDirect {
            room_name: record.room_name.clone(),
            pin: String::new(),
        }),
        "callee" => sip_dispatch_rule::Rule::DispatchRuleCallee(SipDispatchRuleCallee {
            room_prefix: record.room_prefix.clone(),
            pin: String::new(),
            randomize: false,
        }),
        _ => sip_dispatch_rule::Rule::DispatchRuleIndividual(SipDispatchRuleIndividual {
            room_prefix: record.room_prefix.clone(),
            pin: String::new(),
            no_randomness: false,
        }),
    };
    let dispatch_rule = inbound_wanted.then(|| SipDispatchRuleInfo {
        name: record.name.clone(),
        rule: Some(SipDispatchRule { rule: Some(rule) }),
        ..SipDispatchRuleInfo::default()
    });
    let dial_plan = (outbound_wanted && !record.number_format.is_empty()).then(|| DialPlanRecord {
        number_format: record.number_format.clone(),
        country: record.destination_country.clone(),
    });
    PlatformTrunkWrite {
        trunk: record.clone(),
        inbound,
        outbound,
        dispatch_rule,
        dial_plan,
    }
}

fn timestamp(micros: i64) -> Value {
    let at = pbjson_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    };
    // pbjson writes `+00:00`; `Z` is the form most clients print and parse.
    match serde_json::to_value(at) {
        Ok(Value::String(text)) => Value::String(match text.strip_suffix("+00:00") {
            Some(utc) => format!("{utc}Z"),
            None => text,
        }),
        _ => Value::Null,
    }
}

/// `object` with the IDs of the LiveKit records the trunk provisioned;
/// a record it does not have (by its direction) is left out.
fn with_livekit_ids(mut object: Value, record: &PlatformTrunk) -> Value {
    if let Value::Object(map) = &mut object {
        let ids = [
            ("livekit_inbound_trunk_id", &record.inbound_trunk_id),
            ("livekit_outbound_trunk_id", &record.outbound_trunk_id),
            ("livekit_dispatch_rule_id", &record.dispatch_rule_id),
        ];
        for (key, id) in ids.into_iter().filter(|(_, id)| !id.is_empty()) {
            map.insert(key.to_owned(), Value::String(id.clone()));
        }
    }
    object
}

/// A trunk as seed 001 shows it: never the password, only whether one is set.
pub fn render_carrier(record: &PlatformTrunk) -> Value {
    let object = json!({
        "id": record.id,
        "name": record.name,
        "kind": record.kind,
        "direction": record.direction,
        "sip_address": record.sip_address,
        "auth_username": record.auth_username,
        "auth_password_set": !record.auth_password.is_empty(),
        "allowed_addresses": record.allowed_addresses,
        "destination_country": record.destination_country,
        "transport": record.transport,
        "media_encryption": record.media_encryption,
        "credentials_set": !record.credentials_json.is_empty(),
        "numbers": record.numbers,
        "number_format": record.number_format,
        "dispatch": {
            "rule": record.dispatch,
            "room_prefix": record.room_prefix,
            "room_name": record.room_name,
        },
        "created_at": timestamp(record.created_at_micros),
        "updated_at": timestamp(record.updated_at_micros),
    });
    with_livekit_ids(object, record)
}

/// A trunk as seed 004 shows it (its field names; never the password).
pub fn render_extension(record: &PlatformTrunk) -> Value {
    let object = json!({
        "id": record.id,
        "sip_trunk_type": record.trunk_type,
        "phone_number": record.numbers.first().cloned().unwrap_or_default(),
        "name": record.name,
        "username": record.auth_username,
        "password_set": !record.auth_password.is_empty(),
        "sip_server": record.sip_address,
        "outbound_number_format": record.number_format,
        "inbound_authorization_type": record.inbound_authorization,
        "allowed_inbound_ips": record.allowed_addresses,
        "country": record.destination_country,
        "use_fixed_outbound_ip": record.use_outbound_proxy,
        "created_at": timestamp(record.created_at_micros),
        "updated_at": timestamp(record.updated_at_micros),
    });
    with_livekit_ids(object, record)
}

//! What an accepted dispatch produces: room, identity, attributes, and the
//! trunk and rule settings merged.

#![allow(deprecated)] // the deprecated media_encryption fields still travel on the wire

use std::collections::HashMap;

use livekit_protocol::{
    sip_dispatch_rule::Rule, RoomConfiguration, SipDispatchRuleInfo, SipFeature, SipHeaderOptions,
    SipInboundTrunkInfo, SipMediaConfig, SipMediaEncryption,
};
use pbjson_types::Duration;
use sha2::{Digest, Sha256};

use crate::call::CallInput;
use crate::ids::{random_base57, RandomSource};

/// Attribute keys set on SIP participants.
pub mod attrs {
    /// The `SCL_…` call ID.
    pub const CALL_ID: &str = "sip.callID";
    /// The trunk ID (possibly "").
    pub const TRUNK_ID: &str = "sip.trunkID";
    /// The dispatch rule ID.
    pub const RULE_ID: &str = "sip.ruleID";
    /// The remote number (the caller on inbound).
    pub const PHONE_NUMBER: &str = "sip.phoneNumber";
    /// Our number (the called number on inbound).
    pub const TRUNK_PHONE_NUMBER: &str = "sip.trunkPhoneNumber";
    /// The remote host (From host on inbound).
    pub const HOSTNAME: &str = "sip.hostname";
    /// The call status (`ringing`, `active`...), set by the gateway.
    pub const CALL_STATUS: &str = "sip.callStatus";
    /// The SIP Call-ID header.
    pub const CALL_ID_FULL: &str = "sip.callIDFull";
    /// The remote tag (From tag on inbound).
    pub const CALL_TAG: &str = "sip.callTag";
    /// Why the call ended: LiveKit's DisconnectReason name (switchboard
    /// sets it with `sip.callStatus=hangup`).
    pub const DISCONNECT_REASON: &str = "sip.disconnectReason";
    /// The SIP status that ended the call (switchboard's, with `hangup`).
    pub const CALL_STATUS_CODE: &str = "sip.callStatusCode";
    /// Prefix of header attributes under `include_headers`.
    pub const HEADER_PREFIX: &str = "sip.h.";
}

/// Provider headers mapped to attributes on every call.
pub const BUILTIN_HEADER_ATTRIBUTES: &[(&str, &str)] = &[
    ("X-Twilio-AccountSid", "sip.twilio.accountSid"),
    ("X-Twilio-CallSid", "sip.twilio.callSid"),
    ("X-call_leg_id", "sip.telnyx.callLegID"),
    ("X-call_session_id", "sip.telnyx.callSessionID"),
    ("X-Amzn-ConnectContactId", "sip.amazon.contactId"),
    (
        "X-Amzn-ConnectInitialContactId",
        "sip.amazon.initialContactId",
    ),
    ("X-Amzn-SourceAccount", "sip.amazon.sourceAccount"),
    ("X-Amzn-SourceArn", "sip.amazon.sourceArn"),
    ("X-Amzn-TargetArn", "sip.amazon.targetArn"),
    ("X-Lk-Test-Id", "lktest.id"),
];

/// Everything the gateway needs to put an accepted call into a room.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchResult {
    /// The matched trunk ("" when unmatched calls are allowed and none matched).
    pub trunk_id: String,
    /// The chosen dispatch rule.
    pub rule_id: String,
    /// The room to join.
    pub room_name: String,
    /// `sip_<caller>` (or a hash of it with hide_phone_number).
    pub participant_identity: String,
    /// `Phone <caller>` (or its last digits with hide_phone_number).
    pub participant_name: String,
    /// The rule's metadata.
    pub participant_metadata: String,
    /// Rule attributes, header attributes, then the `sip.*` keys.
    pub participant_attributes: HashMap<String, String>,
    /// The rule's room preset (cloud only, passed through).
    pub room_preset: String,
    /// The rule's room configuration.
    pub room_config: Option<RoomConfiguration>,
    /// Trunk headers to add to the 200 OK.
    pub headers: HashMap<String, String>,
    /// Trunk map of INVITE headers to attributes (already applied to the attributes).
    pub headers_to_attributes: HashMap<String, String>,
    /// Trunk map of attributes to BYE/REFER headers.
    pub attributes_to_headers: HashMap<String, String>,
    /// Trunk `include_headers`.
    pub include_headers: SipHeaderOptions,
    /// Trunk ringing timeout.
    pub ringing_timeout: Option<Duration>,
    /// Trunk SIP status for a ringing timeout (`SIPStatusCode`, 0 = default).
    pub ringing_timeout_status: i32,
    /// Trunk maximum call duration.
    pub max_call_duration: Option<Duration>,
    /// Features on for this call (Krisp when the trunk or the rule asks).
    pub enabled_features: Vec<SipFeature>,
    /// Trunk media settings with the rule's laid over them.
    pub media: SipMediaConfig,
}

/// The masked form of a caller number: 16 hex characters of its SHA-256.
pub fn hashed_number(number: &str) -> String {
    let digest = Sha256::digest(number.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The participant identity and name for a caller.
pub fn participant_identity_and_name(from_user: &str, hide_phone_number: bool) -> (String, String) {
    if !hide_phone_number {
        return (format!("sip_{from_user}"), format!("Phone {from_user}"));
    }
    let chars: Vec<char> = from_user.chars().collect();
    let keep = if chars.len() > 4 { 4 } else { 1 };
    let tail: String = chars[chars.len().saturating_sub(keep)..].iter().collect();
    (
        format!("sip_{}", hashed_number(from_user)),
        format!("Phone {tail}"),
    )
}

fn join_room(prefix: &str, who: &str) -> String {
    if prefix.is_empty() {
        who.to_owned()
    } else {
        format!("{prefix}_{who}")
    }
}

/// The room a rule sends this call to. `None` if the rule has no kind.
pub fn room_name(
    rule: &SipDispatchRuleInfo,
    call: &CallInput,
    rng: &mut dyn RandomSource,
) -> Option<String> {
    let from = if rule.hide_phone_number {
        hashed_number(&call.from_user)
    } else {
        call.from_user.clone()
    };
    Some(match rule.rule.as_ref()?.rule.as_ref()? {
        Rule::DispatchRuleDirect(direct) => direct.room_name.clone(),
        Rule::DispatchRuleIndividual(individual) => {
            let base = join_room(&individual.room_prefix, &from);
            if individual.no_randomness {
                base
            } else {
                format!("{base}_{}", random_base57(rng))
            }
        }
        Rule::DispatchRuleCallee(callee) => {
            let base = join_room(&callee.room_prefix, &call.to_user);
            if callee.randomize {
                format!("{base}_{}", random_base57(rng))
            } else {
                base
            }
        }
    })
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Attributes derived from the INVITE headers, in LiveKit's order:
/// `include_headers` (`sip.h.*`), the built-in provider map, the trunk map,
/// then `sip.callTag` and `sip.callIDFull`.
pub fn header_attributes(
    call: &CallInput,
    include_headers: SipHeaderOptions,
    headers_to_attributes: &HashMap<String, String>,
) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if include_headers != SipHeaderOptions::SipNoHeaders {
        for (name, value) in &call.headers {
            let lower = name.to_ascii_lowercase();
            if include_headers == SipHeaderOptions::SipAllHeaders || lower.starts_with("x-") {
                out.entry(format!("{}{lower}", attrs::HEADER_PREFIX))
                    .or_insert_with(|| value.clone());
            }
        }
    }
    for (header, attr) in BUILTIN_HEADER_ATTRIBUTES {
        if let Some(v) = header_value(&call.headers, header) {
            out.insert((*attr).to_owned(), v.to_owned());
        }
    }
    let mut trunk_map: Vec<_> = headers_to_attributes.iter().collect();
    trunk_map.sort();
    for (header, attr) in trunk_map {
        if let Some(v) = header_value(&call.headers, header) {
            out.insert(attr.clone(), v.to_owned());
        }
    }
    if !call.from_tag.is_empty() {
        out.insert(attrs::CALL_TAG.to_owned(), call.from_tag.clone());
    }
    if !call.sip_call_id.is_empty() {
        out.insert(attrs::CALL_ID_FULL.to_owned(), call.sip_call_id.clone());
    }
    out
}

/// A protobuf Duration of the API (ringing_timeout, max_call_duration,
/// media_timeout) as a std one; `None` when unset, zero or negative.
pub fn proto_duration(duration: Option<&pbjson_types::Duration>) -> Option<std::time::Duration> {
    let duration = duration?;
    let secs = u64::try_from(duration.seconds).ok()?;
    let nanos = u32::try_from(duration.nanos).ok()?;
    let duration = std::time::Duration::new(secs, nanos);
    (!duration.is_zero()).then_some(duration)
}

/// The media config an object asks for, with its deprecated top-level
/// `media_encryption` folded in when `media.encryption` is unset.
pub fn effective_media(
    media: Option<&SipMediaConfig>,
    deprecated_encryption: i32,
) -> SipMediaConfig {
    let mut out = media.cloned().unwrap_or_default();
    if out.encryption.is_none()
        && deprecated_encryption != SipMediaEncryption::SipMediaEncryptDisable as i32
    {
        out.encryption = Some(deprecated_encryption);
    }
    out
}

/// Lays `over` on `base`: codecs (with only_listed_codecs) come from `over`
/// only if it lists some; encryption from `over` unless it is an explicit
/// DISABLE over a set value; media_timeout from `over` when set and non-zero.
pub fn merge_media(base: &SipMediaConfig, over: &SipMediaConfig) -> SipMediaConfig {
    let mut out = base.clone();
    if !over.codecs.is_empty() {
        out.codecs.clone_from(&over.codecs);
        out.only_listed_codecs = over.only_listed_codecs;
    }
    if let Some(enc) = over.encryption {
        let is_disable = enc == SipMediaEncryption::SipMediaEncryptDisable as i32;
        if !is_disable || out.encryption.is_none() {
            out.encryption = Some(enc);
        }
    }
    if let Some(timeout) = &over.media_timeout {
        if timeout.seconds != 0 || timeout.nanos != 0 {
            out.media_timeout = Some(*timeout);
        }
    }
    out
}

/// Builds the dispatch result of `rule` for `call` arriving on `trunk`.
/// `None` if the rule has no kind (validation keeps such rules out of stores).
pub fn evaluate_dispatch(
    call: &CallInput,
    trunk: Option<&SipInboundTrunkInfo>,
    rule: &SipDispatchRuleInfo,
    rng: &mut dyn RandomSource,
) -> Option<DispatchResult> {
    let room_name = room_name(rule, call, rng)?;
    let (identity, name) = participant_identity_and_name(&call.from_user, rule.hide_phone_number);
    let trunk_id = trunk.map(|t| t.sip_trunk_id.clone()).unwrap_or_default();

    let include_headers = trunk
        .and_then(|t| SipHeaderOptions::try_from(t.include_headers).ok())
        .unwrap_or(SipHeaderOptions::SipNoHeaders);
    let empty = HashMap::new();
    let trunk_header_map = trunk.map(|t| &t.headers_to_attributes).unwrap_or(&empty);

    let mut attributes = rule.attributes.clone();
    attributes.extend(header_attributes(call, include_headers, trunk_header_map));
    attributes.insert(attrs::CALL_ID.to_owned(), call.call_id.clone());
    attributes.insert(attrs::TRUNK_ID.to_owned(), trunk_id.clone());
    if !rule.hide_phone_number {
        attributes.insert(attrs::PHONE_NUMBER.to_owned(), call.from_user.clone());
        attributes.insert(attrs::HOSTNAME.to_owned(), call.from_host.clone());
        attributes.insert(attrs::TRUNK_PHONE_NUMBER.to_owned(), call.to_user.clone());
    }
    attributes.insert(attrs::RULE_ID.to_owned(), rule.sip_dispatch_rule_id.clone());

    let trunk_media = trunk
        .map(|t| effective_media(t.media.as_ref(), t.media_encryption))
        .unwrap_or_default();
    let rule_media = effective_media(rule.media.as_ref(), rule.media_encryption);
    let krisp = trunk.is_some_and(|t| t.krisp_enabled) || rule.krisp_enabled;

    Some(DispatchResult {
        trunk_id,
        rule_id: rule.sip_dispatch_rule_id.clone(),
        room_name,
        participant_identity: identity,
        participant_name: name,
        participant_metadata: rule.metadata.clone(),
        participant_attributes: attributes,
        room_preset: rule.room_preset.clone(),
        room_config: rule.room_config.clone(),
        headers: trunk.map(|t| t.headers.clone()).unwrap_or_default(),
        headers_to_attributes: trunk_header_map.clone(),
        attributes_to_headers: trunk
            .map(|t| t.attributes_to_headers.clone())
            .unwrap_or_default(),
        include_headers,
        ringing_timeout: trunk.and_then(|t| t.ringing_timeout),
        ringing_timeout_status: trunk.map(|t| t.ringing_timeout_status).unwrap_or_default(),
        max_call_duration: trunk.and_then(|t| t.max_call_duration),
        enabled_features: if krisp {
            vec![SipFeature::KrispEnabled]
        } else {
            Vec::new()
        },
        media: merge_media(&trunk_media, &rule_media),
    })
}

//! Turning create and update requests into the object to store, with
//! LiveKit's request checks. Conflict checks against stored objects are the
//! caller's (the store runs them inside its write transaction).

#![allow(deprecated)] // the deprecated media_encryption fields still travel on the wire

use livekit_protocol::{
    update_sip_dispatch_rule_request, update_sip_inbound_trunk_request,
    update_sip_outbound_trunk_request, CreateSipDispatchRuleRequest, SipDispatchRule,
    SipDispatchRuleInfo, SipDispatchRuleUpdate, SipInboundTrunkInfo, SipInboundTrunkUpdate,
    SipOutboundTrunkInfo, SipOutboundTrunkUpdate,
};

use crate::error::{ObjectKind, RoutingError};
use crate::list_update::apply_list_update;
use crate::validate::{validate_dispatch_rule, validate_inbound_trunk, validate_outbound_trunk};

/// Checks a new inbound trunk: no ID yet, and valid on its own.
pub fn prepare_inbound_trunk_create(
    trunk: SipInboundTrunkInfo,
) -> Result<SipInboundTrunkInfo, RoutingError> {
    if !trunk.sip_trunk_id.is_empty() {
        return Err(RoutingError::TrunkIdSet);
    }
    validate_inbound_trunk(&trunk)?;
    Ok(trunk)
}

/// Checks a new outbound trunk: no ID yet, and valid on its own.
pub fn prepare_outbound_trunk_create(
    trunk: SipOutboundTrunkInfo,
) -> Result<SipOutboundTrunkInfo, RoutingError> {
    if !trunk.sip_trunk_id.is_empty() {
        return Err(RoutingError::TrunkIdSet);
    }
    validate_outbound_trunk(&trunk)?;
    Ok(trunk)
}

/// Builds the rule of a CreateSIPDispatchRule request: the `dispatch_rule`
/// field, or else the legacy top-level fields the Node SDK still sends.
pub fn dispatch_rule_from_create_request(req: CreateSipDispatchRuleRequest) -> SipDispatchRuleInfo {
    if let Some(rule) = req.dispatch_rule {
        return rule;
    }
    SipDispatchRuleInfo {
        rule: req.rule,
        trunk_ids: req.trunk_ids,
        hide_phone_number: req.hide_phone_number,
        inbound_numbers: req.inbound_numbers,
        name: req.name,
        metadata: req.metadata,
        attributes: req.attributes,
        room_preset: req.room_preset,
        room_config: req.room_config,
        ..Default::default()
    }
}

/// Checks a new dispatch rule: no ID yet, and valid on its own.
pub fn prepare_dispatch_rule_create(
    rule: SipDispatchRuleInfo,
) -> Result<SipDispatchRuleInfo, RoutingError> {
    if !rule.sip_dispatch_rule_id.is_empty() {
        return Err(RoutingError::RuleIdSet);
    }
    validate_dispatch_rule(&rule)?;
    Ok(rule)
}

/// The request-level checks of an update, done before the stored object is loaded.
pub fn check_update_request(
    id: &str,
    kind: ObjectKind,
    has_action: bool,
) -> Result<(), RoutingError> {
    if id.is_empty() {
        return Err(RoutingError::MissingId(kind));
    }
    if !has_action {
        return Err(RoutingError::MissingUpdateAction);
    }
    Ok(())
}

fn check_replace_id(info_id: &str, path_id: &str, kind: ObjectKind) -> Result<(), RoutingError> {
    if !info_id.is_empty() && info_id != path_id {
        return Err(RoutingError::ReplaceIdMismatch(kind));
    }
    Ok(())
}

fn set_if_some<T: Clone>(target: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        target.clone_from(v);
    }
}

/// Applies an UpdateSIPInboundTrunk action to the stored trunk and validates
/// the result. The ID is forced to `id`; timestamps are the store's business.
pub fn apply_inbound_trunk_action(
    id: &str,
    stored: &SipInboundTrunkInfo,
    action: &update_sip_inbound_trunk_request::Action,
) -> Result<SipInboundTrunkInfo, RoutingError> {
    use update_sip_inbound_trunk_request::Action;
    let mut next = match action {
        Action::Replace(info) => {
            check_replace_id(&info.sip_trunk_id, id, ObjectKind::Trunk)?;
            info.clone()
        }
        Action::Update(update) => apply_inbound_trunk_update(stored, update)?,
    };
    next.sip_trunk_id = id.to_owned();
    validate_inbound_trunk(&next)?;
    Ok(next)
}

/// Applies the field-wise update of an inbound trunk (no validation).
pub fn apply_inbound_trunk_update(
    stored: &SipInboundTrunkInfo,
    update: &SipInboundTrunkUpdate,
) -> Result<SipInboundTrunkInfo, RoutingError> {
    let mut next = stored.clone();
    if let Some(lu) = &update.numbers {
        apply_list_update(&mut next.numbers, lu)?;
    }
    if let Some(lu) = &update.allowed_addresses {
        apply_list_update(&mut next.allowed_addresses, lu)?;
    }
    if let Some(lu) = &update.allowed_numbers {
        apply_list_update(&mut next.allowed_numbers, lu)?;
    }
    set_if_some(&mut next.auth_username, &update.auth_username);
    set_if_some(&mut next.auth_password, &update.auth_password);
    set_if_some(&mut next.auth_realm, &update.auth_realm);
    set_if_some(&mut next.name, &update.name);
    set_if_some(&mut next.metadata, &update.metadata);
    set_if_some(&mut next.media_encryption, &update.media_encryption);
    if update.media.is_some() {
        next.media.clone_from(&update.media);
    }
    Ok(next)
}

/// Applies an UpdateSIPOutboundTrunk action to the stored trunk and validates the result.
pub fn apply_outbound_trunk_action(
    id: &str,
    stored: &SipOutboundTrunkInfo,
    action: &update_sip_outbound_trunk_request::Action,
) -> Result<SipOutboundTrunkInfo, RoutingError> {
    use update_sip_outbound_trunk_request::Action;
    let mut next = match action {
        Action::Replace(info) => {
            check_replace_id(&info.sip_trunk_id, id, ObjectKind::Trunk)?;
            info.clone()
        }
        Action::Update(update) => apply_outbound_trunk_update(stored, update)?,
    };
    next.sip_trunk_id = id.to_owned();
    validate_outbound_trunk(&next)?;
    Ok(next)
}

/// Applies the field-wise update of an outbound trunk (no validation).
pub fn apply_outbound_trunk_update(
    stored: &SipOutboundTrunkInfo,
    update: &SipOutboundTrunkUpdate,
) -> Result<SipOutboundTrunkInfo, RoutingError> {
    let mut next = stored.clone();
    set_if_some(&mut next.address, &update.address);
    set_if_some(&mut next.transport, &update.transport);
    set_if_some(&mut next.destination_country, &update.destination_country);
    if let Some(lu) = &update.numbers {
        apply_list_update(&mut next.numbers, lu)?;
    }
    set_if_some(&mut next.auth_username, &update.auth_username);
    set_if_some(&mut next.auth_password, &update.auth_password);
    set_if_some(&mut next.name, &update.name);
    set_if_some(&mut next.metadata, &update.metadata);
    set_if_some(&mut next.media_encryption, &update.media_encryption);
    set_if_some(&mut next.from_host, &update.from_host);
    if update.media.is_some() {
        next.media.clone_from(&update.media);
    }
    Ok(next)
}

/// Applies an UpdateSIPDispatchRule action to the stored rule and validates the result.
pub fn apply_dispatch_rule_action(
    id: &str,
    stored: &SipDispatchRuleInfo,
    action: &update_sip_dispatch_rule_request::Action,
) -> Result<SipDispatchRuleInfo, RoutingError> {
    use update_sip_dispatch_rule_request::Action;
    let mut next = match action {
        Action::Replace(info) => {
            check_replace_id(&info.sip_dispatch_rule_id, id, ObjectKind::DispatchRule)?;
            info.clone()
        }
        Action::Update(update) => apply_dispatch_rule_update(stored, update)?,
    };
    next.sip_dispatch_rule_id = id.to_owned();
    validate_dispatch_rule(&next)?;
    Ok(next)
}

/// Applies the field-wise update of a dispatch rule (no validation). In the
/// attributes diff an empty value deletes the key.
pub fn apply_dispatch_rule_update(
    stored: &SipDispatchRuleInfo,
    update: &SipDispatchRuleUpdate,
) -> Result<SipDispatchRuleInfo, RoutingError> {
    let mut next = stored.clone();
    if let Some(lu) = &update.trunk_ids {
        apply_list_update(&mut next.trunk_ids, lu)?;
    }
    if let Some(rule @ SipDispatchRule { rule: Some(_) }) = &update.rule {
        next.rule = Some(rule.clone());
    }
    set_if_some(&mut next.name, &update.name);
    set_if_some(&mut next.metadata, &update.metadata);
    for (key, value) in &update.attributes {
        if value.is_empty() {
            next.attributes.remove(key);
        } else {
            next.attributes.insert(key.clone(), value.clone());
        }
    }
    if let Some(enc) = update.media_encryption {
        next.media_encryption = enc;
    }
    if update.media.is_some() {
        next.media.clone_from(&update.media);
    }
    Ok(next)
}

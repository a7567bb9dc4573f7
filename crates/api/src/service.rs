//! The 16 methods of `livekit.SIP`, each: grant check, validation, store or
//! call control, exactly in LiveKit's order (grant first).

use std::collections::BTreeMap;

use livekit_protocol::{
    sip_trunk_info::TrunkKind, CreateSipDispatchRuleRequest, CreateSipInboundTrunkRequest,
    CreateSipOutboundTrunkRequest, CreateSipParticipantRequest, DeleteSipDispatchRuleRequest,
    DeleteSipTrunkRequest, GetSipInboundTrunkRequest, GetSipInboundTrunkResponse,
    GetSipOutboundTrunkRequest, GetSipOutboundTrunkResponse, ListSipDispatchRuleRequest,
    ListSipDispatchRuleResponse, ListSipInboundTrunkRequest, ListSipInboundTrunkResponse,
    ListSipOutboundTrunkRequest, ListSipOutboundTrunkResponse, ListSipTrunkRequest,
    ListSipTrunkResponse, SipInboundTrunkInfo, SipOutboundTrunkInfo, SipTrunkInfo,
    TransferSipParticipantRequest, UpdateSipDispatchRuleRequest, UpdateSipInboundTrunkRequest,
    UpdateSipOutboundTrunkRequest,
};
use switchboard_routing::{
    check_update_request, dispatch_rule_from_create_request, validate_create_sip_participant,
    validate_transfer_sip_participant, DialPlan, NumberFormat, ObjectKind, RoutingError,
};

use crate::auth::{require_sip_admin, require_sip_call, require_transfer, Claims};
use crate::call_control::{OutboundCall, Transfer};
use crate::twirp::{Code, TwirpError};
use crate::wire::{decode_request, encode_response, Encoding, ProtoMessage};
use crate::ApiState;

/// The methods served, in the proto's declaration order.
pub const METHODS: [&str; 16] = [
    "ListSIPTrunk",
    "CreateSIPInboundTrunk",
    "CreateSIPOutboundTrunk",
    "UpdateSIPInboundTrunk",
    "UpdateSIPOutboundTrunk",
    "GetSIPInboundTrunk",
    "GetSIPOutboundTrunk",
    "ListSIPInboundTrunk",
    "ListSIPOutboundTrunk",
    "DeleteSIPTrunk",
    "CreateSIPDispatchRule",
    "UpdateSIPDispatchRule",
    "ListSIPDispatchRule",
    "DeleteSIPDispatchRule",
    "CreateSIPParticipant",
    "TransferSIPParticipant",
];

/// One decoded call of a method.
pub(crate) struct Call<'a> {
    pub state: &'a ApiState,
    pub claims: Option<&'a Claims>,
    pub encoding: Encoding,
    pub body: &'a [u8],
    /// Another replica forwarded this order here (`replicas`): it is about
    /// a room that replica serves, not one to make here.
    pub forwarded: bool,
}

impl Call<'_> {
    pub(crate) fn request<M: ProtoMessage>(&self) -> Result<M, TwirpError> {
        decode_request(self.encoding, self.body)
    }

    /// The trunk of a JSON create request written without its `trunk`
    /// wrapper, as LiveKit's API reference shows it in its curl example
    /// (`{"name": ..., "numbers": [...]}`). LiveKit would discard those keys
    /// and refuse the request; taking them costs SDK users nothing.
    fn unwrapped_json<M: ProtoMessage + PartialEq>(&self) -> Result<Option<M>, TwirpError> {
        if self.encoding != Encoding::Json {
            return Ok(None);
        }
        let inner: M = decode_request(Encoding::Json, self.body)?;
        Ok((inner != M::default()).then_some(inner))
    }

    pub(crate) fn reply<M: ProtoMessage>(&self, message: &M) -> Result<Vec<u8>, TwirpError> {
        encode_response(self.encoding, message)
    }
}

/// Runs a method; `None` if there is no such method.
pub(crate) async fn dispatch(method: &str, call: Call<'_>) -> Option<Result<Vec<u8>, TwirpError>> {
    let result = match method {
        "ListSIPTrunk" => list_sip_trunk(&call).await,
        "CreateSIPInboundTrunk" => create_inbound_trunk(&call).await,
        "CreateSIPOutboundTrunk" => create_outbound_trunk(&call).await,
        "UpdateSIPInboundTrunk" => update_inbound_trunk(&call).await,
        "UpdateSIPOutboundTrunk" => update_outbound_trunk(&call).await,
        "GetSIPInboundTrunk" => get_inbound_trunk(&call).await,
        "GetSIPOutboundTrunk" => get_outbound_trunk(&call).await,
        "ListSIPInboundTrunk" => list_inbound_trunks(&call).await,
        "ListSIPOutboundTrunk" => list_outbound_trunks(&call).await,
        "DeleteSIPTrunk" => delete_trunk(&call).await,
        "CreateSIPDispatchRule" => create_dispatch_rule(&call).await,
        "UpdateSIPDispatchRule" => update_dispatch_rule(&call).await,
        "ListSIPDispatchRule" => list_dispatch_rules(&call).await,
        "DeleteSIPDispatchRule" => delete_dispatch_rule(&call).await,
        "CreateSIPParticipant" => create_participant(&call).await,
        "TransferSIPParticipant" => transfer_participant(&call).await,
        _ => return None,
    };
    Some(result)
}

fn missing(what: &str) -> TwirpError {
    TwirpError::new(Code::InvalidArgument, format!("missing {what}"))
}

async fn list_sip_trunk(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: ListSipTrunkRequest = call.request()?;
    require_sip_admin(call.claims)?;
    let store = &call.state.store;
    // No page here: the merged list is paged below.
    let inbound = store
        .list_inbound_trunks(&ListSipInboundTrunkRequest::default())
        .await?;
    let outbound = store
        .list_outbound_trunks(&ListSipOutboundTrunkRequest::default())
        .await?;
    let mut items: BTreeMap<String, SipTrunkInfo> = BTreeMap::new();
    for t in inbound {
        let t = call.state.shown_inbound(t);
        items.insert(t.sip_trunk_id.clone(), inbound_as_legacy(t));
    }
    for t in outbound {
        let t = call.state.shown_outbound(t);
        items.insert(t.sip_trunk_id.clone(), outbound_as_legacy(t));
    }
    let after = req.page.as_ref().map(|p| p.after_id.as_str()).unwrap_or("");
    let limit = req
        .page
        .as_ref()
        .and_then(|p| usize::try_from(p.limit).ok())
        .filter(|&n| n > 0)
        .unwrap_or(usize::MAX);
    let items = items
        .into_iter()
        .filter(|(id, _)| id.as_str() > after)
        .map(|(_, t)| t)
        .take(limit)
        .collect();
    call.reply(&ListSipTrunkResponse { items })
}

/// The deprecated SIPTrunkInfo view of an inbound trunk (LiveKit's `AsTrunkInfo`).
fn inbound_as_legacy(t: SipInboundTrunkInfo) -> SipTrunkInfo {
    SipTrunkInfo {
        sip_trunk_id: t.sip_trunk_id,
        kind: TrunkKind::TrunkInbound as i32,
        inbound_addresses: t.allowed_addresses,
        outbound_number: t.numbers.first().cloned().unwrap_or_default(),
        inbound_numbers: t.allowed_numbers,
        inbound_username: t.auth_username,
        inbound_password: t.auth_password,
        name: t.name,
        metadata: t.metadata,
        ..SipTrunkInfo::default()
    }
}

/// The deprecated SIPTrunkInfo view of an outbound trunk.
fn outbound_as_legacy(t: SipOutboundTrunkInfo) -> SipTrunkInfo {
    SipTrunkInfo {
        sip_trunk_id: t.sip_trunk_id,
        kind: TrunkKind::TrunkOutbound as i32,
        outbound_address: t.address,
        outbound_number: t.numbers.first().cloned().unwrap_or_default(),
        transport: t.transport,
        outbound_username: t.auth_username,
        outbound_password: t.auth_password,
        name: t.name,
        metadata: t.metadata,
        ..SipTrunkInfo::default()
    }
}

async fn create_inbound_trunk(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: CreateSipInboundTrunkRequest = call.request()?;
    require_sip_admin(call.claims)?;
    let trunk = match req.trunk {
        Some(trunk) => trunk,
        None => call.unwrapped_json()?.ok_or_else(|| missing("trunk"))?,
    };
    let created = call.state.store.create_inbound_trunk(trunk).await?;
    tracing::info!(trunk_id = %created.sip_trunk_id, name = %created.name, "inbound trunk created");
    call.reply(&created)
}

async fn create_outbound_trunk(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: CreateSipOutboundTrunkRequest = call.request()?;
    require_sip_admin(call.claims)?;
    let trunk = match req.trunk {
        Some(trunk) => trunk,
        None => call.unwrapped_json()?.ok_or_else(|| missing("trunk"))?,
    };
    let created = call.state.store.create_outbound_trunk(trunk).await?;
    tracing::info!(trunk_id = %created.sip_trunk_id, name = %created.name, "outbound trunk created");
    call.reply(&created)
}

async fn update_inbound_trunk(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: UpdateSipInboundTrunkRequest = call.request()?;
    require_sip_admin(call.claims)?;
    check_update_request(&req.sip_trunk_id, ObjectKind::Trunk, req.action.is_some())?;
    let action = req.action.ok_or(RoutingError::MissingUpdateAction)?;
    let updated = call
        .state
        .store
        .update_inbound_trunk(&req.sip_trunk_id, &action)
        .await?;
    tracing::info!(trunk_id = %updated.sip_trunk_id, "inbound trunk updated");
    call.reply(&updated)
}

async fn update_outbound_trunk(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: UpdateSipOutboundTrunkRequest = call.request()?;
    require_sip_admin(call.claims)?;
    check_update_request(&req.sip_trunk_id, ObjectKind::Trunk, req.action.is_some())?;
    let action = req.action.ok_or(RoutingError::MissingUpdateAction)?;
    let updated = call
        .state
        .store
        .update_outbound_trunk(&req.sip_trunk_id, &action)
        .await?;
    tracing::info!(trunk_id = %updated.sip_trunk_id, "outbound trunk updated");
    call.reply(&updated)
}

async fn get_inbound_trunk(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: GetSipInboundTrunkRequest = call.request()?;
    require_sip_admin(call.claims)?;
    let trunk = call
        .state
        .store
        .get_inbound_trunk(&req.sip_trunk_id)
        .await?
        .map(|t| call.state.shown_inbound(t))
        .ok_or(RoutingError::NotFound(ObjectKind::Trunk))?;
    call.reply(&GetSipInboundTrunkResponse { trunk: Some(trunk) })
}

async fn get_outbound_trunk(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: GetSipOutboundTrunkRequest = call.request()?;
    require_sip_admin(call.claims)?;
    let trunk = call
        .state
        .store
        .get_outbound_trunk(&req.sip_trunk_id)
        .await?
        .map(|t| call.state.shown_outbound(t))
        .ok_or(RoutingError::NotFound(ObjectKind::Trunk))?;
    call.reply(&GetSipOutboundTrunkResponse { trunk: Some(trunk) })
}

async fn list_inbound_trunks(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: ListSipInboundTrunkRequest = call.request()?;
    require_sip_admin(call.claims)?;
    let items = call.state.store.list_inbound_trunks(&req).await?;
    let items = items
        .into_iter()
        .map(|t| call.state.shown_inbound(t))
        .collect();
    call.reply(&ListSipInboundTrunkResponse { items })
}

async fn list_outbound_trunks(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: ListSipOutboundTrunkRequest = call.request()?;
    require_sip_admin(call.claims)?;
    let items = call.state.store.list_outbound_trunks(&req).await?;
    let items = items
        .into_iter()
        .map(|t| call.state.shown_outbound(t))
        .collect();
    call.reply(&ListSipOutboundTrunkResponse { items })
}

async fn delete_trunk(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: DeleteSipTrunkRequest = call.request()?;
    require_sip_admin(call.claims)?;
    // As LiveKit: no existence check, the answer names the ID either way.
    let existed = call.state.store.delete_trunk(&req.sip_trunk_id).await?;
    tracing::info!(trunk_id = %req.sip_trunk_id, existed, "trunk deleted");
    call.reply(&SipTrunkInfo {
        sip_trunk_id: req.sip_trunk_id,
        ..SipTrunkInfo::default()
    })
}

async fn create_dispatch_rule(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: CreateSipDispatchRuleRequest = call.request()?;
    require_sip_admin(call.claims)?;
    // The Node SDK still sends the legacy top-level fields.
    let rule = dispatch_rule_from_create_request(req);
    let created = call.state.store.create_dispatch_rule(rule).await?;
    tracing::info!(rule_id = %created.sip_dispatch_rule_id, name = %created.name, "dispatch rule created");
    call.reply(&created)
}

async fn update_dispatch_rule(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: UpdateSipDispatchRuleRequest = call.request()?;
    require_sip_admin(call.claims)?;
    check_update_request(
        &req.sip_dispatch_rule_id,
        ObjectKind::DispatchRule,
        req.action.is_some(),
    )?;
    let action = req.action.ok_or(RoutingError::MissingUpdateAction)?;
    let updated = call
        .state
        .store
        .update_dispatch_rule(&req.sip_dispatch_rule_id, &action)
        .await?;
    tracing::info!(rule_id = %updated.sip_dispatch_rule_id, "dispatch rule updated");
    call.reply(&updated)
}

async fn list_dispatch_rules(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: ListSipDispatchRuleRequest = call.request()?;
    require_sip_admin(call.claims)?;
    let items = call.state.store.list_dispatch_rules(&req).await?;
    call.reply(&ListSipDispatchRuleResponse { items })
}

async fn delete_dispatch_rule(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: DeleteSipDispatchRuleRequest = call.request()?;
    require_sip_admin(call.claims)?;
    let deleted = call
        .state
        .store
        .delete_dispatch_rule(&req.sip_dispatch_rule_id)
        .await?;
    tracing::info!(rule_id = %deleted.sip_dispatch_rule_id, "dispatch rule deleted");
    call.reply(&deleted)
}

/// How the stored outbound trunk writes numbers, when the /v1 API gave it
/// a number format. A stored plan that no longer reads is a fault of the
/// store, not of the request: internal.
async fn stored_dial_plan(
    state: &crate::ApiState,
    trunk_id: &str,
) -> Result<Option<DialPlan>, TwirpError> {
    let Some(record) = state.store.outbound_dial_plan(trunk_id).await? else {
        return Ok(None);
    };
    let number_format = NumberFormat::parse(&record.number_format)
        .map_err(|e| TwirpError::internal(format!("stored number format of {trunk_id}: {e}")))?;
    Ok(Some(DialPlan {
        number_format,
        country: Some(record.country).filter(|c| !c.is_empty()),
    }))
}

async fn create_participant(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: CreateSipParticipantRequest = call.request()?;
    require_sip_call(call.claims)?;
    validate_create_sip_participant(&req)?;
    let trunk = if req.sip_trunk_id.is_empty() {
        None
    } else {
        Some(
            call.state
                .store
                .get_outbound_trunk(&req.sip_trunk_id)
                .await?
                .ok_or(RoutingError::NotFound(ObjectKind::Trunk))?,
        )
    };
    let dial_plan = match &trunk {
        Some(trunk) => stored_dial_plan(call.state, &trunk.sip_trunk_id).await?,
        None => None,
    };
    if call.state.is_draining() {
        return Err(TwirpError::new(
            Code::Unavailable,
            "switchboard is draining; no new calls on this replica",
        ));
    }
    tracing::info!(
        trunk_id = %req.sip_trunk_id,
        room = %req.room_name,
        "CreateSIPParticipant handed to call control"
    );
    let info = call
        .state
        .call_control
        .create_participant(OutboundCall {
            request: req,
            trunk,
            dial_plan,
        })
        .await?;
    call.reply(&info)
}

async fn transfer_participant(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: TransferSipParticipantRequest = call.request()?;
    require_transfer(call.claims, &req.room_name)?;
    let refer_to = validate_transfer_sip_participant(&req)?;
    tracing::info!(
        room = %req.room_name,
        participant = %req.participant_identity,
        "TransferSIPParticipant handed to call control"
    );
    let response = call
        .state
        .call_control
        .transfer_participant(Transfer {
            request: req,
            refer_to,
        })
        .await?;
    call.reply(&response)
}

//! Room members as LiveKit's models show them to clients and to the
//! RoomService.

use crate::ids::track_sid_of;
use livekit_protocol as proto;
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};
use switchboard_rooms::{LeaveReason, ParticipantInfo, ParticipantKind};

/// The server version clients are told. Not switchboard's own: LiveKit's
/// JS and Rust SDKs refuse RPC below 1.8.0 and Rust parses it as semver,
/// so this names the LiveKit server whose client protocol is served.
pub const LIVEKIT_SERVER_VERSION: &str = "1.9.0";

/// The signalling protocol version served (LiveKit's numbering).
pub const PROTOCOL_VERSION: i32 = 16;

/// `ServerInfo` for JoinResponse.
pub fn server_info() -> proto::ServerInfo {
    proto::ServerInfo {
        edition: proto::server_info::Edition::Standard as i32,
        version: LIVEKIT_SERVER_VERSION.into(),
        protocol: PROTOCOL_VERSION,
        node_id: "switchboard".into(),
        agent_protocol: 1,
        ..Default::default()
    }
}

/// Where a participant is in its session, as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Joined, media not yet up (a client's own view at first).
    Joined,
    /// In the room.
    Active,
}

fn unix(t: SystemTime) -> std::time::Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// A member as LiveKit's `ParticipantInfo`: SIP calls are kind SIP,
/// WebSocket members and WebRTC clients STANDARD, media-stream bots AGENT;
/// a member that sends audio has one Opus microphone track whose SID is
/// derived from its own ([`track_sid_of`]).
pub fn participant_message(
    info: &ParticipantInfo,
    version: u32,
    state: State,
) -> proto::ParticipantInfo {
    let joined = unix(info.joined_at);
    let kind = match info.kind {
        ParticipantKind::Sip => proto::participant_info::Kind::Sip,
        ParticipantKind::WebSocket | ParticipantKind::WebRtc => {
            proto::participant_info::Kind::Standard
        }
        // A bot is what LiveKit calls an agent.
        ParticipantKind::Stream | ParticipantKind::Agent => proto::participant_info::Kind::Agent,
    };
    let tracks = if info.publishes_audio {
        vec![proto::TrackInfo {
            sid: track_sid_of(&info.sid),
            r#type: proto::TrackType::Audio as i32,
            name: "audio".into(),
            source: proto::TrackSource::Microphone as i32,
            mime_type: "audio/opus".into(),
            muted: info.audio_muted,
            ..proto::TrackInfo::default()
        }]
    } else {
        Vec::new()
    };
    let state = match state {
        State::Joined => proto::participant_info::State::Joined,
        State::Active => proto::participant_info::State::Active,
    };
    proto::ParticipantInfo {
        sid: info.sid.clone(),
        identity: info.identity.clone(),
        state: state as i32,
        tracks,
        metadata: info.metadata.clone(),
        joined_at: i64::try_from(joined.as_secs()).unwrap_or(i64::MAX),
        joined_at_ms: i64::try_from(joined.as_millis()).unwrap_or(i64::MAX),
        name: info.name.clone(),
        version,
        is_publisher: info.publishes_audio,
        kind: kind as i32,
        attributes: info
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>(),
        ..proto::ParticipantInfo::default()
    }
}

/// LiveKit's DisconnectReason for why a member left.
pub fn disconnect_reason(reason: LeaveReason) -> proto::DisconnectReason {
    match reason {
        LeaveReason::ClientInitiated => proto::DisconnectReason::ClientInitiated,
        LeaveReason::Removed => proto::DisconnectReason::ParticipantRemoved,
        LeaveReason::DuplicateIdentity => proto::DisconnectReason::DuplicateIdentity,
        LeaveReason::RoomDeleted => proto::DisconnectReason::RoomDeleted,
        LeaveReason::Stuck => proto::DisconnectReason::StateMismatch,
    }
}

/// LiveKit's acknowledgement that RPC `request_id` reached its callee.
pub fn rpc_ack(request_id: String) -> proto::data_packet::Value {
    proto::data_packet::Value::RpcAck(proto::RpcAck { request_id })
}

/// LiveKit's answer to RPC `request_id`: its payload, or its error.
pub fn rpc_response(
    request_id: String,
    result: Result<String, switchboard_rooms::RpcFailure>,
) -> proto::data_packet::Value {
    let value = match result {
        Ok(payload) => proto::rpc_response::Value::Payload(payload),
        Err(failure) => proto::rpc_response::Value::Error(proto::RpcError {
            code: failure.code,
            message: failure.message,
            data: String::new(),
        }),
    };
    proto::data_packet::Value::RpcResponse(proto::RpcResponse {
        request_id,
        value: Some(value),
    })
}

/// A session description as the signalling carries it: `kind` is
/// `"offer"` or `"answer"`, `id` pairs an answer with its offer.
pub fn session_description(kind: &str, sdp: String, id: u32) -> proto::SessionDescription {
    proto::SessionDescription {
        r#type: kind.into(),
        sdp,
        id,
        ..Default::default()
    }
}

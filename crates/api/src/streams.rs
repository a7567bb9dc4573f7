//! `switchboard.SIP/StartStream`: streams an existing room to a voice bot
//! (Twilio or Telnyx media streams, raw L16), the way a dispatch rule does
//! for its calls (docs/media-streams.md). The bot joins the room as a
//! participant; RoomService `RemoveParticipant` with its identity stops the
//! stream (`stop`, then the socket closes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchboard_streams::{CallFacts, StreamProtocol, StreamSpec};

use crate::auth::Claims;
use crate::room_service::require_room_admin;
use crate::twirp::{Code, TwirpError};
use crate::ApiState;

/// Longest identity a stream participant may be given.
const MAX_IDENTITY: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartStreamRequest {
    room: String,
    url: String,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    identity: String,
    #[serde(default)]
    custom_parameters: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct StartStreamResponse {
    room: String,
    identity: String,
    stream_id: String,
    protocol: &'static str,
}

/// Connects the bot, puts it in the room and starts streaming; answers once
/// the stream runs. Needs `roomAdmin` for the room.
pub(crate) async fn start_stream_json(
    state: &ApiState,
    claims: Option<&Claims>,
    body: &[u8],
) -> Result<Vec<u8>, TwirpError> {
    let req: StartStreamRequest = serde_json::from_slice(body).map_err(|e| {
        TwirpError::new(Code::Malformed, "the json request could not be decoded")
            .with_meta("cause", e.to_string())
    })?;
    require_room_admin(claims, &req.room)?;
    if state.rooms.room(&req.room).is_none() {
        return Err(TwirpError::new(
            Code::NotFound,
            "requested room does not exist",
        ));
    }
    let protocol = StreamProtocol::from_name(&req.protocol).ok_or_else(|| {
        TwirpError::new(
            Code::InvalidArgument,
            "protocol must be twilio, telnyx, telnyx-pcma or raw-l16",
        )
    })?;
    let identity = if req.identity.is_empty() {
        switchboard_rooms::new_sid("stream-")
    } else {
        req.identity.clone()
    };
    if identity.chars().count() > MAX_IDENTITY || identity.chars().any(char::is_control) {
        return Err(TwirpError::new(
            Code::InvalidArgument,
            "identity must be at most 128 characters, without control characters",
        ));
    }
    let mut spec = StreamSpec::new(req.url.clone(), protocol);
    spec.refused.clone_from(&state.refused_destinations);
    let socket = switchboard_streams::connect(&spec).await.map_err(|e| {
        TwirpError::new(Code::Unavailable, format!("the bot cannot be reached: {e}"))
    })?;
    let join = switchboard_streams::join_request(identity.clone());
    let participant = state.rooms.join(&req.room, join).map_err(|e| {
        TwirpError::new(
            Code::FailedPrecondition,
            format!("the bot cannot join: {e}"),
        )
    })?;
    let facts = CallFacts {
        call_id: identity.clone(),
        room: req.room.clone(),
        custom_parameters: req.custom_parameters,
        ..CallFacts::default()
    };
    let mut handle = switchboard_streams::start(socket, participant, facts, &spec);
    let stream_id = handle.stream_id().to_owned();
    tracing::info!(room = %req.room, identity = %identity, stream_id = %stream_id, "media stream started through the API");
    let room = req.room.clone();
    let logged_identity = identity.clone();
    tokio::spawn(async move {
        let end = handle.ended().await;
        tracing::info!(room = %room, identity = %logged_identity, end = ?end, "API media stream ended");
    });
    serde_json::to_vec(&StartStreamResponse {
        room: req.room,
        identity,
        stream_id,
        protocol: protocol.name(),
    })
    .map_err(|e| TwirpError::internal(e.to_string()))
}

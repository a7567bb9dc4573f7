//! Twirp `livekit.RoomService` over the embedded rooms, with LiveKit's
//! grants: `roomCreate` for CreateRoom and DeleteRoom, `roomList` for
//! ListRooms, `roomAdmin` for the request's room for everything about
//! participants. A missing grant is `unauthenticated "permissions denied"`,
//! checked before anything else is looked at.
//!
//! Where LiveKit's server is loose, switchboard follows it: CreateRoom of an
//! existing room returns that room (its metadata replaced when the request
//! sets some), ListParticipants of an unknown room is an empty list. Where
//! it leaks, switchboard does not: RemoveParticipant checks the grant before
//! it says whether the participant exists.
//!
//! SendData reaches LiveKit clients (WebRTC participants) as a user data
//! packet from the server; MutePublishedTrack mutes a participant's audio
//! in the room (a LiveKit client is told to mute itself). UpdateSubscriptions,
//! ForwardParticipant, MoveParticipant and PerformRpc answer
//! `unimplemented`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use livekit_protocol::{
    CreateRoomRequest, DeleteRoomRequest, DeleteRoomResponse, ForwardParticipantRequest,
    ListParticipantsRequest, ListParticipantsResponse, ListRoomsRequest, ListRoomsResponse,
    MoveParticipantRequest, MuteRoomTrackRequest, ParticipantInfo, PerformRpcRequest,
    RemoveParticipantResponse, Room, RoomParticipantIdentity, SendDataRequest,
    UpdateParticipantRequest, UpdateRoomMetadataRequest, UpdateSubscriptionsRequest,
};
use switchboard_rooms::{AgentRequest, ParticipantUpdate, RoomError, RoomInfo, RoomOptions};

use crate::auth::Claims;
use crate::service::Call;
use crate::twirp::{Code, TwirpError};
use crate::wire::ProtoMessage;

/// The methods served, in the proto's declaration order.
pub const METHODS: [&str; 14] = [
    "CreateRoom",
    "ListRooms",
    "DeleteRoom",
    "ListParticipants",
    "GetParticipant",
    "RemoveParticipant",
    "MutePublishedTrack",
    "UpdateParticipant",
    "UpdateSubscriptions",
    "SendData",
    "UpdateRoomMetadata",
    "ForwardParticipant",
    "MoveParticipant",
    "PerformRpc",
];

/// Runs a method; `None` if there is no such method.
pub(crate) fn dispatch(method: &str, call: &Call<'_>) -> Option<Result<Vec<u8>, TwirpError>> {
    let result = match method {
        "CreateRoom" => create_room(call),
        "ListRooms" => list_rooms(call),
        "DeleteRoom" => delete_room(call),
        "ListParticipants" => list_participants(call),
        "GetParticipant" => get_participant(call),
        "RemoveParticipant" => remove_participant(call),
        "UpdateParticipant" => update_participant(call),
        "UpdateRoomMetadata" => update_room_metadata(call),
        "MutePublishedTrack" => mute_published_track(call),
        "UpdateSubscriptions" => {
            unimplemented::<UpdateSubscriptionsRequest>(call, |r| &r.room, "UpdateSubscriptions")
        }
        "SendData" => send_data(call),
        "ForwardParticipant" => {
            unimplemented::<ForwardParticipantRequest>(call, |r| &r.room, "ForwardParticipant")
        }
        "MoveParticipant" => {
            unimplemented::<MoveParticipantRequest>(call, |r| &r.room, "MoveParticipant")
        }
        "PerformRpc" => unimplemented::<PerformRpcRequest>(call, |r| &r.room, "PerformRpc"),
        _ => return None,
    };
    Some(result)
}

fn require_room_create(claims: Option<&Claims>) -> Result<(), TwirpError> {
    match claims {
        Some(c) if c.video.room_create => Ok(()),
        _ => Err(TwirpError::permission_denied()),
    }
}

fn require_room_list(claims: Option<&Claims>) -> Result<(), TwirpError> {
    match claims {
        Some(c) if c.video.room_list => Ok(()),
        _ => Err(TwirpError::permission_denied()),
    }
}

/// `roomAdmin` with `room` equal to the request's room.
pub fn require_room_admin(claims: Option<&Claims>, room: &str) -> Result<(), TwirpError> {
    match claims {
        Some(c) if c.video.room_admin && c.video.room == room => Ok(()),
        _ => Err(TwirpError::permission_denied()),
    }
}

fn room_error(e: RoomError) -> TwirpError {
    match e {
        RoomError::Empty(what) => TwirpError::new(Code::InvalidArgument, format!("missing {what}")),
        RoomError::TooManyRooms(_) | RoomError::RoomFull { .. } => {
            TwirpError::new(Code::ResourceExhausted, e.to_string())
        }
        // LiveKit's texts, so SDK users match on the same words.
        RoomError::NoSuchRoom(_) => TwirpError::new(Code::NotFound, "room not found"),
        RoomError::NoSuchParticipant { .. } => {
            TwirpError::new(Code::NotFound, "participant not found")
        }
        RoomError::RoomExists(_) => TwirpError::new(Code::AlreadyExists, e.to_string()),
        RoomError::Unavailable(_) => TwirpError::new(Code::Unavailable, e.to_string()),
    }
}

fn unix(at: SystemTime) -> Duration {
    at.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A room as LiveKit's `Room` message.
pub(crate) fn room_message(info: &RoomInfo, publishers: usize) -> Room {
    let created = unix(info.created_at);
    Room {
        sid: info.sid.clone(),
        name: info.name.clone(),
        empty_timeout: u32::try_from(info.empty_timeout.as_secs()).unwrap_or(u32::MAX),
        max_participants: clamp_u32(info.max_participants),
        creation_time: i64::try_from(created.as_secs()).unwrap_or(i64::MAX),
        creation_time_ms: i64::try_from(created.as_millis()).unwrap_or(i64::MAX),
        metadata: info.metadata.clone(),
        num_participants: clamp_u32(info.num_participants),
        num_publishers: clamp_u32(publishers),
        ..Room::default()
    }
}

/// A participant as LiveKit's `ParticipantInfo` (the same view WebRTC
/// clients get of it).
pub fn participant_message(info: &switchboard_rooms::ParticipantInfo) -> ParticipantInfo {
    switchboard_webrtc::models::participant_message(
        info,
        0,
        switchboard_webrtc::models::State::Active,
    )
}

fn room_reply(call: &Call<'_>, info: &RoomInfo) -> Result<Vec<u8>, TwirpError> {
    let publishers = publishers(call, &info.name);
    call.reply(&room_message(info, publishers))
}

fn publishers(call: &Call<'_>, room: &str) -> usize {
    call.state
        .rooms
        .participants(room)
        .map(|ps| ps.iter().filter(|p| p.publishes_audio).count())
        .unwrap_or(0)
}

fn create_room(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: CreateRoomRequest = call.request()?;
    require_room_create(call.claims)?;
    if req.name.is_empty() {
        return Err(TwirpError::new(Code::InvalidArgument, "missing room name"));
    }
    let rooms = &call.state.rooms;
    let options = RoomOptions {
        metadata: req.metadata.clone(),
        empty_timeout: Duration::from_secs(u64::from(req.empty_timeout)),
        max_participants: req.max_participants as usize,
        agents: req
            .agents
            .iter()
            .map(|a| AgentRequest {
                agent_name: a.agent_name.clone(),
                metadata: a.metadata.clone(),
            })
            .collect(),
    };
    let info = match rooms.create_room_with(&req.name, options) {
        Ok(info) => {
            tracing::info!(room = %info.name, sid = %info.sid, "room created through the API");
            info
        }
        // LiveKit answers CreateRoom of an existing room with that room.
        Err(RoomError::RoomExists(_)) if req.metadata.is_empty() => rooms
            .room(&req.name)
            .ok_or_else(|| room_error(RoomError::NoSuchRoom(req.name.clone())))?,
        Err(RoomError::RoomExists(_)) => rooms
            .set_room_metadata(&req.name, &req.metadata)
            .map_err(room_error)?,
        Err(e) => return Err(room_error(e)),
    };
    room_reply(call, &info)
}

fn list_rooms(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: ListRoomsRequest = call.request()?;
    require_room_list(call.claims)?;
    let rooms = call
        .state
        .rooms
        .list_rooms()
        .into_iter()
        // A call's private room (it stands for a room served elsewhere) is
        // switchboard's own affair, not a room of the API's.
        .filter(|r| switchboard_rooms::shared_room_of(&r.name).is_none())
        .filter(|r| req.names.is_empty() || req.names.contains(&r.name))
        .map(|r| {
            let publishers = publishers(call, &r.name);
            room_message(&r, publishers)
        })
        .collect();
    call.reply(&ListRoomsResponse { rooms })
}

fn delete_room(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: DeleteRoomRequest = call.request()?;
    require_room_create(call.claims)?;
    call.state
        .rooms
        .delete_room(&req.room)
        .map_err(room_error)?;
    tracing::info!(room = %req.room, "room deleted through the API");
    call.reply(&DeleteRoomResponse {})
}

fn list_participants(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: ListParticipantsRequest = call.request()?;
    require_room_admin(call.claims, &req.room)?;
    let participants = match call.state.rooms.participants(&req.room) {
        Ok(ps) => ps.iter().map(participant_message).collect(),
        // As LiveKit: a room nobody is in has no participants.
        Err(RoomError::NoSuchRoom(_)) => Vec::new(),
        Err(e) => return Err(room_error(e)),
    };
    call.reply(&ListParticipantsResponse { participants })
}

fn get_participant(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: RoomParticipantIdentity = call.request()?;
    require_room_admin(call.claims, &req.room)?;
    let info = call
        .state
        .rooms
        .participant(&req.room, &req.identity)
        .map_err(participant_error)?;
    call.reply(&participant_message(&info))
}

/// A participant looked up in a room that does not exist is a participant
/// not found, as LiveKit says it.
fn participant_error(e: RoomError) -> TwirpError {
    match e {
        RoomError::NoSuchRoom(room) => room_error(RoomError::NoSuchParticipant {
            room,
            identity: String::new(),
        }),
        other => room_error(other),
    }
}

fn remove_participant(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: RoomParticipantIdentity = call.request()?;
    require_room_admin(call.claims, &req.room)?;
    call.state
        .rooms
        .remove_participant(&req.room, &req.identity)
        .map_err(participant_error)?;
    tracing::info!(room = %req.room, identity = %req.identity, "participant removed through the API");
    call.reply(&RemoveParticipantResponse {})
}

fn update_participant(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: UpdateParticipantRequest = call.request()?;
    require_room_admin(call.claims, &req.room)?;
    if req.permission.is_some() {
        return Err(TwirpError::new(
            Code::Unimplemented,
            "switchboard's rooms do not keep participant permissions; \
             UpdateParticipant changes name, metadata and attributes only",
        ));
    }
    // As LiveKit: an empty name or metadata leaves it as it is.
    let update = ParticipantUpdate {
        name: (!req.name.is_empty()).then_some(req.name),
        metadata: (!req.metadata.is_empty()).then_some(req.metadata),
        attributes: req.attributes.into_iter().collect::<BTreeMap<_, _>>(),
    };
    let info = call
        .state
        .rooms
        .update_participant(&req.room, &req.identity, &update)
        .map_err(participant_error)?;
    tracing::info!(room = %req.room, identity = %req.identity, "participant updated through the API");
    call.reply(&participant_message(&info))
}

fn update_room_metadata(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: UpdateRoomMetadataRequest = call.request()?;
    require_room_admin(call.claims, &req.room)?;
    let info = call
        .state
        .rooms
        .set_room_metadata(&req.room, &req.metadata)
        .map_err(room_error)?;
    room_reply(call, &info)
}

/// Mutes a participant's audio track: the room takes none of its audio,
/// everyone sees the track muted, a LiveKit client is told to mute.
fn mute_published_track(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: MuteRoomTrackRequest = call.request()?;
    require_room_admin(call.claims, &req.room)?;
    let rooms = &call.state.rooms;
    let current = rooms
        .participant(&req.room, &req.identity)
        .map_err(room_error)?;
    if !current.publishes_audio || switchboard_webrtc::track_sid_of(&current.sid) != req.track_sid {
        return Err(TwirpError::new(Code::NotFound, "track not found"));
    }
    let info = rooms
        .mute_participant(&req.room, &req.identity, req.muted)
        .map_err(room_error)?;
    let track = participant_message(&info).tracks.into_iter().next();
    call.reply(&livekit_protocol::MuteRoomTrackResponse { track })
}

/// A user packet from the server to the room's LiveKit clients (all, or
/// those named by identity or SID).
// Destination SIDs and the packet's `kind` are deprecated in the proto but
// still sent and read by older SDKs.
#[allow(deprecated)]
fn send_data(call: &Call<'_>) -> Result<Vec<u8>, TwirpError> {
    let req: SendDataRequest = call.request()?;
    require_room_admin(call.claims, &req.room)?;
    let rooms = &call.state.rooms;
    let mut destinations = req.destination_identities.clone();
    if !req.destination_sids.is_empty() {
        let participants = rooms.participants(&req.room).map_err(room_error)?;
        destinations.extend(
            participants
                .into_iter()
                .filter(|p| req.destination_sids.contains(&p.sid))
                .map(|p| p.identity),
        );
    }
    let reliable = req.kind != livekit_protocol::data_packet::Kind::Lossy as i32;
    let packet = livekit_protocol::DataPacket {
        kind: req.kind,
        destination_identities: destinations.clone(),
        value: Some(livekit_protocol::data_packet::Value::User(
            livekit_protocol::UserPacket {
                payload: req.data,
                topic: req.topic,
                nonce: req.nonce,
                destination_identities: destinations.clone(),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let payload: std::sync::Arc<[u8]> = prost::Message::encode_to_vec(&packet).into();
    // SDKs that name no one and rooms where no one matches get nothing.
    if req.destination_sids.is_empty() || !destinations.is_empty() {
        rooms
            .send_data(&req.room, payload, reliable, &destinations)
            .map_err(room_error)?;
    }
    call.reply(&livekit_protocol::SendDataResponse {})
}

/// Decodes the request and checks the grant (so a caller learns about a
/// missing grant first, as for every other method), then says what is not
/// there.
fn unimplemented<M: ProtoMessage>(
    call: &Call<'_>,
    room: impl Fn(&M) -> &String,
    method: &str,
) -> Result<Vec<u8>, TwirpError> {
    let req: M = call.request()?;
    require_room_admin(call.claims, room(&req))?;
    Err(TwirpError::new(
        Code::Unimplemented,
        format!(
            "{method} is not implemented: switchboard's rooms carry audio and DTMF \
             (WebSocket participants at /rooms/<room>/ws), not data packets, tracks or RPCs"
        ),
    ))
}

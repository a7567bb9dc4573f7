//! Replicas sharing rooms: an order for a room or a call that another
//! replica holds is forwarded to it, and a participant whose room another
//! replica owns is relayed there (its WebSocket, signalling only: a LiveKit
//! client's media goes straight to the owner, whose ICE candidates it gets).
//!
//! Where a room or call is comes from the [`RoomDirectory`] the binary
//! plugs in (leases in Redis). A forwarded request carries
//! [`FORWARDED_HEADER`] and is never forwarded again, so two replicas that
//! disagree for a moment cannot bounce a request between them.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::{CloseFrame as AxumCloseFrame, Message as AxumMessage, WebSocket};
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use switchboard_rooms::{RoomDirectory, RoomHome};
use switchboard_streams::{connect_websocket, websocket_url, BotStream, WebSocketOptions};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::{info, warn};

use crate::auth::ApiKeys;
use crate::twirp::{Code, TwirpError};
use crate::wire::{decode_request, Encoding};
use switchboard_routing::livekit_protocol::{
    CreateAgentDispatchRequest, CreateRoomRequest, DeleteAgentDispatchRequest, DeleteRoomRequest,
    ListAgentDispatchRequest, ListParticipantsRequest, ListRoomsResponse, MuteRoomTrackRequest,
    RoomParticipantIdentity, SendDataRequest, TransferSipParticipantRequest,
    UpdateParticipantRequest, UpdateRoomMetadataRequest,
};

/// Marks a request one replica forwarded to another.
pub const FORWARDED_HEADER: &str = "x-switchboard-forwarded";

/// How long a forwarded order may take (a transfer waits for its NOTIFY,
/// up to its own timeout of at most a few minutes).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(300);

/// The value of [`FORWARDED_HEADER`]: an HMAC under the first API secret,
/// which every replica shares and no client knows, so that a client cannot
/// make a replica skip forwarding (and serve a room it does not own).
pub(crate) fn replica_mark(keys: &ApiKeys) -> Option<String> {
    use hmac::{Hmac, KeyInit, Mac};
    let (_, secret) = keys.signing_key()?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(b"switchboard: forwarded by a replica");
    Some(
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// Whether `headers` say another replica forwarded this request (with the
/// replicas' mark; a header without it counts for nothing).
pub(crate) fn was_forwarded(headers: &HeaderMap, keys: &ApiKeys) -> bool {
    use subtle::ConstantTimeEq;
    // Most requests carry no mark: no HMAC for them.
    let Some(value) = headers.get(FORWARDED_HEADER) else {
        return false;
    };
    replica_mark(keys).is_some_and(|mark| value.as_bytes().ct_eq(mark.as_bytes()).into())
}

/// Where `room` lives for someone about to make or join it: `None` here
/// (taken now if nobody had it), else its owner's URL.
async fn owner_for_newcomer(
    directory: &dyn RoomDirectory,
    room: &str,
) -> Result<Option<String>, String> {
    match directory.locate(room).await? {
        RoomHome::Here => Ok(None),
        RoomHome::Elsewhere(url) => Ok(Some(url)),
    }
}

/// A member about to join `room` over a WebSocket (`/rooms/<room>/ws` or
/// `/rtc`): `Ok` hands the upgrade back to be served here; `Err` is the
/// answer already given (relayed to the room's owner, or refused because
/// where the room lives cannot be told). Relayed requests are served here.
pub(crate) async fn relay_if_elsewhere(
    state: &crate::ApiState,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    room: &str,
    upgrade: WebSocketUpgrade,
) -> Result<WebSocketUpgrade, Response> {
    let Some(directory) = state.directory.as_deref() else {
        return Ok(upgrade);
    };
    if was_forwarded(headers, &state.keys) {
        return Ok(upgrade);
    }
    let owner = owner_for_newcomer(directory, room).await.map_err(|e| {
        warn!(room, error = %e, "cannot tell where the room lives");
        TwirpError::new(Code::Unavailable, "the room directory is unavailable").into_response()
    })?;
    match owner {
        None => Ok(upgrade),
        Some(owner) => {
            let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
            Err(relay_websocket(
                upgrade,
                &owner,
                path,
                headers,
                state.websocket.max_message_bytes,
                &state.keys,
            )
            .await)
        }
    }
}

/// Relays a WebSocket member to the replica at `owner`, which serves the
/// same path: the upstream socket is opened first, so a refusal there
/// (a bad token, a full room) reaches the client as an HTTP answer.
async fn relay_websocket(
    upgrade: WebSocketUpgrade,
    owner: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    max_message_bytes: usize,
    keys: &ApiKeys,
) -> Response {
    let Some(url) = websocket_url(owner, path_and_query) else {
        return TwirpError::internal("the room's replica has no usable URL").into_response();
    };
    let mut options = WebSocketOptions {
        max_message_bytes,
        ..WebSocketOptions::new()
    };
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        options
            .headers
            .push((header::AUTHORIZATION.to_string(), value.to_string()));
    }
    if let Some(mark) = replica_mark(keys) {
        options.headers.push((FORWARDED_HEADER.to_string(), mark));
    }
    let upstream = match connect_websocket(&url, &options).await {
        Ok(socket) => socket.into_websocket(),
        Err(e) => {
            // The URL may carry a token: the error names the host only.
            info!(owner, error = %e, "the room's replica refused or cannot be reached");
            return TwirpError::new(
                Code::Unavailable,
                format!("the replica serving the room cannot be reached: {e}"),
            )
            .into_response();
        }
    };
    info!(owner, "member relayed to the replica that owns its room");
    upgrade
        .max_message_size(max_message_bytes)
        .on_upgrade(move |client| pump(client, upstream))
}

/// What one side's next message means for the other side.
enum Step<M> {
    /// Pass it on.
    Send(M),
    /// Nothing to pass on (pings are each side's own).
    Skip,
    /// Pass this close on and stop.
    Close(M),
}

fn from_client(message: Option<Result<AxumMessage, axum::Error>>) -> Step<Message> {
    match message {
        Some(Ok(AxumMessage::Text(text))) => Step::Send(Message::Text(text.as_str().into())),
        Some(Ok(AxumMessage::Binary(data))) => Step::Send(Message::Binary(data)),
        Some(Ok(AxumMessage::Ping(_) | AxumMessage::Pong(_))) => Step::Skip,
        Some(Ok(AxumMessage::Close(frame))) => {
            Step::Close(Message::Close(frame.map(|f| CloseFrame {
                code: f.code.into(),
                reason: f.reason.as_str().into(),
            })))
        }
        Some(Err(_)) | None => Step::Close(Message::Close(None)),
    }
}

fn from_upstream(
    message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Step<AxumMessage> {
    match message {
        Some(Ok(Message::Text(text))) => Step::Send(AxumMessage::Text(text.as_str().into())),
        Some(Ok(Message::Binary(data))) => Step::Send(AxumMessage::Binary(data)),
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Step::Skip,
        Some(Ok(Message::Close(frame))) => {
            Step::Close(AxumMessage::Close(frame.map(|f| AxumCloseFrame {
                code: f.code.into(),
                reason: f.reason.as_str().into(),
            })))
        }
        Some(Err(_)) | None => Step::Close(AxumMessage::Close(None)),
    }
}

/// Copies messages both ways until either side closes.
async fn pump(mut client: WebSocket, mut upstream: WebSocketStream<BotStream>) {
    loop {
        let over = tokio::select! {
            message = client.recv() => {
                carry(from_client(message), &mut upstream, &mut client, AxumMessage::Close(None)).await
            }
            message = upstream.next() => {
                carry(from_upstream(message), &mut client, &mut upstream, Message::Close(None)).await
            }
        };
        if over {
            return;
        }
    }
}

/// Carries one side's step to the other side (`to`); a failed send closes
/// the side it came from (`from`, with `close`). `true`: the pump is over.
async fn carry<M, C, To, From>(step: Step<M>, to: &mut To, from: &mut From, close: C) -> bool
where
    To: futures_util::Sink<M> + Unpin,
    From: futures_util::Sink<C> + Unpin,
{
    match step {
        Step::Send(m) => {
            if to.send(m).await.is_err() {
                let _ = from.send(close).await;
                return true;
            }
            false
        }
        Step::Skip => false,
        Step::Close(m) => {
            let _ = to.send(m).await;
            true
        }
    }
}

/// The room a RoomService order is about, for the orders that act on one
/// existing room (ListRooms stays with the replica asked: it lists that
/// replica's rooms).
fn room_of_order(rpc: &str, encoding: Encoding, body: &[u8]) -> Option<String> {
    fn room<M: crate::wire::ProtoMessage>(
        encoding: Encoding,
        body: &[u8],
        field: impl Fn(M) -> String,
    ) -> Option<String> {
        decode_request::<M>(encoding, body).ok().map(field)
    }
    match rpc {
        "DeleteRoom" => room(encoding, body, |r: DeleteRoomRequest| r.room),
        "ListParticipants" => room(encoding, body, |r: ListParticipantsRequest| r.room),
        "GetParticipant" | "RemoveParticipant" => {
            room(encoding, body, |r: RoomParticipantIdentity| r.room)
        }
        "MutePublishedTrack" => room(encoding, body, |r: MuteRoomTrackRequest| r.room),
        "UpdateParticipant" => room(encoding, body, |r: UpdateParticipantRequest| r.room),
        "SendData" => room(encoding, body, |r: SendDataRequest| r.room),
        "UpdateRoomMetadata" => room(encoding, body, |r: UpdateRoomMetadataRequest| r.room),
        _ => None,
    }
}

/// The Twirp service an order is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// `livekit.RoomService`.
    Room,
    /// `livekit.AgentDispatchService`.
    AgentDispatch,
    /// `livekit.SIP`.
    Sip,
}

/// Where a room that an order creates lives: `None` here (taken now if
/// nobody had it, or when the directory cannot tell), else its owner.
async fn home_for_creation(directory: &dyn RoomDirectory, room: &str) -> Option<String> {
    if room.is_empty() {
        return None;
    }
    owner_for_newcomer(directory, room)
        .await
        .unwrap_or_else(|e| {
            warn!(room, error = %e, "cannot tell where the room lives: created here");
            None
        })
}

/// The replica an order should go to instead of this one: the owner of
/// the room a RoomService or AgentDispatchService order names (when the
/// room is not here; for CreateRoom and CreateDispatch, which make the
/// room, wherever it lives or is taken), or the replica holding the call a
/// transfer names. `None`: serve it here.
pub(crate) async fn forward_target(
    directory: &dyn RoomDirectory,
    rooms: &switchboard_rooms::Rooms,
    service: Service,
    rpc: &str,
    encoding: Encoding,
    body: &[u8],
) -> Option<String> {
    let existing_room = match (service, rpc) {
        (Service::Room, "CreateRoom") => {
            let request: CreateRoomRequest = decode_request(encoding, body).ok()?;
            return home_for_creation(directory, &request.name).await;
        }
        (Service::AgentDispatch, "CreateDispatch") => {
            let request: CreateAgentDispatchRequest = decode_request(encoding, body).ok()?;
            return home_for_creation(directory, &request.room).await;
        }
        (Service::AgentDispatch, "ListDispatch") => {
            decode_request::<ListAgentDispatchRequest>(encoding, body)
                .ok()
                .map(|r| r.room)
        }
        (Service::AgentDispatch, "DeleteDispatch") => {
            decode_request::<DeleteAgentDispatchRequest>(encoding, body)
                .ok()
                .map(|r| r.room)
        }
        (Service::Room, _) => room_of_order(rpc, encoding, body),
        _ => None,
    };
    if let Some(room) = existing_room {
        if room.is_empty() || rooms.room(&room).is_some() {
            return None;
        }
        return directory.owner_elsewhere(&room).await;
    }
    if service == Service::Sip && rpc == "TransferSIPParticipant" {
        let request: TransferSipParticipantRequest = decode_request(encoding, body).ok()?;
        if request.room_name.is_empty() || request.participant_identity.is_empty() {
            return None;
        }
        return directory
            .call_elsewhere(&request.room_name, &request.participant_identity)
            .await;
    }
    None
}

/// ListRooms over the replicas: `local` (this replica's answer) and each
/// other replica's, asked with the order as it came (its token and body)
/// and marked, so each answers with its own rooms. A replica that cannot
/// be reached is left out (and logged): the list is what could be seen.
pub(crate) async fn list_rooms_everywhere(
    state: &crate::ApiState,
    headers: &HeaderMap,
    body: &[u8],
    encoding: Encoding,
    local: Vec<u8>,
) -> Result<Vec<u8>, TwirpError> {
    let Some(directory) = state.directory.as_deref() else {
        return Ok(local);
    };
    let others = directory.other_servers().await;
    if others.is_empty() {
        return Ok(local);
    }
    let mut merged: ListRoomsResponse = decode_request(encoding, &local)?;
    for other in others {
        let answer = send_order(
            &other,
            "/twirp/livekit.RoomService/ListRooms",
            headers,
            body,
            state.max_body_bytes,
            &state.keys,
        )
        .await;
        match answer {
            Ok((status, _, bytes)) if status.is_success() => {
                match decode_request::<ListRoomsResponse>(encoding, &bytes) {
                    Ok(theirs) => merged.rooms.extend(theirs.rooms),
                    Err(e) => {
                        warn!(replica = %other, error = %e.msg, "a replica's room list does not decode")
                    }
                }
            }
            Ok((status, _, _)) => {
                warn!(replica = %other, %status, "a replica refused to list its rooms")
            }
            Err(e) => {
                warn!(replica = %other, error = %e, "a replica's rooms are not listed: it cannot be reached")
            }
        }
    }
    // A room can show twice for a moment (its lease just moved): once.
    merged.rooms.sort_by(|a, b| a.name.cmp(&b.name));
    merged.rooms.dedup_by(|a, b| a.name == b.name);
    crate::wire::encode_response(encoding, &merged)
}

/// Sends a Twirp request on to the replica at `target` as it came (its
/// token, content type and body) and answers with that replica's answer.
pub(crate) async fn forward_twirp(
    target: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    max_body_bytes: usize,
    keys: &ApiKeys,
) -> Response {
    match try_forward(target, path, headers, body, max_body_bytes, keys).await {
        Ok(response) => response,
        Err(e) => {
            warn!(target, path, error = %e, "cannot forward the order to the replica holding it");
            TwirpError::new(
                Code::Unavailable,
                "the replica holding the room or call cannot be reached",
            )
            .into_response()
        }
    }
}

async fn try_forward(
    target: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    max_body_bytes: usize,
    keys: &ApiKeys,
) -> Result<Response, String> {
    let (status, content_type, bytes) =
        send_order(target, path, headers, body, max_body_bytes, keys).await?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    let content_type = content_type.unwrap_or_else(|| HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Ok(response)
}

/// POSTs a Twirp order to the replica at `target` (`http://host:port`),
/// marked forwarded, with the `Authorization` and `Content-Type` of
/// `headers`; its status, content type and body.
pub(crate) async fn send_order(
    target: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    max_body_bytes: usize,
    keys: &ApiKeys,
) -> Result<(StatusCode, Option<HeaderValue>, Bytes), String> {
    let mark = replica_mark(keys).ok_or("no API key to mark the order with")?;
    let authority = target
        .trim_end_matches('/')
        .strip_prefix("http://")
        .ok_or_else(|| format!("{target} is not an http:// URL"))?
        .to_string();
    let deadline = tokio::time::Instant::now() + FORWARD_TIMEOUT;
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::post(path)
            .header(header::HOST, authority.as_str())
            .header(FORWARDED_HEADER, mark.as_str());
        for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
            if let Some(value) = headers.get(&name) {
                request = request.header(name, value.clone());
            }
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = Limited::new(response.into_body(), max_body_bytes.saturating_mul(4))
            .collect()
            .await
            .map_err(|e| format!("response: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, content_type, bytes))
    };
    let (status, content_type, bytes) = tokio::time::timeout_at(deadline, exchange)
        .await
        .map_err(|_| "timed out".to_string())??;
    let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    Ok((status, content_type, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_replicas_mark_counts_as_forwarded() {
        let keys = ApiKeys::from_iter([("k", "s3cret")]);
        let mark = replica_mark(&keys).unwrap();
        assert_eq!(mark.len(), 64);
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(FORWARDED_HEADER, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert!(was_forwarded(&with(&mark), &keys));
        assert!(!was_forwarded(&with("1"), &keys));
        assert!(!was_forwarded(&HeaderMap::new(), &keys));
        // Another deployment's secret makes another mark.
        let other = ApiKeys::from_iter([("k", "other")]);
        assert!(!was_forwarded(&with(&mark), &other));
        assert!(replica_mark(&ApiKeys::new()).is_none());
    }
}

//! WebSocket participants: `GET /rooms/<room>/ws`, so agents and tests can
//! sit in a room beside phone calls.
//!
//! The request is refused with an HTTP error before the upgrade when the
//! token is missing or does not verify (401), lacks `video.roomJoin` for
//! this very room or names no identity (403), the query is wrong (400), or
//! a limit is reached (429). Then the participant joins the room and the
//! socket carries the protocol of [`session`]: binary frames of 16-bit
//! little-endian mono PCM, 20 ms each at the chosen rate, both ways (the
//! server sends one every 20 ms, silence when the room is quiet), and JSON
//! text messages.

pub mod session;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use switchboard_rooms::{AudioRate, JoinRequest, ParticipantKind, RoomError};
use tracing::{debug, info, warn};

use crate::auth::{authenticate, Claims};
use crate::twirp::{Code, TwirpError};
use crate::ApiState;
use session::{Permissions, ServerMessage, Session, Step, CLIENT_RATES};

/// Limits of the WebSocket endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketConfig {
    /// Largest message (text or binary) a client may send; larger ones
    /// close the socket with 1009. Audio frames are at most 1920 bytes.
    pub max_message_bytes: usize,
    /// Most WebSocket participants at once; more get HTTP 429.
    pub max_participants: usize,
    /// A client that takes no data for this long is disconnected.
    pub send_timeout: Duration,
}

impl Default for WebSocketConfig {
    fn default() -> WebSocketConfig {
        WebSocketConfig {
            max_message_bytes: 64 * 1024,
            max_participants: 1000,
            send_timeout: Duration::from_secs(5),
        }
    }
}

/// WebSocket sessions open now.
#[derive(Debug, Default)]
pub struct SessionCount(AtomicUsize);

impl SessionCount {
    /// Sessions open.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Holds one place under `max_participants` while a session lives.
pub(crate) struct SessionSlot(Arc<ApiState>);

impl SessionSlot {
    pub(crate) fn take(state: &Arc<ApiState>) -> Option<SessionSlot> {
        let limit = state.websocket.max_participants;
        state
            .websocket_sessions
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| SessionSlot(state.clone()))
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.websocket_sessions.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn refuse(code: Code, msg: impl Into<String>) -> Response {
    TwirpError::new(code, msg).into_response()
}

/// The join settings of the query string: `rate` and `audio`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct JoinQuery {
    rate: u32,
    audio: bool,
}

fn join_query(uri: &Uri) -> Result<JoinQuery, String> {
    let params: HashMap<String, String> =
        axum::extract::Query::<HashMap<String, String>>::try_from_uri(uri)
            .map(|q| q.0)
            .map_err(|e| format!("invalid query string: {e}"))?;
    let rate = match params.get("rate") {
        None => 48_000,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|r| CLIENT_RATES.contains(r))
            .ok_or_else(|| format!("rate {v:?} is not one of 8000, 16000, 48000"))?,
    };
    let audio = match params.get("audio").map(String::as_str) {
        None | Some("true") | Some("1") => true,
        Some("false") | Some("0") => false,
        Some(v) => return Err(format!("audio {v:?} is not true or false")),
    };
    Ok(JoinQuery { rate, audio })
}

/// Who may join `room` with these claims, or the HTTP refusal.
pub(crate) fn check_grant(claims: Option<Claims>, room: &str) -> Result<Claims, TwirpError> {
    let Some(claims) = claims else {
        return Err(TwirpError::new(
            Code::Unauthenticated,
            "an access token is required (Authorization: Bearer, or the access_token parameter)",
        ));
    };
    if !claims.video.room_join {
        return Err(TwirpError::new(
            Code::PermissionDenied,
            "the token does not grant roomJoin",
        ));
    }
    if claims.video.room != room {
        return Err(TwirpError::new(
            Code::PermissionDenied,
            format!(
                "the token grants roomJoin for room {:?}, not {room:?}",
                claims.video.room
            ),
        ));
    }
    if claims.sub.is_empty() {
        return Err(TwirpError::new(
            Code::PermissionDenied,
            "the token names no identity (sub)",
        ));
    }
    Ok(claims)
}

/// A room join for the token's holder: its identity, name, metadata and
/// attributes as the token gives them.
pub(crate) fn join_request(
    claims: &Claims,
    kind: ParticipantKind,
    publishes_audio: bool,
    audio_rate: AudioRate,
) -> JoinRequest {
    JoinRequest {
        identity: claims.sub.clone(),
        name: claims.name.clone(),
        metadata: claims.metadata.clone(),
        attributes: claims
            .attributes
            .clone()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        kind,
        publishes_audio,
        audio_rate,
    }
}

fn join_refusal(e: RoomError) -> Response {
    let code = match e {
        RoomError::TooManyRooms(_) | RoomError::RoomFull { .. } => Code::ResourceExhausted,
        RoomError::Empty(_) => Code::InvalidArgument,
        _ => Code::Internal,
    };
    refuse(code, e.to_string())
}

/// `GET /rooms/<room>/ws`.
pub(crate) async fn handler(
    State(state): State<Arc<ApiState>>,
    room: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let room = match room {
        Ok(Path(room)) => room,
        Err(e) => return refuse(Code::InvalidArgument, format!("room name: {e}")),
    };
    let claims = match authenticate(&state.keys, &headers, &uri) {
        Ok(claims) => claims,
        Err(rejection) => {
            info!(room = %room, reason = %rejection.0, "WebSocket join with a refused token");
            return rejection.into_response();
        }
    };
    let claims = match check_grant(claims, &room) {
        Ok(claims) => claims,
        Err(e) => {
            info!(room = %room, reason = %e.msg, "WebSocket join refused");
            return e.into_response();
        }
    };
    let query = match join_query(&uri) {
        Ok(q) => q,
        Err(e) => return refuse(Code::InvalidArgument, e),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(e) => return e.into_response(),
    };
    // Another replica owns the room: the member is relayed there.
    let upgrade =
        match crate::replicas::relay_if_elsewhere(&state, &headers, &uri, &room, upgrade).await {
            Ok(upgrade) => upgrade,
            Err(answered) => return answered,
        };
    let Some(slot) = SessionSlot::take(&state) else {
        return refuse(
            Code::ResourceExhausted,
            format!(
                "too many WebSocket participants (limit {})",
                state.websocket.max_participants
            ),
        );
    };
    let permissions = Permissions {
        publish_audio: query.audio && claims.video.can_publish(),
        subscribe: claims.video.can_subscribe(),
        publish_data: claims.video.can_publish_data(),
        update_own_metadata: claims.video.can_update_own_metadata(),
    };
    let request = join_request(
        &claims,
        ParticipantKind::WebSocket,
        permissions.publish_audio,
        AudioRate::Fixed(query.rate),
    );
    // Joined before the upgrade so a full room is an HTTP answer, not a
    // socket that closes at once; a handshake that fails drops the handle,
    // which leaves the room.
    let participant = match state.rooms.join(&room, request) {
        Ok(p) => p,
        Err(e) => {
            info!(room = %room, identity = %claims.sub, error = %e, "WebSocket join refused by the room");
            return join_refusal(e);
        }
    };
    let session = match Session::new(participant, query.rate, permissions) {
        Ok(session) => session,
        Err(e) => {
            warn!(room = %room, error = %e, "no resampler for a WebSocket participant");
            return refuse(Code::Internal, format!("resampler: {e}"));
        }
    };
    let config = state.websocket.clone();
    upgrade
        .max_message_size(config.max_message_bytes)
        .max_frame_size(config.max_message_bytes)
        .on_upgrade(move |socket| drive(socket, session, config, slot))
}

/// Sends one message unless the client stopped taking data.
async fn send(socket: &mut WebSocket, message: Message, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("client took no data for {timeout:?}")),
    }
}

fn json(message: &ServerMessage) -> Message {
    // Serialising these plain structs cannot fail; an empty object is a
    // harmless answer if it ever did.
    Message::Text(
        serde_json::to_string(message)
            .unwrap_or_else(|_| "{}".into())
            .into(),
    )
}

/// Runs one session: the room's events, a frame every 20 ms, the client's
/// messages, until one side ends it.
async fn drive(
    mut socket: WebSocket,
    mut session: Session,
    config: WebSocketConfig,
    _slot: SessionSlot,
) {
    let (room, identity, sid) = match session.participant() {
        Some(p) => {
            let info = p.info();
            (p.room_name().to_string(), info.identity, info.sid)
        }
        None => return,
    };
    info!(room = %room, identity = %identity, sid = %sid, "WebSocket participant connected");
    let timeout = config.send_timeout;
    let mut ending: Option<ServerMessage> = None;
    let outcome: Result<(), String> = async {
        if let Some(joined) = session.joined() {
            send(&mut socket, json(&joined), timeout).await?;
        }
        let mut clock = tokio::time::interval(Duration::from_millis(20));
        // Each tick is a frame the client counts on: late ones are made up.
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            tokio::select! {
                biased;
                event = session.next_event() => match session.on_event(event) {
                    Step::Continue(Some(message)) => send(&mut socket, json(&message), timeout).await?,
                    Step::Continue(None) => {}
                    Step::End(message) => {
                        ending = Some(message);
                        return Ok(());
                    }
                },
                incoming = socket.recv() => match incoming {
                    None => return Err("client closed the connection".into()),
                    Some(Err(e)) => {
                        let e = e.into_inner();
                        if let Some(tungstenite::Error::Capacity(_)) = e.downcast_ref::<tungstenite::Error>() {
                            let close = CloseFrame {
                                code: axum::extract::ws::close_code::SIZE,
                                reason: format!("message over {} bytes", config.max_message_bytes).into(),
                            };
                            // The socket is going anyway: a failed close changes nothing.
                            let _ = send(&mut socket, Message::Close(Some(close)), timeout).await;
                        }
                        return Err(format!("socket error: {e}"));
                    }
                    Some(Ok(Message::Close(_))) => return Err("client closed the socket".into()),
                    Some(Ok(Message::Binary(data))) => {
                        if let Some(message) = session.on_binary(&data) {
                            debug!(room = %room, identity = %identity, "bad binary frame");
                            send(&mut socket, json(&message), timeout).await?;
                        }
                    }
                    Some(Ok(Message::Text(text))) => match session.on_text(text.as_str()) {
                        Step::Continue(Some(message)) => send(&mut socket, json(&message), timeout).await?,
                        Step::Continue(None) => {}
                        Step::End(message) => {
                            ending = Some(message);
                            return Ok(());
                        }
                    },
                    // Pings are answered by the socket itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                },
                _ = clock.tick() => {
                    let frame = axum::body::Bytes::copy_from_slice(session.next_frame());
                    send(&mut socket, Message::Binary(frame), timeout).await?;
                }
            }
        }
    }
    .await;
    session.leave();
    match (outcome, ending) {
        (Ok(()), Some(message)) => {
            let reason = match &message {
                ServerMessage::Disconnected { reason } => *reason,
                _ => "",
            };
            info!(room = %room, identity = %identity, sid = %sid, reason, "WebSocket participant disconnected");
            let closed = async {
                send(&mut socket, json(&message), timeout).await?;
                let close = CloseFrame {
                    code: axum::extract::ws::close_code::NORMAL,
                    reason: reason.into(),
                };
                send(&mut socket, Message::Close(Some(close)), timeout).await?;
                // Wait for the client's close so it sees a clean ending.
                while let Some(Ok(message)) = socket.recv().await {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                }
                Ok::<(), String>(())
            };
            if let Ok(Err(e)) | Err(e) = tokio::time::timeout(timeout, closed)
                .await
                .map_err(|_| "close handshake timed out".to_string())
            {
                debug!(room = %room, identity = %identity, error = %e, "WebSocket close not clean");
            }
        }
        (Ok(()), None) => {}
        (Err(e), _) => {
            info!(room = %room, identity = %identity, sid = %sid, reason = %e, "WebSocket participant left");
        }
    }
}

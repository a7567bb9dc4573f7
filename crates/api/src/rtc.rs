//! LiveKit's client signalling: `GET /rtc` (v0, two peer connections),
//! `GET /rtc/validate`, and 404 on the v1 paths so that SDKs which try v1
//! first fall back to v0. The session itself is
//! [`switchboard_webrtc::Session`]; this is its tokio driver: the
//! WebSocket, one UDP socket per transport, a 20 ms audio step and the
//! peer connections' timers.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use livekit_protocol as proto;
use prost::Message as _;
use switchboard_media::ports::{PortAllocator, TransportSockets};
use switchboard_rooms::{AgentRequest, AudioRate, ParticipantKind, RoomOptions};
use switchboard_webrtc::{ClientOptions, Ending, Grants, Session, Side};
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use crate::auth::{authenticate, Claims};
use crate::twirp::{Code, TwirpError};
use crate::ws::{check_grant, join_request, SessionSlot};
use crate::ApiState;

/// Where WebRTC participants' media sockets live.
#[derive(Clone)]
pub struct WebRtcConfig {
    /// Address the UDP sockets bind to.
    pub bind: IpAddr,
    /// Address written in our ICE candidates (what clients send to).
    pub advertise: IpAddr,
    /// The RTP port range the calls draw from: each client's two
    /// transports take one pair of it (the subscriber the even port, the
    /// publisher the odd one), so a firewall opened for the RTP range lets
    /// WebRTC through too, and the pair drains like a call's when the
    /// client leaves. `None`: ephemeral ports (tools and unit tests).
    pub ports: Option<PortAllocator>,
}

impl Default for WebRtcConfig {
    fn default() -> WebRtcConfig {
        WebRtcConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            advertise: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: None,
        }
    }
}

impl std::fmt::Debug for WebRtcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcConfig")
            .field("bind", &self.bind)
            .field("advertise", &self.advertise)
            .field("port_range", &self.ports.is_some())
            .finish()
    }
}

/// The routes of LiveKit's client signalling.
pub(crate) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/rtc", get(join))
        .route("/rtc/validate", get(validate))
        .route("/rtc/v1", get(not_v1))
        .route("/rtc/v1/validate", get(not_v1))
}

/// v1 signalling (one peer connection) is not served: 404 tells the Rust
/// SDK (by the handshake status) and the JS SDK (by `validate`, which
/// needs CORS to read it) to fall back to `/rtc`.
async fn not_v1() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        )],
        "v1 signalling is not served here; use /rtc",
    )
        .into_response()
}

/// The query string of `/rtc`.
struct RtcQuery {
    auto_subscribe: bool,
    protocol: i32,
    reconnect: bool,
}

fn flag(params: &HashMap<String, String>, name: &str, default: bool) -> bool {
    match params.get(name).map(String::as_str) {
        None => default,
        Some(v) => v == "1" || v.eq_ignore_ascii_case("true"),
    }
}

fn rtc_query(uri: &Uri) -> RtcQuery {
    let params: HashMap<String, String> =
        axum::extract::Query::<HashMap<String, String>>::try_from_uri(uri)
            .map(|q| q.0)
            .unwrap_or_default();
    RtcQuery {
        auto_subscribe: flag(&params, "auto_subscribe", true),
        protocol: params
            .get("protocol")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0),
        reconnect: flag(&params, "reconnect", false),
    }
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        )],
        text,
    )
        .into_response()
}

fn http_status(code: Code) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Checks the token as `/rtc` does: its own room, an identity.
fn admitted(
    state: &ApiState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Claims, (StatusCode, String)> {
    let claims = authenticate(&state.keys, headers, uri)
        .map_err(|rejection| (StatusCode::UNAUTHORIZED, rejection.0))?;
    let room = claims
        .as_ref()
        .map(|c| c.video.room.clone())
        .unwrap_or_default();
    if claims.is_some() && room.is_empty() {
        return Err((StatusCode::UNAUTHORIZED, "the token names no room".into()));
    }
    check_grant(claims, &room).map_err(|e: TwirpError| (http_status(e.code), e.msg))
}

/// `GET /rtc/validate`: what `/rtc` would say, without joining.
async fn validate(State(state): State<Arc<ApiState>>, headers: HeaderMap, uri: Uri) -> Response {
    match admitted(&state, &headers, &uri) {
        Ok(_) => plain(StatusCode::OK, "success".into()),
        Err((status, text)) => plain(status, text),
    }
}

/// `GET /rtc`: a LiveKit client joins the room its token names.
async fn join(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let claims = match admitted(&state, &headers, &uri) {
        Ok(claims) => claims,
        Err((status, text)) => {
            info!(status = status.as_u16(), reason = %text, "WebRTC join refused");
            return plain(status, text);
        }
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        // A plain GET of /rtc is what LiveKit answers 404 to.
        Err(_) => return plain(StatusCode::NOT_FOUND, "/rtc takes a WebSocket".into()),
    };
    let query = rtc_query(&uri);
    // Another replica owns the room: the signalling is relayed there, and
    // the client's media goes to that replica's own candidates.
    let upgrade = if query.reconnect {
        upgrade
    } else {
        match crate::replicas::relay_if_elsewhere(
            &state,
            &headers,
            &uri,
            &claims.video.room,
            upgrade,
        )
        .await
        {
            Ok(upgrade) => upgrade,
            Err(answered) => return answered,
        }
    };
    let Some(slot) = SessionSlot::take(&state) else {
        return plain(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many WebSocket sessions (limit {})",
                state.websocket.max_participants
            ),
        );
    };
    if query.reconnect {
        // Sessions are not resumed: the client is told to join afresh.
        return upgrade.on_upgrade(move |socket| refuse_resume(socket, slot));
    }
    let room = claims.video.room.clone();
    let grants = Grants {
        can_publish: claims.video.can_publish(),
        can_subscribe: claims.video.can_subscribe(),
        can_publish_data: claims.video.can_publish_data(),
        can_update_own_metadata: claims.video.can_update_own_metadata(),
        hidden: claims.video.hidden,
    };
    // As LiveKit's server: the token names the kind (a SIP gateway joins
    // its callers as "sip", LiveKit's SIP service and switchboard's uplink).
    let kind = match claims.kind.as_str() {
        "agent" => ParticipantKind::Agent,
        "sip" => ParticipantKind::Sip,
        _ => ParticipantKind::WebRtc,
    };
    // A token's room configuration applies when this join creates the room.
    let options = RoomOptions {
        agents: claims
            .room_config
            .iter()
            .flat_map(|c| &c.agents)
            .map(|a| AgentRequest {
                agent_name: a.agent_name.clone(),
                metadata: a.metadata.clone(),
            })
            .collect(),
        ..RoomOptions::default()
    };
    let request = join_request(
        &claims,
        kind,
        // Until it publishes a track.
        false,
        // Opus runs at any rate: a room of phones stays narrowband.
        AudioRate::UpTo(48_000),
    );
    let sockets = match TransportSockets::bind(state.webrtc.ports.as_ref(), state.webrtc.bind) {
        Ok(sockets) => sockets,
        Err(e) => {
            warn!(error = %e, "no UDP sockets for a WebRTC participant");
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("media sockets: {e}"),
            );
        }
    };
    let participant = match state.rooms.join_with(&room, request, &options) {
        Ok(p) => p,
        Err(e) => {
            info!(room = %room, identity = %claims.sub, error = %e, "WebRTC join refused by the room");
            return plain(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
    };
    let options = ClientOptions {
        auto_subscribe: query.auto_subscribe,
        protocol: query.protocol,
    };
    // The subscriber takes the even port, the publisher the odd one.
    let (subscriber_address, publisher_address) = sockets.advertised(state.webrtc.advertise);
    let (subscriber, publisher, pair) = sockets.into_parts();
    let session = match Session::new(
        Instant::now(),
        participant,
        grants,
        options,
        subscriber_address,
        publisher_address,
    ) {
        Ok(session) => session,
        Err(e) => {
            warn!(error = %e, "WebRTC session not started");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };
    let timeout = state.websocket.send_timeout;
    upgrade
        .max_message_size(state.websocket.max_message_bytes)
        .on_upgrade(move |socket| async move {
            drive(socket, session, [subscriber, publisher], timeout, slot).await;
            // The tokio sockets are closed: the pair drains from here.
            drop(pair);
        })
}

async fn refuse_resume(mut socket: WebSocket, _slot: SessionSlot) {
    let leave = proto::SignalResponse {
        message: Some(proto::signal_response::Message::Leave(
            proto::LeaveRequest {
                reason: proto::DisconnectReason::StateMismatch as i32,
                action: proto::leave_request::Action::Reconnect as i32,
                ..Default::default()
            },
        )),
    };
    let _ = socket
        .send(Message::Binary(leave.encode_to_vec().into()))
        .await;
    let _ = socket.send(Message::Close(None)).await;
}

async fn send(socket: &mut WebSocket, message: Message, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("client took no data for {timeout:?}")),
    }
}

/// How the client speaks: protobuf in binary frames (every SDK), or
/// protojson in text frames (LiveKit's fallback); replies follow the
/// client's last frame, as LiveKit's server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Binary,
    Json,
}

fn signal_message(response: &proto::SignalResponse, framing: Framing) -> Message {
    match framing {
        Framing::Binary => Message::Binary(response.encode_to_vec().into()),
        // Encoding a message the descriptors know cannot fail; an empty
        // object would be a harmless answer if it ever did.
        Framing::Json => Message::Text(
            crate::wire::to_protojson(response)
                .ok()
                .and_then(|json| String::from_utf8(json).ok())
                .unwrap_or_else(|| "{}".into())
                .into(),
        ),
    }
}

/// Sends what the session has for the client and the network.
async fn flush(
    socket: &mut WebSocket,
    session: &mut Session,
    udp: &[UdpSocket; 2],
    timeout: Duration,
    framing: Framing,
) -> Result<(), String> {
    while let Some((side, to, data)) = session.poll_transmit() {
        let socket = match side {
            Side::Subscriber => &udp[0],
            Side::Publisher => &udp[1],
        };
        if let Err(e) = socket.send_to(&data, to).await {
            debug!(error = %e, %to, "datagram not sent");
        }
    }
    while let Some(response) = session.poll_response() {
        send(socket, signal_message(&response, framing), timeout).await?;
    }
    Ok(())
}

/// Runs one client's session until it leaves, is removed, or fails.
async fn drive(
    mut socket: WebSocket,
    mut session: Session,
    udp: [UdpSocket; 2],
    timeout: Duration,
    _slot: SessionSlot,
) {
    let info = session.participant().info();
    let room = session.participant().room_name().to_owned();
    info!(room = %room, identity = %info.identity, sid = %info.sid, "WebRTC participant connected");
    let mut clock = tokio::time::interval(Duration::from_millis(20));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut subscriber_buf = vec![0u8; 2048];
    let mut publisher_buf = vec![0u8; 2048];
    let mut framing = Framing::Binary;
    let outcome: Result<(), String> = async {
        loop {
            flush(&mut socket, &mut session, &udp, timeout, framing).await?;
            if session.ending().is_some() {
                return Ok(());
            }
            let wake = session
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                incoming = socket.recv() => match incoming {
                    None | Some(Ok(Message::Close(_))) => return Err("client closed the socket".into()),
                    Some(Err(e)) => return Err(format!("socket error: {e}")),
                    Some(Ok(Message::Binary(data))) => {
                        framing = Framing::Binary;
                        match proto::SignalRequest::decode(data.as_ref()) {
                            Ok(request) => session.handle_signal(Instant::now(), request),
                            Err(e) => debug!(error = %e, "a binary message that is not a SignalRequest"),
                        }
                    }
                    Some(Ok(Message::Text(text))) => {
                        framing = Framing::Json;
                        match crate::wire::decode_request::<proto::SignalRequest>(
                            crate::wire::Encoding::Json,
                            text.as_bytes(),
                        ) {
                            Ok(request) => session.handle_signal(Instant::now(), request),
                            Err(e) => debug!(error = %e.msg, "a text message that is not a SignalRequest"),
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                },
                event = session.participant_mut().next_event() => {
                    session.handle_room_event(Instant::now(), event);
                }
                received = udp[0].recv_from(&mut subscriber_buf) => {
                    if let Ok((n, from)) = received {
                        let data = subscriber_buf.get(..n).unwrap_or_default();
                        session.handle_datagram(Instant::now(), Side::Subscriber, from, data);
                    }
                }
                received = udp[1].recv_from(&mut publisher_buf) => {
                    if let Ok((n, from)) = received {
                        let data = publisher_buf.get(..n).unwrap_or_default();
                        session.handle_datagram(Instant::now(), Side::Publisher, from, data);
                    }
                }
                _ = clock.tick() => session.step_audio(Instant::now()),
                _ = tokio::time::sleep_until(wake.into()) => session.handle_timeout(Instant::now()),
            }
        }
    }
    .await;
    // Whatever is left (a LeaveRequest) goes out before the close.
    let _ = flush(&mut socket, &mut session, &udp, timeout, framing).await;
    let _ = send(&mut socket, Message::Close(None), timeout).await;
    let reason = match (&outcome, session.ending()) {
        (Err(e), _) => e.clone(),
        (Ok(()), Some(Ending::Left)) => "client left".into(),
        (Ok(()), Some(Ending::Disconnected(r))) => r.as_str().into(),
        (Ok(()), Some(Ending::PingTimeout)) => "ping timeout".into(),
        (Ok(()), Some(Ending::Failed(e))) => e.clone(),
        (Ok(()), None) => String::new(),
    };
    info!(room = %room, identity = %info.identity, sid = %info.sid, reason = %reason, "WebRTC participant left");
}

//! Rooms on a LiveKit server (`rooms.backend: livekit`). Each call sits in
//! a private local room (`switchboard_rooms::private_room_name`); for every
//! SIP participant that joins one, an uplink joins the room it stands for
//! on the LiveKit server, over LiveKit's client protocol, as that caller:
//! kind SIP, the same identity, name and attributes (kept current). The
//! caller's audio is published as one Opus track; every track of the room
//! there is mixed for the caller; DTMF crosses as SipDTMF data packets.
//! When the participant is removed there, the call ends here; when the
//! call ends, the participant leaves.
//!
//! One tokio task per call, as LiveKit's SIP service runs one client per
//! call. Signalling is `ws://` or `wss://` (rustls, ring).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use switchboard_media::ports::{PortAllocator, TransportSockets};
use switchboard_rooms::{
    shared_room_of, AgentRequest, AudioRate, JoinRequest, Lifecycle, Participant, ParticipantInfo,
    ParticipantKind, RoomDirectory, RoomEvent, RoomHome, Rooms, RpcFailure,
};
use switchboard_streams::{connect_websocket, WebSocketOptions};
use switchboard_webrtc::client::{Client, ClientEvent};
use switchboard_webrtc::models::{rpc_ack, rpc_response};
use switchboard_webrtc::Side;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

/// Where the rooms are and how to join them there.
#[derive(Clone)]
pub struct LiveKitServer {
    /// Where each room is: its server's URL (`ws://host:port` or
    /// `http://host:port`; a LiveKit server, or the replica that owns it).
    pub directory: Arc<dyn RoomDirectory>,
    /// This process's own URL, for a room that the directory says has
    /// come here since the call was placed (its owner died): the call then
    /// joins it through this process's own `/rtc`.
    pub own_url: Option<String>,
    /// An API key of the server(s), to sign each participant's token.
    pub api_key: String,
    /// That key's secret.
    pub api_secret: String,
    /// The local address the media sockets bind to.
    pub bind: IpAddr,
    /// The address our ICE candidates announce (the media address).
    pub advertise: IpAddr,
    /// The RTP port range: each call's two transports take one pair of it
    /// (as the calls' RTP and LiveKit clients do). `None`: ephemeral ports.
    pub ports: Option<PortAllocator>,
    /// TLS for a `wss://` (`https://`) server: `None` trusts the system's
    /// CA roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for LiveKitServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("LiveKitServer")
            .field("own_url", &self.own_url)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

/// The PCM rate between the call's private room and the client: wideband
/// Opus toward LiveKit; a G.711 caller is resampled once, in the room.
const UPLINK_RATE: u32 = 16_000;

/// How long a room's server that cannot be reached is tried again: a
/// replica's room lease outlives the replica by up to one lease time.
const CONNECT_PATIENCE: Duration = Duration::from_secs(12);
/// Between two attempts.
const CONNECT_RETRY: Duration = Duration::from_millis(500);

/// The uplink's own identity in the private room (never seen elsewhere).
const UPLINK_IDENTITY: &str = "livekit-uplink";

/// Starts bridging every caller of a private room to its room on
/// `server`; runs until the rooms are gone.
pub fn spawn(rooms: Rooms, server: LiveKitServer) -> tokio::task::JoinHandle<()> {
    let server = Arc::new(server);
    let mut lifecycle = rooms.lifecycle();
    tokio::spawn(async move {
        loop {
            match lifecycle.recv().await {
                Ok(Lifecycle::ParticipantJoined { room, participant })
                    if participant.kind == ParticipantKind::Sip =>
                {
                    let Some(shared) = shared_room_of(&room.name) else {
                        continue;
                    };
                    let uplink = Uplink {
                        rooms: rooms.clone(),
                        server: server.clone(),
                        local_room: room.name.clone(),
                        remote_room: shared.to_string(),
                        identity: participant.identity,
                        agents: room.agents.clone(),
                    };
                    tokio::spawn(uplink.run());
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "the LiveKit uplink fell behind the rooms' lifecycle: calls may not be bridged");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

struct Uplink {
    rooms: Rooms,
    server: Arc<LiveKitServer>,
    local_room: String,
    remote_room: String,
    /// The caller's identity (what else it is, name and attributes, is
    /// read from the private room at each join: they change).
    identity: String,
    /// The agents the call's dispatch rule asks for: the room there
    /// dispatches them if this join creates it (a token's `roomConfig`).
    agents: Vec<AgentRequest>,
}

fn token(
    server: &LiveKitServer,
    room: &str,
    caller: &ParticipantInfo,
    agents: &[AgentRequest],
) -> Result<String, String> {
    let mut token =
        livekit_api::access_token::AccessToken::with_api_key(&server.api_key, &server.api_secret);
    if !agents.is_empty() {
        token = token.with_room_config(proto::RoomConfiguration {
            agents: agents
                .iter()
                .map(|a| proto::RoomAgentDispatch {
                    agent_name: a.agent_name.clone(),
                    metadata: a.metadata.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
    }
    token
        .with_identity(&caller.identity)
        .with_name(&caller.name)
        .with_kind("sip")
        .with_metadata(&caller.metadata)
        .with_attributes(caller.attributes.clone())
        .with_grants(livekit_api::access_token::VideoGrants {
            room_join: true,
            room: room.to_string(),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            can_update_own_metadata: Some(true),
            ..Default::default()
        })
        .with_ttl(Duration::from_secs(24 * 3600))
        .to_jwt()
        .map_err(|e| e.to_string())
}

/// `ws://…/rtc?…` for the server at `url` (`http(s)://` is taken as
/// `ws(s)://`); `None` for another scheme.
fn rtc_url(url: &str, token: &str) -> Option<String> {
    switchboard_streams::websocket_url(
        url,
        &format!("/rtc?access_token={token}&auto_subscribe=1&protocol=16&sdk=switchboard"),
    )
}

/// Why the uplink stopped.
enum Stop {
    /// The caller left the private room (the call ended).
    CallEnded,
    /// The server removed the participant (or closed the room).
    Removed(String),
    /// Signalling or media failed.
    Failed(String),
    /// The signalling connection was lost without the server saying the
    /// participant was removed (the server stopped, a replica drained or
    /// died): the room is joined again wherever it is now.
    Lost(String),
}

/// Most times one call's uplink joins its room again after losing it.
const MAX_REJOINS: u32 = 10;

impl Uplink {
    async fn run(self) {
        let identity = self.identity.clone();
        let room = self.remote_room.clone();
        info!(room = %room, identity = %identity, "joining the LiveKit room for a call");
        let mut local = match self.rooms.join(
            &self.local_room,
            JoinRequest {
                identity: UPLINK_IDENTITY.into(),
                name: format!("LiveKit room {}", self.remote_room),
                metadata: String::new(),
                attributes: Default::default(),
                kind: ParticipantKind::WebRtc,
                publishes_audio: true,
                audio_rate: AudioRate::Fixed(UPLINK_RATE),
            },
        ) {
            Ok(local) => local,
            Err(e) => {
                warn!(room = %room, identity = %identity, error = %e, "the call's private room cannot be joined");
                return;
            }
        };
        let mut rejoins = 0u32;
        let stop = loop {
            match self.bridge(&mut local).await {
                Ok(Stop::Lost(why)) if rejoins < MAX_REJOINS => {
                    rejoins += 1;
                    info!(room = %room, identity = %identity, reason = %why, rejoins, "lost the room's server: joining the room again");
                }
                Ok(Stop::Lost(why)) => break Stop::Failed(why),
                Ok(stop) => break stop,
                Err(e) => break Stop::Failed(e),
            }
        };
        match stop {
            Stop::CallEnded => {
                info!(room = %room, identity = %identity, "call ended: left the LiveKit room")
            }
            Stop::Removed(why) => {
                info!(room = %room, identity = %identity, reason = %why, "removed from the LiveKit room: ending the call");
                let _ = self.rooms.remove_participant(&self.local_room, &identity);
            }
            Stop::Failed(why) | Stop::Lost(why) => {
                warn!(room = %room, identity = %identity, error = %why, "LiveKit room lost: ending the call");
                let _ = self.rooms.remove_participant(&self.local_room, &identity);
            }
        }
    }

    async fn bridge(&self, local: &mut Participant) -> Result<Stop, String> {
        // The caller as it is now (a rejoin carries the attributes it has
        // since taken).
        let caller = self
            .rooms
            .participant(&self.local_room, &self.identity)
            .map_err(|_| "the call has left".to_string())?;
        let mut ws = self.connect(&caller).await?;
        let sockets = TransportSockets::bind(self.server.ports.as_ref(), self.server.bind)
            .map_err(|e| format!("media sockets: {e}"))?;
        let (subscriber_addr, publisher_addr) = sockets.advertised(self.server.advertise);
        let (subscriber, publisher, _pair) = sockets.into_parts();
        let mut client = Client::new(Instant::now(), subscriber_addr, publisher_addr, UPLINK_RATE)
            .map_err(|e| e.to_string())?;
        let port = local.audio();
        let frame_len = client.frame_len();
        let mut frame = vec![0i16; frame_len];
        let mut clock = tokio::time::interval(Duration::from_millis(20));
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let (mut subscriber_buf, mut publisher_buf) = (vec![0u8; 2048], vec![0u8; 2048]);
        let mut attributes = caller.attributes.clone();
        // RPCs to the caller in flight: request ID → who asked.
        let mut rpcs: HashMap<String, String> = HashMap::new();
        let mut call_over = false;
        loop {
            // Everything the client has to say goes out first.
            while let Some(request) = client.poll_request() {
                ws.send(Message::Binary(request.encode_to_vec().into()))
                    .await
                    .map_err(|e| format!("signalling: {e}"))?;
            }
            while let Some((side, to, data)) = client.poll_transmit() {
                let socket = if side == Side::Subscriber {
                    &subscriber
                } else {
                    &publisher
                };
                if let Err(e) = socket.send_to(&data, to).await {
                    debug!(error = %e, %to, "datagram not sent");
                }
            }
            while let Some(event) = client.poll_event() {
                if let Some(stop) = self.on_client_event(local, &mut client, &mut rpcs, event) {
                    return Ok(stop);
                }
            }
            // The call is over: what it said last (an RPC's answer) is out.
            if call_over {
                return self.leave(&mut ws, &mut client).await;
            }
            let wake = client
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(Message::Binary(data))) => match proto::SignalResponse::decode(data.as_ref()) {
                        Ok(response) => client.handle_signal(Instant::now(), response),
                        Err(_) => debug!("a signal response that does not decode"),
                    },
                    Some(Ok(Message::Close(_))) | None => return Ok(Stop::Lost("the server closed the signalling".into())),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Ok(Stop::Lost(format!("signalling: {e}"))),
                },
                received = subscriber.recv_from(&mut subscriber_buf) => {
                    if let Ok((n, from)) = received {
                        client.handle_datagram(Instant::now(), Side::Subscriber, from, &subscriber_buf[..n]);
                    }
                }
                received = publisher.recv_from(&mut publisher_buf) => {
                    if let Ok((n, from)) = received {
                        client.handle_datagram(Instant::now(), Side::Publisher, from, &publisher_buf[..n]);
                    }
                }
                event = local.next_event() => match event {
                    Some(RoomEvent::Dtmf { from, code, digit }) if from == self.identity => {
                        let packet = proto::DataPacket {
                            value: Some(proto::data_packet::Value::SipDtmf(proto::SipDtmf { code, digit })),
                            ..Default::default()
                        };
                        client.send_data(Instant::now(), &packet, true);
                    }
                    Some(RoomEvent::ParticipantUpdated(info)) if info.identity == self.identity => {
                        let changes = attribute_changes(&attributes, &info.attributes);
                        if !changes.is_empty() {
                            client.update_attributes(changes);
                            attributes = info.attributes.clone();
                        }
                    }
                    Some(RoomEvent::RpcReply { id, result, .. }) => {
                        if let Some(asker) = rpcs.remove(&id) {
                            let packet = proto::DataPacket {
                                destination_identities: vec![asker],
                                value: Some(rpc_response(id, result)),
                                ..Default::default()
                            };
                            client.send_data(Instant::now(), &packet, true);
                        }
                    }
                    Some(RoomEvent::ParticipantLeft { identity, .. }) if identity == self.identity => {
                        call_over = true;
                    }
                    Some(RoomEvent::Disconnected { .. }) | None => {
                        call_over = true;
                    }
                    Some(_) => {}
                },
                _ = clock.tick() => {
                    // The private room mixes at UPLINK_RATE (this member's
                    // fixed rate) unless a wider fixed member joined: then
                    // nothing crosses rather than audio at the wrong rate.
                    if port.frame_len() == frame_len {
                        if port.pull(&mut frame) {
                            client.send_audio(Instant::now(), &frame);
                        }
                        if client.pull_mix(&mut frame) {
                            port.push(&frame);
                        }
                    }
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    client.handle_timeout(Instant::now());
                }
            }
        }
    }

    /// Opens the signalling to the room's server. A server that cannot be
    /// reached is asked for again (and the directory again where the room
    /// is: a dead owner's lease expires and the room moves) for a while
    /// before the call is given up: the call rings meanwhile.
    async fn connect(
        &self,
        caller: &ParticipantInfo,
    ) -> Result<tokio_tungstenite::WebSocketStream<switchboard_streams::BotStream>, String> {
        let token = token(&self.server, &self.remote_room, caller, &self.agents)?;
        let options = WebSocketOptions {
            tls: self.server.tls.clone(),
            ..WebSocketOptions::new()
        };
        let started = Instant::now();
        loop {
            let url = match self.server.directory.locate(&self.remote_room).await {
                Ok(RoomHome::Elsewhere(url)) => Ok(url),
                Ok(RoomHome::Here) => {
                    self.server.own_url.clone().ok_or_else(|| {
                        "the room is here, but no URL of our own is known".to_string()
                    })
                }
                Err(e) => Err(format!("room directory: {e}")),
            }
            .and_then(|url| {
                rtc_url(&url, &token).ok_or_else(|| format!("{url} is not a ws(s) or http(s) URL"))
            });
            // The URL carries the token: errors name the host, never the URL.
            let attempt = match url {
                Ok(url) => connect_websocket(&url, &options)
                    .await
                    .map(|socket| socket.into_websocket())
                    .map_err(|e| format!("signalling: {e}")),
                Err(e) => Err(e),
            };
            match attempt {
                Ok(ws) => return Ok(ws),
                Err(e) if started.elapsed() >= CONNECT_PATIENCE => return Err(e),
                Err(e) => {
                    debug!(room = %self.remote_room, error = %e, "the room's server cannot be reached yet");
                    tokio::time::sleep(CONNECT_RETRY).await;
                }
            }
        }
    }

    async fn leave<S>(&self, ws: &mut S, client: &mut Client) -> Result<Stop, String>
    where
        S: futures_util::Sink<Message> + Unpin,
    {
        client.leave();
        while let Some(request) = client.poll_request() {
            let _ = ws
                .send(Message::Binary(request.encode_to_vec().into()))
                .await;
        }
        let _ = ws.send(Message::Close(None)).await;
        Ok(Stop::CallEnded)
    }

    fn on_client_event(
        &self,
        local: &Participant,
        client: &mut Client,
        rpcs: &mut HashMap<String, String>,
        event: ClientEvent,
    ) -> Option<Stop> {
        match event {
            ClientEvent::Joined(join) => {
                let sid = join.participant.map(|p| p.sid).unwrap_or_default();
                info!(room = %self.remote_room, identity = %self.identity, sid = %sid, "joined the LiveKit room");
                None
            }
            ClientEvent::Left(leave) => Some(Stop::Removed(format!(
                "{:?}",
                proto::DisconnectReason::try_from(leave.reason)
                    .unwrap_or(proto::DisconnectReason::UnknownReason)
            ))),
            ClientEvent::Data(packet) => {
                let asker = packet.participant_identity;
                match packet.value {
                    Some(proto::data_packet::Value::SipDtmf(dtmf)) => {
                        local.send_dtmf(
                            dtmf.code,
                            &dtmf.digit,
                            std::slice::from_ref(&self.identity),
                        );
                    }
                    Some(proto::data_packet::Value::RpcRequest(request)) => {
                        self.rpc_to_call(local, client, rpcs, asker, request);
                    }
                    _ => {}
                }
                None
            }
            ClientEvent::Transport(side, state) => {
                debug!(room = %self.remote_room, ?side, %state, "LiveKit transport");
                None
            }
            ClientEvent::Participants(_) | ClientEvent::Published(_) => None,
        }
    }
}

/// Most RPCs to one caller in flight; more are refused (1500).
const MAX_RPCS_IN_FLIGHT: usize = 64;

impl Uplink {
    /// An RPC from the room to the caller (`lk.sip.*`): acknowledged at
    /// once (the SDKs give up after 7 s without), answered by the call.
    fn rpc_to_call(
        &self,
        local: &Participant,
        client: &mut Client,
        rpcs: &mut HashMap<String, String>,
        asker: String,
        request: proto::RpcRequest,
    ) {
        let now = Instant::now();
        let to_asker = |value| proto::DataPacket {
            destination_identities: vec![asker.clone()],
            value: Some(value),
            ..Default::default()
        };
        client.send_data(now, &to_asker(rpc_ack(request.id.clone())), true);
        if rpcs.len() >= MAX_RPCS_IN_FLIGHT {
            let refusal = RpcFailure {
                code: 1500,
                message: "too many calls in flight".into(),
            };
            client.send_data(now, &to_asker(rpc_response(request.id, Err(refusal))), true);
            return;
        }
        local.send_rpc(
            &self.identity,
            &request.id,
            &request.method,
            &request.payload,
        );
        rpcs.insert(request.id, asker);
    }
}

/// The attributes that changed from `before` to `after` (a removed one as
/// an empty value, as LiveKit deletes them).
fn attribute_changes(
    before: &std::collections::BTreeMap<String, String>,
    after: &std::collections::BTreeMap<String, String>,
) -> HashMap<String, String> {
    let mut changes: HashMap<String, String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for key in before.keys().filter(|k| !after.contains_key(*k)) {
        changes.insert(key.clone(), String::new());
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_attribute_changes() {
        assert_eq!(
            rtc_url("http://10.0.0.1:7880/", "t").as_deref(),
            Some("ws://10.0.0.1:7880/rtc?access_token=t&auto_subscribe=1&protocol=16&sdk=switchboard")
        );
        assert!(rtc_url("https://lk.example.com", "t")
            .is_some_and(|u| u.starts_with("wss://lk.example.com/rtc?")));
        let before = [("a", "1"), ("b", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let after = [("a", "1"), ("c", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let changes = attribute_changes(&before, &after);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes["b"], "");
        assert_eq!(changes["c"], "3");
    }
}

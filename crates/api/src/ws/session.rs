//! One WebSocket participant as plain data: client messages and room events
//! in, server messages and audio frames out. The driver in `mod.rs` owns the
//! socket and the clock; everything a client can send is judged here, so it
//! is tested without a socket.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchboard_media::dtmf::DtmfDigit;
use switchboard_media::resample::{FrameResampler, ResampleError};
use switchboard_rooms::{AudioPort, LeaveReason, Participant, ParticipantInfo, RoomEvent};

/// Sample rates a client may choose.
pub const CLIENT_RATES: [u32; 3] = [8_000, 16_000, 48_000];

/// What a participant's token allows it (LiveKit's video grants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permissions {
    /// `canPublish` and the join did not ask `audio=false`.
    pub publish_audio: bool,
    /// `canSubscribe`: hears the room (otherwise silence).
    pub subscribe: bool,
    /// `canPublishData`: sends DTMF.
    pub publish_data: bool,
    /// `canUpdateOwnMetadata`: changes its own attributes and metadata.
    pub update_own_metadata: bool,
}

/// A participant as the protocol shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParticipantJson {
    /// Unique within the room.
    pub identity: String,
    /// `PA_…`.
    pub sid: String,
    /// Display name.
    pub name: String,
    /// Free-form metadata.
    pub metadata: String,
    /// Attributes (`sip.callStatus` and friends for calls).
    pub attributes: BTreeMap<String, String>,
    /// `sip` or `websocket`.
    pub kind: &'static str,
    /// Whether it sends audio into the room.
    pub publishes_audio: bool,
}

impl From<&ParticipantInfo> for ParticipantJson {
    fn from(info: &ParticipantInfo) -> ParticipantJson {
        ParticipantJson {
            identity: info.identity.clone(),
            sid: info.sid.clone(),
            name: info.name.clone(),
            metadata: info.metadata.clone(),
            attributes: info.attributes.clone(),
            kind: info.kind.as_str(),
            publishes_audio: info.publishes_audio,
        }
    }
}

/// A JSON text message from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The first message: the room, this participant and the others.
    Joined {
        /// Room name.
        room: String,
        /// `RM_…`.
        room_sid: String,
        /// This participant.
        participant: ParticipantJson,
        /// Everyone else in the room now.
        participants: Vec<ParticipantJson>,
        /// The rate of the binary frames both ways.
        sample_rate: u32,
    },
    /// Someone joined.
    ParticipantJoined {
        /// Who.
        participant: ParticipantJson,
    },
    /// Someone left.
    ParticipantLeft {
        /// Who.
        identity: String,
        /// Why (`client_initiated`, `participant_removed`, ...).
        reason: &'static str,
    },
    /// Someone's name, metadata, attributes or audio changed (this
    /// participant's own changes too).
    ParticipantUpdated {
        /// Its new state.
        participant: ParticipantJson,
    },
    /// A DTMF digit from another participant (a phone's keypad, say).
    Dtmf {
        /// The sender's identity.
        from: String,
        /// RFC 4733 event code, 0–15.
        code: u32,
        /// "0"–"9", "*", "#", "A"–"D".
        digit: String,
    },
    /// This participant is out of the room; the server closes the socket.
    Disconnected {
        /// Why.
        reason: &'static str,
    },
    /// A client message or frame was refused; the session goes on.
    Error {
        /// What was wrong.
        message: String,
    },
}

/// A JSON text message from the client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Dtmf {
        digits: String,
        #[serde(default)]
        destinations: Vec<String>,
    },
    SetAttributes {
        attributes: BTreeMap<String, String>,
    },
    SetMetadata {
        metadata: String,
    },
    Leave,
}

/// What the driver does after a client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Keep going; send this first if there is something.
    Continue(Option<ServerMessage>),
    /// Send this, close the socket, end the session.
    End(ServerMessage),
}

/// One WebSocket participant.
pub struct Session {
    participant: Option<Participant>,
    port: AudioPort,
    permissions: Permissions,
    client_rate: u32,
    up: FrameResampler,
    down: FrameResampler,
    client_frame: Vec<i16>,
    room_frame: Vec<i16>,
    out_bytes: Vec<u8>,
}

impl Session {
    /// A session for a participant that has joined, speaking `client_rate`
    /// (one of [`CLIENT_RATES`]) on the socket.
    pub fn new(
        participant: Participant,
        client_rate: u32,
        permissions: Permissions,
    ) -> Result<Session, ResampleError> {
        let port = participant.audio();
        let room_rate = u32::try_from(port.frame_len() * 50).unwrap_or(u32::MAX);
        let up = FrameResampler::new(client_rate, room_rate)?;
        let down = FrameResampler::new(room_rate, client_rate)?;
        let client_len = up.input_len();
        Ok(Session {
            room_frame: vec![0; port.frame_len()],
            client_frame: vec![0; client_len],
            out_bytes: vec![0; client_len * 2],
            participant: Some(participant),
            port,
            permissions,
            client_rate,
            up,
            down,
        })
    }

    /// Bytes in one binary frame: 20 ms of 16-bit mono at the client rate.
    pub fn frame_bytes(&self) -> usize {
        self.client_frame.len() * 2
    }

    /// This participant, while it is in the room.
    pub fn participant(&self) -> Option<&Participant> {
        self.participant.as_ref()
    }

    /// The `joined` message.
    pub fn joined(&self) -> Option<ServerMessage> {
        let p = self.participant.as_ref()?;
        Some(ServerMessage::Joined {
            room: p.room_name().to_string(),
            room_sid: p.room_sid().to_string(),
            participant: ParticipantJson::from(&p.info()),
            participants: p.others().iter().map(ParticipantJson::from).collect(),
            sample_rate: self.client_rate,
        })
    }

    /// The next room event; `None` once the participant is out of the room
    /// and every event was taken.
    pub async fn next_event(&mut self) -> Option<RoomEvent> {
        match self.participant.as_mut() {
            Some(p) => p.next_event().await,
            None => std::future::pending().await,
        }
    }

    /// Turns a room event into what the client is told. `End` for the
    /// participant's own disconnection.
    pub fn on_event(&mut self, event: Option<RoomEvent>) -> Step {
        let message = match event {
            Some(RoomEvent::ParticipantJoined(info)) => ServerMessage::ParticipantJoined {
                participant: ParticipantJson::from(&info),
            },
            Some(RoomEvent::ParticipantUpdated(info)) => ServerMessage::ParticipantUpdated {
                participant: ParticipantJson::from(&info),
            },
            Some(RoomEvent::ParticipantLeft { identity, reason }) => {
                ServerMessage::ParticipantLeft {
                    identity,
                    reason: reason.as_str(),
                }
            }
            Some(RoomEvent::Dtmf { from, code, digit }) => {
                ServerMessage::Dtmf { from, code, digit }
            }
            Some(RoomEvent::Disconnected { reason }) => return self.end(reason),
            // LiveKit clients' data packets have no form in this protocol.
            Some(
                RoomEvent::Data { .. }
                | RoomEvent::MuteRequested { .. }
                | RoomEvent::Rpc { .. }
                | RoomEvent::RpcReply { .. },
            ) => return Step::Continue(None),
            None => {
                // The stream ended without its last event (a full queue):
                // the handle still knows why.
                let reason = self
                    .participant
                    .as_ref()
                    .and_then(Participant::disconnected)
                    .unwrap_or(LeaveReason::Stuck);
                return self.end(reason);
            }
        };
        Step::Continue(Some(message))
    }

    fn end(&mut self, reason: LeaveReason) -> Step {
        self.participant = None;
        Step::End(ServerMessage::Disconnected {
            reason: reason.as_str(),
        })
    }

    /// A binary frame from the client: its next 20 ms of audio.
    pub fn on_binary(&mut self, data: &[u8]) -> Option<ServerMessage> {
        if !self.permissions.publish_audio {
            return Some(error(
                "this participant does not publish audio (it joined with audio=false, \
                 or its token has canPublish false); binary frame ignored",
            ));
        }
        if data.len() != self.frame_bytes() {
            return Some(error(format!(
                "binary frame of {} bytes; expected {} (20 ms of 16-bit little-endian \
                 mono PCM at {} Hz)",
                data.len(),
                self.frame_bytes(),
                self.client_rate
            )));
        }
        for (sample, bytes) in self.client_frame.iter_mut().zip(data.chunks_exact(2)) {
            *sample = i16::from_le_bytes([bytes[0], bytes[1]]);
        }
        self.follow_room_rate();
        self.up.process(&self.client_frame, &mut self.room_frame);
        self.port.push(&self.room_frame);
        None
    }

    /// Rebuilds the resamplers when the room's rate changed (members with
    /// other rates came or went).
    fn follow_room_rate(&mut self) {
        let len = self.port.frame_len();
        if len == self.room_frame.len() {
            return;
        }
        let room_rate = u32::try_from(len.saturating_mul(50)).unwrap_or(u32::MAX);
        if let (Ok(up), Ok(down)) = (
            FrameResampler::new(self.client_rate, room_rate),
            FrameResampler::new(room_rate, self.client_rate),
        ) {
            self.up = up;
            self.down = down;
            self.room_frame = vec![0; len];
        }
    }

    /// The next 20 ms for the client: what the room sent, or silence.
    pub fn next_frame(&mut self) -> &[u8] {
        self.follow_room_rate();
        let heard = self.port.pull(&mut self.room_frame);
        if !heard || !self.permissions.subscribe {
            self.room_frame.fill(0);
        }
        self.down.process(&self.room_frame, &mut self.client_frame);
        for (bytes, sample) in self
            .out_bytes
            .chunks_exact_mut(2)
            .zip(self.client_frame.iter())
        {
            bytes.copy_from_slice(&sample.to_le_bytes());
        }
        &self.out_bytes
    }

    /// A text frame from the client.
    pub fn on_text(&mut self, text: &str) -> Step {
        let message: ClientMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                return Step::Continue(Some(error(format!(
                    "invalid message ({e}); expected JSON with \"type\" one of \
                     dtmf, set_attributes, set_metadata, leave"
                ))))
            }
        };
        let Some(participant) = self.participant.as_ref() else {
            return Step::Continue(None);
        };
        match message {
            ClientMessage::Dtmf {
                digits,
                destinations,
            } => {
                if !self.permissions.publish_data {
                    return Step::Continue(Some(error(
                        "dtmf refused: the token does not grant canPublishData",
                    )));
                }
                let parsed = match parse_digits(&digits) {
                    Ok(parsed) => parsed,
                    Err(e) => return Step::Continue(Some(error(e))),
                };
                for digit in parsed {
                    participant.send_dtmf(
                        u32::from(digit.code),
                        &digit.as_char().to_string(),
                        &destinations,
                    );
                }
                Step::Continue(None)
            }
            ClientMessage::SetAttributes { attributes } => {
                if !self.permissions.update_own_metadata {
                    return Step::Continue(Some(error(
                        "set_attributes refused: the token does not grant canUpdateOwnMetadata",
                    )));
                }
                if attributes.keys().any(String::is_empty) {
                    return Step::Continue(Some(error("attribute keys must not be empty")));
                }
                participant.set_attributes(&attributes);
                Step::Continue(None)
            }
            ClientMessage::SetMetadata { metadata } => {
                if !self.permissions.update_own_metadata {
                    return Step::Continue(Some(error(
                        "set_metadata refused: the token does not grant canUpdateOwnMetadata",
                    )));
                }
                participant.set_metadata(&metadata);
                Step::Continue(None)
            }
            ClientMessage::Leave => self.end(LeaveReason::ClientInitiated),
        }
    }

    /// Leaves the room (the socket closed or failed).
    pub fn leave(&mut self) {
        self.participant = None;
    }
}

fn error(message: impl Into<String>) -> ServerMessage {
    ServerMessage::Error {
        message: message.into(),
    }
}

/// Every digit of a `dtmf` message, or why the message is refused (nothing
/// is sent then).
fn parse_digits(digits: &str) -> Result<Vec<DtmfDigit>, String> {
    if digits.is_empty() {
        return Err("dtmf refused: digits is empty".into());
    }
    digits
        .chars()
        .map(|c| {
            DtmfDigit::from_char(c)
                .ok_or_else(|| format!("dtmf refused: {c:?} is not a DTMF digit (0-9, *, #, A-D)"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::time::Instant;
    use switchboard_rooms::{AudioRate, JoinRequest, ParticipantKind, Rooms, RoomsConfig};

    const ALL: Permissions = Permissions {
        publish_audio: true,
        subscribe: true,
        publish_data: true,
        update_own_metadata: true,
    };

    fn rooms() -> Rooms {
        Rooms::new(RoomsConfig {
            sample_rate: 16_000,
            ..RoomsConfig::default()
        })
    }

    fn join(rooms: &Rooms, identity: &str) -> Participant {
        rooms
            .join(
                "r",
                JoinRequest {
                    identity: identity.into(),
                    name: String::new(),
                    metadata: String::new(),
                    attributes: BTreeMap::new(),
                    kind: ParticipantKind::WebSocket,
                    publishes_audio: true,
                    audio_rate: AudioRate::Configured,
                },
            )
            .unwrap()
    }

    fn events(p: &mut Participant) -> Vec<RoomEvent> {
        std::iter::from_fn(|| p.try_event()).collect()
    }

    fn error_text(m: Option<ServerMessage>) -> String {
        match m {
            Some(ServerMessage::Error { message }) => message,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn continued_error(step: Step) -> String {
        match step {
            Step::Continue(m) => error_text(m),
            other => panic!("expected Continue, got {other:?}"),
        }
    }

    #[test]
    fn wrong_frame_sizes_and_listen_only_audio_are_refused_with_the_reason() {
        let rooms = rooms();
        let mut s = Session::new(join(&rooms, "a"), 8_000, ALL).unwrap();
        assert_eq!(s.frame_bytes(), 320);
        let text = error_text(s.on_binary(&[0; 321]));
        assert!(text.contains("321 bytes; expected 320"), "{text}");
        assert!(text.contains("8000 Hz"), "{text}");
        assert_eq!(s.on_binary(&[0; 320]), None);
        let mut quiet = Session::new(
            join(&rooms, "b"),
            48_000,
            Permissions {
                publish_audio: false,
                ..ALL
            },
        )
        .unwrap();
        assert_eq!(quiet.frame_bytes(), 1920);
        assert!(error_text(quiet.on_binary(&[0; 1920])).contains("does not publish audio"));
    }

    #[test]
    fn audio_goes_into_the_room_and_the_mix_comes_back_at_the_client_rate() {
        let rooms = rooms();
        let mut a = Session::new(join(&rooms, "a"), 16_000, ALL).unwrap();
        let mut b = Session::new(join(&rooms, "b"), 16_000, ALL).unwrap();
        let frame: Vec<u8> = (0..320).flat_map(|_| 1000i16.to_le_bytes()).collect();
        let now = Instant::now();
        for _ in 0..4 {
            assert_eq!(a.on_binary(&frame), None);
            rooms.tick(now);
        }
        let heard = b.next_frame().to_vec();
        assert_eq!(heard.len(), 640);
        assert!(heard.chunks_exact(2).all(|s| s == 1000i16.to_le_bytes()));
        // `a` does not hear itself: silence, and still a full frame.
        let own = a.next_frame();
        assert_eq!(own.len(), 640);
        assert!(own.iter().all(|&byte| byte == 0));
    }

    #[test]
    fn dtmf_attributes_metadata_and_leave() {
        let rooms = rooms();
        let mut other = join(&rooms, "other");
        let mut s = Session::new(join(&rooms, "me"), 48_000, ALL).unwrap();
        events(&mut other);
        assert_eq!(
            s.on_text(r#"{"type":"dtmf","digits":"1#a"}"#),
            Step::Continue(None)
        );
        let codes: Vec<(u32, String)> = events(&mut other)
            .into_iter()
            .map(|e| match e {
                RoomEvent::Dtmf { from, code, digit } => {
                    assert_eq!(from, "me");
                    (code, digit)
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            codes,
            vec![(1, "1".into()), (11, "#".into()), (12, "A".into())]
        );
        assert!(
            continued_error(s.on_text(r#"{"type":"dtmf","digits":"12x"}"#))
                .contains("'x' is not a DTMF digit")
        );
        assert!(events(&mut other).is_empty(), "nothing of a refused string");
        assert!(continued_error(s.on_text(r#"{"type":"dtmf","digits":""}"#)).contains("empty"));
        assert_eq!(
            s.on_text(r#"{"type":"dtmf","digits":"5","destinations":["nobody"]}"#),
            Step::Continue(None)
        );
        assert!(events(&mut other).is_empty(), "only to the destinations");

        assert_eq!(
            s.on_text(r#"{"type":"set_attributes","attributes":{"k":"v"}}"#),
            Step::Continue(None)
        );
        assert_eq!(
            s.on_text(r#"{"type":"set_metadata","metadata":"m"}"#),
            Step::Continue(None)
        );
        let info = s.participant().unwrap().info();
        assert_eq!(info.attributes.get("k").map(String::as_str), Some("v"));
        assert_eq!(info.metadata, "m");
        assert_eq!(events(&mut other).len(), 2, "two updates seen");

        assert_eq!(
            s.on_text(r#"{"type":"leave"}"#),
            Step::End(ServerMessage::Disconnected {
                reason: "client_initiated"
            })
        );
        assert!(matches!(
            events(&mut other).as_slice(),
            [RoomEvent::ParticipantLeft { identity, reason: LeaveReason::ClientInitiated }] if identity == "me"
        ));
    }

    #[test]
    fn bad_json_and_missing_grants_get_precise_errors() {
        let rooms = rooms();
        let mut s = Session::new(
            join(&rooms, "me"),
            48_000,
            Permissions {
                publish_data: false,
                update_own_metadata: false,
                ..ALL
            },
        )
        .unwrap();
        assert!(continued_error(s.on_text("not json")).contains("invalid message"));
        assert!(continued_error(s.on_text(r#"{"type":"shout"}"#)).contains("unknown variant"));
        assert!(continued_error(s.on_text(r#"{"type":"set_metadata"}"#))
            .contains("missing field `metadata`"));
        assert!(
            continued_error(s.on_text(r#"{"type":"set_attributes","attributes":{"k":1}}"#))
                .contains("invalid type")
        );
        assert!(
            continued_error(s.on_text(r#"{"type":"dtmf","digits":"1"}"#))
                .contains("canPublishData")
        );
        assert!(
            continued_error(s.on_text(r#"{"type":"set_attributes","attributes":{"k":"v"}}"#))
                .contains("canUpdateOwnMetadata")
        );
        assert!(
            continued_error(s.on_text(r#"{"type":"set_metadata","metadata":"m"}"#))
                .contains("canUpdateOwnMetadata")
        );
        assert!(s.participant().unwrap().info().attributes.is_empty());
    }

    #[test]
    fn room_events_become_messages_and_removal_ends_the_session() {
        let rooms = rooms();
        let mut s = Session::new(join(&rooms, "me"), 48_000, ALL).unwrap();
        let other = join(&rooms, "other");
        let joined = match s.joined().unwrap() {
            ServerMessage::Joined {
                participant,
                participants,
                sample_rate,
                ..
            } => (participant.identity, participants.len(), sample_rate),
            other => panic!("{other:?}"),
        };
        assert_eq!(joined, ("me".to_string(), 1, 48_000));
        let event = s.participant.as_mut().unwrap().try_event();
        assert!(matches!(
            s.on_event(event),
            Step::Continue(Some(ServerMessage::ParticipantJoined { participant })) if participant.identity == "other"
        ));
        drop(other);
        let event = s.participant.as_mut().unwrap().try_event();
        assert_eq!(
            s.on_event(event),
            Step::Continue(Some(ServerMessage::ParticipantLeft {
                identity: "other".into(),
                reason: "client_initiated"
            }))
        );
        rooms.remove_participant("r", "me").unwrap();
        let event = s.participant.as_mut().unwrap().try_event();
        assert_eq!(
            s.on_event(event),
            Step::End(ServerMessage::Disconnected {
                reason: "participant_removed"
            })
        );
        assert!(s.participant().is_none());
    }
}

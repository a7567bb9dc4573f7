//! Embedded rooms and their participants: audio mixing, data events (DTMF),
//! attributes, and the events the gateway acts on (a participant removed, a
//! room deleted).
//!
//! [`Rooms`] is the registry, shared behind a cheap clone. A member joins
//! with [`Rooms::join`] and gets a [`Participant`]: its event stream, its
//! [`AudioPort`] and the calls that change what others see of it. Dropping
//! the handle leaves the room.
//!
//! Audio: every participant's endpoint (an RTP worker for a SIP call, a
//! WebSocket task) hands its 20 ms frames at the room rate to its port and
//! pulls the mix of everyone else from it. Two kinds of endpoint:
//! - paced ones ([`AudioPort::step`]: the media workers, which step every
//!   call once per tick and pull right after) drive the mix: when every
//!   paced member of a room has stepped, the room mixes at once, and they
//!   hear it in the same tick, with no prebuffer and no clock phase between;
//! - the others ([`AudioPort::push`]: WebSocket tasks, tones) run on their
//!   own clocks; a small ring per direction absorbs the difference (their
//!   audio enters the mix once two frames are buffered; a full ring drops
//!   its oldest frame).
//!
//! One clock ([`Rooms::spawn_clock`], or [`Rooms::tick`] driven by a test)
//! mixes every 20 ms the rooms that have no paced members, and a paced room
//! whose members stopped stepping (40 ms without a round).

mod directory;
mod ids;
mod ring;
mod tap;

pub use directory::{DirectoryFuture, RoomDirectory, RoomHome};
pub use ids::{new_sid, private_room_name, shared_room_of};
pub use tap::OpusTap;

use ring::FrameRing;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use switchboard_media::mix::Mixer;
use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};

/// Settings of the embedded rooms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomsConfig {
    /// The highest rate a room mixes at. Each room mixes at the highest
    /// rate its members declare ([`JoinRequest::audio_rate`]), up to this;
    /// endpoints convert at their edge.
    pub sample_rate: u32,
    /// Most rooms at once.
    pub max_rooms: usize,
    /// Most participants in one room.
    pub max_participants: usize,
    /// Frames each direction of a participant may hold (20 ms each).
    pub buffered_frames: usize,
    /// Frames a participant on its own clock (one that pushes rather than
    /// steps: a WebSocket client, a tone) must have buffered before its
    /// audio enters the mix (again after it ran dry), to ride out the two
    /// clocks' jitter. A paced member's frame is mixed as it comes.
    pub prebuffer_frames: usize,
    /// Events queued for one participant before it counts as stuck and is
    /// removed.
    pub event_queue: usize,
    /// How long a room created through the API lives without participants.
    /// Rooms created by a join close when their last participant leaves.
    pub empty_timeout: Duration,
}

impl Default for RoomsConfig {
    fn default() -> RoomsConfig {
        RoomsConfig {
            sample_rate: 48_000,
            max_rooms: 10_000,
            max_participants: 100,
            buffered_frames: 5,
            prebuffer_frames: 2,
            event_queue: 1024,
            empty_timeout: Duration::from_secs(300),
        }
    }
}

/// What kind of member a participant is (LiveKit's `ParticipantInfo.Kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParticipantKind {
    /// A phone call bridged by the gateway.
    Sip,
    /// An agent or test connected over the WebSocket endpoint.
    WebSocket,
    /// A voice bot switchboard streams a call to (Twilio or Telnyx media
    /// streams): switchboard is the WebSocket client.
    Stream,
    /// A LiveKit client SDK (an app) over WebRTC.
    WebRtc,
    /// A LiveKit agent (a token of kind `agent`) over WebRTC.
    Agent,
}

impl ParticipantKind {
    /// `sip`, `websocket`, `stream`, `webrtc` or `agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantKind::Sip => "sip",
            ParticipantKind::WebSocket => "websocket",
            ParticipantKind::Stream => "stream",
            ParticipantKind::WebRtc => "webrtc",
            ParticipantKind::Agent => "agent",
        }
    }
}

/// Why a participant left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaveReason {
    /// It left by itself (hung up, closed its socket).
    ClientInitiated,
    /// An administrator removed it.
    Removed,
    /// Another participant joined with the same identity.
    DuplicateIdentity,
    /// The room was deleted.
    RoomDeleted,
    /// It did not take its events and was disconnected.
    Stuck,
}

impl LeaveReason {
    /// The reason in words, after LiveKit's `DisconnectReason` names
    /// (`client_initiated`, `participant_removed`, `duplicate_identity`,
    /// `room_deleted`); `stuck` has no LiveKit counterpart.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::ClientInitiated => "client_initiated",
            LeaveReason::Removed => "participant_removed",
            LeaveReason::DuplicateIdentity => "duplicate_identity",
            LeaveReason::RoomDeleted => "room_deleted",
            LeaveReason::Stuck => "stuck",
        }
    }
}

/// What others see of a participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// `PA_…`.
    pub sid: String,
    /// Unique within the room.
    pub identity: String,
    /// Display name.
    pub name: String,
    /// Free-form metadata.
    pub metadata: String,
    /// Key-value attributes (`sip.callStatus` and friends).
    pub attributes: BTreeMap<String, String>,
    /// SIP, WebSocket…
    pub kind: ParticipantKind,
    /// Whether it sends audio into the room (a call is answered only when
    /// someone who can be heard is there).
    pub publishes_audio: bool,
    /// Its audio is muted: the room takes none of it (LiveKit's
    /// `TrackInfo.muted`).
    pub audio_muted: bool,
    /// When it joined.
    pub joined_at: SystemTime,
}

/// What a new participant starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// Unique within the room; a second join with it replaces the first.
    pub identity: String,
    /// Display name.
    pub name: String,
    /// Free-form metadata.
    pub metadata: String,
    /// Initial attributes.
    pub attributes: BTreeMap<String, String>,
    /// SIP, WebSocket…
    pub kind: ParticipantKind,
    /// Whether it sends audio.
    pub publishes_audio: bool,
    /// The rate its audio has; the room mixes at the rate its members
    /// need ([`AudioRate`]).
    pub audio_rate: AudioRate,
}

/// The PCM rate a member's audio has, from which its room chooses the rate
/// it mixes at: the highest of its fixed-rate members (a room of phones
/// needs no resampling), or of its adapting members when it has no other,
/// at most [`RoomsConfig::sample_rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AudioRate {
    /// Not known: the configured (highest) rate.
    #[default]
    Configured,
    /// This rate and no other (its codec's: 8000 for G.711, 16000 for
    /// G.722; a WebSocket client's `rate`).
    Fixed(u32),
    /// Any rate up to this one (an Opus call): it follows the room's
    /// fixed-rate members down rather than raise the room.
    UpTo(u32),
}

/// A room as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// `RM_…`.
    pub sid: String,
    /// Its name.
    pub name: String,
    /// Free-form metadata.
    pub metadata: String,
    /// Participants now.
    pub num_participants: usize,
    /// When it was created.
    pub created_at: SystemTime,
    /// Most participants it takes.
    pub max_participants: usize,
    /// How long it lives without participants (rooms created through the
    /// API; a room created by a join closes with its last participant).
    pub empty_timeout: Duration,
    /// The agents it asked for when it was created.
    pub agents: Vec<AgentRequest>,
}

/// An agent a room asks for when it is created (LiveKit's
/// `RoomAgentDispatch`: from a SIP dispatch rule's or a token's room
/// configuration); an empty name is LiveKit's default dispatch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentRequest {
    /// The agent's name (`agent_name` of its workers).
    pub agent_name: String,
    /// Handed to the agent's job.
    pub metadata: String,
}

/// What an administrator may ask of a room created ahead of its
/// participants (the API's CreateRoom). Zero means the process's setting;
/// a value above it is capped there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomOptions {
    /// Free-form metadata.
    pub metadata: String,
    /// How long the room lives without participants.
    pub empty_timeout: Duration,
    /// Most participants.
    pub max_participants: usize,
    /// Agents to dispatch to it.
    pub agents: Vec<AgentRequest>,
}

/// An administrator's change to a participant (the API's
/// UpdateParticipant): `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParticipantUpdate {
    /// A new display name.
    pub name: Option<String>,
    /// New metadata.
    pub metadata: Option<String>,
    /// Attribute changes; an empty value deletes the key.
    pub attributes: BTreeMap<String, String>,
}

/// Something that happened in a participant's room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    /// Another participant joined.
    ParticipantJoined(ParticipantInfo),
    /// A participant's name, metadata, attributes or audio changed (its own
    /// changes included, so every member sees one order of changes).
    ParticipantUpdated(ParticipantInfo),
    /// Another participant left.
    ParticipantLeft {
        /// Who.
        identity: String,
        /// Why.
        reason: LeaveReason,
    },
    /// DTMF sent by another participant (LiveKit's `SipDTMF`).
    Dtmf {
        /// The sender's identity.
        from: String,
        /// The RFC 4733 event code (0–15).
        code: u32,
        /// The digit as text ("0"–"9", "*", "#", "A"–"D").
        digit: String,
    },
    /// An administrator muted or unmuted this participant's audio
    /// (RoomService's MutePublishedTrack); the room already takes none of
    /// it while muted. Its endpoint tells its client.
    MuteRequested {
        /// Muted (true) or unmuted.
        muted: bool,
    },
    /// A data packet from another participant, or from the server when
    /// `from` is empty (LiveKit's `DataPacket`, encoded: rooms carry it
    /// without reading it).
    Data {
        /// The sender's identity; empty for the server (RoomService's
        /// SendData).
        from: String,
        /// The encoded packet.
        payload: Arc<[u8]>,
        /// Whether it goes on the reliable channel (else the lossy one).
        reliable: bool,
    },
    /// A remote procedure call to this participant (LiveKit's RPC: the
    /// methods a SIP participant serves, `lk.sip.*`).
    Rpc {
        /// The caller's identity.
        from: String,
        /// The request's ID, to answer with.
        id: String,
        /// The method.
        method: String,
        /// Its payload (JSON for the `lk.sip.*` methods).
        payload: String,
    },
    /// The answer to an RPC this participant made.
    RpcReply {
        /// Who answered.
        from: String,
        /// The request's ID.
        id: String,
        /// The payload, or an error code and message (LiveKit's RpcError).
        result: Result<String, RpcFailure>,
    },
    /// This participant was taken out of the room; nothing follows.
    Disconnected {
        /// Why.
        reason: LeaveReason,
    },
}

/// An RPC that failed at its destination (LiveKit's `RpcError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcFailure {
    /// LiveKit's code: 1400 unsupported method, 1500 application error…
    pub code: u32,
    /// Why, in words.
    pub message: String,
}

/// Why a room operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    /// The room name or identity is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// The process holds `max_rooms` rooms.
    #[error("too many rooms (limit {0})")]
    TooManyRooms(usize),
    /// The room holds `max_participants` participants.
    #[error("room {room:?} is full (limit {limit})")]
    RoomFull {
        /// The room.
        room: String,
        /// The limit.
        limit: usize,
    },
    /// No such room.
    #[error("room {0:?} does not exist")]
    NoSuchRoom(String),
    /// No such participant.
    #[error("participant {identity:?} is not in room {room:?}")]
    NoSuchParticipant {
        /// The room.
        room: String,
        /// The identity.
        identity: String,
    },
    /// The room already exists (explicit creation only).
    #[error("room {0:?} already exists")]
    RoomExists(String),
    /// Where the room lives cannot be told now (the replicas' directory
    /// did not answer).
    #[error("the room directory is unavailable: {0}")]
    Unavailable(String),
}

/// A room's life as webhooks tell it (LiveKit's `room_started`,
/// `participant_joined`, `participant_left`, `room_finished`), for whoever
/// subscribed with [`Rooms::lifecycle`].
#[derive(Debug, Clone, PartialEq)]
pub enum Lifecycle {
    /// A room was created (by the API or by its first participant).
    RoomStarted(RoomInfo),
    /// A room was closed or deleted.
    RoomFinished(RoomInfo),
    /// Someone joined.
    ParticipantJoined {
        /// The room, with its new participant count.
        room: RoomInfo,
        /// Who.
        participant: ParticipantInfo,
    },
    /// Someone left, with the attributes they had last (a call's
    /// `sip.callStatus` and `sip.disconnectReason`).
    ParticipantLeft {
        /// The room, with its new participant count.
        room: RoomInfo,
        /// Who.
        participant: ParticipantInfo,
        /// Why.
        reason: LeaveReason,
    },
}

/// How many lifecycle events a slow subscriber may fall behind before it
/// misses some (it is told how many).
const LIFECYCLE_BACKLOG: usize = 4096;

/// The registry of rooms. Clones share it.
#[derive(Clone)]
pub struct Rooms {
    inner: Arc<Registry>,
}

struct Registry {
    config: RoomsConfig,
    /// Samples per frame at the configured (highest) rate.
    frame_len: usize,
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    /// Lifecycle events; sending costs nothing much without subscribers.
    lifecycle: broadcast::Sender<Lifecycle>,
}

impl Registry {
    /// Sends the event `make` builds, only when someone listens: with
    /// webhooks off, a join or a leave clones nothing for it.
    fn emit(&self, make: impl FnOnce() -> Lifecycle) {
        if self.lifecycle.receiver_count() > 0 {
            // A subscriber gone in between is not an error either.
            let _ = self.lifecycle.send(make());
        }
    }
}

struct Room {
    sid: String,
    name: String,
    created_at: SystemTime,
    /// Created through the API: outlives its participants until
    /// `empty_timeout`.
    explicit: bool,
    max_participants: usize,
    empty_timeout: Duration,
    agents: Vec<AgentRequest>,
    state: Mutex<RoomState>,
}

struct RoomState {
    metadata: String,
    members: Vec<Member>,
    deleted: bool,
    empty_since: Option<Instant>,
    /// Samples per frame at the rate the room mixes at now.
    frame_len: usize,
    mixer: Mixer,
    inputs: Vec<i16>,
    active: Vec<bool>,
    outputs: Vec<i16>,
    /// Frames mixed because every paced member had stepped.
    rounds: u64,
    /// `rounds` when the room's clock last looked.
    rounds_at_clock: u64,
    /// Clock ticks in a row that saw no round of a paced room.
    quiet_clock_ticks: u8,
    /// Paced members that have not stepped since the last round: the room
    /// mixes when none is left (kept by `step` and `reindex`, so a step
    /// costs the same in a room of 2 as of 100).
    waiting_steps: usize,
}

struct Member {
    slot: Arc<Slot>,
    audio_rate: AudioRate,
    events: mpsc::Sender<RoomEvent>,
    /// Its endpoint steps on a steady clock ([`AudioPort::step`]): the room
    /// mixes when such members have all stepped, not on its own clock.
    paced: bool,
    /// Steps it made that no round has used yet.
    steps_ahead: u8,
    /// Listeners that take its audio on its own, Opus-encoded
    /// ([`Participant::tap_opus`]).
    opus_taps: tap::OpusFanout,
}

/// How many steps a paced member may run ahead of the slowest one; more
/// are forgotten (its ring keeps their audio, up to its capacity).
const MAX_STEPS_AHEAD: u8 = 4;

/// Clock ticks without a round after which the clock mixes a paced room
/// itself (a paced member stopped stepping): 40 ms, so that a worker's
/// tick that comes a little after the clock's does not make two mixes.
const QUIET_TICKS_BEFORE_CLOCK: u8 = 2;

/// One participant's shared state: what others see, and its audio rings.
struct Slot {
    info: Mutex<ParticipantInfo>,
    /// Samples per frame at the room's rate now (set under the room's
    /// lock; read lock-free by the endpoint every frame).
    frame_len: AtomicUsize,
    audio: Mutex<SlotAudio>,
    /// Its place in the room's member list (kept by `reindex`), so that a
    /// step finds its member without a scan.
    member_index: AtomicUsize,
    gone: AtomicBool,
    left_reason: Mutex<Option<LeaveReason>>,
}

struct SlotAudio {
    /// From the participant, waiting for the mixer.
    inbound: FrameRing,
    /// Muted: what it pushes is dropped.
    muted: bool,
    /// The mix for the participant, waiting for its endpoint.
    outbound: FrameRing,
    /// Its audio is in the mix (the prebuffer was reached).
    playing: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a room lock leaves data that is still
    // consistent (every update is a single assignment or push), so a
    // poisoned lock is used rather than spreading the panic.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Rooms {
    /// An empty registry.
    pub fn new(config: RoomsConfig) -> Rooms {
        let frame_len = (config.sample_rate / 50) as usize;
        Rooms {
            inner: Arc::new(Registry {
                config,
                frame_len,
                rooms: Mutex::new(HashMap::new()),
                lifecycle: broadcast::channel(LIFECYCLE_BACKLOG).0,
            }),
        }
    }

    /// Subscribes to every room's lifecycle, from now on.
    pub fn lifecycle(&self) -> broadcast::Receiver<Lifecycle> {
        self.inner.lifecycle.subscribe()
    }

    /// The settings.
    pub fn config(&self) -> &RoomsConfig {
        &self.inner.config
    }

    /// Samples in one 20 ms frame at the highest room rate (a room of
    /// narrower members uses shorter frames: [`AudioPort::frame_len`]).
    pub fn frame_len(&self) -> usize {
        self.inner.frame_len
    }

    /// Creates a room ahead of any participant (the API's CreateRoom).
    pub fn create_room(&self, name: &str, metadata: &str) -> Result<RoomInfo, RoomError> {
        self.create_room_with(
            name,
            RoomOptions {
                metadata: metadata.to_string(),
                ..RoomOptions::default()
            },
        )
    }

    /// Creates a room ahead of any participant with its own limits (capped
    /// by the process's).
    pub fn create_room_with(
        &self,
        name: &str,
        options: RoomOptions,
    ) -> Result<RoomInfo, RoomError> {
        if name.is_empty() {
            return Err(RoomError::Empty("room name"));
        }
        let mut rooms = lock(&self.inner.rooms);
        if rooms.contains_key(name) {
            return Err(RoomError::RoomExists(name.to_string()));
        }
        if rooms.len() >= self.inner.config.max_rooms {
            return Err(RoomError::TooManyRooms(self.inner.config.max_rooms));
        }
        let room = self.new_room(name, &options, true);
        let info = room.info();
        rooms.insert(name.to_string(), room);
        info!(room = name, sid = %info.sid, "room created");
        self.inner.emit(|| Lifecycle::RoomStarted(info.clone()));
        Ok(info)
    }

    fn new_room(&self, name: &str, options: &RoomOptions, explicit: bool) -> Arc<Room> {
        let config = &self.inner.config;
        let max_participants = match options.max_participants {
            0 => config.max_participants,
            n => n.min(config.max_participants),
        };
        let empty_timeout = if options.empty_timeout.is_zero() {
            config.empty_timeout
        } else {
            options.empty_timeout.min(config.empty_timeout)
        };
        Arc::new(Room {
            sid: new_sid("RM_"),
            name: name.to_string(),
            created_at: SystemTime::now(),
            explicit,
            max_participants,
            empty_timeout,
            agents: options.agents.clone(),
            state: Mutex::new(RoomState {
                metadata: options.metadata.clone(),
                members: Vec::new(),
                deleted: false,
                empty_since: Some(Instant::now()),
                frame_len: self.inner.frame_len,
                mixer: Mixer::new(self.inner.frame_len),
                inputs: Vec::new(),
                active: Vec::new(),
                outputs: Vec::new(),
                rounds: 0,
                rounds_at_clock: 0,
                quiet_clock_ticks: 0,
                waiting_steps: 0,
            }),
        })
    }

    /// Every room.
    pub fn list_rooms(&self) -> Vec<RoomInfo> {
        let rooms: Vec<Arc<Room>> = lock(&self.inner.rooms).values().cloned().collect();
        let mut infos: Vec<RoomInfo> = rooms.iter().map(|r| r.info()).collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// One room.
    pub fn room(&self, name: &str) -> Option<RoomInfo> {
        let room = lock(&self.inner.rooms).get(name).cloned();
        room.map(|r| r.info())
    }

    /// Deletes a room: every participant gets [`RoomEvent::Disconnected`]
    /// with [`LeaveReason::RoomDeleted`].
    pub fn delete_room(&self, name: &str) -> Result<(), RoomError> {
        let room = lock(&self.inner.rooms)
            .remove(name)
            .ok_or_else(|| RoomError::NoSuchRoom(name.to_string()))?;
        let mut state = lock(&room.state);
        state.deleted = true;
        let members: Vec<Member> = state.members.drain(..).collect();
        for member in members {
            disconnect(&member, LeaveReason::RoomDeleted);
            self.inner.emit(|| Lifecycle::ParticipantLeft {
                room: room.info_with(&state),
                participant: lock(&member.slot.info).clone(),
                reason: LeaveReason::RoomDeleted,
            });
        }
        info!(room = name, sid = %room.sid, "room deleted");
        self.inner
            .emit(|| Lifecycle::RoomFinished(room.info_with(&state)));
        Ok(())
    }

    /// Joins `room` (created on demand). A participant already there with
    /// the same identity is disconnected with
    /// [`LeaveReason::DuplicateIdentity`].
    pub fn join(&self, room: &str, request: JoinRequest) -> Result<Participant, RoomError> {
        self.join_with(room, request, &RoomOptions::default())
    }

    /// [`Rooms::join`], creating the room with `options` (its agents,
    /// limits and metadata) when this join is the one that creates it; an
    /// existing room keeps its own.
    pub fn join_with(
        &self,
        room: &str,
        request: JoinRequest,
        options: &RoomOptions,
    ) -> Result<Participant, RoomError> {
        if room.is_empty() {
            return Err(RoomError::Empty("room name"));
        }
        if request.identity.is_empty() {
            return Err(RoomError::Empty("identity"));
        }
        let config = &self.inner.config;
        loop {
            let shared = {
                let mut rooms = lock(&self.inner.rooms);
                match rooms.get(room) {
                    Some(r) => r.clone(),
                    None => {
                        if rooms.len() >= config.max_rooms {
                            return Err(RoomError::TooManyRooms(config.max_rooms));
                        }
                        let r = self.new_room(room, options, false);
                        rooms.insert(room.to_string(), r.clone());
                        info!(room, sid = %r.sid, "room created on join");
                        self.inner.emit(|| Lifecycle::RoomStarted(r.info()));
                        r
                    }
                }
            };
            let mut state = lock(&shared.state);
            if state.deleted {
                // Deleted between the look-up and the lock: look again.
                continue;
            }
            if let Some(pos) = state
                .members
                .iter()
                .position(|m| lock(&m.slot.info).identity == request.identity)
            {
                let old = remove_member(&mut state, pos);
                disconnect(&old, LeaveReason::DuplicateIdentity);
                self.inner.emit(|| Lifecycle::ParticipantLeft {
                    room: shared.info_with(&state),
                    participant: lock(&old.slot.info).clone(),
                    reason: LeaveReason::DuplicateIdentity,
                });
                broadcast(
                    &mut state,
                    RoomEvent::ParticipantLeft {
                        identity: request.identity.clone(),
                        reason: LeaveReason::DuplicateIdentity,
                    },
                    None,
                );
            }
            if state.members.len() >= shared.max_participants {
                return Err(RoomError::RoomFull {
                    room: room.to_string(),
                    limit: shared.max_participants,
                });
            }
            let info = ParticipantInfo {
                sid: new_sid("PA_"),
                identity: request.identity,
                name: request.name,
                metadata: request.metadata,
                attributes: request.attributes,
                kind: request.kind,
                publishes_audio: request.publishes_audio,
                audio_muted: false,
                joined_at: SystemTime::now(),
            };
            let slot = Arc::new(Slot {
                info: Mutex::new(info.clone()),
                frame_len: AtomicUsize::new(state.frame_len),
                audio: Mutex::new(SlotAudio {
                    muted: false,
                    inbound: FrameRing::new(state.frame_len, config.buffered_frames),
                    outbound: FrameRing::new(state.frame_len, config.buffered_frames),
                    playing: false,
                }),
                member_index: AtomicUsize::new(state.members.len()),
                gone: AtomicBool::new(false),
                left_reason: Mutex::new(None),
            });
            let (tx, rx) = mpsc::channel(config.event_queue.max(1));
            broadcast(&mut state, RoomEvent::ParticipantJoined(info.clone()), None);
            state.members.push(Member {
                slot: slot.clone(),
                audio_rate: request.audio_rate,
                events: tx,
                paced: false,
                steps_ahead: 0,
                opus_taps: tap::OpusFanout::default(),
            });
            reindex(&mut state);
            state.empty_since = None;
            retune(&mut state, config);
            info!(room, identity = %info.identity, sid = %info.sid, kind = ?info.kind, "participant joined");
            self.inner.emit(|| Lifecycle::ParticipantJoined {
                room: shared.info_with(&state),
                participant: info.clone(),
            });
            return Ok(Participant {
                registry: self.inner.clone(),
                room: shared.clone(),
                slot,
                events: rx,
            });
        }
    }

    /// Mutes or unmutes a participant's audio (RoomService's
    /// MutePublishedTrack): the room takes none of it while muted, every
    /// member sees it, and the participant's endpoint is told.
    pub fn mute_participant(
        &self,
        room: &str,
        identity: &str,
        muted: bool,
    ) -> Result<ParticipantInfo, RoomError> {
        let shared = self.find(room)?;
        let mut state = lock(&shared.state);
        let slot = member_slot(&state, room, identity)?;
        set_muted(&slot, muted);
        let info = update_info(&mut state, &slot, |info| info.audio_muted = muted);
        if let Some(member) = state.members.iter().find(|m| Arc::ptr_eq(&m.slot, &slot)) {
            let _ = member.events.try_send(RoomEvent::MuteRequested { muted });
        }
        Ok(info)
    }

    /// Sends a data packet from the server (RoomService's SendData) to a
    /// room's participants, or only to `destinations` when given.
    pub fn send_data(
        &self,
        room: &str,
        payload: Arc<[u8]>,
        reliable: bool,
        destinations: &[String],
    ) -> Result<(), RoomError> {
        let shared = self.find(room)?;
        let mut state = lock(&shared.state);
        let event = RoomEvent::Data {
            from: String::new(),
            payload,
            reliable,
        };
        deliver(&mut state, event, None, destinations);
        Ok(())
    }

    /// The participants of a room.
    pub fn participants(&self, room: &str) -> Result<Vec<ParticipantInfo>, RoomError> {
        let shared = self.find(room)?;
        let state = lock(&shared.state);
        Ok(state
            .members
            .iter()
            .map(|m| lock(&m.slot.info).clone())
            .collect())
    }

    /// One participant of a room.
    pub fn participant(&self, room: &str, identity: &str) -> Result<ParticipantInfo, RoomError> {
        self.participants(room)?
            .into_iter()
            .find(|p| p.identity == identity)
            .ok_or_else(|| RoomError::NoSuchParticipant {
                room: room.to_string(),
                identity: identity.to_string(),
            })
    }

    /// Takes a participant out (the API's RemoveParticipant): it gets
    /// [`RoomEvent::Disconnected`] with [`LeaveReason::Removed`], the
    /// others [`RoomEvent::ParticipantLeft`].
    pub fn remove_participant(&self, room: &str, identity: &str) -> Result<(), RoomError> {
        let shared = self.find(room)?;
        let mut state = lock(&shared.state);
        let pos = state
            .members
            .iter()
            .position(|m| lock(&m.slot.info).identity == identity)
            .ok_or_else(|| RoomError::NoSuchParticipant {
                room: room.to_string(),
                identity: identity.to_string(),
            })?;
        let member = remove_member(&mut state, pos);
        disconnect(&member, LeaveReason::Removed);
        self.inner.emit(|| Lifecycle::ParticipantLeft {
            room: shared.info_with(&state),
            participant: lock(&member.slot.info).clone(),
            reason: LeaveReason::Removed,
        });
        broadcast(
            &mut state,
            RoomEvent::ParticipantLeft {
                identity: identity.to_string(),
                reason: LeaveReason::Removed,
            },
            None,
        );
        info!(room, identity, "participant removed");
        self.after_leave(&shared, &mut state);
        Ok(())
    }

    /// Changes a room's metadata. Members get no event for it: rooms carry
    /// no room-level events yet.
    pub fn set_room_metadata(&self, room: &str, metadata: &str) -> Result<RoomInfo, RoomError> {
        let shared = self.find(room)?;
        lock(&shared.state).metadata = metadata.to_string();
        Ok(shared.info())
    }

    /// Changes a participant's name, metadata and attributes as an
    /// administrator (the API's UpdateParticipant); every member sees one
    /// [`RoomEvent::ParticipantUpdated`].
    pub fn update_participant(
        &self,
        room: &str,
        identity: &str,
        update: &ParticipantUpdate,
    ) -> Result<ParticipantInfo, RoomError> {
        let shared = self.find(room)?;
        let mut state = lock(&shared.state);
        let slot = member_slot(&state, room, identity)?;
        Ok(update_info(&mut state, &slot, |info| {
            if let Some(name) = &update.name {
                info.name = name.clone();
            }
            if let Some(metadata) = &update.metadata {
                info.metadata = metadata.clone();
            }
            apply_attributes(&mut info.attributes, &update.attributes);
        }))
    }

    /// Changes another participant's attributes as an administrator (the
    /// API's UpdateParticipant); an empty value deletes the key.
    pub fn update_attributes(
        &self,
        room: &str,
        identity: &str,
        changes: &BTreeMap<String, String>,
    ) -> Result<ParticipantInfo, RoomError> {
        let shared = self.find(room)?;
        let mut state = lock(&shared.state);
        let slot = member_slot(&state, room, identity)?;
        Ok(update_info(&mut state, &slot, |info| {
            apply_attributes(&mut info.attributes, changes)
        }))
    }

    fn find(&self, room: &str) -> Result<Arc<Room>, RoomError> {
        lock(&self.inner.rooms)
            .get(room)
            .cloned()
            .ok_or_else(|| RoomError::NoSuchRoom(room.to_string()))
    }

    fn after_leave(&self, room: &Arc<Room>, state: &mut RoomState) {
        retune(state, &self.inner.config);
        if state.members.is_empty() {
            state.empty_since = Some(Instant::now());
            if !room.explicit {
                close_if_still_empty(&self.inner, room, state);
            }
        }
    }

    /// Mixes one 20 ms frame in every room and closes API-created rooms
    /// that stayed empty past `empty_timeout`.
    pub fn tick(&self, now: Instant) {
        let rooms: Vec<Arc<Room>> = lock(&self.inner.rooms).values().cloned().collect();
        for room in rooms {
            let mut state = lock(&room.state);
            if state.members.is_empty() {
                let expired = state
                    .empty_since
                    .is_some_and(|since| now.duration_since(since) >= room.empty_timeout);
                if expired {
                    close_if_still_empty(&self.inner, &room, &mut state);
                }
                continue;
            }
            if state.members.iter().any(|m| m.paced) && !clock_must_cover(&mut state) {
                continue;
            }
            mix(&mut state, self.inner.config.prebuffer_frames);
        }
    }

    /// Runs [`Rooms::tick`] every 20 ms on the current tokio runtime until
    /// the returned handle is aborted.
    pub fn spawn_clock(&self) -> tokio::task::JoinHandle<()> {
        let rooms = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(20));
            // A late tick is made up at once: each tick is one frame of audio.
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            loop {
                interval.tick().await;
                rooms.tick(Instant::now());
            }
        })
    }
}

impl Room {
    fn info(&self) -> RoomInfo {
        let state = lock(&self.state);
        self.info_with(&state)
    }

    /// [`Room::info`] for a caller that holds the state's lock already.
    fn info_with(&self, state: &RoomState) -> RoomInfo {
        RoomInfo {
            sid: self.sid.clone(),
            name: self.name.clone(),
            metadata: state.metadata.clone(),
            num_participants: state.members.len(),
            created_at: self.created_at,
            max_participants: self.max_participants,
            empty_timeout: self.empty_timeout,
            agents: self.agents.clone(),
        }
    }
}

fn close_if_still_empty(registry: &Registry, room: &Arc<Room>, state: &mut RoomState) {
    let mut rooms = lock(&registry.rooms);
    // Only this room object: a new room of the same name may exist already.
    if rooms.get(&room.name).is_some_and(|r| Arc::ptr_eq(r, room)) {
        rooms.remove(&room.name);
        state.deleted = true;
        info!(room = %room.name, sid = %room.sid, "empty room closed");
        registry.emit(|| Lifecycle::RoomFinished(room.info_with(state)));
    }
}

fn member_slot(state: &RoomState, room: &str, identity: &str) -> Result<Arc<Slot>, RoomError> {
    state
        .members
        .iter()
        .find(|m| lock(&m.slot.info).identity == identity)
        .map(|m| m.slot.clone())
        .ok_or_else(|| RoomError::NoSuchParticipant {
            room: room.to_string(),
            identity: identity.to_string(),
        })
}

/// Sets the room's rate to the highest its members need (at most the
/// configured rate, at least 8 kHz) and sizes the mix buffers. A change of
/// rate starts every member's rings afresh at the new frame length: a
/// frame or two of audio is lost then, on a join or a leave.
fn retune(state: &mut RoomState, config: &RoomsConfig) {
    const NARROWEST: u32 = 8_000;
    let cap = config.sample_rate.max(NARROWEST);
    let (mut fixed, mut adapting) = (None, None);
    for member in &state.members {
        let (rate, bound) = match member.audio_rate {
            AudioRate::Configured => (cap, &mut fixed),
            AudioRate::Fixed(rate) => (rate, &mut fixed),
            AudioRate::UpTo(rate) => (rate, &mut adapting),
        };
        *bound = (*bound).max(Some(rate.clamp(NARROWEST, cap)));
    }
    let rate = fixed.or(adapting).unwrap_or(cap);
    let frame_len = (rate / 50) as usize;
    if frame_len != state.frame_len {
        state.frame_len = frame_len;
        state.mixer = Mixer::new(frame_len);
        for member in &mut state.members {
            let mut audio = lock(&member.slot.audio);
            audio.inbound = FrameRing::new(frame_len, config.buffered_frames);
            audio.outbound = FrameRing::new(frame_len, config.buffered_frames);
            audio.playing = false;
            member.slot.frame_len.store(frame_len, Ordering::Release);
        }
    }
    resize_scratch(state);
}

fn resize_scratch(state: &mut RoomState) {
    let frame_len = state.frame_len;
    let n = state.members.len();
    state.inputs.resize(n * frame_len, 0);
    state.outputs.resize(n * frame_len, 0);
    state.active.resize(n, false);
}

/// Whether the clock mixes a paced room this tick: only when its members
/// stopped making rounds.
fn clock_must_cover(state: &mut RoomState) -> bool {
    if state.rounds != state.rounds_at_clock {
        state.rounds_at_clock = state.rounds;
        state.quiet_clock_ticks = 0;
        return false;
    }
    state.quiet_clock_ticks = state.quiet_clock_ticks.saturating_add(1);
    state.quiet_clock_ticks >= QUIET_TICKS_BEFORE_CLOCK
}

/// Records a step of the member on `slot`; once every paced member has
/// stepped, mixes one frame at once (a round).
fn step(state: &mut RoomState, slot: &Arc<Slot>, prebuffer: usize) {
    let at = slot.member_index.load(Ordering::Relaxed);
    let Some(member) = state
        .members
        .get_mut(at)
        .filter(|m| Arc::ptr_eq(&m.slot, slot))
    else {
        // It left the room.
        return;
    };
    // A member's first step makes it paced, and ahead by one: it was not
    // waited for before and is not now.
    let waited_for = member.paced && member.steps_ahead == 0;
    member.paced = true;
    member.steps_ahead = member.steps_ahead.saturating_add(1).min(MAX_STEPS_AHEAD);
    if waited_for {
        state.waiting_steps = state.waiting_steps.saturating_sub(1);
    }
    if state.waiting_steps > 0 {
        return;
    }
    for member in state.members.iter_mut().filter(|m| m.paced) {
        member.steps_ahead = member.steps_ahead.saturating_sub(1);
        if member.steps_ahead == 0 {
            state.waiting_steps += 1;
        }
    }
    state.rounds = state.rounds.wrapping_add(1);
    mix(state, prebuffer);
}

/// Takes a member out of the room's list, keeping the others' places and
/// the count of paced members a round waits for.
fn remove_member(state: &mut RoomState, at: usize) -> Member {
    let member = state.members.remove(at);
    reindex(state);
    member
}

/// Recomputes each member's place and the paced members a round waits for,
/// after the member list changed (a join or a leave: rare next to steps).
fn reindex(state: &mut RoomState) {
    for (at, member) in state.members.iter().enumerate() {
        member.slot.member_index.store(at, Ordering::Relaxed);
    }
    state.waiting_steps = state
        .members
        .iter()
        .filter(|m| m.paced && m.steps_ahead == 0)
        .count();
}

/// One frame of mix-minus: every participant hears the sum of the others.
/// A paced member's frame is mixed as soon as it is there; others' wait
/// for `prebuffer` frames, since their endpoints run on other clocks.
fn mix(state: &mut RoomState, prebuffer: usize) {
    let frame_len = state.frame_len;
    let rate = u32::try_from(frame_len * 50).unwrap_or(u32::MAX);
    let RoomState {
        members,
        mixer,
        inputs,
        active,
        outputs,
        ..
    } = state;
    let mut anyone = false;
    for (i, member) in members.iter_mut().enumerate() {
        let mut audio = lock(&member.slot.audio);
        let wanted = if member.paced { 1 } else { prebuffer.max(1) };
        if !audio.playing && audio.inbound.len() >= wanted {
            audio.playing = true;
        }
        let dest = &mut inputs[i * frame_len..(i + 1) * frame_len];
        active[i] = audio.playing && audio.inbound.pop_into(dest);
        if audio.playing && audio.inbound.len() == 0 {
            // Ran dry: wait for the prebuffer again rather than stutter.
            audio.playing = false;
        }
        drop(audio);
        if active[i] && !member.opus_taps.is_empty() {
            member.opus_taps.feed(dest, rate);
        }
        anyone |= active[i];
    }
    if members.len() < 2 || !anyone {
        return;
    }
    mixer.mix_minus_flat(inputs, active, outputs);
    for (i, member) in members.iter().enumerate() {
        let mut audio = lock(&member.slot.audio);
        audio
            .outbound
            .push(&outputs[i * frame_len..(i + 1) * frame_len]);
    }
}

/// Sends an event to every member except `except`; a member whose queue is
/// full is stuck and is disconnected rather than silently missing events.
fn broadcast(state: &mut RoomState, event: RoomEvent, except: Option<&Arc<Slot>>) {
    let mut stuck = Vec::new();
    for (i, member) in state.members.iter().enumerate() {
        if except.is_some_and(|e| Arc::ptr_eq(e, &member.slot)) {
            continue;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = member.events.try_send(event.clone()) {
            stuck.push(i);
        }
    }
    for i in stuck.into_iter().rev() {
        let member = remove_member(state, i);
        let identity = lock(&member.slot.info).identity.clone();
        warn!(identity = %identity, "participant does not take its events; disconnected");
        disconnect(&member, LeaveReason::Stuck);
    }
}

/// Mutes a slot's audio at the door: what it pushes is dropped and what it
/// had buffered is forgotten.
fn set_muted(slot: &Slot, muted: bool) {
    let mut audio = lock(&slot.audio);
    audio.muted = muted;
    if muted {
        audio.inbound.clear();
        audio.playing = false;
    }
}

/// Sends an event to every member but `except`, or only to the members
/// whose identity is in `destinations` when it names any. A destination's
/// full queue drops the event for it (data is not worth a disconnection).
fn deliver(
    state: &mut RoomState,
    event: RoomEvent,
    except: Option<&Arc<Slot>>,
    destinations: &[String],
) {
    if destinations.is_empty() {
        broadcast(state, event, except);
        return;
    }
    for member in &state.members {
        if except.is_some_and(|e| Arc::ptr_eq(e, &member.slot)) {
            continue;
        }
        if destinations.contains(&lock(&member.slot.info).identity) {
            let _ = member.events.try_send(event.clone());
        }
    }
}

/// Marks a member gone and tells it why; dropping its sender closes its
/// event stream after that last event.
fn disconnect(member: &Member, reason: LeaveReason) {
    member.slot.gone.store(true, Ordering::Release);
    *lock(&member.slot.left_reason) = Some(reason);
    let _ = member.events.try_send(RoomEvent::Disconnected { reason });
}

fn update_info(
    state: &mut RoomState,
    slot: &Arc<Slot>,
    change: impl FnOnce(&mut ParticipantInfo),
) -> ParticipantInfo {
    let info = {
        let mut info = lock(&slot.info);
        change(&mut info);
        info.clone()
    };
    broadcast(state, RoomEvent::ParticipantUpdated(info.clone()), None);
    info
}

/// LiveKit's attribute update: set each key, and delete it when the value
/// is empty.
fn apply_attributes(attributes: &mut BTreeMap<String, String>, changes: &BTreeMap<String, String>) {
    for (key, value) in changes {
        if value.is_empty() {
            attributes.remove(key);
        } else {
            attributes.insert(key.clone(), value.clone());
        }
    }
}

/// A member's handle: its events, its audio port, and the changes it may
/// make. Dropping it leaves the room.
pub struct Participant {
    registry: Arc<Registry>,
    room: Arc<Room>,
    slot: Arc<Slot>,
    events: mpsc::Receiver<RoomEvent>,
}

impl Participant {
    /// What others see of it now.
    pub fn info(&self) -> ParticipantInfo {
        lock(&self.slot.info).clone()
    }

    /// The room's name.
    pub fn room_name(&self) -> &str {
        &self.room.name
    }

    /// The room's `RM_…` ID.
    pub fn room_sid(&self) -> &str {
        &self.room.sid
    }

    /// Sets the rate its audio has, once known (an outbound call joins
    /// before its codec is chosen); the room retunes to its members.
    pub fn set_audio_rate(&self, audio_rate: AudioRate) {
        let mut state = lock(&self.room.state);
        let Some(member) = state
            .members
            .iter_mut()
            .find(|m| Arc::ptr_eq(&m.slot, &self.slot))
        else {
            return;
        };
        member.audio_rate = audio_rate;
        retune(&mut state, &self.registry.config);
    }

    /// `identity`'s own audio as the room mixes it, Opus-encoded once for
    /// all the listeners that take it so (a WebRTC client's down-track).
    pub fn tap_opus(&self, identity: &str) -> Result<OpusTap, RoomError> {
        let mut state = lock(&self.room.state);
        let capacity = self.registry.config.buffered_frames;
        let member = self.member_mut(&mut state, identity)?;
        let ring = tap::OpusRing::new(capacity);
        member.opus_taps.add(&ring);
        Ok(OpusTap { ring })
    }

    /// The member `identity` of this participant's room.
    fn member_mut<'a>(
        &self,
        state: &'a mut RoomState,
        identity: &str,
    ) -> Result<&'a mut Member, RoomError> {
        state
            .members
            .iter_mut()
            .find(|m| lock(&m.slot.info).identity == identity)
            .ok_or_else(|| RoomError::NoSuchParticipant {
                room: self.room.name.clone(),
                identity: identity.to_string(),
            })
    }

    /// Its audio port, for the endpoint that carries its media.
    pub fn audio(&self) -> AudioPort {
        AudioPort {
            slot: self.slot.clone(),
            room: self.room.clone(),
            prebuffer: self.registry.config.prebuffer_frames,
        }
    }

    /// The next event; `None` once it is out of the room (the last event
    /// was [`RoomEvent::Disconnected`] with the reason, or it left).
    pub async fn next_event(&mut self) -> Option<RoomEvent> {
        self.events.recv().await
    }

    /// An event if one is waiting.
    pub fn try_event(&mut self) -> Option<RoomEvent> {
        self.events.try_recv().ok()
    }

    /// Why it was taken out of the room, if it was.
    pub fn disconnected(&self) -> Option<LeaveReason> {
        *lock(&self.slot.left_reason)
    }

    /// The other participants.
    pub fn others(&self) -> Vec<ParticipantInfo> {
        let state = lock(&self.room.state);
        state
            .members
            .iter()
            .filter(|m| !Arc::ptr_eq(&m.slot, &self.slot))
            .map(|m| lock(&m.slot.info).clone())
            .collect()
    }

    /// Whether someone else in the room sends audio (LiveKit answers an
    /// inbound call only then).
    pub fn others_publish_audio(&self) -> bool {
        self.others().iter().any(|p| p.publishes_audio)
    }

    /// Changes its attributes (empty value deletes); every member sees it.
    pub fn set_attributes(&self, changes: &BTreeMap<String, String>) -> ParticipantInfo {
        self.update(|info| apply_attributes(&mut info.attributes, changes))
    }

    /// Changes its metadata; every member sees it.
    pub fn set_metadata(&self, metadata: &str) -> ParticipantInfo {
        self.update(|info| info.metadata = metadata.to_string())
    }

    /// Mutes or unmutes its own audio: the room takes none of it while
    /// muted; every member sees it.
    pub fn set_audio_muted(&self, muted: bool) -> ParticipantInfo {
        set_muted(&self.slot, muted);
        self.update(|info| info.audio_muted = muted)
    }

    /// Says whether it sends audio; every member sees it.
    pub fn set_publishes_audio(&self, on: bool) -> ParticipantInfo {
        self.update(|info| info.publishes_audio = on)
    }

    fn update(&self, change: impl FnOnce(&mut ParticipantInfo)) -> ParticipantInfo {
        let mut state = lock(&self.room.state);
        if self.slot.gone.load(Ordering::Acquire) {
            // Out of the room: change the local view only.
            let mut info = lock(&self.slot.info);
            change(&mut info);
            return info.clone();
        }
        update_info(&mut state, &self.slot, change)
    }

    /// Sends DTMF to the other participants, or only to `destinations`
    /// (identities) when given.
    pub fn send_dtmf(&self, code: u32, digit: &str, destinations: &[String]) {
        let from = lock(&self.slot.info).identity.clone();
        self.deliver(
            RoomEvent::Dtmf {
                from,
                code,
                digit: digit.to_string(),
            },
            destinations,
        );
    }

    /// Sends a data packet (encoded) to the other participants, or only to
    /// `destinations` (identities) when given.
    pub fn send_data(&self, payload: Arc<[u8]>, reliable: bool, destinations: &[String]) {
        let from = lock(&self.slot.info).identity.clone();
        self.deliver(
            RoomEvent::Data {
                from,
                payload,
                reliable,
            },
            destinations,
        );
    }

    /// Calls `method` on participant `to` (an RPC); its answer comes as
    /// [`RoomEvent::RpcReply`].
    pub fn send_rpc(&self, to: &str, id: &str, method: &str, payload: &str) {
        let from = lock(&self.slot.info).identity.clone();
        self.deliver(
            RoomEvent::Rpc {
                from,
                id: id.to_string(),
                method: method.to_string(),
                payload: payload.to_string(),
            },
            &[to.to_string()],
        );
    }

    /// Answers the RPC `id` that `to` made.
    pub fn reply_rpc(&self, to: &str, id: &str, result: Result<String, RpcFailure>) {
        let from = lock(&self.slot.info).identity.clone();
        self.deliver(
            RoomEvent::RpcReply {
                from,
                id: id.to_string(),
                result,
            },
            &[to.to_string()],
        );
    }

    fn deliver(&self, event: RoomEvent, destinations: &[String]) {
        let mut state = lock(&self.room.state);
        if self.slot.gone.load(Ordering::Acquire) {
            return;
        }
        deliver(&mut state, event, Some(&self.slot), destinations);
    }

    fn leave(&mut self) {
        let mut state = lock(&self.room.state);
        if self.slot.gone.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(pos) = state
            .members
            .iter()
            .position(|m| Arc::ptr_eq(&m.slot, &self.slot))
        else {
            return;
        };
        remove_member(&mut state, pos);
        let identity = lock(&self.slot.info).identity.clone();
        *lock(&self.slot.left_reason) = Some(LeaveReason::ClientInitiated);
        broadcast(
            &mut state,
            RoomEvent::ParticipantLeft {
                identity: identity.clone(),
                reason: LeaveReason::ClientInitiated,
            },
            None,
        );
        info!(room = %self.room.name, identity = %identity, "participant left");
        self.registry.emit(|| Lifecycle::ParticipantLeft {
            room: self.room.info_with(&state),
            participant: lock(&self.slot.info).clone(),
            reason: LeaveReason::ClientInitiated,
        });
        let rooms = Rooms {
            inner: self.registry.clone(),
        };
        rooms.after_leave(&self.room, &mut state);
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        self.leave();
    }
}

/// Where a participant's endpoint exchanges 20 ms frames at the room rate
/// with the mixer. Cheap to clone; usable from any thread.
///
/// The room's rate follows its members (the highest any needs), so an
/// endpoint reads [`AudioPort::frame_len`] before each frame it makes; a
/// frame of another length is dropped.
#[derive(Clone)]
pub struct AudioPort {
    slot: Arc<Slot>,
    room: Arc<Room>,
    prebuffer: usize,
}

impl AudioPort {
    /// Samples per frame (the room's rate now / 50).
    pub fn frame_len(&self) -> usize {
        self.slot.frame_len.load(Ordering::Acquire)
    }

    /// The room's rate now, in Hz.
    pub fn rate(&self) -> u32 {
        u32::try_from(self.frame_len() * 50).unwrap_or(u32::MAX)
    }

    /// Hands the participant's next frame to the room (dropped when it was
    /// made for another rate than the room's now).
    pub fn push(&self, frame: &[i16]) {
        let mut audio = lock(&self.slot.audio);
        // Read under the lock: a change of rate remakes the rings and sets
        // the length while holding it.
        if frame.len() == self.frame_len() && !audio.muted {
            audio.inbound.push(frame);
        }
    }

    /// One 20 ms step of an endpoint that runs on a steady clock and pulls
    /// right after its step (a media worker): hands over its frame, if it
    /// has one this time, and once every such member of the room has
    /// stepped, mixes at once. A room with paced members follows them
    /// instead of its own clock, which saves a prebuffered frame and a
    /// clock phase of delay; the clock takes over again when they stop.
    pub fn step(&self, frame: Option<&[i16]>) {
        if let Some(frame) = frame {
            self.push(frame);
        }
        // The slot's lock is free again: the room's is taken first.
        let mut state = lock(&self.room.state);
        if !state.deleted {
            step(&mut state, &self.slot, self.prebuffer);
        }
    }

    /// Takes the room's next frame for the participant; `false` (and `out`
    /// untouched) when there is none, or `out` is not one frame at the
    /// room's rate now: play silence.
    pub fn pull(&self, out: &mut [i16]) -> bool {
        let mut audio = lock(&self.slot.audio);
        out.len() == self.frame_len() && audio.outbound.pop_into(out)
    }

    /// Whether the participant is still in its room.
    pub fn is_connected(&self) -> bool {
        !self.slot.gone.load(Ordering::Acquire)
    }

    /// Frames dropped because a ring was full (inbound, outbound): a sign of
    /// an endpoint or a mixer that falls behind.
    pub fn dropped_frames(&self) -> (u64, u64) {
        let audio = lock(&self.slot.audio);
        (audio.inbound.dropped(), audio.outbound.dropped())
    }

    /// Forgets buffered audio both ways (after hold, say).
    pub fn flush(&self) {
        let mut audio = lock(&self.slot.audio);
        audio.inbound.clear();
        audio.outbound.clear();
        audio.playing = false;
    }
}

#[cfg(test)]
mod tests;

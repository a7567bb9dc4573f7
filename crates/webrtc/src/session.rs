//! One LiveKit client's session (v0 signalling, two peer connections),
//! sans-IO: signal requests, room events, datagrams, a 20 ms audio step
//! and time in; signal responses and datagrams out.
//!
//! The subscriber transport is ours to offer (`subscriber_primary`): it
//! carries `_reliable`/`_lossy` and one Opus track per other participant
//! that publishes audio (as a LiveKit server forwards each track; the
//! client mixes). The publisher transport is the client's to offer: its
//! Opus is decoded at the room's rate into the participant's audio port.

use crate::ids::track_sid_of;
use crate::models::{participant_message, server_info, State};
use crate::peer::{Peer, PeerError, UntilOpen, OPUS_PAYLOAD_TYPE};
use bytes::Bytes;
use livekit_protocol as proto;
use prost::Message as _;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtp_transceiver::RTCRtpSenderId;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_media::codec::opus::OpusDecoder;
use switchboard_media::dtmf::DtmfDigit;
use switchboard_rooms::{AudioPort, LeaveReason, OpusTap, Participant, ParticipantInfo, RoomEvent};
use tracing::{debug, info, warn};

/// Seconds between the client's pings, and without any message after
/// which a side gives up (LiveKit's own values; zero breaks clients).
pub const PING_INTERVAL_SECS: i32 = 5;
/// See [`PING_INTERVAL_SECS`].
pub const PING_TIMEOUT_SECS: i32 = 15;

/// What the client's token allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grants {
    /// `canPublish`.
    pub can_publish: bool,
    /// `canSubscribe`.
    pub can_subscribe: bool,
    /// `canPublishData`.
    pub can_publish_data: bool,
    /// `canUpdateOwnMetadata`.
    pub can_update_own_metadata: bool,
    /// `hidden`.
    pub hidden: bool,
}

/// What the client asked for in the query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// `auto_subscribe` (default true): every published track is sent.
    pub auto_subscribe: bool,
    /// `protocol`: the client's signalling protocol version.
    pub protocol: i32,
}

/// Which of the participant's two transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's offers: what it sends us.
    Publisher,
    /// Our offers: what we send it.
    Subscriber,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The client said leave.
    Left,
    /// The room took the participant out.
    Disconnected(LeaveReason),
    /// Nothing from the client for the ping timeout.
    PingTimeout,
    /// A transport failed.
    Failed(String),
}

/// One track we send: another participant's audio, Opus-encoded (once,
/// by the room, for every client that hears it).
struct DownTrack {
    identity: String,
    track_sid: String,
    sender: RTCRtpSenderId,
    ssrc: u32,
    tap: OpusTap,
    sequence: u16,
    timestamp: u32,
    /// The last frame was silence (nothing was sent): the next packet
    /// starts a talk spurt (marker bit).
    quiet: bool,
}

/// The client's published audio, decoded into the room.
struct UpTrack {
    sid: String,
    /// `track_subscribed` was sent (agents wait for it before speaking).
    subscribed_told: bool,
    /// Its media arrived: the client's publication is complete (a
    /// `track_subscribed` before that is dropped by the SDKs).
    flowing: bool,
    muted: bool,
    decoder: Option<(u32, OpusDecoder)>,
    /// Decoded samples not yet a whole frame.
    pending: Vec<i16>,
}

/// A LiveKit client's session.
pub struct Session {
    participant: Participant,
    port: AudioPort,
    grants: Grants,
    options: ClientOptions,
    subscriber: Peer,
    publisher: Option<Peer>,
    publisher_address: SocketAddr,
    responses: VecDeque<proto::SignalResponse>,
    down: Vec<DownTrack>,
    /// Tracks asked for by `UpdateSubscription` (without auto-subscribe).
    subscribed: HashSet<String>,
    up: Option<UpTrack>,
    /// Our offer is out and its answer not in yet.
    awaiting_answer: bool,
    /// The down-tracks changed while an offer was out.
    renegotiate: bool,
    offer_id: u32,
    /// `ParticipantInfo.version` we gave each participant (clients drop an
    /// update whose version did not grow).
    versions: HashMap<String, u32>,
    /// The other participants as last seen, by identity (a leave names
    /// only the identity, and clients apply the whole last info with
    /// state DISCONNECTED: one without attributes would delete them).
    known: HashMap<String, ParticipantInfo>,
    last_heard: Instant,
    /// DTLS is up on the subscriber transport: RTP can be protected.
    subscriber_connected: bool,
    ending: Option<Ending>,
    data_sequence: u32,
    scratch: Vec<i16>,
    packet: Vec<u8>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    // A failed read leaves zeroes: an SSRC of 0 still works.
    let _ = getrandom::fill(&mut bytes);
    u32::from_be_bytes(bytes)
}

fn response(message: proto::signal_response::Message) -> proto::SignalResponse {
    proto::SignalResponse {
        message: Some(message),
    }
}

/// The longest Opus packet (120 ms) at 48 kHz, in samples.
const MAX_DECODED: usize = 5760;

/// How long an RPC we relay may take to be answered (the SDKs' default).
const RPC_RESPONSE_TIMEOUT_MS: u32 = 15_000;

impl Session {
    /// Starts a session for a participant that has joined its room: queues
    /// the JoinResponse and the first subscriber offer. `subscriber_address`
    /// and `publisher_address` are the UDP addresses (as the client reaches
    /// them) of the sockets the driver reads for each transport.
    pub fn new(
        now: Instant,
        participant: Participant,
        grants: Grants,
        options: ClientOptions,
        subscriber_address: SocketAddr,
        publisher_address: SocketAddr,
    ) -> Result<Session, PeerError> {
        let mut subscriber = Peer::new(now, subscriber_address)?;
        subscriber.add_data_channels()?;
        let port = participant.audio();
        let mut session = Session {
            participant,
            port,
            grants,
            options,
            subscriber,
            publisher: None,
            publisher_address,
            responses: VecDeque::new(),
            down: Vec::new(),
            subscribed: HashSet::new(),
            up: None,
            awaiting_answer: false,
            renegotiate: false,
            offer_id: 0,
            versions: HashMap::new(),
            known: HashMap::new(),
            last_heard: now,
            subscriber_connected: false,
            ending: None,
            data_sequence: 0,
            scratch: Vec::new(),
            packet: vec![0; 1500],
        };
        session.join_response();
        let others = session.participant.others();
        for other in &others {
            session.maybe_subscribe(other);
        }
        session.offer(now)?;
        Ok(session)
    }

    fn version_of(&mut self, sid: &str) -> u32 {
        let version = self.versions.entry(sid.to_owned()).or_insert(0);
        *version = version.saturating_add(1);
        *version
    }

    fn join_response(&mut self) {
        let me = self.participant.info();
        let version = self.version_of(&me.sid);
        let mut participant = participant_message(&me, version, State::Joined);
        participant.permission = Some(proto::ParticipantPermission {
            can_subscribe: self.grants.can_subscribe,
            can_publish: self.grants.can_publish,
            can_publish_data: self.grants.can_publish_data,
            hidden: self.grants.hidden,
            can_update_metadata: self.grants.can_update_own_metadata,
            ..Default::default()
        });
        let mut others = Vec::new();
        for other in self.participant.others() {
            self.known.insert(other.identity.clone(), other.clone());
            let version = self.version_of(&other.sid);
            others.push(participant_message(&other, version, State::Active));
        }
        let server = server_info();
        let join = proto::JoinResponse {
            room: Some(proto::Room {
                sid: self.participant.room_sid().to_owned(),
                name: self.participant.room_name().to_owned(),
                num_participants: u32::try_from(others.len().saturating_add(1)).unwrap_or(u32::MAX),
                ..Default::default()
            }),
            participant: Some(participant),
            other_participants: others,
            server_version: server.version.clone(),
            subscriber_primary: true,
            ping_timeout: PING_TIMEOUT_SECS,
            ping_interval: PING_INTERVAL_SECS,
            server_info: Some(server),
            ..Default::default()
        };
        self.responses
            .push_back(response(proto::signal_response::Message::Join(join)));
    }

    /// Whether we send `info`'s audio to this client: it publishes, it is
    /// not us, we may subscribe, and auto-subscribe or the client asked.
    fn wants(&self, info: &ParticipantInfo) -> bool {
        info.publishes_audio
            && self.grants.can_subscribe
            && info.sid != self.participant.info().sid
            && (self.options.auto_subscribe || self.subscribed.contains(&track_sid_of(&info.sid)))
    }

    /// Adds a down-track for `info` when this client should hear it;
    /// `true` when one was added (the subscriber needs an offer).
    fn maybe_subscribe(&mut self, info: &ParticipantInfo) -> bool {
        if !self.wants(info) || self.down.iter().any(|d| d.identity == info.identity) {
            return false;
        }
        let tap = match self.participant.tap_opus(&info.identity) {
            Ok(tap) => tap,
            Err(e) => {
                debug!(error = %e, "no audio to subscribe to");
                return false;
            }
        };
        let track_sid = track_sid_of(&info.sid);
        let ssrc = random_u32();
        let stream = format!("{}|{}", info.sid, track_sid);
        match self.subscriber.add_audio_track(&stream, &track_sid, ssrc) {
            Ok(sender) => {
                self.down.push(DownTrack {
                    identity: info.identity.clone(),
                    track_sid,
                    sender,
                    ssrc,
                    tap,
                    sequence: (random_u32() & 0xffff) as u16,
                    timestamp: random_u32(),
                    quiet: true,
                });
                true
            }
            Err(e) => {
                warn!(error = %e, "down-track not added");
                false
            }
        }
    }

    /// Removes `identity`'s down-track; `true` when there was one.
    fn unsubscribe(&mut self, identity: &str) -> bool {
        let Some(at) = self.down.iter().position(|d| d.identity == identity) else {
            return false;
        };
        let track = self.down.remove(at);
        if let Err(e) = self.subscriber.remove_track(track.sender) {
            debug!(error = %e, "down-track not removed");
        }
        true
    }

    /// Sends a subscriber offer now, or after the answer to the one out.
    fn offer(&mut self, now: Instant) -> Result<(), PeerError> {
        if self.awaiting_answer {
            self.renegotiate = true;
            return Ok(());
        }
        let sdp = self.subscriber.offer(now)?;
        self.offer_id = self.offer_id.wrapping_add(1).max(1);
        self.awaiting_answer = true;
        self.renegotiate = false;
        self.responses
            .push_back(response(proto::signal_response::Message::Offer(
                crate::models::session_description("offer", sdp, self.offer_id),
            )));
        self.trickle(Side::Subscriber);
        Ok(())
    }

    fn trickle(&mut self, side: Side) {
        let trickle = match side {
            Side::Subscriber => self.subscriber.trickle(proto::SignalTarget::Subscriber),
            Side::Publisher => match &self.publisher {
                Some(p) => p.trickle(proto::SignalTarget::Publisher),
                None => return,
            },
        };
        self.responses
            .push_back(response(proto::signal_response::Message::Trickle(trickle)));
    }

    /// The participant's room handle.
    pub fn participant(&self) -> &Participant {
        &self.participant
    }

    /// The participant's room handle, for awaiting its events.
    pub fn participant_mut(&mut self) -> &mut Participant {
        &mut self.participant
    }

    /// Why the session is over, once it is.
    pub fn ending(&self) -> Option<&Ending> {
        self.ending.as_ref()
    }

    fn end(&mut self, ending: Ending) {
        if self.ending.is_none() {
            self.ending = Some(ending);
        }
    }

    /// The next signal response to send.
    pub fn poll_response(&mut self) -> Option<proto::SignalResponse> {
        self.responses.pop_front()
    }

    /// The next datagram to send: from which transport's socket, to where.
    pub fn poll_transmit(&mut self) -> Option<(Side, SocketAddr, Vec<u8>)> {
        if let Some((to, data)) = self.subscriber.poll_transmit() {
            return Some((Side::Subscriber, to, data.to_vec()));
        }
        let (to, data) = self.publisher.as_mut()?.poll_transmit()?;
        Some((Side::Publisher, to, data.to_vec()))
    }

    /// When [`Session::handle_timeout`] is due (besides the 20 ms step).
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let subscriber = self.subscriber.poll_timeout();
        let publisher = self.publisher.as_mut().and_then(|p| p.poll_timeout());
        match (subscriber, publisher) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.subscriber.handle_timeout(now);
        if let Some(p) = self.publisher.as_mut() {
            p.handle_timeout(now);
        }
        self.after_io(now);
    }

    /// A datagram arrived on `side`'s socket.
    pub fn handle_datagram(&mut self, now: Instant, side: Side, from: SocketAddr, data: &[u8]) {
        match side {
            Side::Subscriber => self.subscriber.handle_datagram(now, from, data),
            Side::Publisher => match self.publisher.as_mut() {
                Some(p) => p.handle_datagram(now, from, data),
                None => return,
            },
        }
        self.after_io(now);
    }

    /// Reads what the transports produced: state changes, RTP, data.
    fn after_io(&mut self, now: Instant) {
        while let Some(event) = self.subscriber.poll_event() {
            self.on_peer_event(Side::Subscriber, event);
        }
        // A channel that opened takes what waited for it.
        self.subscriber.flush_waiting(now);
        while let Some(message) = self.subscriber.poll_read() {
            if let RTCMessage::DataChannelMessage(id, m) = message.message {
                let reliable = self.subscriber.channel_label(id) != Some("_lossy");
                self.on_data(now, &m.data, reliable);
            }
        }
        let Some(mut publisher) = self.publisher.take() else {
            return;
        };
        while let Some(event) = publisher.poll_event() {
            self.on_peer_event(Side::Publisher, event);
        }
        while let Some(message) = publisher.poll_read() {
            match message.message {
                RTCMessage::RtpPacket(_, packet)
                    if packet.header.payload_type == OPUS_PAYLOAD_TYPE =>
                {
                    self.on_opus(&packet.payload);
                }
                RTCMessage::DataChannelMessage(id, m) => {
                    let reliable = publisher.channel_label(id) != Some("_lossy");
                    self.on_data(now, &m.data, reliable);
                }
                _ => {}
            }
        }
        self.publisher = Some(publisher);
    }

    fn on_peer_event(&mut self, side: Side, event: RTCPeerConnectionEvent) {
        if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
            let info = self.participant.info();
            info!(identity = %info.identity, sid = %info.sid, ?side, %state, "WebRTC transport");
            if side == Side::Subscriber {
                self.subscriber_connected = state == RTCPeerConnectionState::Connected;
            }
            if state == RTCPeerConnectionState::Failed {
                self.end(Ending::Failed(format!("{side:?} transport failed")));
            }
        }
    }

    /// One Opus packet of the client's track.
    fn on_opus(&mut self, payload: &[u8]) {
        let Some(up) = self.up.as_mut() else {
            return;
        };
        if !up.flowing {
            up.flowing = true;
            self.tell_subscribed();
        }
        let Some(up) = self.up.as_mut().filter(|u| !u.muted) else {
            return;
        };
        let rate = self.port.rate();
        let frame_len = self.port.frame_len();
        if up.decoder.as_ref().map(|(r, _)| *r) != Some(rate) {
            match OpusDecoder::new(rate) {
                Ok(decoder) => up.decoder = Some((rate, decoder)),
                Err(e) => {
                    warn!(error = %e, rate, "no Opus decoder at the room's rate");
                    return;
                }
            }
            up.pending.clear();
        }
        let Some((_, decoder)) = up.decoder.as_mut() else {
            return;
        };
        self.scratch.resize(MAX_DECODED, 0);
        let decoded = match decoder.decode(payload, &mut self.scratch) {
            Ok(n) => n,
            Err(e) => {
                debug!(error = %e, "Opus packet not decoded");
                return;
            }
        };
        up.pending
            .extend_from_slice(&self.scratch[..decoded.min(MAX_DECODED)]);
        while frame_len > 0 && up.pending.len() >= frame_len {
            self.port.push(&up.pending[..frame_len]);
            up.pending.drain(..frame_len);
        }
    }

    /// A data packet from the client: SIP DTMF goes to the room as DTMF
    /// (phones play it as RFC 4733); any other packet (user data, RPC,
    /// chat, streams) is relayed as it is, with the sender named by us.
    fn on_data(&mut self, now: Instant, data: &[u8], reliable: bool) {
        self.last_heard = now;
        let Ok(mut packet) = proto::DataPacket::decode(data) else {
            debug!("a data channel message that is not a DataPacket");
            return;
        };
        if !self.grants.can_publish_data {
            debug!("data packet dropped: the token does not grant canPublishData");
            return;
        }
        // An RPC to a SIP participant goes through the room: a call answers
        // it (its reply brings the ack and the answer), a SIP-kind client
        // (a gateway's uplink) gets it as a data packet and acks itself.
        if let Some(proto::data_packet::Value::RpcRequest(request)) = &packet.value {
            if let Some(callee) = self.sip_destination(&packet.destination_identities) {
                self.participant
                    .send_rpc(&callee, &request.id, &request.method, &request.payload);
                return;
            }
        }
        if !matches!(packet.value, Some(proto::data_packet::Value::SipDtmf(_))) {
            // Clients de-duplicate by (participant_sid, sequence): the
            // sender's own sequence is kept, its name is ours to give.
            let me = self.participant.info();
            packet.participant_identity = me.identity;
            packet.participant_sid = me.sid;
            let destinations = std::mem::take(&mut packet.destination_identities);
            let payload: std::sync::Arc<[u8]> = packet.encode_to_vec().into();
            self.participant.send_data(payload, reliable, &destinations);
            return;
        }
        if let Some(proto::data_packet::Value::SipDtmf(dtmf)) = packet.value {
            // The digit wins over the code when both are given (as the
            // SDKs' publish_dtmf fills both).
            let digit = match dtmf.digit.chars().next() {
                Some(c) if dtmf.digit.len() == 1 => DtmfDigit::from_char(c),
                _ => u8::try_from(dtmf.code).ok().and_then(DtmfDigit::from_code),
            };
            if let Some(digit) = digit {
                self.participant.send_dtmf(
                    u32::from(digit.code),
                    &digit.as_char().to_string(),
                    &packet.destination_identities,
                );
            }
        }
    }

    /// The SIP participant an RPC is addressed to (its identity): its call
    /// answers `lk.sip.*`, as LiveKit's SIP service does.
    fn sip_destination(&self, destinations: &[String]) -> Option<String> {
        match destinations {
            [one] => self
                .known
                .get(one)
                .filter(|p| p.kind == switchboard_rooms::ParticipantKind::Sip)
                .map(|p| p.identity.clone()),
            _ => None,
        }
    }

    /// The SID of a participant we know of (empty if none).
    fn sid_of(&self, identity: &str) -> String {
        self.known
            .get(identity)
            .map(|p| p.sid.clone())
            .unwrap_or_default()
    }

    /// Sends a DataPacket on the subscriber's `_reliable` channel.
    fn send_reliable(&mut self, now: Instant, mut packet: proto::DataPacket) {
        self.data_sequence = self.data_sequence.wrapping_add(1);
        packet.sequence = self.data_sequence;
        let bytes = packet.encode_to_vec();
        if !self
            .subscriber
            .send_data(now, "_reliable", &bytes, UntilOpen::Queue)
        {
            debug!("data packet dropped: too much waits for the reliable channel to open");
        }
    }

    /// A message from the client.
    pub fn handle_signal(&mut self, now: Instant, request: proto::SignalRequest) {
        use proto::signal_request::Message as M;
        self.last_heard = now;
        let Some(message) = request.message else {
            return;
        };
        match message {
            M::Offer(offer) => self.on_publisher_offer(now, offer),
            M::Answer(answer) => self.on_subscriber_answer(now, answer),
            M::Trickle(trickle) => match proto::SignalTarget::try_from(trickle.target) {
                Ok(proto::SignalTarget::Subscriber) => self
                    .subscriber
                    .add_remote_candidate(&trickle.candidate_init),
                _ => {
                    if let Some(p) = self.publisher.as_mut() {
                        p.add_remote_candidate(&trickle.candidate_init);
                    }
                }
            },
            M::AddTrack(request) => self.on_add_track(request),
            M::Mute(mute) => {
                if let Some(up) = self.up.as_mut().filter(|u| u.sid == mute.sid) {
                    up.muted = mute.muted;
                    up.pending.clear();
                    // Everyone sees the track muted (and the room takes none of it).
                    self.participant.set_audio_muted(mute.muted);
                }
            }
            M::Subscription(subscription) => self.on_subscription(now, subscription),
            M::Leave(_) => self.end(Ending::Left),
            M::Ping(_) => self
                .responses
                .push_back(response(proto::signal_response::Message::Pong(now_ms()))),
            M::PingReq(ping) => {
                self.responses
                    .push_back(response(proto::signal_response::Message::PongResp(
                        proto::Pong {
                            last_ping_timestamp: ping.timestamp,
                            timestamp: now_ms(),
                        },
                    )))
            }
            M::UpdateMetadata(update) => self.on_update_metadata(update),
            _ => debug!("signal request not handled"),
        }
    }

    fn on_publisher_offer(&mut self, now: Instant, offer: proto::SessionDescription) {
        if self.publisher.is_none() {
            match Peer::new(now, self.publisher_address) {
                Ok(p) => self.publisher = Some(p),
                Err(e) => return self.end(Ending::Failed(format!("publisher: {e}"))),
            }
        }
        let Some(publisher) = self.publisher.as_mut() else {
            return;
        };
        match publisher.answer(now, offer.sdp) {
            Ok(sdp) => {
                self.responses
                    .push_back(response(proto::signal_response::Message::Answer(
                        crate::models::session_description("answer", sdp, offer.id),
                    )));
                self.trickle(Side::Publisher);
            }
            Err(e) => {
                warn!(error = %e, "publisher offer refused");
                self.end(Ending::Failed(format!("publisher offer: {e}")));
            }
        }
    }

    fn on_subscriber_answer(&mut self, now: Instant, answer: proto::SessionDescription) {
        if !self.awaiting_answer {
            debug!("an answer without an offer out");
            return;
        }
        if let Err(e) = self.subscriber.accept_answer(now, answer.sdp) {
            warn!(error = %e, "subscriber answer refused");
            return self.end(Ending::Failed(format!("subscriber answer: {e}")));
        }
        self.awaiting_answer = false;
        if self.renegotiate {
            if let Err(e) = self.offer(now) {
                self.end(Ending::Failed(format!("subscriber offer: {e}")));
            }
        }
    }

    fn on_add_track(&mut self, request: proto::AddTrackRequest) {
        let allowed = self.grants.can_publish
            && proto::TrackType::try_from(request.r#type) == Ok(proto::TrackType::Audio)
            && self.up.is_none();
        if !allowed {
            let reason = if self.grants.can_publish && self.up.is_some() {
                proto::request_response::Reason::LimitExceeded
            } else if self.grants.can_publish {
                proto::request_response::Reason::UnsupportedType
            } else {
                proto::request_response::Reason::NotAllowed
            };
            self.responses
                .push_back(response(proto::signal_response::Message::RequestResponse(
                    proto::RequestResponse {
                        reason: reason as i32,
                        message: "one audio track per participant".into(),
                        request: Some(proto::request_response::Request::AddTrack(request)),
                        ..Default::default()
                    },
                )));
            return;
        }
        let me = self.participant.info();
        let sid = track_sid_of(&me.sid);
        let track = proto::TrackInfo {
            sid: sid.clone(),
            r#type: proto::TrackType::Audio as i32,
            name: request.name.clone(),
            muted: request.muted,
            source: request.source,
            mime_type: "audio/opus".into(),
            stream: request.stream.clone(),
            ..Default::default()
        };
        self.up = Some(UpTrack {
            sid,
            subscribed_told: false,
            flowing: false,
            muted: request.muted,
            decoder: None,
            pending: Vec::new(),
        });
        self.responses
            .push_back(response(proto::signal_response::Message::TrackPublished(
                proto::TrackPublishedResponse {
                    cid: request.cid,
                    track: Some(track),
                },
            )));
        // Everyone (this client included) hears of the track through the
        // room's update.
        self.participant.set_publishes_audio(true);
    }

    /// `track_subscribed` for the client's track, once its media flows and
    /// someone else is in the room: every member hears every publisher
    /// (phones and WebSocket members in their mix, WebRTC clients on a
    /// track of its own), so the first other member is its first
    /// subscriber.
    fn tell_subscribed(&mut self) {
        let Some(up) = self.up.as_mut().filter(|u| u.flowing && !u.subscribed_told) else {
            return;
        };
        if self.participant.others().is_empty() {
            return;
        }
        up.subscribed_told = true;
        let track_sid = up.sid.clone();
        self.responses
            .push_back(response(proto::signal_response::Message::TrackSubscribed(
                proto::TrackSubscribed { track_sid },
            )));
    }

    fn on_subscription(&mut self, now: Instant, subscription: proto::UpdateSubscription) {
        let sids = subscription
            .track_sids
            .iter()
            .chain(
                subscription
                    .participant_tracks
                    .iter()
                    .flat_map(|p| &p.track_sids),
            )
            .cloned()
            .collect::<Vec<_>>();
        let mut changed = false;
        for sid in sids {
            if subscription.subscribe {
                self.subscribed.insert(sid);
            } else if self.subscribed.remove(&sid) {
                if let Some(d) = self.down.iter().find(|d| d.track_sid == sid) {
                    let identity = d.identity.clone();
                    changed |= self.unsubscribe(&identity);
                }
            }
        }
        if subscription.subscribe {
            for other in self.participant.others() {
                changed |= self.maybe_subscribe(&other);
            }
        }
        if changed {
            if let Err(e) = self.offer(now) {
                self.end(Ending::Failed(format!("subscriber offer: {e}")));
            }
        }
    }

    fn on_update_metadata(&mut self, update: proto::UpdateParticipantMetadata) {
        let reason = if self.grants.can_update_own_metadata {
            if !update.metadata.is_empty() {
                self.participant.set_metadata(&update.metadata);
            }
            if !update.attributes.is_empty() {
                let changes: BTreeMap<String, String> = update.attributes.into_iter().collect();
                self.participant.set_attributes(&changes);
            }
            proto::request_response::Reason::Ok
        } else {
            proto::request_response::Reason::NotAllowed
        };
        self.responses
            .push_back(response(proto::signal_response::Message::RequestResponse(
                proto::RequestResponse {
                    request_id: update.request_id,
                    reason: reason as i32,
                    ..Default::default()
                },
            )));
    }

    /// An event of the participant's room.
    pub fn handle_room_event(&mut self, now: Instant, event: Option<RoomEvent>) {
        let Some(event) = event else {
            let reason = self
                .participant
                .disconnected()
                .unwrap_or(LeaveReason::RoomDeleted);
            return self.end(Ending::Disconnected(reason));
        };
        let mut changed = false;
        match event {
            RoomEvent::ParticipantJoined(info) => {
                self.update(&info, State::Active);
                self.tell_subscribed();
                changed = self.maybe_subscribe(&info);
            }
            RoomEvent::ParticipantUpdated(info) => {
                let me = info.sid == self.participant.info().sid;
                self.update(&info, if me { State::Joined } else { State::Active });
                if !me {
                    changed = if info.publishes_audio {
                        self.maybe_subscribe(&info)
                    } else {
                        self.unsubscribe(&info.identity)
                    };
                }
            }
            RoomEvent::ParticipantLeft { identity, reason } => {
                if let Some(last) = self.known.remove(&identity) {
                    let version = self.version_of(&last.sid);
                    let mut gone = participant_message(&last, version, State::Active);
                    gone.state = proto::participant_info::State::Disconnected as i32;
                    gone.disconnect_reason = crate::models::disconnect_reason(reason) as i32;
                    self.responses
                        .push_back(response(proto::signal_response::Message::Update(
                            proto::ParticipantUpdate {
                                participants: vec![gone],
                            },
                        )));
                }
                changed = self.unsubscribe(&identity);
            }
            RoomEvent::Dtmf { from, code, digit } => {
                #[allow(deprecated)]
                let packet = proto::DataPacket {
                    // Deprecated in the proto, still read by older clients.
                    kind: proto::data_packet::Kind::Reliable as i32,
                    participant_identity: from.clone(),
                    value: Some(proto::data_packet::Value::SipDtmf(proto::SipDtmf {
                        code,
                        digit,
                    })),
                    ..Default::default()
                };
                self.send_reliable(now, packet);
            }
            // A call's answer: the ack (its call has it, as the SDKs need
            // within 7 s) and the answer, both in the callee's name.
            RoomEvent::RpcReply { from, id, result } => {
                let sid = self.sid_of(&from);
                for value in [
                    crate::models::rpc_ack(id.clone()),
                    crate::models::rpc_response(id, result),
                ] {
                    let packet = proto::DataPacket {
                        participant_identity: from.clone(),
                        participant_sid: sid.clone(),
                        value: Some(value),
                        ..Default::default()
                    };
                    self.send_reliable(now, packet);
                }
            }
            // An RPC to this client through the room: a SIP-kind client
            // (a gateway's uplink joining a caller) answers `lk.sip.*` for
            // its call. It comes as the data packet a LiveKit server relays.
            RoomEvent::Rpc {
                from,
                id,
                method,
                payload,
            } => {
                let packet = proto::DataPacket {
                    participant_sid: self.sid_of(&from),
                    participant_identity: from,
                    destination_identities: vec![self.participant.info().identity],
                    value: Some(proto::data_packet::Value::RpcRequest(proto::RpcRequest {
                        id,
                        method,
                        payload,
                        response_timeout_ms: RPC_RESPONSE_TIMEOUT_MS,
                        version: 1,
                        ..Default::default()
                    })),
                    ..Default::default()
                };
                self.send_reliable(now, packet);
            }
            RoomEvent::MuteRequested { muted } => {
                // The client mutes its own track and says so (the room
                // already drops its audio).
                if let Some(up) = self.up.as_mut() {
                    up.muted = muted;
                    up.pending.clear();
                    let sid = up.sid.clone();
                    self.responses
                        .push_back(response(proto::signal_response::Message::Mute(
                            proto::MuteTrackRequest { sid, muted },
                        )));
                }
            }
            RoomEvent::Data {
                payload, reliable, ..
            } => {
                let (label, until_open) = if reliable {
                    ("_reliable", UntilOpen::Queue)
                } else {
                    ("_lossy", UntilOpen::Drop)
                };
                if !self.subscriber.send_data(now, label, &payload, until_open) {
                    debug!(label, "data packet dropped: its channel is not open");
                }
            }
            RoomEvent::Disconnected { reason } => {
                self.responses
                    .push_back(response(proto::signal_response::Message::Leave(
                        proto::LeaveRequest {
                            reason: crate::models::disconnect_reason(reason) as i32,
                            action: proto::leave_request::Action::Disconnect as i32,
                            ..Default::default()
                        },
                    )));
                self.end(Ending::Disconnected(reason));
            }
        }
        if changed {
            if let Err(e) = self.offer(now) {
                self.end(Ending::Failed(format!("subscriber offer: {e}")));
            }
        }
    }

    fn update(&mut self, info: &ParticipantInfo, state: State) {
        if info.sid != self.participant.info().sid {
            self.known.insert(info.identity.clone(), info.clone());
        }
        let version = self.version_of(&info.sid);
        let message = participant_message(info, version, state);
        debug!(identity = %info.identity, version, kind = message.kind, attributes = message.attributes.len(), "participant update sent");
        self.responses
            .push_back(response(proto::signal_response::Message::Update(
                proto::ParticipantUpdate {
                    participants: vec![message],
                },
            )));
    }

    /// One 20 ms step: a frame of every other publisher goes out as Opus;
    /// the room's mix for this participant is not used (the client mixes).
    pub fn step_audio(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_heard)
            > Duration::from_secs(PING_TIMEOUT_SECS.unsigned_abs().into())
        {
            self.end(Ending::PingTimeout);
        }
        let frame_len = self.port.frame_len();
        self.scratch.resize(frame_len, 0);
        // The mix-minus this member gets is not sent: drop it.
        while self.port.pull(&mut self.scratch) {}
        for i in 0..self.down.len() {
            self.step_down_track(now, i);
        }
    }

    fn step_down_track(&mut self, now: Instant, i: usize) {
        let Some(track) = self.down.get_mut(i) else {
            return;
        };
        // The RTP clock of Opus is 48 kHz whatever the PCM rate.
        track.timestamp = track.timestamp.wrapping_add(960);
        let Some(n) = track.tap.pull(&mut self.packet) else {
            track.quiet = true;
            return;
        };
        track.sequence = track.sequence.wrapping_add(1);
        let header = rtc::rtp::header::Header {
            version: 2,
            marker: track.quiet,
            payload_type: OPUS_PAYLOAD_TYPE,
            sequence_number: track.sequence,
            timestamp: track.timestamp,
            ssrc: track.ssrc,
            ..Default::default()
        };
        track.quiet = false;
        if !self.subscriber_connected {
            // Nothing to protect it with yet: the frame is dropped.
            return;
        }
        let payload = Bytes::copy_from_slice(&self.packet[..n.min(self.packet.len())]);
        let sender = track.sender;
        if let Err(e) = self.subscriber.send_opus(now, sender, header, payload) {
            tracing::trace!(error = %e, "RTP not sent (transport not up yet)");
        }
    }
}

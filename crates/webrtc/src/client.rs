//! The client's side of LiveKit's v0 signalling and its two transports,
//! sans-IO like [`crate::Session`]: what switchboard needs to join a room
//! on a LiveKit server (or on another switchboard) as one participant. It
//! publishes one Opus microphone track, receives every other participant's
//! audio (mixed into one stream, as a phone hears a room), and sends and
//! receives data packets (SIP DTMF among them).
//!
//! The driver connects the WebSocket (`/rtc?access_token=…`), feeds
//! [`Client::handle_signal`] every `SignalResponse`, sends what
//! [`Client::poll_request`] yields, and moves datagrams and time as for the
//! server's session.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use livekit_protocol as proto;
use prost::Message as _;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtp_transceiver::RTCRtpSenderId;
use switchboard_media::codec::opus::{OpusDecoder, OpusEncoder, OpusSettings};
use tracing::{debug, info, warn};

use crate::peer::{Peer, PeerError, UntilOpen, OPUS_PAYLOAD_TYPE};
use crate::session::Side;

/// The `cid` of the track we publish (LiveKit matches the SDP's track to
/// the AddTrackRequest by it).
const MICROPHONE_CID: &str = "switchboard-microphone";

/// Decoded audio kept per remote track before it is mixed: beyond this
/// the oldest goes (late audio is worth less than current audio).
const MAX_PENDING_FRAMES: usize = 10;

/// The longest ping interval taken from a server (LiveKit's is 5 s).
const MAX_PING_INTERVAL_SECS: u64 = 300;

/// The longest Opus packet (120 ms) at 48 kHz, in samples.
const MAX_DECODED: usize = 5760;

/// What happened that the driver may want to know.
#[derive(Debug)]
pub enum ClientEvent {
    /// The server let us in.
    Joined(Box<proto::JoinResponse>),
    /// Participants changed (joined, updated, left).
    Participants(Vec<proto::ParticipantInfo>),
    /// Our microphone track was accepted, with its SID.
    Published(String),
    /// A data packet from another participant (or the server).
    Data(Box<proto::DataPacket>),
    /// A transport's state changed.
    Transport(Side, RTCPeerConnectionState),
    /// The server asked us to leave (removed, room deleted…).
    Left(proto::LeaveRequest),
}

struct RemoteTrack {
    decoder: OpusDecoder,
    pending: VecDeque<i16>,
}

/// One participant's client session with a LiveKit server.
pub struct Client {
    subscriber: Peer,
    publisher: Peer,
    requests: VecDeque<proto::SignalRequest>,
    events: VecDeque<ClientEvent>,
    pcm_rate: u32,
    publisher_connected: bool,
    microphone: Option<Microphone>,
    remote: HashMap<u32, RemoteTrack>,
    next_ping: Option<Instant>,
    ping_interval: Duration,
    publisher_offer_id: u32,
    scratch: Vec<i16>,
    packet: Vec<u8>,
}

struct Microphone {
    sender: RTCRtpSenderId,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    encoder: OpusEncoder,
}

fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    u32::from_be_bytes(bytes)
}

fn request(message: proto::signal_request::Message) -> proto::SignalRequest {
    proto::SignalRequest {
        message: Some(message),
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Client {
    /// A client whose subscriber and publisher transports use the UDP
    /// sockets at `subscriber` and `publisher` (the driver's), exchanging
    /// audio at `pcm_rate` Hz (8000, 16000 or 48000) in 20 ms frames.
    pub fn new(
        now: Instant,
        subscriber: SocketAddr,
        publisher: SocketAddr,
        pcm_rate: u32,
    ) -> Result<Client, PeerError> {
        let subscriber = Peer::client(now, subscriber)?;
        let mut publisher = Peer::client(now, publisher)?;
        // LiveKit clients open the data channels on the publisher.
        publisher.add_data_channels()?;
        Ok(Client {
            subscriber,
            publisher,
            requests: VecDeque::new(),
            events: VecDeque::new(),
            pcm_rate,
            publisher_connected: false,
            microphone: None,
            remote: HashMap::new(),
            next_ping: None,
            ping_interval: Duration::from_secs(5),
            publisher_offer_id: 0,
            scratch: vec![0; MAX_DECODED],
            packet: vec![0; 1500],
        })
    }

    /// Samples per 20 ms frame at our rate.
    pub fn frame_len(&self) -> usize {
        (self.pcm_rate / 50) as usize
    }

    /// The next signal request to send.
    pub fn poll_request(&mut self) -> Option<proto::SignalRequest> {
        self.requests.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// A signal response from the server.
    pub fn handle_signal(&mut self, now: Instant, response: proto::SignalResponse) {
        use proto::signal_response::Message as M;
        let Some(message) = response.message else {
            return;
        };
        match message {
            M::Join(join) => self.on_join(now, join),
            M::Offer(offer) => self.on_subscriber_offer(now, offer),
            M::Answer(answer) => {
                let sdp = answer.sdp;
                if let Err(e) = self.publisher.accept_answer(now, sdp) {
                    warn!(error = %e, "publisher answer refused");
                }
            }
            M::Trickle(trickle) => match proto::SignalTarget::try_from(trickle.target) {
                Ok(proto::SignalTarget::Subscriber) => self
                    .subscriber
                    .add_remote_candidate(&trickle.candidate_init),
                _ => self.publisher.add_remote_candidate(&trickle.candidate_init),
            },
            M::TrackPublished(published) => self.on_published(now, published),
            M::Update(update) => self
                .events
                .push_back(ClientEvent::Participants(update.participants)),
            M::Leave(leave) => self.events.push_back(ClientEvent::Left(leave)),
            _ => {}
        }
    }

    fn on_join(&mut self, now: Instant, join: proto::JoinResponse) {
        if join.ping_interval > 0 {
            // The server's number, bounded: it is added to Instants.
            let secs = u64::from(join.ping_interval.unsigned_abs()).min(MAX_PING_INTERVAL_SECS);
            self.ping_interval = Duration::from_secs(secs);
        }
        self.next_ping = Some(now + self.ping_interval);
        self.requests
            .push_back(request(proto::signal_request::Message::AddTrack(
                proto::AddTrackRequest {
                    cid: MICROPHONE_CID.into(),
                    name: "microphone".into(),
                    r#type: proto::TrackType::Audio as i32,
                    source: proto::TrackSource::Microphone as i32,
                    ..Default::default()
                },
            )));
        self.events.push_back(ClientEvent::Joined(Box::new(join)));
    }

    fn on_subscriber_offer(&mut self, now: Instant, offer: proto::SessionDescription) {
        match self.subscriber.answer(now, offer.sdp) {
            Ok(sdp) => {
                self.requests
                    .push_back(request(proto::signal_request::Message::Answer(
                        crate::models::session_description("answer", sdp, offer.id),
                    )));
                self.trickle(Side::Subscriber);
            }
            Err(e) => warn!(error = %e, "subscriber offer refused"),
        }
    }

    fn on_published(&mut self, now: Instant, published: proto::TrackPublishedResponse) {
        if published.cid != MICROPHONE_CID || self.microphone.is_some() {
            return;
        }
        let sid = published.track.map(|t| t.sid).unwrap_or_default();
        let ssrc = random_u32();
        let settings = OpusSettings {
            pcm_rate: self.pcm_rate,
            ..OpusSettings::default()
        };
        let encoder = match OpusEncoder::new(&settings) {
            Ok(encoder) => encoder,
            Err(e) => return warn!(error = %e, "no Opus encoder"),
        };
        let sender = match self
            .publisher
            .add_audio_track(MICROPHONE_CID, MICROPHONE_CID, ssrc)
        {
            Ok(sender) => sender,
            Err(e) => return warn!(error = %e, "microphone track not added"),
        };
        self.microphone = Some(Microphone {
            sender,
            ssrc,
            sequence: (random_u32() & 0xffff) as u16,
            timestamp: random_u32(),
            encoder,
        });
        match self.publisher.offer(now) {
            Ok(sdp) => {
                self.publisher_offer_id = self.publisher_offer_id.wrapping_add(1).max(1);
                self.requests
                    .push_back(request(proto::signal_request::Message::Offer(
                        crate::models::session_description("offer", sdp, self.publisher_offer_id),
                    )));
                self.trickle(Side::Publisher);
            }
            Err(e) => warn!(error = %e, "publisher offer not made"),
        }
        self.events.push_back(ClientEvent::Published(sid));
    }

    fn trickle(&mut self, side: Side) {
        let trickle = match side {
            Side::Subscriber => self.subscriber.trickle(proto::SignalTarget::Subscriber),
            Side::Publisher => self.publisher.trickle(proto::SignalTarget::Publisher),
        };
        self.requests
            .push_back(request(proto::signal_request::Message::Trickle(trickle)));
    }

    /// Sets our attributes on the server (those given; an empty value
    /// deletes one), as `set_attributes` does in the SDKs.
    pub fn update_attributes(&mut self, attributes: HashMap<String, String>) {
        self.requests
            .push_back(request(proto::signal_request::Message::UpdateMetadata(
                proto::UpdateParticipantMetadata {
                    attributes,
                    ..Default::default()
                },
            )));
    }

    /// Leaves the room (the driver sends the request, then closes).
    pub fn leave(&mut self) {
        self.requests
            .push_back(request(proto::signal_request::Message::Leave(
                proto::LeaveRequest {
                    reason: proto::DisconnectReason::ClientInitiated as i32,
                    ..Default::default()
                },
            )));
    }

    /// Sends one 20 ms frame of our microphone (dropped until the
    /// publisher transport is up).
    pub fn send_audio(&mut self, now: Instant, frame: &[i16]) {
        let whole_frame = frame.len() == self.frame_len();
        let Some(microphone) = self.microphone.as_mut() else {
            return;
        };
        // The RTP clock of Opus is 48 kHz whatever the PCM rate.
        microphone.timestamp = microphone.timestamp.wrapping_add(960);
        if !self.publisher_connected || !whole_frame {
            return;
        }
        let n = match microphone.encoder.encode(frame, &mut self.packet) {
            Ok(n) => n.min(self.packet.len()),
            Err(e) => return debug!(error = %e, "frame not encoded"),
        };
        microphone.sequence = microphone.sequence.wrapping_add(1);
        let header = rtc::rtp::header::Header {
            version: 2,
            payload_type: OPUS_PAYLOAD_TYPE,
            sequence_number: microphone.sequence,
            timestamp: microphone.timestamp,
            ssrc: microphone.ssrc,
            ..Default::default()
        };
        let (sender, payload) = (microphone.sender, Bytes::copy_from_slice(&self.packet[..n]));
        if let Err(e) = self.publisher.send_opus(now, sender, header, payload) {
            debug!(error = %e, "microphone RTP not sent");
        }
    }

    /// Sends a data packet on the publisher's reliable (or lossy) channel:
    /// a reliable one waits for its channel to open (up to a bound), a
    /// lossy one is dropped until then (`false`).
    pub fn send_data(&mut self, now: Instant, packet: &proto::DataPacket, reliable: bool) -> bool {
        let (label, until_open) = if reliable {
            ("_reliable", UntilOpen::Queue)
        } else {
            ("_lossy", UntilOpen::Drop)
        };
        self.publisher
            .send_data(now, label, &packet.encode_to_vec(), until_open)
    }

    /// Mixes the next 20 ms of every remote track into `out` (one frame at
    /// our rate); `false` when no track had a whole frame.
    pub fn pull_mix(&mut self, out: &mut [i16]) -> bool {
        let frame_len = self.frame_len();
        if out.len() != frame_len {
            return false;
        }
        out.fill(0);
        let mut any = false;
        for track in self.remote.values_mut() {
            if track.pending.len() < frame_len {
                continue;
            }
            for (sample, add) in out.iter_mut().zip(track.pending.drain(..frame_len)) {
                *sample = sample.saturating_add(add);
            }
            any = true;
        }
        any
    }

    /// When [`Client::handle_timeout`] is due.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        [
            self.subscriber.poll_timeout(),
            self.publisher.poll_timeout(),
            self.next_ping,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.subscriber.handle_timeout(now);
        self.publisher.handle_timeout(now);
        if self.next_ping.is_some_and(|at| at <= now) {
            self.requests
                .push_back(request(proto::signal_request::Message::Ping(unix_ms())));
            self.next_ping = Some(now + self.ping_interval);
        }
        self.after_io(now);
    }

    /// A datagram arrived on `side`'s socket.
    pub fn handle_datagram(&mut self, now: Instant, side: Side, from: SocketAddr, data: &[u8]) {
        match side {
            Side::Subscriber => self.subscriber.handle_datagram(now, from, data),
            Side::Publisher => self.publisher.handle_datagram(now, from, data),
        }
        self.after_io(now);
    }

    /// The next datagram to send: from which transport's socket, to where.
    pub fn poll_transmit(&mut self) -> Option<(Side, SocketAddr, Vec<u8>)> {
        if let Some((to, data)) = self.subscriber.poll_transmit() {
            return Some((Side::Subscriber, to, data.to_vec()));
        }
        let (to, data) = self.publisher.poll_transmit()?;
        Some((Side::Publisher, to, data.to_vec()))
    }

    fn after_io(&mut self, now: Instant) {
        while let Some(event) = self.subscriber.poll_event() {
            self.on_peer_event(Side::Subscriber, event);
        }
        while let Some(event) = self.publisher.poll_event() {
            self.on_peer_event(Side::Publisher, event);
        }
        // A channel that opened takes what waited for it.
        self.publisher.flush_waiting(now);
        while let Some(message) = self.subscriber.poll_read() {
            match message.message {
                RTCMessage::RtpPacket(_, packet)
                    if packet.header.payload_type == OPUS_PAYLOAD_TYPE =>
                {
                    self.on_opus(packet.header.ssrc, &packet.payload);
                }
                RTCMessage::DataChannelMessage(_, m) => match proto::DataPacket::decode(m.data) {
                    Ok(packet) => self.events.push_back(ClientEvent::Data(Box::new(packet))),
                    Err(_) => debug!("a data channel message that is not a DataPacket"),
                },
                _ => {}
            }
        }
        // The publisher carries nothing to us but its own RTCP.
        while self.publisher.poll_read().is_some() {}
    }

    fn on_peer_event(&mut self, side: Side, event: RTCPeerConnectionEvent) {
        if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
            info!(?side, %state, "WebRTC transport (client)");
            if side == Side::Publisher {
                self.publisher_connected = state == RTCPeerConnectionState::Connected;
            }
            self.events.push_back(ClientEvent::Transport(side, state));
        }
    }

    fn on_opus(&mut self, ssrc: u32, payload: &[u8]) {
        let frame_len = self.frame_len();
        let track = match self.remote.entry(ssrc) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                match OpusDecoder::new(self.pcm_rate) {
                    Ok(decoder) => entry.insert(RemoteTrack {
                        decoder,
                        pending: VecDeque::with_capacity(frame_len * MAX_PENDING_FRAMES),
                    }),
                    Err(e) => return warn!(error = %e, "no Opus decoder"),
                }
            }
        };
        let decoded = match track.decoder.decode(payload, &mut self.scratch) {
            Ok(n) => n.min(MAX_DECODED),
            Err(e) => return debug!(error = %e, "Opus packet not decoded"),
        };
        track.pending.extend(&self.scratch[..decoded]);
        let most = frame_len * MAX_PENDING_FRAMES;
        if track.pending.len() > most {
            let excess = track.pending.len() - most;
            track.pending.drain(..excess);
        }
    }
}

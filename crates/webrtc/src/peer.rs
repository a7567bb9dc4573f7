//! One peer connection of a participant (its publisher or its subscriber
//! transport): an ICE-lite, DTLS-SRTP, SCTP `rtc::RTCPeerConnection` with
//! Opus only, fed datagrams and time by the driver.

use bytes::{Bytes, BytesMut};
use rtc::data_channel::{RTCDataChannelId, RTCDataChannelInit};
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_OPUS};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::message::TaggedRTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The payload type of Opus, as LiveKit's server and clients number it.
pub const OPUS_PAYLOAD_TYPE: u8 = 111;

/// Why a peer connection step failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PeerError(String);

impl From<rtc::shared::error::Error> for PeerError {
    fn from(e: rtc::shared::error::Error) -> PeerError {
        PeerError(e.to_string())
    }
}

fn opus() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: OPUS_PAYLOAD_TYPE,
    }
}

/// ICE timings. A lite agent never sends checks of its own, so it sees
/// the client only through the client's checks (every 2.5 s or so from
/// libwebrtc once connected): the default 5 s "disconnected" would flap.
const ICE_DISCONNECTED_AFTER: Duration = Duration::from_secs(15);
const ICE_FAILED_AFTER: Duration = Duration::from_secs(30);
const ICE_KEEPALIVE: Duration = Duration::from_secs(2);

/// A peer connection bound to one local UDP address.
pub struct Peer {
    pc: RTCPeerConnection,
    /// The address the client reaches us at (host candidate).
    local: SocketAddr,
    candidate: RTCIceCandidateInit,
    /// Data channels open now, by label.
    open_channels: Vec<(String, RTCDataChannelId)>,
    /// Messages for a channel that is not open yet, in order, with their
    /// total size: the client's channels open a few round trips after the
    /// transport connects, and a caller's first digit must not be lost in
    /// that window.
    waiting: VecDeque<(String, Bytes)>,
    waiting_bytes: usize,
    /// A channel opened since what waits was last looked at.
    opened: bool,
}

/// What becomes of a message for a data channel that is not open (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UntilOpen {
    /// Kept, and sent in order once the channel opens (reliable data).
    Queue,
    /// Dropped (lossy data).
    Drop,
}

/// Most messages kept for channels not open yet; a client that never opens
/// them costs no more than this.
const MAX_WAITING_MESSAGES: usize = 256;
/// Most bytes kept for channels not open yet.
const MAX_WAITING_BYTES: usize = 256 * 1024;

impl Peer {
    /// A server's peer connection (ICE-lite) whose only candidate is
    /// `advertised` (the UDP socket the driver reads for it).
    pub fn new(now: Instant, advertised: SocketAddr) -> Result<Peer, PeerError> {
        let settings = SettingEngineBuilder::new()
            .with_lite(true)
            // On the transport the client offers, answer as the DTLS server:
            // the SCTP side of the rtc crate then accepts the association
            // the client starts (as a DTLS client it would only start its
            // own, and refuse the client's INIT).
            .with_answering_dtls_role(RTCDtlsRole::Server)
            .with_ice_timeouts(
                Some(ICE_DISCONNECTED_AFTER),
                Some(ICE_FAILED_AFTER),
                Some(ICE_KEEPALIVE),
            )
            .build();
        Peer::build(now, advertised, settings)
    }

    /// A client's peer connection (a full ICE agent, which checks the
    /// server's candidates; DTLS client when it answers), for joining a
    /// room on a LiveKit server ([`crate::client::Client`]).
    pub fn client(now: Instant, local: SocketAddr) -> Result<Peer, PeerError> {
        let settings = SettingEngineBuilder::new()
            .with_answering_dtls_role(RTCDtlsRole::Client)
            .build();
        Peer::build(now, local, settings)
    }

    fn build(
        now: Instant,
        advertised: SocketAddr,
        settings: rtc::peer_connection::configuration::setting_engine::SettingEngine,
    ) -> Result<Peer, PeerError> {
        let mut media = MediaEngine::default();
        media.register_codec(opus(), RtpCodecKind::Audio)?;
        let registry = register_default_interceptors(Registry::new(), &mut media)?;
        let pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings)
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(now)?;
        let host = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: advertised.ip().to_string(),
                port: advertised.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()?;
        let candidate = RTCIceCandidate::from(&host).to_json()?;
        Ok(Peer {
            pc,
            local: advertised,
            candidate,
            open_channels: Vec::new(),
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            opened: false,
        })
    }

    /// The connection itself, for what this wrapper does not cover.
    pub fn pc(&mut self) -> &mut RTCPeerConnection {
        &mut self.pc
    }

    /// Adds LiveKit's two data channels (the server's side of the
    /// subscriber transport): `_reliable` ordered, `_lossy` unordered
    /// without retransmissions.
    pub fn add_data_channels(&mut self) -> Result<(), PeerError> {
        self.pc.create_data_channel(
            "_reliable",
            Some(RTCDataChannelInit {
                ordered: true,
                ..Default::default()
            }),
        )?;
        self.pc.create_data_channel(
            "_lossy",
            Some(RTCDataChannelInit {
                ordered: false,
                max_retransmits: Some(0),
                ..Default::default()
            }),
        )?;
        Ok(())
    }

    /// Adds a send-only Opus track: `stream_id` and `track_id` become the
    /// SDP's `a=msid` (LiveKit: `PA_…|TR_…` and `TR_…`).
    pub fn add_audio_track(
        &mut self,
        stream_id: &str,
        track_id: &str,
        ssrc: u32,
    ) -> Result<RTCRtpSenderId, PeerError> {
        let track = MediaStreamTrack::new(
            stream_id.to_owned(),
            track_id.to_owned(),
            track_id.to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: opus().rtp_codec,
                ..Default::default()
            }],
        );
        Ok(self.pc.add_track(track)?)
    }

    /// Removes a track added with [`Peer::add_audio_track`].
    pub fn remove_track(&mut self, sender: RTCRtpSenderId) -> Result<(), PeerError> {
        Ok(self.pc.remove_track(sender)?)
    }

    /// Makes an offer, sets it as the local description and returns its SDP.
    pub fn offer(&mut self, now: Instant) -> Result<String, PeerError> {
        let offer = self.pc.create_offer(None)?;
        self.pc.set_local_description(now, offer)?;
        self.add_local_candidate()?;
        self.local_sdp()
    }

    /// Takes the client's answer to our offer.
    pub fn accept_answer(&mut self, now: Instant, sdp: String) -> Result<(), PeerError> {
        let answer = RTCSessionDescription::answer(sdp)?;
        Ok(self.pc.set_remote_description(now, answer)?)
    }

    /// Answers the client's offer; returns the answer's SDP.
    pub fn answer(&mut self, now: Instant, sdp: String) -> Result<String, PeerError> {
        let offer = RTCSessionDescription::offer(sdp)?;
        self.pc.set_remote_description(now, offer)?;
        let answer = self.pc.create_answer(None)?;
        self.pc.set_local_description(now, answer)?;
        self.add_local_candidate()?;
        self.local_sdp()
    }

    fn add_local_candidate(&mut self) -> Result<(), PeerError> {
        // A second description keeps the candidate the agent already has.
        if let Err(e) = self.pc.add_local_candidate(self.candidate.clone()) {
            tracing::trace!(error = %e, "local candidate not added again");
        }
        Ok(())
    }

    fn local_sdp(&self) -> Result<String, PeerError> {
        self.pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or_else(|| PeerError("no local description".into()))
    }

    /// Our candidate as the JSON `RTCIceCandidateInit` LiveKit's trickle
    /// carries, tied to the first m-line (every client needs `sdpMid` and
    /// `sdpMLineIndex` set).
    pub fn candidate_json(&self) -> String {
        let mid = self
            .pc
            .local_description()
            .and_then(|d| first_mid(&d.sdp))
            .unwrap_or_else(|| "0".to_owned());
        serde_json::json!({
            "candidate": self.candidate.candidate,
            "sdpMid": mid,
            "sdpMLineIndex": 0,
        })
        .to_string()
    }

    /// Our candidate as the trickle message for `target` (either side of
    /// the signalling sends its own this way).
    pub fn trickle(
        &self,
        target: livekit_protocol::SignalTarget,
    ) -> livekit_protocol::TrickleRequest {
        livekit_protocol::TrickleRequest {
            candidate_init: self.candidate_json(),
            target: target as i32,
            ..Default::default()
        }
    }

    /// A candidate the client trickled (JSON `RTCIceCandidateInit`). A lite
    /// agent learns the client's address from its checks anyway, so one
    /// that does not parse is only logged.
    pub fn add_remote_candidate(&mut self, json: &str) {
        #[derive(serde::Deserialize)]
        struct Init {
            candidate: String,
            #[serde(rename = "sdpMid")]
            sdp_mid: Option<String>,
            #[serde(rename = "sdpMLineIndex")]
            sdp_mline_index: Option<u16>,
            #[serde(rename = "usernameFragment")]
            username_fragment: Option<String>,
        }
        let Ok(init) = serde_json::from_str::<Init>(json) else {
            tracing::debug!("a trickled candidate that is not RTCIceCandidateInit JSON");
            return;
        };
        if init.candidate.is_empty() {
            return;
        }
        let init = RTCIceCandidateInit {
            candidate: init.candidate,
            sdp_mid: init.sdp_mid,
            sdp_mline_index: init.sdp_mline_index,
            username_fragment: init.username_fragment,
            ..Default::default()
        };
        if let Err(e) = self.pc.add_remote_candidate(init) {
            tracing::debug!(error = %e, "trickled candidate refused");
        }
    }

    /// A datagram from `from` arrived on our socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let message = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        if let Err(e) = self.pc.handle_read(message) {
            tracing::trace!(error = %e, %from, "datagram not taken");
        }
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Err(e) = self.pc.handle_timeout(now) {
            tracing::debug!(error = %e, "peer connection timer");
        }
    }

    /// The next datagram to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        self.pc
            .poll_write()
            .map(|m| (m.transport.peer_addr, m.message))
    }

    /// When [`Peer::handle_timeout`] is due next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.pc.poll_timeout()
    }

    /// The next state change, data channel or track event.
    pub fn poll_event(&mut self) -> Option<RTCPeerConnectionEvent> {
        let event = self.pc.poll_event()?;
        match &event {
            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(id)) => {
                if let Some(channel) = self.pc.data_channel(*id) {
                    let label = channel.label().to_owned();
                    self.open_channels.push((label, *id));
                    self.opened = true;
                }
            }
            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnClose(id)) => {
                self.open_channels.retain(|(_, open)| open != id);
            }
            _ => {}
        }
        Some(event)
    }

    /// The label of an open data channel.
    pub fn channel_label(&self, id: RTCDataChannelId) -> Option<&str> {
        self.open_channels
            .iter()
            .find(|(_, open)| *open == id)
            .map(|(label, _)| label.as_str())
    }

    /// The next RTP packet, RTCP or data channel message received.
    pub fn poll_read(&mut self) -> Option<TaggedRTCMessage> {
        self.pc.poll_read()
    }

    /// Sends one Opus packet on a track added with [`Peer::add_audio_track`].
    pub fn send_opus(
        &mut self,
        now: Instant,
        sender: RTCRtpSenderId,
        header: rtc::rtp::header::Header,
        payload: Bytes,
    ) -> Result<(), PeerError> {
        let Some(mut rtp_sender) = self.pc.rtp_sender(sender) else {
            return Err(PeerError("no such sender".into()));
        };
        Ok(rtp_sender.write_rtp(now, rtc::rtp::Packet { header, payload })?)
    }

    /// Sends a binary message on the data channel labelled `label`; while
    /// it is not open, keeps it (up to a bound) or drops it as `until_open`
    /// says. `false`: dropped.
    pub fn send_data(
        &mut self,
        now: Instant,
        label: &str,
        data: &[u8],
        until_open: UntilOpen,
    ) -> bool {
        // Once its channel is open nothing of it waits any more, so this
        // message cannot overtake an earlier one.
        self.flush_waiting(now);
        match (self.channel_id(label), until_open) {
            (Some(id), _) => self.send_now(now, id, data),
            (_, UntilOpen::Drop) => false,
            (_, UntilOpen::Queue) => {
                let fits = self.waiting.len() < MAX_WAITING_MESSAGES
                    && self.waiting_bytes.saturating_add(data.len()) <= MAX_WAITING_BYTES;
                if fits {
                    self.waiting_bytes += data.len();
                    self.waiting
                        .push_back((label.to_owned(), Bytes::copy_from_slice(data)));
                }
                fits
            }
        }
    }

    /// Sends, in order, what waited for a channel that has opened since;
    /// nothing to do (on every datagram) until one opens.
    pub fn flush_waiting(&mut self, now: Instant) {
        if !std::mem::take(&mut self.opened) || self.waiting.is_empty() {
            return;
        }
        let mut still = VecDeque::new();
        while let Some((label, data)) = self.waiting.pop_front() {
            match self.channel_id(&label) {
                Some(id) => {
                    self.waiting_bytes -= data.len();
                    self.send_now(now, id, &data);
                }
                None => still.push_back((label, data)),
            }
        }
        self.waiting = still;
    }

    fn send_now(&mut self, now: Instant, id: RTCDataChannelId, data: &[u8]) -> bool {
        match self.pc.data_channel(id) {
            Some(mut channel) => channel.send(now, BytesMut::from(data)).is_ok(),
            None => false,
        }
    }

    fn channel_id(&self, label: &str) -> Option<RTCDataChannelId> {
        self.open_channels
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, id)| *id)
    }
}

/// The first `a=mid:` of an SDP.
fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .map(|m| m.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        let now = Instant::now();
        Peer::new(now, SocketAddr::from(([127, 0, 0, 1], 40_000)))
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn reliable_messages_wait_for_their_channel_up_to_a_bound_and_lossy_ones_do_not() {
        let mut peer = peer();
        let now = Instant::now();
        assert!(!peer.send_data(now, "_lossy", b"x", UntilOpen::Drop));
        for _ in 0..MAX_WAITING_MESSAGES {
            assert!(peer.send_data(now, "_reliable", b"digit", UntilOpen::Queue));
        }
        assert!(
            !peer.send_data(now, "_reliable", b"one more", UntilOpen::Queue),
            "a client that never opens its channel costs a bounded queue"
        );
        assert_eq!(peer.waiting.len(), MAX_WAITING_MESSAGES);
        // Nothing is open: flushing keeps everything, in order.
        peer.flush_waiting(now);
        assert_eq!(peer.waiting_bytes, MAX_WAITING_MESSAGES * b"digit".len());
    }

    #[test]
    fn the_waiting_bytes_are_bounded_too() {
        let mut peer = peer();
        let now = Instant::now();
        let big = vec![0u8; MAX_WAITING_BYTES / 2 + 1];
        assert!(peer.send_data(now, "_reliable", &big, UntilOpen::Queue));
        assert!(!peer.send_data(now, "_reliable", &big, UntilOpen::Queue));
        assert_eq!(peer.waiting.len(), 1);
    }
}

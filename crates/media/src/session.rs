//! The per-call media session: a sans-IO state machine in the style of
//! quinn-proto and str0m.
//!
//! Feed it datagrams ([`MediaSession::handle_datagram`]) and time; once per
//! 20 ms call [`MediaSession::tick`] with the room's outbound frame and a
//! buffer for the inbound one; then drain [`MediaSession::poll_transmit`]
//! (datagrams to send) and [`MediaSession::poll_event`] (DTMF, timeouts,
//! latching). No sockets, no timers, no threads: the tokio driver in
//! [`crate::driver`] or a test with virtual time does the I/O.
//!
//! Inbound: SRTP unprotect → RTP parse → jitter buffer → decode (or conceal)
//! → resample to the room rate. Outbound: tone/DTMF/room audio → resample to
//! the codec rate → encode → RTP → SRTP protect. After construction a frame
//! allocates nothing on the plain-RTP path (see `tests/alloc.rs`).

use crate::codec::{
    AudioDecoder, AudioEncoder, CodecError, CodecKind, OpusSettings, MAX_ENCODED_FRAME,
};
use crate::dtmf::{DtmfDigit, DtmfFrame, DtmfReceiver, DtmfSendConfig, DtmfSender, InvalidDigit};
use crate::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout, PushOutcome};
use crate::resample::{FrameResampler, ResampleError};
use crate::rtcp::{self, ReceptionCounter, ReportInput};
use crate::rtp::{self, RTP_HEADER_LEN};
use crate::sdp::NegotiatedMedia;
use crate::srtp::{SrtpError, SrtpSession};
use crate::tones::{ToneGenerator, ToneKind, TonePlan, ToneSpec};
use rtc_rtcp::reception_report::ReceptionReport;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

/// Symmetric RTP (latching): where to send media. Whatever the mode, when
/// the signalling source is known only packets from the peer's addresses
/// (the SDP address and the signalling source) are taken, so a stranger
/// who guesses the port can neither inject audio nor steal the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Latching {
    /// Always send to the address in the peer's SDP.
    Off,
    /// Latch once, to the source of the first packet taken, when the SDP
    /// address is private/unusable or differs from that source; again only
    /// after a new offer.
    #[default]
    Auto,
    /// Follow the source of the latest packet taken (a NAT that rebinds the
    /// peer's port mid-call).
    On,
}

/// Per-call media settings (from trunk, rule or call configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// PCM rate of the frames exchanged with the room (48 kHz default).
    pub room_rate: u32,
    /// Opus settings, when Opus is the trunk codec.
    pub opus: OpusSettings,
    /// Jitter buffer depth bounds.
    pub jitter: JitterConfig,
    /// DTMF sending.
    pub dtmf: DtmfSendConfig,
    /// Symmetric RTP.
    pub latching: Latching,
    /// No RTP for this long ends the call (LiveKit default 15 s).
    pub media_timeout: Duration,
    /// Before the first packet, the allowance is this long (30 s).
    pub initial_media_timeout: Duration,
    /// Mean RTCP report interval (randomised ±50 % per RFC 3550 §6.2).
    pub rtcp_interval: Duration,
    /// Tone plan for dial tone and ringback.
    pub tone_plan: TonePlan,
    /// Tone level per component, dBFS.
    pub tone_level_dbfs: f32,
    /// RTCP CNAME.
    pub cname: String,
    /// The IP address the call's signalling comes from. When set, RTP and
    /// RTCP are taken only from it or from the address in the peer's SDP;
    /// `None` takes any source (media tests without signalling).
    pub signalling_source: Option<IpAddr>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            room_rate: 48_000,
            opus: OpusSettings::default(),
            jitter: JitterConfig::default(),
            dtmf: DtmfSendConfig::default(),
            latching: Latching::Auto,
            media_timeout: Duration::from_secs(15),
            initial_media_timeout: Duration::from_secs(30),
            rtcp_interval: Duration::from_secs(5),
            tone_plan: TonePlan::Us,
            tone_level_dbfs: -20.0,
            cname: "switchboard".into(),
            signalling_source: None,
        }
    }
}

/// Which socket a datagram arrived on or leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The RTP port (also RTCP when muxed).
    Rtp,
    /// The RTCP port (RTP port + 1).
    Rtcp,
}

/// A datagram to send.
#[derive(Debug, PartialEq, Eq)]
pub struct Transmit<'a> {
    /// Destination.
    pub destination: SocketAddr,
    /// The local socket to send from.
    pub channel: Channel,
    /// The bytes.
    pub data: &'a [u8],
}

/// Something the gateway should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// A DTMF digit arrived (reported once, at its start).
    Dtmf(DtmfDigit),
    /// No RTP for the configured timeout while media was expected.
    MediaTimeout {
        /// How long since the last packet (or since the start).
        silent_for: Duration,
    },
    /// RTP came back after a timeout.
    MediaResumed,
    /// Media is now sent to this address (symmetric RTP).
    Latched {
        /// Which stream.
        channel: Channel,
        /// The new destination.
        destination: SocketAddr,
    },
    /// The peer's SSRC changed (a new stream; the jitter buffer restarted).
    RemoteSsrcChanged {
        /// The new SSRC.
        ssrc: u32,
    },
    /// The peer said BYE in RTCP.
    RemoteBye,
    /// The digits queued by `send_dtmf` have all been sent (their tones,
    /// end packets and pauses played out in real time).
    DtmfSent,
}

/// What the inbound frame returned by [`MediaSession::tick`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameStatus {
    /// Decoded audio.
    Audio,
    /// At least part of it concealed a lost packet.
    Concealed,
    /// Nothing received: silence.
    Silence,
}

/// Per-call statistics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallStats {
    /// RTP packets sent.
    pub packets_sent: u64,
    /// Payload octets sent.
    pub octets_sent: u64,
    /// Valid RTP packets received (audio and telephone-event).
    pub packets_received: u64,
    /// Payload octets received.
    pub octets_received: u64,
    /// Cumulative packets lost on the inbound stream (RFC 3550; excludes resets).
    pub packets_lost: i64,
    /// Fraction lost in the last RTCP interval (0..1).
    pub fraction_lost: f32,
    /// Inbound interarrival jitter, ms.
    pub jitter_ms: f64,
    /// The jitter buffer's counters.
    pub jitter_buffer: JitterStats,
    /// Audio held in the jitter buffer now, ms.
    pub jitter_buffer_depth_ms: u32,
    /// Frames concealed.
    pub concealed_frames: u64,
    /// What the peer's last report said about our stream.
    pub remote_fraction_lost: Option<f32>,
    /// The peer's cumulative loss of our packets.
    pub remote_packets_lost: Option<u32>,
    /// Jitter the peer measured on our stream, ms.
    pub remote_jitter_ms: Option<f64>,
    /// Round-trip time from RTCP.
    pub round_trip: Option<Duration>,
    /// RTP packets refused by SRTP (authentication failure or replay).
    pub srtp_rejected: u64,
    /// RTCP packets refused by SRTCP (including plain RTCP on an SRTP call).
    pub srtcp_rejected: u64,
    /// Datagrams that were not valid RTP/RTCP.
    pub malformed: u64,
    /// RTP with a payload type we did not negotiate.
    pub unknown_payload_type: u64,
    /// Packets from a source other than the peer's, while latched.
    pub foreign_source: u64,
    /// DTMF digits received.
    pub dtmf_received: u64,
    /// RTCP packets sent and received.
    pub rtcp_sent: u64,
    /// RTCP packets received.
    pub rtcp_received: u64,
    /// Datagrams dropped because the transmit queue was full.
    pub transmit_overflow: u64,
}

/// Errors creating or updating a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Codec setup failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Resampler setup failed.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// SRTP setup failed.
    #[error(transparent)]
    Srtp(#[from] SrtpError),
    /// DTMF requested but the peer did not negotiate telephone-event.
    #[error("the peer did not negotiate telephone-event")]
    NoTelephoneEvent,
    /// A digit string with an invalid character.
    #[error(transparent)]
    InvalidDigit(#[from] InvalidDigit),
}

const MAX_DATAGRAM: usize = 1500;
const TX_SLOTS: usize = 8;

struct TxSlot {
    destination: SocketAddr,
    channel: Channel,
    len: usize,
    data: Box<[u8; MAX_DATAGRAM]>,
}

struct Pipeline {
    codec: CodecKind,
    pcm_rate: u32,
    clock_rate: u32,
    encoder: AudioEncoder,
    decoder: AudioDecoder,
    to_room: FrameResampler,
    from_room: FrameResampler,
}

/// The Opus settings for a room at `room_rate`: the configured ones, or,
/// when the room is narrower and its rate one Opus codes at, that rate
/// (at 8 kHz with the narrowband complexity and bitrate, as
/// [`OpusSettings::narrowband_capacity`]).
fn opus_for_room(configured: &OpusSettings, room_rate: u32) -> OpusSettings {
    const OPUS_RATES: [u32; 4] = [8_000, 12_000, 16_000, 24_000];
    if room_rate >= configured.pcm_rate || !OPUS_RATES.contains(&room_rate) {
        return configured.clone();
    }
    let (complexity, bitrate) = if room_rate == 8_000 {
        (
            configured.narrowband_complexity,
            configured.narrowband_bitrate,
        )
    } else {
        (configured.complexity, configured.bitrate)
    };
    OpusSettings {
        pcm_rate: room_rate,
        complexity,
        bitrate,
        ..configured.clone()
    }
}

impl Pipeline {
    fn new(codec: CodecKind, config: &SessionConfig) -> Result<Pipeline, SessionError> {
        let pcm_rate = codec.pcm_rate(&config.opus);
        Ok(Pipeline {
            codec,
            pcm_rate,
            clock_rate: codec.clock_rate(),
            encoder: AudioEncoder::new(codec, &config.opus)?,
            decoder: AudioDecoder::new(codec, &config.opus)?,
            to_room: FrameResampler::new(pcm_rate, config.room_rate)?,
            from_room: FrameResampler::new(config.room_rate, pcm_rate)?,
        })
    }

    /// Keeps the codec and points the resamplers at another room rate.
    fn set_room_rate(&mut self, room_rate: u32) -> Result<(), SessionError> {
        let to_room = FrameResampler::new(self.pcm_rate, room_rate)?;
        self.from_room = FrameResampler::new(room_rate, self.pcm_rate)?;
        self.to_room = to_room;
        Ok(())
    }

    fn codec_frame(&self) -> usize {
        (self.pcm_rate / 50) as usize
    }

    fn clock_frame(&self) -> u32 {
        self.clock_rate / 50
    }
}

/// One call's media. See the module docs.
pub struct MediaSession {
    config: SessionConfig,
    media: NegotiatedMedia,
    pipeline: Pipeline,
    jitter: JitterBuffer,
    srtp: Option<SrtpSession>,

    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    first_packet_sent: bool,
    sent_since_report: bool,

    remote_ssrc: Option<u32>,
    reception: ReceptionCounter,
    dtmf_rx: DtmfReceiver,
    dtmf_tx: DtmfSender,
    /// The Opus settings configured, before any narrower room changed them.
    configured_opus: OpusSettings,
    /// The call-progress tone playing, and what it is (to make it again at
    /// another room rate).
    tone: Option<(ToneKind, ToneGenerator)>,

    rtp_target: SocketAddr,
    rtcp_target: SocketAddr,
    rtp_latched: bool,
    rtcp_latched: bool,

    started: Instant,
    wall_start: SystemTime,
    last_rtp: Option<Instant>,
    timeout_reference: Instant,
    timed_out: bool,
    next_rtcp: Instant,
    last_sr_received: Option<(u32, Instant)>,

    fifo: Vec<i16>,
    fifo_len: usize,
    codec_scratch: Vec<i16>,
    room_scratch: Vec<i16>,
    rx_plain: Box<[u8; MAX_DATAGRAM]>,
    tx_plain: Box<[u8; MAX_DATAGRAM]>,
    tx_slots: Vec<TxSlot>,
    tx_head: usize,
    tx_count: usize,
    events: VecDeque<MediaEvent>,
    stats: CallStats,
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // A fixed SSRC on RNG failure still works; collisions are the peer's to resolve.
    let _ = getrandom::fill(&mut b);
    u32::from_be_bytes(b)
}

fn is_private_or_unusable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_unspecified()
                || v4.is_link_local()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

impl MediaSession {
    /// A session for the negotiated `media`, starting at `now`.
    pub fn new(
        config: SessionConfig,
        media: NegotiatedMedia,
        now: Instant,
    ) -> Result<MediaSession, SessionError> {
        let pipeline = Pipeline::new(media.codec, &config)?;
        let srtp = match &media.srtp {
            Some(keys) => Some(SrtpSession::new(&keys.local, &keys.remote)?),
            None => None,
        };
        let max_codec = (pipeline.pcm_rate / 50) as usize;
        let room_frame = (config.room_rate / 50) as usize;
        let jitter = JitterBuffer::new(config.jitter, pipeline.clock_rate);
        let tx_slots = (0..TX_SLOTS)
            .map(|_| TxSlot {
                destination: media.remote_rtp,
                channel: Channel::Rtp,
                len: 0,
                data: Box::new([0u8; MAX_DATAGRAM]),
            })
            .collect();
        let first_rtcp = now + config.rtcp_interval / 2;
        Ok(MediaSession {
            dtmf_tx: DtmfSender::new(config.dtmf),
            rtp_target: media.remote_rtp,
            rtcp_target: media.remote_rtcp,
            pipeline,
            jitter,
            srtp,
            ssrc: random_u32(),
            sequence: random_u32() as u16,
            timestamp: random_u32(),
            first_packet_sent: false,
            sent_since_report: false,
            remote_ssrc: None,
            reception: ReceptionCounter::default(),
            dtmf_rx: DtmfReceiver::new(),
            configured_opus: config.opus.clone(),
            tone: None,
            rtp_latched: false,
            rtcp_latched: false,
            started: now,
            wall_start: SystemTime::now(),
            last_rtp: None,
            timeout_reference: now,
            timed_out: false,
            next_rtcp: first_rtcp,
            last_sr_received: None,
            // Room for the longest packet (120 ms of Opus at 48 kHz) plus a frame.
            fifo: vec![0; 5760 + max_codec * 2],
            fifo_len: 0,
            codec_scratch: vec![0; max_codec.max(5760)],
            room_scratch: vec![0; room_frame],
            rx_plain: Box::new([0u8; MAX_DATAGRAM]),
            tx_plain: Box::new([0u8; MAX_DATAGRAM]),
            tx_slots,
            tx_head: 0,
            tx_count: 0,
            events: VecDeque::with_capacity(16),
            stats: CallStats::default(),
            media,
            config,
        })
    }

    /// The negotiated media in force.
    pub fn media(&self) -> &NegotiatedMedia {
        &self.media
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Samples per room frame (20 ms at the room rate).
    pub fn room_frame_len(&self) -> usize {
        (self.config.room_rate / 50) as usize
    }

    /// Follows the room to another rate (rooms mix at the highest rate
    /// their members need, which changes as they come and go): the
    /// resamplers, the room-side buffer and a playing tone are made for
    /// the new rate. Resampler state is lost, so the first frame after a
    /// change may click.
    ///
    /// Opus follows a room narrower than its configured PCM rate down
    /// (the encoder and decoder are remade at the room's rate, 16 kbit/s at
    /// 8 kHz): it need not code detail the room has not got, and then no
    /// resampling is left either.
    pub fn set_room_rate(&mut self, room_rate: u32) -> Result<(), SessionError> {
        if room_rate == self.config.room_rate {
            return Ok(());
        }
        let mut config = self.config.clone();
        config.room_rate = room_rate;
        config.opus = opus_for_room(&self.configured_opus, room_rate);
        if self.pipeline.codec == CodecKind::Opus && config.opus != self.config.opus {
            self.pipeline = Pipeline::new(CodecKind::Opus, &config)?;
            // Decoded samples at the old rate.
            self.fifo_len = 0;
        } else {
            self.pipeline.set_room_rate(room_rate)?;
        }
        self.config = config;
        self.room_scratch = vec![0; (room_rate / 50) as usize];
        let playing = self.tone.as_ref().map(|(kind, _)| *kind);
        self.play_tone(playing);
        Ok(())
    }

    /// Where RTP currently goes.
    pub fn rtp_destination(&self) -> SocketAddr {
        self.rtp_target
    }

    /// Applies a re-negotiation (re-INVITE/UPDATE): codec, address, direction
    /// or keys. Unchanged parts keep their state (SRTP rollover, sequence).
    pub fn update(&mut self, media: NegotiatedMedia, now: Instant) -> Result<(), SessionError> {
        if media.codec != self.pipeline.codec {
            self.pipeline = Pipeline::new(media.codec, &self.config)?;
            self.jitter = JitterBuffer::new(self.config.jitter, self.pipeline.clock_rate);
            self.fifo_len = 0;
            self.remote_ssrc = None;
            self.reception.reset();
        }
        match (&mut self.srtp, &self.media.srtp, &media.srtp) {
            // Re-key only the direction whose key changed, so the other
            // keeps its rollover counter (which its receiver is tracking).
            (Some(session), Some(old), Some(new)) if old.local.suite == new.local.suite => {
                if old.local != new.local {
                    session.replace_outbound(&new.local)?;
                }
                if old.remote != new.remote {
                    session.replace_inbound(&new.remote)?;
                }
            }
            (_, old, new) if old != new => {
                self.srtp = match new {
                    Some(keys) => Some(SrtpSession::new(&keys.local, &keys.remote)?),
                    None => None,
                };
            }
            _ => {}
        }
        if media.remote_rtp != self.media.remote_rtp {
            self.rtp_target = media.remote_rtp;
            self.rtp_latched = false;
        }
        if media.remote_rtcp != self.media.remote_rtcp {
            self.rtcp_target = media.remote_rtcp;
            self.rtcp_latched = false;
        }
        if media.expects_inbound() != self.media.expects_inbound() {
            // Coming off hold starts a fresh timeout window.
            self.timeout_reference = now;
            self.timed_out = false;
        }
        self.media = media;
        Ok(())
    }

    /// Queues DTMF digits (`0-9*#A-D`, `w` = 0.5 s pause) to send as RFC 4733 events.
    pub fn send_dtmf(&mut self, digits: &str) -> Result<(), SessionError> {
        if self.media.telephone_event.is_none() {
            return Err(SessionError::NoTelephoneEvent);
        }
        Ok(self.dtmf_tx.queue(digits)?)
    }

    /// Plays a call-progress tone to the peer instead of room audio, or stops it.
    pub fn play_tone(&mut self, tone: Option<ToneKind>) {
        self.tone = tone.map(|kind| {
            let generator = ToneGenerator::new(
                ToneSpec::of(self.config.tone_plan, kind),
                self.config.room_rate,
                self.config.tone_level_dbfs,
            );
            (kind, generator)
        });
    }

    /// Changes the media timeout (per call), taking effect immediately.
    pub fn set_media_timeout(&mut self, timeout: Duration, initial: Duration) {
        self.config.media_timeout = timeout;
        self.config.initial_media_timeout = initial;
    }

    /// Statistics so far.
    pub fn stats(&self) -> CallStats {
        let mut stats = self.stats.clone();
        let highest = self.jitter.highest_sequence().unwrap_or(0);
        stats.packets_lost = self.reception.cumulative_lost(highest).max(0);
        stats.jitter_ms = self.jitter.jitter_ms();
        stats.jitter_buffer = self.jitter.stats();
        stats.jitter_buffer_depth_ms = self.jitter.depth_ms();
        stats
    }

    /// Next event, if any.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// Next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        if self.tx_count == 0 {
            return None;
        }
        let index = self.tx_head;
        self.tx_head = (self.tx_head + 1) % TX_SLOTS;
        self.tx_count -= 1;
        let slot = &self.tx_slots[index];
        Some(Transmit {
            destination: slot.destination,
            channel: slot.channel,
            data: &slot.data[..slot.len],
        })
    }

    /// The next instant [`Self::handle_timeout`] wants to run (RTCP or the
    /// media timeout). Frames are driven separately by [`Self::tick`].
    pub fn poll_timeout(&self) -> Instant {
        let media_deadline = self.timeout_deadline().unwrap_or(self.next_rtcp);
        self.next_rtcp.min(media_deadline)
    }

    fn timeout_deadline(&self) -> Option<Instant> {
        if self.timed_out || !self.media.expects_inbound() {
            return None;
        }
        // Timeouts come from API users; one too large to add is no timeout.
        match self.last_rtp {
            Some(last) if last >= self.timeout_reference => {
                last.checked_add(self.config.media_timeout)
            }
            // Nothing yet (or nothing since the hold ended): the longer allowance.
            Some(_) => self
                .timeout_reference
                .checked_add(self.config.media_timeout),
            None => self
                .timeout_reference
                .checked_add(self.config.initial_media_timeout),
        }
    }

    fn push_transmit(&mut self, channel: Channel, destination: SocketAddr, data_in_plain: usize) {
        if self.tx_count == TX_SLOTS {
            // Keep the newest audio: drop the oldest datagram.
            self.tx_head = (self.tx_head + 1) % TX_SLOTS;
            self.tx_count -= 1;
            self.stats.transmit_overflow += 1;
        }
        let index = (self.tx_head + self.tx_count) % TX_SLOTS;
        let slot = &mut self.tx_slots[index];
        let plain = &self.tx_plain[..data_in_plain];
        let len = match (&mut self.srtp, channel, is_rtcp_payload(plain)) {
            (Some(srtp), _, false) => srtp.protect_rtp(plain, &mut slot.data[..]),
            (Some(srtp), _, true) => srtp.protect_rtcp(plain, &mut slot.data[..]),
            (None, _, _) => {
                slot.data[..plain.len()].copy_from_slice(plain);
                Ok(plain.len())
            }
        };
        match len {
            Ok(len) => {
                slot.len = len;
                slot.destination = destination;
                slot.channel = channel;
                self.tx_count += 1;
            }
            Err(_) => self.stats.transmit_overflow += 1,
        }
    }

    /// Handles a datagram received on `channel` from `from` at `now`.
    /// Anything invalid is counted and dropped.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        channel: Channel,
        data: &[u8],
    ) {
        if data.len() > MAX_DATAGRAM || data.len() < 4 {
            self.stats.malformed += 1;
            return;
        }
        let rtcp = channel == Channel::Rtcp || rtp::is_rtcp(data);
        if rtcp {
            self.handle_rtcp(now, from, data);
            return;
        }
        let plain_len = match &mut self.srtp {
            Some(srtp) => match srtp.unprotect_rtp(data, &mut self.rx_plain[..]) {
                Ok(n) => n,
                Err(_) => {
                    self.stats.srtp_rejected += 1;
                    return;
                }
            },
            None => {
                self.rx_plain[..data.len()].copy_from_slice(data);
                data.len()
            }
        };
        let (payload_type, sequence, timestamp, ssrc, payload_range) =
            match rtp::parse_rtp(&self.rx_plain[..plain_len]) {
                Ok(p) => {
                    let start = p.payload.as_ptr() as usize - self.rx_plain.as_ptr() as usize;
                    (
                        p.payload_type,
                        p.sequence,
                        p.timestamp,
                        p.ssrc,
                        start..start + p.payload.len(),
                    )
                }
                Err(_) => {
                    self.stats.malformed += 1;
                    return;
                }
            };
        let is_audio = payload_type == self.media.receive_payload_type;
        let is_event = self
            .media
            .telephone_event
            .is_some_and(|(_, rx)| rx == payload_type);
        if !is_audio && !is_event {
            self.stats.unknown_payload_type += 1;
            return;
        }
        if !self.accept_source(from, Channel::Rtp) {
            return;
        }
        if self.remote_ssrc != Some(ssrc) {
            if self.remote_ssrc.is_some() {
                self.events
                    .push_back(MediaEvent::RemoteSsrcChanged { ssrc });
            }
            self.remote_ssrc = Some(ssrc);
            self.reception.reset();
        }
        let payload = &self.rx_plain[payload_range];
        self.stats.packets_received += 1;
        self.stats.octets_received += payload.len() as u64;
        self.last_rtp = Some(now);
        if self.timed_out {
            self.timed_out = false;
            self.events.push_back(MediaEvent::MediaResumed);
        }
        if is_event {
            if let Some(digit) = self.dtmf_rx.on_packet(timestamp, payload) {
                self.stats.dtmf_received += 1;
                self.events.push_back(MediaEvent::Dtmf(digit));
            }
            return;
        }
        let view = rtp::RtpView {
            marker: false,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            payload,
        };
        if self.jitter.push(now, &view) == PushOutcome::Reset {
            self.reception.reset();
        }
        if let Some(ext) = self.jitter.last_extended_sequence() {
            self.reception.on_packet(ext);
        }
    }

    fn accept_source(&mut self, from: SocketAddr, channel: Channel) -> bool {
        let (target, latched, sdp_addr) = match channel {
            Channel::Rtp => (self.rtp_target, self.rtp_latched, self.media.remote_rtp),
            Channel::Rtcp => (self.rtcp_target, self.rtcp_latched, self.media.remote_rtcp),
        };
        // Only the peer's own addresses: its SDP's, the one we send to, and
        // its signalling source. Anyone else is a stranger (RTP bleed).
        if let Some(signalling) = self.config.signalling_source {
            let ip = from.ip().to_canonical();
            let peer = [target.ip(), sdp_addr.ip(), signalling]
                .iter()
                .any(|known| known.to_canonical() == ip);
            if !peer {
                self.stats.foreign_source += 1;
                return false;
            }
        }
        let latch = match self.config.latching {
            Latching::Off => false,
            Latching::On => from != target,
            Latching::Auto => {
                !latched
                    && from != target
                    && (is_private_or_unusable(sdp_addr.ip()) || from != sdp_addr)
            }
        };
        if latched && self.config.latching == Latching::Auto && from != target {
            // After latching once, other sources are ignored (RTP injection).
            self.stats.foreign_source += 1;
            return false;
        }
        match channel {
            Channel::Rtp => self.rtp_latched = true,
            Channel::Rtcp => self.rtcp_latched = true,
        }
        if latch {
            match channel {
                Channel::Rtp => {
                    self.rtp_target = from;
                    if self.media.rtcp_mux {
                        self.rtcp_target = from;
                    }
                }
                Channel::Rtcp => self.rtcp_target = from,
            }
            self.events.push_back(MediaEvent::Latched {
                channel,
                destination: from,
            });
        }
        true
    }

    /// An RTCP packet, on either socket: it is checked against the peer's
    /// RTP address when RTCP is muxed, else against its RTCP address,
    /// whichever socket it arrived on.
    fn handle_rtcp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let plain_len = match &mut self.srtp {
            Some(srtp) => match srtp.unprotect_rtcp(data, &mut self.rx_plain[..]) {
                Ok(n) => n,
                Err(_) => {
                    self.stats.srtcp_rejected += 1;
                    return;
                }
            },
            None => {
                self.rx_plain[..data.len()].copy_from_slice(data);
                data.len()
            }
        };
        let Some(report) = rtcp::parse_report(&self.rx_plain[..plain_len], self.ssrc) else {
            self.stats.malformed += 1;
            return;
        };
        let rtcp_channel = if self.media.rtcp_mux {
            Channel::Rtp
        } else {
            Channel::Rtcp
        };
        // RTCP on the RTP port is checked like RTP: a forged BYE or report
        // from a stranger changes nothing.
        if !self.accept_source(from, rtcp_channel) {
            return;
        }
        self.stats.rtcp_received += 1;
        if let Some((_, lsr)) = report.sender_report {
            self.last_sr_received = Some((lsr, now));
        }
        if let Some(block) = report.about_us {
            self.stats.remote_fraction_lost = Some(f32::from(block.fraction_lost) / 256.0);
            self.stats.remote_packets_lost = Some(block.total_lost);
            self.stats.remote_jitter_ms =
                Some(f64::from(block.jitter) * 1000.0 / f64::from(self.pipeline.clock_rate));
            let now_ntp = rtcp::ntp_middle(rtcp::ntp_timestamp(self.wall_time(now)));
            if let Some(rtt) = rtcp::round_trip(&block, now_ntp) {
                self.stats.round_trip = Some(rtt);
            }
        }
        if report.bye {
            self.events.push_back(MediaEvent::RemoteBye);
        }
    }

    fn wall_time(&self, now: Instant) -> SystemTime {
        self.wall_start + now.saturating_duration_since(self.started)
    }

    /// Runs timers due at `now`: RTCP reports and the media timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.timeout_deadline() {
            if now >= deadline {
                self.timed_out = true;
                let since = self
                    .last_rtp
                    .filter(|l| *l >= self.timeout_reference)
                    .unwrap_or(self.timeout_reference);
                self.events.push_back(MediaEvent::MediaTimeout {
                    silent_for: now.saturating_duration_since(since),
                });
            }
        } else if !self.media.expects_inbound() {
            self.timeout_reference = now;
        }
        if now >= self.next_rtcp {
            self.send_report(now);
            // RFC 3550 §6.2: randomise in [0.5, 1.5] of the interval.
            let factor = 0.5 + f64::from(random_u32() % 1000) / 1000.0;
            self.next_rtcp = now + self.config.rtcp_interval.mul_f64(factor);
        }
    }

    fn send_report(&mut self, now: Instant) {
        let sender = self.sent_since_report.then(|| {
            let ntp = rtcp::ntp_timestamp(self.wall_time(now));
            (
                ntp,
                self.timestamp,
                self.stats.packets_sent as u32,
                self.stats.octets_sent as u32,
            )
        });
        self.sent_since_report = false;
        let reception = self.remote_ssrc.map(|ssrc| {
            let highest = self.jitter.highest_sequence().unwrap_or(0);
            let fraction = self.reception.take_fraction_lost(highest);
            self.stats.fraction_lost = f32::from(fraction) / 256.0;
            let lost = self.reception.cumulative_lost(highest).clamp(0, 0x7f_ffff) as u32;
            let (lsr, delay) = match self.last_sr_received {
                Some((lsr, at)) => (
                    lsr,
                    (now.saturating_duration_since(at).as_micros() as u64 * 65536 / 1_000_000)
                        as u32,
                ),
                None => (0, 0),
            };
            ReceptionReport {
                ssrc,
                fraction_lost: fraction,
                total_lost: lost,
                last_sequence_number: highest as u32,
                jitter: self.jitter.jitter_clock_units(),
                last_sender_report: lsr,
                delay,
            }
        });
        let input = ReportInput {
            ssrc: self.ssrc,
            sender,
            reception,
        };
        let Some(packet) = rtcp::build_report(&input, &self.config.cname) else {
            return;
        };
        if packet.len() > MAX_DATAGRAM - 32 {
            return;
        }
        self.tx_plain[..packet.len()].copy_from_slice(&packet);
        let channel = if self.media.rtcp_mux {
            Channel::Rtp
        } else {
            Channel::Rtcp
        };
        let destination = self.rtcp_target;
        if !destination.ip().is_unspecified() {
            self.push_transmit(channel, destination, packet.len());
            self.stats.rtcp_sent += 1;
        }
    }

    /// One 20 ms step: sends `outbound` (room audio, `None` = silence) to the
    /// peer and writes the peer's next 20 ms into `inbound` (room rate), then
    /// runs due timers. Both buffers hold [`Self::room_frame_len`] samples.
    pub fn tick(
        &mut self,
        now: Instant,
        outbound: Option<&[i16]>,
        inbound: &mut [i16],
    ) -> FrameStatus {
        self.send_frame(outbound);
        let status = self.receive_frame(inbound);
        if now >= self.poll_timeout() {
            self.handle_timeout(now);
        }
        status
    }

    /// The outbound half of [`Self::tick`].
    pub fn send_frame(&mut self, outbound: Option<&[i16]>) {
        let clock_frame = self.pipeline.clock_frame();
        let timestamp = self.timestamp;
        self.timestamp = self.timestamp.wrapping_add(clock_frame);
        if !self.media.direction.sends()
            || self.rtp_target.ip().is_unspecified()
            || self.rtp_target.port() == 0
        {
            return;
        }
        if let Some((send_pt, _)) = self.media.telephone_event {
            let was_busy = self.dtmf_tx.is_busy();
            let frame = self.dtmf_tx.next_frame(
                timestamp,
                self.media.telephone_event_rate / 50,
                self.media.telephone_event_rate,
            );
            if was_busy && !self.dtmf_tx.is_busy() {
                self.events.push_back(MediaEvent::DtmfSent);
            }
            if let DtmfFrame::Event {
                payload,
                marker,
                timestamp: event_ts,
            } = frame
            {
                self.write_packet(marker, send_pt, event_ts, &payload);
                return;
            }
        }
        let room_len = self.room_frame_len();
        let codec_len = self.pipeline.codec_frame();
        match (&mut self.tone, outbound) {
            (Some((_, tone)), _) => tone.fill(&mut self.room_scratch[..room_len]),
            (None, Some(frame)) => {
                let n = frame.len().min(room_len);
                self.room_scratch[..n].copy_from_slice(&frame[..n]);
                self.room_scratch[n..room_len].fill(0);
            }
            (None, None) => self.room_scratch[..room_len].fill(0),
        }
        self.pipeline.from_room.process(
            &self.room_scratch[..room_len],
            &mut self.codec_scratch[..codec_len],
        );
        let mut payload = [0u8; MAX_ENCODED_FRAME];
        let encoded = match self
            .pipeline
            .encoder
            .encode(&self.codec_scratch[..codec_len], &mut payload)
        {
            Ok(n) => n,
            Err(_) => return,
        };
        let marker = !self.first_packet_sent;
        let pt = self.media.send_payload_type;
        self.write_packet(marker, pt, timestamp, &payload[..encoded]);
    }

    fn write_packet(&mut self, marker: bool, payload_type: u8, timestamp: u32, payload: &[u8]) {
        let len = RTP_HEADER_LEN + payload.len();
        if len > MAX_DATAGRAM - 32 {
            return;
        }
        rtp::write_rtp_header(
            &mut self.tx_plain[..],
            marker,
            payload_type,
            self.sequence,
            timestamp,
            self.ssrc,
        );
        self.tx_plain[RTP_HEADER_LEN..len].copy_from_slice(payload);
        self.sequence = self.sequence.wrapping_add(1);
        self.first_packet_sent = true;
        self.sent_since_report = true;
        self.stats.packets_sent += 1;
        self.stats.octets_sent += payload.len() as u64;
        let destination = self.rtp_target;
        self.push_transmit(Channel::Rtp, destination, len);
    }

    /// The inbound half of [`Self::tick`].
    pub fn receive_frame(&mut self, inbound: &mut [i16]) -> FrameStatus {
        let need = self.pipeline.codec_frame();
        let mut concealed = false;
        while self.fifo_len < need {
            let space = self.fifo.len() - self.fifo_len;
            let out = &mut self.fifo[self.fifo_len..];
            let written = match self.jitter.pop() {
                Playout::Packet { payload, .. } => {
                    self.pipeline.decoder.decode(payload, out).unwrap_or(0)
                }
                Playout::Lost { next } => {
                    concealed = true;
                    self.stats.concealed_frames += 1;
                    let n = need.min(space);
                    self.pipeline
                        .decoder
                        .conceal(next, &mut out[..n])
                        .unwrap_or(0)
                }
                Playout::Empty => break,
            };
            self.fifo_len += written.min(space);
        }
        let room_len = inbound.len().min(self.room_frame_len());
        if self.fifo_len < need {
            inbound.fill(0);
            return FrameStatus::Silence;
        }
        self.pipeline
            .to_room
            .process(&self.fifo[..need], &mut inbound[..room_len]);
        self.fifo.copy_within(need..self.fifo_len, 0);
        self.fifo_len -= need;
        if concealed {
            FrameStatus::Concealed
        } else {
            FrameStatus::Audio
        }
    }
}

fn is_rtcp_payload(plain: &[u8]) -> bool {
    rtp::is_rtcp(plain)
}

#[cfg(test)]
mod tests;

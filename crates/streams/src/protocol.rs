//! The media-stream protocols as plain data: what we send a bot (handshake,
//! caller audio, DTMF, mark echoes, stop) and what we make of what it sends
//! (audio, `mark`, `clear`). No sockets, no clock: time comes in as
//! arguments, so every byte on the wire is tested here.
//!
//! The wire formats are Twilio Media Streams and Telnyx media streaming as
//! voice-bot frameworks (Pipecat's `TwilioFrameSerializer` and
//! `TelnyxFrameSerializer`, the runner's provider detection) read them; the
//! team's `reference/media-streams.md` §9 and §10 are the contract. In
//! short: every JSON message is a text frame; `connected` comes first, then
//! `start`, before any `media`; sequence numbers, chunks and timestamps are
//! strings; caller audio goes every 20 ms, silence included.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;
use switchboard_media::codec::g711;
use switchboard_media::dtmf::DtmfDigit;
use tracing::debug;

use crate::playout::{Playout, PlayoutLimits, FRAME_SAMPLES};

/// A G.711 law, as Telnyx names it in `media_format.encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum G711Law {
    /// µ-law, `PCMU`.
    #[default]
    Pcmu,
    /// A-law, `PCMA`.
    Pcma,
}

impl G711Law {
    /// `PCMU` or `PCMA`: exactly the spellings Pipecat accepts (anything
    /// else, even `audio/x-mulaw`, ends its session).
    pub fn name(self) -> &'static str {
        match self {
            G711Law::Pcmu => "PCMU",
            G711Law::Pcma => "PCMA",
        }
    }

    fn encode(self, pcm: &[i16], out: &mut [u8]) {
        match self {
            G711Law::Pcmu => g711::encode_ulaw(pcm, out),
            G711Law::Pcma => g711::encode_alaw(pcm, out),
        };
    }

    fn decode(self, code: u8) -> i16 {
        match self {
            G711Law::Pcmu => g711::ulaw_to_linear(code),
            G711Law::Pcma => g711::alaw_to_linear(code),
        }
    }
}

/// Which protocol the bot speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamProtocol {
    /// Twilio Media Streams (`<Connect><Stream>`): JSON text frames,
    /// base64 µ-law at 8 kHz both ways.
    Twilio,
    /// Telnyx media streaming in RTP mode: JSON text frames, base64 G.711
    /// at 8 kHz.
    Telnyx {
        /// The law of the caller's audio, declared in
        /// `start.media_format.encoding`.
        encoding: G711Law,
        /// The law the bot's audio is decoded with. Pipecat's runner
        /// hard-codes `PCMU` for what the bot sends whatever the call
        /// (§10 item 5), so it is a setting of its own, mirroring Telnyx's
        /// `stream_bidirectional_codec`; [`StreamProtocol::telnyx`] sets
        /// `PCMU`.
        bot_encoding: G711Law,
    },
    /// No JSON at all: binary frames of 16-bit little-endian PCM at 8 kHz
    /// both ways, 320 bytes (20 ms) each from us, any even size from the
    /// bot. Nothing but audio is sent: no handshake (the bot learns about
    /// the call from the URL and headers), no DTMF, no stop (the socket's
    /// close says it); text frames from the bot are ignored.
    RawL16,
}

impl StreamProtocol {
    /// Telnyx with the caller's audio in `encoding` and the bot's decoded
    /// as `PCMU`, which is what Pipecat's runner sends.
    pub fn telnyx(encoding: G711Law) -> StreamProtocol {
        StreamProtocol::Telnyx {
            encoding,
            bot_encoding: G711Law::Pcmu,
        }
    }

    /// `twilio`, `telnyx` or `raw_l16`, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            StreamProtocol::Twilio => "twilio",
            StreamProtocol::Telnyx { .. } => "telnyx",
            StreamProtocol::RawL16 => "raw_l16",
        }
    }

    /// The protocol a dispatch rule or an API request names: `twilio`
    /// (also the empty name), `telnyx` (PCMU), `telnyx-pcma` or `raw-l16`.
    pub fn from_name(name: &str) -> Option<StreamProtocol> {
        match name.trim() {
            "" | "twilio" => Some(StreamProtocol::Twilio),
            "telnyx" => Some(StreamProtocol::telnyx(G711Law::Pcmu)),
            "telnyx-pcma" => Some(StreamProtocol::telnyx(G711Law::Pcma)),
            "raw-l16" => Some(StreamProtocol::RawL16),
            _ => None,
        }
    }
}

/// What the bot is told about the call in `start`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFacts {
    /// switchboard's call ID (`SCL_…`).
    pub call_id: String,
    /// The caller (SIP From user, E.164 when known).
    pub from: String,
    /// The called number (SIP To / Request-URI user).
    pub to: String,
    /// The trunk the call came in on or went out by.
    pub trunk_id: String,
    /// The room the call is in. Not sent: no bot protocol has a field
    /// for it (put it in `custom_parameters` if a bot needs it).
    pub room: String,
    /// Per-call key/values for the bot (Twilio `<Parameter>`s). switchboard
    /// adds `from_number`, `to_number`, `call_id` and `trunk_id`, which win
    /// over keys of the same name here.
    pub custom_parameters: BTreeMap<String, String>,
}

/// One WebSocket message for the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A text frame (every JSON message).
    Text(String),
    /// A binary frame (raw PCM mode only).
    Binary(Vec<u8>),
}

/// The next 20 ms of the bot's audio for the room, and the markers it
/// passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayoutFrame {
    /// 160 samples at 8 kHz, or `None` when the bot has nothing to play
    /// now (play silence).
    pub samples: Option<[i16; FRAME_SAMPLES]>,
    /// Names of the markers this frame's audio passed, in order.
    pub marks_passed: Vec<String>,
    /// Their echoes, to send to the bot.
    pub echoes: Vec<Outgoing>,
}

/// Counters of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// `media` messages (or raw frames) sent to the bot.
    pub media_sent: u64,
    /// `dtmf` messages sent to the bot.
    pub dtmf_sent: u64,
    /// `media` messages (or raw frames) received from the bot.
    pub bot_media: u64,
    /// 20 ms frames of the bot's audio played into the room.
    pub bot_frames_played: u64,
    /// `mark` messages received from the bot.
    pub marks_received: u64,
    /// Mark echoes sent back.
    pub marks_echoed: u64,
    /// `clear` messages received.
    pub clears: u64,
    /// Messages ignored: invalid JSON, unknown events, missing fields, bad
    /// base64, frames of the wrong type.
    pub ignored: u64,
    /// Bot samples dropped because the playout queue was full.
    pub dropped_samples: u64,
    /// Marks ignored because too many were pending.
    pub dropped_marks: u64,
}

/// The IDs one stream shows the bot.
#[derive(Debug, Clone)]
struct Ids {
    /// `MZ…` (Twilio) or a UUID (Telnyx `stream_id`).
    stream: String,
    /// `CA…` (Twilio) or a UUID (Telnyx `call_control_id`).
    call: String,
    /// `AC…` (Twilio) or a UUID (Telnyx `user_id`).
    account: String,
    /// Telnyx `call_session_id`.
    session: String,
}

/// One stream as plain data. Call [`StreamSession::handshake`] first, then
/// [`StreamSession::media`] every 20 ms and
/// [`StreamSession::next_playout_frame`] every 20 ms, feeding it what the
/// bot sends.
#[derive(Debug)]
pub struct StreamSession {
    protocol: StreamProtocol,
    facts: CallFacts,
    ids: Ids,
    /// The last sequence number used (`start` is 1).
    seq: u64,
    /// The last media chunk number used.
    chunk: u64,
    /// The last media timestamp sent, in ms: kept monotonic.
    last_timestamp_ms: u64,
    playout: Playout,
    /// A raw-mode byte waiting for its pair (a frame of odd length).
    odd_byte: Option<u8>,
    stats: StreamStats,
}

impl StreamSession {
    /// A new stream with fresh random IDs.
    pub fn new(protocol: StreamProtocol, facts: CallFacts, limits: PlayoutLimits) -> StreamSession {
        let ids = match protocol {
            StreamProtocol::Twilio => Ids {
                stream: hex_id("MZ"),
                call: hex_id("CA"),
                account: hex_id("AC"),
                session: String::new(),
            },
            StreamProtocol::Telnyx { .. } | StreamProtocol::RawL16 => Ids {
                stream: uuid(),
                call: format!("v3:{}", uuid()),
                account: uuid(),
                session: uuid(),
            },
        };
        StreamSession {
            protocol,
            facts,
            ids,
            seq: 0,
            chunk: 0,
            last_timestamp_ms: 0,
            playout: Playout::new(limits),
            odd_byte: None,
            stats: StreamStats::default(),
        }
    }

    /// The protocol.
    pub fn protocol(&self) -> StreamProtocol {
        self.protocol
    }

    /// What the bot is told about the call.
    pub fn facts(&self) -> &CallFacts {
        &self.facts
    }

    /// The stream's ID as the bot sees it (`streamSid` / `stream_id`).
    pub fn stream_id(&self) -> &str {
        &self.ids.stream
    }

    /// The call's ID as the bot sees it (`callSid` / `call_control_id`).
    pub fn call_ref(&self) -> &str {
        &self.ids.call
    }

    /// The counters.
    pub fn stats(&self) -> StreamStats {
        StreamStats {
            dropped_samples: self.playout.dropped_samples,
            dropped_marks: self.playout.dropped_marks,
            ..self.stats
        }
    }

    /// Bot samples (8 kHz) waiting to be played.
    pub fn queued_samples(&self) -> usize {
        self.playout.queued()
    }

    /// The first messages, in order: `connected`, then `start` (nothing in
    /// raw mode).
    pub fn handshake(&mut self) -> Vec<Outgoing> {
        let mut parameters = self.facts.custom_parameters.clone();
        for (key, value) in [
            ("from_number", &self.facts.from),
            ("to_number", &self.facts.to),
            ("call_id", &self.facts.call_id),
            ("trunk_id", &self.facts.trunk_id),
        ] {
            parameters.insert(key.to_string(), value.clone());
        }
        match self.protocol {
            StreamProtocol::Twilio => {
                let connected = text(&Connected {
                    event: "connected",
                    protocol: Some("Call"),
                    version: "1.0.0",
                });
                let seq = self.next_seq();
                let start = TwilioStart {
                    stream_sid: &self.ids.stream,
                    account_sid: &self.ids.account,
                    call_sid: &self.ids.call,
                    tracks: ["inbound"],
                    custom_parameters: &parameters,
                    media_format: TwilioFormat {
                        encoding: "audio/x-mulaw",
                        sample_rate: 8_000,
                        channels: 1,
                    },
                };
                vec![connected, text(&self.envelope("start", &seq, None, &start))]
            }
            StreamProtocol::Telnyx { encoding, .. } => {
                let connected = text(&Connected {
                    event: "connected",
                    protocol: None,
                    version: "1.0.0",
                });
                let seq = self.next_seq();
                let start = TelnyxStart {
                    user_id: &self.ids.account,
                    call_control_id: &self.ids.call,
                    call_session_id: &self.ids.session,
                    from: &self.facts.from,
                    to: &self.facts.to,
                    client_state: "",
                    custom_parameters: &parameters,
                    media_format: TelnyxFormat {
                        encoding: encoding.name(),
                        sample_rate: 8_000,
                        channels: 1,
                    },
                };
                vec![connected, text(&self.envelope("start", &seq, None, &start))]
            }
            StreamProtocol::RawL16 => Vec::new(),
        }
    }

    /// The caller's next 20 ms (8 kHz) as a `media` message. `at` is the
    /// time since the stream started (Twilio's `media.timestamp`); a clock
    /// that went back is held at the last value.
    pub fn media(&mut self, samples: &[i16; FRAME_SAMPLES], at: Duration) -> Outgoing {
        self.stats.media_sent = self.stats.media_sent.saturating_add(1);
        let law = match self.protocol {
            StreamProtocol::Twilio => G711Law::Pcmu,
            StreamProtocol::Telnyx { encoding, .. } => encoding,
            StreamProtocol::RawL16 => {
                let bytes = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
                return Outgoing::Binary(bytes);
            }
        };
        let mut coded = [0u8; FRAME_SAMPLES];
        law.encode(samples, &mut coded);
        let payload = STANDARD.encode(coded);
        self.chunk = self.chunk.saturating_add(1);
        let at_ms = u64::try_from(at.as_millis()).unwrap_or(u64::MAX);
        self.last_timestamp_ms = self.last_timestamp_ms.max(at_ms);
        let chunk = self.chunk.to_string();
        let timestamp = self.last_timestamp_ms.to_string();
        let seq = self.next_seq();
        let body = MediaBody {
            track: "inbound",
            chunk: &chunk,
            timestamp: &timestamp,
            payload: &payload,
        };
        text(&self.envelope("media", &seq, None, &body))
    }

    /// A DTMF digit the caller pressed (`0-9 * # A-D`); `None` for another
    /// character or in raw mode. `now` is Telnyx's `occurred_at`.
    pub fn dtmf(&mut self, digit: char, now: SystemTime) -> Option<Outgoing> {
        let digit = DtmfDigit::from_char(digit)?.as_char().to_string();
        let message = match self.protocol {
            StreamProtocol::Twilio => {
                let seq = self.next_seq();
                let body = TwilioDtmf {
                    track: "inbound_track",
                    digit: &digit,
                };
                text(&self.envelope("dtmf", &seq, None, &body))
            }
            StreamProtocol::Telnyx { .. } => {
                let seq = self.next_seq();
                let occurred_at = rfc3339_millis(now);
                let body = TelnyxDtmf { digit: &digit };
                text(&self.envelope("dtmf", &seq, Some(("occurred_at", &occurred_at)), &body))
            }
            StreamProtocol::RawL16 => return None,
        };
        self.stats.dtmf_sent = self.stats.dtmf_sent.saturating_add(1);
        Some(message)
    }

    /// The last message before the socket is closed; `None` in raw mode.
    pub fn stop(&mut self) -> Option<Outgoing> {
        match self.protocol {
            StreamProtocol::Twilio => {
                let seq = self.next_seq();
                let body = TwilioStop {
                    account_sid: &self.ids.account,
                    call_sid: &self.ids.call,
                };
                Some(text(&self.envelope("stop", &seq, None, &body)))
            }
            StreamProtocol::Telnyx { .. } => {
                let seq = self.next_seq();
                let body = TelnyxStop {
                    user_id: &self.ids.account,
                    call_control_id: &self.ids.call,
                };
                Some(text(&self.envelope("stop", &seq, None, &body)))
            }
            StreamProtocol::RawL16 => None,
        }
    }

    /// A text frame from the bot. Returns mark echoes to send now (a mark
    /// with nothing queued, a `clear`). Anything not understood is ignored
    /// and counted, never an error: bots pass their own JSON through the
    /// same socket (§9 item 10).
    pub fn on_text(&mut self, text: &str) -> Vec<Outgoing> {
        let law = match self.protocol {
            StreamProtocol::Twilio => G711Law::Pcmu,
            StreamProtocol::Telnyx { bot_encoding, .. } => bot_encoding,
            StreamProtocol::RawL16 => return self.ignore("text frame in raw PCM mode"),
        };
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            return self.ignore("not JSON");
        };
        match message.get("event").and_then(Value::as_str) {
            Some("media") => {
                let Some(payload) = message.pointer("/media/payload").and_then(Value::as_str)
                else {
                    return self.ignore("media without media.payload");
                };
                let Ok(coded) = LENIENT_BASE64.decode(payload) else {
                    return self.ignore("media.payload is not base64");
                };
                self.stats.bot_media = self.stats.bot_media.saturating_add(1);
                let passed = self
                    .playout
                    .append(coded.iter().map(|&code| law.decode(code)));
                self.echoes(passed)
            }
            Some("mark") => {
                let Some(name) = message.pointer("/mark/name").and_then(Value::as_str) else {
                    return self.ignore("mark without mark.name");
                };
                self.stats.marks_received = self.stats.marks_received.saturating_add(1);
                match self.playout.mark(name.to_string()) {
                    Some(name) => self.echoes(vec![name]),
                    None => Vec::new(),
                }
            }
            Some("clear") => {
                self.stats.clears = self.stats.clears.saturating_add(1);
                let passed = self.playout.clear();
                self.echoes(passed)
            }
            Some(_) => self.ignore("unknown event"),
            None => self.ignore("no event"),
        }
    }

    /// A binary frame from the bot: audio in raw mode, ignored otherwise.
    pub fn on_binary(&mut self, data: &[u8]) -> Vec<Outgoing> {
        if self.protocol != StreamProtocol::RawL16 {
            return self.ignore("binary frame in a JSON protocol");
        }
        self.stats.bot_media = self.stats.bot_media.saturating_add(1);
        let mut bytes = data;
        let mut samples = Vec::with_capacity(data.len() / 2 + 1);
        if let (Some(low), Some((&high, rest))) = (self.odd_byte, bytes.split_first()) {
            samples.push(i16::from_le_bytes([low, high]));
            self.odd_byte = None;
            bytes = rest;
        }
        let pairs = bytes.chunks_exact(2);
        if let [last] = pairs.remainder() {
            self.odd_byte = Some(*last);
        }
        samples.extend(pairs.map(|pair| i16::from_le_bytes([pair[0], pair[1]])));
        let passed = self.playout.append(samples);
        self.echoes(passed)
    }

    /// The next 20 ms of the bot's audio for the room, and the echoes of
    /// the markers it passed.
    pub fn next_playout_frame(&mut self) -> PlayoutFrame {
        let (samples, marks_passed) = self.playout.next_frame();
        if samples.is_some() {
            self.stats.bot_frames_played = self.stats.bot_frames_played.saturating_add(1);
        }
        let echoes = self.echoes(marks_passed.clone());
        PlayoutFrame {
            samples,
            marks_passed,
            echoes,
        }
    }

    fn ignore(&mut self, why: &'static str) -> Vec<Outgoing> {
        self.stats.ignored = self.stats.ignored.saturating_add(1);
        debug!(protocol = self.protocol.name(), why, "bot message ignored");
        Vec::new()
    }

    fn echoes(&mut self, names: Vec<String>) -> Vec<Outgoing> {
        names
            .into_iter()
            .filter_map(|name| {
                if self.protocol == StreamProtocol::RawL16 {
                    return None;
                }
                let seq = self.next_seq();
                self.stats.marks_echoed = self.stats.marks_echoed.saturating_add(1);
                Some(text(&self.envelope(
                    "mark",
                    &seq,
                    None,
                    &MarkBody { name: &name },
                )))
            })
            .collect()
    }

    fn next_seq(&mut self) -> String {
        self.seq = self.seq.saturating_add(1);
        self.seq.to_string()
    }

    /// `event`, the sequence number and stream ID under the protocol's
    /// names, an optional extra field, and the body under the event's name.
    fn envelope<'a, B: Serialize>(
        &'a self,
        event: &'static str,
        seq: &'a str,
        extra: Option<(&'static str, &'a str)>,
        body: &'a B,
    ) -> Envelope<'a, B> {
        let (seq_key, id_key) = match self.protocol {
            StreamProtocol::Twilio => ("sequenceNumber", "streamSid"),
            StreamProtocol::Telnyx { .. } | StreamProtocol::RawL16 => {
                ("sequence_number", "stream_id")
            }
        };
        Envelope {
            event,
            fields: [
                Some((seq_key, seq)),
                Some((id_key, self.ids.stream.as_str())),
                extra,
            ],
            body,
        }
    }
}

/// Base64 as bots write it: padding optional, stray trailing bits allowed.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

fn text<T: Serialize>(message: &T) -> Outgoing {
    // These plain structs of strings and numbers always serialise; an empty
    // object would be ignored by any bot if one ever did not.
    Outgoing::Text(serde_json::to_string(message).unwrap_or_else(|_| "{}".into()))
}

/// A message of the common shape: `{"event": E, <fields>, E: body}`.
struct Envelope<'a, B> {
    event: &'static str,
    fields: [Option<(&'static str, &'a str)>; 3],
    body: &'a B,
}

impl<B: Serialize> Serialize for Envelope<'_, B> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("event", self.event)?;
        for (key, value) in self.fields.iter().flatten() {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry(self.event, self.body)?;
        map.end()
    }
}

#[derive(Serialize)]
struct Connected {
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'static str>,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TwilioStart<'a> {
    stream_sid: &'a str,
    account_sid: &'a str,
    call_sid: &'a str,
    tracks: [&'static str; 1],
    custom_parameters: &'a BTreeMap<String, String>,
    media_format: TwilioFormat,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TwilioFormat {
    encoding: &'static str,
    sample_rate: u32,
    channels: u32,
}

#[derive(Serialize)]
struct TelnyxStart<'a> {
    user_id: &'a str,
    call_control_id: &'a str,
    call_session_id: &'a str,
    from: &'a str,
    to: &'a str,
    client_state: &'static str,
    /// Not in Telnyx's documented `start`; bots read the call's facts from
    /// it as from Twilio's `customParameters`, and ignore it otherwise.
    custom_parameters: &'a BTreeMap<String, String>,
    media_format: TelnyxFormat,
}

#[derive(Serialize)]
struct TelnyxFormat {
    encoding: &'static str,
    sample_rate: u32,
    channels: u32,
}

#[derive(Serialize)]
struct MediaBody<'a> {
    track: &'static str,
    chunk: &'a str,
    timestamp: &'a str,
    payload: &'a str,
}

#[derive(Serialize)]
struct TwilioDtmf<'a> {
    track: &'static str,
    digit: &'a str,
}

#[derive(Serialize)]
struct TelnyxDtmf<'a> {
    digit: &'a str,
}

#[derive(Serialize)]
struct MarkBody<'a> {
    name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TwilioStop<'a> {
    account_sid: &'a str,
    call_sid: &'a str,
}

#[derive(Serialize)]
struct TelnyxStop<'a> {
    user_id: &'a str,
    call_control_id: &'a str,
}

/// Random bytes from the OS; without it, a clock-and-counter mix still
/// gives distinct IDs (they name streams, they guard nothing).
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if getrandom::fill(&mut bytes).is_err() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let mut state = nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(32);
        for chunk in bytes.chunks_mut(8) {
            // splitmix64: spreads the few changing bits over every byte.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            for (b, v) in chunk.iter_mut().zip(z.to_le_bytes()) {
                *b = v;
            }
        }
    }
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Twilio-shaped SID: the prefix and 32 lowercase hex digits.
fn hex_id(prefix: &str) -> String {
    format!("{prefix}{}", hex(&random_bytes::<16>()))
}

/// A random (version 4) UUID in its usual text form.
fn uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!(
        "{}-{}-{}-{}-{}",
        hex(&b[0..4]),
        hex(&b[4..6]),
        hex(&b[6..8]),
        hex(&b[8..10]),
        hex(&b[10..16])
    )
}

/// `2024-05-01T12:00:00.123Z`: RFC 3339 in UTC, to the millisecond.
fn rfc3339_millis(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn facts() -> CallFacts {
        CallFacts {
            call_id: "SCL_abc".into(),
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            trunk_id: "ST_trunk".into(),
            room: "room-1".into(),
            custom_parameters: [("lang".to_string(), "fr".to_string())].into(),
        }
    }

    fn session(protocol: StreamProtocol) -> StreamSession {
        StreamSession::new(
            protocol,
            facts(),
            PlayoutLimits {
                start_buffer_ms: 0,
                ..PlayoutLimits::default()
            },
        )
    }

    fn json(message: &Outgoing) -> Value {
        match message {
            Outgoing::Text(text) => serde_json::from_str(text).unwrap(),
            Outgoing::Binary(_) => panic!("expected a text frame"),
        }
    }

    fn keys(value: &Value) -> BTreeSet<&str> {
        value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
        names.iter().copied().collect()
    }

    fn is_sid(s: &str, prefix: &str) -> bool {
        s.len() == 34
            && s.starts_with(prefix)
            && s[2..]
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    }

    fn ulaw_payload(samples: &[i16]) -> String {
        let mut coded = vec![0u8; samples.len()];
        g711::encode_ulaw(samples, &mut coded);
        STANDARD.encode(coded)
    }

    #[test]
    fn twilio_handshake_is_connected_then_start_as_pipecat_reads_them() {
        let mut s = session(StreamProtocol::Twilio);
        let hello = s.handshake();
        assert_eq!(hello.len(), 2);
        assert_eq!(
            hello[0],
            Outgoing::Text(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.into())
        );
        let start = json(&hello[1]);
        assert_eq!(
            keys(&start),
            set(&["event", "sequenceNumber", "streamSid", "start"])
        );
        assert_eq!(start["event"], "start");
        assert_eq!(start["sequenceNumber"], "1");
        let body = &start["start"];
        assert_eq!(
            keys(body),
            set(&[
                "streamSid",
                "accountSid",
                "callSid",
                "tracks",
                "customParameters",
                "mediaFormat"
            ])
        );
        assert_eq!(body["streamSid"], start["streamSid"]);
        assert!(is_sid(body["streamSid"].as_str().unwrap(), "MZ"));
        assert!(is_sid(body["callSid"].as_str().unwrap(), "CA"));
        assert!(is_sid(body["accountSid"].as_str().unwrap(), "AC"));
        assert_eq!(body["streamSid"].as_str().unwrap(), s.stream_id());
        assert_eq!(body["callSid"].as_str().unwrap(), s.call_ref());
        assert_eq!(body["tracks"], serde_json::json!(["inbound"]));
        assert_eq!(
            body["mediaFormat"],
            serde_json::json!({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1})
        );
        assert_eq!(
            body["customParameters"],
            serde_json::json!({
                "lang": "fr",
                "from_number": "+15550001111",
                "to_number": "+15550002222",
                "call_id": "SCL_abc",
                "trunk_id": "ST_trunk",
            })
        );
        // Fresh IDs per stream.
        let other = session(StreamProtocol::Twilio);
        assert_ne!(other.stream_id(), s.stream_id());
    }

    #[test]
    fn telnyx_handshake_declares_exactly_pcmu_or_pcma() {
        for law in [G711Law::Pcmu, G711Law::Pcma] {
            let mut s = session(StreamProtocol::telnyx(law));
            let hello = s.handshake();
            assert_eq!(
                hello[0],
                Outgoing::Text(r#"{"event":"connected","version":"1.0.0"}"#.into())
            );
            let start = json(&hello[1]);
            assert_eq!(
                keys(&start),
                set(&["event", "sequence_number", "stream_id", "start"])
            );
            assert_eq!(start["sequence_number"], "1");
            let id = start["stream_id"].as_str().unwrap();
            assert_eq!(id.len(), 36);
            assert_eq!(id.matches('-').count(), 4);
            let body = &start["start"];
            assert_eq!(
                keys(body),
                set(&[
                    "user_id",
                    "call_control_id",
                    "call_session_id",
                    "from",
                    "to",
                    "client_state",
                    "custom_parameters",
                    "media_format"
                ])
            );
            assert!(!body["call_control_id"].as_str().unwrap().is_empty());
            assert_eq!(body["from"], "+15550001111");
            assert_eq!(body["to"], "+15550002222");
            assert_eq!(
                body["media_format"],
                serde_json::json!({"encoding": law.name(), "sample_rate": 8000, "channels": 1})
            );
        }
        assert_eq!(G711Law::Pcmu.name(), "PCMU");
        assert_eq!(G711Law::Pcma.name(), "PCMA");
    }

    #[test]
    fn twilio_media_dtmf_and_stop_have_the_exact_keys_and_count_as_strings() {
        let mut s = session(StreamProtocol::Twilio);
        s.handshake();
        let tone: [i16; 160] = std::array::from_fn(|i| ((i as i16) - 80) * 100);
        let first = json(&s.media(&tone, Duration::ZERO));
        assert_eq!(
            keys(&first),
            set(&["event", "sequenceNumber", "streamSid", "media"])
        );
        assert_eq!(
            keys(&first["media"]),
            set(&["track", "chunk", "timestamp", "payload"])
        );
        assert_eq!(first["sequenceNumber"], "2");
        assert_eq!(first["media"]["track"], "inbound");
        assert_eq!(first["media"]["chunk"], "1");
        assert_eq!(first["media"]["timestamp"], "0");
        assert_eq!(first["media"]["payload"], ulaw_payload(&tone));
        let dtmf = json(&s.dtmf('5', SystemTime::now()).unwrap());
        assert_eq!(
            keys(&dtmf),
            set(&["event", "sequenceNumber", "streamSid", "dtmf"])
        );
        assert_eq!(dtmf["sequenceNumber"], "3");
        assert_eq!(
            dtmf["dtmf"],
            serde_json::json!({"track": "inbound_track", "digit": "5"})
        );
        assert_eq!(s.dtmf('x', SystemTime::now()), None);
        let second = json(&s.media(&[0; 160], Duration::from_millis(20)));
        assert_eq!(second["sequenceNumber"], "4");
        assert_eq!(second["media"]["chunk"], "2");
        assert_eq!(second["media"]["timestamp"], "20");
        // A clock that steps back does not make the timestamp go back.
        let third = json(&s.media(&[0; 160], Duration::from_millis(5)));
        assert_eq!(third["media"]["timestamp"], "20");
        let stop = json(&s.stop().unwrap());
        assert_eq!(
            keys(&stop),
            set(&["event", "sequenceNumber", "streamSid", "stop"])
        );
        assert_eq!(stop["sequenceNumber"], "6");
        assert_eq!(keys(&stop["stop"]), set(&["accountSid", "callSid"]));
        assert_eq!(stop["stop"]["callSid"], s.call_ref());
        assert_eq!(s.stats().media_sent, 3);
        assert_eq!(s.stats().dtmf_sent, 1);
    }

    #[test]
    fn telnyx_media_uses_the_declared_law_and_dtmf_has_occurred_at() {
        let mut s = session(StreamProtocol::telnyx(G711Law::Pcma));
        s.handshake();
        let frame = [1000i16; 160];
        let media = json(&s.media(&frame, Duration::from_millis(40)));
        assert_eq!(
            keys(&media),
            set(&["event", "sequence_number", "stream_id", "media"])
        );
        assert_eq!(
            keys(&media["media"]),
            set(&["track", "chunk", "timestamp", "payload"])
        );
        let mut alaw = [0u8; 160];
        g711::encode_alaw(&frame, &mut alaw);
        assert_eq!(media["media"]["payload"], STANDARD.encode(alaw));
        assert_eq!(media["media"]["timestamp"], "40");
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let dtmf = json(&s.dtmf('#', at).unwrap());
        assert_eq!(
            keys(&dtmf),
            set(&[
                "event",
                "stream_id",
                "occurred_at",
                "sequence_number",
                "dtmf"
            ])
        );
        assert_eq!(dtmf["occurred_at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(dtmf["dtmf"], serde_json::json!({"digit": "#"}));
        let stop = json(&s.stop().unwrap());
        assert_eq!(
            keys(&stop),
            set(&["event", "sequence_number", "stream_id", "stop"])
        );
        assert_eq!(keys(&stop["stop"]), set(&["user_id", "call_control_id"]));
    }

    #[test]
    fn bot_audio_is_decoded_with_the_right_law() {
        // Twilio: µ-law.
        let mut s = session(StreamProtocol::Twilio);
        let samples: Vec<i16> = (0..160).map(|i| (i * 150 - 12_000) as i16).collect();
        s.on_text(&format!(
            r#"{{"event":"media","streamSid":"MZx","media":{{"payload":"{}"}}}}"#,
            ulaw_payload(&samples)
        ));
        let played = s.next_playout_frame().samples.unwrap();
        for (heard, sent) in played.iter().zip(&samples) {
            assert!((heard - sent).abs() <= sent.abs() / 16 + 16);
        }
        // Telnyx declaring PCMA still decodes the bot as PCMU by default
        // (Pipecat's runner sends PCMU), or as configured.
        for (protocol, law) in [
            (StreamProtocol::telnyx(G711Law::Pcma), G711Law::Pcmu),
            (
                StreamProtocol::Telnyx {
                    encoding: G711Law::Pcmu,
                    bot_encoding: G711Law::Pcma,
                },
                G711Law::Pcma,
            ),
        ] {
            let mut s = session(protocol);
            let codes: Vec<u8> = (0..160).map(|i| i as u8).collect();
            s.on_text(&format!(
                r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
                STANDARD.encode(&codes)
            ));
            let played = s.next_playout_frame().samples.unwrap();
            let expected: Vec<i16> = codes.iter().map(|&c| law.decode(c)).collect();
            assert_eq!(played.to_vec(), expected);
        }
    }

    #[test]
    fn marks_echo_after_their_audio_and_clear_echoes_every_pending_one() {
        let mut s = session(StreamProtocol::Twilio);
        s.handshake();
        // Nothing queued: echoed at once, Twilio's shape.
        let now = s.on_text(r#"{"event":"mark","streamSid":"MZx","mark":{"name":"idle"}}"#);
        assert_eq!(now.len(), 1);
        let echo = json(&now[0]);
        assert_eq!(
            keys(&echo),
            set(&["event", "sequenceNumber", "streamSid", "mark"])
        );
        assert_eq!(echo["mark"], serde_json::json!({"name": "idle"}));
        assert_eq!(echo["sequenceNumber"], "2");

        let payload = ulaw_payload(&[500; 320]);
        let media = format!(r#"{{"event":"media","media":{{"payload":"{payload}"}}}}"#);
        s.on_text(&media);
        assert!(s
            .on_text(r#"{"event":"mark","mark":{"name":"m1"}}"#)
            .is_empty());
        let first = s.next_playout_frame();
        assert!(first.samples.is_some() && first.marks_passed.is_empty());
        let second = s.next_playout_frame();
        assert_eq!(second.marks_passed, vec!["m1".to_string()]);
        assert_eq!(json(&second.echoes[0])["mark"]["name"], "m1");

        // Two marks behind five seconds of audio; clear drops it all and
        // echoes both in order, and the next frame is silence.
        s.on_text(&format!(
            r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
            ulaw_payload(&[500; 40_000])
        ));
        s.on_text(r#"{"event":"mark","mark":{"name":"a"}}"#);
        s.on_text(&media);
        s.on_text(r#"{"event":"mark","mark":{"name":"b"}}"#);
        assert!(s.next_playout_frame().samples.is_some());
        let cleared = s.on_text(r#"{"event":"clear","streamSid":"MZx"}"#);
        let names: Vec<Value> = cleared
            .iter()
            .map(|m| json(m)["mark"]["name"].clone())
            .collect();
        assert_eq!(names, vec![Value::from("a"), Value::from("b")]);
        assert_eq!(s.next_playout_frame().samples, None);
        assert_eq!(s.queued_samples(), 0);
        let stats = s.stats();
        assert_eq!(
            (stats.marks_received, stats.marks_echoed, stats.clears),
            (4, 4, 1)
        );
    }

    #[test]
    fn telnyx_mark_echo_has_telnyx_names() {
        let mut s = session(StreamProtocol::telnyx(G711Law::Pcmu));
        s.handshake();
        let echo = s.on_text(r#"{"event":"mark","mark":{"name":"x"}}"#);
        let echo = json(&echo[0]);
        assert_eq!(
            keys(&echo),
            set(&["event", "stream_id", "sequence_number", "mark"])
        );
        assert_eq!(echo["stream_id"], s.stream_id());
    }

    #[test]
    fn what_is_not_understood_is_ignored_and_counted() {
        let mut s = session(StreamProtocol::Twilio);
        for junk in [
            "not json",
            "[1,2]",
            r#"{"type":"media"}"#,
            r#"{"event":"hello"}"#,
            r#"{"event":5}"#,
            r#"{"event":"media"}"#,
            r#"{"event":"media","media":{"payload":"***"}}"#,
            r#"{"event":"mark","mark":{}}"#,
            r#"{"event":"start","start":{}}"#,
        ] {
            assert!(s.on_text(junk).is_empty(), "{junk}");
        }
        assert!(s.on_binary(&[0; 320]).is_empty());
        assert_eq!(s.stats().ignored, 10);
        assert_eq!(s.queued_samples(), 0);
        // Unpadded base64 is fine.
        s.on_text(r#"{"event":"media","media":{"payload":"//8"}}"#);
        assert_eq!(s.queued_samples(), 2);
    }

    #[test]
    fn raw_mode_is_binary_only_both_ways() {
        let mut s = session(StreamProtocol::RawL16);
        assert!(s.handshake().is_empty());
        let frame: [i16; 160] = std::array::from_fn(|i| i as i16 - 80);
        let Outgoing::Binary(bytes) = s.media(&frame, Duration::ZERO) else {
            panic!("raw media is binary");
        };
        assert_eq!(bytes.len(), 320);
        assert_eq!(&bytes[..4], &[0xb0, 0xff, 0xb1, 0xff]);
        assert_eq!(s.dtmf('1', SystemTime::now()), None);
        assert_eq!(s.stop(), None);
        assert!(s.on_text(r#"{"event":"clear"}"#).is_empty());
        assert_eq!(s.stats().ignored, 1);
        // A frame of odd length keeps its last byte for the next one.
        let sent: Vec<u8> = [1000i16; 160]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        s.on_binary(&sent[..101]);
        s.on_binary(&sent[101..]);
        assert_eq!(s.next_playout_frame().samples, Some([1000; 160]));
    }

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_millis(leap), "2000-02-29T00:00:00.000Z");
        let end = UNIX_EPOCH + Duration::from_secs(1_735_689_599);
        assert_eq!(rfc3339_millis(end), "2024-12-31T23:59:59.000Z");
    }

    #[test]
    fn uuids_have_the_version_4_shape() {
        let id = uuid();
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
    }

    fn protocols() -> impl Strategy<Value = StreamProtocol> {
        prop_oneof![
            Just(StreamProtocol::Twilio),
            Just(StreamProtocol::telnyx(G711Law::Pcma)),
            Just(StreamProtocol::RawL16),
        ]
    }

    /// Text that is often almost a valid bot message.
    fn botlike() -> impl Strategy<Value = String> {
        (
            "(media|mark|clear|stop|)",
            "[A-Za-z0-9+/=]{0,300}",
            any::<String>(),
        )
            .prop_map(|(event, payload, name)| {
                format!(
                    r#"{{"event":"{event}","media":{{"payload":"{payload}"}},"mark":{{"name":{}}}}}"#,
                    serde_json::to_string(&name).unwrap_or_default()
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn arbitrary_input_never_panics(
            protocol in protocols(),
            inputs in proptest::collection::vec(
                prop_oneof![
                    any::<String>().prop_map(Ok),
                    botlike().prop_map(Ok),
                    proptest::collection::vec(any::<u8>(), 0..700).prop_map(Err),
                ],
                0..20,
            ),
        ) {
            let mut s = StreamSession::new(protocol, facts(), PlayoutLimits {
                max_queued_secs: 1,
                max_pending_marks: 4,
                ..PlayoutLimits::default()
            });
            s.handshake();
            for input in inputs {
                match input {
                    Ok(text) => { s.on_text(&text); }
                    Err(bytes) => { s.on_binary(&bytes); }
                }
                let frame = s.next_playout_frame();
                prop_assert_eq!(frame.marks_passed.len(), frame.echoes.len());
                s.media(&[0; 160], Duration::from_millis(20));
                prop_assert!(s.queued_samples() <= 8_000);
            }
        }
    }
}

//! The tokio side: one task per stream owns the socket, the room
//! participant and a 20 ms clock, and moves data between them through a
//! [`StreamSession`].
//!
//! Each stream has its own timer (like a WebSocket participant, not like a
//! call on a media worker): a bot expects a frame every 20 ms whatever the
//! room does, and streams are few next to calls. The participant's audio
//! rings absorb the difference between this clock and the room's.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use switchboard_media::resample::FrameResampler;
use switchboard_rooms::{AudioPort, Participant, RoomEvent};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::{info, warn};

use crate::connect::{BotSocket, BotStream, StreamSpec};
use crate::playout::FRAME_SAMPLES;
use crate::protocol::{CallFacts, Outgoing, StreamSession, StreamStats};

/// The frame period.
const FRAME: Duration = Duration::from_millis(20);

/// Room frames dropped at most after the task fell behind: the ring holds
/// no more than a few.
const MAX_CATCH_UP_FRAMES: u32 = 10;

/// Why a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// The bot closed the socket (Pipecat does after its `EndFrame`).
    /// `code` is `None` when the socket ended without a close frame code.
    /// Bot audio still queued is not played out: the participant leaves at
    /// once (Pipecat's last 2 s before a close are silence anyway, §8.6).
    BotClosed {
        /// The close code (1000 for a normal end).
        code: Option<u16>,
        /// The close reason.
        reason: String,
    },
    /// The socket failed: a read or write error, a bot that took no data
    /// for the send timeout, a message over the size limit.
    Failed(String),
    /// [`StreamHandle::stop`] was called (or the handle dropped): `stop`
    /// and a close frame (1000) were sent.
    Stopped,
    /// The participant was removed or its room closed: `stop` and a close
    /// frame (1000) were sent.
    RoomClosed,
}

/// A running stream.
///
/// Dropping the handle stops the stream as [`StreamHandle::stop`] does; the
/// task still ends cleanly (stop, close, leave the room).
#[derive(Debug)]
pub struct StreamHandle {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<StreamEnd>>,
    end: Option<StreamEnd>,
    stats: Arc<Mutex<StreamStats>>,
    stream_id: String,
    call_ref: String,
}

impl StreamHandle {
    /// Waits for the stream to end and says why; at once if it has.
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn ended(&mut self) -> StreamEnd {
        if let Some(end) = &self.end {
            return end.clone();
        }
        let end = match self.task.as_mut() {
            Some(task) => task
                .await
                .unwrap_or_else(|e| StreamEnd::Failed(format!("stream task failed: {e}"))),
            None => StreamEnd::Failed("stream task lost".into()),
        };
        self.task = None;
        self.end = Some(end.clone());
        end
    }

    /// Asks the stream to end: it sends `stop`, closes the socket with
    /// 1000 and leaves the room. [`StreamHandle::ended`] then says
    /// [`StreamEnd::Stopped`] (unless it had ended already).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Whether the stream's task has finished.
    pub fn is_finished(&self) -> bool {
        self.end.is_some() || self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// The counters, as of the last frame.
    pub fn stats(&self) -> StreamStats {
        *lock(&self.stats)
    }

    /// The stream's ID as the bot sees it (`streamSid` / `stream_id`).
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// The call's ID as the bot sees it (`callSid` / `call_control_id`).
    pub fn call_ref(&self) -> &str {
        &self.call_ref
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters only: a panic mid-update leaves numbers, still readable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How a voice bot joins a room: kind `stream` (LiveKit's AGENT), named
/// "voice bot", publishing audio at 8 kHz, the rate of the G.711 it speaks,
/// so it never raises the room's rate.
pub fn join_request(identity: String) -> switchboard_rooms::JoinRequest {
    switchboard_rooms::JoinRequest {
        identity,
        name: "voice bot".into(),
        metadata: String::new(),
        attributes: std::collections::BTreeMap::new(),
        kind: switchboard_rooms::ParticipantKind::Stream,
        publishes_audio: true,
        audio_rate: switchboard_rooms::AudioRate::Fixed(8_000),
    }
}

/// Starts streaming `participant`'s room to the bot on `socket`: one task
/// on the current tokio runtime (call it from within one).
///
/// The participant is best joined with `AudioRate::Fixed(8000)`: the bot
/// speaks 8 kHz, so a room of phones then mixes at 8 kHz and nothing is
/// resampled. Whatever the room's rate, this converts at the edge.
pub fn start(
    socket: BotSocket,
    participant: Participant,
    facts: CallFacts,
    spec: &StreamSpec,
) -> StreamHandle {
    let session = StreamSession::new(spec.protocol, facts, spec.playout_limits());
    let (stop, stop_rx) = watch::channel(false);
    let stats = Arc::new(Mutex::new(StreamStats::default()));
    let stream_id = session.stream_id().to_string();
    let call_ref = session.call_ref().to_string();
    let task = tokio::spawn(run(
        socket,
        participant,
        session,
        stop_rx,
        stats.clone(),
        spec.send_timeout,
        spec.close_timeout,
    ));
    StreamHandle {
        stop,
        task: Some(task),
        end: None,
        stats,
        stream_id,
        call_ref,
    }
}

/// How the loop ended, before the socket is closed.
enum Ending {
    Stop,
    RoomGone(&'static str),
    BotClosed(Option<u16>, String),
    Failed(String),
}

async fn run(
    socket: BotSocket,
    mut participant: Participant,
    mut session: StreamSession,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Mutex<StreamStats>>,
    send_timeout: Duration,
    close_timeout: Duration,
) -> StreamEnd {
    let call_id = session.facts().call_id.clone();
    let room = participant.room_name().to_string();
    let identity = participant.info().identity;
    let (host, port, tls) = (socket.host().to_string(), socket.port(), socket.is_tls());
    let mut ws = socket.ws;
    info!(
        call_id = %call_id, room = %room, identity = %identity, protocol = session.protocol().name(),
        host = %host, port, tls, "media stream connected"
    );
    let ending = serve(
        &mut ws,
        &mut participant,
        &mut session,
        &mut stop,
        &stats,
        send_timeout,
        &call_id,
    )
    .await;
    // Out of the room first: the room must not wait on the bot's close.
    drop(participant);
    let totals = Totals(session.stats());
    *lock(&stats) = totals.0;
    match ending {
        Ending::Stop | Ending::RoomGone(_) => {
            let stop_message = session.stop();
            // The bot may be gone already; the stream ends either way.
            let closed = close(&mut ws, stop_message, send_timeout, close_timeout).await;
            let clean = closed.is_ok();
            if let Ending::RoomGone(reason) = ending {
                info!(call_id = %call_id, room = %room, reason, clean, %totals, "media stream ended: room closed");
                StreamEnd::RoomClosed
            } else {
                info!(call_id = %call_id, room = %room, clean, %totals, "media stream stopped");
                StreamEnd::Stopped
            }
        }
        Ending::BotClosed(code, reason) => {
            // Our answer to the bot's close frame is queued; send it. The
            // socket is dropped right after: the exchange is complete.
            let _ = timeout(close_timeout, ws.flush()).await;
            info!(call_id = %call_id, room = %room, code, reason = %reason, %totals, "bot closed media stream");
            StreamEnd::BotClosed { code, reason }
        }
        Ending::Failed(error) => {
            warn!(call_id = %call_id, room = %room, error = %error, %totals, "media stream failed");
            StreamEnd::Failed(error)
        }
    }
}

/// A stream's counters in one log field.
struct Totals(StreamStats);

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = &self.0;
        write!(
            f,
            "media_sent={} dtmf_sent={} bot_media={} bot_frames_played={} marks_echoed={} \
             clears={} ignored={} dropped_samples={}",
            t.media_sent,
            t.dtmf_sent,
            t.bot_media,
            t.bot_frames_played,
            t.marks_echoed,
            t.clears,
            t.ignored,
            t.dropped_samples
        )
    }
}

/// Sends `stop`, the close frame (1000), and waits (a little) for the
/// bot's answering close frame, so that it sees a clean ending.
async fn close(
    ws: &mut WebSocketStream<BotStream>,
    stop_message: Option<Outgoing>,
    send_timeout: Duration,
    close_timeout: Duration,
) -> Result<(), String> {
    if let Some(message) = stop_message {
        send(ws, message, send_timeout).await?;
    }
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    match timeout(close_timeout, ws.close(Some(frame))).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("close timed out".into()),
    }
    let answered = async {
        while let Some(Ok(message)) = ws.next().await {
            if message.is_close() {
                return true;
            }
        }
        false
    };
    match timeout(close_timeout, answered).await {
        Ok(true) => Ok(()),
        Ok(false) => Err("the socket ended without the bot's close frame".into()),
        Err(_) => Err(format!(
            "the bot did not answer the close within {close_timeout:?}"
        )),
    }
}

async fn send(
    ws: &mut WebSocketStream<BotStream>,
    message: Outgoing,
    send_timeout: Duration,
) -> Result<(), String> {
    let message = match message {
        Outgoing::Text(text) => Message::Text(text.into()),
        Outgoing::Binary(bytes) => Message::Binary(bytes.into()),
    };
    match timeout(send_timeout, ws.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("send failed: {e}")),
        Err(_) => Err(format!("the bot took no data for {send_timeout:?}")),
    }
}

async fn send_all(
    ws: &mut WebSocketStream<BotStream>,
    messages: impl IntoIterator<Item = Outgoing>,
    send_timeout: Duration,
) -> Result<(), Ending> {
    for message in messages {
        send(ws, message, send_timeout)
            .await
            .map_err(Ending::Failed)?;
    }
    Ok(())
}

/// The stream's life until something ends it.
async fn serve(
    ws: &mut WebSocketStream<BotStream>,
    participant: &mut Participant,
    session: &mut StreamSession,
    stop: &mut watch::Receiver<bool>,
    stats: &Mutex<StreamStats>,
    send_timeout: Duration,
    call_id: &str,
) -> Ending {
    let mut audio = match RoomAudio::new(participant.audio()) {
        Ok(audio) => audio,
        Err(e) => return Ending::Failed(e),
    };
    if let Err(end) = send_all(ws, session.handshake(), send_timeout).await {
        return end;
    }
    info!(
        call_id = %call_id, stream_id = %session.stream_id(), call_ref = %session.call_ref(),
        "media stream started"
    );
    let mut clock = tokio::time::interval(FRAME);
    // After a stall the timeline stays on the wall clock: the frames that
    // were missed are skipped (and their room audio dropped below), not
    // sent in a burst.
    clock.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut timeline = Timeline::default();
    loop {
        let result = tokio::select! {
            biased;
            // `Err` means the handle was dropped: stop as well. A digit the
            // caller pressed just before hanging up is still queued: it
            // reaches the bot before `stop`.
            _ = stop.changed() => {
                let now = SystemTime::now();
                let mut digits = Vec::new();
                while let Some(event) = participant.try_event() {
                    if let RoomEvent::Dtmf { digit, .. } = event {
                        digits.extend(digit.chars().filter_map(|c| session.dtmf(c, now)));
                    }
                }
                if !digits.is_empty() {
                    let _ = send_all(ws, digits, send_timeout).await;
                }
                return Ending::Stop;
            }
            // Before the socket: a bot that floods us must not delay the
            // caller's frames.
            at = clock.tick() => {
                for _ in 0..timeline.missed_before(at) {
                    audio.discard();
                }
                let heard = audio.pull();
                let media = session.media(&heard, timeline.since_start(at));
                let playout = session.next_playout_frame();
                audio.push(playout.samples.as_ref());
                *lock(stats) = session.stats();
                send_all(ws, std::iter::once(media).chain(playout.echoes), send_timeout).await
            }
            event = participant.next_event() => match event {
                Some(RoomEvent::Dtmf { digit, .. }) => {
                    let now = SystemTime::now();
                    let messages: Vec<Outgoing> =
                        digit.chars().filter_map(|c| session.dtmf(c, now)).collect();
                    send_all(ws, messages, send_timeout).await
                }
                Some(RoomEvent::Disconnected { reason }) => return Ending::RoomGone(reason.as_str()),
                None => return Ending::RoomGone("left the room"),
                Some(_) => Ok(()),
            },
            incoming = ws.next() => match incoming {
                None => return Ending::BotClosed(None, String::new()),
                Some(Err(e)) => return Ending::Failed(format!("socket error: {e}")),
                Some(Ok(Message::Text(text))) => {
                    let replies = session.on_text(text.as_str());
                    send_all(ws, replies, send_timeout).await
                }
                Some(Ok(Message::Binary(data))) => {
                    let replies = session.on_binary(&data);
                    send_all(ws, replies, send_timeout).await
                }
                Some(Ok(Message::Close(frame))) => {
                    return match frame {
                        Some(frame) => Ending::BotClosed(Some(u16::from(frame.code)), frame.reason.to_string()),
                        None => Ending::BotClosed(None, String::new()),
                    };
                }
                // Pings are answered by tungstenite as it reads.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(()),
            },
        };
        if let Err(end) = result {
            return end;
        }
    }
}

/// The stream's clock: when it started and which ticks were skipped.
#[derive(Default)]
struct Timeline {
    start: Option<Instant>,
    last: Option<Instant>,
}

impl Timeline {
    /// Frames skipped between the last tick and this one (at most
    /// [`MAX_CATCH_UP_FRAMES`]); records the tick.
    fn missed_before(&mut self, at: Instant) -> u32 {
        let missed = self.last.map_or(0, |last| {
            let frames = at.saturating_duration_since(last).as_millis() / FRAME.as_millis();
            frames.saturating_sub(1)
        });
        self.last = Some(at);
        u32::try_from(missed)
            .unwrap_or(u32::MAX)
            .min(MAX_CATCH_UP_FRAMES)
    }

    /// Time since the first tick (Twilio's `media.timestamp`).
    fn since_start(&mut self, at: Instant) -> Duration {
        at.saturating_duration_since(*self.start.get_or_insert(at))
    }
}

/// The participant's audio at 8 kHz: resampled from and to whatever rate
/// the room mixes at now (it follows its members).
struct RoomAudio {
    port: AudioPort,
    /// 8 kHz → room.
    up: FrameResampler,
    /// Room → 8 kHz.
    down: FrameResampler,
    room_frame: Vec<i16>,
}

impl RoomAudio {
    fn new(port: AudioPort) -> Result<RoomAudio, String> {
        let len = port.frame_len();
        let (up, down) = resamplers(len).map_err(|e| e.to_string())?;
        Ok(RoomAudio {
            port,
            up,
            down,
            room_frame: vec![0; len],
        })
    }

    /// Remakes the resamplers when the room's rate changed.
    fn follow_room_rate(&mut self) {
        let len = self.port.frame_len();
        if len == self.room_frame.len() {
            return;
        }
        if let Ok((up, down)) = resamplers(len) {
            self.up = up;
            self.down = down;
            self.room_frame = vec![0; len];
        }
    }

    /// The room's next 20 ms for the bot, silence when there is none.
    fn pull(&mut self) -> [i16; FRAME_SAMPLES] {
        self.follow_room_rate();
        if !self.port.pull(&mut self.room_frame) {
            self.room_frame.fill(0);
        }
        let mut out = [0i16; FRAME_SAMPLES];
        self.down.process(&self.room_frame, &mut out);
        out
    }

    /// Drops the room's next frame (one the bot would have had during a
    /// stall), so the delay does not grow.
    fn discard(&mut self) {
        self.follow_room_rate();
        self.port.pull(&mut self.room_frame);
    }

    /// Hands the bot's next 20 ms to the room; silence when it has none,
    /// so the room's ring for it stays primed and the bot's next words are
    /// not held back by a new prebuffer.
    fn push(&mut self, samples: Option<&[i16; FRAME_SAMPLES]>) {
        self.follow_room_rate();
        let silence = [0i16; FRAME_SAMPLES];
        self.up
            .process(samples.unwrap_or(&silence), &mut self.room_frame);
        self.port.push(&self.room_frame);
    }
}

fn resamplers(
    room_len: usize,
) -> Result<(FrameResampler, FrameResampler), switchboard_media::resample::ResampleError> {
    let room_rate = u32::try_from(room_len.saturating_mul(50)).unwrap_or(u32::MAX);
    Ok((
        FrameResampler::new(8_000, room_rate)?,
        FrameResampler::new(room_rate, 8_000)?,
    ))
}

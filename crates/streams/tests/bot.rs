//! A stream against a bot on 127.0.0.1: a tokio-tungstenite server plays
//! the bot, a real `Rooms` holds the stream's participant and a "caller"
//! that speaks a tone and listens. Timing is asserted loosely (counts over
//! windows, lower bounds), never as a benchmark.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// tungstenite's accept callback has its error type (an HTTP response).
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use switchboard_media::codec::g711;
use switchboard_media::tones::{goertzel_dbfs, rms_dbfs};
use switchboard_rooms::{AudioRate, JoinRequest, Participant, ParticipantKind, Rooms, RoomsConfig};
use switchboard_streams::{
    connect, connect_with_tls, start, tls_config_with_roots, CallFacts, ConnectStage, G711Law,
    StreamEnd, StreamError, StreamHandle, StreamProtocol, StreamSpec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const ROOM_RATE: u32 = 16_000;
const WAIT: Duration = Duration::from_secs(5);

type Headers = Arc<Mutex<Vec<(String, String)>>>;

/// A listening bot; `accept` takes the next connection and records its
/// request headers.
struct BotServer {
    listener: TcpListener,
    headers: Headers,
}

impl BotServer {
    async fn new() -> BotServer {
        BotServer {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            headers: Arc::default(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr())
    }

    async fn accept<S>(&self, wrap: impl AsyncFnOnce(TcpStream) -> S) -> WebSocketStream<S>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (tcp, _) = self.listener.accept().await.unwrap();
        let stream = wrap(tcp).await;
        let headers = self.headers.clone();
        tokio_tungstenite::accept_hdr_async(stream, move |req: &Request, resp: Response| {
            *headers.lock().unwrap() = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            Ok(resp)
        })
        .await
        .unwrap()
    }
}

fn rooms() -> Rooms {
    Rooms::new(RoomsConfig {
        sample_rate: ROOM_RATE,
        ..RoomsConfig::default()
    })
}

fn join(rooms: &Rooms, identity: &str, audio_rate: AudioRate) -> Participant {
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
                audio_rate,
            },
        )
        .unwrap()
}

fn facts() -> CallFacts {
    CallFacts {
        call_id: "SCL_test".into(),
        from: "+15550001111".into(),
        to: "+15550002222".into(),
        trunk_id: "ST_trunk".into(),
        room: "r".into(),
        custom_parameters: [("lang".to_string(), "en".to_string())].into(),
    }
}

/// The other member of the room: speaks a 440 Hz tone while `speaking`,
/// and reports the level (dBFS) of every frame it hears.
struct Caller {
    participant: Arc<Participant>,
    speaking: Arc<AtomicBool>,
    heard: mpsc::UnboundedReceiver<f32>,
    task: tokio::task::JoinHandle<()>,
}

impl Caller {
    fn join(rooms: &Rooms) -> Caller {
        let participant = Arc::new(join(rooms, "caller", AudioRate::Configured));
        let speaking = Arc::new(AtomicBool::new(true));
        let (tx, heard) = mpsc::unbounded_channel();
        let port = participant.audio();
        let on = speaking.clone();
        let task = tokio::spawn(async move {
            let mut clock = tokio::time::interval(Duration::from_millis(20));
            let mut phase = 0.0f64;
            loop {
                clock.tick().await;
                let n = port.frame_len();
                let rate = (n * 50) as f64;
                let mut frame = vec![0i16; n];
                if on.load(Ordering::Relaxed) {
                    for s in frame.iter_mut() {
                        *s = (8_000.0 * phase.sin()) as i16;
                        phase += 2.0 * std::f64::consts::PI * 440.0 / rate;
                    }
                }
                port.push(&frame);
                let mut out = vec![0i16; n];
                let level = if port.pull(&mut out) {
                    rms_dbfs(&out)
                } else {
                    -200.0
                };
                if tx.send(level).is_err() {
                    return;
                }
            }
        });
        Caller {
            participant,
            speaking,
            heard,
            task,
        }
    }

    /// Waits until a frame louder than `dbfs` is heard; the time it took.
    async fn hears_sound(&mut self, dbfs: f32) -> Duration {
        let begin = Instant::now();
        timeout(WAIT, async {
            while let Some(level) = self.heard.recv().await {
                if level > dbfs {
                    return;
                }
            }
        })
        .await
        .expect("the caller never heard the bot");
        begin.elapsed()
    }

    /// Levels heard over `window`.
    async fn levels(&mut self, window: Duration) -> Vec<f32> {
        while self.heard.try_recv().is_ok() {}
        tokio::time::sleep(window).await;
        std::iter::from_fn(|| self.heard.try_recv().ok()).collect()
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The bot's next text message as JSON (pings and binary skipped).
async fn next_json<S>(bot: &mut WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match timeout(WAIT, bot.next())
            .await
            .expect("no message")
            .unwrap()
            .unwrap()
        {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Reads until a message with this `event`.
async fn next_event<S>(bot: &mut WebSocketStream<S>, event: &str) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = next_json(bot).await;
        if message["event"] == event {
            return message;
        }
    }
}

/// Reads the bot's side to its end, as a real bot does, so that our close
/// frame gets its answer.
fn drain<S>(mut bot: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move { while let Some(Ok(_)) = bot.next().await {} });
}

/// After the close exchange the socket ends: nothing is left open.
async fn assert_socket_ends<S>(bot: &mut WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let rest = timeout(WAIT, bot.next())
        .await
        .expect("the socket stayed open");
    assert!(matches!(rest, None | Some(Err(_))), "{rest:?}");
}

fn ulaw_tone(frequency: f64, millis: usize) -> String {
    let samples: Vec<i16> = (0..millis * 8)
        .map(|i| {
            (10_000.0 * (2.0 * std::f64::consts::PI * frequency * i as f64 / 8_000.0).sin()) as i16
        })
        .collect();
    let mut coded = vec![0u8; samples.len()];
    g711::encode_ulaw(&samples, &mut coded);
    STANDARD.encode(coded)
}

fn media(payload: &str) -> Message {
    Message::Text(
        format!(r#"{{"event":"media","streamSid":"x","media":{{"payload":"{payload}"}}}}"#).into(),
    )
}

fn decode_media(message: &Value) -> Vec<i16> {
    let coded = STANDARD
        .decode(message["media"]["payload"].as_str().unwrap())
        .unwrap();
    coded.iter().map(|&c| g711::ulaw_to_linear(c)).collect()
}

/// A connected stream with its bot, room, and caller.
struct Setup {
    rooms: Rooms,
    _clock: tokio::task::JoinHandle<()>,
    caller: Caller,
    handle: StreamHandle,
    bot: WebSocketStream<TcpStream>,
    server: BotServer,
}

async fn setup(protocol: StreamProtocol) -> Setup {
    let server = BotServer::new().await;
    let mut spec = StreamSpec::new(server.url(), protocol);
    spec.headers = vec![("Authorization".into(), "Bearer t0ken".into())];
    spec.origin = Some("https://switchboard.test".into());
    let rooms = rooms();
    let clock = rooms.spawn_clock();
    let caller = Caller::join(&rooms);
    let (socket, bot) = tokio::join!(connect(&spec), server.accept(async |tcp| tcp));
    let socket = socket.unwrap();
    let participant = join(&rooms, "stream", AudioRate::Fixed(8_000));
    let handle = start(socket, participant, facts(), &spec);
    Setup {
        rooms,
        _clock: clock,
        caller,
        handle,
        bot,
        server,
    }
}

fn in_room(rooms: &Rooms, identity: &str) -> bool {
    rooms
        .participants("r")
        .map(|ps| ps.iter().any(|p| p.identity == identity))
        .unwrap_or(false)
}

#[tokio::test]
async fn twilio_handshake_then_media_every_20ms_both_ways_then_stop_and_close() {
    let mut s = setup(StreamProtocol::Twilio).await;
    let headers = s.server.headers.lock().unwrap().clone();
    assert!(headers.contains(&("authorization".into(), "Bearer t0ken".into())));
    assert!(headers.contains(&("origin".into(), "https://switchboard.test".into())));

    // The first two frames are text: connected, then start.
    let first = timeout(WAIT, s.bot.next()).await.unwrap().unwrap().unwrap();
    let Message::Text(first) = first else {
        panic!("connected must be a text frame")
    };
    assert_eq!(
        first.as_str(),
        r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#
    );
    let second = timeout(WAIT, s.bot.next()).await.unwrap().unwrap().unwrap();
    let Message::Text(second) = second else {
        panic!("start must be a text frame")
    };
    let start: Value = serde_json::from_str(second.as_str()).unwrap();
    assert_eq!(start["event"], "start");
    let sid = start["streamSid"].as_str().unwrap();
    assert!(sid.starts_with("MZ") && sid.len() == 34);
    assert_eq!(sid, s.handle.stream_id());
    assert!(!start["start"]["callSid"].as_str().unwrap().is_empty());
    let params = &start["start"]["customParameters"];
    assert_eq!(params["from_number"], "+15550001111");
    assert_eq!(params["to_number"], "+15550002222");
    assert_eq!(params["call_id"], "SCL_test");
    assert_eq!(params["lang"], "en");

    // Media flows every 20 ms, silence included; the caller's tone arrives.
    let begin = Instant::now();
    let mut frames = 0;
    let mut loudest_440 = -200.0f32;
    let mut last_chunk = 0u64;
    while begin.elapsed() < Duration::from_secs(1) {
        let m = next_json(&mut s.bot).await;
        assert_eq!(m["event"], "media");
        assert_eq!(m["streamSid"], sid);
        let chunk: u64 = m["media"]["chunk"].as_str().unwrap().parse().unwrap();
        assert_eq!(chunk, last_chunk + 1);
        last_chunk = chunk;
        let samples = decode_media(&m);
        assert_eq!(samples.len(), 160);
        loudest_440 = loudest_440.max(goertzel_dbfs(&samples, 8_000, 440.0));
        frames += 1;
    }
    assert!(
        (35..=70).contains(&frames),
        "{frames} media messages in 1 s"
    );
    assert!(
        loudest_440 > -20.0,
        "the caller's tone reached the bot at {loudest_440} dBFS"
    );

    // DTMF from the room reaches the bot.
    s.caller.participant.send_dtmf(5, "5", &[]);
    let dtmf = next_event(&mut s.bot, "dtmf").await;
    assert_eq!(dtmf["dtmf"]["digit"], "5");
    assert_eq!(dtmf["dtmf"]["track"], "inbound_track");

    // The bot's audio reaches the caller, as Pipecat sends it: 40 ms
    // chunks, the first two at once.
    s.caller.speaking.store(false, Ordering::Relaxed);
    for _ in 0..25 {
        s.bot.send(media(&ulaw_tone(1_000.0, 40))).await.unwrap();
    }
    s.caller.hears_sound(-30.0).await;
    assert!(s.handle.stats().bot_frames_played > 0);

    // stop(): `stop`, then a close with 1000, then Stopped; out of the room.
    s.handle.stop();
    let stop = next_event(&mut s.bot, "stop").await;
    assert_eq!(stop["streamSid"], sid);
    assert_eq!(stop["stop"]["callSid"], start["start"]["callSid"]);
    let close = loop {
        match timeout(WAIT, s.bot.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Normal));
    assert_socket_ends(&mut s.bot).await;
    assert_eq!(
        timeout(WAIT, s.handle.ended()).await.unwrap(),
        StreamEnd::Stopped
    );
    assert!(!in_room(&s.rooms, "stream"));
    assert!(in_room(&s.rooms, "caller"));
}

#[tokio::test]
async fn marks_wait_for_their_audio_and_clear_stops_playback_at_once() {
    let mut s = setup(StreamProtocol::Twilio).await;
    next_event(&mut s.bot, "start").await;
    s.caller.speaking.store(false, Ordering::Relaxed);

    // 300 ms of audio, then a mark: echoed only once it has played.
    let sent = Instant::now();
    s.bot.send(media(&ulaw_tone(1_000.0, 300))).await.unwrap();
    s.bot
        .send(Message::Text(
            r#"{"event":"mark","streamSid":"x","mark":{"name":"after-300ms"}}"#.into(),
        ))
        .await
        .unwrap();
    let echo = next_event(&mut s.bot, "mark").await;
    assert_eq!(echo["mark"]["name"], "after-300ms");
    assert!(
        sent.elapsed() >= Duration::from_millis(200),
        "echoed after {:?}",
        sent.elapsed()
    );
    let seq: u64 = echo["sequenceNumber"].as_str().unwrap().parse().unwrap();
    assert!(seq > 1);

    // Nothing queued: a mark is echoed at once.
    s.bot
        .send(Message::Text(
            r#"{"event":"mark","mark":{"name":"idle"}}"#.into(),
        ))
        .await
        .unwrap();
    let sent = Instant::now();
    assert_eq!(next_event(&mut s.bot, "mark").await["mark"]["name"], "idle");
    assert!(sent.elapsed() < Duration::from_secs(1));

    // Ten seconds of tone and a mark behind it; the caller hears it; a
    // clear echoes the mark at once and the bot's audio stops.
    s.bot
        .send(media(&ulaw_tone(1_000.0, 10_000)))
        .await
        .unwrap();
    s.bot
        .send(Message::Text(
            r#"{"event":"mark","mark":{"name":"end"}}"#.into(),
        ))
        .await
        .unwrap();
    s.caller.hears_sound(-30.0).await;
    s.bot
        .send(Message::Text(r#"{"event":"clear","streamSid":"x"}"#.into()))
        .await
        .unwrap();
    let sent = Instant::now();
    assert_eq!(next_event(&mut s.bot, "mark").await["mark"]["name"], "end");
    assert!(sent.elapsed() < Duration::from_secs(1));
    let played = s.handle.stats().bot_frames_played;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        s.handle.stats().bot_frames_played <= played + 1,
        "no bot frame after the clear but the one in flight"
    );
    // The room's rings drain within a few frames; then silence stays.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let levels = s.caller.levels(Duration::from_millis(400)).await;
    assert!(
        levels.iter().all(|&l| l < -60.0),
        "heard after clear: {levels:?}"
    );
    let stats = s.handle.stats();
    assert_eq!((stats.clears, stats.marks_echoed), (1, 3));
    drain(s.bot);
    s.handle.stop();
    assert_eq!(
        timeout(WAIT, s.handle.ended()).await.unwrap(),
        StreamEnd::Stopped
    );
}

#[tokio::test]
async fn the_bot_closing_ends_the_stream_and_leaves_the_room() {
    let mut s = setup(StreamProtocol::Twilio).await;
    next_event(&mut s.bot, "start").await;
    // Junk is ignored and counted, not fatal.
    s.bot.send(Message::Text("not json".into())).await.unwrap();
    s.bot
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    s.bot
        .send(Message::Text(r#"{"event":"rtvi","data":{}}"#.into()))
        .await
        .unwrap();
    s.bot
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    let end = timeout(WAIT, s.handle.ended()).await.unwrap();
    assert_eq!(
        end,
        StreamEnd::BotClosed {
            code: Some(1000),
            reason: "bye".into()
        }
    );
    assert_eq!(s.handle.stats().ignored, 3);
    assert!(!in_room(&s.rooms, "stream"));
    // ended() again says the same.
    assert_eq!(s.handle.ended().await, end);
}

/// A digit the caller presses just before the call ends (the room's event
/// and the stop ready together) reaches the bot before `stop`.
#[tokio::test]
async fn a_digit_queued_when_the_stream_stops_reaches_the_bot_before_stop() {
    let mut s = setup(StreamProtocol::Twilio).await;
    next_event(&mut s.bot, "start").await;
    // No await between: the stream's task sees both at its next poll.
    s.caller.participant.send_dtmf(7, "7", &[]);
    s.handle.stop();
    let dtmf = next_event(&mut s.bot, "dtmf").await;
    assert_eq!(dtmf["dtmf"]["digit"], "7");
    next_event(&mut s.bot, "stop").await;
    assert_eq!(
        timeout(WAIT, s.handle.ended()).await.unwrap(),
        StreamEnd::Stopped
    );
}

#[tokio::test]
async fn removal_from_the_room_sends_stop_and_closes() {
    let mut s = setup(StreamProtocol::Twilio).await;
    next_event(&mut s.bot, "start").await;
    s.rooms.remove_participant("r", "stream").unwrap();
    next_event(&mut s.bot, "stop").await;
    let close = loop {
        match timeout(WAIT, s.bot.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Normal));
    assert_socket_ends(&mut s.bot).await;
    assert_eq!(
        timeout(WAIT, s.handle.ended()).await.unwrap(),
        StreamEnd::RoomClosed
    );
    assert!(s.handle.is_finished());
}

#[tokio::test]
async fn telnyx_handshake_declares_pcmu_and_plays_media_without_stream_id() {
    let mut s = setup(StreamProtocol::telnyx(G711Law::Pcmu)).await;
    let connected = next_json(&mut s.bot).await;
    assert_eq!(
        connected,
        serde_json::json!({"event": "connected", "version": "1.0.0"})
    );
    let start = next_json(&mut s.bot).await;
    assert_eq!(start["event"], "start");
    assert_eq!(start["sequence_number"], "1");
    let id = start["stream_id"].as_str().unwrap().to_string();
    assert!(!id.is_empty());
    assert!(!start["start"]["call_control_id"]
        .as_str()
        .unwrap()
        .is_empty());
    assert_eq!(start["start"]["from"], "+15550001111");
    assert_eq!(start["start"]["to"], "+15550002222");
    assert_eq!(start["start"]["media_format"]["encoding"], "PCMU");
    assert_eq!(start["start"]["media_format"]["sample_rate"], 8000);
    let media_in = next_event(&mut s.bot, "media").await;
    assert_eq!(media_in["stream_id"], id.as_str());
    assert!(media_in["sequence_number"].is_string());
    assert_eq!(media_in["media"]["track"], "inbound");

    s.caller.speaking.store(false, Ordering::Relaxed);
    let payload = ulaw_tone(1_000.0, 1_000);
    s.bot
        .send(Message::Text(
            format!(r#"{{"event":"media","media":{{"payload":"{payload}"}}}}"#).into(),
        ))
        .await
        .unwrap();
    s.caller.hears_sound(-30.0).await;
    s.bot
        .send(Message::Text(r#"{"event":"clear"}"#.into()))
        .await
        .unwrap();
    // A mark with nothing queued is echoed at once, Telnyx-shaped.
    s.bot
        .send(Message::Text(
            r#"{"event":"mark","mark":{"name":"m"}}"#.into(),
        ))
        .await
        .unwrap();
    let echo = next_event(&mut s.bot, "mark").await;
    assert_eq!(echo["stream_id"], id.as_str());
    assert!(echo["sequence_number"].is_string());
    s.handle.stop();
    let stop = next_event(&mut s.bot, "stop").await;
    assert_eq!(stop["stream_id"], id.as_str());
    drain(s.bot);
    assert_eq!(
        timeout(WAIT, s.handle.ended()).await.unwrap(),
        StreamEnd::Stopped
    );
    assert_eq!(s.handle.stats().clears, 1);
}

#[tokio::test]
async fn raw_l16_sends_binary_only() {
    let mut s = setup(StreamProtocol::RawL16).await;
    for _ in 0..3 {
        match timeout(WAIT, s.bot.next()).await.unwrap().unwrap().unwrap() {
            Message::Binary(frame) => assert_eq!(frame.len(), 320),
            other => panic!("raw mode sent {other:?}"),
        }
    }
    s.caller.speaking.store(false, Ordering::Relaxed);
    let tone: Vec<u8> = (0..8_000)
        .flat_map(|i| ((8_000.0 * (i as f64 * 0.785).sin()) as i16).to_le_bytes())
        .collect();
    s.bot.send(Message::Binary(tone.into())).await.unwrap();
    s.caller.hears_sound(-30.0).await;
    drain(s.bot);
    s.handle.stop();
    assert_eq!(
        timeout(WAIT, s.handle.ended()).await.unwrap(),
        StreamEnd::Stopped
    );
}

#[tokio::test]
async fn connection_errors_are_precise() {
    // Nothing listens: refused, at once.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let begin = Instant::now();
    let e = connect(&StreamSpec::new(
        format!("ws://{addr}/ws"),
        StreamProtocol::Twilio,
    ))
    .await
    .unwrap_err();
    assert_eq!(e, StreamError::Refused { addr });
    assert!(begin.elapsed() < Duration::from_secs(2));

    // An HTTP answer instead of 101.
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", server.local_addr().unwrap());
    let answer = tokio::spawn(async move {
        let (mut tcp, _) = server.accept().await.unwrap();
        let mut buf = [0u8; 2048];
        let _ = tcp.read(&mut buf).await;
        tcp.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        // Holds the socket until the client has read the answer.
        let _ = tcp.read(&mut buf).await;
    });
    let e = connect(&StreamSpec::new(url, StreamProtocol::Twilio))
        .await
        .unwrap_err();
    assert_eq!(e, StreamError::UpgradeRefused { status: 403 });
    answer.await.unwrap();

    // A server that accepts and never answers: the upgrade times out.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut spec = StreamSpec::new(
        format!("ws://{}/ws", silent.local_addr().unwrap()),
        StreamProtocol::Twilio,
    );
    spec.connect_timeout = Duration::from_millis(300);
    let e = connect(&spec).await.unwrap_err();
    assert!(
        matches!(
            e,
            StreamError::Timeout {
                stage: ConnectStage::Upgrade,
                ..
            }
        ),
        "{e}"
    );
    drop(silent);
}

#[tokio::test]
async fn wss_trusts_the_given_roots_and_not_a_self_signed_certificate_by_default() {
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::sync::Arc;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let server = BotServer::new().await;
    let url = format!("wss://localhost:{}/ws", server.addr().port());
    let spec = StreamSpec::new(url, StreamProtocol::Twilio);

    // With the certificate as a root: connected, and the handshake is the same.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let tls = tls_config_with_roots(roots).unwrap();
    let acceptor2 = acceptor.clone();
    let (socket, mut bot) = tokio::join!(
        connect_with_tls(&spec, tls),
        server.accept(async move |tcp| acceptor2.accept(tcp).await.unwrap())
    );
    let socket = socket.unwrap();
    assert!(socket.is_tls());
    let rooms = rooms();
    let mut handle = start(
        socket,
        join(&rooms, "stream", AudioRate::Fixed(8_000)),
        facts(),
        &spec,
    );
    assert_eq!(next_json(&mut bot).await["event"], "connected");
    assert_eq!(next_json(&mut bot).await["event"], "start");
    drain(bot);
    handle.stop();
    assert_eq!(
        timeout(WAIT, handle.ended()).await.unwrap(),
        StreamEnd::Stopped
    );

    // With the system's roots: a TLS error that says why.
    let refused = tokio::spawn(async move {
        let (tcp, _) = server.listener.accept().await.unwrap();
        let _ = acceptor.accept(tcp).await;
    });
    match connect(&spec).await.unwrap_err() {
        StreamError::Tls { host, reason } => {
            assert_eq!(host, "localhost");
            assert!(reason.to_lowercase().contains("certificate"), "{reason}");
        }
        other => panic!("expected a TLS error, got {other}"),
    }
    refused.await.unwrap();
}

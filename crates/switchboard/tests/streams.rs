//! Calls streamed to a voice bot by their dispatch rule, end to end: the
//! real binary, baresip as the caller, and a scripted WebSocket bot in this
//! file speaking Twilio Media Streams (the bot side as Pipecat's Twilio
//! serializer reads it: text frames, base64 µ-law at 8 kHz).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::baresip::{tone, Baresip, CallerSpec};
use common::routes::{rule, settle, start, trunk, wait_log};
use common::uac::{linear_to_ulaw, ulaw_to_linear};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// What the caller plays and what the bot plays: far enough apart that
/// each is told from the other (and from silence) by its own filter.
const CALLER_HZ: f32 = 440.0;
const BOT_HZ: f32 = 1000.0;

/// The power of `hz` in `samples` (Goertzel), per sample.
fn power_at(samples: &[i16], rate: u32, hz: f32) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / samples.len() as f64
}

/// `hz` dominates `other` in `samples` by far.
fn dominant(samples: &[i16], rate: u32, hz: f32, other: f32) -> bool {
    let wanted = power_at(samples, rate, hz);
    let unwanted = power_at(samples, rate, other);
    wanted > 1_000.0 && wanted > 20.0 * unwanted
}

/// What the scripted bot saw.
#[derive(Debug, Default)]
struct BotLog {
    /// Every text frame, parsed, in order.
    messages: Vec<Value>,
    /// Binary frames received (the handshake must not be one).
    binary_frames: usize,
    /// Caller audio from the `media` messages, decoded.
    heard: Vec<i16>,
    /// How the socket ended: our close or theirs.
    closed_by_gateway: bool,
    /// When the bot sent its tone and the mark behind it.
    mark_sent_at: Option<Instant>,
    /// When that mark came back.
    mark_echoed_at: Option<Instant>,
    /// When the bot sent `clear`.
    clear_sent_at: Option<Instant>,
}

impl BotLog {
    fn events(&self) -> Vec<&str> {
        self.messages
            .iter()
            .map(|m| m["event"].as_str().unwrap_or(""))
            .collect()
    }
}

/// What the scripted bot does.
#[derive(Clone, Copy)]
enum BotScript {
    /// Plays a 2 s tone and a mark behind it, then closes the socket after
    /// this long (Pipecat at its EndFrame).
    ToneThenClose(Duration),
    /// Queues a 5 s tone and a mark, sends `clear` this long after, then
    /// waits for the gateway to stop the stream.
    ClearAfter(Duration),
}

/// A bot that accepts one stream on 127.0.0.1, sends its tone at once
/// (faster than real time: the gateway paces it), and records what it is
/// sent.
async fn scripted_bot(script: BotScript) -> (String, tokio::task::JoinHandle<BotLog>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (stream, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
            .await
            .expect("the gateway connects to the bot")
            .unwrap();
        let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
        let mut log = BotLog::default();
        let mut stream_sid = String::new();
        let started = tokio::time::Instant::now();
        let far = started + Duration::from_secs(30);
        let (close_at, mut clear_at) = match script {
            BotScript::ToneThenClose(after) => (Some(started + after), None),
            BotScript::ClearAfter(_) => (None, None),
        };
        loop {
            let next = tokio::select! {
                next = socket.next() => next,
                _ = tokio::time::sleep_until(clear_at.unwrap_or(far)), if clear_at.is_some() => {
                    clear_at = None;
                    log.clear_sent_at = Some(Instant::now());
                    let clear = json!({"event": "clear", "streamSid": stream_sid});
                    socket.send(Message::text(clear.to_string())).await.unwrap();
                    continue;
                }
                _ = tokio::time::sleep_until(close_at.unwrap_or(far)) => {
                    assert!(close_at.is_some(), "the bot heard nothing for 30 s: {:?}", log.events());
                    socket.close(None).await.ok();
                    // Drain until the gateway answers the close.
                    while let Ok(Some(Ok(_))) =
                        tokio::time::timeout(Duration::from_secs(2), socket.next()).await
                    {
                    }
                    return log;
                }
            };
            let message = match next {
                None | Some(Err(_)) => return log,
                Some(Ok(message)) => message,
            };
            match message {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    match value["event"].as_str() {
                        Some("start") => {
                            stream_sid = value["streamSid"].as_str().unwrap_or("").to_owned();
                        }
                        Some("media") if log.mark_sent_at.is_none() => {
                            let seconds = match script {
                                BotScript::ToneThenClose(_) => 2.0,
                                BotScript::ClearAfter(after) => {
                                    clear_at = Some(tokio::time::Instant::now() + after);
                                    5.0
                                }
                            };
                            let bot_tone: Vec<u8> = tone(8_000, BOT_HZ, seconds)
                                .into_iter()
                                .map(linear_to_ulaw)
                                .collect();
                            for chunk in bot_tone.chunks(320) {
                                let media = json!({
                                    "event": "media",
                                    "streamSid": stream_sid,
                                    "media": {"payload": STANDARD.encode(chunk)},
                                });
                                socket.send(Message::text(media.to_string())).await.unwrap();
                            }
                            let mark = json!({"event": "mark", "streamSid": stream_sid, "mark": {"name": "tone-played"}});
                            socket.send(Message::text(mark.to_string())).await.unwrap();
                            log.mark_sent_at = Some(Instant::now());
                            // Pipecat passes arbitrary JSON through; it must be ignored.
                            socket
                                .send(Message::text(r#"{"event":"rtvi","data":{}}"#))
                                .await
                                .unwrap();
                        }
                        Some("mark") => {
                            assert_eq!(value["mark"]["name"], "tone-played", "{value}");
                            log.mark_echoed_at = Some(Instant::now());
                        }
                        _ => {}
                    }
                    if value["event"] == "media" {
                        let payload = value["media"]["payload"].as_str().unwrap_or("");
                        let bytes = STANDARD.decode(payload).unwrap();
                        log.heard.extend(bytes.into_iter().map(ulaw_to_linear));
                    }
                    log.messages.push(value);
                }
                Message::Binary(_) => log.binary_frames += 1,
                Message::Close(_) => {
                    log.closed_by_gateway = true;
                    return log;
                }
                _ => {}
            }
        }
    });
    (url, task)
}

/// A trunk for +15550100 and an individual rule whose attributes stream
/// its calls to `url`.
fn streamed_route(sb: &common::Switchboard, url: &str) {
    streamed_route_with(sb, url, "twilio");
}

fn streamed_route_with(sb: &common::Switchboard, url: &str, protocol: &str) {
    let trunk_id = trunk(sb, r#"{"name": "t", "numbers": ["+15550100"]}"#);
    let attributes = json!({
        "switchboard.stream.url": url,
        "switchboard.stream.protocol": protocol,
        "switchboard.stream.param.assistant": "sales",
        "team": "blue",
    });
    rule(
        sb,
        &format!(
            r#"{{"name": "bot", "trunk_ids": ["{trunk_id}"], "attributes": {attributes}, "rule": {{"dispatch_rule_individual": {{"room_prefix": "bot-"}}}}}}"#
        ),
    );
    settle(sb);
}

fn caller(sb: &common::Switchboard, name: &str, run_secs: u32) -> Baresip {
    Baresip::call(CallerSpec {
        name,
        codec: "PCMU",
        wav_rate: 8_000,
        channels: 1,
        source: tone(8_000, CALLER_HZ, run_secs as f32 + 2.0),
        mediaenc: None,
        dial: Baresip::uri("+15550100", sb.udp.unwrap()),
        run_secs,
        auth: None,
    })
}

fn assert_handshake(log: &BotLog) {
    assert_eq!(
        log.binary_frames, 0,
        "the handshake and media are text frames"
    );
    let events = log.events();
    assert_eq!(&events[..2], ["connected", "start"], "{events:?}");
    let connected = &log.messages[0];
    assert_eq!(connected["protocol"], "Call");
    assert_eq!(connected["version"], "1.0.0");
    let start = &log.messages[1];
    assert_eq!(start["sequenceNumber"], "1");
    let sid = start["streamSid"].as_str().unwrap();
    assert!(sid.starts_with("MZ") && sid.len() == 34, "{start}");
    assert_eq!(start["start"]["streamSid"], sid);
    let call_sid = start["start"]["callSid"].as_str().unwrap();
    assert!(
        call_sid.starts_with("CA") && call_sid.len() == 34,
        "{start}"
    );
    assert_eq!(start["start"]["customParameters"]["assistant"], "sales");
    assert_eq!(start["start"]["customParameters"]["to_number"], "+15550100");
    assert!(start["start"]["customParameters"]["call_id"]
        .as_str()
        .unwrap()
        .starts_with("SCL_"));
    assert_eq!(
        start["start"]["mediaFormat"],
        json!({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1})
    );
    // The stream's keys configure the call; the room does not see them.
    assert!(!start.to_string().contains("switchboard.stream"), "{start}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_hears_the_caller_the_caller_hears_the_bot_and_the_bot_hangs_up() {
    let (url, bot) = scripted_bot(BotScript::ToneThenClose(Duration::from_millis(3_500))).await;
    let sb = start(&[]);
    streamed_route(&sb, &url);
    let mut phone = caller(&sb, "stream-bot-ends", 15);
    let log = bot.await.unwrap();
    assert_handshake(&log);
    assert!(!log.closed_by_gateway, "the bot closed first");
    // The mark came back once the 2 s of audio before it had played.
    let waited = log.mark_echoed_at.expect("the mark came back") - log.mark_sent_at.unwrap();
    assert!(
        (Duration::from_millis(1_800)..Duration::from_millis(2_600)).contains(&waited),
        "the mark came back after {waited:?}"
    );
    // Every 20 ms, silence included: at least 2.5 s of media in 3.5 s.
    let media = log.events().iter().filter(|e| **e == "media").count();
    assert!(media >= 125, "{media} media messages");
    let second = &log.messages[3];
    assert_eq!(second["media"]["track"], "inbound");
    assert_eq!(second["media"]["chunk"], "2");
    // `connected` has no number; `start` is "1".
    assert_eq!(second["sequenceNumber"], "3");
    // The caller's tone reached the bot.
    let tail = &log.heard[log.heard.len().saturating_sub(8_000)..];
    assert!(
        dominant(tail, 8_000, CALLER_HZ, BOT_HZ),
        "the bot did not hear the caller's tone"
    );
    // The bot closing the socket hung up the call with BYE.
    let server_log = wait_log(
        &sb,
        "the voice bot ended the stream",
        Duration::from_secs(5),
    );
    assert!(
        server_log.contains("media stream bot connected"),
        "{server_log}"
    );
    let (rate, heard) = tokio::task::spawn_blocking(move || {
        let heard = phone.heard(Duration::from_secs(3));
        (heard, phone.log())
    })
    .await
    .map(|((rate, heard), baresip_log)| {
        assert!(
            baresip_log.contains("terminated") || baresip_log.contains("closed"),
            "baresip was not hung up on:\n{baresip_log}"
        );
        (rate, heard)
    })
    .unwrap();
    // The caller heard the bot's 2 s tone, paced out without gaps.
    let loud = loud_part(rate, &heard);
    let seconds = loud.len() as f32 / rate as f32;
    assert!(
        (1.7..=2.3).contains(&seconds),
        "the caller heard {seconds} s of the bot"
    );
    assert!(
        dominant(&loud, rate, BOT_HZ, CALLER_HZ),
        "the caller did not hear the bot's tone"
    );
    common::api::assert_nothing_left(sb.api.unwrap(), || sb.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_stops_playback_at_once_and_the_caller_hanging_up_sends_stop() {
    let (url, bot) = scripted_bot(BotScript::ClearAfter(Duration::from_secs(1))).await;
    let sb = start(&[]);
    streamed_route(&sb, &url);
    let mut phone = caller(&sb, "stream-caller-ends", 3);
    let log = bot.await.unwrap();
    // `clear` dropped the 4 s still queued and sent the pending mark back at once.
    let echoed = log
        .mark_echoed_at
        .expect("clear sends the pending mark back");
    let after_clear = echoed - log.clear_sent_at.unwrap();
    assert!(
        after_clear < Duration::from_millis(100),
        "the mark came back {after_clear:?} after clear"
    );
    let (rate, heard) = tokio::task::spawn_blocking(move || phone.heard(Duration::from_secs(5)))
        .await
        .unwrap();
    let seconds = loud_part(rate, &heard).len() as f32 / rate as f32;
    assert!(
        (0.8..=1.3).contains(&seconds),
        "the caller heard {seconds} s of a tone cleared after 1 s"
    );
    assert_handshake(&log);
    let events = log.events();
    assert_eq!(events.last(), Some(&"stop"), "{events:?}");
    assert!(log.closed_by_gateway, "the gateway closes after stop");
    let stop = log.messages.last().unwrap();
    assert_eq!(stop["streamSid"], log.messages[1]["streamSid"]);
    assert_eq!(stop["stop"]["callSid"], log.messages[1]["start"]["callSid"]);
    common::api::assert_nothing_left(sb.api.unwrap(), || sb.log());
    let state = common::api::counts_of(common::api::debug_state(sb.api.unwrap()).await);
    assert_eq!(state["rooms"], 0, "{state}");
}

#[test]
fn a_bot_that_cannot_be_reached_refuses_the_call() {
    // A port nothing listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let sb = start(&[("SWITCHBOARD_STREAMS__UNREACHABLE_STATUS", "480")]);
    streamed_route(&sb, &format!("ws://127.0.0.1:{port}/ws"));
    let mut uac = common::uac::Uac::new(sb.udp.unwrap(), "+15550199", "+15550100");
    let seq = uac.invite(&uac.pcmu_offer(), &[]);
    let (_, refused) = uac.final_response(seq, Duration::from_secs(10));
    assert_eq!(refused.status(), 480, "{}", refused.text);
    let reason = refused.header("Reason").unwrap_or("");
    assert!(reason.contains("Voice bot unavailable"), "{reason}");
    let call = common::routes::last_ended_call(&sb);
    assert_eq!(call["result"], "refused", "{call}");
    assert_eq!(call["sip_status"], 480, "{call}");
    let error = call["info"]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("Voice bot unavailable"), "{call}");
    common::api::assert_nothing_left(sb.api.unwrap(), || sb.log());
}

/// The caller's audio as the frames baresip recorded, cut to those with sound.
fn loud_part(rate: u32, heard: &[i16]) -> Vec<i16> {
    heard
        .chunks(usize::try_from(rate / 50).unwrap())
        .filter(|frame| frame.iter().any(|s| s.unsigned_abs() > 2_000))
        .flatten()
        .copied()
        .collect()
}

/// A real Pipecat 1.14 bot (tests/streams/pipecat_bot.py, in the virtualenv
/// tests/run makes from tests/deps/pipecat.venv) takes a baresip call routed
/// by a dispatch rule: it hears the caller's tone, the caller hears its
/// tone, and its pipeline ending hangs up the call.
fn pipecat_takes_a_call(protocol: &str) {
    let python = common::repo().join("target/venvs/pipecat/bin/python");
    assert!(
        python.exists(),
        "{} is missing: tests/run installs it from tests/deps/pipecat.venv",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let result = dir.path().join("result.json");
    let mut bot = std::process::Command::new(&python)
        .arg(common::repo().join("tests/streams/pipecat_bot.py"))
        .arg(&ready)
        .arg(&result)
        .arg(protocol)
        .arg(BOT_HZ.to_string())
        .arg("3.5")
        .stdout(std::fs::File::create(dir.path().join("bot.log")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("bot.err")).unwrap())
        .spawn()
        .unwrap();
    let bot_log = || {
        std::fs::read_to_string(dir.path().join("bot.err")).unwrap_or_default()
            + &std::fs::read_to_string(dir.path().join("bot.log")).unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let port = loop {
        if let Ok(port) = std::fs::read_to_string(&ready) {
            break port;
        }
        assert!(
            bot.try_wait().unwrap().is_none(),
            "the bot exited:\n{}",
            bot_log()
        );
        assert!(
            Instant::now() < deadline,
            "the bot never listened:\n{}",
            bot_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let sb = start(&[]);
    streamed_route_with(&sb, &format!("ws://127.0.0.1:{}/ws", port.trim()), protocol);
    let mut phone = caller(&sb, &format!("pipecat-{protocol}"), 20);
    let deadline = Instant::now() + Duration::from_secs(30);
    let outcome: Value = loop {
        if let Ok(text) = std::fs::read_to_string(&result) {
            if let Ok(value) = serde_json::from_str(&text) {
                break value;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the bot's pipeline never ended:\n{}\n{}",
            bot_log(),
            sb.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = bot.kill();
    let _ = bot.wait();
    // Pipecat ending its pipeline closed the socket, which hung up the call.
    wait_log(
        &sb,
        "the voice bot ended the stream",
        Duration::from_secs(10),
    );
    let (rate, heard) = phone.heard(Duration::from_secs(5));
    // The bot heard the caller's tone, through its own serializer.
    let seconds = outcome["heard_seconds"].as_f64().unwrap();
    assert!(seconds >= 2.0, "the bot heard {seconds} s: {outcome}");
    let caller_power = outcome["power_440"].as_f64().unwrap();
    let own_power = outcome["power_tone"].as_f64().unwrap();
    assert!(
        caller_power > 1_000.0 && caller_power > 20.0 * own_power,
        "the bot did not hear the caller's tone: {outcome}"
    );
    // The caller heard the bot's 2 s tone.
    let loud = loud_part(rate, &heard);
    let heard_seconds = loud.len() as f32 / rate as f32;
    assert!(
        (1.7..=2.3).contains(&heard_seconds),
        "the caller heard {heard_seconds} s of the bot"
    );
    assert!(
        dominant(&loud, rate, BOT_HZ, CALLER_HZ),
        "the caller did not hear the bot's tone"
    );
    common::api::assert_nothing_left(sb.api.unwrap(), || sb.log());
}

#[test]
fn a_pipecat_bot_with_the_twilio_serializer_takes_a_call() {
    pipecat_takes_a_call("twilio");
}

#[test]
fn a_pipecat_bot_with_the_telnyx_serializer_takes_a_call() {
    pipecat_takes_a_call("telnyx");
}

/// `switchboard sip ...` against the server.
fn sip_cli(sb: &common::Switchboard, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("sip")
        .args(args)
        .env("LIVEKIT_URL", format!("http://{}", sb.api.unwrap()))
        .env("LIVEKIT_API_KEY", common::api::KEY)
        .env("LIVEKIT_API_SECRET", common::api::SECRET)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_room_is_streamed_and_stopped_from_the_command_line() {
    let (url, bot) = scripted_bot(BotScript::ClearAfter(Duration::from_secs(60))).await;
    let sb = start(&[]);
    let api = sb.api.unwrap();
    let token = common::api::token(json!({"video": {"roomCreate": true}}));
    let (status, _) =
        common::api::room_service(api, "CreateRoom", &token, json!({"name": "lobby"})).await;
    assert_eq!(status, 200);
    // A room that does not exist, and a protocol nobody speaks, are refused.
    let out = sip_cli(
        &sb,
        &["stream", "start", "--room", "nowhere", "--bot-url", &url],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_found"));
    let out = sip_cli(
        &sb,
        &[
            "stream",
            "start",
            "--room",
            "lobby",
            "--bot-url",
            &url,
            "--protocol",
            "plivo",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid_argument"),
        "{out:?}"
    );

    let out = sip_cli(
        &sb,
        &[
            "stream",
            "start",
            "--room",
            "lobby",
            "--bot-url",
            &url,
            "--identity",
            "lobby-bot",
            "--param",
            "assistant=sales",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("Identity: lobby-bot") && stdout.contains("StreamID: MZ"),
        "{stdout}"
    );
    let admin = common::api::admin_token("lobby");
    let (_, listed) =
        common::api::room_service(api, "ListParticipants", &admin, json!({"room": "lobby"})).await;
    assert_eq!(
        listed["participants"][0]["identity"], "lobby-bot",
        "{listed}"
    );
    assert_eq!(listed["participants"][0]["kind"], "AGENT", "{listed}");

    let out = sip_cli(
        &sb,
        &[
            "stream",
            "stop",
            "--room",
            "lobby",
            "--identity",
            "lobby-bot",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let log = bot.await.unwrap();
    assert_eq!(&log.events()[..2], ["connected", "start"]);
    assert_eq!(
        log.messages[1]["start"]["customParameters"]["assistant"],
        "sales"
    );
    assert_eq!(log.events().last(), Some(&"stop"), "{:?}", log.events());
    assert!(log.closed_by_gateway);
    wait_log(&sb, "API media stream ended", Duration::from_secs(5));
}

#[test]
fn a_room_stream_to_an_unreachable_bot_is_refused() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let sb = start(&[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let token = common::api::token(json!({"video": {"roomCreate": true}}));
    let (status, _) = runtime.block_on(common::api::room_service(
        sb.api.unwrap(),
        "CreateRoom",
        &token,
        json!({"name": "lobby"}),
    ));
    assert_eq!(status, 200);
    let url = format!("ws://127.0.0.1:{port}/ws");
    let out = sip_cli(
        &sb,
        &["stream", "start", "--room", "lobby", "--bot-url", &url],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stderr.contains("unavailable") && stderr.contains("cannot be reached"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digit_the_caller_sends_reaches_the_bot_and_a_bye_stops_the_stream() {
    let (url, bot) = scripted_bot(BotScript::ClearAfter(Duration::from_secs(60))).await;
    let sb = start(&[]);
    streamed_route(&sb, &url);
    let (mut uac, _) = common::routes::answered_call(&sb);
    let info = uac.in_dialog(
        "INFO",
        "application/dtmf-relay",
        "Signal=7\r\nDuration=160\r\n",
    );
    assert_eq!(
        uac.response_to(info, "INFO", Duration::from_secs(3))
            .status(),
        200
    );
    // Hung up at once: a digit queued as the stream stops still goes first.
    let bye = uac.in_dialog("BYE", "", "");
    assert_eq!(
        uac.response_to(bye, "BYE", Duration::from_secs(3)).status(),
        200
    );
    let log = bot.await.unwrap();
    let dtmf: Vec<&Value> = log
        .messages
        .iter()
        .filter(|m| m["event"] == "dtmf")
        .collect();
    assert_eq!(dtmf.len(), 1, "{:?}", log.events());
    assert_eq!(dtmf[0]["dtmf"]["digit"], "7");
    assert_eq!(dtmf[0]["dtmf"]["track"], "inbound_track");
    assert_eq!(dtmf[0]["streamSid"], log.messages[1]["streamSid"]);
    assert_eq!(log.events().last(), Some(&"stop"), "{:?}", log.events());
    common::api::assert_nothing_left(sb.api.unwrap(), || sb.log());
}

#[test]
fn a_bot_in_a_refused_network_is_never_connected() {
    // Something listens there, but 127.0.0.2 is refused by the configuration.
    let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sb = start(&[(
        "SWITCHBOARD_SECURITY__REFUSED_DESTINATIONS",
        "[127.0.0.2/32, 169.254.0.0/16]",
    )]);
    streamed_route(&sb, &format!("ws://127.0.0.2:{port}/ws"));
    let mut uac = common::uac::Uac::new(sb.udp.unwrap(), "+15550199", "+15550100");
    let seq = uac.invite(&uac.pcmu_offer(), &[]);
    let (_, refused) = uac.final_response(seq, Duration::from_secs(10));
    assert_eq!(refused.status(), 503, "{}", refused.text);
    assert!(refused.header("Retry-After").is_some(), "{}", refused.text);
    let call = common::routes::last_ended_call(&sb);
    assert_eq!(call["sip_status"], 503, "{call}");
    let error = call["info"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("refused network"), "{call}");
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "switchboard connected to a refused address"
    );
    common::api::assert_nothing_left(sb.api.unwrap(), || sb.log());
}

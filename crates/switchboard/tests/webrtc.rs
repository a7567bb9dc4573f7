//! LiveKit's own client SDK in switchboard's rooms: the official Python
//! `livekit` package (libwebrtc underneath) joins over `/rtc` exactly as it
//! joins a LiveKit server, beside a real phone (baresip) and other SDK
//! clients. Checked by content: tones both ways, DTMF both ways.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::api::{join_token, wait_for_calls_blocking, KEY, SECRET};
use common::baresip::{tone, Baresip, CallerSpec};
use common::routes::{answered_call, open_route, rule, settle, start, trunk, wait_log};
use common::uac::{received_telephone_events, send_telephone_event};
use common::Switchboard;
use livekit_protocol::SignalResponse;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use switchboard_media::tones::goertzel_dbfs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// LiveKit's `ParticipantInfo.Kind` numbers.
const KIND_STANDARD: i64 = 0;
const KIND_SIP: i64 = 3;
const KIND_AGENT: i64 = 4;

/// A trunk for +15550100 from 127.0.0.1 and a direct rule into `room`.
fn room_route(sb: &Switchboard, room: &str) {
    let id = trunk(
        sb,
        r#"{"name": "desk", "numbers": ["+15550100"], "allowed_addresses": ["127.0.0.1"]}"#,
    );
    rule(
        sb,
        &format!(
            r#"{{"name": "to-room", "trunk_ids": ["{id}"], "rule": {{"dispatch_rule_direct": {{"room_name": "{room}"}}}}}}"#
        ),
    );
    settle(sb);
}

/// The SDK client of tests/sdk/python/webrtc_participant.py.
struct SdkClient {
    child: Child,
    identity: String,
}

/// Runs `body` with the official Python server SDK: statements of an
/// async function (indented 4 spaces) where `lk` is a `LiveKitAPI` for
/// `sb` and `sys.argv[4..]` are `args`.
fn server_sdk(sb: &Switchboard, body: &str, args: &[&str]) -> std::process::Output {
    let script = format!(
        "import asyncio, json, sys\nfrom livekit import api\nasync def main():\n    \
         lk = api.LiveKitAPI(sys.argv[1], sys.argv[2], sys.argv[3])\n{body}    \
         await lk.aclose()\nasyncio.run(main())\n"
    );
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(format!("http://{}", sb.api.unwrap()))
        .args([KEY, SECRET])
        .args(args)
        .output()
        .expect("python3 with the livekit-api package (tests/deps/sdk.pip)")
}

/// RoomService SendData through the official Python server SDK.
fn send_data_from_the_server(sb: &Switchboard, room: &str, text: &str) {
    let output = server_sdk(
        sb,
        "    await lk.room.send_data(api.SendDataRequest(room=sys.argv[4], data=sys.argv[5].encode(), kind=0))\n",
        &[room, text],
    );
    assert!(
        output.status.success(),
        "SendData: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl SdkClient {
    fn join(
        sb: &Switchboard,
        room: &str,
        identity: &str,
        tone_hz: f32,
        seconds: f32,
        dtmf: &str,
    ) -> SdkClient {
        SdkClient::join_with(sb, room, identity, tone_hz, seconds, &["--send-dtmf", dtmf])
    }

    fn join_with(
        sb: &Switchboard,
        room: &str,
        identity: &str,
        tone_hz: f32,
        seconds: f32,
        extra: &[&str],
    ) -> SdkClient {
        let script = common::repo().join("tests/sdk/python/webrtc_participant.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(format!("ws://{}", sb.api.unwrap()))
            .arg(join_token(room, identity))
            .args(["--tone", &tone_hz.to_string()])
            .args(["--seconds", &seconds.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 with the livekit package (tests/deps/sdk.pip)");
        SdkClient {
            child,
            identity: identity.to_string(),
        }
    }

    /// Waits for it to finish; its JSON report.
    fn report(self, sb: &Switchboard) -> Value {
        let output = self.child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().rev().find(|l| l.starts_with('{'));
        match line.map(serde_json::from_str::<Value>) {
            Some(Ok(report)) if output.status.success() => report,
            _ => panic!(
                "the SDK client {} failed ({}):\n{stdout}\n{}\n{}",
                self.identity,
                output.status,
                String::from_utf8_lossy(&output.stderr),
                sb.log()
            ),
        }
    }
}

/// The participant the report heard who is of `kind`: (identity, hz, rms).
fn heard_of_kind(report: &Value, kind: i64) -> Vec<(String, f64, f64)> {
    let remotes = report["remotes"].as_object().cloned().unwrap_or_default();
    report["heard"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|(who, _)| remotes.get(who).and_then(|r| r["kind"].as_i64()) == Some(kind))
        .map(|(who, h)| {
            (
                who,
                h["hz"].as_f64().unwrap_or(0.0),
                h["rms"].as_f64().unwrap_or(0.0),
            )
        })
        .collect()
}

fn sdk_and_phone_hear_each_other(codec: &str, rate: u32, channels: u16) {
    let sb = start(&[]);
    room_route(&sb, "lk");
    let client = SdkClient::join(&sb, "lk", "app", 440.0, 9.0, "");
    wait_log(&sb, "WebRTC participant connected", Duration::from_secs(20));
    let mut caller = Baresip::call(CallerSpec {
        name: "webrtc-phone",
        codec,
        wav_rate: rate,
        channels,
        source: tone(rate, 700.0, 12.0),
        mediaenc: None,
        dial: Baresip::uri("+15550100", sb.udp.unwrap()),
        run_secs: 6,
        auth: None,
    });
    wait_for_calls_blocking(sb.api.unwrap(), 1);
    let (heard_rate, heard) = caller.heard(Duration::from_secs(20));
    let tail = &heard[heard.len().saturating_sub(heard_rate as usize * 3)..];
    let sdk_tone = goertzel_dbfs(tail, heard_rate, 440.0);
    let own_tone = goertzel_dbfs(tail, heard_rate, 700.0);
    assert!(
        sdk_tone > -35.0 && own_tone < -45.0,
        "the phone hears the SDK's 440 Hz at {sdk_tone:.1} dBFS and itself at {own_tone:.1}\n{}\n{}",
        caller.log(),
        sb.log()
    );
    let report = client.report(&sb);
    // Published alone in the room; the phone that joined is its first
    // subscriber.
    assert!(
        report["subscribed_after"].is_number(),
        "the client was told its track has a subscriber (track_subscribed): {report}"
    );
    let phones = heard_of_kind(&report, KIND_SIP);
    assert_eq!(
        phones.len(),
        1,
        "the SDK got one SIP participant's track: {report}"
    );
    let (_, hz, rms) = &phones[0];
    assert!(
        (hz - 700.0).abs() < 15.0 && *rms > 1000.0,
        "the SDK hears the phone's 700 Hz tone, not {hz:.0} Hz at RMS {rms:.0}: {report}"
    );
    let phone = report["remotes"]
        .as_object()
        .unwrap()
        .values()
        .find(|r| r["kind"] == KIND_SIP)
        .unwrap();
    assert!(
        phone["attributes"]["sip.phoneNumber"]
            .as_str()
            .is_some_and(|n| n.starts_with("+1555")),
        "the SIP participant carries its sip.* attributes: {phone}\n{}",
        sb.log()
    );
}

#[test]
fn an_sdk_client_and_a_pcmu_phone_hear_each_other() {
    sdk_and_phone_hear_each_other("PCMU", 8000, 1);
}

#[test]
fn an_sdk_client_and_an_opus_phone_hear_each_other() {
    sdk_and_phone_hear_each_other("opus/48000/2", 48000, 2);
}

/// Two SDK clients and a phone: each client hears the other client and
/// the phone, not itself; the phone hears both clients; DTMF, a user data
/// packet and an RPC from one client reach the other; RoomService's
/// SendData (the official server SDK) reaches a client from the server.
#[test]
fn two_sdk_clients_and_a_phone_each_hear_the_others_and_trade_dtmf() {
    let sb = start(&[]);
    room_route(&sb, "lk3");
    let alice = SdkClient::join(&sb, "lk3", "alice", 440.0, 12.0, "");
    wait_log(&sb, "WebRTC participant connected", Duration::from_secs(20));
    let bob = SdkClient::join_with(
        &sb,
        "lk3",
        "bob",
        1000.0,
        10.0,
        &[
            "--send-dtmf",
            "7#",
            "--send-data",
            "hello alice",
            "--rpc-to",
            "alice",
        ],
    );
    let mut caller = Baresip::call(CallerSpec {
        name: "webrtc-three",
        codec: "PCMU",
        wav_rate: 8000,
        channels: 1,
        source: tone(8000, 700.0, 12.0),
        mediaenc: None,
        dial: Baresip::uri("+15550100", sb.udp.unwrap()),
        run_secs: 6,
        auth: None,
    });
    wait_for_calls_blocking(sb.api.unwrap(), 1);
    let (rate, heard) = caller.heard(Duration::from_secs(20));
    send_data_from_the_server(&sb, "lk3", "from the server");
    let tail = &heard[heard.len().saturating_sub(rate as usize * 3)..];
    for hz in [440.0, 1000.0] {
        let level = goertzel_dbfs(tail, rate, hz);
        assert!(
            level > -35.0,
            "the phone hears {hz} Hz at {level:.1} dBFS\n{}",
            sb.log()
        );
    }
    let (alice, bob) = (alice.report(&sb), bob.report(&sb));
    for (report, other, other_hz) in [(&alice, "bob", 1000.0), (&bob, "alice", 440.0)] {
        let clients = heard_of_kind(report, KIND_STANDARD);
        assert_eq!(
            clients.len(),
            1,
            "one other client heard, not itself: {report}"
        );
        let (who, hz, rms) = &clients[0];
        assert!(
            who == other && (hz - other_hz).abs() < 15.0 && *rms > 1000.0,
            "{other}'s {other_hz} Hz expected, got {who} at {hz:.0} Hz RMS {rms:.0}: {report}"
        );
        let phones = heard_of_kind(report, KIND_SIP);
        assert!(
            phones.len() == 1 && (phones[0].1 - 700.0).abs() < 15.0,
            "the phone's 700 Hz expected: {report}"
        );
    }
    assert_eq!(bob["sent_dtmf"], "7#", "{bob}");
    let digits: Vec<(&str, &str)> = alice["dtmf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["from"].as_str().unwrap_or(""),
                d["digit"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        digits,
        [("bob", "7"), ("bob", "#")],
        "bob's digits reach alice in order: {alice}"
    );
    let data = alice["data"].as_array().unwrap();
    assert!(
        data.iter()
            .any(|d| d["from"] == "bob" && d["topic"] == "chat" && d["payload"] == "hello alice"),
        "bob's data packet reaches alice: {alice}"
    );
    assert!(
        data.iter()
            .any(|d| d["from"].is_null() && d["payload"] == "from the server"),
        "SendData reaches alice from the server: {alice}"
    );
    assert_eq!(
        bob["rpc"]["answer"], "PING FROM BOB",
        "alice answers bob's RPC: {bob}"
    );
}

/// DTMF both ways between a phone and an SDK client: the phone's RFC 4733
/// digits arrive as `sip_dtmf_received` in order, from the SIP participant;
/// the client's `publish_dtmf` digits reach the phone as RFC 4733 events.
#[test]
fn phone_digits_reach_the_sdk_and_sdk_digits_reach_the_phone() {
    let sb = start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    open_route(&sb, "");
    let client = SdkClient::join(&sb, "r", "app", 440.0, 8.0, "42");
    wait_log(&sb, "WebRTC participant connected", Duration::from_secs(20));
    let (uac, rtp) = answered_call(&sb);
    let heard = trade_digits(&uac, rtp, Duration::from_secs(5));
    let report = client.report(&sb);
    assert_eq!(report["sent_dtmf"], "42", "{report}");
    assert_eq!(
        heard,
        [4, 2],
        "the phone gets the client's digits as RFC 4733\n{}",
        sb.log()
    );
    let digits: Vec<(i64, &str)> = report["dtmf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"].as_i64().unwrap_or(-1),
                d["digit"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        digits,
        [(1, "1"), (5, "5"), (11, "#")],
        "{report}\n{}",
        sb.log()
    );
    let from = report["dtmf"][0]["from"].as_str().unwrap_or("");
    assert_eq!(
        report["remotes"][from]["kind"], KIND_SIP,
        "the digits come from the SIP participant: {report}"
    );
}

/// A raw phone's side of a DTMF exchange with an SDK client that sends
/// its digits 3 s after it published: the phone talks (silence; the call's
/// media starts with its first packet), collects the RFC 4733 events it
/// gets within `listen`, then presses 1, 5 and # while the client still
/// listens. The events it heard.
fn trade_digits(uac: &common::uac::Uac, rtp: std::net::SocketAddr, listen: Duration) -> Vec<u8> {
    for i in 0u16..10 {
        let mut packet = vec![0x80, 0];
        packet.extend_from_slice(&(90 + i).to_be_bytes());
        packet.extend_from_slice(&(u32::from(i) * 160).to_be_bytes());
        packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        packet.extend_from_slice(&[0xff; 160]);
        uac.rtp.send_to(&packet, rtp).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let heard = received_telephone_events(uac, listen);
    press_1_5_hash(uac, rtp);
    heard
}

/// The phone presses 1, 5 and # (RFC 4733, 60 ms each).
fn press_1_5_hash(uac: &common::uac::Uac, rtp: std::net::SocketAddr) {
    for (i, code) in [1u8, 5, 11].into_iter().enumerate() {
        let i = u16::try_from(i).unwrap();
        send_telephone_event(uac, rtp, code, 100 + i * 3, 16_000 + u32::from(i) * 800);
    }
}

/// A LiveKit Agents worker (tests/sdk/agents/tone_agent.py, run with
/// `start` as its docs say) registered with switchboard.
struct AgentWorker {
    child: Child,
}

impl AgentWorker {
    fn start(sb: &Switchboard, agent_name: &str, tone_hz: f32) -> AgentWorker {
        let python = common::repo().join("target/venvs/agents/bin/python");
        let script = common::repo().join("tests/sdk/agents/tone_agent.py");
        let log = std::fs::File::create(sb.dir().join("agent.log")).unwrap();
        let child = Command::new(&python)
            .arg(script)
            .arg("start")
            .env("LIVEKIT_URL", format!("ws://{}", sb.api.unwrap()))
            .env("LIVEKIT_API_KEY", KEY)
            .env("LIVEKIT_API_SECRET", SECRET)
            .env("AGENT_NAME", agent_name)
            .env("TONE_HZ", tone_hz.to_string())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} (tests/deps/agents.venv, installed by tests/run): {e}",
                    python.display()
                )
            });
        wait_log(sb, "agent worker registered", Duration::from_secs(60));
        AgentWorker { child }
    }

    fn log(sb: &Switchboard) -> String {
        std::fs::read_to_string(sb.dir().join("agent.log")).unwrap_or_default()
    }
}

impl Drop for AgentWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A dispatch rule whose room configuration names an agent: a caller's
/// call creates the room, the registered worker of that name gets the job,
/// its process joins over /rtc and publishes, the call is answered (someone
/// who can be heard is there) and the caller hears the agent's tone.
#[test]
fn a_rule_dispatches_an_agent_worker_when_a_phone_calls_and_the_phone_hears_it() {
    let sb = start(&[]);
    rule_dispatches_an_agent(&sb, &sb);
}

/// The same with the rooms on a LiveKit server (issue 15): the rule's
/// agents travel in the bridged caller's token (`roomConfig`), so the
/// server that creates the room dispatches them (else it would make the
/// default, unnamed dispatch, which a named worker never gets).
#[test]
fn a_rules_agents_are_dispatched_by_the_livekit_server_its_call_joins() {
    let rooms_server = start(&[]);
    let gateway = start_on_livekit(&rooms_server);
    rule_dispatches_an_agent(&gateway, &rooms_server);
}

/// Replicas sharing rooms: the agent's worker is registered with replica
/// W only; a call to replica O makes O serve its room, and O, which has no
/// worker of that agent, has W dispatch it; the job's process joins the
/// room through W, relayed to O, and the caller hears it.
#[test]
fn an_agent_registered_with_one_replica_is_dispatched_for_a_room_another_serves() {
    let redis = common::redis::Redis::start();
    let url = redis.url();
    let env = [("SWITCHBOARD_STORE__URL", url.as_str())];
    let owner = start(&env);
    let worker_host = start(&env);
    rule_dispatches_an_agent(&owner, &worker_host);
    let log = owner.log();
    assert!(
        log.contains("agent dispatched through the replica that has its workers"),
        "{log}"
    );
}

/// A caller of `gateway` whose rule names an agent hears that agent, whose
/// worker is registered with `rooms` (the same process, or the rooms'
/// server).
fn rule_dispatches_an_agent(gateway: &Switchboard, rooms: &Switchboard) {
    let sb = gateway;
    let id = trunk(
        sb,
        r#"{"name": "desk", "numbers": ["+15550100"], "allowed_addresses": ["127.0.0.1"]}"#,
    );
    rule(
        sb,
        &format!(
            r#"{{"name": "to-agent", "trunk_ids": ["{id}"], "rule": {{"dispatch_rule_individual": {{"room_prefix": "call-"}}}}, "room_config": {{"agents": [{{"agent_name": "tone-agent", "metadata": "from the rule"}}]}}}}"#
        ),
    );
    settle(sb);
    let _agent = AgentWorker::start(rooms, "tone-agent", 600.0);
    let mut caller = Baresip::call(CallerSpec {
        name: "agent-caller",
        codec: "PCMU",
        wav_rate: 8000,
        channels: 1,
        source: tone(8000, 700.0, 14.0),
        mediaenc: None,
        dial: Baresip::uri("+15550100", sb.udp.unwrap()),
        run_secs: 10,
        auth: None,
    });
    let (rate, heard) = caller.heard(Duration::from_secs(25));
    let tail = &heard[heard.len().saturating_sub(rate as usize * 3)..];
    let level = goertzel_dbfs(tail, rate, 600.0);
    assert!(
        level > -35.0,
        "the caller hears the agent's 600 Hz at {level:.1} dBFS\n{}\n{}\n{}",
        caller.log(),
        AgentWorker::log(rooms),
        sb.log()
    );
    let log = rooms.log();
    assert!(
        log.contains("agent job assigned") && log.contains("agent=tone-agent"),
        "{log}"
    );
}

/// AgentDispatchService through the official Python server SDK: an
/// explicit dispatch of a named agent into a room; an SDK client in that
/// room hears the agent, a participant of kind AGENT.
#[test]
fn an_explicit_dispatch_sends_a_named_agent_into_a_room() {
    let sb = start(&[]);
    let _agent = AgentWorker::start(&sb, "named-agent", 600.0);
    let dispatch = server_sdk(
        &sb,
        r#"    d = await lk.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(agent_name="named-agent", room="explicit", metadata="hello"))
    listed = await lk.agent_dispatch.list_dispatch(room_name="explicit")
    print(json.dumps({"id": d.id, "room": d.room, "jobs": len(d.state.jobs),
                      "listed": [x.id for x in listed if x.agent_name == "named-agent"]}))
"#,
        &[],
    );
    let stdout = String::from_utf8_lossy(&dispatch.stdout);
    let answer: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "CreateDispatch ({e}): {stdout}\n{}\n{}",
            String::from_utf8_lossy(&dispatch.stderr),
            sb.log()
        )
    });
    assert!(
        answer["id"].as_str().unwrap_or("").starts_with("AD_"),
        "{answer}"
    );
    assert_eq!(answer["room"], "explicit");
    assert_eq!(
        answer["jobs"], 1,
        "one job offered to the named worker: {answer}"
    );
    assert_eq!(answer["listed"][0], answer["id"], "{answer}");
    // Long enough for the job's process to start, join and speak on a
    // busy machine (a suite run saw 6 s fall short).
    let client = SdkClient::join(&sb, "explicit", "listener", 440.0, 10.0, "");
    let report = client.report(&sb);
    let agents = heard_of_kind(&report, KIND_AGENT);
    assert!(
        agents.len() == 1 && (agents[0].1 - 600.0).abs() < 15.0 && agents[0].2 > 1000.0,
        "the client hears the agent's 600 Hz: {report}\n{}",
        AgentWorker::log(&sb)
    );
}

/// livekit-client, the official JS SDK, in Debian's headless Chromium
/// (tests/sdk/browser/webrtc_client.mjs): it falls back from /rtc/v1 to
/// /rtc by itself, publishes a WebAudio oscillator that a baresip caller
/// hears, and hears the caller's tone from a participant of kind SIP.
#[test]
fn livekit_client_in_chromium_and_a_phone_hear_each_other() {
    let sb = start(&[]);
    room_route(&sb, "browser");
    let script = common::repo().join("tests/sdk/browser/webrtc_client.mjs");
    let browser = Command::new("node")
        .arg(script)
        .arg(format!("ws://{}", sb.api.unwrap()))
        .arg(join_token("browser", "web"))
        .args(["900", "9"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (tests/deps/console.apt)");
    wait_log(&sb, "WebRTC participant connected", Duration::from_secs(60));
    let mut caller = Baresip::call(CallerSpec {
        name: "browser-phone",
        codec: "PCMU",
        wav_rate: 8000,
        channels: 1,
        source: tone(8000, 700.0, 12.0),
        mediaenc: None,
        dial: Baresip::uri("+15550100", sb.udp.unwrap()),
        run_secs: 7,
        auth: None,
    });
    let (rate, heard) = caller.heard(Duration::from_secs(20));
    let output = browser.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no report from the browser: {stdout}\n{}\n{}",
                String::from_utf8_lossy(&output.stderr),
                sb.log()
            )
        });
    assert!(report["error"].is_null(), "{report}\n{}", sb.log());
    let tail = &heard[heard.len().saturating_sub(rate as usize * 3)..];
    let level = goertzel_dbfs(tail, rate, 900.0);
    assert!(
        level > -35.0,
        "the phone hears the browser's 900 Hz at {level:.1} dBFS: {report}\n{}",
        sb.log()
    );
    let phone = report["remotes"]
        .as_object()
        .and_then(|r| r.values().find(|p| p["kind"] == KIND_SIP).cloned())
        .unwrap_or_else(|| panic!("the browser got the phone's track: {report}"));
    let hz = phone["hz"].as_f64().unwrap_or(0.0);
    assert!(
        (hz - 700.0).abs() < 15.0 && phone["db"].as_f64().unwrap_or(-200.0) > -60.0,
        "the browser hears the phone's 700 Hz: {report}"
    );
}

/// A plain HTTP/1.1 GET: status, lower-cased headers, body.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// Reads the next signal response of a raw `/rtc` socket: binary frames are
/// protobuf, text frames protojson.
async fn next_signal(ws: &mut common::ws::Ws) -> (bool, Value, Option<SignalResponse>) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a signal message in time")
            .expect("the socket is open")
            .expect("a frame");
        match message {
            Message::Binary(data) => {
                let response = <SignalResponse as prost::Message>::decode(data.as_ref()).unwrap();
                return (false, Value::Null, Some(response));
            }
            Message::Text(text) => return (true, serde_json::from_str(&text).unwrap(), None),
            _ => continue,
        }
    }
}

/// The signalling protocol on raw bytes, as the SDKs' fallbacks and a
/// hostile client see it: v1 paths 404 with CORS (the JS and Rust SDKs'
/// fallback triggers), validate answers, the JoinResponse the SDKs check,
/// a garbage frame that changes nothing, protojson answered in protojson,
/// a refused resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtc_signalling_on_raw_bytes() {
    use futures_util::SinkExt;
    use livekit_protocol::signal_response::Message as R;
    use tokio_tungstenite::tungstenite::Message;
    let sb = start(&[]);
    let api = sb.api.unwrap();
    let token = join_token("raw", "raw-client");
    for path in ["/rtc/v1", "/rtc/v1/validate"] {
        let (status, headers, body) = raw_get(api, path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "access-control-allow-origin" && v == "*"),
            "{path} answers with CORS: {headers:?}"
        );
        assert!(!body.contains("requested room does not exist"), "{body}");
    }
    let validate = format!("/rtc/validate?access_token={token}");
    let (status, _, body) = raw_get(api, &validate).await;
    assert_eq!((status, body.as_str()), (200, "success"));
    let (status, _, _) = raw_get(api, "/rtc/validate").await;
    assert_eq!(status, 401, "no token");
    let no_join = common::api::token(serde_json::json!({"sub": "x", "video": {"room": "raw"}}));
    let (status, _, body) = raw_get(api, &format!("/rtc/validate?access_token={no_join}")).await;
    assert_eq!(status, 403, "{body}");

    let url = format!("ws://{api}/rtc?access_token={token}&protocol=16&auto_subscribe=1");
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let (_, _, join) = next_signal(&mut ws).await;
    let Some(R::Join(join)) = join.and_then(|r| r.message) else {
        panic!("the first message is the JoinResponse");
    };
    let server = join.server_info.clone().unwrap();
    assert_eq!(server.version, "1.9.0");
    assert!(join.ping_interval > 0 && join.ping_timeout > join.ping_interval);
    assert!(join.subscriber_primary);
    assert!(join.room.as_ref().unwrap().sid.starts_with("RM_"));
    let me = join.participant.clone().unwrap();
    assert!(me.sid.starts_with("PA_") && me.identity == "raw-client");
    assert!(me
        .permission
        .as_ref()
        .is_some_and(|p| p.can_publish && p.can_subscribe));
    let (_, _, offer) = next_signal(&mut ws).await;
    let Some(R::Offer(offer)) = offer.and_then(|r| r.message) else {
        panic!("the subscriber offer follows the join");
    };
    assert!(
        offer.sdp.contains("m=application") && offer.sdp.contains("a=ice-lite"),
        "{}",
        offer.sdp
    );
    let (_, _, trickle) = next_signal(&mut ws).await;
    let Some(R::Trickle(trickle)) = trickle.and_then(|r| r.message) else {
        panic!("our candidate is trickled");
    };
    let candidate: Value = serde_json::from_str(&trickle.candidate_init).unwrap();
    assert!(
        candidate["sdpMid"].is_string() && candidate["sdpMLineIndex"].is_number(),
        "{candidate}"
    );
    // The client's transports take an RTP pair of the media range (the
    // default 10000-20000): the subscriber the even port.
    let port: u16 = candidate["candidate"]
        .as_str()
        .and_then(|c| c.split_whitespace().nth(5))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a port in {candidate}"));
    assert!(
        (10_000..=20_000).contains(&port) && port.is_multiple_of(2),
        "the subscriber's port {port} is the even port of a pair from the RTP range"
    );
    let ports = |sb_api| async move {
        let text = tokio::task::spawn_blocking(move || common::api::metrics_blocking(sb_api))
            .await
            .unwrap();
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(u64::MAX)
        };
        (
            value("switchboard_rtp_ports_active"),
            value("switchboard_rtp_ports_draining"),
        )
    };
    assert_eq!(ports(api).await, (1, 0), "one pair held by the client");

    // Garbage changes nothing; a protojson ping is answered in protojson.
    ws.send(Message::Binary(vec![0xff; 64].into()))
        .await
        .unwrap();
    ws.send(Message::Text(
        r#"{"ping_req": {"timestamp": "123", "rtt": "4"}}"#.into(),
    ))
    .await
    .unwrap();
    let (json, pong, _) = next_signal(&mut ws).await;
    assert!(json, "a text frame is answered with text");
    assert_eq!(pong["pong_resp"]["last_ping_timestamp"], "123", "{pong}");
    ws.send(Message::Text(
        r#"{"leave": {"reason": "CLIENT_INITIATED"}}"#.into(),
    ))
    .await
    .unwrap();
    wait_log(&sb, "reason=client left", Duration::from_secs(5));
    let mut drained = ports(api).await;
    for _ in 0..50 {
        if drained == (0, 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        drained = ports(api).await;
    }
    assert_eq!(drained, (0, 1), "the client's pair drains when it leaves");

    // No resume: the client is told to join afresh.
    let resume = format!(
        "ws://{api}/rtc?access_token={token}&reconnect=1&sid={}",
        me.sid
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(resume.as_str())
        .await
        .unwrap();
    let (_, _, leave) = next_signal(&mut ws).await;
    let Some(R::Leave(leave)) = leave.and_then(|r| r.message) else {
        panic!("a resume gets a LeaveRequest");
    };
    assert_eq!(
        leave.action,
        livekit_protocol::leave_request::Action::Reconnect as i32
    );
}

/// Mute both ways: an SDK client that mutes its own track is no longer
/// heard by the phone; RoomService MutePublishedTrack (the official
/// server SDK) on the phone's track shows it muted to the client, and
/// UpdateParticipant's attributes on the phone reach the client.
#[test]
fn a_muted_client_is_not_heard_and_an_admin_mute_and_update_are_seen_by_clients() {
    let sb = start(&[]);
    room_route(&sb, "mute");
    let client = SdkClient::join_with(&sb, "mute", "app", 440.0, 9.0, &["--mute-after", "5"]);
    wait_log(&sb, "WebRTC participant connected", Duration::from_secs(20));
    let mut caller = Baresip::call(CallerSpec {
        name: "mute-phone",
        codec: "PCMU",
        wav_rate: 8000,
        channels: 1,
        source: tone(8000, 700.0, 12.0),
        mediaenc: None,
        dial: Baresip::uri("+15550100", sb.udp.unwrap()),
        run_secs: 8,
        auth: None,
    });
    wait_for_calls_blocking(sb.api.unwrap(), 1);
    let phone = wait_log(&sb, "caller joined the room", Duration::from_secs(10));
    let identity = phone
        .lines()
        .rev()
        .find(|l| l.contains("caller joined the room"))
        .and_then(|l| l.split("identity=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .trim_matches('"')
        .to_string();
    let output = server_sdk(
        &sb,
        r#"    p = await lk.room.get_participant(api.RoomParticipantIdentity(room="mute", identity=sys.argv[4]))
    r = await lk.room.mute_published_track(api.MuteRoomTrackRequest(
        room="mute", identity=sys.argv[4], track_sid=p.tracks[0].sid, muted=True))
    await lk.room.update_participant(api.UpdateParticipantRequest(
        room="mute", identity=sys.argv[4], attributes={"crm.account": "7"}))
    print(r.track.sid, r.track.muted)
"#,
        &[&identity],
    );
    let answer = String::from_utf8_lossy(&output.stdout);
    assert!(
        answer.trim().ends_with("True"),
        "MutePublishedTrack answers with the muted track: {answer}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (rate, heard) = caller.heard(Duration::from_secs(20));
    let report = client.report(&sb);
    // Before the client muted itself (5 s after it started) the phone heard
    // it; in its last two seconds, no more.
    let second = rate as usize;
    let early = goertzel_dbfs(&heard[second..heard.len().min(3 * second)], rate, 440.0);
    let late = goertzel_dbfs(
        &heard[heard.len().saturating_sub(2 * second)..],
        rate,
        440.0,
    );
    assert!(
        early > -35.0 && late < -45.0,
        "the phone hears the client at {early:.1} dBFS, then after its mute at {late:.1}: {report}\n{}",
        sb.log()
    );
    assert!(
        report["muted"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["who"] == identity.as_str()),
        "the client sees the phone's track muted: {report}"
    );
    assert_eq!(
        report["remotes"][identity.as_str()]["attributes"]["crm.account"],
        "7",
        "UpdateParticipant's attributes reach the client: {report}"
    );
}

/// The RPCs a SIP participant serves, called with the SDK's own
/// `perform_rpc` as an agent calls them: `lk.sip.GetRemoteHeaders` returns
/// the caller's INVITE headers (filtered as asked, never its transport
/// headers), an unknown method gets LiveKit's "unsupported" code, and
/// `lk.sip.EndCall` hangs the phone up with the asked-for header on the BYE.
/// RPCs reach a caller whose call still rings (the SDK client in the room
/// publishes nothing, so nobody answers): GetRemoteHeaders answers from the
/// INVITE, and EndCall declines the call with 603.
#[test]
fn rpcs_reach_a_caller_whose_call_still_rings() {
    let sb = start(&[]);
    open_route(&sb, "");
    let client = SdkClient::join_with(
        &sb,
        "r",
        "listener",
        440.0,
        8.0,
        &[
            "--no-publish",
            "--rpc-to",
            "@sip",
            "--rpc-call",
            r#"lk.sip.GetRemoteHeaders={"include": ["x-customer"]}"#,
            "--rpc-call",
            "lk.sip.EndCall={}",
        ],
    );
    wait_log(&sb, "WebRTC participant connected", Duration::from_secs(20));
    let mut uac = common::uac::Uac::new(sb.udp.unwrap(), "+15550199", "+15550100");
    let seq = uac.invite(&uac.pcmu_offer(), &["X-Customer: 42".to_string()]);
    // The RPCs go 3 s after the client joined, while the call rings.
    let (statuses, last) = uac.final_response(seq, Duration::from_secs(15));
    assert!(statuses.contains(&180), "{statuses:?}");
    assert_eq!(last.status(), 603, "{}\n{}", last.text, sb.log());
    uac.ack(seq, &last);
    let report = client.report(&sb);
    let rpcs = &report["rpcs"];
    assert!(
        rpcs[0]["answer"].as_str().is_some_and(|a| a.contains("42")),
        "GetRemoteHeaders while ringing: {report}"
    );
    assert_eq!(rpcs[1]["answer"], "{}", "EndCall while ringing: {report}");
    // The record says what the caller got.
    let call_id = last.to_tag().expect("a To tag on the 603");
    let mut record = Value::Null;
    for _ in 0..50 {
        record = serde_json::from_str(&common::routes::cli(
            &sb,
            &["sip", "calls", "get", &call_id, "--json"],
        ))
        .unwrap_or(Value::Null);
        if record["live"] == false {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(record["sip_status"], 603, "{record}");
    assert_eq!(
        record["info"]["call_status_code"]["code"], "SIP_STATUS_GLOBAL_DECLINE",
        "{record}"
    );
    assert_eq!(
        record["info"]["participant_attributes"]["sip.callStatusCode"], "603",
        "{record}"
    );
}

#[test]
fn an_sdk_client_reads_the_callers_headers_and_ends_the_call_by_rpc() {
    let sb = start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    open_route(&sb, "");
    let client = SdkClient::join_with(
        &sb,
        "r",
        "agent-like",
        440.0,
        9.0,
        &[
            "--rpc-to",
            "@sip",
            "--rpc-call",
            r#"lk.sip.GetRemoteHeaders={"include": ["x-customer", "From", "Via"]}"#,
            "--rpc-call",
            "lk.sip.Dance={}",
            "--rpc-call",
            r#"lk.sip.EndCall={"headers": {"X-Ended-By": "agent-like"}}"#,
        ],
    );
    wait_log(&sb, "WebRTC participant connected", Duration::from_secs(20));
    let mut uac = common::uac::Uac::new(sb.udp.unwrap(), "+15550199", "+15550100");
    let seq = uac.invite(&uac.pcmu_offer(), &["X-Customer: 42".to_string()]);
    let (_, ok) = uac.final_response(seq, Duration::from_secs(5));
    assert_eq!(ok.status(), 200, "{}", ok.text);
    uac.ack(seq, &ok);
    // The RPCs go 3 s after the client published.
    let bye = uac.wait_request("BYE", Duration::from_secs(15));
    uac.answer(&bye, 200);
    assert_eq!(bye.header("X-Ended-By"), Some("agent-like"), "{}", bye.text);
    let report = client.report(&sb);
    let rpcs = report["rpcs"].as_array().unwrap();
    assert_eq!(rpcs.len(), 3, "{report}");
    let headers: Value = serde_json::from_str(rpcs[0]["answer"].as_str().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("{e}: {report}\n{}", sb.log()));
    let from = headers["headers"]["From"].as_str().unwrap_or("");
    assert!(from.contains("+15550199"), "{headers}");
    assert_eq!(headers["headers"]["X-Customer"], "42", "{headers}");
    assert_eq!(
        headers["headers"].as_object().map(|h| h.len()),
        Some(2),
        "only what was asked for, and never Via: {headers}"
    );
    assert_eq!(rpcs[1]["error"]["code"], 1400, "{report}");
    assert_eq!(rpcs[2]["answer"], "{}", "{report}");
    // Ended by the room's side (our BYE above, with the header asked for),
    // as the history records it.
    let call = common::routes::last_ended_call(&sb);
    assert_eq!(call["result"], "answered", "{call}");
    assert_eq!(
        call["info"]["disconnect_reason"], "CLIENT_INITIATED",
        "{call}"
    );
}

/// A switchboard whose calls join their rooms on the LiveKit server at
/// `server` (here another switchboard serving rooms): `rooms.backend:
/// livekit`, answering at once.
fn start_on_livekit(server: &Switchboard) -> Switchboard {
    let url = format!("ws://{}", server.api.unwrap());
    start(&[
        ("SWITCHBOARD_CALLS__ANSWER", "immediate"),
        ("SWITCHBOARD_ROOMS__BACKEND", "livekit"),
        ("SWITCHBOARD_ROOMS__LIVEKIT__URL", &url),
        ("SWITCHBOARD_ROOMS__LIVEKIT__API_KEY", KEY),
        ("SWITCHBOARD_ROOMS__LIVEKIT__API_SECRET", SECRET),
    ])
}

/// baresip calling +15550100 on `gateway` with a 700 Hz PCMU tone for
/// `run_secs`, once its call has joined the room on the LiveKit server.
fn bridged_caller(name: &'static str, gateway: &Switchboard, run_secs: u32) -> Baresip {
    let caller = Baresip::call(CallerSpec {
        name,
        codec: "PCMU",
        wav_rate: 8000,
        channels: 1,
        source: tone(8000, 700.0, 12.0),
        mediaenc: None,
        dial: Baresip::uri("+15550100", gateway.udp.unwrap()),
        run_secs,
        auth: None,
    });
    wait_log(gateway, "joined the LiveKit room", Duration::from_secs(10));
    caller
}

/// A phone bridged into a room served elsewhere (its 700 Hz, through
/// `gateway`'s uplink) and an SDK client in that room (440 Hz, its report
/// read through `client_server`) heard each other. The report and the one
/// SIP participant's identity in it.
fn bridged_phone_and_sdk_hear_each_other(
    mut caller: Baresip,
    client: SdkClient,
    client_server: &Switchboard,
    gateway: &Switchboard,
) -> (Value, String) {
    let sdk_tone = heard_at(&mut caller, 440.0);
    assert!(
        sdk_tone > -35.0,
        "the phone hears the SDK client at {sdk_tone:.1} dBFS\n{}\n{}\n{}",
        caller.log(),
        gateway.log(),
        client_server.log()
    );
    let report = client.report(client_server);
    let phones = heard_of_kind(&report, KIND_SIP);
    assert_eq!(phones.len(), 1, "one SIP participant: {report}");
    let (identity, hz, rms) = &phones[0];
    assert!(
        (hz - 700.0).abs() < 15.0 && *rms > 1000.0,
        "the SDK hears the phone's 700 Hz, not {hz:.0} Hz at RMS {rms:.0}: {report}"
    );
    let identity = identity.clone();
    (report, identity)
}

/// The level (dBFS) at `hz` of the last 3 s a caller heard.
fn heard_at(caller: &mut Baresip, hz: f32) -> f32 {
    let (rate, heard) = caller.heard(Duration::from_secs(20));
    let tail = &heard[heard.len().saturating_sub(rate as usize * 3)..];
    goertzel_dbfs(tail, rate, hz)
}

/// Issue 15's LiveKit room backend: baresip calls switchboard A, whose
/// rooms are on B; the official SDK on B hears the caller (a participant
/// of kind SIP with its sip.* attributes) and the caller hears the SDK.
#[test]
fn a_call_on_one_switchboard_joins_its_room_on_a_livekit_server() {
    let rooms_server = start(&[]);
    let gateway = start_on_livekit(&rooms_server);
    room_route(&gateway, "lk");
    let client = SdkClient::join(&rooms_server, "lk", "app", 440.0, 9.0, "");
    wait_log(
        &rooms_server,
        "WebRTC participant connected",
        Duration::from_secs(20),
    );
    let caller = bridged_caller("uplink-phone", &gateway, 6);
    let (report, identity) =
        bridged_phone_and_sdk_hear_each_other(caller, client, &rooms_server, &gateway);
    assert!(
        report["remotes"][identity.as_str()]["attributes"]["sip.phoneNumber"]
            .as_str()
            .is_some_and(|n| n.starts_with("+1555")),
        "the caller's sip.* attributes reach B: {report}"
    );
    // Kept current: the call's end (baresip hangs up after 6 s, the SDK
    // listens 9 s) reaches B as an attribute update before the leave.
    assert_eq!(
        report["remotes"][identity.as_str()]["attributes"]["sip.callStatus"],
        "hangup",
        "the call's status updates reach B: {report}"
    );
}

/// DTMF both ways across the two switchboards, `lk.sip.GetRemoteHeaders`
/// from the SDK on B answered by the call on A, then the SIP participant
/// removed through B's RoomService (the official server SDK): the call on
/// A is hung up with a BYE.
#[test]
fn dtmf_and_rpc_cross_to_the_livekit_room_and_removal_there_hangs_up_the_call() {
    let rooms_server = start(&[]);
    let gateway = start_on_livekit(&rooms_server);
    open_route(&gateway, "");
    let client = SdkClient::join_with(
        &rooms_server,
        "r",
        "app",
        440.0,
        8.0,
        &[
            "--send-dtmf",
            "42",
            "--rpc-to",
            "@sip",
            "--rpc-call",
            r#"lk.sip.GetRemoteHeaders={"include": ["From"]}"#,
        ],
    );
    wait_log(
        &rooms_server,
        "WebRTC participant connected",
        Duration::from_secs(20),
    );
    let (mut uac, rtp) = answered_call(&gateway);
    wait_log(&gateway, "joined the LiveKit room", Duration::from_secs(10));
    let heard = trade_digits(&uac, rtp, Duration::from_secs(6));
    let report = client.report(&rooms_server);
    assert_eq!(
        heard,
        [4, 2],
        "the phone on A gets the SDK's digits as RFC 4733\n{}",
        gateway.log()
    );
    let digits: Vec<&str> = report["dtmf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digit"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(digits, ["1", "5", "#"], "{report}\n{}", gateway.log());
    let answer = report["rpcs"][0]["answer"].as_str().unwrap_or("");
    assert!(
        answer.contains("+15550199"),
        "the call on A answers lk.sip.GetRemoteHeaders with its caller's From: {report}\n{}",
        gateway.log()
    );
    let identity = report["dtmf"][0]["from"].as_str().unwrap_or("").to_string();
    let output = server_sdk(
        &rooms_server,
        "    await lk.room.remove_participant(api.RoomParticipantIdentity(room=\"r\", identity=sys.argv[4]))\n",
        &[&identity],
    );
    assert!(
        output.status.success(),
        "RemoveParticipant on B: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bye = uac.wait_request("BYE", Duration::from_secs(10));
    uac.answer(&bye, 200);
    assert!(
        gateway
            .log()
            .contains("removed from the LiveKit room: ending the call"),
        "{}",
        gateway.log()
    );
}

/// The LiveKit room backend over `wss://`: B serves its API over TLS with
/// a private CA that A trusts through `rooms.livekit.ca_file`. A caller on
/// A and a caller on B share B's room and hear each other.
#[test]
fn the_livekit_room_backend_speaks_wss_to_a_server_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::pki::make_pki(dir.path());
    let rooms_server = start(&[
        ("SWITCHBOARD_API__TLS__CERT", pki.cert.to_str().unwrap()),
        ("SWITCHBOARD_API__TLS__KEY", pki.key.to_str().unwrap()),
        ("SWITCHBOARD_CALLS__ANSWER", "immediate"),
    ]);
    let url = format!("wss://{}", rooms_server.api.unwrap());
    let gateway = start(&[
        ("SWITCHBOARD_CALLS__ANSWER", "immediate"),
        ("SWITCHBOARD_ROOMS__BACKEND", "livekit"),
        ("SWITCHBOARD_ROOMS__LIVEKIT__URL", &url),
        ("SWITCHBOARD_ROOMS__LIVEKIT__API_KEY", KEY),
        ("SWITCHBOARD_ROOMS__LIVEKIT__API_SECRET", SECRET),
        (
            "SWITCHBOARD_ROOMS__LIVEKIT__CA_FILE",
            pki.ca.to_str().unwrap(),
        ),
    ]);
    room_route(&gateway, "shared");
    // On B, a WebSocket participant over wss:// (trusting the same CA)
    // talks at 440 Hz and records the room for 8 s.
    let ca = pki.ca.clone();
    let api = rooms_server.api.unwrap();
    let listener = std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(wss_participant(api, &ca, "shared", Duration::from_secs(8)))
    });
    let mut on_gateway = bridged_caller("wss-caller", &gateway, 7);
    let from_b = heard_at(&mut on_gateway, 440.0);
    assert!(
        from_b > -35.0,
        "the caller on A hears B's participant at {from_b:.1} dBFS\n{}",
        gateway.log()
    );
    let at_b = listener.join().unwrap();
    let tail = &at_b[at_b.len().saturating_sub(16_000 * 3)..];
    let from_a = goertzel_dbfs(tail, 16_000, 700.0);
    assert!(
        from_a > -35.0,
        "B's participant hears the caller on A at {from_a:.1} dBFS\n{}",
        rooms_server.log()
    );
}

/// A WebSocket participant of `room` on `api` over wss:// trusting `ca`:
/// sends a 440 Hz tone for `seconds`, returns what it heard (16 kHz).
async fn wss_participant(
    api: std::net::SocketAddr,
    ca: &std::path::Path,
    room: &str,
    seconds: Duration,
) -> Vec<i16> {
    use futures_util::{SinkExt, StreamExt};
    use rustls::pki_types::pem::PemObject;
    use tokio_tungstenite::tungstenite::Message;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let options = switchboard_streams::WebSocketOptions {
        tls: Some(switchboard_streams::tls_config_with_roots(roots).unwrap()),
        ..switchboard_streams::WebSocketOptions::new()
    };
    let token = join_token(room, "wss-listener");
    let url = format!("wss://{api}/rooms/{room}/ws?rate=16000&access_token={token}");
    let mut ws = switchboard_streams::connect_websocket(&url, &options)
        .await
        .unwrap_or_else(|e| panic!("wss participant: {e}"))
        .into_websocket();
    let mut heard = Vec::new();
    let mut clock = tokio::time::interval(Duration::from_millis(20));
    let mut n = 0u64;
    let end = tokio::time::Instant::now() + seconds;
    while tokio::time::Instant::now() < end {
        tokio::select! {
            _ = clock.tick() => {
                let frame: Vec<u8> = (0..320u64)
                    .flat_map(|i| {
                        let t = (n * 320 + i) as f64 / 16_000.0;
                        let sample = (0.3 * 32767.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
                        sample.to_le_bytes()
                    })
                    .collect();
                n += 1;
                ws.send(Message::Binary(frame.into())).await.unwrap();
            }
            message = ws.next() => match message {
                Some(Ok(Message::Binary(data))) => heard.extend(
                    data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])),
                ),
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    heard
}

/// Replicas sharing rooms (issue 15, part 2): a room created on replica A
/// is owned by A; an SDK client whose `/rtc` goes to replica B is relayed
/// to A (its media goes straight to A's candidates), and a phone calling
/// B is bridged into A's room by B's uplink. Each hears the other.
#[test]
fn an_sdk_client_and_a_phone_on_another_replica_meet_in_the_room_its_owner_serves() {
    let redis = common::redis::Redis::start();
    let url = redis.url();
    let env = [
        ("SWITCHBOARD_STORE__URL", url.as_str()),
        ("SWITCHBOARD_CALLS__ANSWER", "immediate"),
    ];
    let a = start(&env);
    let b = start(&env);
    room_route(&b, "shared");
    let created = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(common::api::room_service(
            a.api.unwrap(),
            "CreateRoom",
            &common::api::token(serde_json::json!({"video": {"roomCreate": true}})),
            serde_json::json!({"name": "shared"}),
        ));
    assert_eq!(created.0, 200, "{}", created.1);
    let client = SdkClient::join(&b, "shared", "app", 440.0, 9.0, "");
    wait_log(&a, "WebRTC participant connected", Duration::from_secs(20));
    assert!(b
        .log()
        .contains("member relayed to the replica that owns its room"));
    let caller = bridged_caller("replica-phone", &b, 6);
    // ListRooms asked of B lists A's room (and not the call's private room
    // on B, which is switchboard's own affair).
    let listed = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(common::api::room_service(
            b.api.unwrap(),
            "ListRooms",
            &common::api::token(serde_json::json!({"video": {"roomList": true}})),
            serde_json::json!({}),
        ));
    assert_eq!(listed.0, 200, "{}", listed.1);
    let names: Vec<&str> = listed.1["rooms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["shared"], "{}", listed.1);
    bridged_phone_and_sdk_hear_each_other(caller, client, &b, &a);
    // Neither B's caller nor B's client made a room of their own on B.
    assert!(!b.log().contains("room lease taken"), "{}", b.log());
}

/// A caller presses keys right after the answer, while the SDK client's
/// subscriber transport and data channels are still opening (the client
/// is in the room, its transports connect tens of milliseconds later):
/// every digit reaches it, in order. They were dropped until the channel
/// opened (found here: the first digits lost in 3 runs of 3).
#[test]
fn digits_pressed_right_after_the_answer_reach_an_sdk_client_still_opening_its_channels() {
    let sb = start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    open_route(&sb, "");
    let client = SdkClient::join(&sb, "r", "app", 440.0, 6.0, "");
    wait_log(&sb, "WebRTC participant connected", Duration::from_secs(20));
    let (uac, rtp) = answered_call(&sb);
    press_1_5_hash(&uac, rtp);
    let report = client.report(&sb);
    let digits: Vec<&str> = report["dtmf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digit"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(digits, ["1", "5", "#"], "{report}\n{}", sb.log());
}

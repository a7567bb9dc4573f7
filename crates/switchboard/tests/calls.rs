//! Real callers through the real binary: baresip dials in with PCMU, G.722
//! and Opus (one of them with mandatory SRTP), plays a tone and records
//! what it hears. Checked by content: each caller hears the other two and
//! not itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::baresip::{tone, Baresip, CallerSpec};
use common::Switchboard;
use std::time::Duration;
use switchboard_media::tones::goertzel_dbfs;

use common::routes::{settle, start, trunk};

/// An inbound trunk from its JSON fields and a dispatch rule `rule_name`
/// for it whose `rule` is the given JSON; waits for the routing index.
/// Returns the trunk's ID.
fn route(sb: &Switchboard, trunk_fields: &str, rule_name: &str, rule: &str) -> String {
    let id = trunk(sb, trunk_fields);
    common::routes::rule(
        sb,
        &format!(r#"{{"name": "{rule_name}", "trunk_ids": ["{id}"], "rule": {rule}}}"#),
    );
    settle(sb);
    id
}

/// A trunk for +15550100 from 127.0.0.1 (SRTP allowed) and a direct rule
/// into `room`.
fn conference_route(sb: &Switchboard, room: &str) {
    route(
        sb,
        r#"{"name": "conf", "numbers": ["+15550100"], "allowed_addresses": ["127.0.0.1"], "media": {"encryption": "SIP_MEDIA_ENCRYPT_ALLOW"}}"#,
        "conf",
        &format!(r#"{{"dispatch_rule_direct": {{"room_name": "{room}"}}}}"#),
    );
}

#[test]
fn three_callers_in_one_room_each_hear_the_other_two_and_not_themselves() {
    let sb = start(&[]);
    conference_route(&sb, "conf");
    let target = sb.udp.unwrap();
    let dial = Baresip::uri("+15550100", target);
    // (name, codec, rate, channels, tone, mediaenc)
    let specs = [
        ("pcmu", "PCMU", 8000, 1, 500.0, None),
        ("g722", "G722/16000/1", 16000, 1, 1100.0, Some("srtp-mand")),
        ("opus", "opus/48000/2", 48000, 2, 1700.0, None),
    ];
    let mut callers: Vec<(Baresip, f32)> = specs
        .iter()
        .enumerate()
        .map(|(i, &(name, codec, rate, channels, hz, mediaenc))| {
            let caller = Baresip::call(CallerSpec {
                name,
                codec,
                wav_rate: rate,
                channels,
                source: tone(rate, hz, 12.0),
                mediaenc,
                dial: dial.clone(),
                run_secs: 9,
                auth: None,
            });
            // One call at a time into the room, each up before the next.
            common::api::wait_for_calls_blocking(sb.api.unwrap(), i as u64 + 1);
            (caller, hz)
        })
        .collect();
    let tones: Vec<f32> = callers.iter().map(|(_, hz)| *hz).collect();
    let mut failures = Vec::new();
    for (caller, own) in callers.iter_mut() {
        let (rate, heard) = caller.heard(Duration::from_secs(20));
        // The last 3 s: everyone is in the call by then.
        let tail = &heard[heard.len().saturating_sub(rate as usize * 3)..];
        assert!(
            tail.len() >= rate as usize * 2,
            "too short a recording ({} samples at {rate}):\n{}\n{}",
            heard.len(),
            caller.log(),
            sb.log()
        );
        for hz in &tones {
            let level = goertzel_dbfs(tail, rate, *hz);
            let ok = if hz == own {
                level < -45.0
            } else {
                level > -35.0
            };
            if !ok {
                failures.push(format!(
                    "caller with {own} Hz hears {hz} Hz at {level:.1} dBFS"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}\n{}", sb.log());
    // The G.722 caller demanded SRTP and got it.
    let srtp_log = callers[1].0.log();
    assert!(
        srtp_log.contains("SRTP is Enabled"),
        "the srtp-mand caller ran without SRTP:\n{srtp_log}"
    );
    drop(callers);
    common::api::assert_nothing_left(sb.api.unwrap(), || sb.log());
}

/// Debian's baresip 1.0 dials a trunk with digest authentication on the
/// default configuration and reaches the room: it cannot answer SHA-256
/// and gives up on a call that offers it ("Function not implemented").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_with_digest_auth_reaches_a_room_on_the_default_config() {
    let sb = start(&[]);
    route(
        &sb,
        r#"{"name": "phone", "numbers": ["+15550100"], "auth_username": "desk-phone", "auth_password": "pa55-w0rd"}"#,
        "desk",
        r#"{"dispatch_rule_direct": {"room_name": "desk"}}"#,
    );
    let api = sb.api.unwrap();
    let mut agent = Client::join(api, "desk", "agent", 16000).await;
    let mut caller = Baresip::call(CallerSpec {
        name: "digest",
        codec: "PCMU",
        wav_rate: 8000,
        channels: 1,
        source: tone(8000, 1300.0, 8.0),
        mediaenc: None,
        dial: Baresip::uri("+15550100", sb.udp.unwrap()),
        run_secs: 5,
        auth: Some(("desk-phone", "pa55-w0rd")),
    });
    let start_at = agent.heard.len();
    play(&mut [(&mut agent, Some(700.0))], Duration::from_secs(6)).await;
    let (heard_rate, heard) = caller.heard(Duration::from_secs(10));
    let tail = &heard[heard.len().saturating_sub(heard_rate as usize * 2)..];
    let at_caller = goertzel_dbfs(tail, heard_rate, 700.0);
    let agent_audio = &agent.heard[start_at..];
    let window = &agent_audio[agent_audio.len().saturating_sub(16000 * 3)..];
    let tone_at_agent = amplitude(window, 16000, 1300.0);
    let log = sb.log();
    assert!(
        at_caller > -35.0 && tone_at_agent > 500.0,
        "caller hears the agent at {at_caller:.1} dBFS, the agent hears the caller at {tone_at_agent:.0}\n{}\n{log}",
        caller.log()
    );
    drop(agent);
    drop(caller);
    tokio::task::spawn_blocking(move || common::api::assert_nothing_left(api, || log.clone()))
        .await
        .unwrap();
}

// ---------------------------------------------------------------- with an agent in the room

use common::ws::{amplitude, play, Client};
use common::{sipp, SippTransport};

/// RMS of a stretch of samples.
fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|s| f64::from(*s).powi(2)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// A carrier (SIPp) calls in through a trunk with digest authentication and
/// a direct rule; a WebSocket agent in the room hears the pcap's audio and
/// gets the RFC 2833 digits as DTMF events, in order, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_with_digest_auth_reaches_the_agent_with_audio_and_dtmf() {
    // The default digest settings: SIPp 3.6 cannot answer SHA-256.
    let sb = start(&[("SWITCHBOARD_CALLS__AUTH_REALM", "carrier.example")]);
    let trunk = route(
        &sb,
        r#"{"name": "carrier", "numbers": ["+15550100"], "auth_username": "carrier", "auth_password": "s3cret-pass"}"#,
        "agent room",
        r#"{"dispatch_rule_direct": {"room_name": "support"}}"#,
    );
    let api = sb.api.unwrap();
    let mut agent = Client::join(api, "support", "agent", 8000).await;

    let target = sb.udp.unwrap();
    let media_port = common::free_port().to_string();
    let sipp_run = tokio::task::spawn_blocking(move || {
        sipp(
            "uac_auth_pcap",
            target,
            SippTransport::Udp,
            &[
                "-s",
                "+15550100",
                "-au",
                "carrier",
                "-ap",
                "s3cret-pass",
                "-mp",
                &media_port,
            ],
        )
    });
    // The call joins, plays ~9 s of audio and four digits, then hangs up.
    let joined = agent.expect("participant_joined").await;
    let caller = &joined["participant"];
    assert_eq!(caller["identity"], "sip_+15550199", "{joined}");
    assert_eq!(
        caller["attributes"]["sip.trunkID"],
        trunk.as_str(),
        "{joined}"
    );
    assert_eq!(
        caller["attributes"]["sip.phoneNumber"], "+15550199",
        "{joined}"
    );
    assert_eq!(
        caller["attributes"]["sip.trunkPhoneNumber"], "+15550100",
        "{joined}"
    );
    assert_eq!(
        caller["attributes"]["lktest.id"], "sipp-1",
        "the built-in header map: {joined}"
    );
    assert!(
        caller["attributes"]["sip.callID"]
            .as_str()
            .unwrap_or_default()
            .starts_with("SCL_"),
        "{joined}"
    );
    let started = agent.heard.len();
    play(&mut [(&mut agent, Some(440.0))], Duration::from_secs(14)).await;
    let result = sipp_run.await.unwrap();
    assert!(result.is_ok(), "{}\n{}", result.unwrap_err(), sb.log());

    // Audio with energy where the pcap has it: the first seconds of the call.
    let audio = &agent.heard[started..];
    let loud = audio
        .chunks(8000)
        .take(8)
        .filter(|second| rms(second) > 300.0)
        .count();
    assert!(
        loud >= 4,
        "seconds of speech heard: {loud} of 8\n{}",
        sb.log()
    );

    // DTMF events, in order, once each.
    let digits: Vec<String> = agent
        .messages
        .iter()
        .filter(|m| m["type"] == "dtmf")
        .map(|m| m["digit"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(digits, ["1", "2", "3", "#"], "{:?}", agent.messages);
    // The call status went ringing (at join) -> active, and the call left.
    let statuses: Vec<String> = agent
        .messages
        .iter()
        .filter(|m| m["type"] == "participant_updated")
        .filter_map(|m| {
            m["participant"]["attributes"]["sip.callStatus"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(statuses.contains(&"active".to_string()), "{statuses:?}");
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("hangup"),
        "the last status before leaving: {statuses:?}"
    );
    // Why it ended, in the participant's final attributes.
    let last = agent
        .messages
        .iter()
        .rev()
        .find(|m| m["type"] == "participant_updated")
        .unwrap();
    let attributes = &last["participant"]["attributes"];
    assert_eq!(
        attributes["sip.disconnectReason"], "CLIENT_INITIATED",
        "{last}"
    );
    assert_eq!(attributes["sip.callStatusCode"], "200", "{last}");
    assert_eq!(
        caller["attributes"]["sip.callStatus"], "ringing",
        "{joined}"
    );
    assert!(
        agent
            .messages
            .iter()
            .any(|m| m["type"] == "participant_left" && m["identity"] == "sip_+15550199"),
        "{:?}",
        agent.messages
    );
    drop(agent);
    let api = sb.api.unwrap();
    let log = sb.log();
    tokio::task::spawn_blocking(move || common::api::assert_nothing_left(api, || log.clone()))
        .await
        .unwrap();
}

/// baresip calls in (PCMU, G.722, Opus with mandatory SRTP); a WebSocket
/// agent sends 700 Hz and baresip 1300 Hz. Each must find the other's tone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_and_a_websocket_agent_hear_each_other_with_every_codec() {
    let sb = start(&[]);
    conference_route(&sb, "desk");
    let api = sb.api.unwrap();
    let dial = Baresip::uri("+15550100", sb.udp.unwrap());
    let mut failures = Vec::new();
    for (name, codec, rate, channels, mediaenc) in [
        ("pcmu", "PCMU", 8000, 1, None),
        ("g722", "G722/16000/1", 16000, 1, None),
        ("opus-srtp", "opus/48000/2", 48000, 2, Some("srtp-mand")),
    ] {
        let mut agent = Client::join(api, "desk", &format!("agent-{name}"), 16000).await;
        let mut caller = Baresip::call(CallerSpec {
            name,
            codec,
            wav_rate: rate,
            channels,
            source: tone(rate, 1300.0, 10.0),
            mediaenc,
            dial: dial.clone(),
            run_secs: 6,
            auth: None,
        });
        let start = agent.heard.len();
        play(&mut [(&mut agent, Some(700.0))], Duration::from_secs(7)).await;
        let (heard_rate, heard) = caller.heard(Duration::from_secs(10));
        let tail = &heard[heard.len().saturating_sub(heard_rate as usize * 2)..];
        let at_caller = goertzel_dbfs(tail, heard_rate, 700.0);
        if at_caller < -35.0 {
            failures.push(format!(
                "{name}: baresip hears the agent's 700 Hz at {at_caller:.1} dBFS"
            ));
        }
        let agent_audio = &agent.heard[start..];
        let window = &agent_audio[agent_audio.len().saturating_sub(16000 * 4)..];
        let tone_at_agent = amplitude(window, 16000, 1300.0);
        let own_at_agent = amplitude(window, 16000, 700.0);
        if tone_at_agent < 500.0 || own_at_agent > 100.0 {
            failures.push(format!(
                "{name}: the agent hears baresip's 1300 Hz at amplitude {tone_at_agent:.0} and its own 700 Hz at {own_at_agent:.0}"
            ));
        }
        if mediaenc.is_some() && !caller.log().contains("SRTP is Enabled") {
            failures.push(format!("{name}: no SRTP:\n{}", caller.log()));
        }
        drop(agent);
    }
    assert!(failures.is_empty(), "{failures:#?}\n{}", sb.log());
    let log = sb.log();
    tokio::task::spawn_blocking(move || common::api::assert_nothing_left(api, || log.clone()))
        .await
        .unwrap();
}

/// A SIPp INVITE flood from one source, ten times the call capacity a
/// second, while two baresip callers talk to agents: both calls keep their
/// audio both ways (checked by content), the flooder is limited and
/// banned, and a new call from the carrier's address rings within 5 s of
/// the flood's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_flood_from_one_source_leaves_calls_in_progress_and_new_calls_alone() {
    let sb = start(&[
        ("SWITCHBOARD_CALLS__MAX_ACTIVE", "20"),
        ("SWITCHBOARD_CALLS__ANSWER", "immediate"),
    ]);
    // The carrier's trunk names its address; the flooder is elsewhere.
    route(
        &sb,
        r#"{"name": "carrier", "numbers": ["+15550100", "+15550101"], "allowed_addresses": ["127.0.0.1"]}"#,
        "per number",
        r#"{"dispatch_rule_callee": {"room_prefix": "desk-", "randomize": false}}"#,
    );
    let api = sb.api.unwrap();
    let target = sb.udp.unwrap();
    let mut agents = Vec::new();
    let mut callers = Vec::new();
    for (n, (number, hz)) in [("+15550100", 1300.0), ("+15550101", 1700.0)]
        .into_iter()
        .enumerate()
    {
        // LiveKit's callee rule names the room prefix + "_" + number.
        agents.push(
            Client::join(
                api,
                &format!("desk-_{number}"),
                &format!("agent-{n}"),
                16000,
            )
            .await,
        );
        callers.push((
            Baresip::call(CallerSpec {
                name: &format!("flood-{n}"),
                codec: "PCMU",
                wav_rate: 8000,
                channels: 1,
                source: tone(8000, hz, 16.0),
                mediaenc: None,
                dial: Baresip::uri(number, target),
                run_secs: 14,
                auth: None,
            }),
            hz,
        ));
    }
    // Once the calls are up, the flood: 200 INVITEs a second for 5 s.
    common::api::wait_for_calls(api, callers.len() as u64).await;
    let flood = tokio::task::spawn_blocking(move || {
        let work = tempfile::tempdir().unwrap();
        std::process::Command::new("sipp")
            .args(["-sn", "uac", &target.to_string(), "-s", "+15550100"])
            .args(["-r", "200", "-m", "1000", "-i", "127.0.0.9"])
            .args(["-nostdin", "-timeout", "8", "-recv_timeout", "1000"])
            .current_dir(work.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("sipp (Debian's sip-tester) must be installed")
    });
    let (left, right) = agents.split_at_mut(1);
    let starts: Vec<usize> = [&left[0], &right[0]]
        .iter()
        .map(|a| a.heard.len())
        .collect();
    play(
        &mut [(&mut left[0], Some(500.0)), (&mut right[0], Some(900.0))],
        Duration::from_secs(9),
    )
    .await;
    let _ = flood.await;
    let flood_ended = std::time::Instant::now();
    // A new call from the carrier is answered (answer: immediate).
    let mut uac = common::uac::Uac::new(target, "+15550199", "+15550100");
    let seq = uac.invite(&uac.pcmu_offer(), &[]);
    let (_, answer) = uac.final_response(seq, Duration::from_secs(5));
    assert_eq!(answer.status(), 200, "{}", answer.text);
    assert!(flood_ended.elapsed() < Duration::from_secs(5));
    uac.ack(seq, &answer);
    let bye = uac.in_dialog("BYE", "", "");
    assert_eq!(
        uac.response_to(bye, "BYE", Duration::from_secs(5)).status(),
        200
    );
    let mut failures = Vec::new();
    for ((agent, start), ((caller, hz), agent_hz)) in agents
        .iter()
        .zip(starts)
        .zip(callers.iter_mut().zip([500.0, 900.0]))
    {
        // The agent heard its caller through the flood (the last 6 s).
        let audio = &agent.heard[start..];
        let window = &audio[audio.len().saturating_sub(16000 * 6)..];
        let level = amplitude(window, 16000, f64::from(*hz));
        if level < 500.0 {
            failures.push(format!("agent hears its caller's {hz} Hz at {level:.0}"));
        }
        let (rate, heard) = caller.heard(Duration::from_secs(15));
        let tail = &heard[heard.len().saturating_sub(rate as usize * 6)..];
        let at_caller = goertzel_dbfs(tail, rate, agent_hz as f32);
        if at_caller < -35.0 {
            failures.push(format!(
                "caller {hz} Hz hears its agent's {agent_hz} Hz at {at_caller:.1} dBFS"
            ));
        }
    }
    let metrics = common::api::metrics_blocking(api);
    assert!(failures.is_empty(), "{failures:#?}\n{}", sb.log());
    // Banned after 30 calls to numbers it has no trunk for (the trunk
    // names the carrier's address), then silenced.
    assert!(
        metrics.contains("switchboard_sip_bans_active 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("switchboard_sip_dropped_banned_total 0\n"),
        "{metrics}"
    );
    drop(agents);
    drop(callers);
    let log = sb.log();
    tokio::task::spawn_blocking(move || common::api::assert_nothing_left(api, || log.clone()))
        .await
        .unwrap();
}

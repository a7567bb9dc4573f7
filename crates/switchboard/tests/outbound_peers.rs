//! Outbound calls, in-dialog DTMF and REFER transfers against callees.
//! Two tests meet a SIP implementation we did not write (SIPp); the rest
//! meet the scripted raw-bytes callee of tests/common/uas.rs, which this
//! team wrote, so that each can send exactly the bytes an edge case needs:
//!
//! - the official Python SDK (`livekit-api`) dials SIPp callees
//!   (tests/sipp/uas_*.xml) that answer after a digest challenge, are busy,
//!   only ring, or decline (tests/sdk/python/outbound.py);
//! - a SIPp callee is transferred by REFER and reports by NOTIFY
//!   (tests/sipp/uas_refer_notify.xml);
//! - `dtmf: "1w2#"` reaches a raw callee as RFC 4733 events in order, with
//!   the half-second pause;
//! - TransferSIPParticipant sends a REFER to a raw callee over UDP, TCP and
//!   TLS, which reports the target's progress by NOTIFY: 200 ends the call,
//!   486 fails the transfer and keeps it; over TCP and TLS all of it rides
//!   on the one connection switchboard opened;
//! - the edges around them: the callee's own in-dialog requests, a refused
//!   REFER, a transfer before the answer, while another is pending, or
//!   without an outcome, ringback during a transfer, CANCEL of a ringing
//!   call, an answer crossing the CANCEL or without a common codec, TLS
//!   Via/Contact, and a BYE after the connection dropped.
//!
//! Every test ends with /debug/state showing nothing left.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::api::{assert_nothing_left, room_service, sip_service, token, KEY, KEY_ENV, SECRET};
use common::sipp_uas::SippUas;
use common::uac::ulaw_to_linear;
use common::uas::{first_line, test_pki, Uas, UasKind};
use common::ws::Client;
use common::{repo, SippTransport, Switchboard};
use serde_json::{json, Value};
use std::fs::File;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn start(env: &[(&str, &str)]) -> Switchboard {
    let mut all = KEY_ENV.to_vec();
    all.push(("SWITCHBOARD_MEDIA__BIND", "127.0.0.1"));
    all.extend_from_slice(env);
    Switchboard::start(&all)
}

async fn nothing_left(sb: &Switchboard) {
    let api = sb.api.unwrap();
    let log = sb.log();
    tokio::task::spawn_blocking(move || assert_nothing_left(api, || log.clone()))
        .await
        .unwrap();
}

// ------------------------------------------------------------ Python SDK

/// Runs a Python script from the repository root against `sb` with the
/// test key and `env`; Err with its output unless it exits 0 and prints
/// `passed_line` last.
fn run_python(
    sb: &Switchboard,
    script: &str,
    env: &[(String, String)],
    passed_line: &str,
) -> Result<(), String> {
    let output_path = sb.dir().join("script.out");
    let output = File::create(&output_path).unwrap();
    let mut command = Command::new("python3");
    command
        .arg(script)
        .current_dir(repo())
        .env("LIVEKIT_URL", format!("http://{}", sb.api.unwrap()))
        .env("LIVEKIT_API_KEY", KEY)
        .env("LIVEKIT_API_SECRET", SECRET)
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => panic!("cannot run python3 ({e}): it must be on PATH"),
    };
    let deadline = Instant::now() + Duration::from_secs(150);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&output_path).unwrap_or_default();
    let verdict = match status {
        None => "timed out".to_string(),
        Some(s) if !s.success() => format!("exited with {s}"),
        Some(_) if text.lines().last().map(str::trim) != Some(passed_line) => {
            format!("exited 0 without printing {passed_line:?} last")
        }
        Some(_) => return Ok(()),
    };
    Err(format!(
        "python3 {script} {verdict}\n--- its output\n{text}"
    ))
}

/// CreateSIPParticipant through the Python SDK, to SIPp callees that
/// answer after a digest challenge (waiting for the answer over UDP, not
/// waiting over TCP), are busy (486), only ring until the ringing timeout
/// cancels them, or decline (603). The script checks what the SDK returns
/// or raises; SIPp checks what reaches the callee (credentials, ACK, BYE,
/// CANCEL) and fails otherwise.
#[test]
fn python_sdk_dials_sipp_callees_that_answer_are_busy_only_ring_or_decline() {
    let sb = start(&[]);
    let mut callees = [
        (
            "SIPP_ANSWER_UDP",
            SippUas::start("uas_proxy_auth_answer", SippTransport::Udp, 1),
        ),
        (
            "SIPP_ANSWER_TCP",
            SippUas::start("uas_auth_answer", SippTransport::Tcp, 1),
        ),
        (
            "SIPP_BUSY",
            SippUas::start("uas_busy", SippTransport::Udp, 2),
        ),
        (
            "SIPP_RING",
            SippUas::start("uas_ring_cancel", SippTransport::Udp, 1),
        ),
        (
            "SIPP_DECLINE",
            SippUas::start("uas_decline", SippTransport::Udp, 1),
        ),
        (
            "SIPP_CHALLENGE",
            SippUas::start("uas_challenge", SippTransport::Udp, 1),
        ),
    ];
    let env: Vec<(String, String)> = callees
        .iter()
        .map(|(k, uas)| (k.to_string(), uas.addr.to_string()))
        .collect();
    let script = run_python(
        &sb,
        "tests/sdk/python/outbound.py",
        &env,
        "all Python outbound checks passed",
    );
    // After a failed script SIPp may wait for calls that never come.
    let patience = if script.is_ok() {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(1)
    };
    let mut failures: Vec<String> = callees
        .iter_mut()
        .filter_map(|(_, uas)| uas.finish(patience).err())
        .collect();
    if let Err(e) = script {
        failures.insert(0, e);
    } else if let Err(e) = check_proxy_digest(&callees[0].1.log("_messages.log")) {
        failures.push(e);
    }
    assert!(
        failures.is_empty(),
        "{}\n--- switchboard log\n{}",
        failures.join("\n"),
        sb.log()
    );
    assert_nothing_left(sb.api.unwrap(), || sb.log());
}

/// The digest parameters of a Proxy-Authorization header value.
fn digest_params(value: &str) -> std::collections::HashMap<String, String> {
    value
        .trim()
        .strip_prefix("Digest ")
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

fn md5_hex(text: &str) -> String {
    use md5::Digest;
    md5::Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SIPp cannot check a Proxy-Authorization: recompute the digest of the
/// INVITE retry that uas_proxy_auth_answer.xml took (RFC 2617 without qop:
/// MD5(HA1:nonce:HA2)) with the trunk's password, and check it answers
/// the scenario's challenge.
fn check_proxy_digest(messages: &str) -> Result<(), String> {
    let Some(header) = messages
        .lines()
        .find_map(|l| l.trim().strip_prefix("Proxy-Authorization:"))
    else {
        return Err(format!(
            "no INVITE with Proxy-Authorization reached SIPp:\n{messages}"
        ));
    };
    let p = digest_params(header);
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let expected = md5_hex(&format!(
        "{}:{}:{}",
        md5_hex("carrier-user:carrier.test:carrier-secret"),
        get("nonce"),
        md5_hex(&format!("INVITE:{}", get("uri")))
    ));
    let challenge_ok = get("username") == "carrier-user"
        && get("realm") == "carrier.test"
        && get("nonce") == "5d1b6c2f0e9a4c1d8b7e3f20a4c6e8d1"
        && get("uri").starts_with("sip:+15550199@127.0.0.1:");
    if challenge_ok && get("response") == expected {
        Ok(())
    } else {
        Err(format!(
            "the Proxy-Authorization does not answer the 407 with the trunk's credentials \
             (response should be {expected}): {header}"
        ))
    }
}

// ---------------------------------------------------- raw callee helpers

/// An outbound trunk to `addr` over `transport` (a SIPTransport name).
async fn outbound_trunk(sb: &Switchboard, addr: SocketAddr, transport: &str) -> String {
    let admin = token(json!({"sip": {"admin": true}}));
    let (status, trunk) = sip_service(
        sb.api.unwrap(),
        "CreateSIPOutboundTrunk",
        &admin,
        json!({"trunk": {"name": "callee", "address": addr.to_string(), "numbers": ["+15550100"], "transport": transport}}),
    )
    .await;
    assert_eq!(status, 200, "{trunk}");
    trunk["sip_trunk_id"].as_str().unwrap().to_string()
}

/// CreateSIPParticipant (Twirp JSON) in the background, waiting for the
/// answer, with `extra` request fields.
fn dial(
    sb: &Switchboard,
    trunk: &str,
    room: &str,
    identity: &str,
    extra: Value,
) -> tokio::task::JoinHandle<(u16, Value)> {
    let mut body = json!({
        "sip_trunk_id": trunk,
        "sip_call_to": "+15550199",
        "room_name": room,
        "participant_identity": identity,
        "wait_until_answered": true,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let api = sb.api.unwrap();
    let caller = token(json!({"sip": {"call": true}}));
    tokio::spawn(async move { sip_service(api, "CreateSIPParticipant", &caller, body).await })
}

/// The participant's `sip.callStatus` by RoomService (None when absent).
async fn call_status(sb: &Switchboard, room: &str, identity: &str) -> Option<String> {
    let admin = token(json!({"video": {"roomAdmin": true, "room": room}}));
    let (status, p) = room_service(
        sb.api.unwrap(),
        "GetParticipant",
        &admin,
        json!({"room": room, "identity": identity}),
    )
    .await;
    (status == 200).then(|| {
        p["attributes"]["sip.callStatus"]
            .as_str()
            .unwrap_or("")
            .to_string()
    })
}

/// TransferSIPParticipant (Twirp JSON) in the background.
fn ask_transfer(
    sb: &Switchboard,
    room: &str,
    identity: &str,
    to: &str,
    ringing_timeout: &str,
) -> tokio::task::JoinHandle<(u16, Value)> {
    let api = sb.api.unwrap();
    let transferrer =
        token(json!({"sip": {"call": true}, "video": {"roomAdmin": true, "room": room}}));
    let body = json!({"room_name": room, "participant_identity": identity, "transfer_to": to, "ringing_timeout": ringing_timeout});
    tokio::spawn(
        async move { sip_service(api, "TransferSIPParticipant", &transferrer, body).await },
    )
}

// ------------------------------------------------------------------ DTMF

/// `dtmf: "1w2#"`: once the callee answers, it gets the digits as RFC 4733
/// events, 1, 2 and # once each and in order, with the `w` pause (0.5 s)
/// between 1 and 2; the room sees the call go `automation`, then `active`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_1w2_pound_reaches_the_callee_in_order_with_the_pause() {
    let sb = start(&[]);
    let mut uas = Uas::bind(UasKind::Udp).await;
    let trunk = outbound_trunk(&sb, uas.addr, "SIP_TRANSPORT_UDP").await;
    let mut watcher = Client::join(sb.api.unwrap(), "dtmf-room", "watcher", 16000).await;
    let call = dial(&sb, &trunk, "dtmf-room", "callee", json!({"dtmf": "1w2#"}));
    uas.answer_call(Duration::from_secs(10)).await;
    let (status, info) = call.await.unwrap();
    assert_eq!(status, 200, "{info}\n{}", sb.log());

    // 1 at 0 s, 2 at 1 s, # at 1.5 s (LiveKit: 250 ms tone, 250 ms gap, w = 500 ms).
    let deadline = Instant::now() + Duration::from_secs(6);
    while !uas.dtmf_events().iter().any(|(code, _)| *code == 11) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anything stray or repeated would come right after.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let events = uas.dtmf_events();
    let codes: Vec<u8> = events.iter().map(|(code, _)| *code).collect();
    assert_eq!(
        codes,
        vec![1, 2, 11],
        "RFC 4733 events (one per RTP timestamp) in arrival order\n{}",
        sb.log()
    );
    let one_to_two = events[1].1 - events[0].1;
    let two_to_pound = events[2].1 - events[1].1;
    assert!(
        one_to_two >= two_to_pound + Duration::from_millis(400),
        "the w pause: 1 -> 2 took {one_to_two:?}, 2 -> # took {two_to_pound:?}"
    );
    assert!(
        two_to_pound >= Duration::from_millis(350),
        "digits are spaced (250 ms tone + 250 ms gap): 2 -> # took {two_to_pound:?}"
    );

    // The callee hangs up.
    let bye = uas.request("BYE", &[], "", "").await;
    assert_eq!(
        uas.response_to(bye, "BYE", Duration::from_secs(3))
            .await
            .status(),
        200
    );
    let left = watcher.expect("participant_left").await;
    assert_eq!(left["identity"], "callee", "{left}");
    let statuses: Vec<&str> = watcher
        .messages
        .iter()
        .filter(|m| m["type"] == "participant_updated" && m["participant"]["identity"] == "callee")
        .filter_map(|m| m["participant"]["attributes"]["sip.callStatus"].as_str())
        .collect();
    let automation = statuses.iter().position(|s| *s == "automation");
    let active = statuses.iter().rposition(|s| *s == "active");
    assert!(
        matches!((automation, active), (Some(a), Some(b)) if a < b),
        "sip.callStatus goes automation, then active: {statuses:?}"
    );
    drop(watcher);
    nothing_left(&sb).await;
}

// -------------------------------------------------------------- transfer

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Via {
    Udp,
    Tcp,
    Tls,
}

/// The target's final status the callee reports by NOTIFY.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Answers,
    Busy,
}

/// An outbound call to a raw callee over `via`, then TransferSIPParticipant:
/// REFER (202), NOTIFY 100, then NOTIFY 200 (the API answers
/// STS_TRANSFER_SUCCESSFUL and switchboard BYEs about a second later) or
/// NOTIFY 486 (a Twirp error with sip_status_code 486; the call stays up
/// until the callee hangs up).
async fn transfer(via: Via, target: Target) {
    let dir = tempfile::tempdir().unwrap();
    let (kind, pki, transport) = match via {
        Via::Udp => (UasKind::Udp, None, "SIP_TRANSPORT_UDP"),
        Via::Tcp => (UasKind::Tcp, None, "SIP_TRANSPORT_TCP"),
        Via::Tls => {
            let pki = test_pki(dir.path());
            (
                UasKind::Tls(pki.server.clone()),
                Some(pki),
                "SIP_TRANSPORT_TLS",
            )
        }
    };
    let files = pki
        .as_ref()
        .map(|p| [&p.ca, &p.cert, &p.key].map(|f| f.to_str().unwrap().to_string()));
    let mut env = Vec::new();
    if let Some([ca, cert, key]) = &files {
        // switchboard trusts the callee's test CA for outbound TLS, and
        // listens on TLS itself so its Via and Contact can name a port.
        env.push(("SWITCHBOARD_SIP__TLS__CA", ca.as_str()));
        env.push(("SWITCHBOARD_SIP__TLS__CERT", cert.as_str()));
        env.push(("SWITCHBOARD_SIP__TLS__KEY", key.as_str()));
        env.push(("SWITCHBOARD_SIP__TLS_PORT", "0"));
    }
    let sb = start(&env);
    let mut uas = Uas::bind(kind).await;
    let trunk = outbound_trunk(&sb, uas.addr, transport).await;
    let (room, identity) = ("transfer-room", "callee");
    let call = dial(&sb, &trunk, room, identity, json!({}));
    let invite = uas.answer_call(Duration::from_secs(10)).await;
    assert!(
        invite
            .header("Via")
            .is_some_and(|v| v.starts_with(&format!("SIP/2.0/{}", uas.transport))),
        "the INVITE came over {}: {}",
        uas.transport,
        invite.text
    );
    let (status, info) = call.await.unwrap();
    assert_eq!(status, 200, "{info}\n{}", sb.log());

    let asked = ask_transfer(&sb, room, identity, "tel:+15550111", "10s");
    let refer = uas.wait_request("REFER", Duration::from_secs(5)).await;
    assert_eq!(
        refer.header("Refer-To"),
        Some("tel:+15550111"),
        "{}",
        refer.text
    );
    assert!(refer.header("Referred-By").is_some(), "{}", refer.text);
    assert_eq!(
        refer.header("Call-ID"),
        invite.header("Call-ID"),
        "{}",
        refer.text
    );
    uas.answer(&refer, 202, "Accepted", &[], "").await;
    let refer_seq = refer
        .header("CSeq")
        .and_then(|c| c.split(' ').next())
        .unwrap()
        .to_string();
    assert_eq!(
        uas.notify(&refer_seq, "100 Trying", false).await,
        200,
        "NOTIFY 100 answered"
    );

    match target {
        Target::Answers => {
            let notified = Instant::now();
            assert_eq!(
                uas.notify(&refer_seq, "200 OK", true).await,
                200,
                "NOTIFY 200 answered"
            );
            let (status, body) = asked.await.unwrap();
            assert_eq!(status, 200, "{body}\n{}", sb.log());
            assert_eq!(body["status"], "STS_TRANSFER_SUCCESSFUL", "{body}");
            assert!(
                body["transfer_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("STR_")),
                "{body}"
            );
            // LiveKit hangs up a second after the transfer succeeded: not
            // at once (load only makes it later, so no upper bound but the
            // deadline).
            let bye = uas.wait_request("BYE", Duration::from_secs(10)).await;
            let after = notified.elapsed();
            assert!(
                after >= Duration::from_millis(500),
                "switchboard hangs up about a second after the transfer succeeded, not {after:?}"
            );
            assert!(
                bye.header("Reason")
                    .unwrap_or_default()
                    .contains("call transferred"),
                "{}",
                bye.text
            );
            uas.answer(&bye, 200, "OK", &[], "").await;
        }
        Target::Busy => {
            assert_eq!(
                uas.notify(&refer_seq, "486 Busy Here", true).await,
                200,
                "NOTIFY 486 answered"
            );
            let (status, body) = asked.await.unwrap();
            assert_eq!(status, 429, "{body}\n{}", sb.log());
            assert_eq!(body["code"], "resource_exhausted", "{body}");
            assert_eq!(body["meta"]["sip_status_code"], "486", "{body}");
            assert_eq!(body["meta"]["sip_status"], "Busy Here", "{body}");
            // The call stays up.
            if let Some(bye) = uas.no_request("BYE", Duration::from_secs(2)).await {
                panic!("a failed transfer hung up the call: {}", bye.text);
            }
            assert_eq!(
                call_status(&sb, room, identity).await.as_deref(),
                Some("active")
            );
            let bye = uas.request("BYE", &[], "", "").await;
            assert_eq!(
                uas.response_to(bye, "BYE", Duration::from_secs(3))
                    .await
                    .status(),
                200
            );
        }
    }
    if via != Via::Udp {
        assert_eq!(uas.connections, 1, "switchboard opened one connection");
        assert!(
            !uas.another_connection(Duration::from_millis(300)).await,
            "switchboard opened a second connection"
        );
    }
    let methods: Vec<String> = uas.received.iter().map(first_line).collect();
    for wanted in ["INVITE", "ACK", "REFER"] {
        assert!(
            methods.iter().any(|m| m.starts_with(wanted)),
            "{wanted} on the callee's {} socket: {methods:?}",
            uas.transport
        );
    }
    nothing_left(&sb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_over_udp_succeeds_on_notify_200_and_hangs_up() {
    transfer(Via::Udp, Target::Answers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_over_udp_fails_on_notify_486_and_keeps_the_call() {
    transfer(Via::Udp, Target::Busy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_over_tcp_succeeds_on_notify_200_on_one_connection() {
    transfer(Via::Tcp, Target::Answers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_over_tcp_fails_on_notify_486_on_one_connection() {
    transfer(Via::Tcp, Target::Busy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_over_tls_succeeds_on_notify_200_on_one_connection() {
    transfer(Via::Tls, Target::Answers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_over_tls_fails_on_notify_486_on_one_connection() {
    transfer(Via::Tls, Target::Busy).await;
}

/// The same transfer against SIPp (tests/sipp/uas_refer_notify.xml), an
/// implementation we did not write: it accepts the REFER, reports 100 then
/// 200 by NOTIFY, and checks switchboard's answers and its BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_of_a_sipp_callee_by_refer_and_notify() {
    let sb = start(&[]);
    let mut uas = SippUas::start("uas_refer_notify", SippTransport::Udp, 1);
    let trunk = outbound_trunk(&sb, uas.addr, "SIP_TRANSPORT_UDP").await;
    let (room, identity) = ("sipp-transfer-room", "callee");
    let (status, info) = dial(&sb, &trunk, room, identity, json!({})).await.unwrap();
    assert_eq!(status, 200, "{info}\n{}", sb.log());
    let (status, body) = ask_transfer(&sb, room, identity, "tel:+15550111", "10s")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}\n{}\n{}", sb.log(), uas.logs());
    assert_eq!(body["status"], "STS_TRANSFER_SUCCESSFUL", "{body}");
    let finished = tokio::task::block_in_place(|| uas.finish(Duration::from_secs(15)));
    if let Err(report) = finished {
        panic!("{report}\n--- switchboard log\n{}", sb.log());
    }
    nothing_left(&sb).await;
}

/// The port in a Via sent-by or a Contact URI of a message.
fn advertised_port(msg: &common::uac::Msg, header: &str) -> Option<u16> {
    let value = msg.header(header)?;
    let hostport = match header {
        "Via" => value.split_whitespace().nth(1)?.split(';').next()?,
        _ => value
            .trim_start_matches('<')
            .split(['>', ';'])
            .next()?
            .rsplit('@')
            .next()?
            .trim_start_matches("sips:")
            .trim_start_matches("sip:"),
    };
    hostport.rsplit_once(':')?.1.parse().ok()
}

/// Dials a TLS callee and returns the INVITE it got (the call is then
/// hung up by the callee).
async fn tls_invite(sb: &Switchboard, pki: &common::uas::TestPki) -> common::uac::Msg {
    let mut uas = Uas::bind(UasKind::Tls(pki.server.clone())).await;
    let trunk = outbound_trunk(sb, uas.addr, "SIP_TRANSPORT_TLS").await;
    let call = dial(sb, &trunk, "tls-room", "callee", json!({}));
    let invite = uas.answer_call(Duration::from_secs(10)).await;
    let (status, info) = call.await.unwrap();
    assert_eq!(status, 200, "{info}\n{}", sb.log());
    let bye = uas.request("BYE", &[], "", "").await;
    assert_eq!(
        uas.response_to(bye, "BYE", Duration::from_secs(3))
            .await
            .status(),
        200
    );
    invite
}

/// With a TLS listener, an outbound TLS call's Via and Contact name it, so
/// the callee can reach switchboard again (a new connection after the first
/// one dropped, RFC 5923 aside).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_tls_via_and_contact_name_the_tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    let pki = test_pki(dir.path());
    let sb = start(&[
        ("SWITCHBOARD_SIP__TLS_PORT", "0"),
        ("SWITCHBOARD_SIP__TLS__CERT", pki.cert.to_str().unwrap()),
        ("SWITCHBOARD_SIP__TLS__KEY", pki.key.to_str().unwrap()),
        ("SWITCHBOARD_SIP__TLS__CA", pki.ca.to_str().unwrap()),
    ]);
    let listener = sb.tls.expect("TLS listens").port();
    let invite = tls_invite(&sb, &pki).await;
    assert_eq!(
        advertised_port(&invite, "Via"),
        Some(listener),
        "{}",
        invite.text
    );
    assert_eq!(
        advertised_port(&invite, "Contact"),
        Some(listener),
        "{}",
        invite.text
    );
    nothing_left(&sb).await;
}

/// Without a TLS listener (only `sip.tls.ca`, to dial TLS trunks), Via
/// and Contact could not name a port: the call is refused up front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_tls_without_a_tls_listener_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let pki = test_pki(dir.path());
    let sb = start(&[("SWITCHBOARD_SIP__TLS__CA", pki.ca.to_str().unwrap())]);
    let uas = Uas::bind(UasKind::Tls(pki.server.clone())).await;
    let trunk = outbound_trunk(&sb, uas.addr, "SIP_TRANSPORT_TLS").await;
    let (status, body) = dial(&sb, &trunk, "tls-room", "callee", json!({}))
        .await
        .unwrap();
    // Via and Contact could only say port 0: refused, with the remedy.
    assert_eq!(status, 412, "{body}");
    assert_eq!(body["code"], "failed_precondition", "{body}");
    assert!(
        body["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("sip.tls.cert"),
        "{body}"
    );
    assert!(
        !uas.another_connection(Duration::from_millis(500)).await,
        "nothing was sent"
    );
    nothing_left(&sb).await;
}

// ------------------------------------------ in-dialog requests and edges

/// A switchboard and a raw callee over `kind` that answered an outbound
/// call into `room` as `identity`.
async fn answered(
    kind: UasKind,
    transport: &str,
    room: &str,
    identity: &str,
) -> (Switchboard, Uas) {
    let sb = start(&[]);
    let mut uas = Uas::bind(kind).await;
    let trunk = outbound_trunk(&sb, uas.addr, transport).await;
    let call = dial(&sb, &trunk, room, identity, json!({}));
    uas.answer_call(Duration::from_secs(10)).await;
    let (status, info) = call.await.unwrap();
    assert_eq!(status, 200, "{info}\n{}", sb.log());
    (sb, uas)
}

/// An SDP offer of the callee's for a re-INVITE, with `direction`.
fn reoffer(uas: &Uas, version: u32, direction: &str) -> String {
    let te = uas.telephone_event.unwrap();
    let port = uas.invite_answer_port();
    format!(
        "v=0\r\no=callee 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 {te}\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\na={direction}\r\n"
    )
}

/// The callee of an outbound call (over TCP) sends OPTIONS, INFO DTMF, a
/// re-INVITE to hold and one to resume, a NOTIFY nobody subscribed to, and
/// hangs up: each gets its answer on the one connection, the digit reaches
/// the room, and the call's end empties it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callee_of_an_outbound_call_sends_options_info_reinvites_and_bye() {
    let (room, identity) = ("in-dialog-room", "callee");
    let sb = start(&[]);
    let mut uas = Uas::bind(UasKind::Tcp).await;
    let trunk = outbound_trunk(&sb, uas.addr, "SIP_TRANSPORT_TCP").await;
    let mut watcher = Client::join(sb.api.unwrap(), room, "watcher", 16000).await;
    let call = dial(&sb, &trunk, room, identity, json!({}));
    uas.answer_call(Duration::from_secs(10)).await;
    let (status, info) = call.await.unwrap();
    assert_eq!(status, 200, "{info}\n{}", sb.log());
    let within = Duration::from_secs(3);

    let seq = uas.request("OPTIONS", &[], "", "").await;
    assert_eq!(uas.response_to(seq, "OPTIONS", within).await.status(), 200);

    let seq = uas
        .request(
            "INFO",
            &[],
            "application/dtmf-relay",
            "Signal=5\r\nDuration=160\r\n",
        )
        .await;
    assert_eq!(uas.response_to(seq, "INFO", within).await.status(), 200);
    let dtmf = watcher.expect("dtmf").await;
    assert_eq!(
        (dtmf["digit"].as_str(), dtmf["from"].as_str()),
        (Some("5"), Some(identity)),
        "{dtmf}"
    );

    let hold = reoffer(&uas, 2, "sendonly");
    let seq = uas.request("INVITE", &[], "application/sdp", &hold).await;
    let ok = uas.response_to(seq, "INVITE", within).await;
    assert_eq!(ok.status(), 200, "{}", ok.text);
    assert!(
        ok.body().contains("a=recvonly"),
        "hold is answered recvonly:\n{}",
        ok.text
    );
    uas.ack(seq).await;
    // On hold the callee gets no room audio, though the room speaks.
    use common::ws::{amplitude, play};
    let held_from = Instant::now() + Duration::from_millis(300);
    play(
        &mut [(&mut watcher, Some(1000.0))],
        Duration::from_millis(1300),
    )
    .await;
    let held = heard_between(&uas, held_from, Instant::now());
    assert!(
        held.len() < 800 || amplitude(&held, 8000, 1000.0) < 200.0,
        "audio sent while on hold: {} samples, amplitude {:.0}",
        held.len(),
        amplitude(&held, 8000, 1000.0)
    );
    let resume = reoffer(&uas, 3, "sendrecv");
    let seq = uas.request("INVITE", &[], "application/sdp", &resume).await;
    let ok = uas.response_to(seq, "INVITE", within).await;
    assert_eq!(ok.status(), 200, "{}", ok.text);
    assert!(
        ok.body().contains("a=sendrecv"),
        "resume is answered sendrecv:\n{}",
        ok.text
    );
    uas.ack(seq).await;
    // Resumed: the room's audio reaches the callee again.
    let resumed_from = Instant::now() + Duration::from_millis(500);
    play(
        &mut [(&mut watcher, Some(1000.0))],
        Duration::from_millis(1500),
    )
    .await;
    let resumed = heard_between(&uas, resumed_from, Instant::now());
    assert!(
        amplitude(&resumed, 8000, 1000.0) > 500.0,
        "the room's 1000 Hz after resume: amplitude {:.0} over {} samples",
        amplitude(&resumed, 8000, 1000.0),
        resumed.len()
    );

    // No transfer is under way: no subscription this NOTIFY could be about.
    let seq = uas
        .request(
            "NOTIFY",
            &[
                "Event: refer;id=1".into(),
                "Subscription-State: terminated".into(),
            ],
            "message/sipfrag;version=2.0",
            "SIP/2.0 200 OK\r\n",
        )
        .await;
    assert_eq!(uas.response_to(seq, "NOTIFY", within).await.status(), 481);
    assert_eq!(
        call_status(&sb, room, identity).await.as_deref(),
        Some("active")
    );

    let seq = uas.request("BYE", &[], "", "").await;
    assert_eq!(uas.response_to(seq, "BYE", within).await.status(), 200);
    let left = watcher.expect("participant_left").await;
    assert_eq!(left["identity"], identity, "{left}");
    assert_eq!(uas.connections, 1, "one connection for the whole dialog");
    assert!(!uas.another_connection(Duration::from_millis(300)).await);
    drop(watcher);
    nothing_left(&sb).await;
}

/// A callee that refuses the REFER (403): the transfer fails with that
/// status and the call stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refer_fails_the_transfer_with_its_status_and_keeps_the_call() {
    let (room, identity) = ("refer-refused", "callee");
    let (sb, mut uas) = answered(UasKind::Udp, "SIP_TRANSPORT_UDP", room, identity).await;
    let asked = ask_transfer(&sb, room, identity, "tel:+15550111", "10s");
    let refer = uas.wait_request("REFER", Duration::from_secs(5)).await;
    uas.answer(&refer, 403, "Forbidden", &[], "").await;
    let (status, body) = asked.await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "permission_denied", "{body}");
    assert_eq!(body["meta"]["sip_status_code"], "403", "{body}");
    if let Some(bye) = uas.no_request("BYE", Duration::from_millis(1500)).await {
        panic!("a refused REFER hung up the call: {}", bye.text);
    }
    assert_eq!(
        call_status(&sb, room, identity).await.as_deref(),
        Some("active")
    );
    let seq = uas.request("BYE", &[], "", "").await;
    assert_eq!(
        uas.response_to(seq, "BYE", Duration::from_secs(3))
            .await
            .status(),
        200
    );
    nothing_left(&sb).await;
}

/// A call still ringing cannot be transferred (failed_precondition); it
/// goes on ringing and can be answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_call_cannot_be_transferred_and_rings_on() {
    let (room, identity) = ("transfer-too-early", "callee");
    let sb = start(&[]);
    let mut uas = Uas::bind(UasKind::Udp).await;
    let trunk = outbound_trunk(&sb, uas.addr, "SIP_TRANSPORT_UDP").await;
    let call = dial(
        &sb,
        &trunk,
        room,
        identity,
        json!({"wait_until_answered": false}),
    );
    let invite = uas.ring(Duration::from_secs(10)).await;
    let (status, info) = call.await.unwrap();
    assert_eq!(status, 200, "{info}");
    let (status, body) = ask_transfer(&sb, room, identity, "tel:+15550111", "10s")
        .await
        .unwrap();
    assert_eq!(status, 412, "{body}");
    assert_eq!(body["code"], "failed_precondition", "{body}");
    if let Some(refer) = uas.no_request("REFER", Duration::from_millis(500)).await {
        panic!("a REFER before the answer: {}", refer.text);
    }
    uas.accept(&invite).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while call_status(&sb, room, identity).await.as_deref() != Some("active") {
        assert!(Instant::now() < deadline, "the call never became active");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seq = uas.request("BYE", &[], "", "").await;
    assert_eq!(
        uas.response_to(seq, "BYE", Duration::from_secs(3))
            .await
            .status(),
        200
    );
    nothing_left(&sb).await;
}

/// While a transfer waits for its outcome: the same request again waits
/// for the same REFER, another target is refused, a NOTIFY about another
/// REFER (wrong id) is refused and changes nothing, and the callee
/// hanging up ends both requests as LiveKit does (success: the caller left).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_transfer_is_shared_guarded_and_ended_by_the_callees_bye() {
    let (room, identity) = ("transfer-pending", "callee");
    let (sb, mut uas) = answered(UasKind::Udp, "SIP_TRANSPORT_UDP", room, identity).await;
    let first = ask_transfer(&sb, room, identity, "tel:+15550111", "10s");
    let refer = uas.wait_request("REFER", Duration::from_secs(5)).await;
    uas.answer(&refer, 202, "Accepted", &[], "").await;
    let refer_seq: u32 = refer
        .header("CSeq")
        .and_then(|c| c.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let again = ask_transfer(&sb, room, identity, "tel:+15550111", "10s");
    let (status, body) = ask_transfer(&sb, room, identity, "tel:+15550122", "10s")
        .await
        .unwrap();
    assert_eq!(status, 400, "another target while one is pending: {body}");
    assert_eq!(body["code"], "invalid_argument", "{body}");
    if let Some(refer) = uas.no_request("REFER", Duration::from_millis(500)).await {
        panic!(
            "the same transfer asked twice sent a second REFER: {}",
            refer.text
        );
    }
    assert_eq!(
        uas.notify(&(refer_seq + 7).to_string(), "200 OK", true)
            .await,
        481,
        "a NOTIFY about a REFER we never sent"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !first.is_finished() && !again.is_finished(),
        "a stray NOTIFY ended the transfer"
    );

    let seq = uas.request("BYE", &[], "", "").await;
    assert_eq!(
        uas.response_to(seq, "BYE", Duration::from_secs(3))
            .await
            .status(),
        200
    );
    for asked in [first, again] {
        let (status, body) = asked.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "STS_TRANSFER_SUCCESSFUL", "{body}");
    }
    nothing_left(&sb).await;
}

/// A transfer whose target never answers (NOTIFY 100, then nothing) fails
/// at its ringing timeout with 408; the call stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_without_an_outcome_times_out_and_keeps_the_call() {
    let (room, identity) = ("transfer-timeout", "callee");
    let (sb, mut uas) = answered(UasKind::Udp, "SIP_TRANSPORT_UDP", room, identity).await;
    let started = Instant::now();
    let asked = ask_transfer(&sb, room, identity, "tel:+15550111", "2s");
    let refer = uas.wait_request("REFER", Duration::from_secs(5)).await;
    uas.answer(&refer, 202, "Accepted", &[], "").await;
    let refer_seq = refer
        .header("CSeq")
        .and_then(|c| c.split(' ').next())
        .unwrap()
        .to_string();
    assert_eq!(uas.notify(&refer_seq, "100 Trying", false).await, 200);
    let (status, body) = asked.await.unwrap();
    let took = started.elapsed();
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["code"], "deadline_exceeded", "{body}");
    assert_eq!(body["meta"]["sip_status_code"], "408", "{body}");
    assert!(
        (Duration::from_millis(1800)..Duration::from_secs(6)).contains(&took),
        "ringing_timeout 2s, answered after {took:?}"
    );
    if let Some(bye) = uas.no_request("BYE", Duration::from_secs(1)).await {
        panic!("a timed-out transfer hung up the call: {}", bye.text);
    }
    assert_eq!(
        call_status(&sb, room, identity).await.as_deref(),
        Some("active")
    );
    let seq = uas.request("BYE", &[], "", "").await;
    assert_eq!(
        uas.response_to(seq, "BYE", Duration::from_secs(3))
            .await
            .status(),
        200
    );
    nothing_left(&sb).await;
}

/// Removing the participant of a call that still rings cancels the INVITE:
/// CANCEL (answered 200), 487 for the INVITE, ACK; nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_ringing_participant_cancels_the_invite() {
    let (room, identity) = ("cancel-room", "callee");
    let sb = start(&[]);
    let mut uas = Uas::bind(UasKind::Udp).await;
    let trunk = outbound_trunk(&sb, uas.addr, "SIP_TRANSPORT_UDP").await;
    let call = dial(
        &sb,
        &trunk,
        room,
        identity,
        json!({"wait_until_answered": false}),
    );
    let invite = uas.ring(Duration::from_secs(10)).await;
    assert_eq!(call.await.unwrap().0, 200);
    let admin = token(json!({"video": {"roomAdmin": true, "room": room}}));
    let (status, body) = room_service(
        sb.api.unwrap(),
        "RemoveParticipant",
        &admin,
        json!({"room": room, "identity": identity}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let cancel = uas.wait_request("CANCEL", Duration::from_secs(3)).await;
    assert_eq!(cancel.header("Call-ID"), invite.header("Call-ID"));
    assert_eq!(
        cancel.headers("Via"),
        invite.headers("Via"),
        "the CANCEL's Via is the INVITE's"
    );
    uas.answer(&cancel, 200, "OK", &[], "").await;
    uas.answer(&invite, 487, "Request Terminated", &[], "")
        .await;
    let ack = uas.wait_request("ACK", Duration::from_secs(3)).await;
    assert!(
        ack.header("CSeq").is_some_and(|c| c.ends_with("ACK")),
        "{}",
        ack.text
    );
    nothing_left(&sb).await;
}

/// The callee answers just as the ringing timeout cancels the call (its
/// 200 crosses our CANCEL): switchboard ACKs the 200 and hangs up with BYE,
/// and the API reports the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_crosses_the_cancel_is_acked_and_hung_up() {
    let (room, identity) = ("race-room", "callee");
    let sb = start(&[]);
    let mut uas = Uas::bind(UasKind::Udp).await;
    let trunk = outbound_trunk(&sb, uas.addr, "SIP_TRANSPORT_UDP").await;
    let call = dial(
        &sb,
        &trunk,
        room,
        identity,
        json!({"ringing_timeout": "2s"}),
    );
    let invite = uas.ring(Duration::from_secs(10)).await;
    let cancel = uas.wait_request("CANCEL", Duration::from_secs(5)).await;
    // Our 200 left before the CANCEL arrived: the INVITE is no longer
    // pending, so the CANCEL matches nothing (RFC 3261 9.2).
    let sdp = {
        let offer = invite.body().to_string();
        uas.accept_sdp(&offer)
    };
    uas.answer(&cancel, 481, "Call/Transaction Does Not Exist", &[], "")
        .await;
    uas.accept_with(&invite, &sdp).await;
    let bye = uas.wait_request("BYE", Duration::from_secs(5)).await;
    uas.answer(&bye, 200, "OK", &[], "").await;
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["code"], "canceled", "{body}");
    nothing_left(&sb).await;
}

/// A 200 whose SDP shares no codec with the offer: switchboard ACKs it,
/// hangs up with BYE, and CreateSIPParticipant fails (failed_precondition).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_a_common_codec_is_acked_hung_up_and_reported() {
    let (room, identity) = ("codec-room", "callee");
    let sb = start(&[]);
    let mut uas = Uas::bind(UasKind::Udp).await;
    let trunk = outbound_trunk(&sb, uas.addr, "SIP_TRANSPORT_UDP").await;
    let call = dial(&sb, &trunk, room, identity, json!({}));
    let invite = uas.ring(Duration::from_secs(10)).await;
    let g729 = format!(
        "v=0\r\no=callee 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\na=sendrecv\r\n",
        uas.invite_answer_port()
    );
    uas.accept_with(&invite, &g729).await;
    let bye = uas.wait_request("BYE", Duration::from_secs(5)).await;
    uas.answer(&bye, 200, "OK", &[], "").await;
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 412, "{body}");
    assert_eq!(body["code"], "failed_precondition", "{body}");
    nothing_left(&sb).await;
}

/// The callee's side closes the TCP connection in mid-call; when the room
/// lets go of the call, switchboard's BYE goes to the callee's Contact on a
/// new connection, and nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_connection_drops_the_bye_takes_a_new_one() {
    let (room, identity) = ("dropped-room", "callee");
    let (sb, mut uas) = answered(UasKind::Tcp, "SIP_TRANSPORT_TCP", room, identity).await;
    uas.close_connection().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admin = token(json!({"video": {"roomAdmin": true, "room": room}}));
    let (status, body) = room_service(
        sb.api.unwrap(),
        "RemoveParticipant",
        &admin,
        json!({"room": room, "identity": identity}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let bye = uas.wait_request("BYE", Duration::from_secs(5)).await;
    uas.answer(&bye, 200, "OK", &[], "").await;
    assert_eq!(uas.connections, 2, "the BYE came on a new connection");
    nothing_left(&sb).await;
}

/// The PCMU audio the callee got between `from` and `to`.
fn heard_between(uas: &Uas, from: Instant, to: Instant) -> Vec<i16> {
    uas.rtp
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.payload_type == 0 && p.at >= from && p.at < to)
        .flat_map(|p| {
            p.payload
                .iter()
                .map(|b| ulaw_to_linear(*b))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// With play_dialtone, the callee hears ringback instead of the room while
/// the transfer is under way, and the room again once it failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_dialtone_rings_the_callee_during_a_transfer_and_gives_the_room_back_after_a_failure()
{
    use common::ws::amplitude;
    let (room, identity) = ("dialtone-room", "callee");
    let (sb, mut uas) = answered(UasKind::Udp, "SIP_TRANSPORT_UDP", room, identity).await;
    // Someone in the room speaks 1000 Hz all along.
    let mut agent = Client::join(sb.api.unwrap(), room, "agent", 8000).await;
    let speaker = tokio::spawn(async move {
        common::ws::play(&mut [(&mut agent, Some(1000.0))], Duration::from_secs(6)).await;
        agent
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = heard_between(
        &uas,
        Instant::now() - Duration::from_millis(600),
        Instant::now(),
    );

    let api = sb.api.unwrap();
    let transferrer =
        token(json!({"sip": {"call": true}, "video": {"roomAdmin": true, "room": room}}));
    let asked = tokio::spawn(async move {
        sip_service(
            api,
            "TransferSIPParticipant",
            &transferrer,
            json!({"room_name": room, "participant_identity": identity, "transfer_to": "tel:+15550111", "ringing_timeout": "10s", "play_dialtone": true}),
        )
        .await
    });
    let refer = uas.wait_request("REFER", Duration::from_secs(5)).await;
    uas.answer(&refer, 202, "Accepted", &[], "").await;
    let refer_seq = refer
        .header("CSeq")
        .and_then(|c| c.split(' ').next())
        .unwrap()
        .to_string();
    assert_eq!(uas.notify(&refer_seq, "100 Trying", false).await, 200);
    let referred = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = heard_between(&uas, referred + Duration::from_millis(400), Instant::now());
    assert_eq!(uas.notify(&refer_seq, "486 Busy Here", true).await, 200);
    let failed = Instant::now();
    assert_eq!(asked.await.unwrap().0, 429);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let after = heard_between(&uas, failed + Duration::from_millis(400), Instant::now());
    drop(speaker.await.unwrap());

    let level = |s: &[i16], f: f64| {
        if s.len() < 2000 {
            -1.0
        } else {
            amplitude(s, 8000, f)
        }
    };
    let report = format!(
        "1000 Hz before {:.0}, during {:.0}, after {:.0}; 440 Hz during {:.0}, after {:.0} ({} / {} / {} samples)",
        level(&before, 1000.0),
        level(&during, 1000.0),
        level(&after, 1000.0),
        level(&during, 440.0),
        level(&after, 440.0),
        before.len(),
        during.len(),
        after.len()
    );
    assert!(
        level(&before, 1000.0) > 1000.0,
        "the callee hears the room: {report}"
    );
    assert!(
        level(&during, 1000.0) < 200.0,
        "not the room while transferring: {report}"
    );
    assert!(
        level(&during, 440.0) > 500.0,
        "but ringback (440 + 480 Hz): {report}"
    );
    assert!(
        level(&after, 1000.0) > 1000.0,
        "the room again after the failure: {report}"
    );
    assert!(
        level(&after, 440.0) < 200.0,
        "and no more ringback: {report}"
    );
    let seq = uas.request("BYE", &[], "", "").await;
    assert_eq!(
        uas.response_to(seq, "BYE", Duration::from_secs(3))
            .await
            .status(),
        200
    );
    nothing_left(&sb).await;
}

/// A call refused before it has a task (a TLS trunk without a TLS listener)
/// is still counted in `switchboard_calls_ended_total`, like every other
/// ending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_refused_before_it_starts_is_counted_as_ended() {
    let sb = start(&[]);
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let trunk = outbound_trunk(&sb, nowhere, "SIP_TRANSPORT_TLS").await;
    let (status, answer) = dial(&sb, &trunk, "r", "callee", json!({})).await.unwrap();
    assert_ne!(status, 200, "{answer}");
    assert!(
        answer["msg"]
            .as_str()
            .unwrap_or("")
            .contains("does not listen"),
        "{answer}"
    );
    let api = sb.api.unwrap();
    let metrics = tokio::task::spawn_blocking(move || common::api::metrics_blocking(api))
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("switchboard_calls_ended_total{") && l.contains("direction=\"outbound\"")
        })
        .unwrap_or_else(|| panic!("no outbound ending counted:\n{metrics}"));
    assert!(
        line.contains("sip_status=\"503\"") && line.ends_with(" 1"),
        "{line}"
    );
    nothing_left(&sb).await;
}

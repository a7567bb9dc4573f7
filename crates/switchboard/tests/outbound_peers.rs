//! Outbound calls, in-dialog DTMF and REFER transfers against real callees:
//!
//! - the official Python SDK (`livekit-api`) dials SIPp callees
//!   (tests/sipp/uas_*.xml) that answer after a digest challenge, are busy,
//!   only ring, or decline (tests/sdk/python/outbound.py);
//! - `dtmf: "1w2#"` reaches a raw callee (tests/common/uas.rs) as RFC 4733
//!   events in order, with the half-second pause;
//! - TransferSIPParticipant sends a REFER to a raw callee over UDP, TCP and
//!   TLS, which reports the target's progress by NOTIFY: 200 ends the call,
//!   486 fails the transfer and keeps it; over TCP and TLS all of it rides
//!   on the one connection switchboard opened.
//!
//! Every test ends with /debug/state showing nothing left.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::api::{assert_nothing_left, KEY, KEY_ENV, SECRET};
use common::sipp_uas::SippUas;
use common::{repo, SippTransport, Switchboard};
use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn start(env: &[(&str, &str)]) -> Switchboard {
    let mut all = KEY_ENV.to_vec();
    all.push(("SWITCHBOARD_MEDIA__BIND", "127.0.0.1"));
    all.extend_from_slice(env);
    Switchboard::start(&all)
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

//! Real callers through the real binary: baresip dials in with PCMU, G.722
//! and Opus (one of them with mandatory SRTP), plays a tone and records
//! what it hears. Checked by content: each caller hears the other two and
//! not itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::baresip::{tone, Baresip, CallerSpec};
use common::Switchboard;
use std::process::Command;
use std::time::Duration;
use switchboard_media::tones::goertzel_dbfs;

const KEY: &str = "calls-test";
const SECRET: &str = "calls-test-secret-0123456789abcdef012";

fn start(env: &[(&str, &str)]) -> Switchboard {
    let mut all = vec![
        ("LIVEKIT_API_KEY", KEY),
        ("LIVEKIT_API_SECRET", SECRET),
        ("SWITCHBOARD_MEDIA__BIND", "127.0.0.1"),
    ];
    all.extend_from_slice(env);
    Switchboard::start(&all)
}

fn cli(sb: &Switchboard, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env("LIVEKIT_URL", format!("http://{}", sb.api.unwrap()))
        .env("LIVEKIT_API_KEY", KEY)
        .env("LIVEKIT_API_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A trunk for +15550100 from 127.0.0.1 (SRTP allowed) and a direct rule
/// into `room`.
fn conference_route(sb: &Switchboard, room: &str) {
    let out = cli(
        sb,
        &[
            "sip",
            "inbound",
            "create",
            r#"{"trunk": {"name": "conf", "numbers": ["+15550100"], "allowed_addresses": ["127.0.0.1"], "media": {"encryption": "SIP_MEDIA_ENCRYPT_ALLOW"}}}"#,
        ],
    );
    let trunk = out.trim().strip_prefix("SIPTrunkID: ").unwrap().to_string();
    cli(
        sb,
        &[
            "sip",
            "dispatch",
            "create",
            &format!(
                r#"{{"dispatch_rule": {{"name": "conf", "trunk_ids": ["{trunk}"], "rule": {{"dispatch_rule_direct": {{"room_name": "{room}"}}}}}}}}"#
            ),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
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
        .map(|&(name, codec, rate, channels, hz, mediaenc)| {
            let caller = Baresip::call(CallerSpec {
                name,
                codec,
                wav_rate: rate,
                channels,
                source: tone(rate, hz, 12.0),
                mediaenc,
                dial: dial.clone(),
                run_secs: 9,
            });
            std::thread::sleep(Duration::from_millis(300));
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
}

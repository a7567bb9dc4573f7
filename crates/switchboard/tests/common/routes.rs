//! Trunks, rules and a running server for the call tests: the CLI against
//! the server's API, and waiting on its log.

use super::api::{KEY, SECRET};
use super::uac::{sdp_rtp_addr, Uac};
use super::Switchboard;
use std::process::Command;
use std::time::{Duration, Instant};

/// Starts switchboard with the test API key, media on loopback, and `env`.
pub fn start(env: &[(&str, &str)]) -> Switchboard {
    let mut all = vec![
        ("LIVEKIT_API_KEY", KEY),
        ("LIVEKIT_API_SECRET", SECRET),
        ("SWITCHBOARD_MEDIA__BIND", "127.0.0.1"),
    ];
    all.extend_from_slice(env);
    Switchboard::start(&all)
}

/// Runs `switchboard sip ...` against the server; returns stdout.
pub fn cli(sb: &Switchboard, args: &[&str]) -> String {
    let api = sb.api.expect("the API is listening");
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env("LIVEKIT_URL", format!("http://{api}"))
        .env("LIVEKIT_API_KEY", KEY)
        .env("LIVEKIT_API_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "switchboard {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Creates an inbound trunk from its JSON fields; returns its ID.
pub fn trunk(sb: &Switchboard, fields: &str) -> String {
    let out = cli(
        sb,
        &[
            "sip",
            "inbound",
            "create",
            &format!("{{\"trunk\": {fields}}}"),
        ],
    );
    out.trim()
        .strip_prefix("SIPTrunkID: ")
        .unwrap_or_else(|| panic!("unexpected output {out:?}"))
        .to_string()
}

/// Creates a dispatch rule from its JSON fields; returns its ID.
pub fn rule(sb: &Switchboard, fields: &str) -> String {
    let out = cli(
        sb,
        &[
            "sip",
            "dispatch",
            "create",
            &format!("{{\"dispatch_rule\": {fields}}}"),
        ],
    );
    out.trim()
        .strip_prefix("SIPDispatchRuleID: ")
        .unwrap_or_else(|| panic!("unexpected output {out:?}"))
        .to_string()
}

/// Waits until the routing index has caught up with the store (it
/// refreshes from the change feed).
pub fn settle(sb: &Switchboard) {
    super::api::wait_for_routing(sb.api.expect("the API is listening"), 0);
}

/// Waits until the log shows `needle` (or fails with the log).
pub fn wait_log(sb: &Switchboard, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let log = sb.log();
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "log never showed {needle:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A trunk for +15550100 (with `trunk_fields` added) and a direct rule into room `r`.
pub fn open_route(sb: &Switchboard, trunk_fields: &str) {
    let id = trunk(
        sb,
        &format!(r#"{{"name": "t", "numbers": ["+15550100"]{trunk_fields}}}"#),
    );
    rule(
        sb,
        &format!(
            r#"{{"name": "r", "trunk_ids": ["{id}"], "rule": {{"dispatch_rule_direct": {{"room_name": "r"}}}}}}"#
        ),
    );
    settle(sb);
}

/// Calls +15550100 with answer=immediate; returns the caller and the
/// gateway's RTP address after the ACK.
pub fn answered_call(sb: &Switchboard) -> (Uac, std::net::SocketAddr) {
    let mut uac = Uac::new(sb.udp.unwrap(), "+15550199", "+15550100");
    let seq = uac.invite(&uac.pcmu_offer(), &[]);
    let (_, ok) = uac.final_response(seq, Duration::from_secs(5));
    assert_eq!(ok.status(), 200, "{}", ok.text);
    assert_eq!(ok.header("Content-Type"), Some("application/sdp"));
    assert!(ok.header("Contact").is_some());
    let to_tag = ok.to_tag().unwrap();
    assert!(
        to_tag.starts_with("SCL_"),
        "the To tag is the call ID: {to_tag}"
    );
    uac.ack(seq, &ok);
    let rtp = sdp_rtp_addr(ok.body()).expect("an SDP answer");
    (uac, rtp)
}

/// The record of call `call_id` (`SCL_…`) once it has ended, through the CLI
/// (and so the API): how it ended, as the history keeps it.
pub fn ended_call(sb: &Switchboard, call_id: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = cli(sb, &["sip", "calls", "get", call_id, "--json"]);
        let call: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        if call["live"] == false {
            return call;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{call_id} never ended: {call}\n{}",
            sb.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How call `call_id` ended: its result, LiveKit's disconnect reason and
/// the SIP status, as the call history records them.
pub fn call_outcome(sb: &Switchboard, call_id: &str) -> (String, String, u64) {
    let call = ended_call(sb, call_id);
    (
        call["result"].as_str().unwrap_or_default().to_string(),
        call["info"]["disconnect_reason"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        call["sip_status"].as_u64().unwrap_or_default(),
    )
}

/// Waits until `/debug/state` counts `n` of `what` (`participants`,
/// `calls_active`, …).
pub fn wait_state(sb: &Switchboard, what: &str, n: u64) {
    let api = sb.api.expect("the API is listening");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = super::api::debug_state_blocking(api);
        if state[what].as_u64() == Some(n) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never came to {n}: {state}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The newest finished call in the history, once there is one (its writer
/// stores calls a moment after they end).
pub fn last_ended_call(sb: &Switchboard) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = cli(sb, &["sip", "calls", "list", "--json"]);
        let list: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        if let Some(call) = list["calls"].as_array().and_then(|c| c.first()) {
            return call.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no call ended\n{}",
            sb.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

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

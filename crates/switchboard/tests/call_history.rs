//! Call records and SIP traces of the real binary, through the CLI (and so
//! the API): a call is listed live while it lasts and hung up by its ID;
//! afterwards its record has the numbers, times, outcome and RTP figures,
//! and its trace reads as text and as a pcap that tshark decodes into the
//! dialog. Refused calls (404, 403 after a challenge, 488) and a failed
//! outbound call (486) are recorded too, and the history survives a
//! restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::routes::{answered_call, cli, open_route, start, trunk};
use common::sipp_uas::SippUas;
use common::uac::Uac;
use common::{sipp, SippTransport, Switchboard};
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn list(sb: &Switchboard, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["sip", "calls", "list", "--json"];
    all.extend_from_slice(args);
    json(&cli(sb, &all))["calls"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn get(sb: &Switchboard, call_id: &str) -> Value {
    json(&cli(sb, &["sip", "calls", "get", call_id, "--json"]))
}

/// Waits until the call is in the history (its writer stores in batches).
fn finished(sb: &Switchboard, call_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let call = get(sb, call_id);
        if call["live"] == false {
            return call;
        }
        assert!(
            Instant::now() < deadline,
            "{call_id} never left the live calls: {call}\n{}",
            sb.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `n` finished calls match `args`.
fn history(sb: &Switchboard, args: &[&str], n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let calls = list(sb, args);
        if calls.len() >= n {
            return calls;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?}: {} of {n} calls in the history: {calls:#?}\n{}",
            calls.len(),
            sb.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ns(value: &Value) -> i64 {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| value.as_i64())
        .unwrap_or(0)
}

/// The first line of each message of a text trace, in order.
fn ladder(trace: &str) -> Vec<String> {
    let lines: Vec<&str> = trace.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].contains(" bytes)") && (w[0].contains(" -> ") || w[0].contains(" <- ")))
        .map(|w| {
            let arrow = if w[0].contains(" -> ") { "->" } else { "<-" };
            let start = w[1]
                .strip_prefix("SIP/2.0 ")
                .map(|s| s.split(' ').next().unwrap_or("").to_string())
                .unwrap_or_else(|| w[1].split(' ').next().unwrap_or("").to_string());
            format!("{arrow} {start}")
        })
        .collect()
}

/// Where `steps` appear in order (not necessarily next to each other).
fn contains_in_order(ladder: &[String], steps: &[&str]) -> bool {
    let mut rest = ladder.iter();
    steps.iter().all(|step| rest.any(|l| l == step))
}

#[test]
fn a_live_call_is_hung_up_by_id_and_kept_with_its_quality_and_trace() {
    let sb = start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    open_route(&sb, "");
    let (mut uac, rtp) = answered_call(&sb);
    for i in 0..25u16 {
        uac.send_rtp(rtp, i, u32::from(i) * 160);
        std::thread::sleep(Duration::from_millis(20));
    }

    let live = list(&sb, &["--live"]);
    assert_eq!(live.len(), 1, "{live:#?}");
    let call = &live[0];
    let info = &call["info"];
    let call_id = info["call_id"].as_str().unwrap().to_string();
    assert!(call_id.starts_with("SCL_"), "{call}");
    assert_eq!(call["live"], true);
    assert_eq!(info["call_direction"], "SCD_INBOUND");
    assert_eq!(info["call_status"], "SCS_ACTIVE");
    assert_eq!(info["from_uri"]["user"], "+15550199");
    assert_eq!(info["to_uri"]["user"], "+15550100");
    assert_eq!(info["room_name"], "r");
    assert_eq!(info["audio_codec"], "PCMU");
    assert!(
        info["trunk_id"].as_str().unwrap().starts_with("ST_"),
        "{call}"
    );
    assert!(
        info["dispatch_rule_id"]
            .as_str()
            .unwrap()
            .starts_with("SDR_"),
        "{call}"
    );
    assert_eq!(call["transport"], "udp");
    let live_trace = cli(&sb, &["sip", "calls", "trace", &call_id]);
    assert!(
        contains_in_order(&ladder(&live_trace), &["<- INVITE", "-> 200", "<- ACK"]),
        "{live_trace}"
    );

    let said = cli(&sb, &["sip", "calls", "hangup", &call_id]);
    assert!(said.contains("hung up"), "{said}");
    let bye = uac.wait_request("BYE", Duration::from_secs(5));
    uac.answer(&bye, 200);

    let call = finished(&sb, &call_id);
    let info = &call["info"];
    assert_eq!(call["result"], "answered", "{call}");
    assert_eq!(info["call_status"], "SCS_DISCONNECTED", "{call}");
    assert_eq!(info["disconnect_reason"], "PARTICIPANT_REMOVED", "{call}");
    assert_eq!(call["sip_status"], 200, "{call}");
    let (created, ringing, answered, ended) = (
        ns(&info["created_at_ns"]),
        ns(&call["ringing_at_ns"]),
        ns(&info["started_at_ns"]),
        ns(&info["ended_at_ns"]),
    );
    assert!(
        created > 0 && created <= ringing && ringing <= answered && answered < ended,
        "INVITE {created}, ringing {ringing}, answer {answered}, end {ended}"
    );
    let received = call["quality"]["packets_received"].as_u64().unwrap_or(0);
    assert!((20..=25).contains(&received), "{call}");
    assert!(
        call["quality"]["packets_sent"].as_u64().unwrap_or(0) > 0,
        "{call}"
    );
    assert!(call["trace_messages"].as_u64().unwrap_or(0) >= 6, "{call}");

    // Stored in the history once its trace's grace has passed.
    history(&sb, &[], 1);
    let table = cli(&sb, &["sip", "calls", "list"]);
    assert!(
        table.contains(&call_id)
            && table.contains("answered")
            && table.contains("PARTICIPANT_REMOVED"),
        "{table}"
    );
    let details = cli(&sb, &["sip", "calls", "get", &call_id]);
    assert!(
        details.contains("+15550199") && details.contains("PCMU"),
        "{details}"
    );

    // The text trace is the whole dialog, in order, both ways.
    let trace = cli(&sb, &["sip", "calls", "trace", &call_id]);
    let steps = ladder(&trace);
    assert!(
        contains_in_order(
            &steps,
            &[
                "<- INVITE",
                "-> 180",
                "-> 200",
                "<- ACK",
                "-> BYE",
                "<- 200"
            ]
        ),
        "{steps:?}\n{trace}"
    );

    // The pcap opens in tshark and decodes to the same dialog.
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("call.pcap");
    cli(
        &sb,
        &[
            "sip",
            "calls",
            "trace",
            &call_id,
            "--pcap",
            pcap.to_str().unwrap(),
        ],
    );
    let sip_port = sb.udp.unwrap().port();
    let output = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-d", &format!("udp.port=={sip_port},sip")])
        .args([
            "-T",
            "fields",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
            "-e",
            "sip.Call-ID",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run tshark ({e}): install Debian's tshark (tests/deps/operate.apt)")
        });
    let fields = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decoded: Vec<String> = fields
        .lines()
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            cols.iter()
                .take(2)
                .copied()
                .find(|c| !c.is_empty())
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let sip_call_id = info["sip_call_id"].as_str().unwrap();
    assert!(
        fields.lines().all(|l| l.ends_with(sip_call_id)),
        "every packet is of this call:\n{fields}"
    );
    let mut rest = decoded.iter();
    for step in ["INVITE", "180", "200", "ACK", "BYE", "200"] {
        assert!(
            rest.any(|d| d == step),
            "tshark shows no {step} in order:\n{fields}"
        );
    }
    drop(uac);
    common::api::assert_nothing_left(sb.api.unwrap(), || sb.log());
}

#[test]
fn refused_calls_are_recorded_with_their_status_and_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let env = [("SWITCHBOARD_DATA_DIR", data_dir.as_str())];
    let mut sb = start(&env);
    open_route(&sb, "");
    let locked = trunk(
        &sb,
        r#"{"name": "locked", "numbers": ["+15550200"], "auth_username": "carrier", "auth_password": "right-pass"}"#,
    );
    common::routes::rule(
        &sb,
        &format!(
            r#"{{"name": "locked", "trunk_ids": ["{locked}"], "rule": {{"dispatch_rule_direct": {{"room_name": "locked"}}}}}}"#
        ),
    );
    common::routes::settle(&sb);

    // 404: a number no trunk has.
    let mut unknown = Uac::new(sb.udp.unwrap(), "+15550199", "+15550111");
    let seq = unknown.invite(&unknown.pcmu_offer(), &[]);
    let (_, not_found) = unknown.final_response(seq, Duration::from_secs(5));
    assert_eq!(not_found.status(), 404);
    // ACKed as a phone does: the ACK comes after the call's end and is
    // still in its trace.
    unknown.ack(seq, &not_found);
    // 488: no codec in common.
    let mut g729 = Uac::new(sb.udp.unwrap(), "+15550199", "+15550100");
    let offer = common::uac::sdp_offer(g729.rtp_port(), "18", &["18 G729/8000"]);
    let seq = g729.invite(&offer, &[]);
    let (_, not_acceptable) = g729.final_response(seq, Duration::from_secs(5));
    assert_eq!(not_acceptable.status(), 488);
    g729.ack(seq, &not_acceptable);
    // 403: challenged, then the wrong password.
    let target = sb.udp.unwrap();
    let _ = sipp(
        "uac_auth_pcap",
        target,
        SippTransport::Udp,
        &["-s", "+15550200", "-au", "carrier", "-ap", "wrong-pass"],
    );

    let refused = history(&sb, &["--result", "refused"], 3);
    let mut statuses: Vec<u64> = refused
        .iter()
        .map(|c| c["sip_status"].as_u64().unwrap())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [403, 404, 488], "{refused:#?}");
    for call in &refused {
        let info = &call["info"];
        assert_eq!(info["call_status"], "SCS_ERROR", "{call}");
        assert_eq!(info["disconnect_reason"], "SIP_TRUNK_FAILURE", "{call}");
        assert!(!info["error"].as_str().unwrap().is_empty(), "{call}");
    }
    let by_status = |code: u64| {
        refused.iter().find(|c| c["sip_status"] == code).unwrap()["info"]["call_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // The 403's trace has the whole ladder, the challenge included; the
    // challenged INVITE is not a call record of its own.
    let forbidden = by_status(403);
    let trace = cli(&sb, &["sip", "calls", "trace", &forbidden]);
    assert!(
        contains_in_order(
            &ladder(&trace),
            &["<- INVITE", "-> 407", "<- ACK", "<- INVITE", "-> 403"]
        ),
        "{trace}"
    );
    assert_eq!(
        list(&sb, &["--number", "+15550200"]).len(),
        1,
        "one record for the 403 call"
    );
    let details = cli(&sb, &["sip", "calls", "get", &by_status(488)]);
    assert!(details.contains("488"), "{details}");
    let table = cli(&sb, &["sip", "calls", "list", "--result", "refused"]);
    assert!(
        table.contains("404") && table.contains("+15550111"),
        "{table}"
    );

    // A new process on the same data directory still has them.
    sb.signal("TERM");
    assert!(
        sb.wait_exit(Duration::from_secs(10)).is_some(),
        "{}",
        sb.log()
    );
    let again = start(&env);
    let call = get(&again, &by_status(404));
    assert_eq!(call["sip_status"], 404, "{call}");
    assert_eq!(call["info"]["to_uri"]["user"], "+15550111");
    let trace = cli(&again, &["sip", "calls", "trace", &by_status(404)]);
    assert!(
        contains_in_order(&ladder(&trace), &["<- INVITE", "-> 404", "<- ACK"]),
        "{trace}"
    );
}

#[test]
fn a_failed_outbound_call_is_recorded_with_the_callees_answer() {
    let sb = start(&[]);
    let mut busy = SippUas::start("uas_busy", SippTransport::Udp, 1);
    let created = cli(
        &sb,
        &[
            "sip",
            "outbound",
            "create",
            &format!(
                r#"{{"trunk": {{"name": "out", "address": "{}", "numbers": ["+15550999"]}}}}"#,
                busy.addr
            ),
        ],
    );
    let trunk_id = created
        .trim()
        .strip_prefix("SIPTrunkID: ")
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    let api = sb.api.unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (status, answer) = runtime.block_on(common::api::sip_service(
        api,
        "CreateSIPParticipant",
        &common::api::token(serde_json::json!({"sip": {"call": true}})),
        serde_json::json!({
            "sip_trunk_id": trunk_id,
            "sip_call_to": "+15550123",
            "room_name": "out-room",
            "participant_identity": "callee",
            "wait_until_answered": true,
        }),
    ));
    assert_ne!(status, 200, "{answer}");
    let calls = history(&sb, &["--direction", "outbound"], 1);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    let info = &call["info"];
    assert_eq!(call["result"], "failed", "{call}");
    assert_eq!(call["sip_status"], 486, "{call}");
    assert_eq!(info["call_direction"], "SCD_OUTBOUND");
    assert_eq!(info["disconnect_reason"], "USER_REJECTED", "{call}");
    assert_eq!(info["trunk_id"], trunk_id.as_str());
    assert_eq!(info["room_name"], "out-room");
    assert_eq!(info["participant_identity"], "callee");
    assert_eq!(info["to_uri"]["user"], "+15550123");
    assert_eq!(call["remote_address"], busy.addr.to_string());
    assert!(list(&sb, &["--direction", "inbound"]).is_empty());
    let call_id = info["call_id"].as_str().unwrap();
    let trace = cli(&sb, &["sip", "calls", "trace", call_id]);
    assert!(
        contains_in_order(&ladder(&trace), &["-> INVITE", "<- 486", "-> ACK"]),
        "{trace}"
    );
    let _ = busy.finish(Duration::from_secs(5));
    common::api::assert_nothing_left(api, || sb.log());
}

/// Each datagram as an Ethernet/IPv4/UDP frame from `from` to `to`, in a
/// pcap file (what a capture on the collector's host would hold).
fn ethernet_pcap(
    datagrams: &[Vec<u8>],
    from: std::net::SocketAddrV4,
    to: std::net::SocketAddrV4,
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4_u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for datagram in datagrams {
        let udp_len = 8 + datagram.len();
        let ip_len = 20 + udp_len;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(ip_len as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
        ip.extend_from_slice(&from.ip().octets());
        ip.extend_from_slice(&to.ip().octets());
        let sum: u32 = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        let sum = (sum & 0xffff) + (sum >> 16);
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        let mut frame = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&from.port().to_be_bytes());
        frame.extend_from_slice(&to.port().to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(datagram);
        let len = (frame.len() as u32).to_le_bytes();
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&len);
        out.extend_from_slice(&len);
        out.extend_from_slice(&frame);
    }
    out
}

/// With `hep.collector` set, every message of a call reaches the collector
/// as HEP3, and sngrep (Debian's, a real HEP receiver) decodes the packets
/// back into the dialog with both addresses right; tshark reads its output.
#[test]
fn every_sip_message_is_exported_over_hep3_and_sngrep_decodes_it() {
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let collector_addr = collector.local_addr().unwrap().to_string();
    let sb = start(&[
        ("SWITCHBOARD_CALLS__ANSWER", "immediate"),
        ("SWITCHBOARD_HEP__COLLECTOR", &collector_addr),
        ("SWITCHBOARD_HEP__CAPTURE_ID", "4242"),
    ]);
    open_route(&sb, "");
    let (mut uac, _) = answered_call(&sb);
    let bye = uac.in_dialog("BYE", "", "");
    let ok = uac.response_to(bye, "BYE", Duration::from_secs(5));
    assert_eq!(ok.status(), 200);
    let sip_call_id = uac.call_id.clone();

    let mut datagrams = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = vec![0u8; 70_000];
    while Instant::now() < deadline {
        if let Ok(n) = collector.recv(&mut buf) {
            datagrams.push(buf[..n].to_vec());
        }
    }
    assert!(datagrams.len() >= 6, "{} HEP packets", datagrams.len());
    assert!(datagrams.iter().all(|d| d.starts_with(b"HEP3")));

    let dir = tempfile::tempdir().unwrap();
    let captured = dir.path().join("hep.pcap");
    let decoded = dir.path().join("sip.pcap");
    std::fs::write(
        &captured,
        ethernet_pcap(
            &datagrams,
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:9060".parse().unwrap(),
        ),
    )
    .unwrap();
    let sngrep = Command::new("sngrep")
        .args(["-N", "-q", "-F", "-E", "-I"])
        .arg(&captured)
        .arg("-O")
        .arg(&decoded)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run sngrep ({e}): install Debian's sngrep (tests/deps/operate.apt)")
        });
    assert!(
        sngrep.status.success(),
        "{}",
        String::from_utf8_lossy(&sngrep.stderr)
    );
    let sip_port = sb.udp.unwrap().port();
    let output = Command::new("tshark")
        .arg("-r")
        .arg(&decoded)
        .args(["-d", &format!("udp.port=={sip_port},sip")])
        .args(["-T", "fields", "-E", "separator=|"])
        .args([
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
            "-e",
            "sip.Call-ID",
        ])
        .output()
        .unwrap();
    let fields = String::from_utf8_lossy(&output.stdout).into_owned();
    let caller_port = uac.local.port().to_string();
    let sb_port = sip_port.to_string();
    // (from, to, method or status) of this call's messages, in order.
    let ladder: Vec<(String, String, String)> = fields
        .lines()
        .filter(|l| l.ends_with(&sip_call_id))
        .map(|l| {
            let c: Vec<&str> = l.split('|').collect();
            let what = if c[2].is_empty() { c[3] } else { c[2] };
            (c[0].to_string(), c[1].to_string(), what.to_string())
        })
        .collect();
    let expected = [
        (&caller_port, &sb_port, "INVITE"),
        (&sb_port, &caller_port, "200"),
        (&caller_port, &sb_port, "ACK"),
        (&caller_port, &sb_port, "BYE"),
        (&sb_port, &caller_port, "200"),
    ];
    let mut rest = ladder.iter();
    for (from, to, what) in expected {
        assert!(
            rest.any(|(f, t, w)| f == from && t == to && w == what),
            "no {what} from {from} to {to} in order:\n{ladder:?}\n{fields}"
        );
    }
    let metrics = common::api::metrics_blocking(sb.api.unwrap());
    assert!(
        metrics
            .contains("switchboard_sip_requests_total{direction=\"received\",method=\"INVITE\"} 1"),
        "{metrics}"
    );
}

/// Replicas on one Redis keep one history: a call taken by replica A is
/// listed, read and traced through replica B.
#[test]
fn replicas_on_one_redis_share_the_call_history() {
    let redis = common::redis::Redis::start();
    let url = redis.url();
    let a = start(&[
        ("SWITCHBOARD_STORE__URL", url.as_str()),
        ("SWITCHBOARD_CALLS__ANSWER", "immediate"),
    ]);
    let b = start(&[("SWITCHBOARD_STORE__URL", url.as_str())]);
    open_route(&a, "");
    let (mut uac, _) = answered_call(&a);
    let bye = uac.in_dialog("BYE", "", "");
    assert_eq!(
        uac.response_to(bye, "BYE", Duration::from_secs(5)).status(),
        200
    );

    let calls = history(&b, &[], 1);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let info = &calls[0]["info"];
    assert_eq!(info["sip_call_id"], uac.call_id.as_str());
    assert_eq!(info["from_uri"]["user"], "+15550199");
    assert_eq!(calls[0]["result"], "answered");
    let call_id = info["call_id"].as_str().unwrap();
    assert_eq!(
        get(&b, call_id)["info"]["disconnect_reason"],
        "CLIENT_INITIATED"
    );
    let trace = cli(&b, &["sip", "calls", "trace", call_id]);
    assert!(
        contains_in_order(
            &ladder(&trace),
            &["<- INVITE", "-> 200", "<- ACK", "<- BYE", "-> 200"]
        ),
        "{trace}"
    );
    // B took no call: its live list is empty while A's record is shared.
    assert!(list(&b, &["--live"]).is_empty());
}

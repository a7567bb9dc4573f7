//! Inbound calls through the real binary: routing refusals with honest
//! codes, digest authentication, answer, timers, teardown. The caller is a
//! raw-bytes UAC (tests/common/uac.rs), so every byte a test depends on is
//! in this file; SIPp and baresip calls are in tests/calls.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::uac::{notify_progress, sdp_offer, Msg, Uac};
use common::Switchboard;
use std::net::UdpSocket;
use std::time::{Duration, Instant};
use switchboard_sip::auth::DigestClient;

use common::routes::{
    answered_call, call_outcome, cli, ended_call, open_route, rule, settle, start, trunk, wait_log,
    wait_state,
};

/// The call `uac` made ended by its BYE, as the call history says.
fn assert_caller_hung_up(sb: &Switchboard, uac: &Uac) {
    let call_id = uac.remote_tag().expect("the call ID").to_string();
    assert_eq!(
        call_outcome(sb, &call_id),
        ("answered".into(), "CLIENT_INITIATED".into(), 200)
    );
}

/// Polls `probe` until it finds something, at most `within`.
fn wait_until<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reason(msg: &Msg) -> String {
    msg.header("Reason").unwrap_or_default().to_string()
}

/// Waits until /debug/state shows no call, call task, RTP port, room or
/// participant left: nothing outlives its call.
fn assert_idle(sb: &Switchboard) {
    common::api::assert_nothing_left(sb.api.unwrap(), || sb.log());
}

#[test]
fn refusals_are_final_honest_and_explained() {
    let sb = start(&[("SWITCHBOARD_CALLS__AUTH_ALGORITHMS", "[MD5]")]);
    let auth_trunk = trunk(
        &sb,
        r#"{"name": "auth", "numbers": ["+15550100"], "auth_username": "carrier", "auth_password": "s3cret"}"#,
    );
    trunk(&sb, r#"{"name": "no rule", "numbers": ["+15550200"]}"#);
    let media_trunk = trunk(
        &sb,
        r#"{"name": "pcmu only", "numbers": ["+15550300"], "media": {"only_listed_codecs": true, "codecs": [{"name": "PCMU", "rate": 8000}]}}"#,
    );
    rule(
        &sb,
        &format!(
            r#"{{"name": "a", "trunk_ids": ["{auth_trunk}"], "rule": {{"dispatch_rule_direct": {{"room_name": "a"}}}}}}"#
        ),
    );
    rule(
        &sb,
        &format!(
            r#"{{"name": "m", "trunk_ids": ["{media_trunk}"], "rule": {{"dispatch_rule_direct": {{"room_name": "m"}}}}}}"#
        ),
    );
    settle(&sb);
    let target = sb.udp.unwrap();

    // No trunk for the number.
    let mut uac = Uac::new(target, "+15550199", "+15559999");
    let seq = uac.invite(&uac.pcmu_offer(), &[]);
    let (provisional, last) = uac.final_response(seq, Duration::from_secs(5));
    uac.ack(seq, &last);
    // Refused at once: no 100 Trying before it (sip.trying_delay_ms).
    assert_eq!(provisional, Vec::<u16>::new());
    assert_eq!(last.status(), 404, "{}", last.text);
    assert_eq!(reason(&last), r#"SIP;cause=404;text="No matching trunk""#);

    // A trunk with credentials challenges, and refuses a wrong password.
    let mut uac = Uac::new(target, "+15550199", "+15550100");
    let offer = uac.pcmu_offer();
    let seq = uac.invite(&offer, &[]);
    let (_, challenge) = uac.final_response(seq, Duration::from_secs(5));
    uac.ack(seq, &challenge);
    assert_eq!(challenge.status(), 407, "{}", challenge.text);
    let challenges = challenge.headers("Proxy-Authenticate");
    assert_eq!(challenges.len(), 1, "only MD5 was configured");
    assert!(challenges[0].contains("algorithm=MD5") && challenges[0].contains(r#"qop="auth""#));
    let uri = format!("sip:+15550100@{target}");
    let credentials = DigestClient::new("carrier", "wrong")
        .authorize(&challenges, "INVITE", &uri, offer.as_bytes())
        .unwrap();
    let seq = uac.invite(&offer, &[format!("Proxy-Authorization: {credentials}")]);
    let (_, refused) = uac.final_response(seq, Duration::from_secs(5));
    uac.ack(seq, &refused);
    assert_eq!(refused.status(), 403, "{}", refused.text);
    assert_eq!(
        reason(&refused),
        r#"SIP;cause=403;text="Authentication failed""#
    );

    // The trunk matches but no rule takes the call.
    let mut uac = Uac::new(target, "+15550199", "+15550200");
    let seq = uac.invite(&uac.pcmu_offer(), &[]);
    let (_, last) = uac.final_response(seq, Duration::from_secs(5));
    uac.ack(seq, &last);
    assert_eq!(last.status(), 404, "{}", last.text);
    assert_eq!(
        reason(&last),
        r#"SIP;cause=404;text="No matching dispatch rule""#
    );

    // Nothing acceptable in the offer for a PCMU-only trunk.
    let mut uac = Uac::new(target, "+15550199", "+15550300");
    let pcma = sdp_offer(uac.rtp_port(), "8", &["8 PCMA/8000"]);
    let seq = uac.invite(&pcma, &[]);
    let (_, last) = uac.final_response(seq, Duration::from_secs(5));
    uac.ack(seq, &last);
    assert_eq!(last.status(), 488, "{}", last.text);
    assert!(
        reason(&last).contains("no common codec"),
        "{}",
        reason(&last)
    );

    // Each refusal is logged with the reasons explain would give.
    let log = wait_log(&sb, "No matching dispatch rule", Duration::from_secs(2));
    assert!(
        log.contains(r#"explain=trunk ST_"#)
            && log.contains(r#"called number "+15559999" (To user) not in numbers"#),
        "{log}"
    );
    assert!(
        log.contains("trunk ") && log.contains("credentials refused"),
        "{log}"
    );
    // Counted by result, reason and status (the challenge is not a call).
    // A call is counted as its task ends, just after its answer went out.
    let lines: Vec<String> = [("404", 2), ("403", 1), ("488", 1)]
        .iter()
        .map(|(status, count)| format!(
            r#"switchboard_calls_ended_total{{direction="inbound",reason="SIP_TRUNK_FAILURE",result="refused",sip_status="{status}"}} {count}"#
        ))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = common::api::metrics_blocking(sb.api.unwrap());
        let missing: Vec<&String> = lines.iter().filter(|l| !metrics.contains(*l)).collect();
        if missing.is_empty() {
            break metrics;
        }
        assert!(Instant::now() < deadline, "{missing:?}\n{metrics}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!metrics.contains(r#"sip_status="407""#), "{metrics}");
    assert_idle(&sb);
}

#[test]
fn over_the_call_limit_callers_are_told_when_to_retry() {
    let sb = start(&[
        ("SWITCHBOARD_CALLS__MAX_ACTIVE", "0"),
        ("SWITCHBOARD_DRAIN__RETRY_AFTER_SECS", "7"),
    ]);
    let mut uac = Uac::new(sb.udp.unwrap(), "+15550199", "+15550100");
    let seq = uac.invite(&uac.pcmu_offer(), &[]);
    let (_, last) = uac.final_response(seq, Duration::from_secs(5));
    uac.ack(seq, &last);
    assert_eq!(last.status(), 503, "{}", last.text);
    assert_eq!(last.header("Retry-After"), Some("7"));
    assert_eq!(reason(&last), r#"SIP;cause=503;text="Call limit reached""#);
    assert_idle(&sb);
}

#[test]
fn a_call_nobody_answers_gets_480_after_the_ringing_timeout() {
    let sb = start(&[]);
    open_route(&sb, r#", "ringing_timeout": "1s""#);
    let mut uac = Uac::new(sb.udp.unwrap(), "+15550199", "+15550100");
    let started = Instant::now();
    let seq = uac.invite(&uac.pcmu_offer(), &[]);
    let (provisional, last) = uac.final_response(seq, Duration::from_secs(10));
    uac.ack(seq, &last);
    assert!(provisional.contains(&180), "{provisional:?}");
    assert_eq!(last.status(), 480, "{}", last.text);
    assert_eq!(
        reason(&last),
        r#"SIP;cause=480;text="No answer in the room""#
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let call_id = last.to_tag().expect("the call ID as To tag");
    assert_eq!(
        call_outcome(&sb, &call_id),
        ("refused".into(), "SIP_TRUNK_FAILURE".into(), 480)
    );
    assert_idle(&sb);
}

#[test]
fn cancel_while_ringing_gets_487_and_the_caller_leaves_the_room() {
    let sb = start(&[]);
    open_route(&sb, "");
    let mut uac = Uac::new(sb.udp.unwrap(), "+15550199", "+15550100");
    let seq = uac.invite(&uac.pcmu_offer(), &[]);
    let mut ringing = uac.recv(Duration::from_secs(5)).unwrap();
    if ringing.status() == 100 {
        // Only when call control took longer than sip.trying_delay_ms.
        ringing = uac.recv(Duration::from_secs(5)).unwrap();
    }
    assert_eq!(ringing.status(), 180);
    let call_id = ringing.to_tag().expect("the call ID as To tag");
    wait_state(&sb, "participants", 1);
    uac.cancel(seq);
    let mut statuses = Vec::new();
    while statuses.len() < 2 {
        let msg = uac.recv(Duration::from_secs(5)).expect("CANCEL answered");
        if msg.status() != 180 {
            statuses.push((msg.status(), msg.header("CSeq").unwrap().to_string()));
        }
        if msg.status() == 487 {
            uac.ack(seq, &msg);
        }
    }
    statuses.sort();
    assert_eq!(
        statuses,
        vec![
            (200, format!("{seq} CANCEL")),
            (487, format!("{seq} INVITE"))
        ]
    );
    assert_eq!(
        call_outcome(&sb, &call_id),
        ("cancelled".into(), "CLIENT_INITIATED".into(), 487)
    );
    // The caller left the room and the room closed.
    assert_idle(&sb);
}

#[test]
fn max_call_duration_ends_the_call_with_bye() {
    let sb = start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    open_route(&sb, r#", "max_call_duration": "1s""#);
    let (mut uac, _) = answered_call(&sb);
    let started = Instant::now();
    let bye = uac.expect_request("BYE", Duration::from_secs(5));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        bye.header("Reason")
            .unwrap_or_default()
            .contains("maximum call duration"),
        "{}",
        bye.text
    );
    uac.answer(&bye, 200);
    let call_id = uac.remote_tag().expect("the call ID").to_string();
    assert_eq!(
        call_outcome(&sb, &call_id),
        ("answered".into(), "CONNECTION_TIMEOUT".into(), 200)
    );
    assert_idle(&sb);
}

#[test]
fn a_silent_caller_is_hung_up_after_the_media_timeout() {
    let sb = start(&[
        ("SWITCHBOARD_CALLS__ANSWER", "immediate"),
        ("SWITCHBOARD_MEDIA__TIMEOUT_SECS", "1"),
        ("SWITCHBOARD_MEDIA__INITIAL_TIMEOUT_SECS", "1"),
    ]);
    open_route(&sb, "");
    let (mut uac, _) = answered_call(&sb);
    let bye = uac.expect_request("BYE", Duration::from_secs(6));
    assert!(
        bye.header("Reason")
            .unwrap_or_default()
            .contains("cause=408"),
        "{}",
        bye.text
    );
    // A second of ticks on a call on which nothing arrived: not one read.
    let metrics = common::api::metrics_blocking(sb.api.unwrap());
    assert!(
        metrics.contains("\nswitchboard_media_receive_syscalls_total 0\n"),
        "{metrics}"
    );
    uac.answer(&bye, 200);
    let call_id = uac.remote_tag().expect("the call ID").to_string();
    let call = ended_call(&sb, &call_id);
    assert_eq!(call["info"]["disconnect_reason"], "MEDIA_FAILURE", "{call}");
    assert_eq!(call["sip_status"], 408, "{call}");
    assert_eq!(call["info"]["error"], "media timeout", "{call}");
    assert_idle(&sb);
}

#[test]
fn a_caller_who_sends_rtp_is_not_timed_out_and_hangs_up_with_bye() {
    let sb = start(&[
        ("SWITCHBOARD_CALLS__ANSWER", "immediate"),
        ("SWITCHBOARD_MEDIA__TIMEOUT_SECS", "1"),
        ("SWITCHBOARD_MEDIA__INITIAL_TIMEOUT_SECS", "1"),
    ]);
    open_route(&sb, "");
    let (mut uac, rtp) = answered_call(&sb);
    // 2.5 s of RTP: past the 1 s media timeout, so only the packets keep
    // the call up.
    for i in 0..125u16 {
        uac.send_rtp(rtp, i, u32::from(i) * 160);
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still up: no BYE came, the call is counted.
    assert!(uac.recv(Duration::from_millis(10)).is_none());
    assert_eq!(
        common::api::debug_state_blocking(sb.api.unwrap())["calls_active"],
        1
    );
    // What arrived was read: at least one read per packet.
    let metrics = common::api::metrics_blocking(sb.api.unwrap());
    let reads: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_media_receive_syscalls_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no receive counter in {metrics}"));
    assert!(reads >= 125, "{reads} reads for 125 packets");
    // A SIP INFO digit is accepted in the call.
    let info = uac.in_dialog(
        "INFO",
        "application/dtmf-relay",
        "Signal=5\r\nDuration=160\r\n",
    );
    assert_eq!(
        uac.response_to(info, "INFO", Duration::from_secs(3))
            .status(),
        200
    );
    let log = wait_log(&sb, "DTMF from the caller", Duration::from_secs(3));
    let digits: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("DTMF from the caller"))
        .collect();
    assert!(
        digits.len() == 1 && digits[0].contains("digit=5"),
        "Signal=5 must arrive as the one digit 5: {digits:?}"
    );
    let bye = uac.in_dialog("BYE", "", "");
    assert_eq!(
        uac.response_to(bye, "BYE", Duration::from_secs(3)).status(),
        200
    );
    assert_caller_hung_up(&sb, &uac);
    assert_idle(&sb);
}

#[test]
fn hold_and_resume_by_reinvite_keep_the_call() {
    let sb = start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    open_route(&sb, "");
    let (mut uac, _) = answered_call(&sb);
    let hold = uac.pcmu_offer().replace("a=sendrecv", "a=sendonly");
    let seq = uac.invite(&hold, &[]);
    let (_, ok) = uac.final_response(seq, Duration::from_secs(5));
    assert_eq!(ok.status(), 200, "{}", ok.text);
    assert!(ok.body().contains("a=recvonly"), "{}", ok.body());
    uac.ack(seq, &ok);
    let seq = uac.invite(&uac.pcmu_offer(), &[]);
    let (_, ok) = uac.final_response(seq, Duration::from_secs(5));
    assert_eq!(ok.status(), 200, "{}", ok.text);
    assert!(ok.body().contains("a=sendrecv"), "{}", ok.body());
    uac.ack(seq, &ok);
    // A re-INVITE without SDP: our offer comes in the 200, the answer in
    // the ACK. The answer moves our media to a new port: RTP arriving
    // there proves the answer was applied (a log line would not: it could
    // be printed after a failed update too).
    let moved = UdpSocket::bind("127.0.0.1:0").unwrap();
    let moved_port = moved.local_addr().unwrap().port();
    let seq = uac.invite("", &[]);
    let (_, ok) = uac.final_response(seq, Duration::from_secs(5));
    assert_eq!(ok.status(), 200, "{}", ok.text);
    assert!(ok.body().contains("m=audio "), "an offer: {}", ok.body());
    let answer = sdp_offer(
        moved_port,
        "0 101",
        &["0 PCMU/8000", "101 telephone-event/8000"],
    );
    uac.ack_with(seq, &ok, &answer);
    assert!(
        receives_pcmu(&moved, Duration::from_secs(5)),
        "no RTP at the port the ACK's answer named:\n{}",
        sb.log()
    );
    assert!(!sb.log().contains("unusable"), "{}", sb.log());
    let bye = uac.in_dialog("BYE", "", "");
    assert_eq!(
        uac.response_to(bye, "BYE", Duration::from_secs(3)).status(),
        200
    );
    assert_caller_hung_up(&sb, &uac);
    assert_idle(&sb);
}

/// Whether a PCMU RTP packet arrives on `socket` within `within`.
fn receives_pcmu(socket: &UdpSocket, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 2048];
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            if n >= 12 && buf[0] >> 6 == 2 && buf[1] & 0x7f == 0 {
                return true;
            }
        }
    }
    false
}

/// PCMU frames with a tone in them that arrive on `rtp` until none has
/// come for 300 ms (or `within` is over).
fn loud_pcmu_frames_until_the_rtp_stops(rtp: &std::net::UdpSocket, within: Duration) -> usize {
    let until = Instant::now() + within;
    let mut loud = 0;
    let mut buf = [0u8; 1500];
    rtp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    while Instant::now() < until {
        let Ok(n) = rtp.recv(&mut buf) else { break };
        // µ-law codes near 0x00 and 0x80 are the loud ones (0xFF, 0x7F: zero).
        let payload = buf.get(12..n).unwrap_or_default();
        if payload.iter().filter(|b| *b & 0x7f < 0x40).count() >= 40 {
            loud += 1;
        }
    }
    loud
}

#[test]
fn a_pin_rule_refuses_the_wrong_pin_and_admits_the_right_one() {
    let sb = start(&[]);
    let id = trunk(&sb, r#"{"name": "t", "numbers": ["+15550100"]}"#);
    rule(
        &sb,
        &format!(
            r#"{{"name": "pin", "trunk_ids": ["{id}"], "rule": {{"dispatch_rule_direct": {{"room_name": "secret", "pin": "1234"}}}}}}"#
        ),
    );
    settle(&sb);
    let digits = |uac: &mut Uac, pin: &str| {
        for c in pin.chars() {
            let seq = uac.in_dialog(
                "INFO",
                "application/dtmf-relay",
                &format!("Signal={c}\r\nDuration=160\r\n"),
            );
            assert_eq!(
                uac.response_to(seq, "INFO", Duration::from_secs(3))
                    .status(),
                200
            );
        }
    };

    // The PIN path answers at once (the prompt needs media).
    let (mut wrong, _) = answered_call(&sb);
    digits(&mut wrong, "1235#");
    // The caller hears the whole wrong-PIN prompt (700 ms of tones after
    // what is left of the first one) before the BYE; its RTP stops then.
    let loud = loud_pcmu_frames_until_the_rtp_stops(&wrong.rtp, Duration::from_secs(8));
    assert!(loud >= 33, "{loud} loud frames before the BYE");
    let bye = wrong.expect_request("BYE", Duration::from_secs(8));
    assert!(
        bye.header("Reason")
            .unwrap_or_default()
            .contains("wrong PIN"),
        "{}",
        bye.text
    );

    let (mut right, _) = answered_call(&sb);
    digits(&mut right, "1234#");
    // Joined straight as active (the call was answered for the prompt).
    let call_id = right.remote_tag().expect("the call ID").to_string();
    let joined = wait_until(Duration::from_secs(3), || {
        let text = cli(&sb, &["sip", "calls", "get", &call_id, "--json"]);
        let call: serde_json::Value = serde_json::from_str(&text).unwrap();
        (call["info"]["room_name"] == "secret").then_some(call)
    });
    assert_eq!(
        joined["info"]["participant_attributes"]["sip.callStatus"], "active",
        "{joined}"
    );
    let bye = right.in_dialog("BYE", "", "");
    assert_eq!(
        right
            .response_to(bye, "BYE", Duration::from_secs(3))
            .status(),
        200
    );
    assert_idle(&sb);
}

#[test]
fn individual_and_callee_rules_name_rooms_as_livekit_does_and_hidden_numbers_stay_hidden() {
    let sb = start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    let individual = trunk(&sb, r#"{"name": "i", "numbers": ["+15550100"]}"#);
    let callee = trunk(&sb, r#"{"name": "c", "numbers": ["+15550200"]}"#);
    rule(
        &sb,
        &format!(
            r#"{{"name": "i", "trunk_ids": ["{individual}"], "hide_phone_number": true, "rule": {{"dispatch_rule_individual": {{"room_prefix": "pref"}}}}}}"#
        ),
    );
    rule(
        &sb,
        &format!(
            r#"{{"name": "c", "trunk_ids": ["{callee}"], "rule": {{"dispatch_rule_callee": {{"room_prefix": "desk"}}}}}}"#
        ),
    );
    settle(&sb);
    let target = sb.udp.unwrap();
    for to in ["+15550100", "+15550200"] {
        let mut uac = Uac::new(target, "+15550199", to);
        let seq = uac.invite(&uac.pcmu_offer(), &[]);
        let (_, ok) = uac.final_response(seq, Duration::from_secs(5));
        assert_eq!(ok.status(), 200, "{}", ok.text);
        uac.ack(seq, &ok);
        let bye = uac.in_dialog("BYE", "", "");
        assert_eq!(
            uac.response_to(bye, "BYE", Duration::from_secs(3)).status(),
            200
        );
    }
    assert_idle(&sb);
    let log = sb.log();
    let joined: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("caller joined the room"))
        .collect();
    assert_eq!(joined.len(), 2, "{log}");
    // Individual with hide_phone_number: the room uses the hashed number
    // and a random suffix; the identity is hashed too.
    let hashed = {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(b"+15550199");
        digest
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let first = joined[0];
    assert!(first.contains(&format!("room=pref_{hashed}_")), "{first}");
    assert!(first.contains(&format!("identity=sip_{hashed}")), "{first}");
    assert!(!first.contains("15550199"), "the number is hidden: {first}");
    // Callee: the called number, no suffix unless asked.
    assert!(joined[1].contains("room=desk_+15550200 "), "{}", joined[1]);
    assert!(
        joined[1].contains("identity=sip_+15550199"),
        "{}",
        joined[1]
    );
}

#[test]
fn early_media_sends_183_with_ringback_then_the_200_carries_the_trunk_headers() {
    let sb = start(&[("SWITCHBOARD_CALLS__EARLY_MEDIA", "true")]);
    open_route(
        &sb,
        r#", "ringing_timeout": "3s", "headers": {"X-Carrier-Ref": "abc", "P-Early-Media": "supported"}"#,
    );
    let mut uac = Uac::new(sb.udp.unwrap(), "+15550199", "+15550100");
    let seq = uac.invite(&uac.pcmu_offer(), &[]);
    let mut early = None;
    while early.is_none() {
        let msg = uac
            .recv(Duration::from_secs(5))
            .expect("a provisional response");
        if msg.status() == 183 {
            early = Some(msg);
        }
    }
    let early = early.unwrap();
    assert_eq!(early.header("Content-Type"), Some("application/sdp"));
    assert!(early.to_tag().unwrap().starts_with("SCL_"));
    // Ringback flows before any answer: real RTP with tone energy.
    uac.rtp
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut loud = 0;
    for _ in 0..50 {
        let (n, _) = uac
            .rtp
            .recv_from(&mut buf)
            .expect("ringback RTP before the answer");
        assert_eq!(buf[1] & 0x7f, 0, "PCMU");
        // PCMU silence is 0xff/0x7f; a tone varies.
        if buf[12..n].iter().any(|b| *b != 0xff && *b != 0x7f) {
            loud += 1;
        }
    }
    assert!(loud > 10, "ringback has energy ({loud} of 50 packets)");
    // Nobody answers: the trunk's ringing timeout applies.
    let (_, last) = uac.final_response(seq, Duration::from_secs(8));
    uac.ack(seq, &last);
    assert_eq!(last.status(), 480, "{}", last.text);
    assert_idle(&sb);
}

#[test]
fn the_200_carries_the_trunk_headers_and_record_route() {
    let sb = start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    open_route(&sb, r#", "headers": {"X-Carrier-Ref": "abc"}"#);
    let mut uac = Uac::new(sb.udp.unwrap(), "+15550199", "+15550100");
    let seq = uac.invite(
        &uac.pcmu_offer(),
        &["Record-Route: <sip:sbc.example.net;lr>".to_string()],
    );
    let (_, ok) = uac.final_response(seq, Duration::from_secs(5));
    assert_eq!(ok.status(), 200, "{}", ok.text);
    assert_eq!(ok.header("X-Carrier-Ref"), Some("abc"));
    assert_eq!(ok.header("Record-Route"), Some("<sip:sbc.example.net;lr>"));
    uac.ack(seq, &ok);
    let bye = uac.in_dialog("BYE", "", "");
    assert_eq!(
        uac.response_to(bye, "BYE", Duration::from_secs(3)).status(),
        200
    );
    assert_idle(&sb);
}

/// POSTs Twirp JSON to the API with a fresh token from `token create`.
fn twirp(sb: &Switchboard, service_method: &str, token_args: &[&str], body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut args = vec!["token", "create"];
    args.extend_from_slice(token_args);
    let token = cli(sb, &args).trim().to_string();
    let api = sb.api.unwrap();
    let mut stream = std::net::TcpStream::connect(api).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /twirp/{service_method} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Asks the API to transfer the caller's call; answers in a thread.
fn transfer_in_background(
    sb: &Switchboard,
    refer_to: &str,
) -> std::thread::JoinHandle<(u16, String)> {
    let api = sb.api.unwrap();
    let refer_to = refer_to.to_string();
    let token = cli(
        sb,
        &[
            "token",
            "create",
            "--sip-call",
            "--room",
            "r",
            "--room-admin",
        ],
    )
    .trim()
    .to_string();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let body = format!(
            r#"{{"room_name": "r", "participant_identity": "sip_+15550199", "transfer_to": "{refer_to}", "ringing_timeout": "10s"}}"#
        );
        let mut stream = std::net::TcpStream::connect(api).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "POST /twirp/livekit.SIP/TransferSIPParticipant HTTP/1.1\r\nHost: {api}\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    })
}

#[test]
fn transfers_by_refer_succeed_on_notify_200_and_fail_with_the_notified_status() {
    let sb = start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    open_route(
        &sb,
        r#", "attributes_to_headers": {"sip.callID": "X-Lk-Call"}"#,
    );

    // Success: REFER accepted, target answers; we hang up after it.
    let (mut uac, _) = answered_call(&sb);
    let api = transfer_in_background(&sb, "tel:+15550111");
    let refer = uac.wait_request("REFER", Duration::from_secs(5));
    assert_eq!(refer.header("Refer-To"), Some("tel:+15550111"));
    assert!(refer.header("Referred-By").is_some(), "{}", refer.text);
    assert!(
        refer
            .header("X-Lk-Call")
            .is_some_and(|v| v.starts_with("SCL_")),
        "attributes_to_headers on the REFER: {}",
        refer.text
    );
    notify_progress(&mut uac, &refer, &["100 Trying", "200 OK"]);
    let (status, body) = api.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""status":"STS_TRANSFER_SUCCESSFUL""#),
        "{body}"
    );
    assert!(body.contains(r#""transfer_id":"STR_"#), "{body}");
    let bye = uac.expect_request("BYE", Duration::from_secs(4));
    assert!(bye
        .header("Reason")
        .unwrap_or_default()
        .contains("call transferred"));
    uac.answer(&bye, 200);
    let call_id = uac.remote_tag().expect("the call ID").to_string();
    let call = ended_call(&sb, &call_id);
    assert_eq!(
        call["info"]["disconnect_reason"], "CLIENT_INITIATED",
        "{call}"
    );
    assert_eq!(
        call["transfer"]["transfer_status"], "STS_TRANSFER_SUCCESSFUL",
        "{call}"
    );

    // Failure: the target is busy; the call stays and the API says why.
    let (mut uac, _) = answered_call(&sb);
    let api = transfer_in_background(&sb, "<sip:agent@example.net>");
    let refer = uac.wait_request("REFER", Duration::from_secs(5));
    assert_eq!(refer.header("Refer-To"), Some("<sip:agent@example.net>"));
    notify_progress(&mut uac, &refer, &["100 Trying", "486 Busy Here"]);
    let (status, body) = api.join().unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(body.contains(r#""code":"resource_exhausted""#), "{body}");
    assert!(body.contains(r#""sip_status_code":"486""#), "{body}");
    assert!(body.contains(r#""sip_status":"Busy Here""#), "{body}");
    let bye = uac.in_dialog("BYE", "", "");
    assert_eq!(
        uac.response_to(bye, "BYE", Duration::from_secs(3)).status(),
        200
    );

    // A call that is not a SIP participant of ours cannot be transferred.
    let (status, body) = twirp(
        &sb,
        "livekit.SIP/TransferSIPParticipant",
        &["--sip-call", "--room", "r", "--room-admin"],
        r#"{"room_name": "r", "participant_identity": "nobody", "transfer_to": "tel:+1"}"#,
    );
    assert_eq!(status, 404, "{body}");
    assert_idle(&sb);
}

#[test]
fn session_timers_refuse_short_intervals_and_end_sessions_nobody_refreshes() {
    let sb = start(&[
        ("SWITCHBOARD_CALLS__ANSWER", "immediate"),
        ("SWITCHBOARD_CALLS__MIN_SESSION_EXPIRES_SECS", "2"),
        // Timer B (64 × T1) of our refresh: 3.2 s.
        ("SWITCHBOARD_SIP__T1_MS", "50"),
    ]);
    open_route(&sb, "");
    let target = sb.udp.unwrap();

    // Below our Min-SE: 422 with Min-SE.
    let mut uac = Uac::new(target, "+15550199", "+15550100");
    let seq = uac.invite(
        &uac.pcmu_offer(),
        &["Supported: timer".into(), "Session-Expires: 1".into()],
    );
    let (_, last) = uac.final_response(seq, Duration::from_secs(5));
    uac.ack(seq, &last);
    assert_eq!(last.status(), 422, "{}", last.text);
    assert_eq!(last.header("Min-SE"), Some("2"));

    // The caller is the refresher and never refreshes: we hang up.
    let mut uac = Uac::new(target, "+15550199", "+15550100");
    let seq = uac.invite(
        &uac.pcmu_offer(),
        &[
            "Supported: timer".into(),
            "Session-Expires: 2;refresher=uac".into(),
        ],
    );
    let (_, ok) = uac.final_response(seq, Duration::from_secs(5));
    assert_eq!(ok.status(), 200, "{}", ok.text);
    assert_eq!(ok.header("Session-Expires"), Some("2;refresher=uac"));
    assert_eq!(ok.header("Require"), Some("timer"));
    uac.ack(seq, &ok);
    let started = Instant::now();
    let bye = uac.expect_request("BYE", Duration::from_secs(5));
    assert!(
        bye.header("Reason")
            .unwrap_or_default()
            .contains("session timer expired"),
        "{}",
        bye.text
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // We refresh, and the caller answers nothing: the refresh times out
    // and the session ends with it (RFC 4028 §10), media or not.
    let mut uac = Uac::new(target, "+15550199", "+15550100");
    let seq = uac.invite(
        &uac.pcmu_offer(),
        &[
            "Supported: timer".into(),
            "Session-Expires: 2;refresher=uas".into(),
        ],
    );
    let (_, ok) = uac.final_response(seq, Duration::from_secs(5));
    assert_eq!(ok.status(), 200, "{}", ok.text);
    assert_eq!(ok.header("Session-Expires"), Some("2;refresher=uas"));
    uac.ack(seq, &ok);
    let refresh = uac.wait_request("INVITE", Duration::from_secs(5));
    assert!(
        refresh.header("Session-Expires").is_some(),
        "{}",
        refresh.text
    );
    let bye = uac.expect_request("BYE", Duration::from_secs(10));
    assert!(
        bye.header("Reason")
            .unwrap_or_default()
            .contains("session timer expired"),
        "{}",
        bye.text
    );
    assert_idle(&sb);
}

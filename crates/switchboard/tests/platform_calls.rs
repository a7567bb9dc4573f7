//! Real calls through carrier trunks made only by the `/v1/` API of the
//! real binary, on ephemeral loopback ports:
//!
//! - inbound: baresip dials a `direction: both` trunk's number with the
//!   trunk's digest credentials and lands in a room of the trunk's
//!   individual rule (`call-` prefix); a wrong password is challenged then
//!   refused; called numbers in national form (`4155550100`,
//!   `02079460000`) still find their E.164 trunks;
//! - outbound: CreateSIPParticipant through `direction: outbound` trunks
//!   reaches SIPp callees, which challenge, check the trunk's digest and
//!   answer; the Request-URI, To and From users SIPp received are written
//!   in each trunk's `number_format` for its `destination_country`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::api::{
    admin_token, assert_nothing_left, http, room_service, sip_service, token, SECRET,
};
use common::baresip::{tone, Baresip, CallerSpec};
use common::routes::start;
use common::sipp_uas::SippUas;
use common::uac::{Msg, Uac};
use common::{SippTransport, Switchboard};
use serde_json::{json, Value};
use switchboard_sip::auth::DigestClient;

/// The inbound trunk's digest password.
const PASSWORD: &str = "carrier-Pa55word";

/// The credentials tests/sipp/uas_auth_answer.xml checks the digest with.
const CALLEE_USER: &str = "carrier-user";
const CALLEE_PASSWORD: &str = "carrier-secret";

/// Creates a carrier trunk by `POST /v1/sip-trunks` with the API secret;
/// returns what the API answered (201).
async fn create_trunk(api: SocketAddr, body: Value) -> Value {
    let auth = format!("Bearer {SECRET}");
    let (status, text) = http(
        api,
        "POST",
        "/v1/sip-trunks",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 201, "POST /v1/sip-trunks {body}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn id(trunk: &Value, key: &str) -> String {
    trunk[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {trunk}"))
        .to_owned()
}

/// Waits until RoomService lists a room named `prefix…` holding a SIP
/// participant whose call is `active` (answered); returns the room's name
/// and that participant.
async fn answered_participant(sb: &Switchboard, prefix: &str) -> (String, Value) {
    let api = sb.api.unwrap();
    let list = token(json!({"video": {"roomList": true}}));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = Value::Null;
    loop {
        let (status, rooms) = room_service(api, "ListRooms", &list, json!({})).await;
        assert_eq!(status, 200, "{rooms}");
        let names: Vec<String> = rooms["rooms"]
            .as_array()
            .map(|rooms| {
                rooms
                    .iter()
                    .filter_map(|r| r["name"].as_str())
                    .filter(|n| n.starts_with(prefix))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        for room in names {
            let (status, ps) = room_service(
                api,
                "ListParticipants",
                &admin_token(&room),
                json!({"room": room}),
            )
            .await;
            assert_eq!(status, 200, "{ps}");
            let found = ps["participants"].as_array().and_then(|ps| {
                ps.iter()
                    .find(|p| p["kind"] == "SIP" && p["attributes"]["sip.callStatus"] == "active")
                    .cloned()
            });
            if let Some(participant) = found {
                return (room, participant);
            }
            last = ps;
        }
        assert!(
            Instant::now() < deadline,
            "no answered SIP participant in a room named {prefix}…; rooms {rooms}, last {last}\n{}",
            sb.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An INVITE from a raw caller to `to`, answered with `password` for the
/// trunk's user "acme" after the 407: (the challenge, the final answer to
/// the authenticated retry). A 2xx is ACKed; `uac` is in the dialog then.
fn invite_with_digest(uac: &mut Uac, target: SocketAddr, to: &str, password: &str) -> (Msg, Msg) {
    let offer = uac.pcmu_offer();
    let seq = uac.invite(&offer, &[]);
    let (_, challenge) = uac.final_response(seq, Duration::from_secs(5));
    uac.ack(seq, &challenge);
    assert_eq!(challenge.status(), 407, "{}", challenge.text);
    let challenges = challenge.headers("Proxy-Authenticate");
    let credentials = DigestClient::new("acme", password)
        .authorize(
            &challenges,
            "INVITE",
            &format!("sip:{to}@{target}"),
            offer.as_bytes(),
        )
        .unwrap();
    let seq = uac.invite(&offer, &[format!("Proxy-Authorization: {credentials}")]);
    let (_, last) = uac.final_response(seq, Duration::from_secs(5));
    uac.ack(seq, &last);
    (challenge, last)
}

/// baresip calls the number of a `/v1` trunk (direction both) with its
/// digest credentials and is answered into a room of the trunk's
/// individual rule; a wrong password gets 407 then 403; the national forms
/// of the trunk numbers (US and UK) reach their trunks too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_calls_in_through_a_v1_trunk_with_digest_auth() {
    let sb = start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    let api = sb.api.unwrap();
    let target = sb.udp.unwrap();
    let us = create_trunk(
        api,
        json!({
            "name": "Acme US",
            "kind": "byoc",
            "direction": "both",
            "sip_address": "sip.carrier.example:5060",
            "auth_username": "acme",
            "auth_password": PASSWORD,
            "numbers": ["+14155550100"],
        }),
    )
    .await;
    let uk = create_trunk(
        api,
        json!({
            "name": "Acme UK",
            "kind": "byoc",
            "direction": "inbound",
            "sip_address": "sip.carrier.example",
            "auth_username": "acme",
            "auth_password": PASSWORD,
            "numbers": ["+442079460000"],
        }),
    )
    .await;
    let us_inbound = id(&us, "livekit_inbound_trunk_id");
    common::api::settle_routing(api).await;

    // baresip dials the E.164 number with the trunk's credentials.
    let mut caller = Baresip::call(CallerSpec {
        name: "v1-inbound",
        codec: "PCMU",
        wav_rate: 8000,
        channels: 1,
        source: tone(8000, 900.0, 6.0),
        mediaenc: None,
        dial: Baresip::uri("+14155550100", target),
        run_secs: 4,
        auth: Some(("acme", PASSWORD)),
    });
    let (room, participant) = answered_participant(&sb, "call-_+1555").await;
    // The individual rule: "call-" + "_" + the caller + "_" + a suffix.
    let identity = participant["identity"].as_str().unwrap();
    let from = identity
        .strip_prefix("sip_")
        .unwrap_or_else(|| panic!("{participant}"));
    let suffix = room
        .strip_prefix(&format!("call-_{from}_"))
        .unwrap_or_else(|| panic!("room {room} for caller {from}"));
    assert!(!suffix.is_empty(), "{room}");
    let attributes = &participant["attributes"];
    assert_eq!(
        attributes["sip.trunkID"],
        us_inbound.as_str(),
        "{participant}"
    );
    assert_eq!(attributes["sip.phoneNumber"], from, "{participant}");
    assert_eq!(
        attributes["sip.trunkPhoneNumber"], "+14155550100",
        "{participant}"
    );
    assert_eq!(
        attributes["sip.ruleID"],
        id(&us, "livekit_dispatch_rule_id").as_str(),
        "{participant}"
    );

    // A wrong password: challenged, then refused.
    let refused = tokio::task::spawn_blocking(move || {
        let mut uac = Uac::new(target, "+15550199", "+14155550100");
        invite_with_digest(&mut uac, target, "+14155550100", &format!("{PASSWORD}x")).1
    })
    .await
    .unwrap();
    assert_eq!(refused.status(), 403, "{}", refused.text);

    // National forms of both trunks' numbers, with the right password.
    for (from, to, trunk) in [
        ("+15550101", "4155550100", &us),
        ("+15550102", "02079460000", &uk),
    ] {
        let mut uac = tokio::task::spawn_blocking(move || {
            let mut uac = Uac::new(target, from, to);
            let (_, ok) = invite_with_digest(&mut uac, target, to, PASSWORD);
            assert_eq!(ok.status(), 200, "{to}: {}", ok.text);
            uac
        })
        .await
        .unwrap();
        let (_, participant) = answered_participant(&sb, &format!("call-_{from}_")).await;
        let matched = (
            participant["attributes"]["sip.trunkID"].as_str(),
            participant["attributes"]["sip.ruleID"].as_str(),
        );
        let expected = (
            trunk["livekit_inbound_trunk_id"].as_str(),
            trunk["livekit_dispatch_rule_id"].as_str(),
        );
        assert_eq!(matched, expected, "{to}: {participant}");
        let bye = tokio::task::spawn_blocking(move || {
            let seq = uac.in_dialog("BYE", "", "");
            uac.response_to(seq, "BYE", Duration::from_secs(3)).status()
        })
        .await
        .unwrap();
        assert_eq!(bye, 200, "{to}");
    }

    // baresip hangs up as it quits; nothing outlives the calls.
    let baresip_log = tokio::task::spawn_blocking(move || {
        caller.heard(Duration::from_secs(10));
        caller.log()
    })
    .await
    .unwrap();
    // baresip saw the answer to its authenticated INVITE, and RTP from
    // switchboard.
    assert!(
        baresip_log.contains(&format!(
            "Call established: sip:+14155550100@{target};transport=udp"
        )) && baresip_log.contains("incoming rtp for 'audio' established"),
        "{baresip_log}"
    );
    let log = sb.log();
    tokio::task::spawn_blocking(move || assert_nothing_left(api, || log.clone()))
        .await
        .unwrap();
}

/// The (Request-URI user, To user, From user) of every INVITE in a SIPp
/// message log.
fn invites(messages: &str) -> Vec<(String, String, String)> {
    let user = |uri: &str| -> String {
        let at = uri.find("sip:").map(|i| &uri[i + 4..]).unwrap_or_default();
        at.split(['@', ';', '>'])
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let lines: Vec<&str> = messages.lines().map(str::trim).collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(ruri) = line.strip_prefix("INVITE ") else {
            continue;
        };
        let header = |name: &str| -> String {
            lines[i + 1..]
                .iter()
                .take_while(|l| !l.is_empty())
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim().eq_ignore_ascii_case(name).then(|| user(v))
                })
                .unwrap_or_default()
        };
        out.push((user(ruri), header("To"), header("From")));
    }
    out
}

/// One outbound case: the trunk's format and country and number, the
/// number dialled, and the users the callee must see.
struct Case {
    format: &'static str,
    country: &'static str,
    trunk_number: &'static str,
    call_to: &'static str,
    to_user: &'static str,
    from_user: &'static str,
}

/// Calls through `/v1` outbound trunks (default transport `auto`) reach
/// SIPp callees that challenge, verify the trunk's digest and answer; the
/// dialled number and the trunk's number arrive in the trunk's format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_calls_through_v1_trunks_write_numbers_in_the_trunks_format() {
    let cases = [
        Case {
            format: "+e164",
            country: "US",
            trunk_number: "+14155550100",
            call_to: "+12025550123",
            to_user: "+12025550123",
            from_user: "+14155550100",
        },
        Case {
            format: "e164",
            country: "US",
            trunk_number: "+14155550100",
            call_to: "+12025550123",
            to_user: "12025550123",
            from_user: "14155550100",
        },
        Case {
            format: "national",
            country: "US",
            trunk_number: "+14155550100",
            call_to: "+12025550123",
            to_user: "2025550123",
            from_user: "4155550100",
        },
        Case {
            format: "+e164",
            country: "GB",
            trunk_number: "+442079460001",
            call_to: "02079460000",
            to_user: "+442079460000",
            from_user: "+442079460001",
        },
        Case {
            format: "e164",
            country: "GB",
            trunk_number: "+442079460001",
            call_to: "+442079460000",
            to_user: "442079460000",
            from_user: "442079460001",
        },
        Case {
            format: "national",
            country: "GB",
            trunk_number: "+442079460001",
            call_to: "+442079460000",
            to_user: "02079460000",
            from_user: "02079460001",
        },
    ];
    let sb = start(&[]);
    let api = sb.api.unwrap();
    let mut callees = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let uas = SippUas::start("uas_auth_answer", SippTransport::Udp, 1);
        let trunk = create_trunk(
            api,
            json!({
                "name": format!("out {} {}", case.format, case.country),
                "kind": "byoc",
                "direction": "outbound",
                "sip_address": uas.addr.to_string(),
                "auth_username": CALLEE_USER,
                "auth_password": CALLEE_PASSWORD,
                "numbers": [case.trunk_number],
                "number_format": case.format,
                "destination_country": case.country,
            }),
        )
        .await;
        assert_eq!(trunk["transport"], "auto", "{trunk}");
        assert_eq!(trunk["number_format"], case.format, "{trunk}");
        let outbound = id(&trunk, "livekit_outbound_trunk_id");
        let room = format!("out-{i}");
        let caller = token(json!({"sip": {"call": true}}));
        let body = json!({
            "sip_trunk_id": outbound,
            "sip_call_to": case.call_to,
            "room_name": room,
            "participant_identity": "callee",
            "wait_until_answered": true,
        });
        // Every case rings (1.5 s) at the same time.
        let dial =
            tokio::spawn(
                async move { sip_service(api, "CreateSIPParticipant", &caller, body).await },
            );
        callees.push((uas, outbound, room, dial));
    }

    let mut failures = Vec::new();
    for ((mut uas, outbound, room, dial), case) in callees.into_iter().zip(&cases) {
        let what = format!("{} {} {:?}", case.format, case.country, case.call_to);
        let (status, info) = dial.await.unwrap();
        if status != 200 {
            failures.push(format!("{what}: CreateSIPParticipant {status} {info}"));
            continue;
        }
        let admin = admin_token(&room);
        let (_, p) = room_service(
            api,
            "GetParticipant",
            &admin,
            json!({"room": room, "identity": "callee"}),
        )
        .await;
        let attributes = &p["attributes"];
        let shown = (
            attributes["sip.callStatus"].as_str(),
            attributes["sip.trunkID"].as_str(),
            attributes["sip.phoneNumber"].as_str(),
            attributes["sip.trunkPhoneNumber"].as_str(),
        );
        let expected = (
            Some("active"),
            Some(outbound.as_str()),
            Some(case.call_to),
            Some(case.trunk_number),
        );
        if shown != expected {
            failures.push(format!(
                "{what}: attributes {shown:?}, expected {expected:?}"
            ));
        }
        // Hanging up sends the BYE the scenario waits for.
        let (status, removed) = room_service(
            api,
            "RemoveParticipant",
            &admin,
            json!({"room": room, "identity": "callee"}),
        )
        .await;
        assert_eq!(status, 200, "{removed}");
        let finished = tokio::task::spawn_blocking(move || {
            let result = uas.finish(Duration::from_secs(10));
            (result, uas.log("_messages.log"))
        })
        .await
        .unwrap();
        let (result, messages) = finished;
        if let Err(e) = result {
            failures.push(format!("{what}: {e}"));
            continue;
        }
        // The first INVITE and its authenticated retry.
        let seen = invites(&messages);
        let want = (
            case.to_user.to_owned(),
            case.to_user.to_owned(),
            case.from_user.to_owned(),
        );
        if seen != vec![want.clone(), want.clone()] {
            failures.push(format!(
                "{what}: SIPp got INVITEs with (Request-URI, To, From) users {seen:?}, expected {want:?} twice"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n--- switchboard log\n{}",
        failures.join("\n"),
        sb.log()
    );
    let log = sb.log();
    tokio::task::spawn_blocking(move || assert_nothing_left(api, || log.clone()))
        .await
        .unwrap();
}

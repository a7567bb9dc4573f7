//! Outbound calls (CreateSIPParticipant) through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::api::{admin_token, room_service, sip_service, token, KEY_ENV};
use common::ws::{amplitude, play, Client};
use common::Switchboard;
use serde_json::{json, Value};
use std::time::Duration;

fn start(env: &[(&str, &str)]) -> Switchboard {
    let mut all = KEY_ENV.to_vec();
    all.push(("SWITCHBOARD_MEDIA__BIND", "127.0.0.1"));
    all.extend_from_slice(env);
    Switchboard::start(&all)
}

fn admin() -> String {
    token(json!({"sip": {"admin": true}}))
}

fn caller() -> String {
    token(json!({"sip": {"call": true}}))
}

async fn create(sb: &Switchboard, method: &str, body: Value) -> Value {
    let (status, value) = sip_service(sb.api.unwrap(), method, &admin(), body).await;
    assert_eq!(status, 200, "{method}: {value}");
    value
}

/// An inbound trunk for +15550100 from 127.0.0.1 into room `room`, and an
/// outbound trunk (from +15550999) to `target`: the outbound trunk.
async fn routes_into(sb: &Switchboard, room: &str, target: std::net::SocketAddr) -> Value {
    let inbound = create(
        sb,
        "CreateSIPInboundTrunk",
        json!({"trunk": {"name": "in", "numbers": ["+15550100"], "allowed_addresses": ["127.0.0.1"]}}),
    )
    .await;
    create(
        sb,
        "CreateSIPDispatchRule",
        json!({"dispatch_rule": {"name": "in", "trunk_ids": [inbound["sip_trunk_id"]], "rule": {"dispatch_rule_direct": {"room_name": room}}}}),
    )
    .await;
    create(
        sb,
        "CreateSIPOutboundTrunk",
        json!({"trunk": {"name": "out", "address": target.to_string(), "numbers": ["+15550999"]}}),
    )
    .await
}

/// CreateSIPParticipant asked of `api`: `phone` into `caller-room`, to
/// +15550100 through `outbound`, waiting for the answer.
async fn dial_phone_into_caller_room(api: std::net::SocketAddr, outbound: &Value) -> (u16, Value) {
    sip_service(
        api,
        "CreateSIPParticipant",
        &caller(),
        json!({
            "sip_trunk_id": outbound["sip_trunk_id"],
            "sip_call_to": "+15550100",
            "room_name": "caller-room",
            "participant_identity": "phone",
            "wait_until_answered": true,
        }),
    )
    .await
}

/// What a 16 kHz client heard in its last two seconds, after `start`.
fn last_two_seconds(client: &Client, start: usize) -> Vec<i16> {
    client.heard[start.max(client.heard.len().saturating_sub(16000 * 2))..].to_vec()
}

/// switchboard dials its own inbound trunk: the call leaves one room as
/// an outbound call and arrives in another as an inbound one; agents in
/// both rooms hear each other, checked by content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_calls_itself_and_audio_crosses_both_ways() {
    let sb = start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    let api = sb.api.unwrap();
    let sip = sb.udp.unwrap();
    let outbound = routes_into(&sb, "callee-room", sip).await;
    common::api::settle_routing(api).await;
    let mut near = Client::join(api, "caller-room", "near", 16000).await;
    let mut far = Client::join(api, "callee-room", "far", 16000).await;

    let (status, info) = dial_phone_into_caller_room(api, &outbound).await;
    assert_eq!(status, 200, "{info}\n{}", sb.log());
    assert_eq!(info["participant_identity"], "phone");
    assert_eq!(info["room_name"], "caller-room");
    assert!(
        info["sip_call_id"].as_str().unwrap().starts_with("SCL_"),
        "{info}"
    );
    assert!(
        info["participant_id"].as_str().unwrap().starts_with("PA_"),
        "{info}"
    );

    let start_near = near.heard.len();
    let start_far = far.heard.len();
    play(
        &mut [(&mut near, Some(600.0)), (&mut far, Some(1000.0))],
        Duration::from_secs(3),
    )
    .await;
    let near_heard = last_two_seconds(&near, start_near);
    let far_heard = last_two_seconds(&far, start_far);
    let failures: Vec<String> = [
        (
            "near hears far's 1000 Hz",
            amplitude(&near_heard, 16000, 1000.0) > 500.0,
        ),
        (
            "near does not hear itself",
            amplitude(&near_heard, 16000, 600.0) < 150.0,
        ),
        (
            "far hears near's 600 Hz",
            amplitude(&far_heard, 16000, 600.0) > 500.0,
        ),
        (
            "far does not hear itself",
            amplitude(&far_heard, 16000, 1000.0) < 150.0,
        ),
    ]
    .iter()
    .filter(|(_, ok)| !ok)
    .map(|(what, _)| what.to_string())
    .collect();
    assert!(failures.is_empty(), "{failures:?}\n{}", sb.log());

    // The callee participant went dialing -> active; the far side sees the
    // inbound caller from the outbound trunk's number.
    let joined = near
        .messages
        .iter()
        .find(|m| m["type"] == "participant_joined" && m["participant"]["identity"] == "phone")
        .cloned()
        .unwrap();
    assert_eq!(
        joined["participant"]["attributes"]["sip.callStatus"], "dialing",
        "{joined}"
    );
    assert_eq!(
        joined["participant"]["attributes"]["sip.phoneNumber"], "+15550100",
        "{joined}"
    );
    assert_eq!(
        joined["participant"]["attributes"]["sip.trunkPhoneNumber"], "+15550999",
        "{joined}"
    );
    let statuses: Vec<&str> = near
        .messages
        .iter()
        .filter(|m| m["type"] == "participant_updated" && m["participant"]["identity"] == "phone")
        .filter_map(|m| m["participant"]["attributes"]["sip.callStatus"].as_str())
        .collect();
    assert!(statuses.contains(&"active"), "{statuses:?}");
    // The 200 OK's tags as attributes: the callee's To tag (here the
    // inbound leg's call ID) and our Call-ID.
    let answered = near
        .messages
        .iter()
        .rev()
        .find(|m| m["type"] == "participant_updated" && m["participant"]["identity"] == "phone")
        .unwrap();
    let attributes = &answered["participant"]["attributes"];
    assert!(
        attributes["sip.callTag"]
            .as_str()
            .unwrap_or_default()
            .starts_with("SCL_"),
        "{answered}"
    );
    assert!(
        attributes["sip.callIDFull"]
            .as_str()
            .unwrap_or_default()
            .ends_with("@switchboard"),
        "{answered}"
    );
    assert!(
        far.messages
            .iter()
            .any(|m| m["type"] == "participant_joined"
                && m["participant"]["identity"] == "sip_+15550999"),
        "{:?}",
        far.messages
    );

    // Removing the outbound participant hangs up both legs.
    remove_the_phone(api, &mut far).await;
    drop(near);
    drop(far);
    nothing_left(&sb).await;
}

/// Replicas sharing rooms (issue 15): CreateSIPParticipant ordered on
/// replica B into a room replica A serves. B's outbound call is bridged
/// into A's room (its uplink); it dials A's inbound trunk, whose call lands
/// in another room A serves. Agents on A in both rooms hear each other
/// through B; RemoveParticipant asked of B (forwarded to A) hangs up both
/// legs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_call_ordered_on_another_replica_joins_the_room_its_owner_serves() {
    let redis = common::redis::Redis::start();
    let url = redis.url();
    let env = [
        ("SWITCHBOARD_CALLS__ANSWER", "immediate"),
        ("SWITCHBOARD_STORE__URL", url.as_str()),
    ];
    let a = start(&env);
    let b = start(&env);
    let (api_a, api_b) = (a.api.unwrap(), b.api.unwrap());
    let outbound = routes_into(&a, "callee-room", a.udp.unwrap()).await;
    common::api::settle_routing(api_a).await;
    common::api::settle_routing(api_b).await;
    let mut near = Client::join(api_a, "caller-room", "near", 16000).await;
    let mut far = Client::join(api_a, "callee-room", "far", 16000).await;
    let (status, info) = dial_phone_into_caller_room(api_b, &outbound).await;
    assert_eq!(status, 200, "{info}\n{}", b.log());
    assert!(b.log().contains("the room lives elsewhere"), "{}", b.log());
    // The callee's identity joins A's room through B's uplink.
    let joined = near.expect("participant_joined").await;
    assert_eq!(joined["participant"]["identity"], "phone", "{joined}");
    let (start_near, start_far) = (near.heard.len(), far.heard.len());
    play(
        &mut [(&mut near, Some(600.0)), (&mut far, Some(1000.0))],
        Duration::from_secs(4),
    )
    .await;
    let near_hears = amplitude(&last_two_seconds(&near, start_near), 16000, 1000.0);
    let far_hears = amplitude(&last_two_seconds(&far, start_far), 16000, 600.0);
    assert!(
        near_hears > 500.0 && far_hears > 500.0,
        "near hears far at {near_hears:.0}, far hears near at {far_hears:.0}\n{}",
        b.log()
    );
    remove_the_phone(api_b, &mut far).await;
    drop(near);
    drop(far);
    for sb in [&a, &b] {
        nothing_left(sb).await;
    }
}

/// The SIP messages of call `call_id` as its trace shows them: `-> INVITE`
/// (sent), `<- 200` (received)…
fn sent_and_received(sb: &Switchboard, call_id: &str) -> Vec<String> {
    let trace = common::routes::cli(sb, &["sip", "calls", "trace", call_id]);
    let lines: Vec<&str> = trace.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].contains(" bytes)"))
        .filter_map(|w| {
            let arrow = if w[0].contains(" -> ") {
                "->"
            } else if w[0].contains(" <- ") {
                "<-"
            } else {
                return None;
            };
            let start = w[1].strip_prefix("SIP/2.0 ").unwrap_or(w[1]);
            Some(format!("{arrow} {}", start.split(' ').next().unwrap_or("")))
        })
        .collect()
}

fn count(ladder: &[String], step: &str) -> usize {
    ladder.iter().filter(|l| *l == step).count()
}

/// RemoveParticipant of the outbound callee ("phone" in caller-room) asked
/// of `api`: both legs hang up, so the far leg's caller leaves its room.
async fn remove_the_phone(api: std::net::SocketAddr, far: &mut Client) {
    let removed = room_service(
        api,
        "RemoveParticipant",
        &admin_token("caller-room"),
        json!({"room": "caller-room", "identity": "phone"}),
    )
    .await;
    assert_eq!(removed.0, 200, "{}", removed.1);
    let left = far.expect("participant_left").await;
    assert_eq!(left["identity"], "sip_+15550999", "{left}");
}

/// Nothing of any call is left on `sb`.
async fn nothing_left(sb: &Switchboard) {
    let api = sb.api.unwrap();
    let log = sb.log();
    tokio::task::spawn_blocking(move || common::api::assert_nothing_left(api, || log.clone()))
        .await
        .unwrap();
}

/// Session timers both ways: switchboard's outbound leg asks for a short
/// Session-Expires, its inbound leg accepts it with the caller as the
/// refresher, and the re-INVITE refreshes keep the call up well past the
/// interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_timer_refreshes_keep_a_call_up_past_its_interval() {
    let sb = start(&[
        ("SWITCHBOARD_CALLS__ANSWER", "immediate"),
        ("SWITCHBOARD_CALLS__SESSION_EXPIRES_SECS", "2"),
        ("SWITCHBOARD_CALLS__MIN_SESSION_EXPIRES_SECS", "2"),
    ]);
    let api = sb.api.unwrap();
    let sip = sb.udp.unwrap();
    let outbound = routes_into(&sb, "far", sip).await;
    common::api::settle_routing(api).await;
    let mut near = Client::join(api, "near", "near", 16000).await;
    let (status, info) = sip_service(
        api,
        "CreateSIPParticipant",
        &caller(),
        json!({"sip_trunk_id": outbound["sip_trunk_id"], "sip_call_to": "+15550100", "room_name": "near", "participant_identity": "phone", "wait_until_answered": true}),
    )
    .await;
    assert_eq!(status, 200, "{info}\n{}", sb.log());
    // Three intervals: without refreshes the inbound leg would have hung up.
    play(&mut [(&mut near, None)], Duration::from_secs(6)).await;
    // On the wire: the outbound leg sent re-INVITEs and ACKed their 2xx;
    // the inbound leg (the same switchboard) received them.
    let outbound_leg = info["sip_call_id"].as_str().unwrap().to_string();
    let ladder = sent_and_received(&sb, &outbound_leg);
    assert!(
        count(&ladder, "-> INVITE") >= 4 && count(&ladder, "-> ACK") >= 4,
        "an INVITE and at least 3 refreshes, each answered 2xx: {ladder:?}"
    );
    let live = common::routes::cli(&sb, &["sip", "calls", "list", "--live", "--json"]);
    let live: Value = serde_json::from_str(&live).unwrap();
    let inbound_leg = live["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["info"]["call_direction"] == "SCD_INBOUND")
        .map(|c| c["info"]["call_id"].as_str().unwrap().to_string())
        .expect("the inbound leg is up");
    let ladder = sent_and_received(&sb, &inbound_leg);
    assert!(count(&ladder, "<- INVITE") >= 4, "{ladder:?}");
    assert!(
        !near
            .messages
            .iter()
            .any(|m| m["type"] == "participant_left"),
        "the call is still up: {:?}",
        near.messages
    );
    // Deleting the room hangs up both legs.
    let deleted = room_service(
        api,
        "DeleteRoom",
        &token(json!({"video": {"roomCreate": true}})),
        json!({"room": "near"}),
    )
    .await;
    assert_eq!(deleted.0, 200, "{}", deleted.1);
    drop(near);
    nothing_left(&sb).await;
}

//! Rooms end to end against the real binary: WebSocket participants
//! (`GET /rooms/<room>/ws`) hearing each other, DTMF and attributes between
//! them, refused joins, bad input; room administration over Twirp
//! `livekit.RoomService` with raw JSON; `/debug/state` back to zero;
//! README's Python example run as written; and a phone call (the raw-bytes
//! caller of tests/common/uac.rs) answered by a WebSocket agent, trading
//! DTMF with it and hung up by RemoveParticipant.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::api::*;
use common::uac::{received_telephone_events, sdp_rtp_addr, send_telephone_event, Uac};
use common::ws::*;
use common::{repo, Switchboard};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

fn start() -> Switchboard {
    start_with(&[])
}

fn start_with(env: &[(&str, &str)]) -> Switchboard {
    let mut all = vec![("LIVEKIT_API_KEY", KEY), ("LIVEKIT_API_SECRET", SECRET)];
    all.extend_from_slice(env);
    Switchboard::start(&all)
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_participants_hear_each_other_at_their_own_rates_but_not_themselves() {
    let sb = start();
    let api = sb.api.unwrap();
    let mut alice = Client::join(api, "tones", "alice", 48_000).await;
    let mut bob = Client::join(api, "tones", "bob", 16_000).await;
    assert_eq!(alice.joined["sample_rate"], 48_000);
    assert_eq!(bob.joined["sample_rate"], 16_000);
    assert_eq!(bob.joined["participants"][0]["identity"], "alice");
    let joined = alice.expect("participant_joined").await;
    assert_eq!(joined["participant"]["identity"], "bob");
    let (alice_frames, bob_frames) = (alice.frames, bob.frames);
    let started = Instant::now();
    play(
        &mut [(&mut alice, Some(440.0)), (&mut bob, Some(1000.0))],
        Duration::from_millis(2500),
    )
    .await;
    let elapsed_frames = started.elapsed().as_millis() as f64 / 20.0;

    let a = last_second(&alice);
    let b = last_second(&bob);
    let log = || sb.log();
    // Each hears the other's tone loud (sent at 8000) and its own not at all.
    assert!(
        amplitude(a, 48_000, 1000.0) > 3000.0,
        "alice hears bob: {}\n{}",
        amplitude(a, 48_000, 1000.0),
        log()
    );
    assert!(
        amplitude(a, 48_000, 440.0) < 100.0,
        "alice does not hear herself: {}",
        amplitude(a, 48_000, 440.0)
    );
    assert!(
        amplitude(b, 16_000, 440.0) > 3000.0,
        "bob hears alice: {}\n{}",
        amplitude(b, 16_000, 440.0),
        log()
    );
    assert!(
        amplitude(b, 16_000, 1000.0) < 100.0,
        "bob does not hear himself: {}",
        amplitude(b, 16_000, 1000.0)
    );
    // One clock for both, and no faster than one frame per 20 ms. A loaded
    // machine can only make frames late, so the lower bound is loose; the
    // two clients' counts must agree whatever the load.
    let (a_frames, b_frames) = (alice.frames - alice_frames, bob.frames - bob_frames);
    let (a_frames, b_frames) = (a_frames as f64, b_frames as f64);
    assert!(
        (a_frames - b_frames).abs() <= 0.1 * a_frames.max(b_frames) + 3.0,
        "alice got {a_frames} frames and bob {b_frames} from the same room clock"
    );
    for (name, frames) in [("alice", a_frames), ("bob", b_frames)] {
        assert!(
            frames <= elapsed_frames * 1.1 + 3.0 && frames >= elapsed_frames * 0.5,
            "{name} got {frames} frames in {elapsed_frames} frame times"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_attributes_and_metadata_from_one_participant_reach_the_other() {
    let sb = start();
    let api = sb.api.unwrap();
    let mut alice = Client::join(api, "keys", "alice", 8_000).await;
    let me = &alice.joined["participant"];
    assert_eq!(me["identity"], "alice");
    assert_eq!(me["name"], "alice (name)");
    assert_eq!(me["metadata"], "meta of alice");
    assert_eq!(me["attributes"], json!({"team": "blue"}));
    assert_eq!(me["kind"], "websocket");
    assert_eq!(me["publishes_audio"], true);
    assert!(me["sid"].as_str().unwrap().starts_with("PA_"));
    assert!(alice.joined["room_sid"]
        .as_str()
        .unwrap()
        .starts_with("RM_"));
    let mut bob = Client::join(api, "keys", "bob", 8_000).await;
    alice.expect("participant_joined").await;

    alice
        .send_json(json!({"type": "dtmf", "digits": "12#"}))
        .await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = bob.expect("dtmf").await;
        assert_eq!(m["from"], "alice", "{m}");
        got.push((
            m["code"].as_u64().unwrap(),
            m["digit"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(
        got,
        vec![(1, "1".into()), (2, "2".into()), (11, "#".into())]
    );

    alice
        .send_json(json!({"type": "set_attributes", "attributes": {"role": "agent", "team": ""}}))
        .await;
    let m = bob.expect("participant_updated").await;
    assert_eq!(m["participant"]["identity"], "alice");
    assert_eq!(
        m["participant"]["attributes"],
        json!({"role": "agent"}),
        "{m}"
    );
    alice
        .send_json(json!({"type": "set_metadata", "metadata": "busy"}))
        .await;
    let m = bob.expect("participant_updated").await;
    assert_eq!(m["participant"]["metadata"], "busy", "{m}");

    // DTMF to named destinations only.
    let mut carol = Client::join(api, "keys", "carol", 8_000).await;
    bob.expect("participant_joined").await;
    alice
        .send_json(json!({"type": "dtmf", "digits": "9", "destinations": ["carol"]}))
        .await;
    let m = carol.expect("dtmf").await;
    assert_eq!(m["digit"], "9");

    bob.send_json(json!({"type": "leave"})).await;
    let m = bob.expect("disconnected").await;
    assert_eq!(m["reason"], "client_initiated");
    let left = alice.expect("participant_left").await;
    assert_eq!(
        left,
        json!({"type": "participant_left", "identity": "bob", "reason": "client_initiated"})
    );
    // Bob never got the "9" meant for Carol: only the first three digits.
    assert_eq!(
        bob.messages.iter().filter(|m| m["type"] == "dtmf").count(),
        3,
        "{:?}",
        bob.messages
    );
    drop(sb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_without_the_right_token_or_query_are_refused_before_the_upgrade() {
    let sb = start_with(&[("SWITCHBOARD_API__WEBSOCKET__MAX_PARTICIPANTS", "1")]);
    let api = sb.api.unwrap();
    let good = join_token("r1", "alice");
    assert_eq!(refused(api, "r1", None, "").await, 401, "no token");
    let forged = jwt(
        "not-the-secret",
        &json!({"iss": KEY, "sub": "a", "exp": now() + 60, "video": {"roomJoin": true, "room": "r1"}}),
    );
    assert_eq!(
        refused(api, "r1", Some(&forged), "").await,
        401,
        "bad signature"
    );
    assert_eq!(
        refused(api, "r2", Some(&good), "").await,
        403,
        "another room"
    );
    let no_join = token(json!({"sub": "a", "video": {"room": "r1", "roomAdmin": true}}));
    assert_eq!(
        refused(api, "r1", Some(&no_join), "").await,
        403,
        "no roomJoin"
    );
    let no_identity = token(json!({"video": {"roomJoin": true, "room": "r1"}}));
    assert_eq!(
        refused(api, "r1", Some(&no_identity), "").await,
        403,
        "no identity"
    );
    assert_eq!(
        refused(api, "r1", Some(&good), "?rate=44100").await,
        400,
        "odd rate"
    );
    assert_eq!(
        refused(api, "r1", Some(&good), "?audio=maybe").await,
        400,
        "odd audio"
    );
    // The body says why, as a Twirp error.
    let auth = format!("Bearer {}", join_token("r2", "x"));
    let (status, body) = http(
        api,
        "GET",
        "/rooms/r1/ws",
        &[
            ("Authorization", &auth),
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        b"",
    )
    .await;
    assert_eq!(status, 403);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "permission_denied");
    assert_eq!(
        body["msg"],
        r#"the token grants roomJoin for room "r2", not "r1""#
    );
    assert_eq!(
        debug_state(api).await["rooms"],
        0,
        "no refused join made a room"
    );

    // The token in the query string works too; the limit of one session holds.
    let url_token = format!("?access_token={good}");
    let mut ws = connect(api, "r1", None, &url_token).await.unwrap();
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains(r#""type":"joined""#));
    let bob = join_token("r1", "bob");
    assert_eq!(
        refused(api, "r1", Some(&bob), "").await,
        429,
        "one session at most"
    );
    drop(ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_and_messages_get_error_messages_and_the_session_goes_on() {
    let sb = start_with(&[("SWITCHBOARD_API__WEBSOCKET__MAX_MESSAGE_BYTES", "4096")]);
    let api = sb.api.unwrap();
    let mut alice = Client::join(api, "bad", "alice", 16_000).await;
    alice.send_binary(vec![0; 100]).await;
    let m = alice.expect("error").await;
    assert_eq!(
        m["message"],
        "binary frame of 100 bytes; expected 640 (20 ms of 16-bit little-endian mono PCM at 16000 Hz)"
    );
    alice.ws.send(Message::Text("hello".into())).await.unwrap();
    let m = alice.expect("error").await;
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid message"),
        "{m}"
    );
    alice.send_json(json!({"type": "dance"})).await;
    let m = alice.expect("error").await;
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains("unknown variant `dance`"),
        "{m}"
    );
    alice
        .send_json(json!({"type": "dtmf", "digits": "1x"}))
        .await;
    let m = alice.expect("error").await;
    assert_eq!(
        m["message"],
        "dtmf refused: 'x' is not a DTMF digit (0-9, *, #, A-D)"
    );

    // A listener may not send audio.
    let token = join_token("bad", "ear");
    let mut ear = Client::join_with(api, "bad", &token, 8_000, "&audio=false").await;
    assert_eq!(ear.joined["participant"]["publishes_audio"], false);
    ear.send_binary(vec![0; 320]).await;
    let m = ear.expect("error").await;
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains("does not publish audio"),
        "{m}"
    );
    // A token without canUpdateOwnMetadata may not change attributes.
    let plain = token_without_metadata_grant("bad", "plain");
    let mut plain = Client::join_with(api, "bad", &plain, 8_000, "").await;
    plain
        .send_json(json!({"type": "set_attributes", "attributes": {"a": "b"}}))
        .await;
    let m = plain.expect("error").await;
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains("canUpdateOwnMetadata"),
        "{m}"
    );

    // Still in the room and still clocked.
    let frames = alice.frames;
    play(&mut [(&mut alice, None)], Duration::from_millis(300)).await;
    assert!(alice.frames > frames + 5, "frames keep coming");
    let joined: Vec<&Value> = alice
        .messages
        .iter()
        .filter(|m| m["type"] == "participant_joined")
        .map(|m| &m["participant"]["identity"])
        .collect();
    assert_eq!(joined, vec!["ear", "plain"], "events keep coming");

    // A message over max_message_bytes ends the session with 1009, and the
    // room sees the participant leave.
    alice.send_binary(vec![0; 8000]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let close = loop {
        match tokio::time::timeout_at(deadline, alice.ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let close = close.expect("a close code");
    assert_eq!(close.code, CloseCode::Size);
    assert_eq!(close.reason.as_str(), "message over 4096 bytes");
    let left = ear.expect("participant_left").await;
    assert_eq!(left["identity"], "alice");
    assert!(!sb.log().contains("panicked"), "{}", sb.log());
}

fn token_without_metadata_grant(room: &str, identity: &str) -> String {
    token(json!({"sub": identity, "video": {"roomJoin": true, "room": room}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_service_over_twirp_json_manages_rooms_and_removes_participants() {
    let sb = start();
    let api = sb.api.unwrap();
    let create = token(json!({"video": {"roomCreate": true}}));
    let list = token(json!({"video": {"roomList": true}}));
    let admin = admin_token("lobby");

    // Grants first, as LiveKit.
    assert_twirp(
        &room_service(api, "CreateRoom", &list, json!({"name": "lobby"})).await,
        401,
        "unauthenticated",
        "permissions denied",
    );
    assert_twirp(
        &room_service(api, "ListRooms", &create, json!({})).await,
        401,
        "unauthenticated",
        "permissions denied",
    );
    assert_twirp(
        &room_service(
            api,
            "ListParticipants",
            &admin_token("other"),
            json!({"room": "lobby"}),
        )
        .await,
        401,
        "unauthenticated",
        "permissions denied",
    );
    assert_twirp(
        &room_service(
            api,
            "RemoveParticipant",
            &admin_token("other"),
            json!({"room": "lobby", "identity": "x"}),
        )
        .await,
        401,
        "unauthenticated",
        "permissions denied",
    );

    let (status, room) = room_service(
        api,
        "CreateRoom",
        &create,
        json!({"name": "lobby", "metadata": "m1", "max_participants": 3, "empty_timeout": 60}),
    )
    .await;
    assert_eq!(status, 200, "{room}");
    assert_eq!(room["name"], "lobby");
    assert_eq!(room["metadata"], "m1");
    assert_eq!(room["max_participants"], 3);
    assert_eq!(room["empty_timeout"], 60);
    assert_eq!(room["num_participants"], 0);
    let sid = room["sid"].as_str().unwrap().to_string();
    assert!(sid.starts_with("RM_"));
    // Again: the same room, as LiveKit answers.
    let (_, again) = room_service(api, "CreateRoom", &create, json!({"name": "lobby"})).await;
    assert_eq!(again["sid"], sid.as_str());
    assert_twirp(
        &room_service(api, "CreateRoom", &create, json!({})).await,
        400,
        "invalid_argument",
        "missing room name",
    );

    let mut alice = Client::join(api, "lobby", "alice", 8_000).await;
    assert_eq!(
        alice.joined["room_sid"],
        sid.as_str(),
        "joins the created room"
    );
    let mut bob = Client::join(api, "lobby", "bob", 8_000).await;
    let (status, rooms) =
        room_service(api, "ListRooms", &list, json!({"names": ["lobby", "nope"]})).await;
    assert_eq!(status, 200);
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 1, "{rooms}");
    assert_eq!(rooms["rooms"][0]["num_participants"], 2);
    assert_eq!(rooms["rooms"][0]["num_publishers"], 2);

    let (status, ps) =
        room_service(api, "ListParticipants", &admin, json!({"room": "lobby"})).await;
    assert_eq!(status, 200, "{ps}");
    let ps = ps["participants"].as_array().unwrap().clone();
    let identities: Vec<&str> = ps.iter().map(|p| p["identity"].as_str().unwrap()).collect();
    assert_eq!(identities, vec!["alice", "bob"]);
    assert_eq!(ps[0]["kind"], "STANDARD");
    assert_eq!(ps[0]["state"], "ACTIVE");
    assert_eq!(ps[0]["attributes"], json!({"team": "blue"}));
    assert_eq!(ps[0]["tracks"][0]["type"], "AUDIO");
    let (_, none) = room_service(
        api,
        "ListParticipants",
        &admin_token("empty"),
        json!({"room": "empty"}),
    )
    .await;
    assert_eq!(none, json!({"participants": []}));

    let (status, p) = room_service(
        api,
        "GetParticipant",
        &admin,
        json!({"room": "lobby", "identity": "bob"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(p["name"], "bob (name)");
    assert_twirp(
        &room_service(
            api,
            "GetParticipant",
            &admin,
            json!({"room": "lobby", "identity": "zed"}),
        )
        .await,
        404,
        "not_found",
        "participant not found",
    );

    // UpdateParticipant: the participant itself and the others see it.
    let (status, p) = room_service(api, "UpdateParticipant", &admin, json!({"room": "lobby", "identity": "bob", "metadata": "vip", "attributes": {"team": "", "level": "3"}})).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["metadata"], "vip");
    assert_eq!(p["attributes"], json!({"level": "3"}));
    let seen = bob.expect("participant_updated").await;
    assert_eq!(seen["participant"]["attributes"], json!({"level": "3"}));
    let seen = alice.expect("participant_updated").await;
    assert_eq!(seen["participant"]["metadata"], "vip");

    let unimplemented = room_service(
        api,
        "UpdateSubscriptions",
        &admin,
        json!({"room": "lobby", "identity": "bob", "track_sids": ["TR_x"], "subscribe": true}),
    )
    .await;
    assert_eq!(unimplemented.0, 501);
    assert_eq!(unimplemented.1["code"], "unimplemented");
    assert!(unimplemented.1["msg"]
        .as_str()
        .unwrap()
        .starts_with("UpdateSubscriptions is not implemented"));
    // MutePublishedTrack of a track that is not there.
    let missing = room_service(
        api,
        "MutePublishedTrack",
        &admin,
        json!({"room": "lobby", "identity": "bob", "track_sid": "TR_x", "muted": true}),
    )
    .await;
    assert_eq!(missing.0, 404, "{}", missing.1);
    // SendData is served (WebRTC clients get it; WebSocket members have no
    // form for it).
    let sent = room_service(
        api,
        "SendData",
        &admin,
        json!({"room": "lobby", "data": "eA=="}),
    )
    .await;
    assert_eq!(sent.0, 200, "{}", sent.1);

    // RemoveParticipant: bob is told, then the socket closes; alice sees him leave.
    let (status, body) = room_service(
        api,
        "RemoveParticipant",
        &admin,
        json!({"room": "lobby", "identity": "bob"}),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    let m = bob.expect("disconnected").await;
    assert_eq!(m["reason"], "participant_removed");
    let close = tokio::time::timeout(Duration::from_secs(5), bob.ws.next())
        .await
        .unwrap();
    match close {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
        other => {
            // Frames already in flight may come first; then the close.
            let mut rest = vec![other];
            while let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_secs(5), bob.ws.next()).await
            {
                rest.push(Some(m));
            }
            assert!(
                rest.iter().any(|m| matches!(m, Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode::Normal)),
                "{rest:?}"
            );
        }
    }
    let left = alice.expect("participant_left").await;
    assert_eq!(left["reason"], "participant_removed");
    assert_twirp(
        &room_service(
            api,
            "RemoveParticipant",
            &admin,
            json!({"room": "lobby", "identity": "bob"}),
        )
        .await,
        404,
        "not_found",
        "participant not found",
    );

    // DeleteRoom: everyone left is disconnected.
    let (status, body) = room_service(api, "DeleteRoom", &create, json!({"room": "lobby"})).await;
    assert_eq!((status, body), (200, json!({})));
    let m = alice.expect("disconnected").await;
    assert_eq!(m["reason"], "room_deleted");
    assert_twirp(
        &room_service(api, "DeleteRoom", &create, json!({"room": "lobby"})).await,
        404,
        "not_found",
        "room not found",
    );
    let (_, rooms) = room_service(api, "ListRooms", &list, json!({})).await;
    assert_eq!(rooms, json!({"rooms": []}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_state_goes_back_to_zero_after_participants_leave() {
    let sb = start();
    let api = sb.api.unwrap();
    let (status, _) = http(api, "GET", "/debug/state", &[], b"").await;
    assert_eq!(status, 401, "needs a token");
    let auth = format!("Bearer {}", admin_token("x"));
    let (status, _) = http(api, "GET", "/debug/state", &[("Authorization", &auth)], b"").await;
    assert_eq!(status, 401, "needs sip.admin");

    let idle = debug_state(api).await;
    assert_eq!(
        idle["store_version"], idle["routing_version"],
        "routing is up to date: {idle}"
    );
    let idle = counts_of(idle);
    assert_eq!(
        idle,
        json!({"calls_active": 0, "call_tasks": 0, "rtp_ports_active": 0, "rooms": 0,
               "participants": 0, "websocket_sessions": 0, "sip_transactions": [0, 0]})
    );
    let mut alice = Client::join(api, "count", "alice", 8_000).await;
    let bob = Client::join(api, "count", "bob", 8_000).await;
    let carol = Client::join(api, "other", "carol", 8_000).await;
    let busy = debug_state(api).await;
    assert_eq!(
        (
            busy["rooms"].clone(),
            busy["participants"].clone(),
            busy["websocket_sessions"].clone()
        ),
        (json!(2), json!(3), json!(3)),
        "{busy}"
    );

    alice.send_json(json!({"type": "leave"})).await;
    alice.expect("disconnected").await;
    drop(alice);
    drop(bob); // closed without a word
    drop(carol);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = counts_of(debug_state(api).await);
        if state == idle {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not back to zero: {state}\n{}",
            sb.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// README's Python example, cut from README.md and run as written, against
/// a Rust participant: the example hears nothing from itself, prints what
/// it is told (our DTMF), and is heard (its 440 Hz tone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_python_example_joins_is_heard_and_gets_dtmf() {
    let sb = start();
    let api = sb.api.unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## Rooms and WebSocket participants")
        .nth(1)
        .expect("README has the section");
    let code = section
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section has a python example");
    let script = sb.dir().join("example.py");
    std::fs::write(&script, code).unwrap();

    let mut agent = Client::join(api, "support", "agent", 16_000).await;
    let example_token = token(json!({
        "sub": "caller-1",
        "video": {"roomJoin": true, "room": "support"},
    }));
    let output = sb.dir().join("example.out");
    let out = std::fs::File::create(&output).unwrap();
    let mut child = Command::new("python3")
        .arg(&script)
        .env("SWITCHBOARD_URL", format!("ws://{api}"))
        .env("ROOM", "support")
        .env("TOKEN", &example_token)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e})"));
    let joined = agent.expect("participant_joined").await;
    assert_eq!(joined["participant"]["identity"], "caller-1");
    // Listen to the example's tone, then press a key for it.
    play(&mut [(&mut agent, None)], Duration::from_millis(1500)).await;
    let heard = amplitude(last_second(&agent), 16_000, 440.0);
    agent
        .send_json(json!({"type": "dtmf", "digits": "5"}))
        .await;
    let left = agent.expect("participant_left").await;
    assert_eq!(left["identity"], "caller-1");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let printed = std::fs::read_to_string(&output).unwrap();
    assert!(
        status.success(),
        "the example failed: {status}\n{printed}\n{}",
        sb.log()
    );
    assert!(
        heard > 1000.0,
        "the example's 440 Hz tone was heard at {heard}\n{printed}"
    );
    assert!(
        printed.contains("joined room support as caller-1"),
        "{printed}"
    );
    assert!(printed.contains("DTMF 5 from agent"), "{printed}");
}

// ---------------------------------------------------------------- calls

/// A Twirp JSON call to livekit.SIP with an admin token.
async fn sip_service(addr: SocketAddr, method: &str, body: Value) -> Value {
    let auth = format!("Bearer {}", token(json!({"sip": {"admin": true}})));
    let (status, text) = http(
        addr,
        "POST",
        &format!("/twirp/livekit.SIP/{method}"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{method}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Runs blocking caller steps off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// An inbound call rings while only a listener is in the room, is answered
/// when a WebSocket participant who sends audio joins, trades DTMF with it
/// both ways, and is hung up with BYE by RemoveParticipant; then every
/// count of /debug/state is back to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_agent_answers_a_call_trades_dtmf_and_removing_the_call_sends_bye() {
    // Short SIP timers: the answered INVITE's server transaction lingers
    // 64*T1 (RFC 6026) and the BYE's client transaction T4 before the
    // transaction count can read zero.
    let sb = start_with(&[
        ("SWITCHBOARD_MEDIA__BIND", "127.0.0.1"),
        ("SWITCHBOARD_SIP__T1_MS", "100"),
        ("SWITCHBOARD_SIP__T4_MS", "1000"),
    ]);
    let api = sb.api.unwrap();
    let trunk = sip_service(
        api,
        "CreateSIPInboundTrunk",
        json!({"trunk": {"name": "t", "numbers": ["+15550100"]}}),
    )
    .await;
    let trunk_id = trunk["sip_trunk_id"].as_str().unwrap().to_string();
    sip_service(
        api,
        "CreateSIPDispatchRule",
        json!({"trunk_ids": [trunk_id], "rule": {"dispatch_rule_direct": {"room_name": "support"}}}),
    )
    .await;
    // The routing index follows the store's change feed.
    common::api::settle_routing(api).await;

    let ear_token = join_token("support", "ear");
    let mut ear = Client::join_with(api, "support", &ear_token, 8_000, "&audio=false").await;
    let udp = sb.udp.unwrap();
    let (mut uac, seq) = blocking(move || {
        let mut uac = Uac::new(udp, "+15550199", "+15550100");
        let seq = uac.invite(&uac.pcmu_offer(), &[]);
        (uac, seq)
    })
    .await;
    let joined = ear.expect("participant_joined").await;
    let caller = joined["participant"].clone();
    assert_eq!(caller["kind"], "sip", "{caller}");
    assert_eq!(
        caller["attributes"]["sip.callStatus"], "ringing",
        "{caller}"
    );
    assert_eq!(
        caller["attributes"]["sip.phoneNumber"], "+15550199",
        "{caller}"
    );
    let identity = caller["identity"].as_str().unwrap().to_string();

    // Only a listener: the call keeps ringing.
    let (mut uac, early) = blocking(move || {
        let mut statuses = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < deadline {
            if let Some(msg) = uac.recv(Duration::from_millis(100)) {
                statuses.push(msg.status());
            }
        }
        (uac, statuses)
    })
    .await;
    assert!(
        !early.contains(&200),
        "answered with only a listener: {early:?}"
    );
    assert!(early.contains(&180), "{early:?}");

    // Someone who speaks joins: the call is answered.
    let mut agent = Client::join(api, "support", "agent", 16_000).await;
    let (uac, gateway_rtp) = blocking(move || {
        let (_, ok) = uac.final_response(seq, Duration::from_secs(5));
        assert_eq!(ok.status(), 200, "{}", ok.text);
        uac.ack(seq, &ok);
        let rtp = sdp_rtp_addr(ok.body()).expect("an SDP answer");
        (uac, rtp)
    })
    .await;
    loop {
        let m = ear.expect("participant_updated").await;
        if m["participant"]["identity"] == identity.as_str()
            && m["participant"]["attributes"]["sip.callStatus"] == "active"
        {
            break;
        }
    }

    // The agent's DTMF reaches the phone as RFC 4733 ...
    agent
        .send_json(json!({"type": "dtmf", "digits": "5"}))
        .await;
    let (uac, codes) = blocking(move || {
        let codes = received_telephone_events(&uac, Duration::from_secs(3));
        (uac, codes)
    })
    .await;
    assert_eq!(
        codes,
        vec![5],
        "telephone-events the phone got\n{}",
        sb.log()
    );
    // ... and the phone's reaches the agent as a dtmf message.
    let mut uac = blocking(move || {
        send_telephone_event(&uac, gateway_rtp, 7, 100, 8000);
        uac
    })
    .await;
    let m = agent.expect("dtmf").await;
    assert_eq!(
        (m["from"].as_str(), m["code"].as_u64(), m["digit"].as_str()),
        (Some(identity.as_str()), Some(7), Some("7")),
        "{m}"
    );

    // RemoveParticipant of the call: the gateway hangs up with BYE.
    let removed = room_service(
        api,
        "RemoveParticipant",
        &admin_token("support"),
        json!({"room": "support", "identity": identity}),
    )
    .await;
    assert_eq!(removed.0, 200, "{}", removed.1);
    blocking(move || {
        uac.expect_request("BYE", Duration::from_secs(5));
    })
    .await;
    let left = agent.expect("participant_left").await;
    assert_eq!(left["reason"], "participant_removed");

    drop(agent);
    drop(ear);
    let zero = json!({"calls_active": 0, "call_tasks": 0, "rtp_ports_active": 0, "rooms": 0,
                      "participants": 0, "websocket_sessions": 0, "sip_transactions": [0, 0]});
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = counts_of(debug_state(api).await);
        if state == zero {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not back to zero: {state}\n{}",
            sb.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The process's count of resampled frames, from `/metrics`.
fn resampled_frames(sb: &Switchboard) -> u64 {
    let metrics = common::api::metrics_blocking(sb.api.unwrap());
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_media_resampled_frames_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no resampled frames counter in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_mixes_at_its_members_rate_and_rises_when_a_wider_one_joins() {
    let sb = start();
    let api = sb.api.unwrap();
    let mut a = Client::join(api, "phones", "a", 8_000).await;
    let mut b = Client::join(api, "phones", "b", 8_000).await;
    a.expect("participant_joined").await;
    let before = resampled_frames(&sb);
    play(
        &mut [(&mut a, Some(440.0)), (&mut b, Some(1000.0))],
        Duration::from_millis(1500),
    )
    .await;
    assert!(
        amplitude(last_second(&a), 8_000, 1000.0) > 3000.0,
        "a hears b\n{}",
        sb.log()
    );
    assert!(
        amplitude(last_second(&b), 8_000, 440.0) > 3000.0,
        "b hears a"
    );
    assert_eq!(
        resampled_frames(&sb),
        before,
        "two 8 kHz members: the room mixes at 8 kHz, nothing is resampled"
    );

    // A 48 kHz member: the room rises to 48 kHz, and everyone still hears
    // everyone, now through resamplers.
    let mut wide = Client::join(api, "phones", "wide", 48_000).await;
    play(
        &mut [
            (&mut a, Some(440.0)),
            (&mut b, Some(1000.0)),
            (&mut wide, None),
        ],
        Duration::from_millis(1500),
    )
    .await;
    assert!(
        amplitude(last_second(&wide), 48_000, 440.0) > 3000.0,
        "wide hears a"
    );
    assert!(
        amplitude(last_second(&wide), 48_000, 1000.0) > 3000.0,
        "wide hears b"
    );
    assert!(
        amplitude(last_second(&a), 8_000, 1000.0) > 3000.0,
        "a still hears b"
    );
    assert!(
        resampled_frames(&sb) > before + 100,
        "8 kHz members now resampled"
    );
}

/// A caller whose very first RTP packet is an RFC 4733 digit (no audio
/// before it): the digit reaches the room's other member, from the SIP
/// participant, and so does the next one. (Stop 24 saw a first digit lost
/// on the SDK path; this pins the phone → room part of it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digit_as_the_callers_first_packet_reaches_the_room() {
    let sb = common::routes::start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    common::routes::open_route(&sb, "");
    let mut listener = Client::join(sb.api.unwrap(), "r", "listener", 8_000).await;
    let (uac, rtp) = tokio::task::block_in_place(|| common::routes::answered_call(&sb));
    for (code, seq, timestamp, digit) in [(5u8, 100u16, 16_000u32, "5"), (7, 103, 16_800, "7")] {
        tokio::task::block_in_place(|| send_telephone_event(&uac, rtp, code, seq, timestamp));
        let got = tokio::time::timeout(Duration::from_secs(3), listener.expect("dtmf"))
            .await
            .unwrap_or_else(|_| panic!("digit {digit} never reached the room\n{}", sb.log()));
        assert_eq!(got["digit"], digit, "{got}");
        assert_eq!(got["from"], "sip_+15550199", "{got}");
    }
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

fn config() -> RoomsConfig {
    RoomsConfig {
        // 8 kHz keeps frames short (160 samples) and the arithmetic obvious.
        sample_rate: 8_000,
        ..RoomsConfig::default()
    }
}

fn request(identity: &str, kind: ParticipantKind) -> JoinRequest {
    JoinRequest {
        identity: identity.to_string(),
        name: format!("name of {identity}"),
        metadata: String::new(),
        attributes: BTreeMap::new(),
        kind,
        publishes_audio: true,
        audio_rate: AudioRate::Configured,
    }
}

fn join(rooms: &Rooms, room: &str, identity: &str) -> Participant {
    rooms
        .join(room, request(identity, ParticipantKind::WebSocket))
        .unwrap()
}

fn drain(p: &mut Participant) -> Vec<RoomEvent> {
    std::iter::from_fn(|| p.try_event()).collect()
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn each_participant_hears_the_others_but_not_itself() {
    let rooms = Rooms::new(config());
    let (a, b, c) = (
        join(&rooms, "r", "a"),
        join(&rooms, "r", "b"),
        join(&rooms, "r", "c"),
    );
    let n = rooms.frame_len();
    let now = Instant::now();
    let mut heard = vec![0i16; n];
    for tick in 0..6 {
        a.audio().push(&vec![100; n]);
        b.audio().push(&vec![200; n]);
        c.audio().push(&vec![400; n]);
        rooms.tick(now);
        if tick == 0 {
            // Nobody has reached the two-frame prebuffer yet.
            assert!(!a.audio().pull(&mut heard), "no mix before the prebuffer");
        }
    }
    let mut last = |p: &Participant| {
        let mut got = None;
        while p.audio().pull(&mut heard) {
            got = Some(heard[0]);
            assert!(heard.iter().all(|s| *s == heard[0]));
        }
        got
    };
    assert_eq!(last(&a), Some(600));
    assert_eq!(last(&b), Some(500));
    assert_eq!(last(&c), Some(300));
}

#[test]
fn paced_members_are_mixed_as_the_last_of_them_steps_and_the_clock_covers_when_they_stop() {
    let rooms = Rooms::new(config());
    let (a, b, ws) = (
        join(&rooms, "r", "a"),
        join(&rooms, "r", "b"),
        join(&rooms, "r", "ws"),
    );
    let n = rooms.frame_len();
    let (a_port, b_port) = (a.audio(), b.audio());
    let mut heard = vec![0i16; n];
    // A member is paced from its first step on (b's lone step is a round).
    b_port.step(None);
    a_port.step(None);

    a_port.step(Some(&vec![100; n]));
    assert!(!a_port.pull(&mut heard), "nothing mixed: b has not stepped");
    b_port.step(Some(&vec![200; n]));
    assert!(a_port.pull(&mut heard), "mixed at b's step, no prebuffer");
    assert_eq!(heard[0], 200);
    assert!(b_port.pull(&mut heard));
    assert_eq!(heard[0], 100);
    assert!(ws.audio().pull(&mut heard));
    assert_eq!(heard[0], 300, "a non-paced member hears the round too");

    // A silent step counts for the round; the clock leaves the room alone
    // while rounds come.
    let now = Instant::now();
    rooms.tick(now);
    a_port.step(None);
    b_port.step(Some(&vec![200; n]));
    assert!(a_port.pull(&mut heard));
    assert_eq!(heard[0], 200);
    rooms.tick(now);
    assert!(b_port.pull(&mut heard));
    assert_eq!(heard[0], 0, "a was silent");
    assert!(!a_port.pull(&mut heard), "the clock made no second mix");

    // b stops stepping: a's steps run ahead and make no rounds, until
    // the clock covers after two quiet ticks.
    for _ in 0..3 {
        a_port.step(Some(&vec![100; n]));
    }
    assert!(!b_port.pull(&mut heard));
    rooms.tick(now);
    assert!(!b_port.pull(&mut heard), "one quiet tick: the clock waits");
    rooms.tick(now);
    assert!(b_port.pull(&mut heard), "the clock covers the stalled room");
    assert_eq!(heard[0], 100);
}

#[test]
fn a_paced_member_that_leaves_is_no_longer_waited_for() {
    let rooms = Rooms::new(config());
    let (a, b, c) = (
        join(&rooms, "r", "a"),
        join(&rooms, "r", "b"),
        join(&rooms, "r", "c"),
    );
    let n = rooms.frame_len();
    let (a_port, c_port) = (a.audio(), c.audio());
    // Each becomes paced at its first step; a's second step ends the round.
    a_port.step(None);
    b.audio().step(None);
    c_port.step(None);
    a_port.step(None);

    drop(b);
    let mut heard = vec![0i16; n];
    c_port.step(Some(&vec![300; n]));
    assert!(!a_port.pull(&mut heard), "a has not stepped yet");
    a_port.step(Some(&vec![100; n]));
    assert!(a_port.pull(&mut heard), "the round no longer waits for b");
    assert_eq!(heard[0], 300);
    assert!(
        c_port.pull(&mut heard),
        "c moved up the list and still steps"
    );
    assert_eq!(heard[0], 100);
}

#[test]
fn a_participant_alone_hears_silence_and_a_silent_one_is_left_out() {
    let rooms = Rooms::new(config());
    let a = join(&rooms, "r", "a");
    let n = rooms.frame_len();
    let mut out = vec![7i16; n];
    for _ in 0..4 {
        a.audio().push(&vec![1000; n]);
        rooms.tick(Instant::now());
    }
    assert!(!a.audio().pull(&mut out));
    assert_eq!(out, vec![7i16; n], "untouched on silence");

    let b = join(&rooms, "r", "b");
    for _ in 0..4 {
        a.audio().push(&vec![1000; n]);
        rooms.tick(Instant::now());
    }
    assert!(b.audio().pull(&mut out));
    assert_eq!(out[0], 1000);
    let mut got_any = false;
    while a.audio().pull(&mut out) {
        got_any = true;
        assert_eq!(out[0], 0, "b sent nothing, so a hears nothing of b");
    }
    assert!(got_any);
}

#[test]
fn audio_that_runs_dry_waits_for_the_prebuffer_again() {
    let rooms = Rooms::new(config());
    let (a, b) = (join(&rooms, "r", "a"), join(&rooms, "r", "b"));
    let n = rooms.frame_len();
    let mut out = vec![0i16; n];
    a.audio().push(&vec![50; n]);
    a.audio().push(&vec![50; n]);
    rooms.tick(Instant::now());
    rooms.tick(Instant::now());
    rooms.tick(Instant::now());
    let mut frames = 0;
    while b.audio().pull(&mut out) {
        frames += u32::from(out[0] == 50);
    }
    assert_eq!(frames, 2, "both buffered frames are played, then silence");
    a.audio().push(&vec![60; n]);
    rooms.tick(Instant::now());
    while b.audio().pull(&mut out) {
        assert_ne!(out[0], 60, "one frame is below the prebuffer");
    }
}

#[test]
fn joins_updates_dtmf_and_leaves_are_seen_by_everyone() {
    let rooms = Rooms::new(config());
    let mut a = join(&rooms, "r", "a");
    let mut b = join(&rooms, "r", "b");
    let joined = drain(&mut a);
    assert!(matches!(&joined[..], [RoomEvent::ParticipantJoined(p)] if p.identity == "b"));
    assert!(
        drain(&mut b).is_empty(),
        "a joiner is not told about itself"
    );
    assert_eq!(b.others().len(), 1);
    assert_eq!(b.others()[0].identity, "a");

    b.set_attributes(&attrs(&[("sip.callStatus", "ringing"), ("x", "1")]));
    b.set_attributes(&attrs(&[("sip.callStatus", "active"), ("x", "")]));
    let seen: Vec<_> = drain(&mut a)
        .into_iter()
        .map(|e| match e {
            RoomEvent::ParticipantUpdated(p) => p.attributes,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            attrs(&[("sip.callStatus", "ringing"), ("x", "1")]),
            attrs(&[("sip.callStatus", "active")]),
        ],
        "an empty value deletes the key"
    );
    assert_eq!(drain(&mut b).len(), 2, "its own changes in the same order");

    let mut c = join(&rooms, "r", "c");
    drain(&mut a);
    drain(&mut b);
    a.send_dtmf(5, "5", &[]);
    a.send_dtmf(11, "#", &["c".to_string()]);
    assert!(drain(&mut a).is_empty(), "DTMF is not echoed to its sender");
    assert_eq!(
        drain(&mut b),
        vec![RoomEvent::Dtmf {
            from: "a".into(),
            code: 5,
            digit: "5".into()
        }]
    );
    assert_eq!(drain(&mut c).len(), 2);

    drop(c);
    let left = RoomEvent::ParticipantLeft {
        identity: "c".into(),
        reason: LeaveReason::ClientInitiated,
    };
    assert_eq!(drain(&mut a), vec![left.clone()]);
    assert_eq!(drain(&mut b), vec![left]);
}

#[tokio::test]
async fn a_removed_participant_is_told_why_and_its_stream_ends() {
    let rooms = Rooms::new(config());
    let mut a = join(&rooms, "r", "a");
    let mut b = join(&rooms, "r", "b");
    drain(&mut a);
    rooms.remove_participant("r", "b").unwrap();
    assert_eq!(
        b.next_event().await,
        Some(RoomEvent::Disconnected {
            reason: LeaveReason::Removed
        })
    );
    assert_eq!(b.next_event().await, None);
    assert_eq!(b.disconnected(), Some(LeaveReason::Removed));
    assert!(!b.audio().is_connected());
    assert_eq!(
        drain(&mut a),
        vec![RoomEvent::ParticipantLeft {
            identity: "b".into(),
            reason: LeaveReason::Removed
        }]
    );
    assert_eq!(
        rooms.remove_participant("r", "b"),
        Err(RoomError::NoSuchParticipant {
            room: "r".into(),
            identity: "b".into()
        })
    );
    drop(b);
    assert!(
        drain(&mut a).is_empty(),
        "dropping a removed handle says nothing"
    );
}

#[tokio::test]
async fn deleting_a_room_disconnects_everyone_and_forgets_it() {
    let rooms = Rooms::new(config());
    let mut a = join(&rooms, "r", "a");
    let mut b = join(&rooms, "r", "b");
    drain(&mut a);
    rooms.delete_room("r").unwrap();
    for p in [&mut a, &mut b] {
        assert_eq!(
            p.next_event().await,
            Some(RoomEvent::Disconnected {
                reason: LeaveReason::RoomDeleted
            })
        );
        assert_eq!(p.next_event().await, None);
    }
    assert!(rooms.room("r").is_none());
    assert_eq!(
        rooms.delete_room("r"),
        Err(RoomError::NoSuchRoom("r".into()))
    );
    // A new join makes a new room of the same name.
    let c = join(&rooms, "r", "c");
    assert_eq!(rooms.participants("r").unwrap().len(), 1);
    assert_ne!(c.room_sid(), a.room_sid());
}

#[test]
fn a_second_join_with_an_identity_replaces_the_first() {
    let rooms = Rooms::new(config());
    let mut watcher = join(&rooms, "r", "w");
    let mut first = join(&rooms, "r", "same");
    let _second = join(&rooms, "r", "same");
    assert_eq!(
        drain(&mut first),
        vec![RoomEvent::Disconnected {
            reason: LeaveReason::DuplicateIdentity
        }]
    );
    let events = drain(&mut watcher);
    assert_eq!(events.len(), 3, "joined, left, joined: {events:?}");
    assert_eq!(
        events[1],
        RoomEvent::ParticipantLeft {
            identity: "same".into(),
            reason: LeaveReason::DuplicateIdentity
        }
    );
    assert_eq!(rooms.participants("r").unwrap().len(), 2);
    drop(first);
    assert_eq!(
        rooms.participants("r").unwrap().len(),
        2,
        "the old handle no longer leaves for the new"
    );
}

#[test]
fn rooms_made_by_a_join_close_with_their_last_participant() {
    let rooms = Rooms::new(config());
    let a = join(&rooms, "on-demand", "a");
    assert_eq!(rooms.list_rooms().len(), 1);
    drop(a);
    assert!(rooms.list_rooms().is_empty());
}

#[test]
fn rooms_made_by_the_api_live_until_empty_for_the_timeout() {
    let rooms = Rooms::new(RoomsConfig {
        empty_timeout: Duration::from_secs(60),
        ..config()
    });
    let info = rooms.create_room("api", "meta").unwrap();
    assert!(info.sid.starts_with("RM_"));
    assert_eq!(
        rooms.create_room("api", ""),
        Err(RoomError::RoomExists("api".into()))
    );
    let a = join(&rooms, "api", "a");
    assert_eq!(a.room_sid(), info.sid);
    drop(a);
    let start = Instant::now();
    rooms.tick(start);
    assert!(rooms.room("api").is_some(), "kept while within the timeout");
    rooms.tick(start + Duration::from_secs(61));
    assert!(rooms.room("api").is_none());
}

#[test]
fn limits_are_enforced() {
    let rooms = Rooms::new(RoomsConfig {
        max_rooms: 1,
        max_participants: 2,
        ..config()
    });
    let _a = join(&rooms, "r", "a");
    let _b = join(&rooms, "r", "b");
    assert_eq!(
        rooms.join("r", request("c", ParticipantKind::Sip)).err(),
        Some(RoomError::RoomFull {
            room: "r".into(),
            limit: 2
        })
    );
    assert_eq!(
        rooms
            .join("other", request("c", ParticipantKind::Sip))
            .err(),
        Some(RoomError::TooManyRooms(1))
    );
    assert_eq!(
        rooms.join("r", request("", ParticipantKind::Sip)).err(),
        Some(RoomError::Empty("identity"))
    );
    assert_eq!(
        rooms.join("", request("x", ParticipantKind::Sip)).err(),
        Some(RoomError::Empty("room name"))
    );
}

#[test]
fn a_participant_that_does_not_take_its_events_is_disconnected() {
    let rooms = Rooms::new(RoomsConfig {
        event_queue: 2,
        ..config()
    });
    let stuck = join(&rooms, "r", "stuck");
    let mut active = join(&rooms, "r", "active");
    for i in 0..3 {
        active.set_metadata(&i.to_string());
        drain(&mut active);
    }
    assert_eq!(stuck.disconnected(), Some(LeaveReason::Stuck));
    assert_eq!(rooms.participants("r").unwrap().len(), 1);
}

#[test]
fn audio_presence_and_admin_attribute_updates() {
    let rooms = Rooms::new(config());
    let caller = rooms
        .join(
            "r",
            JoinRequest {
                publishes_audio: true,
                ..request("sip_+1555", ParticipantKind::Sip)
            },
        )
        .unwrap();
    assert!(!caller.others_publish_audio());
    let agent = rooms
        .join(
            "r",
            JoinRequest {
                publishes_audio: false,
                ..request("agent", ParticipantKind::WebSocket)
            },
        )
        .unwrap();
    assert!(!caller.others_publish_audio(), "a listener is not enough");
    agent.set_publishes_audio(true);
    assert!(caller.others_publish_audio());

    let info = rooms
        .update_attributes("r", "sip_+1555", &attrs(&[("k", "v")]))
        .unwrap();
    assert_eq!(info.attributes, attrs(&[("k", "v")]));
    assert_eq!(caller.info().attributes, attrs(&[("k", "v")]));
    assert_eq!(
        rooms.participant("r", "agent").unwrap().kind,
        ParticipantKind::WebSocket
    );
}

#[test]
fn api_rooms_take_their_own_limits_capped_by_the_process() {
    let rooms = Rooms::new(RoomsConfig {
        empty_timeout: Duration::from_secs(60),
        max_participants: 10,
        ..config()
    });
    let small = rooms
        .create_room_with(
            "small",
            RoomOptions {
                metadata: "m".into(),
                empty_timeout: Duration::from_secs(5),
                max_participants: 1,
                agents: vec![AgentRequest {
                    agent_name: "helper".into(),
                    metadata: "x".into(),
                }],
            },
        )
        .unwrap();
    assert_eq!(
        (
            small.max_participants,
            small.empty_timeout,
            small.metadata.as_str()
        ),
        (1, Duration::from_secs(5), "m")
    );
    assert_eq!(small.agents[0].agent_name, "helper");
    let _a = join(&rooms, "small", "a");
    assert_eq!(
        rooms
            .join("small", request("b", ParticipantKind::Sip))
            .err(),
        Some(RoomError::RoomFull {
            room: "small".into(),
            limit: 1
        })
    );
    let big = rooms
        .create_room_with(
            "big",
            RoomOptions {
                empty_timeout: Duration::from_secs(3600),
                max_participants: 1000,
                ..RoomOptions::default()
            },
        )
        .unwrap();
    assert_eq!(
        (big.max_participants, big.empty_timeout),
        (10, Duration::from_secs(60))
    );
    let start = Instant::now();
    rooms.tick(start + Duration::from_secs(6));
    assert!(rooms.room("big").is_some());
    assert!(rooms.room("small").is_some(), "not empty");
    assert_eq!(
        rooms.set_room_metadata("big", "new").unwrap().metadata,
        "new"
    );
    assert_eq!(
        rooms.set_room_metadata("nope", "x"),
        Err(RoomError::NoSuchRoom("nope".into()))
    );
}

#[test]
fn an_administrator_updates_name_metadata_and_attributes_in_one_event() {
    let rooms = Rooms::new(config());
    let mut a = join(&rooms, "r", "a");
    let b = rooms
        .join(
            "r",
            JoinRequest {
                attributes: attrs(&[("keep", "1"), ("drop", "2")]),
                ..request("b", ParticipantKind::Sip)
            },
        )
        .unwrap();
    drain(&mut a);
    let info = rooms
        .update_participant(
            "r",
            "b",
            &ParticipantUpdate {
                name: Some("Bee".into()),
                metadata: Some("{\"x\":1}".into()),
                attributes: attrs(&[("drop", ""), ("new", "3")]),
            },
        )
        .unwrap();
    assert_eq!(info.name, "Bee");
    assert_eq!(info.metadata, "{\"x\":1}");
    assert_eq!(info.attributes, attrs(&[("keep", "1"), ("new", "3")]));
    assert_eq!(b.info(), info);
    assert_eq!(
        drain(&mut a),
        vec![RoomEvent::ParticipantUpdated(info.clone())]
    );
    let unchanged = rooms
        .update_participant("r", "b", &ParticipantUpdate::default())
        .unwrap();
    assert_eq!(unchanged.name, "Bee");
    assert_eq!(
        rooms.update_participant("r", "zz", &ParticipantUpdate::default()),
        Err(RoomError::NoSuchParticipant {
            room: "r".into(),
            identity: "zz".into()
        })
    );
}

#[test]
fn a_room_mixes_at_the_highest_rate_its_members_need() {
    let rooms = Rooms::new(RoomsConfig {
        sample_rate: 48_000,
        ..RoomsConfig::default()
    });
    let at = |identity: &str, rate: u32| JoinRequest {
        audio_rate: AudioRate::Fixed(rate),
        ..request(identity, ParticipantKind::Sip)
    };
    let phone_a = rooms.join("r", at("a", 8_000)).unwrap();
    let phone_b = rooms.join("r", at("b", 8_000)).unwrap();
    assert_eq!(phone_a.audio().rate(), 8_000, "two phones: no resampling");
    assert_eq!(phone_b.audio().frame_len(), 160);

    // Two phones talk at 8 kHz.
    let mut heard = vec![0i16; 160];
    for _ in 0..3 {
        phone_a.audio().push(&[300; 160]);
        rooms.tick(Instant::now());
    }
    assert!(phone_b.audio().pull(&mut heard));
    assert_eq!(heard, vec![300; 160]);

    // A wideband member raises the room; a frame made for the old rate is
    // dropped, not mixed as garbage.
    let wide = rooms.join("r", at("g722", 16_000)).unwrap();
    assert_eq!(phone_a.audio().rate(), 16_000);
    assert_eq!(wide.audio().frame_len(), 320);
    phone_a.audio().push(&[300; 160]);
    assert!(
        !phone_b.audio().pull(&mut vec![0i16; 160]),
        "old length refused"
    );
    for _ in 0..3 {
        phone_a.audio().push(&[300; 320]);
        rooms.tick(Instant::now());
    }
    let mut wide_heard = vec![0i16; 320];
    assert!(wide.audio().pull(&mut wide_heard));
    assert_eq!(wide_heard, vec![300; 320]);

    // It leaves: back to 8 kHz. A member of unknown rate means the
    // configured one.
    drop(wide);
    assert_eq!(phone_a.audio().rate(), 8_000);
    let unknown = rooms
        .join("r", request("api", ParticipantKind::WebSocket))
        .unwrap();
    assert_eq!(unknown.audio().rate(), 48_000);
    drop(unknown);
    assert_eq!(phone_b.audio().rate(), 8_000);
}

#[test]
fn members_that_adapt_follow_the_fixed_ones_down() {
    let rooms = Rooms::new(RoomsConfig {
        sample_rate: 48_000,
        ..RoomsConfig::default()
    });
    let at = |identity: &str, rate: u32| JoinRequest {
        audio_rate: AudioRate::Fixed(rate),
        ..request(identity, ParticipantKind::Sip)
    };
    // Two Opus calls: the highest of theirs.
    let opus_a = rooms.join("r", at("opus-a", 16_000)).unwrap();
    opus_a.set_audio_rate(AudioRate::UpTo(16_000));
    let opus_b = rooms
        .join(
            "r",
            JoinRequest {
                audio_rate: AudioRate::UpTo(16_000),
                ..request("opus-b", ParticipantKind::Sip)
            },
        )
        .unwrap();
    assert_eq!(opus_a.audio().rate(), 16_000);
    // A phone: the Opus calls follow it down to 8 kHz.
    let phone = rooms.join("r", at("phone", 8_000)).unwrap();
    assert_eq!(opus_a.audio().rate(), 8_000);
    // A 48 kHz client is fixed too: the room rises to it.
    let client = rooms.join("r", at("client", 48_000)).unwrap();
    assert_eq!(phone.audio().rate(), 48_000);
    drop(client);
    drop(phone);
    assert_eq!(
        opus_b.audio().rate(),
        16_000,
        "only adapting members: theirs"
    );
}

#[test]
fn the_lifecycle_tells_a_room_s_life_in_order_with_last_attributes() {
    let rooms = Rooms::new(config());
    let mut feed = rooms.lifecycle();
    let alice = join(&rooms, "r", "alice");
    let bob = join(&rooms, "r", "bob");
    alice.set_attributes(&attrs(&[("sip.callStatus", "hangup")]));
    drop(alice);
    rooms.remove_participant("r", "bob").unwrap();
    drop(bob);
    let mut seen = Vec::new();
    while let Ok(event) = feed.try_recv() {
        seen.push(match event {
            Lifecycle::RoomStarted(room) => format!("started {}", room.name),
            Lifecycle::ParticipantJoined { room, participant } => {
                format!(
                    "joined {} ({})",
                    participant.identity, room.num_participants
                )
            }
            Lifecycle::ParticipantLeft {
                room,
                participant,
                reason,
            } => format!(
                "left {} {:?} {:?} ({})",
                participant.identity,
                reason,
                participant.attributes.get("sip.callStatus"),
                room.num_participants
            ),
            Lifecycle::RoomFinished(room) => format!("finished {}", room.name),
        });
    }
    assert_eq!(
        seen,
        [
            "started r",
            "joined alice (1)",
            "joined bob (2)",
            "left alice ClientInitiated Some(\"hangup\") (1)",
            "left bob Removed None (0)",
            "finished r",
        ]
    );
}

fn rooms_frame(p: &Participant) -> usize {
    p.audio().frame_len()
}

#[test]
fn the_join_that_creates_a_room_gives_it_its_agents_and_later_joins_do_not() {
    let rooms = Rooms::new(config());
    let mut lifecycle = rooms.lifecycle();
    let wanted = RoomOptions {
        agents: vec![AgentRequest {
            agent_name: "receptionist".into(),
            metadata: "from the rule".into(),
        }],
        ..RoomOptions::default()
    };
    let _first = rooms
        .join_with("desk", request("caller", ParticipantKind::Sip), &wanted)
        .unwrap();
    let other = RoomOptions {
        agents: vec![AgentRequest::default()],
        ..RoomOptions::default()
    };
    let _second = rooms
        .join_with("desk", request("second", ParticipantKind::Sip), &other)
        .unwrap();
    assert_eq!(rooms.room("desk").unwrap().agents, wanted.agents);
    match lifecycle.try_recv() {
        Ok(Lifecycle::RoomStarted(info)) => assert_eq!(info.agents, wanted.agents),
        other => panic!("expected RoomStarted first, got {other:?}"),
    }
}

#[test]
fn every_listener_of_a_publisher_gets_its_own_audio_opus_encoded_once_at_the_rooms_rate() {
    use switchboard_media::codec::opus::OpusDecoder;
    use switchboard_media::tones::goertzel_dbfs;
    let rooms = Rooms::new(RoomsConfig {
        sample_rate: 16_000,
        ..config()
    });
    // Members that follow the room (as Opus endpoints do).
    let adapting = |identity: &str| {
        rooms
            .join(
                "r",
                JoinRequest {
                    audio_rate: AudioRate::UpTo(16_000),
                    ..request(identity, ParticipantKind::WebRtc)
                },
            )
            .unwrap()
    };
    let (a, b) = (adapting("a"), adapting("b"));
    let (first, second) = (adapting("first"), adapting("second"));
    let (of_a_1, of_a_2) = (first.tap_opus("a").unwrap(), second.tap_opus("a").unwrap());
    assert!(matches!(
        first.tap_opus("nobody"),
        Err(RoomError::NoSuchParticipant { .. })
    ));
    let tone = |rate: u32, hz: f64, frame: usize| -> Vec<i16> {
        let n = (rate / 50) as usize;
        (0..n)
            .map(|i| {
                let t = (frame * n + i) as f64 / f64::from(rate);
                (8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
            })
            .collect()
    };
    let now = Instant::now();
    // Decoded at 16 kHz whatever rate the room encodes at.
    let mut decoder = OpusDecoder::new(16_000).unwrap();
    let (mut one, mut two) = (vec![0u8; 1500], vec![0u8; 1500]);
    let mut pcm = vec![0i16; 5760];
    let mut round = |rate: u32, frame: usize, heard: &mut Vec<i16>| -> usize {
        a.audio().push(&tone(rate, 1000.0, frame));
        b.audio().push(&tone(rate, 300.0, frame));
        rooms.tick(now);
        let mut packets = 0;
        while let Some(len) = of_a_1.pull(&mut one) {
            let other = of_a_2.pull(&mut two).expect("the second listener's copy");
            assert_eq!(one[..len], two[..other], "one encoding for both");
            let decoded = decoder.decode(&one[..len], &mut pcm).unwrap();
            assert_eq!(decoded, 320, "20 ms a packet");
            heard.extend_from_slice(&pcm[..decoded]);
            packets += 1;
        }
        packets
    };
    let mut heard = Vec::new();
    let packets: usize = (0..25).map(|f| round(16_000, f, &mut heard)).sum();
    assert!(packets >= 20, "a's packets reached the taps ({packets})");
    let last = &heard[heard.len() - 3200..];
    let (own, other) = (
        goertzel_dbfs(last, 16_000, 1000.0),
        goertzel_dbfs(last, 16_000, 300.0),
    );
    assert!(
        own > -30.0 && other < own - 30.0,
        "only a's audio: 1 kHz at {own:.1} dBFS, b's 300 Hz at {other:.1}"
    );

    // A narrower member brings the room down: the taps follow.
    let phone = rooms
        .join(
            "r",
            JoinRequest {
                audio_rate: AudioRate::Fixed(8_000),
                ..request("phone", ParticipantKind::Sip)
            },
        )
        .unwrap();
    assert_eq!(rooms_frame(&a), 160);
    let mut heard = Vec::new();
    let packets: usize = (25..50).map(|f| round(8_000, f, &mut heard)).sum();
    assert!(packets >= 20, "a's packets at 8 kHz ({packets})");
    let own = goertzel_dbfs(&heard[heard.len() - 3200..], 16_000, 1000.0);
    assert!(own > -30.0, "a's 1 kHz at 8 kHz: {own:.1} dBFS");
    drop(phone);

    // Nothing is encoded for a publisher nobody taps any more.
    drop((of_a_1, of_a_2));
    a.audio().push(&tone(16_000, 1000.0, 0));
    rooms.tick(now);
}

//! The client side ([`Client`]) against switchboard's own server side
//! ([`Session`]), in one process and in simulated time: the signalling
//! messages and the datagrams are handed across as a driver would, so ICE,
//! DTLS, SCTP and SRTP run for real. A phone in the room hears the
//! client's tone; the client hears the phone's; DTMF crosses as data.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use switchboard_media::tones::goertzel_dbfs;
use switchboard_rooms::{AudioRate, JoinRequest, ParticipantKind, RoomEvent, Rooms, RoomsConfig};
use switchboard_webrtc::client::{Client, ClientEvent};
use switchboard_webrtc::{ClientOptions, Grants, Session, Side};

fn tone(rate: u32, hz: f64, frame: u64) -> Vec<i16> {
    let n = (rate / 50) as usize;
    (0..n)
        .map(|i| {
            let t = (frame * n as u64 + i as u64) as f64 / f64::from(rate);
            (8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
        })
        .collect()
}

fn join(
    rooms: &Rooms,
    identity: &str,
    kind: ParticipantKind,
    rate: AudioRate,
    publishes: bool,
) -> switchboard_rooms::Participant {
    rooms
        .join(
            "r",
            JoinRequest {
                identity: identity.into(),
                name: identity.into(),
                metadata: String::new(),
                attributes: BTreeMap::new(),
                kind,
                publishes_audio: publishes,
                audio_rate: rate,
            },
        )
        .unwrap()
}

#[test]
fn a_client_joins_a_switchboard_room_and_hears_and_is_heard_by_a_phone() {
    let rooms = Rooms::new(RoomsConfig::default());
    let mut phone = join(
        &rooms,
        "phone",
        ParticipantKind::Sip,
        AudioRate::Fixed(8000),
        true,
    );
    let member = join(
        &rooms,
        "uplink",
        ParticipantKind::WebRtc,
        AudioRate::UpTo(48_000),
        false,
    );
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    let (server_sub, server_pub) = (addr("10.0.0.1:10000"), addr("10.0.0.1:10001"));
    let (client_sub, client_pub) = (addr("10.0.0.2:20000"), addr("10.0.0.2:20001"));
    let start = Instant::now();
    let mut now = start;
    let grants = Grants {
        can_publish: true,
        can_subscribe: true,
        can_publish_data: true,
        can_update_own_metadata: true,
        hidden: false,
    };
    let options = ClientOptions {
        auto_subscribe: true,
        protocol: 16,
    };
    let mut server = Session::new(now, member, grants, options, server_sub, server_pub).unwrap();
    let mut client = Client::new(now, client_sub, client_pub, 16_000).unwrap();

    let mut heard_by_phone = Vec::new();
    let mut heard_by_client = Vec::new();
    let mut published = None;
    let mut joined = false;
    let mut digits_to_phone = Vec::new();
    let mut dtmf_sent = false;
    let mut frame = 0u64;
    let step = Duration::from_millis(2);
    while now < start + Duration::from_secs(8) {
        now += step;
        while let Some(response) = server.poll_response() {
            client.handle_signal(now, response);
        }
        while let Some(request) = client.poll_request() {
            server.handle_signal(now, request);
        }
        while let Some(event) = server.participant_mut().try_event() {
            server.handle_room_event(now, Some(event));
        }
        for _ in 0..1000 {
            let mut moved = false;
            if let Some((side, to, data)) = server.poll_transmit() {
                let from = if side == Side::Subscriber {
                    server_sub
                } else {
                    server_pub
                };
                let side = if to == client_sub {
                    Side::Subscriber
                } else {
                    Side::Publisher
                };
                client.handle_datagram(now, side, from, &data);
                moved = true;
            }
            if let Some((side, to, data)) = client.poll_transmit() {
                let from = if side == Side::Subscriber {
                    client_sub
                } else {
                    client_pub
                };
                let side = if to == server_sub {
                    Side::Subscriber
                } else {
                    Side::Publisher
                };
                server.handle_datagram(now, side, from, &data);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
        if client.poll_timeout().is_some_and(|t| t <= now) {
            client.handle_timeout(now);
        }
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::Joined(_) => joined = true,
                ClientEvent::Published(sid) => published = Some(sid),
                _ => {}
            }
        }
        while let Some(event) = phone.try_event() {
            if let RoomEvent::Dtmf { digit, .. } = event {
                digits_to_phone.push(digit);
            }
        }
        // Every 20 ms: both talk, the room mixes, both listen.
        if (now - start).as_millis().is_multiple_of(20) {
            frame += 1;
            phone.audio().push(&tone(8000, 500.0, frame));
            client.send_audio(now, &tone(16_000, 1000.0, frame));
            rooms.tick(now);
            server.step_audio(now);
            let mut out = vec![0i16; 160];
            if phone.audio().pull(&mut out) {
                heard_by_phone.extend_from_slice(&out);
            }
            let mut mixed = vec![0i16; client.frame_len()];
            if client.pull_mix(&mut mixed) {
                heard_by_client.extend_from_slice(&mixed);
            }
            if !dtmf_sent && now - start > Duration::from_secs(4) {
                let packet = proto::DataPacket {
                    value: Some(proto::data_packet::Value::SipDtmf(proto::SipDtmf {
                        code: 5,
                        digit: "5".into(),
                    })),
                    ..Default::default()
                };
                dtmf_sent = client.send_data(now, &packet, true);
            }
        }
    }
    assert!(joined, "the JoinResponse came");
    assert!(
        published
            .as_deref()
            .is_some_and(|sid| sid.starts_with("TR_")),
        "the microphone was published: {published:?}"
    );
    let last = |v: &[i16], rate: usize| v[v.len().saturating_sub(2 * rate)..].to_vec();
    assert!(
        heard_by_phone.len() > 8000 * 2,
        "the phone heard {} samples",
        heard_by_phone.len()
    );
    let at_phone = goertzel_dbfs(&last(&heard_by_phone, 8000), 8000, 1000.0);
    assert!(
        at_phone > -30.0,
        "the phone hears the client's 1 kHz at {at_phone:.1} dBFS"
    );
    assert!(
        heard_by_client.len() > 16_000 * 2,
        "the client heard {} samples",
        heard_by_client.len()
    );
    let at_client = goertzel_dbfs(&last(&heard_by_client, 16_000), 16_000, 500.0);
    assert!(
        at_client > -30.0,
        "the client hears the phone's 500 Hz at {at_client:.1} dBFS"
    );
    assert!(dtmf_sent, "the publisher's data channel opened");
    assert_eq!(
        digits_to_phone.len(),
        1,
        "the client's digit reached the phone"
    );
}

//! The HTTP API's request decoding (switchboard_api::wire) and what is done
//! with a decoded request before anything is stored (switchboard_routing's
//! validation and update functions), plus WebSocket participant text
//! messages (switchboard_api::ws::session::Session::on_text).
//!
//! The first byte picks the message type (low 4 bits) and the encoding
//! (bit 7: protobuf, else protojson); the rest is the request body.
//! A request that decodes is written back as LiveKit writes JSON
//! (`to_protojson`), and that JSON must decode to the same message.
#![no_main]

use std::collections::BTreeMap;
use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use switchboard_api::wire::{decode_request, encode_response, to_protojson, Encoding, ProtoMessage};
use switchboard_api::ws::session::{Permissions, Session};
use switchboard_rooms::{AudioRate, JoinRequest, ParticipantKind, Rooms, RoomsConfig};
use switchboard_routing::livekit_protocol as lk;

fn decode<M: ProtoMessage + Debug + PartialEq>(encoding: Encoding, body: &[u8]) -> Option<M> {
    let message: M = match decode_request(encoding, body) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.http_status();
            let _ = e.body();
            return None;
        }
    };
    let json = match to_protojson(&message) {
        Ok(j) => j,
        Err(e) => panic!("{} decoded but cannot be written as JSON: {e:?}", M::FULL_NAME),
    };
    match decode_request::<M>(Encoding::Json, &json) {
        Ok(again) => assert_eq!(
            again,
            message,
            "{} JSON round trip differs; JSON: {}",
            M::FULL_NAME,
            String::from_utf8_lossy(&json)
        ),
        Err(e) => panic!(
            "{} written as JSON does not decode ({:?}): {}",
            M::FULL_NAME,
            e.body(),
            String::from_utf8_lossy(&json)
        ),
    }
    let _ = encode_response(Encoding::Protobuf, &message);
    Some(message)
}

fn websocket(text: &str) {
    let rooms = Rooms::new(RoomsConfig::default());
    let join = |identity: &str| {
        rooms.join(
            "fuzz-room",
            JoinRequest {
                identity: identity.into(),
                name: "Fuzz".into(),
                metadata: String::new(),
                attributes: BTreeMap::new(),
                kind: ParticipantKind::WebSocket,
                publishes_audio: true,
                audio_rate: AudioRate::Configured,
            },
        )
    };
    let (Ok(me), Ok(mut other)) = (join("me"), join("other")) else {
        panic!("joining an empty room failed");
    };
    let permissions = Permissions {
        publish_audio: true,
        subscribe: true,
        publish_data: true,
        update_own_metadata: true,
    };
    let mut session = match Session::new(me, 48_000, permissions) {
        Ok(s) => s,
        Err(e) => panic!("session at the room rate: {e}"),
    };
    // One message per line, as a client might send several.
    for line in text.split('\n').take(8) {
        let _ = session.on_text(line);
    }
    while other.try_event().is_some() {}
    let _ = session.joined();
    session.leave();
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let encoding = if selector & 0x80 != 0 {
        Encoding::Protobuf
    } else {
        Encoding::Json
    };
    let _ = Encoding::from_content_type(&String::from_utf8_lossy(body));
    match selector & 0x0f {
        0 => {
            if let Some(req) = decode::<lk::CreateSipInboundTrunkRequest>(encoding, body) {
                if let Some(trunk) = req.trunk {
                    let _ = switchboard_routing::prepare_inbound_trunk_create(trunk);
                }
            }
        }
        1 => {
            if let Some(req) = decode::<lk::CreateSipOutboundTrunkRequest>(encoding, body) {
                if let Some(trunk) = req.trunk {
                    let _ = switchboard_routing::prepare_outbound_trunk_create(trunk);
                }
            }
        }
        2 => {
            if let Some(req) = decode::<lk::CreateSipDispatchRuleRequest>(encoding, body) {
                let rule = switchboard_routing::dispatch_rule_from_create_request(req);
                if let Ok(rule) = switchboard_routing::prepare_dispatch_rule_create(rule) {
                    let _ = switchboard_routing::rule_pin(&rule);
                    let _ = switchboard_routing::rule_room(&rule);
                }
            }
        }
        3 => {
            if let Some(req) = decode::<lk::UpdateSipInboundTrunkRequest>(encoding, body) {
                if let Some(action) = &req.action {
                    let stored = lk::SipInboundTrunkInfo {
                        sip_trunk_id: "ST_stored".into(),
                        numbers: vec!["+15550100".into()],
                        ..Default::default()
                    };
                    let _ = switchboard_routing::apply_inbound_trunk_action("ST_stored", &stored, action);
                }
            }
        }
        4 => {
            if let Some(req) = decode::<lk::UpdateSipOutboundTrunkRequest>(encoding, body) {
                if let Some(action) = &req.action {
                    let stored = lk::SipOutboundTrunkInfo {
                        sip_trunk_id: "ST_out".into(),
                        address: "sip.example.com".into(),
                        numbers: vec!["+15550100".into()],
                        ..Default::default()
                    };
                    let _ = switchboard_routing::apply_outbound_trunk_action("ST_out", &stored, action);
                }
            }
        }
        5 => {
            if let Some(req) = decode::<lk::UpdateSipDispatchRuleRequest>(encoding, body) {
                if let Some(action) = &req.action {
                    let stored = lk::SipDispatchRuleInfo {
                        sip_dispatch_rule_id: "SDR_stored".into(),
                        ..Default::default()
                    };
                    let _ = switchboard_routing::apply_dispatch_rule_action("SDR_stored", &stored, action);
                }
            }
        }
        6 => {
            if let Some(req) = decode::<lk::CreateSipParticipantRequest>(encoding, body) {
                let _ = switchboard_routing::validate_create_sip_participant(&req);
            }
        }
        7 => {
            if let Some(req) = decode::<lk::TransferSipParticipantRequest>(encoding, body) {
                let _ = switchboard_routing::validate_transfer_sip_participant(&req);
            }
        }
        8 => {
            let _ = decode::<lk::ListSipInboundTrunkRequest>(encoding, body);
        }
        9 => {
            let _ = decode::<lk::CreateRoomRequest>(encoding, body);
        }
        10 => {
            let _ = decode::<lk::UpdateParticipantRequest>(encoding, body);
        }
        11 => {
            let _ = decode::<lk::SendDataRequest>(encoding, body);
        }
        12 => {
            let _ = decode::<lk::SipInboundTrunkInfo>(encoding, body);
        }
        _ => websocket(&String::from_utf8_lossy(body)),
    }
});

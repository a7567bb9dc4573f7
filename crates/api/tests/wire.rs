//! JSON parity with LiveKit's server (Go protojson, UseProtoNames +
//! EmitUnpopulated) and JSON input as protojson reads it. The expected
//! documents are written by hand from the .proto declarations and
//! protojson's documented rules, not produced by the code under test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, deprecated)]

use std::collections::HashMap;

use livekit_protocol as lk;
use pbjson_types::{Duration, Timestamp};
use prost::Message;
use prost_reflect::{DynamicMessage, Kind, MapKey, MessageDescriptor, ReflectMessage, Value};
use serde_json::json;
use switchboard_api::wire::{
    decode_request, descriptor_pool, encode_response, to_protojson, Encoding, ProtoJson,
    ProtoMessage,
};
use switchboard_api::Code;

fn json_of<M: ProtoMessage>(m: &M) -> serde_json::Value {
    serde_json::from_slice(&to_protojson(m).unwrap()).unwrap()
}

#[test]
fn inbound_trunk_with_defaults_renders_every_field_in_snake_case_in_declaration_order() {
    let text =
        String::from_utf8(to_protojson(&lk::SipInboundTrunkInfo::default()).unwrap()).unwrap();
    let expected = concat!(
        r#"{"sip_trunk_id":"","name":"","metadata":"","numbers":[],"allowed_addresses":[],"#,
        r#""allowed_numbers":[],"auth_username":"","auth_password":"","auth_realm":"","#,
        r#""headers":{},"headers_to_attributes":{},"attributes_to_headers":{},"#,
        r#""include_headers":"SIP_NO_HEADERS","ringing_timeout":null,"#,
        r#""ringing_timeout_status":"SIP_STATUS_UNKNOWN","max_call_duration":null,"#,
        r#""krisp_enabled":false,"media_encryption":"SIP_MEDIA_ENCRYPT_DISABLE","media":null,"#,
        r#""created_at":null,"updated_at":null}"#
    );
    assert_eq!(text, expected);
}

#[test]
fn populated_inbound_trunk_uses_protojson_forms() {
    let trunk = lk::SipInboundTrunkInfo {
        sip_trunk_id: "ST_abc".into(),
        numbers: vec!["+15550100".into()],
        headers: HashMap::from([("X-b".into(), "2".into()), ("X-a".into(), "1".into())]),
        include_headers: lk::SipHeaderOptions::SipXHeaders as i32,
        ringing_timeout: Some(Duration {
            seconds: 30,
            nanos: 0,
        }),
        max_call_duration: Some(Duration {
            seconds: 1,
            nanos: 500_000_000,
        }),
        media: Some(lk::SipMediaConfig {
            only_listed_codecs: true,
            codecs: vec![lk::SipCodec {
                name: "PCMU".into(),
                rate: 8000,
            }],
            encryption: Some(lk::SipMediaEncryption::SipMediaEncryptRequire as i32),
            media_timeout: None,
        }),
        created_at: Some(Timestamp {
            seconds: 1_704_164_645,
            nanos: 0,
        }),
        updated_at: Some(Timestamp {
            seconds: 1_704_164_645,
            nanos: 120_000_000,
        }),
        ..Default::default()
    };
    let v = json_of(&trunk);
    assert_eq!(v["sip_trunk_id"], "ST_abc");
    assert_eq!(v["numbers"], json!(["+15550100"]));
    assert_eq!(v["include_headers"], "SIP_X_HEADERS");
    assert_eq!(v["ringing_timeout"], "30s");
    assert_eq!(v["max_call_duration"], "1.500s");
    assert_eq!(v["created_at"], "2024-01-02T03:04:05Z");
    assert_eq!(v["updated_at"], "2024-01-02T03:04:05.120Z");
    // proto3 `optional` fields are written only when set (they live in a
    // synthetic oneof); media_timeout is unset, encryption is set.
    assert_eq!(
        v["media"],
        json!({"only_listed_codecs": true, "codecs": [{"name": "PCMU", "rate": 8000}],
               "encryption": "SIP_MEDIA_ENCRYPT_REQUIRE"})
    );
    // Map keys are sorted, as protojson writes them.
    let text = String::from_utf8(to_protojson(&trunk).unwrap()).unwrap();
    assert!(
        text.contains(r#""headers":{"X-a":"1","X-b":"2"}"#),
        "{text}"
    );
}

#[test]
fn dispatch_rule_writes_only_the_set_oneof_member_and_null_for_unset_messages() {
    let rule = lk::SipDispatchRuleInfo {
        sip_dispatch_rule_id: "SDR_x".into(),
        rule: Some(lk::SipDispatchRule {
            rule: Some(lk::sip_dispatch_rule::Rule::DispatchRuleDirect(
                lk::SipDispatchRuleDirect {
                    room_name: "r".into(),
                    pin: String::new(),
                },
            )),
        }),
        ..Default::default()
    };
    let v = json_of(&rule);
    assert_eq!(
        v["rule"],
        json!({"dispatch_rule_direct": {"room_name": "r", "pin": ""}})
    );
    assert_eq!(v["room_config"], serde_json::Value::Null);
    assert_eq!(v["trunk_ids"], json!([]));
    assert_eq!(v["attributes"], json!({}));
    assert_eq!(v["hide_phone_number"], false);
    assert_eq!(v["media_encryption"], "SIP_MEDIA_ENCRYPT_DISABLE");
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert!(
        keys.iter()
            .all(|k| !k.chars().any(|c| c.is_ascii_uppercase())),
        "{keys:?}"
    );
}

#[test]
fn sixty_four_bit_integers_are_strings_and_unknown_enum_numbers_stay_numbers() {
    let info = lk::SipCallInfo {
        created_at_ns: 1_700_000_000_123_456_789,
        call_status: 99,
        ..Default::default()
    };
    let v = json_of(&info);
    assert_eq!(v["created_at_ns"], "1700000000123456789");
    assert_eq!(v["started_at_ns"], "0");
    assert_eq!(v["call_status"], 99);
}

#[test]
fn json_input_accepts_camel_and_snake_case_enum_names_and_numbers_and_ignores_unknown_keys() {
    let body = br#"{
        "trunk": {
            "name": "camel",
            "allowedAddresses": ["10.0.0.0/8"],
            "allowed_numbers": ["+1"],
            "includeHeaders": "SIP_ALL_HEADERS",
            "media_encryption": 1,
            "ringingTimeout": "30s",
            "maxCallDuration": "1.5s",
            "media": {"mediaTimeout": "20s", "encryption": "SIP_MEDIA_ENCRYPT_ALLOW"},
            "somethingNew": {"nested": [1, 2, 3]}
        },
        "unknown_top": true
    }"#;
    let req: lk::CreateSipInboundTrunkRequest = decode_request(Encoding::Json, body).unwrap();
    let t = req.trunk.unwrap();
    assert_eq!(t.name, "camel");
    assert_eq!(t.allowed_addresses, vec!["10.0.0.0/8"]);
    assert_eq!(t.allowed_numbers, vec!["+1"]);
    assert_eq!(
        t.include_headers,
        lk::SipHeaderOptions::SipAllHeaders as i32
    );
    assert_eq!(
        t.media_encryption,
        lk::SipMediaEncryption::SipMediaEncryptAllow as i32
    );
    assert_eq!(
        t.ringing_timeout,
        Some(Duration {
            seconds: 30,
            nanos: 0
        })
    );
    assert_eq!(
        t.max_call_duration,
        Some(Duration {
            seconds: 1,
            nanos: 500_000_000
        })
    );
    let media = t.media.unwrap();
    assert_eq!(
        media.media_timeout,
        Some(Duration {
            seconds: 20,
            nanos: 0
        })
    );
    assert_eq!(
        media.encryption,
        Some(lk::SipMediaEncryption::SipMediaEncryptAllow as i32)
    );
}

#[test]
fn json_input_reads_oneofs_maps_and_int64_strings() {
    let body = br#"{"dispatchRule": {"rule": {"dispatchRuleIndividual": {"roomPrefix": "call-"}},
                    "attributes": {"a": "b"}, "trunkIds": ["ST_1"]}}"#;
    let req: lk::CreateSipDispatchRuleRequest = decode_request(Encoding::Json, body).unwrap();
    let rule = req.dispatch_rule.unwrap();
    assert_eq!(rule.trunk_ids, vec!["ST_1"]);
    assert_eq!(rule.attributes.get("a").map(String::as_str), Some("b"));
    match rule.rule.unwrap().rule.unwrap() {
        lk::sip_dispatch_rule::Rule::DispatchRuleIndividual(i) => {
            assert_eq!(i.room_prefix, "call-")
        }
        other => panic!("wrong rule {other:?}"),
    }
}

#[test]
fn bad_bodies_are_malformed_with_twirps_messages() {
    for body in [&b""[..], b"{", b"[]", b"{\"trunk\": 5}", b"{} {}"] {
        let e =
            decode_request::<lk::CreateSipInboundTrunkRequest>(Encoding::Json, body).unwrap_err();
        assert_eq!(e.code, Code::Malformed, "{body:?}");
        assert_eq!(e.msg, "the json request could not be decoded");
    }
    let e =
        decode_request::<lk::CreateSipInboundTrunkRequest>(Encoding::Protobuf, &[0x0a, 0x05, 1])
            .unwrap_err();
    assert_eq!(e.code, Code::Malformed);
    assert_eq!(e.msg, "the protobuf request could not be decoded");
    // An empty protobuf body is the empty message.
    let empty = decode_request::<lk::ListSipInboundTrunkRequest>(Encoding::Protobuf, b"").unwrap();
    assert_eq!(empty, lk::ListSipInboundTrunkRequest::default());
}

#[test]
fn protobuf_responses_are_prost_bytes() {
    let trunk = lk::SipOutboundTrunkInfo {
        sip_trunk_id: "ST_1".into(),
        numbers: vec!["+1".into()],
        ..Default::default()
    };
    let bytes = encode_response(Encoding::Protobuf, &trunk).unwrap();
    assert_eq!(
        lk::SipOutboundTrunkInfo::decode(bytes.as_slice()).unwrap(),
        trunk
    );
}

#[test]
fn content_types_as_twirp_accepts_them() {
    assert_eq!(
        Encoding::from_content_type("application/json"),
        Some(Encoding::Json)
    );
    assert_eq!(
        Encoding::from_content_type("application/json;charset=UTF-8"),
        Some(Encoding::Json)
    );
    assert_eq!(
        Encoding::from_content_type("Application/JSON ; x=y"),
        Some(Encoding::Json)
    );
    assert_eq!(
        Encoding::from_content_type("application/protobuf"),
        Some(Encoding::Protobuf)
    );
    assert_eq!(Encoding::from_content_type("application/x-protobuf"), None);
    assert_eq!(Encoding::from_content_type("text/plain"), None);
    assert_eq!(Encoding::from_content_type(""), None);
}

/// A message with every field set to a non-default value (one member per
/// oneof), following the descriptor `depth` levels down.
fn populate(desc: &MessageDescriptor, depth: u32) -> DynamicMessage {
    let mut m = DynamicMessage::new(desc.clone());
    match desc.full_name() {
        "google.protobuf.Duration" | "google.protobuf.Timestamp" => {
            m.set_field_by_name("seconds", Value::I64(7));
            return m;
        }
        name if name.starts_with("google.protobuf.") => return m,
        _ => {}
    }
    let mut oneofs_done = std::collections::HashSet::new();
    for field in desc.fields() {
        if let Some(oneof) = field.containing_oneof() {
            if !oneofs_done.insert(oneof.full_name().to_owned()) {
                continue;
            }
        }
        let scalar = |kind: &Kind| -> Option<Value> {
            Some(match kind {
                Kind::Double => Value::F64(1.5),
                Kind::Float => Value::F32(2.5),
                Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(-3),
                Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(-4),
                Kind::Uint32 | Kind::Fixed32 => Value::U32(5),
                Kind::Uint64 | Kind::Fixed64 => Value::U64(6),
                Kind::Bool => Value::Bool(true),
                Kind::String => Value::String("s".into()),
                Kind::Bytes => Value::Bytes(vec![1u8, 2, 3].into()),
                Kind::Enum(e) => {
                    Value::EnumNumber(e.values().last().map(|v| v.number()).unwrap_or(0))
                }
                Kind::Message(sub) => {
                    if depth == 0 {
                        return None;
                    }
                    Value::Message(populate(sub, depth - 1))
                }
            })
        };
        let value = if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                continue;
            };
            let Some(v) = scalar(&entry.map_entry_value_field().kind()) else {
                continue;
            };
            Value::Map(HashMap::from([(MapKey::String("k".into()), v)]))
        } else if field.is_list() {
            let Some(v) = scalar(&field.kind()) else {
                continue;
            };
            Value::List(vec![v])
        } else {
            let Some(v) = scalar(&field.kind()) else {
                continue;
            };
            v
        };
        m.set_field(&field, value);
    }
    m
}

fn prost_keeps_every_descriptor_field<M: ProtoMessage>() {
    let desc = descriptor_pool()
        .unwrap()
        .get_message_by_name(M::FULL_NAME)
        .unwrap();
    let full = populate(&desc, 5);
    let bytes = full.encode_to_vec();
    let through_prost = M::decode(bytes.as_slice()).unwrap().encode_to_vec();
    let back = DynamicMessage::decode(desc.clone(), through_prost.as_slice()).unwrap();
    assert_eq!(back.unknown_fields().count(), 0, "{}", M::FULL_NAME);
    let before = serde_json::to_value(ProtoJson(&full)).unwrap();
    let after = serde_json::to_value(ProtoJson(&back)).unwrap();
    assert_eq!(
        before,
        after,
        "{} loses fields through the prost type",
        M::FULL_NAME
    );
    let empty = serde_json::to_value(ProtoJson(&DynamicMessage::new(desc.clone()))).unwrap();
    assert_ne!(before, empty, "{} was populated", M::FULL_NAME);
    assert_eq!(back.descriptor().full_name(), M::FULL_NAME);
}

#[test]
fn the_descriptors_and_the_prost_types_agree_field_for_field() {
    prost_keeps_every_descriptor_field::<lk::SipInboundTrunkInfo>();
    prost_keeps_every_descriptor_field::<lk::SipOutboundTrunkInfo>();
    prost_keeps_every_descriptor_field::<lk::SipTrunkInfo>();
    prost_keeps_every_descriptor_field::<lk::SipDispatchRuleInfo>();
    prost_keeps_every_descriptor_field::<lk::CreateSipDispatchRuleRequest>();
    prost_keeps_every_descriptor_field::<lk::UpdateSipInboundTrunkRequest>();
    prost_keeps_every_descriptor_field::<lk::UpdateSipOutboundTrunkRequest>();
    prost_keeps_every_descriptor_field::<lk::UpdateSipDispatchRuleRequest>();
    prost_keeps_every_descriptor_field::<lk::ListSipInboundTrunkRequest>();
    prost_keeps_every_descriptor_field::<lk::ListSipOutboundTrunkRequest>();
    prost_keeps_every_descriptor_field::<lk::ListSipDispatchRuleRequest>();
    prost_keeps_every_descriptor_field::<lk::ListSipTrunkRequest>();
    prost_keeps_every_descriptor_field::<lk::CreateSipParticipantRequest>();
    prost_keeps_every_descriptor_field::<lk::SipParticipantInfo>();
    prost_keeps_every_descriptor_field::<lk::TransferSipParticipantRequest>();
    prost_keeps_every_descriptor_field::<lk::TransferSipParticipantResponse>();
    prost_keeps_every_descriptor_field::<lk::CreateRoomRequest>();
    prost_keeps_every_descriptor_field::<lk::Room>();
    prost_keeps_every_descriptor_field::<lk::ParticipantInfo>();
    prost_keeps_every_descriptor_field::<lk::UpdateParticipantRequest>();
    prost_keeps_every_descriptor_field::<lk::RoomParticipantIdentity>();
}

#[test]
fn every_twirp_message_name_resolves_in_the_descriptor_pool() {
    fn has<M: ProtoMessage>() {
        assert!(
            descriptor_pool()
                .unwrap()
                .get_message_by_name(M::FULL_NAME)
                .is_some(),
            "{}",
            M::FULL_NAME
        );
    }
    has::<lk::ListSipTrunkResponse>();
    has::<lk::GetSipInboundTrunkRequest>();
    has::<lk::GetSipInboundTrunkResponse>();
    has::<lk::GetSipOutboundTrunkRequest>();
    has::<lk::GetSipOutboundTrunkResponse>();
    has::<lk::ListSipInboundTrunkResponse>();
    has::<lk::ListSipOutboundTrunkResponse>();
    has::<lk::DeleteSipTrunkRequest>();
    has::<lk::ListSipDispatchRuleResponse>();
    has::<lk::DeleteSipDispatchRuleRequest>();
    has::<lk::CreateSipInboundTrunkRequest>();
    has::<lk::CreateSipOutboundTrunkRequest>();
    has::<lk::ListRoomsRequest>();
    has::<lk::ListRoomsResponse>();
    has::<lk::DeleteRoomRequest>();
    has::<lk::DeleteRoomResponse>();
    has::<lk::ListParticipantsRequest>();
    has::<lk::ListParticipantsResponse>();
    has::<lk::RemoveParticipantResponse>();
    has::<lk::UpdateRoomMetadataRequest>();
    has::<lk::MuteRoomTrackRequest>();
    has::<lk::UpdateSubscriptionsRequest>();
    has::<lk::SendDataRequest>();
    has::<lk::ForwardParticipantRequest>();
    has::<lk::MoveParticipantRequest>();
    has::<lk::PerformRpcRequest>();
}

#[test]
fn the_vendored_protos_are_the_ones_livekit_protocol_ships() {
    // build.rs compiles crates/api/proto; they must be the pinned crate's files.
    let home = std::env::var("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo")
        });
    let registry = home.join("registry/src");
    let shipped = std::fs::read_dir(&registry)
        .unwrap()
        .flatten()
        .map(|d| d.path().join("livekit-protocol-0.8.2/protocol/protobufs"))
        .find(|p| p.exists())
        .expect("livekit-protocol 0.8.2 sources in the cargo registry");
    let ours = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let mut compared = 0;
    for rel in [
        "livekit_sip.proto",
        "livekit_models.proto",
        "livekit_room.proto",
        "livekit_egress.proto",
        "livekit_agent_dispatch.proto",
        "livekit_agent.proto",
        "livekit_metrics.proto",
        "livekit_webhook.proto",
        "livekit_ingress.proto",
        "livekit_rtc.proto",
        "logger/options.proto",
    ] {
        assert_eq!(
            std::fs::read(ours.join(rel)).unwrap(),
            std::fs::read(shipped.join(rel)).unwrap(),
            "{rel} differs from livekit-protocol 0.8.2's"
        );
        compared += 1;
    }
    let vendored = std::fs::read_dir(&ours).unwrap().count() - 1
        + std::fs::read_dir(ours.join("logger")).unwrap().count();
    assert_eq!(compared, vendored, "every vendored file is compared");
}

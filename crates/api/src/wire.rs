//! The Twirp wire format: protobuf bodies through prost, JSON bodies through
//! the `.proto` descriptors, written exactly as LiveKit's server writes them
//! (Go `protojson` with `UseProtoNames` and `EmitUnpopulated`).
//!
//! JSON goes through a [`DynamicMessage`]: request JSON is parsed against the
//! message descriptor (snake_case or lowerCamelCase keys, enum names or
//! numbers, `"30s"` durations, unknown keys ignored), encoded to protobuf and
//! decoded into the prost type; a response is encoded with prost, decoded
//! into a `DynamicMessage` and written by [`ProtoJson`], which follows
//! protojson's rules field by field:
//!
//! - every field in declaration order, named by its proto (snake_case) name;
//! - scalars, repeated fields and maps always, with their defaults;
//! - a singular message field that is unset as `null`;
//! - a oneof member (including a proto3 `optional` field) only when set;
//! - enums by name (a number only when the value has no name), 64-bit
//!   integers as strings, bytes as standard base64, map keys sorted;
//! - well-known types (Duration `"30s"`, Timestamp RFC 3339, ...) in their
//!   canonical JSON form.

use std::sync::OnceLock;

use prost::Message as _;
use prost_reflect::ReflectMessage as _;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, Kind, MapKey, MessageDescriptor,
    SerializeOptions, Value,
};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::twirp::{Code, TwirpError};

/// The descriptor set compiled by build.rs from `proto/` (livekit_sip.proto,
/// livekit_room.proto and everything they import, as shipped in
/// livekit-protocol 0.8.2).
const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/livekit_descriptor.bin"));

/// The descriptors of every LiveKit message the API reads or writes.
pub fn descriptor_pool() -> Result<&'static DescriptorPool, TwirpError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| TwirpError::internal(format!("protobuf descriptors: {e}")))
}

/// A prost message type of the LiveKit API with its fully-qualified proto name.
pub trait ProtoMessage: prost::Message + Default {
    /// `livekit.SIPInboundTrunkInfo` and so on.
    const FULL_NAME: &'static str;
}

macro_rules! proto_names {
    ($($ty:ident => $name:literal,)*) => {$(
        impl ProtoMessage for livekit_protocol::$ty {
            const FULL_NAME: &'static str = $name;
        }
    )*};
}

proto_names! {
    WebhookEvent => "livekit.WebhookEvent",
    ListSipTrunkRequest => "livekit.ListSIPTrunkRequest",
    ListSipTrunkResponse => "livekit.ListSIPTrunkResponse",
    SipTrunkInfo => "livekit.SIPTrunkInfo",
    CreateSipInboundTrunkRequest => "livekit.CreateSIPInboundTrunkRequest",
    CreateSipOutboundTrunkRequest => "livekit.CreateSIPOutboundTrunkRequest",
    UpdateSipInboundTrunkRequest => "livekit.UpdateSIPInboundTrunkRequest",
    UpdateSipOutboundTrunkRequest => "livekit.UpdateSIPOutboundTrunkRequest",
    SipInboundTrunkInfo => "livekit.SIPInboundTrunkInfo",
    SipOutboundTrunkInfo => "livekit.SIPOutboundTrunkInfo",
    GetSipInboundTrunkRequest => "livekit.GetSIPInboundTrunkRequest",
    GetSipInboundTrunkResponse => "livekit.GetSIPInboundTrunkResponse",
    GetSipOutboundTrunkRequest => "livekit.GetSIPOutboundTrunkRequest",
    GetSipOutboundTrunkResponse => "livekit.GetSIPOutboundTrunkResponse",
    ListSipInboundTrunkRequest => "livekit.ListSIPInboundTrunkRequest",
    ListSipInboundTrunkResponse => "livekit.ListSIPInboundTrunkResponse",
    ListSipOutboundTrunkRequest => "livekit.ListSIPOutboundTrunkRequest",
    ListSipOutboundTrunkResponse => "livekit.ListSIPOutboundTrunkResponse",
    DeleteSipTrunkRequest => "livekit.DeleteSIPTrunkRequest",
    CreateSipDispatchRuleRequest => "livekit.CreateSIPDispatchRuleRequest",
    UpdateSipDispatchRuleRequest => "livekit.UpdateSIPDispatchRuleRequest",
    SipDispatchRuleInfo => "livekit.SIPDispatchRuleInfo",
    ListSipDispatchRuleRequest => "livekit.ListSIPDispatchRuleRequest",
    ListSipDispatchRuleResponse => "livekit.ListSIPDispatchRuleResponse",
    DeleteSipDispatchRuleRequest => "livekit.DeleteSIPDispatchRuleRequest",
    CreateSipParticipantRequest => "livekit.CreateSIPParticipantRequest",
    SipParticipantInfo => "livekit.SIPParticipantInfo",
    TransferSipParticipantRequest => "livekit.TransferSIPParticipantRequest",
    TransferSipParticipantResponse => "livekit.TransferSIPParticipantResponse",
    SipCallInfo => "livekit.SIPCallInfo",
    SipTransferInfo => "livekit.SIPTransferInfo",
    CreateRoomRequest => "livekit.CreateRoomRequest",
    Room => "livekit.Room",
    ListRoomsRequest => "livekit.ListRoomsRequest",
    ListRoomsResponse => "livekit.ListRoomsResponse",
    DeleteRoomRequest => "livekit.DeleteRoomRequest",
    DeleteRoomResponse => "livekit.DeleteRoomResponse",
    ListParticipantsRequest => "livekit.ListParticipantsRequest",
    ListParticipantsResponse => "livekit.ListParticipantsResponse",
    RoomParticipantIdentity => "livekit.RoomParticipantIdentity",
    ParticipantInfo => "livekit.ParticipantInfo",
    RemoveParticipantResponse => "livekit.RemoveParticipantResponse",
    UpdateParticipantRequest => "livekit.UpdateParticipantRequest",
    UpdateRoomMetadataRequest => "livekit.UpdateRoomMetadataRequest",
    MuteRoomTrackRequest => "livekit.MuteRoomTrackRequest",
    UpdateSubscriptionsRequest => "livekit.UpdateSubscriptionsRequest",
    SendDataRequest => "livekit.SendDataRequest",
    ForwardParticipantRequest => "livekit.ForwardParticipantRequest",
    MoveParticipantRequest => "livekit.MoveParticipantRequest",
    PerformRpcRequest => "livekit.PerformRpcRequest",
    SendDataResponse => "livekit.SendDataResponse",
    MuteRoomTrackResponse => "livekit.MuteRoomTrackResponse",
    SignalRequest => "livekit.SignalRequest",
    SignalResponse => "livekit.SignalResponse",
    CreateAgentDispatchRequest => "livekit.CreateAgentDispatchRequest",
    AgentDispatch => "livekit.AgentDispatch",
    ListAgentDispatchRequest => "livekit.ListAgentDispatchRequest",
    ListAgentDispatchResponse => "livekit.ListAgentDispatchResponse",
    DeleteAgentDispatchRequest => "livekit.DeleteAgentDispatchRequest",
}

/// How a request body is encoded; the response uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/json`: protojson.
    Json,
    /// `application/protobuf`: binary protobuf.
    Protobuf,
}

impl Encoding {
    /// The encoding named by a `Content-Type` value (parameters after `;`
    /// ignored, case-insensitive), as Twirp accepts it.
    pub fn from_content_type(value: &str) -> Option<Encoding> {
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else if media.eq_ignore_ascii_case("application/protobuf") {
            Some(Encoding::Protobuf)
        } else {
            None
        }
    }

    /// The `Content-Type` of a response in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::Protobuf => "application/protobuf",
        }
    }
}

fn message_descriptor(full_name: &str) -> Result<MessageDescriptor, TwirpError> {
    descriptor_pool()?
        .get_message_by_name(full_name)
        .ok_or_else(|| TwirpError::internal(format!("no descriptor for {full_name}")))
}

/// Decodes a request body. A body that does not parse is Twirp `malformed`
/// with Twirp's message; the parser's reason is in meta `cause`.
pub fn decode_request<M: ProtoMessage>(encoding: Encoding, body: &[u8]) -> Result<M, TwirpError> {
    match encoding {
        Encoding::Protobuf => M::decode(body).map_err(|e| {
            TwirpError::new(Code::Malformed, "the protobuf request could not be decoded")
                .with_meta("cause", e.to_string())
        }),
        Encoding::Json => {
            let malformed = |cause: String| {
                TwirpError::new(Code::Malformed, "the json request could not be decoded")
                    .with_meta("cause", cause)
            };
            let dynamic = json_to_dynamic(M::FULL_NAME, body).map_err(|e| match e {
                JsonError::Parse(cause) => malformed(cause),
                JsonError::Internal(e) => e,
            })?;
            M::decode(dynamic.encode_to_vec().as_slice()).map_err(|e| malformed(e.to_string()))
        }
    }
}

enum JsonError {
    Parse(String),
    Internal(TwirpError),
}

fn json_to_dynamic(full_name: &str, body: &[u8]) -> Result<DynamicMessage, JsonError> {
    let desc = message_descriptor(full_name).map_err(JsonError::Internal)?;
    let mut de = serde_json::Deserializer::from_slice(body);
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let message = DynamicMessage::deserialize_with_options(desc, &mut de, &options)
        .map_err(|e| JsonError::Parse(e.to_string()))?;
    de.end().map_err(|e| JsonError::Parse(e.to_string()))?;
    Ok(message)
}

/// Encodes a response body in the request's encoding.
pub fn encode_response<M: ProtoMessage>(
    encoding: Encoding,
    message: &M,
) -> Result<Vec<u8>, TwirpError> {
    match encoding {
        Encoding::Protobuf => Ok(message.encode_to_vec()),
        Encoding::Json => to_protojson(message),
    }
}

/// A prost message as LiveKit's server writes it in JSON.
pub fn to_protojson<M: ProtoMessage>(message: &M) -> Result<Vec<u8>, TwirpError> {
    serde_json::to_vec(&ProtoJson(&dynamic(message)?))
        .map_err(|e| TwirpError::internal(format!("writing {} as JSON: {e}", M::FULL_NAME)))
}

/// [`to_protojson`] as a JSON value, to embed in a larger answer.
pub fn to_protojson_value<M: ProtoMessage>(message: &M) -> Result<serde_json::Value, TwirpError> {
    serde_json::to_value(ProtoJson(&dynamic(message)?))
        .map_err(|e| TwirpError::internal(format!("writing {} as JSON: {e}", M::FULL_NAME)))
}

fn dynamic<M: ProtoMessage>(message: &M) -> Result<DynamicMessage, TwirpError> {
    let desc = message_descriptor(M::FULL_NAME)?;
    DynamicMessage::decode(desc, message.encode_to_vec().as_slice())
        .map_err(|e| TwirpError::internal(format!("re-decoding {}: {e}", M::FULL_NAME)))
}

/// Writes a [`DynamicMessage`] as Go's protojson does with `UseProtoNames`
/// and `EmitUnpopulated` (see the module docs).
pub struct ProtoJson<'a>(pub &'a DynamicMessage);

/// Options for the well-known types, which prost-reflect already writes in
/// their canonical form.
fn wkt_options() -> SerializeOptions {
    SerializeOptions::new()
        .stringify_64_bit_integers(true)
        .use_enum_numbers(false)
        .use_proto_field_name(true)
        .skip_default_fields(false)
}

impl Serialize for ProtoJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let message = self.0;
        let desc = message.descriptor();
        if desc.full_name().starts_with("google.protobuf.") {
            return message.serialize_with_options(serializer, &wkt_options());
        }
        let mut map = serializer.serialize_map(None)?;
        // Declaration order, as protojson writes fields.
        for number in desc
            .descriptor_proto()
            .field
            .iter()
            .filter_map(|f| f.number)
        {
            let Some(field) = u32::try_from(number).ok().and_then(|n| desc.get_field(n)) else {
                continue;
            };
            let set = message.has_field(&field);
            if field.containing_oneof().is_some() {
                if set {
                    let value = message.get_field(&field);
                    map.serialize_entry(field.name(), &JsonValue(&value, &field.kind()))?;
                }
                continue;
            }
            let singular_message =
                !field.is_list() && !field.is_map() && matches!(field.kind(), Kind::Message(_));
            if singular_message && !set {
                map.serialize_entry(field.name(), &())?;
                continue;
            }
            let value = message.get_field(&field);
            map.serialize_entry(field.name(), &JsonValue(&value, &field.kind()))?;
        }
        map.end()
    }
}

struct JsonValue<'a>(&'a Value, &'a Kind);

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Bool(v) => serializer.serialize_bool(*v),
            Value::I32(v) => serializer.serialize_i32(*v),
            Value::U32(v) => serializer.serialize_u32(*v),
            Value::I64(v) => serializer.collect_str(v),
            Value::U64(v) => serializer.collect_str(v),
            Value::F32(v) => float(f64::from(*v), serializer),
            Value::F64(v) => float(*v, serializer),
            Value::String(v) => serializer.serialize_str(v),
            Value::Bytes(v) => serializer.serialize_str(&base64(v)),
            Value::EnumNumber(n) => match self.1 {
                Kind::Enum(e) => match e.get_value(*n) {
                    Some(value) => serializer.serialize_str(value.name()),
                    None => serializer.serialize_i32(*n),
                },
                _ => serializer.serialize_i32(*n),
            },
            Value::Message(m) => ProtoJson(m).serialize(serializer),
            Value::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&JsonValue(item, self.1))?;
                }
                seq.end()
            }
            Value::Map(entries) => {
                let value_kind = match self.1 {
                    Kind::Message(entry) if entry.is_map_entry() => {
                        entry.map_entry_value_field().kind()
                    }
                    other => other.clone(),
                };
                let mut sorted: Vec<(&MapKey, &Value)> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(b.0));
                let mut map = serializer.serialize_map(Some(sorted.len()))?;
                for (key, value) in sorted {
                    map.serialize_entry(&map_key(key), &JsonValue(value, &value_kind))?;
                }
                map.end()
            }
        }
    }
}

fn float<S: Serializer>(v: f64, serializer: S) -> Result<S::Ok, S::Error> {
    if v.is_nan() {
        serializer.serialize_str("NaN")
    } else if v == f64::INFINITY {
        serializer.serialize_str("Infinity")
    } else if v == f64::NEG_INFINITY {
        serializer.serialize_str("-Infinity")
    } else {
        serializer.serialize_f64(v)
    }
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::Bool(v) => v.to_string(),
        MapKey::I32(v) => v.to_string(),
        MapKey::I64(v) => v.to_string(),
        MapKey::U32(v) => v.to_string(),
        MapKey::U64(v) => v.to_string(),
        MapKey::String(v) => v.clone(),
    }
}

/// Standard base64 with padding, as protojson writes `bytes`.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

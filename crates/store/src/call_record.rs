//! What is kept of a finished call: its record (LiveKit's `SIPCallInfo`
//! plus what an operator needs to answer "why did this call fail?") and
//! its SIP trace. Both are protobuf messages, like every stored record, so
//! a later version reads what an earlier one wrote.

use livekit_protocol::{SipCallInfo, SipTransferInfo};
use prost::Message;

/// One call, inbound or outbound, as the history keeps it and the API
/// shows it. Live calls have the same shape with `info.ended_at_ns` 0.
#[derive(Clone, PartialEq, Message)]
pub struct CallRecord {
    /// LiveKit's fields: IDs, trunk, rule, room, participant, from/to,
    /// direction, status, timestamps (`created_at_ns` = INVITE,
    /// `started_at_ns` = answer, `ended_at_ns`), disconnect reason, SIP
    /// status, codec, media encryption, SIP Call-ID.
    #[prost(message, optional, tag = "1")]
    pub info: Option<SipCallInfo>,
    /// When the far end first rang (180/183 outbound, our 180 inbound);
    /// 0 when it never did.
    #[prost(int64, tag = "2")]
    pub ringing_at_ns: i64,
    /// `udp`, `tcp` or `tls`.
    #[prost(string, tag = "3")]
    pub transport: String,
    /// The peer's signalling address (`ip:port`).
    #[prost(string, tag = "4")]
    pub remote_address: String,
    /// How the call ended in one word: `answered`, `failed`, `refused`,
    /// `challenged`, `cancelled` (the `result` label of the metrics).
    #[prost(string, tag = "5")]
    pub result: String,
    /// RTP and RTCP figures at the end of the call.
    #[prost(message, optional, tag = "6")]
    pub quality: Option<CallQuality>,
    /// The last transfer asked of the call, and how it went.
    #[prost(message, optional, tag = "7")]
    pub transfer: Option<SipTransferInfo>,
    /// SIP messages in the call's trace (0 when tracing is off).
    #[prost(uint32, tag = "8")]
    pub trace_messages: u32,
    /// The trace hit its size cap: later messages were not kept.
    #[prost(bool, tag = "9")]
    pub trace_truncated: bool,
    /// The SRTP suite, when media is encrypted.
    #[prost(string, tag = "10")]
    pub srtp_suite: String,
}

impl CallRecord {
    /// The `SCL_` call ID.
    pub fn call_id(&self) -> &str {
        self.info.as_ref().map(|i| i.call_id.as_str()).unwrap_or("")
    }

    /// When the call ended, ns since the Unix epoch (0 while it lasts).
    pub fn ended_at_ns(&self) -> i64 {
        self.info.as_ref().map(|i| i.ended_at_ns).unwrap_or(0)
    }
}

/// RTP/RTCP quality of one call, as measured by its media session.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct CallQuality {
    /// RTP packets sent.
    #[prost(uint64, tag = "1")]
    pub packets_sent: u64,
    /// RTP packets received.
    #[prost(uint64, tag = "2")]
    pub packets_received: u64,
    /// Inbound packets lost (RFC 3550 cumulative count).
    #[prost(int64, tag = "3")]
    pub packets_lost: i64,
    /// Inbound interarrival jitter, ms.
    #[prost(double, tag = "4")]
    pub jitter_ms: f64,
    /// 20 ms frames concealed (lost or late audio).
    #[prost(uint64, tag = "5")]
    pub concealed_frames: u64,
    /// Round-trip time from RTCP, ms (0: no report).
    #[prost(double, tag = "6")]
    pub round_trip_ms: f64,
    /// The peer's count of our packets it lost (RTCP).
    #[prost(uint32, tag = "7")]
    pub remote_packets_lost: u32,
    /// Jitter the peer measured on our stream, ms (RTCP).
    #[prost(double, tag = "8")]
    pub remote_jitter_ms: f64,
    /// RTP packets refused by SRTP.
    #[prost(uint64, tag = "9")]
    pub srtp_rejected: u64,
    /// RTCP packets received.
    #[prost(uint64, tag = "10")]
    pub rtcp_received: u64,
}

/// The SIP messages of one call, in the order they crossed the wire.
#[derive(Clone, PartialEq, Message)]
pub struct CallTrace {
    /// The messages.
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<TracedMessage>,
    /// Messages after the size cap were dropped.
    #[prost(bool, tag = "2")]
    pub truncated: bool,
}

/// One SIP message as it was received or sent.
#[derive(Clone, PartialEq, Message)]
pub struct TracedMessage {
    /// When, ns since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub at_ns: i64,
    /// Sent by us (true) or received (false).
    #[prost(bool, tag = "2")]
    pub sent: bool,
    /// `udp`, `tcp` or `tls`.
    #[prost(string, tag = "3")]
    pub transport: String,
    /// Our address (`ip:port`; `0.0.0.0:0` when not known yet, a stream
    /// still connecting).
    #[prost(string, tag = "4")]
    pub local: String,
    /// The peer's address (`ip:port`).
    #[prost(string, tag = "5")]
    pub remote: String,
    /// The message bytes as on the wire (decrypted, for TLS).
    #[prost(bytes = "vec", tag = "6")]
    pub data: Vec<u8>,
}

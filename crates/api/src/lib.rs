//! The HTTP surface of switchboard: the LiveKit SIP API (Twirp
//! `livekit.SIP`), wire-compatible with LiveKit's server, plus an operator
//! endpoint that explains call routing, and a health check.
//!
//! # Endpoints
//!
//! - `POST /twirp/livekit.SIP/<Method>` for the 16 methods of the service
//!   (see [`service::METHODS`]). Bodies are `application/protobuf` or
//!   `application/json` (parameters after `;` ignored); the response uses
//!   the request's encoding. JSON responses are written as LiveKit's server
//!   writes them (protojson, snake_case names, every default emitted; see
//!   [`wire`]); JSON requests may use snake_case or lowerCamelCase keys, enum
//!   names or numbers, and unknown keys are ignored.
//! - `POST /twirp/switchboard.SIP/ExplainCall` (JSON only, `sip.admin`):
//!   how this replica's live routing index would route a call.
//! - `POST /twirp/switchboard.SIP/ListCalls`, `GetCall`, `HangUpCall` and
//!   `GET /calls/<call_id>/trace?format=text|pcap` (`sip.admin`): calls in
//!   progress and the call history with SIP traces (see [`calls`]).
//! - `POST /twirp/livekit.RoomService/<Method>`: room administration over
//!   the embedded rooms, with LiveKit's grants (see [`room_service`]).
//! - `GET /rooms/<room>/ws`: a WebSocket participant (see [`ws`] and
//!   [`ws::session`] for the protocol).
//! - `GET /console`: the web console, a single page of embedded HTML, CSS
//!   and ES modules that calls the endpoints above with tokens it signs
//!   itself (see [`console`]).
//! - `GET /metrics`: call counters in Prometheus' text format
//! - `GET /debug/state` (`sip.admin`): calls, ports, rooms, participants
//!   and transactions now, for leak checks (see [`status`]).
//! - `GET /healthz` (and `GET /`, where LiveKit's server answers health
//!   checks): `200 OK`, or `503` while the process drains.
//!
//! # Errors
//!
//! Twirp JSON `{"code","msg","meta"}` with `Content-Type: application/json`
//! and Twirp's HTTP status for the code ([`twirp::Code::http_status`]).
//! Unknown paths, non-POST requests and other content types are `bad_route`
//! (404, meta `twirp_invalid_route` = `"POST /path"`). A body over
//! `max_body_bytes` is HTTP 413 with code `resource_exhausted`. A refused
//! token is HTTP 401 in plain text, as LiveKit answers it; see [`auth`].
//!
//! # ExplainCall
//!
//! Request (every field optional; `source_ip` empty skips the address check):
//!
//! ```json
//! {"from": "+15550100", "to": "+15550200", "source_ip": "203.0.113.5",
//!  "from_host": "sip.example.com", "request_uri_user": "+15550200",
//!  "pin": "1234", "no_pin": false}
//! ```
//!
//! Response:
//!
//! ```json
//! {"verdict": "accepted: trunk ST_x, rule SDR_y, room R",
//!  "accepted": true,
//!  "trunk": {"id": "ST_x", "match": "specific", "digest_auth": false, "error": null,
//!            "passed_over": [{"kind": "trunk", "id": "ST_z", "name": "other",
//!                             "reason": "called number \"+1\" (To user) not in numbers"}]},
//!  "dispatch": {"rule_id": "SDR_y", "request_pin": false, "room_name": "R",
//!               "participant_identity": "sip_+15550100",
//!               "participant_name": "Phone +15550100", "error": null,
//!               "passed_over": []}}
//! ```
//!
//! - `verdict`: one line, `accepted: …`, or `refused: <SIP status> <reason>:
//!   <routing error>` (see [`explain::refusal_status`]).
//! - `accepted`: the call would be put in a room, or asked for its PIN
//!   (`dispatch.request_pin`).
//! - `trunk.match`: `specific` (lists the called number), `default`
//!   (wildcard trunk), `unmatched` (no trunk, allowed by policy) or `none`
//!   (refused; `trunk.error` says why).
//! - `dispatch`: `null` when the trunk step refused the call; otherwise
//!   the rule, or `rule_id` "" with `error` set.
//! - `passed_over[].kind`: `trunk` or `dispatch_rule`; `reason` is the
//!   routing crate's explanation in words.
//!
//! # Call control
//!
//! CreateSIPParticipant and TransferSIPParticipant are validated here and
//! handed to a [`CallControl`] implementation plugged in by the binary.

pub mod agents;
pub mod auth;
pub mod call_control;
pub mod calls;
pub mod console;
pub mod explain;
mod listener;
pub mod metrics;
pub mod platform;
pub mod replicas;
pub mod room_service;
pub mod rtc;
mod server;
pub mod service;
pub mod status;
mod streams;
pub mod trace_export;
pub mod twirp;
pub mod webhook_events;
pub mod wire;
pub mod ws;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use switchboard_rooms::Rooms;
use switchboard_routing::livekit_protocol::{SipInboundTrunkInfo, SipOutboundTrunkInfo};
use switchboard_store::{LiveRoutingIndex, SipStore};

pub use auth::ApiKeys;
pub use call_control::{CallControl, CallFuture, OutboundCall, Transfer};
pub use listener::HttpLimits;
pub use server::{router, serve, serve_limited};
pub use status::{BanEntry, CallStatus, HangUpRefused, StatusSource};
pub use twirp::{Code, TwirpError};
pub use ws::{SessionCount, WebSocketConfig};

/// The default limit on a request body: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Everything the API needs.
pub struct ApiState {
    /// Trunks and dispatch rules.
    pub store: SipStore,
    /// This replica's routing index (ExplainCall).
    pub routing: Arc<LiveRoutingIndex>,
    /// Outbound calls and transfers.
    pub call_control: Arc<dyn CallControl>,
    /// API keys and secrets.
    pub keys: ApiKeys,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Set when the process drains: health answers 503 and no new calls
    /// are placed; everything else keeps working.
    pub draining: Arc<AtomicBool>,
    /// The rooms calls join: RoomService manages them, WebSocket
    /// participants sit in them.
    pub rooms: Rooms,
    /// Call-side numbers for `/debug/state`.
    pub status: Arc<dyn StatusSource>,
    /// Limits of the WebSocket endpoint.
    pub websocket: WebSocketConfig,
    /// WebSocket sessions open now (counted against
    /// `websocket.max_participants`).
    pub websocket_sessions: SessionCount,
    /// Where WebRTC participants' (LiveKit clients') media sockets live.
    pub webrtc: rtc::WebRtcConfig,
    /// LiveKit Agents workers and their jobs.
    pub agents: agents::Agents,
    /// Whether Get and List return trunks' `auth_password` (LiveKit does;
    /// by default switchboard answers with it empty, as LiveKit's CLI
    /// shows only the user name).
    pub return_passwords: bool,
    /// Limits and defaults of the `/v1/` trunk API.
    pub platform: platform::PlatformSettings,
    /// Networks a voice bot's URL may not lead to (StartStream).
    pub refused_destinations: Vec<ipnet::IpNet>,
    /// Finished calls (ListCalls, GetCall, traces); `None` when the
    /// history is off.
    pub call_history: Option<switchboard_store::CallHistory>,
    /// Requests by route and code, and their latency.
    pub metrics: metrics::ApiMetrics,
    /// Where rooms and calls are when replicas share rooms: orders for
    /// another replica's room or call are forwarded there, members of its
    /// rooms relayed there (`replicas`). `None`: every room is here.
    pub directory: Option<Arc<dyn switchboard_rooms::RoomDirectory>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("keys", &self.keys)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("draining", &self.is_draining())
            .field("websocket", &self.websocket)
            .field("websocket_sessions", &self.websocket_sessions.get())
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// True once the drain started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// An inbound trunk as Get and List show it: without its password
    /// unless `return_passwords` is set.
    pub fn shown_inbound(&self, mut trunk: SipInboundTrunkInfo) -> SipInboundTrunkInfo {
        if !self.return_passwords {
            trunk.auth_password.clear();
        }
        trunk
    }

    /// An outbound trunk as Get and List show it (see [`ApiState::shown_inbound`]).
    pub fn shown_outbound(&self, mut trunk: SipOutboundTrunkInfo) -> SipOutboundTrunkInfo {
        if !self.return_passwords {
            trunk.auth_password.clear();
        }
        trunk
    }
}

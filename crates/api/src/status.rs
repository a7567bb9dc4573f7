//! `GET /debug/state`: counts of everything that should go back to zero
//! when nothing happens, for leak checks in tests and in production, and
//! whether routing has caught up with the store. Needs a token with
//! `sip.admin`.
//!
//! The API knows its rooms and WebSocket sessions; calls, RTP ports and SIP
//! transactions belong to call control, which the API must not depend on,
//! so the binary plugs them in through [`StatusSource`].

use serde::Serialize;
use switchboard_store::{CallRecord, CallTrace};

/// What call control reports for `/debug/state`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CallStatus {
    /// Calls in progress.
    pub calls_active: usize,
    /// Call tasks alive, refused calls included.
    pub call_tasks: usize,
    /// RTP port pairs held by calls.
    pub rtp_ports_active: usize,
    /// Live SIP transactions: (server, client).
    pub sip_transactions: (usize, usize),
}

/// Where the API reads the call-side numbers (the binary implements it from
/// the gateway and the SIP stack).
pub trait StatusSource: Send + Sync + 'static {
    /// The numbers now.
    fn call_status(&self) -> CallStatus;

    /// Call control's metrics in Prometheus' text format (`GET /metrics`).
    fn metrics(&self) -> String {
        String::new()
    }

    /// The SIP sources banned now (`switchboard.SIP/ListBans`).
    fn bans(&self) -> Vec<BanEntry> {
        Vec::new()
    }

    /// Lifts the ban of a source; whether there was one
    /// (`switchboard.SIP/LiftBan`).
    fn lift_ban(&self, _ip: std::net::IpAddr) -> bool {
        false
    }

    /// The records of the calls in progress, oldest first
    /// (`switchboard.SIP/ListCalls` with `live`).
    fn live_calls(&self) -> Vec<CallRecord> {
        Vec::new()
    }

    /// The record of one call in progress.
    fn live_call(&self, _call_id: &str) -> Option<CallRecord> {
        None
    }

    /// The SIP trace so far of a call in progress.
    fn live_trace(&self, _call_id: &str) -> Option<CallTrace> {
        None
    }

    /// Hangs up a call in progress (`switchboard.SIP/HangUpCall`).
    fn hang_up(&self, _call_id: &str) -> Result<(), HangUpRefused> {
        Err(HangUpRefused::NoSuchCall)
    }
}

/// Why a hang-up was not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangUpRefused {
    /// No call in progress has that ID.
    NoSuchCall,
    /// The call has no participant in a room yet.
    NotInRoom,
}

/// One banned SIP source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BanEntry {
    /// The source address.
    pub ip: String,
    /// Seconds until the ban ends.
    pub remaining_secs: u64,
    /// Why it was banned (flood, failed authentications, calls to unknown
    /// numbers, scanner User-Agent).
    pub reason: String,
}

/// The body of `GET /debug/state`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DebugState {
    /// Calls in progress.
    pub calls_active: usize,
    /// Call tasks alive.
    pub call_tasks: usize,
    /// RTP port pairs held.
    pub rtp_ports_active: usize,
    /// Rooms open.
    pub rooms: usize,
    /// Participants in all rooms (SIP and WebSocket).
    pub participants: usize,
    /// WebSocket sessions open (joined or on their way out).
    pub websocket_sessions: usize,
    /// Live SIP transactions: `[server, client]`.
    pub sip_transactions: (usize, usize),
    /// The latest store version this replica has heard of.
    pub store_version: u64,
    /// The store version this replica's routing index was built from:
    /// once it reaches `store_version`, calls are routed by every change
    /// made so far (tests wait for that instead of sleeping).
    pub routing_version: u64,
}

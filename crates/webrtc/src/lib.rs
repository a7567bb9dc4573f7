//! LiveKit's client protocol over WebRTC, so that the official LiveKit
//! client SDKs (and agents built on them) join switchboard's rooms.
//!
//! - [`session::Session`]: one client's v0 signalling session (`/rtc`,
//!   two peer connections, subscriber primary), sans-IO: the API's driver
//!   feeds it the client's `SignalRequest`s, the room's events, datagrams
//!   and time, and sends what it yields.
//! - [`peer::Peer`]: one ICE-lite, DTLS-SRTP, SCTP peer connection
//!   (webrtc-rs `rtc`), Opus only.
//! - [`models`]: room members as LiveKit's `ParticipantInfo`.
//! - [`client::Client`]: the other side, a client's session, for joining
//!   a room on a LiveKit server (or another switchboard) as a participant.

pub mod client;
pub mod ids;
pub mod models;
pub mod peer;
pub mod session;

pub use ids::track_sid_of;
pub use session::{ClientOptions, Ending, Grants, Session, Side};

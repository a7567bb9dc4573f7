//! Media streams: a room participant that streams its room's audio to a
//! voice bot over a WebSocket and plays what the bot says back into the
//! room, speaking the protocols bots already understand (Twilio Media
//! Streams, Telnyx media streaming, or raw 16-bit PCM).
//!
//! switchboard is the WebSocket *client*, as Twilio and Telnyx are: it
//! connects to the bot's `ws://` or `wss://` URL ([`connect`]), then
//! [`start`] runs the stream on one task until the bot closes the socket,
//! the caller asks it to stop, or the participant leaves the room.
//!
//! The protocols themselves are sans-IO ([`StreamSession`]): messages and
//! time in, messages and audio frames out, tested without a socket. The
//! driver ([`start`]) only moves bytes and keeps the 20 ms clock.
//!
//! ```text
//! room mix ──pull──▶ 8 kHz ──▶ media (µ-law / A-law / L16) ──▶ bot
//! room     ◀─push─── 8 kHz ◀── playout queue (marks, clear) ◀── bot
//! ```

mod connect;
mod driver;
mod playout;
mod protocol;

pub use connect::{
    connect, connect_websocket, connect_with_tls, tls_config_with_roots, websocket_url, BotSocket,
    BotStream, ConnectStage, StreamError, StreamSpec, WebSocketOptions,
};
pub use driver::{join_request, start, StreamEnd, StreamHandle};
pub use playout::{PlayoutLimits, FRAME_SAMPLES};
pub use protocol::{
    CallFacts, G711Law, Outgoing, PlayoutFrame, StreamProtocol, StreamSession, StreamStats,
};

//! SIP for switchboard: message parsing, transports, transactions, dialogs
//! and digest authentication. Knows nothing of trunks, rooms or media.
//!
//! The protocol is a sans-IO core in the manner of `quinn-proto`:
//! [`Endpoint`] is fed datagrams, framed stream messages and the time, and
//! is asked for what to transmit, what happened, and when it next needs to
//! be woken. [`transport`] is the thin tokio driver that owns the sockets.
//! Tests drive the core with virtual time, so every timer of RFC 3261 is
//! tested in milliseconds.
//!
//! Why not rsipstack: its parser takes the last of several Content-Length
//! values instead of refusing them, accepts bracketed Request-URIs,
//! unbalanced quotes and Max-Forwards 300 (RFC 4475 wants 400s), rejects
//! valid extension methods (so no 501), and re-escapes `%` in a URI on every
//! serialisation. Its transactions and transports are bound to that parser.
//! See `docs/architecture.md` for the evaluation.

pub mod auth;
mod core;
pub mod counts;
pub mod dialog;
pub mod framing;
pub mod guard;
pub mod hep;
pub mod message;
mod random;
pub mod tap;
pub mod transaction;
pub mod transport;

pub use crate::core::{
    AdvertisedPorts, ClientTxnId, Endpoint, EndpointConfig, Event, Incoming, RequestFailure,
    RespondError, ServerTxnId, Stats,
};
pub use guard::{Ban, Bucket, GuardConfig, GuardStats, Offence};
pub use random::{fill_random, random_token};

use std::net::SocketAddr;
use std::time::Duration;

/// Size limits applied to every message, from any transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted, header section and body together.
    pub max_message_bytes: usize,
    /// Most header field lines accepted in one message.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // The largest UDP payload; a larger message on a stream is
            // refused with 513 rather than buffered.
            max_message_bytes: 65_535,
            max_headers: 256,
        }
    }
}

/// The RFC 3261 timer base values (§17.1.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate: the first retransmission interval.
    pub t1: Duration,
    /// Longest retransmission interval for non-INVITE requests and INVITE
    /// responses.
    pub t2: Duration,
    /// Longest time a message stays in the network.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// A SIP transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP datagrams.
    Udp,
    /// TCP stream.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// True for stream transports, where retransmissions are not needed.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The Via transport token.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

/// An opaque handle to one stream connection of the transport driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// The path a message travelled: transport, both addresses and, for streams,
/// the connection. A response goes back along the flow of its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// The transport.
    pub transport: Transport,
    /// Our address.
    pub local: SocketAddr,
    /// The peer's address (the packet's source, not the Via).
    pub remote: SocketAddr,
    /// The stream connection, for TCP and TLS.
    pub connection: Option<ConnectionId>,
}

/// Where to send a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Along an existing flow (a response, or an in-dialog request on the
    /// connection the dialog uses).
    Flow(Flow),
    /// To an address, reusing a connection to it when there is one.
    Address {
        /// The transport to use.
        transport: Transport,
        /// The peer address.
        addr: SocketAddr,
    },
    /// An in-dialog request: on the dialog's connection while it is open,
    /// else (a stream that closed) on a connection to the remote target,
    /// as RFC 3261 §12.2.1.1 routes it. Over UDP, to the flow's source.
    Dialog {
        /// The flow the dialog travels on.
        flow: Flow,
        /// The remote target's address.
        target: SocketAddr,
    },
}

impl Destination {
    /// The transport a message to this destination uses.
    pub fn transport(&self) -> Transport {
        match self {
            Destination::Flow(flow) | Destination::Dialog { flow, .. } => flow.transport,
            Destination::Address { transport, .. } => *transport,
        }
    }

    /// Whether a failure of `failed` concerns a message sent here.
    pub fn affected_by(&self, failed: &Destination) -> bool {
        match (self, failed) {
            (a, b) if a == b => true,
            (Destination::Dialog { flow, .. }, Destination::Flow(f)) => flow == f,
            (Destination::Dialog { flow, target }, Destination::Address { transport, addr }) => {
                flow.transport == *transport && target == addr
            }
            _ => false,
        }
    }
}

/// Bytes to send somewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub destination: Destination,
    /// The serialised message (or a keep-alive).
    pub payload: bytes::Bytes,
}

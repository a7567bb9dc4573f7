//! Where a room lives when this process is not the only one serving rooms:
//! here (the embedded rooms of this process) or on another server that
//! speaks LiveKit's client protocol (a LiveKit server, or the replica that
//! owns the room). The gateway, the API and the uplink ask; the binary
//! answers (a fixed LiveKit server, or leases shared by replicas).

use std::future::Future;
use std::pin::Pin;

/// A boxed future, so the trait stays object-safe without a macro crate.
pub type DirectoryFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a room is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomHome {
    /// In this process's embedded rooms.
    Here,
    /// On the server at this URL (`http(s)://` or `ws(s)://`), reached
    /// over LiveKit's client protocol and API.
    Elsewhere(String),
}

/// Answers where rooms and SIP participants are.
pub trait RoomDirectory: Send + Sync {
    /// Where `room` is served, taking it here if nobody serves it yet (a
    /// member is about to join it).
    fn locate<'a>(&'a self, room: &'a str) -> DirectoryFuture<'a, Result<RoomHome, String>>;

    /// The server that serves `room`, if that is not this process (an API
    /// order for the room goes there); never takes the room.
    fn owner_elsewhere<'a>(&'a self, room: &'a str) -> DirectoryFuture<'a, Option<String>>;

    /// The server holding the call of SIP participant `identity` of `room`,
    /// if that is not this process (a transfer order goes there).
    fn call_elsewhere<'a>(
        &'a self,
        room: &'a str,
        identity: &'a str,
    ) -> DirectoryFuture<'a, Option<String>>;

    /// The other servers that serve rooms alongside this one (ListRooms
    /// lists theirs too).
    fn other_servers(&self) -> DirectoryFuture<'_, Vec<String>> {
        Box::pin(async { Vec::new() })
    }

    /// Other servers with workers of agent `agent_name` registered (a room
    /// served here whose agent has no worker here is dispatched there).
    fn agent_hosts<'a>(&'a self, agent_name: &'a str) -> DirectoryFuture<'a, Vec<String>> {
        let _ = agent_name;
        Box::pin(async { Vec::new() })
    }
}

//! Durable SIP trunks and dispatch rules for switchboard.
//!
//! [`SipStore`] is what the API and the gateway call: create, get, update,
//! list and delete of inbound trunks, outbound trunks and dispatch rules (with
//! LiveKit's validation, conflict checks, filters and pagination), a
//! [`StoreSnapshot`] for the routing index, and a [`ChangeFeed`].
//! [`LiveRoutingIndex`] keeps a [`switchboard_routing::RoutingIndex`] fresh
//! from that feed.
//!
//! Two backends implement [`StoreBackend`]: [`RedbBackend`], an embedded
//! crash-safe file under the data directory (the default), and
//! [`RedisBackend`], shared by replicas. Records are the protobuf encoding of
//! the LiveKit messages, so no field is lost. Every write is atomic, and a
//! create or update is conflict-checked at the same store version it is
//! written at, so two replicas cannot both create conflicting trunks.
//!
//! [`CallHistory`] keeps finished calls ([`CallRecord`], with their
//! [`CallTrace`] when traced) for a retention set by [`HistoryConfig`]:
//! a record count, a record age and a shorter trace age, applied in the
//! same write as every put batch. It lives in its own file
//! ([`CALL_HISTORY_FILE`]) or in Redis, so that writing call records never
//! bumps the routing store's version and rebuilds the routing index.
//! [`CallHistory::list`] pages newest-ended first through a [`CallFilter`].

mod backend;
mod bans;
mod call_history;
mod call_record;
mod error;
mod leases;
mod live;
mod platform;
mod random;
mod redb_backend;
mod redis_backend;
mod store;

pub use backend::{BoxFuture, Loaded, Records, StoreBackend, Table, WriteOp};
pub use bans::{NonceCounts, SharedBan, SharedBans};
pub use call_history::{
    is_call_id, CallFilter, CallHistory, CallPage, HistoryConfig, CALL_HISTORY_FILE,
};
pub use call_record::{CallQuality, CallRecord, CallTrace, TracedMessage};
pub use error::StoreError;
pub use leases::{LeaseKey, Leases};
pub use live::LiveRoutingIndex;
pub use platform::{
    DialPlanRecord, PlatformTrunk, PlatformTrunkPage, PlatformTrunkWrite, ProvisioningFault,
};
pub use random::{generate_id, generate_platform_trunk_id, is_platform_trunk_id, OsRandom};
pub use redb_backend::{RedbBackend, DATABASE_FILE};
pub use redis_backend::{RedisBackend, RedisConfig};
pub use store::{ChangeFeed, SipStore, StoreSnapshot};

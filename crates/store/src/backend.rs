//! The storage backend trait: a versioned key-value store of three tables
//! with atomic, optionally conditional, multi-record commits and a change feed.
//! All policy (IDs, validation, conflicts, timestamps) lives above it in
//! [`crate::SipStore`], so both backends behave the same by construction.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use tokio::sync::watch;

use crate::error::StoreError;

/// A boxed future, so the trait can be used as `dyn StoreBackend`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The record tables: LiveKit's three (its Redis hash names) and
/// switchboard's own for the /v1 trunk API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// `SIPInboundTrunkInfo` by `ST_` ID.
    InboundTrunks,
    /// `SIPOutboundTrunkInfo` by `ST_` ID.
    OutboundTrunks,
    /// `SIPDispatchRuleInfo` by `SDR_` ID.
    DispatchRules,
    /// The /v1 API's carrier trunks ([`crate::PlatformTrunk`]) by `trunk_` ID.
    PlatformTrunks,
    /// How an outbound trunk writes numbers ([`crate::DialPlanRecord`]) by its `ST_` ID.
    OutboundDialPlans,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 5] = [
        Table::InboundTrunks,
        Table::OutboundTrunks,
        Table::DispatchRules,
        Table::PlatformTrunks,
        Table::OutboundDialPlans,
    ];

    /// The tables the routing index is built from.
    pub const ROUTING: [Table; 3] = [
        Table::InboundTrunks,
        Table::OutboundTrunks,
        Table::DispatchRules,
    ];

    /// The table's storage name.
    pub fn name(self) -> &'static str {
        match self {
            Table::InboundTrunks => "sip_inbound_trunk",
            Table::OutboundTrunks => "sip_outbound_trunk",
            Table::DispatchRules => "sip_dispatch_rule",
            Table::PlatformTrunks => "switchboard_platform_trunk",
            Table::OutboundDialPlans => "switchboard_outbound_dial_plan",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Raw records of one table, sorted by ID, read at one version.
pub type Records = Vec<(String, Vec<u8>)>;

/// Tables read together at one version.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The store version the records were read at.
    pub version: u64,
    /// Records of each requested table, in the order requested.
    pub tables: Vec<Records>,
}

/// One change inside a commit.
#[derive(Clone)]
pub enum WriteOp {
    /// Insert or replace a record.
    Put {
        /// Which table.
        table: Table,
        /// The record ID.
        id: String,
        /// The protobuf-encoded record.
        value: Vec<u8>,
    },
    /// Remove a record (no-op if absent).
    Delete {
        /// Which table.
        table: Table,
        /// The record ID.
        id: String,
    },
}

impl fmt::Debug for WriteOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values hold trunk passwords: never print them.
        match self {
            WriteOp::Put { table, id, value } => {
                write!(f, "Put({table}, {id}, {} bytes)", value.len())
            }
            WriteOp::Delete { table, id } => write!(f, "Delete({table}, {id})"),
        }
    }
}

/// A versioned store of [`Table::ALL`]. Every successful commit increments the
/// version by one and wakes every subscriber, on every replica.
pub trait StoreBackend: Send + Sync + 'static {
    /// Reads the given tables and the version in one consistent view.
    fn load(&self, tables: &[Table]) -> BoxFuture<'_, Result<Loaded, StoreError>>;

    /// Reads one record.
    fn get(&self, table: Table, id: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>>;

    /// Applies `ops` atomically if the version is still `expected` (or
    /// unconditionally when `None`). Returns the new version, or `None` when
    /// the version had moved and nothing was written.
    fn commit(
        &self,
        expected: Option<u64>,
        ops: Vec<WriteOp>,
    ) -> BoxFuture<'_, Result<Option<u64>, StoreError>>;

    /// A receiver of the latest known version; it changes on every commit
    /// made through any handle on the same data.
    fn subscribe(&self) -> watch::Receiver<u64>;
}

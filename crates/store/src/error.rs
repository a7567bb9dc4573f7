//! Store errors, each with the Twirp code the API answers with.

use switchboard_routing::{ErrorCode, RoutingError};

use crate::backend::Table;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Validation, conflict or not-found: the user's request is at fault.
    #[error(transparent)]
    Routing(#[from] RoutingError),
    /// The embedded database failed.
    #[error("embedded store: {0}")]
    Redb(String),
    /// Redis failed or cannot be reached.
    #[error("redis store: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored record does not decode: the store is damaged or was written
    /// by something else.
    #[error("stored {table} record {id:?} does not decode: {source}")]
    Corrupt {
        /// Where it is.
        table: Table,
        /// Its key.
        id: String,
        /// The protobuf error.
        source: prost::DecodeError,
    },
    /// A stored call record or trace does not decode: the history is
    /// damaged or was written by something else.
    #[error("stored {what} {id:?} does not decode: {source}")]
    CorruptHistory {
        /// `call record` or `call trace`.
        what: &'static str,
        /// The call ID.
        id: String,
        /// The protobuf error.
        source: prost::DecodeError,
    },
    /// A call history `page_token` that does not decode into a position: a
    /// client made it up or mangled it.
    #[error("page_token is not one this server gave")]
    BadPageToken,
    /// Concurrent writers kept invalidating this write; it was not applied.
    #[error("too many concurrent writes; try again")]
    Contention,
    /// The operating system's random source failed, so no ID could be made.
    #[error("random source failed: {0}")]
    Random(getrandom::Error),
    /// The configured number of carrier trunks exists already.
    #[error("the trunk limit of {max} is reached")]
    AtCapacity {
        /// The limit.
        max: usize,
    },
    /// A test asked for this write to fail here (debug builds only).
    #[error("injected fault at {0}")]
    InjectedFault(&'static str),
    /// A blocking store task panicked or was cancelled.
    #[error("store task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// The Twirp code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::Routing(e) => e.code(),
            StoreError::Redis(_) | StoreError::Contention => ErrorCode::Unavailable,
            StoreError::AtCapacity { .. } => ErrorCode::FailedPrecondition,
            StoreError::BadPageToken => ErrorCode::InvalidArgument,
            StoreError::Redb(_)
            | StoreError::Corrupt { .. }
            | StoreError::CorruptHistory { .. }
            | StoreError::Random(_)
            | StoreError::InjectedFault(_)
            | StoreError::Task(_) => ErrorCode::Internal,
        }
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Redb(e.to_string())
    }
}

macro_rules! redb_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(e.to_string())
            }
        }
    )*};
}
redb_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

//! A routing index kept fresh from the store's change feed.

use std::sync::Arc;
use std::time::Duration;

use switchboard_routing::{RoutingIndex, RoutingOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::StoreError;
use crate::store::SipStore;

/// The current [`RoutingIndex`], rebuilt in the background whenever the
/// store changes (through this replica or any other). Dropping it stops the
/// refresh task.
pub struct LiveRoutingIndex {
    rx: watch::Receiver<(u64, Arc<RoutingIndex>)>,
    task: JoinHandle<()>,
}

impl Drop for LiveRoutingIndex {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LiveRoutingIndex {
    /// Builds the first index from a snapshot and starts following changes.
    pub async fn start(
        store: SipStore,
        options: RoutingOptions,
    ) -> Result<LiveRoutingIndex, StoreError> {
        // Subscribe before the first snapshot so no change can fall between them.
        let mut feed = store.subscribe();
        let first = store.snapshot().await?;
        let (tx, rx) = watch::channel((first.version, Arc::new(first.routing_index(options))));
        let task = tokio::spawn(async move {
            while feed.changed().await.is_some() {
                loop {
                    match store.snapshot().await {
                        Ok(snapshot) => {
                            let index = Arc::new(snapshot.routing_index(options));
                            if tx.send((snapshot.version, index)).is_err() {
                                return;
                            }
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "routing index refresh failed; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
        });
        Ok(LiveRoutingIndex { rx, task })
    }

    /// The index to match the next call with.
    pub fn current(&self) -> Arc<RoutingIndex> {
        self.rx.borrow().1.clone()
    }

    /// The store version the current index was built from.
    pub fn version(&self) -> u64 {
        self.rx.borrow().0
    }

    /// A receiver that sees every new index.
    pub fn watch(&self) -> watch::Receiver<(u64, Arc<RoutingIndex>)> {
        self.rx.clone()
    }
}

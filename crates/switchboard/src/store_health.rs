//! Whether the store answers: one read every few seconds, timed, for the
//! `switchboard_store_up` and `switchboard_store_ping_seconds` gauges.
//! (A Redis that is down shows here before the next API write fails.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_store::SipStore;
use tracing::warn;

/// How often the store is read.
const INTERVAL: Duration = Duration::from_secs(5);
/// A read slower than this counts as the store being down.
const PATIENCE: Duration = Duration::from_secs(3);

/// The last check's result.
#[derive(Debug, Default)]
pub struct StoreHealth {
    up: AtomicBool,
    ping_micros: AtomicU64,
}

impl StoreHealth {
    /// Checks `store` now and then every few seconds, for the life of the
    /// process.
    pub fn watch(store: SipStore) -> Arc<StoreHealth> {
        let health = Arc::new(StoreHealth::default());
        let checked = health.clone();
        tokio::spawn(async move {
            let mut was_up = true;
            loop {
                let started = Instant::now();
                // Any ID: a missing record is an answer.
                let read = store.get_inbound_trunk("ST_health_check");
                let up = matches!(tokio::time::timeout(PATIENCE, read).await, Ok(Ok(_)));
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                checked.ping_micros.store(micros, Ordering::Relaxed);
                checked.up.store(up, Ordering::Relaxed);
                if was_up && !up {
                    warn!("the store does not answer");
                }
                was_up = up;
                tokio::time::sleep(INTERVAL).await;
            }
        });
        health
    }

    /// The gauges in Prometheus' text format.
    pub fn metrics_text(&self) -> String {
        format!(
            "# HELP switchboard_store_up 1 when the last read of the store (embedded file or Redis) answered within 3 s.\n\
             # TYPE switchboard_store_up gauge\n\
             switchboard_store_up {}\n\
             # HELP switchboard_store_ping_seconds How long the last read of the store took.\n\
             # TYPE switchboard_store_ping_seconds gauge\n\
             switchboard_store_ping_seconds {}\n",
            u8::from(self.up.load(Ordering::Relaxed)),
            self.ping_micros.load(Ordering::Relaxed) as f64 / 1e6
        )
    }
}

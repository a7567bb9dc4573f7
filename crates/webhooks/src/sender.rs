//! One task per receiver: takes the next event after its cursor, sends it
//! until the receiver answers 2xx or the event is too old, moves the
//! cursor, and so on. One event at a time, so a receiver sees them in
//! order.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;
use tracing::{debug, error, warn};

use crate::http::{Client, PostError, Target};
use crate::queue::Event;
use crate::{blocking, Shared};

/// How long a sender waits before reading the queue again after the file
/// failed it (a full disk, say).
const QUEUE_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Wall-clock time now, unix milliseconds (0 before 1970).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Resolves when `shutdown` or dropping the last handle asks the senders
/// to stop (a dropped sender side counts as asking).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// How one event ended for one receiver.
enum Outcome {
    Delivered,
    GaveUp,
    Stopped,
}

/// A receiver's sender task.
pub(crate) struct Sender {
    pub shared: Arc<Shared>,
    pub target: Arc<Target>,
    pub client: Client,
    /// The last sequence this receiver is done with.
    pub cursor: u64,
    pub stop: watch::Receiver<bool>,
    /// The last attempt failed: while so, an event already older than
    /// `max_event_age` is given up without an attempt, so that a receiver
    /// down for hours costs one timeout per fresh event, not per stale one.
    pub failing: bool,
}

impl Sender {
    pub(crate) async fn run(mut self) {
        let mut latest = self.shared.latest.subscribe();
        loop {
            // Marked seen before reading, so an event enqueued after the
            // read below still wakes us.
            latest.borrow_and_update();
            let cursor = self.cursor;
            let next = blocking(&self.shared, move |q| q.next_after(cursor)).await;
            let event = match next {
                Ok(Some(event)) => event,
                Ok(None) => {
                    tokio::select! {
                        _ = latest.changed() => continue,
                        _ = stopped(&mut self.stop) => return,
                    }
                }
                Err(e) => {
                    error!(host = %self.target.host, error = %e, "webhook queue read failed");
                    tokio::select! {
                        _ = tokio::time::sleep(QUEUE_ERROR_PAUSE) => continue,
                        _ = stopped(&mut self.stop) => return,
                    }
                }
            };
            let seq = event.seq;
            match self.deliver(event).await {
                Outcome::Stopped => return,
                Outcome::Delivered | Outcome::GaveUp => {}
            }
            // The in-memory cursor moves on even if the commit fails: the
            // event then comes again after a restart, which is the
            // at-least-once promise anyway.
            self.cursor = seq;
            let url = self.target.url.clone();
            if let Err(e) = blocking(&self.shared, move |q| q.advance(&url, seq)).await {
                error!(host = %self.target.host, seq, error = %e, "webhook cursor commit failed");
            }
        }
    }

    async fn deliver(&mut self, event: Event) -> Outcome {
        let config = &self.shared.config;
        let stats = &self.shared.stats;
        let max_age = config.max_event_age;
        let age = |event_ms: u64| Duration::from_millis(now_ms().saturating_sub(event_ms));
        let body = Bytes::from(event.body);
        let mut backoff = config.initial_backoff;
        let mut attempts: u32 = 0;
        loop {
            if attempts == 0 && self.failing && age(event.enqueued_ms) >= max_age {
                warn!(
                    host = %self.target.host,
                    seq = event.seq,
                    age_ms = u64::try_from(age(event.enqueued_ms).as_millis()).unwrap_or(u64::MAX),
                    "webhook given up unsent: older than max_event_age while the receiver is failing"
                );
                stats.given_up.fetch_add(1, Ordering::Relaxed);
                return Outcome::GaveUp;
            }
            attempts += 1;
            // A fresh token for every attempt: it is valid for 5 minutes and
            // retries go on for up to max_event_age.
            let result = match crate::sign::sign(&config.api_key, &config.api_secret, &body) {
                Ok(token) => tokio::select! {
                    r = self.client.post(&body, &token) => r,
                    _ = stopped(&mut self.stop) => return Outcome::Stopped,
                },
                Err(e) => Err(PostError::Sign(e.to_string())),
            };
            let error = match result {
                Ok(status) if status.is_success() => {
                    self.failing = false;
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    debug!(host = %self.target.host, seq = event.seq, attempts, "webhook delivered");
                    return Outcome::Delivered;
                }
                // Redirects are not followed (LiveKit's Go client would turn
                // a redirected POST into a GET, which delivers nothing).
                Ok(status) => format!("HTTP {}", status.as_u16()),
                Err(e) => e.to_string(),
            };
            self.failing = true;
            let now_age = age(event.enqueued_ms);
            if now_age >= max_age {
                warn!(
                    host = %self.target.host,
                    seq = event.seq,
                    attempts,
                    error = %error,
                    "webhook given up after max_event_age"
                );
                stats.given_up.fetch_add(1, Ordering::Relaxed);
                return Outcome::GaveUp;
            }
            // The last wait ends at the event's deadline, where one last
            // attempt is made: the give-up comes on time rather than up to
            // max_backoff late.
            let wait = backoff.min(max_age - now_age);
            warn!(
                host = %self.target.host,
                seq = event.seq,
                attempt = attempts,
                error = %error,
                retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "webhook delivery failed"
            );
            stats.retries.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped(&mut self.stop) => return Outcome::Stopped,
            }
            backoff = backoff.saturating_mul(2).min(config.max_backoff);
        }
    }
}

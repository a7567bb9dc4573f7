//! LiveKit-format webhooks, delivered durably.
//!
//! The caller hands [`Webhooks::enqueue`] an already-encoded body (the JSON
//! of livekit-protocol's `WebhookEvent`); it is committed to a redb file
//! before `enqueue` returns, then POSTed to every configured URL, signed
//! exactly as LiveKit's server signs webhooks, so that the official SDKs'
//! `WebhookReceiver`s verify it:
//!
//! - `Content-Type: application/webhook+json`;
//! - `Authorization: <token>`, bare (no "Bearer "): an HS256 access token
//!   issued by the API key, signed with its secret, valid 5 minutes, whose
//!   claim `sha256` is the standard padded base64 of the body's SHA-256.
//!
//! Each URL has its own sender task and durable cursor: events reach a
//! receiver in order (event N+1 is not sent before N is delivered or
//! given up), failures are retried with exponential backoff until the
//! event is [`max_event_age`](WebhookConfig::max_event_age) old, and after
//! a restart each receiver resumes from its cursor. The queue is bounded
//! ([`max_queued`](WebhookConfig::max_queued)); beyond it the oldest
//! undelivered events are dropped, counted in [`WebhookStats::dropped`]
//! (for the caller's `WebhookEvent.num_dropped`, if it wants) and logged.
//!
//! Delivery is at least once: an event whose 2xx arrived just before a
//! crash, or that was in flight at shutdown, is sent again. Receivers tell
//! repeats apart by the event's `id`, as they must with LiveKit too.

mod config;
mod http;
mod queue;
mod sender;
mod sign;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

pub use config::{
    WebhookConfig, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_EVENT_AGE, DEFAULT_MAX_QUEUED, DEFAULT_REQUEST_TIMEOUT,
};
pub use http::CONTENT_TYPE_WEBHOOK;
pub use sign::{body_sha256, sign, TOKEN_TTL};

use crate::http::{Client, Target};
use crate::queue::Queue;
use crate::sender::Sender;

/// Why the webhooks could not be opened, or an event not enqueued.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A missing key, no URLs, or a limit out of range.
    #[error("invalid webhook configuration: {0}")]
    Config(String),
    /// A URL that cannot be used. Names its position in
    /// [`WebhookConfig::urls`], never the URL (it may carry a token).
    #[error("webhook URL #{index} refused: {reason}")]
    InvalidUrl {
        /// Position in the list, from 0.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A body `enqueue` does not take: over
    /// [`max_body_bytes`](WebhookConfig::max_body_bytes), or not UTF-8
    /// (receivers hash the body as text).
    #[error("webhook body refused: {0}")]
    InvalidBody(String),
    /// The queue file failed (cannot be opened, already open, disk full).
    #[error("webhook queue: {0}")]
    Queue(String),
    /// No usable TLS client configuration for an https:// receiver.
    #[error("webhook TLS: {0}")]
    Tls(String),
    /// [`Webhooks::shutdown`] was called.
    #[error("webhooks are shut down")]
    Closed,
}

impl From<redb::Error> for WebhookError {
    fn from(e: redb::Error) -> Self {
        WebhookError::Queue(e.to_string())
    }
}

/// Counters since [`Webhooks::open`], and the queue's length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Events in the queue: not yet delivered to (or given up by) every URL.
    pub queued: u64,
    /// Deliveries: each event counts once per URL that answered 2xx.
    pub delivered: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Events dropped by the bound ([`WebhookConfig::max_queued`]) before
    /// every URL had them.
    pub dropped: u64,
    /// Events given up on after [`WebhookConfig::max_event_age`], per URL.
    pub given_up: u64,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
    given_up: AtomicU64,
}

/// What the handles and the sender tasks share.
pub(crate) struct Shared {
    queue: Queue,
    config: WebhookConfig,
    /// The last sequence enqueued: wakes idle senders.
    latest: watch::Sender<u64>,
    stats: Counters,
}

/// Runs a queue operation on the blocking pool (file I/O and fsync).
pub(crate) async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Queue) -> Result<T, redb::Error> + Send + 'static,
) -> Result<T, WebhookError> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || f(&shared.queue))
        .await
        .map_err(|e| WebhookError::Queue(format!("queue task failed: {e}")))?
        .map_err(WebhookError::from)
}

struct Inner {
    shared: Arc<Shared>,
    /// `true` (or dropped, with the last handle) stops the senders.
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The webhook queue and its senders. Cheap to clone; the clones share
/// them. Dropping the last clone stops the senders (an attempt in flight
/// is abandoned and sent again next time); [`shutdown`](Self::shutdown)
/// also waits for them, and must be used before the same file is opened
/// again in the same process.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("config", &self.inner.shared.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Webhooks {
    /// Opens (or creates) the queue file and starts one sender per URL
    /// (each resumes from its cursor). Needs a tokio runtime. Fails on an
    /// invalid configuration or URL, a queue file that cannot be opened
    /// (or is open already), or, with an https:// URL and no
    /// [`tls`](WebhookConfig::tls), a system without CA roots.
    pub async fn open(config: WebhookConfig) -> Result<Webhooks, WebhookError> {
        config.validate()?;
        let mut seen = HashSet::new();
        let mut targets = Vec::new();
        for (index, url) in config.urls.iter().enumerate() {
            let target = Target::parse(index, url)?;
            if seen.insert(url.clone()) {
                targets.push(Arc::new(target));
            }
        }
        let needs_tls = targets.iter().any(|t| t.tls);
        let urls: Vec<String> = targets.iter().map(|t| t.url.clone()).collect();
        let path = config.queue_path.clone();
        let max_queued = config.max_queued;
        let given_tls = config.tls.clone();
        let (tls, queue, opened) = tokio::task::spawn_blocking(move || {
            // The CA roots first: a bad setup fails before the file is touched.
            let tls = match (needs_tls, given_tls) {
                (false, _) => None,
                (true, Some(tls)) => Some(tls),
                (true, None) => Some(http::native_tls_config()?),
            };
            let (queue, opened) = Queue::open(&path, urls, max_queued)?;
            Ok::<_, WebhookError>((tls, queue, opened))
        })
        .await
        .map_err(|e| WebhookError::Queue(format!("open task failed: {e}")))??;

        let mut clients = Vec::with_capacity(targets.len());
        for target in &targets {
            clients.push(Client::new(
                target.clone(),
                tls.clone(),
                config.request_timeout,
            )?);
        }
        let stats = Counters::default();
        if opened.dropped > 0 {
            stats.dropped.store(opened.dropped, Ordering::Relaxed);
            warn!(
                dropped = opened.dropped,
                max_queued, "webhook queue over max_queued on opening: dropped the oldest events"
            );
        }
        let (latest, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            queue,
            config,
            latest,
            stats,
        });
        let (stop, _) = watch::channel(false);
        let mut tasks = Vec::with_capacity(targets.len());
        for (target, client) in targets.into_iter().zip(clients) {
            let cursor = opened.cursors.get(&target.url).copied().unwrap_or(0);
            let sender = Sender {
                shared: shared.clone(),
                target,
                client,
                cursor,
                stop: stop.subscribe(),
                failing: false,
            };
            tasks.push(tokio::spawn(sender.run()));
        }
        Ok(Webhooks {
            inner: Arc::new(Inner {
                shared,
                stop,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    /// Appends an encoded `WebhookEvent` (JSON) for every URL and returns
    /// its sequence number. The event is on disk (fsync) when this returns.
    /// If the queue is full, the oldest undelivered events are dropped to
    /// make room (see [`WebhookStats::dropped`]).
    pub async fn enqueue(&self, body: Vec<u8>) -> Result<u64, WebhookError> {
        if *self.inner.stop.borrow() {
            return Err(WebhookError::Closed);
        }
        let shared = &self.inner.shared;
        let max = shared.config.max_body_bytes;
        if body.len() > max {
            return Err(WebhookError::InvalidBody(format!(
                "{} bytes, more than max_body_bytes ({max})",
                body.len()
            )));
        }
        // The SDKs' receivers take the body as a string and hash its UTF-8
        // encoding: anything else could not verify.
        if std::str::from_utf8(&body).is_err() {
            return Err(WebhookError::InvalidBody("not UTF-8".into()));
        }
        let now = sender::now_ms();
        let (seq, dropped) = blocking(shared, move |q| q.enqueue(&body, now)).await?;
        if dropped > 0 {
            let total = shared.stats.dropped.fetch_add(dropped, Ordering::Relaxed) + dropped;
            warn!(
                dropped,
                total_dropped = total,
                max_queued = shared.config.max_queued,
                "webhook queue full: dropped the oldest undelivered events"
            );
        }
        shared.latest.send_replace(seq);
        Ok(seq)
    }

    /// The queue's length and the counters since [`open`](Self::open).
    pub fn stats(&self) -> WebhookStats {
        let shared = &self.inner.shared;
        WebhookStats {
            queued: shared.queue.queued(),
            delivered: shared.stats.delivered.load(Ordering::Relaxed),
            retries: shared.stats.retries.load(Ordering::Relaxed),
            dropped: shared.stats.dropped.load(Ordering::Relaxed),
            given_up: shared.stats.given_up.load(Ordering::Relaxed),
        }
    }

    /// Stops the senders and waits for them. An attempt in flight is
    /// abandoned (its event stays queued and is sent again after the next
    /// open); a cursor commit in progress finishes. Later `enqueue` calls
    /// on clones fail with [`WebhookError::Closed`]. The file closes when
    /// the last clone is dropped.
    pub async fn shutdown(self) {
        self.inner.stop.send_replace(true);
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for task in tasks {
            if let Err(e) = task.await {
                warn!(error = %e, "webhook sender task failed");
            }
        }
    }
}

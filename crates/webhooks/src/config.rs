//! What to deliver where, and the limits, each with a default.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::WebhookError;

/// Default [`WebhookConfig::request_timeout`]: LiveKit's notifier's 10 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`WebhookConfig::initial_backoff`].
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Default [`WebhookConfig::max_backoff`].
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Default [`WebhookConfig::max_event_age`].
pub const DEFAULT_MAX_EVENT_AGE: Duration = Duration::from_secs(3600);
/// Default [`WebhookConfig::max_queued`].
pub const DEFAULT_MAX_QUEUED: u64 = 10_000;
/// Default [`WebhookConfig::max_body_bytes`].
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// The webhook receivers, the signing key and the limits.
///
/// `Debug` never prints the secret, and prints no URL whole (a path or a
/// query may carry a receiver's own token): only each URL's host.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Receivers (`http://` or `https://`); every event goes to each, in
    /// order. Duplicates are sent to once. A URL added to a queue that
    /// already exists receives the events enqueued from then on.
    pub urls: Vec<String>,
    /// The API key: the token's issuer, which receivers look the secret up by.
    pub api_key: String,
    /// The API secret the token is signed with (HS256).
    pub api_secret: String,
    /// The queue file (`<data_dir>/webhooks.redb`, say); its directory is
    /// created if missing. One process at a time may open it.
    pub queue_path: PathBuf,
    /// Most time for one attempt: name resolution, connecting, TLS, sending
    /// and the response headers together.
    pub request_timeout: Duration,
    /// Wait after an event's first failed attempt; doubles after each
    /// further failure up to [`max_backoff`](Self::max_backoff).
    pub initial_backoff: Duration,
    /// Longest wait between two attempts at one event.
    pub max_backoff: Duration,
    /// An event that fails this long after it was enqueued is given up on
    /// (for that URL) and the next one is sent. Measured on the wall clock
    /// from [`enqueue`](crate::Webhooks::enqueue), so it spans restarts.
    pub max_event_age: Duration,
    /// Most events kept undelivered (to at least one URL); beyond it the
    /// oldest are dropped and counted ([`WebhookStats::dropped`](crate::WebhookStats::dropped)).
    pub max_queued: u64,
    /// Largest body [`enqueue`](crate::Webhooks::enqueue) takes; with
    /// `max_queued` it bounds the queue file.
    pub max_body_bytes: usize,
    /// TLS client configuration for `https://` receivers; `None` trusts the
    /// system's CA roots (ring, TLS 1.2 and 1.3). Set it for a private CA.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl WebhookConfig {
    /// A configuration with the default limits: 10 s per attempt, backoff
    /// from 1 s doubling to 30 s, events given up after 1 hour, 10 000
    /// events queued, 1 MiB bodies, the system's CA roots.
    pub fn new(
        urls: Vec<String>,
        api_key: impl Into<String>,
        api_secret: impl Into<String>,
        queue_path: impl Into<PathBuf>,
    ) -> WebhookConfig {
        WebhookConfig {
            urls,
            api_key: api_key.into(),
            api_secret: api_secret.into(),
            queue_path: queue_path.into(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            max_event_age: DEFAULT_MAX_EVENT_AGE,
            max_queued: DEFAULT_MAX_QUEUED,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            tls: None,
        }
    }

    /// Checks the limits and the key (the URLs are checked by
    /// [`Target::parse`](crate::http::Target::parse)).
    pub(crate) fn validate(&self) -> Result<(), WebhookError> {
        let refuse = |what: &str| Err(WebhookError::Config(what.to_string()));
        if self.urls.is_empty() {
            return refuse("no webhook URLs");
        }
        // LiveKit's notifier refuses to send without both (errNoKey): a
        // token without a secret would be worthless to the receiver.
        if self.api_key.is_empty() || self.api_secret.is_empty() {
            return refuse("api_key and api_secret are required to sign webhooks");
        }
        if self.request_timeout.is_zero() {
            return refuse("request_timeout must be more than zero");
        }
        if self.initial_backoff.is_zero() {
            return refuse("initial_backoff must be more than zero");
        }
        if self.max_backoff < self.initial_backoff {
            return refuse("max_backoff must be at least initial_backoff");
        }
        if self.max_queued == 0 {
            return refuse("max_queued must be at least 1");
        }
        if self.max_body_bytes == 0 {
            return refuse("max_body_bytes must be at least 1");
        }
        Ok(())
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts: Vec<String> = self.urls.iter().map(|u| crate::http::log_host(u)).collect();
        f.debug_struct("WebhookConfig")
            .field("url_hosts", &hosts)
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .field("queue_path", &self.queue_path)
            .field("request_timeout", &self.request_timeout)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_event_age", &self.max_event_age)
            .field("max_queued", &self.max_queued)
            .field("max_body_bytes", &self.max_body_bytes)
            .field(
                "tls",
                &if self.tls.is_some() {
                    "custom"
                } else {
                    "system roots"
                },
            )
            .finish()
    }
}

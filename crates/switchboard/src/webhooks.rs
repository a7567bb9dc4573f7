//! Webhooks: every room's lifecycle as LiveKit `WebhookEvent`s, signed with
//! one of the API keys and delivered durably to the configured URLs
//! (`webhooks:` in the configuration; docs/webhooks.md).

use switchboard_api::webhook_events::webhook_bodies;
use switchboard_api::ApiKeys;
use switchboard_rooms::Rooms;
use switchboard_webhooks::{WebhookConfig, Webhooks};
use tokio::sync::broadcast::error::RecvError;
use tracing::{info, warn};

use crate::config::Config;

/// The queue file under `data_dir`.
pub const QUEUE_FILE: &str = "webhooks.redb";

/// Starts delivering webhooks when URLs are configured; `Ok(None)` when not.
/// The task reading the rooms' lifecycle holds a clone of the handle, so the
/// senders run for the life of the process; what they have not delivered
/// when it exits stays queued for the next.
pub async fn start(
    config: &Config,
    keys: &ApiKeys,
    rooms: &Rooms,
) -> Result<Option<Webhooks>, String> {
    let section = &config.webhooks;
    if section.urls.is_empty() {
        return Ok(None);
    }
    let api_key = if section.api_key.is_empty() {
        match keys.key_names().as_slice() {
            [only] => (*only).to_owned(),
            _ => {
                return Err(
                    "webhooks.api_key must name the API key that signs webhooks when several are configured"
                        .into(),
                )
            }
        }
    } else {
        section.api_key.clone()
    };
    let secret = keys
        .secret(&api_key)
        .ok_or_else(|| format!("webhooks.api_key {api_key:?} is not one of the API keys"))?
        .to_owned();
    let mut hooks = WebhookConfig::new(
        section.urls.clone(),
        api_key,
        secret,
        config.data_dir.join(QUEUE_FILE),
    );
    hooks.request_timeout = std::time::Duration::from_millis(section.request_timeout_ms.max(1));
    hooks.initial_backoff = std::time::Duration::from_millis(section.initial_backoff_ms.max(1));
    hooks.max_backoff = std::time::Duration::from_millis(
        section
            .max_backoff_ms
            .max(section.initial_backoff_ms)
            .max(1),
    );
    hooks.max_event_age = std::time::Duration::from_secs(section.max_event_age_secs.max(1));
    hooks.max_queued = section.max_queued.max(1);
    let webhooks = Webhooks::open(hooks).await.map_err(|e| e.to_string())?;
    let mut feed = rooms.lifecycle();
    let sender = webhooks.clone();
    tokio::spawn(async move {
        loop {
            let event = match feed.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => {
                    warn!(
                        missed,
                        "webhooks fell behind the rooms: events were not queued"
                    );
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            let bodies = match webhook_bodies(&event, || switchboard_rooms::new_sid("EV_")) {
                Ok(bodies) => bodies,
                Err(e) => {
                    warn!(error = %e.msg, "a webhook event could not be written");
                    continue;
                }
            };
            for body in bodies {
                if let Err(e) = sender.enqueue(body).await {
                    warn!(error = %e, "a webhook event could not be queued");
                }
            }
        }
    });
    info!(urls = section.urls.len(), "webhooks on");
    Ok(Some(webhooks))
}

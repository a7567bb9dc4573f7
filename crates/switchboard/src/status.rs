//! The call-side numbers of `GET /debug/state`, read from the gateway's call
//! registry, the RTP port allocator and the SIP stack (the API crate cannot
//! see them: it does not depend on the gateway).

use std::sync::Arc;
use switchboard_api::{BanEntry, CallStatus, StatusSource};
use switchboard_gateway::{CallRegistry, GatewayHandle};
use switchboard_media::ports::PortAllocator;
use switchboard_sip::transport::SipHandle;

use crate::store_health::StoreHealth;

/// Reads the live counters of a running `serve`.
pub struct ServeStatus {
    calls: Arc<CallRegistry>,
    ports: PortAllocator,
    sip: SipHandle,
    gateway: GatewayHandle,
    shared_bans: Option<switchboard_store::SharedBans>,
    store_health: Option<Arc<StoreHealth>>,
    webhooks: Option<switchboard_webhooks::Webhooks>,
}

impl ServeStatus {
    /// Counters of these parts.
    pub fn new(
        calls: Arc<CallRegistry>,
        ports: PortAllocator,
        sip: SipHandle,
        gateway: GatewayHandle,
    ) -> ServeStatus {
        ServeStatus {
            calls,
            ports,
            sip,
            gateway,
            shared_bans: None,
            store_health: None,
            webhooks: None,
        }
    }

    /// The store's health and the webhooks' queue go into the metrics too.
    pub fn with_store_and_webhooks(
        mut self,
        store_health: Arc<StoreHealth>,
        webhooks: Option<switchboard_webhooks::Webhooks>,
    ) -> ServeStatus {
        self.store_health = Some(store_health);
        self.webhooks = webhooks;
        self
    }

    /// Lifts go to the other replicas too, through these shared bans.
    pub fn with_shared_bans(
        mut self,
        shared: Option<switchboard_store::SharedBans>,
    ) -> ServeStatus {
        self.shared_bans = shared;
        self
    }
}

impl StatusSource for ServeStatus {
    fn call_status(&self) -> CallStatus {
        CallStatus {
            calls_active: self.calls.active(),
            call_tasks: self.calls.tasks(),
            rtp_ports_active: self.ports.active_count(),
            sip_transactions: self.sip.transaction_count(),
        }
    }

    fn metrics(&self) -> String {
        let mut text = self.gateway.metrics_text();
        text.push_str(&guard_metrics(&self.sip.guard_stats()));
        text.push_str(&sip_metrics(&self.sip));
        if let Some(health) = &self.store_health {
            text.push_str(&health.metrics_text());
        }
        if let Some(webhooks) = &self.webhooks {
            text.push_str(&webhook_metrics(&webhooks.stats()));
        }
        text
    }

    fn bans(&self) -> Vec<BanEntry> {
        self.sip
            .bans()
            .into_iter()
            .map(|ban| BanEntry {
                ip: ban.ip.to_string(),
                remaining_secs: ban.remaining.as_secs(),
                reason: ban.reason,
            })
            .collect()
    }

    fn live_calls(&self) -> Vec<switchboard_store::CallRecord> {
        self.gateway.live_calls()
    }

    fn live_call(&self, call_id: &str) -> Option<switchboard_store::CallRecord> {
        self.gateway.live_call(call_id)
    }

    fn live_trace(&self, call_id: &str) -> Option<switchboard_store::CallTrace> {
        self.gateway.live_trace(call_id)
    }

    fn hang_up(&self, call_id: &str) -> Result<(), switchboard_api::HangUpRefused> {
        self.gateway.hang_up(call_id).map_err(|e| match e {
            switchboard_gateway::HangUpError::NoSuchCall => {
                switchboard_api::HangUpRefused::NoSuchCall
            }
            switchboard_gateway::HangUpError::NotInRoom => {
                switchboard_api::HangUpRefused::NotInRoom
            }
        })
    }

    fn lift_ban(&self, ip: std::net::IpAddr) -> bool {
        if let Some(shared) = &self.shared_bans {
            crate::shared_bans::lift_shared(shared, ip);
        }
        self.sip.lift_ban(ip)
    }
}

/// SIP messages by method and class, transactions and dialogs.
fn sip_metrics(sip: &SipHandle) -> String {
    use switchboard_sip::counts::{CLASSES, METHODS};
    let counts = sip.message_counts();
    let mut text = String::from(
        "# HELP switchboard_sip_requests_total SIP requests received and sent, by method (retransmissions included).\n\
         # TYPE switchboard_sip_requests_total counter\n",
    );
    for (direction, values) in [
        ("received", &counts.requests_received),
        ("sent", &counts.requests_sent),
    ] {
        for (method, value) in METHODS.iter().zip(values.iter()) {
            text.push_str(&format!(
                "switchboard_sip_requests_total{{direction=\"{direction}\",method=\"{method}\"}} {value}\n"
            ));
        }
    }
    text.push_str(
        "# HELP switchboard_sip_responses_total SIP responses received and sent, by class (retransmissions included).\n\
         # TYPE switchboard_sip_responses_total counter\n",
    );
    for (direction, values) in [
        ("received", &counts.responses_received),
        ("sent", &counts.responses_sent),
    ] {
        for (class, value) in CLASSES.iter().zip(values.iter()) {
            text.push_str(&format!(
                "switchboard_sip_responses_total{{direction=\"{direction}\",class=\"{class}\"}} {value}\n"
            ));
        }
    }
    let (server, client) = sip.transaction_count();
    text.push_str(&format!(
        "# HELP switchboard_sip_transactions SIP transactions alive now.\n\
         # TYPE switchboard_sip_transactions gauge\n\
         switchboard_sip_transactions{{kind=\"server\"}} {server}\n\
         switchboard_sip_transactions{{kind=\"client\"}} {client}\n\
         # HELP switchboard_sip_dialogs SIP dialogs (answered calls) registered now.\n\
         # TYPE switchboard_sip_dialogs gauge\n\
         switchboard_sip_dialogs {}\n",
        sip.dialog_count()
    ));
    text
}

/// The webhook queue's length and counters.
fn webhook_metrics(stats: &switchboard_webhooks::WebhookStats) -> String {
    let series = [
        (
            "switchboard_webhooks_queued",
            "gauge",
            "Webhook events queued, not yet delivered to every URL.",
            stats.queued,
        ),
        (
            "switchboard_webhooks_delivered_total",
            "counter",
            "Webhook deliveries answered 2xx (once per event and URL).",
            stats.delivered,
        ),
        (
            "switchboard_webhooks_retries_total",
            "counter",
            "Webhook attempts that failed and were retried.",
            stats.retries,
        ),
        (
            "switchboard_webhooks_dropped_total",
            "counter",
            "Webhook events dropped because the queue was full.",
            stats.dropped,
        ),
        (
            "switchboard_webhooks_given_up_total",
            "counter",
            "Webhook events given up after webhooks.max_event_age_secs (per URL).",
            stats.given_up,
        ),
    ];
    unlabelled_series(&series)
}

/// The SIP edge's counters in Prometheus' text format.
fn guard_metrics(stats: &switchboard_sip::GuardStats) -> String {
    let series = [
        (
            "switchboard_sip_bans_total",
            "counter",
            "Sources banned since start.",
            stats.bans,
        ),
        (
            "switchboard_sip_bans_active",
            "gauge",
            "Sources banned now.",
            stats.active_bans,
        ),
        (
            "switchboard_sip_dropped_banned_total",
            "counter",
            "Messages dropped because their source is banned.",
            stats.dropped_banned,
        ),
        (
            "switchboard_sip_dropped_rate_total",
            "counter",
            "Requests dropped for exceeding a per-source rate.",
            stats.dropped_rate,
        ),
        (
            "switchboard_sip_dropped_scanner_total",
            "counter",
            "Requests from scanners' User-Agents.",
            stats.dropped_scanner,
        ),
    ];
    unlabelled_series(&series)
}

/// Metrics without labels, `(name, type, help, value)`, in Prometheus'
/// text format.
fn unlabelled_series(series: &[(&str, &str, &str, u64)]) -> String {
    series
        .iter()
        .map(|(name, kind, help, value)| {
            format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n")
        })
        .collect()
}

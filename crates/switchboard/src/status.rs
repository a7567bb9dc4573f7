//! The call-side numbers of `GET /debug/state`, read from the gateway's call
//! registry, the RTP port allocator and the SIP stack (the API crate cannot
//! see them: it does not depend on the gateway).

use std::sync::Arc;
use switchboard_api::{BanEntry, CallStatus, StatusSource};
use switchboard_gateway::{CallRegistry, GatewayHandle};
use switchboard_media::ports::PortAllocator;
use switchboard_sip::transport::SipHandle;

/// Reads the live counters of a running `serve`.
pub struct ServeStatus {
    calls: Arc<CallRegistry>,
    ports: PortAllocator,
    sip: SipHandle,
    gateway: GatewayHandle,
    shared_bans: Option<switchboard_store::SharedBans>,
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
        }
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
    let mut text = String::new();
    for (name, kind, help, value) in series {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    text
}

//! Prometheus counters of the gateway: how calls end, by direction, result
//! and reason; calls up now; transfers by outcome. Exposed as text by the
//! API's `GET /metrics`.

use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use tracing::warn;

/// The gateway's metrics.
pub struct GatewayMetrics {
    registry: Registry,
    /// Calls ended, by `direction` (inbound/outbound), `result`
    /// (answered, refused, failed, cancelled), `reason` (LiveKit's
    /// DisconnectReason name) and `sip_status`.
    pub calls_ended: IntCounterVec,
    /// Calls in progress, by direction.
    pub calls_active: IntGaugeVec,
    /// Transfers, by outcome (succeeded, failed).
    pub transfers: IntCounterVec,
}

impl GatewayMetrics {
    /// Registers the gateway's metrics in a fresh registry.
    pub fn new() -> Result<GatewayMetrics, prometheus::Error> {
        let registry = Registry::new();
        let calls_ended = IntCounterVec::new(
            Opts::new(
                "switchboard_calls_ended_total",
                "Calls ended, by direction, result, disconnect reason and SIP status",
            ),
            &["direction", "result", "reason", "sip_status"],
        )?;
        let calls_active = IntGaugeVec::new(
            Opts::new("switchboard_calls_active", "Calls in progress"),
            &["direction"],
        )?;
        let transfers = IntCounterVec::new(
            Opts::new("switchboard_transfers_total", "REFER transfers by outcome"),
            &["outcome"],
        )?;
        registry.register(Box::new(calls_ended.clone()))?;
        registry.register(Box::new(calls_active.clone()))?;
        registry.register(Box::new(transfers.clone()))?;
        Ok(GatewayMetrics {
            registry,
            calls_ended,
            calls_active,
            transfers,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            warn!(error = %e, "metrics not rendered");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_their_labels() {
        let metrics = GatewayMetrics::new().unwrap_or_else(|e| panic!("{e}"));
        metrics
            .calls_ended
            .with_label_values(&["inbound", "refused", "SIP_TRUNK_FAILURE", "404"])
            .inc();
        let text = metrics.render();
        assert!(
            text.contains(r#"switchboard_calls_ended_total{direction="inbound",reason="SIP_TRUNK_FAILURE",result="refused",sip_status="404"} 1"#),
            "{text}"
        );
    }
}

//! Prometheus counters of the gateway: how calls end, by direction, result
//! and reason; calls up now; transfers by outcome. Exposed as text by the
//! API's `GET /metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
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
    /// From the INVITE to the answer, by direction.
    pub call_setup: HistogramVec,
    /// From the answer to the end of answered calls, by direction.
    pub call_duration: HistogramVec,
    /// RTP figures of ended calls.
    media: MediaQuality,
}

/// What ended calls' media sessions measured.
struct MediaQuality {
    /// RTP packets, by direction (received, sent).
    rtp_packets: IntCounterVec,
    /// Inbound RTP packets lost.
    rtp_lost: IntCounter,
    /// Each call's inbound interarrival jitter.
    jitter: Histogram,
    /// Each call's inbound loss (lost / expected).
    loss: Histogram,
    /// Each call's share of concealed 20 ms frames.
    concealment: Histogram,
}

/// Buckets of ratios (loss, concealment): 0.1 % to 50 %.
const RATIO_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5];

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
        let call_setup = HistogramVec::new(
            HistogramOpts::new(
                "switchboard_call_setup_seconds",
                "From the INVITE to the answer (challenge included), by direction",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0,
            ]),
            &["direction"],
        )?;
        let call_duration = HistogramVec::new(
            HistogramOpts::new(
                "switchboard_call_duration_seconds",
                "From the answer to the end of answered calls, by direction",
            )
            .buckets(vec![
                1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
            ]),
            &["direction"],
        )?;
        registry.register(Box::new(calls_ended.clone()))?;
        registry.register(Box::new(calls_active.clone()))?;
        registry.register(Box::new(transfers.clone()))?;
        registry.register(Box::new(call_setup.clone()))?;
        registry.register(Box::new(call_duration.clone()))?;
        // Series that exist from the start, so a dashboard shows 0 rather
        // than "no data" before the first call or transfer.
        for direction in ["inbound", "outbound"] {
            calls_active.with_label_values(&[direction]);
            call_setup.with_label_values(&[direction]);
            call_duration.with_label_values(&[direction]);
        }
        for outcome in ["succeeded", "failed"] {
            transfers.with_label_values(&[outcome]);
        }
        let media = MediaQuality::new(&registry)?;
        Ok(GatewayMetrics {
            registry,
            calls_ended,
            calls_active,
            transfers,
            call_setup,
            call_duration,
            media,
        })
    }

    /// What an ended call's media says about its quality.
    pub(crate) fn observe_media(
        &self,
        stats: &switchboard_media::session::CallStats,
        answered_for: std::time::Duration,
    ) {
        self.media
            .rtp_packets
            .with_label_values(&["received"])
            .inc_by(stats.packets_received);
        self.media
            .rtp_packets
            .with_label_values(&["sent"])
            .inc_by(stats.packets_sent);
        let lost = u64::try_from(stats.packets_lost.max(0)).unwrap_or(0);
        self.media.rtp_lost.inc_by(lost);
        if stats.packets_received == 0 {
            return;
        }
        self.media.jitter.observe(stats.jitter_ms / 1000.0);
        let expected = stats.packets_received.saturating_add(lost) as f64;
        self.media.loss.observe(lost as f64 / expected);
        let frames = (answered_for.as_millis() / 20).max(1) as f64;
        self.media
            .concealment
            .observe((stats.concealed_frames as f64 / frames).min(1.0));
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

impl MediaQuality {
    fn new(registry: &Registry) -> Result<MediaQuality, prometheus::Error> {
        let rtp_packets = IntCounterVec::new(
            Opts::new(
                "switchboard_rtp_packets_total",
                "RTP packets of ended calls, by direction (received, sent)",
            ),
            &["direction"],
        )?;
        let rtp_lost = IntCounter::new(
            "switchboard_rtp_packets_lost_total",
            "Inbound RTP packets lost (RFC 3550 count) of ended calls",
        )?;
        let jitter = Histogram::with_opts(
            HistogramOpts::new(
                "switchboard_call_jitter_seconds",
                "Inbound interarrival jitter of each ended call with RTP",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2]),
        )?;
        let loss = Histogram::with_opts(
            HistogramOpts::new(
                "switchboard_call_loss_ratio",
                "Inbound RTP lost / expected of each ended call with RTP",
            )
            .buckets(RATIO_BUCKETS.to_vec()),
        )?;
        let concealment = Histogram::with_opts(
            HistogramOpts::new(
                "switchboard_call_concealment_ratio",
                "Concealed 20 ms frames / answered 20 ms frames of each ended call with RTP",
            )
            .buckets(RATIO_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(rtp_packets.clone()))?;
        registry.register(Box::new(rtp_lost.clone()))?;
        registry.register(Box::new(jitter.clone()))?;
        registry.register(Box::new(loss.clone()))?;
        registry.register(Box::new(concealment.clone()))?;
        for direction in ["received", "sent"] {
            rtp_packets.with_label_values(&[direction]);
        }
        Ok(MediaQuality {
            rtp_packets,
            rtp_lost,
            jitter,
            loss,
            concealment,
        })
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

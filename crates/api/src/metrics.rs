//! The API's own metrics: requests by route and status code, and their
//! latency; plus the rooms' gauges, read when `/metrics` is scraped.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::ApiState;

/// The switchboard extension methods (`switchboard.SIP/<Method>`).
pub(crate) const SWITCHBOARD_METHODS: [&str; 7] = [
    "ExplainCall",
    "ListBans",
    "LiftBan",
    "StartStream",
    "ListCalls",
    "GetCall",
    "HangUpCall",
];

/// Requests and their latency, by route.
#[derive(Clone)]
pub struct ApiMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl std::fmt::Debug for ApiMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiMetrics").finish_non_exhaustive()
    }
}

impl ApiMetrics {
    /// Registers the API's metrics in a fresh registry.
    pub fn new() -> Result<ApiMetrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "switchboard_api_requests_total",
                "API requests by route and HTTP status code",
            ),
            &["route", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "switchboard_api_request_duration_seconds",
                "API request latency by route, until the response head (a WebSocket session counts its upgrade)",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(ApiMetrics {
            registry,
            requests,
            latency,
        })
    }

    /// The API's metrics and the rooms' gauges in Prometheus' text format.
    pub(crate) fn render(&self, state: &ApiState) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "API metrics not rendered");
        }
        let mut text = String::from_utf8(out).unwrap_or_default();
        let rooms = state.rooms.list_rooms();
        let participants: usize = rooms.iter().map(|r| r.num_participants).sum();
        text.push_str(&format!(
            "# HELP switchboard_rooms Rooms open now.\n\
             # TYPE switchboard_rooms gauge\n\
             switchboard_rooms {}\n\
             # HELP switchboard_room_participants Participants in all rooms now (SIP, WebSocket, media streams).\n\
             # TYPE switchboard_room_participants gauge\n\
             switchboard_room_participants {participants}\n\
             # HELP switchboard_websocket_sessions WebSocket participant sessions open now.\n\
             # TYPE switchboard_websocket_sessions gauge\n\
             switchboard_websocket_sessions {}\n",
            rooms.len(),
            state.websocket_sessions.get()
        ));
        text
    }
}

/// The route label of a request path: a bounded set, so a client cannot
/// make up label values.
pub(crate) fn route_of(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("/twirp/") {
        if let Some((service, method)) = rest.split_once('/') {
            let known = match service {
                "livekit.SIP" => crate::service::METHODS.contains(&method),
                "livekit.RoomService" => crate::room_service::METHODS.contains(&method),
                "switchboard.SIP" => SWITCHBOARD_METHODS.contains(&method),
                _ => false,
            };
            if known {
                return format!("{service}/{method}");
            }
        }
        return "other".into();
    }
    let route = match path {
        "/metrics" => "metrics",
        "/healthz" | "/" => "healthz",
        "/debug/state" => "debug/state",
        p if p.starts_with("/v1/") => "v1",
        p if p.starts_with("/rooms/") && p.ends_with("/ws") => "ws",
        p if p.starts_with("/calls/") && p.ends_with("/trace") => "calls/trace",
        p if p == "/console" || p.starts_with("/console/") => "console",
        _ => "other",
    };
    route.into()
}

/// Counts every request by route and status, and times it.
pub(crate) async fn track(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = route_of(request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &state.metrics;
    metrics
        .requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    metrics
        .latency
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_a_bounded_set() {
        assert_eq!(
            route_of("/twirp/livekit.SIP/ListSIPInboundTrunk"),
            "livekit.SIP/ListSIPInboundTrunk"
        );
        assert_eq!(
            route_of("/twirp/switchboard.SIP/GetCall"),
            "switchboard.SIP/GetCall"
        );
        assert_eq!(route_of("/twirp/livekit.SIP/MadeUp"), "other");
        assert_eq!(route_of("/twirp/x"), "other");
        assert_eq!(route_of("/v1/sip-trunks/trunk_1"), "v1");
        assert_eq!(route_of("/rooms/a b/ws"), "ws");
        assert_eq!(route_of("/calls/SCL_1/trace"), "calls/trace");
        assert_eq!(route_of("/console/app.js"), "console");
        assert_eq!(route_of("/consoleX"), "other");
        assert_eq!(route_of("/"), "healthz");
        assert_eq!(route_of("/anything"), "other");
    }
}

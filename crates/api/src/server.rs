//! The axum router: Twirp routing (method, path, content type), the token,
//! the body limit, then the method.

use crate::listener::{HttpLimits, LimitedListener};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use switchboard_routing::go_quote;

use crate::auth::{authenticate, require_sip_admin};
use crate::explain::{explain, ExplainCallRequest};
use crate::room_service;
use crate::service::{self, Call};
use crate::status::DebugState;
use crate::twirp::{Code, TwirpError};
use crate::wire::Encoding;
use crate::ApiState;

/// The router serving every endpoint of the crate.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        // LiveKit's server answers health checks on `/`; probes written for it keep working.
        .route("/", get(healthz))
        .route("/rooms/{room}/ws", get(crate::ws::handler))
        .route("/debug/state", get(debug_state))
        .route("/metrics", get(metrics))
        .merge(crate::platform::routes())
        .merge(crate::calls::routes())
        .merge(crate::console::routes())
        .merge(crate::rtc::routes())
        .merge(crate::agents::routes())
        .fallback(entry)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_limited(listener, router, shutdown, HttpLimits::default(), None).await
}

/// [`serve`] with the given connection cap and idle timeout, over TLS when
/// `tls` is given (HTTPS and `wss://` for WebSocket participants).
pub async fn serve_limited(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    limits: HttpLimits,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    axum::serve(LimitedListener::new(listener, limits, tls), router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz(State(state): State<Arc<ApiState>>) -> Response {
    if state.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "OK\n").into_response()
    }
}

/// `GET /metrics`: call control's counters in Prometheus' text format,
/// unauthenticated like any scrape target (they name no room, number or
/// participant).
async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let mut text = state.status.metrics();
    text.push_str(&state.metrics.render(&state));
    text.push_str(&format!(
        "# HELP switchboard_store_version The latest store version this replica has heard of.\n\
         # TYPE switchboard_store_version gauge\n\
         switchboard_store_version {}\n\
         # HELP switchboard_routing_version The store version this replica's routing index was built from (behind switchboard_store_version: calls are routed by old trunks and rules).\n\
         # TYPE switchboard_routing_version gauge\n\
         switchboard_routing_version {}\n",
        state.store.subscribe().version(),
        state.routing.version()
    ));
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

/// `GET /debug/state` (`sip.admin`): counts that go back to zero when
/// nothing happens, and the store and routing versions.
async fn debug_state(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let claims = match authenticate(&state.keys, &parts.headers, &parts.uri) {
        Ok(claims) => claims,
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(e) = require_sip_admin(claims.as_ref()) {
        return e.into_response();
    }
    let calls = state.status.call_status();
    let rooms = state.rooms.list_rooms();
    let body = DebugState {
        calls_active: calls.calls_active,
        call_tasks: calls.call_tasks,
        rtp_ports_active: calls.rtp_ports_active,
        rooms: rooms.len(),
        participants: rooms.iter().map(|r| r.num_participants).sum(),
        websocket_sessions: state.websocket_sessions.get(),
        sip_transactions: calls.sip_transactions,
        store_version: state.store.subscribe().version(),
        routing_version: state.routing.version(),
    };
    match serde_json::to_vec(&body) {
        Ok(bytes) => {
            let mut response = (StatusCode::OK, bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => TwirpError::internal(e.to_string()).into_response(),
    }
}

const SIP_SERVICE: &str = "livekit.SIP";
const ROOM_SERVICE: &str = "livekit.RoomService";
const SWITCHBOARD_SERVICE: &str = "switchboard.SIP";
const AGENT_DISPATCH_SERVICE: &str = "livekit.AgentDispatchService";

async fn entry(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let Some(route) = path.strip_prefix("/twirp/") else {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    };
    // LiveKit checks the token in a middleware, before Twirp sees the request.
    let claims = match authenticate(&state.keys, &parts.headers, &parts.uri) {
        Ok(claims) => claims,
        Err(rejection) => {
            tracing::info!(path = %path, reason = %rejection.0, "API request with a refused token");
            return rejection.into_response();
        }
    };
    let method_name = parts.method.as_str();
    if parts.method != Method::POST {
        return TwirpError::bad_route(
            format!(
                "unsupported method {} (only POST is allowed)",
                go_quote(method_name)
            ),
            method_name,
            &path,
        )
        .into_response();
    }
    let no_handler = || {
        TwirpError::bad_route(
            format!("no handler for path {}", go_quote(&path)),
            method_name,
            &path,
        )
    };
    let Some((service_name, rpc)) = route.split_once('/') else {
        return no_handler().into_response();
    };
    let switchboard_call =
        service_name == SWITCHBOARD_SERVICE && crate::metrics::SWITCHBOARD_METHODS.contains(&rpc);
    let room_call = service_name == ROOM_SERVICE && room_service::METHODS.contains(&rpc);
    let dispatch_call =
        service_name == AGENT_DISPATCH_SERVICE && crate::agents::DISPATCH_METHODS.contains(&rpc);
    let known = (service_name == SIP_SERVICE && service::METHODS.contains(&rpc))
        || switchboard_call
        || room_call
        || dispatch_call;
    if !known {
        return no_handler().into_response();
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let encoding = match Encoding::from_content_type(content_type) {
        Some(Encoding::Protobuf) if switchboard_call => None,
        other => other,
    };
    let Some(encoding) = encoding else {
        return TwirpError::bad_route(
            format!("unexpected Content-Type: {}", go_quote(content_type)),
            method_name,
            &path,
        )
        .into_response();
    };
    let body = match read_body(body, state.max_body_bytes, &parts.headers).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    // An order for another replica's room or call goes there (once: an
    // order another replica forwarded here is served here).
    let forwarded = crate::replicas::was_forwarded(&parts.headers, &state.keys);
    if let Some(directory) = state.directory.as_deref() {
        let sip_call = service_name == SIP_SERVICE;
        if (room_call || sip_call || dispatch_call) && !forwarded {
            let service = if room_call {
                crate::replicas::Service::Room
            } else if dispatch_call {
                crate::replicas::Service::AgentDispatch
            } else {
                crate::replicas::Service::Sip
            };
            let target = crate::replicas::forward_target(
                directory,
                &state.rooms,
                service,
                rpc,
                encoding,
                &body,
            )
            .await;
            if let Some(target) = target {
                tracing::info!(method = rpc, replica = %target, "API order forwarded to the replica holding its room or call");
                return crate::replicas::forward_twirp(
                    &target,
                    &path,
                    &parts.headers,
                    &body,
                    state.max_body_bytes,
                    &state.keys,
                )
                .await;
            }
        }
    }
    let result = if switchboard_call {
        match rpc {
            "ListBans" => list_bans_json(&state, claims.as_ref()),
            "LiftBan" => lift_ban_json(&state, claims.as_ref(), &body),
            "StartStream" => {
                crate::streams::start_stream_json(&state, claims.as_ref(), &body).await
            }
            "ListCalls" => crate::calls::list_calls_json(&state, claims.as_ref(), &body).await,
            "GetCall" => crate::calls::get_call_json(&state, claims.as_ref(), &body).await,
            "HangUpCall" => crate::calls::hang_up_call_json(&state, claims.as_ref(), &body),
            _ => explain_call_json(&state, claims.as_ref(), &body),
        }
    } else {
        let call = Call {
            state: &state,
            claims: claims.as_ref(),
            encoding,
            body: &body,
            forwarded,
        };
        let result = if room_call && rpc == "ListRooms" && !call.forwarded {
            match room_service::dispatch(rpc, &call) {
                Some(Ok(local)) => Some(
                    crate::replicas::list_rooms_everywhere(
                        &state,
                        &parts.headers,
                        &body,
                        encoding,
                        local,
                    )
                    .await,
                ),
                other => other,
            }
        } else if room_call {
            room_service::dispatch(rpc, &call)
        } else if dispatch_call {
            crate::agents::dispatch_service(rpc, &call)
        } else {
            service::dispatch(rpc, call).await
        };
        match result {
            Some(result) => result,
            None => Err(no_handler()),
        }
    };
    match result {
        Ok(bytes) => {
            let mut response = (StatusCode::OK, bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(encoding.content_type()),
            );
            response
        }
        Err(e) => {
            if e.http_status() >= 500 {
                tracing::warn!(method = rpc, code = %e.code, msg = %e.msg, "API request failed");
            } else {
                tracing::debug!(method = rpc, code = %e.code, msg = %e.msg, "API request refused");
            }
            e.into_response()
        }
    }
}

fn too_large(limit: usize) -> TwirpError {
    let mut e = TwirpError::new(
        Code::ResourceExhausted,
        format!("request body larger than {limit} bytes"),
    );
    e.status_override = Some(413);
    e
}

pub(crate) async fn read_body(
    body: Body,
    limit: usize,
    headers: &axum::http::HeaderMap,
) -> Result<Vec<u8>, TwirpError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
        Err(e) => Err(
            TwirpError::new(Code::Malformed, "failed to read request body")
                .with_meta("cause", e.to_string()),
        ),
    }
}

fn list_bans_json(
    state: &ApiState,
    claims: Option<&crate::auth::Claims>,
) -> Result<Vec<u8>, TwirpError> {
    require_sip_admin(claims)?;
    let bans = state.status.bans();
    serde_json::to_vec(&serde_json::json!({ "bans": bans }))
        .map_err(|e| TwirpError::internal(e.to_string()))
}

fn lift_ban_json(
    state: &ApiState,
    claims: Option<&crate::auth::Claims>,
    body: &[u8],
) -> Result<Vec<u8>, TwirpError> {
    #[derive(serde::Deserialize)]
    struct LiftBanRequest {
        ip: String,
    }
    let req: LiftBanRequest = serde_json::from_slice(body).map_err(|e| {
        TwirpError::new(Code::Malformed, "the json request could not be decoded")
            .with_meta("cause", e.to_string())
    })?;
    require_sip_admin(claims)?;
    let ip: std::net::IpAddr = req.ip.trim().parse().map_err(|_| {
        TwirpError::new(Code::InvalidArgument, "ip must be an IPv4 or IPv6 address")
    })?;
    let lifted = state.status.lift_ban(ip);
    tracing::info!(source = %ip, lifted, "ban lift requested through the API");
    serde_json::to_vec(&serde_json::json!({ "ip": ip.to_string(), "lifted": lifted }))
        .map_err(|e| TwirpError::internal(e.to_string()))
}

fn explain_call_json(
    state: &ApiState,
    claims: Option<&crate::auth::Claims>,
    body: &[u8],
) -> Result<Vec<u8>, TwirpError> {
    let req: ExplainCallRequest = serde_json::from_slice(body).map_err(|e| {
        TwirpError::new(Code::Malformed, "the json request could not be decoded")
            .with_meta("cause", e.to_string())
    })?;
    require_sip_admin(claims)?;
    let call = req.call_input()?;
    let answer = explain(&state.routing.current(), &call);
    serde_json::to_vec(&answer).map_err(|e| TwirpError::internal(e.to_string()))
}

//! Calls, live and past (`sip.admin`):
//!
//! - `POST /twirp/switchboard.SIP/ListCalls`: the calls in progress
//!   (`"live": true`) or the history, newest first, with filters and
//!   pagination;
//! - `POST /twirp/switchboard.SIP/GetCall`: one call, live or past;
//! - `POST /twirp/switchboard.SIP/HangUpCall`: ends a call in progress (its
//!   participant leaves its room: BYE after the answer, a final response
//!   before it);
//! - `GET /calls/{call_id}/trace?format=text|pcap`: the call's SIP
//!   messages, as text or as a pcap file for Wireshark, tshark or sngrep.
//!
//! A call is shown as `{"live", "info": SIPCallInfo, …}`: LiveKit's
//! `SIPCallInfo` in protojson, then what switchboard adds (ringing time,
//! transport, result, RTP quality, transfer, trace size).

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard_routing::livekit_protocol::SipCallDirection;
use switchboard_store::{CallFilter, CallRecord, StoreError};

use crate::auth::{authenticate, require_sip_admin, Claims};
use crate::status::HangUpRefused;
use crate::twirp::{Code, TwirpError};
use crate::wire::to_protojson_value;
use crate::ApiState;

/// Calls listed per page when the request names no size.
const DEFAULT_PAGE_SIZE: usize = 50;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ListCallsRequest {
    live: bool,
    direction: String,
    result: String,
    room: String,
    trunk_id: String,
    number: String,
    ended_after_ns: i64,
    ended_before_ns: i64,
    page_size: usize,
    page_token: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallIdRequest {
    call_id: String,
}

fn decode<T: for<'a> Deserialize<'a>>(body: &[u8]) -> Result<T, TwirpError> {
    serde_json::from_slice(body).map_err(|e| {
        TwirpError::new(Code::Malformed, "the json request could not be decoded")
            .with_meta("cause", e.to_string())
    })
}

fn encode(value: &Value) -> Result<Vec<u8>, TwirpError> {
    serde_json::to_vec(value).map_err(|e| TwirpError::internal(e.to_string()))
}

fn valid_call_id(call_id: &str) -> Result<(), TwirpError> {
    if switchboard_store::is_call_id(call_id) {
        Ok(())
    } else {
        Err(TwirpError::new(
            Code::InvalidArgument,
            "call_id must be a call ID (SCL_…)",
        ))
    }
}

fn store_error(e: StoreError) -> TwirpError {
    match e {
        StoreError::BadPageToken => TwirpError::new(Code::InvalidArgument, e.to_string()),
        other => TwirpError::new(
            Code::Unavailable,
            format!("call history unavailable: {other}"),
        ),
    }
}

fn no_history() -> TwirpError {
    TwirpError::new(
        Code::FailedPrecondition,
        "call history is off (call_history.enabled: false)",
    )
}

impl ListCallsRequest {
    fn filter(&self) -> Result<CallFilter, TwirpError> {
        let direction = match self.direction.to_ascii_lowercase().as_str() {
            "" => None,
            "inbound" => Some(SipCallDirection::ScdInbound as i32),
            "outbound" => Some(SipCallDirection::ScdOutbound as i32),
            _ => {
                return Err(TwirpError::new(
                    Code::InvalidArgument,
                    "direction must be inbound or outbound",
                ))
            }
        };
        let result = match self.result.as_str() {
            "" => None,
            r @ ("answered" | "failed" | "refused" | "cancelled") => Some(r.to_string()),
            _ => {
                return Err(TwirpError::new(
                    Code::InvalidArgument,
                    "result must be answered, failed, refused or cancelled",
                ))
            }
        };
        let text = |value: &str, field: &str| -> Result<Option<String>, TwirpError> {
            if value.len() > 256 || value.chars().any(char::is_control) {
                return Err(TwirpError::new(
                    Code::InvalidArgument,
                    format!("{field} must be at most 256 characters, without control characters"),
                ));
            }
            Ok((!value.is_empty()).then(|| value.to_string()))
        };
        Ok(CallFilter {
            direction,
            result,
            room: text(&self.room, "room")?,
            trunk_id: text(&self.trunk_id, "trunk_id")?,
            number: text(&self.number, "number")?,
            ended_after_ns: (self.ended_after_ns > 0).then_some(self.ended_after_ns),
            ended_before_ns: (self.ended_before_ns > 0).then_some(self.ended_before_ns),
        })
    }
}

/// `ListCalls`.
pub(crate) async fn list_calls_json(
    state: &ApiState,
    claims: Option<&Claims>,
    body: &[u8],
) -> Result<Vec<u8>, TwirpError> {
    let req: ListCallsRequest = decode(body)?;
    require_sip_admin(claims)?;
    let filter = req.filter()?;
    let page_size = match req.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(1000),
    };
    let (records, next, live) = if req.live {
        let live_filter = CallFilter {
            ended_after_ns: None,
            ended_before_ns: None,
            ..filter
        };
        let records: Vec<CallRecord> = state
            .status
            .live_calls()
            .into_iter()
            .filter(|r| live_filter.matches(r))
            .collect();
        (records, String::new(), true)
    } else {
        let history = state.call_history.as_ref().ok_or_else(no_history)?;
        let page = history
            .list(&filter, page_size, &req.page_token)
            .await
            .map_err(store_error)?;
        (page.calls, page.next_page_token, false)
    };
    let calls = records
        .iter()
        .map(|r| call_view(r, live))
        .collect::<Result<Vec<_>, _>>()?;
    encode(&json!({ "calls": calls, "next_page_token": next }))
}

/// `GetCall`: the live record when the call is in progress, else the
/// history's.
pub(crate) async fn get_call_json(
    state: &ApiState,
    claims: Option<&Claims>,
    body: &[u8],
) -> Result<Vec<u8>, TwirpError> {
    let req: CallIdRequest = decode(body)?;
    require_sip_admin(claims)?;
    valid_call_id(&req.call_id)?;
    let (record, live) = find_call(state, &req.call_id).await?;
    encode(&call_view(&record, live)?)
}

async fn find_call(state: &ApiState, call_id: &str) -> Result<(CallRecord, bool), TwirpError> {
    if let Some(record) = state.status.live_call(call_id) {
        // A call that has just ended is shown as such before it is stored.
        let live = record.ended_at_ns() == 0;
        return Ok((record, live));
    }
    let stored = match &state.call_history {
        Some(history) => history.get(call_id).await.map_err(store_error)?,
        None => None,
    };
    stored
        .map(|r| (r, false))
        .ok_or_else(|| TwirpError::new(Code::NotFound, "no call with that ID"))
}

/// `HangUpCall`.
pub(crate) fn hang_up_call_json(
    state: &ApiState,
    claims: Option<&Claims>,
    body: &[u8],
) -> Result<Vec<u8>, TwirpError> {
    let req: CallIdRequest = decode(body)?;
    require_sip_admin(claims)?;
    valid_call_id(&req.call_id)?;
    match state.status.hang_up(&req.call_id) {
        Ok(()) => encode(&json!({ "call_id": req.call_id })),
        Err(HangUpRefused::NoSuchCall) => Err(TwirpError::new(
            Code::NotFound,
            "no call in progress with that ID",
        )),
        Err(HangUpRefused::NotInRoom) => Err(TwirpError::new(
            Code::FailedPrecondition,
            "the call is not in a room yet; it cannot be hung up from here",
        )),
    }
}

/// A call as the API shows it.
pub fn call_view(record: &CallRecord, live: bool) -> Result<Value, TwirpError> {
    let info = match &record.info {
        Some(info) => to_protojson_value(info)?,
        None => Value::Null,
    };
    let transfer = match &record.transfer {
        Some(transfer) => to_protojson_value(transfer)?,
        None => Value::Null,
    };
    let quality = record.quality.map(|q| {
        json!({
            "packets_sent": q.packets_sent,
            "packets_received": q.packets_received,
            "packets_lost": q.packets_lost,
            "jitter_ms": q.jitter_ms,
            "concealed_frames": q.concealed_frames,
            "round_trip_ms": q.round_trip_ms,
            "remote_packets_lost": q.remote_packets_lost,
            "remote_jitter_ms": q.remote_jitter_ms,
            "srtp_rejected": q.srtp_rejected,
            "rtcp_received": q.rtcp_received,
        })
    });
    let sip_status = record
        .info
        .as_ref()
        .and_then(|i| i.call_status_code.as_ref())
        .map_or(0, |s| s.code);
    Ok(json!({
        "live": live,
        "info": info,
        "sip_status": sip_status,
        "ringing_at_ns": record.ringing_at_ns.to_string(),
        "transport": record.transport,
        "remote_address": record.remote_address,
        "result": record.result,
        "srtp_suite": record.srtp_suite,
        "quality": quality,
        "transfer": transfer,
        "trace_messages": record.trace_messages,
        "trace_truncated": record.trace_truncated,
    }))
}

/// The trace download route.
pub(crate) fn routes() -> Router<Arc<ApiState>> {
    Router::new().route("/calls/{call_id}/trace", get(trace))
}

#[derive(Debug, Deserialize)]
struct TraceQuery {
    #[serde(default)]
    format: String,
}

async fn trace(
    State(state): State<Arc<ApiState>>,
    Path(call_id): Path<String>,
    Query(query): Query<TraceQuery>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let claims = match authenticate(&state.keys, &parts.headers, &parts.uri) {
        Ok(claims) => claims,
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(e) = require_sip_admin(claims.as_ref()) {
        return e.into_response();
    }
    if let Err(e) = valid_call_id(&call_id) {
        return e.into_response();
    }
    let pcap = match query.format.as_str() {
        "" | "text" => false,
        "pcap" => true,
        _ => {
            return TwirpError::new(Code::InvalidArgument, "format must be text or pcap")
                .into_response()
        }
    };
    let trace = match state.status.live_trace(&call_id) {
        Some(trace) => Some(trace),
        None => match &state.call_history {
            Some(history) => match history.trace(&call_id).await {
                Ok(trace) => trace,
                Err(e) => return store_error(e).into_response(),
            },
            None => None,
        },
    };
    let Some(trace) = trace else {
        return TwirpError::new(Code::NotFound, "no SIP trace kept for that call").into_response();
    };
    let (body, content_type, extension) = if pcap {
        (
            crate::trace_export::to_pcap(&trace),
            "application/vnd.tcpdump.pcap",
            "pcap",
        )
    } else {
        (
            crate::trace_export::to_text(&trace).into_bytes(),
            "text/plain; charset=utf-8",
            "txt",
        )
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The call ID was checked (store::is_call_id): safe in the header.
    if let Ok(value) =
        HeaderValue::from_str(&format!("attachment; filename=\"{call_id}.{extension}\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

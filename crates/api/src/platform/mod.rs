//! The voice-platform trunk API under `/v1/`: one carrier trunk resource
//! that provisions LiveKit's inbound trunk, outbound trunk and dispatch rule
//! together (docs/platform-api.md).
//!
//! `/v1/sip-trunks` speaks seed 001's shape, `/v1/sip-trunk` seed 004's; both
//! read and write the same records. Requests carry `Authorization: Bearer`
//! with either an API secret or an access token with the `sip.admin` grant.
//! Answers are JSON; errors are `{"error": {"code", "message", "fields"}}`.

mod fields;
mod model;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde_json::{json, Value};
use switchboard_routing::{ErrorCode, RoutingError};
use switchboard_store::{is_platform_trunk_id, PlatformTrunk, StoreError};

pub use fields::FieldError;
pub use model::{PlatformSettings, Shape};

use crate::auth::verify;
use crate::ApiState;

/// The committed OpenAPI 3 document of this API.
pub const OPENAPI_JSON: &str = include_str!("../../../../docs/openapi-v1.json");

/// Most trunks one list page returns.
const MAX_PAGE: usize = 100;
/// Trunks a list page returns when `limit` is not given.
const DEFAULT_PAGE: usize = 20;

/// The routes of the `/v1/` API.
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route(
            "/v1/sip-trunks",
            get(list_handler::<CARRIER>).post(create_handler::<CARRIER>),
        )
        .route(
            "/v1/sip-trunks/{id}",
            get(get_handler::<CARRIER>)
                .patch(update_handler::<CARRIER>)
                .delete(delete_handler::<CARRIER>),
        )
        .route(
            "/v1/sip-trunk",
            get(list_handler::<EXTENSION>).post(create_handler::<EXTENSION>),
        )
        .route(
            "/v1/sip-trunk/{id}",
            get(get_handler::<EXTENSION>)
                .patch(update_handler::<EXTENSION>)
                .delete(delete_handler::<EXTENSION>),
        )
        .route("/v1/{*rest}", any(no_such_path))
}

/// An error answer of this API.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    fields: Vec<FieldError>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    fn invalid(fields: Vec<FieldError>) -> ApiError {
        let message = match fields.first() {
            Some(first) if first.field.is_empty() => first.message.clone(),
            Some(first) => format!("{} {}", first.field, first.message),
            None => "invalid request".into(),
        };
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            message,
            fields,
        }
    }

    fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such SIP trunk")
    }

    fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "fields": self.fields,
            }
        });
        let mut response = json_response(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"switchboard\""),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match &e {
            StoreError::AtCapacity { max } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "trunk_limit_reached",
                format!(
                    "this gateway allows {max} SIP trunks (platform.max_trunks); \
                     delete one or raise the limit"
                ),
            ),
            StoreError::Routing(RoutingError::NotFound(_)) => ApiError::not_found(),
            StoreError::Routing(
                RoutingError::ConflictingInboundTrunks { .. }
                | RoutingError::ConflictingInboundTrunksAllowedNumber { .. }
                | RoutingError::ConflictingDispatchRules { .. },
            ) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            StoreError::Routing(routing) => match routing.code() {
                ErrorCode::InvalidArgument => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    routing.to_string(),
                ),
                ErrorCode::FailedPrecondition => {
                    ApiError::new(StatusCode::CONFLICT, "conflict", routing.to_string())
                }
                ErrorCode::NotFound => ApiError::not_found(),
                ErrorCode::Unavailable => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    routing.to_string(),
                ),
                ErrorCode::Internal => internal(&e),
            },
            StoreError::Redis(_) | StoreError::Contention => {
                tracing::warn!(error = %e, "trunk API: store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store is unavailable; try again",
                )
            }
            _ => internal(&e),
        }
    }
}

fn internal(e: &StoreError) -> ApiError {
    tracing::warn!(error = %e, "trunk API: request failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the trunk could not be written; nothing was changed",
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Lets a request in if it carries an API secret, or an access token with
/// the `sip.admin` grant, as `Authorization: Bearer …`.
fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "missing Authorization: Bearer <API secret or access token>",
        ));
    };
    let Some(bearer) = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|v| !v.is_empty())
    else {
        return Err(ApiError::unauthorized(
            "the Authorization header must be Bearer <API secret or access token>",
        ));
    };
    if state.keys.is_secret(bearer) {
        return Ok(());
    }
    match verify(&state.keys, bearer) {
        Ok(claims) if claims.sip.admin => Ok(()),
        Ok(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token lacks the sip.admin grant",
        )),
        Err(_) => Err(ApiError::unauthorized(
            "the bearer value is neither an API secret nor a valid access token",
        )),
    }
}

async fn read_body(state: &ApiState, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    crate::server::read_body(body, state.max_body_bytes, headers)
        .await
        .map_err(|e| {
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            ApiError::new(status, "invalid_request", e.msg)
        })
}

fn render(shape: Shape, record: &PlatformTrunk) -> Value {
    match shape {
        Shape::Carrier => model::render_carrier(record),
        Shape::Extension => model::render_extension(record),
    }
}

/// One trunk in an answer: seed 001 answers with the object, seed 004 wraps
/// it with a message.
fn answer(shape: Shape, status: StatusCode, record: &PlatformTrunk, message: &str) -> Response {
    let object = render(shape, record);
    match shape {
        Shape::Carrier => json_response(status, &object),
        Shape::Extension => {
            json_response(status, &json!({ "message": message, "sip_trunk": object }))
        }
    }
}

fn checked_id(id: &str) -> Result<&str, ApiError> {
    if is_platform_trunk_id(id) {
        Ok(id)
    } else {
        // Legacy and foreign forms (UUIDs, ST_ IDs) are not trunk IDs here.
        Err(ApiError::not_found())
    }
}

async fn create(
    shape: Shape,
    state: &ApiState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(state, headers)?;
    let body = read_body(state, headers, body).await?;
    let mut record = model::new_record(shape, &state.platform);
    let errors = model::apply(shape, &mut record, &body);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    model::derive(shape, &mut record);
    let write = model::provision(&record);
    let created = state
        .store
        .create_platform_trunk(write, state.platform.max_trunks)
        .await?;
    tracing::info!(
        trunk = %created.id,
        name = %created.name,
        direction = %created.direction,
        inbound = %created.inbound_trunk_id,
        outbound = %created.outbound_trunk_id,
        rule = %created.dispatch_rule_id,
        "SIP trunk created"
    );
    Ok(answer(
        shape,
        StatusCode::CREATED,
        &created,
        "SIP trunk created",
    ))
}

async fn update(
    shape: Shape,
    state: &ApiState,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(state, headers)?;
    let id = checked_id(id)?;
    let body = read_body(state, headers, body).await?;
    let mut record = state
        .store
        .get_platform_trunk(id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let errors = model::apply(shape, &mut record, &body);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    model::derive(shape, &mut record);
    let write = model::provision(&record);
    let updated = state.store.update_platform_trunk(id, write).await?;
    tracing::info!(trunk = %updated.id, name = %updated.name, "SIP trunk updated");
    Ok(answer(shape, StatusCode::OK, &updated, "SIP trunk updated"))
}

async fn fetch(
    shape: Shape,
    state: &ApiState,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    authorize(state, headers)?;
    let id = checked_id(id)?;
    let record = state
        .store
        .get_platform_trunk(id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(answer(shape, StatusCode::OK, &record, "SIP trunk"))
}

async fn delete(
    shape: Shape,
    state: &ApiState,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    authorize(state, headers)?;
    let id = checked_id(id)?;
    let deleted = state.store.delete_platform_trunk(id).await?;
    tracing::info!(trunk = %deleted.id, name = %deleted.name, "SIP trunk deleted");
    Ok(answer(shape, StatusCode::OK, &deleted, "SIP trunk deleted"))
}

/// `limit` and `cursor` of a list request.
#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

async fn list(
    shape: Shape,
    state: &ApiState,
    query: ListQueryResult,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    authorize(state, headers)?;
    let Query(query) =
        query.map_err(|e| ApiError::invalid(vec![FieldError::new("", e.body_text())]))?;
    let query_has_cursor = query.cursor.is_some();
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(vec![FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_PAGE}"),
                )]))
            }
        },
    };
    // An empty cursor is a client bug (a next_cursor is never empty): say so.
    let cursor = query.cursor.unwrap_or_default();
    if query_has_cursor && !is_platform_trunk_id(&cursor) {
        return Err(ApiError::invalid(vec![FieldError::new(
            "cursor",
            "must be the next_cursor of a previous page",
        )]));
    }
    let page = state.store.list_platform_trunks(&cursor, limit).await?;
    let next_cursor = match (page.has_more, page.trunks.last()) {
        (true, Some(last)) => Value::String(last.id.clone()),
        _ => Value::Null,
    };
    let data: Vec<Value> = page.trunks.iter().map(|t| render(shape, t)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "data": data, "has_more": page.has_more, "next_cursor": next_cursor }),
    ))
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The shape a route speaks, as a const parameter of its handlers, so one
/// handler serves both paths.
const CARRIER: bool = true;
const EXTENSION: bool = false;

fn shape_of(carrier: bool) -> Shape {
    if carrier {
        Shape::Carrier
    } else {
        Shape::Extension
    }
}

type ListQueryResult = Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>;

async fn create_handler<const C: bool>(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(create(shape_of(C), &state, &headers, body).await)
}

async fn update_handler<const C: bool>(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(update(shape_of(C), &state, &id, &headers, body).await)
}

async fn get_handler<const C: bool>(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(fetch(shape_of(C), &state, &id, &headers).await)
}

async fn delete_handler<const C: bool>(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(delete(shape_of(C), &state, &id, &headers).await)
}

async fn list_handler<const C: bool>(
    State(state): State<Arc<ApiState>>,
    query: ListQueryResult,
    headers: HeaderMap,
) -> Response {
    respond(list(shape_of(C), &state, query, &headers).await)
}

async fn openapi() -> Response {
    let mut response = (StatusCode::OK, OPENAPI_JSON).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn no_such_path() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such path in /v1").into_response()
}

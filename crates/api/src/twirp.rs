//! Twirp errors: `{"code","msg","meta"}` with exactly `Content-Type:
//! application/json` and the HTTP status Twirp assigns to each code.

use std::collections::BTreeMap;
use std::fmt;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use switchboard_routing::{ErrorCode, RoutingError};
use switchboard_store::StoreError;

/// Every Twirp error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The operation was cancelled (HTTP 408).
    Canceled,
    /// Unknown error (HTTP 500).
    Unknown,
    /// The client sent an invalid argument (HTTP 400).
    InvalidArgument,
    /// The request body could not be decoded (HTTP 400).
    Malformed,
    /// The operation expired before completion (HTTP 408).
    DeadlineExceeded,
    /// The requested object does not exist (HTTP 404).
    NotFound,
    /// The method, path or content type is not served (HTTP 404).
    BadRoute,
    /// The object already exists (HTTP 409).
    AlreadyExists,
    /// The caller may not do this (HTTP 403).
    PermissionDenied,
    /// The caller is not authenticated, or lacks the grant (HTTP 401).
    Unauthenticated,
    /// A quota or resource is exhausted (HTTP 429).
    ResourceExhausted,
    /// The system is not in a state for this operation (HTTP 412).
    FailedPrecondition,
    /// The operation was aborted (HTTP 409).
    Aborted,
    /// Out of range (HTTP 400).
    OutOfRange,
    /// Not implemented (HTTP 501).
    Unimplemented,
    /// Internal error (HTTP 500).
    Internal,
    /// The service is unavailable right now (HTTP 503).
    Unavailable,
    /// Unrecoverable data loss (HTTP 500).
    Dataloss,
}

impl Code {
    /// The code as spelled on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Canceled => "canceled",
            Code::Unknown => "unknown",
            Code::InvalidArgument => "invalid_argument",
            Code::Malformed => "malformed",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::NotFound => "not_found",
            Code::BadRoute => "bad_route",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::Unauthenticated => "unauthenticated",
            Code::ResourceExhausted => "resource_exhausted",
            Code::FailedPrecondition => "failed_precondition",
            Code::Aborted => "aborted",
            Code::OutOfRange => "out_of_range",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::Dataloss => "dataloss",
        }
    }

    /// The HTTP status Twirp sends with this code.
    pub fn http_status(self) -> u16 {
        match self {
            Code::Canceled | Code::DeadlineExceeded => 408,
            Code::Unknown | Code::Internal | Code::Dataloss => 500,
            Code::InvalidArgument | Code::Malformed | Code::OutOfRange => 400,
            Code::NotFound | Code::BadRoute => 404,
            Code::AlreadyExists | Code::Aborted => 409,
            Code::PermissionDenied => 403,
            Code::Unauthenticated => 401,
            Code::ResourceExhausted => 429,
            Code::FailedPrecondition => 412,
            Code::Unimplemented => 501,
            Code::Unavailable => 503,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ErrorCode> for Code {
    fn from(code: ErrorCode) -> Code {
        match code {
            ErrorCode::InvalidArgument => Code::InvalidArgument,
            ErrorCode::FailedPrecondition => Code::FailedPrecondition,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::Internal => Code::Internal,
            ErrorCode::Unavailable => Code::Unavailable,
        }
    }
}

/// A Twirp error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwirpError {
    /// The code.
    pub code: Code,
    /// The message for humans (LiveKit's text where it has one).
    pub msg: String,
    /// Extra string fields; omitted from the body when empty.
    pub meta: BTreeMap<String, String>,
    /// The HTTP status, when it is not the code's usual one (413 for a body
    /// over the limit).
    pub status_override: Option<u16>,
}

impl fmt::Display for TwirpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.msg)
    }
}

impl std::error::Error for TwirpError {}

impl TwirpError {
    /// An error with a code and message.
    pub fn new(code: Code, msg: impl Into<String>) -> TwirpError {
        TwirpError {
            code,
            msg: msg.into(),
            meta: BTreeMap::new(),
            status_override: None,
        }
    }

    /// Adds a meta entry.
    pub fn with_meta(mut self, key: impl Into<String>, value: impl Into<String>) -> TwirpError {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// `internal`, for failures inside switchboard.
    pub fn internal(msg: impl Into<String>) -> TwirpError {
        TwirpError::new(Code::Internal, msg)
    }

    /// `unauthenticated "permissions denied"`: LiveKit's answer to a missing grant.
    pub fn permission_denied() -> TwirpError {
        TwirpError::new(Code::Unauthenticated, "permissions denied")
    }

    /// `bad_route` with Twirp's `twirp_invalid_route` meta (`"POST /path"`).
    pub fn bad_route(msg: impl Into<String>, method: &str, path: &str) -> TwirpError {
        TwirpError::new(Code::BadRoute, msg)
            .with_meta("twirp_invalid_route", format!("{method} {path}"))
    }

    /// The HTTP status of the response.
    pub fn http_status(&self) -> u16 {
        self.status_override.unwrap_or(self.code.http_status())
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("code".into(), self.code.as_str().into());
        body.insert("msg".into(), self.msg.clone().into());
        if !self.meta.is_empty() {
            let meta = self
                .meta
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
                .collect();
            body.insert("meta".into(), serde_json::Value::Object(meta));
        }
        serde_json::Value::Object(body)
    }
}

impl From<RoutingError> for TwirpError {
    fn from(e: RoutingError) -> TwirpError {
        TwirpError::new(e.code().into(), e.to_string())
    }
}

impl From<StoreError> for TwirpError {
    fn from(e: StoreError) -> TwirpError {
        match e {
            StoreError::Routing(e) => e.into(),
            other => {
                // Store internals (paths, Redis addresses) are for the log, not the caller.
                tracing::error!(error = %other, "store operation failed");
                let msg = match other.code() {
                    ErrorCode::Unavailable => "store unavailable, try again",
                    _ => "internal store error",
                };
                TwirpError::new(other.code().into(), msg)
            }
        }
    }
}

impl IntoResponse for TwirpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.body().to_string();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

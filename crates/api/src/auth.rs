//! Access tokens and grants, as LiveKit's server checks them.
//!
//! The token is an HS256 JWT in `Authorization: Bearer <jwt>` or the
//! `access_token` query parameter. Its issuer names the API key whose secret
//! signs it; `exp` is required, `nbf` honoured, both with one minute of
//! leeway (livekit-api's verifier). A malformed Authorization header, an
//! unknown key or a token that does not verify is answered with HTTP 401 and
//! a plain-text body, before any Twirp handling, as LiveKit does. A request
//! with no token goes on without grants, so the method answers Twirp
//! `unauthenticated` "permissions denied".

use std::collections::HashMap;
use std::fmt;

use axum::extract::Query;
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
pub use livekit_api::access_token::Claims;
use livekit_api::access_token::TokenVerifier;

use crate::twirp::TwirpError;

/// API keys and their secrets. `Debug` shows the keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKeys {
    secrets: HashMap<String, String>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<&String> = self.secrets.keys().collect();
        keys.sort();
        f.debug_struct("ApiKeys").field("keys", &keys).finish()
    }
}

impl ApiKeys {
    /// No keys: every token is refused.
    pub fn new() -> ApiKeys {
        ApiKeys::default()
    }

    /// Adds (or replaces) a key.
    pub fn insert(&mut self, key: impl Into<String>, secret: impl Into<String>) {
        self.secrets.insert(key.into(), secret.into());
    }

    /// The secret of a key.
    pub fn secret(&self, key: &str) -> Option<&str> {
        self.secrets.get(key).map(String::as_str)
    }

    /// Whether `candidate` is one of the configured secrets, compared in
    /// constant time so the answer's timing tells nothing about a secret.
    pub fn is_secret(&self, candidate: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.secrets.values().fold(false, |found, secret| {
            let same: bool = secret.as_bytes().ct_eq(candidate.as_bytes()).into();
            found | same
        })
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The key switchboard signs its own tokens with (agents' jobs, orders
    /// and callers sent to other replicas, which share the keys): the
    /// first name in order, with its secret.
    pub fn signing_key(&self) -> Option<(&str, &str)> {
        self.secrets
            .iter()
            .min_by(|a, b| a.0.cmp(b.0))
            .map(|(key, secret)| (key.as_str(), secret.as_str()))
    }

    /// The configured key names, sorted.
    pub fn key_names(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.secrets.keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }
}

impl<K: Into<String>, S: Into<String>> FromIterator<(K, S)> for ApiKeys {
    fn from_iter<I: IntoIterator<Item = (K, S)>>(iter: I) -> ApiKeys {
        let mut keys = ApiKeys::new();
        for (k, s) in iter {
            keys.insert(k, s);
        }
        keys
    }
}

/// A token that was presented and refused: HTTP 401 as LiveKit answers,
/// but as Twirp JSON `unauthenticated` rather than LiveKit's plain text.
/// The status is the same, so code written against LiveKit keeps working;
/// the body is what the SDKs can read: with plain text the Python SDK
/// reports code "unknown" with an empty message, and Node an undefined
/// code, so a user cannot tell an expired token from a server fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRejection(pub String);

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        TwirpError::new(crate::twirp::Code::Unauthenticated, self.0).into_response()
    }
}

const BEARER: &str = "Bearer ";

/// Verifies the request's token, if any. `Ok(None)`: no token at all.
pub fn authenticate(
    keys: &ApiKeys,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Option<Claims>, AuthRejection> {
    let token = match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let value = value.to_str().unwrap_or("");
            match value.strip_prefix(BEARER) {
                Some(token) => token.trim().to_owned(),
                None => {
                    return Err(AuthRejection(
                        "invalid authorization header. Must start with Bearer ".into(),
                    ))
                }
            }
        }
        None => Query::<HashMap<String, String>>::try_from_uri(uri)
            .ok()
            .and_then(|q| q.0.get("access_token").cloned())
            .unwrap_or_default(),
    };
    if token.is_empty() {
        return Ok(None);
    }
    verify(keys, &token).map(Some)
}

/// Verifies one token against the configured keys.
pub fn verify(keys: &ApiKeys, token: &str) -> Result<Claims, AuthRejection> {
    let unverified = Claims::from_unverified(token)
        .map_err(|_| AuthRejection("invalid authorization token".into()))?;
    let key = unverified.iss;
    let Some(secret) = keys.secret(&key) else {
        return Err(AuthRejection(format!("invalid API key: {key}")));
    };
    // The token itself is never echoed or logged: it is a credential.
    TokenVerifier::with_api_key(&key, secret)
        .verify(token)
        .map_err(|e| AuthRejection(format!("invalid token: {}", verify_reason(&e))))
}

/// Why a token does not verify, in go-jose's words where LiveKit's server
/// would print them.
fn verify_reason(e: &livekit_api::access_token::AccessTokenError) -> String {
    use jsonwebtoken::errors::ErrorKind;
    use livekit_api::access_token::AccessTokenError;
    let AccessTokenError::Encoding(inner) = e else {
        return e.to_string();
    };
    match inner.kind() {
        ErrorKind::ExpiredSignature => "token is expired (exp)".into(),
        ErrorKind::ImmatureSignature => "token not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "signature is invalid".into(),
        ErrorKind::InvalidIssuer => "invalid issuer (iss)".into(),
        ErrorKind::InvalidAlgorithm => "unexpected signature algorithm (HS256 only)".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing required claim ({claim})"),
        _ => format!("malformed token: {inner}"),
    }
}

/// `sip.admin`: every trunk and dispatch rule method, and ListSIPTrunk.
pub fn require_sip_admin(claims: Option<&Claims>) -> Result<(), TwirpError> {
    match claims {
        Some(c) if c.sip.admin => Ok(()),
        _ => Err(TwirpError::permission_denied()),
    }
}

/// `sip.call`: CreateSIPParticipant (admin does not imply it).
pub fn require_sip_call(claims: Option<&Claims>) -> Result<(), TwirpError> {
    match claims {
        Some(c) if c.sip.call => Ok(()),
        _ => Err(TwirpError::permission_denied()),
    }
}

/// TransferSIPParticipant: `sip.call` plus `video.roomAdmin` for that very room.
pub fn require_transfer(claims: Option<&Claims>, room: &str) -> Result<(), TwirpError> {
    require_sip_call(claims)?;
    match claims {
        Some(c) if c.video.room_admin && c.video.room == room => Ok(()),
        _ => Err(TwirpError::permission_denied()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_key_is_the_first_by_name() {
        let keys = ApiKeys::from_iter([("zeta", "z"), ("alpha", "a"), ("mid", "m")]);
        assert_eq!(keys.signing_key(), Some(("alpha", "a")));
        assert_eq!(keys.key_names().first(), Some(&"alpha"));
        assert_eq!(ApiKeys::new().signing_key(), None);
    }
}

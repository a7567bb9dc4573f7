//! The `Authorization` value of a webhook request, made as LiveKit's server
//! makes it (`protocol/webhook`: `auth.NewAccessToken(key, secret)
//! .SetValidFor(5 * time.Minute).SetSha256(b64)`): an HS256 access token
//! whose issuer is the API key, with `nbf` now, `exp` five minutes on, and
//! the claim `sha256`, the standard padded base64 of the body's SHA-256.
//! It is sent bare, without "Bearer ", which is what every SDK's
//! `WebhookReceiver` expects.

use std::time::Duration;

use base64::Engine;
use livekit_api::access_token::AccessToken;
use sha2::{Digest, Sha256};

use crate::WebhookError;

/// How long a token is valid: LiveKit's `SetValidFor(5 * time.Minute)`.
/// A token is made for every attempt, so a retry an hour later still
/// carries a fresh one.
pub const TOKEN_TTL: Duration = Duration::from_secs(5 * 60);

/// The standard (padded) base64 of the SHA-256 of `body`: the `sha256`
/// claim receivers compare the body they got with.
pub fn body_sha256(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body))
}

/// The `Authorization` value for `body`: a token issued by `api_key`,
/// signed with `api_secret`. Fails only on an empty key or secret.
pub fn sign(api_key: &str, api_secret: &str, body: &[u8]) -> Result<String, WebhookError> {
    AccessToken::with_api_key(api_key, api_secret)
        .with_ttl(TOKEN_TTL)
        .with_sha256(&body_sha256(body))
        .to_jwt()
        .map_err(|e| WebhookError::Config(format!("cannot sign: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_api::access_token::TokenVerifier;

    #[test]
    fn token_verifies_and_carries_the_body_hash() {
        let body = br#"{"event":"room_started","id":"EV_1"}"#;
        let token = sign("key", "secret", body).unwrap();
        assert!(!token.starts_with("Bearer"));
        let claims = TokenVerifier::with_api_key("key", "secret")
            .verify(&token)
            .unwrap();
        assert_eq!(claims.iss, "key");
        assert_eq!(claims.sha256, body_sha256(body));
        assert_eq!(claims.exp - claims.nbf, 300);
        assert!(TokenVerifier::with_api_key("key", "other")
            .verify(&token)
            .is_err());
    }

    #[test]
    fn hash_is_standard_padded_base64() {
        // SHA-256 of the empty string, as Go's base64.StdEncoding writes it.
        assert_eq!(
            body_sha256(b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn refuses_empty_keys() {
        assert!(sign("", "secret", b"{}").is_err());
        assert!(sign("key", "", b"{}").is_err());
    }
}

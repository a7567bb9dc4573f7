//! Digest authentication (switchboard_sip::auth): header parsing and the
//! server's verification of what a caller sends.
//!
//! The first byte picks a mode, the rest is header text:
//! - every mode: `Challenge::parse` and `Credentials::parse`. A parsed
//!   challenge written with `to_header()` parses back to the same challenge;
//!   parsed credentials (with a token qop, see below) written back keep
//!   user, realm, nonce, uri, response and algorithm.
//! - `DigestServer::verify_request` on the text as an Authorization value.
//!   Mode bit 0: the text's `NONCE` is first replaced by a nonce this server
//!   issued, so parsing gets past the nonce's MAC to the qop, nc and
//!   response checks.
//! - mode bit 1: the text (split at the first `\n`) is a user name and a
//!   password; a `DigestClient` answers the server's challenges and the
//!   server must accept that answer once and refuse it replayed.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use switchboard_sip::auth::{
    AuthFailure, Challenge, Credentials, DigestClient, DigestServer, DigestServerConfig,
};

const REALM: &str = "sip.example.com";
const URI: &str = "sip:+15550100@sip.example.com";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let now = UNIX_EPOCH + Duration::from_secs(1_750_000_000);

    if let Ok(challenge) = Challenge::parse(&text) {
        let header = challenge.to_header();
        match Challenge::parse(&header) {
            Ok(again) => assert_eq!(again, challenge, "challenge round trip via {header:?}"),
            Err(e) => panic!("written challenge does not parse ({e}): {header:?}"),
        }
    }
    // `Credentials::to_header` writes qop unquoted: it is only ever called
    // with the qop a DigestClient picked (auth or auth-int), so the round
    // trip is checked for token qop values only.
    let token = |q: &str| !q.is_empty() && q.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if let Ok(creds) = Credentials::parse(&text).map_err(|_| ()).and_then(|c| {
        if c.qop.as_deref().is_none_or(token) {
            Ok(c)
        } else {
            Err(())
        }
    }) {
        let header = creds.to_header();
        match Credentials::parse(&header) {
            Ok(again) => {
                assert_eq!(
                    (&again.username, &again.realm, &again.nonce, &again.uri, &again.response, again.algorithm),
                    (&creds.username, &creds.realm, &creds.nonce, &creds.uri, &creds.response, creds.algorithm),
                    "credentials round trip via {header:?}"
                );
            }
            Err(e) => panic!("written credentials do not parse ({e}): {header:?}"),
        }
    }

    let config = DigestServerConfig {
        require_qop: mode & 4 == 0,
        ..DigestServerConfig::default()
    };
    let mut server = DigestServer::new([7u8; 32], config);
    let password_of = |user: &str| (user == "alice").then(|| "secret".to_string());

    let credentials = if mode & 1 != 0 {
        text.replace("NONCE", &server.nonce(now, REALM))
    } else {
        text.to_string()
    };
    let result = server.verify_request(now, "INVITE", URI, REALM, &credentials, &password_of, b"");
    if let Ok(accepted) = &result {
        // Only a correct response for a known user passes.
        assert_eq!(accepted.username, "alice", "accepted an unknown user");
    }

    if mode & 2 != 0 {
        let (user, password) = text.split_once('\n').unwrap_or((&text, ""));
        if user.is_empty() {
            return;
        }
        let challenges = server.challenges(now, REALM, false);
        let refs: Vec<&str> = challenges.iter().map(String::as_str).collect();
        let mut client = DigestClient::new(user, password);
        let body = rest;
        let answer = match client.authorize(&refs, "INVITE", URI, body) {
            Ok(a) => a,
            Err(e) => panic!("client cannot answer our own challenges: {e}"),
        };
        let user_owned = user.to_string();
        let password_owned = password.to_string();
        let lookup = |u: &str| (u == user_owned).then(|| password_owned.clone());
        let later = now + Duration::from_secs(5);
        match server.verify_request(later, "INVITE", URI, REALM, &answer, &lookup, body) {
            Ok(credentials) => assert_eq!(credentials.username, user),
            Err(e) => panic!("server refused a correct answer ({e:?}) for user {user:?}: {answer}"),
        }
        match server.verify_request(later, "INVITE", URI, REALM, &answer, &lookup, body) {
            Err(AuthFailure::Replay) => {}
            other => panic!("replayed answer gave {other:?}"),
        }
    }
});

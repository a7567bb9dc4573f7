//! Digest authentication, both sides (RFC 3261 §22, RFC 7616, RFC 8760).
//!
//! Server: challenges carry a stateless nonce, `base64url(timestamp ‖ random
//! ‖ HMAC-SHA256(key, timestamp ‖ random ‖ realm))`, so any replica holding
//! the key can check a nonce without having issued it. qop=auth is offered
//! and, by default, required; the highest nonce-count seen per nonce is
//! kept so a replayed response is refused. Responses are compared in
//! constant time, and an unknown user is refused exactly like a wrong
//! password.
//!
//! Client: answers WWW-Authenticate and Proxy-Authenticate challenges with
//! the strongest algorithm offered, honouring realm, qop, opaque and
//! nonce-count, and refuses to loop when the same realm challenges again
//! without `stale=true` (the password is wrong).

use crate::random::{fill_random, random_token};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// A digest hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 2617): still what carriers use.
    Md5,
    /// MD5-sess.
    Md5Sess,
    /// SHA-256 (RFC 7616, RFC 8760).
    Sha256,
    /// SHA-256-sess.
    Sha256Sess,
    /// SHA-512-256.
    Sha512_256,
    /// SHA-512-256-sess.
    Sha512_256Sess,
}

impl Algorithm {
    /// Parses an `algorithm` token (case-insensitive).
    pub fn parse(token: &str) -> Option<Algorithm> {
        const ALL: [Algorithm; 6] = [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
            Algorithm::Sha512_256,
            Algorithm::Sha512_256Sess,
        ];
        ALL.into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(token))
    }

    /// The token.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    fn is_session(self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }

    /// Preference when several are offered: stronger first.
    fn strength(self) -> u8 {
        match self {
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => 3,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 2,
            Algorithm::Md5 | Algorithm::Md5Sess => 1,
        }
    }

    /// Lowercase hex of the hash of `data`.
    pub fn hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => to_hex(&Md5::digest(data)),
            Algorithm::Sha256 | Algorithm::Sha256Sess => to_hex(&Sha256::digest(data)),
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => to_hex(&Sha512_256::digest(data)),
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Why a header could not be read, or a challenge not answered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// Not a Digest header, or its parameters are malformed.
    #[error("malformed Digest header")]
    Malformed,
    /// A required parameter is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// No challenge uses an algorithm or qop we implement.
    #[error("no challenge we can answer")]
    Unsupported,
    /// The realm challenged again without stale=true after we answered:
    /// the credentials were refused. Retrying would loop.
    #[error("credentials refused for realm {0}")]
    Refused(String),
}

/// Splits `Digest a=b, c="d"` into its scheme and parameters (names
/// lowercased, quoted values unescaped).
fn parse_auth_params(value: &str) -> Result<(String, Vec<(String, String)>), AuthError> {
    let value = value.trim();
    let (scheme, mut rest) = value.split_once([' ', '\t']).ok_or(AuthError::Malformed)?;
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let eq = rest.find('=').ok_or(AuthError::Malformed)?;
        let name = rest[..eq].trim();
        if name.is_empty() || !name.bytes().all(crate::message::grammar::is_token_byte) {
            return Err(AuthError::Malformed);
        }
        let after = rest[eq + 1..].trim_start_matches([' ', '\t']);
        let (value, remaining) = if after.starts_with('"') {
            let (text, remaining) =
                crate::message::grammar::take_quoted_string(after).ok_or(AuthError::Malformed)?;
            (text, remaining)
        } else {
            let end = after.find([',', ' ', '\t']).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        params.push((name.to_ascii_lowercase(), value));
        rest = remaining.trim_start_matches([' ', '\t']);
        if !rest.is_empty() && !rest.starts_with(',') {
            return Err(AuthError::Malformed);
        }
    }
    Ok((scheme.to_string(), params))
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A Digest challenge (WWW-Authenticate or Proxy-Authenticate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Protection space.
    pub realm: String,
    /// Server nonce.
    pub nonce: String,
    /// Opaque value to echo.
    pub opaque: Option<String>,
    /// Algorithm (MD5 when absent).
    pub algorithm: Algorithm,
    /// Offered qop values (`auth`, `auth-int`); empty for RFC 2069 servers.
    pub qop: Vec<String>,
    /// True when the previous nonce expired but the credentials were good.
    pub stale: bool,
}

impl Challenge {
    /// Parses a challenge header value. An unknown algorithm is an error
    /// (`Unsupported`), not MD5.
    pub fn parse(value: &str) -> Result<Challenge, AuthError> {
        let (scheme, params) = parse_auth_params(value)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(AuthError::Unsupported);
        }
        let algorithm = match param(&params, "algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(a).ok_or(AuthError::Unsupported)?,
        };
        Ok(Challenge {
            realm: param(&params, "realm")
                .ok_or(AuthError::Missing("realm"))?
                .to_string(),
            nonce: param(&params, "nonce")
                .ok_or(AuthError::Missing("nonce"))?
                .to_string(),
            opaque: param(&params, "opaque").map(str::to_string),
            algorithm,
            qop: param(&params, "qop")
                .map(|q| {
                    q.split(',')
                        .map(|s| s.trim().to_ascii_lowercase())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            stale: param(&params, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The header value.
    pub fn to_header(&self) -> String {
        let mut out = format!(
            "Digest realm={}, nonce={}, algorithm={}",
            quote(&self.realm),
            quote(&self.nonce),
            self.algorithm.as_str()
        );
        if !self.qop.is_empty() {
            let _ = write!(out, ", qop={}", quote(&self.qop.join(",")));
        }
        if let Some(opaque) = &self.opaque {
            let _ = write!(out, ", opaque={}", quote(opaque));
        }
        if self.stale {
            out.push_str(", stale=true");
        }
        out
    }
}

/// Digest credentials (Authorization or Proxy-Authorization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Realm.
    pub realm: String,
    /// The server nonce being answered.
    pub nonce: String,
    /// The digest-uri.
    pub uri: String,
    /// The response hash, lowercase hex.
    pub response: String,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Client nonce (with qop).
    pub cnonce: Option<String>,
    /// Opaque, echoed.
    pub opaque: Option<String>,
    /// The chosen qop.
    pub qop: Option<String>,
    /// Nonce count (with qop).
    pub nc: Option<u32>,
}

impl Credentials {
    /// Parses a credentials header value.
    pub fn parse(value: &str) -> Result<Credentials, AuthError> {
        let (scheme, params) = parse_auth_params(value)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(AuthError::Unsupported);
        }
        let required = |name: &'static str| {
            param(&params, name)
                .map(str::to_string)
                .ok_or(AuthError::Missing(name))
        };
        let algorithm = match param(&params, "algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(a).ok_or(AuthError::Unsupported)?,
        };
        let nc = match param(&params, "nc") {
            None => None,
            Some(nc) => {
                if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(AuthError::Malformed);
                }
                Some(u32::from_str_radix(nc, 16).map_err(|_| AuthError::Malformed)?)
            }
        };
        if param(&params, "userhash").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            // RFC 7616 userhash is not offered by our challenges.
            return Err(AuthError::Unsupported);
        }
        Ok(Credentials {
            username: required("username")?,
            realm: required("realm")?,
            nonce: required("nonce")?,
            uri: required("uri")?,
            response: required("response")?.to_ascii_lowercase(),
            algorithm,
            cnonce: param(&params, "cnonce").map(str::to_string),
            opaque: param(&params, "opaque").map(str::to_string),
            qop: param(&params, "qop").map(|q| q.to_ascii_lowercase()),
            nc,
        })
    }

    /// The header value.
    pub fn to_header(&self) -> String {
        let mut out = format!(
            "Digest username={}, realm={}, nonce={}, uri={}, response={}, algorithm={}",
            quote(&self.username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(&self.uri),
            quote(&self.response),
            self.algorithm.as_str()
        );
        if let (Some(qop), Some(nc), Some(cnonce)) = (&self.qop, self.nc, &self.cnonce) {
            let _ = write!(out, ", qop={qop}, nc={nc:08x}, cnonce={}", quote(cnonce));
        }
        if let Some(opaque) = &self.opaque {
            let _ = write!(out, ", opaque={}", quote(opaque));
        }
        out
    }
}

/// The inputs of a digest response.
struct DigestInput<'a> {
    algorithm: Algorithm,
    username: &'a str,
    realm: &'a str,
    password: &'a str,
    nonce: &'a str,
    cnonce: Option<&'a str>,
    nc: Option<u32>,
    qop: Option<&'a str>,
    method: &'a str,
    uri: &'a str,
    body: &'a [u8],
}

/// RFC 7616 §3.4.1: the response for the given inputs.
fn digest_response(input: &DigestInput<'_>) -> String {
    let algorithm = input.algorithm;
    let mut ha1 =
        algorithm.hex(format!("{}:{}:{}", input.username, input.realm, input.password).as_bytes());
    if algorithm.is_session() {
        ha1 = algorithm
            .hex(format!("{ha1}:{}:{}", input.nonce, input.cnonce.unwrap_or_default()).as_bytes());
    }
    let ha2 = if input.qop == Some("auth-int") {
        let body_hash = algorithm.hex(input.body);
        algorithm.hex(format!("{}:{}:{body_hash}", input.method, input.uri).as_bytes())
    } else {
        algorithm.hex(format!("{}:{}", input.method, input.uri).as_bytes())
    };
    match (input.qop, input.nc) {
        (Some(qop), Some(nc)) => algorithm.hex(
            format!(
                "{ha1}:{}:{nc:08x}:{}:{qop}:{ha2}",
                input.nonce,
                input.cnonce.unwrap_or_default()
            )
            .as_bytes(),
        ),
        _ => algorithm.hex(format!("{ha1}:{}:{ha2}", input.nonce).as_bytes()),
    }
}

/// Which header pair a challenge uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// 401 with WWW-Authenticate, answered in Authorization.
    Www,
    /// 407 with Proxy-Authenticate, answered in Proxy-Authorization.
    Proxy,
}

impl ChallengeKind {
    /// The status of the challenge response.
    pub fn status(self) -> u16 {
        match self {
            ChallengeKind::Www => 401,
            ChallengeKind::Proxy => 407,
        }
    }

    /// The challenge header.
    pub fn challenge_header(self) -> crate::message::HeaderName {
        match self {
            ChallengeKind::Www => crate::message::HeaderName::WwwAuthenticate,
            ChallengeKind::Proxy => crate::message::HeaderName::ProxyAuthenticate,
        }
    }

    /// The credentials header.
    pub fn credentials_header(self) -> crate::message::HeaderName {
        match self {
            ChallengeKind::Www => crate::message::HeaderName::Authorization,
            ChallengeKind::Proxy => crate::message::HeaderName::ProxyAuthorization,
        }
    }
}

/// Why the server refused credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AuthFailure {
    /// The header could not be read.
    #[error("malformed credentials")]
    Malformed,
    /// An algorithm we did not offer.
    #[error("algorithm not offered")]
    UnsupportedAlgorithm,
    /// Credentials for another realm.
    #[error("wrong realm")]
    WrongRealm,
    /// A nonce we did not issue (or one tampered with).
    #[error("nonce not issued by us")]
    BadNonce,
    /// The credentials were right but the nonce expired: challenge again
    /// with stale=true.
    #[error("nonce expired")]
    Stale,
    /// A nonce-count already used with this nonce.
    #[error("nonce count replayed")]
    Replay,
    /// No qop while qop is required.
    #[error("qop=auth required")]
    QopRequired,
    /// Wrong user name or password (the two are indistinguishable).
    #[error("credentials refused")]
    Refused,
    /// The digest-uri is not the request's Request-URI.
    #[error("digest uri is not the Request-URI")]
    UriMismatch,
}

/// Whether a digest-uri names the Request-URI (RFC 3261 §22.4): the same
/// text, or a SIP URI for the same host and port whose user, when it has
/// one, is the Request-URI's. Clients differ: SIPp 3.6 sends
/// `sip:host:port` without the user whatever the request line says.
fn same_digest_uri(digest_uri: &str, request_uri: &str) -> bool {
    let clean = |u: &str| {
        u.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string()
    };
    let (a, b) = (clean(digest_uri), clean(request_uri));
    if a == b {
        return true;
    }
    let (Ok(crate::message::Uri::Sip(digest)), Ok(crate::message::Uri::Sip(request))) = (
        crate::message::Uri::parse(&a),
        crate::message::Uri::parse(&b),
    ) else {
        return false;
    };
    let default_port = |secure: bool| if secure { 5061 } else { 5060 };
    digest.host == request.host
        && digest.port.unwrap_or(default_port(digest.secure))
            == request.port.unwrap_or(default_port(request.secure))
        && digest
            .user
            .as_ref()
            .is_none_or(|user| Some(user) == request.user.as_ref())
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct DigestServerConfig {
    /// How long a nonce stays valid.
    pub nonce_ttl: Duration,
    /// Algorithms offered, one challenge each, in order of preference.
    pub algorithms: Vec<Algorithm>,
    /// Refuse responses without qop (RFC 2069 style). RFC 8760 makes qop
    /// mandatory; without it, replays within the nonce lifetime cannot be
    /// detected except by making each nonce single-use.
    pub require_qop: bool,
    /// Most nonces whose counts are remembered for replay detection.
    pub max_tracked_nonces: usize,
}

impl Default for DigestServerConfig {
    fn default() -> DigestServerConfig {
        DigestServerConfig {
            nonce_ttl: Duration::from_secs(60),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            require_qop: true,
            max_tracked_nonces: 100_000,
        }
    }
}

const NONCE_RANDOM: usize = 12;
const NONCE_MAC: usize = 16;
const NONCE_LEN: usize = 8 + NONCE_RANDOM + NONCE_MAC;
/// Clock skew tolerated between replicas for nonces from the future.
const CLOCK_SKEW: u64 = 30;

/// The server side of digest authentication.
#[derive(Debug)]
pub struct DigestServer {
    key: [u8; 32],
    config: DigestServerConfig,
    counts: HashMap<String, u32>,
    order: VecDeque<(u64, String)>,
}

impl DigestServer {
    /// A server with a key shared by every replica that must accept the
    /// same nonces.
    pub fn new(key: [u8; 32], config: DigestServerConfig) -> DigestServer {
        DigestServer {
            key,
            config,
            counts: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// A server with a fresh random key (nonces valid on this process only).
    pub fn with_random_key(config: DigestServerConfig) -> Result<DigestServer, getrandom::Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(DigestServer::new(key, config))
    }

    fn mac(&self, timestamp: &[u8], random: &[u8], realm: &str) -> [u8; NONCE_MAC] {
        let mut out = [0u8; NONCE_MAC];
        // HMAC accepts keys of any length, so this cannot fail.
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) {
            mac.update(timestamp);
            mac.update(random);
            mac.update(realm.as_bytes());
            let tag = mac.finalize().into_bytes();
            out.copy_from_slice(&tag[..NONCE_MAC]);
        }
        out
    }

    /// A fresh nonce for `realm`.
    pub fn nonce(&self, now: SystemTime, realm: &str) -> String {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let timestamp = secs.to_be_bytes();
        let mut random = [0u8; NONCE_RANDOM];
        fill_random(&mut random);
        let mac = self.mac(&timestamp, &random, realm);
        let mut raw = Vec::with_capacity(NONCE_LEN);
        raw.extend_from_slice(&timestamp);
        raw.extend_from_slice(&random);
        raw.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The challenge header values, one per configured algorithm. They do
    /// not depend on who is calling, so known and unknown users see the
    /// same thing.
    pub fn challenges(&self, now: SystemTime, realm: &str, stale: bool) -> Vec<String> {
        let nonce = self.nonce(now, realm);
        self.config
            .algorithms
            .iter()
            .map(|algorithm| {
                Challenge {
                    realm: realm.to_string(),
                    nonce: nonce.clone(),
                    opaque: None,
                    algorithm: *algorithm,
                    qop: vec!["auth".to_string()],
                    stale,
                }
                .to_header()
            })
            .collect()
    }

    /// Checks a nonce's MAC; returns its timestamp.
    fn nonce_timestamp(&self, nonce: &str, realm: &str) -> Result<u64, AuthFailure> {
        let raw = URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| AuthFailure::BadNonce)?;
        if raw.len() != NONCE_LEN {
            return Err(AuthFailure::BadNonce);
        }
        let (timestamp, rest) = raw.split_at(8);
        let (random, mac) = rest.split_at(NONCE_RANDOM);
        let expected = self.mac(timestamp, random, realm);
        if !bool::from(expected.ct_eq(mac)) {
            return Err(AuthFailure::BadNonce);
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(timestamp);
        Ok(u64::from_be_bytes(ts))
    }

    /// Verifies credentials sent with a request. `password_of` gives the
    /// password of a user name (None for unknown users).
    pub fn verify(
        &mut self,
        now: SystemTime,
        method: &str,
        realm: &str,
        credentials: &str,
        password_of: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> Result<String, AuthFailure> {
        self.verify_credentials(now, method, None, realm, credentials, password_of, body)
            .map(|creds| creds.username)
    }

    /// Parses and checks credentials once; with a Request-URI, the
    /// digest-uri must name it. The verified credentials are returned.
    #[allow(clippy::too_many_arguments)]
    fn verify_credentials(
        &mut self,
        now: SystemTime,
        method: &str,
        request_uri: Option<&str>,
        realm: &str,
        credentials: &str,
        password_of: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> Result<Credentials, AuthFailure> {
        let creds = Credentials::parse(credentials).map_err(|e| match e {
            AuthError::Unsupported => AuthFailure::UnsupportedAlgorithm,
            _ => AuthFailure::Malformed,
        })?;
        if request_uri.is_some_and(|uri| !same_digest_uri(&creds.uri, uri)) {
            return Err(AuthFailure::UriMismatch);
        }
        if !self.config.algorithms.contains(&creds.algorithm) {
            return Err(AuthFailure::UnsupportedAlgorithm);
        }
        if creds.realm != realm {
            return Err(AuthFailure::WrongRealm);
        }
        let issued = self.nonce_timestamp(&creds.nonce, realm)?;
        // The nonce's age before the password: an expired nonce says
        // nothing about the password, or one old nonce would let a guesser
        // try passwords for ever without asking for a fresh challenge
        // (RFC 7616 §3.3: stale means the nonce is invalid).
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if issued > now_secs.saturating_add(CLOCK_SKEW)
            || now_secs.saturating_sub(issued) > self.config.nonce_ttl.as_secs()
        {
            return Err(AuthFailure::Stale);
        }
        let qop = match creds.qop.as_deref() {
            Some("auth") | Some("auth-int") => creds.qop.as_deref(),
            Some(_) => return Err(AuthFailure::Malformed),
            None if self.config.require_qop => return Err(AuthFailure::QopRequired),
            None => None,
        };
        if qop.is_some() && (creds.nc.is_none() || creds.cnonce.is_none()) {
            return Err(AuthFailure::Malformed);
        }
        // An unknown user is checked against a throwaway password so that
        // the work done, and the answer, are those of a wrong password.
        let known = password_of(&creds.username);
        let password = known.clone().unwrap_or_else(|| random_token(24));
        let expected = digest_response(&DigestInput {
            algorithm: creds.algorithm,
            username: &creds.username,
            realm,
            password: &password,
            nonce: &creds.nonce,
            cnonce: creds.cnonce.as_deref(),
            nc: creds.nc,
            qop,
            method,
            uri: &creds.uri,
            body,
        });
        let matches = bool::from(expected.as_bytes().ct_eq(creds.response.as_bytes()));
        if !matches || known.is_none() {
            return Err(AuthFailure::Refused);
        }
        // Without qop the nonce is single use.
        let count = creds.nc.unwrap_or(u32::MAX);
        self.forget_expired(now_secs);
        match self.counts.get_mut(&creds.nonce) {
            Some(last) if creds.nc.is_none() || count <= *last => return Err(AuthFailure::Replay),
            Some(last) => *last = count,
            None => {
                if self.counts.len() >= self.config.max_tracked_nonces {
                    if let Some((_, oldest)) = self.order.pop_front() {
                        self.counts.remove(&oldest);
                    }
                }
                self.counts.insert(creds.nonce.clone(), count);
                self.order.push_back((issued, creds.nonce.clone()));
            }
        }
        Ok(creds)
    }

    /// [`DigestServer::verify`] for a request: the credentials must also be
    /// for the request's own Request-URI (RFC 7616 §3.4.6), or a response
    /// computed for one request could be presented with another.
    /// The verified credentials come back (their nonce and count, for a
    /// replay check shared with other replicas).
    #[allow(clippy::too_many_arguments)]
    pub fn verify_request(
        &mut self,
        now: SystemTime,
        method: &str,
        request_uri: &str,
        realm: &str,
        credentials: &str,
        password_of: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> Result<Credentials, AuthFailure> {
        self.verify_credentials(
            now,
            method,
            Some(request_uri),
            realm,
            credentials,
            password_of,
            body,
        )
    }

    fn forget_expired(&mut self, now_secs: u64) {
        let ttl = self.config.nonce_ttl.as_secs();
        while let Some((issued, _)) = self.order.front() {
            if now_secs.saturating_sub(*issued) <= ttl + CLOCK_SKEW {
                break;
            }
            if let Some((_, nonce)) = self.order.pop_front() {
                self.counts.remove(&nonce);
            }
        }
        crate::core::give_back_spare(&mut self.counts);
        if self.order.capacity() > 1024 && self.order.len() < self.order.capacity() / 4 {
            self.order.shrink_to(self.order.len().saturating_mul(2));
        }
    }
}

/// The client side: answers challenges for one set of credentials.
#[derive(Debug, Clone)]
pub struct DigestClient {
    username: String,
    password: String,
    counts: HashMap<String, u32>,
    answered: HashMap<String, String>,
}

impl DigestClient {
    /// A client for `username` and `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> DigestClient {
        DigestClient {
            username: username.into(),
            password: password.into(),
            counts: HashMap::new(),
            answered: HashMap::new(),
        }
    }

    /// Answers the strongest challenge we can among `challenges` (the
    /// values of every WWW-Authenticate or Proxy-Authenticate header of a
    /// 401 or 407), for a request with this method, Request-URI and body.
    pub fn authorize(
        &mut self,
        challenges: &[&str],
        method: &str,
        uri: &str,
        body: &[u8],
    ) -> Result<String, AuthError> {
        let cnonce = random_token(24);
        self.authorize_with_cnonce(challenges, method, uri, body, &cnonce)
    }

    fn authorize_with_cnonce(
        &mut self,
        challenges: &[&str],
        method: &str,
        uri: &str,
        body: &[u8],
        cnonce: &str,
    ) -> Result<String, AuthError> {
        let parsed: Vec<Challenge> = challenges
            .iter()
            .filter_map(|c| Challenge::parse(c).ok())
            .filter(|c| c.qop.is_empty() || c.qop.iter().any(|q| q == "auth" || q == "auth-int"))
            .collect();
        let challenge = parsed
            .into_iter()
            .max_by_key(|c| c.algorithm.strength())
            .ok_or(AuthError::Unsupported)?;
        if let Some(previous_nonce) = self.answered.get(&challenge.realm) {
            if !challenge.stale && *previous_nonce != challenge.nonce {
                return Err(AuthError::Refused(challenge.realm.clone()));
            }
        }
        let qop = if challenge.qop.iter().any(|q| q == "auth") {
            Some("auth")
        } else if challenge.qop.iter().any(|q| q == "auth-int") {
            Some("auth-int")
        } else {
            None
        };
        let nc = qop.map(|_| {
            let count = self.counts.entry(challenge.nonce.clone()).or_insert(0);
            *count += 1;
            *count
        });
        let response = digest_response(&DigestInput {
            algorithm: challenge.algorithm,
            username: &self.username,
            realm: &challenge.realm,
            password: &self.password,
            nonce: &challenge.nonce,
            cnonce: qop.map(|_| cnonce),
            nc,
            qop,
            method,
            uri,
            body,
        });
        self.answered
            .insert(challenge.realm.clone(), challenge.nonce.clone());
        Ok(Credentials {
            username: self.username.clone(),
            realm: challenge.realm,
            nonce: challenge.nonce,
            uri: uri.to_string(),
            response,
            algorithm: challenge.algorithm,
            cnonce: qop.map(|_| cnonce.to_string()),
            opaque: challenge.opaque,
            qop: qop.map(str::to_string),
            nc,
        }
        .to_header())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_CHALLENGE_COMMON: &str = r#"realm="http-auth@example.org", qop="auth, auth-int", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
    const RFC_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    fn rfc_answer(algorithm: &str) -> Credentials {
        let challenge = format!("Digest {RFC_CHALLENGE_COMMON}, algorithm={algorithm}");
        let mut client = DigestClient::new("Mufasa", "Circle of Life");
        let header = client
            .authorize_with_cnonce(&[&challenge], "GET", "/dir/index.html", b"", RFC_CNONCE)
            .unwrap();
        Credentials::parse(&header).unwrap()
    }

    #[test]
    fn rfc7616_md5_example() {
        let creds = rfc_answer("MD5");
        assert_eq!(creds.response, "8ca523f5e9506fed4657c9700eebdbec");
        assert_eq!(creds.nc, Some(1));
        assert_eq!(creds.qop.as_deref(), Some("auth"));
        assert_eq!(
            creds.opaque.as_deref(),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
    }

    #[test]
    fn rfc7616_sha256_example() {
        let creds = rfc_answer("SHA-256");
        assert_eq!(
            creds.response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn rfc2617_example_without_the_rfc7616_cnonce() {
        // RFC 2617 §3.5: MD5, qop=auth, nc=00000001, cnonce 0a4f113b.
        let challenge = r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let mut client = DigestClient::new("Mufasa", "Circle Of Life");
        let header = client
            .authorize_with_cnonce(&[challenge], "GET", "/dir/index.html", b"", "0a4f113b")
            .unwrap();
        assert_eq!(
            Credentials::parse(&header).unwrap().response,
            "6629fae49393a05397450978507c4ef1"
        );
    }

    fn server() -> DigestServer {
        DigestServer::new([7u8; 32], DigestServerConfig::default())
    }

    fn passwords(user: &str) -> Option<String> {
        (user == "trunk-user").then(|| "s3cret".to_string())
    }

    const URI: &str = "sip:+15550100@gw.example.com";

    #[test]
    fn client_and_server_agree_on_every_algorithm() {
        let now = SystemTime::now();
        for algorithms in [
            vec![Algorithm::Sha256, Algorithm::Md5],
            vec![Algorithm::Md5],
            vec![Algorithm::Sha512_256],
            vec![Algorithm::Md5Sess],
            vec![Algorithm::Sha256Sess],
        ] {
            let mut server = DigestServer::new(
                [9u8; 32],
                DigestServerConfig {
                    algorithms: algorithms.clone(),
                    ..DigestServerConfig::default()
                },
            );
            let challenges = server.challenges(now, "sip.example.com", false);
            let refs: Vec<&str> = challenges.iter().map(String::as_str).collect();
            let mut client = DigestClient::new("trunk-user", "s3cret");
            let header = client.authorize(&refs, "INVITE", URI, b"").unwrap();
            assert_eq!(
                Credentials::parse(&header).unwrap().algorithm,
                algorithms[0],
                "the strongest offered is chosen"
            );
            assert_eq!(
                server.verify(now, "INVITE", "sip.example.com", &header, &passwords, b""),
                Ok("trunk-user".to_string())
            );
        }
    }

    #[test]
    fn sha256_is_offered_first_with_qop() {
        let challenges = server().challenges(SystemTime::now(), "r", false);
        assert_eq!(challenges.len(), 2);
        assert!(challenges[0].contains("algorithm=SHA-256"));
        assert!(challenges[1].contains("algorithm=MD5"));
        assert!(challenges.iter().all(|c| c.contains("qop=\"auth\"")));
    }

    #[test]
    fn auth_int_covers_the_body() {
        let now = SystemTime::now();
        let mut server = server();
        let challenge =
            server.challenges(now, "r", false)[0].replace("qop=\"auth\"", "qop=\"auth-int\"");
        let mut client = DigestClient::new("trunk-user", "s3cret");
        let header = client
            .authorize(&[&challenge], "INVITE", URI, b"v=0")
            .unwrap();
        assert!(header.contains("qop=auth-int"));
        assert_eq!(
            server.verify(now, "INVITE", "r", &header, &passwords, b"v=1"),
            Err(AuthFailure::Refused),
            "a changed body fails"
        );
        assert!(server
            .verify(now, "INVITE", "r", &header, &passwords, b"v=0")
            .is_ok());
    }

    #[test]
    fn wrong_password_and_unknown_user_are_refused_alike() {
        let now = SystemTime::now();
        let mut server = server();
        let challenges = server.challenges(now, "r", false);
        let refs: Vec<&str> = challenges.iter().map(String::as_str).collect();
        let wrong = DigestClient::new("trunk-user", "guess")
            .authorize(&refs, "INVITE", URI, b"")
            .unwrap();
        let unknown = DigestClient::new("nobody", "s3cret")
            .authorize(&refs, "INVITE", URI, b"")
            .unwrap();
        let a = server.verify(now, "INVITE", "r", &wrong, &passwords, b"");
        let b = server.verify(now, "INVITE", "r", &unknown, &passwords, b"");
        assert_eq!(a, Err(AuthFailure::Refused));
        assert_eq!(a, b);
    }

    #[test]
    fn challenges_do_not_depend_on_the_caller() {
        // The challenge API takes no user at all; two challenges differ only
        // in their random nonce.
        let s = server();
        let now = SystemTime::now();
        let strip = |v: &str| {
            let start = v.find("nonce=\"").unwrap() + 7;
            let end = start + v[start..].find('"').unwrap();
            format!("{}{}", &v[..start], &v[end..])
        };
        let a = s.challenges(now, "r", false);
        let b = s.challenges(now, "r", false);
        assert_ne!(a, b, "fresh nonces");
        assert_eq!(
            a.iter().map(|v| strip(v)).collect::<Vec<_>>(),
            b.iter().map(|v| strip(v)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_replayed_nonce_count_is_refused_and_a_higher_one_accepted() {
        let now = SystemTime::now();
        let mut server = server();
        let challenges = server.challenges(now, "r", false);
        let refs: Vec<&str> = challenges.iter().map(String::as_str).collect();
        let mut client = DigestClient::new("trunk-user", "s3cret");
        let first = client.authorize(&refs, "INVITE", URI, b"").unwrap();
        assert!(server
            .verify(now, "INVITE", "r", &first, &passwords, b"")
            .is_ok());
        assert_eq!(
            server.verify(now, "INVITE", "r", &first, &passwords, b""),
            Err(AuthFailure::Replay)
        );
        let second = client.authorize(&refs, "INVITE", URI, b"").unwrap();
        assert!(second.contains("nc=00000002"));
        assert!(server
            .verify(now, "INVITE", "r", &second, &passwords, b"")
            .is_ok());
    }

    #[test]
    fn an_expired_nonce_is_stale_whatever_the_password() {
        let issued = SystemTime::now();
        let mut server = server();
        let challenges = server.challenges(issued, "r", false);
        let refs: Vec<&str> = challenges.iter().map(String::as_str).collect();
        let good = DigestClient::new("trunk-user", "s3cret")
            .authorize(&refs, "INVITE", URI, b"")
            .unwrap();
        let bad = DigestClient::new("trunk-user", "nope")
            .authorize(&refs, "INVITE", URI, b"")
            .unwrap();
        let later = issued + Duration::from_secs(61);
        assert_eq!(
            server.verify(later, "INVITE", "r", &good, &passwords, b""),
            Err(AuthFailure::Stale)
        );
        assert_eq!(
            server.verify(later, "INVITE", "r", &bad, &passwords, b""),
            Err(AuthFailure::Stale),
            "an old nonce is no oracle: the password is not looked at"
        );
        let again = server.challenges(later, "r", true);
        assert!(again[0].contains("stale=true"));
    }

    #[test]
    fn nonces_are_bound_to_key_and_realm() {
        let now = SystemTime::now();
        let other_replica = DigestServer::new([7u8; 32], DigestServerConfig::default());
        let challenges = other_replica.challenges(now, "r", false);
        let refs: Vec<&str> = challenges.iter().map(String::as_str).collect();
        let header = DigestClient::new("trunk-user", "s3cret")
            .authorize(&refs, "INVITE", URI, b"")
            .unwrap();
        assert!(
            server()
                .verify(now, "INVITE", "r", &header, &passwords, b"")
                .is_ok(),
            "a replica with the same key accepts it"
        );
        let mut foreign = DigestServer::new([8u8; 32], DigestServerConfig::default());
        assert_eq!(
            foreign.verify(now, "INVITE", "r", &header, &passwords, b""),
            Err(AuthFailure::BadNonce)
        );
        let tampered = header.replace("realm=\"r\"", "realm=\"other\"");
        assert_eq!(
            server().verify(now, "INVITE", "other", &tampered, &passwords, b""),
            Err(AuthFailure::BadNonce)
        );
    }

    #[test]
    fn qop_is_required_unless_configured_otherwise() {
        let now = SystemTime::now();
        let mut server = server();
        let nonce = server.nonce(now, "r");
        let legacy = format!("Digest realm=\"r\", nonce=\"{nonce}\"");
        let header = DigestClient::new("trunk-user", "s3cret")
            .authorize(&[&legacy], "INVITE", URI, b"")
            .unwrap();
        assert!(!header.contains("qop"));
        assert_eq!(
            server.verify(now, "INVITE", "r", &header, &passwords, b""),
            Err(AuthFailure::QopRequired)
        );
        let mut lenient = DigestServer::new(
            [7u8; 32],
            DigestServerConfig {
                require_qop: false,
                ..DigestServerConfig::default()
            },
        );
        assert!(lenient
            .verify(now, "INVITE", "r", &header, &passwords, b"")
            .is_ok());
        assert_eq!(
            lenient.verify(now, "INVITE", "r", &header, &passwords, b""),
            Err(AuthFailure::Replay),
            "without qop a nonce is single use"
        );
    }

    #[test]
    fn the_client_does_not_loop_on_a_refused_password() {
        let now = SystemTime::now();
        let server = server();
        let mut client = DigestClient::new("trunk-user", "wrong");
        let first = server.challenges(now, "r", false);
        let refs: Vec<&str> = first.iter().map(String::as_str).collect();
        assert!(client.authorize(&refs, "INVITE", URI, b"").is_ok());
        let second = server.challenges(now, "r", false);
        let refs: Vec<&str> = second.iter().map(String::as_str).collect();
        assert_eq!(
            client.authorize(&refs, "INVITE", URI, b""),
            Err(AuthError::Refused("r".into()))
        );
        let stale = server.challenges(now, "r", true);
        let refs: Vec<&str> = stale.iter().map(String::as_str).collect();
        assert!(
            client.authorize(&refs, "INVITE", URI, b"").is_ok(),
            "stale=true is retried"
        );
    }

    #[test]
    fn malformed_and_foreign_headers() {
        assert_eq!(
            Challenge::parse("Basic realm=\"x\""),
            Err(AuthError::Unsupported)
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"x\", nonce=\"n\", algorithm=SHA3-256"),
            Err(AuthError::Unsupported)
        );
        assert!(Challenge::parse("Digest realm=\"x").is_err());
        assert!(Credentials::parse("NoOneKnowsThisScheme opaque-data=here").is_err());
        assert!(Credentials::parse("Digest username=\"a\", nc=zz").is_err());
        let mut s = server();
        assert_eq!(
            s.verify(
                SystemTime::now(),
                "INVITE",
                "r",
                "Digest garbage",
                &passwords,
                b""
            ),
            Err(AuthFailure::Malformed)
        );
    }

    #[test]
    fn credentials_must_be_for_the_request_uri() {
        let now = SystemTime::now();
        let mut server = server();
        let challenges = server.challenges(now, "r", false);
        let refs: Vec<&str> = challenges.iter().map(String::as_str).collect();
        let header = DigestClient::new("trunk-user", "s3cret")
            .authorize(&refs, "INVITE", URI, b"")
            .unwrap();
        assert_eq!(
            server.verify_request(
                now,
                "INVITE",
                "sip:other@example.com",
                "r",
                &header,
                &passwords,
                b""
            ),
            Err(AuthFailure::UriMismatch)
        );
        let upper = URI.replacen("gw.example", "GW.Example", 1);
        assert!(server
            .verify_request(now, "INVITE", &upper, "r", &header, &passwords, b"")
            .is_ok());
        // SIPp's digest-uri names only the host.
        assert!(same_digest_uri("sip:gw.example.com", URI));
        assert!(same_digest_uri("sip:gw.example.com:5060", URI));
        assert!(!same_digest_uri("sip:gw.example.com:5070", URI));
        assert!(!same_digest_uri("sip:+15550199@gw.example.com", URI));
        assert!(!same_digest_uri("sip:evil.example.com", URI));
    }
}

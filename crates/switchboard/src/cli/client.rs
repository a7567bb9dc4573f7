//! A Twirp JSON client: `POST {url}/twirp/<service>/<Method>` with a fresh
//! access token per request, and Twirp errors turned into one clear line.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::token::{mint, Grants, REQUEST_TOKEN_TTL};
use super::{CliError, ConnectionArgs};

/// The LiveKit SIP service.
pub const LIVEKIT_SIP: &str = "livekit.SIP";
/// switchboard's own additions (ExplainCall).
pub const SWITCHBOARD_SIP: &str = "switchboard.SIP";

/// Largest response body read, so a confused server cannot fill memory.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// A Twirp error response, or an HTTP error without a Twirp body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwirpError {
    /// HTTP status.
    pub status: u16,
    /// Twirp code (`not_found`, `invalid_argument`, ...), or `http_<status>`
    /// when the body was not a Twirp error.
    pub code: String,
    /// The message.
    pub msg: String,
    /// `meta`, sorted by key.
    pub meta: Vec<(String, String)>,
}

impl TwirpError {
    /// Reads an error response: Twirp JSON `{"code","msg","meta"}`, or any
    /// other body (LiveKit's auth middleware answers 401 in plain text).
    pub fn from_response(status: u16, body: &str) -> TwirpError {
        #[derive(serde::Deserialize)]
        struct Wire {
            code: String,
            #[serde(default)]
            msg: String,
            #[serde(default)]
            meta: std::collections::BTreeMap<String, String>,
        }
        match serde_json::from_str::<Wire>(body) {
            Ok(wire) => TwirpError {
                status,
                code: wire.code,
                msg: wire.msg,
                meta: wire.meta.into_iter().collect(),
            },
            Err(_) => TwirpError {
                status,
                code: format!("http_{status}"),
                msg: body.trim().to_owned(),
                meta: Vec::new(),
            },
        }
    }
}

impl fmt::Display for TwirpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {})", self.code, self.status)?;
        let msg = one_line(&self.msg);
        if !msg.is_empty() {
            write!(f, ": {msg}")?;
        }
        // Carry the SIP status of a failed call, as LiveKit puts it in meta.
        let sip: Vec<String> = self
            .meta
            .iter()
            .filter(|(k, _)| k.starts_with("sip_status"))
            .map(|(k, v)| format!("{k}={}", one_line(v)))
            .collect();
        if !sip.is_empty() {
            write!(f, " [{}]", sip.join(", "))?;
        }
        Ok(())
    }
}

/// Collapses whitespace runs and newlines so an error is one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A connection to one server with one API key.
pub struct Client {
    base: String,
    api_key: String,
    api_secret: String,
    agent: ureq::Agent,
}

impl Client {
    /// Checks the connection settings; nothing is sent yet.
    pub fn new(conn: &ConnectionArgs) -> Result<Client, CliError> {
        let base = http_base(&conn.url)?;
        let (api_key, api_secret) = conn.keys.require()?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(conn.timeout))
            .build()
            .into();
        Ok(Client {
            base,
            api_key,
            api_secret,
            agent,
        })
    }

    /// Calls `service/method` with a JSON body; returns the raw JSON answer.
    pub fn call_raw(
        &self,
        service: &str,
        method: &str,
        grants: &Grants,
        body: &str,
    ) -> Result<String, CliError> {
        let token = mint(
            &self.api_key,
            &self.api_secret,
            grants,
            None,
            REQUEST_TOKEN_TTL,
        )?;
        let url = format!("{}/twirp/{service}/{method}", self.base);
        let response = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .send(body);
        let (status, text) = status_and_text(&url, response)?;
        if status == 200 {
            Ok(text)
        } else {
            Err(CliError::Server(TwirpError::from_response(status, &text)))
        }
    }

    /// Calls a method with a typed request; returns the typed answer and its raw JSON.
    pub fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        service: &str,
        method: &str,
        grants: &Grants,
        request: &Req,
    ) -> Result<(Resp, String), CliError> {
        let body = serde_json::to_string(request)
            .map_err(|e| CliError::Usage(format!("cannot encode the {method} request: {e}")))?;
        let raw = self.call_raw(service, method, grants, &body)?;
        let parsed = serde_json::from_str(&raw).map_err(|e| {
            CliError::BadResponse(format!("{method}: unexpected answer from the server: {e}"))
        })?;
        Ok((parsed, raw))
    }

    /// A request to the `/v1/` trunk API with a `sip.admin` token; returns
    /// the HTTP status and the body, whatever the status.
    pub fn v1(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), CliError> {
        let authorization = self.admin_authorization()?;
        let url = format!("{}{path}", self.base);
        let sent = match body {
            Some(body) => {
                let request = match method {
                    "POST" => self.agent.post(&url),
                    "PATCH" => self.agent.patch(&url),
                    _ => self.agent.put(&url),
                };
                request
                    .header("Authorization", &authorization)
                    .header("Content-Type", "application/json")
                    .send(body)
            }
            None => {
                let request = match method {
                    "DELETE" => self.agent.delete(&url),
                    _ => self.agent.get(&url),
                };
                request.header("Authorization", &authorization).call()
            }
        };
        status_and_text(&url, sent)
    }

    /// A GET with a `sip.admin` token whose answer may be binary (a pcap
    /// trace); returns the HTTP status and the body, whatever the status.
    pub fn get_bytes(&self, path: &str) -> Result<(u16, Vec<u8>), CliError> {
        let authorization = self.admin_authorization()?;
        let url = format!("{}{path}", self.base);
        let mut response = self
            .agent
            .get(&url)
            .header("Authorization", &authorization)
            .call()
            .map_err(|e| CliError::Connection(format!("{url}: {e}")))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| CliError::Connection(format!("{url}: reading the response: {e}")))?;
        Ok((status, body))
    }

    /// `Bearer <token>` with a fresh short-lived `sip.admin` token.
    fn admin_authorization(&self) -> Result<String, CliError> {
        let token = mint(
            &self.api_key,
            &self.api_secret,
            &Grants::sip_admin(),
            None,
            REQUEST_TOKEN_TTL,
        )?;
        Ok(format!("Bearer {token}"))
    }

    /// A LiveKit SIP method that needs the sip.admin grant.
    pub fn sip_admin<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &str,
        request: &Req,
    ) -> Result<(Resp, String), CliError> {
        self.call(LIVEKIT_SIP, method, &Grants::sip_admin(), request)
    }
}

/// The status and body (at most [`MAX_RESPONSE_BYTES`]) of an answer,
/// whatever the status.
fn status_and_text(
    url: &str,
    sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, String), CliError> {
    let mut response = sent.map_err(|e| CliError::Connection(format!("{url}: {e}")))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_string()
        .map_err(|e| CliError::Connection(format!("{url}: reading the response: {e}")))?;
    Ok((status, text))
}

/// The HTTP base of a LiveKit URL: `ws`/`wss` become `http`/`https` (SDK
/// users keep their LIVEKIT_URL), a trailing slash is dropped.
pub fn http_base(url: &str) -> Result<String, CliError> {
    let url = url.trim().trim_end_matches('/');
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| CliError::Usage(format!("--url {url:?}: expected http://host:port")))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        other => {
            return Err(CliError::Usage(format!(
                "--url {url:?}: unsupported scheme {other:?} (http, https, ws, wss)"
            )))
        }
    };
    if rest.is_empty() {
        return Err(CliError::Usage(format!("--url {url:?}: no host")));
    }
    Ok(format!("{scheme}://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twirp_errors_become_one_line_with_the_code() {
        let e = TwirpError::from_response(
            404,
            r#"{"code":"not_found","msg":"trunk ST_x\nnot found","meta":{}}"#,
        );
        assert_eq!(e.code, "not_found");
        assert_eq!(e.to_string(), "not_found (HTTP 404): trunk ST_x not found");
    }

    #[test]
    fn sip_status_meta_is_kept() {
        let e = TwirpError::from_response(
            429,
            r#"{"code":"resource_exhausted","msg":"busy","meta":{"sip_status_code":"486","sip_status":"Busy Here"}}"#,
        );
        assert_eq!(
            e.to_string(),
            "resource_exhausted (HTTP 429): busy [sip_status=Busy Here, sip_status_code=486]"
        );
    }

    #[test]
    fn plain_text_errors_keep_the_status() {
        let e = TwirpError::from_response(401, "invalid token: signature is invalid\n");
        assert_eq!(e.code, "http_401");
        assert_eq!(
            e.to_string(),
            "http_401 (HTTP 401): invalid token: signature is invalid"
        );
    }

    #[test]
    fn livekit_urls_map_to_http() {
        assert_eq!(
            http_base("ws://localhost:7880").unwrap(),
            "http://localhost:7880"
        );
        assert_eq!(http_base("wss://x.example/").unwrap(), "https://x.example");
        assert_eq!(
            http_base("http://127.0.0.1:1").unwrap(),
            "http://127.0.0.1:1"
        );
        assert!(http_base("localhost:7880").is_err());
        assert!(http_base("ftp://x").is_err());
        assert!(http_base("http://").is_err());
    }
}

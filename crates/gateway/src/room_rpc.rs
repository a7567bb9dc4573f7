//! The RPCs a SIP participant serves to the room's LiveKit clients, as
//! LiveKit's SIP service registers them: `lk.sip.GetRemoteHeaders` (the
//! far end's SIP headers) and `lk.sip.EndCall` (hang up, with headers on
//! the BYE). Payloads are JSON; everything in them comes from a client and
//! is checked before it reaches a SIP message.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use switchboard_rooms::RpcFailure;
use switchboard_sip::message::Headers;

/// The method that returns the far end's headers.
pub(crate) const GET_REMOTE_HEADERS: &str = "lk.sip.GetRemoteHeaders";
/// The method that ends the call.
pub(crate) const END_CALL: &str = "lk.sip.EndCall";

/// What the call does about an RPC.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RpcAction {
    /// Answer it; the call goes on.
    Reply(Result<String, RpcFailure>),
    /// Answer `{}` and hang up, with these extra headers on the BYE.
    EndCall(Vec<(String, String)>),
}

/// Headers that describe the transport or the transaction rather than the
/// caller, left out of `GetRemoteHeaders` (as LiveKit does), and the
/// caller's digest credentials, which are no business of the room's
/// clients (LiveKit hands those out; we do not).
const NOT_REMOTE_HEADERS: &[&str] = &[
    "route",
    "record-route",
    "via",
    "supported",
    "accept",
    "allow",
    "allow-events",
    "content-type",
    "content-length",
    "content-encoding",
    "content-disposition",
    "cseq",
    "event",
    "expires",
    "session-expires",
    "min-se",
    "max-forwards",
    "authorization",
    "proxy-authorization",
];

#[derive(Deserialize, Default)]
#[serde(default)]
struct GetRemoteHeadersRequest {
    include: Vec<String>,
    exclude: Vec<String>,
}

#[derive(Serialize)]
struct GetRemoteHeadersResponse {
    headers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EndCallRequest {
    headers: HashMap<String, String>,
}

/// What to do about RPC `method` with `payload`, for a call whose far end
/// sent `remote_headers` (the INVITE's, or the 200 OK's when we dialled).
pub(crate) fn handle(method: &str, payload: &str, remote_headers: &Headers) -> RpcAction {
    match method {
        GET_REMOTE_HEADERS => RpcAction::Reply(get_remote_headers(payload, remote_headers)),
        END_CALL => match end_call_headers(payload) {
            Ok(headers) => RpcAction::EndCall(headers),
            Err(failure) => RpcAction::Reply(Err(failure)),
        },
        _ => RpcAction::Reply(Err(RpcFailure {
            code: 1400,
            message: "Method not supported at destination".into(),
        })),
    }
}

/// LiveKit's RPC error for a handler that failed (`APPLICATION_ERROR`).
fn application_error(message: String) -> RpcFailure {
    RpcFailure {
        code: 1500,
        message,
    }
}

fn parse<T: for<'de> Deserialize<'de> + Default>(payload: &str) -> Result<T, RpcFailure> {
    if payload.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(payload)
        .map_err(|e| application_error(format!("the payload is not a valid request: {e}")))
}

fn get_remote_headers(payload: &str, remote_headers: &Headers) -> Result<String, RpcFailure> {
    let request: GetRemoteHeadersRequest = parse(payload)?;
    let lowercase = |names: Vec<String>| -> HashSet<String> {
        names.into_iter().map(|n| n.to_ascii_lowercase()).collect()
    };
    let include = lowercase(request.include);
    let exclude = lowercase(request.exclude);
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for field in remote_headers.iter() {
        let name = field.name.as_str();
        let key = name.to_ascii_lowercase();
        if NOT_REMOTE_HEADERS.contains(&key.as_str())
            || exclude.contains(&key)
            || (!include.is_empty() && !include.contains(&key))
        {
            continue;
        }
        // A header sent more than once keeps every value, as one
        // comma-separated list (RFC 3261 §7.3.1), where LiveKit keeps the last.
        match headers.get_mut(name) {
            Some(values) => {
                values.push_str(", ");
                values.push_str(&field.value);
            }
            None => {
                headers.insert(name.to_string(), field.value.clone());
            }
        }
    }
    serde_json::to_string(&GetRemoteHeadersResponse { headers })
        .map_err(|e| application_error(e.to_string()))
}

/// The headers an EndCall asks to put on the BYE, checked as the API
/// checks headers to send (names are tokens, no CR/LF, no routing headers).
fn end_call_headers(payload: &str) -> Result<Vec<(String, String)>, RpcFailure> {
    let request: EndCallRequest = parse(payload)?;
    switchboard_routing::validate_headers(&request.headers)
        .map_err(|e| application_error(e.to_string()))?;
    let mut headers: Vec<(String, String)> = request.headers.into_iter().collect();
    headers.sort();
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_sip::message::HeaderName;

    fn invite_headers() -> Headers {
        let mut headers = Headers::new();
        for (name, value) in [
            ("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1"),
            ("From", "<sip:alice@example.com>;tag=1"),
            ("To", "<sip:bob@example.com>"),
            ("X-Customer", "42"),
            ("P-Asserted-Identity", "<sip:+15550100@example.com>"),
            ("P-Asserted-Identity", "<tel:+15550100>"),
            (
                "Proxy-Authorization",
                "Digest username=\"alice\", response=\"x\"",
            ),
            ("Content-Length", "0"),
        ] {
            headers.push(HeaderName::parse(name), value);
        }
        headers
    }

    fn reply(action: RpcAction) -> Result<serde_json::Value, RpcFailure> {
        match action {
            RpcAction::Reply(Ok(json)) => Ok(serde_json::from_str(&json).unwrap()),
            RpcAction::Reply(Err(failure)) => Err(failure),
            RpcAction::EndCall(_) => panic!("not a reply"),
        }
    }

    #[test]
    fn remote_headers_leave_out_transport_and_credentials() {
        let got = reply(handle(GET_REMOTE_HEADERS, "", &invite_headers())).unwrap();
        let headers = got["headers"].as_object().unwrap();
        assert_eq!(headers["X-Customer"], "42");
        assert_eq!(headers["From"], "<sip:alice@example.com>;tag=1");
        assert_eq!(
            headers["P-Asserted-Identity"],
            "<sip:+15550100@example.com>, <tel:+15550100>"
        );
        for gone in ["Via", "Proxy-Authorization", "Content-Length"] {
            assert!(!headers.contains_key(gone), "{gone} in {headers:?}");
        }
    }

    #[test]
    fn include_and_exclude_ignore_case() {
        let got = reply(handle(
            GET_REMOTE_HEADERS,
            r#"{"include":["x-customer","FROM"],"exclude":["from"]}"#,
            &invite_headers(),
        ))
        .unwrap();
        assert_eq!(got, serde_json::json!({"headers": {"X-Customer": "42"}}));
    }

    #[test]
    fn bad_payloads_and_unknown_methods_get_livekit_error_codes() {
        let bad = reply(handle(
            GET_REMOTE_HEADERS,
            "{\"include\": 7}",
            &invite_headers(),
        ));
        assert_eq!(bad.unwrap_err().code, 1500);
        let unknown = reply(handle("lk.sip.Dance", "{}", &invite_headers()));
        assert_eq!(unknown.unwrap_err().code, 1400);
    }

    #[test]
    fn end_call_headers_are_checked_like_the_apis() {
        assert_eq!(
            handle(END_CALL, r#"{"headers":{"X-Why":"done"}}"#, &Headers::new()),
            RpcAction::EndCall(vec![("X-Why".into(), "done".into())])
        );
        assert_eq!(
            handle(END_CALL, "", &Headers::new()),
            RpcAction::EndCall(vec![])
        );
        for hostile in [
            r#"{"headers":{"X-Why":"a\r\nVia: evil"}}"#,
            r#"{"headers":{"Bad Name":"x"}}"#,
            r#"{"headers":{"Call-ID":"x"}}"#,
        ] {
            let refused = reply(handle(END_CALL, hostile, &Headers::new()));
            assert_eq!(refused.unwrap_err().code, 1500, "{hostile}");
        }
    }
}

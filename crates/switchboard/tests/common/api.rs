//! Talking to the API from tests: HS256 tokens signed here (independent
//! of the server's JWT code), raw HTTP/1.1, Twirp JSON, /debug/state.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The API key every end-to-end test starts switchboard with.
pub const KEY: &str = "APIroomskey";
/// Its secret.
pub const SECRET: &str = "rooms-secret-0123456789abcdefghijklmnopqrstuvwxyz";

/// The environment that gives switchboard the test key.
pub const KEY_ENV: [(&str, &str); 2] = [("LIVEKIT_API_KEY", KEY), ("LIVEKIT_API_SECRET", SECRET)];

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn jwt(secret: &str, claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// A token with `extra` claims merged over iss/nbf/exp.
pub fn token(extra: Value) -> String {
    let mut claims = json!({"iss": KEY, "nbf": now(), "exp": now() + 600});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    jwt(SECRET, &claims)
}

/// A participant's token for `room`, allowed to change its own attributes.
pub fn join_token(room: &str, identity: &str) -> String {
    token(json!({
        "sub": identity,
        "name": format!("{identity} (name)"),
        "metadata": format!("meta of {identity}"),
        "attributes": {"team": "blue"},
        "video": {"roomJoin": true, "room": room, "canUpdateOwnMetadata": true},
    }))
}

pub fn admin_token(room: &str) -> String {
    token(json!({"video": {"roomAdmin": true, "room": room}}))
}

// ---------------------------------------------------------------- HTTP

/// One HTTP/1.1 request with `Connection: close`; the status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw))
        .await
        .expect("HTTP answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, body.to_string())
}

/// A Twirp JSON call to livekit.RoomService.
pub async fn room_service(
    addr: SocketAddr,
    method: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (status, text) = http(
        addr,
        "POST",
        &format!("/twirp/livekit.RoomService/{method}"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        body.to_string().as_bytes(),
    )
    .await;
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method}: not JSON ({e}): {text:?}"));
    (status, value)
}

pub fn assert_twirp(answer: &(u16, Value), status: u16, code: &str, msg: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["code"], code, "{}", answer.1);
    assert_eq!(answer.1["msg"], msg, "{}", answer.1);
}

pub async fn debug_state(addr: SocketAddr) -> Value {
    let auth = format!("Bearer {}", token(json!({"sip": {"admin": true}})));
    let (status, body) = http(
        addr,
        "GET",
        "/debug/state",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The counts of a `/debug/state` answer, without the store and routing
/// versions (which only ever grow).
pub fn counts_of(mut state: Value) -> Value {
    if let Some(fields) = state.as_object_mut() {
        fields.remove("store_version");
        fields.remove("routing_version");
    }
    state
}

/// `/debug/state` without a runtime (for the synchronous call tests).
pub fn debug_state_blocking(addr: SocketAddr) -> Value {
    use std::io::{Read, Write};
    let auth = token(json!({"sip": {"admin": true}}));
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /debug/state HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {auth}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    serde_json::from_str(body).unwrap()
}

/// Waits until the routing index of the server at `addr` has caught up
/// with its store, and with store version `at_least` (a version another
/// replica reported): `/debug/state` says when.
pub fn wait_for_routing(addr: SocketAddr, at_least: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = debug_state_blocking(addr);
        let store = state["store_version"].as_u64().expect("store_version");
        let routing = state["routing_version"].as_u64().expect("routing_version");
        if routing >= store && routing >= at_least {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "routing stuck at version {routing}; the store is at {store}, {at_least} expected"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until at least `n` calls are in progress (answered or ringing).
pub fn wait_for_calls_blocking(addr: SocketAddr, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state = debug_state_blocking(addr);
        if state["calls_active"].as_u64().unwrap_or_default() >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} calls never came up: {state}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`wait_for_calls_blocking`] for async tests.
pub async fn wait_for_calls(addr: SocketAddr, n: u64) {
    tokio::task::spawn_blocking(move || wait_for_calls_blocking(addr, n))
        .await
        .unwrap();
}

/// [`wait_for_routing`] for async tests.
pub async fn settle_routing(addr: SocketAddr) {
    tokio::task::spawn_blocking(move || wait_for_routing(addr, 0))
        .await
        .unwrap();
}

/// The store version the server at `addr` has heard of.
pub fn store_version(addr: SocketAddr) -> u64 {
    debug_state_blocking(addr)["store_version"]
        .as_u64()
        .expect("store_version")
}

/// Waits until no call, call task, RTP port, room or participant is left:
/// nothing outlives its call.
pub fn assert_nothing_left(addr: SocketAddr, log: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = debug_state_blocking(addr);
        let left: Vec<String> = [
            "calls_active",
            "call_tasks",
            "rtp_ports_active",
            "rooms",
            "participants",
        ]
        .iter()
        .filter(|k| state[**k].as_u64() != Some(0))
        .map(|k| format!("{k}={}", state[*k]))
        .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still held after every call ended: {left:?}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Twirp JSON call to livekit.SIP with `token`.
pub async fn sip_service(addr: SocketAddr, method: &str, token: &str, body: Value) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (status, text) = http(
        addr,
        "POST",
        &format!("/twirp/livekit.SIP/{method}"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        body.to_string().as_bytes(),
    )
    .await;
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method}: not JSON ({e}): {text:?}"));
    (status, value)
}

/// `GET /metrics` without a runtime: the Prometheus text.
pub fn metrics_blocking(addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    body.to_string()
}

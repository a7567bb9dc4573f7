//! SIGKILL the switchboard server in the middle of a stream of API writes;
//! a new server on the same data directory has every write the first one
//! acknowledged (the embedded store's commits are durable before the API
//! answers).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::api::{token, KEY_ENV};
use common::Switchboard;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One Twirp JSON call over a fresh connection; `None` when the server is
/// gone mid-request.
fn call(api: SocketAddr, method: &str, body: &Value) -> Option<(u16, Value)> {
    let admin = token(json!({"sip": {"admin": true}}));
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(api).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "POST /twirp/livekit.SIP/{method} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {admin}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let (_, text) = response.split_once("\r\n\r\n")?;
    Some((status, serde_json::from_str(text).ok()?))
}

#[test]
fn a_killed_server_loses_no_acknowledged_write() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_string();
    let mut env = KEY_ENV.to_vec();
    env.push(("SWITCHBOARD_DATA_DIR", data_dir.as_str()));
    let first = Switchboard::start(&env);
    let api = first.api.unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&written);
    let writer = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        for i in 0.. {
            let body =
                json!({"trunk": {"name": format!("t{i}"), "numbers": [format!("+1555{i:07}")]}});
            match call(api, "CreateSIPInboundTrunk", &body) {
                Some((200, trunk)) => {
                    acknowledged.push(trunk["sip_trunk_id"].as_str().unwrap().to_string());
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                // Any answer but 200 is a failure of the server, not the
                // kill: stop the test rather than end the stream quietly.
                Some((status, answer)) => panic!("write {i} answered {status}: {answer}"),
                None => return acknowledged,
            }
        }
        acknowledged
    });
    // Let a stream of writes run, then pull the plug mid-stream.
    let deadline = Instant::now() + Duration::from_secs(30);
    while written.load(Ordering::SeqCst) < 20 {
        assert!(
            !writer.is_finished() && Instant::now() < deadline,
            "the writes did not get going: {} acknowledged",
            written.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    first.signal("KILL");
    let acknowledged = writer.join().unwrap();
    assert!(
        acknowledged.len() >= 20,
        "only {} writes before the kill",
        acknowledged.len()
    );
    drop(first);

    let second = Switchboard::start(&env);
    let (status, listed) = call(second.api.unwrap(), "ListSIPInboundTrunk", &json!({})).unwrap();
    assert_eq!(status, 200, "{listed}");
    let stored: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["sip_trunk_id"].as_str().unwrap())
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(&id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
}

//! Webhooks of the real binary for a real call, received by a plain HTTP
//! server here and verified with the official Python SDK's
//! `WebhookReceiver`: in order, and none lost when the receiver is down or
//! switchboard restarts in between.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::api::{KEY, SECRET};
use common::routes::{answered_call, open_route, start};
use serde_json::{json, Value};

/// What a receiver got: (Authorization, body) per request, in order.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A webhook receiver on `listener`: answers 200 to every POST and keeps
/// what came.
fn receiver(listener: TcpListener) -> Received {
    let received: Received = Arc::default();
    let kept = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let kept = kept.clone();
            std::thread::spawn(move || serve(stream, &kept));
        }
    });
    received
}

fn serve(stream: std::net::TcpStream, kept: &Received) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        let mut authorization = String::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = value.trim().to_owned(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        kept.lock()
            .unwrap()
            .push((authorization, String::from_utf8(body).unwrap()));
        let mut out = stream.try_clone().unwrap();
        out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    }
}

/// Every request verified by the Python SDK's WebhookReceiver; the events.
fn verified(received: &[(String, String)]) -> Vec<Value> {
    let requests: Vec<Value> = received
        .iter()
        .map(|(auth, body)| json!({"auth": auth, "body": body}))
        .collect();
    let script = r#"
import json, sys
from google.protobuf.json_format import MessageToDict
from livekit.api import TokenVerifier, WebhookReceiver
receiver = WebhookReceiver(TokenVerifier(sys.argv[1], sys.argv[2]))
out = []
for request in json.load(sys.stdin):
    event = receiver.receive(request["body"], request["auth"])
    out.append(MessageToDict(event, preserving_proto_field_name=True))
print(json.dumps(out))
"#;
    let mut python = std::process::Command::new("python3");
    python.args(["-c", script, KEY, SECRET]);
    let output = run_with_input(
        python,
        &Value::Array(requests).to_string(),
        "the Python SDK",
    );
    let events: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    // The Node SDK's receiver takes the same requests and reads the same
    // events out of them.
    let names: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap_or(""),
                e["id"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(verified_by_node(received), names);
    events
}

/// Runs an SDK's script with `input` on its standard input; its output,
/// or a failure saying the SDK refused a webhook.
fn run_with_input(
    mut command: std::process::Command,
    input: &str,
    sdk: &str,
) -> std::process::Output {
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {sdk}'s script ({e}): tests/run installs python3 and nodejs")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{sdk} refused a webhook: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Each request verified by the official Node SDK's `WebhookReceiver`:
/// "<event> <id>" per request.
fn verified_by_node(received: &[(String, String)]) -> Vec<String> {
    let requests: Vec<Value> = received
        .iter()
        .map(|(auth, body)| json!({"auth": auth, "body": body}))
        .collect();
    let script = r#"
import { WebhookReceiver } from 'livekit-server-sdk';
const [key, secret] = process.argv.slice(1);
const receiver = new WebhookReceiver(key, secret);
let input = '';
for await (const chunk of process.stdin) input += chunk;
const out = [];
for (const request of JSON.parse(input)) {
  const event = await receiver.receive(request.body, request.auth);
  out.push(`${event.event} ${event.id}`);
}
console.log(JSON.stringify(out));
"#;
    let mut node = std::process::Command::new("node");
    node.args(["--input-type=module", "-e", script, KEY, SECRET])
        .current_dir(common::repo().join("tests/sdk"));
    let output = run_with_input(node, &Value::Array(requests).to_string(), "the Node SDK");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Waits until `n` requests came.
fn wait_for(received: &Received, n: usize, within: Duration, log: impl Fn() -> String) {
    let deadline = Instant::now() + within;
    while received.lock().unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} webhooks came:\n{}",
            received.lock().unwrap().len(),
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn webhook_env(url: &str) -> Vec<(String, String)> {
    vec![
        ("SWITCHBOARD_WEBHOOKS__URLS".into(), format!("[{url}]")),
        (
            "SWITCHBOARD_WEBHOOKS__INITIAL_BACKOFF_MS".into(),
            "100".into(),
        ),
        ("SWITCHBOARD_WEBHOOKS__MAX_BACKOFF_MS".into(), "500".into()),
        ("SWITCHBOARD_CALLS__ANSWER".into(), "immediate".into()),
        ("SWITCHBOARD_DRAIN__MIN_SECS".into(), "0".into()),
    ]
}

/// A call answered and hung up by the caller.
fn one_call(sb: &common::Switchboard) {
    let (mut uac, _) = answered_call(sb);
    let bye = uac.in_dialog("BYE", "", "");
    assert_eq!(
        uac.response_to(bye, "BYE", Duration::from_secs(3)).status(),
        200
    );
}

/// The call's events, in LiveKit's order, with the call's final attributes.
fn assert_call_events(events: &[Value]) {
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "room_started",
            "participant_joined",
            "track_published",
            "participant_left",
            "room_finished"
        ],
        "{events:?}"
    );
    assert!(
        events.iter().all(|e| e["room"]["name"] == "r"),
        "{events:?}"
    );
    let joined = &events[1]["participant"];
    assert_eq!(joined["kind"], "SIP");
    // AUDIO is the enum's zero, which the SDK's dict leaves out.
    assert!(
        events[2]["track"]["sid"]
            .as_str()
            .unwrap()
            .starts_with("TR_"),
        "{events:?}"
    );
    assert_eq!(events[2]["track"].get("type"), None, "{events:?}");
    let left = &events[3]["participant"]["attributes"];
    assert_eq!(left["sip.callStatus"], "hangup", "{left}");
    assert!(left.get("sip.disconnectReason").is_some(), "{left}");
    assert!(left.get("sip.callStatusCode").is_some(), "{left}");
    let ids: std::collections::HashSet<&str> =
        events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "every event has its own ID");
}

#[test]
fn a_call_s_webhooks_arrive_in_order_and_verify_with_the_sdk() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = receiver(listener);
    let env = webhook_env(&url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let sb = start(&env);
    open_route(&sb, "");
    one_call(&sb);
    wait_for(&received, 5, Duration::from_secs(10), || sb.log());
    let events = verified(&received.lock().unwrap());
    assert_call_events(&events);
    assert_eq!(
        received.lock().unwrap()[0].0.split('.').count(),
        3,
        "a bare JWT"
    );
}

#[test]
fn none_is_lost_while_the_receiver_is_down_30_s_and_switchboard_restarts() {
    // The receiver's port, with nothing listening yet.
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hook");
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let mut env = webhook_env(&url);
    env.push(("SWITCHBOARD_DATA_DIR".into(), data_dir));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut first = start(&env);
    open_route(&first, "");
    one_call(&first);
    let call_ended = Instant::now();
    // The receiver is down: deliveries fail and are retried.
    common::routes::wait_log(&first, "webhook delivery failed", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    first.signal("TERM");
    assert!(
        first.wait_exit(Duration::from_secs(10)).is_some(),
        "{}",
        first.log()
    );
    // A new process on the same data directory; the receiver comes back
    // 30 s after the call, as the issue asks.
    let second = start(&env);
    std::thread::sleep(Duration::from_secs(30).saturating_sub(call_ended.elapsed()));
    let received = receiver(TcpListener::bind(("127.0.0.1", port)).unwrap());
    wait_for(&received, 5, Duration::from_secs(20), || second.log());
    std::thread::sleep(Duration::from_millis(500));
    let events = verified(&received.lock().unwrap());
    assert_call_events(&events);
}

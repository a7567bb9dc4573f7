//! The official Python SDK (`livekit-api`, tests/deps/sdk.pip) verifies
//! what we send: `WebhookReceiver(TokenVerifier(key, secret)).receive(body,
//! authorization)` returns the event, and refuses a changed body. Needs
//! `python3` with `livekit-api`; fails, not skips, without them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers, not only #[test] fns

mod common;

use std::process::Command;
use std::time::Duration;

use common::{wait_until, Receiver, KEY, SECRET};
use switchboard_webhooks::{WebhookConfig, Webhooks};

const CHECK: &str = r#"
import sys
from livekit.api import WebhookReceiver, TokenVerifier
key, secret, body_path, auth_path = sys.argv[1:5]
body = open(body_path, encoding="utf-8").read()
auth = open(auth_path, encoding="utf-8").read()
receiver = WebhookReceiver(TokenVerifier(key, secret))
event = receiver.receive(body, auth)
print(event.event, event.room.name, event.room.sid, event.id, event.created_at)
try:
    receiver.receive(body.replace('"r"', '"s"'), auth)
except Exception as e:
    print("tampered refused:", e)
else:
    sys.exit("a changed body verified")
try:
    WebhookReceiver(TokenVerifier(key, "wrong-secret-of-some-length")).receive(body, auth)
except Exception:
    print("wrong secret refused")
else:
    sys.exit("a wrong secret verified")
"#;

#[tokio::test]
async fn the_python_sdk_receiver_verifies_what_we_send() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = WebhookConfig::new(
        vec![receiver.url("/livekit")],
        KEY,
        SECRET,
        dir.path().join("webhooks.redb"),
    );
    let hooks = Webhooks::open(config).await.unwrap();
    let body = r#"{"event":"room_started","room":{"name":"r","sid":"RM_x"},"id":"EV_x","createdAt":"1700000000"}"#;
    hooks.enqueue(body.as_bytes().to_vec()).await.unwrap();
    assert!(wait_until(Duration::from_secs(10), || receiver.delivered().len() == 1).await);
    hooks.shutdown().await;

    let got = &receiver.received()[0];
    assert_eq!(got.body, body);
    let body_path = dir.path().join("body.json");
    let auth_path = dir.path().join("authorization.txt");
    std::fs::write(&body_path, &got.body).unwrap();
    std::fs::write(&auth_path, got.authorization.as_deref().unwrap()).unwrap();

    let output = Command::new("python3")
        .arg("-c")
        .arg(CHECK)
        .args([KEY, SECRET])
        .arg(&body_path)
        .arg(&auth_path)
        .output()
        .expect("python3 must be installed with livekit-api (tests/deps/sdk.pip)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python SDK refused the webhook:\n{stdout}\n{stderr}"
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("room_started r RM_x EV_x 1700000000"));
    assert_eq!(lines.next(), Some("tampered refused: hash mismatch"));
    assert_eq!(lines.next(), Some("wrong secret refused"));
}

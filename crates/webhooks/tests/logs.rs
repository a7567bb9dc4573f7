//! The log lines: one per failed attempt and per give-up, naming the
//! receiver's host and the event's sequence, never the secret, the token
//! or the URL's path and query (which may carry the receiver's own token).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers, not only #[test] fns

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{event_body, wait_until, Receiver, KEY, SECRET};
use switchboard_webhooks::{WebhookConfig, Webhooks};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// A current-thread runtime (tokio::test's default): the senders run on
// this thread, where the capturing subscriber is the default.
#[tokio::test]
async fn failures_and_give_ups_are_logged_by_host_only() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let receiver = Receiver::start().await;
    receiver.set_status(500);
    let dir = tempfile::tempdir().unwrap();
    let mut config = WebhookConfig::new(
        vec![receiver.url("/hook-path?token=PATHSECRET")],
        KEY,
        SECRET,
        dir.path().join("webhooks.redb"),
    );
    config.initial_backoff = Duration::from_millis(50);
    config.max_backoff = Duration::from_millis(100);
    config.max_event_age = Duration::from_millis(300);
    config.max_queued = 2;
    let hooks = Webhooks::open(config).await.unwrap();
    assert!(!format!("{hooks:?}").contains(SECRET));
    // Three events into a queue of two: the first is dropped from the file
    // (and, in flight already, still tried); all three fail until too old.
    for n in 1..=3 {
        hooks.enqueue(event_body(n).into_bytes()).await.unwrap();
    }
    assert!(wait_until(Duration::from_secs(10), || hooks.stats().given_up == 3).await);
    receiver.set_status(200);
    hooks.enqueue(event_body(4).into_bytes()).await.unwrap();
    assert!(wait_until(Duration::from_secs(10), || hooks.stats().delivered == 1).await);
    let stats = hooks.stats();
    hooks.shutdown().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let failed = logs
        .lines()
        .filter(|l| l.contains("webhook delivery failed"))
        .count();
    assert_eq!(failed as u64, stats.retries, "{logs}");
    let given_up: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("webhook given up"))
        .collect();
    assert_eq!(given_up.len(), 3, "{logs}");
    assert!(
        given_up
            .iter()
            .all(|l| l.contains("WARN") && l.contains("host=127.0.0.1")),
        "{logs}"
    );
    assert!(given_up[0].contains("seq=1"), "{logs}");
    assert!(logs.contains("HTTP 500"), "{logs}");
    assert!(logs.contains("webhook queue full"), "{logs}");
    println!("{logs}");
    for secret in [SECRET, "PATHSECRET", "hook-path", "eyJ"] {
        assert!(!logs.contains(secret), "{secret:?} logged:\n{logs}");
    }
}

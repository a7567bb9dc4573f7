//! End to end: a real queue file, real HTTP to a local receiver.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers, not only #[test] fns

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::{closed_port, event_body, wait_until, Received, Receiver, KEY, SECRET};
use livekit_api::access_token::TokenVerifier;
use sha2::{Digest, Sha256};
use switchboard_webhooks::{WebhookConfig, WebhookError, Webhooks};

const WAIT: Duration = Duration::from_secs(10);

/// Short backoffs (50 ms doubling to 400 ms) so outages take seconds.
fn config(urls: Vec<String>, path: &Path) -> WebhookConfig {
    let mut config = WebhookConfig::new(urls, KEY, SECRET, path);
    config.initial_backoff = Duration::from_millis(50);
    config.max_backoff = Duration::from_millis(400);
    config.request_timeout = Duration::from_secs(2);
    config
}

/// Checks a request the way LiveKit's SDK receivers do, and a bit more.
fn assert_signed_as_livekit(r: &Received) {
    assert_eq!(r.content_type.as_deref(), Some("application/webhook+json"));
    let token = r.authorization.as_deref().expect("no Authorization");
    assert!(!token.starts_with("Bearer"), "the token is sent bare");
    let claims = TokenVerifier::with_api_key(KEY, SECRET)
        .verify(token)
        .expect("token does not verify");
    assert_eq!(claims.iss, KEY);
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(r.body.as_bytes()));
    assert_eq!(claims.sha256, hash, "sha256 claim is not the body's hash");
    // The raw claims: what LiveKit's Go AccessToken writes for a webhook.
    let payload = token.split('.').nth(1).unwrap();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let mut keys: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["exp", "iss", "nbf", "sha256"], "{claims}");
    let (exp, nbf) = (
        claims["exp"].as_u64().unwrap(),
        claims["nbf"].as_u64().unwrap(),
    );
    assert_eq!(exp - nbf, 300, "valid 5 minutes, as LiveKit's notifier");
    // A wrong secret must not verify.
    assert!(TokenVerifier::with_api_key(KEY, "another-secret")
        .verify(token)
        .is_err());
}

#[tokio::test]
async fn every_url_gets_every_event_in_order_signed_as_livekit() {
    let a = Receiver::start().await;
    let b = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let hooks = Webhooks::open(config(
        vec![a.url("/hooks/a?token=x"), b.url("/b")],
        &dir.path().join("data/webhooks.redb"),
    ))
    .await
    .unwrap();
    let bodies: Vec<String> = (1..=20).map(event_body).collect();
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(
            hooks.enqueue(body.clone().into_bytes()).await.unwrap(),
            i as u64 + 1
        );
    }
    assert!(
        wait_until(WAIT, || a.delivered().len() == 20
            && b.delivered().len() == 20)
        .await
    );
    assert_eq!(a.delivered(), bodies);
    assert_eq!(b.delivered(), bodies);
    for r in a.received().iter().chain(&b.received()) {
        assert_signed_as_livekit(r);
    }
    assert_eq!(a.received()[0].path, "/hooks/a?token=x");
    assert!(wait_until(WAIT, || hooks.stats().queued == 0).await);
    let stats = hooks.stats();
    assert_eq!(
        (
            stats.delivered,
            stats.retries,
            stats.dropped,
            stats.given_up
        ),
        (40, 0, 0, 0)
    );
    hooks.shutdown().await;
}

#[tokio::test]
async fn a_receiver_down_for_seconds_loses_nothing() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let hooks = Webhooks::open(config(
        vec![receiver.url("/")],
        &dir.path().join("webhooks.redb"),
    ))
    .await
    .unwrap();
    let bodies: Vec<String> = (1..=15).map(event_body).collect();
    for body in &bodies[..5] {
        hooks.enqueue(body.clone().into_bytes()).await.unwrap();
    }
    assert!(wait_until(WAIT, || receiver.delivered().len() == 5).await);

    // Down: the port is closed and the kept-alive connection cut.
    receiver.stop();
    for body in &bodies[5..10] {
        hooks.enqueue(body.clone().into_bytes()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for body in &bodies[10..] {
        hooks.enqueue(body.clone().into_bytes()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(receiver.delivered().len(), 5);
    let during = hooks.stats();
    assert!(during.retries >= 4, "{during:?}");
    assert_eq!(during.queued, 10);

    // Back on the same port: everything, in order, each once.
    receiver.restart().await;
    assert!(wait_until(WAIT, || receiver.delivered().len() >= 15).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.delivered(), bodies);
    let after = hooks.stats();
    assert_eq!((after.delivered, after.given_up, after.dropped), (15, 0, 0));
    assert!(wait_until(WAIT, || hooks.stats().queued == 0).await);
    hooks.shutdown().await;
}

#[tokio::test]
async fn reopening_resends_what_was_not_delivered_and_not_what_was() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.redb");
    let hooks = Webhooks::open(config(vec![receiver.url("/")], &path))
        .await
        .unwrap();
    let bodies: Vec<String> = (1..=6).map(event_body).collect();
    for body in &bodies[..3] {
        hooks.enqueue(body.clone().into_bytes()).await.unwrap();
    }
    assert!(wait_until(WAIT, || receiver.delivered().len() == 3).await);
    // The receiver fails from now on: 4..6 stay queued.
    receiver.set_status(503);
    for body in &bodies[3..] {
        hooks.enqueue(body.clone().into_bytes()).await.unwrap();
    }
    assert!(wait_until(WAIT, || hooks.stats().retries >= 2).await);
    assert!(receiver
        .received()
        .iter()
        .skip(3)
        .all(|r| r.body == bodies[3]));
    hooks.shutdown().await;

    receiver.set_status(200);
    receiver.clear();
    let hooks = Webhooks::open(config(vec![receiver.url("/")], &path))
        .await
        .unwrap();
    assert_eq!(hooks.stats().queued, 3);
    assert!(wait_until(WAIT, || receiver.delivered().len() >= 3).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.delivered(), bodies[3..]);
    assert!(wait_until(WAIT, || hooks.stats().queued == 0).await);
    // New events after the reopening continue the sequence.
    assert_eq!(hooks.enqueue(event_body(7).into_bytes()).await.unwrap(), 7);
    assert!(wait_until(WAIT, || receiver.delivered().len() == 4).await);
    hooks.shutdown().await;

    // Everything delivered: a third opening sends nothing.
    receiver.clear();
    let hooks = Webhooks::open(config(vec![receiver.url("/")], &path))
        .await
        .unwrap();
    assert_eq!(hooks.stats().queued, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty());
    hooks.shutdown().await;
}

#[tokio::test]
async fn the_bound_drops_the_oldest_and_counts_them() {
    let addr = closed_port().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        vec![format!("http://{addr}/")],
        &dir.path().join("webhooks.redb"),
    );
    cfg.max_queued = 5;
    let hooks = Webhooks::open(cfg).await.unwrap();
    let bodies: Vec<String> = (1..=8).map(event_body).collect();
    for body in &bodies {
        hooks.enqueue(body.clone().into_bytes()).await.unwrap();
    }
    let stats = hooks.stats();
    assert_eq!((stats.queued, stats.dropped), (5, 3));
    hooks.shutdown().await;

    // The receiver comes up where the URL points: the five newest arrive,
    // in order; 1 to 3 never do.
    let receiver = Receiver::start_at(addr).await;
    let mut cfg = config(
        vec![format!("http://{addr}/")],
        &dir.path().join("webhooks.redb"),
    );
    cfg.max_queued = 5;
    let hooks = Webhooks::open(cfg).await.unwrap();
    assert!(wait_until(WAIT, || receiver.delivered().len() >= 5).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.delivered(), bodies[3..]);
    assert_eq!(hooks.stats().dropped, 0, "counted since this opening");
    hooks.shutdown().await;
}

#[tokio::test]
async fn the_bound_skips_dropped_events_for_a_live_sender() {
    let receiver = Receiver::start().await;
    receiver.set_status(503);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(vec![receiver.url("/")], &dir.path().join("webhooks.redb"));
    cfg.max_queued = 5;
    let hooks = Webhooks::open(cfg).await.unwrap();
    let bodies: Vec<String> = (1..=8).map(event_body).collect();
    for body in &bodies {
        hooks.enqueue(body.clone().into_bytes()).await.unwrap();
    }
    let stats = hooks.stats();
    assert_eq!((stats.queued, stats.dropped), (5, 3));
    receiver.set_status(200);
    assert!(wait_until(WAIT, || hooks.stats().queued == 0).await);
    let delivered = receiver.delivered();
    // Event 1 may have been in flight (held by the sender) when the bound
    // dropped it; 2 and 3 were only in the file and never arrive.
    let expected: Vec<String> = bodies[3..].to_vec();
    let tail = &delivered[delivered.len() - 5..];
    assert_eq!(tail, &expected[..]);
    assert!(!delivered.contains(&bodies[1]) && !delivered.contains(&bodies[2]));
    assert!(delivered.len() == 5 || (delivered.len() == 6 && delivered[0] == bodies[0]));
    hooks.shutdown().await;
}

#[tokio::test]
async fn a_silent_receiver_times_out_and_is_retried() {
    let receiver = Receiver::start().await;
    receiver.hang_next(1);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(vec![receiver.url("/")], &dir.path().join("webhooks.redb"));
    cfg.request_timeout = Duration::from_millis(300);
    let hooks = Webhooks::open(cfg).await.unwrap();
    hooks.enqueue(event_body(1).into_bytes()).await.unwrap();
    assert!(wait_until(WAIT, || receiver.delivered().len() == 1).await);
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].status, 0);
    assert_eq!(received[0].body, received[1].body);
    assert_eq!(hooks.stats().retries, 1);
    hooks.shutdown().await;
}

#[tokio::test]
async fn an_event_is_given_up_after_max_event_age() {
    let receiver = Receiver::start().await;
    receiver.set_status(500);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(vec![receiver.url("/")], &dir.path().join("webhooks.redb"));
    cfg.max_event_age = Duration::from_millis(400);
    let hooks = Webhooks::open(cfg).await.unwrap();
    hooks.enqueue(event_body(1).into_bytes()).await.unwrap();
    hooks.enqueue(event_body(2).into_bytes()).await.unwrap();
    // The counters move one after the other (given up, then dequeued):
    // wait for both, as a suite run once read them in between.
    assert!(
        wait_until(WAIT, || {
            let stats = hooks.stats();
            stats.given_up == 2 && stats.queued == 0
        })
        .await,
        "{:?}",
        hooks.stats()
    );
    assert!(hooks.stats().retries >= 2);
    // Event 2 expired while event 1 was retried: given up without an attempt.
    assert!(receiver.received().iter().all(|r| r.body == event_body(1)));

    receiver.set_status(200);
    hooks.enqueue(event_body(3).into_bytes()).await.unwrap();
    assert!(wait_until(WAIT, || receiver.delivered().len() == 1).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.delivered(), [event_body(3)]);
    hooks.shutdown().await;
}

#[tokio::test]
async fn https_receivers_with_the_given_roots() {
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let receiver =
        Receiver::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(server)))).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        vec![receiver.url("/tls")],
        &dir.path().join("webhooks.redb"),
    );
    cfg.tls = Some(Arc::new(client));
    let hooks = Webhooks::open(cfg).await.unwrap();
    for n in 1..=3 {
        hooks.enqueue(event_body(n).into_bytes()).await.unwrap();
    }
    assert!(wait_until(WAIT, || receiver.delivered().len() == 3).await);
    assert_eq!(
        receiver.delivered(),
        (1..=3).map(event_body).collect::<Vec<_>>()
    );
    assert_signed_as_livekit(&receiver.received()[0]);
    hooks.shutdown().await;

    // The system's roots do not trust a self-signed certificate: retried,
    // never delivered.
    receiver.clear();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        vec![receiver.url("/tls")],
        &dir.path().join("webhooks.redb"),
    );
    let Ok(hooks) = Webhooks::open(cfg).await else {
        return; // no CA roots on this machine at all: nothing more to check
    };
    hooks.enqueue(event_body(4).into_bytes()).await.unwrap();
    assert!(wait_until(WAIT, || hooks.stats().retries >= 1).await);
    assert!(receiver.received().is_empty());
    hooks.shutdown().await;
}

#[tokio::test]
async fn refuses_what_it_cannot_send() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.redb");
    let ok = || config(vec!["http://127.0.0.1:9/".into()], &path);

    for url in ["ftp://h/", "http://h/\r\nX: y", "http://u:p@h/", "nope"] {
        let mut cfg = ok();
        cfg.urls.push(url.into());
        let err = Webhooks::open(cfg).await.unwrap_err();
        assert!(
            matches!(err, WebhookError::InvalidUrl { index: 1, .. }),
            "{url:?}: {err}"
        );
    }
    let mut cfg = ok();
    cfg.api_secret.clear();
    assert!(matches!(
        Webhooks::open(cfg).await,
        Err(WebhookError::Config(_))
    ));
    let mut cfg = ok();
    cfg.urls.clear();
    assert!(matches!(
        Webhooks::open(cfg).await,
        Err(WebhookError::Config(_))
    ));

    let debug = format!("{:?}", ok());
    assert!(!debug.contains(SECRET), "{debug}");

    let mut cfg = ok();
    cfg.max_body_bytes = 64;
    let hooks = Webhooks::open(cfg).await.unwrap();
    // One process, one opening of the file.
    assert!(matches!(
        Webhooks::open(ok()).await,
        Err(WebhookError::Queue(_))
    ));
    assert!(matches!(
        hooks.enqueue(vec![b'x'; 65]).await,
        Err(WebhookError::InvalidBody(_))
    ));
    assert!(matches!(
        hooks.enqueue(vec![0xff, 0xfe]).await,
        Err(WebhookError::InvalidBody(_))
    ));
    let clone = hooks.clone();
    hooks.shutdown().await;
    assert!(matches!(
        clone.enqueue(b"{}".to_vec()).await,
        Err(WebhookError::Closed)
    ));
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_senders_and_frees_the_file() {
    let receiver = Receiver::start().await;
    receiver.set_status(503);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.redb");
    let hooks = Webhooks::open(config(vec![receiver.url("/")], &path))
        .await
        .unwrap();
    hooks.enqueue(event_body(1).into_bytes()).await.unwrap();
    assert!(wait_until(WAIT, || !receiver.received().is_empty()).await);
    drop(hooks);
    // The senders notice at their next await; then the file is free again
    // and the event, never delivered, is still in it.
    let deadline = std::time::Instant::now() + WAIT;
    let hooks = loop {
        match Webhooks::open(config(vec![receiver.url("/")], &path)).await {
            Ok(hooks) => break hooks,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(matches!(e, WebhookError::Queue(_)), "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the file stayed open: {e}"),
        }
    };
    assert_eq!(hooks.stats().queued, 1);
    receiver.set_status(200);
    assert!(wait_until(WAIT, || receiver.delivered() == [event_body(1)]).await);
    hooks.shutdown().await;
}

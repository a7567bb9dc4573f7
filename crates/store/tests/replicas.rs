//! Several replicas on one Redis: changes made through one are seen by the
//! others, even when a pub/sub message is lost. How fast is printed (a
//! figure for bench/, typically milliseconds); the verdicts only need a
//! deadline generous enough for a loaded machine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers, not only #[test] fns

mod common;

use std::time::{Duration, Instant};

use common::{redis_config, RedisServer};
use switchboard_routing::livekit_protocol::{
    sip_dispatch_rule::Rule, ListSipInboundTrunkRequest, SipDispatchRule, SipDispatchRuleDirect,
    SipDispatchRuleInfo, SipInboundTrunkInfo,
};
use switchboard_routing::{CallInput, DispatchDecision, RoutingOptions};
use switchboard_store::{LiveRoutingIndex, RedisConfig, SipStore};

fn trunk(number: &str) -> SipInboundTrunkInfo {
    SipInboundTrunkInfo {
        numbers: vec![number.into()],
        ..Default::default()
    }
}

fn call_to(number: &str) -> CallInput {
    CallInput {
        call_id: "SCL_x".into(),
        from_user: "+1999".into(),
        to_user: number.into(),
        source_ip: Some("192.0.2.10".parse().unwrap()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_replica_reaches_the_others_feed() {
    let server = RedisServer::start();
    let a = SipStore::connect_redis(redis_config(&server))
        .await
        .unwrap();
    let b = SipStore::connect_redis(redis_config(&server))
        .await
        .unwrap();
    let mut feed_b = b.subscribe();
    for i in 0..5 {
        let started = Instant::now();
        let created = a
            .create_inbound_trunk(trunk(&format!("+1555000{i}")))
            .await
            .unwrap();
        let v = tokio::time::timeout(Duration::from_secs(10), feed_b.changed())
            .await
            .expect("replica B told within 10 s")
            .unwrap();
        println!(
            "change {i} seen by replica B after {:?} (version {v})",
            started.elapsed()
        );
        assert_eq!(
            b.get_inbound_trunk(&created.sip_trunk_id).await.unwrap(),
            Some(created)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_created_on_one_replica_is_matched_by_the_other() {
    let server = RedisServer::start();
    let a = SipStore::connect_redis(redis_config(&server))
        .await
        .unwrap();
    let b = SipStore::connect_redis(redis_config(&server))
        .await
        .unwrap();
    let live_b = LiveRoutingIndex::start(b, RoutingOptions::default())
        .await
        .unwrap();
    let call = call_to("+15105550100");
    assert!(live_b.current().match_trunk(&call).result.is_err());

    let started = Instant::now();
    let created = a.create_inbound_trunk(trunk("+15105550100")).await.unwrap();
    a.create_dispatch_rule(SipDispatchRuleInfo {
        rule: Some(SipDispatchRule {
            rule: Some(Rule::DispatchRuleDirect(SipDispatchRuleDirect {
                room_name: "support".into(),
                pin: String::new(),
            })),
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    loop {
        let report = live_b.current().route(&call, &mut |b: &mut [u8]| b.fill(1));
        if let Some(Ok(DispatchDecision::Accept(r))) = report.dispatch.map(|d| d.result) {
            assert_eq!(r.trunk_id, created.sip_trunk_id);
            assert_eq!(r.room_name, "support");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "replica B did not route the call within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "replica B routes the new trunk {:?} after the create started",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_pubsub_message_is_recovered_by_the_version_poll() {
    let server = RedisServer::start();
    let b = SipStore::connect_redis(redis_config(&server))
        .await
        .unwrap();
    let mut feed = b.subscribe();
    let before = feed.version();
    // A change that announces itself only through the counter, as if the
    // PUBLISH had been lost.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("INCR")
        .arg("switchboard_sip_version")
        .query_async(&mut conn)
        .await
        .unwrap();
    let v = tokio::time::timeout(Duration::from_secs(10), feed.changed())
        .await
        .expect("the version poll (every 250 ms) notices within 10 s")
        .unwrap();
    assert!(v > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_prefixes_keep_deployments_apart() {
    let server = RedisServer::start();
    let with_prefix = |p: &str| RedisConfig {
        key_prefix: p.into(),
        ..redis_config(&server)
    };
    let blue = SipStore::connect_redis(with_prefix("blue:")).await.unwrap();
    let green = SipStore::connect_redis(with_prefix("green:"))
        .await
        .unwrap();
    blue.create_inbound_trunk(trunk("+1")).await.unwrap();
    // Same number, other deployment: no conflict, and not listed there.
    green.create_inbound_trunk(trunk("+1")).await.unwrap();
    assert_eq!(
        blue.list_inbound_trunks(&ListSipInboundTrunkRequest::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        green
            .list_inbound_trunks(&ListSipInboundTrunkRequest::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_an_unavailable_error() {
    let mut server = RedisServer::start();
    let store = SipStore::connect_redis(redis_config(&server))
        .await
        .unwrap();
    server.kill();
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        store.create_inbound_trunk(trunk("+1")),
    )
    .await
    .expect("fails within 5 s rather than hanging")
    .unwrap_err();
    assert_eq!(
        err.code(),
        switchboard_routing::ErrorCode::Unavailable,
        "{err}"
    );
}

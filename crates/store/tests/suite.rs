//! The store test suite, run against both backends: every test below runs
//! once on redb and once on a real redis-server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers, not only #[test] fns

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::Fixture;
use switchboard_routing::livekit_protocol::{
    sip_dispatch_rule::Rule, update_sip_dispatch_rule_request, update_sip_inbound_trunk_request,
    update_sip_outbound_trunk_request, ListSipDispatchRuleRequest, ListSipInboundTrunkRequest,
    ListSipOutboundTrunkRequest, ListUpdate, Pagination, SipCodec, SipDispatchRule,
    SipDispatchRuleCallee, SipDispatchRuleDirect, SipDispatchRuleIndividual, SipDispatchRuleInfo,
    SipDispatchRuleUpdate, SipHeaderOptions, SipInboundTrunkInfo, SipInboundTrunkUpdate,
    SipMediaConfig, SipOutboundTrunkInfo, SipOutboundTrunkUpdate,
};
use switchboard_routing::{
    ids::is_valid_id, CallInput, DispatchDecision, ErrorCode, IdPrefix, RoutingError,
    RoutingOptions,
};
use switchboard_store::{
    DialPlanRecord, LiveRoutingIndex, PlatformTrunk, PlatformTrunkWrite, ProvisioningFault,
    StoreError, Table, WriteOp,
};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn inbound(numbers: &[&str]) -> SipInboundTrunkInfo {
    SipInboundTrunkInfo {
        name: "in".into(),
        numbers: strings(numbers),
        ..Default::default()
    }
}

fn wildcard_inbound(user: &str) -> SipInboundTrunkInfo {
    SipInboundTrunkInfo {
        auth_username: user.into(),
        auth_password: "pw".into(),
        ..Default::default()
    }
}

fn outbound(address: &str, numbers: &[&str]) -> SipOutboundTrunkInfo {
    SipOutboundTrunkInfo {
        address: address.into(),
        numbers: strings(numbers),
        ..Default::default()
    }
}

fn rule(kind: Rule) -> SipDispatchRuleInfo {
    SipDispatchRuleInfo {
        rule: Some(SipDispatchRule { rule: Some(kind) }),
        ..Default::default()
    }
}

fn direct(room: &str, pin: &str) -> SipDispatchRuleInfo {
    rule(Rule::DispatchRuleDirect(SipDispatchRuleDirect {
        room_name: room.into(),
        pin: pin.into(),
    }))
}

fn page(after: &str, limit: i32) -> Option<Pagination> {
    Some(Pagination {
        after_id: after.into(),
        limit,
    })
}

fn routing_error_text(e: StoreError) -> (ErrorCode, String) {
    (e.code(), e.to_string())
}

fn seconds_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn inbound_trunk_round_trip(fx: Fixture) {
    let store = fx.store();
    let full = SipInboundTrunkInfo {
        name: "Main line".into(),
        metadata: "{\"team\":\"support\"}".into(),
        numbers: strings(&["+15105550100"]),
        allowed_addresses: strings(&["10.0.0.0/8", "192.0.2.7"]),
        allowed_numbers: strings(&["+13105550100"]),
        auth_username: "carrier".into(),
        auth_password: "hunter2".into(),
        auth_realm: "switchboard".into(),
        headers: HashMap::from([("X-Env".into(), "prod".into())]),
        headers_to_attributes: HashMap::from([("X-Customer".into(), "customer".into())]),
        attributes_to_headers: HashMap::from([("customer".into(), "X-Customer".into())]),
        include_headers: SipHeaderOptions::SipXHeaders as i32,
        ringing_timeout: Some(pbjson_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
        max_call_duration: Some(pbjson_types::Duration {
            seconds: 3600,
            nanos: 0,
        }),
        krisp_enabled: true,
        ringing_timeout_status: 486,
        media: Some(SipMediaConfig {
            codecs: vec![SipCodec {
                name: "G722".into(),
                rate: 16000,
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = store.create_inbound_trunk(full.clone()).await.unwrap();
    assert!(
        is_valid_id(IdPrefix::Trunk, &created.sip_trunk_id),
        "{}",
        created.sip_trunk_id
    );
    let created_at = created.created_at.unwrap();
    assert_eq!(created.updated_at, Some(created_at));
    assert!((created_at.seconds - seconds_now()).abs() < 60);
    let expected = SipInboundTrunkInfo {
        sip_trunk_id: created.sip_trunk_id.clone(),
        created_at: created.created_at,
        updated_at: created.updated_at,
        ..full
    };
    assert_eq!(created, expected, "every field is kept");
    assert_eq!(
        store
            .get_inbound_trunk(&created.sip_trunk_id)
            .await
            .unwrap(),
        Some(expected.clone())
    );
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(
        snapshot.inbound_trunks[0].auth_password, "hunter2",
        "stored"
    );
    let printed = format!(
        "{snapshot:?} {store:?} {:?}",
        snapshot.routing_index(RoutingOptions::default())
    );
    assert!(
        !printed.contains("hunter2"),
        "Debug output must not carry passwords: {printed}"
    );
    let fx = fx.reopen().await;
    assert_eq!(
        fx.store()
            .get_inbound_trunk(&created.sip_trunk_id)
            .await
            .unwrap(),
        Some(expected),
        "durable across reopen"
    );
    assert_eq!(
        fx.store()
            .get_inbound_trunk("ST_doesnotexist")
            .await
            .unwrap(),
        None
    );
}

async fn refused_creates_change_nothing(fx: Fixture) {
    let store = fx.store();
    let feed = store.subscribe();
    let v0 = feed.version();
    let (code, text) = routing_error_text(
        store
            .create_inbound_trunk(SipInboundTrunkInfo::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert_eq!(text, "for security, one of the fields must be set: AuthUsername+AuthPassword, AllowedAddresses or Numbers");
    let a = store
        .create_inbound_trunk(inbound(&["+15105550100"]))
        .await
        .unwrap();
    let v1 = store.subscribe().version();
    assert!(v1 > v0);
    let (code, text) = routing_error_text(
        store
            .create_inbound_trunk(inbound(&["15105550100"]))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert_eq!(
        text,
        format!("Conflicting inbound SIP Trunks: \"<new>\" and \"{}\", using the same number(s) [\"15105550100\"] without AllowedNumbers set", a.sip_trunk_id)
    );
    let with_id = SipInboundTrunkInfo {
        sip_trunk_id: "ST_mine".into(),
        ..inbound(&["+1"])
    };
    assert_eq!(
        store
            .create_inbound_trunk(with_id)
            .await
            .unwrap_err()
            .to_string(),
        "trunk id must not be set"
    );
    let (_, text) = routing_error_text(
        store
            .create_outbound_trunk(outbound("sip:x.example.com", &["+1"]))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        text,
        "trunk address should be a hostname or IP, not SIP URI"
    );
    let (_, text) = routing_error_text(
        store
            .create_dispatch_rule(SipDispatchRuleInfo::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(text, "missing rule");
    let all = store
        .list_inbound_trunks(&ListSipInboundTrunkRequest::default())
        .await
        .unwrap();
    assert_eq!(all, vec![a]);
    assert_eq!(
        store.subscribe().version(),
        v1,
        "refused writes do not bump the version"
    );
}

async fn inbound_trunk_updates(fx: Fixture) {
    use update_sip_inbound_trunk_request::Action;
    let store = fx.store();
    let a = store
        .create_inbound_trunk(inbound(&["+1555"]))
        .await
        .unwrap();
    let b = store
        .create_inbound_trunk(inbound(&["+1666"]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let update = Action::Update(SipInboundTrunkUpdate {
        numbers: Some(ListUpdate {
            add: strings(&["+1777"]),
            ..Default::default()
        }),
        name: Some("renamed".into()),
        ..Default::default()
    });
    let updated = store
        .update_inbound_trunk(&a.sip_trunk_id, &update)
        .await
        .unwrap();
    assert_eq!(updated.numbers, strings(&["+1555", "+1777"]));
    assert_eq!(updated.name, "renamed");
    assert_eq!(updated.created_at, a.created_at, "created_at is kept");
    let stamp = |t: Option<pbjson_types::Timestamp>| t.map(|t| (t.seconds, t.nanos));
    assert!(
        stamp(updated.updated_at) > stamp(a.updated_at),
        "updated_at moves"
    );
    assert_eq!(
        store.get_inbound_trunk(&a.sip_trunk_id).await.unwrap(),
        Some(updated.clone())
    );

    // Moving b onto a's number conflicts; nothing changes.
    let steal = Action::Update(SipInboundTrunkUpdate {
        numbers: Some(ListUpdate {
            set: strings(&["+1777"]),
            ..Default::default()
        }),
        ..Default::default()
    });
    let err = store
        .update_inbound_trunk(&b.sip_trunk_id, &steal)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
    assert!(
        err.to_string()
            .starts_with("Conflicting inbound SIP Trunks"),
        "{err}"
    );
    assert_eq!(
        store.get_inbound_trunk(&b.sip_trunk_id).await.unwrap(),
        Some(b.clone())
    );

    let replaced = store
        .update_inbound_trunk(&b.sip_trunk_id, &Action::Replace(inbound(&["+1888"])))
        .await
        .unwrap();
    assert_eq!(
        (replaced.sip_trunk_id.as_str(), replaced.numbers.clone()),
        (b.sip_trunk_id.as_str(), strings(&["+1888"]))
    );
    assert_eq!(replaced.created_at, b.created_at);

    let err = store
        .update_inbound_trunk("ST_missing", &update)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.to_string()),
        (
            ErrorCode::NotFound,
            "requested sip trunk does not exist".to_string()
        )
    );
    let err = store.update_inbound_trunk("", &update).await.unwrap_err();
    assert_eq!(err.to_string(), "trunk id must be set");
}

async fn outbound_trunks(fx: Fixture) {
    use update_sip_outbound_trunk_request::Action;
    let store = fx.store();
    let mut t = outbound("sip.telnyx.com", &["+15105550100"]);
    t.auth_username = "user".into();
    t.auth_password = "secret".into();
    t.transport = 2;
    let a = store.create_outbound_trunk(t).await.unwrap();
    assert!(is_valid_id(IdPrefix::Trunk, &a.sip_trunk_id));
    assert_eq!(a.auth_password, "secret");
    let b = store
        .create_outbound_trunk(outbound("10.1.2.3:5060", &["+15105550199"]))
        .await
        .unwrap();
    let updated = store
        .update_outbound_trunk(
            &a.sip_trunk_id,
            &Action::Update(SipOutboundTrunkUpdate {
                address: Some("sip2.telnyx.com".into()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(updated.address, "sip2.telnyx.com");
    assert_eq!(updated.auth_password, "secret");
    assert_eq!(
        store.get_outbound_trunk(&a.sip_trunk_id).await.unwrap(),
        Some(updated.clone())
    );
    let err = store
        .update_outbound_trunk(
            &a.sip_trunk_id,
            &Action::Update(SipOutboundTrunkUpdate {
                numbers: Some(ListUpdate {
                    clear: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "no trunk numbers specified");
    // numbers filter is exact for outbound trunks
    let exact = store
        .list_outbound_trunks(&ListSipOutboundTrunkRequest {
            numbers: strings(&["+15105550199"]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(exact, vec![b.clone()]);
    let unformatted = store
        .list_outbound_trunks(&ListSipOutboundTrunkRequest {
            numbers: strings(&["15105550199"]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(unformatted.is_empty());
    assert_eq!(
        store
            .list_outbound_trunks(&ListSipOutboundTrunkRequest::default())
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        store
            .list_inbound_trunks(&ListSipInboundTrunkRequest::default())
            .await
            .unwrap()
            .is_empty(),
        "kinds are separate"
    );
}

async fn delete_trunks(fx: Fixture) {
    let store = fx.store();
    let i = store.create_inbound_trunk(inbound(&["+1"])).await.unwrap();
    let o = store
        .create_outbound_trunk(outbound("a.example.com", &["+1"]))
        .await
        .unwrap();
    assert!(store.delete_trunk(&i.sip_trunk_id).await.unwrap());
    assert!(store.delete_trunk(&o.sip_trunk_id).await.unwrap());
    assert!(!store.delete_trunk(&o.sip_trunk_id).await.unwrap());
    assert_eq!(
        store.get_inbound_trunk(&i.sip_trunk_id).await.unwrap(),
        None
    );
    assert_eq!(
        store.get_outbound_trunk(&o.sip_trunk_id).await.unwrap(),
        None
    );
    // The number is free again.
    store.create_inbound_trunk(inbound(&["+1"])).await.unwrap();
}

async fn dispatch_rules(fx: Fixture) {
    use update_sip_dispatch_rule_request::Action;
    let store = fx.store();
    let d = store
        .create_dispatch_rule(SipDispatchRuleInfo {
            name: "front desk".into(),
            ..direct("lobby", "")
        })
        .await
        .unwrap();
    assert!(is_valid_id(IdPrefix::DispatchRule, &d.sip_dispatch_rule_id));
    assert!(d.created_at.is_some());
    let individual = rule(Rule::DispatchRuleIndividual(SipDispatchRuleIndividual {
        room_prefix: "call".into(),
        pin: "".into(),
        no_randomness: false,
    }));
    let err = store
        .create_dispatch_rule(individual.clone())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Dispatch rule for the same trunk, inbound number, number, and PIN combination already exists in dispatch rule \"{}\" \"front desk\"", d.sip_dispatch_rule_id)
    );
    let i = store
        .create_dispatch_rule(SipDispatchRuleInfo {
            trunk_ids: strings(&["ST_a"]),
            ..individual
        })
        .await
        .unwrap();
    let c = store
        .create_dispatch_rule(SipDispatchRuleInfo {
            inbound_numbers: strings(&["+1999"]),
            ..rule(Rule::DispatchRuleCallee(SipDispatchRuleCallee {
                room_prefix: "to".into(),
                pin: "".into(),
                randomize: true,
            }))
        })
        .await
        .unwrap();
    let updated = store
        .update_dispatch_rule(
            &c.sip_dispatch_rule_id,
            &Action::Update(SipDispatchRuleUpdate {
                metadata: Some("m".into()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(updated.metadata, "m");
    assert_eq!(updated.created_at, c.created_at);
    // Widening i to every trunk collides with d.
    let err = store
        .update_dispatch_rule(
            &i.sip_dispatch_rule_id,
            &Action::Update(SipDispatchRuleUpdate {
                trunk_ids: Some(ListUpdate {
                    clear: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
    let deleted = store
        .delete_dispatch_rule(&d.sip_dispatch_rule_id)
        .await
        .unwrap();
    assert_eq!(deleted, d);
    let err = store
        .delete_dispatch_rule(&d.sip_dispatch_rule_id)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.to_string()),
        (
            ErrorCode::NotFound,
            "requested sip dispatch rule does not exist".to_string()
        )
    );
    assert_eq!(
        store
            .get_dispatch_rule(&c.sip_dispatch_rule_id)
            .await
            .unwrap(),
        Some(updated)
    );
    let err = store
        .update_dispatch_rule("SDR_missing", &Action::Replace(direct("x", "")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
}

async fn inbound_list_filters_and_pagination(fx: Fixture) {
    let store = fx.store();
    let mut created = Vec::new();
    for n in ["+1100", "+1200", "+1300", "+1400", "+1500"] {
        created.push(store.create_inbound_trunk(inbound(&[n])).await.unwrap());
    }
    let wildcard = store
        .create_inbound_trunk(wildcard_inbound("u"))
        .await
        .unwrap();
    created.push(wildcard.clone());
    created.sort_by(|a, b| a.sip_trunk_id.cmp(&b.sip_trunk_id));

    let all = store
        .list_inbound_trunks(&ListSipInboundTrunkRequest::default())
        .await
        .unwrap();
    assert_eq!(all, created, "all, by ID");

    let by_number = store
        .list_inbound_trunks(&ListSipInboundTrunkRequest {
            numbers: strings(&["1 300"]),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = by_number.iter().map(|t| t.sip_trunk_id.as_str()).collect();
    assert_eq!(by_number.len(), 2, "{ids:?}");
    assert!(by_number.iter().any(|t| t.numbers == strings(&["+1300"])));
    assert!(
        by_number.contains(&wildcard),
        "wildcard trunks are included"
    );

    let pick = vec![
        created[1].sip_trunk_id.clone(),
        created[4].sip_trunk_id.clone(),
        "ST_unknown".into(),
    ];
    let by_id = store
        .list_inbound_trunks(&ListSipInboundTrunkRequest {
            trunk_ids: pick,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_id, vec![created[1].clone(), created[4].clone()]);

    // Paging with after_id = last ID until an empty page sees every trunk once, in order.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page_items = store
            .list_inbound_trunks(&ListSipInboundTrunkRequest {
                page: page(&after, 4),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page_items.len() <= 4);
        let Some(last) = page_items.last() else { break };
        after = last.sip_trunk_id.clone();
        seen.extend(page_items);
    }
    assert_eq!(seen, created);
    let tail = store
        .list_inbound_trunks(&ListSipInboundTrunkRequest {
            page: page(&created[3].sip_trunk_id, 0),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(tail, created[4..].to_vec(), "limit 0 means no limit");
}

async fn dispatch_rule_list_filters(fx: Fixture) {
    let store = fx.store();
    let wild = store.create_dispatch_rule(direct("any", "")).await.unwrap();
    let for_a = store
        .create_dispatch_rule(SipDispatchRuleInfo {
            trunk_ids: strings(&["ST_a"]),
            ..direct("a", "")
        })
        .await
        .unwrap();
    let for_b = store
        .create_dispatch_rule(SipDispatchRuleInfo {
            trunk_ids: strings(&["ST_b"]),
            ..direct("b", "")
        })
        .await
        .unwrap();
    let list = |req: ListSipDispatchRuleRequest| {
        let store = store.clone();
        async move {
            let mut ids: Vec<String> = store
                .list_dispatch_rules(&req)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.sip_dispatch_rule_id)
                .collect();
            ids.sort();
            ids
        }
    };
    let mut want = vec![
        wild.sip_dispatch_rule_id.clone(),
        for_a.sip_dispatch_rule_id.clone(),
    ];
    want.sort();
    assert_eq!(
        list(ListSipDispatchRuleRequest {
            trunk_ids: strings(&["ST_a"]),
            ..Default::default()
        })
        .await,
        want
    );
    assert_eq!(
        list(ListSipDispatchRuleRequest {
            dispatch_rule_ids: vec![for_b.sip_dispatch_rule_id.clone()],
            ..Default::default()
        })
        .await,
        vec![for_b.sip_dispatch_rule_id.clone()]
    );
    let mut all = vec![
        wild.sip_dispatch_rule_id,
        for_a.sip_dispatch_rule_id,
        for_b.sip_dispatch_rule_id,
    ];
    all.sort();
    let first = store
        .list_dispatch_rules(&ListSipDispatchRuleRequest {
            page: page("", 2),
            ..Default::default()
        })
        .await
        .unwrap();
    let rest = store
        .list_dispatch_rules(&ListSipDispatchRuleRequest {
            page: page(&first[1].sip_dispatch_rule_id, 2),
            ..Default::default()
        })
        .await
        .unwrap();
    let paged: Vec<String> = first
        .iter()
        .chain(&rest)
        .map(|r| r.sip_dispatch_rule_id.clone())
        .collect();
    assert_eq!(paged, all);
}

async fn change_feed_and_live_index(fx: Fixture) {
    let store = fx.store();
    let mut feed = store.subscribe();
    let live = LiveRoutingIndex::start(store.clone(), RoutingOptions::default())
        .await
        .unwrap();
    let call = CallInput {
        call_id: "SCL_x".into(),
        from_user: "+1999".into(),
        to_user: "+15105550100".into(),
        source_ip: Some("10.0.0.1".parse().unwrap()),
        ..Default::default()
    };
    assert!(
        live.current().match_trunk(&call).result.is_err(),
        "nothing stored yet"
    );

    let before = feed.version();
    let trunk = store
        .create_inbound_trunk(inbound(&["+15105550100"]))
        .await
        .unwrap();
    let v = tokio::time::timeout(Duration::from_secs(10), feed.changed())
        .await
        .expect("feed within 10 s")
        .unwrap();
    assert!(v > before);
    store
        .create_dispatch_rule(direct("support", ""))
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let index = live.current();
        let report = index.route(&call, &mut |b: &mut [u8]| b.fill(7));
        if let Some(Ok(DispatchDecision::Accept(r))) = report.dispatch.map(|d| d.result) {
            assert_eq!(
                (r.trunk_id.as_str(), r.room_name.as_str()),
                (trunk.sip_trunk_id.as_str(), "support")
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "index not refreshed within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.inbound_trunks, vec![trunk]);
    assert_eq!(snapshot.dispatch_rules.len(), 1);
    assert!(snapshot.version >= v);
}

async fn concurrent_conflicting_creates_admit_exactly_one(fx: Fixture) {
    let handles = fx.writer_handles(8).await;
    let mut tasks = Vec::new();
    for (i, store) in handles.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let t = SipInboundTrunkInfo {
                name: format!("writer {i}"),
                ..inbound(&["+15550000"])
            };
            store.create_inbound_trunk(t).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert!(
                e.to_string().starts_with("Conflicting inbound SIP Trunks"),
                "{e}"
            ),
        }
    }
    assert_eq!(ok, 1, "exactly one conflicting create may win");
    let stored = fx
        .store()
        .list_inbound_trunks(&ListSipInboundTrunkRequest::default())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
}

async fn corrupt_records_are_reported_not_hidden(fx: Fixture) {
    let op = WriteOp::Put {
        table: Table::InboundTrunks,
        id: "ST_broken".into(),
        value: vec![0xff, 0xff, 0xff],
    };
    fx.backend().commit(None, vec![op]).await.unwrap();
    let err = fx
        .store()
        .list_inbound_trunks(&ListSipInboundTrunkRequest::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { id, .. } if id == "ST_broken"),
        "{err}"
    );
    assert_eq!(err.code(), ErrorCode::Internal);
}

async fn outbound_and_rules_survive_reopen(fx: Fixture) {
    let o = fx
        .store()
        .create_outbound_trunk(outbound("a.example.com", &["+1"]))
        .await
        .unwrap();
    let r = fx
        .store()
        .create_dispatch_rule(direct("room", "1234"))
        .await
        .unwrap();
    let version = fx.store().subscribe().version();
    let fx = fx.reopen().await;
    assert_eq!(
        fx.store()
            .get_outbound_trunk(&o.sip_trunk_id)
            .await
            .unwrap(),
        Some(o)
    );
    assert_eq!(
        fx.store()
            .get_dispatch_rule(&r.sip_dispatch_rule_id)
            .await
            .unwrap(),
        Some(r)
    );
    assert_eq!(
        fx.store().subscribe().version(),
        version,
        "the version survives too"
    );
}

fn platform_write(name: &str, numbers: &[&str]) -> PlatformTrunkWrite {
    PlatformTrunkWrite {
        trunk: PlatformTrunk {
            name: name.into(),
            direction: "both".into(),
            auth_password: "pw".into(),
            ..Default::default()
        },
        inbound: Some(inbound(numbers)),
        outbound: Some(outbound("sip.example.com", numbers)),
        dispatch_rule: Some(rule(Rule::DispatchRuleIndividual(
            SipDispatchRuleIndividual {
                room_prefix: "call-".into(),
                ..Default::default()
            },
        ))),
        dial_plan: Some(DialPlanRecord {
            number_format: "national".into(),
            country: "GB".into(),
        }),
    }
}

async fn counts(fx: &Fixture) -> (usize, usize, usize, usize) {
    let snapshot = fx.store().snapshot().await.unwrap();
    let platform = fx.store().list_platform_trunks("", 1000).await.unwrap();
    (
        snapshot.inbound_trunks.len(),
        snapshot.outbound_trunks.len(),
        snapshot.dispatch_rules.len(),
        platform.trunks.len(),
    )
}

async fn platform_trunks_are_written_whole(fx: Fixture) {
    // A fault half-way (after the inbound trunk is prepared) writes nothing.
    let faulty = fx
        .store()
        .clone()
        .with_fault(ProvisioningFault::AfterInbound);
    let e = faulty
        .create_platform_trunk(platform_write("a", &["+442079460000"]), 20)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::InjectedFault(_)), "{e}");
    assert_eq!(counts(&fx).await, (0, 0, 0, 0));

    let made = fx
        .store()
        .create_platform_trunk(platform_write("a", &["+442079460000"]), 2)
        .await
        .unwrap();
    assert_eq!(counts(&fx).await, (1, 1, 1, 1));
    let rule = fx
        .store()
        .get_dispatch_rule(&made.dispatch_rule_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rule.trunk_ids, vec![made.inbound_trunk_id.clone()]);
    let plan = fx
        .store()
        .outbound_dial_plan(&made.outbound_trunk_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(plan.number_format, "national");

    // A conflicting inbound trunk refuses the whole write.
    let e = fx
        .store()
        .create_platform_trunk(platform_write("b", &["+442079460000"]), 2)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Routing(RoutingError::ConflictingInboundTrunks { .. })
        ),
        "{e}"
    );
    assert_eq!(counts(&fx).await, (1, 1, 1, 1));

    // The cap counts carrier trunks at the version written at.
    fx.store()
        .create_platform_trunk(platform_write("b", &["+442079460001"]), 2)
        .await
        .unwrap();
    let e = fx
        .store()
        .create_platform_trunk(platform_write("c", &["+442079460002"]), 2)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::AtCapacity { max: 2 }), "{e}");
    assert_eq!(counts(&fx).await, (2, 2, 2, 2));

    // Outbound only: the inbound trunk and the rule go, the outbound trunk
    // keeps its ID; deleting removes the rest and the dial plan.
    let mut narrower = platform_write("a", &["+442079460000"]);
    narrower.trunk.direction = "outbound".into();
    narrower.inbound = None;
    narrower.dispatch_rule = None;
    let changed = fx
        .store()
        .update_platform_trunk(&made.id, narrower)
        .await
        .unwrap();
    assert_eq!(changed.outbound_trunk_id, made.outbound_trunk_id);
    assert_eq!(changed.created_at_micros, made.created_at_micros);
    assert!(changed.inbound_trunk_id.is_empty());
    assert_eq!(counts(&fx).await, (1, 2, 1, 2));
    fx.store().delete_platform_trunk(&made.id).await.unwrap();
    assert_eq!(counts(&fx).await, (1, 1, 1, 1));
    assert!(fx
        .store()
        .outbound_dial_plan(&made.outbound_trunk_id)
        .await
        .unwrap()
        .is_none());
    let e = fx
        .store()
        .delete_platform_trunk(&made.id)
        .await
        .unwrap_err();
    assert_eq!(routing_error_text(e).0, ErrorCode::NotFound);
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Fixture::redb().await).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Fixture::redis().await).await
                }
            )*
        }
    };
}

on_both_backends!(
    inbound_trunk_round_trip,
    refused_creates_change_nothing,
    inbound_trunk_updates,
    outbound_trunks,
    delete_trunks,
    dispatch_rules,
    inbound_list_filters_and_pagination,
    dispatch_rule_list_filters,
    change_feed_and_live_index,
    concurrent_conflicting_creates_admit_exactly_one,
    corrupt_records_are_reported_not_hidden,
    outbound_and_rules_survive_reopen,
    platform_trunks_are_written_whole,
);

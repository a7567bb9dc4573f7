//! Dispatch rule filtering, priority, PIN flow and evaluation (reference §2.4-2.6).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers, not only #[test] fns

mod common;

use std::collections::HashMap;

use common::*;
use switchboard_routing::livekit_protocol::{
    SipCodec, SipDispatchRuleInfo, SipFeature, SipHeaderOptions, SipInboundTrunkInfo,
    SipMediaConfig, SipMediaEncryption,
};
use switchboard_routing::{
    attrs, dispatch_rule_priority, hashed_number, merge_media, CallInput, DispatchDecision,
    DispatchResult, ErrorCode, PassOverReason, RoutingIndex, RoutingOptions,
};

fn index(trunks: Vec<SipInboundTrunkInfo>, rules: Vec<SipDispatchRuleInfo>) -> RoutingIndex {
    RoutingIndex::new(trunks, rules, RoutingOptions::default())
}

/// Routes a call through both steps and returns the chosen rule ID, "PIN:<id>", or the error text.
fn route(idx: &RoutingIndex, c: &CallInput) -> String {
    let mut rng = counting_rng();
    let fast = idx.route(c, &mut rng);
    let mut rng = counting_rng();
    let explained = idx.explain(c, &mut rng);
    let outcome = |r: &switchboard_routing::RouteReport| match &r.trunk.result {
        Err(e) => format!("trunk error: {e}"),
        Ok(_) => match &r.dispatch.as_ref().unwrap().result {
            Ok(DispatchDecision::Accept(res)) => res.rule_id.clone(),
            Ok(DispatchDecision::RequestPin { rule_id }) => format!("PIN:{rule_id}"),
            Err(e) => format!("error: {e}"),
        },
    };
    let (a, b) = (outcome(&fast), outcome(&explained));
    assert_eq!(a, b, "fast and explained paths disagree for {c:?}");
    a
}

fn accept(idx: &RoutingIndex, c: &CallInput) -> DispatchResult {
    let mut rng = counting_rng();
    let report = idx.route(c, &mut rng);
    match report
        .dispatch
        .expect("trunk matched")
        .result
        .expect("rule matched")
    {
        DispatchDecision::Accept(r) => *r,
        other => panic!("expected accept, got {other:?}"),
    }
}

fn wild_trunk() -> SipInboundTrunkInfo {
    with_auth(trunk("ST_t", &[]), "u", "p")
}

#[test]
fn priority_table() {
    let cases = [
        (direct("r", "room", "1234"), 2000),
        (individual("r", "p", "1234", false), 2001),
        (callee("r", "p", "1234", false), 2002),
        (direct("r", "room", ""), 2100),
        (individual("r", "p", "", false), 2101),
        (callee("r", "p", "", false), 2102),
        (from_numbers(direct("r", "room", ""), &["+1"]), 1100),
        (to_numbers(direct("r", "room", ""), &["+1"]), 1100),
        (
            to_numbers(from_numbers(direct("r", "room", ""), &["+1"]), &["+2"]),
            100,
        ),
        (
            to_numbers(from_numbers(callee("r", "p", "9", false), &["+1"]), &["+2"]),
            2,
        ),
    ];
    for (rule, want) in cases {
        assert_eq!(dispatch_rule_priority(&rule), want, "{rule:?}");
    }
}

#[test]
fn selection_table() {
    let t = || wild_trunk();
    let c = call("+1999", "+1555", "1.1.1.1");
    let cases: Vec<(&str, Vec<SipDispatchRuleInfo>, CallInput, &str)> = vec![
        (
            "single open rule",
            vec![direct("SDR_a", "r", "")],
            c.clone(),
            "SDR_a",
        ),
        // Rules of one scope conflict whatever their kind, so kinds are compared
        // between PIN rules with different PINs (both kept until a PIN is entered).
        (
            "direct beats individual",
            vec![
                individual("SDR_a", "p", "2222", false),
                to_numbers(direct("SDR_b", "r", ""), &["+1666"]),
                direct("SDR_c", "r2", "1111"),
            ],
            c.clone(),
            "PIN:SDR_c",
        ),
        (
            "individual beats callee",
            vec![
                callee("SDR_a", "p", "1111", false),
                individual("SDR_b", "p", "2222", false),
            ],
            c.clone(),
            "PIN:SDR_b",
        ),
        (
            "caller and callee filters beat a bare rule",
            vec![
                callee("SDR_a", "p", "", false),
                to_numbers(
                    from_numbers(individual("SDR_b", "p", "", false), &["+1999"]),
                    &["+1555"],
                ),
            ],
            c.clone(),
            "SDR_b",
        ),
        (
            "caller-specific beats generic",
            vec![
                direct("SDR_a", "r", ""),
                from_numbers(callee("SDR_b", "p", "", false), &["+1999"]),
            ],
            c.clone(),
            "SDR_b",
        ),
        (
            "callee-specific beats generic",
            vec![
                direct("SDR_a", "r", ""),
                to_numbers(callee("SDR_b", "p", "", false), &["+1555"]),
            ],
            c.clone(),
            "SDR_b",
        ),
        (
            "rule caller filter is exact",
            vec![from_numbers(direct("SDR_a", "r", ""), &["1999"])],
            c.clone(),
            "error: No SIP Dispatch Rules matched for \"+1555\"",
        ),
        (
            "rule callee filter is exact",
            vec![to_numbers(direct("SDR_a", "r", ""), &["1555"])],
            c.clone(),
            "error: No SIP Dispatch Rules matched for \"+1555\"",
        ),
        (
            "tie broken by room name",
            vec![
                direct("SDR_a", "zebra", "1"),
                to_numbers(direct("SDR_b", "alpha", ""), &["+1"]),
                direct("SDR_c", "alpha", "2"),
            ],
            c.clone(),
            "PIN:SDR_c",
        ),
        (
            "trunk rule beats better wildcard rule",
            vec![
                to_numbers(
                    from_numbers(direct("SDR_a", "r", ""), &["+1999"]),
                    &["+1555"],
                ),
                for_trunks(callee("SDR_b", "p", "", false), &["ST_t"]),
            ],
            c.clone(),
            "SDR_b",
        ),
        (
            "rule for another trunk is ignored",
            vec![for_trunks(direct("SDR_a", "r", ""), &["ST_other"])],
            c.clone(),
            "error: No SIP Dispatch Rules matched for \"+1555\"",
        ),
        (
            "pin rule asks for a PIN first",
            vec![
                direct("SDR_a", "open", ""),
                direct("SDR_b", "locked", "1234"),
            ],
            c.clone(),
            "PIN:SDR_b",
        ),
        (
            "right PIN",
            vec![
                direct("SDR_a", "open", ""),
                direct("SDR_b", "locked", "1234"),
            ],
            CallInput {
                pin: Some("1234".into()),
                ..c.clone()
            },
            "SDR_b",
        ),
        (
            "wrong PIN matches nothing",
            vec![
                direct("SDR_a", "open", ""),
                direct("SDR_b", "locked", "1234"),
            ],
            CallInput {
                pin: Some("9999".into()),
                ..c.clone()
            },
            "error: No SIP Dispatch Rules matched for \"+1555\"",
        ),
        (
            "no PIN (#) falls back to the open rule",
            vec![
                direct("SDR_a", "open", ""),
                direct("SDR_b", "locked", "1234"),
            ],
            CallInput {
                no_pin: true,
                ..c.clone()
            },
            "SDR_a",
        ),
        (
            "no PIN with only PIN rules",
            vec![direct("SDR_b", "locked", "1234")],
            CallInput {
                no_pin: true,
                ..c.clone()
            },
            "error: No SIP Dispatch Rules matched for \"+1555\"",
        ),
        (
            "PIN picks among PIN rules",
            vec![
                direct("SDR_a", "one", "1111"),
                direct("SDR_b", "two", "2222"),
            ],
            CallInput {
                pin: Some("2222".into()),
                ..c.clone()
            },
            "SDR_b",
        ),
        (
            "no rules at all",
            vec![],
            c.clone(),
            "error: No SIP Dispatch Rules defined",
        ),
    ];
    for (name, rules, call_input, want) in cases {
        let idx = index(vec![t()], rules);
        assert_eq!(route(&idx, &call_input), want, "{name}");
    }
}

#[test]
fn unmatched_calls_reach_only_wildcard_rules_when_allowed() {
    let rules = vec![
        for_trunks(direct("SDR_a", "r", ""), &["ST_t"]),
        callee("SDR_b", "p", "", false),
    ];
    let c = call("+1999", "+1777", "1.1.1.1");
    let strict = RoutingIndex::new(
        vec![trunk("ST_t", &["+1555"])],
        rules.clone(),
        RoutingOptions::default(),
    );
    assert_eq!(
        route(&strict, &c),
        "trunk error: No SIP Trunk matched for \"+1777\""
    );
    let open = RoutingIndex::new(
        vec![trunk("ST_t", &["+1555"])],
        rules,
        RoutingOptions {
            allow_unmatched_calls: true,
        },
    );
    assert_eq!(route(&open, &c), "SDR_b");
    let only_trunk_rule = RoutingIndex::new(
        vec![trunk("ST_t", &["+1555"])],
        vec![for_trunks(direct("SDR_a", "r", ""), &["ST_t"])],
        RoutingOptions {
            allow_unmatched_calls: true,
        },
    );
    assert_eq!(
        route(&only_trunk_rule, &c),
        "error: No SIP Trunk or Dispatch Rules matched for \"+1777\""
    );
}

#[test]
fn stored_conflicting_rules_refuse_the_call() {
    let idx = index(
        vec![wild_trunk()],
        vec![
            direct("SDR_a", "r1", ""),
            individual("SDR_b", "p", "", false),
        ],
    );
    let out = route(&idx, &call("+1", "+2", "1.1.1.1"));
    assert!(
        out.starts_with("error: Dispatch rule for the same trunk"),
        "{out}"
    );
    // A conflict among rules for another trunk does not matter here.
    let idx = index(
        vec![wild_trunk()],
        vec![
            for_trunks(direct("SDR_a", "r1", ""), &["ST_x"]),
            for_trunks(direct("SDR_b", "r2", ""), &["ST_x"]),
            direct("SDR_c", "r3", ""),
        ],
    );
    assert_eq!(route(&idx, &call("+1", "+2", "1.1.1.1")), "SDR_c");
}

#[test]
fn passed_over_rules_carry_their_reasons() {
    let rules = vec![
        for_trunks(direct("SDR_trunk", "r", ""), &["ST_other"]),
        from_numbers(direct("SDR_caller", "r", ""), &["+1000"]),
        to_numbers(direct("SDR_called", "r", ""), &["+1000"]),
        direct("SDR_pin", "locked", "4321"),
        callee("SDR_lower", "p", "", false),
        from_numbers(individual("SDR_win", "p", "", false), &["+1999"]),
    ];
    let idx = index(vec![wild_trunk()], rules);
    let mut c = call("+1999", "+1555", "1.1.1.1");
    c.no_pin = true;
    let mut rng = counting_rng();
    let report = idx.explain(&c, &mut rng);
    let text = report.to_string();
    let dispatch = report.dispatch.unwrap();
    match dispatch.result.unwrap() {
        DispatchDecision::Accept(r) => assert_eq!(r.rule_id, "SDR_win"),
        other => panic!("{other:?}"),
    }
    let reason = |id: &str| {
        dispatch
            .passed_over
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.reason.clone())
    };
    assert_eq!(
        reason("SDR_trunk"),
        Some(PassOverReason::TrunkNotInRule {
            trunk_id: Some("ST_t".into())
        })
    );
    assert_eq!(
        reason("SDR_caller"),
        Some(PassOverReason::CallerNotInRule {
            caller: "+1999".into()
        })
    );
    assert_eq!(
        reason("SDR_called"),
        Some(PassOverReason::CalledNotInRule {
            called: "+1555".into()
        })
    );
    assert_eq!(
        reason("SDR_pin"),
        Some(PassOverReason::PinRequiredButSkipped)
    );
    assert_eq!(
        reason("SDR_lower"),
        Some(PassOverReason::LowerPriority {
            winner: "SDR_win".into(),
            priority: 2102,
            winner_priority: 1101
        })
    );
    assert!(
        text.contains(
            "rule SDR_called: called number \"+1555\" not in the rule's numbers (exact match)"
        ),
        "{text}"
    );
    assert!(
        text.contains("trunk: ST_t (wildcard), digest auth required"),
        "{text}"
    );
}

#[test]
fn room_names() {
    let t = || wild_trunk();
    let c = call("+15551234567", "+15550100", "1.1.1.1");
    let cases: Vec<(SipDispatchRuleInfo, String)> = vec![
        (direct("SDR_a", "my-room", ""), "my-room".into()),
        (
            individual("SDR_a", "pref", "", false),
            "pref_+15551234567_23456789ABCD".into(),
        ),
        (
            individual("SDR_a", "", "", false),
            "+15551234567_23456789ABCD".into(),
        ),
        (
            individual("SDR_a", "pref", "", true),
            "pref_+15551234567".into(),
        ),
        (callee("SDR_a", "pref", "", false), "pref_+15550100".into()),
        (callee("SDR_a", "", "", false), "+15550100".into()),
        (
            callee("SDR_a", "pref", "", true),
            "pref_+15550100_23456789ABCD".into(),
        ),
        (
            SipDispatchRuleInfo {
                hide_phone_number: true,
                ..individual("SDR_a", "pref", "", true)
            },
            format!("pref_{}", hashed_number("+15551234567")),
        ),
    ];
    for (rule, want) in cases {
        let idx = index(vec![t()], vec![rule.clone()]);
        assert_eq!(accept(&idx, &c).room_name, want, "{rule:?}");
    }
}

#[test]
fn identity_name_and_attributes() {
    let mut rule = direct("SDR_a", "room", "");
    rule.metadata = "rule-meta".into();
    rule.attributes = HashMap::from([
        ("team".to_string(), "sales".to_string()),
        (attrs::CALL_ID.to_string(), "spoofed".to_string()),
    ]);
    let idx = index(vec![wild_trunk()], vec![rule.clone()]);
    let c = call("+15551234567", "+15550100", "1.1.1.1");
    let r = accept(&idx, &c);
    assert_eq!(r.participant_identity, "sip_+15551234567");
    assert_eq!(r.participant_name, "Phone +15551234567");
    assert_eq!(r.participant_metadata, "rule-meta");
    let want: HashMap<String, String> = [
        ("team", "sales"),
        (attrs::CALL_ID, "SCL_testcall0001"),
        (attrs::TRUNK_ID, "ST_t"),
        (attrs::RULE_ID, "SDR_a"),
        (attrs::PHONE_NUMBER, "+15551234567"),
        (attrs::HOSTNAME, "carrier.example.net"),
        (attrs::TRUNK_PHONE_NUMBER, "+15550100"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(r.participant_attributes, want);

    rule.hide_phone_number = true;
    let idx = index(vec![wild_trunk()], vec![rule]);
    let r = accept(&idx, &c);
    assert_eq!(
        r.participant_identity,
        format!("sip_{}", hashed_number("+15551234567"))
    );
    assert_eq!(r.participant_identity.len(), "sip_".len() + 16);
    assert_eq!(r.participant_name, "Phone 4567");
    for key in [
        attrs::PHONE_NUMBER,
        attrs::HOSTNAME,
        attrs::TRUNK_PHONE_NUMBER,
    ] {
        assert!(
            !r.participant_attributes.contains_key(key),
            "{key} must be hidden"
        );
    }
    assert_eq!(r.participant_attributes[attrs::RULE_ID], "SDR_a");
}

#[test]
fn hidden_short_numbers_keep_one_character() {
    let (identity, name) = switchboard_routing::participant_identity_and_name("1234", true);
    assert_eq!(name, "Phone 4");
    assert_eq!(identity, format!("sip_{}", hashed_number("1234")));
    // sha256("1234") starts 03ac674216f3e15c.
    assert_eq!(hashed_number("1234"), "03ac674216f3e15c");
}

#[test]
fn header_attributes_follow_trunk_settings() {
    let mut t = wild_trunk();
    t.include_headers = SipHeaderOptions::SipXHeaders as i32;
    t.headers_to_attributes = HashMap::from([("X-Customer".to_string(), "customer".to_string())]);
    t.headers = HashMap::from([("X-Reply".to_string(), "1".to_string())]);
    t.krisp_enabled = true;
    let idx = index(vec![t], vec![direct("SDR_a", "room", "")]);
    let mut c = call("+1", "+2", "1.1.1.1");
    c.headers = vec![
        ("X-Customer".into(), "42".into()),
        ("X-Twilio-CallSid".into(), "CA123".into()),
        ("User-Agent".into(), "carrier".into()),
    ];
    c.from_tag = "tag-9".into();
    c.sip_call_id = "abc@host".into();
    let r = accept(&idx, &c);
    let a = &r.participant_attributes;
    assert_eq!(a["sip.h.x-customer"], "42");
    assert_eq!(a["sip.h.x-twilio-callsid"], "CA123");
    assert!(
        !a.contains_key("sip.h.user-agent"),
        "X_HEADERS maps only X- headers"
    );
    assert_eq!(a["customer"], "42");
    assert_eq!(a["sip.twilio.callSid"], "CA123");
    assert_eq!(a[attrs::CALL_TAG], "tag-9");
    assert_eq!(a[attrs::CALL_ID_FULL], "abc@host");
    assert_eq!(r.headers["X-Reply"], "1");
    assert_eq!(r.enabled_features, vec![SipFeature::KrispEnabled]);
    assert_eq!(r.include_headers, SipHeaderOptions::SipXHeaders);
}

#[test]
fn media_merge_table() {
    let codec = |n: &str| SipCodec {
        name: n.into(),
        rate: 0,
    };
    let secs = |s: i64| pbjson_types_duration(s);
    let enc = |e: SipMediaEncryption| Some(e as i32);
    let cases = vec![
        // codecs: inherited only when the rule lists none
        (
            SipMediaConfig {
                codecs: vec![codec("PCMU")],
                only_listed_codecs: true,
                ..Default::default()
            },
            SipMediaConfig::default(),
            SipMediaConfig {
                codecs: vec![codec("PCMU")],
                only_listed_codecs: true,
                ..Default::default()
            },
        ),
        (
            SipMediaConfig {
                codecs: vec![codec("PCMU")],
                only_listed_codecs: true,
                ..Default::default()
            },
            SipMediaConfig {
                codecs: vec![codec("opus")],
                ..Default::default()
            },
            SipMediaConfig {
                codecs: vec![codec("opus")],
                ..Default::default()
            },
        ),
        // DISABLE never overrides a set value, others do
        (
            SipMediaConfig {
                encryption: enc(SipMediaEncryption::SipMediaEncryptRequire),
                ..Default::default()
            },
            SipMediaConfig {
                encryption: enc(SipMediaEncryption::SipMediaEncryptDisable),
                ..Default::default()
            },
            SipMediaConfig {
                encryption: enc(SipMediaEncryption::SipMediaEncryptRequire),
                ..Default::default()
            },
        ),
        (
            SipMediaConfig {
                encryption: enc(SipMediaEncryption::SipMediaEncryptAllow),
                ..Default::default()
            },
            SipMediaConfig {
                encryption: enc(SipMediaEncryption::SipMediaEncryptRequire),
                ..Default::default()
            },
            SipMediaConfig {
                encryption: enc(SipMediaEncryption::SipMediaEncryptRequire),
                ..Default::default()
            },
        ),
        (
            SipMediaConfig::default(),
            SipMediaConfig {
                encryption: enc(SipMediaEncryption::SipMediaEncryptDisable),
                ..Default::default()
            },
            SipMediaConfig {
                encryption: enc(SipMediaEncryption::SipMediaEncryptDisable),
                ..Default::default()
            },
        ),
        // media_timeout inherited when unset or zero
        (
            SipMediaConfig {
                media_timeout: Some(secs(20)),
                ..Default::default()
            },
            SipMediaConfig {
                media_timeout: Some(secs(0)),
                ..Default::default()
            },
            SipMediaConfig {
                media_timeout: Some(secs(20)),
                ..Default::default()
            },
        ),
        (
            SipMediaConfig {
                media_timeout: Some(secs(20)),
                ..Default::default()
            },
            SipMediaConfig {
                media_timeout: Some(secs(5)),
                ..Default::default()
            },
            SipMediaConfig {
                media_timeout: Some(secs(5)),
                ..Default::default()
            },
        ),
    ];
    for (base, over, want) in cases {
        assert_eq!(merge_media(&base, &over), want, "{base:?} + {over:?}");
    }
}

#[test]
#[allow(deprecated)]
fn trunk_and_rule_media_reach_the_result() {
    let mut t = wild_trunk();
    t.media_encryption = SipMediaEncryption::SipMediaEncryptRequire as i32;
    t.media = Some(SipMediaConfig {
        codecs: vec![SipCodec {
            name: "G722".into(),
            rate: 0,
        }],
        ..Default::default()
    });
    let mut rule = direct("SDR_a", "room", "");
    rule.krisp_enabled = true;
    rule.media = Some(SipMediaConfig {
        media_timeout: Some(pbjson_types_duration(9)),
        ..Default::default()
    });
    let idx = index(vec![t], vec![rule]);
    let r = accept(&idx, &call("+1", "+2", "1.1.1.1"));
    assert_eq!(r.media.codecs[0].name, "G722");
    assert_eq!(
        r.media.encryption,
        Some(SipMediaEncryption::SipMediaEncryptRequire as i32)
    );
    assert_eq!(r.media.media_timeout.map(|d| d.seconds), Some(9));
    assert_eq!(r.enabled_features, vec![SipFeature::KrispEnabled]);
}

fn pbjson_types_duration(seconds: i64) -> pbjson_types::Duration {
    pbjson_types::Duration { seconds, nanos: 0 }
}

#[test]
fn errors_at_dispatch_are_failed_precondition() {
    let idx = index(vec![wild_trunk()], vec![]);
    let mut rng = counting_rng();
    let report = idx.route(&call("+1", "+2", "1.1.1.1"), &mut rng);
    let err = report.dispatch.unwrap().result.unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition);
}

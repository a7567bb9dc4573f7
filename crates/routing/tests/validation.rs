//! Create/update validation and conflict detection (reference §2.3), table-driven.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers, not only #[test] fns

mod common;

use std::collections::HashMap;

use common::*;
use switchboard_routing::livekit_protocol::{
    update_sip_dispatch_rule_request, update_sip_inbound_trunk_request,
    update_sip_outbound_trunk_request, CreateSipDispatchRuleRequest, ListUpdate, SipCodec,
    SipDispatchRule, SipDispatchRuleInfo, SipDispatchRuleUpdate, SipInboundTrunkInfo,
    SipInboundTrunkUpdate, SipMediaConfig, SipOutboundTrunkInfo, SipOutboundTrunkUpdate,
};
use switchboard_routing::*;

fn outbound(address: &str, numbers: &[&str]) -> SipOutboundTrunkInfo {
    SipOutboundTrunkInfo {
        address: address.into(),
        numbers: strings(numbers),
        ..Default::default()
    }
}

#[test]
fn inbound_trunk_validation_table() {
    let unprotected = "for security, one of the fields must be set: AuthUsername+AuthPassword, AllowedAddresses or Numbers";
    let media = |name: &str, timeout: Option<i64>| SipMediaConfig {
        codecs: vec![SipCodec {
            name: name.into(),
            rate: 0,
        }],
        media_timeout: timeout.map(|seconds| pbjson_types::Duration { seconds, nanos: 0 }),
        ..Default::default()
    };
    let cases: Vec<(&str, SipInboundTrunkInfo, Result<(), &str>)> = vec![
        ("nothing set", trunk("", &[]), Err(unprotected)),
        ("numbers", trunk("", &["+1"]), Ok(())),
        (
            "auth user only counts",
            with_auth(trunk("", &[]), "u", ""),
            Ok(()),
        ),
        (
            "auth password only counts",
            with_auth(trunk("", &[]), "", "p"),
            Ok(()),
        ),
        (
            "addresses",
            with_addresses(trunk("", &[]), &["10.0.0.0/8"]),
            Ok(()),
        ),
        (
            "allowed numbers alone are not enough",
            with_allowed_numbers(trunk("", &[]), &["+1"]),
            Err(unprotected),
        ),
        (
            "malformed address",
            with_addresses(trunk("", &[]), &["1.2.3.4:5060"]),
            Err("invalid allowed address \"1.2.3.4:5060\": must be an IP or a CIDR"),
        ),
        (
            "host name address",
            with_addresses(trunk("", &[]), &["carrier.example.net"]),
            Err("allowed address \"carrier.example.net\": host names are not accepted, the From host proves nothing about where a call comes from; give the carrier's IP addresses or CIDR ranges"),
        ),
        (
            "codec with slash",
            SipInboundTrunkInfo {
                media: Some(media("PCMU/8000", None)),
                ..trunk("", &["+1"])
            },
            Err("invalid codec name \"PCMU/8000\": must be non-empty, without whitespace or '/'"),
        ),
        (
            "codec empty",
            SipInboundTrunkInfo {
                media: Some(media("", None)),
                ..trunk("", &["+1"])
            },
            Err("invalid codec name \"\": must be non-empty, without whitespace or '/'"),
        ),
        (
            "media timeout 10m ok",
            SipInboundTrunkInfo {
                media: Some(media("PCMU", Some(600))),
                ..trunk("", &["+1"])
            },
            Ok(()),
        ),
        (
            "media timeout too long",
            SipInboundTrunkInfo {
                media: Some(media("PCMU", Some(601))),
                ..trunk("", &["+1"])
            },
            Err("media timeout must be between 0 and 10m"),
        ),
        (
            "media timeout negative",
            SipInboundTrunkInfo {
                media: Some(media("PCMU", Some(-1))),
                ..trunk("", &["+1"])
            },
            Err("media timeout must be between 0 and 10m"),
        ),
        (
            "forbidden header",
            SipInboundTrunkInfo {
                headers: HashMap::from([("Call-ID".into(), "x".into())]),
                ..trunk("", &["+1"])
            },
            Err("header \"Call-ID\" is not allowed to be set"),
        ),
        (
            "forbidden compact header",
            SipInboundTrunkInfo {
                headers: HashMap::from([("m".into(), "x".into())]),
                ..trunk("", &["+1"])
            },
            Err("header \"m\" is not allowed to be set"),
        ),
        (
            "X header ok",
            SipInboundTrunkInfo {
                headers: HashMap::from([("X-Ok".into(), "v".into())]),
                ..trunk("", &["+1"])
            },
            Ok(()),
        ),
        (
            "bad header name",
            SipInboundTrunkInfo {
                headers: HashMap::from([("X Bad".into(), "v".into())]),
                ..trunk("", &["+1"])
            },
            Err("invalid header name \"X Bad\""),
        ),
        (
            "control char in value",
            SipInboundTrunkInfo {
                headers: HashMap::from([("X-A".into(), "a\r\nB: c".into())]),
                ..trunk("", &["+1"])
            },
            Err("invalid value for header \"X-A\""),
        ),
        (
            "headers_to_attributes key checked",
            SipInboundTrunkInfo {
                headers_to_attributes: HashMap::from([("X:y".into(), "a".into())]),
                ..trunk("", &["+1"])
            },
            Err("invalid header name \"X:y\""),
        ),
        (
            "headers_to_attributes may name From",
            SipInboundTrunkInfo {
                headers_to_attributes: HashMap::from([("From".into(), "a".into())]),
                ..trunk("", &["+1"])
            },
            Ok(()),
        ),
        (
            "attributes_to_headers value checked",
            SipInboundTrunkInfo {
                attributes_to_headers: HashMap::from([("a".into(), "".into())]),
                ..trunk("", &["+1"])
            },
            Err("invalid header name \"\""),
        ),
    ];
    for (name, t, want) in cases {
        let got = validate_inbound_trunk(&t).map_err(|e| {
            assert_eq!(e.code(), ErrorCode::InvalidArgument, "{name}");
            e.to_string()
        });
        assert_eq!(got, want.map_err(str::to_owned), "{name}");
    }
}

#[test]
fn to_and_via_headers_are_allowed_with_a_warning() {
    let headers = HashMap::from([
        ("To".to_string(), "<sip:a@b>".to_string()),
        ("X-A".to_string(), "1".to_string()),
    ]);
    assert!(validate_headers(&headers).is_ok());
    assert_eq!(
        header_warnings(&headers),
        vec!["header \"To\" overrides a routing header".to_string()]
    );
}

#[test]
fn outbound_trunk_validation_table() {
    let cases: Vec<(&str, SipOutboundTrunkInfo, Result<(), &str>)> = vec![
        ("ok", outbound("sip.telnyx.com", &["+1"]), Ok(())),
        ("ok with port", outbound("10.0.0.1:5080", &["+1"]), Ok(())),
        (
            "no numbers",
            outbound("sip.telnyx.com", &[]),
            Err("no trunk numbers specified"),
        ),
        (
            "no address",
            outbound("", &["+1"]),
            Err("no outbound address specified"),
        ),
        (
            "transport param",
            outbound("sip.telnyx.com;transport=tcp", &["+1"]),
            Err("trunk transport should be set as a field, not a URI parameter"),
        ),
        (
            "sip uri",
            outbound("sip:sip.telnyx.com", &["+1"]),
            Err("trunk address should be a hostname or IP, not SIP URI"),
        ),
        (
            "sips uri",
            outbound("sips:sip.telnyx.com", &["+1"]),
            Err("trunk address should be a hostname or IP, not SIP URI"),
        ),
        (
            "user part",
            outbound("me@sip.telnyx.com", &["+1"]),
            Err("trunk address should be a hostname or IP, not SIP URI"),
        ),
        (
            "from host uri",
            SipOutboundTrunkInfo {
                from_host: "sip:x.example.com".into(),
                ..outbound("a.example.com", &["+1"])
            },
            Err("trunk from host should be a hostname or IP, not SIP URI"),
        ),
        (
            "forbidden header",
            SipOutboundTrunkInfo {
                headers: HashMap::from([("CSeq".into(), "1".into())]),
                ..outbound("a.example.com", &["+1"])
            },
            Err("header \"CSeq\" is not allowed to be set"),
        ),
    ];
    for (name, t, want) in cases {
        assert_eq!(
            validate_outbound_trunk(&t).map_err(|e| e.to_string()),
            want.map_err(str::to_owned),
            "{name}"
        );
    }
}

#[test]
fn dispatch_rule_validation_and_create() {
    let no_rule = SipDispatchRuleInfo::default();
    assert_eq!(
        validate_dispatch_rule(&no_rule).unwrap_err().to_string(),
        "missing rule"
    );
    let empty_oneof = SipDispatchRuleInfo {
        rule: Some(SipDispatchRule { rule: None }),
        ..Default::default()
    };
    assert_eq!(
        validate_dispatch_rule(&empty_oneof)
            .unwrap_err()
            .to_string(),
        "missing rule"
    );
    assert_eq!(
        prepare_dispatch_rule_create(direct("SDR_x", "r", ""))
            .unwrap_err()
            .to_string(),
        "rule id must not be set"
    );
    assert!(prepare_dispatch_rule_create(direct("", "r", "")).is_ok());
    assert_eq!(
        prepare_inbound_trunk_create(trunk("ST_x", &["+1"]))
            .unwrap_err()
            .to_string(),
        "trunk id must not be set"
    );
}

#[test]
#[allow(deprecated)]
fn legacy_dispatch_rule_create_fields_are_used_when_dispatch_rule_is_absent() {
    let legacy = CreateSipDispatchRuleRequest {
        rule: direct("", "room", "").rule,
        trunk_ids: strings(&["ST_a"]),
        hide_phone_number: true,
        inbound_numbers: strings(&["+1"]),
        name: "legacy".into(),
        metadata: "m".into(),
        attributes: HashMap::from([("k".into(), "v".into())]),
        ..Default::default()
    };
    let rule = dispatch_rule_from_create_request(legacy);
    assert_eq!(rule.trunk_ids, strings(&["ST_a"]));
    assert!(rule.hide_phone_number);
    assert_eq!(rule.inbound_numbers, strings(&["+1"]));
    assert_eq!(
        (rule.name.as_str(), rule.metadata.as_str()),
        ("legacy", "m")
    );
    assert_eq!(rule.attributes["k"], "v");
    assert_eq!(rule_room(&rule), "room");

    let modern = CreateSipDispatchRuleRequest {
        dispatch_rule: Some(direct("", "new-room", "")),
        name: "ignored".into(),
        ..Default::default()
    };
    let rule = dispatch_rule_from_create_request(modern);
    assert_eq!((rule_room(&rule), rule.name.as_str()), ("new-room", ""));
}

#[test]
fn inbound_trunk_conflict_table() {
    // (name, stored, candidate, expected error text)
    let cases: Vec<(
        &str,
        Vec<SipInboundTrunkInfo>,
        SipInboundTrunkInfo,
        Option<&str>,
    )> = vec![
        (
            "same number",
            vec![trunk("ST_a", &["+1555"])],
            trunk("", &["+1555"]),
            Some(
                r#"Conflicting inbound SIP Trunks: "<new>" and "ST_a", using the same number(s) ["+1555"] without AllowedNumbers set"#,
            ),
        ),
        (
            "same number other spelling",
            vec![trunk("ST_a", &["+1555"])],
            trunk("", &["1 555"]),
            Some(
                r#"Conflicting inbound SIP Trunks: "<new>" and "ST_a", using the same number(s) ["1 555"] without AllowedNumbers set"#,
            ),
        ),
        (
            "two wildcards",
            vec![with_auth(trunk("ST_a", &[]), "u", "p")],
            with_auth(trunk("", &[]), "v", "q"),
            Some(
                r#"Conflicting inbound SIP Trunks: "<new>" and "ST_a", using the same number(s) <any> without AllowedNumbers set"#,
            ),
        ),
        (
            "same number same caller",
            vec![with_allowed_numbers(trunk("ST_a", &["+1555"]), &["+1999"])],
            with_allowed_numbers(trunk("", &["+1555", "+1666"]), &["1999"]),
            Some(
                r#"Conflicting inbound SIP Trunks: "<new>" and "ST_a", using the same number(s) ["+1555" "+1666"] and AllowedNumber "1999""#,
            ),
        ),
        (
            "disjoint callers are fine",
            vec![with_allowed_numbers(trunk("ST_a", &["+1555"]), &["+1888"])],
            with_allowed_numbers(trunk("", &["+1555"]), &["+1999"]),
            None,
        ),
        (
            "different numbers are fine",
            vec![trunk("ST_a", &["+1555"])],
            trunk("", &["+1556"]),
            None,
        ),
        (
            "addresses do not separate trunks",
            vec![with_addresses(trunk("ST_a", &["+1555"]), &["1.1.1.1"])],
            with_addresses(trunk("", &["+1555"]), &["2.2.2.2"]),
            Some(
                r#"Conflicting inbound SIP Trunks: "<new>" and "ST_a", using the same number(s) ["+1555"] without AllowedNumbers set"#,
            ),
        ),
        (
            "LiveKit gap: any caller vs one caller passes",
            vec![trunk("ST_a", &["+1555"])],
            with_allowed_numbers(trunk("", &["+1555"]), &["+1999"]),
            None,
        ),
        (
            "updating a trunk does not conflict with itself",
            vec![trunk("ST_a", &["+1555"])],
            trunk("ST_a", &["+1555", "+1666"]),
            None,
        ),
        (
            "update: the later ID is named first",
            vec![trunk("ST_b", &["+1555"])],
            trunk("ST_a", &["+1555"]),
            Some(
                r#"Conflicting inbound SIP Trunks: "ST_b" and "ST_a", using the same number(s) ["+1555"] without AllowedNumbers set"#,
            ),
        ),
        (
            "update: candidate later",
            vec![trunk("ST_a", &["+1555"])],
            trunk("ST_b", &["+1555"]),
            Some(
                r#"Conflicting inbound SIP Trunks: "ST_b" and "ST_a", using the same number(s) ["+1555"] without AllowedNumbers set"#,
            ),
        ),
        (
            "conflicts among stored trunks do not block",
            vec![trunk("ST_a", &["+1"]), trunk("ST_b", &["+1"])],
            trunk("", &["+2"]),
            None,
        ),
    ];
    for (name, stored, candidate, want) in cases {
        let got = check_inbound_trunk_conflicts(&stored, &candidate);
        match (got, want) {
            (Ok(()), None) => {}
            (Err(e), Some(text)) => {
                assert_eq!(e.to_string(), text, "{name}");
                assert_eq!(e.code(), ErrorCode::InvalidArgument, "{name}");
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn dispatch_rule_conflict_table() {
    let named = |mut r: SipDispatchRuleInfo, n: &str| {
        r.name = n.into();
        r
    };
    let exists = |id: &str, name: &str| {
        format!("Dispatch rule for the same trunk, inbound number, number, and PIN combination already exists in dispatch rule \"{id}\" \"{name}\"")
    };
    let cases: Vec<(
        &str,
        Vec<SipDispatchRuleInfo>,
        SipDispatchRuleInfo,
        Option<String>,
    )> = vec![
        (
            "two open wildcard rules",
            vec![direct("SDR_a", "r", "")],
            direct("", "r2", ""),
            Some(exists("SDR_a", "<blank name>")),
        ),
        (
            "kind is not part of the key",
            vec![named(direct("SDR_a", "r", ""), "main")],
            individual("", "p", "", false),
            Some(exists("SDR_a", "main")),
        ),
        (
            "different PIN",
            vec![direct("SDR_a", "r", "1")],
            direct("", "r", "2"),
            None,
        ),
        (
            "different trunks",
            vec![for_trunks(direct("SDR_a", "r", ""), &["ST_1"])],
            for_trunks(direct("", "r", ""), &["ST_2"]),
            None,
        ),
        (
            "overlapping trunks",
            vec![for_trunks(direct("SDR_a", "r", ""), &["ST_1", "ST_2"])],
            for_trunks(direct("", "r", ""), &["ST_2"]),
            Some(exists("SDR_a", "<blank name>")),
        ),
        (
            "trunk rule vs wildcard rule",
            vec![for_trunks(direct("SDR_a", "r", ""), &["ST_1"])],
            direct("", "r", ""),
            None,
        ),
        (
            "caller numbers normalised",
            vec![from_numbers(direct("SDR_a", "r", ""), &["+1555"])],
            from_numbers(direct("", "r", ""), &["1555"]),
            Some(exists("SDR_a", "<blank name>")),
        ),
        (
            "called numbers normalised",
            vec![to_numbers(direct("SDR_a", "r", ""), &["+1 555"])],
            to_numbers(direct("", "r", ""), &["+1555"]),
            Some(exists("SDR_a", "<blank name>")),
        ),
        (
            "specific caller vs any caller",
            vec![from_numbers(direct("SDR_a", "r", ""), &["+1555"])],
            direct("", "r", ""),
            None,
        ),
        (
            "update does not conflict with itself",
            vec![direct("SDR_a", "r", "")],
            direct("SDR_a", "r2", ""),
            None,
        ),
    ];
    for (name, stored, candidate, want) in cases {
        let got = check_dispatch_rule_conflicts(&stored, &candidate).map_err(|e| e.to_string());
        assert_eq!(got, want.map_or(Ok(()), Err), "{name}");
    }
}

fn lu_add(items: &[&str]) -> Option<ListUpdate> {
    Some(ListUpdate {
        add: strings(items),
        ..Default::default()
    })
}

#[test]
fn inbound_trunk_update_actions() {
    use update_sip_inbound_trunk_request::Action;
    let stored = SipInboundTrunkInfo {
        name: "old".into(),
        auth_password: "secret".into(),
        ..trunk("ST_a", &["+1"])
    };
    let update = Action::Update(SipInboundTrunkUpdate {
        numbers: Some(ListUpdate {
            remove: strings(&["+1"]),
            add: strings(&["+2"]),
            ..Default::default()
        }),
        allowed_numbers: lu_add(&["+9"]),
        name: Some("new".into()),
        ..Default::default()
    });
    let next = apply_inbound_trunk_action("ST_a", &stored, &update).unwrap();
    assert_eq!(next.numbers, strings(&["+2"]));
    assert_eq!(next.allowed_numbers, strings(&["+9"]));
    assert_eq!(next.name, "new");
    assert_eq!(
        next.auth_password, "secret",
        "absent optional fields are kept"
    );

    // Removing the only protection fails validation after the update.
    let strip = Action::Update(SipInboundTrunkUpdate {
        numbers: Some(ListUpdate {
            clear: true,
            ..Default::default()
        }),
        auth_password: Some(String::new()),
        ..Default::default()
    });
    assert_eq!(
        apply_inbound_trunk_action("ST_a", &stored, &strip).unwrap_err(),
        RoutingError::InboundTrunkUnprotected
    );

    let bad_list = Action::Update(SipInboundTrunkUpdate {
        numbers: Some(ListUpdate::default()),
        ..Default::default()
    });
    assert_eq!(
        apply_inbound_trunk_action("ST_a", &stored, &bad_list)
            .unwrap_err()
            .to_string(),
        "unsupported list update operation"
    );

    let replace = Action::Replace(trunk("", &["+5"]));
    let next = apply_inbound_trunk_action("ST_a", &stored, &replace).unwrap();
    assert_eq!(
        (next.sip_trunk_id.as_str(), next.name.as_str()),
        ("ST_a", "")
    );
    let wrong = Action::Replace(trunk("ST_b", &["+5"]));
    assert_eq!(
        apply_inbound_trunk_action("ST_a", &stored, &wrong)
            .unwrap_err()
            .to_string(),
        "trunk id in the info must be empty or match the id in the update"
    );
    assert_eq!(
        check_update_request("", ObjectKind::Trunk, true)
            .unwrap_err()
            .to_string(),
        "trunk id must be set"
    );
    assert_eq!(
        check_update_request("", ObjectKind::DispatchRule, true)
            .unwrap_err()
            .to_string(),
        "rule id must be set"
    );
    assert_eq!(
        check_update_request("ST_a", ObjectKind::Trunk, false)
            .unwrap_err()
            .to_string(),
        "missing or unsupported update action"
    );
    assert_eq!(
        RoutingError::NotFound(ObjectKind::Trunk).to_string(),
        "requested sip trunk does not exist"
    );
    assert_eq!(
        RoutingError::NotFound(ObjectKind::DispatchRule).to_string(),
        "requested sip dispatch rule does not exist"
    );
    assert_eq!(
        RoutingError::NotFound(ObjectKind::Trunk).code(),
        ErrorCode::NotFound
    );
}

#[test]
fn outbound_trunk_update_actions() {
    use update_sip_outbound_trunk_request::Action;
    let stored = outbound("a.example.com", &["+1"]);
    let next = apply_outbound_trunk_action(
        "ST_o",
        &stored,
        &Action::Update(SipOutboundTrunkUpdate {
            address: Some("b.example.com".into()),
            numbers: Some(ListUpdate {
                set: strings(&["+7", "+8"]),
                ..Default::default()
            }),
            transport: Some(2),
            ..Default::default()
        }),
    )
    .unwrap();
    assert_eq!(
        (
            next.address.as_str(),
            next.transport,
            next.sip_trunk_id.as_str()
        ),
        ("b.example.com", 2, "ST_o")
    );
    assert_eq!(next.numbers, strings(&["+7", "+8"]));
    let err = apply_outbound_trunk_action(
        "ST_o",
        &stored,
        &Action::Update(SipOutboundTrunkUpdate {
            address: Some("sip:b.example.com".into()),
            ..Default::default()
        }),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "trunk address should be a hostname or IP, not SIP URI"
    );
    assert_eq!(
        err.code(),
        ErrorCode::InvalidArgument,
        "update validation is invalid_argument, not unknown"
    );
}

#[test]
fn dispatch_rule_update_actions() {
    use update_sip_dispatch_rule_request::Action;
    let mut stored = for_trunks(direct("SDR_a", "r", ""), &["ST_1"]);
    stored.attributes = HashMap::from([("keep".into(), "1".into()), ("drop".into(), "2".into())]);
    let next = apply_dispatch_rule_action(
        "SDR_a",
        &stored,
        &Action::Update(SipDispatchRuleUpdate {
            trunk_ids: lu_add(&["ST_2"]),
            rule: callee("", "pre", "", false).rule,
            metadata: Some("md".into()),
            attributes: HashMap::from([("drop".into(), String::new()), ("new".into(), "3".into())]),
            ..Default::default()
        }),
    )
    .unwrap();
    assert_eq!(next.trunk_ids, strings(&["ST_1", "ST_2"]));
    assert_eq!(rule_room(&next), "pre");
    assert_eq!(next.metadata, "md");
    assert_eq!(
        next.attributes,
        HashMap::from([
            ("keep".to_string(), "1".to_string()),
            ("new".to_string(), "3".to_string())
        ])
    );
    let err =
        apply_dispatch_rule_action("SDR_a", &stored, &Action::Replace(direct("SDR_b", "r", "")))
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "rule id in the info must be empty or match the id in the update"
    );
    let err = apply_dispatch_rule_action(
        "SDR_a",
        &stored,
        &Action::Replace(SipDispatchRuleInfo::default()),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "missing rule");
}

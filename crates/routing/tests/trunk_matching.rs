//! Inbound trunk matching (reference §2.2), table-driven.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers, not only #[test] fns

mod common;

use common::*;
use switchboard_routing::livekit_protocol::SipInboundTrunkInfo;
use switchboard_routing::{
    CallInput, ErrorCode, ObjectKind, PassOverReason, RoutingIndex, RoutingOptions, TrunkMatchKind,
};

enum Want {
    Trunk(&'static str, TrunkMatchKind),
    Unmatched,
    Error(&'static str, ErrorCode),
}

struct Case {
    name: &'static str,
    trunks: Vec<SipInboundTrunkInfo>,
    call: CallInput,
    allow_unmatched: bool,
    want: Want,
}

fn case(name: &'static str, trunks: Vec<SipInboundTrunkInfo>, call: CallInput, want: Want) -> Case {
    Case {
        name,
        trunks,
        call,
        allow_unmatched: false,
        want,
    }
}

#[test]
fn trunk_matching_table() {
    use TrunkMatchKind::*;
    let cases = vec![
        case(
            "specific number",
            vec![trunk("ST_a", &["+15550100"])],
            call("+1999", "+15550100", "1.1.1.1"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "called number without plus matches",
            vec![trunk("ST_a", &["+15550100"])],
            call("+1999", "15550100", "1.1.1.1"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "trunk number without plus matches",
            vec![trunk("ST_a", &["15550100"])],
            call("+1999", "+15550100", "1.1.1.1"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "formatted trunk number matches",
            vec![trunk("ST_a", &["(555) 0100"])],
            call("+1999", "+5550100", "1.1.1.1"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "SIP user number matches exactly",
            vec![trunk("ST_a", &["reception"])],
            call("+1999", "reception", "1.1.1.1"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "other number: refused",
            vec![trunk("ST_a", &["+15550100"])],
            call("+1999", "+15550199", "1.1.1.1"),
            Want::Error(
                "No SIP Trunk matched for \"+15550199\"",
                ErrorCode::FailedPrecondition,
            ),
        ),
        case(
            "no trunks at all: refused",
            vec![],
            call("+1999", "+15550199", "1.1.1.1"),
            Want::Error(
                "No SIP Trunk matched for \"+15550199\"",
                ErrorCode::FailedPrecondition,
            ),
        ),
        Case {
            name: "no trunk but unmatched allowed",
            trunks: vec![trunk("ST_a", &["+1"])],
            call: call("+1999", "+2", "1.1.1.1"),
            allow_unmatched: true,
            want: Want::Unmatched,
        },
        case(
            "wildcard trunk",
            vec![with_auth(trunk("ST_w", &[]), "u", "p")],
            call("+1999", "+15550100", "1.1.1.1"),
            Want::Trunk("ST_w", Default),
        ),
        case(
            "specific beats wildcard",
            vec![
                trunk("ST_a", &["+15550100"]),
                with_auth(trunk("ST_w", &[]), "u", "p"),
            ],
            call("+1999", "+15550100", "1.1.1.1"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "wildcard when specific is for another number",
            vec![
                trunk("ST_a", &["+15550100"]),
                with_auth(trunk("ST_w", &[]), "u", "p"),
            ],
            call("+1999", "+15550111", "1.1.1.1"),
            Want::Trunk("ST_w", Default),
        ),
        case(
            "two specific: error",
            vec![trunk("ST_a", &["+15550100"]), trunk("ST_b", &["15550100"])],
            call("+1999", "+15550100", "1.1.1.1"),
            Want::Error(
                "Multiple SIP Trunks matched for \"+15550100\"",
                ErrorCode::FailedPrecondition,
            ),
        ),
        case(
            "one trunk listing the number twice counts once",
            vec![trunk("ST_a", &["+15550100", "15550100"])],
            call("+1999", "+15550100", "1.1.1.1"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "two default: error",
            vec![
                with_auth(trunk("ST_v", &[]), "u", "p"),
                with_auth(trunk("ST_w", &[]), "u2", "p2"),
            ],
            call("+1999", "+15550100", "1.1.1.1"),
            Want::Error(
                "Multiple default SIP Trunks matched for \"+15550100\"",
                ErrorCode::FailedPrecondition,
            ),
        ),
        case(
            "allowed caller",
            vec![with_allowed_numbers(trunk("ST_a", &["+1555"]), &["+1999"])],
            call("+1999", "+1555", "1.1.1.1"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "allowed caller normalised",
            vec![with_allowed_numbers(trunk("ST_a", &["+1555"]), &["1 999"])],
            call("+1999", "+1555", "1.1.1.1"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "caller not allowed",
            vec![with_allowed_numbers(trunk("ST_a", &["+1555"]), &["+1888"])],
            call("+1999", "+1555", "1.1.1.1"),
            Want::Error(
                "No SIP Trunk matched for \"+1555\"",
                ErrorCode::FailedPrecondition,
            ),
        ),
        case(
            "disjoint allowed callers pick the right trunk",
            vec![
                with_allowed_numbers(trunk("ST_a", &["+1555"]), &["+1888"]),
                with_allowed_numbers(trunk("ST_b", &["+1555"]), &["+1999"]),
            ],
            call("+1999", "+1555", "1.1.1.1"),
            Want::Trunk("ST_b", Specific),
        ),
        // Deliberate difference: LiveKit accepts this pair at creation, then
        // refuses every call from the listed caller as ambiguous.
        case(
            "listed caller beats any caller on one number",
            vec![
                trunk("ST_a", &["+1555"]),
                with_allowed_numbers(trunk("ST_b", &["+1555"]), &["+1999"]),
            ],
            call("+1999", "+1555", "1.1.1.1"),
            Want::Trunk("ST_b", Specific),
        ),
        case(
            "any-caller trunk still takes other callers",
            vec![
                trunk("ST_a", &["+1555"]),
                with_allowed_numbers(trunk("ST_b", &["+1555"]), &["+1999"]),
            ],
            call("+1888", "+1555", "1.1.1.1"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "listed caller beats any caller among wildcards",
            vec![
                with_auth(trunk("ST_v", &[]), "u", "p"),
                with_allowed_numbers(with_auth(trunk("ST_w", &[]), "u2", "p2"), &["+1999"]),
            ],
            call("+1999", "+1555", "1.1.1.1"),
            Want::Trunk("ST_w", Default),
        ),
        case(
            "two trunks listing the caller stay ambiguous",
            vec![
                with_allowed_numbers(trunk("ST_a", &["+1555"]), &["+1999"]),
                with_allowed_numbers(trunk("ST_b", &["+1555"]), &["1999"]),
            ],
            call("+1999", "+1555", "1.1.1.1"),
            Want::Error(
                "Multiple SIP Trunks matched for \"+1555\"",
                ErrorCode::FailedPrecondition,
            ),
        ),
        case(
            "source IP allowed",
            vec![with_addresses(trunk("ST_a", &[]), &["10.0.0.5"])],
            call("+1", "+2", "10.0.0.5"),
            Want::Trunk("ST_a", Default),
        ),
        case(
            "source CIDR allowed",
            vec![with_addresses(trunk("ST_a", &["+2"]), &["10.0.0.0/24"])],
            call("+1", "+2", "10.0.0.77"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "source outside CIDR",
            vec![with_addresses(trunk("ST_a", &["+2"]), &["10.0.0.0/24"])],
            call("+1", "+2", "10.0.1.1"),
            Want::Error(
                "No SIP Trunk matched for \"+2\"",
                ErrorCode::FailedPrecondition,
            ),
        ),
        case(
            "a stored host name never matches, whatever the From host says",
            vec![with_addresses(
                trunk("ST_a", &["+2"]),
                &["carrier.example.net"],
            )],
            call("+1", "+2", "8.8.8.8"),
            Want::Error(
                "No SIP Trunk matched for \"+2\"",
                ErrorCode::FailedPrecondition,
            ),
        ),
        case(
            "IPv6 source in bracketed prefix",
            vec![with_addresses(trunk("ST_a", &["+2"]), &["[2001:db8::]/32"])],
            call("+1", "+2", "2001:db8::9"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "address filter picks among wildcard trunks",
            vec![
                with_addresses(trunk("ST_v", &[]), &["10.0.0.1"]),
                with_addresses(trunk("ST_w", &[]), &["10.0.0.2"]),
            ],
            call("+1", "+2", "10.0.0.2"),
            Want::Trunk("ST_w", Default),
        ),
        // National forms of E.164 trunk numbers (carriers that send the
        // called number as dialled in the country).
        case(
            "UK national called number matches the E.164 trunk number",
            vec![trunk("ST_a", &["+442079460000"])],
            call("+1999", "02079460000", "1.1.1.1"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "US national called number matches the E.164 trunk number",
            vec![trunk("ST_a", &["+12025550123"])],
            call("+1999", "2025550123", "1.1.1.1"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "formatted national called number matches",
            vec![trunk("ST_a", &["+44 20 7946 0000"])],
            call("+1999", "020 7946 0000", "1.1.1.1"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "E.164 digits without plus match (normalisation adds it)",
            vec![trunk("ST_a", &["+442079460000"])],
            call("+1999", "442079460000", "1.1.1.1"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "trunk number without plus has its national form too",
            vec![trunk("ST_a", &["12025550123"])],
            call("+1999", "(202) 555-0123", "1.1.1.1"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "an exact match beats a national form",
            vec![
                trunk("ST_a", &["+12025550123"]),
                trunk("ST_b", &["2025550123"]),
            ],
            call("+1999", "2025550123", "1.1.1.1"),
            Want::Trunk("ST_b", Specific),
        ),
        case(
            "a national form beats a wildcard trunk",
            vec![
                trunk("ST_a", &["+442079460000"]),
                with_auth(trunk("ST_w", &[]), "u", "p"),
            ],
            call("+1999", "02079460000", "1.1.1.1"),
            Want::Trunk("ST_a", Specific),
        ),
        case(
            "a leading plus is never a national form",
            vec![trunk("ST_a", &["+12025550123"])],
            call("+1999", "+2025550123", "1.1.1.1"),
            Want::Error(
                "No SIP Trunk matched for \"+2025550123\"",
                ErrorCode::FailedPrecondition,
            ),
        ),
        case(
            "another number's national form: refused",
            vec![trunk("ST_a", &["+442079460000"])],
            call("+1999", "02079460001", "1.1.1.1"),
            Want::Error(
                "No SIP Trunk matched for \"02079460001\"",
                ErrorCode::FailedPrecondition,
            ),
        ),
        case(
            "a national form keeps the trunk's caller rules",
            vec![
                with_allowed_numbers(trunk("ST_a", &["+442079460000"]), &["+1888"]),
                with_allowed_numbers(trunk("ST_b", &["+442079460000"]), &["+1999"]),
            ],
            call("+1999", "02079460000", "1.1.1.1"),
            Want::Trunk("ST_b", Specific),
        ),
        // Rome's 06 1234 5678 and the French mobile 06 12 34 56 78.
        case(
            "a national form two numbers share matches neither",
            vec![
                trunk("ST_it", &["+390612345678"]),
                trunk("ST_fr", &["+33612345678"]),
                with_auth(trunk("ST_w", &[]), "u", "p"),
            ],
            call("+1999", "0612345678", "1.1.1.1"),
            Want::Trunk("ST_w", Default),
        ),
    ];
    for c in cases {
        let options = RoutingOptions {
            allow_unmatched_calls: c.allow_unmatched,
        };
        let index = RoutingIndex::new(c.trunks, Vec::new(), options);
        for (mode, report) in [
            ("fast", index.match_trunk(&c.call)),
            ("explained", index.match_trunk_explained(&c.call)),
        ] {
            match (&c.want, &report.result) {
                (Want::Trunk(id, kind), Ok(m)) => {
                    assert_eq!(m.trunk_id(), *id, "{} ({mode})", c.name);
                    assert_eq!(m.kind, *kind, "{} ({mode})", c.name);
                }
                (Want::Unmatched, Ok(m)) => {
                    assert!(m.trunk.is_none(), "{} ({mode})", c.name);
                    assert_eq!(m.kind, TrunkMatchKind::Unmatched, "{} ({mode})", c.name);
                }
                (Want::Error(text, code), Err(e)) => {
                    assert_eq!(e.to_string(), *text, "{} ({mode})", c.name);
                    assert_eq!(e.code(), *code, "{} ({mode})", c.name);
                }
                (_, got) => panic!("{} ({mode}): unexpected {got:?}", c.name),
            }
        }
    }
}

#[test]
fn digest_auth_only_when_both_user_and_password_are_set() {
    let cases = [
        ("u", "s3cr3t", true),
        ("u", "", false),
        ("", "s3cr3t", false),
        ("", "", false),
    ];
    for (user, pass, want) in cases {
        let t = with_addresses(with_auth(trunk("ST_a", &["+2"]), user, pass), &["1.1.1.1"]);
        let index = RoutingIndex::new(vec![t], Vec::new(), RoutingOptions::default());
        let m = index
            .match_trunk(&call("+1", "+2", "1.1.1.1"))
            .result
            .unwrap();
        let auth = m.digest_auth();
        assert_eq!(auth.is_some(), want, "{user:?}/{pass:?}");
        if let Some(auth) = auth {
            assert_eq!(
                (auth.username.as_str(), auth.password.as_str()),
                (user, pass)
            );
            assert!(
                !format!("{auth:?}").contains(pass),
                "Debug must not print the password"
            );
        }
    }
}

#[test]
fn passed_over_trunks_carry_their_reasons() {
    let trunks = vec![
        with_allowed_numbers(trunk("ST_caller", &["+2"]), &["+1888"]),
        with_addresses(trunk("ST_source", &["+2"]), &["10.0.0.0/8"]),
        trunk("ST_other", &["+3"]),
        with_auth(trunk("ST_wild", &[]), "u", "p"),
        trunk("ST_win", &["+2"]),
    ];
    let index = RoutingIndex::new(trunks, Vec::new(), RoutingOptions::default());
    let c = call("+1999", "+2", "192.0.2.1");
    let report = index.match_trunk_explained(&c);
    assert_eq!(report.result.unwrap().trunk_id(), "ST_win");
    let reason = |id: &str| {
        report
            .passed_over
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.reason.clone())
    };
    assert_eq!(
        reason("ST_caller"),
        Some(PassOverReason::CallerNotAllowed {
            caller: "+1999".into()
        })
    );
    assert_eq!(
        reason("ST_source"),
        Some(PassOverReason::SourceNotAllowed {
            source_ip: "192.0.2.1".parse().unwrap(),
            from_host: "carrier.example.net".into()
        })
    );
    assert_eq!(
        reason("ST_other"),
        Some(PassOverReason::CalledNumberNotInTrunk {
            called: "+2".into(),
            request_uri_would_match: None
        })
    );
    assert_eq!(
        reason("ST_wild"),
        Some(PassOverReason::LostToSpecificTrunk {
            winner: "ST_win".into()
        })
    );
    assert!(reason("ST_win").is_none());
    assert!(report
        .passed_over
        .iter()
        .all(|p| p.kind == ObjectKind::Trunk));
    // The fast path does not look at trunks for other numbers.
    let fast = index.match_trunk(&c);
    assert!(fast.passed_over.iter().all(|p| p.id != "ST_other"));
    assert_eq!(
        report
            .passed_over
            .iter()
            .find(|p| p.id == "ST_caller")
            .unwrap()
            .to_string(),
        "trunk ST_caller: caller \"+1999\" not in allowed_numbers"
    );
}

#[test]
fn request_uri_hint_when_the_carrier_puts_the_number_there() {
    let index = RoutingIndex::new(
        vec![trunk("ST_a", &["+15550100"])],
        Vec::new(),
        RoutingOptions::default(),
    );
    let mut c = call("+1999", "livekit", "1.1.1.1");
    c.request_uri_user = "15550100".into();
    let report = index.match_trunk_explained(&c);
    assert!(report.result.is_err());
    let text = report.passed_over[0].to_string();
    assert!(
        text.contains("Request-URI user \"15550100\" would match"),
        "{text}"
    );
}

#[test]
fn missing_source_ip_skips_the_address_check_only() {
    let index = RoutingIndex::new(
        vec![with_addresses(trunk("ST_a", &["+2"]), &["10.0.0.1"])],
        Vec::new(),
        RoutingOptions::default(),
    );
    let mut c = call("+1", "+2", "1.1.1.1");
    assert!(index.match_trunk(&c).result.is_err());
    c.source_ip = None;
    assert_eq!(index.match_trunk(&c).result.unwrap().trunk_id(), "ST_a");
}

#[test]
fn a_trunk_listing_the_number_exactly_hides_national_forms() {
    // ST_a lists the digits as written; it refuses this caller, and the
    // call does not fall through to the trunk whose national form they are.
    let index = RoutingIndex::new(
        vec![
            with_allowed_numbers(trunk("ST_a", &["2025550123"]), &["+1888"]),
            trunk("ST_b", &["+12025550123"]),
        ],
        Vec::new(),
        RoutingOptions::default(),
    );
    let c = call("+1999", "2025550123", "1.1.1.1");
    for report in [index.match_trunk(&c), index.match_trunk_explained(&c)] {
        let error = report.result.unwrap_err();
        assert_eq!(error.to_string(), "No SIP Trunk matched for \"2025550123\"");
    }
}

#[test]
fn request_uri_hint_knows_national_forms() {
    let index = RoutingIndex::new(
        vec![trunk("ST_a", &["+442079460000"])],
        Vec::new(),
        RoutingOptions::default(),
    );
    let mut c = call("+1999", "livekit", "1.1.1.1");
    c.request_uri_user = "02079460000".into();
    let report = index.match_trunk_explained(&c);
    assert!(report.result.is_err());
    assert_eq!(
        report.passed_over[0].reason,
        PassOverReason::CalledNumberNotInTrunk {
            called: "livekit".into(),
            request_uri_would_match: Some("02079460000".into()),
        }
    );
}

#[test]
fn national_forms_follow_the_trunks_of_each_index() {
    // The memo of national forms carries over between builds; a number
    // that left the trunks must not match through it.
    let c = call("+1999", "02079460000", "1.1.1.1");
    let before = RoutingIndex::new(
        vec![trunk("ST_a", &["+442079460000"])],
        Vec::new(),
        RoutingOptions::default(),
    );
    assert_eq!(before.match_trunk(&c).result.unwrap().trunk_id(), "ST_a");
    let after = RoutingIndex::new(
        vec![trunk("ST_a", &["+442079460001"])],
        Vec::new(),
        RoutingOptions::default(),
    );
    assert!(after.match_trunk(&c).result.is_err());
    let c = call("+1999", "02079460001", "1.1.1.1");
    assert_eq!(after.match_trunk(&c).result.unwrap().trunk_id(), "ST_a");
}

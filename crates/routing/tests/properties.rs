//! Property tests: normalisation, conflict detection, and the link between
//! validation and matching.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers, not only #[test] fns

mod common;

use std::collections::HashSet;

use common::*;
use proptest::prelude::*;
use switchboard_routing::livekit_protocol::{SipDispatchRuleInfo, SipInboundTrunkInfo};
use switchboard_routing::*;

/// Different spellings of a few numbers, plus SIP user names.
const NUMBERS: &[&str] = &[
    "+1555", "1555", "+1 555", "(1) 555", "+1666", "1-666", "+1777", "alice", "*77",
];
const CALLERS: &[&str] = &["+1999", "1999", "+1888", "bob"];

fn pick(pool: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(pool.to_vec(), 0..=max)
        .prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

fn arb_trunk() -> impl Strategy<Value = SipInboundTrunkInfo> {
    (pick(NUMBERS, 2), pick(CALLERS, 2)).prop_map(|(numbers, allowed)| SipInboundTrunkInfo {
        numbers,
        allowed_numbers: allowed,
        auth_username: "u".into(),
        auth_password: "p".into(),
        ..Default::default()
    })
}

fn arb_rule() -> impl Strategy<Value = SipDispatchRuleInfo> {
    (
        0..3usize,
        prop_oneof![Just(""), Just("1234")],
        pick(&["ST_a", "ST_b"], 2),
        pick(CALLERS, 1),
        pick(NUMBERS, 1),
    )
        .prop_map(|(kind, pin, trunks, callers, callees)| {
            let r = match kind {
                0 => direct("", "room", pin),
                1 => individual("", "pre", pin, false),
                _ => callee("", "pre", pin, false),
            };
            let trunks: Vec<&str> = trunks.iter().map(String::as_str).collect();
            let callers: Vec<&str> = callers.iter().map(String::as_str).collect();
            let callees: Vec<&str> = callees.iter().map(String::as_str).collect();
            to_numbers(from_numbers(for_trunks(r, &trunks), &callers), &callees)
        })
}

/// Reformats a phone-like number: drops or keeps the plus, adds separators.
fn reformat(number: &str, style: u8) -> String {
    if !number.starts_with('+') && !number.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        return number.to_owned();
    }
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    match style % 4 {
        0 => digits,
        1 => format!("+{digits}"),
        2 => digits
            .chars()
            .map(|c| format!("{c} "))
            .collect::<String>()
            .trim_end()
            .to_owned(),
        _ => format!("({}) {}", &digits[..1], &digits[1..]),
    }
}

/// Accepts trunks one by one as the store would, each checked against the earlier ones.
fn accept_sequentially(candidates: Vec<SipInboundTrunkInfo>) -> Vec<SipInboundTrunkInfo> {
    let mut stored: Vec<SipInboundTrunkInfo> = Vec::new();
    for (i, mut t) in candidates.into_iter().enumerate() {
        if check_inbound_trunk_conflicts(&stored, &t).is_ok() {
            t.sip_trunk_id = format!("ST_{i:03}");
            stored.push(t);
        }
    }
    stored
}

proptest! {
    #[test]
    fn normalisation_is_idempotent(s in "\\PC{0,12}") {
        let once = normalize_number(&s).into_owned();
        prop_assert_eq!(normalize_number(&once), once.as_str());
    }

    #[test]
    fn phone_like_input_keeps_exactly_its_digits(plus in any::<bool>(), body in "[0-9 ()-]{1,16}") {
        let input = if plus { format!("+{body}") } else { body.clone() };
        let digits: String = body.chars().filter(char::is_ascii_digit).collect();
        prop_assert_eq!(normalize_number(&input), format!("+{digits}"));
    }

    #[test]
    fn other_input_is_unchanged(s in "[a-z*#@.]{1}[0-9a-z*#@. +()-]{0,10}") {
        prop_assert_eq!(normalize_number(&s), s.as_str());
    }

    #[test]
    fn formatting_never_changes_equality(digits in "[0-9]{1,12}", a in 0u8..4, b in 0u8..4) {
        let n = format!("+{digits}");
        prop_assert!(numbers_equal(&reformat(&n, a), &reformat(&n, b)));
    }

    #[test]
    fn trunk_conflicts_are_symmetric(a in arb_trunk(), b in arb_trunk()) {
        let a = SipInboundTrunkInfo { sip_trunk_id: "ST_a".into(), ..a };
        let b = SipInboundTrunkInfo { sip_trunk_id: "ST_b".into(), ..b };
        prop_assert_eq!(
            check_inbound_trunk_conflicts([&a], &b).is_err(),
            check_inbound_trunk_conflicts([&b], &a).is_err()
        );
    }

    #[test]
    fn trunk_conflicts_ignore_number_formatting(a in arb_trunk(), b in arb_trunk(), style in 0u8..4) {
        let a = SipInboundTrunkInfo { sip_trunk_id: "ST_a".into(), ..a };
        let mut b2 = b.clone();
        b2.numbers = b.numbers.iter().map(|n| reformat(n, style)).collect();
        b2.allowed_numbers = b.allowed_numbers.iter().map(|n| reformat(n, style)).collect();
        prop_assert_eq!(check_inbound_trunk_conflicts([&a], &b).is_err(), check_inbound_trunk_conflicts([&a], &b2).is_err());
    }

    #[test]
    fn trunk_conflict_means_some_call_reaches_both(a in arb_trunk(), b in arb_trunk()) {
        // Two trunks conflict exactly when one (called, caller) pair, "any"
        // included, is claimed by both.
        let claims = |t: &SipInboundTrunkInfo| -> HashSet<(String, String)> {
            let called: Vec<String> = if t.numbers.is_empty() { vec![String::new()] } else { t.numbers.iter().map(|n| normalize_number(n).into_owned()).collect() };
            let callers: Vec<String> = if t.allowed_numbers.is_empty() { vec![String::new()] } else { t.allowed_numbers.iter().map(|n| normalize_number(n).into_owned()).collect() };
            called.iter().flat_map(|c| callers.iter().map(move |f| (c.clone(), f.clone()))).collect()
        };
        let a = SipInboundTrunkInfo { sip_trunk_id: "ST_a".into(), ..a };
        let shared = !claims(&a).is_disjoint(&claims(&b));
        prop_assert_eq!(check_inbound_trunk_conflicts([&a], &b).is_err(), shared);
    }

    #[test]
    fn validated_trunks_never_match_ambiguously(
        candidates in proptest::collection::vec(arb_trunk(), 0..8),
        to in proptest::sample::select(NUMBERS.to_vec()),
        from in proptest::sample::select(CALLERS.to_vec()),
    ) {
        // Holds with allowed_numbers too, thanks to the caller-specific
        // preference; in LiveKit it holds only without them.
        let stored = accept_sequentially(candidates);
        let index = RoutingIndex::new(stored, Vec::new(), RoutingOptions::default());
        let result = index.match_trunk(&call(from, to, "1.1.1.1")).result;
        prop_assert!(!matches!(result, Err(RoutingError::MultipleTrunks(_)) | Err(RoutingError::MultipleDefaultTrunks(_))), "{:?}", result);
    }

    #[test]
    fn fast_and_explained_matching_agree(
        candidates in proptest::collection::vec(arb_trunk(), 0..8),
        rules in proptest::collection::vec(arb_rule(), 0..8),
        to in proptest::sample::select(NUMBERS.to_vec()),
        from in proptest::sample::select(CALLERS.to_vec()),
        pin in prop_oneof![Just(None), Just(Some("1234".to_string())), Just(Some("0000".to_string()))],
    ) {
        let mut stored = accept_sequentially(candidates);
        // Give the first two trunks the IDs the rules refer to.
        for (t, id) in stored.iter_mut().zip(["ST_a", "ST_b"]) {
            t.sip_trunk_id = id.into();
        }
        let rules: Vec<SipDispatchRuleInfo> = rules.into_iter().enumerate().map(|(i, r)| SipDispatchRuleInfo { sip_dispatch_rule_id: format!("SDR_{i:03}"), ..r }).collect();
        let index = RoutingIndex::new(stored, rules, RoutingOptions { allow_unmatched_calls: true });
        let mut c = call(from, to, "1.1.1.1");
        c.pin = pin;
        let fast = index.route(&c, &mut counting_rng());
        let explained = index.explain(&c, &mut counting_rng());
        prop_assert_eq!(format!("{:?}", fast.trunk.result), format!("{:?}", explained.trunk.result));
        prop_assert_eq!(
            format!("{:?}", fast.dispatch.map(|d| d.result)),
            format!("{:?}", explained.dispatch.map(|d| d.result))
        );
        // Every object the fast path passed over is explained the same way in full.
        for p in fast.trunk.passed_over.iter() {
            prop_assert!(explained.trunk.passed_over.contains(p), "{}", p);
        }
    }

    #[test]
    fn validated_rules_never_conflict_at_dispatch(
        rules in proptest::collection::vec(arb_rule(), 0..10),
        to in proptest::sample::select(NUMBERS.to_vec()),
        from in proptest::sample::select(CALLERS.to_vec()),
    ) {
        let mut stored: Vec<SipDispatchRuleInfo> = Vec::new();
        for (i, r) in rules.into_iter().enumerate() {
            if check_dispatch_rule_conflicts(&stored, &r).is_ok() {
                stored.push(SipDispatchRuleInfo { sip_dispatch_rule_id: format!("SDR_{i:03}"), ..r });
            }
        }
        let trunks = vec![with_auth(trunk("ST_a", &[]), "u", "p")];
        let index = RoutingIndex::new(trunks, stored, RoutingOptions::default());
        let report = index.route(&call(from, to, "1.1.1.1"), &mut counting_rng());
        let result = report.dispatch.map(|d| d.result);
        prop_assert!(!matches!(result, Some(Err(RoutingError::ConflictingDispatchRules { .. }))), "{:?}", result);
    }

    #[test]
    fn dispatch_conflicts_are_symmetric(a in arb_rule(), b in arb_rule()) {
        let a = SipDispatchRuleInfo { sip_dispatch_rule_id: "SDR_a".into(), ..a };
        let b = SipDispatchRuleInfo { sip_dispatch_rule_id: "SDR_b".into(), ..b };
        prop_assert_eq!(
            check_dispatch_rule_conflicts([&a], &b).is_err(),
            check_dispatch_rule_conflicts([&b], &a).is_err()
        );
    }
}

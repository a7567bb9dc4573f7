//! Builders shared by the routing tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::IpAddr;

use switchboard_routing::livekit_protocol::{
    sip_dispatch_rule::Rule, SipDispatchRule, SipDispatchRuleCallee, SipDispatchRuleDirect,
    SipDispatchRuleIndividual, SipDispatchRuleInfo, SipInboundTrunkInfo,
};
use switchboard_routing::CallInput;

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub fn trunk(id: &str, numbers: &[&str]) -> SipInboundTrunkInfo {
    SipInboundTrunkInfo {
        sip_trunk_id: id.to_owned(),
        numbers: strings(numbers),
        ..Default::default()
    }
}

pub fn with_allowed_numbers(mut t: SipInboundTrunkInfo, allowed: &[&str]) -> SipInboundTrunkInfo {
    t.allowed_numbers = strings(allowed);
    t
}

pub fn with_addresses(mut t: SipInboundTrunkInfo, addrs: &[&str]) -> SipInboundTrunkInfo {
    t.allowed_addresses = strings(addrs);
    t
}

pub fn with_auth(mut t: SipInboundTrunkInfo, user: &str, pass: &str) -> SipInboundTrunkInfo {
    t.auth_username = user.to_owned();
    t.auth_password = pass.to_owned();
    t
}

pub fn direct(id: &str, room: &str, pin: &str) -> SipDispatchRuleInfo {
    rule(
        id,
        Rule::DispatchRuleDirect(SipDispatchRuleDirect {
            room_name: room.into(),
            pin: pin.into(),
        }),
    )
}

pub fn individual(id: &str, prefix: &str, pin: &str, no_randomness: bool) -> SipDispatchRuleInfo {
    rule(
        id,
        Rule::DispatchRuleIndividual(SipDispatchRuleIndividual {
            room_prefix: prefix.into(),
            pin: pin.into(),
            no_randomness,
        }),
    )
}

pub fn callee(id: &str, prefix: &str, pin: &str, randomize: bool) -> SipDispatchRuleInfo {
    rule(
        id,
        Rule::DispatchRuleCallee(SipDispatchRuleCallee {
            room_prefix: prefix.into(),
            pin: pin.into(),
            randomize,
        }),
    )
}

pub fn rule(id: &str, kind: Rule) -> SipDispatchRuleInfo {
    SipDispatchRuleInfo {
        sip_dispatch_rule_id: id.to_owned(),
        rule: Some(SipDispatchRule { rule: Some(kind) }),
        ..Default::default()
    }
}

pub fn for_trunks(mut r: SipDispatchRuleInfo, trunks: &[&str]) -> SipDispatchRuleInfo {
    r.trunk_ids = strings(trunks);
    r
}

pub fn from_numbers(mut r: SipDispatchRuleInfo, numbers: &[&str]) -> SipDispatchRuleInfo {
    r.inbound_numbers = strings(numbers);
    r
}

pub fn to_numbers(mut r: SipDispatchRuleInfo, numbers: &[&str]) -> SipDispatchRuleInfo {
    r.numbers = strings(numbers);
    r
}

pub fn call(from: &str, to: &str, source: &str) -> CallInput {
    CallInput {
        call_id: "SCL_testcall0001".into(),
        from_user: from.into(),
        from_host: "carrier.example.net".into(),
        to_user: to.into(),
        source_ip: Some(source.parse::<IpAddr>().unwrap()),
        ..Default::default()
    }
}

/// Deterministic "randomness": bytes 0, 1, 2, ... (suffix "23456789ABCD").
pub fn counting_rng() -> impl FnMut(&mut [u8]) {
    let mut next = 0u8;
    move |dest: &mut [u8]| {
        for b in dest {
            *b = next;
            next = next.wrapping_add(1);
        }
    }
}

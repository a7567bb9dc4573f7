//! Measures the routing index: build time and per-call matching cost with
//! many trunks and rules. `cargo run --release -p switchboard-routing --example index_speed`

use std::hint::black_box;
use std::time::Instant;

use switchboard_routing::livekit_protocol::{
    sip_dispatch_rule::Rule, SipDispatchRule, SipDispatchRuleDirect, SipDispatchRuleInfo,
    SipInboundTrunkInfo,
};
use switchboard_routing::{CallInput, DispatchDecision, RoutingIndex, RoutingOptions};

fn main() {
    let trunks_n = 10_000;
    let trunks: Vec<SipInboundTrunkInfo> = (0..trunks_n)
        .map(|i| SipInboundTrunkInfo {
            sip_trunk_id: format!("ST_{i:012}"),
            numbers: vec![format!("+1555{i:07}")],
            allowed_addresses: vec!["10.0.0.0/8".into()],
            ..Default::default()
        })
        .collect();
    let rules: Vec<SipDispatchRuleInfo> = (0..trunks_n)
        .map(|i| SipDispatchRuleInfo {
            sip_dispatch_rule_id: format!("SDR_{i:012}"),
            trunk_ids: vec![format!("ST_{i:012}")],
            rule: Some(SipDispatchRule {
                rule: Some(Rule::DispatchRuleDirect(SipDispatchRuleDirect {
                    room_name: format!("room-{i}"),
                    pin: String::new(),
                })),
            }),
            ..Default::default()
        })
        .collect();

    let started = Instant::now();
    let index = RoutingIndex::new(trunks, rules, RoutingOptions::default());
    let build = started.elapsed();

    let mut rng = |b: &mut [u8]| b.fill(3);
    let calls = 100_000;
    let started = Instant::now();
    let mut accepted = 0;
    for n in 0..calls {
        let call = CallInput {
            call_id: "SCL_bench".into(),
            from_user: "+13105550100".into(),
            to_user: format!("+1555{:07}", n % trunks_n),
            source_ip: Some(std::net::IpAddr::from([10, 1, 2, 3])),
            ..Default::default()
        };
        let report = index.route(black_box(&call), &mut rng);
        if let Some(Ok(DispatchDecision::Accept(_))) = report.dispatch.map(|d| d.result) {
            accepted += 1;
        }
    }
    let per_call = started.elapsed() / calls as u32;

    let call = CallInput {
        to_user: "+15559999999".into(),
        from_user: "+1".into(),
        ..Default::default()
    };
    let started = Instant::now();
    let explained = index.explain(&call, &mut rng);
    let explain = started.elapsed();

    println!("{trunks_n} trunks + {trunks_n} rules: index built in {build:?}");
    println!(
        "route (trunk + rule + evaluation): {per_call:?} per call, {accepted}/{calls} accepted"
    );
    println!(
        "explain over everything: {explain:?} ({} trunks explained)",
        explained.trunk.passed_over.len()
    );
}

use super::*;
use crate::cli::tests::{fixture, parse_sip};
use crate::cli::SipCommand;
use serde_json::json;

fn dispatch(argv: &[&str]) -> Result<DispatchCommand, clap::Error> {
    let mut all = vec!["--api-key", "k", "--api-secret", "s", "dispatch"];
    all.extend_from_slice(argv);
    match parse_sip(&all)?.command {
        SipCommand::Dispatch(c) => Ok(c),
        other => panic!("parsed as {other:?}"),
    }
}

fn create(argv: &[&str]) -> Result<CreateSipDispatchRuleRequest, CliError> {
    match dispatch(&[&["create"], argv].concat()).unwrap() {
        DispatchCommand::Create(args) => create_request(&args),
        other => panic!("parsed as {other:?}"),
    }
}

fn update(argv: &[&str]) -> Result<UpdateSipDispatchRuleRequest, CliError> {
    match dispatch(&[&["update"], argv].concat()).unwrap() {
        DispatchCommand::Update(args) => update_request(&args),
        other => panic!("parsed as {other:?}"),
    }
}

fn usage_error<T: std::fmt::Debug>(result: Result<T, CliError>) -> String {
    match result {
        Err(CliError::Usage(msg)) => msg,
        other => panic!("expected a usage error, got {other:?}"),
    }
}

#[test]
fn individual_rule_with_agent_dispatch() {
    let request = create(&[&fixture("dispatch-rule-individual.json")]).unwrap();
    let rule = request.dispatch_rule.clone().unwrap();
    assert_eq!(rule.name, "My dispatch rule");
    assert_eq!(
        describe_rule(rule.rule.as_ref()),
        (
            "Individual (Caller)".into(),
            "call-_<caller>_<random>".into(),
            String::new()
        )
    );
    let agents = &rule.room_config.as_ref().unwrap().agents;
    assert_eq!(agents[0].agent_name, "inbound-agent");
    assert_eq!(agents[0].metadata, "job dispatch metadata");
    let wire = serde_json::to_value(&request).unwrap();
    assert_eq!(
        wire["dispatchRule"]["rule"],
        json!({"dispatchRuleIndividual": {"roomPrefix": "call-"}})
    );
}

#[test]
fn direct_rule_with_pin_in_snake_case() {
    let rule = create(&[&fixture("dispatch-rule-direct-pin.json")])
        .unwrap()
        .dispatch_rule
        .unwrap();
    assert_eq!(rule.trunk_ids, vec!["ST_conferencetrunk".to_string()]);
    assert_eq!(
        describe_rule(rule.rule.as_ref()),
        ("Direct".into(), "conference".into(), "12345".into())
    );
}

#[test]
fn legacy_request_fields_become_the_rule() {
    let request = create(&[&fixture("dispatch-rule-legacy.json")]).unwrap();
    let rule = request.dispatch_rule.clone().unwrap();
    assert_eq!(rule.name, "Support line");
    assert!(rule.hide_phone_number);
    assert_eq!(rule.trunk_ids, vec!["ST_supporttrunk".to_string()]);
    assert_eq!(
        describe_rule(rule.rule.as_ref()),
        (
            "Callee".into(),
            "support_<callee>_<random>".into(),
            String::new()
        )
    );
    assert!(request.name.is_empty(), "only dispatch_rule is sent");
}

#[test]
fn rule_from_flags() {
    let request = create(&[
        "--name",
        "Front desk",
        "--trunks",
        "ST_a,ST_b",
        "--direct",
        "front-desk",
        "--pin",
        "4321",
    ])
    .unwrap();
    assert_eq!(
        serde_json::to_value(&request).unwrap(),
        json!({"dispatchRule": {"name": "Front desk", "trunkIds": ["ST_a", "ST_b"],
            "rule": {"dispatchRuleDirect": {"roomName": "front-desk", "pin": "4321"}}}})
    );
    let rule = create(&["--individual", "caller"])
        .unwrap()
        .dispatch_rule
        .unwrap();
    assert_eq!(describe_rule(rule.rule.as_ref()).0, "Individual (Caller)");
    let rule = create(&["--callee", "num", "--randomize"])
        .unwrap()
        .dispatch_rule
        .unwrap();
    assert_eq!(describe_rule(rule.rule.as_ref()).1, "num_<callee>_<random>");
}

#[test]
fn rule_flag_mistakes() {
    assert!(
        dispatch(&["create", "--direct", "a", "--callee", "b"]).is_err(),
        "one rule kind"
    );
    assert!(
        dispatch(&["create", "--randomize"]).is_err(),
        "--randomize is for --callee"
    );
    let msg = usage_error(create(&[
        &fixture("dispatch-rule-direct-pin.json"),
        "--caller",
        "x",
    ]));
    assert!(msg.contains("only one dispatch rule type"), "{msg}");
    assert!(usage_error(create(&["--pin", "1"])).contains("--pin needs a rule"));
    let msg = usage_error(create(&[
        r#"{"dispatch_rule": {"name": "a"}, "name": "b"}"#,
    ]));
    assert!(msg.contains("name") && msg.contains("ignored"), "{msg}");
}

#[test]
fn pin_flag_sets_the_pin_of_the_file_rule() {
    let rule = create(&[&fixture("dispatch-rule-individual.json"), "--pin", "999"])
        .unwrap()
        .dispatch_rule
        .unwrap();
    assert_eq!(describe_rule(rule.rule.as_ref()).2, "999");
}

#[test]
fn update_from_flags() {
    let request = update(&[
        "--id",
        "SDR_a",
        "--add-trunks",
        "ST_new",
        "--remove-trunks",
        "ST_old",
        "--caller",
        "vip",
        "--pin",
        "12",
    ])
    .unwrap();
    assert_eq!(
        serde_json::to_value(&request).unwrap(),
        json!({"sipDispatchRuleId": "SDR_a", "update": {
            "trunkIds": {"add": ["ST_new"], "remove": ["ST_old"]},
            "rule": {"dispatchRuleIndividual": {"roomPrefix": "vip", "pin": "12"}}}})
    );
    assert!(usage_error(update(&["--id", "SDR_a", "--pin", "1"])).contains("--direct"));
    assert!(usage_error(update(&["--id", "SDR_a"])).contains("nothing to update"));
    let msg = usage_error(update(&[
        "--id",
        "SDR_a",
        "--trunks",
        "ST_a",
        "--add-trunks",
        "ST_b",
    ]));
    assert!(msg.contains("--trunks"), "{msg}");
}

#[test]
fn update_from_files() {
    let request = update(&[
        r#"{"sipDispatchRuleId": "SDR_f", "name": "n", "trunk_ids": [], "attributes": {"a": ""}}"#,
    ])
    .unwrap();
    assert_eq!(
        serde_json::to_value(&request).unwrap(),
        json!({"sipDispatchRuleId": "SDR_f", "update": {
            "name": "n", "trunkIds": {"clear": true}, "attributes": {"a": ""}}})
    );
    let msg = usage_error(update(&["--id", "SDR_f", r#"{"hide_phone_number": true}"#]));
    assert!(
        msg.contains("hide_phone_number") && msg.contains("--replace"),
        "{msg}"
    );
    let request = update(&[
        "--id",
        "SDR_f",
        "--replace",
        &fixture("dispatch-rule-legacy.json"),
    ])
    .unwrap();
    assert!(matches!(
        request.action,
        Some(update_sip_dispatch_rule_request::Action::Replace(ref r)) if r.hide_phone_number
    ));
}

#[test]
fn rule_table_rows() {
    let rules = vec![
        SipDispatchRuleInfo {
            sip_dispatch_rule_id: "SDR_any".into(),
            name: "Open".into(),
            rule: Some(SipDispatchRule {
                rule: Some(Rule::DispatchRuleIndividual(SipDispatchRuleIndividual {
                    room_prefix: String::new(),
                    no_randomness: true,
                    ..Default::default()
                })),
            }),
            ..Default::default()
        },
        SipDispatchRuleInfo {
            sip_dispatch_rule_id: "SDR_vip".into(),
            name: "VIP".into(),
            trunk_ids: vec!["ST_a".into(), "ST_b".into()],
            inbound_numbers: vec!["+1555".into()],
            attributes: [("tier".to_string(), "gold".to_string())].into(),
            rule: Some(SipDispatchRule {
                rule: Some(Rule::DispatchRuleDirect(SipDispatchRuleDirect {
                    room_name: "vip".into(),
                    pin: "12".into(),
                })),
            }),
            ..Default::default()
        },
    ];
    let table = rule_table(&rules);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    assert_eq!(
        lines[1],
        "│ SipDispatchRuleID │ Name │ SipTrunks │ Type                │ RoomName │ Pin │ InboundNumbers │ Numbers │ Attributes │ Agents │"
    );
    assert_eq!(
        lines[3],
        "│ SDR_any           │ Open │ <any>     │ Individual (Caller) │ <caller> │     │                │         │            │        │"
    );
    assert_eq!(
        lines[4],
        "│ SDR_vip           │ VIP  │ ST_a,ST_b │ Direct              │ vip      │ 12  │ +1555          │         │ tier=gold  │        │"
    );
}

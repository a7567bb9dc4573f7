use super::*;
use crate::cli::tests::{fixture, parse_sip};
use crate::cli::SipCommand;
use serde_json::json;

const KEYS: [&str; 4] = ["--api-key", "k", "--api-secret", "s"];

fn inbound(argv: &[&str]) -> Result<InboundCommand, clap::Error> {
    let mut all = KEYS.to_vec();
    all.push("inbound");
    all.extend_from_slice(argv);
    match parse_sip(&all)?.command {
        SipCommand::Inbound(c) => Ok(c),
        other => panic!("parsed as {other:?}"),
    }
}

fn outbound(argv: &[&str]) -> Result<OutboundCommand, clap::Error> {
    let mut all = KEYS.to_vec();
    all.push("outbound");
    all.extend_from_slice(argv);
    match parse_sip(&all)?.command {
        SipCommand::Outbound(c) => Ok(c),
        other => panic!("parsed as {other:?}"),
    }
}

fn inbound_create(argv: &[&str]) -> Result<CreateSipInboundTrunkRequest, CliError> {
    match inbound(&[&["create"], argv].concat()).unwrap() {
        InboundCommand::Create(args) => inbound_create_request(&args),
        other => panic!("parsed as {other:?}"),
    }
}

fn inbound_update(argv: &[&str]) -> Result<UpdateSipInboundTrunkRequest, CliError> {
    match inbound(&[&["update"], argv].concat()).unwrap() {
        InboundCommand::Update(args) => inbound_update_request(&args),
        other => panic!("parsed as {other:?}"),
    }
}

fn outbound_create(argv: &[&str]) -> Result<CreateSipOutboundTrunkRequest, CliError> {
    match outbound(&[&["create"], argv].concat()).unwrap() {
        OutboundCommand::Create(args) => outbound_create_request(&args),
        other => panic!("parsed as {other:?}"),
    }
}

fn outbound_update(argv: &[&str]) -> Result<UpdateSipOutboundTrunkRequest, CliError> {
    match outbound(&[&["update"], argv].concat()).unwrap() {
        OutboundCommand::Update(args) => outbound_update_request(&args),
        other => panic!("parsed as {other:?}"),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn usage_error<T: std::fmt::Debug>(result: Result<T, CliError>) -> String {
    match result {
        Err(CliError::Usage(msg)) => msg,
        other => panic!("expected a usage error, got {other:?}"),
    }
}

// --- create: the seeds' `lk sip inbound create inbound-trunk.json` files

#[test]
fn inbound_create_krisp_example() {
    let request = inbound_create(&[&fixture("inbound-trunk.json")]).unwrap();
    let trunk = request.trunk.clone().unwrap();
    assert_eq!(trunk.name, "My trunk");
    assert_eq!(trunk.numbers, strings(&["+15105550100"]));
    assert!(trunk.krisp_enabled);
    // What goes on the wire: protobuf JSON the server's reader takes.
    assert_eq!(
        serde_json::to_value(&request).unwrap(),
        json!({"trunk": {"name": "My trunk", "numbers": ["+15105550100"], "krispEnabled": true}})
    );
}

#[test]
fn inbound_create_allowed_numbers_example() {
    let trunk = inbound_create(&[&fixture("inbound-trunk-allowed-numbers.json")])
        .unwrap()
        .trunk
        .unwrap();
    assert_eq!(trunk.numbers, strings(&["+15105550100"]));
    assert_eq!(
        trunk.allowed_numbers,
        strings(&["+13105550100", "+17145550100"])
    );
    assert!(!trunk.krisp_enabled);
}

#[test]
fn inbound_create_accepts_a_bare_trunk() {
    let trunk = inbound_create(&[&fixture("inbound-trunk-cloud.json")])
        .unwrap()
        .trunk
        .unwrap();
    assert_eq!(trunk.name, "My trunk");
    assert!(trunk.krisp_enabled);
    assert_eq!(
        trunk.allowed_numbers,
        strings(&["+13105550100", "+17145550100"])
    );
}

#[test]
fn inbound_create_flags_override_the_file() {
    let trunk = inbound_create(&[
        &fixture("inbound-trunk.json"),
        "--name",
        "Other",
        "--numbers",
        "+1,+2",
        "--numbers",
        "+3",
        "--allowed-addresses",
        "192.0.2.0/24",
        "--auth-user",
        "carrier",
        "--auth-pass",
        "pw",
        "--media-enc",
        "require",
    ])
    .unwrap()
    .trunk
    .unwrap();
    assert_eq!(trunk.name, "Other");
    assert_eq!(trunk.numbers, strings(&["+1", "+2", "+3"]));
    assert_eq!(trunk.allowed_addresses, strings(&["192.0.2.0/24"]));
    assert_eq!(
        (trunk.auth_username.as_str(), trunk.auth_password.as_str()),
        ("carrier", "pw")
    );
    assert_eq!(
        trunk.media_encryption,
        SipMediaEncryption::SipMediaEncryptRequire as i32
    );
    assert!(trunk.krisp_enabled, "the file's other fields stay");
}

#[test]
fn inbound_create_from_flags_and_literal_json() {
    let trunk = inbound_create(&["--name", "Flags only", "--numbers", ""])
        .unwrap()
        .trunk
        .unwrap();
    assert_eq!(trunk.name, "Flags only");
    assert!(trunk.numbers.is_empty());
    let literal =
        inbound_create(&[r#"{"trunk": {"name": "lit", "allowed_addresses": ["10.0.0.1"]}}"#])
            .unwrap()
            .trunk
            .unwrap();
    assert_eq!(literal.allowed_addresses, strings(&["10.0.0.1"]));
}

#[test]
fn inbound_create_refuses_typos() {
    let msg = usage_error(inbound_create(&[
        r#"{"trunk": {"name": "x", "krispEnabld": true}}"#,
    ]));
    assert!(msg.contains("krispEnabld"), "{msg}");
    let msg = usage_error(inbound_create(&[r#"{"trunk": {}, "extra": 1}"#]));
    assert!(msg.contains("extra"), "{msg}");
}

// --- update: `lk sip inbound update --id <trunk-id> inbound-trunk.json`

#[test]
fn inbound_update_file_changes_only_its_fields() {
    let request =
        inbound_update(&["--id", "ST_abc", &fixture("inbound-trunk-update.json")]).unwrap();
    assert_eq!(
        serde_json::to_value(&request).unwrap(),
        json!({"sipTrunkId": "ST_abc", "update": {
            "name": "My trunk", "numbers": {"set": ["+15105550100"]}}})
    );
}

#[test]
fn inbound_update_replace_sends_the_whole_trunk() {
    let request = inbound_update(&[
        "--id",
        "ST_abc",
        "--replace",
        &fixture("inbound-trunk-replace.json"),
    ])
    .unwrap();
    let Some(update_sip_inbound_trunk_request::Action::Replace(trunk)) = request.action else {
        panic!("expected replace: {request:?}");
    };
    assert_eq!(trunk.name, "My replaced trunk");
    assert_eq!(trunk.allowed_addresses, strings(&["192.168.254.10"]));
    assert!(trunk.krisp_enabled);
    assert_eq!(trunk.metadata, "Replaced metadata");
}

#[test]
fn inbound_update_names_fields_that_need_replace() {
    let msg = usage_error(inbound_update(&[
        "--id",
        "ST_abc",
        &fixture("inbound-trunk-replace.json"),
    ]));
    assert!(
        msg.contains("krisp_enabled") && msg.contains("--replace"),
        "{msg}"
    );
}

#[test]
fn inbound_update_list_flags() {
    let request = inbound_update(&[
        "--id",
        "ST_abc",
        "--add-numbers",
        "+1,+2",
        "--remove-numbers",
        "+3",
        "--allowed-numbers",
        "",
        "--allowed-addresses",
        "192.0.2.1,198.51.100.0/24",
        "--auth-pass",
        "",
    ])
    .unwrap();
    let Some(update_sip_inbound_trunk_request::Action::Update(update)) = request.action else {
        panic!("expected update");
    };
    assert_eq!(
        update.numbers,
        Some(ListUpdate {
            add: strings(&["+1", "+2"]),
            remove: strings(&["+3"]),
            ..Default::default()
        })
    );
    assert_eq!(
        update.allowed_numbers,
        Some(ListUpdate {
            clear: true,
            ..Default::default()
        })
    );
    assert_eq!(
        update.allowed_addresses.map(|l| l.set),
        Some(strings(&["192.0.2.1", "198.51.100.0/24"]))
    );
    assert_eq!(update.auth_password, Some(String::new()));
    assert_eq!(update.name, None);
}

#[test]
fn inbound_update_mistakes() {
    let msg = usage_error(inbound_update(&[
        "--id",
        "ST_a",
        "--numbers",
        "+1",
        "--add-numbers",
        "+2",
    ]));
    assert!(
        msg.contains("--numbers") && msg.contains("--add-numbers"),
        "{msg}"
    );
    assert!(usage_error(inbound_update(&["--name", "x"])).contains("--id"));
    assert!(usage_error(inbound_update(&["--id", "ST_a"])).contains("nothing to update"));
    let msg = usage_error(inbound_update(&[
        "--id",
        "ST_a",
        "--name",
        "x",
        &fixture("inbound-trunk-update.json"),
    ]));
    assert!(msg.contains("not both"), "{msg}");
    assert!(
        inbound(&["update", "--id", "ST_a", "--replace"]).is_err(),
        "--replace needs a file"
    );
}

#[test]
fn inbound_update_request_files_and_ids_from_files() {
    let request = inbound_update(&[
        "--id",
        "ST_flag",
        r#"{"sip_trunk_id": "ST_file", "update": {"allowedNumbers": {"remove": ["+1"]}}}"#,
    ])
    .unwrap();
    assert_eq!(request.sip_trunk_id, "ST_flag", "--id wins over the file");
    let request =
        inbound_update(&[r#"{"sipTrunkId": "ST_file", "metadata": "m", "numbers": []}"#]).unwrap();
    assert_eq!(
        serde_json::to_value(&request).unwrap(),
        json!({"sipTrunkId": "ST_file", "update": {"metadata": "m", "numbers": {"clear": true}}})
    );
}

// --- outbound: `lk sip outbound create outbound-trunk.json --auth-user ... --auth-pass ...`

#[test]
fn outbound_create_examples() {
    for (file, address, numbers) in [
        (
            "outbound-trunk-twilio.json",
            "<my-trunk>.pstn.twilio.com",
            "+15105550100",
        ),
        (
            "outbound-trunk-telnyx.json",
            "sip.telnyx.com",
            "+15105550100",
        ),
        (
            "outbound-trunk-any-number.json",
            "<my-trunk>.pstn.twilio.com",
            "*",
        ),
    ] {
        let trunk = outbound_create(&[
            &fixture(file),
            "--auth-user",
            "user",
            "--auth-pass",
            "secret",
        ])
        .unwrap()
        .trunk
        .unwrap();
        assert_eq!(trunk.name, "My outbound trunk", "{file}");
        assert_eq!(trunk.address, address, "{file}");
        assert_eq!(trunk.numbers, strings(&[numbers]), "{file}");
        assert_eq!(trunk.auth_username, "user", "{file}");
        assert_eq!(trunk.auth_password, "secret", "{file}");
    }
    let trunk = outbound_create(&[&fixture("outbound-trunk-cloud.json")])
        .unwrap()
        .trunk
        .unwrap();
    assert_eq!(trunk.auth_username, "<username>");
    assert_eq!(trunk.numbers, strings(&["+12135550100"]));
}

#[test]
fn outbound_create_flags() {
    let trunk = outbound_create(&[
        "--name",
        "n",
        "--address",
        "sip.example.com:5061",
        "--transport",
        "tls",
        "--destination-country",
        "US",
        "--numbers",
        "+1",
    ])
    .unwrap()
    .trunk
    .unwrap();
    assert_eq!(trunk.transport, SipTransport::Tls as i32);
    assert_eq!(trunk.address, "sip.example.com:5061");
    assert_eq!(trunk.destination_country, "US");
    assert!(outbound(&["create", "--transport", "sctp"]).is_err());
    assert!(outbound(&["create", "--media-enc", "maybe"]).is_err());
}

#[test]
fn outbound_update_examples() {
    for (file, address) in [
        (
            "outbound-trunk-update-twilio.json",
            "<my-trunk>.pstn.twilio.com",
        ),
        ("outbound-trunk-update-telnyx.json", "sip.telnyx.com"),
    ] {
        let request = outbound_update(&["--id", "ST_out", &fixture(file)]).unwrap();
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"sipTrunkId": "ST_out", "update": {
                "name": "My updated outbound trunk", "address": address,
                "numbers": {"set": ["+15105550100"]}}}),
            "{file}"
        );
    }
    let request = outbound_update(&[
        "--id",
        "ST_out",
        "--replace",
        &fixture("outbound-trunk-replace.json"),
    ])
    .unwrap();
    let Some(update_sip_outbound_trunk_request::Action::Replace(trunk)) = request.action else {
        panic!("expected replace");
    };
    assert_eq!(trunk.auth_username, "<updated-username>");
    assert_eq!(trunk.metadata, r#"{"is_internal": true}"#);
}

#[test]
fn outbound_update_flags() {
    let request = outbound_update(&[
        "--id",
        "ST_out",
        "--transport",
        "udp",
        "--remove-numbers",
        "+15105550100",
        "--add-numbers",
        "+15225550101",
        "--from-host",
        "example.com",
    ])
    .unwrap();
    assert_eq!(
        serde_json::to_value(&request).unwrap(),
        json!({"sipTrunkId": "ST_out", "update": {
            "transport": "SIP_TRANSPORT_UDP", "fromHost": "example.com",
            "numbers": {"add": ["+15225550101"], "remove": ["+15105550100"]}}})
    );
    let msg = usage_error(outbound_update(&[
        "--id",
        "ST_out",
        r#"{"headers": {"X-A": "1"}}"#,
    ]));
    assert!(msg.contains("headers"), "{msg}");
}

// --- list and delete

#[test]
fn list_and_delete_arguments() {
    let InboundCommand::List(list) = inbound(&["list", "--json", "--id", "ST_a,ST_b"]).unwrap()
    else {
        panic!()
    };
    assert!(list.json);
    assert_eq!(flag_list(&list.ids), strings(&["ST_a", "ST_b"]));
    let OutboundCommand::Delete(delete) =
        outbound(&["delete", "ST_a", "ST_b", "--id", "ST_c"]).unwrap()
    else {
        panic!()
    };
    assert_eq!(delete.all_ids(), strings(&["ST_a", "ST_b", "ST_c"]));
    assert!(inbound(&["delete"]).is_err(), "delete needs an ID");
}

// --- tables

#[test]
fn inbound_table_hides_passwords() {
    let trunk = SipInboundTrunkInfo {
        sip_trunk_id: "ST_abc".into(),
        name: "Carrier".into(),
        numbers: strings(&["+15105550100", "+15105550101"]),
        allowed_addresses: strings(&["192.0.2.0/24"]),
        auth_username: "carrier".into(),
        auth_password: "hunter2".into(),
        headers: HashMap::from([("X-B".into(), "2".into()), ("X-A".into(), "1".into())]),
        media_encryption: SipMediaEncryption::SipMediaEncryptAllow as i32,
        ..Default::default()
    };
    let table = inbound_table(&[trunk]);
    let expected = "\
┌────────────┬─────────┬───────────────────────────┬──────────────────┬────────────────┬────────────────┬────────────┬─────────┬──────────┐
│ SipTrunkID │ Name    │ Numbers                   │ AllowedAddresses │ AllowedNumbers │ Authentication │ Encryption │ Headers │ Metadata │
├────────────┼─────────┼───────────────────────────┼──────────────────┼────────────────┼────────────────┼────────────┼─────────┼──────────┤
│ ST_abc     │ Carrier │ +15105550100,+15105550101 │ 192.0.2.0/24     │                │ carrier / **** │ ALLOW      │ X-A=1   │          │
│            │         │                           │                  │                │                │            │ X-B=2   │          │
└────────────┴─────────┴───────────────────────────┴──────────────────┴────────────────┴────────────────┴────────────┴─────────┴──────────┘
";
    assert_eq!(table, expected);
    assert!(!table.contains("hunter2"));
}

#[test]
fn outbound_table_shows_transport_and_media_encryption() {
    let trunk = SipOutboundTrunkInfo {
        sip_trunk_id: "ST_out".into(),
        name: "Telnyx".into(),
        address: "sip.telnyx.com".into(),
        transport: SipTransport::Tcp as i32,
        numbers: strings(&["*"]),
        auth_password: "pw".into(),
        media: Some(SipMediaConfig {
            encryption: Some(SipMediaEncryption::SipMediaEncryptRequire as i32),
            ..Default::default()
        }),
        ..Default::default()
    };
    let table = outbound_table(&[trunk]);
    let row = table.lines().nth(3).unwrap();
    assert_eq!(
        row,
        "│ ST_out     │ Telnyx │ sip.telnyx.com │ TCP       │ *       │  / ****        │ REQUIRE    │         │          │"
    );
}

#[test]
fn list_responses_from_the_server_parse() {
    // The server writes snake_case with every default, as protojson does.
    let raw = r#"{"items": [{"sip_trunk_id": "ST_a", "name": "n", "metadata": "",
        "numbers": ["+1"], "allowed_addresses": [], "allowed_numbers": [],
        "auth_username": "", "auth_password": "", "auth_realm": "", "headers": {},
        "headers_to_attributes": {}, "attributes_to_headers": {},
        "include_headers": "SIP_NO_HEADERS", "ringing_timeout": null,
        "max_call_duration": "3600s", "krisp_enabled": false,
        "media_encryption": "SIP_MEDIA_ENCRYPT_DISABLE", "media": null,
        "created_at": null, "updated_at": null}]}"#;
    let response: ListSipInboundTrunkResponse = serde_json::from_str(raw).unwrap();
    assert_eq!(response.items[0].sip_trunk_id, "ST_a");
    assert_eq!(
        response.items[0]
            .max_call_duration
            .as_ref()
            .map(|d| d.seconds),
        Some(3600)
    );
}

//! The `/v1/` carrier trunk API of the real binary, over raw HTTP on
//! ephemeral loopback ports: both seed shapes, every field's checks, the
//! trunk cap, IDs, keys, atomic provisioning (with a fault injected half-way)
//! and the LiveKit records it provisions as the LiveKit API sees them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;

use common::api::{http, sip_service, token, KEY_ENV, SECRET};
use common::Switchboard;
use serde_json::{json, Value};

/// The password every test trunk uses; it must never come back.
const PASSWORD: &str = "carrier-Pa55word-never-shown";

fn start(extra: &[(&str, &str)]) -> (Switchboard, SocketAddr) {
    let mut env: Vec<(&str, &str)> = KEY_ENV.to_vec();
    env.extend_from_slice(extra);
    let sb = Switchboard::start(&env);
    let api = sb.api.unwrap();
    (sb, api)
}

/// A request with the API secret as the bearer value.
async fn v1(api: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    v1_as(api, method, path, body, &format!("Bearer {SECRET}")).await
}

async fn v1_as(
    api: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
    authorization: &str,
) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let mut headers = vec![("Content-Type", "application/json")];
    if !authorization.is_empty() {
        headers.push(("Authorization", authorization));
    }
    let (status, text) = http(api, method, path, &headers, bytes.as_bytes()).await;
    assert!(
        !text.contains(PASSWORD),
        "{method} {path} answered with the password: {text}"
    );
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
    };
    (status, value)
}

fn admin() -> String {
    token(json!({"sip": {"admin": true}}))
}

/// What the LiveKit API lists, as (inbound IDs, outbound IDs, rule IDs).
async fn livekit_records(api: SocketAddr) -> (Vec<String>, Vec<String>, Vec<String>) {
    let ids = |answer: (u16, Value), key: &str| -> Vec<String> {
        assert_eq!(answer.0, 200, "{answer:?}");
        answer.1["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| i[key].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let token = admin();
    (
        ids(
            sip_service(api, "ListSIPInboundTrunk", &token, json!({})).await,
            "sip_trunk_id",
        ),
        ids(
            sip_service(api, "ListSIPOutboundTrunk", &token, json!({})).await,
            "sip_trunk_id",
        ),
        ids(
            sip_service(api, "ListSIPDispatchRule", &token, json!({})).await,
            "sip_dispatch_rule_id",
        ),
    )
}

fn carrier(name: &str) -> Value {
    json!({
        "name": name,
        "kind": "byoc",
        "direction": "both",
        "sip_address": "sip.carrier.example:5060",
        "auth_username": "acme",
        "auth_password": PASSWORD,
        "allowed_addresses": ["203.0.113.0/24", "198.51.100.7"],
        "destination_country": "US",
        "transport": "udp",
        "media_encryption": "allow",
        "credentials": {"account": "A-1", "nested": {"x": 1}},
        "numbers": ["+14155550100"],
    })
}

fn field_errors(answer: &(u16, Value)) -> Vec<String> {
    assert_eq!(answer.0, 400, "{answer:?}");
    assert_eq!(answer.1["error"]["code"], "invalid_request", "{answer:?}");
    answer.1["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect()
}

fn is_trunk_id(id: &str) -> bool {
    id.strip_prefix("trunk_").is_some_and(|body| {
        body.len() == 26
            && body
                .bytes()
                .all(|b| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_trunk_provisions_its_three_livekit_records_and_takes_them_away() {
    let (sb, api) = start(&[]);
    let (status, trunk) = v1(api, "POST", "/v1/sip-trunks", Some(carrier("Acme"))).await;
    assert_eq!(status, 201, "{trunk}");
    let id = trunk["id"].as_str().unwrap().to_owned();
    assert!(is_trunk_id(&id), "{id}");
    assert_eq!(trunk["name"], "Acme");
    assert_eq!(trunk["kind"], "byoc");
    assert_eq!(trunk["direction"], "both");
    assert_eq!(trunk["auth_username"], "acme");
    assert_eq!(trunk["auth_password_set"], true);
    assert!(trunk.get("auth_password").is_none(), "{trunk}");
    assert!(trunk.get("credentials").is_none(), "{trunk}");
    assert_eq!(trunk["credentials_set"], true);
    assert_eq!(trunk["destination_country"], "US");
    assert_eq!(trunk["transport"], "udp");
    assert_eq!(trunk["media_encryption"], "allow");
    assert_eq!(trunk["created_at"], trunk["updated_at"]);
    assert!(
        trunk["created_at"].as_str().unwrap().ends_with('Z'),
        "{trunk}"
    );
    let inbound = trunk["livekit_inbound_trunk_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let outbound = trunk["livekit_outbound_trunk_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rule = trunk["livekit_dispatch_rule_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(inbound.starts_with("ST_") && outbound.starts_with("ST_") && inbound != outbound);
    assert!(rule.starts_with("SDR_"), "{rule}");

    // The LiveKit API sees the three records, as LiveKit would show them.
    let (ins, outs, rules) = livekit_records(api).await;
    assert_eq!(
        (ins, outs, rules),
        (
            vec![inbound.clone()],
            vec![outbound.clone()],
            vec![rule.clone()]
        )
    );
    let (_, got) = sip_service(
        api,
        "GetSIPInboundTrunk",
        &admin(),
        json!({"sip_trunk_id": inbound}),
    )
    .await;
    let info = &got["trunk"];
    assert_eq!(info["numbers"], json!(["+14155550100"]));
    assert_eq!(
        info["allowed_addresses"],
        json!(["203.0.113.0/24", "198.51.100.7"])
    );
    assert_eq!(info["auth_username"], "acme");
    let (_, rules) = sip_service(api, "ListSIPDispatchRule", &admin(), json!({})).await;
    assert_eq!(rules["items"][0]["trunk_ids"], json!([inbound]));
    assert_eq!(
        rules["items"][0]["rule"]["dispatch_rule_individual"]["room_prefix"],
        "call-"
    );
    let (_, outs) = sip_service(api, "ListSIPOutboundTrunk", &admin(), json!({})).await;
    assert_eq!(outs["items"][0]["address"], "sip.carrier.example:5060");
    assert_eq!(outs["items"][0]["destination_country"], "US");

    // A second trunk for the same number conflicts, as LiveKit's rules say,
    // and writes nothing.
    let (status, answer) = v1(api, "POST", "/v1/sip-trunks", Some(carrier("Acme again"))).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{answer}"
    );
    let (ins, _, _) = livekit_records(api).await;
    assert_eq!(ins.len(), 1);

    // Get, under both shapes.
    let (status, got) = v1(api, "GET", &format!("/v1/sip-trunks/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(got, trunk);
    let (status, got) = v1(api, "GET", &format!("/v1/sip-trunk/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(got["sip_trunk"]["sip_server"], "sip.carrier.example:5060");
    assert_eq!(got["sip_trunk"]["password_set"], true);

    // PATCH: inbound only now. The outbound trunk goes, the inbound trunk
    // and the rule keep their IDs; the password is kept when not sent.
    let (status, patched) = v1(
        api,
        "PATCH",
        &format!("/v1/sip-trunks/{id}"),
        Some(json!({"direction": "inbound", "name": "Acme inbound", "dispatch": {"rule": "direct", "room_name": "front-desk"}})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["name"], "Acme inbound");
    assert_eq!(patched["auth_password_set"], true);
    assert_eq!(patched["livekit_inbound_trunk_id"], inbound.as_str());
    assert_eq!(patched["livekit_dispatch_rule_id"], rule.as_str());
    assert!(
        patched.get("livekit_outbound_trunk_id").is_none(),
        "{patched}"
    );
    assert_eq!(patched["created_at"], trunk["created_at"]);
    assert_ne!(patched["updated_at"], trunk["updated_at"]);
    let (ins, outs, rules) = livekit_records(api).await;
    assert_eq!((ins.len(), outs.len(), rules.len()), (1, 0, 1));
    let (_, rules) = sip_service(api, "ListSIPDispatchRule", &admin(), json!({})).await;
    assert_eq!(
        rules["items"][0]["rule"]["dispatch_rule_direct"]["room_name"],
        "front-desk"
    );
    let (_, got) = sip_service(
        api,
        "GetSIPInboundTrunk",
        &admin(),
        json!({"sip_trunk_id": inbound}),
    )
    .await;
    assert_eq!(got["trunk"]["name"], "Acme inbound");

    // Back to both: a new outbound trunk appears.
    let (status, patched) = v1(
        api,
        "PATCH",
        &format!("/v1/sip-trunks/{id}"),
        Some(json!({"direction": "both"})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert!(patched["livekit_outbound_trunk_id"]
        .as_str()
        .unwrap()
        .starts_with("ST_"));

    // Delete takes everything; a second delete and a get are 404.
    let (status, deleted) = v1(api, "DELETE", &format!("/v1/sip-trunks/{id}"), None).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["id"], id.as_str());
    assert_eq!(livekit_records(api).await, (vec![], vec![], vec![]));
    let (status, gone) = v1(api, "DELETE", &format!("/v1/sip-trunks/{id}"), None).await;
    assert_eq!(
        (status, gone["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = v1(api, "GET", &format!("/v1/sip-trunks/{id}"), None).await;
    assert_eq!(status, 404);

    let log = sb.log();
    assert!(log.contains("SIP trunk created"), "{log}");
    assert!(!log.contains(PASSWORD), "the password reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_carrier_field_is_checked_and_named() {
    let (_sb, api) = start(&[]);
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let with = |key: &str, value: Value| {
        let mut body = carrier("x");
        body[key] = value;
        body
    };
    let without = |key: &str| {
        let mut body = carrier("x");
        body.as_object_mut().unwrap().remove(key);
        body
    };
    cases.push((without("name"), "name"));
    cases.push((with("name", json!("  ")), "name"));
    cases.push((with("name", json!("a\r\nVia: evil")), "name"));
    cases.push((with("name", json!(7)), "name"));
    cases.push((without("kind"), "kind"));
    cases.push((with("kind", json!("twilio")), "kind"));
    cases.push((with("kind", json!("livekit")), "kind"));
    cases.push((with("kind", json!("pstn")), "kind"));
    cases.push((without("direction"), "direction"));
    cases.push((with("direction", json!("sideways")), "direction"));
    cases.push((without("sip_address"), "sip_address"));
    cases.push((
        with("sip_address", json!("sip:carrier.example")),
        "sip_address",
    ));
    cases.push((
        with("sip_address", json!("carrier.example:99999")),
        "sip_address",
    ));
    cases.push((
        with("sip_address", json!("bad host.example")),
        "sip_address",
    ));
    cases.push((without("auth_password"), "auth_password"));
    cases.push((without("auth_username"), "auth_username"));
    cases.push((
        with("allowed_addresses", json!(["10.0.0.0/33"])),
        "allowed_addresses",
    ));
    cases.push((
        with("allowed_addresses", json!(["example.com"])),
        "allowed_addresses",
    ));
    cases.push((
        with("allowed_addresses", json!("10.0.0.1")),
        "allowed_addresses",
    ));
    cases.push((
        with("destination_country", json!("USA")),
        "destination_country",
    ));
    cases.push((
        with("destination_country", json!("us")),
        "destination_country",
    ));
    cases.push((
        with("destination_country", json!("XQ")),
        "destination_country",
    ));
    cases.push((with("transport", json!("sctp")), "transport"));
    cases.push((with("media_encryption", json!("maybe")), "media_encryption"));
    cases.push((with("credentials", json!("secret")), "credentials"));
    cases.push((with("numbers", json!(["+1415555010"])), "numbers"));
    cases.push((with("numbers", json!(["4155550100"])), "numbers"));
    cases.push((with("number_format", json!("E.164")), "number_format"));
    cases.push((
        with("dispatch", json!({"rule": "direct"})),
        "dispatch.room_name",
    ));
    cases.push((with("dispatch", json!({"rule": "queue"})), "dispatch.rule"));
    cases.push((with("dispatch", json!({"room": "x"})), "dispatch.room"));
    cases.push((with("colour", json!("blue")), "colour"));
    for (body, field) in cases {
        let answer = v1(api, "POST", "/v1/sip-trunks", Some(body.clone())).await;
        let fields = field_errors(&answer);
        assert!(fields.contains(&field.to_owned()), "{body} -> {answer:?}");
    }
    // Twilio and LiveKit kinds say what to do instead.
    let answer = v1(
        api,
        "POST",
        "/v1/sip-trunks",
        Some(with("kind", json!("twilio"))),
    )
    .await;
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("import"),
        "{answer:?}"
    );
    let answer = v1(
        api,
        "POST",
        "/v1/sip-trunks",
        Some(with("kind", json!("livekit"))),
    )
    .await;
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("self-hosted"),
        "{answer:?}"
    );
    // Not JSON, not an object.
    for body in [&b"{"[..], b"[1,2]", b""] {
        let (status, text) = http(
            api,
            "POST",
            "/v1/sip-trunks",
            &[("Authorization", &format!("Bearer {SECRET}"))],
            body,
        )
        .await;
        assert_eq!(status, 400, "{text}");
    }
    // Nothing was written by any of them.
    let (status, page) = v1(api, "GET", "/v1/sip-trunks", None).await;
    assert_eq!(status, 200);
    assert_eq!(page["data"], json!([]));
    assert_eq!(livekit_records(api).await, (vec![], vec![], vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_ids_the_cap_and_pages() {
    let (_sb, api) = start(&[("SWITCHBOARD_PLATFORM__MAX_TRUNKS", "3")]);
    // Keys: none, not Bearer, wrong, a token without the grant, a good token.
    let body = Some(json!({}));
    let (status, answer) = v1_as(api, "GET", "/v1/sip-trunks", None, "").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = v1_as(
        api,
        "GET",
        "/v1/sip-trunks",
        None,
        &format!("Basic {SECRET}"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = v1_as(
        api,
        "POST",
        "/v1/sip-trunks",
        body.clone(),
        "Bearer sk_wrong",
    )
    .await;
    assert_eq!(status, 401);
    let weak = token(json!({"sip": {"call": true}}));
    let (status, _) = v1_as(
        api,
        "GET",
        "/v1/sip-trunks",
        None,
        &format!("Bearer {weak}"),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = v1_as(
        api,
        "GET",
        "/v1/sip-trunks",
        None,
        &format!("Bearer {}", admin()),
    )
    .await;
    assert_eq!(status, 200);

    // The cap: three trunks, the fourth is 402 and writes nothing.
    let mut ids = Vec::new();
    for n in 0..3 {
        let mut body = carrier(&format!("t{n}"));
        body["numbers"] = json!([format!("+1415555010{n}")]);
        let (status, trunk) = v1(api, "POST", "/v1/sip-trunks", Some(body)).await;
        assert_eq!(status, 201, "{trunk}");
        ids.push(trunk["id"].as_str().unwrap().to_owned());
    }
    let mut body = carrier("t3");
    body["numbers"] = json!(["+14155550109"]);
    let (status, answer) = v1(api, "POST", "/v1/sip-trunks", Some(body)).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (402, Some("trunk_limit_reached")),
        "{answer}"
    );
    let (ins, _, _) = livekit_records(api).await;
    assert_eq!(ins.len(), 3);

    // IDs: only the prefixed form; legacy forms are 404 as the seed says.
    for bad in [
        "3f1c2b8e-5c1a-4e7a-9d2b-1a2b3c4d5e6f",
        "ST_abcdefghijkl",
        "trunk_",
        &ids[0].to_lowercase(),
        &ids[0][6..],
    ] {
        let (status, answer) = v1(api, "GET", &format!("/v1/sip-trunks/{bad}"), None).await;
        assert_eq!(status, 404, "{bad}: {answer}");
    }

    // Pages, oldest first, with a cursor.
    let (status, page) = v1(api, "GET", "/v1/sip-trunks?limit=2", None).await;
    assert_eq!(status, 200, "{page}");
    let first: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(first, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(page["has_more"], true);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page) = v1(
        api,
        "GET",
        &format!("/v1/sip-trunks?limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(page["data"][0]["id"], ids[2].as_str());
    assert_eq!(page["has_more"], false);
    assert_eq!(page["next_cursor"], Value::Null);
    for bad in ["limit=0", "limit=101", "limit=x", "cursor=ST_x"] {
        let (status, _) = v1(api, "GET", &format!("/v1/sip-trunks?{bad}"), None).await;
        assert_eq!(status, 400, "{bad}");
    }
    // After a delete there is room for one more.
    let (status, _) = v1(api, "DELETE", &format!("/v1/sip-trunks/{}", ids[1]), None).await;
    assert_eq!(status, 200);
    let mut body = carrier("t4");
    body["numbers"] = json!(["+14155550109"]);
    let (status, _) = v1(api, "POST", "/v1/sip-trunks", Some(body)).await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_between_the_inbound_and_the_outbound_trunk_leaves_nothing() {
    let (sb, api) = start(&[("SWITCHBOARD_FAULT", "platform-after-inbound")]);
    let (status, answer) = v1(api, "POST", "/v1/sip-trunks", Some(carrier("Acme"))).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (500, Some("internal")),
        "{answer}"
    );
    assert_eq!(livekit_records(api).await, (vec![], vec![], vec![]));
    let (_, page) = v1(api, "GET", "/v1/sip-trunks", None).await;
    assert_eq!(page["data"], json!([]));
    assert!(sb.log().contains("injected fault"), "{}", sb.log());
}

fn extension_trunk() -> Value {
    json!({
        "sip_trunk_type": "number",
        "phone_number": "+442079460000",
        "name": "Provider X — Main",
        "username": "provx",
        "password": PASSWORD,
        "sip_server": "sip.provider.example",
        "outbound_number_format": "national",
        "inbound_authorization_type": "auth",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_trunks_by_number_or_extension() {
    let (_sb, api) = start(&[]);
    let (status, answer) = v1(api, "POST", "/v1/sip-trunk", Some(extension_trunk())).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["message"], "SIP trunk created");
    let trunk = &answer["sip_trunk"];
    assert!(is_trunk_id(trunk["id"].as_str().unwrap()));
    // The country comes from the number.
    assert_eq!(trunk["country"], "GB");
    assert_eq!(trunk["outbound_number_format"], "national");
    assert_eq!(trunk["password_set"], true);
    assert_eq!(trunk["use_fixed_outbound_ip"], false);
    let id = trunk["id"].as_str().unwrap().to_owned();
    // Seed 001's view of the same trunk.
    let (_, carrier_view) = v1(api, "GET", &format!("/v1/sip-trunks/{id}"), None).await;
    assert_eq!(carrier_view["direction"], "both");
    assert_eq!(carrier_view["kind"], "byoc");
    assert_eq!(carrier_view["numbers"], json!(["+442079460000"]));
    let (ins, outs, rules) = livekit_records(api).await;
    assert_eq!((ins.len(), outs.len(), rules.len()), (1, 1, 1));

    // IP authorisation: needs IPs, each an IP; then the inbound trunk has no digest.
    let mut body = extension_trunk();
    body["phone_number"] = json!("+12025550123");
    body["inbound_authorization_type"] = json!("ip");
    let fields = field_errors(&v1(api, "POST", "/v1/sip-trunk", Some(body.clone())).await);
    assert_eq!(fields, ["allowed_inbound_ips"]);
    body["allowed_inbound_ips"] = json!(["203.0.113.9/32"]);
    let fields = field_errors(&v1(api, "POST", "/v1/sip-trunk", Some(body.clone())).await);
    assert_eq!(fields, ["allowed_inbound_ips"]);
    body["allowed_inbound_ips"] = json!(["203.0.113.9"]);
    let (status, answer) = v1(api, "POST", "/v1/sip-trunk", Some(body)).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["sip_trunk"]["country"], "US");
    let inbound = answer["sip_trunk"]["livekit_inbound_trunk_id"]
        .as_str()
        .unwrap();
    let (_, got) = sip_service(
        api,
        "GetSIPInboundTrunk",
        &admin(),
        json!({"sip_trunk_id": inbound}),
    )
    .await;
    assert_eq!(got["trunk"]["allowed_addresses"], json!(["203.0.113.9"]));
    assert_eq!(got["trunk"]["auth_username"], "", "{got}");

    // An extension trunk.
    let mut body = extension_trunk();
    body["sip_trunk_type"] = json!("extension");
    body["phone_number"] = json!("1000");
    body["outbound_number_format"] = json!("+e164");
    let (status, answer) = v1(api, "POST", "/v1/sip-trunk", Some(body)).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["sip_trunk"]["phone_number"], "1000");

    // Every rule of the seed.
    let with = |key: &str, value: Value| {
        let mut body = extension_trunk();
        body[key] = value;
        body
    };
    let cases = [
        (with("sip_trunk_type", json!("did")), "sip_trunk_type"),
        (with("phone_number", json!("02079460000")), "phone_number"),
        (
            with("phone_number", json!("+4420794600001234")),
            "phone_number",
        ),
        (with("name", json!("x".repeat(51))), "name"),
        (with("username", json!("ab")), "username"),
        (with("username", json!("u".repeat(129))), "username"),
        (with("password", json!("pw")), "password"),
        (
            with("sip_server", json!("sip.provider.example:5060")),
            "sip_server",
        ),
        (with("sip_server", json!("")), "sip_server"),
        (
            with("outbound_number_format", json!("E164")),
            "outbound_number_format",
        ),
        (
            with("inbound_authorization_type", json!("token")),
            "inbound_authorization_type",
        ),
        (with("country", json!("United Kingdom")), "country"),
        (
            with("use_fixed_outbound_ip", json!("yes")),
            "use_fixed_outbound_ip",
        ),
    ];
    for (body, field) in cases {
        let answer = v1(api, "POST", "/v1/sip-trunk", Some(body.clone())).await;
        let fields = field_errors(&answer);
        assert!(fields.contains(&field.to_owned()), "{body} -> {answer:?}");
    }
    let mut body = extension_trunk();
    body["sip_trunk_type"] = json!("extension");
    body["phone_number"] = json!("1234567890123456");
    let fields = field_errors(&v1(api, "POST", "/v1/sip-trunk", Some(body.clone())).await);
    // A national format needs a country, which an extension cannot tell.
    assert_eq!(fields, ["phone_number", "country"]);
    body["country"] = json!("GB");
    let fields = field_errors(&v1(api, "POST", "/v1/sip-trunk", Some(body)).await);
    assert_eq!(fields, ["phone_number"]);

    // PATCH under seed 004's names; the list under its shape.
    let (status, answer) = v1(
        api,
        "PATCH",
        &format!("/v1/sip-trunk/{id}"),
        Some(json!({"outbound_number_format": "e164", "use_fixed_outbound_ip": true})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["sip_trunk"]["outbound_number_format"], "e164");
    assert_eq!(answer["sip_trunk"]["use_fixed_outbound_ip"], true);
    let (_, page) = v1(api, "GET", "/v1/sip-trunk", None).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    assert!(page["data"][0].get("sip_trunk_type").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_and_is_the_committed_one() {
    let (_sb, api) = start(&[]);
    let (status, text) = http(api, "GET", "/v1/openapi.json", &[], b"").await;
    assert_eq!(status, 200);
    let served: Value = serde_json::from_str(&text).unwrap();
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("docs/openapi-v1.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(served, committed);
    assert_eq!(served["openapi"], "3.0.3");
    for path in [
        "/v1/sip-trunks",
        "/v1/sip-trunks/{id}",
        "/v1/sip-trunk",
        "/v1/sip-trunk/{id}",
    ] {
        assert!(served["paths"].get(path).is_some(), "{path}");
    }
    let (status, answer) = v1(api, "GET", "/v1/nothing-here", None).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

/// Schemathesis generates requests from docs/openapi-v1.json (valid ones,
/// invalid ones and create-then-use sequences through the document's links)
/// and checks every answer against it: no 5xx, only documented statuses,
/// content types and bodies, and every schema-violating request refused.
/// Its "schema-valid request rejected" check is left out: JSON Schema cannot
/// say what is also checked (a number that is valid in its country, LiveKit's
/// rule that an inbound trunk needs credentials, addresses or numbers,
/// conflicts with stored trunks), so those are answered 400 and tested above.
#[test]
fn schemathesis_finds_no_failure_against_the_openapi_document() {
    let (sb, api) = start(&[("SWITCHBOARD_PLATFORM__MAX_TRUNKS", "100000")]);
    let report = sb.dir().join("schemathesis");
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys; from schemathesis.cli import schemathesis; \
             sys.argv[0] = 'schemathesis'; sys.exit(schemathesis())",
            "run",
            &format!("http://{api}/v1/openapi.json"),
            "--header",
            &format!("Authorization: Bearer {SECRET}"),
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "50",
            "--generation-deterministic",
            "--report-dir",
        ])
        .arg(&report)
        .current_dir(sb.dir())
        .output()
        .expect("python3 runs schemathesis (tests/deps/platform.pip)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "schemathesis failed:\n{text}");
    assert!(text.contains("passed"), "{text}");
    assert!(!sb.log().contains("panicked"), "{}", sb.log());
    assert!(!sb.log().contains(SECRET), "the secret reached the log");
}

/// `switchboard trunk ...` against the server, as a user types it.
fn trunk_cli(sb: &Switchboard, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("trunk")
        .args(args)
        .env("LIVEKIT_URL", format!("http://{}", sb.api.unwrap()))
        .env("LIVEKIT_API_KEY", common::api::KEY)
        .env("LIVEKIT_API_SECRET", SECRET)
        .output()
        .unwrap()
}

#[test]
fn the_trunk_command_creates_lists_changes_and_deletes() {
    let (sb, _api) = start(&[]);
    let out = trunk_cli(
        &sb,
        &[
            "create",
            "--name",
            "Acme",
            "--kind",
            "byoc",
            "--direction",
            "both",
            "--address",
            "sip.acme.example",
            "--username",
            "acme",
            "--request",
            &format!(r#"{{"auth_password": "{PASSWORD}"}}"#),
            "--numbers",
            "+14155550100,+14155550101",
            "--number-format",
            "national",
            "--country",
            "US",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains(PASSWORD));
    let created: Value = serde_json::from_str(&stdout).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["numbers"], json!(["+14155550100", "+14155550101"]));
    assert_eq!(created["auth_password_set"], true);

    let out = trunk_cli(&sb, &["list"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success());
    assert!(
        table.contains(&id) && table.contains("Acme") && table.contains("sip.acme.example"),
        "{table}"
    );

    let out = trunk_cli(&sb, &["update", &id, "--direction", "outbound"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let updated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        updated.get("livekit_inbound_trunk_id").is_none(),
        "{updated}"
    );

    // A refused request exits 1 with every bad field on one line.
    let out = trunk_cli(
        &sb,
        &[
            "update",
            &id,
            "--transport",
            "carrier-pigeon",
            "--country",
            "USA",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stderr.contains("invalid_request (HTTP 400)")
            && stderr.contains("transport")
            && stderr.contains("destination_country"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let out = trunk_cli(&sb, &["get", &id]);
    assert!(out.status.success());
    let out = trunk_cli(&sb, &["delete", &id]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("deleted {id}")
    );
    let out = trunk_cli(&sb, &["get", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_found (HTTP 404)"));
    let out = trunk_cli(&sb, &["get", "../twirp"]);
    assert_eq!(out.status.code(), Some(2));
}

/// The README's two curl examples, run as written (against this server).
#[test]
fn the_readme_curl_examples_work_as_written() {
    let (sb, api) = start(&[]);
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let section = readme
        .split("## Carrier trunk API")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has a Carrier trunk API section");
    let mut commands = Vec::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        let code = line.strip_prefix("    ");
        match (code, current.as_mut()) {
            (Some(text), None) if text.starts_with("curl ") => current = Some(text.to_owned()),
            (Some(text), Some(command)) if !text.starts_with('#') => {
                command.push('\n');
                command.push_str(text);
            }
            _ => {
                if let Some(command) = current.take() {
                    commands.push(command);
                }
            }
        }
    }
    assert_eq!(commands.len(), 2, "{commands:?}");
    let mut answers = Vec::new();
    for command in &commands {
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(command.replace("http://localhost:7880", &format!("http://{api}")))
            .env("LIVEKIT_API_SECRET", SECRET)
            .output()
            .unwrap();
        assert!(output.status.success(), "{command}: {output:?}");
        let answer: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{command}: {e}: {output:?}"));
        answers.push(answer);
    }
    assert!(
        is_trunk_id(answers[0]["id"].as_str().unwrap()),
        "{}",
        answers[0]
    );
    assert_eq!(answers[0]["auth_password_set"], true);
    assert!(answers[0]["livekit_dispatch_rule_id"].is_string());
    assert_eq!(answers[1]["message"], "SIP trunk created", "{}", answers[1]);
    assert_eq!(answers[1]["sip_trunk"]["country"], "GB");
    assert!(!sb.log().contains("s3cret"));
}

//! The LiveKit SIP API of the real `switchboard serve` binary, driven over
//! HTTP with raw JSON and raw protobuf requests on ephemeral loopback ports:
//! every method, the JSON LiveKit's server writes, Twirp errors, tokens and
//! grants, the body limit, pagination, ExplainCall, health and drain, and
//! two replicas sharing one real redis-server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::Switchboard;
use hmac::{Hmac, KeyInit, Mac};
use prost::Message;
use serde_json::{json, Value};
use sha2::Sha256;
use switchboard_routing::livekit_protocol as lk;

// The key every end-to-end test uses, so the shared helpers' tokens
// (/debug/state) work here too; the tokens of this file are signed here.
use common::api::{store_version, wait_for_routing, KEY, SECRET};

// ---------------------------------------------------------------- HTTP

/// One HTTP response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a Twirp error: status, exact content type, code, message.
    fn assert_twirp(&self, status: u16, code: &str, msg: &str) -> Value {
        assert_eq!(self.status, status, "{self:?} {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        assert_eq!(v["msg"], msg, "{v}");
        v
    }
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the answer.
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && *v == "chunked");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !chunked {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    if chunked {
        for part in body.chunks(100) {
            s.write_all(format!("{:x}\r\n", part.len()).as_bytes())
                .unwrap();
            s.write_all(part).unwrap();
            s.write_all(b"\r\n").unwrap();
        }
        // The server may answer 413 and close before the end: ignore errors.
        let _ = s.write_all(b"0\r\n\r\n");
    } else {
        // Same: a refused oversized body may not be read in full.
        let _ = s.write_all(body);
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 4 + size..];
    }
}

// ---------------------------------------------------------------- tokens

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An HS256 JWT over `claims`, signed here (not with the server's library).
fn jwt(secret: &str, claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// Claims as the Python SDK sends them, with `grants` merged in.
fn claims(grants: Value) -> Value {
    let mut c = json!({"iss": KEY, "sub": "", "nbf": now(), "exp": now() + 600});
    for (k, v) in grants.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn admin_token() -> String {
    jwt(SECRET, &claims(json!({"sip": {"admin": true}})))
}

fn call_token() -> String {
    jwt(SECRET, &claims(json!({"sip": {"call": true}})))
}

// ---------------------------------------------------------------- server

struct Api {
    sb: Switchboard,
    addr: SocketAddr,
}

fn start(env: &[(&str, &str)]) -> Api {
    let mut all = vec![("LIVEKIT_API_KEY", KEY), ("LIVEKIT_API_SECRET", SECRET)];
    all.extend_from_slice(env);
    let sb = Switchboard::start(&all);
    let addr = sb.api.expect("the ready file names the API address");
    Api { sb, addr }
}

impl Api {
    fn json_as(&self, token: &str, method: &str, body: Value) -> Resp {
        let auth = format!("Bearer {token}");
        http(
            self.addr,
            "POST",
            &format!("/twirp/livekit.SIP/{method}"),
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
            body.to_string().as_bytes(),
        )
    }

    fn json(&self, method: &str, body: Value) -> Resp {
        self.json_as(&admin_token(), method, body)
    }

    /// A JSON call that must succeed; its body.
    fn ok(&self, method: &str, body: Value) -> Value {
        let r = self.json(method, body);
        assert_eq!(r.status, 200, "{method}: {}\n{}", r.text(), self.sb.log());
        assert_eq!(r.header("content-type"), Some("application/json"));
        r.json()
    }

    fn proto<Req: Message, Resp_: Message + Default>(
        &self,
        token: &str,
        method: &str,
        req: &Req,
    ) -> Result<Resp_, Resp> {
        let auth = format!("Bearer {token}");
        let r = http(
            self.addr,
            "POST",
            &format!("/twirp/livekit.SIP/{method}"),
            &[
                ("Content-Type", "application/protobuf"),
                ("Authorization", &auth),
            ],
            &req.encode_to_vec(),
        );
        if r.status != 200 {
            return Err(r);
        }
        assert_eq!(r.header("content-type"), Some("application/protobuf"));
        Ok(Resp_::decode(r.body.as_slice()).unwrap())
    }

    fn explain(&self, body: Value) -> Value {
        let auth = format!("Bearer {}", admin_token());
        let r = http(
            self.addr,
            "POST",
            "/twirp/switchboard.SIP/ExplainCall",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }
}

fn inbound_trunk_json(number: &str) -> Value {
    json!({"trunk": {"name": "in", "numbers": [number], "allowedAddresses": ["127.0.0.1"]}})
}

// ---------------------------------------------------------------- tests

#[test]
fn every_method_over_json_answers_as_livekits_server_writes() {
    let api = start(&[]);

    // Create (camelCase input, enum by name, Duration as "30s").
    let created = api.ok(
        "CreateSIPInboundTrunk",
        json!({"trunk": {"name": "carrier", "numbers": ["+15550100"],
                         "allowedAddresses": ["203.0.113.0/24"], "authUsername": "u",
                         "authPassword": "pw-never-logged", "includeHeaders": "SIP_X_HEADERS",
                         "ringingTimeout": "30s", "krispEnabled": true}}),
    );
    let id = created["sip_trunk_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("ST_") && id.len() == 15, "{id}");
    let expected_keys = [
        "sip_trunk_id",
        "name",
        "metadata",
        "numbers",
        "allowed_addresses",
        "allowed_numbers",
        "auth_username",
        "auth_password",
        "auth_realm",
        "headers",
        "headers_to_attributes",
        "attributes_to_headers",
        "include_headers",
        "ringing_timeout",
        "ringing_timeout_status",
        "max_call_duration",
        "krisp_enabled",
        "media_encryption",
        "media",
        "created_at",
        "updated_at",
    ];
    let keys: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted_expected = expected_keys.to_vec();
    sorted_expected.sort_unstable();
    let mut sorted_keys = keys.clone();
    sorted_keys.sort_unstable();
    assert_eq!(
        sorted_keys, sorted_expected,
        "every field, snake_case: {created}"
    );
    assert_eq!(created["allowed_numbers"], json!([]));
    assert_eq!(created["metadata"], "");
    assert_eq!(created["headers"], json!({}));
    assert_eq!(created["include_headers"], "SIP_X_HEADERS");
    assert_eq!(created["ringing_timeout"], "30s");
    assert_eq!(created["max_call_duration"], Value::Null);
    assert_eq!(created["media"], Value::Null);
    assert_eq!(created["media_encryption"], "SIP_MEDIA_ENCRYPT_DISABLE");
    assert_eq!(created["krisp_enabled"], true);
    let created_at = created["created_at"].as_str().unwrap();
    assert!(
        created_at.ends_with('Z') && created_at.contains('T'),
        "{created_at}"
    );

    // Get, Update (ListUpdate), List.
    let got = api.ok("GetSIPInboundTrunk", json!({"sip_trunk_id": id}));
    // Get and List leave the password out (api.return_passwords is off).
    let mut shown = created.clone();
    shown["auth_password"] = json!("");
    assert_eq!(got["trunk"], shown);
    let updated = api.ok(
        "UpdateSIPInboundTrunk",
        json!({"sipTrunkId": id, "update": {"numbers": {"add": ["+15550101"]}, "name": "renamed"}}),
    );
    assert_eq!(updated["numbers"], json!(["+15550100", "+15550101"]));
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["created_at"], created["created_at"]);
    let replaced = api.ok(
        "UpdateSIPInboundTrunk",
        json!({"sip_trunk_id": id, "replace": {"name": "replaced", "numbers": ["+15550199"]}}),
    );
    assert_eq!(replaced["sip_trunk_id"], id.as_str());
    assert_eq!(replaced["allowed_addresses"], json!([]));
    let listed = api.ok("ListSIPInboundTrunk", json!({}));
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["name"], "replaced");

    // Outbound trunks.
    let out = api.ok(
        "CreateSIPOutboundTrunk",
        json!({"trunk": {"name": "out", "address": "sip.example.com", "numbers": ["+15550200"],
                         "transport": "SIP_TRANSPORT_TCP", "destinationCountry": "US"}}),
    );
    let out_id = out["sip_trunk_id"].as_str().unwrap().to_string();
    assert_eq!(out["transport"], "SIP_TRANSPORT_TCP");
    assert_eq!(out["from_host"], "");
    assert_eq!(out["destination_country"], "US");
    let got = api.ok("GetSIPOutboundTrunk", json!({"sip_trunk_id": out_id}));
    assert_eq!(got["trunk"]["address"], "sip.example.com");
    let updated = api.ok(
        "UpdateSIPOutboundTrunk",
        json!({"sip_trunk_id": out_id, "update": {"transport": 3, "address": "sip2.example.com"}}),
    );
    assert_eq!(updated["transport"], "SIP_TRANSPORT_TLS");
    assert_eq!(updated["address"], "sip2.example.com");
    assert_eq!(
        api.ok("ListSIPOutboundTrunk", json!({}))["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The deprecated ListSIPTrunk shows both, as SIPTrunkInfo.
    let legacy = api.ok("ListSIPTrunk", json!({}));
    let kinds: Vec<&str> = legacy["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 2);
    assert!(
        kinds.contains(&"TRUNK_INBOUND") && kinds.contains(&"TRUNK_OUTBOUND"),
        "{legacy}"
    );

    // Dispatch rules: the new shape, then the Node SDK's legacy top-level fields.
    let rule = api.ok(
        "CreateSIPDispatchRule",
        json!({"dispatch_rule": {"name": "direct", "trunk_ids": [id],
               "rule": {"dispatch_rule_direct": {"room_name": "lobby"}}}}),
    );
    let rule_id = rule["sip_dispatch_rule_id"].as_str().unwrap().to_string();
    assert!(rule_id.starts_with("SDR_"), "{rule}");
    assert_eq!(
        rule["rule"],
        json!({"dispatch_rule_direct": {"room_name": "lobby", "pin": ""}})
    );
    assert_eq!(rule["room_config"], Value::Null);
    assert_eq!(rule["inbound_numbers"], json!([]));
    let legacy_rule = api.ok(
        "CreateSIPDispatchRule",
        json!({"rule": {"dispatchRuleIndividual": {"roomPrefix": "call-"}},
               "trunkIds": [], "hidePhoneNumber": true, "name": "node-style",
               "attributes": {"team": "support"}}),
    );
    assert_eq!(legacy_rule["name"], "node-style");
    assert_eq!(legacy_rule["hide_phone_number"], true);
    assert_eq!(legacy_rule["attributes"], json!({"team": "support"}));
    assert_eq!(
        legacy_rule["rule"]["dispatch_rule_individual"]["room_prefix"],
        "call-"
    );
    let updated_rule = api.ok(
        "UpdateSIPDispatchRule",
        json!({"sip_dispatch_rule_id": rule_id, "update": {"metadata": "m",
               "attributes": {"k": "v"}}}),
    );
    assert_eq!(updated_rule["metadata"], "m");
    assert_eq!(
        api.ok("ListSIPDispatchRule", json!({}))["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let deleted = api.ok(
        "DeleteSIPDispatchRule",
        json!({"sip_dispatch_rule_id": rule_id}),
    );
    assert_eq!(deleted["sip_dispatch_rule_id"], rule_id.as_str());
    assert_eq!(deleted["metadata"], "m");
    api.json(
        "DeleteSIPDispatchRule",
        json!({"sip_dispatch_rule_id": rule_id}),
    )
    .assert_twirp(
        404,
        "not_found",
        "requested sip dispatch rule does not exist",
    );

    // DeleteSIPTrunk does not check existence and names the ID either way.
    let gone = api.ok("DeleteSIPTrunk", json!({"sip_trunk_id": id}));
    assert_eq!(gone["sip_trunk_id"], id.as_str());
    assert_eq!(gone["kind"], "TRUNK_LEGACY");
    assert_eq!(gone["inbound_numbers"], json!([]));
    let again = api.ok("DeleteSIPTrunk", json!({"sip_trunk_id": "ST_doesnotexist"}));
    assert_eq!(again["sip_trunk_id"], "ST_doesnotexist");
    api.json("GetSIPInboundTrunk", json!({"sip_trunk_id": id}))
        .assert_twirp(404, "not_found", "requested sip trunk does not exist");

    // Outbound calls and transfers are validated first. The trunk is
    // pointed at TEST-NET-1 (RFC 5737, never routed) so the call placed
    // below reaches no real carrier.
    api.ok(
        "UpdateSIPOutboundTrunk",
        json!({"sip_trunk_id": out_id, "update": {"address": "192.0.2.20", "transport": 1}}),
    );
    api.json_as(
        &call_token(),
        "CreateSIPParticipant",
        json!({"sip_trunk_id": "ST_missing", "sip_call_to": "+15550300", "room_name": "r"}),
    )
    .assert_twirp(404, "not_found", "requested sip trunk does not exist");
    api.json_as(
        &call_token(),
        "CreateSIPParticipant",
        json!({"sip_trunk_id": out_id, "room_name": "r"}),
    )
    .assert_twirp(400, "invalid_argument", "missing sip callee number");
    let r = api.json_as(
        &call_token(),
        "CreateSIPParticipant",
        json!({"sipTrunkId": out_id, "sipCallTo": "+15550300", "roomName": "r"}),
    );
    // Valid: the callee joins the room and dialling goes on in the
    // background (the trunk is not a real carrier here).
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["participant_identity"], "sip_+15550300", "{v}");
    assert_eq!(v["room_name"], "r", "{v}");
    assert!(
        v["sip_call_id"].as_str().unwrap().starts_with("SCL_"),
        "{v}"
    );
    let transfer_token = jwt(
        SECRET,
        &claims(json!({"sip": {"call": true}, "video": {"roomAdmin": true, "room": "r"}})),
    );
    api.json_as(
        &transfer_token,
        "TransferSIPParticipant",
        json!({"room_name": "r", "participant_identity": "p", "transfer_to": "+1555"}),
    )
    .assert_twirp(
        400,
        "invalid_argument",
        "transfer_to must be a valid SIP or TEL URI (sip:, sips: or tel:)",
    );
    api.json_as(
        &transfer_token,
        "TransferSIPParticipant",
        json!({"room_name": "r", "participant_identity": "p", "transfer_to": "tel:+1555"}),
    )
    .assert_twirp(404, "not_found", r#"participant "p" not found in room "r""#);

    // The trunk password was stored and returned, but never logged.
    assert!(
        !api.sb.log().contains("pw-never-logged"),
        "{}",
        api.sb.log()
    );
}

#[test]
fn every_method_over_protobuf_answers_in_protobuf() {
    let api = start(&[]);
    let admin = admin_token();
    let trunk: lk::SipInboundTrunkInfo = api
        .proto(
            &admin,
            "CreateSIPInboundTrunk",
            &lk::CreateSipInboundTrunkRequest {
                trunk: Some(lk::SipInboundTrunkInfo {
                    name: "pb".into(),
                    numbers: vec!["+15550100".into()],
                    auth_username: "u".into(),
                    auth_password: "p".into(),
                    ..Default::default()
                }),
            },
        )
        .unwrap();
    assert!(trunk.sip_trunk_id.starts_with("ST_"));
    assert!(trunk.created_at.is_some());
    let got: lk::GetSipInboundTrunkResponse = api
        .proto(
            &admin,
            "GetSIPInboundTrunk",
            &lk::GetSipInboundTrunkRequest {
                sip_trunk_id: trunk.sip_trunk_id.clone(),
            },
        )
        .unwrap();
    let shown = lk::SipInboundTrunkInfo {
        auth_password: String::new(),
        ..trunk.clone()
    };
    assert_eq!(got.trunk.as_ref(), Some(&shown));
    let updated: lk::SipInboundTrunkInfo = api
        .proto(
            &admin,
            "UpdateSIPInboundTrunk",
            &lk::UpdateSipInboundTrunkRequest {
                sip_trunk_id: trunk.sip_trunk_id.clone(),
                action: Some(lk::update_sip_inbound_trunk_request::Action::Update(
                    lk::SipInboundTrunkUpdate {
                        metadata: Some("meta".into()),
                        ..Default::default()
                    },
                )),
            },
        )
        .unwrap();
    assert_eq!(updated.metadata, "meta");
    let list: lk::ListSipInboundTrunkResponse = api
        .proto(
            &admin,
            "ListSIPInboundTrunk",
            &lk::ListSipInboundTrunkRequest::default(),
        )
        .unwrap();
    assert_eq!(
        list.items,
        vec![lk::SipInboundTrunkInfo {
            auth_password: String::new(),
            ..updated.clone()
        }]
    );

    let out: lk::SipOutboundTrunkInfo = api
        .proto(
            &admin,
            "CreateSIPOutboundTrunk",
            &lk::CreateSipOutboundTrunkRequest {
                trunk: Some(lk::SipOutboundTrunkInfo {
                    name: "out".into(),
                    address: "sip.example.com:5080".into(),
                    numbers: vec!["+15550200".into()],
                    ..Default::default()
                }),
            },
        )
        .unwrap();
    let got: lk::GetSipOutboundTrunkResponse = api
        .proto(
            &admin,
            "GetSIPOutboundTrunk",
            &lk::GetSipOutboundTrunkRequest {
                sip_trunk_id: out.sip_trunk_id.clone(),
            },
        )
        .unwrap();
    assert_eq!(got.trunk.as_ref(), Some(&out));
    let out2: lk::SipOutboundTrunkInfo = api
        .proto(
            &admin,
            "UpdateSIPOutboundTrunk",
            &lk::UpdateSipOutboundTrunkRequest {
                sip_trunk_id: out.sip_trunk_id.clone(),
                action: Some(lk::update_sip_outbound_trunk_request::Action::Update(
                    lk::SipOutboundTrunkUpdate {
                        numbers: Some(lk::ListUpdate {
                            add: vec!["+15550201".into()],
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )),
            },
        )
        .unwrap();
    assert_eq!(out2.numbers, vec!["+15550200", "+15550201"]);
    let outs: lk::ListSipOutboundTrunkResponse = api
        .proto(
            &admin,
            "ListSIPOutboundTrunk",
            &lk::ListSipOutboundTrunkRequest::default(),
        )
        .unwrap();
    assert_eq!(outs.items.len(), 1);
    let legacy: lk::ListSipTrunkResponse = api
        .proto(&admin, "ListSIPTrunk", &lk::ListSipTrunkRequest::default())
        .unwrap();
    assert_eq!(legacy.items.len(), 2);

    let rule: lk::SipDispatchRuleInfo = api
        .proto(
            &admin,
            "CreateSIPDispatchRule",
            &lk::CreateSipDispatchRuleRequest {
                dispatch_rule: Some(lk::SipDispatchRuleInfo {
                    rule: Some(lk::SipDispatchRule {
                        rule: Some(lk::sip_dispatch_rule::Rule::DispatchRuleCallee(
                            lk::SipDispatchRuleCallee {
                                room_prefix: "to-".into(),
                                ..Default::default()
                            },
                        )),
                    }),
                    trunk_ids: vec![trunk.sip_trunk_id.clone()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap();
    let rule2: lk::SipDispatchRuleInfo = api
        .proto(
            &admin,
            "UpdateSIPDispatchRule",
            &lk::UpdateSipDispatchRuleRequest {
                sip_dispatch_rule_id: rule.sip_dispatch_rule_id.clone(),
                action: Some(lk::update_sip_dispatch_rule_request::Action::Update(
                    lk::SipDispatchRuleUpdate {
                        name: Some("named".into()),
                        ..Default::default()
                    },
                )),
            },
        )
        .unwrap();
    assert_eq!(rule2.name, "named");
    let rules: lk::ListSipDispatchRuleResponse = api
        .proto(
            &admin,
            "ListSIPDispatchRule",
            &lk::ListSipDispatchRuleRequest::default(),
        )
        .unwrap();
    assert_eq!(rules.items, vec![rule2.clone()]);
    let deleted: lk::SipDispatchRuleInfo = api
        .proto(
            &admin,
            "DeleteSIPDispatchRule",
            &lk::DeleteSipDispatchRuleRequest {
                sip_dispatch_rule_id: rule.sip_dispatch_rule_id.clone(),
            },
        )
        .unwrap();
    assert_eq!(deleted, rule2);
    let gone: lk::SipTrunkInfo = api
        .proto(
            &admin,
            "DeleteSIPTrunk",
            &lk::DeleteSipTrunkRequest {
                sip_trunk_id: out.sip_trunk_id.clone(),
            },
        )
        .unwrap();
    assert_eq!(gone.sip_trunk_id, out.sip_trunk_id);

    // Errors are JSON even for protobuf requests.
    let err = api
        .proto::<_, lk::SipParticipantInfo>(
            &call_token(),
            "CreateSIPParticipant",
            &lk::CreateSipParticipantRequest {
                sip_trunk_id: out.sip_trunk_id.clone(),
                sip_call_to: "+15550300".into(),
                room_name: "r".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    err.assert_twirp(404, "not_found", "requested sip trunk does not exist");
    let err = api
        .proto::<_, lk::TransferSipParticipantResponse>(
            &jwt(
                SECRET,
                &claims(json!({"sip": {"call": true}, "video": {"roomAdmin": true, "room": "r"}})),
            ),
            "TransferSIPParticipant",
            &lk::TransferSipParticipantRequest {
                room_name: "r".into(),
                participant_identity: "p".into(),
                transfer_to: "sip:x@example.com".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    err.assert_twirp(404, "not_found", r#"participant "p" not found in room "r""#);
    let err = api
        .proto::<_, lk::SipInboundTrunkInfo>(
            &admin,
            "CreateSIPInboundTrunk",
            &lk::CreateSipInboundTrunkRequest {
                trunk: Some(Default::default()),
            },
        )
        .unwrap_err();
    err.assert_twirp(
        400,
        "invalid_argument",
        "for security, one of the fields must be set: AuthUsername+AuthPassword, AllowedAddresses or Numbers",
    );
}

#[test]
fn errors_are_twirp_json_with_livekits_codes_and_statuses() {
    let api = start(&[]);
    // Validation and conflicts: invalid_argument, in Create and in Update.
    api.json("CreateSIPInboundTrunk", json!({"trunk": {"name": "open"}})).assert_twirp(
        400,
        "invalid_argument",
        "for security, one of the fields must be set: AuthUsername+AuthPassword, AllowedAddresses or Numbers",
    );
    // LiveKit's API reference posts the trunk's fields without the wrapper.
    let unwrapped = api.ok(
        "CreateSIPInboundTrunk",
        json!({"name": "My trunk", "numbers": ["+15105550100"]}),
    );
    assert_eq!(unwrapped["name"], "My trunk");
    assert_eq!(unwrapped["numbers"], json!(["+15105550100"]));
    api.json(
        "DeleteSIPTrunk",
        json!({"sip_trunk_id": unwrapped["sip_trunk_id"]}),
    );
    api.json("CreateSIPInboundTrunk", json!({})).assert_twirp(
        400,
        "invalid_argument",
        "missing trunk",
    );
    let a = api.ok("CreateSIPInboundTrunk", inbound_trunk_json("+15550100"));
    let r = api.json("CreateSIPInboundTrunk", inbound_trunk_json("+15550100"));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "invalid_argument");
    assert!(
        r.json()["msg"]
            .as_str()
            .unwrap()
            .starts_with("Conflicting inbound SIP Trunks"),
        "{}",
        r.text()
    );
    let id = a["sip_trunk_id"].as_str().unwrap();
    api.json(
        "UpdateSIPInboundTrunk",
        json!({"sip_trunk_id": id, "update": {"numbers": {"set": ["+1"], "add": ["+2"]}}}),
    )
    .assert_twirp(
        400,
        "invalid_argument",
        "cannot set and change the list at the same time",
    );
    api.json(
        "UpdateSIPInboundTrunk",
        json!({"sip_trunk_id": id, "replace": {"name": "now open"}}),
    )
    .assert_twirp(
        400,
        "invalid_argument",
        "for security, one of the fields must be set: AuthUsername+AuthPassword, AllowedAddresses or Numbers",
    );
    api.json("UpdateSIPInboundTrunk", json!({"update": {}}))
        .assert_twirp(400, "invalid_argument", "trunk id must be set");
    api.json("UpdateSIPInboundTrunk", json!({"sip_trunk_id": id}))
        .assert_twirp(
            400,
            "invalid_argument",
            "missing or unsupported update action",
        );
    api.json(
        "UpdateSIPOutboundTrunk",
        json!({"sip_trunk_id": "ST_nope", "update": {}}),
    )
    .assert_twirp(404, "not_found", "requested sip trunk does not exist");
    api.json(
        "UpdateSIPDispatchRule",
        json!({"sip_dispatch_rule_id": "SDR_nope", "update": {}}),
    )
    .assert_twirp(
        404,
        "not_found",
        "requested sip dispatch rule does not exist",
    );
    api.json(
        "CreateSIPDispatchRule",
        json!({"dispatch_rule": {"name": "no rule"}}),
    )
    .assert_twirp(400, "invalid_argument", "missing rule");
    api.json(
        "CreateSIPOutboundTrunk",
        json!({"trunk": {"address": "sip:x@y", "numbers": ["+1"]}}),
    )
    .assert_twirp(
        400,
        "invalid_argument",
        "trunk address should be a hostname or IP, not SIP URI",
    );

    // Malformed bodies.
    let auth = format!("Bearer {}", admin_token());
    let path = "/twirp/livekit.SIP/ListSIPInboundTrunk";
    let r = http(
        api.addr,
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        b"{not json",
    );
    r.assert_twirp(400, "malformed", "the json request could not be decoded");
    let r = http(
        api.addr,
        "POST",
        path,
        &[
            ("Content-Type", "application/protobuf"),
            ("Authorization", &auth),
        ],
        &[0x1a, 0x7f],
    );
    r.assert_twirp(
        400,
        "malformed",
        "the protobuf request could not be decoded",
    );
    // Unknown fields are ignored; charset parameters too.
    let r = http(
        api.addr,
        "POST",
        path,
        &[
            ("Content-Type", "application/json;charset=UTF-8"),
            ("Authorization", &auth),
        ],
        br#"{"whatever": [1]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // Routes.
    let v = http(
        api.addr,
        "POST",
        "/twirp/livekit.SIP/CreateSIPTrunk",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        b"{}",
    )
    .assert_twirp(
        404,
        "bad_route",
        r#"no handler for path "/twirp/livekit.SIP/CreateSIPTrunk""#,
    );
    assert_eq!(
        v["meta"],
        json!({"twirp_invalid_route": "POST /twirp/livekit.SIP/CreateSIPTrunk"})
    );
    let v = http(api.addr, "GET", path, &[("Authorization", &auth)], b"").assert_twirp(
        404,
        "bad_route",
        r#"unsupported method "GET" (only POST is allowed)"#,
    );
    assert_eq!(v["meta"]["twirp_invalid_route"], format!("GET {path}"));
    let v = http(
        api.addr,
        "POST",
        path,
        &[("Content-Type", "text/plain"), ("Authorization", &auth)],
        b"{}",
    )
    .assert_twirp(404, "bad_route", r#"unexpected Content-Type: "text/plain""#);
    assert_eq!(v["meta"]["twirp_invalid_route"], format!("POST {path}"));
    http(
        api.addr,
        "POST",
        "/twirp/livekit.Egress/ListEgress",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        b"{}",
    )
    .assert_twirp(
        404,
        "bad_route",
        r#"no handler for path "/twirp/livekit.Egress/ListEgress""#,
    );
    let r = http(api.addr, "GET", "/nothing-here", &[], b"");
    assert_eq!(r.status, 404);
}

#[test]
fn tokens_and_grants_are_checked_as_livekit_checks_them() {
    let api = start(&[]);
    let path = "/twirp/livekit.SIP/ListSIPInboundTrunk";
    let call = |headers: &[(&str, &str)]| {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        http(api.addr, "POST", path, &all, b"{}")
    };
    let bearer = |t: &str| format!("Bearer {t}");
    // LiveKit answers a refused token with plain text; we keep its 401 but
    // answer Twirp JSON, which the SDKs can read.
    let refused_401 = |r: &Resp| {
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(
            r.text().contains(r#""code":"unauthenticated""#),
            "{}",
            r.text()
        );
    };

    // No token: the method answers Twirp unauthenticated.
    call(&[]).assert_twirp(401, "unauthenticated", "permissions denied");
    // Valid token without the grant: the same.
    let t = call_token();
    call(&[("Authorization", &bearer(&t))]).assert_twirp(
        401,
        "unauthenticated",
        "permissions denied",
    );
    let t = jwt(SECRET, &claims(json!({"video": {"roomAdmin": true}})));
    call(&[("Authorization", &bearer(&t))]).assert_twirp(
        401,
        "unauthenticated",
        "permissions denied",
    );
    // Admin does not imply call.
    api.json(
        "CreateSIPParticipant",
        json!({"sip_trunk_id": "ST_x", "sip_call_to": "1", "room_name": "r"}),
    )
    .assert_twirp(401, "unauthenticated", "permissions denied");
    // Transfer needs call plus roomAdmin for that room.
    let body = json!({"room_name": "r", "participant_identity": "p", "transfer_to": "tel:+1"});
    for grants in [
        json!({"sip": {"call": true}}),
        json!({"sip": {"call": true}, "video": {"roomAdmin": true, "room": "other"}}),
        json!({"sip": {"admin": true}, "video": {"roomAdmin": true, "room": "r"}}),
        json!({"sip": {"call": true}, "video": {"room": "r"}}),
    ] {
        api.json_as(
            &jwt(SECRET, &claims(grants.clone())),
            "TransferSIPParticipant",
            body.clone(),
        )
        .assert_twirp(401, "unauthenticated", "permissions denied");
    }

    // Refused tokens: HTTP 401 in plain text, before Twirp.
    let ok = admin_token();
    assert_eq!(call(&[("Authorization", &bearer(&ok))]).status, 200);
    refused_401(&call(&[("Authorization", &format!("Token {ok}"))]));
    refused_401(&call(&[(
        "Authorization",
        &bearer(&jwt(
            "wrong-secret",
            &claims(json!({"sip": {"admin": true}})),
        )),
    )]));
    let mut c = claims(json!({"sip": {"admin": true}}));
    c["iss"] = json!("unknown-key");
    refused_401(&call(&[("Authorization", &bearer(&jwt(SECRET, &c)))]));
    let mut c = claims(json!({"sip": {"admin": true}}));
    c["exp"] = json!(now() - 120);
    let r = call(&[("Authorization", &bearer(&jwt(SECRET, &c)))]);
    refused_401(&r);
    assert!(
        r.text()
            .contains(r#""msg":"invalid token: token is expired (exp)""#),
        "{}",
        r.text()
    );
    let mut c = claims(json!({"sip": {"admin": true}}));
    c["nbf"] = json!(now() + 300);
    let r = call(&[("Authorization", &bearer(&jwt(SECRET, &c)))]);
    refused_401(&r);
    assert!(
        r.text()
            .contains(r#""msg":"invalid token: token not valid yet (nbf)""#),
        "{}",
        r.text()
    );
    let mut c = claims(json!({"sip": {"admin": true}}));
    c.as_object_mut().unwrap().remove("exp");
    refused_401(&call(&[("Authorization", &bearer(&jwt(SECRET, &c)))]));
    refused_401(&call(&[("Authorization", "Bearer not.a.jwt")]));
    // A signature over other claims (tampered payload).
    let good = admin_token();
    let other = jwt(SECRET, &claims(json!({"sip": {"admin": false}})));
    let parts: Vec<&str> = good.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
    refused_401(&call(&[("Authorization", &bearer(&tampered))]));
    // One minute of leeway on exp and nbf.
    let mut c = claims(json!({"sip": {"admin": true}}));
    c["exp"] = json!(now() - 20);
    c["nbf"] = json!(now() + 20);
    assert_eq!(
        call(&[("Authorization", &bearer(&jwt(SECRET, &c)))]).status,
        200
    );
    // The access_token query parameter.
    let r = http(
        api.addr,
        "POST",
        &format!("{path}?access_token={ok}"),
        &[("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // No token or secret ever reaches the log.
    let log = api.sb.log();
    assert!(!log.contains(&ok) && !log.contains(SECRET), "{log}");
}

#[test]
fn request_bodies_over_the_limit_get_413() {
    let api = start(&[("SWITCHBOARD_API__MAX_BODY_BYTES", "2000")]);
    let auth = format!("Bearer {}", admin_token());
    let big = json!({"trunk": {"name": "x".repeat(3000), "numbers": ["+1"]}}).to_string();
    for te in [None, Some("chunked")] {
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Authorization", auth.as_str()),
        ];
        if let Some(te) = te {
            headers.push(("Transfer-Encoding", te));
        }
        let r = http(
            api.addr,
            "POST",
            "/twirp/livekit.SIP/CreateSIPInboundTrunk",
            &headers,
            big.as_bytes(),
        );
        assert_eq!(r.status, 413, "{te:?}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json()["code"], "resource_exhausted");
    }
    // Nothing was written.
    assert_eq!(api.ok("ListSIPInboundTrunk", json!({}))["items"], json!([]));
    // Just under the limit is fine.
    let small = json!({"trunk": {"name": "x".repeat(1500), "numbers": ["+1"]}});
    assert_eq!(api.json("CreateSIPInboundTrunk", small).status, 200);
}

#[test]
fn pagination_honours_limit_and_after_id_and_filters_as_livekit() {
    let api = start(&[]);
    let mut ids = Vec::new();
    for i in 0..5 {
        let t = api.ok(
            "CreateSIPOutboundTrunk",
            json!({"trunk": {"address": "sip.example.com", "numbers": [format!("+1555000{i}")]}}),
        );
        ids.push(t["sip_trunk_id"].as_str().unwrap().to_string());
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = api.ok(
            "ListSIPOutboundTrunk",
            json!({"page": {"afterId": after, "limit": 2}}),
        );
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2, "limit is honoured literally: {page}");
        if items.is_empty() {
            break;
        }
        for t in items {
            seen.push(t["sip_trunk_id"].as_str().unwrap().to_string());
        }
        after = seen.last().unwrap().clone();
    }
    assert_eq!(seen, ids, "pages in ID order, each ID once");
    // Filters: exact IDs, numbers (outbound: exact string).
    let some = api.ok(
        "ListSIPOutboundTrunk",
        json!({"trunk_ids": [ids[1], ids[3]]}),
    );
    assert_eq!(some["items"].as_array().unwrap().len(), 2);
    let by_number = api.ok("ListSIPOutboundTrunk", json!({"numbers": ["+15550003"]}));
    assert_eq!(by_number["items"].as_array().unwrap().len(), 1);

    // Inbound: numbers filter is normalised and keeps wildcard trunks.
    let specific = api.ok("CreateSIPInboundTrunk", inbound_trunk_json("+15550100"));
    let wildcard = api.ok(
        "CreateSIPInboundTrunk",
        json!({"trunk": {"allowed_addresses": ["10.0.0.1"]}}),
    );
    api.ok("CreateSIPInboundTrunk", inbound_trunk_json("+15550999"));
    let found = api.ok("ListSIPInboundTrunk", json!({"numbers": ["1 (555) 0100"]}));
    let found: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["sip_trunk_id"].as_str().unwrap())
        .collect();
    let mut want = vec![
        specific["sip_trunk_id"].as_str().unwrap(),
        wildcard["sip_trunk_id"].as_str().unwrap(),
    ];
    want.sort_unstable();
    assert_eq!(found, want);

    // Dispatch rules: trunk_ids keeps wildcard rules; the legacy ListSIPTrunk pages too.
    let t = specific["sip_trunk_id"].as_str().unwrap();
    api.ok("CreateSIPDispatchRule", json!({"dispatch_rule": {"trunk_ids": [t], "rule": {"dispatch_rule_direct": {"room_name": "a"}}}}));
    api.ok(
        "CreateSIPDispatchRule",
        json!({"dispatch_rule": {"rule": {"dispatch_rule_direct": {"room_name": "b"}}}}),
    );
    api.ok("CreateSIPDispatchRule", json!({"dispatch_rule": {"trunk_ids": ["ST_other"], "rule": {"dispatch_rule_direct": {"room_name": "c"}}}}));
    let rules = api.ok("ListSIPDispatchRule", json!({"trunk_ids": [t]}));
    let mut rooms: Vec<&str> = rules["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["rule"]["dispatch_rule_direct"]["room_name"]
                .as_str()
                .unwrap()
        })
        .collect();
    rooms.sort_unstable();
    assert_eq!(rooms, ["a", "b"]);
    let one = api.ok("ListSIPDispatchRule", json!({"page": {"limit": 1}}));
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    let legacy = api.ok("ListSIPTrunk", json!({"page": {"limit": 3}}));
    assert_eq!(legacy["items"].as_array().unwrap().len(), 3);
}

#[test]
fn explain_call_answers_from_the_live_routing_index() {
    let api = start(&[]);
    let trunk = api.ok("CreateSIPInboundTrunk", json!({"trunk": {"name": "carrier", "numbers": ["+15550100"], "allowed_addresses": ["192.0.2.0/24"]}}));
    let trunk_id = trunk["sip_trunk_id"].as_str().unwrap();
    let rule = api.ok("CreateSIPDispatchRule", json!({"dispatch_rule": {"trunk_ids": [trunk_id], "rule": {"dispatch_rule_direct": {"room_name": "lobby"}}}}));
    let rule_id = rule["sip_dispatch_rule_id"].as_str().unwrap();
    // The index follows the store's change feed.
    wait_for_routing(api.addr, 0);
    let answer =
        api.explain(json!({"from": "+15559999", "to": "+15550100", "source_ip": "192.0.2.7"}));
    assert_eq!(answer["accepted"], true, "{answer}");
    assert_eq!(
        answer["verdict"],
        format!("accepted: trunk {trunk_id}, rule {rule_id}, room lobby")
    );
    assert_eq!(
        answer["trunk"],
        json!({"id": trunk_id, "match": "specific", "digest_auth": false, "error": null, "passed_over": []})
    );
    assert_eq!(answer["dispatch"]["rule_id"], rule_id);
    assert_eq!(answer["dispatch"]["request_pin"], false);
    assert_eq!(answer["dispatch"]["room_name"], "lobby");
    assert_eq!(answer["dispatch"]["participant_identity"], "sip_+15559999");
    assert_eq!(answer["dispatch"]["participant_name"], "Phone +15559999");
    assert_eq!(answer["dispatch"]["error"], Value::Null);

    // From an address the trunk does not allow: refused, and the trunk is named with its reason.
    let refused =
        api.explain(json!({"from": "+15559999", "to": "+15550100", "source_ip": "198.51.100.1"}));
    assert_eq!(refused["accepted"], false);
    assert_eq!(refused["trunk"]["match"], "none");
    assert_eq!(refused["trunk"]["id"], "");
    assert!(
        refused["trunk"]["error"]
            .as_str()
            .unwrap()
            .contains("No SIP Trunk matched"),
        "{refused}"
    );
    assert!(
        refused["verdict"]
            .as_str()
            .unwrap()
            .starts_with("refused: 404 "),
        "{refused}"
    );
    assert_eq!(refused["dispatch"], Value::Null);
    let passed = &refused["trunk"]["passed_over"][0];
    assert_eq!(passed["kind"], "trunk");
    assert_eq!(passed["id"], trunk_id);
    assert_eq!(passed["name"], "carrier");
    assert!(
        passed["reason"]
            .as_str()
            .unwrap()
            .contains("allowed_addresses"),
        "{passed}"
    );

    // JSON only, sip.admin only, a real IP.
    let path = "/twirp/switchboard.SIP/ExplainCall";
    let auth = format!("Bearer {}", admin_token());
    http(
        api.addr,
        "POST",
        path,
        &[
            ("Content-Type", "application/protobuf"),
            ("Authorization", &auth),
        ],
        b"",
    )
    .assert_twirp(
        404,
        "bad_route",
        r#"unexpected Content-Type: "application/protobuf""#,
    );
    let call_auth = format!("Bearer {}", call_token());
    http(
        api.addr,
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &call_auth),
        ],
        b"{}",
    )
    .assert_twirp(401, "unauthenticated", "permissions denied");
    http(
        api.addr,
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        br#"{"source_ip": "nope"}"#,
    )
    .assert_twirp(
        400,
        "invalid_argument",
        r#"source_ip "nope" is not an IP address"#,
    );
}

#[test]
fn health_answers_503_while_draining_and_the_api_keeps_serving() {
    let mut api = start(&[("SWITCHBOARD_DRAIN__MIN_SECS", "30")]);
    for path in ["/healthz", "/"] {
        let r = http(api.addr, "GET", path, &[], b"");
        assert_eq!((r.status, r.text().trim()), (200, "OK"), "{path}");
    }
    let out = api.ok(
        "CreateSIPOutboundTrunk",
        json!({"trunk": {"address": "sip.example.com", "numbers": ["+1"]}}),
    );
    api.sb.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while http(api.addr, "GET", "/healthz", &[], b"").status != 503 {
        assert!(
            Instant::now() < deadline,
            "healthz never went 503:\n{}",
            api.sb.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(api.sb.is_running());
    assert_eq!(http(api.addr, "GET", "/", &[], b"").status, 503);
    // Management keeps working; new calls are refused.
    assert_eq!(
        api.ok("ListSIPOutboundTrunk", json!({}))["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    api.json_as(
        &call_token(),
        "CreateSIPParticipant",
        json!({"sip_trunk_id": out["sip_trunk_id"], "sip_call_to": "+15550300", "room_name": "r"}),
    )
    .assert_twirp(
        503,
        "unavailable",
        "switchboard is draining; no new calls on this replica",
    );
}

#[test]
fn without_any_key_a_development_key_is_printed_and_works() {
    let sb = Switchboard::start(&[]);
    let addr = sb.api.unwrap();
    let log = sb.log();
    let secret = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("LIVEKIT_API_SECRET="))
        .unwrap_or_else(|| panic!("no dev secret printed:\n{log}"))
        .to_string();
    assert!(log.contains("LIVEKIT_API_KEY=devkey"), "{log}");
    assert_eq!(secret.len(), 48);
    assert_eq!(
        log.matches(&secret).count(),
        1,
        "printed once, never logged"
    );
    let mut c = claims(json!({"sip": {"admin": true}}));
    c["iss"] = json!("devkey");
    let auth = format!("Bearer {}", jwt(&secret, &c));
    let r = http(
        addr,
        "POST",
        "/twirp/livekit.SIP/ListSIPDispatchRule",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        b"{}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"items": []}));
}

// ---------------------------------------------------------------- Redis

use common::redis::Redis;

#[test]
fn two_replicas_on_one_redis_route_with_each_others_trunks() {
    let redis = Redis::start();
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let a = start(&[("SWITCHBOARD_STORE__URL", &url)]);
    let b = start(&[("SWITCHBOARD_STORE__URL", &url)]);
    let before =
        b.explain(json!({"from": "+15559999", "to": "+15550100", "source_ip": "192.0.2.7"}));
    assert_eq!(before["accepted"], false, "{before}");

    let trunk = a.ok(
        "CreateSIPInboundTrunk",
        json!({"trunk": {"numbers": ["+15550100"], "allowed_addresses": ["192.0.2.0/24"]}}),
    );
    let trunk_id = trunk["sip_trunk_id"].as_str().unwrap().to_string();
    a.ok(
        "CreateSIPDispatchRule",
        json!({"dispatch_rule": {"rule": {"dispatch_rule_direct": {"room_name": "shared"}}}}),
    );
    // How fast B hears of it is a figure for bench/, not a verdict here:
    // the deadline only has to be generous for a loaded machine.
    wait_for_routing(b.addr, store_version(a.addr));
    let answer =
        b.explain(json!({"from": "+15559999", "to": "+15550100", "source_ip": "192.0.2.7"}));
    assert_eq!(
        answer["accepted"],
        true,
        "replica B routes by a version that has A's trunk, yet: {answer}\n{}",
        b.sb.log()
    );
    assert_eq!(answer["trunk"]["id"], trunk_id.as_str());
    assert_eq!(answer["dispatch"]["room_name"], "shared");
    // And B's API reads what A wrote.
    let got = b.ok("GetSIPInboundTrunk", json!({"sip_trunk_id": trunk_id}));
    assert_eq!(got["trunk"]["numbers"], json!(["+15550100"]));
}

/// Whether `source` (a loopback address) gets an answer to an OPTIONS ping
/// from the switchboard at `target` within half a second.
fn answered_from(source: &str, target: SocketAddr, user_agent: Option<&str>) -> bool {
    let socket = std::net::UdpSocket::bind((source, 0)).unwrap();
    let local = socket.local_addr().unwrap();
    let mut ping = common::options("UDP", local, target, &format!("ban-{}", local.port()));
    if let Some(agent) = user_agent {
        ping = ping.replace(
            "Max-Forwards",
            &format!("User-Agent: {agent}\r\nMax-Forwards"),
        );
    }
    socket.send_to(ping.as_bytes(), target).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    socket.recv_from(&mut buf).is_ok()
}

/// A scanner banned by one replica is silenced by the other within a few
/// seconds (the bans are shared through the store's Redis), and a ban
/// lifted on one replica is lifted on both.
#[test]
fn replicas_on_one_redis_share_their_bans() {
    let redis = Redis::start();
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let a = start(&[("SWITCHBOARD_STORE__URL", &url)]);
    let b = start(&[("SWITCHBOARD_STORE__URL", &url)]);
    let (sip_a, sip_b) = (a.sb.udp.unwrap(), b.sb.udp.unwrap());
    assert!(
        answered_from("127.0.0.5", sip_b, None),
        "B answers before the ban"
    );
    assert!(!answered_from("127.0.0.5", sip_a, Some("friendly-scanner")));
    let banned_on_b = (0..40).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        !answered_from("127.0.0.5", sip_b, None)
    });
    assert!(banned_on_b, "B never learnt of A's ban\n{}", b.sb.log());
    assert!(
        answered_from("127.0.0.6", sip_b, None),
        "B still answers others"
    );
    // Lifted on B, the source is heard by A again.
    let lifted = http(
        b.addr,
        "POST",
        "/twirp/switchboard.SIP/LiftBan",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {}", admin_token())),
        ],
        br#"{"ip": "127.0.0.5"}"#,
    );
    assert_eq!(lifted.status, 200, "{}", lifted.text());
    let heard_by_a = (0..40).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        answered_from("127.0.0.5", sip_a, None)
    });
    assert!(heard_by_a, "A kept the lifted ban\n{}", a.sb.log());
}

/// The final status of a raw INVITE sent from `socket` (provisional
/// answers skipped), and the response text.
fn raw_invite(
    socket: &std::net::UdpSocket,
    target: SocketAddr,
    branch: &str,
    extra: &str,
) -> (u16, String) {
    let local = socket.local_addr().unwrap();
    let text = format!(
        "INVITE sip:+15550100@switchboard.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
         From: <sip:+15550199@{local}>;tag=f{branch}\r\n\
         To: <sip:+15550100@switchboard.example>\r\n\
         Call-ID: {branch}@{local}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:caller@{local}>\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    socket.send_to(text.as_bytes(), target).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = vec![0u8; 8192];
    loop {
        let (n, _) = socket.recv_from(&mut buf).expect("an answer");
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        let status: u16 = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status >= 200 {
            return (status, answer);
        }
    }
}

/// A digest response accepted by one replica, captured and replayed to
/// another replica behind the same address, is refused there: the
/// replicas share nonce counts through the store's Redis.
#[test]
fn a_digest_response_is_taken_once_across_replicas() {
    let redis = Redis::start();
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let key = "ab".repeat(32);
    let env = [
        ("SWITCHBOARD_STORE__URL", url.as_str()),
        ("SWITCHBOARD_CALLS__AUTH_NONCE_KEY", key.as_str()),
    ];
    let a = start(&env);
    let b = start(&env);
    a.ok(
        "CreateSIPInboundTrunk",
        json!({"trunk": {"numbers": ["+15550100"], "auth_username": "carrier", "auth_password": "s3cret"}}),
    );
    wait_for_routing(a.addr, 0);
    wait_for_routing(b.addr, store_version(a.addr));
    let (sip_a, sip_b) = (a.sb.udp.unwrap(), b.sb.udp.unwrap());
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (status, challenge) = raw_invite(&socket, sip_a, "first", "");
    assert_eq!(status, 407, "{challenge}");
    let challenges: Vec<&str> = challenge
        .lines()
        .filter_map(|l| l.strip_prefix("Proxy-Authenticate: "))
        .collect();
    let credentials = switchboard_sip::auth::DigestClient::new("carrier", "s3cret")
        .authorize(
            &challenges,
            "INVITE",
            "sip:+15550100@switchboard.example",
            b"",
        )
        .unwrap();
    let header = format!("Proxy-Authorization: {credentials}\r\n");
    // Taken by A (no rule: 404 after authentication).
    let (status, answer) = raw_invite(&socket, sip_a, "second", &header);
    assert_eq!(status, 404, "{answer}\n{}", a.sb.log());
    // The same response replayed to B.
    let (status, answer) = raw_invite(&socket, sip_b, "replay", &header);
    assert_eq!(status, 403, "{answer}\n{}", b.sb.log());
    assert!(
        b.sb.log().contains("nonce count replayed"),
        "{}",
        b.sb.log()
    );
}

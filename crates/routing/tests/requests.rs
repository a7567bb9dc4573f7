//! CreateSIPParticipant and TransferSIPParticipant validation, table-driven.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers, not only #[test] fns

use std::collections::HashMap;

use switchboard_routing::livekit_protocol::{
    CreateSipParticipantRequest, Destination, SipOutboundConfig, TransferSipParticipantRequest,
};
use switchboard_routing::*;

fn base() -> CreateSipParticipantRequest {
    CreateSipParticipantRequest {
        sip_trunk_id: "ST_abc".into(),
        sip_call_to: "+15105550100".into(),
        room_name: "room".into(),
        ..Default::default()
    }
}

#[test]
fn create_sip_participant_table() {
    let dest = |city: &str, country: &str, region: &str| {
        Some(Destination {
            city: city.into(),
            country: country.into(),
            region: region.into(),
        })
    };
    let cases: Vec<(&str, CreateSipParticipantRequest, Result<(), &str>)> = vec![
        ("ok", base(), Ok(())),
        (
            "sip_number alone is enough",
            CreateSipParticipantRequest {
                sip_trunk_id: String::new(),
                sip_number: "+1".into(),
                ..base()
            },
            Ok(()),
        ),
        (
            "no trunk",
            CreateSipParticipantRequest {
                sip_trunk_id: String::new(),
                ..base()
            },
            Err("missing sip trunk id and sip number"),
        ),
        (
            "inline trunk ok",
            CreateSipParticipantRequest {
                sip_trunk_id: String::new(),
                trunk: Some(SipOutboundConfig {
                    hostname: "sip.example.com".into(),
                    ..Default::default()
                }),
                ..base()
            },
            Ok(()),
        ),
        (
            "inline trunk without host",
            CreateSipParticipantRequest {
                trunk: Some(SipOutboundConfig::default()),
                ..base()
            },
            Err("no outbound hostname specified"),
        ),
        (
            "inline trunk as URI",
            CreateSipParticipantRequest {
                trunk: Some(SipOutboundConfig {
                    hostname: "sip:x.example.com".into(),
                    ..Default::default()
                }),
                ..base()
            },
            Err("trunk hostname should be a hostname or IP, not SIP URI"),
        ),
        (
            "no callee",
            CreateSipParticipantRequest {
                sip_call_to: String::new(),
                ..base()
            },
            Err("missing sip callee number"),
        ),
        (
            "callee URI",
            CreateSipParticipantRequest {
                sip_call_to: "bob@example.com".into(),
                ..base()
            },
            Err("SipCallTo should be a phone number or SIP user, not a full SIP URI"),
        ),
        (
            "to user override ok",
            CreateSipParticipantRequest {
                to_user_override: "bob.smith".into(),
                ..base()
            },
            Ok(()),
        ),
        (
            "to user override with @",
            CreateSipParticipantRequest {
                to_user_override: "bob@x".into(),
                ..base()
            },
            Err("to_user_override must be SIP token characters, without '@'"),
        ),
        (
            "no room",
            CreateSipParticipantRequest {
                room_name: String::new(),
                ..base()
            },
            Err("missing room name"),
        ),
        (
            "display name empty is fine",
            CreateSipParticipantRequest {
                display_name: Some(String::new()),
                ..base()
            },
            Ok(()),
        ),
        (
            "display name too long",
            CreateSipParticipantRequest {
                display_name: Some("x".repeat(129)),
                ..base()
            },
            Err("DisplayName too long (max 128 characters)"),
        ),
        (
            "display name with quote",
            CreateSipParticipantRequest {
                display_name: Some("a\"b".into()),
                ..base()
            },
            Err("DisplayName must be a valid quoted string: invalid syntax"),
        ),
        (
            "city alone",
            CreateSipParticipantRequest {
                destination: dest("Paris", "", ""),
                ..base()
            },
            Err("if city is specified, country or region must also be specified"),
        ),
        (
            "city with region",
            CreateSipParticipantRequest {
                destination: dest("Paris", "", "eu"),
                ..base()
            },
            Ok(()),
        ),
        (
            "country UK is not ISO",
            CreateSipParticipantRequest {
                destination: dest("", "UK", ""),
                ..base()
            },
            Err("country must be a valid ISO 3166-1 alpha-2 code (2-letter like 'US', 'IN', 'UK')"),
        ),
        (
            "country GB",
            CreateSipParticipantRequest {
                destination: dest("London", "GB", ""),
                ..base()
            },
            Ok(()),
        ),
        (
            "forbidden header",
            CreateSipParticipantRequest {
                headers: HashMap::from([("Contact".into(), "x".into())]),
                ..base()
            },
            Err("header \"Contact\" is not allowed to be set"),
        ),
    ];
    for (name, req, want) in cases {
        let got = validate_create_sip_participant(&req).map_err(|e| {
            assert_eq!(e.code(), ErrorCode::InvalidArgument, "{name}");
            e.to_string()
        });
        assert_eq!(got, want.map_err(str::to_owned), "{name}");
    }
}

#[test]
fn transfer_table() {
    let req = |to: &str| TransferSipParticipantRequest {
        participant_identity: "sip_+1".into(),
        room_name: "room".into(),
        transfer_to: to.into(),
        ..Default::default()
    };
    let cases: Vec<(TransferSipParticipantRequest, Result<&str, &str>)> = vec![
        (req("sip:bob@example.com"), Ok("<sip:bob@example.com>")),
        (req("<sip:bob@example.com>"), Ok("<sip:bob@example.com>")),
        (req("sips:bob@example.com"), Ok("<sips:bob@example.com>")),
        (req("tel:+15105550100"), Ok("tel:+15105550100")),
        (req("<tel:+15105550100>"), Ok("tel:+15105550100")),
        (
            req("+15105550100"),
            Err("transfer_to must be a valid SIP or TEL URI (sip:, sips: or tel:)"),
        ),
        (req(""), Err("missing transfer to")),
        (
            TransferSipParticipantRequest {
                room_name: String::new(),
                ..req("tel:1")
            },
            Err("missing room name"),
        ),
        (
            TransferSipParticipantRequest {
                participant_identity: String::new(),
                ..req("tel:1")
            },
            Err("missing participant identity"),
        ),
        (
            TransferSipParticipantRequest {
                headers: HashMap::from([("CSeq".into(), "1".into())]),
                ..req("tel:1")
            },
            Err("header \"CSeq\" is not allowed to be set"),
        ),
    ];
    for (r, want) in cases {
        let got = validate_transfer_sip_participant(&r).map_err(|e| e.to_string());
        assert_eq!(got, want.map(str::to_owned).map_err(str::to_owned), "{r:?}");
    }
}

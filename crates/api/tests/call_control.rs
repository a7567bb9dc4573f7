//! The hand-off to call control, with a recording [`CallControl`] (a mock is
//! fine for this one-crate test; the binary's wiring is tested end to end in
//! crates/switchboard/tests/api.rs): what it receives, and how its answers
//! and errors reach the client. Tokens are minted with livekit-api, as the
//! Rust SDK does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use livekit_api::access_token::{AccessToken, SIPGrants, VideoGrants};
use livekit_protocol as lk;
use serde_json::{json, Value};
use switchboard_api::{
    ApiKeys, ApiState, CallControl, CallFuture, CallStatus, Code, OutboundCall, StatusSource,
    Transfer, TwirpError,
};
use switchboard_rooms::{Rooms, RoomsConfig};
use switchboard_routing::RoutingOptions;
use switchboard_store::{LiveRoutingIndex, SipStore};

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<OutboundCall>>,
    transfers: Mutex<Vec<Transfer>>,
}

impl CallControl for Recorder {
    fn create_participant(&self, call: OutboundCall) -> CallFuture<'_, lk::SipParticipantInfo> {
        let room = call.request.room_name.clone();
        self.calls.lock().unwrap().push(call);
        Box::pin(async move {
            if room == "busy" {
                return Err(TwirpError::new(Code::ResourceExhausted, "Busy Here")
                    .with_meta("sip_status_code", "486")
                    .with_meta("sip_status", "Busy Here"));
            }
            Ok(lk::SipParticipantInfo {
                participant_id: "PA_1".into(),
                participant_identity: "sip_+15550300".into(),
                room_name: room,
                sip_call_id: "SCL_abcdefghijkl".into(),
            })
        })
    }

    fn transfer_participant(
        &self,
        transfer: Transfer,
    ) -> CallFuture<'_, lk::TransferSipParticipantResponse> {
        self.transfers.lock().unwrap().push(transfer);
        Box::pin(async {
            Ok(lk::TransferSipParticipantResponse {
                transfer_id: "STR_1".into(),
                status: lk::SipTransferStatus::StsTransferSuccessful as i32,
                ..Default::default()
            })
        })
    }
}

/// No calls to count: this test is about the hand-off only.
struct NoCalls;

impl StatusSource for NoCalls {
    fn call_status(&self) -> CallStatus {
        CallStatus::default()
    }
}

const KEY: &str = "k";
const SECRET: &str = "s-0123456789abcdefghijklmnopqrstuvwxyz";

async fn serve(recorder: Arc<Recorder>) -> (SocketAddr, SipStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SipStore::open_embedded(dir.path()).await.unwrap();
    let routing = Arc::new(
        LiveRoutingIndex::start(store.clone(), RoutingOptions::default())
            .await
            .unwrap(),
    );
    let state = Arc::new(ApiState {
        store: store.clone(),
        routing,
        call_control: recorder,
        keys: ApiKeys::from_iter([(KEY, SECRET)]),
        max_body_bytes: 1 << 20,
        draining: Arc::new(AtomicBool::new(false)),
        rooms: Rooms::new(RoomsConfig::default()),
        status: Arc::new(NoCalls),
        websocket: Default::default(),
        websocket_sessions: Default::default(),
        webrtc: Default::default(),
        agents: Default::default(),
        return_passwords: true,
        platform: Default::default(),
        refused_destinations: Vec::new(),
        call_history: None,
        metrics: switchboard_api::metrics::ApiMetrics::new().unwrap(),
        directory: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(switchboard_api::serve(
        listener,
        switchboard_api::router(state),
        std::future::pending(),
    ));
    (addr, store, dir)
}

async fn post(addr: SocketAddr, method: &str, token: &str, body: Value) -> (u16, Value) {
    let body = body.to_string();
    let (method, token) = (method.to_owned(), token.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST /twirp/livekit.SIP/{method} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap())
    })
    .await
    .unwrap()
}

fn token(sip: SIPGrants, video: VideoGrants) -> String {
    AccessToken::with_api_key(KEY, SECRET)
        .with_sip_grants(sip)
        .with_grants(video)
        .to_jwt()
        .unwrap()
}

#[tokio::test]
async fn create_participant_hands_the_validated_request_and_the_stored_trunk_over() {
    let recorder = Arc::new(Recorder::default());
    let (addr, store, _dir) = serve(recorder.clone()).await;
    let trunk = store
        .create_outbound_trunk(lk::SipOutboundTrunkInfo {
            address: "sip.example.com".into(),
            numbers: vec!["+15550200".into()],
            auth_password: "secret".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let call = token(
        SIPGrants {
            admin: false,
            call: true,
        },
        VideoGrants::default(),
    );
    let (status, body) = post(
        addr,
        "CreateSIPParticipant",
        &call,
        json!({"sip_trunk_id": trunk.sip_trunk_id, "sip_call_to": "+15550300",
               "room_name": "r", "dtmf": "1w2", "ringingTimeout": "20s"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"participant_id": "PA_1", "participant_identity": "sip_+15550300",
               "room_name": "r", "sip_call_id": "SCL_abcdefghijkl"})
    );
    {
        let calls = recorder.calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].trunk.as_ref(), Some(&trunk));
        assert_eq!(calls[0].request.dtmf, "1w2");
        assert_eq!(
            calls[0].request.ringing_timeout.as_ref().map(|d| d.seconds),
            Some(20)
        );
    }

    // An inline trunk: no stored trunk is looked up.
    let (status, _) = post(
        addr,
        "CreateSIPParticipant",
        &call,
        json!({"trunk": {"hostname": "sip.example.net"}, "sip_number": "+1",
               "sip_call_to": "+15550300", "room_name": "r"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(recorder.calls.lock().unwrap()[1].trunk, None);

    // A call-control failure reaches the client as its Twirp error, meta included.
    let (status, body) = post(
        addr,
        "CreateSIPParticipant",
        &call,
        json!({"sip_trunk_id": trunk.sip_trunk_id, "sip_call_to": "+15550300", "room_name": "busy"}),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(
        body,
        json!({"code": "resource_exhausted", "msg": "Busy Here",
               "meta": {"sip_status_code": "486", "sip_status": "Busy Here"}})
    );

    // Invalid requests never reach call control.
    let (status, body) = post(
        addr,
        "CreateSIPParticipant",
        &call,
        json!({"sip_trunk_id": trunk.sip_trunk_id, "sip_call_to": "a@b", "room_name": "r"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(recorder.calls.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn transfer_hands_the_refer_to_over_and_writes_the_response_with_defaults() {
    let recorder = Arc::new(Recorder::default());
    let (addr, _store, _dir) = serve(recorder.clone()).await;
    let t = token(
        SIPGrants {
            admin: false,
            call: true,
        },
        VideoGrants {
            room_admin: true,
            room: "r".into(),
            ..Default::default()
        },
    );
    let (status, body) = post(
        addr,
        "TransferSIPParticipant",
        &t,
        json!({"room_name": "r", "participant_identity": "p", "transfer_to": "sip:+1555@example.com"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"transfer_id": "STR_1", "status": "STS_TRANSFER_SUCCESSFUL",
               "reason": "STR_UNSPECIFIED", "sip_status": null})
    );
    let transfers = recorder.transfers.lock().unwrap();
    assert_eq!(transfers[0].refer_to, "<sip:+1555@example.com>");
    assert_eq!(transfers[0].request.participant_identity, "p");
}
